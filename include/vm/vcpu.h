/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vCPU threads of the reference host.
 *
 * Each vCPU runs guest_vcpu_step() in a loop.  Pausing waits until every
 * vCPU has parked between two guest operations, so a paused guest is always
 * consistent in RAM (no guest lock held, no page half written).
 */
#ifndef HINTMIG_VCPU_H
#define HINTMIG_VCPU_H

#include <stdbool.h>
#include "guest/guest.h"

typedef struct VcpuSet VcpuSet;

/* Called on the vCPU thread when the guest panics on vCPU @index. */
typedef void (*VcpuPanicFn)(void *opaque, unsigned index, const char *msg);

/* Creates @n parked vCPU threads running guest @g. */
VcpuSet *vcpu_set_new(Guest *g, unsigned n, VcpuPanicFn panic, void *opaque);

/* Stops and joins the threads, then frees @s (NULL is allowed). */
void vcpu_set_free(VcpuSet *s);

/* Lets every vCPU run. */
void vcpu_set_resume(VcpuSet *s);

/* Returns once every vCPU is parked between two guest operations. */
void vcpu_set_pause(VcpuSet *s);

/*
 * Tells every vCPU to park and returns at once: one waiting on a missing
 * page (postcopy) parks when the page comes, which with the source gone is
 * never.  RAM is then not known to be consistent.
 */
void vcpu_set_pause_nowait(VcpuSet *s);

/*
 * Holds (@hold true) every vCPU parked, returning once they are, or lets
 * them go back to what pause/resume say.  Independent of pause/resume, so a
 * short hold (a dirty sync) never starts a paused VM.
 */
void vcpu_set_hold(VcpuSet *s, bool hold);

/*
 * Lets the vCPUs run only (100 - @percent)% of the time, at most 99%
 * sat out (auto-converge); 0 lifts it.  Independent of pause and hold.
 */
void vcpu_set_throttle(VcpuSet *s, unsigned percent);

unsigned vcpu_set_count(const VcpuSet *s);

/* Returns vCPU @i's context; read or write it only while paused. */
GuestVcpuState *vcpu_set_state(VcpuSet *s, unsigned i);

/* Returns the host thread id of vCPU @i. */
int vcpu_set_thread_id(VcpuSet *s, unsigned i);

#endif
