#pragma once
#include <cstdint>
#include <string>

namespace replica {

/// The highest epoch this replica has seen, kept in DATA_DIR/epoch so fencing survives restarts.
/// Not thread-safe. An empty dir string keeps it in memory only.
class EpochStore {
public:
    explicit EpochStore(std::string dataDir);
    std::int64_t get() const { return epoch_; }
    /// Raises the stored epoch to `epoch` durably before returning (temp file, fsync, rename).
    void raise(std::int64_t epoch);

private:
    std::string dir_;
    std::int64_t epoch_ = 0;
};

}  // namespace replica
