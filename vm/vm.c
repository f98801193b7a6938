/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The reference VM host's VM object: see include/vm/vm.h. */
#include <string.h>

#include "vm/vm.h"
#include "hw/virtio/virtio-balloon-hint.h"
#include "vm/vmstate_file.h"
#include "hmp/migration_hmp.h"

void hmp_commands_register(Vm *vm);

#define VCPU_SECTION "cpus"
#define BALLOON_SECTION "virtio-balloon"

struct Vm {
    VmConfig cfg;
    char *uuid;
    GuestRam *ram;
    Guest *guest;
    VcpuSet *vcpus;
    Monitor *mon;
    Hintmig *mig;
    void *mig_glue;
    VirtioBalloon *balloon;
    char *incoming;
    GMainLoop *loop;
    RunState state;
    GHookList notifiers;
};

static const char *const run_state_names[RUN_STATE__MAX] = {
    [RUN_STATE_PRELAUNCH] = "prelaunch",
    [RUN_STATE_RUNNING] = "running",
    [RUN_STATE_PAUSED] = "paused",
    [RUN_STATE_GUEST_PANICKED] = "guest-panicked",
    [RUN_STATE_INMIGRATE] = "inmigrate",
    [RUN_STATE_FINISH_MIGRATE] = "finish-migrate",
    [RUN_STATE_POSTMIGRATE] = "postmigrate",
    [RUN_STATE_SHUTDOWN] = "shutdown",
};

const char *run_state_str(RunState state)
{
    return state < RUN_STATE__MAX ? run_state_names[state] : "unknown";
}

typedef struct PanicEvent {
    Vm *vm;
    unsigned index;
    char *msg;
} PanicEvent;

/* Main thread: a vCPU reported a guest panic. */
static gboolean vm_panic_bh(gpointer data)
{
    PanicEvent *ev = data;

    g_printerr("hintmig-vm: guest panicked on vCPU %u: %s\n", ev->index, ev->msg);
    if (ev->vm->state == RUN_STATE_RUNNING) {
        vm_stop(ev->vm, RUN_STATE_GUEST_PANICKED);
    }
    g_free(ev->msg);
    g_free(ev);
    return G_SOURCE_REMOVE;
}

static void vm_vcpu_panic(void *opaque, unsigned index, const char *msg)
{
    PanicEvent *ev = g_new(PanicEvent, 1);
    *ev = (PanicEvent) { opaque, index, g_strdup(msg) };
    g_idle_add(vm_panic_bh, ev);
}

static void balloon_run_state(void *opaque, bool running, RunState state)
{
    (void)state;
    vb_set_running(opaque, running);
}

Vm *vm_new(const VmConfig *cfg, GError **errp)
{
    if (cfg->smp < 1 || cfg->smp > GUEST_MAX_VCPUS) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "-smp %u: must be between 1 and %d", cfg->smp,
                    GUEST_MAX_VCPUS);
        return NULL;
    }
    if (cfg->uuid && !g_uuid_string_is_valid(cfg->uuid)) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "-uuid %s: not a valid UUID", cfg->uuid);
        return NULL;
    }
    GuestRam *ram = guest_ram_new(&cfg->ram, errp);
    if (!ram) {
        return NULL;
    }
    Vm *vm = g_new0(Vm, 1);
    vm->cfg = *cfg;
    vm->cfg.uuid = NULL;
    vm->cfg.uuid_explicit = cfg->uuid != NULL;
    vm->cfg.ram.mem_path = NULL;
    vm->incoming = g_strdup(cfg->incoming);
    vm->cfg.incoming = vm->incoming;
    vm->uuid = cfg->uuid ? g_ascii_strdown(cfg->uuid, -1) : g_uuid_string_random();
    vm->ram = ram;
    vm->guest = guest_new(ram, cfg->smp, &cfg->workload);
    vm->guest->boot_balloon = cfg->balloon_driver;
    if (cfg->balloon) {
        vm->balloon = virtio_balloon_new(ram, cfg->free_page_hint);
        vm->guest->balloon = vm->balloon;
    }
    vm->vcpus = vcpu_set_new(vm->guest, cfg->smp, vm_vcpu_panic, vm);
    vm->mon = monitor_new();
    vm->loop = g_main_loop_new(NULL, FALSE);
    vm->state = cfg->incoming ? RUN_STATE_INMIGRATE : RUN_STATE_PRELAUNCH;
    g_hook_list_init(&vm->notifiers, sizeof(GHook));
    if (vm->balloon) {
        /* The device polls only while the VM runs. */
        vm_add_state_notifier(vm, balloon_run_state, vm->balloon);
    }
    hmp_commands_register(vm);
    vm->mig = vm_migration_new(vm, &vm->mig_glue, errp);
    if (!vm->mig) {
        vm_free(vm);
        return NULL;
    }
    hmp_migration_register(vm->mig, vm->mon);
    if (vm->balloon) {
        vm_migration_attach_balloon(vm);
    }
    return vm;
}

