/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A fake host for libhintmig embedded in a test (see fake_host.h). */
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <check.h>

#include "fake_host.h"

/* Byte @i of the device state save_state writes. */
static uint8_t state_byte(size_t i)
{
    return (uint8_t)(i * 31 + 7);
}

static bool state_is_intact(const uint8_t *d, size_t len, size_t want)
{
    if (len != want) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (d[i] != state_byte(i)) {
            return false;
        }
    }
    return true;
}

static uint64_t region_pages(const FakeHost *h, unsigned region)
{
    return h->regions[region].size / HINTMIG_PAGE_SIZE;
}

static void host_stop(void *o)
{
    FakeHost *h = o;

    if (h->cfg.on_stop) {
        h->cfg.on_stop(h, h->cfg.opaque);
    }
    g_atomic_int_set(&h->stopped, 1);
}

static void host_resume(void *o) { g_atomic_int_set(&((FakeHost *)o)->resumed, 1); }
static void host_migrated(void *o) { g_atomic_int_set(&((FakeHost *)o)->migrated, 1); }
static void host_incoming_done(void *o)
{
    g_atomic_int_set(&((FakeHost *)o)->incoming_done, 1);
}
static bool host_yes(void *o, GError **e) { (void)o, (void)e; return true; }

static bool host_save(void *o, GByteArray *out, GError **errp)
{
    FakeHost *h = o;
    guint at = out->len;
    (void)errp;

    g_byte_array_set_size(out, at + h->cfg.state_size);
    for (size_t i = 0; i < h->cfg.state_size; i++) {
        out->data[at + i] = state_byte(i);
    }
    return true;
}

static bool host_load(void *o, const uint8_t *d, size_t len, GError **errp)
{
    FakeHost *h = o;

    g_clear_pointer(&h->loaded, g_byte_array_unref);
    h->loaded = g_byte_array_new();
    g_byte_array_append(h->loaded, d, len);
    if (!state_is_intact(d, len, h->cfg.state_size)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_HOST,
                    "the device state loaded (%zu bytes) is not the one saved "
                    "(%zu bytes)", len, h->cfg.state_size);
        return false;
    }
    return true;
}

static void host_status(void *o, HintmigStatus old, HintmigStatus now)
{
    FakeHost *h = o;
    (void)old;
    h->last = now;
    if (now == HINTMIG_STATUS_PRE_SWITCHOVER) {
        h->saw_pre_switchover = true;
    }
}

const HintmigHostOps fake_host_ops = {
    .stop = host_stop, .resume = host_resume, .migrated = host_migrated,
    .save_state = host_save, .load_state = host_load,
    .incoming_done = host_incoming_done,
    .can_migrate = host_yes, .can_receive = host_yes,
    .status_changed = host_status,
};

static bool log_start(void *o, GError **errp)
{
    FakeHost *h = o;
    (void)errp;
    for (unsigned r = 0; r < h->nregions; r++) {
        memset(h->log[r], 0, region_pages(h, r));
    }
    h->log_starts++;
    return true;
}

static bool log_sync(void *o, unsigned region, unsigned long *bitmap, GError **errp)
{
    FakeHost *h = o;
    const unsigned bits = sizeof(unsigned long) * 8;
    if (region >= h->nregions) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_HOST, "no region %u", region);
        return false;
    }
    for (uint64_t pg = 0; pg < region_pages(h, region); pg++) {
        if (h->log[region][pg]) {
            bitmap[pg / bits] |= 1ul << (pg % bits);
            h->log[region][pg] = 0;
        }
    }
    h->log_syncs++;
    return true;
}

static const HintmigDirtyOps fake_log = { .start = log_start, .sync = log_sync };

void fake_host_write_page(FakeHost *h, unsigned region, uint64_t page, uint8_t byte,
                          bool log_misses_it)
{
    ck_assert(region < h->nregions && page < region_pages(h, region));
    memset((uint8_t *)h->regions[region].host + page * HINTMIG_PAGE_SIZE, byte,
           HINTMIG_PAGE_SIZE);
    if (h->log[region] && !log_misses_it) {
        h->log[region][page] = 1;
    }
}

static gpointer reporter_thread(gpointer data)
{
    FakeHost *h = data;
    uint32_t id;

    while ((id = GPOINTER_TO_UINT(g_async_queue_pop(h->rounds))) != UINT32_MAX) {
        for (unsigned i = 0; i < h->nhints; i++) {
            const HintmigRamRegion *r = &h->regions[h->hints[i].region];
            uint64_t off = h->hints[i].first * HINTMIG_PAGE_SIZE;
            uint64_t len = h->hints[i].n * HINTMIG_PAGE_SIZE;
            if (r->gpa != HINTMIG_GPA_NONE) {
                hintmig_free_page_hint(h->m, id, r->gpa + off, len);
            } else {
                hintmig_free_page_hint_hva(h->m, id, (uint8_t *)r->host + off, len);
            }
        }
        hintmig_free_page_round_done(h->m, id);
    }
    return NULL;
}

