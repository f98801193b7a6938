/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The migration wire format: see include/migration/wire.h. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/bitmap.h"
#include "migration/wire.h"
#include "migration/le.h"


void wire_header_encode(uint8_t *buf, WireType type, uint32_t seq, uint32_t len)
{
    le_put32(buf, WIRE_MAGIC);
    le_put16(buf + 4, WIRE_VERSION);
    le_put16(buf + 6, type);
    le_put32(buf + 8, seq);
    le_put32(buf + 12, len);
}

const char *wire_type_str(uint16_t type)
{
    switch (type) {
    case WIRE_HELLO: return "hello";
    case WIRE_RAM_BATCH: return "ram-batch";
    case WIRE_ROUND_END: return "round-end";
    case WIRE_DEVICE_STATE: return "device-state";
    case WIRE_VERIFY: return "verify";
    case WIRE_COMPLETE: return "complete";
    case WIRE_COMMIT: return "commit";
    case WIRE_HINTED: return "hinted";
    case WIRE_PAGE_CHANNEL: return "page-channel";
    case WIRE_PENDING: return "pending";
    case WIRE_POSTCOPY_RUN: return "postcopy-run";
    case WIRE_RESUME: return "resume";
    case WIRE_STATE_DIGEST: return "state-digest";
    case WIRE_UNTOUCHED: return "untouched";
    case WIRE_MULTIFD: return "multifd";
    case WIRE_MULTIFD_SYNC: return "multifd-sync";
    case WIRE_PAGE_REQUEST: return "page-request";
    case WIRE_MISSING: return "missing";
    case WIRE_HELLO_REPLY: return "hello-reply";
    case WIRE_ACK: return "ack";
    case WIRE_ERROR: return "error";
    default: return NULL;
    }
}

bool wire_header_decode(const uint8_t *buf, WireHeader *h, GError **errp)
{
    h->magic = le_get32(buf);
    h->version = le_get16(buf + 4);
    h->type = le_get16(buf + 6);
    h->seq = le_get32(buf + 8);
    h->len = le_get32(buf + 12);
    if (h->magic != WIRE_MAGIC) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                    "not a hintmig migration stream (bad magic 0x%08x)", h->magic);
        return false;
    }
    if (h->version != WIRE_VERSION) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                    "unsupported wire protocol version %u (this side speaks %u)",
                    h->version, WIRE_VERSION);
        return false;
    }
    if (!wire_type_str(h->type)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                    "unknown message type %u", h->type);
        return false;
    }
    if (h->len > WIRE_MAX_PAYLOAD) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                    "%s message of %u bytes exceeds the %u-byte limit",
                    wire_type_str(h->type), h->len, WIRE_MAX_PAYLOAD);
        return false;
    }
    return true;
}

#define HELLO_SIZE (16 + 8 + 8 + 8 + 4 + 8 + 4 + 8)

GBytes *wire_hello_encode(const WireHello *h)
{
    uint8_t *b = g_malloc0(HELLO_SIZE);
    memcpy(b, h->uuid, 16);
    le_put64(b + 16, h->session);
    le_put64(b + 24, h->features_offered);
    le_put64(b + 32, h->features_required);
    le_put32(b + 40, h->page_size);
    le_put64(b + 44, h->ram_size);
    le_put32(b + 52, h->nvcpus);
    le_put64(b + 56, h->layout);
    return g_bytes_new_take(b, HELLO_SIZE);
}

bool wire_hello_decode(const void *p, size_t len, WireHello *h, GError **errp)
{
    const uint8_t *b = p;
    if (len != HELLO_SIZE) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                    "hello is %zu bytes, expected %d", len, HELLO_SIZE);
        return false;
    }
    memcpy(h->uuid, b, 16);
    h->session = le_get64(b + 16);
    h->features_offered = le_get64(b + 24);
    h->features_required = le_get64(b + 32);
    h->page_size = le_get32(b + 40);
    h->ram_size = le_get64(b + 44);
    h->nvcpus = le_get32(b + 52);
    h->layout = le_get64(b + 56);
    return true;
}

