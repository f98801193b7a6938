/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Private state shared by the engine's files (migration.c, precopy.c, incoming.c). */
#ifndef HINTMIG_MIGRATION_PRIV_H
#define HINTMIG_MIGRATION_PRIV_H

#include "hintmig/hintmig.h"
#include "migration/ram.h"
#include "migration/bitmap.h"
#include "migration/dirty_tracker.h"
#include "migration/hint_filter.h"
#include "migration/iouring_sender.h"
#include "migration/wire.h"

/* Room for the largest message (wire.h: WIRE_MAX_PAYLOAD). */
#define MIGRATION_BUF_SIZE (WIRE_HEADER_SIZE + WIRE_MAX_PAYLOAD)
#define MIGRATION_TX_BUFS 16

/* A hint that came while its id was not known yet (see hint_opening). */
typedef struct HintEarly {
    uint32_t cmd_id;
    bool by_gpa;                /* addr/len: gpa and bytes, or first pfn and pages */
    uint64_t addr, len;
} HintEarly;
#define HINT_EARLY_MAX 65536    /* beyond it hints are dropped: always safe */

struct Hintmig {
    HintmigHost host;           /* regions: see ram */
    HmRam *ram;
    GMainContext *ctx;          /* the host's: accepts, status events */

    GMutex lock;                /* guards everything below */
    HintmigParams params;
    HintmigCaps caps;
    HintmigStats stats;       /* the current (or last) migration's */
    gint64 t_start;

    GHookList notifiers;        /* HintmigNotifyFn, for devices */
    HintFilter *hints;          /* the running migration's, or NULL */
    GCond hint_cond;
    uint32_t hint_round_done;   /* the last id whose round the driver closed */
    /* Between asking the device for a new id and learning it, hints are
     * kept here (HintEarly) and replayed if their id is the new one: the
     * request runs without m->lock, since a host may need its own locks
     * (QEMU's BQL) for it while its monitor holds those and asks us. */
    bool hint_opening;
    GArray *hint_early;

    /* postcopy */
    GCond state_cond;           /* resume_uri or recover_fd was set; cancel */
    bool postcopy_requested;    /* migrate_start_postcopy */
    bool postcopy_switched;     /* the guest may run on the destination */
    char *resume_uri;           /* source: migrate -r, taken by the thread */
    int resume_fd;              /* ... over the host's socket, or -1 */
    int recover_fd;             /* destination: listening for a recovery */
    int recover_accepting;      /* ... the one the receiver accepts on now */
    /* Destination: a postcopy migration whose source may be left paused
     * without knowing how it ended here (WIRE_ERR_NEVER_RAN: failed before
     * the guest ran; WIRE_ERR_DONE: completed, COMPLETE's ack lost), told
     * to it by migrate_recover; session 0 when none. */
    uint64_t answer_session;
    uint32_t answer_code;
    struct UffdPostcopy *in_pc; /* destination: live fault counters */

    /* outgoing */
    char *uri;                  /* NULL when the host gave a socket */
    int start_fd;               /* that socket, until the thread takes it */
    bool continue_switchover;   /* hintmig_continue() in pre-switchover */
    GThread *thread;
    bool thread_done;           /* the thread has finished; join it */
    bool cancel;
    bool committed;             /* COMMIT is on its way: too late to cancel */
    int fd;                     /* the socket, -1 when none */
    UringTx *tx;

    /* incoming */
    int listen_fd;
    GSource *listen_src;
    GThread *in_thread;
    bool in_thread_done;
    int in_fd;
};

/* Sets the status; with @why (printf-style), records the first error. */
void hm_set_status(Hintmig *m, HintmigStatus s, const char *why, ...)
    G_GNUC_PRINTF(3, 4);

/*
 * Sets the status with m->lock held, and tells the host (status_changed,
 * on its main context).  Every status change goes through here.
 */
void hm_set_status_locked(Hintmig *m, HintmigStatus s);

