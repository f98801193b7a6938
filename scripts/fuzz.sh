#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Builds the fuzz harnesses (tests/fuzz/) with clang, libFuzzer, ASan and
# UBSan in build-fuzz/, and runs each in turn, one at a time, from its seed
# corpus and regression inputs.
#   scripts/fuzz.sh [--runs N] [--time SECONDS] [--jobs J] [--only NAME[,NAME...]]
#     --runs N        stop each harness after N executions (in all, with --jobs)
#     --time SECONDS  stop each harness after SECONDS (default 60 when
#                     neither is given; with both, whichever comes first)
#     --jobs J        run J processes of each harness at once, sharing one
#                     corpus (libFuzzer reloads it), each with N/J runs;
#                     the line sums their executions and rates (default 1)
#     --only NAMES    run only these harnesses (e.g. --only wire,receiver)
#     --list          print the harnesses' names and exit
# Prints one line per harness (executions, rate, libFuzzer's cov and ft,
# result) and a summary; exits 1 if any harness crashed, leaked, hung or
# had a sanitizer report.  Everything it writes (the growing corpora,
# crash inputs, logs) stays in build-fuzz/fuzz/<harness>/.  Installs clang
# and its runtimes with apt-get when they are missing (Debian 12, root).
set -euo pipefail
cd "$(dirname "$0")/.."

harnesses=(wire runs page_batch receiver multifd device_state vmstate_file hmp virtqueue balloon)
builddir=build-fuzz
runs="" secs="" only="" jobs=1

usage() { sed -n '3,19p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=${2:?--runs needs a number}; shift 2 ;;
        --time) secs=${2:?--time needs seconds}; shift 2 ;;
        --only) only=${2:?--only needs names}; shift 2 ;;
        --jobs) jobs=${2:?--jobs needs a number}; shift 2 ;;
        --list) printf '%s\n' "${harnesses[@]}"; exit 0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "fuzz.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
done
for v in "$runs" "$secs" "$jobs"; do
    [[ -z "$v" || "$v" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: '$v' is not a number" >&2; exit 2; }
done
[ -n "$runs$secs" ] || secs=60
[ "$jobs" -ge 1 ] || { echo "fuzz.sh: --jobs must be at least 1" >&2; exit 2; }
if [ -n "$only" ]; then
    IFS=, read -r -a picked <<< "$only"
    for h in "${picked[@]}"; do
        [[ " ${harnesses[*]} " == *" $h "* ]] || {
            echo "fuzz.sh: no harness '$h' (try --list)" >&2; exit 2; }
    done
    harnesses=("${picked[@]}")
fi

# clang, and compiler-rt's libFuzzer and sanitizer runtimes.
fuzzer_rt() { clang -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null; }
if ! command -v clang >/dev/null || [ ! -f "$(fuzzer_rt)" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "fuzz.sh: need root to apt-get install clang libclang-rt-14-dev" >&2
        exit 1
    fi
    echo "fuzz.sh: installing clang and its runtimes"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null
fi
scripts/install-deps.sh

if [ ! -f "$builddir/build.ninja" ]; then
    CC=clang meson setup "$builddir" -Dfuzzing=true -Dtests=false \
        -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized \
        -Dc_args=-fno-sanitize-recover=all -Dc_link_args=-fno-sanitize-recover=all \
        >/dev/null
fi
targets=()
for h in "${harnesses[@]}"; do targets+=("tests/fuzz/fuzz_$h"); done
# A harness added since the last setup is a target only once meson has
# regenerated: ninja does that first when a meson.build changed.
ninja -C "$builddir" build.ninja >/dev/null
meson compile -C "$builddir" "${targets[@]}" >/dev/null

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Inputs whose cost grows with their length (a stream, many monitor lines)
# are capped, or most of the time goes into long inputs, not more inputs.
max_len() {
    case "$1" in
        receiver|multifd) echo 16384 ;;
        hmp) echo 1024 ;;
    esac
}

printf '%-13s %12s %9s %6s %7s %7s  %s\n' harness executions exec/s cov ft time result
failed=0
for h in "${harnesses[@]}"; do
    work=$builddir/fuzz/$h
    mkdir -p "$work/corpus" "$work/artifacts"
    opts=(-print_final_stats=1 -timeout=30 "-artifact_prefix=$work/artifacts/")
    [ -n "$runs" ] && opts+=("-runs=$(( (runs + jobs - 1) / jobs ))")
    [ -n "$secs" ] && opts+=("-max_total_time=$secs")
    [ -n "$(max_len "$h")" ] && opts+=("-max_len=$(max_len "$h")")
    dirs=("$work/corpus" "tests/fuzz/corpus/$h")
    [ -d "tests/fuzz/regressions/$h" ] && dirs+=("tests/fuzz/regressions/$h")
    t0=$(date +%s)
    rc=0 pids=() logs=()
    rm -f "$work"/last*.log
    for j in $(seq 1 "$jobs"); do
        log=$work/last.log
        [ "$jobs" -gt 1 ] && log=$work/last.$j.log
        logs+=("$log")
        "$builddir/tests/fuzz/fuzz_$h" "${opts[@]}" "${dirs[@]}" >"$log" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || rc=$?
    done
    t=$(( $(date +%s) - t0 ))
    log=${logs[0]}
    execs=$(awk '/stat::number_of_executed_units/ { n += $2; seen = 1 } END { if (seen) print n }' "${logs[@]}")
    rate=$(awk '/stat::average_exec_per_sec/ { n += $2; seen = 1 } END { if (seen) print n }' "${logs[@]}")
    cov=$(cat "${logs[@]}" | grep -Eo 'cov: [0-9]+' | cut -d' ' -f2 | sort -n | tail -1)
    ft=$(cat "${logs[@]}" | grep -Eo 'ft: [0-9]+' | cut -d' ' -f2 | sort -n | tail -1)
    reports=$(cat "${logs[@]}" | grep -Ec 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|check failed' || true)
    if [ "$rc" -eq 0 ] && [ "$reports" -eq 0 ]; then
        result=ok
    else
        failed=$((failed + 1))
        what=$(cat "${logs[@]}" | grep -Eo 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [a-z-]+|runtime error: .*|check failed: .*' | head -1)
        art=$(cat "${logs[@]}" | grep -Eo "Test unit written to [^ ]+" | head -1 | cut -d' ' -f5)
        result="FAILED: ${what:-exit status $rc}${art:+ ($art)}; log $log"
    fi
    printf '%-13s %12s %9s %6s %7s %6ss  %s\n' "$h" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
        "${ft:-?}" "$t" "$result"
done
echo "fuzz: ${#harnesses[@]} harnesses, $failed failed"
[ "$failed" -eq 0 ]
