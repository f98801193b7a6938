/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Free page hints end to end, between hintmig-vm processes: the wire
 * carries what the guest uses, hinted pages read back as zero or the
 * guest's poison value, early release is safe, and the guest always gets
 * its pages back (DONE), whatever happens to the migration.
 */
#include <string.h>

#include "guest/guest_layout.h"
#include "vm/guest_ram.h"
#include "hintmig/hintmig.h"
#include "net_faults.h"
#include "vm_harness.h"
#include "test_util.h"

static char *dir;
static int seq;

static void setup(void) { dir = test_tmpdir(); }
static void teardown(void) { test_rmdir(dir); g_free(dir); }

static TestVm *start(const char *role, const char *const *args)
{
    g_autofree char *name = g_strdup_printf("%s%d", role, seq++);
    return test_vm_start(dir, name, args);
}

/* A source running fill-free, waited on until the fill has been freed. */
static TestVm *start_src(const char *ram, const char *fill, const char *driver)
{
    g_autofree char *wl = g_strdup_printf("fill-free,fill=%s", fill);
    const char *args[] = { "-m", ram, "-smp", "2", "--workload", wl, "-device",
                           "virtio-balloon,free-page-hint=on", "--balloon-driver",
                           driver, NULL };
    TestVm *vm = start("src", args);
    uint64_t fill_bytes;
    ck_assert(hintmig_size_parse(fill, 1, &fill_bytes, NULL));
    uint64_t fill_pages = fill_bytes / GUEST_PAGE_SIZE;
    /*
     * "info guest" checks all guest memory with the vCPUs held: asked ten
     * times a second it starved the fill itself (over 900 s under ASan).
     * Once a second, for at most 600 s (the 600 checks it allowed before
     * took about that long under ASan).
     */
    for (gint64 end = g_get_monotonic_time() + 600 * G_USEC_PER_SEC;
         g_get_monotonic_time() < end;) {
        g_autofree char *g = test_vm_cmd(vm, "info guest");
        g_autofree char *fm = test_field(g, "free memory");
        uint64_t writes = test_field_u64(g, "page writes");
        uint64_t free_mib = fm ? g_ascii_strtoull(fm, NULL, 10) : 0;
        uint64_t total_mib = fm ? g_ascii_strtoull(strstr(fm, "of ") + 3, NULL, 10) : 1;
        if (writes > fill_pages && free_mib * 100 > total_mib * 90) {
            return vm;
        }
        g_usleep(1000000);
    }
    ck_abort_msg("the guest never finished filling and freeing");
    return NULL;
}

static TestVm *start_dst(const char *ram, int *port, bool balloon, bool paused)
{
    *port = test_free_port();
    g_autofree char *inc = g_strdup_printf("tcp:127.0.0.1:%d", *port);
    const char *args[] = { "-m", ram, "-smp", "2", "-incoming", inc,
                           balloon ? "-device" : NULL,
                           "virtio-balloon,free-page-hint=on",
                           paused ? "-S" : NULL, NULL };
    if (!balloon) {
        args[6] = paused ? "-S" : NULL;
    }
    return start("dst", args);
}

/* The driver holds nothing: the guest has every page back. */
static void assert_pages_back(TestVm *vm)
{
    for (int i = 0; i < 200; i++) {
        g_autofree char *g = test_vm_cmd(vm, "info guest");
        g_autofree char *bd = test_field(g, "balloon driver");
        if (bd && g_str_has_prefix(bd, "idle, 0 blocks held")) {
            ck_assert_msg(g_str_has_prefix(g, "guest memory check: OK ("), "%s", g);
            return;
        }
        g_usleep(20000);
    }
    g_autofree char *g = test_vm_cmd(vm, "info guest");
    ck_abort_msg("the guest did not get its pages back:\n%s", g);
}

START_TEST(wire_carries_what_the_guest_uses)
{
    TestVm *src = start_src("2G", "1200M", "release=done");
    g_autofree char *g = test_vm_cmd(src, "info guest");
    g_autofree char *fm = test_field(g, "free memory");
    uint64_t in_use = (2048 - g_ascii_strtoull(fm, NULL, 10)) << 20;
    int port;
    TestVm *dst = start_dst("2G", &port, true, false);
    g_autofree char *c = test_vm_cmd(src, "migrate_set_capability free-page-hint on");
    ck_assert_str_eq(c, "");
    /* The bound below counts zstd in; compress-method auto may send raw on
     * loopback, where that is faster, and this test is about hints. */
    g_autofree char *z = test_vm_cmd(src, "migrate_set_parameter compress-method zstd");
    ck_assert_str_eq(z, "");
    g_autofree char *out = test_vm_cmd(src, "migrate tcp:127.0.0.1:%d", port);
    ck_assert_msg(!strcmp(out, ""), "%s", out);
    g_autofree char *info = test_vm_cmd(src, "info migrate");
    ck_assert_msg(strstr(info, "Migration status: completed\n") &&
                  strstr(info, "verify: OK ("), "%s", info);
    uint64_t wire = test_field_u64(info, "wire bytes") << 10;
    ck_assert_uint_gt(test_field_u64(info, "hint-skipped"), (1000ull << 20) / 4096);
    ck_assert_uint_gt(test_field_u64(info, "madv-freed"), 1000ull << 10);
    ck_assert_msg(wire * 100 <= in_use * 115,
                  "wire %" G_GUINT64_FORMAT " bytes is more than 1.15 x in use (%"
                  G_GUINT64_FORMAT " bytes)", wire, in_use);
    g_autofree char *dinfo = test_vm_cmd(dst, "info migrate");
    ck_assert_msg(strstr(dinfo, "hint-skipped: "), "%s", dinfo);
    assert_pages_back(dst);                  /* DONE reached the guest there */
    test_vm_quit(dst);
    test_vm_quit(src);
}
END_TEST

