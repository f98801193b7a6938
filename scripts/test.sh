#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Installs what is missing, builds, and runs every test.
#   scripts/test.sh             normal build (build/)
#   scripts/test.sh --sanitize  ASan + UBSan build (build-sanitize/)
set -euo pipefail
cd "$(dirname "$0")/.."

builddir=build
opts=()
case "${1:-}" in
    "") ;;
    --sanitize)
        builddir=build-sanitize
        opts=(-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug)
        export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
        # ASan makes the 2 GiB guests several times slower (a fill-free case
        # took over 600 s here on a loaded machine): Check's per-test
        # timeouts stretch with it (meson's own are set for this build).
        export CK_TIMEOUT_MULTIPLIER=3
        ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

scripts/install-deps.sh
[ -f "$builddir/build.ninja" ] || meson setup "$builddir" "${opts[@]}" >/dev/null
meson compile -C "$builddir"

rc=0
meson test -C "$builddir" --print-errorlogs --num-processes 1 || rc=$?

# One closing line, counted from every test binary's own summary.
awk '/^TESTS: [0-9]+ run, [0-9]+ failed, [0-9]+ skipped/ {
        run += $2; failed += $4; skipped += $6 }
     /^SKIP: / { print }
     END { printf "tests: %d passed, %d failed, %d skipped\n",
           run - failed, failed, skipped }' "$builddir/meson-logs/testlog.txt"
exit $rc
