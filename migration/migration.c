/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The migration context: parameters, capabilities, status and counters,
 * starting, cancelling and accepting migrations.  The work itself runs on
 * precopy.c's and incoming.c's threads.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <glib-unix.h>

#include "migration_priv.h"
#include "migration/uffd_postcopy.h"

static const char *const status_names[] = {
    [HINTMIG_STATUS_NONE] = "none",
    [HINTMIG_STATUS_SETUP] = "setup",
    [HINTMIG_STATUS_ACTIVE] = "active",
    [HINTMIG_STATUS_DEVICE] = "device",
    [HINTMIG_STATUS_COMPLETED] = "completed",
    [HINTMIG_STATUS_FAILED] = "failed",
    [HINTMIG_STATUS_CANCELLING] = "cancelling",
    [HINTMIG_STATUS_CANCELLED] = "cancelled",
    [HINTMIG_STATUS_POSTCOPY_ACTIVE] = "postcopy-active",
    [HINTMIG_STATUS_POSTCOPY_PAUSED] = "postcopy-paused",
    [HINTMIG_STATUS_POSTCOPY_RECOVER] = "postcopy-recover",
    [HINTMIG_STATUS_PRE_SWITCHOVER] = "pre-switchover",
};

G_DEFINE_QUARK(hintmig-error-quark, hintmig_error)

const char *hintmig_status_str(HintmigStatus s)
{
    return s < G_N_ELEMENTS(status_names) ? status_names[s] : "unknown";
}

Hintmig *hintmig_new(const HintmigHost *host, GError **errp)
{
    if (!host->ops || !host->ops->stop || !host->ops->resume ||
        !host->ops->save_state || !host->ops->load_state) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "the host must give stop, resume, save_state and load_state");
        return NULL;
    }
    if (!host->context) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "the host must give the main context the engine may use");
        return NULL;
    }
    if (!g_uuid_string_is_valid(host->uuid)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "the VM's UUID '%.36s' is not a valid UUID", host->uuid);
        return NULL;
    }
    if (host->dirty_backend == HINTMIG_DIRTY_HOST &&
        (!host->dirty_ops || !host->dirty_ops->start || !host->dirty_ops->sync)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "dirty tracking by the host needs dirty_ops with start and sync");
        return NULL;
    }
    HmRam *ram = hm_ram_new(host->regions, host->nregions, errp);
    if (!ram) {
        return NULL;
    }
    Hintmig *m = g_new0(Hintmig, 1);
    m->host = *host;
    m->host.regions = NULL;        /* the caller's: use m->ram */
    m->ram = ram;
    m->ctx = g_main_context_ref(host->context);
    g_mutex_init(&m->lock);
    m->params = (HintmigParams) {
        .downtime_limit_ms = 300,
        .max_bandwidth = 0,
        .compress_method = HINTMIG_COMPRESS_AUTO,
        .compress_level = 3,   /* as fast as 1 here, 5% smaller (bench/) */
        .compress_threads = 2,
        .multifd_channels = 1,
        .cpu_throttle_initial = 20,
        .cpu_throttle_increment = 10,
        .max_cpu_throttle = 99,
        .throttle_trigger_threshold = 50,
    };
    m->caps.verify = true;
    g_hook_list_init(&m->notifiers, sizeof(GHook));
    g_cond_init(&m->hint_cond);
    m->hint_early = g_array_new(FALSE, FALSE, sizeof(HintEarly));
    g_cond_init(&m->state_cond);
    m->fd = m->listen_fd = m->in_fd = m->recover_fd = m->start_fd = m->resume_fd = -1;
    m->recover_accepting = -1;
    return m;
}

static bool is_postcopy(HintmigStatus s)
{
    return s == HINTMIG_STATUS_POSTCOPY_ACTIVE || s == HINTMIG_STATUS_POSTCOPY_PAUSED ||
           s == HINTMIG_STATUS_POSTCOPY_RECOVER;
}

bool hm_status_running(HintmigStatus s)
{
    return s == HINTMIG_STATUS_SETUP || s == HINTMIG_STATUS_ACTIVE ||
           s == HINTMIG_STATUS_PRE_SWITCHOVER || s == HINTMIG_STATUS_DEVICE ||
           s == HINTMIG_STATUS_CANCELLING || is_postcopy(s);
}

