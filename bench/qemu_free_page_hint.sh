#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark (not a test): stock QEMU's own free-page-hint on the fill-free
# shape, as the baseline for bench/hints_vs_no_hints.sh.  A 2 GiB, 2-vCPU
# Linux guest (bench/linux-guest: Debian's cloud kernel, virtio_balloon)
# writes 1200 MiB into tmpfs, deletes it and idles; it is migrated on
# loopback with virtio-balloon free-page-hint=on and =off.  Prints total
# time and wire bytes (loopback counter, as for hintmig) for both, against
# the memory the guest uses (MemTotal - MemFree).  The guest runs under
# TCG (see accel below); the migration itself is QEMU's native code.
#   bench/qemu_free_page_hint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_build qemu
work=${BENCH_DIR:-/tmp/hintmig-qemu-fph}
mkdir -p "$work"
bench/linux-guest/build.sh "$work/guest"
trap quit_all EXIT

run() { qemu_fill_free_run "$1" 0; }

read -r t_on w_on u_on < <(run on)
read -r t_off w_off u_off < <(run off)
echo "QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'), Linux guest under ${BENCH_ACCEL:-tcg}, 2 GiB, 1200 MiB written and freed"
printf '%-16s %10s %14s %12s %14s\n' "" "time ms" "wire bytes" "in use" "wire / in use"
awk -v t="$t_on" -v w="$w_on" -v u="$u_on" 'BEGIN { printf "%-16s %10s %14s %12s %14.2f\n", "free-page-hint", t, w, u, w / u }'
awk -v t="$t_off" -v w="$w_off" -v u="$u_off" 'BEGIN { printf "%-16s %10s %14s %12s %14.2f\n", "no hints", t, w, u, w / u }'
awk -v a="$t_on" -v b="$t_off" -v c="$w_on" -v d="$w_off" 'BEGIN {
    printf "time hints / no hints: %.3f, wire hints / no hints: %.3f\n", a / b, c / d }'
