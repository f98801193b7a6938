/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Buddy allocator over guest RAM: see include/guest/page_alloc.h. */
#include <errno.h>
#include <string.h>

#include "guest/page_alloc.h"

static void lock(GuestMem *m)
{
    while (__atomic_exchange_n(&m->sb->lock, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(&m->sb->lock, __ATOMIC_RELAXED)) {
            __builtin_ia32_pause();
        }
    }
}

static void unlock(GuestMem *m)
{
    __atomic_store_n(&m->sb->lock, 0, __ATOMIC_RELEASE);
}

bool page_in_zone(const GuestMem *m, uint64_t pfn)
{
    return pfn >= m->sb->zone_start && pfn < m->npages;
}

/* A link read from guest RAM: dereference it only when this says so. */
static bool link_ok(const GuestMem *m, uint32_t pfn)
{
    return pfn != GUEST_PFN_NONE && page_in_zone(m, pfn);
}

static void list_add(GuestMem *m, uint32_t pfn, unsigned order)
{
    GuestPageMeta *pm = &m->meta[pfn];
    uint32_t head = m->sb->free_head[order];

    pm->state = GPS_FREE_HEAD;
    pm->order = order;
    pm->kind = GPK_NONE;
    pm->prev = GUEST_PFN_NONE;
    pm->next = head;
    if (link_ok(m, head)) {
        m->meta[head].prev = pfn;
    }
    m->sb->free_head[order] = pfn;
    m->sb->nr_free[order]++;
}

static void list_del(GuestMem *m, uint32_t pfn, unsigned order)
{
    GuestPageMeta *pm = &m->meta[pfn];

    if (link_ok(m, pm->prev)) {
        m->meta[pm->prev].next = pm->next;
    } else {
        m->sb->free_head[order] = pm->next;
    }
    if (link_ok(m, pm->next)) {
        m->meta[pm->next].prev = pm->prev;
    }
    pm->next = pm->prev = GUEST_PFN_NONE;
    pm->state = GPS_FREE;
    m->sb->nr_free[order]--;
}

static bool layout_fits(uint64_t npages, uint64_t *meta_npages,
                        uint64_t *zone_start)
{
    *meta_npages = (npages * sizeof(GuestPageMeta) + GUEST_PAGE_SIZE - 1) /
                   GUEST_PAGE_SIZE;
    *zone_start = 1 + *meta_npages;
    /* Leave at least a couple of 4 MiB blocks to allocate from. */
    return npages >= *zone_start + (2u << GUEST_MAX_ORDER);
}

static void view(GuestMem *m, GuestRam *ram)
{
    m->ram = ram;
    m->sb = guest_ram_page(ram, 0);
    m->meta = guest_ram_page(ram, 1);
    m->npages = ram->npages;
}

bool page_alloc_init(GuestMem *m, GuestRam *ram, GError **errp)
{
    uint64_t meta_npages, zone_start;

    G_STATIC_ASSERT(sizeof(GuestSuperblock) <= GUEST_PAGE_SIZE);
    G_STATIC_ASSERT(sizeof(GuestPageMeta) == 16);
    if (!layout_fits(ram->npages, &meta_npages, &zone_start)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "guest RAM of %" G_GUINT64_FORMAT " pages is too small "
                    "for the guest (needs at least 16 MiB)", ram->npages);
        return false;
    }
    view(m, ram);
    memset(m->sb, 0, GUEST_PAGE_SIZE);
    m->sb->version = GUEST_LAYOUT_VERSION;
    m->sb->page_size = GUEST_PAGE_SIZE;
    m->sb->npages = ram->npages;
    m->sb->meta_npages = meta_npages;
    m->sb->zone_start = zone_start;
    for (unsigned o = 0; o <= GUEST_MAX_ORDER; o++) {
        m->sb->free_head[o] = GUEST_PFN_NONE;
    }
    for (uint64_t pfn = 0; pfn < ram->npages; pfn++) {
        m->meta[pfn] = (GuestPageMeta) {
            .state = pfn < zone_start ? GPS_RESERVED : GPS_FREE,
            .next = GUEST_PFN_NONE, .prev = GUEST_PFN_NONE,
        };
    }
    /* Carve the zone into the largest naturally aligned blocks. */
    for (uint64_t pfn = zone_start; pfn < ram->npages;) {
        unsigned order = GUEST_MAX_ORDER;
        while (order && ((pfn & ((1u << order) - 1)) ||
                         pfn + (1u << order) > ram->npages)) {
            order--;
        }
        list_add(m, pfn, order);
        m->sb->free_pages += 1u << order;
        pfn += 1u << order;
    }
    return true;
}

bool page_alloc_attach(GuestMem *m, GuestRam *ram, GError **errp)
{
    const GuestSuperblock *sb = guest_ram_page(ram, 0);
    uint64_t meta_npages, zone_start;

    if (sb->magic != GUEST_MAGIC) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                    "no guest state in RAM");
        return false;
    }
    if (sb->version != GUEST_LAYOUT_VERSION || sb->page_size != GUEST_PAGE_SIZE ||
        sb->npages != ram->npages || !layout_fits(ram->npages, &meta_npages,
                                                  &zone_start) ||
        sb->meta_npages != meta_npages || sb->zone_start != zone_start) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "guest superblock does not match this RAM (version %u, "
                    "%" G_GUINT64_FORMAT " pages; RAM has %" G_GUINT64_FORMAT ")",
                    sb->version, sb->npages, ram->npages);
        return false;
    }
    view(m, ram);
    return true;
}

