/* SPDX-License-Identifier: GPL-2.0-or-later */
/* RAM page batch encoding and decoding: see include/migration/page_codec.h. */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <xxhash.h>
/* ZSTD_getCParams: the tables a level would use, to cap them. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "migration/bitmap.h"
#include "migration/kernel_compat.h"
#include "migration/page_codec.h"
#include "migration/le.h"
#include "migration/ram_digest.h"


struct PageEncoder {
    ZSTD_CCtx *cctx;
    bool zstd;
    int level;                /* PAGE_LEVEL_RAW: this batch raw */
    PageEncodeCost last;
    bool measure_decode;      /* the next frame is decompressed again, timed */
    ZSTD_DCtx *dctx;          /* ... with these, made on the first */
    uint8_t *scratch;
    uint64_t *digests;        /* page_encoder_set_digests(), or NULL */
};

/* The calling thread's CPU time: what a batch costs, not how long it was preempted. */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

struct PageDecoder {
    ZSTD_DCtx *dctx;
};


void page_codec_stats_add(PageCodecStats *to, const PageCodecStats *from)
{
    to->zero_pages += from->zero_pages;
    to->data_pages += from->data_pages;
    to->data_bytes += from->data_bytes;
    to->payload_bytes += from->payload_bytes;
    to->zstd_batches += from->zstd_batches;
    to->raw_batches += from->raw_batches;
    to->raw_pages += from->raw_pages;
}

bool page_is_zero(const void *p)
{
    const uint64_t *w = p;
    /* Most non-zero pages differ in the first words: check those first. */
    if (w[0] | w[1] | w[511]) {
        return false;
    }
    uint64_t acc = 0;
    for (unsigned i = 0; i < HM_PAGE_SIZE / 8; i += 8) {
        acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] |
               w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
    }
    return acc == 0;
}

bool page_looks_random(const void *p)
{
    /* 128 bytes, one every 32: random data shows ~100 distinct values,
     * text a few dozen at most. */
    const uint8_t *b = p;
    uint64_t seen[4] = { 0 };
    unsigned distinct = 0;

    for (unsigned i = 0; i < HM_PAGE_SIZE; i += 32) {
        uint64_t bit = 1ull << (b[i] & 63);
        uint64_t *w = &seen[b[i] >> 6];
        distinct += !(*w & bit);
        *w |= bit;
    }
    return distinct > 72;
}

uint64_t page_batch_check(const uint8_t *buf, size_t len)
{
    return XXH3_64bits_withSeed(buf + PAGE_BATCH_HEADER, len - PAGE_BATCH_HEADER,
                                XXH3_64bits(buf, 16));
}

G_STATIC_ASSERT((1u << PAGE_BATCH_WINDOW_LOG) == PAGE_BATCH_MAX * HM_PAGE_SIZE);

size_t page_batch_max_size(unsigned npages)
{
    size_t raw = (size_t)npages * HM_PAGE_SIZE;
    return PAGE_BATCH_HEADER + npages * 8 + MAX(raw, ZSTD_compressBound(raw));
}

PageEncoder *page_encoder_new(bool zstd, int level)
{
    PageEncoder *e = g_new0(PageEncoder, 1);
    e->zstd = zstd;
    if (zstd) {
        e->cctx = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_checksumFlag, 0);
        /* A frame never holds more than one batch: a window of one batch
         * loses nothing, and the contexts on both sides (the decoder's
         * window buffer too) shrink to a quarter of level 3's default. */
        ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_windowLog, PAGE_BATCH_WINDOW_LOG);
        page_encoder_set_level(e, level);
    }
    return e;
}

void page_encoder_set_level(PageEncoder *e, int level)
{
    g_assert(e->zstd);
    if (level != PAGE_LEVEL_RAW && level != e->level) {
        ZSTD_compressionParameters c =
            ZSTD_getCParams(level, (size_t)PAGE_BATCH_MAX * HM_PAGE_SIZE, 0);
        ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_compressionLevel, level);
        /* Levels above 3 keep their search but not their tables: level 9's
         * are 6.5 MiB an encoder (the engine's memory then passed 1% of a
         * 2 GiB guest), capped they are 1.5 MiB, level 3's 1.2 MiB. */
        ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_hashLog, MIN(c.hashLog, PAGE_BATCH_TABLE_LOG));
        ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_chainLog, MIN(c.chainLog, PAGE_BATCH_TABLE_LOG));
    }
    e->level = level;
}

