/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Postcopy between two hintmig-vm processes on loopback: the guest runs on
 * the destination while its pages arrive, faults on the ones still missing,
 * never asks for a page it reported free, survives a network cut and a
 * recovery, and ends with every page verified as placed.
 */
#include <string.h>

#include "vm/guest_ram.h"
#include "migration/uffd_postcopy.h"
#include "migration/wire.h"
#include "net_faults.h"
#include "vm_harness.h"
#include "test_util.h"

static char *dir;
static int vm_seq;

static void setup(void) { dir = test_tmpdir(); }
static void teardown(void) { test_rmdir(dir); g_free(dir); }

static TestVm *start(const char *role, const char *const *args)
{
    g_autofree char *name = g_strdup_printf("%s%d", role, vm_seq++);
    return test_vm_start(dir, name, args);
}

static void cmd_ok(TestVm *vm, const char *cmd)
{
    g_autofree char *out = test_vm_cmd(vm, "%s", cmd);
    ck_assert_msg(!strcmp(out, ""), "'%s' said: %s", cmd, out);
}

static TestVm *start_dest(const char *ram, const char *thp, bool balloon, int *port)
{
    *port = test_free_port();
    g_autofree char *inc = g_strdup_printf("tcp:127.0.0.1:%d", *port);
    const char *args[] = { "-m", ram, "-smp", "2", "--thp", thp, "-incoming", inc,
                           balloon ? "-device" : NULL,
                           "virtio-balloon,free-page-hint=on", NULL };
    TestVm *dst = start("dst", args);
    cmd_ok(dst, "migrate_set_capability postcopy-ram on");
    return dst;
}

static TestVm *start_churn(const char *ram, const char *thp, const char *wl)
{
    const char *args[] = { "-m", ram, "-smp", "2", "--thp", thp, "--workload", wl,
                           NULL };
    TestVm *src = start("src", args);
    g_usleep(500000);          /* let it fill its working set */
    cmd_ok(src, "migrate_set_capability postcopy-ram on");
    return src;
}

/* Both sides completed, verified, and the guest is healthy and working. */
static void assert_postcopy_done(TestVm *src, TestVm *dst)
{
    g_free(test_vm_wait_status(src, "completed", 120000));
    g_free(test_vm_wait_status(dst, "completed", 30000));
    g_autofree char *si = test_vm_cmd(src, "info migrate");
    g_autofree char *di = test_vm_cmd(dst, "info migrate");
    ck_assert_msg(strstr(si, "verify: OK (") && strstr(si, "postcopy request count: "),
                  "%s", si);
    ck_assert_msg(strstr(di, "verify: OK (") && strstr(di, "postcopy faults: "),
                  "%s", di);
    ck_assert_uint_eq(test_field_u64(di, "postcopy remaining"), 0);
    g_autofree char *st = test_vm_wait_run_state(src, "VM status: paused (postmigrate)\n", 10000);
    ck_assert_str_eq(st, "VM status: paused (postmigrate)\n");
    g_autofree char *dst_st = test_vm_wait_run_state(dst, "VM status: running\n", 10000);
    ck_assert_str_eq(dst_st, "VM status: running\n");
    test_vm_assert_guest_ok(dst);
    g_autofree char *g1 = test_vm_cmd(dst, "info guest");
    g_usleep(200000);
    g_autofree char *g2 = test_vm_cmd(dst, "info guest");
    ck_assert_uint_gt(test_field_u64(g2, "page writes"), test_field_u64(g1, "page writes"));
}

