/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A small hintmig-vm VM for the harnesses that need one (state, HMP). */
#ifndef HINTMIG_FUZZ_VM_H
#define HINTMIG_FUZZ_VM_H

#include "vm/vm.h"

/*
 * Creates a paused 16 MiB, 1-vCPU VM (as the recorded migration's) with a
 * virtio-balloon offering free page hints, the real monitor commands
 * registered; aborts on failure.
 */
Vm *fuzz_vm_new(void);

#endif
