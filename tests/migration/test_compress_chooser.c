/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Adaptive compression's decisions (migration/compress_chooser.c) given
 * measurements injected by the test: no timing is asserted anywhere.
 */
#include <string.h>

#include "migration/compress_chooser.h"
#include "migration/ram.h"
#include "test_util.h"

/*
 * Per option, as measured on the benchmark's text pages: wire bytes and
 * encoder nanoseconds per candidate byte.
 */
static const double ratio[COMPRESS_OPTIONS] = { 1.0, 0.40, 0.35, 0.29, 0.26, 0.25, 0.244, 0.238 };
static const double ns_per_byte[COMPRESS_OPTIONS] = { 0.06, 2.0, 2.6, 2.8, 2.85, 3.1, 11.6, 18.0 };

/* The benchmark's mix per guest byte: half candidates, a quarter random. */
#define CAND 0.5
#define RANDOM 0.25
#define FIXED_NS 0.1

static void estimates(CompressEstimate *est)
{
    for (unsigned i = 0; i < COMPRESS_OPTIONS; i++) {
        est[i] = (CompressEstimate) {
            .known = true,
            .wire = 0.002 + RANDOM + CAND * ratio[i],
            .cpu_s = (FIXED_NS + CAND * ns_per_byte[i]) * 1e-9,
        };
    }
}

/* Decoders that cannot keep up rule a level out, and the plan says why. */
START_TEST(slow_decoders_bound_the_plan)
{
    CompressEstimate est[COMPRESS_OPTIONS];
    estimates(est);
    CompressResources r = { .link = 125e6, .threads = 2, .cores = 2, .decoders = 2 };
    CompressPlan fast = compress_plan(est, COMPRESS_OPTIONS, &r);
    ck_assert_uint_ge(MIN(fast.a, fast.b), 4);      /* as a_slow_link_gets_... */
    /* Every zstd level now decodes at 20 MB/s a decoder: 40 MB/s of
     * candidates is less than raw moves over this link. */
    for (unsigned i = 1; i < COMPRESS_OPTIONS; i++) {
        est[i].dec_s = CAND / 20e6;
    }
    CompressPlan slow = compress_plan(est, COMPRESS_OPTIONS, &r);
    ck_assert_uint_eq(slow.a, 0);
    ck_assert_uint_eq(slow.b, 0);
    /* At 50 MB/s a decoder, two decoders move 200 MB/s of guest RAM at a
     * level: less than a level over the link (about 330), more than raw
     * (166).  Compressing still pays, mixed with raw so that the decoders
     * keep up, and the decoders are what bounds it. */
    for (unsigned i = 1; i < COMPRESS_OPTIONS; i++) {
        est[i].dec_s = CAND / 50e6;
    }
    CompressPlan mid = compress_plan(est, COMPRESS_OPTIONS, &r);
    ck_assert(mid.a != 0 || mid.b != 0);
    ck_assert(mid.rate > 166e6);
    ck_assert(mid.dec_use > 0.99);
    ck_assert(mid.rate < fast.rate);
    /* Unmeasured (0) or no bound given: as before. */
    r.decoders = 0;
    CompressPlan none = compress_plan(est, COMPRESS_OPTIONS, &r);
    ck_assert_uint_eq(none.a, fast.a);
    ck_assert(none.rate == fast.rate);
}
END_TEST

START_TEST(raw_when_the_link_outruns_every_level)
{
    CompressEstimate est[COMPRESS_OPTIONS];
    estimates(est);
    CompressResources r = { .link = 10e9, .threads = 2, .cores = 2 };
    CompressPlan p = compress_plan(est, COMPRESS_OPTIONS, &r);
    ck_assert_uint_eq(p.a, 0);
    ck_assert_uint_eq(p.b, 0);
    ck_assert(p.frac_a == 1);
    /* 10 GB/s over 0.752 wire bytes a guest byte */
    ck_assert(p.rate > 13e9 && p.rate < 13.5e9);
}
END_TEST

START_TEST(not_measured_link_means_raw)
{
    CompressEstimate est[COMPRESS_OPTIONS];
    estimates(est);
    CompressResources r = { .link = 0, .threads = 2, .cores = 2 };
    CompressPlan p = compress_plan(est, COMPRESS_OPTIONS, &r);
    ck_assert_uint_eq(p.a, 0);
    ck_assert_uint_eq(p.b, 0);
}
END_TEST