uint32_t page_alloc(GuestMem *m, unsigned order, uint8_t kind, uint8_t owner)
{
    unsigned o;
    uint32_t pfn = GUEST_PFN_NONE;

    if (order > GUEST_MAX_ORDER) {
        return GUEST_PFN_NONE;
    }
    lock(m);
    for (o = order; o <= GUEST_MAX_ORDER; o++) {
        if (m->sb->free_head[o] != GUEST_PFN_NONE) {
            break;
        }
    }
    if (o > GUEST_MAX_ORDER) {
        goto out;
    }
    pfn = m->sb->free_head[o];
    if (!page_in_zone(m, pfn)) {
        pfn = GUEST_PFN_NONE;     /* corrupt list: refuse, self-check says why */
        goto out;
    }
    list_del(m, pfn, o);
    /* Split, putting the upper halves back. */
    while (o > order) {
        o--;
        list_add(m, pfn + (1u << o), o);
    }
    for (uint32_t i = 0; i < (1u << order); i++) {
        GuestPageMeta *pm = &m->meta[pfn + i];
        pm->state = GPS_ALLOC;
        pm->kind = kind;
        pm->owner = owner;
        pm->order = order;
    }
    m->sb->free_pages -= 1u << order;
out:
    unlock(m);
    return pfn;
}

int page_free(GuestMem *m, uint32_t pfn, unsigned order)
{
    if (order > GUEST_MAX_ORDER || !page_in_zone(m, pfn) ||
        pfn + (1ull << order) > m->npages || (pfn & ((1u << order) - 1))) {
        return -EINVAL;
    }
    lock(m);
    if (m->meta[pfn].state != GPS_ALLOC || m->meta[pfn].order != order) {
        unlock(m);
        return -EINVAL;
    }
    for (uint32_t i = 1; i < (1u << order); i++) {
        m->meta[pfn + i].state = GPS_FREE;
        m->meta[pfn + i].kind = GPK_NONE;
    }
    m->sb->free_pages += 1u << order;
    uint32_t orig = pfn;
    while (order < GUEST_MAX_ORDER) {
        uint64_t buddy = pfn ^ (1u << order);
        if (!page_in_zone(m, buddy) || buddy + (1u << order) > m->npages ||
            m->meta[buddy].state != GPS_FREE_HEAD ||
            m->meta[buddy].order != order) {
            break;
        }
        list_del(m, buddy, order);
        pfn = MIN(pfn, (uint32_t)buddy);
        order++;
    }
    /* Merged buddies became tails in list_del; so may the freed head. */
    if (orig != pfn) {
        m->meta[orig].state = GPS_FREE;
        m->meta[orig].kind = GPK_NONE;
    }
    list_add(m, pfn, order);
    unlock(m);
    return 0;
}

bool page_alloc_check(GuestMem *m, GError **errp)
{
    uint64_t listed = 0, heads = 0, free_state = 0;

    for (unsigned o = 0; o <= GUEST_MAX_ORDER; o++) {
        uint64_t n = 0;
        uint32_t prev = GUEST_PFN_NONE;
        for (uint32_t pfn = m->sb->free_head[o]; pfn != GUEST_PFN_NONE;
             pfn = m->meta[pfn].next) {
            if (!page_in_zone(m, pfn) || pfn + (1ull << o) > m->npages) {
                g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                            "order-%u free list points outside RAM (pfn %u)",
                            o, pfn);
                return false;
            }
            const GuestPageMeta *pm = &m->meta[pfn];
            if (pm->state != GPS_FREE_HEAD || pm->order != o ||
                pm->prev != prev || (pfn & ((1u << o) - 1))) {
                g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                            "order-%u free list entry %u is inconsistent", o, pfn);
                return false;
            }
            if (++n > m->npages) {
                g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                            "order-%u free list has a loop", o);
                return false;
            }
            prev = pfn;
        }
        if (n != m->sb->nr_free[o]) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                        "order-%u free list has %" G_GUINT64_FORMAT " blocks, "
                        "counter says %" G_GUINT64_FORMAT, o, n, m->sb->nr_free[o]);
            return false;
        }
        listed += n << o;
    }
    for (uint64_t pfn = m->sb->zone_start; pfn < m->npages; pfn++) {
        uint8_t st = m->meta[pfn].state;
        heads += st == GPS_FREE_HEAD;
        free_state += st == GPS_FREE_HEAD || st == GPS_FREE;
    }
    uint64_t list_heads = 0;
    for (unsigned o = 0; o <= GUEST_MAX_ORDER; o++) {
        list_heads += m->sb->nr_free[o];
    }
    if (listed != m->sb->free_pages || free_state != listed ||
        heads != list_heads) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                    "free page counts disagree: lists hold %" G_GUINT64_FORMAT
                    ", counter %" G_GUINT64_FORMAT ", page states %" G_GUINT64_FORMAT,
                    listed, m->sb->free_pages, free_state);
        return false;
    }
    return true;
}