/* Tells every notifier about @d->event; they answer in @d. */
void hm_notify(Hintmig *m, HintmigEventData *d);
/* Takes a hint into the running filter, or keeps it while hint_opening. */
void hm_hint_add_locked(Hintmig *m, uint32_t cmd_id, bool by_gpa,
                        uint64_t addr, uint64_t len);

/*
 * Source, VM stopped: with pause-before-switchover, sits in pre-switchover
 * until hintmig_continue() (true) or cancel (false, @errp set).
 */
bool hm_pause_before_switchover(Hintmig *m, GError **errp);

/* Starts a thread through g_thread_try_new(); NULL with @errp set. */
GThread *hm_thread_new(const char *name, GThreadFunc fn, void *data, GError **errp);

/*
 * Starts @fn on a thread of its own, or, when none can be had, runs it here
 * and returns NULL: for work that is only faster on its own thread.
 */
GThread *hm_thread_or_inline(const char *name, GThreadFunc fn, void *data);

/* Asks the host to set the calling thread's priority for @role; true if raised. */
bool hm_thread_role(Hintmig *m, HintmigThreadRole role);

/* True for the statuses of a migration under way (setup to postcopy). */
bool hm_status_running(HintmigStatus s);

/* Returns true when cancel was asked. */
bool hm_cancelled(Hintmig *m);

/*
 * Marks the outgoing migration committed unless cancel was asked first.
 * Returns false (cancelled) or true (cancel is refused from now on).
 */
bool hm_commit(Hintmig *m);

/*
 * Counts @bytes the engine allocated for the running migration into
 * stats.engine_memory (any thread; reset when a migration starts).
 */
void hm_mem_charge(Hintmig *m, uint64_t bytes);
static inline uint64_t hm_bitmap_bytes(uint64_t nbits)
{
    return HM_BITMAP_LONGS(nbits) * sizeof(unsigned long);
}

/*
 * How long to wait on a silent peer: x-peer-timeout when set, else
 * @builtin_ms, the step's own default.
 */
unsigned hm_peer_timeout_ms(Hintmig *m, unsigned builtin_ms);
/* socket_uri.c: with x-peer-timeout set, TCP gives up on @fd's peer after
 * as long. */
void hm_socket_peer_timeout(Hintmig *m, int fd);
/* socket_uri.c: SO_RCVTIMEO of @ms on @fd; 0 waits for ever. */
void hm_set_rcvtimeo(int fd, unsigned ms);

/* Fills @s's postcopy lines from @pc's counters. */
struct UffdPostcopy;
void hm_stats_from_uffd(HintmigStats *s, struct UffdPostcopy *pc);

/* The source thread (precopy.c) and the receiver thread (incoming.c). */
gpointer precopy_thread(gpointer data);
gpointer incoming_thread(gpointer data);
/* incoming_postcopy.c: the incoming thread after migrate_recover on a
 * destination whose postcopy ended while its source was cut off; tells
 * the source how (never ran, or done). */
gpointer in_answer_recovery_thread(gpointer data);

/* Socket helpers (socket_uri.c).  Return -1 (or false) with @errp set on failure. */
bool socket_uri_parse(const char *uri, char **host, char **port, GError **errp);
/* Checks that @uri is a tcp: or unix: URI this file can use. */
bool socket_uri_check(const char *uri, GError **errp);
/*
 * Checks that @fd is a stream socket, connected (@listening NULL) or either
 * (*@listening says which), and makes it blocking; @fd or -1.
 */
int socket_check_stream(int fd, bool *listening, GError **errp);
/*
 * Returns the URI that reaches @fd's peer again ("tcp:ADDR:PORT",
 * "unix:PATH"), or NULL when it cannot be dialled (a socketpair).
 */
char *socket_peer_uri(int fd);
int socket_connect(const char *uri, int timeout_ms, GError **errp);
int socket_listen(const char *uri, GError **errp);
/* Keepalive and a user timeout, so that a peer that died silently is noticed. */
void socket_set_liveness(int fd);

#endif
