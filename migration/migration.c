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
#include "migration/size_parse.h"
#include "migration/uffd_postcopy.h"

static const char *const status_names[] = {
    [MIGRATION_STATUS_NONE] = "none",
    [MIGRATION_STATUS_SETUP] = "setup",
    [MIGRATION_STATUS_ACTIVE] = "active",
    [MIGRATION_STATUS_DEVICE] = "device",
    [MIGRATION_STATUS_COMPLETED] = "completed",
    [MIGRATION_STATUS_FAILED] = "failed",
    [MIGRATION_STATUS_CANCELLING] = "cancelling",
    [MIGRATION_STATUS_CANCELLED] = "cancelled",
    [MIGRATION_STATUS_POSTCOPY_ACTIVE] = "postcopy-active",
    [MIGRATION_STATUS_POSTCOPY_PAUSED] = "postcopy-paused",
    [MIGRATION_STATUS_POSTCOPY_RECOVER] = "postcopy-recover",
};

const char *migration_status_str(MigrationStatus s)
{
    return s < G_N_ELEMENTS(status_names) ? status_names[s] : "unknown";
}

Migration *migration_new(const MigrationHost *host)
{
    Migration *m = g_new0(Migration, 1);
    m->host = *host;
    g_mutex_init(&m->lock);
    m->params = (MigrationParams) {
        .downtime_limit_ms = 300,
        .max_bandwidth = 0,
        .compress_method = COMPRESS_ZSTD,
        .compress_level = 3,   /* as fast as 1 here, 5% smaller (bench/) */
        .compress_threads = 2,
    };
    m->caps.verify = true;
    g_hook_list_init(&m->notifiers, sizeof(GHook));
    g_cond_init(&m->hint_cond);
    g_cond_init(&m->state_cond);
    m->fd = m->listen_fd = m->in_fd = m->recover_fd = -1;
    return m;
}

static bool is_postcopy(MigrationStatus s)
{
    return s == MIGRATION_STATUS_POSTCOPY_ACTIVE || s == MIGRATION_STATUS_POSTCOPY_PAUSED ||
           s == MIGRATION_STATUS_POSTCOPY_RECOVER;
}

static bool is_running(MigrationStatus s)
{
    return s == MIGRATION_STATUS_SETUP || s == MIGRATION_STATUS_ACTIVE ||
           s == MIGRATION_STATUS_DEVICE || s == MIGRATION_STATUS_CANCELLING ||
           is_postcopy(s);
}

/* Joins a thread that has finished (call without the lock held). */
static void reap(Migration *m, GThread **t, bool *done)
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

static bool thread_running(Migration *m, GThread *t, bool *done)
{
    g_mutex_lock(&m->lock);
    bool running = t && !*done;
    g_mutex_unlock(&m->lock);
    return running;
}

void migration_shutdown(Migration *m)
{
    g_mutex_lock(&m->lock);
    m->cancel = true;
    if (m->fd >= 0) {
        shutdown(m->fd, SHUT_RDWR);
    }
    if (m->in_fd >= 0) {
        shutdown(m->in_fd, SHUT_RDWR);
    }
    g_cond_broadcast(&m->state_cond);     /* a paused postcopy gives up */
    g_cond_broadcast(&m->hint_cond);
    g_mutex_unlock(&m->lock);
    /* The threads may wait for the main loop (to stop or start the VM). */
    while (thread_running(m, m->thread, &m->thread_done) ||
           thread_running(m, m->in_thread, &m->in_thread_done)) {
        g_main_context_iteration(NULL, FALSE);
        g_usleep(1000);
    }
    reap(m, &m->thread, &m->thread_done);
    reap(m, &m->in_thread, &m->in_thread_done);
}

void migration_free(Migration *m)
{
    if (!m) {
        return;
    }
    migration_shutdown(m);
    if (m->listen_src) {
        g_source_remove(m->listen_src);
    }
    if (m->listen_fd >= 0) {
        close(m->listen_fd);
    }
    if (m->recover_fd >= 0) {
        close(m->recover_fd);
    }
    migration_stats_clear(&m->stats);
    g_hook_list_clear(&m->notifiers);
    g_cond_clear(&m->hint_cond);
    g_cond_clear(&m->state_cond);
    g_free(m->resume_uri);
    g_mutex_clear(&m->lock);
    g_free(m->uri);
    g_free(m);
}

void migration_set_status(Migration *m, MigrationStatus s, const char *why, ...)
{
    g_mutex_lock(&m->lock);
    m->stats.status = s;
    if (why && !m->stats.error) {
        va_list ap;
        va_start(ap, why);
        m->stats.error = g_strdup_vprintf(why, ap);
        va_end(ap);
    }
    g_mutex_unlock(&m->lock);
}