#define REPLY_FIXED (4 + 8 + 4 + 8 + 4 + 4)

GBytes *wire_hello_reply_encode(const WireHelloReply *r)
{
    size_t rlen = strnlen(r->reason, sizeof(r->reason) - 1);
    uint8_t *b = g_malloc0(REPLY_FIXED + rlen);
    le_put32(b, r->status);
    le_put64(b + 4, r->features_accepted);
    le_put32(b + 12, r->page_size);
    le_put64(b + 16, r->ram_size);
    le_put32(b + 24, r->nvcpus);
    le_put32(b + 28, r->decoders);
    memcpy(b + REPLY_FIXED, r->reason, rlen);
    return g_bytes_new_take(b, REPLY_FIXED + rlen);
}

/* Copies peer text, keeping printable ASCII only: it ends up in our logs. */
static void copy_text(char *dst, size_t cap, const uint8_t *src, size_t len)
{
    size_t n = MIN(len, cap - 1);
    for (size_t i = 0; i < n; i++) {
        dst[i] = g_ascii_isprint(src[i]) ? (char)src[i] : '?';
    }
    dst[n] = '\0';
}

bool wire_hello_reply_decode(const void *p, size_t len, WireHelloReply *r,
                             GError **errp)
{
    const uint8_t *b = p;
    if (len < REPLY_FIXED) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                    "hello reply is %zu bytes, expected at least %d", len,
                    REPLY_FIXED);
        return false;
    }
    r->status = le_get32(b);
    r->features_accepted = le_get64(b + 4);
    r->page_size = le_get32(b + 12);
    r->ram_size = le_get64(b + 16);
    r->nvcpus = le_get32(b + 24);
    r->decoders = le_get32(b + 28);
    copy_text(r->reason, sizeof(r->reason), b + REPLY_FIXED, len - REPLY_FIXED);
    return true;
}

GBytes *wire_status_encode(uint32_t code, const char *text)
{
    size_t tlen = text ? MIN(strlen(text), (size_t)1024) : 0;
    uint8_t *b = g_malloc(4 + tlen);
    le_put32(b, code);
    if (tlen) {
        memcpy(b + 4, text, tlen);
    }
    return g_bytes_new_take(b, 4 + tlen);
}

bool wire_status_decode(const void *p, size_t len, uint32_t *code, char **text,
                        GError **errp)
{
    if (len < 4 || len > 4 + 1024) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                    "status message of %zu bytes is malformed", len);
        return false;
    }
    *code = le_get32(p);
    char buf[1025];
    copy_text(buf, sizeof(buf), (const uint8_t *)p + 4, len - 4);
    *text = g_strdup(buf);
    return true;
}

bool wire_uuid_parse(const char *s, uint8_t out[16])
{
    if (!g_uuid_string_is_valid(s)) {
        return false;
    }
    for (unsigned i = 0; i < 16; i++) {
        while (*s == '-') {
            s++;
        }
        out[i] = g_ascii_xdigit_value(s[0]) << 4 | g_ascii_xdigit_value(s[1]);
        s += 2;
    }
    return true;
}

void wire_uuid_format(const uint8_t u[16], char out[37])
{
    g_snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
               "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5],
               u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

char *wire_features_str(uint64_t mask)
{
    static const char *const names[] = { "zstd", "verify", "free-page-hint",
                                         "postcopy", "sparse",
                                         "page-digests", "multifd" };
    GString *s = g_string_new(NULL);
    for (unsigned i = 0; i < 64; i++) {
        if (!(mask & (1ull << i))) {
            continue;
        }
        if (s->len) {
            g_string_append_c(s, ',');
        }
        if (i < G_N_ELEMENTS(names)) {
            g_string_append(s, names[i]);
        } else {
            g_string_append_printf(s, "bit%u", i);
        }
    }
    return g_string_free(s, FALSE);
}

static bool write_full(int fd, const void *buf, size_t len, GError **errp)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                        "connection lost: %s", g_strerror(errno));
            return false;
        }
        p += n;
        len -= n;
    }
    return true;
}

