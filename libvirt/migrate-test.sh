#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Migrates the Linux test guest (linux-guest/) with `virsh migrate` between
# the two libvirt daemons of libvirt/daemons.sh ("a" and "b", both on this
# machine), the guest defined from libvirt/hintmig-guest.xml (QEMU 7.2 with
# hintmig's series as <emulator>, TCG, 512 MiB, memcheck fill=300M
# keep=64M wss=16M rate=4M interval=1s), and judges every migration by
# the guest itself and by hintmig:
#   - virsh migrate exits 0; `virsh domstate` is "running" on the
#     destination and "shut off" (or the domain is gone) on the source;
#   - the destination's serial log (each side writes its own file) shows
#     new "memcheck: verdict OK" lines, the last with a pass number the
#     source never printed, and no FAIL, panic or Oops;
#   - `virsh qemu-monitor-command --hmp 'info migrate'` on the destination
#     says "verify: OK" and "wire bytes: N kbytes" with N at most 1.15 x
#     the guest's memory in use (guest RAM minus memcheck's mem_free_kib
#     from its ready line);
#   - `virsh domjobinfo --completed` on the source reports the job.
# While a migration runs, `virsh domjobinfo` on the source is polled; the
# first sample with Data processed > 0 is printed, and for the slowed
# migrations (--bandwidth) one must be caught and must show Data
# processed, Data remaining and Data total.
#
# Cases:
#   live_then_postcopy  a->b `migrate --live` over tcp://127.0.0.1;
#                       b->a `migrate --live --postcopy --bandwidth SLOW`
#                       over unix:// (a socket under the temp dir), with
#                       `virsh migrate-postcopy` on b once domjobinfo shows
#                       data moving, then `migrate-setspeed` back to full
#                       speed; the destination must report postcopy;
#                       a->b `--live --postcopy --postcopy-after-precopy`
#                       over tcp (postcopy may or may not happen: see
#                       "Known" below)
#   abort_then_migrate  a->b with --bandwidth SLOW, `virsh domjobabort` on a
#                       once data moves: virsh migrate fails, the guest runs
#                       on a and prints a new OK verdict, nothing is left on
#                       b; then a->b at full speed with `--parallel
#                       --parallel-connections 2` (QEMU's multifd, which the
#                       adapter maps onto hintmig's multifd-channels) and
#                       `--auto-converge` (hintmig's own), checked as above
#                       and by "multifd channels: 2" on b
# Every migration passes --persistent, so the source keeps the domain
# (shut off) and with it `domjobinfo --completed`.  The domain is destroyed
# and undefined on both daemons before and after each case, whatever
# happens.
#
# Usage: libvirt/migrate-test.sh [--list] [--help] [CASE...]
#   no CASE runs them all.  The daemons must run (libvirt/daemons.sh start,
#   as libvirt/build-and-test.sh does); the guest is built if needed
#   (linux-guest/build.sh, a no-op when up to date); QEMU is not built.
#
# Prints PASS: / FAIL: (reason) / SKIP: (reason) per case and a summary
# line per migration, then every case's duration,
# "TESTS: N run, N failed, N skipped" and "N passed, N failed"; exits 1 if
# a case failed.
#
# Known: with --postcopy-after-precopy virsh itself calls migrate-postcopy
# on the second MIGRATION_ITERATION event, which libvirt derives from
# QEMU's MIGRATION_PASS (the adapter sends one at each dirty sync).  When
# the precopy converges before that request reaches QEMU, the migration
# completes as precopy.  Which one happened is in the summary
# ("postcopy=yes|no"); both pass.
#
# Environment:
#   HINTMIG_QEMU             <emulator> (default build-qemu/prefix/bin/
#                            qemu-system-x86_64)
#   HINTMIG_LINUX_GUEST_DIR  guest cache (default build-linux-guest; the
#                            guest is in its guest/)
#   HINTMIG_LIBVIRT_DIR      the daemons' folder (see libvirt/daemons.sh)
#   HINTMIG_LIBVIRT_SLOW_BW  MiB/s of the slowed migrations (default 4: the
#                            512 MiB guest goes as about 30 MiB of compressed
#                            data, under 3 s at 10 MiB/s)
#   HINTMIG_TEST_TIMEOUT     seconds for each wait on a guest or a migration
#                            (default 120)
#   HINTMIG_TEST_VERDICT_TIMEOUT  seconds for the new verdicts after a
#                            migration (default 45)
#   HINTMIG_KEEP=1           keep each case's temp dir (XML, serial logs,
#                            virsh output) and say where
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
top=$(cd "$here/.." && pwd)

