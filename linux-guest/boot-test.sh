#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Boot test of the Linux test guest under stock QEMU (TCG): builds the guest
# (build.sh) into a cache folder, boots it with a virtio-balloon offering
# the free page hint, and waits on the serial log for memcheck's ready line
# and two OK verdicts; then boots it again with memcheck.selftest=1, where
# the verdict after a deliberately corrupted byte must be FAIL, proving the
# check can fail.  Prints the boot-to-ready and verification times, and
# ends with "N passed, N failed" (non-zero exit on any failure).
#   boot-test.sh            (root, to install qemu-system-x86 if missing)
# Environment: HINTMIG_LINUX_GUEST_DIR (cache, default build-linux-guest at
# the top of the tree), HINTMIG_LINUX_GUEST_TIMEOUT (seconds per wait,
# default 90).  The serial logs stay in the cache folder's logs/.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cache=${HINTMIG_LINUX_GUEST_DIR:-$top/build-linux-guest}
timeout=${HINTMIG_LINUX_GUEST_TIMEOUT:-90}
# Modest sizes keep a TCG run short: 300 MiB filled in a 512 MiB guest,
# 64 MiB of it kept and checked every second, 16 MiB rewritten at 4 MiB/s.
mem=512M
opts="memcheck.fill=300M memcheck.keep=64M memcheck.wss=16M memcheck.rate=4M memcheck.interval=1s"

passed=0
failed=0
qpid=
log=
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() {
    echo "FAIL: $*"
    failed=$((failed + 1))
    if [ -n "$log" ] && [ -f "$log" ]; then
        echo "--- last lines of $log"
        tail -n 15 "$log" | tr -d '\r'
        echo "---"
    fi
}

stop_qemu() {
    if [ -n "$qpid" ]; then
        kill "$qpid" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
        qpid=
    fi
}
finish() {
    stop_qemu
    # The line scripts/test.sh counts, then the plain closing line.
    echo "TESTS: $((passed + failed)) run, $failed failed, 0 skipped"
    echo "$passed passed, $failed failed"
}
trap finish EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# Installs stock QEMU from Debian when it is missing.
need_qemu() {
    command -v qemu-system-x86_64 >/dev/null && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "boot-test: qemu-system-x86_64 missing, and installing it needs root" >&2
        return 1
    fi
    echo "boot-test: installing qemu-system-x86 from Debian" >&2
    if ! apt-cache show qemu-system-x86 >/dev/null 2>&1; then
        apt-get -o DPkg::Lock::Timeout=600 update -qq || return 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
        install -y -qq --no-install-recommends qemu-system-x86 >/dev/null || return 1
    command -v qemu-system-x86_64 >/dev/null
}

# boot NAME EXTRA_KERNEL_ARGS: starts the guest in the background, its
# serial console in $cache/logs/NAME.log; sets $qpid, $log and $t_start.
boot() {
    log=$cache/logs/$1.log
    mkdir -p "$cache/logs"
    : > "$log"
    t_start=$(now)
    qemu-system-x86_64 -accel tcg -m "$mem" -smp 1 \
        -nodefaults -no-user-config -display none -monitor none -no-reboot \
        -serial "file:$log" \
        -kernel "$cache/guest/vmlinuz" -initrd "$cache/guest/initrd.gz" \
        -append "console=ttyS0 panic=-1 loglevel=4 $opts $2" \
        -object iothread,id=io0 \
        -device virtio-balloon-pci,free-page-hint=on,iothread=io0 \
        2> "$cache/logs/$1.qemu.err" &
    qpid=$!
}

# wait_for REGEX COUNT [ABORT_REGEX]: polls the serial log every 0.2 s
# until COUNT lines match REGEX; returns 1 at once if a line matches
# ABORT_REGEX or QEMU has exited, and after $timeout seconds.
wait_for() {
    local deadline=$((SECONDS + timeout)) n
    while :; do
        n=$(grep -cE "$1" "$log" || true)
        [ "$n" -ge "$2" ] && return 0
        if [ -n "${3:-}" ] && grep -qE "$3" "$log"; then
            echo "boot-test: saw '$(grep -m1 -E "$3" "$log" | tr -d '\r')'" >&2
            return 1
        fi
        if ! kill -0 "$qpid" 2>/dev/null; then
            echo "boot-test: QEMU exited: $(tr '\n' ' ' < "${log%.log}.qemu.err")" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "boot-test: no '$1' (x$2) within ${timeout}s" >&2
            return 1
        fi
        sleep 0.2
    done
}

# field LINE NAME: the value of NAME=... in LINE.
field() { tr -d '\r' <<<"$1" | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }

if ! need_qemu; then
    fail "qemu-system-x86_64 is available"
    exit 1
fi
pass "qemu-system-x86_64 is available"

if ! "$here/build.sh" "$cache/guest"; then
    fail "guest builds from Debian packages"
    exit 1
fi
pass "guest builds from Debian packages"

# First boot: ready, the balloon's free page hint, two OK verdicts.
boot normal ""
panic='Kernel panic|memcheck: error|memcheck exited|insmod .* failed'
if wait_for '^memcheck: ready ' 1 "$panic"; then
    t_ready=$(now)
    ready=$(grep -m1 '^memcheck: ready ' "$log")
    pass "guest boots to memcheck ready in $(elapsed "$t_start" "$t_ready") s"
    echo "  boot-to-ready: $(elapsed "$t_start" "$t_ready") s from QEMU start;" \
         "guest uptime $(field "$ready" uptime_ms) ms, fill+free $(field "$ready" fill_ms) ms," \
         "MemFree $(field "$ready" mem_free_kib) KiB"
else
    fail "guest boots to memcheck ready"
fi

if grep -qE '^init: virtio-balloon .* free_page_hint=1' "$log"; then
    pass "guest sees the virtio-balloon with the free page hint"
else
    fail "guest sees the virtio-balloon with the free page hint"
fi

if wait_for '^memcheck: verdict OK ' 2 "^memcheck: verdict FAIL|$panic"; then
    pass "two OK verdicts"
    grep '^memcheck: verdict OK ' "$log" | head -2 | while read -r v; do
        echo "  verification pass: $(field "$v" ms) ms for $(field "$v" pages) pages" \
             "(gen_max $(field "$v" gen_max))"
    done
else
    fail "two OK verdicts"
fi
stop_qemu

# Second boot: the self-test corrupts a byte after the first verdict, and
# the next verdict must say FAIL, naming the page.
boot selftest "memcheck.selftest=1"
if wait_for '^memcheck: verdict FAIL ' 1 "$panic"; then
    first=$(grep -m1 '^memcheck: verdict ' "$log" | tr -d '\r')
    bad=$(grep -m1 '^memcheck: verdict FAIL ' "$log" | tr -d '\r')
    corrupt=$(grep -m1 '^memcheck: selftest corrupted ' "$log" | tr -d '\r')
    if [[ $first == "memcheck: verdict OK pass=1 "* ]] &&
       [[ $bad == "memcheck: verdict FAIL pass=2 "* ]] &&
       [ "$(field "$bad" page)" = "$(field "$corrupt" page)" ] &&
       [ "$(field "$bad" bad_pages)" = 1 ]; then
        pass "self-test: OK, then FAIL on the corrupted page"
        echo "  $bad"
    else
        fail "self-test: OK, then FAIL on the corrupted page (got '$first' then '$bad')"
    fi
else
    fail "self-test: a FAIL verdict after the corruption"
fi
stop_qemu

[ "$failed" = 0 ]
