/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The incoming side: one thread reads the stream; decoder threads apply RAM
 * batches straight into guest RAM.  A ROUND_END is a barrier: every batch of
 * the round is applied before the ack, so a page sent again in a later round
 * can never be overtaken by its older copy.  The VM is started only after
 * COMPLETE, once every page, the device state and the RAM digests check out;
 * on any failure it is never started.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration_priv.h"
#include "migration/bitmap.h"
#include "migration/kernel_compat.h"
#include "migration/page_codec.h"
#include "migration/ram_digest.h"
#include "migration/vmstate_file.h"
#include "migration/wire.h"

#define RX_BUFS 16
#define COMMIT_TIMEOUT_S 60

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
} Incoming;

static RxBuf stop_buf;

static gpointer decoder_thread(gpointer data)
{
    Incoming *in = data;
    PageDecoder *d = page_decoder_new();
    RxBuf *b;

    while ((b = g_async_queue_pop(in->dec_q)) != &stop_buf) {
        PageCodecStats st = { 0 };
        uint32_t round;
        g_autoptr(GError) err = NULL;
        bool ok = page_decode(d, in->ram, b->data, b->len, &round, &st, in->hinted,
                              &err);

        g_mutex_lock(&in->lock);
        if (!ok && !in->decode_error) {
            in->decode_error = g_strdup(err->message);
        }
        in->codec.zero_pages += st.zero_pages;
        in->codec.data_pages += st.data_pages;
        in->codec.data_bytes += st.data_bytes;
        in->codec.payload_bytes += st.payload_bytes;
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
    wire_send(in->fd, WIRE_ERROR, 0, d, len, NULL);
    g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s", msg);
    return false;
}

static bool ack(Incoming *in, uint32_t seq, WireRefusal code, const char *msg,
                GError **errp)
{
    g_autoptr(GBytes) b = wire_status_encode(code, msg);
    gsize len;
    const void *d = g_bytes_get_data(b, &len);
    return wire_send(in->fd, WIRE_ACK, seq, d, len, errp);
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
    return true;
}

/*
 * Free pages the source will not send: they must read as zero, or as the
 * guest's poison value, and verification leaves them out until they arrive.
 */
static bool apply_hinted(Incoming *in, const uint8_t *d, size_t len, GError **errp)
{
    uint32_t poison, count;

    if (len < 8) {
        return give_up(in, WIRE_ERR_PROTOCOL, errp, "hinted message too short");
    }
    memcpy(&poison, d, 4);
    memcpy(&count, d + 4, 4);
    poison = GUINT32_FROM_LE(poison);
    count = GUINT32_FROM_LE(count);
    if (len != 8 + (size_t)count * 16) {
        return give_up(in, WIRE_ERR_PROTOCOL, errp, "malformed hinted message");
    }
    if (!in->hinted) {
        in->hinted = bitmap_new(in->ram->npages);
    }
    uint64_t pages = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t pfn, n;
        memcpy(&pfn, d + 8 + (size_t)i * 16, 8);
        memcpy(&n, d + 16 + (size_t)i * 16, 8);
        pfn = GUINT64_FROM_LE(pfn);
        n = GUINT64_FROM_LE(n);
        if (!n || pfn >= in->ram->npages || n > in->ram->npages - pfn) {
            return give_up(in, WIRE_ERR_PROTOCOL, errp,
                           "hinted range %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
                           " is outside RAM", pfn, n);
        }
        uint8_t *p = guest_ram_page(in->ram, pfn);
        size_t bytes = n << GUEST_PAGE_SHIFT;
        if (poison) {
            madvise(p, bytes, MADV_POPULATE_WRITE);
            for (size_t off = 0; off < bytes; off += 4) {
                memcpy(p + off, &poison, 4);
            }
        } else {
            madvise(p, bytes, MADV_DONTNEED);     /* reads as zero again */
        }
        bitmap_set_range(in->hinted, pfn, n);
        pages += n;
    }
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

/* Compares our RAM with the source's digests; fills a reason on mismatch. */
static bool verify_ram(Incoming *in, char **why)
{
    g_autofree uint64_t *ours = g_new(uint64_t, in->nchunks);
    uint64_t bad = 0, first_bad = 0;
    gint64 t0 = g_get_monotonic_time();

    ram_digest_chunks(in->ram, RAM_DIGEST_CHUNK_PAGES, 0, in->nchunks, ours,
                      migration_get_params(in->m).compress_threads, in->hinted);
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
    if (bad) {
        *why = g_strdup_printf("RAM verification failed: %" G_GUINT64_FORMAT " of %"
                               G_GUINT64_FORMAT " chunks differ (first: chunk %"
                               G_GUINT64_FORMAT ", pages %" G_GUINT64_FORMAT "-%"
                               G_GUINT64_FORMAT ")", bad, in->nchunks, first_bad,
                               first_bad * RAM_DIGEST_CHUNK_PAGES,
                               (first_bad + 1) * RAM_DIGEST_CHUNK_PAGES - 1);
    }
    return !bad;
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
    if (in->hinted) {
        g_mutex_lock(&in->m->lock);
        in->m->stats.hint_skipped_pages = bitmap_count(in->hinted, in->ram->npages);
        g_mutex_unlock(&in->m->lock);
    }
    if (in->features & WIRE_FEAT_VERIFY) {
        g_autofree char *why = NULL;
        if (in->digests_received != in->nchunks) {
            why = g_strdup_printf("RAM verification failed: %" G_GUINT64_FORMAT
                                  " of %" G_GUINT64_FORMAT " digests received",
                                  in->digests_received, in->nchunks);
        } else {
            verify_ram(in, &why);
        }
        if (why) {
            ack(in, seq, WIRE_ERR_VERIFY, why, NULL);
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s", why);
            return false;
        }
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

static bool incoming_run(Incoming *in, GError **errp)
{
    if (!hello(in, errp)) {
        return false;
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
        case WIRE_COMPLETE:
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
    };
    g_autoptr(GError) err = NULL;

    in.nchunks = ram_digest_nchunks(in.ram, RAM_DIGEST_CHUNK_PAGES);
    in.src_digests = g_new0(uint64_t, in.nchunks);
    g_mutex_init(&in.lock);
    g_cond_init(&in.idle);
    for (unsigned i = 0; i < RX_BUFS; i++) {
        in.bufs[i].data = g_malloc(MIGRATION_BUF_SIZE);
        g_async_queue_push(in.rx_pool, &in.bufs[i]);
    }
    in.dec = g_new0(GThread *, in.ndec);
    for (unsigned i = 0; i < in.ndec; i++) {
        in.dec[i] = g_thread_new("decoder", decoder_thread, &in);
    }

    bool ok = incoming_run(&in, &err);

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
    shutdown(in.fd, SHUT_RDWR);
    close(in.fd);
    if (ok) {
        migration_set_status(m, MIGRATION_STATUS_COMPLETED, NULL);
        m->host.ops->incoming_done(m->host.opaque);
    } else {
        migration_set_status(m, MIGRATION_STATUS_FAILED, "%s", err->message);
    }

    for (unsigned i = 0; i < RX_BUFS; i++) {
        g_free(in.bufs[i].data);
    }
    g_free(in.dec);
    g_free(in.src_digests);
    g_free(in.hinted);
    g_free(in.decode_error);
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
