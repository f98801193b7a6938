/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The migration monitor commands, an adapter on libhintmig's public API:
 * migrate, migrate_incoming, migrate_cancel, migrate_continue, ... and info
 * migrate, in QEMU's HMP names and output.
 */
#ifndef HINTMIG_HMP_MIGRATION_H
#define HINTMIG_HMP_MIGRATION_H

#include <glib.h>

#include "hintmig/hintmig.h"
#include "hmp/monitor.h"

/* Registers the migration commands and info pages of @m on @mon. */
void hmp_migration_register(Hintmig *m, Monitor *mon);

#endif
