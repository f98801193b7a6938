/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig-vm end to end: command line, monitor over its socket, run states,
 * daemonizing, RAM images, and a guest moved by copying RAM and vCPU state
 * into a second process.
 */
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "hintmig/hintmig.h"
#include "hmp/monitor.h"
#include "vm/guest_ram.h"
#include "vm_harness.h"
#include "test_util.h"

static char *dir;

static void setup(void)
{
    dir = test_tmpdir();
}

static void teardown(void)
{
    test_rmdir(dir);
    g_free(dir);
}

/* Connects a raw client to @sock; -1 on failure. */
static int raw_client(const char *sock)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_strlcpy(sa.sun_path, sock, sizeof(sa.sun_path));
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/*
 * Monitor clients that leave at once, or right after a command, never take
 * the VM down (SIGPIPE), and a client that connects as the last one is
 * closing is served, not turned away.
 */
START_TEST(monitor_clients_come_and_go)
{
    const char *args[] = { "-m", "64M", NULL };
    TestVm *vm = test_vm_start(dir, "clients", args);
    hmp_client_free(vm->hmp);                   /* the harness steps aside */
    vm->hmp = NULL;
    for (int i = 0; i < 20; i++) {              /* connect and close */
        int fd = raw_client(vm->sock);
        ck_assert_int_ge(fd, 0);
        close(fd);
    }
    for (int i = 0; i < 5; i++) {               /* a command, then gone */
        int fd = raw_client(vm->sock);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, "info status\n", 12), 12);
        close(fd);
    }
    for (int i = 0; i < 30; i++) {              /* one after another */
        g_autoptr(GError) err = NULL;
        HmpClient *c = hmp_client_connect(vm->sock, 10000, &err);
        ck_assert_msg(c, "client %d: %s", i, err->message);
        g_autofree char *out = hmp_client_command(c, "info status", 10000, &err);
        ck_assert_msg(out && !strcmp(out, "VM status: running\n"), "client %d: %s", i,
                      out ? out : err->message);
        hmp_client_free(c);
    }
    g_autoptr(GError) err = NULL;
    vm->hmp = hmp_client_connect(vm->sock, 10000, &err);
    ck_assert_msg(vm->hmp, "%s", err ? err->message : "");
    test_vm_quit(vm);                           /* still alive: exits 0 */
}
END_TEST

/*
 * Connects a client that sends commands and never reads the replies, and
 * returns it once its socket will take no more: the VM has stopped reading
 * it.  Before replies were queued per client, the main loop blocked in
 * write() on such a client and the monitor, quit and SIGTERM all died.
 */
static int hog_client(const char *sock)
{
    int fd = raw_client(sock);
    size_t sent = 0;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    for (;;) {
        ssize_t n = write(fd, "help\n", 5);
        if (n < 0 && errno == EAGAIN) {
            break;
        }
        ck_assert_msg(n > 0, "write: %s", g_strerror(errno));
        sent += n;
        ck_assert_msg(sent < (256u << 20),
                      "the VM read %zu bytes of commands whose replies "
                      "nobody read", sent);
    }
    return fd;
}

START_TEST(monitor_client_that_never_reads)
{
    const char *args[] = { "-m", "64M", NULL };
    TestVm *vm = test_vm_start(dir, "hog", args);
    int hog = hog_client(vm->sock);

    for (int i = 0; i < 3; i++) {   /* the harness's client, and new ones */
        g_autoptr(GError) err = NULL;
        HmpClient *c = i ? hmp_client_connect(vm->sock, 10000, &err) : vm->hmp;
        ck_assert_msg(c, "%s", err ? err->message : "");
        g_autofree char *out = hmp_client_command(c, "info status", 10000, &err);
        ck_assert_msg(out && !strcmp(out, "VM status: running\n"), "client %d: %s",
                      i, out ? out : err->message);
        if (i) {
            hmp_client_free(c);
        }
    }
    test_vm_quit(vm);    /* quit works, the hog still attached */
    close(hog);

    vm = test_vm_start(dir, "hog2", args);
    hog = hog_client(vm->sock);
    test_vm_term(vm);    /* and so does SIGTERM */
    close(hog);
}
END_TEST

