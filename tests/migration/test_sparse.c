/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A big guest that uses little of its RAM, embedded as test_embed.c does
 * (public API, a fake host): the source sends the pages it uses, tells the
 * destination which pages were never touched, and still catches the pages
 * the guest touches for the first time while the bulk pass runs.  And what
 * verification covers when it compares pages as sent and as applied, and
 * what only x-verify-full does.
 */
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hintmig/hintmig.h"
#include "test_util.h"

#define MiB (1024ull * 1024)
#define RAM_SIZE (1024 * MiB)
#define NPAGES (RAM_SIZE / HINTMIG_PAGE_SIZE)
#define USED_STRIDE 1024          /* the guest uses every 1024th page... */
#define USED_BLOCK (8 * MiB)      /* ...and one block at 256 MiB */
#define NEW_PAGES 1500            /* first touched while the bulk pass runs */
#define STALE_PAGES 64            /* the destination holds something there */

typedef struct Side {
    uint8_t *ram;
    HintmigRamRegion region;
    GMainContext *ctx;
    Hintmig *m;
    HintmigStatus last;
    gint stopped, migrated, incoming_done;
    /* source: the "guest" that writes pages never touched before */
    GThread *writer;
    gint stop_writer;
    gint written;                 /* pages written by the writer */
    gint during_bulk;             /* ... of them while the bulk pass ran */
    /* source: a host dirty log that misses the write made at stop */
    bool lossy_log;
} Side;

#define MISSED_PAGE (5 * USED_STRIDE)

static bool log_start(void *o, GError **errp)
{
    (void)o, (void)errp;
    return true;
}

/* Reports nothing: this "guest" writes only at stop, and the log misses it. */
static bool log_sync(void *o, unsigned region, unsigned long *bitmap, GError **errp)
{
    (void)o, (void)region, (void)bitmap, (void)errp;
    return true;
}

static const HintmigDirtyOps lossy_log = { .start = log_start, .sync = log_sync };

static void host_stop(void *o)
{
    Side *s = o;
    if (s->lossy_log) {
        memset(s->ram + MISSED_PAGE * HINTMIG_PAGE_SIZE, 0xee, HINTMIG_PAGE_SIZE);
    }
    /* A stopped guest writes nothing: the writer is done before we return. */
    if (s->writer) {
        g_atomic_int_set(&s->stop_writer, 1);
        g_thread_join(s->writer);
        s->writer = NULL;
    }
    g_atomic_int_set(&s->stopped, 1);
}

static void host_resume(void *o) { (void)o; }
static void host_migrated(void *o) { g_atomic_int_set(&((Side *)o)->migrated, 1); }
static void host_incoming_done(void *o) { g_atomic_int_set(&((Side *)o)->incoming_done, 1); }
static bool host_yes(void *o, GError **e) { (void)o, (void)e; return true; }
static bool host_save(void *o, GByteArray *out, GError **e)
{
    (void)o, (void)e;
    g_byte_array_append(out, (const uint8_t *)"cpu state", 9);
    return true;
}
static bool host_load(void *o, const uint8_t *d, size_t len, GError **e)
{
    (void)o, (void)e;
    return len == 9 && !memcmp(d, "cpu state", 9);
}
static void host_status(void *o, HintmigStatus old, HintmigStatus now)
{
    (void)old;
    ((Side *)o)->last = now;
}

static const HintmigHostOps ops = {
    .stop = host_stop, .resume = host_resume, .migrated = host_migrated,
    .save_state = host_save, .load_state = host_load,
    .incoming_done = host_incoming_done, .can_migrate = host_yes,
    .can_receive = host_yes, .status_changed = host_status,
};

/* The writer's page @i: odd, above the block, never touched before. */
static uint64_t new_page(unsigned i)
{
    return NPAGES / 2 + (uint64_t)i * 64 + 7;
}

/* The destination's stale page @i: below the block, untouched on the source. */
static uint64_t stale_page(unsigned i)
{
    return 50 * USED_STRIDE + (uint64_t)i * 5 + 1;
}

