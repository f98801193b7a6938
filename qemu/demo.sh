#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# One-command demo of hintmig inside QEMU: builds the patched QEMU
# (qemu/build.sh; up to ~15 minutes the first time, as root on Debian 12)
# and the Linux test guest (linux-guest/build.sh), boots a 1 GiB source
# guest whose memcheck fills 600 MiB and frees all but 100 MiB of it, and
# once it says "memcheck: ready" migrates it over TCP on 127.0.0.1 to a
# destination QEMU with the hintmig and free-page-hint capabilities on both
# sides.  Prints the source's "info migrate" progress every second, then
# the destination's "info migrate" (with hintmig's "verify:" line) and the
# destination guest's latest memcheck verdict, and ends with "demo: OK" or
# "demo: FAILED" (exit status 0 or 1).
#
# Usage: qemu/demo.sh [--help]
# Environment:
#   HINTMIG_QEMU            use this QEMU binary and skip qemu/build.sh
#   HINTMIG_QEMU_CAPS       on|off|auto (default auto: on when the binary
#                           knows the hintmig capability; off runs a plain
#                           QEMU migration, QEMU's own hint use included)
#   HINTMIG_LINUX_GUEST_DIR guest cache (default build-linux-guest; the
#                           guest is built into its guest/ folder)
#   HINTMIG_KEEP=1          keep the temp dir with serial logs
#   HINTMIG_DEMO_TIMEOUT    seconds for each wait (default 300)
# Everything else is tests/qemu/lib.sh's (see there).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)

case ${1:-} in
    -h|--help) sed -n '3,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) echo "demo.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

# A 1 GiB guest: 600 MiB filled, 500 MiB of it freed (stale data the free
# page hints keep off the wire), 100 MiB held and verified every second.
HM_MEM=1G
HM_MEMCHECK="memcheck.fill=600M memcheck.keep=100M memcheck.wss=32M memcheck.rate=8M memcheck.interval=1s"
HM_BALLOON_HINT=on
# shellcheck source=../tests/qemu/lib.sh
. "$top/tests/qemu/lib.sh"

timeout=${HINTMIG_DEMO_TIMEOUT:-300}
ok=0
say() { printf 'demo: %s\n' "$*"; }

finish() {
    hm_cleanup
    if [ "$ok" = 1 ]; then say "OK"; else say "FAILED"; fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { say "$*"; exit 1; }

# (a) QEMU
if [ -n "${HINTMIG_QEMU:-}" ]; then
    say "using HINTMIG_QEMU=$HINTMIG_QEMU (qemu/build.sh skipped)"
else
    say "building the patched QEMU (qemu/build.sh)"
    bash "$here/build.sh" || fail "qemu/build.sh failed"
    export HINTMIG_QEMU=$top/build-qemu/prefix/bin/qemu-system-x86_64
fi
hm_find_qemu || fail "no QEMU binary"
hm_probe_caps || fail "capability probe failed"
say "QEMU: $HM_QEMU ($("$HM_QEMU" --version | head -n1))"
if [ "$HM_CAPS" = on ]; then
    say "hintmig capabilities: on (hintmig + free-page-hint on both sides)"
else
    say "hintmig capabilities: off (plain QEMU migration)"
fi

# (b) guest
say "building the Linux test guest (linux-guest/build.sh)"
hm_build_guest || fail "guest build failed"
hm_tmp_init

# (c) source guest, destination waiting
port=$(hm_free_port)
uri=tcp:127.0.0.1:$port
t0=$(hm_now)
hm_start src || fail "source QEMU did not start: $HM_WHY"
hm_start dst defer || fail "destination QEMU did not start: $HM_WHY"
say "source booting: 1 GiB, memcheck fill 600M keep 100M"
hm_wait_ready src "$timeout" || fail "source guest never said ready: $HM_WHY"
say "source $(tr -d '\r' < "$(hm_serial src)" | grep -m1 '^memcheck: ready ') ($(hm_elapsed "$t0") s)"

# (d) migration
hm_set_caps src hints || fail "migrate-set-capabilities on the source failed"
hm_set_caps dst hints || fail "migrate-set-capabilities on the destination failed"
# QEMU 7.2 caps a migration at 32 MiB/s unless told otherwise.
hm_set_params src max-bandwidth=$((1024 * 1048576)) || fail "migrate-set-parameters failed"
hm_qmp dst cmd migrate-incoming "uri=$uri" >/dev/null || fail "migrate-incoming failed"
say "migrating to $uri"
t0=$(hm_now)
hm_qmp src cmd migrate "uri=$uri" detach:=true >/dev/null || fail "migrate failed"

# One line a second from the source's info migrate, until it ends.
deadline=$((SECONDS + timeout))
status=
while :; do
    tick=$(hm_now)
    info=$(hm_hmp src "info migrate" | tr -d '\r') || fail "info migrate on the source failed"
    hm_alive dst || fail "$(hm_gone dst)"
    status=$(sed -n 's/^Migration status: //p' <<<"$info")
    awk -v t="$(hm_elapsed "$t0")" '
        /^Migration status:/ { st = $3 }
        /^transferred ram:/  { tr = $3 / 1024 }
        /^remaining ram:/    { rem = $3 / 1024 }
        /^total ram:/        { tot = $3 / 1024 }
        /^throughput:/       { tp = $2 }
        END { printf "  [%5.1fs] %-10s transferred %7.1f MiB  remaining %7.1f MiB  of %7.1f MiB  %s mbps\n",
                     t, st, tr, rem, tot, (tp == "" ? "-" : tp) }' <<<"$info"
    case $status in
        completed|failed|cancelled) break ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || fail "migration still '$status' after $timeout s"
    # A tick a second: the HMP round trip counts against it.
    sleep "$(awk -v a="$tick" -v b="$(hm_now)" 'BEGIN { d = 1 - (b - a); print (d < 0.1 ? 0.1 : d) }')"
done
[ "$status" = completed ] || fail "migration $status"
say "migration completed in $(hm_elapsed "$t0") s"

after=$(hm_serial_lines dst)
min=$(hm_last_pass src)
if ! hm_wait_migrate dst completed 60 >/dev/null; then
    hm_alive dst && fail "the destination did not complete"
    fail "$(hm_gone dst)"
fi
echo "destination's info migrate:"
hm_hmp dst "info migrate" | tr -d '\r' | sed 's/^/  /'
verify=$(hm_verify_line dst)
if [ -n "$verify" ]; then
    say "destination $verify"
    [[ $verify == "verify: OK"* ]] || fail "hintmig's verification did not say OK"
elif [ "$HM_CAPS" = on ]; then
    fail "hintmig was on, but the destination's info migrate has no verify: line"
fi

hm_wait_run_state dst running 30 || fail "destination guest not running: $HM_WHY"
if ! hm_wait_new_verdicts dst 2 60 "$after" "$min"; then
    say "destination guest: ${HM_WHY}"
    fail "no new OK verdict from the destination guest"
fi
say "destination guest: $(hm_last_verdict dst)"
read -r _ tr tot < <(hm_migrate_summary src)
say "source sent $(hm_mib "$tr") of $(hm_mib "$tot") of guest RAM"
ok=1
