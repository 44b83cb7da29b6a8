#include "server/Server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "codec/FrameError.h"
#include "codec/Framing.h"
#include "codec/Packer.h"
#include "server/Auth.h"
#include "server/ChildExit.h"
#include "storage/FileLog.h"
#include "storage/FileSource.h"

namespace replica {
namespace {

volatile std::sig_atomic_t gStop = 0;
constexpr std::size_t kNonceBytes = 16;
constexpr std::int64_t kMaxWaitMs = 5000;
constexpr std::size_t kMaxParked = 100000;
constexpr std::size_t kAuthFailuresAllowed = 20;  // per address per window
constexpr auto kAuthWindow = std::chrono::seconds(10);
constexpr std::size_t kMaxTransferChunk = 512u << 10;  // snap_read len, log_read max
constexpr std::size_t kMaxLogRecords = 10000;          // list limit of a frame
constexpr std::size_t kMaxOpenSnapshots = 2;           // per connection
constexpr std::uint32_t kMaxBatchedAcks = 512;          // per `as` frame
constexpr std::size_t kMaxBatchedAckBytes = 256u << 10; // replies per `as` frame
constexpr std::size_t kMaxPreAuthBytes = 64u << 10;    // buffered before the handshake is done
// Snapshots kept beyond the compacted one while the commit lags (policy `first` with no majority
// up, or a coordinator that sends no committed seq): disk stays bounded.
constexpr std::size_t kMaxRetainedSnapshots = 3;
constexpr std::size_t kMaxOutBytes = 64u << 20;        // unsent replies before we drop a reader
constexpr std::size_t kMaxReadPerTurn = 4u << 20;      // from one connection per loop turn

// This process's resident anonymous memory (heap, stacks) in KiB, or -1 if unknown.
long anonResidentKb() {
    std::ifstream status("/proc/self/status");
    std::string key;
    long kb = -1;
    while (status >> key && key != "RssAnon:")
        status.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    status >> kb;
    return kb;
}

// A hash field (`h`): an unsigned 64-bit int on the wire.
std::uint64_t requireHash(const Body& body) {
    const msgpack::object* o = body.optional("h");
    if (o == nullptr || (o->type != msgpack::type::POSITIVE_INTEGER &&
                         o->type != msgpack::type::NEGATIVE_INTEGER))
        throw FrameError("malformed", "missing or mistyped key 'h'");
    return o->via.u64;  // a negative int is its two's complement, as some encoders send it
}

std::string_view digestView(const StateMachine::Digest& d) {
    return std::string_view(reinterpret_cast<const char*>(d.data()), d.size());
}

// Appends the 4-byte length and leaves room: callers pack the body, then fix the length.
}  // namespace

void logLine(const char* level, const std::string& kv) {
    // One write per line so lines from a crash never interleave mid-line.
    std::string line = std::string("replica level=") + level + " " + kv + "\n";
    ssize_t ignored = ::write(2, line.data(), line.size());
    (void)ignored;
}

struct Server::Connection {
    enum class Phase { Hello, Auth, Ready };
    std::uint64_t id;
    int fd;
    std::string addr;  // peer IP, the rate-limit key
    FrameReader reader;
    std::string out;
    Phase phase = Phase::Hello;
    std::string initiatorNonce, acceptorNonce;
    bool closing = false;   // close once `out` is flushed
    bool wantWrite = false; // EPOLLOUT registered
    std::chrono::steady_clock::time_point accepted = std::chrono::steady_clock::now();
    // Snapshots opened with snap_open, by transfer id: the serialized state, kept so a
    // transfer reads one consistent state while writes go on.
    std::map<std::int64_t, ExportedSnapshot> snaps;
    std::int64_t nextXid = 1;
    // Protocol 2 (a coordinator that asked for it): the acks of one turn leave as one `as`
    // frame of parallel arrays, packed here element by element until emitAcks.
    bool batchAcks = false;
    std::uint32_t ackCount = 0;
    std::string ackSeqs, ackEpochs, ackDigests, ackReplies;
    Connection(std::uint64_t i, int f, std::string a, std::uint32_t max)
        : id(i), fd(f), addr(std::move(a)), reader(max) {}
};

// A snapshot being received (inst_begin .. inst_end). One at a time per replica.
struct Server::Install {
    std::uint64_t conn;
    std::int64_t seq, epoch, size;
    std::uint64_t hash;
    std::string digest;
    std::int64_t off = 0;
    XXH3_state_t* state = XXH3_createState();  // running hash of the whole snapshot
    std::string path;    // temp file in the data dir, or empty: received into `memory`
    int fd = -1;
    std::string memory;
    ~Install() {
        XXH3_freeState(state);
        if (fd >= 0) ::close(fd);
        if (!path.empty()) ::unlink(path.c_str());
    }
};

Server::Server(ServerConfig config, StateMachine& machine, Log& log, SnapshotStore* snapshots,
               EpochStore& epochs)
    : config_(std::move(config)),
      machine_(machine),
      log_(log),
      snapshots_(snapshots),
      epochs_(epochs),
      exports_(config_.dataDir) {
    // The per-replica offset of the snapshot trigger. Ids ending in a number k (the cluster's
    // "1", "2", ..., tests' "r1", ...) get frac(k * golden ratio) of the interval: any number of
    // consecutive ids spread out, 3 ids at least 0.236 of the interval apart (three-distance
    // theorem); other ids a hash. Snapshots never change state, replies or digests, so a
    // different trigger per replica keeps replicas deterministic.
    const std::int64_t every = std::max<std::int64_t>(1, config_.snapshotEvery);
    std::size_t digits = config_.id.size();
    while (digits > 0 && std::isdigit(static_cast<unsigned char>(config_.id[digits - 1]))) --digits;
    if (digits < config_.id.size() && config_.id.size() - digits <= 9) {
        double k = std::stod(config_.id.substr(digits)) * 0.6180339887498949;
        snapshotOffset_ = std::int64_t((k - std::floor(k)) * double(every)) % every;
    } else {
        snapshotOffset_ = std::int64_t(XXH3_64bits(config_.id.data(), config_.id.size()) %
                                       std::uint64_t(every));
    }
    nextSnapshotAt_ = nextSnapshotAfter(machine.applied());
}

Server::~Server() {
    if (snapshotPid_ > 0) abortSnapshot("server destroyed");
    for (auto& [id, c] : conns_) ::close(c->fd);
    if (listenFd_ >= 0) ::close(listenFd_);
    if (epollFd_ >= 0) ::close(epollFd_);
}

void Server::stop() { gStop = 1; }

int Server::listen() {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    std::string port = std::to_string(config_.port);
    if (int rc = ::getaddrinfo(config_.host.c_str(), port.c_str(), &hints, &res); rc != 0)
        throw std::runtime_error("cannot resolve " + config_.host + ": " + gai_strerror(rc));
    listenFd_ = ::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listenFd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (listenFd_ < 0 || ::bind(listenFd_, res->ai_addr, res->ai_addrlen) != 0 ||
        ::listen(listenFd_, 128) != 0) {
        std::string err = std::strerror(errno);
        ::freeaddrinfo(res);
        throw std::runtime_error("cannot listen on " + config_.host + ":" + port + ": " + err);
    }
    ::freeaddrinfo(res);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(listenFd_, reinterpret_cast<sockaddr*>(&ss), &len);
    int real = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                              : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    epollFd_ = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;  // 0 = the listening socket; connections start at 1
    ::epoll_ctl(epollFd_, EPOLL_CTL_ADD, listenFd_, &ev);
    config_.port = real;
    return real;
}

Server::Connection* Server::find(std::uint64_t id) {
    auto it = conns_.find(id);
    return it == conns_.end() ? nullptr : it->second.get();
}

int Server::nextTimeoutMs() const {
    // While handshakes are open, wake often enough to enforce their timeout.
    int timeout = unauthenticated_ > 0 ? std::min(1000, std::max(10, config_.handshakeTimeoutMs / 4)) : 1000;
    if (snapshotPid_ > 0 || exports_.running()) timeout = std::min(timeout, 10);  // reap children soon
    auto now = std::chrono::steady_clock::now();
    for (auto& [min, p] : parked_) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(p.deadline - now).count();
        timeout = int(std::max<std::int64_t>(0, std::min<std::int64_t>(timeout, ms + 1)));
    }
    return timeout;
}

