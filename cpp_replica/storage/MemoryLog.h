#pragma once
#include <map>

#include "storage/Log.h"

namespace replica {

/// Log kept in memory: for tests and for replicas started without a data dir.
/// Same contract as Log; nothing survives the process.
class MemoryLog : public Log {
public:
    void append(std::int64_t seq, std::string_view body) override;
    void sync() override {}
    void replay(std::int64_t after,
                const std::function<void(std::int64_t, std::string_view)>& fn) override;
    void truncatePrefix(std::int64_t seq) override;
    std::int64_t lastSeq() const override { return records_.empty() ? 0 : records_.rbegin()->first; }

private:
    std::map<std::int64_t, std::string> records_;
};

}  // namespace replica
