/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The io_uring sender: streams buffers to one or more sockets (the
 * connections of one migration), in the order they are queued on each,
 * with many sends in flight.
 *
 * Buffers come from a fixed pool (uring_tx_buf_get blocks while all are
 * busy, which is the back-pressure on the producers) and go back to it when
 * their send completes; nothing is allocated per page or per message.  One
 * thread owns the ring.  Each connection has at most one chain of sends in
 * flight, and whatever is queued on it meanwhile goes out as its next
 * chain: IOSQE_IO_LINK keeps a chain in order and MSG_WAITALL keeps a short
 * send from interleaving with the next.  Chains of different connections
 * are in flight together; an eventfd read in the ring wakes the thread when
 * an idle connection gets a buffer while it waits on another's chain.
 */
#ifndef HINTMIG_IOURING_SENDER_H
#define HINTMIG_IOURING_SENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "hintmig/hintmig.h"

typedef struct UringTx UringTx;

/* The most connections one sender drives. */
#define URING_TX_MAX_CONNS 16

typedef struct UringTxBuf {
    uint8_t *data;
    size_t cap;
    size_t len;          /* bytes to send, set by the producer */
    unsigned conn;       /* the connection it is queued on (set by the sender) */
} UringTxBuf;

typedef struct UringTxStats {
    uint64_t bytes_sent;     /* bytes the kernel took, summed from completions */
    uint64_t sends;          /* completed sends */
    uint64_t chains;         /* io_uring_submit calls */
    uint64_t max_in_flight;  /* longest chain */
    uint64_t busy_ns;        /* time any chain was in flight (or paced): bytes_sent
                              * over it is the link's rate while it was used */
    unsigned nconns;
    uint64_t conn_bytes[URING_TX_MAX_CONNS];   /* bytes_sent, per connection */
} UringTxStats;

/*
 * Starts a sender on the @nfds connected sockets @fds (1 to
 * URING_TX_MAX_CONNS; the first is the one uring_tx_send uses) with one
 * pool of @nbufs buffers of @buf_size bytes.  Returns NULL with @errp set
 * when io_uring cannot be set up.
 */
UringTx *uring_tx_new(const int *fds, unsigned nfds, unsigned nbufs, size_t buf_size,
                      GError **errp);

/*
 * Stops the sender thread (after what is queued is sent or has failed) and
 * frees everything.  The sockets are not closed: shut them down first if a
 * peer may have stopped reading.
 */
void uring_tx_free(UringTx *tx);

/* Returns a free buffer, waiting for one; NULL once the sender has failed. */
UringTxBuf *uring_tx_buf_get(UringTx *tx);

/* Returns an unused buffer to the pool. */
void uring_tx_buf_put(UringTx *tx, UringTxBuf *b);

/* Queues @b (b->len bytes) on the first connection, after everything
 * queued there before it. */
void uring_tx_send(UringTx *tx, UringTxBuf *b);

/* Queues @b on connection @conn, after everything queued there before it. */
void uring_tx_send_on(UringTx *tx, unsigned conn, UringTxBuf *b);

/*
 * Queues @b on the connection with the fewest bytes queued or in flight
 * (ties in turn), for messages whose order across connections does not
 * matter.  Returns the connection.
 */
unsigned uring_tx_send_spread(UringTx *tx, UringTxBuf *b);

/* The number of connections. */
unsigned uring_tx_nconns(UringTx *tx);

/*
 * Waits until everything queued so far has been sent.  Returns false with
 * @errp set if a send failed on any connection (then nothing more is sent).
 */
bool uring_tx_wait_idle(UringTx *tx, GError **errp);

/* Limits the send rate to @bytes_per_sec (0: unlimited). */
void uring_tx_set_rate_limit(UringTx *tx, uint64_t bytes_per_sec);

/* Returns the statistics so far (thread-safe). */
UringTxStats uring_tx_stats(UringTx *tx);

#endif