/* Reads from @fd until @want has arrived; false after 10 s. */
static bool read_until(int fd, const char *want)
{
    g_autoptr(GString) got = g_string_new(NULL);
    char buf[512];

    while (!strstr(got->str, want)) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 10000) != 1) {
            return false;
        }
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0) {
            return false;
        }
        g_string_append_len(got, buf, n);
    }
    return true;
}

/* Sixteen clients are served at once; more wait their turn, none is lost. */
START_TEST(monitor_many_clients_at_once)
{
    const char *args[] = { "-m", "64M", NULL };
    TestVm *vm = test_vm_start(dir, "many", args);
    int fds[24];

    hmp_client_free(vm->hmp);             /* the harness steps aside */
    vm->hmp = NULL;

    for (int i = 0; i < 24; i++) {
        fds[i] = raw_client(vm->sock);
        ck_assert_int_ge(fds[i], 0);
        ck_assert_int_eq(write(fds[i], "info status\n", 12), 12);
    }
    for (int i = 0; i < 16; i++) {     /* all answered, nobody has left yet */
        ck_assert_msg(read_until(fds[i], "VM status: running\n"),
                      "client %d got no answer", i);
    }
    for (int i = 16; i < 24; i++) {    /* the rest once others leave */
        close(fds[i - 16]);
        ck_assert_msg(read_until(fds[i], "VM status: running\n"),
                      "client %d got no answer", i);
    }
    for (int i = 16; i < 24; i++) {
        close(fds[i]);
    }
    g_autoptr(GError) err = NULL;
    vm->hmp = hmp_client_connect(vm->sock, 10000, &err);
    ck_assert_msg(vm->hmp, "%s", err ? err->message : "");
    test_vm_quit(vm);
}
END_TEST

/*
 * Monitor abuse: every command with bad arguments, bytes of every value,
 * a line far over the limit.  Each gets an answer, and the VM and its guest
 * are untouched.
 */
START_TEST(monitor_abuse_leaves_the_vm_untouched)
{
    const char *args[] = { "-m", "64M", "--workload", "churn,wss=8M,rate=2M", NULL };
    TestVm *vm = test_vm_start(dir, "abuse", args);
    static const char *const bad[] = {
        "x", "-1", "18446744073709551616", "\"unterminated", "tcp:", "unix:", "-d",
        "-r", "on off maybe", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17",
    };
    g_autofree char *help = test_vm_cmd(vm, "help");
    g_auto(GStrv) lines = g_strsplit(help, "\n", -1);
    unsigned tried = 0;
    for (unsigned i = 0; lines[i]; i++) {
        g_autofree char *name = g_strndup(lines[i], strcspn(lines[i], "| "));
        if (!*name) {
            continue;
        }
        for (unsigned j = 0; j < G_N_ELEMENTS(bad); j++) {
            g_autofree char *out = test_vm_cmd(vm, "%s %s", name, bad[j]);
            /* help and info list, whatever they are given; the rest refuse */
            if (strcmp(name, "help") && strcmp(name, "info")) {
                ck_assert_msg(*out, "'%s %s' said nothing", name, bad[j]);
            }
            tried++;
        }
    }
    ck_assert_uint_ge(tried, 15 * G_N_ELEMENTS(bad));    /* every command in help */

    /* 64 KiB of bytes of every value, in lines that are never a command
     * name (each starts with \x01), then a line four times the limit. */
    int fd = raw_client(vm->sock);
    ck_assert_int_ge(fd, 0);
    GRand *r = g_rand_new_with_seed(13);
    g_autoptr(GString) junk = g_string_new(NULL);
    while (junk->len < 65536) {
        g_string_append_c(junk, '\x01');
        for (int n = g_rand_int_range(r, 0, 300); n > 0; n--) {
            char ch = (char)g_rand_int_range(r, 0, 256);
            g_string_append_c(junk, ch == '\n' ? ' ' : ch);
        }
        g_string_append_c(junk, '\n');
    }
    g_rand_free(r);
    for (int i = 0; i < 4 * MONITOR_MAX_LINE; i++) {
        g_string_append_c(junk, 'z');
    }
    g_string_append(junk, "\ninfo status\n");
    ck_assert_int_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    g_autoptr(GString) replies = g_string_new(NULL);
    for (size_t off = 0; !strstr(replies->str, "VM status: running\n");) {
        struct pollfd p = { .fd = fd, .events = POLLIN | (off < junk->len ? POLLOUT : 0) };
        ck_assert_msg(poll(&p, 1, 10000) == 1, "the monitor went quiet");
        if (p.revents & POLLOUT) {
            ssize_t n = write(fd, junk->str + off, junk->len - off);
            ck_assert_msg(n > 0, "write: %s", g_strerror(errno));
            off += n;
        }
        if (p.revents & POLLIN) {
            char buf[4096];
            ssize_t n = read(fd, buf, sizeof(buf));
            ck_assert_msg(n > 0, "the monitor closed the connection");
            g_string_append_len(replies, buf, n);
        }
    }
    close(fd);
    g_autofree char *too_long = g_strdup_printf("Error: line too long (at most %d bytes)",
                                                MONITOR_MAX_LINE);
    ck_assert_msg(strstr(replies->str, too_long), "no refusal of the long line");
    ck_assert_ptr_nonnull(strstr(replies->str, "unknown command: '\x01"));

    g_autofree char *st = test_vm_cmd(vm, "info status");
    ck_assert_str_eq(st, "VM status: running\n");
    g_autofree char *mig = test_vm_cmd(vm, "info migrate");
    ck_assert_msg(!strstr(mig, "Migration status:"), "a migration started: %s", mig);
    test_vm_assert_guest_ok(vm);
    test_vm_quit(vm);
}
END_TEST

