/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The outgoing side of precopy: one migration thread drives
 *
 *   connect, handshake -> start dirty tracking -> bulk pass over all RAM
 *   -> dirty rounds while the estimated downtime exceeds the limit
 *   -> stop the VM, last round, device state, digests -> COMPLETE, wait ack
 *
 * on the outgoing layer (outgoing.c: connection, encoders, return path),
 * and hands over to postcopy_source.c when postcopy is asked for.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "outgoing.h"
#include "migration/bitmap.h"
#include "migration/page_codec.h"
#include "migration/ram_digest.h"
#include "migration/ram_presence.h"
#include "migration/wire.h"
#include "migration/le.h"

#define COMPLETE_TIMEOUT_MS 120000
#define HINT_WAIT_MS 5000            /* for the guest to report its free pages */

static bool postcopy_wanted(Precopy *p)
{
    g_mutex_lock(&p->m->lock);
    bool want = p->postcopy && p->m->postcopy_requested;
    g_mutex_unlock(&p->m->lock);
    return want;
}

/* "remaining ram": what this pass still has to send, as QEMU means it. */
static void set_remaining(Precopy *p, uint64_t pages)
{
    g_mutex_lock(&p->m->lock);
    p->m->stats.ram_remaining = pages * HM_PAGE_SIZE;
    g_mutex_unlock(&p->m->lock);
}

/* How many pages of @bitmap (every page if NULL) are not hinted. */
static uint64_t count_unhinted(Precopy *p, const unsigned long *bitmap)
{
    uint64_t npages = p->ram->npages;
    const unsigned long *h = p->hints ? hint_filter_set(p->hints) : NULL;

    if (!h) {
        return bitmap ? hm_bitmap_count(bitmap, npages) : npages;
    }
    if (!bitmap) {
        return npages - hm_bitmap_count(h, npages);
    }
    uint64_t n = 0;
    for (uint64_t w = 0; w < HM_BITMAP_LONGS(npages); w++) {
        n += __builtin_popcountl(bitmap[w] & ~h[w]);   /* bits past the end are 0 */
    }
    return n;
}

/*
 * Queues the pages set in @bitmap (every page if NULL), except hinted
 * ones, as round @round.  When postcopy is asked for, it stops early and
 * sets *@stopped_at to the first page not queued (else to the number of
 * pages).
 */
static bool send_pages(Precopy *p, const unsigned long *bitmap, uint32_t round,
                       uint64_t *stopped_at, GError **errp)
{
    uint64_t npages = p->ram->npages;
    uint64_t pfns[PAGE_BATCH_MAX];
    unsigned n = 0;
    uint64_t batches = 0, queued = 0;
    uint64_t todo = count_unhinted(p, bitmap);

    *stopped_at = npages;
    set_remaining(p, todo);
    for (uint64_t pfn = bitmap ? hm_bitmap_next_set(bitmap, npages, 0) : 0;
         pfn < npages;
         pfn = bitmap ? hm_bitmap_next_set(bitmap, npages, pfn + 1) : pfn + 1) {
        if (p->hints && hint_filter_skip(p->hints, pfn)) {
            continue;            /* free, hinted, untouched since */
        }
        pfns[n++] = pfn;
        if (n == PAGE_BATCH_MAX) {
            if (!out_queue_batch(p, pfns, n, round, errp)) {
                return false;
            }
            queued += n;
            n = 0;
            if (++batches % 4 == 0) {
                set_remaining(p, todo - MIN(queued, todo));
            }
            if (batches % 16 == 0) {       /* 8 MiB: publish, abort, postcopy */
                out_publish(p);
                if (!out_check_abort(p, errp)) {
                    return false;
                }
                if (postcopy_wanted(p)) {
                    *stopped_at = pfn + 1;
                    return true;
                }
            }
        }
    }
    return !n || out_queue_batch(p, pfns, n, round, errp);
}

/* ---- return path ---- */

/* ---- handshake ---- */

/* ---- rounds ---- */

/*
 * Hint-first: before the bulk pass, ask the guest for its free pages and
 * wait (bounded) until it has reported them, so stale free pages are never
 * sent ahead of their hints.  The sync before the request and the one after
 * decide which hints hold (see hint_filter.h).
 */
