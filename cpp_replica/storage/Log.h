#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace replica {

/// When a log makes appended records durable.
enum class FsyncPolicy {
    Always,  ///< every append is fsynced before it returns
    Batch,   ///< group commit: sync() is called once per event-loop turn, before acks go out
    Never,   ///< left to the OS (fast, loses the last seconds on power loss)
};

/// The durable command log: the write bodies a replica applied, in seq order.
///
/// Implementations: MemoryLog (tests, no data dir) and FileLog. Not thread-safe; the server
/// uses it from its event-loop thread only. Appends must have strictly increasing seqs.
class Log {
public:
    virtual ~Log() = default;

    /// Appends one applied write. Durable on return only with FsyncPolicy::Always.
    virtual void append(std::int64_t seq, std::string_view body) = 0;

    /// Makes every appended record durable (no-op for FsyncPolicy::Never and MemoryLog).
    virtual void sync() = 0;

    /// Calls `fn(seq, body)` for each stored record with seq > `after`, in order.
    virtual void replay(std::int64_t after,
                        const std::function<void(std::int64_t, std::string_view)>& fn) = 0;

    /// Forgets records with seq <= `seq` (they are covered by a snapshot). May keep some of
    /// them (FileLog drops whole segments only); never drops a record above `seq`.
    virtual void truncatePrefix(std::int64_t seq) = 0;

    /// Closes the current segment so every record <= lastSeq() lies in closed segments and the
    /// next append starts a new one (FileLog, when the current segment holds records; a no-op
    /// for MemoryLog). A background snapshot at lastSeq() rolls first, so that once the
    /// snapshot is durable truncatePrefix() drops exactly the older segments.
    virtual void roll() {}

    /// Highest appended seq, 0 when empty.
    virtual std::int64_t lastSeq() const = 0;

    /// Calls `fn(seq, body)` for stored records with seq >= `from`, in order, until the bodies
    /// passed add up to at least `maxBytes` or fn returns false (the first record is always passed, so a caller
    /// paging through makes progress). Includes records appended but not yet synced (FileLog
    /// writes its buffer out first). Returns false when records at `from` are no longer held
    /// (dropped by truncatePrefix or reset), true otherwise (possibly passing nothing when
    /// `from` > lastSeq()).
    virtual bool read(std::int64_t from, std::size_t maxBytes,
                      const std::function<bool(std::int64_t, std::string_view)>& fn) = 0;

    /// Drops every record and continues after `seq` (the next append is seq+1): used when an
    /// installed snapshot at `seq` replaces the whole state. Two phases so a crash between them
    /// is recoverable (FileLog: storage/Layout.h): prepareReset() moves the old records aside
    /// durably; the caller then writes the snapshot at `seq` durably; commitReset() deletes the
    /// old records and opens the new log. abortReset() puts the old records back.
    virtual void prepareReset(std::int64_t seq) = 0;
    virtual void commitReset(std::int64_t seq) = 0;
    virtual void abortReset() = 0;
};

}  // namespace replica