CASES=(live_then_postcopy abort_then_migrate)
T=${HINTMIG_TEST_TIMEOUT:-120}
TV=${HINTMIG_TEST_VERDICT_TIMEOUT:-45}
SLOW_BW=${HINTMIG_LIBVIRT_SLOW_BW:-4}
FULL_BW=1024                    # MiB/s, migrate-setspeed after the switch
VERDICTS=2                      # new OK verdicts required after a migration
MAX_WIRE_PCT=115                # wire bytes <= 1.15 x memory in use
VIRSH_TIMEOUT=60                # any single virsh call but migrate
MEM_MIB=512
CMDLINE="console=ttyS0 panic=-1 loglevel=4 memcheck.fill=300M memcheck.keep=64M memcheck.wss=16M memcheck.rate=4M memcheck.interval=1s"
QEMU_BIN=${HINTMIG_QEMU:-$top/build-qemu/prefix/bin/qemu-system-x86_64}
GUEST=${HINTMIG_LINUX_GUEST_DIR:-$top/build-linux-guest}/guest
# Serial lines that mean the guest is broken (as tests/qemu/lib.sh).
BROKEN='Kernel panic|BUG:|Oops|memcheck: error|memcheck exited|insmod .* failed|^memcheck: verdict FAIL'

usage() { sed -n '3,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }

want=()
for arg in "$@"; do
    case $arg in
        -h|--help) usage; exit 0 ;;
        --list) printf '%s\n' "${CASES[@]}"; exit 0 ;;
        -*) echo "migrate-test.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
        *)
            if [[ " ${CASES[*]} " != *" $arg "* ]]; then
                echo "migrate-test.sh: unknown case '$arg' (--list shows them)" >&2
                exit 2
            fi
            want+=("$arg") ;;
    esac