static gpointer writer_thread(gpointer data)
{
    Side *s = data;

    /* Start once the bulk pass runs ("remaining ram" below the total):
     * the source has looked at what is backed by then, so these pages are
     * new to it. */
    for (;;) {
        HintmigStats st;
        hintmig_get_stats(s->m, &st);
        bool sending = st.status == HINTMIG_STATUS_ACTIVE && st.ram_remaining < st.ram_total;
        bool over = st.status != HINTMIG_STATUS_ACTIVE &&
                    st.status != HINTMIG_STATUS_SETUP;
        hintmig_stats_clear(&st);
        if (sending || over || g_atomic_int_get(&s->stop_writer)) {
            break;
        }
        g_usleep(1000);
    }
    for (unsigned i = 0; i < NEW_PAGES && !g_atomic_int_get(&s->stop_writer); i++) {
        memset(s->ram + new_page(i) * HINTMIG_PAGE_SIZE, (int)(i % 251 + 1),
               HINTMIG_PAGE_SIZE);
        g_atomic_int_inc(&s->written);
        HintmigStats st;
        hintmig_get_stats(s->m, &st);
        if (st.status == HINTMIG_STATUS_ACTIVE && st.rounds == 0) {
            g_atomic_int_inc(&s->during_bulk);
        }
        hintmig_stats_clear(&st);
        g_usleep(200);
    }
    return NULL;
}

static void side_init(Side *s, GMainContext *ctx, bool source, bool lossy)
{
    memset(s, 0, sizeof(*s));
    s->lossy_log = lossy;
    s->ctx = ctx;
    s->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ck_assert(s->ram != MAP_FAILED);
    madvise(s->ram, RAM_SIZE, MADV_NOHUGEPAGE);    /* used pages stay scattered */
    if (source) {
        for (uint64_t pfn = 0; pfn < NPAGES; pfn += USED_STRIDE) {
            memset(s->ram + pfn * HINTMIG_PAGE_SIZE, (int)(pfn / USED_STRIDE % 200 + 1),
                   HINTMIG_PAGE_SIZE);
        }
        for (uint64_t off = 0; off < USED_BLOCK; off += 8) {    /* incompressible */
            uint64_t x = off * 0x9e3779b97f4a7c15ull;
            memcpy(s->ram + 256 * MiB + off, &x, 8);
        }
    } else {
        for (unsigned i = 0; i < STALE_PAGES; i++) {
            memset(s->ram + stale_page(i) * HINTMIG_PAGE_SIZE, 0xab, HINTMIG_PAGE_SIZE);
        }
    }
    s->region = (HintmigRamRegion) { .name = "ram", .gpa = 0, .host = s->ram,
                                     .size = RAM_SIZE, .page_size = HINTMIG_PAGE_SIZE,
                                     .backing = HINTMIG_BACKING_ANON, .fd = -1 };
    HintmigHost host = { .ops = &ops, .opaque = s, .context = ctx,
                         .regions = &s->region, .nregions = 1, .nvcpus = 1,
                         .uuid = "5c1ab7ed-0000-4000-8000-00000000005a",
                         .dirty_backend = lossy ? HINTMIG_DIRTY_HOST : HINTMIG_DIRTY_AUTO,
                         .dirty_ops = lossy ? &lossy_log : NULL, .dirty_opaque = s };
    g_autoptr(GError) err = NULL;
    s->m = hintmig_new(&host, &err);
    ck_assert_msg(s->m, "%s", err ? err->message : "");
}

static void side_free(Side *s)
{
    if (s->writer) {
        g_atomic_int_set(&s->stop_writer, 1);
        g_thread_join(s->writer);
    }
    hintmig_free(s->m);
    munmap(s->ram, RAM_SIZE);
}

static bool finished(HintmigStatus s)
{
    return s == HINTMIG_STATUS_COMPLETED || s == HINTMIG_STATUS_FAILED ||
           s == HINTMIG_STATUS_CANCELLED;
}

