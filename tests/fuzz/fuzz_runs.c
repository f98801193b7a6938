/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Page runs (HINTED, PENDING, MISSING payloads) and the bitmaps they
 * decode into.  Input: u8 mode, u16 RAM pages (at most 4160: the recorded
 * guest's 4096 and a word more, for speed), then either a runs payload
 * (mode even) or a bitmap's words (mode odd).  Both are checked against a
 * plain bit-by-bit model, and decoded runs must encode and decode again to
 * the same set.
 */
#include <string.h>

#include "migration/bitmap.h"
#include "migration/le.h"
#include "migration/wire.h"
#include "fuzz.h"

/* The bitmap helpers against one bit at a time. */
static void check_bitmap(const unsigned long *map, size_t nbits)
{
    size_t count = 0;
    for (size_t i = 0; i < nbits; i++) {
        count += hm_bitmap_test_bit(map, i);
    }
    FUZZ_CHECK(hm_bitmap_count(map, nbits) == count);

    size_t seen = 0;
    for (size_t at = hm_bitmap_next_set(map, nbits, 0); at < nbits;) {
        size_t end = hm_bitmap_next_clear(map, nbits, at);
        FUZZ_CHECK(end > at && end <= nbits);
        FUZZ_CHECK(!at || !hm_bitmap_test_bit(map, at - 1));
        for (size_t i = at; i < end; i++) {
            FUZZ_CHECK(hm_bitmap_test_bit(map, i));
        }
        FUZZ_CHECK(end == nbits || !hm_bitmap_test_bit(map, end));
        seen += end - at;
        size_t next = hm_bitmap_next_set(map, nbits, end);
        for (size_t i = end; i < next && i < nbits; i++) {
            FUZZ_CHECK(!hm_bitmap_test_bit(map, i));
        }
        at = next;
    }
    FUZZ_CHECK(seen == count);
}

static void runs(const uint8_t *p, size_t len, uint64_t npages)
{
    g_autofree unsigned long *set = hm_bitmap_new(npages);
    uint32_t word;
    uint64_t pages;
    g_autoptr(GError) err = NULL;

    if (!wire_runs_decode(p, len, npages, set, &word, &pages, &err)) {
        FUZZ_CHECK(err);
        return;
    }
    /* The model: every run's pages, one by one. */
    g_autofree uint8_t *model = g_malloc0(MAX(npages, 1));
    uint64_t sum = 0;
    for (size_t off = 8; off < len; off += 16) {
        uint64_t pfn = le_get64(p + off), n = le_get64(p + off + 8);
        FUZZ_CHECK(n && pfn < npages && pfn + n <= npages);
        memset(model + pfn, 1, n);
        sum += n;
    }
    FUZZ_CHECK(pages == sum && word == le_get32(p));
    for (uint64_t i = 0; i < npages; i++) {
        FUZZ_CHECK(hm_bitmap_test_bit(set, i) == model[i]);
    }
    check_bitmap(set, npages);

    g_autoptr(GPtrArray) msgs = wire_runs_encode(set, npages, 7, word);
    g_autofree unsigned long *again = hm_bitmap_new(npages);
    uint64_t total = 0;
    for (guint i = 0; i < msgs->len; i++) {
        gsize mlen;
        const void *m = g_bytes_get_data(g_ptr_array_index(msgs, i), &mlen);
        uint32_t w;
        uint64_t n;
        FUZZ_CHECK(mlen <= WIRE_MAX_PAYLOAD);
        FUZZ_CHECK(wire_runs_decode(m, mlen, npages, again, &w, &n, NULL));
        FUZZ_CHECK(w == (i + 1 == msgs->len ? word : 7));
        total += n;
    }
    FUZZ_CHECK(total == hm_bitmap_count(set, npages));
    FUZZ_CHECK(!memcmp(set, again, HM_BITMAP_LONGS(npages) * sizeof(unsigned long)));
}

static void bitmap(const uint8_t *p, size_t len, uint64_t nbits)
{
    size_t longs = HM_BITMAP_LONGS(nbits) ? HM_BITMAP_LONGS(nbits) : 1;
    g_autofree unsigned long *map = g_new0(unsigned long, longs);

    if (len < 4) {
        return;
    }
    /* A range to set, then the words. */
    uint64_t start = le_get16(p) % (nbits + 1), count = le_get16(p + 2);
    count = MIN(count, nbits - start);
    memcpy(map, p + 4, MIN(len - 4, longs * sizeof(unsigned long)));
    check_bitmap(map, nbits);

    g_autofree unsigned long *before = g_memdup2(map, longs * sizeof(unsigned long));
    hm_bitmap_set_range(map, start, count);
    for (uint64_t i = 0; i < nbits; i++) {
        bool want = (i >= start && i < start + count) || hm_bitmap_test_bit(before, i);
        FUZZ_CHECK(hm_bitmap_test_bit(map, i) == want);
    }
    check_bitmap(map, nbits);
    hm_bitmap_zero(map, nbits);
    FUZZ_CHECK(hm_bitmap_count(map, nbits) == 0);
    FUZZ_CHECK(hm_bitmap_next_set(map, nbits, 0) == nbits);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) {
        return 0;
    }
    uint64_t npages = (data[1] | data[2] << 8) % 4161;
    if (data[0] & 1) {
        bitmap(data + 3, size - 3, npages);
    } else {
        runs(data + 3, size - 3, npages);
    }
    return 0;
}
