/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Wire format, page batches and RAM digests, including hostile input. */
#include <string.h>

#include "migration/page_codec.h"
#include "migration/bitmap.h"
#include "migration/le.h"
#include "migration/ram_digest.h"
#include "migration/ram_presence.h"
#include "migration/wire.h"
#include "guest/page_content.h"
#include "test_util.h"
#include "test_ram.h"

#define NPAGES 1024u

/* Gives a batch mangled on purpose a valid checksum again. */
static void reseal(uint8_t *batch, size_t len)
{
    if (len >= PAGE_BATCH_HEADER) {
        le_put64(batch + 16, page_batch_check(batch, len));
    }
}

static HmRam *ram_new(void)
{
    HmRam *r = test_ram_new((uint64_t)NPAGES * HM_PAGE_SIZE, NULL);
    ck_assert(r);
    return r;
}

/* Page i: zero if i % 4 == 0, random or text otherwise. */
static void fill(HmRam *r)
{
    for (uint64_t i = 0; i < NPAGES; i++) {
        if (i % 4) {
            page_content_fill(hm_ram_page(r, i), i, 3);
        }
    }
}

START_TEST(header_roundtrip_and_rejects)
{
    uint8_t b[WIRE_HEADER_SIZE];
    WireHeader h;
    g_autoptr(GError) err = NULL;

    wire_header_encode(b, WIRE_RAM_BATCH, 77, 1234);
    ck_assert(wire_header_decode(b, &h, &err));
    ck_assert_uint_eq(h.type, WIRE_RAM_BATCH);
    ck_assert_uint_eq(h.seq, 77);
    ck_assert_uint_eq(h.len, 1234);

    wire_header_encode(b, WIRE_ACK, 1, WIRE_MAX_PAYLOAD + 1);
    ck_assert(!wire_header_decode(b, &h, &err));
    ck_assert_ptr_nonnull(strstr(err->message, "exceeds"));
    g_clear_error(&err);
    wire_header_encode(b, 99, 1, 0);
    ck_assert(!wire_header_decode(b, &h, &err));
    ck_assert_ptr_nonnull(strstr(err->message, "unknown message type"));
    g_clear_error(&err);
    wire_header_encode(b, WIRE_ACK, 1, 0);
    b[4] = 9;                                   /* version */
    ck_assert(!wire_header_decode(b, &h, &err));
    ck_assert_ptr_nonnull(strstr(err->message, "version"));
    g_clear_error(&err);
    memcpy(b, "GET ", 4);                       /* not our protocol at all */
    ck_assert(!wire_header_decode(b, &h, &err));
    ck_assert_ptr_nonnull(strstr(err->message, "magic"));
}
END_TEST

/*
 * The page digest is XXH3-64 (libxxhash) since wire version 2: the
 * unseeded answers are `xxhsum -H3`'s over the same bytes, the seeded one
 * libxxhash 0.8.1's own (a change of function or seeding shows).
 */
START_TEST(digest_known_answers)
{
    static uint8_t zero[4096], pat[4096];
    for (unsigned i = 0; i < sizeof(pat); i++) {
        pat[i] = (uint8_t)(i * 7 + 3);
    }
    ck_assert_uint_eq(ram_digest(zero, sizeof(zero), 0), 0x93d76fe148c689baull);
    ck_assert_uint_eq(ram_digest(pat, sizeof(pat), 0), 0xd7428746842be37eull);
    ck_assert_uint_eq(ram_digest(pat, sizeof(pat), 12345), 0xc36a46b0ef0586c3ull);
    ck_assert_uint_eq(ram_digest_zero_page(), ram_digest(zero, sizeof(zero), 0));
}
END_TEST

START_TEST(hello_roundtrip)
{
    WireHello a = { .session = 42, .features_offered = 3, .features_required = 1,
                    .page_size = 4096, .ram_size = 1ull << 31, .nvcpus = 2 };
    WireHello b;
    memset(a.uuid, 0xab, 16);
    g_autoptr(GBytes) e = wire_hello_encode(&a);
    gsize len;
    const void *p = g_bytes_get_data(e, &len);
    ck_assert(wire_hello_decode(p, len, &b, NULL));
    ck_assert_mem_eq(&a.uuid, &b.uuid, 16);
    ck_assert_uint_eq(b.ram_size, a.ram_size);
    ck_assert_uint_eq(b.features_required, 1);
    ck_assert(!wire_hello_decode(p, len - 1, &b, NULL));

    WireHelloReply r = { .status = WIRE_REFUSE_LAYOUT, .ram_size = 5, .decoders = 7 };
    g_strlcpy(r.reason, "RAM size differs\x01", sizeof(r.reason));
    g_autoptr(GBytes) re = wire_hello_reply_encode(&r);
    WireHelloReply r2;
    p = g_bytes_get_data(re, &len);
    ck_assert(wire_hello_reply_decode(p, len, &r2, NULL));
    ck_assert_uint_eq(r2.status, WIRE_REFUSE_LAYOUT);
    ck_assert_uint_eq(r2.decoders, 7);
    ck_assert_str_eq(r2.reason, "RAM size differs?");   /* control chars masked */
    g_autofree char *f = wire_features_str(WIRE_FEAT_ZSTD | WIRE_FEAT_VERIFY | (1ull << 40));
    ck_assert_str_eq(f, "zstd,verify,bit40");
}
END_TEST

