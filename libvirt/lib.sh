# SPDX-License-Identifier: GPL-2.0-or-later
# Shell helpers of libvirt/migrate-test.sh and libvirt/demo.sh (sourced).

now() { printf '%s' "$EPOCHREALTIME"; }
# elapsed T0: seconds since T0 (from now), one decimal.
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# alive PID: runs (an exited child not yet waited for is a zombie).
alive() {
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "${st%% *}" != Z ]
}
