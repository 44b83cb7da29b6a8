// pybind11 module webfront.core._core: the same C++ the server runs, for pytest and tools.
// Values cross as MessagePack bytes (the Python wrapper packs/unpacks), so there is exactly one
// C++ code path for decoding and encoding.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <xxhash.h>

#include "codec/Body.h"
#include "codec/FrameError.h"
#include "codec/FrameReader.h"
#include "core/StateMachine.h"
#include "storage/FileLog.h"
#include "storage/MemoryLog.h"
#include "storage/SnapshotStore.h"

namespace py = pybind11;
using namespace replica;

void bindCoordinator(py::module_& m);  // bindings/coordinator.cc

namespace {

py::bytes toBytes(std::string_view s) { return py::bytes(s.data(), s.size()); }

py::bytes digestBytes(const StateMachine::Digest& d) {
    return py::bytes(reinterpret_cast<const char*>(d.data()), d.size());
}

Limits makeLimits(std::uint32_t maxFrameBytes) {
    Limits l;
    l.maxFrameBytes = maxFrameBytes;
    return l;
}

FsyncPolicy policyFrom(const std::string& s) {
    if (s == "always") return FsyncPolicy::Always;
    if (s == "batch") return FsyncPolicy::Batch;
    if (s == "never") return FsyncPolicy::Never;
    throw py::value_error("fsync must be always, batch or never");
}

std::vector<std::pair<std::int64_t, py::bytes>> replayAll(Log& log, std::int64_t after) {
    std::vector<std::pair<std::int64_t, py::bytes>> out;
    log.replay(after, [&](std::int64_t seq, std::string_view body) {
        out.emplace_back(seq, toBytes(body));
    });
    return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "C++ replica core: state machine, codec and log (see webfront.core)";
    static py::exception<FrameError> frameError(m, "FrameError", PyExc_ValueError);
    static py::exception<StorageError> storageError(m, "StorageError", PyExc_OSError);
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const FrameError& e) {
            py::set_error(frameError, (e.code() + ": " + e.what()).c_str());
        } catch (const StorageError& e) {
            py::set_error(storageError, e.what());
        }
    });

    bindCoordinator(m);

    py::class_<StateMachine>(m, "StateMachine")
        .def(py::init<>())
        .def(
            "apply",
            [](StateMachine& sm, py::bytes body, std::uint32_t maxFrameBytes) {
                std::string b = body;
                if (b.size() > maxFrameBytes)
                    throw FrameError("too_large", "body larger than max_frame_bytes");
                return toBytes(sm.applyBytes(b, makeLimits(maxFrameBytes)));
            },
            py::arg("body"), py::arg("max_frame_bytes") = 1u << 20,
            "Apply one write frame body (msgpack bytes); returns the reply bytes.")
        .def(
            "query",
            [](const StateMachine& sm, py::bytes readBody, std::uint32_t maxFrameBytes) {
                // The same path as the server: decode the read frame body, answer q with a.
                std::string b = readBody;
                Body body = Body::decode(b, makeLimits(maxFrameBytes));
                return toBytes(sm.query(body.requireStr("q"), body.optional("a")));
            },
            py::arg("read_body"), py::arg("max_frame_bytes") = 1u << 20,
            "Answer a read frame body (msgpack bytes with q and a); returns the reply bytes.")
        .def_property_readonly("applied", &StateMachine::applied)
        .def_property_readonly("last_epoch", &StateMachine::lastEpoch)
        .def_property_readonly("digest", [](const StateMachine& sm) { return digestBytes(sm.digest()); })
        .def("fingerprint", [](const StateMachine& sm) { return digestBytes(sm.stateFingerprint()); })
        .def("snapshot", [](const StateMachine& sm) { return toBytes(sm.snapshot()); })
        .def("restore", [](StateMachine& sm, py::bytes b) { sm.restore(std::string_view(b)); });

    m.def(
        "xxh3_64",
        [](py::bytes data) {
            std::string_view d = data;
            return XXH3_64bits(d.data(), d.size());
        },
        "XXH3-64 of bytes (the `h` of snapshot and install chunks), as an unsigned int.");
    m.def(
        "decode_body",
        [](py::bytes body, std::uint32_t maxFrameBytes) {
            std::string b = body;
            Body::decode(b, makeLimits(maxFrameBytes));
            return toBytes(b);
        },
        py::arg("body"), py::arg("max_frame_bytes") = 1u << 20,
        "Check a frame body against the protocol's limits; returns it or raises FrameError.");

    m.def(
        "decoded_repack",
        [](py::bytes body, bool generic, std::uint32_t maxFrameBytes) {
            std::string b = body;
            Body decoded = generic ? Body::decodeGenericForTest(b, makeLimits(maxFrameBytes))
                                   : Body::decode(b, makeLimits(maxFrameBytes));
            msgpack::sbuffer out;
            msgpack::pack(out, decoded.root());
            return py::bytes(out.data(), out.size());
        },
        py::arg("body"), py::arg("generic") = false, py::arg("max_frame_bytes") = 1u << 20,
        "Decode a frame body (by default as the replica does; generic=True: through msgpack-cxx's "
        "unpacker only) and return msgpack-cxx's packing of the decoded tree, so tests can check "
        "that both readers build the same tree and raise the same FrameError.");

    py::class_<FrameReader>(m, "FrameReader")
        .def(py::init<std::uint32_t>(), py::arg("max_frame_bytes") = 1u << 20)
        .def("feed",
             [](FrameReader& r, py::bytes data) {
                 std::string d = data;
                 r.feed(d.data(), d.size());
                 std::vector<std::string> out;
                 r.drain(out);
                 py::list result;
                 for (auto& s : out) result.append(toBytes(s));
                 return result;
             })
        .def_property_readonly("pending", &FrameReader::pending);

    py::class_<Log>(m, "Log")
        .def("append", [](Log& l, std::int64_t seq, py::bytes body) { l.append(seq, std::string(body)); })
        .def("sync", &Log::sync)
        .def("replay", &replayAll, py::arg("after") = 0)
        .def("truncate_prefix", &Log::truncatePrefix)
        .def(
            "read",
            [](Log& l, std::int64_t from, std::size_t maxBytes, std::size_t maxRecords) -> py::object {
                std::vector<std::pair<std::int64_t, py::bytes>> out;
                bool held = l.read(from, maxBytes, [&](std::int64_t seq, std::string_view body) {
                    out.emplace_back(seq, toBytes(body));
                    return out.size() < maxRecords;
                });
                if (!held) return py::none();
                return py::cast(out);
            },
            py::arg("from_seq"), py::arg("max_bytes"), py::arg("max_records") = 10000,
            "Records from from_seq on, as log_read serves them (None when no longer held).")
        .def_property_readonly("last_seq", &Log::lastSeq);
    py::class_<MemoryLog, Log>(m, "MemoryLog").def(py::init<>());
    py::class_<FileLog, Log>(m, "FileLog")
        .def(py::init([](const std::string& dataDir, const std::string& fsync) {
                 return std::make_unique<FileLog>(dataDir, policyFrom(fsync));
             }),
             py::arg("data_dir"), py::arg("fsync") = "batch");
}