void vm_free(Vm *vm)
{
    if (!vm) {
        return;
    }
    if (vm->balloon) {
        vb_set_client(vm->balloon, NULL);    /* no hints into a freed engine */
    }
    hintmig_free(vm->mig);     /* its threads may still call into the VM */
    g_free(vm->mig_glue);
    g_free(vm->incoming);
    vcpu_set_free(vm->vcpus);
    virtio_balloon_free(vm->balloon);
    g_hook_list_clear(&vm->notifiers);
    monitor_free(vm->mon);
    g_main_loop_unref(vm->loop);
    guest_free(vm->guest);
    guest_ram_free(vm->ram);
    g_free(vm->uuid);
    g_free(vm);
}

RunState vm_run_state(const Vm *vm)
{
    return vm->state;
}

static void notify_one(GHook *hook, gpointer data)
{
    Vm *vm = data;
    ((VmStateNotifyFn)hook->func)(hook->data, vm->state == RUN_STATE_RUNNING,
                                  vm->state);
}

void vm_set_run_state(Vm *vm, RunState state)
{
    if (vm->state == state) {
        return;
    }
    vm->state = state;
    g_hook_list_marshal(&vm->notifiers, FALSE, notify_one, vm);
}

bool vm_start(Vm *vm, GError **errp)
{
    switch (vm->state) {
    case RUN_STATE_RUNNING:
        return true;
    case RUN_STATE_GUEST_PANICKED:
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "the guest panicked; it cannot be resumed");
        return false;
    case RUN_STATE_INMIGRATE:
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "an incoming migration has not completed");
        return false;
    case RUN_STATE_SHUTDOWN:
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PERM, "the VM is shutting down");
        return false;
    default:
        break;
    }
    /*
     * While postcopy still owes pages, the superblock may be at the source:
     * the vCPUs boot the guest themselves, since the main thread must never
     * wait on a missing page (a source gone for good would hang the
     * monitor, quit and SIGTERM).
     */
    if (!hintmig_incoming_ram_pending(vm->mig) && !guest_boot(vm->guest, errp)) {
        return false;
    }
    vcpu_set_resume(vm->vcpus);
    vm_set_run_state(vm, RUN_STATE_RUNNING);
    return true;
}

void vm_stop(Vm *vm, RunState state)
{
    if (hintmig_incoming_ram_pending(vm->mig)) {
        /* A vCPU may wait on a missing page; the main thread must not wait
         * on it.  Nothing reads RAM as a whole until postcopy completes. */
        vcpu_set_pause_nowait(vm->vcpus);
    } else {
        vcpu_set_pause(vm->vcpus);
    }
    vm_set_run_state(vm, state);
}

gulong vm_add_state_notifier(Vm *vm, VmStateNotifyFn fn, void *opaque)
{
    GHook *hook = g_hook_alloc(&vm->notifiers);
    hook->func = (gpointer)fn;
    hook->data = opaque;
    g_hook_append(&vm->notifiers, hook);
    return hook->hook_id;
}

void vm_remove_state_notifier(Vm *vm, gulong id)
{
    g_hook_destroy(&vm->notifiers, id);
}

Monitor *vm_monitor(Vm *vm) { return vm->mon; }
Hintmig *vm_migration(Vm *vm) { return vm->mig; }
VirtioBalloon *vm_balloon(Vm *vm) { return vm->balloon; }
GuestRam *vm_ram(Vm *vm) { return vm->ram; }
Guest *vm_guest(Vm *vm) { return vm->guest; }
VcpuSet *vm_vcpus(Vm *vm) { return vm->vcpus; }
const char *vm_uuid(const Vm *vm) { return vm->uuid; }
const VmConfig *vm_config(const Vm *vm) { return &vm->cfg; }

