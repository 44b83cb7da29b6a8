#!/usr/bin/env bash
# Installs what the benchmarks need beyond the project itself, only when missing:
#   - Debian packages: etcd-server (3.4), redis-server, wrk (the `peers` and `http` scenarios)
#   - Python: matplotlib (plots) and py-spy (profiles) into .venv
# As root it installs; otherwise it prints the exact commands to run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/debian-packages.sh
# The packaged services must not run on their default ports: the benchmark starts its own
# instances on free loopback ports. policy-rc.d keeps invoke-rc.d from starting them.
restore_policy=0
if [[ $(id -u) == 0 && ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    restore_policy=1
fi
ensure_debian_packages bench-deps etcd-server redis-server wrk
if (( restore_policy )); then rm -f /usr/sbin/policy-rc.d; fi

if [[ -x .venv/bin/python ]]; then
    .venv/bin/python -c "import matplotlib" 2>/dev/null || .venv/bin/pip install -q matplotlib
    [[ -x .venv/bin/py-spy ]] || .venv/bin/pip install -q py-spy
else
    echo "bench-deps: no .venv yet: run scripts/bootstrap.sh first" >&2
    exit 1
fi
echo "bench-deps: etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}'), $(redis-server --version | awk '{print $3}'), wrk, matplotlib, py-spy ready"
