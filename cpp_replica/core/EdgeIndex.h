#pragma once
#include <cstdint>

#include "core/OpenTable.h"

namespace replica {

/// Set of follow edges (from, to) -> since, for membership tests and the `since` of an edge.
///
/// Why: it replaces two std::unordered_map per user (followers and following), which cost a
/// node allocation each per follow and a free each per unfollow. One flat OpenTable does the
/// same with no allocation per edge. The per-user lists ordered by since (the std::maps) stay:
/// they give the paging order and the counts.
///
/// Deterministic where it matters: keys are record addresses, so the layout differs between
/// processes, but nothing iterates it: it never reaches a reply, digest or snapshot.
/// Not thread-safe.
class EdgeIndex {
public:
    /// The since of the edge from -> to, or nullptr.
    const std::int64_t* find(const void* from, const void* to) const {
        const Entry* e = table_.find(hash(from, to), Same{from, to});
        return e != nullptr ? &e->since : nullptr;
    }
    bool contains(const void* from, const void* to) const { return find(from, to) != nullptr; }
    /// Adds from -> to (not present yet; both non-null).
    void insert(const void* from, const void* to, std::int64_t since) {
        table_.insert(hash(from, to), Same{from, to}) = Entry{from, to, since};
    }
    /// Removes from -> to if present.
    void erase(const void* from, const void* to) { table_.erase(hash(from, to), Same{from, to}); }
    void clear() { table_.clear(); }
    void swap(EdgeIndex& other) noexcept { table_.swap(other.table_); }
    std::size_t size() const { return table_.size(); }

private:
    static std::uint64_t hash(const void* from, const void* to) {
        // splitmix64 finalizer over both addresses: their low bits are alignment zeros.
        std::uint64_t x = std::uint64_t(reinterpret_cast<std::uintptr_t>(from)) * 0x9e3779b97f4a7c15ull ^
                          std::uint64_t(reinterpret_cast<std::uintptr_t>(to));
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebull;
        x ^= x >> 31;
        return x;
    }
    struct Entry {
        const void* from = nullptr;  // nullptr = free slot
        const void* to = nullptr;
        std::int64_t since = 0;
        bool isFree() const { return from == nullptr; }
        // Recomputed rather than stored: it is cheap, and the entry stays 24 bytes.
        std::uint64_t hashValue() const { return hash(from, to); }
    };
    struct Same {
        const void* from;
        const void* to;
        bool operator()(const Entry& e) const { return e.from == from && e.to == to; }
    };

    OpenTable<Entry> table_;
};

}  // namespace replica
