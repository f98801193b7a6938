/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The wire header and the small payloads (wire.c): the first byte picks the
 * decoder, the rest is its input.  Whatever decodes must encode back to the
 * same bytes, and decoded text must be printable.
 */
#include <string.h>

#include "migration/ram_digest.h"
#include "migration/wire.h"
#include "fuzz.h"

enum { W_HEADER, W_HELLO, W_REPLY, W_STATUS, W_PEER_ERROR, W_SESSION,
       W_REQUEST, W_DIGESTS, W_UUID, W_N };

static void check_printable(const char *s)
{
    for (; *s; s++) {
        FUZZ_CHECK(g_ascii_isprint(*s));
    }
}

static void header(const uint8_t *p, size_t len)
{
    uint8_t buf[WIRE_HEADER_SIZE] = { 0 };
    g_autoptr(GError) err = NULL;
    WireHeader h;

    memcpy(buf, p, MIN(len, sizeof(buf)));
    if (!wire_header_decode(buf, &h, &err)) {
        FUZZ_CHECK(err && err->message[0]);
        return;
    }
    FUZZ_CHECK(h.len <= WIRE_MAX_PAYLOAD && wire_type_str(h.type));
    uint8_t again[WIRE_HEADER_SIZE];
    wire_header_encode(again, h.type, h.seq, h.len);
    FUZZ_CHECK(!memcmp(again, buf, sizeof(buf)));
}

static void hello(const uint8_t *p, size_t len)
{
    WireHello h;

    if (!wire_hello_decode(p, len, &h, NULL)) {
        return;
    }
    g_autoptr(GBytes) b = wire_hello_encode(&h);
    FUZZ_CHECK(g_bytes_get_size(b) == len &&
               !memcmp(g_bytes_get_data(b, NULL), p, len));
    char text[37];
    uint8_t uuid[16];
    wire_uuid_format(h.uuid, text);
    FUZZ_CHECK(wire_uuid_parse(text, uuid) && !memcmp(uuid, h.uuid, 16));
    g_free(wire_features_str(h.features_offered));
}

static void reply(const uint8_t *p, size_t len)
{
    WireHelloReply r, r2;
    gsize blen;

    if (!wire_hello_reply_decode(p, len, &r, NULL)) {
        return;
    }
    check_printable(r.reason);
    g_autoptr(GBytes) b = wire_hello_reply_encode(&r);
    const void *d = g_bytes_get_data(b, &blen);
    FUZZ_CHECK(wire_hello_reply_decode(d, blen, &r2, NULL));
    FUZZ_CHECK(r2.status == r.status && r2.features_accepted == r.features_accepted &&
               r2.page_size == r.page_size && r2.ram_size == r.ram_size &&
               r2.nvcpus == r.nvcpus && !strcmp(r2.reason, r.reason));
}

static void status(const uint8_t *p, size_t len)
{
    uint32_t code, code2;
    g_autofree char *text = NULL, *text2 = NULL;
    gsize blen;

    if (!wire_status_decode(p, len, &code, &text, NULL)) {
        return;
    }
    check_printable(text);
    g_autoptr(GBytes) b = wire_status_encode(code, text);
    const void *d = g_bytes_get_data(b, &blen);
    FUZZ_CHECK(wire_status_decode(d, blen, &code2, &text2, NULL));
    FUZZ_CHECK(code2 == code && !strcmp(text, text2));
}

static void peer_error(const uint8_t *p, size_t len)
{
    g_autoptr(GError) err = NULL;

    wire_set_peer_error(p, len, "fuzz", &err);
    FUZZ_CHECK(err && g_str_has_prefix(err->message, "fuzz: "));
    check_printable(err->message);
}

static void session(const uint8_t *p, size_t len)
{
    uint64_t s;
    uint8_t again[8];

    if (wire_session_decode(p, len, &s)) {
        wire_session_encode(again, s);
        FUZZ_CHECK(len == 8 && !memcmp(again, p, 8));
    }
    /* MULTIFD's intro: the session, the connection's index and count. */
    WireMultifd w;
    uint8_t w_again[16];
    g_autoptr(GError) err = NULL;
    if (wire_multifd_decode(p, len, &w, &err)) {
        FUZZ_CHECK(len == 16 && w.count >= 2 && w.count <= WIRE_MULTIFD_MAX &&
                   w.index >= 1 && w.index < w.count);
        wire_multifd_encode(w_again, &w);
        FUZZ_CHECK(!memcmp(w_again, p, 16));
    } else {
        FUZZ_CHECK(err && err->message[0]);
    }
}

/* Page requests and digests: the RAM's size comes from the input too. */
static void request(const uint8_t *p, size_t len)
{
    if (len < 2) {
        return;
    }
    uint64_t npages = p[0] | p[1] << 8;
    uint32_t n;
    size_t elen;
    g_autoptr(GError) err = NULL;
    g_autofree uint64_t *pfns = wire_page_request_decode(p + 2, len - 2, npages, &n, &err);

    if (!pfns) {
        FUZZ_CHECK(err);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        FUZZ_CHECK(pfns[i] < npages);
    }
    g_autofree uint8_t *again = wire_page_request_encode(pfns, n, &elen);
    FUZZ_CHECK(elen == len - 2 && !memcmp(again, p + 2, elen));
}

static void digests(const uint8_t *p, size_t len)
{
    if (len < 1) {
        return;
    }
    uint64_t nchunks = p[0];
    g_autofree uint64_t *out = g_new0(uint64_t, MAX(nchunks, 1));
    uint32_t count;
    g_autoptr(GError) err = NULL;

    if (!wire_digests_decode(p + 1, len - 1, RAM_DIGEST_CHUNK_PAGES, nchunks, out,
                             &count, &err)) {
        FUZZ_CHECK(err);
        return;
    }
    uint64_t first = (uint64_t)p[9] | (uint64_t)p[10] << 8 | (uint64_t)p[11] << 16 |
                     (uint64_t)p[12] << 24 | (uint64_t)p[13] << 32 |
                     (uint64_t)p[14] << 40 | (uint64_t)p[15] << 48 |
                     (uint64_t)p[16] << 56;
    FUZZ_CHECK(first <= nchunks && count <= nchunks - first);
    g_autofree uint8_t *again = g_malloc(WIRE_DIGESTS_HEADER + (size_t)count * 8);
    size_t elen = wire_digests_encode(again, RAM_DIGEST_CHUNK_PAGES, first, out + first,
                                      count);
    FUZZ_CHECK(elen == len - 1 && !memcmp(again, p + 1, elen));
}

static void uuid(const uint8_t *p, size_t len)
{
    g_autofree char *s = g_strndup((const char *)p, len);
    uint8_t u[16];
    char text[37];

    if (wire_uuid_parse(s, u)) {
        wire_uuid_format(u, text);
        FUZZ_CHECK(!g_ascii_strcasecmp(text, s));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size) {
        return 0;
    }
    const uint8_t *p = data + 1;
    size_t len = size - 1;

    switch (data[0] % W_N) {
    case W_HEADER: header(p, len); break;
    case W_HELLO: hello(p, len); break;
    case W_REPLY: reply(p, len); break;
    case W_STATUS: status(p, len); break;
    case W_PEER_ERROR: peer_error(p, len); break;
    case W_SESSION: session(p, len); break;
    case W_REQUEST: request(p, len); break;
    case W_DIGESTS: digests(p, len); break;
    case W_UUID: uuid(p, len); break;
    }
    return 0;
}
