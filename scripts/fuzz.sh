#!/usr/bin/env bash
# Builds and runs the libFuzzer targets in fuzz/ (clang, ASan + UBSan).
#
#   scripts/fuzz.sh build                  build every target into build/fuzz/
#   scripts/fuzz.sh TARGET SECONDS [ARGS]  fuzz TARGET for SECONDS, growing fuzz/corpus/TARGET
#   scripts/fuzz.sh replay [TARGET]        run the kept corpus and crash reproducers once
#                                          (regression test; exits non-zero on any failure)
#   scripts/fuzz.sh list                   print the target names
#
# Targets: frame_reader, apply, snapshot, dispatch, client_frame (see docs/security.md). A crash is written to
# fuzz/crashes/TARGET/; keep it there once fixed, so `replay` proves the fix forever.
# Needs clang-14 and libclang-rt-14-dev: installed here when missing (as root; otherwise the
# exact command is printed). Extra ARGS go to libFuzzer (e.g. -jobs=2 -workers=2).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(frame_reader apply snapshot dispatch client_frame)
BUILD_DIR="${FUZZ_BUILD_DIR:-build/fuzz}"
CXX="${FUZZ_CXX:-clang++-14}"

source scripts/debian-packages.sh
ensure_clang() {
    ensure_debian_packages fuzz clang-14 libclang-rt-14-dev cmake libmsgpack-cxx-dev \
        libxxhash-dev libssl-dev
}

# The replica sources each target links (no Python, no CMake needed). Globs, so a new class in
# one of these layers is picked up without editing this script.
CORE_SOURCES=(cpp_replica/codec/*.cc cpp_replica/core/*.cc cpp_replica/coordinator/*.cc)
SERVER_SOURCES=(cpp_replica/server/*.cc cpp_replica/storage/*.cc)
CXXFLAGS=(-std=c++17 -g -O1 -fno-omit-frame-pointer -Wall -Wextra
          -fsanitize=address,undefined -fno-sanitize-recover=undefined
          -DMSGPACK_NO_BOOST -DMSGPACK_DEFAULT_API_VERSION=3 -Icpp_replica)

# Compiles one source to an object when the source (or any replica header) is newer.
compile() {
    local src=$1 obj=$2 extra=$3
    if [[ ! -f $obj || $src -nt $obj || -n $(find cpp_replica -name '*.h' -newer "$obj" -print -quit) ]]; then
        mkdir -p "$(dirname "$obj")"
        "$CXX" "${CXXFLAGS[@]}" "$extra" -c "$src" -o "$obj"
    fi
}

build_target() {
    local t=$1 objs=() src
    local sources=("${CORE_SOURCES[@]}")
    [[ $t == dispatch ]] && sources+=("${SERVER_SOURCES[@]}")
    for src in "${sources[@]}"; do
        [[ $src == */main.cc ]] && continue
        compile "$src" "$BUILD_DIR/obj/${src%.cc}.o" -fsanitize=fuzzer-no-link
        objs+=("$BUILD_DIR/obj/${src%.cc}.o")
    done
    compile "fuzz/${t}_fuzz.cc" "$BUILD_DIR/obj/fuzz/${t}_fuzz.o" -fsanitize=fuzzer-no-link
    "$CXX" "${CXXFLAGS[@]}" -fsanitize=fuzzer "$BUILD_DIR/obj/fuzz/${t}_fuzz.o" "${objs[@]}" \
        -lxxhash -lcrypto -lpthread -o "$BUILD_DIR/${t}_fuzz"
}

valid_target() {
    local t
    for t in "${TARGETS[@]}"; do [[ $t == "$1" ]] && return 0; done
    echo "fuzz: unknown target '$1' (targets: ${TARGETS[*]})" >&2
    exit 2
}

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# The dispatch target leaks its server on purpose (it runs until exit).
leak_opts() { [[ $1 == dispatch ]] && echo "-detect_leaks=0" || echo "-detect_leaks=1"; }

case "${1:-}" in
    ""|-h|--help)
        sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
        exit 0 ;;
    list)
        printf '%s\n' "${TARGETS[@]}"
        exit 0 ;;
    build)
        ensure_clang
        for t in "${TARGETS[@]}"; do build_target "$t"; done
        echo "fuzz: built ${TARGETS[*]} in $BUILD_DIR" ;;
    replay)
        ensure_clang
        shift
        targets=("${@:-${TARGETS[@]}}")
        status=0
        for t in "${targets[@]}"; do
            valid_target "$t"
            build_target "$t"
            inputs=()
            for d in "fuzz/corpus/$t" "fuzz/crashes/$t"; do
                [[ -d $d ]] && while IFS= read -r f; do inputs+=("$f"); done \
                    < <(find "$d" -type f ! -name '.*' ! -name '*.md' | sort)
            done
            if (( ${#inputs[@]} == 0 )); then echo "fuzz: $t: nothing to replay"; continue; fi
            echo "fuzz: $t: replaying ${#inputs[@]} inputs"
            "$BUILD_DIR/${t}_fuzz" "$(leak_opts "$t")" -rss_limit_mb=2048 "${inputs[@]}" \
                > "$BUILD_DIR/${t}_replay.log" 2>&1 || { status=1; tail -n 60 "$BUILD_DIR/${t}_replay.log"; }
        done
        exit $status ;;
    *)
        t=$1
        seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer args]}
        shift 2
        valid_target "$t"
        ensure_clang
        build_target "$t"
        mkdir -p "fuzz/corpus/$t" "fuzz/crashes/$t" "$BUILD_DIR/work/$t"
        # New inputs go to a scratch dir first; `-merge` then keeps only those that add coverage,
        # so the committed corpus stays small.
        status=0
        "$BUILD_DIR/${t}_fuzz" "$(leak_opts "$t")" -max_total_time="$seconds" -rss_limit_mb=2048 \
            -timeout=20 -print_final_stats=1 -artifact_prefix="fuzz/crashes/$t/" \
            "$@" "$BUILD_DIR/work/$t" "fuzz/corpus/$t" || status=$?
        "$BUILD_DIR/${t}_fuzz" "$(leak_opts "$t")" -merge=1 "fuzz/corpus/$t" "$BUILD_DIR/work/$t" \
            > "$BUILD_DIR/${t}_merge.log" 2>&1 || true
        exit $status ;;
esac
