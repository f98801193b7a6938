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

#include "incoming.h"
#include "migration/bitmap.h"
#include "migration/le.h"
#include "migration/kernel_compat.h"
#include "migration/ram_digest.h"


static RxBuf stop_buf;

/* A free receive buffer: one the decoders gave back, a new one while
 * fewer than RX_BUFS exist, or else the next one given back. */
static RxBuf *rx_buf_get(Incoming *in)
{
    RxBuf *b = g_async_queue_try_pop(in->rx_pool);

    if (b) {
        return b;
    }
    g_mutex_lock(&in->lock);        /* multifd readers take them too */
    if (in->nbufs < RX_BUFS) {
        b = &in->bufs[in->nbufs++];
    }
    g_mutex_unlock(&in->lock);
    if (b) {
        b->data = g_malloc(MIGRATION_BUF_SIZE);
        hm_mem_charge(in->m, MIGRATION_BUF_SIZE);
        return b;
    }
    return g_async_queue_pop(in->rx_pool);
}

bool in_read_batch(Incoming *in, int fd, uint32_t len, GError **errp)
{
    RxBuf *b = rx_buf_get(in);

    b->len = len;
    if (!wire_read_full(fd, b->data, len, errp)) {
        g_async_queue_push(in->rx_pool, b);
        return false;
    }
    g_mutex_lock(&in->lock);
    in->busy++;
    bool failed = in->decode_error;
    g_mutex_unlock(&in->lock);
    g_async_queue_push(in->dec_q, b);
    return !failed || in_drain(in, errp);
}

void in_count_rx(Incoming *in, unsigned conn, uint32_t len)
{
    g_mutex_lock(&in->lock);
    in->rx_bytes += WIRE_HEADER_SIZE + len;
    in->conn_rx[conn] += WIRE_HEADER_SIZE + len;
    g_mutex_unlock(&in->lock);
}

static gpointer decoder_thread(gpointer data)
{
    Incoming *in = data;
    PageDecoder *d = page_decoder_new();
    g_autofree uint8_t *staging = NULL;     /* postcopy's, made on its first batch */
    RxBuf *b;
    bool background = false;

    while ((b = g_async_queue_pop(in->dec_q)) != &stop_buf) {
        PageCodecStats st = { 0 };
        uint32_t round;
        g_autoptr(GError) err = NULL;
        bool ok;
        /* in->postcopy changes only while no batch is queued (drain). */
        if (in->postcopy && !background) {
            hm_thread_role(in->m, HINTMIG_THREAD_BULK);   /* requested pages first */
            background = true;
        }
        if (in->postcopy) {
            if (!staging) {
                staging = g_malloc((size_t)PAGE_BATCH_MAX * HM_PAGE_SIZE);
                hm_mem_charge(in->m, (size_t)PAGE_BATCH_MAX * HM_PAGE_SIZE);
            }
            ok = in_place_batch(in, d, staging, b->data, b->len, &st, &err);
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
    hm_mem_charge(in->m, page_decoder_sizeof(d));
    page_decoder_free(d);
    return NULL;
}

/* Waits until every batch received so far is applied; false if one failed. */
bool in_drain(Incoming *in, GError **errp)
{
    g_mutex_lock(&in->lock);
    while (in->busy) {
        g_cond_wait(&in->idle, &in->lock);
    }
    bool ok = !in->decode_error;
    if (!ok) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID, "%s", in->decode_error);
    }
    g_mutex_unlock(&in->lock);
    return ok;
}

