#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark (not a test): a 2 GiB guest that wrote and freed 1200 MiB
# (fill-free,fill=1200M), migrated on loopback with and without free page
# hints, in the same run.  Prints total time, downtime and wire bytes for
# both, the ratios, the wire bytes against the memory the guest uses, and
# the source's LazyFree after MADV_FREE.
#
#   bench/hints_vs_no_hints.sh [REPS]     (default 3; medians are reported)
set -euo pipefail
cd "$(dirname "$0")/.."

reps=${1:-3}
. bench/lib.sh
bench_build

work=$(mktemp -d /tmp/hintmig-hints.XXXXXX)
trap 'quit_all; rm -rf "$work"' EXIT

run() { hintmig_fill_free_run "$1" 0; }

declare -a on_t on_d on_w off_t off_d off_w use lazy
for r in $(seq 1 "$reps"); do
    read -r t d w u l _ < <(run on);  on_t+=("$t"); on_d+=("$d"); on_w+=("$w"); use+=("$u"); lazy+=("$l")
    read -r t d w u l _ < <(run off); off_t+=("$t"); off_d+=("$d"); off_w+=("$w")
    printf 'rep %d: hints %s ms %s B | no hints %s ms %s B\n' "$r" "${on_t[-1]}" \
        "${on_w[-1]}" "${off_t[-1]}" "${off_w[-1]}"
done
ht=$(median "${on_t[@]}"); hd=$(median "${on_d[@]}"); hw=$(median "${on_w[@]}")
nt=$(median "${off_t[@]}"); nd=$(median "${off_d[@]}"); nw=$(median "${off_w[@]}")
iu=$(median "${use[@]}"); lz=$(median "${lazy[@]}")
echo
echo "2 GiB guest, fill-free,fill=1200M (in use: $iu bytes), loopback, median of $reps"
printf '%-12s %10s %12s %14s %14s\n' "" "time ms" "downtime ms" "wire bytes" "wire / in use"
awk -v t="$ht" -v d="$hd" -v w="$hw" -v u="$iu" 'BEGIN { printf "%-12s %10s %12s %14s %14.2f\n", "hints", t, d, w, w / u }'
awk -v t="$nt" -v d="$nd" -v w="$nw" -v u="$iu" 'BEGIN { printf "%-12s %10s %12s %14s %14.2f\n", "no hints", t, d, w, w / u }'
awk -v ht="$ht" -v nt="$nt" -v hw="$hw" -v nw="$nw" 'BEGIN {
    printf "time with hints / without: %.3f (target <= 1)\n", ht / nt
    printf "wire with hints / without: %.3f\n", hw / nw }'
awk -v w="$hw" -v u="$iu" 'BEGIN { printf "wire with hints / in use: %.2f (target <= 1.15)\n", w / u }'
echo "source LazyFree after the hinted migration: $lz kB (MADV_FREE of the hinted pages)"