/* The device's side of the engine's notifier (engine's lock held: no calls back). */
static void hint_event(void *opaque, HintmigEventData *d)
{
    FakeHost *h = opaque;

    switch (d->event) {
    case HINTMIG_EV_HINT_PROBE:
        d->hint_capable = true;
        break;
    case HINTMIG_EV_HINT_START:
        d->cmd_id = h->next_cmd_id++;
        g_async_queue_push(h->rounds, GUINT_TO_POINTER(d->cmd_id));
        break;
    case HINTMIG_EV_HINT_STOP:
        break;
    case HINTMIG_EV_DONE:
        g_atomic_int_set(&h->done, 1);
        break;
    }
}

void fake_host_add_hint_device(FakeHost *h, const FakeHostHint *hints, unsigned nhints)
{
    ck_assert(!h->rounds);
    for (unsigned i = 0; i < nhints; i++) {
        ck_assert(hints[i].region < h->nregions &&
                  hints[i].first + hints[i].n <= region_pages(h, hints[i].region));
    }
    h->hints = hints;
    h->nhints = nhints;
    h->next_cmd_id = 0x100;
    h->rounds = g_async_queue_new();
    h->reporter = g_thread_new("reporter", reporter_thread, h);
    hintmig_add_notifier(h->m, hint_event, h);
}

FakeHost *fake_host_new(const FakeHostConfig *cfg, GMainContext *ctx)
{
    FakeHost *h = g_new0(FakeHost, 1);

    ck_assert_uint_le(cfg->nregions, FAKE_HOST_MAX_REGIONS);
    h->cfg = *cfg;
    h->ctx = ctx;
    h->nregions = cfg->nregions;
    for (unsigned r = 0; r < h->nregions; r++) {
        const FakeHostRegion *spec = &cfg->regions[r];
        int fd = -1;
        if (spec->memfd) {
            fd = memfd_create(spec->name, MFD_CLOEXEC);
            ck_assert_int_ge(fd, 0);
            ck_assert_int_eq(ftruncate(fd, (off_t)spec->size), 0);
        }
        void *p = mmap(NULL, spec->size, PROT_READ | PROT_WRITE,
                       spec->memfd ? MAP_SHARED
                                   : MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       fd, 0);
        ck_assert(p != MAP_FAILED);
        if (spec->no_thp) {
            madvise(p, spec->size, MADV_NOHUGEPAGE);
        }
        h->regions[r] = (HintmigRamRegion) {
            .name = spec->name, .gpa = spec->gpa, .host = p, .size = spec->size,
            .page_size = HINTMIG_PAGE_SIZE,
            .backing = spec->memfd ? HINTMIG_BACKING_SHARED : HINTMIG_BACKING_ANON,
            .fd = fd,
        };
    }
    if (cfg->fill) {
        cfg->fill(h, cfg->opaque);
    }
    for (unsigned r = 0; cfg->host_log && r < h->nregions; r++) {
        h->log[r] = g_malloc0(region_pages(h, r));
    }
    HintmigHost host = {
        .ops = &fake_host_ops, .opaque = h, .context = ctx,
        .regions = h->regions, .nregions = h->nregions, .nvcpus = 1,
        .dirty_backend = cfg->host_log ? HINTMIG_DIRTY_HOST : HINTMIG_DIRTY_AUTO,
        .dirty_ops = cfg->host_log ? &fake_log : NULL, .dirty_opaque = h,
    };
    g_strlcpy(host.uuid, cfg->uuid, sizeof(host.uuid));
    g_autoptr(GError) err = NULL;
    h->m = hintmig_new(&host, &err);
    ck_assert_msg(h->m, "%s", err ? err->message : "");
    return h;
}

void fake_host_free(FakeHost *h)
{
    hintmig_free(h->m);
    if (h->rounds) {
        g_async_queue_push(h->rounds, GUINT_TO_POINTER(UINT32_MAX));
        g_thread_join(h->reporter);
        g_async_queue_unref(h->rounds);
    }
    for (unsigned r = 0; r < h->nregions; r++) {
        munmap(h->regions[r].host, h->regions[r].size);
        if (h->regions[r].fd >= 0) {
            close(h->regions[r].fd);
        }
        g_free(h->log[r]);
    }
    if (h->loaded) {
        g_byte_array_unref(h->loaded);
    }
    g_free(h);
}

