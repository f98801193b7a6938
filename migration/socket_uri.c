/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Migration URIs and TCP sockets: "tcp:HOST:PORT", host "0" meaning any. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration_priv.h"

bool socket_uri_parse(const char *uri, char **host, char **port, GError **errp)
{
    g_autofree char *h = NULL;
    const char *colon;

    if (!g_str_has_prefix(uri, "tcp:")) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "unsupported migration URI '%s' (use tcp:HOST:PORT)", uri);
        return false;
    }
    const char *hp = uri + 4;
    if (*hp == '[') {               /* [v6 address]:port */
        const char *close = strchr(hp, ']');
        colon = close && close[1] == ':' ? close + 1 : NULL;
        h = colon ? g_strndup(hp + 1, close - hp - 1) : NULL;
    } else {
        colon = strrchr(hp, ':');
        h = colon ? g_strndup(hp, colon - hp) : NULL;
    }
    guint64 p;
    if (!colon || !g_ascii_string_to_unsigned(colon + 1, 10, 1, 65535, &p, NULL)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "bad migration URI '%s' (use tcp:HOST:PORT, port 1-65535)", uri);
        return false;
    }
    *host = g_steal_pointer(&h);
    *port = g_strdup(colon + 1);
    return true;
}

void socket_set_liveness(int fd)
{
    int one = 1, idle = 5, intvl = 1, cnt = 5;
    unsigned timeout_ms = 20000;

    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    /* Unacknowledged data for this long means the peer is gone. */
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout_ms, sizeof(timeout_ms));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static struct addrinfo *resolve(const char *uri, bool passive, GError **errp)
{
    g_autofree char *host = NULL, *port = NULL;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = passive ? AI_PASSIVE : 0 }, *res;

    if (!socket_uri_parse(uri, &host, &port, errp)) {
        return NULL;
    }
    const char *h = host;
    if (passive && (!*h || !strcmp(h, "0"))) {
        h = NULL;                   /* QEMU's tcp:0:PORT: every address */
        hints.ai_family = AF_INET;
    }
    int r = getaddrinfo(h, port, &hints, &res);
    if (r) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "cannot resolve '%s': %s", uri, gai_strerror(r));
        return NULL;
    }
    return res;
}

int socket_connect(const char *uri, int timeout_ms, GError **errp)
{
    struct addrinfo *res = resolve(uri, false, errp);
    int err = 0;

    if (!res) {
        return -1;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
            err = errno;
            close(fd);
            continue;
        }
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        int so_err = 0;
        socklen_t sl = sizeof(so_err);
        if (poll(&pfd, 1, timeout_ms) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &sl) < 0 || so_err) {
            err = so_err ? so_err : ETIMEDOUT;
            close(fd);
            continue;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        socket_set_liveness(fd);
        freeaddrinfo(res);
        return fd;
    }
    freeaddrinfo(res);
    g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                "cannot connect to %s: %s", uri, g_strerror(err));
    return -1;
}

int socket_listen(const char *uri, GError **errp)
{
    struct addrinfo *res = resolve(uri, true, errp);
    int err = 0;

    if (!res) {
        return -1;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd < 0) {
            err = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1) < 0) {
            err = errno;
            close(fd);
            continue;
        }
        freeaddrinfo(res);
        return fd;
    }
    freeaddrinfo(res);
    g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                "cannot listen on %s: %s", uri, g_strerror(err));
    return -1;
}
