/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The io_uring sender: see include/migration/iouring_sender.h. */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <liburing.h>

#include "migration/iouring_sender.h"

#define CHAIN_MAX 256

typedef struct TxConn {
    int fd;
    GQueue pending;          /* queued, not yet submitted */
    unsigned in_flight;      /* sends of its chain not yet completed */
    uint64_t backlog;        /* bytes queued or in flight: for spreading */
} TxConn;

struct UringTx {
    struct io_uring ring;
    unsigned nconns;
    TxConn conns[URING_TX_MAX_CONNS];
    unsigned nbufs;
    UringTxBuf *bufs;
    uint8_t *mem;
    GAsyncQueue *free_q;     /* UringTxBuf * ready for a producer */
    GThread *thread;
    /* Producers write it to wake the thread while it waits on the ring;
     * the thread keeps a read of it there (wake_armed). */
    int wake_fd;
    uint64_t wake_val;
    bool wake_armed;         /* thread only */
    gint64 busy_since;       /* thread only: when chains went in flight */

    GMutex lock;
    GCond cond;              /* queued, completed, stop or error changed */
    unsigned in_flight;      /* sends submitted, not yet completed */
    bool in_ring;            /* the thread waits on completions */
    bool woken;              /* wake_fd written since the thread last looked */
    uint64_t queued, done;   /* buffers queued / completed (sent or dropped) */
    unsigned next_spread;
    bool stop;
    int error;               /* first failure, as a positive errno */
    uint64_t rate;           /* bytes/s, 0 = unlimited */
    gint64 rate_t0;
    uint64_t rate_bytes;
    UringTxStats stats;
};

/* Marks the wake-up read among the completions. */
static char wake_tag;

/* Sleeps as long as @rate (bytes/s, not 0) asks before sending @next more
 * bytes.  The rate is the caller's copy: tx->rate may change meanwhile. */
static void rate_wait(UringTx *tx, uint64_t rate, uint64_t next)
{
    gint64 now = g_get_monotonic_time();
    if (!tx->rate_t0 || now - tx->rate_t0 > G_USEC_PER_SEC) {
        tx->rate_t0 = now;
        tx->rate_bytes = 0;
    }
    gint64 due = tx->rate_t0 + (gint64)((tx->rate_bytes + next) *
                                        G_USEC_PER_SEC / rate);
    if (due > now) {
        g_usleep(due - now);
    }
    tx->rate_bytes += next;
}

/* Gives the buffers of a failed sender back so no producer waits forever. */
static void drop_pending(UringTx *tx)
{
    for (unsigned c = 0; c < tx->nconns; c++) {
        UringTxBuf *b;
        while ((b = g_queue_pop_head(&tx->conns[c].pending))) {
            tx->conns[c].backlog -= b->len;
            g_async_queue_push(tx->free_q, b);
            tx->done++;
        }
    }
}

/* Wakes the thread if it waits on the ring and @conn has no chain out. */
static void wake_locked(UringTx *tx, const TxConn *conn)
{
    g_cond_broadcast(&tx->cond);
    if (tx->in_ring && !tx->woken && (!conn || !conn->in_flight)) {
        uint64_t one = 1;
        tx->woken = true;
        if (write(tx->wake_fd, &one, sizeof(one)) < 0) {
            /* Cannot fail on an eventfd below its limit; the chain in
             * flight ends the wait anyway. */
        }
    }
}

/* Takes the next chain of every idle connection into @chains; returns the
 * number of buffers and their bytes in *@bytes. */