/* The guest writes on the destination while most of its RAM is still owed. */
static void churn_postcopy(const char *thp)
{
    TestVm *src = start_churn("512M", thp, "churn,wss=256M,rate=32M");
    int port;
    TestVm *dst = start_dest("512M", thp, false, &port);
    cmd_ok(src, "migrate_set_parameter max-bandwidth 40M");
    g_autofree char *m = test_vm_cmd(src, "migrate -d tcp:127.0.0.1:%d", port);
    ck_assert_str_eq(m, "");
    cmd_ok(src, "migrate_start_postcopy");
    g_free(test_vm_wait_status(dst, "postcopy-active", 30000));
    /* Running there at once, not after the last page. */
    g_autofree char *st = test_vm_wait_run_state(dst, "VM status: running\n", 10000);
    ck_assert_str_eq(st, "VM status: running\n");
    g_autofree char *early = test_vm_cmd(dst, "info migrate");
    ck_assert_uint_gt(test_field_u64(early, "postcopy remaining"), 0);
    g_autofree char *busy = test_vm_cmd(dst, "info guest");
    ck_assert_msg(g_str_has_prefix(busy, "Error: guest RAM is still arriving"), "%s", busy);
    assert_postcopy_done(src, dst);
    g_autofree char *di = test_vm_cmd(dst, "info migrate");
    g_autofree char *faults = test_field(di, "postcopy faults");
    ck_assert_msg(!g_str_has_suffix(faults, " 0 remote"), "%s", di);
    ck_assert_ptr_nonnull(strstr(di, "postcopy remote fault latency: p50 "));
    /* postcopy-yield is off: the push never slowed down. */
    g_autofree char *si = test_vm_cmd(src, "info migrate");
    ck_assert_uint_eq(test_field_u64(si, "postcopy push yields"), 0);
    test_vm_quit(dst);
    test_vm_quit(src);
}

START_TEST(churn_thp_off) { churn_postcopy("off"); }
END_TEST

START_TEST(churn_thp_on) { churn_postcopy("on"); }
END_TEST

/* Free pages stay off the wire and are never asked for. */
START_TEST(fill_free_with_hints)
{
    const char *args[] = { "-m", "2G", "-smp", "2", "--workload", "fill-free,fill=1200M",
                           "-device", "virtio-balloon,free-page-hint=on",
                           "--balloon-driver", "release=done", NULL };
    TestVm *src = start("src", args);
    uint64_t in_use = 0;
    /* Once a second, at most 600 s: "info guest" checks all memory with the
     * vCPUs held, and asked ten times a second it starved the fill. */
    for (gint64 end = g_get_monotonic_time() + 600 * G_USEC_PER_SEC;
         !in_use && g_get_monotonic_time() < end;) {
        g_autofree char *g = test_vm_cmd(src, "info guest");
        g_autofree char *fm = test_field(g, "free memory");
        uint64_t free_mib = fm ? g_ascii_strtoull(fm, NULL, 10) : 0;
        if (test_field_u64(g, "page writes") > (1200ull << 20) / GUEST_PAGE_SIZE &&
            free_mib > 1900) {
            in_use = (2048 - free_mib) << 20;
        }
        if (!in_use) {
            g_usleep(1000000);
        }
    }
    ck_assert_msg(in_use, "the guest never finished filling and freeing");
    int port;
    TestVm *dst = start_dest("2G", "off", true, &port);
    cmd_ok(src, "migrate_set_capability postcopy-ram on");
    cmd_ok(src, "migrate_set_capability free-page-hint on");
    /* The bound below counts zstd in; compress-method auto may send raw on
     * loopback, where that is faster, and this test is about hints. */
    cmd_ok(src, "migrate_set_parameter compress-method zstd");
    g_autofree char *m = test_vm_cmd(src, "migrate -d tcp:127.0.0.1:%d", port);
    ck_assert_str_eq(m, "");
    cmd_ok(src, "migrate_start_postcopy");
    assert_postcopy_done(src, dst);
    g_autofree char *si = test_vm_cmd(src, "info migrate");
    g_autofree char *di = test_vm_cmd(dst, "info migrate");
    uint64_t wire = test_field_u64(si, "wire bytes") << 10;
    ck_assert_msg(wire * 100 <= in_use * 115,
                  "postcopy put %" G_GUINT64_FORMAT " bytes on the wire, more than "
                  "1.15 x the %" G_GUINT64_FORMAT " bytes in use\n%s", wire, in_use, si);
    ck_assert_uint_gt(test_field_u64(di, "postcopy hint-filled"),
                      (1000ull << 20) / GUEST_PAGE_SIZE);
    ck_assert_uint_eq(test_field_u64(di, "postcopy hinted requested"), 0);
    ck_assert_uint_gt(test_field_u64(si, "hint-skipped"), (1000ull << 20) / GUEST_PAGE_SIZE);
    test_vm_quit(dst);
    test_vm_quit(src);
}
END_TEST

/*
 * Starts a churn guest's postcopy through a proxy (push capped at @bw) and
 * cuts the network once the guest runs on the destination: both pause.
 */