void vm_set_uuid(Vm *vm, const char *uuid)
{
    g_free(vm->uuid);
    vm->uuid = g_ascii_strdown(uuid, -1);
}

typedef struct MainCall {
    Vm *vm;
    void (*fn)(Vm *vm, void *data);
    void *data;
    GMutex lock;
    GCond cond;
    bool done;
} MainCall;

static gboolean main_call_cb(gpointer data)
{
    MainCall *c = data;
    c->fn(c->vm, c->data);
    g_mutex_lock(&c->lock);
    c->done = true;
    g_cond_signal(&c->cond);
    g_mutex_unlock(&c->lock);
    return G_SOURCE_REMOVE;
}

void vm_call_on_main(Vm *vm, void (*fn)(Vm *vm, void *data), void *data)
{
    MainCall c = { .vm = vm, .fn = fn, .data = data };

    if (g_main_context_is_owner(g_main_context_default())) {
        fn(vm, data);
        return;
    }
    g_mutex_init(&c.lock);
    g_cond_init(&c.cond);
    g_main_context_invoke(NULL, main_call_cb, &c);
    g_mutex_lock(&c.lock);
    while (!c.done) {
        g_cond_wait(&c.cond, &c.lock);
    }
    g_mutex_unlock(&c.lock);
    g_mutex_clear(&c.lock);
    g_cond_clear(&c.cond);
}

void vm_request_quit(Vm *vm)
{
    g_main_loop_quit(vm->loop);
}

void vm_run_main_loop(Vm *vm)
{
    g_main_loop_run(vm->loop);
    if (hintmig_incoming_ram_pending(vm->mig)) {
        /* vCPUs may wait on pages that will never come: let go of them
         * first, or they could not be stopped. */
        hintmig_shutdown(vm->mig);
    }
    if (vm->state == RUN_STATE_RUNNING) {
        vm_stop(vm, RUN_STATE_SHUTDOWN);
    }
}

char *vm_check_guest(Vm *vm, GuestCheck *out)
{
    bool running = vm->state == RUN_STATE_RUNNING;

    if (running) {
        vcpu_set_pause(vm->vcpus);
    }
    guest_self_check(vm->guest, out);
    if (running) {
        vcpu_set_resume(vm->vcpus);
    }
    return guest_check_describe(out);
}

GBytes *vm_save_vcpus(Vm *vm)
{
    unsigned n = vcpu_set_count(vm->vcpus);
    GuestVcpuState *buf = g_new(GuestVcpuState, n);

    for (unsigned i = 0; i < n; i++) {
        const GuestVcpuState *s = vcpu_set_state(vm->vcpus, i);
        buf[i] = (GuestVcpuState) {
            .magic = GUINT32_TO_LE(s->magic),
            .index = GUINT32_TO_LE(s->index),
            .task_pfn = GUINT64_TO_LE(s->task_pfn),
            .steps = GUINT64_TO_LE(s->steps),
        };
    }
    return g_bytes_new_take(buf, n * sizeof(*buf));
}

bool vm_load_vcpus(Vm *vm, GBytes *blob, GError **errp)
{
    unsigned n = vcpu_set_count(vm->vcpus);
    gsize len;
    const GuestVcpuState *in = g_bytes_get_data(blob, &len);

    if (len != n * sizeof(GuestVcpuState)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "vCPU state holds %zu vCPUs, this VM has %u (-smp must match)",
                    len / sizeof(GuestVcpuState), n);
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        if (GUINT32_FROM_LE(in[i].magic) != GUEST_VCPU_MAGIC ||
            GUINT32_FROM_LE(in[i].index) != i) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                        "vCPU state %u is invalid", i);
            return false;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        *vcpu_set_state(vm->vcpus, i) = (GuestVcpuState) {
            .magic = GUEST_VCPU_MAGIC,
            .index = i,
            .task_pfn = GUINT64_FROM_LE(in[i].task_pfn),
            .steps = GUINT64_FROM_LE(in[i].steps),
        };
    }
    return true;
}

