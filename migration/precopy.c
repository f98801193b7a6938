/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The outgoing side of precopy: one migration thread drives
 *
 *   connect, handshake -> start dirty tracking -> bulk pass over all RAM
 *   -> dirty rounds while the estimated downtime exceeds the limit
 *   -> stop the VM, last round, device state, digests -> COMPLETE, wait ack
 *
 * Encoder threads (compress-threads, each with its own zstd context) turn
 * batches of page numbers into wire messages in the io_uring sender's
 * buffers.  The return-path thread reads the destination's acks and
 * errors; every ack must match an outstanding request.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "outgoing.h"
#include "migration/bitmap.h"
#include "migration/page_codec.h"
#include "migration/ram_digest.h"
#include "migration/vmstate_file.h"
#include "migration/wire.h"

#define HANDSHAKE_TIMEOUT_S 30
#define COMPLETE_TIMEOUT_S 120
#define VERIFY_PER_MSG 65536u        /* digests per WIRE_VERIFY message */
#define HINT_WAIT_MS 5000            /* for the guest to report its free pages */

static EncodeJob stop_job;

/* ---- statistics ---- */

void publish(Precopy *p)
{
    UringTxStats tx = p->tx ? uring_tx_stats(p->tx) : (UringTxStats) { 0 };
    Migration *m = p->m;

    g_mutex_lock(&p->lock);
    PageCodecStats c = p->codec;
    uint64_t ram_bytes = p->ram_bytes, ch_bytes = p->ch_bytes + p->tx_bytes_done;
    uint64_t requests = p->requests, urgent = p->urgent_pages;
    g_mutex_unlock(&p->lock);
    g_mutex_lock(&p->rp_lock);
    uint64_t rx = p->rx_bytes;
    g_mutex_unlock(&p->rp_lock);

    g_mutex_lock(&m->lock);
    MigrationStats *s = &m->stats;
    s->duplicate_pages = c.zero_pages;
    s->normal_pages = c.data_pages;
    s->normal_bytes = c.data_bytes;
    s->compressed_bytes = c.payload_bytes;
    s->zstd_batches = c.zstd_batches;
    s->raw_batches = c.raw_batches;
    s->transferred_ram = ram_bytes;
    s->wire_bytes = tx.bytes_sent + ch_bytes;
    s->wire_bytes_received = rx;
    if (p->pending) {
        s->postcopy_requests = requests;
        s->postcopy_urgent_pages = urgent;
        s->postcopy_remaining = bitmap_count(p->pending, p->ram->npages);
    }
    if (p->tracker) {
        s->dirty_sync_count = dirty_tracker_stats(p->tracker).syncs;
    }
    if (p->hints) {
        HintFilterStats h = hint_filter_stats(p->hints);
        s->hinted_pages = h.hinted_pages;
        s->hint_skipped_pages = h.skipped;
        s->madv_freed_bytes = h.madv_freed_bytes;
    }
    uint64_t ms = (g_get_monotonic_time() - m->t_start) / 1000;
    s->throughput_mbps = ms ? (tx.bytes_sent + ch_bytes) * 8.0 / ms / 1000.0 : 0;
    g_mutex_unlock(&m->lock);
}

/* ---- encoders ---- */

static gpointer encoder_thread(gpointer data)
{
    Precopy *p = data;
    PageEncoder *e = page_encoder_new(p->params.compress_method == COMPRESS_ZSTD &&
                                      (p->features & WIRE_FEAT_ZSTD),
                                      p->params.compress_level);
    EncodeJob *job;
    bool background = false;

    while ((job = g_async_queue_pop(p->enc_q)) != &stop_job) {
        PageCodecStats st = { 0 };
        if (!background && __atomic_load_n(&p->pending, __ATOMIC_RELAXED)) {
            thread_prio_background();    /* postcopy: requests first */
            background = true;
        }
        size_t len = page_encode(e, p->ram, job->pfns, job->n, job->round,
                                 job->buf->data + WIRE_HEADER_SIZE, &st);
        wire_header_encode(job->buf->data, WIRE_RAM_BATCH, 0, len);
        job->buf->len = WIRE_HEADER_SIZE + len;
        uring_tx_send(p->tx, job->buf);

        g_mutex_lock(&p->lock);
        page_codec_stats_add(&p->codec, &st);
        p->ram_bytes += WIRE_HEADER_SIZE + len;
        if (--p->busy == 0) {
            g_cond_broadcast(&p->idle);
        }
        g_mutex_unlock(&p->lock);
        g_async_queue_push(p->job_pool, job);
    }
    page_encoder_free(e);
    return NULL;
}

