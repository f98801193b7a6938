/* SPDX-License-Identifier: GPL-2.0-or-later */
/* VM state files: see include/migration/vmstate_file.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vm/vmstate_file.h"

#define VMSTATE_MAGIC "HMSTATE1"
#define VMSTATE_VERSION 2
#define CHUNK (1u << 20)

VmStateSection *vmstate_section_new(const char *name, const void *data,
                                    size_t len)
{
    VmStateSection *s = g_new0(VmStateSection, 1);
    s->name = g_strdup(name);
    s->data = g_bytes_new(data, len);
    return s;
}

void vmstate_section_free(VmStateSection *s)
{
    if (s) {
        g_free(s->name);
        g_bytes_unref(s->data);
        g_free(s);
    }
}

GBytes *vmstate_sections_find(GPtrArray *sections, const char *name)
{
    for (guint i = 0; i < sections->len; i++) {
        VmStateSection *s = g_ptr_array_index(sections, i);
        if (!strcmp(s->name, name)) {
            return s->data;
        }
    }
    return NULL;
}

static void buf_put32(GByteArray *b, uint32_t v)
{
    v = GUINT32_TO_LE(v);
    g_byte_array_append(b, (const guint8 *)&v, 4);
}

GBytes *vmstate_sections_encode(GPtrArray *sections)
{
    GByteArray *b = g_byte_array_new();
    buf_put32(b, sections->len);
    for (guint i = 0; i < sections->len; i++) {
        VmStateSection *s = g_ptr_array_index(sections, i);
        gsize len;
        const guint8 *data = g_bytes_get_data(s->data, &len);
        buf_put32(b, strlen(s->name));
        g_byte_array_append(b, (const guint8 *)s->name, strlen(s->name));
        buf_put32(b, len);
        g_byte_array_append(b, data, len);
    }
    return g_byte_array_free_to_bytes(b);
}

typedef struct Writer {
    FILE *f;
    GChecksum *sum;
    bool ok;
} Writer;

static void put(Writer *w, const void *p, size_t len)
{
    if (w->ok && fwrite(p, 1, len, w->f) != len) {
        w->ok = false;
    }
    g_checksum_update(w->sum, p, len);
}

static void put32(Writer *w, uint32_t v)
{
    v = GUINT32_TO_LE(v);
    put(w, &v, 4);
}

bool vmstate_file_save(const char *path, const GuestRam *ram,
                       GPtrArray *sections, GError **errp)
{
    Writer w = { fopen(path, "wbe"), g_checksum_new(G_CHECKSUM_SHA256), true };
    if (!w.f) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot create %s: %s", path, g_strerror(errno));
        g_checksum_free(w.sum);
        return false;
    }
    uint64_t size_le = GUINT64_TO_LE(ram->size);
    put(&w, VMSTATE_MAGIC, 8);
    put32(&w, VMSTATE_VERSION);
    put32(&w, GUEST_PAGE_SIZE);
    put(&w, &size_le, 8);
    g_autoptr(GBytes) secs = vmstate_sections_encode(sections);
    gsize slen;
    const void *sdata = g_bytes_get_data(secs, &slen);
    put32(&w, slen);
    put(&w, sdata, slen);
    for (uint64_t off = 0; off < ram->size; off += CHUNK) {
        put(&w, ram->host + off, MIN((uint64_t)CHUNK, ram->size - off));
    }
    guint8 digest[32];
    gsize dlen = sizeof(digest);
    g_checksum_get_digest(w.sum, digest, &dlen);
    if (w.ok && fwrite(digest, 1, dlen, w.f) != dlen) {
        w.ok = false;
    }
    int saved_errno = errno;
    if (fclose(w.f) != 0) {
        w.ok = false;
        saved_errno = errno;
    }
    g_checksum_free(w.sum);
    if (!w.ok) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(saved_errno),
                    "writing %s failed: %s", path, g_strerror(saved_errno));
        remove(path);
    }
    return w.ok;
}

typedef struct Reader {
    const uint8_t *p, *end;
} Reader;

static bool get(Reader *r, void *dst, size_t len)
{
    if ((size_t)(r->end - r->p) < len) {
        return false;
    }
    memcpy(dst, r->p, len);
    r->p += len;
    return true;
}

static bool get32(Reader *r, uint32_t *v)
{
    if (!get(r, v, 4)) {
        return false;
    }
    *v = GUINT32_FROM_LE(*v);
    return true;
}

GPtrArray *vmstate_sections_decode(const void *data, size_t len, GError **errp)
{
    Reader r = { data, (const uint8_t *)data + len };
    uint32_t nsec;

    if (!get32(&r, &nsec) || nsec > VMSTATE_MAX_SECTIONS) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "device state: bad section count");
        return NULL;
    }
    GPtrArray *secs = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vmstate_section_free);
    for (uint32_t i = 0; i < nsec; i++) {
        uint32_t nlen, dlen;
        char name[64];
        bool ok = get32(&r, &nlen) && nlen > 0 && nlen < sizeof(name) &&
                  get(&r, name, nlen) && get32(&r, &dlen) &&
                  dlen <= VMSTATE_MAX_SECTION_SIZE && (size_t)(r.end - r.p) >= dlen;
        for (uint32_t c = 0; ok && c < nlen; c++) {
            ok = g_ascii_isgraph(name[c]);
        }
        if (!ok) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                        "device state: section %u is malformed", i);
            g_ptr_array_unref(secs);
            return NULL;
        }
        name[nlen] = '\0';
        g_ptr_array_add(secs, vmstate_section_new(name, r.p, dlen));
        r.p += dlen;
    }
    if (r.p != r.end) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "device state: %zu trailing bytes", (size_t)(r.end - r.p));
        g_ptr_array_unref(secs);
        return NULL;
    }
    return secs;
}

GPtrArray *vmstate_file_load(const char *path, GuestRam *ram, GError **errp)
{
    g_autoptr(GMappedFile) mf = g_mapped_file_new(path, FALSE, errp);
    if (!mf) {
        return NULL;
    }
    const uint8_t *base = (const uint8_t *)g_mapped_file_get_contents(mf);
    size_t flen = g_mapped_file_get_length(mf);
    if (flen < 32) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%s: too short to be a state file", path);
        return NULL;
    }
    /* Checksum first: nothing unverified reaches guest RAM. */
    guint8 digest[32];
    gsize dlen = sizeof(digest);
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    g_checksum_update(sum, base, flen - 32);
    g_checksum_get_digest(sum, digest, &dlen);
    g_checksum_free(sum);
    if (memcmp(digest, base + flen - 32, 32)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%s: checksum mismatch (file corrupt or truncated)", path);
        return NULL;
    }

    Reader r = { base, base + flen - 32 };
    char magic[8];
    uint32_t version, page_size, slen;
    uint64_t ram_size;
    if (!get(&r, magic, 8) || memcmp(magic, VMSTATE_MAGIC, 8) ||
        !get32(&r, &version) || !get32(&r, &page_size) ||
        !get(&r, &ram_size, 8) || !get32(&r, &slen)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%s: not a hintmig state file", path);
        return NULL;
    }
    ram_size = GUINT64_FROM_LE(ram_size);
    if (version != VMSTATE_VERSION || page_size != GUEST_PAGE_SIZE ||
        ram_size != ram->size || slen > (size_t)(r.end - r.p)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%s: version %u, page size %u, RAM %" G_GUINT64_FORMAT
                    " bytes does not fit this VM (version %u, page size %u, "
                    "RAM %" G_GUINT64_FORMAT " bytes)", path, version, page_size,
                    ram_size, VMSTATE_VERSION, GUEST_PAGE_SIZE, ram->size);
        return NULL;
    }
    GPtrArray *secs = vmstate_sections_decode(r.p, slen, errp);
    if (!secs) {
        return NULL;
    }
    r.p += slen;
    if ((uint64_t)(r.end - r.p) != ram->size) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%s: RAM part is %zu bytes, expected %" G_GUINT64_FORMAT,
                    path, (size_t)(r.end - r.p), ram->size);
        g_ptr_array_unref(secs);
        return NULL;
    }
    guest_ram_write_nonzero(ram, 0, r.p, ram->size);
    return secs;
}
