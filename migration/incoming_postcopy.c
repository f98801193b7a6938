/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Postcopy on the destination, beside the receiver (incoming.c): the page
 * channel that carries the pages a vCPU waits for, the switch (PENDING,
 * POSTCOPY_RUN), completion, and recovery after a broken link.  RAM is
 * under userfaultfd (uffd_postcopy.c) from the switch on.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "incoming.h"
#include "migration/bitmap.h"
#include "migration/ram_digest.h"

/* Postcopy: decodes a batch into @staging and places its missing pages. */
bool in_place_batch(Incoming *in, PageDecoder *d, uint8_t *staging,
                        const uint8_t *buf, size_t len, PageCodecStats *st,
                        GError **errp)
{
    PageStaged sb = { .data = staging };
    return page_decode_staged(d, in->ram->npages, buf, len, &sb, st, errp) &&
           uffd_postcopy_place(in->pc, &sb, in->digests, errp);
}

/* The fault thread's way to the source (UffdRequestFn). */
static bool request_pages(void *opaque, const uint64_t *pfns, unsigned n)
{
    Incoming *in = opaque;
    size_t len;
    g_autofree uint8_t *msg = wire_page_request_encode(pfns, n, &len);

    g_mutex_lock(&in->send_lock);
    bool ok = in->link_up && wire_send(in->fd, WIRE_PAGE_REQUEST, 0, msg, len, NULL);
    g_mutex_unlock(&in->send_lock);
    return ok;
}

uint16_t in_read_intro(Hintmig *m, uint64_t want, int fd, WireMultifd *mf,
                       GError **errp)
{
    WireHeader h;
    g_autoptr(GBytes) payload = NULL;
    uint64_t session;
    WireMultifd w;

    hm_set_rcvtimeo(fd, hm_peer_timeout_ms(m, CHANNEL_TIMEOUT_MS));
    if (!wire_recv(fd, &h, &payload, errp)) {
        return 0;
    }
    hm_set_rcvtimeo(fd, 0);
    gsize len;
    const void *d = g_bytes_get_data(payload, &len);
    if (h.type == WIRE_MULTIFD && mf) {
        if (!wire_multifd_decode(d, len, &w, errp)) {
            return 0;
        }
        session = w.session;
        *mf = w;
    } else if ((h.type != WIRE_PAGE_CHANNEL && h.type != WIRE_RESUME) ||
               !wire_session_decode(d, len, &session)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "expected a page-channel%s or resume message, got %s",
                    mf ? ", multifd" : "", wire_type_str(h.type));
        return 0;
    }
    if (session != want) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "connection belongs to another migration (session %016"
                    G_GINT64_MODIFIER "x, this one is %016" G_GINT64_MODIFIER "x)",
                    session, want);
        return 0;
    }
    return h.type;
}

int in_accept_one(Hintmig *m, int lfd, int timeout_ms, GError **errp)
{
    struct pollfd pfd = { lfd, POLLIN, 0 };
    int r = poll(&pfd, 1, timeout_ms);
    int fd = r == 1 ? accept4(lfd, NULL, NULL, SOCK_CLOEXEC) : -1;

    if (fd < 0) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED,
                    "the source did not connect within %d ms", timeout_ms);
        return -1;
    }
    socket_set_liveness(fd);
    hm_socket_peer_timeout(m, fd);
    return fd;
}

