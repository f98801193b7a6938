/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The source's side of postcopy.
 *
 * At the switch the VM stops here for good.  The destination gets the
 * pages still owed (PENDING), the device state and POSTCOPY_RUN; once it
 * acks RUN the guest runs there, and from then on this side only serves
 * RAM, which no longer changes:
 *
 *  - the background push claims owed pages in address order and streams
 *    them through the encoders (zstd) and the io_uring sender, as precopy
 *    does;
 *  - a page the destination asks for (a vCPU waits on it) is sent at once
 *    by the return-path thread on the page channel, a second connection,
 *    so that it never queues behind megabytes of background batches.  It
 *    goes raw: on a vCPU's critical path compressing 4 KiB costs more than
 *    sending it.  If the push had claimed it already, it is sent twice and
 *    the destination drops the second copy.
 *
 * If the link breaks the migration pauses (postcopy-paused): the VM stays
 * stopped and RAM stays here until "migrate -r URI" reconnects, when the
 * destination says which pages it still lacks and the push starts over
 * with those.  Cancelling is refused: the guest runs over there.
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "outgoing.h"
#include "migration/bitmap.h"
#include "migration/ram_digest.h"
#include "migration/wire.h"

#define RUN_TIMEOUT_MS 60000
#define COMPLETE_ACK_TIMEOUT_MS 120000
#define MISSING_TIMEOUT_MS 30000   /* for the destination's list after a recovery */
/*
 * With postcopy-yield, while vCPUs wait on pages, the push yields the
 * link: its packets queue ahead of a requested page, on the link and in
 * the destination's network stack (measured over 10 Gbit/s: remote fault
 * p99 3.4x a bare exchange with the push at full speed, 1.3x yielding).
 * For this long after each request the push is paced at a 32nd of the
 * link's rate.  It costs the push its speed while the guest faults: a
 * guest that faults all the time takes several times longer to finish.
 */
#define PUSH_YIELD_US 20000
#define PUSH_YIELD_SHARE 32
#define PUSH_YIELD_MIN (8u << 20)

/* Connects a postcopy connection (@type: PAGE_CHANNEL or RESUME). */
static int connect_as(const char *uri, int fd, WireType type, uint64_t session,
                      GError **errp)
{
    uint8_t s[8];

    wire_session_encode(s, session);
    return out_connect(uri, fd, type, s, sizeof(s), errp);
}

static void serve_request(Precopy *p, const uint8_t *d, size_t len);

bool postcopy_open_channel(Precopy *p, const char *uri, GError **errp)
{
    p->ch_fd = connect_as(uri, -1, WIRE_PAGE_CHANNEL, p->session, errp);
    if (p->ch_fd < 0) {
        g_prefix_error(errp, "postcopy page channel: ");
        return false;
    }
    hm_socket_peer_timeout(p->m, p->ch_fd);
    p->on_page_request = serve_request;
    if (!p->urgent_enc) {
        p->urgent_enc = page_encoder_new(false, 0);
        p->urgent_buf = g_malloc(WIRE_HEADER_SIZE + page_batch_max_size(PAGE_BATCH_MAX));
        hm_mem_charge(p->m, WIRE_HEADER_SIZE + page_batch_max_size(PAGE_BATCH_MAX));
    }
    return true;
}

static bool claim(Precopy *p, uint64_t pfn)
{
    unsigned long bit = 1UL << (pfn % HM_BITS_PER_LONG);
    return __atomic_fetch_and(&p->pending[pfn / HM_BITS_PER_LONG], ~bit,
                              __ATOMIC_RELAXED) & bit;
}

static bool send_all(int fd, const uint8_t *b, size_t len)
{
    while (len) {
        ssize_t n = send(fd, b, len, MSG_NOSIGNAL);
        if (n <= 0) {
            return false;
        }
        b += n;
        len -= n;
    }
    return true;
}

