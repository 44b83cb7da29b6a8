#include "storage/FileLog.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <memory>

#include "storage/FileSource.h"
#include "storage/Layout.h"

namespace replica {
namespace {

constexpr std::size_t kHeader = 4 + 8 + 8;
// Segments are read in chunks of this size (grown for a larger record): one read() per 4 MiB
// instead of the whole file in memory, which for a long log would be hundreds of MB.
constexpr std::size_t kReadChunk = 4u << 20;

std::uint64_t le(const char* p, int n) {
    std::uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | std::uint8_t(p[i]);
    return v;
}

void putLe(std::string& out, std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out.push_back(char((v >> (8 * i)) & 0xff));
}

// xxh3_64(seq as 8 LE bytes + body). Why a copy: one-shot XXH3 over one contiguous buffer is
// several times cheaper than the streaming API (whose state is a 576-byte heap object) for the
// short records a log holds; only large bodies stream.
std::uint64_t checksum(std::int64_t seq, std::string_view body) {
    char buf[8 + 2048];
    for (int i = 0; i < 8; ++i) buf[i] = char((std::uint64_t(seq) >> (8 * i)) & 0xff);
    if (body.size() <= sizeof buf - 8) {
        std::memcpy(buf + 8, body.data(), body.size());
        return XXH3_64bits(buf, 8 + body.size());
    }
    XXH3_state_t* st = XXH3_createState();
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, buf, 8);
    XXH3_64bits_update(st, body.data(), body.size());
    std::uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

[[noreturn]] void corrupt(const std::string& path, std::uint64_t offset, const std::string& why) {
    throw StorageError("corrupt log record in " + path + " at offset " + std::to_string(offset) +
                       ": " + why);
}

void readRange(int fd, const std::string& path, std::uint64_t off, std::size_t n, std::string& out) {
    out.resize(n);
    readInto(fd, path, off, n, out.data());
}

bool allZero(const std::string& path, std::uint64_t from, std::uint64_t to) {
    ReadOnlyFile file(path);
    std::vector<char> buf(1u << 16);
    for (std::uint64_t at = from; at < to;) {
        auto n = std::size_t(std::min<std::uint64_t>(buf.size(), to - at));
        readInto(file.fd, path, at, n, buf.data());
        if (std::any_of(buf.begin(), buf.begin() + std::ptrdiff_t(n), [](char c) { return c != 0; }))
            return false;
        at += n;
    }
    return true;
}

// True when a record with a seq above prevSeq and a good checksum starts anywhere in
// (from, size) of the file: the damage at `from` is then in the middle of the log.
bool laterRecord(int fd, const std::string& path, std::uint64_t from, std::uint64_t size,
                 std::int64_t prevSeq) {
    std::vector<char> window(1u << 16);
    std::string body;
    for (std::uint64_t base = from + 1; base + kHeader <= size;) {
        auto n = std::size_t(std::min<std::uint64_t>(window.size(), size - base));
        readInto(fd, path, base, n, window.data());
        for (std::size_t i = 0; i + kHeader <= n; ++i) {
            const char* h = window.data() + i;
            std::uint64_t length = le(h, 4);
            if (length == 0) continue;  // zeros: the preallocated rest of a segment
            auto seq = std::int64_t(le(h + 4, 8));
            std::uint64_t at = base + i;
            if (seq <= prevSeq || seq - prevSeq > (std::int64_t(1) << 32) || length > size - at - kHeader)
                continue;
            readRange(fd, path, at + kHeader, std::size_t(length), body);
            if (checksum(seq, body) == le(h + 12, 8)) return true;
        }
        base += n - kHeader + 1;  // windows overlap by a header, so none is missed
    }
    return false;
}

// Walks the records of one segment in file order with bulk reads, verifying each checksum, and
// calls fn(seq, body, offset) for each. Returns the length of its valid prefix. In the newest
// segment (`isLast`) the records end at the first damaged one or at zeros (a segment made from
// a zero-filled spare); that is a torn tail, the cut point returned, only when no good record
// follows it (a torn append leaves garbage or zeros behind it, never a later record).
std::uint64_t walkSegment(const std::string& path, bool isLast, std::int64_t& prevSeq,
                          const std::function<void(std::int64_t, std::string_view, std::uint64_t)>& fn) {
    ReadOnlyFile file(path);
    struct stat st {};
    if (::fstat(file.fd, &st) != 0) throw StorageError("cannot stat " + path + ": " + std::strerror(errno));
    const auto fileSize = std::uint64_t(st.st_size);
    // A plain array, not a std::string: resizing a string zero-fills it first, which cost as
    // much as the checksums.
    std::unique_ptr<char[]> store;
    std::size_t cap = 0, len = 0;  // bytes allocated, bytes valid
    char* data = nullptr;
    std::uint64_t base = 0;  // file offset of data[0]
    std::size_t pos = 0;     // next record in data
    // Makes at least `need` bytes from `pos` available; false at end of file.
    auto fill = [&](std::size_t need) {
        if (len - pos >= need) return true;
        if (base + len >= fileSize) return false;
        std::size_t keep = len - pos;
        std::size_t want = std::size_t(std::min<std::uint64_t>(std::max(need, kReadChunk), fileSize - base - pos));
        if (want <= keep) return false;
        if (want > cap) {
            std::unique_ptr<char[]> bigger(new char[want]);
            if (keep) std::memcpy(bigger.get(), data + pos, keep);
            store = std::move(bigger);
            cap = want;
        } else if (keep) {
            std::memmove(store.get(), data + pos, keep);
        }
        data = store.get();
        base += pos;
        pos = 0;
        readInto(file.fd, path, base + keep, want - keep, data + keep);
        len = want;
        return len >= need;
    };
    auto tornTail = [&](std::uint64_t off) {
        return isLast && !laterRecord(file.fd, path, off, fileSize, prevSeq);
    };
    while (true) {
        std::uint64_t off = base + pos;
        if (off >= fileSize) return off;
        if (!fill(kHeader)) {
            if (isLast) return off;
            corrupt(path, off, "truncated record header");
        }
        const char* h = data + pos;
        std::uint64_t length = le(h, 4);
        auto seq = std::int64_t(le(h + 4, 8));
        std::uint64_t sum = le(h + 12, 8);
        if (length == 0 && seq == 0 && sum == 0 && tornTail(off)) return off;  // zeros: the end
        if (length > fileSize - off - kHeader || !fill(kHeader + std::size_t(length))) {
            if (tornTail(off)) return off;
            corrupt(path, off, "truncated record body");
        }
        std::string_view body(data + pos + kHeader, std::size_t(length));
        if (checksum(seq, body) != sum) {
            if (tornTail(off)) return off;
            corrupt(path, off, "checksum mismatch");
        }
        if (seq <= prevSeq) corrupt(path, off, "seq not increasing");
        prevSeq = seq;
        if (fn) fn(seq, body, off);
        pos += kHeader + std::size_t(length);
    }
}

}  // namespace

void syncDirectory(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        ::fsync(fd);
        ::close(fd);
    }
}

