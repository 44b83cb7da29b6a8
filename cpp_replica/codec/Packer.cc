#include "codec/Packer.h"

namespace replica {

char* Packer::putIntSlow(char* p, std::int64_t v) {
    if (v >= 0) {
        auto u = std::uint64_t(v);
        if (u < 128) {
            *p++ = char(u);
            return p;
        }
        if (u < 256) return tagged(p, 0xcc, u, 1);
        if (u < 65536) return tagged(p, 0xcd, u, 2);
        if (u < 4294967296ull) return tagged(p, 0xce, u, 4);
        return tagged(p, 0xcf, u, 8);
    }
    if (v >= -32) {
        *p++ = char(std::uint8_t(v));
        return p;
    }
    if (v >= -128) return tagged(p, 0xd0, std::uint64_t(v), 1);
    if (v >= -32768) return tagged(p, 0xd1, std::uint64_t(v), 2);
    if (v >= -2147483648ll) return tagged(p, 0xd2, std::uint64_t(v), 4);
    return tagged(p, 0xd3, std::uint64_t(v), 8);
}

}  // namespace replica
