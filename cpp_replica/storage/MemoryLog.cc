#include "storage/MemoryLog.h"

#include <stdexcept>

namespace replica {

void MemoryLog::append(std::int64_t seq, std::string_view body) {
    if (seq <= lastSeq()) throw std::logic_error("log append out of order");
    records_.emplace(seq, std::string(body));
    last_ = seq;
}

void MemoryLog::replay(std::int64_t after,
                       const std::function<void(std::int64_t, std::string_view)>& fn) {
    for (auto it = records_.upper_bound(after); it != records_.end(); ++it) fn(it->first, it->second);
}

void MemoryLog::truncatePrefix(std::int64_t seq) {
    records_.erase(records_.begin(), records_.upper_bound(seq));
    if (seq > dropped_) dropped_ = seq;
}

bool MemoryLog::read(std::int64_t from, std::size_t maxBytes,
                     const std::function<bool(std::int64_t, std::string_view)>& fn) {
    if (from <= dropped_) return false;
    std::size_t bytes = 0;
    for (auto it = records_.lower_bound(from); it != records_.end() && (bytes == 0 || bytes < maxBytes); ++it) {
        if (!fn(it->first, it->second)) break;
        bytes += it->second.size();
    }
    return true;
}

void MemoryLog::prepareReset(std::int64_t) {
    aside_.swap(records_);
    records_.clear();
    lastAside_ = last_;
}

void MemoryLog::commitReset(std::int64_t seq) {
    aside_.clear();
    last_ = seq;
    dropped_ = seq;
}

void MemoryLog::abortReset() {
    records_.swap(aside_);
    aside_.clear();
    last_ = lastAside_;
}

}  // namespace replica
