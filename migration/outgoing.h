/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The outgoing side's private state: outgoing.c (the connection, the
 * encoders, the return path) under precopy.c (rounds, stop-and-copy) and
 * postcopy_source.c (the switch, the background push, requested pages,
 * pause and resume).
 */
#ifndef HINTMIG_OUTGOING_H
#define HINTMIG_OUTGOING_H

#include "migration_priv.h"
#include "migration/auto_converge.h"
#include "migration/compress_chooser.h"
#include "migration/page_codec.h"
#include "migration/wire.h"

typedef struct EncodeJob {
    UringTxBuf *buf;
    uint32_t round;
    unsigned n;
    uint64_t pfns[PAGE_BATCH_MAX];
} EncodeJob;

typedef struct Precopy {
    Hintmig *m;
    HmRam *ram;
    HintmigParams params;
    bool verify;
    bool hinting;                 /* the free-page-hint capability is on */
    bool hints_started;           /* a device was asked for hints: DONE owed */
    HintFilter *hints;
    int fd;
    char *dial_uri;               /* where further connections go, or NULL */
    uint64_t features;
    unsigned dst_decoders;        /* from the hello reply; 0: unknown */
    UringTx *tx;
    /* multifd (outgoing_multifd.c) */
    unsigned nconns;              /* RAM connections open, the main one included */
    int conn_fds[WIRE_MULTIFD_MAX];   /* [1, nconns): the further ones */
    bool spread;                  /* a batch went on another connection since
                                   * the last sync (under lock) */
    uint32_t sync_epoch;
    uint64_t conn_bytes_done[WIRE_MULTIFD_MAX];   /* by senders of broken links */
    DirtyTracker **trackers;      /* one per RAM region, or: */
    bool host_log;                /* the host's dirty log (HINTMIG_DIRTY_HOST) */
    unsigned long *region_dirty;  /* its bitmap for one region */
    uint64_t dirty_syncs;
    unsigned long *dirty;
    /* Pages backed by memory once tracking ran: the bulk pass sends these
     * only, the others were never touched (NULL: send every page). */
    unsigned long *backed;
    /* With WIRE_FEAT_PAGE_DIGESTS: each page's digest as last sent, written
     * by the encoders (0: never sent, a zero page). */
    uint64_t *page_digests;
    uint64_t hash_ns_per_page;    /* measured once, for the downtime estimate */

    /* encoders */
    unsigned nenc;
    GThread **enc;
    GAsyncQueue *enc_q;           /* EncodeJob * to encode, or &stop_job */
    GAsyncQueue *job_pool;
    EncodeJob *jobs;
    GMutex lock;
    GCond idle;
    unsigned busy;                /* jobs queued or being encoded */
    CompressChooser *chooser;     /* compress-method auto */
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
    bool dest_never_ran;          /* a recovery heard WIRE_ERR_NEVER_RAN */
    bool dest_done;               /* ... or WIRE_ERR_DONE */

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
    gint64 last_request_us;       /* atomic: when the last page request came */
    bool yield_on;                /* the postcopy-yield capability */
    bool converging;              /* auto-converge on: converge below */
    AutoConverge converge;
    bool push_yielding;           /* the push is paced down for waiting vCPUs */
    uint64_t push_yields;
    /* The return path got a page request: the phase that serves them. */
    void (*on_page_request)(struct Precopy *p, const uint8_t *d, size_t len);
} Precopy;

typedef struct DigestTask {
    const HmRam *ram;
    uint64_t n;
    uint64_t *out;
    unsigned threads;
    const unsigned long *exclude;
    gint64 us;
} DigestTask;

/* outgoing.c: the connection under both phases */
/*
 * Connects to @uri, or takes @fd (connected by the host) when it is not -1,
 * and sends @type with @intro (@len bytes): which migration the connection
 * belongs to.  Returns the socket, or -1 with @errp set.
 */
int out_connect(const char *uri, int fd, WireType type, const void *intro, size_t len,
                GError **errp);
bool out_handshake(Precopy *p, GError **errp);
/* After the handshake: the page channel and multifd connections agreed on,
 * the sender over every RAM connection, the return path; false with @errp. */
bool out_open_links(Precopy *p, GError **errp);
/* Starts compress-threads encoders; false with @errp (stop those started). */
bool out_encoders_start(Precopy *p, GError **errp);
void out_encoders_stop(Precopy *p);
void out_publish(Precopy *p);
void out_encoders_wait_idle(Precopy *p);
void out_stream_error(Precopy *p, GError **errp, const char *what);
bool out_check_abort(Precopy *p, GError **errp);
bool out_send_msg(Precopy *p, WireType type, uint32_t seq, const void *payload,
              size_t len, GError **errp);
/*
 * Sends a request whose ack the return path will match; returns its seq,
 * or 0 with @errp set.  With @awaited, out_wait_ack() then waits for that ack.
 */
uint32_t out_send_request(Precopy *p, WireType type, const void *payload, size_t len,
                      bool awaited, GError **errp);
/*
 * Waits up to @timeout_s for the ack of the awaited request: true with its
 * status and text (free it) if it came; false if not, with *@closed telling
 * a broken or refused link from silence.
 */
bool out_wait_ack(Precopy *p, unsigned timeout_ms, uint32_t *status, char **msg,
                  bool *closed);
bool out_send_device_state(Precopy *p, GError **errp);
/* Queues the runs of @set as @type messages (WIRE_HINTED, WIRE_PENDING, ...). */
bool out_send_runs(Precopy *p, WireType type, const unsigned long *set, uint32_t word,
               GError **errp);
gpointer out_digest_task(gpointer data);
bool out_send_digests(Precopy *p, const uint64_t *dig, uint64_t n, GError **errp);
void out_rp_fail(Precopy *p, char *msg);
gpointer out_return_path_thread(gpointer data);
/* Queues one batch of @n pages for the encoders. */
bool out_queue_batch(Precopy *p, const uint64_t *pfns, unsigned n, uint32_t round,
                 GError **errp);

/* precopy.c: rounds, and what postcopy also needs of them */
void out_hints_done(Precopy *p);
/* Adds to p->dirty every page written since the last sync, in every region. */
bool out_dirty_sync(Precopy *p, GError **errp);
/*
 * Stops the VM (*@t_down: when), adds the pages written since the last
 * sync to p->dirty, drops them from the hinted set and tells the guest its
 * hints are done.
 */
bool out_stop_and_sync(Precopy *p, gint64 *t_down, GError **errp);

/* outgoing_multifd.c: further connections that carry RAM batches */
/* After the handshake: opens connections up to multifd-channels. */
bool out_multifd_open(Precopy *p, const char *uri, GError **errp);
/* Before a message on the main connection: a sync on every connection,
 * if a batch went on another since the last (encoders idle). */
bool out_multifd_sync(Precopy *p, GError **errp);
void out_multifd_shutdown(Precopy *p);
/* Closes the further connections: the main one carries everything after. */
void out_multifd_close(Precopy *p);
/* Fills @s's multifd lines from @tx's counters and the bytes @done by
 * senders before it (@s locked). */
void out_multifd_publish(const UringTxStats *tx, const uint64_t *done, HintmigStats *s);

/* postcopy_source.c */
/* After the handshake: opens the page channel and serves page requests on it. */
bool postcopy_open_channel(Precopy *p, const char *uri, GError **errp);
/*
 * Stops the VM, sends what the destination needs to run it and runs the
 * postcopy phase to its end, through pauses and recoveries.  *@resume is
 * set when the source may run the VM again after a failure (the
 * destination never ran it).
 */
bool postcopy_run(Precopy *p, GError **errp);

#endif
