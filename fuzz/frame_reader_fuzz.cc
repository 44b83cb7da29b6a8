// libFuzzer target: the frame reader and body decoder on arbitrary bytes split arbitrarily.
//
// Input layout (FuzzedDataProvider): a frame-size limit, then chunks of the stream, each chunk's
// length taken from the input. Invariants checked:
//   - no crash, no sanitizer report, no exception other than FrameError;
//   - chunking does not matter: the bodies (and the error, if any) equal those of feeding the
//     whole stream at once;
//   - no body is longer than the limit; pending() never exceeds the bytes fed;
//   - Body::decode either throws FrameError or yields a map with a string `t` whose nested values
//     respect Limits (checked again here independently of the decoder's own walk).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "codec/Body.h"
#include "codec/FrameError.h"
#include "codec/FrameReader.h"
#include "FuzzCheck.h"

using replica::Body;
using replica::FrameError;
using replica::FrameReader;
using replica::Limits;

namespace {

struct Outcome {
    std::vector<std::string> bodies;
    std::string error;  // FrameError code, empty if none
};

Outcome readAll(const std::string& stream, std::uint32_t max, const std::vector<std::size_t>& cuts) {
    Outcome o;
    FrameReader reader(max);
    std::size_t at = 0, fed = 0;
    auto step = [&](std::size_t n) {
        reader.feed(stream.data() + at, n);
        at += n;
        fed += n;
        try {
            reader.drain(o.bodies);
        } catch (const FrameError& e) {
            o.error = e.code();
            return false;
        }
        CHECK(reader.pending() <= fed);
        return true;
    };
    for (std::size_t c : cuts) {
        if (!step(c)) return o;
    }
    if (at < stream.size()) step(stream.size() - at);
    return o;
}

std::size_t checkTree(const msgpack::object& o, const Limits& l, std::size_t depth) {
    CHECK(depth <= l.maxDepth);
    switch (o.type) {
        case msgpack::type::STR:
        case msgpack::type::BIN:
            CHECK(o.via.str.size <= l.maxStringBytes);
            return 1;
        case msgpack::type::EXT:
            CHECK(false);
            return 0;
        case msgpack::type::ARRAY:
            CHECK(o.via.array.size <= l.maxListItems);
            for (std::uint32_t i = 0; i < o.via.array.size; ++i)
                checkTree(o.via.array.ptr[i], l, depth + 1);
            return 1;
        case msgpack::type::MAP:
            CHECK(o.via.map.size <= l.maxMapEntries);
            for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
                checkTree(o.via.map.ptr[i].key, l, depth + 1);
                checkTree(o.via.map.ptr[i].val, l, depth + 1);
            }
            return 1;
        default:
            return 1;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider fdp(data, size);
    // Small limits reach the too_large path often; 1 MiB is the production default.
    static const std::uint32_t kMax[] = {0, 1, 7, 64, 4096, 1u << 20};
    std::uint32_t max = kMax[fdp.ConsumeIntegralInRange<std::size_t>(0, 5)];
    std::size_t nCuts = fdp.ConsumeIntegralInRange<std::size_t>(0, 16);
    std::vector<std::size_t> cuts;
    for (std::size_t i = 0; i < nCuts; ++i) cuts.push_back(fdp.ConsumeIntegralInRange<std::size_t>(0, 64));
    std::string stream = fdp.ConsumeRemainingBytesAsString();
    // Cuts past the end of the stream are clamped.
    std::size_t left = stream.size();
    for (std::size_t& c : cuts) {
        c = std::min(c, left);
        left -= c;
    }

    Outcome whole = readAll(stream, max, {});
    Outcome split = readAll(stream, max, cuts);
    // A split stream may stop at the same bad length, having seen the same bodies before it.
    CHECK(whole.bodies == split.bodies);
    CHECK(whole.error == split.error);
    CHECK(whole.error.empty() || whole.error == "too_large");

    Limits limits;
    limits.maxFrameBytes = max;
    for (const std::string& b : whole.bodies) {
        CHECK(b.size() <= max);
        try {
            Body body = Body::decode(b, limits);
            CHECK(body.root().type == msgpack::type::MAP);
            checkTree(body.root(), limits, 1);
            const msgpack::object* t = body.optional("t");
            CHECK(t != nullptr && t->type == msgpack::type::STR);
            // The typed accessors must only throw FrameError.
            for (const char* k : {"s", "e", "id", "rid", "op", "n", "mac"}) {
                try { body.requireInt(k); } catch (const FrameError&) {}
                try { body.requireStr(k); } catch (const FrameError&) {}
                try { body.requireBin(k); } catch (const FrameError&) {}
            }
        } catch (const FrameError& e) {
            CHECK(e.code() == "malformed");
        }
    }
    return 0;
}
