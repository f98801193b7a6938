# SPDX-License-Identifier: GPL-2.0-or-later
# Helpers shared by the benchmark scripts (sourced, not run).
# Expects $work (a scratch folder) and $hmp (the hintmig-hmp client).

# Bytes the loopback interface has sent: both directions of a local migration.
lo_tx() { awk '/^ *lo:/ { sub(/^ *lo:/, ""); print $9 }' /proc/net/dev; }

# A TCP port on 127.0.0.1 that was free a moment ago.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The number after "NAME: " in monitor output on stdin.
field() { sed -n "s/^$1: \([0-9.]*\).*/\1/p" | head -1; }

# Median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# Sends quit to every monitor socket in $work (hintmig-vm or QEMU).
quit_all() {
    for s in "$work"/*.sock; do
        [ -S "$s" ] && timeout 5 "$hmp" "$s" quit >/dev/null 2>&1 || true
        rm -f "$s"
    done
}
