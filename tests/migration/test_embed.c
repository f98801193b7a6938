/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libhintmig embedded: two engine contexts in one process, driven through
 * the public API only (hintmig/hintmig.h), with a fake host (fake_host.c).
 * RAM has several regions with a hole between them, one of them on a
 * memfd; the connection is a socket the host gives (fd:) or a unix: URI.
 */
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "fake_host.h"
#include "test_util.h"

#define MiB (1024u * 1024u)
#define STATE_SIZE (3 * MiB + 123)   /* more than one device-state part */

/* The hinted ranges: region, first page, pages. */
static const FakeHostHint hinted[] = {
    { 0, 1024, 1024 },             /* "low", by guest-physical address */
    { 1, 0, 512 },                 /* "high", above the hole */
    { 2, 256, 256 },               /* "vram" (memfd, no address): by host address */
};

/* A hole between "low" and "high", as RAM around a PCI hole. */
static const FakeHostRegion regions[3] = {
    { .name = "low", .gpa = 0, .size = 16 * MiB },
    { .name = "high", .gpa = 64 * MiB, .size = 8 * MiB },
    { .name = "vram", .gpa = HINTMIG_GPA_NONE, .size = 4 * MiB, .memfd = true },
};

/* Pages the host writes as it stops the VM (device emulation, say). */
static const struct { unsigned region; uint64_t page; } late_writes[] = {
    { 0, 5 }, { 1, 1000 }, { 2, 7 },
};

static void write_late_pages(FakeHost *h, void *opaque)
{
    (void)opaque;
    for (unsigned i = 0; i < G_N_ELEMENTS(late_writes); i++) {
        fake_host_write_page(h, late_writes[i].region, late_writes[i].page, 0xe7, false);
    }
}

static void fill(FakeHost *h, void *opaque)
{
    (void)opaque;
    for (unsigned r = 0; r < 3; r++) {
        uint8_t *p = h->regions[r].host;
        /* Every 3rd page touched, with content naming region and page. */
        for (uint64_t off = 0; off < h->regions[r].size; off += 3 * HINTMIG_PAGE_SIZE) {
            memset(p + off, (int)(r * 40 + off / HINTMIG_PAGE_SIZE % 37 + 1),
                   HINTMIG_PAGE_SIZE);
        }
    }
}

/* The source, filled, or the empty destination; @host_log: the host's own
 * dirty log, which records the writes made as the VM stops. */
static FakeHost *fake_new(GMainContext *ctx, bool source, bool host_log)
{
    FakeHostConfig cfg = {
        .regions = regions, .nregions = G_N_ELEMENTS(regions),
        .uuid = "5c1ab7ed-0000-4000-8000-000000000001", .state_size = STATE_SIZE,
        .host_log = host_log, .fill = source ? fill : NULL,
        .on_stop = host_log ? write_late_pages : NULL,
    };
    return fake_host_new(&cfg, ctx);
}

static void check_result(FakeHost *src, FakeHost *dst)
{
    HintmigStats s, d;
    fake_host_assert_completed(src, dst, &s, &d);
    /* The engine's own memory is counted: its send buffers (16 of
     * 576 KiB) or the receive buffers the stream needed (1 to 16 of
     * them), codec contexts and a few tables, which this 28 MiB guest's
     * RAM does not add much to. */
    ck_assert_uint_gt(s.engine_memory, 9 * MiB);
    ck_assert_uint_gt(d.engine_memory, MiB / 2);
    ck_assert_uint_lt(s.engine_memory, 24 * MiB);
    ck_assert_uint_lt(d.engine_memory, 24 * MiB);
    ck_assert(src->stopped && src->migrated && dst->incoming_done);
    fake_host_assert_same_ram(src, dst);
    fake_host_assert_state_loaded(dst);
    hintmig_stats_clear(&s);
    hintmig_stats_clear(&d);
}

typedef struct Pair {
    GMainContext *ctx;
    FakeHost *src, *dst;
    char *dir;
} Pair;

