/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Page-list vectors in guest RAM: a directory page of up to 1024 leaf pfns,
 * each leaf a page of up to 1024 page pfns (4 GiB of pages at most).  The
 * guest's tasks keep their working sets and fill lists in them.
 */
#ifndef HINTMIG_PAGE_VEC_H
#define HINTMIG_PAGE_VEC_H

#include "guest/page_alloc.h"

#define PAGE_VEC_FANOUT (GUEST_PAGE_SIZE / sizeof(uint32_t))
#define PAGE_VEC_MAX    ((uint64_t)PAGE_VEC_FANOUT * PAGE_VEC_FANOUT)

/* Allocates an empty vector; returns its directory pfn or GUEST_PFN_NONE. */
uint32_t page_vec_new(GuestMem *m, uint8_t owner);

/*
 * Stores @pfn at index @idx (allocating a leaf at each leaf's first index).
 * Returns 0, -ENOMEM, or -EINVAL when the vector in RAM is corrupt.
 */
int page_vec_set(GuestMem *m, uint32_t dir, uint64_t idx, uint32_t pfn,
                 uint8_t owner);

/*
 * Reads index @idx into *@pfn.  Returns 0, or -EINVAL when the vector or
 * the entry is corrupt (out of range, or not an allocated page).
 */
int page_vec_get(GuestMem *m, uint32_t dir, uint64_t idx, uint32_t *pfn);

/* Frees the leaves covering @count entries and the directory. */
int page_vec_free(GuestMem *m, uint32_t dir, uint64_t count);

#endif
