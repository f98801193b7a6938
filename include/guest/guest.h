/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The synthetic guest: boot, per-vCPU execution and self-check.
 *
 * The host side (vm/) runs guest code on vCPU threads and never keeps guest
 * state of its own, except GuestVcpuState: the small per-vCPU context that
 * migration serializes as vCPU state, like a register file.
 */
#ifndef HINTMIG_GUEST_H
#define HINTMIG_GUEST_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "guest/guest_layout.h"
#include "guest/page_alloc.h"
#include "vm/guest_ram.h"

typedef struct WorkloadConfig {
    enum guest_workload_kind kind;
    uint64_t wss;     /* bytes, whole guest */
    uint64_t rate;    /* bytes/s per vCPU; 0 = as fast as possible */
    uint64_t fill;    /* bytes, whole guest (fill-free) */
} WorkloadConfig;

/*
 * Parses a --workload value: "idle", "churn[,wss=SIZE][,rate=SIZE]" or
 * "fill-free[,fill=SIZE][,wss=SIZE][,rate=SIZE]".  Defaults depend on
 * @ram_size.  Returns false with @errp set on a bad value.
 */
bool workload_parse(const char *str, uint64_t ram_size, WorkloadConfig *out,
                    GError **errp);

/* Returns a new string describing @wl, e.g. "churn,wss=64M,rate=16M". */
char *workload_describe(const WorkloadConfig *wl);

/* The serialized vCPU context: fixed size, little-endian fields. */
typedef struct GuestVcpuState {
    uint32_t magic;       /* GUEST_VCPU_MAGIC */
    uint32_t index;
    uint64_t task_pfn;    /* the task this vCPU runs; 0 before its first run */
    uint64_t steps;       /* guest operations retired */
    uint64_t reserved;
} GuestVcpuState;

#define GUEST_VCPU_MAGIC 0x55504356u   /* "VCPU" */

/* Host-side pacing of a vCPU; not guest state, reset on every resume. */
typedef struct GuestVcpuPace {
    int64_t t0_us;
    uint64_t writes_at_t0;
} GuestVcpuPace;

struct VirtioBalloon;

/* Boot parameters of the guest's balloon driver. */
typedef struct BalloonDriverConfig {
    uint32_t poison;          /* page poison value to report (0: none) */
    bool early_release;       /* release hinted pages before DONE */
} BalloonDriverConfig;

typedef struct Guest {
    GuestRam *ram;
    GuestMem mem;
    bool booted;              /* read by vCPUs without the lock: atomics */
    GMutex boot_lock;         /* one vCPU boots, the others wait */
    unsigned nvcpus;
    WorkloadConfig boot_wl;   /* used only if this guest boots fresh */
    BalloonDriverConfig boot_balloon;
    struct VirtioBalloon *balloon;   /* the "hardware", or NULL: no device */
} Guest;

typedef struct GuestCheck {
    bool booted;
    uint64_t verified;        /* data pages whose content matched */
    uint64_t corrupt;         /* data pages that did not, plus broken structures */
    uint64_t first_corrupt_pfn;
    char *error;              /* first structural problem, or NULL */
} GuestCheck;

typedef struct GuestInfo {
    uint64_t boot_id;
    WorkloadConfig wl;
    uint64_t writes;          /* data page writes by all tasks */
    uint64_t free_pages;
    uint64_t npages;
} GuestInfo;

/* Creates the guest over @ram for @nvcpus vCPUs; nothing runs yet. */
Guest *guest_new(GuestRam *ram, unsigned nvcpus, const WorkloadConfig *wl);

void guest_free(Guest *g);

/*
 * Boots the guest: attaches to guest state already in RAM (a migrated or
 * loaded guest) or, when RAM holds none, lays it out afresh.  Returns false
 * with @errp set when RAM holds a guest that does not fit this VM.  Safe
 * from any thread; guest_vcpu_step() calls it first, so a host may leave
 * the boot to its vCPUs when RAM may still be arriving (postcopy).
 */
bool guest_boot(Guest *g, GError **errp);

/* Initialises a vCPU context for vCPU @index that has never run. */
void guest_vcpu_state_init(GuestVcpuState *st, unsigned index);

/*
 * Runs a bounded batch of guest operations on vCPU @st.  Sets *@wake_us to
 * the monotonic time at which there is more to do.  Returns false with
 * @errp set when the guest panics (its state in RAM is corrupt).
 */
bool guest_vcpu_step(Guest *g, GuestVcpuState *st, GuestVcpuPace *pace,
                     int64_t now_us, int64_t *wake_us, GError **errp);

/* Verifies every allocated data page and the allocator; vCPUs must be paused. */
void guest_self_check(Guest *g, GuestCheck *out);

/* Returns "guest memory check: OK (N pages verified)" or the failure. */
char *guest_check_describe(const GuestCheck *c);

void guest_check_clear(GuestCheck *c);

/* Fills @out from the superblock and tasks; returns false if not booted. */
bool guest_info(Guest *g, GuestInfo *out);

#endif
