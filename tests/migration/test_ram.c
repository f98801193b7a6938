/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Guest RAM for the engine's unit tests: see test_ram.h. */
#include <errno.h>
#include <sys/mman.h>

#include "test_ram.h"

HmRam *test_ram_new(uint64_t size, GError **errp)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO, "mmap: %s",
                    g_strerror(errno));
        return NULL;
    }
    madvise(p, size, MADV_NOHUGEPAGE);   /* page-exact tests */
    HintmigRamRegion r = { .name = "ram", .gpa = 0, .host = p, .size = size,
                           .page_size = HM_PAGE_SIZE, .backing = HINTMIG_BACKING_ANON,
                           .fd = -1 };
    HmRam *ram = hm_ram_new(&r, 1, errp);
    if (!ram) {
        munmap(p, size);
    }
    return ram;
}

void test_ram_free(HmRam *ram)
{
    if (ram) {
        munmap(ram->r[0].host, ram->r[0].size);
        hm_ram_free(ram);
    }
}
