#include "codec/Body.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <vector>

#include "codec/FrameError.h"

namespace replica {
namespace {

[[noreturn]] void malformed(const std::string& why) { throw FrameError("malformed", why); }

// Checks what the unpacker's own limits cannot express exactly (per-value byte sizes, depth as
// the protocol counts it, string keys).
void checkTree(const msgpack::object& o, const Limits& limits, std::size_t depth) {
    switch (o.type) {
        case msgpack::type::STR:
        case msgpack::type::BIN:
            if (o.via.str.size > limits.maxStringBytes) malformed("string or bin value too long");
            break;
        case msgpack::type::EXT:
            malformed("ext values are not allowed");
        case msgpack::type::ARRAY:
            if (depth + 1 > limits.maxDepth) malformed("nesting too deep");
            if (o.via.array.size > limits.maxListItems) malformed("list too long");
            for (std::uint32_t i = 0; i < o.via.array.size; ++i)
                checkTree(o.via.array.ptr[i], limits, depth + 1);
            break;
        case msgpack::type::MAP:
            if (depth + 1 > limits.maxDepth) malformed("nesting too deep");
            if (o.via.map.size > limits.maxMapEntries) malformed("map has too many entries");
            for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
                const msgpack::object& k = o.via.map.ptr[i].key;
                const msgpack::object& v = o.via.map.ptr[i].val;
                checkTree(k, limits, depth + 1);
                if (depth == 0 && v.type == msgpack::type::BIN && k.type == msgpack::type::STR &&
                    std::string_view(k.via.str.ptr, k.via.str.size) == "data") {
                    // Checked against maxChunkBytes here and against the frame type in decode().
                    if (v.via.bin.size > limits.maxChunkBytes) malformed("data chunk too long");
                    continue;
                }
                checkTree(v, limits, depth + 1);
            }
            break;
        default:
            break;
    }
}

constexpr std::size_t kZonePool = 8;

std::vector<std::unique_ptr<msgpack::zone>>& zonePool() {
    thread_local std::vector<std::unique_ptr<msgpack::zone>> pool;
    return pool;
}

std::unique_ptr<msgpack::zone> takeZone() {
    auto& pool = zonePool();
    if (pool.empty()) return std::make_unique<msgpack::zone>();
    std::unique_ptr<msgpack::zone> z = std::move(pool.back());
    pool.pop_back();
    return z;
}

void giveZone(std::unique_ptr<msgpack::zone> z) {
    if (!z) return;
    auto& pool = zonePool();
    if (pool.size() >= kZonePool) return;  // freed
    z->clear();  // keeps the first chunk, frees any others
    pool.push_back(std::move(z));
}

}  // namespace

Body::~Body() { giveZone(std::move(zone_)); }

Body& Body::operator=(Body&& other) noexcept {
    if (this != &other) {
        giveZone(std::move(zone_));
        zone_ = std::move(other.zone_);
        root_ = other.root_;
        type_ = other.type_;
    }
    return *this;
}

Body Body::decode(std::string_view bytes, const Limits& limits) {
    Body body;
    std::size_t offset = 0;
    try {
        msgpack::unpack_limit unpackLimit(limits.maxListItems, limits.maxMapEntries,
                                          limits.maxStringBytes,
                                          std::max(limits.maxStringBytes, limits.maxChunkBytes), 0,
                                          limits.maxDepth + 1);
        // Zero copy: str/bin values point into `bytes`, which the caller keeps alive.
        body.zone_ = takeZone();
        body.root_ = msgpack::unpack(
            *body.zone_, bytes.data(), bytes.size(), offset,
            [](msgpack::type::object_type, std::size_t, void*) { return true; }, nullptr,
            unpackLimit);
    } catch (const std::exception& e) {
        malformed(std::string("undecodable body: ") + e.what());
    }
    if (offset != bytes.size()) malformed("trailing bytes after the body");
    const msgpack::object& root = body.root_;
    if (root.type != msgpack::type::MAP) malformed("body is not a map");
    checkTree(root, limits, 0);
    for (std::uint32_t i = 0; i < root.via.map.size; ++i) {
        if (root.via.map.ptr[i].key.type != msgpack::type::STR) malformed("non-string key");
    }
    const msgpack::object* t = find(root, "t");
    if (t == nullptr || t->type != msgpack::type::STR) malformed("missing or mistyped key 't'");
    body.type_ = std::string_view(t->via.str.ptr, t->via.str.size);
    if (body.type_ != "inst_data") {
        const msgpack::object* d = find(root, "data");
        if (d && d->type == msgpack::type::BIN && d->via.bin.size > limits.maxStringBytes)
            malformed("string or bin value too long");
    }
    return body;
}

const msgpack::object* Body::find(const msgpack::object& map, std::string_view key) {
    if (map.type != msgpack::type::MAP) return nullptr;
    for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
        const auto& kv = map.via.map.ptr[i];
        if (kv.key.type == msgpack::type::STR &&
            std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == key)
            return &kv.val;
    }
    return nullptr;
}

std::optional<std::int64_t> asInt(const msgpack::object& o) {
    if (o.type == msgpack::type::POSITIVE_INTEGER) {
        if (o.via.u64 > std::uint64_t(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
        return std::int64_t(o.via.u64);
    }
    if (o.type == msgpack::type::NEGATIVE_INTEGER) return o.via.i64;
    return std::nullopt;
}

std::optional<std::string_view> asStr(const msgpack::object& o) {
    if (o.type != msgpack::type::STR) return std::nullopt;
    return std::string_view(o.via.str.ptr, o.via.str.size);
}

std::int64_t Body::requireInt(std::string_view key) const {
    const msgpack::object* o = find(root(), key);
    auto v = o ? asInt(*o) : std::nullopt;
    if (!v) malformed("missing or mistyped key '" + std::string(key) + "'");
    return *v;
}

std::string_view Body::requireStr(std::string_view key) const {
    const msgpack::object* o = find(root(), key);
    auto v = o ? asStr(*o) : std::nullopt;
    if (!v) malformed("missing or mistyped key '" + std::string(key) + "'");
    return *v;
}

std::string_view Body::requireBin(std::string_view key) const {
    const msgpack::object* o = find(root(), key);
    if (o == nullptr || o->type != msgpack::type::BIN)
        malformed("missing or mistyped key '" + std::string(key) + "'");
    return std::string_view(o->via.bin.ptr, o->via.bin.size);
}

}  // namespace replica
