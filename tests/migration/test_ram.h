/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Guest RAM for the engine's unit tests: one private anonymous region. */
#ifndef HINTMIG_TEST_RAM_H
#define HINTMIG_TEST_RAM_H

#include "migration/ram.h"

/* Maps @size bytes (THP off) as a one-region HmRam; NULL with @errp set. */
HmRam *test_ram_new(uint64_t size, GError **errp);

/* Unmaps and frees @ram (NULL is allowed). */
void test_ram_free(HmRam *ram);

/* The region's host address. */
static inline uint8_t *test_ram_host(const HmRam *ram)
{
    return ram->r[0].host;
}

#endif
