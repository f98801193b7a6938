# SPDX-License-Identifier: GPL-2.0-or-later
# Helpers shared by the benchmark scripts (sourced, not run).
# Expects $work (a scratch folder); bench_build sets $vm and $hmp.

# Installs what is missing (stock QEMU too, given "qemu": the baseline),
# builds, and sets $vm and $hmp.
bench_build() {
    scripts/install-deps.sh
    if [ "${1:-}" = qemu ] && ! command -v qemu-system-x86_64 >/dev/null; then
        echo "bench: installing qemu-system-x86 (the baseline)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 >/dev/null
    fi
    [ -f build/build.ninja ] || meson setup build >/dev/null
    meson compile -C build >/dev/null
    vm=build/hintmig-vm
    hmp=build/hintmig-hmp
}

# Polls "info migrate" on monitor socket $1 (hintmig-vm or QEMU) every
# 50 ms, at most $2 times (default 6000), until the migration completes,
# and prints that output; returns 1, the output on stderr, if it failed or
# was cancelled or never ended.
wait_done() {
    local out
    for _ in $(seq 1 "${2:-6000}"); do
        out=$("$hmp" "$1" "info migrate")
        case $(sed -n 's/.*Migration status: \([a-z-]*\).*/\1/p' <<<"$out" | head -1) in
            completed) echo "$out"; return 0 ;;
            failed|cancelled) echo "$out" >&2; return 1 ;;
        esac
        sleep 0.05
    done
    echo "$out" >&2
    return 1
}

# Bytes the loopback interface has sent: both directions of a local migration.
lo_tx() { awk '/^ *lo:/ { sub(/^ *lo:/, ""); print $9 }' /proc/net/dev; }

# A TCP port on 127.0.0.1 that was free a moment ago.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The number after "NAME: " in monitor output on stdin.
field() { sed -n "s/^$1: \([0-9.]*\).*/\1/p" | head -1; }

# Median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# Starts an idle hintmig-vm guest of RAM $1 (monitor $work/$2.sock) and a
# destination for it (monitor $work/$3.sock) listening on a free port of
# 127.0.0.1; prints the port.
idle_pair() {
    local p; p=$(port)
    "$vm" -m "$1" --workload idle -monitor "unix:$work/$2.sock,server,nowait" -daemonize
    "$vm" -m "$1" -incoming "tcp:127.0.0.1:$p" \
        -monitor "unix:$work/$3.sock,server,nowait" -daemonize
    echo "$p"
}

# Sends quit to every monitor socket in $work (hintmig-vm or QEMU).
quit_all() {
    for s in "$work"/*.sock; do
        [ -S "$s" ] && timeout 5 "$hmp" "$s" quit >/dev/null 2>&1 || true
        rm -f "$s"
    done
}

# Stock QEMU, the precopy baseline: a paused source whose RAM is the image
# $1 (size $2), a destination waiting with -incoming defer, monitors
# $work/qs.sock and $work/qd.sock, multifd with 2 channels and compression
# $3 (none or zstd), no bandwidth cap, downtime-limit 300.  $4 is the
# accelerator; $5 and $6, when given, prefix each side's command (the link
# emulator's in_src and in_dst).
qemu_multifd_pair() {
    local common=(-machine "pc,accel=$4" -m "$2" -S -display none -nodefaults -daemonize)
    ${5:-} qemu-system-x86_64 "${common[@]}" \
        -object "memory-backend-file,id=ram0,size=$2,mem-path=$1,share=off" \
        -machine memory-backend=ram0 -monitor "unix:$work/qs.sock,server,nowait"
    ${6:-} qemu-system-x86_64 "${common[@]}" \
        -object "memory-backend-ram,id=ram0,size=$2" -machine memory-backend=ram0 \
        -incoming defer -monitor "unix:$work/qd.sock,server,nowait"
    for s in qs qd; do
        "$hmp" "$work/$s.sock" "migrate_set_capability multifd on" \
            "migrate_set_parameter multifd-channels 2" \
            "migrate_set_parameter multifd-compression $3" >/dev/null
    done
    "$hmp" "$work/qs.sock" "migrate_set_parameter max-bandwidth 100G" \
        "migrate_set_parameter downtime-limit 300" >/dev/null
}

# Stock QEMU on the fill-free shape: a 2 GiB, 2-vCPU Linux guest built by
# bench/linux-guest/build.sh into $work/guest writes 1200 MiB into tmpfs,
# deletes it and idles, then migrates on loopback.  TCG by default: on the
# development machine /dev/kvm opens, but a KVM guest never runs (no nested
# virtualisation); BENCH_ACCEL=kvm to try.
#   qemu_fill_free_run on|off(free-page-hint) 0|1(postcopy)
#   -> "time_ms wire_bytes in_use_bytes"
qemu_fill_free_run() {
    local accel=${BENCH_ACCEL:-tcg}
    local p; p=$(port)
    local common=(-machine "q35,accel=$accel" -m 2G -smp 2 -display none -nodefaults
                  -object iothread,id=io0
                  -device "virtio-balloon-pci,free-page-hint=$1,iothread=io0"
                  -kernel "$work/guest/vmlinuz" -initrd "$work/guest/initrd.gz"
                  -append "console=ttyS0 quiet" -daemonize)
    rm -f "$work/serial.log"
    qemu-system-x86_64 "${common[@]}" -serial "file:$work/serial.log" \
        -monitor "unix:$work/src.sock,server,nowait"
    qemu-system-x86_64 "${common[@]}" -serial null -incoming defer \
        -monitor "unix:$work/dst.sock,server,nowait"
    for _ in $(seq 1 600); do grep -q READY "$work/serial.log" 2>/dev/null && break; sleep 1; done
    grep -q READY "$work/serial.log" || { echo "bench: the Linux guest did not boot" >&2; exit 1; }
    local total free
    total=$(awk '/MemTotal/ { print $2 }' "$work/serial.log")
    free=$(awk '/MemFree/ { print $2 }' "$work/serial.log")
    "$hmp" "$work/src.sock" "migrate_set_parameter max-bandwidth 100G" >/dev/null
    if [ "$2" = 1 ]; then
        "$hmp" "$work/src.sock" "migrate_set_capability postcopy-ram on" >/dev/null
        "$hmp" "$work/dst.sock" "migrate_set_capability postcopy-ram on" >/dev/null
    fi
    "$hmp" "$work/dst.sock" "migrate_incoming tcp:127.0.0.1:$p" >/dev/null
    local tx0; tx0=$(lo_tx)
    "$hmp" "$work/src.sock" "migrate -d tcp:127.0.0.1:$p" >/dev/null
    if [ "$2" = 1 ]; then
        "$hmp" "$work/src.sock" "migrate_start_postcopy" >/dev/null
    fi
    local out
    out=$(wait_done "$work/src.sock") || exit 1
    local tx1; tx1=$(lo_tx)
    echo "$(sed -n 's/^total time: \([0-9]*\).*/\1/p' <<<"$out") $((tx1 - tx0)) $(( (total - free) * 1024 ))"
    quit_all
}

