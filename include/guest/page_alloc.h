/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The guest's buddy page allocator, orders 0 to GUEST_MAX_ORDER (4 MiB).
 *
 * Its free lists and links live in guest RAM (superblock and page metadata),
 * guarded by a spinlock word that is itself in guest RAM.  vCPUs only stop
 * between operations, so the lock is never held across a migration.
 */
#ifndef HINTMIG_PAGE_ALLOC_H
#define HINTMIG_PAGE_ALLOC_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "guest/guest_layout.h"
#include "vm/guest_ram.h"

/* A view of a guest's RAM: the layout pointers the allocator works on. */
typedef struct GuestMem {
    GuestRam *ram;
    GuestSuperblock *sb;
    GuestPageMeta *meta;
    uint64_t npages;
} GuestMem;

/*
 * Lays out superblock, metadata and an empty allocator over @ram, with every
 * page of the zone free.  Returns false with @errp set if RAM is too small.
 */
bool page_alloc_init(GuestMem *m, GuestRam *ram, GError **errp);

/*
 * Attaches to a layout already in RAM.  Returns false with @errp set if the
 * superblock is missing or does not fit this RAM.
 */
bool page_alloc_attach(GuestMem *m, GuestRam *ram, GError **errp);

/*
 * Allocates 2^@order pages marked @kind and @owner.  Returns the first pfn,
 * or GUEST_PFN_NONE when no block is free.
 */
uint32_t page_alloc(GuestMem *m, unsigned order, uint8_t kind, uint8_t owner);

/*
 * Frees the block of 2^@order pages at @pfn and merges it with its buddies.
 * Returns 0, or -EINVAL when @pfn is not an allocated block of that order
 * (nothing is changed then).
 */
int page_free(GuestMem *m, uint32_t pfn, unsigned order);

/* Returns true when @pfn is inside the allocation zone. */
bool page_in_zone(const GuestMem *m, uint64_t pfn);

/*
 * Checks the free lists against the page states: every list entry a free
 * head of the right order, no loops, counts that add up.  Returns true, or
 * false with @errp naming the first inconsistency.  Call with no
 * allocator running.
 */
bool page_alloc_check(GuestMem *m, GError **errp);

#endif
