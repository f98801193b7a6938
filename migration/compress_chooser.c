/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Adaptive compression: see migration/compress_chooser.h. */
#include <stdio.h>
#include <unistd.h>
#include <glib.h>

#include "migration/compress_chooser.h"
#include "migration/ram.h"
#include "migration/wire.h"

/*
 * Levels measured on the benchmark's text pages (bench/, 2 shared cores):
 * -32 to 4 all compress at 350-500 MB/s a core (-32 to 2.4x, 3 to 4x),
 * 6 and 9 at 55-90 MB/s for 3% less; what pays depends on the link.
 * Decompression runs at 1.2-1.7 GB/s a core at every one of them.
 */
const int compress_ladder[COMPRESS_OPTIONS] = { PAGE_LEVEL_RAW, -32, -8, -3, 1, 3, 6, 9 };

#define INITIAL_SAMPLES 2         /* batches per option before plans trust it */
#define OPTION_WEIGHT 0.125       /* EWMA weight of an option's new batch */
#define MIX_WEIGHT (1.0 / 32)     /* ... of the content mix's */
#define LINK_WEIGHT 0.3           /* ... of a link sample's */
#define LINK_SAMPLE_NS 5000000    /* busy time per link sample, at least */
#define LINK_PEAK_NS 1e9          /* the link's peak loses half in this long */
#define HOST_WEIGHT 0.3           /* ... of a sample of the CPU the encoders may use */
#define HOST_SAMPLE_NS 200000000  /* wall time per such sample: /proc/stat counts ticks */
#define AVAIL_MIN 0.25            /* cores the encoders may always use: on a
                                   * busy host a slow link still pays for it */
#define ENC_KEEP 0.8              /* of the encoders' own CPU, what they may keep */
#define PROBE_EVERY_MIN 32        /* batches between probes, at least */
#define PROBE_BUDGET 0.02         /* share of the encoders' time for probes */
#define MIX_GAIN 0.02             /* a two-option plan must beat one by this */
#define OPTION_GAIN 0.01          /* a dearer option must beat a cheaper one by this */
#define DECODE_EVERY 16           /* batches of an option per decode measured */

typedef struct OptionFigures {
    unsigned samples;             /* batches with candidates measured */
    double ns_per_byte;           /* per candidate byte */
    double ratio;                 /* wire bytes per candidate byte */
    uint64_t batches;             /* batches encoded with it */
    unsigned dec_samples;         /* frames decompressed again and timed */
    double dec_ns_per_byte;       /* per decompressed byte */
} OptionFigures;

struct CompressChooser {
    GMutex lock;
    bool zstd;
    double threads;
    double decoders;              /* the destination's, from its hello reply; 0: unknown */
    OptionFigures opt[COMPRESS_OPTIONS];
    /* the content, per byte of guest RAM (EWMA over batches) */
    bool mix_known;
    double cand_share, random_share, header_share, fixed_ns;
    /* the link */
    double link;                  /* bytes/s, 0 = not measured */
    double link_peak;             /* the fastest it showed lately, decaying */
    uint64_t link_bytes, link_busy_ns, link_t_ns;
    /* the CPU the encoders may use: their own use plus the host's idle */
    double cores, avail;          /* AVAIL_MIN until the first sample */
    bool host_sampled;
    uint64_t enc_cpu_ns;          /* the encoders' CPU time so far */
    uint64_t host_t_ns, host_idle_ns, host_enc_ns;
    /* following the plan */
    double diffusion;
    unsigned since_probe, probe_turn;
    uint64_t probes;
};

const char *compress_option_name(unsigned option)
{
    static const char *const names[COMPRESS_OPTIONS] = {
        "raw", "zstd -32", "zstd -8", "zstd -3", "zstd 1", "zstd 3", "zstd 6", "zstd 9",
    };
    return option < COMPRESS_OPTIONS ? names[option] : "?";
}

/* Seconds per guest byte with share @x of the batches at a and the rest
 * at b: link, encoders, the destination's decoders. */
static void plan_times(const CompressEstimate *a, const CompressEstimate *b, double x,
                       const CompressResources *r, double t[3])
{
    double wire = x * a->wire + (1 - x) * b->wire;
    double cpu = x * a->cpu_s + (1 - x) * b->cpu_s;
    double dec = x * a->dec_s + (1 - x) * b->dec_s;
    t[0] = r->link > 0 ? wire / r->link : 0;
    t[1] = cpu / MIN(r->threads, r->cores);
    t[2] = r->decoders > 0 ? dec / r->decoders : 0;
}

