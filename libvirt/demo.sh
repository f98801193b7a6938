#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# One-command demo of hintmig under libvirt (as root on Debian 12): builds
# the patched QEMU (qemu/build.sh; up to ~15 minutes the first time) and
# the Linux test guest (linux-guest/build.sh), starts two libvirt daemons
# on this machine (libvirt/daemons.sh start: "a" and "b"), defines a 1 GiB
# guest on a from libvirt/hintmig-guest.xml (memcheck fills 600 MiB, frees
# all but 100 MiB of it, verifies the rest every second), and once it says
# "memcheck: ready" moves it to b with
#   virsh migrate --live DOM qemu+unix:///system?socket=B \
#       --migrateuri tcp://127.0.0.1:PORT --listen-address 127.0.0.1 --xml b.xml
# (b.xml: a's `dumpxml --migratable` with b's own serial log), printing
# `virsh domjobinfo` progress every second.  Then prints a's
# `domjobinfo --completed`, b's hintmig lines of `info migrate` (through
# `virsh qemu-monitor-command --hmp`, with "verify: OK") and the guest's
# latest memcheck verdict on b, and ends with "demo: OK" or "demo: FAILED"
# (exit status 0 or 1).  The domain is removed from both daemons, and the
# daemons are stopped (unless both already ran before the demo).
#
# Usage: libvirt/demo.sh [--help]
# Environment:
#   HINTMIG_QEMU            use this QEMU binary and skip qemu/build.sh
#   HINTMIG_LINUX_GUEST_DIR guest cache (default build-linux-guest)
#   HINTMIG_LIBVIRT_DIR     the daemons' folder (see libvirt/daemons.sh)
#   HINTMIG_KEEP=1          keep the temp dir (XML, serial logs)
#   HINTMIG_DEMO_TIMEOUT    seconds for each wait (default 300)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
top=$(cd "$here/.." && pwd)

case ${1:-} in
    -h|--help) sed -n '3,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) echo "demo.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

timeout=${HINTMIG_DEMO_TIMEOUT:-300}
MEM_MIB=1024
CMDLINE="console=ttyS0 panic=-1 loglevel=4 memcheck.fill=600M memcheck.keep=100M memcheck.wss=32M memcheck.rate=8M memcheck.interval=1s"
DOM=hintmig-demo
BROKEN='Kernel panic|BUG:|Oops|memcheck: error|memcheck exited|insmod .* failed|^memcheck: verdict FAIL'

ok=0
started=0
tmp=
mig_pid=
say() { printf 'demo: %s\n' "$*"; }
vsh() { local s=$1; shift; timeout 60 virsh -c "$(bash "$here/daemons.sh" uri "$s")" "$@"; }

