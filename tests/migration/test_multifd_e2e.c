/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * multifd-channels: RAM spread over several connections between two
 * hintmig-vm processes, in precopy and postcopy.  Every connection must
 * carry batches, the destination must apply them in an order that one
 * connection would have given (a slow connection must not let an old copy
 * of a page overwrite a newer one), and a fault on one connection must fail
 * the migration cleanly.
 */
#include <string.h>

#include "migration/uffd_postcopy.h"
#include "migration/wire.h"
#include "net_faults.h"
#include "vm_harness.h"
#include "test_util.h"

static char *dir;
static int vm_seq;

static void setup(void) { dir = test_tmpdir(); }
static void teardown(void) { test_rmdir(dir); g_free(dir); }

static TestVm *start(const char *role, const char *ram, const char *workload, int *port)
{
    g_autofree char *name = g_strdup_printf("%s%d", role, vm_seq++);
    g_autofree char *inc = NULL;
    if (port) {
        *port = test_free_port();
        inc = g_strdup_printf("tcp:127.0.0.1:%d", *port);
    }
    const char *args[] = { "-m", ram, "-smp", "2", port ? "-incoming" : "--workload",
                           port ? inc : workload, NULL };
    TestVm *vm = test_vm_start(dir, name, args);
    if (!port) {
        g_usleep(300000);      /* let the workload get going */
    }
    return vm;
}

/* "multifd channels: N (kbytes: a, b, ...)": N is @n and each carried some. */
static void assert_spread(const char *info, unsigned n)
{
    g_autofree char *line = test_field(info, "multifd channels");
    ck_assert_msg(line, "no multifd line in: %s", info);
    ck_assert_uint_eq(g_ascii_strtoull(line, NULL, 10), n);
    const char *p = strstr(line, "(kbytes: ");
    ck_assert_msg(p, "%s", line);
    p += strlen("(kbytes: ");
    for (unsigned c = 0; c < n; c++) {
        char *end;
        uint64_t kb = g_ascii_strtoull(p, &end, 10);
        ck_assert_msg(end != p && kb > 0, "connection %u carried nothing: %s", c, line);
        p = end + (*end == ',' ? 2 : 0);
    }
}

/* Completed and verified on both sides; the guest runs on the destination. */
static void assert_done(TestVm *src, TestVm *dst, unsigned n)
{
    g_free(test_vm_wait_status(src, "completed", 120000));
    g_free(test_vm_wait_status(dst, "completed", 30000));
    g_autofree char *si = test_vm_cmd(src, "info migrate");
    g_autofree char *di = test_vm_cmd(dst, "info migrate");
    ck_assert_msg(strstr(si, "verify: OK ("), "%s", si);
    ck_assert_msg(strstr(di, "verify: OK ("), "%s", di);
    assert_spread(si, n);
    assert_spread(di, n);
    g_autofree char *st = test_vm_wait_run_state(dst, "VM status: running\n", 10000);
    ck_assert_str_eq(st, "VM status: running\n");
    test_vm_assert_guest_ok(dst);
}

/*
 * Four connections, three of them slow: batches on the slow ones lag far
 * behind the main one, so without the syncs between rounds an old copy of
 * a page would land after its newer one (the destination's verification
 * and the guest's own check both catch that).
 */
START_TEST(precopy_four_connections_three_slow)
{
    TestVm *src = start("src", "256M", "churn,wss=64M,rate=8M", NULL);
    int port, pport = test_free_port();
    TestVm *dst = start("dst", "256M", NULL, &port);
    Proxy *p = proxy_start(pport, port, PROXY_PASS, 0);
    proxy_throttle_only(p, WIRE_MULTIFD, 12 << 20);
    test_vm_cmd_ok(src, "migrate_set_parameter multifd-channels 4");
    test_vm_cmd_ok(src, "migrate_set_parameter compress-method none");
    test_vm_cmd_ok(src, "migrate_set_parameter downtime-limit 50");
    test_vm_cmd_ok(src, "migrate tcp:127.0.0.1:%d", pport);
    assert_done(src, dst, 4);
    g_autofree char *si = test_vm_cmd(src, "info migrate");
    ck_assert_uint_ge(test_field_u64(si, "rounds"), 2);   /* pages went again */
    proxy_stop(p);
    test_vm_quit(dst);
    test_vm_quit(src);
}
END_TEST

