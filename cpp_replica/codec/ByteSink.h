#pragma once
#include <functional>
#include <string_view>

namespace replica {

/// Takes a long byte stream piece by piece, in order: the pieces concatenated are the stream.
/// A piece is valid only during the call. Lets the snapshot encoder hand a whole state to a
/// file or a hash through a bounded buffer instead of building it in memory first. A sink may
/// throw to stop the writer.
using ByteSink = std::function<void(std::string_view)>;

}  // namespace replica
