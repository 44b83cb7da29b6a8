#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace replica {

/// Minimal MessagePack writer into a std::string, used for every reply and frame we produce.
///
/// Why not msgpack::packer: replies are hashed into the digest, so their bytes must be canonical
/// and identical on every replica; this writer always picks the smallest encoding for ints and
/// lengths (the same rules as Python's msgpack), with no configuration that could differ.
/// Not thread-safe; cheap to create.
///
/// The encoding rules live once, in the static put*() functions that write into a raw buffer;
/// the member functions append through them. Hot paths (the apply replies) call put*() directly
/// into a buffer sized up front: one resize instead of a std::string append per field, which
/// was a tenth of apply() in callgrind.
class Packer {
public:
    /// Why reserve: replies are built in fresh strings; growing one from the small-string
    /// buffer doubles it four times (a malloc and copy each), which showed in the apply profile.
    explicit Packer(std::string& out) : out_(out) {
        if (out_.capacity() < 256) out_.reserve(256);
    }

    // Largest header put*() writes before a string's bytes, and the largest integer.
    static constexpr std::size_t kMaxHeader = 5;
    static constexpr std::size_t kMaxInt = 9;

    static char* putMapHeader(char* p, std::uint32_t n) {
        if (n < 16) {
            *p++ = char(0x80 | n);
            return p;
        }
        return n < 65536 ? tagged(p, 0xde, n, 2) : tagged(p, 0xdf, n, 4);
    }
    static char* putArrayHeader(char* p, std::uint32_t n) {
        if (n < 16) {
            *p++ = char(0x90 | n);
            return p;
        }
        return n < 65536 ? tagged(p, 0xdc, n, 2) : tagged(p, 0xdd, n, 4);
    }
    static char* putBool(char* p, bool v) {
        *p++ = char(v ? 0xc3 : 0xc2);
        return p;
    }
    static char* putInt(char* p, std::int64_t v) {
        if (v >= 0 && v < 128) {
            *p++ = char(v);
            return p;
        }
        return putIntSlow(p, v);
    }
    static char* putStrHeader(char* p, std::size_t n) {
        if (n < 32) {
            *p++ = char(0xa0 | n);
            return p;
        }
        return n < 256 ? tagged(p, 0xd9, n, 1) : n < 65536 ? tagged(p, 0xda, n, 2) : tagged(p, 0xdb, n, 4);
    }
    static char* putStr(char* p, std::string_view s) {
        p = putStrHeader(p, s.size());
        std::memcpy(p, s.data(), s.size());
        return p + s.size();
    }
    static char* putBinHeader(char* p, std::size_t n) {
        return n < 256 ? tagged(p, 0xc4, n, 1) : n < 65536 ? tagged(p, 0xc5, n, 2) : tagged(p, 0xc6, n, 4);
    }

    void mapHeader(std::uint32_t n) {
        if (n < 16) out_.push_back(char(0x80 | n));
        else append(putMapHeader(buf_, n));
    }
    void arrayHeader(std::uint32_t n) {
        if (n < 16) out_.push_back(char(0x90 | n));
        else append(putArrayHeader(buf_, n));
    }
    void nil() { out_.push_back(char(0xc0)); }
    void boolean(bool v) { out_.push_back(char(v ? 0xc3 : 0xc2)); }
    void integer(std::int64_t v) {
        if (v >= 0 && v < 128) out_.push_back(char(v));
        else append(putIntSlow(buf_, v));
    }
    /// An unsigned 64-bit value (hashes): the same smallest encoding, uint 64 above int64.
    void uinteger(std::uint64_t v) {
        if (v > std::uint64_t(INT64_MAX)) append(tagged(buf_, 0xcf, v, 8));
        else integer(std::int64_t(v));
    }
    void str(std::string_view s) {
        append(putStrHeader(buf_, s.size()));
        out_.append(s.data(), s.size());
    }
    void bin(std::string_view b) {
        append(putBinHeader(buf_, b.size()));
        out_.append(b.data(), b.size());
    }
    /// Appends bytes that are already one encoded MessagePack value.
    void raw(std::string_view encoded) { out_.append(encoded); }
    /// key + value shorthands for maps with string keys.
    void kv(std::string_view k, std::int64_t v) { str(k); integer(v); }
    void kv(std::string_view k, std::string_view v) { str(k); str(v); }
    void kv(std::string_view k, const char* v) { str(k); str(v); }
    void kvBool(std::string_view k, bool v) { str(k); boolean(v); }

private:
    static char* tagged(char* p, std::uint8_t tag, std::uint64_t v, int bytes) {
        *p++ = char(tag);
        for (int i = 0; i < bytes; ++i) *p++ = char((v >> (8 * (bytes - 1 - i))) & 0xff);
        return p;
    }
    static char* putIntSlow(char* p, std::int64_t v);
    void append(const char* end) { out_.append(buf_, std::size_t(end - buf_)); }

    std::string& out_;
    char buf_[kMaxInt];
};

}  // namespace replica
