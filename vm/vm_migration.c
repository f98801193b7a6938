/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig-vm's side of the migration engine: the HintmigHostOps that stop,
 * resume and start this VM, and save and load its state sections ("vm": the
 * UUID; "cpus": the vCPU contexts).
 */
#include <string.h>

#include "vm/vm.h"
#include "hw/virtio/virtio-balloon-hint.h"
#include "vm/vmstate_file.h"
#include "vm/thread_prio.h"


typedef struct VmMigration {
    Vm *vm;
    RunState before;          /* run state when stop() was called */
} VmMigration;

static VmMigration *vmm_of(void *opaque)
{
    return opaque;
}

static void do_stop(Vm *vm, void *data)
{
    VmMigration *vmm = data;
    vmm->before = vm_run_state(vm);
    vm_stop(vm, RUN_STATE_FINISH_MIGRATE);
}

static void host_stop(void *opaque)
{
    vm_call_on_main(vmm_of(opaque)->vm, do_stop, opaque);
}

static void do_resume(Vm *vm, void *data)
{
    VmMigration *vmm = data;
    g_autoptr(GError) err = NULL;

    if (vmm->before == RUN_STATE_RUNNING) {
        if (!vm_start(vm, &err)) {
            g_printerr("hintmig-vm: cannot resume after migration: %s\n", err->message);
            vm_set_run_state(vm, RUN_STATE_PAUSED);
        }
    } else {
        vm_set_run_state(vm, vmm->before);
    }
}

static void host_resume(void *opaque)
{
    vm_call_on_main(vmm_of(opaque)->vm, do_resume, opaque);
}

static void do_migrated(Vm *vm, void *data)
{
    (void)data;
    vm_set_run_state(vm, RUN_STATE_POSTMIGRATE);
}

static void host_migrated(void *opaque)
{
    vm_call_on_main(vmm_of(opaque)->vm, do_migrated, NULL);
}

static bool host_save_state(void *opaque, GByteArray *out, GError **errp)
{
    g_autoptr(GPtrArray) secs = vm_save_sections(vmm_of(opaque)->vm);
    g_autoptr(GBytes) blob = vmstate_sections_encode(secs);
    gsize len;
    const uint8_t *d = g_bytes_get_data(blob, &len);

    (void)errp;
    g_byte_array_append(out, d, len);
    return true;
}

static bool host_load_state(void *opaque, const uint8_t *data, size_t len,
                            GError **errp)
{
    Vm *vm = vmm_of(opaque)->vm;
    g_autoptr(GPtrArray) secs = vmstate_sections_decode(data, len, errp);
    return secs && vm_load_sections(vm, secs, errp) &&
           hintmig_set_uuid(vm_migration(vm), vm_uuid(vm), errp);
}

static void do_incoming_done(Vm *vm, void *data)
{
    g_autoptr(GError) err = NULL;
    (void)data;

    /* Leave "inmigrate": the guest is complete now. */
    vm_set_run_state(vm, RUN_STATE_PAUSED);
    if (!vm_config(vm)->start_paused && !vm_start(vm, &err)) {
        g_printerr("hintmig-vm: migrated guest cannot start: %s\n", err->message);
    }
}

static void host_incoming_done(void *opaque)
{
    vm_call_on_main(vmm_of(opaque)->vm, do_incoming_done, NULL);
}

static void host_quiesce(void *opaque, bool pause)
{
    vcpu_set_hold(vm_vcpus(vmm_of(opaque)->vm), pause);
}

static bool host_can_migrate(void *opaque, GError **errp)
{
    RunState st = vm_run_state(vmm_of(opaque)->vm);
    if (st == RUN_STATE_INMIGRATE) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "the VM is waiting for an incoming migration");
        return false;
    }
    return true;
}

static bool host_can_receive(void *opaque, GError **errp)
{
    Vm *vm = vmm_of(opaque)->vm;
    if (!vm_config(vm)->incoming) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "'-incoming' was not specified on the command line");
        return false;
    }
    if (vm_run_state(vm) != RUN_STATE_INMIGRATE) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "the incoming migration has already completed");
        return false;
    }
    return true;
}