/* Pages a waiting vCPU asked for, on the second connection. */
static gpointer channel_thread(gpointer data)
{
    Incoming *in = data;
    PageDecoder *d = page_decoder_new();
    g_autofree uint8_t *buf = g_malloc(MIGRATION_BUF_SIZE);
    g_autofree uint8_t *staging = g_malloc((size_t)PAGE_BATCH_MAX * HM_PAGE_SIZE);
    g_autoptr(GError) err = NULL;

    hm_thread_role(in->m, HINTMIG_THREAD_URGENT);  /* a vCPU waits on every page here */
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
        if (!in_place_batch(in, d, staging, buf, h.len, &st, &err)) {
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
    hm_mem_charge(in->m, page_decoder_sizeof(d) + MIGRATION_BUF_SIZE +
                         (size_t)PAGE_BATCH_MAX * HM_PAGE_SIZE);
    page_decoder_free(d);
    return NULL;
}

static bool fault_thread_urgent(void *opaque)
{
    return hm_thread_role(opaque, HINTMIG_THREAD_URGENT);
}

static bool channel_start(Incoming *in, int fd, GError **errp)
{
    in->ch_fd = fd;
    in->ch_thread = hm_thread_new("page-channel", channel_thread, in, errp);
    if (!in->ch_thread) {
        in->ch_fd = -1;
        close(fd);
    }
    return in->ch_thread != NULL;
}

void in_channel_stop(Incoming *in)
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

/* After the hello: the source's page channel @fd came; userfaultfd is set up. */
bool in_page_channel_start(Incoming *in, int fd, GError **errp)
{
    in->pc = uffd_postcopy_new(in->ram, errp);
    if (!in->pc) {
        close(fd);
        return false;
    }
    uffd_postcopy_set_urgent(in->pc, fault_thread_urgent, in->m);
    /* The missing and requested maps. */
    hm_mem_charge(in->m, 2 * hm_bitmap_bytes(in->ram->npages));
    if (!in_page_digests_new(in, errp)) {      /* postcopy verifies pages as placed */
        close(fd);
        return false;
    }
    return channel_start(in, fd, errp);
}

/* PENDING: the pages the source still owes; their copies here are stale. */
bool in_apply_pending(Incoming *in, const uint8_t *d, size_t len, GError **errp)
{
    unsigned long *missing = uffd_postcopy_missing(in->pc);
    uint64_t npages = in->ram->npages, pages;
    uint32_t word;
    g_autoptr(GError) err = NULL;

    if (!in_drain(in, &err)) {
        return in_give_up(in, WIRE_ERR_DATA, errp, "%s", err->message);
    }
    if (!wire_runs_decode(d, len, npages, missing, &word, &pages, &err)) {
        return in_give_up(in, WIRE_ERR_PROTOCOL, errp, "pending: %s", err->message);
    }
    if (in->hinted) {
        /* Hinted, then written by the guest: it comes from the source. */
        for (size_t i = 0; i < HM_BITMAP_LONGS(npages); i++) {
            in->hinted[i] &= ~missing[i];
        }
    }
    return true;
}

/* POSTCOPY_RUN: RAM under userfaultfd, device state loaded, the guest runs. */
bool in_postcopy_run(Incoming *in, uint32_t seq, GError **errp)
{
    HintmigHost *host = &in->m->host;
    g_autoptr(GError) err = NULL;

    if (!in_drain(in, &err)) {
        return in_give_up(in, WIRE_ERR_DATA, errp, "%s", err->message);
    }
    if (!in->state_whole) {
        return in_give_up(in, WIRE_ERR_STATE, errp, "postcopy: no device state received");
    }
    if (!in_check_state(in, seq, errp)) {
        return false;
    }
    if (!uffd_postcopy_start(in->pc, in->hinted, in->poison, request_pages, in, &err)) {
        return in_give_up(in, WIRE_ERR_STATE, errp, "%s", err->message);
    }
    in->postcopy = true;
    g_mutex_lock(&in->m->lock);
    in->m->in_pc = in->pc;
    in->m->stats.postcopy = true;
    g_mutex_unlock(&in->m->lock);
    if (!host->ops->load_state(host->opaque, in->state->data, in->state->len, &err)) {
        g_prefix_error(&err, "loading device state: ");
        in_ack(in, seq, WIRE_ERR_STATE, err->message, NULL);
        g_propagate_error(errp, g_steal_pointer(&err));
        in->postcopy = false;       /* the guest never ran: a plain failure */
        return false;
    }
    if (host->ops->incoming_done) {
        host->ops->incoming_done(host->opaque);
    }
    hm_set_status(in->m, HINTMIG_STATUS_POSTCOPY_ACTIVE, NULL);
    return in_ack(in, seq, WIRE_OK, NULL, errp);
}

/* COMPLETE after postcopy: every page placed, then verified as placed. */
bool in_postcopy_complete(Incoming *in, uint32_t seq, bool *final, GError **errp)
{
    g_autoptr(GError) err = NULL;

    if (!in_drain(in, &err)) {
        return in_give_up(in, WIRE_ERR_DATA, errp, "%s", err->message);
    }
    if (!uffd_postcopy_wait_all(in->pc, hm_peer_timeout_ms(in->m, PLACE_TIMEOUT_MS))) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
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
    hm_stats_from_uffd(&in->m->stats, in->pc);
    in->m->in_pc = NULL;
    g_mutex_unlock(&in->m->lock);
    if (!in_check_ram(in, seq, errp)) {
        return false;
    }
    /* The guest is whole and verified here.  The source may never hear the
     * ack (a send into a link it already gave up on can still succeed) and
     * wait, paused: migrate_recover here tells it so. */
    g_mutex_lock(&in->m->lock);
    in->m->answer_session = in->session;
    in->m->answer_code = WIRE_ERR_DONE;
    g_mutex_unlock(&in->m->lock);
    in_ack(in, seq, WIRE_OK, NULL, NULL);
    return true;
}

/* Done with migrate_recover's listening socket @lfd. */
static void recover_listen_end(Hintmig *m, int lfd)
{
    g_mutex_lock(&m->lock);
    m->recover_accepting = -1;
    g_mutex_unlock(&m->lock);
    close(lfd);
}

/*
 * The link broke in postcopy: the guest waits on its missing pages while
 * we wait for migrate_recover and the source's new connections.  Returns
 * false only when the migration is being torn down.
 */
bool in_postcopy_recover(Incoming *in, const char *why)
{
    Hintmig *m = in->m;

    g_mutex_lock(&in->send_lock);
    in->link_up = false;
    g_mutex_unlock(&in->send_lock);
    uffd_postcopy_link(in->pc, false);
    in_channel_stop(in);
    in_multifd_stop(in);       /* the recovery opens them again */
    g_autoptr(GError) ignored = NULL;
    in_drain(in, &ignored);
    g_mutex_lock(&in->lock);
    g_clear_pointer(&in->decode_error, g_free);
    g_mutex_unlock(&in->lock);
    g_mutex_lock(&m->lock);
    m->in_fd = -1;
    g_mutex_unlock(&m->lock);
    shutdown(in->fd, SHUT_RDWR);
    close(in->fd);
    in->fd = -1;

    g_autofree char *why_text = NULL;
    for (;;) {
        g_mutex_lock(&m->lock);
        hm_set_status_locked(m, HINTMIG_STATUS_POSTCOPY_PAUSED);
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
        m->recover_accepting = lfd;     /* quitting wakes the accepts below */
        hm_set_status_locked(m, HINTMIG_STATUS_POSTCOPY_RECOVER);
        g_mutex_unlock(&m->lock);

        /* The source connects its main stream first, then the page channel. */
        g_autoptr(GError) err = NULL;
        int fds[2] = { -1, -1 };
        for (int i = 0; i < 2 && !err; i++) {
            int fd = in_accept_one(m, lfd, hm_peer_timeout_ms(m, RECOVER_TIMEOUT_MS), &err);
            uint16_t t = fd >= 0 ? in_read_intro(in->m, in->session, fd, NULL, &err) : 0;
            int slot = t == WIRE_RESUME ? 0 : t == WIRE_PAGE_CHANNEL ? 1 : -1;
            if (slot < 0 || fds[slot] >= 0) {
                if (!err) {
                    g_set_error(&err, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                                "recovery: two connections of one kind");
                }
                if (fd >= 0) {
                    close(fd);
                }
                break;
            }
            fds[slot] = fd;
        }
        if (err) {
            recover_listen_end(m, lfd);
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
        /* Then the multifd connections, on the same listening socket. */
        if (!sent || !in_multifd_reaccept(in, lfd, &err)) {
            recover_listen_end(m, lfd);
            close(fds[1]);
            close(in->fd);
            in->fd = -1;
            g_free(why_text);
            why_text = sent ? g_strdup_printf("recovery failed: %s", err->message)
                            : g_strdup("recovery failed while sending the missing pages");
            why = why_text;
            continue;
        }
        recover_listen_end(m, lfd);
        if (!channel_start(in, fds[1], NULL)) {
            in_multifd_stop(in);
            close(in->fd);
            in->fd = -1;
            why = "recovery failed: no thread for the page channel";
            continue;
        }
        g_mutex_lock(&in->send_lock);
        in->link_up = true;
        g_mutex_unlock(&in->send_lock);
        uffd_postcopy_link(in->pc, true);    /* waiting vCPUs: ask again */
        g_mutex_lock(&m->lock);
        hm_set_status_locked(m, HINTMIG_STATUS_POSTCOPY_ACTIVE);
        /* The pause's reason is over: a later failure names its own. */
        g_clear_pointer(&m->stats.error, g_free);
        m->stats.recoveries++;
        g_mutex_unlock(&m->lock);
        return true;
    }
}

/*
 * migrate_recover on a destination whose postcopy migration ended while its
 * source was cut off (m->answer_session): a source whose link broke before
 * RUN's ack, or before COMPLETE's, cannot know how it ended and waits in
 * postcopy-paused.  Its recovery is answered WIRE_ERR_NEVER_RAN (it runs
 * the guest again) or WIRE_ERR_DONE (it completes).  Runs as the incoming
 * thread, on m->recover_fd.
 */
gpointer in_answer_recovery_thread(gpointer data)
{
    Hintmig *m = data;

    g_mutex_lock(&m->lock);
    int lfd = m->recover_fd;
    m->recover_fd = -1;
    m->recover_accepting = lfd;       /* quitting wakes the accept */
    uint64_t session = m->answer_session;
    uint32_t code = m->answer_code;
    g_autofree char *why = g_strdup(m->stats.error ? m->stats.error : "failed");
    g_mutex_unlock(&m->lock);

    /* The source connects its main stream, then the page channel, and only
     * then reads the answer on the first. */
    int fds[2] = { -1, -1 }, resume = -1;
    for (int i = 0; i < 2; i++) {
        g_autoptr(GError) err = NULL;
        fds[i] = in_accept_one(m, lfd, hm_peer_timeout_ms(m, RECOVER_TIMEOUT_MS), &err);
        if (fds[i] < 0) {
            break;
        }
        if (in_read_intro(m, session, fds[i], NULL, &err) == WIRE_RESUME && resume < 0) {
            resume = fds[i];
        }
    }
    if (resume >= 0) {
        g_autofree char *text = code == WIRE_ERR_DONE
            ? g_strdup("every page is here and verified: the migration completed")
            : g_strdup_printf("this destination failed before it ran the guest (%s)",
                              why);
        g_autoptr(GBytes) b = wire_status_encode(code, text);
        gsize len;
        const void *d = g_bytes_get_data(b, &len);
        wire_send(resume, WIRE_ERROR, 0, d, len, NULL);
    }
    for (int i = 0; i < 2; i++) {
        if (fds[i] >= 0) {
            shutdown(fds[i], SHUT_WR);
            close(fds[i]);
        }
    }
    g_mutex_lock(&m->lock);
    m->recover_accepting = -1;
    g_mutex_unlock(&m->lock);
    close(lfd);
    g_mutex_lock(&m->lock);
    m->in_thread_done = true;
    g_mutex_unlock(&m->lock);
    return NULL;
}
