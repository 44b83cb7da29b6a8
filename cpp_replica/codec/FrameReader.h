#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "codec/Limits.h"

namespace replica {

/// Incremental splitter of a byte stream into frame bodies (4-byte big-endian length + body).
///
/// Not thread-safe; one per connection. Deterministic: the same bytes fed in any chunking yield
/// the same bodies. A declared length above Limits::maxFrameBytes throws FrameError("too_large")
/// as soon as the 4 length bytes are seen, before any of the body is buffered, so a hostile peer
/// cannot make us allocate.
class FrameReader {
public:
    explicit FrameReader(std::uint32_t maxFrameBytes) : max_(maxFrameBytes) {}

    /// Appends received bytes.
    void feed(const char* data, std::size_t size) { buffer_.append(data, size); }

    /// Moves every complete body buffered so far into `out` (appending). Throws FrameError when a
    /// declared length exceeds the limit; the reader is then unusable.
    void drain(std::vector<std::string>& out);

    /// Bytes received but not yet part of a complete frame (a truncated frame at close).
    std::size_t pending() const { return buffer_.size() - consumed_; }

private:
    std::uint32_t max_;
    std::string buffer_;
    std::size_t consumed_ = 0;
};

}  // namespace replica
