// The coordinator's hot path in C++ (cpp_replica/coordinator/): client frames in, write frames
// out. Part of the module webfront.core._core; registered by bindings/module.cc.
#include <pybind11/pybind11.h>

#include "codec/FrameReader.h"
#include "coordinator/ClientFrame.h"

namespace py = pybind11;
using namespace replica;

namespace {

py::object requestId(const msgpack::object& id) {
    switch (id.type) {
        case msgpack::type::POSITIVE_INTEGER: return py::int_(id.via.u64);
        case msgpack::type::NEGATIVE_INTEGER: return py::int_(id.via.i64);
        case msgpack::type::STR: return py::str(id.via.str.ptr, id.via.str.size);
        default: return py::none();  // nil (ClientFrame refuses every other type)
    }
}

// One client connection's input: splits frames and reads each with ClientFrame.
class ClientIntake {
public:
    explicit ClientIntake(std::uint32_t maxFrameBytes) : reader_(maxFrameBytes) {}

    py::list feed(std::string_view data) {
        reader_.feed(data.data(), data.size());
        bodies_.clear();
        reader_.drain(bodies_);
        py::list out;
        for (const std::string& bytes : bodies_) {
            ClientFrame f = ClientFrame::read(bytes, limits_);
            switch (f.kind) {
                case ClientFrame::Kind::Write:
                    out.append(py::make_tuple(requestId(*f.id), py::str(f.rid.data(), f.rid.size()),
                                              py::bytes(f.writeTail)));
                    break;
                case ClientFrame::Kind::Invalid:
                    out.append(py::make_tuple(requestId(*f.id), py::str(f.problem)));
                    break;
                case ClientFrame::Kind::Other:
                    out.append(py::bytes(bytes));
                    break;
            }
        }
        return out;
    }

private:
    FrameReader reader_;
    Limits limits_;  // the replicas' limits: what a write frame made from a cw must meet
    std::vector<std::string> bodies_;
};

}  // namespace

void bindCoordinator(py::module_& m) {
    py::class_<ClientIntake>(m, "ClientIntake")
        .def(py::init<std::uint32_t>(), py::arg("max_frame_bytes"))
        .def("feed", &ClientIntake::feed, py::arg("data"),
             "Frames completed by `data`, in order: (id, rid, write_tail) for a client write "
             "within the replicas' limits, (id, problem) for a cw or cr that breaks them, and "
             "the body bytes of any other frame. Raises FrameError (then unusable) when a "
             "frame must close the connection.");
    m.def(
        "write_frame",
        [](std::int64_t epoch, std::int64_t seq, std::int64_t ts, std::string_view writeTail) {
            return py::bytes(writeFrame(epoch, seq, ts, writeTail));
        },
        py::arg("epoch"), py::arg("seq"), py::arg("ts"), py::arg("write_tail"),
        "The length-prefixed write frame {t: w, e, s, ts, rid, op, a} of a sequenced write.");
}