bool fake_host_finished(HintmigStatus s)
{
    return s == HINTMIG_STATUS_COMPLETED || s == HINTMIG_STATUS_FAILED ||
           s == HINTMIG_STATUS_CANCELLED;
}

bool fake_host_pair_done(FakeHost *src, FakeHost *dst)
{
    if (!fake_host_finished(src->last) || !fake_host_finished(dst->last)) {
        return false;
    }
    return src->last != HINTMIG_STATUS_COMPLETED || dst->last != HINTMIG_STATUS_COMPLETED ||
           (g_atomic_int_get(&src->migrated) && g_atomic_int_get(&dst->incoming_done));
}

void fake_host_start_socketpair(FakeHost *src, FakeHost *dst)
{
    int sv[2];
    g_autoptr(GError) err = NULL;

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert_msg(hintmig_incoming_start_fd(dst->m, sv[1], &err), "%s", err->message);
    ck_assert_msg(hintmig_start_fd(src->m, sv[0], &err), "%s", err->message);
}

void fake_host_start_uri(FakeHost *src, FakeHost *dst, const char *uri)
{
    g_autoptr(GError) err = NULL;

    ck_assert_msg(hintmig_incoming_start(dst->m, uri, &err), "%s", err->message);
    ck_assert_msg(hintmig_start(src->m, uri, &err), "%s", err->message);
}

static gboolean flag_set(gpointer data)
{
    *(bool *)data = true;
    return G_SOURCE_REMOVE;
}

void fake_host_run_until_done(FakeHost *src, FakeHost *dst, unsigned seconds)
{
    GMainContext *ctx = src->ctx;
    bool expired = false;
    GSource *t = g_timeout_source_new_seconds(seconds);
    g_source_set_callback(t, flag_set, &expired, NULL);
    g_source_attach(t, ctx);
    while (!expired && !fake_host_pair_done(src, dst)) {
        if (src->last == HINTMIG_STATUS_PRE_SWITCHOVER) {
            HintmigStats s;
            hintmig_get_stats(src->m, &s);
            ck_assert_int_eq(s.status, HINTMIG_STATUS_PRE_SWITCHOVER);
            ck_assert(g_atomic_int_get(&src->stopped));   /* as QEMU: stopped first */
            hintmig_stats_clear(&s);
            g_autoptr(GError) err = NULL;
            ck_assert_msg(hintmig_continue(src->m, &err), "%s", err ? err->message : "");
            src->last = HINTMIG_STATUS_DEVICE;
        }
        /* Host calls come from engine threads: look again every 10 ms. */
        GSource *tick = g_timeout_source_new(10);
        g_source_set_callback(tick, flag_set, &(bool){ false }, NULL);
        g_source_attach(tick, ctx);
        g_main_context_iteration(ctx, TRUE);
        g_source_destroy(tick);
        g_source_unref(tick);
    }
    g_source_destroy(t);
    g_source_unref(t);
    ck_assert_msg(!expired, "migration did not finish in %u s (src %s, dst %s)", seconds,
                  hintmig_status_str(src->last), hintmig_status_str(dst->last));
}

void fake_host_assert_completed(FakeHost *src, FakeHost *dst, HintmigStats *s,
                                HintmigStats *d)
{
    hintmig_get_stats(src->m, s);
    hintmig_get_stats(dst->m, d);
    ck_assert_msg(s->status == HINTMIG_STATUS_COMPLETED, "source: %s (%s)",
                  hintmig_status_str(s->status), s->error ? s->error : "");
    ck_assert_msg(d->status == HINTMIG_STATUS_COMPLETED, "destination: %s (%s)",
                  hintmig_status_str(d->status), d->error ? d->error : "");
    ck_assert(d->verified);
    ck_assert_uint_eq(d->verify_mismatches, 0);
    ck_assert_uint_gt(d->verify_chunks, 0);
}

void fake_host_assert_same_ram(FakeHost *src, FakeHost *dst)
{
    ck_assert_uint_eq(src->nregions, dst->nregions);
    for (unsigned r = 0; r < src->nregions; r++) {
        ck_assert_uint_eq(src->regions[r].size, dst->regions[r].size);
        ck_assert_msg(!memcmp(src->regions[r].host, dst->regions[r].host,
                              src->regions[r].size),
                      "region %s differs", src->regions[r].name);
    }
}

void fake_host_assert_state_loaded(FakeHost *dst)
{
    ck_assert_msg(dst->loaded, "the destination loaded no device state");
    ck_assert_msg(state_is_intact(dst->loaded->data, dst->loaded->len,
                                  dst->cfg.state_size),
                  "the device state loaded (%u bytes) is not the one saved "
                  "(%zu bytes)",
                  dst->loaded->len, dst->cfg.state_size);
}
