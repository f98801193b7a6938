/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The guest's virtio-balloon free page hinting driver: see balloon_driver.h. */
#include <errno.h>
#include <string.h>

#include "guest/balloon_driver.h"
#include "guest/page_vec.h"
#include "hw/virtio/virtio-balloon-hint.h"
#include "hw/virtio/virtqueue.h"

#define BLOCK_ORDER GUEST_MAX_ORDER
#define BLOCK_BYTES ((uint64_t)GUEST_PAGE_SIZE << BLOCK_ORDER)
#define BLOCKS_PER_STEP 32
#define RING_DESC 0
#define RING_AVAIL 1024
#define RING_USED 2048
#define HINT_OWNER 0xfe

GuestBalloon *balloon_driver_state(Guest *g)
{
    uint64_t pfn = g->mem.sb->balloon_pfn;
    if (!pfn || !page_in_zone(&g->mem, pfn) || g->mem.meta[pfn].kind != GPK_KERNEL) {
        return NULL;
    }
    GuestBalloon *b = guest_ram_page(g->ram, pfn);
    return b->magic == GUEST_BALLOON_MAGIC ? b : NULL;
}

static uint64_t ring_gpa(GuestBalloon *b, unsigned off)
{
    return ((uint64_t)b->ring_pfn << GUEST_PAGE_SHIFT) + off;
}

/* Negotiates with the device and sets the queue up over our ring page. */
static bool negotiate(Guest *g, GuestBalloon *b)
{
    VirtioBalloon *dev = g->balloon;
    uint64_t want = (1ull << VIRTIO_BALLOON_F_FREE_PAGE_HINT) |
                    (1ull << VIRTIO_F_VERSION_1);

    if (g->mem.sb->balloon_poison) {
        want |= 1ull << VIRTIO_BALLOON_F_PAGE_POISON;
    }
    want &= vb_host_features(dev);
    vb_set_status(dev, 0);
    vb_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    if (!(want & (1ull << VIRTIO_BALLOON_F_FREE_PAGE_HINT)) ||
        !vb_set_features(dev, want)) {
        vb_set_status(dev, VIRTIO_STATUS_FAILED);
        return false;
    }
    vb_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                       VIRTIO_STATUS_FEATURES_OK);
    memset(guest_ram_page(g->ram, b->ring_pfn), 0, GUEST_PAGE_SIZE);
    b->avail_idx = b->last_used = b->in_flight = 0;
    if (!vb_queue_setup(dev, VB_FREE_PAGE_VQ, GUEST_BALLOON_QSIZE,
                        ring_gpa(b, RING_DESC), ring_gpa(b, RING_AVAIL),
                        ring_gpa(b, RING_USED))) {
        return false;
    }
    if (want & (1ull << VIRTIO_BALLOON_F_PAGE_POISON)) {
        vb_config_write(dev, offsetof(VirtioBalloonConfig, poison_val), b->poison);
    }
    vb_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                       VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
    return true;
}

static GuestBalloon *driver_init(Guest *g)
{
    uint32_t pfn = page_alloc(&g->mem, 0, GPK_KERNEL, HINT_OWNER);
    uint32_t ring = page_alloc(&g->mem, 0, GPK_KERNEL, HINT_OWNER);
    uint32_t dir = page_vec_new(&g->mem, HINT_OWNER);

    if (pfn == GUEST_PFN_NONE || ring == GUEST_PFN_NONE || dir == GUEST_PFN_NONE) {
        return NULL;           /* no memory yet: try again later */
    }
    GuestBalloon *b = guest_ram_page(g->ram, pfn);
    memset(b, 0, GUEST_PAGE_SIZE);
    b->magic = GUEST_BALLOON_MAGIC;
    b->ring_pfn = ring;
    b->held_dir = dir;
    b->poison = g->mem.sb->balloon_poison;
    g->mem.sb->balloon_pfn = pfn;
    return b;
}

/* Publishes one single-buffer element and kicks the device. */
static void add_buf(Guest *g, GuestBalloon *b, uint64_t gpa, uint32_t len,
                    bool device_writes)
{
    uint8_t *ring = guest_ram_page(g->ram, b->ring_pfn);
    unsigned d = b->avail_idx % GUEST_BALLOON_QSIZE;
    VringDesc desc = { GUINT64_TO_LE(gpa), GUINT32_TO_LE(len),
                       GUINT16_TO_LE(device_writes ? VRING_DESC_F_WRITE : 0), 0 };
    memcpy(ring + RING_DESC + d * 16, &desc, 16);
    uint16_t head = GUINT16_TO_LE(d);
    memcpy(ring + RING_AVAIL + 4 + 2 * d, &head, 2);
    b->avail_idx++;
    b->in_flight++;
    __atomic_store_n((uint16_t *)(ring + RING_AVAIL + 2), GUINT16_TO_LE(b->avail_idx),
                     __ATOMIC_RELEASE);
}

/* An output buffer holding @id: always exactly 4 bytes. */
static void send_id(Guest *g, GuestBalloon *b, uint32_t id)
{
    unsigned slot = b->avail_idx % GUEST_BALLOON_QSIZE;
    b->ids[slot] = GUINT32_TO_LE(id);
    uint64_t gpa = ((uint64_t)g->mem.sb->balloon_pfn << GUEST_PAGE_SHIFT) +
                   offsetof(GuestBalloon, ids) + slot * 4;
    add_buf(g, b, gpa, 4, false);
}

