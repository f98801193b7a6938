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
    GCond cond;
    uint64_t forwarded;
    /* faults on command, under lock */
    bool armed, held, from_dest;
    int arm_type, arm_after;
    ProxyMode action;            /* asked of the held stream; PROXY_PASS: release */
    bool act;
    unsigned cuts;               /* every connection resets (or closes) when it moves */
    bool cut_reset;
    uint64_t rate;
    int rate_type;               /* only connections that carried it; -1: all */
};

typedef struct ProxyConn {
    Proxy *p;
    int src;
} ProxyConn;

/* One direction of one connection, parsed into messages. */
typedef struct Dir {
    int from, to;
    bool from_dest;
    uint8_t hdr[WIRE_HEADER_SIZE];
    unsigned hdr_have;
    uint64_t body_left;
    uint64_t seen;               /* bit per message type seen */
    GByteArray *held;            /* from the trigger on, while held */
    int64_t corrupt_at;          /* bytes to go before the one to flip, or -1 */
    uint64_t count;              /* bytes forwarded */
} Dir;

/* Sends all of @buf, unless the proxy stops first. */
static bool send_all(Proxy *p, int fd, const uint8_t *buf, size_t len)
{
    while (len) {
        struct pollfd f[2] = { { fd, POLLOUT, 0 }, { p->stop_pipe[0], POLLIN, 0 } };
        if (poll(f, 2, -1) < 0 || f[1].revents) {
            return false;
        }
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        buf += n;
        len -= n;
    }
    return true;
}

/* The cap on @d: the source's direction, of the connections it applies to. */
static uint64_t dir_rate(Proxy *p, const Dir *d)
{
    g_mutex_lock(&p->lock);
    uint64_t rate = p->rate;
    int type = p->rate_type;
    g_mutex_unlock(&p->lock);
    return d->from_dest || (type >= 0 && !((d->seen >> type) & 1)) ? 0 : rate;
}

/* Paces the source's direction at p->rate. */
static void pace(Proxy *p, Dir *d, size_t n, gint64 *t0, uint64_t *sent)
{
    uint64_t rate = dir_rate(p, d);
    if (!rate) {
        *t0 = 0;
        return;
    }
    if (!*t0) {
        *t0 = g_get_monotonic_time();
        *sent = 0;
    }
    *sent += n;
    gint64 due = *t0 + (gint64)(*sent * G_USEC_PER_SEC / rate);
    gint64 now = g_get_monotonic_time();
    if (due > now) {
        g_usleep(due - now);        /* the link is this slow */
    }
}

/*
 * Forwards @n bytes of @d's stream, message by message.  A header is sent
 * only once whole, so the trigger can hold a message before any of it
 * left.  Returns false if the connection broke; holds what follows a
 * trigger in d->held.
 */
static bool forward(Proxy *p, Dir *d, const uint8_t *buf, size_t n)
{
    g_autoptr(GByteArray) out = g_byte_array_new();
    size_t i = 0;

    while (i < n) {
        if (d->body_left) {
            size_t k = MIN(d->body_left, n - i);
            g_byte_array_append(out, buf + i, k);
            d->body_left -= k;
            i += k;
            continue;
        }
        size_t k = MIN(WIRE_HEADER_SIZE - d->hdr_have, n - i);
        memcpy(d->hdr + d->hdr_have, buf + i, k);
        d->hdr_have += k;
        i += k;
        if (d->hdr_have < WIRE_HEADER_SIZE) {
            break;
        }
        unsigned type = d->hdr[6] | d->hdr[7] << 8;
        uint32_t len = d->hdr[12] | d->hdr[13] << 8 | d->hdr[14] << 16 |
                       (uint32_t)d->hdr[15] << 24;
        g_mutex_lock(&p->lock);
        bool fire = p->armed && p->from_dest == d->from_dest &&
                    (int)type == p->arm_type &&
                    (p->arm_after < 0 || (d->seen >> p->arm_after) & 1);
        if (fire) {
            p->armed = false;
            p->held = true;
            g_cond_broadcast(&p->cond);
        }
        g_mutex_unlock(&p->lock);
        if (fire) {
            d->held = g_byte_array_new();
            g_byte_array_append(d->held, d->hdr, WIRE_HEADER_SIZE);
            g_byte_array_append(d->held, buf + i, n - i);
            d->hdr_have = 0;
            d->body_left = 0;
            break;
        }
        if (type < 64) {
            d->seen |= 1ull << type;
        }
        g_byte_array_append(out, d->hdr, WIRE_HEADER_SIZE);
        d->hdr_have = 0;
        d->body_left = len;
    }
    if (d->corrupt_at >= 0 && (guint)d->corrupt_at < out->len) {
        out->data[d->corrupt_at] ^= 0x5a;
        d->corrupt_at = -1;
    } else if (d->corrupt_at >= 0) {
        d->corrupt_at -= out->len;
    }
    if (!send_all(p, d->to, out->data, out->len)) {
        return false;
    }
    d->count += out->len;
    if (!d->from_dest) {
        g_mutex_lock(&p->lock);
        p->forwarded += out->len;
        g_mutex_unlock(&p->lock);
    }
    return true;
}