static void in_publish(Incoming *in)
{
    g_mutex_lock(&in->lock);
    PageCodecStats c = in->codec;
    uint64_t rx = in->rx_bytes;
    uint64_t conn_rx[WIRE_MULTIFD_MAX];
    memcpy(conn_rx, in->conn_rx, sizeof(conn_rx));
    g_mutex_unlock(&in->lock);
    g_mutex_lock(&in->m->lock);
    HintmigStats *s = &in->m->stats;
    s->duplicate_pages = c.zero_pages;
    s->normal_pages = c.data_pages;
    s->normal_bytes = c.data_bytes;
    s->compressed_bytes = c.payload_bytes;
    s->wire_bytes_received = rx;
    s->transferred_ram = rx;
    for (unsigned i = 0; i < s->multifd_channels && i < WIRE_MULTIFD_MAX; i++) {
        s->multifd_bytes[i] = conn_rx[i];
    }
    uint64_t ms = (g_get_monotonic_time() - in->m->t_start) / 1000;
    s->throughput_mbps = ms ? rx * 8.0 / ms / 1000.0 : 0;
    g_mutex_unlock(&in->m->lock);
}

/* Tells the source why we give up (best effort), and fails. */
bool in_give_up(Incoming *in, WireRefusal code, GError **errp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_autoptr(GBytes) b = wire_status_encode(code, msg);
    gsize len;
    const void *d = g_bytes_get_data(b, &len);
    g_mutex_lock(&in->send_lock);
    in->gave_up = wire_send(in->fd, WIRE_ERROR, 0, d, len, NULL);
    g_mutex_unlock(&in->send_lock);
    g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED, "%s", msg);
    return false;
}

/*
 * After an ERROR: closing a socket with unread data sends a reset, which
 * can overtake the ERROR and leave the source with "connection lost"
 * instead of the reason.  Say we are done writing and read what is still
 * coming until the source closes (it does once it has the reason), for at
 * most a second.
 */
static void linger_after_error(int fd)
{
    uint8_t sink[16 << 10];
    gint64 until = g_get_monotonic_time() + G_USEC_PER_SEC;

    shutdown(fd, SHUT_WR);
    for (gint64 now; (now = g_get_monotonic_time()) < until;) {
        struct pollfd pfd = { fd, POLLIN, 0 };
        if (poll(&pfd, 1, (int)((until - now) / 1000) + 1) <= 0 ||
            read(fd, sink, sizeof(sink)) <= 0) {
            break;
        }
    }
}