FileLog::FileLog(std::string dataDir, FsyncPolicy policy,
                 std::function<void(const std::string&)> warn)
    : dir_(std::move(dataDir) + "/" + Layout::kLogDir), policy_(policy), warn_(std::move(warn)) {
    ::mkdir(dir_.c_str(), 0755);
    // Without fsync there is no journal commit to save.
    if (policy_ != FsyncPolicy::Never) spare_ = std::make_unique<SpareSegment>(dir_, kSpareBytes);
    scan();
}

FileLog::~FileLog() {
    if (fd_ >= 0) {
        try {
            if (failure_.empty()) closeSegment();
            else ::close(fd_);  // nothing more is written after a failure (failure_)
        } catch (const StorageError&) {
            // Nothing to report to in a destructor; recovery cuts a torn tail or zeros.
            ::close(fd_);
        }
    }
}

std::string FileLog::segmentPath(std::int64_t firstSeq) const {
    char name[32];
    std::snprintf(name, sizeof name, "%020lld.log", static_cast<long long>(firstSeq));
    return dir_ + "/" + name;
}

void FileLog::scan() {
    DIR* d = ::opendir(dir_.c_str());
    if (d == nullptr) throw StorageError("cannot open " + dir_ + ": " + std::strerror(errno));
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.size() == 24 && name.substr(20) == ".log")
            segments_.push_back({std::stoll(name.substr(0, 20)), dir_ + "/" + name, {}, 0});
    }
    ::closedir(d);
    std::sort(segments_.begin(), segments_.end(),
              [](const Segment& a, const Segment& b) { return a.firstSeq < b.firstSeq; });
    std::int64_t prev = 0;
    for (std::size_t i = 0; i < segments_.size(); ++i) {
        Segment& s = segments_[i];
        bool isLast = i + 1 == segments_.size();
        std::uint64_t valid = walkSegment(
            s.path, isLast, prev,
            [&](std::int64_t seq, std::string_view, std::uint64_t off) { s.index.push_back({seq, off}); });
        struct stat st {};
        ::stat(s.path.c_str(), &st);
        if (valid < std::uint64_t(st.st_size)) {
            // The unused zeros of a spare are expected; anything else was a torn append.
            if (warn_ && !allZero(s.path, valid, std::uint64_t(st.st_size)))
                warn_("event=log_torn_tail file=" + s.path + " offset=" + std::to_string(valid) +
                      " dropped_bytes=" + std::to_string(std::uint64_t(st.st_size) - valid));
            if (::truncate(s.path.c_str(), off_t(valid)) != 0)
                throw StorageError("cannot truncate " + s.path + ": " + std::strerror(errno));
        }
        s.size = valid;
    }
    lastSeq_ = prev;
    if (segments_.empty()) {
        // A fresh log starts in a spare (a few ms for 4 MiB): else its first segment would stay
        // a plain one until the first snapshot rolls it.
        if (spare_) spare_->waitReady(2000);
        openSegment(1);
    } else {
        reopenLast();
    }
}