static void roundtrip(bool zstd)
{
    HmRam *src = ram_new(), *dst = ram_new();
    PageEncoder *e = page_encoder_new(zstd, 1);
    PageDecoder *d = page_decoder_new();
    g_autofree uint8_t *buf = g_malloc(page_batch_max_size(PAGE_BATCH_MAX));
    PageCodecStats es = { 0 }, ds = { 0 };
    uint64_t pfns[PAGE_BATCH_MAX];
    g_autoptr(GError) err = NULL;

    fill(src);
    memset(test_ram_host(dst), 0x77, dst->size);   /* zero pages must be zeroed */
    for (uint64_t first = 0; first < NPAGES; first += PAGE_BATCH_MAX) {
        for (unsigned i = 0; i < PAGE_BATCH_MAX; i++) {
            /* Scattered order, as dirty rounds send. */
            pfns[i] = first + (i * 37) % PAGE_BATCH_MAX;
        }
        size_t len = page_encode(e, src, pfns, PAGE_BATCH_MAX, 5, buf, &es);
        ck_assert_uint_le(len, page_batch_max_size(PAGE_BATCH_MAX));
        uint32_t round;
        ck_assert_msg(page_decode(d, dst, buf, len, &round, &ds, NULL, NULL, &err), "%s",
                      err ? err->message : "");
        ck_assert_uint_eq(round, 5);
    }
    ck_assert_mem_eq(test_ram_host(src), test_ram_host(dst), src->size);
    ck_assert_uint_eq(es.zero_pages, NPAGES / 4);
    ck_assert_uint_eq(es.data_pages, NPAGES * 3 / 4);
    ck_assert_uint_eq(ds.data_pages, es.data_pages);
    ck_assert_uint_eq(ds.payload_bytes, es.payload_bytes);
    if (zstd) {
        ck_assert_uint_gt(es.zstd_batches, 0);
        ck_assert_uint_lt(es.payload_bytes, es.data_bytes * 3 / 4);
    } else {
        ck_assert_uint_eq(es.payload_bytes, es.data_bytes);
    }
    page_encoder_free(e);
    page_decoder_free(d);
    test_ram_free(src);
    test_ram_free(dst);
}

START_TEST(batch_roundtrip_zstd) { roundtrip(true); }
END_TEST
START_TEST(batch_roundtrip_raw) { roundtrip(false); }
END_TEST

START_TEST(incompressible_batch_goes_raw)
{
    HmRam *src = ram_new();
    PageEncoder *e = page_encoder_new(true, 1);
    g_autofree uint8_t *buf = g_malloc(page_batch_max_size(PAGE_BATCH_MAX));
    PageCodecStats st = { 0 };
    uint64_t pfns[64];
    GRand *r = g_rand_new_with_seed(1);

    for (unsigned i = 0; i < 64; i++) {
        uint32_t *p = hm_ram_page(src, i);
        for (unsigned w = 0; w < HM_PAGE_SIZE / 4; w++) {
            p[w] = g_rand_int(r);
        }
        pfns[i] = i;
    }
    size_t len = page_encode(e, src, pfns, 64, 1, buf, &st);
    ck_assert_uint_eq(buf[6], PAGE_ENC_RAW);
    ck_assert_uint_eq(len, PAGE_BATCH_HEADER + 64 * 8 + 64 * HM_PAGE_SIZE);
    ck_assert_uint_eq(st.raw_batches, 1);
    g_rand_free(r);
    page_encoder_free(e);
    test_ram_free(src);
}
END_TEST

