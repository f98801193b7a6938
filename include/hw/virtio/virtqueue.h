/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The device side of a split virtqueue whose rings live in guest RAM.
 *
 * Everything the guest wrote is untrusted: indexes, descriptor chains,
 * addresses and lengths are checked before use.  A queue that finds any of
 * them wrong is marked broken with a message (virtio's NEEDS_RESET), pops
 * nothing more, and never reads or writes outside guest RAM.
 */
#ifndef HINTMIG_VIRTQUEUE_H
#define HINTMIG_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "vm/guest_ram.h"

/* Ring layouts of the virtio 1.x split virtqueue (little-endian). */
#define VRING_DESC_F_NEXT      1
#define VRING_DESC_F_WRITE     2
#define VRING_DESC_F_INDIRECT  4
#define VIRTQ_MAX_SIZE 32768

typedef struct VringDesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
} VringDesc;

typedef struct VringUsedElem {
    uint32_t id;
    uint32_t len;
} VringUsedElem;

/* Bytes of each ring for a queue of @size entries. */
#define VRING_DESC_BYTES(size)  ((uint64_t)(size) * 16)
#define VRING_AVAIL_BYTES(size) (6 + (uint64_t)(size) * 2)
#define VRING_USED_BYTES(size)  (6 + (uint64_t)(size) * 8)

#define VQ_MAX_SG 64            /* buffers per element we accept */

typedef struct VqBuf {
    uint64_t gpa;               /* guest-physical address */
    uint32_t len;
} VqBuf;

typedef struct VqElem {
    uint16_t head;
    unsigned n_out, n_in;       /* device-readable, then device-writable */
    VqBuf out[VQ_MAX_SG];
    VqBuf in[VQ_MAX_SG];
} VqElem;

typedef struct VirtQueue {
    GuestRam *ram;
    uint16_t size;              /* 0: not set up */
    uint64_t desc_gpa, avail_gpa, used_gpa;
    uint16_t last_avail_idx;
    uint16_t used_idx;
    char *error;                /* non-NULL: broken */
} VirtQueue;

/*
 * Sets up @vq over rings the guest placed at the given guest-physical
 * addresses.  @size must be a power of two up to VIRTQ_MAX_SIZE and every
 * ring aligned (16, 2, 4 bytes) and inside RAM.  Returns false with @errp.
 */
bool vq_setup(VirtQueue *vq, GuestRam *ram, uint32_t size, uint64_t desc_gpa,
              uint64_t avail_gpa, uint64_t used_gpa, GError **errp);

/* Forgets the rings (device reset). */
void vq_reset(VirtQueue *vq);

/*
 * Takes the next available element.  Returns 1 and fills @elem, 0 when the
 * ring is empty, or -1 when the guest gave something invalid: the queue is
 * then broken (vq->error says why) and stays so until reset.
 */
int vq_pop(VirtQueue *vq, VqElem *elem);

/* Returns @elem to the guest with @written bytes written to its in buffers. */
void vq_push(VirtQueue *vq, const VqElem *elem, uint32_t written);

/* Returns a host pointer to [@gpa, @gpa + @len), or NULL if not all in RAM. */
void *vq_gpa_to_hva(const GuestRam *ram, uint64_t gpa, uint64_t len);

#endif