void Server::run() {
    std::vector<epoll_event> events(256);
    // Busy-poll: on a virtual machine a vCPU that went idle takes tens of microseconds to wake,
    // longer than the coordinator's next frame usually takes to come. So after a turn that read
    // a little we poll without sleeping for a short while, yielding to anything runnable. Not
    // after a turn that read many frames: the cluster is busy, the next frames come anyway, and
    // the polls' system calls take CPU the other processes on the machine need (bench: 6% of a
    // 3-replica cluster's throughput at 16 and 64 clients, docs/benchmarks.md).
    constexpr std::size_t kBusyPollMaxFrames = 2;
    const auto busyPoll = std::chrono::microseconds(config_.busyPollUs);
    auto pollUntil = std::chrono::steady_clock::now();
    while (!gStop) {
        bool polling = busyPoll.count() > 0 && std::chrono::steady_clock::now() < pollUntil;
        int n = ::epoll_wait(epollFd_, events.data(), int(events.size()), polling ? 0 : nextTimeoutMs());
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error(std::string("epoll_wait: ") + std::strerror(errno));
        }
        if (n == 0 && polling) {
            // Timers (idle handshakes, parked reads) wait for the end of the poll: at most busyPoll.
            ::sched_yield();
            continue;
        }
        if (n > 0 && busyPoll.count() > 0) pollUntil = std::chrono::steady_clock::now() + busyPoll;
        framesThisTurn_ = 0;
        for (int i = 0; i < n; ++i) {
            std::uint64_t id = events[std::size_t(i)].data.u64;
            if (id == 0) {
                acceptAll();
                continue;
            }
            Connection* c = find(id);
            if (c == nullptr) continue;
            if (events[std::size_t(i)].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) readFrom(*c);
        }
        // Group commit: one sync covers every write handled this turn, before any ack leaves.
        log_.sync();
        sweepIdle();
        serveParked(true);
        maybeSnapshot();
        if (exports_.running()) reapExports();
        std::vector<std::uint64_t> ids;
        for (auto& [id, c] : conns_) ids.push_back(id);
        for (std::uint64_t id : ids)
            if (Connection* c = find(id)) flush(*c);
        if (framesThisTurn_ > kBusyPollMaxFrames) pollUntil = {};  // busy: sleep in epoll_wait
    }
    log_.sync();
    if (snapshotPid_ > 0) {
        // A clean stop lets a running snapshot finish (and drop the log it covers), bounded.
        logLine("info", "event=snapshot_wait s=" + std::to_string(snapshotSeq_));
        for (int i = 0; i < 3000 && !reapSnapshot(false); ++i) ::usleep(10000);
        if (snapshotPid_ > 0) abortSnapshot("stop: still running after 30 s");
    }
    logLine("info", "event=stopped applied=" + std::to_string(machine_.applied()));
}

void Server::acceptAll() {
    while (true) {
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        int fd = ::accept4(listenFd_, reinterpret_cast<sockaddr*>(&ss), &len,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;  // EAGAIN, or a transient error: the next turn retries
        char host[INET6_ADDRSTRLEN] = "?";
        if (ss.ss_family == AF_INET)
            ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, host, sizeof host);
        else if (ss.ss_family == AF_INET6)
            ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, host,
                        sizeof host);
        const char* refusal = rateLimited(host)                         ? "auth_rate_limit"
                              : conns_.size() >= config_.maxConnections ? "too_many_connections"
                                                                         : nullptr;
        if (refusal != nullptr) {
            ::close(fd);
            // Logged at most once a second (with a count) so a flood cannot fill the disk.
            ++refusedSinceLog_;
            auto now = std::chrono::steady_clock::now();
            if (now - lastRefusedLog_ >= std::chrono::seconds(1)) {
                logLine("warn", std::string("event=refused reason=") + refusal + " addr=" + host +
                                    " count=" + std::to_string(refusedSinceLog_));
                refusedSinceLog_ = 0;
                lastRefusedLog_ = now;
            }
            continue;
        }
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::uint64_t id = nextConnId_++;
        conns_.emplace(id, std::make_unique<Connection>(id, fd, host, config_.limits.maxFrameBytes));
        ++unauthenticated_;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = id;
        ::epoll_ctl(epollFd_, EPOLL_CTL_ADD, fd, &ev);
        logLine("info", "event=accept conn=" + std::to_string(id) + " addr=" + host);
    }
}

bool Server::rateLimited(const std::string& addr) {
    auto it = authFailures_.find(addr);
    if (it == authFailures_.end()) return false;
    auto now = std::chrono::steady_clock::now();
    while (!it->second.empty() && now - it->second.front() > kAuthWindow) it->second.pop_front();
    return it->second.size() >= kAuthFailuresAllowed;
}

void Server::readFrom(Connection& c) {
    if (c.closing) {  // level-triggered input on a connection we are dropping: finish now
        close(c, "closed after error");
        return;
    }
    char buf[65536];
    bool eof = false;
    // Bounded per turn (epoll is level-triggered: the rest is read next turn), so a peer that
    // never stops sending neither starves the others nor grows our buffer without limit; before
    // the handshake, no more than the pre-handshake limit is ever taken in.
    const std::size_t budget = c.phase == Connection::Phase::Ready ? kMaxReadPerTurn
                               : c.reader.pending() > kMaxPreAuthBytes
                                   ? 0
                                   : kMaxPreAuthBytes + 1 - c.reader.pending();
    for (std::size_t got = 0; got < budget;) {
        ssize_t n = ::recv(c.fd, buf, std::min(sizeof buf, budget - got), 0);
        if (n > 0) {
            c.reader.feed(buf, std::size_t(n));
            got += std::size_t(n);
            if (std::size_t(n) < sizeof buf) break;
            continue;
        }
        if (n == 0) {
            eof = true;
        } else if (errno == EINTR) {
            continue;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            eof = true;
        }
        break;
    }
    std::uint64_t id = c.id;
    std::vector<std::string> frames;
    if (c.phase != Connection::Phase::Ready && c.reader.pending() > kMaxPreAuthBytes) {
        fail(c, "malformed", "more than " + std::to_string(kMaxPreAuthBytes) +
                                 " bytes before the handshake completed");
        return;
    }
    try {
        c.reader.drain(frames);
    } catch (const FrameError& e) {
        for (const std::string& f : frames) {  // frames before the bad length still count
            handleFrame(c, f);
            if (find(id) == nullptr || c.closing) return;
        }
        fail(c, e.code(), e.what());
        return;
    }
    for (const std::string& f : frames) {
        handleFrame(c, f);
        if (find(id) == nullptr || c.closing) return;
    }
    if (eof) {
        if (c.reader.pending() > 0)
            close(c, "truncated frame: " + std::to_string(c.reader.pending()) +
                         " bytes of an incomplete frame at end of stream");
        else
            close(c, "peer closed");
    }
}

