/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A fake host for libhintmig embedded in a test: guest RAM in a few
 * regions, the host calls (stop, resume, device state...) recorded, an
 * optional dirty log of the host's own (HINTMIG_DIRTY_HOST) and an optional
 * free page hint device.  It uses the public API only (hintmig/hintmig.h),
 * as a VMM would.  Shared by test_embed.c and test_sparse.c.
 *
 * What a test needs to differ goes through explicit hooks: how RAM is
 * filled before the engine exists, what happens as the VM stops, and which
 * writes the host's dirty log records (fake_host_write_page).
 */
#ifndef HINTMIG_TEST_FAKE_HOST_H
#define HINTMIG_TEST_FAKE_HOST_H

#include <stdbool.h>
#include <stdint.h>

#include "hintmig/hintmig.h"

#define FAKE_HOST_MAX_REGIONS 3

/* One region of guest RAM to map. */
typedef struct FakeHostRegion {
    const char *name;
    uint64_t gpa;              /* HINTMIG_GPA_NONE: no guest-physical address */
    uint64_t size;
    bool memfd;                /* shared, on a memfd of its own (else anonymous) */
    bool no_thp;               /* MADV_NOHUGEPAGE: touched pages stay scattered */
} FakeHostRegion;

/* A range of free pages the hint device reports: region, first page, pages. */
typedef struct FakeHostHint {
    unsigned region;
    uint64_t first, n;
} FakeHostHint;

typedef struct FakeHost FakeHost;
typedef void (*FakeHostHook)(FakeHost *h, void *opaque);

typedef struct FakeHostConfig {
    const FakeHostRegion *regions;
    unsigned nregions;
    const char *uuid;
    /* save_state writes this many bytes of a known pattern; load_state
     * keeps what it got in ->loaded and refuses anything else. */
    size_t state_size;
    bool host_log;             /* HINTMIG_DIRTY_HOST with the fake's log */
    FakeHostHook fill;         /* the guest's RAM, before the engine exists */
    FakeHostHook on_stop;      /* as the VM stops, before stop() returns */
    void *opaque;              /* for the hooks */
} FakeHostConfig;

struct FakeHost {
    FakeHostConfig cfg;
    HintmigRamRegion regions[FAKE_HOST_MAX_REGIONS];
    unsigned nregions;
    GMainContext *ctx;
    Hintmig *m;
    GByteArray *loaded;            /* destination: the state it loaded */
    gint stopped, resumed, migrated, incoming_done;   /* set on engine threads */
    HintmigStatus last;
    bool saw_pre_switchover;
    /* The host's own dirty log (cfg.host_log): a byte per page. */
    uint8_t *log[FAKE_HOST_MAX_REGIONS];
    unsigned log_starts, log_syncs;
    /* The free page hint device (fake_host_add_hint_device). */
    const FakeHostHint *hints;
    unsigned nhints;
    uint32_t next_cmd_id;
    GAsyncQueue *rounds;           /* cmd ids to report under */
    GThread *reporter;
    gint done;                     /* DONE came: the guest has its pages back */
};

/* The host calls, for a HintmigHost a test builds itself (opaque: a FakeHost). */
extern const HintmigHostOps fake_host_ops;

/* Maps the regions, fills them (cfg->fill) and makes the engine on @ctx. */
FakeHost *fake_host_new(const FakeHostConfig *cfg, GMainContext *ctx);
void fake_host_free(FakeHost *h);

/*
 * Fills page @page of region @region with @byte, as the host's device
 * emulation writes guest RAM.  The host's dirty log records the write,
 * unless @log_misses_it: a log that loses a write, for tests of what
 * verification can and cannot see.
 */
void fake_host_write_page(FakeHost *h, unsigned region, uint64_t page, uint8_t byte,
                          bool log_misses_it);

/*
 * Adds a free page hint device: it answers the engine's events and reports
 * @hints (kept by the caller) from a thread of its own, as a balloon does.
 * A range in a region with a guest-physical address is reported by that
 * address, one in a region without (a memfd's, say) by host address.
 */
void fake_host_add_hint_device(FakeHost *h, const FakeHostHint *hints, unsigned nhints);

/* @s is an end state: completed, failed or cancelled. */
bool fake_host_finished(HintmigStatus s);

/* Both sides finished, and after a completion the host calls came too. */
bool fake_host_pair_done(FakeHost *src, FakeHost *dst);

/* Starts both sides over a socket pair the host made (fd:). */
void fake_host_start_socketpair(FakeHost *src, FakeHost *dst);

/* Starts both sides on @uri, the destination first. */
void fake_host_start_uri(FakeHost *src, FakeHost *dst, const char *uri);

/*
 * Runs the source's main context until both sides have finished, or
 * @seconds.  A pause before switchover is continued (after checking the
 * source stopped first, as QEMU does).
 */
void fake_host_run_until_done(FakeHost *src, FakeHost *dst, unsigned seconds);

/*
 * Asserts both sides completed and the destination verified every chunk
 * with no mismatch; fills @s and @d (hintmig_stats_clear them).
 */
void fake_host_assert_completed(FakeHost *src, FakeHost *dst, HintmigStats *s,
                                HintmigStats *d);

/* Asserts every region holds the same bytes on both sides. */
void fake_host_assert_same_ram(FakeHost *src, FakeHost *dst);

/* Asserts the destination loaded the state the source saved. */
void fake_host_assert_state_loaded(FakeHost *dst);

#endif
