// libFuzzer target: the replica server's handshake and frame dispatch, end to end over loopback.
//
// One real replica::Server (in-memory log and epoch, a known secret) runs on a thread of the
// fuzzing process, so its coverage and any sanitizer report count. Each input is one TCP
// connection. The first input byte picks the mode:
//   even: the raw bytes are the whole conversation (handshake fuzzing: hello/auth parsing, version
//         and nonce checks, bad MACs, frames before the handshake);
//   odd:  the harness first completes a valid handshake (computes the MAC with the secret), then
//         sends the rest: dispatch of w / r / hb / state-transfer frames to an authenticated peer.
// The harness half-closes, then reads until the server closes. Invariants: no crash, no sanitizer
// report, the server closes every connection after EOF (no hang: 5 s), and it keeps accepting.
// Each connection comes from its own 127.x.y.z source address, so the per-address auth-failure
// rate limit (which the raw mode trips quickly) does not shut the fuzzer out.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "codec/Body.h"
#include "codec/FrameError.h"
#include "codec/FrameReader.h"
#include "codec/Framing.h"
#include "codec/Packer.h"
#include "core/StateMachine.h"
#include "server/Auth.h"
#include "server/Server.h"
#include "storage/EpochStore.h"
#include "storage/MemoryLog.h"
#include "FuzzCheck.h"

namespace {

const char kSecret[] = "fuzz-secret";
int gPort = 0;
std::uint32_t gSource = 0;

void startServer() {
    // Leaked on purpose: the server runs until the fuzzer exits.
    auto* machine = new replica::StateMachine();
    auto* log = new replica::MemoryLog();
    auto* epochs = new replica::EpochStore("");
    replica::ServerConfig config;
    config.id = "fuzz";
    config.host = "127.0.0.1";
    config.port = 0;
    config.secret = kSecret;
    config.maxBufferedWrites = 1000;  // bodies are small here; keeps the fuzzer's RSS bounded
    auto* server = new replica::Server(config, *machine, *log, nullptr, *epochs);
    gPort = server->listen();
    std::thread([server] { server->run(); }).detach();
}

int connectFromNextSource() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    // 127.1.0.1 .. 127.254.255.254, never 127.0.0.1 (the tests' address stays clean).
    std::uint32_t n = gSource++ % (254u * 65536u - 2u);
    src.sin_addr.s_addr = htonl((127u << 24) | ((1u << 16) + n + 1));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
        ::close(fd);
        return -1;
    }
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(std::uint16_t(gPort));
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
        ::close(fd);
        return -1;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    linger lg{1, 0};  // RST on close: no TIME_WAIT pile-up over millions of connections
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    return fd;
}

bool sendAll(int fd, const std::string& bytes) {
    std::size_t at = 0;
    while (at < bytes.size()) {
        ssize_t n = ::send(fd, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
        if (n <= 0) return false;  // the server closed early (a refused frame): fine
        at += std::size_t(n);
    }
    return true;
}

// Waits up to 5 s for fd to become readable. libFuzzer's -timeout alarm (SIGALRM) interrupts
// poll with EINTR; that is not the server being slow, so wait out the rest of the deadline.
bool readableWithin5s(int fd) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (true) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        pollfd p{fd, POLLIN, 0};
        int r = ::poll(&p, 1, int(std::max<std::int64_t>(0, left.count())));
        if (r > 0) return true;
        if (r == 0 || errno != EINTR) return false;
    }
}

// Reads until one whole frame arrives; empty on close or timeout.
std::string readFrame(int fd, replica::FrameReader& reader) {
    std::vector<std::string> frames;
    char buf[4096];
    while (true) {
        reader.drain(frames);
        if (!frames.empty()) return frames.front();
        if (!readableWithin5s(fd)) return "";
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return "";
        reader.feed(buf, std::size_t(n));
    }
}

std::string frame(const std::string& body) {
    std::string out;
    std::size_t at = replica::beginFrame(out);
    out += body;
    replica::endFrame(out, at);
    return out;
}

bool handshake(int fd) {
    std::string ni = replica::Auth::nonce(16);
    std::string hello;
    replica::Packer p(hello);
    p.mapHeader(4);
    p.kv("t", "hello");
    p.str("v");
    p.arrayHeader(1);
    p.integer(1);
    p.kv("role", "coordinator");
    p.str("n");
    p.bin(ni);
    if (!sendAll(fd, frame(hello))) return false;
    replica::FrameReader reader(1 << 20);
    std::string welcome = readFrame(fd, reader);
    CHECK(!welcome.empty());  // a valid hello must be answered
    replica::Body w = replica::Body::decode(welcome, replica::Limits());
    CHECK(w.type() == "welcome");
    std::string na(w.requireBin("n"));
    CHECK(replica::Auth::equal(w.requireBin("mac"), replica::Auth::mac(kSecret, "acceptor", ni, na)));
    std::string auth;
    replica::Packer q(auth);
    q.mapHeader(2);
    q.kv("t", "auth");
    q.str("mac");
    q.bin(replica::Auth::mac(kSecret, "initiator", ni, na));
    if (!sendAll(fd, frame(auth))) return false;
    std::string ready = readFrame(fd, reader);
    CHECK(!ready.empty());
    CHECK(replica::Body::decode(ready, replica::Limits()).type() == "ready");
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    std::signal(SIGPIPE, SIG_IGN);
    startServer();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    bool authenticate = data[0] & 1;
    std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
    int fd = connectFromNextSource();
    if (fd < 0) return 0;  // out of ephemeral ports for this source: skip, not a finding
    if (authenticate && !handshake(fd)) {
        ::close(fd);
        return 0;
    }
    sendAll(fd, rest);
    ::shutdown(fd, SHUT_WR);
    // The server must close the connection once it has seen EOF (it never keeps a half-closed
    // peer): drain replies until then.
    char buf[65536];
    while (true) {
        CHECK(readableWithin5s(fd) && "server did not close the connection within 5 s of EOF");
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
    }
    ::close(fd);
    return 0;
}
