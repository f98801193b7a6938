# shellcheck shell=bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Shared helpers for driving QEMU migrations of the Linux test guest
# (linux-guest/): start a source or destination QEMU under TCG, wait for
# memcheck's lines on a serial log, talk QMP through qmp.py, and tear down
# every QEMU started here.  Sourced by tests/qemu/migrate-test.sh and
# qemu/demo.sh; does nothing when sourced but define functions and defaults.
#
#   . tests/qemu/lib.sh
#   hm_setup                  # QEMU binary, hintmig capabilities, guest, temp dir
#   trap hm_cleanup EXIT
#   hm_start src              # a running guest
#   hm_start dst defer        # -incoming defer (or: hm_start dst tcp:127.0.0.1:PORT)
#   hm_wait_ready src 120
#   hm_set_caps src hints; hm_set_caps dst hints
#   hm_qmp dst cmd migrate-incoming uri=tcp:127.0.0.1:$port
#   hm_qmp src cmd migrate uri=tcp:127.0.0.1:$port
#   hm_wait_migrate src completed 180
#
# Each VM has a NAME; its files are $HM_TMP/NAME.serial (ttyS0),
# NAME.qmp (QMP socket) and NAME.err (QEMU's stderr).  The guest's size
# and memcheck options come from HM_MEM, HM_MEMCHECK and HM_BALLOON_HINT
# (defaults below; set them before sourcing, or change them before
# hm_start: both sides of a migration need the same).
#
# Environment:
#   HINTMIG_QEMU            QEMU binary (default: build-qemu/prefix/bin/
#                           qemu-system-x86_64 when it exists, else
#                           /usr/bin/qemu-system-x86_64, installed from Debian
#                           with apt-get when missing)
#   HINTMIG_QEMU_CAPS       on|off|auto (default auto: on when the binary's
#                           query-migrate-capabilities lists hintmig)
#   HINTMIG_LINUX_GUEST_DIR guest cache (default build-linux-guest at the top
#                           of the tree; the guest is built into its guest/,
#                           as linux-guest/boot-test.sh does)
#   HINTMIG_MACHINE         machine type (default q35)
#   HINTMIG_KEEP=1          keep the temp dir (serial logs, QEMU stderr)
#   PYTHON                  python3 for qmp.py (default python3)

HM_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HM_TOP=$(cd "$HM_LIB_DIR/../.." && pwd)
HM_PY=${PYTHON:-python3}

# Guest shape, the same on both sides (a migration needs identical devices):
# 300 MiB filled in a 512 MiB guest and freed down to the 64 MiB memcheck
# keeps, 16 MiB of it rewritten at 4 MiB/s, verified every second.  Small
# enough for TCG on two shared cores.
HM_MEM=${HM_MEM:-512M}
HM_MEMCHECK=${HM_MEMCHECK:-memcheck.fill=300M memcheck.keep=64M memcheck.wss=16M memcheck.rate=4M memcheck.interval=1s}
HM_MACHINE=${HINTMIG_MACHINE:-q35}
# free-page-hint of the virtio-balloon device (on|off); same on both sides.
HM_BALLOON_HINT=${HM_BALLOON_HINT:-on}

HM_TMP=
HM_WHY=
HM_QEMU=
HM_CAPS=
HM_GUEST=
declare -A HM_PID=()

# Serial lines that mean the guest is broken, whatever else it prints.
HM_GUEST_BROKEN='Kernel panic|BUG:|Oops|memcheck: error|memcheck exited|insmod .* failed|^memcheck: verdict FAIL'

hm_log() { printf '  %s\n' "$*"; }
# hm_err MESSAGE: to stderr; HM_WHY keeps the last one for a failure reason.
# shellcheck disable=SC2034  # HM_WHY is read by the scripts that source this
hm_err() { HM_WHY=$*; printf 'hintmig-qemu: %s\n' "$*" >&2; }
hm_now() { printf '%s' "$EPOCHREALTIME"; }
hm_elapsed() { awk -v a="$1" -v b="$(hm_now)" 'BEGIN { printf "%.1f", b - a }'; }
hm_mib() {   # bytes -> "12.3 MiB" ("-" stays "-")
    case $1 in
        ''|-|*[!0-9]*) printf '%s' "${1:--}" ;;
        *) awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }' ;;
    esac
}

# ---- setup ------------------------------------------------------------------