static unsigned take_chains(UringTx *tx, UringTxBuf **chains, unsigned *len,
                            uint64_t *bytes)
{
    unsigned total = 0;

    *bytes = 0;
    for (unsigned c = 0; c < tx->nconns; c++) {
        TxConn *conn = &tx->conns[c];
        len[c] = 0;
        if (conn->in_flight) {
            continue;
        }
        /* Paced, a chain is at most 5 ms of the rate: one chain is one burst
         * at the link's own speed. */
        uint64_t room = tx->rate ? tx->rate / 200 : UINT64_MAX, chain = 0;
        while (len[c] < CHAIN_MAX && !g_queue_is_empty(&conn->pending)) {
            UringTxBuf *head = g_queue_peek_head(&conn->pending);
            if (len[c] && chain + head->len > room) {
                break;
            }
            chain += head->len;
            UringTxBuf *b = g_queue_pop_head(&conn->pending);
            chains[total++] = b;
            len[c]++;
            *bytes += b->len;
        }
        conn->in_flight = len[c];
        tx->in_flight += len[c];
        tx->stats.max_in_flight = MAX(tx->stats.max_in_flight, len[c]);
        tx->stats.chains += len[c] != 0;
    }
    return total;
}

static void submit(UringTx *tx, UringTxBuf **chains, const unsigned *len)
{
    unsigned at = 0;

    for (unsigned c = 0; c < tx->nconns; c++) {
        for (unsigned i = 0; i < len[c]; i++, at++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&tx->ring);
            io_uring_prep_send(sqe, tx->conns[c].fd, chains[at]->data, chains[at]->len,
                               MSG_WAITALL | MSG_NOSIGNAL);
            io_uring_sqe_set_data(sqe, chains[at]);
            if (i + 1 < len[c]) {
                sqe->flags |= IOSQE_IO_LINK;
            }
        }
    }
    if (!tx->wake_armed) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&tx->ring);
        io_uring_prep_read(sqe, tx->wake_fd, &tx->wake_val, sizeof(tx->wake_val), 0);
        io_uring_sqe_set_data(sqe, &wake_tag);
        tx->wake_armed = true;
    }
}

/* Accounts one completion, with tx->lock held. */
static void complete_locked(UringTx *tx, UringTxBuf *b, int res)
{
    TxConn *conn = &tx->conns[b->conn];
    int err = 0;

    if (res < 0) {
        /* The first failure matters; linked sends after it are cancelled. */
        err = res == -ECANCELED ? 0 : -res;
    } else {
        tx->stats.bytes_sent += res;
        tx->stats.conn_bytes[b->conn] += res;
        if ((size_t)res != b->len) {
            err = EPIPE;            /* short despite MSG_WAITALL */
        }
    }
    if (err && !tx->error) {
        tx->error = err;
    }
    conn->in_flight--;
    conn->backlog -= b->len;
    tx->in_flight--;
    tx->stats.sends++;
    tx->done++;
    g_async_queue_push(tx->free_q, b);
}

static gpointer tx_thread(gpointer data)
{
    UringTx *tx = data;
    UringTxBuf *chains[URING_TX_MAX_CONNS * CHAIN_MAX];
    unsigned len[URING_TX_MAX_CONNS];

    g_mutex_lock(&tx->lock);
    for (;;) {
        if (tx->error) {
            drop_pending(tx);
            g_cond_broadcast(&tx->cond);
        }
        uint64_t bytes;
        unsigned n = take_chains(tx, chains, len, &bytes);
        if (!n && !tx->in_flight) {
            if (tx->stop) {
                break;
            }
            g_cond_wait(&tx->cond, &tx->lock);
            continue;
        }
        bool was_idle = tx->in_flight == n;
        uint64_t rate = tx->rate;
        tx->in_ring = true;
        tx->woken = false;
        g_mutex_unlock(&tx->lock);

        if (was_idle) {
            tx->busy_since = g_get_monotonic_time();    /* pacing counts as busy */
        }
        if (n && rate) {
            rate_wait(tx, rate, bytes);
        }
        submit(tx, chains, len);
        int ret = io_uring_submit(&tx->ring);
        struct io_uring_cqe *cqe = NULL;
        if (ret >= 0) {
            do {
                ret = io_uring_wait_cqe(&tx->ring, &cqe);
            } while (ret == -EINTR);
        }

        g_mutex_lock(&tx->lock);
        tx->in_ring = false;
        if (ret < 0) {
            /* The ring itself failed: nothing in flight can be trusted to
             * complete, so fail and leave the buffers in flight alone. */
            tx->error = tx->error ? tx->error : -ret;
            tx->in_flight = 0;
            for (unsigned c = 0; c < tx->nconns; c++) {
                tx->conns[c].in_flight = 0;
            }
            g_cond_broadcast(&tx->cond);
            continue;
        }
        while (cqe) {
            void *tag = io_uring_cqe_get_data(cqe);
            int res = cqe->res;
            io_uring_cqe_seen(&tx->ring, cqe);
            if (tag == &wake_tag) {
                tx->wake_armed = false;
            } else {
                complete_locked(tx, tag, res);
            }
            if (io_uring_peek_cqe(&tx->ring, &cqe) < 0) {
                cqe = NULL;
            }
        }
        if (!tx->in_flight) {
            tx->stats.busy_ns += (uint64_t)(g_get_monotonic_time() - tx->busy_since) * 1000;
        }
        g_cond_broadcast(&tx->cond);
    }
    g_mutex_unlock(&tx->lock);
    return NULL;
}

