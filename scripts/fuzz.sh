#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Builds the fuzz harnesses (tests/fuzz/) with clang, libFuzzer, ASan and
# UBSan in build-fuzz/, and runs each in turn, one at a time, from its seed
# corpus and regression inputs.
#   scripts/fuzz.sh [--runs N] [--time SECONDS] [--only NAME[,NAME...]]
#     --runs N        stop each harness after N executions
#     --time SECONDS  stop each harness after SECONDS (default 60 when
#                     neither is given; with both, whichever comes first)
#     --only NAMES    run only these harnesses (e.g. --only wire,receiver)
#     --list          print the harnesses' names and exit
# Prints one line per harness (executions, rate, libFuzzer's cov and ft,
# result) and a summary; exits 1 if any harness crashed, leaked, hung or
# had a sanitizer report.  Everything it writes (the growing corpora,
# crash inputs, logs) stays in build-fuzz/fuzz/<harness>/.  Installs clang
# and its runtimes with apt-get when they are missing (Debian 12, root).
set -euo pipefail
cd "$(dirname "$0")/.."

harnesses=(wire runs page_batch receiver device_state vmstate_file hmp virtqueue balloon)
builddir=build-fuzz
runs="" secs="" only=""

usage() { sed -n '3,16p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=${2:?--runs needs a number}; shift 2 ;;
        --time) secs=${2:?--time needs seconds}; shift 2 ;;
        --only) only=${2:?--only needs names}; shift 2 ;;
        --list) printf '%s\n' "${harnesses[@]}"; exit 0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "fuzz.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
done
for v in "$runs" "$secs"; do
    [[ -z "$v" || "$v" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: '$v' is not a number" >&2; exit 2; }
done
[ -n "$runs$secs" ] || secs=60
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
meson compile -C "$builddir" "${targets[@]}" >/dev/null

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Inputs whose cost grows with their length (a stream, many monitor lines)
# are capped, or most of the time goes into long inputs, not more inputs.
max_len() {
    case "$1" in
        receiver) echo 16384 ;;
        hmp) echo 1024 ;;
    esac
}

printf '%-13s %12s %9s %6s %7s %7s  %s\n' harness executions exec/s cov ft time result
failed=0
for h in "${harnesses[@]}"; do
    work=$builddir/fuzz/$h
    mkdir -p "$work/corpus" "$work/artifacts"
    log=$work/last.log
    opts=(-print_final_stats=1 -timeout=30 "-artifact_prefix=$work/artifacts/")
    [ -n "$runs" ] && opts+=("-runs=$runs")
    [ -n "$secs" ] && opts+=("-max_total_time=$secs")
    [ -n "$(max_len "$h")" ] && opts+=("-max_len=$(max_len "$h")")
    dirs=("$work/corpus" "tests/fuzz/corpus/$h")
    [ -d "tests/fuzz/regressions/$h" ] && dirs+=("tests/fuzz/regressions/$h")
    t0=$(date +%s)
    rc=0
    "$builddir/tests/fuzz/fuzz_$h" "${opts[@]}" "${dirs[@]}" >"$log" 2>&1 || rc=$?
    t=$(( $(date +%s) - t0 ))
    execs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log" | tail -1)
    rate=$(awk '/stat::average_exec_per_sec/ { print $2 }' "$log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -Eo 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    reports=$(grep -Ec 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|check failed' "$log" || true)
    if [ "$rc" -eq 0 ] && [ "$reports" -eq 0 ]; then
        result=ok
    else
        failed=$((failed + 1))
        what=$(grep -Eo 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [a-z-]+|runtime error: .*|check failed: .*' "$log" | head -1)
        art=$(grep -Eo "Test unit written to [^ ]+" "$log" | head -1 | cut -d' ' -f5)
        result="FAILED: ${what:-exit status $rc}${art:+ ($art)}; log $log"
    fi
    printf '%-13s %12s %9s %6s %7s %6ss  %s\n' "$h" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
        "${ft:-?}" "$t" "$result"
done
echo "fuzz: ${#harnesses[@]} harnesses, $failed failed"
[ "$failed" -eq 0 ]
