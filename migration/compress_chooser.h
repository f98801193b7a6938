/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Adaptive compression (compress-method auto): which zstd level, or none,
 * each RAM batch gets, so that the link is the bottleneck wherever the
 * encoders can keep up with it.
 *
 * The encoders measure every batch (page_encoder_cost()): the content mix
 * (candidates: data pages that do not look random; random-looking pages;
 * zero pages), and for the option used, the time and output per candidate
 * byte.  The io_uring sender measures the link: bytes over the time it was
 * busy sending them.  Per option, per byte of guest RAM:
 *
 *   wire = headers + random share + candidate share * ratio(option)
 *   cpu  = fixed work + candidate share * seconds per byte(option)
 *
 * and the guest bytes per second an option can move is
 * 1 / max(wire / link, cpu / cores, decode / decoders), where cores are what the encoders may
 * use: at most one per encoder thread, and no more than they use now plus
 * what the host leaves idle.  Compression never takes CPU from whoever
 * else needs it: on loopback that is the receiver and the kernel, which
 * are the link.  Both bounds are linear in the share of batches given to
 * an option, so the best plan mixes at most two options: a share of
 * batches at one, the rest at the other, where the bounds meet.  Batches follow the shares by error
 * diffusion.  Options next to the plan's are probed now and then, at most
 * about 2% of the encoders' time, so that their figures stay current.
 *
 * Decompression is measured on the source too: now and then an encoder
 * decompresses the frame it just made again (page_encoder_measure_decode),
 * and the time per byte is what a destination decoder on a CPU like this
 * one will spend.  The destination says in its hello reply how many
 * decoders it runs (compress_chooser_set_decoders(); an older or silent
 * one is taken to run as many as the source's encoders); their bound joins
 * every plan's, and info migrate shows the rates.
 */
#ifndef HINTMIG_COMPRESS_CHOOSER_H
#define HINTMIG_COMPRESS_CHOOSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/page_codec.h"

/* The options, cheapest first: raw, then zstd levels. */
#define COMPRESS_OPTIONS 8
extern const int compress_ladder[COMPRESS_OPTIONS];

/* What an option is expected to cost, per byte of guest RAM. */
typedef struct CompressEstimate {
    bool known;
    double wire;          /* bytes on the wire */
    double cpu_s;         /* seconds of one encoder thread */
    double dec_s;         /* seconds of one destination decoder (0: not measured) */
} CompressEstimate;

/* Batches at option a for share frac_a of them, the rest at b. */
typedef struct CompressPlan {
    unsigned a, b;
    double frac_a;        /* 1: a alone (then b == a) */
    double rate;          /* guest bytes/s expected */
    double link_use;      /* share of the link the plan uses, 0..1 */
    double cpu_use;       /* share of the encoders the plan uses, 0..1 */
    double dec_use;       /* share of the destination's decoders, 0..1 */
} CompressPlan;

/* What there is to spend. */
typedef struct CompressResources {
    double link;          /* bytes/s; 0: not measured yet, taken as unbounded */
    double threads;       /* encoder threads */
    double cores;         /* CPUs the encoders may use: what they use now
                           * plus what the host leaves idle */
    double decoders;      /* the destination's decoder threads (0: no bound) */
} CompressResources;

/*
 * The best plan over the @n known options of @est given @r.  Option 0
 * (raw) must be known.  Ties go to the cheaper option.
 */
CompressPlan compress_plan(const CompressEstimate *est, unsigned n,
                           const CompressResources *r);

typedef struct CompressChooser CompressChooser;

/*
 * A chooser for @threads encoder threads on a host of @cores CPUs; with
 * @zstd false (the destination cannot decompress zstd) every batch is raw.
 * @link_cap, when not 0, is max-bandwidth: the link's rate until the
 * sender measures it (its first chain, paced as a whole, may take a second).
 */
CompressChooser *compress_chooser_new(bool zstd, unsigned threads, unsigned cores,
                                      uint64_t link_cap);
void compress_chooser_free(CompressChooser *c);

/* The destination's decoder threads, from its hello reply (0: unknown,
 * taken as many as the encoders).  Call before the first batch. */
void compress_chooser_set_decoders(CompressChooser *c, unsigned decoders);

/* The option for the next batch: an index into compress_ladder.  Thread-safe. */
unsigned compress_chooser_next(CompressChooser *c);

/*
 * True when the next batch at @option should also be decompressed and
 * timed (page_encoder_measure_decode): its first few, then one in 16.
 * Thread-safe.
 */
bool compress_chooser_decode_due(CompressChooser *c, unsigned option);

/* What a batch encoded with @option cost (its decode time too, if
 * measured).  Thread-safe. */
void compress_chooser_record(CompressChooser *c, unsigned option,
                             const PageEncodeCost *cost);

/*
 * The sender's counters so far, at @now_ns (monotonic): @bytes sent over
 * @busy_ns spent sending or pacing them (idle time excluded).  Thread-safe.
 */
void compress_chooser_link(CompressChooser *c, uint64_t now_ns, uint64_t bytes,
                           uint64_t busy_ns);

/*
 * At @now_ns (monotonic), at most every 200 ms, samples the host's idle
 * CPU time with @idle_ns (compress_host_idle_ns, or a test's): the cores
 * the encoders may use are those they used since the last sample plus
 * those left idle.  Thread-safe.
 */
void compress_chooser_host(CompressChooser *c, uint64_t now_ns, uint64_t (*idle_ns)(void));

/* The host's idle CPU time so far, all CPUs summed (/proc/stat); 0 if unknown. */
uint64_t compress_host_idle_ns(void);

/* The link rate in bytes/s the plans use (its recent peak); 0 when not measured yet. */
double compress_chooser_link_rate(CompressChooser *c);

/* The current plan, and each option's estimate (@est: COMPRESS_OPTIONS). */
CompressPlan compress_chooser_plan(CompressChooser *c, CompressEstimate *est);

/*
 * For info migrate: @choice, what it chose and why; @mix, batches per
 * option so far.
 */
void compress_chooser_describe(CompressChooser *c, char *choice, size_t choice_len,
                               char *mix, size_t mix_len);

/* "raw" or "zstd N" for @option. */
const char *compress_option_name(unsigned option);

#endif
