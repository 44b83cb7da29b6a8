#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "codec/ByteSource.h"
#include "codec/Msgpack.h"

namespace replica {

/// Reads a long MessagePack stream one value at a time, so that a large document (a snapshot)
/// can be decoded element by element: only the value being read exists as a msgpack object,
/// never a tree of the whole document. The input is a byte view, or a ByteSource read through
/// a buffer of about kPiece bytes (more only while one value is larger than that).
///
/// Every declared size (array, map, str, bin, ext) is bounded by the bytes left in the input:
/// msgpack-c allocates a container's declared size before reading it, so without the bound a
/// 5-byte array header could ask for gigabytes. Not thread-safe.
class StreamUnpacker {
public:
    static constexpr std::size_t kPiece = std::size_t(1) << 20;

    /// Reads `bytes` (not copied: they must outlive this instance).
    explicit StreamUnpacker(std::string_view bytes);
    /// Reads the `size` bytes `source` gives (a source that ends early ends the input there).
    StreamUnpacker(ByteSource source, std::uint64_t size);

    /// If the next value is an array, consumes its header alone and returns its element count
    /// (the elements are read next); otherwise consumes nothing and returns nullopt. Throws
    /// msgpack::insufficient_bytes when the input ends first.
    std::optional<std::uint32_t> arrayHeader();

    /// Consumes the next whole value and returns it, unpacked into a zone of this instance:
    /// valid until the next call. Its containers may nest at most `depth` deep (the value itself
    /// is at depth 1). Throws msgpack::unpack_error (insufficient_bytes at the input's end,
    /// parse_error, a *_size_overflow) and leaves the input where it was.
    const msgpack::object& next(std::size_t depth);

    /// Bytes consumed so far.
    std::uint64_t consumed() const { return read_ - rest_.size(); }

private:
    /// Makes rest_ hold at least `want` bytes if the input has them; returns whether it does.
    bool fill(std::size_t want);

    ByteSource source_;     // empty when reading a view
    std::uint64_t size_;    // bytes of the whole input
    std::uint64_t read_;    // bytes taken from the input (the view: all of them)
    std::string buf_;       // bytes taken from the source and not yet dropped
    std::string_view rest_; // unread bytes: a view of the input, or of buf_'s tail
    msgpack::zone zone_;    // reused by every next(): cleared, its first chunk kept
    msgpack::object value_;
};

}  // namespace replica
