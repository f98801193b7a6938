/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vCPU threads and their pause protocol: see include/vm/vcpu.h. */
#include <sys/syscall.h>
#include <unistd.h>

#include "vm/vcpu.h"

typedef struct Vcpu {
    VcpuSet *set;
    unsigned index;
    GThread *thread;
    int tid;
    bool parked;
    bool panicked;
    GuestVcpuState state;
    GuestVcpuPace pace;
} Vcpu;

struct VcpuSet {
    Guest *guest;
    unsigned n;
    Vcpu *vcpus;
    GMutex lock;
    GCond run_cond;      /* run or quit changed */
    GCond parked_cond;   /* a vCPU parked */
    bool run;
    bool hold;
    bool quit;
    unsigned throttle;   /* percent of the time the vCPUs sit out */
    VcpuPanicFn panic;
    void *opaque;
};

/*
 * A throttled vCPU runs VCPU_SLICE_US of wall time, then sits out long
 * enough that it ran (100 - throttle)% of the time, as QEMU's CPU throttle
 * does.  The workload's pace skips the time sat out: a throttled guest
 * does less, it does not catch up after.
 */
#define VCPU_SLICE_US 10000

static gpointer vcpu_thread(gpointer data)
{
    Vcpu *v = data;
    VcpuSet *s = v->set;
    int64_t wake = 0, slice_start = 0;

    g_mutex_lock(&s->lock);
    v->tid = syscall(SYS_gettid);
    while (!s->quit) {
        if (!s->run || s->hold || v->panicked) {
            if (!v->parked) {
                v->parked = true;
                g_cond_broadcast(&s->parked_cond);
            }
            g_cond_wait(&s->run_cond, &s->lock);
            continue;
        }
        if (v->parked) {
            v->parked = false;
            v->pace = (GuestVcpuPace) { 0 };   /* no catch-up after a pause */
            wake = slice_start = 0;
        }
        int64_t now = g_get_monotonic_time();
        if (!s->throttle) {
            slice_start = 0;
        } else if (!slice_start) {
            slice_start = now;
        } else if (now - slice_start >= VCPU_SLICE_US) {
            int64_t out = (now - slice_start) * s->throttle / (100 - s->throttle);
            if (v->pace.t0_us) {
                v->pace.t0_us += out;
            }
            wake = MAX(wake, now + out);
            slice_start = now + out;
        }
        if (wake > now) {
            /* Sleep, but let pause and quit wake us at once. */
            g_cond_wait_until(&s->run_cond, &s->lock, wake);
            wake = 0;
            continue;
        }
        g_mutex_unlock(&s->lock);

        g_autoptr(GError) err = NULL;
        bool ok = guest_vcpu_step(s->guest, &v->state, &v->pace,
                                  g_get_monotonic_time(), &wake, &err);

        g_mutex_lock(&s->lock);
        if (!ok) {
            v->panicked = true;
            if (s->panic) {
                g_mutex_unlock(&s->lock);
                s->panic(s->opaque, v->index, err->message);
                g_mutex_lock(&s->lock);
            }
        }
    }
    v->parked = true;
    g_cond_broadcast(&s->parked_cond);
    g_mutex_unlock(&s->lock);
    return NULL;
}

VcpuSet *vcpu_set_new(Guest *g, unsigned n, VcpuPanicFn panic, void *opaque)
{
    VcpuSet *s = g_new0(VcpuSet, 1);
    s->guest = g;
    s->n = n;
    s->panic = panic;
    s->opaque = opaque;
    s->vcpus = g_new0(Vcpu, n);
    g_mutex_init(&s->lock);
    g_cond_init(&s->run_cond);
    g_cond_init(&s->parked_cond);
    for (unsigned i = 0; i < n; i++) {
        Vcpu *v = &s->vcpus[i];
        v->set = s;
        v->index = i;
        guest_vcpu_state_init(&v->state, i);
        g_autofree char *name = g_strdup_printf("vcpu%u", i);
        v->thread = g_thread_new(name, vcpu_thread, v);
    }
    vcpu_set_pause(s);   /* wait until all have started and parked */
    return s;
}

void vcpu_set_free(VcpuSet *s)
{
    if (!s) {
        return;
    }
    g_mutex_lock(&s->lock);
    s->quit = true;
    g_cond_broadcast(&s->run_cond);
    g_mutex_unlock(&s->lock);
    for (unsigned i = 0; i < s->n; i++) {
        g_thread_join(s->vcpus[i].thread);
    }
    g_mutex_clear(&s->lock);
    g_cond_clear(&s->run_cond);
    g_cond_clear(&s->parked_cond);
    g_free(s->vcpus);
    g_free(s);
}

void vcpu_set_resume(VcpuSet *s)
{
    g_mutex_lock(&s->lock);
    s->run = true;
    for (unsigned i = 0; i < s->n; i++) {
        s->vcpus[i].panicked = false;
    }
    g_cond_broadcast(&s->run_cond);
    g_mutex_unlock(&s->lock);
}

void vcpu_set_pause_nowait(VcpuSet *s)
{
    g_mutex_lock(&s->lock);
    s->run = false;
    g_cond_broadcast(&s->run_cond);
    g_mutex_unlock(&s->lock);
}

void vcpu_set_pause(VcpuSet *s)
{
    g_mutex_lock(&s->lock);
    s->run = false;
    g_cond_broadcast(&s->run_cond);
    for (unsigned i = 0; i < s->n; i++) {
        while (!s->vcpus[i].parked) {
            g_cond_wait(&s->parked_cond, &s->lock);
        }
    }
    g_mutex_unlock(&s->lock);
}

void vcpu_set_hold(VcpuSet *s, bool hold)
{
    g_mutex_lock(&s->lock);
    s->hold = hold;
    g_cond_broadcast(&s->run_cond);
    for (unsigned i = 0; hold && i < s->n; i++) {
        while (!s->vcpus[i].parked) {
            g_cond_wait(&s->parked_cond, &s->lock);
        }
    }
    g_mutex_unlock(&s->lock);
}

void vcpu_set_throttle(VcpuSet *s, unsigned percent)
{
    g_mutex_lock(&s->lock);
    s->throttle = MIN(percent, 99u);
    g_mutex_unlock(&s->lock);
}

unsigned vcpu_set_count(const VcpuSet *s)
{
    return s->n;
}

GuestVcpuState *vcpu_set_state(VcpuSet *s, unsigned i)
{
    return &s->vcpus[i].state;
}

int vcpu_set_thread_id(VcpuSet *s, unsigned i)
{
    return s->vcpus[i].tid;
}