static bool collect_hints(Precopy *p, GError **errp)
{
    Hintmig *m = p->m;
    HintmigEventData d = { .event = HINTMIG_EV_HINT_START };

    hm_bitmap_zero(p->dirty, p->ram->npages);
    if (!out_dirty_sync(p, errp)) {
        return false;
    }
    /* The driver starts as soon as the id is out, before we learn it: the
     * hints of that moment wait in hint_early and count only if their id is
     * the one the device gives us.  The request itself runs without m->lock
     * (see hint_opening). */
    g_mutex_lock(&m->lock);
    m->hint_opening = true;
    g_mutex_unlock(&m->lock);
    hm_notify(m, &d);
    g_mutex_lock(&m->lock);
    m->hint_opening = false;
    if (d.cmd_id) {
        hint_filter_begin(p->hints, d.cmd_id);
        for (guint i = 0; i < m->hint_early->len; i++) {
            HintEarly *e = &g_array_index(m->hint_early, HintEarly, i);
            if (e->cmd_id == d.cmd_id) {
                hm_hint_add_locked(m, e->cmd_id, e->by_gpa, e->addr, e->len);
            }
        }
    }
    g_array_set_size(m->hint_early, 0);
    if (!d.cmd_id) {
        g_snprintf(m->stats.hint_note, sizeof(m->stats.hint_note),
                   "no hints this time: %s", d.why_not[0] ? d.why_not
                                                          : "no device answered");
        g_mutex_unlock(&m->lock);
        return true;
    }
    p->hints_started = true;
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

    HintmigEventData stop = { .event = HINTMIG_EV_HINT_STOP };
    hm_notify(m, &stop);
    hint_filter_end(p->hints);
    hm_bitmap_zero(p->dirty, p->ram->npages);
    if (!out_dirty_sync(p, errp)) {
        return false;
    }
    /* A lazily freed page may read back as zeros, even after DONE should
     * this migration fail: harmless to a driver that treats hinted pages
     * as uninitialised, not to a guest that checks its poison pattern in
     * free pages.  With poison, the source keeps them as they are. */
    hint_filter_commit(p->hints, p->dirty, d.poison == 0);
    out_publish(p);
    /* The pages that stay off the wire, and what they must read as. */
    return out_send_runs(p, WIRE_HINTED, hint_filter_set(p->hints), d.poison, errp);
}

void out_hints_done(Precopy *p)
{
    if (p->hints_started) {
        HintmigEventData d = { .event = HINTMIG_EV_DONE };
        hm_notify(p->m, &d);
        p->hints_started = false;
    }
}

bool out_stop_and_sync(Precopy *p, gint64 *t_down, GError **errp)
{
    HintmigHost *host = &p->m->host;

    *t_down = g_get_monotonic_time();
    host->ops->stop(host->opaque);
    p->vm_stopped = true;
    /* As QEMU: the VM is stopped before pre-switchover, and stays so. */
    if (!out_check_abort(p, errp) || !hm_pause_before_switchover(p->m, errp)) {
        return false;
    }
    hm_set_status(p->m, HINTMIG_STATUS_DEVICE, NULL);
    /* The bitmap still holds the pages owed (not sent since they changed,
     * or, when postcopy cuts the bulk pass short, never sent): the final
     * sync adds what was written since.  Only those writes take pages out
     * of the hinted set; an owed page that was hinted stays hinted. */
    uint64_t npages = p->ram->npages;
    unsigned long *owed = p->dirty;
    p->dirty = hm_bitmap_new(npages);
    hm_mem_charge(p->m, hm_bitmap_bytes(npages));
    bool synced = out_dirty_sync(p, errp);
    if (synced && p->hints) {
        hint_filter_apply_dirty(p->hints, p->dirty);
    }
    for (uint64_t w = 0; w < HM_BITMAP_LONGS(npages); w++) {
        owed[w] |= p->dirty[w];
    }
    g_free(p->dirty);
    p->dirty = owed;
    if (!synced) {
        return false;
    }
    /* DONE before the device state is saved: the guest sees it wherever it
     * runs next, here after a failure or over there. */
    out_hints_done(p);
    return true;
}

