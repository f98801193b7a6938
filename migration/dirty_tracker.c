/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Dirty tracker front end: backend choice, probing and statistics. */
#include <string.h>
#include <sys/mman.h>

#include "migration/dirty_backend.h"
#include "migration/bitmap.h"
#include "migration/ram.h"

#define PROBE_PAGES 8

static const DirtyBackendOps *backend_ops(HintmigDirtyBackend kind)
{
    switch (kind) {
    case HINTMIG_DIRTY_UFFD_WP: return &dirty_uffd_wp_ops;
    case HINTMIG_DIRTY_SOFT_DIRTY: return &dirty_soft_ops;
    default: return NULL;
    }
}

const char *hintmig_dirty_backend_name(HintmigDirtyBackend kind)
{
    const DirtyBackendOps *ops = backend_ops(kind);
    if (kind == HINTMIG_DIRTY_HOST) {
        return "host";
    }
    return ops ? ops->name : "auto";
}

bool hintmig_dirty_backend_parse(const char *str, HintmigDirtyBackend *out)
{
    static const HintmigDirtyBackend kinds[] = {
        HINTMIG_DIRTY_AUTO, HINTMIG_DIRTY_UFFD_WP, HINTMIG_DIRTY_SOFT_DIRTY,
    };
    for (size_t i = 0; i < G_N_ELEMENTS(kinds); i++) {
        if (!strcmp(str, hintmig_dirty_backend_name(kinds[i]))) {
            *out = kinds[i];
            return true;
        }
    }
    return false;
}

/*
 * A backend works if, on a scratch mapping, it reports exactly the one page
 * written after start.  Kernels without the feature fail at open or start;
 * kernels built without soft-dirty fail the comparison.
 */
bool hintmig_dirty_backend_probe(HintmigDirtyBackend kind, GError **errp)
{
    size_t len = PROBE_PAGES * HM_PAGE_SIZE;
    uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned long bitmap[HM_BITMAP_LONGS(PROBE_PAGES)] = { 0 };
    bool ok = false;

    if (mem == MAP_FAILED) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED,
                    "probe mapping failed");
        return false;
    }
    memset(mem, 1, len);
    DirtyTracker *t = dirty_tracker_new(mem, len, kind, NULL, NULL, errp);
    if (!t || !dirty_tracker_start(t, errp)) {
        goto out;
    }
    mem[3 * HM_PAGE_SIZE] = 2;
    if (!dirty_tracker_sync(t, bitmap, errp)) {
        goto out;
    }
    if (hm_bitmap_count(bitmap, PROBE_PAGES) != 1 || !hm_bitmap_test_bit(bitmap, 3)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_UNSUPPORTED,
                    "%s: the kernel does not report written pages%s",
                    hintmig_dirty_backend_name(kind),
                    kind == HINTMIG_DIRTY_SOFT_DIRTY
                        ? " (built without CONFIG_MEM_SOFT_DIRTY)" : "");
        goto out;
    }
    ok = true;
out:
    dirty_tracker_free(t);
    munmap(mem, len);
    return ok;
}

static DirtyTracker *tracker_open(void *base, uint64_t len,
                                  const DirtyBackendOps *ops,
                                  DirtyQuiesceFn quiesce, void *opaque,
                                  GError **errp)
{
    DirtyTracker *t = g_new0(DirtyTracker, 1);
    t->ops = ops;
    t->base = base;
    t->len = len;
    t->npages = len / HM_PAGE_SIZE;
    t->quiesce = quiesce;
    t->opaque = opaque;
    if (!ops->open(t, errp)) {
        g_free(t);
        return NULL;
    }
    return t;
}

DirtyTracker *dirty_tracker_new(void *base, uint64_t len, HintmigDirtyBackend kind,
                                DirtyQuiesceFn quiesce, void *opaque,
                                GError **errp)
{
    if (((uintptr_t)base | len) % HM_PAGE_SIZE || !len) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "dirty tracker: range is not page aligned");
        return NULL;
    }
    if (kind != HINTMIG_DIRTY_AUTO) {
        return tracker_open(base, len, backend_ops(kind), quiesce, opaque, errp);
    }

    g_autoptr(GError) why = NULL;
    if (hintmig_dirty_backend_probe(HINTMIG_DIRTY_UFFD_WP, &why)) {
        return tracker_open(base, len, &dirty_uffd_wp_ops, quiesce, opaque,
                            errp);
    }
    DirtyTracker *t = tracker_open(base, len, &dirty_soft_ops, quiesce, opaque,
                                   errp);
    if (t) {
        t->fallback_reason = g_strdup(why->message);
    }
    return t;
}

bool dirty_tracker_start(DirtyTracker *t, GError **errp)
{
    if (t->started) {
        return true;
    }
    if (!t->ops->start(t, errp)) {
        return false;
    }
    t->started = true;
    return true;
}

bool dirty_tracker_sync(DirtyTracker *t, unsigned long *bitmap, GError **errp)
{
    if (!t->started) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "dirty tracker: sync before start");
        return false;
    }
    size_t before = hm_bitmap_count(bitmap, t->npages);
    gint64 t0 = g_get_monotonic_time();
    bool ok = t->ops->sync(t, bitmap, errp);
    uint64_t ns = (uint64_t)(g_get_monotonic_time() - t0) * 1000;

    if (ok) {
        t->stats.syncs++;
        t->stats.pages_reported += hm_bitmap_count(bitmap, t->npages) - before;
        t->stats.last_sync_ns = ns;
        t->stats.total_sync_ns += ns;
    }
    return ok;
}

void dirty_tracker_stop(DirtyTracker *t)
{
    if (t->started) {
        t->ops->stop(t);
        t->started = false;
    }
}

void dirty_tracker_free(DirtyTracker *t)
{
    if (!t) {
        return;
    }
    dirty_tracker_stop(t);
    t->ops->close(t);
    g_free(t->fallback_reason);
    g_free(t);
}

HintmigDirtyBackend dirty_tracker_backend(const DirtyTracker *t)
{
    return t->ops->kind;
}

const char *dirty_tracker_fallback_reason(const DirtyTracker *t)
{
    return t->fallback_reason;
}

DirtyTrackerStats dirty_tracker_stats(const DirtyTracker *t)
{
    return t->stats;
}

void dirty_tracker_set_bit_offset(DirtyTracker *t, uint64_t offset)
{
    t->bit_offset = offset;
}
