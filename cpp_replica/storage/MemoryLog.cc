#include "storage/MemoryLog.h"

#include <stdexcept>

namespace replica {

void MemoryLog::append(std::int64_t seq, std::string_view body) {
    if (seq <= lastSeq()) throw std::logic_error("log append out of order");
    records_.emplace(seq, std::string(body));
}

void MemoryLog::replay(std::int64_t after,
                       const std::function<void(std::int64_t, std::string_view)>& fn) {
    for (auto it = records_.upper_bound(after); it != records_.end(); ++it) fn(it->first, it->second);
}

void MemoryLog::truncatePrefix(std::int64_t seq) {
    records_.erase(records_.begin(), records_.upper_bound(seq));
}

}  // namespace replica
