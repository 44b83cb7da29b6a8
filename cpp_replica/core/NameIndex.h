#pragma once
#include <xxhash.h>

#include <cassert>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace replica {

/// Case-insensitive (ASCII) hash index from a username to its record, beside the ordered
/// std::map the state machine keeps for iteration (search, snapshots).
///
/// Why: every write names one or two users; the ordered map's lookup lowered the name into a
/// std::string and did ~10 string compares, about a fifth of a follow's apply() time. Here a
/// lookup lowers into a stack buffer, hashes once and usually touches one slot. Keys are at
/// most kMaxKey bytes (usernames are 3..20 chars), stored inline. Open addressing with linear
/// probing and backward-shift deletion, load factor <= 1/2.
///
/// Deterministic where it matters: nothing iterates it, so its layout (which depends on
/// insertion history) never reaches a reply, digest or snapshot. Not thread-safe.
template <typename T>
class NameIndex {
public:
    static constexpr std::size_t kMaxKey = 32;

    NameIndex() { rehash(64); }

    /// The record of `name` (any case), or nullptr. Names longer than kMaxKey are never stored.
    T* find(std::string_view name) const {
        char key[kMaxKey];
        if (!lower(name, key)) return nullptr;
        std::string_view k(key, name.size());
        std::uint64_t h = hash(k);
        const Entry* e = &slots_[probe(h, k)];
        return e->value;
    }
    /// Adds `name` -> `value`; `name` (ignoring case) must not be present.
    void insert(std::string_view name, T* value) {
        char key[kMaxKey];
        bool ok = lower(name, key);
        assert(ok && value != nullptr);
        (void)ok;
        if (2 * (count_ + 1) > slots_.size()) rehash(slots_.size() * 2);
        std::string_view k(key, name.size());
        std::uint64_t h = hash(k);
        std::size_t pos = probe(h, k);
        assert(slots_[pos].value == nullptr);
        Entry& e = slots_[pos];
        e.hash = h;
        e.value = value;
        e.len = std::uint8_t(k.size());
        std::memcpy(e.key, k.data(), k.size());
        ++count_;
    }
    /// Removes `name` (any case) if present.
    void erase(std::string_view name) {
        char key[kMaxKey];
        if (!lower(name, key)) return;
        std::string_view k(key, name.size());
        std::size_t pos = probe(hash(k), k);
        if (slots_[pos].value == nullptr) return;
        // Backward-shift deletion: pull later members of the probe chain into the hole.
        std::size_t hole = pos, mask = slots_.size() - 1;
        for (std::size_t next = (hole + 1) & mask;; next = (next + 1) & mask) {
            if (slots_[next].value == nullptr) break;
            std::size_t home = slots_[next].hash & mask;
            bool between = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next);
            if (!between) {
                slots_[hole] = slots_[next];
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
    void swap(NameIndex& other) noexcept {
        slots_.swap(other.slots_);
        std::swap(count_, other.count_);
    }
    std::size_t size() const { return count_; }

private:
    struct Entry {
        std::uint64_t hash = 0;
        T* value = nullptr;  // nullptr = free slot
        std::uint8_t len = 0;
        char key[kMaxKey];
    };

    static bool lower(std::string_view name, char* out) {
        if (name.size() > kMaxKey) return false;
        for (std::size_t i = 0; i < name.size(); ++i) {
            char c = name[i];
            out[i] = c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c;
        }
        return true;
    }
    static std::uint64_t hash(std::string_view k) { return XXH3_64bits(k.data(), k.size()); }

    std::size_t probe(std::uint64_t h, std::string_view k) const {
        std::size_t mask = slots_.size() - 1;
        for (std::size_t pos = h & mask;; pos = (pos + 1) & mask) {
            const Entry& e = slots_[pos];
            if (e.value == nullptr) return pos;
            if (e.hash == h && e.len == k.size() && std::memcmp(e.key, k.data(), k.size()) == 0)
                return pos;
        }
    }
    void rehash(std::size_t n) {
        std::vector<Entry> old;
        old.swap(slots_);
        slots_.assign(n, Entry{});
        for (const Entry& e : old) {
            if (e.value == nullptr) continue;
            std::size_t mask = n - 1, pos = e.hash & mask;
            while (slots_[pos].value != nullptr) pos = (pos + 1) & mask;
            slots_[pos] = e;
        }
    }

    std::vector<Entry> slots_;  // size: a power of two
    std::size_t count_ = 0;
};

}  // namespace replica