/* Joins a thread that has finished (call without the lock held). */
static void reap(Hintmig *m, GThread **t, bool *done)
{
    g_mutex_lock(&m->lock);
    bool finished = *t && *done;
    g_mutex_unlock(&m->lock);
    if (finished) {
        g_thread_join(*t);
        *t = NULL;
        *done = false;
    }
}

static bool thread_running(Hintmig *m, GThread *t, bool *done)
{
    g_mutex_lock(&m->lock);
    bool running = t && !*done;
    g_mutex_unlock(&m->lock);
    return running;
}

void hintmig_shutdown(Hintmig *m)
{
    g_mutex_lock(&m->lock);
    m->cancel = true;
    if (m->fd >= 0) {
        shutdown(m->fd, SHUT_RDWR);
    }
    if (m->in_fd >= 0) {
        shutdown(m->in_fd, SHUT_RDWR);
    }
    if (m->recover_accepting >= 0) {
        shutdown(m->recover_accepting, SHUT_RDWR);   /* wakes its accept */
    }
    g_cond_broadcast(&m->state_cond);     /* a paused postcopy gives up */
    g_cond_broadcast(&m->hint_cond);
    g_mutex_unlock(&m->lock);
    /* The threads may wait for the main loop (to stop or start the VM). */
    while (thread_running(m, m->thread, &m->thread_done) ||
           thread_running(m, m->in_thread, &m->in_thread_done)) {
        g_main_context_iteration(m->ctx, FALSE);
        g_usleep(1000);
    }
    reap(m, &m->thread, &m->thread_done);
    reap(m, &m->in_thread, &m->in_thread_done);
}

void hintmig_free(Hintmig *m)
{
    if (!m) {
        return;
    }
    hintmig_shutdown(m);
    if (m->listen_src) {
        g_source_destroy(m->listen_src);
        g_source_unref(m->listen_src);
    }
    if (m->start_fd >= 0) {
        close(m->start_fd);
    }
    if (m->listen_fd >= 0) {
        close(m->listen_fd);
    }
    if (m->recover_fd >= 0) {
        close(m->recover_fd);
    }
    if (m->resume_fd >= 0) {
        close(m->resume_fd);
    }
    hintmig_stats_clear(&m->stats);
    g_hook_list_clear(&m->notifiers);
    g_cond_clear(&m->hint_cond);
    g_array_free(m->hint_early, TRUE);
    g_cond_clear(&m->state_cond);
    g_free(m->resume_uri);
    g_mutex_clear(&m->lock);
    g_free(m->uri);
    hm_ram_free(m->ram);
    g_main_context_unref(m->ctx);
    g_free(m);
}

typedef struct StatusEvent {
    void (*fn)(void *opaque, HintmigStatus old, HintmigStatus now);
    void *opaque;
    HintmigStatus old, now;
} StatusEvent;

static gboolean status_event(gpointer data)
{
    StatusEvent *e = data;
    e->fn(e->opaque, e->old, e->now);
    return G_SOURCE_REMOVE;
}

/*
 * Sets the status (lock held) and tells the host on its main context.  The
 * event carries no pointer to @m, so it may outlive it.  It is always
 * queued, never run here, even on the context's own thread: the host's
 * handler may call back in (hintmig_get_stats()) and m->lock is held.
 * Events of equal priority are dispatched in the order they were queued.
 */
void hm_set_status_locked(Hintmig *m, HintmigStatus s)
{
    HintmigStatus old = m->stats.status;

    m->stats.status = s;
    if (old != s && m->host.ops->status_changed) {
        StatusEvent *e = g_new(StatusEvent, 1);
        *e = (StatusEvent) { m->host.ops->status_changed, m->host.opaque, old, s };
        GSource *src = g_idle_source_new();
        g_source_set_priority(src, G_PRIORITY_DEFAULT);
        g_source_set_callback(src, status_event, e, g_free);
        g_source_attach(src, m->ctx);
        g_source_unref(src);
    }
}

void hm_set_status(Hintmig *m, HintmigStatus s, const char *why, ...)
{
    g_mutex_lock(&m->lock);
    hm_set_status_locked(m, s);
    if (why && !m->stats.error) {
        va_list ap;
        va_start(ap, why);
        m->stats.error = g_strdup_vprintf(why, ap);
        va_end(ap);
    }
    g_mutex_unlock(&m->lock);
}

void hm_mem_charge(Hintmig *m, uint64_t bytes)
{
    g_mutex_lock(&m->lock);
    m->stats.engine_memory += bytes;
    g_mutex_unlock(&m->lock);
}

