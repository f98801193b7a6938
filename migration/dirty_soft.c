/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Dirty tracking with soft-dirty PTE bits (the fallback).
 *
 * clear_refs acts on the whole process and the read and the clear are
 * separate steps, so a sync pauses the writers around both, as the kernel
 * cannot do it atomically for us.  THP pages are tracked per huge page.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "migration/kernel_compat.h"
#include "migration/dirty_backend.h"
#include "migration/bitmap.h"
#include "migration/ram.h"

#define PAGEMAP_BATCH 8192   /* entries read per pread */

typedef struct SoftDirty {
    int pagemap_fd;
    int clear_refs_fd;
    uint64_t *buf;
} SoftDirty;

static bool soft_clear(SoftDirty *s, GError **errp)
{
    /* "4" clears the soft-dirty bits of every mapping of the process. */
    if (pwrite(s->clear_refs_fd, "4", 1, 0) != 1) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                    "soft-dirty: writing /proc/self/clear_refs failed: %s",
                    g_strerror(errno));
        return false;
    }
    return true;
}

static bool soft_open(DirtyTracker *t, GError **errp)
{
    int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pm < 0) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                    "soft-dirty: cannot open /proc/self/pagemap: %s",
                    g_strerror(errno));
        return false;
    }
    int cr = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (cr < 0) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                    "soft-dirty: cannot open /proc/self/clear_refs: %s",
                    g_strerror(errno));
        close(pm);
        return false;
    }
    SoftDirty *s = g_new0(SoftDirty, 1);
    s->pagemap_fd = pm;
    s->clear_refs_fd = cr;
    s->buf = g_new(uint64_t, PAGEMAP_BATCH);
    t->priv = s;
    return true;
}

static bool soft_start(DirtyTracker *t, GError **errp)
{
    return soft_clear(t->priv, errp);
}

static bool soft_read(DirtyTracker *t, unsigned long *bitmap, GError **errp)
{
    SoftDirty *s = t->priv;
    uint64_t first_vpn = (uintptr_t)t->base / HM_PAGE_SIZE;

    for (uint64_t done = 0; done < t->npages;) {
        size_t want = MIN((uint64_t)PAGEMAP_BATCH, t->npages - done);
        ssize_t n = pread(s->pagemap_fd, s->buf, want * sizeof(uint64_t),
                          (first_vpn + done) * sizeof(uint64_t));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0 || n % sizeof(uint64_t)) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                        "soft-dirty: reading /proc/self/pagemap failed: %s",
                        n < 0 ? g_strerror(errno) : "short read");
            return false;
        }
        size_t got = n / sizeof(uint64_t);
        for (size_t i = 0; i < got; i++) {
            if (s->buf[i] & PM_ENTRY_SOFT_DIRTY) {
                hm_bitmap_set_bit(bitmap, t->bit_offset + done + i);
            }
        }
        done += got;
    }
    return true;
}

static bool soft_sync(DirtyTracker *t, unsigned long *bitmap, GError **errp)
{
    if (t->quiesce) {
        t->quiesce(t->opaque, true);
    }
    bool ok = soft_read(t, bitmap, errp) && soft_clear(t->priv, errp);
    if (t->quiesce) {
        t->quiesce(t->opaque, false);
    }
    return ok;
}

static void soft_stop(DirtyTracker *t)
{
    (void)t;
}

static void soft_close(DirtyTracker *t)
{
    SoftDirty *s = t->priv;

    close(s->pagemap_fd);
    close(s->clear_refs_fd);
    g_free(s->buf);
    g_free(s);
}

const DirtyBackendOps dirty_soft_ops = {
    .kind = HINTMIG_DIRTY_SOFT_DIRTY,
    .name = "soft-dirty",
    .open = soft_open,
    .start = soft_start,
    .sync = soft_sync,
    .stop = soft_stop,
    .close = soft_close,
};
