/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig-hmp: run monitor commands on a running hintmig-vm (or QEMU) over
 * its unix monitor socket, one command an argument, and print the output.
 */
#include <stdio.h>
#include <stdlib.h>

#include "vm/hmp_client.h"

static const char usage[] =
    "Usage: hintmig-hmp SOCKET COMMAND [COMMAND...]\n"
    "Runs each HMP COMMAND (quote it if it has spaces) on the monitor at\n"
    "SOCKET (a -monitor unix:SOCKET,server,nowait) and prints its output.\n"
    "Exits 1 if the monitor cannot be reached or a command fails to answer\n"
    "within 60 s, 2 on bad usage.\n";

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;

    if (argc >= 2 && (!g_strcmp0(argv[1], "-h") || !g_strcmp0(argv[1], "--help"))) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc < 3) {
        fputs(usage, stderr);
        return 2;
    }
    HmpClient *c = hmp_client_connect(argv[1], 5000, &err);
    if (!c) {
        fprintf(stderr, "hintmig-hmp: %s\n", err->message);
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        g_autofree char *out = hmp_client_command(c, argv[i], 60000, &err);
        if (!out) {
            fprintf(stderr, "hintmig-hmp: %s: %s\n", argv[i], err->message);
            hmp_client_free(c);
            return 1;
        }
        fputs(out, stdout);
    }
    hmp_client_free(c);
    return 0;
}
