/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig's own lines of "info migrate": what QEMU's fields do not say
 * (wire bytes, compression, hints, postcopy faults, verification).  Every
 * host's monitor prints them the same way, so users and tests read one
 * format whether the engine runs in hintmig-vm or inside QEMU.
 */
#include "hintmig/hintmig.h"

static void kbytes(GString *out, const char *name, uint64_t bytes)
{
    g_string_append_printf(out, "%s: %" G_GUINT64_FORMAT " kbytes\n", name,
                           bytes >> 10);
}

static void describe_postcopy(const HintmigStats *s, GString *out)
{
    g_string_append_printf(out, "postcopy remaining: %" G_GUINT64_FORMAT " pages\n",
                           s->postcopy_remaining);
    if (s->incoming) {
        g_string_append_printf(out, "postcopy faults: %" G_GUINT64_FORMAT " local, %"
                               G_GUINT64_FORMAT " remote\n", s->faults_local,
                               s->faults_remote);
        g_string_append_printf(out, "postcopy hinted requested: %" G_GUINT64_FORMAT
                               " pages\n", s->hinted_requested);
        if (s->hinted_pages) {
            g_string_append_printf(out, "postcopy hint-filled: %" G_GUINT64_FORMAT
                                   " pages in %" G_GUINT64_FORMAT " ms\n",
                                   s->hint_filled, s->hint_fill_ms);
        }
        g_string_append_printf(out, "postcopy duplicate pages: %" G_GUINT64_FORMAT "\n",
                               s->duplicate_placements);
        g_string_append_printf(out, "postcopy remote fault latency: p50 %"
                               G_GUINT64_FORMAT " us, p99 %" G_GUINT64_FORMAT
                               " us, max %" G_GUINT64_FORMAT " us (%"
                               G_GUINT64_FORMAT " faults)\n", s->fault_lat_p50_us,
                               s->fault_lat_p99_us, s->fault_lat_max_us,
                               s->fault_lat_samples);
        g_string_append_printf(out, "postcopy fault thread: %s\n",
                               s->fault_thread_rt ? "real-time (SCHED_FIFO)"
                               : "normal priority (SCHED_FIFO refused: no "
                                 "CAP_SYS_NICE or RLIMIT_RTPRIO)");
    } else {
        g_string_append_printf(out, "postcopy urgent pages: %" G_GUINT64_FORMAT "\n",
                               s->postcopy_urgent_pages);
        g_string_append_printf(out, "postcopy push yields: %" G_GUINT64_FORMAT "\n",
                               s->postcopy_push_yields);
    }
    g_string_append_printf(out, "postcopy recoveries: %" G_GUINT64_FORMAT "\n",
                           s->recoveries);
}

void hintmig_stats_describe(const HintmigStats *s, GString *out)
{
    kbytes(out, "wire bytes", s->incoming ? s->wire_bytes_received : s->wire_bytes);
    g_string_append_printf(out, "compressed: %" G_GUINT64_FORMAT " kbytes -> %"
                           G_GUINT64_FORMAT " kbytes (%.1f%%)\n",
                           s->normal_bytes >> 10, s->compressed_bytes >> 10,
                           s->normal_bytes ? 100.0 * s->compressed_bytes / s->normal_bytes
                                           : 0.0);
    if (!s->incoming && s->compress_choice[0]) {
        g_string_append_printf(out, "compression: %s\n", s->compress_choice);
    }
    if (!s->incoming && s->compress_mix[0]) {
        g_string_append_printf(out, "compression batches: %s\n", s->compress_mix);
    }
    if (!s->incoming && s->cpu_throttle_max_seen) {
        g_string_append_printf(out, "cpu throttle: %u%% now, %u%% at most (auto-converge)\n",
                               s->cpu_throttle_percent, s->cpu_throttle_max_seen);
    }
    if (s->multifd_channels > 1 || s->multifd_note[0]) {
        g_string_append_printf(out, "multifd channels: %u", MAX(s->multifd_channels, 1u));
        for (unsigned i = 0; i < s->multifd_channels && i < G_N_ELEMENTS(s->multifd_bytes);
             i++) {
            g_string_append_printf(out, "%s%" G_GUINT64_FORMAT, i ? ", " : " (kbytes: ",
                                   s->multifd_bytes[i] >> 10);
        }
        g_string_append_printf(out, "%s%s%s\n", s->multifd_channels > 1 ? ")" : "",
                               s->multifd_note[0] ? "; " : "", s->multifd_note);
    }
    g_string_append_printf(out, "rounds: %" G_GUINT64_FORMAT "\n", s->rounds);
    if (s->untouched_pages) {
        g_string_append_printf(out, "untouched: %" G_GUINT64_FORMAT " pages\n",
                               s->untouched_pages);
    }
    if (s->hinted_pages || s->hint_skipped_pages || s->hint_note[0]) {
        g_string_append_printf(out, "hinted: %" G_GUINT64_FORMAT " pages\n"
                               "hint-skipped: %" G_GUINT64_FORMAT " pages\n",
                               s->hinted_pages, s->hint_skipped_pages);
        if (!s->incoming) {
            kbytes(out, "madv-freed", s->madv_freed_bytes);
        }
        if (s->hint_note[0]) {
            g_string_append_printf(out, "hint note: %s\n", s->hint_note);
        }
    }
    if (s->postcopy) {
        describe_postcopy(s, out);
    }
    if (!s->incoming && s->expected_downtime_ms) {
        g_string_append_printf(out, "downtime estimate: %" G_GUINT64_FORMAT " ms ram + %"
                               G_GUINT64_FORMAT " ms verify + %" G_GUINT64_FORMAT
                               " ms dirty sync\n", s->expected_ram_ms,
                               s->expected_verify_ms, s->expected_sync_ms);
    }
    if (!s->incoming && s->dirty_backend[0]) {
        g_string_append_printf(out, "dirty tracking: %s\n", s->dirty_backend);
    }
    if (s->engine_memory && s->ram_total) {
        g_string_append_printf(out, "engine memory: %" G_GUINT64_FORMAT " kbytes "
                               "(%.2f%% of guest RAM)\n", s->engine_memory >> 10,
                               100.0 * s->engine_memory / s->ram_total);
    }
    if (s->verified) {
        if (s->verify_mismatches) {
            g_string_append_printf(out, "verify: FAILED (%" G_GUINT64_FORMAT " of %"
                                   G_GUINT64_FORMAT " chunks differ)\n",
                                   s->verify_mismatches, s->verify_chunks);
        } else {
            g_string_append_printf(out, "verify: OK (%" G_GUINT64_FORMAT " chunks)\n",
                                   s->verify_chunks);
            g_string_append_printf(out, "verify time: %" G_GUINT64_FORMAT " ms\n",
                                   s->incoming ? s->verify_dest_ms : s->verify_source_ms);
        }
    } else if (s->status == HINTMIG_STATUS_COMPLETED) {
        g_string_append(out, "verify: off\n");
    }
}
