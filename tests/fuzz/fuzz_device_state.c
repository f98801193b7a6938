/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Device state as a migration carries it (DEVICE_STATE parts, reassembled):
 * the sections decoder, then the VM's own loader (UUID, vCPUs,
 * virtio-balloon) on a paused VM.  What decodes must encode back to the
 * same bytes.
 */
#include <string.h>

#include "vm/vmstate_file.h"
#include "fuzz.h"
#include "fuzz_vm.h"

static Vm *vm;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    vm = fuzz_vm_new();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) secs = vmstate_sections_decode(data, size, &err);

    if (!secs) {
        FUZZ_CHECK(err);
        return 0;
    }
    g_autoptr(GBytes) again = vmstate_sections_encode(secs);
    FUZZ_CHECK(g_bytes_get_size(again) == size &&
               !memcmp(g_bytes_get_data(again, NULL), data, size));
    if (!vm_load_sections(vm, secs, &err)) {
        FUZZ_CHECK(err);
        return 0;
    }
    /* Loaded state saves again, and the VM stays usable. */
    g_autoptr(GPtrArray) saved = vm_save_sections(vm);
    FUZZ_CHECK(saved->len >= 2);
    FUZZ_CHECK(g_uuid_string_is_valid(vm_uuid(vm)));
    return 0;
}