done
[ ${#want[@]} -gt 0 ] || want=("${CASES[@]}")
case $SLOW_BW in ''|*[!0-9]*|0) echo "migrate-test.sh: HINTMIG_LIBVIRT_SLOW_BW must be a positive integer" >&2; exit 2 ;; esac

# ---- helpers ----------------------------------------------------------------

log() { printf '  %s\n' "$*"; }

URI_A=
URI_B=
uri_of() { if [ "$1" = a ]; then printf '%s' "$URI_A"; else printf '%s' "$URI_B"; fi; }
# The URI the source's daemon connects to (virsh migrate's DESTURI).
peer_uri() { local u; u=$(uri_of "$1"); printf 'qemu+unix%s' "${u#qemu}"; }
other() { if [ "$1" = a ]; then echo b; else echo a; fi; }
# vsh SIDE ARGS...: virsh on daemon SIDE, bounded.
vsh() {
    local side=$1
    shift
    timeout "$VIRSH_TIMEOUT" virsh -c "$(uri_of "$side")" "$@"
}
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- helpers used inside a case (each case runs in its own subshell) --------

# die REASON: the case fails; shows the end of every serial log.
die() {
    local f
    [ -s "$REASON" ] || printf '%s\n' "$(tr '\n' ' ' <<<"$*" | sed 's/ *$//')" > "$REASON"
    for f in "$TMPD"/serial.*; do
        [ -s "$f" ] || continue
        echo "  --- last lines of ${f##*/}"
        tail -n 6 "$f" | tr -d '\r' | sed 's/^/  | /'
    done
    exit 1
}

# The case's state: the domain, the side it runs on and its serial log.
DOM=
TMPD=
CUR=a
CUR_SERIAL=
INUSE_KIB=
LEG=0
MIG_PID=
MIG_SRC=
MIG_RC=

# remove_domain: destroys and undefines DOM on both daemons (no error
# if it is not there).
remove_domain() {
    local s
    for s in a b; do
        vsh "$s" destroy "$DOM" >/dev/null 2>&1 || true
        vsh "$s" undefine "$DOM" >/dev/null 2>&1 || true
    done
}

# The case's EXIT trap: a migration still running is aborted, then the
# domain goes on both sides, then the temp dir.
case_cleanup() {
    # A signal now (the main shell sends TERM) must not cut this short.
    trap '' INT TERM
    set +e
    if [ -n "$MIG_PID" ] && alive "$MIG_PID"; then
        vsh "$MIG_SRC" domjobabort "$DOM" >/dev/null 2>&1 || true
        for _ in $(seq 1 100); do alive "$MIG_PID" || break; sleep 0.2; done
        kill "$MIG_PID" 2>/dev/null || true
    fi
    [ -n "$DOM" ] && remove_domain
    if [ -n "$TMPD" ] && [ -d "$TMPD" ]; then
        if [ "${HINTMIG_KEEP:-0}" = 1 ]; then
            echo "  kept $TMPD" >&2
        else
            rm -rf "$TMPD"
        fi
    fi
}

# last_pass FILE: pass number of the last verdict line, 0 if none.
last_pass() {
    local v
    v=$(tr -d '\r' < "$1" 2>/dev/null | grep '^memcheck: verdict ' | tail -n1 |
        sed -n 's/.* pass=\([0-9]*\).*/\1/p') || true
    printf '%s' "${v:-0}"
}
last_verdict() { tr -d '\r' < "$1" | grep '^memcheck: verdict ' | tail -n1 || true; }

# wait_serial FILE REGEX COUNT TIMEOUT [AFTER_LINE]: until COUNT lines past
# AFTER_LINE match; fails at once on a broken guest, after TIMEOUT seconds.
wait_serial() {
    local f=$1 re=$2 count=$3 deadline=$((SECONDS + $4)) after=${5:-0} n bad
    while :; do
        n=$(tail -n "+$((after + 1))" "$f" 2>/dev/null | tr -d '\r' | grep -cE "$re") || true
        [ "${n:-0}" -ge "$count" ] && return 0
        bad=$(tr -d '\r' < "$f" 2>/dev/null | grep -m1 -E "$BROKEN") || true
        [ -z "$bad" ] || die "${f##*/}: guest says: $bad"
        [ "$SECONDS" -lt "$deadline" ] ||
            die "${f##*/}: no '$re' (x$count after line $after) within $4 s"
        sleep 0.25
    done
}

# wait_new_verdicts FILE COUNT TIMEOUT AFTER_LINE MIN_PASS: at least COUNT
# OK verdicts after AFTER_LINE, the last with pass > MIN_PASS (memcheck's
# pass counter travels with the guest: a pass the source never printed was
# verified on the destination).
wait_new_verdicts() {
    local f=$1 n=$2 deadline=$((SECONDS + $3)) after=$4 min=$5
    while :; do
        wait_serial "$f" '^memcheck: verdict OK ' "$n" $((deadline - SECONDS)) "$after"
        [ "$(last_pass "$f")" -gt "$min" ] && return 0
        n=$((n + 1))
    done
}

# wait_domstate SIDE STATE TIMEOUT
wait_domstate() {
    local deadline=$((SECONDS + $3)) st
    while :; do
        st=$(vsh "$1" domstate "$DOM" 2>&1 | head -n1) || true
        [ "$st" = "$2" ] && return 0
        [ "$SECONDS" -lt "$deadline" ] || die "$1: domstate '$st', not '$2' after $3 s"
        sleep 0.25
    done
}

# boot: defines DOM on a from the template, starts it, waits for memcheck's
# ready line; sets INUSE_KIB.
boot() {
    local ready free
    CUR=a
    CUR_SERIAL=$TMPD/serial.0.a
    bash "$here/guest-xml.sh" "$DOM" "$MEM_MIB" "$GUEST" "$CMDLINE" "$QEMU_BIN" \
        "$CUR_SERIAL" > "$TMPD/domain.xml" || die "libvirt/guest-xml.sh failed"
    vsh a define "$TMPD/domain.xml" >/dev/null || die "virsh define on a failed"
    local err
    err=$(vsh a start "$DOM" 2>&1) || die "virsh start on a failed: $err"
    wait_serial "$CUR_SERIAL" '^memcheck: ready ' 1 "$T"
    ready=$(tr -d '\r' < "$CUR_SERIAL" | grep -m1 '^memcheck: ready ')
    free=$(sed -n 's/.* mem_free_kib=\([0-9]*\).*/\1/p' <<<"$ready")
    [ -n "$free" ] || die "no mem_free_kib in '$ready'"
    INUSE_KIB=$((MEM_MIB * 1024 - free))
    log "a: $ready"
    log "in use: $((MEM_MIB * 1024)) KiB RAM - $free KiB free = $INUSE_KIB KiB;" \
        "wire bytes allowed: $((INUSE_KIB * MAX_WIRE_PCT / 100)) KiB"
}

# start_migration TRANSPORT [VIRSH_FLAG...]: `virsh migrate --live
# --persistent FLAGS` of DOM from CUR to the other side, in the background
# (MIG_PID), over tcp://127.0.0.1:PORT or unix://TMPD/legN.sock.  The
# destination's XML is the source's `dumpxml --migratable` with the serial
# log's path changed to a new file.
start_migration() {
    local transport=$1 xml port uri_args
    shift
    MIG_SRC=$CUR
    MIG_DST=$(other "$CUR")
    LEG=$((LEG + 1))
    NEW_SERIAL=$TMPD/serial.$LEG.$MIG_DST
    xml=$(vsh "$MIG_SRC" dumpxml --migratable "$DOM") || die "dumpxml --migratable on $MIG_SRC failed"
    [[ $xml == *"$CUR_SERIAL"* ]] || die "dumpxml on $MIG_SRC does not name $CUR_SERIAL"
    printf '%s\n' "${xml//"$CUR_SERIAL"/"$NEW_SERIAL"}" > "$TMPD/leg$LEG.xml"
    case $transport in
        tcp) port=$(free_port)
             uri_args=(--migrateuri "tcp://127.0.0.1:$port" --listen-address 127.0.0.1) ;;
        unix) uri_args=(--migrateuri "unix://$TMPD/leg$LEG.sock") ;;
        *) die "start_migration: bad transport $transport" ;;
    esac
    MIG_DESC="$MIG_SRC->$MIG_DST $transport${*:+ $*}"
    log "$MIG_SRC -> $MIG_DST: virsh migrate --live --persistent${*:+ $*} $DOM $(peer_uri "$MIG_DST")" \
        "${uri_args[*]} --xml leg$LEG.xml"
    SAMPLE=
    MIG_RC=
    MIG_OUT=$TMPD/leg$LEG.out
    MIG_T0=$(now)
    timeout $((T + 60)) virsh -c "$(uri_of "$MIG_SRC")" migrate --live --persistent "$@" \
        "$DOM" "$(peer_uri "$MIG_DST")" "${uri_args[@]}" --xml "$TMPD/leg$LEG.xml" \
        > "$MIG_OUT" 2>&1 &
    MIG_PID=$!
}