bool hm_cancelled(Hintmig *m)
{
    g_mutex_lock(&m->lock);
    bool c = m->cancel;
    g_mutex_unlock(&m->lock);
    return c;
}

bool hintmig_set_uuid(Hintmig *m, const char *uuid, GError **errp)
{
    if (!g_uuid_string_is_valid(uuid)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "'%s' is not a valid UUID", uuid);
        return false;
    }
    g_mutex_lock(&m->lock);
    g_strlcpy(m->host.uuid, uuid, sizeof(m->host.uuid));
    g_mutex_unlock(&m->lock);
    return true;
}

bool hm_commit(Hintmig *m)
{
    g_mutex_lock(&m->lock);
    bool ok = !m->cancel;
    m->committed = ok;
    g_mutex_unlock(&m->lock);
    return ok;
}

bool hintmig_is_active(Hintmig *m)
{
    g_mutex_lock(&m->lock);
    bool a = !m->stats.incoming && hm_status_running(m->stats.status);
    g_mutex_unlock(&m->lock);
    return a;
}

GThread *hm_thread_new(const char *name, GThreadFunc fn, void *data, GError **errp)
{
    g_autoptr(GError) err = NULL;
    GThread *t = g_thread_try_new(name, fn, data, &err);

    if (!t) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED,
                    "cannot start thread '%s': %s", name, err->message);
    }
    return t;
}

bool hm_thread_role(Hintmig *m, HintmigThreadRole role)
{
    return m->host.ops->thread_role && m->host.ops->thread_role(m->host.opaque, role);
}

GThread *hm_thread_or_inline(const char *name, GThreadFunc fn, void *data)
{
    GThread *t = g_thread_try_new(name, fn, data, NULL);

    if (!t) {
        fn(data);
    }
    return t;
}

/* Starts the outgoing thread over @uri, or over the host's socket @fd. */
static bool start_outgoing(Hintmig *m, const char *uri, int fd, GError **errp)
{
    if (m->host.ops->can_migrate && !m->host.ops->can_migrate(m->host.opaque, errp)) {
        return false;
    }
    reap(m, &m->thread, &m->thread_done);
    g_mutex_lock(&m->lock);
    if (hm_status_running(m->stats.status) || m->thread || m->in_thread) {
        g_mutex_unlock(&m->lock);
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_BUSY,
                    "There's a migration process in progress");
        return false;
    }
    hintmig_stats_clear(&m->stats);
    m->stats = (HintmigStats) {
        .status = m->stats.status,
        .ram_total = m->ram->size,
        .ram_remaining = m->ram->size,
    };
    hm_set_status_locked(m, HINTMIG_STATUS_SETUP);
    m->cancel = false;
    m->committed = false;
    m->continue_switchover = false;
    m->postcopy_requested = false;
    m->postcopy_switched = false;
    m->t_start = g_get_monotonic_time();
    g_free(m->uri);
    m->uri = g_strdup(uri);
    m->start_fd = fd;
    g_mutex_unlock(&m->lock);

    g_autoptr(GError) err = NULL;
    m->thread = hm_thread_new("migration", precopy_thread, m, &err);
    if (!m->thread) {
        hm_set_status(m, HINTMIG_STATUS_FAILED, "%s", err->message);
        g_propagate_error(errp, g_steal_pointer(&err));
        return false;
    }
    return true;
}

bool hintmig_start(Hintmig *m, const char *uri, GError **errp)
{
    return socket_uri_check(uri, errp) && start_outgoing(m, uri, -1, errp);
}

bool hintmig_start_fd(Hintmig *m, int fd, GError **errp)
{
    if (socket_check_stream(fd, NULL, errp) < 0 || !start_outgoing(m, NULL, fd, errp)) {
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    return true;
}

bool hintmig_continue(Hintmig *m, GError **errp)
{
    g_mutex_lock(&m->lock);
    bool ok = !m->stats.incoming && m->stats.status == HINTMIG_STATUS_PRE_SWITCHOVER;
    if (ok) {
        m->continue_switchover = true;
        g_cond_broadcast(&m->state_cond);
    } else {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_BUSY,
                    "Migration not in expected state: %s (expected pre-switchover)",
                    hintmig_status_str(m->stats.status));
    }
    g_mutex_unlock(&m->lock);
    return ok;
}

