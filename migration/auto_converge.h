/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * auto-converge: when to throttle the vCPUs of a guest that dirties RAM
 * faster than the migration carries it.  Pure policy; the host throttles.
 */
#ifndef HINTMIG_AUTO_CONVERGE_H
#define HINTMIG_AUTO_CONVERGE_H

#include <stdbool.h>
#include <stdint.h>
#include "hintmig/hintmig.h"

typedef struct AutoConverge {
    unsigned initial, increment, max, threshold;   /* from HintmigParams */
    unsigned percent;        /* the throttle now; 0: none */
    unsigned high_rounds;    /* rounds in a row that dirtied too much */
} AutoConverge;

void auto_converge_init(AutoConverge *a, const HintmigParams *p);

/*
 * After a round that put @sent bytes on the wire while the guest dirtied
 * @dirtied bytes of RAM.  A round dirties too much when @dirtied exceeds
 * threshold% of @sent; after two such rounds in a row the throttle starts
 * at initial%, or rises by increment%, up to max%, and the count starts
 * again.  Returns true if a->percent changed.
 */
bool auto_converge_round(AutoConverge *a, uint64_t dirtied, uint64_t sent);

#endif
