/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Page bitmaps: see include/migration/bitmap.h. */
#include <string.h>
#include <glib.h>

#include "migration/bitmap.h"

unsigned long *hm_bitmap_new(size_t nbits)
{
    return g_new0(unsigned long, HM_BITMAP_LONGS(nbits) ? HM_BITMAP_LONGS(nbits) : 1);
}

void hm_bitmap_set_range(unsigned long *map, size_t start, size_t count)
{
    size_t bit = start, end = start + count;

    while (bit < end && bit % HM_BITS_PER_LONG) {
        hm_bitmap_set_bit(map, bit++);
    }
    while (bit + HM_BITS_PER_LONG <= end) {
        map[bit / HM_BITS_PER_LONG] = ~0UL;
        bit += HM_BITS_PER_LONG;
    }
    while (bit < end) {
        hm_bitmap_set_bit(map, bit++);
    }
}

void hm_bitmap_zero(unsigned long *map, size_t nbits)
{
    memset(map, 0, HM_BITMAP_LONGS(nbits) * sizeof(unsigned long));
}

size_t hm_bitmap_count(const unsigned long *map, size_t nbits)
{
    size_t n = 0, full = nbits / HM_BITS_PER_LONG;

    for (size_t i = 0; i < full; i++) {
        n += __builtin_popcountl(map[i]);
    }
    if (nbits % HM_BITS_PER_LONG) {
        unsigned long mask = (1UL << (nbits % HM_BITS_PER_LONG)) - 1;
        n += __builtin_popcountl(map[full] & mask);
    }
    return n;
}

size_t hm_bitmap_next_set(const unsigned long *map, size_t nbits, size_t from)
{
    size_t i = from / HM_BITS_PER_LONG;

    if (from >= nbits) {
        return nbits;
    }
    unsigned long w = map[i] & (~0UL << (from % HM_BITS_PER_LONG));
    for (;;) {
        if (w) {
            size_t bit = i * HM_BITS_PER_LONG + __builtin_ctzl(w);
            return bit < nbits ? bit : nbits;
        }
        if (++i >= HM_BITMAP_LONGS(nbits)) {
            return nbits;
        }
        w = map[i];
    }
}

size_t hm_bitmap_next_clear(const unsigned long *map, size_t nbits, size_t from)
{
    size_t i = from / HM_BITS_PER_LONG;

    if (from >= nbits) {
        return nbits;
    }
    unsigned long w = ~map[i] & (~0UL << (from % HM_BITS_PER_LONG));
    for (;;) {
        if (w) {
            size_t bit = i * HM_BITS_PER_LONG + __builtin_ctzl(w);
            return bit < nbits ? bit : nbits;
        }
        if (++i >= HM_BITMAP_LONGS(nbits)) {
            return nbits;
        }
        w = ~map[i];
    }
}
