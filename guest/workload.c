/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Guest workloads: option parsing and the per-vCPU task that runs them.
 *
 * A task's whole state (phase, counters, RNG, page lists) is in its task
 * page in guest RAM; one call of guest_vcpu_step() runs a bounded batch of
 * operations so that a vCPU can be paused between any two of them.
 */
#include <errno.h>
#include <string.h>

#include "guest/balloon_driver.h"
#include "guest/guest.h"
#include "guest/page_content.h"
#include "guest/page_vec.h"
#include "hintmig/hintmig.h"

#define STEP_BATCH 64          /* operations per step: bounds pause latency */
#define IDLE_WAKE_US 50000
#define MAX_BURST_US 100000    /* pacing credit kept across a slow spell */

bool workload_parse(const char *str, uint64_t ram_size, WorkloadConfig *out,
                    GError **errp)
{
    g_auto(GStrv) parts = g_strsplit(str, ",", -1);
    WorkloadConfig wl = { 0 };

    if (!parts[0] || !*parts[0]) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--workload: empty value (use idle, churn or fill-free)");
        return false;
    }
    if (!strcmp(parts[0], "idle")) {
        wl.kind = GWL_IDLE;
    } else if (!strcmp(parts[0], "churn")) {
        wl = (WorkloadConfig) { GWL_CHURN, MIN(64ull << 20, ram_size / 4),
                                16ull << 20, 0 };
    } else if (!strcmp(parts[0], "fill-free")) {
        wl = (WorkloadConfig) { GWL_FILL_FREE, MIN(16ull << 20, ram_size / 16),
                                1ull << 20, ram_size / 2 };
    } else {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--workload: unknown workload '%s' (use idle, churn or "
                    "fill-free)", parts[0]);
        return false;
    }
    for (int i = 1; parts[i]; i++) {
        char *eq = strchr(parts[i], '=');
        uint64_t *field = NULL;
        if (eq) {
            *eq = '\0';
            if (!strcmp(parts[i], "wss") && wl.kind != GWL_IDLE) {
                field = &wl.wss;
            } else if (!strcmp(parts[i], "rate") && wl.kind != GWL_IDLE) {
                field = &wl.rate;
            } else if (!strcmp(parts[i], "fill") && wl.kind == GWL_FILL_FREE) {
                field = &wl.fill;
            }
        }
        if (!field) {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "--workload %s: unknown parameter '%s'", parts[0],
                        parts[i]);
            return false;
        }
        g_autoptr(GError) err = NULL;
        if (!hintmig_size_parse(eq + 1, 1, field, &err)) {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "--workload %s: %s=%s: %s", parts[0], parts[i], eq + 1,
                        err->message);
            return false;
        }
    }
    if (wl.wss + wl.fill > ram_size) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--workload %s: wss plus fill (%" G_GUINT64_FORMAT
                    " bytes) exceeds guest RAM (%" G_GUINT64_FORMAT " bytes)",
                    parts[0], wl.wss + wl.fill, ram_size);
        return false;
    }
    *out = wl;
    return true;
}

/* "64M", "1536K", "0": the largest unit that divides @v exactly. */
static char *size_exact(uint64_t v)
{
    static const char units[] = "KMGT";
    int u = -1;

    while (v && v % 1024 == 0 && u < 3) {
        v /= 1024;
        u++;
    }
    return u < 0 ? g_strdup_printf("%" G_GUINT64_FORMAT, v)
                 : g_strdup_printf("%" G_GUINT64_FORMAT "%c", v, units[u]);
}

char *workload_describe(const WorkloadConfig *wl)
{
    g_autofree char *wss = size_exact(wl->wss);
    g_autofree char *rate = size_exact(wl->rate);
    g_autofree char *fill = size_exact(wl->fill);

    switch (wl->kind) {
    case GWL_CHURN:
        return g_strdup_printf("churn,wss=%s,rate=%s", wss, rate);
    case GWL_FILL_FREE:
        return g_strdup_printf("fill-free,fill=%s,wss=%s,rate=%s", fill, wss, rate);
    default:
        return g_strdup("idle");
    }
}

static uint64_t task_rand(GuestTask *t)
{
    /* xorshift128+ */
    uint64_t s1 = t->rng[0];
    const uint64_t s0 = t->rng[1];
    t->rng[0] = s0;
    s1 ^= s1 << 23;
    t->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return t->rng[1] + s0;
}

static GuestTask *task_get(Guest *g, uint64_t pfn, unsigned vcpu)
{
    if (!page_in_zone(&g->mem, pfn) || g->mem.meta[pfn].state != GPS_ALLOC ||
        g->mem.meta[pfn].kind != GPK_KERNEL) {
        return NULL;
    }
    GuestTask *t = guest_ram_page(g->ram, pfn);
    return t->magic == GUEST_TASK_MAGIC && t->vcpu == vcpu ? t : NULL;
}

