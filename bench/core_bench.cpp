// Core benchmark, no I/O: apply throughput of the state machine and home-timeline latency.
//   build/.../core_bench [n_commands]
// Prints one key=value line per measurement.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "codec/Body.h"
#include "codec/Packer.h"
#include "core/StateMachine.h"

using namespace replica;
using Clock = std::chrono::steady_clock;

namespace {

std::string writeBody(std::int64_t seq, const char* op, const std::vector<std::pair<std::string, std::string>>& args,
                      std::string_view rid = "") {
    std::string out;
    Packer p(out);
    p.mapHeader(7);
    p.kv("t", "w");
    p.kv("e", std::int64_t(1));
    p.kv("s", seq);
    p.kv("ts", std::int64_t(1700000000000000) + seq);
    p.kv("rid", rid);
    p.kv("op", op);
    p.str("a");
    p.mapHeader(std::uint32_t(args.size()));
    for (auto& [k, v] : args) p.kv(k, v);
    return out;
}

double seconds(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
    const std::int64_t n = argc > 1 ? std::atoll(argv[1]) : 1000000;
    Limits limits;

    for (bool withRid : {true, false}) {
    // 1. apply throughput: follow/unfollow toggles and short posts among 1,000 users, the bodies
    //    pre-encoded (as the server receives them), rid set (exactly-once table in play).
    {
        StateMachine sm;
        std::int64_t seq = 0;
        for (int i = 0; i < 1000; ++i)
            sm.applyBytes(writeBody(++seq, "create_user", {{"username", "user" + std::to_string(i)}, {"password_hash", "h"}}), limits);
        std::vector<std::string> bodies;
        bodies.reserve(std::size_t(n));
        for (std::int64_t i = 0; i < n; ++i) {
            std::string a = "user" + std::to_string(i % 1000), b = "user" + std::to_string((i * 7 + 1) % 1000);
            std::string rid = withRid ? "rid-" + std::to_string(i) : "";
            if (i % 2 == 0)
                bodies.push_back(writeBody(++seq, "create_post", {{"actor", a}, {"text", "hello world"}}, rid));
            else
                bodies.push_back(writeBody(++seq, "follow", {{"actor", a}, {"target", b}}, rid));
        }
        auto t0 = Clock::now();
        for (const std::string& b : bodies) sm.applyBytes(b, limits);
        auto t1 = Clock::now();
        std::printf("bench=apply rid=%s commands=%lld seconds=%.3f commands_per_s=%.0f\n",
                    withRid ? "unique" : "none", static_cast<long long>(n), seconds(t0, t1),
                    double(n) / seconds(t0, t1));
    }
    }

    // 2. home timeline: a user following 1,000 users among 100,000 posts, 50 newest.
    {
        StateMachine sm;
        std::int64_t seq = 0;
        const int users = 2000;
        for (int i = 0; i < users; ++i)
            sm.applyBytes(writeBody(++seq, "create_user", {{"username", "user" + std::to_string(i)}, {"password_hash", "h"}}), limits);
        for (int i = 1; i <= 1000; ++i)
            sm.applyBytes(writeBody(++seq, "follow", {{"actor", "user0"}, {"target", "user" + std::to_string(i * 2 - 1)}}), limits);
        for (int i = 0; i < 100000; ++i)
            sm.applyBytes(writeBody(++seq, "create_post", {{"actor", "user" + std::to_string((i * 7919) % users)}, {"text", "post text"}}), limits);
        std::string rb;
        Packer p(rb);
        p.mapHeader(3);
        p.kv("t", "r");
        p.kv("q", "home");
        p.str("a");
        p.mapHeader(2);
        p.kv("username", "user0");
        p.kv("limit", std::int64_t(50));
        Body body = Body::decode(rb, limits);
        const int reps = 2000;
        std::size_t bytes = 0;
        auto t0 = Clock::now();
        for (int i = 0; i < reps; ++i) bytes += sm.query("home", body.optional("a")).size();
        auto t1 = Clock::now();
        std::printf("bench=home following=1000 posts=100000 limit=50 us_per_query=%.1f reply_bytes=%zu\n",
                    seconds(t0, t1) * 1e6 / reps, bytes / reps);
    }
    return 0;
}
