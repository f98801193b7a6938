#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark (not a test): migrate a paused 2 GiB VM whose RAM comes from an
# image (per 4 KiB page: 25% zero, 25% random, 50% text-like) on loopback,
# with hintmig-vm and with Debian's stock QEMU (memory-backend-file,
# share=off, -S, multifd with 2 channels), in the same run.  Prints each
# one's total time and bytes on the wire, and the ratios.
#
# Before every measured migration the script touches and frees 6 GiB
# (bench/warm_memory), so neither tool runs on memory the host has never
# faulted in (a first touch is several times slower here).
#
# Wire bytes are counted the same way for both: the loopback interface's
# transmit counter over the migration (payload plus TCP/IP headers, both
# directions).  Each tool's own counter is printed beside it.
#
#   bench/precopy_vs_qemu.sh [REPS]     (default 3; medians are reported)
set -euo pipefail
cd "$(dirname "$0")/.."

reps=${1:-3}
size=${BENCH_RAM:-2G}
. bench/lib.sh
bench_build qemu

work=${BENCH_DIR:-/tmp/hintmig-bench}
mkdir -p "$work"
img=$work/image-$size
[ -f "$img" ] || build/bench/make_image "$img" "$size"
trap quit_all EXIT

warm() { build/bench/warm_memory "${BENCH_WARM:-6G}"; }

run_hintmig() {
    warm
    local p; p=$(port)
    "$vm" -m "$size" --mem-path "$img" -S -monitor "unix:$work/hs.sock,server,nowait" -daemonize
    "$vm" -m "$size" -S -incoming "tcp:127.0.0.1:$p" \
          -monitor "unix:$work/hd.sock,server,nowait" -daemonize
    # zstd forced: this benchmark's wire target (half of QEMU's) needs it;
    # shaped_link_vs_qemu.sh measures auto, the default.
    "$hmp" "$work/hs.sock" "migrate_set_parameter compress-method zstd" >/dev/null
    local tx0; tx0=$(lo_tx)
    "$hmp" "$work/hs.sock" "migrate -d tcp:127.0.0.1:$p" >/dev/null
    local out; out=$(wait_done "$work/hs.sock")
    local tx1; tx1=$(lo_tx)
    grep -q '^verify: OK' <<<"$out" || { echo "bench: hintmig verify failed" >&2; exit 1; }
    echo "$(field 'total time' <<<"$out") $((tx1 - tx0)) $(( $(field 'wire bytes' <<<"$out") * 1024 ))"
    quit_all
}

run_qemu() {
    warm
    local p; p=$(port)
    qemu_multifd_pair "$img" "$size" none kvm:tcg
    "$hmp" "$work/qd.sock" "migrate_incoming tcp:127.0.0.1:$p" >/dev/null
    local tx0; tx0=$(lo_tx)
    "$hmp" "$work/qs.sock" "migrate -d tcp:127.0.0.1:$p" >/dev/null
    local out; out=$(wait_done "$work/qs.sock")
    local tx1; tx1=$(lo_tx)
    echo "$(field 'total time' <<<"$out") $((tx1 - tx0)) $(( $(field 'transferred ram' <<<"$out") * 1024 ))"
    quit_all
}

declare -a h_t h_w h_own q_t q_w q_own
for r in $(seq 1 "$reps"); do
    read -r t w own < <(run_hintmig); h_t+=("$t"); h_w+=("$w"); h_own+=("$own")
    read -r t w own < <(run_qemu);    q_t+=("$t"); q_w+=("$w"); q_own+=("$own")
    printf 'rep %d: hintmig %s ms %s B | qemu %s ms %s B\n' "$r" "${h_t[-1]}" \
        "${h_w[-1]}" "${q_t[-1]}" "${q_w[-1]}"
done

ht=$(median "${h_t[@]}"); hw=$(median "${h_w[@]}")
qt=$(median "${q_t[@]}"); qw=$(median "${q_w[@]}")
ho=$(median "${h_own[@]}"); qo=$(median "${q_own[@]}")
echo
echo "paused $size VM from an image (25% zero, 25% random, 50% text), loopback, median of $reps"
printf '%-26s %10s %16s %18s\n' "" "time ms" "wire bytes (lo)" "own counter bytes"
printf '%-26s %10s %16s %18s\n' "hintmig (zstd, verify on)" "$ht" "$hw" "$ho"
printf '%-26s %10s %16s %18s\n' "QEMU 7.2 multifd x2" "$qt" "$qw" "$qo"
awk -v ht="$ht" -v qt="$qt" -v hw="$hw" -v qw="$qw" 'BEGIN {
    printf "time ratio hintmig/QEMU: %.3f (target <= 0.333)\n", ht / qt
    printf "wire ratio hintmig/QEMU: %.3f (target <= 0.500)\n", hw / qw }'
