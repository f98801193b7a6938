/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The guest's balloon driver against the real device: one test per
 * driver-normative statement of the spec text.
 */
#include <string.h>

#include "guest/balloon_driver.h"
#include "guest/page_content.h"
#include "hw/virtio/virtio-balloon-hint.h"
#include "hw/virtio/virtqueue.h"
#include "test_util.h"

#define RAM_SIZE (64u << 20)

static GuestRam *ram;
static Guest *g;
static VirtioBalloon *vb;
static GuestVcpuState st;
static GuestVcpuPace pace;
static int64_t clock_us;
static GMutex lock;
static uint64_t hinted_bytes;
static GHashTable *hinted;       /* gpa -> id */
static uint32_t closed_id;

static void on_hint(void *opaque, uint32_t id, uint64_t gpa, uint64_t len)
{
    (void)opaque;
    g_mutex_lock(&lock);
    hinted_bytes += len;
    g_hash_table_insert(hinted, GSIZE_TO_POINTER(gpa), GUINT_TO_POINTER(id));
    g_mutex_unlock(&lock);
}

static void on_done(void *opaque, uint32_t id)
{
    (void)opaque;
    g_mutex_lock(&lock);
    closed_id = id;
    g_mutex_unlock(&lock);
}

static void boot(uint32_t poison, bool early)
{
    GuestRamOptions o = { .size = RAM_SIZE, .numa_node = -1 };
    ram = guest_ram_new(&o, NULL);
    WorkloadConfig wl;
    ck_assert(workload_parse("fill-free,fill=24M,wss=4M,rate=0", RAM_SIZE, &wl, NULL));
    g = guest_new(ram, 1, &wl);
    g->boot_balloon = (BalloonDriverConfig) { poison, early };
    ck_assert(guest_boot(g, NULL));
    vb = virtio_balloon_new(ram, true);
    g->balloon = vb;
    hinted = g_hash_table_new(NULL, NULL);
    hinted_bytes = 0;
    closed_id = 0;
    VirtioBalloonClient c = { on_hint, on_done, NULL };
    vb_set_client(vb, &c);
    vb_set_running(vb, true);
    guest_vcpu_state_init(&st, 0);
    pace = (GuestVcpuPace) { 0 };
    clock_us = 1;
}

static void setup(void) { boot(0, false); }

static void teardown(void)
{
    virtio_balloon_free(vb);
    guest_free(g);
    guest_ram_free(ram);
    g_hash_table_destroy(hinted);
}

static void steps(int n)
{
    for (int i = 0; i < n; i++) {
        int64_t wake;
        g_autoptr(GError) err = NULL;
        ck_assert_msg(guest_vcpu_step(g, &st, &pace, clock_us, &wake, &err), "%s",
                      err ? err->message : "");
        clock_us += 10000;
        g_usleep(500);        /* let the device thread keep up */
    }
}

/* Runs the guest until the device has seen the round end (or gives up). */
static void run_round(void)
{
    for (int i = 0; i < 400; i++) {
        steps(1);
        g_mutex_lock(&lock);
        bool done = closed_id != 0;
        g_mutex_unlock(&lock);
        if (done) {
            return;
        }
    }
    ck_abort_msg("the driver never closed the round");
}

/* Out buffers in the driver's ring: returns how many carried @id. */
static unsigned out_buffers_with(uint32_t id, unsigned *bad_len)
{
    GuestBalloon *b = balloon_driver_state(g);
    uint8_t *ring = guest_ram_page(ram, b->ring_pfn);
    unsigned n = 0;
    *bad_len = 0;
    for (unsigned d = 0; d < GUEST_BALLOON_QSIZE; d++) {
        VringDesc desc;
        memcpy(&desc, ring + d * 16, 16);
        if (!desc.len || (desc.flags & VRING_DESC_F_WRITE)) {
            continue;
        }
        if (desc.len != 4) {
            (*bad_len)++;
            continue;
        }
        uint32_t v;
        memcpy(&v, vq_gpa_to_hva(ram, desc.addr, 4), 4);
        n += v == id;
    }
    return n;
}

/* "The driver MUST use an output buffer size of 4 bytes", "MUST start
 * hinting by providing an output buffer containing the current command ID",
 * "MUST NOT provide more than one output buffer containing the current
 * command ID", and "SHOULD supply pages ... when the id is 2 or greater". */
START_TEST(reports_under_the_id_once_with_4_byte_buffers)
{
    steps(200);                              /* fill, free, settle */
    ck_assert(vb_hint_ready(vb));
    uint64_t free_before = g->mem.sb->free_pages;
    uint32_t id = fph_start(vb);
    run_round();
    unsigned bad;
    ck_assert_uint_eq(out_buffers_with(id, &bad), 1);
    ck_assert_uint_eq(bad, 0);
    ck_assert_uint_eq(closed_id, id);
    GuestBalloon *b = balloon_driver_state(g);
    ck_assert_uint_gt(b->held, 4);           /* most of the 24 MiB freed */
    ck_assert_uint_eq(hinted_bytes, b->held << 22);
    /* The blocks, plus one leaf page of the driver's list of held blocks. */
    ck_assert_uint_eq(free_before - g->mem.sb->free_pages, (b->held << 10) + 1);
    /* Every hinted range is a block the driver holds, as GPK_HINT. */
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, hinted);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        uint64_t pfn = GPOINTER_TO_SIZE(k) >> GUEST_PAGE_SHIFT;
        ck_assert_uint_eq(g->mem.meta[pfn].kind, GPK_HINT);
        ck_assert_uint_eq(GPOINTER_TO_UINT(v), id);
    }
}
END_TEST