/* Adaptive compression's per-batch level: raw, negative, and the cost it reports. */
START_TEST(level_per_batch_and_its_cost)
{
    HmRam *src = ram_new(), *dst = ram_new();
    PageEncoder *e = page_encoder_new(true, 3);
    PageDecoder *d = page_decoder_new();
    g_autofree uint8_t *buf = g_malloc(page_batch_max_size(PAGE_BATCH_MAX));
    uint64_t pfns[PAGE_BATCH_MAX];
    uint32_t round;

    fill(src);
    for (unsigned i = 0; i < PAGE_BATCH_MAX; i++) {
        pfns[i] = i;
    }
    size_t sizes[3];
    const int levels[3] = { PAGE_LEVEL_RAW, -32, 3 };
    for (unsigned k = 0; k < 3; k++) {
        PageCodecStats st = { 0 }, ds = { 0 };
        g_autoptr(GError) err = NULL;
        page_encoder_set_level(e, levels[k]);
        sizes[k] = page_encode(e, src, pfns, PAGE_BATCH_MAX, 1, buf, &st);
        ck_assert_uint_eq(buf[6], k ? PAGE_ENC_ZSTD : PAGE_ENC_RAW);
        PageEncodeCost c = page_encoder_cost(e);
        ck_assert_uint_eq(c.pages, PAGE_BATCH_MAX);
        /* a quarter zero (fill()), the rest random-looking or candidates */
        ck_assert_uint_eq(c.candidates + c.random, PAGE_BATCH_MAX - PAGE_BATCH_MAX / 4);
        ck_assert_uint_gt(c.candidates, 0);
        ck_assert_uint_gt(c.random, 0);
        ck_assert(c.total_ns >= c.candidate_ns);
        ck_assert_uint_eq(c.decode_ns, 0);          /* not asked */
        ck_assert_uint_eq(c.decoded_pages, 0);
        if (k == 0) {
            ck_assert_uint_eq(c.candidate_out, (uint64_t)c.candidates * HM_PAGE_SIZE);
        } else {
            ck_assert_uint_lt(c.candidate_out, (uint64_t)c.candidates * HM_PAGE_SIZE / 2);
        }
        ck_assert_msg(page_decode(d, dst, buf, sizes[k], &round, &ds, NULL, NULL, &err),
                      "%s", err ? err->message : "");
        for (unsigned i = 0; i < PAGE_BATCH_MAX; i++) {
            ck_assert(!memcmp(hm_ram_page(src, i), hm_ram_page(dst, i), HM_PAGE_SIZE));
        }
    }
    /* level 3 packs tighter than -32, which packs tighter than raw */
    ck_assert_uint_lt(sizes[2], sizes[1]);
    ck_assert_uint_lt(sizes[1], sizes[0]);

    /* Asked, a frame is decompressed again and timed, once; raw is not. */
    PageCodecStats st = { 0 };
    size_t before = page_encoder_sizeof(e);
    page_encoder_measure_decode(e);
    size_t len = page_encode(e, src, pfns, PAGE_BATCH_MAX, 1, buf, &st);
    PageEncodeCost c = page_encoder_cost(e);
    ck_assert_uint_gt(c.decode_ns, 0);
    ck_assert_uint_eq(c.decoded_pages, c.candidates);
    ck_assert_uint_gt(page_encoder_sizeof(e), before);    /* its context and buffer */
    ck_assert_uint_eq(len, sizes[2]);                       /* the batch is the same */
    page_encode(e, src, pfns, PAGE_BATCH_MAX, 1, buf, &st);
    ck_assert_uint_eq(page_encoder_cost(e).decode_ns, 0);  /* once */
    page_encoder_set_level(e, PAGE_LEVEL_RAW);
    page_encoder_measure_decode(e);
    page_encode(e, src, pfns, PAGE_BATCH_MAX, 1, buf, &st);
    ck_assert_uint_eq(page_encoder_cost(e).decode_ns, 0);
    page_decoder_free(d);
    page_encoder_free(e);
    test_ram_free(src);
    test_ram_free(dst);
}
END_TEST

START_TEST(random_pages_stay_out_of_the_frame)
{
    HmRam *src = ram_new(), *dst = ram_new();
    PageEncoder *e = page_encoder_new(true, 3);
    PageDecoder *d = page_decoder_new();
    g_autofree uint8_t *buf = g_malloc(page_batch_max_size(PAGE_BATCH_MAX));
    PageCodecStats st = { 0 }, ds = { 0 };
    uint64_t pfns[96];
    unsigned nrandom = 0;
    uint32_t round;

    for (unsigned i = 0; i < 96; i++) {
        pfns[i] = 200 + i;
        if (i % 3 == 0) {
            page_content_random(hm_ram_page(src, pfns[i]), HM_PAGE_SIZE, i + 1);
            nrandom++;
        } else {
            page_content_text(hm_ram_page(src, pfns[i]), HM_PAGE_SIZE, i + 1);
        }
        ck_assert_int_eq(page_looks_random(hm_ram_page(src, pfns[i])), i % 3 == 0);
    }
    size_t len = page_encode(e, src, pfns, 96, 2, buf, &st);
    ck_assert_uint_eq(st.raw_pages, nrandom);
    ck_assert_uint_eq(buf[6], PAGE_ENC_ZSTD);
    /* Raw pages whole, the text at well under half its size. */
    ck_assert_uint_lt(len, PAGE_BATCH_HEADER + 96 * 8 + nrandom * HM_PAGE_SIZE +
                           (96 - nrandom) * HM_PAGE_SIZE / 2);
    ck_assert(page_decode(d, dst, buf, len, &round, &ds, NULL, NULL, NULL));
    ck_assert_mem_eq(hm_ram_page(src, 200), hm_ram_page(dst, 200),
                     96 * HM_PAGE_SIZE);
    page_encoder_free(e);
    page_decoder_free(d);
    test_ram_free(src);
    test_ram_free(dst);
}
END_TEST

