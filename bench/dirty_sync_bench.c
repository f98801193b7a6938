/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Benchmark (not a test): the cost of one dirty-tracking sync over 1 GiB
 * with 1%, 10% and 100% of the pages written since the last sync, for every
 * backend this kernel has.
 *
 * The baseline, measured in the same run, is reading the same dirty pages
 * once (a memcpy of each): the least a precopy round must spend on them
 * anyway.  Tracking also costs the guest: the first write to a page after a
 * sync takes a fault.  "guest write" compares the time to dirty the pages
 * while tracked against the same writes untracked.  Figures are medians of several repetitions; ratios are what to
 * compare across machines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "migration/bitmap.h"
#include "migration/dirty_tracker.h"
#include "vm/guest_ram.h"

#define LEN (1ull << 30)
#define NPAGES (LEN / GUEST_PAGE_SIZE)
#define REPS 5

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return v[n / 2];
}

static double now_ms(void)
{
    return g_get_monotonic_time() / 1000.0;
}

/* Writes one byte in every @stride-th page, starting at a varying offset. */
static uint64_t dirty_pages(uint8_t *mem, unsigned stride, unsigned rep)
{
    uint64_t n = 0;
    for (uint64_t p = rep % stride; p < NPAGES; p += stride, n++) {
        mem[p * GUEST_PAGE_SIZE + 8]++;
    }
    return n;
}

static double copy_baseline(uint8_t *mem, uint8_t *buf, unsigned stride)
{
    double t0 = now_ms();
    for (uint64_t p = 0, i = 0; p < NPAGES; p += stride, i++) {
        memcpy(buf + (i % 256) * GUEST_PAGE_SIZE, mem + p * GUEST_PAGE_SIZE,
               GUEST_PAGE_SIZE);
    }
    return now_ms() - t0;
}

int main(int argc, char **argv)
{
    static const struct { unsigned stride; const char *label; } fracs[] = {
        { 100, "1%" }, { 10, "10%" }, { 1, "100%" },
    };
    static const HintmigDirtyBackend kinds[] = {
        HINTMIG_DIRTY_UFFD_WP, HINTMIG_DIRTY_SOFT_DIRTY,
    };
    (void)argv;
    if (argc > 1) {
        printf("Usage: dirty_sync_bench\nSync cost of each dirty-tracking "
               "backend over 1 GiB; see the comment at the top of the source.\n");
        return 0;
    }
    uint8_t *mem = mmap(NULL, LEN, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *buf = g_malloc(256 * GUEST_PAGE_SIZE);
    unsigned long *map = hm_bitmap_new(NPAGES);

    if (mem == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    madvise(mem, LEN, MADV_NOHUGEPAGE);
    memset(mem, 0x5a, LEN);
    printf("dirty-tracking sync over 1 GiB (%llu pages), median of %d\n",
           (unsigned long long)NPAGES, REPS);
    /* Untracked writes: the guest-side baseline. */
    double plain[G_N_ELEMENTS(fracs)];
    for (size_t f = 0; f < G_N_ELEMENTS(fracs); f++) {
        double v[REPS];
        for (int r = 0; r < REPS; r++) {
            double t0 = now_ms();
            dirty_pages(mem, fracs[f].stride, r);
            v[r] = now_ms() - t0;
        }
        plain[f] = median(v, REPS);
    }
    printf("%-11s %6s %9s %9s %12s %7s %13s\n", "backend", "dirty", "pages",
           "sync ms", "baseline ms", "ratio", "guest write");
    for (size_t k = 0; k < G_N_ELEMENTS(kinds); k++) {
        g_autoptr(GError) err = NULL;
        if (!hintmig_dirty_backend_probe(kinds[k], &err)) {
            printf("%-11s skipped: %s\n", hintmig_dirty_backend_name(kinds[k]), err->message);
            continue;
        }
        DirtyTracker *t = dirty_tracker_new(mem, LEN, kinds[k], NULL, NULL, &err);
        if (!t || !dirty_tracker_start(t, &err)) {
            printf("%-11s failed: %s\n", hintmig_dirty_backend_name(kinds[k]), err->message);
            dirty_tracker_free(t);
            continue;
        }
        for (size_t f = 0; f < G_N_ELEMENTS(fracs); f++) {
            double sync[REPS], base[REPS], wr[REPS];
            uint64_t n = 0, reported = 0;
            for (int r = 0; r < REPS; r++) {
                double w0 = now_ms();
                n = dirty_pages(mem, fracs[f].stride, r);
                wr[r] = now_ms() - w0;
                hm_bitmap_zero(map, NPAGES);
                double t0 = now_ms();
                if (!dirty_tracker_sync(t, map, &err)) {
                    printf("sync failed: %s\n", err->message);
                    return 1;
                }
                sync[r] = now_ms() - t0;
                reported = hm_bitmap_count(map, NPAGES);
                base[r] = copy_baseline(mem, buf, fracs[f].stride);
            }
            if (reported != n) {
                printf("%s: reported %llu pages, %llu were written\n",
                       hintmig_dirty_backend_name(kinds[k]), (unsigned long long)reported,
                       (unsigned long long)n);
                return 1;
            }
            double s = median(sync, REPS), b = median(base, REPS);
            printf("%-11s %6s %9llu %9.2f %12.2f %6.2fx %12.1fx\n",
                   hintmig_dirty_backend_name(kinds[k]), fracs[f].label,
                   (unsigned long long)n, s, b, s / b,
                   median(wr, REPS) / plain[f]);
        }
        /* A sync with nothing written: the fixed cost of a round. */
        double clean[REPS];
        for (int r = 0; r < REPS; r++) {
            hm_bitmap_zero(map, NPAGES);
            double t0 = now_ms();
            dirty_tracker_sync(t, map, NULL);
            clean[r] = now_ms() - t0;
        }
        printf("%-11s %6s %9d %9.2f %12s %7s %13s\n", hintmig_dirty_backend_name(kinds[k]),
               "0%", 0, median(clean, REPS), "-", "-", "-");
        dirty_tracker_free(t);
    }
    g_free(map);
    g_free(buf);
    munmap(mem, LEN);
    return 0;
}
