/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The migration engine: precopy over TCP, both ends.
 *
 * The engine knows nothing of any one VMM.  The VMM describes its VM in a
 * MigrationHost (RAM, UUID, vCPU count) and implements MigrationHostOps:
 * stopping and resuming vCPUs, saving and loading device state, starting
 * the VM once an incoming migration is complete.  A Migration is the
 * context for both directions; all its state is in it, none is global.
 */
#ifndef HINTMIG_MIGRATION_H
#define HINTMIG_MIGRATION_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "migration/dirty_tracker.h"
#include "migration/guest_ram.h"
#include "migration/monitor.h"

typedef enum MigrationStatus {
    MIGRATION_STATUS_NONE,
    MIGRATION_STATUS_SETUP,
    MIGRATION_STATUS_ACTIVE,
    MIGRATION_STATUS_DEVICE,       /* stop-and-copy: the VM is stopped */
    MIGRATION_STATUS_COMPLETED,
    MIGRATION_STATUS_FAILED,
    MIGRATION_STATUS_CANCELLING,
    MIGRATION_STATUS_CANCELLED,
    MIGRATION_STATUS_POSTCOPY_ACTIVE,  /* the guest runs on the destination */
    MIGRATION_STATUS_POSTCOPY_PAUSED,  /* the link broke: waiting for recovery */
    MIGRATION_STATUS_POSTCOPY_RECOVER, /* reconnecting */
} MigrationStatus;

typedef struct MigrationHostOps {
    /* Source: pause the vCPUs for stop-and-copy; returns once paused. */
    void (*stop)(void *opaque);
    /* Source: the migration failed or was cancelled after stop(): run again. */
    void (*resume)(void *opaque);
    /* Source: the destination has the VM; stay stopped for good. */
    void (*migrated)(void *opaque);
    /* Source, vCPUs paused: the device and vCPU state sections to send. */
    GPtrArray *(*save_state)(void *opaque);
    /* Destination: load the sections received; false with @errp if they do not fit. */
    bool (*load_state)(void *opaque, GPtrArray *sections, GError **errp);
    /* Destination: RAM and state are in place and verified: start the VM. */
    void (*incoming_done)(void *opaque);
    /* Pause or resume the writers of guest RAM for a non-atomic dirty sync. */
    void (*quiesce)(void *opaque, bool pause);
    /* Source: may "migrate" start now?  false with @errp to refuse. */
    bool (*can_migrate)(void *opaque, GError **errp);
    /* Destination: may "migrate_incoming" start now? */
    bool (*can_receive)(void *opaque, GError **errp);
} MigrationHostOps;

typedef struct MigrationHost {
    const MigrationHostOps *ops;
    void *opaque;
    GuestRam *ram;
    char uuid[37];                 /* the VM's UUID, as text */
    bool uuid_explicit;            /* given by the user: incoming must match it */
    unsigned nvcpus;
    DirtyBackendKind dirty_backend;
} MigrationHost;

typedef enum CompressMethod {
    COMPRESS_NONE,
    COMPRESS_ZSTD,
} CompressMethod;

typedef struct MigrationParams {
    uint64_t downtime_limit_ms;    /* default 300 */
    uint64_t max_bandwidth;        /* bytes/s, 0 = unlimited */
    CompressMethod compress_method;
    int compress_level;            /* zstd level, 1..19 */
    unsigned compress_threads;     /* encoder (source) and decoder (destination) threads */
} MigrationParams;

typedef struct MigrationCaps {
    bool verify;                   /* digest RAM after completion (default on) */
    bool free_page_hint;           /* leave guest-reported free pages off the wire */
    bool postcopy_ram;             /* may switch to postcopy (both sides) */
} MigrationCaps;

/*
 * What the engine tells devices, through notifiers registered on the
 * Migration context.  A device that supplies free page hints answers in
 * the event data.
 */
typedef enum MigrationEvent {
    MIGRATION_EV_HINT_PROBE,   /* can you supply hints?  set hint_capable */
    MIGRATION_EV_HINT_START,   /* tracking was just synced: issue a fresh
                                * command id in cmd_id (0: not now, say why) */
    MIGRATION_EV_HINT_STOP,    /* hints are no longer used */
    MIGRATION_EV_DONE,         /* the migration is over, completed or not:
                                * give every hinted page back to the guest */
} MigrationEvent;

typedef struct MigrationEventData {
    MigrationEvent event;
    bool hint_capable;
    uint32_t cmd_id;
    uint32_t poison;           /* the guest's page poison value */
    char why_not[128];
} MigrationEventData;

/*
 * A notifier.  It may be called with the engine's lock held, so it must not
 * call back into the engine; a device reports hints from its own thread.
 */
typedef void (*MigrationNotifyFn)(void *opaque, MigrationEventData *data);