void Server::handleFrame(Connection& c, const std::string& bytes) {
    ++framesThisTurn_;
    try {
        Body body = Body::decode(bytes, config_.limits);
        std::string_view t = body.type();
        switch (c.phase) {
            case Connection::Phase::Hello:
                if (t != "hello") throw FrameError("malformed", "expected hello");
                handleHello(c, body);
                return;
            case Connection::Phase::Auth:
                if (t != "auth") throw FrameError("malformed", "expected auth");
                handleAuth(c, body);
                return;
            case Connection::Phase::Ready:
                break;
        }
        // Ready-phase frame types, the hot ones first: a linear scan of a dozen short strings.
        using Handler = void (Server::*)(Connection&, const std::string&, const Body&);
        static constexpr std::pair<std::string_view, Handler> kHandlers[] = {
            {"w", &Server::handleWrite},
            {"r", &Server::handleRead},
            {"cu", &Server::handleCatchUp},
            {"hb", &Server::handleHeartbeat},
            {"epoch", &Server::handleEpoch},
            {"log_read", &Server::handleLogRead},
            {"snap_open", &Server::handleSnapOpen},
            {"snap_read", &Server::handleSnapRead},
            {"snap_close", &Server::handleSnapClose},
            {"inst_begin", &Server::handleInstBegin},
            {"inst_data", &Server::handleInstData},
            {"inst_end", &Server::handleInstEnd},
            {"inst_abort", &Server::handleInstAbort},
        };
        for (const auto& [type, handler] : kHandlers) {
            if (t == type) {
                (this->*handler)(c, bytes, body);
                return;
            }
        }
        throw FrameError("malformed", "unknown frame type '" + std::string(t) + "'");
    } catch (const FrameError& e) {
        fail(c, e.code(), e.what());
    }
}

void Server::handleHello(Connection& c, const Body& body) {
    const msgpack::object* v = body.optional("v");
    if (v == nullptr || v->type != msgpack::type::ARRAY)
        throw FrameError("malformed", "missing or mistyped key 'v'");
    // 1: one ack frame per write. 2: the same, except that a turn's acks share one `as` frame.
    std::int64_t version = 0;
    for (std::uint32_t i = 0; i < v->via.array.size; ++i)
        if (auto n = asInt(v->via.array.ptr[i]); n && (*n == 1 || *n == 2)) version = std::max(version, *n);
    bool supported = version > 0;
    body.requireStr("role");
    std::string_view n = body.requireBin("n");
    if (n.size() != kNonceBytes) throw FrameError("malformed", "nonce must be 16 bytes");
    if (!supported) {
        fail(c, "version", "no common protocol version (replica speaks 1 and 2)");
        return;
    }
    c.initiatorNonce = std::string(n);
    c.acceptorNonce = Auth::nonce(kNonceBytes);
    std::size_t at = beginFrame(frameOut(c));
    Packer p(c.out);
    p.mapHeader(5);
    p.kv("t", "welcome");
    p.kv("v", version);
    p.kv("id", config_.id);
    p.str("n");
    p.bin(c.acceptorNonce);
    p.str("mac");
    p.bin(Auth::mac(config_.secret, "acceptor", c.initiatorNonce, c.acceptorNonce));
    endFrame(c.out, at);
    c.batchAcks = version == 2;
    c.phase = Connection::Phase::Auth;
}

void Server::handleAuth(Connection& c, const Body& body) {
    std::string_view mac = body.requireBin("mac");
    std::string expected = Auth::mac(config_.secret, "initiator", c.initiatorNonce, c.acceptorNonce);
    if (!Auth::equal(mac, expected)) {
        authFailures_[c.addr].push_back(std::chrono::steady_clock::now());
        fail(c, "auth_failed", "bad handshake mac");
        return;
    }
    std::size_t at = beginFrame(frameOut(c));
    Packer p(c.out);
    p.mapHeader(5);
    p.kv("t", "ready");
    packPosition(p);
    endFrame(c.out, at);
    c.phase = Connection::Phase::Ready;
    --unauthenticated_;
    logLine("info", "event=ready conn=" + std::to_string(c.id) + " addr=" + c.addr);
}

// A coordinator's liveness probe: answered with where this replica is (seq, epochs, digest).
void Server::handleHeartbeat(Connection& c, const std::string& /*bytes*/, const Body& body) {
    std::int64_t id = body.requireInt("id");
    // `c` counts only from the coordinator of our stored epoch: it says how far this
    // replica's own writes are agreed and held by a majority (docs/protocol.md).
    const msgpack::object* committed = body.optional("c");
    const msgpack::object* epoch = body.optional("e");
    if (committed != nullptr && epoch != nullptr) {
        auto cv = asInt(*committed), ev = asInt(*epoch);
        if (!cv || !ev) throw FrameError("malformed", "hb: c and e must be integers");
        if (*ev == epochs_.get() && *cv > committed_) {
            committed_ = *cv;
            compact();
        }
    }
    std::size_t at = beginFrame(frameOut(c));
    Packer p(c.out);
    p.mapHeader(6);
    p.kv("t", "hba");
    p.kv("id", id);
    packPosition(p);
    endFrame(c.out, at);
}

void Server::packPosition(Packer& p) const {
    p.kv("s", machine_.applied());
    p.kv("e", epochs_.get());
    p.str("d");
    p.bin(digestView(machine_.digest()));
    p.kv("le", machine_.lastEpoch());
}

namespace {

// Checks the fields of a write body (a `w` frame, or the record a `cu` frame carries); its seq.
std::int64_t checkWrite(const Body& body) {
    std::int64_t seq = body.requireInt("s");
    body.requireInt("e");
    body.requireInt("ts");
    if (body.requireStr("rid").size() > 64) throw FrameError("malformed", "rid longer than 64 bytes");
    body.requireStr("op");
    if (seq < 1) throw FrameError("malformed", "seq must be >= 1");
    return seq;
}

}  // namespace

// A live write: fenced by its own epoch `e`, which is the sender's epoch.
void Server::handleWrite(Connection& c, const std::string& bytes, const Body& body) {
    checkWrite(body);
    acceptWrite(c, bytes, body, body.requireInt("e"));
}

// A catch-up record `{"t":"cu","e":E_sender,"rec":bin}`: `rec` is a logged write body exactly
// as a source's log_read returned it, forwarded by the coordinator of epoch E_sender. Fencing is
// about who sends, not when the record was born: the frame is refused with stale_epoch when
// E_sender is below the stored epoch, and otherwise `rec` is handled exactly like a write body
// (ordering, dup, log and digest over the record's bytes, the same ack) without checking the
// record's own, possibly older, epoch. So a coordinator can fence a lagging replica with its
// new epoch before forwarding the older epochs' writes it missed.
void Server::handleCatchUp(Connection& c, const std::string& /*bytes*/, const Body& body) {
    std::int64_t sender = body.requireInt("e");
    std::string rec(body.requireBin("rec"));  // the record outlives the frame if it is buffered
    Body inner = Body::decode(rec, config_.limits);
    if (inner.type() != "w") throw FrameError("malformed", "cu record is not a write body");
    checkWrite(inner);
    acceptWrite(c, rec, inner, sender);
}

