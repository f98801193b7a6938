/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio-balloon free page hinting, device side.
 *
 * One lock guards the device.  The poll thread takes it once per pass
 * (vb_process), collects what the driver queued, and calls the client only
 * after dropping it, so the client's locks never nest inside ours.  While
 * the VM is stopped the thread does not touch the queue at all.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "hw/virtio/virtio-balloon-hint.h"
#include "hw/virtio/virtqueue.h"

#define HOST_FEATURES ((1ull << VIRTIO_BALLOON_F_FREE_PAGE_HINT) | \
                       (1ull << VIRTIO_BALLOON_F_PAGE_POISON) | \
                       (1ull << VIRTIO_F_VERSION_1))
#define CMD_ID_MIN 2
#define HINTS_PER_PASS 256
#define STATE_VERSION 1

typedef struct HintRange {
    uint32_t cmd_id;
    uint64_t gpa, len;
} HintRange;

struct VirtioBalloon {
    GuestRam *ram;
    uint64_t host_features;
    GMutex lock;
    GCond cond;
    GThread *thread;
    int kick_fd;
    bool quit;
    bool running;

    uint64_t features;
    uint8_t status;
    VirtQueue vq;
    VirtioBalloonConfig cfg;       /* host byte order */
    uint32_t generation;
    uint64_t interrupts;

    FphStatus fph;
    uint32_t cmd_id;               /* the id in use, or the last one */
    uint32_t unstopped_id;         /* an id whose STOP has not come, or 0 */
    bool id_seen;                  /* the driver sent the current id */
    VirtioBalloonClient client;
    bool in_callback;              /* the poll thread is calling the client */
    VirtioBalloonStats stats;
};

static bool has(VirtioBalloon *vb, unsigned bit)
{
    return vb->features & (1ull << bit);
}

/* A driver error: the device stops serving and asks for a reset. */
static void vb_fail(VirtioBalloon *vb, const char *why)
{
    if (!vb->vq.error) {
        vb->vq.error = g_strdup(why);
    }
    vb->status |= VIRTIO_STATUS_NEEDS_RESET;
    vb->fph = FPH_STOP;
    vb->generation++;
}

static void publish_cmd_id(VirtioBalloon *vb, uint32_t id)
{
    vb->cfg.free_page_hint_cmd_id = id;
    vb->generation++;               /* a config interrupt */
}

/*
 * One pass over the free page queue, lock held.  Fills @out with the hints
 * to hand to the client; returns how many, and the id whose round the
 * driver just closed in *@closed (0 if none).
 */
static unsigned vb_process(VirtioBalloon *vb, HintRange *out, uint32_t *closed)
{
    unsigned n = 0;
    VqElem e;
    int r;

    *closed = 0;
    while (n < HINTS_PER_PASS && (r = vq_pop(&vb->vq, &e)) == 1) {
        if (e.n_out) {
            /* A command id: exactly one 4-byte device-readable buffer. */
            uint32_t id;
            if (e.n_out != 1 || e.n_in || e.out[0].len != 4) {
                vb_fail(vb, "free page queue: a command id buffer must be 4 bytes "
                        "and alone");
                return n;
            }
            memcpy(&id, vq_gpa_to_hva(vb->ram, e.out[0].gpa, 4), 4);
            id = GUINT32_FROM_LE(id);
            if (id == VIRTIO_BALLOON_CMD_ID_STOP) {
                if (vb->unstopped_id && vb->id_seen) {
                    *closed = vb->unstopped_id;
                    vb->unstopped_id = 0;
                }
                if (vb->fph == FPH_START) {
                    vb->fph = FPH_STOP;
                }
            } else if (id == vb->cmd_id && vb->fph != FPH_STOP) {
                if (vb->id_seen) {
                    vb_fail(vb, "free page queue: the driver sent the current "
                            "command id twice");
                    return n;
                }
                vb->id_seen = true;
                vb->fph = FPH_START;
            }
            /* Any other id is stale: what follows it is ignored. */
            vq_push(&vb->vq, &e, 0);
            continue;
        }
        for (unsigned i = 0; i < e.n_in; i++) {
            uint64_t gpa = e.in[i].gpa, len = e.in[i].len;
            if (vb->fph == FPH_START && vb->id_seen &&
                gpa % GUEST_PAGE_SIZE == 0 && len % GUEST_PAGE_SIZE == 0) {
                out[n++] = (HintRange) { vb->cmd_id, gpa, len };
                vb->stats.hints++;
                vb->stats.hinted_bytes += len;
            } else {
                vb->stats.ignored++;
            }
        }
        vq_push(&vb->vq, &e, 0);
    }
    if (r < 0) {
        vb_fail(vb, vb->vq.error);
    }
    vb->interrupts++;
    return n;
}

