#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Builds the Linux test guest from Debian 12 packages: Debian's cloud kernel
# (vmlinuz, and its virtio modules in the initramfs) and busybox-static,
# with init and a static memcheck (both beside this file) as the guest's
# whole userspace.
#   build.sh OUTDIR    -> OUTDIR/vmlinuz, OUTDIR/initrd.gz
# Idempotent: OUTDIR/stamp holds a hash of memcheck.c, init and this
# script; while it matches, nothing is rebuilt, and the packages
# downloaded once (OUTDIR/debs) are reused when it does not.  Remove OUTDIR
# to start again (for instance to pick up a newer kernel).
set -euo pipefail

die() { echo "linux-guest/build.sh: $*" >&2; exit 1; }

if [ $# -ne 1 ] || [ -z "$1" ]; then die "usage: build.sh OUTDIR"; fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1" || die "cannot create $1"
out=$(cd "$1" && pwd)

for f in memcheck.c init build.sh; do
    [ -f "$here/$f" ] || die "missing $here/$f"
done
stamp=$(cat "$here/memcheck.c" "$here/init" "$here/build.sh" | sha256sum | cut -d' ' -f1)
if [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.gz" ] &&
   [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "linux-guest: $out is up to date"
    exit 0
fi

for t in apt-cache apt-get dpkg-deb gzip sha256sum "${CC:-cc}"; do
    command -v "$t" >/dev/null || die "needs $t (a Debian 12 machine with a C compiler)"
done

# Runs an apt command, waiting while another process holds apt's or
# dpkg's lock (up to 10 minutes); any other failure is reported at once.
apt_retry() {
    local err i
    err=$(mktemp)
    for i in $(seq 1 120); do
        if "$@" 2>"$err"; then
            rm -f "$err"
            return 0
        fi
        if grep -qiE 'could not get lock|unable to acquire|lock-frontend|is another process using it' "$err"; then
            [ "$i" = 1 ] && echo "linux-guest: apt is locked by another process; waiting" >&2
            sleep 5
            continue
        fi
        cat "$err" >&2
        rm -f "$err"
        return 1
    done
    cat "$err" >&2
    rm -f "$err"
    echo "linux-guest: apt still locked after 10 minutes" >&2
    return 1
}

# The versioned kernel package behind the cloud kernel's metapackage.
kernel_pkg() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -1
}

debs=$out/debs
mkdir -p "$debs"
kdeb=$(find "$debs" -maxdepth 1 -name 'linux-image-*-cloud-amd64_*.deb' | head -1)
bdeb=$(find "$debs" -maxdepth 1 -name 'busybox-static_*.deb' | head -1)
if [ -z "$kdeb" ] || [ -z "$bdeb" ]; then
    kpkg=$(kernel_pkg)
    if [ -z "$kpkg" ]; then
        echo "linux-guest: apt-cache knows no cloud kernel; running apt-get update" >&2
        apt_retry apt-get update -qq || die "apt-get update failed"
        kpkg=$(kernel_pkg)
        [ -n "$kpkg" ] || die "apt-cache finds no linux-image-cloud-amd64 (not Debian 12 amd64?)"
    fi
    echo "linux-guest: downloading $kpkg and busybox-static" >&2
    (cd "$debs" && apt_retry apt-get download -qq -o APT::Sandbox::User=root \
        "$kpkg" busybox-static) || die "apt-get download of $kpkg busybox-static failed"
    kdeb=$(find "$debs" -maxdepth 1 -name "${kpkg}_*.deb" | head -1)
    bdeb=$(find "$debs" -maxdepth 1 -name 'busybox-static_*.deb' | head -1)
    if [ -z "$kdeb" ] || [ -z "$bdeb" ]; then die "downloaded packages not found in $debs"; fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$kdeb" "$tmp/k" || die "cannot unpack $kdeb"
dpkg-deb -x "$bdeb" "$tmp/bb" || die "cannot unpack $bdeb"

ir=$tmp/ir
mkdir -p "$ir/bin" "$ir/mod" "$ir/proc" "$ir/sys" "$ir/dev" "$ir/tmp"
cp "$tmp/bb/bin/busybox" "$ir/bin/busybox"
# The modules init loads, in its order; none is built in in Debian 12's
# cloud kernel, and none is compressed.
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev \
         virtio_pci virtio_balloon; do
    ko=$(find "$tmp/k/lib/modules" -name "$m.ko" | head -1)
    [ -n "$ko" ] || die "$m.ko not in $(basename "$kdeb")"
    cp "$ko" "$ir/mod/"
done
cp "$here/init" "$ir/init"
chmod 755 "$ir/init"
# shellcheck disable=SC2086  # CFLAGS_EXTRA may hold several flags
"${CC:-cc}" -static -O2 -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -s \
    ${CFLAGS_EXTRA:-} -o "$ir/bin/memcheck" "$here/memcheck.c" ||
    die "compiling memcheck.c failed (static glibc: libc6-dev)"

(cd "$ir" && find . | "$tmp/bb/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -6) \
    > "$out/initrd.gz.tmp" || die "cannot write the initramfs"
vmlinuz=$(find "$tmp/k/boot" -name 'vmlinuz-*' | head -1)
[ -n "$vmlinuz" ] || die "no vmlinuz in $(basename "$kdeb")"
cp "$vmlinuz" "$out/vmlinuz.tmp"
rm -f "$out/stamp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.gz.tmp" "$out/initrd.gz"
echo "$stamp" > "$out/stamp"
echo "linux-guest: built $out/vmlinuz ($(basename "$vmlinuz")) and $out/initrd.gz"
