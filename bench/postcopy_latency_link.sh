#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark (not a test): postcopy's remote faults over an emulated link
# (bench/link.sh: two network namespaces, a veth pair, tc tbf both ways)
# against a bare 4 KiB request and answer over the same link, in the same
# run.
#
# Bare: build/bench/page_exchange asks 12 bytes and reads 4 KiB back, one
# at a time, from the destination's namespace to the source's.  Remote: a
# 512 MiB guest writing its 256 MiB working set (churn) is switched to
# postcopy at once, source in one namespace and destination in the other,
# the background push uncapped on the same link; the destination's "info
# migrate" times each remote fault from reading it to the page being
# placed.  Target: remote p99 within 1.5x of the bare exchange's p99.
#
#   bench/postcopy_latency_link.sh [REPS] [RATE]   (default 3, 10gbit)
set -euo pipefail
cd "$(dirname "$0")/.."

case ${1:-} in -h|--help) sed -n '2,16p' "$0"; exit 0 ;; esac
reps=${1:-3}
rate=${2:-10gbit}
[ "$(id -u)" = 0 ] || { echo "postcopy_latency_link: needs root (network namespaces)" >&2; exit 1; }
. bench/lib.sh
. bench/link.sh
bench_build
work=$(mktemp -d /tmp/hintmig-pclink.XXXXXX)
trap 'quit_all; link_down; rm -rf "$work"' EXIT
link_up "$rate"

bare() {   # -> "p50 p99 max"
    in_src build/bench/page_exchange serve "$LINK_SRC_IP" 5555 &
    local srv=$!
    local out; out=$(in_dst build/bench/page_exchange ask "$LINK_SRC_IP" 5555 20000)
    wait "$srv"
    read -r _ a b c <<<"$out"
    echo "$a $b $c"
}

remote() {   # -> "p50 p99 max faults"
    in_src "$vm" -m 512M -smp 2 --workload churn,wss=256M,rate=32M \
        -monitor "unix:$work/src.sock,server,nowait" -daemonize
    in_dst "$vm" -m 512M -smp 2 -incoming "tcp:$LINK_DST_IP:4444" \
        -monitor "unix:$work/dst.sock,server,nowait" -daemonize
    # The working set is in when free memory stops falling below 256 MiB.
    for _ in $(seq 1 200); do
        [ "$("$hmp" "$work/src.sock" "info guest" | field 'free memory')" -le 256 ] && break
        sleep 0.05
    done
    "$hmp" "$work/dst.sock" "migrate_set_capability postcopy-ram on" >/dev/null
    "$hmp" "$work/src.sock" "migrate_set_capability postcopy-ram on" \
        "migrate -d tcp:$LINK_DST_IP:4444" "migrate_start_postcopy" >/dev/null
    local out
    out=$(wait_done "$work/dst.sock" 3000) || exit 1
    grep -q '^verify: OK' <<<"$out" || { echo "bench: postcopy failed: $out" >&2; exit 1; }
    sed -n 's/^postcopy remote fault latency: p50 \([0-9]*\) us, p99 \([0-9]*\) us, max \([0-9]*\) us (\([0-9]*\) faults)/\1 \2 \3 \4/p' <<<"$out"
    quit_all
}

declare -a xp50 xp99 xmax rp50 rp99 rmax rn
for r in $(seq 1 "$reps"); do
    read -r a b c < <(bare);       xp50+=("$a"); xp99+=("$b"); xmax+=("$c")
    read -r a b c n < <(remote);   rp50+=("$a"); rp99+=("$b"); rmax+=("$c"); rn+=("$n")
    printf 'rep %d: bare p50 %s p99 %s us | remote p50 %s p99 %s us (%s faults)\n' \
        "$r" "${xp50[-1]}" "${xp99[-1]}" "${rp50[-1]}" "${rp99[-1]}" "${rn[-1]}"
done
X50=$(median "${xp50[@]}"); X99=$(median "${xp99[@]}")
R50=$(median "${rp50[@]}"); R99=$(median "${rp99[@]}")
echo
echo "over $rate (tc tbf, no added delay), us, median of $reps runs"
printf '%-44s %8s %8s %8s %8s\n' "" p50 p99 max count
printf '%-44s %8s %8s %8s %8s\n' "bare 4 KiB request/answer (page_exchange)" "$X50" "$X99" \
    "$(median "${xmax[@]}")" 20000
printf '%-44s %8s %8s %8s %8s\n' "postcopy remote fault, push uncapped" "$R50" "$R99" \
    "$(median "${rmax[@]}")" "$(median "${rn[@]}")"
awk -v r50="$R50" -v r99="$R99" -v x50="$X50" -v x99="$X99" 'BEGIN {
    printf "remote / bare: p50 %.2f, p99 %.2f; target p99 <= 1.50\n", r50 / x50, r99 / x99 }'