/*
 * With a digest table the encoder records each page's digest as sent, and
 * the destination's decoder computes the same ones from what it wrote: a
 * page the guest changes after it was encoded raw keeps the digest of the
 * copy that went, at every kind of page (zero, raw, in a frame).
 */
static void encoder_digests(bool zstd)
{
    HmRam *src = ram_new(), *dst = ram_new();
    PageEncoder *e = page_encoder_new(zstd, 3);
    PageDecoder *d = page_decoder_new();
    g_autofree uint8_t *buf = g_malloc(page_batch_max_size(PAGE_BATCH_MAX));
    g_autofree uint64_t *sent = g_new0(uint64_t, NPAGES);
    g_autofree uint64_t *placed = g_new0(uint64_t, NPAGES);
    PageCodecStats st = { 0 }, ds = { 0 };
    uint64_t pfns[96];
    uint32_t round;

    for (unsigned i = 0; i < 96; i++) {
        pfns[i] = 300 + i;
        void *pg = hm_ram_page(src, pfns[i]);
        if (i % 3 == 1) {
            page_content_random(pg, HM_PAGE_SIZE, i + 1);
        } else if (i % 3 == 2) {
            page_content_text(pg, HM_PAGE_SIZE, i + 1);
        }                                   /* i % 3 == 0: a zero page */
    }
    page_encoder_set_digests(e, sent);
    size_t len = page_encode(e, src, pfns, 96, 1, buf, &st);
    ck_assert_uint_eq(st.zero_pages, 32);
    ck_assert_uint_eq(buf[6], zstd ? PAGE_ENC_ZSTD : PAGE_ENC_RAW);
    for (unsigned i = 0; i < 96; i++) {
        ck_assert_uint_eq(sent[pfns[i]], ram_digest(hm_ram_page(src, pfns[i]), HM_PAGE_SIZE, 0));
    }
    memset(hm_ram_page(src, pfns[1]), 0x5a, HM_PAGE_SIZE);   /* a raw page, after */
    ck_assert(page_decode(d, dst, buf, len, &round, &ds, NULL, placed, NULL));
    for (unsigned i = 0; i < 96; i++) {
        ck_assert_uint_eq(sent[pfns[i]], placed[pfns[i]]);
    }
    ck_assert_uint_eq(sent[pfns[0]], ram_digest_zero_page());
    ck_assert_uint_eq(sent[299], 0);                 /* no other entry written */
    ck_assert_uint_eq(sent[396], 0);

    page_encoder_set_digests(e, NULL);               /* and off again */
    memset(sent, 0, NPAGES * sizeof(uint64_t));
    page_encode(e, src, pfns, 96, 1, buf, &st);
    for (unsigned i = 0; i < 96; i++) {
        ck_assert_uint_eq(sent[pfns[i]], 0);
    }
    page_encoder_free(e);
    page_decoder_free(d);
    test_ram_free(src);
    test_ram_free(dst);
}

START_TEST(encoder_digests_zstd) { encoder_digests(true); }
END_TEST
START_TEST(encoder_digests_raw) { encoder_digests(false); }
END_TEST

/* Every level auto may pick keeps its encoder near level 3's size: the
 * engine's memory stays under 1% of a 2 GiB guest with two of them. */
START_TEST(encoder_memory_is_bounded_at_every_level)
{
    static const int levels[] = { -32, 1, 3, 6, 9 };
    HmRam *src = ram_new();
    g_autofree uint8_t *buf = g_malloc(page_batch_max_size(PAGE_BATCH_MAX));
    PageCodecStats st = { 0 };
    uint64_t pfns[PAGE_BATCH_MAX];

    fill(src);
    for (unsigned i = 0; i < PAGE_BATCH_MAX; i++) {
        pfns[i] = i;
    }
    for (size_t l = 0; l < G_N_ELEMENTS(levels); l++) {
        PageEncoder *e = page_encoder_new(true, 3);
        page_encoder_set_level(e, levels[l]);
        ck_assert_uint_gt(page_encode(e, src, pfns, PAGE_BATCH_MAX, 1, buf, &st), 0);
        ck_assert_msg(page_encoder_sizeof(e) < 2 * 1024 * 1024, "level %d: %zu bytes",
                      levels[l], page_encoder_sizeof(e));
        page_encoder_free(e);
    }
    test_ram_free(src);
}
END_TEST

