#!/usr/bin/env bash
# Builds an AddressSanitizer + UBSan copy of replica_server (plain CMake, its own build dir, no
# Python module) and runs the core process tests against it. Usage: scripts/sanitize.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${SANITIZE_BUILD_DIR:-build/sanitize}"
[[ $BUILD_DIR == /* ]] || BUILD_DIR="$PWD/$BUILD_DIR"  # relative to the repo, or absolute
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Debug -DREPLICA_SANITIZE=ON -DREPLICA_BUILD_MODULE=OFF >/dev/null
cmake --build "$BUILD_DIR" -j2 --target replica_server
export REPLICA_SERVER_BIN="$BUILD_DIR/replica_server"
# halt_on_error: any report fails the server, which the tests then see as a crash.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
exec .venv/bin/python -m pytest tests/core/test_replica_process.py tests/core/test_state_transfer.py tests/core/test_replica_robustness.py \
    tests/core/test_background_snapshot.py tests/core/test_snapshot_export.py tests/core/test_batched_acks.py -q "$@"