// Ordering of a write body (`bytes`, decoded as `body`) sent by a coordinator of epoch `fence`.
void Server::acceptWrite(Connection& c, const std::string& bytes, const Body& body,
                         std::int64_t fence) {
    std::int64_t seq = body.requireInt("s");
    std::int64_t epoch = body.requireInt("e");
    if (install_) {
        refuse(c, "installing", "a snapshot is being installed", "s", seq);
        return;
    }
    if (fence < epochs_.get()) {
        fail(c, "stale_epoch", "epoch " + std::to_string(fence) + " < " +
                                   std::to_string(epochs_.get()), "s", seq);
        return;
    }
    epochs_.raise(fence);  // durable before we act on the new epoch
    if (seq <= machine_.applied()) {
        if (c.batchAcks) {
            queueAck(c, seq, epoch, std::nullopt);
            return;
        }
        std::size_t at = beginFrame(frameOut(c));
        Packer p(c.out);
        p.mapHeader(5);
        p.kv("t", "a");
        p.kv("s", seq);
        p.kv("e", epoch);
        p.str("d");
        p.bin(digestView(machine_.digest()));
        p.kvBool("dup", true);
        endFrame(c.out, at);
        return;
    }
    if (seq == machine_.applied() + 1) {
        applyOne(c.id, bytes, &body, fence);
        applyReady();
        return;
    }
    auto held = pending_.find(seq);
    const std::size_t replaced = held == pending_.end() ? 0 : held->second.body.size();
    if ((held == pending_.end() && pending_.size() >= config_.maxBufferedWrites) ||
        pendingBytes_ - replaced + bytes.size() > config_.maxBufferedBytes) {
        logLine("warn", "event=drop_write reason=reorder_buffer_full s=" + std::to_string(seq) +
                            " buffered=" + std::to_string(pending_.size()) +
                            " bytes=" + std::to_string(pendingBytes_));
        return;
    }
    pendingBytes_ += bytes.size() - replaced;
    pending_[seq] = Pending{c.id, bytes, fence};
}

// Applies buffered writes that have become next in line.
void Server::applyReady() {
    while (!pending_.empty() && pending_.begin()->first <= machine_.applied() + 1) {
        auto node = pending_.extract(pending_.begin());
        Pending& w = node.mapped();
        pendingBytes_ -= w.body.size();
        if (node.key() == machine_.applied() + 1) {
            applyOne(w.conn, w.body, nullptr, w.fence);
        } else if (Connection* c = find(w.conn)) {
            // Applied meanwhile from another connection: answer as a duplicate.
            Body body = Body::decode(w.body, config_.limits);
            acceptWrite(*c, w.body, body, w.fence);
        }
    }
    serveParked(false);
}

void Server::applyOne(std::uint64_t connId, const std::string& bytes, const Body* decoded,
                      std::int64_t fence) {
    // A write applied as it arrives is already decoded; one from the reorder buffer is not.
    Body own;
    if (decoded == nullptr) own = Body::decode(bytes, config_.limits);
    const Body& body = decoded != nullptr ? *decoded : own;
    std::int64_t epoch = body.requireInt("e");
    std::int64_t seq = body.requireInt("s");
    Connection* c = find(connId);
    if (fence < epochs_.get()) {  // its sender was fenced while it waited in the reorder buffer
        if (c) fail(*c, "stale_epoch", "epoch fenced while buffered", "s", seq);
        return;
    }
    std::string_view reply = machine_.apply(bytes, body);
    log_.append(seq, bytes);
    logBytesSinceSnapshot_ += bytes.size();
    if (c == nullptr || c->closing) return;
    if (c->batchAcks) {
        queueAck(*c, seq, epoch, reply);
        return;
    }
    std::size_t at = beginFrame(frameOut(*c));
    Packer p(c->out);
    p.mapHeader(5);
    p.kv("t", "a");
    p.kv("s", seq);
    p.kv("e", epoch);
    p.str("d");
    p.bin(digestView(machine_.digest()));
    // The reply as opaque bytes (bin): the coordinator compares digests, which cover these
    // bytes, and splices them into its answer without decoding (docs/protocol.md, ack).
    p.str("rb");
    p.bin(reply);
    endFrame(c->out, at);
}

void Server::handleRead(Connection& c, const std::string& bytes, const Body& body) {
    std::int64_t id = body.requireInt("id");
    body.requireStr("q");
    if (install_) {
        refuse(c, "installing", "a snapshot is being installed", "id", id);
        return;
    }
    std::int64_t min = 0, wait = 0;
    if (const msgpack::object* m = body.optional("min"); m && m->type != msgpack::type::NIL) {
        auto v = asInt(*m);
        if (!v) throw FrameError("malformed", "mistyped key 'min'");
        min = *v;
    }
    if (const msgpack::object* w = body.optional("wait"); w && w->type != msgpack::type::NIL) {
        auto v = asInt(*w);
        if (!v) throw FrameError("malformed", "mistyped key 'wait'");
        wait = std::clamp<std::int64_t>(*v, 0, kMaxWaitMs);
    }
    if (min <= machine_.applied()) {
        answerRead(c, body, false);
    } else if (wait == 0 || parked_.size() >= kMaxParked ||
               parkedBytes_ + bytes.size() > config_.maxParkedBytes) {
        answerRead(c, body, true);
    } else {
        parkedBytes_ += bytes.size();
        parked_.emplace(min, Parked{c.id, id,
                                    std::chrono::steady_clock::now() +
                                        std::chrono::milliseconds(wait),
                                    bytes});
    }
}

void Server::answerRead(Connection& c, const Body& body, bool behind) {
    std::int64_t id = body.requireInt("id");
    std::size_t at = beginFrame(frameOut(c));
    Packer p(c.out);
    p.mapHeader(4);
    p.kv("t", "rr");
    p.kv("id", id);
    p.kv("s", machine_.applied());
    p.str("r");
    if (behind) {
        p.mapHeader(3);
        p.kvBool("ok", false);
        p.kv("code", "behind");
        p.kv("msg", "min seq not reached in time");
    } else {
        std::string_view q = body.requireStr("q");
        p.raw(machine_.query(q, body.optional("a")));
    }
    endFrame(c.out, at);
}

std::multimap<std::int64_t, Server::Parked>::iterator Server::unpark(
    std::multimap<std::int64_t, Parked>::iterator it) {
    parkedBytes_ -= it->second.body.size();
    return parked_.erase(it);
}

void Server::serveParked(bool expireOnly) {
    if (parked_.empty()) return;
    if (!expireOnly) {
        auto end = parked_.upper_bound(machine_.applied());
        for (auto it = parked_.begin(); it != end;) {
            if (Connection* c = find(it->second.conn)) {
                Body body = Body::decode(it->second.body, config_.limits);
                answerRead(*c, body, false);
            }
            it = unpark(it);
        }
        return;
    }
    auto now = std::chrono::steady_clock::now();
    for (auto it = parked_.begin(); it != parked_.end();) {
        Connection* c = find(it->second.conn);
        if (c == nullptr) {
            it = unpark(it);
        } else if (it->second.deadline <= now) {
            Body body = Body::decode(it->second.body, config_.limits);
            answerRead(*c, body, true);
            it = unpark(it);
        } else {
            ++it;
        }
    }
}

std::int64_t Server::nextSnapshotAfter(std::int64_t after) const {
    // The smallest T > after with (T + offset) % every == 0.
    const std::int64_t every = std::max<std::int64_t>(1, config_.snapshotEvery);
    std::int64_t t = after + 1;
    return t + (every - (t + snapshotOffset_) % every) % every;
}