static void pair_new_with(Pair *p, bool host_log)
{
    p->ctx = g_main_context_new();      /* never GLib's default one */
    p->src = fake_new(p->ctx, true, host_log);
    p->dst = fake_new(p->ctx, false, false);
    p->dir = test_tmpdir();
}

static void pair_new(Pair *p)
{
    pair_new_with(p, false);
}

static void pair_free(Pair *p)
{
    fake_host_free(p->src);
    fake_host_free(p->dst);
    test_rmdir(p->dir);
    g_free(p->dir);
    g_main_context_unref(p->ctx);
}

START_TEST(precopy_over_host_fd)
{
    Pair p;

    pair_new(&p);
    fake_host_start_socketpair(p.src, p.dst);
    fake_host_run_until_done(p.src, p.dst, 60);
    check_result(p.src, p.dst);
    pair_free(&p);
}
END_TEST

START_TEST(precopy_over_unix_uri)
{
    Pair p;

    pair_new(&p);
    g_autofree char *uri = g_strdup_printf("unix:%s/mig.sock", p.dir);
    fake_host_start_uri(p.src, p.dst, uri);
    fake_host_run_until_done(p.src, p.dst, 60);
    check_result(p.src, p.dst);
    pair_free(&p);
}
END_TEST

/* Three connections over a UNIX socket: both sides count bytes on each. */
START_TEST(multifd_over_unix_uri)
{
    Pair p;
    HintmigStats s, d;

    pair_new(&p);
    ck_assert(hintmig_set_parameter(p.src->m, "multifd-channels", "3", NULL));
    g_autofree char *uri = g_strdup_printf("unix:%s/mig.sock", p.dir);
    fake_host_start_uri(p.src, p.dst, uri);
    fake_host_run_until_done(p.src, p.dst, 60);
    fake_host_assert_completed(p.src, p.dst, &s, &d);
    fake_host_assert_same_ram(p.src, p.dst);
    ck_assert_uint_eq(s.multifd_channels, 3);
    ck_assert_uint_eq(d.multifd_channels, 3);
    for (unsigned c = 0; c < 3; c++) {
        ck_assert_uint_gt(s.multifd_bytes[c], 0);
        ck_assert_uint_eq(s.multifd_bytes[c], d.multifd_bytes[c]);
    }
    hintmig_stats_clear(&s);
    hintmig_stats_clear(&d);
    pair_free(&p);
}
END_TEST

/* Over a socket pair there is no address to dial: one connection, and why. */
START_TEST(multifd_falls_back_over_a_socketpair)
{
    Pair p;
    HintmigStats s, d;

    pair_new(&p);
    ck_assert(hintmig_set_parameter(p.src->m, "multifd-channels", "2", NULL));
    fake_host_start_socketpair(p.src, p.dst);
    fake_host_run_until_done(p.src, p.dst, 60);
    fake_host_assert_completed(p.src, p.dst, &s, &d);
    ck_assert_uint_eq(s.multifd_channels, 1);
    ck_assert_msg(strstr(s.multifd_note, "2 asked for; the socket the host gave has no "
                                         "address to dial"), "%s", s.multifd_note);
    ck_assert_uint_eq(d.multifd_channels, 0);     /* the destination saw none */
    hintmig_stats_clear(&s);
    hintmig_stats_clear(&d);
    pair_free(&p);
}
END_TEST

START_TEST(pause_before_switchover)
{
    Pair p;

    pair_new(&p);
    ck_assert(!hintmig_continue(p.src->m, NULL));     /* nothing to continue */
    ck_assert(hintmig_set_capability(p.src->m, "pause-before-switchover", true, NULL));
    fake_host_start_socketpair(p.src, p.dst);
    fake_host_run_until_done(p.src, p.dst, 60);
    ck_assert(p.src->saw_pre_switchover);
    check_result(p.src, p.dst);
    pair_free(&p);
}
END_TEST

/*
 * "remaining ram" is what the pass still has to send, as in QEMU: it falls
 * during the bulk pass instead of staying at the total until the first sync.
 */
