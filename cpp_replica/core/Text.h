#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace replica {

/// Pure text helpers shared by validation and queries. Stateless, thread-safe, deterministic
/// (no locale: "lower case" and "white space" are fixed tables, not the C library's).
class Text {
public:
    /// Number of code points when `s` is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
    static std::optional<std::size_t> codePoints(std::string_view s);
    /// `s` without leading and trailing Unicode White_Space characters; `s` must be valid UTF-8.
    static std::string_view trim(std::string_view s);
    /// 3..20 characters of [A-Za-z0-9_].
    static bool isUsername(std::string_view s);
    /// ASCII lower case (usernames are ASCII, so this is the case-insensitive key).
    static std::string lower(std::string_view s);
};

}  // namespace replica
