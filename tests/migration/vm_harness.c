/* SPDX-License-Identifier: GPL-2.0-or-later */
/* End-to-end harness: see vm_harness.h. */
#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>

#include "vm_harness.h"

static const char *vm_binary(void)
{
    const char *b = g_getenv("HINTMIG_VM");
    ck_assert_msg(b, "HINTMIG_VM is not set (run the tests through meson)");
    return b;
}

static GPtrArray *argv_for(const char *const *args)
{
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, (char *)vm_binary());
    for (int i = 0; args && args[i]; i++) {
        g_ptr_array_add(argv, (char *)args[i]);
    }
    return argv;
}

TestVm *test_vm_start(const char *dir, const char *name,
                      const char *const *args)
{
    TestVm *vm = g_new0(TestVm, 1);
    g_autoptr(GError) err = NULL;
    vm->sock = g_strdup_printf("%s/%s.sock", dir, name);
    vm->log = g_strdup_printf("%s/%s.log", dir, name);
    g_autofree char *mon = g_strdup_printf("unix:%s,server,nowait", vm->sock);
    GPtrArray *argv = argv_for(args);
    g_ptr_array_add(argv, "-monitor");
    g_ptr_array_add(argv, mon);
    g_ptr_array_add(argv, NULL);

    /* stderr goes to a log file that the assertions below can quote. */
    g_autofree char *cmd = NULL;
    {
        g_autofree char *quoted_log = g_shell_quote(vm->log);
        GString *c = g_string_new("exec");
        for (guint i = 0; argv->pdata[i]; i++) {
            g_autofree char *q = g_shell_quote(argv->pdata[i]);
            g_string_append_printf(c, " %s", q);
        }
        g_string_append_printf(c, " 2>%s", quoted_log);
        cmd = g_string_free(c, FALSE);
    }
    const char *sh[] = { "/bin/sh", "-c", cmd, NULL };
    ck_assert_msg(g_spawn_async(NULL, (char **)sh, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                NULL, NULL, &vm->pid, &err),
                  "spawn: %s", err ? err->message : "");
    g_ptr_array_free(argv, TRUE);
    vm->hmp = hmp_client_connect(vm->sock, 10000, &err);
    if (!vm->hmp) {
        g_autofree char *log = NULL;
        g_file_get_contents(vm->log, &log, NULL, NULL);
        ck_abort_msg("%s: %s; its stderr: %s", name, err->message, log ? log : "");
    }
    return vm;
}

char *test_vm_cmd(TestVm *vm, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *cmd = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_autoptr(GError) err = NULL;
    char *out = hmp_client_command(vm->hmp, cmd, 60000, &err);
    ck_assert_msg(out, "'%s': %s", cmd, err ? err->message : "");
    return out;
}

void test_vm_cmd_ok(TestVm *vm, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *cmd = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_autofree char *out = test_vm_cmd(vm, "%s", cmd);
    ck_assert_msg(!strcmp(out, ""), "'%s' said: %s", cmd, out);
}

static int wait_exit(GPid pid, int timeout_ms)
{
    int status;
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            return status;
        }
        g_usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    ck_abort_msg("VM %d did not exit in %d ms", pid, timeout_ms);
    return -1;
}

static void vm_free(TestVm *vm)
{
    hmp_client_free(vm->hmp);
    g_spawn_close_pid(vm->pid);
    g_free(vm->sock);
    g_free(vm->log);
    g_free(vm);
}

void test_vm_quit(TestVm *vm)
{
    g_autoptr(GError) err = NULL;
    g_free(hmp_client_command(vm->hmp, "quit", 10000, &err));
    int status = wait_exit(vm->pid, 20000);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "VM exited with status 0x%x", status);
    vm_free(vm);
}

void test_vm_signal(TestVm *vm, int sig)
{
    ck_assert_int_eq(kill(vm->pid, sig), 0);
}

char *test_vm_wait_status_any(TestVm *vm, const char *const *want, int timeout_ms)
{
    for (int t = 0;; t += 20) {
        g_autofree char *out = test_vm_cmd(vm, "info migrate");
        char *s = test_field(out, "Migration status");
        for (int i = 0; s && want[i]; i++) {
            if (g_str_has_prefix(s, want[i])) {
                return s;
            }
        }
        if (t >= timeout_ms) {
            ck_abort_msg("none of the awaited statuses reached in %d ms; last:\n%s",
                         timeout_ms, out);
        }
        g_free(s);
        g_usleep(20000);
    }
}

void test_vm_kill(TestVm *vm)
{
    kill(vm->pid, SIGKILL);
    wait_exit(vm->pid, 20000);
    vm_free(vm);
}

void test_vm_term(TestVm *vm)
{
    kill(vm->pid, SIGTERM);
    int status = wait_exit(vm->pid, 20000);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "VM exited on SIGTERM with status 0x%x", status);
    vm_free(vm);
}

int test_vm_run(const char *const *args, char **out)
{
    GPtrArray *argv = argv_for(args);
    g_autoptr(GError) err = NULL;
    char *so = NULL, *se = NULL;
    int status;

    g_ptr_array_add(argv, NULL);
    ck_assert_msg(g_spawn_sync(NULL, (char **)argv->pdata, NULL, 0, NULL, NULL,
                               &so, &se, &status, &err),
                  "spawn: %s", err ? err->message : "");
    g_ptr_array_free(argv, TRUE);
    *out = g_strconcat(so, se, NULL);
    g_free(so);
    g_free(se);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

char *test_field(const char *text, const char *key)
{
    g_autofree char *needle = g_strdup_printf("%s: ", key);
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    for (int i = 0; lines[i]; i++) {
        if (g_str_has_prefix(lines[i], needle)) {
            return g_strdup(lines[i] + strlen(needle));
        }
    }
    return NULL;
}

uint64_t test_field_u64(const char *text, const char *key)
{
    g_autofree char *v = test_field(text, key);
    ck_assert_msg(v, "no '%s:' in:\n%s", key, text);
    return g_ascii_strtoull(v, NULL, 10);
}

char *test_vm_wait_status(TestVm *vm, const char *want, int timeout_ms)
{
    for (int t = 0;; t += 20) {
        g_autofree char *out = test_vm_cmd(vm, "info migrate");
        char *s = test_field(out, "Migration status");
        if (s && g_str_has_prefix(s, want)) {
            return s;
        }
        if (t >= timeout_ms) {
            ck_abort_msg("status '%s' not reached in %d ms; last:\n%s", want,
                         timeout_ms, out);
        }
        g_free(s);
        g_usleep(20000);
    }
}

void test_vm_assert_guest_ok(TestVm *vm)
{
    g_autofree char *g = test_vm_cmd(vm, "info guest");
    ck_assert_msg(g_str_has_prefix(g, "guest memory check: OK ("), "%s", g);
}

char *test_vm_wait_run_state(TestVm *vm, const char *want, int timeout_ms)
{
    for (int t = 0;; t += 10) {
        char *st = test_vm_cmd(vm, "info status");
        if (!strcmp(st, want) || t >= timeout_ms) {
            return st;
        }
        g_free(st);
        g_usleep(10000);
    }
}