START_TEST(guest_continues_in_a_second_process)
{
    const char *src_args[] = { "-m", "128M", "-smp", "2", "--workload",
                               "churn,wss=32M,rate=8M", NULL };
    const char *dst_args[] = { "-m", "128M", "-smp", "2", "-S", "--workload",
                               "idle", NULL };
    g_autofree char *state = g_strdup_printf("%s/state", dir);
    TestVm *src = test_vm_start(dir, "src", src_args);

    g_usleep(700 * 1000);
    g_free(test_vm_cmd(src, "stop"));
    g_autofree char *st = test_vm_cmd(src, "info status");
    ck_assert_str_eq(st, "VM status: paused\n");
    g_autofree char *g1 = test_vm_cmd(src, "info guest");
    ck_assert_msg(g_str_has_prefix(g1, "guest memory check: OK ("), "%s", g1);
    g_autofree char *boot_id = test_field(g1, "boot id");
    uint64_t writes_src = test_field_u64(g1, "page writes");
    ck_assert_uint_gt(writes_src, (32u << 20) / GUEST_PAGE_SIZE);  /* past allocation */
    g_autofree char *saved = test_vm_cmd(src, "x-save-state %s", state);
    ck_assert_str_eq(saved, "");
    test_vm_quit(src);

    TestVm *dst = test_vm_start(dir, "dst", dst_args);
    g_autofree char *st0 = test_vm_cmd(dst, "info status");
    ck_assert_str_eq(st0, "VM status: paused (prelaunch)\n");
    g_autofree char *loaded = test_vm_cmd(dst, "x-load-state %s", state);
    ck_assert_str_eq(loaded, "");
    g_free(test_vm_cmd(dst, "cont"));
    g_usleep(500 * 1000);
    g_autofree char *st1 = test_vm_cmd(dst, "info status");
    ck_assert_str_eq(st1, "VM status: running\n");
    g_autofree char *g2 = test_vm_cmd(dst, "info guest");
    ck_assert_msg(g_str_has_prefix(g2, "guest memory check: OK ("), "%s", g2);
    g_autofree char *boot_id2 = test_field(g2, "boot id");
    g_autofree char *wl2 = test_field(g2, "workload");
    ck_assert_str_eq(boot_id2, boot_id);              /* the same guest, not a reboot */
    ck_assert(g_str_has_prefix(wl2, "churn"));        /* its own workload, mid-run */
    ck_assert_uint_gt(test_field_u64(g2, "page writes"), writes_src);
    test_vm_quit(dst);
}
END_TEST