/* The return path got a page request: send those pages now. */
static void serve_request(Precopy *p, const uint8_t *d, size_t len)
{
    uint32_t count;
    g_autoptr(GError) err = NULL;

    __atomic_store_n(&p->last_request_us, g_get_monotonic_time(), __ATOMIC_RELAXED);
    if (!p->rp_urgent) {
        /* This thread now stands between a waiting vCPU and its page. */
        hm_thread_role(p->m, HINTMIG_THREAD_URGENT);
        p->rp_urgent = true;
    }
    if (!p->pending) {
        out_rp_fail(p, g_strdup("return path: unexpected page request"));
        return;
    }
    g_autofree uint64_t *all = wire_page_request_decode(d, len, p->ram->npages, &count,
                                                        &err);
    if (!all) {
        out_rp_fail(p, g_strdup_printf("return path: %s", err->message));
        return;
    }
    for (uint32_t first = 0; first < count; first += PAGE_BATCH_MAX) {
        const uint64_t *pfns = all + first;
        unsigned n = MIN((uint32_t)PAGE_BATCH_MAX, count - first);
        for (unsigned i = 0; i < n; i++) {
            claim(p, pfns[i]);        /* the push need not send it too */
        }
        PageCodecStats st = { 0 };
        size_t blen = page_encode(p->urgent_enc, p->ram, pfns, n, 0,
                                  p->urgent_buf + WIRE_HEADER_SIZE, &st);
        wire_header_encode(p->urgent_buf, WIRE_RAM_BATCH, 0, blen);
        g_mutex_lock(&p->ch_lock);
        bool ok = p->ch_fd >= 0 &&
                  send_all(p->ch_fd, p->urgent_buf, WIRE_HEADER_SIZE + blen);
        g_mutex_unlock(&p->ch_lock);
        if (!ok) {
            /* The requests come again after a recovery. */
            shutdown(p->fd, SHUT_RDWR);
            return;
        }
        g_mutex_lock(&p->lock);
        page_codec_stats_add(&p->codec, &st);
        p->ram_bytes += WIRE_HEADER_SIZE + blen;
        p->ch_bytes += WIRE_HEADER_SIZE + blen;
        p->requests += n;
        p->urgent_pages += n;
        g_mutex_unlock(&p->lock);
    }
}

/* Paces the push down while page requests come (PUSH_YIELD_US), and back
 * to max-bandwidth once they stop, or once @pushing is over. */
static void push_pace(Precopy *p, bool pushing)
{
    gint64 last = __atomic_load_n(&p->last_request_us, __ATOMIC_RELAXED);
    bool yield = pushing && p->yield_on && last &&
                 g_get_monotonic_time() - last < PUSH_YIELD_US;

    if (yield == p->push_yielding) {
        return;
    }
    p->push_yielding = yield;
    uint64_t cap = hintmig_get_params(p->m).max_bandwidth;
    if (yield) {
        UringTxStats st = uring_tx_stats(p->tx);
        double link = st.busy_ns ? st.bytes_sent * 1e9 / st.busy_ns : 0;
        uint64_t slow = MAX((uint64_t)(link / PUSH_YIELD_SHARE), (uint64_t)PUSH_YIELD_MIN);
        cap = cap ? MIN(cap, slow) : slow;
        p->push_yields++;
    }
    uring_tx_set_rate_limit(p->tx, cap);
}

/*
 * Streams every page still owed, then the digests and COMPLETE.  Returns
 * true once the destination confirmed; false with *@fatal when it refused
 * (verification), false alone when the link broke.
 */
static bool push(Precopy *p, DigestTask *dt, GThread **hasher, bool *fatal,
                 GError **errp)
{
    uint64_t npages = p->ram->npages, batches = 0;
    uint64_t pfns[PAGE_BATCH_MAX];

    for (uint64_t cursor = 0;;) {
        unsigned n = 0;
        while (n < PAGE_BATCH_MAX &&
               (cursor = hm_bitmap_next_set(p->pending, npages, cursor)) < npages) {
            if (claim(p, cursor)) {
                pfns[n++] = cursor;
            }
            cursor++;
        }
        if (!n) {
            break;
        }
        push_pace(p, true);
        if (!out_queue_batch(p, pfns, n, 0, errp)) {
            return false;
        }
        if (++batches % 64 == 0) {
            out_publish(p);
            if (!out_check_abort(p, errp)) {
                return false;
            }
        }
    }
    push_pace(p, false);
    out_encoders_wait_idle(p);
    if (*hasher) {
        g_thread_join(*hasher);
        *hasher = NULL;
        g_mutex_lock(&p->m->lock);
        p->m->stats.verify_source_ms = dt->us / 1000;
        g_mutex_unlock(&p->m->lock);
    }
    if (p->verify && !out_send_digests(p, dt->out, dt->n, errp)) {
        return false;
    }
    if (!out_send_request(p, WIRE_COMPLETE, NULL, 0, true, errp) ||
        !uring_tx_wait_idle(p->tx, NULL)) {
        if (errp && !*errp) {
            out_stream_error(p, errp, "connection lost at the end of the stream");
        }
        return false;
    }
    out_publish(p);
    uint32_t status;
    g_autofree char *msg = NULL;
    bool closed;
    if (!out_wait_ack(p, hm_peer_timeout_ms(p->m, COMPLETE_ACK_TIMEOUT_MS), &status, &msg, &closed)) {
        out_stream_error(p, errp, "no confirmation from the destination");
        return false;
    }
    if (status != WIRE_OK) {
        *fatal = true;
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED, "destination: %s",
                    msg ? msg : "failed");
        return false;
    }
    return true;
}

