#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Rebuilds the seed corpora from a real migration: two build/hintmig-vm
# processes (16 MiB, virtio-balloon with free-page-hint), a recording proxy
# between them, the source's state file after it; then make_corpus.py.
#   tests/fuzz/record-corpus.sh [OUTDIR]   (default tests/fuzz/corpus)
# The hmp corpus is hand-written and left alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-tests/fuzz/corpus}
vm=build/hintmig-vm hmp=build/hintmig-hmp
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
uuid=6e2d1a3c-1111-4222-8333-444455556666
port=$((20000 + RANDOM % 20000))

common=(-m 16M -uuid "$uuid" -device virtio-balloon,free-page-hint=on -daemonize)
$vm "${common[@]}" --workload idle -monitor "unix:$tmp/src.sock,server,nowait" \
    -pidfile "$tmp/src.pid"
$vm "${common[@]}" -incoming "tcp:127.0.0.1:$port" \
    -monitor "unix:$tmp/dst.sock,server,nowait" -pidfile "$tmp/dst.pid"
pids+=("$(cat "$tmp/src.pid")" "$(cat "$tmp/dst.pid")")
python3 tests/fuzz/record_proxy.py $((port + 1)) "$port" "$tmp/stream" &
pids+=($!)
sleep 1.5     # the guest boots and its balloon driver comes up
$hmp "$tmp/src.sock" "migrate_set_capability free-page-hint on" \
    "migrate tcp:127.0.0.1:$((port + 1))" "x-save-state $tmp/src.bin" >/dev/null
sleep 0.5
python3 tests/fuzz/make_corpus.py "$tmp/stream.0.fwd" "$tmp/stream.0.ret" \
    "$tmp/src.bin" "$out"
echo "record-corpus: corpora written to $out"
