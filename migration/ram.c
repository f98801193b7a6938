/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The engine's view of guest RAM: see migration/ram.h. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "migration/ram.h"
#include "migration/le.h"

static bool check_region(const HintmigRamRegion *r, unsigned i, GError **errp)
{
    uint64_t ps = r->page_size ? r->page_size : HM_PAGE_SIZE;

    if (!r->name || !*r->name) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "RAM region %u has no name", i);
        return false;
    }
    if (!r->host || !r->size) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "RAM region '%s' has no %s", r->name, r->host ? "size" : "address");
        return false;
    }
    if (ps < HM_PAGE_SIZE || (ps & (ps - 1)) || (uintptr_t)r->host % ps ||
        r->size % ps) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "RAM region '%s': address %p and size %" G_GUINT64_FORMAT
                    " must be multiples of its page size %" G_GUINT64_FORMAT,
                    r->name, r->host, r->size, ps);
        return false;
    }
    if (r->gpa != HINTMIG_GPA_NONE && (r->gpa % HM_PAGE_SIZE ||
                                       r->gpa + r->size < r->gpa)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "RAM region '%s': guest-physical base 0x%" G_GINT64_MODIFIER
                    "x is not page aligned or wraps", r->name, r->gpa);
        return false;
    }
    if (r->backing == HINTMIG_BACKING_SHARED && r->fd >= 0 &&
        r->fd_offset % HM_PAGE_SIZE) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "RAM region '%s': file offset is not page aligned", r->name);
        return false;
    }
    return true;
}

static bool overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

HmRam *hm_ram_new(const HintmigRamRegion *regions, unsigned n, GError **errp)
{
    if (!n || !regions) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                    "the host gave no RAM regions");
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        const HintmigRamRegion *a = &regions[i];
        if (!check_region(a, i, errp)) {
            return NULL;
        }
        for (unsigned j = 0; j < i; j++) {
            const HintmigRamRegion *b = &regions[j];
            const char *what = NULL;
            if (!strcmp(a->name, b->name)) {
                what = "share a name";
            } else if (overlap((uintptr_t)a->host, a->size, (uintptr_t)b->host, b->size)) {
                what = "overlap in host memory";
            } else if (a->gpa != HINTMIG_GPA_NONE && b->gpa != HINTMIG_GPA_NONE &&
                       overlap(a->gpa, a->size, b->gpa, b->size)) {
                what = "overlap in guest-physical memory";
            }
            if (what) {
                g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_INVALID,
                            "RAM regions '%s' and '%s' %s", b->name, a->name, what);
                return NULL;
            }
        }
    }

    HmRam *ram = g_new0(HmRam, 1);
    ram->r = g_new0(HmRegion, n);
    ram->n = n;
    for (unsigned i = 0; i < n; i++) {
        const HintmigRamRegion *s = &regions[i];
        HmRegion *r = &ram->r[i];
        *r = (HmRegion) {
            .name = g_strdup(s->name),
            .gpa = s->gpa,
            .host = s->host,
            .size = s->size,
            .page_size = s->page_size ? s->page_size : HM_PAGE_SIZE,
            .backing = s->backing,
            .fd = s->backing == HINTMIG_BACKING_SHARED ? s->fd : -1,
            .fd_offset = s->fd_offset,
            .first = ram->npages,
            .npages = s->size / HM_PAGE_SIZE,
        };
        ram->npages += r->npages;
        ram->size += r->size;
    }
    return ram;
}

void hm_ram_free(HmRam *ram)
{
    if (!ram) {
        return;
    }
    for (unsigned i = 0; i < ram->n; i++) {
        g_free(ram->r[i].name);
    }
    g_free(ram->r);
    g_free(ram);
}

uint64_t hm_ram_contig(const HmRam *ram, uint64_t pfn, uint64_t n)
{
    const HmRegion *r = hm_ram_region(ram, pfn);
    return MIN(n, r->first + r->npages - pfn);
}

bool hm_ram_gpa_to_pfn(const HmRam *ram, uint64_t gpa, uint64_t *pfn)
{
    for (unsigned i = 0; i < ram->n; i++) {
        const HmRegion *r = &ram->r[i];
        if (r->gpa != HINTMIG_GPA_NONE && gpa >= r->gpa && gpa - r->gpa < r->size) {
            *pfn = r->first + ((gpa - r->gpa) >> HM_PAGE_SHIFT);
            return true;
        }
    }
    return false;
}

