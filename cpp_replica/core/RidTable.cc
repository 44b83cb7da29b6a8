#include "core/RidTable.h"

#include <xxhash.h>

#include <cassert>
#include <cstring>

namespace replica {

RidTable::RidTable(std::size_t capacity) : capacity_(capacity) {
    assert(capacity > 0 && capacity < 0xffffffffu);
    std::size_t n = 1;
    while (n < 2 * capacity) n <<= 1;  // load factor <= 0.5: short probe chains
    index_.assign(n, kEmpty);
    mask_ = n - 1;
}

std::uint64_t RidTable::hashOf(std::string_view rid) { return XXH3_64bits(rid.data(), rid.size()); }

std::size_t RidTable::probe(std::uint64_t hash, std::string_view rid) const {
    const std::uint64_t tag = hash & 0xffffffffu;
    for (std::size_t pos = hash & mask_;; pos = (pos + 1) & mask_) {
        std::uint64_t e = index_[pos];
        if (e == kEmpty) return pos;
        if ((e >> 32) != tag) continue;
        const Slot& slot = slots_[e & 0xffffffffu];
        if (slot.hash == hash && slot.ridView() == rid) return pos;
    }
}

const std::string* RidTable::find(std::string_view rid, std::uint64_t hash) const {
    if (count_ == capacity_) __builtin_prefetch(&index_[slots_[head_].hash & mask_]);
    if (count_ == 0) return nullptr;
    std::uint64_t e = index_[probe(hash, rid)];
    return e == kEmpty ? nullptr : &slots_[e & 0xffffffffu].reply;
}

void RidTable::eraseIndex(std::size_t pos) {
    // Backward-shift deletion: pull later members of the probe chain into the hole so lookups
    // never stop early at it (no tombstones to clean up).
    std::size_t hole = pos;
    for (std::size_t next = (hole + 1) & mask_;; next = (next + 1) & mask_) {
        std::uint64_t e = index_[next];
        if (e == kEmpty) break;
        std::size_t home = (e >> 32) & mask_;  // mask_ < 2^32: the stored hash bits suffice
        // Move e into the hole when its home is not cyclically within (hole, next].
        bool between = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next);
        if (!between) {
            index_[hole] = e;
            hole = next;
        }
    }
    index_[hole] = kEmpty;
}

void RidTable::remember(std::string_view rid, std::uint64_t h, std::string_view reply) {
    assert(!rid.empty() && rid.size() <= kMaxRidBytes);
    std::size_t slotNo;
    if (count_ < capacity_) {
        if (slots_.size() < capacity_) slots_.emplace_back();
        slotNo = (head_ + count_) % capacity_;
        ++count_;
    } else {
        slotNo = head_;  // evict the oldest and reuse its slot (and its reply's capacity)
        Slot& old = slots_[slotNo];
        std::size_t pos = probe(old.hash, old.ridView());
        assert((index_[pos] & 0xffffffffu) == slotNo);
        eraseIndex(pos);
        head_ = (head_ + 1) % capacity_;
    }
    Slot& slot = slots_[slotNo];
    slot.hash = h;
    slot.ridLen = std::uint8_t(rid.size());
    std::memcpy(slot.rid, rid.data(), rid.size());
    slot.reply.assign(reply.data(), reply.size());
    std::size_t pos = probe(h, rid);
    assert(index_[pos] == kEmpty);
    index_[pos] = entry(h, slotNo);
}

void RidTable::clear() {
    std::fill(index_.begin(), index_.end(), kEmpty);
    slots_.clear();
    head_ = 0;
    count_ = 0;
}

void RidTable::forEach(const std::function<void(std::string_view, std::string_view)>& fn) const {
    for (std::size_t i = 0; i < count_; ++i) {
        const Slot& s = slots_[(head_ + i) % capacity_];
        fn(s.ridView(), s.reply);
    }
}

void RidTable::swap(RidTable& other) noexcept {
    std::swap(capacity_, other.capacity_);
    slots_.swap(other.slots_);
    std::swap(head_, other.head_);
    std::swap(count_, other.count_);
    index_.swap(other.index_);
    std::swap(mask_, other.mask_);
}

}  // namespace replica
