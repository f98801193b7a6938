/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The receiver's state machine (incoming*.c), in process: a valid hello
 * for a 16 MiB, 1-vCPU guest (the recorded migration's), then the input as
 * the rest of the source's stream, through a socketpair, into the real
 * receiver thread function run on this thread (fuzz_receiver_host.c).
 * Whatever the input, the receiver must end (completed or failed with a
 * reason) and never report a guest it did not verify.
 */
#include <sys/socket.h>
#include <unistd.h>

#include "migration/wire.h"
#include "fuzz.h"
#include "fuzz_receiver_host.h"

static FuzzRx rx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_rx_init(&rx);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];

    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    fuzz_rx_big_sndbuf(sv[0]);
    fuzz_rx_hello(&rx, sv[0], WIRE_FEAT_ZSTD | WIRE_FEAT_SPARSE | WIRE_FEAT_VERIFY |
                              WIRE_FEAT_PAGE_DIGESTS | WIRE_FEAT_FREE_PAGE_HINT);
    fuzz_rx_queue(sv[0], data, size);
    shutdown(sv[0], SHUT_WR);
    fuzz_rx_run(&rx, sv[1], -1, "receiver");
    close(sv[0]);
    return 0;
}
