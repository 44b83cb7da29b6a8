#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace replica {

/// Minimal MessagePack writer into a std::string, used for every reply and frame we produce.
///
/// Why not msgpack::packer: replies are hashed into the digest, so their bytes must be canonical
/// and identical on every replica; this writer always picks the smallest encoding for ints and
/// lengths (the same rules as Python's msgpack), with no configuration that could differ.
/// Not thread-safe; cheap to create.
class Packer {
public:
    /// Why reserve: replies are built in fresh strings; growing one from the small-string
    /// buffer doubles it four times (a malloc and copy each), which showed in the apply profile.
    explicit Packer(std::string& out) : out_(out) {
        if (out_.capacity() < 256) out_.reserve(256);
    }

    void mapHeader(std::uint32_t n);
    void arrayHeader(std::uint32_t n);
    void nil() { out_.push_back(char(0xc0)); }
    void boolean(bool v) { out_.push_back(char(v ? 0xc3 : 0xc2)); }
    void integer(std::int64_t v);
    /// An unsigned 64-bit value (hashes): the same smallest encoding, uint 64 above int64.
    void uinteger(std::uint64_t v);
    void str(std::string_view s);
    void bin(std::string_view b);
    /// Appends bytes that are already one encoded MessagePack value.
    void raw(std::string_view encoded) { out_.append(encoded); }
    /// key + value shorthands for maps with string keys.
    void kv(std::string_view k, std::int64_t v) { str(k); integer(v); }
    void kv(std::string_view k, std::string_view v) { str(k); str(v); }
    void kv(std::string_view k, const char* v) { str(k); str(v); }
    void kvBool(std::string_view k, bool v) { str(k); boolean(v); }

private:
    void be(std::uint64_t v, int bytes);
    std::string& out_;
};

}  // namespace replica
