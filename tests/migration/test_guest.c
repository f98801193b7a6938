/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Page content, guest workloads and the self-check. */
#include <string.h>
#include <zstd.h>

#include "guest/guest.h"
#include "guest/page_content.h"
#include "test_util.h"

#define RAM_SIZE (64u << 20)

static GuestRam *new_ram(void)
{
    GuestRamOptions o = { .size = RAM_SIZE, .numa_node = -1 };
    g_autoptr(GError) err = NULL;
    GuestRam *r = guest_ram_new(&o, &err);
    ck_assert_msg(r, "%s", err ? err->message : "");
    return r;
}

static Guest *boot(GuestRam *ram, const char *wl_str, unsigned nvcpus)
{
    WorkloadConfig wl;
    g_autoptr(GError) err = NULL;
    ck_assert_msg(workload_parse(wl_str, ram->size, &wl, &err), "%s",
                  err ? err->message : "");
    Guest *g = guest_new(ram, nvcpus, &wl);
    ck_assert_msg(guest_boot(g, &err), "%s", err ? err->message : "");
    return g;
}

/* Runs @steps steps on every vCPU, ignoring pacing (time runs fast). */
static void run(Guest *g, GuestVcpuState *st, GuestVcpuPace *pace,
                unsigned nvcpus, int steps, int64_t *clock)
{
    for (int i = 0; i < steps; i++) {
        for (unsigned v = 0; v < nvcpus; v++) {
            int64_t wake;
            g_autoptr(GError) err = NULL;
            ck_assert_msg(guest_vcpu_step(g, &st[v], &pace[v], *clock, &wake, &err),
                          "%s", err ? err->message : "");
        }
        *clock += 10000;
    }
}

START_TEST(content_is_deterministic_and_distinct)
{
    uint8_t a[GUEST_PAGE_SIZE], b[GUEST_PAGE_SIZE];

    page_content_fill(a, 1234, 7);
    page_content_fill(b, 1234, 7);
    ck_assert_mem_eq(a, b, GUEST_PAGE_SIZE);
    ck_assert(page_content_check(a, 1234, 7));
    ck_assert(!page_content_check(a, 1234, 8));   /* stale generation */
    ck_assert(!page_content_check(a, 1235, 7));   /* misplaced page */
    a[GUEST_PAGE_SIZE - 1] ^= 1;
    ck_assert(!page_content_check(a, 1234, 7));   /* one bit flipped */
}
END_TEST

START_TEST(content_mixes_random_and_compressible)
{
    uint8_t page[GUEST_PAGE_SIZE], out[ZSTD_COMPRESSBOUND(GUEST_PAGE_SIZE)];
    unsigned random_pages = 0, n = 4000;
    size_t text_bytes = 0, text_pages = 0;

    for (unsigned pfn = 100; pfn < 100 + n; pfn++) {
        page_content_fill(page, pfn, 1);
        size_t c = ZSTD_compress(out, sizeof(out), page, sizeof(page), 1);
        ck_assert(!ZSTD_isError(c));
        if (page_content_is_random(pfn, 1)) {
            random_pages++;
            ck_assert_uint_gt(c, GUEST_PAGE_SIZE * 95 / 100);
        } else {
            text_pages++;
            text_bytes += c;
        }
    }
    /* About a quarter random; text compresses to well under half. */
    ck_assert_uint_gt(random_pages, n / 5);
    ck_assert_uint_lt(random_pages, n * 3 / 10);
    ck_assert_uint_lt(text_bytes / text_pages, GUEST_PAGE_SIZE / 2);
}
END_TEST

