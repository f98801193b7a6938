#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The main job: install what is missing, build, and run the reference host.
# Boots a 1 GiB, 2-vCPU guest with a churn workload, shows its progress
# through the monitor, then stops it, copies its RAM and vCPU state into a
# second hintmig-vm, resumes it there and has the guest check its memory.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
meson compile -C build >/dev/null

vm=build/hintmig-vm
hmp=build/hintmig-hmp
dir=$(mktemp -d /tmp/hintmig-demo.XXXXXX)
cleanup() {
    for s in "$dir"/*.sock; do
        [ -S "$s" ] && "$hmp" "$s" quit >/dev/null 2>&1 || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }
mon() { local s=$1; shift; for c in "$@"; do printf '(qemu) %s\n' "$c"; "$hmp" "$s" "$c"; done; }

say "boot: $vm -m 1G -smp 2 --workload churn,wss=256M,rate=32M"
"$vm" -m 1G -smp 2 --workload churn,wss=256M,rate=32M \
      -monitor "unix:$dir/src.sock,server,nowait" -daemonize
for i in 1 2 3; do
    sleep 1
    printf 'after %ss: %s\n' "$i" "$("$hmp" "$dir/src.sock" "info guest" | grep 'page writes')"
done
mon "$dir/src.sock" "info status" "info guest" "info dirty-tracking" stop \
    "info status" "x-save-state $dir/state"
"$hmp" "$dir/src.sock" quit

say "second host: $vm -m 1G -smp 2 -S, then load RAM + vCPU state and cont"
"$vm" -m 1G -smp 2 -S -monitor "unix:$dir/dst.sock,server,nowait" -daemonize
mon "$dir/dst.sock" "info status" "x-load-state $dir/state" cont
sleep 1
mon "$dir/dst.sock" "info status" "info guest"
"$hmp" "$dir/dst.sock" "info guest" | grep -q '^guest memory check: OK' || {
    echo "demo: the guest's memory check failed on the second host" >&2
    exit 1
}
say "the guest continued on the second host with its memory intact"
