/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The source's further RAM connections (multifd-channels > 1).
 *
 * After the handshake the source opens multifd-channels - 1 more
 * connections to the destination, each introduced by MULTIFD (the session,
 * its index, the count).  The io_uring sender then drives them all with
 * one pool of buffers: each RAM batch goes on the connection with the
 * fewest bytes still to send, control messages on the main one only.
 *
 * Order: on one connection everything arrives in order, but batches on
 * different connections overtake each other.  Within a round that does not
 * matter (a page is in one batch per round).  Across a message on the main
 * connection it does: a ROUND_END's ack promises every batch before it is
 * applied, HINTED and PENDING must not be overtaken by an older copy of
 * their pages.  So before any message on the main connection, if a batch
 * went on another connection since the last sync, MULTIFD_SYNC with a new
 * epoch goes on every connection; the destination's readers meet at it and
 * let the decoders drain before any reads on.  The combined stream then
 * means what one connection would.
 */
#include <sys/socket.h>
#include <unistd.h>

#include "outgoing.h"
#include "migration/le.h"

bool out_multifd_open(Precopy *p, const char *uri, GError **errp)
{
    unsigned want = MIN(p->params.multifd_channels, (unsigned)WIRE_MULTIFD_MAX);

    for (unsigned i = p->nconns; i < want; i++) {
        WireMultifd w = { p->session, i, want };
        uint8_t intro[16];
        wire_multifd_encode(intro, &w);
        int fd = out_connect(uri, -1, WIRE_MULTIFD, intro, sizeof(intro), errp);
        if (fd < 0) {
            g_prefix_error(errp, "multifd connection %u of %u: ", i + 1, want);
            return false;
        }
        hm_socket_peer_timeout(p->m, fd);
        p->conn_fds[i] = fd;
        p->nconns = i + 1;
    }
    return true;
}

bool out_multifd_sync(Precopy *p, GError **errp)
{
    g_mutex_lock(&p->lock);
    bool spread = p->spread;
    p->spread = false;
    g_mutex_unlock(&p->lock);
    if (!spread || uring_tx_nconns(p->tx) < 2) {
        return true;
    }
    uint32_t epoch = ++p->sync_epoch;
    for (unsigned c = 0; c < uring_tx_nconns(p->tx); c++) {
        UringTxBuf *b = uring_tx_buf_get(p->tx);
        if (!b) {
            out_stream_error(p, errp, "connection lost");
            return false;
        }
        wire_header_encode(b->data, WIRE_MULTIFD_SYNC, 0, 4);
        le_put32(b->data + WIRE_HEADER_SIZE, epoch);
        b->len = WIRE_HEADER_SIZE + 4;
        uring_tx_send_on(p->tx, c, b);
    }
    return true;
}

void out_multifd_shutdown(Precopy *p)
{
    for (unsigned i = 1; i < p->nconns; i++) {
        shutdown(p->conn_fds[i], SHUT_RDWR);
    }
}

void out_multifd_close(Precopy *p)
{
    for (unsigned i = 1; i < p->nconns; i++) {
        close(p->conn_fds[i]);
    }
    p->nconns = 1;
}

void out_multifd_publish(const UringTxStats *tx, const uint64_t *done, HintmigStats *s)
{
    s->multifd_channels = MAX(s->multifd_channels, tx->nconns);
    for (unsigned c = 0; c < s->multifd_channels && c < WIRE_MULTIFD_MAX; c++) {
        s->multifd_bytes[c] = done[c] + (c < tx->nconns ? tx->conn_bytes[c] : 0);
    }
}
