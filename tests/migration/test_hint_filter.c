/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The free page hint filter: when a hinted page may stay off the wire. */
#include <string.h>
#include <sys/mman.h>

#include "migration/bitmap.h"
#include "migration/hint_filter.h"
#include "test_util.h"
#include "test_ram.h"

#define NPAGES 8192u     /* 32 MiB */

static HmRam *ram;
static HintFilter *f;

static void setup(void)
{
    ram = test_ram_new((uint64_t)NPAGES * HM_PAGE_SIZE, NULL);
    f = hint_filter_new(ram);
}

static void teardown(void)
{
    hint_filter_free(f);
    test_ram_free(ram);
}

static uint64_t gpa(uint64_t pfn) { return pfn << HM_PAGE_SHIFT; }

START_TEST(stale_ids_are_ignored)
{
    g_autofree unsigned long *none = hm_bitmap_new(NPAGES);
    hint_filter_begin(f, 7);
    hint_filter_add(f, 6, gpa(0), 1024 * HM_PAGE_SIZE);    /* old id */
    hint_filter_add(f, 0, gpa(0), 1024 * HM_PAGE_SIZE);    /* STOP is no id */
    hint_filter_add(f, 7, gpa(2048), 1024 * HM_PAGE_SIZE);
    hint_filter_end(f);
    hint_filter_add(f, 7, gpa(4096), 1024 * HM_PAGE_SIZE); /* after the end */
    ck_assert_uint_eq(hint_filter_commit(f, none, false), 1024);
    ck_assert(!hint_filter_skip(f, 0));
    ck_assert(hint_filter_skip(f, 2048));
    ck_assert(!hint_filter_skip(f, 4096));
    HintFilterStats s = hint_filter_stats(f);
    ck_assert_uint_eq(s.hinted_pages, 1024);
    ck_assert_uint_eq(s.stale_pages, 3 * 1024);
}
END_TEST

/* A page dirtied after its id was issued is sent, hint or not. */
START_TEST(pages_dirtied_since_the_request_are_sent)
{
    g_autofree unsigned long *dirty = hm_bitmap_new(NPAGES);
    hint_filter_begin(f, 3);
    hint_filter_add(f, 3, gpa(0), 2048 * HM_PAGE_SIZE);
    hm_bitmap_set_bit(dirty, 10);
    hm_bitmap_set_bit(dirty, 2047);
    hm_bitmap_set_bit(dirty, 5000);          /* dirty, never hinted */
    ck_assert_uint_eq(hint_filter_commit(f, dirty, false), 2046);
    ck_assert(!hint_filter_skip(f, 10));
    ck_assert(!hint_filter_skip(f, 2047));
    ck_assert(hint_filter_skip(f, 11));
    ck_assert_uint_eq(hint_filter_stats(f).dirty_dropped, 2);

    /* A later write to a kept page puts it back on the wire. */
    hm_bitmap_zero(dirty, NPAGES);
    hm_bitmap_set_bit(dirty, 100);
    hint_filter_apply_dirty(f, dirty);
    ck_assert(!hint_filter_skip(f, 100));
    HintFilterStats s = hint_filter_stats(f);
    ck_assert_uint_eq(s.rewritten, 1);
    ck_assert_uint_eq(s.skipped, 2045);
    ck_assert_uint_eq(hm_bitmap_count(hint_filter_set(f), NPAGES), 2045);
}
END_TEST

/*
 * A guest that zeroes pages as it allocates them (init_on_alloc) writes the
 * pages its driver takes to report: written but zero, they still join.
 * Not with poison, where the guest expects its pattern instead.
 */
START_TEST(hinted_pages_written_with_zeros_join)
{
    g_autofree unsigned long *dirty = hm_bitmap_new(NPAGES);
    hint_filter_begin(f, 5);
    hint_filter_add(f, 5, gpa(0), 64 * HM_PAGE_SIZE);
    for (uint64_t p = 0; p < 64; p++) {
        hm_bitmap_set_bit(dirty, p);          /* all written during the round */
    }
    memset(hm_ram_page(ram, 3), 0xa5, 1);     /* this one holds data again */
    memset((char *)hm_ram_page(ram, 40) + HM_PAGE_SIZE - 1, 1, 1);
    ck_assert_uint_eq(hint_filter_commit(f, dirty, true), 62);
    ck_assert(hint_filter_skip(f, 0));
    ck_assert(!hint_filter_skip(f, 3));
    ck_assert(!hint_filter_skip(f, 40));
    ck_assert(hint_filter_skip(f, 63));
    HintFilterStats s = hint_filter_stats(f);
    ck_assert_uint_eq(s.dirty_zero, 62);

    /* With poison nothing written joins. */
    hint_filter_begin(f, 6);
    hint_filter_add(f, 6, gpa(1024), 64 * HM_PAGE_SIZE);
    hm_bitmap_zero(dirty, NPAGES);
    for (uint64_t p = 1024; p < 1088; p++) {
        hm_bitmap_set_bit(dirty, p);
    }
    ck_assert_uint_eq(hint_filter_commit(f, dirty, false), 0);
    ck_assert(!hint_filter_skip(f, 1024));
}
END_TEST