bool in_ack(Incoming *in, uint32_t seq, WireRefusal code, const char *msg,
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
    HintmigHost *host = &in->m->host;
    WireHeader h;
    g_autoptr(GBytes) payload = NULL;
    WireHello hi;
    WireHelloReply r = { .page_size = HM_PAGE_SIZE, .ram_size = in->ram->size,
                         .nvcpus = host->nvcpus, .decoders = in->ndec };

    hm_set_rcvtimeo(in->fd, hm_peer_timeout_ms(in->m, HELLO_TIMEOUT_MS));
    if (!wire_recv(in->fd, &h, &payload, errp)) {
        g_prefix_error(errp, "handshake: ");
        return false;
    }
    hm_set_rcvtimeo(in->fd, 0);
    gsize len;
    const void *d = g_bytes_get_data(payload, &len);
    if (h.type != WIRE_HELLO || !wire_hello_decode(d, len, &hi, NULL)) {
        return in_give_up(in, WIRE_ERR_PROTOCOL, errp,
                       "handshake: expected hello, got %s", wire_type_str(h.type));
    }
    char uuid[37];
    wire_uuid_format(hi.uuid, uuid);
    HintmigCaps caps = hintmig_get_caps(in->m);
    uint64_t supported = WIRE_FEAT_ZSTD | WIRE_FEAT_FREE_PAGE_HINT | WIRE_FEAT_SPARSE;
    if (caps.verify) {
        supported |= WIRE_FEAT_VERIFY;      /* as postcopy: both sides opt in */
        supported |= WIRE_FEAT_PAGE_DIGESTS;   /* the source chooses */
    }
    g_mutex_lock(&in->m->lock);
    bool listening = in->m->listen_fd >= 0;  /* for further connections */
    g_mutex_unlock(&in->m->lock);
    if (caps.postcopy_ram && listening) {
        supported |= WIRE_FEAT_POSTCOPY;    /* as QEMU: both sides opt in */
    }
    if (listening) {
        supported |= WIRE_FEAT_MULTIFD;     /* the source decides how many */
    }
    r.features_accepted = hi.features_offered & supported;
    if (hi.page_size != HM_PAGE_SIZE || hi.ram_size != in->ram->size ||
        hi.nvcpus != host->nvcpus) {
        r.status = WIRE_REFUSE_LAYOUT;
        g_snprintf(r.reason, sizeof(r.reason),
                   "source VM has %" G_GUINT64_FORMAT " MiB RAM, %u vCPUs, %u-byte "
                   "pages; this destination has %" G_GUINT64_FORMAT " MiB, %u vCPUs, "
                   "%u-byte pages", hi.ram_size >> 20, hi.nvcpus, hi.page_size,
                   in->ram->size >> 20, host->nvcpus, HM_PAGE_SIZE);
    } else if (hi.layout != hm_ram_layout_digest(in->ram)) {
        g_autoptr(GString) ours = g_string_new(NULL);
        hm_ram_describe(in->ram, ours);
        r.status = WIRE_REFUSE_LAYOUT;
        g_snprintf(r.reason, sizeof(r.reason),
                   "the source's RAM regions differ in names, sizes or order from "
                   "this destination's: %s", ours->str);
    } else if ((hi.features_required & WIRE_FEAT_POSTCOPY) && caps.postcopy_ram &&
               !listening) {
        r.status = WIRE_REFUSE_FEATURES;
        g_snprintf(r.reason, sizeof(r.reason),
                   "postcopy needs a second connection, and this destination was "
                   "given a connected socket, not an address to listen on");
    } else if (hi.features_required & ~supported) {
        g_autofree char *missing = wire_features_str(hi.features_required & ~supported);
        r.status = WIRE_REFUSE_FEATURES;
        g_snprintf(r.reason, sizeof(r.reason),
                   "source requires features this destination lacks: %s", missing);
    } else if (caps.verify && !(hi.features_offered & WIRE_FEAT_VERIFY)) {
        /* What this side was told to require, it requires. */
        r.status = WIRE_REFUSE_FEATURES;
        g_snprintf(r.reason, sizeof(r.reason),
                   "this destination requires verify and the source has it off "
                   "(set the verify capability the same on both sides)");
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
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED, "refused: %s", r.reason);
        return false;
    }
    in->features = r.features_accepted;
    in->session = hi.session;
    /* The decoders record them. */
    return !(in->features & WIRE_FEAT_PAGE_DIGESTS) || in_page_digests_new(in, errp);
}

/* Fills @len bytes (a multiple of 4) at @p with @pattern: one word, then
 * copies of what is already filled, doubling, so the work is a few
 * memcpy calls instead of a store per word. */
static void fill_pattern(uint8_t *p, size_t len, uint32_t pattern)
{
    size_t done = MIN(len, sizeof(pattern));

    memcpy(p, &pattern, done);
    while (done < len) {
        size_t n = MIN(done, len - done);
        memcpy(p + done, p, n);
        done += n;
    }
}

/*
 * Free pages the source will not send: they must read as zero, or as the
 * guest's poison value, and verification leaves them out until they arrive.
 */
