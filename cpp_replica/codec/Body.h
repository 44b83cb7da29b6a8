#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "codec/Limits.h"
#include "codec/Msgpack.h"

namespace replica {

/// A decoded frame body: a MessagePack map with string keys, checked against Limits.
///
/// Owns its memory (the object tree lives in the handle's zone). Not thread-safe; immutable after
/// decode. Lookups are linear, which is fastest for the <= 32 entries a map may have.
class Body {
public:
    /// Decodes and checks `bytes`. The Body references `bytes` (zero copy): the caller must keep
    /// them alive and unchanged while the Body is used. Throws FrameError("malformed") when the bytes are not exactly
    /// one map with string keys and a string `t`, or break a limit (sizes, counts, nesting).
    static Body decode(std::string_view bytes, const Limits& limits);
    /// decode() through msgpack-cxx's generic unpacker only (decode() tries a faster reader
    /// first and falls back to this one): for tests and fuzzers that compare the two.
    static Body decodeGenericForTest(std::string_view bytes, const Limits& limits);

    Body() = default;
    Body(Body&&) noexcept = default;
    Body& operator=(Body&& other) noexcept;
    ~Body();

    /// The frame type (`t`).
    std::string_view type() const { return type_; }
    /// The root map.
    const msgpack::object& root() const { return root_; }

    /// Value of `key` in `map`, or nullptr. Non-string keys never match.
    static const msgpack::object* find(const msgpack::object& map, std::string_view key);
    /// Helpers for required fields of the frame itself: throw FrameError("malformed") naming the
    /// key when it is missing or has the wrong type.
    std::int64_t requireInt(std::string_view key) const;
    std::string_view requireStr(std::string_view key) const;
    std::string_view requireBin(std::string_view key) const;
    const msgpack::object* optional(std::string_view key) const { return find(root(), key); }

private:
    static msgpack::object decodeGeneric(std::string_view bytes, const Limits& limits,
                                         msgpack::zone& zone);
    void finish(const Limits& limits);  // checks shared by both readers; sets type_

    // The object tree lives in a zone taken from a small per-thread pool and returned, cleared,
    // on destruction. Why: a fresh zone mallocs and frees an 8 KiB chunk per frame, which was
    // a tenth of the apply path's time.
    std::unique_ptr<msgpack::zone> zone_;
    msgpack::object root_;
    std::string_view type_;
};

/// Integer value of a msgpack object when it is an int that fits int64.
std::optional<std::int64_t> asInt(const msgpack::object& o);
/// String view of a str object.
std::optional<std::string_view> asStr(const msgpack::object& o);

}  // namespace replica
