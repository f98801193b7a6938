/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Data page content generator: see include/guest/page_content.h. */
#include <string.h>

#include "guest/page_content.h"
#include "vm/guest_ram.h"

#define CONTENT_SALT 0x6a09e667f3bcc909ULL

static const char *const words[64] = {
    "the", "guest", "page", "memory", "migration", "of", "and", "a",
    "kernel", "free", "hint", "balloon", "source", "destination", "dirty", "to",
    "in", "bitmap", "virtio", "queue", "is", "that", "ring", "descriptor",
    "for", "host", "round", "stop", "copy", "with", "bandwidth", "it",
    "compressed", "zero", "send", "on", "receive", "fault", "user", "as",
    "socket", "thread", "vcpu", "state", "device", "be", "was", "remote",
    "request", "latency", "by", "postcopy", "precopy", "this", "not", "buffer",
    "allocator", "order", "block", "from", "we", "are", "write", "or",
};

uint64_t page_content_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t seed_of(uint64_t pfn, uint32_t gen)
{
    return page_content_mix(pfn * 0x9e3779b97f4a7c15ULL ^
                            ((uint64_t)gen << 32 | gen) ^ CONTENT_SALT);
}

bool page_content_is_random(uint64_t pfn, uint32_t gen)
{
    return (seed_of(pfn, gen) >> 60) < 4;    /* 4 of 16: a quarter */
}

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

void page_content_random(void *dst, size_t len, uint64_t seed)
{
    uint8_t *p = dst;
    uint64_t s = seed | 1;

    for (size_t off = 0; off + 8 <= len; off += 8) {
        uint64_t v = xorshift64(&s);
        memcpy(p + off, &v, 8);
    }
}

void page_content_text(void *dst, size_t len, uint64_t seed)
{
    uint8_t *p = dst;
    uint64_t s = seed | 1;
    size_t off = 0;

    /* Ten 6-bit word picks from each random draw. */
    while (off < len) {
        uint64_t r = xorshift64(&s);
        for (int i = 0; i < 10 && off < len; i++, r >>= 6) {
            const char *w = words[r & 63];
            size_t n = MIN(strlen(w), len - off);
            memcpy(p + off, w, n);
            off += n;
            if (off < len) {
                p[off++] = (r & 0x3f) == 7 ? '\n' : ' ';
            }
        }
    }
}

void page_content_fill(void *dst, uint64_t pfn, uint32_t gen)
{
    uint8_t *p = dst;
    uint64_t hdr[2] = { pfn, (uint64_t)gen << 32 | 0x48504147u /* "GAPH" */ };

    memcpy(p, hdr, sizeof(hdr));
    if (page_content_is_random(pfn, gen)) {
        page_content_random(p + sizeof(hdr), GUEST_PAGE_SIZE - sizeof(hdr),
                            seed_of(pfn, gen));
    } else {
        page_content_text(p + sizeof(hdr), GUEST_PAGE_SIZE - sizeof(hdr),
                          seed_of(pfn, gen));
    }
}

bool page_content_check(const void *page, uint64_t pfn, uint32_t gen)
{
    uint8_t expect[GUEST_PAGE_SIZE];

    page_content_fill(expect, pfn, gen);
    return memcmp(page, expect, GUEST_PAGE_SIZE) == 0;
}