bool hm_pause_before_switchover(Hintmig *m, GError **errp)
{
    g_mutex_lock(&m->lock);
    if (!m->caps.pause_before_switchover) {
        g_mutex_unlock(&m->lock);
        return true;
    }
    hm_set_status_locked(m, HINTMIG_STATUS_PRE_SWITCHOVER);
    while (!m->continue_switchover && !m->cancel) {
        g_cond_wait(&m->state_cond, &m->lock);
    }
    bool go = !m->cancel;
    m->continue_switchover = false;
    g_mutex_unlock(&m->lock);
    if (!go) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_CANCELLED,
                    "cancelled in pre-switchover");
    }
    return go;
}

bool hintmig_pause(Hintmig *m, GError **errp)
{
    g_mutex_lock(&m->lock);
    if (m->stats.status != HINTMIG_STATUS_POSTCOPY_ACTIVE) {
        HintmigStatus st = m->stats.status;
        g_mutex_unlock(&m->lock);
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_BUSY,
                    "migrate-pause works only in status postcopy-active, not %s",
                    hintmig_status_str(st));
        return false;
    }
    /* Breaking the main stream is what a network failure does: each side
     * drops its channels and waits in postcopy-paused for a recovery. */
    int fd = m->stats.incoming ? m->in_fd : m->fd;
    if (fd >= 0) {
        shutdown(fd, SHUT_RDWR);
    }
    g_mutex_unlock(&m->lock);
    return true;
}

bool hintmig_cancel(Hintmig *m, GError **errp)
{
    g_mutex_lock(&m->lock);
    if (m->stats.incoming || !hm_status_running(m->stats.status)) {
        g_mutex_unlock(&m->lock);
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_BUSY,
                    "no outgoing migration is running");
        return false;
    }
    if (m->postcopy_switched) {
        g_mutex_unlock(&m->lock);
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_BUSY,
                    "migrate_cancel is refused in postcopy: the guest runs on the "
                    "destination, and the pages it still lacks exist only here. "
                    "Let it finish, or after a network failure resume it with "
                    "'migrate_recover URI' on the destination and 'migrate -r URI' "
                    "here");
        return false;
    }
    if (m->committed) {
        g_mutex_unlock(&m->lock);
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_BUSY,
                    "too late to cancel: the destination is taking over the VM");
        return false;
    }
    m->cancel = true;
    hm_set_status_locked(m, HINTMIG_STATUS_CANCELLING);
    g_cond_broadcast(&m->hint_cond);     /* stop waiting for hints */
    g_cond_broadcast(&m->state_cond);    /* leave pre-switchover */
    /* Unblocks the sender, the return path and a connect in progress. */
    if (m->fd >= 0) {
        shutdown(m->fd, SHUT_RDWR);
    }
    g_mutex_unlock(&m->lock);
    return true;
}

/* Runs the receiver on connected socket @cfd. */
static void incoming_begin(Hintmig *m, int cfd)
{
    g_autoptr(GError) err = NULL;

    socket_set_liveness(cfd);
    hm_socket_peer_timeout(m, cfd);
    g_mutex_lock(&m->lock);
    m->in_fd = cfd;
    m->answer_session = 0;
    m->t_start = g_get_monotonic_time();
    hm_set_status_locked(m, HINTMIG_STATUS_ACTIVE);
    g_mutex_unlock(&m->lock);
    m->in_thread = hm_thread_new("incoming", incoming_thread, m, &err);
    if (!m->in_thread) {
        hm_set_status(m, HINTMIG_STATUS_FAILED, "%s", err->message);
        g_mutex_lock(&m->lock);
        m->in_fd = -1;
        g_mutex_unlock(&m->lock);
        close(cfd);
    }
}

static gboolean incoming_accept(gint fd, GIOCondition cond, gpointer data)
{
    Hintmig *m = data;
    (void)cond;

    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (cfd < 0) {
        return G_SOURCE_CONTINUE;
    }
    /* One migration per listen, as QEMU: the receiver accepts the source's
     * further connections (postcopy's page channel, multifd), if its hello
     * asks for them, and closes the socket. */
    g_source_unref(m->listen_src);
    m->listen_src = NULL;
    incoming_begin(m, cfd);
    return G_SOURCE_REMOVE;
}

