/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Little-endian fields in wire payloads: the one place that says how a
 * number is laid out on the wire.  Unaligned buffers are fine.
 */
#ifndef HINTMIG_LE_H
#define HINTMIG_LE_H

#include <stdint.h>
#include <string.h>
#include <glib.h>

static inline void le_put16(uint8_t *p, uint16_t v) { v = GUINT16_TO_LE(v); memcpy(p, &v, 2); }
static inline void le_put32(uint8_t *p, uint32_t v) { v = GUINT32_TO_LE(v); memcpy(p, &v, 4); }
static inline void le_put64(uint8_t *p, uint64_t v) { v = GUINT64_TO_LE(v); memcpy(p, &v, 8); }

static inline uint16_t le_get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return GUINT16_FROM_LE(v);
}

static inline uint32_t le_get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return GUINT32_FROM_LE(v);
}

static inline uint64_t le_get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return GUINT64_FROM_LE(v);
}

#endif