void encoders_wait_idle(Precopy *p)
{
    g_mutex_lock(&p->lock);
    while (p->busy) {
        g_cond_wait(&p->idle, &p->lock);
    }
    g_mutex_unlock(&p->lock);
}

/* The reason to give when the stream broke: the destination's, if it sent one. */
void stream_error(Precopy *p, GError **errp, const char *what)
{
    /* The destination sends its reason and then closes: give it a moment. */
    g_mutex_lock(&p->rp_lock);
    gint64 until = g_get_monotonic_time() + G_USEC_PER_SEC;
    while (!p->rp_done && !p->peer_error &&
           g_cond_wait_until(&p->rp_cond, &p->rp_lock, until)) {
    }
    char *peer = g_strdup(p->peer_error);
    g_mutex_unlock(&p->rp_lock);
    if (peer) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s", peer);
        g_free(peer);
    } else {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PIPE, "%s", what);
    }
}

bool check_abort(Precopy *p, GError **errp)
{
    if (migration_cancelled(p->m)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INTR, "cancelled by the user");
        return false;
    }
    g_mutex_lock(&p->rp_lock);
    bool broken = p->peer_error || p->rp_done;
    g_mutex_unlock(&p->rp_lock);
    if (broken) {
        stream_error(p, errp, "connection lost: the destination closed it");
        return false;
    }
    return true;
}

bool queue_batch(Precopy *p, const uint64_t *pfns, unsigned n, uint32_t round,
                 GError **errp)
{
    EncodeJob *job = g_async_queue_pop(p->job_pool);
    job->buf = uring_tx_buf_get(p->tx);
    if (!job->buf) {
        g_async_queue_push(p->job_pool, job);
        stream_error(p, errp, "connection lost while sending RAM");
        return false;
    }
    job->round = round;
    job->n = n;
    memcpy(job->pfns, pfns, n * sizeof(pfns[0]));
    g_mutex_lock(&p->lock);
    p->busy++;
    g_mutex_unlock(&p->lock);
    g_async_queue_push(p->enc_q, job);
    return true;
}

static bool postcopy_wanted(Precopy *p)
{
    g_mutex_lock(&p->m->lock);
    bool want = p->postcopy && p->m->postcopy_requested;
    g_mutex_unlock(&p->m->lock);
    return want;
}

/*
 * Queues the pages set in @bitmap (every page if NULL) as round @round.
 * When postcopy is asked for, it stops early and sets *@stopped_at to the
 * first page not queued (else to the number of pages).
 */
static bool send_pages(Precopy *p, const unsigned long *bitmap, uint32_t round,
                       uint64_t *stopped_at, GError **errp)
{
    uint64_t npages = p->ram->npages;
    uint64_t pfns[PAGE_BATCH_MAX];
    unsigned n = 0;
    uint64_t batches = 0;

    *stopped_at = npages;
    for (uint64_t pfn = bitmap ? bitmap_next_set(bitmap, npages, 0) : 0;
         pfn < npages;
         pfn = bitmap ? bitmap_next_set(bitmap, npages, pfn + 1) : pfn + 1) {
        if (p->hints && hint_filter_skip(p->hints, pfn)) {
            continue;            /* free, hinted, untouched since */
        }
        pfns[n++] = pfn;
        if (n == PAGE_BATCH_MAX) {
            if (!queue_batch(p, pfns, n, round, errp)) {
                return false;
            }
            n = 0;
            if (++batches % 64 == 0) {
                publish(p);
                if (!check_abort(p, errp)) {
                    return false;
                }
                if (postcopy_wanted(p)) {
                    *stopped_at = pfn + 1;
                    return true;
                }
            }
        }
    }
    return !n || queue_batch(p, pfns, n, round, errp);
}

/* Queues a control message behind everything queued so far. */
bool send_msg(Precopy *p, WireType type, uint32_t seq, const void *payload,
                     size_t len, GError **errp)
{
    UringTxBuf *b;
    if (WIRE_HEADER_SIZE + len > MIGRATION_BUF_SIZE) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%s message of %zu bytes is too large", wire_type_str(type), len);
        return false;
    }
    encoders_wait_idle(p);
    if (!(b = uring_tx_buf_get(p->tx))) {
        stream_error(p, errp, "connection lost");
        return false;
    }
    wire_header_encode(b->data, type, seq, len);
    if (len) {
        memcpy(b->data + WIRE_HEADER_SIZE, payload, len);
    }
    b->len = WIRE_HEADER_SIZE + len;
    uring_tx_send(p->tx, b);
    return true;
}

