// libFuzzer target: StateMachine::restore on arbitrary bytes (the snapshot a replica installs by
// state transfer, or finds in its data dir).
//
// Invariants: no crash or sanitizer report; restore either throws std::runtime_error or yields a
// state that is self-consistent: snapshot() of it restores to the same bytes, every query answers
// a well-formed map, and a few writes apply identically to the restored instance and to a copy.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "codec/Body.h"
#include "codec/FrameError.h"
#include "codec/Packer.h"
#include "core/StateMachine.h"
#include "FuzzCheck.h"

using replica::Packer;
using replica::StateMachine;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string bytes(reinterpret_cast<const char*>(data), size);
    StateMachine a;
    try {
        a.restore(bytes);
    } catch (const std::runtime_error&) {
        return 0;  // refused: the caller discards the instance
    }
    std::string snap = a.snapshot();
    StateMachine b;
    b.restore(snap);  // what we wrote we must read back
    CHECK(b.snapshot() == snap);
    CHECK(b.stateFingerprint() == a.stateFingerprint());
    // Exercise the restored structures: queries, then writes that touch every user and post.
    static const char* const kQueries[] = {"user", "user_posts", "home", "public",
                                           "followers", "following", "search", "state"};
    static const char* const kOps[] = {"create_post", "follow", "unfollow", "delete_post",
                                       "delete_user"};
    const char* names[] = {"alice", "bob_1", "carol"};
    for (const char* q : kQueries) {
        for (const char* n : names) {
            std::string args;
            Packer p(args);
            p.mapHeader(1);
            p.kv("username", n);
            msgpack::object_handle h = msgpack::unpack(args.data(), args.size());
            CHECK(a.query(q, &h.get()) == b.query(q, &h.get()));
        }
    }
    if (a.applied() >= INT64_MAX - 64 || a.applied() < 0) return 0;
    std::int64_t seq = a.applied();
    for (const char* op : kOps) {
        for (const char* n : names) {
            std::string body;
            Packer p(body);
            p.mapHeader(7);
            p.kv("t", "w");
            p.kv("s", ++seq);
            p.kv("e", a.lastEpoch());
            p.kv("ts", std::int64_t(1));
            p.kv("rid", "");
            p.kv("op", op);
            p.str("a");
            p.mapHeader(4);
            p.kv("actor", n);
            p.kv("target", "alice");
            p.kv("text", "hello");
            p.kv("id", std::int64_t(seq % 5));
            CHECK(a.applyBytes(body) == b.applyBytes(body));
        }
    }
    CHECK(a.digest() == b.digest());
    CHECK(a.snapshot() == b.snapshot());
    return 0;
}
