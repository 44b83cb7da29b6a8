#include "storage/EpochStore.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "storage/FileLog.h"
#include "storage/Layout.h"

namespace replica {

EpochStore::EpochStore(std::string dataDir) : dir_(std::move(dataDir)) {
    if (dir_.empty()) return;
    std::ifstream in(dir_ + "/" + Layout::kEpochFile);
    long long e = 0;
    if (in >> e) {
        epoch_ = e;
        in >> claim_;  // absent in files written before claims: stays empty
    }
}

void EpochStore::raise(std::int64_t epoch) {
    if (epoch <= epoch_) return;
    epoch_ = epoch;
    claim_.clear();
    store();
}

namespace {

std::string hex(const std::string& raw) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char b : raw) {
        out += kDigits[b >> 4];
        out += kDigits[b & 15];
    }
    return out;
}

}  // namespace

bool EpochStore::claim(std::int64_t epoch, const std::string& raw) {
    std::string claim = hex(raw);
    if (epoch < epoch_) return false;
    if (epoch == epoch_) {
        if (!claim_.empty() && !claim.empty() && claim != claim_) return false;
        if (!claim_.empty() || claim.empty()) return true;  // nothing new to store
    }
    epoch_ = epoch;
    claim_ = claim;
    store();
    return true;
}

void EpochStore::store() {
    if (dir_.empty()) return;
    std::string tmp = dir_ + "/epoch.tmp", path = dir_ + "/" + Layout::kEpochFile;
    std::string text = std::to_string(epoch_) + (claim_.empty() ? "" : " " + claim_) + "\n";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ::write(fd, text.data(), text.size()) != ssize_t(text.size()) || ::fsync(fd) != 0) {
        if (fd >= 0) ::close(fd);
        throw StorageError("cannot write " + tmp + ": " + std::strerror(errno));
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0)
        throw StorageError("cannot rename " + tmp + ": " + std::strerror(errno));
    syncDirectory(dir_);
}

}  // namespace replica
