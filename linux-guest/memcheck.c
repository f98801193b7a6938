// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * memcheck: the Linux test guest's own memory check, run by linux-guest/init
 * as the guest's only workload.  It fills anonymous memory with content
 * derived from (page index, generation), gives part of it back to the
 * kernel so that free guest pages hold stale data (the fill-free shape that
 * free page hints report), keeps rewriting a working set with bumped
 * generations, and verifies every page it holds at an interval, printing
 * one machine-readable verdict line per pass on the serial console.  A
 * migration that loses, misplaces or mixes up a page in use shows up as a
 * FAIL verdict in the guest itself, whatever the host claims.
 *
 * Built statically (cc -static -std=c11 -D_GNU_SOURCE) by build.sh; no
 * library beyond libc.  Run with --help for the options.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MC_MIB (1024ull * 1024ull)

enum mc_release {
	MC_RELEASE_MUNMAP,
	MC_RELEASE_DONTNEED,
};

struct mc_opts {
	uint64_t fill;          /* bytes filled at start */
	uint64_t keep;          /* bytes held and verified after the free */
	uint64_t wss;           /* bytes of the held part that are rewritten */
	uint64_t rate;          /* bytes rewritten per second; 0: none */
	uint64_t interval_ms;   /* time between verification passes */
	uint64_t passes;        /* stop after this many passes; 0: never */
	uint64_t seed;          /* mixed into every word: tells boots apart */
	bool selftest;          /* corrupt a byte after the first verdict */
	enum mc_release release;
	bool keep_set, wss_set; /* given; else clamped to what holds them */
};

struct mc_state {
	struct mc_opts o;
	size_t page_size;
	size_t words;           /* 64-bit words per page */
	unsigned char *mem;     /* the held pages, first of the fill */
	uint64_t held_pages;
	uint64_t wss_pages;
	uint32_t *gen;          /* each held page's generation, >= 1 */
	uint32_t gen_max;
	uint64_t corrupt_page;  /* UINT64_MAX: none; never rewritten */
	uint64_t rng;
};

struct mc_fail {
	uint64_t bad_pages;
	uint64_t page;          /* first bad page */
	uint64_t word;          /* its first bad word */
	uint64_t expected;
	uint64_t got;
};

/* splitmix64's finalizer: a cheap mix with good avalanche. */
static inline uint64_t mc_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/*
 * Word w of page p at generation g is mc_base(p, g) + w: one mix per page
 * and an add per word, so filling and checking run near memory speed even
 * under TCG, and a page carrying another page's or another generation's
 * content differs in every word.
 */
static inline uint64_t mc_base(uint64_t seed, uint64_t page, uint32_t gen)
{
	return mc_mix(seed ^ (page * 0x9e3779b97f4a7c15ull) ^
		      ((uint64_t)gen << 40 | gen));
}

static void mc_write_page(const struct mc_state *s, unsigned char *p,
			  uint64_t page, uint32_t gen)
{
	uint64_t *w = (uint64_t *)(void *)p;
	uint64_t base = mc_base(s->o.seed, page, gen);

	for (size_t i = 0; i < s->words; i++)
		w[i] = base + i;
}

/* Returns the index of the first bad word, or SIZE_MAX if the page is good. */
static size_t mc_check_page(const struct mc_state *s, const unsigned char *p,
			    uint64_t page, uint32_t gen)
{
	const uint64_t *w = (const uint64_t *)(const void *)p;
	uint64_t base = mc_base(s->o.seed, page, gen);
	uint64_t diff = 0;

	/* Branch-free first: the common case is a good page. */
	for (size_t i = 0; i < s->words; i++)
		diff |= w[i] ^ (base + i);
	if (!diff)
		return SIZE_MAX;
	for (size_t i = 0; i < s->words; i++)
		if (w[i] != base + i)
			return i;
	return SIZE_MAX;
}