bool wire_read_full(int fd, void *buf, size_t len, GError **errp)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                        "connection lost: %s",
                        n ? g_strerror(errno) : "the peer closed it");
            return false;
        }
        p += n;
        len -= n;
    }
    return true;
}

bool wire_send(int fd, WireType type, uint32_t seq, const void *payload,
               size_t len, GError **errp)
{
    uint8_t hdr[WIRE_HEADER_SIZE];
    wire_header_encode(hdr, type, seq, len);
    return write_full(fd, hdr, sizeof(hdr), errp) &&
           (!len || write_full(fd, payload, len, errp));
}

bool wire_recv(int fd, WireHeader *h, GBytes **payload, GError **errp)
{
    uint8_t hdr[WIRE_HEADER_SIZE];
    if (!wire_read_full(fd, hdr, sizeof(hdr), errp) ||
        !wire_header_decode(hdr, h, errp)) {
        return false;
    }
    uint8_t *buf = g_malloc(h->len ? h->len : 1);
    if (h->len && !wire_read_full(fd, buf, h->len, errp)) {
        g_free(buf);
        return false;
    }
    *payload = g_bytes_new_take(buf, h->len);
    return true;
}

GPtrArray *wire_runs_encode(const unsigned long *set, uint64_t npages,
                            uint32_t word, uint32_t last_word)
{
    GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    GByteArray *msg = g_byte_array_new();
    uint32_t count = 0;
    uint8_t hdr[8] = { 0 };

    g_byte_array_append(msg, hdr, 8);
    for (uint64_t pfn = hm_bitmap_next_set(set, npages, 0); pfn < npages;) {
        uint64_t end = hm_bitmap_next_clear(set, npages, pfn);
        uint8_t run[16];
        le_put64(run, pfn);
        le_put64(run + 8, end - pfn);
        g_byte_array_append(msg, run, 16);
        count++;
        pfn = hm_bitmap_next_set(set, npages, end);
        if (msg->len + 16 > WIRE_MAX_PAYLOAD && pfn < npages) {
            le_put32(msg->data, word);
            le_put32(msg->data + 4, count);
            g_ptr_array_add(out, g_byte_array_free_to_bytes(msg));
            msg = g_byte_array_new();
            g_byte_array_append(msg, hdr, 8);
            count = 0;
        }
    }
    le_put32(msg->data, last_word);
    le_put32(msg->data + 4, count);
    g_ptr_array_add(out, g_byte_array_free_to_bytes(msg));
    return out;
}

bool wire_runs_decode(const void *p, size_t len, uint64_t npages,
                      unsigned long *set, uint32_t *word, uint64_t *pages,
                      GError **errp)
{
    const uint8_t *d = p;

    if (len < 8 || (len - 8) % 16 || le_get32(d + 4) != (len - 8) / 16) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                    "malformed page-run message (%zu bytes)", len);
        return false;
    }
    *word = le_get32(d);
    *pages = 0;
    for (size_t off = 8; off < len; off += 16) {
        uint64_t pfn = le_get64(d + off), n = le_get64(d + off + 8);
        if (!n || pfn >= npages || n > npages - pfn) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                        "page run %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
                        " is outside RAM (%" G_GUINT64_FORMAT " pages)", pfn, n,
                        npages);
            return false;
        }
        if (set) {
            hm_bitmap_set_range(set, pfn, n);
        }
        *pages += n;
    }
    return true;
}