START_TEST(hostile_batches_are_refused)
{
    HmRam *src = ram_new(), *dst = ram_new();
    PageEncoder *e = page_encoder_new(true, 1);
    PageDecoder *d = page_decoder_new();
    size_t cap = page_batch_max_size(PAGE_BATCH_MAX);
    g_autofree uint8_t *buf = g_malloc(cap);
    g_autofree uint8_t *bad = g_malloc(cap);
    PageCodecStats st = { 0 };
    uint64_t pfns[PAGE_BATCH_MAX];
    uint32_t round;

    fill(src);
    for (unsigned i = 0; i < PAGE_BATCH_MAX; i++) {
        pfns[i] = i + 1;
    }
    size_t len = page_encode(e, src, pfns, PAGE_BATCH_MAX, 1, buf, &st);
    ck_assert_uint_eq(buf[6], PAGE_ENC_ZSTD);

    struct { const char *what; size_t at; uint8_t val; long dlen; const char *msg; }
    cases[] = {
        { "truncated", 0, 0, -100, "malformed" },
        { "page count 0", 4, 0, 0, "malformed" },
        { "encoding 7", 6, 7, 0, "malformed" },
        { "pfn beyond RAM", PAGE_BATCH_HEADER + 5, 0x7f, 0, "beyond RAM" },
        { "frame garbage", PAGE_BATCH_HEADER + PAGE_BATCH_MAX * 8 + 20, 0xff, 0, "corrupt" },
    };
    for (size_t c = 0; c < G_N_ELEMENTS(cases); c++) {
        g_autoptr(GError) err = NULL;
        memcpy(bad, buf, len);
        size_t blen = len + cases[c].dlen;
        if (cases[c].dlen == 0) {
            bad[cases[c].at] = cases[c].val;
        }
        reseal(bad, blen);       /* past the checksum, to the check behind it */
        ck_assert_msg(!page_decode(d, dst, bad, blen, &round, &st, NULL, NULL, &err),
                      "%s accepted", cases[c].what);
        ck_assert_msg(strstr(err->message, cases[c].msg), "%s: %s",
                      cases[c].what, err->message);
    }
    /* A frame that claims a 128 MiB window is refused, not allocated.
     * Frames declare their size (single segment, no window byte): the
     * header is rebuilt without the size, with a window byte instead. */
    {
        static const uint8_t magic[4] = { 0x28, 0xb5, 0x2f, 0xfd };
        static const size_t did_size[4] = { 0, 1, 2, 4 };
        g_autoptr(GError) err = NULL;
        size_t fo = PAGE_BATCH_HEADER + PAGE_BATCH_MAX * 8;
        const uint8_t *f = buf + fo;
        ck_assert(!memcmp(f, magic, 4));
        uint8_t fhd = f[4];
        bool ss = fhd & 0x20;
        unsigned fcs_flag = fhd >> 6;
        size_t fcs = fcs_flag ? 1u << fcs_flag : ss;
        size_t did = did_size[fhd & 3];
        size_t old_hdr = 5 + !ss + did + fcs;
        uint8_t hdr[10];
        memcpy(hdr, magic, 4);
        hdr[4] = fhd & 0x1f;                /* no size, not single-segment */
        hdr[5] = (27 - 10) << 3;            /* window: 2^27 */
        memcpy(hdr + 6, f + 5 + !ss, did);
        size_t new_hdr = 6 + did;
        memcpy(bad, buf, fo);
        memcpy(bad + fo, hdr, new_hdr);
        memcpy(bad + fo + new_hdr, f + old_hdr, len - fo - old_hdr);
        size_t blen = len - old_hdr + new_hdr;
        uint32_t v;
        for (unsigned at = 8; at <= 12; at += 4) {        /* data_len, frame_len */
            memcpy(&v, bad + at, 4);
            v = v - old_hdr + new_hdr;
            memcpy(bad + at, &v, 4);
        }
        reseal(bad, blen);
        ck_assert(!page_decode(d, dst, bad, blen, &round, &st, NULL, NULL, &err));
        ck_assert_msg(strstr(err->message, "memory"), "%s", err->message);
        /* The same rebuilt header with a one-batch window decodes. */
        bad[fo + 5] = (PAGE_BATCH_WINDOW_LOG - 10) << 3;
        reseal(bad, blen);
        g_clear_error(&err);
        ck_assert_msg(page_decode(d, dst, bad, blen, &round, &st, NULL, NULL, &err), "%s",
                      err ? err->message : "");
    }
    /* A frame cut short, with the length field saying so. */
    g_autoptr(GError) err = NULL;
    memcpy(bad, buf, len);
    uint32_t dl;
    memcpy(&dl, bad + 8, 4);
    dl -= 10;
    memcpy(bad + 8, &dl, 4);
    reseal(bad, len - 10);
    ck_assert(!page_decode(d, dst, bad, len - 10, &round, &st, NULL, NULL, &err));
    g_clear_error(&err);
    /* A raw batch whose length does not match its data pages. */
    PageEncoder *raw = page_encoder_new(false, 1);
    len = page_encode(raw, src, pfns, 4, 1, buf, &st);
    memcpy(&dl, buf + 8, 4);
    dl -= HM_PAGE_SIZE;
    memcpy(buf + 8, &dl, 4);
    reseal(buf, len - HM_PAGE_SIZE);
    ck_assert(!page_decode(d, dst, buf, len - HM_PAGE_SIZE, &round, &st, NULL, NULL, &err));
    ck_assert_ptr_nonnull(strstr(err->message, "RAM batch carries"));
    g_clear_error(&err);
    /* An entry of kind 3, and a frame longer than the data. */
    len = page_encode(e, src, pfns, 8, 1, buf, &st);
    memcpy(bad, buf, len);
    bad[PAGE_BATCH_HEADER + 8] |= 3;
    reseal(bad, len);
    ck_assert(!page_decode(d, dst, bad, len, &round, &st, NULL, NULL, &err));
    ck_assert_ptr_nonnull(strstr(err->message, "invalid"));
    g_clear_error(&err);
    memcpy(bad, buf, len);
    bad[12] = bad[13] = bad[14] = 0xff;
    reseal(bad, len);
    ck_assert(!page_decode(d, dst, bad, len, &round, &st, NULL, NULL, &err));
    ck_assert_ptr_nonnull(strstr(err->message, "malformed"));
    g_clear_error(&err);
    /* One bit of a raw page, which decodes fine: the checksum refuses it
     * before anything is placed. */
    len = page_encode(raw, src, pfns, 4, 1, buf, &st);
    memcpy(bad, buf, len);
    bad[len - 100] ^= 0x10;
    ck_assert(!page_decode(d, dst, bad, len, &round, &st, NULL, NULL, &err));
    ck_assert_msg(strstr(err->message, "fails its checksum"), "%s", err->message);
    page_encoder_free(raw);
    page_encoder_free(e);
    page_decoder_free(d);
    test_ram_free(src);
    test_ram_free(dst);
}
END_TEST

