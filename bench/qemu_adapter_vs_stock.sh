#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark (not a test): hintmig inside QEMU 7.2 (the qemu/patches/ series,
# build-qemu/prefix/bin/qemu-system-x86_64) against Debian's stock QEMU 7.2
# (/usr/bin/qemu-system-x86_64), in one run, precopy and postcopy.
#
# The shape: a 1 GiB, 1-vCPU Linux test guest (linux-guest/) under TCG
# whose memcheck filled 600 MiB and freed all but 100 MiB of it
# (memcheck.fill=600M memcheck.keep=100M memcheck.wss=32M memcheck.rate=8M
# memcheck.interval=1s: 32 MiB of what it keeps rewritten at 8 MiB/s), with
# -device virtio-balloon-pci,free-page-hint=on,iothread=io0, the same for
# every variant.  Each run boots a fresh source and a fresh destination
# (-incoming defer, then migrate-incoming tcp:127.0.0.1:PORT), waits for
# "memcheck: ready" on the source's serial console, sets max-bandwidth to
# 10 GiB/s on the source (QEMU's default is 32 MiB/s), waits BENCH_SETTLE
# seconds and migrates over TCP on 127.0.0.1.  Variants:
#   A  stock QEMU precopy; QEMU uses the balloon's hints by itself
#   B  hintmig precopy: capabilities hintmig on both sides, free-page-hint
#      on the source
#   C  stock QEMU postcopy: postcopy-ram on both sides; migrate, then
#      migrate-start-postcopy as soon as the source's status is "active"
#      (stock QEMU stops asking for hints under postcopy-ram)
#   D  hintmig postcopy: B's capabilities plus postcopy-ram on both sides,
#      the same switch rule as C
# each REPS times, interleaved (A B C D A B C D ...), one migration at a time.
#
# Measured per run:
#   time      the source's query-migrate total-time (ms), and the wall time
#             from sending "migrate" to the destination's query-migrate
#             saying "completed" (polled every 10 ms)
#   wire      the loopback interface's tx_bytes (/sys/class/net/lo/
#             statistics) after both sides completed minus before
#             "migrate": each byte between the two QEMUs counted once,
#             both directions, TCP/IP headers included.  As root the
#             script re-runs itself in a network namespace of its own
#             (unshare --net --mount, /sys remounted there), whose lo
#             carries nothing but these migrations; otherwise (or with
#             BENCH_NETNS=0) it reads the host's lo, where anything else
#             talking meanwhile is counted too.  The bytes lo sent during
#             the settle wait before each run ("lo noise", 0 in the
#             namespace) and the source's ram.transferred are printed
#             per run for reference.
#   in use    guest RAM (1 GiB) minus memcheck's mem_free_kib from its
#             ready line (memcheck's own in_use_kib is printed too)
#   checks    the destination runs, prints 2 new "memcheck: verdict OK"
#             lines (pass numbers the source never printed) within
#             BENCH_VERDICT_TIMEOUT s, and no FAIL/panic/Oops; for B and
#             D its "info migrate" (HMP through QMP) says "verify: OK".
#             A run that completed the migration but failed a check is
#             counted and reported as failed (stock precopy with hints is
#             known to crash or hang the destination's guest kernel, see
#             tests/qemu/migrate-test.sh).
#   also      downtime, CPU ms of each QEMU process over the migration
#             (utime + stime), and for B and D hintmig's own lines of the
#             source's info migrate (compression, hinted pages, rounds)
#
# Prints a line per run, then per variant the medians over the runs that
# completed the migration (whether or not their checks passed; the counts
# are printed beside them; an even count takes the mean of the middle two):
# time ms, wall ms, wire MB, in-use MB (MB = 10^6 bytes), wire/in-use
# (median of the per-run ratios), memcheck's in_use; the ratios hintmig /
# stock of the median times and wire bytes, in precopy and in postcopy; and
# PASS / NOT MET against the targets: wire <= 1.15 x in use for B and D,
# and total time (the source's total-time) of B below A's and of D below
# C's (the wall-time comparison is printed beside it).  Exit status 0 once
# every run has been made, whatever the runs' outcomes and the targets; 1
# when setup failed; 130/143 when interrupted.  Every QEMU it starts is stopped
# on exit; its temp dir under /tmp is removed.
#
# Usage: bench/qemu_adapter_vs_stock.sh [--help] [REPS]    (REPS default 3)
# Environment:
#   HINTMIG_QEMU          the patched QEMU (default build-qemu/prefix/bin/
#                         qemu-system-x86_64); must list the hintmig capability
#   BENCH_STOCK_QEMU      the stock QEMU (default /usr/bin/qemu-system-x86_64,
#                         installed with apt-get when missing)
#   BENCH_SETTLE          seconds between "ready" and "migrate" (default 2)
#   BENCH_GUEST_APPEND    extra guest kernel parameters for every variant
#                         (e.g. init_on_alloc=0)
#   BENCH_TIMEOUT         seconds for a boot to "ready" and for a migration
#                         (default 300)
#   BENCH_VERDICT_TIMEOUT seconds for the destination's new verdicts (default 45)
#   BENCH_NETNS=0         measure the host's lo, no private network namespace
#   HINTMIG_KEEP=1        keep the temp dir (serial logs, QEMU stderr)
#   HINTMIG_LINUX_GUEST_DIR, PYTHON: see tests/qemu/lib.sh
set -euo pipefail

