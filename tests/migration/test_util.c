/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Shared test plumbing: see test_util.h. */
#include <stdio.h>
#include <stdlib.h>

#include "test_util.h"

static int skipped;

void test_skip(const char *name, const char *reason)
{
    printf("SKIP: %s: %s\n", name, reason);
    fflush(stdout);
    skipped++;
}

int test_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int run = srunner_ntests_run(sr);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    printf("TESTS: %d run, %d failed, %d skipped\n", run, failed, skipped);
    if (failed) {
        return 1;
    }
    return run == 0 && skipped ? 77 : 0;
}

char *test_tmpdir(void)
{
    g_autoptr(GError) err = NULL;
    char *dir = g_dir_make_tmp("hintmig-test-XXXXXX", &err);
    if (!dir) {
        fprintf(stderr, "cannot make a temporary directory: %s\n", err->message);
        abort();
    }
    return dir;
}

void test_rmdir(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *p = g_build_filename(dir, name, NULL);
        remove(p);
    }
    if (d) {
        g_dir_close(d);
    }
    remove(dir);
}
