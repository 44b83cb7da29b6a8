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
                    (std::string_view(k.via.str.ptr, k.via.str.size) == "data" ||
                     std::string_view(k.via.str.ptr, k.via.str.size) == "rec")) {
                    // Checked against maxChunkBytes here and against the frame type in decode():
                    // `data` of inst_data, `rec` (a whole write body) of cu.
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

namespace {

// ---------------------------------------------------------------- fast path
//
// Why a second reader: msgpack-cxx's generic unpacker (a table-driven state machine with a
// visitor and a stack) plus the checkTree() walk cost ~2,800 instructions per write frame, a
// third of apply(). FastReader handles the shapes frames really have (maps, arrays, str, bin,
// ints, nil, bool) within every limit in one recursive pass into the same zone, producing the
// very object tree msgpack-cxx would. It never decides that bytes are malformed: on anything
// it does not fully understand (a float, ext, a limit hit, truncation, trailing bytes) it gives
// up and decode() runs the msgpack-cxx path, which then accepts or rejects with its own
// message. So the two paths can only differ in speed; tests/core and fuzz/ compare them.
class FastReader {
public:
    FastReader(const char* p, const char* end, msgpack::zone& zone, const Limits& limits)
        : p_(p), end_(end), zone_(zone), limits_(limits) {}

    bool root(msgpack::object& o) {
        if (!value(o, 0, false)) return false;
        return p_ == end_ && o.type == msgpack::type::MAP;
    }

private:
    bool need(std::size_t n) const { return std::size_t(end_ - p_) >= n; }
    std::uint64_t be(int n) {
        std::uint64_t v = 0;
        for (int i = 0; i < n; ++i) v = (v << 8) | std::uint8_t(p_[i]);
        p_ += n;
        return v;
    }
    bool length(int n, std::uint64_t& out) {
        if (!need(std::size_t(n))) return false;
        out = be(n);
        return true;
    }
    bool bytes(msgpack::object& o, msgpack::type::object_type type, std::uint64_t n) {
        // Bins above maxStringBytes (the `data` chunk of inst_data) take the generic path.
        if (n > limits_.maxStringBytes || !need(std::size_t(n))) return false;
        o.type = type;
        if (type == msgpack::type::STR) {
            o.via.str.size = std::uint32_t(n);
            o.via.str.ptr = p_;
        } else {
            o.via.bin.size = std::uint32_t(n);
            o.via.bin.ptr = p_;
        }
        p_ += n;
        return true;
    }
    bool array(msgpack::object& o, std::uint64_t n, std::size_t depth) {
        if (depth + 1 > limits_.maxDepth || n > limits_.maxListItems || !need(std::size_t(n)))
            return false;
        o.type = msgpack::type::ARRAY;
        o.via.array.size = std::uint32_t(n);
        o.via.array.ptr = nullptr;
        if (n == 0) return true;
        auto* items = static_cast<msgpack::object*>(
            zone_.allocate_align(n * sizeof(msgpack::object), MSGPACK_ZONE_ALIGNOF(msgpack::object)));
        o.via.array.ptr = items;
        for (std::uint64_t i = 0; i < n; ++i)
            if (!value(items[i], depth + 1, true)) return false;
        return true;
    }
    bool map(msgpack::object& o, std::uint64_t n, std::size_t depth) {
        if (depth + 1 > limits_.maxDepth || n > limits_.maxMapEntries || !need(std::size_t(2 * n)))
            return false;
        o.type = msgpack::type::MAP;
        o.via.map.size = std::uint32_t(n);
        o.via.map.ptr = nullptr;
        if (n == 0) return true;
        auto* kvs = static_cast<msgpack::object_kv*>(zone_.allocate_align(
            n * sizeof(msgpack::object_kv), MSGPACK_ZONE_ALIGNOF(msgpack::object_kv)));
        o.via.map.ptr = kvs;
        for (std::uint64_t i = 0; i < n; ++i) {
            // Keys: scalars only here (a container key is legal but odd: generic path).
            if (!small(kvs[i].key) && !value(kvs[i].key, depth + 1, false)) return false;
            if (!small(kvs[i].val) && !value(kvs[i].val, depth + 1, true)) return false;
        }
        return true;
    }
    // The two commonest values (fixstr keys and short strings, small ints) without a call;
    // false leaves everything to value().
    bool small(msgpack::object& o) {
        if (p_ == end_) return false;
        auto c = std::uint8_t(*p_);
        if ((c & 0xe0) == 0xa0) {
            std::size_t n = c & 0x1f;
            if (std::size_t(end_ - p_) <= n || n > limits_.maxStringBytes) return false;
            o.type = msgpack::type::STR;
            o.via.str.size = std::uint32_t(n);
            o.via.str.ptr = p_ + 1;
            p_ += 1 + n;
            return true;
        }
        if (c <= 0x7f) {
            o.type = msgpack::type::POSITIVE_INTEGER;
            o.via.u64 = c;
            ++p_;
            return true;
        }
        return false;
    }
    // `nested` allows containers (map keys pass false).
    bool value(msgpack::object& o, std::size_t depth, bool nested) {
        if (!need(1)) return false;
        auto c = std::uint8_t(*p_++);
        std::uint64_t n;
        if (c <= 0x7f) {
            o.type = msgpack::type::POSITIVE_INTEGER;
            o.via.u64 = c;
            return true;
        }
        if (c >= 0xe0) {
            o.type = msgpack::type::NEGATIVE_INTEGER;
            o.via.i64 = std::int8_t(c);
            return true;
        }
        if ((c & 0xe0) == 0xa0) return bytes(o, msgpack::type::STR, c & 0x1f);
        if ((c & 0xf0) == 0x80) return (nested || depth == 0) && map(o, c & 0x0f, depth);
        if ((c & 0xf0) == 0x90) return nested && array(o, c & 0x0f, depth);
        switch (c) {
            case 0xc0: o.type = msgpack::type::NIL; return true;
            case 0xc2: case 0xc3:
                o.type = msgpack::type::BOOLEAN;
                o.via.boolean = c == 0xc3;
                return true;
            case 0xc4: return length(1, n) && bytes(o, msgpack::type::BIN, n);
            case 0xc5: return length(2, n) && bytes(o, msgpack::type::BIN, n);
            case 0xc6: return length(4, n) && bytes(o, msgpack::type::BIN, n);
            case 0xd9: return length(1, n) && bytes(o, msgpack::type::STR, n);
            case 0xda: return length(2, n) && bytes(o, msgpack::type::STR, n);
            case 0xdb: return length(4, n) && bytes(o, msgpack::type::STR, n);
            case 0xcc: case 0xcd: case 0xce: case 0xcf: {
                int w = 1 << (c - 0xcc);
                if (!need(std::size_t(w))) return false;
                o.type = msgpack::type::POSITIVE_INTEGER;
                o.via.u64 = be(w);
                return true;
            }
            case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
                int w = 1 << (c - 0xd0);
                if (!need(std::size_t(w))) return false;
                std::uint64_t u = be(w);
                std::int64_t v = w == 1   ? std::int64_t(std::int8_t(std::uint8_t(u)))
                                 : w == 2 ? std::int64_t(std::int16_t(std::uint16_t(u)))
                                 : w == 4 ? std::int64_t(std::int32_t(std::uint32_t(u)))
                                          : std::int64_t(u);
                if (v >= 0) {
                    o.type = msgpack::type::POSITIVE_INTEGER;
                    o.via.u64 = std::uint64_t(v);
                } else {
                    o.type = msgpack::type::NEGATIVE_INTEGER;
                    o.via.i64 = v;
                }
                return true;
            }
            case 0xdc: return nested && length(2, n) && array(o, n, depth);
            case 0xdd: return nested && length(4, n) && array(o, n, depth);
            case 0xde: return (nested || depth == 0) && length(2, n) && map(o, n, depth);
            case 0xdf: return (nested || depth == 0) && length(4, n) && map(o, n, depth);
            default: return false;  // floats, ext, 0xc1: the generic path decides
        }
    }

    const char* p_;
    const char* end_;
    msgpack::zone& zone_;
    const Limits& limits_;
};

}  // namespace