uint32_t send_request(Precopy *p, WireType type, const void *payload, size_t len,
                      bool awaited, GError **errp)
{
    g_mutex_lock(&p->rp_lock);
    uint32_t seq = ++p->next_seq;
    g_hash_table_insert(p->pending_acks, GUINT_TO_POINTER(seq), GUINT_TO_POINTER(type));
    if (awaited) {
        p->await_seq = seq;
        p->await_acked = false;
        g_clear_pointer(&p->await_msg, g_free);
    }
    g_mutex_unlock(&p->rp_lock);
    return send_msg(p, type, seq, payload, len, errp) ? seq : 0;
}

bool wait_ack(Precopy *p, int timeout_s, uint32_t *status, char **msg, bool *closed)
{
    g_mutex_lock(&p->rp_lock);
    gint64 until = g_get_monotonic_time() + (gint64)timeout_s * G_USEC_PER_SEC;
    while (!p->await_acked && !p->rp_done && !p->peer_error &&
           g_cond_wait_until(&p->rp_cond, &p->rp_lock, until)) {
    }
    bool acked = p->await_acked;
    *status = p->await_status;
    *msg = g_strdup(p->await_msg);
    *closed = p->rp_done || p->peer_error;
    g_mutex_unlock(&p->rp_lock);
    return acked;
}

/* ---- return path ---- */

void rp_fail(Precopy *p, char *msg)
{
    g_mutex_lock(&p->rp_lock);
    if (!p->peer_error) {
        p->peer_error = msg;
    } else {
        g_free(msg);
    }
    g_cond_broadcast(&p->rp_cond);
    g_mutex_unlock(&p->rp_lock);
    shutdown(p->fd, SHUT_RDWR);      /* stops the sender too */
}

gpointer return_path_thread(gpointer data)
{
    Precopy *p = data;

    for (;;) {
        WireHeader h;
        GBytes *payload = NULL;
        g_autoptr(GError) err = NULL;
        if (!wire_recv(p->fd, &h, &payload, &err)) {
            /* A malformed message is worth reporting; a closed connection
             * is reported by whoever needed it. */
            if (g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_INVAL)) {
                rp_fail(p, g_strdup_printf("return path: %s", err->message));
            }
            break;
        }
        gsize len;
        const void *d = g_bytes_get_data(payload, &len);
        uint32_t code;
        g_autofree char *text = NULL;
        g_mutex_lock(&p->rp_lock);
        p->rx_bytes += WIRE_HEADER_SIZE + len;
        g_mutex_unlock(&p->rp_lock);

        if (h.type == WIRE_ERROR) {
            if (wire_status_decode(d, len, &code, &text, NULL)) {
                rp_fail(p, g_strdup_printf("destination: %s", text));
            } else {
                rp_fail(p, g_strdup("destination sent a malformed error"));
            }
            g_bytes_unref(payload);
            break;
        }
        if (h.type == WIRE_PAGE_REQUEST && p->postcopy) {
            postcopy_serve_request(p, d, len);
            g_bytes_unref(payload);
            continue;
        }
        if (h.type != WIRE_ACK || !wire_status_decode(d, len, &code, &text, NULL)) {
            rp_fail(p, g_strdup_printf("return path: unexpected %s message",
                                       wire_type_str(h.type)));
            g_bytes_unref(payload);
            break;
        }
        g_bytes_unref(payload);
        g_mutex_lock(&p->rp_lock);
        gpointer type;
        if (!g_hash_table_lookup_extended(p->pending_acks, GUINT_TO_POINTER(h.seq),
                                          NULL, &type)) {
            g_mutex_unlock(&p->rp_lock);
            rp_fail(p, g_strdup_printf("return path: ack for request %u, which "
                                       "is not outstanding", h.seq));
            break;
        }
        g_hash_table_remove(p->pending_acks, GUINT_TO_POINTER(h.seq));
        /* The awaited request's refusal is its waiter's to report. */
        bool awaited = h.seq == p->await_seq;
        if (awaited) {
            p->await_acked = true;
            p->await_status = code;
            p->await_msg = g_steal_pointer(&text);
            g_cond_broadcast(&p->rp_cond);
        }
        g_mutex_unlock(&p->rp_lock);
        if (code != WIRE_OK && !awaited) {
            rp_fail(p, g_strdup_printf("destination: %s", text ? text : "error"));
            break;
        }
    }
    g_mutex_lock(&p->rp_lock);
    p->rp_done = true;
    g_cond_broadcast(&p->rp_cond);
    g_mutex_unlock(&p->rp_lock);
    return NULL;
}

