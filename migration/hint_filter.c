/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The free page hint filter: see include/migration/hint_filter.h. */
#include <sys/mman.h>
#include <glib.h>

#include "migration/bitmap.h"
#include "migration/hint_filter.h"
#include "migration/page_codec.h"

struct HintFilter {
    HmRam *ram;
    GMutex lock;
    uint32_t cmd_id;            /* accepted id, 0 when none */
    unsigned long *candidates;  /* hinted under cmd_id, not yet resolved */
    unsigned long *skip;        /* resolved: stays off the wire */
    HintFilterStats stats;
};

HintFilter *hint_filter_new(HmRam *ram)
{
    HintFilter *f = g_new0(HintFilter, 1);
    f->ram = ram;
    g_mutex_init(&f->lock);
    f->candidates = hm_bitmap_new(ram->npages);
    f->skip = hm_bitmap_new(ram->npages);
    return f;
}

void hint_filter_free(HintFilter *f)
{
    if (f) {
        g_mutex_clear(&f->lock);
        g_free(f->candidates);
        g_free(f->skip);
        g_free(f);
    }
}

void hint_filter_begin(HintFilter *f, uint32_t cmd_id)
{
    g_mutex_lock(&f->lock);
    f->cmd_id = cmd_id;
    g_mutex_unlock(&f->lock);
}

void hint_filter_end(HintFilter *f)
{
    hint_filter_begin(f, 0);
}

void hint_filter_add(HintFilter *f, uint32_t cmd_id, uint64_t gpa, uint64_t len)
{
    uint64_t first;

    if (hm_ram_gpa_to_pfn(f->ram, gpa, &first)) {
        hint_filter_add_pages(f, cmd_id, first, len >> HM_PAGE_SHIFT);
    }
}

void hint_filter_add_pages(HintFilter *f, uint32_t cmd_id, uint64_t first, uint64_t n)
{
    /* A hint never reaches past its region: the next one is other memory. */
    if (first >= f->ram->npages) {
        return;
    }
    n = hm_ram_contig(f->ram, first, n);
    g_mutex_lock(&f->lock);
    if (!cmd_id || cmd_id != f->cmd_id) {
        f->stats.stale_pages += n;
    } else {
        hm_bitmap_set_range(f->candidates, first, n);
        f->stats.hinted_pages += n;
    }
    g_mutex_unlock(&f->lock);
}

uint64_t hint_filter_commit(HintFilter *f, const unsigned long *dirty,
                            bool madv_free)
{
    uint64_t joined = 0, words = HM_BITMAP_LONGS(f->ram->npages);

    g_mutex_lock(&f->lock);
    for (uint64_t w = 0; w < words; w++) {
        unsigned long c = f->candidates[w];
        unsigned long keep = c & ~dirty[w] & ~f->skip[w];
        unsigned long written = c & dirty[w] & ~f->skip[w];
        /*
         * A guest that zeroes what it allocates (Linux's init_on_alloc=1,
         * Debian's default) writes every page its balloon driver takes to
         * report: hinted, then written.  Such a page that reads as zeros
         * now is what the destination fills a hinted page with, so it
         * joins too; a later write reaches the next sync as any other.
         * Not with poison: the guest expects its pattern there.
         */
        for (unsigned long b = madv_free ? written : 0; b; b &= b - 1) {
            uint64_t pfn = w * HM_BITS_PER_LONG + __builtin_ctzl(b);
            if (pfn < f->ram->npages && page_is_zero(hm_ram_page(f->ram, pfn))) {
                keep |= b & -b;
                f->stats.dirty_zero++;
            }
        }
        f->stats.dirty_dropped += __builtin_popcountl(c & dirty[w]);
        joined += __builtin_popcountl(keep);
        f->skip[w] |= keep;
        f->candidates[w] = keep;      /* remember what joined, for madvise */
    }
    f->stats.skipped += joined;
    if (madv_free) {
        /* Runs of pages that joined: the source needs their content no more. */
        uint64_t npages = f->ram->npages;
        for (uint64_t p = hm_bitmap_next_set(f->candidates, npages, 0); p < npages;) {
            uint64_t end = hm_bitmap_next_clear(f->candidates, npages, p);
            uint64_t freed = hm_ram_discard(f->ram, p, end - p, f->stats.kept_why,
                                            sizeof(f->stats.kept_why));
            f->stats.madv_freed_bytes += freed;
            f->stats.kept_bytes += ((end - p) << HM_PAGE_SHIFT) - freed;
            p = hm_bitmap_next_set(f->candidates, npages, end);
        }
    }
    hm_bitmap_zero(f->candidates, f->ram->npages);
    g_mutex_unlock(&f->lock);
    return joined;
}

void hint_filter_apply_dirty(HintFilter *f, const unsigned long *dirty)
{
    uint64_t words = HM_BITMAP_LONGS(f->ram->npages);

    g_mutex_lock(&f->lock);
    for (uint64_t w = 0; w < words; w++) {
        unsigned long back = f->skip[w] & dirty[w];
        if (back) {
            uint64_t n = __builtin_popcountl(back);
            f->stats.rewritten += n;
            f->stats.skipped -= n;
            f->skip[w] &= ~back;
        }
    }
    g_mutex_unlock(&f->lock);
}

bool hint_filter_skip(const HintFilter *f, uint64_t pfn)
{
    return hm_bitmap_test_bit(f->skip, pfn);
}

const unsigned long *hint_filter_set(const HintFilter *f)
{
    return f->skip;
}

HintFilterStats hint_filter_stats(HintFilter *f)
{
    g_mutex_lock(&f->lock);
    HintFilterStats s = f->stats;
    g_mutex_unlock(&f->lock);
    return s;
}
