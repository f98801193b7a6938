/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Benchmark (not a test): how fast can the receiver fill fresh guest RAM?
 * Copies 1 GiB in 512 KiB batches (one RAM batch) into a new mapping:
 *
 *   fault      plain first-touch faults while copying
 *   populate   MADV_POPULATE_WRITE on the batch first, then the copy
 *              (what page_codec.c does)
 *
 * each with THP off and on.  The baseline, in the same run, is the same
 * copy into memory that is already populated.  Memory is touched and freed
 * first so that no variant is the first to fault the host's pages in.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <glib.h>

#include "migration/kernel_compat.h"


#define LEN (1ull << 30)
#define BATCH (512u << 10)

static double copy_into(uint8_t *dst, const uint8_t *src, bool populate)
{
    gint64 t0 = g_get_monotonic_time();
    for (uint64_t off = 0; off < LEN; off += BATCH) {
        if (populate) {
            madvise(dst + off, BATCH, MADV_POPULATE_WRITE);
        }
        memcpy(dst + off, src, BATCH);
    }
    return (g_get_monotonic_time() - t0) / 1e3;
}

static uint8_t *fresh(int thp)
{
    uint8_t *p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    madvise(p, LEN, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    return p;
}

int main(void)
{
    uint8_t *src = g_malloc(BATCH);
    memset(src, 0x5a, BATCH);
    /* Warm the host: touch and free 4 GiB. */
    for (int i = 0; i < 2; i++) {
        uint8_t *w = mmap(NULL, 2 * LEN, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        memset(w, 1, 2 * LEN);
        munmap(w, 2 * LEN);
    }
    uint8_t *warm = fresh(0);
    memset(warm, 0, LEN);
    double base = copy_into(warm, src, false);
    munmap(warm, LEN);
    printf("filling 1 GiB of fresh guest RAM in 512 KiB batches\n");
    printf("%-22s %9s %9s %8s\n", "method", "ms", "GB/s", "ratio");
    printf("%-22s %9.0f %9.2f %7.2fx\n", "baseline (populated)", base,
           LEN / base / 1e6, 1.0);
    static const struct { const char *name; bool populate; int thp; } v[] = {
        { "fault, THP off", false, 0 }, { "populate, THP off", true, 0 },
        { "fault, THP on", false, 1 }, { "populate, THP on", true, 1 },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(v); i++) {
        uint8_t *p = fresh(v[i].thp);
        double ms = copy_into(p, src, v[i].populate);
        munmap(p, LEN);
        printf("%-22s %9.0f %9.2f %7.2fx\n", v[i].name, ms, LEN / ms / 1e6, ms / base);
    }
    g_free(src);
    return 0;
}