bool hm_ram_hva_to_pfn(const HmRam *ram, const void *hva, uint64_t *pfn)
{
    uintptr_t a = (uintptr_t)hva;

    for (unsigned i = 0; i < ram->n; i++) {
        const HmRegion *r = &ram->r[i];
        if (a >= (uintptr_t)r->host && a - (uintptr_t)r->host < r->size) {
            *pfn = r->first + ((a - (uintptr_t)r->host) >> HM_PAGE_SHIFT);
            return true;
        }
    }
    return false;
}

/* Releases one run inside region @r. */
static int64_t discard_run(const HmRegion *r, uint64_t pfn, uint64_t n)
{
    uint8_t *p = r->host + ((pfn - r->first) << HM_PAGE_SHIFT);
    uint64_t len = n << HM_PAGE_SHIFT;

    switch (r->backing) {
    case HINTMIG_BACKING_ANON:
        return madvise(p, len, MADV_FREE) ? -errno : (int64_t)len;
    case HINTMIG_BACKING_SHARED:
        /*
         * MADV_FREE does not apply to shared memory: dropping the pages
         * means freeing them in the file, or the mapping keeps them alive.
         */
        if (r->fd >= 0) {
            off_t off = (off_t)(r->fd_offset + (uint64_t)(p - r->host));
            if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                          off, (off_t)len)) {
                return -errno;
            }
            return (int64_t)len;
        }
        return madvise(p, len, MADV_REMOVE) ? -errno : (int64_t)len;
    case HINTMIG_BACKING_HUGETLB:
        /* A hinted 4 KiB page is a piece of a huge page: keep it. */
        return 0;
    }
    return 0;
}

uint64_t hm_ram_discard(const HmRam *ram, uint64_t pfn, uint64_t n, char *why,
                        size_t len)
{
    uint64_t done = 0;

    while (n) {
        const HmRegion *r = hm_ram_region(ram, pfn);
        uint64_t k = MIN(n, r->first + r->npages - pfn);
        int64_t got = discard_run(r, pfn, k);
        if (got > 0) {
            done += (uint64_t)got;
        } else if (why && !why[0]) {
            g_snprintf(why, len, "region '%s': %s", r->name,
                       got ? g_strerror((int)-got)
                           : "hugetlbfs, a 4 KiB hint is part of a huge page");
        }
        pfn += k;
        n -= k;
    }
    return done;
}

int hm_ram_drop(const HmRam *ram, uint64_t pfn, uint64_t n)
{
    while (n) {
        const HmRegion *r = hm_ram_region(ram, pfn);
        uint64_t k = MIN(n, r->first + r->npages - pfn);
        uint8_t *p = r->host + ((pfn - r->first) << HM_PAGE_SHIFT);
        int rc;
        if (r->backing == HINTMIG_BACKING_ANON) {
            rc = madvise(p, k << HM_PAGE_SHIFT, MADV_DONTNEED);
        } else if (r->fd >= 0) {
            rc = fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                           (off_t)(r->fd_offset + (uint64_t)(p - r->host)),
                           (off_t)(k << HM_PAGE_SHIFT));
        } else {
            rc = madvise(p, k << HM_PAGE_SHIFT, MADV_REMOVE);
        }
        if (rc) {
            return -errno;
        }
        pfn += k;
        n -= k;
    }
    return 0;
}

int hm_ram_madvise(const HmRam *ram, uint64_t pfn, uint64_t n, int advice)
{
    while (n) {
        const HmRegion *r = hm_ram_region(ram, pfn);
        uint64_t k = MIN(n, r->first + r->npages - pfn);
        if (madvise(r->host + ((pfn - r->first) << HM_PAGE_SHIFT),
                    k << HM_PAGE_SHIFT, advice)) {
            return -errno;
        }
        pfn += k;
        n -= k;
    }
    return 0;
}

uint64_t hm_ram_layout_digest(const HmRam *ram)
{
    XXH64_state_t *st = XXH64_createState();
    uint64_t h;

    XXH64_reset(st, ram->n);
    for (unsigned i = 0; i < ram->n; i++) {
        uint8_t size[8];
        le_put64(size, ram->r[i].size);
        XXH64_update(st, ram->r[i].name, strlen(ram->r[i].name) + 1);
        XXH64_update(st, size, sizeof(size));
    }
    h = XXH64_digest(st);
    XXH64_freeState(st);
    return h;
}

void hm_ram_describe(const HmRam *ram, GString *s)
{
    for (unsigned i = 0; i < ram->n; i++) {
        g_string_append_printf(s, "%s%s=%" G_GUINT64_FORMAT, i ? ", " : "",
                               ram->r[i].name, ram->r[i].size);
    }
}