START_TEST(self_check_ok_then_one_corrupt_page_fails)
{
    GuestRam *ram = new_ram();
    Guest *g = boot(ram, "churn,wss=8M,rate=0", 2);
    GuestVcpuState st[2];
    GuestVcpuPace pace[2] = { 0 };
    int64_t clock = 1;
    GuestCheck c;

    guest_vcpu_state_init(&st[0], 0);
    guest_vcpu_state_init(&st[1], 1);
    run(g, st, pace, 2, 200, &clock);

    guest_self_check(g, &c);
    g_autofree char *ok = guest_check_describe(&c);
    ck_assert_uint_eq(c.corrupt, 0);
    ck_assert_uint_gt(c.verified, 2048);     /* the working set at least */
    g_autofree char *expect = g_strdup_printf(
        "guest memory check: OK (%" G_GUINT64_FORMAT " pages verified)", c.verified);
    ck_assert_str_eq(ok, expect);
    uint64_t verified = c.verified;
    guest_check_clear(&c);

    /* Flip one byte of one allocated data page. */
    uint64_t victim = 0;
    for (uint64_t pfn = g->mem.sb->zone_start; pfn < ram->npages; pfn++) {
        if (g->mem.meta[pfn].state == GPS_ALLOC && g->mem.meta[pfn].kind == GPK_DATA) {
            victim = pfn;
            break;
        }
    }
    ck_assert_uint_ne(victim, 0);
    ((uint8_t *)guest_ram_page(ram, victim))[2000] ^= 0x40;
    guest_self_check(g, &c);
    g_autofree char *bad = guest_check_describe(&c);
    ck_assert_uint_eq(c.corrupt, 1);
    ck_assert_uint_eq(c.verified, verified - 1);
    ck_assert_uint_eq(c.first_corrupt_pfn, victim);
    ck_assert(g_str_has_prefix(bad, "guest memory check: FAILED (1 pages corrupt)"));
    guest_check_clear(&c);
    guest_free(g);
    guest_ram_free(ram);
}
END_TEST

START_TEST(churn_bumps_generations)
{
    GuestRam *ram = new_ram();
    Guest *g = boot(ram, "churn,wss=4M,rate=0", 1);
    GuestVcpuState st;
    GuestVcpuPace pace = { 0 };
    int64_t clock = 1;
    GuestInfo info;

    guest_vcpu_state_init(&st, 0);
    run(g, &st, &pace, 1, 400, &clock);
    ck_assert(guest_info(g, &info));
    /* 1024 pages allocated at gen 1, then rewrites at higher generations. */
    ck_assert_uint_gt(info.writes, 1024 + 1000);
    uint32_t max_gen = 0;
    for (uint64_t pfn = g->mem.sb->zone_start; pfn < ram->npages; pfn++) {
        max_gen = MAX(max_gen, g->mem.meta[pfn].gen);
    }
    ck_assert_uint_gt(max_gen, 1);
    guest_free(g);
    guest_ram_free(ram);
}
END_TEST

START_TEST(fill_free_leaves_stale_free_memory)
{
    GuestRam *ram = new_ram();
    Guest *g = boot(ram, "fill-free,fill=32M,wss=2M,rate=0", 2);
    GuestVcpuState st[2];
    GuestVcpuPace pace[2] = { 0 };
    int64_t clock = 1;
    GuestCheck c;
    uint64_t free_at_boot = g->mem.sb->free_pages;

    guest_vcpu_state_init(&st[0], 0);
    guest_vcpu_state_init(&st[1], 1);
    run(g, st, pace, 2, 400, &clock);
    for (unsigned v = 0; v < 2; v++) {
        const GuestTask *t = guest_ram_page(ram, st[v].task_pfn);
        ck_assert_uint_eq(t->phase, GTP_CHURN);
        ck_assert_uint_eq(t->fill_count, (32u << 20) / GUEST_PAGE_SIZE / 2);
        ck_assert_uint_eq(t->free_count, t->fill_count);
    }
    /* Fill memory is free again, apart from the working set and tasks. */
    uint64_t wss_pages = (2u << 20) / GUEST_PAGE_SIZE;
    ck_assert_uint_ge(g->mem.sb->free_pages, free_at_boot - wss_pages - 16);
    /* Stale fill data is still there in freed pages. */
    uint64_t stale = 0;
    for (uint64_t pfn = g->mem.sb->zone_start; pfn < ram->npages; pfn++) {
        const GuestPageMeta *pm = &g->mem.meta[pfn];
        if (pm->state != GPS_ALLOC && pm->gen &&
            page_content_check(guest_ram_page(ram, pfn), pfn, pm->gen)) {
            stale++;
        }
    }
    /* All 8192 fill pages, less those the later working set reused. */
    ck_assert_uint_ge(stale, (32u << 20) / GUEST_PAGE_SIZE - wss_pages - 16);
    guest_self_check(g, &c);
    ck_assert_uint_eq(c.corrupt, 0);
    guest_check_clear(&c);
    guest_free(g);
    guest_ram_free(ram);
}
END_TEST