bool migration_cancelled(Migration *m)
{
    g_mutex_lock(&m->lock);
    bool c = m->cancel;
    g_mutex_unlock(&m->lock);
    return c;
}

gulong migration_add_notifier(Migration *m, MigrationNotifyFn fn, void *opaque)
{
    GHook *hook = g_hook_alloc(&m->notifiers);
    hook->func = (gpointer)fn;
    hook->data = opaque;
    g_hook_append(&m->notifiers, hook);
    return hook->hook_id;
}

void migration_remove_notifier(Migration *m, gulong id)
{
    g_hook_destroy(&m->notifiers, id);
}

static void notify_one(GHook *hook, gpointer data)
{
    ((MigrationNotifyFn)hook->func)(hook->data, data);
}

void migration_notify(Migration *m, MigrationEventData *d)
{
    g_hook_list_marshal(&m->notifiers, FALSE, notify_one, d);
}

void migration_free_page_hint(Migration *m, uint32_t cmd_id, uint64_t gpa,
                              uint64_t len)
{
    g_mutex_lock(&m->lock);
    if (m->hints) {
        hint_filter_add(m->hints, cmd_id, gpa, len);
    }
    g_mutex_unlock(&m->lock);
}

void migration_free_page_round_done(Migration *m, uint32_t cmd_id)
{
    g_mutex_lock(&m->lock);
    m->hint_round_done = cmd_id;
    g_cond_broadcast(&m->hint_cond);
    g_mutex_unlock(&m->lock);
}

void migration_set_uuid(Migration *m, const char *uuid)
{
    g_mutex_lock(&m->lock);
    g_strlcpy(m->host.uuid, uuid, sizeof(m->host.uuid));
    g_mutex_unlock(&m->lock);
}

bool migration_commit(Migration *m)
{
    g_mutex_lock(&m->lock);
    bool ok = !m->cancel;
    m->committed = ok;
    g_mutex_unlock(&m->lock);
    return ok;
}

bool migration_is_active(Migration *m)
{
    g_mutex_lock(&m->lock);
    bool a = !m->stats.incoming && is_running(m->stats.status);
    g_mutex_unlock(&m->lock);
    return a;
}

bool migration_start(Migration *m, const char *uri, GError **errp)
{
    g_autofree char *host = NULL, *port = NULL;

    if (!socket_uri_parse(uri, &host, &port, errp)) {
        return false;
    }
    reap(m, &m->thread, &m->thread_done);
    g_mutex_lock(&m->lock);
    if (is_running(m->stats.status) || m->thread || m->in_thread) {
        g_mutex_unlock(&m->lock);
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                    "There's a migration process in progress");
        return false;
    }
    migration_stats_clear(&m->stats);
    m->stats = (MigrationStats) {
        .status = MIGRATION_STATUS_SETUP,
        .ram_total = m->host.ram->size,
        .ram_remaining = m->host.ram->size,
    };
    m->cancel = false;
    m->committed = false;
    m->postcopy_requested = false;
    m->postcopy_switched = false;
    m->t_start = g_get_monotonic_time();
    g_mutex_unlock(&m->lock);

    g_free(m->uri);
    m->uri = g_strdup(uri);
    m->thread = g_thread_new("migration", precopy_thread, m);
    return true;
}

bool migration_cancel(Migration *m, GError **errp)
{
    g_mutex_lock(&m->lock);
    if (m->stats.incoming || !is_running(m->stats.status)) {
        g_mutex_unlock(&m->lock);
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "no outgoing migration is running");
        return false;
    }
    if (m->postcopy_switched) {
        g_mutex_unlock(&m->lock);
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "migrate_cancel is refused in postcopy: the guest runs on the "
                    "destination, and the pages it still lacks exist only here. "
                    "Let it finish, or after a network failure resume it with "
                    "'migrate_recover URI' on the destination and 'migrate -r URI' "
                    "here");
        return false;
    }
    if (m->committed) {
        g_mutex_unlock(&m->lock);
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "too late to cancel: the destination is taking over the VM");
        return false;
    }
    m->cancel = true;
    m->stats.status = MIGRATION_STATUS_CANCELLING;
    g_cond_broadcast(&m->hint_cond);     /* stop waiting for hints */
    /* Unblocks the sender, the return path and a connect in progress. */
    if (m->fd >= 0) {
        shutdown(m->fd, SHUT_RDWR);
    }
    g_mutex_unlock(&m->lock);
    return true;
}