static uint64_t mc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void mc_sleep_ns(uint64_t ns)
{
	struct timespec ts = {
		.tv_sec = (time_t)(ns / 1000000000ull),
		.tv_nsec = (long)(ns % 1000000000ull),
	};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static uint64_t mc_rand(struct mc_state *s)
{
	/* xorshift64: the pick of the next working-set page */
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return s->rng;
}

/* Returns a "key: value" number from /proc/meminfo in KiB, or -1. */
static long long mc_meminfo_kib(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	size_t n = strlen(key);
	long long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, n) && line[n] == ':') {
			v = strtoll(line + n + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

/* Guest uptime in ms from /proc/uptime, or -1. */
static long long mc_uptime_ms(void)
{
	FILE *f = fopen("/proc/uptime", "r");
	double up;
	int n;

	if (!f)
		return -1;
	n = fscanf(f, "%lf", &up);
	fclose(f);
	return n == 1 ? (long long)(up * 1000.0) : -1;
}

/*
 * The guest frame behind a held page, from /proc/self/pagemap, so a FAIL
 * can be matched to the host's page index.  Returns -1 when unknown (not
 * root, or no pagemap).
 */
static long long mc_pfn(const struct mc_state *s, uint64_t page)
{
	uintptr_t va = (uintptr_t)(s->mem + page * s->page_size);
	uint64_t ent;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = pread(fd, &ent, sizeof(ent),
		  (off_t)(va / s->page_size * sizeof(ent)));
	close(fd);
	if (n != (ssize_t)sizeof(ent) || !(ent >> 63))
		return -1;
	ent &= (1ull << 55) - 1;
	return ent ? (long long)ent : -1;
}

static void mc_usage(FILE *f)
{
	fprintf(f,
"usage: memcheck [OPTION=VALUE]...\n"
"Fills anonymous memory with content known from (page, generation), frees\n"
"part of it, rewrites a working set and verifies everything it holds.\n"
"Options may also be written --NAME=VALUE or memcheck.NAME=VALUE (as on the\n"
"kernel command line).  SIZE: bytes with an optional K, M, G or T suffix\n"
"(powers of 1024; KiB, MB and the like are accepted too), rounded up to\n"
"whole pages.\n"
"  fill=SIZE        memory filled at start (default 600M)\n"
"  keep=SIZE        part held and verified; the rest is freed (default 100M,\n"
"                   or fill if smaller)\n"
"  wss=SIZE         part of keep rewritten with new generations (default 32M,\n"
"                   or keep if smaller)\n"
"  rate=SIZE        bytes of the working set rewritten per second, 0 for\n"
"                   none (default 8M)\n"
"  interval=TIME    time between verification passes: N, Ns or Nms\n"
"                   (default 5s)\n"
"  passes=N         exit after N passes, 1 if any failed; 0 runs for ever\n"
"                   (default 0)\n"
"  release=munmap|dontneed  how the freed part goes back (default munmap)\n"
"  seed=N           mixed into the content (default 0)\n"
"  selftest=0|1     corrupt one byte of a held page after the first verdict,\n"
"                   so that the next verdict is FAIL (default 0)\n"
"  -h, --help       this text\n"
"Output, one line each: memcheck: start ..., memcheck: ready ...,\n"
"memcheck: verdict OK ... or memcheck: verdict FAIL ...\n");
}

static int mc_parse_u64(const char *v, uint64_t *out, const char **end)
{
	char *e;
	unsigned long long n;

	if (*v < '0' || *v > '9')
		return -EINVAL;
	errno = 0;
	n = strtoull(v, &e, 10);
	if (errno)
		return -ERANGE;
	*out = n;
	*end = e;
	return 0;
}

static int mc_parse_size(const char *v, uint64_t *out)
{
	const char *e;
	uint64_t n, mul = 1;
	int r = mc_parse_u64(v, &n, &e);

	if (r)
		return r;
	switch (*e) {
	case 'k': case 'K': mul = 1ull << 10; e++; break;
	case 'm': case 'M': mul = 1ull << 20; e++; break;
	case 'g': case 'G': mul = 1ull << 30; e++; break;
	case 't': case 'T': mul = 1ull << 40; e++; break;
	}
	if (mul > 1 && (!strcmp(e, "iB") || !strcmp(e, "B")))
		e += strlen(e);
	if (*e)
		return -EINVAL;
	if (n > UINT64_MAX / mul)
		return -ERANGE;
	*out = n * mul;
	return 0;
}

static int mc_parse_ms(const char *v, uint64_t *out)
{
	const char *e;
	uint64_t n;
	int r = mc_parse_u64(v, &n, &e);

	if (r)
		return r;
	if (!strcmp(e, "ms")) {
		*out = n;
		return 0;
	}
	if (*e && strcmp(e, "s"))
		return -EINVAL;
	if (n > UINT64_MAX / 1000)
		return -ERANGE;
	*out = n * 1000;
	return 0;
}

/* Returns 0, 1 to exit 0 at once (help), or -1 after printing the error. */
static int mc_parse_args(int argc, char **argv, struct mc_opts *o)
{
	*o = (struct mc_opts){
		.fill = 600 * MC_MIB,
		.keep = 100 * MC_MIB,
		.wss = 32 * MC_MIB,
		.rate = 8 * MC_MIB,
		.interval_ms = 5000,
		.release = MC_RELEASE_MUNMAP,
	};

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq, *v;
		char name[16];
		size_t n;
		int r = 0;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			mc_usage(stdout);
			return 1;
		}
		if (!strncmp(a, "--", 2))
			a += 2;
		else if (!strncmp(a, "memcheck.", 9))
			a += 9;
		eq = strchr(a, '=');
		if (!eq) {
			fprintf(stderr, "memcheck: error: '%s': expected NAME=VALUE "
				"(see --help)\n", argv[i]);
			return -1;
		}
		n = (size_t)(eq - a);
		v = eq + 1;
		if (n >= sizeof(name))
			n = sizeof(name) - 1;
		memcpy(name, a, n);
		name[n] = '\0';

		if (!strcmp(name, "fill")) {
			r = mc_parse_size(v, &o->fill);
		} else if (!strcmp(name, "keep")) {
			r = mc_parse_size(v, &o->keep);
			o->keep_set = true;
		} else if (!strcmp(name, "wss")) {
			r = mc_parse_size(v, &o->wss);
			o->wss_set = true;
		} else if (!strcmp(name, "rate")) {
			r = mc_parse_size(v, &o->rate);
		} else if (!strcmp(name, "interval")) {
			r = mc_parse_ms(v, &o->interval_ms);
			if (!r && !o->interval_ms)
				r = -EINVAL;
			/* a year at most: its nanoseconds fit in 64 bits */
			if (!r && o->interval_ms > 365ull * 86400 * 1000)
				r = -ERANGE;
		} else if (!strcmp(name, "passes")) {
			const char *e;

			r = mc_parse_u64(v, &o->passes, &e);
			if (!r && *e)
				r = -EINVAL;
		} else if (!strcmp(name, "seed")) {
			const char *e;

			r = mc_parse_u64(v, &o->seed, &e);
			if (!r && *e)
				r = -EINVAL;
		} else if (!strcmp(name, "selftest")) {
			if (!strcmp(v, "1") || !strcmp(v, "on"))
				o->selftest = true;
			else if (!strcmp(v, "0") || !strcmp(v, "off"))
				o->selftest = false;
			else
				r = -EINVAL;
		} else if (!strcmp(name, "release")) {
			if (!strcmp(v, "munmap"))
				o->release = MC_RELEASE_MUNMAP;
			else if (!strcmp(v, "dontneed"))
				o->release = MC_RELEASE_DONTNEED;
			else
				r = -EINVAL;
		} else {
			fprintf(stderr, "memcheck: error: unknown option '%s' "
				"(see --help)\n", argv[i]);
			return -1;
		}
		if (r) {
			fprintf(stderr, "memcheck: error: bad value in '%s': %s "
				"(see --help)\n", argv[i],
				r == -ERANGE ? "out of range" : "not valid");
			return -1;
		}
	}
	return 0;
}

