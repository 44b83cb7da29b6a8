#include "storage/SnapshotStore.h"

#include <sys/stat.h>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <vector>

#include "storage/FileLog.h"
#include "storage/Layout.h"

namespace replica {
namespace {

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

void SnapshotStore::write(std::int64_t seq, const std::string& payload) const {
    std::string tmp = dir_ + "/snapshot.tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw StorageError("create " + tmp + ": " + std::strerror(errno));
    std::string header = Layout::kSnapshotMagic;
    std::uint64_t sum = XXH3_64bits(payload.data(), payload.size());
    for (int i = 0; i < 8; ++i) header.push_back(char((sum >> (8 * i)) & 0xff));
    try {
        writeAll(fd, header, tmp);
        // In chunks, each handed to writeback as it is written and waited for one chunk later:
        // no burst of ~100 MB of dirty pages at the final fsync for the log's fdatasyncs (same
        // disk) to queue behind.
        constexpr std::size_t kChunk = 8u << 20;
        std::size_t off = 0;
        while (off < payload.size()) {
            std::size_t n = std::min(kChunk, payload.size() - off);
            writeAll(fd, std::string_view(payload).substr(off, n), tmp);
            off_t at = off_t(header.size() + off);
#ifdef SYNC_FILE_RANGE_WRITE
            if (off >= kChunk)
                ::sync_file_range(fd, at - off_t(kChunk), off_t(kChunk),
                                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                      SYNC_FILE_RANGE_WAIT_AFTER);
            ::sync_file_range(fd, at, off_t(n), SYNC_FILE_RANGE_WRITE);
#endif
            off += n;
        }
    } catch (...) {
        ::close(fd);
        throw;
    }
    if (::fsync(fd) != 0) {
        ::close(fd);
        throw StorageError("fsync " + tmp + ": " + std::strerror(errno));
    }
    ::close(fd);
    char name[64];
    std::snprintf(name, sizeof name, "%s%020lld%s", Layout::kSnapshotPrefix,
                  static_cast<long long>(seq), Layout::kSnapshotSuffix);
    std::string path = dir_ + "/" + name;
    if (::rename(tmp.c_str(), path.c_str()) != 0)
        throw StorageError("rename " + tmp + ": " + std::strerror(errno));
    syncDirectory(dir_);
}

void SnapshotStore::save(std::int64_t seq, const std::string& payload) {
    write(seq, payload);
    for (auto& [s, p] : listSnapshots(dir_))
        if (s != seq) ::unlink(p.c_str());
}

void SnapshotStore::prune(std::int64_t seq) const {
    bool any = false;
    for (auto& [s, p] : listSnapshots(dir_))
        if (s < seq) any = ::unlink(p.c_str()) == 0 || any;
    if (any) syncDirectory(dir_);
}

void SnapshotStore::removeTemp() const { ::unlink((dir_ + "/snapshot.tmp").c_str()); }

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

std::optional<std::pair<std::int64_t, std::string>> SnapshotStore::loadLatest() const {
    auto all = listSnapshots(dir_);
    if (all.empty()) return std::nullopt;
    auto& [seq, path] = all.back();
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    std::string data = ss.str();
    std::size_t magic = std::strlen(Layout::kSnapshotMagic);
    if (data.size() < magic + 8 || data.compare(0, magic, Layout::kSnapshotMagic) != 0)
        throw StorageError("corrupt snapshot " + path + " at offset 0: bad header");
    std::uint64_t sum = 0;
    for (int i = 7; i >= 0; --i) sum = (sum << 8) | std::uint8_t(data[magic + std::size_t(i)]);
    std::string payload = data.substr(magic + 8);
    if (XXH3_64bits(payload.data(), payload.size()) != sum)
        throw StorageError("corrupt snapshot " + path + " at offset " +
                           std::to_string(magic + 8) + ": checksum mismatch");
    return std::make_pair(seq, std::move(payload));
}

}  // namespace replica
