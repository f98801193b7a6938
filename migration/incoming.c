/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The incoming side: one thread reads the stream; decoder threads apply RAM
 * batches straight into guest RAM.  A ROUND_END is a barrier: every batch of
 * the round is applied before the ack, so a page sent again in a later round
 * can never be overtaken by its older copy.  The VM is started only after
 * COMPLETE, once every page, the device state and the RAM digests check out;
 * on any failure it is never started.
 *
 * With postcopy, the source may instead send PENDING (the pages it still
 * owes), the device state and POSTCOPY_RUN: RAM goes under userfaultfd
 * (uffd_postcopy.c) and the guest starts at once.  Pages then arrive on
 * two connections: the main stream (the background push, decoded by the
 * decoder threads) and the page channel (pages a vCPU waits for).  Both
 * place pages with UFFDIO_COPY, and record each page's digest as placed:
 * verification cannot read RAM that the running guest changes.  If the
 * link breaks the guest waits on its missing pages (postcopy-paused) until
 * the source reconnects (migrate_recover, migrate -r).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration_priv.h"
#include "migration/bitmap.h"
#include "migration/kernel_compat.h"
#include "migration/page_codec.h"
#include "migration/ram_digest.h"
#include "migration/uffd_postcopy.h"
#include "migration/vmstate_file.h"
#include "migration/wire.h"

#define RX_BUFS 16
#define COMMIT_TIMEOUT_S 60
#define CHANNEL_TIMEOUT_MS 10000     /* for the source's second connection */
#define PLACE_TIMEOUT_MS 60000       /* after COMPLETE, for the last pages */

typedef struct RxBuf {
    uint8_t *data;
    size_t len;
} RxBuf;

typedef struct Incoming {
    Migration *m;
    GuestRam *ram;
    int fd;
    unsigned ndec;
    GThread **dec;
    GAsyncQueue *dec_q;           /* RxBuf * to apply, or &stop_buf */
    GAsyncQueue *rx_pool;
    RxBuf bufs[RX_BUFS];
    GMutex lock;
    GCond idle;
    unsigned busy;
    char *decode_error;           /* first batch that failed */
    PageCodecStats codec;
    uint64_t rx_bytes;
    uint64_t features;
    GPtrArray *sections;
    uint64_t *src_digests;
    uint64_t nchunks, digests_received;
    unsigned long *hinted;        /* hinted by the source and not sent since */
    uint32_t poison;              /* the guest's free page poison, from HINTED */

    /* postcopy */
    uint64_t session;             /* the source's, from its hello */
    GMutex send_lock;             /* the return path: acks and page requests */
    bool link_up;                 /* under send_lock */
    UffdPostcopy *pc;             /* set up once postcopy was negotiated */
    bool postcopy;                /* the guest runs here: place, do not write */
    uint64_t *digests;            /* each page's digest as written or placed */
    int ch_fd;                    /* the page channel, -1 when none */
    GThread *ch_thread;
} Incoming;

static RxBuf stop_buf;

/* Postcopy: decodes a batch into @staging and places its missing pages. */
static bool place_batch(Incoming *in, PageDecoder *d, uint8_t *staging,
                        const uint8_t *buf, size_t len, PageCodecStats *st,
                        GError **errp)
{
    PageStaged sb = { .data = staging };
    return page_decode_staged(d, in->ram->npages, buf, len, &sb, st, errp) &&
           uffd_postcopy_place(in->pc, &sb, in->digests, errp);
}

static gpointer decoder_thread(gpointer data)
{
    Incoming *in = data;
    PageDecoder *d = page_decoder_new();
    g_autofree uint8_t *staging = g_malloc((size_t)PAGE_BATCH_MAX * GUEST_PAGE_SIZE);
    RxBuf *b;
    bool background = false;

    while ((b = g_async_queue_pop(in->dec_q)) != &stop_buf) {
        PageCodecStats st = { 0 };
        uint32_t round;
        g_autoptr(GError) err = NULL;
        bool ok;
        /* in->postcopy changes only while no batch is queued (drain). */
        if (in->postcopy && !background) {
            thread_prio_background();    /* requested pages first */
            background = true;
        }
        if (in->postcopy) {
            ok = place_batch(in, d, staging, b->data, b->len, &st, &err);
        } else {
            ok = page_decode(d, in->ram, b->data, b->len, &round, &st, in->hinted,
                             in->digests, &err);
        }

        g_mutex_lock(&in->lock);
        if (!ok && !in->decode_error) {
            in->decode_error = g_strdup(err->message);
        }
        page_codec_stats_add(&in->codec, &st);
        if (--in->busy == 0) {
            g_cond_broadcast(&in->idle);
        }
        g_mutex_unlock(&in->lock);
        g_async_queue_push(in->rx_pool, b);
    }
    page_decoder_free(d);
    return NULL;
}