# jobinfo_moving TEXT: domjobinfo TEXT shows an unbounded job with data sent.
jobinfo_moving() {
    awk '/^Job type:/ && $3 == "Unbounded" { u = 1 }
         /^Data processed:/ && $3 + 0 > 0 { d = 1 }
         END { exit !(u && d) }' <<<"$1"
}

# poll_migration UNTIL TIMEOUT: polls the source's domjobinfo while virsh
# migrate runs and keeps the first sample with data moving (SAMPLE).
# UNTIL=sample returns once there is one (fails if the migration ended
# first); UNTIL=end returns when virsh migrate has exited (MIG_RC; the
# migration is aborted and the case fails after TIMEOUT).
poll_migration() {
    local until=$1 deadline=$((SECONDS + $2)) info
    while alive "$MIG_PID"; do
        if [ -z "$SAMPLE" ]; then
            info=$(vsh "$MIG_SRC" domjobinfo "$DOM" 2>/dev/null) || true
            if jobinfo_moving "$info"; then
                SAMPLE=$info
                SAMPLE_AT=$(elapsed "$MIG_T0")
            fi
        fi
        [ "$until" = sample ] && [ -n "$SAMPLE" ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            vsh "$MIG_SRC" domjobabort "$DOM" >/dev/null 2>&1 || true
            die "$MIG_DESC: no ${until/end/end of the migration} within $2 s (aborted)"
        fi
        sleep 0.2
    done
    MIG_RC=0
    wait "$MIG_PID" || MIG_RC=$?
    MIG_PID=
    MIG_SECS=$(elapsed "$MIG_T0")
    if [ "$until" = sample ]; then
        die "$MIG_DESC: ended (virsh status $MIG_RC after $MIG_SECS s) before domjobinfo showed data moving: $(tr '\n' ' ' < "$MIG_OUT")"
    fi
}

# show_sample REQUIRED: prints SAMPLE's progress lines; REQUIRED=1 fails
# without a sample or without Data processed/remaining/total in it.
show_sample() {
    if [ -z "$SAMPLE" ]; then
        [ "$1" = 1 ] && die "$MIG_DESC: no domjobinfo sample with data moving"
        log "$MIG_SRC: domjobinfo: no sample with data moving (the migration was too quick)"
        return 0
    fi
    local k
    for k in 'Data processed' 'Data remaining' 'Data total'; do
        grep -q "^$k:" <<<"$SAMPLE" || die "$MIG_SRC: domjobinfo during the migration has no '$k'"
    done
    log "$MIG_SRC: domjobinfo during the migration (t=${SAMPLE_AT} s):"
    grep -E '^(Job type|Operation|Time elapsed|Data |Memory bandwidth|Postcopy requests)' <<<"$SAMPLE" |
        sed 's/  */ /g; s/^/      /'
}

# check_migrated POSTCOPY [CONNS]: after virsh migrate ended (poll_migration
# end): all the checks of the header.  POSTCOPY: yes (the destination must
# report postcopy), any.  CONNS: the destination must report that many
# connections carried RAM.  Then DOM is on the destination.
check_migrated() {
    local want_pc=$1 conns=${2:-} src=$MIG_SRC dst=$MIG_DST min after=0 st info hm verify wire pc done_info
    [ "$MIG_RC" = 0 ] || die "$MIG_DESC: virsh migrate failed (status $MIG_RC): $(tr '\n' ' ' < "$MIG_OUT")"
    min=$(last_pass "$CUR_SERIAL")
    st=$(tr -d '\r' < "$CUR_SERIAL" | grep -m1 -E "$BROKEN") || true
    [ -z "$st" ] || die "$src: guest says: $st"
    wait_domstate "$dst" running 30
    st=$(vsh "$src" domstate "$DOM" 2>&1 | head -n1) || true
    case $st in
        "shut off"|*"failed to get domain"*|*"Domain not found"*) ;;
        *) die "$src: domstate '$st' after the migration, wanted shut off or gone" ;;
    esac
    info=$(vsh "$dst" qemu-monitor-command "$DOM" --hmp 'info migrate' | tr -d '\r') ||
        die "$dst: qemu-monitor-command info migrate failed"
    hm=$(sed -n '/^hintmig:/,$p' <<<"$info" | grep -v '^$') || true
    [ -n "$hm" ] || die "$dst: info migrate has no hintmig lines (was hintmig on?)"
    sed 's/^/  '"$dst"'| /' <<<"$hm"
    verify=$(grep -m1 '^verify:' <<<"$hm") || true
    [[ $verify == "verify: OK"* ]] || die "$dst: info migrate says '${verify:-no verify: line}'"
    if [ -n "$conns" ] && ! grep -q "^multifd channels: $conns " <<<"$hm"; then
        die "$dst: info migrate has no 'multifd channels: $conns' line"
    fi
    wire=$(sed -n 's/^wire bytes: \([0-9]*\) kbytes$/\1/p' <<<"$hm")
    [ -n "$wire" ] || die "$dst: no 'wire bytes' line in info migrate"
    pc=no
    grep -q '^postcopy remaining:' <<<"$hm" && pc=yes
    [ "$want_pc" = yes ] && [ "$pc" != yes ] && die "$MIG_DESC: the destination reports no postcopy"
    [ $((wire * 100)) -le $((INUSE_KIB * MAX_WIRE_PCT)) ] ||
        die "$MIG_DESC: wire bytes $wire KiB > 1.15 x in use ($INUSE_KIB KiB)"
    wait_new_verdicts "$NEW_SERIAL" "$VERDICTS" "$TV" "$after" "$min"
    log "$dst: $(last_verdict "$NEW_SERIAL") (source's last pass: $min)"
    done_info=$(vsh "$src" domjobinfo "$DOM" --completed 2>&1) ||
        die "$src: domjobinfo --completed failed: $done_info"
    grep -Eq '^Job type: +Completed' <<<"$done_info" ||
        die "$src: domjobinfo --completed shows no completed job: $(head -n1 <<<"$done_info")"
    log "$src: domjobinfo --completed:"
    grep -E '^(Time elapsed|Data |Memory bandwidth|Total downtime|Postcopy requests)' <<<"$done_info" |
        sed 's/  */ /g; s/^/      /'
    echo "  summary: $CASE: $MIG_DESC: ${MIG_SECS} s, wire $wire KiB / in use $INUSE_KIB KiB =" \
         "$(awk -v w="$wire" -v u="$INUSE_KIB" 'BEGIN { printf "%.2fx", w / u }'), postcopy=$pc," \
         "$verify, $dst running, $src ${st}," \
         "$(sed -n 's/.* \(pass=[0-9]*\).*/\1/p' <<<"$(last_verdict "$NEW_SERIAL")") OK"
    CUR=$dst
    CUR_SERIAL=$NEW_SERIAL
}