/* Turns postcopy on for both, starts a migration over @channels
 * connections to @port with the push capped at @bw, and switches at once. */
static void start_postcopy(TestVm *src, TestVm *dst, int port, unsigned channels,
                           const char *bw)
{
    test_vm_cmd_ok(dst, "migrate_set_capability postcopy-ram on");
    test_vm_cmd_ok(src, "migrate_set_capability postcopy-ram on");
    test_vm_cmd_ok(src, "migrate_set_parameter multifd-channels %u", channels);
    test_vm_cmd_ok(src, "migrate_set_parameter max-bandwidth %s", bw);
    test_vm_cmd_ok(src, "migrate -d tcp:127.0.0.1:%d", port);
    test_vm_cmd_ok(src, "migrate_start_postcopy");
    g_free(test_vm_wait_status(dst, "postcopy-active", 30000));
}

/* The postcopy push goes over the connections too. */
START_TEST(postcopy_three_connections)
{
    TestVm *src = start("src", "512M", "churn,wss=256M,rate=32M", NULL);
    int port;
    TestVm *dst = start("dst", "512M", NULL, &port);
    start_postcopy(src, dst, port, 3, "40M");
    assert_done(src, dst, 3);
    g_autofree char *di = test_vm_cmd(dst, "info migrate");
    ck_assert_uint_eq(test_field_u64(di, "postcopy remaining"), 0);
    test_vm_quit(dst);
    test_vm_quit(src);
}
END_TEST

/* A cut in postcopy pauses both sides; the recovery reconnects the main
 * connection, the page channel and the second connection, and the push
 * goes on over both. */
/* The kbytes the source's second connection carried ("multifd channels"). */
static uint64_t second_conn_kbytes(TestVm *src)
{
    g_autofree char *si = test_vm_cmd(src, "info migrate");
    g_autofree char *line = test_field(si, "multifd channels");
    const char *second = line ? strstr(line, ", ") : NULL;
    return second ? g_ascii_strtoull(second + 2, NULL, 10) : 0;
}

START_TEST(postcopy_cut_and_recover)
{
    TestVm *src = start("src", "512M", "churn,wss=256M,rate=32M", NULL);
    int port, pport = test_free_port();
    TestVm *dst = start("dst", "512M", NULL, &port);
    Proxy *p = proxy_start(pport, port, PROXY_PASS, 0);
    start_postcopy(src, dst, pport, 2, "20M");
    /* Until both connections carried some of the push. */
    for (int i = 0; i < 200 && second_conn_kbytes(src) <= 1024; i++) {
        g_usleep(50000);
    }
    proxy_stop(p);                                  /* the network cut */
    g_free(test_vm_wait_status(src, "postcopy-paused", 30000));
    g_free(test_vm_wait_status(dst, "postcopy-paused", 30000));
    uint64_t before = second_conn_kbytes(src);
    int rport = test_free_port();
    test_vm_cmd_ok(dst, "migrate_recover tcp:127.0.0.1:%d", rport);
    test_vm_cmd_ok(src, "migrate_set_parameter max-bandwidth 0");
    test_vm_cmd_ok(src, "migrate -r tcp:127.0.0.1:%d", rport);
    assert_done(src, dst, 2);
    g_autofree char *si = test_vm_cmd(src, "info migrate");
    ck_assert_uint_eq(test_field_u64(si, "postcopy recoveries"), 1);
    /* The recovery opened the second connection again, and the rest of
     * the push went on it too. */
    ck_assert_msg(second_conn_kbytes(src) > before + 1024, "%" G_GUINT64_FORMAT
                  " kbytes on the second connection before the cut: %s", before, si);
    test_vm_quit(dst);
    test_vm_quit(src);
}
END_TEST