void page_encoder_set_digests(PageEncoder *e, uint64_t *table)
{
    e->digests = table;
}

PageEncodeCost page_encoder_cost(const PageEncoder *e)
{
    return e->last;
}

size_t page_encoder_sizeof(const PageEncoder *e)
{
    return sizeof(*e) + (e->cctx ? ZSTD_sizeof_CCtx(e->cctx) : 0) +
           (e->dctx ? ZSTD_sizeof_DCtx(e->dctx) : 0) +
           (e->scratch ? (size_t)PAGE_BATCH_MAX * HM_PAGE_SIZE : 0);
}

size_t page_decoder_sizeof(const PageDecoder *d)
{
    return sizeof(*d) + ZSTD_sizeof_DCtx(d->dctx);
}

void page_encoder_free(PageEncoder *e)
{
    if (e) {
        ZSTD_freeCCtx(e->cctx);
        ZSTD_freeDCtx(e->dctx);
        g_free(e->scratch);
        g_free(e);
    }
}

void page_encoder_measure_decode(PageEncoder *e)
{
    e->measure_decode = true;
}

/* Decompresses @frame (@nframe pages) again and returns the CPU time it
 * took, or 0 if it cannot (no memory, a frame that does not decode). */
static uint64_t time_decode(PageEncoder *e, const uint8_t *frame, size_t len,
                            unsigned nframe)
{
    if (!e->dctx) {
        e->dctx = ZSTD_createDCtx();
        e->scratch = g_try_malloc((size_t)PAGE_BATCH_MAX * HM_PAGE_SIZE);
    }
    if (!e->dctx || !e->scratch) {
        return 0;
    }
    uint64_t t = now_ns();
    size_t r = ZSTD_decompressDCtx(e->dctx, e->scratch, (size_t)nframe * HM_PAGE_SIZE,
                                   frame, len);
    t = now_ns() - t;
    return !ZSTD_isError(r) && r == (size_t)nframe * HM_PAGE_SIZE ? MAX(t, 1u) : 0;
}

/* Compresses the data pages as one frame, reading them in place. */
static size_t compress_pages(PageEncoder *e, const HmRam *ram,
                             const uint64_t *pfns, const uint8_t *kind, unsigned n,
                             uint8_t *dst, size_t cap)
{
    ZSTD_outBuffer out = { dst, cap, 0 };
    unsigned last = n;

    unsigned nframe = 0;
    for (unsigned i = 0; i < n; i++) {
        nframe += kind[i] == PAGE_FRAME;
    }
    ZSTD_CCtx_reset(e->cctx, ZSTD_reset_session_only);
    /* Known in advance, the size keeps every level's tables (and the
     * engine's memory) sized for one batch, not for an endless stream. */
    ZSTD_CCtx_setPledgedSrcSize(e->cctx, (unsigned long long)nframe * HM_PAGE_SIZE);
    while (last > 0 && kind[last - 1] != PAGE_FRAME) {
        last--;
    }
    for (unsigned i = 0; i < last; i++) {
        if (kind[i] != PAGE_FRAME) {
            continue;
        }
        ZSTD_inBuffer in = { hm_ram_page(ram, pfns[i]), HM_PAGE_SIZE, 0 };
        ZSTD_EndDirective mode = i + 1 == last ? ZSTD_e_end : ZSTD_e_continue;
        size_t r;
        do {
            r = ZSTD_compressStream2(e->cctx, &out, &in, mode);
            if (ZSTD_isError(r) || out.pos == out.size) {
                return 0;     /* no room: it does not pay */
            }
        } while (mode == ZSTD_e_end ? r != 0 : in.pos < in.size);
    }
    return out.pos;
}

