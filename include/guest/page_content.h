/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Data page content, a pure function of (pfn, generation).
 *
 * A quarter of the pages hold random bytes (incompressible), the rest
 * text-like words (compressible), chosen by a hash of (pfn, gen).  Each page
 * starts with its pfn and generation, so a page copied to the wrong place
 * is caught as surely as a page with stale content.
 */
#ifndef HINTMIG_PAGE_CONTENT_H
#define HINTMIG_PAGE_CONTENT_H

#include <stdbool.h>
#include <stdint.h>

/* Writes the 4 KiB content of page @pfn at generation @gen into @dst. */
void page_content_fill(void *dst, uint64_t pfn, uint32_t gen);

/* Returns true when @page holds exactly what page_content_fill writes. */
bool page_content_check(const void *page, uint64_t pfn, uint32_t gen);

/* Returns true when (@pfn, @gen) gives random rather than text content. */
bool page_content_is_random(uint64_t pfn, uint32_t gen);

/* Writes @len bytes of text-like words chosen by @seed (any length). */
void page_content_text(void *dst, size_t len, uint64_t seed);

/* Writes @len bytes (a multiple of 8) of random bytes chosen by @seed. */
void page_content_random(void *dst, size_t len, uint64_t seed);

/* splitmix64 step: the guest's seeding hash. */
uint64_t page_content_mix(uint64_t x);

#endif
