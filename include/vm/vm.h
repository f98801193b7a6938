/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig-vm: the reference VM host.
 *
 * A Vm owns guest RAM, the guest, its vCPU threads and the monitor's command
 * table.  Devices and the migration engine hook in through run-state
 * notifiers and monitor commands registered on this context; nothing here is
 * a global.
 */
#ifndef HINTMIG_VM_H
#define HINTMIG_VM_H

#include <stdbool.h>
#include <glib.h>

#include "guest/guest.h"
#include "vm/guest_ram.h"
#include "hintmig/hintmig.h"
#include "hmp/monitor.h"
#include "vm/vcpu.h"

/* QEMU's run states, with QEMU's names (see run_state_str()). */
typedef enum RunState {
    RUN_STATE_PRELAUNCH,      /* -S: never run yet */
    RUN_STATE_RUNNING,
    RUN_STATE_PAUSED,         /* stop */
    RUN_STATE_GUEST_PANICKED,
    RUN_STATE_INMIGRATE,
    RUN_STATE_FINISH_MIGRATE,
    RUN_STATE_POSTMIGRATE,
    RUN_STATE_SHUTDOWN,
    RUN_STATE__MAX,
} RunState;

typedef struct VmConfig {
    GuestRamOptions ram;
    unsigned smp;
    WorkloadConfig workload;
    bool start_paused;        /* -S */
    const char *uuid;         /* NULL: a random one */
    HintmigDirtyBackend dirty_backend;
    const char *incoming;     /* -incoming URI or "defer"; NULL: none */
    bool uuid_explicit;       /* set by vm_new: -uuid was given */
    bool balloon;             /* -device virtio-balloon */
    bool free_page_hint;      /* ...,free-page-hint=on */
    BalloonDriverConfig balloon_driver;   /* the guest driver's boot options */
} VmConfig;

typedef struct Vm Vm;

/* Called on the main thread after every run-state change. */
typedef void (*VmStateNotifyFn)(void *opaque, bool running, RunState state);

/*
 * Creates the VM: maps RAM, creates parked vCPUs, registers the monitor
 * commands.  Returns NULL with @errp set on bad configuration.
 */
Vm *vm_new(const VmConfig *cfg, GError **errp);

void vm_free(Vm *vm);

/* Returns QEMU's name of @state ("running", "paused", "prelaunch", ...). */
const char *run_state_str(RunState state);

RunState vm_run_state(const Vm *vm);

/*
 * Boots the guest if needed and runs the vCPUs (the monitor's "cont").
 * Returns false with @errp set when the VM cannot run (panicked guest,
 * incoming migration not finished, guest in RAM that does not fit).
 */
bool vm_start(Vm *vm, GError **errp);

/* Pauses the vCPUs and enters @state (the monitor's "stop" is PAUSED). */
void vm_stop(Vm *vm, RunState state);

/* Enters @state without running or pausing anything. */
void vm_set_run_state(Vm *vm, RunState state);

/* Adds a run-state notifier; returns an id for vm_remove_state_notifier. */
gulong vm_add_state_notifier(Vm *vm, VmStateNotifyFn fn, void *opaque);
void vm_remove_state_notifier(Vm *vm, gulong id);

Monitor *vm_monitor(Vm *vm);
/* Returns the virtio-balloon device, or NULL if the VM has none. */
struct VirtioBalloon *vm_balloon(Vm *vm);
Hintmig *vm_migration(Vm *vm);
GuestRam *vm_ram(Vm *vm);
Guest *vm_guest(Vm *vm);
VcpuSet *vm_vcpus(Vm *vm);
const char *vm_uuid(const Vm *vm);
const VmConfig *vm_config(const Vm *vm);

/* Asks the main loop to end (the monitor's "quit"). */
void vm_request_quit(Vm *vm);

/* Runs the main loop until quit. */
void vm_run_main_loop(Vm *vm);

/*
 * Runs the guest self-check, pausing the vCPUs around it if they run.
 * Returns the one-line verdict plus details (free with g_free).
 */
char *vm_check_guest(Vm *vm, GuestCheck *out);

/* Serializes all vCPU contexts into a new GBytes; the VM must be paused. */
GBytes *vm_save_vcpus(Vm *vm);

/*
 * Loads vCPU contexts from @blob; the VM must be paused.  Returns false
 * with @errp set when the blob does not fit this VM (size, vCPU count,
 * magic, indexes).
 */
bool vm_load_vcpus(Vm *vm, GBytes *blob, GError **errp);

/*
 * The VM's state sections: "vm" (the UUID), "cpus" (vCPU contexts) and,
 * with the device, "virtio-balloon".  The VM must be paused.
 */
GPtrArray *vm_save_sections(Vm *vm);

/*
 * Loads sections saved by vm_save_sections into a paused VM; false with
 * @errp when they do not fit it (vCPUs, a device it lacks).
 */
bool vm_load_sections(Vm *vm, GPtrArray *secs, GError **errp);

/* Writes RAM and vCPU state to @path; the VM must not be running. */
bool vm_save_state_file(Vm *vm, const char *path, GError **errp);

/* Loads RAM and vCPU state from @path; the VM must not be running. */
bool vm_load_state_file(Vm *vm, const char *path, GError **errp);

/* Returns the dirty-tracking backend migration would use, and why. */
char *vm_describe_dirty_backend(Vm *vm);

/*
 * Runs @fn(@vm, @data) on the main thread and returns when it has run
 * (directly, when called on the main thread).
 */
void vm_call_on_main(Vm *vm, void (*fn)(Vm *vm, void *data), void *data);

/* Sets the UUID (text, validated by the caller). */
void vm_set_uuid(Vm *vm, const char *uuid);

/*
 * Creates the migration engine for @vm (vm_migration.c); *@glue receives
 * state to g_free() after hintmig_free().  NULL with @errp set on failure.
 */
Hintmig *vm_migration_new(Vm *vm, void **glue, GError **errp);

/* Subscribes the VM's balloon device to its migrations (vm_migration.c). */
void vm_migration_attach_balloon(Vm *vm);

#endif
