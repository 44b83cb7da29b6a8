#pragma once
#include <cstddef>
#include <functional>

namespace replica {

/// Hands out a long byte stream piece by piece, in order: each call copies up to `n` of the next
/// bytes into `buf` and returns how many it copied, 0 only once the stream is over. The reading
/// side of ByteSink: lets a snapshot be restored from a file through a bounded buffer instead of
/// being read into memory whole first. A source may throw to stop the reader.
using ByteSource = std::function<std::size_t(char* buf, std::size_t n)>;

}  // namespace replica