finish() {
    local s
    trap '' INT TERM        # a second signal must not cut the cleanup short
    set +e
    if [ -n "$mig_pid" ] && alive "$mig_pid"; then
        vsh a domjobabort "$DOM" >/dev/null 2>&1 || true
        for _ in $(seq 1 100); do alive "$mig_pid" || break; sleep 0.2; done
        kill "$mig_pid" 2>/dev/null || true
    fi
    if [ -n "$tmp" ]; then       # the domain exists only once tmp does
        for s in a b; do
            vsh "$s" destroy "$DOM" >/dev/null 2>&1 || true
            vsh "$s" undefine "$DOM" >/dev/null 2>&1 || true
        done
    fi
    if [ "$started" = 1 ]; then
        say "stopping the libvirt daemons"
        bash "$here/daemons.sh" stop || true
    fi
    if [ -n "$tmp" ] && [ -d "$tmp" ]; then
        if [ "${HINTMIG_KEEP:-0}" = 1 ]; then say "kept $tmp"; else rm -rf "$tmp"; fi
    fi
    if [ "$ok" = 1 ]; then say "OK"; else say "FAILED"; fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { say "$*"; exit 1; }

# wait_serial FILE REGEX COUNT TIMEOUT [AFTER_LINE]
wait_serial() {
    local f=$1 re=$2 count=$3 deadline=$((SECONDS + $4)) after=${5:-0} n bad
    while :; do
        n=$(tail -n "+$((after + 1))" "$f" 2>/dev/null | tr -d '\r' | grep -cE "$re") || true
        [ "${n:-0}" -ge "$count" ] && return 0
        bad=$(tr -d '\r' < "$f" 2>/dev/null | grep -m1 -E "$BROKEN") || true
        [ -z "$bad" ] || fail "guest says: $bad"
        [ "$SECONDS" -lt "$deadline" ] || fail "no '$re' in ${f##*/} within $4 s"
        sleep 0.25
    done
}
last_verdict() { tr -d '\r' < "$1" | grep '^memcheck: verdict ' | tail -n1 || true; }
last_pass() { last_verdict "$1" | sed -n 's/.* pass=\([0-9]*\).*/\1/p'; }

# (a) QEMU and the guest
if [ -n "${HINTMIG_QEMU:-}" ]; then
    qemu=$HINTMIG_QEMU
    say "using HINTMIG_QEMU=$qemu (qemu/build.sh skipped)"
else
    say "building the patched QEMU (qemu/build.sh)"
    bash "$top/qemu/build.sh" || fail "qemu/build.sh failed"
    qemu=$top/build-qemu/prefix/bin/qemu-system-x86_64
fi
[ -x "$qemu" ] || fail "no QEMU at $qemu"
say "QEMU: $qemu ($("$qemu" --version | head -n1))"
guest=${HINTMIG_LINUX_GUEST_DIR:-$top/build-linux-guest}/guest
say "building the Linux test guest (linux-guest/build.sh)"
"$top/linux-guest/build.sh" "$guest" || fail "guest build failed"

# (b) the daemons
if [ "$(bash "$here/daemons.sh" status | grep -c ': running')" = 2 ]; then
    say "both libvirt daemons already run (left running afterwards)"
else
    say "starting two libvirt daemons (libvirt/daemons.sh start)"
    started=1
    bash "$here/daemons.sh" start || fail "libvirt/daemons.sh start failed"
fi
uri_a=$(bash "$here/daemons.sh" uri a)
uri_b=$(bash "$here/daemons.sh" uri b)
dest=qemu+unix${uri_b#qemu}
say "a: $uri_a"
say "b: $uri_b"

# (c) the guest on a
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hintmig-libvirt-demo.XXXXXX")
for s in a b; do       # left over from an interrupted demo
    vsh "$s" destroy "$DOM" >/dev/null 2>&1 || true
    vsh "$s" undefine "$DOM" >/dev/null 2>&1 || true
done
serial_a=$tmp/a.serial
serial_b=$tmp/b.serial
bash "$here/guest-xml.sh" "$DOM" "$MEM_MIB" "$guest" "$CMDLINE" "$qemu" "$serial_a" \
    > "$tmp/a.xml"
vsh a define "$tmp/a.xml" >/dev/null || fail "virsh define failed"
t0=$(now)
vsh a start "$DOM" >/dev/null || fail "virsh start failed"
say "a: started $DOM (1 GiB, memcheck fill 600M keep 100M); waiting for memcheck"
wait_serial "$serial_a" '^memcheck: ready ' 1 "$timeout"
say "a: $(tr -d '\r' < "$serial_a" | grep -m1 '^memcheck: ready ') ($(elapsed "$t0") s)"

# (d) the migration
vsh a dumpxml --migratable "$DOM" > "$tmp/b.xml" || fail "dumpxml --migratable failed"
sed -i "s|$serial_a|$serial_b|g" "$tmp/b.xml"
grep -q "$serial_b" "$tmp/b.xml" || fail "no serial log path in the domain's XML"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
say "virsh migrate --live $DOM $dest --migrateuri tcp://127.0.0.1:$port --listen-address 127.0.0.1 --xml b.xml"
t0=$(now)
timeout "$timeout" virsh -c "$uri_a" migrate --live "$DOM" "$dest" \
    --migrateuri "tcp://127.0.0.1:$port" --listen-address 127.0.0.1 --xml "$tmp/b.xml" \
    > "$tmp/migrate.out" 2>&1 &
mig_pid=$!
# One line a second from a's domjobinfo while virsh migrate runs.
while alive "$mig_pid"; do
    tick=$(now)
    info=$(vsh a domjobinfo "$DOM" 2>/dev/null) || true
    [ -n "$info" ] && awk -v t="$(elapsed "$t0")" -F': +' '
        /^Job type/         { jt = $2 }
        /^Time elapsed:/    { te = $2 }
        /^Data processed/   { dp = $2 }
        /^Data remaining/   { dr = $2 }
        /^Data total/       { dt = $2 }
        /^Memory bandwidth/ { bw = $2 }
        END { sub(/ +$/, "", jt); sub(/ +ms$/, " ms", te)
              if (dp != "")
                  printf "  [%5.1fs] Data processed %-12s remaining %-12s total %-12s bandwidth %s\n",
                         t, dp, dr, dt, (bw == "" ? "-" : bw)
              else if (jt == "Unbounded")
                  printf "  [%5.1fs] job running %s, no data yet (the destination QEMU starts)\n", t, te
              else
                  printf "  [%5.1fs] job %s\n", t, (jt == "" ? "-" : jt) }' <<<"$info"
    sleep "$(awk -v a="$tick" -v b="$(now)" 'BEGIN { d = 1 - (b - a); print (d < 0.1 ? 0.1 : d) }')"
done
rc=0
wait "$mig_pid" || rc=$?
mig_pid=
secs=$(elapsed "$t0")
[ "$rc" = 0 ] || fail "virsh migrate failed: $(tr '\n' ' ' < "$tmp/migrate.out")"
say "virsh migrate completed in $secs s"
echo "a: virsh domjobinfo --completed:"
vsh a domjobinfo "$DOM" --completed | grep -v '^$' | sed 's/^/  /' || fail "domjobinfo --completed failed"

# (e) the destination
echo "b: hintmig's lines of info migrate (virsh qemu-monitor-command --hmp):"
info=$(vsh b qemu-monitor-command "$DOM" --hmp 'info migrate' | tr -d '\r') ||
    fail "qemu-monitor-command on b failed"
sed -n '/^hintmig:/,$p' <<<"$info" | grep -v '^$' | sed 's/^/  /'
verify=$(grep -m1 '^verify:' <<<"$info") || true
[[ $verify == "verify: OK"* ]] || fail "b: info migrate says '${verify:-no verify: line}'"
st_b=$(vsh b domstate "$DOM" 2>&1 | head -n1) || true
st_a=$(vsh a domstate "$DOM" 2>&1 | head -n1) || true
say "b: domstate $st_b; a: domstate $st_a"
[ "$st_b" = running ] || fail "the guest is not running on b"
min=$(tr -d '\r' < "$serial_a" | grep '^memcheck: verdict ' | tail -n1 | sed -n 's/.* pass=\([0-9]*\).*/\1/p')
min=${min:-0}
# Two OK verdicts on b, the last with a pass a never printed.
n=2
deadline=$((SECONDS + 60))
while :; do
    wait_serial "$serial_b" '^memcheck: verdict OK ' "$n" $((deadline - SECONDS))
    [ "$(last_pass "$serial_b")" -gt "$min" ] && break
    n=$((n + 1))
done
say "b: guest says $(last_verdict "$serial_b") (last pass on a: $min)"
ok=1
