/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Thread priorities for postcopy.  Once the guest runs on the destination,
 * a vCPU that touches a missing page waits for three threads in a row: the
 * destination's fault thread, the source's return path and the destination's
 * page channel.  On a loaded host each can wait for a CPU behind the busy
 * vCPUs and the bulk stream's threads for a whole scheduler slice.  So the
 * bulk threads step back and the request path steps forward.
 */
#ifndef HINTMIG_THREAD_PRIO_H
#define HINTMIG_THREAD_PRIO_H

#include <stdbool.h>

/* Lowers the calling thread to nice 10 (needs no privilege). */
void thread_prio_background(void);

/*
 * Makes the calling thread real-time (SCHED_FIFO, priority 1) when the
 * process may (CAP_SYS_NICE or an RLIMIT_RTPRIO); false if refused, and
 * the thread stays as it was.  Only for threads that run briefly between
 * blocking reads.
 */
bool thread_prio_urgent(void);

#endif
