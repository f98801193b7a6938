/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Migration URIs and sockets: "tcp:HOST:PORT" (host "0" meaning any) and
 * "unix:PATH".  Sockets the host connected itself ("fd:") come in through
 * hintmig_start_fd() and never reach this file.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <stddef.h>
#include <unistd.h>

#include "migration_priv.h"

static bool unix_addr(const char *uri, struct sockaddr_un *sa, GError **errp)
{
    const char *path = uri + 5;

    if (!*path || strlen(path) >= sizeof(sa->sun_path)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "bad migration URI '%s' (use unix:PATH, at most %zu bytes)",
                    uri, sizeof(sa->sun_path) - 1);
        return false;
    }
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, strlen(path));
    return true;
}

bool socket_uri_parse(const char *uri, char **host, char **port, GError **errp)
{
    g_autofree char *h = NULL;
    const char *colon;

    if (!g_str_has_prefix(uri, "tcp:")) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "unsupported migration URI '%s' (use tcp:HOST:PORT or unix:PATH)",
                    uri);
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
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "bad migration URI '%s' (use tcp:HOST:PORT, port 1-65535)", uri);
        return false;
    }
    *host = g_steal_pointer(&h);
    *port = g_strdup(colon + 1);
    return true;
}

bool socket_uri_check(const char *uri, GError **errp)
{
    if (g_str_has_prefix(uri, "unix:")) {
        struct sockaddr_un sa;
        return unix_addr(uri, &sa, errp);
    }
    g_autofree char *host = NULL, *port = NULL;
    return socket_uri_parse(uri, &host, &port, errp);
}

void socket_set_liveness(int fd)
{
    int one = 1, idle = 5, intvl = 1, cnt = 5;
    unsigned timeout_ms = 20000;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &sl) || ss.ss_family == AF_UNIX) {
        return;                     /* a unix socket's peer death is seen at once */
    }
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
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "cannot resolve '%s': %s", uri, gai_strerror(r));
        return NULL;
    }
    return res;
}

/* Connects a non-blocking socket to @sa within @timeout_ms; the fd or -errno. */
static int connect_addr(int family, const struct sockaddr *sa, socklen_t len,
                        int timeout_ms)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -errno;
    }
    if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        return -err;
    }
    struct pollfd pfd = { .fd = fd, .events = POLLOUT };
    int so_err = 0;
    socklen_t sl = sizeof(so_err);
    if (poll(&pfd, 1, timeout_ms) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &sl) < 0 || so_err) {
        close(fd);
        return -(so_err ? so_err : ETIMEDOUT);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    socket_set_liveness(fd);
    return fd;
}

int socket_connect(const char *uri, int timeout_ms, GError **errp)
{
    int fd = -EINVAL;

    if (g_str_has_prefix(uri, "unix:")) {
        struct sockaddr_un sa;
        if (!unix_addr(uri, &sa, errp)) {
            return -1;
        }
        fd = connect_addr(AF_UNIX, (struct sockaddr *)&sa, sizeof(sa), timeout_ms);
    } else {
        struct addrinfo *res = resolve(uri, false, errp);
        if (!res) {
            return -1;
        }
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            fd = connect_addr(ai->ai_family, ai->ai_addr, ai->ai_addrlen, timeout_ms);
            if (fd >= 0) {
                break;
            }
        }
        freeaddrinfo(res);
    }
    if (fd < 0) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                    "cannot connect to %s: %s", uri, g_strerror(-fd));
        return -1;
    }
    return fd;
}

/* Binds and listens on @sa; the fd or -errno. */
static int listen_addr(int family, const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0) {
        return -errno;
    }
    if (family != AF_UNIX) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    if (bind(fd, sa, len) < 0 || listen(fd, 1) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

int socket_listen(const char *uri, GError **errp)
{
    int fd = -EINVAL;

    if (g_str_has_prefix(uri, "unix:")) {
        struct sockaddr_un sa;
        if (!unix_addr(uri, &sa, errp)) {
            return -1;
        }
        /* As QEMU: a stale socket file from an earlier run is replaced. */
        unlink(sa.sun_path);
        fd = listen_addr(AF_UNIX, (struct sockaddr *)&sa, sizeof(sa));
    } else {
        struct addrinfo *res = resolve(uri, true, errp);
        if (!res) {
            return -1;
        }
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            fd = listen_addr(ai->ai_family, ai->ai_addr, ai->ai_addrlen);
            if (fd >= 0) {
                break;
            }
        }
        freeaddrinfo(res);
    }
    if (fd < 0) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                    "cannot listen on %s: %s", uri, g_strerror(-fd));
        return -1;
    }
    return fd;
}

int socket_check_stream(int fd, bool *listening, GError **errp)
{
    int type = 0, acc = 0;
    socklen_t l1 = sizeof(type), l2 = sizeof(acc);

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l2) < 0) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "file descriptor %d is not a socket: %s", fd, g_strerror(errno));
        return -1;
    }
    if (type != SOCK_STREAM) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "file descriptor %d is not a stream socket", fd);
        return -1;
    }
    if (listening) {
        *listening = acc;
    } else if (acc) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "file descriptor %d is a listening socket, not a connection", fd);
        return -1;
    }
    /* The engine's threads block on it. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    socket_set_liveness(fd);
    return fd;
}

char *socket_peer_uri(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN];

    if (getpeername(fd, (struct sockaddr *)&ss, &sl)) {
        return NULL;
    }
    switch (ss.ss_family) {
    case AF_UNIX: {
        const struct sockaddr_un *su = (const struct sockaddr_un *)&ss;
        size_t n = sl > offsetof(struct sockaddr_un, sun_path)
                   ? strnlen(su->sun_path, sl - offsetof(struct sockaddr_un, sun_path)) : 0;
        /* An unnamed (socketpair) or abstract peer cannot be dialled again. */
        return n && su->sun_path[0] ? g_strdup_printf("unix:%.*s", (int)n, su->sun_path)
                                    : NULL;
    }
    case AF_INET: {
        const struct sockaddr_in *si = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &si->sin_addr, host, sizeof(host));
        return g_strdup_printf("tcp:%s:%u", host, ntohs(si->sin_port));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *si = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &si->sin6_addr, host, sizeof(host));
        return g_strdup_printf("tcp:[%s]:%u", host, ntohs(si->sin6_port));
    }
    }
    return NULL;
}

void hm_socket_peer_timeout(Hintmig *m, int fd)
{
    unsigned t = hintmig_get_params(m).x_peer_timeout_ms;
    if (t) {
        /* Unacknowledged data, or a zero window, for this long. */
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &t, sizeof(t));
    }
}

void hm_set_rcvtimeo(int fd, unsigned ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = ms % 1000 * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}