static void plan_try(const CompressEstimate *est, unsigned a, unsigned b, double x,
                     const CompressResources *r, double gain, CompressPlan *best,
                     double *best_t)
{
    double t[3];
    plan_times(&est[a], &est[b], x, r, t);
    double tt = MAX(MAX(t[0], t[1]), t[2]);
    if (tt <= 0 || !(tt < *best_t * (1 - gain))) {
        return;
    }
    *best_t = tt;
    *best = (CompressPlan) {
        .a = a, .b = b, .frac_a = x,
        .rate = 1 / tt, .link_use = t[0] / tt, .cpu_use = t[1] / tt, .dec_use = t[2] / tt,
    };
}

CompressPlan compress_plan(const CompressEstimate *est, unsigned n,
                           const CompressResources *res)
{
    CompressPlan best = { .a = 0, .b = 0, .frac_a = 1 };
    double best_t = G_MAXDOUBLE;
    CompressResources r = *res;

    g_assert(n > 0 && est[0].known);
    r.threads = MAX(r.threads, 1);
    r.cores = MAX(r.cores, 0.05);
    /* Single options, cheapest first: a dearer one must do better. */
    for (unsigned a = 0; a < n; a++) {
        if (est[a].known) {
            plan_try(est, a, a, 1, &r, a ? OPTION_GAIN : 0, &best, &best_t);
        }
    }
    /*
     * Pairs: the time is the larger of the link's and the encoders' linear
     * functions of the share x, so it is least where they cross (or at an
     * end, which the singles covered).  The decoders' bound is checked
     * there too (plan_try), not searched: at 3-4x compression's speed it
     * binds only with far fewer decoders than encoders.
     */
    for (unsigned a = 0; a < n; a++) {
        for (unsigned b = a + 1; b < n && est[a].known; b++) {
            if (!est[b].known || r.link <= 0) {
                continue;
            }
            double t0[3], t1[3];
            plan_times(&est[a], &est[b], 0, &r, t0);
            plan_times(&est[a], &est[b], 1, &r, t1);
            /* t0[0] + x (t1[0] - t0[0]) = t0[1] + x (t1[1] - t0[1]) */
            double denom = (t1[0] - t0[0]) - (t1[1] - t0[1]);
            if (denom == 0) {
                continue;
            }
            double x = (t0[1] - t0[0]) / denom;
            if (x > 0 && x < 1) {
                plan_try(est, a, b, x, &r, MIX_GAIN, &best, &best_t);
            }
        }
    }
    return best;
}

uint64_t compress_host_idle_ns(void)
{
    g_autofree char *text = NULL;
    unsigned long long user, nice, sys, idle, iowait;

    /* "cpu  user nice system idle iowait ...", all CPUs, in clock ticks */
    if (!g_file_get_contents("/proc/stat", &text, NULL, NULL) ||
        sscanf(text, "cpu %llu %llu %llu %llu %llu", &user, &nice, &sys, &idle,
               &iowait) != 5) {
        return 0;
    }
    return (idle + iowait) * (1000000000ull / sysconf(_SC_CLK_TCK));
}

CompressChooser *compress_chooser_new(bool zstd, unsigned threads, unsigned cores,
                                      uint64_t link_cap)
{
    CompressChooser *c = g_new0(CompressChooser, 1);
    g_mutex_init(&c->lock);
    c->zstd = zstd;
    c->threads = MAX(threads, 1u);
    c->cores = MAX(cores, 1u);
    c->link = c->link_peak = link_cap;
    c->avail = AVAIL_MIN;             /* until the host is sampled */
    return c;
}

void compress_chooser_set_decoders(CompressChooser *c, unsigned decoders)
{
    g_mutex_lock(&c->lock);
    c->decoders = decoders;
    g_mutex_unlock(&c->lock);
}

void compress_chooser_free(CompressChooser *c)
{
    if (c) {
        g_mutex_clear(&c->lock);
        g_free(c);
    }
}

static void estimates_locked(CompressChooser *c, CompressEstimate *est)
{
    for (unsigned i = 0; i < COMPRESS_OPTIONS; i++) {
        const OptionFigures *o = &c->opt[i];
        est[i].known = c->mix_known && o->samples >= INITIAL_SAMPLES &&
                       (c->zstd || i == 0);
        est[i].wire = c->header_share + c->random_share + c->cand_share * o->ratio;
        est[i].cpu_s = (c->fixed_ns + c->cand_share * o->ns_per_byte) * 1e-9;
        est[i].dec_s = c->cand_share * o->dec_ns_per_byte * 1e-9;
    }
}

