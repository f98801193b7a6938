/* SPDX-License-Identifier: GPL-2.0-or-later */
/* auto-converge's policy: see migration/auto_converge.h. */
#include <glib.h>

#include "migration/auto_converge.h"

void auto_converge_init(AutoConverge *a, const HintmigParams *p)
{
    *a = (AutoConverge) {
        .initial = p->cpu_throttle_initial,
        .increment = p->cpu_throttle_increment,
        .max = p->max_cpu_throttle,
        .threshold = p->throttle_trigger_threshold,
    };
}

bool auto_converge_round(AutoConverge *a, uint64_t dirtied, uint64_t sent)
{
    /* sent / 100 first: it cannot overflow, and a byte less does not matter. */
    if (dirtied <= sent / 100 * a->threshold) {
        a->high_rounds = 0;
        return false;
    }
    /* One round can be a burst: throttle only what lasts two. */
    if (++a->high_rounds < 2) {
        return false;
    }
    a->high_rounds = 0;
    unsigned want = a->percent ? MIN(a->percent + a->increment, a->max)
                               : MIN(a->initial, a->max);
    if (want == a->percent) {
        return false;
    }
    a->percent = want;
    return true;
}