START_TEST(ram_plus_vcpu_state_is_the_whole_guest)
{
    GuestRam *a = new_ram(), *b = new_ram();
    Guest *ga = boot(a, "churn,wss=4M,rate=0", 2);
    GuestVcpuState st[2];
    GuestVcpuPace pace[2] = { 0 };
    int64_t clock = 1;
    GuestInfo ia, ib;
    GuestCheck c;

    guest_vcpu_state_init(&st[0], 0);
    guest_vcpu_state_init(&st[1], 1);
    run(ga, st, pace, 2, 100, &clock);
    ck_assert(guest_info(ga, &ia));

    /* Copy RAM and vCPU contexts only; a fresh Guest continues. */
    memcpy(b->host, a->host, RAM_SIZE);
    WorkloadConfig idle = { GWL_IDLE };
    Guest *gb = guest_new(b, 2, &idle);
    g_autoptr(GError) err = NULL;
    ck_assert(guest_boot(gb, &err));
    GuestVcpuPace pace_b[2] = { 0 };
    run(gb, st, pace_b, 2, 100, &clock);
    ck_assert(guest_info(gb, &ib));
    ck_assert_uint_eq(ib.boot_id, ia.boot_id);
    ck_assert_uint_eq(ib.wl.kind, GWL_CHURN);     /* not the new VM's "idle" */
    ck_assert_uint_gt(ib.writes, ia.writes);
    guest_self_check(gb, &c);
    ck_assert_uint_eq(c.corrupt, 0);
    guest_check_clear(&c);
    guest_free(ga);
    guest_free(gb);
    guest_ram_free(a);
    guest_ram_free(b);
}
END_TEST

START_TEST(corrupt_guest_panics_not_host)
{
    GuestRam *ram = new_ram();
    Guest *g = boot(ram, "churn,wss=4M,rate=0", 1);
    GuestVcpuState st;
    GuestVcpuPace pace = { 0 };
    int64_t clock = 1, wake;
    g_autoptr(GError) err = NULL;

    guest_vcpu_state_init(&st, 0);
    run(g, &st, &pace, 1, 50, &clock);
    GuestTask *t = guest_ram_page(ram, st.task_pfn);
    t->wss_dir = 0xfffffff0u;         /* points far outside RAM */
    ck_assert(!guest_vcpu_step(g, &st, &pace, clock, &wake, &err));
    ck_assert_ptr_nonnull(strstr(err->message, "corrupt"));
    g_clear_error(&err);

    st.task_pfn = 3;                  /* a metadata page, not a task */
    ck_assert(!guest_vcpu_step(g, &st, &pace, clock, &wake, &err));
    g_clear_error(&err);

    st.magic = 0;                     /* garbage vCPU state */
    ck_assert(!guest_vcpu_step(g, &st, &pace, clock, &wake, &err));
    guest_free(g);
    guest_ram_free(ram);
}
END_TEST