/* Rounds the sizes to pages and checks how they nest; prints the error. */
static int mc_check_opts(struct mc_opts *o, size_t ps)
{
	uint64_t *sz[] = { &o->fill, &o->keep, &o->wss };

	for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++) {
		if (*sz[i] > UINT64_MAX - ps) {
			fprintf(stderr, "memcheck: error: size too large\n");
			return -1;
		}
		*sz[i] = (*sz[i] + ps - 1) / ps * ps;
	}
	if (!o->fill) {
		fprintf(stderr, "memcheck: error: fill must be at least one "
			"page\n");
		return -1;
	}
	/* Defaults shrink to fit a smaller fill; given values are checked. */
	if (!o->keep_set && o->keep > o->fill)
		o->keep = o->fill;
	if (!o->wss_set && o->wss > o->keep)
		o->wss = o->keep;
	if (!o->keep) {
		fprintf(stderr, "memcheck: error: keep must be at least one "
			"page\n");
		return -1;
	}
	if (o->keep > o->fill) {
		fprintf(stderr, "memcheck: error: keep (%" PRIu64 " KiB) is "
			"larger than fill (%" PRIu64 " KiB)\n",
			o->keep >> 10, o->fill >> 10);
		return -1;
	}
	if (o->wss > o->keep) {
		fprintf(stderr, "memcheck: error: wss (%" PRIu64 " KiB) is "
			"larger than keep (%" PRIu64 " KiB)\n",
			o->wss >> 10, o->keep >> 10);
		return -1;
	}
	if (o->fill > SIZE_MAX / 2 || o->keep / ps > UINT32_MAX) {
		fprintf(stderr, "memcheck: error: fill too large for this "
			"machine\n");
		return -1;
	}
	return 0;
}

