#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Makes libhintmig.a from the engine's objects: links them into one
# relocatable object, makes every hidden symbol local (only hintmig_* stay
# global), and archives that.  A VMM linking the engine statically then
# meets none of its internal names.
#   localize-static.sh INPUT.a OUTPUT.a
set -euo pipefail
in=$1 out=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ld -r --whole-archive "$in" -o "$tmp/hintmig.o"
objcopy --localize-hidden "$tmp/hintmig.o"
rm -f "$out"
ar rcsD "$out" "$tmp/hintmig.o"