// At the trigger seq S (per replica, see the constructor): sync and roll the log so the closed
// segments hold exactly the records <= S, then fork. The child has a copy-on-write view of the
// state at S and writes it as snapshot-S (snapshot.tmp, fsync, rename, fsync dir); the parent
// goes on serving and, when it reaps a successful child, deletes the older snapshots and the
// covered segments (reapSnapshot). One child at a time; a failed one is retried at the next
// trigger. A crash at any point leaves the old snapshot + the whole log, or the new snapshot
// (+ covered segments, dropped at the next start or snapshot).
void Server::maybeSnapshot() {
    if (snapshotPid_ > 0 && !reapSnapshot(false)) return;
    if (snapshots_ == nullptr || config_.snapshotEvery <= 0 || install_) return;
    const std::int64_t seq = machine_.applied();
    if (seq < nextSnapshotAt_) return;
    nextSnapshotAt_ = nextSnapshotAfter(seq);
    if (double(logBytesSinceSnapshot_) < config_.snapshotLogRatio * double(lastSnapshotBytes_)) {
        // Writing the whole state again for a log smaller than it would make snapshots the
        // main cost of a large data set (measured: throughput fell by 40% over 600,000 posts
        // with a snapshot every 10,000 writes). Wait for a later trigger.
        logLine("info", "event=snapshot_deferred s=" + std::to_string(seq) + " log_bytes=" +
                            std::to_string(logBytesSinceSnapshot_) + " snapshot_bytes=" +
                            std::to_string(lastSnapshotBytes_));
        return;
    }
    log_.sync();  // also empties the log's userspace buffer: nothing for the child to flush
    log_.roll();
    snapshotLogBytes_ = logBytesSinceSnapshot_;
    const pid_t parent = ::getpid();
    snapshotParentAnonKb_ = anonResidentKb();  // the child starts with these pages (reapSnapshot)
    const auto forkStart = std::chrono::steady_clock::now();
    const pid_t pid = ::fork();
    if (pid < 0) {
        logLine("warn", "event=snapshot_failed s=" + std::to_string(seq) + " reason=\"fork: " +
                            std::strerror(errno) + "\"");
        return;
    }
    if (pid == 0) snapshotChild(seq, parent);
    snapshotPid_ = pid;
    snapshotSeq_ = seq;
    snapshotStarted_ = std::chrono::steady_clock::now();
    // fork() copies the page tables in the parent: its cost grows with the state (Redis reports
    // it as latest_fork_usec); logged so an operator sees it.
    const auto forkUs =
        std::chrono::duration_cast<std::chrono::microseconds>(snapshotStarted_ - forkStart).count();
    logLine("info", "event=snapshot_start s=" + std::to_string(seq) + " pid=" + std::to_string(pid) +
                        " fork_us=" + std::to_string(forkUs));
}

void Server::becomeChild(pid_t parent) {
    // Dies with the parent (a kill -9 of the replica must not leave a writer behind that a
    // restarted replica would race with).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(3);
    std::signal(SIGTERM, SIG_DFL);
    std::signal(SIGINT, SIG_DFL);
    // Drop our references to the parent's sockets: a connection the parent closes (or the
    // parent's death) must reach the peer now, not when this child exits; and nothing here may
    // ever write to them. Only stderr (logLine: one write() per line) is shared.
    for (auto& [id, c] : conns_) ::close(c->fd);
    if (listenFd_ >= 0) ::close(listenFd_);
    if (epollFd_ >= 0) ::close(epollFd_);
}

void Server::snapshotChild(std::int64_t seq, pid_t parent) {
    becomeChild(parent);
    int code = 0;
    try {
        snapshots_->write(seq, [this](const ByteSink& sink) { machine_.writeSnapshot(sink); });
    } catch (const std::exception& e) {
        logLine("error", "event=snapshot_child_failed s=" + std::to_string(seq) + " reason=\"" +
                             e.what() + "\"");
        code = 1;
    }
    // _exit: no atexit handlers, no destructors (the log's would write its buffer), no stdio
    // flush of buffers shared with the parent.
    ::_exit(code);
}

bool Server::reapSnapshot(bool block) {
    if (snapshotPid_ <= 0) return true;
    int status = 0;
    struct rusage usage {};
    pid_t r;
    do {
        r = ::wait4(snapshotPid_, &status, block ? 0 : WNOHANG, &usage);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return false;
    const std::int64_t seq = snapshotSeq_;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - snapshotStarted_).count();
    snapshotPid_ = -1;
    if (r == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snapshots_->removeTemp();
        std::string how = r == -1 ? std::string("waitpid: ") + std::strerror(errno)
                                  : "child " + childExit(status);
        logLine("warn", "event=snapshot_failed s=" + std::to_string(seq) + " reason=\"" + how +
                            "\" ms=" + std::to_string(ms));
        return true;  // the log it would have covered still counts: retried at the next trigger
    }
    // snapshot-S is durable: the older snapshots and the log it covers go once S is committed.
    retained_.push_back(seq);
    compact();
    lastSnapshotBytes_ = snapshots_->fileSize(seq);
    logBytesSinceSnapshot_ -= std::min(logBytesSinceSnapshot_, snapshotLogBytes_);  // what came after S
    // The child's peak RSS counts the parent's anonymous pages it shares from the start (fork
    // copies their page table entries), so the peak minus those is at most what writing the
    // snapshot added (plus the code pages the child touched): a piece buffer, not the state.
    logLine("info", "event=snapshot s=" + std::to_string(seq) + " ms=" + std::to_string(ms) +
                        " child_maxrss_kb=" + std::to_string(usage.ru_maxrss) +
                        " parent_anon_kb=" + std::to_string(snapshotParentAnonKb_));
    return true;
}

void Server::compact() {
    if (snapshots_ == nullptr || retained_.empty()) return;
    // Up to the snapshot before the newest committed one, which stays with the log after it:
    // a newest snapshot found damaged at start is passed over for it (main.cc), as etcd does.
    std::int64_t to = compactedThrough_, newest = compactedThrough_;
    for (std::int64_t s : retained_) {
        if (s > committed_) break;
        to = newest;
        newest = s;
    }
    bool forced = false;
    if (retained_.size() > kMaxRetainedSnapshots) {
        std::int64_t cap = retained_[retained_.size() - kMaxRetainedSnapshots - 1];
        forced = cap > committed_;  // else only the fallback snapshot went early: no warning
        to = std::max(to, cap);
    }
    if (to <= compactedThrough_) return;
    snapshots_->prune(to);
    log_.truncatePrefix(to);
    compactedThrough_ = to;
    retained_.erase(retained_.begin(), std::upper_bound(retained_.begin(), retained_.end(), to));
    logLine(forced ? "warn" : "info",
            "event=compacted s=" + std::to_string(to) + " committed=" + std::to_string(committed_) +
                (forced ? " forced=1 reason=\"" + std::to_string(kMaxRetainedSnapshots + 1) +
                              " snapshots past the committed seq\""
                        : ""));
}

void Server::abortSnapshot(const std::string& reason) {
    if (snapshotPid_ <= 0) return;
    ::kill(snapshotPid_, SIGKILL);
    int status = 0;
    while (::waitpid(snapshotPid_, &status, 0) < 0 && errno == EINTR) {
    }
    snapshotPid_ = -1;
    // It may have renamed snapshot-S already: a snapshot of this history, still valid; an
    // install deletes it with every other snapshot.
    snapshots_->removeTemp();
    logLine("warn", "event=snapshot_aborted s=" + std::to_string(snapshotSeq_) + " reason=\"" +
                        reason + "\"");
}

void Server::queueError(Connection& c, const std::string& code, const std::string& reason,
                        const char* idKey, std::int64_t idValue) {
    std::size_t at = beginFrame(frameOut(c));
    Packer p(c.out);
    p.mapHeader(idKey ? 4 : 3);
    p.kv("t", "err");
    if (idKey) p.kv(idKey, idValue);
    p.kv("code", code);
    p.kv("msg", reason);
    endFrame(c.out, at);
}

