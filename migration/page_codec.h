/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * RAM page batches: what a WIRE_RAM_BATCH message carries.
 *
 *   u32 round | u16 npages | u8 encoding | u8 flags | u32 data_len |
 *   u32 frame_len | u64 check
 *   npages x u64 entry: pfn << 2 | kind (PAGE_ZERO, PAGE_FRAME, PAGE_RAW)
 *   data_len bytes: frame_len bytes of one zstd frame that decompresses to
 *   the PAGE_FRAME pages in order (PAGE_ENC_ZSTD only), then the PAGE_RAW
 *   pages, 4 KiB each, in order
 *
 * @check is XXH3-64 of everything after it, seeded with XXH3-64 of the 16
 * bytes before it.  A batch that fails it is never placed: in postcopy the
 * guest runs on RAM as it arrives, and a page corrupted on the way must
 * not reach it (the final digests would find it only after the guest has
 * read it).
 *
 * Zero pages travel as an entry only.  Pages that look random (many distinct
 * byte values in a sample) go raw: zstd cannot shrink them, and mixed into
 * the frame they spoil the coding of the text around them.  One frame per
 * batch compresses better than a frame per page, and the receiver still
 * decompresses straight into guest RAM by moving zstd's output buffer from
 * page to page.
 */
#ifndef HINTMIG_PAGE_CODEC_H
#define HINTMIG_PAGE_CODEC_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "migration/ram.h"

#define PAGE_BATCH_MAX 128                 /* pages per batch */
#define PAGE_BATCH_HEADER 24
#define PAGE_BATCH_WINDOW_LOG 19            /* 2^19 = PAGE_BATCH_MAX pages */
#define PAGE_BATCH_TABLE_LOG 17             /* zstd's hash and chain tables, at most */

/* The checksum of a batch's @len bytes at @buf (its own field skipped). */
uint64_t page_batch_check(const uint8_t *buf, size_t len);

typedef enum {
    PAGE_ENC_RAW = 0,
    PAGE_ENC_ZSTD = 1,
} PageEncoding;

typedef enum {
    PAGE_ZERO = 0,
    PAGE_FRAME = 1,
    PAGE_RAW = 2,
} PageKind;

typedef struct PageCodecStats {
    uint64_t zero_pages;      /* sent as a marker only */
    uint64_t data_pages;      /* sent with content */
    uint64_t data_bytes;      /* data_pages * page size: before compression */
    uint64_t payload_bytes;   /* data as sent: compressed or raw */
    uint64_t zstd_batches;    /* batches where compression paid */
    uint64_t raw_batches;     /* batches sent raw */
    uint64_t raw_pages;       /* pages sent raw because they looked random */
} PageCodecStats;

/* Adds @from's counters to @to's. */
void page_codec_stats_add(PageCodecStats *to, const PageCodecStats *from);

typedef struct PageEncoder PageEncoder;
typedef struct PageDecoder PageDecoder;

/* Returns the largest encoded size of a batch of @npages pages. */
size_t page_batch_max_size(unsigned npages);

/*
 * Creates an encoder; with @zstd false every batch is raw.  @level is the
 * zstd level (ZSTD_minCLevel() to 19, never 0).
 */
PageEncoder *page_encoder_new(bool zstd, int level);
void page_encoder_free(PageEncoder *e);

/* page_encoder_set_level()'s "no compression": zstd's own 0 means its default. */
#define PAGE_LEVEL_RAW 0

/*
 * Sets the zstd level of the batches @e encodes from now on (a zstd
 * encoder only), or PAGE_LEVEL_RAW: their data pages go raw, still sorted
 * into zero, random-looking and compressible (the last are the
 * candidates page_encoder_cost() measures).
 */
void page_encoder_set_level(PageEncoder *e, int level);

/*
 * From now on each page @e encodes has its digest (ram_digest(), seed 0)
 * stored at @table[pfn], as it was sent; NULL stops it.
 */
void page_encoder_set_digests(PageEncoder *e, uint64_t *table);

/* What the last batch cost, for adaptive compression (compress_chooser.h). */
typedef struct PageEncodeCost {
    unsigned pages;           /* in the batch */
    unsigned candidates;      /* data pages that did not look random */
    unsigned random;          /* data pages that looked random: always raw */
    uint64_t candidate_out;   /* bytes the candidates took: frame, or raw */
    uint64_t candidate_ns;    /* CPU time compressing (or copying) the candidates */
    uint64_t total_ns;        /* CPU time of the whole batch (not decode_ns) */
    /* With page_encoder_measure_decode(): CPU time decompressing the batch's
     * frame again, as a destination's decoder will, and the pages in it
     * (0: not measured, or no frame). */
    uint64_t decode_ns;
    unsigned decoded_pages;
} PageEncodeCost;

/*
 * Asks @e to decompress the frame of its next batch again, if it makes
 * one, and to time it (PageEncodeCost.decode_ns): the source's own measure
 * of what decompression costs at the batch's level.  The first call makes
 * a decompression context and a batch-sized buffer.
 */
void page_encoder_measure_decode(PageEncoder *e);

/* Returns the cost of the last batch @e encoded. */
PageEncodeCost page_encoder_cost(const PageEncoder *e);
/* Bytes @e holds, its zstd context as it has grown so far included. */
size_t page_encoder_sizeof(const PageEncoder *e);

/*
 * Encodes pages @pfns[0..@n) of @ram (n <= PAGE_BATCH_MAX) for round
 * @round into @out, which holds page_batch_max_size(@n) bytes.  Returns
 * the encoded size and adds to @stats.  Compression is kept only when it
 * saves at least an eighth of the pages put in the frame.
 */
size_t page_encode(PageEncoder *e, const HmRam *ram, const uint64_t *pfns,
                   unsigned n, uint32_t round, uint8_t *out,
                   PageCodecStats *stats);

PageDecoder *page_decoder_new(void);
void page_decoder_free(PageDecoder *d);
size_t page_decoder_sizeof(const PageDecoder *d);

/*
 * Applies an encoded batch to @ram.  Every entry, length and the zstd frame
 * are checked; a malformed batch returns false with @errp set (pages already
 * written stay written: the caller fails the migration).  Sets *@round.
 * Adds the pages applied to @stats.  With @arrived, atomically clears the
 * bit of every page applied (the receiver's set of pages not yet sent).
 * With @digests, stores each page's ram_digest() at its page number.
 */
bool page_decode(PageDecoder *d, HmRam *ram, const uint8_t *buf, size_t len,
                 uint32_t *round, PageCodecStats *stats, unsigned long *arrived,
                 uint64_t *digests, GError **errp);

/* A batch decoded into a staging area instead of guest RAM (postcopy). */
typedef struct PageStaged {
    unsigned n;
    uint64_t pfns[PAGE_BATCH_MAX];
    bool zero[PAGE_BATCH_MAX];     /* a zero page: nothing in data */
    uint8_t *data;                 /* PAGE_BATCH_MAX pages, page i at i * 4 KiB */
} PageStaged;

/*
 * Decodes a batch for a RAM of @npages pages into @out (whose data the
 * caller allocates), checking it as page_decode() does.  Under userfaultfd
 * a page must be placed whole and at once, so it cannot be decompressed
 * into RAM in place.
 */
bool page_decode_staged(PageDecoder *d, uint64_t npages, const uint8_t *buf,
                        size_t len, PageStaged *out, PageCodecStats *stats,
                        GError **errp);


/* Returns true when the 4 KiB page at @p is all zero. */
bool page_is_zero(const void *p);

/* Returns true when the page at @p looks incompressible (random bytes). */
bool page_looks_random(const void *p);

#endif
