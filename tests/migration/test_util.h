/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shared test plumbing: SKIP reporting and suite running.
 *
 * A test case that needs a kernel feature is added only when the feature
 * works; otherwise a "SKIP: <case>: <reason>" line is printed and counted.
 * A binary whose every case was skipped exits 77, which meson reports as
 * SKIP, never as a pass.
 */
#ifndef HINTMIG_TEST_UTIL_H
#define HINTMIG_TEST_UTIL_H

#include <check.h>
#include <glib.h>

/* Records that test case @name is skipped because of @reason. */
void test_skip(const char *name, const char *reason);

/* Runs @s; returns the process exit status (0, 1, or 77 if all skipped). */
int test_run(Suite *s);

/* Returns a new temporary directory (removed by test_rmdir). */
char *test_tmpdir(void);
void test_rmdir(const char *dir);

#endif