static bool apply_hinted(Incoming *in, const uint8_t *d, size_t len, GError **errp)
{
    uint64_t npages = in->ram->npages, pages;
    uint32_t poison;
    g_autofree unsigned long *set = hm_bitmap_new(npages);
    g_autoptr(GError) err = NULL;

    if (!wire_runs_decode(d, len, npages, set, &poison, &pages, &err)) {
        return in_give_up(in, WIRE_ERR_PROTOCOL, errp, "hinted: %s", err->message);
    }
    if (!in->hinted) {
        in->hinted = hm_bitmap_new(npages);
        hm_mem_charge(in->m, 2 * hm_bitmap_bytes(npages));   /* and @set */
    }
    for (uint64_t pfn = hm_bitmap_next_set(set, npages, 0); pfn < npages;) {
        uint64_t end = hm_bitmap_next_clear(set, npages, pfn);
        /* A run may cross from one region into the next: region by region. */
        for (uint64_t at = pfn, k; at < end; at += k) {
            k = hm_ram_contig(in->ram, at, end - at);
            if (poison) {
                hm_ram_madvise(in->ram, at, k, MADV_POPULATE_WRITE);
                fill_pattern(hm_ram_page(in->ram, at), k << HM_PAGE_SHIFT, poison);
            } else {
                hm_ram_drop(in->ram, at, k);      /* reads as zero again */
            }
        }
        hm_bitmap_set_range(in->hinted, pfn, end - pfn);
        pfn = hm_bitmap_next_set(set, npages, end);
    }
    in->poison = poison;
    g_mutex_lock(&in->m->lock);
    in->m->stats.hinted_pages += pages;
    g_mutex_unlock(&in->m->lock);
    return true;
}

/*
 * Pages the source never touched: they read as zero there and will not be
 * sent unless written.  Whatever this side holds there goes; on a fresh
 * destination there is nothing, and dropping empty ranges costs nothing.
 */
static bool apply_untouched(Incoming *in, const uint8_t *d, size_t len, GError **errp)
{
    uint64_t npages = in->ram->npages, pages;
    uint32_t word;
    g_autoptr(GError) err = NULL;

    if (!wire_runs_decode(d, len, npages, NULL, &word, &pages, &err)) {
        return in_give_up(in, WIRE_ERR_PROTOCOL, errp, "untouched: %s", err->message);
    }
    /* Their page digests are still 0 (a zero page): this comes before any
     * batch. */
    for (size_t off = WIRE_RUNS_HEADER; off < len; off += 16) {
        uint64_t pfn = le_get64(d + off), n = le_get64(d + off + 8);
        for (uint64_t at = pfn, k; at < pfn + n; at += k) {
            k = hm_ram_contig(in->ram, at, pfn + n - at);
            hm_ram_drop(in->ram, at, k);
        }
    }
    g_mutex_lock(&in->m->lock);
    in->m->stats.untouched_pages += pages;
    g_mutex_unlock(&in->m->lock);
    return true;
}

static bool complete(Incoming *in, uint32_t seq, GError **errp)
{
    HintmigHost *host = &in->m->host;
    g_autoptr(GError) err = NULL;

    if (!in_drain(in, &err)) {
        in_ack(in, seq, WIRE_ERR_DATA, err->message, NULL);
        g_propagate_error(errp, g_steal_pointer(&err));
        return false;
    }
    if (!in_check_ram(in, seq, errp)) {
        return false;
    }
    if (!in->state_whole) {
        in_ack(in, seq, WIRE_ERR_STATE, "no device state received", NULL);
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL, "no device state received");
        return false;
    }
    if (!in_check_state(in, seq, errp)) {
        return false;
    }
    if (!host->ops->load_state(host->opaque, in->state->data, in->state->len, &err)) {
        g_prefix_error(&err, "loading device state: ");
        in_ack(in, seq, WIRE_ERR_STATE, err->message, NULL);
        g_propagate_error(errp, g_steal_pointer(&err));
        return false;
    }
    if (!in_ack(in, seq, WIRE_OK, NULL, errp)) {
        return false;
    }
    /* Run the guest only once the source has let go of it. */
    WireHeader h;
    g_autoptr(GBytes) payload = NULL;
    hm_set_rcvtimeo(in->fd, hm_peer_timeout_ms(in->m, COMMIT_TIMEOUT_MS));
    if (!wire_recv(in->fd, &h, &payload, errp)) {
        g_prefix_error(errp, "waiting for the source to commit: ");
        return false;
    }
    if (h.type != WIRE_COMMIT) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "expected commit, got %s", wire_type_str(h.type));
        return false;
    }
    return true;
}

