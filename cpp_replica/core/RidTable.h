#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace replica {

/// The exactly-once table: the reply of each of the last `capacity` request ids, evicted
/// oldest first (docs/protocol.md "Exactly once").
///
/// Why not std::unordered_map<std::string, std::string> + std::deque: with a fresh rid on every
/// write that cost three allocations, a string hash and a node free per write and was the top
/// of the apply profile. Here the entries live in a ring of fixed slots (rid bytes inline, the
/// reply in a std::string whose capacity the slot keeps when it is reused), and the index is an
/// open-addressing table of slot numbers keyed by a 64-bit XXH3 hash of the rid, with linear
/// probing and backward-shift deletion. A hit compares the full rid, so a hash collision can
/// never return another request's reply.
///
/// Deterministic where it matters: forEach() walks oldest first (the snapshot order); the hash
/// layout never reaches a reply or a snapshot. Not thread-safe.
class RidTable {
public:
    static constexpr std::size_t kMaxRidBytes = 64;

    explicit RidTable(std::size_t capacity);

    /// The hash find() and remember() key `rid` by (so a caller doing both hashes once).
    static std::uint64_t hashOf(std::string_view rid);
    /// The stored reply of `rid`, or nullptr. The pointer is valid until the next remember().
    const std::string* find(std::string_view rid) const { return find(rid, hashOf(rid)); }
    /// The same with `hash` = hashOf(rid). Also prefetches the index entry the next
    /// remember() evicts, so that cache miss overlaps the caller's work in between.
    const std::string* find(std::string_view rid, std::uint64_t hash) const;
    /// Remembers `reply` for `rid` (which must not be stored yet and be 1..kMaxRidBytes bytes),
    /// evicting the oldest entry when full.
    void remember(std::string_view rid, std::string_view reply) { remember(rid, hashOf(rid), reply); }
    void remember(std::string_view rid, std::uint64_t hash, std::string_view reply);
    void clear();
    std::size_t size() const { return count_; }
    /// Calls fn(rid, reply) oldest first.
    void forEach(const std::function<void(std::string_view, std::string_view)>& fn) const;
    void swap(RidTable& other) noexcept;

private:
    struct Slot {
        std::uint64_t hash = 0;
        std::uint8_t ridLen = 0;
        char rid[kMaxRidBytes];
        std::string reply;
        std::string_view ridView() const { return std::string_view(rid, ridLen); }
    };
    // An index entry: the low 32 bits of the rid's hash above, the slot number below. Why the
    // hash bits: probing and backward-shift deletion compare and re-home entries without
    // reading their slots (a cache miss each, the top of the profile with unique rids).
    static constexpr std::uint64_t kEmpty = ~std::uint64_t(0);
    static std::uint64_t entry(std::uint64_t hash, std::size_t slot) {
        return (hash << 32) | std::uint64_t(slot);
    }
    std::size_t probe(std::uint64_t hash, std::string_view rid) const;  // index position or empty
    void eraseIndex(std::size_t pos);

    std::size_t capacity_;
    std::vector<Slot> slots_;           // ring, allocated lazily up to capacity_
    std::size_t head_ = 0;              // oldest entry when full
    std::size_t count_ = 0;
    std::vector<std::uint64_t> index_;  // power of two >= 2 * capacity_, kEmpty = free
    std::size_t mask_ = 0;
};

}  // namespace replica
