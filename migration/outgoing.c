/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The outgoing connection, under both phases (precopy.c, postcopy_source.c):
 * the handshake, the further connections and the sender over them,
 * messages and their acks, the return path, the encoder
 * pool that turns batches of pages into wire messages in the io_uring
 * sender's buffers, device state, digests and page runs.
 *
 * Encoder threads (compress-threads, each with its own zstd context) take
 * EncodeJobs from enc_q.  The return-path thread reads the destination's
 * acks and errors; every ack must match an outstanding request, and page
 * requests go to the phase that serves them (on_page_request).
 */
#include <errno.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "outgoing.h"
#include "migration/bitmap.h"
#include "migration/le.h"
#include "migration/page_codec.h"
#include "migration/ram_digest.h"
#include "migration/wire.h"

#define HANDSHAKE_TIMEOUT_MS 30000
#define VERIFY_PER_MSG 65536u        /* digests per WIRE_VERIFY message */

static EncodeJob stop_job;

void out_publish(Precopy *p)
{
    UringTxStats tx = p->tx ? uring_tx_stats(p->tx) : (UringTxStats) { 0 };
    Hintmig *m = p->m;

    g_mutex_lock(&p->lock);
    PageCodecStats c = p->codec;
    uint64_t ram_bytes = p->ram_bytes, ch_bytes = p->ch_bytes + p->tx_bytes_done;
    uint64_t requests = p->requests, urgent = p->urgent_pages;
    uint64_t conn_done[WIRE_MULTIFD_MAX];
    memcpy(conn_done, p->conn_bytes_done, sizeof(conn_done));
    g_mutex_unlock(&p->lock);
    g_mutex_lock(&p->rp_lock);
    uint64_t rx = p->rx_bytes;
    g_mutex_unlock(&p->rp_lock);

    g_mutex_lock(&m->lock);
    HintmigStats *s = &m->stats;
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
        s->postcopy_push_yields = p->push_yields;
        s->postcopy_remaining = hm_bitmap_count(p->pending, p->ram->npages);
    }
    if (p->trackers || p->host_log) {
        s->dirty_sync_count = p->dirty_syncs;
    }
    if (p->hints) {
        HintFilterStats h = hint_filter_stats(p->hints);
        s->hinted_pages = h.hinted_pages;
        s->hint_skipped_pages = h.skipped;
        s->madv_freed_bytes = h.madv_freed_bytes;
        if (h.kept_bytes && !s->hint_note[0]) {
            /* Off the wire all the same; the source just keeps the memory. */
            g_snprintf(s->hint_note, sizeof(s->hint_note),
                       "%" G_GUINT64_FORMAT " KiB of hinted pages not released: %s",
                       h.kept_bytes >> 10, h.kept_why);
        }
    }
    if (p->chooser) {
        compress_chooser_describe(p->chooser, s->compress_choice,
                                  sizeof(s->compress_choice), s->compress_mix,
                                  sizeof(s->compress_mix));
    }
    if (p->tx) {
        out_multifd_publish(&tx, conn_done, s);
    }
    uint64_t ms = (g_get_monotonic_time() - m->t_start) / 1000;
    s->throughput_mbps = ms ? (tx.bytes_sent + ch_bytes) * 8.0 / ms / 1000.0 : 0;
    g_mutex_unlock(&m->lock);
}

