/* SPDX-License-Identifier: GPL-2.0-or-later */
/* RAM digests: see migration/ram_digest.h. */
#include <string.h>
#include <sys/mman.h>
#include <glib.h>
#include <xxhash.h>

#include "migration/bitmap.h"
#include "migration/ram_digest.h"
#include "migration/ram_presence.h"

uint64_t ram_digest(const void *p, size_t len, uint64_t seed)
{
    return XXH3_64bits_withSeed(p, len, seed);
}

uint64_t ram_digest_bytes(const void *p, size_t len)
{
    return XXH3_64bits_withSeed(p, len, len);
}

uint64_t ram_digest_zero_page(void)
{
    /* A constant, asked for every zero page: hashed once. */
    static const uint8_t zero[HM_PAGE_SIZE];
    static uint64_t digest;
    static gsize done;

    if (g_once_init_enter(&done)) {
        digest = ram_digest(zero, sizeof(zero), 0);
        g_once_init_leave(&done, 1);
    }
    return digest;
}

uint64_t *ram_digest_table_new(uint64_t npages)
{
    size_t len = npages * sizeof(uint64_t);
    void *t = mmap(NULL, MAX(len, 1), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (t == MAP_FAILED) {
        return NULL;
    }
    /* Map the shared zero page everywhere now: reading the table's unused
     * parts later (combining, in the downtime) then faults nothing, and
     * only the entries written get memory.  Best effort. */
    madvise(t, MAX(len, 1), MADV_POPULATE_READ);
    return t;
}

void ram_digest_table_free(uint64_t *t, uint64_t npages)
{
    if (t) {
        munmap(t, MAX(npages * sizeof(uint64_t), 1));
    }
}

uint64_t ram_digest_nchunks(const HmRam *ram, uint32_t chunk_pages)
{
    return (ram->npages + chunk_pages - 1) / chunk_pages;
}

/*
 * A chunk's digest from its pages' digests; @pages has room for a multiple
 * of 4.  A chunk of zero pages has digest 0, not hashed: most of a big
 * guest's chunks are that, and hashing them all cost 8-20 ms at 16 GiB,
 * inside the downtime.
 */
static uint64_t combine(uint64_t *pages, uint64_t count, uint64_t chunk, uint64_t zd)
{
    uint64_t i = 0;
    while (i < count && pages[i] == zd) {
        i++;
    }
    if (i == count) {
        return 0;
    }
    /* Pad a short last chunk to the 32-byte step of the hash. */
    uint64_t words = (count + 3) & ~3ull;
    for (i = count; i < words; i++) {
        pages[i] = 0;
    }
    return ram_digest(pages, words * 8, chunk);
}

void ram_digest_combine(const uint64_t *page_digests, uint64_t npages,
                        uint32_t chunk_pages, uint64_t nchunks, uint64_t *out,
                        const unsigned long *exclude)
{
    uint64_t zd = ram_digest_zero_page();
    g_autofree uint64_t *pages = g_new(uint64_t, chunk_pages + 4);

    for (uint64_t c = 0; c < nchunks; c++) {
        uint64_t pfn = c * chunk_pages;
        uint64_t count = MIN((uint64_t)chunk_pages, npages - pfn);
        uint64_t any = 0;
        for (uint64_t i = 0; i < count; i++) {
            any |= page_digests[pfn + i];
        }
        if (!any) {             /* nothing sent here: zero pages, digest 0 */
            out[c] = 0;
            continue;
        }
        for (uint64_t i = 0; i < count; i++) {
            uint64_t d = page_digests[pfn + i];
            pages[i] = (exclude && hm_bitmap_test_bit(exclude, pfn + i)) || !d ? zd : d;
        }
        out[c] = combine(pages, count, c, zd);
    }
}

typedef struct DigestJob {
    const HmRam *ram;
    const unsigned long *present;   /* NULL: read every page */
    const unsigned long *exclude;   /* NULL: none */
    uint64_t zero_digest;
    uint32_t chunk_pages;
    uint64_t first, n;
    uint64_t *out;
} DigestJob;

static gpointer digest_range(gpointer data)
{
    DigestJob *j = data;
    g_autofree uint64_t *pages = g_new(uint64_t, j->chunk_pages + 4);

    for (uint64_t c = j->first; c < j->first + j->n; c++) {
        uint64_t pfn = c * j->chunk_pages;
        uint64_t count = MIN((uint64_t)j->chunk_pages, j->ram->npages - pfn);
        for (uint64_t i = 0; i < count; i++) {
            bool touched = (!j->present || hm_bitmap_test_bit(j->present, pfn + i)) &&
                           !(j->exclude && hm_bitmap_test_bit(j->exclude, pfn + i));
            pages[i] = touched ? ram_digest(hm_ram_page(j->ram, pfn + i),
                                            HM_PAGE_SIZE, 0)
                               : j->zero_digest;
        }
        j->out[c - j->first] = combine(pages, count, c, j->zero_digest);
    }
    return NULL;
}

void ram_digest_chunks(const HmRam *ram, uint32_t chunk_pages, uint64_t first,
                       uint64_t n, uint64_t *out, unsigned nthreads,
                       const unsigned long *exclude)
{
    /* Without a presence map every page is read: slower, same digests. */
    g_autofree unsigned long *present = ram_presence_scan(ram, NULL);
    uint64_t zd = ram_digest_zero_page();
    DigestJob jobs[16];
    GThread *threads[16] = { NULL };

    nthreads = CLAMP(nthreads, 1u, 16u);
    uint64_t per = (n + nthreads - 1) / nthreads;
    for (unsigned t = 0; t < nthreads; t++) {
        uint64_t start = MIN(n, t * per);
        jobs[t] = (DigestJob) { ram, present, exclude, zd, chunk_pages,
                                first + start, MIN(per, n - start), out + start };
        if (t > 0 && jobs[t].n) {
            /* No thread to be had: the work is done here, only slower. */
            threads[t] = g_thread_try_new("digest", digest_range, &jobs[t], NULL);
            if (!threads[t]) {
                digest_range(&jobs[t]);
            }
        }
    }
    digest_range(&jobs[0]);
    for (unsigned t = 1; t < nthreads; t++) {
        if (threads[t]) {
            g_thread_join(threads[t]);
        }
    }
}
