/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Page-list vectors in guest RAM: see include/guest/page_vec.h. */
#include <errno.h>
#include <string.h>

#include "guest/page_vec.h"

static uint32_t *vec_page(GuestMem *m, uint32_t pfn)
{
    if (!page_in_zone(m, pfn) || m->meta[pfn].state != GPS_ALLOC ||
        m->meta[pfn].kind != GPK_KERNEL) {
        return NULL;
    }
    return guest_ram_page(m->ram, pfn);
}

uint32_t page_vec_new(GuestMem *m, uint8_t owner)
{
    uint32_t dir = page_alloc(m, 0, GPK_KERNEL, owner);

    if (dir != GUEST_PFN_NONE) {
        memset(guest_ram_page(m->ram, dir), 0xff, GUEST_PAGE_SIZE);
    }
    return dir;
}

int page_vec_set(GuestMem *m, uint32_t dir, uint64_t idx, uint32_t pfn,
                 uint8_t owner)
{
    uint32_t *d = vec_page(m, dir);

    if (!d || idx >= PAGE_VEC_MAX) {
        return -EINVAL;
    }
    uint32_t *leaf_slot = &d[idx / PAGE_VEC_FANOUT];
    if (idx % PAGE_VEC_FANOUT == 0) {
        uint32_t leaf = page_alloc(m, 0, GPK_KERNEL, owner);
        if (leaf == GUEST_PFN_NONE) {
            return -ENOMEM;
        }
        memset(guest_ram_page(m->ram, leaf), 0xff, GUEST_PAGE_SIZE);
        *leaf_slot = leaf;
    }
    uint32_t *l = vec_page(m, *leaf_slot);
    if (!l) {
        return -EINVAL;
    }
    l[idx % PAGE_VEC_FANOUT] = pfn;
    return 0;
}

int page_vec_get(GuestMem *m, uint32_t dir, uint64_t idx, uint32_t *pfn)
{
    uint32_t *d = vec_page(m, dir);

    if (!d || idx >= PAGE_VEC_MAX) {
        return -EINVAL;
    }
    uint32_t *l = vec_page(m, d[idx / PAGE_VEC_FANOUT]);
    if (!l) {
        return -EINVAL;
    }
    uint32_t v = l[idx % PAGE_VEC_FANOUT];
    if (!page_in_zone(m, v) || m->meta[v].state != GPS_ALLOC) {
        return -EINVAL;
    }
    *pfn = v;
    return 0;
}

int page_vec_free(GuestMem *m, uint32_t dir, uint64_t count)
{
    uint32_t *d = vec_page(m, dir);

    if (!d || count > PAGE_VEC_MAX) {
        return -EINVAL;
    }
    for (uint64_t i = 0; i < (count + PAGE_VEC_FANOUT - 1) / PAGE_VEC_FANOUT; i++) {
        if (!vec_page(m, d[i]) || page_free(m, d[i], 0) < 0) {
            return -EINVAL;
        }
    }
    return page_free(m, dir, 0);
}