/* One set of counters, source or destination; each feeds "info migrate". */
typedef struct MigrationStats {
    bool incoming;                 /* these are a destination's counters */
    MigrationStatus status;
    char *error;                   /* why it failed or was cancelled */
    uint64_t total_time_ms;        /* start to completion (or now) */
    uint64_t setup_time_ms;        /* connect and handshake */
    uint64_t downtime_ms;          /* VM stopped until the destination acked */
    uint64_t expected_downtime_ms; /* estimate at the last sync */
    uint64_t ram_total;            /* bytes of guest RAM */
    uint64_t ram_remaining;        /* bytes dirty at the last sync, still to send */
    uint64_t transferred_ram;      /* bytes of RAM messages on the wire */
    uint64_t wire_bytes;           /* every byte this side sent on the socket */
    uint64_t wire_bytes_received;  /* every byte this side received */
    uint64_t duplicate_pages;      /* zero pages: a marker only */
    uint64_t normal_pages;         /* pages sent with content */
    uint64_t normal_bytes;         /* their size before compression */
    uint64_t compressed_bytes;     /* their size on the wire */
    uint64_t zstd_batches, raw_batches;
    uint64_t dirty_sync_count;     /* dirty-tracker syncs */
    uint64_t dirty_pages_rate;     /* pages/s dirtied, at the last sync */
    uint64_t rounds;               /* passes over RAM, the bulk pass included */
    double throughput_mbps;        /* wire throughput so far */
    uint64_t verify_chunks;        /* chunks compared */
    uint64_t verify_mismatches;    /* chunks that differed */
    uint64_t hinted_pages;         /* pages the guest hinted under the round's id */
    uint64_t hint_skipped_pages;   /* hinted pages kept off the wire */
    uint64_t madv_freed_bytes;     /* hinted pages released on the source */
    char hint_note[128];           /* why hinting did not run, or (destination)
                                    * why hinted pages were not all filled */
    uint64_t verify_source_ms;     /* hashing the source's RAM (overlaps the last round) */
    uint64_t verify_dest_ms;       /* hashing the destination's RAM (in the downtime) */
    bool verified;                 /* a verdict exists */
    /* postcopy */
    bool postcopy;                 /* this migration switched to postcopy */
    uint64_t postcopy_requests;    /* pages the destination asked for */
    uint64_t postcopy_urgent_pages;/* source: pages sent on the page channel */
    uint64_t postcopy_remaining;   /* pages the destination still lacks */
    uint64_t faults_local;         /* destination: faults served without the network */
    uint64_t faults_remote;        /* destination: faults that waited for the source */
    uint64_t hinted_requested;     /* destination: requests for hinted pages */
    uint64_t duplicate_placements; /* destination: pages that arrived twice */
    uint64_t hint_filled;          /* destination: hinted pages filled at the switch */
    uint64_t hint_fill_ms;
    uint64_t fault_lat_samples;
    uint64_t fault_lat_p50_us, fault_lat_p99_us, fault_lat_max_us;
    bool fault_thread_rt;          /* destination: the fault thread got SCHED_FIFO */
    uint64_t recoveries;           /* postcopy recoveries that succeeded */
    char dirty_backend[64];        /* tracker in use, and why */
} MigrationStats;

typedef struct Migration Migration;

/* Creates the engine for the VM @host describes (copied). */
Migration *migration_new(const MigrationHost *host);

/*
 * Cancels anything running and waits for its threads: a paused postcopy is
 * abandoned (on the destination the missing pages then read as zero, so
 * vCPUs waiting on them run on).  For a VMM that is quitting.
 */
void migration_shutdown(Migration *m);

/* Cancels anything running, waits for its threads and frees @m. */
void migration_free(Migration *m);

/*
 * Starts migrating to @uri ("tcp:HOST:PORT") in the background.  Returns
 * false with @errp set if a migration is running or the URI is bad.
 */
bool migration_start(Migration *m, const char *uri, GError **errp);

/* Cancels the outgoing migration; false with @errp if there is none. */
bool migration_cancel(Migration *m, GError **errp);

/*
 * Listens on @uri ("tcp:HOST:PORT", host 0 for any) for one incoming
 * migration, served on the default main context.  Returns false with @errp
 * set on a bad URI, a busy port, or an incoming migration already running.
 */
bool migration_incoming_start(Migration *m, const char *uri, GError **errp);

/* Adds a notifier for MigrationEvent; returns its id. */
gulong migration_add_notifier(Migration *m, MigrationNotifyFn fn, void *opaque);
void migration_remove_notifier(Migration *m, gulong id);

/*
 * A device reports a free page hint (any thread); hints under an id that is
 * not the current round's are ignored.
 */
void migration_free_page_hint(Migration *m, uint32_t cmd_id, uint64_t gpa,
                              uint64_t len);

/* A device reports that the driver finished round @cmd_id (it sent STOP). */
void migration_free_page_round_done(Migration *m, uint32_t cmd_id);

/* Changes the VM's UUID (a destination adopts its source's). */
void migration_set_uuid(Migration *m, const char *uuid);

/*
 * Asks the running outgoing migration to switch to postcopy at its next
 * step; false with @errp if there is none or postcopy-ram is off.
 */
bool migration_start_postcopy(Migration *m, GError **errp);

/* Source: resumes a paused postcopy migration over @uri ("migrate -r"). */
bool migration_resume(Migration *m, const char *uri, GError **errp);

/* Destination: listens on @uri for the source of a paused postcopy migration. */
bool migration_recover(Migration *m, const char *uri, GError **errp);

/*
 * Destination: true while guest RAM is still arriving (postcopy): reading
 * it may wait on the network, or forever while the link is down.
 */
bool migration_incoming_ram_pending(Migration *m);

/* Returns true while an outgoing migration runs (setup to device). */
bool migration_is_active(Migration *m);

/* Returns the current counters (outgoing, or incoming if that ran last). */
void migration_get_stats(Migration *m, MigrationStats *out);
void migration_stats_clear(MigrationStats *s);

/* Sets capability @name; false with @errp for an unknown name or bad time. */
bool migration_set_capability(Migration *m, const char *name, bool on,
                              GError **errp);

/* Sets parameter @name from text @value; false with @errp if invalid. */
bool migration_set_parameter(Migration *m, const char *name, const char *value,
                             GError **errp);

MigrationParams migration_get_params(Migration *m);
MigrationCaps migration_get_caps(Migration *m);

/* Returns QEMU's name of @s ("active", "completed", ...). */
const char *migration_status_str(MigrationStatus s);

/* Registers migrate, migrate_incoming, migrate_cancel, ... and info migrate. */
void migration_hmp_register(Migration *m, Monitor *mon);

#endif
