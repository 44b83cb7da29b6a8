#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace replica {

/// Snapshot files in the data dir (format in storage/Layout.h). Not thread-safe.
class SnapshotStore {
public:
    explicit SnapshotStore(std::string dataDir) : dir_(std::move(dataDir)) {}

    /// Writes `payload` as the snapshot at `seq` durably (temp file, fsync, rename, fsync dir),
    /// then deletes every other snapshot (older ones, and after an install at a lower seq than
    /// before, newer ones of the replaced history). Throws StorageError on I/O failure.
    void save(std::int64_t seq, const std::string& payload);

    /// The durable part of save() alone: snapshot.tmp, fsync, rename to the snapshot at `seq`,
    /// fsync dir. Deletes nothing. Run by the forked child of a background snapshot.
    void write(std::int64_t seq, const std::string& payload) const;

    /// Deletes the snapshots older than `seq` (after the one at `seq` became durable).
    void prune(std::int64_t seq) const;

    /// Deletes a snapshot.tmp left by a crash or a failed background snapshot.
    void removeTemp() const;

    /// Whether a snapshot file for exactly `seq` exists (not verified).
    bool has(std::int64_t seq) const;
    /// The size in bytes of the snapshot file for `seq` (0 when there is none).
    std::uint64_t fileSize(std::int64_t seq) const;

    /// The newest snapshot (seq, payload), verified; nullopt when there is none. Throws
    /// StorageError naming the file when it is damaged.
    std::optional<std::pair<std::int64_t, std::string>> loadLatest() const;

private:
    std::string dir_;
};

}  // namespace replica
