/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The receiver with a second RAM connection (incoming_multifd.c): a valid
 * hello offering multifd for a 16 MiB, 1-vCPU guest, a valid MULTIFD
 * introduction on a connection made to the receiver's listening socket,
 * then the input split between the two streams: its first four bytes
 * (little-endian) say how many of the rest go on the main connection, the
 * others go on the multifd one (make_corpus.py: multifd_split).  The real receiver thread function runs on
 * this thread, with its multifd reader thread.  Whatever the input, the
 * receiver must end (completed or failed with a reason), never hang on a
 * sync, and never report a guest it did not verify.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "migration/le.h"
#include "migration/migration_priv.h"
#include "migration/wire.h"
#include "vm/vmstate_file.h"
#include "fuzz.h"

#define RAM_SIZE (16u << 20)
#define UUID "6e2d1a3c-1111-4222-8333-444455556666"
#define SESSION 0x1234
#define SNDBUF (8u << 20)

typedef struct Ctx {
    Hintmig *m;
    GMainContext *main_ctx;
    unsigned done;            /* incoming_done calls */
    struct sockaddr_un addr;  /* the listening socket's (abstract) address */
} Ctx;

static Ctx ctx;

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
    Ctx *c = opaque;
    c->done++;
}

static const HintmigHostOps ops = {
    .stop = nop,
    .resume = nop,
    .save_state = save_state,
    .load_state = load_state,
    .incoming_done = incoming_done,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1u << 20);
    pthread_setattr_default_np(&attr);
    pthread_attr_destroy(&attr);
    void *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    FUZZ_CHECK(ram != MAP_FAILED);
    madvise(ram, RAM_SIZE, MADV_HUGEPAGE);
    HintmigRamRegion region = {
        .name = "ram", .gpa = 0, .host = ram, .size = RAM_SIZE,
        .page_size = HM_PAGE_SIZE, .backing = HINTMIG_BACKING_ANON, .fd = -1,
    };
    ctx.main_ctx = g_main_context_new();
    HintmigHost host = {
        .ops = &ops, .opaque = &ctx, .context = ctx.main_ctx,
        .regions = &region, .nregions = 1, .nvcpus = 1,
    };
    g_strlcpy(host.uuid, UUID, sizeof(host.uuid));
    g_autoptr(GError) err = NULL;
    ctx.m = hintmig_new(&host, &err);
    FUZZ_CHECK(ctx.m);
    FUZZ_CHECK(hintmig_set_parameter(ctx.m, "compress-threads", "1", &err));
    /* A short wait for connections that never come, not the 10 s built in. */
    FUZZ_CHECK(hintmig_set_parameter(ctx.m, "x-peer-timeout", "200", &err));
    ctx.addr.sun_family = AF_UNIX;
    /* Abstract: nothing on the file system, gone with the process. */
    snprintf(ctx.addr.sun_path + 1, sizeof(ctx.addr.sun_path) - 1,
             "hintmig-fuzz-multifd-%d", (int)getpid());
    return 0;
}

static void big_sndbuf(int fd)
{
    int buf = SNDBUF;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)) < 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    }
}

/* Queues @len bytes without blocking; what does not fit is left out. */
static void queue(int fd, const uint8_t *p, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = send(fd, p + done, len - done, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        done += n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Hintmig *m = ctx.m;
    int sv[2];
    socklen_t alen = offsetof(struct sockaddr_un, sun_path) + 1 +
                     strlen(ctx.addr.sun_path + 1);

    if (size < 4) {
        return 0;
    }
    size_t nmain = MIN((size_t)le_get32(data), size - 4);
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    big_sndbuf(sv[0]);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&ctx.addr, alen) == 0 &&
               listen(lfd, 4) == 0);
    int cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(cfd >= 0 && connect(cfd, (struct sockaddr *)&ctx.addr, alen) == 0);
    big_sndbuf(cfd);

    WireHello hello = {
        .session = SESSION,
        .features_offered = WIRE_FEAT_ZSTD | WIRE_FEAT_SPARSE | WIRE_FEAT_VERIFY |
                            WIRE_FEAT_PAGE_DIGESTS | WIRE_FEAT_FREE_PAGE_HINT |
                            WIRE_FEAT_MULTIFD,
        .page_size = HM_PAGE_SIZE,
        .ram_size = RAM_SIZE,
        .nvcpus = 1,
        .layout = hm_ram_layout_digest(m->ram),
    };
    FUZZ_CHECK(wire_uuid_parse(UUID, hello.uuid));
    g_autoptr(GBytes) hb = wire_hello_encode(&hello);
    gsize hlen;
    const void *hd = g_bytes_get_data(hb, &hlen);
    FUZZ_CHECK(wire_send(sv[0], WIRE_HELLO, 1, hd, hlen, NULL));
    uint8_t intro[16];
    wire_multifd_encode(intro, &(WireMultifd) { SESSION, 1, 2 });
    FUZZ_CHECK(wire_send(cfd, WIRE_MULTIFD, 0, intro, sizeof(intro), NULL));
    queue(sv[0], data + 4, nmain);
    queue(cfd, data + 4 + nmain, size - 4 - nmain);
    shutdown(sv[0], SHUT_WR);
    shutdown(cfd, SHUT_WR);

    unsigned done_before = ctx.done;
    g_mutex_lock(&m->lock);
    hintmig_stats_clear(&m->stats);
    m->stats = (HintmigStats) { .incoming = true, .status = HINTMIG_STATUS_ACTIVE,
                                .ram_total = m->ram->size };
    m->in_fd = sv[1];
    m->listen_fd = lfd;               /* the receiver accepts on it, closes it */
    m->t_start = g_get_monotonic_time();
    g_mutex_unlock(&m->lock);
    incoming_thread(m);               /* closes sv[1] and lfd */

    HintmigStats s;
    hintmig_get_stats(m, &s);
    FUZZ_CHECK(s.status == HINTMIG_STATUS_COMPLETED || s.status == HINTMIG_STATUS_FAILED);
    FUZZ_CHECK(s.status == HINTMIG_STATUS_FAILED ? s.error && s.error[0]
                                                 : ctx.done == done_before + 1);
    if (getenv("FUZZ_VERBOSE")) {
        fprintf(stderr, "multifd: %s%s%s\n", hintmig_status_str(s.status),
                s.error ? ": " : "", s.error ? s.error : "");
    }
    FUZZ_CHECK(s.status != HINTMIG_STATUS_COMPLETED || (s.verified && !s.verify_mismatches));
    hintmig_stats_clear(&s);
    g_mutex_lock(&m->lock);
    FUZZ_CHECK(m->listen_fd < 0);
    g_mutex_unlock(&m->lock);
    close(sv[0]);
    close(cfd);
    while (g_main_context_iteration(ctx.main_ctx, FALSE)) {
    }
    return 0;
}