START_TEST(state_that_does_not_fit_is_refused)
{
    const char *src_args[] = { "-m", "64M", "-smp", "2", "-S", NULL };
    const char *other_ram[] = { "-m", "128M", "-smp", "2", "-S", NULL };
    const char *other_smp[] = { "-m", "64M", "-smp", "1", "-S", NULL };
    g_autofree char *state = g_strdup_printf("%s/state", dir);
    TestVm *src = test_vm_start(dir, "src", src_args);

    g_free(test_vm_cmd(src, "cont"));
    g_autofree char *running = test_vm_cmd(src, "x-save-state %s", state);
    ck_assert(g_str_has_prefix(running, "Error: the VM is running"));
    g_free(test_vm_cmd(src, "stop"));
    g_autofree char *ok = test_vm_cmd(src, "x-save-state %s", state);
    ck_assert_str_eq(ok, "");
    test_vm_quit(src);

    TestVm *a = test_vm_start(dir, "a", other_ram);
    g_autofree char *e1 = test_vm_cmd(a, "x-load-state %s", state);
    ck_assert_msg(strstr(e1, "does not fit this VM"), "%s", e1);
    g_autofree char *st = test_vm_cmd(a, "info status");
    ck_assert_str_eq(st, "VM status: paused (prelaunch)\n");
    test_vm_quit(a);

    TestVm *b = test_vm_start(dir, "b", other_smp);
    g_autofree char *e2 = test_vm_cmd(b, "x-load-state %s", state);
    ck_assert_msg(strstr(e2, "-smp must match"), "%s", e2);
    /* A corrupted file is refused before RAM is touched. */
    g_autofree char *data = NULL;
    gsize len;
    ck_assert(g_file_get_contents(state, &data, &len, NULL));
    data[len / 2] ^= 1;
    ck_assert(g_file_set_contents(state, data, len, NULL));
    g_autofree char *e3 = test_vm_cmd(b, "x-load-state %s", state);
    ck_assert_msg(strstr(e3, "checksum mismatch"), "%s", e3);
    test_vm_quit(b);
}
END_TEST

START_TEST(run_states_and_bad_commands)
{
    const char *args[] = { "-m", "64M", "-S", NULL };
    TestVm *vm = test_vm_start(dir, "vm", args);

    g_autofree char *s0 = test_vm_cmd(vm, "info status");
    ck_assert_str_eq(s0, "VM status: paused (prelaunch)\n");
    g_autofree char *g0 = test_vm_cmd(vm, "info guest");
    ck_assert_str_eq(g0, "guest memory check: no guest in RAM (not booted)\n");
    g_free(test_vm_cmd(vm, "c"));
    g_autofree char *s1 = test_vm_cmd(vm, "info status");
    ck_assert_str_eq(s1, "VM status: running\n");

    /* None of these may stop or kill the VM. */
    g_autofree char *u = test_vm_cmd(vm, "frobnicate now");
    ck_assert_str_eq(u, "unknown command: 'frobnicate'\n");
    g_autofree char *x = test_vm_cmd(vm, "stop please");
    ck_assert_str_eq(x, "stop: extraneous characters at the end of line\n");
    g_autofree char *bin = test_vm_cmd(vm, "\x01\x7f\xfe\xff");
    ck_assert(g_str_has_prefix(bin, "unknown command"));
    g_autofree char *huge_cmd = g_strnfill(10000, 'A');
    g_autofree char *huge = test_vm_cmd(vm, "%s", huge_cmd);
    ck_assert_str_eq(huge, "Error: line too long (at most 4096 bytes)\n");
    g_autofree char *q = test_vm_cmd(vm, "info guest \"unterminated");
    ck_assert_str_eq(q, "Error: unterminated string literal\n");
    g_autofree char *s2 = test_vm_cmd(vm, "info status");
    ck_assert_str_eq(s2, "VM status: running\n");

    g_free(test_vm_cmd(vm, "stop"));
    g_autofree char *s3 = test_vm_cmd(vm, "info status");
    ck_assert_str_eq(s3, "VM status: paused\n");
    g_autofree char *g1 = test_vm_cmd(vm, "info guest");
    ck_assert(g_str_has_prefix(g1, "guest memory check: OK ("));
    g_autofree char *dt = test_vm_cmd(vm, "info dirty-tracking");
    ck_assert(g_str_has_prefix(dt, "dirty tracking backend: "));
    test_vm_quit(vm);
}
END_TEST