/*
 * One tracker per RAM region, all filling p->dirty.  soft-dirty re-arms
 * every page of the process at once, so it can serve one region only.
 */
static bool trackers_start(Precopy *p, GError **errp)
{
    HintmigHost *host = &p->m->host;

    if (host->dirty_backend == HINTMIG_DIRTY_HOST) {
        p->host_log = host->dirty_ops->start(host->dirty_opaque, errp);
        if (p->host_log) {
            uint64_t most = p->ram->r[0].npages;
            for (unsigned i = 1; i < p->ram->n; i++) {
                most = MAX(most, p->ram->r[i].npages);
            }
            p->region_dirty = hm_bitmap_new(most);
            hm_mem_charge(p->m, hm_bitmap_bytes(most));
        }
        return p->host_log;
    }
    p->trackers = g_new0(DirtyTracker *, p->ram->n);
    for (unsigned i = 0; i < p->ram->n; i++) {
        const HmRegion *r = &p->ram->r[i];
        DirtyTracker *t = dirty_tracker_new(r->host, r->size, host->dirty_backend,
                                            host->ops->quiesce, host->opaque, errp);
        if (!t) {
            g_prefix_error(errp, "region '%s': ", r->name);
            return false;
        }
        p->trackers[i] = t;
        dirty_tracker_set_bit_offset(t, r->first);
        if (p->ram->n > 1 && dirty_tracker_backend(t) == HINTMIG_DIRTY_SOFT_DIRTY) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_UNSUPPORTED,
                        "soft-dirty tracks one RAM region only; this VM has %u",
                        p->ram->n);
            return false;
        }
        if (!dirty_tracker_start(t, errp)) {
            return false;
        }
    }
    return true;
}

bool out_dirty_sync(Precopy *p, GError **errp)
{
    HintmigHost *host = &p->m->host;

    for (unsigned i = 0; i < p->ram->n; i++) {
        const HmRegion *r = &p->ram->r[i];
        if (!p->host_log) {
            if (!dirty_tracker_sync(p->trackers[i], p->dirty, errp)) {
                return false;
            }
            continue;
        }
        /* The host's bitmap counts from the region's first page. */
        hm_bitmap_zero(p->region_dirty, r->npages);
        if (!host->dirty_ops->sync(host->dirty_opaque, i, p->region_dirty, errp)) {
            g_prefix_error(errp, "the host's dirty log, region '%s': ", r->name);
            return false;
        }
        for (uint64_t b = hm_bitmap_next_set(p->region_dirty, r->npages, 0);
             b < r->npages;) {
            uint64_t e = hm_bitmap_next_clear(p->region_dirty, r->npages, b);
            hm_bitmap_set_range(p->dirty, r->first + b, e - b);
            b = hm_bitmap_next_set(p->region_dirty, r->npages, e);
        }
    }
    p->dirty_syncs++;
    return true;
}

/*
 * Which pages the bulk pass must send: those backed by memory now that
 * the trackers run.  A page that is not was never touched (or was
 * dropped) and reads as zero; whatever backs it from now on is a write
 * the trackers report (the uffd-wp backend protects backed pages only,
 * and a page filled later shows as written; soft-dirty marks new pages
 * dirty).  Not used over a host's log (see its caller).  Without a map,
 * every page.
 */
static void find_backed(Precopy *p)
{
    g_autoptr(GError) err = NULL;

    p->backed = ram_presence_scan(p->ram, &err);
    if (p->backed) {
        hm_mem_charge(p->m, hm_bitmap_bytes(p->ram->npages));
    }
}

/* Tells the destination which pages were never touched (and not hinted). */
static bool send_untouched(Precopy *p, GError **errp)
{
    uint64_t npages = p->ram->npages;
    const unsigned long *h = p->hints ? hint_filter_set(p->hints) : NULL;
    g_autofree unsigned long *untouched = hm_bitmap_new(npages);

    for (uint64_t w = 0; w < HM_BITMAP_LONGS(npages); w++) {
        untouched[w] = ~p->backed[w] & (h ? ~h[w] : ~0UL);
    }
    if (npages % HM_BITS_PER_LONG) {
        untouched[npages / HM_BITS_PER_LONG] &= (1UL << (npages % HM_BITS_PER_LONG)) - 1;
    }
    uint64_t n = hm_bitmap_count(untouched, npages);
    g_mutex_lock(&p->m->lock);
    p->m->stats.untouched_pages = n;
    g_mutex_unlock(&p->m->lock);
    return !n || out_send_runs(p, WIRE_UNTOUCHED, untouched, 0, errp);
}

