/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Monitor transports: see include/vm/monitor_chardev.h. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <glib-unix.h>

#include "vm/monitor_chardev.h"

struct MonitorChardev {
    Monitor *mon;
    char *path;          /* unix socket path, or NULL for stdio */
    int listen_fd;
    int in_fd, out_fd;   /* the client; -1 when none */
    guint listen_src, in_src;
    GString *line;
    bool discarding;     /* the current line was too long */
};

bool monitor_chardev_is_stdio(const char *spec)
{
    return !strcmp(spec, "stdio");
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        /* A client that went away must not take the VM with it (SIGPIPE). */
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) {
            n = write(fd, buf, len);           /* stdio */
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;    /* client gone: the read side will notice */
        }
        buf += n;
        len -= n;
    }
}

static void chardev_print(MonitorChardev *c, const char *s)
{
    write_all(c->out_fd, s, strlen(s));
}

static void client_close(MonitorChardev *c);
static gboolean listen_ready(gint fd, GIOCondition cond, gpointer data);

static void run_line(MonitorChardev *c)
{
    g_autoptr(GString) out = g_string_new(NULL);

    if (c->discarding) {
        g_string_append_printf(out, "Error: line too long (at most %d bytes)\n",
                               MONITOR_MAX_LINE);
        c->discarding = false;
    } else {
        monitor_handle_line(c->mon, c->line->str, out);
    }
    g_string_truncate(c->line, 0);
    if (c->out_fd >= 0) {
        g_string_append(out, MONITOR_PROMPT);
        write_all(c->out_fd, out->str, out->len);
    }
}

static gboolean client_readable(gint fd, GIOCondition cond, gpointer data)
{
    MonitorChardev *c = data;
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof(buf));
    (void)cond;

    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        return G_SOURCE_CONTINUE;
    }
    if (n <= 0) {
        c->in_src = 0;
        client_close(c);
        return G_SOURCE_REMOVE;
    }
    for (ssize_t i = 0; i < n && c->in_fd >= 0; i++) {
        if (buf[i] == '\n') {
            run_line(c);    /* may run "quit"; the loop ends after this read */
        } else if (c->line->len >= MONITOR_MAX_LINE) {
            c->discarding = true;
        } else if (buf[i] != '\0') {
            g_string_append_c(c->line, buf[i]);
        }
    }
    return G_SOURCE_CONTINUE;
}

static void client_attach(MonitorChardev *c, int in_fd, int out_fd)
{
    c->in_fd = in_fd;
    c->out_fd = out_fd;
    g_string_truncate(c->line, 0);
    c->discarding = false;
    c->in_src = g_unix_fd_add(in_fd, G_IO_IN | G_IO_HUP | G_IO_ERR,
                              client_readable, c);
    chardev_print(c, monitor_banner());
    chardev_print(c, MONITOR_PROMPT);
}

static void client_close(MonitorChardev *c)
{
    if (c->in_src) {
        g_source_remove(c->in_src);
        c->in_src = 0;
    }
    if (c->path && c->in_fd >= 0) {
        close(c->in_fd);
    }
    c->in_fd = c->out_fd = -1;
    if (c->listen_fd >= 0 && !c->listen_src) {
        /* The next client waiting in the backlog gets its turn. */
        c->listen_src = g_unix_fd_add(c->listen_fd, G_IO_IN, listen_ready, c);
    }
}

static gboolean listen_ready(gint fd, GIOCondition cond, gpointer data)
{
    MonitorChardev *c = data;
    (void)cond;

    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (cfd < 0) {
        return G_SOURCE_CONTINUE;
    }
    /*
     * One client at a time, like QEMU's socket chardev: the others wait in
     * the backlog until this one leaves (client_close listens again), so a
     * client that connects right after another closed is served, not
     * turned away while the close is still on its way.
     */
    c->listen_src = 0;
    client_attach(c, cfd, cfd);
    return G_SOURCE_REMOVE;
}

static bool parse_unix(const char *spec, char **path, bool *wait, GError **errp)
{
    g_auto(GStrv) parts = g_strsplit(spec + strlen("unix:"), ",", -1);
    bool server = false;

    *wait = true;
    if (!parts[0] || !*parts[0]) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "-monitor %s: missing socket path", spec);
        return false;
    }
    for (int i = 1; parts[i]; i++) {
        if (!strcmp(parts[i], "server") || !strcmp(parts[i], "server=on")) {
            server = true;
        } else if (!strcmp(parts[i], "nowait") || !strcmp(parts[i], "wait=off")) {
            *wait = false;
        } else if (!strcmp(parts[i], "wait=on")) {
            *wait = true;
        } else {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "-monitor %s: unknown option '%s'", spec, parts[i]);
            return false;
        }
    }
    if (!server) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "-monitor %s: only server mode is supported "
                    "(use unix:PATH,server,nowait)", spec);
        return false;
    }
    *path = g_strdup(parts[0]);
    return true;
}

static int unix_listen(const char *path, GError **errp)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };

    if (strlen(path) >= sizeof(addr.sun_path)) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "-monitor: socket path '%s' is too long", path);
        return -1;
    }
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "-monitor: socket: %s", g_strerror(errno));
        return -1;
    }
    unlink(path);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        listen(fd, 1) < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "-monitor: cannot listen on %s: %s", path, g_strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

MonitorChardev *monitor_chardev_new(const char *spec, Monitor *mon,
                                    GError **errp)
{
    MonitorChardev *c = g_new0(MonitorChardev, 1);
    c->mon = mon;
    c->listen_fd = c->in_fd = c->out_fd = -1;
    c->line = g_string_new(NULL);

    if (monitor_chardev_is_stdio(spec)) {
        client_attach(c, STDIN_FILENO, STDOUT_FILENO);
        return c;
    }
    bool wait;
    if (!g_str_has_prefix(spec, "unix:")) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "-monitor %s: unsupported (use stdio or "
                    "unix:PATH,server,nowait)", spec);
        goto fail;
    }
    if (!parse_unix(spec, &c->path, &wait, errp)) {
        goto fail;
    }
    c->listen_fd = unix_listen(c->path, errp);
    if (c->listen_fd < 0) {
        goto fail;
    }
    if (wait) {
        g_printerr("hintmig-vm: waiting for a monitor connection on %s\n", c->path);
        int cfd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0) {
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                        "-monitor: accept on %s: %s", c->path, g_strerror(errno));
            goto fail;
        }
        client_attach(c, cfd, cfd);
    }
    if (c->in_fd < 0) {
        c->listen_src = g_unix_fd_add(c->listen_fd, G_IO_IN, listen_ready, c);
    }
    return c;
fail:
    monitor_chardev_free(c);
    return NULL;
}

void monitor_chardev_free(MonitorChardev *c)
{
    if (!c) {
        return;
    }
    client_close(c);
    if (c->listen_src) {
        g_source_remove(c->listen_src);
    }
    if (c->listen_fd >= 0) {
        close(c->listen_fd);
        unlink(c->path);
    }
    g_string_free(c->line, TRUE);
    g_free(c->path);
    g_free(c);
}
