/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Benchmark helper (not a test): a bare 4 KiB page request over TCP, the
 * floor for a postcopy remote fault on the same link.  The asker sends 12
 * bytes (as a page request does) and reads 4 KiB back, one exchange at a
 * time, and prints the times in microseconds.
 *
 *   page_exchange serve ADDR PORT       answer one connection until it ends
 *   page_exchange ask ADDR PORT [N]     N exchanges (default 20000); prints
 *                                       "exchange P50 P99 MAX"
 * The asker retries the connection for 10 s, so the two may start together.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <glib.h>

#define PAGE 4096u
#define REQ 12u

static bool io_full(int fd, void *buf, size_t len, bool out)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = out ? send(fd, (uint8_t *)buf + done, len - done, MSG_NOSIGNAL)
                        : recv(fd, (uint8_t *)buf + done, len - done, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        done += n;
    }
    return true;
}

static int cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static bool parse_addr(const char *ip, const char *port, struct sockaddr_in *a)
{
    char *end;
    unsigned long p = strtoul(port, &end, 10);
    *a = (struct sockaddr_in) { .sin_family = AF_INET, .sin_port = htons(p) };
    return *port && !*end && p > 0 && p < 65536 && inet_pton(AF_INET, ip, &a->sin_addr) == 1;
}

static int serve(const struct sockaddr_in *a)
{
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (l < 0 || bind(l, (const struct sockaddr *)a, sizeof(*a)) < 0 || listen(l, 1) < 0) {
        fprintf(stderr, "page_exchange: cannot listen: %s\n", strerror(errno));
        return 1;
    }
    int s = accept(l, NULL, NULL);
    if (s < 0) {
        fprintf(stderr, "page_exchange: accept: %s\n", strerror(errno));
        return 1;
    }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint8_t req[REQ], page[PAGE];
    memset(page, 0x5a, sizeof(page));
    while (io_full(s, req, sizeof(req), false) && io_full(s, page, sizeof(page), true)) {
    }
    close(s);
    close(l);
    return 0;
}

static int ask(const struct sockaddr_in *a, unsigned n)
{
    int one = 1, c = -1;
    gint64 give_up = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    for (;;) {
        c = socket(AF_INET, SOCK_STREAM, 0);
        if (c >= 0 && connect(c, (const struct sockaddr *)a, sizeof(*a)) == 0) {
            break;
        }
        int e = errno;
        close(c);
        if (g_get_monotonic_time() > give_up) {
            fprintf(stderr, "page_exchange: cannot connect: %s\n", strerror(e));
            return 1;
        }
        g_usleep(20000);
    }
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint32_t *us = g_new(uint32_t, n);
    uint8_t req[REQ] = { 0 }, page[PAGE];
    for (unsigned i = 0; i < n; i++) {
        gint64 t0 = g_get_monotonic_time();
        if (!io_full(c, req, sizeof(req), true) || !io_full(c, page, sizeof(page), false)) {
            fprintf(stderr, "page_exchange: connection lost after %u exchanges\n", i);
            return 1;
        }
        us[i] = g_get_monotonic_time() - t0;
    }
    close(c);
    qsort(us, n, sizeof(*us), cmp);
    printf("exchange %u %u %u\n", us[(n - 1) / 2], us[(uint64_t)(n - 1) * 99 / 100], us[n - 1]);
    g_free(us);
    return 0;
}

int main(int argc, char **argv)
{
    struct sockaddr_in a;
    if (argc >= 4 && !strcmp(argv[1], "serve") && parse_addr(argv[2], argv[3], &a)) {
        return serve(&a);
    }
    if (argc >= 4 && !strcmp(argv[1], "ask") && parse_addr(argv[2], argv[3], &a)) {
        long n = argc > 4 ? strtol(argv[4], NULL, 10) : 20000;
        if (n > 0 && n <= 10000000) {
            return ask(&a, n);
        }
    }
    fprintf(stderr, "usage: page_exchange serve ADDR PORT | ask ADDR PORT [N]\n");
    return 2;
}
