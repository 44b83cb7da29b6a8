#include "storage/FileLog.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "storage/Layout.h"

namespace replica {
namespace {

constexpr std::size_t kHeader = 4 + 8 + 8;

std::uint64_t le(const char* p, int n) {
    std::uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | std::uint8_t(p[i]);
    return v;
}

void putLe(std::string& out, std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out.push_back(char((v >> (8 * i)) & 0xff));
}

std::uint64_t checksum(std::int64_t seq, std::string_view body) {
    XXH3_state_t* st = XXH3_createState();
    XXH3_64bits_reset(st);
    char s[8];
    for (int i = 0; i < 8; ++i) s[i] = char((std::uint64_t(seq) >> (8 * i)) & 0xff);
    XXH3_64bits_update(st, s, 8);
    XXH3_64bits_update(st, body.data(), body.size());
    std::uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw StorageError("cannot read " + path + ": " + std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

[[noreturn]] void corrupt(const std::string& path, std::size_t offset, const std::string& why) {
    throw StorageError("corrupt log record in " + path + " at offset " + std::to_string(offset) +
                       ": " + why);
}

// Walks the records of one segment. Returns the length of its valid prefix; a damaged record is
// a torn tail (returned as the cut point) only when `isLast` and nothing follows it.
std::size_t parseSegment(const std::string& path, const std::string& data, bool isLast,
                         std::int64_t& prevSeq,
                         const std::function<void(std::int64_t, std::string_view)>& fn) {
    std::size_t off = 0;
    while (off < data.size()) {
        std::size_t left = data.size() - off;
        if (left < kHeader) {
            if (isLast) return off;
            corrupt(path, off, "truncated record header");
        }
        std::uint64_t length = le(data.data() + off, 4);
        auto seq = std::int64_t(le(data.data() + off + 4, 8));
        std::uint64_t sum = le(data.data() + off + 12, 8);
        if (left - kHeader < length) {
            if (isLast) return off;
            corrupt(path, off, "truncated record body");
        }
        std::string_view body(data.data() + off + kHeader, length);
        if (checksum(seq, body) != sum) {
            // A torn write can leave a full-length record of garbage only as the very last one.
            if (isLast && off + kHeader + length == data.size()) return off;
            corrupt(path, off, "checksum mismatch");
        }
        if (seq <= prevSeq) corrupt(path, off, "seq not increasing");
        prevSeq = seq;
        if (fn) fn(seq, body);
        off += kHeader + length;
    }
    return off;
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
    scan();
}

FileLog::~FileLog() {
    if (fd_ >= 0) {
        if (policy_ != FsyncPolicy::Never) ::fsync(fd_);
        ::close(fd_);
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
            segments_.push_back({std::stoll(name.substr(0, 20)), dir_ + "/" + name});
    }
    ::closedir(d);
    std::sort(segments_.begin(), segments_.end(),
              [](const Segment& a, const Segment& b) { return a.firstSeq < b.firstSeq; });
    std::int64_t prev = 0;
    for (std::size_t i = 0; i < segments_.size(); ++i) {
        const Segment& s = segments_[i];
        std::string data = readFile(s.path);
        bool isLast = i + 1 == segments_.size();
        std::size_t valid = parseSegment(s.path, data, isLast, prev, nullptr);
        if (valid < data.size()) {
            if (warn_)
                warn_("event=log_torn_tail file=" + s.path + " offset=" + std::to_string(valid) +
                      " dropped_bytes=" + std::to_string(data.size() - valid));
            if (::truncate(s.path.c_str(), off_t(valid)) != 0)
                throw StorageError("cannot truncate " + s.path + ": " + std::strerror(errno));
        }
    }
    lastSeq_ = prev;
    if (segments_.empty()) {
        openSegment(1);
    } else {
        fd_ = ::open(segments_.back().path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd_ < 0) throw StorageError("cannot open " + segments_.back().path);
    }
}

void FileLog::openSegment(std::int64_t firstSeq) {
    if (fd_ >= 0) {
        if (policy_ != FsyncPolicy::Never) ::fsync(fd_);
        ::close(fd_);
    }
    std::string path = segmentPath(firstSeq);
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw StorageError("cannot create " + path + ": " + std::strerror(errno));
    syncDirectory(dir_);
    segments_.push_back({firstSeq, path});
}

void FileLog::append(std::int64_t seq, std::string_view body) {
    if (seq <= lastSeq_) throw std::logic_error("log append out of order");
    scratch_.clear();
    putLe(scratch_, body.size(), 4);
    putLe(scratch_, std::uint64_t(seq), 8);
    putLe(scratch_, checksum(seq, body), 8);
    scratch_.append(body);
    const char* p = scratch_.data();
    std::size_t left = scratch_.size();
    while (left > 0) {
        ssize_t n = ::write(fd_, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw StorageError("log write failed: " + std::string(std::strerror(errno)));
        }
        p += n;
        left -= std::size_t(n);
    }
    lastSeq_ = seq;
    dirty_ = true;
    if (policy_ == FsyncPolicy::Always) sync();
}

void FileLog::sync() {
    if (!dirty_) return;
    dirty_ = false;
    if (policy_ == FsyncPolicy::Never) return;
    // fdatasync: the file size is metadata it does flush, which is all appends need.
    if (::fdatasync(fd_) != 0)
        throw StorageError("log fsync failed: " + std::string(std::strerror(errno)));
}

void FileLog::replay(std::int64_t after,
                     const std::function<void(std::int64_t, std::string_view)>& fn) {
    std::int64_t prev = 0;
    for (std::size_t i = 0; i < segments_.size(); ++i) {
        std::string data = readFile(segments_[i].path);
        parseSegment(segments_[i].path, data, i + 1 == segments_.size(), prev,
                     [&](std::int64_t seq, std::string_view body) {
                         if (seq > after) fn(seq, body);
                     });
    }
}

void FileLog::truncatePrefix(std::int64_t seq) {
    // Segments are removed whole: start a fresh segment (unless the current one is still empty)
    // so the one holding `seq` becomes closed, then drop every segment whose successor starts at
    // or below seq+1 (all its records are <= seq). Records above `seq` are never lost.
    if (lastSeq_ >= segments_.back().firstSeq) openSegment(lastSeq_ + 1);
    while (segments_.size() > 1 && segments_[1].firstSeq <= seq + 1) {
        ::unlink(segments_.front().path.c_str());
        segments_.erase(segments_.begin());
    }
    syncDirectory(dir_);
}

}  // namespace replica