/* ---- handshake ---- */

static bool handshake(Precopy *p, GError **errp)
{
    MigrationHost *host = &p->m->host;
    WireHello hello = {
        .session = (uint64_t)g_random_int() << 32 | g_random_int(),
        .features_offered = WIRE_FEAT_ZSTD | WIRE_FEAT_VERIFY,
        .features_required = p->verify ? WIRE_FEAT_VERIFY : 0,
        .page_size = GUEST_PAGE_SIZE,
        .ram_size = p->ram->size,
        .nvcpus = host->nvcpus,
    };
    if (p->params.compress_method == COMPRESS_ZSTD) {
        hello.features_required |= WIRE_FEAT_ZSTD;
    }
    if (migration_get_caps(p->m).postcopy_ram) {
        /* As QEMU: postcopy-ram is set on both sides, or it is an error. */
        hello.features_offered |= WIRE_FEAT_POSTCOPY;
        hello.features_required |= WIRE_FEAT_POSTCOPY;
    }
    if (p->hinting) {
        /* Pages left off the wire must be known as such over there. */
        hello.features_offered |= WIRE_FEAT_FREE_PAGE_HINT;
        hello.features_required |= WIRE_FEAT_FREE_PAGE_HINT;
    }
    if (!wire_uuid_parse(host->uuid, hello.uuid)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "the VM's UUID '%s' is not valid", host->uuid);
        return false;
    }

    struct timeval tv = { .tv_sec = HANDSHAKE_TIMEOUT_S };
    setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    g_autoptr(GBytes) hb = wire_hello_encode(&hello);
    gsize hlen;
    const void *hd = g_bytes_get_data(hb, &hlen);
    WireHeader h;
    g_autoptr(GBytes) reply = NULL;
    if (!wire_send(p->fd, WIRE_HELLO, 0, hd, hlen, errp) ||
        !wire_recv(p->fd, &h, &reply, errp)) {
        g_prefix_error(errp, "handshake: ");
        return false;
    }
    tv.tv_sec = 0;
    setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    WireHelloReply r;
    gsize rlen;
    const void *rd = g_bytes_get_data(reply, &rlen);
    if (h.type == WIRE_ERROR) {
        wire_set_peer_error(rd, rlen, "destination refused", errp);
        return false;
    }
    if (h.type != WIRE_HELLO_REPLY || !wire_hello_reply_decode(rd, rlen, &r, errp)) {
        g_prefix_error(errp, "handshake: ");
        if (errp && !*errp) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                        "handshake: expected a hello reply, got %s",
                        wire_type_str(h.type));
        }
        return false;
    }
    if (r.status != WIRE_OK) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                    "destination refused: %s", r.reason);
        return false;
    }
    if (r.features_accepted & ~hello.features_offered) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "handshake: destination accepted features never offered");
        return false;
    }
    p->features = r.features_accepted;
    p->session = hello.session;
    return true;
}

/* ---- rounds ---- */

bool send_device_state(Precopy *p, GError **errp)
{
    MigrationHost *host = &p->m->host;
    g_autoptr(GPtrArray) secs = host->ops->save_state(host->opaque);
    g_autoptr(GBytes) blob = vmstate_sections_encode(secs);
    gsize len;
    const void *d = g_bytes_get_data(blob, &len);
    return send_msg(p, WIRE_DEVICE_STATE, 0, d, len, errp);
}

/* Hashes the stopped VM's RAM while the last round is on its way. */
gpointer digest_task(gpointer data)
{
    DigestTask *t = data;
    gint64 t0 = g_get_monotonic_time();
    ram_digest_chunks(t->ram, RAM_DIGEST_CHUNK_PAGES, 0, t->n, t->out, t->threads,
                      t->exclude);
    t->us = g_get_monotonic_time() - t0;
    return NULL;
}

bool send_digests(Precopy *p, const uint64_t *dig, uint64_t n, GError **errp)
{
    g_autofree uint8_t *msg = g_malloc(16 + VERIFY_PER_MSG * 8);

    for (uint64_t first = 0; first < n; first += VERIFY_PER_MSG) {
        uint32_t count = MIN((uint64_t)VERIFY_PER_MSG, n - first);
        uint32_t cp = GUINT32_TO_LE(RAM_DIGEST_CHUNK_PAGES), c = GUINT32_TO_LE(count);
        uint64_t f = GUINT64_TO_LE(first);
        memcpy(msg, &cp, 4);
        memcpy(msg + 4, &c, 4);
        memcpy(msg + 8, &f, 8);
        for (uint32_t i = 0; i < count; i++) {
            uint64_t v = GUINT64_TO_LE(dig[first + i]);
            memcpy(msg + 16 + (size_t)i * 8, &v, 8);
        }
        if (!send_msg(p, WIRE_VERIFY, 0, msg, 16 + (size_t)count * 8, errp)) {
            return false;
        }
    }
    g_mutex_lock(&p->m->lock);
    p->m->stats.verify_chunks = n;
    g_mutex_unlock(&p->m->lock);
    return true;
}

