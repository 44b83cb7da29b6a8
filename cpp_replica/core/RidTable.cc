#include "core/RidTable.h"

#include <xxhash.h>

#include <cassert>
#include <cstring>

namespace replica {

RidTable::RidTable(std::size_t capacity) : capacity_(capacity) {
    assert(capacity > 0 && capacity < kEmpty);
    std::size_t n = 1;
    while (n < 2 * capacity) n <<= 1;  // load factor <= 0.5: short probe chains
    index_.assign(n, kEmpty);
    mask_ = n - 1;
}

std::size_t RidTable::probe(std::uint64_t hash, std::string_view rid) const {
    for (std::size_t pos = hash & mask_;; pos = (pos + 1) & mask_) {
        std::uint32_t s = index_[pos];
        if (s == kEmpty) return pos;
        const Slot& slot = slots_[s];
        if (slot.hash == hash && slot.ridView() == rid) return pos;
    }
}

const std::string* RidTable::find(std::string_view rid) const {
    if (count_ == 0) return nullptr;
    std::uint64_t h = XXH3_64bits(rid.data(), rid.size());
    std::uint32_t s = index_[probe(h, rid)];
    return s == kEmpty ? nullptr : &slots_[s].reply;
}

void RidTable::eraseIndex(std::size_t pos) {
    // Backward-shift deletion: pull later members of the probe chain into the hole so lookups
    // never stop early at it (no tombstones to clean up).
    std::size_t hole = pos;
    for (std::size_t next = (hole + 1) & mask_;; next = (next + 1) & mask_) {
        std::uint32_t s = index_[next];
        if (s == kEmpty) break;
        std::size_t home = slots_[s].hash & mask_;
        // Move s into the hole when its home is not cyclically within (hole, next].
        bool between = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next);
        if (!between) {
            index_[hole] = s;
            hole = next;
        }
    }
    index_[hole] = kEmpty;
}

void RidTable::remember(std::string_view rid, std::string_view reply) {
    assert(!rid.empty() && rid.size() <= kMaxRidBytes);
    std::uint64_t h = XXH3_64bits(rid.data(), rid.size());
    std::size_t slotNo;
    if (count_ < capacity_) {
        if (slots_.size() < capacity_) slots_.emplace_back();
        slotNo = (head_ + count_) % capacity_;
        ++count_;
    } else {
        slotNo = head_;  // evict the oldest and reuse its slot (and its reply's capacity)
        Slot& old = slots_[slotNo];
        std::size_t pos = probe(old.hash, old.ridView());
        assert(index_[pos] == slotNo);
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
    index_[pos] = std::uint32_t(slotNo);
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
