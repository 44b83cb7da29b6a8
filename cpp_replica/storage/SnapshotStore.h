#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "codec/ByteSink.h"
#include "codec/ByteSource.h"

namespace replica {

/// A snapshot loadLatest() found damaged and passed over for an older one.
struct SkippedSnapshot {
    std::int64_t seq;
    std::string path;
    std::string reason;  ///< the StorageError's message
};

/// The snapshot loadLatest() restored.
struct LoadedSnapshot {
    std::int64_t seq;
    std::uint64_t fileSize;  ///< header + payload
    std::vector<SkippedSnapshot> skipped;  ///< newer ones that were damaged, newest first
};

/// A stored snapshot opened for reading, to hand it out for a state transfer: the caller owns
/// `fd` (the file stays readable after a compaction deletes its name).
struct OpenedSnapshot {
    int fd;
    std::uint64_t payloadAt;  ///< where the payload begins in the file
    std::uint64_t size;       ///< of the payload
    std::uint64_t hash;       ///< the header's checksum: XXH3-64 of the payload
    std::string path;
};

/// Snapshot files in the data dir (format in storage/Layout.h). Not thread-safe.
class SnapshotStore {
public:
    /// Produces a snapshot's payload: calls the sink with its pieces, in order.
    using Encoder = std::function<void(const ByteSink&)>;
    /// Consumes a snapshot's payload: the `size` bytes of the source, read in order.
    using Decoder = std::function<void(const ByteSource&, std::uint64_t size)>;

    explicit SnapshotStore(std::string dataDir) : dir_(std::move(dataDir)) {}

    /// An install's snapshot, in two steps (storage/Layout.h, "Installing"). stage(): the
    /// payload `encode` produces, written durably as install.snap (temp file, fsync, rename,
    /// fsync dir); the snapshots already there are untouched. promote(): install.snap renamed
    /// to the snapshot at `seq` (the install's commit point: one rename), then every other
    /// snapshot deleted (older ones, and newer ones of the replaced history). Throw
    /// StorageError on I/O failure.
    void stage(const Encoder& encode) const;
    void promote(std::int64_t seq) const;
    /// Whether an install.snap is there (an install not committed), and deleting it.
    bool hasStaged() const;
    void removeStaged() const;
    /// Deletes every snapshot but the one at `seq`.
    void keepOnly(std::int64_t seq) const;

    /// The durable part of save() alone: snapshot.tmp, fsync, rename to the snapshot at `seq`,
    /// fsync dir. Deletes nothing. Run by the forked child of a background snapshot. The payload
    /// is streamed from `encode` to the file as it comes (never held whole here); a throw from
    /// `encode` fails the write like an I/O error.
    void write(std::int64_t seq, const Encoder& encode) const;

    /// Deletes the snapshots older than `seq` (after the one at `seq` became durable).
    void prune(std::int64_t seq) const;

    /// Deletes a snapshot.tmp left by a crash or a failed background snapshot.
    void removeTemp() const;

    /// The seqs of the snapshots there, oldest first.
    std::vector<std::int64_t> seqs() const;
    /// Opens the snapshot at `seq` and reads its header (the payload is not verified: a
    /// transfer's target checks it against `hash`). Throws StorageError.
    OpenedSnapshot open(std::int64_t seq) const;

    /// Renames a damaged snapshot file to <name>.damaged: never listed again, kept for a look.
    void setAside(const std::string& path) const;

    /// Whether a snapshot file for exactly `seq` exists (not verified).
    bool has(std::int64_t seq) const;
    /// The size in bytes of the snapshot file for `seq` (0 when there is none).
    std::uint64_t fileSize(std::int64_t seq) const;

    /// Restores the newest intact snapshot. Checksums are verified newest first, and the
    /// payload of the first that passes goes to `decode`, as a source reading the file (a large
    /// state is never held whole: the file is read twice, in pieces of 1 MiB). A newer one that
    /// is damaged or unreadable is passed over and listed in `skipped`; the log from the older
    /// one on is kept for that (compaction keeps the snapshot before the newest, Layout.h), and
    /// the caller sets the damaged ones aside once the log has replayed. nullopt when there is
    /// no snapshot. Throws StorageError naming the newest file when none is intact; what
    /// `decode` throws passes through.
    std::optional<LoadedSnapshot> loadLatest(const Decoder& decode) const;

private:
    void writeAs(const std::string& path, const Encoder& encode) const;
    std::string pathOf(std::int64_t seq) const;

    std::string dir_;
};

}  // namespace replica
