/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The receiver's state machine (incoming*.c), in process: a valid hello
 * for a 16 MiB, 1-vCPU guest (the recorded migration's), then the input as
 * the rest of the source's stream, through a socketpair, into the real
 * receiver thread function run on this thread.  Device state goes to the
 * real sections decoder.  Whatever the input, the receiver must end
 * (completed or failed with a reason) and never report a guest it did not
 * verify.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/migration_priv.h"
#include "migration/wire.h"
#include "vm/vmstate_file.h"
#include "fuzz.h"

#define RAM_SIZE (16u << 20)
#define UUID "6e2d1a3c-1111-4222-8333-444455556666"
#define SNDBUF (8u << 20)

typedef struct Ctx {
    Hintmig *m;
    GMainContext *main_ctx;
    unsigned loaded;          /* load_state calls that succeeded */
    unsigned done;            /* incoming_done calls */
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
    Ctx *c = opaque;
    g_autoptr(GPtrArray) secs = vmstate_sections_decode(data, len, errp);
    c->loaded += secs != NULL;
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
    /* The receiver starts its decoder thread on every input, and ASan
     * clears the shadow of a thread's whole stack when it ends: smaller
     * stacks than the default 8 MiB make each run cheaper. */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1u << 20);
    pthread_setattr_default_np(&attr);
    pthread_attr_destroy(&attr);
    void *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    FUZZ_CHECK(ram != MAP_FAILED);
    /* Inputs that hint all of RAM populate, fill and drop all 16 MiB: in
     * huge pages that kernel work is 1.7x cheaper (measured), and
     * hintmig-vm's --thp on runs guests this way too. */
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
    /* One decoder thread: the stream's order of work does not change. */
    FUZZ_CHECK(hintmig_set_parameter(ctx.m, "compress-threads", "1", &err));
    return 0;
}

/* Queues @len bytes without blocking; returns how many fit. */
static size_t queue(int fd, const void *p, size_t len)
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
    return done;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Hintmig *m = ctx.m;
    int sv[2];
    int buf = SNDBUF;

    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    if (setsockopt(sv[0], SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)) < 0) {
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    }
    WireHello hello = {
        .session = 0x1234,
        .features_offered = WIRE_FEAT_ZSTD | WIRE_FEAT_SPARSE | WIRE_FEAT_VERIFY |
                            WIRE_FEAT_PAGE_DIGESTS | WIRE_FEAT_FREE_PAGE_HINT,
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
    /* What does not fit in the socket's buffer is left out: the stream
     * simply ends there, as a cut connection does. */
    queue(sv[0], data, size);
    shutdown(sv[0], SHUT_WR);

    unsigned done_before = ctx.done;
    g_mutex_lock(&m->lock);
    hintmig_stats_clear(&m->stats);
    m->stats = (HintmigStats) { .incoming = true, .status = HINTMIG_STATUS_ACTIVE,
                                .ram_total = m->ram->size };
    m->in_fd = sv[1];
    m->t_start = g_get_monotonic_time();
    g_mutex_unlock(&m->lock);
    incoming_thread(m);               /* closes sv[1] */

    HintmigStats s;
    hintmig_get_stats(m, &s);
    FUZZ_CHECK(s.status == HINTMIG_STATUS_COMPLETED || s.status == HINTMIG_STATUS_FAILED);
    FUZZ_CHECK(s.status == HINTMIG_STATUS_FAILED ? s.error && s.error[0]
                                                 : ctx.done == done_before + 1);
    if (getenv("FUZZ_VERBOSE")) {
        fprintf(stderr, "receiver: %s%s%s\n", hintmig_status_str(s.status),
                s.error ? ": " : "", s.error ? s.error : "");
    }
    /* Only a verified migration completes. */
    FUZZ_CHECK(s.status != HINTMIG_STATUS_COMPLETED || (s.verified && !s.verify_mismatches));
    hintmig_stats_clear(&s);
    close(sv[0]);
    while (g_main_context_iteration(ctx.main_ctx, FALSE)) {
    }
    return 0;
}