usage() { sed -n '3,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }

reps=3
case $# in
    0) ;;
    1)
        case $1 in
            -h|--help) usage; exit 0 ;;
            ''|*[!0-9]*|0) echo "qemu_adapter_vs_stock.sh: REPS must be a positive integer, got '$1' (try --help)" >&2; exit 2 ;;
            *) reps=$1 ;;
        esac ;;
    *) echo "qemu_adapter_vs_stock.sh: too many arguments (try --help)" >&2; exit 2 ;;
esac

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STOCK=${BENCH_STOCK_QEMU:-/usr/bin/qemu-system-x86_64}
PATCHED=${HINTMIG_QEMU:-$top/build-qemu/prefix/bin/qemu-system-x86_64}
say() { printf '%s\n' "$*"; }
die() { printf 'qemu_adapter_vs_stock.sh: %s\n' "$*" >&2; exit 1; }

# The baseline, installed before leaving the host's network (below).
if [ ! -x "$STOCK" ] && [ -z "${BENCH_STOCK_QEMU:-}" ]; then
    [ "$(id -u)" = 0 ] || die "$STOCK missing; installing it needs root"
    say "installing qemu-system-x86 (the baseline) from Debian" >&2
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
        install -y -qq --no-install-recommends qemu-system-x86 >&2
fi

# A network namespace of its own (root, unshare and ip needed; else the
# host's lo), with /sys remounted in a private mount namespace so that
# /sys/class/net/lo is its lo: nothing but these migrations talks on it.
if [ "${BENCH_NETNS:-1}" = 1 ] && [ -z "${HINTMIG_BENCH_IN_NETNS:-}" ]; then
    if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && command -v ip >/dev/null; then
        export HINTMIG_BENCH_IN_NETNS=1
        exec unshare --net --mount --propagation private -- "$BASH" "$0" "$@"
    fi
    say "qemu_adapter_vs_stock.sh: no private network namespace (needs root, unshare, ip): the host's lo is measured" >&2
fi
LO_WHERE="the host's lo"
if [ -n "${HINTMIG_BENCH_IN_NETNS:-}" ]; then
    unset HINTMIG_BENCH_IN_NETNS
    mount -t sysfs sysfs /sys || die "cannot mount sysfs in the private namespace"
    ip link set lo up || die "cannot bring lo up in the private namespace"
    LO_WHERE="lo of a private network namespace"
fi

