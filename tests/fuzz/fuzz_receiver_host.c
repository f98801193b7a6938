/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The receiver harnesses' destination: see fuzz_receiver_host.h. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "migration/wire.h"
#include "vm/vmstate_file.h"
#include "fuzz.h"
#include "fuzz_receiver_host.h"

#define UUID "6e2d1a3c-1111-4222-8333-444455556666"
#define SNDBUF (8u << 20)

static void nop(void *opaque)
{
    (void)opaque;
}

static bool save_state(void *opaque, GByteArray *out, GError **errp)
{
    (void)opaque, (void)out, (void)errp;
    return true;
}

static bool load_state(void *opaque, const uint8_t *data, size_t len, GError **errp)
{
    (void)opaque;
    g_autoptr(GPtrArray) secs = vmstate_sections_decode(data, len, errp);
    return secs != NULL;
}

static void incoming_done(void *opaque)
{
    FuzzRx *rx = opaque;
    rx->done++;
}

static const HintmigHostOps ops = {
    .stop = nop,
    .resume = nop,
    .save_state = save_state,
    .load_state = load_state,
    .incoming_done = incoming_done,
};

void fuzz_rx_init(FuzzRx *rx)
{
    /* The receiver starts its decoder thread on every input, and ASan
     * clears the shadow of a thread's whole stack when it ends: smaller
     * stacks than the default 8 MiB make each run cheaper. */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1u << 20);
    pthread_setattr_default_np(&attr);
    pthread_attr_destroy(&attr);
    void *ram = mmap(NULL, FUZZ_RX_RAM_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    FUZZ_CHECK(ram != MAP_FAILED);
    /* Inputs that hint all of RAM populate, fill and drop all 16 MiB: in
     * huge pages that kernel work is 1.7x cheaper (measured), and
     * hintmig-vm's --thp on runs guests this way too. */
    madvise(ram, FUZZ_RX_RAM_SIZE, MADV_HUGEPAGE);
    HintmigRamRegion region = {
        .name = "ram", .gpa = 0, .host = ram, .size = FUZZ_RX_RAM_SIZE,
        .page_size = HM_PAGE_SIZE, .backing = HINTMIG_BACKING_ANON, .fd = -1,
    };
    rx->main_ctx = g_main_context_new();
    HintmigHost host = {
        .ops = &ops, .opaque = rx, .context = rx->main_ctx,
        .regions = &region, .nregions = 1, .nvcpus = 1,
    };
    g_strlcpy(host.uuid, UUID, sizeof(host.uuid));
    g_autoptr(GError) err = NULL;
    rx->m = hintmig_new(&host, &err);
    FUZZ_CHECK(rx->m);
    /* One decoder thread: the stream's order of work does not change. */
    FUZZ_CHECK(hintmig_set_parameter(rx->m, "compress-threads", "1", &err));
}

void fuzz_rx_big_sndbuf(int fd)
{
    int buf = SNDBUF;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)) < 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    }
}

void fuzz_rx_queue(int fd, const void *p, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = send(fd, (const uint8_t *)p + done, len - done,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        done += n;
    }
}

void fuzz_rx_hello(FuzzRx *rx, int fd, uint64_t features)
{
    WireHello hello = {
        .session = FUZZ_RX_SESSION,
        .features_offered = features,
        .page_size = HM_PAGE_SIZE,
        .ram_size = FUZZ_RX_RAM_SIZE,
        .nvcpus = 1,
        .layout = hm_ram_layout_digest(rx->m->ram),
    };
    FUZZ_CHECK(wire_uuid_parse(UUID, hello.uuid));
    g_autoptr(GBytes) hb = wire_hello_encode(&hello);
    gsize hlen;
    const void *hd = g_bytes_get_data(hb, &hlen);
    FUZZ_CHECK(wire_send(fd, WIRE_HELLO, 1, hd, hlen, NULL));
}

void fuzz_rx_run(FuzzRx *rx, int in_fd, int listen_fd, const char *name)
{
    Hintmig *m = rx->m;
    unsigned done_before = rx->done;

    g_mutex_lock(&m->lock);
    hintmig_stats_clear(&m->stats);
    m->stats = (HintmigStats) { .incoming = true, .status = HINTMIG_STATUS_ACTIVE,
                                .ram_total = m->ram->size };
    m->in_fd = in_fd;
    m->listen_fd = listen_fd;         /* the receiver accepts on it, closes it */
    m->t_start = g_get_monotonic_time();
    g_mutex_unlock(&m->lock);
    incoming_thread(m);               /* closes in_fd and listen_fd */

    HintmigStats s;
    hintmig_get_stats(m, &s);
    FUZZ_CHECK(s.status == HINTMIG_STATUS_COMPLETED || s.status == HINTMIG_STATUS_FAILED);
    FUZZ_CHECK(s.status == HINTMIG_STATUS_FAILED ? s.error && s.error[0]
                                                 : rx->done == done_before + 1);
    if (getenv("FUZZ_VERBOSE")) {
        fprintf(stderr, "%s: %s%s%s\n", name, hintmig_status_str(s.status),
                s.error ? ": " : "", s.error ? s.error : "");
    }
    /* Only a verified migration completes. */
    FUZZ_CHECK(s.status != HINTMIG_STATUS_COMPLETED || (s.verified && !s.verify_mismatches));
    hintmig_stats_clear(&s);
    g_mutex_lock(&m->lock);
    FUZZ_CHECK(m->listen_fd < 0);
    g_mutex_unlock(&m->lock);
    while (g_main_context_iteration(rx->main_ctx, FALSE)) {
    }
}