static void close_sockets(Precopy *p)
{
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
    g_mutex_lock(&p->ch_lock);
    if (p->ch_fd >= 0) {
        close(p->ch_fd);
        p->ch_fd = -1;
    }
    g_mutex_unlock(&p->ch_lock);
}

/* Drops the broken link: sender, return path, both sockets. */
static void drop_link(Precopy *p)
{
    Hintmig *m = p->m;

    shutdown(p->fd, SHUT_RDWR);
    g_mutex_lock(&p->ch_lock);
    if (p->ch_fd >= 0) {
        shutdown(p->ch_fd, SHUT_RDWR);
    }
    g_mutex_unlock(&p->ch_lock);
    out_multifd_shutdown(p);
    out_encoders_wait_idle(p);
    g_mutex_lock(&m->lock);
    m->tx = NULL;
    m->fd = -1;
    g_mutex_unlock(&m->lock);
    out_publish(p);
    g_mutex_lock(&p->lock);
    UringTxStats tx = uring_tx_stats(p->tx);
    p->tx_bytes_done += tx.bytes_sent;   /* the next tx counts from 0 */
    for (unsigned c = 0; c < tx.nconns; c++) {
        p->conn_bytes_done[c] += tx.conn_bytes[c];
    }
    g_mutex_unlock(&p->lock);
    uring_tx_free(p->tx);
    p->tx = NULL;
    g_thread_join(p->rp);
    p->rp = NULL;
    close_sockets(p);
    out_multifd_close(p);          /* a recovery opens them again */
}

/* "migrate -r": new connections, and the pages the destination still lacks. */
static bool reconnect(Precopy *p, const char *uri, int given_fd, GError **errp)
{
    Hintmig *m = p->m;
    uint64_t npages = p->ram->npages, total = 0;

    int fd = connect_as(uri, given_fd, WIRE_RESUME, p->session, errp);
    if (fd < 0) {
        return false;
    }
    p->fd = fd;
    hm_socket_peer_timeout(m, fd);
    if (!postcopy_open_channel(p, uri, errp)) {
        goto fail;
    }
    hm_set_rcvtimeo(fd, hm_peer_timeout_ms(m, MISSING_TIMEOUT_MS));
    hm_bitmap_zero(p->pending, npages);
    for (;;) {
        WireHeader h;
        g_autoptr(GBytes) payload = NULL;
        uint32_t last;
        uint64_t pages;
        if (!wire_recv(fd, &h, &payload, errp)) {
            g_prefix_error(errp, "recovery: ");
            goto fail;
        }
        gsize len;
        const void *d = g_bytes_get_data(payload, &len);
        if (h.type == WIRE_ERROR) {
            uint32_t code;
            g_autofree char *text = NULL;
            if (wire_status_decode(d, len, &code, &text, NULL)) {
                p->dest_never_ran = code == WIRE_ERR_NEVER_RAN;
                p->dest_done = code == WIRE_ERR_DONE;
            }
            wire_set_peer_error(d, len, "destination refused the recovery", errp);
            goto fail;
        }
        if (h.type != WIRE_MISSING ||
            !wire_runs_decode(d, len, npages, p->pending, &last, &pages, errp)) {
            g_prefix_error(errp, "recovery: ");
            if (errp && !*errp) {
                g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                            "recovery: expected the missing pages, got %s",
                            wire_type_str(h.type));
            }
            goto fail;
        }
        total += pages;
        if (last) {
            break;
        }
    }
    hm_set_rcvtimeo(fd, 0);

    /* The further connections, as many as before; their syncs start over. */
    if ((p->features & WIRE_FEAT_MULTIFD) && !out_multifd_open(p, uri, errp)) {
        g_prefix_error(errp, "recovery: ");
        goto fail;
    }
    p->conn_fds[0] = fd;
    p->sync_epoch = 0;
    g_mutex_lock(&p->lock);
    p->spread = false;
    g_mutex_unlock(&p->lock);
    p->tx = uring_tx_new(p->conn_fds, p->nconns, MIGRATION_TX_BUFS, MIGRATION_BUF_SIZE,
                         errp);
    if (!p->tx) {
        goto fail;
    }
    g_mutex_lock(&p->rp_lock);
    p->rp_done = false;
    g_clear_pointer(&p->peer_error, g_free);
    g_hash_table_remove_all(p->pending_acks);
    g_mutex_unlock(&p->rp_lock);
    g_mutex_lock(&m->lock);
    m->fd = fd;
    m->tx = p->tx;
    uring_tx_set_rate_limit(p->tx, m->params.max_bandwidth);
    p->push_yielding = false;
    m->stats.postcopy_remaining = total;
    g_mutex_unlock(&m->lock);
    p->rp = hm_thread_new("return-path", out_return_path_thread, p, errp);
    if (!p->rp) {
        goto fail;
    }
    return true;

