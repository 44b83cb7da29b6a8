#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/types.h>

#include "codec/Body.h"
#include "codec/FrameReader.h"
#include "codec/Limits.h"
#include "core/StateMachine.h"
#include "server/SnapshotExport.h"
#include "storage/EpochStore.h"
#include "storage/Log.h"
#include "storage/SnapshotStore.h"

namespace replica {

class Packer;

/// Settings of one replica server (filled from flags by main.cc).
struct ServerConfig {
    std::string id;
    std::string host = "127.0.0.1";
    int port = 7401;
    std::string secret;  ///< empty in insecure mode
    Limits limits;
    std::int64_t snapshotEvery = 0;  ///< 0 = never
    /// A trigger writes a snapshot only once the log since the last one is at least this many
    /// times that snapshot's size (0: at every trigger).
    double snapshotLogRatio = 1.0;
    std::size_t maxBufferedWrites = 100000;
    /// The reorder buffer and the parked reads are capped in bytes too: a write frame may be
    /// about 128 KiB, so 100,000 of them would be gigabytes.
    std::size_t maxBufferedBytes = std::size_t(256) << 20;
    std::size_t maxParkedBytes = std::size_t(64) << 20;
    std::string dataDir;  ///< empty: in memory only (an install is then received in memory)
    int handshakeTimeoutMs = 5000;   ///< an unauthenticated connection is closed after this
    std::size_t maxConnections = 1024;  ///< further connections are accepted and closed at once
    /// After a turn that read something, keep polling without sleeping for this long (0: off).
    int busyPollUs = 30;
};

/// The replica's transport and sequencing: a single-threaded epoll loop over non-blocking
/// sockets that runs the handshake, applies writes strictly in seq order (buffering gaps),
/// parks reads until `min` is applied, answers heartbeats and fences stale epochs.
///
/// One loop turn: read what is available on every ready socket (up to 4 MiB each, 64 KiB
/// before the handshake) and handle those frames;
/// group-commit the log (one sync); expire parked reads; snapshot if due; then send each
/// connection's replies with one send(). Acks are therefore never sent before their write is
/// durable (with --fsync always|batch). Not thread-safe: run() owns the calling thread.
class Server {
public:
    /// Dependencies are owned by the caller and must outlive the server. `snapshots` may be
    /// nullptr (no data dir: no snapshots).
    Server(ServerConfig config, StateMachine& machine, Log& log, SnapshotStore* snapshots,
           EpochStore& epochs);
    ~Server();

    /// Binds and listens; returns the real port (for port 0). Throws std::runtime_error.
    int listen();
    /// What recovery found: the snapshots on disk (oldest first; the log reaches back to the
    /// oldest), the newest one's size and the log bytes after it.
    void setSnapshots(const std::vector<std::int64_t>& seqs, std::uint64_t newestBytes,
                      std::uint64_t logBytesAfter) {
        compactedThrough_ = seqs.empty() ? 0 : seqs.front();
        retained_.assign(seqs.begin() + (seqs.empty() ? 0 : 1), seqs.end());
        lastSnapshotBytes_ = newestBytes;
        logBytesSinceSnapshot_ = logBytesAfter;
    }
    /// Runs the loop until stop() (from a signal handler: it only sets a flag).
    void run();
    static void stop();

private:
    struct Connection;
    struct Parked {
        std::uint64_t conn;
        std::int64_t id;
        std::chrono::steady_clock::time_point deadline;
        std::string body;  // the read frame body, decoded again when answered
    };
    struct Pending {
        std::uint64_t conn;
        std::string body;    // the write body (of a `w`, or the record of a `cu`)
        std::int64_t fence;  // the sender's epoch, checked again when the write is applied
    };
    struct Install;

