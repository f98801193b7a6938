/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Present-page bitmaps: see include/migration/ram_presence.h. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "migration/kernel_compat.h"
#include "migration/bitmap.h"
#include "migration/ram_presence.h"

#define REGIONS 512
#define ENTRIES 8192

static bool scan_ioctl(int fd, const HmRegion *r, unsigned long *map)
{
    struct page_region vec[REGIONS];
    uint64_t start = (uintptr_t)r->host, end = start + r->size;

    while (start < end) {
        struct pm_scan_arg arg = {
            .size = sizeof(arg),
            .start = start,
            .end = end,
            .vec = (uintptr_t)vec,
            .vec_len = REGIONS,
            /* Backed, and not the shared zero page a read maps. */
            .category_inverted = PAGE_IS_PFNZERO,
            .category_mask = PAGE_IS_PFNZERO,
            .category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            .return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        };
        long n = ioctl(fd, PAGEMAP_SCAN, &arg);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 || arg.walk_end <= start) {
            return false;
        }
        for (long i = 0; i < n; i++) {
            hm_bitmap_set_range(map, r->first + (vec[i].start - (uintptr_t)r->host) /
                                HM_PAGE_SIZE, (vec[i].end - vec[i].start) / HM_PAGE_SIZE);
        }
        start = arg.walk_end;
    }
    return true;
}

static bool scan_read(int fd, const HmRegion *r, unsigned long *map)
{
    g_autofree uint64_t *buf = g_new(uint64_t, ENTRIES);
    uint64_t vpn = (uintptr_t)r->host / HM_PAGE_SIZE;

    for (uint64_t done = 0; done < r->npages;) {
        size_t want = MIN((uint64_t)ENTRIES, r->npages - done);
        ssize_t n = pread(fd, buf, want * 8, (vpn + done) * 8);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0 || n % 8) {
            return false;
        }
        for (size_t i = 0; i < (size_t)n / 8; i++) {
            if (buf[i] & (PM_ENTRY_PRESENT | PM_ENTRY_SWAPPED)) {
                hm_bitmap_set_bit(map, r->first + done + i);
            }
        }
        done += n / 8;
    }
    return true;
}

unsigned long *ram_presence_scan(const HmRam *ram, GError **errp)
{
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                    "cannot open /proc/self/pagemap: %s", g_strerror(errno));
        return NULL;
    }
    unsigned long *map = hm_bitmap_new(ram->npages);
    bool ok = true;
    for (unsigned i = 0; ok && i < ram->n; i++) {
        const HmRegion *r = &ram->r[i];
        if (r->backing != HINTMIG_BACKING_ANON) {
            /* Shared memory holds data the page tables may not map: count
             * every page as touched. */
            hm_bitmap_set_range(map, r->first, r->npages);
            continue;
        }
        ok = scan_ioctl(fd, r, map) || scan_read(fd, r, map);
    }
    close(fd);
    if (!ok) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                    "cannot read /proc/self/pagemap");
        g_free(map);
        return NULL;
    }
    return map;
}
