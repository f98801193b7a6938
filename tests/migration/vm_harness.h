/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * End-to-end harness: start hintmig-vm processes (the binary named by
 * $HINTMIG_VM), talk to their monitors, stop them.  Failures are Check
 * assertions.
 */
#ifndef HINTMIG_VM_HARNESS_H
#define HINTMIG_VM_HARNESS_H

#include <stdint.h>
#include <glib.h>
#include "vm/hmp_client.h"

typedef struct TestVm {
    GPid pid;
    char *sock;
    char *log;          /* the VM's stderr */
    HmpClient *hmp;
} TestVm;

/*
 * Starts hintmig-vm with @args (NULL-terminated) plus a monitor socket in
 * @dir named after @name, and connects to it.
 */
TestVm *test_vm_start(const char *dir, const char *name,
                      const char *const *args);

/* Runs a monitor command and returns its output (free with g_free). */
char *test_vm_cmd(TestVm *vm, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* Runs a monitor command and asserts that it printed nothing (success). */
void test_vm_cmd_ok(TestVm *vm, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Sends "quit" and asserts a clean exit 0; frees @vm. */
void test_vm_quit(TestVm *vm);

/* Sends SIGTERM and asserts a clean exit 0; frees @vm. */
void test_vm_term(TestVm *vm);

/* Sends @sig to the VM (SIGSTOP freezes it, SIGCONT thaws it). */
void test_vm_signal(TestVm *vm, int sig);

/*
 * Polls "info migrate" until the status starts with one of @want
 * (NULL-terminated) and returns it; fails the test after @timeout_ms.
 */
char *test_vm_wait_status_any(TestVm *vm, const char *const *want, int timeout_ms);

/* Kills the VM with SIGKILL and frees @vm. */
void test_vm_kill(TestVm *vm);

/*
 * Runs hintmig-vm with @args to completion; returns its exit status and
 * sets *@out to its stdout and stderr.
 */
int test_vm_run(const char *const *args, char **out);

/* Returns the value after "@key: " on a line of @text, or NULL. */
char *test_field(const char *text, const char *key);

/* The number after "@key: " on a line of @text; fails the test if absent. */
uint64_t test_field_u64(const char *text, const char *key);

/*
 * Polls "info migrate" until the status starts with @want and returns it;
 * fails the test after @timeout_ms.
 */
char *test_vm_wait_status(TestVm *vm, const char *want, int timeout_ms);

/*
 * Polls "info status" until it is @want (a whole line, as "VM status:
 * running\n") and returns the last answer, @want or not, after at most
 * @timeout_ms: run states follow a migration's status on the main loop.
 */
char *test_vm_wait_run_state(TestVm *vm, const char *want, int timeout_ms);

/* Asserts that the guest's own memory check passes. */
void test_vm_assert_guest_ok(TestVm *vm);

#endif
