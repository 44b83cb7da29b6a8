#include "storage/SpareSegment.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <vector>

namespace replica {
namespace {

const char kReady[] = "/spare.zero";
const char kPartial[] = "/spare.tmp";

}  // namespace

SpareSegment::SpareSegment(std::string dir, std::uint64_t bytes)
    : dir_(std::move(dir)), bytes_(bytes), thread_([this] { run(); }) {}

SpareSegment::~SpareSegment() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        quit_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

bool SpareSegment::waitReady(int ms) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return ready_ || (!wanted_ && !making_); });
    return ready_;
}

bool SpareSegment::take(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    bool taken = ready_ && ::rename((dir_ + kReady).c_str(), path.c_str()) == 0;
    // Not ready, or gone (the log directory was swapped by a snapshot install): make another.
    ready_ = false;
    wanted_ = true;
    cv_.notify_all();
    return taken;
}

void SpareSegment::run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
        cv_.wait(lock, [this] { return quit_ || wanted_; });
        if (quit_) return;
        wanted_ = false;
        making_ = true;
        lock.unlock();
        bool made = make();
        lock.lock();
        // A take() while we were busy asked for one more: the loop sees wanted_ again.
        ready_ = made;
        making_ = false;
        cv_.notify_all();
    }
}

bool SpareSegment::make() {
    std::string ready = dir_ + kReady;
    struct stat st {};
    if (::stat(ready.c_str(), &st) == 0 && std::uint64_t(st.st_size) == bytes_) return true;  // from before a restart
    std::string partial = dir_ + kPartial;
    int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return false;  // e.g. the directory is being replaced: the next take() retries
    const std::vector<char> zeros(1u << 20, '\0');
    bool ok = true;
    for (std::uint64_t at = 0; ok && at < bytes_;) {
        ssize_t n = ::pwrite(fd, zeros.data(), std::size_t(std::min<std::uint64_t>(zeros.size(), bytes_ - at)),
                             off_t(at));
        if (n < 0 && errno == EINTR) continue;
        ok = n > 0;
        if (ok) at += std::uint64_t(n);
    }
    ok = ok && ::fdatasync(fd) == 0;  // blocks allocated and the size durable: no metadata later
    ::close(fd);
    if (!ok || ::rename(partial.c_str(), ready.c_str()) != 0) {
        ::unlink(partial.c_str());  // e.g. disk full: segments are plain appends meanwhile
        return false;
    }
    return true;
}

}  // namespace replica