    void acceptAll();
    void readFrom(Connection& c);
    /// Decodes one frame and hands it to the handler of the connection's phase and its type.
    void handleFrame(Connection& c, const std::string& bytes);
    void handleHello(Connection& c, const Body& body);
    void handleAuth(Connection& c, const Body& body);
    // Handlers of Ready-phase frames, looked up by type in handleFrame, hence one signature:
    // `bytes` is the frame as received (kept by those that buffer it), `body` its decoding.
    // They throw FrameError for a malformed frame.
    void handleWrite(Connection& c, const std::string& bytes, const Body& body);
    void handleCatchUp(Connection& c, const std::string& bytes, const Body& body);
    void handleHeartbeat(Connection& c, const std::string& bytes, const Body& body);
    /// Packs this replica's position, the four keys s, e, d, le that `ready` and `hba` share
    /// (docs/protocol.md): applied seq, stored epoch, digest, epoch of the last applied write.
    void packPosition(Packer& p) const;
    void acceptWrite(Connection& c, const std::string& bytes, const Body& body, std::int64_t fence);
    void handleRead(Connection& c, const std::string& bytes, const Body& body);
    void applyReady();
    void applyOne(std::uint64_t connId, const std::string& bytes, const Body* decoded,
                  std::int64_t fence);
    void answerRead(Connection& c, const Body& body, bool behind);
    void serveParked(bool expireOnly);
    std::multimap<std::int64_t, Parked>::iterator unpark(std::multimap<std::int64_t, Parked>::iterator it);
    // Background snapshots (storage/Layout.h): a forked child writes the state at seq S while
    // the loop goes on; the covered log segments are deleted once the child succeeded.
    void maybeSnapshot();
    [[noreturn]] void snapshotChild(std::int64_t seq, pid_t parent);
    /// First steps of every forked child: die with the parent, default signals, and drop the
    /// parent's sockets (a connection the parent closes must reach the peer now).
    void becomeChild(pid_t parent);
    /// Reaps a finished snapshot child (blocking: waits for it). Returns true if none is left.
    bool reapSnapshot(bool block);
    /// Drops the log and the snapshots that the newest snapshot at or below the committed seq
    /// covers (or, past kMaxRetainedSnapshots, the newest few keep; docs/replication.md,
    /// "Compaction waits for the commit").
    void compact();
    /// Kills a running snapshot child and discards its work (before an install replaces the log).
    void abortSnapshot(const std::string& reason);
    /// The first seq > `after` at which this replica snapshots: every --snapshot-every writes,
    /// offset per replica id so replicas do not all pause together.
    std::int64_t nextSnapshotAfter(std::int64_t after) const;
    // State transfer (docs/protocol.md "Epochs, state transfer and membership"); Ready-phase
    // handlers like handleWrite.
    void handleEpoch(Connection& c, const std::string& bytes, const Body& body);
    void handleSnapOpen(Connection& c, const std::string& bytes, const Body& body);
    void handleSnapRead(Connection& c, const std::string& bytes, const Body& body);
    void handleSnapClose(Connection& c, const std::string& bytes, const Body& body);
    /// snap_open with `at_most`: the newest stored snapshot at or below it, handed out as is.
    void openStoredSnapshot(Connection& c, std::int64_t id, std::int64_t atMost);
    void sendSnapInfo(Connection& c, std::int64_t id, std::int64_t x, std::int64_t seq,
                      std::int64_t epoch, std::int64_t lastEpoch, const StateMachine::Digest& digest,
                      std::uint64_t size, std::uint64_t hash);
    /// Answers the snap_opens whose children finished (snap_info, or err snapshot_failed).
    void reapExports();
    void handleLogRead(Connection& c, const std::string& bytes, const Body& body);
    void handleInstBegin(Connection& c, const std::string& bytes, const Body& body);
    void handleInstData(Connection& c, const std::string& bytes, const Body& body);
    void handleInstEnd(Connection& c, const std::string& bytes, const Body& body);
    void handleInstAbort(Connection& c, const std::string& bytes, const Body& body);
    /// Verifies the received snapshot and makes it the replica's state; returns "" or the
    /// reason it was refused (the old state is then kept).
    std::string finishInstall();
    void abortInstall(const std::string& reason);
    void sweepIdle();
    void flush(Connection& c);
    /// c.out, after any acks batched before it (every other frame is packed through this, so
    /// replies leave in the order they were made).
    std::string& frameOut(Connection& c);
    /// Batches one ack on a protocol-2 connection (reply empty: a duplicate).
    void queueAck(Connection& c, std::int64_t seq, std::int64_t epoch,
                  std::optional<std::string_view> reply);
    /// Packs the batched acks, if any, as one `as` frame into c.out.
    void emitAcks(Connection& c);
    /// Sends err and closes the connection once it is flushed (after the turn's log sync).
    void fail(Connection& c, const std::string& code, const std::string& reason,
              const char* idKey = nullptr, std::int64_t idValue = 0);
    /// Queues one err frame ({t, id?, code, msg}) on `c`; shared by fail and refuse.
    void queueError(Connection& c, const std::string& code, const std::string& reason,
                    const char* idKey, std::int64_t idValue);
    /// Sends err for one request and keeps the connection open.
    void refuse(Connection& c, const std::string& code, const std::string& reason,
                const char* idKey = nullptr, std::int64_t idValue = 0);
    void close(Connection& c, const std::string& reason);
    Connection* find(std::uint64_t id);
    bool rateLimited(const std::string& addr);
    int nextTimeoutMs() const;

