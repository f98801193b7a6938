/* SPDX-License-Identifier: GPL-2.0-or-later */
/* HMP command table, tokenizer and dispatch: see include/migration/monitor.h. */
#include <string.h>

#include "hmp/monitor.h"

typedef struct MonitorEntry {
    const MonitorCmd *cmd;
    void *opaque;
} MonitorEntry;

struct Monitor {
    GArray *cmds;     /* MonitorEntry, in registration order (for help) */
    GArray *infos;
    GHashTable *by_name;   /* name and alias -> index into cmds */
    GHashTable *info_by_name;
};

static bool cmd_help(void *opaque, int argc, char **argv, GString *out,
                     GError **errp);
static bool cmd_info(void *opaque, int argc, char **argv, GString *out,
                     GError **errp);

static const MonitorCmd help_cmd = {
    .name = "help", .alias = "?", .params = "[cmd]",
    .help = "show the help", .min_args = 0, .max_args = 1, .fn = cmd_help,
};
static const MonitorCmd info_cmd = {
    .name = "info", .params = "[subcommand]",
    .help = "show various information about the system state",
    .min_args = 0, .max_args = MONITOR_MAX_ARGS - 2, .fn = cmd_info,
};

const char *monitor_banner(void)
{
    return "hintmig-vm " HINTMIG_VERSION " monitor - type 'help' for more information\n";
}

static void add(GArray *arr, GHashTable *idx, const MonitorCmd *cmd,
                void *opaque)
{
    MonitorEntry e = { cmd, opaque };
    g_array_append_val(arr, e);
    g_hash_table_insert(idx, (gpointer)cmd->name, GUINT_TO_POINTER(arr->len));
    if (cmd->alias) {
        g_hash_table_insert(idx, (gpointer)cmd->alias, GUINT_TO_POINTER(arr->len));
    }
}

static const MonitorEntry *lookup(GArray *arr, GHashTable *idx, const char *name)
{
    guint i = GPOINTER_TO_UINT(g_hash_table_lookup(idx, name));
    return i ? &g_array_index(arr, MonitorEntry, i - 1) : NULL;
}

Monitor *monitor_new(void)
{
    Monitor *mon = g_new0(Monitor, 1);
    mon->cmds = g_array_new(FALSE, FALSE, sizeof(MonitorEntry));
    mon->infos = g_array_new(FALSE, FALSE, sizeof(MonitorEntry));
    mon->by_name = g_hash_table_new(g_str_hash, g_str_equal);
    mon->info_by_name = g_hash_table_new(g_str_hash, g_str_equal);
    monitor_register(mon, &help_cmd, mon);
    monitor_register(mon, &info_cmd, mon);
    return mon;
}

void monitor_free(Monitor *mon)
{
    if (!mon) {
        return;
    }
    g_array_free(mon->cmds, TRUE);
    g_array_free(mon->infos, TRUE);
    g_hash_table_destroy(mon->by_name);
    g_hash_table_destroy(mon->info_by_name);
    g_free(mon);
}

void monitor_register(Monitor *mon, const MonitorCmd *cmd, void *opaque)
{
    add(mon->cmds, mon->by_name, cmd, opaque);
}

void monitor_register_info(Monitor *mon, const MonitorCmd *cmd, void *opaque)
{
    add(mon->infos, mon->info_by_name, cmd, opaque);
}

char **monitor_tokenize(const char *line, GError **errp)
{
    GPtrArray *words = g_ptr_array_new_with_free_func(g_free);
    const char *p = line;

    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
            p++;
        }
        if (!*p) {
            break;
        }
        if (words->len >= MONITOR_MAX_ARGS) {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                        "too many arguments (at most %d)", MONITOR_MAX_ARGS - 1);
            goto fail;
        }
        GString *w = g_string_new(NULL);
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1]) {
                    p++;
                }
                g_string_append_c(w, *p);
            }
            if (*p != '"') {
                g_string_free(w, TRUE);
                g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                            "unterminated string literal");
                goto fail;
            }
            p++;
        } else {
            while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
                g_string_append_c(w, *p++);
            }
        }
        g_ptr_array_add(words, g_string_free(w, FALSE));
    }
    g_ptr_array_add(words, NULL);
    return (char **)g_ptr_array_free(words, FALSE);
