/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Precopy between two hintmig-vm processes on loopback: workloads, THP, and
 * every failure case.  After a failure the source must still run a healthy
 * guest, say why in "info migrate", and migrate fine the next time; the
 * destination must never run a half-received guest.
 */
#include <signal.h>
#include <string.h>

#include "migration/wire.h"
#include "net_faults.h"
#include "vm_harness.h"
#include "test_util.h"

static char *dir;
static int vm_seq;

static void setup(void)
{
    dir = test_tmpdir();
}

static void teardown(void)
{
    test_rmdir(dir);
    g_free(dir);
}

static TestVm *start(const char *role, const char *const *args)
{
    g_autofree char *name = g_strdup_printf("%s%d", role, vm_seq++);
    return test_vm_start(dir, name, args);
}

/* A destination for @src_ram/@smp listening on @port (returned). */
static TestVm *start_dest(const char *ram, const char *smp, const char *thp,
                          int *port)
{
    *port = test_free_port();
    g_autofree char *inc = g_strdup_printf("tcp:127.0.0.1:%d", *port);
    const char *args[] = { "-m", ram, "-smp", smp, "--thp", thp, "-incoming",
                           inc, NULL };
    return start("dst", args);
}

/* @vm runs, or does within 10 s: run states follow the migration's status. */
static void assert_running(TestVm *vm)
{
    g_autofree char *st = test_vm_wait_run_state(vm, "VM status: running\n", 10000);
    ck_assert_str_eq(st, "VM status: running\n");
}

/* Migrates @src to a fresh destination and checks everything about it. */
static void migrate_ok(TestVm *src, const char *ram, const char *smp,
                       const char *thp)
{
    int port;
    TestVm *dst = start_dest(ram, smp, thp, &port);
    g_autofree char *out = test_vm_cmd(src, "migrate tcp:127.0.0.1:%d", port);
    ck_assert_msg(!strcmp(out, ""), "migrate said: %s", out);
    g_autofree char *info = test_vm_cmd(src, "info migrate");
    ck_assert_msg(strstr(info, "Migration status: completed\n"), "%s", info);
    ck_assert_msg(strstr(info, "verify: OK ("), "%s", info);
    ck_assert_ptr_nonnull(strstr(info, "dirty tracking: "));
    g_autofree char *st = test_vm_wait_run_state(src, "VM status: paused (postmigrate)\n", 10000);
    ck_assert_str_eq(st, "VM status: paused (postmigrate)\n");
    /* The destination completes on COMMIT, a moment after the source. */
    g_free(test_vm_wait_status(dst, "completed", 10000));
    assert_running(dst);
    test_vm_assert_guest_ok(dst);
    /* The guest keeps working on the destination. */
    g_autofree char *g1 = test_vm_cmd(dst, "info guest");
    g_usleep(200000);
    g_autofree char *g2 = test_vm_cmd(dst, "info guest");
    g_autofree char *w1 = test_field(g1, "page writes");
    g_autofree char *w2 = test_field(g2, "page writes");
    g_autofree char *wl = test_field(g2, "workload");
    if (!g_str_has_prefix(wl, "idle")) {
        ck_assert_msg(g_ascii_strtoull(w2, NULL, 10) > g_ascii_strtoull(w1, NULL, 10),
                      "guest stalled on the destination: %s -> %s", w1, w2);
    }
    test_vm_quit(dst);
}

static TestVm *start_src(const char *ram, const char *smp, const char *thp,
                         const char *workload)
{
    const char *args[] = { "-m", ram, "-smp", smp, "--thp", thp, "--workload",
                           workload, NULL };
    TestVm *src = start("src", args);
    g_usleep(300000);      /* let the workload get going */
    return src;
}

/* After a failed or cancelled migration: all is well and it can go again. */
static void assert_source_recovers(TestVm *src, const char *ram, const char *why)
{
    g_autofree char *info = test_vm_cmd(src, "info migrate");
    g_autofree char *st = test_field(info, "Migration status");
    ck_assert_msg(strstr(st, why), "expected '%s' in status: %s", why, st);
    assert_running(src);
    test_vm_assert_guest_ok(src);
    g_free(test_vm_cmd(src, "migrate_set_parameter max-bandwidth 0"));
    migrate_ok(src, ram, "1", "off");
}

/* ---- workloads ---- */

START_TEST(idle_guest)
{
    TestVm *src = start_src("256M", "1", "off", "idle");
    migrate_ok(src, "256M", "1", "off");
    test_vm_quit(src);
}
END_TEST

