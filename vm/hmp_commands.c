/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The VM's monitor commands: run control and guest information, in QEMU's
 * HMP names and output forms.
 */
#include "vm/vm.h"
#include "guest/balloon_driver.h"
#include "hw/virtio/virtio-balloon-hint.h"

void hmp_commands_register(Vm *vm);

static bool hmp_info_status(void *opaque, int argc, char **argv, GString *out,
                            GError **errp)
{
    Vm *vm = opaque;
    RunState st = vm_run_state(vm);
    (void)argc, (void)argv, (void)errp;

    /* QEMU: "running", "paused", or "paused (reason)" for other stops. */
    g_string_append_printf(out, "VM status: %s", st == RUN_STATE_RUNNING ?
                           "running" : "paused");
    if (st != RUN_STATE_RUNNING && st != RUN_STATE_PAUSED) {
        g_string_append_printf(out, " (%s)", run_state_str(st));
    }
    g_string_append_c(out, '\n');
    return true;
}

static bool hmp_stop(void *opaque, int argc, char **argv, GString *out,
                     GError **errp)
{
    Vm *vm = opaque;
    (void)argc, (void)argv, (void)out, (void)errp;

    if (vm_run_state(vm) == RUN_STATE_RUNNING) {
        vm_stop(vm, RUN_STATE_PAUSED);
    }
    return true;
}

static bool hmp_cont(void *opaque, int argc, char **argv, GString *out,
                     GError **errp)
{
    (void)argc, (void)argv, (void)out;
    return vm_start(opaque, errp);
}

static bool hmp_quit(void *opaque, int argc, char **argv, GString *out,
                     GError **errp)
{
    (void)argc, (void)argv, (void)out, (void)errp;
    vm_request_quit(opaque);
    return true;
}

static bool hmp_info_guest(void *opaque, int argc, char **argv, GString *out,
                           GError **errp)
{
    Vm *vm = opaque;
    GuestCheck check;
    GuestInfo info;
    (void)argc, (void)argv;

    if (hintmig_incoming_ram_pending(vm_migration(vm))) {
        /* The monitor must stay responsive: a missing page could keep this
         * thread waiting on the network, or for ever while it is down. */
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_AGAIN,
                    "guest RAM is still arriving (postcopy); check the guest once "
                    "'info migrate' says completed");
        return false;
    }
    g_autofree char *verdict = vm_check_guest(vm, &check);
    g_string_append_printf(out, "%s\n", verdict);
    if (guest_info(vm_guest(vm), &info)) {
        g_autofree char *wl = workload_describe(&info.wl);
        g_string_append_printf(out, "boot id: %016" G_GINT64_MODIFIER "x\n"
                               "workload: %s\n"
                               "page writes: %" G_GUINT64_FORMAT "\n"
                               "free memory: %" G_GUINT64_FORMAT " of %"
                               G_GUINT64_FORMAT " MiB\n",
                               (guint64)info.boot_id, wl, info.writes,
                               info.free_pages >> 8, info.npages >> 8);
        const GuestSuperblock *sb = vm_guest(vm)->mem.sb;
        g_string_append_printf(out, "free blocks by order (0-%d):", GUEST_MAX_ORDER);
        for (unsigned o = 0; o <= GUEST_MAX_ORDER; o++) {
            g_string_append_printf(out, " %" G_GUINT64_FORMAT, sb->nr_free[o]);
        }
        g_string_append_c(out, '\n');
        GuestBalloon *b = balloon_driver_state(vm_guest(vm));
        if (b) {
            static const char *const phases[] = { "idle", "reporting", "holding" };
            g_string_append_printf(out, "balloon driver: %s, %" G_GUINT64_FORMAT
                                   " blocks held, %" G_GUINT64_FORMAT " reported in %"
                                   G_GUINT64_FORMAT " rounds, %" G_GUINT64_FORMAT
                                   " released early\n",
                                   b->phase < 3 ? phases[b->phase] : "corrupt",
                                   b->held, b->reported, b->rounds, b->released_early);
        }
    }
    guest_check_clear(&check);
    return true;
}

static bool hmp_info_cpus(void *opaque, int argc, char **argv, GString *out,
                          GError **errp)
{
    VcpuSet *s = vm_vcpus(opaque);
    (void)argc, (void)argv, (void)errp;

    for (unsigned i = 0; i < vcpu_set_count(s); i++) {
        g_string_append_printf(out, "%c CPU #%u: thread_id=%d\n",
                               i ? ' ' : '*', i, vcpu_set_thread_id(s, i));
    }
    return true;
}

