#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Builds Debian 12's QEMU 7.2 (x86_64-softmmu, TCG) with hintmig's patch
# series on top, linked with this tree's libhintmig (built and installed
# into the same prefix first, found by pkg-config, loaded through an rpath),
# and installs it into PREFIX (default build-qemu/prefix) so libvirt can use
# PREFIX/bin/qemu-system-x86_64 as <emulator>.  The Debian
# source package is downloaded once into build-qemu/src/; the tree is
# re-derived from it (Debian's patches, then qemu/patches/series) whenever
# the series changes, and every step is skipped when its inputs did not
# change, so a second run does almost nothing.
#
# Usage: qemu/build.sh [PREFIX]          (as root on Debian 12)
# Environment:
#   HINTMIG_PKG_CONFIG_PATH  prepended to PKG_CONFIG_PATH for configure
#                            (where a libhintmig build's hintmig.pc lives)
#   QEMU_BUILD_JOBS          parallel jobs (default: nproc)
#   QEMU_BUILD_SKIP_VERIFY=1 skip the smoke test after installing
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
cache="$top/build-qemu"
srccache="$cache/src"          # Debian source package (.dsc, tarballs)
pristine="$cache/pristine"     # unpacked with Debian's patches, never edited
tree="$cache/qemu"             # pristine + our series; configure reads this
builddir="$cache/build"
prefix=${1:-$cache/prefix}
mkdir -p "$cache" "$prefix"
prefix=$(cd "$prefix" && pwd)
jobs=${QEMU_BUILD_JOBS:-$(nproc)}
patchdir="$here/patches"
series="$patchdir/series"

log() { printf 'qemu-build: %s\n' "$*" >&2; }
die() { printf 'qemu-build: error: %s\n' "$*" >&2; exit 1; }
step_start=$SECONDS
step() { log "[$((SECONDS - step_start))s] $*"; }

# apt-get, waiting for another apt or dpkg to let go of its lock.
apt_run() {
    local try out rc
    for try in $(seq 1 60); do
        rc=0
        out=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=60 "$@" 2>&1) || rc=$?
        if [ "$rc" -eq 0 ]; then
            return 0
        fi
        if grep -qiE 'could not get lock|unable to acquire|is another process using it' <<<"$out"; then
            log "apt is busy (another apt-get or dpkg holds its lock); retry $try in 10s"
            sleep 10
            continue
        fi
        printf '%s\n' "$out" >&2
        die "apt-get $* failed (exit $rc)"
    done
    die "apt lock still held after 60 tries"
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "need root to $1"
}

# ---- 1. deb-src, build dependencies -----------------------------------------

sources=/etc/apt/sources.list.d/debian.sources
have_deb_src() {
    # apt-cache showsrc prints nothing (exit 0) when no deb-src is known.
    # (Captured first: grep -q closing the pipe early would fail pipefail.)
    local out
    out=$(apt-cache showsrc qemu 2>/dev/null) || true
    grep -q '^Package: qemu' <<<"$out"
}

ensure_deb_src() {
    have_deb_src && return 0
    need_root "enable deb-src in $sources"
    [ -f "$sources" ] || die "$sources missing: enable deb-src for qemu by hand"
    if ! grep -qE '^Types:.*deb-src' "$sources"; then
        step "enabling deb-src in $sources (backup: $sources.hintmig-orig)"
        cp -n "$sources" "$sources.hintmig-orig"
        sed -i -E 's/^Types:[[:space:]]*deb[[:space:]]*$/Types: deb deb-src/' "$sources"
    fi
    step "apt-get update"
    apt_run update -qq
    have_deb_src || die "apt-cache showsrc qemu finds nothing after enabling deb-src"
}

# Minimal set for the configure line below (no docs, no GUI, no tools);
# seabios and ipxe-qemu provide the firmware (see install_data_files).
build_deps=(build-essential pkg-config ninja-build meson python3 dpkg-dev rsync
            libglib2.0-dev libpixman-1-dev zlib1g-dev libslirp-dev libfdt-dev
            seabios ipxe-qemu liburing-dev libzstd-dev libxxhash-dev)

