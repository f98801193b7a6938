/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The split virtqueue against a driver that writes whatever it likes into
 * its rings: every bad index, chain, address and length must break the
 * queue with a message, and nothing outside guest RAM may be touched.
 */
#include <string.h>

#include "hw/virtio/virtqueue.h"
#include "test_util.h"

#define RAM (16u << 20)
#define QSIZE 16
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define DATA 0x10000

static GuestRam *ram;
static VirtQueue vq;

static void setup(void)
{
    GuestRamOptions o = { .size = RAM, .numa_node = -1 };
    ram = guest_ram_new(&o, NULL);
    memset(&vq, 0, sizeof(vq));
    g_autoptr(GError) err = NULL;
    ck_assert_msg(vq_setup(&vq, ram, QSIZE, DESC, AVAIL, USED, &err), "%s",
                  err ? err->message : "");
}

static void teardown(void)
{
    vq_reset(&vq);
    guest_ram_free(ram);
}

static void desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    VringDesc d = { GUINT64_TO_LE(addr), GUINT32_TO_LE(len), GUINT16_TO_LE(flags),
                    GUINT16_TO_LE(next) };
    memcpy(ram->host + DESC + i * 16, &d, 16);
}

/* Makes head @head available as entry number @n (n from 0). */
static void avail(unsigned n, uint16_t head)
{
    uint16_t h = GUINT16_TO_LE(head), idx = GUINT16_TO_LE(n + 1);
    memcpy(ram->host + AVAIL + 4 + 2 * (n % QSIZE), &h, 2);
    memcpy(ram->host + AVAIL + 2, &idx, 2);
}

static void expect_broken(const char *what)
{
    VqElem e;
    ck_assert_int_eq(vq_pop(&vq, &e), -1);
    ck_assert_msg(vq.error && strstr(vq.error, what), "wanted '%s', got '%s'", what,
                  vq.error ? vq.error : "(none)");
    ck_assert_int_eq(vq_pop(&vq, &e), -1);     /* stays broken */
}

START_TEST(good_chain_and_used_ring)
{
    VqElem e;
    ck_assert_int_eq(vq_pop(&vq, &e), 0);
    desc(3, DATA, 4, VRING_DESC_F_NEXT, 7);
    desc(7, DATA + 4096, 4096, VRING_DESC_F_WRITE, 0);
    avail(0, 3);
    ck_assert_int_eq(vq_pop(&vq, &e), 1);
    ck_assert_uint_eq(e.head, 3);
    ck_assert_uint_eq(e.n_out, 1);
    ck_assert_uint_eq(e.n_in, 1);
    ck_assert_uint_eq(e.in[0].gpa, DATA + 4096);
    ck_assert_int_eq(vq_pop(&vq, &e), 0);
    vq_push(&vq, &e, 4096);
    uint16_t used_idx;
    VringUsedElem u;
    memcpy(&used_idx, ram->host + USED + 2, 2);
    memcpy(&u, ram->host + USED + 4, 8);
    ck_assert_uint_eq(used_idx, 1);
    ck_assert_uint_eq(u.id, 3);
    ck_assert_uint_eq(u.len, 4096);
}
END_TEST

START_TEST(indirect_table)
{
    VqElem e;
    VringDesc t[2] = {
        { DATA, 4, VRING_DESC_F_NEXT, 1 },
        { DATA + 8192, 8192, VRING_DESC_F_WRITE, 0 },
    };
    memcpy(ram->host + DATA + 65536, t, sizeof(t));
    desc(0, DATA + 65536, sizeof(t), VRING_DESC_F_INDIRECT, 0);
    avail(0, 0);
    ck_assert_int_eq(vq_pop(&vq, &e), 1);
    ck_assert_uint_eq(e.n_out, 1);
    ck_assert_uint_eq(e.n_in, 1);
    ck_assert_uint_eq(e.in[0].len, 8192);
}
END_TEST

START_TEST(chain_loop)
{
    desc(0, DATA, 8, VRING_DESC_F_NEXT, 1);
    desc(1, DATA, 8, VRING_DESC_F_NEXT, 0);
    avail(0, 0);
    expect_broken("loops");
}
END_TEST

START_TEST(self_loop_in_indirect)
{
    VringDesc t[1] = { { DATA, 4, VRING_DESC_F_NEXT, 0 } };
    memcpy(ram->host + DATA + 65536, t, sizeof(t));
    desc(0, DATA + 65536, sizeof(t), VRING_DESC_F_INDIRECT, 0);
    avail(0, 0);
    expect_broken("loops");
}
END_TEST

START_TEST(buffer_outside_ram)
{
    desc(0, RAM - 10, 100, 0, 0);
    avail(0, 0);
    expect_broken("outside guest RAM");
}
END_TEST

START_TEST(buffer_address_wraps)
{
    desc(0, UINT64_MAX - 5, 4096, 0, 0);
    avail(0, 0);
    expect_broken("outside guest RAM");
}
END_TEST

START_TEST(buffer_length_huge)
{
    desc(0, DATA, UINT32_MAX, 0, 0);
    avail(0, 0);
    expect_broken("outside guest RAM");
}
END_TEST

