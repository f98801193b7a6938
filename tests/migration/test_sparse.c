/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A big guest that uses little of its RAM, embedded as test_embed.c does
 * (public API, the fake host of fake_host.c): the source sends the pages
 * it uses, tells the destination which pages were never touched, and still
 * catches the pages the guest touches for the first time while the bulk
 * pass runs.  And what verification covers when it compares pages as sent
 * and as applied, and what only x-verify-full does.
 */
#include <string.h>

#include "fake_host.h"
#include "test_util.h"

#define MiB (1024ull * 1024)
#define RAM_SIZE (1024 * MiB)
#define NPAGES (RAM_SIZE / HINTMIG_PAGE_SIZE)
#define USED_STRIDE 1024          /* the guest uses every 1024th page... */
#define USED_BLOCK (8 * MiB)      /* ...and one block at 256 MiB */
#define NEW_PAGES 1500            /* first touched while the bulk pass runs */
#define STALE_PAGES 64            /* the destination holds something there */

static const FakeHostRegion ram_region = {
    .name = "ram", .gpa = 0, .size = RAM_SIZE,
    .no_thp = true,                /* used pages stay scattered */
};

/* The source's "guest" that writes pages never touched before. */
typedef struct Writer {
    FakeHost *h;
    GThread *thread;
    gint stop;
    gint written;                 /* pages written */
    gint during_bulk;             /* ... of them while the bulk pass ran */
} Writer;

#define MISSED_PAGE (5 * USED_STRIDE)

/* As the VM stops, a write the host's dirty log misses. */
static void write_missed_page(FakeHost *h, void *opaque)
{
    (void)opaque;
    fake_host_write_page(h, 0, MISSED_PAGE, 0xee, true);
}

/* A stopped guest writes nothing: the writer is done before stop returns. */
static void writer_stop(FakeHost *h, void *opaque)
{
    Writer *w = opaque;
    (void)h;
    if (w->thread) {
        g_atomic_int_set(&w->stop, 1);
        g_thread_join(w->thread);
        w->thread = NULL;
    }
}

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

static uint8_t *ram(FakeHost *h)
{
    return h->regions[0].host;
}

static gpointer writer_thread(gpointer data)
{
    Writer *w = data;

    /* Start once the bulk pass runs ("remaining ram" below the total):
     * the source has looked at what is backed by then, so these pages are
     * new to it. */
    for (;;) {
        HintmigStats st;
        hintmig_get_stats(w->h->m, &st);
        bool sending = st.status == HINTMIG_STATUS_ACTIVE && st.ram_remaining < st.ram_total;
        bool over = st.status != HINTMIG_STATUS_ACTIVE &&
                    st.status != HINTMIG_STATUS_SETUP;
        hintmig_stats_clear(&st);
        if (sending || over || g_atomic_int_get(&w->stop)) {
            break;
        }
        g_usleep(1000);
    }
    for (unsigned i = 0; i < NEW_PAGES && !g_atomic_int_get(&w->stop); i++) {
        memset(ram(w->h) + new_page(i) * HINTMIG_PAGE_SIZE, (int)(i % 251 + 1),
               HINTMIG_PAGE_SIZE);
        g_atomic_int_inc(&w->written);
        HintmigStats st;
        hintmig_get_stats(w->h->m, &st);
        if (st.status == HINTMIG_STATUS_ACTIVE && st.rounds == 0) {
            g_atomic_int_inc(&w->during_bulk);
        }
        hintmig_stats_clear(&st);
        g_usleep(200);
    }
    return NULL;
}

/* The source's RAM: every USED_STRIDEth page, and a block at 256 MiB. */
static void fill_used(FakeHost *h, void *opaque)
{
    (void)opaque;
    for (uint64_t pfn = 0; pfn < NPAGES; pfn += USED_STRIDE) {
        memset(ram(h) + pfn * HINTMIG_PAGE_SIZE, (int)(pfn / USED_STRIDE % 200 + 1),
               HINTMIG_PAGE_SIZE);
    }
    for (uint64_t off = 0; off < USED_BLOCK; off += 8) {    /* incompressible */
        uint64_t x = off * 0x9e3779b97f4a7c15ull;
        memcpy(ram(h) + 256 * MiB + off, &x, 8);
    }
}

/* The destination's RAM: stale pages where the source has none. */
static void fill_stale(FakeHost *h, void *opaque)
{
    (void)opaque;
    for (unsigned i = 0; i < STALE_PAGES; i++) {
        memset(ram(h) + stale_page(i) * HINTMIG_PAGE_SIZE, 0xab, HINTMIG_PAGE_SIZE);
    }
}

/* The source (with @on_stop, and the host's own dirty log if @host_log)
 * or the destination. */
static FakeHost *sparse_host_new(GMainContext *ctx, bool source, bool host_log,
                                 FakeHostHook on_stop, void *opaque)
{
    FakeHostConfig cfg = {
        .regions = &ram_region, .nregions = 1,
        .uuid = "5c1ab7ed-0000-4000-8000-00000000005a", .state_size = 9,
        .host_log = host_log, .fill = source ? fill_used : fill_stale,
        .on_stop = on_stop, .opaque = opaque,
    };
    return fake_host_new(&cfg, ctx);
}

