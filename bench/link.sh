# SPDX-License-Identifier: GPL-2.0-or-later
# The link emulator (sourced, not run): two network namespaces of the
# script's own and a veth pair between them, shaped with tc tbf in both
# directions.  This kernel has no netem, so a link has a rate but no added
# delay.  Only the two addresses inside those namespaces are ever used.
#
#   link_up RATE      RATE as tc writes it (1gbit, 10gbit, 500mbit), or
#                     "none" for an unshaped veth
#   in_src CMD...     run CMD in the source's namespace (in_dst likewise)
#   link_tx           bytes both ends have sent so far (payload and headers)
#   link_bps          the rate in bits/s (0 when unshaped)
#   link_down         tear it all down (also on exit, via link_trap)
#
# LINK_SRC_IP and LINK_DST_IP are the two ends' addresses.

LINK_NS_SRC=hm-src-$$
LINK_NS_DST=hm-dst-$$
LINK_DEV_SRC=hms$$
LINK_DEV_DST=hmd$$
LINK_SRC_IP=10.231.0.1
LINK_DST_IP=10.231.0.2
LINK_RATE=none

in_src() { ip netns exec "$LINK_NS_SRC" "$@"; }
in_dst() { ip netns exec "$LINK_NS_DST" "$@"; }

# Bits per second of a tc rate (kbit, mbit, gbit, or bare bit/s).
rate_bps() {
    case $1 in
        none) echo 0 ;;
        *gbit) echo $(( ${1%gbit} * 1000000000 )) ;;
        *mbit) echo $(( ${1%mbit} * 1000000 )) ;;
        *kbit) echo $(( ${1%kbit} * 1000 )) ;;
        *bit) echo "${1%bit}" ;;
        *) echo "link: bad rate '$1' (use e.g. 1gbit, 10gbit or none)" >&2; return 1 ;;
    esac
}

link_bps() { rate_bps "$LINK_RATE"; }

link_down() {
    ip netns del "$LINK_NS_SRC" 2>/dev/null || true   # takes the veth pair with it
    ip netns del "$LINK_NS_DST" 2>/dev/null || true
}

link_trap() { trap 'link_down' EXIT; }

link_up() {
    local rate=$1 bps burst
    bps=$(rate_bps "$rate") || return 1
    [ "$(id -u)" = 0 ] || { echo "link: needs root (ip netns, tc)" >&2; return 1; }
    link_down
    LINK_RATE=$rate
    ip netns add "$LINK_NS_SRC"
    ip netns add "$LINK_NS_DST"
    ip link add "$LINK_DEV_SRC" type veth peer name "$LINK_DEV_DST"
    ip link set "$LINK_DEV_SRC" netns "$LINK_NS_SRC"
    ip link set "$LINK_DEV_DST" netns "$LINK_NS_DST"
    ip -n "$LINK_NS_SRC" addr add "$LINK_SRC_IP/30" dev "$LINK_DEV_SRC"
    ip -n "$LINK_NS_DST" addr add "$LINK_DST_IP/30" dev "$LINK_DEV_DST"
    for ns in "$LINK_NS_SRC" "$LINK_NS_DST"; do
        ip -n "$ns" link set lo up
    done
    ip -n "$LINK_NS_SRC" link set "$LINK_DEV_SRC" up
    ip -n "$LINK_NS_DST" link set "$LINK_DEV_DST" up
    if [ "$bps" -gt 0 ]; then
        # A bucket of 4 ms at the rate, and never less than a few 64 KiB
        # GSO frames: a smaller one caps a fast link below its rate.
        burst=$(( bps / 8 / 250 ))
        [ "$burst" -ge 262144 ] || burst=262144
        tc -n "$LINK_NS_SRC" qdisc add dev "$LINK_DEV_SRC" root tbf rate "$rate" \
            burst "$burst" latency 100ms
        tc -n "$LINK_NS_DST" qdisc add dev "$LINK_DEV_DST" root tbf rate "$rate" \
            burst "$burst" latency 100ms
    fi
}

link_tx() {
    local a b
    a=$(in_src cat "/sys/class/net/$LINK_DEV_SRC/statistics/tx_bytes")
    b=$(in_dst cat "/sys/class/net/$LINK_DEV_DST/statistics/tx_bytes")
    echo $(( a + b ))
}
