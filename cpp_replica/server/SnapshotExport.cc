#include "server/SnapshotExport.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "core/StateMachine.h"
#include "server/ChildExit.h"
#include "storage/FileLog.h"
#include "storage/FileSource.h"

namespace replica {

namespace {

// The child writes the state, then its 8-byte hash: the file's last 8 bytes.
constexpr std::uint64_t kTrailer = sizeof(std::uint64_t);

bool writeAll(int fd, const char* data, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, data, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        data += w;
        n -= std::size_t(w);
    }
    return true;
}

// The child's hash, at `off`; false when it cannot be read.
bool readTrailer(int fd, std::uint64_t off, std::uint64_t& hash) {
    try {
        readInto(fd, "the exported snapshot", off, sizeof hash, reinterpret_cast<char*>(&hash));
        return true;
    } catch (const StorageError&) {
        return false;
    }
}

}  // namespace

ExportedSnapshot::ExportedSnapshot(ExportedSnapshot&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), size_(other.size_), hash_(other.hash_),
      base_(other.base_) {}

ExportedSnapshot& ExportedSnapshot::operator=(ExportedSnapshot&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = std::exchange(other.fd_, -1);
        size_ = other.size_;
        hash_ = other.hash_;
        base_ = other.base_;
    }
    return *this;
}

ExportedSnapshot::~ExportedSnapshot() {
    if (fd_ >= 0) ::close(fd_);
}

void ExportedSnapshot::read(std::uint64_t off, std::size_t len, std::string& out) const {
    out.clear();
    if (off >= size_) return;
    out.resize(std::size_t(std::min<std::uint64_t>(len, size_ - off)));
    readInto(fd_, "the exported snapshot", base_ + off, out.size(), out.data());
}

int SnapshotExports::openSpool(std::string& error) const {
    if (!dir_.empty()) {
        int fd = ::open(dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0) return fd;
        if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
            error = "a snapshot file in " + dir_ + ": " + std::strerror(errno);
            return -1;
        }
        // this filesystem has no unnamed files: memory it is
    }
    int fd = ::memfd_create("replica-snap-open", MFD_CLOEXEC);
    if (fd < 0) error = std::string("memfd_create: ") + std::strerror(errno);
    return fd;
}

std::string SnapshotExports::start(std::uint64_t key, const StateMachine& machine,
                                   const std::function<void()>& inChild) {
    std::string error;
    int fd = openSpool(error);
    if (fd < 0) return error;
    pid_t pid = ::fork();
    if (pid < 0) {
        error = std::string("fork: ") + std::strerror(errno);
        ::close(fd);
        return error;
    }
    if (pid == 0) {
        inChild();
        int code = 1;
        try {
            // Streamed, hashed as it goes: the child holds one encoded piece, not a second copy
            // of the state beside the one it shares with the parent.
            std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> st(XXH3_createState(),
                                                                         XXH3_freeState);
            XXH3_64bits_reset(st.get());
            machine.writeSnapshot([&](std::string_view piece) {
                XXH3_64bits_update(st.get(), piece.data(), piece.size());
                if (!writeAll(fd, piece.data(), piece.size())) throw std::runtime_error("write");
            });
            std::uint64_t hash = XXH3_64bits_digest(st.get());
            if (writeAll(fd, reinterpret_cast<const char*>(&hash), sizeof hash)) code = 0;
        } catch (...) {
        }
        ::_exit(code);  // no destructors, no atexit handlers: they belong to the parent
    }
    children_.push_back({pid, fd, key});
    return "";
}

std::vector<SnapshotExports::Finished> SnapshotExports::reap() {
    std::vector<Finished> done;
    for (auto it = children_.begin(); it != children_.end();) {
        int status = 0;
        struct rusage usage {};
        pid_t r;
        do {
            r = ::wait4(it->pid, &status, WNOHANG, &usage);
        } while (r < 0 && errno == EINTR);
        if (r == 0) {
            ++it;
            continue;
        }
        Finished f{it->key, std::nullopt, "", r > 0 ? usage.ru_maxrss : 0};
        struct stat st {};
        std::uint64_t hash = 0;
        if (r < 0) {
            f.error = std::string("waitpid: ") + std::strerror(errno);
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            f.error = "child " + childExit(status);
        } else if (::fstat(it->fd, &st) != 0 || std::uint64_t(st.st_size) < kTrailer ||
                   !readTrailer(it->fd, std::uint64_t(st.st_size) - kTrailer, hash)) {
            f.error = "the child's snapshot file is unreadable";
        } else {
            f.snapshot.emplace(it->fd, std::uint64_t(st.st_size) - kTrailer, hash);
        }
        if (!f.snapshot) ::close(it->fd);
        done.push_back(std::move(f));
        it = children_.erase(it);
    }
    return done;
}

void SnapshotExports::killAll() {
    for (const Child& c : children_) {
        ::kill(c.pid, SIGKILL);
        int status = 0;
        while (::waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
        }
        ::close(c.fd);
    }
    children_.clear();
}

}  // namespace replica