/* Serves one incoming migration on @fd: listening (@listening) or connected. */
static bool incoming_setup(Hintmig *m, int fd, bool listening, GError **errp)
{
    if (!m->host.ops->can_receive || !m->host.ops->can_receive(m->host.opaque, errp)) {
        if (errp && !*errp) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_BUSY,
                        "the host does not expect an incoming migration");
        }
        return false;
    }
    reap(m, &m->in_thread, &m->in_thread_done);
    if (m->listen_fd >= 0 || m->in_thread || m->listen_src) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_BUSY,
                    "an incoming migration is already set up");
        return false;
    }
    g_mutex_lock(&m->lock);
    hintmig_stats_clear(&m->stats);
    m->stats = (HintmigStats) {
        .incoming = true,
        .status = m->stats.status,
        .ram_total = m->ram->size,
    };
    hm_set_status_locked(m, HINTMIG_STATUS_SETUP);
    g_mutex_unlock(&m->lock);
    if (!listening) {
        incoming_begin(m, fd);
        return true;
    }
    m->listen_fd = fd;
    m->listen_src = g_unix_fd_source_new(fd, G_IO_IN);
    g_source_set_callback(m->listen_src, (GSourceFunc)(void (*)(void))incoming_accept,
                          m, NULL);
    g_source_attach(m->listen_src, m->ctx);
    return true;
}

bool hintmig_incoming_start(Hintmig *m, const char *uri, GError **errp)
{
    if (!socket_uri_check(uri, errp)) {
        return false;
    }
    if (m->listen_fd >= 0 || m->listen_src) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_BUSY,
                    "an incoming migration is already set up");
        return false;
    }
    int fd = socket_listen(uri, errp);
    if (fd < 0) {
        return false;
    }
    if (!incoming_setup(m, fd, true, errp)) {
        close(fd);
        return false;
    }
    return true;
}

bool hintmig_incoming_start_fd(Hintmig *m, int fd, GError **errp)
{
    bool listening;

    if (socket_check_stream(fd, &listening, errp) < 0 ||
        !incoming_setup(m, fd, listening, errp)) {
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    return true;
}

void hintmig_get_stats(Hintmig *m, HintmigStats *out)
{
    g_mutex_lock(&m->lock);
    *out = m->stats;
    out->error = g_strdup(m->stats.error);
    if (hm_status_running(m->stats.status) && m->t_start) {
        out->total_time_ms = (g_get_monotonic_time() - m->t_start) / 1000;
    }
    if (m->in_pc) {
        hm_stats_from_uffd(out, m->in_pc);
    }
    g_mutex_unlock(&m->lock);
}

void hintmig_stats_clear(HintmigStats *s)
{
    g_clear_pointer(&s->error, g_free);
}

void hm_stats_from_uffd(HintmigStats *s, struct UffdPostcopy *pc)
{
    UffdPostcopyStats u = uffd_postcopy_stats(pc);
    s->postcopy = true;
    s->postcopy_requests = u.requested_pages;
    s->postcopy_remaining = u.remaining;
    s->faults_local = u.faults_local;
    s->faults_remote = u.faults_remote;
    s->hinted_requested = u.hinted_requested;
    s->duplicate_placements = u.duplicate_pages;
    s->hint_filled = u.hint_filled;
    s->hint_fill_ms = u.hint_fill_ms;
    s->fault_lat_samples = u.lat_samples;
    s->fault_lat_p50_us = u.lat_p50_us;
    s->fault_lat_p99_us = u.lat_p99_us;
    s->fault_lat_max_us = u.lat_max_us;
    s->fault_thread_rt = u.realtime;
    if (u.fill_error[0]) {
        g_snprintf(s->hint_note, sizeof(s->hint_note),
                   "hinted pages left to fill on first touch: %s", u.fill_error);
    }
}

bool hintmig_start_postcopy(Hintmig *m, GError **errp)
{
    g_mutex_lock(&m->lock);
    bool ok = false;
    if (!m->caps.postcopy_ram) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_BUSY,
                    "Enable postcopy with migrate_set_capability before the start "
                    "of migration");
    } else if (m->stats.incoming || (m->stats.status != HINTMIG_STATUS_SETUP &&
                                     m->stats.status != HINTMIG_STATUS_ACTIVE)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "postcopy must be started after migration has been started "
                    "(status: %s)", hintmig_status_str(m->stats.status));
    } else {
        m->postcopy_requested = true;
        ok = true;
    }
    g_mutex_unlock(&m->lock);
    return ok;
}