START_TEST(zero_length)
{
    desc(0, DATA, 0, 0, 0);
    avail(0, 0);
    expect_broken("zero length");
}
END_TEST

START_TEST(avail_index_jump)
{
    uint16_t idx = GUINT16_TO_LE(QSIZE + 1);
    memcpy(ram->host + AVAIL + 2, &idx, 2);
    expect_broken("jumped");
}
END_TEST

START_TEST(head_out_of_range)
{
    avail(0, QSIZE + 3);
    expect_broken("beyond the descriptor table");
}
END_TEST

START_TEST(next_out_of_range)
{
    desc(0, DATA, 8, VRING_DESC_F_NEXT, 999);
    avail(0, 0);
    expect_broken("beyond the descriptor table");
}
END_TEST

START_TEST(readable_after_writable)
{
    desc(0, DATA, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    desc(1, DATA, 8, 0, 0);
    avail(0, 0);
    expect_broken("readable descriptor after a writable");
}
END_TEST

START_TEST(nested_indirect)
{
    VringDesc t[1] = { { DATA, 16, VRING_DESC_F_INDIRECT, 0 } };
    memcpy(ram->host + DATA + 65536, t, sizeof(t));
    desc(0, DATA + 65536, sizeof(t), VRING_DESC_F_INDIRECT, 0);
    avail(0, 0);
    expect_broken("inside an indirect table");
}
END_TEST

START_TEST(indirect_table_bad)
{
    desc(0, RAM - 16, 64, VRING_DESC_F_INDIRECT, 0);
    avail(0, 0);
    expect_broken("indirect table outside guest RAM");
    vq_reset(&vq);
    ck_assert(vq_setup(&vq, ram, QSIZE, DESC, AVAIL, USED, NULL));
    desc(0, DATA, 20, VRING_DESC_F_INDIRECT, 0);
    avail(1, 0);
    vq.last_avail_idx = 1;
    expect_broken("indirect table of 20 bytes");
}
END_TEST

START_TEST(too_many_buffers)
{
    VringDesc t[VQ_MAX_SG + 1];
    for (unsigned i = 0; i <= VQ_MAX_SG; i++) {
        t[i] = (VringDesc) { DATA, 8, i < VQ_MAX_SG ? VRING_DESC_F_NEXT : 0, i + 1 };
    }
    memcpy(ram->host + DATA + 65536, t, sizeof(t));
    desc(0, DATA + 65536, sizeof(t), VRING_DESC_F_INDIRECT, 0);
    avail(0, 0);
    expect_broken("more than");
}
END_TEST

START_TEST(broken_queue_ignores_push_until_reset)
{
    VqElem e = { .head = 1 };
    avail(0, QSIZE + 1);
    expect_broken("beyond");
    vq_push(&vq, &e, 10);
    uint16_t used_idx;
    memcpy(&used_idx, ram->host + USED + 2, 2);
    ck_assert_uint_eq(used_idx, 0);
    vq_reset(&vq);
    ck_assert_ptr_null(vq.error);
}
END_TEST

START_TEST(setup_is_checked)
{
    VirtQueue q = { 0 };
    g_autoptr(GError) err = NULL;
    ck_assert(!vq_setup(&q, ram, 12, DESC, AVAIL, USED, &err));   /* not 2^n */
    g_clear_error(&err);
    ck_assert(!vq_setup(&q, ram, 65536, DESC, AVAIL, USED, &err));
    g_clear_error(&err);
    ck_assert(!vq_setup(&q, ram, 16, DESC + 8, AVAIL, USED, &err));   /* align */
    g_clear_error(&err);
    ck_assert(!vq_setup(&q, ram, 16, RAM - 64, AVAIL, USED, &err));   /* outside */
    ck_assert_ptr_nonnull(strstr(err->message, "outside guest RAM"));
    ck_assert_ptr_null(vq_gpa_to_hva(ram, UINT64_MAX, 2));
    ck_assert_ptr_nonnull(vq_gpa_to_hva(ram, RAM - 1, 1));
    ck_assert_ptr_null(vq_gpa_to_hva(ram, RAM - 1, 2));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("virtqueue");
    TCase *tc = tcase_create("split");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, good_chain_and_used_ring);
    tcase_add_test(tc, indirect_table);
    tcase_add_test(tc, chain_loop);
    tcase_add_test(tc, self_loop_in_indirect);
    tcase_add_test(tc, buffer_outside_ram);
    tcase_add_test(tc, buffer_address_wraps);
    tcase_add_test(tc, buffer_length_huge);
    tcase_add_test(tc, zero_length);
    tcase_add_test(tc, avail_index_jump);
    tcase_add_test(tc, head_out_of_range);
    tcase_add_test(tc, next_out_of_range);
    tcase_add_test(tc, readable_after_writable);
    tcase_add_test(tc, nested_indirect);
    tcase_add_test(tc, indirect_table_bad);
    tcase_add_test(tc, too_many_buffers);
    tcase_add_test(tc, broken_queue_ignores_push_until_reset);
    tcase_add_test(tc, setup_is_checked);
    suite_add_tcase(s, tc);
    return test_run(s);
}
