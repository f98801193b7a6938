#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark (not a test): the engine's own memory on each side, as
# `info migrate` counts it (bitmaps, send and receive buffers, digest
# tables, codec contexts), for idle guests of each size given, in precopy
# and in postcopy, on loopback.  Prints one table; target: at most 1% of
# guest RAM on each side.
#
#   bench/engine_memory.sh [SIZES]     (default "2G 16G")
set -euo pipefail
cd "$(dirname "$0")/.."

case ${1:-} in -h|--help) sed -n '2,8p' "$0"; exit 0 ;; esac
sizes=${1:-"2G 16G"}
. bench/lib.sh
bench_build
work=${BENCH_DIR:-/tmp/hintmig-bench}
mkdir -p "$work"
trap quit_all EXIT

# run SIZE 0|1(postcopy) -> "src_kib src_pct dst_kib dst_pct"
run() {
    local p; p=$(idle_pair "$1" es ed)
    if [ "$2" = 1 ]; then
        "$hmp" "$work/ed.sock" "migrate_set_capability postcopy-ram on" >/dev/null
        "$hmp" "$work/es.sock" "migrate_set_capability postcopy-ram on" \
            "migrate -d tcp:127.0.0.1:$p" "migrate_start_postcopy" >/dev/null
    else
        "$hmp" "$work/es.sock" "migrate -d tcp:127.0.0.1:$p" >/dev/null
    fi
    local s d
    s=$(wait_done "$work/es.sock")
    d=$(wait_done "$work/ed.sock")
    grep -q '^verify: OK' <<<"$s" || { echo "bench: not verified: $s" >&2; exit 1; }
    sed -n 's/^engine memory: \([0-9]*\) kbytes (\([0-9.]*\)%.*/\1 \2/p' <<<"$s$(echo)$d" |
        tr '\n' ' '
    echo
    quit_all
}

printf '%-6s %-9s %16s %16s\n' "RAM" "mode" "source" "destination"
for size in $sizes; do
    for pc in 0 1; do
        read -r sk sp dk dp < <(run "$size" "$pc")
        printf '%-6s %-9s %9s KiB %4s%% %9s KiB %4s%%\n' "$size" \
            "$([ "$pc" = 1 ] && echo postcopy || echo precopy)" "$sk" "$sp" "$dk" "$dp"
    done
done
echo "target: at most 1% of guest RAM on each side"
