/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Guest RAM: one private anonymous mapping.
 *
 * Private anonymous memory is what MADV_FREE (source side, hinted pages) and
 * userfaultfd missing mode (destination side, postcopy) both require, so an
 * image given with --mem-path is copied in rather than mapped.
 */
#ifndef HINTMIG_GUEST_RAM_H
#define HINTMIG_GUEST_RAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#define GUEST_PAGE_SIZE 4096u
#define GUEST_PAGE_SHIFT 12

typedef enum {
    GUEST_RAM_THP_DEFAULT,   /* leave the host's policy alone */
    GUEST_RAM_THP_ON,
    GUEST_RAM_THP_OFF,
} GuestRamThp;

typedef struct GuestRamOptions {
    uint64_t size;            /* bytes, a multiple of GUEST_PAGE_SIZE */
    const char *mem_path;     /* RAM image to load, or NULL */
    GuestRamThp thp;
    int numa_node;            /* -1: no binding */
} GuestRamOptions;

typedef struct GuestRam {
    uint8_t *host;            /* start of the mapping */
    uint64_t size;
    uint64_t npages;
    GuestRamThp thp;
    int numa_node;
    uint64_t image_bytes;     /* bytes loaded from mem_path */
} GuestRam;

/*
 * Maps guest RAM as @opts says, binds it, applies the THP policy and loads
 * the image.  Returns the RAM, or NULL with @errp set (bad size, a NUMA node
 * that does not exist, an image that is larger than RAM or unreadable).
 */
GuestRam *guest_ram_new(const GuestRamOptions *opts, GError **errp);

/* Unmaps and frees @ram (NULL is allowed). */
void guest_ram_free(GuestRam *ram);

/* Returns the host address of guest page @pfn (no bounds check). */
static inline void *guest_ram_page(const GuestRam *ram, uint64_t pfn)
{
    return ram->host + (pfn << GUEST_PAGE_SHIFT);
}

/*
 * Copies @len bytes at @src into guest RAM at @offset, page by page; pages
 * that are all zero in @src are zeroed only where RAM is not zero already,
 * so untouched RAM stays unpopulated.  The range must be inside RAM.
 */
void guest_ram_write_nonzero(GuestRam *ram, uint64_t offset, const void *src,
                             uint64_t len);

/* Returns "on", "off" or "default" for @thp. */
const char *guest_ram_thp_str(GuestRamThp thp);

#endif
