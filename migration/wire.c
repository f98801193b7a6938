/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The migration wire format: see include/migration/wire.h. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/bitmap.h"
#include "migration/wire.h"

static void put16(uint8_t *p, uint16_t v) { v = GUINT16_TO_LE(v); memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { v = GUINT32_TO_LE(v); memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { v = GUINT64_TO_LE(v); memcpy(p, &v, 8); }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return GUINT16_FROM_LE(v); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return GUINT32_FROM_LE(v); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return GUINT64_FROM_LE(v); }

void wire_header_encode(uint8_t *buf, WireType type, uint32_t seq, uint32_t len)
{
    put32(buf, WIRE_MAGIC);
    put16(buf + 4, WIRE_VERSION);
    put16(buf + 6, type);
    put32(buf + 8, seq);
    put32(buf + 12, len);
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
    h->magic = get32(buf);
    h->version = get16(buf + 4);
    h->type = get16(buf + 6);
    h->seq = get32(buf + 8);
    h->len = get32(buf + 12);
    if (h->magic != WIRE_MAGIC) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "not a hintmig migration stream (bad magic 0x%08x)", h->magic);
        return false;
    }
    if (h->version != WIRE_VERSION) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "unsupported wire protocol version %u (this side speaks %u)",
                    h->version, WIRE_VERSION);
        return false;
    }
    if (!wire_type_str(h->type)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "unknown message type %u", h->type);
        return false;
    }
    if (h->len > WIRE_MAX_PAYLOAD) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%s message of %u bytes exceeds the %u-byte limit",
                    wire_type_str(h->type), h->len, WIRE_MAX_PAYLOAD);
        return false;
    }
    return true;
}

#define HELLO_SIZE (16 + 8 + 8 + 8 + 4 + 8 + 4)

GBytes *wire_hello_encode(const WireHello *h)
{
    uint8_t *b = g_malloc0(HELLO_SIZE);
    memcpy(b, h->uuid, 16);
    put64(b + 16, h->session);
    put64(b + 24, h->features_offered);
    put64(b + 32, h->features_required);
    put32(b + 40, h->page_size);
    put64(b + 44, h->ram_size);
    put32(b + 52, h->nvcpus);
    return g_bytes_new_take(b, HELLO_SIZE);
}

bool wire_hello_decode(const void *p, size_t len, WireHello *h, GError **errp)
{
    const uint8_t *b = p;
    if (len != HELLO_SIZE) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "hello is %zu bytes, expected %d", len, HELLO_SIZE);
        return false;
    }
    memcpy(h->uuid, b, 16);
    h->session = get64(b + 16);
    h->features_offered = get64(b + 24);
    h->features_required = get64(b + 32);
    h->page_size = get32(b + 40);
    h->ram_size = get64(b + 44);
    h->nvcpus = get32(b + 52);
    return true;
}

#define REPLY_FIXED (4 + 8 + 4 + 8 + 4)

GBytes *wire_hello_reply_encode(const WireHelloReply *r)
{
    size_t rlen = strnlen(r->reason, sizeof(r->reason) - 1);
    uint8_t *b = g_malloc0(REPLY_FIXED + rlen);
    put32(b, r->status);
    put64(b + 4, r->features_accepted);
    put32(b + 12, r->page_size);
    put64(b + 16, r->ram_size);
    put32(b + 24, r->nvcpus);
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
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "hello reply is %zu bytes, expected at least %d", len,
                    REPLY_FIXED);
        return false;
    }
    r->status = get32(b);
    r->features_accepted = get64(b + 4);
    r->page_size = get32(b + 12);
    r->ram_size = get64(b + 16);
    r->nvcpus = get32(b + 24);
    copy_text(r->reason, sizeof(r->reason), b + REPLY_FIXED, len - REPLY_FIXED);
    return true;
}

GBytes *wire_status_encode(uint32_t code, const char *text)
{
    size_t tlen = text ? MIN(strlen(text), (size_t)1024) : 0;
    uint8_t *b = g_malloc(4 + tlen);
    put32(b, code);
    if (tlen) {
        memcpy(b + 4, text, tlen);
    }
    return g_bytes_new_take(b, 4 + tlen);
}

bool wire_status_decode(const void *p, size_t len, uint32_t *code, char **text,
                        GError **errp)
{
    if (len < 4 || len > 4 + 1024) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "status message of %zu bytes is malformed", len);
        return false;
    }
    *code = get32(p);
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
                                         "postcopy" };
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
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
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
            g_set_error(errp, G_FILE_ERROR,
                        n ? g_file_error_from_errno(errno) : G_FILE_ERROR_PIPE,
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
    for (uint64_t pfn = bitmap_next_set(set, npages, 0); pfn < npages;) {
        uint64_t end = bitmap_next_clear(set, npages, pfn);
        uint8_t run[16];
        put64(run, pfn);
        put64(run + 8, end - pfn);
        g_byte_array_append(msg, run, 16);
        count++;
        pfn = bitmap_next_set(set, npages, end);
        if (msg->len + 16 > WIRE_MAX_PAYLOAD / 2 && pfn < npages) {
            put32(msg->data, word);
            put32(msg->data + 4, count);
            g_ptr_array_add(out, g_byte_array_free_to_bytes(msg));
            msg = g_byte_array_new();
            g_byte_array_append(msg, hdr, 8);
            count = 0;
        }
    }
    put32(msg->data, last_word);
    put32(msg->data + 4, count);
    g_ptr_array_add(out, g_byte_array_free_to_bytes(msg));
    return out;
}

bool wire_runs_decode(const void *p, size_t len, uint64_t npages,
                      unsigned long *set, uint32_t *word, uint64_t *pages,
                      GError **errp)
{
    const uint8_t *d = p;

    if (len < 8 || (len - 8) % 16 || get32(d + 4) != (len - 8) / 16) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "malformed page-run message (%zu bytes)", len);
        return false;
    }
    *word = get32(d);
    *pages = 0;
    for (size_t off = 8; off < len; off += 16) {
        uint64_t pfn = get64(d + off), n = get64(d + off + 8);
        if (!n || pfn >= npages || n > npages - pfn) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                        "page run %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
                        " is outside RAM (%" G_GUINT64_FORMAT " pages)", pfn, n,
                        npages);
            return false;
        }
        bitmap_set_range(set, pfn, n);
        *pages += n;
    }
    return true;
}

void wire_set_peer_error(const void *p, size_t len, const char *what, GError **errp)
{
    uint32_t code;
    g_autofree char *text = NULL;

    wire_status_decode(p, len, &code, &text, NULL);
    g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s: %s", what,
                text && *text ? text : "(no reason)");
}
