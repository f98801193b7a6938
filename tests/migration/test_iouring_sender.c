/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The io_uring sender over a real socket pair. */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <liburing.h>

#include "migration/iouring_sender.h"
#include "migration/wire.h"
#include "test_util.h"

#define NMSG 4000
#define BUFSZ (64 * 1024)

typedef struct Reader {
    int fd;
    uint64_t bytes;
    int bad;            /* first out-of-order message, or -1 */
} Reader;

static gpointer reader(gpointer data)
{
    Reader *r = data;
    uint8_t buf[BUFSZ];
    r->bad = -1;
    for (uint32_t i = 0; i < NMSG; i++) {
        uint32_t hdr[2];
        if (!wire_read_full(r->fd, hdr, 8, NULL)) {
            r->bad = i;
            return NULL;
        }
        uint32_t len = hdr[1];
        if (hdr[0] != i || len > BUFSZ - 8 || !wire_read_full(r->fd, buf, len, NULL)) {
            r->bad = i;
            return NULL;
        }
        for (uint32_t b = 0; b < len; b++) {
            if (buf[b] != (uint8_t)(i + b)) {
                r->bad = i;
                return NULL;
            }
        }
        r->bytes += 8 + len;
    }
    return NULL;
}

START_TEST(in_order_with_many_in_flight)
{
    int sv[2];
    g_autoptr(GError) err = NULL;
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    /* A small socket buffer forces partial progress and waiting sends. */
    int small = 16 * 1024;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));

    UringTx *tx = uring_tx_new(sv[0], 16, BUFSZ, &err);
    ck_assert_msg(tx, "%s", err ? err->message : "");
    Reader r = { .fd = sv[1] };
    GThread *t = g_thread_new("reader", reader, &r);
    uint64_t total = 0;
    for (uint32_t i = 0; i < NMSG; i++) {
        UringTxBuf *b = uring_tx_buf_get(tx);
        ck_assert_ptr_nonnull(b);
        uint32_t len = (i * 7919) % (BUFSZ - 8);
        uint32_t hdr[2] = { i, len };
        memcpy(b->data, hdr, 8);
        for (uint32_t k = 0; k < len; k++) {
            b->data[8 + k] = (uint8_t)(i + k);
        }
        b->len = 8 + len;
        total += b->len;
        uring_tx_send(tx, b);
    }
    ck_assert(uring_tx_wait_idle(tx, &err));
    g_thread_join(t);
    ck_assert_int_eq(r.bad, -1);
    UringTxStats st = uring_tx_stats(tx);
    ck_assert_uint_eq(st.bytes_sent, total);
    ck_assert_uint_eq(r.bytes, total);
    ck_assert_uint_eq(st.sends, NMSG);
    ck_assert_uint_gt(st.max_in_flight, 1);    /* chains really overlapped */
    uring_tx_free(tx);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(dead_peer_fails_without_hanging)
{
    int sv[2];
    g_autoptr(GError) err = NULL;
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    UringTx *tx = uring_tx_new(sv[0], 8, BUFSZ, &err);
    ck_assert(tx);
    close(sv[1]);
    int got_null = 0;
    for (int i = 0; i < 200 && !got_null; i++) {
        UringTxBuf *b = uring_tx_buf_get(tx);
        if (!b) {
            got_null = 1;
            break;
        }
        b->len = BUFSZ;
        uring_tx_send(tx, b);
    }
    ck_assert(!uring_tx_wait_idle(tx, &err));
    ck_assert_ptr_nonnull(strstr(err->message, "connection lost"));
    ck_assert_ptr_null(uring_tx_buf_get(tx));
    uring_tx_free(tx);
    close(sv[0]);
}
END_TEST

START_TEST(rate_limit_holds)
{
    int sv[2];
    g_autoptr(GError) err = NULL;
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    UringTx *tx = uring_tx_new(sv[0], 4, BUFSZ, &err);
    uring_tx_set_rate_limit(tx, 4u << 20);       /* 4 MiB/s */
    Reader r = { .fd = sv[1] };
    /* Send 2 MiB: must take about half a second, not less than 0.4 s. */
    gint64 t0 = g_get_monotonic_time();
    for (uint32_t i = 0; i < 32; i++) {
        UringTxBuf *b = uring_tx_buf_get(tx);
        b->len = BUFSZ;
        uring_tx_send(tx, b);
        char sink[BUFSZ];
        (void)r;
        ck_assert(uring_tx_wait_idle(tx, &err));
        ck_assert(wire_read_full(sv[1], sink, BUFSZ, NULL));
    }
    gint64 us = g_get_monotonic_time() - t0;
    ck_assert_int_ge(us, 400000);
    uring_tx_free(tx);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("iouring_sender");
    struct io_uring probe;
    if (io_uring_queue_init(2, &probe, 0) < 0) {
        test_skip("iouring_sender", "io_uring_setup is not available on this kernel");
        return test_run(s);
    }
    io_uring_queue_exit(&probe);
    TCase *tc = tcase_create("sender");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, in_order_with_many_in_flight);
    tcase_add_test(tc, dead_peer_fails_without_hanging);
    tcase_add_test(tc, rate_limit_holds);
    suite_add_tcase(s, tc);
    return test_run(s);
}
