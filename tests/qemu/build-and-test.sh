#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The QEMU adapter's test as meson runs it: builds Debian's QEMU 7.2 with
# hintmig's patch series and this tree's libhintmig (qemu/build.sh; the
# first run downloads the source and takes several minutes, later runs only
# rebuild what changed), then migrates the Linux test guest in every case of
# tests/qemu/migrate-test.sh with hintmig's capabilities on.
#   build-and-test.sh [CASE...]
# Environment: HINTMIG_LINUX_GUEST_DIR (the guest's cache), and everything
# migrate-test.sh reads.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)

case "${1:-}" in
    -h|--help) sed -n '3,10p' "$0"; exit 0 ;;
esac

echo "build-and-test: building QEMU with hintmig (qemu/build.sh)"
bash "$top/qemu/build.sh"
export HINTMIG_QEMU="$top/build-qemu/prefix/bin/qemu-system-x86_64"
# The adapter is what this test is for: never fall back to a plain run.
export HINTMIG_QEMU_CAPS=on
exec bash "$here/migrate-test.sh" "$@"
