/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A small VM for the harnesses: see fuzz_vm.h. */
#include "fuzz.h"
#include "fuzz_vm.h"

Vm *fuzz_vm_new(void)
{
    VmConfig cfg = {
        .ram = { .size = 16u << 20, .numa_node = -1 },
        .smp = 1,
        .start_paused = true,
        .uuid = "6e2d1a3c-1111-4222-8333-444455556666",
        .balloon = true,
        .free_page_hint = true,
    };
    g_autoptr(GError) err = NULL;

    FUZZ_CHECK(workload_parse("idle", cfg.ram.size, &cfg.workload, &err));
    Vm *vm = vm_new(&cfg, &err);
    if (!vm) {
        fprintf(stderr, "fuzz: cannot create the VM: %s\n", err->message);
        abort();
    }
    return vm;
}