# The guest, identical for every variant and both sides (lib.sh keeps these).
# shellcheck disable=SC2034  # HM_* are read by tests/qemu/lib.sh
HM_MEM=1G
GUEST_KIB=$((1024 * 1024))
HM_MEMCHECK="memcheck.fill=600M memcheck.keep=100M memcheck.wss=32M memcheck.rate=8M memcheck.interval=1s"
# Extra guest kernel parameters, the same for every variant: for instance
# init_on_alloc=0 (Debian's kernels zero every page they allocate, the
# balloon driver's report included, which under TCG costs more than a
# second for 750 MB).
HM_MEMCHECK="${BENCH_GUEST_APPEND:+$BENCH_GUEST_APPEND }$HM_MEMCHECK"
HM_BALLOON_HINT=on
# shellcheck source=../tests/qemu/lib.sh
. "$top/tests/qemu/lib.sh"

SETTLE=${BENCH_SETTLE:-2}
T=${BENCH_TIMEOUT:-300}
TV=${BENCH_VERDICT_TIMEOUT:-45}
BW=10737418240                  # max-bandwidth, bytes/s, every variant
VERDICTS=2
LO=/sys/class/net/lo/statistics/tx_bytes

VARIANTS=(A B C D)
declare -A V_NAME=([A]="stock QEMU precopy" [B]="hintmig precopy"
                   [C]="stock QEMU postcopy" [D]="hintmig postcopy")
declare -A V_QEMU=([A]=stock [B]=hintmig [C]=stock [D]=hintmig)
declare -A V_POST=([A]=0 [B]=0 [C]=1 [D]=1)

# ---- teardown -------------------------------------------------------------

