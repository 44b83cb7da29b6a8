// replica_server: parses flags and wires the parts together; no logic of its own.
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "core/StateMachine.h"
#include "server/Server.h"
#include "storage/DataDirLock.h"
#include "storage/EpochStore.h"
#include "storage/FileLog.h"
#include "storage/MemoryLog.h"
#include "storage/SnapshotStore.h"

namespace {

const char* kUsage =
    "usage: replica_server [flags]\n"
    "\n"
    "A replica manager of the replicated social network: applies the sequencer's writes in seq\n"
    "order to a deterministic state machine, logs them durably and answers reads (protocol in\n"
    "docs/protocol.md).\n"
    "\n"
    "flags:\n"
    "  --id ID                 replica id reported in the handshake (default: r-<port>)\n"
    "  --listen HOST:PORT      address to listen on (default 127.0.0.1:7401; port 0 picks a\n"
    "                          free port; the real one is printed)\n"
    "  --data-dir DIR          directory for the command log, snapshots and epoch (created if\n"
    "                          missing). Without it state is kept in memory only. Locked\n"
    "                          (flock on DIR/lock) while the server runs: a second server on\n"
    "                          the same dir exits at once with event=fatal\n"
    "  --secret-file PATH      file holding the cluster's shared secret (whitespace trimmed)\n"
    "  --insecure-no-auth      use the empty secret (development only; loopback addresses only)\n"
    "                          exactly one of --secret-file / --insecure-no-auth is required\n"
    "  --fsync POLICY          always | batch | never (default batch: one fsync per event-loop\n"
    "                          turn, before that turn's acks are sent)\n"
    "  --snapshot-every N      write a snapshot every N applied writes and drop the log segments\n"
    "                          it covers (default 10000; 0 disables). Written by a forked child\n"
    "                          while the replica keeps serving; the trigger seq is offset per\n"
    "                          --id so replicas do not snapshot at the same seq\n"
    "  --snapshot-log-ratio R  ... but only once the log since the last snapshot is at least R\n"
    "                          times that snapshot's size (default 1; 0: at every trigger), so\n"
    "                          snapshot work stays proportional to writes as the state grows\n"
    "  --max-frame-bytes N     largest accepted frame body (default 1048576)\n"
    "  --handshake-timeout-ms N  close a connection that has not completed the handshake\n"
    "                          within N ms (default 5000)\n"
    "  --max-connections N     connections served at once; more are accepted and closed at\n"
    "                          once with a log line (default 1024)\n"
    "  --max-buffered-bytes N  bytes of writes held for a gap in the seqs (default 268435456);\n"
    "                          a write past it (or past 100,000 writes) is dropped, logged\n"
    "  --max-parked-bytes N    bytes of reads waiting for their min seq (default 67108864);\n"
    "                          a read past it (or past 100,000 reads) is answered `behind`\n"
    "  --busy-poll-us N        after reading a frame, poll without sleeping for N us before\n"
    "                          blocking (default 30; 0: off): waking an idle CPU costs more\n"
    "  --help                  show this text\n"
    "\n"
    "On start it prints 'replica_server listening id=ID addr=HOST:PORT' on stdout.\n"
    "Logs go to stderr, one event per line, key=value.\n";

int usageError(const std::string& msg) {
    std::cerr << "replica_server: " << msg << "\n\n" << kUsage;
    return 2;
}

std::string trim(const std::string& s) {
    auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

void onSignal(int) { replica::Server::stop(); }

}  // namespace

int main(int argc, char** argv) {
    replica::ServerConfig config;
    std::string listen = "127.0.0.1:7401", dataDir, secretFile, fsync = "batch";
    bool insecure = false, idGiven = false;
    config.snapshotEvery = 10000;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        try {
            if (a == "--help" || a == "-h") {
                std::cout << kUsage;
                return 0;
            } else if (a == "--id") {
                config.id = value();
                idGiven = true;
            } else if (a == "--listen") {
                listen = value();
            } else if (a == "--data-dir") {
                dataDir = value();
            } else if (a == "--secret-file") {
                secretFile = value();
            } else if (a == "--insecure-no-auth") {
                insecure = true;
            } else if (a == "--fsync") {
                fsync = value();
            } else if (a == "--snapshot-every") {
                config.snapshotEvery = std::stoll(value());
            } else if (a == "--snapshot-log-ratio") {
                config.snapshotLogRatio = std::stod(value());
                if (config.snapshotLogRatio < 0) throw std::invalid_argument("--snapshot-log-ratio must be >= 0");
            } else if (a == "--handshake-timeout-ms") {
                config.handshakeTimeoutMs = std::stoi(value());
                if (config.handshakeTimeoutMs < 1) throw std::invalid_argument("--handshake-timeout-ms must be >= 1");
            } else if (a == "--max-connections") {
                config.maxConnections = std::size_t(std::stoul(value()));
                if (config.maxConnections < 1) throw std::invalid_argument("--max-connections must be >= 1");
            } else if (a == "--busy-poll-us") {
                config.busyPollUs = std::stoi(value());
                if (config.busyPollUs < 0 || config.busyPollUs > 1000000) throw std::invalid_argument("--busy-poll-us must be 0..1000000");
            } else if (a == "--max-buffered-bytes") {
                config.maxBufferedBytes = std::stoull(value());
            } else if (a == "--max-parked-bytes") {
                config.maxParkedBytes = std::stoull(value());
            } else if (a == "--max-frame-bytes") {
                config.limits.maxFrameBytes = std::uint32_t(std::stoul(value()));
            } else {
                return usageError("unknown flag " + a);
            }
        } catch (const std::exception& e) {
            return usageError(std::string("bad flag value: ") + e.what());
        }
    }
    auto colon = listen.rfind(':');
    if (colon == std::string::npos) return usageError("--listen wants HOST:PORT");
    config.host = listen.substr(0, colon);
    if (config.host.size() > 2 && config.host.front() == '[') config.host = config.host.substr(1, config.host.size() - 2);
    try {
        config.port = std::stoi(listen.substr(colon + 1));
    } catch (const std::exception&) {
        return usageError("--listen wants HOST:PORT");
    }
    replica::FsyncPolicy policy;
    if (fsync == "always") policy = replica::FsyncPolicy::Always;
    else if (fsync == "batch") policy = replica::FsyncPolicy::Batch;
    else if (fsync == "never") policy = replica::FsyncPolicy::Never;
    else return usageError("--fsync must be always, batch or never");
    if (insecure == !secretFile.empty())
        return usageError("exactly one of --secret-file and --insecure-no-auth is required");
    if (insecure && config.host != "127.0.0.1" && config.host != "localhost" && config.host != "::1")
        return usageError("--insecure-no-auth only on a loopback address");
    if (!secretFile.empty()) {
        std::ifstream in(secretFile, std::ios::binary);
        if (!in) return usageError("cannot read secret file " + secretFile);
        std::stringstream ss;
        ss << in.rdbuf();
        config.secret = trim(ss.str());
        if (config.secret.empty()) return usageError("secret file " + secretFile + " is empty");
    }

