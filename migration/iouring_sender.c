/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The io_uring sender: see include/migration/iouring_sender.h. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <liburing.h>

#include "migration/iouring_sender.h"

struct UringTx {
    int fd;
    struct io_uring ring;
    unsigned nbufs;
    UringTxBuf *bufs;
    uint8_t *mem;
    GAsyncQueue *free_q;     /* UringTxBuf * ready for a producer */
    GThread *thread;

    GMutex lock;
    GCond cond;              /* queued, completed, stop or error changed */
    GQueue pending;          /* queued, not yet submitted */
    uint64_t queued, done;   /* buffers queued / completed (sent or dropped) */
    bool stop;
    int error;               /* first failure, as a positive errno */
    uint64_t rate;           /* bytes/s, 0 = unlimited */
    gint64 rate_t0;
    uint64_t rate_bytes;
    UringTxStats stats;
};

/* Sleeps as long as the rate limit asks before sending @next more bytes. */
static void rate_wait(UringTx *tx, uint64_t next)
{
    if (!tx->rate) {
        return;
    }
    gint64 now = g_get_monotonic_time();
    if (!tx->rate_t0 || now - tx->rate_t0 > G_USEC_PER_SEC) {
        tx->rate_t0 = now;
        tx->rate_bytes = 0;
    }
    gint64 due = tx->rate_t0 + (gint64)((tx->rate_bytes + next) *
                                        G_USEC_PER_SEC / tx->rate);
    if (due > now) {
        g_usleep(due - now);
    }
    tx->rate_bytes += next;
}

/* Gives the buffers of a failed sender back so no producer waits forever. */
static void drop_pending(UringTx *tx)
{
    UringTxBuf *b;
    while ((b = g_queue_pop_head(&tx->pending))) {
        g_async_queue_push(tx->free_q, b);
        tx->done++;
    }
}

static gpointer tx_thread(gpointer data)
{
    UringTx *tx = data;
    UringTxBuf *chain[256];

    g_mutex_lock(&tx->lock);
    for (;;) {
        while (!tx->stop && g_queue_is_empty(&tx->pending)) {
            g_cond_wait(&tx->cond, &tx->lock);
        }
        if (tx->error) {
            drop_pending(tx);
            g_cond_broadcast(&tx->cond);
        }
        if (g_queue_is_empty(&tx->pending)) {
            break;          /* stop requested and nothing left */
        }
        unsigned n = 0;
        uint64_t bytes = 0;
        while (n < G_N_ELEMENTS(chain) && n < tx->nbufs &&
               !g_queue_is_empty(&tx->pending)) {
            chain[n] = g_queue_pop_head(&tx->pending);
            bytes += chain[n++]->len;
        }
        uint64_t rate = tx->rate;
        g_mutex_unlock(&tx->lock);

        gint64 t0 = g_get_monotonic_time();
        if (rate) {
            rate_wait(tx, bytes);
        }
        for (unsigned i = 0; i < n; i++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&tx->ring);
            io_uring_prep_send(sqe, tx->fd, chain[i]->data, chain[i]->len,
                               MSG_WAITALL | MSG_NOSIGNAL);
            io_uring_sqe_set_data(sqe, chain[i]);
            if (i + 1 < n) {
                sqe->flags |= IOSQE_IO_LINK;
            }
        }
        int ret = io_uring_submit(&tx->ring);
        int err = ret < 0 ? -ret : 0;
        uint64_t sent = 0;
        for (unsigned i = 0; i < n && ret >= 0; i++) {
            struct io_uring_cqe *cqe;
            int w = io_uring_wait_cqe(&tx->ring, &cqe);
            if (w == -EINTR) {
                i--;
                continue;
            }
            if (w < 0) {
                err = -w;
                break;
            }
            UringTxBuf *b = io_uring_cqe_get_data(cqe);
            if (cqe->res < 0) {
                /* The first failure matters; linked sends after it are
                 * cancelled. */
                if (!err && cqe->res != -ECANCELED) {
                    err = -cqe->res;
                }
            } else {
                sent += cqe->res;
                if ((size_t)cqe->res != b->len && !err) {
                    err = EPIPE;     /* short despite MSG_WAITALL */
                }
            }
            io_uring_cqe_seen(&tx->ring, cqe);
        }
        for (unsigned i = 0; i < n; i++) {
            g_async_queue_push(tx->free_q, chain[i]);
        }

        gint64 busy_us = g_get_monotonic_time() - t0;
        g_mutex_lock(&tx->lock);
        tx->stats.busy_ns += (uint64_t)busy_us * 1000;
        tx->stats.bytes_sent += sent;
        tx->stats.sends += n;
        tx->stats.chains++;
        tx->stats.max_in_flight = MAX(tx->stats.max_in_flight, n);
        tx->done += n;
        if (err && !tx->error) {
            tx->error = err;
        }
        g_cond_broadcast(&tx->cond);
    }
    g_mutex_unlock(&tx->lock);
    return NULL;
}

