/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The libFuzzer entry points every harness defines, and its own checks.
 *
 * Each harness is built twice: against libFuzzer (scripts/fuzz.sh, clang)
 * and against replay_main.c in every build, which runs it over its seed
 * corpus and its regression inputs.
 */
#ifndef HINTMIG_FUZZ_H
#define HINTMIG_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Optional: a harness that needs one-time set-up defines it. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant is a crash: libFuzzer keeps the input, replay fails. */
#define FUZZ_CHECK(cond)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,          \
                    __LINE__, #cond);                                       \
            abort();                                                        \
        }                                                                   \
    } while (0)

#endif