START_TEST(remaining_ram_falls_in_the_bulk_pass)
{
    Pair p;
    uint64_t total = 0, lowest = UINT64_MAX;

    pair_new(&p);
    /* 28 MiB raw at 8 MiB/s: about 3.5 s of bulk pass to watch. */
    ck_assert(hintmig_set_parameter(p.src->m, "compress-method", "none", NULL));
    ck_assert(hintmig_set_parameter(p.src->m, "max-bandwidth", "8M", NULL));
    fake_host_start_socketpair(p.src, p.dst);
    gint64 until = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
    while (!fake_host_pair_done(p.src, p.dst) && g_get_monotonic_time() < until) {
        HintmigStats s;
        hintmig_get_stats(p.src->m, &s);
        if (s.status == HINTMIG_STATUS_ACTIVE && s.rounds == 0) {
            total = s.ram_total;
            lowest = MIN(lowest, s.ram_remaining);
        }
        hintmig_stats_clear(&s);
        g_main_context_iteration(p.ctx, FALSE);
        g_usleep(10000);
    }
    fake_host_run_until_done(p.src, p.dst, 60);
    ck_assert_msg(total, "never saw the bulk pass");
    ck_assert_msg(lowest < total / 2, "remaining ram stayed at %" G_GUINT64_FORMAT
                  " of %" G_GUINT64_FORMAT " during the bulk pass", lowest, total);
    check_result(p.src, p.dst);
    pair_free(&p);
}
END_TEST

START_TEST(postcopy_over_unix_uri)
{
    Pair p;
    g_autoptr(GError) err = NULL;

    pair_new(&p);
    if (!hintmig_set_capability(p.dst->m, "postcopy-ram", true, &err)) {
        /* no userfaultfd for this user: said, not passed */
        ck_abort_msg("postcopy-ram refused: %s", err->message);
    }
    ck_assert(hintmig_set_capability(p.src->m, "postcopy-ram", true, NULL));
    ck_assert(hintmig_set_parameter(p.src->m, "max-bandwidth", "20M", NULL));
    g_autofree char *uri = g_strdup_printf("unix:%s/pc.sock", p.dir);
    fake_host_start_uri(p.src, p.dst, uri);
    ck_assert_msg(hintmig_start_postcopy(p.src->m, &err), "%s", err->message);
    fake_host_run_until_done(p.src, p.dst, 60);
    HintmigStats d;
    hintmig_get_stats(p.dst->m, &d);
    ck_assert(d.postcopy);
    hintmig_stats_clear(&d);
    check_result(p.src, p.dst);
    pair_free(&p);
}
END_TEST

static bool page_is_hinted(unsigned region, uint64_t page)
{
    for (unsigned i = 0; i < G_N_ELEMENTS(hinted); i++) {
        if (hinted[i].region == region && page >= hinted[i].first &&
            page < hinted[i].first + hinted[i].n) {
            return true;
        }
    }
    return false;
}

static bool page_is_zero(const uint8_t *p)
{
    for (unsigned i = 0; i < HINTMIG_PAGE_SIZE; i++) {
        if (p[i]) {
            return false;
        }
    }
    return true;
}

/*
 * With @postcopy the switch comes during the bulk pass (asked for at once,
 * the pass slowed): the pages it still owes include hinted ones, which must
 * stay hinted, not travel.
 */
