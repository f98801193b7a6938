/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Private state shared by the engine's files (migration.c, precopy.c, incoming.c). */
#ifndef HINTMIG_MIGRATION_PRIV_H
#define HINTMIG_MIGRATION_PRIV_H

#include "migration/migration.h"
#include "migration/hint_filter.h"
#include "migration/iouring_sender.h"
#include "migration/thread_prio.h"

/* Room for one wire header plus the largest RAM batch. */
#define MIGRATION_BUF_SIZE (16 + (64u << 10) + 128 * 8 + (1u << 20))
#define MIGRATION_TX_BUFS 32

struct Migration {
    MigrationHost host;

    GMutex lock;                /* guards everything below */
    MigrationParams params;
    MigrationCaps caps;
    MigrationStats stats;       /* the current (or last) migration's */
    gint64 t_start;

    GHookList notifiers;        /* MigrationNotifyFn, for devices */
    HintFilter *hints;          /* the running migration's, or NULL */
    GCond hint_cond;
    uint32_t hint_round_done;   /* the last id whose round the driver closed */

    /* postcopy */
    GCond state_cond;           /* resume_uri or recover_fd was set; cancel */
    bool postcopy_requested;    /* migrate_start_postcopy */
    bool postcopy_switched;     /* the guest may run on the destination */
    char *resume_uri;           /* source: migrate -r, taken by the thread */
    int recover_fd;             /* destination: listening for a recovery */
    struct UffdPostcopy *in_pc; /* destination: live fault counters */

    /* outgoing */
    char *uri;
    GThread *thread;
    bool thread_done;           /* the thread has finished; join it */
    bool cancel;
    bool committed;             /* COMMIT is on its way: too late to cancel */
    int fd;                     /* the socket, -1 when none */
    UringTx *tx;

    /* incoming */
    int listen_fd;
    guint listen_src;
    GThread *in_thread;
    bool in_thread_done;
    int in_fd;
};

/* Sets the status; with @why (printf-style), records the first error. */
void migration_set_status(Migration *m, MigrationStatus s, const char *why, ...)
    G_GNUC_PRINTF(3, 4);

/* Tells every notifier about @d->event; they answer in @d. */
void migration_notify(Migration *m, MigrationEventData *d);

/* Returns true when cancel was asked. */
bool migration_cancelled(Migration *m);

/*
 * Marks the outgoing migration committed unless cancel was asked first.
 * Returns false (cancelled) or true (cancel is refused from now on).
 */
bool migration_commit(Migration *m);

/* Fills @s's postcopy lines from @pc's counters. */
struct UffdPostcopy;
void migration_stats_from_uffd(MigrationStats *s, struct UffdPostcopy *pc);

/* The source thread (precopy.c) and the receiver thread (incoming.c). */
gpointer precopy_thread(gpointer data);
gpointer incoming_thread(gpointer data);

/* TCP helpers (socket_uri.c).  Return -1 with @errp set on failure. */
bool socket_uri_parse(const char *uri, char **host, char **port, GError **errp);
int socket_connect(const char *uri, int timeout_ms, GError **errp);
int socket_listen(const char *uri, GError **errp);
/* Keepalive and a user timeout, so that a peer that died silently is noticed. */
void socket_set_liveness(int fd);

#endif