START_TEST(ranges_past_ram_are_cut)
{
    g_autofree unsigned long *none = hm_bitmap_new(NPAGES);
    hint_filter_begin(f, 2);
    hint_filter_add(f, 2, gpa(NPAGES - 4), 64 * HM_PAGE_SIZE);
    hint_filter_add(f, 2, gpa(NPAGES + 10), 64 * HM_PAGE_SIZE);
    ck_assert_uint_eq(hint_filter_commit(f, none, false), 4);
}
END_TEST

static uint64_t lazyfree_kb(void)
{
    g_autofree char *s = NULL;
    ck_assert(g_file_get_contents("/proc/self/smaps_rollup", &s, NULL, NULL));
    char *p = strstr(s, "LazyFree:");
    ck_assert_ptr_nonnull(p);
    return g_ascii_strtoull(p + 9, NULL, 10);
}

/* Pages kept off the wire are released on the source: LazyFree grows by them. */
START_TEST(skipped_pages_are_madv_freed)
{
    g_autofree unsigned long *none = hm_bitmap_new(NPAGES);
    memset(test_ram_host(ram), 0x11, ram->size);
    uint64_t before = lazyfree_kb();
    hint_filter_begin(f, 9);
    hint_filter_add(f, 9, gpa(1024), 4096 * HM_PAGE_SIZE);   /* 16 MiB */
    ck_assert_uint_eq(hint_filter_commit(f, none, true), 4096);
    uint64_t after = lazyfree_kb();
    ck_assert_uint_ge(after - before, 15 * 1024);
    ck_assert_uint_eq(hint_filter_stats(f).madv_freed_bytes, 16u << 20);
    /* The guest writing a released page still works (and will be sent). */
    ((uint8_t *)hm_ram_page(ram, 2000))[0] = 7;
    ck_assert_uint_eq(((uint8_t *)hm_ram_page(ram, 2000))[0], 7);
}
END_TEST

/* Releasing hinted pages follows each region's backing, and says when it cannot. */
START_TEST(release_per_backing)
{
    const uint64_t sz = 64 * HM_PAGE_SIZE;
    uint8_t *a = mmap(NULL, 2 * sz, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert(a != MAP_FAILED);
    memset(a, 0x5a, 2 * sz);
    HintmigRamRegion r[2] = {
        { .name = "anon", .gpa = 0, .host = a, .size = sz,
          .backing = HINTMIG_BACKING_ANON, .fd = -1 },
        /* Declared hugetlb: a 4 KiB hint inside it is never released. */
        { .name = "huge", .gpa = HINTMIG_GPA_NONE, .host = a + sz, .size = sz,
          .backing = HINTMIG_BACKING_HUGETLB, .fd = -1 },
    };
    HmRam *two = hm_ram_new(r, 2, NULL);
    ck_assert_ptr_nonnull(two);
    char why[96] = "";
    /* A run across both regions: the anonymous half goes, the other stays. */
    ck_assert_uint_eq(hm_ram_discard(two, 32, 64, why, sizeof(why)), 32 * HM_PAGE_SIZE);
    ck_assert_msg(strstr(why, "'huge'") && strstr(why, "hugetlbfs"), "%s", why);
    ck_assert_uint_eq(a[sz + 5], 0x5a);              /* kept as it was */
    hm_ram_free(two);
    munmap(a, 2 * sz);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hint_filter");
    TCase *tc = tcase_create("filter");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, stale_ids_are_ignored);
    tcase_add_test(tc, pages_dirtied_since_the_request_are_sent);
    tcase_add_test(tc, hinted_pages_written_with_zeros_join);
    tcase_add_test(tc, ranges_past_ram_are_cut);
    tcase_add_test(tc, skipped_pages_are_madv_freed);
    tcase_add_test(tc, release_per_backing);
    suite_add_tcase(s, tc);
    return test_run(s);
}
