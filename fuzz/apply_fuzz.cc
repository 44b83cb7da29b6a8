// libFuzzer target: decode-then-apply of writes and queries on the StateMachine.
//
// The input is a script of steps (FuzzedDataProvider). Each step is one of:
//   - a structured write: an op (the six real ones or a fuzzed string) with arguments drawn from a
//     small pool of usernames and fuzzed strings/ints, so the fuzzer reaches deep states quickly;
//   - a write whose `a` is arbitrary fuzzed MessagePack bytes (may be undecodable: malformed);
//   - a whole write body of arbitrary bytes (usually malformed, sometimes a valid frame);
//   - a query (known or fuzzed name) with structured or arbitrary-bytes arguments.
// Invariants, checked after every step:
//   - no crash, no sanitizer report; only FrameError (malformed) or the documented
//     std::logic_error (seq out of order) may escape apply;
//   - determinism: two independent instances given the same bytes return byte-identical replies
//     and end at the same applied seq, digest and state fingerprint;
//   - a thrown (malformed) write changes nothing: applied, digest and fingerprint unchanged;
//   - a refused write (reply ok=false) leaves the state fingerprint unchanged;
//   - replies and query answers are one MessagePack map with a boolean `ok`;
//   - queries never change applied, digest or fingerprint;
// and at the end: snapshot -> restore into a fresh instance gives the same snapshot bytes,
// digest, fingerprint and query answers.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "codec/Body.h"
#include "codec/FrameError.h"
#include "codec/Packer.h"
#include "core/StateMachine.h"
#include "FuzzCheck.h"

using replica::Body;
using replica::FrameError;
using replica::Limits;
using replica::Packer;
using replica::StateMachine;