START_TEST(digests_catch_flips_and_misplacement)
{
    HmRam *a = ram_new();
    uint64_t n = ram_digest_nchunks(a, 64);
    g_autofree uint64_t *d1 = g_new(uint64_t, n);
    g_autofree uint64_t *d2 = g_new(uint64_t, n);

    fill(a);
    ram_digest_chunks(a, 64, 0, n, d1, 1, NULL);
    ram_digest_chunks(a, 64, 0, n, d2, 3, NULL);     /* threads change nothing */
    ck_assert_mem_eq(d1, d2, n * 8);
    ((uint8_t *)hm_ram_page(a, 300))[17] ^= 0x08;
    ram_digest_chunks(a, 64, 0, n, d2, 2, NULL);
    for (uint64_t c = 0; c < n; c++) {
        ck_assert_msg((d1[c] != d2[c]) == (c == 300 / 64), "chunk %" G_GUINT64_FORMAT, c);
    }
    /* Two zero chunks differ by index; equal content in place matches. */
    uint8_t zero[64 * HM_PAGE_SIZE] = { 0 };
    ck_assert_uint_ne(ram_digest(zero, sizeof(zero), 1), ram_digest(zero, sizeof(zero), 2));
    test_ram_free(a);
}
END_TEST

START_TEST(presence_and_zero_pages)
{
    HmRam *a = ram_new(), *b = ram_new();
    g_autoptr(GError) err = NULL;
    volatile uint8_t sink;

    /* a: pages 10 and 500 written (500 with zeros), page 20 only read. */
    ((uint8_t *)hm_ram_page(a, 10))[5] = 1;
    memset(hm_ram_page(a, 500), 0, HM_PAGE_SIZE);
    sink = ((uint8_t *)hm_ram_page(a, 20))[0];
    (void)sink;
    g_autofree unsigned long *present = ram_presence_scan(a, &err);
    ck_assert_msg(present, "%s", err ? err->message : "");
    ck_assert(hm_bitmap_test_bit(present, 10));
    ck_assert(hm_bitmap_test_bit(present, 500));
    ck_assert(!hm_bitmap_test_bit(present, 11));
    ck_assert(!hm_bitmap_test_bit(present, 1000));
    /* Page 20 maps the shared zero page: it reads as zero, like a page
     * never touched (PAGEMAP_SCAN tells; this kernel has it). */
    ck_assert(!hm_bitmap_test_bit(present, 20));
    ck_assert_uint_eq(hm_bitmap_count(present, NPAGES), 2);

    /* b: only page 10 written, the same way.  Same digests throughout. */
    ((uint8_t *)hm_ram_page(b, 10))[5] = 1;
    uint64_t n = ram_digest_nchunks(a, RAM_DIGEST_CHUNK_PAGES);
    g_autofree uint64_t *da = g_new(uint64_t, n);
    g_autofree uint64_t *db = g_new(uint64_t, n);
    ram_digest_chunks(a, RAM_DIGEST_CHUNK_PAGES, 0, n, da, 2, NULL);
    ram_digest_chunks(b, RAM_DIGEST_CHUNK_PAGES, 0, n, db, 1, NULL);
    ck_assert_mem_eq(da, db, n * 8);
    /* A page moved within a chunk does not match. */
    ((uint8_t *)hm_ram_page(b, 10))[5] = 0;
    ((uint8_t *)hm_ram_page(b, 11))[5] = 1;
    ram_digest_chunks(b, RAM_DIGEST_CHUNK_PAGES, 0, n, db, 1, NULL);
    ck_assert_uint_ne(da[0], db[0]);
    test_ram_free(a);
    test_ram_free(b);
}
END_TEST