# Picks the QEMU binary into HM_QEMU; installs Debian's when it is the one
# wanted and missing.
hm_find_qemu() {
    local patched=$HM_TOP/build-qemu/prefix/bin/qemu-system-x86_64
    if [ -n "${HINTMIG_QEMU:-}" ]; then
        HM_QEMU=$HINTMIG_QEMU
    elif [ -x "$patched" ]; then
        HM_QEMU=$patched
    else
        HM_QEMU=/usr/bin/qemu-system-x86_64
        if [ ! -x "$HM_QEMU" ]; then
            [ "$(id -u)" = 0 ] || { hm_err "$HM_QEMU missing; installing it needs root"; return 1; }
            hm_err "installing qemu-system-x86 from Debian"
            apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || return 1
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
                install -y -qq --no-install-recommends qemu-system-x86 >&2 || return 1
        fi
    fi
    [ -x "$HM_QEMU" ] || { hm_err "QEMU binary $HM_QEMU not found"; return 1; }
}

# Sets HM_CAPS to on or off: HINTMIG_QEMU_CAPS, or whether the binary lists
# the hintmig migration capability (asked on a machine-less QEMU).
hm_probe_caps() {
    local want=${HINTMIG_QEMU_CAPS:-auto} out has=off
    out=$(printf '%s\n' '{"execute":"qmp_capabilities"}' \
              '{"execute":"query-migrate-capabilities"}' '{"execute":"quit"}' |
          timeout 60 "$HM_QEMU" -machine none -display none -nodefaults -S \
              -qmp stdio 2>&1) || true
    grep -q '"capability": "hintmig"' <<<"$out" && has=on
    case $want in
        auto) HM_CAPS=$has ;;
        off) HM_CAPS=off ;;
        on)
            if [ "$has" != on ]; then
                hm_err "HINTMIG_QEMU_CAPS=on, but $HM_QEMU has no hintmig capability"
                return 1
            fi
            HM_CAPS=on ;;
        *) hm_err "HINTMIG_QEMU_CAPS must be on, off or auto (got '$want')"; return 1 ;;
    esac
}

# Builds the guest (a no-op when up to date) and sets HM_GUEST.
hm_build_guest() {
    local cache=${HINTMIG_LINUX_GUEST_DIR:-$HM_TOP/build-linux-guest}
    HM_GUEST=$cache/guest
    "$HM_TOP/linux-guest/build.sh" "$HM_GUEST" >&2 || { hm_err "guest build failed"; return 1; }
}

# A private temp dir for sockets and logs: HM_TMP.
hm_tmp_init() {
    HM_TMP=$(mktemp -d "${TMPDIR:-/tmp}/hintmig-qemu.XXXXXX")
}

# All of the above.
hm_setup() {
    hm_find_qemu && hm_probe_caps && hm_build_guest && hm_tmp_init
}

# Stops every QEMU started with hm_start, removes HM_TMP unless HINTMIG_KEEP=1.
hm_cleanup() {
    local n
    for n in "${!HM_PID[@]}"; do
        hm_kill "$n" TERM
    done
    if [ -n "$HM_TMP" ] && [ -d "$HM_TMP" ]; then
        if [ "${HINTMIG_KEEP:-0}" = 1 ]; then
            hm_err "kept $HM_TMP"
        else
            rm -rf "$HM_TMP"
        fi
    fi
    HM_TMP=
}

# ---- VMs --------------------------------------------------------------------

hm_sock() { printf '%s' "$HM_TMP/$1.qmp"; }
hm_serial() { printf '%s' "$HM_TMP/$1.serial"; }