ensure_build_deps() {
    local missing=() p
    for p in "${build_deps[@]}"; do
        [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    need_root "install ${missing[*]}"
    step "installing ${missing[*]}"
    apt_run update -qq
    apt_run install -y -qq --no-install-recommends "${missing[@]}"
}

# ---- 2. source: download once, unpack once ----------------------------------

fetch_source() {
    mkdir -p "$srccache"
    if ! ls "$srccache"/qemu_*.dsc >/dev/null 2>&1; then
        ensure_deb_src
        step "downloading Debian's QEMU source into $srccache"
        # Into a scratch directory first: a .dsc in $srccache means the
        # whole package is there.
        rm -rf "$srccache.tmp"
        mkdir -p "$srccache.tmp"
        (cd "$srccache.tmp" && apt_run source --download-only -qq qemu)
        mv "$srccache.tmp"/* "$srccache/"
        rmdir "$srccache.tmp"
    fi
    dsc=$(ls "$srccache"/qemu_*.dsc | sort -V | tail -n1)
    debver=$(sed -n 's/^Version: //p' "$dsc")
    pkgversion="Debian $debver, hintmig"
}

unpack_pristine() {
    local stamp="$pristine/.hintmig-dsc"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(basename "$dsc")" ]; then
        return 0
    fi
    step "unpacking $(basename "$dsc") (with Debian's patches) into $pristine"
    rm -rf "$pristine" "$pristine.tmp"
    dpkg-source --no-check -x "$dsc" "$pristine.tmp" >/dev/null \
        || die "dpkg-source -x $dsc failed"
    mv "$pristine.tmp" "$pristine"
    basename "$dsc" > "$stamp"
}

# ---- 3. the patch series ------------------------------------------------------

series_files() {
    # quilt's format: one file a line, '#' starts a comment.
    sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$series" | awk '{print $1}'
}

series_hash() {
    local f
    {
        basename "$dsc"
        [ -f "$series" ] && cat "$series"
        for f in $(series_files); do
            [ -f "$patchdir/$f" ] || die "series names $f, missing in $patchdir"
            sha256sum < "$patchdir/$f"
        done
    } | sha256sum | cut -d' ' -f1
}

# The tree is pristine + series.  When the series changes, a fresh copy is
# patched in a staging directory and synced into the tree by content, so
# only files whose content changed get a new mtime and the build after it
# is incremental.
prepare_tree() {
    local want stamp="$cache/.tree-series" staging="$cache/staging" f
    want=$(series_hash)
    if [ -d "$tree" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        step "source tree up to date ($(series_files | wc -l) patches)"
        return 0
    fi
    step "deriving the source tree: pristine + $(series_files | wc -l) patches"
    rm -rf "$staging"
    cp -a "$pristine" "$staging"
    rm -f "$staging/.hintmig-dsc"
    for f in $(series_files); do
        step "  applying $f"
        patch -d "$staging" -p1 --batch --forward --no-backup-if-mismatch -s \
            < "$patchdir/$f" || die "$f does not apply to $(basename "$dsc")"
    done
    mkdir -p "$tree"
    rsync -rlc --delete "$staging/" "$tree/"
    rm -rf "$staging"
    echo "$want" > "$stamp"
}

# ---- 4. libhintmig, then QEMU: configure, build, install ----------------------

# libhintmig from this tree, installed into the same prefix: QEMU finds it
# with pkg-config and loads it through an rpath, so the prefix is
# self-contained for libvirt's <emulator>.
build_libhintmig() {
    local dir="$cache/hintmig-build"
    if [ ! -f "$dir/build.ninja" ]; then
        step "configuring libhintmig into $prefix"
        meson setup "$dir" "$top" -Dtests=false --buildtype=debugoptimized \
            --prefix="$prefix" --libdir=lib > "$cache/hintmig-build.log" 2>&1 \
            || { tail -n 20 "$cache/hintmig-build.log" >&2; die "libhintmig configure failed"; }
    fi
    ninja -C "$dir" >> "$cache/hintmig-build.log" 2>&1 \
        || { tail -n 30 "$cache/hintmig-build.log" >&2; die "libhintmig build failed (log: $cache/hintmig-build.log)"; }
    meson install -C "$dir" --no-rebuild --only-changed --quiet >> "$cache/hintmig-build.log" 2>&1 \
        || { tail -n 20 "$cache/hintmig-build.log" >&2; die "libhintmig install failed"; }
    step "libhintmig installed: $prefix/lib/libhintmig.so"
}


configure_args() {
    # Only the features a libvirt-managed x86_64 Linux guest needs (TCG,
    # KVM for libvirt's probe, slirp, VNC), and zstd, without which QEMU
    # refuses multifd-compression zstd (the adapter maps it onto hintmig's
    # zstd; libvirt sets it for --comp-methods zstd); every other optional
    # library is off.
    # The device set is QEMU's default for x86_64 (q35, pc, virtio, VGA);
    # a smaller one would need a devices file inside QEMU's tree.
    printf '%s\n' \
        --prefix="$prefix" \
        --target-list=x86_64-softmmu \
        --with-git-submodules=ignore \
        --with-pkgversion="$pkgversion" \
        --without-default-features \
        --enable-tcg --enable-kvm \
        --enable-fdt=system --enable-slirp --enable-vnc --enable-zstd \
        --disable-modules --disable-docs \
        --disable-install-blobs \
        --enable-hintmig --extra-ldflags="-Wl,-rpath,$prefix/lib" \
        --firmwarepath=/usr/share/seabios:/usr/lib/ipxe/qemu
}

configure_qemu() {
    local args stamp="$builddir/.hintmig-configure" want
    mapfile -t args < <(configure_args)
    want=$(printf '%s\n' "${args[@]}" "pkg-config: $PKG_CONFIG_PATH" | sha256sum | cut -d' ' -f1)
    if [ -f "$builddir/build.ninja" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        step "configure up to date"
        return 0
    fi
    step "configure ${args[*]}"
    # Re-run in place: configure starts meson afresh, and ninja then keeps
    # every object whose command line did not change.
    rm -f "$stamp"
    mkdir -p "$builddir"
    (cd "$builddir" && "$tree/configure" "${args[@]}") > "$cache/configure.log" 2>&1 \
        || { tail -n 30 "$cache/configure.log" >&2; die "configure failed (log: $cache/configure.log)"; }
    echo "$want" > "$stamp"
}

# Only what "meson install" installs: ninja's default target would also
# build QEMU's unit and softfloat tests, a fifth of the steps.
install_targets() {
    meson introspect --installed "$builddir" |
        /usr/bin/python3 -c 'import json, os, sys
roots = {os.path.realpath(sys.argv[1]) + "/", os.path.abspath(sys.argv[1]) + "/"}
for src in json.load(sys.stdin):
    for b in roots:
        if src.startswith(b):
            print(src[len(b):])
            break' "$builddir"
}

build_qemu() {
    local t0=$SECONDS targets
    mapfile -t targets < <(install_targets)
    [ ${#targets[@]} -gt 0 ] || die "meson introspect lists nothing to install"
    step "building ${targets[*]} with $jobs jobs (log: $cache/build.log)"
    ninja -C "$builddir" -j "$jobs" "${targets[@]}" > "$cache/build.log" 2>&1 \
        || { tail -n 40 "$cache/build.log" >&2; die "build failed (log: $cache/build.log)"; }
    step "build done in $((SECONDS - t0))s ($(grep -c '^\[' "$cache/build.log" || true) steps)"
}

# Debian's QEMU installs pc-bios/ itself (its patches drop the subdir from
# meson.build), and its tarball has no prebuilt option ROMs.  Do what it
# does, into PREFIX/share/qemu, the data directory QEMU finds relative to
# its binary: build the x86 option ROMs with its debian/optionrom.mak
# (linuxboot_dma.bin for -kernel, kvmvapic.bin, ...) and copy the VNC
# keymaps.  BIOS, VGA BIOS and NIC ROMs come from the seabios and
# ipxe-qemu packages through --firmwarepath.
install_data_files() {
    local dir="$cache/optionrom" f dst="$prefix/share/qemu"
    mkdir -p "$dir" "$dst/keymaps"
    make -s -f "$tree/debian/optionrom.mak" -C "$dir" SRC_PATH="$tree" all \
        > "$cache/optionrom.log" 2>&1 \
        || { tail -n 20 "$cache/optionrom.log" >&2; die "option ROMs failed (log: $cache/optionrom.log)"; }
    for f in "$dir"/*.bin; do
        cmp -s "$f" "$dst/${f##*/}" || install -m 0644 "$f" "$dst/"
    done
    for f in "$tree"/pc-bios/keymaps/*; do
        [ "${f##*/}" = meson.build ] && continue
        cmp -s "$f" "$dst/keymaps/${f##*/}" || install -m 0644 "$f" "$dst/keymaps/"
    done
}