/*
 * Fills o.fill bytes at generation 1 and gives back everything past
 * o.keep.  Returns 0 or -errno (the message printed).
 */
static int mc_fill_and_free(struct mc_state *s)
{
	uint64_t fill_pages = s->o.fill / s->page_size;
	unsigned char *p;

	p = mmap(NULL, s->o.fill, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		int e = errno;

		fprintf(stderr, "memcheck: error: mmap of %" PRIu64 " KiB: "
			"%s\n", s->o.fill >> 10, strerror(e));
		return -e;
	}
	for (uint64_t pg = 0; pg < fill_pages; pg++)
		mc_write_page(s, p + pg * s->page_size, pg, 1);

	if (s->o.fill > s->o.keep) {
		unsigned char *tail = p + s->o.keep;
		size_t len = (size_t)(s->o.fill - s->o.keep);
		int r;

		if (s->o.release == MC_RELEASE_MUNMAP)
			r = munmap(tail, len);
		else
			r = madvise(tail, len, MADV_DONTNEED);
		if (r) {
			int e = errno;

			fprintf(stderr, "memcheck: error: %s of %zu KiB: %s\n",
				s->o.release == MC_RELEASE_MUNMAP ? "munmap" :
				"madvise(MADV_DONTNEED)", len >> 10,
				strerror(e));
			return -e;
		}
	}
	s->mem = p;
	return 0;
}

/* Rewrites up to n working-set pages, picked at random, one generation on. */
static void mc_rewrite(struct mc_state *s, uint64_t n)
{
	if (!s->wss_pages)
		return;
	while (n--) {
		uint64_t pg = mc_rand(s) % s->wss_pages;
		uint32_t g;

		if (pg == s->corrupt_page)
			continue;
		g = s->gen[pg] + 1;
		if (!g)
			g = 1;  /* after 2^32 - 1 rewrites of one page */
		mc_write_page(s, s->mem + pg * s->page_size, pg, g);
		s->gen[pg] = g;
		if (g > s->gen_max)
			s->gen_max = g;
	}
}

/* Checks every held page; returns the number of bad pages. */
static uint64_t mc_verify(const struct mc_state *s, struct mc_fail *f)
{
	memset(f, 0, sizeof(*f));
	for (uint64_t pg = 0; pg < s->held_pages; pg++) {
		const unsigned char *p = s->mem + pg * s->page_size;
		size_t w = mc_check_page(s, p, pg, s->gen[pg]);

		if (w == SIZE_MAX)
			continue;
		if (!f->bad_pages++) {
			f->page = pg;
			f->word = w;
			f->expected = mc_base(s->o.seed, pg, s->gen[pg]) + w;
			f->got = ((const uint64_t *)(const void *)p)[w];
		}
	}
	return f->bad_pages;
}

/* Flips one byte in the middle of a held page outside the working set
 * when there is one; that page is never rewritten again. */
static void mc_corrupt(struct mc_state *s)
{
	uint64_t pg = s->held_pages - 1;
	size_t byte = s->page_size / 2 + 3;

	s->mem[pg * s->page_size + byte] ^= 0x5a;
	s->corrupt_page = pg;
	printf("memcheck: selftest corrupted page=%" PRIu64 " byte=%zu\n",
	       pg, byte);
	fflush(stdout);
}

static void mc_print_verdict(const struct mc_state *s, uint64_t pass,
			     const struct mc_fail *f, uint64_t ns)
{
	if (!f->bad_pages) {
		printf("memcheck: verdict OK pass=%" PRIu64 " pages=%" PRIu64
		       " gen_max=%" PRIu32 " ms=%" PRIu64 "\n",
		       pass, s->held_pages, s->gen_max, ns / 1000000);
	} else {
		long long pfn = mc_pfn(s, f->page);
		char pfn_s[32] = "unknown";

		if (pfn >= 0)
			snprintf(pfn_s, sizeof(pfn_s), "0x%llx", pfn);
		printf("memcheck: verdict FAIL pass=%" PRIu64 " page=%" PRIu64
		       " word=%" PRIu64 " expected=0x%016" PRIx64
		       " got=0x%016" PRIx64 " gen=%" PRIu32 " pfn=%s"
		       " bad_pages=%" PRIu64 " pages=%" PRIu64 " ms=%" PRIu64
		       "\n", pass, f->page, f->word, f->expected, f->got,
		       s->gen[f->page], pfn_s, f->bad_pages, s->held_pages,
		       ns / 1000000);
	}
	fflush(stdout);
}