START_TEST(mem_path_image_is_loaded)
{
    g_autofree char *img = g_strdup_printf("%s/image", dir);
    g_autofree char *state = g_strdup_printf("%s/state", dir);
    gsize img_len = 8u << 20;
    g_autofree uint8_t *data = g_malloc0(img_len);

    for (gsize p = 0; p < img_len / GUEST_PAGE_SIZE; p++) {
        if (p % 4) {                /* every fourth page stays zero */
            memset(data + p * GUEST_PAGE_SIZE, (int)(p * 37 + 1), GUEST_PAGE_SIZE);
        }
    }
    ck_assert(g_file_set_contents(img, (char *)data, img_len, NULL));
    const char *args[] = { "-m", "64M", "-S", "--mem-path", img, NULL };
    TestVm *vm = test_vm_start(dir, "vm", args);
    g_free(test_vm_cmd(vm, "x-save-state %s", state));
    test_vm_quit(vm);

    /* The state file's RAM part starts right after its "cpus" section. */
    g_autofree char *st = NULL;
    gsize st_len;
    ck_assert(g_file_get_contents(state, &st, &st_len, NULL));
    gsize ram_off = st_len - 32 - (64u << 20);
    ck_assert_mem_eq(st + ram_off, data, img_len);
    g_autofree uint8_t *zero = g_malloc0((64u << 20) - img_len);
    ck_assert_mem_eq(st + ram_off + img_len, zero, (64u << 20) - img_len);
}
END_TEST

