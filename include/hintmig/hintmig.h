/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libhintmig: live migration of a VM's RAM and device state, both ends.
 *
 * The engine knows nothing of any one VMM.  The VMM (the host) describes
 * its VM in a HintmigHost: a table of RAM regions, a UUID, the main context
 * on which the engine may call it, and HintmigHostOps: stopping and resuming
 * vCPUs, saving and loading device state, starting the VM once an incoming
 * migration is complete.  A Hintmig is the context for both directions;
 * all its state is in it, none is global.  docs/embedding.md tells the life
 * of a migration from the host's side.
 *
 * Every public name starts with hintmig_, Hintmig or HINTMIG_; nothing else
 * is exported.
 */
#ifndef HINTMIG_HINTMIG_H
#define HINTMIG_HINTMIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#define HINTMIG_API __attribute__((visibility("default")))

/* The page size of the wire and of dirty tracking: 4 KiB. */
#define HINTMIG_PAGE_SIZE 4096u

/* ---- errors ---- */

#define HINTMIG_ERROR (hintmig_error_quark())
HINTMIG_API GQuark hintmig_error_quark(void);

typedef enum HintmigErrorCode {
    HINTMIG_ERROR_FAILED,      /* anything not below */
    HINTMIG_ERROR_INVALID,     /* a bad argument: URI, parameter, region table */
    HINTMIG_ERROR_BUSY,        /* not now: a migration runs, or none does */
    HINTMIG_ERROR_UNSUPPORTED, /* the kernel, the backing or the peer lacks it */
    HINTMIG_ERROR_IO,          /* a system call or the connection failed */
    HINTMIG_ERROR_PROTOCOL,    /* the peer sent what the protocol forbids */
    HINTMIG_ERROR_PEER,        /* the peer refused, or reported its failure */
    HINTMIG_ERROR_CANCELLED,   /* migrate_cancel, or the host is quitting */
    HINTMIG_ERROR_VERIFY,      /* RAM differs between the two sides */
    HINTMIG_ERROR_HOST,        /* a host callback failed (its message follows) */
} HintmigErrorCode;

typedef enum HintmigStatus {
    HINTMIG_STATUS_NONE,
    HINTMIG_STATUS_SETUP,
    HINTMIG_STATUS_ACTIVE,
    HINTMIG_STATUS_DEVICE,       /* stop-and-copy: the VM is stopped */
    HINTMIG_STATUS_COMPLETED,
    HINTMIG_STATUS_FAILED,
    HINTMIG_STATUS_CANCELLING,
    HINTMIG_STATUS_CANCELLED,
    HINTMIG_STATUS_POSTCOPY_ACTIVE,  /* the guest runs on the destination */
    HINTMIG_STATUS_POSTCOPY_PAUSED,  /* the link broke: waiting for recovery */
    HINTMIG_STATUS_POSTCOPY_RECOVER, /* reconnecting */
    HINTMIG_STATUS_PRE_SWITCHOVER,   /* VM stopped, waiting for hintmig_continue() */
} HintmigStatus;

/* ---- guest RAM ---- */

/* What backs a region; it decides how hinted pages are released. */
typedef enum HintmigBacking {
    HINTMIG_BACKING_ANON,      /* private anonymous: MADV_FREE, userfaultfd */
    HINTMIG_BACKING_SHARED,    /* a shared file or memfd: hole punching */
    HINTMIG_BACKING_HUGETLB,   /* hugetlbfs: never released, no postcopy */
} HintmigBacking;

#define HINTMIG_GPA_NONE UINT64_MAX

/*
 * One region of guest RAM.  Both sides must give the same table: the same
 * names and sizes in the same order (addresses may differ).  A page on the
 * wire is named by its region and its offset in it.
 */
typedef struct HintmigRamRegion {
    const char *name;          /* unique: "pc.ram", "vga.vram", ... */
    uint64_t gpa;              /* guest-physical base, or HINTMIG_GPA_NONE */
    void *host;                /* host address, aligned to page_size */
    uint64_t size;             /* bytes, a multiple of page_size */
    uint64_t page_size;        /* host page size: 4096, or a huge page size */
    HintmigBacking backing;
    int fd;                    /* SHARED: the file, for hole punching; or -1 */
    uint64_t fd_offset;        /* SHARED: where @host starts in @fd */
} HintmigRamRegion;