bool send_runs(Precopy *p, WireType type, const unsigned long *set, uint32_t word,
               GError **errp)
{
    g_autoptr(GPtrArray) msgs = wire_runs_encode(set, p->ram->npages, word, word);
    for (guint i = 0; i < msgs->len; i++) {
        gsize len;
        const void *d = g_bytes_get_data(msgs->pdata[i], &len);
        if (!send_msg(p, type, 0, d, len, errp)) {
            return false;
        }
    }
    return true;
}

/*
 * Hint-first: before the bulk pass, ask the guest for its free pages and
 * wait (bounded) until it has reported them, so stale free pages are never
 * sent ahead of their hints.  The sync before the request and the one after
 * decide which hints hold (see hint_filter.h).
 */
static bool collect_hints(Precopy *p, GError **errp)
{
    Migration *m = p->m;
    MigrationEventData d = { .event = MIGRATION_EV_HINT_START };

    bitmap_zero(p->dirty, p->ram->npages);
    if (!dirty_tracker_sync(p->tracker, p->dirty, errp)) {
        return false;
    }
    /* The driver starts as soon as the id is out, and the device hands
     * hints over only under m->lock: publish and open the filter together
     * so that the first hints are not taken for stale ones. */
    g_mutex_lock(&m->lock);
    migration_notify(m, &d);
    if (!d.cmd_id) {
        g_snprintf(m->stats.hint_note, sizeof(m->stats.hint_note),
                   "no hints this time: %s", d.why_not[0] ? d.why_not
                                                          : "no device answered");
        g_mutex_unlock(&m->lock);
        return true;
    }
    p->hints_started = true;
    hint_filter_begin(p->hints, d.cmd_id);
    gint64 until = g_get_monotonic_time() + HINT_WAIT_MS * 1000;
    while (m->hint_round_done != d.cmd_id && !m->cancel &&
           g_cond_wait_until(&m->hint_cond, &m->lock, until)) {
    }
    bool timed_out = m->hint_round_done != d.cmd_id;
    if (timed_out) {
        g_snprintf(m->stats.hint_note, sizeof(m->stats.hint_note),
                   "the guest did not finish reporting within %d ms", HINT_WAIT_MS);
    }
    g_mutex_unlock(&m->lock);

    MigrationEventData stop = { .event = MIGRATION_EV_HINT_STOP };
    migration_notify(m, &stop);
    hint_filter_end(p->hints);
    bitmap_zero(p->dirty, p->ram->npages);
    if (!dirty_tracker_sync(p->tracker, p->dirty, errp)) {
        return false;
    }
    /* A lazily freed page may read back as zeros, even after DONE should
     * this migration fail: harmless to a driver that treats hinted pages
     * as uninitialised, not to a guest that checks its poison pattern in
     * free pages.  With poison, the source keeps them as they are. */
    hint_filter_commit(p->hints, p->dirty, d.poison == 0);
    publish(p);
    /* The pages that stay off the wire, and what they must read as. */
    return send_runs(p, WIRE_HINTED, hint_filter_set(p->hints), d.poison, errp);
}

void hints_done(Precopy *p)
{
    if (p->hints_started) {
        MigrationEventData d = { .event = MIGRATION_EV_DONE };
        migration_notify(p->m, &d);
        p->hints_started = false;
    }
}

bool stop_and_sync(Precopy *p, gint64 *t_down, GError **errp)
{
    MigrationHost *host = &p->m->host;

    *t_down = g_get_monotonic_time();
    migration_set_status(p->m, MIGRATION_STATUS_DEVICE, NULL);
    host->ops->stop(host->opaque);
    p->vm_stopped = true;
    if (!check_abort(p, errp)) {
        return false;
    }
    /* The bitmap still holds the pages not sent since they changed: the
     * final sync adds what was written since. */
    if (!dirty_tracker_sync(p->tracker, p->dirty, errp)) {
        return false;
    }
    if (p->hints) {
        hint_filter_apply_dirty(p->hints, p->dirty);
    }
    /* DONE before the device state is saved: the guest sees it wherever it
     * runs next, here after a failure or over there. */
    hints_done(p);
    return true;
}