static gpointer encoder_thread(gpointer data)
{
    Precopy *p = data;
    bool zstd = p->params.compress_method != HINTMIG_COMPRESS_NONE &&
                (p->features & WIRE_FEAT_ZSTD);
    PageEncoder *e = page_encoder_new(zstd, p->chooser ? compress_ladder[1]
                                                       : p->params.compress_level);
    EncodeJob *job;
    bool background = false;

    page_encoder_set_digests(e, p->page_digests);     /* NULL without */
    while ((job = g_async_queue_pop(p->enc_q)) != &stop_job) {
        PageCodecStats st = { 0 };
        unsigned option = 0;
        if (!background && __atomic_load_n(&p->pending, __ATOMIC_RELAXED)) {
            hm_thread_role(p->m, HINTMIG_THREAD_BULK);   /* postcopy: requests first */
            background = true;
        }
        if (p->chooser) {
            option = compress_chooser_next(p->chooser);
            if (zstd) {
                page_encoder_set_level(e, compress_ladder[option]);
                if (compress_chooser_decode_due(p->chooser, option)) {
                    page_encoder_measure_decode(e);
                }
            }
        }
        size_t len = page_encode(e, p->ram, job->pfns, job->n, job->round,
                                 job->buf->data + WIRE_HEADER_SIZE, &st);
        wire_header_encode(job->buf->data, WIRE_RAM_BATCH, 0, len);
        job->buf->len = WIRE_HEADER_SIZE + len;
        unsigned conn = uring_tx_send_spread(p->tx, job->buf);
        if (p->chooser) {
            PageEncodeCost cost = page_encoder_cost(e);
            UringTxStats tx = uring_tx_stats(p->tx);
            compress_chooser_record(p->chooser, option, &cost);
            uint64_t now = g_get_monotonic_time() * 1000;
            compress_chooser_link(p->chooser, now, tx.bytes_sent, tx.busy_ns);
            compress_chooser_host(p->chooser, now, compress_host_idle_ns);
        }

        g_mutex_lock(&p->lock);
        p->spread |= conn != 0;
        page_codec_stats_add(&p->codec, &st);
        p->ram_bytes += WIRE_HEADER_SIZE + len;
        if (--p->busy == 0) {
            g_cond_broadcast(&p->idle);
        }
        g_mutex_unlock(&p->lock);
        g_async_queue_push(p->job_pool, job);
    }
    hm_mem_charge(p->m, page_encoder_sizeof(e));
    page_encoder_free(e);
    return NULL;
}

void out_encoders_wait_idle(Precopy *p)
{
    g_mutex_lock(&p->lock);
    while (p->busy) {
        g_cond_wait(&p->idle, &p->lock);
    }
    g_mutex_unlock(&p->lock);
}

/* The reason to give when the stream broke: the destination's, if it sent one. */
void out_stream_error(Precopy *p, GError **errp, const char *what)
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
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED, "%s", peer);
        g_free(peer);
    } else {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO, "%s", what);
    }
}

bool out_check_abort(Precopy *p, GError **errp)
{
    if (hm_cancelled(p->m)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_CANCELLED, "cancelled by the user");
        return false;
    }
    g_mutex_lock(&p->rp_lock);
    bool broken = p->peer_error || p->rp_done;
    g_mutex_unlock(&p->rp_lock);
    if (broken) {
        out_stream_error(p, errp, "connection lost: the destination closed it");
        return false;
    }
    return true;
}

