/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The migration monitor commands, in QEMU's HMP names and output: migrate,
 * migrate_incoming, migrate_cancel, migrate_set_capability,
 * migrate_set_parameter and info migrate / migrate_capabilities /
 * migrate_parameters.  hintmig's own lines follow QEMU's in info migrate.
 */
#include <string.h>

#include "hintmig/hintmig.h"
#include "hmp/migration_hmp.h"

static bool hmp_migrate(void *opaque, int argc, char **argv, GString *out,
                        GError **errp)
{
    Hintmig *m = opaque;
    bool detach = argc == 3;

    if (argc == 3 && !strcmp(argv[1], "-r")) {
        /* As QEMU: resume a paused postcopy migration. */
        return hintmig_resume(m, argv[2], errp);
    }
    if (argc == 3 && strcmp(argv[1], "-d")) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "migrate: unknown flag '%s' (usage: migrate [-d|-r] uri)",
                    argv[1]);
        return false;
    }
    if (!hintmig_start(m, argv[argc - 1], errp)) {
        return false;
    }
    if (detach) {
        return true;
    }
    /* Without -d, as QEMU: return when it is over, keeping the loop alive. */
    while (hintmig_is_active(m)) {
        g_main_context_iteration(NULL, FALSE);
        g_usleep(2000);
    }
    HintmigStats s;
    hintmig_get_stats(m, &s);
    bool ok = s.status == HINTMIG_STATUS_COMPLETED;
    if (!ok) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED, "migration %s: %s",
                    hintmig_status_str(s.status), s.error ? s.error : "");
    }
    (void)out;
    hintmig_stats_clear(&s);
    return ok;
}

static bool hmp_migrate_incoming(void *opaque, int argc, char **argv,
                                 GString *out, GError **errp)
{
    Hintmig *m = opaque;
    (void)argc, (void)out;

    return hintmig_incoming_start(m, argv[1], errp);
}

static bool hmp_migrate_cancel(void *opaque, int argc, char **argv, GString *out,
                               GError **errp)
{
    (void)argc, (void)argv, (void)out;
    return hintmig_cancel(opaque, errp);
}

static bool hmp_migrate_start_postcopy(void *opaque, int argc, char **argv,
                                       GString *out, GError **errp)
{
    (void)argc, (void)argv, (void)out;
    return hintmig_start_postcopy(opaque, errp);
}

static bool hmp_migrate_continue(void *opaque, int argc, char **argv,
                                 GString *out, GError **errp)
{
    (void)argc, (void)out;
    /* As QEMU: the state named must be the one the migration waits in. */
    if (strcmp(argv[1], "pre-switchover")) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "migrate_continue: state '%s' is not pre-switchover", argv[1]);
        return false;
    }
    return hintmig_continue(opaque, errp);
}

static bool hmp_migrate_recover(void *opaque, int argc, char **argv, GString *out,
                                GError **errp)
{
    (void)argc, (void)out;
    return hintmig_recover(opaque, argv[1], errp);
}

static bool parse_on_off(const char *s, bool *out, GError **errp)
{
    if (!strcmp(s, "on") || !strcmp(s, "true")) {
        *out = true;
    } else if (!strcmp(s, "off") || !strcmp(s, "false")) {
        *out = false;
    } else {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "'%s' is not on or off", s);
        return false;
    }
    return true;
}

static bool hmp_set_capability(void *opaque, int argc, char **argv, GString *out,
                               GError **errp)
{
    bool on;
    (void)argc, (void)out;
    return parse_on_off(argv[2], &on, errp) &&
           hintmig_set_capability(opaque, argv[1], on, errp);
}

static bool hmp_set_parameter(void *opaque, int argc, char **argv, GString *out,
                              GError **errp)
{
    (void)argc, (void)out;
    return hintmig_set_parameter(opaque, argv[1], argv[2], errp);
}

static void kbytes(GString *out, const char *name, uint64_t bytes)
{
    g_string_append_printf(out, "%s: %" G_GUINT64_FORMAT " kbytes\n", name,
                           bytes >> 10);
}

static bool hmp_info_migrate(void *opaque, int argc, char **argv, GString *out,
                             GError **errp)
{
    Hintmig *m = opaque;
    HintmigStats s;
    (void)argc, (void)argv, (void)errp;

    hintmig_get_stats(m, &s);
    if (s.status == HINTMIG_STATUS_NONE) {
        hintmig_stats_clear(&s);
        return true;        /* QEMU prints nothing before the first migration */
    }
    g_string_append_printf(out, "Migration status: %s", hintmig_status_str(s.status));
    if ((s.status == HINTMIG_STATUS_FAILED || s.status == HINTMIG_STATUS_CANCELLED ||
         s.status == HINTMIG_STATUS_POSTCOPY_PAUSED) && s.error) {
        g_string_append_printf(out, " (%s)", s.error);
    }
    g_string_append_c(out, '\n');
    if (s.incoming) {
        g_string_append(out, "direction: incoming\n");
    }
    g_string_append_printf(out, "total time: %" G_GUINT64_FORMAT " ms\n", s.total_time_ms);
    if (!s.incoming) {
        if (s.status == HINTMIG_STATUS_COMPLETED) {
            g_string_append_printf(out, "downtime: %" G_GUINT64_FORMAT " ms\n",
                                   s.downtime_ms);
        } else {
            g_string_append_printf(out, "expected downtime: %" G_GUINT64_FORMAT " ms\n",
                                   s.expected_downtime_ms);
        }
        g_string_append_printf(out, "setup: %" G_GUINT64_FORMAT " ms\n", s.setup_time_ms);
    }
    kbytes(out, "transferred ram", s.transferred_ram);
    g_string_append_printf(out, "throughput: %0.2f mbps\n", s.throughput_mbps);
    if (!s.incoming) {
        kbytes(out, "remaining ram", s.ram_remaining);
    }
    kbytes(out, "total ram", s.ram_total);
    g_string_append_printf(out, "duplicate: %" G_GUINT64_FORMAT " pages\n",
                           s.duplicate_pages);
    g_string_append_printf(out, "normal: %" G_GUINT64_FORMAT " pages\n", s.normal_pages);
    kbytes(out, "normal bytes", s.normal_bytes);
    if (!s.incoming) {
        g_string_append_printf(out, "dirty sync count: %" G_GUINT64_FORMAT "\n",
                               s.dirty_sync_count);
    }
    g_string_append(out, "page size: 4 kbytes\n");
    if (!s.incoming) {
        g_string_append_printf(out, "dirty pages rate: %" G_GUINT64_FORMAT " pages\n",
                               s.dirty_pages_rate);
    }
    if (s.postcopy) {
        g_string_append_printf(out, "postcopy request count: %" G_GUINT64_FORMAT "\n",
                               s.postcopy_requests);
    }
    hintmig_stats_describe(&s, out);     /* hintmig's own lines */
    hintmig_stats_clear(&s);
    return true;
}