UringTx *uring_tx_new(int fd, unsigned nbufs, size_t buf_size, GError **errp)
{
    UringTx *tx = g_new0(UringTx, 1);
    int ret = io_uring_queue_init(MAX(nbufs, 8u), &tx->ring, 0);
    if (ret < 0) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                    "io_uring setup failed: %s", g_strerror(-ret));
        g_free(tx);
        return NULL;
    }
    tx->fd = fd;
    tx->nbufs = nbufs;
    tx->bufs = g_new0(UringTxBuf, nbufs);
    tx->mem = g_malloc((size_t)nbufs * buf_size);
    tx->free_q = g_async_queue_new();
    g_mutex_init(&tx->lock);
    g_cond_init(&tx->cond);
    g_queue_init(&tx->pending);
    for (unsigned i = 0; i < nbufs; i++) {
        tx->bufs[i] = (UringTxBuf) { tx->mem + (size_t)i * buf_size, buf_size, 0 };
        g_async_queue_push(tx->free_q, &tx->bufs[i]);
    }
    g_autoptr(GError) err = NULL;
    tx->thread = g_thread_try_new("uring-tx", tx_thread, tx, &err);
    if (!tx->thread) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED,
                    "cannot start the io_uring sender thread: %s", err->message);
        uring_tx_free(tx);
        return NULL;
    }
    return tx;
}

void uring_tx_free(UringTx *tx)
{
    if (!tx) {
        return;
    }
    g_mutex_lock(&tx->lock);
    tx->stop = true;
    g_cond_broadcast(&tx->cond);
    g_mutex_unlock(&tx->lock);
    if (tx->thread) {
        g_thread_join(tx->thread);
    }
    io_uring_queue_exit(&tx->ring);
    g_async_queue_unref(tx->free_q);
    g_mutex_clear(&tx->lock);
    g_cond_clear(&tx->cond);
    g_free(tx->mem);
    g_free(tx->bufs);
    g_free(tx);
}

UringTxBuf *uring_tx_buf_get(UringTx *tx)
{
    for (;;) {
        g_mutex_lock(&tx->lock);
        int err = tx->error;
        g_mutex_unlock(&tx->lock);
        if (err) {
            return NULL;
        }
        /* Wake up now and then to notice a failure. */
        UringTxBuf *b = g_async_queue_timeout_pop(tx->free_q, 100000);
        if (b) {
            b->len = 0;
            return b;
        }
    }
}

void uring_tx_buf_put(UringTx *tx, UringTxBuf *b)
{
    g_async_queue_push(tx->free_q, b);
}

void uring_tx_send(UringTx *tx, UringTxBuf *b)
{
    g_mutex_lock(&tx->lock);
    g_queue_push_tail(&tx->pending, b);
    tx->queued++;
    g_cond_broadcast(&tx->cond);
    g_mutex_unlock(&tx->lock);
}

bool uring_tx_wait_idle(UringTx *tx, GError **errp)
{
    g_mutex_lock(&tx->lock);
    while (tx->done < tx->queued && !tx->error) {
        g_cond_wait(&tx->cond, &tx->lock);
    }
    int err = tx->error;
    g_mutex_unlock(&tx->lock);
    if (err) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                    "connection lost: %s", g_strerror(err));
        return false;
    }
    return true;
}

void uring_tx_set_rate_limit(UringTx *tx, uint64_t bytes_per_sec)
{
    g_mutex_lock(&tx->lock);
    tx->rate = bytes_per_sec;
    g_mutex_unlock(&tx->lock);
}

UringTxStats uring_tx_stats(UringTx *tx)
{
    g_mutex_lock(&tx->lock);
    UringTxStats s = tx->stats;
    g_mutex_unlock(&tx->lock);
    return s;
}
