/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Writes the benchmark's RAM image: per 4 KiB page, chosen by a hash of its
 * number, 25% zero, 25% random bytes, 50% text-like words.  The same file
 * is given to hintmig-vm (--mem-path) and to QEMU (memory-backend-file).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest/page_content.h"
#include "vm/guest_ram.h"
#include "hintmig/hintmig.h"

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    uint64_t size;

    if (argc != 3 || !hintmig_size_parse(argv[2], 1 << 20, &size, &err) ||
        size % GUEST_PAGE_SIZE) {
        fprintf(stderr, "Usage: make_image FILE SIZE\n%s%s", err ? err->message : "",
                err ? "\n" : "");
        return 2;
    }
    FILE *f = fopen(argv[1], "wb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    uint8_t page[GUEST_PAGE_SIZE];
    uint64_t counts[4] = { 0 };
    for (uint64_t pfn = 0; pfn < size / GUEST_PAGE_SIZE; pfn++) {
        uint64_t h = page_content_mix(pfn ^ 0x1234567ull);
        unsigned kind = h % 4;            /* 0 zero, 1 random, 2-3 text */
        counts[kind]++;
        if (kind == 0) {
            memset(page, 0, sizeof(page));
        } else if (kind == 1) {
            page_content_random(page, sizeof(page), h);
        } else {
            page_content_text(page, sizeof(page), h);
        }
        if (fwrite(page, 1, sizeof(page), f) != sizeof(page)) {
            perror("write");
            return 1;
        }
    }
    if (fclose(f)) {
        perror("close");
        return 1;
    }
    printf("%s: %" G_GUINT64_FORMAT " pages: %" G_GUINT64_FORMAT " zero, %"
           G_GUINT64_FORMAT " random, %" G_GUINT64_FORMAT " text\n", argv[1],
           size / GUEST_PAGE_SIZE, counts[0], counts[1], counts[2] + counts[3]);
    return 0;
}
