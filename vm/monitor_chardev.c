/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Monitor transports: see include/vm/monitor_chardev.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <glib-unix.h>

#include "vm/monitor_chardev.h"

/*
 * A client's replies wait in its own queue and go out as the client takes
 * them, so a client that never reads costs the main loop nothing.  Past
 * OUT_HIGH bytes its input is left unread until the queue drains: the
 * kernel's socket buffers then push back on the client, not on the VM.
 */
#define OUT_HIGH (64 * 1024)
#define MAX_CLIENTS 16

typedef struct MonitorClient {
    MonitorChardev *chr;
    int in_fd, out_fd;
    guint in_src, out_src;
    GString *line;
    bool discarding;     /* the current line was too long */
    GByteArray *unread;  /* read, not yet run: input is suspended */
    GString *out;        /* replies the client has not taken yet */
    bool eof;            /* no more input; close once @out is out */
    bool busy;           /* one of its commands is running */
    bool gone;           /* closed while busy: freed when the command returns */
} MonitorClient;

struct MonitorChardev {
    Monitor *mon;
    char *path;          /* unix socket path, or NULL for stdio */
    int listen_fd;
    guint listen_src;
    GPtrArray *clients;
};

bool monitor_chardev_is_stdio(const char *spec)
{
    return !strcmp(spec, "stdio");
}

static void client_arm_input(MonitorClient *c);
static gboolean listen_ready(gint fd, GIOCondition cond, gpointer data);

static void client_free(MonitorClient *c)
{
    MonitorChardev *chr = c->chr;

    if (c->in_src) {
        g_source_remove(c->in_src);
    }
    if (c->out_src) {
        g_source_remove(c->out_src);
    }
    if (chr->path) {
        close(c->in_fd);
    }
    g_string_free(c->line, TRUE);
    g_string_free(c->out, TRUE);
    g_byte_array_free(c->unread, TRUE);
    g_ptr_array_remove_fast(chr->clients, c);
    g_free(c);
    if (chr->listen_fd >= 0 && !chr->listen_src &&
        chr->clients->len < MAX_CLIENTS) {
        chr->listen_src = g_unix_fd_add(chr->listen_fd, G_IO_IN, listen_ready, chr);
    }
}

/* Closes @c now, or as soon as its running command returns. */
static void client_close(MonitorClient *c)
{
    if (!c->busy) {
        client_free(c);
        return;
    }
    c->gone = true;
    if (c->in_src) {
        g_source_remove(c->in_src);
        c->in_src = 0;
    }
    if (c->out_src) {
        g_source_remove(c->out_src);
        c->out_src = 0;
    }
}

/* One non-blocking write of the queue's head; -1 with errno as write(2). */
static ssize_t client_write(MonitorClient *c)
{
    if (c->chr->path) {
        /* A client that went away must not take the VM with it (SIGPIPE). */
        return send(c->out_fd, c->out->str, c->out->len,
                    MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    /*
     * stdout is not ours to make non-blocking (the terminal shares it);
     * once poll says it is writable, a pipe or tty takes PIPE_BUF bytes
     * without blocking.
     */
    struct pollfd p = { .fd = c->out_fd, .events = POLLOUT };
    if (poll(&p, 1, 0) <= 0) {
        errno = EAGAIN;
        return -1;
    }
    return write(c->out_fd, c->out->str, MIN(c->out->len, (gsize)PIPE_BUF));
}

static gboolean client_writable(gint fd, GIOCondition cond, gpointer data);

/* Sends what the client will take now; false if it is gone. */
static bool client_flush(MonitorClient *c)
{
    while (c->out->len) {
        ssize_t n = client_write(c);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (n <= 0) {
            return false;
        }
        g_string_erase(c->out, 0, n);
    }
    if (c->out->len && !c->out_src) {
        c->out_src = g_unix_fd_add(c->out_fd, G_IO_OUT | G_IO_ERR | G_IO_HUP,
                                   client_writable, c);
    }
    return true;
}

static void run_line(MonitorClient *c)
{
    g_autoptr(GString) out = g_string_new(NULL);

    if (c->discarding) {
        g_string_append_printf(out, "Error: line too long (at most %d bytes)\n",
                               MONITOR_MAX_LINE);
        c->discarding = false;
    } else {
        monitor_handle_line(c->chr->mon, c->line->str, out);
    }
    g_string_truncate(c->line, 0);
    g_string_append(out, MONITOR_PROMPT);
    g_string_append_len(c->out, out->str, out->len);
}

/*
 * Runs the complete lines read so far, stopping while the client has more
 * than OUT_HIGH bytes of replies to take; then flushes, and listens for
 * more input if it may.  Returns false if @c was freed.
 */
static bool client_process(MonitorClient *c)
{
    guint i = 0;

    c->busy = true;
    while (i < c->unread->len && !c->gone && c->out->len <= OUT_HIGH) {
        char ch = c->unread->data[i++];
        if (ch == '\n') {
            run_line(c);  /* may run "quit": the main loop ends after this */
        } else if (c->line->len >= MONITOR_MAX_LINE) {
            c->discarding = true;
        } else if (ch != '\0') {
            g_string_append_c(c->line, ch);
        }
    }
    g_byte_array_remove_range(c->unread, 0, i);
    c->busy = false;
    if (c->gone || !client_flush(c)) {
        client_free(c);
        return false;
    }
    if (c->eof && !c->unread->len && !c->out->len) {
        client_free(c);
        return false;
    }
    client_arm_input(c);
    return true;
}

static gboolean client_readable(gint fd, GIOCondition cond, gpointer data)
{
    MonitorClient *c = data;
    guint8 buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));
    (void)cond;

    c->in_src = 0;    /* client_process arms it again when it may read */
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        client_arm_input(c);
        return G_SOURCE_REMOVE;
    }
    if (n <= 0) {
        c->eof = true;   /* replies already queued still go out */
    } else {
        g_byte_array_append(c->unread, buf, n);
    }
    client_process(c);
    return G_SOURCE_REMOVE;
}