    std::signal(SIGPIPE, SIG_IGN);
    struct sigaction sa {};
    sa.sa_handler = onSignal;  // no SA_RESTART: epoll_wait returns EINTR and the loop ends
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);

    // Room for every allowed connection plus log, snapshot and epoch files: running out of
    // descriptors would leave the listening socket readable with accept() failing (a busy loop).
    rlimit nofile{};
    if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
        rlim_t want = rlim_t(config.maxConnections + 64);
        if (nofile.rlim_cur < want) {
            nofile.rlim_cur = std::min(want, nofile.rlim_max);
            ::setrlimit(RLIMIT_NOFILE, &nofile);
        }
    }
    config.dataDir = dataDir;

    try {
        replica::StateMachine machine;
        std::vector<std::int64_t> snapshotSeqs;  // oldest first
        std::uint64_t newestSnapshotBytes = 0, replayedBytes = 0;  // the snapshot pace (Server.h)
        std::unique_ptr<replica::Log> log;
        std::unique_ptr<replica::SnapshotStore> snapshots;
        std::unique_ptr<replica::DataDirLock> dirLock;  // held until main returns
        if (!dataDir.empty()) {
            ::mkdir(dataDir.c_str(), 0755);
            // Before anything in the dir is read or repaired: a second server must not touch it.
            dirLock = std::make_unique<replica::DataDirLock>(dataDir);
            snapshots = std::make_unique<replica::SnapshotStore>(dataDir);
            ::unlink((dataDir + "/install.tmp").c_str());  // an install cut short by a crash
            snapshots->removeTemp();  // a background snapshot cut short by a crash
            // An install cut short: committed once its snapshot was promoted (storage/Layout.h).
            replica::FileLog::recoverReset(
                dataDir,
                [&](std::int64_t seq) {
                    if (snapshots->hasStaged() || !snapshots->has(seq)) return false;
                    snapshots->keepOnly(seq);
                    return true;
                },
                [](const std::string& m) { replica::logLine("warn", m); });
            snapshots->removeStaged();
            auto restore = [&](const replica::ByteSource& payload, std::uint64_t size) {
                machine.restore(payload, size);
            };
            std::vector<replica::SkippedSnapshot> damaged;
            std::int64_t restoredSeq = 0;
            if (auto snap = snapshots->loadLatest(restore)) {
                restoredSeq = snap->seq;
                newestSnapshotBytes = snap->fileSize;
                damaged = std::move(snap->skipped);
                for (const auto& d : damaged)
                    replica::logLine("error", "event=snapshot_damaged path=" + d.path +
                                                  " reason=\"" + d.reason + "\" msg=\"starting from "
                                                  "the snapshot at " + std::to_string(snap->seq) +
                                                  " and the log after it\"");
                replica::logLine("info", "event=snapshot_loaded s=" + std::to_string(snap->seq));
            }
            log = std::make_unique<replica::FileLog>(
                dataDir, policy, [](const std::string& m) { replica::logLine("warn", m); });
            std::int64_t replayed = 0;
            log->replay(machine.applied(), [&](std::int64_t seq, std::string_view body) {
                if (seq != machine.applied() + 1)
                    throw replica::StorageError("log gap in " + dataDir + ": seq " +
                                                std::to_string(seq) + " after " +
                                                std::to_string(machine.applied()));
                machine.applyBytes(body, config.limits);
                ++replayed;
                replayedBytes += body.size();
            });
            // A log that ends before the newest damaged snapshot's seq (they are listed newest
            // first) would start this replica behind a state it held (and may have acked):
            // refused, as a log gap is.
            if (!damaged.empty() && machine.applied() < damaged.front().seq)
                throw replica::StorageError(
                    damaged.front().reason + "; the snapshot restored (at " +
                    std::to_string(restoredSeq) + ") and the log after it reach only seq " +
                    std::to_string(machine.applied()));
            // Only now, with the state rebuilt from the older snapshot and the log: a failed
            // replay leaves the data dir as it was found.
            for (const auto& d : damaged) snapshots->setAside(d.path);
            // Segments the oldest snapshot covers, left by a crash between a compaction's two
            // steps: never read again (log_read at or before that snapshot is `compacted`).
            snapshotSeqs = snapshots->seqs();
            if (!snapshotSeqs.empty()) log->truncatePrefix(snapshotSeqs.front());
            replica::logLine("info", "event=recovered applied=" + std::to_string(machine.applied()) +
                                         " replayed=" + std::to_string(replayed));
        } else {
            log = std::make_unique<replica::MemoryLog>();
            replica::logLine("warn", "event=no_data_dir msg=\"state is kept in memory only\"");
        }
        replica::EpochStore epochs(dataDir);
        epochs.raise(machine.lastEpoch());
        if (!idGiven)
            config.id = config.port != 0 ? "r-" + std::to_string(config.port)
                                         : "r-pid" + std::to_string(::getpid());
        replica::Server server(config, machine, *log, snapshots.get(), epochs);
        server.setSnapshots(snapshotSeqs, newestSnapshotBytes, replayedBytes);
        int port = server.listen();
        std::string host = config.host.find(':') != std::string::npos ? "[" + config.host + "]" : config.host;
        std::printf("replica_server listening id=%s addr=%s:%d\n", config.id.c_str(), host.c_str(), port);
        std::fflush(stdout);
        replica::logLine("info", "event=listening id=" + config.id + " addr=" + host + ":" +
                                     std::to_string(port) + " fsync=" + fsync);
        server.run();
    } catch (const std::exception& e) {
        replica::logLine("error", std::string("event=fatal reason=\"") + e.what() + "\"");
        return 1;
    }
    return 0;
}