/* "If the driver is unable to supply pages, it MUST complete hinting by
 * adding an output buffer containing STOP" and "SHOULD stop supplying pages
 * ... when the id is STOP or DONE". */
START_TEST(stop_ends_the_round)
{
    steps(200);
    uint32_t id = fph_start(vb);
    steps(1);                                /* the id, a first batch */
    fph_stop(vb);
    steps(3);
    for (int i = 0; i < 100 && !closed_id; i++) {
        g_usleep(2000);
    }
    ck_assert_uint_eq(closed_id, id);
    uint64_t hinted_then = hinted_bytes;
    GuestBalloon *b = balloon_driver_state(g);
    ck_assert_uint_eq(b->phase, GBP_HOLDING);
    steps(20);
    ck_assert_uint_eq(hinted_bytes, hinted_then);   /* nothing more */
}
END_TEST

/* "The driver SHOULD release all previously hinted pages once the id is
 * DONE", and "MUST treat the content of all hinted pages as uninitialized":
 * pages trashed while hinted do not disturb the guest. */
START_TEST(done_gives_everything_back)
{
    steps(200);
    uint64_t free_before = g->mem.sb->free_pages;
    fph_start(vb);
    run_round();
    GuestBalloon *b = balloon_driver_state(g);
    ck_assert_uint_gt(b->held, 0);
    /* What the host may do to hinted pages: anything. */
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init(&it, hinted);
    while (g_hash_table_iter_next(&it, &k, NULL)) {
        memset(ram->host + GPOINTER_TO_SIZE(k), 0xa5, 4 << 20);
    }
    fph_done(vb);
    steps(2);
    ck_assert_uint_eq(b->held, 0);
    ck_assert_uint_eq(b->phase, GBP_IDLE);
    /* All back but the leaf page the driver keeps for its list. */
    ck_assert_uint_eq(g->mem.sb->free_pages, free_before - 1);
    steps(100);                              /* the workload goes on */
    GuestCheck c;
    guest_self_check(g, &c);
    ck_assert_msg(!c.corrupt, "%s", c.error ? c.error : "corrupt pages");
    guest_check_clear(&c);
}
END_TEST

/* "The driver MAY release hinted pages ... before the device has used the
 * descriptor" and "MUST initialize the contents of any previously hinted
 * page released before ... DONE". */
START_TEST(early_release_initialises_pages)
{
    teardown();
    boot(0, true);
    steps(200);
    fph_start(vb);
    run_round();
    steps(2);
    GuestBalloon *b = balloon_driver_state(g);
    ck_assert_uint_eq(b->held, 0);
    ck_assert_uint_gt(b->released_early, 0);
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init(&it, hinted);
    while (g_hash_table_iter_next(&it, &k, NULL)) {
        uint64_t pfn = GPOINTER_TO_SIZE(k) >> GUEST_PAGE_SHIFT;
        { static const uint8_t z[GUEST_PAGE_SIZE]; ck_assert_mem_eq(guest_ram_page(ram, pfn), z, GUEST_PAGE_SIZE); }
    }
}
END_TEST

START_TEST(poison_is_reported_with_the_feature)
{
    teardown();
    boot(0x5a5a5a5a, false);
    steps(5);
    ck_assert_uint_eq(vb_poison(vb), 0x5a5a5a5a);
}
END_TEST

START_TEST(broken_device_does_not_break_the_guest)
{
    steps(200);
    fph_start(vb);
    steps(2);
    /* The guest's ring turns to garbage under the device: descriptors and
     * an avail index that jumps far ahead. */
    GuestBalloon *b = balloon_driver_state(g);
    uint8_t *ring = guest_ram_page(ram, b->ring_pfn);
    memset(ring, 0xff, 1024);
    uint16_t idx = b->avail_idx + 1000;
    memcpy(ring + 1024 + 2, &idx, 2);
    vb_kick(vb, VB_FREE_PAGE_VQ);
    char *err = NULL;
    for (int i = 0; i < 100 && !(err = vb_error(vb)); i++) {
        g_usleep(5000);
    }
    ck_assert_msg(err && strstr(err, "jumped"), "%s", err ? err : "(none)");
    g_free(err);
    ck_assert_uint_eq(fph_start(vb), 0);
    uint64_t hinted_then = hinted_bytes;
    steps(50);                               /* the guest runs on */
    ck_assert_uint_eq(hinted_bytes, hinted_then);
    GuestCheck c;
    guest_self_check(g, &c);
    ck_assert_uint_eq(c.corrupt, 0);
    guest_check_clear(&c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("balloon_driver");
    TCase *tc = tcase_create("driver");
    g_mutex_init(&lock);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, reports_under_the_id_once_with_4_byte_buffers);
    tcase_add_test(tc, stop_ends_the_round);
    tcase_add_test(tc, done_gives_everything_back);
    tcase_add_test(tc, early_release_initialises_pages);
    tcase_add_test(tc, poison_is_reported_with_the_feature);
    tcase_add_test(tc, broken_device_does_not_break_the_guest);
    suite_add_tcase(s, tc);
    return test_run(s);
}
