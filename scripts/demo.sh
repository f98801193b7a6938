#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The main job: install what is missing, build, and live-migrate a running
# guest between two hintmig-vm processes on loopback, as one would with QEMU:
#   destination: hintmig-vm ... -incoming tcp:0:PORT
#   source monitor: migrate -d tcp:127.0.0.1:PORT, then info migrate
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
meson compile -C build >/dev/null

vm=build/hintmig-vm
hmp=build/hintmig-hmp
port=${HINTMIG_DEMO_PORT:-4444}
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

guest="-m 2G -smp 2"
say "source: $vm $guest --workload churn,wss=512M,rate=32M"
"$vm" $guest --workload churn,wss=512M,rate=32M \
      -monitor "unix:$dir/src.sock,server,nowait" -daemonize
say "destination: $vm $guest -incoming tcp:0:$port"
"$vm" $guest -incoming "tcp:0:$port" \
      -monitor "unix:$dir/dst.sock,server,nowait" -daemonize
sleep 2       # let the guest fill its working set
mon "$dir/src.sock" "info guest" "migrate_set_parameter downtime-limit 300"

say "migrating (progress from 'info migrate' every 0.2 s)"
"$hmp" "$dir/src.sock" "migrate -d tcp:127.0.0.1:$port"
while :; do
    info=$("$hmp" "$dir/src.sock" "info migrate")
    status=$(sed -n 's/^Migration status: //p' <<<"$info")
    printf '  %-10s %8s  transferred %12s  remaining %12s  rounds %s\n' \
        "$status" "$(sed -n 's/^total time: //p' <<<"$info")" \
        "$(sed -n 's/^transferred ram: //p' <<<"$info")" \
        "$(sed -n 's/^remaining ram: //p' <<<"$info")" \
        "$(sed -n 's/^rounds: //p' <<<"$info")"
    case $status in completed|failed*|cancelled*) break ;; esac
    sleep 0.2
done

say "summary (source)"
mon "$dir/src.sock" "info migrate" "info status"
say "destination"
mon "$dir/dst.sock" "info status" "info guest"
"$hmp" "$dir/src.sock" "info migrate" | grep -q '^verify: OK' &&
"$hmp" "$dir/dst.sock" "info guest" | grep -q '^guest memory check: OK' || {
    echo "demo: migration or guest check failed" >&2
    exit 1
}
say "the guest moved, its RAM verified, and it runs on the destination"