void wire_set_peer_error(const void *p, size_t len, const char *what, GError **errp)
{
    uint32_t code;
    g_autofree char *text = NULL;

    wire_status_decode(p, len, &code, &text, NULL);
    g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED, "%s: %s", what,
                text && *text ? text : "(no reason)");
}

void wire_session_encode(uint8_t out[8], uint64_t session)
{
    le_put64(out, session);
}

bool wire_session_decode(const void *p, size_t len, uint64_t *session)
{
    if (len != 8) {
        return false;
    }
    *session = le_get64(p);
    return true;
}

void wire_multifd_encode(uint8_t out[16], const WireMultifd *w)
{
    le_put64(out, w->session);
    le_put32(out + 8, w->index);
    le_put32(out + 12, w->count);
}

bool wire_multifd_decode(const void *p, size_t len, WireMultifd *w, GError **errp)
{
    if (len != 16) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                    "multifd message of %zu bytes, not 16", len);
        return false;
    }
    w->session = le_get64(p);
    w->index = le_get32((const uint8_t *)p + 8);
    w->count = le_get32((const uint8_t *)p + 12);
    if (w->count < 2 || w->count > WIRE_MULTIFD_MAX || !w->index ||
        w->index >= w->count) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                    "multifd connection %u of %u: want 2 to %u connections, "
                    "this one from 1", w->index, w->count, WIRE_MULTIFD_MAX);
        return false;
    }
    return true;
}

uint8_t *wire_page_request_encode(const uint64_t *pfns, uint32_t n, size_t *len)
{
    uint8_t *msg = g_malloc(4 + (size_t)n * 8);

    le_put32(msg, n);
    for (uint32_t i = 0; i < n; i++) {
        le_put64(msg + 4 + (size_t)i * 8, pfns[i]);
    }
    *len = 4 + (size_t)n * 8;
    return msg;
}

uint64_t *wire_page_request_decode(const void *p, size_t len, uint64_t npages,
                                   uint32_t *n, GError **errp)
{
    const uint8_t *b = p;

    if (len < 4 || len != 4 + (size_t)le_get32(b) * 8) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                    "malformed page request (%zu bytes)", len);
        return NULL;
    }
    *n = le_get32(b);
    uint64_t *pfns = g_new(uint64_t, MAX(*n, 1u));
    for (uint32_t i = 0; i < *n; i++) {
        pfns[i] = le_get64(b + 4 + (size_t)i * 8);
        if (pfns[i] >= npages) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                        "page request for page %" G_GUINT64_FORMAT " beyond RAM",
                        pfns[i]);
            g_free(pfns);
            return NULL;
        }
    }
    return pfns;
}

size_t wire_digests_encode(uint8_t *buf, uint32_t chunk_pages, uint64_t first,
                           const uint64_t *digests, uint32_t count)
{
    le_put32(buf, chunk_pages);
    le_put32(buf + 4, count);
    le_put64(buf + 8, first);
    for (uint32_t i = 0; i < count; i++) {
        le_put64(buf + WIRE_DIGESTS_HEADER + (size_t)i * 8, digests[i]);
    }
    return WIRE_DIGESTS_HEADER + (size_t)count * 8;
}

bool wire_digests_decode(const void *p, size_t len, uint32_t chunk_pages,
                         uint64_t nchunks, uint64_t *out, uint32_t *count,
                         GError **errp)
{
    const uint8_t *b = p;

    if (len < WIRE_DIGESTS_HEADER) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                    "verify message too short");
        return false;
    }
    uint32_t cp = le_get32(b), n = le_get32(b + 4);
    uint64_t first = le_get64(b + 8);
    if (cp != chunk_pages || len != WIRE_DIGESTS_HEADER + (size_t)n * 8 ||
        first > nchunks || n > nchunks - first) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_PROTOCOL,
                    "malformed verify message");
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        out[first + i] = le_get64(b + WIRE_DIGESTS_HEADER + (size_t)i * 8);
    }
    *count = n;
    return true;
}