START_TEST(churn_guest_thp_off)
{
    TestVm *src = start_src("256M", "2", "off", "churn,wss=64M,rate=8M");
    migrate_ok(src, "256M", "2", "off");
    test_vm_quit(src);
}
END_TEST

START_TEST(churn_guest_thp_on)
{
    TestVm *src = start_src("256M", "2", "on", "churn,wss=64M,rate=8M");
    migrate_ok(src, "256M", "2", "on");
    test_vm_quit(src);
}
END_TEST

START_TEST(fill_free_guest)
{
    TestVm *src = start_src("256M", "2", "off", "fill-free,fill=128M");
    g_usleep(300000);
    migrate_ok(src, "256M", "2", "off");
    test_vm_quit(src);
}
END_TEST

START_TEST(raw_when_compression_is_off)
{
    TestVm *src = start_src("256M", "1", "off", "churn,wss=32M,rate=1M");
    g_free(test_vm_cmd(src, "migrate_set_parameter compress-method none"));
    migrate_ok(src, "256M", "1", "off");
    g_autofree char *info = test_vm_cmd(src, "info migrate");
    g_autofree char *c = test_field(info, "compressed");
    ck_assert_msg(strstr(c, "(100.0%)"), "%s", c);
    g_autofree char *how = test_field(info, "compression");
    ck_assert_str_eq(how, "none (compress-method none)");
    test_vm_quit(src);
}
END_TEST

/*
 * compress-method auto (the default) over a link held to 16 MiB/s: the
 * source measures it and compresses, and info migrate says what it chose,
 * why, and how many batches went each way.
 */
START_TEST(auto_compression_says_what_and_why)
{
    TestVm *src = start_src("256M", "1", "off", "churn,wss=32M,rate=1M");
    g_autofree char *params = test_vm_cmd(src, "info migrate_parameters");
    ck_assert_msg(strstr(params, "compress-method: auto\n"), "%s", params);
    g_free(test_vm_cmd(src, "migrate_set_parameter max-bandwidth 16M"));
    migrate_ok(src, "256M", "1", "off");
    g_autofree char *info = test_vm_cmd(src, "info migrate");
    g_autofree char *how = test_field(info, "compression");
    ck_assert_msg(g_str_has_prefix(how, "auto: ") && strstr(how, "zstd") &&
                  strstr(how, "(link "), "%s", how);
    g_autofree char *mix = test_field(info, "compression batches");
    ck_assert_msg(strstr(mix, "zstd") && strstr(mix, "(probes "), "%s", mix);
    /* most of the data went compressed: well under the raw size */
    g_autofree char *c = test_field(info, "compressed");
    const char *pct = strrchr(c, '(');
    ck_assert_msg(pct && g_ascii_strtod(pct + 1, NULL) < 70, "%s", c);
    test_vm_quit(src);
}
END_TEST

/* ---- failures ---- */

/*
 * Starts a migration slowed to 4 MiB/s from a churning source to a real
 * destination, and returns once it has been active for a moment.
 */
static TestVm *start_slow_migration(TestVm **dst_out)
{
    TestVm *src = start_src("256M", "1", "off", "churn,wss=64M,rate=4M");
    int port;
    *dst_out = start_dest("256M", "1", "off", &port);
    g_free(test_vm_cmd(src, "migrate_set_parameter max-bandwidth 4M"));
    g_free(test_vm_cmd(src, "migrate -d tcp:127.0.0.1:%d", port));
    g_free(test_vm_wait_status(src, "active", 5000));
    g_usleep(300000);
    return src;
}

START_TEST(cancel_in_setup)
{
    TestVm *src = start_src("256M", "1", "off", "churn,wss=32M,rate=4M");
    int port = test_free_port();
    FakeDest *f = fake_dest_start(port, FAKE_NO_HELLO_REPLY);
    g_free(test_vm_cmd(src, "migrate -d tcp:127.0.0.1:%d", port));
    g_free(test_vm_wait_status(src, "setup", 5000));
    g_autofree char *c = test_vm_cmd(src, "migrate_cancel");
    ck_assert_str_eq(c, "");
    g_free(test_vm_wait_status(src, "cancelled", 10000));
    fake_dest_stop(f);
    assert_source_recovers(src, "256M", "cancelled");
    test_vm_quit(src);
}
END_TEST