static gboolean client_writable(gint fd, GIOCondition cond, gpointer data)
{
    MonitorClient *c = data;
    (void)fd, (void)cond;

    c->out_src = 0;
    if (!client_flush(c)) {
        client_close(c);
    } else if (!c->busy) {
        client_process(c);   /* input suspended for the queue may resume */
    }
    return G_SOURCE_REMOVE;
}

/* Reads on only while the client takes its replies. */
static void client_arm_input(MonitorClient *c)
{
    if (!c->in_src && !c->eof && !c->gone && c->out->len <= OUT_HIGH) {
        c->in_src = g_unix_fd_add(c->in_fd, G_IO_IN | G_IO_HUP | G_IO_ERR,
                                  client_readable, c);
    }
}

static void client_new(MonitorChardev *chr, int in_fd, int out_fd)
{
    MonitorClient *c = g_new0(MonitorClient, 1);

    c->chr = chr;
    c->in_fd = in_fd;
    c->out_fd = out_fd;
    c->line = g_string_new(NULL);
    c->out = g_string_new(monitor_banner());
    g_string_append(c->out, MONITOR_PROMPT);
    c->unread = g_byte_array_new();
    g_ptr_array_add(chr->clients, c);
    client_process(c);
}

static gboolean listen_ready(gint fd, GIOCondition cond, gpointer data)
{
    MonitorChardev *chr = data;
    (void)cond;

    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (cfd >= 0) {
        client_new(chr, cfd, cfd);
    }
    if (chr->clients->len >= MAX_CLIENTS) {
        /* The rest wait in the backlog until a client leaves. */
        chr->listen_src = 0;
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
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
        listen(fd, MAX_CLIENTS) < 0) {
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
    MonitorChardev *chr = g_new0(MonitorChardev, 1);
    chr->mon = mon;
    chr->listen_fd = -1;
    chr->clients = g_ptr_array_new();

    if (monitor_chardev_is_stdio(spec)) {
        client_new(chr, STDIN_FILENO, STDOUT_FILENO);
        return chr;
    }
    bool wait;
    if (!g_str_has_prefix(spec, "unix:")) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "-monitor %s: unsupported (use stdio or "
                    "unix:PATH,server,nowait)", spec);
        goto fail;
    }
    if (!parse_unix(spec, &chr->path, &wait, errp)) {
        goto fail;
    }
    chr->listen_fd = unix_listen(chr->path, errp);
    if (chr->listen_fd < 0) {
        goto fail;
    }
    if (wait) {
        g_printerr("hintmig-vm: waiting for a monitor connection on %s\n",
                   chr->path);
        int cfd = accept4(chr->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0) {
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                        "-monitor: accept on %s: %s", chr->path,
                        g_strerror(errno));
            goto fail;
        }
        client_new(chr, cfd, cfd);
    }
    if (!chr->listen_src) {
        chr->listen_src = g_unix_fd_add(chr->listen_fd, G_IO_IN, listen_ready, chr);
    }
    return chr;
fail:
    monitor_chardev_free(chr);
    return NULL;
}

void monitor_chardev_free(MonitorChardev *chr)
{
    if (!chr) {
        return;
    }
    if (chr->listen_src) {
        g_source_remove(chr->listen_src);
        chr->listen_src = 0;
    }
    if (chr->listen_fd >= 0) {
        close(chr->listen_fd);
        chr->listen_fd = -1;     /* client_free must not listen again */
        unlink(chr->path);
    }
    while (chr->clients->len) {
        client_free(g_ptr_array_index(chr->clients, 0));
    }
    g_ptr_array_free(chr->clients, TRUE);
    g_free(chr->path);
    g_free(chr);
}
