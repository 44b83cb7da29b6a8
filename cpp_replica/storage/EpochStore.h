#pragma once
#include <cstdint>
#include <string>

namespace replica {

/// The highest epoch this replica has seen, kept in DATA_DIR/epoch so fencing survives restarts,
/// with the claim (an id each coordinator incarnation picks at random) that took it by an
/// `epoch` frame. Not thread-safe. An empty dir string keeps it in memory only.
class EpochStore {
public:
    explicit EpochStore(std::string dataDir);
    std::int64_t get() const { return epoch_; }
    /// Raises the stored epoch to `epoch` durably before returning (temp file, fsync, rename).
    void raise(std::int64_t epoch);
    /// An `epoch` frame: takes `epoch` for `claim` (raw bytes; empty: a coordinator that sends
    /// none) and
    /// returns true, or returns false when `epoch` is lower than the stored one or equal to it
    /// and taken by another claim. Two coordinators that picked the same epoch (started at
    /// once, each with its own state dir) can then not both fence a majority: the majorities
    /// overlap, and the replica in both accepts only the first.
    bool claim(std::int64_t epoch, const std::string& claim);

private:
    void store();

    std::string dir_;
    std::int64_t epoch_ = 0;
    std::string claim_;  // hex; empty when unknown (raised by a write, or an older file)
};

}  // namespace replica
