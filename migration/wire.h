/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The migration wire format.
 *
 * Every message, both ways, is a 16-byte header and a payload:
 *
 *   u32 magic "HMWP" | u16 version | u16 type | u32 seq | u32 len
 *
 * all little-endian.  @seq numbers a request; its ack carries the same seq,
 * and an ack matching no outstanding request is a protocol error.  @len is
 * checked against WIRE_MAX_PAYLOAD before anything is allocated.  See
 * docs/design.md for the conversation.
 */
#ifndef HINTMIG_WIRE_H
#define HINTMIG_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "hintmig/hintmig.h"

#define WIRE_MAGIC 0x50574d48u          /* "HMWP" */
#define WIRE_VERSION 2                  /* 2: digests are XXH3, were XXH64 */
#define WIRE_HEADER_SIZE 16
/*
 * The one rule for message sizes: no payload is larger than
 * WIRE_MAX_PAYLOAD, room for the largest RAM batch (128 pages of 4 KiB,
 * their entries, and a zstd frame that did not shrink them: under 530 KiB,
 * page_batch_max_size()).  Senders' buffers hold a header and that much;
 * anything sized by the guest (page runs, digests, device state, page
 * requests) is split to fit; receivers refuse a larger length before
 * allocating anything.  It is no larger than a batch needs because every
 * send and receive buffer is this size: the engine's own memory follows it.
 */
#define WIRE_MAX_PAYLOAD (576u << 10)
/*
 * Device state travels in parts of at most WIRE_STATE_PART bytes, each a
 * DEVICE_STATE message whose seq is the part's index, with WIRE_STATE_LAST
 * set on the last; a destination takes at most WIRE_MAX_STATE in all.
 */
#define WIRE_STATE_PART (512u << 10)
#define WIRE_STATE_LAST 0x80000000u
#define WIRE_MAX_STATE (1u << 30)

typedef enum WireType {
    /* source -> destination */
    WIRE_HELLO = 1,          /* WireHello */
    WIRE_RAM_BATCH = 2,      /* page_codec batch */
    WIRE_ROUND_END = 3,      /* u32 round; acked by WIRE_ACK once applied */
    WIRE_DEVICE_STATE = 4,   /* vmstate sections (vCPUs, devices) */
    WIRE_VERIFY = 5,         /* u32 chunk_pages, u32 first, u32 count, u64 digests[] */
    WIRE_COMPLETE = 6,       /* everything sent; acked once verified and loaded */
    WIRE_COMMIT = 7,         /* the source lets go: the destination may run */
    WIRE_HINTED = 8,         /* u32 poison, u32 count, count x (u64 pfn, u64 pages):
                              * free pages that will not be sent */
    WIRE_PAGE_CHANNEL = 9,   /* u64 session: first message of the postcopy page
                              * channel, the second connection */
    WIRE_PENDING = 10,       /* u32 0, u32 count, count x (u64 pfn, u64 pages):
                              * postcopy, pages the source still owes */
    WIRE_POSTCOPY_RUN = 11,  /* postcopy: run the guest; acked once it runs */
    WIRE_RESUME = 12,        /* u64 session: first message of a recovered
                              * postcopy connection */
    WIRE_STATE_DIGEST = 13,  /* u64 XXH64 of the whole device state, seeded
                              * with its length: after its last part, when
                              * verify is on */
    WIRE_UNTOUCHED = 14,     /* u32 0, u32 count, count x (u64 pfn, u64 pages):
                              * pages never touched on the source, which
                              * will not be sent unless written: they read
                              * as zero */
    WIRE_MULTIFD = 15,       /* WireMultifd: first message of each further
                              * connection that carries RAM batches */
    WIRE_MULTIFD_SYNC = 21,  /* u32 epoch: on every RAM connection, before a
                              * message on the main one whenever a batch went
                              * on another since the last sync */
    /* destination -> source (the return path) */
    WIRE_HELLO_REPLY = 16,   /* WireHelloReply */
    WIRE_ACK = 17,           /* u32 status (0 = ok), then a message if not ok */
    WIRE_ERROR = 18,         /* u32 code, message: the destination gives up */
    WIRE_PAGE_REQUEST = 19,  /* u32 count, count x u64 pfn: vCPUs wait on these */
    WIRE_MISSING = 20,       /* u32 last, u32 count, count x (u64 pfn, u64 pages):
                              * after a recovery, the pages still missing */
} WireType;