static gboolean flag_set(gpointer data)
{
    *(bool *)data = true;
    return G_SOURCE_REMOVE;
}

static void run_until_done(GMainContext *ctx, Side *src, Side *dst)
{
    bool expired = false;
    GSource *t = g_timeout_source_new_seconds(120);
    g_source_set_callback(t, flag_set, &expired, NULL);
    g_source_attach(t, ctx);
    while (!expired && !(finished(src->last) && finished(dst->last) &&
                         (src->last != HINTMIG_STATUS_COMPLETED ||
                          (g_atomic_int_get(&src->migrated) &&
                           g_atomic_int_get(&dst->incoming_done))))) {
        GSource *tick = g_timeout_source_new(10);
        g_source_set_callback(tick, flag_set, &(bool){ false }, NULL);
        g_source_attach(tick, ctx);
        g_main_context_iteration(ctx, TRUE);
        g_source_destroy(tick);
        g_source_unref(tick);
    }
    g_source_destroy(t);
    g_source_unref(t);
    ck_assert_msg(!expired, "migration did not finish in 120 s");
}

static void migrate_sparse(bool postcopy)
{
    GMainContext *ctx = g_main_context_new();
    Side src, dst;
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = test_tmpdir();
    g_autofree char *uri = g_strdup_printf("unix:%s/mig.sock", dir);

    side_init(&src, ctx, true, false);
    side_init(&dst, ctx, false, false);
    /* Raw at 8 MiB/s: the bulk pass (about 6 MiB) lasts long enough for
     * the writer to touch its pages while it runs. */
    ck_assert(hintmig_set_parameter(src.m, "compress-method", "none", NULL));
    ck_assert(hintmig_set_parameter(src.m, "max-bandwidth", "8M", NULL));
    if (postcopy) {
        ck_assert_msg(hintmig_set_capability(dst.m, "postcopy-ram", true, &err), "%s",
                      err ? err->message : "");
        ck_assert(hintmig_set_capability(src.m, "postcopy-ram", true, NULL));
    }
    ck_assert_msg(hintmig_incoming_start(dst.m, uri, &err), "%s", err->message);
    ck_assert_msg(hintmig_start(src.m, uri, &err), "%s", err->message);
    src.writer = g_thread_new("writer", writer_thread, &src);
    if (postcopy) {
        /* Once the writer is done: then the switch cuts the bulk pass short. */
        while (g_atomic_int_get(&src.written) < NEW_PAGES && !finished(src.last)) {
            g_main_context_iteration(ctx, FALSE);
            g_usleep(1000);
        }
        ck_assert_msg(hintmig_start_postcopy(src.m, &err), "%s", err->message);
    }
    run_until_done(ctx, &src, &dst);

    HintmigStats s, d;
    hintmig_get_stats(src.m, &s);
    hintmig_get_stats(dst.m, &d);
    ck_assert_msg(s.status == HINTMIG_STATUS_COMPLETED, "source: %s (%s)",
                  hintmig_status_str(s.status), s.error ? s.error : "");
    ck_assert_msg(d.status == HINTMIG_STATUS_COMPLETED, "destination: %s (%s)",
                  hintmig_status_str(d.status), d.error ? d.error : "");
    ck_assert(d.verified && !d.verify_mismatches);
    ck_assert(s.postcopy == postcopy);
    ck_assert_int_eq(g_atomic_int_get(&src.written), NEW_PAGES);
    ck_assert_msg(g_atomic_int_get(&src.during_bulk) > 0,
                  "no page was first written during the bulk pass");
    /* The bulk pass went over the pages in use, not over all of RAM. */
    uint64_t used = NPAGES / USED_STRIDE + USED_BLOCK / HINTMIG_PAGE_SIZE;
    ck_assert_msg(s.normal_pages + s.duplicate_pages < 4 * (used + NEW_PAGES),
                  "%" G_GUINT64_FORMAT " pages sent for %" G_GUINT64_FORMAT " in use",
                  s.normal_pages + s.duplicate_pages, used + NEW_PAGES);
    ck_assert_uint_gt(s.untouched_pages, NPAGES - 2 * (used + NEW_PAGES));
    ck_assert_uint_eq(d.untouched_pages, s.untouched_pages);
    for (unsigned i = 0; i < NEW_PAGES; i++) {
        const uint8_t *p = dst.ram + new_page(i) * HINTMIG_PAGE_SIZE;
        ck_assert_msg(p[0] == i % 251 + 1 && p[HINTMIG_PAGE_SIZE - 1] == i % 251 + 1,
                      "page %" G_GUINT64_FORMAT ", first written during the bulk "
                      "pass, did not arrive", new_page(i));
    }
    for (unsigned i = 0; i < STALE_PAGES; i++) {
        ck_assert_msg(dst.ram[stale_page(i) * HINTMIG_PAGE_SIZE] == 0,
                      "the destination kept its own page %" G_GUINT64_FORMAT
                      ", untouched on the source", stale_page(i));
    }
    ck_assert_msg(!memcmp(src.ram, dst.ram, RAM_SIZE), "RAM differs");
    hintmig_stats_clear(&s);
    hintmig_stats_clear(&d);
    side_free(&src);
    side_free(&dst);
    test_rmdir(dir);
    g_main_context_unref(ctx);
}