# hintmig on the fill-free shape: a 2 GiB guest that wrote and freed 1200
# MiB, migrated on loopback (expects $vm, the hintmig-vm binary).
#   hintmig_fill_free_run on|off(free-page-hint) 0|1(postcopy)
#   -> "time_ms downtime_ms wire_bytes in_use_bytes lazyfree_kb lo_bytes"
#   (wire_bytes: what hintmig counts; lo_bytes: the loopback counter, as
#   measured for QEMU, both directions and TCP/IP headers included)
hintmig_fill_free_run() {
    local p; p=$(port)
    build/bench/warm_memory 5G
    "$vm" -m 2G -smp 2 --workload fill-free,fill=1200M \
        -device virtio-balloon,free-page-hint=on -pidfile "$work/src.pid" \
        -monitor "unix:$work/src.sock,server,nowait" -daemonize
    "$vm" -m 2G -smp 2 -device virtio-balloon,free-page-hint=on \
        -incoming "tcp:127.0.0.1:$p" -monitor "unix:$work/dst.sock,server,nowait" -daemonize
    local g free
    for _ in $(seq 1 600); do      # until the fill has been written and freed
        g=$("$hmp" "$work/src.sock" "info guest")
        free=$(sed -n 's/^free memory: \([0-9]*\) of.*/\1/p' <<<"$g")
        [ "$(field 'page writes' <<<"$g")" -gt 307200 ] && [ "$free" -gt 1900 ] && break
        sleep 0.1
    done
    local in_use=$(( (2048 - free) << 20 ))
    "$hmp" "$work/src.sock" "migrate_set_capability free-page-hint $1" >/dev/null
    # zstd forced, as when README's figures for these benchmarks were taken
    # (compress-method auto may send raw on loopback; shaped_link_vs_qemu.sh
    # measures it).
    "$hmp" "$work/src.sock" "migrate_set_parameter compress-method zstd" >/dev/null
    local tx0; tx0=$(lo_tx)
    if [ "$2" = 1 ]; then
        "$hmp" "$work/dst.sock" "migrate_set_capability postcopy-ram on" >/dev/null
        "$hmp" "$work/src.sock" "migrate_set_capability postcopy-ram on" \
            "migrate -d tcp:127.0.0.1:$p" "migrate_start_postcopy" >/dev/null
        wait_done "$work/src.sock" >/dev/null || exit 1
    else
        "$hmp" "$work/src.sock" "migrate tcp:127.0.0.1:$p" >/dev/null
    fi
    local tx1; tx1=$(lo_tx)
    local out; out=$("$hmp" "$work/src.sock" "info migrate")
    grep -q '^verify: OK' <<<"$out" || { echo "bench: migration failed: $out" >&2; exit 1; }
    local lazy; lazy=$(awk '/^LazyFree:/ { print $2 }' "/proc/$(cat "$work/src.pid")/smaps_rollup")
    echo "$(field 'total time' <<<"$out") $(field 'downtime' <<<"$out") \
$(( $(field 'wire bytes' <<<"$out") * 1024 )) $in_use $lazy $((tx1 - tx0))"
    quit_all
}
