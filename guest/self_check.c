/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Guest self-check: every allocated data page against the content its
 * (pfn, generation) defines, and the allocator's lists against the pages.
 */
#include "guest/guest.h"
#include "guest/page_content.h"

void guest_self_check(Guest *g, GuestCheck *out)
{
    g_autoptr(GError) err = NULL;

    *out = (GuestCheck) { 0 };
    if (!g->booted && !page_alloc_attach(&g->mem, g->ram, &err)) {
        if (!g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
            out->booted = true;
            out->corrupt = 1;
            out->error = g_strdup(err->message);
        }
        return;
    }
    out->booted = true;
    GuestMem *m = &g->mem;
    for (uint64_t pfn = m->sb->zone_start; pfn < m->npages; pfn++) {
        const GuestPageMeta *pm = &m->meta[pfn];
        if (pm->state != GPS_ALLOC || pm->kind != GPK_DATA) {
            continue;
        }
        if (page_content_check(guest_ram_page(g->ram, pfn), pfn, pm->gen)) {
            out->verified++;
        } else if (!out->corrupt++) {
            out->first_corrupt_pfn = pfn;
        }
    }
    if (!page_alloc_check(m, &err)) {
        out->corrupt++;
        out->error = g_strdup(err->message);
    }
}

char *guest_check_describe(const GuestCheck *c)
{
    if (!c->booted) {
        return g_strdup("guest memory check: no guest in RAM (not booted)");
    }
    if (!c->corrupt) {
        return g_strdup_printf("guest memory check: OK (%" G_GUINT64_FORMAT
                               " pages verified)", c->verified);
    }
    GString *s = g_string_new(NULL);
    g_string_printf(s, "guest memory check: FAILED (%" G_GUINT64_FORMAT
                    " pages corrupt)", c->corrupt);
    if (c->first_corrupt_pfn) {
        g_string_append_printf(s, "\nfirst corrupt page: pfn %" G_GUINT64_FORMAT,
                               c->first_corrupt_pfn);
    }
    if (c->error) {
        g_string_append_printf(s, "\nguest structures: %s", c->error);
    }
    return g_string_free(s, FALSE);
}

void guest_check_clear(GuestCheck *c)
{
    g_clear_pointer(&c->error, g_free);
}
