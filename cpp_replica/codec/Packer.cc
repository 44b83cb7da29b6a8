#include "codec/Packer.h"

#include <cstdint>

namespace replica {

void Packer::be(std::uint64_t v, int bytes) {
    char buf[8];
    for (int i = 0; i < bytes; ++i) buf[i] = char((v >> (8 * (bytes - 1 - i))) & 0xff);
    out_.append(buf, std::size_t(bytes));
}

void Packer::mapHeader(std::uint32_t n) {
    if (n < 16) {
        out_.push_back(char(0x80 | n));
    } else if (n < 65536) {
        out_.push_back(char(0xde));
        be(n, 2);
    } else {
        out_.push_back(char(0xdf));
        be(n, 4);
    }
}

void Packer::arrayHeader(std::uint32_t n) {
    if (n < 16) {
        out_.push_back(char(0x90 | n));
    } else if (n < 65536) {
        out_.push_back(char(0xdc));
        be(n, 2);
    } else {
        out_.push_back(char(0xdd));
        be(n, 4);
    }
}

void Packer::uinteger(std::uint64_t v) {
    if (v > std::uint64_t(INT64_MAX)) {
        out_.push_back(char(0xcf));
        be(v, 8);
    } else {
        integer(std::int64_t(v));
    }
}

void Packer::integer(std::int64_t v) {
    if (v >= 0) {
        auto u = std::uint64_t(v);
        if (u < 128) {
            out_.push_back(char(u));
        } else if (u < 256) {
            out_.push_back(char(0xcc));
            be(u, 1);
        } else if (u < 65536) {
            out_.push_back(char(0xcd));
            be(u, 2);
        } else if (u < 4294967296ull) {
            out_.push_back(char(0xce));
            be(u, 4);
        } else {
            out_.push_back(char(0xcf));
            be(u, 8);
        }
    } else if (v >= -32) {
        out_.push_back(char(std::uint8_t(v)));
    } else if (v >= -128) {
        out_.push_back(char(0xd0));
        be(std::uint64_t(v), 1);
    } else if (v >= -32768) {
        out_.push_back(char(0xd1));
        be(std::uint64_t(v), 2);
    } else if (v >= -2147483648ll) {
        out_.push_back(char(0xd2));
        be(std::uint64_t(v), 4);
    } else {
        out_.push_back(char(0xd3));
        be(std::uint64_t(v), 8);
    }
}

void Packer::str(std::string_view s) {
    std::size_t n = s.size();
    if (n < 32) {
        out_.push_back(char(0xa0 | n));
    } else if (n < 256) {
        out_.push_back(char(0xd9));
        be(n, 1);
    } else if (n < 65536) {
        out_.push_back(char(0xda));
        be(n, 2);
    } else {
        out_.push_back(char(0xdb));
        be(n, 4);
    }
    out_.append(s);
}

void Packer::bin(std::string_view b) {
    std::size_t n = b.size();
    if (n < 256) {
        out_.push_back(char(0xc4));
        be(n, 1);
    } else if (n < 65536) {
        out_.push_back(char(0xc5));
        be(n, 2);
    } else {
        out_.push_back(char(0xc6));
        be(n, 4);
    }
    out_.append(b);
}

}  // namespace replica
