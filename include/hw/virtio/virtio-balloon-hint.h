/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio-balloon with VIRTIO_BALLOON_F_FREE_PAGE_HINT and
 * VIRTIO_BALLOON_F_PAGE_POISON: the device side of free page hinting.
 *
 * The driver reaches the device through the "bus" calls below, as it would
 * through MMIO: features, status, config, queue setup, kick.  The engine
 * drives hinting rounds (fph_start / fph_stop / fph_done) and receives the
 * hints through a callback it registers on this device; nothing is global.
 * A poll thread serves the free page queue and stops while the VM does.
 */
#ifndef HINTMIG_VIRTIO_BALLOON_HINT_H
#define HINTMIG_VIRTIO_BALLOON_HINT_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "vm/guest_ram.h"

#define VIRTIO_BALLOON_F_FREE_PAGE_HINT 3
#define VIRTIO_BALLOON_F_PAGE_POISON    4
#define VIRTIO_F_VERSION_1              32

#define VIRTIO_BALLOON_CMD_ID_STOP 0
#define VIRTIO_BALLOON_CMD_ID_DONE 1

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER      2
#define VIRTIO_STATUS_DRIVER_OK   4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED      128

#define VB_FREE_PAGE_VQ 0          /* the only queue this device serves */

/* struct virtio_balloon_config, as the driver reads it (little-endian). */
typedef struct VirtioBalloonConfig {
    uint32_t num_pages;
    uint32_t actual;
    uint32_t free_page_hint_cmd_id;
    uint32_t poison_val;
} VirtioBalloonConfig;

typedef enum FphStatus {
    FPH_STOP,                  /* not hinting: hints are ignored */
    FPH_REQUESTED,             /* a cmd id is out; the driver has not begun */
    FPH_START,                 /* the driver began: hints are accepted */
} FphStatus;

typedef struct VirtioBalloon VirtioBalloon;

/* The engine's side: called on the device's poll thread. */
typedef struct VirtioBalloonClient {
    /* A hinted range (page aligned, inside RAM) under the current cmd id. */
    void (*hint)(void *opaque, uint32_t cmd_id, uint64_t gpa, uint64_t len);
    /* The driver finished the round for @cmd_id (it sent STOP). */
    void (*round_done)(void *opaque, uint32_t cmd_id);
    void *opaque;
} VirtioBalloonClient;

typedef struct VirtioBalloonStats {
    uint64_t hints;            /* ranges accepted */
    uint64_t hinted_bytes;
    uint64_t ignored;          /* ranges dropped: stale cmd id, not started, ... */
    uint64_t rounds;           /* cmd ids issued */
} VirtioBalloonStats;

/*
 * Creates the device over @ram with its poll thread (the VM counts as
 * stopped).  With @free_page_hint false the feature is not offered.
 */
VirtioBalloon *virtio_balloon_new(GuestRam *ram, bool free_page_hint);
void virtio_balloon_free(VirtioBalloon *vb);

/* ---- the bus: what the driver uses ---- */
uint64_t vb_host_features(VirtioBalloon *vb);
/* Accepts @features if they are a subset of the host's; false otherwise. */
bool vb_set_features(VirtioBalloon *vb, uint64_t features);
void vb_set_status(VirtioBalloon *vb, uint8_t status);   /* 0 resets */
uint8_t vb_get_status(VirtioBalloon *vb);
/* Returns false (and the device needs a reset) if the rings are bad. */
bool vb_queue_setup(VirtioBalloon *vb, unsigned q, uint32_t size, uint64_t desc,
                    uint64_t avail, uint64_t used);
void vb_config_read(VirtioBalloon *vb, VirtioBalloonConfig *cfg);
/* The driver may write "actual" and, with PAGE_POISON, "poison_val". */
void vb_config_write(VirtioBalloon *vb, unsigned offset, uint32_t value);
/* Increases whenever the device changes the config (a config interrupt). */
uint32_t vb_config_generation(VirtioBalloon *vb);
/* Queue notify: the driver added buffers. */
void vb_kick(VirtioBalloon *vb, unsigned q);
/* Used-buffer interrupts since the last call (read-and-clear). */
uint64_t vb_take_interrupts(VirtioBalloon *vb);

/* ---- the engine's side ---- */
/*
 * Sets the client (NULL for none).  Returns only once a callback to the
 * previous client that was under way has returned, so the previous client
 * may be freed then.  Never call it from a client callback.
 */
void vb_set_client(VirtioBalloon *vb, const VirtioBalloonClient *client);
/* The VM runs or stops: the poll thread follows. */
void vb_set_running(VirtioBalloon *vb, bool running);
/* True when the driver is up and negotiated FREE_PAGE_HINT. */
bool vb_hint_ready(VirtioBalloon *vb);
/*
 * Issues a fresh cmd id (2 and up, never 0 or 1, never one whose STOP has
 * not arrived) and asks the driver for hints.  Returns the id, or 0 when
 * hinting is not possible now (driver not ready, VM stopped, device broken).
 */
uint32_t fph_start(VirtioBalloon *vb);
/* Stops using hints: the driver sees STOP.  Hinted pages stay with the device. */
void fph_stop(VirtioBalloon *vb);
/* The device no longer needs the hinted pages: the driver sees DONE. */
void fph_done(VirtioBalloon *vb);
FphStatus fph_status(VirtioBalloon *vb);
uint32_t vb_poison(VirtioBalloon *vb);
/* Returns the reason the device needs a reset, or NULL (free with g_free). */
char *vb_error(VirtioBalloon *vb);
VirtioBalloonStats vb_stats(VirtioBalloon *vb);
/* Appends "info balloon" lines. */
void vb_info(VirtioBalloon *vb, GString *out);

/* Device state for migration, and its load (false with @errp if it does not fit). */
GBytes *vb_save(VirtioBalloon *vb);
bool vb_load(VirtioBalloon *vb, GBytes *state, GError **errp);

#endif
