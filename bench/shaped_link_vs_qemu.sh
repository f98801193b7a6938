#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark (not a test): the paused VM of bench/precopy_vs_qemu.sh (RAM
# from an image: per 4 KiB page 25% zero, 25% random, 50% text-like) over
# emulated links (bench/link.sh: two network namespaces, a veth pair, tc
# tbf both ways), hintmig (compress-method auto, the default) against
# Debian's QEMU 7.2 with multifd x2 and compression none, then zstd, all
# in the same run; on the unshaped veth also hintmig with compress-method
# none (auto must not be slower).  hintmig runs with one connection and
# with two (multifd-channels 2, as QEMU's multifd x2).
#
# Per row: time, bytes on the link (both ends' tx counters: payload and
# TCP/IP headers), the link's floor (those bytes at the link's rate) and
# the ratios: hintmig's time against the faster QEMU run and against its
# own floor.  Medians of REPS runs, interleaved.
#
#   bench/shaped_link_vs_qemu.sh [REPS] [RATES]
#     REPS   default 3
#     RATES  default "1gbit 10gbit none" (none: the veth unshaped)
#   BENCH_RAM=2G, BENCH_DIR=/tmp/hintmig-bench, BENCH_WARM=6G
set -euo pipefail
cd "$(dirname "$0")/.."

case ${1:-} in -h|--help) sed -n '2,19p' "$0"; exit 0 ;; esac
reps=${1:-3}
rates=${2:-"1gbit 10gbit none"}
size=${BENCH_RAM:-2G}
[ "$(id -u)" = 0 ] || { echo "shaped_link_vs_qemu: needs root (network namespaces)" >&2; exit 1; }
. bench/lib.sh
. bench/link.sh
bench_build qemu

work=${BENCH_DIR:-/tmp/hintmig-bench}
mkdir -p "$work"
img=$work/image-$size
[ -f "$img" ] || build/bench/make_image "$img" "$size"
trap 'quit_all; link_down' EXIT

warm() { build/bench/warm_memory "${BENCH_WARM:-6G}" >/dev/null; }
dst_port=4444

# run_hintmig auto|none [CHANNELS] -> "time_ms link_bytes"; the choice line on stderr
run_hintmig() {
    warm
    in_src "$vm" -m "$size" --mem-path "$img" -S \
        -monitor "unix:$work/hs.sock,server,nowait" -daemonize
    in_dst "$vm" -m "$size" -S -incoming "tcp:$LINK_DST_IP:$dst_port" \
        -monitor "unix:$work/hd.sock,server,nowait" -daemonize
    "$hmp" "$work/hs.sock" "migrate_set_parameter compress-method $1" \
        "migrate_set_parameter multifd-channels ${2:-1}" >/dev/null
    local tx0; tx0=$(link_tx)
    "$hmp" "$work/hs.sock" "migrate -d tcp:$LINK_DST_IP:$dst_port" >/dev/null
    local out; out=$(wait_done "$work/hs.sock")
    local tx1; tx1=$(link_tx)
    grep -q '^verify: OK' <<<"$out" || { echo "bench: hintmig verify failed" >&2; exit 1; }
    grep '^compression' <<<"$out" | sed "s/^/  $1: /" >&2
    echo "$(field 'total time' <<<"$out") $((tx1 - tx0))"
    quit_all
}

# run_qemu none|zstd -> "time_ms link_bytes"
run_qemu() {
    warm
    qemu_multifd_pair "$img" "$size" "$1" tcg in_src in_dst
    "$hmp" "$work/qd.sock" "migrate_incoming tcp:$LINK_DST_IP:$dst_port" >/dev/null
    local tx0; tx0=$(link_tx)
    "$hmp" "$work/qs.sock" "migrate -d tcp:$LINK_DST_IP:$dst_port" >/dev/null
    local out; out=$(wait_done "$work/qs.sock")
    local tx1; tx1=$(link_tx)
    echo "$(field 'total time' <<<"$out") $((tx1 - tx0))"
    quit_all
}