fail:
    g_ptr_array_free(words, TRUE);
    return NULL;
}

static void print_help(GString *out, const char *prefix, const MonitorCmd *c)
{
    g_string_append_printf(out, "%s%s%s%s%s%s -- %s\n", prefix, c->name,
                           c->alias ? "|" : "", c->alias ? c->alias : "",
                           c->params ? " " : "", c->params ? c->params : "",
                           c->help);
}

static bool cmd_help(void *opaque, int argc, char **argv, GString *out,
                     GError **errp)
{
    Monitor *mon = opaque;

    if (argc == 2) {
        const MonitorEntry *e = lookup(mon->cmds, mon->by_name, argv[1]);
        if (!e) {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_UNKNOWN_OPTION,
                        "unknown command: '%s'", argv[1]);
            return false;
        }
        print_help(out, "", e->cmd);
        return true;
    }
    for (guint i = 0; i < mon->cmds->len; i++) {
        print_help(out, "", g_array_index(mon->cmds, MonitorEntry, i).cmd);
    }
    return true;
}

static bool cmd_info(void *opaque, int argc, char **argv, GString *out,
                     GError **errp)
{
    Monitor *mon = opaque;

    if (argc == 1) {
        for (guint i = 0; i < mon->infos->len; i++) {
            print_help(out, "info ", g_array_index(mon->infos, MonitorEntry, i).cmd);
        }
        return true;
    }
    const MonitorEntry *e = lookup(mon->infos, mon->info_by_name, argv[1]);
    if (!e) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_UNKNOWN_OPTION,
                    "unknown command: 'info %s'", argv[1]);
        return false;
    }
    int sub_argc = argc - 1;
    if (sub_argc - 1 < e->cmd->min_args || sub_argc - 1 > e->cmd->max_args) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "info %s: %s (usage: info %s%s%s)", argv[1],
                    sub_argc - 1 < e->cmd->min_args ? "missing argument"
                        : "extraneous characters at the end of line",
                    argv[1], e->cmd->params ? " " : "",
                    e->cmd->params ? e->cmd->params : "");
        return false;
    }
    return e->cmd->fn(e->opaque, sub_argc, argv + 1, out, errp);
}

void monitor_handle_line(Monitor *mon, const char *line, GString *out)
{
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) argv = monitor_tokenize(line, &err);

    if (!argv) {
        g_string_append_printf(out, "Error: %s\n", err->message);
        return;
    }
    int argc = g_strv_length(argv);
    if (!argc) {
        return;
    }
    const MonitorEntry *e = lookup(mon->cmds, mon->by_name, argv[0]);
    if (!e) {
        g_string_append_printf(out, "unknown command: '%s'\n", argv[0]);
        return;
    }
    if (argc - 1 > e->cmd->max_args) {
        g_string_append_printf(out, "%s: extraneous characters at the end of line\n",
                               argv[0]);
        return;
    }
    if (argc - 1 < e->cmd->min_args) {
        g_string_append_printf(out, "Error: %s: missing argument (usage: %s %s)\n",
                               argv[0], e->cmd->name,
                               e->cmd->params ? e->cmd->params : "");
        return;
    }
    if (!e->cmd->fn(e->opaque, argc, argv, out, &err)) {
        /* QEMU prints bare "unknown command" lines; everything else is an Error. */
        if (g_error_matches(err, G_OPTION_ERROR, G_OPTION_ERROR_UNKNOWN_OPTION)) {
            g_string_append_printf(out, "%s\n", err->message);
        } else {
            g_string_append_printf(out, "Error: %s\n", err->message);
        }
    }
}
