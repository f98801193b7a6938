#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark (not a test): postcopy's remote faults against a local
# userfaultfd round trip, measured in the same run.
#
# Local: bench/uffd_roundtrip (a handler thread places each faulted page
# with UFFDIO_COPY).  Remote: a 512 MiB guest writing its 256 MiB working
# set (churn) is switched to postcopy at once, so it faults on pages still
# at the source; the destination's "info migrate" times each remote fault
# from reading it to the page being placed, the same span the local
# handler time covers.  Two link loads: the background push capped at
# 20 MB/s (requests mostly alone on the link) and uncapped.
#
#   bench/postcopy_latency.sh [REPS]     (default 3; medians are reported)
set -euo pipefail
cd "$(dirname "$0")/.."

reps=${1:-3}
. bench/lib.sh
bench_build
work=$(mktemp -d /tmp/hintmig-pclat.XXXXXX)
trap 'quit_all; rm -rf "$work"' EXIT

remote() {   # $1 = max-bandwidth -> "p50 p99 max faults total_ms"
    local p; p=$(port)
    "$vm" -m 512M -smp 2 --workload churn,wss=256M,rate=32M \
        -monitor "unix:$work/src.sock,server,nowait" -daemonize
    "$vm" -m 512M -smp 2 -incoming "tcp:127.0.0.1:$p" \
        -monitor "unix:$work/dst.sock,server,nowait" -daemonize
    sleep 1
    "$hmp" "$work/dst.sock" "migrate_set_capability postcopy-ram on" >/dev/null
    "$hmp" "$work/src.sock" "migrate_set_capability postcopy-ram on" \
        "migrate_set_parameter max-bandwidth $1" "migrate -d tcp:127.0.0.1:$p" \
        "migrate_start_postcopy" >/dev/null
    local out
    out=$(wait_done "$work/dst.sock" 3000) || exit 1
    grep -q '^verify: OK' <<<"$out" || { echo "bench: postcopy failed: $out" >&2; exit 1; }
    sed -n 's/^postcopy remote fault latency: p50 \([0-9]*\) us, p99 \([0-9]*\) us, max \([0-9]*\) us (\([0-9]*\) faults)/\1 \2 \3 \4/p' <<<"$out" |
        tr '\n' ' '
    field 'total time' <<<"$out"
    quit_all
}

declare -a lp50 lp99 lmax tp50 tp99 np50 np99 ap50 ap99 amax an bp50 bp99 bmax bn
for r in $(seq 1 "$reps"); do
    build/bench/warm_memory 3G
    rt=$(build/bench/uffd_roundtrip 20000)
    read -r _ a b c < <(grep handler <<<"$rt"); lp50+=("$a"); lp99+=("$b"); lmax+=("$c")
    read -r _ a b _ < <(grep toucher <<<"$rt"); tp50+=("$a"); tp99+=("$b")
    read -r _ a b _ < <(grep tcp <<<"$rt"); np50+=("$a"); np99+=("$b")
    read -r a b c n _ < <(remote 20M); ap50+=("$a"); ap99+=("$b"); amax+=("$c"); an+=("$n")
    read -r a b c n _ < <(remote 0);   bp50+=("$a"); bp99+=("$b"); bmax+=("$c"); bn+=("$n")
    printf 'rep %d: local p99 %s us | remote p99 %s us (push capped), %s us (uncapped)\n' \
        "$r" "${lp99[-1]}" "${ap99[-1]}" "${bp99[-1]}"
done
L50=$(median "${lp50[@]}"); L99=$(median "${lp99[@]}"); LM=$(median "${lmax[@]}")
A50=$(median "${ap50[@]}"); A99=$(median "${ap99[@]}"); AM=$(median "${amax[@]}")
B50=$(median "${bp50[@]}"); B99=$(median "${bp99[@]}"); BM=$(median "${bmax[@]}")
echo
echo "fault latency, us (fault read to page placed), median of $reps runs"
printf '%-34s %8s %8s %8s %8s\n' "" p50 p99 max faults
printf '%-34s %8s %8s %8s %8s\n' "local userfaultfd (UFFDIO_COPY)" "$L50" "$L99" "$LM" 20000
printf '%-34s %8s %8s %8s %8s\n' "remote, push capped at 20 MB/s" "$A50" "$A99" "$AM" "$(median "${an[@]}")"
printf '%-34s %8s %8s %8s %8s\n' "remote, push uncapped" "$B50" "$B99" "$BM" "$(median "${bn[@]}")"
echo "local round trip as the faulting thread sees it: p50 $(median "${tp50[@]}") us, p99 $(median "${tp99[@]}") us"
echo "loopback TCP, 12 B asked, 4 KiB answered: p50 $(median "${np50[@]}") us, p99 $(median "${np99[@]}") us"
awk -v l="$L99" -v a="$A99" -v b="$B99" 'BEGIN {
    printf "remote p99 / local p99: %.1f (push capped), %.1f (uncapped); target <= 3\n", a / l, b / l }'