void FileLog::reopenLast() {
    fd_ = ::open(segments_.back().path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) throw StorageError("cannot open " + segments_.back().path);
    written_ = segments_.back().size;  // truncated to its records: appended from here
    segments_.back().fromSpare = false;
}

void FileLog::closeSegment() {
    writeOut();
    // A closed segment holds its records and nothing else: only the newest may end in zeros.
    if (segments_.back().fromSpare && ::ftruncate(fd_, off_t(written_)) != 0)
        throw StorageError("cannot truncate " + segments_.back().path + ": " + std::strerror(errno));
    if (policy_ != FsyncPolicy::Never) ::fsync(fd_);
    ::close(fd_);
    fd_ = -1;
}

void FileLog::openSegment(std::int64_t firstSeq) {
    if (fd_ >= 0) closeSegment();
    std::string path = segmentPath(firstSeq);
    bool spare = spare_ && spare_->take(path);
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw StorageError("cannot create " + path + ": " + std::strerror(errno));
    syncDirectory(dir_);
    segments_.push_back({firstSeq, path, {}, 0, spare});
    written_ = 0;
}

void FileLog::append(std::int64_t seq, std::string_view body) {
    if (seq <= lastSeq_) throw std::logic_error("log append out of order");
    if (fd_ < 0) throw std::logic_error("log append during a reset");
    if (spare_ && !segments_.back().index.empty()) {
        // Full at the spare's size, a plain segment too (one reopened at start, or made while
        // no spare was ready): segment boundaries depend on sizes only, never on the thread's
        // timing, and a plain segment is soon followed by a zero-filled one.
        const Segment& cur = segments_.back();
        if (cur.size + kHeader + body.size() > spare_->bytes()) openSegment(seq);
    }
    Segment& seg = segments_.back();
    seg.index.push_back({seq, seg.size});
    seg.size += kHeader + body.size();
    putLe(buffer_, body.size(), 4);
    putLe(buffer_, std::uint64_t(seq), 8);
    putLe(buffer_, checksum(seq, body), 8);
    buffer_.append(body);
    lastSeq_ = seq;
    if (policy_ == FsyncPolicy::Always) sync();
}

void FileLog::writeOut() {
    if (!failure_.empty()) throw StorageError("log unusable after an earlier failure: " + failure_);
    const char* p = buffer_.data();
    std::size_t left = buffer_.size();
    while (left > 0) {
        // At an offset, not O_APPEND: a segment made from a spare is already full of zeros.
        ssize_t n = ::pwrite(fd_, p, left, off_t(written_));
        if (n < 0) {
            if (errno == EINTR) continue;
            failure_ = "log write failed: " + std::string(std::strerror(errno));
            throw StorageError(failure_);
        }
        p += n;
        left -= std::size_t(n);
        written_ += std::uint64_t(n);
    }
    if (!buffer_.empty()) dirty_ = true;
    buffer_.clear();
    // Why shrink: one large catch-up turn should not pin megabytes for the process lifetime.
    if (buffer_.capacity() > (4u << 20)) buffer_.shrink_to_fit();
}

