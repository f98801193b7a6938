/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VM state files (vmstate_file.c): the loader reads a file written from the
 * input, into RAM the size its header names (up to 16 KiB, else 8 KiB), and
 * the sections go to the VM's loader.  An input that starts with the magic's
 * first byte gets its SHA-256 appended, so that the fuzzer gets past the
 * checksum; any other is the file as is.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vm/vmstate_file.h"
#include "fuzz.h"
#include "fuzz_vm.h"

/* Small, for speed: checksumming the file is most of a run. */
#define MAX_RAM (16u << 10)

typedef struct Ctx {
    Vm *vm;
    int fd;
    char *path;
    uint8_t *before;       /* what RAM holds before each load */
    GuestRam *rams[4];     /* by size in pages, less one: made once */
} Ctx;

static Ctx ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    ctx.vm = fuzz_vm_new();
    ctx.fd = memfd_create("fuzz-vmstate", MFD_CLOEXEC);
    FUZZ_CHECK(ctx.fd >= 0);
    ctx.path = g_strdup_printf("/proc/self/fd/%d", ctx.fd);
    ctx.before = g_malloc(MAX_RAM);
    memset(ctx.before, 0x5a, MAX_RAM);
    return 0;
}

static void put(const void *p, size_t len, off_t off)
{
    FUZZ_CHECK(pwrite(ctx.fd, p, len, off) == (ssize_t)len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GError) err = NULL;
    uint64_t ram_size = 8192;

    FUZZ_CHECK(ftruncate(ctx.fd, 0) == 0);
    if (size) {
        put(data, size, 0);
    }
    if (size && data[0] == 'H') {
        guint8 digest[32];
        gsize dlen = sizeof(digest);
        GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
        g_checksum_update(sum, data, size);
        g_checksum_get_digest(sum, digest, &dlen);
        g_checksum_free(sum);
        put(digest, sizeof(digest), size);
    }
    if (size >= 24) {
        uint64_t want;
        memcpy(&want, data + 16, 8);
        want = GUINT64_FROM_LE(want);
        if (want && want <= MAX_RAM && want % GUEST_PAGE_SIZE == 0) {
            ram_size = want;
        }
    }
    GuestRam **slot = &ctx.rams[ram_size / GUEST_PAGE_SIZE - 1];
    if (!*slot) {
        GuestRamOptions o = { .size = ram_size, .numa_node = -1 };
        *slot = guest_ram_new(&o, NULL);
        FUZZ_CHECK(*slot);
    }
    GuestRam *ram = *slot;
    memcpy(ram->host, ctx.before, ram->size);

    g_autoptr(GPtrArray) secs = vmstate_file_load(ctx.path, ram, &err);
    if (!secs) {
        FUZZ_CHECK(err);
        /* On any error RAM is unchanged. */
        FUZZ_CHECK(!memcmp(ram->host, ctx.before, ram->size));
    } else if (!vm_load_sections(ctx.vm, secs, &err)) {
        FUZZ_CHECK(err);
    }
    return 0;
}