rows=()
for rate in $rates; do
    link_up "$rate"
    bps=$(link_bps)
    declare -a h_t=() h_w=() n_t=() n_w=() z_t=() z_w=() r_t=() r_w=() m_t=() m_w=()
    for r in $(seq 1 "$reps"); do
        read -r t w < <(run_hintmig auto); h_t+=("$t"); h_w+=("$w")
        read -r t w < <(run_qemu none);    n_t+=("$t"); n_w+=("$w")
        read -r t w < <(run_qemu zstd);    z_t+=("$t"); z_w+=("$w")
        read -r t w < <(run_hintmig auto 2); m_t+=("$t"); m_w+=("$w")
        printf '%s rep %d: hintmig %s ms %s B | qemu none %s ms %s B | qemu zstd %s ms %s B | hintmig x2 %s ms %s B\n' \
            "$rate" "$r" "${h_t[-1]}" "${h_w[-1]}" "${n_t[-1]}" "${n_w[-1]}" \
            "${z_t[-1]}" "${z_w[-1]}" "${m_t[-1]}" "${m_w[-1]}"
        if [ "$rate" = none ]; then
            read -r t w < <(run_hintmig none); r_t+=("$t"); r_w+=("$w")
            printf '%s rep %d: hintmig compress-method none %s ms %s B\n' "$rate" "$r" \
                "${r_t[-1]}" "${r_w[-1]}"
        fi
    done
    link_down
    rows+=("$rate hintmig $(median "${h_t[@]}") $(median "${h_w[@]}") $bps")
    rows+=("$rate qemu-none $(median "${n_t[@]}") $(median "${n_w[@]}") $bps")
    rows+=("$rate qemu-zstd $(median "${z_t[@]}") $(median "${z_w[@]}") $bps")
    rows+=("$rate hintmig-x2 $(median "${m_t[@]}") $(median "${m_w[@]}") $bps")
    if [ "$rate" = none ]; then
        rows+=("$rate hintmig-none $(median "${r_t[@]}") $(median "${r_w[@]}") $bps")
    fi
done

echo
echo "paused $size VM from an image (25% zero, 25% random, 50% text), median of $reps"
printf '%s\n' "${rows[@]}" | awk '
    { rate[NR] = $1; who[NR] = $2; t[NR] = $3; w[NR] = $4; bps[NR] = $5
      if (who[NR] ~ /^qemu/ && (!(rate[NR] in best) || $3 < best[rate[NR]])) best[rate[NR]] = $3
      if (who[NR] == "hintmig") auto[rate[NR]] = $3 }
    END {
        printf "%-8s %-24s %9s %14s %10s %12s %12s\n", "link", "", "time ms",
               "link bytes", "floor ms", "t/QEMU best", "t/floor"
        for (j = 1; j <= NR; j++) {
            floor = bps[j] ? w[j] * 8 * 1000 / bps[j] : 0
            if (who[j] == "hintmig") name = "hintmig (auto, verify)"
            else if (who[j] == "hintmig-none") name = "hintmig (none, verify)"
            else if (who[j] == "hintmig-x2") name = "hintmig (auto, 2 conns)"
            else if (who[j] == "qemu-none") name = "QEMU multifd x2 none"
            else name = "QEMU multifd x2 zstd"
            printf "%-8s %-24s %9d %14d %10s %12.2f %12s\n", rate[j], name, t[j], w[j],
                   floor ? sprintf("%.0f", floor) : "-", t[j] / best[rate[j]],
                   floor ? sprintf("%.2f", t[j] / floor) : "-"
            if (who[j] == "hintmig-none")
                printf "%-8s %-24s auto / none = %.2f\n", rate[j], "", auto[rate[j]] / t[j]
            if (who[j] == "hintmig-x2")
                printf "%-8s %-24s 2 conns / 1 = %.2f\n", rate[j], "", t[j] / auto[rate[j]]
        }
        print "targets: on shaped links hintmig t/QEMU best <= 0.50 and t/floor <= 1.50;"
        print "unshaped, t/QEMU best <= 1.00, and auto no slower than none"
    }'