/* Pages released before DONE are written by the guest: they must be sent,
 * and the destination must end up with what the guest wrote. */
START_TEST(early_release_is_safe)
{
    TestVm *src = start_src("512M", "300M", "release=early");
    int port;
    TestVm *dst = start_dst("512M", &port, true, false);
    g_free(test_vm_cmd(src, "migrate_set_capability free-page-hint on"));
    g_autofree char *out = test_vm_cmd(src, "migrate tcp:127.0.0.1:%d", port);
    ck_assert_msg(!strcmp(out, ""), "%s", out);
    g_autofree char *info = test_vm_cmd(src, "info migrate");
    ck_assert_msg(strstr(info, "verify: OK ("), "%s", info);
    ck_assert_uint_gt(test_field_u64(info, "hinted"), 0);
    g_autofree char *g = test_vm_cmd(dst, "info guest");
    ck_assert_msg(g_str_has_prefix(g, "guest memory check: OK ("), "%s", g);
    g_autofree char *bd = test_field(g, "balloon driver");
    ck_assert_msg(bd && !strstr(bd, " 0 released early"), "%s", g);
    test_vm_quit(dst);
    test_vm_quit(src);
}
END_TEST

/* With a poison value, hinted pages read back as that value over there. */
/* In precopy, or in postcopy where the destination fills hinted pages itself. */
static void poison_read_back(bool postcopy)
{
    const uint32_t poison = 0x5a5aa5a5;
    TestVm *src = start_src("256M", "150M", "poison=0x5a5aa5a5");
    int port;
    TestVm *dst = start_dst("256M", &port, true, true);   /* -S: stays as it landed */
    g_free(test_vm_cmd(src, "migrate_set_capability free-page-hint on"));
    if (postcopy) {
        g_free(test_vm_cmd(dst, "migrate_set_capability postcopy-ram on"));
        g_free(test_vm_cmd(src, "migrate_set_capability postcopy-ram on"));
        g_autofree char *m = test_vm_cmd(src, "migrate -d tcp:127.0.0.1:%d", port);
        ck_assert_str_eq(m, "");
        g_autofree char *pc = test_vm_cmd(src, "migrate_start_postcopy");
        ck_assert_str_eq(pc, "");
        g_free(test_vm_wait_status(src, "completed", 30000));
        g_free(test_vm_wait_status(dst, "completed", 30000));
    } else {
        g_autofree char *out = test_vm_cmd(src, "migrate tcp:127.0.0.1:%d", port);
        ck_assert_msg(!strcmp(out, ""), "%s", out);
    }
    g_autofree char *info = test_vm_cmd(src, "info migrate");
    ck_assert(!postcopy || strstr(info, "postcopy remaining: "));
    ck_assert_msg(strstr(info, "verify: OK ("), "%s", info);
    g_autofree char *bal = test_vm_cmd(dst, "info balloon");
    ck_assert_msg(strstr(bal, "poison 0x5a5aa5a5"), "%s", bal);

    /* Read the destination's RAM and look at the pages the guest hinted. */
    g_autofree char *state = g_strdup_printf("%s/dst.state", dir);
    g_free(test_vm_cmd(dst, "x-save-state %s", state));
    g_autofree char *img = NULL;
    gsize len;
    ck_assert(g_file_get_contents(state, &img, &len, NULL));
    /* The RAM sits at an arbitrary offset in the file: copy it aligned. */
    g_autofree uint8_t *ram = g_memdup2(img + len - 32 - (256u << 20), 256u << 20);
    const GuestSuperblock *sb = (const void *)ram;
    const GuestPageMeta *meta = (const void *)(ram + GUEST_PAGE_SIZE);
    uint64_t hinted = 0;
    for (uint64_t pfn = sb->zone_start; pfn < sb->npages; pfn++) {
        if (meta[pfn].state != GPS_ALLOC || meta[pfn].kind != GPK_HINT) {
            continue;
        }
        const uint32_t *w = (const void *)(ram + pfn * GUEST_PAGE_SIZE);
        for (unsigned i = 0; i < GUEST_PAGE_SIZE / 4; i++) {
            /* Not ck_assert: it records a mark per call, 39 million here. */
            if (w[i] != poison) {
                ck_abort_msg("page %" G_GUINT64_FORMAT " word %u is 0x%08x", pfn, i, w[i]);
            }
        }
        hinted++;
    }
    ck_assert_uint_gt(hinted, 8192);         /* most of the 150 MiB freed */
    g_free(test_vm_cmd(dst, "cont"));
    assert_pages_back(dst);
    test_vm_quit(dst);
    test_vm_quit(src);
}