static void migrate_sparse(bool postcopy)
{
    GMainContext *ctx = g_main_context_new();
    Writer w = { 0 };
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = test_tmpdir();
    g_autofree char *uri = g_strdup_printf("unix:%s/mig.sock", dir);

    FakeHost *src = sparse_host_new(ctx, true, false, writer_stop, &w);
    FakeHost *dst = sparse_host_new(ctx, false, false, NULL, NULL);
    w.h = src;
    /* Raw at 8 MiB/s: the bulk pass (about 6 MiB) lasts long enough for
     * the writer to touch its pages while it runs. */
    ck_assert(hintmig_set_parameter(src->m, "compress-method", "none", NULL));
    ck_assert(hintmig_set_parameter(src->m, "max-bandwidth", "8M", NULL));
    if (postcopy) {
        ck_assert_msg(hintmig_set_capability(dst->m, "postcopy-ram", true, &err), "%s",
                      err ? err->message : "");
        ck_assert(hintmig_set_capability(src->m, "postcopy-ram", true, NULL));
    }
    fake_host_start_uri(src, dst, uri);
    w.thread = g_thread_new("writer", writer_thread, &w);
    if (postcopy) {
        /* Once the writer is done: then the switch cuts the bulk pass short. */
        while (g_atomic_int_get(&w.written) < NEW_PAGES &&
               !fake_host_finished(src->last)) {
            g_main_context_iteration(ctx, FALSE);
            g_usleep(1000);
        }
        ck_assert_msg(hintmig_start_postcopy(src->m, &err), "%s", err->message);
    }
    fake_host_run_until_done(src, dst, 120);

    HintmigStats s, d;
    fake_host_assert_completed(src, dst, &s, &d);
    ck_assert(s.postcopy == postcopy);
    ck_assert_int_eq(g_atomic_int_get(&w.written), NEW_PAGES);
    ck_assert_msg(g_atomic_int_get(&w.during_bulk) > 0,
                  "no page was first written during the bulk pass");
    /* The bulk pass went over the pages in use, not over all of RAM. */
    uint64_t used = NPAGES / USED_STRIDE + USED_BLOCK / HINTMIG_PAGE_SIZE;
    ck_assert_msg(s.normal_pages + s.duplicate_pages < 4 * (used + NEW_PAGES),
                  "%" G_GUINT64_FORMAT " pages sent for %" G_GUINT64_FORMAT " in use",
                  s.normal_pages + s.duplicate_pages, used + NEW_PAGES);
    ck_assert_uint_gt(s.untouched_pages, NPAGES - 2 * (used + NEW_PAGES));
    ck_assert_uint_eq(d.untouched_pages, s.untouched_pages);
    for (unsigned i = 0; i < NEW_PAGES; i++) {
        const uint8_t *p = ram(dst) + new_page(i) * HINTMIG_PAGE_SIZE;
        ck_assert_msg(p[0] == i % 251 + 1 && p[HINTMIG_PAGE_SIZE - 1] == i % 251 + 1,
                      "page %" G_GUINT64_FORMAT ", first written during the bulk "
                      "pass, did not arrive", new_page(i));
    }
    for (unsigned i = 0; i < STALE_PAGES; i++) {
        ck_assert_msg(ram(dst)[stale_page(i) * HINTMIG_PAGE_SIZE] == 0,
                      "the destination kept its own page %" G_GUINT64_FORMAT
                      ", untouched on the source", stale_page(i));
    }
    fake_host_assert_same_ram(src, dst);
    fake_host_assert_state_loaded(dst);
    hintmig_stats_clear(&s);
    hintmig_stats_clear(&d);
    writer_stop(src, &w);               /* if the migration never stopped it */
    fake_host_free(src);
    fake_host_free(dst);
    test_rmdir(dir);
    g_main_context_unref(ctx);
}

/*
 * A write the dirty tracker misses (here a host log that does not record
 * the write made at stop) after the page was sent.  Page digests compare
 * what was sent with what was applied, so both sides agree on the stale
 * copy: the migration completes and the destination lacks the write
 * (docs/design.md, Verification).  x-verify-full hashes both sides' RAM at
 * the end and fails it.
 */
static void missed_write(bool full)
{
    GMainContext *ctx = g_main_context_new();

    FakeHost *src = sparse_host_new(ctx, true, true, write_missed_page, NULL);
    FakeHost *dst = sparse_host_new(ctx, false, false, NULL, NULL);
    ck_assert(hintmig_set_capability(src->m, "x-verify-full", full, NULL));
    fake_host_start_socketpair(src, dst);
    fake_host_run_until_done(src, dst, 120);

    HintmigStats s;
    hintmig_get_stats(src->m, &s);
    bool arrived = !memcmp(ram(src) + MISSED_PAGE * HINTMIG_PAGE_SIZE,
                           ram(dst) + MISSED_PAGE * HINTMIG_PAGE_SIZE, HINTMIG_PAGE_SIZE);
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
    fake_host_free(src);
    fake_host_free(dst);
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