work=
run_pid=
# The processes below PID $1 (all started by this script), by parent id.
descendants() {
    local c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$c"
        descendants "$c"
    done
}
# Stops the run in flight: everything below it (QEMUs, qmp.py, the driver,
# the shells of command substitutions), then its subshell, whose own EXIT
# trap stops what is left.
stop_run() {
    local c
    [ -n "$run_pid" ] || return 0
    for c in $(descendants "$run_pid"); do
        kill -TERM "$c" 2>/dev/null || true
    done
    kill -TERM "$run_pid" 2>/dev/null || true
    wait "$run_pid" 2>/dev/null || true
    run_pid=
}
finish() {
    stop_run
    if [ -n "$work" ] && [ -d "$work" ]; then
        if [ "${HINTMIG_KEEP:-0}" = 1 ]; then
            say "kept $work" >&2
        else
            rm -rf "$work"
        fi
    fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- setup ----------------------------------------------------------------

[ -x "$STOCK" ] || die "stock QEMU $STOCK not found"
[ -x "$PATCHED" ] || die "patched QEMU $PATCHED not found (qemu/build.sh builds it)"
HM_QEMU=$STOCK
HINTMIG_QEMU_CAPS=auto hm_probe_caps || die "capability probe of $STOCK failed"
[ "$HM_CAPS" = off ] || die "$STOCK lists the hintmig capability: not a stock QEMU"
HM_QEMU=$PATCHED
HINTMIG_QEMU_CAPS=on hm_probe_caps || die "$PATCHED has no hintmig capability"
hm_build_guest >/dev/null || die "guest build failed"
work=$(mktemp -d /tmp/hintmig-bench-adapter.XXXXXX)
[ -r "$LO" ] || die "no $LO"

# The driver of one migration, on both QMP sockets at once (qmp.py's QMP
# class): reads lo's tx_bytes, sends migrate, polls both sides' query-migrate
# every 10 ms (switching to postcopy at the source's first "active" when
# asked to) until both have ended, reads tx_bytes again.  Prints one line:
# src_status dst_status total_ms downtime_ms wall_ms lo_bytes transferred
# switch_ms src_seen dst_seen src_cpu_ms dst_cpu_ms ("-" for what is
# missing; CPU: utime + stime of each QEMU process over the migration).
cat > "$work/drive.py" <<'PY'
import os, sys, time
sys.path.insert(0, sys.argv[1])
from qmp import QMP, QMPError

src_path, dst_path, uri = sys.argv[2], sys.argv[3], sys.argv[4]
postcopy, timeout = sys.argv[5] == "1", float(sys.argv[6])
pids = (sys.argv[7], sys.argv[8])
TICK = os.sysconf("SC_CLK_TCK")
LO = "/sys/class/net/lo/statistics/tx_bytes"
END = ("completed", "failed", "cancelled")


def lo():
    with open(LO) as f:
        return int(f.read())


def cpu_ms(pid):
    """utime + stime of a process, ms ("-" once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 // TICK
    except (OSError, IndexError, ValueError):
        return None


def note(seen, st):
    if not seen or seen[-1] != st:
        seen.append(st)


src_st = dst_st = "none"
src_seen, dst_seen = [], []
info = {}
t_switch = t_dst = None
with QMP(src_path, timeout=60) as s, QMP(dst_path, timeout=60) as d:
    cpu0 = [cpu_ms(p) for p in pids]
    lo0 = lo()
    t0 = time.monotonic()
    s.cmd("migrate", {"uri": uri})
    deadline = t0 + timeout
    while True:
        if src_st not in END and src_st != "gone":
            try:
                info = s.cmd("query-migrate")
                src_st = info.get("status", "none")
            except QMPError:
                src_st = "gone"
            note(src_seen, src_st)
        if postcopy and t_switch is None and src_st == "active":
            try:
                s.cmd("migrate-start-postcopy")
                t_switch = time.monotonic()
            except QMPError as e:
                print(f"drive: migrate-start-postcopy: {e}", file=sys.stderr)
                t_switch = -1
        if dst_st not in END and dst_st != "gone":
            try:
                dst_st = d.cmd("query-migrate").get("status", "none")
            except QMPError:
                dst_st = "gone"
            note(dst_seen, dst_st)
            if dst_st == "completed":
                t_dst = time.monotonic()
        src_over = src_st in END or src_st == "gone"
        dst_over = dst_st in END or dst_st == "gone"
        if (src_over and dst_over) or src_st in ("failed", "cancelled", "gone") \
                or dst_st in ("failed", "gone"):
            break
        if time.monotonic() >= deadline:
            src_st = src_st + "(timeout)"
            break
        time.sleep(0.01)
    lo1 = lo()
    cpu1 = [cpu_ms(p) for p in pids]
    # Stock QEMU 7.2 says "completed" a moment before it sets total-time
    # and downtime (migration_calculate_complete() runs after the status
    # change): ask again until they are there.
    end = time.monotonic() + 2
    while src_st == "completed" and not info.get("total-time") and time.monotonic() < end:
        time.sleep(0.01)
        try:
            info = s.cmd("query-migrate")
        except QMPError:
            break


def ms(t):
    return "-" if t is None or t < 0 else str(int(round((t - t0) * 1000)))


print(src_st, dst_st, info.get("total-time", "-"), info.get("downtime", "-"),
      ms(t_dst), lo1 - lo0, info.get("ram", {}).get("transferred", "-"),
      ms(t_switch), ",".join(src_seen) or "-", ",".join(dst_seen) or "-",
      *("-" if a is None or b is None else b - a for a, b in zip(cpu0, cpu1)))
PY

# ---- one run ----------------------------------------------------------------

# run_one V N: one migration of variant V (its Nth), in a subshell of its
# own (the caller runs it in the background).  Writes $work/V.N.res:
#   V N completed|failed total_ms downtime_ms wall_ms lo_bytes transferred
#   in_use_kib memcheck_in_use_kib mem_free_kib lo_noise switch_ms src_seen
# and $work/V.N.check: "OK" or the reason a check failed; $work/V.N.reason
# when the run failed before or during the migration.
run_one() {
    local v=$1 n=$2 res=$work/$1.$2
    set -eE
    trap 'echo "unexpected failure at line $LINENO: $BASH_COMMAND" >> "$res.reason"' ERR
    trap hm_cleanup EXIT
    trap 'exit 143' TERM
    HM_TMP=$work/run-$v.$n
    mkdir -p "$HM_TMP"
    # shellcheck disable=SC2034  # HM_QEMU is read by hm_start
    if [ "${V_QEMU[$v]}" = hintmig ]; then HM_QEMU=$PATCHED; HM_CAPS=on; else HM_QEMU=$STOCK; HM_CAPS=off; fi
    local extra=()
    [ "${V_POST[$v]}" = 1 ] && extra=(postcopy-ram)

    fail() {
        printf '%s\n' "$*" >> "$res.reason"
        local name
        for name in src dst; do
            [ -e "$(hm_serial "$name")" ] && hm_dump "$name"
        done
        exit 1
    }

    hm_start src || fail "source QEMU did not start: $HM_WHY"
    hm_start dst defer || fail "destination QEMU did not start: $HM_WHY"
    hm_wait_ready src "$T" || fail "source guest not ready: $HM_WHY"
    local ready in_use_mc mem_free
    ready=$(tr -d '\r' < "$(hm_serial src)" | grep -m1 '^memcheck: ready ')
    in_use_mc=$(sed -n 's/.* in_use_kib=\([0-9]*\).*/\1/p' <<<"$ready")
    mem_free=$(sed -n 's/.* mem_free_kib=\([0-9]*\).*/\1/p' <<<"$ready")
    if [ -z "$in_use_mc" ] || [ -z "$mem_free" ]; then fail "cannot parse '$ready'"; fi

    # Hints: hintmig's free-page-hint on the source only; stock QEMU uses
    # the balloon's hints by itself (hm_set_caps sets neither with caps off).
    hm_set_caps src hints "${extra[@]}" >/dev/null || fail "migrate-set-capabilities on src failed"
    hm_set_caps dst nohints "${extra[@]}" >/dev/null || fail "migrate-set-capabilities on dst failed"
    hm_set_params src max-bandwidth=$BW || fail "migrate-set-parameters failed"
    local port uri
    port=$(hm_free_port)
    uri=tcp:127.0.0.1:$port
    hm_qmp dst cmd migrate-incoming "uri=$uri" >/dev/null || fail "migrate-incoming failed"

    local lo_a lo_b
    lo_a=$(cat "$LO")
    sleep "$SETTLE"
    lo_b=$(cat "$LO")

    local out src_st dst_st total down wall lo_bytes tr sw src_seen dst_seen cs cd
    out=$("$HM_PY" "$work/drive.py" "$HM_LIB_DIR" "$(hm_sock src)" "$(hm_sock dst)" \
              "$uri" "${V_POST[$v]}" "$T" "${HM_PID[src]}" "${HM_PID[dst]}") ||
        fail "migration driver failed"
    read -r src_st dst_st total down wall lo_bytes tr sw src_seen dst_seen cs cd <<<"$out"
    local status=completed
    [ "$src_st" = completed ] && [ "$dst_st" = completed ] || status=failed
    echo "$v $n $status $total $down $wall $lo_bytes $tr $((GUEST_KIB - mem_free))" \
         "$in_use_mc $mem_free $((lo_b - lo_a)) $sw $cs $cd $src_seen" > "$res.res"
    [ "$status" = completed ] ||
        fail "migration: source $src_st (seen $src_seen), destination $dst_st (seen $dst_seen)"
    if [ "$HM_CAPS" = on ]; then
        # hintmig's own lines of the source's info migrate, for the record.
        hm_hmp src "info migrate" 2>/dev/null | tr -d '\r' |
            sed -n -e 's/^compressed: /zstd /p' -e 's/^hinted: /hinted /p' \
                -e 's/^rounds: /rounds /p' -e 's/^hint note: /hint note: /p' \
                -e 's/^postcopy urgent pages: /urgent pages /p' |
            paste -sd, - | sed 's/,/, /g' > "$res.hm" || true
    fi

    # The checks on the destination: it runs (a guest kernel panic makes
    # QEMU exit: -no-reboot, panic=-1), hintmig's verify, new OK verdicts.
    local min why='' st deadline=$((SECONDS + 30))
    min=$(hm_last_pass src)
    while :; do
        if ! hm_alive dst; then why=$(hm_gone dst); break; fi
        st=$(hm_run_state dst)
        [ "$st" = running ] && break
        if [ "$SECONDS" -ge "$deadline" ]; then why="destination's run state '$st' after 30 s"; break; fi
        sleep 0.2
    done
    if [ -z "$why" ] && [ "$HM_CAPS" = on ] && [[ $(hm_verify_line dst) != "verify: OK"* ]]; then
        why="destination's info migrate says '$(hm_verify_line dst)'"
    fi
    if [ -z "$why" ] && ! hm_wait_new_verdicts dst "$VERDICTS" "$TV" 0 "$min"; then
        why="no $VERDICTS new OK verdicts past pass $min: $HM_WHY"
    fi
    if [ -n "$why" ]; then
        echo "$why" > "$res.check"
        hm_dump dst
    else
        echo OK > "$res.check"
    fi
    return 0
}

# ---- the runs -------------------------------------------------------------

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }

say "stock QEMU:   $STOCK ($("$STOCK" --version | head -n1))"
say "hintmig QEMU: $PATCHED ($("$PATCHED" --version | head -n1))"
say "guest: $HM_MEM, 1 vCPU, TCG, $HM_MEMCHECK, virtio-balloon-pci free-page-hint=on"
say "max-bandwidth $BW B/s, settle ${SETTLE}s after ready, $reps reps of A B C D interleaved"
say "wire bytes: tx_bytes of $LO_WHERE"
say

total=$((reps * ${#VARIANTS[@]}))
i=0
for n in $(seq 1 "$reps"); do
    for v in "${VARIANTS[@]}"; do
        i=$((i + 1))
        t0=$(hm_now)
        (run_one "$v" "$n") &
        run_pid=$!
        wait "$run_pid" || true
        run_pid=
        f=$work/$v.$n
        line=$(printf 'run %2d/%d %s#%d %s:' "$i" "$total" "$v" "$n" "${V_NAME[$v]}")
        more=
        if [ -s "$f.res" ]; then
            read -r _ _ st tt dn wl lb trn iu imc mf noise sw cs cd seen < "$f.res"
            line+=" $st; time ${tt} ms, wall ${wl} ms, wire $(mb "$lb") MB, in use"
            line+=" $(mb $((iu * 1024))) MB (wire/in-use $(awk -v b="$lb" -v u="$((iu * 1024))" 'BEGIN { printf "%.2f", b / u }'))"
            more="downtime ${dn} ms, ram.transferred $(mb "$trn") MB, memcheck in_use_kib=$imc"
            more+=" mem_free_kib=$mf, cpu ms src $cs dst $cd, lo noise ${noise} B"
            [ "${V_POST[$v]}" = 1 ] && more+=", postcopy asked at ${sw} ms"
            if [ "${V_POST[$v]}" = 1 ] && [[ ,$seen, != *,postcopy-active,* ]]; then
                more+=", NEVER IN POSTCOPY (seen $seen)"
            fi
            [ -s "$f.hm" ] && more+=", hintmig: $(cat "$f.hm")"
        fi
        if [ -s "$f.reason" ]; then
            line+=" FAILED: $(tr '\n' ' ' < "$f.reason")"
        elif [ -s "$f.check" ]; then
            line+="; check $(cat "$f.check")"
        else
            line+=" FAILED: no result"
        fi
        say "$line"
        say "          ${more:+$more, }run took $(hm_elapsed "$t0") s"
    done
done

# ---- summary ----------------------------------------------------------------

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.3f", a / b }'; }

declare -A M_T M_W M_B M_U M_R M_C N_DONE N_OK N_BAD
for v in "${VARIANTS[@]}"; do
    ts=() ws=() bs=() us=() rs=() cs=()
    N_DONE[$v]=0 N_OK[$v]=0 N_BAD[$v]=0
    for n in $(seq 1 "$reps"); do
        f=$work/$v.$n
        [ -s "$f.res" ] || continue
        read -r _ _ st tt _ wl lb _ iu imc _ < "$f.res"
        [ "$st" = completed ] || continue
        N_DONE[$v]=$((N_DONE[$v] + 1))
        if [ "$(cat "$f.check" 2>/dev/null)" = OK ]; then
            N_OK[$v]=$((N_OK[$v] + 1))
        else
            N_BAD[$v]=$((N_BAD[$v] + 1))
        fi
        ts+=("$tt"); ws+=("$wl"); bs+=("$lb"); us+=("$((iu * 1024))"); cs+=("$((imc * 1024))")
        rs+=("$(awk -v b="$lb" -v u="$((iu * 1024))" 'BEGIN { printf "%.4f", b / u }')")
    done
    M_T[$v]=$(median "${ts[@]}"); M_W[$v]=$(median "${ws[@]}")
    M_B[$v]=$(median "${bs[@]}"); M_U[$v]=$(median "${us[@]}"); M_R[$v]=$(median "${rs[@]}")
    M_C[$v]=$(median "${cs[@]}")
done

say
say "Failures per variant (of $reps runs):"
for v in "${VARIANTS[@]}"; do
    nfail=$((reps - N_DONE[$v]))
    say "  $v ${V_NAME[$v]}: migration failed ${nfail}, migrated but guest/verify check failed ${N_BAD[$v]}, OK ${N_OK[$v]}"
    for n in $(seq 1 "$reps"); do
        f=$work/$v.$n
        if [ -s "$f.reason" ]; then
            say "    #$n: $(tr '\n' ' ' < "$f.reason")"
        elif [ -s "$f.check" ] && [ "$(cat "$f.check")" != OK ]; then
            say "    #$n: $(cat "$f.check")"
        fi
    done
done

fmt_mb() { if [ "$1" = - ]; then echo -; else mb "$1"; fi; }
say
say "Medians over the runs that completed the migration (checks passed or not); MB = 10^6 bytes"
printf '%-22s %8s %9s %8s %8s %8s %9s %11s %11s\n' "variant" "migrated" "checks OK" "time ms" "wall ms" \
    "wire MB" "in-use MB" "wire/in-use" "memcheck MB"
for v in "${VARIANTS[@]}"; do
    printf '%-22s %8s %9s %8s %8s %8s %9s %11s %11s\n' "$v ${V_NAME[$v]}" "${N_DONE[$v]}/$reps" \
        "${N_OK[$v]}/${N_DONE[$v]}" "${M_T[$v]}" "${M_W[$v]}" "$(fmt_mb "${M_B[$v]}")" \
        "$(fmt_mb "${M_U[$v]}")" "${M_R[$v]}" "$(fmt_mb "${M_C[$v]}")"
done
say "(time: source's query-migrate total-time; wall: migrate command to destination 'completed';"
say " wire: lo tx_bytes delta; in use: 1 GiB - memcheck's mem_free_kib; wire/in-use: median of per-run ratios;"
say " memcheck: memcheck's own in_use_kib, for reference)"

say
printf '%-15s %14s %14s %14s\n' "hintmig / stock" "time" "wall" "wire"
for p in "precopy B A" "postcopy D C"; do
    read -r name h s <<<"$p"
    printf '%-15s %14s %14s %14s\n' "$name" "$(ratio "${M_T[$h]}" "${M_T[$s]}")" \
        "$(ratio "${M_W[$h]}" "${M_W[$s]}")" "$(ratio "${M_B[$h]}" "${M_B[$s]}")"
done

verdict() { if [ "$1" = 1 ]; then echo PASS; elif [ "$1" = - ]; then echo "NOT MET (no data)"; else echo "NOT MET"; fi; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "-"; else print (a + 0 <= b + 0) ? 1 : 0 }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "-"; else print (a + 0 < b + 0) ? 1 : 0 }'; }
say
say "Targets:"
say "  B hintmig precopy  wire/in-use ${M_R[B]} <= 1.15: $(verdict "$(le "${M_R[B]}" 1.15)")"
say "  D hintmig postcopy wire/in-use ${M_R[D]} <= 1.15: $(verdict "$(le "${M_R[D]}" 1.15)")"
say "  precopy  time hintmig ${M_T[B]} ms < stock ${M_T[A]} ms: $(verdict "$(lt "${M_T[B]}" "${M_T[A]}")") (wall ${M_W[B]} vs ${M_W[A]} ms: $(verdict "$(lt "${M_W[B]}" "${M_W[A]}")"))"
say "  postcopy time hintmig ${M_T[D]} ms < stock ${M_T[C]} ms: $(verdict "$(lt "${M_T[D]}" "${M_T[C]}")") (wall ${M_W[D]} vs ${M_W[C]} ms: $(verdict "$(lt "${M_W[D]}" "${M_W[C]}")"))"
