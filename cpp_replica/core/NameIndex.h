#pragma once
#include <xxhash.h>

#include <cassert>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "core/OpenTable.h"

namespace replica {

/// Case-insensitive (ASCII) hash index from a username to its record, beside the ordered
/// std::map the state machine keeps for iteration (search, snapshots).
///
/// Why: every write names one or two users; the ordered map's lookup lowered the name into a
/// std::string and did ~10 string compares, about a fifth of a follow's apply() time. Here a
/// lookup lowers into a stack buffer, hashes once and usually touches one slot of an
/// OpenTable. Keys are at most kMaxKey bytes (usernames are 3..20 chars), stored inline with
/// their hash, so growing and deleting never rehash a string.
///
/// Deterministic where it matters: nothing iterates it, so its layout (which depends on
/// insertion history) never reaches a reply, digest or snapshot. Not thread-safe.
template <typename T>
class NameIndex {
public:
    static constexpr std::size_t kMaxKey = 32;

    /// The record of `name` (any case), or nullptr. Names longer than kMaxKey are never stored.
    T* find(std::string_view name) const {
        char key[kMaxKey];
        if (!lower(name, key)) return nullptr;
        Key k{std::string_view(key, name.size())};
        const Entry* e = table_.find(k.hash, k);
        return e != nullptr ? e->value : nullptr;
    }
    /// Adds `name` -> `value`; `name` (ignoring case) must not be present.
    void insert(std::string_view name, T* value) {
        char key[kMaxKey];
        bool ok = lower(name, key);
        assert(ok && value != nullptr);
        (void)ok;
        Key k{std::string_view(key, name.size())};
        Entry& e = table_.insert(k.hash, k);
        e.hash = k.hash;
        e.value = value;
        e.len = std::uint8_t(k.text.size());
        std::memcpy(e.key, k.text.data(), k.text.size());
    }
    /// Removes `name` (any case) if present.
    void erase(std::string_view name) {
        char key[kMaxKey];
        if (!lower(name, key)) return;
        Key k{std::string_view(key, name.size())};
        table_.erase(k.hash, k);
    }
    void clear() { table_.clear(); }
    void swap(NameIndex& other) noexcept { table_.swap(other.table_); }
    std::size_t size() const { return table_.size(); }

private:
    struct Entry {
        std::uint64_t hash = 0;
        T* value = nullptr;  // nullptr = free slot
        std::uint8_t len = 0;
        char key[kMaxKey];
        bool isFree() const { return value == nullptr; }
        std::uint64_t hashValue() const { return hash; }
    };
    // A lowered name and its hash; matches the entry that stores it.
    struct Key {
        explicit Key(std::string_view lowered) : text(lowered), hash(XXH3_64bits(text.data(), text.size())) {}
        std::string_view text;
        std::uint64_t hash;
        bool operator()(const Entry& e) const {
            return e.hash == hash && e.len == text.size() && std::memcmp(e.key, text.data(), text.size()) == 0;
        }
    };

    static bool lower(std::string_view name, char* out) {
        if (name.size() > kMaxKey) return false;
        for (std::size_t i = 0; i < name.size(); ++i) {
            char c = name[i];
            out[i] = c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c;
        }
        return true;
    }

    OpenTable<Entry> table_;
};

}  // namespace replica
