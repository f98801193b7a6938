/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Private interface between dirty_tracker.c and its backends. */
#ifndef HINTMIG_DIRTY_BACKEND_H
#define HINTMIG_DIRTY_BACKEND_H

#include "migration/dirty_tracker.h"

typedef struct DirtyBackendOps {
    HintmigDirtyBackend kind;
    const char *name;
    /* Allocates backend state in t->priv; nothing is tracked yet. */
    bool (*open)(DirtyTracker *t, GError **errp);
    bool (*start)(DirtyTracker *t, GError **errp);
    bool (*sync)(DirtyTracker *t, unsigned long *bitmap, GError **errp);
    void (*stop)(DirtyTracker *t);
    void (*close)(DirtyTracker *t);
} DirtyBackendOps;

struct DirtyTracker {
    const DirtyBackendOps *ops;
    uint8_t *base;
    uint64_t len;
    uint64_t npages;
    uint64_t bit_offset;       /* page i of the range is bit bit_offset + i */
    bool started;
    DirtyQuiesceFn quiesce;
    void *opaque;
    char *fallback_reason;
    DirtyTrackerStats stats;
    void *priv;
};

extern const DirtyBackendOps dirty_uffd_wp_ops;
extern const DirtyBackendOps dirty_soft_ops;

#endif
