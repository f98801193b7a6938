#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The libvirt test in one command (as root on Debian 12): builds Debian's
# QEMU 7.2 with hintmig's patch series (qemu/build.sh; the first run
# downloads the source and takes several minutes, later runs only rebuild
# what changed) and the Linux test guest (linux-guest/build.sh), starts the
# two libvirt daemons (libvirt/daemons.sh start, which installs libvirt's
# packages if missing), runs libvirt/migrate-test.sh, and stops the
# daemons again however the test ends (daemons that already ran before
# are left running).  Exits with migrate-test.sh's status.
#   libvirt/build-and-test.sh [CASE...]      (CASE: see migrate-test.sh --list)
# Environment: HINTMIG_LINUX_GUEST_DIR, HINTMIG_LIBVIRT_DIR and everything
# migrate-test.sh reads (HINTMIG_QEMU is set to the QEMU built here).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)

case "${1:-}" in
    -h|--help) sed -n '3,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
esac

# Unknown cases are refused before the build, not after it.
for arg in "$@"; do
    bash "$here/migrate-test.sh" --list | grep -qx -- "$arg" ||
        { echo "build-and-test.sh: unknown case '$arg' (migrate-test.sh --list shows them)" >&2; exit 2; }
done

echo "build-and-test: building QEMU with hintmig (qemu/build.sh)"
bash "$top/qemu/build.sh"
export HINTMIG_QEMU="$top/build-qemu/prefix/bin/qemu-system-x86_64"
guest=${HINTMIG_LINUX_GUEST_DIR:-$top/build-linux-guest}/guest
echo "build-and-test: building the Linux test guest (linux-guest/build.sh $guest)"
"$top/linux-guest/build.sh" "$guest"

started=0
child=
stop_daemons() {
    trap '' INT TERM
    if [ "$started" = 1 ]; then
        echo "build-and-test: stopping the libvirt daemons"
        bash "$here/daemons.sh" stop || true
    fi
}
# A signal goes to the test too, whose own traps clean up its domains.
on_signal() {
    trap '' INT TERM
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    exit "$1"
}
trap stop_daemons EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

if [ "$(bash "$here/daemons.sh" status | grep -c ': running')" = 2 ]; then
    echo "build-and-test: both libvirt daemons already run (left running afterwards)"
else
    echo "build-and-test: starting the libvirt daemons (libvirt/daemons.sh start)"
    started=1
    bash "$here/daemons.sh" start
fi
rc=0
# In the background, so that a signal reaches on_signal at once.
bash "$here/migrate-test.sh" "$@" &
child=$!
wait "$child" || rc=$?
child=
exit "$rc"