static bool hmp_info_uuid(void *opaque, int argc, char **argv, GString *out,
                          GError **errp)
{
    (void)argc, (void)argv, (void)errp;
    g_string_append_printf(out, "%s\n", vm_uuid(opaque));
    return true;
}

static bool hmp_info_version(void *opaque, int argc, char **argv, GString *out,
                             GError **errp)
{
    (void)opaque, (void)argc, (void)argv, (void)errp;
    g_string_append(out, HINTMIG_VERSION " (hintmig-vm)\n");
    return true;
}

static bool hmp_info_memdev(void *opaque, int argc, char **argv, GString *out,
                            GError **errp)
{
    Vm *vm = opaque;
    GuestRam *ram = vm_ram(vm);
    (void)argc, (void)argv, (void)errp;

    g_string_append_printf(out, "memory backend: ram0\n"
                           "  size:  %" G_GUINT64_FORMAT "\n"
                           "  thp:  %s\n"
                           "  policy:  %s\n",
                           ram->size, guest_ram_thp_str(ram->thp),
                           ram->numa_node >= 0 ? "bind" : "default");
    if (ram->numa_node >= 0) {
        g_string_append_printf(out, "  host nodes:  %d\n", ram->numa_node);
    }
    return true;
}

static bool hmp_info_dirty_tracking(void *opaque, int argc, char **argv,
                                    GString *out, GError **errp)
{
    (void)argc, (void)argv, (void)errp;
    g_autofree char *s = vm_describe_dirty_backend(opaque);
    g_string_append_printf(out, "dirty tracking backend: %s\n", s);
    return true;
}

static bool hmp_info_balloon(void *opaque, int argc, char **argv, GString *out,
                             GError **errp)
{
    VirtioBalloon *vb = vm_balloon(opaque);
    (void)argc, (void)argv;

    if (!vb) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                    "No balloon device has been activated");
        return false;
    }
    vb_info(vb, out);
    return true;
}

static bool hmp_x_save_state(void *opaque, int argc, char **argv, GString *out,
                             GError **errp)
{
    (void)argc, (void)out;
    return vm_save_state_file(opaque, argv[1], errp);
}

static bool hmp_x_load_state(void *opaque, int argc, char **argv, GString *out,
                             GError **errp)
{
    (void)argc, (void)out;
    return vm_load_state_file(opaque, argv[1], errp);
}

static const MonitorCmd vm_cmds[] = {
    { "cont", "c", NULL, "resume emulation", 0, 0, hmp_cont },
    { "stop", "s", NULL, "stop emulation", 0, 0, hmp_stop },
    { "quit", "q", NULL, "quit the emulator", 0, 0, hmp_quit },
    { "x-save-state", NULL, "file",
      "write RAM and vCPU state of a stopped VM to a file", 1, 1,
      hmp_x_save_state },
    { "x-load-state", NULL, "file",
      "load RAM and vCPU state from a file into a stopped VM", 1, 1,
      hmp_x_load_state },
};

static const MonitorCmd vm_infos[] = {
    { "status", NULL, NULL, "show the current VM status (running|paused)", 0, 0,
      hmp_info_status },
    { "guest", NULL, NULL, "run the guest's memory self-check and show its state",
      0, 0, hmp_info_guest },
    { "cpus", NULL, NULL, "show infos for each CPU", 0, 0, hmp_info_cpus },
    { "uuid", NULL, NULL, "show the current VM UUID", 0, 0, hmp_info_uuid },
    { "version", NULL, NULL, "show the version of hintmig-vm", 0, 0,
      hmp_info_version },
    { "memdev", NULL, NULL, "show memory backends", 0, 0, hmp_info_memdev },
    { "balloon", NULL, NULL, "show balloon information", 0, 0, hmp_info_balloon },
    { "dirty-tracking", NULL, NULL,
      "show the dirty-tracking backend migration uses, and why", 0, 0,
      hmp_info_dirty_tracking },
};

void hmp_commands_register(Vm *vm)
{
    for (size_t i = 0; i < G_N_ELEMENTS(vm_cmds); i++) {
        monitor_register(vm_monitor(vm), &vm_cmds[i], vm);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(vm_infos); i++) {
        monitor_register_info(vm_monitor(vm), &vm_infos[i], vm);
    }
}
