/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The HMP tokenizer and dispatcher with hintmig-vm's real command table
 * (run control, guest and balloon info, the migration commands).  The
 * input is one or more lines.  Commands that would reach outside this
 * process are tokenized but not run: cont (starts the vCPUs), quit,
 * x-save-state / x-load-state (files named by the input), and the
 * migration commands given a URI (anything with a ':').
 */
#include <string.h>

#include "fuzz.h"
#include "fuzz_vm.h"

static Vm *vm;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    vm = fuzz_vm_new();
    return 0;
}

static bool may_run(char **argv)
{
    static const char *const never[] = { "cont", "c", "quit", "q", "x-save-state",
                                         "x-load-state" };
    for (size_t i = 0; i < G_N_ELEMENTS(never); i++) {
        if (!strcmp(argv[0], never[i])) {
            return false;
        }
    }
    if (g_str_has_prefix(argv[0], "migrate")) {
        for (char **a = argv + 1; *a; a++) {
            if (strchr(*a, ':')) {
                return false;
            }
        }
    }
    return true;
}

static void line(Monitor *mon, const char *text, GString *out)
{
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) argv = monitor_tokenize(text, &err);

    if (!argv) {
        FUZZ_CHECK(err);
    } else {
        FUZZ_CHECK(g_strv_length(argv) <= MONITOR_MAX_ARGS);
        if (argv[0] && !may_run(argv)) {
            return;
        }
    }
    g_string_truncate(out, 0);
    monitor_handle_line(mon, text, out);
    /* Every answer is whole lines. */
    FUZZ_CHECK(!out->len || out->str[out->len - 1] == '\n');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autofree char *text = g_strndup((const char *)data, size);
    g_autoptr(GString) out = g_string_new(NULL);
    Monitor *mon = vm_monitor(vm);

    /* As the chardev does: one command a line, lines of bounded length. */
    for (char *p = text, *nl; p; p = nl) {
        nl = strchr(p, '\n');
        if (nl) {
            *nl++ = '\0';
        }
        if (strlen(p) < MONITOR_MAX_LINE) {
            line(mon, p, out);
        }
    }
    return 0;
}