static void start_and_cut(TestVm **src, TestVm **dst, const char *bw)
{
    int port, proxy_port = test_free_port();
    *src = start_churn("512M", "off", "churn,wss=256M,rate=32M");
    *dst = start_dest("512M", "off", false, &port);
    Proxy *proxy = proxy_start(proxy_port, port, PROXY_PASS, 0);
    g_autofree char *set_bw = g_strdup_printf("migrate_set_parameter max-bandwidth %s", bw);
    cmd_ok(*src, set_bw);
    g_autofree char *m = test_vm_cmd(*src, "migrate -d tcp:127.0.0.1:%d", proxy_port);
    ck_assert_str_eq(m, "");
    cmd_ok(*src, "migrate_start_postcopy");
    g_free(test_vm_wait_status(*dst, "postcopy-active", 30000));
    g_usleep(300000);
    proxy_stop(proxy);                              /* the network cut */
    g_free(test_vm_wait_status(*src, "postcopy-paused", 30000));
    g_free(test_vm_wait_status(*dst, "postcopy-paused", 30000));
}

/* A cut mid-postcopy pauses both sides; migrate_recover + migrate -r finish it. */
START_TEST(cut_and_recover)
{
    TestVm *src, *dst;
    start_and_cut(&src, &dst, "20M");
    g_autofree char *paused = test_vm_cmd(dst, "info migrate");
    ck_assert_uint_gt(test_field_u64(paused, "postcopy remaining"), 0);
    g_autofree char *c = test_vm_cmd(src, "migrate_cancel");
    ck_assert_msg(g_str_has_prefix(c, "Error: migrate_cancel is refused in postcopy"),
                  "%s", c);
    g_autofree char *st = test_vm_wait_run_state(src, "VM status: paused (finish-migrate)\n", 10000);
    ck_assert_str_eq(st, "VM status: paused (finish-migrate)\n");

    int rport = test_free_port();
    g_autofree char *rec = g_strdup_printf("migrate_recover tcp:127.0.0.1:%d", rport);
    cmd_ok(dst, rec);
    cmd_ok(src, "migrate_set_parameter max-bandwidth 0");
    g_autofree char *r = test_vm_cmd(src, "migrate -r tcp:127.0.0.1:%d", rport);
    ck_assert_str_eq(r, "");
    assert_postcopy_done(src, dst);
    g_autofree char *si = test_vm_cmd(src, "info migrate");
    g_autofree char *di = test_vm_cmd(dst, "info migrate");
    ck_assert_uint_eq(test_field_u64(si, "postcopy recoveries"), 1);
    ck_assert_uint_eq(test_field_u64(di, "postcopy recoveries"), 1);
    test_vm_quit(dst);
    test_vm_quit(src);
}
END_TEST

/* With postcopy-yield the push slows while the guest faults, and the
 * migration still completes, verified. */
START_TEST(push_yields_to_faults)
{
    TestVm *src = start_churn("512M", "off", "churn,wss=256M,rate=32M");
    int port;
    TestVm *dst = start_dest("512M", "off", false, &port);
    cmd_ok(src, "migrate_set_capability postcopy-yield on");
    g_autofree char *caps = test_vm_cmd(src, "info migrate_capabilities");
    ck_assert_ptr_nonnull(strstr(caps, "postcopy-yield: on\n"));
    g_autofree char *m = test_vm_cmd(src, "migrate -d tcp:127.0.0.1:%d", port);
    ck_assert_str_eq(m, "");
    cmd_ok(src, "migrate_start_postcopy");
    g_free(test_vm_wait_status(dst, "postcopy-active", 30000));
    assert_postcopy_done(src, dst);
    g_autofree char *si = test_vm_cmd(src, "info migrate");
    g_autofree char *di = test_vm_cmd(dst, "info migrate");
    g_autofree char *faults = test_field(di, "postcopy faults");
    ck_assert_msg(!g_str_has_suffix(faults, " 0 remote"), "%s", di);
    ck_assert_uint_gt(test_field_u64(si, "postcopy push yields"), 0);
    test_vm_quit(dst);
    test_vm_quit(src);
}
END_TEST