typedef struct WireHeader {
    uint32_t magic;
    uint16_t version;
    uint16_t type;
    uint32_t seq;
    uint32_t len;
} WireHeader;

/* Feature bits negotiated in the handshake. */
#define WIRE_FEAT_ZSTD        (1ull << 0)   /* zstd-compressed batches */
#define WIRE_FEAT_VERIFY      (1ull << 1)   /* RAM digests after completion */
#define WIRE_FEAT_FREE_PAGE_HINT (1ull << 2)
#define WIRE_FEAT_POSTCOPY    (1ull << 3)
#define WIRE_FEAT_SPARSE      (1ull << 4)   /* WIRE_UNTOUCHED */
/* Verification compares digests of pages as sent and as applied, instead
 * of hashing both sides' RAM at the end (without it: x-verify-full). */
#define WIRE_FEAT_PAGE_DIGESTS (1ull << 5)
/* RAM batches spread over several connections (multifd-channels). */
#define WIRE_FEAT_MULTIFD     (1ull << 6)
#define WIRE_FEAT_KNOWN       ((1ull << 7) - 1)
/* The most connections that carry RAM, the main one included. */
#define WIRE_MULTIFD_MAX 16

typedef struct WireHello {
    uint8_t uuid[16];         /* the VM's UUID */
    uint64_t session;         /* random, names this migration attempt */
    uint64_t features_offered;
    uint64_t features_required;
    uint32_t page_size;
    uint64_t ram_size;
    uint32_t nvcpus;
    uint64_t layout;          /* digest of the RAM regions' names, sizes, order */
} WireHello;

typedef enum WireRefusal {
    WIRE_OK = 0,
    WIRE_REFUSE_LAYOUT = 1,   /* page size, RAM size or vCPU count differ */
    WIRE_REFUSE_FEATURES = 2, /* a required feature is not supported */
    WIRE_REFUSE_UUID = 3,     /* the destination waits for another VM */
    WIRE_REFUSE_BUSY = 4,
    WIRE_ERR_PROTOCOL = 5,    /* malformed or unexpected message */
    WIRE_ERR_DATA = 6,        /* a batch failed to decode */
    WIRE_ERR_VERIFY = 7,      /* RAM digests differ */
    WIRE_ERR_STATE = 8,       /* device state failed to load */
    WIRE_ERR_NEVER_RAN = 9,   /* to a recovery: this destination failed
                               * before it ran the guest, which is the
                               * source's to run again */
    WIRE_ERR_DONE = 10,       /* to a recovery: every page is here and
                               * verified; only COMPLETE's ack was lost */
} WireRefusal;

typedef struct WireHelloReply {
    uint32_t status;          /* WireRefusal */
    uint64_t features_accepted;
    uint32_t page_size;
    uint64_t ram_size;
    uint32_t nvcpus;
    uint32_t decoders;        /* the destination's decoder threads (0: unknown) */
    char reason[200];         /* why, when status != WIRE_OK */
} WireHelloReply;

/* Encodes @h into the first WIRE_HEADER_SIZE bytes of @buf. */
void wire_header_encode(uint8_t *buf, WireType type, uint32_t seq, uint32_t len);

/*
 * Decodes and checks a header.  Returns false with @errp set for a bad
 * magic, an unknown version or type, or an oversized payload.
 */
bool wire_header_decode(const uint8_t *buf, WireHeader *h, GError **errp);

/* Returns the name of @type ("hello", "ram-batch", ...) for messages. */
const char *wire_type_str(uint16_t type);

/* Payload codecs; decoders return false with @errp set on malformed input. */
GBytes *wire_hello_encode(const WireHello *h);
bool wire_hello_decode(const void *p, size_t len, WireHello *h, GError **errp);
GBytes *wire_hello_reply_encode(const WireHelloReply *r);
bool wire_hello_reply_decode(const void *p, size_t len, WireHelloReply *r,
                             GError **errp);

/* A status (ACK) or error (ERROR) payload: u32 code, then text. */
GBytes *wire_status_encode(uint32_t code, const char *text);
bool wire_status_decode(const void *p, size_t len, uint32_t *code, char **text,
                        GError **errp);