/*
 * The worst fragmentation, every other page, over 16 GiB of address space:
 * every message fits the sender's buffer (WIRE_MAX_PAYLOAD, the one rule)
 * and the set comes back whole.  The same code serves HINTED, PENDING,
 * MISSING and UNTOUCHED, whatever the guest's size.
 */
START_TEST(page_runs_worst_fragmentation)
{
    enum { N = 4u << 20 };             /* 16 GiB of 4 KiB pages */
    g_autofree unsigned long *set = hm_bitmap_new(N), *back = hm_bitmap_new(N);
    for (uint64_t i = 0; i < N; i += 2) {
        hm_bitmap_set_bit(set, i);
    }
    g_autoptr(GPtrArray) msgs = wire_runs_encode(set, N, 3, 4);
    ck_assert_uint_ge(msgs->len, (N / 2) * 16 / WIRE_MAX_PAYLOAD);
    ck_assert_uint_ge(page_batch_max_size(PAGE_BATCH_MAX), 1);
    ck_assert_uint_le(page_batch_max_size(PAGE_BATCH_MAX), WIRE_MAX_PAYLOAD);
    uint64_t total = 0;
    for (guint i = 0; i < msgs->len; i++) {
        gsize len;
        const void *d = g_bytes_get_data(msgs->pdata[i], &len);
        uint32_t word;
        uint64_t pages;
        if (len > WIRE_MAX_PAYLOAD) {
            ck_abort_msg("message %u is %zu bytes, over %u", i, len, WIRE_MAX_PAYLOAD);
        }
        if (!wire_runs_decode(d, len, N, back, &word, &pages, NULL)) {
            ck_abort_msg("message %u does not decode", i);
        }
        total += pages;
    }
    ck_assert_uint_eq(total, N / 2);
    ck_assert_mem_eq(set, back, HM_BITMAP_LONGS(N) * sizeof(unsigned long));
}
END_TEST