/* A batch damaged on a further connection: refused before it is applied,
 * the migration fails on both sides, the source runs on and can go again. */
START_TEST(corrupt_batch_on_a_further_connection)
{
    TestVm *src = start("src", "256M", "churn,wss=64M,rate=4M", NULL);
    int port, pport = test_free_port();
    TestVm *dst = start("dst", "256M", NULL, &port);
    Proxy *p = proxy_start(pport, port, PROXY_PASS, 0);
    proxy_arm(p, WIRE_RAM_BATCH, WIRE_MULTIFD, false);
    test_vm_cmd_ok(src, "migrate_set_parameter multifd-channels 2");
    test_vm_cmd_ok(src, "migrate_set_parameter compress-method none");
    test_vm_cmd_ok(src, "migrate -d tcp:127.0.0.1:%d", pport);
    ck_assert(proxy_wait_held(p, 30000));
    proxy_fault_now(p, PROXY_CORRUPT);
    g_autofree char *s = test_vm_wait_status(src, "failed", 30000);
    ck_assert_msg(strstr(s, "checksum"), "%s", s);
    g_free(test_vm_wait_status(dst, "failed", 10000));
    g_autofree char *dst_st = test_vm_cmd(dst, "info status");
    ck_assert_str_eq(dst_st, "VM status: paused (inmigrate)\n");
    g_autofree char *st = test_vm_wait_run_state(src, "VM status: running\n", 10000);
    ck_assert_str_eq(st, "VM status: running\n");
    test_vm_assert_guest_ok(src);
    proxy_stop(p);
    test_vm_quit(dst);

    TestVm *dst2 = start("dst", "256M", NULL, &port);
    test_vm_cmd_ok(src, "migrate tcp:127.0.0.1:%d", port);
    assert_done(src, dst2, 2);
    test_vm_quit(dst2);
    test_vm_quit(src);
}
END_TEST

START_TEST(parameter_is_checked)
{
    TestVm *vm = start("src", "64M", "idle", NULL);
    g_autofree char *e0 = test_vm_cmd(vm, "migrate_set_parameter multifd-channels 0");
    ck_assert_str_eq(e0, "Error: multifd-channels: '0' is not a number from 1 to 16\n");
    g_autofree char *e17 = test_vm_cmd(vm, "migrate_set_parameter multifd-channels 17");
    ck_assert_str_eq(e17, "Error: multifd-channels: '17' is not a number from 1 to 16\n");
    g_autofree char *p1 = test_vm_cmd(vm, "info migrate_parameters");
    ck_assert_msg(strstr(p1, "multifd-channels: 1\n"), "%s", p1);
    test_vm_cmd_ok(vm, "migrate_set_parameter multifd-channels 16");
    g_autofree char *p16 = test_vm_cmd(vm, "info migrate_parameters");
    ck_assert_msg(strstr(p16, "multifd-channels: 16\n"), "%s", p16);
    test_vm_quit(vm);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("multifd_e2e");
    TCase *tc = tcase_create("multifd");
    g_autoptr(GError) err = NULL;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, parameter_is_checked);
    tcase_add_test(tc, precopy_four_connections_three_slow);
    tcase_add_test(tc, corrupt_batch_on_a_further_connection);
    if (uffd_postcopy_probe(&err)) {
        tcase_add_test(tc, postcopy_three_connections);
        tcase_add_test(tc, postcopy_cut_and_recover);
    } else {
        g_printerr("SKIP postcopy cases: %s\n", err->message);
    }
    suite_add_tcase(s, tc);
    return test_run(s);
}