bool out_queue_batch(Precopy *p, const uint64_t *pfns, unsigned n, uint32_t round,
                 GError **errp)
{
    EncodeJob *job = g_async_queue_pop(p->job_pool);
    job->buf = uring_tx_buf_get(p->tx);
    if (!job->buf) {
        g_async_queue_push(p->job_pool, job);
        out_stream_error(p, errp, "connection lost while sending RAM");
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

/* Queues a control message behind everything queued so far. */
bool out_send_msg(Precopy *p, WireType type, uint32_t seq, const void *payload,
                     size_t len, GError **errp)
{
    UringTxBuf *b;
    if (WIRE_HEADER_SIZE + len > MIGRATION_BUF_SIZE) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "%s message of %zu bytes is too large", wire_type_str(type), len);
        return false;
    }
    out_encoders_wait_idle(p);
    if (!out_multifd_sync(p, errp)) {
        return false;
    }
    if (!(b = uring_tx_buf_get(p->tx))) {
        out_stream_error(p, errp, "connection lost");
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

uint32_t out_send_request(Precopy *p, WireType type, const void *payload, size_t len,
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
    return out_send_msg(p, type, seq, payload, len, errp) ? seq : 0;
}

bool out_wait_ack(Precopy *p, unsigned timeout_ms, uint32_t *status, char **msg,
                  bool *closed)
{
    gint64 span = (gint64)timeout_ms * 1000, until = g_get_monotonic_time() + span;
    int unacked = -1;

    g_mutex_lock(&p->rp_lock);
    while (!p->await_acked && !p->rp_done && !p->peer_error) {
        gint64 now = g_get_monotonic_time();
        if (g_cond_wait_until(&p->rp_cond, &p->rp_lock, MIN(until, now + 100000))) {
            continue;
        }
        /* Silence counts from the peer's last acknowledgement: a slow
         * link still taking our data is not a silent peer. */
        int q;
        now = g_get_monotonic_time();
        if (ioctl(p->fd, SIOCOUTQ, &q) == 0) {
            if (q < unacked) {
                until = now + span;
            }
            unacked = q;
        }
        if (now >= until) {
            break;
        }
    }
    bool acked = p->await_acked;
    *status = p->await_status;
    *msg = g_strdup(p->await_msg);
    *closed = p->rp_done || p->peer_error;
    g_mutex_unlock(&p->rp_lock);
    return acked;
}

void out_rp_fail(Precopy *p, char *msg)
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

gpointer out_return_path_thread(gpointer data)
{
    Precopy *p = data;

    for (;;) {
        WireHeader h;
        GBytes *payload = NULL;
        g_autoptr(GError) err = NULL;
        if (!wire_recv(p->fd, &h, &payload, &err)) {
            /* A malformed message is worth reporting; a closed connection
             * is reported by whoever needed it. */
            if (g_error_matches(err, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL)) {
                out_rp_fail(p, g_strdup_printf("return path: %s", err->message));
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
                out_rp_fail(p, g_strdup_printf("destination: %s", text));
            } else {
                out_rp_fail(p, g_strdup("destination sent a malformed error"));
            }
            g_bytes_unref(payload);
            break;
        }
        if (h.type == WIRE_PAGE_REQUEST && p->on_page_request) {
            p->on_page_request(p, d, len);
            g_bytes_unref(payload);
            continue;
        }
        if (h.type != WIRE_ACK || !wire_status_decode(d, len, &code, &text, NULL)) {
            out_rp_fail(p, g_strdup_printf("return path: unexpected %s message",
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
            out_rp_fail(p, g_strdup_printf("return path: ack for request %u, which "
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
            out_rp_fail(p, g_strdup_printf("destination: %s", text ? text : "error"));
            break;
        }
    }
    g_mutex_lock(&p->rp_lock);
    p->rp_done = true;
    g_cond_broadcast(&p->rp_cond);
    g_mutex_unlock(&p->rp_lock);
    return NULL;
}

int out_connect(const char *uri, int fd, WireType type, const void *intro, size_t len,
                GError **errp)
{
    if (fd < 0) {
        fd = socket_connect(uri, 10000, errp);
    }
    if (fd >= 0 && !wire_send(fd, type, 0, intro, len, errp)) {
        close(fd);
        fd = -1;
    }
    return fd;
}

bool out_handshake(Precopy *p, GError **errp)
{
    HintmigHost *host = &p->m->host;
    WireHello hello = {
        .session = (uint64_t)g_random_int() << 32 | g_random_int(),
        /* Verification is offered only when asked for: a destination
         * that accepted it would wait for digests that never come. */
        .features_offered = WIRE_FEAT_ZSTD | WIRE_FEAT_SPARSE |
                            (p->verify ? WIRE_FEAT_VERIFY : 0) |
                            (p->verify && !hintmig_get_caps(p->m).x_verify_full
                             ? WIRE_FEAT_PAGE_DIGESTS : 0),
        .features_required = p->verify ? WIRE_FEAT_VERIFY : 0,
        .page_size = HM_PAGE_SIZE,
        .ram_size = p->ram->size,
        .nvcpus = host->nvcpus,
        .layout = hm_ram_layout_digest(p->ram),
    };
    if (p->params.compress_method == HINTMIG_COMPRESS_ZSTD) {
        hello.features_required |= WIRE_FEAT_ZSTD;   /* auto falls back to raw */
    }
    if (hintmig_get_caps(p->m).postcopy_ram) {
        /* As QEMU: postcopy-ram is set on both sides, or it is an error. */
        hello.features_offered |= WIRE_FEAT_POSTCOPY;
        hello.features_required |= WIRE_FEAT_POSTCOPY;
    }
    if (p->params.multifd_channels > 1 && p->dial_uri) {
        /* Offered, not required: a destination that cannot take more
         * connections gets one. */
        hello.features_offered |= WIRE_FEAT_MULTIFD;
    }
    if (p->hinting) {
        /* Pages left off the wire must be known as such over there. */
        hello.features_offered |= WIRE_FEAT_FREE_PAGE_HINT;
        hello.features_required |= WIRE_FEAT_FREE_PAGE_HINT;
    }
    if (!wire_uuid_parse(host->uuid, hello.uuid)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "the VM's UUID '%s' is not valid", host->uuid);
        return false;
    }

    hm_set_rcvtimeo(p->fd, hm_peer_timeout_ms(p->m, HANDSHAKE_TIMEOUT_MS));
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
    hm_set_rcvtimeo(p->fd, 0);

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
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                        "handshake: expected a hello reply, got %s",
                        wire_type_str(h.type));
        }
        return false;
    }
    if (r.status != WIRE_OK) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED,
                    "destination refused: %s", r.reason);
        return false;
    }
    if (r.features_accepted & ~hello.features_offered) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "handshake: destination accepted features never offered");
        return false;
    }
    p->features = r.features_accepted;
    p->session = hello.session;
    /* What bounds decompression there; a peer may claim anything. */
    p->dst_decoders = MIN(r.decoders, 64u);
    if (p->params.multifd_channels > 1 && !(p->features & WIRE_FEAT_MULTIFD)) {
        g_mutex_lock(&p->m->lock);
        g_snprintf(p->m->stats.multifd_note, sizeof(p->m->stats.multifd_note),
                   "%u asked for; %s", p->params.multifd_channels,
                   !p->dial_uri ? "the socket the host gave has no address to dial"
                   : "the destination takes one connection (it was given a "
                     "connected socket, not an address to listen on)");
        g_mutex_unlock(&p->m->lock);
    }
    return true;
}

