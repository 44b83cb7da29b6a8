#pragma once
#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "codec/Body.h"
#include "codec/ByteSink.h"
#include "codec/ByteSource.h"
#include "codec/Limits.h"
#include "core/EdgeIndex.h"
#include "core/NameIndex.h"
#include "core/RidTable.h"

namespace replica {

class StreamUnpacker;

/// The replicated state: users, posts, follows, the exactly-once table and the digest chain.
///
/// PURE: no clock, no randomness, no I/O. Every reply depends only on the current state and the
/// write (time comes from the sequencer's `ts`, ids from `s`), and all iteration that reaches a
/// reply or a snapshot follows a defined order (std::map, never hash order). So two instances fed
/// the same write bodies produce byte-identical replies, digests and snapshots.
///
/// Not thread-safe: the replica server calls it from its single event-loop thread; the Python
/// binding holds the GIL.
class StateMachine {
public:
    using Digest = std::array<unsigned char, 16>;

    StateMachine();
    ~StateMachine();
    StateMachine(const StateMachine&) = delete;
    StateMachine& operator=(const StateMachine&) = delete;

    /// Applies one write. `bodyBytes` are the exact bytes of the write frame body (hashed into
    /// the digest); `body` is their decoding (it references `bodyBytes`). Requires
    /// `s == applied() + 1` (asserted: ordering is the server's job). Frame-level fields
    /// (`s`,`e`,`ts`,`rid`,`op`) must be present and typed, else FrameError("malformed") is thrown
    /// and nothing changes. Bad arguments are not errors of the frame: they give an `invalid`
    /// reply, consume the seq and change nothing but applied/digest. Returns the reply bytes,
    /// which live in a buffer of this instance: valid until the next apply(), restore() or
    /// swap(). (Why not a fresh std::string: its malloc and free per write showed in profiles.)
    std::string_view apply(std::string_view bodyBytes, const Body& body);

    /// Decodes `bodyBytes` with `limits` and applies it (convenience for replay and tests).
    /// The reply view has the lifetime apply() gives it.
    std::string_view applyBytes(std::string_view bodyBytes, const Limits& limits = Limits());

    /// Answers a read query against the current state; never changes anything. `args` may be
    /// nullptr (no arguments). Returns the reply bytes.
    std::string query(std::string_view q, const msgpack::object* args) const;

    std::int64_t applied() const { return applied_; }
    /// Epoch of the last applied write (0 before any).
    std::int64_t lastEpoch() const { return lastEpoch_; }
    /// d(applied) of the hash chain (docs/protocol.md); 16 zero bytes at seq 0.
    const Digest& digest() const { return digest_; }

    /// The whole state (including applied seq, digest and the request-id table) as bytes.
    /// Deterministic: equal states give equal bytes.
    std::string snapshot() const;
    /// The same bytes as snapshot(), handed to `sink` in pieces of about kSnapshotPiece as they
    /// are encoded: a forked snapshot writer then holds one piece, not a second copy of the state.
    void writeSnapshot(const ByteSink& sink) const;
    static constexpr std::size_t kSnapshotPiece = std::size_t(1) << 20;
    /// Replaces the whole state with a snapshot's. Throws std::runtime_error on a bad snapshot
    /// (the state is then unspecified; callers discard the instance). Decodes one entry at a
    /// time: besides the state being built it holds one entry's msgpack objects, never a tree
    /// of the whole snapshot.
    void restore(std::string_view bytes);
    /// The same from the `size` bytes of `source`, read through a buffer of about 1 MiB: a
    /// snapshot file is restored without being held in memory whole. What `source` throws
    /// passes through.
    void restore(const ByteSource& source, std::uint64_t size);

    /// Where a snapshot's state stands: what its payload begins with.
    struct Position {
        std::int64_t applied = 0;
        std::int64_t lastEpoch = 0;
        Digest digest{};
    };
    /// Reads only the position at the head of a snapshot payload (`size` bytes of `source`):
    /// a stored snapshot handed out for transfer is described without being restored. Throws
    /// std::runtime_error ("bad snapshot: ...") as restore() does.
    static Position snapshotPosition(const ByteSource& source, std::uint64_t size);

    /// Exchanges the whole state with `other` (constant time): an install restores into a
    /// fresh instance, verifies it, and only then swaps it in, so a bad snapshot never touches
    /// the live state.
    void swap(StateMachine& other) noexcept;

    /// XXH3-128 of the user-visible state alone (users, posts, follows), so tests can check that
    /// a refused command changed nothing even though applied/digest moved.
    Digest stateFingerprint() const;

    /// Size of the exactly-once table (bounded by kRidCapacity).
    static constexpr std::size_t kRidCapacity = 100000;

private:
    struct User;
    struct Post {
        std::int64_t id = 0;
        User* author = nullptr;
        std::string text;
        std::int64_t createdAt = 0;
    };
    // The write operations leave their reply in reply_.
    void applyOp(std::string_view op, const msgpack::object* args, std::int64_t seq,
                 std::int64_t ts);
    void createUser(const msgpack::object& a, std::int64_t ts);
    void deleteUser(const msgpack::object& a);
    void createPost(const msgpack::object& a, std::int64_t seq, std::int64_t ts);
    void deletePost(const msgpack::object& a);
    void follow(const msgpack::object& a, std::int64_t seq, bool on);
    void setReply(const std::string& r) { reply_.assign(r); }  // keeps reply_'s capacity
    User* findUser(std::string_view name) const;
    void addFollow(User* from, User* to, std::int64_t since);
    void removeFollow(User* from, User* to);
    void removePost(std::int64_t id);
    void clear();
    void encodeState(bool withMeta, const ByteSink& sink) const;
    void restoreFrom(StreamUnpacker& in);
    static Position readPosition(StreamUnpacker& in);  // the payload's first five elements

    std::map<std::string, std::unique_ptr<User>> users_;  // key: lower-case username
    NameIndex<User> userIndex_;  // the same users, for lookups by name (no order)
    EdgeIndex edges_;            // follow edges, for membership (order: the users' maps)
    // Posts by value: one allocation per post instead of two (node + Post).
    std::map<std::int64_t, Post> posts_;  // key: id (= seq)
    std::size_t follows_ = 0;
    RidTable rids_{kRidCapacity};
    std::int64_t applied_ = 0;
    std::int64_t lastEpoch_ = 0;
    Digest digest_{};
    std::string hashScratch_;  // reused buffer for the digest input (no state, just capacity)
    std::string reply_;        // the last reply (apply() returns a view of it)
};

}  // namespace replica