static uint64_t task_create(Guest *g, unsigned vcpu)
{
    GuestSuperblock *sb = g->mem.sb;
    unsigned n = MAX(1u, MIN(sb->nvcpus, (uint32_t)GUEST_MAX_VCPUS));
    uint32_t pfn = page_alloc(&g->mem, 0, GPK_KERNEL, vcpu);

    if (pfn == GUEST_PFN_NONE) {
        return 0;
    }
    GuestTask *t = guest_ram_page(g->ram, pfn);
    memset(t, 0, GUEST_PAGE_SIZE);
    *t = (GuestTask) {
        .magic = GUEST_TASK_MAGIC,
        .vcpu = vcpu,
        .rng = { page_content_mix(sb->boot_seed ^ vcpu) | 1,
                 page_content_mix(sb->boot_seed + vcpu) },
        .rate = sb->wl_rate,
        .wss_dir = GUEST_PFN_NONE,
        .fill_dir = GUEST_PFN_NONE,
    };
    switch (sb->wl_kind) {
    case GWL_CHURN:
        t->phase = GTP_WSS_ALLOC;
        break;
    case GWL_FILL_FREE:
        /* The light working set first, then the fill: allocated after the
         * free, its pages would land scattered among the other vCPUs'
         * freed fill and split the 4 MiB blocks free page hints report. */
        t->phase = GTP_WSS_ALLOC;
        t->fill_target = MIN(sb->wl_fill / GUEST_PAGE_SIZE / n, PAGE_VEC_MAX);
        break;
    default:
        t->phase = GTP_IDLE;
        break;
    }
    if (sb->wl_kind != GWL_IDLE) {
        t->wss_target = MIN(sb->wl_wss / GUEST_PAGE_SIZE / n, PAGE_VEC_MAX);
    }
    sb->task_pfn[vcpu] = pfn;
    return pfn;
}

/* Allocates, writes and records one data page; false when RAM is full. */
static int task_alloc_page(Guest *g, GuestTask *t, uint32_t dir, uint64_t idx)
{
    uint32_t pfn = page_alloc(&g->mem, 0, GPK_DATA, t->vcpu);
    if (pfn == GUEST_PFN_NONE) {
        return -ENOMEM;
    }
    g->mem.meta[pfn].gen = 1;
    page_content_fill(guest_ram_page(g->ram, pfn), pfn, 1);
    int ret = page_vec_set(&g->mem, dir, idx, pfn, t->vcpu);
    if (ret < 0) {
        page_free(&g->mem, pfn, 0);
        return ret;
    }
    t->writes++;
    return 0;
}

static int churn_one(Guest *g, GuestTask *t)
{
    uint32_t pfn;
    int ret = page_vec_get(&g->mem, t->wss_dir, task_rand(t) % t->wss_count, &pfn);
    if (ret < 0) {
        return ret;
    }
    GuestPageMeta *pm = &g->mem.meta[pfn];
    if (pm->kind != GPK_DATA || pm->owner != t->vcpu) {
        return -EINVAL;
    }
    pm->gen++;
    page_content_fill(guest_ram_page(g->ram, pfn), pfn, pm->gen);
    t->writes++;
    return 0;
}

/* How many churn writes are due now; sets *wake when none is. */
static uint64_t churn_due(GuestTask *t, GuestVcpuPace *pace, int64_t now,
                          int64_t *wake)
{
    if (!t->rate) {
        return STEP_BATCH;
    }
    if (!pace->t0_us) {
        pace->t0_us = now;
        pace->writes_at_t0 = t->writes;
    }
    uint64_t due = pace->writes_at_t0 +
                   (uint64_t)(now - pace->t0_us) * t->rate / GUEST_PAGE_SIZE /
                   G_USEC_PER_SEC;
    uint64_t max_burst = MAX(1u, t->rate / GUEST_PAGE_SIZE * MAX_BURST_US /
                                 G_USEC_PER_SEC);
    if (due > t->writes + max_burst) {
        /* Fell behind (host busy): do not try to catch up in one burst. */
        pace->t0_us = now;
        pace->writes_at_t0 = t->writes;
        return max_burst;
    }
    if (due > t->writes) {
        return due - t->writes;
    }
    *wake = pace->t0_us + (int64_t)((t->writes + 1 - pace->writes_at_t0) *
                                    GUEST_PAGE_SIZE * G_USEC_PER_SEC / t->rate);
    return 0;
}