START_TEST(page_runs_roundtrip_and_rejects)
{
    enum { N = 2000000 };              /* enough runs for two messages */
    g_autofree unsigned long *set = hm_bitmap_new(N), *back = hm_bitmap_new(N);
    for (uint64_t i = 0; i < N; i += 3) {       /* runs of one page */
        hm_bitmap_set_bit(set, i);
    }
    hm_bitmap_set_range(set, N - 50, 50);
    g_autoptr(GPtrArray) msgs = wire_runs_encode(set, N, 7, 9);
    ck_assert_uint_gt(msgs->len, 1);
    uint64_t total = 0;
    for (guint i = 0; i < msgs->len; i++) {
        gsize len;
        const void *d = g_bytes_get_data(msgs->pdata[i], &len);
        uint32_t word;
        uint64_t pages;
        ck_assert(len <= WIRE_MAX_PAYLOAD);
        ck_assert(wire_runs_decode(d, len, N, back, &word, &pages, NULL));
        ck_assert_uint_eq(word, i + 1 == msgs->len ? 9 : 7);
        uint64_t checked;             /* checked only, the caller walks the runs */
        ck_assert(wire_runs_decode(d, len, N, NULL, &word, &checked, NULL));
        ck_assert_uint_eq(checked, pages);
        total += pages;
    }
    ck_assert_uint_eq(total, hm_bitmap_count(set, N));
    ck_assert_mem_eq(set, back, HM_BITMAP_LONGS(N) * sizeof(unsigned long));

    /* An empty set is one message with no runs. */
    g_autofree unsigned long *none = hm_bitmap_new(N);
    g_autoptr(GPtrArray) empty = wire_runs_encode(none, N, 0, 1);
    ck_assert_uint_eq(empty->len, 1);
    ck_assert_uint_eq(g_bytes_get_size(empty->pdata[0]), 8);

    /* Hostile: count that lies, a run past the end, an empty run. */
    uint8_t bad[8 + 16];
    uint32_t w[2] = { GUINT32_TO_LE(0), GUINT32_TO_LE(2) };
    uint64_t run[2] = { GUINT64_TO_LE(N - 1), GUINT64_TO_LE(1) };
    memcpy(bad, w, 8);
    memcpy(bad + 8, run, 16);
    uint32_t word;
    uint64_t pages;
    g_autoptr(GError) e1 = NULL, e2 = NULL, e3 = NULL;
    ck_assert(!wire_runs_decode(bad, sizeof(bad), N, back, &word, &pages, &e1));
    w[1] = GUINT32_TO_LE(1);
    memcpy(bad, w, 8);
    run[1] = GUINT64_TO_LE(2);
    memcpy(bad + 8, run, 16);
    ck_assert(!wire_runs_decode(bad, sizeof(bad), N, back, &word, &pages, &e2));
    ck_assert_ptr_nonnull(strstr(e2->message, "outside RAM"));
    run[1] = 0;
    memcpy(bad + 8, run, 16);
    ck_assert(!wire_runs_decode(bad, sizeof(bad), N, back, &word, &pages, &e3));
}
END_TEST

START_TEST(multifd_intro_roundtrip_and_rejects)
{
    uint8_t b[16];
    WireMultifd w = { 0x1122334455667788ull, 3, 4 }, out;
    g_autoptr(GError) err = NULL;

    wire_multifd_encode(b, &w);
    ck_assert(wire_multifd_decode(b, 16, &out, &err));
    ck_assert_uint_eq(out.session, w.session);
    ck_assert_uint_eq(out.index, 3);
    ck_assert_uint_eq(out.count, 4);
    ck_assert(!wire_multifd_decode(b, 15, &out, &err));
    g_clear_error(&err);
    /* index 0 is the main connection; index >= count, count 1 or over 16 */
    const WireMultifd bad[] = { { 1, 0, 2 }, { 1, 2, 2 }, { 1, 1, 1 },
                                { 1, 1, WIRE_MULTIFD_MAX + 1 } };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        wire_multifd_encode(b, &bad[i]);
        ck_assert(!wire_multifd_decode(b, 16, &out, &err));
        ck_assert_ptr_nonnull(strstr(err->message, "multifd connection"));
        g_clear_error(&err);
    }
    ck_assert_str_eq(wire_type_str(WIRE_MULTIFD), "multifd");
    ck_assert_str_eq(wire_type_str(WIRE_MULTIFD_SYNC), "multifd-sync");
    g_autofree char *f = wire_features_str(WIRE_FEAT_MULTIFD);
    ck_assert_str_eq(f, "multifd");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("codec");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, header_roundtrip_and_rejects);
    tcase_add_test(tc, digest_known_answers);
    tcase_add_test(tc, hello_roundtrip);
    tcase_add_test(tc, encoder_memory_is_bounded_at_every_level);
    tcase_add_test(tc, batch_roundtrip_zstd);
    tcase_add_test(tc, batch_roundtrip_raw);
    tcase_add_test(tc, incompressible_batch_goes_raw);
    tcase_add_test(tc, hostile_batches_are_refused);
    tcase_add_test(tc, random_pages_stay_out_of_the_frame);
    tcase_add_test(tc, level_per_batch_and_its_cost);
    tcase_add_test(tc, digests_catch_flips_and_misplacement);
    tcase_add_test(tc, encoder_digests_zstd);
    tcase_add_test(tc, encoder_digests_raw);
    tcase_add_test(tc, presence_and_zero_pages);
    tcase_add_test(tc, page_runs_roundtrip_and_rejects);
    tcase_add_test(tc, page_runs_worst_fragmentation);
    tcase_add_test(tc, multifd_intro_roundtrip_and_rejects);
    suite_add_tcase(s, tc);
    return test_run(s);
}