Body Body::decode(std::string_view bytes, const Limits& limits) {
    Body body;
    body.zone_ = takeZone();
    FastReader fast(bytes.data(), bytes.data() + bytes.size(), *body.zone_, limits);
    if (!fast.root(body.root_)) {
        body.zone_->clear();
        body.root_ = decodeGeneric(bytes, limits, *body.zone_);
    }
    body.finish(limits);
    return body;
}

Body Body::decodeGenericForTest(std::string_view bytes, const Limits& limits) {
    Body body;
    body.zone_ = takeZone();
    body.root_ = decodeGeneric(bytes, limits, *body.zone_);
    body.finish(limits);
    return body;
}

msgpack::object Body::decodeGeneric(std::string_view bytes, const Limits& limits,
                                    msgpack::zone& zone) {
    msgpack::object root;
    std::size_t offset = 0;
    try {
        msgpack::unpack_limit unpackLimit(limits.maxListItems, limits.maxMapEntries,
                                          limits.maxStringBytes,
                                          std::max(limits.maxStringBytes, limits.maxChunkBytes), 0,
                                          limits.maxDepth + 1);
        // Zero copy: str/bin values point into `bytes`, which the caller keeps alive.
        root = msgpack::unpack(
            zone, bytes.data(), bytes.size(), offset,
            [](msgpack::type::object_type, std::size_t, void*) { return true; }, nullptr,
            unpackLimit);
    } catch (const msgpack::str_size_overflow&) {
        malformed("a string is longer than " + std::to_string(limits.maxStringBytes) + " bytes");
    } catch (const msgpack::bin_size_overflow&) {
        malformed("a binary value is longer than " + std::to_string(limits.maxStringBytes) +
                  " bytes");
    } catch (const msgpack::map_size_overflow&) {
        malformed("a map has more than " + std::to_string(limits.maxMapEntries) + " entries");
    } catch (const msgpack::array_size_overflow&) {
        malformed("a list has more than " + std::to_string(limits.maxListItems) + " items");
    } catch (const msgpack::depth_size_overflow&) {
        malformed("nested deeper than " + std::to_string(limits.maxDepth) + " levels");
    } catch (const std::exception& e) {
        malformed(std::string("undecodable body: ") + e.what());
    }
    if (offset != bytes.size()) malformed("trailing bytes after the body");
    if (root.type != msgpack::type::MAP) malformed("body is not a map");
    checkTree(root, limits, 0);
    return root;
}