/* Waits until every batch received so far is applied; false if one failed. */
static bool drain(Incoming *in, GError **errp)
{
    g_mutex_lock(&in->lock);
    while (in->busy) {
        g_cond_wait(&in->idle, &in->lock);
    }
    bool ok = !in->decode_error;
    if (!ok) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s", in->decode_error);
    }
    g_mutex_unlock(&in->lock);
    return ok;
}

static void publish(Incoming *in)
{
    g_mutex_lock(&in->lock);
    PageCodecStats c = in->codec;
    uint64_t rx = in->rx_bytes;
    g_mutex_unlock(&in->lock);
    g_mutex_lock(&in->m->lock);
    MigrationStats *s = &in->m->stats;
    s->duplicate_pages = c.zero_pages;
    s->normal_pages = c.data_pages;
    s->normal_bytes = c.data_bytes;
    s->compressed_bytes = c.payload_bytes;
    s->wire_bytes_received = rx;
    s->transferred_ram = rx;
    uint64_t ms = (g_get_monotonic_time() - in->m->t_start) / 1000;
    s->throughput_mbps = ms ? rx * 8.0 / ms / 1000.0 : 0;
    g_mutex_unlock(&in->m->lock);
}

/* Tells the source why we give up (best effort), and fails. */
static bool give_up(Incoming *in, WireRefusal code, GError **errp, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);
static bool give_up(Incoming *in, WireRefusal code, GError **errp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_autoptr(GBytes) b = wire_status_encode(code, msg);
    gsize len;
    const void *d = g_bytes_get_data(b, &len);
    g_mutex_lock(&in->send_lock);
    wire_send(in->fd, WIRE_ERROR, 0, d, len, NULL);
    g_mutex_unlock(&in->send_lock);
    g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s", msg);
    return false;
}

static bool ack(Incoming *in, uint32_t seq, WireRefusal code, const char *msg,
                GError **errp)
{
    g_autoptr(GBytes) b = wire_status_encode(code, msg);
    gsize len;
    const void *d = g_bytes_get_data(b, &len);
    g_mutex_lock(&in->send_lock);
    bool ok = wire_send(in->fd, WIRE_ACK, seq, d, len, errp);
    g_mutex_unlock(&in->send_lock);
    return ok;
}

static bool hello(Incoming *in, GError **errp)
{
    MigrationHost *host = &in->m->host;
    WireHeader h;
    g_autoptr(GBytes) payload = NULL;
    WireHello hi;
    WireHelloReply r = { .page_size = GUEST_PAGE_SIZE, .ram_size = in->ram->size,
                         .nvcpus = host->nvcpus };
    struct timeval tv = { .tv_sec = 30 };

    setsockopt(in->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (!wire_recv(in->fd, &h, &payload, errp)) {
        g_prefix_error(errp, "handshake: ");
        return false;
    }
    tv.tv_sec = 0;
    setsockopt(in->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    gsize len;
    const void *d = g_bytes_get_data(payload, &len);
    if (h.type != WIRE_HELLO || !wire_hello_decode(d, len, &hi, NULL)) {
        return give_up(in, WIRE_ERR_PROTOCOL, errp,
                       "handshake: expected hello, got %s", wire_type_str(h.type));
    }
    char uuid[37];
    wire_uuid_format(hi.uuid, uuid);
    uint64_t supported = WIRE_FEAT_ZSTD | WIRE_FEAT_VERIFY | WIRE_FEAT_FREE_PAGE_HINT;
    if (migration_get_caps(in->m).postcopy_ram) {
        supported |= WIRE_FEAT_POSTCOPY;    /* as QEMU: both sides opt in */
    }
    r.features_accepted = hi.features_offered & supported;
    if (hi.page_size != GUEST_PAGE_SIZE || hi.ram_size != in->ram->size ||
        hi.nvcpus != host->nvcpus) {
        r.status = WIRE_REFUSE_LAYOUT;
        g_snprintf(r.reason, sizeof(r.reason),
                   "source VM has %" G_GUINT64_FORMAT " MiB RAM, %u vCPUs, %u-byte "
                   "pages; this destination has %" G_GUINT64_FORMAT " MiB, %u vCPUs, "
                   "%u-byte pages", hi.ram_size >> 20, hi.nvcpus, hi.page_size,
                   in->ram->size >> 20, host->nvcpus, GUEST_PAGE_SIZE);
    } else if (hi.features_required & ~supported) {
        g_autofree char *missing = wire_features_str(hi.features_required & ~supported);
        r.status = WIRE_REFUSE_FEATURES;
        g_snprintf(r.reason, sizeof(r.reason),
                   "source requires features this destination lacks: %s", missing);
    } else if (host->uuid_explicit && g_ascii_strcasecmp(uuid, host->uuid)) {
        r.status = WIRE_REFUSE_UUID;
        g_snprintf(r.reason, sizeof(r.reason),
                   "this destination waits for VM %s, not %s", host->uuid, uuid);
    }
    g_autoptr(GBytes) rb = wire_hello_reply_encode(&r);
    const void *rd = g_bytes_get_data(rb, &len);
    if (!wire_send(in->fd, WIRE_HELLO_REPLY, h.seq, rd, len, errp)) {
        return false;
    }
    if (r.status != WIRE_OK) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED, "refused: %s", r.reason);
        return false;
    }
    in->features = r.features_accepted;
    in->session = hi.session;
    return true;
}

