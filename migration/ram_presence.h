/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Which guest pages are backed by memory at all.  A page that is neither
 * present nor swapped has never been touched and reads as zero, so it need
 * not be read (reading would fault in the zero page for nothing); nor need
 * a page that only maps the shared zero page (it was read, never written).
 */
#ifndef HINTMIG_RAM_PRESENCE_H
#define HINTMIG_RAM_PRESENCE_H

#include <glib.h>
#include "migration/ram.h"

/*
 * Returns a bitmap with a bit set for every page of @ram that is present or
 * swapped (free with g_free), using PAGEMAP_SCAN where the kernel has it and
 * /proc/self/pagemap otherwise.  Returns NULL with @errp set if neither works.
 */
unsigned long *ram_presence_scan(const HmRam *ram, GError **errp);

#endif