START_TEST(cancel_while_active)
{
    TestVm *dst;
    TestVm *src = start_slow_migration(&dst);
    g_autofree char *c = test_vm_cmd(src, "migrate_cancel");
    ck_assert_str_eq(c, "");
    g_free(test_vm_wait_status(src, "cancelled", 10000));
    g_free(test_vm_wait_status(dst, "failed", 10000));
    g_autofree char *dst_st = test_vm_wait_run_state(dst, "VM status: paused (inmigrate)\n", 10000);
    ck_assert_str_eq(dst_st, "VM status: paused (inmigrate)\n");
    test_vm_quit(dst);
    assert_source_recovers(src, "256M", "cancelled");
    test_vm_quit(src);
}
END_TEST

START_TEST(cancel_in_stop_and_copy)
{
    TestVm *src = start_src("256M", "1", "off", "churn,wss=32M,rate=4M");
    int port = test_free_port();
    FakeDest *f = fake_dest_start(port, FAKE_NO_COMPLETE_ACK);
    g_free(test_vm_cmd(src, "migrate -d tcp:127.0.0.1:%d", port));
    g_free(test_vm_wait_status(src, "device", 10000));
    g_autofree char *st = test_vm_wait_run_state(src, "VM status: paused (finish-migrate)\n", 10000);
    ck_assert_str_eq(st, "VM status: paused (finish-migrate)\n");
    for (int i = 0; i < 250 && !fake_dest_seen(f, WIRE_COMPLETE); i++) {
        g_usleep(20000);
    }
    ck_assert(fake_dest_seen(f, WIRE_COMPLETE));
    g_autofree char *c = test_vm_cmd(src, "migrate_cancel");
    ck_assert_str_eq(c, "");
    g_free(test_vm_wait_status(src, "cancelled", 10000));
    ck_assert(!fake_dest_seen(f, WIRE_COMMIT));    /* it never got the guest */
    fake_dest_stop(f);
    assert_source_recovers(src, "256M", "cancelled");
    test_vm_quit(src);
}
END_TEST

START_TEST(destination_killed)
{
    TestVm *dst;
    TestVm *src = start_slow_migration(&dst);
    test_vm_kill(dst);
    g_autofree char *s = test_vm_wait_status(src, "failed", 30000);
    ck_assert_msg(strstr(s, "connection") || strstr(s, "closed"), "%s", s);
    assert_source_recovers(src, "256M", "failed");
    test_vm_quit(src);
}
END_TEST

/* Runs a migration through a faulty proxy; the destination must fail. */
static void through_proxy(ProxyMode mode, uint64_t offset, const char *why,
                          const char *compress)
{
    TestVm *src = start_src("256M", "1", "off", "churn,wss=64M,rate=4M");
    g_free(test_vm_cmd(src, "migrate_set_parameter compress-method %s", compress));
    int port;
    TestVm *dst = start_dest("256M", "1", "off", &port);
    int pport = test_free_port();
    Proxy *p = proxy_start(pport, port, mode, offset);
    g_free(test_vm_cmd(src, "migrate -d tcp:127.0.0.1:%d", pport));
    g_autofree char *s = test_vm_wait_status(src, "failed", 30000);
    ck_assert_msg(!why || strstr(s, why), "expected '%s' in: %s", why, s);
    g_autofree char *ds = test_vm_wait_status(dst, "failed", 10000);
    g_autofree char *dst_st = test_vm_cmd(dst, "info status");
    ck_assert_msg(!strcmp(dst_st, "VM status: paused (inmigrate)\n"),
                  "destination after '%s': %s", ds, dst_st);
    proxy_stop(p);
    test_vm_quit(dst);
    g_free(test_vm_cmd(src, "migrate_set_parameter compress-method zstd"));
    assert_source_recovers(src, "256M", "failed");
    test_vm_quit(src);
}

START_TEST(connection_reset)
{
    through_proxy(PROXY_RESET, 3u << 20, NULL, "zstd");
}
END_TEST

START_TEST(truncated_stream)
{
    through_proxy(PROXY_TRUNCATE, 2u << 20, NULL, "zstd");
}
END_TEST

START_TEST(corrupted_stream)
{
    /* Inside the RAM batches, past the handshake. */
    through_proxy(PROXY_CORRUPT, (1u << 20) + 4321, "destination", "zstd");
}
END_TEST

START_TEST(corruption_in_raw_page_data)
{
    /* Raw pages: a flipped byte inside page data decodes fine; the batch's
     * checksum refuses it before it is placed (the digests at the end
     * would also see it, but in postcopy only after the guest read it). */
    through_proxy(PROXY_CORRUPT, (3u << 20) + 777, "fails its checksum", "none");
}
END_TEST