typedef enum HintmigThreadRole {
    HINTMIG_THREAD_URGENT,     /* a waiting vCPU depends on it */
    HINTMIG_THREAD_BULK,       /* background transfer: may yield to the above */
} HintmigThreadRole;

/*
 * What the host does for the engine.  Each entry says on which thread it is
 * called; one called on an engine thread must not call back into the same
 * Hintmig except through hintmig_get_stats(), hintmig_set_uuid() and the
 * hint calls.  Required:
 * stop, resume, save_state, load_state; the rest may be NULL.
 */
typedef struct HintmigHostOps {
    /* Source, migration thread: pause the vCPUs; return once paused. */
    void (*stop)(void *opaque);
    /* Source, migration thread: failed or cancelled after stop(): run again. */
    void (*resume)(void *opaque);
    /* Source, migration thread: the destination has the VM; stay stopped. */
    void (*migrated)(void *opaque);
    /*
     * Source, migration thread, vCPUs paused: appends the device and vCPU
     * state to @out, any size; false with @errp fails the migration.
     */
    bool (*save_state)(void *opaque, GByteArray *out, GError **errp);
    /* Destination, receive thread: loads what save_state wrote; false with @errp. */
    bool (*load_state)(void *opaque, const uint8_t *data, size_t len, GError **errp);
    /*
     * Destination, receive thread: RAM and state are in place (postcopy: the
     * guest may run; missing pages arrive on demand): start the VM.
     */
    void (*incoming_done)(void *opaque);
    /* Source, migration thread: pause or resume RAM writers for a soft-dirty sync. */
    void (*quiesce)(void *opaque, bool pause);
    /* Source, the caller's thread: may a migration start now?  false with @errp. */
    bool (*can_migrate)(void *opaque, GError **errp);
    /* Destination, the caller's thread: may an incoming migration start now? */
    bool (*can_receive)(void *opaque, GError **errp);
    /*
     * Main context: the status changed (the host mirrors QEMU's MIGRATION
     * event).  Optional.
     */
    void (*status_changed)(void *opaque, HintmigStatus old, HintmigStatus now);
    /*
     * The calling engine thread takes on @role: the host sets its priority
     * as it sees fit (none, by default).  Returns true if it raised it.
     * Postcopy's request path (fault thread, return path, page channel)
     * asks for HINTMIG_THREAD_URGENT; the bulk stream's encoders and
     * decoders ask for HINTMIG_THREAD_BULK once postcopy starts.  Optional.
     */
    bool (*thread_role)(void *opaque, HintmigThreadRole role);
    /*
     * Source, migration thread: let the vCPUs run only (100 - @percent)% of
     * the time, so that a guest dirtying faster than the link carries
     * converges (the auto-converge capability); 0 lifts it.  The engine
     * lifts it when the migration ends, whatever the outcome, before
     * resume().  Optional: without it auto-converge is refused.
     */
    void (*throttle)(void *opaque, unsigned percent);
} HintmigHostOps;

/*
 * A dirty-page log the host keeps itself (QEMU's dirty bitmap, KVM's dirty
 * log), used instead of the engine's trackers with HINTMIG_DIRTY_HOST.
 * Called on the migration thread.  It must see every write to guest RAM:
 * by vCPUs and by the host's own device emulation.
 */
typedef struct HintmigDirtyOps {
    /* Starts logging every region: from now on every page counts as clean. */
    bool (*start)(void *opaque, GError **errp);
    /*
     * Sets in @bitmap (one bit per 4 KiB page of region @region, in the
     * table's order; the engine clears it first) every page written since
     * start or the last sync of that region, and clears the host's log for
     * them.  False with @errp fails the migration.
     */
    bool (*sync)(void *opaque, unsigned region, unsigned long *bitmap,
                 GError **errp);
    /* Stops logging (optional). */
    void (*stop)(void *opaque);
} HintmigDirtyOps;

typedef enum HintmigDirtyBackend {
    HINTMIG_DIRTY_AUTO,        /* uffd-wp if the kernel has it, else soft-dirty */
    HINTMIG_DIRTY_UFFD_WP,
    HINTMIG_DIRTY_SOFT_DIRTY,
    HINTMIG_DIRTY_HOST,        /* HintmigHost.dirty_ops */
} HintmigDirtyBackend;

