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
# placed.  The remote case runs twice: as it is, and with the source's
# postcopy-yield capability (the push slows while vCPUs wait); each row
# also gives the destination's total time.  Target: remote p99 within 1.5x
# of the bare exchange's p99.
#
#   bench/postcopy_latency_link.sh [REPS] [RATE]   (default 3, 10gbit)
set -euo pipefail
cd "$(dirname "$0")/.."

case ${1:-} in -h|--help) sed -n '2,19p' "$0"; exit 0 ;; esac
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

remote() {   # on|off (postcopy-yield) -> "p50 p99 max faults total_ms"
    # Sockets of their own: a VM of the run before that exits late must not
    # take this run's socket with it.
    local src=$work/src-$1-$r.sock dst=$work/dst-$1-$r.sock
    in_src "$vm" -m 512M -smp 2 --workload churn,wss=256M,rate=32M \
        -monitor "unix:$src,server,nowait" -daemonize
    in_dst "$vm" -m 512M -smp 2 -incoming "tcp:$LINK_DST_IP:4444" \
        -monitor "unix:$dst,server,nowait" -daemonize
    # The working set is in when free memory stops falling below 256 MiB.
    for _ in $(seq 1 200); do
        [ "$("$hmp" "$src" "info guest" | field 'free memory')" -le 256 ] && break
        sleep 0.05
    done
    "$hmp" "$dst" "migrate_set_capability postcopy-ram on" >/dev/null
    "$hmp" "$src" "migrate_set_capability postcopy-ram on" \
        "migrate_set_capability postcopy-yield $1" \
        "migrate -d tcp:$LINK_DST_IP:4444" "migrate_start_postcopy" >/dev/null
    local out
    out=$(wait_done "$dst" 3000) || exit 1
    grep -q '^verify: OK' <<<"$out" || { echo "bench: postcopy failed: $out" >&2; exit 1; }
    echo "$(sed -n 's/^postcopy remote fault latency: p50 \([0-9]*\) us, p99 \([0-9]*\) us, max \([0-9]*\) us (\([0-9]*\) faults)/\1 \2 \3 \4/p' <<<"$out") $(field 'total time' <<<"$out")"
    quit_all
}

declare -a xp50 xp99 xmax rp50 rp99 rmax rn rt yp50 yp99 ymax yn yt
for r in $(seq 1 "$reps"); do
    read -r a b c < <(bare);       xp50+=("$a"); xp99+=("$b"); xmax+=("$c")
    read -r a b c n t < <(remote off); rp50+=("$a"); rp99+=("$b"); rmax+=("$c"); rn+=("$n"); rt+=("$t")
    read -r a b c n t < <(remote on);  yp50+=("$a"); yp99+=("$b"); ymax+=("$c"); yn+=("$n"); yt+=("$t")
    printf 'rep %d: bare p50 %s p99 %s us | remote p50 %s p99 %s us (%s faults, %s ms) | yielding p50 %s p99 %s us (%s faults, %s ms)\n' \
        "$r" "${xp50[-1]}" "${xp99[-1]}" "${rp50[-1]}" "${rp99[-1]}" "${rn[-1]}" "${rt[-1]}" \
        "${yp50[-1]}" "${yp99[-1]}" "${yn[-1]}" "${yt[-1]}"
done
X50=$(median "${xp50[@]}"); X99=$(median "${xp99[@]}")
R50=$(median "${rp50[@]}"); R99=$(median "${rp99[@]}")
Y50=$(median "${yp50[@]}"); Y99=$(median "${yp99[@]}")
echo
echo "over $rate (tc tbf, no added delay), us, median of $reps runs"
printf '%-44s %8s %8s %8s %8s %9s\n' "" p50 p99 max count "total ms"
printf '%-44s %8s %8s %8s %8s %9s\n' "bare 4 KiB request/answer (page_exchange)" "$X50" "$X99" \
    "$(median "${xmax[@]}")" 20000 -
printf '%-44s %8s %8s %8s %8s %9s\n' "postcopy remote fault, push uncapped" "$R50" "$R99" \
    "$(median "${rmax[@]}")" "$(median "${rn[@]}")" "$(median "${rt[@]}")"
printf '%-44s %8s %8s %8s %8s %9s\n' "... with postcopy-yield" "$Y50" "$Y99" \
    "$(median "${ymax[@]}")" "$(median "${yn[@]}")" "$(median "${yt[@]}")"
awk -v r50="$R50" -v r99="$R99" -v y50="$Y50" -v y99="$Y99" -v x50="$X50" -v x99="$X99" 'BEGIN {
    printf "remote / bare: p50 %.2f, p99 %.2f; with postcopy-yield: p50 %.2f, p99 %.2f; target p99 <= 1.50\n",
           r50 / x50, r99 / x99, y50 / x50, y99 / x99 }'
