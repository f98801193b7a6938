#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# libhintmig as its users get it:
#  - exports: the shared and the static library define no global name but
#    hintmig_*;
#  - install: `meson install --destdir` then a program outside the tree,
#    built with pkg-config alone, migrates with the installed library, both
#    linked shared and linked static beside names QEMU also has.
#   test_library.sh BUILDDIR SRCDIR
set -uo pipefail
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run=0 failed=0
check() {   # check NAME COMMAND...: one case
    local name=$1; shift
    run=$((run + 1))
    if "$@" >"$tmp/out" 2>&1; then
        echo "ok: $name"
    else
        failed=$((failed + 1))
        echo "FAIL: $name"; sed 's/^/    /' "$tmp/out"
    fi
}

only_public() {   # only_public NM-ARGS... FILE
    local bad
    bad=$(nm "$@" | awk '$2 ~ /^[A-Z]$/ && $2 != "U" && $2 != "w" && $2 != "v" {print $3}' |
          grep -v '^hintmig_' | sort -u)
    [ -z "$bad" ] || { echo "exported beyond hintmig_*:"; echo "$bad" | head -20; return 1; }
    nm "$@" | grep ' T hintmig_new$' >/dev/null || { echo "hintmig_new is not exported"; return 1; }
}
check "shared library exports only hintmig_*" only_public -D --defined-only "$build/libhintmig.so"
check "static library defines only hintmig_* globally" only_public --defined-only "$build/libhintmig.a"

# A sanitized build's library needs its runtime in the program too.
san=()
if nm -D "$build/libhintmig.so" | grep ' U __asan_' >/dev/null; then
    san=(-fsanitize=address,undefined)
fi

install_and_build() {
    local dest=$tmp/dest
    meson install -C "$build" --no-rebuild --destdir "$dest" --quiet >/dev/null || return 1
    local pc
    pc=$(dirname "$(find "$dest" -name hintmig.pc | head -1)")
    [ -n "$pc" ] || { echo "no hintmig.pc installed"; return 1; }
    [ -f "$(find "$dest" -path '*include/hintmig/hintmig.h' | head -1)" ] ||
        { echo "no installed header"; return 1; }
    # The installed file names the real prefix: point it into the destdir.
    sed -i "s|^prefix=\(.*\)|prefix=$dest\1|" "$pc/hintmig.pc"
    export PKG_CONFIG_PATH=$pc
    local pcflags=()
    cp "$src/examples/minimal_embedder.c" "$tmp/prog.c"
    # shellcheck disable=SC2046
    cc "${san[@]}" -std=c11 -Wall -Wextra -Werror -o "$tmp/prog" "$tmp/prog.c" \
        $(pkg-config "${pcflags[@]}" --cflags --libs hintmig) || return 1
    LD_LIBRARY_PATH=$(pkg-config "${pcflags[@]}" --variable=libdir hintmig) "$tmp/prog" || return 1
    # Static, beside a program that has names of its own the engine uses
    # inside (QEMU has migration_cancel, bitmap_new, publish ...).
    cat > "$tmp/clash.c" <<'C'
void migration_cancel(void); void bitmap_new(void); void publish(void);
void send_msg(void); void wait_ack(void); void socket_connect(void);
void migration_cancel(void) {} void bitmap_new(void) {} void publish(void) {}
void send_msg(void) {} void wait_ack(void) {} void socket_connect(void) {}
C
    local libdir
    libdir=$(pkg-config "${pcflags[@]}" --variable=libdir hintmig)
    # shellcheck disable=SC2046
    cc "${san[@]}" -std=c11 -o "$tmp/prog-static" "$tmp/prog.c" "$tmp/clash.c" \
        $(pkg-config "${pcflags[@]}" --cflags hintmig) "$libdir/libhintmig.a" \
        $(pkg-config "${pcflags[@]}" --static --libs-only-l hintmig | sed 's/-lhintmig//') \
        || return 1
    "$tmp/prog-static"
}
check "installed library: pkg-config build migrates (shared and static)" install_and_build

echo "TESTS: $run run, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
