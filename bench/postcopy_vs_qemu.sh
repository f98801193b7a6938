#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark (not a test): postcopy on the fill-free shape, hintmig against
# stock QEMU, in the same run.  Both guests have 2 GiB and 2 vCPUs, wrote
# 1200 MiB and freed it, and have virtio-balloon free-page-hint=on; both
# sides set postcopy-ram and switch to postcopy at once (migrate -d, then
# migrate_start_postcopy).  hintmig runs its synthetic guest; QEMU a Linux
# guest under TCG (bench/linux-guest).  Prints total time and loopback
# bytes (both directions, headers included, the same counter for both)
# against the memory each guest uses.
#
#   bench/postcopy_vs_qemu.sh [REPS]     (default 3; medians are reported)
set -euo pipefail
cd "$(dirname "$0")/.."

reps=${1:-3}
. bench/lib.sh
bench_build qemu
work=${BENCH_DIR:-/tmp/hintmig-postcopy-qemu}
mkdir -p "$work"
bench/linux-guest/build.sh "$work/guest"
trap quit_all EXIT

declare -a ht hd hw hu hl qt qw qu
for r in $(seq 1 "$reps"); do
    read -r t d w u _ l < <(hintmig_fill_free_run on 1)
    ht+=("$t"); hd+=("$d"); hw+=("$w"); hu+=("$u"); hl+=("$l")
    read -r t w u < <(qemu_fill_free_run on 1)
    qt+=("$t"); qw+=("$w"); qu+=("$u")
    printf 'rep %d: hintmig %s ms %s B | QEMU %s ms %s B\n' "$r" "${ht[-1]}" \
        "${hl[-1]}" "${qt[-1]}" "${qw[-1]}"
done
a_t=$(median "${ht[@]}"); a_d=$(median "${hd[@]}"); a_w=$(median "${hw[@]}")
a_u=$(median "${hu[@]}"); a_l=$(median "${hl[@]}")
b_t=$(median "${qt[@]}"); b_w=$(median "${qw[@]}"); b_u=$(median "${qu[@]}")
echo
echo "postcopy, 2 GiB guest, 1200 MiB written and freed, free-page-hint=on, median of $reps"
echo "QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}') with a Linux guest under ${BENCH_ACCEL:-tcg}"
printf '%-10s %10s %16s %12s %16s\n' "" "time ms" "loopback bytes" "in use" "loopback/in use"
awk -v t="$a_t" -v w="$a_l" -v u="$a_u" 'BEGIN { printf "%-10s %10s %16s %12s %16.2f\n", "hintmig", t, w, u, w / u }'
awk -v t="$b_t" -v w="$b_w" -v u="$b_u" 'BEGIN { printf "%-10s %10s %16s %12s %16.2f\n", "QEMU", t, w, u, w / u }'
echo "hintmig downtime: $a_d ms; hintmig's own wire count: $a_w bytes ($(awk -v w="$a_w" -v u="$a_u" 'BEGIN { printf "%.2f", w / u }') x in use, target <= 1.15)"
awk -v a="$a_t" -v b="$b_t" -v c="$a_l" -v d="$b_w" 'BEGIN {
    printf "hintmig / QEMU: time %.3f, loopback bytes %.3f\n", a / b, c / d }'