void FileLog::sync() {
    if (fd_ < 0) return;
    writeOut();
    if (!dirty_) return;
    dirty_ = false;
    if (policy_ == FsyncPolicy::Never) return;
    // fdatasync: the file size is metadata it does flush, which is all appends need.
    if (::fdatasync(fd_) != 0) {
        failure_ = "log fsync failed: " + std::string(std::strerror(errno));
        throw StorageError(failure_);
    }
}

void FileLog::replay(std::int64_t after,
                     const std::function<void(std::int64_t, std::string_view)>& fn) {
    if (fd_ >= 0) writeOut();  // the tail may still be in our buffer
    std::int64_t prev = 0;
    for (std::size_t i = 0; i < segments_.size(); ++i) {
        const Segment& seg = segments_[i];
        // Segments wholly at or before `after` need not be read (the next one starts <= after+1).
        if (i + 1 < segments_.size() && segments_[i + 1].firstSeq <= after + 1) {
            if (!seg.index.empty()) prev = seg.index.back().seq;
            continue;
        }
        walkSegment(seg.path, i + 1 == segments_.size(), prev,
                    [&](std::int64_t seq, std::string_view body, std::uint64_t) {
                        if (seq > after) fn(seq, body);
                    });
    }
}

void FileLog::truncatePrefix(std::int64_t seq) {
    // Segments are removed whole: start a fresh segment if the current one holds records <= seq
    // (not when it is empty, nor when it already starts after seq: a background snapshot rolled
    // at seq) so the one holding `seq` becomes closed, then drop every segment whose successor
    // starts at or below seq+1 (all its records are <= seq). Records above `seq` are never lost.
    if (fd_ < 0) return;
    if (segments_.back().firstSeq <= seq && lastSeq_ >= segments_.back().firstSeq)
        openSegment(lastSeq_ + 1);
    while (segments_.size() > 1 && segments_[1].firstSeq <= seq + 1) {
        ::unlink(segments_.front().path.c_str());
        segments_.erase(segments_.begin());
    }
    syncDirectory(dir_);
}

void FileLog::roll() {
    if (fd_ >= 0 && lastSeq_ >= segments_.back().firstSeq) openSegment(lastSeq_ + 1);
}

bool FileLog::read(std::int64_t from, std::size_t maxBytes,
                   const std::function<bool(std::int64_t, std::string_view)>& fn) {
    if (fd_ < 0 || segments_.empty() || from < segments_.front().firstSeq) return false;
    writeOut();  // the tail may still be in our buffer: the file must hold it before we read
    // The segment holding `from`: the last one starting at or before it.
    std::size_t i = 0;
    while (i + 1 < segments_.size() && segments_[i + 1].firstSeq <= from) ++i;
    // Records before `from` dropped with an older segment: not held any more.
    if (!segments_[i].index.empty() && segments_[i].index.front().seq > from) return false;
    std::size_t bytes = 0;
    for (; i < segments_.size(); ++i) {
        const Segment& seg = segments_[i];
        auto it = std::lower_bound(seg.index.begin(), seg.index.end(), from,
                                   [](const IndexEntry& e, std::int64_t s) { return e.seq < s; });
        auto k = std::size_t(it - seg.index.begin());
        while (k < seg.index.size()) {
            // One pread for the records that fit in what is left of maxBytes (at least one):
            // the index gives their offsets, so only the requested range is read.
            std::size_t end = k, take = bytes;
            auto recordEnd = [&](std::size_t r) {
                return r + 1 < seg.index.size() ? seg.index[r + 1].off : seg.size;
            };
            do {
                take += std::size_t(recordEnd(end) - seg.index[end].off) - kHeader;
                ++end;
            } while (end < seg.index.size() && take < maxBytes);
            std::uint64_t start = seg.index[k].off;
            ReadOnlyFile file(seg.path);
            readRange(file.fd, seg.path, start, std::size_t(recordEnd(end - 1) - start), readBuf_);
            for (std::size_t r = k; r < end; ++r) {
                std::size_t at = std::size_t(seg.index[r].off - start);
                const char* h = readBuf_.data() + at;
                std::uint64_t length = le(h, 4);
                auto seq = std::int64_t(le(h + 4, 8));
                if (seq != seg.index[r].seq || at + kHeader + length > readBuf_.size())
                    corrupt(seg.path, seg.index[r].off, "record does not match the log index");
                std::string_view body(h + kHeader, std::size_t(length));
                if (checksum(seq, body) != le(h + 12, 8)) corrupt(seg.path, seg.index[r].off, "checksum mismatch");
                if (!fn(seq, body)) return true;
                bytes += length;
                if (bytes >= maxBytes) return true;
            }
            k = end;
        }
    }
    return true;
}