void Server::refuse(Connection& c, const std::string& code, const std::string& reason,
                    const char* idKey, std::int64_t idValue) {
    queueError(c, code, reason, idKey, idValue);
    logLine("warn", "event=refused_request conn=" + std::to_string(c.id) + " code=" + code +
                        " reason=\"" + reason + "\"");
}

void Server::fail(Connection& c, const std::string& code, const std::string& reason,
                  const char* idKey, std::int64_t idValue) {
    if (code == "stale_epoch") {
        // Fencing refuses the write, not the connection: the coordinator learns it is stale.
        refuse(c, code, reason, idKey, idValue);
        return;
    }
    queueError(c, code, reason, idKey, idValue);
    logLine("warn", "event=close_connection conn=" + std::to_string(c.id) + " addr=" + c.addr +
                        " code=" + code + " reason=\"" + reason + "\"");
    // Not flushed here: `out` may hold acks of writes applied this turn, which must wait for
    // the turn's log sync. The loop flushes, then closes.
    c.closing = true;
}

std::string& Server::frameOut(Connection& c) {
    emitAcks(c);
    return c.out;
}

void Server::queueAck(Connection& c, std::int64_t seq, std::int64_t epoch,
                      std::optional<std::string_view> reply) {
    Packer(c.ackSeqs).integer(seq);
    Packer(c.ackEpochs).integer(epoch);
    Packer(c.ackDigests).bin(digestView(machine_.digest()));
    Packer replies(c.ackReplies);
    if (reply)
        replies.bin(*reply);
    else
        replies.nil();  // a duplicate: applied before, no reply
    // Bounded so that a long turn still makes frames far below the peer's frame limit.
    if (++c.ackCount >= kMaxBatchedAcks || c.ackReplies.size() >= kMaxBatchedAckBytes) emitAcks(c);
}

void Server::emitAcks(Connection& c) {
    if (c.ackCount == 0) return;
    std::size_t at = beginFrame(c.out);
    Packer p(c.out);
    p.mapHeader(5);
    p.kv("t", "as");
    for (auto [key, items] : {std::pair<const char*, std::string*>{"s", &c.ackSeqs},
                              {"e", &c.ackEpochs}, {"d", &c.ackDigests}, {"rb", &c.ackReplies}}) {
        p.str(key);
        p.arrayHeader(c.ackCount);
        p.raw(*items);
        items->clear();
    }
    endFrame(c.out, at);
    c.ackCount = 0;
}

