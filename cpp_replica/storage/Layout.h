#pragma once

namespace replica {

/// On-disk layout of a replica's data dir (`--data-dir`). One replica per dir.
///
/// ```
/// DATA_DIR/
///   lock                       held (flock) by the replica_server using the dir, with its pid
///                              (storage/DataDirLock.h)
///   epoch                      highest epoch seen, decimal text, then the hex claim of the
///                              coordinator that took it (if known); replaced atomically
///                              (epoch.tmp -> fsync -> rename -> fsync dir)
///   snapshot-<seq:020>.snap    a snapshot: "RSNAP001" | u64 LE xxh3_64(payload) | payload
///                              payload = StateMachine::snapshot() at seq; written as
///                              snapshot.tmp (streamed; the header's checksum last, over
///                              zeros), fsynced, renamed; the oldest one is what the log was
///                              compacted to, newer ones wait for the commit (below)
///   snapshot.tmp               a snapshot being written (by the forked child, or an install);
///                              deleted at start and when a background snapshot fails
///   log/
///     <first seq:020>.log      command log segment: records back to back, each
///                              u32 LE body length | u64 LE seq | u64 LE xxh3_64(seq bytes+body)
///                              | body (the exact write frame body bytes that were applied);
///                              the newest may end in zeros (it was made from a spare)
///     spare.zero               4 MiB of zeros, fdatasynced, made by a background thread when
///                              fsync is on; renamed into the next segment (SpareSegment.h)
///     spare.tmp                a spare being made (only zeros, whatever a crash leaves)
///   install.tmp                a snapshot being received (inst_begin..inst_end); deleted when
///                              the install ends or fails, and at start
///   install.snap               an installed snapshot, durable, not yet committed (below)
///   log.discard-<seq:020>/     the old log/ during an install at seq (exists only briefly)
/// ```
///
/// Writes: with fsync `batch` and `never` the records of one event-loop turn are buffered and
/// written with one write() at the end of the turn (then one fdatasync for `batch`), before that
/// turn's acks are sent; with `always` each record is written and fdatasynced on append.
///
/// Installing a snapshot at S (state transfer) replaces the state and the log: (1) the snapshot
/// is written as install.snap (as a snapshot is written, below; the replica's own snapshots
/// untouched), (2) log/ is renamed to log.discard-S (dir fsynced), (3) install.snap is renamed
/// to snapshot-S, replacing the replica's own snapshot at S if it had one: the commit point,
/// (4) every other snapshot is deleted (older ones, and newer ones of the replaced history),
/// (5) log.discard-S is deleted and log/ recreated with segment S+1. A crash between the steps
/// is repaired at start. With log.discard-S there: if install.snap is still there, or no
/// snapshot-S is (left by an earlier version that wrote the snapshot after moving the log), the
/// install did not commit: log.discard-S is renamed back to log/ and the replica keeps its own
/// state; otherwise it committed: steps 4 and 5 are finished. An install.snap is deleted at
/// start after that. (Until 2026-11-25 the snapshot was written straight to snapshot-S after
/// step 2, so a replica that already had its own snapshot at S, or a newer one, could come
/// back on its own snapshot without the log after it.)
///
/// Segments: with fsync on, a new segment is the spare renamed (records overwrite zeros, so the
/// log's fdatasync flushes data only, no journal commit), started when the current one would
/// grow past a spare's size (4 MiB) or at a snapshot's roll. A closed segment is truncated to
/// its records; only the newest can end in zeros. Without a ready spare (or after a restart,
/// which reopens the newest segment truncated) a segment is a plain file that grows: correct,
/// slower to sync, until the next roll.
///
/// Recovery: restore the newest intact snapshot (if any: its checksum verified first, then
/// decoded from the file in 1 MiB pieces, never held whole), then replay every log record with a
/// higher seq, in order. A damaged newer one is passed over (`event=snapshot_damaged`) and,
/// once the replay succeeded, renamed snapshot-<seq>.snap.damaged; with none intact the start is
/// refused, nothing renamed. In the newest segment the records end at the first all-zero header or bad
/// record; what follows is dropped (a warning unless it is all zeros) provided no good record
/// with a higher seq follows it: that is a torn write, the crash came mid-append, before the
/// fsync and so before any ack. Any other bad record refuses the start with an error naming the
/// file and offset: silently skipping it would lose acknowledged writes.
/// Log segments older than the oldest snapshot (a crash came between a compaction's two steps)
/// are deleted at start; the log from the oldest snapshot on is kept (compaction, below).
///
/// Periodic snapshots (`--snapshot-every N`, paced by `--snapshot-log-ratio R`: a trigger is
/// skipped while the log since the last snapshot is under R times that snapshot's size) are
/// written in the background, Redis BGSAVE style:
/// at the trigger seq S the server syncs the log and rolls it to a new segment starting at S+1
/// (so the closed segments hold exactly the seqs <= S), then fork()s. The child holds a
/// copy-on-write view of the state at S: it serializes it in 1 MiB pieces straight into
/// snapshot.tmp (never a second copy of the state in memory), fsyncs, renames it to
/// snapshot-S, fsyncs the dir and _exit()s, touching none of the parent's sockets (it closes
/// its copies first) and dying with the parent (PR_SET_PDEATHSIG). The parent keeps
/// serving. Compaction: once a snapshot at N is durable and N is at or below the committed seq
/// of the coordinator's heartbeats (`c`, docs/replication.md "Compaction waits for the
/// commit"), the snapshots older than S, the one before N, and the segments before S+1 are
/// deleted (snapshots first), and only then does log_read at or before S answer `compacted`;
/// snapshot-S and the log after it stay as the fallback of recovery. More than 3 snapshots
/// past S force compaction to the oldest of the 4 newest. A
/// failed child
/// deletes nothing (retried at the next trigger); one child at a time; an install kills a
/// running child first. So a crash at any moment leaves the old snapshot + the whole log, or
/// snapshot-S + the whole log (older files are cleaned up later), both recovering the same
/// state. The trigger is offset per replica: S is the first seq past the previous one with
/// (S + offset) % N == 0, offset = frac(k * 0.618...) * N for an id ending in the number k (the
/// cluster's 1, 2, 3: at least 0.236 N apart), else xxh3(id) % N; a trigger missed while a
/// child runs fires when it ends. Snapshots change no state, reply or digest.
struct Layout {
    static constexpr const char* kEpochFile = "epoch";
    static constexpr const char* kLogDir = "log";
    static constexpr const char* kStagedSnapshot = "install.snap";
    static constexpr const char* kSnapshotPrefix = "snapshot-";
    static constexpr const char* kSnapshotSuffix = ".snap";
    static constexpr const char* kSnapshotMagic = "RSNAP001";
};

}  // namespace replica