START_TEST(a_slow_link_gets_a_high_ratio_level)
{
    CompressEstimate est[COMPRESS_OPTIONS];
    estimates(est);
    /* 1 Gbit/s: every level but the slowest keeps up with the link */
    CompressResources r = { .link = 125e6, .threads = 2, .cores = 2 };
    CompressPlan p = compress_plan(est, COMPRESS_OPTIONS, &r);
    ck_assert_msg(p.a != 0 && p.b != 0, "%s / %s", compress_option_name(p.a),
                  compress_option_name(p.b));
    /* at least zstd 1's ratio, and the link is what limits it */
    ck_assert_uint_ge(MIN(p.a, p.b), 4);
    ck_assert(p.link_use > 0.99);
    ck_assert(p.rate > 125e6 / est[4].wire);
    /* 10 Mbit/s: even zstd 9 keeps up, and it has the best ratio */
    r.link = 1.25e6;
    p = compress_plan(est, COMPRESS_OPTIONS, &r);
    ck_assert_uint_eq(p.a, COMPRESS_OPTIONS - 1);
    ck_assert_uint_eq(p.b, COMPRESS_OPTIONS - 1);
}
END_TEST

START_TEST(between_the_two_both_are_busy)
{
    CompressEstimate est[COMPRESS_OPTIONS];
    estimates(est);
    /* 10 Gbit/s: raw alone is link-bound, any level alone CPU-bound */
    CompressResources r = { .link = 1.25e9, .threads = 2, .cores = 2 };
    CompressPlan p = compress_plan(est, COMPRESS_OPTIONS, &r);
    ck_assert(p.a != p.b);
    ck_assert(p.a == 0 || p.b == 0);
    ck_assert(p.frac_a > 0 && p.frac_a < 1);
    ck_assert(p.link_use > 0.99 && p.cpu_use > 0.99);
    double raw_alone = 1.25e9 / est[0].wire;
    ck_assert_msg(p.rate > raw_alone * 1.2, "%g vs %g", p.rate, raw_alone);
}
END_TEST

START_TEST(no_idle_cpu_means_no_compression)
{
    CompressEstimate est[COMPRESS_OPTIONS];
    estimates(est);
    /* A slow link, but the host leaves the encoders a tenth of a core. */
    CompressResources r = { .link = 500e6, .threads = 2, .cores = 0.1 };
    CompressPlan p = compress_plan(est, COMPRESS_OPTIONS, &r);
    ck_assert_uint_eq(p.a, 0);
    ck_assert_uint_eq(p.b, 0);
}
END_TEST

/* ---- the chooser, fed batches and link samples ---- */

static uint64_t fake_idle;
static uint64_t idle_fn(void)
{
    return fake_idle;
}

typedef struct Feed {
    uint64_t now, bytes, busy;
    double link;            /* bytes/s the fake link takes */
    double idle_cores;      /* cores the fake host leaves idle */
    double dec_ns;          /* decoder ns per candidate byte (0: never measured) */
    uint64_t per_option[COMPRESS_OPTIONS];
} Feed;

/* Encodes @n batches of the benchmark's mix through @c. */
static void feed(CompressChooser *c, Feed *f, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        unsigned o = compress_chooser_next(c);
        ck_assert_uint_lt(o, COMPRESS_OPTIONS);
        f->per_option[o]++;
        double cand = CAND * PAGE_BATCH_MAX * HM_PAGE_SIZE;
        PageEncodeCost cost = {
            .pages = PAGE_BATCH_MAX,
            .candidates = CAND * PAGE_BATCH_MAX,
            .random = RANDOM * PAGE_BATCH_MAX,
            .candidate_out = cand * ratio[o],
            .candidate_ns = cand * ns_per_byte[o],
        };
        cost.total_ns = cost.candidate_ns + FIXED_NS * PAGE_BATCH_MAX * HM_PAGE_SIZE;
        if (f->dec_ns && o > 0 && compress_chooser_decode_due(c, o)) {
            cost.decode_ns = cand * f->dec_ns;
            cost.decoded_pages = cost.candidates;
        }
        compress_chooser_record(c, o, &cost);
        double wire = cost.candidate_out + RANDOM * PAGE_BATCH_MAX * HM_PAGE_SIZE + 1100;
        f->bytes += wire;
        f->busy += wire / f->link * 1e9;
        /* the link's time or the encoders', and at least 200 us: the host
         * is sampled every 200 ms of it */
        f->now += MAX(MAX(wire / f->link * 1e9, cost.total_ns / 2.0), 200000);
        fake_idle = 1 + f->idle_cores * f->now;   /* 0 would mean unknown */
        compress_chooser_link(c, f->now, f->bytes, f->busy);
        compress_chooser_host(c, f->now, idle_fn);
    }
}

