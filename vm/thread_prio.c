/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Thread priorities for postcopy: see thread_prio.h. */
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vm/thread_prio.h"

void thread_prio_background(void)
{
    /* On Linux nice is per thread. */
    setpriority(PRIO_PROCESS, syscall(SYS_gettid), 10);
}

bool thread_prio_urgent(void)
{
    struct sched_param sp = { .sched_priority = 1 };
    return sched_setscheduler(syscall(SYS_gettid), SCHED_FIFO, &sp) == 0;
}
