#pragma once
#include <cassert>
#include <cstdint>
#include <utility>
#include <vector>

namespace replica {

/// The slot array behind EdgeIndex and NameIndex: open addressing with linear probing,
/// backward-shift deletion (no tombstones, so probe chains never rot under follow/unfollow
/// churn), a power-of-two size and load factor <= 1/2.
///
/// `Entry` is a small copyable struct whose default value is a free slot, with
///   bool isFree() const;              // true for a free slot
///   std::uint64_t hashValue() const;  // of an occupied slot: the hash it was placed by
/// Callers hash their own key and pass `match(const Entry&)` to recognise it, so the key's
/// shape (two pointers, an inline string) stays with the caller. Not thread-safe.
template <typename Entry>
class OpenTable {
public:
    OpenTable() { slots_.assign(kInitialSlots, Entry{}); }

    /// The entry with hash `h` that `match` accepts, or nullptr.
    template <typename Match>
    const Entry* find(std::uint64_t h, Match match) const {
        const Entry& e = slots_[probe(h, match)];
        return e.isFree() ? nullptr : &e;
    }
    /// The free slot for a new entry with hash `h`, which `match` must not accept for any
    /// present entry; the caller fills it in with that hash.
    template <typename Match>
    Entry& insert(std::uint64_t h, Match match) {
        if (2 * (count_ + 1) > slots_.size()) rehash(slots_.size() * 2);
        Entry& e = slots_[probe(h, match)];
        assert(e.isFree());
        ++count_;
        return e;
    }
    /// Removes the entry with hash `h` that `match` accepts, if any.
    template <typename Match>
    void erase(std::uint64_t h, Match match) {
        std::size_t hole = probe(h, match), mask = slots_.size() - 1;
        if (slots_[hole].isFree()) return;
        // Pull later members of the probe chain into the hole unless their home slot lies
        // cyclically in (hole, next]: moving those would put them before their home.
        for (std::size_t next = (hole + 1) & mask;; next = (next + 1) & mask) {
            const Entry& e = slots_[next];
            if (e.isFree()) break;
            std::size_t home = e.hashValue() & mask;
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
        slots_.assign(kInitialSlots, Entry{});
        count_ = 0;
    }
    void swap(OpenTable& other) noexcept {
        slots_.swap(other.slots_);
        std::swap(count_, other.count_);
    }
    std::size_t size() const { return count_; }

private:
    static constexpr std::size_t kInitialSlots = 64;

    // The slot holding the entry `match` accepts, or the free slot that ends its probe chain.
    template <typename Match>
    std::size_t probe(std::uint64_t h, Match& match) const {
        std::size_t mask = slots_.size() - 1;
        for (std::size_t pos = h & mask;; pos = (pos + 1) & mask) {
            const Entry& e = slots_[pos];
            if (e.isFree() || match(e)) return pos;
        }
    }
    void rehash(std::size_t n) {
        assert((n & (n - 1)) == 0);
        std::vector<Entry> old;
        old.swap(slots_);
        slots_.assign(n, Entry{});
        std::size_t mask = n - 1;
        for (const Entry& e : old) {
            if (e.isFree()) continue;
            std::size_t pos = e.hashValue() & mask;  // keys are distinct: the first free slot
            while (!slots_[pos].isFree()) pos = (pos + 1) & mask;
            slots_[pos] = e;
        }
    }

    std::vector<Entry> slots_;  // size: a power of two
    std::size_t count_ = 0;
};

}  // namespace replica