static void run_chooser(double link, double idle_cores, unsigned expect_min_option,
                        bool expect_raw)
{
    CompressChooser *c = compress_chooser_new(true, 2, 2, 0);
    Feed f = { .now = 1, .link = link, .idle_cores = idle_cores };
    for (unsigned k = 0; k < 40; k++) {
        feed(c, &f, 50);
    }
    /* What it does once it has learnt: the next 1000 batches. */
    memset(f.per_option, 0, sizeof(f.per_option));
    for (unsigned k = 0; k < 20; k++) {
        feed(c, &f, 50);
    }
    char choice[512], mix[256];
    compress_chooser_describe(c, choice, sizeof(choice), mix, sizeof(mix));
    uint64_t raw = f.per_option[0], high = 0;
    for (unsigned o = expect_min_option; o < COMPRESS_OPTIONS; o++) {
        high += f.per_option[o];
    }
    if (expect_raw) {
        /* raw, but for the probes of its neighbour (~2% of the time) */
        ck_assert_msg(raw >= 950, "raw %" G_GUINT64_FORMAT ": %s / %s", raw, choice, mix);
        ck_assert_msg(g_str_has_prefix(choice, "auto: raw, no level compresses faster"),
                      "%s", choice);
    } else {
        ck_assert_msg(high >= 950, "%" G_GUINT64_FORMAT " at option %u or above: %s / %s",
                      high, expect_min_option, choice, mix);
        ck_assert_msg(!g_str_has_prefix(choice, "auto: raw"), "%s", choice);
        ck_assert_msg(strstr(choice, "the link is the bottleneck"), "%s", choice);
    }
    ck_assert_msg(strstr(mix, "(probes "), "%s", mix);
    compress_chooser_free(c);
}

/* What the chooser says once it has learnt, with @decoders at the destination. */
static void choose_with_decoders(unsigned decoders, char *choice, size_t cap)
{
    CompressChooser *c = compress_chooser_new(true, 2, 2, 0);
    char mix[256];
    compress_chooser_set_decoders(c, decoders);
    Feed f = { .now = 1, .link = 125e6, .idle_cores = 1.5, .dec_ns = 10 };
    for (unsigned k = 0; k < 40; k++) {
        feed(c, &f, 50);
    }
    compress_chooser_describe(c, choice, cap, mix, sizeof(mix));
    compress_chooser_free(c);
}

/*
 * Decoders that take 10 ns a byte: one of them cannot keep up with what a
 * slow link carries compressed, eight can.  The count is the destination's
 * (its hello reply), not the source's encoders (2 here).
 */
START_TEST(decoders_from_the_hello_reply)
{
    char one[512], eight[512];
    choose_with_decoders(1, one, sizeof(one));
    choose_with_decoders(8, eight, sizeof(eight));
    ck_assert_msg(strstr(one, "the destination's decoders are the bottleneck"), "%s", one);
    ck_assert_msg(!strstr(eight, "decoders are the bottleneck"), "%s", eight);
}
END_TEST

START_TEST(chooser_goes_raw_on_a_fast_link)
{
    run_chooser(20e9, 2, 0, true);
}
END_TEST

START_TEST(chooser_compresses_on_a_slow_link)
{
    run_chooser(125e6, 1.5, 4, false);
}
END_TEST

START_TEST(chooser_stays_raw_without_idle_cpu)
{
    /*
     * The host is busy: the encoders keep what they use (raw's little) and
     * a quarter of a core, which does not pay against 1.5 GB/s.
     */
    run_chooser(1.5e9, 0, 0, true);
}
END_TEST

START_TEST(chooser_without_zstd_is_raw)
{
    CompressChooser *c = compress_chooser_new(false, 2, 2, 0);
    Feed f = { .now = 1, .link = 1e6, .idle_cores = 2 };
    feed(c, &f, 200);
    ck_assert_uint_eq(f.per_option[0], 200);
    char choice[512], mix[256];
    compress_chooser_describe(c, choice, sizeof(choice), mix, sizeof(mix));
    ck_assert_str_eq(choice, "auto: raw (the destination cannot decompress zstd)");
    ck_assert_str_eq(mix, "raw 200 (probes 0)");
    compress_chooser_free(c);
}
END_TEST

/* One raw batch that took 1000x its due does not keep the chooser off raw. */
START_TEST(an_odd_raw_batch_does_not_stick)
{
    CompressChooser *c = compress_chooser_new(true, 2, 2, 0);
    Feed f = { .now = 1, .link = 20e9, .idle_cores = 2 };
    feed(c, &f, 1000);
    for (unsigned k = 0; k < 3; k++) {
        PageEncodeCost odd = {
            .pages = PAGE_BATCH_MAX, .candidates = CAND * PAGE_BATCH_MAX,
            .random = RANDOM * PAGE_BATCH_MAX,
            .candidate_out = CAND * PAGE_BATCH_MAX * HM_PAGE_SIZE,
            .candidate_ns = 1000 * ns_per_byte[0] * CAND * PAGE_BATCH_MAX * HM_PAGE_SIZE,
        };
        odd.total_ns = odd.candidate_ns;
        compress_chooser_record(c, 0, &odd);
    }
    feed(c, &f, 2000);
    memset(f.per_option, 0, sizeof(f.per_option));
    feed(c, &f, 1000);
    char choice[512], mix[256];
    compress_chooser_describe(c, choice, sizeof(choice), mix, sizeof(mix));
    ck_assert_msg(f.per_option[0] >= 950, "%s / %s", choice, mix);
    compress_chooser_free(c);
}
END_TEST