/*
 * Free pages the source will not send: they must read as zero, or as the
 * guest's poison value, and verification leaves them out until they arrive.
 */
static bool apply_hinted(Incoming *in, const uint8_t *d, size_t len, GError **errp)
{
    uint64_t npages = in->ram->npages, pages;
    uint32_t poison;
    g_autofree unsigned long *set = bitmap_new(npages);
    g_autoptr(GError) err = NULL;

    if (!wire_runs_decode(d, len, npages, set, &poison, &pages, &err)) {
        return give_up(in, WIRE_ERR_PROTOCOL, errp, "hinted: %s", err->message);
    }
    if (!in->hinted) {
        in->hinted = bitmap_new(npages);
    }
    for (uint64_t pfn = bitmap_next_set(set, npages, 0); pfn < npages;) {
        uint64_t end = bitmap_next_clear(set, npages, pfn);
        uint8_t *p = guest_ram_page(in->ram, pfn);
        size_t bytes = (end - pfn) << GUEST_PAGE_SHIFT;
        if (poison) {
            madvise(p, bytes, MADV_POPULATE_WRITE);
            for (size_t off = 0; off < bytes; off += 4) {
                memcpy(p + off, &poison, 4);
            }
        } else {
            madvise(p, bytes, MADV_DONTNEED);     /* reads as zero again */
        }
        bitmap_set_range(in->hinted, pfn, end - pfn);
        pfn = bitmap_next_set(set, npages, end);
    }
    in->poison = poison;
    g_mutex_lock(&in->m->lock);
    in->m->stats.hinted_pages += pages;
    g_mutex_unlock(&in->m->lock);
    return true;
}

static bool store_digests(Incoming *in, const uint8_t *d, size_t len, GError **errp)
{
    uint32_t chunk_pages, count;
    uint64_t first;

    if (len < 16) {
        return give_up(in, WIRE_ERR_PROTOCOL, errp, "verify message too short");
    }
    memcpy(&chunk_pages, d, 4);
    memcpy(&count, d + 4, 4);
    memcpy(&first, d + 8, 8);
    chunk_pages = GUINT32_FROM_LE(chunk_pages);
    count = GUINT32_FROM_LE(count);
    first = GUINT64_FROM_LE(first);
    if (chunk_pages != RAM_DIGEST_CHUNK_PAGES || len != 16 + (size_t)count * 8 ||
        first > in->nchunks || count > in->nchunks - first) {
        return give_up(in, WIRE_ERR_PROTOCOL, errp, "malformed verify message");
    }
    for (uint32_t i = 0; i < count; i++) {
        uint64_t v;
        memcpy(&v, d + 16 + (size_t)i * 8, 8);
        in->src_digests[first + i] = GUINT64_FROM_LE(v);
    }
    in->digests_received += count;
    return true;
}

/*
 * Compares our RAM with the source's digests; returns the reason when they
 * differ or are incomplete, NULL when they match.  In postcopy the running
 * guest has changed RAM since: the digests recorded as pages were placed
 * stand for it.
 */
static char *verify_ram(Incoming *in)
{
    g_autofree uint64_t *ours = g_new(uint64_t, in->nchunks);
    uint64_t bad = 0, first_bad = 0;

    if (in->digests_received != in->nchunks) {
        return g_strdup_printf("RAM verification failed: %" G_GUINT64_FORMAT " of %"
                               G_GUINT64_FORMAT " digests received",
                               in->digests_received, in->nchunks);
    }
    gint64 t0 = g_get_monotonic_time();
    if (in->postcopy) {
        ram_digest_combine(in->digests, in->ram->npages, RAM_DIGEST_CHUNK_PAGES,
                           in->nchunks, ours, in->hinted);
    } else {
        ram_digest_chunks(in->ram, RAM_DIGEST_CHUNK_PAGES, 0, in->nchunks, ours,
                          migration_get_params(in->m).compress_threads, in->hinted);
    }
    uint64_t ms = (g_get_monotonic_time() - t0) / 1000;
    for (uint64_t c = 0; c < in->nchunks; c++) {
        if (ours[c] != in->src_digests[c] && !bad++) {
            first_bad = c;
        }
    }
    g_mutex_lock(&in->m->lock);
    in->m->stats.verify_chunks = in->nchunks;
    in->m->stats.verify_mismatches = bad;
    in->m->stats.verify_dest_ms = ms;
    in->m->stats.verified = true;
    g_mutex_unlock(&in->m->lock);
    if (!bad) {
        return NULL;
    }
    return g_strdup_printf("RAM verification failed: %" G_GUINT64_FORMAT " of %"
                           G_GUINT64_FORMAT " chunks differ%s (first: chunk %"
                           G_GUINT64_FORMAT ", pages %" G_GUINT64_FORMAT "-%"
                           G_GUINT64_FORMAT ")", bad, in->nchunks,
                           in->postcopy ? " as placed" : "", first_bad,
                           first_bad * RAM_DIGEST_CHUNK_PAGES,
                           (first_bad + 1) * RAM_DIGEST_CHUNK_PAGES - 1);
}

