/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The synthetic guest's virtio-balloon driver: free page hinting.
 *
 * On each new command id it reports free 4 MiB blocks, taken out of the
 * buddy allocator, as input buffers after one 4-byte output buffer holding
 * the id; when it runs out of blocks, or the device says STOP or DONE, it
 * sends STOP.  It holds the blocks until DONE, or with early release gives
 * them back at once after writing every page, as the spec demands of pages
 * released before DONE.  All its state is in guest RAM.
 */
#ifndef HINTMIG_BALLOON_DRIVER_H
#define HINTMIG_BALLOON_DRIVER_H

#include "guest/guest.h"

/*
 * Runs one bounded step of the driver (on the boot vCPU).  Does nothing
 * without a device.  Returns false with @errp set when the driver's own
 * state in RAM is corrupt (a guest panic).
 */
bool balloon_driver_step(Guest *g, GError **errp);

/* Returns the driver's state page, or NULL if it has not started. */
GuestBalloon *balloon_driver_state(Guest *g);

#endif
