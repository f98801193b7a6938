/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The io_uring sender: streams buffers to a socket, in the order they are
 * queued, with many sends in flight.
 *
 * Buffers come from a fixed pool (uring_tx_buf_get blocks while all are
 * busy, which is the back-pressure on the producers) and go back to it when
 * their send completes; nothing is allocated per page or per message.  One
 * thread owns the ring.  Whatever is queued while a chain of sends is in
 * flight goes out as the next chain: IOSQE_IO_LINK keeps a chain in order
 * and MSG_WAITALL keeps a short send from interleaving with the next.
 */
#ifndef HINTMIG_IOURING_SENDER_H
#define HINTMIG_IOURING_SENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "hintmig/hintmig.h"

typedef struct UringTx UringTx;

typedef struct UringTxBuf {
    uint8_t *data;
    size_t cap;
    size_t len;          /* bytes to send, set by the producer */
} UringTxBuf;

typedef struct UringTxStats {
    uint64_t bytes_sent;     /* bytes the kernel took, summed from completions */
    uint64_t sends;          /* completed sends */
    uint64_t chains;         /* io_uring_submit calls */
    uint64_t max_in_flight;  /* longest chain */
    uint64_t busy_ns;        /* time spent sending (or pacing) chains: bytes_sent
                              * over it is the link's rate while it was used */
} UringTxStats;

/*
 * Starts a sender on connected socket @fd with @nbufs buffers of @buf_size
 * bytes.  Returns NULL with @errp set when io_uring cannot be set up.
 */
UringTx *uring_tx_new(int fd, unsigned nbufs, size_t buf_size, GError **errp);

/*
 * Stops the sender thread (after what is queued is sent or has failed) and
 * frees everything.  The socket is not closed.
 */
void uring_tx_free(UringTx *tx);

/* Returns a free buffer, waiting for one; NULL once the sender has failed. */
UringTxBuf *uring_tx_buf_get(UringTx *tx);

/* Returns an unused buffer to the pool. */
void uring_tx_buf_put(UringTx *tx, UringTxBuf *b);

/* Queues @b (b->len bytes) for sending after everything queued before it. */
void uring_tx_send(UringTx *tx, UringTxBuf *b);

/*
 * Waits until everything queued so far has been sent.  Returns false with
 * @errp set if a send failed (then nothing more is sent).
 */
bool uring_tx_wait_idle(UringTx *tx, GError **errp);

/* Limits the send rate to @bytes_per_sec (0: unlimited). */
void uring_tx_set_rate_limit(UringTx *tx, uint64_t bytes_per_sec);

/* Returns the statistics so far (thread-safe). */
UringTxStats uring_tx_stats(UringTx *tx);

#endif
