#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace replica {

/// Set of follow edges (from, to) -> since, for membership tests and the `since` of an edge.
///
/// Why: it replaces two std::unordered_map per user (followers and following), which cost a
/// node allocation each per follow and a free each per unfollow. One flat open-addressing
/// table (linear probing, backward-shift deletion, load factor <= 1/2) does the same with no
/// allocation per edge. The per-user lists ordered by since (the std::maps) stay: they give
/// the paging order and the counts.
///
/// Deterministic where it matters: keys are record addresses, so the layout differs between
/// processes, but nothing iterates it: it never reaches a reply, digest or snapshot.
/// Not thread-safe.
class EdgeIndex {
public:
    EdgeIndex() { slots_.assign(64, Entry{}); }

    /// The since of the edge from -> to, or nullptr.
    const std::int64_t* find(const void* from, const void* to) const {
        const Entry& e = slots_[probe(from, to)];
        return e.from != nullptr ? &e.since : nullptr;
    }
    bool contains(const void* from, const void* to) const { return find(from, to) != nullptr; }
    /// Adds from -> to (not present yet; both non-null).
    void insert(const void* from, const void* to, std::int64_t since) {
        if (2 * (count_ + 1) > slots_.size()) grow();
        Entry& e = slots_[probe(from, to)];
        e = Entry{from, to, since};
        ++count_;
    }
    /// Removes from -> to if present.
    void erase(const void* from, const void* to) {
        std::size_t hole = probe(from, to), mask = slots_.size() - 1;
        if (slots_[hole].from == nullptr) return;
        for (std::size_t next = (hole + 1) & mask;; next = (next + 1) & mask) {
            const Entry& e = slots_[next];
            if (e.from == nullptr) break;
            std::size_t home = hash(e.from, e.to) & mask;
            bool between = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next);
            if (!between) {
                slots_[hole] = e;
                hole = next;
            }
        }
        slots_[hole] = Entry{};
        --count_;
    }
    void clear() {
        slots_.assign(64, Entry{});
        count_ = 0;
    }
    void swap(EdgeIndex& other) noexcept {
        slots_.swap(other.slots_);
        std::swap(count_, other.count_);
    }
    std::size_t size() const { return count_; }

private:
    struct Entry {
        const void* from = nullptr;  // nullptr = free slot
        const void* to = nullptr;
        std::int64_t since = 0;
    };
    static std::size_t hash(const void* from, const void* to) {
        // splitmix64 finalizer over both addresses: their low bits are alignment zeros.
        std::uint64_t x = std::uint64_t(reinterpret_cast<std::uintptr_t>(from)) * 0x9e3779b97f4a7c15ull ^
                          std::uint64_t(reinterpret_cast<std::uintptr_t>(to));
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebull;
        x ^= x >> 31;
        return std::size_t(x);
    }
    std::size_t probe(const void* from, const void* to) const {
        std::size_t mask = slots_.size() - 1;
        for (std::size_t pos = hash(from, to) & mask;; pos = (pos + 1) & mask) {
            const Entry& e = slots_[pos];
            if (e.from == nullptr || (e.from == from && e.to == to)) return pos;
        }
    }
    void grow() {
        std::vector<Entry> old;
        old.swap(slots_);
        slots_.assign(old.size() * 2, Entry{});
        for (const Entry& e : old)
            if (e.from != nullptr) slots_[probe(e.from, e.to)] = e;
    }

    std::vector<Entry> slots_;  // size: a power of two
    std::size_t count_ = 0;
};

}  // namespace replica