static gpointer vb_thread(gpointer data)
{
    VirtioBalloon *vb = data;
    g_autofree HintRange *hints = g_new(HintRange, HINTS_PER_PASS);

    g_mutex_lock(&vb->lock);
    while (!vb->quit) {
        if (!vb->running) {
            /* The VM is stopped: leave the queue alone. */
            g_cond_wait(&vb->cond, &vb->lock);
            continue;
        }
        g_mutex_unlock(&vb->lock);
        struct pollfd p = { .fd = vb->kick_fd, .events = POLLIN };
        if (poll(&p, 1, 100) > 0) {
            uint64_t v;
            if (read(vb->kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
                /* nothing to do: the next kick comes through */
            }
        }
        g_mutex_lock(&vb->lock);
        if (!vb->running || vb->quit ||
            !(vb->status & VIRTIO_STATUS_DRIVER_OK) ||
            (vb->status & VIRTIO_STATUS_NEEDS_RESET) || !vb->vq.size) {
            continue;
        }
        uint32_t closed;
        unsigned n = vb_process(vb, hints, &closed);
        VirtioBalloonClient c = vb->client;
        vb->in_callback = true;
        g_mutex_unlock(&vb->lock);

        for (unsigned i = 0; i < n && c.hint; i++) {
            c.hint(c.opaque, hints[i].cmd_id, hints[i].gpa, hints[i].len);
        }
        if (closed && c.round_done) {
            c.round_done(c.opaque, closed);
        }
        g_mutex_lock(&vb->lock);
        vb->in_callback = false;
        g_cond_broadcast(&vb->cond);
        if (n == HINTS_PER_PASS) {
            uint64_t one = 1;       /* more may be queued: come back at once */
            if (write(vb->kick_fd, &one, sizeof(one)) < 0) {
                /* the 100 ms poll picks it up */
            }
        }
    }
    g_mutex_unlock(&vb->lock);
    return NULL;
}

VirtioBalloon *virtio_balloon_new(GuestRam *ram, bool free_page_hint)
{
    VirtioBalloon *vb = g_new0(VirtioBalloon, 1);
    vb->ram = ram;
    vb->host_features = free_page_hint ? HOST_FEATURES
                                       : HOST_FEATURES & ~((1ull << VIRTIO_BALLOON_F_FREE_PAGE_HINT) |
                                                           (1ull << VIRTIO_BALLOON_F_PAGE_POISON));
    vb->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    vb->cmd_id = CMD_ID_MIN - 1;
    vb->cfg.free_page_hint_cmd_id = VIRTIO_BALLOON_CMD_ID_STOP;
    g_mutex_init(&vb->lock);
    g_cond_init(&vb->cond);
    vb->thread = g_thread_new("balloon", vb_thread, vb);
    return vb;
}

void virtio_balloon_free(VirtioBalloon *vb)
{
    if (!vb) {
        return;
    }
    g_mutex_lock(&vb->lock);
    vb->quit = true;
    g_cond_broadcast(&vb->cond);
    g_mutex_unlock(&vb->lock);
    uint64_t one = 1;
    if (write(vb->kick_fd, &one, sizeof(one)) < 0) {
        /* the poll times out */
    }
    g_thread_join(vb->thread);
    close(vb->kick_fd);
    vq_reset(&vb->vq);
    g_mutex_clear(&vb->lock);
    g_cond_clear(&vb->cond);
    g_free(vb);
}

uint64_t vb_host_features(VirtioBalloon *vb)
{
    return vb->host_features;
}

bool vb_set_features(VirtioBalloon *vb, uint64_t features)
{
    g_mutex_lock(&vb->lock);
    bool ok = !(features & ~vb->host_features) &&
              !(vb->status & VIRTIO_STATUS_FEATURES_OK);
    if (ok) {
        vb->features = features;
    }
    g_mutex_unlock(&vb->lock);
    return ok;
}

static void vb_reset_locked(VirtioBalloon *vb)
{
    vb->status = 0;
    vb->features = 0;
    vq_reset(&vb->vq);
    vb->fph = FPH_STOP;
    vb->id_seen = false;
    vb->unstopped_id = 0;
    vb->cfg = (VirtioBalloonConfig) { .free_page_hint_cmd_id = VIRTIO_BALLOON_CMD_ID_STOP };
    vb->generation++;
}

void vb_set_status(VirtioBalloon *vb, uint8_t status)
{
    g_mutex_lock(&vb->lock);
    if (!status) {
        vb_reset_locked(vb);
    } else {
        vb->status = (vb->status & VIRTIO_STATUS_NEEDS_RESET) | status;
    }
    g_mutex_unlock(&vb->lock);
}

uint8_t vb_get_status(VirtioBalloon *vb)
{
    g_mutex_lock(&vb->lock);
    uint8_t s = vb->status;
    g_mutex_unlock(&vb->lock);
    return s;
}

bool vb_queue_setup(VirtioBalloon *vb, unsigned q, uint32_t size, uint64_t desc,
                    uint64_t avail, uint64_t used)
{
    g_autoptr(GError) err = NULL;
    g_mutex_lock(&vb->lock);
    bool ok = q == VB_FREE_PAGE_VQ && has(vb, VIRTIO_BALLOON_F_FREE_PAGE_HINT) &&
              vq_setup(&vb->vq, vb->ram, size, desc, avail, used, &err);
    if (!ok) {
        vb_fail(vb, err ? err->message : "no such queue");
    }
    g_mutex_unlock(&vb->lock);
    return ok;
}

void vb_config_read(VirtioBalloon *vb, VirtioBalloonConfig *cfg)
{
    g_mutex_lock(&vb->lock);
    *cfg = vb->cfg;
    g_mutex_unlock(&vb->lock);
}

void vb_config_write(VirtioBalloon *vb, unsigned offset, uint32_t value)
{
    g_mutex_lock(&vb->lock);
    if (offset == offsetof(VirtioBalloonConfig, actual)) {
        vb->cfg.actual = value;
    } else if (offset == offsetof(VirtioBalloonConfig, poison_val) &&
               has(vb, VIRTIO_BALLOON_F_PAGE_POISON)) {
        vb->cfg.poison_val = value;
    }
    /* Anything else is read-only to the driver and ignored. */
    g_mutex_unlock(&vb->lock);
}

uint32_t vb_config_generation(VirtioBalloon *vb)
{
    g_mutex_lock(&vb->lock);
    uint32_t g = vb->generation;
    g_mutex_unlock(&vb->lock);
    return g;
}

void vb_kick(VirtioBalloon *vb, unsigned q)
{
    uint64_t one = 1;
    (void)q;
    if (write(vb->kick_fd, &one, sizeof(one)) < 0) {
        /* counter saturated: a kick is pending anyway */
    }
}

uint64_t vb_take_interrupts(VirtioBalloon *vb)
{
    g_mutex_lock(&vb->lock);
    uint64_t n = vb->interrupts;
    vb->interrupts = 0;
    g_mutex_unlock(&vb->lock);
    return n;
}

void vb_set_client(VirtioBalloon *vb, const VirtioBalloonClient *client)
{
    g_mutex_lock(&vb->lock);
    vb->client = client ? *client : (VirtioBalloonClient) { 0 };
    /* Once this returns, the old client is never called again. */
    while (vb->in_callback) {
        g_cond_wait(&vb->cond, &vb->lock);
    }
    g_mutex_unlock(&vb->lock);
}

void vb_set_running(VirtioBalloon *vb, bool running)
{
    g_mutex_lock(&vb->lock);
    vb->running = running;
    g_cond_broadcast(&vb->cond);
    g_mutex_unlock(&vb->lock);
}

static bool ready_locked(VirtioBalloon *vb)
{
    return (vb->status & VIRTIO_STATUS_DRIVER_OK) &&
           !(vb->status & VIRTIO_STATUS_NEEDS_RESET) &&
           has(vb, VIRTIO_BALLOON_F_FREE_PAGE_HINT) && vb->vq.size;
}

bool vb_hint_ready(VirtioBalloon *vb)
{
    g_mutex_lock(&vb->lock);
    bool r = ready_locked(vb);
    g_mutex_unlock(&vb->lock);
    return r;
}

uint32_t fph_start(VirtioBalloon *vb)
{
    g_mutex_lock(&vb->lock);
    uint32_t id = 0;
    if (ready_locked(vb) && vb->running) {
        id = vb->cmd_id;
        do {
            id = id == UINT32_MAX ? CMD_ID_MIN : id + 1;
        } while (id == vb->unstopped_id);   /* never reuse before its STOP */
        vb->cmd_id = id;
        vb->unstopped_id = id;
        vb->id_seen = false;
        vb->fph = FPH_REQUESTED;
        vb->stats.rounds++;
        publish_cmd_id(vb, id);
    }
    g_mutex_unlock(&vb->lock);
    return id;
}

/* Ends the round with STOP or DONE; after DONE there is nothing to stop. */
static void fph_end(VirtioBalloon *vb, uint32_t id)
{
    g_mutex_lock(&vb->lock);
    vb->fph = FPH_STOP;
    if (vb->cfg.free_page_hint_cmd_id != VIRTIO_BALLOON_CMD_ID_DONE) {
        publish_cmd_id(vb, id);
    }
    g_mutex_unlock(&vb->lock);
}

void fph_stop(VirtioBalloon *vb)
{
    fph_end(vb, VIRTIO_BALLOON_CMD_ID_STOP);
}

void fph_done(VirtioBalloon *vb)
{
    fph_end(vb, VIRTIO_BALLOON_CMD_ID_DONE);
}

FphStatus fph_status(VirtioBalloon *vb)
{
    g_mutex_lock(&vb->lock);
    FphStatus s = vb->fph;
    g_mutex_unlock(&vb->lock);
    return s;
}

uint32_t vb_poison(VirtioBalloon *vb)
{
    g_mutex_lock(&vb->lock);
    uint32_t p = has(vb, VIRTIO_BALLOON_F_PAGE_POISON) ? vb->cfg.poison_val : 0;
    g_mutex_unlock(&vb->lock);
    return p;
}

char *vb_error(VirtioBalloon *vb)
{
    g_mutex_lock(&vb->lock);
    char *e = g_strdup(vb->vq.error);
    g_mutex_unlock(&vb->lock);
    return e;
}

VirtioBalloonStats vb_stats(VirtioBalloon *vb)
{
    g_mutex_lock(&vb->lock);
    VirtioBalloonStats s = vb->stats;
    g_mutex_unlock(&vb->lock);
    return s;
}

void vb_info(VirtioBalloon *vb, GString *out)
{
    static const char *const fph_names[] = { "stop", "requested", "start" };
    g_mutex_lock(&vb->lock);
    g_string_append_printf(out,
        "balloon: actual=%u MiB\n"
        "free-page-hint: %s, status %s, cmd_id %u (last issued %u), poison 0x%08x%s\n"
        "free-page-hint rounds: %" G_GUINT64_FORMAT ", hints: %" G_GUINT64_FORMAT
        " (%" G_GUINT64_FORMAT " MiB), ignored: %" G_GUINT64_FORMAT "\n",
        vb->cfg.actual >> 8,
        has(vb, VIRTIO_BALLOON_F_FREE_PAGE_HINT) ? "negotiated" : "not negotiated",
        fph_names[vb->fph], vb->cfg.free_page_hint_cmd_id, vb->cmd_id,
        vb->cfg.poison_val, has(vb, VIRTIO_BALLOON_F_PAGE_POISON) ? "" : " (no poison)",
        vb->stats.rounds, vb->stats.hints, vb->stats.hinted_bytes >> 20,
        vb->stats.ignored);
    if (vb->vq.error) {
        g_string_append_printf(out, "error: %s (device needs reset)\n", vb->vq.error);
    }
    g_mutex_unlock(&vb->lock);
}

/* Saved state, little-endian u64 words in this order. */
enum { S_VERSION, S_FEATURES, S_STATUS, S_FPH, S_CMD_ID, S_UNSTOPPED, S_SEEN,
       S_CFG_CMD, S_POISON, S_ACTUAL, S_QSIZE, S_DESC, S_AVAIL, S_USED,
       S_LAST_AVAIL, S_USED_IDX, S_WORDS };

GBytes *vb_save(VirtioBalloon *vb)
{
    uint64_t w[S_WORDS];
    g_mutex_lock(&vb->lock);
    uint64_t v[S_WORDS] = {
        STATE_VERSION, vb->features, vb->status, vb->fph, vb->cmd_id,
        vb->unstopped_id, vb->id_seen, vb->cfg.free_page_hint_cmd_id,
        vb->cfg.poison_val, vb->cfg.actual, vb->vq.size, vb->vq.desc_gpa,
        vb->vq.avail_gpa, vb->vq.used_gpa, vb->vq.last_avail_idx, vb->vq.used_idx,
    };
    g_mutex_unlock(&vb->lock);
    for (unsigned i = 0; i < S_WORDS; i++) {
        w[i] = GUINT64_TO_LE(v[i]);
    }
    return g_bytes_new(w, sizeof(w));
}

bool vb_load(VirtioBalloon *vb, GBytes *state, GError **errp)
{
    gsize len;
    const uint64_t *in = g_bytes_get_data(state, &len);
    uint64_t v[S_WORDS];

    if (len != sizeof(v)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "virtio-balloon state is %zu bytes, expected %zu", len, sizeof(v));
        return false;
    }
    for (unsigned i = 0; i < S_WORDS; i++) {
        v[i] = GUINT64_FROM_LE(in[i]);
    }
    if (v[S_VERSION] != STATE_VERSION || (v[S_FEATURES] & ~vb->host_features) ||
        v[S_STATUS] > 0xff || v[S_FPH] > FPH_START ||
        v[S_CMD_ID] < CMD_ID_MIN - 1 || v[S_CMD_ID] > UINT32_MAX ||
        v[S_CFG_CMD] > UINT32_MAX || v[S_POISON] > UINT32_MAX) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "virtio-balloon state is malformed or from another version");
        return false;
    }
    g_mutex_lock(&vb->lock);
    vb_reset_locked(vb);
    vb->features = v[S_FEATURES];
    vb->status = v[S_STATUS];
    vb->fph = v[S_FPH];
    vb->cmd_id = v[S_CMD_ID];
    vb->unstopped_id = v[S_UNSTOPPED];
    vb->id_seen = v[S_SEEN];
    vb->cfg.free_page_hint_cmd_id = v[S_CFG_CMD];
    vb->cfg.poison_val = v[S_POISON];
    vb->cfg.actual = v[S_ACTUAL];
    bool ok = true;
    if (v[S_QSIZE]) {
        ok = vq_setup(&vb->vq, vb->ram, v[S_QSIZE], v[S_DESC], v[S_AVAIL], v[S_USED],
                      errp);
        vb->vq.last_avail_idx = v[S_LAST_AVAIL];
        vb->vq.used_idx = v[S_USED_IDX];
    }
    g_mutex_unlock(&vb->lock);
    return ok;
}