static void check_free_page_hints(bool postcopy)
{
    Pair p;
    g_autoptr(GError) err = NULL;

    pair_new(&p);
    fake_host_add_hint_device(p.src, hinted, G_N_ELEMENTS(hinted));
    ck_assert_msg(hintmig_set_capability(p.src->m, "free-page-hint", true, &err),
                  "%s", err ? err->message : "");
    if (postcopy) {
        ck_assert_msg(hintmig_set_capability(p.dst->m, "postcopy-ram", true, &err),
                      "%s", err ? err->message : "");
        ck_assert(hintmig_set_capability(p.src->m, "postcopy-ram", true, NULL));
        ck_assert(hintmig_set_parameter(p.src->m, "compress-method", "none", NULL));
        ck_assert(hintmig_set_parameter(p.src->m, "max-bandwidth", "8M", NULL));
        g_autofree char *uri = g_strdup_printf("unix:%s/hints.sock", p.dir);
        fake_host_start_uri(p.src, p.dst, uri);
        ck_assert_msg(hintmig_start_postcopy(p.src->m, &err), "%s", err->message);
    } else {
        fake_host_start_socketpair(p.src, p.dst);
    }
    fake_host_run_until_done(p.src, p.dst, 60);

    HintmigStats s, d;
    fake_host_assert_completed(p.src, p.dst, &s, &d);
    ck_assert(s.postcopy == postcopy);
    uint64_t nhinted = 0;
    for (unsigned i = 0; i < G_N_ELEMENTS(hinted); i++) {
        nhinted += hinted[i].n;
    }
    ck_assert_uint_eq(s.hinted_pages, nhinted);
    ck_assert_uint_eq(s.hint_skipped_pages, nhinted);
    /* Released on the source: MADV_FREE for the anonymous regions, a
     * punched hole for the memfd one. */
    ck_assert_uint_eq(s.madv_freed_bytes, nhinted * HINTMIG_PAGE_SIZE);
    ck_assert(g_atomic_int_get(&p.src->done));
    for (unsigned r = 0; r < 3; r++) {
        const uint8_t *a = p.src->regions[r].host, *b = p.dst->regions[r].host;
        for (uint64_t pg = 0; pg < regions[r].size / HINTMIG_PAGE_SIZE; pg++) {
            const uint8_t *pa = a + pg * HINTMIG_PAGE_SIZE, *pb = b + pg * HINTMIG_PAGE_SIZE;
            if (page_is_hinted(r, pg)) {
                ck_assert_msg(page_is_zero(pb), "hinted page %s:%" G_GUINT64_FORMAT
                              " was sent", regions[r].name, pg);
                if (r == 2) {       /* the hole is real: the file reads zero */
                    ck_assert(page_is_zero(pa));
                }
            } else {
                ck_assert_msg(!memcmp(pa, pb, HINTMIG_PAGE_SIZE), "page %s:%"
                              G_GUINT64_FORMAT " differs", regions[r].name, pg);
            }
        }
    }
    hintmig_stats_clear(&s);
    hintmig_stats_clear(&d);
    pair_free(&p);
}

START_TEST(free_page_hints)
{
    check_free_page_hints(false);
}
END_TEST

START_TEST(free_page_hints_postcopy_mid_bulk)
{
    check_free_page_hints(true);
}
END_TEST

/* The host's dirty log alone tells what changed: its writes at stop arrive. */
START_TEST(host_dirty_log)
{
    Pair p;

    pair_new_with(&p, true);
    fake_host_start_socketpair(p.src, p.dst);
    fake_host_run_until_done(p.src, p.dst, 60);
    check_result(p.src, p.dst);      /* the late writes are there, verified */
    HintmigStats s;
    hintmig_get_stats(p.src->m, &s);
    ck_assert_str_eq(s.dirty_backend, "host");
    ck_assert_uint_eq(p.src->log_starts, 1);
    ck_assert_uint_ge(p.src->log_syncs, 3 * 2);   /* every region, twice at least */
    ck_assert_uint_eq(s.dirty_sync_count * 3, p.src->log_syncs);
    hintmig_stats_clear(&s);
    pair_free(&p);
}
END_TEST

/*
 * Postcopy over sockets the host made, as libvirt does: the destination gets
 * a listening socket, the source a connected one; the page channel goes to
 * the connected socket's peer address.  Over a socket pair there is no
 * second connection to be had: a clear refusal.
 */
