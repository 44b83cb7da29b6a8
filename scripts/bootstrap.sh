#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine and builds it:
# Debian packages (when missing), a virtual environment in .venv, the Python package with its
# C++ core (replica_server and the pybind11 module). Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(cmake g++ libmsgpack-cxx-dev libxxhash-dev libssl-dev python3-venv)
if [[ "${WITH_BROWSER:-0}" == 1 ]]; then APT_PACKAGES+=(chromium); fi
if [[ "${WITH_SANITIZERS:-0}" == 1 ]]; then APT_PACKAGES+=(clang libclang-rt-14-dev); fi

source scripts/debian-packages.sh
ensure_debian_packages bootstrap "${APT_PACKAGES[@]}"

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
# Build requirements are installed into the venv so rebuilds can skip build isolation
# and reuse the CMake build directory (incremental C++ builds).
.venv/bin/pip install -q "scikit-build-core>=0.10" "pybind11>=2.12"
extras="${EXTRAS:-}"
# Editable: Python sources are used in place; rerun after changing C++ to rebuild it.
.venv/bin/pip install -q --no-build-isolation -e ".${extras:+[$extras]}"
