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
#define GUEST_LAYOUT_VERSION 1
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
} GuestSuperblock;

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