void Body::finish(const Limits& limits) {
    const msgpack::object& root = root_;
    for (std::uint32_t i = 0; i < root.via.map.size; ++i) {
        if (root.via.map.ptr[i].key.type != msgpack::type::STR) malformed("non-string key");
    }
    const msgpack::object* t = find(root, "t");
    if (t == nullptr || t->type != msgpack::type::STR) malformed("missing or mistyped key 't'");
    type_ = std::string_view(t->via.str.ptr, t->via.str.size);
    if (type_ != "inst_data") {
        const msgpack::object* d = find(root, "data");
        if (d && d->type == msgpack::type::BIN && d->via.bin.size > limits.maxStringBytes)
            malformed("string or bin value too long");
    }
    if (type_ != "cu") {
        const msgpack::object* r = find(root, "rec");
        if (r && r->type == msgpack::type::BIN && r->via.bin.size > limits.maxStringBytes)
            malformed("string or bin value too long");
    }
}

const msgpack::object* Body::find(const msgpack::object& map, std::string_view key) {
    if (map.type != msgpack::type::MAP) return nullptr;
    for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
        const auto& kv = map.via.map.ptr[i];
        // Why not string_view ==: keys are a few bytes, and the memcmp call it makes cost
        // more than the whole compare (a tenth of apply() before).
        if (kv.key.type != msgpack::type::STR || kv.key.via.str.size != key.size()) continue;
        const char* k = kv.key.via.str.ptr;
        std::size_t j = 0;
        while (j < key.size() && k[j] == key[j]) ++j;
        if (j == key.size()) return &kv.val;
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