START_TEST(churn_rate_is_paced)
{
    GuestRam *ram = new_ram();
    Guest *g = boot(ram, "churn,wss=1M,rate=4M", 1);
    GuestVcpuState st;
    GuestVcpuPace pace = { 0 };
    int64_t now = 1000000, wake = 0;
    g_autoptr(GError) err = NULL;

    guest_vcpu_state_init(&st, 0);
    /* Allocation phase is not paced; finish it. */
    for (int i = 0; i < 10; i++) {
        ck_assert(guest_vcpu_step(g, &st, &pace, now, &wake, &err));
    }
    const GuestTask *t = guest_ram_page(ram, st.task_pfn);
    ck_assert_uint_eq(t->phase, GTP_CHURN);
    uint64_t w0 = t->writes;
    /* One simulated second at 4 MiB/s is 1024 page writes. */
    for (int64_t us = 0; us <= 1000000; us += 1000) {
        ck_assert(guest_vcpu_step(g, &st, &pace, now + us, &wake, &err));
    }
    ck_assert_uint_ge(t->writes - w0, 1000);
    ck_assert_uint_le(t->writes - w0, 1100);
    guest_free(g);
    guest_ram_free(ram);
}
END_TEST

START_TEST(workload_options)
{
    WorkloadConfig wl;
    g_autoptr(GError) err = NULL;
    uint64_t ram = 2ull << 30;

    ck_assert(workload_parse("idle", ram, &wl, &err));
    ck_assert_uint_eq(wl.kind, GWL_IDLE);
    ck_assert(workload_parse("churn,wss=128M,rate=2M", ram, &wl, &err));
    ck_assert_uint_eq(wl.kind, GWL_CHURN);
    ck_assert_uint_eq(wl.wss, 128u << 20);
    ck_assert_uint_eq(wl.rate, 2u << 20);
    ck_assert(workload_parse("fill-free,fill=1200M", ram, &wl, &err));
    ck_assert_uint_eq(wl.fill, 1200ull << 20);

    static const char *const bad[] = {
        "", "spin", "churn,wss=", "churn,wss=12Q", "churn,fill=1M",
        "idle,wss=1M", "churn,bogus=1", "fill-free,fill=3G", "churn,wss",
        "churn,rate=-5",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_clear_error(&err);
        ck_assert_msg(!workload_parse(bad[i], ram, &wl, &err), "'%s' accepted",
                      bad[i]);
        ck_assert_ptr_nonnull(err);
    }
}
END_TEST

START_TEST(boot_refuses_foreign_superblock)
{
    GuestRam *a = new_ram();
    Guest *g = boot(a, "idle", 1);
    g_autoptr(GError) err = NULL;

    g->mem.sb->npages++;              /* a guest made for other RAM */
    Guest *g2 = guest_new(a, 1, &(WorkloadConfig) { GWL_IDLE });
    ck_assert(!guest_boot(g2, &err));
    ck_assert_ptr_nonnull(strstr(err->message, "does not match"));
    guest_free(g2);
    guest_free(g);
    guest_ram_free(a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("guest");
    TCase *content = tcase_create("content");
    TCase *run_tc = tcase_create("workloads");

    tcase_add_test(content, content_is_deterministic_and_distinct);
    tcase_add_test(content, content_mixes_random_and_compressible);
    tcase_set_timeout(run_tc, 120);
    tcase_add_test(run_tc, self_check_ok_then_one_corrupt_page_fails);
    tcase_add_test(run_tc, churn_bumps_generations);
    tcase_add_test(run_tc, fill_free_leaves_stale_free_memory);
    tcase_add_test(run_tc, ram_plus_vcpu_state_is_the_whole_guest);
    tcase_add_test(run_tc, corrupt_guest_panics_not_host);
    tcase_add_test(run_tc, churn_rate_is_paced);
    tcase_add_test(run_tc, workload_options);
    tcase_add_test(run_tc, boot_refuses_foreign_superblock);
    suite_add_tcase(s, content);
    suite_add_tcase(s, run_tc);
    return test_run(s);
}
