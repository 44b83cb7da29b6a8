// Core benchmark, no I/O: apply throughput of the state machine and home-timeline latency.
//   build/.../core_bench [n_commands] [case ...]
// Cases (default: all): follow post mixed home. Every apply case runs twice, without a request
// id and with a fresh one per write (the exactly-once table in play). Prints one key=value line
// per measurement.
//
// "Simple commands" are what the web front end sends most: follow/unfollow toggles between
// 1,000 users (`follow`: follow, unfollow, follow, ... of the same pairs, so every write
// changes state) and 11-character posts (`post`); `mixed` alternates the two. The bodies are
// pre-encoded, as the server receives them. The timed loop is `runApply` (not inlined), so
// `valgrind --tool=callgrind --toggle-collect='*runApply*' core_bench 100000 follow` counts the
// instructions of exactly the applies.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "codec/Body.h"
#include "codec/Packer.h"
#include "core/StateMachine.h"

using namespace replica;
using Clock = std::chrono::steady_clock;

namespace {

std::string writeBody(std::int64_t seq, const char* op,
                      const std::vector<std::pair<std::string, std::string>>& args,
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

// CPU time of this thread: on a loaded machine (2 cores shared with test runs) wall time
// mostly measures the scheduler, so both are reported.
double cpuSeconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

std::string user(std::int64_t i) { return "user" + std::to_string(i); }

// The timed loop. Returns a checksum of the reply sizes so nothing is optimized away.
__attribute__((noinline)) std::size_t runApply(StateMachine& sm,
                                               const std::vector<std::string>& bodies,
                                               const Limits& limits) {
    std::size_t sum = 0;
    for (const std::string& b : bodies) sum += sm.applyBytes(b, limits).size();
    return sum;
}

void applyCase(const char* name, std::int64_t n, bool withRid) {
    Limits limits;
    StateMachine sm;
    std::int64_t seq = 0;
    for (int i = 0; i < 1000; ++i)
        sm.applyBytes(writeBody(++seq, "create_user", {{"username", user(i)}, {"password_hash", "h"}}),
                      limits);
    std::vector<std::string> bodies;
    bodies.reserve(std::size_t(n));
    for (std::int64_t i = 0; i < n; ++i) {
        std::string rid = withRid ? "rid-" + std::to_string(i) : "";
        bool post = std::strcmp(name, "post") == 0 || (std::strcmp(name, "mixed") == 0 && i % 2 == 0);
        if (post) {
            bodies.push_back(writeBody(++seq, "create_post", {{"actor", user(i % 1000)}, {"text", "hello world"}}, rid));
        } else {
            // Pairs cycle every 1,000 writes; the round decides follow or unfollow, so each
            // write flips an edge.
            std::int64_t k = i % 1000, round = i / 1000;
            const char* op = round % 2 == 0 ? "follow" : "unfollow";
            bodies.push_back(writeBody(++seq, op, {{"actor", user(k)}, {"target", user((k * 7 + 1) % 1000)}}, rid));
        }
    }
    double c0 = cpuSeconds();
    auto t0 = Clock::now();
    std::size_t sum = runApply(sm, bodies, limits);
    auto t1 = Clock::now();
    double cpu = cpuSeconds() - c0;
    std::printf("bench=apply op=%s rid=%s commands=%lld seconds=%.3f commands_per_s=%.0f "
                "cpu_seconds=%.3f cpu_commands_per_s=%.0f reply_bytes=%zu\n",
                name, withRid ? "unique" : "none", static_cast<long long>(n), seconds(t0, t1),
                double(n) / seconds(t0, t1), cpu, double(n) / cpu, sum / std::size_t(n));
}

void homeCase() {
    // A user following 1,000 users among 100,000 posts, 50 newest.
    Limits limits;
    StateMachine sm;
    std::int64_t seq = 0;
    const int users = 2000;
    for (int i = 0; i < users; ++i)
        sm.applyBytes(writeBody(++seq, "create_user", {{"username", user(i)}, {"password_hash", "h"}}), limits);
    for (int i = 1; i <= 1000; ++i)
        sm.applyBytes(writeBody(++seq, "follow", {{"actor", "user0"}, {"target", user(i * 2 - 1)}}), limits);
    for (int i = 0; i < 100000; ++i)
        sm.applyBytes(writeBody(++seq, "create_post", {{"actor", user((i * 7919) % users)}, {"text", "post text"}}), limits);
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

}  // namespace

int main(int argc, char** argv) {
    const std::int64_t n = argc > 1 ? std::atoll(argv[1]) : 1000000;
    std::vector<std::string> cases;
    for (int i = 2; i < argc; ++i) cases.push_back(argv[i]);
    if (cases.empty()) cases = {"follow", "post", "mixed", "home"};
    for (const std::string& c : cases) {
        if (c == "home") {
            homeCase();
        } else if (c == "follow" || c == "post" || c == "mixed") {
            // CORE_BENCH_RID=none|unique runs one of the two (for callgrind).
            const char* only = std::getenv("CORE_BENCH_RID");
            for (bool withRid : {false, true})
                if (only == nullptr || std::strcmp(only, withRid ? "unique" : "none") == 0)
                    applyCase(c.c_str(), n, withRid);
        } else {
            std::fprintf(stderr, "core_bench: unknown case %s (follow post mixed home)\n", c.c_str());
            return 2;
        }
    }
    return 0;
}
