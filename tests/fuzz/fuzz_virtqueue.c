/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The split virtqueue (virtqueue.c) over 16 MiB of guest RAM whose first
 * 64 KiB the input fills.  Input: u16 queue size, u16 desc, avail and used
 * offsets, then RAM from offset 0.  Every element popped must lie inside RAM and within
 * the limits; a broken queue stays broken.
 */
#include <string.h>

#include "hw/virtio/virtqueue.h"
#include "migration/le.h"
#include "fuzz.h"

#define RAM_SIZE (16u << 20)
#define IMAGE (64u << 10)
/* Rings at u16 offsets end below this: what pushes may have written. */
#define DIRTY (IMAGE + (320u << 10))
#define SETUP 8

static GuestRam *ram;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    GuestRamOptions o = { .size = RAM_SIZE, .numa_node = -1 };
    ram = guest_ram_new(&o, NULL);
    FUZZ_CHECK(ram);
    return 0;
}

static void check_elem(const VirtQueue *vq, const VqElem *e)
{
    FUZZ_CHECK(e->head < vq->size);
    FUZZ_CHECK(e->n_out + e->n_in >= 1);
    FUZZ_CHECK(e->n_out <= VQ_MAX_SG && e->n_in <= VQ_MAX_SG);
    for (unsigned i = 0; i < e->n_out + e->n_in; i++) {
        const VqBuf *b = i < e->n_out ? &e->out[i] : &e->in[i - e->n_out];
        FUZZ_CHECK(b->len && vq_gpa_to_hva(ram, b->gpa, b->len));
        FUZZ_CHECK(b->gpa + b->len <= RAM_SIZE);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    VirtQueue vq = { 0 };
    VqElem e;

    if (size < SETUP) {
        return 0;
    }
    memset(ram->host, 0, DIRTY);
    memcpy(ram->host, data + SETUP, MIN(size - SETUP, IMAGE));
    if (!vq_setup(&vq, ram, le_get16(data), le_get16(data + 2), le_get16(data + 4),
                  le_get16(data + 6), NULL)) {
        return 0;
    }
    uint16_t used_before = vq.used_idx;
    unsigned popped = 0;
    int r;
    /* Rings may overlap, so that pushes make more available: bounded. */
    while ((r = vq_pop(&vq, &e)) == 1 && popped < 4u * vq.size) {
        check_elem(&vq, &e);
        uint32_t written = 0;
        for (unsigned i = 0; i < e.n_in; i++) {
            written += e.in[i].len;
        }
        vq_push(&vq, &e, written);
        popped++;
    }
    if (r < 0) {
        FUZZ_CHECK(vq.error && vq_pop(&vq, &e) == -1);
    } else {
        FUZZ_CHECK(!vq.error);
        FUZZ_CHECK((uint16_t)(vq.used_idx - used_before) == popped);
    }
    vq_reset(&vq);
    return 0;
}
