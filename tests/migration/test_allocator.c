/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The guest's buddy allocator, on real guest RAM. */
#include <errno.h>

#include "guest/page_alloc.h"
#include "test_util.h"

#define RAM_SIZE (64u << 20)

static GuestRam *ram;
static GuestMem mem;

static void setup(void)
{
    GuestRamOptions o = { .size = RAM_SIZE, .numa_node = -1 };
    g_autoptr(GError) err = NULL;
    ram = guest_ram_new(&o, &err);
    ck_assert_msg(ram, "%s", err ? err->message : "");
    ck_assert(page_alloc_init(&mem, ram, &err));
}

static void teardown(void)
{
    guest_ram_free(ram);
}

static uint64_t zone_pages(void)
{
    return mem.npages - mem.sb->zone_start;
}

START_TEST(init_all_zone_free)
{
    g_autoptr(GError) err = NULL;

    ck_assert_uint_eq(mem.sb->free_pages, zone_pages());
    ck_assert_msg(page_alloc_check(&mem, &err), "%s", err ? err->message : "");
    /* 64 MiB has fifteen whole 4 MiB blocks after the metadata. */
    ck_assert_uint_ge(mem.sb->nr_free[GUEST_MAX_ORDER], 14);
}
END_TEST

START_TEST(exhaust_and_refill_merges_back)
{
    g_autoptr(GError) err = NULL;
    uint64_t total = mem.sb->free_pages;
    uint64_t blocks10 = mem.sb->nr_free[GUEST_MAX_ORDER];
    g_autofree uint32_t *pfns = g_new(uint32_t, total);
    g_autoptr(GHashTable) seen = g_hash_table_new(NULL, NULL);
    uint64_t n = 0;

    for (;;) {
        uint32_t pfn = page_alloc(&mem, 0, GPK_DATA, 0);
        if (pfn == GUEST_PFN_NONE) {
            break;
        }
        ck_assert(page_in_zone(&mem, pfn));
        ck_assert_msg(g_hash_table_add(seen, GUINT_TO_POINTER(pfn)),
                      "pfn %u handed out twice", pfn);
        pfns[n++] = pfn;
    }
    ck_assert_uint_eq(n, total);
    ck_assert_uint_eq(mem.sb->free_pages, 0);
    ck_assert(page_alloc_check(&mem, &err));
    for (uint64_t i = 0; i < n; i++) {
        ck_assert_int_eq(page_free(&mem, pfns[(i * 7919) % n], 0), 0);
    }
    ck_assert_uint_eq(mem.sb->free_pages, total);
    ck_assert_uint_eq(mem.sb->nr_free[GUEST_MAX_ORDER], blocks10);
    ck_assert_msg(page_alloc_check(&mem, &err), "%s", err ? err->message : "");
}
END_TEST

START_TEST(large_blocks_are_aligned)
{
    g_autoptr(GError) err = NULL;
    uint32_t a = page_alloc(&mem, GUEST_MAX_ORDER, GPK_HINT, 0);
    uint32_t b = page_alloc(&mem, 3, GPK_DATA, 0);

    ck_assert_uint_ne(a, GUEST_PFN_NONE);
    ck_assert_uint_eq(a % (1u << GUEST_MAX_ORDER), 0);
    ck_assert_uint_eq(b % 8, 0);
    for (uint32_t i = 0; i < (1u << GUEST_MAX_ORDER); i++) {
        ck_assert_uint_eq(mem.meta[a + i].state, GPS_ALLOC);
        ck_assert_uint_eq(mem.meta[a + i].kind, GPK_HINT);
    }
    ck_assert(page_alloc_check(&mem, &err));
    ck_assert_int_eq(page_free(&mem, a, GUEST_MAX_ORDER), 0);
    ck_assert_int_eq(page_free(&mem, b, 3), 0);
    ck_assert_uint_eq(mem.sb->free_pages, zone_pages());
    ck_assert(page_alloc_check(&mem, &err));
}
END_TEST

