/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The destination's further connections: after the hello it accepts, on
 * the socket it listened on, postcopy's page channel and the source's
 * multifd connections, in whatever order they come, each introduced with
 * the session of this migration.
 *
 * Each multifd connection has a reader thread: it reads RAM batches into
 * the shared receive buffers and queues them for the decoders, as the
 * main thread does for batches on the main connection.  MULTIFD_SYNC is a
 * rendezvous of all of them, the main thread included: none reads on
 * until every connection has reached it and the decoders have applied
 * every batch queued before it.  So a page sent again after a message on
 * the main connection (a new round) can never be overtaken by its older
 * copy on another connection (see outgoing_multifd.c).
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "incoming.h"
#include "migration/le.h"

typedef struct MultifdReader {
    Incoming *in;
    unsigned conn;
} MultifdReader;

/*
 * Connection @conn ended: no sync can complete now.  A connection that
 * closed or broke says nothing yet (the source closes them all at the end,
 * maybe before the main thread has read COMMIT; a source that died breaks
 * the main connection too).  One that sent what it must not (@err not an
 * I/O error) fails the migration: the source is told on the main
 * connection, and closes it, which ends the main thread's reading (the main
 * connection is not shut down here: its reset could overtake the ERROR).
 */
static void reader_ended(Incoming *in, unsigned conn, const GError *err)
{
    bool bad = err && err->code != HINTMIG_ERROR_IO;

    g_mutex_lock(&in->lock);
    bool stopping = in->conns_stop;
    in->conn_ended = true;
    if (bad && !stopping && !in->conn_error) {
        in->conn_error = g_strdup_printf("multifd connection %u: %s", conn + 1,
                                         err->message);
    }
    g_cond_broadcast(&in->sync_cond);
    g_mutex_unlock(&in->lock);
    if (bad && !stopping) {
        g_autoptr(GError) ignored = NULL;
        in_give_up(in, err->code == HINTMIG_ERROR_PROTOCOL ? WIRE_ERR_PROTOCOL
                                                           : WIRE_ERR_DATA,
                   &ignored, "multifd connection %u: %s", conn + 1, err->message);
    }
}

static gpointer reader_thread(gpointer data)
{
    MultifdReader *r = data;
    Incoming *in = r->in;
    int fd = in->conn_fds[r->conn];
    g_autoptr(GError) err = NULL;

    for (;;) {
        uint8_t hb[WIRE_HEADER_SIZE];
        WireHeader h;
        if (!wire_read_full(fd, hb, sizeof(hb), &err) ||
            !wire_header_decode(hb, &h, &err)) {
            break;
        }
        in_count_rx(in, r->conn, h.len);
        if (h.type == WIRE_MULTIFD_SYNC && h.len == 4) {
            uint8_t d[4];
            if (!wire_read_full(fd, d, sizeof(d), &err) ||
                !in_multifd_sync(in, r->conn, d, sizeof(d), &err)) {
                break;
            }
            continue;
        }
        if (h.type != WIRE_RAM_BATCH || h.len > MIGRATION_BUF_SIZE) {
            g_set_error(&err, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                        "unexpected %u-byte %s message", h.len,
                        wire_type_str(h.type) ? wire_type_str(h.type) : "unknown");
            break;
        }
        if (!in_read_batch(in, fd, h.len, &err)) {
            break;
        }
    }
    reader_ended(in, r->conn, err);
    g_free(r);
    return NULL;
}

bool in_multifd_sync(Incoming *in, unsigned conn, const uint8_t *d, size_t len,
                     GError **errp)
{
    if (in->nconns < 2 || len != 4) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                    "unexpected %zu-byte multifd-sync message", len);
        return false;
    }
    uint32_t epoch = le_get32(d);
    g_mutex_lock(&in->lock);
    if (epoch != in->conn_epoch[conn] + 1) {
        g_mutex_unlock(&in->lock);
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                    "multifd sync %u out of order (the last was %u)", epoch,
                    in->conn_epoch[conn]);
        return false;
    }
    in->conn_epoch[conn] = epoch;
    g_cond_broadcast(&in->sync_cond);
    for (unsigned c = 0; c < in->nconns && !in->conns_stop && !in->conn_ended;) {
        if (in->conn_epoch[c] < epoch) {
            g_cond_wait(&in->sync_cond, &in->lock);
            c = 0;
        } else {
            c++;
        }
    }
    /* Every batch before the sync, on every connection, is queued now: none
     * reads on until they are applied. */
    bool stopped = in->conns_stop || in->conn_ended;
    while (in->busy && !stopped) {
        g_cond_wait(&in->idle, &in->lock);
        stopped = in->conns_stop;
    }
    g_mutex_unlock(&in->lock);
    if (stopped) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                    "connection lost: a multifd connection ended before sync %u", epoch);
        return false;
    }
    return true;
}

