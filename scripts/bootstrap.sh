#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine and builds it:
# Debian packages (when missing), a virtual environment in .venv, the Python package with its
# C++ core (replica_server and the pybind11 module). Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(cmake g++ libmsgpack-cxx-dev libxxhash-dev libssl-dev)
if [[ "${WITH_BROWSER:-0}" == 1 ]]; then APT_PACKAGES+=(chromium); fi
if [[ "${WITH_SANITIZERS:-0}" == 1 ]]; then APT_PACKAGES+=(clang libclang-rt-14-dev); fi

# The interpreter of a new venv: $PYTHON if set, else Debian's python3.11, else the first
# python3 on PATH. Debian builds its interpreter with PGO and LTO; a python3 built from source
# without --enable-optimizations (pyenv's default) runs the coordinator's write path about
# 10-15% slower (docs/benchmarks.md, "The interpreter"). An existing .venv is kept: remove it to
# switch. Debian's interpreter needs its own venv and header packages (the module is built
# against it); they are named by version, as python3-venv may mean another Python.
python=""
if [[ ! -x .venv/bin/python ]]; then
    python=${PYTHON:-}
    if [[ -z $python ]]; then
        python=python3
        if [[ -x /usr/bin/python3.11 ]]; then python=/usr/bin/python3.11; fi
    fi
fi
case $python in
    /usr/bin/python3.11) APT_PACKAGES+=(python3.11-venv python3.11-dev) ;;
    python3) APT_PACKAGES+=(python3-venv) ;;
esac

source scripts/debian-packages.sh
ensure_debian_packages bootstrap "${APT_PACKAGES[@]}"

if [[ -n $python ]]; then
    "$python" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
# Build requirements are installed into the venv so rebuilds can skip build isolation
# and reuse the CMake build directory (incremental C++ builds).
.venv/bin/pip install -q "scikit-build-core>=0.10" "pybind11>=2.12"
extras="${EXTRAS:-}"
# Editable: Python sources are used in place; rerun after changing C++ to rebuild it.
.venv/bin/pip install -q --no-build-isolation -e ".${extras:+[$extras]}"