static CompressPlan plan_locked(CompressChooser *c, CompressEstimate *est)
{
    estimates_locked(c, est);
    if (!est[0].known) {
        return (CompressPlan) { .frac_a = 1 };
    }
    CompressResources r = {
        .link = c->link_peak, .threads = c->threads,
        .cores = c->avail, .decoders = c->decoders ? c->decoders : c->threads,
    };
    return compress_plan(est, COMPRESS_OPTIONS, &r);
}

/*
 * Every few dozen batches, one at an option next to the plan's, or raw
 * (the fallback, and the cheapest to probe), at most ~2% of the time.
 */
static bool probe_locked(CompressChooser *c, const CompressPlan *plan,
                         const CompressEstimate *est, unsigned *option)
{
    unsigned near[5], n = 0;
    int cand[5] = { (int)plan->a - 1, (int)plan->a + 1, (int)plan->b - 1, (int)plan->b + 1, 0 };
    for (unsigned i = 0; i < 5; i++) {
        bool seen = false;
        for (unsigned j = 0; j < n; j++) {
            seen |= (int)near[j] == cand[i];
        }
        if (seen) {
            continue;
        }
        if (cand[i] >= 0 && cand[i] < COMPRESS_OPTIONS && (unsigned)cand[i] != plan->a &&
            (unsigned)cand[i] != plan->b) {
            near[n++] = cand[i];
        }
    }
    if (!n) {
        return false;
    }
    unsigned target = near[c->probe_turn % n];
    double plan_cpu = plan->frac_a * est[plan->a].cpu_s +
                      (1 - plan->frac_a) * est[plan->b].cpu_s;
    double every = PROBE_EVERY_MIN;
    if (plan_cpu > 0) {
        every = MAX(every, est[target].cpu_s / plan_cpu / PROBE_BUDGET);
    }
    if (++c->since_probe < every) {
        return false;
    }
    c->since_probe = 0;
    c->probe_turn++;
    c->probes++;
    *option = target;
    return true;
}

unsigned compress_chooser_next(CompressChooser *c)
{
    CompressEstimate est[COMPRESS_OPTIONS];
    unsigned option;

    g_mutex_lock(&c->lock);
    if (!c->zstd) {
        g_mutex_unlock(&c->lock);
        return 0;
    }
    /* Every option first gets a few batches of its own. */
    for (unsigned i = 0; i < COMPRESS_OPTIONS; i++) {
        if (c->opt[i].samples < INITIAL_SAMPLES) {
            g_mutex_unlock(&c->lock);
            return i;
        }
    }
    CompressPlan plan = plan_locked(c, est);
    if (!probe_locked(c, &plan, est, &option)) {
        c->diffusion += plan.frac_a;
        if (c->diffusion >= 1) {
            c->diffusion -= 1;
            option = plan.a;
        } else {
            option = plan.b;
        }
    }
    g_mutex_unlock(&c->lock);
    return option;
}

static double ewma(double old, double sample, double weight, unsigned samples)
{
    /* Plain mean over the first few, so one odd batch does not set the start. */
    double w = samples < 1 / weight ? 1.0 / (samples + 1) : weight;
    return old + w * (sample - old);
}