/* Decompression is measured on a level's first batches, then 1 in 16, and
 * shows in the plan's description. */
START_TEST(decode_measured_now_and_then)
{
    CompressChooser *c = compress_chooser_new(true, 2, 2, 0);
    double cand = CAND * PAGE_BATCH_MAX * HM_PAGE_SIZE;
    ck_assert(!compress_chooser_decode_due(c, 0));          /* raw: never */
    unsigned due = 0;
    for (unsigned k = 0; k < 64; k++) {
        bool d = compress_chooser_decode_due(c, 1);
        due += d;
        PageEncodeCost cost = {
            .pages = PAGE_BATCH_MAX, .candidates = CAND * PAGE_BATCH_MAX,
            .random = RANDOM * PAGE_BATCH_MAX, .candidate_out = cand * ratio[1],
            .candidate_ns = cand * ns_per_byte[1],
            .decode_ns = d ? cand * 0.7 : 0,                 /* 1.4 GB/s */
            .decoded_pages = d ? CAND * PAGE_BATCH_MAX : 0,
        };
        cost.total_ns = cost.candidate_ns;
        compress_chooser_record(c, 1, &cost);
    }
    /* 2 first, then batches 16, 32 and 48 */
    ck_assert_uint_eq(due, 5);
    CompressEstimate est[COMPRESS_OPTIONS];
    compress_chooser_plan(c, est);
    ck_assert(est[1].dec_s > 0.99 * CAND * 0.7e-9 && est[1].dec_s < 1.01 * CAND * 0.7e-9);
    ck_assert(est[2].dec_s == 0);                           /* never measured */
    compress_chooser_free(c);
}
END_TEST

/* max-bandwidth stands for the link until the sender has measured it. */
START_TEST(max_bandwidth_is_the_link_until_measured)
{
    CompressChooser *c = compress_chooser_new(true, 2, 2, 16 << 20);
    ck_assert(compress_chooser_link_rate(c) == 16 << 20);
    double cand = CAND * PAGE_BATCH_MAX * HM_PAGE_SIZE;
    for (unsigned o = 0; o < COMPRESS_OPTIONS; o++) {
        for (unsigned k = 0; k < 2; k++) {
            PageEncodeCost cost = {
                .pages = PAGE_BATCH_MAX, .candidates = CAND * PAGE_BATCH_MAX,
                .random = RANDOM * PAGE_BATCH_MAX, .candidate_out = cand * ratio[o],
                .candidate_ns = cand * ns_per_byte[o],
            };
            cost.total_ns = cost.candidate_ns + FIXED_NS * PAGE_BATCH_MAX * HM_PAGE_SIZE;
            compress_chooser_record(c, o, &cost);
        }
    }
    /* no link sample, no host sample: a quarter of a core and 16 MiB/s */
    CompressEstimate est[COMPRESS_OPTIONS];
    CompressPlan p = compress_chooser_plan(c, est);
    ck_assert_msg(p.a != 0 && p.b != 0, "%s / %s", compress_option_name(p.a),
                  compress_option_name(p.b));
    ck_assert(p.link_use > 0.99);
    compress_chooser_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("compress_chooser");
    TCase *tc = tcase_create("plan");
    tcase_add_test(tc, slow_decoders_bound_the_plan);
    tcase_add_test(tc, raw_when_the_link_outruns_every_level);
    tcase_add_test(tc, decode_measured_now_and_then);
    tcase_add_test(tc, not_measured_link_means_raw);
    tcase_add_test(tc, a_slow_link_gets_a_high_ratio_level);
    tcase_add_test(tc, between_the_two_both_are_busy);
    tcase_add_test(tc, no_idle_cpu_means_no_compression);
    suite_add_tcase(s, tc);
    TCase *ch = tcase_create("chooser");
    tcase_add_test(ch, chooser_goes_raw_on_a_fast_link);
    tcase_add_test(ch, decoders_from_the_hello_reply);
    tcase_add_test(ch, chooser_compresses_on_a_slow_link);
    tcase_add_test(ch, chooser_stays_raw_without_idle_cpu);
    tcase_add_test(ch, chooser_without_zstd_is_raw);
    tcase_add_test(ch, max_bandwidth_is_the_link_until_measured);
    tcase_add_test(ch, an_odd_raw_batch_does_not_stick);
    suite_add_tcase(s, ch);
    return test_run(s);
}
