/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The destination's userfaultfd engine on the real kernel: which faults go
 * to the source and which are served here, placement and duplicates, a link
 * that goes down and comes back, and completion.
 */
#include <string.h>
#include <sys/mman.h>

#include "migration/bitmap.h"
#include "migration/ram_digest.h"
#include "migration/uffd_postcopy.h"
#include "test_util.h"
#include "test_ram.h"

#define NPAGES 64

typedef struct Fixture {
    HmRam *ram;
    UffdPostcopy *pc;
    unsigned long *hinted;
    uint64_t digests[NPAGES];
    GAsyncQueue *requests;    /* pfn + 1 per page requested */
    gint calls;
} Fixture;

static bool record_request(void *opaque, const uint64_t *pfns, unsigned n)
{
    Fixture *f = opaque;
    for (unsigned i = 0; i < n; i++) {
        g_async_queue_push(f->requests, GSIZE_TO_POINTER(pfns[i] + 1));
    }
    g_atomic_int_inc(&f->calls);
    return true;
}

typedef struct Touch {
    Fixture *f;
    uint64_t pfn;
    uint8_t seen;
} Touch;

static gpointer toucher(gpointer data)
{
    Touch *t = data;
    t->seen = *(volatile uint8_t *)hm_ram_page(t->f->ram, t->pfn);
    return NULL;
}

static GThread *touch(Touch *t, Fixture *f, uint64_t pfn)
{
    *t = (Touch) { f, pfn, 0xee };
    return g_thread_new("touch", toucher, t);
}

static uint64_t next_request(Fixture *f)
{
    gpointer v = g_async_queue_timeout_pop(f->requests, 5 * G_USEC_PER_SEC);
    ck_assert_msg(v, "no page request within 5 s");
    return GPOINTER_TO_SIZE(v) - 1;
}

/* Places page @pfn filled with @byte (0: a zero page). */
static void place(Fixture *f, uint64_t pfn, uint8_t byte)
{
    g_autofree uint8_t *data = g_malloc((size_t)PAGE_BATCH_MAX * HM_PAGE_SIZE);
    PageStaged b = { .n = 1, .data = data };
    b.pfns[0] = pfn;
    b.zero[0] = byte == 0;
    memset(data, byte, HM_PAGE_SIZE);
    g_autoptr(GError) err = NULL;
    ck_assert_msg(uffd_postcopy_place(f->pc, &b, f->digests, &err), "%s",
                  err ? err->message : "");
}

/*
 * Pages 0-31 missing; 32-39 written before the switch; 40-47 hinted (with
 * stale bytes that must not show); 48-63 never touched (zero).
 */
static void fixture_start(Fixture *f)
{
    g_autoptr(GError) err = NULL;
    memset(f, 0, sizeof(*f));
    f->ram = test_ram_new(NPAGES * HM_PAGE_SIZE, &err);
    ck_assert_msg(f->ram, "%s", err ? err->message : "");
    for (uint64_t pfn = 0; pfn < 48; pfn++) {
        memset(hm_ram_page(f->ram, pfn), 0x10 + (int)pfn, HM_PAGE_SIZE);
    }
    f->pc = uffd_postcopy_new(f->ram, &err);
    ck_assert_msg(f->pc, "%s", err ? err->message : "");
    hm_bitmap_set_range(uffd_postcopy_missing(f->pc), 0, 32);
    f->hinted = hm_bitmap_new(NPAGES);
    hm_bitmap_set_range(f->hinted, 40, 8);
    /* The receiver drops hinted pages' stale copies when the hints come. */
    madvise(hm_ram_page(f->ram, 40), 8 * HM_PAGE_SIZE, MADV_DONTNEED);
    f->requests = g_async_queue_new();
    ck_assert_msg(uffd_postcopy_start(f->pc, f->hinted, 0, record_request, f, &err),
                  "%s", err ? err->message : "");
}

static void fixture_stop(Fixture *f)
{
    uffd_postcopy_free(f->pc);
    test_ram_free(f->ram);
    g_free(f->hinted);
    g_async_queue_unref(f->requests);
}