START_TEST(hinted_pages_read_back_as_poison) { poison_read_back(false); }
END_TEST

START_TEST(hinted_pages_read_back_as_poison_postcopy) { poison_read_back(true); }
END_TEST

START_TEST(destination_killed_guest_gets_pages_back)
{
    TestVm *src = start_src("512M", "300M", "release=done");
    int port;
    TestVm *dst = start_dst("512M", &port, true, false);
    g_free(test_vm_cmd(src, "migrate_set_capability free-page-hint on"));
    g_free(test_vm_cmd(src, "migrate_set_parameter max-bandwidth 512K"));
    g_free(test_vm_cmd(src, "migrate -d tcp:127.0.0.1:%d", port));
    for (int i = 0; i < 500; i++) {          /* until the hints are in */
        g_autofree char *info = test_vm_cmd(src, "info migrate");
        g_autofree char *h = test_field(info, "hint-skipped");
        if (h && g_ascii_strtoull(h, NULL, 10) > 0) {
            break;
        }
        g_usleep(20000);
    }
    g_autofree char *mid = test_vm_cmd(src, "info guest");
    g_autofree char *held = test_field(mid, "balloon driver");
    ck_assert_msg(held && g_str_has_prefix(held, "holding"), "%s", mid);
    test_vm_kill(dst);
    g_free(test_vm_wait_status(src, "failed", 30000));
    g_autofree char *st = test_vm_wait_run_state(src, "VM status: running\n", 10000);
    ck_assert_str_eq(st, "VM status: running\n");
    assert_pages_back(src);
    test_vm_quit(src);
}
END_TEST

START_TEST(capability_needs_the_device)
{
    const char *none[] = { "-m", "128M", NULL };
    const char *off[] = { "-m", "128M", "-device", "virtio-balloon,free-page-hint=off", NULL };
    TestVm *a = start("a", none);
    g_autofree char *e1 = test_vm_cmd(a, "migrate_set_capability free-page-hint on");
    ck_assert_msg(g_str_has_prefix(e1, "Error: free-page-hint needs a virtio-balloon "
                                       "device with free-page-hint=on"), "%s", e1);
    g_autofree char *caps = test_vm_cmd(a, "info migrate_capabilities");
    ck_assert_ptr_nonnull(strstr(caps, "free-page-hint: off"));
    test_vm_quit(a);
    TestVm *b = start("b", off);
    g_autofree char *e2 = test_vm_cmd(b, "migrate_set_capability free-page-hint on");
    ck_assert(g_str_has_prefix(e2, "Error: free-page-hint needs a virtio-balloon"));
    g_autofree char *bal = test_vm_cmd(b, "info balloon");
    ck_assert_ptr_nonnull(strstr(bal, "free-page-hint: not negotiated"));
    test_vm_quit(b);
}
END_TEST

START_TEST(destination_without_the_device)
{
    TestVm *src = start_src("256M", "100M", "release=done");
    int port;
    TestVm *dst = start_dst("256M", &port, false, false);
    g_free(test_vm_cmd(src, "migrate_set_capability free-page-hint on"));
    g_autofree char *out = test_vm_cmd(src, "migrate tcp:127.0.0.1:%d", port);
    ck_assert_msg(strstr(out, "virtio-balloon"), "%s", out);
    g_autofree char *st = test_vm_wait_run_state(src, "VM status: running\n", 10000);
    ck_assert_str_eq(st, "VM status: running\n");
    assert_pages_back(src);
    g_autofree char *dst_st = test_vm_wait_run_state(dst, "VM status: paused (inmigrate)\n", 10000);
    ck_assert_str_eq(dst_st, "VM status: paused (inmigrate)\n");
    test_vm_quit(dst);
    test_vm_quit(src);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hints_e2e");
    TCase *tc = tcase_create("hints");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, wire_carries_what_the_guest_uses);
    tcase_add_test(tc, early_release_is_safe);
    tcase_add_test(tc, hinted_pages_read_back_as_poison);
    tcase_add_test(tc, hinted_pages_read_back_as_poison_postcopy);
    tcase_add_test(tc, destination_killed_guest_gets_pages_back);
    tcase_add_test(tc, capability_needs_the_device);
    tcase_add_test(tc, destination_without_the_device);
    suite_add_tcase(s, tc);
    return test_run(s);
}
