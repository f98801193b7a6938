/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Sizes as QEMU users write them: 512, 64K, 1200M, 2G, 1T. */
#ifndef HINTMIG_SIZE_PARSE_H
#define HINTMIG_SIZE_PARSE_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

/*
 * Parses @str as a size.  A suffix K, M, G or T (case-insensitive, an
 * optional trailing 'B' or 'iB' allowed) multiplies by a power of 1024; a
 * bare number is multiplied by @default_unit (1 for bytes; QEMU's -m uses
 * MiB).  Returns true and sets *@out, or false with @errp set.
 */
bool size_parse(const char *str, uint64_t default_unit, uint64_t *out,
                GError **errp);

/* Formats @bytes as "1.5 GiB" style text into a new string. */
char *size_to_str(uint64_t bytes);

#endif
