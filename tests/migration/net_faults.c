/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Network fault injection for migration tests: see net_faults.h. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/wire.h"
#include "net_faults.h"

int test_free_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t l = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int listen_on(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(fd, 4), 0);
    return fd;
}

static void hard_close(int fd, bool reset)
{
    if (reset) {
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(fd);
}

struct Proxy {
    int lfd, to_port;
    ProxyMode mode;
    uint64_t offset;
    GThread *thread;
    int stop_pipe[2];
    GMutex lock;
    uint64_t forwarded;
};

typedef struct ProxyConn {
    Proxy *p;
    int src;
} ProxyConn;

/* Where PROXY_SWALLOW is in the source's stream of messages. */
typedef struct MsgCursor {
    uint8_t hdr[WIRE_HEADER_SIZE];
    unsigned hdr_have;
    uint64_t body_left;
    uint16_t type;
    bool swallowing;
} MsgCursor;

/* Returns how many of @n bytes to forward before swallowing starts. */
static size_t msg_cursor_feed(MsgCursor *mc, const uint8_t *buf, size_t n,
                              uint16_t last_type)
{
    size_t i = 0;

    while (i < n && !mc->swallowing) {
        if (mc->hdr_have < WIRE_HEADER_SIZE) {
            mc->hdr[mc->hdr_have++] = buf[i++];
            if (mc->hdr_have == WIRE_HEADER_SIZE) {
                mc->type = mc->hdr[6] | mc->hdr[7] << 8;
                mc->body_left = mc->hdr[12] | mc->hdr[13] << 8 | mc->hdr[14] << 16 |
                                (uint32_t)mc->hdr[15] << 24;
            }
        } else {
            size_t take = MIN(mc->body_left, n - i);
            i += take;
            mc->body_left -= take;
        }
        if (mc->hdr_have == WIRE_HEADER_SIZE && !mc->body_left) {
            mc->swallowing = mc->type == last_type;
            mc->hdr_have = 0;
        }
    }
    return mc->swallowing ? i : n;
}

/* Forwards one connection until either side closes or the proxy stops. */
static gpointer forward_thread(gpointer data)
{
    ProxyConn *c = data;
    Proxy *p = c->p;
    int src = c->src;
    g_free(c);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(p->to_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int dst = socket(AF_INET, SOCK_STREAM, 0);
    if (src < 0 || connect(dst, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(src);
        close(dst);
        return NULL;
    }
    uint64_t from_src = 0;
    MsgCursor mc = { 0 };
    char buf[65536];
    for (;;) {
        struct pollfd f[3] = { { src, POLLIN, 0 }, { dst, POLLIN, 0 },
                               { p->stop_pipe[0], POLLIN, 0 } };
        if (poll(f, 3, 1000) < 0 || f[2].revents) {
            break;
        }
        if (f[0].revents) {
            size_t want = sizeof(buf);
            if ((p->mode == PROXY_TRUNCATE || p->mode == PROXY_RESET) &&
                from_src < p->offset) {
                want = MIN(want, p->offset - from_src);
            }
            ssize_t n = read(src, buf, want);
            if (n <= 0) {
                break;
            }
            if (p->mode == PROXY_CORRUPT && from_src <= p->offset &&
                p->offset < from_src + n) {
                buf[p->offset - from_src] ^= 0x5a;
            }
            if (p->mode == PROXY_SWALLOW) {
                n = msg_cursor_feed(&mc, (uint8_t *)buf, n, p->offset);
            }
            if (n && send(dst, buf, n, MSG_NOSIGNAL) != n) {
                break;
            }
            from_src += n;
            g_mutex_lock(&p->lock);
            p->forwarded += n;
            g_mutex_unlock(&p->lock);
            if ((p->mode == PROXY_TRUNCATE || p->mode == PROXY_RESET) &&
                from_src >= p->offset) {
                hard_close(src, p->mode == PROXY_RESET);
                hard_close(dst, p->mode == PROXY_RESET);
                return NULL;
            }
        }
        if (f[1].revents) {
            ssize_t n = read(dst, buf, sizeof(buf));
            if (n <= 0 || send(src, buf, n, MSG_NOSIGNAL) != n) {
                break;
            }
        }
    }
    close(src);
    close(dst);
    return NULL;
}

/* Accepts connections (a migration may open several) until stopped. */
static gpointer proxy_thread(gpointer data)
{
    Proxy *p = data;
    g_autoptr(GPtrArray) conns = g_ptr_array_new();

    for (;;) {
        struct pollfd pl[2] = { { p->lfd, POLLIN, 0 }, { p->stop_pipe[0], POLLIN, 0 } };
        if (poll(pl, 2, 60000) <= 0 || pl[1].revents) {
            break;
        }
        ProxyConn *c = g_new(ProxyConn, 1);
        c->p = p;
        c->src = accept(p->lfd, NULL, NULL);
        g_ptr_array_add(conns, g_thread_new("proxy-conn", forward_thread, c));
    }
    /* The stop pipe stays readable: every forwarder sees it and closes. */
    for (guint i = 0; i < conns->len; i++) {
        g_thread_join(conns->pdata[i]);
    }
    return NULL;
}

Proxy *proxy_start(int port, int to_port, ProxyMode mode, uint64_t offset)
{
    Proxy *p = g_new0(Proxy, 1);
    p->lfd = listen_on(port);
    p->to_port = to_port;
    p->mode = mode;
    p->offset = offset;
    g_mutex_init(&p->lock);
    ck_assert_int_eq(pipe(p->stop_pipe), 0);
    p->thread = g_thread_new("proxy", proxy_thread, p);
    return p;
}

uint64_t proxy_bytes(Proxy *p)
{
    g_mutex_lock(&p->lock);
    uint64_t n = p->forwarded;
    g_mutex_unlock(&p->lock);
    return n;
}

void proxy_stop(Proxy *p)
{
    if (write(p->stop_pipe[1], "x", 1) != 1) {
        /* the thread will time out */
    }
    g_thread_join(p->thread);
    close(p->lfd);
    close(p->stop_pipe[0]);
    close(p->stop_pipe[1]);
    g_mutex_clear(&p->lock);
    g_free(p);
}

struct FakeDest {
    int lfd;
    FakeDestMode mode;
    GThread *thread;
    int stop_pipe[2];
    GMutex lock;
    guint64 seen;       /* bit per message type */
};

static void mark(FakeDest *f, int type)
{
    g_mutex_lock(&f->lock);
    f->seen |= 1ull << type;
    g_mutex_unlock(&f->lock);
}

static gpointer fake_thread(gpointer data)
{
    FakeDest *f = data;
    struct pollfd pl[2] = { { f->lfd, POLLIN, 0 }, { f->stop_pipe[0], POLLIN, 0 } };
    if (poll(pl, 2, 60000) <= 0 || pl[1].revents) {
        return NULL;
    }
    int fd = accept(f->lfd, NULL, NULL);
    for (;;) {
        struct pollfd q[2] = { { fd, POLLIN, 0 }, { f->stop_pipe[0], POLLIN, 0 } };
        if (poll(q, 2, 60000) <= 0 || q[1].revents) {
            break;
        }
        WireHeader h;
        GBytes *payload = NULL;
        if (!wire_recv(fd, &h, &payload, NULL)) {
            break;
        }
        mark(f, h.type);
        gsize len;
        const void *d = g_bytes_get_data(payload, &len);
        if (h.type == WIRE_HELLO && f->mode != FAKE_NO_HELLO_REPLY) {
            WireHello hi;
            wire_hello_decode(d, len, &hi, NULL);
            WireHelloReply r = { .features_accepted = hi.features_offered,
                                 .page_size = hi.page_size, .ram_size = hi.ram_size,
                                 .nvcpus = hi.nvcpus };
            g_autoptr(GBytes) rb = wire_hello_reply_encode(&r);
            const void *rd = g_bytes_get_data(rb, &len);
            wire_send(fd, WIRE_HELLO_REPLY, h.seq, rd, len, NULL);
        } else if (h.type == WIRE_ROUND_END) {
            g_autoptr(GBytes) ok = wire_status_encode(WIRE_OK, NULL);
            const void *od = g_bytes_get_data(ok, &len);
            wire_send(fd, WIRE_ACK, h.seq, od, len, NULL);
        }
        g_bytes_unref(payload);
    }
    close(fd);
    return NULL;
}

FakeDest *fake_dest_start(int port, FakeDestMode mode)
{
    FakeDest *f = g_new0(FakeDest, 1);
    f->lfd = listen_on(port);
    f->mode = mode;
    g_mutex_init(&f->lock);
    ck_assert_int_eq(pipe(f->stop_pipe), 0);
    f->thread = g_thread_new("fake-dest", fake_thread, f);
    return f;
}

gboolean fake_dest_seen(FakeDest *f, int type)
{
    g_mutex_lock(&f->lock);
    gboolean s = (f->seen >> type) & 1;
    g_mutex_unlock(&f->lock);
    return s;
}

void fake_dest_stop(FakeDest *f)
{
    if (write(f->stop_pipe[1], "x", 1) != 1) {
        /* the thread will time out */
    }
    g_thread_join(f->thread);
    close(f->lfd);
    close(f->stop_pipe[0]);
    close(f->stop_pipe[1]);
    g_mutex_clear(&f->lock);
    g_free(f);
}