size_t page_encode(PageEncoder *e, const HmRam *ram, const uint64_t *pfns,
                   unsigned n, uint32_t round, uint8_t *out,
                   PageCodecStats *stats)
{
    uint8_t kind[PAGE_BATCH_MAX];
    unsigned nframe = 0, nraw = 0;
    uint8_t *entries = out + PAGE_BATCH_HEADER;
    uint8_t *payload = entries + (size_t)n * 8;
    uint64_t t0 = now_ns(), t_cand = 0;

    g_assert(n <= PAGE_BATCH_MAX);
    for (unsigned i = 0; i < n; i++) {
        const void *p = hm_ram_page(ram, pfns[i]);
        if (page_is_zero(p)) {
            kind[i] = PAGE_ZERO;
        } else if (e->zstd && !page_looks_random(p)) {
            kind[i] = PAGE_FRAME;
            nframe++;
        } else {
            kind[i] = PAGE_RAW;
            nraw++;
        }
    }
    unsigned ncand = nframe;
    size_t frame_len = 0;
    if (nframe && e->level == PAGE_LEVEL_RAW) {
        for (unsigned i = 0; i < n; i++) {
            kind[i] = kind[i] == PAGE_FRAME ? PAGE_RAW : kind[i];
        }
        nraw += nframe;
        nframe = 0;
    } else if (nframe) {
        /* Keep the frame only if it saves an eighth: below that the
         * receiver's decompression costs more than the bytes saved. */
        size_t raw = (size_t)nframe * HM_PAGE_SIZE;
        uint64_t tc = now_ns();
        frame_len = compress_pages(e, ram, pfns, kind, n, payload, raw - raw / 8);
        t_cand = now_ns() - tc;
        if (!frame_len) {
            for (unsigned i = 0; i < n; i++) {
                if (kind[i] == PAGE_FRAME) {
                    kind[i] = PAGE_RAW;
                }
            }
            nraw += nframe;
            nframe = 0;
        }
    }
    uint8_t *p = payload + frame_len;
    uint64_t tr = now_ns();
    for (unsigned i = 0; i < n; i++) {
        le_put64(entries + (size_t)i * 8, pfns[i] << 2 | kind[i]);
        if (kind[i] == PAGE_RAW) {
            memcpy(p, hm_ram_page(ram, pfns[i]), HM_PAGE_SIZE);
            p += HM_PAGE_SIZE;
        }
    }
    uint64_t t_raw = now_ns() - tr;
    if (e->digests) {
        /* Of what is sent: the copy for a raw page (in cache, and the
         * guest cannot change it), a zero page's known digest.  A frame's
         * page is hashed in RAM: should the guest write it meanwhile, it
         * is dirty and goes again, and so does its digest. */
        const uint8_t *sent = payload + frame_len;
        uint64_t zd = ram_digest_zero_page();
        for (unsigned i = 0; i < n; i++) {
            uint64_t d = zd;
            if (kind[i] == PAGE_RAW) {
                d = ram_digest(sent, HM_PAGE_SIZE, 0);
                sent += HM_PAGE_SIZE;
            } else if (kind[i] == PAGE_FRAME) {
                d = ram_digest(hm_ram_page(ram, pfns[i]), HM_PAGE_SIZE, 0);
            }
            e->digests[pfns[i]] = d;
        }
    }
    uint64_t decode_ns = 0;
    if (e->measure_decode && nframe) {
        decode_ns = time_decode(e, payload, frame_len, nframe);
    }
    e->measure_decode = false;
    size_t len = frame_len + (size_t)nraw * HM_PAGE_SIZE;
    unsigned ndata = nframe + nraw;
    le_put32(out, round);
    out[4] = n & 0xff;
    out[5] = n >> 8;
    out[6] = nframe ? PAGE_ENC_ZSTD : PAGE_ENC_RAW;
    out[7] = 0;
    le_put32(out + 8, len);
    le_put32(out + 12, frame_len);
    le_put64(out + 16, page_batch_check(out, PAGE_BATCH_HEADER + (size_t)n * 8 + len));

    stats->zero_pages += n - ndata;
    stats->data_pages += ndata;
    stats->data_bytes += (uint64_t)ndata * HM_PAGE_SIZE;
    stats->payload_bytes += len;
    stats->raw_pages += nraw;
    if (ndata) {
        if (nframe) {
            stats->zstd_batches++;
        } else {
            stats->raw_batches++;
        }
    }
    /* Candidates sent raw cost their share of the copy loop (and a frame
     * that did not pay, its time). */
    unsigned nrandom = nraw - (ncand - nframe);
    e->last = (PageEncodeCost) {
        .pages = n,
        .candidates = ncand,
        .random = nrandom,
        .candidate_out = nframe ? frame_len : (uint64_t)ncand * HM_PAGE_SIZE,
        .candidate_ns = t_cand + (nraw ? t_raw * (ncand - nframe) / nraw : 0),
        .total_ns = now_ns() - t0 - decode_ns,
        .decode_ns = decode_ns,
        .decoded_pages = decode_ns ? nframe : 0,
    };
    return PAGE_BATCH_HEADER + (size_t)n * 8 + len;
}