/* Counts the pages left hinted and verifies RAM; on a mismatch acks @seq with it. */
static bool check_ram(Incoming *in, uint32_t seq, GError **errp)
{
    if (in->hinted) {
        g_mutex_lock(&in->m->lock);
        in->m->stats.hint_skipped_pages = bitmap_count(in->hinted, in->ram->npages);
        g_mutex_unlock(&in->m->lock);
    }
    g_autofree char *why = in->features & WIRE_FEAT_VERIFY ? verify_ram(in) : NULL;
    if (why) {
        ack(in, seq, WIRE_ERR_VERIFY, why, NULL);
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s", why);
        return false;
    }
    return true;
}

static bool complete(Incoming *in, uint32_t seq, GError **errp)
{
    MigrationHost *host = &in->m->host;
    g_autoptr(GError) err = NULL;

    if (!drain(in, &err)) {
        ack(in, seq, WIRE_ERR_DATA, err->message, NULL);
        g_propagate_error(errp, g_steal_pointer(&err));
        return false;
    }
    if (!check_ram(in, seq, errp)) {
        return false;
    }
    if (!in->sections) {
        ack(in, seq, WIRE_ERR_STATE, "no device state received", NULL);
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED, "no device state received");
        return false;
    }
    if (!host->ops->load_state(host->opaque, in->sections, &err)) {
        g_prefix_error(&err, "loading device state: ");
        ack(in, seq, WIRE_ERR_STATE, err->message, NULL);
        g_propagate_error(errp, g_steal_pointer(&err));
        return false;
    }
    if (!ack(in, seq, WIRE_OK, NULL, errp)) {
        return false;
    }
    /* Run the guest only once the source has let go of it. */
    WireHeader h;
    g_autoptr(GBytes) payload = NULL;
    struct timeval tv = { .tv_sec = COMMIT_TIMEOUT_S };
    setsockopt(in->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (!wire_recv(in->fd, &h, &payload, errp)) {
        g_prefix_error(errp, "waiting for the source to commit: ");
        return false;
    }
    if (h.type != WIRE_COMMIT) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "expected commit, got %s", wire_type_str(h.type));
        return false;
    }
    return true;
}

/* ---- postcopy ---- */

/* The fault thread's way to the source (UffdRequestFn). */
static bool request_pages(void *opaque, const uint64_t *pfns, unsigned n)
{
    Incoming *in = opaque;
    g_autofree uint8_t *msg = g_malloc(4 + (size_t)n * 8);
    uint32_t c = GUINT32_TO_LE(n);

    memcpy(msg, &c, 4);
    for (unsigned i = 0; i < n; i++) {
        uint64_t v = GUINT64_TO_LE(pfns[i]);
        memcpy(msg + 4 + (size_t)i * 8, &v, 8);
    }
    g_mutex_lock(&in->send_lock);
    bool ok = in->link_up &&
              wire_send(in->fd, WIRE_PAGE_REQUEST, 0, msg, 4 + (size_t)n * 8, NULL);
    g_mutex_unlock(&in->send_lock);
    return ok;
}

/*
 * Reads the first message of a new connection: @type with the session id.
 * Returns the type, or 0 with @errp set.
 */
static uint16_t read_intro(Incoming *in, int fd, GError **errp)
{
    WireHeader h;
    g_autoptr(GBytes) payload = NULL;
    struct timeval tv = { .tv_sec = CHANNEL_TIMEOUT_MS / 1000 };
    uint64_t session;

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (!wire_recv(fd, &h, &payload, errp)) {
        return 0;
    }
    tv.tv_sec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    gsize len;
    const void *d = g_bytes_get_data(payload, &len);
    if ((h.type != WIRE_PAGE_CHANNEL && h.type != WIRE_RESUME) || len != 8) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "expected a page-channel or resume message, got %s",
                    wire_type_str(h.type));
        return 0;
    }
    memcpy(&session, d, 8);
    if (GUINT64_FROM_LE(session) != in->session) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "connection belongs to another migration (session %016"
                    G_GINT64_MODIFIER "x, this one is %016" G_GINT64_MODIFIER "x)",
                    GUINT64_FROM_LE(session), in->session);
        return 0;
    }
    return h.type;
}