/* Quitting either side of a paused postcopy does not hang on waiting vCPUs. */
START_TEST(quit_while_paused)
{
    TestVm *src, *dst;
    start_and_cut(&src, &dst, "10M");
    /* vCPUs waiting on missing pages park when they can: stop returns. */
    cmd_ok(dst, "stop");
    g_autofree char *st = test_vm_wait_run_state(dst, "VM status: paused\n", 10000);
    ck_assert_str_eq(st, "VM status: paused\n");
    g_autofree char *save = test_vm_cmd(dst, "x-save-state %s/never", dir);
    ck_assert_msg(g_str_has_prefix(save, "Error: guest RAM is still arriving"), "%s", save);
    test_vm_quit(dst);          /* exit 0 within 20 s, or the test fails */
    test_vm_quit(src);
}
END_TEST

/* The source is gone for good: quitting a destination waiting in migrate_recover is prompt. */
START_TEST(quit_while_recovering)
{
    TestVm *src, *dst;
    start_and_cut(&src, &dst, "10M");
    test_vm_kill(src);
    g_autofree char *rec = g_strdup_printf("migrate_recover tcp:127.0.0.1:%d",
                                           test_free_port());
    cmd_ok(dst, rec);
    g_free(test_vm_wait_status(dst, "postcopy-recover", 10000));
    test_vm_quit(dst);          /* exit 0 within 20 s (it took 60 s), or the test fails */
}
END_TEST

/*
 * The source dies right after the switch, owing the guest's superblock, on a
 * destination started with -S: 'cont' boots the guest.  The main thread
 * leaves that to the vCPUs; it used to read page 0 itself and wait in the
 * fault for ever, with the monitor, quit and SIGTERM dead (issue 13, finding 6).
 */
START_TEST(source_gone_before_page_zero)
{
    TestVm *src = start_churn("256M", "off", "churn,wss=64M,rate=16M");
    int port = test_free_port(), proxy_port = test_free_port();
    g_autofree char *inc = g_strdup_printf("tcp:127.0.0.1:%d", port);
    const char *args[] = { "-m", "256M", "-smp", "2", "-S", "-incoming", inc, NULL };
    TestVm *dst = start("dst", args);
    cmd_ok(dst, "migrate_set_capability postcopy-ram on");
    /* Nothing the source sends after POSTCOPY_RUN arrives: not the push's
     * first batch, which would bring page 0. */
    Proxy *proxy = proxy_start(proxy_port, port, PROXY_PASS, 0);
    proxy_arm(proxy, WIRE_RAM_BATCH, WIRE_POSTCOPY_RUN, false);
    g_autofree char *m = test_vm_cmd(src, "migrate -d tcp:127.0.0.1:%d", proxy_port);
    ck_assert_str_eq(m, "");
    cmd_ok(src, "migrate_start_postcopy");
    g_free(test_vm_wait_status(dst, "postcopy-active", 30000));
    g_autofree char *st0 = test_vm_wait_run_state(dst, "VM status: paused\n", 10000);
    ck_assert_str_eq(st0, "VM status: paused\n");
    ck_assert(proxy_wait_held(proxy, 30000));
    test_vm_kill(src);
    proxy_stop(proxy);
    g_autofree char *paused = test_vm_wait_status(dst, "postcopy-paused", 30000);

    cmd_ok(dst, "cont");                      /* returns: the vCPUs boot it */
    g_autofree char *st1 = test_vm_wait_run_state(dst, "VM status: running\n", 10000);
    ck_assert_str_eq(st1, "VM status: running\n");
    g_autofree char *mi = test_vm_cmd(dst, "info migrate");
    ck_assert_msg(strstr(mi, "Migration status: postcopy-paused") &&
                  test_field_u64(mi, "postcopy remaining") > 0, "%s", mi);
    cmd_ok(dst, "stop");                      /* and stop, though a vCPU waits */
    g_autofree char *st2 = test_vm_wait_run_state(dst, "VM status: paused\n", 10000);
    ck_assert_str_eq(st2, "VM status: paused\n");
    test_vm_quit(dst);                        /* exit 0 within 20 s */
}
END_TEST