/* Ends round @round: a ROUND_END the destination acks once applied. */
static bool end_round(Precopy *p, uint32_t round, GError **errp)
{
    uint32_t r = GUINT32_TO_LE(round);
    return send_request(p, WIRE_ROUND_END, &r, 4, false, errp) != 0;
}

static bool precopy_run(Precopy *p, GError **errp)
{
    Migration *m = p->m;
    MigrationHost *host = &m->host;

    p->fd = socket_connect(m->uri, 10000, errp);
    if (p->fd < 0) {
        return false;
    }
    g_mutex_lock(&m->lock);
    m->fd = p->fd;
    bool cancelled = m->cancel;
    g_mutex_unlock(&m->lock);
    if (cancelled) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INTR, "cancelled by the user");
        return false;
    }
    if (!handshake(p, errp)) {
        return false;
    }
    p->verify = p->verify && (p->features & WIRE_FEAT_VERIFY);
    p->postcopy = p->features & WIRE_FEAT_POSTCOPY;
    if (p->postcopy && !postcopy_open_channel(p, m->uri, errp)) {
        return false;
    }

    p->tx = uring_tx_new(p->fd, MIGRATION_TX_BUFS, MIGRATION_BUF_SIZE, errp);
    if (!p->tx) {
        return false;
    }
    g_mutex_lock(&m->lock);
    m->tx = p->tx;
    uring_tx_set_rate_limit(p->tx, m->params.max_bandwidth);
    g_mutex_unlock(&m->lock);
    p->rp = g_thread_new("return-path", return_path_thread, p);

    p->tracker = dirty_tracker_new(p->ram->host, p->ram->size, host->dirty_backend,
                                   host->ops->quiesce, host->opaque, errp);
    if (!p->tracker || !dirty_tracker_start(p->tracker, errp)) {
        g_prefix_error(errp, "dirty tracking: ");
        return false;
    }
    const char *why = dirty_tracker_fallback_reason(p->tracker);
    g_mutex_lock(&m->lock);
    g_snprintf(m->stats.dirty_backend, sizeof(m->stats.dirty_backend), "%s%s%s%s",
               dirty_backend_name(dirty_tracker_backend(p->tracker)),
               why ? " (fallback: " : "", why ? why : "", why ? ")" : "");
    m->stats.setup_time_ms = (g_get_monotonic_time() - m->t_start) / 1000;
    m->stats.status = MIGRATION_STATUS_ACTIVE;
    g_mutex_unlock(&m->lock);

    p->dirty = bitmap_new(p->ram->npages);
    p->nenc = p->params.compress_threads;
    p->enc = g_new0(GThread *, p->nenc);
    for (unsigned i = 0; i < p->nenc; i++) {
        p->enc[i] = g_thread_new("encoder", encoder_thread, p);
    }

    if (p->hinting && !collect_hints(p, errp)) {
        return false;
    }

    /* Bulk pass: every page, while tracking catches what changes behind it. */
    uint32_t round = 1;
    gint64 round_start = g_get_monotonic_time(), last_sync = round_start;
    uint64_t bytes_at_start = 0, npages = p->ram->npages, stopped_at;
    if (!send_pages(p, NULL, round, &stopped_at, errp)) {
        return false;
    }
    if (stopped_at < npages) {
        /* Postcopy now: the rest of the bulk pass is owed. */
        bitmap_zero(p->dirty, npages);
        bitmap_set_range(p->dirty, stopped_at, npages - stopped_at);
        return postcopy_run(p, errp);
    }
    for (;;) {
        if (!end_round(p, round, errp) || !uring_tx_wait_idle(p->tx, NULL) ||
            !check_abort(p, errp)) {
            if (errp && !*errp) {
                stream_error(p, errp, "connection lost");
            }
            return false;
        }
        gint64 now = g_get_monotonic_time();
        UringTxStats tx = uring_tx_stats(p->tx);
        double bw = (double)(tx.bytes_sent - bytes_at_start) * G_USEC_PER_SEC /
                    MAX(now - round_start, 1);
        bitmap_zero(p->dirty, p->ram->npages);
        if (!dirty_tracker_sync(p->tracker, p->dirty, errp)) {
            return false;
        }
        if (p->hints) {
            hint_filter_apply_dirty(p->hints, p->dirty);   /* written: send */
        }
        uint64_t ndirty = bitmap_count(p->dirty, p->ram->npages);
        publish(p);
        /* Dirty pages are data pages: charge each what a data page has cost
         * on the wire so far, not the average with zero pages thrown in. */
        g_mutex_lock(&p->lock);
        double per_page = p->codec.data_pages
            ? (double)p->codec.payload_bytes / p->codec.data_pages + 8
            : GUEST_PAGE_SIZE;
        g_mutex_unlock(&p->lock);
        uint64_t expected_ms = (uint64_t)(ndirty * per_page * 1000 / MAX(bw, 1.0));

        g_mutex_lock(&m->lock);
        m->stats.rounds = round;
        m->stats.ram_remaining = ndirty * GUEST_PAGE_SIZE;
        m->stats.dirty_pages_rate = ndirty * G_USEC_PER_SEC / MAX(now - last_sync, 1);
        m->stats.expected_downtime_ms = expected_ms;
        uint64_t limit = m->params.downtime_limit_ms;
        g_mutex_unlock(&m->lock);
        last_sync = now;
        if (postcopy_wanted(p)) {
            return postcopy_run(p, errp);
        }
        if (expected_ms <= limit) {
            break;
        }
        round++;
        round_start = now;
        bytes_at_start = tx.bytes_sent;
        if (!send_pages(p, p->dirty, round, &stopped_at, errp)) {
            return false;
        }
        if (stopped_at < npages) {
            /* Postcopy now: what this round sent is no longer owed. */
            for (uint64_t pfn = 0; pfn < stopped_at; pfn++) {
                bitmap_clear_bit(p->dirty, pfn);
            }
            return postcopy_run(p, errp);
        }
    }

    /* Stop and copy. */
    gint64 t_down;
    if (!stop_and_sync(p, &t_down, errp)) {
        return false;
    }
    round++;
    DigestTask dt = { p->ram, ram_digest_nchunks(p->ram, RAM_DIGEST_CHUNK_PAGES),
                      .threads = p->params.compress_threads,
                      .exclude = p->hints ? hint_filter_set(p->hints) : NULL };
    g_autofree uint64_t *digests = dt.out = g_new(uint64_t, dt.n);
    GThread *hasher = p->verify ? g_thread_new("digest", digest_task, &dt) : NULL;
    bool sent = send_pages(p, p->dirty, round, &stopped_at, errp) &&
                end_round(p, round, errp) &&
                send_device_state(p, errp);
    if (hasher) {
        g_thread_join(hasher);
        g_mutex_lock(&m->lock);
        m->stats.verify_source_ms = dt.us / 1000;
        g_mutex_unlock(&m->lock);
    }
    if (!sent || (p->verify && !send_digests(p, digests, dt.n, errp))) {
        return false;
    }
    if (!send_request(p, WIRE_COMPLETE, NULL, 0, true, errp)) {
        return false;
    }
    if (!uring_tx_wait_idle(p->tx, NULL)) {
        stream_error(p, errp, "connection lost before the end of the stream");
        return false;
    }
    publish(p);

    /* The destination verifies, loads and then acks. */
    uint32_t status;
    g_autofree char *msg = NULL;
    bool closed;
    if (!wait_ack(p, COMPLETE_TIMEOUT_S, &status, &msg, &closed)) {
        if (closed) {
            /* It closed without acking: it did not resume the guest. */
            stream_error(p, errp, "the destination closed the connection before "
                         "confirming");
            return false;
        }
        /* Silence: the destination may or may not run the guest now. */
        p->vm_stopped = false;     /* do not resume: two copies would run */
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_AGAIN,
                    "no answer from the destination within %d s; the source "
                    "stays stopped: check the destination before 'cont'",
                    COMPLETE_TIMEOUT_S);
        return false;
    }
    if (status != WIRE_OK) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED, "destination: %s",
                    msg ? msg : "failed");
        return false;
    }
    /* Second phase: the destination holds the guest until told to run it. */
    if (!migration_commit(m)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INTR, "cancelled by the user");
        return false;
    }
    GError *commit_err = NULL;
    if (!wire_send(p->fd, WIRE_COMMIT, 0, NULL, 0, &commit_err)) {
        /* It never got the word, so it will not run the guest: we do. */
        g_propagate_prefixed_error(errp, commit_err, "sending commit: ");
        return false;
    }
    g_mutex_lock(&m->lock);
    m->stats.rounds = round;
    m->stats.downtime_ms = (g_get_monotonic_time() - t_down) / 1000;
    m->stats.verified = p->verify;
    m->stats.ram_remaining = 0;
    g_mutex_unlock(&m->lock);
    return true;
}

