#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Builds the Linux guest for the QEMU free-page-hint baseline from Debian's
# packages: the cloud kernel and its virtio modules, and busybox-static for
# an initramfs whose init (init, beside this file) writes 1200 MiB of text
# into tmpfs, deletes it and idles: the fill-free shape.
#   build.sh OUTDIR    -> OUTDIR/vmlinuz, OUTDIR/initrd.gz
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
[ -f "$out/vmlinuz" ] && [ -f "$out/initrd.gz" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
kpkg=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/.*Depends: //p' | head -1)
apt-get download -qq "$kpkg" busybox-static 2>/dev/null
dpkg-deb -x "$kpkg"_*.deb k
dpkg-deb -x busybox-static_*.deb bb
mkdir -p ir/bin ir/mod ir/proc ir/sys ir/dev ir/mnt
cp bb/bin/busybox ir/bin/
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_balloon; do
    cp "$(find k/lib/modules -name "$m.ko" | head -1)" ir/mod/
done
cp "$here/init" ir/init
chmod +x ir/init
(cd ir && find . | ./bin/busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$out/initrd.gz")
cp k/boot/vmlinuz-* "$out/vmlinuz"
