#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The main job: install what is missing, build, and live-migrate a running
# guest between two hintmig-vm processes on loopback, as one would with QEMU:
#   destination: hintmig-vm ... -incoming tcp:0:PORT
#   source monitor: migrate -d tcp:127.0.0.1:PORT, then info migrate
# With "postcopy" as its argument, both sides set postcopy-ram and the
# source switches with migrate_start_postcopy: the guest runs on the
# destination while its pages arrive.  With "qemu", the same inside QEMU
# with a Linux guest (qemu/demo.sh: builds QEMU 7.2 with the adapter first).
#   scripts/demo.sh [postcopy|qemu]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = qemu ]; then
    exec bash qemu/demo.sh
fi

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
if [ "${1:-}" = postcopy ]; then
    mon "$dir/dst.sock" "migrate_set_capability postcopy-ram on"
    mon "$dir/src.sock" "migrate_set_capability postcopy-ram on" \
        "migrate_set_parameter max-bandwidth 200M"
fi

say "migrating (progress from 'info migrate' every 0.2 s)"
"$hmp" "$dir/src.sock" "migrate -d tcp:127.0.0.1:$port"
if [ "${1:-}" = postcopy ]; then
    sleep 0.5
    mon "$dir/src.sock" "migrate_start_postcopy"
fi
while :; do
    info=$("$hmp" "$dir/src.sock" "info migrate")
    status=$(sed -n 's/^Migration status: //p' <<<"$info")
    printf '  %-10s %8s  transferred %12s  remaining %12s  rounds %s\n' \
        "$status" "$(sed -n 's/^total time: //p' <<<"$info")" \
        "$(sed -n 's/^transferred ram: //p' <<<"$info")" \
        "$(sed -n 's/^remaining ram: //p' <<<"$info")" \
        "$(sed -n 's/^rounds: //p' <<<"$info")"
    case $status in completed|failed*|cancelled*) break ;; esac
    case $status in postcopy*)
        printf '  %-10s destination: %s\n' "" "$("$hmp" "$dir/dst.sock" "info migrate" |
            sed -n 's/^postcopy faults: \(.*\)/faults \1/p; s/^postcopy remaining: \(.*\)/remaining \1/p' |
            paste -sd, -)" ;;
    esac
    sleep 0.2
done

say "summary (source)"
mon "$dir/src.sock" "info migrate" "info status"
say "destination"
mon "$dir/dst.sock" "info status" "info guest"
[ "${1:-}" = postcopy ] && mon "$dir/dst.sock" "info migrate"
"$hmp" "$dir/src.sock" "info migrate" | grep -q '^verify: OK' &&
"$hmp" "$dir/dst.sock" "info guest" | grep -q '^guest memory check: OK' || {
    echo "demo: migration or guest check failed" >&2
    exit 1
}
say "the guest moved, its RAM verified, and it runs on the destination"