void compress_chooser_record(CompressChooser *c, unsigned option,
                             const PageEncodeCost *cost)
{
    if (!cost->pages || option >= COMPRESS_OPTIONS) {
        return;
    }
    double guest = (double)cost->pages * HM_PAGE_SIZE;
    double cand = (double)cost->candidates * HM_PAGE_SIZE;
    double fixed = cost->total_ns > cost->candidate_ns ? cost->total_ns - cost->candidate_ns : 0;
    double header = WIRE_HEADER_SIZE + PAGE_BATCH_HEADER + 8.0 * cost->pages;

    g_mutex_lock(&c->lock);
    OptionFigures *o = &c->opt[option];
    o->batches++;
    c->enc_cpu_ns += cost->total_ns;
    unsigned n = c->mix_known ? (unsigned)(1 / MIX_WEIGHT) : 0;
    c->cand_share = ewma(c->cand_share, cand / guest, MIX_WEIGHT, n);
    c->random_share = ewma(c->random_share, cost->random * HM_PAGE_SIZE / guest,
                           MIX_WEIGHT, n);
    c->header_share = ewma(c->header_share, header / guest, MIX_WEIGHT, n);
    c->fixed_ns = ewma(c->fixed_ns, fixed / guest, MIX_WEIGHT, n);
    c->mix_known = true;
    if (cost->candidates) {
        /* A batch can take many times its due (a page fault storm, a
         * preempted clock read): one such sample counts as at most 4x the
         * estimate, or an option nobody picks any more keeps it for good. */
        double ns = cost->candidate_ns / cand;
        if (o->samples >= INITIAL_SAMPLES) {
            ns = MIN(ns, 4 * o->ns_per_byte);
        }
        o->ns_per_byte = ewma(o->ns_per_byte, ns, OPTION_WEIGHT, o->samples);
        o->ratio = ewma(o->ratio, cost->candidate_out / cand, OPTION_WEIGHT, o->samples);
        o->samples++;
    }
    if (cost->decode_ns && cost->decoded_pages) {
        double ns = cost->decode_ns / ((double)cost->decoded_pages * HM_PAGE_SIZE);
        if (o->dec_samples >= INITIAL_SAMPLES) {
            ns = MIN(ns, 4 * o->dec_ns_per_byte);     /* as above */
        }
        o->dec_ns_per_byte = ewma(o->dec_ns_per_byte, ns, OPTION_WEIGHT, o->dec_samples);
        o->dec_samples++;
    }
    g_mutex_unlock(&c->lock);
}

bool compress_chooser_decode_due(CompressChooser *c, unsigned option)
{
    if (!option || option >= COMPRESS_OPTIONS) {
        return false;             /* raw batches decode by copying */
    }
    g_mutex_lock(&c->lock);
    const OptionFigures *o = &c->opt[option];
    bool due = o->dec_samples < INITIAL_SAMPLES || o->batches % DECODE_EVERY == 0;
    g_mutex_unlock(&c->lock);
    return due;
}

void compress_chooser_link(CompressChooser *c, uint64_t now_ns, uint64_t bytes,
                           uint64_t busy_ns)
{
    g_mutex_lock(&c->lock);
    if (busy_ns >= c->link_busy_ns + LINK_SAMPLE_NS && bytes > c->link_bytes) {
        double sample = (bytes - c->link_bytes) * 1e9 / (busy_ns - c->link_busy_ns);
        c->link = c->link > 0 ? c->link + LINK_WEIGHT * (sample - c->link) : sample;
        /*
         * The link counts as fast as it lately showed itself to be: one
         * made of this host's CPU (loopback, veth: the receiver and the
         * kernel) slows down while the encoders take that CPU, which would
         * otherwise argue for compressing more.
         */
        double decay = c->link_t_ns ? 1 / (1 + (double)(now_ns - c->link_t_ns) / LINK_PEAK_NS)
                                    : 0;
        c->link_peak = MAX(c->link, c->link_peak * decay);
        c->link_t_ns = now_ns;
        c->link_bytes = bytes;
        c->link_busy_ns = busy_ns;
    }
    g_mutex_unlock(&c->lock);
}

void compress_chooser_host(CompressChooser *c, uint64_t now_ns, uint64_t (*idle_ns)(void))
{
    g_mutex_lock(&c->lock);
    if (c->host_t_ns && now_ns < c->host_t_ns + HOST_SAMPLE_NS) {
        g_mutex_unlock(&c->lock);
        return;
    }
    uint64_t idle = idle_ns();
    if (!idle) {
        c->avail = c->cores;          /* no /proc/stat: trust the encoders' threads */
    } else if (c->host_t_ns && idle >= c->host_idle_ns) {
        double wall = now_ns - c->host_t_ns;
        /*
         * A fifth of what the encoders use is left out, so that on a host
         * with no idle CPU their share shrinks back instead of creeping up
         * by probes and rounding: there the CPU they take is the
         * receiver's and the kernel's, which on loopback are the link.
         */
        double sample = ((idle - c->host_idle_ns) +
                         ENC_KEEP * (c->enc_cpu_ns - c->host_enc_ns)) / wall;
        sample = MIN(sample, c->cores);
        sample = MAX(sample, AVAIL_MIN);
        c->avail = c->host_sampled ? c->avail + HOST_WEIGHT * (sample - c->avail) : sample;
        c->host_sampled = true;
    }
    c->host_t_ns = now_ns;
    c->host_idle_ns = idle;
    c->host_enc_ns = c->enc_cpu_ns;
    g_mutex_unlock(&c->lock);
}

