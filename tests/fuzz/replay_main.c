/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Runs a fuzz harness over every file in the directories given (seed
 * corpus, regression inputs), each in a child process, so that a crash is
 * counted as one failed input and the others still run.  Prints the
 * "TESTS:" line scripts/test.sh sums; exits 1 if any input failed.
 */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>

#include "fuzz.h"

static gint by_name(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_one(const char *path)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *data = NULL;
    gsize len;

    if (!g_file_get_contents(path, &data, &len, &err)) {
        fprintf(stderr, "%s\n", err->message);
        return 1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        int argc = 1;
        char *args[] = { (char *)"replay", NULL };
        char **argv = args;
        if (LLVMFuzzerInitialize) {
            LLVMFuzzerInitialize(&argc, &argv);
        }
        LLVMFuzzerTestOneInput((const uint8_t *)data, len);
        fflush(NULL);
        _exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return 0;
    }
    fprintf(stderr, "FAIL: %s (%s %d)\n", path,
            WIFSIGNALED(status) ? "signal" : "exit status",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    return 1;
}

int main(int argc, char **argv)
{
    int run = 0, failed = 0;

    for (int i = 1; i < argc; i++) {
        g_autoptr(GDir) dir = g_dir_open(argv[i], 0, NULL);
        if (!dir) {
            continue;          /* no regression inputs yet */
        }
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        const char *name;
        while ((name = g_dir_read_name(dir))) {
            if (name[0] != '.') {
                g_ptr_array_add(names, g_build_filename(argv[i], name, NULL));
            }
        }
        g_ptr_array_sort(names, by_name);
        for (guint k = 0; k < names->len; k++) {
            failed += run_one(g_ptr_array_index(names, k));
            run++;
        }
    }
    printf("TESTS: %d run, %d failed, 0 skipped\n", run, failed);
    if (!run) {
        fprintf(stderr, "no inputs found\n");
        return 1;
    }
    return failed ? 1 : 0;
}
