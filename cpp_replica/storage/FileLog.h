#pragma once
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "storage/Log.h"
#include "storage/SpareSegment.h"

namespace replica {

/// Thrown when a data dir cannot be used (corrupt record, unreadable file). The message names
/// the file and the byte offset.
class StorageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Segmented file log in DATA_DIR/log (format in storage/Layout.h).
///
/// Opening scans every segment and verifies each record's checksum: a torn tail of the newest
/// segment is truncated (with a warning through `warn`), any other damage throws StorageError.
/// Segments are read in 4 MiB chunks (scan, replay); an in-memory index of every record's
/// (seq, offset) lets read() fetch just the requested range with one pread.
/// Not thread-safe.
class FileLog : public Log {
public:
    FileLog(std::string dataDir, FsyncPolicy policy,
            std::function<void(const std::string&)> warn = nullptr);
    ~FileLog() override;

    void append(std::int64_t seq, std::string_view body) override;
    void sync() override;
    void replay(std::int64_t after,
                const std::function<void(std::int64_t, std::string_view)>& fn) override;
    /// Closes the current segment if it holds records <= seq (a new one starts at lastSeq()+1)
    /// and deletes segments that hold only records <= seq.
    void truncatePrefix(std::int64_t seq) override;
    /// Closes the current segment if it holds records; the next append opens lastSeq()+1.
    void roll() override;
    std::int64_t lastSeq() const override { return lastSeq_; }
    bool read(std::int64_t from, std::size_t maxBytes,
              const std::function<bool(std::int64_t, std::string_view)>& fn) override;
    /// Renames DATA_DIR/log to DATA_DIR/log.discard-<seq:020> (durably).
    void prepareReset(std::int64_t seq) override;
    /// Deletes the discarded log and opens DATA_DIR/log/<seq+1:020>.log.
    void commitReset(std::int64_t seq) override;
    /// Renames the discarded log back and reopens it.
    void abortReset() override;

    /// Finishes or undoes a reset cut short by a crash; call before opening the log. A
    /// DATA_DIR/log.discard-<S> left behind is deleted when `committed(S)` says the install at
    /// S committed (and finishes its own part), else renamed back to DATA_DIR/log.
    static void recoverReset(const std::string& dataDir,
                             const std::function<bool(std::int64_t)>& committed,
                             const std::function<void(const std::string&)>& warn);

private:
    // Where each record is: built by the scan at open and by append(), so log_read seeks to
    // the requested seq and reads only that range. 16 bytes per record held.
    struct IndexEntry {
        std::int64_t seq;
        std::uint64_t off;  // of the record header in the segment file
    };
    struct Segment {
        std::int64_t firstSeq;
        std::string path;
        std::vector<IndexEntry> index;  // every record, in file order
        std::uint64_t size;             // bytes, including records still in buffer_
        bool fromSpare = false;         // ends in a spare's zeros until it is closed
    };
    void scan();
    void openSegment(std::int64_t firstSeq);
    void closeSegment();  // writes out, drops a spare's unused zeros, syncs, closes
    void reopenLast();    // opens the newest segment (truncated to its records) for writing
    void writeOut();  // writes `buffer_` to the segment (no fsync)
    std::string discardPath(std::int64_t seq) const;
    std::string segmentPath(std::int64_t firstSeq) const;

    std::string dir_;
    FsyncPolicy policy_;
    std::function<void(const std::string&)> warn_;
    std::vector<Segment> segments_;
    // Segments are made from zero-filled spares when fsync is on (SpareSegment.h): a new one
    // is started when the current one would grow past a spare's size.
    static constexpr std::uint64_t kSpareBytes = 4u << 20;
    std::unique_ptr<SpareSegment> spare_;
    int fd_ = -1;  // the newest segment, open for writing at written_
    std::uint64_t written_ = 0;  // bytes of it on disk (records; zeros follow in a spare)
    bool dirty_ = false;     // written since the last fdatasync
    // Why a write or an fdatasync failed (a full disk, EIO), empty if none has. After one the
    // log writes nothing more: a partly written buffer would be written again after its own
    // first bytes, and a failed fdatasync may have dropped the pages it was to flush, so a
    // later one succeeding proves nothing. The replica stops; a restart cuts the torn tail.
    std::string failure_;
    std::int64_t lastSeq_ = 0;
    // Appended records not yet written: with `batch` and `never` one write() per loop turn
    // (in sync()) instead of one per record.
    std::string buffer_;
    std::string readBuf_;  // reused by read()
    // Saved by prepareReset for abortReset.
    std::vector<Segment> resetSegments_;
    std::int64_t resetLastSeq_ = 0;
    std::int64_t resetSeq_ = -1;
};

/// fsync a directory so a create/rename/unlink in it is durable.
void syncDirectory(const std::string& dir);

}  // namespace replica
