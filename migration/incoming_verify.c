/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Verification on the destination: the source's chunk digests (VERIFY)
 * against this side's, combined from each page's digest as it was applied
 * or placed (page digests, postcopy), or (x-verify-full) hashed from RAM
 * at the end, independently of what was received.
 */
#include <string.h>

#include "incoming.h"
#include "migration/bitmap.h"
#include "migration/ram_digest.h"

bool in_page_digests_new(Incoming *in, GError **errp)
{
    if (!in->digests) {
        in->digests = ram_digest_table_new(in->ram->npages);
        if (!in->digests) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED,
                        "no memory for the page digest table");
            return false;
        }
        hm_mem_charge(in->m, in->ram->npages * sizeof(uint64_t));
    }
    return true;
}

bool in_store_digests(Incoming *in, const uint8_t *d, size_t len, GError **errp)
{
    uint32_t count;
    g_autoptr(GError) err = NULL;

    if (!wire_digests_decode(d, len, RAM_DIGEST_CHUNK_PAGES, in->nchunks,
                             in->src_digests, &count, &err)) {
        return in_give_up(in, WIRE_ERR_PROTOCOL, errp, "%s", err->message);
    }
    in->digests_received += count;
    return true;
}

/*
 * Compares our RAM with the source's digests; returns the reason when they
 * differ or are incomplete, NULL when they match.  In postcopy the running
 * guest has changed RAM since: the digests recorded as pages were placed
 * stand for it.
 */
static char *verify_ram(Incoming *in)
{
    g_autofree uint64_t *ours = g_new(uint64_t, in->nchunks);
    hm_mem_charge(in->m, in->nchunks * 8 + (in->digests ? 0
                                            : hm_bitmap_bytes(in->ram->npages)));
    uint64_t bad = 0, first_bad = 0;

    if (in->digests_received != in->nchunks) {
        return g_strdup_printf("RAM verification failed: %" G_GUINT64_FORMAT " of %"
                               G_GUINT64_FORMAT " digests received",
                               in->digests_received, in->nchunks);
    }
    gint64 t0 = g_get_monotonic_time();
    if (in->postcopy || (in->features & WIRE_FEAT_PAGE_DIGESTS)) {
        ram_digest_combine(in->digests, in->ram->npages, RAM_DIGEST_CHUNK_PAGES,
                           in->nchunks, ours, in->hinted);
    } else {
        ram_digest_chunks(in->ram, RAM_DIGEST_CHUNK_PAGES, 0, in->nchunks, ours,
                          hintmig_get_params(in->m).compress_threads, in->hinted);
    }
    uint64_t ms = (g_get_monotonic_time() - t0) / 1000;
    for (uint64_t c = 0; c < in->nchunks; c++) {
        if (ours[c] != in->src_digests[c] && !bad++) {
            first_bad = c;
        }
    }
    g_mutex_lock(&in->m->lock);
    in->m->stats.verify_chunks = in->nchunks;
    in->m->stats.verify_mismatches = bad;
    in->m->stats.verify_dest_ms = ms;
    in->m->stats.verified = true;
    g_mutex_unlock(&in->m->lock);
    if (!bad) {
        return NULL;
    }
    return g_strdup_printf("RAM verification failed: %" G_GUINT64_FORMAT " of %"
                           G_GUINT64_FORMAT " chunks differ%s (first: chunk %"
                           G_GUINT64_FORMAT ", pages %" G_GUINT64_FORMAT "-%"
                           G_GUINT64_FORMAT ")", bad, in->nchunks,
                           in->postcopy ? " as placed" : "", first_bad,
                           first_bad * RAM_DIGEST_CHUNK_PAGES,
                           (first_bad + 1) * RAM_DIGEST_CHUNK_PAGES - 1);
}

/* Counts the pages left hinted and verifies RAM; on a mismatch acks @seq with it. */
bool in_check_ram(Incoming *in, uint32_t seq, GError **errp)
{
    if (in->hinted) {
        g_mutex_lock(&in->m->lock);
        in->m->stats.hint_skipped_pages = hm_bitmap_count(in->hinted, in->ram->npages);
        g_mutex_unlock(&in->m->lock);
    }
    g_autofree char *why = in->features & WIRE_FEAT_VERIFY ? verify_ram(in) : NULL;
    if (why) {
        in_ack(in, seq, WIRE_ERR_VERIFY, why, NULL);
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED, "%s", why);
        return false;
    }
    return true;
}

bool in_check_state(Incoming *in, uint32_t seq, GError **errp)
{
    g_autofree char *why = NULL;

    if (!(in->features & WIRE_FEAT_VERIFY)) {
        return true;
    }
    if (!in->state_digest_seen) {
        why = g_strdup("device state arrived without its digest");
    } else if (ram_digest_bytes(in->state->data, in->state->len) != in->state_digest) {
        why = g_strdup_printf("device state (%u bytes) does not match the source's "
                              "digest: corrupted on the way", in->state->len);
    }
    if (why) {
        in_ack(in, seq, WIRE_ERR_VERIFY, why, NULL);
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED, "%s", why);
        return false;
    }
    return true;
}