START_TEST(destination_ram_differs)
{
    TestVm *src = start_src("256M", "1", "off", "churn,wss=32M,rate=4M");
    int port;
    TestVm *dst = start_dest("512M", "1", "off", &port);
    g_autofree char *out = test_vm_cmd(src, "migrate tcp:127.0.0.1:%d", port);
    ck_assert_msg(strstr(out, "destination refused") && strstr(out, "256 MiB") &&
                  strstr(out, "512 MiB"), "%s", out);
    g_autofree char *ds = test_vm_wait_status(dst, "failed", 5000);
    ck_assert_msg(strstr(ds, "refused"), "%s", ds);
    test_vm_quit(dst);
    assert_source_recovers(src, "256M", "refused");
    test_vm_quit(src);
}
END_TEST

START_TEST(monitor_commands)
{
    TestVm *src = start_src("128M", "1", "off", "idle");
    g_autofree char *caps = test_vm_cmd(src, "info migrate_capabilities");
    ck_assert_ptr_nonnull(strstr(caps, "verify: on\n"));
    g_autofree char *e1 = test_vm_cmd(src, "migrate_set_capability verify maybe");
    ck_assert_str_eq(e1, "Error: 'maybe' is not on or off\n");
    g_autofree char *e2 = test_vm_cmd(src, "migrate_set_capability warp-drive on");
    ck_assert(g_str_has_prefix(e2, "Error: unknown capability 'warp-drive'"));
    g_autofree char *e3 = test_vm_cmd(src, "migrate_set_parameter compress-level 99");
    ck_assert(g_str_has_prefix(e3, "Error: compress-level: '99' is not a number"));
    g_autofree char *e4 = test_vm_cmd(src, "migrate_set_parameter compress-method lz4");
    ck_assert(g_str_has_prefix(e4, "Error: compress-method"));
    g_autofree char *e5 = test_vm_cmd(src, "migrate ftp://x");
    ck_assert(g_str_has_prefix(e5, "Error: unsupported migration URI"));
    g_autofree char *e6 = test_vm_cmd(src, "migrate tcp:127.0.0.1:99999");
    ck_assert(g_str_has_prefix(e6, "Error: bad migration URI"));
    static const char *const bad_uris[] = {
        "tcp:nohost", "tcp:[::1", "tcp::", "tcp:1.2.3.4:0", "tcp:", "tcp:h:12x",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad_uris); i++) {
        g_autofree char *e = test_vm_cmd(src, "migrate %s", bad_uris[i]);
        ck_assert_msg(g_str_has_prefix(e, "Error: bad migration URI"), "%s: %s",
                      bad_uris[i], e);
    }
    assert_running(src);
    g_autofree char *e7 = test_vm_cmd(src, "migrate_cancel");
    ck_assert(g_str_has_prefix(e7, "Error: no outgoing migration"));
    g_autofree char *e8 = test_vm_cmd(src, "migrate_incoming tcp:0:5555");
    ck_assert(g_str_has_prefix(e8, "Error: '-incoming' was not specified"));
    g_free(test_vm_cmd(src, "migrate_set_parameter downtime-limit 50"));
    g_free(test_vm_cmd(src, "migrate_set_parameter max-bandwidth 1G"));
    g_autofree char *params = test_vm_cmd(src, "info migrate_parameters");
    ck_assert_ptr_nonnull(strstr(params, "downtime-limit: 50 ms\n"));
    ck_assert_ptr_nonnull(strstr(params, "max-bandwidth: 1073741824 bytes/second\n"));
    /* Nothing to connect to: a clear failure, and the VM runs on. */
    int port = test_free_port();
    g_autofree char *e9 = test_vm_cmd(src, "migrate tcp:127.0.0.1:%d", port);
    ck_assert_msg(strstr(e9, "cannot connect"), "%s", e9);
    assert_running(src);
    test_vm_quit(src);
}
END_TEST

/* A small churning source, and a destination started with -incoming defer. */
static void start_deferred_pair(TestVm **src, TestVm **dst)
{
    const char *args[] = { "-m", "128M", "-incoming", "defer", NULL };
    *src = start_src("128M", "1", "off", "churn,wss=16M,rate=2M");
    *dst = start("dst", args);
}

