// libFuzzer target: the coordinator's client-port intake (cpp_replica/coordinator/ClientFrame.h)
// on an arbitrary frame body.
//
// Invariants checked:
//   - no crash, no sanitizer report, no exception other than FrameError("malformed");
//   - a Write makes a write frame that the replica's own decoder accepts within its limits,
//     with the client's rid, op and a (so no client can poison the replicas' connections), and
//     whose every map key is a string (Python's msgpack could not decode it otherwise);
//   - a body the replica's decoder accepts as a `cw` is never answered Invalid;
//   - an Invalid has a request id and a reason.
#include <cstdint>
#include <string>

#include "codec/Body.h"
#include "codec/FrameError.h"
#include "coordinator/ClientFrame.h"
#include "FuzzCheck.h"

using replica::Body;
using replica::ClientFrame;
using replica::FrameError;
using replica::Limits;

namespace {

bool sameStr(const msgpack::object* o, std::string_view s) {
    return o != nullptr && o->type == msgpack::type::STR &&
           std::string_view(o->via.str.ptr, o->via.str.size) == s;
}

bool stringKeys(const msgpack::object& o) {
    if (o.type == msgpack::type::ARRAY) {
        for (std::uint32_t i = 0; i < o.via.array.size; ++i)
            if (!stringKeys(o.via.array.ptr[i])) return false;
    }
    if (o.type == msgpack::type::MAP) {
        for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
            auto k = o.via.map.ptr[i].key.type;
            if (k != msgpack::type::STR && k != msgpack::type::BIN) return false;
            if (!stringKeys(o.via.map.ptr[i].val)) return false;
        }
    }
    return true;
}

std::string packed(const msgpack::object& o) {
    msgpack::sbuffer out;
    msgpack::pack(out, o);
    return std::string(out.data(), out.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string bytes(reinterpret_cast<const char*>(data), size);
    const Limits limits;
    bool acceptedAsCw = false;
    try {
        acceptedAsCw = Body::decode(bytes, limits).type() == "cw";
    } catch (const FrameError&) {
    }
    ClientFrame f;
    try {
        f = ClientFrame::read(bytes, limits);
    } catch (const FrameError& e) {
        CHECK(e.code() == "malformed");
        return 0;
    }
    switch (f.kind) {
        case ClientFrame::Kind::Write: {
            CHECK(f.id != nullptr && f.rid.size() <= 64);
            std::string frame = replica::writeFrame(7, 1234567, 1700000000000000, f.writeTail);
            std::string body = frame.substr(4);
            Body w = Body::decode(body, limits);  // throws (and so crashes the fuzzer) if not
            CHECK(w.type() == "w" && w.requireInt("s") == 1234567);
            CHECK(w.requireStr("rid") == f.rid);
            CHECK(sameStr(f.body.optional("op"), w.requireStr("op")));
            const msgpack::object* a = w.optional("a");
            CHECK(a != nullptr && a->type == msgpack::type::MAP);
            CHECK(stringKeys(*a));
            const msgpack::object* clientArgs = f.body.optional("a");
            // Compared as encoded bytes: object == says NaN != NaN.
            if (clientArgs != nullptr) CHECK(packed(*a) == packed(*clientArgs));
            break;
        }
        case ClientFrame::Kind::Invalid:
            CHECK(!acceptedAsCw);
            CHECK(f.id != nullptr && !f.problem.empty());
            break;
        case ClientFrame::Kind::Other:
            CHECK(f.body.type() != "cw");
            break;
    }
    return 0;
}
