/* SPDX-License-Identifier: GPL-2.0-or-later */
/* RAM digests: see include/migration/ram_digest.h. */
#include <string.h>
#include <glib.h>

#include "migration/bitmap.h"
#include "migration/ram_digest.h"
#include "migration/ram_presence.h"

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL

static inline uint64_t rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t lane(uint64_t acc, uint64_t w)
{
    return rotl(acc + w * P2, 31) * P1;
}

uint64_t ram_digest(const void *p, size_t len, uint64_t seed)
{
    const uint8_t *b = p;
    uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;

    for (size_t off = 0; off + 32 <= len; off += 32) {
        uint64_t w[4];
        memcpy(w, b + off, 32);
        v1 = lane(v1, w[0]);
        v2 = lane(v2, w[1]);
        v3 = lane(v3, w[2]);
        v4 = lane(v4, w[3]);
    }
    uint64_t h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
    h = (h ^ lane(0, v1)) * P1 + P4;
    h = (h ^ lane(0, v2)) * P1 + P4;
    h = (h ^ lane(0, v3)) * P1 + P4;
    h = (h ^ lane(0, v4)) * P1 + P4;
    h += len;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    return h ^ (h >> 32);
}

uint64_t ram_digest_nchunks(const GuestRam *ram, uint32_t chunk_pages)
{
    return (ram->npages + chunk_pages - 1) / chunk_pages;
}

/* A chunk's digest from its pages' digests; @pages has room for a multiple of 4. */
static uint64_t combine(uint64_t *pages, uint64_t count, uint64_t chunk)
{
    /* Pad a short last chunk to the 32-byte step of the hash. */
    uint64_t words = (count + 3) & ~3ull;
    for (uint64_t i = count; i < words; i++) {
        pages[i] = 0;
    }
    return ram_digest(pages, words * 8, chunk);
}

void ram_digest_combine(const uint64_t *page_digests, uint64_t npages,
                        uint32_t chunk_pages, uint64_t nchunks, uint64_t *out,
                        const unsigned long *exclude)
{
    static const uint8_t zero[GUEST_PAGE_SIZE];
    uint64_t zd = ram_digest(zero, sizeof(zero), 0);
    g_autofree uint64_t *pages = g_new(uint64_t, chunk_pages + 4);

    for (uint64_t c = 0; c < nchunks; c++) {
        uint64_t pfn = c * chunk_pages;
        uint64_t count = MIN((uint64_t)chunk_pages, npages - pfn);
        for (uint64_t i = 0; i < count; i++) {
            pages[i] = exclude && bitmap_test_bit(exclude, pfn + i)
                       ? zd : page_digests[pfn + i];
        }
        out[c] = combine(pages, count, c);
    }
}

typedef struct DigestJob {
    const GuestRam *ram;
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
            bool touched = (!j->present || bitmap_test_bit(j->present, pfn + i)) &&
                           !(j->exclude && bitmap_test_bit(j->exclude, pfn + i));
            pages[i] = touched ? ram_digest(guest_ram_page(j->ram, pfn + i),
                                            GUEST_PAGE_SIZE, 0)
                               : j->zero_digest;
        }
        j->out[c - j->first] = combine(pages, count, c);
    }
    return NULL;
}

void ram_digest_chunks(const GuestRam *ram, uint32_t chunk_pages, uint64_t first,
                       uint64_t n, uint64_t *out, unsigned nthreads,
                       const unsigned long *exclude)
{
    static const uint8_t zero[GUEST_PAGE_SIZE];
    /* Without a presence map every page is read: slower, same digests. */
    g_autofree unsigned long *present = ram_presence_scan(ram, NULL);
    uint64_t zd = ram_digest(zero, sizeof(zero), 0);
    DigestJob jobs[16];
    GThread *threads[16] = { NULL };

    nthreads = CLAMP(nthreads, 1u, 16u);
    uint64_t per = (n + nthreads - 1) / nthreads;
    for (unsigned t = 0; t < nthreads; t++) {
        uint64_t start = MIN(n, t * per);
        jobs[t] = (DigestJob) { ram, present, exclude, zd, chunk_pages,
                                first + start, MIN(per, n - start), out + start };
        if (t > 0 && jobs[t].n) {
            threads[t] = g_thread_new("digest", digest_range, &jobs[t]);
        }
    }
    digest_range(&jobs[0]);
    for (unsigned t = 1; t < nthreads; t++) {
        if (threads[t]) {
            g_thread_join(threads[t]);
        }
    }
}
