/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Guest boot: lay out RAM, or attach to a guest already in it. */
#include <string.h>

#include "guest/guest.h"
#include "guest/page_content.h"

/* Pages of "kernel image" data every guest has, so idle guests verify too. */
#define RESIDENT_MAX_PAGES 4096u

Guest *guest_new(GuestRam *ram, unsigned nvcpus, const WorkloadConfig *wl)
{
    Guest *g = g_new0(Guest, 1);
    g->ram = ram;
    g->nvcpus = nvcpus;
    g->boot_wl = *wl;
    g_mutex_init(&g->boot_lock);
    return g;
}

void guest_free(Guest *g)
{
    if (g) {
        g_mutex_clear(&g->boot_lock);
    }
    g_free(g);
}

static bool boot_locked(Guest *g, GError **errp);

bool guest_boot(Guest *g, GError **errp)
{
    if (__atomic_load_n(&g->booted, __ATOMIC_ACQUIRE)) {
        return true;
    }
    g_mutex_lock(&g->boot_lock);
    bool ok = boot_locked(g, errp);
    g_mutex_unlock(&g->boot_lock);
    return ok;
}

static bool boot_locked(Guest *g, GError **errp)
{
    g_autoptr(GError) why = NULL;

    if (g->booted) {
        return true;
    }
    if (page_alloc_attach(&g->mem, g->ram, &why)) {
        if (g->mem.sb->nvcpus > GUEST_MAX_VCPUS) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                        "guest in RAM claims %u vCPUs", g->mem.sb->nvcpus);
            return false;
        }
        __atomic_store_n(&g->booted, true, __ATOMIC_RELEASE);
        return true;
    }
    if (!g_error_matches(why, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
        g_propagate_error(errp, g_steal_pointer(&why));
        return false;
    }
    if (!page_alloc_init(&g->mem, g->ram, errp)) {
        return false;
    }
    GuestSuperblock *sb = g->mem.sb;
    sb->boot_id = (uint64_t)g_random_int() << 32 | g_random_int();
    sb->boot_seed = page_content_mix(sb->boot_id);
    sb->nvcpus = g->nvcpus;
    sb->wl_kind = g->boot_wl.kind;
    sb->wl_wss = g->boot_wl.wss;
    sb->wl_rate = g->boot_wl.rate;
    sb->wl_fill = g->boot_wl.fill;
    sb->balloon_poison = g->boot_balloon.poison;
    sb->balloon_flags = g->boot_balloon.early_release ? GUEST_BALLOON_EARLY_RELEASE : 0;

    uint64_t resident = MIN(g->ram->npages / 64, (uint64_t)RESIDENT_MAX_PAGES);
    for (uint64_t i = 0; i < resident; i++) {
        uint32_t pfn = page_alloc(&g->mem, 0, GPK_DATA, 0xff);
        if (pfn == GUEST_PFN_NONE) {
            break;
        }
        g->mem.meta[pfn].gen = 1;
        page_content_fill(guest_ram_page(g->ram, pfn), pfn, 1);
    }
    /* Last: a guest is booted once its superblock says so. */
    __atomic_store_n(&sb->magic, GUEST_MAGIC, __ATOMIC_RELEASE);
    __atomic_store_n(&g->booted, true, __ATOMIC_RELEASE);
    return true;
}

void guest_vcpu_state_init(GuestVcpuState *st, unsigned index)
{
    *st = (GuestVcpuState) { .magic = GUEST_VCPU_MAGIC, .index = index };
}

bool guest_info(Guest *g, GuestInfo *out)
{
    if (!g->booted) {
        return false;
    }
    const GuestSuperblock *sb = g->mem.sb;
    *out = (GuestInfo) {
        .boot_id = sb->boot_id,
        .wl = { .kind = sb->wl_kind, .wss = sb->wl_wss, .rate = sb->wl_rate,
                .fill = sb->wl_fill },
        .free_pages = sb->free_pages,
        .npages = sb->npages,
    };
    for (unsigned i = 0; i < MIN(sb->nvcpus, GUEST_MAX_VCPUS); i++) {
        uint64_t pfn = sb->task_pfn[i];
        if (page_in_zone(&g->mem, pfn) && g->mem.meta[pfn].kind == GPK_KERNEL) {
            const GuestTask *t = guest_ram_page(g->ram, pfn);
            if (t->magic == GUEST_TASK_MAGIC) {
                out->writes += t->writes;
            }
        }
    }
    return true;
}