START_TEST(faults_go_where_they_belong)
{
    Fixture f;
    Touch t;
    fixture_start(&f);

    /* A missing page: asked for once, placed, the vCPU wakes with it. */
    GThread *th = touch(&t, &f, 5);
    ck_assert_uint_eq(next_request(&f), 5);
    place(&f, 5, 0xa5);
    g_thread_join(th);
    ck_assert_uint_eq(t.seen, 0xa5);
    ck_assert_uint_eq(f.digests[5], ram_digest(hm_ram_page(f.ram, 5), HM_PAGE_SIZE, 0));

    /* Present, hinted and zero pages never reach the source. */
    ck_assert_uint_eq(((uint8_t *)hm_ram_page(f.ram, 33))[0], 0x10 + 33);
    th = touch(&t, &f, 44);
    g_thread_join(th);
    ck_assert_uint_eq(t.seen, 0);
    th = touch(&t, &f, 60);
    g_thread_join(th);
    ck_assert_uint_eq(t.seen, 0);
    ck_assert_ptr_null(g_async_queue_timeout_pop(f.requests, 100000));

    UffdPostcopyStats st = uffd_postcopy_stats(f.pc);
    ck_assert_uint_eq(st.requested_pages, 1);
    ck_assert_uint_eq(st.hinted_requested, 0);
    ck_assert_uint_eq(st.faults_remote, 1);
    ck_assert_uint_ge(st.faults_local, 1);     /* page 60; 44 unless filled first */
    ck_assert_uint_eq(st.remaining, 31);
    ck_assert_uint_eq(st.lat_samples, 1);
    fixture_stop(&f);
}
END_TEST

START_TEST(second_copy_is_dropped)
{
    Fixture f;
    fixture_start(&f);
    place(&f, 7, 0x77);
    place(&f, 7, 0x99);                          /* pushed and requested */
    ck_assert_uint_eq(((uint8_t *)hm_ram_page(f.ram, 7))[100], 0x77);
    place(&f, 33, 0x99);                         /* not missing at all */
    ck_assert_uint_eq(((uint8_t *)hm_ram_page(f.ram, 33))[0], 0x10 + 33);
    UffdPostcopyStats st = uffd_postcopy_stats(f.pc);
    ck_assert_uint_eq(st.duplicate_pages, 2);
    ck_assert_uint_eq(st.placed_pages, 1);
    fixture_stop(&f);
}
END_TEST

START_TEST(link_down_then_up)
{
    Fixture f;
    Touch t;
    fixture_start(&f);
    uffd_postcopy_link(f.pc, false);
    GThread *th = touch(&t, &f, 9);
    g_usleep(100000);
    ck_assert_int_eq(g_atomic_int_get(&f.calls), 0);   /* nowhere to ask */
    ck_assert_uint_eq(uffd_postcopy_stats(f.pc).faults_remote, 1);
    uffd_postcopy_link(f.pc, true);                   /* asked again */
    ck_assert_uint_eq(next_request(&f), 9);
    place(&f, 9, 0x42);
    g_thread_join(th);
    ck_assert_uint_eq(t.seen, 0x42);
    fixture_stop(&f);
}
END_TEST

START_TEST(complete_then_released)
{
    Fixture f;
    fixture_start(&f);
    ck_assert(!uffd_postcopy_wait_all(f.pc, 50));
    for (uint64_t pfn = 0; pfn < 32; pfn++) {
        place(&f, pfn, pfn % 3 ? 0x30 + (uint8_t)pfn : 0);
    }
    ck_assert(uffd_postcopy_wait_all(f.pc, 1000));
    g_autoptr(GError) err = NULL;
    ck_assert_msg(uffd_postcopy_finish(f.pc, &err), "%s", err ? err->message : "");
    ck_assert_uint_eq(((uint8_t *)hm_ram_page(f.ram, 4))[0], 0x34);
    ck_assert_uint_eq(((uint8_t *)hm_ram_page(f.ram, 3))[0], 0);
    ck_assert_uint_eq(f.digests[3], ram_digest_zero_page());
    /* Released: an untouched page faults in as plain memory. */
    ck_assert_uint_eq(((uint8_t *)hm_ram_page(f.ram, 62))[0], 0);
    ck_assert_uint_eq(uffd_postcopy_stats(f.pc).hint_filled, 8);
    fixture_stop(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("uffd_postcopy");
    TCase *tc = tcase_create("uffd");
    g_autoptr(GError) err = NULL;

    if (!uffd_postcopy_probe(&err)) {
        test_skip("uffd_postcopy", err->message);
    } else {
        tcase_add_test(tc, faults_go_where_they_belong);
        tcase_add_test(tc, second_copy_is_dropped);
        tcase_add_test(tc, link_down_then_up);
        tcase_add_test(tc, complete_then_released);
    }
    suite_add_tcase(s, tc);
    return test_run(s);
}
