#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace replica {

/// Writing the frame envelope (4-byte big-endian body length, docs/protocol.md "Frames"):
/// beginFrame reserves the length at the end of `out` and returns where it is; the caller
/// appends the body, then endFrame fills in the length. FrameReader is the reading side.
inline std::size_t beginFrame(std::string& out) {
    std::size_t at = out.size();
    out.append(4, '\0');
    return at;
}

inline void endFrame(std::string& out, std::size_t at) {
    auto n = std::uint32_t(out.size() - at - 4);
    out[at] = char(n >> 24);
    out[at + 1] = char(n >> 16);
    out[at + 2] = char(n >> 8);
    out[at + 3] = char(n);
}

}  // namespace replica
