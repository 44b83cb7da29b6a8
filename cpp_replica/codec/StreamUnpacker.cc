#include "codec/StreamUnpacker.h"

#include <algorithm>
#include <utility>

namespace replica {

StreamUnpacker::StreamUnpacker(std::string_view bytes)
    : size_(bytes.size()), read_(bytes.size()), rest_(bytes) {}

StreamUnpacker::StreamUnpacker(ByteSource source, std::uint64_t size)
    : source_(std::move(source)), size_(size), read_(0) {}

bool StreamUnpacker::fill(std::size_t want) {
    if (rest_.size() >= want) return true;
    if (!source_ || read_ == size_) return false;
    buf_.erase(0, buf_.size() - rest_.size());  // drop what was consumed: rest_ is buf_'s tail
    std::size_t have = buf_.size();
    // At least a piece more, and at least double for a value larger than the buffer: a value
    // of k bytes is then re-parsed O(log k) times, not k / kPiece times.
    std::uint64_t target = std::max<std::uint64_t>(want, have + std::max(kPiece, have));
    target = std::min<std::uint64_t>(target, have + (size_ - read_));
    buf_.resize(std::size_t(target));
    while (have < buf_.size()) {
        std::size_t n = source_(&buf_[have], buf_.size() - have);
        if (n == 0) {
            size_ = read_;  // the source ended early: so does the input
            break;
        }
        have += n;
        read_ += n;
    }
    buf_.resize(have);
    rest_ = buf_;
    return rest_.size() >= want;
}

std::optional<std::uint32_t> StreamUnpacker::arrayHeader() {
    if (!fill(1)) throw msgpack::insufficient_bytes("insufficient bytes");
    auto type = std::uint8_t(rest_[0]);
    std::size_t len = (type & 0xf0) == 0x90 ? 1 : type == 0xdc ? 3 : type == 0xdd ? 5 : 0;
    if (len == 0) return std::nullopt;
    if (!fill(len)) throw msgpack::insufficient_bytes("insufficient bytes");
    std::uint32_t n = len == 1 ? type & 0x0fu : 0;
    for (std::size_t i = 1; i < len; ++i) n = (n << 8) | std::uint8_t(rest_[i]);  // big-endian
    rest_.remove_prefix(len);
    return n;
}

const msgpack::object& StreamUnpacker::next(std::size_t depth) {
    if (!fill(1)) throw msgpack::insufficient_bytes("insufficient bytes");
    for (;;) {
        // Every element takes at least one byte, so no honest count exceeds the bytes left.
        auto n = std::size_t(std::min<std::uint64_t>(size_ - consumed(), 0xffffffffu));
        msgpack::unpack_limit limit(n, n, n, n, n, depth);
        zone_.clear();
        std::size_t off = 0;
        try {
            value_ = msgpack::unpack(zone_, rest_.data(), rest_.size(), off, nullptr, nullptr, limit);
        } catch (const msgpack::insufficient_bytes&) {
            if (!fill(rest_.size() + 1)) throw;
            continue;  // the value goes on past the buffer: parse it again with more bytes
        }
        rest_.remove_prefix(off);
        return value_;
    }
}

}  // namespace replica
