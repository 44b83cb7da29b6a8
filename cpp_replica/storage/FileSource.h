#pragma once
#include <cstdint>
#include <string>

#include "codec/ByteSink.h"
#include "codec/ByteSource.h"

namespace replica {

/// A file opened read-only, closed when this goes. Throws StorageError naming `path` when the
/// file cannot be opened.
struct ReadOnlyFile {
    int fd;
    explicit ReadOnlyFile(const std::string& path);
    ~ReadOnlyFile();
    ReadOnlyFile(const ReadOnlyFile&) = delete;
    ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;
};

/// Reads [off, off+n) of the open file `fd` into `out` with pread; throws StorageError naming
/// `path` on a read error or a short read.
void readInto(int fd, const std::string& path, std::uint64_t off, std::size_t n, char* out);

/// The `size` bytes of the open file `fd` from offset `from`, in order, read with pread (the
/// file offset is neither used nor moved; `fd` must stay open while the source is read). Throws
/// StorageError naming `path` on a read error or when the file ends before `size` bytes.
ByteSource fileSource(int fd, std::uint64_t from, std::uint64_t size, std::string path);

/// Hands everything `source` has left to `sink` in pieces of up to 1 MiB and returns the XXH3-64
/// of those bytes: a file is checksummed, or copied and checksummed, holding one piece.
std::uint64_t pump(const ByteSource& source, const ByteSink& sink = nullptr);

}  // namespace replica