/*
 * After the handshake: the further connections it agreed on (postcopy's
 * page channel, the multifd ones, to p->dial_uri), the io_uring sender
 * over every RAM connection, and the return path.
 */
bool out_open_links(Precopy *p, GError **errp)
{
    Hintmig *m = p->m;

    if (p->postcopy) {
        if (!p->dial_uri) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_UNSUPPORTED,
                        "postcopy needs a second connection, and the socket the "
                        "host gave has no address to dial");
            return false;
        }
        if (!postcopy_open_channel(p, p->dial_uri, errp)) {
            return false;
        }
        if (!m->uri) {
            g_mutex_lock(&m->lock);
            m->uri = g_strdup(p->dial_uri);     /* for a recovery */
            g_mutex_unlock(&m->lock);
        }
    }
    if ((p->features & WIRE_FEAT_MULTIFD) && !out_multifd_open(p, p->dial_uri, errp)) {
        return false;
    }

    p->conn_fds[0] = p->fd;
    p->tx = uring_tx_new(p->conn_fds, p->nconns, MIGRATION_TX_BUFS, MIGRATION_BUF_SIZE,
                         errp);
    if (!p->tx) {
        return false;
    }
    hm_mem_charge(m, (uint64_t)MIGRATION_TX_BUFS * MIGRATION_BUF_SIZE);
    g_mutex_lock(&m->lock);
    m->tx = p->tx;
    uring_tx_set_rate_limit(p->tx, m->params.max_bandwidth);
    g_mutex_unlock(&m->lock);
    p->rp = hm_thread_new("return-path", out_return_path_thread, p, errp);
    return p->rp != NULL;
}

bool out_send_device_state(Precopy *p, GError **errp)
{
    HintmigHost *host = &p->m->host;
    g_autoptr(GByteArray) st = g_byte_array_new();
    g_autoptr(GError) err = NULL;

    if (!host->ops->save_state(host->opaque, st, &err)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_HOST, "saving device state: %s",
                    err ? err->message : "the host gave no reason");
        return false;
    }
    if (st->len > WIRE_MAX_STATE) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "device state of %u bytes is over the %u MiB a destination takes",
                    st->len, WIRE_MAX_STATE >> 20);
        return false;
    }
    uint32_t part = 0, off = 0;
    do {
        uint32_t n = MIN(st->len - off, WIRE_STATE_PART);
        uint32_t seq = part++ | (off + n == st->len ? WIRE_STATE_LAST : 0);
        if (!out_send_msg(p, WIRE_DEVICE_STATE, seq, st->data + off, n, errp)) {
            return false;
        }
        off += n;
    } while (off < st->len);
    if (!(p->features & WIRE_FEAT_VERIFY)) {
        return true;
    }
    /* RAM's digests leave the state out: a bit flipped in a vCPU register
     * would otherwise load without a word. */
    uint8_t d[8];
    le_put64(d, ram_digest_bytes(st->data, st->len));
    return out_send_msg(p, WIRE_STATE_DIGEST, 0, d, sizeof(d), errp);
}

