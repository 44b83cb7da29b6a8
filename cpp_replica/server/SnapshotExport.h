#pragma once

// The source side of a state transfer: the snapshot that `snap_open` hands out is serialized by
// a forked child into an unnamed file (O_TMPFILE) in the data directory, so the replica's loop
// never stops for it. It used to serialize in the loop itself, about 0.1 s per 60 MB of state,
// and while one replica is being rebuilt the source is one of the few a majority needs: writes
// stalled with it. Unnamed, the file vanishes with its descriptor, even after a crash. On disk
// rather than in memory (a memfd, still used by a replica without a data directory), a large
// state's copy is page cache the kernel can write out, not memory held for the transfer.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace replica {

class StateMachine;

/// A serialized state held in a file, closed with the object: an unnamed file a child wrote,
/// or a stored snapshot file whose payload begins at `base`. Move-only.
class ExportedSnapshot {
public:
    ExportedSnapshot(int fd, std::uint64_t size, std::uint64_t hash, std::uint64_t base = 0)
        : fd_(fd), size_(size), hash_(hash), base_(base) {}
    ExportedSnapshot(ExportedSnapshot&& other) noexcept;
    ExportedSnapshot& operator=(ExportedSnapshot&& other) noexcept;
    ExportedSnapshot(const ExportedSnapshot&) = delete;
    ExportedSnapshot& operator=(const ExportedSnapshot&) = delete;
    ~ExportedSnapshot();

    std::uint64_t size() const { return size_; }
    std::uint64_t hash() const { return hash_; }  ///< XXH3-64 of the whole state
    /// Replaces `out` with the bytes [off, off + len), clipped to the size. Throws
    /// std::runtime_error if the file cannot be read.
    void read(std::uint64_t off, std::size_t len, std::string& out) const;

private:
    int fd_;
    std::uint64_t size_, hash_, base_;
};

/// The forked children writing snapshots for transfer, each known by the caller's key.
class SnapshotExports {
public:
    /// Snapshot files go in `dir` (a data directory; "" for memory files).
    explicit SnapshotExports(std::string dir) : dir_(std::move(dir)) {}
    SnapshotExports(const SnapshotExports&) = delete;
    SnapshotExports& operator=(const SnapshotExports&) = delete;
    ~SnapshotExports() { killAll(); }

    /// Forks a child that writes `machine`'s state (as of now) into a new unnamed file and
    /// exits; `inChild` runs first in the child (it drops the parent's sockets). Returns "" or
    /// why it could not start.
    std::string start(std::uint64_t key, const StateMachine& machine,
                      const std::function<void()>& inChild);

    struct Finished {
        std::uint64_t key;
        std::optional<ExportedSnapshot> snapshot;  ///< empty if the child failed
        std::string error;
        long childMaxRssKb = 0;  ///< the child's peak RSS, shared pages included
    };
    /// The children that have exited since the last call. Never blocks.
    std::vector<Finished> reap();
    bool running() const { return !children_.empty(); }
    /// Kills and reaps every child; their work is dropped.
    void killAll();

private:
    int openSpool(std::string& error) const;  // a new unnamed file, or -1 and why

    struct Child {
        pid_t pid;
        int fd;
        std::uint64_t key;
    };
    std::string dir_;
    std::vector<Child> children_;
};

}  // namespace replica
