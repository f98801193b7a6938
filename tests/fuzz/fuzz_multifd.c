/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The receiver with a second RAM connection (incoming_multifd.c): a valid
 * hello offering multifd for a 16 MiB, 1-vCPU guest, a valid MULTIFD
 * introduction on a connection made to the receiver's listening socket,
 * then the input split between the two streams: its first four bytes
 * (little-endian) say how many of the rest go on the main connection, the
 * others go on the multifd one (make_corpus.py: multifd_split).  The real
 * receiver thread function runs on this thread (fuzz_receiver_host.c),
 * with its multifd reader thread.  Whatever the input, the receiver must
 * end (completed or failed with a reason), never hang on a sync, and never
 * report a guest it did not verify.
 */
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "migration/le.h"
#include "migration/wire.h"
#include "fuzz.h"
#include "fuzz_receiver_host.h"

static FuzzRx rx;
static struct sockaddr_un addr;     /* the listening socket's (abstract) */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_rx_init(&rx);
    g_autoptr(GError) err = NULL;
    /* A short wait for connections that never come, not the 10 s built in. */
    FUZZ_CHECK(hintmig_set_parameter(rx.m, "x-peer-timeout", "200", &err));
    addr.sun_family = AF_UNIX;
    /* Abstract: nothing on the file system, gone with the process. */
    snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "hintmig-fuzz-multifd-%d",
             (int)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    socklen_t alen = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(addr.sun_path + 1);

    if (size < 4) {
        return 0;
    }
    size_t nmain = MIN((size_t)le_get32(data), size - 4);
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    fuzz_rx_big_sndbuf(sv[0]);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&addr, alen) == 0 &&
               listen(lfd, 4) == 0);
    int cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(cfd >= 0 && connect(cfd, (struct sockaddr *)&addr, alen) == 0);
    fuzz_rx_big_sndbuf(cfd);

    fuzz_rx_hello(&rx, sv[0], WIRE_FEAT_ZSTD | WIRE_FEAT_SPARSE | WIRE_FEAT_VERIFY |
                              WIRE_FEAT_PAGE_DIGESTS | WIRE_FEAT_FREE_PAGE_HINT |
                              WIRE_FEAT_MULTIFD);
    uint8_t intro[16];
    wire_multifd_encode(intro, &(WireMultifd) { FUZZ_RX_SESSION, 1, 2 });
    FUZZ_CHECK(wire_send(cfd, WIRE_MULTIFD, 0, intro, sizeof(intro), NULL));
    fuzz_rx_queue(sv[0], data + 4, nmain);
    fuzz_rx_queue(cfd, data + 4 + nmain, size - 4 - nmain);
    shutdown(sv[0], SHUT_WR);
    shutdown(cfd, SHUT_WR);
    fuzz_rx_run(&rx, sv[1], lfd, "multifd");
    close(sv[0]);
    close(cfd);
    return 0;
}
