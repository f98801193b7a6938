/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The outgoing side's private state, shared by precopy.c (connection,
 * handshake, rounds, stop-and-copy) and postcopy_source.c (the switch, the
 * background push, requested pages, pause and resume).
 */
#ifndef HINTMIG_OUTGOING_H
#define HINTMIG_OUTGOING_H

#include "migration_priv.h"
#include "migration/page_codec.h"
#include "migration/wire.h"

typedef struct EncodeJob {
    UringTxBuf *buf;
    uint32_t round;
    unsigned n;
    uint64_t pfns[PAGE_BATCH_MAX];
} EncodeJob;

typedef struct Precopy {
    Migration *m;
    GuestRam *ram;
    MigrationParams params;
    bool verify;
    bool hinting;                 /* the free-page-hint capability is on */
    bool hints_started;           /* a device was asked for hints: DONE owed */
    HintFilter *hints;
    int fd;
    uint64_t features;
    UringTx *tx;
    DirtyTracker *tracker;
    unsigned long *dirty;

    /* encoders */
    unsigned nenc;
    GThread **enc;
    GAsyncQueue *enc_q;           /* EncodeJob * to encode, or &stop_job */
    GAsyncQueue *job_pool;
    EncodeJob *jobs;
    GMutex lock;
    GCond idle;
    unsigned busy;                /* jobs queued or being encoded */
    PageCodecStats codec;
    uint64_t ram_bytes;           /* RAM messages put on the wire */

    /* return path */
    GThread *rp;
    GMutex rp_lock;
    GCond rp_cond;
    GHashTable *pending_acks;     /* seq -> WireType of requests awaiting ack */
    uint32_t next_seq;
    uint32_t await_seq;           /* the request a thread waits on (wait_ack) */
    bool await_acked;
    uint32_t await_status;
    char *await_msg;
    char *peer_error;             /* the destination's own account of a failure */
    bool rp_done;
    uint64_t rx_bytes;

    bool vm_stopped;

    /* postcopy */
    bool postcopy;                /* negotiated: the page channel is open */
    uint64_t session;
    int ch_fd;                    /* the page channel, -1 when none */
    GMutex ch_lock;               /* one writer on the page channel */
    PageEncoder *urgent_enc;      /* raw: a waiting vCPU cannot wait for zstd */
    uint8_t *urgent_buf;
    unsigned long *pending;       /* atomic: pages still owed, after the switch */
    uint64_t requests;            /* pages asked for */
    uint64_t urgent_pages;        /* pages sent on the page channel */
    uint64_t ch_bytes;            /* bytes sent on the page channel */
    uint64_t tx_bytes_done;       /* bytes sent by senders of broken links */
    bool rp_urgent;               /* the return path runs real-time */
} Precopy;

typedef struct DigestTask {
    const GuestRam *ram;
    uint64_t n;
    uint64_t *out;
    unsigned threads;
    const unsigned long *exclude;
    gint64 us;
} DigestTask;

/* precopy.c */
void publish(Precopy *p);
void encoders_wait_idle(Precopy *p);
void stream_error(Precopy *p, GError **errp, const char *what);
bool check_abort(Precopy *p, GError **errp);
bool send_msg(Precopy *p, WireType type, uint32_t seq, const void *payload,
              size_t len, GError **errp);
/*
 * Sends a request whose ack the return path will match; returns its seq,
 * or 0 with @errp set.  With @awaited, wait_ack() then waits for that ack.
 */
uint32_t send_request(Precopy *p, WireType type, const void *payload, size_t len,
                      bool awaited, GError **errp);
/*
 * Waits up to @timeout_s for the ack of the awaited request: true with its
 * status and text (free it) if it came; false if not, with *@closed telling
 * a broken or refused link from silence.
 */
bool wait_ack(Precopy *p, int timeout_s, uint32_t *status, char **msg, bool *closed);
bool send_device_state(Precopy *p, GError **errp);
/* Queues the runs of @set as @type messages (WIRE_HINTED, WIRE_PENDING). */
bool send_runs(Precopy *p, WireType type, const unsigned long *set, uint32_t word,
               GError **errp);
gpointer digest_task(gpointer data);
bool send_digests(Precopy *p, const uint64_t *dig, uint64_t n, GError **errp);
void hints_done(Precopy *p);
/*
 * Stops the VM (*@t_down: when), adds the pages written since the last
 * sync to p->dirty, drops them from the hinted set and tells the guest its
 * hints are done.
 */
bool stop_and_sync(Precopy *p, gint64 *t_down, GError **errp);
void rp_fail(Precopy *p, char *msg);
gpointer return_path_thread(gpointer data);
/* Queues one batch of @n pages for the encoders. */
bool queue_batch(Precopy *p, const uint64_t *pfns, unsigned n, uint32_t round,
                 GError **errp);

/* postcopy_source.c */
/* After the handshake: opens the page channel. */
bool postcopy_open_channel(Precopy *p, const char *uri, GError **errp);
/* The return path got a page request: send those pages now. */
void postcopy_serve_request(Precopy *p, const uint8_t *d, size_t len);
/*
 * Stops the VM, sends what the destination needs to run it and runs the
 * postcopy phase to its end, through pauses and recoveries.  *@resume is
 * set when the source may run the VM again after a failure (the
 * destination never ran it).
 */
bool postcopy_run(Precopy *p, GError **errp);

#endif