double compress_chooser_link_rate(CompressChooser *c)
{
    g_mutex_lock(&c->lock);
    double l = c->link_peak;
    g_mutex_unlock(&c->lock);
    return l;
}

CompressPlan compress_chooser_plan(CompressChooser *c, CompressEstimate *est)
{
    g_mutex_lock(&c->lock);
    CompressPlan plan = plan_locked(c, est);
    g_mutex_unlock(&c->lock);
    return plan;
}

static void append_rate(GString *s, double bytes_per_s)
{
    if (bytes_per_s >= 1e9) {
        g_string_append_printf(s, "%.2f GB/s", bytes_per_s / 1e9);
    } else {
        g_string_append_printf(s, "%.0f MB/s", bytes_per_s / 1e6);
    }
}

/* "zstd -3: link 3.05 GB/s, encoders 0.71 GB/s, decoders 2.9 GB/s" of guest RAM */
static void append_option(GString *s, const CompressEstimate *e, unsigned option,
                          double link, double cores, double decoders)
{
    g_string_append_printf(s, "%s: link ", compress_option_name(option));
    if (link > 0) {
        append_rate(s, link / e->wire);
    } else {
        g_string_append(s, "?");
    }
    g_string_append(s, ", encoders ");
    append_rate(s, cores / e->cpu_s);
    if (e->dec_s > 0) {
        g_string_append(s, ", decoders ");
        append_rate(s, decoders / e->dec_s);
    }
}

void compress_chooser_describe(CompressChooser *c, char *choice, size_t choice_len,
                               char *mix, size_t mix_len)
{
    CompressEstimate est[COMPRESS_OPTIONS];
    g_autoptr(GString) s = g_string_new("auto: ");
    g_autoptr(GString) m = g_string_new("");

    g_mutex_lock(&c->lock);
    CompressPlan plan = plan_locked(c, est);
    if (!c->zstd) {
        g_string_append(s, "raw (the destination cannot decompress zstd)");
    } else if (!est[0].known) {
        g_string_append(s, "measuring");
    } else {
        g_string_append(s, compress_option_name(plan.a));
        if (plan.a != plan.b) {
            g_string_append_printf(s, " %.0f%%, %s %.0f%% of batches",
                                   100 * plan.frac_a, compress_option_name(plan.b),
                                   100 * (1 - plan.frac_a));
        }
        const char *why = c->link <= 0 ? "the link not measured yet"
                          : plan.a == 0 && plan.b == 0
                          ? "no level compresses faster than the link sends raw "
                            "with the CPU free for the encoders"
                          : plan.link_use > 0.99 && plan.cpu_use > 0.99
                          ? "the link and the encoders both busy"
                          : plan.link_use > 0.99 ? "the link is the bottleneck"
                          : plan.dec_use > 0.99 ? "the destination's decoders are the bottleneck"
                          : "the encoders are the bottleneck";
        g_string_append_printf(s, ", %s (link ", why);
        if (c->link_peak > 0) {
            append_rate(s, c->link_peak);
        } else {
            g_string_append(s, "?");
        }
        double cores = MIN(c->threads, c->avail);
        g_string_append_printf(s, ", encoders %.1f of %.0f cores free for them; "
                               "guest RAM per second ", cores, c->cores);
        append_option(s, &est[plan.a], plan.a, c->link_peak, cores, c->threads);
        if (plan.b != plan.a) {
            g_string_append(s, "; ");
            append_option(s, &est[plan.b], plan.b, c->link_peak, cores, c->threads);
        }
        if (plan.a != 0 && plan.b != 0 && est[0].known) {
            g_string_append(s, "; ");
            append_option(s, &est[0], 0, c->link_peak, cores, c->threads);
        }
        g_string_append(s, ")");
    }
    for (unsigned i = 0; i < COMPRESS_OPTIONS; i++) {
        if (c->opt[i].batches) {
            g_string_append_printf(m, "%s%s %" G_GUINT64_FORMAT, m->len ? ", " : "",
                                   compress_option_name(i), c->opt[i].batches);
        }
    }
    g_string_append_printf(m, " (probes %" G_GUINT64_FORMAT ")", c->probes);
    g_mutex_unlock(&c->lock);
    g_strlcpy(choice, s->str, choice_len);
    g_strlcpy(mix, m->str, mix_len);
}