START_TEST(postcopy_over_host_fds)
{
    Pair p;
    g_autoptr(GError) err = NULL;

    pair_new(&p);
    ck_assert(hintmig_set_capability(p.dst->m, "postcopy-ram", true, NULL));
    ck_assert(hintmig_set_capability(p.src->m, "postcopy-ram", true, NULL));
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/host.sock", p.dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert(lfd >= 0 && !bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) &&
              !listen(lfd, 4));
    ck_assert_msg(hintmig_incoming_start_fd(p.dst->m, lfd, &err), "%s", err->message);
    int cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert(cfd >= 0 && !connect(cfd, (struct sockaddr *)&sa, sizeof(sa)));
    ck_assert_msg(hintmig_start_fd(p.src->m, cfd, &err), "%s", err->message);
    ck_assert(hintmig_start_postcopy(p.src->m, NULL));
    fake_host_run_until_done(p.src, p.dst, 60);
    check_result(p.src, p.dst);
    pair_free(&p);

    pair_new(&p);
    ck_assert(hintmig_set_capability(p.dst->m, "postcopy-ram", true, NULL));
    ck_assert(hintmig_set_capability(p.src->m, "postcopy-ram", true, NULL));
    fake_host_start_socketpair(p.src, p.dst);
    fake_host_run_until_done(p.src, p.dst, 60);
    HintmigStats s;
    hintmig_get_stats(p.src->m, &s);
    ck_assert_int_eq(s.status, HINTMIG_STATUS_FAILED);
    ck_assert_msg(s.error && strstr(s.error, "second connection"), "%s",
                  s.error ? s.error : "(none)");
    ck_assert(!g_atomic_int_get(&p.src->stopped));
    hintmig_stats_clear(&s);
    pair_free(&p);
}
END_TEST

/*
 * A man in the middle of a host's socket pairs that flips one bit in the
 * first device-state message.  It knows just enough of the wire format
 * (migration/wire.h): a 16-byte header with the type at offset 6 and the
 * payload's length at offset 12, all little-endian; device state is type 4.
 */
#define WIRE_HDR 16
#define WIRE_DEVICE_STATE_TYPE 4

typedef struct Flipper {
    int from_src, to_dst;      /* source -> destination, parsed */
    int from_dst, to_src;      /* the return path, copied as is */
    GThread *fwd, *back;
    gint flipped;
} Flipper;

static bool read_full(int fd, uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) {
            return false;
        }
        p += r;
        n -= r;
    }
    return true;
}

static bool write_full(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r <= 0) {
            return false;
        }
        p += r;
        n -= r;
    }
    return true;
}

static gpointer flipper_forward(gpointer data)
{
    Flipper *f = data;
    uint8_t hdr[WIRE_HDR];
    g_autofree uint8_t *payload = NULL;

    while (read_full(f->from_src, hdr, sizeof(hdr))) {
        uint16_t type = hdr[6] | hdr[7] << 8;
        uint32_t len = hdr[12] | hdr[13] << 8 | hdr[14] << 16 | (uint32_t)hdr[15] << 24;
        payload = g_realloc(payload, MAX(len, 1));
        if (!read_full(f->from_src, payload, len)) {
            break;
        }
        if (type == WIRE_DEVICE_STATE_TYPE && len > 1000 && !f->flipped) {
            payload[1000] ^= 0x10;       /* one bit of a "vCPU register" */
            f->flipped = 1;
        }
        if (!write_full(f->to_dst, hdr, sizeof(hdr)) ||
            !write_full(f->to_dst, payload, len)) {
            break;
        }
    }
    shutdown(f->to_dst, SHUT_RDWR);
    shutdown(f->from_src, SHUT_RDWR);
    return NULL;
}

static gpointer flipper_back(gpointer data)
{
    Flipper *f = data;
    uint8_t buf[4096];
    ssize_t n;

    while ((n = read(f->from_dst, buf, sizeof(buf))) > 0 &&
           write_full(f->to_src, buf, n)) {
    }
    shutdown(f->to_src, SHUT_RDWR);
    shutdown(f->from_dst, SHUT_RDWR);
    return NULL;
}

/*
 * Device state is verified as RAM is: a bit flipped on the way fails the
 * migration before the destination loads it, and the source runs on.
 * Before the state had its own digest this completed with verify OK.
 */
