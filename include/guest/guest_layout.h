/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The synthetic guest's in-RAM data structures.
 *
 * Everything the guest knows is here, inside guest RAM, so that migrating
 * RAM plus the tiny per-vCPU context (GuestVcpuState) moves the whole guest:
 *
 *   pfn 0                 superblock: boot parameters, allocator free lists,
 *                         allocator lock, per-vCPU task pointers
 *   pfn 1 .. meta_npages  one GuestPageMeta per page (generation counter,
 *                         buddy links, state)
 *   zone_start .. npages  pages handed out by the buddy allocator
 *
 * The host treats all of it as untrusted: every pfn read from RAM is checked
 * before use, and a bad one panics the guest, never the host.
 */
#ifndef HINTMIG_GUEST_LAYOUT_H
#define HINTMIG_GUEST_LAYOUT_H

#include <stdint.h>

#define GUEST_MAGIC         0x21474d544e494848ULL  /* "HHINTMG!" */
#define GUEST_LAYOUT_VERSION 2
#define GUEST_MAX_ORDER     10      /* 4 MiB blocks, as Linux's MAX_ORDER */
#define GUEST_MAX_VCPUS     64
#define GUEST_PFN_NONE      UINT32_MAX
#define GUEST_TASK_MAGIC    0x4b534154u            /* "TASK" */

enum guest_page_state {
    GPS_RESERVED  = 1,   /* superblock and metadata */
    GPS_FREE_HEAD = 2,   /* first page of a free block of 2^order pages */
    GPS_FREE      = 3,   /* inside a free block */
    GPS_ALLOC     = 4,   /* allocated (head and tail pages alike) */
};

enum guest_page_kind {
    GPK_NONE   = 0,
    GPK_DATA   = 1,      /* content derived from (pfn, gen): self-checked */
    GPK_KERNEL = 2,      /* guest-internal structures (tasks, vectors) */
    GPK_HINT   = 3,      /* taken by the balloon driver for a hint */
};

typedef struct GuestPageMeta {
    uint32_t gen;        /* generation of the content (GPK_DATA) */
    uint32_t next;       /* free-list links (GPS_FREE_HEAD) */
    uint32_t prev;
    uint8_t state;       /* enum guest_page_state */
    uint8_t order;       /* block order (free heads, allocated heads) */
    uint8_t kind;        /* enum guest_page_kind (GPS_ALLOC) */
    uint8_t owner;       /* vCPU index, 0xff for the boot CPU's pages */
} GuestPageMeta;

enum guest_workload_kind {
    GWL_IDLE = 0,
    GWL_CHURN = 1,
    GWL_FILL_FREE = 2,
};

typedef struct GuestSuperblock {
    uint64_t magic;
    uint32_t version;
    uint32_t page_size;
    uint64_t npages;
    uint64_t meta_npages;
    uint64_t zone_start;
    uint64_t boot_id;        /* random, set once at boot */
    uint64_t boot_seed;
    uint32_t nvcpus;
    uint32_t lock;           /* allocator spinlock */
    /* boot parameters: the workload, as the guest's "kernel command line" */
    uint32_t wl_kind;
    uint32_t pad0;
    uint64_t wl_wss;         /* bytes, whole guest */
    uint64_t wl_rate;        /* bytes/s per vCPU */
    uint64_t wl_fill;        /* bytes, whole guest */
    /* buddy allocator */
    uint32_t free_head[GUEST_MAX_ORDER + 1];
    uint32_t pad1;
    uint64_t nr_free[GUEST_MAX_ORDER + 1];  /* blocks on each list */
    uint64_t free_pages;
    uint64_t task_pfn[GUEST_MAX_VCPUS];
    uint64_t balloon_pfn;    /* the balloon driver's state page, or 0 */
    uint32_t balloon_flags;  /* boot parameters: GUEST_BALLOON_* */
    uint32_t balloon_poison; /* page poison value the driver reports */
    /*
     * Steps run by every vCPU, like a kernel's vmstat counters: the
     * superblock, as a kernel's own pages, is written all the time, so a
     * migration always owes it again at the end.
     */
    uint64_t vm_events;
} GuestSuperblock;

#define GUEST_BALLOON_EARLY_RELEASE 1u   /* release hinted pages before DONE */
#define GUEST_BALLOON_QSIZE 64
#define GUEST_BALLOON_MAGIC 0x4e4c4142u  /* "BALN" */

/*
 * The balloon driver's state page: its free page queue (descriptor table,
 * avail and used rings) and bookkeeping, all in guest RAM.
 */
typedef struct GuestBalloon {
    uint32_t magic;
    uint32_t phase;          /* GBP_* */
    uint32_t cmd_id;         /* the id being reported under, or 0 */
    uint32_t poison;
    uint16_t avail_idx;      /* next avail index to publish */
    uint16_t last_used;      /* used entries consumed */
    uint16_t in_flight;      /* descriptors the device still holds */
    uint16_t pad;
    uint32_t held_dir;       /* page vector of held 4 MiB blocks */
    uint32_t ring_pfn;       /* descriptor table, avail and used rings */
    uint64_t held;           /* blocks held (reported, not released) */
    uint64_t reported;       /* blocks reported, all rounds */
    uint64_t released_early; /* blocks released before DONE, re-initialised */
    uint64_t rounds;
    uint32_t ids[GUEST_BALLOON_QSIZE];   /* 4-byte command buffers */
} GuestBalloon;

enum guest_balloon_phase {
    GBP_IDLE = 0,            /* nothing reported or held */
    GBP_REPORTING = 1,       /* sending blocks under cmd_id */
    GBP_HOLDING = 2,         /* STOP sent; blocks held until DONE */
};

enum guest_task_phase {
    GTP_IDLE = 0,
    GTP_WSS_ALLOC = 1,   /* allocate and write the working set */
    GTP_CHURN = 2,       /* rewrite working-set pages at the set rate */
    GTP_FILL = 3,        /* fill-free: allocate and write */
    GTP_FREE = 4,        /* fill-free: free what was filled */
};

/* One page per vCPU: the "process" that runs the workload. */
typedef struct GuestTask {
    uint32_t magic;
    uint32_t vcpu;
    uint32_t phase;
    uint32_t pad;
    uint64_t rng[2];          /* xorshift128+ state */
    uint64_t writes;          /* pages written */
    uint64_t wss_target, wss_count;
    uint64_t fill_target, fill_count, free_count;
    uint64_t rate;            /* bytes/s */
    uint32_t wss_dir;         /* page-list vectors (see page_vec.c) */
    uint32_t fill_dir;
} GuestTask;

#endif