void Server::flush(Connection& c) {
    emitAcks(c);
    while (!c.out.empty()) {
        ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n > 0) {
            c.out.erase(0, std::size_t(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        close(c, "send failed");
        return;
    }
    if (c.closing) {
        if (c.out.empty()) close(c, "closed after error");
        return;  // a closing connection with unsent bytes waits for EPOLLOUT-less retry
    }
    if (c.out.size() > kMaxOutBytes) {
        close(c, "peer does not read its replies (" + std::to_string(c.out.size()) + " bytes queued)");
        return;
    }
    bool want = !c.out.empty();
    if (want != c.wantWrite) {
        epoll_event ev{};
        ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
        ev.data.u64 = c.id;
        ::epoll_ctl(epollFd_, EPOLL_CTL_MOD, c.fd, &ev);
        c.wantWrite = want;
    }
}

void Server::close(Connection& c, const std::string& reason) {
    if (c.phase != Connection::Phase::Ready) --unauthenticated_;
    if (install_ && install_->conn == c.id) abortInstall("connection closed");
    logLine("info", "event=disconnect conn=" + std::to_string(c.id) + " reason=\"" + reason + "\"");
    ::epoll_ctl(epollFd_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    conns_.erase(c.id);  // destroys c
}

// ---------------------------------------------------------------- epochs and state transfer

void Server::handleEpoch(Connection& c, const std::string& /*bytes*/, const Body& body) {
    std::int64_t id = body.requireInt("id");
    std::int64_t e = body.requireInt("e");
    std::string claim;  // `c`: the coordinator's claim id, optional (older coordinators)
    if (const msgpack::object* o = body.optional("c"); o != nullptr && o->type != msgpack::type::NIL) {
        std::string_view raw = body.requireBin("c");
        if (raw.empty() || raw.size() > 32) throw FrameError("malformed", "c must be 1 to 32 bytes");
        claim = std::string(raw);
    }
    std::int64_t before = epochs_.get();
    if (!epochs_.claim(e, claim)) {  // fsync, rename, fsync dir: durable before epoch_ok
        refuse(c, "stale_epoch",
               e < before ? "epoch " + std::to_string(e) + " < " + std::to_string(before)
                          : "epoch " + std::to_string(e) + " was taken by another coordinator",
               "id", id);
        return;
    }
    std::size_t at = beginFrame(frameOut(c));
    Packer p(c.out);
    p.mapHeader(6);
    p.kv("t", "epoch_ok");
    p.kv("id", id);
    p.kv("e", e);
    p.kv("s", machine_.applied());
    p.str("d");
    p.bin(digestView(machine_.digest()));
    p.kv("le", machine_.lastEpoch());
    endFrame(c.out, at);
    logLine("info", "event=epoch e=" + std::to_string(e));
}

void Server::handleSnapOpen(Connection& c, const std::string& /*bytes*/, const Body& body) {
    std::int64_t id = body.requireInt("id");
    if (install_) {
        refuse(c, "installing", "a snapshot is being installed", "id", id);
        return;
    }
    std::size_t open = c.snaps.size();
    for (const auto& [key, pe] : exportsPending_) open += pe.conn == c.id;
    if (open >= kMaxOpenSnapshots) {
        refuse(c, "busy", "at most 2 snapshots open per connection", "id", id);
        return;
    }
    if (const msgpack::object* atMost = body.optional("at_most")) {
        auto limit = asInt(*atMost);
        if (!limit) throw FrameError("malformed", "snap_open: at_most must be an integer");
        openStoredSnapshot(c, id, *limit);
        return;
    }
    // A forked child writes the state; snap_info goes out when it is done (reapExports), and
    // this connection's other requests are answered meanwhile.
    const std::uint64_t key = nextExportKey_++;
    const pid_t parent = ::getpid();
    const long parentAnonKb = anonResidentKb();
    std::string error = exports_.start(key, machine_, [&] { becomeChild(parent); });
    if (!error.empty()) {
        logLine("warn", "event=snap_open_failed conn=" + std::to_string(c.id) + " reason=\"" + error + "\"");
        refuse(c, "snapshot_failed", error, "id", id);
        return;
    }
    std::int64_t x = c.nextXid++;
    exportsPending_[key] = {c.id, id, x, machine_.applied(), epochs_.get(), machine_.lastEpoch(),
                            machine_.digest(), parentAnonKb};
    logLine("info", "event=snap_open conn=" + std::to_string(c.id) + " x=" + std::to_string(x) +
                        " s=" + std::to_string(machine_.applied()));
}

void Server::openStoredSnapshot(Connection& c, std::int64_t id, std::int64_t atMost) {
    std::int64_t seq = 0;
    if (snapshots_ != nullptr)
        for (std::int64_t s : snapshots_->seqs())
            if (s <= atMost) seq = s;
    if (seq == 0) {
        refuse(c, "compacted", "no snapshot at or before seq " + std::to_string(atMost), "id", id);
        return;
    }
    StateMachine::Position at;
    std::optional<ExportedSnapshot> snap;
    try {
        OpenedSnapshot file = snapshots_->open(seq);
        snap.emplace(file.fd, file.size, file.hash, file.payloadAt);
        at = StateMachine::snapshotPosition(fileSource(file.fd, file.payloadAt, file.size, file.path),
                                            file.size);
        if (at.applied != seq) throw StorageError(file.path + " holds seq " + std::to_string(at.applied));
    } catch (const std::exception& e) {
        logLine("warn", "event=snap_open_failed conn=" + std::to_string(c.id) + " reason=\"" + e.what() + "\"");
        refuse(c, "snapshot_failed", e.what(), "id", id);
        return;
    }
    std::int64_t x = c.nextXid++;
    const std::uint64_t size = snap->size(), hash = snap->hash();
    c.snaps.emplace(x, std::move(*snap));
    sendSnapInfo(c, id, x, seq, epochs_.get(), at.lastEpoch, at.digest, size, hash);
    logLine("info", "event=snap_open conn=" + std::to_string(c.id) + " x=" + std::to_string(x) +
                        " s=" + std::to_string(seq) + " stored=1 at_most=" + std::to_string(atMost));
}

void Server::sendSnapInfo(Connection& c, std::int64_t id, std::int64_t x, std::int64_t seq,
                          std::int64_t epoch, std::int64_t lastEpoch, const StateMachine::Digest& digest,
                          std::uint64_t size, std::uint64_t hash) {
    std::size_t at = beginFrame(frameOut(c));
    Packer p(c.out);
    p.mapHeader(9);
    p.kv("t", "snap_info");
    p.kv("id", id);
    p.kv("x", x);
    p.kv("s", seq);
    p.kv("e", epoch);
    p.kv("le", lastEpoch);
    p.str("d");
    p.bin(digestView(digest));
    p.kv("size", std::int64_t(size));
    p.str("h");
    p.uinteger(hash);
    endFrame(c.out, at);
}

void Server::reapExports() {
    for (auto& done : exports_.reap()) {
        auto it = exportsPending_.find(done.key);
        if (it == exportsPending_.end()) continue;
        const PendingExport pe = it->second;
        exportsPending_.erase(it);
        Connection* c = find(pe.conn);
        if (c == nullptr) continue;  // the asker left: the snapshot is dropped with `done`
        if (!done.snapshot) {
            logLine("warn", "event=snap_open_failed conn=" + std::to_string(pe.conn) + " x=" +
                                std::to_string(pe.x) + " reason=\"" + done.error + "\"");
            refuse(*c, "snapshot_failed", done.error, "id", pe.requestId);
            continue;
        }
        const ExportedSnapshot& snap = c->snaps.emplace(pe.x, std::move(*done.snapshot)).first->second;
        sendSnapInfo(*c, pe.requestId, pe.x, pe.seq, pe.epoch, pe.lastEpoch, pe.digest, snap.size(), snap.hash());
        logLine("info", "event=snap_ready conn=" + std::to_string(pe.conn) + " x=" +
                            std::to_string(pe.x) + " s=" + std::to_string(pe.seq) +
                            " size=" + std::to_string(snap.size()) +
                            " child_maxrss_kb=" + std::to_string(done.childMaxRssKb) +
                            " parent_anon_kb=" + std::to_string(pe.parentAnonKb));
    }
}

void Server::handleSnapRead(Connection& c, const std::string& /*bytes*/, const Body& body) {
    std::int64_t id = body.requireInt("id");
    std::int64_t x = body.requireInt("x");
    std::int64_t off = body.requireInt("off");
    std::int64_t len = body.requireInt("len");
    auto it = c.snaps.find(x);
    if (it == c.snaps.end()) {
        refuse(c, "unknown_transfer", "no open snapshot " + std::to_string(x), "id", id);
        return;
    }
    const ExportedSnapshot& snap = it->second;
    if (off < 0 || std::uint64_t(off) > snap.size() || len < 0) {
        refuse(c, "bad_range", "offset or length out of range", "id", id);
        return;
    }
    try {
        snap.read(std::uint64_t(off), std::min(std::size_t(len), kMaxTransferChunk), snapChunk_);
    } catch (const std::exception& e) {
        refuse(c, "snapshot_failed", e.what(), "id", id);
        return;
    }
    std::size_t at = beginFrame(frameOut(c));
    Packer p(c.out);
    p.mapHeader(5);
    p.kv("t", "snap_data");
    p.kv("id", id);
    p.kv("off", off);
    p.str("data");
    p.bin(snapChunk_);
    p.str("h");
    p.uinteger(XXH3_64bits(snapChunk_.data(), snapChunk_.size()));
    endFrame(c.out, at);
}

void Server::handleSnapClose(Connection& c, const std::string& /*bytes*/, const Body& body) {
    c.snaps.erase(body.requireInt("x"));
}

void Server::handleLogRead(Connection& c, const std::string& /*bytes*/, const Body& body) {
    std::int64_t id = body.requireInt("id");
    std::int64_t from = std::max<std::int64_t>(1, body.requireInt("from"));
    std::int64_t max = std::clamp<std::int64_t>(body.requireInt("max"), 1, kMaxTransferChunk);
    if (install_) {
        refuse(c, "installing", "a snapshot is being installed", "id", id);
        return;
    }
    // Log::read's views die with its call, and the list header needs the count first: the
    // records are packed into a reused buffer, then copied once behind the header.
    std::string& recs = logScratch_;
    recs.clear();
    std::size_t count = 0;
    Packer rp(recs);
    bool held = from > compactedThrough_ &&
                log_.read(from, std::size_t(max), [&](std::int64_t, std::string_view b) {
                    rp.bin(b);
                    return ++count < kMaxLogRecords;
                });
    if (!held) {
        refuse(c, "compacted", "seq " + std::to_string(from) + " is covered by the snapshot at " +
                                   std::to_string(compactedThrough_), "id", id);
        return;
    }
    std::size_t at = beginFrame(frameOut(c));
    Packer p(c.out);
    p.mapHeader(4);
    p.kv("t", "log_data");
    p.kv("id", id);
    p.str("recs");
    p.arrayHeader(std::uint32_t(count));
    p.raw(recs);
    p.kv("last", machine_.applied());
    endFrame(c.out, at);
}

void Server::handleInstBegin(Connection& c, const std::string& /*bytes*/, const Body& body) {
    std::int64_t id = body.requireInt("id");
    std::int64_t seq = body.requireInt("s");
    std::int64_t epoch = body.requireInt("e");
    std::string_view digest = body.requireBin("d");
    std::int64_t size = body.requireInt("size");
    std::uint64_t hash = requireHash(body);
    if (digest.size() != 16 || size <= 0 || seq < 0)
        throw FrameError("malformed", "inst_begin needs a 16-byte d, size > 0 and s >= 0");
    if (epoch < epochs_.get()) {
        refuse(c, "stale_epoch", "epoch " + std::to_string(epoch) + " < " +
                                     std::to_string(epochs_.get()), "id", id);
        return;
    }
    // A newer install replaces an unfinished one: its coordinator may have gone away without
    // closing the connection, and an old install must never block a new one forever.
    if (install_) abortInstall("replaced by a new inst_begin");
    auto inst = std::make_unique<Install>();
    inst->conn = c.id;
    inst->seq = seq;
    inst->epoch = epoch;
    inst->size = size;
    inst->hash = hash;
    inst->digest = std::string(digest);
    XXH3_64bits_reset(inst->state);
    if (!config_.dataDir.empty()) {
        inst->path = config_.dataDir + "/install.tmp";
        inst->fd = ::open(inst->path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (inst->fd < 0) {
            std::string err = std::strerror(errno);
            inst->path.clear();
            refuse(c, "bad_snapshot", "cannot create install.tmp: " + err, "id", id);
            return;
        }
    }
    install_ = std::move(inst);
    logLine("info", "event=install_begin conn=" + std::to_string(c.id) + " s=" + std::to_string(seq) +
                        " size=" + std::to_string(size));
    std::size_t at = beginFrame(frameOut(c));
    Packer p(c.out);
    p.mapHeader(3);
    p.kv("t", "inst_ok");
    p.kv("id", id);
    p.kv("off", std::int64_t(0));
    endFrame(c.out, at);
}

void Server::handleInstData(Connection& c, const std::string& /*bytes*/, const Body& body) {
    std::int64_t id = body.requireInt("id");
    std::int64_t off = body.requireInt("off");
    std::string_view data = body.requireBin("data");
    std::uint64_t h = requireHash(body);
    if (!install_ || install_->conn != c.id) {
        refuse(c, "bad_chunk", "no install in progress on this connection", "id", id);
        return;
    }
    Install& in = *install_;
    std::string why;
    if (off != in.off)
        why = "offset " + std::to_string(off) + " but expected " + std::to_string(in.off);
    else if (h != XXH3_64bits(data.data(), data.size()))
        why = "chunk hash mismatch at offset " + std::to_string(off);
    else if (in.off + std::int64_t(data.size()) > in.size)
        why = "chunk runs past the declared size";
    if (why.empty()) {
        XXH3_64bits_update(in.state, data.data(), data.size());
        if (in.fd >= 0) {
            const char* p = data.data();
            std::size_t left = data.size();
            while (left > 0 && why.empty()) {
                ssize_t n = ::write(in.fd, p, left);
                if (n < 0 && errno == EINTR) continue;
                if (n < 0) why = std::string("cannot write install.tmp: ") + std::strerror(errno);
                else {
                    p += n;
                    left -= std::size_t(n);
                }
            }
        } else {
            in.memory.append(data);
        }
    }
    if (!why.empty()) {
        abortInstall(why);
        refuse(c, "bad_chunk", why, "id", id);
        return;
    }
    in.off += std::int64_t(data.size());
    std::size_t at = beginFrame(frameOut(c));
    Packer p(c.out);
    p.mapHeader(3);
    p.kv("t", "inst_ok");
    p.kv("id", id);
    p.kv("off", in.off);
    endFrame(c.out, at);
}

void Server::handleInstEnd(Connection& c, const std::string& /*bytes*/, const Body& body) {
    std::int64_t id = body.requireInt("id");
    if (!install_ || install_->conn != c.id) {
        refuse(c, "bad_snapshot", "no install in progress on this connection", "id", id);
        return;
    }
    std::string why = finishInstall();
    if (!why.empty()) {
        abortInstall(why);
        refuse(c, "bad_snapshot", why, "id", id);
        return;
    }
    install_.reset();
    std::size_t at = beginFrame(frameOut(c));
    Packer p(c.out);
    p.mapHeader(4);
    p.kv("t", "inst_done");
    p.kv("id", id);
    p.kv("s", machine_.applied());
    p.str("d");
    p.bin(digestView(machine_.digest()));
    endFrame(c.out, at);
    // Writes buffered before the install: those now covered are answered dup, the rest apply.
    applyReady();
}

std::string Server::finishInstall() {
    Install& in = *install_;
    if (in.off != in.size)
        return "received " + std::to_string(in.off) + " of " + std::to_string(in.size) + " bytes";
    if (XXH3_64bits_digest(in.state) != in.hash) return "snapshot hash mismatch";
    // install.tmp is read back in 1 MiB pieces, never whole, three times: verified (what is on
    // disk is what the snapshot file will hold), restored, copied into the snapshot file.
    auto received = [&] { return fileSource(in.fd, 0, std::uint64_t(in.size), in.path); };
    StateMachine fresh;
    try {
        if (in.fd < 0) {
            fresh.restore(in.memory);
        } else if (pump(received()) != in.hash) {
            return "install.tmp damaged on disk";
        } else {
            fresh.restore(received(), std::uint64_t(in.size));
        }
    } catch (const std::exception& e) {
        return e.what();
    }
    if (fresh.applied() != in.seq)
        return "snapshot is at seq " + std::to_string(fresh.applied()) + ", not " + std::to_string(in.seq);
    if (digestView(fresh.digest()) != in.digest) return "snapshot digest does not match d";
    // A background snapshot of the old history must not land after (or be pruned against)
    // the installed one.
    if (snapshotPid_ > 0) abortSnapshot("install at s=" + std::to_string(in.seq));
    // Durable switch, crash-safe at every step (storage/Layout.h, "Installing"): snapshot
    // staged, old log aside, snapshot promoted (the commit point), old log deleted and a new
    // segment opened at S+1.
    try {
        log_.sync();
        if (snapshots_ != nullptr)
            snapshots_->stage([&](const ByteSink& sink) {
                if (in.fd < 0) return sink(in.memory);
                if (pump(received(), sink) != in.hash)
                    throw StorageError("install.tmp changed while copied");
            });
        try {
            log_.prepareReset(in.seq);
            try {
                if (snapshots_ != nullptr) snapshots_->promote(in.seq);
            } catch (...) {
                log_.abortReset();
                throw;
            }
        } catch (...) {
            if (snapshots_ != nullptr) snapshots_->removeStaged();
            throw;
        }
        log_.commitReset(in.seq);
    } catch (const std::exception& e) {
        return std::string("cannot store the snapshot: ") + e.what();
    }
    machine_.swap(fresh);
    epochs_.raise(in.epoch);
    compactedThrough_ = in.seq;
    retained_.clear();
    nextSnapshotAt_ = nextSnapshotAfter(in.seq);
    lastSnapshotBytes_ = snapshots_ != nullptr ? snapshots_->fileSize(in.seq) : 0;
    logBytesSinceSnapshot_ = 0;
    logLine("info", "event=install_done s=" + std::to_string(in.seq) + " replaced_applied=" +
                        std::to_string(fresh.applied()));
    return "";
}

void Server::handleInstAbort(Connection& c, const std::string& /*bytes*/, const Body& /*body*/) {
    // The coordinator lost the source: without this the unfinished install would keep
    // refusing reads, log_read and snap_open (`installing`) until the connection closed.
    if (install_ && install_->conn == c.id) abortInstall("abandoned by the coordinator");
}

void Server::abortInstall(const std::string& reason) {
    logLine("warn", "event=install_aborted reason=\"" + reason + "\"");
    install_.reset();  // removes install.tmp
}

void Server::sweepIdle() {
    auto now = std::chrono::steady_clock::now();
    if (now - lastSweep_ < std::chrono::milliseconds(10)) return;
    lastSweep_ = now;
    if (unauthenticated_ > 0) {
        auto limit = std::chrono::milliseconds(config_.handshakeTimeoutMs);
        std::vector<std::uint64_t> late;
        for (auto& [id, c] : conns_)
            if (c->phase != Connection::Phase::Ready && now - c->accepted > limit) late.push_back(id);
        for (std::uint64_t id : late)
            if (Connection* c = find(id)) {
                logLine("warn", "event=handshake_timeout conn=" + std::to_string(id) + " addr=" + c->addr);
                close(*c, "handshake timeout");
            }
    }
    for (auto it = authFailures_.begin(); it != authFailures_.end();) {
        while (!it->second.empty() && now - it->second.front() > kAuthWindow) it->second.pop_front();
        it = it->second.empty() ? authFailures_.erase(it) : std::next(it);
    }
}

}  // namespace replica