START_TEST(bad_frees_change_nothing)
{
    g_autoptr(GError) err = NULL;
    uint32_t p = page_alloc(&mem, 0, GPK_DATA, 0);
    uint64_t before = mem.sb->free_pages;

    ck_assert_int_eq(page_free(&mem, p, 1), -EINVAL);            /* wrong order */
    ck_assert_int_eq(page_free(&mem, 0, 0), -EINVAL);            /* superblock */
    ck_assert_int_eq(page_free(&mem, mem.npages, 0), -EINVAL);   /* past RAM */
    ck_assert_int_eq(page_free(&mem, p, GUEST_MAX_ORDER + 1), -EINVAL);
    ck_assert_uint_eq(mem.sb->free_pages, before);
    ck_assert_int_eq(page_free(&mem, p, 0), 0);
    ck_assert_int_eq(page_free(&mem, p, 0), -EINVAL);            /* double free */
    ck_assert(page_alloc_check(&mem, &err));
}
END_TEST

START_TEST(random_ops_match_a_model)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GHashTable) live = g_hash_table_new(NULL, NULL);  /* pfn -> order+1 */
    GRand *rnd = g_rand_new_with_seed(42);
    uint64_t used = 0;

    for (int i = 0; i < 20000; i++) {
        if (g_hash_table_size(live) && g_rand_int_range(rnd, 0, 100) < 45) {
            GHashTableIter it;
            gpointer k, v;
            g_hash_table_iter_init(&it, live);
            g_hash_table_iter_next(&it, &k, &v);
            unsigned order = GPOINTER_TO_UINT(v) - 1;
            ck_assert_int_eq(page_free(&mem, GPOINTER_TO_UINT(k), order), 0);
            used -= 1u << order;
            g_hash_table_iter_remove(&it);
        } else {
            unsigned order = g_rand_int_range(rnd, 0, 100) < 90 ? 0
                             : g_rand_int_range(rnd, 1, GUEST_MAX_ORDER + 1);
            uint32_t pfn = page_alloc(&mem, order, GPK_DATA, 1);
            if (pfn == GUEST_PFN_NONE) {
                continue;
            }
            ck_assert_uint_eq(pfn % (1u << order), 0);
            ck_assert(!g_hash_table_contains(live, GUINT_TO_POINTER(pfn)));
            g_hash_table_insert(live, GUINT_TO_POINTER(pfn),
                                GUINT_TO_POINTER(order + 1));
            used += 1u << order;
        }
        ck_assert_uint_eq(mem.sb->free_pages + used, zone_pages());
        if (i % 1000 == 0) {
            ck_assert_msg(page_alloc_check(&mem, &err), "step %d: %s", i,
                          err ? err->message : "");
        }
    }
    g_rand_free(rnd);
    ck_assert(page_alloc_check(&mem, &err));
}
END_TEST

START_TEST(corrupt_lists_are_caught_not_followed)
{
    g_autoptr(GError) err = NULL;
    uint32_t head = mem.sb->free_head[GUEST_MAX_ORDER];

    /* A link out of RAM: allocation refuses, the check names it. */
    mem.sb->free_head[GUEST_MAX_ORDER] = UINT32_MAX - 5;
    ck_assert_uint_eq(page_alloc(&mem, GUEST_MAX_ORDER, GPK_DATA, 0),
                      GUEST_PFN_NONE);
    ck_assert(!page_alloc_check(&mem, &err));
    ck_assert_ptr_nonnull(strstr(err->message, "outside RAM"));
    g_clear_error(&err);

    /* A loop. */
    mem.sb->free_head[GUEST_MAX_ORDER] = head;
    mem.meta[head].next = head;
    ck_assert(!page_alloc_check(&mem, &err));
    ck_assert_ptr_nonnull(err);
}
END_TEST

START_TEST(too_small_ram_is_refused)
{
    GuestRamOptions o = { .size = 4u << 20, .numa_node = -1 };
    g_autoptr(GError) err = NULL;
    GuestRam *small = guest_ram_new(&o, &err);
    GuestMem m;

    ck_assert(small);
    ck_assert(!page_alloc_init(&m, small, &err));
    ck_assert_ptr_nonnull(strstr(err->message, "too small"));
    guest_ram_free(small);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("allocator");
    TCase *tc = tcase_create("buddy");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, init_all_zone_free);
    tcase_add_test(tc, exhaust_and_refill_merges_back);
    tcase_add_test(tc, large_blocks_are_aligned);
    tcase_add_test(tc, bad_frees_change_nothing);
    tcase_add_test(tc, random_ops_match_a_model);
    tcase_add_test(tc, corrupt_lists_are_caught_not_followed);
    tcase_add_test(tc, too_small_ram_is_refused);
    suite_add_tcase(s, tc);
    return test_run(s);
}
