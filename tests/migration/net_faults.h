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

/*
 * Faults on command.  The proxy reads the wire protocol's framing in both
 * directions of every connection, so a test can stop a stream just before
 * the first message of type @type (a WireType) that follows one of type
 * @after (-1: any), in the source's direction (@from_dest false) or the
 * destination's.  That direction then holds everything from that message
 * on, the rest of the proxy keeps forwarding, until proxy_release() or
 * proxy_fault_now().  Only one trigger is armed at a time, and it fires once.
 */
void proxy_arm(Proxy *p, int type, int after, bool from_dest);

/* True once the armed trigger fired: a stream is held. */
bool proxy_held(Proxy *p);

/* Waits at most @timeout_ms for the trigger; true if it fired. */
bool proxy_wait_held(Proxy *p, int timeout_ms);

/* Forwards the held stream on, untouched. */
void proxy_release(Proxy *p);

/*
 * Now: PROXY_RESET resets every connection; PROXY_TRUNCATE forwards the
 * first half of the held message (or nothing when none is held) and closes
 * every connection; PROXY_CORRUPT flips one byte of the held message (in
 * the middle of its payload, or of its header when it has none) and
 * forwards it.
 */
void proxy_fault_now(Proxy *p, ProxyMode mode);

/* Caps the source's direction at @bytes_per_s (0: no cap), from now on. */
void proxy_throttle(Proxy *p, uint64_t bytes_per_s);
/* The same, only on connections that carried a message of @type (a
 * WireType, as WIRE_MULTIFD: the source's further RAM connections). */
void proxy_throttle_only(Proxy *p, int type, uint64_t bytes_per_s);

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