namespace {

const char* const kOps[] = {"create_user", "delete_user", "create_post",
                            "delete_post", "follow",      "unfollow"};
const char* const kQueries[] = {"user", "user_posts", "home",   "public",
                                "followers", "following", "search", "state"};
const char* const kNames[] = {"alice", "Alice", "bob_1", "carol", "al", "x" /* invalid */};
const char* const kKeys[] = {"username", "password_hash", "display_name", "actor", "text",
                             "id", "target", "before", "limit", "prefix"};

bool replyOk(const std::string& reply) {
    msgpack::object_handle h;
    try {
        h = msgpack::unpack(reply.data(), reply.size());
    } catch (const std::exception&) {
        CHECK(false && "reply is not MessagePack");
    }
    const msgpack::object& o = h.get();
    CHECK(o.type == msgpack::type::MAP);
    const msgpack::object* ok = Body::find(o, "ok");
    CHECK(ok != nullptr && ok->type == msgpack::type::BOOLEAN);
    return ok->via.boolean;
}

std::string name(FuzzedDataProvider& fdp) {
    if (fdp.ConsumeBool()) return kNames[fdp.ConsumeIntegralInRange<std::size_t>(0, 5)];
    return fdp.ConsumeRandomLengthString(24);
}

// One argument value: a pool name, a fuzzed str, bin, int, nil or bool.
void value(FuzzedDataProvider& fdp, Packer& p, const std::string& key) {
    switch (fdp.ConsumeIntegralInRange<int>(0, 6)) {
        case 0: p.str(name(fdp)); break;
        case 1: p.str(fdp.ConsumeRandomLengthString(300)); break;
        case 2: p.bin(fdp.ConsumeRandomLengthString(300)); break;
        case 3: p.integer(fdp.ConsumeIntegral<std::int64_t>()); break;
        case 4: p.integer(fdp.ConsumeIntegralInRange<std::int64_t>(-2, 40)); break;
        case 5: p.nil(); break;
        default:
            // The common valid shape for this key.
            if (key == "id" || key == "before") p.integer(fdp.ConsumeIntegralInRange<std::int64_t>(0, 40));
            else if (key == "limit") p.integer(fdp.ConsumeIntegralInRange<std::int64_t>(0, 201));
            else p.str(name(fdp));
    }
}

// A map of 0..6 arguments, keys mostly from kKeys.
std::string structuredArgs(FuzzedDataProvider& fdp) {
    std::string out;
    Packer p(out);
    std::uint32_t n = fdp.ConsumeIntegralInRange<std::uint32_t>(0, 6);
    p.mapHeader(n);
    for (std::uint32_t i = 0; i < n; ++i) {
        std::string key = fdp.ConsumeIntegralInRange<int>(0, 9) == 0
                              ? fdp.ConsumeRandomLengthString(12)
                              : kKeys[fdp.ConsumeIntegralInRange<std::size_t>(0, 9)];
        p.str(key);
        value(fdp, p, key);
    }
    return out;
}

std::string writeBody(std::int64_t seq, std::int64_t epoch, std::int64_t ts, const std::string& rid,
                      const std::string& op, const std::string* args) {
    std::string out;
    Packer p(out);
    p.mapHeader(args ? 7 : 6);
    p.kv("t", "w");
    p.kv("s", seq);
    p.kv("e", epoch);
    p.kv("ts", ts);
    p.kv("rid", rid);
    p.kv("op", op);
    if (args) {
        p.str("a");
        p.raw(*args);
    }
    return out;
}

struct Pair {
    StateMachine a, b;
    void checkSame() {
        CHECK(a.applied() == b.applied());
        CHECK(a.digest() == b.digest());
        CHECK(a.lastEpoch() == b.lastEpoch());
        CHECK(a.stateFingerprint() == b.stateFingerprint());
    }
};

// Applies `body` to both machines and checks the invariants above.
void applyBoth(Pair& m, const std::string& body) {
    auto seq0 = m.a.applied();
    auto digest0 = m.a.digest();
    auto fp0 = m.a.stateFingerprint();
    std::string ra, rb;
    int thrownA = 0, thrownB = 0;  // 0 none, 1 FrameError, 2 logic_error
    try {
        ra = m.a.applyBytes(body, Limits());
    } catch (const FrameError& e) {
        CHECK(e.code() == "malformed");
        thrownA = 1;
    } catch (const std::logic_error&) {
        thrownA = 2;
    }
    try {
        rb = m.b.applyBytes(body, Limits());
    } catch (const FrameError&) {
        thrownB = 1;
    } catch (const std::logic_error&) {
        thrownB = 2;
    }
    CHECK(thrownA == thrownB);
    if (thrownA) {
        CHECK(m.a.applied() == seq0);
        CHECK(m.a.digest() == digest0);
        CHECK(m.a.stateFingerprint() == fp0);
    } else {
        CHECK(ra == rb);
        CHECK(m.a.applied() == seq0 + 1);
        if (!replyOk(ra)) CHECK(m.a.stateFingerprint() == fp0);
    }
    m.checkSame();
}

void queryBoth(Pair& m, const std::string& q, const std::string* argBytes) {
    auto digest0 = m.a.digest();
    auto fp0 = m.a.stateFingerprint();
    msgpack::object_handle h;
    const msgpack::object* args = nullptr;
    if (argBytes) {
        try {
            Limits limits;
            std::size_t off = 0;
            msgpack::unpack_limit ul(limits.maxListItems, limits.maxMapEntries, limits.maxStringBytes,
                                     limits.maxStringBytes, 0, limits.maxDepth);
            h = msgpack::unpack(argBytes->data(), argBytes->size(), off, nullptr, nullptr, ul);
            args = &h.get();
        } catch (const std::exception&) {
            return;  // the server would have refused the frame
        }
    }
    std::string ra = m.a.query(q, args);
    std::string rb = m.b.query(q, args);
    CHECK(ra == rb);
    replyOk(ra);
    CHECK(m.a.digest() == digest0);
    CHECK(m.a.stateFingerprint() == fp0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider fdp(data, size);
    Pair m;
    std::int64_t epoch = 1, ts = 1700000000000000;
    int steps = 0;
    while (fdp.remaining_bytes() > 0 && steps++ < 64) {
        int kind = fdp.ConsumeIntegralInRange<int>(0, 9);
        std::string rid = fdp.ConsumeBool() ? "" : fdp.ConsumeRandomLengthString(70);
        ts += fdp.ConsumeIntegralInRange<std::int64_t>(-5, 1000000);
        if (fdp.ConsumeIntegralInRange<int>(0, 15) == 0) epoch += 1;
        std::int64_t seq = m.a.applied() + 1;
        if (kind <= 4) {  // structured write
            std::string op = fdp.ConsumeIntegralInRange<int>(0, 12) == 0
                                 ? fdp.ConsumeRandomLengthString(16)
                                 : kOps[fdp.ConsumeIntegralInRange<std::size_t>(0, 5)];
            std::string args = structuredArgs(fdp);
            applyBoth(m, writeBody(seq, epoch, ts, rid, op, fdp.ConsumeIntegralInRange<int>(0, 20) ? &args : nullptr));
        } else if (kind == 5) {  // fuzzed `a` bytes
            std::string op = kOps[fdp.ConsumeIntegralInRange<std::size_t>(0, 5)];
            std::string args = fdp.ConsumeRandomLengthString(512);
            applyBoth(m, writeBody(seq, epoch, ts, rid, op, &args));
        } else if (kind == 6) {  // a whole fuzzed body
            applyBoth(m, fdp.ConsumeRandomLengthString(1024));
        } else {  // query
            std::string q = fdp.ConsumeIntegralInRange<int>(0, 12) == 0
                                ? fdp.ConsumeRandomLengthString(16)
                                : kQueries[fdp.ConsumeIntegralInRange<std::size_t>(0, 7)];
            std::string args = kind == 9 ? fdp.ConsumeRandomLengthString(256) : structuredArgs(fdp);
            queryBoth(m, q, fdp.ConsumeIntegralInRange<int>(0, 10) ? &args : nullptr);
        }
    }
    // Snapshot round trip: a replica rebuilt by state transfer must be indistinguishable.
    std::string snap = m.a.snapshot();
    StateMachine c;
    c.restore(snap);
    CHECK(c.snapshot() == snap);
    CHECK(c.applied() == m.a.applied());
    CHECK(c.digest() == m.a.digest());
    CHECK(c.stateFingerprint() == m.a.stateFingerprint());
    for (const char* q : kQueries) {
        for (const char* n : kNames) {
            std::string args;
            Packer p(args);
            p.mapHeader(2);
            p.kv("username", n);
            p.kv("limit", std::int64_t(200));
            msgpack::object_handle h = msgpack::unpack(args.data(), args.size());
            CHECK(c.query(q, &h.get()) == m.a.query(q, &h.get()));
        }
    }
    return 0;
}
