/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig-vm: command line, daemonizing and the main loop of the reference
 * VM host.  Options follow QEMU's spelling (single dash, as getopt_long_only
 * parses them), so that one script can start QEMU or hintmig-vm.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <glib-unix.h>

#include "hintmig/hintmig.h"
#include "vm/monitor_chardev.h"
#include "vm/vm.h"

static const char usage_text[] =
"Usage: hintmig-vm [options]\n"
"The hintmig reference VM host: a synthetic guest whose whole state lives in\n"
"its RAM, driven through a QEMU-compatible human monitor.\n"
"\n"
"Machine:\n"
"  -m SIZE                 guest RAM; a bare number is MiB, or use K/M/G/T\n"
"                          (default 512M)\n"
"  -smp N | -smp cpus=N    number of vCPUs, 1 to 64 (default 1)\n"
"  -uuid UUID              the VM's UUID (default: a random one)\n"
"  --mem-path FILE         load FILE into guest RAM at start-up, as QEMU's\n"
"                          memory-backend-file,share=off does\n"
"  --thp on|off            transparent huge pages for guest RAM\n"
"                          (default: the host's policy)\n"
"  --numa-node N           bind guest RAM to host NUMA node N\n"
"  -device virtio-balloon[,free-page-hint=on|off]\n"
"                          a virtio-balloon device; with free-page-hint=on\n"
"                          the guest reports free pages for migration\n"
"  --balloon-driver [poison=N][,release=done|early]\n"
"                          the guest's balloon driver: the page poison value\n"
"                          it reports (default 0: none), and whether it keeps\n"
"                          hinted pages until DONE (default) or releases them\n"
"                          early, re-initialising them\n"
"  --dirty-tracking auto|uffd-wp|soft-dirty\n"
"                          dirty-tracking backend for migration (default auto:\n"
"                          uffd-wp where the kernel has it)\n"
"\n"
"Guest workload (the guest's boot parameters; ignored when RAM already\n"
"holds a booted guest):\n"
"  --workload idle\n"
"  --workload churn[,wss=SIZE][,rate=SIZE]\n"
"                          rewrite a working set of wss bytes (whole guest,\n"
"                          default 64M) at rate bytes/s per vCPU (default 16M;\n"
"                          0 = as fast as possible)\n"
"  --workload fill-free[,fill=SIZE][,wss=SIZE][,rate=SIZE]\n"
"                          allocate and write fill bytes (default half of RAM),\n"
"                          free them, then churn lightly (default wss=16M,\n"
"                          rate=1M)\n"
"\n"
"Control:\n"
"  -monitor stdio | -monitor unix:PATH,server[,nowait]\n"
"                          human monitor (QEMU HMP); 'help' lists commands\n"
"  -S                      do not start the vCPUs; wait for 'cont' (with\n"
"                          -incoming: stay paused once the guest arrived)\n"
"  -incoming tcp:HOST:PORT | -incoming defer\n"
"                          receive the guest by migration (host 0: any);\n"
"                          with defer, wait for 'migrate_incoming URI'\n"
"  -daemonize              detach once the VM is set up\n"
"  -pidfile FILE           write the process id to FILE\n"
"  -h, -help               print this help\n"
"  -version                print the version\n";

enum {
    OPT_MEM_PATH = 256, OPT_THP, OPT_NUMA, OPT_WORKLOAD, OPT_DIRTY,
    OPT_SMP, OPT_MONITOR, OPT_DAEMONIZE, OPT_PIDFILE, OPT_UUID, OPT_VERSION,
    OPT_INCOMING, OPT_DEVICE, OPT_BALLOON_DRIVER,
};

static const struct option options[] = {
    { "m", required_argument, NULL, 'm' },
    { "smp", required_argument, NULL, OPT_SMP },
    { "uuid", required_argument, NULL, OPT_UUID },
    { "mem-path", required_argument, NULL, OPT_MEM_PATH },
    { "thp", required_argument, NULL, OPT_THP },
    { "numa-node", required_argument, NULL, OPT_NUMA },
    { "dirty-tracking", required_argument, NULL, OPT_DIRTY },
    { "workload", required_argument, NULL, OPT_WORKLOAD },
    { "monitor", required_argument, NULL, OPT_MONITOR },
    { "S", no_argument, NULL, 'S' },
    { "incoming", required_argument, NULL, OPT_INCOMING },
    { "device", required_argument, NULL, OPT_DEVICE },
    { "balloon-driver", required_argument, NULL, OPT_BALLOON_DRIVER },
    { "daemonize", no_argument, NULL, OPT_DAEMONIZE },
    { "pidfile", required_argument, NULL, OPT_PIDFILE },
    { "help", no_argument, NULL, 'h' },
    { "h", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, OPT_VERSION },
    { NULL, 0, NULL, 0 },
};

typedef struct Args {
    VmConfig cfg;
    const char *workload;
    const char *monitor;
    const char *pidfile;
    bool daemonize;
} Args;

