#pragma once

#include <sys/wait.h>

#include <string>

namespace replica {

/// How a forked child (a snapshot writer) ended, for log lines and errors: "killed by signal 9",
/// "exited with 1". One wording for both kinds of snapshot child.
inline std::string childExit(int status) {
    if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
    return "exited with " + std::to_string(WEXITSTATUS(status));
}

}  // namespace replica
