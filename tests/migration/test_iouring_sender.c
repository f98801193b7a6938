/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The io_uring sender over a real socket pair. */
#include <poll.h>
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

    UringTx *tx = uring_tx_new(&sv[0], 1, 16, BUFSZ, &err);
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
    UringTx *tx = uring_tx_new(&sv[0], 1, 8, BUFSZ, &err);
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
    UringTx *tx = uring_tx_new(&sv[0], 1, 4, BUFSZ, &err);
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

/* Queues message @i (a header, then bytes that depend on @i) as @b. */
static void fill(UringTxBuf *b, uint32_t i, uint32_t len)
{
    uint32_t hdr[2] = { i, len };
    memcpy(b->data, hdr, 8);
    for (uint32_t k = 0; k < len; k++) {
        b->data[8 + k] = (uint8_t)(i + k);
    }
    b->len = 8 + len;
}

/* Reads messages off @fd until EOF: each must carry a number greater than
 * the one before it (order kept on one connection), and intact. */
typedef struct SpreadReader {
    int fd;
    uint64_t msgs, bytes;
    int64_t last;
    bool bad;
} SpreadReader;

static gpointer spread_reader(gpointer data)
{
    SpreadReader *r = data;
    uint8_t buf[BUFSZ];
    uint32_t hdr[2];

    r->last = -1;
    while (wire_read_full(r->fd, hdr, 8, NULL)) {
        if ((int64_t)hdr[0] <= r->last || hdr[1] > BUFSZ - 8 ||
            !wire_read_full(r->fd, buf, hdr[1], NULL)) {
            r->bad = true;
            return NULL;
        }
        for (uint32_t b = 0; b < hdr[1]; b++) {
            if (buf[b] != (uint8_t)(hdr[0] + b)) {
                r->bad = true;
                return NULL;
            }
        }
        r->last = hdr[0];
        r->msgs++;
        r->bytes += 8 + hdr[1];
    }
    return NULL;
}

START_TEST(spreads_over_connections_in_order)
{
    enum { NCONN = 3 };
    int fds[NCONN], peers[NCONN];
    SpreadReader r[NCONN] = { { 0 } };
    GThread *t[NCONN];
    g_autoptr(GError) err = NULL;

    for (int c = 0; c < NCONN; c++) {
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        fds[c] = sv[0];
        peers[c] = sv[1];
        r[c].fd = sv[1];
        t[c] = g_thread_new("reader", spread_reader, &r[c]);
    }
    UringTx *tx = uring_tx_new(fds, NCONN, 16, BUFSZ, &err);
    ck_assert_msg(tx, "%s", err ? err->message : "");
    ck_assert_uint_eq(uring_tx_nconns(tx), NCONN);
    uint64_t total = 0, per[NCONN] = { 0 };
    for (uint32_t i = 0; i < NMSG; i++) {
        UringTxBuf *b = uring_tx_buf_get(tx);
        ck_assert_ptr_nonnull(b);
        fill(b, i, (i * 7919) % (BUFSZ - 8));
        total += b->len;
        unsigned c;
        if (i % 10 == 0) {
            c = i % NCONN;                  /* pinned, as control messages are */
            uring_tx_send_on(tx, c, b);
        } else {
            c = uring_tx_send_spread(tx, b);
        }
        ck_assert_uint_lt(c, NCONN);
        per[c] += b->len;
    }
    ck_assert(uring_tx_wait_idle(tx, &err));
    UringTxStats st = uring_tx_stats(tx);
    uring_tx_free(tx);
    for (int c = 0; c < NCONN; c++) {
        close(fds[c]);
        g_thread_join(t[c]);
        close(peers[c]);
        ck_assert_msg(!r[c].bad, "connection %d: a message out of order or damaged", c);
        ck_assert_uint_eq(r[c].bytes, per[c]);
        ck_assert_uint_eq(st.conn_bytes[c], per[c]);
        /* Every connection had a fair part of the spread messages. */
        ck_assert_uint_gt(r[c].msgs, NMSG / NCONN / 2);
    }
    ck_assert_uint_eq(st.bytes_sent, total);
    ck_assert_uint_eq(st.nconns, NCONN);
}
END_TEST

START_TEST(stalled_connection_does_not_hold_the_others)
{
    int a[2], b[2];
    g_autoptr(GError) err = NULL;
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
    int small = 16 * 1024;
    setsockopt(a[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    int fds[2] = { a[0], b[0] };
    UringTx *tx = uring_tx_new(fds, 2, 8, BUFSZ, &err);
    ck_assert(tx);

    /* Connection 0's peer reads nothing: its chain (more than the socket
     * holds) stays in flight. */
    for (int i = 0; i < 6; i++) {
        UringTxBuf *big = uring_tx_buf_get(tx);
        fill(big, 0, BUFSZ - 8);
        uring_tx_send_on(tx, 0, big);
    }
    /* The sender took that chain and waits on it. */
    for (int i = 0; i < 10000 && !uring_tx_stats(tx).chains; i++) {
        g_usleep(1000);
    }
    ck_assert_uint_eq(uring_tx_stats(tx).chains, 1);
    /* Connection 1's message, queued while the sender waits on that chain,
     * must still go out now. */
    UringTxBuf *m = uring_tx_buf_get(tx);
    fill(m, 1, 100);
    uring_tx_send_on(tx, 1, m);
    uint32_t hdr[2];
    struct pollfd pfd = { b[1], POLLIN, 0 };
    ck_assert_msg(poll(&pfd, 1, 10000) == 1, "connection 1 waited on connection 0");
    ck_assert(wire_read_full(b[1], hdr, 8, NULL));
    ck_assert_uint_eq(hdr[0], 1);

    /* Unblock connection 0, then finish. */
    uint8_t sink[BUFSZ];
    for (int i = 0; i < 6; i++) {
        ck_assert(wire_read_full(a[1], sink, BUFSZ, NULL));
    }
    ck_assert(wire_read_full(b[1], sink, 100, NULL));
    ck_assert(uring_tx_wait_idle(tx, &err));
    uring_tx_free(tx);
    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(b[i]);
    }
}
END_TEST

START_TEST(connection_count_is_checked)
{
    int fds[URING_TX_MAX_CONNS + 1] = { 0 };
    g_autoptr(GError) err = NULL;
    ck_assert_ptr_null(uring_tx_new(fds, 0, 4, BUFSZ, &err));
    ck_assert_ptr_nonnull(strstr(err->message, "1 to 16 connections"));
    g_clear_error(&err);
    ck_assert_ptr_null(uring_tx_new(fds, URING_TX_MAX_CONNS + 1, 4, BUFSZ, &err));
    ck_assert_ptr_nonnull(err);
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
    tcase_add_test(tc, spreads_over_connections_in_order);
    tcase_add_test(tc, stalled_connection_does_not_hold_the_others);
    tcase_add_test(tc, connection_count_is_checked);
    suite_add_tcase(s, tc);
    return test_run(s);
}