/*
 * Rewrites the working set at o.rate and verifies every o.interval_ms
 * until o.passes (for ever when 0).  Returns the number of failed passes.
 */
static uint64_t mc_run(struct mc_state *s)
{
	const uint64_t tick_ns = 10 * 1000000ull;
	double pages_per_ns = (double)s->o.rate / (double)s->page_size / 1e9;
	uint64_t interval_ns = s->o.interval_ms * 1000000ull;
	uint64_t t0 = mc_now_ns(), next_verify = t0 + interval_ns;
	uint64_t done = 0, pass = 0, failed = 0;

	for (;;) {
		uint64_t now = mc_now_ns();

		if (now >= next_verify) {
			struct mc_fail f;
			uint64_t start = now;

			if (mc_verify(s, &f))
				failed++;
			now = mc_now_ns();
			mc_print_verdict(s, ++pass, &f, now - start);
			if (s->o.passes && pass >= s->o.passes)
				return failed;
			if (pass == 1 && s->o.selftest)
				mc_corrupt(s);
			next_verify = now + interval_ns;
		}
		if (pages_per_ns > 0) {
			double due = (double)(now - t0) * pages_per_ns;
			uint64_t owed = due > (double)done ?
				(uint64_t)(due - (double)done) : 0;

			/* More than a second behind (a long pass, a paused
			 * VM): drop the debt rather than burst to catch up. */
			if ((double)owed > pages_per_ns * 1e9) {
				t0 = now;
				done = 0;
				owed = 0;
			}
			if (owed > 256)
				owed = 256;  /* look at the clock again soon */
			mc_rewrite(s, owed);
			done += owed;
			if (owed == 256)
				continue;
		}
		now = mc_now_ns();
		if (now < next_verify)
			mc_sleep_ns(next_verify - now < tick_ns ?
				    next_verify - now : tick_ns);
	}
}

int main(int argc, char **argv)
{
	struct mc_state s = { .corrupt_page = UINT64_MAX };
	long ps = sysconf(_SC_PAGESIZE);
	uint64_t t_start, failed;
	long long up;
	int r;

	r = mc_parse_args(argc, argv, &s.o);
	if (r)
		return r > 0 ? 0 : 2;
	if (ps <= 0 || ps % 8) {
		fprintf(stderr, "memcheck: error: odd page size %ld\n", ps);
		return 2;
	}
	s.page_size = (size_t)ps;
	s.words = s.page_size / 8;
	if (mc_check_opts(&s.o, s.page_size))
		return 2;
	s.held_pages = s.o.keep / s.page_size;
	s.wss_pages = s.o.wss / s.page_size;
	s.rng = mc_mix(s.o.seed + 1) | 1;

	printf("memcheck: start fill_kib=%" PRIu64 " keep_kib=%" PRIu64
	       " wss_kib=%" PRIu64 " rate_kib=%" PRIu64 " interval_ms=%" PRIu64
	       " passes=%" PRIu64 " release=%s seed=%" PRIu64 " selftest=%d"
	       " page_size=%zu\n", s.o.fill >> 10, s.o.keep >> 10,
	       s.o.wss >> 10, s.o.rate >> 10, s.o.interval_ms, s.o.passes,
	       s.o.release == MC_RELEASE_MUNMAP ? "munmap" : "dontneed",
	       s.o.seed, s.o.selftest ? 1 : 0, s.page_size);
	fflush(stdout);

	s.gen = malloc(s.held_pages * sizeof(*s.gen));
	if (!s.gen) {
		fprintf(stderr, "memcheck: error: no memory for the "
			"generation table (%" PRIu64 " pages)\n", s.held_pages);
		return 2;
	}
	for (uint64_t i = 0; i < s.held_pages; i++)
		s.gen[i] = 1;
	s.gen_max = 1;

	t_start = mc_now_ns();
	if (mc_fill_and_free(&s))
		return 2;
	up = mc_uptime_ms();
	printf("memcheck: ready in_use_kib=%" PRIu64 " pages=%" PRIu64
	       " freed_kib=%" PRIu64 " fill_ms=%" PRIu64 " mem_free_kib=%lld"
	       " uptime_ms=%lld\n", s.o.keep >> 10, s.held_pages,
	       (s.o.fill - s.o.keep) >> 10,
	       (mc_now_ns() - t_start) / 1000000,
	       mc_meminfo_kib("MemFree"), up);
	fflush(stdout);

	failed = mc_run(&s);
	free(s.gen);
	return failed ? 1 : 0;
}