static bool parse_uint(const char *s, unsigned max, unsigned *out)
{
    guint64 v;
    if (!g_ascii_string_to_unsigned(s, 10, 0, max, &v, NULL)) {
        return false;
    }
    *out = v;
    return true;
}

/* -device virtio-balloon[,free-page-hint=on|off] */
static bool parse_device(const char *spec, VmConfig *cfg, GError **errp)
{
    g_auto(GStrv) parts = g_strsplit(spec, ",", -1);

    if (g_strcmp0(parts[0], "virtio-balloon") &&
        g_strcmp0(parts[0], "virtio-balloon-pci")) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "-device %s: unknown device (hintmig-vm has virtio-balloon)",
                    parts[0] ? parts[0] : "");
        return false;
    }
    cfg->balloon = true;
    for (int i = 1; parts[i]; i++) {
        if (!strcmp(parts[i], "free-page-hint=on")) {
            cfg->free_page_hint = true;
        } else if (!strcmp(parts[i], "free-page-hint=off")) {
            cfg->free_page_hint = false;
        } else {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "-device virtio-balloon: unknown property '%s'", parts[i]);
            return false;
        }
    }
    return true;
}

/* --balloon-driver [poison=N][,release=done|early] */
static bool parse_balloon_driver(const char *spec, BalloonDriverConfig *b,
                                 GError **errp)
{
    g_auto(GStrv) parts = g_strsplit(spec, ",", -1);

    for (int i = 0; parts[i]; i++) {
        guint64 v;
        /* GLib takes no base 0: decimal, or hexadecimal after 0x. */
        bool hex = g_str_has_prefix(parts[i], "poison=0x");
        if (g_str_has_prefix(parts[i], "poison=") &&
            g_ascii_string_to_unsigned(parts[i] + (hex ? 9 : 7), hex ? 16 : 10, 0,
                                       UINT32_MAX, &v, NULL)) {
            b->poison = v;
        } else if (!strcmp(parts[i], "release=early")) {
            b->early_release = true;
        } else if (!strcmp(parts[i], "release=done")) {
            b->early_release = false;
        } else {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "--balloon-driver: bad parameter '%s' (use poison=N, "
                        "release=done or release=early)", parts[i]);
            return false;
        }
    }
    return true;
}

static int fail(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "hintmig-vm: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\nTry 'hintmig-vm -help' for more information.\n");
    return 1;
}

/* Returns 0 to go on, 1 on error, -1 when the process should exit 0. */
static int parse_args(int argc, char **argv, Args *a)
{
    g_autoptr(GError) err = NULL;
    const char *mem = "512M";
    unsigned node;
    int c;

    *a = (Args) { .cfg = { .smp = 1, .ram = { .numa_node = -1 } } };
    opterr = 0;
    while ((c = getopt_long_only(argc, argv, ":", options, NULL)) != -1) {
        switch (c) {
        case 'm': mem = optarg; break;
        case OPT_SMP: {
            const char *v = g_str_has_prefix(optarg, "cpus=") ? optarg + 5 : optarg;
            if (!parse_uint(v, GUEST_MAX_VCPUS, &a->cfg.smp) || !a->cfg.smp) {
                return fail("-smp %s: expected a number of vCPUs from 1 to 64%s",
                            optarg, "");
            }
            break;
        }
        case OPT_UUID: a->cfg.uuid = optarg; break;
        case OPT_MEM_PATH: a->cfg.ram.mem_path = optarg; break;
        case OPT_THP:
            if (!strcmp(optarg, "on")) {
                a->cfg.ram.thp = GUEST_RAM_THP_ON;
            } else if (!strcmp(optarg, "off")) {
                a->cfg.ram.thp = GUEST_RAM_THP_OFF;
            } else {
                return fail("--thp %s: expected on or off%s", optarg, "");
            }
            break;
        case OPT_NUMA:
            if (!parse_uint(optarg, 1023, &node)) {
                return fail("--numa-node %s: expected a node number%s", optarg, "");
            }
            a->cfg.ram.numa_node = node;
            break;
        case OPT_DIRTY:
            if (!hintmig_dirty_backend_parse(optarg, &a->cfg.dirty_backend)) {
                return fail("--dirty-tracking %s: expected auto, uffd-wp or "
                            "soft-dirty%s", optarg, "");
            }
            /* A backend asked for by name must work here, now, not fail
             * a migration later (auto falls back by itself). */
            if (a->cfg.dirty_backend != HINTMIG_DIRTY_AUTO) {
                g_autoptr(GError) perr = NULL;
                if (!hintmig_dirty_backend_probe(a->cfg.dirty_backend, &perr)) {
                    return fail("--dirty-tracking %s: %s", optarg, perr->message);
                }
            }
            break;
        case OPT_WORKLOAD: a->workload = optarg; break;
        case OPT_MONITOR: a->monitor = optarg; break;
        case 'S': a->cfg.start_paused = true; break;
        case OPT_INCOMING: a->cfg.incoming = optarg; break;
        case OPT_DEVICE:
            if (!parse_device(optarg, &a->cfg, &err)) {
                return fail("%s%s", err->message, "");
            }
            break;
        case OPT_BALLOON_DRIVER:
            if (!parse_balloon_driver(optarg, &a->cfg.balloon_driver, &err)) {
                return fail("%s%s", err->message, "");
            }
            break;
        case OPT_DAEMONIZE: a->daemonize = true; break;
        case OPT_PIDFILE: a->pidfile = optarg; break;
        case 'h': fputs(usage_text, stdout); return -1;
        case OPT_VERSION:
            printf("hintmig-vm version %s\n", HINTMIG_VERSION);
            return -1;
        case ':':
            return fail("option '%s' needs a value%s", argv[optind - 1], "");
        default:
            return fail("unknown option '%s'%s", argv[optind - 1], "");
        }
    }
    if (optind < argc) {
        return fail("unexpected argument '%s'%s", argv[optind], "");
    }
    if (!hintmig_size_parse(mem, 1 << 20, &a->cfg.ram.size, &err)) {
        return fail("-m %s: %s", mem, err->message);
    }
    if (!workload_parse(a->workload ? a->workload : "idle", a->cfg.ram.size,
                        &a->cfg.workload, &err)) {
        return fail("%s%s", err->message, "");
    }
    if (a->daemonize && a->monitor && monitor_chardev_is_stdio(a->monitor)) {
        return fail("-daemonize cannot be used with -monitor stdio%s%s", "", "");
    }
    return 0;
}

