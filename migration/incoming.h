/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The incoming side's private state, shared by incoming.c (the receiver:
 * handshake, decoders, precopy's messages), incoming_verify.c (RAM
 * digests) and incoming_postcopy.c (the page channel, postcopy's switch,
 * completion and recovery).
 */
#ifndef HINTMIG_INCOMING_H
#define HINTMIG_INCOMING_H

#include "migration_priv.h"
#include "migration/page_codec.h"
#include "migration/uffd_postcopy.h"
#include "migration/wire.h"

/* At most this many RAM batches read ahead of the decoders.  Buffers are
 * made as the stream needs them: a short or slow stream uses few. */
#define RX_BUFS 16
/* Waits on the source; x-peer-timeout replaces them all when set. */
#define HELLO_TIMEOUT_MS 30000
#define COMMIT_TIMEOUT_MS 60000
#define CHANNEL_TIMEOUT_MS 10000     /* for the source's second connection */
#define PLACE_TIMEOUT_MS 60000       /* after COMPLETE, for the last pages */
#define RECOVER_TIMEOUT_MS 60000     /* after migrate_recover, for migrate -r */

typedef struct RxBuf {
    uint8_t *data;
    size_t len;
} RxBuf;

typedef struct Incoming {
    Hintmig *m;
    HmRam *ram;
    int fd;
    unsigned ndec;
    GThread **dec;
    GAsyncQueue *dec_q;           /* RxBuf * to apply, or &stop_buf */
    GAsyncQueue *rx_pool;         /* buffers the decoders are done with */
    RxBuf bufs[RX_BUFS];
    unsigned nbufs;               /* bufs[0..nbufs) have memory */
    GMutex lock;
    GCond idle;
    unsigned busy;
    char *decode_error;           /* first batch that failed */
    bool gave_up;                 /* an ERROR went to the source */
    PageCodecStats codec;
    uint64_t rx_bytes;
    uint64_t features;
    GByteArray *state;          /* device state, reassembled from its parts */
    bool state_whole;           /* its last part came */
    uint32_t state_parts;
    bool state_digest_seen;     /* STATE_DIGEST came after the last part */
    uint64_t state_digest;
    uint64_t *src_digests;
    uint64_t nchunks, digests_received;
    unsigned long *hinted;        /* hinted by the source and not sent since */
    uint32_t poison;              /* the guest's free page poison, from HINTED */

    /* postcopy */
    uint64_t session;             /* the source's, from its hello */
    GMutex send_lock;             /* the return path: acks and page requests */
    bool link_up;                 /* under send_lock */
    UffdPostcopy *pc;             /* set up once postcopy was negotiated */
    bool postcopy;                /* the guest runs here: place, do not write */
    uint64_t *digests;            /* each page's digest as written or placed
                                   * (page digests, or postcopy); 0: zero page */
    int ch_fd;                    /* the page channel, -1 when none */
    GThread *ch_thread;

    /* multifd (incoming_multifd.c) */
    unsigned nconns;              /* RAM connections, the main one included */
    unsigned conns_want;          /* as many as the source opened first */
    int conn_fds[WIRE_MULTIFD_MAX];       /* [1, nconns) */
    GThread *conn_threads[WIRE_MULTIFD_MAX];
    uint32_t conn_epoch[WIRE_MULTIFD_MAX];   /* the last sync each reached */
    uint64_t conn_rx[WIRE_MULTIFD_MAX];   /* bytes read on each (under lock) */
    bool conns_stop;              /* under lock: the readers are stopped */
    bool conn_ended;              /* under lock: a reader ended, no sync can
                                   * complete */
    char *conn_error;             /* under lock: why a further connection failed */
    GCond sync_cond;              /* under lock: a reader reached a sync or ended */
} Incoming;

/* incoming.c */
/* Refuses with @code: tells the source why (an ERROR), sets @errp; false. */
bool in_give_up(Incoming *in, WireRefusal code, GError **errp, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);
/* Acks request @seq with @code and @msg; false with @errp if the link broke. */
bool in_ack(Incoming *in, uint32_t seq, WireRefusal code, const char *msg,
            GError **errp);
