/* SPDX-License-Identifier: GPL-2.0-or-later */
/* HMP client over a unix socket: see include/vm/hmp_client.h. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vm/hmp_client.h"
#include "hmp/monitor.h"

struct HmpClient {
    int fd;
    GString *buf;
};

/* Reads until the buffer ends with the prompt, EOF, or the deadline. */
static bool read_to_prompt(HmpClient *c, gint64 deadline, bool *eof,
                           GError **errp)
{
    *eof = false;
    while (!g_str_has_suffix(c->buf->str, MONITOR_PROMPT)) {
        int left = (int)((deadline - g_get_monotonic_time()) / 1000);
        if (left <= 0) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_AGAIN,
                        "monitor did not answer in time");
            return false;
        }
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            continue;
        }
        char tmp[4096];
        ssize_t n = read(c->fd, tmp, sizeof(tmp));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            *eof = true;
            return true;
        }
        g_string_append_len(c->buf, tmp, n);
    }
    return true;
}

HmpClient *hmp_client_connect(const char *path, int timeout_ms, GError **errp)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    if (strlen(path) >= sizeof(addr.sun_path)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NAMETOOLONG,
                    "socket path '%s' is too long", path);
        return NULL;
    }
    strcpy(addr.sun_path, path);
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                        "socket: %s", g_strerror(errno));
            return NULL;
        }
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
            HmpClient *c = g_new0(HmpClient, 1);
            c->fd = fd;
            c->buf = g_string_new(NULL);
            bool eof;
            if (!read_to_prompt(c, deadline, &eof, errp)) {
                hmp_client_free(c);
                return NULL;
            }
            if (eof) {
                g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PIPE,
                            "monitor %s closed the connection (busy with "
                            "another client?)", path);
                hmp_client_free(c);
                return NULL;
            }
            g_string_truncate(c->buf, 0);
            return c;
        }
        int err = errno;
        close(fd);
        if (g_get_monotonic_time() >= deadline) {
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                        "cannot connect to monitor %s: %s", path,
                        g_strerror(err));
            return NULL;
        }
        g_usleep(20000);
    }
}

char *hmp_client_command(HmpClient *c, const char *cmd, int timeout_ms,
                         GError **errp)
{
    g_autofree char *line = g_strdup_printf("%s\n", cmd);
    size_t off = 0, len = strlen(line);
    bool eof;

    while (off < len) {
        ssize_t n = send(c->fd, line + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                        "monitor connection lost: %s", g_strerror(errno));
            return NULL;
        }
        off += n;
    }
    if (!read_to_prompt(c, g_get_monotonic_time() + (gint64)timeout_ms * 1000,
                        &eof, errp)) {
        return NULL;
    }
    if (!eof) {
        g_string_truncate(c->buf, c->buf->len - strlen(MONITOR_PROMPT));
    }
    char *out = g_strdup(c->buf->str);
    g_string_truncate(c->buf, 0);
    return out;
}

void hmp_client_free(HmpClient *c)
{
    if (c) {
        close(c->fd);
        g_string_free(c->buf, TRUE);
        g_free(c);
    }
}
