/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Digests for post-migration verification: RAM in chunks, and the device
 * state whole.
 *
 * libxxhash's XXH3-64: GLib's fastest GChecksum (MD5) runs at 0.65 GB/s on
 * the development machine, 3.3 s of CPU per side for 2 GiB; XXH64 at 10.3
 * GB/s, XXH3 at 18.6 GB/s over 4 KiB pages (the digest is taken of every
 * page sent, on both sides).  It detects corruption and misplacement; it
 * is not meant to resist an adversary (the stream is not authenticated
 * either).
 */
#ifndef HINTMIG_RAM_DIGEST_H
#define HINTMIG_RAM_DIGEST_H

#include <stddef.h>
#include <stdint.h>
#include "migration/ram.h"

#define RAM_DIGEST_CHUNK_PAGES 256u      /* 1 MiB chunks */

/* Returns the digest of @len bytes at @p, seeded. */
uint64_t ram_digest(const void *p, size_t len, uint64_t seed);

/* Returns the digest of the device state (any @len), seeded with @len. */
uint64_t ram_digest_bytes(const void *p, size_t len);

/* Returns ram_digest() of an all-zero page, seed 0 (computed once). */
uint64_t ram_digest_zero_page(void);

/*
 * A table of @npages page digests, all 0 (zero pages): only the entries
 * written get memory.  NULL if it cannot be mapped.
 */
uint64_t *ram_digest_table_new(uint64_t npages);
void ram_digest_table_free(uint64_t *t, uint64_t npages);

/* Returns how many chunks of @chunk_pages cover @ram. */
uint64_t ram_digest_nchunks(const HmRam *ram, uint32_t chunk_pages);

/*
 * Computes the digests of chunks [@first, @first + @n) of @ram into @out,
 * on @nthreads threads.  A chunk's digest is the digest of its pages'
 * digests in order, seeded with the chunk index, so a page or a chunk in the
 * wrong place does not match; a chunk of zero pages has digest 0.  Pages
 * that are not backed by memory (never
 * touched) count as zero pages and are not read, and so do pages set in
 * @exclude (may be NULL): free pages the guest hinted, whose content does
 * not matter and differs between the two sides.
 */
void ram_digest_chunks(const HmRam *ram, uint32_t chunk_pages, uint64_t first,
                       uint64_t n, uint64_t *out, unsigned nthreads,
                       const unsigned long *exclude);

/*
 * The same chunk digests from the digests of single pages (ram_digest() of
 * each page, seed 0), as the source records them while sending and the
 * destination while applying or placing pages.  An entry of 0 stands for
 * a zero page (a table starts zeroed, and pages never sent are zero), and
 * so do pages in @exclude.
 */
void ram_digest_combine(const uint64_t *page_digests, uint64_t npages,
                        uint32_t chunk_pages, uint64_t nchunks, uint64_t *out,
                        const unsigned long *exclude);

#endif
