/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Whole-VM state in a file: named state sections (vCPUs, devices) plus RAM.
 *
 * The VMM hands in opaque sections, so this knows nothing of any one VMM.
 * Layout (little-endian): magic "HMSTATE1", u32 version, u32 page size,
 * u64 RAM size, u32 length of the encoded sections, the sections (see
 * vmstate_sections_encode), the RAM, and a SHA-256 of everything before.
 */
#ifndef HINTMIG_VMSTATE_FILE_H
#define HINTMIG_VMSTATE_FILE_H

#include <glib.h>
#include "vm/guest_ram.h"

#define VMSTATE_MAX_SECTIONS 64
#define VMSTATE_MAX_SECTION_SIZE (1u << 20)

typedef struct VmStateSection {
    char *name;
    GBytes *data;
} VmStateSection;

/* Returns a section named @name holding a copy of @len bytes at @data. */
VmStateSection *vmstate_section_new(const char *name, const void *data,
                                    size_t len);
void vmstate_section_free(VmStateSection *s);

/*
 * Writes @sections (VmStateSection *) and @ram to @path.  Returns false with
 * @errp set on an I/O error (the file is then removed).
 */
bool vmstate_file_save(const char *path, const GuestRam *ram,
                       GPtrArray *sections, GError **errp);

/*
 * Reads @path into @ram and returns its sections (free with
 * g_ptr_array_unref).  The checksum, the page size and the RAM size are
 * verified before RAM is touched; on any error NULL is returned with @errp
 * set and RAM is unchanged.
 */
GPtrArray *vmstate_file_load(const char *path, GuestRam *ram, GError **errp);

/*
 * Encodes @sections as u32 count, then per section u32 name length, name,
 * u32 data length, data (little-endian): the form both state files and the
 * migration stream carry.
 */
GBytes *vmstate_sections_encode(GPtrArray *sections);

/*
 * Decodes what vmstate_sections_encode made; returns NULL with @errp set
 * when it is malformed (counts, lengths and names are all checked).
 */
GPtrArray *vmstate_sections_decode(const void *data, size_t len, GError **errp);

/* Returns the section named @name in @sections, or NULL. */
GBytes *vmstate_sections_find(GPtrArray *sections, const char *name);

#endif
