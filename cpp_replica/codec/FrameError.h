#pragma once
#include <stdexcept>
#include <string>

namespace replica {

/// Thrown by the codec when bytes on the wire break the protocol. `code` is the wire error code
/// (`malformed` or `too_large`); the connection that sent them must be closed.
class FrameError : public std::runtime_error {
public:
    FrameError(std::string code, const std::string& reason)
        : std::runtime_error(reason), code_(std::move(code)) {}
    const std::string& code() const { return code_; }

private:
    std::string code_;
};

}  // namespace replica
