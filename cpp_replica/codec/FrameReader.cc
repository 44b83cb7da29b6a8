#include "codec/FrameReader.h"

#include "codec/FrameError.h"

namespace replica {

void FrameReader::drain(std::vector<std::string>& out) {
    while (buffer_.size() - consumed_ >= 4) {
        const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_);
        std::uint32_t length = (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) |
                               (std::uint32_t(p[2]) << 8) | std::uint32_t(p[3]);
        if (length > max_) {
            throw FrameError("too_large", "declared frame length " + std::to_string(length) +
                                              " exceeds limit " + std::to_string(max_));
        }
        if (buffer_.size() - consumed_ - 4 < length) break;
        out.emplace_back(buffer_, consumed_ + 4, length);
        consumed_ += 4 + std::size_t(length);
    }
    // Why compact lazily: erasing the front on every frame is quadratic under pipelining.
    if (consumed_ == buffer_.size()) {
        buffer_.clear();
        consumed_ = 0;
    } else if (consumed_ > 65536 && consumed_ * 2 > buffer_.size()) {
        buffer_.erase(0, consumed_);
        consumed_ = 0;
    }
}

}  // namespace replica