/* Accepts one connection on @lfd, waiting at most @timeout_ms. */
static int accept_one(int lfd, int timeout_ms, GError **errp)
{
    struct pollfd pfd = { lfd, POLLIN, 0 };
    int r = poll(&pfd, 1, timeout_ms);
    int fd = r == 1 ? accept4(lfd, NULL, NULL, SOCK_CLOEXEC) : -1;

    if (fd < 0) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_AGAIN,
                    "the source did not connect within %d ms", timeout_ms);
        return -1;
    }
    socket_set_liveness(fd);
    return fd;
}

/* Pages a waiting vCPU asked for, on the second connection. */
static gpointer channel_thread(gpointer data)
{
    Incoming *in = data;
    PageDecoder *d = page_decoder_new();
    g_autofree uint8_t *buf = g_malloc(MIGRATION_BUF_SIZE);
    g_autofree uint8_t *staging = g_malloc((size_t)PAGE_BATCH_MAX * GUEST_PAGE_SIZE);
    g_autoptr(GError) err = NULL;

    thread_prio_urgent();          /* a vCPU waits on every page this carries */
    for (;;) {
        WireHeader h;
        if (!wire_read_full(in->ch_fd, buf, WIRE_HEADER_SIZE, &err) ||
            !wire_header_decode(buf, &h, &err)) {
            break;
        }
        if (h.type != WIRE_RAM_BATCH || h.len > MIGRATION_BUF_SIZE || !in->postcopy) {
            break;
        }
        if (!wire_read_full(in->ch_fd, buf, h.len, &err)) {
            break;
        }
        PageCodecStats st = { 0 };
        if (!place_batch(in, d, staging, buf, h.len, &st, &err)) {
            break;
        }
        g_mutex_lock(&in->lock);
        in->rx_bytes += WIRE_HEADER_SIZE + h.len;
        page_codec_stats_add(&in->codec, &st);
        g_mutex_unlock(&in->lock);
    }
    /* Without this channel requested pages never come: break the main
     * stream too, so that the migration pauses and can be recovered. */
    shutdown(in->fd, SHUT_RDWR);
    uffd_postcopy_kick(in->pc);
    page_decoder_free(d);
    return NULL;
}

static void channel_start(Incoming *in, int fd)
{
    in->ch_fd = fd;
    in->ch_thread = g_thread_new("page-channel", channel_thread, in);
}

static void channel_stop(Incoming *in)
{
    if (in->ch_thread) {
        shutdown(in->ch_fd, SHUT_RDWR);
        g_thread_join(in->ch_thread);
        in->ch_thread = NULL;
    }
    if (in->ch_fd >= 0) {
        close(in->ch_fd);
        in->ch_fd = -1;
    }
}

/* After the hello: the source's page channel, on the listening socket. */
static bool accept_page_channel(Incoming *in, GError **errp)
{
    Migration *m = in->m;
    g_mutex_lock(&m->lock);
    int lfd = m->listen_fd;
    m->listen_fd = -1;
    g_mutex_unlock(&m->lock);

    int fd = lfd >= 0 ? accept_one(lfd, CHANNEL_TIMEOUT_MS, errp) : -1;
    if (lfd < 0) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "postcopy: no listening socket for the page channel");
    }
    if (lfd >= 0) {
        close(lfd);
    }
    if (fd < 0 || read_intro(in, fd, errp) != WIRE_PAGE_CHANNEL) {
        if (fd >= 0) {
            close(fd);
        }
        g_prefix_error(errp, "postcopy page channel: ");
        return false;
    }
    in->pc = uffd_postcopy_new(in->ram, errp);
    if (!in->pc) {
        close(fd);
        return false;
    }
    in->digests = g_new(uint64_t, in->ram->npages);
    channel_start(in, fd);
    return true;
}

/* PENDING: the pages the source still owes; their copies here are stale. */
static bool apply_pending(Incoming *in, const uint8_t *d, size_t len, GError **errp)
{
    unsigned long *missing = uffd_postcopy_missing(in->pc);
    uint64_t npages = in->ram->npages, pages;
    uint32_t word;
    g_autoptr(GError) err = NULL;

    if (!drain(in, &err)) {
        return give_up(in, WIRE_ERR_DATA, errp, "%s", err->message);
    }
    if (!wire_runs_decode(d, len, npages, missing, &word, &pages, &err)) {
        return give_up(in, WIRE_ERR_PROTOCOL, errp, "pending: %s", err->message);
    }
    if (in->hinted) {
        /* Hinted, then written by the guest: it comes from the source. */
        for (size_t i = 0; i < BITMAP_LONGS(npages); i++) {
            in->hinted[i] &= ~missing[i];
        }
    }
    return true;
}