fail:
    if (p->tx) {                   /* made, but no return path to go with it */
        g_mutex_lock(&m->lock);
        m->tx = NULL;
        m->fd = -1;
        g_mutex_unlock(&m->lock);
        uring_tx_free(p->tx);
        p->tx = NULL;
    }
    close_sockets(p);
    out_multifd_close(p);
    return false;
}

/* Waits for "migrate -r": the URI to dial, and in *@fd the host's socket or -1. */
static char *wait_for_resume(Precopy *p, const char *why, int *fd)
{
    Hintmig *m = p->m;

    g_mutex_lock(&m->lock);
    hm_set_status_locked(m, HINTMIG_STATUS_POSTCOPY_PAUSED);
    g_free(m->stats.error);
    m->stats.error = g_strdup(why);
    while (!m->resume_uri && !m->cancel) {
        g_cond_wait(&m->state_cond, &m->lock);
    }
    char *uri = g_steal_pointer(&m->resume_uri);
    *fd = m->resume_fd;
    m->resume_fd = -1;
    if (uri) {
        hm_set_status_locked(m, HINTMIG_STATUS_POSTCOPY_RECOVER);
    }
    g_mutex_unlock(&m->lock);
    return uri;
}

bool postcopy_run(Precopy *p, GError **errp)
{
    Hintmig *m = p->m;
    uint64_t npages = p->ram->npages;

    /* Batches still queued from precopy go out while the guest runs: what
     * it writes meanwhile is caught by the sync after the stop. */
    out_encoders_wait_idle(p);
    gint64 t_down;
    if (!out_stop_and_sync(p, &t_down, errp)) {
        return false;
    }
    p->pending = hm_bitmap_new(npages);
    hm_mem_charge(m, hm_bitmap_bytes(npages));
    for (uint64_t pfn = hm_bitmap_next_set(p->dirty, npages, 0); pfn < npages;
         pfn = hm_bitmap_next_set(p->dirty, npages, pfn + 1)) {
        if (!p->hints || !hint_filter_skip(p->hints, pfn)) {
            hm_bitmap_set_bit(p->pending, pfn);
        }
    }
    uint64_t owed = hm_bitmap_count(p->pending, npages);
    g_mutex_lock(&m->lock);
    m->stats.postcopy = true;
    m->stats.postcopy_remaining = owed;
    m->stats.ram_remaining = owed * HM_PAGE_SIZE;
    g_mutex_unlock(&m->lock);

    if (!out_send_runs(p, WIRE_PENDING, p->pending, 0, errp) ||
        !out_send_device_state(p, errp)) {
        return false;
    }
    if (!hm_commit(m)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_CANCELLED, "cancelled by the user");
        return false;
    }
    g_mutex_lock(&m->lock);
    m->postcopy_switched = true;
    g_mutex_unlock(&m->lock);
    uint32_t status = 0;
    g_autofree char *msg = NULL;
    bool closed;
    bool acked = out_send_request(p, WIRE_POSTCOPY_RUN, NULL, 0, true, errp) &&
                 out_wait_ack(p, hm_peer_timeout_ms(m, RUN_TIMEOUT_MS), &status, &msg, &closed);
    g_mutex_lock(&p->rp_lock);
    if (!acked && p->peer_error) {
        /* An error instead of the ack: the destination gave up before
         * starting the guest (it reports failures after that as pauses). */
        status = WIRE_ERR_STATE;
        g_free(msg);
        msg = g_strdup(p->peer_error);
        acked = true;
    }
    g_mutex_unlock(&p->rp_lock);
    if (acked && status != WIRE_OK) {
        /* The destination never ran the guest: it runs here again. */
        g_mutex_lock(&m->lock);
        m->postcopy_switched = false;
        g_mutex_unlock(&m->lock);
        g_clear_error(errp);
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED, "%s%s",
                    msg && g_str_has_prefix(msg, "destination") ? "" : "destination: ",
                    msg ? msg : "refused to run the guest");
        return false;
    }
    /* Whatever happens now, the guest may be running over there. */
    p->vm_stopped = false;
    g_clear_error(errp);
    if (acked) {
        g_mutex_lock(&m->lock);
        m->stats.downtime_ms = (g_get_monotonic_time() - t_down) / 1000;
        hm_set_status_locked(m, HINTMIG_STATUS_POSTCOPY_ACTIVE);
        g_mutex_unlock(&m->lock);
    }

    /* RAM is frozen from here: hash it while the push runs. */
    DigestTask dt = { p->ram, ram_digest_nchunks(p->ram, RAM_DIGEST_CHUNK_PAGES),
                      .threads = 1,
                      .exclude = p->hints ? hint_filter_set(p->hints) : NULL };
    g_autofree uint64_t *digests = dt.out = g_new(uint64_t, dt.n);
    if (p->verify) {
        hm_mem_charge(m, dt.n * 8 + hm_bitmap_bytes(npages));
    }
    GThread *hasher = p->verify ? hm_thread_or_inline("digest", out_digest_task, &dt)
                                : NULL;

    bool ok = false;
    g_autoptr(GError) err = NULL;
    g_autofree char *why = NULL;
    if (!acked) {
        why = g_strdup("link lost before the destination confirmed the switch");
    }
    for (;;) {
        bool fatal = false;
        if (!why) {
            ok = push(p, &dt, &hasher, &fatal, &err);
            if (ok || fatal) {
                break;
            }
            why = g_strdup_printf("link to the destination lost: %s",
                                  err ? err->message : "connection closed");
            g_clear_error(&err);
        }
        drop_link(p);
        for (;;) {
            int fd;
            g_autofree char *uri = wait_for_resume(p, why, &fd);
            if (!uri) {
                g_set_error(&err, HINTMIG_ERROR, HINTMIG_ERROR_CANCELLED,
                            "postcopy abandoned while paused (%s)", why);
                goto out;
            }
            g_clear_pointer(&why, g_free);
            if (reconnect(p, uri, fd, &err)) {
                break;
            }
            if (p->dest_done) {
                /* COMPLETE's ack was lost: the destination has every page
                 * and verified them. */
                g_clear_error(&err);
                g_mutex_lock(&m->lock);
                g_clear_pointer(&m->stats.error, g_free);   /* was the pause's */
                g_mutex_unlock(&m->lock);
                ok = true;
                goto out;
            }
            if (p->dest_never_ran) {
                /* The link broke before RUN's ack, and the destination says
                 * it failed without running the guest: ours is the only
                 * one, and it runs here again. */
                g_mutex_lock(&m->lock);
                m->postcopy_switched = false;
                g_clear_pointer(&m->stats.error, g_free);   /* was the pause's */
                g_mutex_unlock(&m->lock);
                p->vm_stopped = true;
                g_autofree char *said = g_strdup(err->message);
                g_clear_error(&err);
                g_set_error(&err, HINTMIG_ERROR, HINTMIG_ERROR_FAILED,
                            "the destination never ran the guest, so it runs "
                            "here again (%s)", said);
                goto out;
            }
            why = g_strdup_printf("recovery failed: %s", err->message);
            g_clear_error(&err);
        }
        g_mutex_lock(&m->lock);
        hm_set_status_locked(m, HINTMIG_STATUS_POSTCOPY_ACTIVE);
        m->stats.recoveries++;
        g_mutex_unlock(&m->lock);
    }
out:
    if (hasher) {
        g_thread_join(hasher);
    }
    if (!ok) {
        g_propagate_error(errp, g_steal_pointer(&err));
        return false;
    }
    g_mutex_lock(&m->lock);
    m->stats.verified = p->verify;
    m->stats.verify_chunks = p->verify ? dt.n : 0;
    m->stats.ram_remaining = 0;
    m->stats.postcopy_remaining = 0;
    g_mutex_unlock(&m->lock);
    return true;
}