typedef struct HintmigHost {
    const HintmigHostOps *ops;
    void *opaque;
    GMainContext *context;         /* where status_changed runs and incoming
                                    * connections are accepted; required */
    const HintmigRamRegion *regions; /* copied by hintmig_new() */
    unsigned nregions;
    char uuid[37];                 /* the VM's UUID, as text */
    bool uuid_explicit;            /* given by the user: incoming must match it */
    unsigned nvcpus;
    HintmigDirtyBackend dirty_backend;
    const HintmigDirtyOps *dirty_ops; /* with HINTMIG_DIRTY_HOST */
    void *dirty_opaque;
} HintmigHost;

typedef enum HintmigCompress {
    HINTMIG_COMPRESS_NONE,         /* every batch raw */
    HINTMIG_COMPRESS_ZSTD,         /* every batch zstd at compress_level */
    HINTMIG_COMPRESS_AUTO,         /* per batch, raw or a zstd level, as the
                                    * measured link and encoders allow (default) */
} HintmigCompress;

typedef struct HintmigParams {
    uint64_t downtime_limit_ms;    /* default 300 */
    uint64_t max_bandwidth;        /* bytes/s, 0 = unlimited */
    HintmigCompress compress_method;
    int compress_level;            /* zstd level, 1..19, for HINTMIG_COMPRESS_ZSTD */
    unsigned compress_threads;     /* encoder (source) and decoder (destination) threads */
    unsigned multifd_channels;     /* source: connections that carry RAM, the main
                                    * one included, 1..16 (default 1); the
                                    * destination takes what the source opens */
    uint64_t x_peer_timeout_ms;    /* how long to wait on a silent peer; 0 = the
                                    * built-in waits (10 s to 120 s, by step) */
    /* auto-converge (source): after two rounds in a row that dirtied more
     * than throttle_trigger_threshold% of what they sent, the vCPUs are
     * throttled by cpu_throttle_initial%, then cpu_throttle_increment% more
     * each time, up to max_cpu_throttle% (QEMU's names and defaults). */
    unsigned cpu_throttle_initial;     /* 1..99, default 20 */
    unsigned cpu_throttle_increment;   /* 1..99, default 10 */
    unsigned max_cpu_throttle;         /* 1..99, default 99 */
    unsigned throttle_trigger_threshold; /* 1..100, default 50 */
} HintmigParams;

typedef struct HintmigCaps {
    bool verify;                   /* digest RAM after completion (default on) */
    bool free_page_hint;           /* leave guest-reported free pages off the wire */
    bool postcopy_ram;             /* may switch to postcopy (both sides) */
    bool pause_before_switchover;  /* stop in pre-switchover until hintmig_continue() */
    bool postcopy_yield;           /* source: while vCPUs wait on remote pages, the
                                    * postcopy push slows to a 32nd of the link */
    bool x_verify_full;            /* source: verify by hashing both sides' RAM at
                                    * the end, not from pages as sent and applied */
    bool auto_converge;            /* source: throttle the vCPUs while the guest
                                    * dirties faster than the link carries
                                    * (needs HintmigHostOps.throttle) */
} HintmigCaps;

/*
 * What the engine tells devices, through notifiers registered on the
 * Migration context.  A device that supplies free page hints answers in
 * the event data.
 */
typedef enum HintmigEvent {
    HINTMIG_EV_HINT_PROBE,   /* can you supply hints?  set hint_capable */
    HINTMIG_EV_HINT_START,   /* tracking was just synced: issue a fresh
                                * command id in cmd_id (0: not now, say why) */
    HINTMIG_EV_HINT_STOP,    /* hints are no longer used */
    HINTMIG_EV_DONE,         /* the migration is over, completed or not:
                                * give every hinted page back to the guest */
} HintmigEvent;

typedef struct HintmigEventData {
    HintmigEvent event;
    bool hint_capable;
    uint32_t cmd_id;
    uint32_t poison;           /* the guest's page poison value */
    char why_not[128];
} HintmigEventData;

/*
 * A notifier.  It may be called with the engine's lock held, so it must not
 * call back into the engine; a device reports hints from its own thread.
 */
typedef void (*HintmigNotifyFn)(void *opaque, HintmigEventData *data);

