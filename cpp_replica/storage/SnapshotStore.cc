#include "storage/SnapshotStore.h"

#include <sys/stat.h>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "storage/FileLog.h"
#include "storage/FileSource.h"
#include "storage/Layout.h"

namespace replica {
namespace {

const std::uint64_t kPayloadAt = std::strlen(Layout::kSnapshotMagic) + 8;

// Checks a snapshot file's magic; returns the checksum its header holds and sets `size` to the
// whole file's.
std::uint64_t readHeader(int fd, const std::string& path, std::uint64_t& size) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw StorageError("read " + path + ": " + std::strerror(errno));
    size = std::uint64_t(st.st_size);
    const std::size_t magic = std::strlen(Layout::kSnapshotMagic);
    std::string header(kPayloadAt, '\0');
    if (size < kPayloadAt ||
        fileSource(fd, 0, kPayloadAt, path)(&header[0], kPayloadAt) != kPayloadAt ||
        header.compare(0, magic, Layout::kSnapshotMagic) != 0)
        throw StorageError("corrupt snapshot " + path + " at offset 0: bad header");
    std::uint64_t sum = 0;
    for (int i = 7; i >= 0; --i) sum = (sum << 8) | std::uint8_t(header[magic + std::size_t(i)]);
    return sum;
}

std::vector<std::pair<std::int64_t, std::string>> listSnapshots(const std::string& dir) {
    std::vector<std::pair<std::int64_t, std::string>> out;
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return out;
    std::string prefix = Layout::kSnapshotPrefix, suffix = Layout::kSnapshotSuffix;
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.size() == prefix.size() + 20 + suffix.size() && name.rfind(prefix, 0) == 0 &&
            name.substr(prefix.size() + 20) == suffix)
            out.emplace_back(std::stoll(name.substr(prefix.size(), 20)), dir + "/" + name);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

void writeAll(int fd, std::string_view data, const std::string& path) {
    const char* p = data.data();
    std::size_t left = data.size();
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw StorageError("write " + path + ": " + std::strerror(errno));
        p += n;
        left -= std::size_t(n);
    }
}

}  // namespace

void SnapshotStore::write(std::int64_t seq, const Encoder& encode) const {
    writeAs(pathOf(seq), encode);
}

std::string SnapshotStore::pathOf(std::int64_t seq) const {
    char name[64];
    std::snprintf(name, sizeof name, "%s%020lld%s", Layout::kSnapshotPrefix,
                  static_cast<long long>(seq), Layout::kSnapshotSuffix);
    return dir_ + "/" + name;
}

void SnapshotStore::writeAs(const std::string& path, const Encoder& encode) const {
    std::string tmp = dir_ + "/snapshot.tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw StorageError("create " + tmp + ": " + std::strerror(errno));
    try {
        // The header holds the payload's checksum, known only once it is all written: zeros
        // first, the real one over them before the fsync (the rename below is the commit).
        std::string header = Layout::kSnapshotMagic;
        const std::size_t magic = header.size();
        header.append(8, '\0');
        writeAll(fd, header, tmp);
        std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> hash(XXH3_createState(),
                                                                       XXH3_freeState);
        XXH3_64bits_reset(hash.get());
        // In chunks, each handed to writeback once written and waited for one chunk later: no
        // burst of ~100 MB of dirty pages at the final fsync for the log's fdatasyncs (same
        // disk) to queue behind.
        constexpr std::uint64_t kChunk = 8u << 20;
        std::uint64_t off = 0;  // payload bytes written
        auto writeback = [&](std::uint64_t start, std::uint64_t n) {
#ifdef SYNC_FILE_RANGE_WRITE
            off_t at = off_t(header.size() + start);
            if (start >= kChunk)
                ::sync_file_range(fd, at - off_t(kChunk), off_t(kChunk),
                                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                      SYNC_FILE_RANGE_WAIT_AFTER);
            ::sync_file_range(fd, at, off_t(n), SYNC_FILE_RANGE_WRITE);
#else
            (void)start, (void)n;
#endif
        };
        encode([&](std::string_view piece) {
            XXH3_64bits_update(hash.get(), piece.data(), piece.size());
            while (!piece.empty()) {  // up to each chunk's end: save() passes one large piece
                auto n = std::size_t(std::min<std::uint64_t>(piece.size(), kChunk - off % kChunk));
                writeAll(fd, piece.substr(0, n), tmp);
                piece.remove_prefix(n);
                off += n;
                if (off % kChunk == 0) writeback(off - kChunk, kChunk);
            }
        });
        if (off % kChunk != 0) writeback(off - off % kChunk, off % kChunk);
        std::uint64_t sum = XXH3_64bits_digest(hash.get());
        for (std::size_t i = 0; i < 8; ++i) header[magic + i] = char((sum >> (8 * i)) & 0xff);
        if (::pwrite(fd, header.data(), header.size(), 0) != ssize_t(header.size()))
            throw StorageError("write " + tmp + ": " + std::strerror(errno));
    } catch (...) {
        ::close(fd);
        throw;
    }
    if (::fsync(fd) != 0) {
        ::close(fd);
        throw StorageError("fsync " + tmp + ": " + std::strerror(errno));
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0)
        throw StorageError("rename " + tmp + ": " + std::strerror(errno));
    syncDirectory(dir_);
}

