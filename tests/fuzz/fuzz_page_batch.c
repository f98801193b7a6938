/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * RAM batches (page_codec.c) decoded into 16 MiB of RAM in two regions, the
 * size of the recorded migration's guest.  The same batch is also decoded
 * into a staging area (postcopy's path): both must accept or refuse it, and
 * agree on every page and its digest.
 */
#include <string.h>
#include <sys/mman.h>

#include "migration/bitmap.h"
#include "migration/page_codec.h"
#include "migration/le.h"
#include "migration/ram_digest.h"
#include "fuzz.h"

#define NPAGES 4096u
#define SPLIT 3072u          /* region "ram-lo" holds pages [0, SPLIT) */

typedef struct Ctx {
    HmRam *ram;
    PageDecoder *dec;
    uint64_t *digests;
    unsigned long *arrived;
    uint8_t *staging;
} Ctx;

static Ctx *ctx;

static void *map(uint64_t pages)
{
    void *p = mmap(NULL, pages * HM_PAGE_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    FUZZ_CHECK(p != MAP_FAILED);
    return p;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    HintmigRamRegion r[2] = {
        { .name = "ram-lo", .gpa = 0, .host = map(SPLIT), .size = SPLIT * HM_PAGE_SIZE,
          .page_size = HM_PAGE_SIZE, .backing = HINTMIG_BACKING_ANON, .fd = -1 },
        { .name = "ram-hi", .gpa = (uint64_t)SPLIT * HM_PAGE_SIZE, .host = map(NPAGES - SPLIT),
          .size = (NPAGES - SPLIT) * HM_PAGE_SIZE, .page_size = HM_PAGE_SIZE,
          .backing = HINTMIG_BACKING_ANON, .fd = -1 },
    };
    ctx = g_new0(Ctx, 1);
    ctx->ram = hm_ram_new(r, 2, NULL);
    FUZZ_CHECK(ctx->ram && ctx->ram->npages == NPAGES);
    ctx->dec = page_decoder_new();
    ctx->digests = g_new0(uint64_t, NPAGES);
    ctx->arrived = hm_bitmap_new(NPAGES);
    ctx->staging = g_malloc((size_t)PAGE_BATCH_MAX * HM_PAGE_SIZE);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    PageCodecStats st = { 0 }, st2 = { 0 };
    PageStaged sb = { .data = ctx->staging };
    uint32_t round;
    g_autoptr(GError) err = NULL, err2 = NULL;

    /* The batch's checksum is made right, or the fuzzer would never get
     * past it to the decoder; one input in 256 keeps its own, to fuzz the
     * check itself. */
    g_autofree uint8_t *batch = g_memdup2(data, size);
    if (size >= PAGE_BATCH_HEADER && data[size - 1] != 0x5a) {
        le_put64(batch + 16, page_batch_check(batch, size));
    }
    data = batch;
    hm_bitmap_set_range(ctx->arrived, 0, NPAGES);
    bool ok = page_decode(ctx->dec, ctx->ram, data, size, &round, &st, ctx->arrived,
                          ctx->digests, &err);
    bool ok2 = page_decode_staged(ctx->dec, NPAGES, data, size, &sb, &st2, &err2);
    FUZZ_CHECK(ok == ok2);
    if (!ok) {
        FUZZ_CHECK(err && err2);
        return 0;
    }
    FUZZ_CHECK(round == (uint32_t)(data[0] | data[1] << 8 | data[2] << 16 |
                                   (uint32_t)data[3] << 24));
    FUZZ_CHECK(!memcmp(&st, &st2, sizeof(st)));
    FUZZ_CHECK(sb.n >= 1 && sb.n <= PAGE_BATCH_MAX);
    FUZZ_CHECK(st.zero_pages + st.data_pages == sb.n);
    for (unsigned i = 0; i < sb.n; i++) {
        uint64_t pfn = sb.pfns[i];
        FUZZ_CHECK(pfn < NPAGES && !hm_bitmap_test_bit(ctx->arrived, pfn));
        /* A page named twice holds its last copy. */
        bool last = true;
        for (unsigned j = i + 1; j < sb.n; j++) {
            last &= sb.pfns[j] != pfn;
        }
        if (!last) {
            continue;
        }
        const uint8_t *page = hm_ram_page(ctx->ram, pfn);
        if (sb.zero[i]) {
            FUZZ_CHECK(page_is_zero(page));
            FUZZ_CHECK(ctx->digests[pfn] == ram_digest_zero_page());
        } else {
            FUZZ_CHECK(!memcmp(page, sb.data + (size_t)i * HM_PAGE_SIZE, HM_PAGE_SIZE));
            FUZZ_CHECK(ctx->digests[pfn] == ram_digest(page, HM_PAGE_SIZE, 0));
        }
    }
    return 0;
}