/*
 * What verification adds to the downtime once the last batch is out.  With
 * page digests both sides combine their tables into chunk digests (timed
 * here on ours; the destination's is the same work) and hash only the
 * pages of the last round, as they go; without, the destination hashes
 * every page in use after the last batch (the source does it meanwhile),
 * at the rate measured here on a few of them.
 */
static uint64_t verify_estimate_us(Precopy *p, uint64_t ndirty)
{
    uint64_t npages = p->ram->npages;

    if (!p->verify) {
        return 0;
    }
    if (p->page_digests) {
        uint64_t n = ram_digest_nchunks(p->ram, RAM_DIGEST_CHUNK_PAGES);
        g_autofree uint64_t *scratch = g_new(uint64_t, n);
        gint64 t0 = g_get_monotonic_time();
        ram_digest_combine(p->page_digests, npages, RAM_DIGEST_CHUNK_PAGES, n, scratch,
                           p->hints ? hint_filter_set(p->hints) : NULL);
        return 2 * (uint64_t)(g_get_monotonic_time() - t0);
    }
    if (!p->hash_ns_per_page) {
        enum { SAMPLE = 256 };
        uint64_t pfn = p->backed ? hm_bitmap_next_set(p->backed, npages, 0) : 0, done = 0;
        gint64 t0 = g_get_monotonic_time();
        for (; done < SAMPLE && pfn < npages; done++) {
            (void)ram_digest(hm_ram_page(p->ram, pfn), HM_PAGE_SIZE, 0);
            pfn = p->backed ? hm_bitmap_next_set(p->backed, npages, pfn + 1) : pfn + 1;
        }
        p->hash_ns_per_page = MAX(1, (g_get_monotonic_time() - t0) * 1000 / MAX(done, 1));
    }
    uint64_t in_use = (p->backed ? hm_bitmap_count(p->backed, npages) : npages) + ndirty;
    return in_use * p->hash_ns_per_page / 1000 / MAX(p->params.compress_threads, 1u);
}

/* Ends round @round: a ROUND_END the destination acks once applied. */
static bool end_round(Precopy *p, uint32_t round, GError **errp)
{
    uint8_t r[4];
    le_put32(r, round);
    return out_send_request(p, WIRE_ROUND_END, r, 4, false, errp) != 0;
}

/* auto-converge: the host throttles the vCPUs by @percent (0: lifts it). */
static void throttle(Precopy *p, unsigned percent)
{
    Hintmig *m = p->m;

    m->host.ops->throttle(m->host.opaque, percent);
    g_mutex_lock(&m->lock);
    m->stats.cpu_throttle_percent = percent;
    m->stats.cpu_throttle_max_seen = MAX(m->stats.cpu_throttle_max_seen, percent);
    g_mutex_unlock(&m->lock);
}