/* POSTCOPY_RUN: RAM under userfaultfd, device state loaded, the guest runs. */
static bool postcopy_run(Incoming *in, uint32_t seq, GError **errp)
{
    MigrationHost *host = &in->m->host;
    g_autoptr(GError) err = NULL;

    if (!drain(in, &err)) {
        return give_up(in, WIRE_ERR_DATA, errp, "%s", err->message);
    }
    if (!in->sections) {
        return give_up(in, WIRE_ERR_STATE, errp, "postcopy: no device state received");
    }
    if (!uffd_postcopy_start(in->pc, in->hinted, in->poison, request_pages, in, &err)) {
        return give_up(in, WIRE_ERR_STATE, errp, "%s", err->message);
    }
    in->postcopy = true;
    g_mutex_lock(&in->m->lock);
    in->m->in_pc = in->pc;
    in->m->stats.postcopy = true;
    g_mutex_unlock(&in->m->lock);
    if (!host->ops->load_state(host->opaque, in->sections, &err)) {
        g_prefix_error(&err, "loading device state: ");
        ack(in, seq, WIRE_ERR_STATE, err->message, NULL);
        g_propagate_error(errp, g_steal_pointer(&err));
        in->postcopy = false;       /* the guest never ran: a plain failure */
        return false;
    }
    host->ops->incoming_done(host->opaque);
    migration_set_status(in->m, MIGRATION_STATUS_POSTCOPY_ACTIVE, NULL);
    return ack(in, seq, WIRE_OK, NULL, errp);
}

/* COMPLETE after postcopy: every page placed, then verified as placed. */
static bool postcopy_complete(Incoming *in, uint32_t seq, bool *final, GError **errp)
{
    g_autoptr(GError) err = NULL;

    if (!drain(in, &err)) {
        return give_up(in, WIRE_ERR_DATA, errp, "%s", err->message);
    }
    if (!uffd_postcopy_wait_all(in->pc, PLACE_TIMEOUT_MS)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PIPE,
                    "postcopy: %" G_GUINT64_FORMAT " pages still missing at the end "
                    "of the stream", uffd_postcopy_stats(in->pc).remaining);
        return false;
    }
    /* Everything is here: from now on the outcome is final. */
    *final = true;
    if (!uffd_postcopy_finish(in->pc, errp)) {
        return false;
    }
    g_mutex_lock(&in->m->lock);
    migration_stats_from_uffd(&in->m->stats, in->pc);
    in->m->in_pc = NULL;
    g_mutex_unlock(&in->m->lock);
    return check_ram(in, seq, errp) && ack(in, seq, WIRE_OK, NULL, errp);
}

/*
 * The link broke in postcopy: the guest waits on its missing pages while
 * we wait for migrate_recover and the source's new connections.  Returns
 * false only when the migration is being torn down.
 */
static bool postcopy_recover(Incoming *in, const char *why)
{
    Migration *m = in->m;

    g_mutex_lock(&in->send_lock);
    in->link_up = false;
    g_mutex_unlock(&in->send_lock);
    uffd_postcopy_link(in->pc, false);
    channel_stop(in);
    g_autoptr(GError) ignored = NULL;
    drain(in, &ignored);
    g_mutex_lock(&in->lock);
    g_clear_pointer(&in->decode_error, g_free);
    g_mutex_unlock(&in->lock);
    g_mutex_lock(&m->lock);
    m->in_fd = -1;
    g_mutex_unlock(&m->lock);
    shutdown(in->fd, SHUT_RDWR);
    close(in->fd);
    in->fd = -1;

    for (;;) {
        g_mutex_lock(&m->lock);
        m->stats.status = MIGRATION_STATUS_POSTCOPY_PAUSED;
        g_free(m->stats.error);
        m->stats.error = g_strdup(why);
        while (m->recover_fd < 0 && !m->cancel) {
            g_cond_wait(&m->state_cond, &m->lock);
        }
        if (m->cancel) {
            g_mutex_unlock(&m->lock);
            return false;
        }
        int lfd = m->recover_fd;
        m->recover_fd = -1;
        m->stats.status = MIGRATION_STATUS_POSTCOPY_RECOVER;
        g_mutex_unlock(&m->lock);

        /* The source connects its main stream first, then the page channel. */
        g_autoptr(GError) err = NULL;
        int fds[2] = { -1, -1 };
        for (int i = 0; i < 2 && !err; i++) {
            int fd = accept_one(lfd, 60000, &err);
            uint16_t t = fd >= 0 ? read_intro(in, fd, &err) : 0;
            int slot = t == WIRE_RESUME ? 0 : t == WIRE_PAGE_CHANNEL ? 1 : -1;
            if (slot < 0 || fds[slot] >= 0) {
                if (!err) {
                    g_set_error(&err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                                "recovery: two connections of one kind");
                }
                if (fd >= 0) {
                    close(fd);
                }
                break;
            }
            fds[slot] = fd;
        }
        close(lfd);
        if (err) {
            for (int i = 0; i < 2; i++) {
                if (fds[i] >= 0) {
                    close(fds[i]);
                }
            }
            why = "recovery failed; try migrate_recover again";
            continue;
        }
        in->fd = fds[0];
        g_mutex_lock(&m->lock);
        m->in_fd = in->fd;
        g_mutex_unlock(&m->lock);
        /* Tell the source what is still missing: what it must send again. */
        g_autoptr(GPtrArray) runs = wire_runs_encode(uffd_postcopy_missing(in->pc),
                                                     in->ram->npages, 0, 1);
        bool sent = true;
        for (guint i = 0; i < runs->len && sent; i++) {
            gsize len;
            const void *d = g_bytes_get_data(runs->pdata[i], &len);
            sent = wire_send(in->fd, WIRE_MISSING, 0, d, len, NULL);
        }
        if (!sent) {
            close(fds[1]);
            close(in->fd);
            in->fd = -1;
            why = "recovery failed while sending the missing pages";
            continue;
        }
        channel_start(in, fds[1]);
        g_mutex_lock(&in->send_lock);
        in->link_up = true;
        g_mutex_unlock(&in->send_lock);
        uffd_postcopy_link(in->pc, true);    /* waiting vCPUs: ask again */
        g_mutex_lock(&m->lock);
        m->stats.status = MIGRATION_STATUS_POSTCOPY_ACTIVE;
        m->stats.recoveries++;
        g_mutex_unlock(&m->lock);
        return true;
    }
}

