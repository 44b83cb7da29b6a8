#include "coordinator/ClientFrame.h"

#include "codec/FrameError.h"
#include "codec/Framing.h"
#include "codec/Packer.h"
#include "core/Text.h"

namespace replica {
namespace {

[[noreturn]] void malformed(const std::string& why) { throw FrameError("malformed", why); }

// What a client frame may hold at all, before a replica's limits are asked (those decide
// between a write and an `invalid` answer, these between an answer and a closed connection).
// The frame length bounds everything else.
Limits frameOnlyLimits(const Limits& replica) {
    Limits l = replica;
    l.maxStringBytes = replica.maxFrameBytes;
    l.maxMapEntries = 1u << 16;
    l.maxListItems = 1u << 18;
    l.maxDepth = 64;
    l.maxChunkBytes = replica.maxFrameBytes;
    return l;
}

// What the Python side's msgpack decoder (raw=False, strict_map_key=True) refuses was always
// malformed on the client port; keep it so: every write in a log stays decodable by tools and
// tests, and rid and a str id become Python strs.
void checkDecodable(const msgpack::object& o) {
    switch (o.type) {
        case msgpack::type::STR:
            if (!Text::codePoints(std::string_view(o.via.str.ptr, o.via.str.size)))
                malformed("a string is not valid UTF-8");
            break;
        case msgpack::type::ARRAY:
            for (std::uint32_t i = 0; i < o.via.array.size; ++i) checkDecodable(o.via.array.ptr[i]);
            break;
        case msgpack::type::MAP:
            for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
                const msgpack::object& key = o.via.map.ptr[i].key;
                if (key.type != msgpack::type::STR && key.type != msgpack::type::BIN)
                    malformed("a map key is not a string");
                checkDecodable(key);
                checkDecodable(o.via.map.ptr[i].val);
            }
            break;
        default:
            break;
    }
}

const msgpack::object* requestId(const Body& body) {
    const msgpack::object* id = body.optional("id");
    if (id == nullptr) malformed("missing key 'id'");
    switch (id->type) {
        case msgpack::type::POSITIVE_INTEGER:
        case msgpack::type::NEGATIVE_INTEGER:
        case msgpack::type::STR:
        case msgpack::type::NIL:
            return id;
        default:
            malformed("the request id must be an integer, a string or nil");
    }
}

// Appends to std::string for msgpack::packer (whose encodings are the smallest, like ours).
struct StringSink {
    std::string& out;
    void write(const char* p, std::size_t n) { out.append(p, n); }
};

}  // namespace

ClientFrame ClientFrame::read(std::string_view bytes, const Limits& limits) {
    ClientFrame f;
    bool within = true;
    try {
        f.body = Body::decode(bytes, limits);
    } catch (const FrameError& e) {
        within = false;
        f.problem = e.what();
        f.body = Body::decode(bytes, frameOnlyLimits(limits));  // throws: malformed
    }
    std::string_view type = f.body.type();
    if (type != "cw" && type != "cr") return f;  // Other
    f.id = requestId(f.body);
    checkDecodable(*f.id);
    // A cw's own fields first: a bad one closes the connection even when its a is too big.
    const msgpack::object* op = f.body.optional("op");
    const msgpack::object* args = f.body.optional("a");
    if (type == "cw") {
        const msgpack::object* rid = f.body.optional("rid");
        if (rid != nullptr) {
            if (rid->type != msgpack::type::STR || rid->via.str.size > 64)
                malformed("bad cw fields: rid must be a string of at most 64 bytes");
            f.rid = std::string_view(rid->via.str.ptr, rid->via.str.size);
        }
        if (op == nullptr || op->type != msgpack::type::STR)
            malformed("bad cw fields: op must be a string");
        if (args != nullptr && args->type != msgpack::type::MAP)
            malformed("bad cw fields: a must be a map");
    }
    if (!within) {
        f.kind = Kind::Invalid;
        f.problem = "the arguments break a replica's frame limits: " + f.problem;
        return f;
    }
    if (type == "cr") return f;  // Other: the Python side routes reads
    checkDecodable(f.body.root());

    f.writeTail.reserve(bytes.size() + 16);
    Packer p(f.writeTail);
    p.kv("rid", f.rid);
    p.kv("op", std::string_view(op->via.str.ptr, op->via.str.size));
    p.str("a");
    if (args == nullptr) {
        p.mapHeader(0);
    } else {
        StringSink sink{f.writeTail};
        msgpack::packer<StringSink>(sink).pack(*args);
    }
    f.kind = Kind::Write;
    return f;
}

std::string writeFrame(std::int64_t epoch, std::int64_t seq, std::int64_t ts,
                       std::string_view writeTail) {
    std::string frame;
    frame.reserve(4 + 40 + writeTail.size());
    std::size_t at = beginFrame(frame);
    Packer p(frame);
    p.mapHeader(7);
    p.kv("t", "w");
    p.kv("e", epoch);
    p.kv("s", seq);
    p.kv("ts", ts);
    p.raw(writeTail);
    endFrame(frame, at);
    return frame;
}

}  // namespace replica