UringTx *uring_tx_new(const int *fds, unsigned nfds, unsigned nbufs, size_t buf_size,
                      GError **errp)
{
    if (!nfds || nfds > URING_TX_MAX_CONNS) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "the sender takes 1 to %u connections, not %u",
                    URING_TX_MAX_CONNS, nfds);
        return NULL;
    }
    UringTx *tx = g_new0(UringTx, 1);
    /* Every buffer may be in flight at once, and the wake-up read. */
    int ret = io_uring_queue_init(MAX(nbufs + 1, 8u), &tx->ring, 0);
    if (ret < 0) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                    "io_uring setup failed: %s", g_strerror(-ret));
        g_free(tx);
        return NULL;
    }
    tx->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (tx->wake_fd < 0) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                    "eventfd for the io_uring sender: %s", g_strerror(errno));
        io_uring_queue_exit(&tx->ring);
        g_free(tx);
        return NULL;
    }
    tx->nconns = nfds;
    tx->stats.nconns = nfds;
    for (unsigned c = 0; c < nfds; c++) {
        tx->conns[c].fd = fds[c];
        g_queue_init(&tx->conns[c].pending);
    }
    tx->nbufs = nbufs;
    tx->bufs = g_new0(UringTxBuf, nbufs);
    tx->mem = g_malloc((size_t)nbufs * buf_size);
    tx->free_q = g_async_queue_new();
    g_mutex_init(&tx->lock);
    g_cond_init(&tx->cond);
    for (unsigned i = 0; i < nbufs; i++) {
        tx->bufs[i] = (UringTxBuf) { tx->mem + (size_t)i * buf_size, buf_size, 0, 0 };
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
    wake_locked(tx, NULL);
    g_mutex_unlock(&tx->lock);
    if (tx->thread) {
        g_thread_join(tx->thread);
    }
    io_uring_queue_exit(&tx->ring);
    close(tx->wake_fd);
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

static void queue_locked(UringTx *tx, unsigned conn, UringTxBuf *b)
{
    TxConn *c = &tx->conns[conn];
    b->conn = conn;
    g_queue_push_tail(&c->pending, b);
    c->backlog += b->len;
    tx->queued++;
    wake_locked(tx, c);
}

void uring_tx_send_on(UringTx *tx, unsigned conn, UringTxBuf *b)
{
    g_mutex_lock(&tx->lock);
    queue_locked(tx, conn < tx->nconns ? conn : 0, b);
    g_mutex_unlock(&tx->lock);
}

void uring_tx_send(UringTx *tx, UringTxBuf *b)
{
    uring_tx_send_on(tx, 0, b);
}

unsigned uring_tx_send_spread(UringTx *tx, UringTxBuf *b)
{
    g_mutex_lock(&tx->lock);
    unsigned best = tx->next_spread % tx->nconns;
    for (unsigned i = 1; i < tx->nconns; i++) {
        unsigned c = (tx->next_spread + i) % tx->nconns;
        if (tx->conns[c].backlog < tx->conns[best].backlog) {
            best = c;
        }
    }
    tx->next_spread = best + 1;
    queue_locked(tx, best, b);
    g_mutex_unlock(&tx->lock);
    return best;
}

unsigned uring_tx_nconns(UringTx *tx)
{
    return tx->nconns;
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
