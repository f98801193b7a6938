/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Dirty tracking: each backend reports every page written between two syncs
 * and no other page.  A backend the running kernel lacks is skipped with the
 * reason, never passed.
 */
#include <sys/mman.h>

#include "migration/bitmap.h"
#include "migration/dirty_tracker.h"
#include "vm/guest_ram.h"
#include "test_util.h"

#define NPAGES 16384u            /* 64 MiB */
#define LEN ((size_t)NPAGES * GUEST_PAGE_SIZE)

static HintmigDirtyBackend backend;
static uint8_t *mem;
static DirtyTracker *tracker;
static unsigned long *map;

static void map_mem(int advice)
{
    mem = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
               -1, 0);
    ck_assert(mem != MAP_FAILED);
    ck_assert_int_eq(madvise(mem, LEN, advice), 0);
    map = hm_bitmap_new(NPAGES);
}

static void start_tracker(void)
{
    g_autoptr(GError) err = NULL;
    tracker = dirty_tracker_new(mem, LEN, backend, NULL, NULL, &err);
    ck_assert_msg(tracker, "%s", err ? err->message : "");
    ck_assert_msg(dirty_tracker_start(tracker, &err), "%s", err ? err->message : "");
    ck_assert_uint_eq(dirty_tracker_backend(tracker), backend);
}

static void teardown(void)
{
    dirty_tracker_free(tracker);
    tracker = NULL;
    munmap(mem, LEN);
    g_free(map);
}

static void sync_into_map(void)
{
    g_autoptr(GError) err = NULL;
    hm_bitmap_zero(map, NPAGES);
    ck_assert_msg(dirty_tracker_sync(tracker, map, &err), "%s",
                  err ? err->message : "");
}

/* Writes a random set of pages; returns it as a bitmap. */
static unsigned long *write_random(GRand *r, unsigned count)
{
    unsigned long *want = hm_bitmap_new(NPAGES);
    for (unsigned i = 0; i < count; i++) {
        unsigned p = g_rand_int_range(r, 0, NPAGES);
        mem[(size_t)p * GUEST_PAGE_SIZE + g_rand_int_range(r, 0, GUEST_PAGE_SIZE)]++;
        hm_bitmap_set_bit(want, p);
    }
    return want;
}

static void assert_map_equals(const unsigned long *want, const char *round)
{
    for (unsigned p = 0; p < NPAGES; p++) {
        ck_assert_msg(hm_bitmap_test_bit(map, p) == hm_bitmap_test_bit(want, p),
                      "%s: %s: page %u %s", hintmig_dirty_backend_name(backend), round, p,
                      hm_bitmap_test_bit(want, p) ? "written but not reported"
                                               : "reported but not written");
    }
}

START_TEST(reports_exactly_the_written_pages)
{
    GRand *r = g_rand_new_with_seed(7);
    volatile uint8_t sink = 0;

    map_mem(MADV_NOHUGEPAGE);
    memset(mem, 0x11, LEN / 2);          /* first half populated, rest never touched */
    start_tracker();

    /* Reads, of populated and of never-touched pages, are not writes. */
    for (unsigned p = 0; p < NPAGES; p += 97) {
        sink += mem[(size_t)p * GUEST_PAGE_SIZE];
    }
    (void)sink;
    g_autofree unsigned long *w1 = write_random(r, 3000);
    sync_into_map();
    assert_map_equals(w1, "round 1");

    g_autofree unsigned long *w2 = write_random(r, 500);
    sync_into_map();
    assert_map_equals(w2, "round 2 (round 1's pages must be clean again)");

    g_autofree unsigned long *none = hm_bitmap_new(NPAGES);
    sync_into_map();
    assert_map_equals(none, "round 3 (no writes)");

    DirtyTrackerStats st = dirty_tracker_stats(tracker);
    ck_assert_uint_eq(st.syncs, 3);
    ck_assert_uint_eq(st.pages_reported, hm_bitmap_count(w1, NPAGES) +
                                         hm_bitmap_count(w2, NPAGES));
    g_rand_free(r);
}
END_TEST

/*
 * Pages empty when tracking starts are not protected (uffd-wp): whatever
 * fills them later must still show as a write: a first write, a write
 * after a read (which maps the shared zero page), a write to a page
 * dropped since.  A read alone is not a write.
 */
START_TEST(first_touch_is_reported)
{
    volatile uint8_t sink = 0;
    g_autofree unsigned long *want = hm_bitmap_new(NPAGES);

    map_mem(MADV_NOHUGEPAGE);
    memset(mem, 0x22, LEN / 4);          /* the first quarter is backed */
    start_tracker();
    for (unsigned p = NPAGES / 2; p < NPAGES; p += 7) {
        sink += mem[(size_t)p * GUEST_PAGE_SIZE];     /* read only */
    }
    (void)sink;
    sync_into_map();
    g_autofree unsigned long *none = hm_bitmap_new(NPAGES);
    assert_map_equals(none, "reads of empty pages");

    ck_assert_int_eq(madvise(mem, 64 * GUEST_PAGE_SIZE, MADV_DONTNEED), 0);
    for (unsigned p = 0; p < 64; p += 2) {           /* dropped, then written */
        mem[(size_t)p * GUEST_PAGE_SIZE] = 1;
        hm_bitmap_set_bit(want, p);
    }
    for (unsigned p = NPAGES / 4 + 3; p < NPAGES; p += 101) {   /* never touched */
        mem[(size_t)p * GUEST_PAGE_SIZE + 9] = 2;
        hm_bitmap_set_bit(want, p);
    }
    for (unsigned p = NPAGES / 2; p < NPAGES; p += 7 * 13) {    /* read, then written */
        mem[(size_t)p * GUEST_PAGE_SIZE] = 3;
        hm_bitmap_set_bit(want, p);
    }
    sync_into_map();
    assert_map_equals(want, "first writes");
    sync_into_map();
    assert_map_equals(none, "first writes, synced again");
}
END_TEST

