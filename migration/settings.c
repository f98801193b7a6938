/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Capabilities and parameters, as QEMU names them: set from text (the
 * monitor's words) with every value checked, read back as structs.  They
 * may change only while no migration runs (a destination still waiting for
 * its source excepted, as QEMU allows).
 */
#include <string.h>

#include "migration_priv.h"
#include "migration/uffd_postcopy.h"

HintmigParams hintmig_get_params(Hintmig *m)
{
    g_mutex_lock(&m->lock);
    HintmigParams p = m->params;
    g_mutex_unlock(&m->lock);
    return p;
}

HintmigCaps hintmig_get_caps(Hintmig *m)
{
    g_mutex_lock(&m->lock);
    HintmigCaps c = m->caps;
    g_mutex_unlock(&m->lock);
    return c;
}

bool hintmig_set_capability(Hintmig *m, const char *name, bool on,
                              GError **errp)
{
    if (strcmp(name, "verify") && strcmp(name, "free-page-hint") &&
        strcmp(name, "postcopy-ram") && strcmp(name, "pause-before-switchover") &&
        strcmp(name, "x-verify-full") && strcmp(name, "postcopy-yield") &&
        strcmp(name, "auto-converge")) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "unknown capability '%s' (known: verify, free-page-hint, "
                    "postcopy-ram, postcopy-yield, pause-before-switchover, "
                    "auto-converge, x-verify-full)", name);
        return false;
    }
    if (!strcmp(name, "auto-converge") && on && !m->host.ops->throttle) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_UNSUPPORTED,
                    "auto-converge: this host cannot throttle its vCPUs");
        return false;
    }
    if (!strcmp(name, "free-page-hint") && on) {
        HintmigEventData d = { .event = HINTMIG_EV_HINT_PROBE };
        hm_notify(m, &d);
        if (!d.hint_capable) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_UNSUPPORTED,
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
    if (hm_status_running(m->stats.status) &&
        !(m->stats.incoming && m->stats.status == HINTMIG_STATUS_SETUP)) {
        g_mutex_unlock(&m->lock);
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_BUSY,
                    "capabilities cannot change while a migration runs");
        return false;
    }
    if (!strcmp(name, "verify")) {
        m->caps.verify = on;
    } else if (!strcmp(name, "postcopy-ram")) {
        m->caps.postcopy_ram = on;
    } else if (!strcmp(name, "pause-before-switchover")) {
        m->caps.pause_before_switchover = on;
    } else if (!strcmp(name, "postcopy-yield")) {
        m->caps.postcopy_yield = on;
    } else if (!strcmp(name, "x-verify-full")) {
        m->caps.x_verify_full = on;
    } else if (!strcmp(name, "auto-converge")) {
        m->caps.auto_converge = on;
    } else {
        m->caps.free_page_hint = on;
    }
    g_mutex_unlock(&m->lock);
    return true;
}

unsigned hm_peer_timeout_ms(Hintmig *m, unsigned builtin_ms)
{
    uint64_t t = hintmig_get_params(m).x_peer_timeout_ms;
    return t ? t : builtin_ms;
}

static bool parse_range(const char *name, const char *value, uint64_t min,
                        uint64_t max, uint64_t *out, GError **errp)
{
    guint64 v;
    if (!g_ascii_string_to_unsigned(value, 10, min, max, &v, NULL)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "%s: '%s' is not a number from %" G_GUINT64_FORMAT " to %"
                    G_GUINT64_FORMAT, name, value, min, max);
        return false;
    }
    *out = v;
    return true;
}

/* auto-converge's parameters in @p, by QEMU's names, and their maximum. */
static unsigned *throttle_param(HintmigParams *p, const char *name, uint64_t *max)
{
    *max = 99;
    if (!strcmp(name, "cpu-throttle-initial")) {
        return &p->cpu_throttle_initial;
    } else if (!strcmp(name, "cpu-throttle-increment")) {
        return &p->cpu_throttle_increment;
    } else if (!strcmp(name, "max-cpu-throttle")) {
        return &p->max_cpu_throttle;
    } else if (!strcmp(name, "throttle-trigger-threshold")) {
        *max = 100;
        return &p->throttle_trigger_threshold;
    }
    return NULL;
}

bool hintmig_set_parameter(Hintmig *m, const char *name, const char *value,
                             GError **errp)
{
    HintmigParams p = hintmig_get_params(m);
    unsigned *field;
    uint64_t v, max;

    if (!strcmp(name, "downtime-limit")) {
        if (!parse_range(name, value, 1, 2000000, &v, errp)) {
            return false;
        }
        p.downtime_limit_ms = v;
    } else if (!strcmp(name, "max-bandwidth")) {
        g_autoptr(GError) err = NULL;
        /* As QEMU's HMP: a bare number is MiB/s. */
        if (!hintmig_size_parse(value, 1 << 20, &v, &err)) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID, "%s: %s", name,
                        err->message);
            return false;
        }
        p.max_bandwidth = v;
    } else if (!strcmp(name, "compress-method")) {
        if (!strcmp(value, "none")) {
            p.compress_method = HINTMIG_COMPRESS_NONE;
        } else if (!strcmp(value, "zstd")) {
            p.compress_method = HINTMIG_COMPRESS_ZSTD;
        } else if (!strcmp(value, "auto")) {
            p.compress_method = HINTMIG_COMPRESS_AUTO;
        } else {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                        "%s: '%s' is not auto, none or zstd", name, value);
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
    } else if (!strcmp(name, "multifd-channels")) {
        if (!parse_range(name, value, 1, WIRE_MULTIFD_MAX, &v, errp)) {
            return false;
        }
        p.multifd_channels = v;
    } else if (!strcmp(name, "x-peer-timeout")) {
        if (!parse_range(name, value, 0, 3600000, &v, errp)) {
            return false;
        }
        p.x_peer_timeout_ms = v;
    } else if ((field = throttle_param(&p, name, &max))) {
        if (!parse_range(name, value, 1, max, &v, errp)) {
            return false;
        }
        *field = v;
    } else {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "unknown parameter '%s' (known: downtime-limit, "
                    "max-bandwidth, compress-method, compress-level, "
                    "compress-threads, multifd-channels, x-peer-timeout, "
                    "cpu-throttle-initial, cpu-throttle-increment, "
                    "max-cpu-throttle, throttle-trigger-threshold)", name);
        return false;
    }
    g_mutex_lock(&m->lock);
    bool running = hm_status_running(m->stats.status) &&
                   !(m->stats.incoming && m->stats.status == HINTMIG_STATUS_SETUP);
    /* Only the bandwidth may change mid-flight, as in QEMU. */
    if (running && strcmp(name, "max-bandwidth") && strcmp(name, "downtime-limit")) {
        g_mutex_unlock(&m->lock);
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_BUSY,
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
