#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Two libvirt daemons on one machine, "a" and "b", so that `virsh migrate`
# can move a guest between them.  Debian 12's libvirtd always uses
# /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and
# /var/log/libvirt; each daemon runs in its own mount namespace
# (unshare -m) where those five are bind mounts of its own folders under
# DIR, with its own host UUID (libvirt refuses to migrate to "the same
# host") and its socket in DIR/NAME/sock, outside the namespace so that
# virsh reaches it.  QEMU runs as root without cgroups, namespaces or a
# security driver (this machine has no systemd).
#
# Usage: libvirt/daemons.sh start|stop|status|uri NAME  [--help]
#   start    installs the packages if missing (as root), writes the
#            configuration and starts both daemons; waits until both answer
#   stop     destroys their domains, stops both daemons and their QEMUs,
#            and removes DIR (nothing else on the machine is changed)
#   status   says which daemons run
#   uri NAME prints the connection URI of daemon NAME (a or b)
# Environment: HINTMIG_LIBVIRT_DIR (default build-libvirt at the top of the
# tree).  Packages: libvirt-daemon, libvirt-daemon-driver-qemu,
# libvirt-clients; the daemon refuses to start without a libvirt-qemu user,
# which start creates as the full package (libvirt-daemon-system) would,
# with the five folders above as empty mount points.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
dir=${HINTMIG_LIBVIRT_DIR:-$top/build-libvirt}
names=(a b)

log() { printf 'libvirt: %s\n' "$*" >&2; }
die() { printf 'libvirt: error: %s\n' "$*" >&2; exit 1; }

uri() { printf 'qemu:///system?socket=%s/%s/sock/libvirt-sock\n' "$dir" "$1"; }

pid_of() {
    local f="$dir/$1/libvirtd.pid"
    [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"
}

install_packages() {
    local missing=() p
    for p in libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients; do
        [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] \
            || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(id -u)" -eq 0 ] || die "need root to install ${missing[*]}"
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    getent passwd libvirt-qemu >/dev/null ||
        useradd --system --user-group --no-create-home libvirt-qemu
    # Mount points for the bind mounts, as libvirt-daemon-system makes them.
    mkdir -p /etc/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt \
             /var/log/libvirt
}

# The configuration of daemon $1 with host UUID $2.
write_config() {
    local d="$dir/$1" uuid=$2
    mkdir -p "$d"/{etc/qemu,run,lib,cache,log,sock}
    cat > "$d/etc/libvirtd.conf" <<EOF
# daemon $1 of hintmig's libvirt/daemons.sh
unix_sock_dir = "$d/sock"
unix_sock_group = "root"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
listen_tcp = 0
listen_tls = 0
host_uuid = "$uuid"
log_outputs = "2:file:$d/log/libvirtd.log"
EOF
    cat > "$d/etc/qemu.conf" <<EOF
# daemon $1: QEMU as root, no cgroups, no namespaces, no security driver
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
EOF
    : > "$d/etc/libvirt.conf"
}

start_one() {
    local n=$1 d="$dir/$1" uuid
    if pid_of "$n" >/dev/null; then
        log "daemon $n already runs (pid $(pid_of "$n"))"
        return 0
    fi
    uuid=$(cat /proc/sys/kernel/random/uuid)
    write_config "$n" "$uuid"
    # Private mounts: the bind mounts exist only for this daemon and its
    # QEMUs, and vanish with them.
    unshare -m --propagation private sh -c '
        set -e
        d=$1
        mount --bind "$d/etc" /etc/libvirt
        mount --bind "$d/run" /run/libvirt
        mount --bind "$d/lib" /var/lib/libvirt
        mount --bind "$d/cache" /var/cache/libvirt
        mount --bind "$d/log" /var/log/libvirt
        exec libvirtd --config "$d/etc/libvirtd.conf" --pid-file "$d/libvirtd.pid"
    ' sh "$d" > "$d/libvirtd.out" 2>&1 &
    echo $! > "$d/libvirtd.pid"
    log "daemon $n: pid $!, $(uri "$n")"
}

wait_ready() {
    local n=$1
    for _ in $(seq 1 100); do
        # "list", not "version": version wants a default emulator, which a
        # machine with only our QEMU (in build-qemu/prefix) has not.
        if virsh -c "$(uri "$n")" list --all >/dev/null 2>&1; then
            return 0
        fi
        pid_of "$n" >/dev/null ||
            die "daemon $n exited: $(tail -n 5 "$dir/$n/libvirtd.out" "$dir/$n/log/libvirtd.log" 2>/dev/null)"
        sleep 0.2
    done
    die "daemon $n does not answer on $(uri "$n") after 20 s"
}

stop_one() {
    local n=$1 d="$dir/$1" pid dom
    pid=$(pid_of "$n") || { log "daemon $n not running"; return 0; }
    for dom in $(virsh -c "$(uri "$n")" list --name 2>/dev/null); do
        virsh -c "$(uri "$n")" destroy "$dom" >/dev/null 2>&1 || true
    done
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
    # QEMUs the daemon started and left (it normally ends them itself):
    # libvirt keeps each one's pid in its /run/libvirt/qemu/DOMAIN.pid,
    # here DIR/NAME/run/qemu (driver.pid there is libvirtd's own).  Only a
    # process that still is a QEMU is killed: a pid may have been reused.
    local f qpid exe
    for f in "$d"/run/qemu/*.pid; do
        [ -f "$f" ] && [ "${f##*/}" != driver.pid ] || continue
        qpid=$(cat "$f" 2>/dev/null) || continue
        case $qpid in ''|*[!0-9]*) continue ;; esac
        exe=$(readlink "/proc/$qpid/exe" 2>/dev/null) || continue
        case $exe in
            *qemu-system*) kill -9 "$qpid" 2>/dev/null && log "daemon $n: killed QEMU $qpid (${f##*/})" ;;
        esac
    done
    log "daemon $n stopped"
}

[ "$(uname -s)" = Linux ] || die "Linux only"
case "${1:-}" in
    start)
        [ "$(id -u)" -eq 0 ] || die "run as root (mount namespaces, libvirtd)"
        install_packages
        mkdir -p "$dir"
        for n in "${names[@]}"; do start_one "$n"; done
        for n in "${names[@]}"; do wait_ready "$n"; done
        log "both daemons answer"
        ;;
    stop)
        for n in "${names[@]}"; do stop_one "$n"; done
        rm -rf "$dir"
        ;;
    status)
        for n in "${names[@]}"; do
            if p=$(pid_of "$n"); then echo "$n: running (pid $p) $(uri "$n")"; else echo "$n: stopped"; fi
        done
        ;;
    uri)
        case "${2:-}" in a|b) uri "$2" ;; *) die "uri needs a or b" ;; esac
        ;;
    -h|--help) sed -n '3,24p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "usage: $0 start|stop|status|uri NAME (try --help)" ;;
esac