/* Hands "migrate -r" to the paused source thread: @uri, and @fd or -1. */
static bool resume(Hintmig *m, const char *uri, int fd, GError **errp)
{
    g_mutex_lock(&m->lock);
    bool ok = !m->stats.incoming &&
              m->stats.status == HINTMIG_STATUS_POSTCOPY_PAUSED && m->thread;
    if (!ok) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "migrate -r resumes a paused postcopy migration; the "
                    "migration is %s", m->stats.incoming ? "incoming"
                    : hintmig_status_str(m->stats.status));
    } else {
        g_free(m->resume_uri);
        m->resume_uri = g_strdup(uri);
        if (m->resume_fd >= 0) {
            close(m->resume_fd);
        }
        m->resume_fd = fd;
        g_cond_broadcast(&m->state_cond);
    }
    g_mutex_unlock(&m->lock);
    return ok;
}

bool hintmig_resume(Hintmig *m, const char *uri, GError **errp)
{
    return socket_uri_check(uri, errp) && resume(m, uri, -1, errp);
}

bool hintmig_resume_fd(Hintmig *m, int fd, GError **errp)
{
    if (socket_check_stream(fd, NULL, errp) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    /* The page channel goes where the host's socket goes. */
    g_autofree char *peer = socket_peer_uri(fd);
    if (!peer) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_UNSUPPORTED,
                    "the socket has no peer address to open the page channel to");
    }
    if (!peer || !resume(m, peer, fd, errp)) {
        close(fd);
        return false;
    }
    return true;
}

#define RECOVER_REFUSED "migrate_recover needs an incoming postcopy migration " \
    "that is paused (postcopy-paused) and not already recovering, or one that " \
    "ended while its source was cut off"

/* An incoming postcopy whose source may wait, paused, without knowing how
 * it ended here: migrate_recover tells it (in_answer_recovery_thread). */
static bool answer_waits_locked(Hintmig *m)
{
    HintmigStatus want = m->answer_code == WIRE_ERR_DONE ? HINTMIG_STATUS_COMPLETED
                                                         : HINTMIG_STATUS_FAILED;
    return m->stats.incoming && m->stats.status == want && m->answer_session &&
           !m->in_thread && m->recover_fd < 0;
}

/* Hands listening socket @fd to a paused incoming postcopy; closes it if refused. */
static bool recover_on(Hintmig *m, int fd, GError **errp)
{
    reap(m, &m->in_thread, &m->in_thread_done);
    g_mutex_lock(&m->lock);
    bool paused = m->stats.incoming &&
                  m->stats.status == HINTMIG_STATUS_POSTCOPY_PAUSED &&
                  m->recover_fd < 0;
    bool answer = answer_waits_locked(m);
    if (paused || answer) {
        m->recover_fd = fd;
        g_cond_broadcast(&m->state_cond);
    }
    g_mutex_unlock(&m->lock);
    if (answer) {
        m->in_thread = hm_thread_new("recover-answer", in_answer_recovery_thread,
                                     m, errp);
        if (!m->in_thread) {
            g_mutex_lock(&m->lock);
            m->recover_fd = -1;
            g_mutex_unlock(&m->lock);
            close(fd);
            return false;
        }
        return true;
    }
    if (!paused) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_BUSY, RECOVER_REFUSED);
        close(fd);
    }
    return paused;
}

bool hintmig_recover(Hintmig *m, const char *uri, GError **errp)
{
    reap(m, &m->in_thread, &m->in_thread_done);
    g_mutex_lock(&m->lock);
    bool paused = (m->stats.incoming &&
                   m->stats.status == HINTMIG_STATUS_POSTCOPY_PAUSED) ||
                  answer_waits_locked(m);
    g_mutex_unlock(&m->lock);
    if (!paused) {              /* say so before binding anything */
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_BUSY, RECOVER_REFUSED);
        return false;
    }
    int fd = socket_listen(uri, errp);
    return fd >= 0 && recover_on(m, fd, errp);
}

bool hintmig_recover_fd(Hintmig *m, int fd, GError **errp)
{
    bool listening;

    if (socket_check_stream(fd, &listening, errp) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    if (!listening) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "recovery needs a listening socket: the source connects twice");
        close(fd);
        return false;
    }
    return recover_on(m, fd, errp);
}

bool hintmig_incoming_ram_pending(Hintmig *m)
{
    g_mutex_lock(&m->lock);
    bool pending = m->in_pc != NULL;
    g_mutex_unlock(&m->lock);
    return pending;
}

