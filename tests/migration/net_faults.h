/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Network fault injection for migration tests, on loopback only: a TCP
 * proxy that can corrupt, truncate or reset the stream at a byte offset, and
 * a fake destination that stalls at a chosen point of the conversation.
 */
#ifndef HINTMIG_NET_FAULTS_H
#define HINTMIG_NET_FAULTS_H

#include <stdint.h>
#include <glib.h>

/* Returns a TCP port on 127.0.0.1 that was free a moment ago. */
int test_free_port(void);

typedef enum {
    PROXY_PASS,
    PROXY_CORRUPT,    /* flip one byte at the offset of the source's stream */
    PROXY_TRUNCATE,   /* forward up to the offset, then close both sides */
    PROXY_RESET,      /* forward up to the offset, then reset both sides */
    PROXY_SWALLOW,    /* forward the source's messages up to and including its
                       * first of type "offset" (a WireType), then swallow
                       * the rest: the destination hears nothing more and
                       * the source notices nothing */
} ProxyMode;

typedef struct Proxy Proxy;

/*
 * Listens on @port, forwarding each connection to 127.0.0.1:@to_port (the
 * fault applies to each connection's own stream) until proxy_stop(), which
 * closes every connection: a network cut.
 */
Proxy *proxy_start(int port, int to_port, ProxyMode mode, uint64_t offset);

/* Returns the bytes forwarded from the source so far. */
uint64_t proxy_bytes(Proxy *p);

/* Stops the proxy, closing every connection, and frees it. */
void proxy_stop(Proxy *p);

typedef enum {
    FAKE_NO_HELLO_REPLY,   /* accept, read hello, say nothing */
    FAKE_NO_COMPLETE_ACK,  /* play along, but never ack COMPLETE */
} FakeDestMode;

typedef struct FakeDest FakeDest;

FakeDest *fake_dest_start(int port, FakeDestMode mode);

/* Returns true once the fake destination has seen message @type. */
gboolean fake_dest_seen(FakeDest *f, int type);

void fake_dest_stop(FakeDest *f);

#endif