GPtrArray *vm_save_sections(Vm *vm)
{
    GPtrArray *secs = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vmstate_section_free);
    g_autoptr(GBytes) cpus = vm_save_vcpus(vm);
    gsize len;
    const void *d = g_bytes_get_data(cpus, &len);

    /* The UUID as its 36 characters of text. */
    g_ptr_array_add(secs, vmstate_section_new("vm", vm->uuid, strlen(vm->uuid)));
    g_ptr_array_add(secs, vmstate_section_new(VCPU_SECTION, d, len));
    if (vm->balloon) {
        g_autoptr(GBytes) b = vb_save(vm->balloon);
        d = g_bytes_get_data(b, &len);
        g_ptr_array_add(secs, vmstate_section_new(BALLOON_SECTION, d, len));
    }
    return secs;
}

bool vm_load_sections(Vm *vm, GPtrArray *secs, GError **errp)
{
    GBytes *uuid = vmstate_sections_find(secs, "vm");
    GBytes *cpus = vmstate_sections_find(secs, VCPU_SECTION);
    GBytes *balloon = vmstate_sections_find(secs, BALLOON_SECTION);

    g_autofree char *text = uuid ? g_strndup(g_bytes_get_data(uuid, NULL),
                                             g_bytes_get_size(uuid)) : NULL;
    if (!text || !g_uuid_string_is_valid(text) || !cpus) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "the \"vm\" or \"cpus\" section is missing or malformed");
        return false;
    }
    if (balloon && !vm->balloon) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "the source has a virtio-balloon device and this VM has none "
                    "(add -device virtio-balloon,free-page-hint=on)");
        return false;
    }
    if (!vm_load_vcpus(vm, cpus, errp) ||
        (balloon && !vb_load(vm->balloon, balloon, errp))) {
        return false;
    }
    vm_set_uuid(vm, text);
    /* RAM holds another guest now: attach to it when the VM starts. */
    vm->guest->booted = false;
    return true;
}

bool vm_save_state_file(Vm *vm, const char *path, GError **errp)
{
    if (hintmig_incoming_ram_pending(vm->mig)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_AGAIN,
                    "guest RAM is still arriving (postcopy); save the state once "
                    "'info migrate' says completed");
        return false;
    }
    if (vm->state == RUN_STATE_RUNNING) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "the VM is running; stop it first");
        return false;
    }
    g_autoptr(GPtrArray) secs = vm_save_sections(vm);
    return vmstate_file_save(path, vm->ram, secs, errp);
}

bool vm_load_state_file(Vm *vm, const char *path, GError **errp)
{
    if (hintmig_incoming_ram_pending(vm->mig)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_AGAIN,
                    "guest RAM is still arriving (postcopy); a state cannot be "
                    "loaded over it");
        return false;
    }
    if (vm->state == RUN_STATE_RUNNING) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "the VM is running; stop it first");
        return false;
    }
    g_autoptr(GPtrArray) secs = vmstate_file_load(path, vm->ram, errp);
    return secs && vm_load_sections(vm, secs, errp);
}

char *vm_describe_dirty_backend(Vm *vm)
{
    HintmigDirtyBackend want = vm->cfg.dirty_backend;
    g_autoptr(GError) err = NULL;

    if (want != HINTMIG_DIRTY_AUTO) {
        return hintmig_dirty_backend_probe(want, &err)
            ? g_strdup_printf("%s (asked for)", hintmig_dirty_backend_name(want))
            : g_strdup_printf("%s (asked for, but unavailable: %s)",
                              hintmig_dirty_backend_name(want), err->message);
    }
    if (hintmig_dirty_backend_probe(HINTMIG_DIRTY_UFFD_WP, &err)) {
        return g_strdup("uffd-wp (preferred)");
    }
    g_autoptr(GError) err2 = NULL;
    if (hintmig_dirty_backend_probe(HINTMIG_DIRTY_SOFT_DIRTY, &err2)) {
        return g_strdup_printf("soft-dirty (fallback: %s)", err->message);
    }
    return g_strdup_printf("none (uffd-wp: %s; soft-dirty: %s)", err->message,
                           err2->message);
}
