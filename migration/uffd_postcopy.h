/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The destination's side of postcopy: guest RAM under userfaultfd.
 *
 * At the switch the receiver marks the pages the source still owes
 * ("missing"), then uffd_postcopy_start() registers RAM in missing mode,
 * fills the hinted ranges locally and starts the fault thread.  From then
 * on the guest runs.  A vCPU that touches a page that is not there blocks
 * in the kernel; the fault thread either fills it here (a page that is
 * known to be zero: sent as a zero marker, or hinted free) or asks the
 * source for it, once however many vCPUs wait on it.  Pages that arrive are
 * placed whole with UFFDIO_COPY, which also wakes whoever waits on them.
 * Each page is placed once: a second copy (a request racing with the
 * background stream) finds the page present (EEXIST) and is dropped.
 */
#ifndef HINTMIG_UFFD_POSTCOPY_H
#define HINTMIG_UFFD_POSTCOPY_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "migration/ram.h"
#include "migration/page_codec.h"

typedef struct UffdPostcopy UffdPostcopy;

typedef struct UffdPostcopyStats {
    uint64_t faults_local;     /* faults resolved here, without the network */
    uint64_t faults_remote;    /* faults on missing pages (waited for the source) */
    uint64_t requests;         /* request messages sent to the source */
    uint64_t requested_pages;  /* distinct pages requested */
    uint64_t hinted_requested; /* of those, pages the source had hinted (must be 0) */
    uint64_t placed_pages;     /* pages placed since the switch */
    uint64_t duplicate_pages;  /* pages that arrived when already present */
    uint64_t remaining;        /* pages still missing */
    uint64_t hint_filled;      /* hinted pages filled locally from the switch on */
    uint64_t hint_fill_ms;     /* how long that took (the guest already ran) */
    char fill_error[128];      /* why the fill stopped early, if it did */
    uint64_t lat_samples;      /* remote faults timed: request to placement */
    uint64_t lat_p50_us, lat_p99_us, lat_max_us;
    bool realtime;             /* the fault thread got SCHED_FIFO */
} UffdPostcopyStats;

/* Called by the fault thread to ask the source for pages; false if the link is down. */
typedef bool (*UffdRequestFn)(void *opaque, const uint64_t *pfns, unsigned n);

/*
 * Checks that this kernel lets this process register anonymous memory for
 * missing faults; false with @errp saying why not.
 */
bool uffd_postcopy_probe(GError **errp);

/* Prepares postcopy for @ram; NULL with @errp if userfaultfd is unavailable. */
UffdPostcopy *uffd_postcopy_new(HmRam *ram, GError **errp);

/* Stops the fault thread, unregisters RAM and frees @pc (NULL is allowed). */
void uffd_postcopy_free(UffdPostcopy *pc);

/*
 * Before start: @fn, called on the fault thread as it starts, may raise its
 * priority (the host's choice); it returns true if it did.
 */
void uffd_postcopy_set_urgent(UffdPostcopy *pc, bool (*fn)(void *opaque), void *opaque);

/* The pages the source still owes; the receiver sets them before start. */
unsigned long *uffd_postcopy_missing(UffdPostcopy *pc);

/*
 * Drops the stale copies of the missing pages, registers RAM and starts the
 * fault thread, which asks the source for missing pages through @fn, and a
 * thread that maps the zero page at the @hinted pages while the guest
 * already runs.  A non-zero @poison says the receiver has written the
 * guest's poison into every hinted page already: there is nothing to fill.
 */
bool uffd_postcopy_start(UffdPostcopy *pc, const unsigned long *hinted,
                         uint32_t poison, UffdRequestFn fn, void *opaque,
                         GError **errp);

/*
 * Places the pages of @b that are still missing, storing each one's digest
 * in @digests (indexed by page number).  false with @errp if the kernel
 * refuses a placement for another reason than the page being there.
 */
bool uffd_postcopy_place(UffdPostcopy *pc, const PageStaged *b, uint64_t *digests,
                         GError **errp);

/*
 * The link to the source went down (@up false: requests wait) or came back
 * (@up true: every page still requested is asked for again).
 */
void uffd_postcopy_link(UffdPostcopy *pc, bool up);

/* Waits until no page is missing; false after @timeout_ms or on @cancel. */
bool uffd_postcopy_wait_all(UffdPostcopy *pc, int timeout_ms);

/* Wakes uffd_postcopy_wait_all() (the stream broke). */
void uffd_postcopy_kick(UffdPostcopy *pc);

/* Every page is here: stops the fault thread and unregisters RAM. */
bool uffd_postcopy_finish(UffdPostcopy *pc, GError **errp);

UffdPostcopyStats uffd_postcopy_stats(UffdPostcopy *pc);

#endif
