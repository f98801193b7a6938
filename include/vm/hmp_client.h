/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A client for an HMP monitor on a unix socket (hintmig-vm's or QEMU's):
 * send one command line, get back what it printed before the next prompt.
 */
#ifndef HINTMIG_HMP_CLIENT_H
#define HINTMIG_HMP_CLIENT_H

#include <glib.h>

typedef struct HmpClient HmpClient;

/*
 * Connects to the monitor at @path, retrying until @timeout_ms passes (the
 * VM may still be starting), and reads the banner.  Returns NULL with @errp
 * set on failure.
 */
HmpClient *hmp_client_connect(const char *path, int timeout_ms, GError **errp);

/*
 * Sends @cmd and returns its output without the trailing prompt (free with
 * g_free), or NULL with @errp set if the monitor went away or said nothing
 * within @timeout_ms.  "quit" returns what was printed before the close.
 */
char *hmp_client_command(HmpClient *c, const char *cmd, int timeout_ms,
                         GError **errp);

void hmp_client_free(HmpClient *c);

#endif