static bool precopy_run(Precopy *p, GError **errp)
{
    Hintmig *m = p->m;

    g_mutex_lock(&m->lock);
    p->fd = m->start_fd;            /* the host's socket, if it gave one */
    m->start_fd = -1;
    g_mutex_unlock(&m->lock);
    if (p->fd < 0) {
        p->fd = socket_connect(m->uri, 10000, errp);
        if (p->fd < 0) {
            return false;
        }
    }
    hm_socket_peer_timeout(m, p->fd);
    g_mutex_lock(&m->lock);
    m->fd = p->fd;
    bool cancelled = m->cancel;
    g_mutex_unlock(&m->lock);
    if (cancelled) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_CANCELLED, "cancelled by the user");
        return false;
    }
    /* Further connections (postcopy's page channel, multifd) go where the
     * URI says, or over a socket the host connected, to its peer. */
    p->dial_uri = m->uri ? g_strdup(m->uri) : socket_peer_uri(p->fd);
    if (!out_handshake(p, errp)) {
        return false;
    }
    p->verify = p->verify && (p->features & WIRE_FEAT_VERIFY);
    p->postcopy = p->features & WIRE_FEAT_POSTCOPY;
    if (p->verify && (p->features & WIRE_FEAT_PAGE_DIGESTS)) {
        p->page_digests = ram_digest_table_new(p->ram->npages);
        if (!p->page_digests) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED,
                        "no memory for the page digest table");
            return false;
        }
        hm_mem_charge(m, p->ram->npages * sizeof(uint64_t));
    }
    if (!out_open_links(p, errp)) {
        return false;
    }

    if (!trackers_start(p, errp)) {
        g_prefix_error(errp, "dirty tracking: ");
        return false;
    }
    const char *why = p->host_log ? NULL : dirty_tracker_fallback_reason(p->trackers[0]);
    g_mutex_lock(&m->lock);
    g_snprintf(m->stats.dirty_backend, sizeof(m->stats.dirty_backend), "%s%s%s%s",
               hintmig_dirty_backend_name(p->host_log ? HINTMIG_DIRTY_HOST
                                          : dirty_tracker_backend(p->trackers[0])),
               why ? " (fallback: " : "", why ? why : "", why ? ")" : "");
    m->stats.setup_time_ms = (g_get_monotonic_time() - m->t_start) / 1000;
    hm_set_status_locked(m, HINTMIG_STATUS_ACTIVE);
    g_mutex_unlock(&m->lock);

    p->dirty = hm_bitmap_new(p->ram->npages);
    hm_mem_charge(m, hm_bitmap_bytes(p->ram->npages));
    /* Not over a host's log: with QEMU's, a page first written after the
     * lookup was sometimes missed (docs/design.md, "Precopy and the switch"). */
    if ((p->features & WIRE_FEAT_SPARSE) && !p->host_log) {
        find_backed(p);
    }
    if (!out_encoders_start(p, errp)) {
        return false;
    }

    if (p->hinting && !collect_hints(p, errp)) {
        return false;
    }
    if (p->backed && !send_untouched(p, errp)) {
        return false;
    }

    /* Bulk pass: every backed page, while tracking catches what changes
     * behind it (pages never touched before included). */
    uint32_t round = 1;
    gint64 round_start = g_get_monotonic_time(), last_sync = round_start;
    uint64_t bytes_at_start = 0, npages = p->ram->npages, stopped_at;
    if (!send_pages(p, p->backed, round, &stopped_at, errp)) {
        return false;
    }
    if (stopped_at < npages) {
        /* Postcopy now: the rest of the bulk pass is owed. */
        hm_bitmap_zero(p->dirty, npages);
        hm_bitmap_set_range(p->dirty, stopped_at, npages - stopped_at);
        for (uint64_t w = stopped_at / HM_BITS_PER_LONG;
             p->backed && w < HM_BITMAP_LONGS(npages); w++) {
            p->dirty[w] &= p->backed[w];
        }
        return postcopy_run(p, errp);
    }
    for (;;) {
        if (!end_round(p, round, errp) || !uring_tx_wait_idle(p->tx, NULL) ||
            !out_check_abort(p, errp)) {
            if (errp && !*errp) {
                out_stream_error(p, errp, "connection lost");
            }
            return false;
        }
        gint64 now = g_get_monotonic_time();
        UringTxStats tx = uring_tx_stats(p->tx);
        double bw = (double)(tx.bytes_sent - bytes_at_start) * G_USEC_PER_SEC /
                    MAX(now - round_start, 1);
        hm_bitmap_zero(p->dirty, p->ram->npages);
        gint64 t_sync = g_get_monotonic_time();
        if (!out_dirty_sync(p, errp)) {
            return false;
        }
        uint64_t sync_us = g_get_monotonic_time() - t_sync;   /* again after the stop */
        if (p->hints) {
            hint_filter_apply_dirty(p->hints, p->dirty);   /* written: send */
        }
        uint64_t ndirty = hm_bitmap_count(p->dirty, p->ram->npages);
        out_publish(p);
        /* Dirty pages are data pages: charge each what a data page has cost
         * on the wire so far, not the average with zero pages thrown in. */
        g_mutex_lock(&p->lock);
        double per_page = p->codec.data_pages
            ? (double)p->codec.payload_bytes / p->codec.data_pages + 8
            : HM_PAGE_SIZE;
        g_mutex_unlock(&p->lock);
        /* The whole downtime, as it will be measured: the dirty pages on
         * the wire, what verification still has to do, the last sync.
         * (Not the device state: its size is known only once saved.) */
        uint64_t ram_us = (uint64_t)(ndirty * per_page * G_USEC_PER_SEC / MAX(bw, 1.0));
        uint64_t verify_us = verify_estimate_us(p, ndirty);
        uint64_t expected_ms = (ram_us + verify_us + sync_us + 999) / 1000;

        g_mutex_lock(&m->lock);
        m->stats.rounds = round;
        m->stats.ram_remaining = ndirty * HM_PAGE_SIZE;
        m->stats.dirty_pages_rate = ndirty * G_USEC_PER_SEC / MAX(now - last_sync, 1);
        m->stats.expected_downtime_ms = expected_ms;
        m->stats.expected_ram_ms = ram_us / 1000;
        m->stats.expected_verify_ms = verify_us / 1000;
        m->stats.expected_sync_ms = sync_us / 1000;
        uint64_t limit = m->params.downtime_limit_ms;
        g_mutex_unlock(&m->lock);
        last_sync = now;
        if (p->converging && auto_converge_round(&p->converge, ndirty * HM_PAGE_SIZE,
                                                 tx.bytes_sent - bytes_at_start)) {
            throttle(p, p->converge.percent);
        }
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
                hm_bitmap_clear_bit(p->dirty, pfn);
            }
            return postcopy_run(p, errp);
        }
    }

    /* Stop and copy. */
    gint64 t_down;
    if (!out_stop_and_sync(p, &t_down, errp)) {
        return false;
    }
    round++;
    DigestTask dt = { p->ram, ram_digest_nchunks(p->ram, RAM_DIGEST_CHUNK_PAGES),
                      .threads = p->params.compress_threads,
                      .exclude = p->hints ? hint_filter_set(p->hints) : NULL };
    g_autofree uint64_t *digests = dt.out = g_new(uint64_t, dt.n);
    if (p->verify) {        /* the table, and the hasher's map of backed pages */
        hm_mem_charge(p->m, dt.n * 8 +
                      (p->page_digests ? 0 : hm_bitmap_bytes(p->ram->npages)));
    }
    /* With page digests the encoders hash the last round as they send it;
     * else RAM is hashed whole while it goes. */
    GThread *hasher = p->verify && !p->page_digests
                      ? hm_thread_or_inline("digest", out_digest_task, &dt) : NULL;
    bool sent = send_pages(p, p->dirty, round, &stopped_at, errp) &&
                end_round(p, round, errp);      /* the encoders are done */
    if (sent && p->page_digests) {
        gint64 t0 = g_get_monotonic_time();
        ram_digest_combine(p->page_digests, p->ram->npages, RAM_DIGEST_CHUNK_PAGES,
                           dt.n, digests, dt.exclude);
        dt.us = g_get_monotonic_time() - t0;
    }
    sent = sent && out_send_device_state(p, errp);
    if (hasher) {
        g_thread_join(hasher);
    }
    if (p->verify) {
        g_mutex_lock(&m->lock);
        m->stats.verify_source_ms = dt.us / 1000;
        g_mutex_unlock(&m->lock);
    }
    if (!sent || (p->verify && !out_send_digests(p, digests, dt.n, errp))) {
        return false;
    }
    if (!out_send_request(p, WIRE_COMPLETE, NULL, 0, true, errp)) {
        return false;
    }
    if (!uring_tx_wait_idle(p->tx, NULL)) {
        out_stream_error(p, errp, "connection lost before the end of the stream");
        return false;
    }
    out_publish(p);

    /* The destination verifies, loads and then acks. */
    uint32_t status;
    g_autofree char *msg = NULL;
    bool closed;
    unsigned wait_ms = hm_peer_timeout_ms(m, COMPLETE_TIMEOUT_MS);
    if (!out_wait_ack(p, wait_ms, &status, &msg, &closed)) {
        if (closed) {
            /* It closed without acking: it did not resume the guest. */
            out_stream_error(p, errp, "the destination closed the connection before "
                         "confirming");
            return false;
        }
        /* Silence.  No COMMIT went out, and the destination runs the guest
         * only on COMMIT: the guest is still ours, and runs here again. */
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED,
                    "no answer from the destination within %u ms of COMPLETE; "
                    "it never got COMMIT, so the guest runs here", wait_ms);
        return false;
    }
    if (status != WIRE_OK) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED, "destination: %s",
                    msg ? msg : "failed");
        return false;
    }
    /* Second phase: the destination holds the guest until told to run it. */
    if (!hm_commit(m)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_CANCELLED, "cancelled by the user");
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
    out_hints_done(p);             /* failed or cancelled: the guest gets its pages */
    out_encoders_stop(p);
    if (p->fd >= 0) {
        shutdown(p->fd, SHUT_RDWR);
    }
    if (p->ch_fd >= 0) {
        shutdown(p->ch_fd, SHUT_RDWR);
    }
    out_multifd_shutdown(p);
    if (p->tx) {
        out_publish(p);
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
    out_multifd_close(p);
    g_free(p->dial_uri);
    page_encoder_free(p->urgent_enc);
    g_free(p->urgent_buf);
    g_free(p->pending);
    g_mutex_clear(&p->ch_lock);
    for (unsigned i = 0; p->trackers && i < p->ram->n; i++) {
        dirty_tracker_free(p->trackers[i]);
    }
    g_free(p->trackers);
    if (p->host_log && p->m->host.dirty_ops->stop) {
        p->m->host.dirty_ops->stop(p->m->host.dirty_opaque);
    }
    g_free(p->region_dirty);
    g_mutex_lock(&p->m->lock);
    p->m->hints = NULL;
    g_mutex_unlock(&p->m->lock);
    hint_filter_free(p->hints);
    g_free(p->dirty);
    g_free(p->backed);
    ram_digest_table_free(p->page_digests, p->ram->npages);
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
    Hintmig *m = data;
    Precopy p = {
        .m = m,
        .ram = m->ram,
        .params = hintmig_get_params(m),
        .verify = hintmig_get_caps(m).verify,
        .hinting = hintmig_get_caps(m).free_page_hint,
        .yield_on = hintmig_get_caps(m).postcopy_yield,
        .converging = hintmig_get_caps(m).auto_converge && m->host.ops->throttle,
        .fd = -1,
        .ch_fd = -1,
        .nconns = 1,
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
        hm_mem_charge(m, 2 * hm_bitmap_bytes(p.ram->npages));  /* its two sets */
        g_mutex_lock(&m->lock);
        m->hints = p.hints;
        m->hint_round_done = 0;
        g_mutex_unlock(&m->lock);
    }

    if (p.converging) {
        auto_converge_init(&p.converge, &p.params);
    }
    bool ok = precopy_run(&p, &err);
    bool stopped = p.vm_stopped;
    if (p.converge.percent) {
        throttle(&p, 0);          /* before the guest runs again, here or there */
    }
    precopy_cleanup(&p);

    HintmigHost *host = &m->host;
    g_mutex_lock(&m->lock);
    m->stats.total_time_ms = (g_get_monotonic_time() - m->t_start) / 1000;
    uint64_t ms = MAX(m->stats.total_time_ms, 1);
    m->stats.throughput_mbps = m->stats.wire_bytes * 8.0 / ms / 1000.0;
    bool cancelled = m->cancel;
    g_mutex_unlock(&m->lock);
    if (ok) {
        if (host->ops->migrated) {
            host->ops->migrated(host->opaque);
        }
        hm_set_status(m, HINTMIG_STATUS_COMPLETED, NULL);
    } else {
        if (stopped) {
            host->ops->resume(host->opaque);
        }
        if (cancelled) {
            hm_set_status(m, HINTMIG_STATUS_CANCELLED, "cancelled by the user");
        } else {
            hm_set_status(m, HINTMIG_STATUS_FAILED, "%s", err->message);
        }
    }
    g_mutex_lock(&m->lock);
    m->thread_done = true;
    g_mutex_unlock(&m->lock);
    return NULL;
}
