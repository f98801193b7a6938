/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Benchmark (not a test): the local userfaultfd round trip, the floor for
 * postcopy's remote faults.  A toucher thread reads pages of a region
 * registered for missing faults, one at a time; a handler thread reads
 * each fault and places the page with UFFDIO_COPY, as uffd_postcopy.c
 * does.  Two times per fault, in microseconds:
 *
 *   handler: from reading the fault to UFFDIO_COPY's return, the span that
 *            hintmig's "remote fault latency" also measures (there: from
 *            reading the fault to the page being placed);
 *   toucher: the whole round trip the vCPU sees;
 *   tcp:     a request of 12 bytes answered by 4 KiB between two threads
 *            over TCP on loopback: the network floor a remote fault adds
 *            (it takes one such exchange, plus a third thread).
 *
 *   uffd_roundtrip [PAGES]     (default 20000)
 * Prints "handler|toucher|tcp p50 p99 max".
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <glib.h>

#define PAGE 4096u

typedef struct {
    int uffd;
    unsigned n;
    uint32_t *handler_us;
    uint8_t *src;
} Handler;

static gpointer handler_thread(gpointer data)
{
    Handler *h = data;
    for (unsigned done = 0; done < h->n;) {
        struct pollfd pfd = { h->uffd, POLLIN, 0 };
        struct uffd_msg msg;
        if (poll(&pfd, 1, 5000) != 1) {
            fprintf(stderr, "uffd_roundtrip: no fault within 5 s\n");
            exit(1);
        }
        if (read(h->uffd, &msg, sizeof(msg)) != sizeof(msg)) {
            continue;
        }
        gint64 t0 = g_get_monotonic_time();
        struct uffdio_copy c = { .dst = msg.arg.pagefault.address & ~(uint64_t)(PAGE - 1),
                                 .src = (uintptr_t)h->src, .len = PAGE };
        if (ioctl(h->uffd, UFFDIO_COPY, &c) < 0 && errno != EEXIST) {
            perror("UFFDIO_COPY");
            exit(1);
        }
        h->handler_us[done++] = g_get_monotonic_time() - t0;
    }
    return NULL;
}

static bool io_full(int fd, void *buf, size_t len, bool out)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = out ? send(fd, (char *)buf + done, len - done, 0)
                        : recv(fd, (char *)buf + done, len - done, 0);
        if (n <= 0) {
            return false;
        }
        done += n;
    }
    return true;
}

static gpointer echo_thread(gpointer data)
{
    int fd = GPOINTER_TO_INT(data);
    uint8_t req[12], page[PAGE] = { 0 };
    while (io_full(fd, req, sizeof(req), false) && io_full(fd, page, PAGE, true)) {
    }
    return NULL;
}

/* Request/response times over a loopback TCP connection, in µs. */
static bool tcp_rtt(uint32_t *us, unsigned n)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &al) < 0 ||
        connect(c, (struct sockaddr *)&a, sizeof(a)) < 0) {
        return false;
    }
    int s = accept(l, NULL, NULL);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    GThread *t = g_thread_new("echo", echo_thread, GINT_TO_POINTER(s));
    uint8_t req[12] = { 0 }, page[PAGE];
    for (unsigned i = 0; i < n; i++) {
        gint64 t0 = g_get_monotonic_time();
        if (!io_full(c, req, sizeof(req), true) || !io_full(c, page, PAGE, false)) {
            return false;
        }
        us[i] = g_get_monotonic_time() - t0;
    }
    close(c);
    g_thread_join(t);
    close(s);
    close(l);
    return true;
}

static int cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *name, uint32_t *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp);
    printf("%s %u %u %u\n", name, v[(n - 1) / 2], v[(uint64_t)(n - 1) * 99 / 100], v[n - 1]);
}

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 20000;
    uint8_t *region = mmap(NULL, (size_t)n * PAGE, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    struct uffdio_api api = { .api = UFFD_API };
    struct uffdio_register reg = { .range = { (uintptr_t)region, (uint64_t)n * PAGE },
                                   .mode = UFFDIO_REGISTER_MODE_MISSING };
    if (region == MAP_FAILED || uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0 ||
        ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
        fprintf(stderr, "uffd_roundtrip: userfaultfd unavailable: %s\n", strerror(errno));
        return 77;
    }
    Handler h = { uffd, n, g_new(uint32_t, n), g_malloc(PAGE) };
    memset(h.src, 0x5a, PAGE);
    uint32_t *touch_us = g_new(uint32_t, n);
    GThread *t = g_thread_new("handler", handler_thread, &h);
    volatile uint8_t sink = 0;
    for (unsigned i = 0; i < n; i++) {
        gint64 t0 = g_get_monotonic_time();
        sink += region[(size_t)i * PAGE];
        touch_us[i] = g_get_monotonic_time() - t0;
        if (sink == 1) {
            sink = 0;
        }
    }
    g_thread_join(t);
    report("handler", h.handler_us, n);
    report("toucher", touch_us, n);
    if (tcp_rtt(touch_us, n)) {
        report("tcp", touch_us, n);
    }
    return 0;
}
