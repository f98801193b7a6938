/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Kernel ABI that Debian 12's linux-libc-dev (6.1) predates.
 *
 * The running kernel may well have these (PAGEMAP_SCAN and
 * UFFD_FEATURE_WP_ASYNC came in 6.7); the code probes for them at run time
 * and falls back when the probe fails.  This is the only file that defines
 * kernel ABI by hand: every value here is fixed by the kernel's uapi.
 */
#ifndef HINTMIG_KERNEL_COMPAT_H
#define HINTMIG_KERNEL_COMPAT_H

#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

/* include/uapi/linux/userfaultfd.h */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON         (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC       (1 << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* include/uapi/linux/fs.h */
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED   (1 << 0)
#define PAGE_IS_WRITTEN     (1 << 1)
#define PAGE_IS_FILE        (1 << 2)
#define PAGE_IS_PRESENT     (1 << 3)
#define PAGE_IS_SWAPPED     (1 << 4)
#define PAGE_IS_PFNZERO     (1 << 5)
#define PAGE_IS_HUGE        (1 << 6)
#define PAGE_IS_SOFT_DIRTY  (1 << 7)

struct page_region {
    __u64 start;
    __u64 end;
    __u64 categories;
};

#define PM_SCAN_WP_MATCHING     (1 << 0)
#define PM_SCAN_CHECK_WPASYNC   (1 << 1)

struct pm_scan_arg {
    __u64 size;
    __u64 flags;
    __u64 start;
    __u64 end;
    __u64 walk_end;
    __u64 vec;
    __u64 vec_len;
    __u64 max_pages;
    __u64 category_inverted;
    __u64 category_mask;
    __u64 category_anyof_mask;
    __u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif /* PAGEMAP_SCAN */

/* include/uapi/asm-generic/mman-common.h (Linux 5.14) */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* fs/proc/task_mmu.c: /proc/PID/pagemap entry bits */
#define PM_ENTRY_SOFT_DIRTY  (1ULL << 55)
#define PM_ENTRY_SWAPPED     (1ULL << 62)
#define PM_ENTRY_PRESENT     (1ULL << 63)

#endif /* HINTMIG_KERNEL_COMPAT_H */