static bool hmp_info_caps(void *opaque, int argc, char **argv, GString *out,
                          GError **errp)
{
    HintmigCaps c = hintmig_get_caps(opaque);
    (void)argc, (void)argv, (void)errp;
    g_string_append_printf(out, "verify: %s\nfree-page-hint: %s\npostcopy-ram: %s\n"
                           "postcopy-yield: %s\n"
                           "pause-before-switchover: %s\nauto-converge: %s\n"
                           "x-verify-full: %s\n",
                           c.verify ? "on" : "off", c.free_page_hint ? "on" : "off",
                           c.postcopy_ram ? "on" : "off", c.postcopy_yield ? "on" : "off",
                           c.pause_before_switchover ? "on" : "off",
                           c.auto_converge ? "on" : "off",
                           c.x_verify_full ? "on" : "off");
    return true;
}

static bool hmp_info_params(void *opaque, int argc, char **argv, GString *out,
                            GError **errp)
{
    HintmigParams p = hintmig_get_params(opaque);
    (void)argc, (void)argv, (void)errp;
    g_string_append_printf(out,
                           "downtime-limit: %" G_GUINT64_FORMAT " ms\n"
                           "max-bandwidth: %" G_GUINT64_FORMAT " bytes/second%s\n"
                           "compress-method: %s\n"
                           "compress-level: %d\n"
                           "compress-threads: %u\n"
                           "multifd-channels: %u\n"
                           "x-peer-timeout: %" G_GUINT64_FORMAT " ms%s\n"
                           "cpu-throttle-initial: %u%%\n"
                           "cpu-throttle-increment: %u%%\n"
                           "max-cpu-throttle: %u%%\n"
                           "throttle-trigger-threshold: %u%%\n",
                           p.downtime_limit_ms, p.max_bandwidth,
                           p.max_bandwidth ? "" : " (unlimited)",
                           p.compress_method == HINTMIG_COMPRESS_ZSTD ? "zstd"
                           : p.compress_method == HINTMIG_COMPRESS_AUTO ? "auto" : "none",
                           p.compress_level, p.compress_threads, p.multifd_channels,
                           p.x_peer_timeout_ms,
                           p.x_peer_timeout_ms ? "" : " (built-in waits)",
                           p.cpu_throttle_initial, p.cpu_throttle_increment,
                           p.max_cpu_throttle, p.throttle_trigger_threshold);
    return true;
}

static const MonitorCmd cmds[] = {
    { "migrate", NULL, "[-d|-r] uri",
      "migrate to URI (using -d to not wait for completion; -r to resume a "
      "paused postcopy migration)", 1, 2, hmp_migrate },
    { "migrate_start_postcopy", NULL, NULL,
      "switch the running migration to postcopy (needs postcopy-ram on both "
      "sides)", 0, 0, hmp_migrate_start_postcopy },
    { "migrate_recover", NULL, "uri",
      "destination: listen on URI for the source of a paused postcopy migration",
      1, 1, hmp_migrate_recover },
    { "migrate_incoming", NULL, "uri",
      "continue an incoming migration from an -incoming defer", 1, 1,
      hmp_migrate_incoming },
    { "migrate_cancel", NULL, NULL, "cancel the current VM migration", 0, 0,
      hmp_migrate_cancel },
    { "migrate_continue", NULL, "state",
      "continue a migration paused in STATE (pre-switchover)", 1, 1,
      hmp_migrate_continue },
    { "migrate_set_capability", NULL, "capability state",
      "enable/disable the usage of a capability for migration", 2, 2,
      hmp_set_capability },
    { "migrate_set_parameter", NULL, "parameter value",
      "set a parameter for migration", 2, 2, hmp_set_parameter },
};

static const MonitorCmd infos[] = {
    { "migrate", NULL, NULL, "show migration status", 0, 0, hmp_info_migrate },
    { "migrate_capabilities", NULL, NULL, "show current migration capabilities",
      0, 0, hmp_info_caps },
    { "migrate_parameters", NULL, NULL, "show current migration parameters",
      0, 0, hmp_info_params },
};

void hmp_migration_register(Hintmig *m, Monitor *mon)
{
    for (size_t i = 0; i < G_N_ELEMENTS(cmds); i++) {
        monitor_register(mon, &cmds[i], m);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(infos); i++) {
        monitor_register_info(mon, &infos[i], m);
    }
}