/* ---- postcopy ---- */

static bool incoming_run(Incoming *in, bool resumed, bool *final, GError **errp)
{
    if (!resumed) {
        if (!hello(in, errp)) {
            return false;
        }
        if ((in->features & (WIRE_FEAT_POSTCOPY | WIRE_FEAT_MULTIFD)) &&
            !in_accept_connections(in, errp)) {
            return false;
        }
        if (!(in->features & (WIRE_FEAT_POSTCOPY | WIRE_FEAT_MULTIFD))) {
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
            return in_give_up(in, WIRE_ERR_PROTOCOL, errp, "%s", bad->message);
        }
        in_count_rx(in, 0, h.len);

        if (h.type == WIRE_RAM_BATCH) {
            if (h.len > MIGRATION_BUF_SIZE) {
                return in_give_up(in, WIRE_ERR_PROTOCOL, errp,
                               "RAM batch of %u bytes is too large", h.len);
            }
            g_autoptr(GError) err = NULL;
            if (!in_read_batch(in, in->fd, h.len, &err)) {
                if (err->code == HINTMIG_ERROR_IO) {
                    g_propagate_error(errp, g_steal_pointer(&err));
                    return false;
                }
                return in_give_up(in, WIRE_ERR_DATA, errp, "%s", err->message);
            }
            continue;
        }
        g_autofree uint8_t *payload = g_malloc(h.len ? h.len : 1);
        if (h.len && !wire_read_full(in->fd, payload, h.len, errp)) {
            return false;
        }
        switch (h.type) {
        case WIRE_MULTIFD_SYNC: {
            g_autoptr(GError) err = NULL;
            if (!(in->features & WIRE_FEAT_MULTIFD)) {
                return in_give_up(in, WIRE_ERR_PROTOCOL, errp,
                                  "multifd sync without the multifd feature");
            }
            if (!in_multifd_sync(in, 0, payload, h.len, &err)) {
                if (err->code == HINTMIG_ERROR_IO) {
                    g_propagate_error(errp, g_steal_pointer(&err));
                    return false;
                }
                return in_give_up(in, WIRE_ERR_PROTOCOL, errp, "%s", err->message);
            }
            break;
        }
        case WIRE_ROUND_END: {
            g_autoptr(GError) err = NULL;
            if (!in_drain(in, &err)) {
                return in_give_up(in, WIRE_ERR_DATA, errp, "%s", err->message);
            }
            in_publish(in);
            g_mutex_lock(&in->m->lock);
            in->m->stats.rounds++;
            g_mutex_unlock(&in->m->lock);
            g_autoptr(GError) lost = NULL;
            if (!in_ack(in, h.seq, WIRE_OK, NULL, &lost)) {
                /* With postcopy the source may have switched without this
                 * ack, and its POSTCOPY_RUN may be in our socket already:
                 * read on, and let the stream's end decide (a guest that
                 * runs here then pauses; one that never got RUN fails). */
                if (!in->pc) {
                    g_propagate_error(errp, g_steal_pointer(&lost));
                    return false;
                }
            }
            break;
        }
        case WIRE_DEVICE_STATE: {
            /* Parts in order: seq is the part's index, the last one has
             * WIRE_STATE_LAST set; part 0 starts the state afresh. */
            uint32_t part = h.seq & ~WIRE_STATE_LAST;
            if (!part) {
                g_clear_pointer(&in->state, g_byte_array_unref);
                in->state = g_byte_array_new();
                in->state_parts = 0;
                in->state_whole = false;
                in->state_digest_seen = false;
            }
            if (!in->state || part != in->state_parts || in->state_whole ||
                in->state->len + (uint64_t)h.len > WIRE_MAX_STATE) {
                return in_give_up(in, WIRE_ERR_PROTOCOL, errp,
                               "device state part %u out of order or over %u MiB",
                               part, WIRE_MAX_STATE >> 20);
            }
            g_byte_array_append(in->state, payload, h.len);
            in->state_parts++;
            in->state_whole = h.seq & WIRE_STATE_LAST;
            break;
        }
        case WIRE_HINTED:
            if (!(in->features & WIRE_FEAT_FREE_PAGE_HINT)) {
                return in_give_up(in, WIRE_ERR_PROTOCOL, errp,
                               "hinted message without the free-page-hint feature");
            }
            {
                /* Batches already queued may still write these pages. */
                g_autoptr(GError) err = NULL;
                if (!in_drain(in, &err)) {
                    return in_give_up(in, WIRE_ERR_DATA, errp, "%s", err->message);
                }
            }
            if (!apply_hinted(in, payload, h.len, errp)) {
                return false;
            }
            break;
        case WIRE_UNTOUCHED:
            if (!(in->features & WIRE_FEAT_SPARSE) || in->postcopy) {
                return in_give_up(in, WIRE_ERR_PROTOCOL, errp,
                                  "unexpected untouched message");
            }
            {
                /* Batches already queued may still write these pages. */
                g_autoptr(GError) err = NULL;
                if (!in_drain(in, &err)) {
                    return in_give_up(in, WIRE_ERR_DATA, errp, "%s", err->message);
                }
            }
            if (!apply_untouched(in, payload, h.len, errp)) {
                return false;
            }
            break;
        case WIRE_STATE_DIGEST:
            if (!(in->features & WIRE_FEAT_VERIFY) || !in->state_whole ||
                in->state_digest_seen || h.len != 8) {
                return in_give_up(in, WIRE_ERR_PROTOCOL, errp,
                                  "unexpected %u-byte state-digest message", h.len);
            }
            in->state_digest = le_get64(payload);
            in->state_digest_seen = true;
            break;
        case WIRE_VERIFY:
            if (!(in->features & WIRE_FEAT_VERIFY)) {
                return in_give_up(in, WIRE_ERR_PROTOCOL, errp,
                               "verify message without the verify feature");
            }
            if (!in_store_digests(in, payload, h.len, errp)) {
                return false;
            }
            break;
        case WIRE_PENDING:
        case WIRE_POSTCOPY_RUN:
            if (!in->pc || in->postcopy) {
                return in_give_up(in, WIRE_ERR_PROTOCOL, errp, "unexpected %s message",
                               wire_type_str(h.type));
            }
            if (h.type == WIRE_PENDING ? !in_apply_pending(in, payload, h.len, errp)
                                       : !in_postcopy_run(in, h.seq, errp)) {
                return false;
            }
            break;
        case WIRE_COMPLETE:
            if (in->postcopy) {
                return in_postcopy_complete(in, h.seq, final, errp);
            }
            *final = true;
            return complete(in, h.seq, errp);
        default:
            return in_give_up(in, WIRE_ERR_PROTOCOL, errp, "unexpected %s message",
                           wire_type_str(h.type));
        }
    }
}