PageDecoder *page_decoder_new(void)
{
    PageDecoder *d = g_new0(PageDecoder, 1);
    d->dctx = ZSTD_createDCtx();
    /* A frame that claims a larger window than a batch is refused before
     * zstd allocates it (its default bound is 128 MiB a frame). */
    ZSTD_DCtx_setParameter(d->dctx, ZSTD_d_windowLogMax, PAGE_BATCH_WINDOW_LOG);
    return d;
}

void page_decoder_free(PageDecoder *d)
{
    if (d) {
        ZSTD_freeDCtx(d->dctx);
        g_free(d);
    }
}

/*
 * Faults in the runs of consecutive data pages with one madvise each:
 * measured 2.5-3.8 GB/s here against 0.4-2 GB/s for first-touch faults
 * (docs/design.md, "Populating destination RAM").
 */
static void populate_runs(HmRam *ram, const uint64_t *pfns, const uint8_t *kind,
                          unsigned n)
{
    for (unsigned i = 0; i < n;) {
        if (kind[i] == PAGE_ZERO) {
            i++;
            continue;
        }
        unsigned j = i + 1;
        while (j < n && kind[j] != PAGE_ZERO && pfns[j] == pfns[j - 1] + 1) {
            j++;
        }
        /* best effort: a fault does the same */
        hm_ram_madvise(ram, pfns[i], j - i, MADV_POPULATE_WRITE);
        i = j;
    }
}

/* A batch's header and entries, checked. */
typedef struct ParsedBatch {
    unsigned n, nframe, nraw;
    uint32_t round;
    uint64_t pfns[PAGE_BATCH_MAX];
    uint8_t kind[PAGE_BATCH_MAX];
    const uint8_t *frame, *raw;
    uint32_t frame_len, data_len;
} ParsedBatch;

static bool parse_batch(const uint8_t *buf, size_t len, uint64_t npages,
                        ParsedBatch *b, GError **errp)
{
    if (len < PAGE_BATCH_HEADER) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "RAM batch of %zu bytes is too short", len);
        return false;
    }
    unsigned n = buf[4] | buf[5] << 8;
    PageEncoding enc = buf[6];
    uint32_t data_len = le_get32(buf + 8);
    uint32_t frame_len = le_get32(buf + 12);
    if (!n || n > PAGE_BATCH_MAX || enc > PAGE_ENC_ZSTD || buf[7] ||
        frame_len > data_len || (enc == PAGE_ENC_RAW && frame_len) ||
        len != PAGE_BATCH_HEADER + (size_t)n * 8 + data_len) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "malformed RAM batch header (%u pages, encoding %u, "
                    "%u data bytes in %zu)", n, enc, data_len, len);
        return false;
    }
    if (page_batch_check(buf, len) != le_get64(buf + 16)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "RAM batch of %u pages fails its checksum: corrupted on the way",
                    n);
        return false;
    }
    b->n = n;
    b->nframe = b->nraw = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t e = le_get64(buf + PAGE_BATCH_HEADER + (size_t)i * 8);
        b->pfns[i] = e >> 2;
        b->kind[i] = e & 3;
        if (b->pfns[i] >= npages || b->kind[i] > PAGE_RAW ||
            (b->kind[i] == PAGE_FRAME && enc != PAGE_ENC_ZSTD)) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                        "RAM batch entry %u (page %" G_GUINT64_FORMAT ", kind %u) "
                        "is beyond RAM (%" G_GUINT64_FORMAT " pages) or invalid",
                        i, b->pfns[i], b->kind[i], npages);
            return false;
        }
        b->nframe += b->kind[i] == PAGE_FRAME;
        b->nraw += b->kind[i] == PAGE_RAW;
    }
    b->frame = buf + PAGE_BATCH_HEADER + (size_t)n * 8;
    b->raw = b->frame + frame_len;
    b->frame_len = frame_len;
    b->data_len = data_len;
    b->round = le_get32(buf);
    if (data_len - frame_len != (size_t)b->nraw * HM_PAGE_SIZE ||
        (enc == PAGE_ENC_ZSTD && (!b->nframe || !frame_len))) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "RAM batch carries %u data bytes for %u raw and %u "
                    "compressed pages (frame %u bytes)", data_len, b->nraw,
                    b->nframe, frame_len);
        return false;
    }
    return true;
}

