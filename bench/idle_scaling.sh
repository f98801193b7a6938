#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark (not a test): idle guests of growing RAM (a few MB in use),
# precopy on loopback, verification on: total time, downtime, wire bytes
# and the engine's memory on each side, medians of REPS runs, one table.
# Target (issue 9): the 16 GiB idle guest in at most 1 s with at most
# 50 ms of downtime: costs follow the memory in use, not the address space.
#
#   bench/idle_scaling.sh [REPS] [SIZES]     (default 3, "2G 8G 16G")
set -euo pipefail
cd "$(dirname "$0")/.."

case ${1:-} in -h|--help) sed -n '2,9p' "$0"; exit 0 ;; esac
reps=${1:-3}
sizes=${2:-"2G 8G 16G"}
. bench/lib.sh
bench_build
work=${BENCH_DIR:-/tmp/hintmig-bench}
mkdir -p "$work"
trap quit_all EXIT

# run SIZE -> "total_ms downtime_ms wire_kib src_mem_kib dst_mem_kib"
run() {
    local p; p=$(idle_pair "$1" is id)
    "$hmp" "$work/is.sock" "migrate -d tcp:127.0.0.1:$p" >/dev/null
    local s d
    s=$(wait_done "$work/is.sock")
    d=$(wait_done "$work/id.sock")
    grep -q '^verify: OK' <<<"$s" || { echo "bench: not verified: $s" >&2; exit 1; }
    echo "$(field 'total time' <<<"$s") $(field 'downtime' <<<"$s")" \
         "$(field 'wire bytes' <<<"$s") $(field 'engine memory' <<<"$s")" \
         "$(field 'engine memory' <<<"$d")"
    quit_all
}

printf '%-6s %10s %10s %12s %14s %14s\n' "RAM" "total ms" "downtime" "wire MB" \
    "source mem" "dest mem"
for size in $sizes; do
    t=() dt=() w=() sm=() dm=()
    for _ in $(seq 1 "$reps"); do
        read -r a b c e f < <(run "$size")
        t+=("$a") dt+=("$b") w+=("$c") sm+=("$e") dm+=("$f")
    done
    awk -v s="$size" -v t="$(median "${t[@]}")" -v d="$(median "${dt[@]}")" \
        -v w="$(median "${w[@]}")" -v a="$(median "${sm[@]}")" -v b="$(median "${dm[@]}")" \
        'BEGIN { printf "%-6s %10d %10d %12.1f %10.1f MiB %10.1f MiB\n", s, t, d,
                 w / 1024, a / 1024, b / 1024 }'
done
echo "target: 16 GiB idle in at most 1000 ms total, at most 50 ms downtime"
