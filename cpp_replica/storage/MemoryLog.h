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
    std::int64_t lastSeq() const override { return last_; }
    bool read(std::int64_t from, std::size_t maxBytes,
              const std::function<bool(std::int64_t, std::string_view)>& fn) override;
    void prepareReset(std::int64_t seq) override;
    void commitReset(std::int64_t seq) override;
    void abortReset() override;

private:
    std::map<std::int64_t, std::string> records_;
    std::map<std::int64_t, std::string> aside_;  // between prepareReset and commit/abort
    std::int64_t last_ = 0;
    std::int64_t lastAside_ = 0;
    std::int64_t dropped_ = 0;  // every record <= dropped_ is gone
};

}  // namespace replica