gpointer incoming_thread(gpointer data)
{
    Hintmig *m = data;
    Incoming in = {
        .m = m,
        .ram = m->ram,
        .fd = m->in_fd,
        .ndec = hintmig_get_params(m).compress_threads,
        .dec_q = g_async_queue_new(),
        .rx_pool = g_async_queue_new(),
        .ch_fd = -1,
        .link_up = true,
        .nconns = 1,
    };
    g_autoptr(GError) err = NULL;

    for (unsigned c = 0; c < WIRE_MULTIFD_MAX; c++) {
        in.conn_fds[c] = -1;
    }
    g_cond_init(&in.sync_cond);
    in.nchunks = ram_digest_nchunks(in.ram, RAM_DIGEST_CHUNK_PAGES);
    in.src_digests = g_new0(uint64_t, in.nchunks);
    hm_mem_charge(m, in.nchunks * 8);
    g_mutex_init(&in.lock);
    g_cond_init(&in.idle);
    g_mutex_init(&in.send_lock);
    in.dec = g_new0(GThread *, in.ndec);
    unsigned started = 0;
    while (started < in.ndec &&
           (in.dec[started] = hm_thread_new("decoder", decoder_thread, &in, &err))) {
        started++;
    }
    in.ndec = started;              /* the ones to stop and join */

    bool final = false, resumed = false, ok = false;
    /* In postcopy the guest already runs here: a broken link pauses, it
     * does not fail, until every page is in. */
    while (!err && !(ok = incoming_run(&in, resumed, &final, &err)) && in.postcopy &&
           !final) {
        /* A dead source and a cut link look alike from here: say what
         * both mean for the guest. */
        g_autofree char *why = g_strdup_printf(
            "link to the source lost (%s); the guest cannot continue without the "
            "pages still at the source: 'migrate_recover URI' to resume, or 'quit' "
            "if the source is gone", err->message);
        g_clear_error(&err);
        if (!in_postcopy_recover(&in, why)) {
            g_set_error(&err, HINTMIG_ERROR, HINTMIG_ERROR_CANCELLED,
                        "postcopy abandoned while paused");
            break;
        }
        resumed = true;
    }
    in_channel_stop(&in);
    in_multifd_stop(&in);
    if (err && in.conn_error) {
        /* The main connection was broken because of a multifd one. */
        g_clear_error(&err);
        g_set_error(&err, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL, "%s", in.conn_error);
    }

    for (unsigned i = 0; i < in.ndec; i++) {
        g_async_queue_push(in.dec_q, &stop_buf);
    }
    for (unsigned i = 0; i < in.ndec; i++) {
        g_thread_join(in.dec[i]);
    }
    in_publish(&in);
    g_mutex_lock(&m->lock);
    m->stats.total_time_ms = (g_get_monotonic_time() - m->t_start) / 1000;
    m->in_fd = -1;
    g_mutex_unlock(&m->lock);
    if (in.fd >= 0) {
        if (in.gave_up) {
            linger_after_error(in.fd);
        }
        shutdown(in.fd, SHUT_RDWR);
        close(in.fd);
    }
    g_mutex_lock(&m->lock);
    if (m->listen_fd >= 0 && !m->listen_src) {
        close(m->listen_fd);          /* the page channel never came */
        m->listen_fd = -1;
    }
    if (in.pc && m->in_pc) {
        hm_stats_from_uffd(&m->stats, in.pc);
    }
    m->in_pc = NULL;
    g_mutex_unlock(&m->lock);
    uffd_postcopy_free(in.pc);
    if (ok) {
        hm_set_status(m, HINTMIG_STATUS_COMPLETED, NULL);
        if (!in.postcopy && m->host.ops->incoming_done) {
            m->host.ops->incoming_done(m->host.opaque);   /* postcopy: at RUN */
        }
    } else {
        /* A source that switched may wait in postcopy-paused for a guest
         * that never ran here: migrate_recover tells it so. */
        g_mutex_lock(&m->lock);
        if ((in.features & WIRE_FEAT_POSTCOPY) && !in.postcopy) {
            m->answer_session = in.session;
            m->answer_code = WIRE_ERR_NEVER_RAN;
        }
        g_mutex_unlock(&m->lock);
        hm_set_status(m, HINTMIG_STATUS_FAILED, "%s", err->message);
    }

    for (unsigned i = 0; i < in.nbufs; i++) {
        g_free(in.bufs[i].data);
    }
    g_free(in.dec);
    g_free(in.src_digests);
    g_free(in.hinted);
    ram_digest_table_free(in.digests, in.ram->npages);
    g_free(in.decode_error);
    g_free(in.conn_error);
    g_cond_clear(&in.sync_cond);
    g_mutex_clear(&in.send_lock);
    if (in.state) {
        g_byte_array_unref(in.state);
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