/* Hashes the stopped VM's RAM while the last round is on its way. */
gpointer out_digest_task(gpointer data)
{
    DigestTask *t = data;
    gint64 t0 = g_get_monotonic_time();
    ram_digest_chunks(t->ram, RAM_DIGEST_CHUNK_PAGES, 0, t->n, t->out, t->threads,
                      t->exclude);
    t->us = g_get_monotonic_time() - t0;
    return NULL;
}

bool out_send_digests(Precopy *p, const uint64_t *dig, uint64_t n, GError **errp)
{
    g_autofree uint8_t *msg = g_malloc(WIRE_DIGESTS_HEADER + VERIFY_PER_MSG * 8);

    for (uint64_t first = 0; first < n; first += VERIFY_PER_MSG) {
        uint32_t count = MIN((uint64_t)VERIFY_PER_MSG, n - first);
        size_t len = wire_digests_encode(msg, RAM_DIGEST_CHUNK_PAGES, first,
                                         dig + first, count);
        if (!out_send_msg(p, WIRE_VERIFY, 0, msg, len, errp)) {
            return false;
        }
    }
    g_mutex_lock(&p->m->lock);
    p->m->stats.verify_chunks = n;
    g_mutex_unlock(&p->m->lock);
    return true;
}

bool out_send_runs(Precopy *p, WireType type, const unsigned long *set, uint32_t word,
               GError **errp)
{
    g_autoptr(GPtrArray) msgs = wire_runs_encode(set, p->ram->npages, word, word);
    for (guint i = 0; i < msgs->len; i++) {
        gsize len;
        const void *d = g_bytes_get_data(msgs->pdata[i], &len);
        if (!out_send_msg(p, type, 0, d, len, errp)) {
            return false;
        }
    }
    return true;
}

bool out_encoders_start(Precopy *p, GError **errp)
{
    bool zstd = p->features & WIRE_FEAT_ZSTD;

    g_mutex_lock(&p->m->lock);
    HintmigStats *s = &p->m->stats;
    s->compress_mix[0] = 0;
    switch (p->params.compress_method) {
    case HINTMIG_COMPRESS_AUTO:
        p->chooser = compress_chooser_new(zstd, p->params.compress_threads,
                                          g_get_num_processors(),
                                          p->params.max_bandwidth);
        compress_chooser_set_decoders(p->chooser, p->dst_decoders);
        g_strlcpy(s->compress_choice, "auto: measuring", sizeof(s->compress_choice));
        break;
    case HINTMIG_COMPRESS_ZSTD:
        g_snprintf(s->compress_choice, sizeof(s->compress_choice),
                   "zstd %d (compress-method zstd)", p->params.compress_level);
        break;
    case HINTMIG_COMPRESS_NONE:
        g_strlcpy(s->compress_choice, "none (compress-method none)",
                  sizeof(s->compress_choice));
        break;
    }
    g_mutex_unlock(&p->m->lock);

    p->enc = g_new0(GThread *, p->params.compress_threads);
    for (p->nenc = 0; p->nenc < p->params.compress_threads; p->nenc++) {
        p->enc[p->nenc] = hm_thread_new("encoder", encoder_thread, p, errp);
        if (!p->enc[p->nenc]) {
            return false;           /* out_encoders_stop() stops the ones started */
        }
    }
    return true;
}

void out_encoders_stop(Precopy *p)
{
    if (!p->enc) {
        return;
    }
    for (unsigned i = 0; i < p->nenc; i++) {
        g_async_queue_push(p->enc_q, &stop_job);
    }
    for (unsigned i = 0; i < p->nenc; i++) {
        g_thread_join(p->enc[i]);
    }
    g_clear_pointer(&p->enc, g_free);
    if (p->chooser) {
        /* Its last word stays in info migrate. */
        g_mutex_lock(&p->m->lock);
        compress_chooser_describe(p->chooser, p->m->stats.compress_choice,
                                  sizeof(p->m->stats.compress_choice),
                                  p->m->stats.compress_mix,
                                  sizeof(p->m->stats.compress_mix));
        g_mutex_unlock(&p->m->lock);
        g_clear_pointer(&p->chooser, compress_chooser_free);
    }
}
