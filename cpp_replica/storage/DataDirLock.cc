#include "storage/DataDirLock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "storage/FileLog.h"  // StorageError

namespace replica {

namespace {

/// The pid recorded in the lock file, or 0.
pid_t recordedHolder(int fd) {
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return 0;
    long pid = std::strtol(buf, nullptr, 10);
    return pid > 0 ? pid_t(pid) : 0;
}

bool alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

}  // namespace

DataDirLock::DataDirLock(const std::string& dir) {
    const std::string path = dir + "/" + kFile;
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw StorageError("cannot open " + path + ": " + std::strerror(errno));
    const auto giveUp = std::chrono::steady_clock::now() + std::chrono::milliseconds(kChildGraceMs);
    while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        if (err == EINTR) continue;
        const pid_t holder = err == EWOULDBLOCK ? recordedHolder(fd_) : 0;
        // The recorded holder is gone: its forked child still holds the lock, dying with it.
        if (err == EWOULDBLOCK && holder > 0 && !alive(holder) &&
            std::chrono::steady_clock::now() < giveUp) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            continue;
        }
        ::close(fd_);
        fd_ = -1;
        if (err != EWOULDBLOCK)
            throw StorageError("cannot lock " + path + ": " + std::strerror(err));
        throw StorageError("data dir " + dir + " is in use by another replica_server" +
                           (holder > 0 ? " (pid " + std::to_string(holder) + ")" : "") +
                           "; lock " + path);
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    // Best effort: the pid only improves the message a second server prints.
    const bool recorded = ::ftruncate(fd_, 0) == 0 &&
                          ::pwrite(fd_, pid.data(), pid.size(), 0) == ssize_t(pid.size());
    (void)recorded;
}

DataDirLock::~DataDirLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock (a forked child's copy has exited)
}

}  // namespace replica