# ---- cases ------------------------------------------------------------------

case_live_then_postcopy() {
    boot
    # 1. a -> b, precopy over TCP at full speed.
    start_migration tcp
    poll_migration end "$T"
    show_sample 0
    check_migrated any

    # 2. b -> a, postcopy over a UNIX socket, switched by hand.
    start_migration unix --postcopy --bandwidth "$SLOW_BW"
    poll_migration sample "$T"
    show_sample 1
    local err deadline reason
    err=$(vsh "$MIG_SRC" migrate-postcopy "$DOM" 2>&1) ||
        die "$MIG_SRC: virsh migrate-postcopy failed: $err"
    log "$MIG_SRC: virsh migrate-postcopy $DOM"
    # Once the source is paused in post-copy, the rest may go at full speed
    # (hintmig's postcopy obeys max-bandwidth, not max-postcopy-bandwidth).
    deadline=$((SECONDS + 60))
    while alive "$MIG_PID"; do
        reason=$(vsh "$MIG_SRC" domstate --reason "$DOM" 2>/dev/null | head -n1) || true
        if [[ $reason == *post-copy* ]]; then
            log "$MIG_SRC: domstate --reason: $reason"
            vsh "$MIG_SRC" migrate-setspeed "$DOM" "$FULL_BW" >/dev/null 2>&1 &&
                log "$MIG_SRC: virsh migrate-setspeed $DOM $FULL_BW"
            break
        fi
        [ "$SECONDS" -lt "$deadline" ] || die "$MIG_SRC: not in post-copy 60 s after migrate-postcopy (domstate: $reason)"
        sleep 0.2
    done
    poll_migration end "$T"
    check_migrated yes

    # 3. a -> b, postcopy-after-precopy over TCP.
    start_migration tcp --postcopy --postcopy-after-precopy
    poll_migration end "$T"
    show_sample 0
    check_migrated any
}

