#include "core/Text.h"

#include <cstdint>
#include <cstring>

namespace replica {
namespace {

// Decodes one code point at s[i]; returns its length or 0 when invalid.
std::size_t decodeOne(std::string_view s, std::size_t i, std::uint32_t& cp) {
    auto b = [&](std::size_t k) { return std::uint8_t(s[i + k]); };
    std::uint8_t c = b(0);
    std::size_t n;
    std::uint32_t min;
    if (c < 0x80) {
        cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        n = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k) {
        if ((b(k) & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (b(k) & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return n;
}

// The Unicode White_Space property (Unicode 15), a fixed list so every replica agrees.
bool isWhiteSpace(std::uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

}  // namespace

std::optional<std::size_t> Text::codePoints(std::string_view s) {
    // ASCII prefix first: most text is ASCII, one byte one code point.
    std::size_t i = 0;
    for (std::uint64_t w; i + 8 <= s.size(); i += 8) {  // 8 bytes at a time: any high bit?
        std::memcpy(&w, s.data() + i, 8);
        if (w & 0x8080808080808080ull) break;
    }
    while (i < s.size() && std::uint8_t(s[i]) < 0x80) ++i;
    std::size_t count = i;
    while (i < s.size()) {
        std::uint32_t cp;
        std::size_t n = decodeOne(s, i, cp);
        if (n == 0) return std::nullopt;
        i += n;
        ++count;
    }
    return count;
}

std::string_view Text::trim(std::string_view s) {
    // Fast path: first and last bytes ASCII and not white space (the usual case).
    if (!s.empty()) {
        auto first = std::uint8_t(s.front()), last = std::uint8_t(s.back());
        if (first < 0x80 && last < 0x80 && !isWhiteSpace(first) && !isWhiteSpace(last)) return s;
    }
    std::size_t start = 0;
    while (start < s.size()) {
        std::uint32_t cp;
        std::size_t n = decodeOne(s, start, cp);
        if (n == 0 || !isWhiteSpace(cp)) break;
        start += n;
    }
    // Scan forward remembering the end of the last non-space code point: UTF-8 cannot be
    // decoded backwards safely without re-validating.
    std::size_t end = start;
    for (std::size_t i = start; i < s.size();) {
        std::uint32_t cp;
        std::size_t n = decodeOne(s, i, cp);
        if (n == 0) return s.substr(start);
        i += n;
        if (!isWhiteSpace(cp)) end = i;
    }
    return s.substr(start, end - start);
}

namespace {

struct UsernameChars {
    bool ok[256] = {};
    constexpr UsernameChars() {
        for (int c = 0; c < 256; ++c)
            ok[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_';
    }
};
constexpr UsernameChars kUsernameChars;

}  // namespace

bool Text::isUsername(std::string_view s) {
    if (s.size() < 3 || s.size() > 20) return false;
    for (char c : s)
        if (!kUsernameChars.ok[std::uint8_t(c)]) return false;
    return true;
}

std::string Text::lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return out;
}

}  // namespace replica