static gboolean incoming_accept(gint fd, GIOCondition cond, gpointer data)
{
    Migration *m = data;
    (void)cond;

    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (cfd < 0) {
        return G_SOURCE_CONTINUE;
    }
    /* One migration per listen, as QEMU: stop listening, unless postcopy's
     * page channel is still to come (the receiver accepts it, then closes). */
    m->listen_src = 0;
    socket_set_liveness(cfd);
    g_mutex_lock(&m->lock);
    if (!m->caps.postcopy_ram) {
        close(m->listen_fd);
        m->listen_fd = -1;
    }
    m->in_fd = cfd;
    m->t_start = g_get_monotonic_time();
    m->stats.status = MIGRATION_STATUS_ACTIVE;
    g_mutex_unlock(&m->lock);
    m->in_thread = g_thread_new("incoming", incoming_thread, m);
    return G_SOURCE_REMOVE;
}

bool migration_incoming_start(Migration *m, const char *uri, GError **errp)
{
    reap(m, &m->in_thread, &m->in_thread_done);
    if (m->listen_fd >= 0 || m->in_thread || m->listen_src) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                    "an incoming migration is already set up");
        return false;
    }
    int fd = socket_listen(uri, errp);
    if (fd < 0) {
        return false;
    }
    g_mutex_lock(&m->lock);
    migration_stats_clear(&m->stats);
    m->stats = (MigrationStats) {
        .incoming = true,
        .status = MIGRATION_STATUS_SETUP,
        .ram_total = m->host.ram->size,
    };
    g_mutex_unlock(&m->lock);
    m->listen_fd = fd;
    m->listen_src = g_unix_fd_add(fd, G_IO_IN, incoming_accept, m);
    return true;
}

void migration_get_stats(Migration *m, MigrationStats *out)
{
    g_mutex_lock(&m->lock);
    *out = m->stats;
    out->error = g_strdup(m->stats.error);
    if (is_running(m->stats.status) && m->t_start) {
        out->total_time_ms = (g_get_monotonic_time() - m->t_start) / 1000;
    }
    if (m->in_pc) {
        migration_stats_from_uffd(out, m->in_pc);
    }
    g_mutex_unlock(&m->lock);
}

void migration_stats_clear(MigrationStats *s)
{
    g_clear_pointer(&s->error, g_free);
}

MigrationParams migration_get_params(Migration *m)
{
    g_mutex_lock(&m->lock);
    MigrationParams p = m->params;
    g_mutex_unlock(&m->lock);
    return p;
}

MigrationCaps migration_get_caps(Migration *m)
{
    g_mutex_lock(&m->lock);
    MigrationCaps c = m->caps;
    g_mutex_unlock(&m->lock);
    return c;
}

void migration_stats_from_uffd(MigrationStats *s, struct UffdPostcopy *pc)
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

bool migration_start_postcopy(Migration *m, GError **errp)
{
    g_mutex_lock(&m->lock);
    bool ok = false;
    if (!m->caps.postcopy_ram) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "Enable postcopy with migrate_set_capability before the start "
                    "of migration");
    } else if (m->stats.incoming || (m->stats.status != MIGRATION_STATUS_SETUP &&
                                     m->stats.status != MIGRATION_STATUS_ACTIVE)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "postcopy must be started after migration has been started "
                    "(status: %s)", migration_status_str(m->stats.status));
    } else {
        m->postcopy_requested = true;
        ok = true;
    }
    g_mutex_unlock(&m->lock);
    return ok;
}

bool migration_resume(Migration *m, const char *uri, GError **errp)
{
    g_autofree char *host = NULL, *port = NULL;

    if (!socket_uri_parse(uri, &host, &port, errp)) {
        return false;
    }
    g_mutex_lock(&m->lock);
    bool ok = !m->stats.incoming &&
              m->stats.status == MIGRATION_STATUS_POSTCOPY_PAUSED && m->thread;
    if (!ok) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "migrate -r resumes a paused postcopy migration; the "
                    "migration is %s", m->stats.incoming ? "incoming"
                    : migration_status_str(m->stats.status));
    } else {
        g_free(m->resume_uri);
        m->resume_uri = g_strdup(uri);
        g_cond_broadcast(&m->state_cond);
    }
    g_mutex_unlock(&m->lock);
    return ok;
}

bool migration_recover(Migration *m, const char *uri, GError **errp)
{
    g_mutex_lock(&m->lock);
    bool paused = m->stats.incoming &&
                  m->stats.status == MIGRATION_STATUS_POSTCOPY_PAUSED &&
                  m->recover_fd < 0;
    g_mutex_unlock(&m->lock);
    if (!paused) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "migrate_recover needs an incoming postcopy migration that is "
                    "paused (postcopy-paused) and not already recovering");
        return false;
    }
    int fd = socket_listen(uri, errp);
    if (fd < 0) {
        return false;
    }
    g_mutex_lock(&m->lock);
    m->recover_fd = fd;
    g_cond_broadcast(&m->state_cond);
    g_mutex_unlock(&m->lock);
    return true;
}

