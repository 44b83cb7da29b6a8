#include "storage/FileSource.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include "storage/FileLog.h"

namespace replica {

ReadOnlyFile::ReadOnlyFile(const std::string& path) : fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd < 0) throw StorageError("cannot read " + path + ": " + std::strerror(errno));
}

ReadOnlyFile::~ReadOnlyFile() { ::close(fd); }

void readInto(int fd, const std::string& path, std::uint64_t off, std::size_t n, char* out) {
    std::size_t got = 0;
    while (got < n) {
        ssize_t r = ::pread(fd, out + got, n - got, off_t(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            throw StorageError("cannot read " + path + ": " +
                               (r < 0 ? std::string(std::strerror(errno)) : std::string("short read")));
        got += std::size_t(r);
    }
}

ByteSource fileSource(int fd, std::uint64_t from, std::uint64_t size, std::string path) {
    return [fd, at = from, end = from + size, path = std::move(path)](char* buf,
                                                                      std::size_t n) mutable {
        n = std::size_t(std::min<std::uint64_t>(n, end - at));
        readInto(fd, path, at, n, buf);
        at += n;
        return n;
    };
}

std::uint64_t pump(const ByteSource& source, const ByteSink& sink) {
    std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> hash(XXH3_createState(), XXH3_freeState);
    XXH3_64bits_reset(hash.get());
    std::string piece(std::size_t(1) << 20, '\0');
    while (std::size_t n = source(piece.data(), piece.size())) {
        XXH3_64bits_update(hash.get(), piece.data(), n);
        if (sink) sink(std::string_view(piece.data(), n));
    }
    return XXH3_64bits_digest(hash.get());
}

}  // namespace replica
