/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Human monitor (HMP): command table, line parsing and dispatch.
 *
 * Transport-free: a chardev feeds it lines and writes out what it returns.
 * The VM, the migration engine and devices each register their own commands
 * with their own opaque pointer, so none of them is a global.  Output follows
 * QEMU's HMP: the same command names, status lines and error forms.
 */
#ifndef HINTMIG_MONITOR_H
#define HINTMIG_MONITOR_H

#include <stdbool.h>
#include <glib.h>

#define MONITOR_PROMPT "(qemu) "
#define MONITOR_MAX_LINE 4096
#define MONITOR_MAX_ARGS 16

typedef struct Monitor Monitor;

/*
 * A command handler.  @argv[0] is the command name, @argv[1..argc-1] its
 * arguments (already counted against min_args/max_args).  Appends output to
 * @out; returns false with @errp set to report an error ("Error: ..." is
 * printed), and must never stop the VM for bad input.
 */
typedef bool (*MonitorCmdFn)(void *opaque, int argc, char **argv, GString *out,
                             GError **errp);

typedef struct MonitorCmd {
    const char *name;
    const char *alias;       /* short form, e.g. "c" for "cont"; or NULL */
    const char *params;      /* usage of the arguments, e.g. "[-d] uri" */
    const char *help;        /* one line */
    int min_args, max_args;  /* not counting the name */
    MonitorCmdFn fn;
} MonitorCmd;

/* Creates a monitor with the built-in "help" and "info" commands. */
Monitor *monitor_new(void);

void monitor_free(Monitor *mon);

/* Registers top-level command @cmd (not copied: keep it static). */
void monitor_register(Monitor *mon, const MonitorCmd *cmd, void *opaque);

/* Registers "info NAME" as @cmd. */
void monitor_register_info(Monitor *mon, const MonitorCmd *cmd, void *opaque);

/*
 * Splits @line into words: blanks separate, double quotes group, a
 * backslash escapes the next character inside quotes.  Returns the words
 * (free with g_strfreev) or NULL with @errp set (unterminated quote, too
 * many words).
 */
char **monitor_tokenize(const char *line, GError **errp);

/*
 * Runs one command line and appends everything it prints to @out, errors
 * included.  Empty lines do nothing.  Never fails.
 */
void monitor_handle_line(Monitor *mon, const char *line, GString *out);

/* Returns the banner a new client sees before the first prompt. */
const char *monitor_banner(void);

#endif
