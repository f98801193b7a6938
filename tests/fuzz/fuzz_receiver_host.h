/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The destination that fuzz_receiver and fuzz_multifd feed: a 16 MiB,
 * 1-vCPU guest in huge pages, host calls that load device state through
 * the real sections decoder, one decoder thread, and the checks every run
 * ends with: the receiver ended (completed or failed with a reason) and
 * never reported a guest it did not verify.
 */
#ifndef HINTMIG_FUZZ_RECEIVER_HOST_H
#define HINTMIG_FUZZ_RECEIVER_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "migration/migration_priv.h"

#define FUZZ_RX_RAM_SIZE (16u << 20)
#define FUZZ_RX_SESSION 0x1234

typedef struct FuzzRx {
    Hintmig *m;
    GMainContext *main_ctx;
    unsigned done;            /* incoming_done calls */
} FuzzRx;

/* Once per process: smaller thread stacks, the guest's RAM, the engine. */
void fuzz_rx_init(FuzzRx *rx);

/* A large send buffer, so that a whole input can be queued at once. */
void fuzz_rx_big_sndbuf(int fd);

/* Queues @len bytes on @fd without blocking; what does not fit is left
 * out (the stream ends there, as a cut connection does). */
void fuzz_rx_queue(int fd, const void *p, size_t len);

/* Sends a valid hello offering @features on @fd. */
void fuzz_rx_hello(FuzzRx *rx, int fd, uint64_t features);

/*
 * Runs the real receiver thread function on this thread over @in_fd
 * (closed by it), with @listen_fd as its listening socket (-1: none),
 * then checks how it ended; @name prefixes FUZZ_VERBOSE's line.
 */
void fuzz_rx_run(FuzzRx *rx, int in_fd, int listen_fd, const char *name);

#endif