/* Writes the batch's data pages to @dst[i]: the frame's, then the raw ones. */
static bool fill_pages(PageDecoder *d, const ParsedBatch *b, uint8_t *const *dst,
                       GError **errp)
{
    ZSTD_inBuffer in = { b->frame, b->frame_len, 0 };
    const uint8_t *raw = b->raw;

    if (b->nframe) {
        ZSTD_DCtx_reset(d->dctx, ZSTD_reset_session_only);
        size_t r = 1;
        for (unsigned i = 0; i < b->n; i++) {
            if (b->kind[i] != PAGE_FRAME) {
                continue;
            }
            ZSTD_outBuffer out = { dst[i], HM_PAGE_SIZE, 0 };
            while (out.pos < out.size) {
                size_t before_in = in.pos, before_out = out.pos;
                r = ZSTD_decompressStream(d->dctx, &out, &in);
                if (ZSTD_isError(r)) {
                    g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                                "corrupt compressed batch: %s", ZSTD_getErrorName(r));
                    return false;
                }
                if (in.pos == before_in && out.pos == before_out) {
                    g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                                "compressed batch is shorter than its pages");
                    return false;
                }
            }
        }
        if (r != 0 || in.pos != in.size) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                        "compressed batch is longer than its pages");
            return false;
        }
    }
    for (unsigned i = 0; i < b->n; i++) {
        if (b->kind[i] == PAGE_RAW) {
            memcpy(dst[i], raw, HM_PAGE_SIZE);
            raw += HM_PAGE_SIZE;
        }
    }
    return true;
}

static void add_stats(const ParsedBatch *b, PageCodecStats *stats)
{
    stats->zero_pages += b->n - b->nframe - b->nraw;
    stats->data_pages += b->nframe + b->nraw;
    stats->data_bytes += (uint64_t)(b->nframe + b->nraw) * HM_PAGE_SIZE;
    stats->payload_bytes += b->data_len;
    stats->raw_pages += b->nraw;
}

bool page_decode(PageDecoder *d, HmRam *ram, const uint8_t *buf, size_t len,
                 uint32_t *round, PageCodecStats *stats, unsigned long *arrived,
                 uint64_t *digests, GError **errp)
{
    ParsedBatch b;
    uint8_t *dst[PAGE_BATCH_MAX] = { NULL };

    if (!parse_batch(buf, len, ram->npages, &b, errp)) {
        return false;
    }
    for (unsigned i = 0; i < b.n; i++) {
        dst[i] = hm_ram_page(ram, b.pfns[i]);
    }
    populate_runs(ram, b.pfns, b.kind, b.n);
    if (!fill_pages(d, &b, dst, errp)) {
        return false;
    }
    for (unsigned i = 0; i < b.n; i++) {
        bool zero = b.kind[i] == PAGE_ZERO;
        if (zero && !page_is_zero(dst[i])) {
            /* Needs writing only if this RAM holds something else. */
            memset(dst[i], 0, HM_PAGE_SIZE);
        }
        if (digests) {
            digests[b.pfns[i]] = zero ? ram_digest_zero_page()
                                      : ram_digest(dst[i], HM_PAGE_SIZE, 0);
        }
        if (arrived) {
            __atomic_fetch_and(&arrived[b.pfns[i] / HM_BITS_PER_LONG],
                               ~(1UL << (b.pfns[i] % HM_BITS_PER_LONG)), __ATOMIC_RELAXED);
        }
    }
    *round = b.round;
    add_stats(&b, stats);
    return true;
}

bool page_decode_staged(PageDecoder *d, uint64_t npages, const uint8_t *buf,
                        size_t len, PageStaged *out, PageCodecStats *stats,
                        GError **errp)
{
    ParsedBatch b;
    uint8_t *dst[PAGE_BATCH_MAX] = { NULL };

    if (!parse_batch(buf, len, npages, &b, errp)) {
        return false;
    }
    for (unsigned i = 0; i < b.n; i++) {
        dst[i] = out->data + (size_t)i * HM_PAGE_SIZE;
        out->pfns[i] = b.pfns[i];
        out->zero[i] = b.kind[i] == PAGE_ZERO;
    }
    if (!fill_pages(d, &b, dst, errp)) {
        return false;
    }
    out->n = b.n;
    add_stats(&b, stats);
    return true;
}