static void reclaim(Guest *g, GuestBalloon *b)
{
    uint8_t *ring = guest_ram_page(g->ram, b->ring_pfn);
    uint16_t used = GUINT16_FROM_LE(__atomic_load_n((uint16_t *)(ring + RING_USED + 2),
                                                    __ATOMIC_ACQUIRE));
    uint16_t n = used - b->last_used;
    if (n > b->in_flight) {
        n = b->in_flight;      /* a confused device: do not underflow */
    }
    b->last_used += n;
    b->in_flight -= n;
}

/* Gives the held blocks back, writing every page first if before DONE. */
static int release_held(Guest *g, GuestBalloon *b, bool reinit)
{
    while (b->held) {
        uint32_t pfn;
        int ret = page_vec_get(&g->mem, b->held_dir, b->held - 1, &pfn);
        if (ret < 0) {
            return ret;
        }
        if (reinit) {
            /* Contents may be gone; a page returned before DONE must be
             * initialised, and that write also overrides the hint. */
            memset(guest_ram_page(g->ram, pfn), 0, BLOCK_BYTES);
            b->released_early++;
        }
        if ((ret = page_free(&g->mem, pfn, BLOCK_ORDER)) < 0) {
            return ret;
        }
        b->held--;
    }
    return 0;
}

static int report_blocks(Guest *g, GuestBalloon *b)
{
    for (int i = 0; i < BLOCKS_PER_STEP; i++) {
        if (b->in_flight >= GUEST_BALLOON_QSIZE - 1) {
            return 0;          /* keep one slot for STOP */
        }
        uint32_t pfn = page_alloc(&g->mem, BLOCK_ORDER, GPK_HINT, HINT_OWNER);
        if (pfn == GUEST_PFN_NONE) {
            send_id(g, b, VIRTIO_BALLOON_CMD_ID_STOP);   /* out of free blocks */
            b->phase = GBP_HOLDING;
            return 0;
        }
        int ret = page_vec_set(&g->mem, b->held_dir, b->held, pfn, HINT_OWNER);
        if (ret < 0) {
            page_free(&g->mem, pfn, BLOCK_ORDER);
            return ret;
        }
        b->held++;
        b->reported++;
        add_buf(g, b, (uint64_t)pfn << GUEST_PAGE_SHIFT, BLOCK_BYTES, true);
    }
    return 0;
}

bool balloon_driver_step(Guest *g, GError **errp)
{
    VirtioBalloon *dev = g->balloon;
    if (!dev) {
        return true;
    }
    GuestBalloon *b = balloon_driver_state(g);
    if (!b) {
        if (g->mem.sb->balloon_pfn) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                        "balloon driver state page is corrupt");
            return false;
        }
        if (!(b = driver_init(g))) {
            return true;
        }
    }
    uint8_t st = vb_get_status(dev);
    if (st & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)) {
        return true;           /* the device gave up on us; stay quiet */
    }
    if (!(st & VIRTIO_STATUS_DRIVER_OK) && !negotiate(g, b)) {
        return true;
    }
    reclaim(g, b);
    uint16_t avail_before = b->avail_idx;
    VirtioBalloonConfig cfg;
    vb_config_read(dev, &cfg);
    uint32_t id = cfg.free_page_hint_cmd_id;
    int ret = 0;

    if (id == VIRTIO_BALLOON_CMD_ID_DONE) {
        if (b->phase == GBP_REPORTING && b->in_flight < GUEST_BALLOON_QSIZE) {
            send_id(g, b, VIRTIO_BALLOON_CMD_ID_STOP);
        }
        ret = release_held(g, b, false);
        b->phase = GBP_IDLE;
        b->cmd_id = 0;
    } else if (id > VIRTIO_BALLOON_CMD_ID_DONE && id != b->cmd_id &&
               b->in_flight < GUEST_BALLOON_QSIZE - 1) {
        /* A new round: the id first, once, then blocks. */
        b->cmd_id = id;
        b->rounds++;
        b->phase = GBP_REPORTING;
        send_id(g, b, id);
    }
    if (!ret && b->phase == GBP_REPORTING) {
        if (id != b->cmd_id) {
            /* The device said STOP (or DONE): stop supplying pages. */
            if (b->in_flight < GUEST_BALLOON_QSIZE) {
                send_id(g, b, VIRTIO_BALLOON_CMD_ID_STOP);
                b->phase = GBP_HOLDING;
            }
        } else {
            ret = report_blocks(g, b);
        }
    }
    if (!ret && b->phase == GBP_HOLDING &&
        (g->mem.sb->balloon_flags & GUEST_BALLOON_EARLY_RELEASE)) {
        ret = release_held(g, b, true);
    }
    if (b->avail_idx != avail_before) {
        vb_kick(dev, VB_FREE_PAGE_VQ);
    }
    if (ret < 0) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "balloon driver: held block list corrupt (%s)", g_strerror(-ret));
        return false;
    }
    return true;
}