case_abort_then_migrate() {
    boot
    local after min st deadline line
    # 1. a -> b slowed, aborted once data moves.
    start_migration tcp --bandwidth "$SLOW_BW"
    poll_migration sample "$T"
    show_sample 1
    vsh a domjobabort "$DOM" >/dev/null || die "a: virsh domjobabort failed"
    log "a: virsh domjobabort $DOM"
    after=$(wc -l < "$CUR_SERIAL")
    min=$(last_pass "$CUR_SERIAL")
    poll_migration end 60
    [ "$MIG_RC" != 0 ] ||
        die "the migration completed before domjobabort took effect (lower HINTMIG_LIBVIRT_SLOW_BW)"
    log "a: virsh migrate: status $MIG_RC after $MIG_SECS s: $(grep -m1 . "$MIG_OUT")"
    wait_domstate a running 30
    wait_new_verdicts "$CUR_SERIAL" 1 "$TV" "$after" "$min"
    log "a: running; $(last_verdict "$CUR_SERIAL") (last pass at the abort: $min)"
    line=$(vsh a qemu-monitor-command "$DOM" --hmp 'info migrate' | tr -d '\r' |
           grep -E '^(Migration status|hintmig:|hintmig error|wire bytes)' | paste -sd ';' | sed 's/;/; /g') || true
    log "a: info migrate: $line"
    # Nothing on b: neither a running nor a defined domain.
    deadline=$((SECONDS + 30))
    while :; do
        st=$(vsh b domstate "$DOM" 2>&1 | head -n1) || true
        [[ $st == *"failed to get domain"* || $st == *"Domain not found"* ]] && break
        [ "$SECONDS" -lt "$deadline" ] || die "b still has $DOM after the abort: domstate '$st'"
        sleep 0.25
    done
    log "b: no domain $DOM (domstate: $st)"
    echo "  summary: $CASE: $MIG_DESC: aborted after $MIG_SECS s, a running," \
         "$(sed -n 's/.* \(pass=[0-9]*\).*/\1/p' <<<"$(last_verdict "$CUR_SERIAL")") OK on a, nothing on b"

    # 2. a -> b at full speed, over two connections.
    start_migration tcp --parallel --parallel-connections 2 --auto-converge
    poll_migration end "$T"
    show_sample 0
    check_migrated any 2
}