# hm_start NAME [INCOMING [ARG...]]: starts QEMU in the background;
# INCOMING (defer, tcp:HOST:PORT, unix:PATH; "" for none) makes it a
# destination; each ARG goes to QEMU's command line as is.  Returns once
# its QMP socket answers.
hm_start() {
    local name=$1 incoming=${2:-} args
    shift $(( $# < 2 ? $# : 2 ))
    args=(-accel tcg -machine "$HM_MACHINE" -m "$HM_MEM" -smp 1
          -nodefaults -no-user-config -display none -monitor none -no-reboot
          -kernel "$HM_GUEST/vmlinuz" -initrd "$HM_GUEST/initrd.gz"
          -append "console=ttyS0 panic=-1 loglevel=4 $HM_MEMCHECK"
          -object 'iothread,id=io0'
          -device "virtio-balloon-pci,id=balloon0,free-page-hint=$HM_BALLOON_HINT,iothread=io0"
          -serial "file:$(hm_serial "$name")"
          -qmp "unix:$(hm_sock "$name"),server=on,wait=off")
    [ -n "$incoming" ] && args+=(-incoming "$incoming")
    args+=("$@")
    : > "$(hm_serial "$name")"
    "$HM_QEMU" "${args[@]}" </dev/null 2>"$HM_TMP/$name.err" &
    HM_PID[$name]=$!
    hm_wait_qmp "$name" 30
}

# hm_alive NAME: QEMU runs (an exited child stays a zombie until waited
# for, and kill -0 still reaches a zombie: look at its state instead).
hm_alive() {
    local pid=${HM_PID[$1]:-} st
    [ -n "$pid" ] || return 1
    st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "${st%% *}" != Z ]
}

# hm_gone NAME: why NAME is not there: its guest's first sign of breakage
# and QEMU's stderr.
hm_gone() {
    local bad
    bad=$(tr -d '\r' < "$(hm_serial "$1")" | grep -m1 -E "$HM_GUEST_BROKEN" || true)
    printf '%s: QEMU exited%s%s' "$1" "${bad:+; guest: $bad}" \
        "$(tr '\n' ' ' < "$HM_TMP/$1.err" | sed 's/^\(.\)/; stderr: \1/')"
}

# hm_wait_qmp NAME TIMEOUT: until the QMP socket answers; fails at once if
# QEMU exited.
hm_wait_qmp() {
    local deadline=$((SECONDS + $2))
    while :; do
        if ! hm_alive "$1"; then
            hm_err "$(hm_gone "$1")"
            return 1
        fi
        if [ -S "$(hm_sock "$1")" ] &&
           "$HM_PY" "$HM_LIB_DIR/qmp.py" --connect-timeout 1 "$(hm_sock "$1")" \
               cmd query-status >/dev/null 2>&1; then
            return 0
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            hm_err "$1: no QMP answer within $2 s"
            return 1
        fi
        sleep 0.2
    done
}

# hm_kill NAME [SIGNAL]: signals QEMU (TERM by default), waits for it (5 s,
# then KILL) and forgets it.
hm_kill() {
    local name=$1 sig=${2:-TERM} pid=${HM_PID[$1]:-}
    [ -n "$pid" ] || return 0
    # Inside the braces, bash's own "Killed" notice (printed wherever it
    # reaps the job) goes nowhere.
    {
        kill -s "$sig" "$pid" || true
        for _ in $(seq 1 50); do
            hm_alive "$name" || break
            sleep 0.1
        done
        kill -s KILL "$pid" || true
        wait "$pid" || true
    } 2>/dev/null
    unset "HM_PID[$name]"
}

# ---- QMP --------------------------------------------------------------------

# hm_qmp NAME ACTION ARGS...: qmp.py on NAME's socket (see qmp.py --help).
hm_qmp() {
    local name=$1
    shift
    "$HM_PY" "$HM_LIB_DIR/qmp.py" "$(hm_sock "$name")" "$@"
}

hm_hmp() { hm_qmp "$1" hmp "$2"; }

# A TCP port free on 127.0.0.1 right now.
hm_free_port() { "$HM_PY" "$HM_LIB_DIR/qmp.py" free-port; }

# hm_set_caps NAME [hints|nohints] [CAP...]: one migrate-set-capabilities:
# events (MIGRATION events, as libvirt sets it); with hintmig capabilities
# on, hintmig, and free-page-hint when the first word is "hints"; then
# every CAP given (postcopy-ram, ...).  QEMU wants postcopy-ram and
# hintmig's capabilities on both sides.
hm_set_caps() {
    local name=$1 hints=0 caps=(events=on)
    shift
    case ${1:-} in
        hints) hints=1; shift ;;
        nohints|"") [ $# -gt 0 ] && shift ;;
    esac
    if [ "$HM_CAPS" = on ]; then
        caps+=(hintmig=on)
        [ "$hints" = 1 ] && caps+=(free-page-hint=on)
    fi
    local c
    for c in "$@"; do caps+=("$c=on"); done
    hm_qmp "$name" caps "${caps[@]}"
}

# hm_set_params NAME KEY=VALUE...: migrate-set-parameters with integers.
hm_set_params() {
    local name=$1 kv args=()
    shift
    for kv in "$@"; do args+=("${kv%%=*}:=${kv#*=}"); done
    hm_qmp "$name" cmd migrate-set-parameters "${args[@]}" >/dev/null
}

# hm_wait_migrate NAME STATUS[,STATUS] TIMEOUT [ABORT]: polls query-migrate
# (qmp.py wait-migrate); prints "STATUS seen=S1,S2,..."; fails on an ABORT
# status (default: failed, cancelled and completed, unless wanted) and on
# the timeout.
hm_wait_migrate() {
    hm_qmp "$1" wait-migrate --until "$2" --within "$3" ${4:+--abort "$4"}
}