/* Sets @errp to "@what: <the peer's text>" from an ERROR payload. */
void wire_set_peer_error(const void *p, size_t len, const char *what, GError **errp);

/* Parses a textual UUID into 16 bytes; false if @s is not a UUID. */
bool wire_uuid_parse(const char *s, uint8_t out[16]);

/* Formats 16 UUID bytes as lower-case text (37 bytes with the NUL). */
void wire_uuid_format(const uint8_t uuid[16], char out[37]);

/* Returns the names of the features in @mask, comma-separated. */
char *wire_features_str(uint64_t mask);

/*
 * Blocking helpers for the control conversation (handshake, return path):
 * write a whole message, read a whole message (payload in a new GBytes).
 * They return false with @errp set on I/O errors, EOF or a bad header.
 */
bool wire_send(int fd, WireType type, uint32_t seq, const void *payload,
               size_t len, GError **errp);
bool wire_recv(int fd, WireHeader *h, GBytes **payload, GError **errp);

/*
 * Page runs (u32 word, u32 count, count x (u64 pfn, u64 pages)), the payload
 * of WIRE_HINTED, WIRE_PENDING, WIRE_MISSING and WIRE_UNTOUCHED.  wire_runs_encode returns
 * one payload per WIRE_MAX_PAYLOAD bytes of runs of @set (GBytes *
 * each), with @word in the first field; the last payload's word is
 * @last_word.  wire_runs_decode checks every run against @npages and sets
 * them in @set (unless NULL: the caller walks the runs itself, at
 * WIRE_RUNS_HEADER + 16 * i).
 */
#define WIRE_RUNS_HEADER 8
GPtrArray *wire_runs_encode(const unsigned long *set, uint64_t npages,
                            uint32_t word, uint32_t last_word);
bool wire_runs_decode(const void *p, size_t len, uint64_t npages,
                      unsigned long *set, uint32_t *word, uint64_t *pages,
                      GError **errp);

/* Reads exactly @len bytes; false with @errp set on error or early EOF. */
bool wire_read_full(int fd, void *buf, size_t len, GError **errp);


/* ---- small payloads: each encoded and decoded here, and nowhere else ---- */

/* PAGE_CHANNEL, RESUME: the session a connection belongs to (8 bytes). */
void wire_session_encode(uint8_t out[8], uint64_t session);
bool wire_session_decode(const void *p, size_t len, uint64_t *session);

/* MULTIFD: the session, this connection's index (1 to count - 1) and the
 * number of connections, the main one included (16 bytes). */
typedef struct WireMultifd {
    uint64_t session;
    uint32_t index;
    uint32_t count;
} WireMultifd;
void wire_multifd_encode(uint8_t out[16], const WireMultifd *w);
/* False with @errp unless 16 bytes with 2 <= count <= WIRE_MULTIFD_MAX and
 * 1 <= index < count. */
bool wire_multifd_decode(const void *p, size_t len, WireMultifd *w, GError **errp);

/*
 * PAGE_REQUEST: @n page numbers.  wire_page_request_encode returns the
 * payload (free it) and its length in *@len; _decode returns the page
 * numbers (free them), each checked against @npages, or NULL with @errp.
 */
uint8_t *wire_page_request_encode(const uint64_t *pfns, uint32_t n, size_t *len);
uint64_t *wire_page_request_decode(const void *p, size_t len, uint64_t npages,
                                   uint32_t *n, GError **errp);

/* VERIFY: @count chunk digests from chunk @first, chunks of @chunk_pages. */
#define WIRE_DIGESTS_HEADER 16
/* Encodes into @buf (WIRE_DIGESTS_HEADER + 8 * @count bytes); returns the length. */
size_t wire_digests_encode(uint8_t *buf, uint32_t chunk_pages, uint64_t first,
                           const uint64_t *digests, uint32_t count);
/*
 * Checks a VERIFY payload against @nchunks and copies its digests to
 * @out[first..first + count); sets *@count.  False with @errp if malformed.
 */
bool wire_digests_decode(const void *p, size_t len, uint32_t chunk_pages,
                         uint64_t nchunks, uint64_t *out, uint32_t *count,
                         GError **errp);

#endif
