/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Guest RAM as the engine sees it: the host's regions, laid end to end in
 * one page index.
 *
 * Region i's pages follow region i-1's, so bitmaps, batches and digests
 * keep one index for all of RAM.  Both sides agree on the table in the
 * handshake (names, sizes, order), so an index names a region and an offset
 * in it on either side.  Anything that acts on a run of pages in the host's
 * address space (madvise, userfaultfd, pagemap) goes through the region
 * that holds it, since regions are not adjacent in memory.
 */
#ifndef HINTMIG_RAM_H
#define HINTMIG_RAM_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "hintmig/hintmig.h"

#define HM_PAGE_SIZE HINTMIG_PAGE_SIZE
#define HM_PAGE_SHIFT 12

typedef struct HmRegion {
    char *name;
    uint64_t gpa;              /* HINTMIG_GPA_NONE when the host gave none */
    uint8_t *host;
    uint64_t size;
    uint64_t page_size;
    HintmigBacking backing;
    int fd;
    uint64_t fd_offset;
    uint64_t first;            /* index of its first page */
    uint64_t npages;
} HmRegion;

typedef struct HmRam {
    HmRegion *r;
    unsigned n;
    uint64_t npages;           /* all regions */
    uint64_t size;             /* bytes, all regions */
} HmRam;

/*
 * Checks and copies the host's table: page-aligned, non-empty, named
 * uniquely, not overlapping in host or guest-physical space.  Returns NULL
 * with @errp set (HINTMIG_ERROR_INVALID) otherwise.
 */
HmRam *hm_ram_new(const HintmigRamRegion *regions, unsigned n, GError **errp);
void hm_ram_free(HmRam *ram);

/* Returns the region holding page @pfn (which must be < ram->npages). */
static inline const HmRegion *hm_ram_region(const HmRam *ram, uint64_t pfn)
{
    unsigned lo = 0, hi = ram->n;

    while (hi - lo > 1) {      /* last region whose first <= pfn */
        unsigned mid = (lo + hi) / 2;
        if (ram->r[mid].first <= pfn) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return &ram->r[lo];
}

/* Returns the host address of page @pfn (no bounds check). */
static inline void *hm_ram_page(const HmRam *ram, uint64_t pfn)
{
    const HmRegion *r = hm_ram_region(ram, pfn);
    return r->host + ((pfn - r->first) << HM_PAGE_SHIFT);
}

/*
 * Returns how many of the @n pages from @pfn lie in @pfn's region: the run
 * a caller may treat as one range of host memory.
 */
uint64_t hm_ram_contig(const HmRam *ram, uint64_t pfn, uint64_t n);

/* Maps a guest-physical / host address to its page index; false if not RAM. */
bool hm_ram_gpa_to_pfn(const HmRam *ram, uint64_t gpa, uint64_t *pfn);
bool hm_ram_hva_to_pfn(const HmRam *ram, const void *hva, uint64_t *pfn);

/*
 * Releases @n pages from @pfn as each region's backing allows (MADV_FREE
 * for private anonymous memory, a punched hole for shared memory; hugetlb
 * is kept).  Returns the bytes released; with @why (@len bytes) says why
 * any were not, naming the region.
 */
uint64_t hm_ram_discard(const HmRam *ram, uint64_t pfn, uint64_t n, char *why,
                        size_t len);

/*
 * Drops @n pages from @pfn so that the next access faults them in afresh
 * (zero, or through userfaultfd): MADV_DONTNEED for private memory, a
 * punched hole for shared memory.  0 or -errno.
 */
int hm_ram_drop(const HmRam *ram, uint64_t pfn, uint64_t n);

/* madvise(@advice) over @n pages from @pfn, region by region; 0 or -errno. */
int hm_ram_madvise(const HmRam *ram, uint64_t pfn, uint64_t n, int advice);

/*
 * A digest of the table's shape (names, sizes, order): two sides whose
 * digests match index their pages the same way.
 */
uint64_t hm_ram_layout_digest(const HmRam *ram);

/* Appends "name=size, ..." to @s, for errors that explain a mismatch. */
void hm_ram_describe(const HmRam *ram, GString *s);

#endif