/* The test's command for the held stream; false when none came yet. */
static bool held_action(Proxy *p, ProxyMode *mode)
{
    g_mutex_lock(&p->lock);
    bool act = p->act;
    *mode = p->action;
    p->act = false;
    if (act) {
        p->held = false;
    }
    g_mutex_unlock(&p->lock);
    return act;
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
    Dir dirs[2] = { { .from = src, .to = dst, .corrupt_at = -1 },
                    { .from = dst, .to = src, .from_dest = true, .corrupt_at = -1 } };
    g_mutex_lock(&p->lock);
    unsigned cuts = p->cuts;
    g_mutex_unlock(&p->lock);
    bool reset = false;
    gint64 t0 = 0;
    uint64_t paced = 0;
    uint8_t *buf = g_malloc(65536);
    for (;;) {
        ProxyMode mode;
        Dir *h = dirs[0].held ? &dirs[0] : dirs[1].held ? &dirs[1] : NULL;
        g_mutex_lock(&p->lock);
        bool cut = p->cuts != cuts && !(h && p->act);
        reset = cut && p->cut_reset;
        g_mutex_unlock(&p->lock);
        if (cut) {
            break;
        }
        if (h && held_action(p, &mode)) {
            g_autoptr(GByteArray) held = h->held;
            h->held = NULL;
            if (mode == PROXY_TRUNCATE) {
                size_t len = held->data[12] | held->data[13] << 8 | held->data[14] << 16;
                size_t half = MIN(held->len, (WIRE_HEADER_SIZE + len) / 2);
                send_all(p, h->to, held->data, half);
                break;
            }
            if (mode == PROXY_CORRUPT) {
                size_t len = held->data[12] | held->data[13] << 8 | held->data[14] << 16;
                h->corrupt_at = len ? WIRE_HEADER_SIZE + len / 2 : 0;
            }
            if (mode == PROXY_RESET) {
                reset = true;
                break;
            }
            if (!forward(p, h, held->data, held->len)) {
                break;
            }
            continue;
        }
        /* A held direction reads no more; the other one goes on. */
        struct pollfd f[3] = { { src, dirs[0].held ? 0 : POLLIN, 0 },
                               { dst, dirs[1].held ? 0 : POLLIN, 0 },
                               { p->stop_pipe[0], POLLIN, 0 } };
        if (poll(f, 3, 20) < 0 || f[2].revents) {
            break;
        }
        bool broke = false;
        for (int i = 0; i < 2 && !broke; i++) {
            Dir *d = &dirs[i];
            if (!f[i].revents) {
                continue;
            }
            size_t want = 65536;
            uint64_t rate = dir_rate(p, d);
            if (rate) {
                want = MIN(want, MAX(rate / 50, 1));
            }
            if (!d->from_dest && p->mode != PROXY_PASS && p->mode != PROXY_CORRUPT &&
                d->count < p->offset) {
                want = MIN(want, p->offset - d->count);
            }
            ssize_t n = read(d->from, buf, want);
            if (n <= 0) {
                broke = true;
                break;
            }
            if (!d->from_dest && p->mode == PROXY_CORRUPT && d->count <= p->offset &&
                p->offset < d->count + n) {
                buf[p->offset - d->count] ^= 0x5a;
            }
            if (!forward(p, d, buf, n)) {
                broke = true;
                break;
            }
            pace(p, d, n, &t0, &paced);
            if (!d->from_dest && (p->mode == PROXY_TRUNCATE || p->mode == PROXY_RESET) &&
                d->count >= p->offset) {
                reset = p->mode == PROXY_RESET;
                broke = true;
            }
        }
        if (broke) {
            break;
        }
    }
    g_free(buf);
    g_clear_pointer(&dirs[0].held, g_byte_array_unref);
    g_clear_pointer(&dirs[1].held, g_byte_array_unref);
    hard_close(src, reset);
    hard_close(dst, reset);
    return NULL;
}