static void precopy_cleanup(Precopy *p)
{
    hints_done(p);             /* failed or cancelled: the guest gets its pages */
    if (p->enc) {
        for (unsigned i = 0; i < p->nenc; i++) {
            g_async_queue_push(p->enc_q, &stop_job);
        }
        for (unsigned i = 0; i < p->nenc; i++) {
            g_thread_join(p->enc[i]);
        }
        g_free(p->enc);
    }
    if (p->fd >= 0) {
        shutdown(p->fd, SHUT_RDWR);
    }
    if (p->ch_fd >= 0) {
        shutdown(p->ch_fd, SHUT_RDWR);
    }
    if (p->tx) {
        publish(p);
        g_mutex_lock(&p->m->lock);
        p->m->tx = NULL;
        g_mutex_unlock(&p->m->lock);
        uring_tx_free(p->tx);
    }
    if (p->rp) {
        g_thread_join(p->rp);
    }
    g_mutex_lock(&p->m->lock);
    p->m->fd = -1;
    g_mutex_unlock(&p->m->lock);
    if (p->fd >= 0) {
        close(p->fd);
    }
    if (p->ch_fd >= 0) {
        close(p->ch_fd);
    }
    page_encoder_free(p->urgent_enc);
    g_free(p->urgent_buf);
    g_free(p->pending);
    g_mutex_clear(&p->ch_lock);
    dirty_tracker_free(p->tracker);
    g_mutex_lock(&p->m->lock);
    p->m->hints = NULL;
    g_mutex_unlock(&p->m->lock);
    hint_filter_free(p->hints);
    g_free(p->dirty);
    g_async_queue_unref(p->enc_q);
    g_async_queue_unref(p->job_pool);
    g_free(p->jobs);
    g_hash_table_destroy(p->pending_acks);
    g_free(p->await_msg);
    g_free(p->peer_error);
    g_mutex_clear(&p->lock);
    g_cond_clear(&p->idle);
    g_mutex_clear(&p->rp_lock);
    g_cond_clear(&p->rp_cond);
}

