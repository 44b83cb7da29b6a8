#pragma once
#include <string>

namespace replica {

/// An exclusive hold on a data dir: one replica_server per dir. Two servers on one dir would
/// append to the same log and both answer as that replica (a silent fork of its history).
///
/// It is a flock(LOCK_EX) on DATA_DIR/lock, taken before anything in the dir is read or
/// repaired and held for the process's life: the kernel drops it when the process dies, however
/// it dies, so a crash never leaves a stale lock to clear by hand. The file holds the holder's
/// pid (decimal text), for the message a second server gets; the file itself stays.
///
/// The descriptor is O_CLOEXEC (nothing exec'd inherits it). A fork()ed child (the background
/// snapshot, a snapshot export) shares the lock through its copy of the descriptor: harmless
/// while the parent lives, and such children die with the parent (PR_SET_PDEATHSIG). So that a
/// restart right after a kill -9 does not trip over a child that is still being killed, a start
/// that finds the lock held while the pid in the file is gone waits up to kChildGraceMs for it.
/// Not thread-safe; the constructor throws StorageError.
class DataDirLock {
public:
    static constexpr const char* kFile = "lock";
    static constexpr int kChildGraceMs = 2000;

    /// Takes the lock on dir or throws StorageError naming the dir and, when known, the pid
    /// that holds it.
    explicit DataDirLock(const std::string& dir);
    ~DataDirLock();
    DataDirLock(const DataDirLock&) = delete;
    DataDirLock& operator=(const DataDirLock&) = delete;

private:
    int fd_ = -1;
};

}  // namespace replica