/*
 * Forks; the parent waits on a pipe until the child says it is set up (or
 * failed), so that "hintmig-vm -daemonize" returns only once the monitor
 * socket is there, and with the child's exit status on failure.
 */
static int daemonize_start(int *ready_fd)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        perror("hintmig-vm: pipe");
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("hintmig-vm: fork");
        return -1;
    }
    if (pid > 0) {
        char status = 1;
        close(fds[1]);
        while (read(fds[0], &status, 1) < 0 && errno == EINTR) {
        }
        _exit(status == 0 ? 0 : 1);
    }
    close(fds[0]);
    setsid();
    *ready_fd = fds[1];
    return 0;
}

static void daemonize_finish(int ready_fd, bool ok)
{
    char status = ok ? 0 : 1;

    if (ready_fd < 0) {
        return;
    }
    if (ok) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
            close(null);
        }
        if (chdir("/") < 0) {
            /* not fatal */
        }
    }
    while (write(ready_fd, &status, 1) < 0 && errno == EINTR) {
    }
    close(ready_fd);
}

static gboolean on_signal(gpointer data)
{
    vm_request_quit(data);
    return G_SOURCE_CONTINUE;
}

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    Args a;
    int ready_fd = -1;
    int ret = parse_args(argc, argv, &a);

    if (ret) {
        return ret < 0 ? 0 : 1;
    }
    /* Fork before any thread exists. */
    if (a.daemonize && daemonize_start(&ready_fd) < 0) {
        return 1;
    }
    g_autofree char *pidfile = a.pidfile ? g_canonicalize_filename(a.pidfile, NULL)
                                         : NULL;
    Vm *vm = vm_new(&a.cfg, &err);
    if (!vm) {
        fprintf(stderr, "hintmig-vm: %s\n", err->message);
        daemonize_finish(ready_fd, false);
        return 1;
    }
    MonitorChardev *chr = NULL;
    if (a.monitor && !(chr = monitor_chardev_new(a.monitor, vm_monitor(vm), &err))) {
        fprintf(stderr, "hintmig-vm: %s\n", err->message);
        goto fail;
    }
    if (pidfile) {
        g_autofree char *pid = g_strdup_printf("%d\n", getpid());
        if (!g_file_set_contents(pidfile, pid, -1, &err)) {
            fprintf(stderr, "hintmig-vm: -pidfile: %s\n", err->message);
            g_clear_pointer(&pidfile, g_free);
            goto fail;
        }
    }
    if (a.cfg.incoming && strcmp(a.cfg.incoming, "defer") &&
        !hintmig_incoming_start(vm_migration(vm), a.cfg.incoming, &err)) {
        fprintf(stderr, "hintmig-vm: -incoming %s: %s\n", a.cfg.incoming, err->message);
        goto fail;
    }
    if (!a.cfg.incoming && !a.cfg.start_paused && !vm_start(vm, &err)) {
        fprintf(stderr, "hintmig-vm: %s\n", err->message);
        goto fail;
    }
    /* As QEMU: a peer that went away is an error on that write, not the end
     * of the VM (a monitor client, a stdout pipe). */
    signal(SIGPIPE, SIG_IGN);
    g_unix_signal_add(SIGTERM, on_signal, vm);
    g_unix_signal_add(SIGINT, on_signal, vm);
    g_unix_signal_add(SIGHUP, on_signal, vm);
    daemonize_finish(ready_fd, true);

    vm_run_main_loop(vm);
    ret = 0;
    goto out;
fail:
    daemonize_finish(ready_fd, false);
    ret = 1;
out:
    monitor_chardev_free(chr);
    vm_free(vm);
    if (pidfile) {
        unlink(pidfile);
    }
    return ret;
}