    ServerConfig config_;
    StateMachine& machine_;
    Log& log_;
    SnapshotStore* snapshots_;
    EpochStore& epochs_;
    int listenFd_ = -1;
    int epollFd_ = -1;
    std::uint64_t nextConnId_ = 1;
    std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> conns_;
    std::map<std::int64_t, Pending> pending_;  // out-of-order writes by seq
    std::multimap<std::int64_t, Parked> parked_;  // reads waiting for min seq
    std::size_t pendingBytes_ = 0, parkedBytes_ = 0;  // their bodies' sizes, summed
    std::unordered_map<std::string, std::deque<std::chrono::steady_clock::time_point>> authFailures_;
    std::int64_t snapshotOffset_ = 0;    // this replica's trigger offset, from its id
    std::int64_t nextSnapshotAt_ = 0;    // seq at which the next snapshot is due
    pid_t snapshotPid_ = -1;             // the running snapshot child, or -1
    std::int64_t snapshotSeq_ = 0;       // ... and the seq it writes
    std::chrono::steady_clock::time_point snapshotStarted_{};
    long snapshotParentAnonKb_ = -1;     // ... and the parent's RssAnon at the fork (logged)
    // The log is compacted only up to a snapshot at or below the seq the coordinator says a
    // majority holds: until then the snapshot may include writes a new coordinator overwrites,
    // and the log before it may be the only copy of agreed writes another replica lacks.
    std::int64_t committed_ = 0;          // from the current coordinator's heartbeats
    std::int64_t compactedThrough_ = 0;   // the oldest snapshot kept: log_read at or before it is `compacted`
    std::vector<std::int64_t> retained_;  // newer snapshots, log before them kept (ascending)
    // A snapshot is due only once the log since the last one is at least as large as it was:
    // its cost grows with the state, and this keeps it proportional to the writes.
    std::uint64_t lastSnapshotBytes_ = 0;      // its file's size
    std::uint64_t logBytesSinceSnapshot_ = 0;  // bodies logged after it
    std::uint64_t snapshotLogBytes_ = 0;       // ... of which the running child's snapshot covers
    std::unique_ptr<Install> install_;  // non-null while a snapshot is being installed
    // snap_opens whose child is still writing, by export key: who asked, and the position
    // (seq, epochs, digest) of the state the child copied at fork.
    struct PendingExport {
        std::uint64_t conn;
        std::int64_t requestId, x, seq, epoch, lastEpoch;
        StateMachine::Digest digest;
        long parentAnonKb;  // the replica's RssAnon at the fork (logged with the child's peak)
    };
    std::map<std::uint64_t, PendingExport> exportsPending_;
    std::uint64_t nextExportKey_ = 1;
    SnapshotExports exports_;
    std::string snapChunk_;  // snap_read's buffer (capacity reused)
    std::chrono::steady_clock::time_point lastSweep_{};
    std::chrono::steady_clock::time_point lastRefusedLog_{};
    std::size_t refusedSinceLog_ = 0;
    std::size_t unauthenticated_ = 0;  // connections not yet Ready
    std::size_t framesThisTurn_ = 0;  // frames handled in the current loop turn (busy-poll)
    std::string logScratch_;  // log_read packs its records here (capacity reused)
};

/// One log line to stderr: "replica level=L " + the key=value pairs in `kv`.
void logLine(const char* level, const std::string& kv);

}  // namespace replica