/* hintmig-vm's choice: requests real-time where allowed, bulk at nice 10. */
static bool host_thread_role(void *opaque, HintmigThreadRole role)
{
    (void)opaque;
    if (role == HINTMIG_THREAD_URGENT) {
        return thread_prio_urgent();
    }
    thread_prio_background();
    return false;
}

/* auto-converge: the migration thread throttles the vCPUs directly. */
static void host_throttle(void *opaque, unsigned percent)
{
    vcpu_set_throttle(vm_vcpus(vmm_of(opaque)->vm), percent);
}

static const HintmigHostOps vm_migration_ops = {
    .stop = host_stop,
    .resume = host_resume,
    .migrated = host_migrated,
    .save_state = host_save_state,
    .load_state = host_load_state,
    .incoming_done = host_incoming_done,
    .quiesce = host_quiesce,
    .can_migrate = host_can_migrate,
    .can_receive = host_can_receive,
    .thread_role = host_thread_role,
    .throttle = host_throttle,
};

Hintmig *vm_migration_new(Vm *vm, void **glue, GError **errp)
{
    VmMigration *vmm = g_new0(VmMigration, 1);
    const VmConfig *cfg = vm_config(vm);
    GuestRam *ram = vm_ram(vm);
    /* One region: the synthetic guest's RAM is one flat range from 0. */
    HintmigRamRegion region = {
        .name = "ram",
        .gpa = 0,
        .host = ram->host,
        .size = ram->size,
        .page_size = GUEST_PAGE_SIZE,
        .backing = HINTMIG_BACKING_ANON,
        .fd = -1,
    };
    HintmigHost host = {
        .ops = &vm_migration_ops,
        .opaque = vmm,
        .context = g_main_context_default(),   /* hintmig-vm's loop runs it */
        .regions = &region,
        .nregions = 1,
        .uuid_explicit = cfg->uuid_explicit,
        .nvcpus = cfg->smp,
        .dirty_backend = cfg->dirty_backend,
    };
    vmm->vm = vm;
    g_strlcpy(host.uuid, vm_uuid(vm), sizeof(host.uuid));
    Hintmig *m = hintmig_new(&host, errp);
    if (!m) {
        g_free(vmm);
        return NULL;
    }
    *glue = vmm;
    return m;
}

/* ---- the balloon device as a free page hint supplier ---- */

static void balloon_event(void *opaque, HintmigEventData *d)
{
    VirtioBalloon *vb = vm_balloon(opaque);

    switch (d->event) {
    case HINTMIG_EV_HINT_PROBE:
        d->hint_capable = vb_host_features(vb) &
                          (1ull << VIRTIO_BALLOON_F_FREE_PAGE_HINT);
        break;
    case HINTMIG_EV_HINT_START:
        d->cmd_id = fph_start(vb);
        d->poison = vb_poison(vb);
        if (!d->cmd_id) {
            g_strlcpy(d->why_not, vb_hint_ready(vb)
                      ? "the VM is not running"
                      : "the guest's balloon driver is not ready",
                      sizeof(d->why_not));
        }
        break;
    case HINTMIG_EV_HINT_STOP:
        fph_stop(vb);
        break;
    case HINTMIG_EV_DONE:
        fph_done(vb);
        break;
    }
}

static void balloon_hint(void *opaque, uint32_t cmd_id, uint64_t gpa, uint64_t len)
{
    hintmig_free_page_hint(vm_migration(opaque), cmd_id, gpa, len);
}

static void balloon_round_done(void *opaque, uint32_t cmd_id)
{
    hintmig_free_page_round_done(vm_migration(opaque), cmd_id);
}

void vm_migration_attach_balloon(Vm *vm)
{
    VirtioBalloonClient c = { balloon_hint, balloon_round_done, vm };
    vb_set_client(vm_balloon(vm), &c);
    hintmig_add_notifier(vm_migration(vm), balloon_event, vm);
}