install_qemu() {
    step "installing into $prefix"
    # --only-changed keeps the binary's ctime when it did not change, so
    # libvirt does not re-probe it after a no-op run.
    meson install -C "$builddir" --no-rebuild --only-changed --quiet \
        > "$cache/install.log" 2>&1 \
        || { tail -n 30 "$cache/install.log" >&2; die "install failed (log: $cache/install.log)"; }
}

# ---- 5. smoke test --------------------------------------------------------------

# Starts the installed binary the way libvirt would need it: q35 under TCG
# with its default VGA, a virtio NIC (its option ROM) and a VNC server (a
# keymap), stopped (-S); the BIOS and ROMs are loaded at machine creation,
# so a missing one fails here.  Then asks query-status over QMP.
verify_qemu() {
    local qemu="$prefix/bin/qemu-system-x86_64" out tmp
    [ -x "$qemu" ] || die "$qemu missing after install"
    out=$("$qemu" -device help 2>&1) || die "$qemu -device help failed: $out"
    grep -q '"virtio-balloon-pci"' <<<"$out" \
        || die "$qemu -device help lists no virtio-balloon-pci"
    tmp=$(mktemp -d)
    out=$(printf '%s\n' '{"execute":"qmp_capabilities"}' \
              '{"execute":"query-status"}' '{"execute":"quit"}' |
          timeout 60 "$qemu" -accel tcg -M q35 -m 128 -S -vnc "unix:$tmp/vnc" \
              -nic user,model=virtio-net-pci -qmp stdio 2>&1) \
        || { rm -rf "$tmp"; die "$qemu -M q35 -qmp stdio failed: $out"; }
    rm -rf "$tmp"
    grep -q '"status": "prelaunch"' <<<"$out" \
        || die "query-status did not answer prelaunch: $out"
    step "verified: q35 (TCG, VGA, virtio NIC, VNC) answers query-status; virtio-balloon-pci present"
}

# ---- main -----------------------------------------------------------------------

export PKG_CONFIG_PATH="${HINTMIG_PKG_CONFIG_PATH:+$HINTMIG_PKG_CONFIG_PATH:}$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
[ -f "$series" ] || die "$series missing"

ensure_build_deps
fetch_source
unpack_pristine
prepare_tree
build_libhintmig
configure_qemu
build_qemu
install_qemu
install_data_files
[ "${QEMU_BUILD_SKIP_VERIFY:-0}" = 1 ] || verify_qemu
step "done: $prefix/bin/qemu-system-x86_64"
