/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Dirty page tracking over a range of guest RAM.
 *
 * Two backends, picked at run time:
 *  - "uffd-wp": userfaultfd write-protect in async mode, read and re-armed
 *    with the PAGEMAP_SCAN ioctl.  Reading a page's written state and
 *    write-protecting it again is one atomic step per PTE, so writers keep
 *    running during a sync.
 *  - "soft-dirty": /proc/self/pagemap bit 55, re-armed through
 *    /proc/self/clear_refs.  Reading and clearing are two steps; a write
 *    between them would be lost, so this backend pauses the writers (through
 *    the quiesce callback) for the length of a sync.
 */
#ifndef HINTMIG_DIRTY_TRACKER_H
#define HINTMIG_DIRTY_TRACKER_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "hintmig/hintmig.h"



typedef struct DirtyTracker DirtyTracker;

/*
 * Pauses (@pause true) or resumes every thread that writes the tracked
 * range.  Called only by backends whose sync is not atomic.
 */
typedef void (*DirtyQuiesceFn)(void *opaque, bool pause);

typedef struct DirtyTrackerStats {
    uint64_t syncs;            /* completed syncs */
    uint64_t pages_reported;   /* dirty pages returned, summed over syncs */
    uint64_t last_sync_ns;     /* duration of the last sync */
    uint64_t total_sync_ns;    /* all syncs */
} DirtyTrackerStats;




/*
 * Creates a tracker over [@base, @base + @len) (page aligned) with backend
 * @kind; AUTO picks the preferred backend that works and records why a
 * better one was passed over.  @quiesce may be NULL when the caller
 * guarantees that nothing writes the range during a sync.  Tracking begins
 * with dirty_tracker_start().  Returns NULL with @errp set on failure.
 */
DirtyTracker *dirty_tracker_new(void *base, uint64_t len, HintmigDirtyBackend kind,
                                DirtyQuiesceFn quiesce, void *opaque,
                                GError **errp);

/*
 * Starts tracking: every page counts as clean from now on.  Returns false
 * with @errp set on failure.
 */
bool dirty_tracker_start(DirtyTracker *t, GError **errp);

/*
 * Sets in @bitmap (one bit a page of the range; existing bits are kept) every
 * page written since the last start or sync, and re-arms tracking for them.
 * Returns false with @errp set on failure; the caller must then treat every
 * page as dirty.
 */
bool dirty_tracker_sync(DirtyTracker *t, unsigned long *bitmap, GError **errp);

/*
 * From now on page i of the range is reported as bit @offset + i: trackers
 * over several ranges fill one bitmap.
 */
void dirty_tracker_set_bit_offset(DirtyTracker *t, uint64_t offset);

/* Stops tracking; start may be called again later. */
void dirty_tracker_stop(DirtyTracker *t);

/* Stops if needed and frees @t (NULL is allowed). */
void dirty_tracker_free(DirtyTracker *t);

/* Returns the backend in use. */
HintmigDirtyBackend dirty_tracker_backend(const DirtyTracker *t);

/*
 * Returns why AUTO did not pick the preferred backend, or NULL when it did
 * (or when a backend was asked for explicitly).
 */
const char *dirty_tracker_fallback_reason(const DirtyTracker *t);

/* Returns the statistics so far. */
DirtyTrackerStats dirty_tracker_stats(const DirtyTracker *t);

#endif
