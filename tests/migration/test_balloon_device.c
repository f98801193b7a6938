/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio-balloon free page hinting, device side: one test per
 * device-normative statement of the spec text, the cmd_id lifecycle, the
 * poll thread, state migration, and a driver that breaks the rules.
 */
#include <string.h>

#include "hw/virtio/virtio-balloon-hint.h"
#include "hw/virtio/virtqueue.h"
#include "test_util.h"

#define RAM (32u << 20)
#define QSIZE 64
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define ID_BUF 0x4000

static GuestRam *ram;
static VirtioBalloon *vb;
static GMutex lock;
static GArray *got;            /* HintSeen */
static uint32_t done_id;
static unsigned next_desc, avail_n;

typedef struct HintSeen {
    uint32_t id;
    uint64_t gpa, len;
} HintSeen;

static void on_hint(void *opaque, uint32_t id, uint64_t gpa, uint64_t len)
{
    (void)opaque;
    HintSeen h = { id, gpa, len };
    g_mutex_lock(&lock);
    g_array_append_val(got, h);
    g_mutex_unlock(&lock);
}

static void on_done(void *opaque, uint32_t id)
{
    (void)opaque;
    g_mutex_lock(&lock);
    done_id = id;
    g_mutex_unlock(&lock);
}

static void up(uint64_t features)
{
    vb_set_status(vb, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    ck_assert(vb_set_features(vb, features));
    vb_set_status(vb, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                      VIRTIO_STATUS_FEATURES_OK);
    ck_assert(vb_queue_setup(vb, VB_FREE_PAGE_VQ, QSIZE, DESC, AVAIL, USED));
    vb_set_status(vb, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                      VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

static void setup(void)
{
    GuestRamOptions o = { .size = RAM, .numa_node = -1 };
    ram = guest_ram_new(&o, NULL);
    vb = virtio_balloon_new(ram, true);
    got = g_array_new(FALSE, FALSE, sizeof(HintSeen));
    done_id = 0;
    next_desc = avail_n = 0;
    VirtioBalloonClient c = { on_hint, on_done, NULL };
    vb_set_client(vb, &c);
    vb_set_running(vb, true);
    up((1ull << VIRTIO_BALLOON_F_FREE_PAGE_HINT) | (1ull << VIRTIO_BALLOON_F_PAGE_POISON) |
       (1ull << VIRTIO_F_VERSION_1));
}

static void teardown(void)
{
    virtio_balloon_free(vb);
    guest_ram_free(ram);
    g_array_free(got, TRUE);
}

/* Queues one element of one buffer and kicks. */
static void add(uint64_t gpa, uint32_t len, bool device_writes)
{
    unsigned d = next_desc++ % QSIZE;
    VringDesc desc = { GUINT64_TO_LE(gpa), GUINT32_TO_LE(len),
                       GUINT16_TO_LE(device_writes ? VRING_DESC_F_WRITE : 0), 0 };
    memcpy(ram->host + DESC + d * 16, &desc, 16);
    uint16_t h = GUINT16_TO_LE(d);
    memcpy(ram->host + AVAIL + 4 + 2 * (avail_n % QSIZE), &h, 2);
    avail_n++;
    uint16_t idx = GUINT16_TO_LE(avail_n);
    __atomic_store_n((uint16_t *)(ram->host + AVAIL + 2), idx, __ATOMIC_RELEASE);
    vb_kick(vb, VB_FREE_PAGE_VQ);
}

static void send_id(uint32_t id)
{
    uint32_t le = GUINT32_TO_LE(id);
    uint64_t at = ID_BUF + (next_desc % QSIZE) * 8;
    memcpy(ram->host + at, &le, 4);
    add(at, 4, false);
}

/* Waits until the device has used everything queued. */
static void settle(void)
{
    for (int i = 0; i < 500; i++) {
        uint16_t used = __atomic_load_n((uint16_t *)(ram->host + USED + 2),
                                        __ATOMIC_ACQUIRE);
        if (used == avail_n) {
            g_usleep(5000);       /* let the client callbacks run */
            return;
        }
        char *err = vb_error(vb);
        if (err) {
            g_free(err);
            return;
        }
        g_usleep(2000);
    }
    ck_abort_msg("the device did not use the buffers");
}

static unsigned nhints(void)
{
    g_mutex_lock(&lock);
    unsigned n = got->len;
    g_mutex_unlock(&lock);
    return n;
}

static uint32_t cfg_cmd_id(void)
{
    VirtioBalloonConfig c;
    vb_config_read(vb, &c);
    return c.free_page_hint_cmd_id;
}

START_TEST(features_and_config_fields)
{
    uint64_t f = vb_host_features(vb);
    ck_assert(f & (1ull << VIRTIO_BALLOON_F_FREE_PAGE_HINT));
    ck_assert(f & (1ull << VIRTIO_BALLOON_F_PAGE_POISON));
    ck_assert(vb_hint_ready(vb));
    /* A driver may not accept what was not offered, nor change after FEATURES_OK. */
    ck_assert(!vb_set_features(vb, 1ull << 1));
    VirtioBalloonConfig c;
    vb_config_read(vb, &c);
    ck_assert_uint_eq(c.num_pages, 0);
    ck_assert_uint_eq(c.actual, 0);
    ck_assert_uint_eq(c.free_page_hint_cmd_id, VIRTIO_BALLOON_CMD_ID_STOP);
    vb_config_write(vb, offsetof(VirtioBalloonConfig, actual), 77);
    vb_config_write(vb, offsetof(VirtioBalloonConfig, poison_val), 0xaa55aa55);
    vb_config_write(vb, offsetof(VirtioBalloonConfig, free_page_hint_cmd_id), 9);
    vb_config_read(vb, &c);
    ck_assert_uint_eq(c.actual, 77);
    ck_assert_uint_eq(c.poison_val, 0xaa55aa55);
    ck_assert_uint_eq(c.free_page_hint_cmd_id, VIRTIO_BALLOON_CMD_ID_STOP); /* read-only */
    ck_assert_uint_eq(vb_poison(vb), 0xaa55aa55);
}
END_TEST

START_TEST(poison_needs_the_feature)
{
    vb_set_status(vb, 0);
    up((1ull << VIRTIO_BALLOON_F_FREE_PAGE_HINT) | (1ull << VIRTIO_F_VERSION_1));
    vb_config_write(vb, offsetof(VirtioBalloonConfig, poison_val), 0x1234);
    ck_assert_uint_eq(vb_poison(vb), 0);
}
END_TEST

/* "The device MUST ignore pages that are provided with a command ID that
 * does not match the current value." */
START_TEST(hints_are_taken_only_under_the_current_id)
{
    uint32_t id = fph_start(vb);
    ck_assert_uint_ge(id, 2);
    ck_assert_uint_eq(cfg_cmd_id(), id);
    ck_assert_int_eq(fph_status(vb), FPH_REQUESTED);
    add(0x100000, 4 << 20, true);           /* pages before any id: ignored */
    send_id(id + 7);                        /* a stale id */
    add(0x500000, 4 << 20, true);
    settle();
    ck_assert_uint_eq(nhints(), 0);
    send_id(id);
    add(0x900000, 4 << 20, true);
    add(0xd00000, 4 << 20, true);
    settle();
    ck_assert_int_eq(fph_status(vb), FPH_START);
    ck_assert_uint_eq(nhints(), 2);
    HintSeen h = g_array_index(got, HintSeen, 0);
    ck_assert_uint_eq(h.id, id);
    ck_assert_uint_eq(h.gpa, 0x900000);
    ck_assert_uint_eq(h.len, 4 << 20);
    ck_assert_uint_eq(vb_stats(vb).ignored, 2);
    send_id(VIRTIO_BALLOON_CMD_ID_STOP);
    settle();
    ck_assert_uint_eq(done_id, id);
    ck_assert_int_eq(fph_status(vb), FPH_STOP);
}
END_TEST

/* "The device MUST NOT reuse a command ID until it has received an output
 * buffer containing VIRTIO_BALLOON_CMD_ID_STOP from the driver."  Ids are
 * never the reserved 0 or 1. */
START_TEST(ids_are_fresh_and_never_reserved)
{
    g_autoptr(GHashTable) seen = g_hash_table_new(NULL, NULL);
    for (int i = 0; i < 100; i++) {
        uint32_t id = fph_start(vb);
        ck_assert_uint_gt(id, VIRTIO_BALLOON_CMD_ID_DONE);
        ck_assert(g_hash_table_add(seen, GUINT_TO_POINTER(id)));
    }
    /* Across the wrap, the id still unstopped is skipped. */
    GBytes *st = vb_save(vb);
    gsize len;
    const void *data = g_bytes_get_data(st, &len);
    uint64_t *w = g_memdup2(data, len);
    w[4] = GUINT64_TO_LE(UINT32_MAX - 1);   /* cmd_id */
    w[5] = GUINT64_TO_LE(2);                /* unstopped id */
    GBytes *forged = g_bytes_new_take(w, len);
    ck_assert(vb_load(vb, forged, NULL));
    ck_assert_uint_eq(fph_start(vb), UINT32_MAX);
    ck_assert_uint_eq(fph_start(vb), 2);     /* wrapped; 2 is free again */
    g_bytes_unref(st);
    g_bytes_unref(forged);
}
END_TEST

/* "The device SHOULD set free_page_hint_cmd_id to STOP any time that it will
 * not be able to make use of the hints" and "MUST report DONE when it no
 * longer has need for the previously hinted pages." */
START_TEST(stop_and_done_are_published)
{
    uint32_t gen = vb_config_generation(vb);
    uint32_t id = fph_start(vb);
    send_id(id);
    settle();
    fph_stop(vb);
    ck_assert_uint_eq(cfg_cmd_id(), VIRTIO_BALLOON_CMD_ID_STOP);
    add(0x100000, 4096, true);               /* after stop: ignored */
    settle();
    ck_assert_uint_eq(nhints(), 0);
    fph_done(vb);
    ck_assert_uint_eq(cfg_cmd_id(), VIRTIO_BALLOON_CMD_ID_DONE);
    fph_stop(vb);                            /* DONE stays DONE */
    ck_assert_uint_eq(cfg_cmd_id(), VIRTIO_BALLOON_CMD_ID_DONE);
    ck_assert_uint_gt(vb_config_generation(vb), gen);   /* config interrupts */
}
END_TEST

START_TEST(no_polling_while_the_vm_is_stopped)
{
    uint32_t id = fph_start(vb);
    vb_set_running(vb, false);
    ck_assert_uint_eq(fph_start(vb), 0);     /* no new round on a stopped VM */
    send_id(id);
    add(0x200000, 8192, true);
    g_usleep(300000);
    uint16_t used = *(uint16_t *)(ram->host + USED + 2);
    ck_assert_uint_eq(used, 0);              /* untouched */
    ck_assert_uint_eq(nhints(), 0);
    vb_set_running(vb, true);
    settle();
    ck_assert_uint_eq(nhints(), 1);
}
END_TEST

START_TEST(state_moves_with_the_vm)
{
    uint32_t id = fph_start(vb);
    vb_config_write(vb, offsetof(VirtioBalloonConfig, poison_val), 0xdeadbeef);
    send_id(id);
    settle();
    g_autoptr(GBytes) st = vb_save(vb);
    VirtioBalloon *b2 = virtio_balloon_new(ram, true);
    g_autoptr(GError) err = NULL;
    ck_assert_msg(vb_load(b2, st, &err), "%s", err ? err->message : "");
    ck_assert_uint_eq(vb_poison(b2), 0xdeadbeef);
    ck_assert_int_eq(fph_status(b2), FPH_START);
    VirtioBalloonConfig c;
    vb_config_read(b2, &c);
    ck_assert_uint_eq(c.free_page_hint_cmd_id, id);
    ck_assert(vb_hint_ready(b2));
    uint32_t next = fph_start(b2);
    ck_assert_uint_ne(next, id);
    /* A state blob of the wrong size or with unknown features is refused. */
    g_autoptr(GBytes) bad = g_bytes_new("junk", 4);
    ck_assert(!vb_load(b2, bad, &err));
    virtio_balloon_free(b2);
}
END_TEST

/* A driver that breaks the rules: the device stops, says why, lets no hint
 * through, and the host is unharmed. */
START_TEST(bad_command_buffer_breaks_the_device)
{
    uint32_t id = fph_start(vb);
    add(ID_BUF, 8, false);                   /* 8-byte command buffer */
    settle();
    g_autofree char *err = vb_error(vb);
    ck_assert_msg(err && strstr(err, "4 bytes"), "%s", err ? err : "(none)");
    ck_assert(vb_get_status(vb) & VIRTIO_STATUS_NEEDS_RESET);
    ck_assert(!vb_hint_ready(vb));
    ck_assert_uint_eq(fph_start(vb), 0);
    send_id(id);
    add(0x300000, 4096, true);
    g_usleep(200000);
    ck_assert_uint_eq(nhints(), 0);
    g_autoptr(GString) info = g_string_new(NULL);
    vb_info(vb, info);
    ck_assert_ptr_nonnull(strstr(info->str, "device needs reset"));
    vb_set_status(vb, 0);                    /* reset recovers */
    ck_assert_ptr_null(vb_error(vb));
}
END_TEST

START_TEST(current_id_twice_breaks_the_device)
{
    uint32_t id = fph_start(vb);
    send_id(id);
    send_id(id);
    add(0x300000, 4096, true);
    settle();
    g_autofree char *err = vb_error(vb);
    ck_assert_msg(err && strstr(err, "twice"), "%s", err ? err : "(none)");
    ck_assert_uint_eq(nhints(), 0);
}
END_TEST

START_TEST(unaligned_and_outside_ranges)
{
    uint32_t id = fph_start(vb);
    send_id(id);
    add(0x300001, 4096, true);               /* unaligned: ignored */
    add(0x300000, 100, true);                /* partial page: ignored */
    settle();
    ck_assert_uint_eq(nhints(), 0);
    ck_assert_uint_eq(vb_stats(vb).ignored, 2);
    add(RAM - 4096, 8192, true);             /* runs past RAM: broken */
    settle();
    g_autofree char *err = vb_error(vb);
    ck_assert_msg(err && strstr(err, "outside guest RAM"), "%s", err ? err : "(none)");
    ck_assert_uint_eq(nhints(), 0);
}
END_TEST

START_TEST(bad_rings_are_refused_at_setup)
{
    vb_set_status(vb, 0);
    vb_set_status(vb, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    ck_assert(vb_set_features(vb, 1ull << VIRTIO_BALLOON_F_FREE_PAGE_HINT));
    ck_assert(!vb_queue_setup(vb, VB_FREE_PAGE_VQ, QSIZE, RAM - 16, AVAIL, USED));
    ck_assert(vb_get_status(vb) & VIRTIO_STATUS_NEEDS_RESET);
    ck_assert(!vb_queue_setup(vb, 5, QSIZE, DESC, AVAIL, USED));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("balloon_device");
    TCase *tc = tcase_create("device");
    g_mutex_init(&lock);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, features_and_config_fields);
    tcase_add_test(tc, poison_needs_the_feature);
    tcase_add_test(tc, hints_are_taken_only_under_the_current_id);
    tcase_add_test(tc, ids_are_fresh_and_never_reserved);
    tcase_add_test(tc, stop_and_done_are_published);
    tcase_add_test(tc, no_polling_while_the_vm_is_stopped);
    tcase_add_test(tc, state_moves_with_the_vm);
    tcase_add_test(tc, bad_command_buffer_breaks_the_device);
    tcase_add_test(tc, current_id_twice_breaks_the_device);
    tcase_add_test(tc, unaligned_and_outside_ranges);
    tcase_add_test(tc, bad_rings_are_refused_at_setup);
    suite_add_tcase(s, tc);
    return test_run(s);
}