START_TEST(bad_command_lines_fail_clearly)
{
    g_autofree char *big = g_strdup_printf("%s/big", dir);
    g_autofree char *sparse = g_malloc0(1);
    ck_assert(g_file_set_contents(big, sparse, 1, NULL));
    ck_assert_int_eq(truncate(big, 65u << 20), 0);
    static const struct { const char *args[6]; const char *msg; } cases[] = {
        { { "-m", "lots" }, "-m lots" },
        { { "-smp", "0" }, "-smp 0" },
        { { "-smp", "65" }, "-smp 65" },
        { { "--thp", "maybe" }, "--thp maybe: expected on or off" },
        { { "--numa-node", "99" }, "no such NUMA node" },
        { { "--workload", "spin" }, "unknown workload 'spin'" },
        { { "--workload", "churn,wss=1G", "-m", "256M" }, "exceeds guest RAM" },
        { { "-monitor", "tcp:1:2" }, "unsupported" },
        { { "-monitor", "unix:/tmp/x.sock" }, "only server mode" },
        { { "--dirty-tracking", "magic" }, "expected auto, uffd-wp or soft-dirty" },
        { { "-bogus" }, "unknown option '-bogus'" },
        { { "-m" }, "needs a value" },
        { { "-uuid", "not-a-uuid" }, "not a valid UUID" },
        { { "-daemonize", "-monitor", "stdio" }, "cannot be used with" },
        { { "-m", "64M", "--mem-path", "/nonexistent/img" }, "No such file" },
        { { "-m", "0" }, "must be a non-zero multiple of 4096" },
        { { "-m", "1K" }, "must be a non-zero multiple of 4096" },
        { { "-m", "-5" }, "'-5' is not a size" },
        { { "-m", "99999T" }, "too large (16 TiB at most)" },
        { { "-m", "18446744073709551615" }, "out of range" },
        { { "-smp", "cpus=3,sockets=2" }, "expected a number of vCPUs" },
        { { "-smp", "-1" }, "expected a number of vCPUs" },
        { { "-device", "bogus" }, "unknown device" },
        { { "-device", "virtio-balloon,free-page-hint=maybe" }, "unknown property" },
        { { "--balloon-driver", "poison=x" }, "bad parameter 'poison=x'" },
        { { "--balloon-driver", "poison=99999999999" }, "bad parameter" },
        { { "--balloon-driver", "release=never" }, "bad parameter 'release=never'" },
        { { "-incoming", "ftp:x" }, "unsupported migration URI" },
        { { "-incoming", "tcp:127.0.0.1:99999" }, "port 1-65535" },
        { { "--workload", "churn,wss=-1" }, "is not a size" },
        { { "--workload", "churn,speed=3" }, "unknown parameter 'speed'" },
        { { "--workload", "fill-free,fill=2T", "-m", "64M" }, "exceeds guest RAM" },
        { { "--numa-node", "x" }, "expected a node number" },
        { { "-monitor", "unix:,server" }, "missing socket path" },
        { { "-m", "64M", "--mem-path", "/etc" }, "not a regular file" },
        { { "-m", "64M", "-pidfile", "/nonexistent/dir/pid" }, "-pidfile" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *out = NULL;
        int rc = test_vm_run(cases[i].args, &out);
        ck_assert_msg(rc == 1, "case %zu: exit %d, output: %s", i, rc, out);
        ck_assert_msg(strstr(out, cases[i].msg), "case %zu: expected '%s' in: %s",
                      i, cases[i].msg, out);
    }
    const char *too_big[] = { "-m", "64M", "--mem-path", big, NULL };
    g_autofree char *out = NULL;
    ck_assert_int_eq(test_vm_run(too_big, &out), 1);
    ck_assert_msg(strstr(out, "larger than guest RAM"), "%s", out);

    /* poison=N in decimal and hex is taken (the next error is the UUID's),
     * without a GLib-CRITICAL; a named dirty tracker the kernel lacks is
     * refused before anything starts. */
    static const char *poison[][6] = {
        { "--balloon-driver", "poison=5", "-uuid", "x" },
        { "--balloon-driver", "poison=0xaa55aa55,release=early", "-uuid", "x" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(poison); i++) {
        g_autofree char *o = NULL;
        ck_assert_int_eq(test_vm_run(poison[i], &o), 1);
        ck_assert_msg(strstr(o, "not a valid UUID") && !strstr(o, "CRITICAL"),
                      "poison case %zu: %s", i, o);
    }
    g_autoptr(GError) probe_err = NULL;
    if (!hintmig_dirty_backend_probe(HINTMIG_DIRTY_SOFT_DIRTY, &probe_err)) {
        const char *sd[] = { "-m", "64M", "--dirty-tracking", "soft-dirty", NULL };
        g_autofree char *o = NULL;
        ck_assert_int_eq(test_vm_run(sd, &o), 1);
        ck_assert_msg(strstr(o, probe_err->message), "soft-dirty: %s", o);
    }

    const char *help[] = { "-help", NULL };
    g_autofree char *h = NULL;
    ck_assert_int_eq(test_vm_run(help, &h), 0);
    ck_assert_ptr_nonnull(strstr(h, "-monitor stdio | -monitor unix:PATH"));
    ck_assert_ptr_nonnull(strstr(h, "--workload fill-free"));
}
END_TEST

START_TEST(daemonize_and_pidfile)
{
    g_autofree char *pidfile = g_strdup_printf("%s/vm.pid", dir);
    g_autofree char *sock = g_strdup_printf("%s/d.sock", dir);
    g_autofree char *mon = g_strdup_printf("unix:%s,server,nowait", sock);
    const char *args[] = { "-m", "64M", "-daemonize", "-pidfile", pidfile,
                           "-monitor", mon, NULL };
    g_autofree char *out = NULL;
    g_autoptr(GError) err = NULL;

    ck_assert_int_eq(test_vm_run(args, &out), 0);   /* returns once set up */
    g_autofree char *pid_s = NULL;
    ck_assert(g_file_get_contents(pidfile, &pid_s, NULL, NULL));
    pid_t pid = atoi(pid_s);
    ck_assert_int_gt(pid, 1);
    ck_assert_int_eq(kill(pid, 0), 0);
    HmpClient *c = hmp_client_connect(sock, 5000, &err);
    ck_assert_msg(c, "%s", err ? err->message : "");
    g_autofree char *st = hmp_client_command(c, "info status", 5000, &err);
    ck_assert_str_eq(st, "VM status: running\n");
    g_free(hmp_client_command(c, "quit", 5000, &err));
    hmp_client_free(c);
    for (int i = 0; i < 500 && kill(pid, 0) == 0; i++) {
        g_usleep(10000);
    }
    ck_assert_int_ne(kill(pid, 0), 0);
    ck_assert(!g_file_test(pidfile, G_FILE_TEST_EXISTS));
    ck_assert(!g_file_test(sock, G_FILE_TEST_EXISTS));
}
END_TEST

START_TEST(thp_on_runs_and_verifies)
{
    const char *thp_on[] = { "-m", "64M", "--thp", "on", "--workload", "churn", NULL };
    TestVm *vm = test_vm_start(dir, "thp", thp_on);
    g_autofree char *md = test_vm_cmd(vm, "info memdev");
    ck_assert_ptr_nonnull(strstr(md, "thp:  on"));
    g_usleep(200 * 1000);
    g_autofree char *g1 = test_vm_cmd(vm, "info guest");
    ck_assert(g_str_has_prefix(g1, "guest memory check: OK ("));
    test_vm_quit(vm);
}
END_TEST

START_TEST(numa_binding)
{
    const char *numa[] = { "-m", "64M", "--numa-node", "0", "--thp", "off", NULL };
    TestVm *vm = test_vm_start(dir, "numa", numa);
    g_autofree char *md2 = test_vm_cmd(vm, "info memdev");
    ck_assert_ptr_nonnull(strstr(md2, "policy:  bind"));
    ck_assert_ptr_nonnull(strstr(md2, "host nodes:  0"));
    ck_assert_ptr_nonnull(strstr(md2, "thp:  off"));
    test_vm_quit(vm);
}
END_TEST

START_TEST(stdio_monitor)
{
    g_autofree char *q = g_shell_quote(g_getenv("HINTMIG_VM"));
    g_autofree char *cmd = g_strdup_printf(
        "printf 'info status\\nnope\\nstop\\ninfo status\\nquit\\n' | "
        "%s -m 64M -monitor stdio", q);
    const char *sh[] = { "/bin/sh", "-c", cmd, NULL };
    g_autofree char *out = NULL;
    g_autoptr(GError) err = NULL;
    int status;

    ck_assert(g_spawn_sync(NULL, (char **)sh, NULL, 0, NULL, NULL, &out, NULL,
                           &status, &err));
    ck_assert_int_eq(status, 0);
    ck_assert_msg(strstr(out, "monitor - type 'help' for more information\n"
                         "(qemu) VM status: running\n"
                         "(qemu) unknown command: 'nope'\n"
                         "(qemu) (qemu) VM status: paused\n(qemu) "), "%s", out);
}
END_TEST

START_TEST(sigterm_shuts_down_cleanly)
{
    const char *args[] = { "-m", "64M", "--workload", "churn", NULL };
    TestVm *vm = test_vm_start(dir, "vm", args);
    kill(vm->pid, SIGTERM);
    test_vm_quit(vm);      /* asserts exit status 0 */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vm_e2e");
    TCase *tc = tcase_create("vm");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, guest_continues_in_a_second_process);
    tcase_add_test(tc, monitor_clients_come_and_go);
    tcase_add_test(tc, monitor_client_that_never_reads);
    tcase_add_test(tc, monitor_many_clients_at_once);
    tcase_add_test(tc, monitor_abuse_leaves_the_vm_untouched);
    tcase_add_test(tc, state_that_does_not_fit_is_refused);
    tcase_add_test(tc, run_states_and_bad_commands);
    tcase_add_test(tc, mem_path_image_is_loaded);
    tcase_add_test(tc, bad_command_lines_fail_clearly);
    tcase_add_test(tc, daemonize_and_pidfile);
    tcase_add_test(tc, thp_on_runs_and_verifies);
    tcase_add_test(tc, sigterm_shuts_down_cleanly);
    tcase_add_test(tc, stdio_monitor);
    suite_add_tcase(s, tc);
    if (numa_available() >= 0) {
        TCase *numa = tcase_create("numa");
        tcase_add_checked_fixture(numa, setup, teardown);
        tcase_add_test(numa, numa_binding);
        suite_add_tcase(s, numa);
    } else {
        test_skip("numa_binding", "libnuma reports no NUMA support on this host");
    }
    return test_run(s);
}