/*
 * A write the dirty tracker misses (here a host log that reports nothing)
 * after the page was sent.  Page digests compare what was sent with what
 * was applied, so both sides agree on the stale copy: the migration
 * completes and the destination lacks the write (docs/design.md,
 * Verification).  x-verify-full hashes both sides' RAM at the end and
 * fails it.
 */
static void missed_write(bool full)
{
    GMainContext *ctx = g_main_context_new();
    Side src, dst;
    g_autoptr(GError) err = NULL;
    int sv[2];

    side_init(&src, ctx, true, true);
    side_init(&dst, ctx, false, false);
    ck_assert(hintmig_set_capability(src.m, "x-verify-full", full, NULL));
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert_msg(hintmig_incoming_start_fd(dst.m, sv[1], &err), "%s", err->message);
    ck_assert_msg(hintmig_start_fd(src.m, sv[0], &err), "%s", err->message);
    run_until_done(ctx, &src, &dst);

    HintmigStats s;
    hintmig_get_stats(src.m, &s);
    bool arrived = !memcmp(src.ram + MISSED_PAGE * HINTMIG_PAGE_SIZE,
                           dst.ram + MISSED_PAGE * HINTMIG_PAGE_SIZE, HINTMIG_PAGE_SIZE);
    ck_assert(!arrived);                       /* the tracker did miss it */
    if (full) {
        ck_assert_msg(s.status == HINTMIG_STATUS_FAILED && s.error &&
                      strstr(s.error, "RAM verification failed"), "%s: %s",
                      hintmig_status_str(s.status), s.error ? s.error : "");
    } else {
        ck_assert_msg(s.status == HINTMIG_STATUS_COMPLETED, "%s: %s",
                      hintmig_status_str(s.status), s.error ? s.error : "");
    }
    hintmig_stats_clear(&s);
    side_free(&src);
    side_free(&dst);
    g_main_context_unref(ctx);
}

START_TEST(verify_full_catches_a_missed_write)
{
    missed_write(true);
}
END_TEST

START_TEST(page_digests_do_not_see_a_missed_write)
{
    missed_write(false);
}
END_TEST

START_TEST(precopy_sends_what_is_used)
{
    migrate_sparse(false);
}
END_TEST

START_TEST(postcopy_sends_what_is_used)
{
    migrate_sparse(true);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sparse");
    TCase *tc = tcase_create("sparse");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, precopy_sends_what_is_used);
    tcase_add_test(tc, postcopy_sends_what_is_used);
    tcase_add_test(tc, verify_full_catches_a_missed_write);
    tcase_add_test(tc, page_digests_do_not_see_a_missed_write);
    suite_add_tcase(s, tc);
    return test_run(s);
}
