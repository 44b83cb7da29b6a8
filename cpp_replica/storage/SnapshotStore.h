#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "codec/ByteSink.h"

namespace replica {

/// A snapshot file read whole, verified. The payload is a view into it: a large state is held
/// once, not copied out of the file's bytes.
struct LoadedSnapshot {
    std::int64_t seq;
    std::string file;        ///< header + payload
    std::size_t payloadAt;   ///< where the payload starts in `file`
    std::string_view payload() const { return std::string_view(file).substr(payloadAt); }
};

/// Snapshot files in the data dir (format in storage/Layout.h). Not thread-safe.
class SnapshotStore {
public:
    /// Produces a snapshot's payload: calls the sink with its pieces, in order.
    using Encoder = std::function<void(const ByteSink&)>;

    explicit SnapshotStore(std::string dataDir) : dir_(std::move(dataDir)) {}

    /// Writes `payload` as the snapshot at `seq` durably (temp file, fsync, rename, fsync dir),
    /// then deletes every other snapshot (older ones, and after an install at a lower seq than
    /// before, newer ones of the replaced history). Throws StorageError on I/O failure.
    void save(std::int64_t seq, std::string_view payload);

    /// The durable part of save() alone: snapshot.tmp, fsync, rename to the snapshot at `seq`,
    /// fsync dir. Deletes nothing. Run by the forked child of a background snapshot. The payload
    /// is streamed from `encode` to the file as it comes (never held whole here); a throw from
    /// `encode` fails the write like an I/O error.
    void write(std::int64_t seq, const Encoder& encode) const;

    /// Deletes the snapshots older than `seq` (after the one at `seq` became durable).
    void prune(std::int64_t seq) const;

    /// Deletes a snapshot.tmp left by a crash or a failed background snapshot.
    void removeTemp() const;

    /// Whether a snapshot file for exactly `seq` exists (not verified).
    bool has(std::int64_t seq) const;
    /// The size in bytes of the snapshot file for `seq` (0 when there is none).
    std::uint64_t fileSize(std::int64_t seq) const;

    /// The newest snapshot, verified; nullopt when there is none. Throws StorageError naming
    /// the file when it is damaged.
    std::optional<LoadedSnapshot> loadLatest() const;

private:
    std::string dir_;
};

}  // namespace replica