# ---- runner -----------------------------------------------------------------

passed=0
failed=0
skipped=0
durations=()

finish() {
    local d
    if [ ${#durations[@]} -gt 0 ]; then
        echo "durations:"
        for d in "${durations[@]}"; do echo "  $d"; done
    fi
    echo "TESTS: $((passed + failed)) run, $failed failed, $skipped skipped"
    echo "$passed passed, $failed failed"
}
case_pid=
# A signal stops the running case, whose own trap cleans up: it runs once
# the case's current command is over (every one of them is bounded; virsh
# migrate runs in the background and is aborted by the cleanup).
on_signal() {
    trap '' INT TERM
    if [ -n "$case_pid" ]; then
        kill -TERM "$case_pid" 2>/dev/null || true
        wait "$case_pid" 2>/dev/null || true
        echo "FAIL: $CASE (interrupted)"
        failed=$((failed + 1))
    fi
    exit "$1"
}
trap finish EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

setup_error=
if ! command -v virsh >/dev/null; then
    setup_error="no virsh (libvirt/daemons.sh start installs libvirt-clients)"
elif ! URI_A=$(bash "$here/daemons.sh" uri a) || ! URI_B=$(bash "$here/daemons.sh" uri b); then
    setup_error="libvirt/daemons.sh uri failed"
elif ! timeout 30 virsh -c "$URI_A" list --all >/dev/null 2>&1 ||
     ! timeout 30 virsh -c "$URI_B" list --all >/dev/null 2>&1; then
    setup_error="the libvirt daemons do not answer ($URI_A, $URI_B): run libvirt/daemons.sh start"
elif [ ! -x "$QEMU_BIN" ]; then
    setup_error="no QEMU at $QEMU_BIN (qemu/build.sh builds it)"
elif ! "$top/linux-guest/build.sh" "$GUEST" >/dev/null; then
    setup_error="guest build failed (linux-guest/build.sh $GUEST)"
fi
if [ -n "$setup_error" ]; then
    echo "FAIL: setup ($setup_error)"
    failed=$((failed + 1))
    exit 1
fi
echo "qemu: $QEMU_BIN ($("$QEMU_BIN" --version | head -n1)); libvirt $(virsh --version)"
echo "daemons: a=$URI_A b=$URI_B"

results=$(mktemp -d "${TMPDIR:-/tmp}/hintmig-libvirt-results.XXXXXX")
trap 'finish; rm -rf "$results"' EXIT

for CASE in "${want[@]}"; do
    REASON=$results/$CASE.reason
    echo "--- $CASE"
    t0=$(now)
    (
        set -eE
        trap '[ -s "$REASON" ] || echo "unexpected failure at line $LINENO: $BASH_COMMAND" > "$REASON"' ERR
        trap case_cleanup EXIT
        trap 'exit 143' TERM
        DOM=hintmig-test-${CASE//_/-}
        TMPD=$(mktemp -d "${TMPDIR:-/tmp}/hintmig-libvirt.XXXXXX")
        remove_domain       # left over from an interrupted run
        "case_$CASE"
    ) &
    case_pid=$!
    rc=0
    wait "$case_pid" || rc=$?
    case_pid=
    secs=$(elapsed "$t0")
    reason=$(cat "$REASON" 2>/dev/null || true)
    case $rc in
        0) echo "PASS: $CASE"; passed=$((passed + 1)) ;;
        77) echo "SKIP: $CASE (${reason:-no reason given})"; skipped=$((skipped + 1)) ;;
        143) echo "FAIL: $CASE (terminated)"; failed=$((failed + 1)) ;;
        *) echo "FAIL: $CASE (${reason:-exit status $rc})"; failed=$((failed + 1)) ;;
    esac
    durations+=("$(printf '%-20s %6s s' "$CASE" "$secs")")
done

[ "$failed" = 0 ]