START_TEST(incoming_defer)
{
    TestVm *src, *dst;
    start_deferred_pair(&src, &dst);
    g_autofree char *st = test_vm_wait_run_state(dst, "VM status: paused (inmigrate)\n", 10000);
    ck_assert_str_eq(st, "VM status: paused (inmigrate)\n");
    g_autofree char *c = test_vm_cmd(dst, "cont");
    ck_assert(g_str_has_prefix(c, "Error: an incoming migration has not completed"));
    int port = test_free_port();
    g_autofree char *mi = test_vm_cmd(dst, "migrate_incoming tcp:127.0.0.1:%d", port);
    ck_assert_str_eq(mi, "");
    g_autofree char *out = test_vm_cmd(src, "migrate tcp:127.0.0.1:%d", port);
    ck_assert_str_eq(out, "");
    assert_running(dst);
    test_vm_assert_guest_ok(dst);
    g_autofree char *again = test_vm_cmd(dst, "migrate_incoming tcp:127.0.0.1:%d", port);
    ck_assert(g_str_has_prefix(again, "Error: the incoming migration has already"));
    test_vm_quit(dst);
    test_vm_quit(src);
}
END_TEST

/* libvirt's pause-before-switchover: the VM stops, then waits for migrate_continue. */
START_TEST(pause_before_switchover)
{
    TestVm *src = start_src("128M", "1", "off", "churn,wss=16M,rate=2M");
    int port;
    TestVm *dst = start_dest("128M", "1", "off", &port);
    g_autofree char *e0 = test_vm_cmd(src, "migrate_continue pre-switchover");
    ck_assert_msg(g_str_has_prefix(e0, "Error: Migration not in expected state"), "%s", e0);
    g_free(test_vm_cmd(src, "migrate_set_capability pause-before-switchover on"));
    g_autofree char *caps = test_vm_cmd(src, "info migrate_capabilities");
    ck_assert(strstr(caps, "pause-before-switchover: on"));
    g_free(test_vm_cmd(src, "migrate -d tcp:127.0.0.1:%d", port));
    g_free(test_vm_wait_status(src, "pre-switchover", 60000));
    g_autofree char *st = test_vm_wait_run_state(src, "VM status: paused (finish-migrate)\n", 10000);
    ck_assert_str_eq(st, "VM status: paused (finish-migrate)\n");
    g_autofree char *e1 = test_vm_cmd(src, "migrate_continue active");
    ck_assert(g_str_has_prefix(e1, "Error: migrate_continue: state 'active'"));
    g_autofree char *c = test_vm_cmd(src, "migrate_continue pre-switchover");
    ck_assert_str_eq(c, "");
    g_free(test_vm_wait_status(src, "completed", 60000));
    assert_running(dst);
    test_vm_assert_guest_ok(dst);
    test_vm_quit(dst);
    test_vm_quit(src);
}
END_TEST

/* unix:PATH, as libvirt uses for migrations on one host. */
START_TEST(over_unix_socket)
{
    TestVm *src, *dst;
    start_deferred_pair(&src, &dst);
    g_autofree char *uri = g_strdup_printf("unix:%s/mig.sock", dir);
    g_autofree char *mi = test_vm_cmd(dst, "migrate_incoming %s", uri);
    ck_assert_str_eq(mi, "");
    g_autofree char *out = test_vm_cmd(src, "migrate %s", uri);
    ck_assert_str_eq(out, "");
    g_autofree char *info = test_vm_cmd(src, "info migrate");
    ck_assert_msg(strstr(info, "verify: OK"), "%s", info);
    assert_running(dst);
    test_vm_assert_guest_ok(dst);
    g_autofree char *bad = test_vm_cmd(src, "migrate unix:");
    ck_assert(g_str_has_prefix(bad, "Error: bad migration URI"));
    test_vm_quit(dst);
    test_vm_quit(src);
}
END_TEST

/* Polls @vm's "info migrate" until it has done @rounds rounds; returns it. */
static char *wait_rounds(TestVm *vm, uint64_t rounds, int timeout_ms)
{
    gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    for (;;) {
        char *info = test_vm_cmd(vm, "info migrate");
        g_autofree char *r = test_field(info, "rounds");
        if ((r && g_ascii_strtoull(r, NULL, 10) >= rounds) ||
            !(strstr(info, "Migration status: active") ||
              strstr(info, "Migration status: setup"))) {
            return info;
        }
        ck_assert_msg(g_get_monotonic_time() < end, "not %" G_GUINT64_FORMAT
                      " rounds in %d ms: %s", rounds, timeout_ms, info);
        g_free(info);
        g_usleep(100000);
    }
}