std::string FileLog::discardPath(std::int64_t seq) const {
    char name[40];
    std::snprintf(name, sizeof name, ".discard-%020lld", static_cast<long long>(seq));
    return dir_ + name;
}

namespace {

std::string parentOf(const std::string& dir) { return dir.substr(0, dir.rfind('/')); }

void removeTree(const std::string& dir) {
    if (DIR* d = ::opendir(dir.c_str())) {
        while (dirent* e = ::readdir(d)) {
            std::string name = e->d_name;
            if (name != "." && name != "..") ::unlink((dir + "/" + name).c_str());
        }
        ::closedir(d);
    }
    ::rmdir(dir.c_str());
}

}  // namespace

void FileLog::prepareReset(std::int64_t seq) {
    assert(fd_ >= 0);
    sync();
    // Even with `never` the old records must be intact if a crash makes us undo the reset.
    if (policy_ == FsyncPolicy::Never) ::fdatasync(fd_);
    closeSegment();
    std::string aside = discardPath(seq);
    if (::rename(dir_.c_str(), aside.c_str()) != 0) {
        std::string err = std::strerror(errno);
        reopenLast();
        throw StorageError("cannot rename " + dir_ + ": " + err);
    }
    syncDirectory(parentOf(dir_));
    resetSegments_ = std::move(segments_);
    segments_.clear();
    resetLastSeq_ = lastSeq_;
    resetSeq_ = seq;
}

void FileLog::commitReset(std::int64_t seq) {
    assert(resetSeq_ == seq && fd_ < 0);
    removeTree(discardPath(seq));
    ::mkdir(dir_.c_str(), 0755);
    lastSeq_ = seq;
    resetSegments_.clear();
    resetSeq_ = -1;
    openSegment(seq + 1);
    syncDirectory(parentOf(dir_));
}

void FileLog::abortReset() {
    assert(resetSeq_ >= 0 && fd_ < 0);
    if (::rename(discardPath(resetSeq_).c_str(), dir_.c_str()) != 0)
        throw StorageError("cannot rename " + discardPath(resetSeq_) + " back: " +
                           std::strerror(errno));
    syncDirectory(parentOf(dir_));
    segments_ = std::move(resetSegments_);
    resetSegments_.clear();
    lastSeq_ = resetLastSeq_;
    resetSeq_ = -1;
    reopenLast();
}

void FileLog::recoverReset(const std::string& dataDir,
                           const std::function<bool(std::int64_t)>& committed,
                           const std::function<void(const std::string&)>& warn) {
    std::string prefix = std::string(Layout::kLogDir) + ".discard-";
    std::vector<std::string> found;
    if (DIR* d = ::opendir(dataDir.c_str())) {
        while (dirent* e = ::readdir(d)) {
            std::string name = e->d_name;
            if (name.rfind(prefix, 0) == 0 && name.size() == prefix.size() + 20) found.push_back(name);
        }
        ::closedir(d);
    }
    std::string logDir = dataDir + "/" + Layout::kLogDir;
    for (const std::string& name : found) {
        std::int64_t seq = std::stoll(name.substr(prefix.size()));
        std::string path = dataDir + "/" + name;
        if (committed(seq)) {
            if (warn) warn("event=reset_recovered action=finish seq=" + std::to_string(seq));
            removeTree(path);
            // A log dir opened by commitReset may hold records after seq: keep it.
        } else {
            if (warn) warn("event=reset_recovered action=undo seq=" + std::to_string(seq));
            removeTree(logDir);  // at most an empty dir: commitReset runs after the commit
            if (::rename(path.c_str(), logDir.c_str()) != 0)
                throw StorageError("cannot rename " + path + " back: " + std::strerror(errno));
        }
        syncDirectory(dataDir);
    }
}

}  // namespace replica
