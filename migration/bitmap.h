/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Page bitmaps: one bit a guest page, in unsigned longs.
 *
 * GLib has no bitmap type, so this is the one small hand-written helper the
 * dirty tracker, and later the hint filter and the sender, share.
 */
#ifndef HINTMIG_BITMAP_H
#define HINTMIG_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>

#define HM_BITS_PER_LONG (sizeof(unsigned long) * CHAR_BIT)
#define HM_BITMAP_LONGS(nbits) (((nbits) + HM_BITS_PER_LONG - 1) / HM_BITS_PER_LONG)

/* Returns a zeroed bitmap of @nbits bits; free with g_free(). */
unsigned long *hm_bitmap_new(size_t nbits);

static inline void hm_bitmap_set_bit(unsigned long *map, size_t bit)
{
    map[bit / HM_BITS_PER_LONG] |= 1UL << (bit % HM_BITS_PER_LONG);
}

static inline void hm_bitmap_clear_bit(unsigned long *map, size_t bit)
{
    map[bit / HM_BITS_PER_LONG] &= ~(1UL << (bit % HM_BITS_PER_LONG));
}

static inline bool hm_bitmap_test_bit(const unsigned long *map, size_t bit)
{
    return (map[bit / HM_BITS_PER_LONG] >> (bit % HM_BITS_PER_LONG)) & 1;
}

/* Sets bits [start, start + count). */
void hm_bitmap_set_range(unsigned long *map, size_t start, size_t count);

/* Clears all @nbits bits. */
void hm_bitmap_zero(unsigned long *map, size_t nbits);

/* Returns the number of set bits among the first @nbits. */
size_t hm_bitmap_count(const unsigned long *map, size_t nbits);

/* Returns the first set bit at or after @from, or @nbits if there is none. */
size_t hm_bitmap_next_set(const unsigned long *map, size_t nbits, size_t from);

/*
 * Returns the first clear bit at or after @from, or @nbits if there is
 * none: with hm_bitmap_next_set(), the end of the run of set bits at @from.
 */
size_t hm_bitmap_next_clear(const unsigned long *map, size_t nbits, size_t from);

#endif /* HINTMIG_BITMAP_H */