/* A destination that cannot load the state never runs the guest: the source does. */
START_TEST(refused_switch_resumes_source)
{
    const char *args[] = { "-m", "256M", "-smp", "2", "--workload",
                           "churn,wss=64M,rate=8M", "-device", "virtio-balloon", NULL };
    TestVm *src = start("src", args);
    int port;
    TestVm *dst = start_dest("256M", "off", false, &port);   /* no balloon */
    cmd_ok(src, "migrate_set_capability postcopy-ram on");
    g_autofree char *m = test_vm_cmd(src, "migrate -d tcp:127.0.0.1:%d", port);
    ck_assert_str_eq(m, "");
    cmd_ok(src, "migrate_start_postcopy");
    g_autofree char *s1 = test_vm_wait_status(src, "failed", 30000);
    ck_assert_msg(strstr(s1, "virtio-balloon"), "%s", s1);
    g_autofree char *info = test_vm_cmd(src, "info migrate");
    ck_assert_msg(strstr(info, "postcopy remaining: "), "it never switched:\n%s", info);
    g_autofree char *st = test_vm_wait_run_state(src, "VM status: running\n", 10000);
    ck_assert_str_eq(st, "VM status: running\n");
    test_vm_assert_guest_ok(src);
    g_autofree char *d1 = test_vm_wait_status(dst, "failed", 30000);
    g_autofree char *dst_st = test_vm_wait_run_state(dst, "VM status: paused (inmigrate)\n", 10000);
    ck_assert_str_eq(dst_st, "VM status: paused (inmigrate)\n");
    test_vm_quit(dst);
    test_vm_quit(src);
}
END_TEST

/* Misuse gets a clear error, and nothing starts half-way. */
START_TEST(refusals)
{
    TestVm *src = start_churn("128M", "off", "churn,wss=16M,rate=2M");
    g_autofree char *e1 = test_vm_cmd(src, "migrate -r tcp:127.0.0.1:1");
    ck_assert_msg(g_str_has_prefix(e1, "Error: migrate -r resumes a paused postcopy"), "%s", e1);
    cmd_ok(src, "migrate_set_capability postcopy-ram off");
    g_autofree char *e2 = test_vm_cmd(src, "migrate_start_postcopy");
    ck_assert_msg(g_str_has_prefix(e2, "Error: Enable postcopy"), "%s", e2);
    cmd_ok(src, "migrate_set_capability postcopy-ram on");
    g_autofree char *e3 = test_vm_cmd(src, "migrate_start_postcopy");
    ck_assert_msg(g_str_has_prefix(e3, "Error: postcopy must be started after"), "%s", e3);
    /* A destination without postcopy-ram refuses, as QEMU's does. */
    int port = test_free_port();
    g_autofree char *inc = g_strdup_printf("tcp:127.0.0.1:%d", port);
    const char *args[] = { "-m", "128M", "-smp", "2", "-incoming", inc, NULL };
    TestVm *dst = start("dst", args);
    g_autofree char *e4 = test_vm_cmd(dst, "migrate_recover tcp:127.0.0.1:1");
    ck_assert_msg(g_str_has_prefix(e4, "Error: migrate_recover needs"), "%s", e4);
    g_autofree char *m = test_vm_cmd(src, "migrate -d tcp:127.0.0.1:%d", port);
    ck_assert_str_eq(m, "");
    g_autofree char *s = test_vm_wait_status(src, "failed", 10000);
    ck_assert_msg(strstr(s, "lacks: postcopy"), "%s", s);
    g_autofree char *st = test_vm_wait_run_state(src, "VM status: running\n", 10000);
    ck_assert_str_eq(st, "VM status: running\n");
    g_autofree char *caps = test_vm_cmd(src, "info migrate_capabilities");
    ck_assert_ptr_nonnull(strstr(caps, "postcopy-ram: on\n"));
    test_vm_quit(dst);
    test_vm_quit(src);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("postcopy_e2e");
    TCase *tc = tcase_create("postcopy");
    g_autoptr(GError) err = NULL;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    if (!uffd_postcopy_probe(&err)) {
        /* Every case needs it: say so, and the binary reports SKIP. */
        test_skip("postcopy_e2e", err->message);
    } else {
        tcase_add_test(tc, refusals);
        tcase_add_test(tc, churn_thp_off);
        tcase_add_test(tc, churn_thp_on);
        tcase_add_test(tc, push_yields_to_faults);
        tcase_add_test(tc, fill_free_with_hints);
        tcase_add_test(tc, cut_and_recover);
        tcase_add_test(tc, quit_while_paused);
        tcase_add_test(tc, quit_while_recovering);
        tcase_add_test(tc, source_gone_before_page_zero);
        tcase_add_test(tc, refused_switch_resumes_source);
    }
    suite_add_tcase(s, tc);
    return test_run(s);
}