bool migration_incoming_ram_pending(Migration *m)
{
    g_mutex_lock(&m->lock);
    bool pending = m->in_pc != NULL;
    g_mutex_unlock(&m->lock);
    return pending;
}

bool migration_set_capability(Migration *m, const char *name, bool on,
                              GError **errp)
{
    if (strcmp(name, "verify") && strcmp(name, "free-page-hint") &&
        strcmp(name, "postcopy-ram")) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "unknown capability '%s' (known: verify, free-page-hint, "
                    "postcopy-ram)", name);
        return false;
    }
    if (!strcmp(name, "free-page-hint") && on) {
        MigrationEventData d = { .event = MIGRATION_EV_HINT_PROBE };
        migration_notify(m, &d);
        if (!d.hint_capable) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NODEV,
                        "free-page-hint needs a virtio-balloon device with "
                        "free-page-hint=on%s%s", d.why_not[0] ? ": " : "",
                        d.why_not);
            return false;
        }
    }
    if (!strcmp(name, "postcopy-ram") && on && !uffd_postcopy_probe(errp)) {
        return false;
    }
    g_mutex_lock(&m->lock);
    /* A destination still waiting for its source may change them (QEMU
     * lets -incoming tcp:... be followed by migrate_set_capability). */
    if (is_running(m->stats.status) &&
        !(m->stats.incoming && m->stats.status == MIGRATION_STATUS_SETUP)) {
        g_mutex_unlock(&m->lock);
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "capabilities cannot change while a migration runs");
        return false;
    }
    if (!strcmp(name, "verify")) {
        m->caps.verify = on;
    } else if (!strcmp(name, "postcopy-ram")) {
        m->caps.postcopy_ram = on;
    } else {
        m->caps.free_page_hint = on;
    }
    g_mutex_unlock(&m->lock);
    return true;
}

static bool parse_range(const char *name, const char *value, uint64_t min,
                        uint64_t max, uint64_t *out, GError **errp)
{
    guint64 v;
    if (!g_ascii_string_to_unsigned(value, 10, min, max, &v, NULL)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%s: '%s' is not a number from %" G_GUINT64_FORMAT " to %"
                    G_GUINT64_FORMAT, name, value, min, max);
        return false;
    }
    *out = v;
    return true;
}

bool migration_set_parameter(Migration *m, const char *name, const char *value,
                             GError **errp)
{
    MigrationParams p = migration_get_params(m);
    uint64_t v;

    if (!strcmp(name, "downtime-limit")) {
        if (!parse_range(name, value, 1, 2000000, &v, errp)) {
            return false;
        }
        p.downtime_limit_ms = v;
    } else if (!strcmp(name, "max-bandwidth")) {
        g_autoptr(GError) err = NULL;
        /* As QEMU's HMP: a bare number is MiB/s. */
        if (!size_parse(value, 1 << 20, &v, &err)) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: %s", name,
                        err->message);
            return false;
        }
        p.max_bandwidth = v;
    } else if (!strcmp(name, "compress-method")) {
        if (!strcmp(value, "none")) {
            p.compress_method = COMPRESS_NONE;
        } else if (!strcmp(value, "zstd")) {
            p.compress_method = COMPRESS_ZSTD;
        } else {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                        "%s: '%s' is not none or zstd", name, value);
            return false;
        }
    } else if (!strcmp(name, "compress-level")) {
        if (!parse_range(name, value, 1, 19, &v, errp)) {
            return false;
        }
        p.compress_level = v;
    } else if (!strcmp(name, "compress-threads")) {
        if (!parse_range(name, value, 1, 16, &v, errp)) {
            return false;
        }
        p.compress_threads = v;
    } else {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "unknown parameter '%s' (known: downtime-limit, "
                    "max-bandwidth, compress-method, compress-level, "
                    "compress-threads)", name);
        return false;
    }
    g_mutex_lock(&m->lock);
    bool running = is_running(m->stats.status);
    /* Only the bandwidth may change mid-flight, as in QEMU. */
    if (running && strcmp(name, "max-bandwidth") && strcmp(name, "downtime-limit")) {
        g_mutex_unlock(&m->lock);
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "%s cannot change while a migration runs", name);
        return false;
    }
    m->params = p;
    if (m->tx) {
        uring_tx_set_rate_limit(m->tx, p.max_bandwidth);
    }
    g_mutex_unlock(&m->lock);
    return true;
}