/*
 * A guest that dirties 32 MB/s of a 4 MiB working set over a 2 MiB/s link
 * does not converge by itself: four rounds on, the estimate is still over
 * the limit.  With auto-converge the vCPUs are throttled (60%, then 80%,
 * then 99%) until it converges; it completes, verified, and the throttle
 * is lifted at the end.
 */
START_TEST(auto_converge_throttles_a_busy_guest)
{
    TestVm *src = start_src("128M", "2", "off", "churn,wss=4M,rate=16M");
    g_free(test_vm_cmd(src, "migrate_set_parameter max-bandwidth 2M"));
    g_free(test_vm_cmd(src, "migrate_set_parameter cpu-throttle-initial 60"));
    g_free(test_vm_cmd(src, "migrate_set_parameter cpu-throttle-increment 20"));
    g_autofree char *params = test_vm_cmd(src, "info migrate_parameters");
    ck_assert_msg(strstr(params, "cpu-throttle-initial: 60%\n") &&
                  strstr(params, "cpu-throttle-increment: 20%\n") &&
                  strstr(params, "max-cpu-throttle: 99%\n"), "%s", params);
    g_autofree char *bad = test_vm_cmd(src, "migrate_set_parameter max-cpu-throttle 100");
    ck_assert_msg(strstr(bad, "not a number from 1 to 99"), "%s", bad);

    int port;
    TestVm *dst = start_dest("128M", "2", "off", &port);
    g_autofree char *o = test_vm_cmd(src, "migrate -d tcp:127.0.0.1:%d", port);
    ck_assert_str_eq(o, "");
    g_autofree char *info = wait_rounds(src, 4, 60000);
    ck_assert_msg(strstr(info, "Migration status: active\n"), "%s", info);
    ck_assert_msg(!strstr(info, "cpu throttle"), "%s", info);
    ck_assert_uint_gt(test_field_u64(info, "expected downtime"), 300);
    g_free(test_vm_cmd(src, "migrate_cancel"));
    g_free(test_vm_wait_status(src, "cancelled", 10000));
    test_vm_quit(dst);

    g_autofree char *on = test_vm_cmd(src, "migrate_set_capability auto-converge on");
    ck_assert_str_eq(on, "");
    migrate_ok(src, "128M", "2", "off");
    g_autofree char *done = test_vm_cmd(src, "info migrate");
    g_autofree char *thr = test_field(done, "cpu throttle");
    ck_assert_msg(thr && g_str_has_prefix(thr, "0% now, "), "%s", done);
    unsigned most = (unsigned)g_ascii_strtoull(thr + strlen("0% now, "), NULL, 10);
    ck_assert_msg(most == 60 || most == 80 || most == 99, "%s", thr);
    test_vm_quit(src);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("precopy_e2e");
    TCase *ok = tcase_create("workloads");
    TCase *bad = tcase_create("failures");

    tcase_add_checked_fixture(ok, setup, teardown);
    tcase_add_checked_fixture(bad, setup, teardown);
    tcase_set_timeout(ok, 180);
    tcase_set_timeout(bad, 180);
    tcase_add_test(ok, idle_guest);
    tcase_add_test(ok, churn_guest_thp_off);
    tcase_add_test(ok, churn_guest_thp_on);
    tcase_add_test(ok, fill_free_guest);
    tcase_add_test(ok, raw_when_compression_is_off);
    tcase_add_test(ok, auto_compression_says_what_and_why);
    tcase_add_test(ok, monitor_commands);
    tcase_add_test(ok, incoming_defer);
    tcase_add_test(ok, over_unix_socket);
    tcase_add_test(ok, pause_before_switchover);
    tcase_add_test(ok, auto_converge_throttles_a_busy_guest);
    tcase_add_test(bad, cancel_in_setup);
    tcase_add_test(bad, cancel_while_active);
    tcase_add_test(bad, cancel_in_stop_and_copy);
    tcase_add_test(bad, destination_killed);
    tcase_add_test(bad, connection_reset);
    tcase_add_test(bad, truncated_stream);
    tcase_add_test(bad, corrupted_stream);
    tcase_add_test(bad, corruption_in_raw_page_data);
    tcase_add_test(bad, destination_ram_differs);
    suite_add_tcase(s, ok);
    suite_add_tcase(s, bad);
    return test_run(s);
}