START_TEST(device_state_flipped_in_flight)
{
    Pair p;
    int s2f[2], f2d[2];
    Flipper f = { 0 };
    g_autoptr(GError) err = NULL;

    pair_new(&p);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s2f), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f2d), 0);
    f.from_src = f.to_src = s2f[1];
    f.from_dst = f.to_dst = f2d[0];
    f.fwd = g_thread_new("flip-fwd", flipper_forward, &f);
    f.back = g_thread_new("flip-back", flipper_back, &f);
    ck_assert_msg(hintmig_incoming_start_fd(p.dst->m, f2d[1], &err), "%s", err->message);
    ck_assert_msg(hintmig_start_fd(p.src->m, s2f[0], &err), "%s", err->message);
    fake_host_run_until_done(p.src, p.dst, 60);

    HintmigStats s, d;
    hintmig_get_stats(p.src->m, &s);
    hintmig_get_stats(p.dst->m, &d);
    ck_assert(g_atomic_int_get(&f.flipped));
    ck_assert_msg(s.status == HINTMIG_STATUS_FAILED && s.error &&
                  strstr(s.error, "device state") && strstr(s.error, "digest"),
                  "source: %s (%s)", hintmig_status_str(s.status),
                  s.error ? s.error : "");
    ck_assert_msg(d.status == HINTMIG_STATUS_FAILED, "destination: %s",
                  hintmig_status_str(d.status));
    ck_assert(!p.dst->loaded);                        /* never loaded */
    ck_assert(!g_atomic_int_get(&p.dst->incoming_done));
    ck_assert(g_atomic_int_get(&p.src->resumed));     /* the source runs on */
    hintmig_stats_clear(&s);
    hintmig_stats_clear(&d);
    g_thread_join(f.fwd);
    g_thread_join(f.back);
    close(s2f[1]);
    close(f2d[0]);
    pair_free(&p);
}
END_TEST

/* The verify capability, as postcopy-ram: both sides on, or both off. */
/* The fake host cannot throttle vCPUs: auto-converge is refused, saying so. */
START_TEST(auto_converge_needs_a_throttle)
{
    Pair p;
    g_autoptr(GError) err = NULL;
    pair_new(&p);
    ck_assert(!hintmig_set_capability(p.src->m, "auto-converge", true, &err));
    ck_assert_msg(strstr(err->message, "cannot throttle"), "%s", err->message);
    ck_assert(!hintmig_get_caps(p.src->m).auto_converge);
    ck_assert(hintmig_set_capability(p.src->m, "auto-converge", false, NULL));
    pair_free(&p);
}
END_TEST

START_TEST(verify_capability_on_both_sides)
{
    static const struct { bool src, dst; const char *refusal; } cases[] = {
        { false, false, NULL },
        { false, true, "requires verify" },
        { true, false, "lacks: verify" },
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
        Pair p;
        pair_new(&p);
        ck_assert(hintmig_set_capability(p.src->m, "verify", cases[i].src, NULL));
        ck_assert(hintmig_set_capability(p.dst->m, "verify", cases[i].dst, NULL));
        fake_host_start_socketpair(p.src, p.dst);
        fake_host_run_until_done(p.src, p.dst, 60);
        HintmigStats s;
        hintmig_get_stats(p.src->m, &s);
        if (!cases[i].refusal) {
            ck_assert_msg(s.status == HINTMIG_STATUS_COMPLETED, "%s",
                          s.error ? s.error : "");
            HintmigStats d;
            hintmig_get_stats(p.dst->m, &d);
            ck_assert(!d.verified);
            hintmig_stats_clear(&d);
            fake_host_assert_same_ram(p.src, p.dst);
        } else {
            ck_assert_int_eq(s.status, HINTMIG_STATUS_FAILED);
            ck_assert_msg(s.error && strstr(s.error, cases[i].refusal), "case %u: %s",
                          i, s.error ? s.error : "(none)");
            ck_assert(!g_atomic_int_get(&p.src->stopped));   /* refused at hello */
            ck_assert(!g_atomic_int_get(&p.dst->incoming_done));
        }
        hintmig_stats_clear(&s);
        pair_free(&p);
    }
}
END_TEST