void SnapshotStore::stage(const Encoder& encode) const {
    writeAs(dir_ + "/" + Layout::kStagedSnapshot, encode);
}

void SnapshotStore::promote(std::int64_t seq) const {
    std::string staged = dir_ + "/" + Layout::kStagedSnapshot;
    if (::rename(staged.c_str(), pathOf(seq).c_str()) != 0)
        throw StorageError("rename " + staged + ": " + std::strerror(errno));
    syncDirectory(dir_);
    keepOnly(seq);
}

bool SnapshotStore::hasStaged() const {
    struct stat st {};
    return ::stat((dir_ + "/" + Layout::kStagedSnapshot).c_str(), &st) == 0;
}

void SnapshotStore::removeStaged() const {
    if (::unlink((dir_ + "/" + Layout::kStagedSnapshot).c_str()) == 0) syncDirectory(dir_);
}

void SnapshotStore::keepOnly(std::int64_t seq) const {
    bool any = false;
    for (auto& [s, p] : listSnapshots(dir_))
        if (s != seq) any = ::unlink(p.c_str()) == 0 || any;
    if (any) syncDirectory(dir_);
}

void SnapshotStore::prune(std::int64_t seq) const {
    bool any = false;
    for (auto& [s, p] : listSnapshots(dir_))
        if (s < seq) any = ::unlink(p.c_str()) == 0 || any;
    if (any) syncDirectory(dir_);
}

void SnapshotStore::removeTemp() const { ::unlink((dir_ + "/snapshot.tmp").c_str()); }

std::vector<std::int64_t> SnapshotStore::seqs() const {
    std::vector<std::int64_t> out;
    for (auto& [s, p] : listSnapshots(dir_)) out.push_back(s);
    return out;
}

OpenedSnapshot SnapshotStore::open(std::int64_t seq) const {
    const std::string path = pathOf(seq);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw StorageError("open " + path + ": " + std::strerror(errno));
    try {
        std::uint64_t size = 0;
        const std::uint64_t sum = readHeader(fd, path, size);
        return OpenedSnapshot{fd, kPayloadAt, size - kPayloadAt, sum, path};
    } catch (...) {
        ::close(fd);
        throw;
    }
}

bool SnapshotStore::has(std::int64_t seq) const {
    for (auto& [s, p] : listSnapshots(dir_))
        if (s == seq) return true;
    return false;
}

std::uint64_t SnapshotStore::fileSize(std::int64_t seq) const {
    for (auto& [s, p] : listSnapshots(dir_)) {
        struct stat st {};
        if (s == seq && ::stat(p.c_str(), &st) == 0) return std::uint64_t(st.st_size);
    }
    return 0;
}

std::optional<LoadedSnapshot> SnapshotStore::loadLatest(const Decoder& decode) const {
    auto all = listSnapshots(dir_);
    std::vector<SkippedSnapshot> skipped;
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
        const auto& [seq, path] = *it;
        std::optional<ReadOnlyFile> file;
        std::uint64_t size = 0;
        try {
            file.emplace(path);
            const std::uint64_t sum = readHeader(file->fd, path, size);
            // Verified whole before anything is decoded: a damaged file is named as such, never
            // half-restored. Reading it twice costs a second pass over the page cache; holding
            // it whole cost its size in memory.
            if (pump(fileSource(file->fd, kPayloadAt, size - kPayloadAt, path)) != sum)
                throw StorageError("corrupt snapshot " + path + " at offset " +
                                   std::to_string(kPayloadAt) + ": checksum mismatch");
        } catch (const StorageError& e) {
            skipped.push_back({seq, path, e.what()});
            continue;
        }
        decode(fileSource(file->fd, kPayloadAt, size - kPayloadAt, path), size - kPayloadAt);
        return LoadedSnapshot{seq, size, std::move(skipped)};
    }
    if (skipped.empty()) return std::nullopt;
    throw StorageError(skipped.front().reason +
                       (skipped.size() > 1 ? "; no older snapshot is intact either" : ""));
}

void SnapshotStore::setAside(const std::string& path) const {
    const std::string aside = path + ".damaged";
    if (::rename(path.c_str(), aside.c_str()) != 0)
        throw StorageError("rename " + path + ": " + std::strerror(errno));
    syncDirectory(dir_);
}

}  // namespace replica