/* One set of counters, source or destination; each feeds "info migrate". */
typedef struct HintmigStats {
    bool incoming;                 /* these are a destination's counters */
    HintmigStatus status;
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
    uint64_t postcopy_push_yields; /* source: times the push slowed for waiting vCPUs */
    unsigned cpu_throttle_percent; /* source, auto-converge: the vCPUs' throttle now */
    unsigned cpu_throttle_max_seen; /* source, auto-converge: the highest it went */
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
    uint64_t engine_memory;        /* bytes the engine allocated for this
                                    * migration (bitmaps, buffers, digest
                                    * tables, codec contexts), summed as
                                    * allocated: a bound on its peak */
    uint64_t untouched_pages;      /* never touched on the source: not sent */
    /* The parts of expected_downtime_ms: sending the dirty pages, finishing
     * verification on both sides, the tracker's last sync. */
    uint64_t expected_ram_ms, expected_verify_ms, expected_sync_ms;
    char compress_choice[384];     /* source: the compression used, and with
                                    * auto what it chose and why */
    char compress_mix[192];        /* source, auto: batches per choice */
    /* Connections that carried RAM (1: the main one only), and the bytes
     * each carried; a note when fewer were used than asked for. */
    unsigned multifd_channels;
    uint64_t multifd_bytes[16];
    char multifd_note[160];
} HintmigStats;

typedef struct Hintmig Hintmig;

/*
 * Creates the engine for the VM @host describes (copied, the region table
 * too).  Returns NULL with @errp set if the table is bad (overlapping or
 * unaligned regions, duplicate names) or no main context is given.
 */
HINTMIG_API Hintmig *hintmig_new(const HintmigHost *host, GError **errp);

/*
 * Cancels anything running and waits for its threads: a paused postcopy is
 * abandoned (on the destination the missing pages then read as zero, so
 * vCPUs waiting on them run on).  For a VMM that is quitting.
 */
HINTMIG_API void hintmig_shutdown(Hintmig *m);

/* Cancels anything running, waits for its threads and frees @m (NULL is allowed). */
HINTMIG_API void hintmig_free(Hintmig *m);

/*
 * Starts migrating to @uri ("tcp:HOST:PORT", "unix:PATH") in the
 * background.  Returns false with @errp set if a migration is running, the
 * host refuses (can_migrate) or the URI is bad.
 */
HINTMIG_API bool hintmig_start(Hintmig *m, const char *uri, GError **errp);

/*
 * As hintmig_start(), over @fd, a socket the host connected (QEMU's
 * "fd:NAME").  The engine owns @fd from now on, even on failure.  Further
 * connections (postcopy's page channel) go to the address the destination
 * announces, or fail with a clear error.
 */
HINTMIG_API bool hintmig_start_fd(Hintmig *m, int fd, GError **errp);

/* Cancels the outgoing migration; false with @errp if there is none. */
HINTMIG_API bool hintmig_cancel(Hintmig *m, GError **errp);
/*
 * Either side, status postcopy-active: breaks the link as a network failure
 * would (QEMU's migrate-pause); both sides enter postcopy-paused and wait for
 * hintmig_recover() and hintmig_resume().  False with @errp in other states.
 */
HINTMIG_API bool hintmig_pause(Hintmig *m, GError **errp);

/*
 * Source, status pre-switchover (capability pause-before-switchover): goes
 * on with the switchover.  False with @errp in any other status.
 */
HINTMIG_API bool hintmig_continue(Hintmig *m, GError **errp);

/*
 * Listens on @uri ("tcp:HOST:PORT", host 0 for any; "unix:PATH") for one
 * incoming migration, accepted on the host's main context.  Returns false
 * with @errp set on a bad URI, a busy address, or an incoming migration
 * already running.
 */
HINTMIG_API bool hintmig_incoming_start(Hintmig *m, const char *uri, GError **errp);

/*
 * As hintmig_incoming_start(), over @fd: a connected socket (the source is
 * on its other end) or a listening one.  The engine owns @fd from now on.
 * Postcopy needs a listening one: its page channel is a second connection.
 */
HINTMIG_API bool hintmig_incoming_start_fd(Hintmig *m, int fd, GError **errp);

/* Adds a notifier for HintmigEvent (devices that give hints); returns its id. */
HINTMIG_API gulong hintmig_add_notifier(Hintmig *m, HintmigNotifyFn fn, void *opaque);
HINTMIG_API void hintmig_remove_notifier(Hintmig *m, gulong id);

/*
 * A device reports a free page hint (any thread): @len bytes at
 * guest-physical @gpa, or at host address @hva.  Hints under an id that is
 * not the current round's, and ranges outside guest RAM, are ignored.
 */
HINTMIG_API void hintmig_free_page_hint(Hintmig *m, uint32_t cmd_id, uint64_t gpa,
                                        uint64_t len);