START_TEST(every_page_once)
{
    map_mem(MADV_NOHUGEPAGE);
    start_tracker();
    for (unsigned p = 0; p < NPAGES; p++) {
        mem[(size_t)p * GUEST_PAGE_SIZE] = 1;
    }
    sync_into_map();
    ck_assert_uint_eq(hm_bitmap_count(map, NPAGES), NPAGES);
    sync_into_map();
    ck_assert_uint_eq(hm_bitmap_count(map, NPAGES), 0);
}
END_TEST

START_TEST(thp_backed_memory_loses_no_write)
{
    GRand *r = g_rand_new_with_seed(11);

    map_mem(MADV_HUGEPAGE);
    memset(mem, 0x22, LEN);
    start_tracker();
    g_autofree unsigned long *w = write_random(r, 200);
    sync_into_map();
    /* Huge pages may be reported whole; a written page must never be missed. */
    for (unsigned p = 0; p < NPAGES; p++) {
        ck_assert_msg(!hm_bitmap_test_bit(w, p) || hm_bitmap_test_bit(map, p),
                      "page %u written but not reported", p);
    }
    g_rand_free(r);
}
END_TEST

START_TEST(restart_after_stop)
{
    GRand *r = g_rand_new_with_seed(3);
    g_autoptr(GError) err = NULL;

    map_mem(MADV_NOHUGEPAGE);
    memset(mem, 1, LEN);
    start_tracker();
    g_autofree unsigned long *w0 = write_random(r, 100);
    dirty_tracker_stop(tracker);
    g_autofree unsigned long *untracked = write_random(r, 100);
    ck_assert(dirty_tracker_start(tracker, &err));
    g_autofree unsigned long *w1 = write_random(r, 100);
    sync_into_map();
    assert_map_equals(w1, "after restart");
    g_rand_free(r);
}
END_TEST

START_TEST(sync_before_start_is_an_error)
{
    g_autoptr(GError) err = NULL;

    map_mem(MADV_NOHUGEPAGE);
    tracker = dirty_tracker_new(mem, LEN, backend, NULL, NULL, &err);
    ck_assert(tracker);
    ck_assert(!dirty_tracker_sync(tracker, map, &err));
    ck_assert_ptr_nonnull(err);
}
END_TEST

static int quiesce_calls;

static void count_quiesce(void *opaque, bool pause)
{
    (void)opaque;
    quiesce_calls += pause ? 1 : 0;
}

START_TEST(quiesce_only_where_sync_is_not_atomic)
{
    g_autoptr(GError) err = NULL;

    map_mem(MADV_NOHUGEPAGE);
    quiesce_calls = 0;
    tracker = dirty_tracker_new(mem, LEN, backend, count_quiesce, NULL, &err);
    ck_assert(tracker);
    ck_assert(dirty_tracker_start(tracker, &err));
    sync_into_map();
    ck_assert_int_eq(quiesce_calls, backend == HINTMIG_DIRTY_SOFT_DIRTY ? 1 : 0);
}
END_TEST

START_TEST(bad_range_is_refused)
{
    g_autoptr(GError) err = NULL;
    ck_assert_ptr_null(dirty_tracker_new((void *)0x1001, 4096, HINTMIG_DIRTY_AUTO,
                                         NULL, NULL, &err));
    ck_assert_ptr_nonnull(err);
}
END_TEST

static TCase *backend_case(HintmigDirtyBackend kind)
{
    TCase *tc = tcase_create(hintmig_dirty_backend_name(kind));
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, reports_exactly_the_written_pages);
    tcase_add_test(tc, every_page_once);
    tcase_add_test(tc, first_touch_is_reported);
    tcase_add_test(tc, thp_backed_memory_loses_no_write);
    tcase_add_test(tc, restart_after_stop);
    tcase_add_test(tc, sync_before_start_is_an_error);
    tcase_add_test(tc, quiesce_only_where_sync_is_not_atomic);
    return tc;
}

int main(int argc, char **argv)
{
    Suite *s = suite_create("dirty_tracker");
    static const HintmigDirtyBackend kinds[] = {
        HINTMIG_DIRTY_UFFD_WP, HINTMIG_DIRTY_SOFT_DIRTY,
    };
    TCase *common = tcase_create("common");

    tcase_add_test(common, bad_range_is_refused);
    suite_add_tcase(s, common);
    /* Each backend runs in its own process image: the fixture reads it. */
    for (size_t i = 0; i < G_N_ELEMENTS(kinds); i++) {
        g_autoptr(GError) why = NULL;
        if (argc > 1 && strcmp(argv[1], hintmig_dirty_backend_name(kinds[i]))) {
            continue;
        }
        if (!hintmig_dirty_backend_probe(kinds[i], &why)) {
            test_skip("dirty_tracker", why->message);
            continue;
        }
        if (argc > 1) {
            backend = kinds[i];
            suite_add_tcase(s, backend_case(kinds[i]));
        }
    }
    return test_run(s);
}