# hm_migrate_summary NAME: "status transferred total" of query-migrate
# ("-" for what the reply lacks, e.g. a destination's ram).
hm_migrate_summary() {
    hm_qmp "$1" cmd query-migrate --field status --field ram.transferred \
        --field ram.total --default - 2>/dev/null || echo "- - -"
}

hm_run_state() { hm_qmp "$1" cmd query-status --field status 2>/dev/null || echo "?"; }

# hm_wait_run_state NAME STATE TIMEOUT: polls query-status.
hm_wait_run_state() {
    local deadline=$((SECONDS + $3)) st
    while :; do
        st=$(hm_run_state "$1")
        [ "$st" = "$2" ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            hm_err "$1: run state '$st', not '$2' after $3 s"
            return 1
        fi
        sleep 0.2
    done
}

# hm_verify_line NAME: the destination's "verify:" line of info migrate
# (hintmig's own check), empty when there is none.
hm_verify_line() {
    hm_hmp "$1" "info migrate" 2>/dev/null | tr -d '\r' | grep -m1 '^verify:' || true
}

# ---- serial log -------------------------------------------------------------

hm_serial_lines() { wc -l < "$(hm_serial "$1")"; }

# hm_serial_count NAME REGEX [AFTER_LINE]: lines matching REGEX after line
# AFTER_LINE (default 0).
hm_serial_count() {
    local n
    n=$(tail -n "+$(( ${3:-0} + 1 ))" "$(hm_serial "$1")" | tr -d '\r' | grep -cE "$2") || true
    printf '%s' "${n:-0}"
}

# hm_last_verdict NAME: the last verdict line, "" if none.
hm_last_verdict() {
    tr -d '\r' < "$(hm_serial "$1")" | grep '^memcheck: verdict ' | tail -n1 || true
}

# hm_last_pass NAME: pass number of the last verdict line, 0 if none.
hm_last_pass() {
    local v
    v=$(hm_last_verdict "$1")
    v=$(sed -n 's/.* pass=\([0-9]*\).*/\1/p' <<<"$v")
    printf '%s' "${v:-0}"
}

# hm_wait_serial NAME REGEX COUNT TIMEOUT [AFTER_LINE]: until COUNT lines
# after line AFTER_LINE match REGEX.  Fails at once on a line showing a
# broken guest (anywhere in the log: a FAIL verdict, a panic, ...) or when
# QEMU exited, and after TIMEOUT seconds.
hm_wait_serial() {
    local name=$1 re=$2 count=$3 deadline=$((SECONDS + $4)) after=${5:-0} log bad
    log=$(hm_serial "$name")
    while :; do
        [ "$(hm_serial_count "$name" "$re" "$after")" -ge "$count" ] && return 0
        bad=$(tr -d '\r' < "$log" | grep -m1 -E "$HM_GUEST_BROKEN" || true)
        if [ -n "$bad" ]; then
            hm_err "$name: guest says: $bad"
            return 1
        fi
        if ! hm_alive "$name"; then
            hm_err "$(hm_gone "$name")"
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            hm_err "$name: no '$re' (x$count after line $after) within $4 s"
            return 1
        fi
        sleep 0.25
    done
}

hm_wait_ready() { hm_wait_serial "$1" '^memcheck: ready ' 1 "$2"; }

# hm_wait_new_verdicts NAME COUNT TIMEOUT AFTER_LINE MIN_PASS: at least
# COUNT OK verdicts printed after line AFTER_LINE, the last of them with
# pass > MIN_PASS (memcheck's pass counter travels with the guest, so a
# pass number the source never printed was verified after the switch-over).
hm_wait_new_verdicts() {
    local name=$1 n=$2 deadline=$((SECONDS + $3)) after=$4 min=$5
    while :; do
        hm_wait_serial "$name" '^memcheck: verdict OK ' "$n" $((deadline - SECONDS)) "$after" ||
            return 1
        [ "$(hm_last_pass "$name")" -gt "$min" ] && return 0
        n=$((n + 1))
    done
}

# hm_dump NAME: the end of NAME's serial log and stderr, for a failure.
hm_dump() {
    local f
    for f in "$(hm_serial "$1")" "$HM_TMP/$1.err"; do
        [ -s "$f" ] || continue
        echo "  --- last lines of $f"
        tail -n 8 "$f" | tr -d '\r' | sed 's/^/  | /'
    done
}