HINTMIG_API void hintmig_free_page_hint_hva(Hintmig *m, uint32_t cmd_id,
                                            const void *hva, uint64_t len);

/* A device reports that the driver finished round @cmd_id (it sent STOP). */
HINTMIG_API void hintmig_free_page_round_done(Hintmig *m, uint32_t cmd_id);

/* Changes the VM's UUID (a destination adopts its source's); false with @errp if invalid. */
HINTMIG_API bool hintmig_set_uuid(Hintmig *m, const char *uuid, GError **errp);

/*
 * Asks the running outgoing migration to switch to postcopy at its next
 * step; false with @errp if there is none or postcopy-ram is off.
 */
HINTMIG_API bool hintmig_start_postcopy(Hintmig *m, GError **errp);

/* Source: resumes a paused postcopy migration over @uri ("migrate -r"), or @fd. */
HINTMIG_API bool hintmig_resume(Hintmig *m, const char *uri, GError **errp);
HINTMIG_API bool hintmig_resume_fd(Hintmig *m, int fd, GError **errp);

/*
 * Destination: listens on @uri, or on the host's listening socket @fd, for
 * the source of a paused postcopy migration (it connects twice).
 */
HINTMIG_API bool hintmig_recover(Hintmig *m, const char *uri, GError **errp);
HINTMIG_API bool hintmig_recover_fd(Hintmig *m, int fd, GError **errp);

/*
 * Destination: true while guest RAM is still arriving (postcopy): reading
 * it may wait on the network, or forever while the link is down.
 */
HINTMIG_API bool hintmig_incoming_ram_pending(Hintmig *m);

/* Returns true while an outgoing migration runs (setup to device). */
HINTMIG_API bool hintmig_is_active(Hintmig *m);

/* Returns the current counters (outgoing, or incoming if that ran last). */
HINTMIG_API void hintmig_get_stats(Hintmig *m, HintmigStats *out);
HINTMIG_API void hintmig_stats_clear(HintmigStats *s);
/*
 * Appends hintmig's own "info migrate" lines for @s to @out: wire bytes,
 * compression, rounds, hints, postcopy faults, dirty tracking and the
 * verification verdict ("verify: OK (N chunks)").  QEMU's own fields
 * (status, times, transferred, remaining, ...) are the host's to print.
 */
HINTMIG_API void hintmig_stats_describe(const HintmigStats *s, GString *out);

/*
 * Sets capability @name ("verify", "free-page-hint", "postcopy-ram",
 * "pause-before-switchover"); false with @errp for an unknown name or bad time.
 */
HINTMIG_API bool hintmig_set_capability(Hintmig *m, const char *name, bool on,
                                        GError **errp);

/* Sets parameter @name from text @value; false with @errp if invalid. */
HINTMIG_API bool hintmig_set_parameter(Hintmig *m, const char *name,
                                       const char *value, GError **errp);

HINTMIG_API HintmigParams hintmig_get_params(Hintmig *m);
HINTMIG_API HintmigCaps hintmig_get_caps(Hintmig *m);

/* Returns QEMU's name of @s ("active", "completed", ...). */
HINTMIG_API const char *hintmig_status_str(HintmigStatus s);

/*
 * Returns true when dirty backend @kind works on this kernel; otherwise
 * false with @errp saying why.  The check runs the backend on a scratch
 * mapping.
 */
HINTMIG_API bool hintmig_dirty_backend_probe(HintmigDirtyBackend kind, GError **errp);
/* Returns "uffd-wp", "soft-dirty", "host" or "auto". */
HINTMIG_API const char *hintmig_dirty_backend_name(HintmigDirtyBackend kind);
/* Parses "auto", "uffd-wp" or "soft-dirty"; returns false if unknown. */
HINTMIG_API bool hintmig_dirty_backend_parse(const char *str, HintmigDirtyBackend *out);

/*
 * Parses @str as a size, as QEMU users write them (512, 64K, 1200M, 2G):
 * a suffix K, M, G or T (an optional trailing B or iB) multiplies by a
 * power of 1024, a bare number by @default_unit.  True and *@out, or false
 * with @errp set.
 */
HINTMIG_API bool hintmig_size_parse(const char *str, uint64_t default_unit,
                                    uint64_t *out, GError **errp);
/* Formats @bytes as "1.5 GiB"; free the string. */
HINTMIG_API char *hintmig_size_to_str(uint64_t bytes);

#endif
