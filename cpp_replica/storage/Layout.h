#pragma once

namespace replica {

/// On-disk layout of a replica's data dir (`--data-dir`). One replica per dir.
///
/// ```
/// DATA_DIR/
///   epoch                      highest epoch seen, decimal text; replaced atomically
///                              (epoch.tmp -> fsync -> rename -> fsync dir)
///   snapshot-<seq:020>.snap    newest snapshot: "RSNAP001" | u64 LE xxh3_64(payload) | payload
///                              payload = StateMachine::snapshot() at seq; written as
///                              snapshot.tmp, fsynced, renamed; older ones deleted afterwards
///   log/
///     <first seq:020>.log      command log segment: records back to back, each
///                              u32 LE body length | u64 LE seq | u64 LE xxh3_64(seq bytes+body)
///                              | body (the exact write frame body bytes that were applied)
///   install.tmp                a snapshot being received (inst_begin..inst_end); deleted when
///                              the install ends or fails, and at start
///   log.discard-<seq:020>/     the old log/ during an install at seq (exists only briefly)
/// ```
///
/// Writes: with fsync `batch` and `never` the records of one event-loop turn are buffered and
/// written with one write() at the end of the turn (then one fdatasync for `batch`), before that
/// turn's acks are sent; with `always` each record is written and fdatasynced on append.
///
/// Installing a snapshot at S (state transfer) replaces the log: (1) log/ is renamed to
/// log.discard-S (dir fsynced), (2) snapshot-S is written as below (older and newer snapshots
/// deleted), (3) log.discard-S is deleted and log/ recreated with segment S+1. A crash between
/// the steps is repaired at start: if snapshot-S exists the install completed and
/// log.discard-S is deleted; otherwise log.discard-S is renamed back to log/ (old state kept).
///
/// Recovery: restore the newest snapshot (if any), then replay every log record with a higher
/// seq, in order. A record cut short at the end of the newest segment (a torn write: the crash
/// came mid-append) is cut off with a warning. Any other bad record refuses the start with an
/// error naming the file and offset: silently skipping it would lose acknowledged writes.
/// After a snapshot at seq S a new segment starting at S+1 is opened and the older segments,
/// which hold only seqs <= S, are deleted.
struct Layout {
    static constexpr const char* kEpochFile = "epoch";
    static constexpr const char* kLogDir = "log";
    static constexpr const char* kSnapshotPrefix = "snapshot-";
    static constexpr const char* kSnapshotSuffix = ".snap";
    static constexpr const char* kSnapshotMagic = "RSNAP001";
};

}  // namespace replica
