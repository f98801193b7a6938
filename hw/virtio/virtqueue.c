/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Split virtqueue, device side: see include/hw/virtio/virtqueue.h. */
#include <string.h>

#include "hw/virtio/virtqueue.h"

void *vq_gpa_to_hva(const GuestRam *ram, uint64_t gpa, uint64_t len)
{
    /* Written so that gpa + len cannot overflow. */
    if (gpa > ram->size || len > ram->size - gpa) {
        return NULL;
    }
    return ram->host + gpa;
}

static void vq_break(VirtQueue *vq, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void vq_break(VirtQueue *vq, const char *fmt, ...)
{
    if (!vq->error) {
        va_list ap;
        va_start(ap, fmt);
        vq->error = g_strdup_vprintf(fmt, ap);
        va_end(ap);
    }
}

bool vq_setup(VirtQueue *vq, GuestRam *ram, uint32_t size, uint64_t desc_gpa,
              uint64_t avail_gpa, uint64_t used_gpa, GError **errp)
{
    if (!size || size > VIRTQ_MAX_SIZE || (size & (size - 1))) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "virtqueue size %u is not a power of two up to %u", size,
                    VIRTQ_MAX_SIZE);
        return false;
    }
    if ((desc_gpa % 16) || (avail_gpa % 2) || (used_gpa % 4) ||
        !vq_gpa_to_hva(ram, desc_gpa, VRING_DESC_BYTES(size)) ||
        !vq_gpa_to_hva(ram, avail_gpa, VRING_AVAIL_BYTES(size)) ||
        !vq_gpa_to_hva(ram, used_gpa, VRING_USED_BYTES(size))) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "virtqueue rings misaligned or outside guest RAM (desc 0x%"
                    G_GINT64_MODIFIER "x, avail 0x%" G_GINT64_MODIFIER "x, used 0x%"
                    G_GINT64_MODIFIER "x)", (guint64)desc_gpa, (guint64)avail_gpa,
                    (guint64)used_gpa);
        return false;
    }
    vq_reset(vq);
    vq->ram = ram;
    vq->size = size;
    vq->desc_gpa = desc_gpa;
    vq->avail_gpa = avail_gpa;
    vq->used_gpa = used_gpa;
    vq->used_idx = GUINT16_FROM_LE(*(uint16_t *)(ram->host + used_gpa + 2));
    vq->last_avail_idx = vq->used_idx;
    return true;
}

void vq_reset(VirtQueue *vq)
{
    g_clear_pointer(&vq->error, g_free);
    vq->size = 0;
    vq->last_avail_idx = vq->used_idx = 0;
}

static uint16_t load16(const void *p)
{
    return GUINT16_FROM_LE(__atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE));
}

static VringDesc read_desc(const uint8_t *table, uint32_t i)
{
    VringDesc d;
    memcpy(&d, table + (size_t)i * 16, 16);
    d.addr = GUINT64_FROM_LE(d.addr);
    d.len = GUINT32_FROM_LE(d.len);
    d.flags = GUINT16_FROM_LE(d.flags);
    d.next = GUINT16_FROM_LE(d.next);
    return d;
}

/* Adds one buffer to @elem after checking it; false breaks the queue. */
static bool add_buf(VirtQueue *vq, VqElem *elem, const VringDesc *d)
{
    bool write = d->flags & VRING_DESC_F_WRITE;
    if (!d->len) {
        vq_break(vq, "descriptor with zero length");
        return false;
    }
    if (!vq_gpa_to_hva(vq->ram, d->addr, d->len)) {
        vq_break(vq, "descriptor buffer 0x%" G_GINT64_MODIFIER "x+%u is outside "
                 "guest RAM", (guint64)d->addr, d->len);
        return false;
    }
    if (!write && elem->n_in) {
        vq_break(vq, "device-readable descriptor after a writable one");
        return false;
    }
    if ((write ? elem->n_in : elem->n_out) >= VQ_MAX_SG) {
        vq_break(vq, "more than %d buffers in one element", VQ_MAX_SG);
        return false;
    }
    VqBuf *b = write ? &elem->in[elem->n_in++] : &elem->out[elem->n_out++];
    b->gpa = d->addr;
    b->len = d->len;
    return true;
}

/* Walks a chain in @table of @n entries from @i, at most @n descriptors. */
static bool walk(VirtQueue *vq, VqElem *elem, const uint8_t *table, uint32_t n,
                 uint32_t i, bool indirect)
{
    for (uint32_t count = 0;; count++) {
        if (i >= n) {
            vq_break(vq, "descriptor index %u beyond the %s table of %u", i,
                     indirect ? "indirect" : "descriptor", n);
            return false;
        }
        if (count >= n) {
            vq_break(vq, "descriptor chain loops");
            return false;
        }
        VringDesc d = read_desc(table, i);
        if (d.flags & VRING_DESC_F_INDIRECT) {
            if (indirect) {
                vq_break(vq, "indirect descriptor inside an indirect table");
                return false;
            }
            if (count || (d.flags & VRING_DESC_F_NEXT)) {
                vq_break(vq, "indirect descriptor chained with others");
                return false;
            }
            if (!d.len || d.len % 16 || d.len / 16 > VIRTQ_MAX_SIZE) {
                vq_break(vq, "indirect table of %u bytes", d.len);
                return false;
            }
            const uint8_t *t = vq_gpa_to_hva(vq->ram, d.addr, d.len);
            if (!t || d.addr % 16) {
                vq_break(vq, "indirect table outside guest RAM or misaligned");
                return false;
            }
            return walk(vq, elem, t, d.len / 16, 0, true);
        }
        if (!add_buf(vq, elem, &d)) {
            return false;
        }
        if (!(d.flags & VRING_DESC_F_NEXT)) {
            return true;
        }
        i = d.next;
    }
}

int vq_pop(VirtQueue *vq, VqElem *elem)
{
    if (vq->error || !vq->size) {
        return vq->error ? -1 : 0;
    }
    const uint8_t *avail = vq->ram->host + vq->avail_gpa;
    uint16_t avail_idx = load16(avail + 2);
    uint16_t pending = avail_idx - vq->last_avail_idx;

    if (pending > vq->size) {
        vq_break(vq, "avail index jumped by %u in a queue of %u", pending, vq->size);
        return -1;
    }
    if (!pending) {
        return 0;
    }
    uint16_t head = load16(avail + 4 + 2 * (vq->last_avail_idx % vq->size));
    *elem = (VqElem) { .head = head };
    if (!walk(vq, elem, vq->ram->host + vq->desc_gpa, vq->size, head, false)) {
        return -1;
    }
    vq->last_avail_idx++;
    return 1;
}

void vq_push(VirtQueue *vq, const VqElem *elem, uint32_t written)
{
    if (vq->error || !vq->size) {
        return;
    }
    uint8_t *used = vq->ram->host + vq->used_gpa;
    VringUsedElem u = { GUINT32_TO_LE(elem->head), GUINT32_TO_LE(written) };
    memcpy(used + 4 + 8 * (vq->used_idx % vq->size), &u, 8);
    vq->used_idx++;
    /* The element must be visible before the index that publishes it. */
    __atomic_store_n((uint16_t *)(used + 2), GUINT16_TO_LE(vq->used_idx),
                     __ATOMIC_RELEASE);
}