/* Starts the readers of connections [1, nconns). */
static bool readers_start(Incoming *in, GError **errp)
{
    for (unsigned c = 1; c < in->nconns; c++) {
        MultifdReader *r = g_new(MultifdReader, 1);
        *r = (MultifdReader) { in, c };
        in->conn_threads[c] = hm_thread_new("multifd-rx", reader_thread, r, errp);
        if (!in->conn_threads[c]) {
            g_free(r);
            return false;
        }
    }
    return true;
}

/* Closes the further connections accepted so far. */
static void conns_close(Incoming *in)
{
    for (unsigned c = 1; c < WIRE_MULTIFD_MAX; c++) {
        if (in->conn_fds[c] >= 0) {
            close(in->conn_fds[c]);
            in->conn_fds[c] = -1;
        }
    }
}

bool in_accept_connections(Incoming *in, GError **errp)
{
    Hintmig *m = in->m;
    bool want_page = in->features & WIRE_FEAT_POSTCOPY;
    bool multifd = in->features & WIRE_FEAT_MULTIFD;
    unsigned count = 0, got = 0;      /* multifd connections: 0 until the first */
    int page_fd = -1;
    bool ok = true;

    g_mutex_lock(&m->lock);
    int lfd = m->listen_fd;
    m->listen_fd = -1;
    g_mutex_unlock(&m->lock);
    if (lfd < 0) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "no listening socket for the source's further connections");
        return false;
    }
    while (ok && ((want_page && page_fd < 0) || (multifd && (!count || got < count - 1)))) {
        WireMultifd w = { 0 };
        int fd = in_accept_one(m, lfd, hm_peer_timeout_ms(m, CHANNEL_TIMEOUT_MS), errp);
        uint16_t type = fd < 0 ? 0 : in_read_intro(m, in->session, fd, multifd ? &w : NULL,
                                                   errp);
        if (type == WIRE_PAGE_CHANNEL && want_page && page_fd < 0) {
            page_fd = fd;
        } else if (type == WIRE_MULTIFD && (!count || w.count == count) &&
                   in->conn_fds[w.index] < 0) {
            count = w.count;
            in->conn_fds[w.index] = fd;
            got++;
        } else {
            if (type) {
                g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                            "unexpected or repeated %s connection",
                            wire_type_str(type));
            }
            g_prefix_error(errp, "the source's further connections: ");
            if (fd >= 0) {
                close(fd);
            }
            ok = false;
        }
    }
    close(lfd);
    in->nconns = 1;
    if (!ok) {
        conns_close(in);
        if (page_fd >= 0) {
            close(page_fd);
        }
        return false;
    }
    if (count) {
        in->nconns = in->conns_want = count;
        g_mutex_lock(&m->lock);
        m->stats.multifd_channels = count;
        g_mutex_unlock(&m->lock);
    }
    if (page_fd >= 0 && !in_page_channel_start(in, page_fd, errp)) {
        return false;
    }
    return readers_start(in, errp);
}

void in_multifd_stop(Incoming *in)
{
    g_mutex_lock(&in->lock);
    in->conns_stop = true;
    g_cond_broadcast(&in->sync_cond);
    g_cond_broadcast(&in->idle);
    g_mutex_unlock(&in->lock);
    for (unsigned c = 1; c < in->nconns; c++) {
        shutdown(in->conn_fds[c], SHUT_RDWR);
    }
    for (unsigned c = 1; c < in->nconns; c++) {
        if (in->conn_threads[c]) {
            g_thread_join(in->conn_threads[c]);
            in->conn_threads[c] = NULL;
        }
        close(in->conn_fds[c]);
        in->conn_fds[c] = -1;
    }
    in->nconns = 1;
}

bool in_multifd_reaccept(Incoming *in, int lfd, GError **errp)
{
    Hintmig *m = in->m;
    unsigned count = in->conns_want;

    if (count < 2) {
        return true;
    }
    for (unsigned got = 0; got < count - 1; got++) {
        WireMultifd w = { 0 };
        int fd = in_accept_one(m, lfd, hm_peer_timeout_ms(m, RECOVER_TIMEOUT_MS), errp);
        uint16_t type = fd < 0 ? 0 : in_read_intro(m, in->session, fd, &w, errp);
        if (type != WIRE_MULTIFD || w.count != count || in->conn_fds[w.index] >= 0) {
            if (type) {
                g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                            "unexpected or repeated %s connection (%u of %u wanted)",
                            wire_type_str(type), w.count, count);
            }
            g_prefix_error(errp, "recovery: the source's multifd connections: ");
            if (fd >= 0) {
                close(fd);
            }
            conns_close(in);
            return false;
        }
        in->conn_fds[w.index] = fd;
    }
    g_mutex_lock(&in->lock);
    in->conns_stop = in->conn_ended = false;
    memset(in->conn_epoch, 0, sizeof(in->conn_epoch));
    g_mutex_unlock(&in->lock);
    in->nconns = count;
    if (!readers_start(in, errp)) {
        in_multifd_stop(in);
        return false;
    }
    return true;
}
