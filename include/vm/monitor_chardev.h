/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Monitor transports: "-monitor stdio" and
 * "-monitor unix:PATH,server[,nowait]"; a unix socket serves up to 16
 * clients at once, each with its own queue of replies.
 */
#ifndef HINTMIG_MONITOR_CHARDEV_H
#define HINTMIG_MONITOR_CHARDEV_H

#include <glib.h>
#include "hmp/monitor.h"

typedef struct MonitorChardev MonitorChardev;

/*
 * Opens the transport @spec and serves @mon on the default main context.
 * With a unix server and no "nowait", blocks until a client connects.
 * Returns NULL with @errp set on a bad spec or a socket error.
 */
MonitorChardev *monitor_chardev_new(const char *spec, Monitor *mon,
                                    GError **errp);

/* Closes the transport (and removes the socket file). */
void monitor_chardev_free(MonitorChardev *c);

/* Returns true if @spec is "stdio". */
bool monitor_chardev_is_stdio(const char *spec);

#endif