/*
 * Grows the page vector at *@dir towards @target pages by a batch.  Running
 * out of guest memory lowers the target to what was had: a guest OOM, not a
 * corruption.  Returns 0, or -errno when the vector in RAM is corrupt.
 */
static int fill_vector(Guest *g, GuestTask *t, uint32_t *dir, uint64_t *count,
                       uint64_t *target)
{
    if (*dir == GUEST_PFN_NONE && *target) {
        *dir = page_vec_new(&g->mem, t->vcpu);
        if (*dir == GUEST_PFN_NONE) {
            *target = 0;
        }
    }
    for (int i = 0; i < STEP_BATCH && *count < *target; i++) {
        int ret = task_alloc_page(g, t, *dir, *count);
        if (ret == -ENOMEM) {
            *target = *count;
            return 0;
        }
        if (ret < 0) {
            return ret;
        }
        (*count)++;
    }
    return 0;
}

static int task_run(Guest *g, GuestTask *t, GuestVcpuPace *pace, int64_t now,
                    int64_t *wake)
{
    int ret = 0;

    *wake = now;
    switch (t->phase) {
    case GTP_WSS_ALLOC:
        if ((ret = fill_vector(g, t, &t->wss_dir, &t->wss_count, &t->wss_target)) < 0) {
            return ret;
        }
        if (t->wss_count >= t->wss_target) {
            t->phase = t->fill_target && !t->fill_count ? GTP_FILL : GTP_CHURN;
        }
        return 0;
    case GTP_CHURN: {
        if (!t->wss_count) {
            *wake = now + IDLE_WAKE_US;
            return 0;
        }
        uint64_t n = MIN(churn_due(t, pace, now, wake), (uint64_t)STEP_BATCH);
        for (uint64_t i = 0; i < n && !ret; i++) {
            ret = churn_one(g, t);
        }
        return ret;
    }
    case GTP_FILL:
        if ((ret = fill_vector(g, t, &t->fill_dir, &t->fill_count,
                               &t->fill_target)) < 0) {
            return ret;
        }
        if (t->fill_count >= t->fill_target) {
            t->phase = GTP_FREE;
        }
        return 0;
    case GTP_FREE:
        /* The data stays in the freed pages, as in a real guest. */
        for (int i = 0; i < STEP_BATCH * 4 && t->free_count < t->fill_count; i++) {
            uint32_t pfn;
            ret = page_vec_get(&g->mem, t->fill_dir, t->free_count, &pfn);
            if (ret < 0 || (ret = page_free(&g->mem, pfn, 0)) < 0) {
                return ret;
            }
            t->free_count++;
        }
        if (t->free_count >= t->fill_count) {
            if (t->fill_dir != GUEST_PFN_NONE &&
                (ret = page_vec_free(&g->mem, t->fill_dir, t->fill_count)) < 0) {
                return ret;
            }
            t->fill_dir = GUEST_PFN_NONE;
            t->phase = GTP_CHURN;
        }
        return 0;
    case GTP_IDLE:
        *wake = now + IDLE_WAKE_US;
        return 0;
    default:
        return -EINVAL;
    }
}

bool guest_vcpu_step(Guest *g, GuestVcpuState *st, GuestVcpuPace *pace,
                     int64_t now_us, int64_t *wake_us, GError **errp)
{
    if (!guest_boot(g, errp)) {
        return false;
    }
    if (st->magic != GUEST_VCPU_MAGIC || st->index >= g->mem.sb->nvcpus ||
        st->index >= GUEST_MAX_VCPUS) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "vCPU %u: invalid vCPU state", st->index);
        return false;
    }
    /* The boot vCPU also runs the balloon driver, like a kernel thread. */
    if (st->index == 0 && !balloon_driver_step(g, errp)) {
        return false;
    }
    if (!st->task_pfn) {
        /* First run: resume the task in RAM (a loaded image) or start one. */
        uint64_t pfn = g->mem.sb->task_pfn[st->index];
        st->task_pfn = task_get(g, pfn, st->index) ? pfn
                                                   : task_create(g, st->index);
        if (!st->task_pfn) {
            *wake_us = now_us + IDLE_WAKE_US;   /* no memory for a task yet */
            return true;
        }
    }
    GuestTask *t = task_get(g, st->task_pfn, st->index);
    if (!t) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "vCPU %u: task page %" G_GUINT64_FORMAT " is corrupt",
                    st->index, st->task_pfn);
        return false;
    }
    int ret = task_run(g, t, pace, now_us, wake_us);
    if (ret < 0) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "vCPU %u: guest structures corrupt in phase %u (%s)",
                    st->index, t->phase, g_strerror(-ret));
        return false;
    }
    st->steps++;
    __atomic_fetch_add(&g->mem.sb->vm_events, 1, __ATOMIC_RELAXED);
    return true;
}
