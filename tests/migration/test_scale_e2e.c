/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Guests bigger and busier than the other suites': a 3 GiB guest churning
 * a 2 GiB working set switched to postcopy in the middle of its bulk pass
 * (its set of pages still owed is large and scattered, which once made the
 * switch fail with "pending message ... is too large"), and a 16 GiB guest
 * that uses a few MB of it, in precopy and in postcopy.  Each ends with
 * RAM verified on both sides and the guest's own check OK on the
 * destination.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

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

static TestVm *start_dest(const char *ram, bool postcopy, int *port)
{
    *port = test_free_port();
    g_autofree char *inc = g_strdup_printf("tcp:127.0.0.1:%d", *port);
    const char *args[] = { "-m", ram, "-smp", "2", "-incoming", inc, NULL };
    TestVm *dst = start("dst", args);
    if (postcopy) {
        test_vm_cmd_ok(dst, "migrate_set_capability postcopy-ram on");
    }
    return dst;
}

/* Polls @vm's "info migrate" until @key's number reaches @min. */
static void wait_field_at_least(TestVm *vm, const char *cmd, const char *key,
                                uint64_t min, int timeout_ms)
{
    gint64 end = g_get_monotonic_time() + timeout_ms * 1000ll;
    for (;;) {
        g_autofree char *out = test_vm_cmd(vm, "%s", cmd);
        g_autofree char *v = test_field(out, key);
        if (v && g_ascii_strtoull(v, NULL, 10) >= min) {
            return;
        }
        ck_assert_msg(g_get_monotonic_time() < end, "'%s' never reached %s >= %" PRIu64
                      ": %s", cmd, key, min, out);
        g_usleep(50000);
    }
}

/*
 * Polls "info guest" until free memory is at most @full_mib (the working
 * set is in), or, past @patience_ms, at most @min_mib: a guest slowed down
 * (under ASan it fills a few MB a second) still has a large working set
 * being written all over when it migrates.
 */
static void wait_working_set(TestVm *vm, uint64_t full_mib, uint64_t min_mib,
                             int patience_ms, int timeout_ms)
{
    gint64 t0 = g_get_monotonic_time();
    for (;;) {
        g_autofree char *out = test_vm_cmd(vm, "info guest");
        uint64_t free_mib = test_field_u64(out, "free memory");
        gint64 ms = (g_get_monotonic_time() - t0) / 1000;
        if (free_mib <= full_mib || (free_mib <= min_mib && ms >= patience_ms)) {
            return;
        }
        ck_assert_msg(ms < timeout_ms, "working set never filled: %s", out);
        g_usleep(100000);
    }
}

/* Both sides completed and verified; the guest runs on the destination. */
static void assert_done(TestVm *src, TestVm *dst, int timeout_ms)
{
    g_free(test_vm_wait_status(src, "completed", timeout_ms));
    g_free(test_vm_wait_status(dst, "completed", timeout_ms));
    g_autofree char *si = test_vm_cmd(src, "info migrate");
    g_autofree char *di = test_vm_cmd(dst, "info migrate");
    ck_assert_msg(strstr(si, "verify: OK ("), "%s", si);
    ck_assert_msg(strstr(di, "verify: OK ("), "%s", di);
    g_autofree char *st = test_vm_wait_run_state(dst, "VM status: running\n", 10000);
    ck_assert_str_eq(st, "VM status: running\n");
    test_vm_assert_guest_ok(dst);
}

START_TEST(scattered_postcopy_in_the_bulk_pass)
{
    const char *args[] = { "-m", "3G", "-smp", "2", "--workload",
                           "churn,wss=2G,rate=150M", NULL };
    TestVm *src = start("src", args);
    int port;
    TestVm *dst = start_dest("3G", true, &port);
    /* 3072 MiB less the 2 GiB working set and the page metadata; at
     * least 512 MiB of it. */
    wait_working_set(src, 1024, 2560, 60000, 600000);
    test_vm_cmd_ok(src, "migrate_set_capability postcopy-ram on");
    test_vm_cmd_ok(src, "migrate_set_parameter max-bandwidth 400M");
    test_vm_cmd_ok(src, "migrate -d tcp:127.0.0.1:%d", port);
    /* In the bulk pass, with most of the working set still to send. */
    wait_field_at_least(src, "info migrate", "transferred ram", 64 * 1024, 60000);
    g_autofree char *before = test_vm_cmd(src, "info migrate");
    ck_assert_msg(strstr(before, "Migration status: active"), "%s", before);
    ck_assert_uint_gt(test_field_u64(before, "remaining ram"), 256 * 1024);
    test_vm_cmd_ok(src, "migrate_start_postcopy");
    g_free(test_vm_wait_status(dst, "postcopy-active", 60000));
    assert_done(src, dst, 300000);
    g_autofree char *di = test_vm_cmd(dst, "info migrate");
    ck_assert_uint_eq(test_field_u64(di, "postcopy remaining"), 0);
    test_vm_quit(dst);
    test_vm_quit(src);
}
END_TEST

static void sparse_16g(bool postcopy)
{
    const char *args[] = { "-m", "16G", "-smp", "2", "--workload", "idle", NULL };
    TestVm *src = start("src", args);
    int port;
    TestVm *dst = start_dest("16G", postcopy, &port);
    if (postcopy) {
        test_vm_cmd_ok(src, "migrate_set_capability postcopy-ram on");
    }
    test_vm_cmd_ok(src, "migrate -d tcp:127.0.0.1:%d", port);
    if (postcopy) {
        test_vm_cmd_ok(src, "migrate_start_postcopy");
    }
    assert_done(src, dst, 300000);
    g_autofree char *si = test_vm_cmd(src, "info migrate");
    ck_assert_uint_eq(test_field_u64(si, "total ram"), 16ull << 20);
    /* A few MB in use: what travels is nowhere near the address space. */
    ck_assert_uint_lt(test_field_u64(si, "wire bytes"), 256 * 1024);
    test_vm_quit(dst);
    test_vm_quit(src);
}

START_TEST(sparse_16g_precopy) { sparse_16g(false); }
END_TEST

START_TEST(sparse_16g_postcopy) { sparse_16g(true); }
END_TEST

int main(void)
{
    Suite *s = suite_create("scale_e2e");
    TCase *tc = tcase_create("scale");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, scattered_postcopy_in_the_bulk_pass);
    tcase_add_test(tc, sparse_16g_precopy);
    tcase_add_test(tc, sparse_16g_postcopy);
    suite_add_tcase(s, tc);
    return test_run(s);
}
