/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The free page hint filter: which hinted pages may really stay off the
 * wire.
 *
 * A hint under command id N says "this page was free at some moment after
 * id N was issued".  The engine syncs dirty tracking just before issuing N,
 * so a page written after that appears in the *next* sync.  Hints are
 * therefore only candidates until that next sync: hint_filter_commit()
 * keeps the candidates the sync did not report dirty.  A kept page that is
 * written later is reported by a later sync, leaves the set
 * (hint_filter_apply_dirty) and is sent.  Hints under any other id are
 * ignored.
 */
#ifndef HINTMIG_HINT_FILTER_H
#define HINTMIG_HINT_FILTER_H

#include <stdbool.h>
#include <stdint.h>

#include "migration/ram.h"

typedef struct HintFilter HintFilter;

typedef struct HintFilterStats {
    uint64_t hinted_pages;     /* pages hinted under the current id */
    uint64_t stale_pages;      /* pages hinted under another id: ignored */
    uint64_t dirty_dropped;    /* candidates the next sync found written */
    uint64_t dirty_zero;       /* ... of which read back as zeros: kept */
    uint64_t skipped;          /* pages kept off the wire (current set) */
    uint64_t rewritten;        /* kept pages written later, so sent after all */
    uint64_t madv_freed_bytes; /* released on the source (MADV_FREE, a hole) */
    uint64_t kept_bytes;       /* hinted, kept off the wire, but not released */
    char kept_why[96];         /* why not, for the first such range */
} HintFilterStats;

HintFilter *hint_filter_new(HmRam *ram);
void hint_filter_free(HintFilter *f);

/* From now on, hints under @cmd_id (and only it) are candidates. */
void hint_filter_begin(HintFilter *f, uint32_t cmd_id);

/* No more hints are taken. */
void hint_filter_end(HintFilter *f);

/* A hinted range from the device (any thread).  Out-of-range parts are cut. */
void hint_filter_add(HintFilter *f, uint32_t cmd_id, uint64_t gpa, uint64_t len);
/* The same for @n pages from page index @first (clipped to its region). */
void hint_filter_add_pages(HintFilter *f, uint32_t cmd_id, uint64_t first, uint64_t n);

/*
 * Resolves the candidates against @dirty, the first sync after the id was
 * issued: those not in it join the skip set, and the rest are dropped.
 * With @madv_free, the pages joining the set are released with MADV_FREE.
 * Returns how many pages joined.
 */
uint64_t hint_filter_commit(HintFilter *f, const unsigned long *dirty,
                            bool madv_free);

/* A later sync: pages in @dirty leave the skip set (they will be sent). */
void hint_filter_apply_dirty(HintFilter *f, const unsigned long *dirty);

/* Returns true when page @pfn stays off the wire. */
bool hint_filter_skip(const HintFilter *f, uint64_t pfn);

/* The skip set, one bit a page (valid until the filter is freed). */
const unsigned long *hint_filter_set(const HintFilter *f);

HintFilterStats hint_filter_stats(HintFilter *f);

#endif