static bool incoming_run(Incoming *in, bool resumed, bool *final, GError **errp)
{
    if (!resumed) {
        if (!hello(in, errp)) {
            return false;
        }
        if ((in->features & WIRE_FEAT_POSTCOPY) && !accept_page_channel(in, errp)) {
            return false;
        }
        if (!(in->features & WIRE_FEAT_POSTCOPY)) {
            g_mutex_lock(&in->m->lock);
            if (in->m->listen_fd >= 0) {
                close(in->m->listen_fd);
                in->m->listen_fd = -1;
            }
            g_mutex_unlock(&in->m->lock);
        }
    }
    for (;;) {
        uint8_t hb[WIRE_HEADER_SIZE];
        WireHeader h;
        if (!wire_read_full(in->fd, hb, sizeof(hb), errp)) {
            return false;
        }
        g_autoptr(GError) bad = NULL;
        if (!wire_header_decode(hb, &h, &bad)) {
            return give_up(in, WIRE_ERR_PROTOCOL, errp, "%s", bad->message);
        }
        g_mutex_lock(&in->lock);
        in->rx_bytes += WIRE_HEADER_SIZE + h.len;
        g_mutex_unlock(&in->lock);

        if (h.type == WIRE_RAM_BATCH) {
            if (h.len > MIGRATION_BUF_SIZE) {
                return give_up(in, WIRE_ERR_PROTOCOL, errp,
                               "RAM batch of %u bytes is too large", h.len);
            }
            RxBuf *b = g_async_queue_pop(in->rx_pool);
            b->len = h.len;
            if (!wire_read_full(in->fd, b->data, h.len, errp)) {
                g_async_queue_push(in->rx_pool, b);
                return false;
            }
            g_mutex_lock(&in->lock);
            in->busy++;
            bool failed = in->decode_error;
            g_mutex_unlock(&in->lock);
            g_async_queue_push(in->dec_q, b);
            if (failed) {
                g_autoptr(GError) err = NULL;
                drain(in, &err);
                return give_up(in, WIRE_ERR_DATA, errp, "%s", err->message);
            }
            continue;
        }
        g_autofree uint8_t *payload = g_malloc(h.len ? h.len : 1);
        if (h.len && !wire_read_full(in->fd, payload, h.len, errp)) {
            return false;
        }
        switch (h.type) {
        case WIRE_ROUND_END: {
            g_autoptr(GError) err = NULL;
            if (!drain(in, &err)) {
                return give_up(in, WIRE_ERR_DATA, errp, "%s", err->message);
            }
            publish(in);
            g_mutex_lock(&in->m->lock);
            in->m->stats.rounds++;
            g_mutex_unlock(&in->m->lock);
            if (!ack(in, h.seq, WIRE_OK, NULL, errp)) {
                return false;
            }
            break;
        }
        case WIRE_DEVICE_STATE: {
            g_autoptr(GError) err = NULL;
            g_clear_pointer(&in->sections, g_ptr_array_unref);
            in->sections = vmstate_sections_decode(payload, h.len, &err);
            if (!in->sections) {
                return give_up(in, WIRE_ERR_PROTOCOL, errp, "%s", err->message);
            }
            break;
        }
        case WIRE_HINTED:
            if (!(in->features & WIRE_FEAT_FREE_PAGE_HINT)) {
                return give_up(in, WIRE_ERR_PROTOCOL, errp,
                               "hinted message without the free-page-hint feature");
            }
            {
                /* Batches already queued may still write these pages. */
                g_autoptr(GError) err = NULL;
                if (!drain(in, &err)) {
                    return give_up(in, WIRE_ERR_DATA, errp, "%s", err->message);
                }
            }
            if (!apply_hinted(in, payload, h.len, errp)) {
                return false;
            }
            break;
        case WIRE_VERIFY:
            if (!(in->features & WIRE_FEAT_VERIFY)) {
                return give_up(in, WIRE_ERR_PROTOCOL, errp,
                               "verify message without the verify feature");
            }
            if (!store_digests(in, payload, h.len, errp)) {
                return false;
            }
            break;
        case WIRE_PENDING:
        case WIRE_POSTCOPY_RUN:
            if (!in->pc || in->postcopy) {
                return give_up(in, WIRE_ERR_PROTOCOL, errp, "unexpected %s message",
                               wire_type_str(h.type));
            }
            if (h.type == WIRE_PENDING ? !apply_pending(in, payload, h.len, errp)
                                       : !postcopy_run(in, h.seq, errp)) {
                return false;
            }
            break;
        case WIRE_COMPLETE:
            if (in->postcopy) {
                return postcopy_complete(in, h.seq, final, errp);
            }
            *final = true;
            return complete(in, h.seq, errp);
        default:
            return give_up(in, WIRE_ERR_PROTOCOL, errp, "unexpected %s message",
                           wire_type_str(h.type));
        }
    }
}

