/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The devices' side of free page hints: their notifiers (HINT_PROBE,
 * HINT_START, HINT_STOP, DONE) and the entry points through which they hand
 * hints and the end of a round to the engine, from any thread.  Which hints
 * hold is hint_filter.c's and precopy.c's business.
 */
#include "migration_priv.h"

gulong hintmig_add_notifier(Hintmig *m, HintmigNotifyFn fn, void *opaque)
{
    GHook *hook = g_hook_alloc(&m->notifiers);
    hook->func = (gpointer)fn;
    hook->data = opaque;
    g_hook_append(&m->notifiers, hook);
    return hook->hook_id;
}

void hintmig_remove_notifier(Hintmig *m, gulong id)
{
    g_hook_destroy(&m->notifiers, id);
}

static void notify_one(GHook *hook, gpointer data)
{
    ((HintmigNotifyFn)hook->func)(hook->data, data);
}

void hm_notify(Hintmig *m, HintmigEventData *d)
{
    g_hook_list_marshal(&m->notifiers, FALSE, notify_one, d);
}

void hm_hint_add_locked(Hintmig *m, uint32_t cmd_id, bool by_gpa,
                        uint64_t addr, uint64_t len)
{
    if (m->hint_opening) {
        if (m->hint_early->len < HINT_EARLY_MAX) {
            HintEarly e = { cmd_id, by_gpa, addr, len };
            g_array_append_val(m->hint_early, e);
        }
    } else if (m->hints && by_gpa) {
        hint_filter_add(m->hints, cmd_id, addr, len);
    } else if (m->hints) {
        hint_filter_add_pages(m->hints, cmd_id, addr, len);
    }
}

void hintmig_free_page_hint(Hintmig *m, uint32_t cmd_id, uint64_t gpa,
                              uint64_t len)
{
    g_mutex_lock(&m->lock);
    hm_hint_add_locked(m, cmd_id, true, gpa, len);
    g_mutex_unlock(&m->lock);
}

void hintmig_free_page_hint_hva(Hintmig *m, uint32_t cmd_id, const void *hva,
                                uint64_t len)
{
    uint64_t first;

    if (!hm_ram_hva_to_pfn(m->ram, hva, &first)) {
        return;
    }
    g_mutex_lock(&m->lock);
    hm_hint_add_locked(m, cmd_id, false, first, len >> HM_PAGE_SHIFT);
    g_mutex_unlock(&m->lock);
}

void hintmig_free_page_round_done(Hintmig *m, uint32_t cmd_id)
{
    g_mutex_lock(&m->lock);
    m->hint_round_done = cmd_id;
    g_cond_broadcast(&m->hint_cond);
    g_mutex_unlock(&m->lock);
}