gpointer precopy_thread(gpointer data)
{
    Migration *m = data;
    Precopy p = {
        .m = m,
        .ram = m->host.ram,
        .params = migration_get_params(m),
        .verify = migration_get_caps(m).verify,
        .hinting = migration_get_caps(m).free_page_hint,
        .fd = -1,
        .ch_fd = -1,
        .enc_q = g_async_queue_new(),
        .job_pool = g_async_queue_new(),
        .jobs = g_new0(EncodeJob, MIGRATION_TX_BUFS),
        .pending_acks = g_hash_table_new(NULL, NULL),
    };
    g_autoptr(GError) err = NULL;

    g_mutex_init(&p.lock);
    g_cond_init(&p.idle);
    g_mutex_init(&p.rp_lock);
    g_cond_init(&p.rp_cond);
    g_mutex_init(&p.ch_lock);
    for (unsigned i = 0; i < MIGRATION_TX_BUFS; i++) {
        g_async_queue_push(p.job_pool, &p.jobs[i]);
    }
    if (p.hinting) {
        p.hints = hint_filter_new(p.ram);
        g_mutex_lock(&m->lock);
        m->hints = p.hints;
        m->hint_round_done = 0;
        g_mutex_unlock(&m->lock);
    }

    bool ok = precopy_run(&p, &err);
    bool stopped = p.vm_stopped;
    precopy_cleanup(&p);

    MigrationHost *host = &m->host;
    g_mutex_lock(&m->lock);
    m->stats.total_time_ms = (g_get_monotonic_time() - m->t_start) / 1000;
    uint64_t ms = MAX(m->stats.total_time_ms, 1);
    m->stats.throughput_mbps = m->stats.wire_bytes * 8.0 / ms / 1000.0;
    bool cancelled = m->cancel;
    g_mutex_unlock(&m->lock);
    if (ok) {
        host->ops->migrated(host->opaque);
        migration_set_status(m, MIGRATION_STATUS_COMPLETED, NULL);
    } else {
        if (stopped) {
            host->ops->resume(host->opaque);
        }
        if (cancelled) {
            migration_set_status(m, MIGRATION_STATUS_CANCELLED, "cancelled by the user");
        } else {
            migration_set_status(m, MIGRATION_STATUS_FAILED, "%s", err->message);
        }
    }
    g_mutex_lock(&m->lock);
    m->thread_done = true;
    g_mutex_unlock(&m->lock);
    return NULL;
}