/* Accepts connections (a migration may open several) until stopped. */
static gpointer proxy_thread(gpointer data)
{
    Proxy *p = data;
    g_autoptr(GPtrArray) conns = g_ptr_array_new();

    for (;;) {
        struct pollfd pl[2] = { { p->lfd, POLLIN, 0 }, { p->stop_pipe[0], POLLIN, 0 } };
        if (poll(pl, 2, 600000) <= 0 || pl[1].revents) {
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
    /* A small window, inherited by every connection: a trickle then keeps
     * the source's data unacknowledged at the source, as a slow link does,
     * instead of acknowledging megabytes into the proxy at once. */
    int rcvbuf = 128 << 10;
    setsockopt(p->lfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    p->to_port = to_port;
    p->mode = mode;
    p->offset = offset;
    p->rate_type = -1;
    g_mutex_init(&p->lock);
    g_cond_init(&p->cond);
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

void proxy_arm(Proxy *p, int type, int after, bool from_dest)
{
    g_mutex_lock(&p->lock);
    p->armed = true;
    p->held = false;
    p->arm_type = type;
    p->arm_after = after;
    p->from_dest = from_dest;
    g_mutex_unlock(&p->lock);
}

bool proxy_held(Proxy *p)
{
    g_mutex_lock(&p->lock);
    bool h = p->held;
    g_mutex_unlock(&p->lock);
    return h;
}

bool proxy_wait_held(Proxy *p, int timeout_ms)
{
    gint64 until = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    g_mutex_lock(&p->lock);
    while (!p->held && g_cond_wait_until(&p->cond, &p->lock, until)) {
    }
    bool h = p->held;
    g_mutex_unlock(&p->lock);
    return h;
}

static void act(Proxy *p, ProxyMode mode)
{
    g_mutex_lock(&p->lock);
    if (p->held) {
        p->act = true;
        p->action = mode;
    } else if (mode == PROXY_RESET || mode == PROXY_TRUNCATE) {
        p->cuts++;
        p->cut_reset = mode == PROXY_RESET;
    }
    g_mutex_unlock(&p->lock);
}

void proxy_release(Proxy *p)
{
    act(p, PROXY_PASS);
}

void proxy_fault_now(Proxy *p, ProxyMode mode)
{
    act(p, mode);
    if (mode == PROXY_RESET || mode == PROXY_TRUNCATE) {
        /* The other connections go too: the link is down. */
        g_mutex_lock(&p->lock);
        p->cuts++;
        p->cut_reset = mode == PROXY_RESET;
        g_mutex_unlock(&p->lock);
    }
}

void proxy_throttle(Proxy *p, uint64_t bytes_per_s)
{
    proxy_throttle_only(p, -1, bytes_per_s);
}

void proxy_throttle_only(Proxy *p, int type, uint64_t bytes_per_s)
{
    g_mutex_lock(&p->lock);
    p->rate = bytes_per_s;
    p->rate_type = type;
    g_mutex_unlock(&p->lock);
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
    g_cond_clear(&p->cond);
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
