#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "codec/Body.h"
#include "codec/Limits.h"

namespace replica {

/// The coordinator's reading of one frame from its client port, and the write frame it makes
/// of a client write. In C++ because the coordinator runs every write through here on its one
/// thread: in Python, decoding the request, checking its arguments against the replicas'
/// limits and encoding the write frame were about 4 us of its ~20 us per write
/// (docs/benchmarks.md).
///
/// Stateless apart from the decoded tree a ClientFrame holds; thread-safe.
struct ClientFrame {
    enum class Kind {
        Write,    ///< a `cw` within every limit: id, rid and writeTail are set
        Invalid,  ///< a `cw` or `cr` whose content breaks a replica's limits: id and problem set
        Other,    ///< any other frame (handshake, a good `cr`, `st`, ...): the caller decodes it
    };
    Kind kind = Kind::Other;
    Body body;                          ///< the decoded frame (references the input bytes)
    const msgpack::object* id = nullptr;  ///< the request id: int, str or nil
    std::string_view rid;               ///< request id for dedupe, "" when absent
    std::string writeTail;              ///< "rid", "op", "a" entries of the write frame
    std::string problem;

    /// Reads a client frame body. `limits` are the replicas' (a write frame has the same
    /// nesting as the client frame it comes from, so a `cw` within them makes a write within
    /// them). Throws FrameError("malformed") for what must close the connection: bytes that are
    /// not one map with a string `t`, invalid UTF-8 (as the Python side would refuse it), a
    /// `cw` with a missing or mistyped id, rid (<= 64 bytes), op or a.
    static ClientFrame read(std::string_view bytes, const Limits& limits);
};

/// The write frame (4-byte length + body {t:"w", e, s, ts, rid, op, a}) of a sequenced write.
std::string writeFrame(std::int64_t epoch, std::int64_t seq, std::int64_t ts,
                       std::string_view writeTail);

}  // namespace replica
