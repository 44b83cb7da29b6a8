#pragma once
#include <cstddef>
#include <cstdint>

namespace replica {

/// Limits enforced when a frame is read (docs/protocol.md "Frames").
/// Plain value type; copy freely.
struct Limits {
    std::uint32_t maxFrameBytes = 1u << 20;  ///< body bytes, not counting the 4-byte length
    std::size_t maxStringBytes = 4096;       ///< per str or bin value
    std::size_t maxMapEntries = 32;
    std::size_t maxListItems = 10000;
    std::size_t maxDepth = 4;  ///< the body map is level 1
    /// The one exception to maxStringBytes: the bin `data` of an `inst_data` frame (a chunk of
    /// a snapshot in transfer, docs/protocol.md "Installing state").
    std::size_t maxChunkBytes = 512u << 10;
};

}  // namespace replica
