/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The virtio-balloon device (virtio-balloon-hint.c) with its poll thread,
 * serving a free page queue whose rings and buffers are in 64 KiB of guest
 * RAM the input fills.  Input: u8 features, u8 actions, u16 queue size,
 * u16 desc, avail and used offsets, u32 poison, u32 the last cmd id
 * issued (loaded as device state, so that ids do not depend on earlier
 * inputs), then the first 64 KiB of 16 MiB of RAM.  The driver side
 * is played through the device's bus calls; each pass of the poll thread
 * is waited for.  Every hint handed to the engine must be page-aligned and
 * inside RAM, and the device state must save and load unchanged.
 */
#include <string.h>

#include "hw/virtio/virtio-balloon-hint.h"
#include "migration/le.h"
#include "fuzz.h"

#define RAM_SIZE (16u << 20)
#define IMAGE (64u << 10)
/* Rings at u16 offsets end below this: what the device may have written. */
#define DIRTY (IMAGE + (320u << 10))
#define SETUP 18
#define PASS_TIMEOUT_US (10 * G_USEC_PER_SEC)

typedef struct Ctx {
    GuestRam *ram;
    VirtioBalloon *vb;
    VirtioBalloonClient client;
} Ctx;

static Ctx ctx;

static void on_hint(void *opaque, uint32_t cmd_id, uint64_t gpa, uint64_t len)
{
    (void)opaque;
    FUZZ_CHECK(cmd_id > VIRTIO_BALLOON_CMD_ID_DONE);
    FUZZ_CHECK(gpa % GUEST_PAGE_SIZE == 0 && len % GUEST_PAGE_SIZE == 0 && len);
    FUZZ_CHECK(gpa < RAM_SIZE && len <= RAM_SIZE - gpa);
}

static void on_done(void *opaque, uint32_t cmd_id)
{
    (void)opaque;
    FUZZ_CHECK(cmd_id > VIRTIO_BALLOON_CMD_ID_DONE);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    GuestRamOptions o = { .size = RAM_SIZE, .numa_node = -1 };
    ctx.ram = guest_ram_new(&o, NULL);
    FUZZ_CHECK(ctx.ram);
    ctx.vb = virtio_balloon_new(ctx.ram, true);
    ctx.client = (VirtioBalloonClient) { on_hint, on_done, NULL };
    vb_set_client(ctx.vb, &ctx.client);
    return 0;
}

/* Kicks and waits for the poll thread's pass, if the device will make one. */
static void kick_and_wait(void)
{
    uint8_t st = vb_get_status(ctx.vb);
    if (!(st & VIRTIO_STATUS_DRIVER_OK) || (st & VIRTIO_STATUS_NEEDS_RESET)) {
        return;
    }
    vb_take_interrupts(ctx.vb);
    vb_kick(ctx.vb, VB_FREE_PAGE_VQ);
    gint64 end = g_get_monotonic_time() + PASS_TIMEOUT_US;
    /* A pass ends with an interrupt, or with the device broken. */
    while (!vb_take_interrupts(ctx.vb) &&
           !(vb_get_status(ctx.vb) & VIRTIO_STATUS_NEEDS_RESET)) {
        FUZZ_CHECK(g_get_monotonic_time() < end);   /* a hang is a bug */
        g_thread_yield();
    }
    vb_set_client(ctx.vb, &ctx.client);            /* its callbacks are done */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < SETUP) {
        return 0;
    }
    VirtioBalloon *vb = ctx.vb;
    uint8_t feat = data[0], act = data[1];
    uint64_t features = (feat & 1 ? 1ull << VIRTIO_BALLOON_F_FREE_PAGE_HINT : 0) |
                        (feat & 2 ? 1ull << VIRTIO_BALLOON_F_PAGE_POISON : 0) |
                        (feat & 4 ? 1ull << VIRTIO_F_VERSION_1 : 0) |
                        (feat & 8 ? 1ull << 40 : 0);     /* one it does not offer */

    vb_set_running(vb, false);
    vb_set_client(vb, &ctx.client);
    uint64_t base[16] = { GUINT64_TO_LE(1) };
    base[4] = GUINT64_TO_LE(le_get32(data + 14));
    g_autoptr(GBytes) b = g_bytes_new(base, sizeof(base));
    if (!vb_load(vb, b, NULL)) {
        return 0;             /* an id the device refuses to load */
    }
    vb_set_status(vb, 0);
    memset(ctx.ram->host, 0, DIRTY);
    memcpy(ctx.ram->host, data + SETUP, MIN(size - SETUP, IMAGE));

    uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;
    vb_set_status(vb, st);
    if (!vb_set_features(vb, features)) {
        FUZZ_CHECK(feat & 8);
        return 0;
    }
    vb_set_status(vb, st |= VIRTIO_STATUS_FEATURES_OK);
    if (!vb_queue_setup(vb, VB_FREE_PAGE_VQ, le_get16(data + 2), le_get16(data + 4),
                        le_get16(data + 6), le_get16(data + 8))) {
        g_autofree char *why = vb_error(vb);
        FUZZ_CHECK(why && (vb_get_status(vb) & VIRTIO_STATUS_NEEDS_RESET));
        return 0;
    }
    vb_config_write(vb, offsetof(VirtioBalloonConfig, poison_val), le_get32(data + 10));
    vb_set_status(vb, st |= VIRTIO_STATUS_DRIVER_OK);
    vb_set_running(vb, true);

    /* Up to four rounds of: maybe a new cmd id, a pass, maybe stop/done. */
    for (unsigned i = 0; i < 4; i++) {
        uint8_t a = act >> (2 * i) & 3;
        if (a == 1) {
            uint32_t id = fph_start(vb);
            FUZZ_CHECK(!id || id > VIRTIO_BALLOON_CMD_ID_DONE);
        }
        kick_and_wait();
        if (a == 2) {
            fph_stop(vb);
        } else if (a == 3) {
            fph_done(vb);
        }
    }
    vb_set_running(vb, false);
    vb_set_client(vb, &ctx.client);

    g_autoptr(GString) info = g_string_new(NULL);
    vb_info(vb, info);
    g_autoptr(GBytes) saved = vb_save(vb);
    g_autoptr(GError) err = NULL;
    if (vb_load(vb, saved, &err)) {
        g_autoptr(GBytes) again = vb_save(vb);
        FUZZ_CHECK(g_bytes_equal(saved, again));
    }
    return 0;
}