gpointer incoming_thread(gpointer data)
{
    Migration *m = data;
    Incoming in = {
        .m = m,
        .ram = m->host.ram,
        .fd = m->in_fd,
        .ndec = migration_get_params(m).compress_threads,
        .dec_q = g_async_queue_new(),
        .rx_pool = g_async_queue_new(),
        .ch_fd = -1,
        .link_up = true,
    };
    g_autoptr(GError) err = NULL;

    in.nchunks = ram_digest_nchunks(in.ram, RAM_DIGEST_CHUNK_PAGES);
    in.src_digests = g_new0(uint64_t, in.nchunks);
    g_mutex_init(&in.lock);
    g_cond_init(&in.idle);
    g_mutex_init(&in.send_lock);
    for (unsigned i = 0; i < RX_BUFS; i++) {
        in.bufs[i].data = g_malloc(MIGRATION_BUF_SIZE);
        g_async_queue_push(in.rx_pool, &in.bufs[i]);
    }
    in.dec = g_new0(GThread *, in.ndec);
    for (unsigned i = 0; i < in.ndec; i++) {
        in.dec[i] = g_thread_new("decoder", decoder_thread, &in);
    }

    bool final = false, resumed = false, ok;
    /* In postcopy the guest already runs here: a broken link pauses, it
     * does not fail, until every page is in. */
    while (!(ok = incoming_run(&in, resumed, &final, &err)) && in.postcopy && !final) {
        g_autofree char *why = g_strdup_printf("link to the source lost: %s",
                                               err->message);
        g_clear_error(&err);
        if (!postcopy_recover(&in, why)) {
            g_set_error(&err, G_FILE_ERROR, G_FILE_ERROR_INTR,
                        "postcopy abandoned while paused");
            break;
        }
        resumed = true;
    }
    channel_stop(&in);

    for (unsigned i = 0; i < in.ndec; i++) {
        g_async_queue_push(in.dec_q, &stop_buf);
    }
    for (unsigned i = 0; i < in.ndec; i++) {
        g_thread_join(in.dec[i]);
    }
    publish(&in);
    g_mutex_lock(&m->lock);
    m->stats.total_time_ms = (g_get_monotonic_time() - m->t_start) / 1000;
    m->in_fd = -1;
    g_mutex_unlock(&m->lock);
    if (in.fd >= 0) {
        shutdown(in.fd, SHUT_RDWR);
        close(in.fd);
    }
    g_mutex_lock(&m->lock);
    if (m->listen_fd >= 0 && !m->listen_src) {
        close(m->listen_fd);          /* the page channel never came */
        m->listen_fd = -1;
    }
    if (in.pc && m->in_pc) {
        migration_stats_from_uffd(&m->stats, in.pc);
    }
    m->in_pc = NULL;
    g_mutex_unlock(&m->lock);
    uffd_postcopy_free(in.pc);
    if (ok) {
        migration_set_status(m, MIGRATION_STATUS_COMPLETED, NULL);
        if (!in.postcopy) {
            m->host.ops->incoming_done(m->host.opaque);   /* postcopy: at RUN */
        }
    } else {
        migration_set_status(m, MIGRATION_STATUS_FAILED, "%s", err->message);
    }

    for (unsigned i = 0; i < RX_BUFS; i++) {
        g_free(in.bufs[i].data);
    }
    g_free(in.dec);
    g_free(in.src_digests);
    g_free(in.hinted);
    g_free(in.digests);
    g_free(in.decode_error);
    g_mutex_clear(&in.send_lock);
    if (in.sections) {
        g_ptr_array_unref(in.sections);
    }
    g_async_queue_unref(in.dec_q);
    g_async_queue_unref(in.rx_pool);
    g_mutex_clear(&in.lock);
    g_cond_clear(&in.idle);
    g_mutex_lock(&m->lock);
    m->in_thread_done = true;
    g_mutex_unlock(&m->lock);
    return NULL;
}