START_TEST(bad_region_tables_are_refused)
{
    GMainContext *ctx = g_main_context_new();
    static uint8_t mem[4 * 4096] __attribute__((aligned(4096)));
    HintmigRamRegion r[2] = {
        { .name = "a", .gpa = 0, .host = mem, .size = 2 * 4096, .fd = -1 },
        { .name = "b", .gpa = 4096, .host = mem + 2 * 4096, .size = 2 * 4096, .fd = -1 },
    };
    HintmigHost host = { .ops = &fake_host_ops, .context = ctx, .regions = r,
                         .nregions = 2, .nvcpus = 1,
                         .uuid = "5c1ab7ed-0000-4000-8000-000000000002" };
    g_autoptr(GError) err = NULL;

    ck_assert(!hintmig_new(&host, &err));             /* gpa overlap */
    ck_assert(g_error_matches(err, HINTMIG_ERROR, HINTMIG_ERROR_INVALID));
    g_clear_error(&err);
    r[1].gpa = 8192;
    r[1].name = "a";
    ck_assert(!hintmig_new(&host, &err));             /* same name */
    g_clear_error(&err);
    r[1].name = "b";
    r[1].size = 4096 + 1;
    ck_assert(!hintmig_new(&host, &err));             /* not page sized */
    g_clear_error(&err);
    r[1].size = 2 * 4096;
    host.context = NULL;
    ck_assert(!hintmig_new(&host, &err));             /* no main context */
    g_clear_error(&err);
    host.context = ctx;
    g_strlcpy(host.uuid, "not-a-uuid", sizeof(host.uuid));
    ck_assert(!hintmig_new(&host, &err));             /* bad UUID */
    g_clear_error(&err);
    g_strlcpy(host.uuid, "5c1ab7ed-0000-4000-8000-000000000002", sizeof(host.uuid));
    Hintmig *m = hintmig_new(&host, &err);
    ck_assert_msg(m, "%s", err ? err->message : "");
    ck_assert(!hintmig_start(m, "udp:1.2.3.4:5", NULL));
    ck_assert(!hintmig_start(m, "unix:", NULL));
    ck_assert(!hintmig_start_fd(m, -1, NULL));
    /* Recovery takes a listening socket, and only in postcopy-paused. */
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert(!hintmig_recover_fd(m, sv[0], &err));
    ck_assert(g_error_matches(err, HINTMIG_ERROR, HINTMIG_ERROR_INVALID));
    g_clear_error(&err);
    struct sockaddr_in lo = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert(lfd >= 0 && !bind(lfd, (struct sockaddr *)&lo, sizeof(lo)) &&
              !listen(lfd, 1));                        /* any free port */
    ck_assert(!hintmig_recover_fd(m, lfd, &err));
    ck_assert(g_error_matches(err, HINTMIG_ERROR, HINTMIG_ERROR_BUSY));
    g_clear_error(&err);
    ck_assert(!hintmig_resume_fd(m, sv[1], &err));    /* nothing paused */
    g_clear_error(&err);
    hintmig_free(m);
    g_main_context_unref(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("embed");
    TCase *tc = tcase_create("embed");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, bad_region_tables_are_refused);
    tcase_add_test(tc, precopy_over_host_fd);
    tcase_add_test(tc, precopy_over_unix_uri);
    tcase_add_test(tc, multifd_over_unix_uri);
    tcase_add_test(tc, multifd_falls_back_over_a_socketpair);
    tcase_add_test(tc, pause_before_switchover);
    tcase_add_test(tc, remaining_ram_falls_in_the_bulk_pass);
    tcase_add_test(tc, postcopy_over_unix_uri);
    tcase_add_test(tc, free_page_hints);
    tcase_add_test(tc, free_page_hints_postcopy_mid_bulk);
    tcase_add_test(tc, host_dirty_log);
    tcase_add_test(tc, verify_capability_on_both_sides);
    tcase_add_test(tc, auto_converge_needs_a_throttle);
    tcase_add_test(tc, postcopy_over_host_fds);
    tcase_add_test(tc, device_state_flipped_in_flight);
    suite_add_tcase(s, tc);
    return test_run(s);
}