/* Waits until every queued batch is applied; false with the first decode error. */
bool in_drain(Incoming *in, GError **errp);
/*
 * Reads a RAM batch of @len bytes (at most MIGRATION_BUF_SIZE) off @fd into
 * a receive buffer and queues it for the decoders (any reader thread).
 * False with @errp: the read failed (HINTMIG_ERROR_IO), or a batch before
 * it failed to decode.
 */
bool in_read_batch(Incoming *in, int fd, uint32_t len, GError **errp);
/* Counts a message of @len payload bytes read on connection @conn (0: the main one). */
void in_count_rx(Incoming *in, unsigned conn, uint32_t len);

/* incoming_verify.c */
/* Allocates in->digests (zeroed: every page a zero page) unless it exists. */
bool in_page_digests_new(Incoming *in, GError **errp);
/* VERIFY: the source's chunk digests, @d (@len bytes). */
bool in_store_digests(Incoming *in, const uint8_t *d, size_t len, GError **errp);
/* Compares this side's RAM with the source's digests and acks @seq with the verdict. */
bool in_check_ram(Incoming *in, uint32_t seq, GError **errp);
/* With verify on, checks the device state against its digest; a failure
 * acks @seq with the reason. */
bool in_check_state(Incoming *in, uint32_t seq, GError **errp);

/* incoming_postcopy.c */
/* Postcopy: decodes a batch into @staging and places its missing pages. */
bool in_place_batch(Incoming *in, PageDecoder *d, uint8_t *staging,
                    const uint8_t *buf, size_t len, PageCodecStats *st,
                    GError **errp);
/* After the hello: the source's page channel @fd came (taken, closed on
 * failure); sets up userfaultfd and the channel's thread. */
bool in_page_channel_start(Incoming *in, int fd, GError **errp);
/* Accepts one connection on @lfd, waiting at most @timeout_ms. */
int in_accept_one(Hintmig *m, int lfd, int timeout_ms, GError **errp);
/*
 * Reads the first message of a new connection of session @want:
 * PAGE_CHANNEL, RESUME, or (with @mf) MULTIFD, decoded into @mf.  Returns
 * the type, or 0 with @errp set.
 */
uint16_t in_read_intro(Hintmig *m, uint64_t want, int fd, WireMultifd *mf,
                       GError **errp);
void in_channel_stop(Incoming *in);
/* PENDING: the pages the source still owes. */
bool in_apply_pending(Incoming *in, const uint8_t *d, size_t len, GError **errp);
/* POSTCOPY_RUN @seq: load the state, run the guest, ack. */
bool in_postcopy_run(Incoming *in, uint32_t seq, GError **errp);
/* COMPLETE @seq in postcopy; *@final once nothing more can be done. */
bool in_postcopy_complete(Incoming *in, uint32_t seq, bool *final, GError **errp);
/* The link broke in postcopy: pause until a recovery, or false if abandoned. */
bool in_postcopy_recover(Incoming *in, const char *why);

/* incoming_multifd.c */
/* After the hello: accepts the source's further connections (the page
 * channel, multifd connections) and starts what reads them. */
bool in_accept_connections(Incoming *in, GError **errp);
/* MULTIFD_SYNC (@d, @len) read on connection @conn (0: the main one):
 * waits for every connection to reach it and the decoders to drain. */
bool in_multifd_sync(Incoming *in, unsigned conn, const uint8_t *d, size_t len,
                     GError **errp);
/* Stops the further connections' readers and closes them. */
void in_multifd_stop(Incoming *in);

/*
 * A postcopy recovery: accepts on @lfd the source's further connections
 * again, as many as it opened first (none if it opened none), and starts
 * their readers, with their syncs counted from 0.  False with @errp.
 */
bool in_multifd_reaccept(Incoming *in, int lfd, GError **errp);

#endif
