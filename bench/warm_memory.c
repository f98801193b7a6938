/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Touches and frees SIZE of memory, so that the next run is not the first
 * to fault those host pages in.  On the development machine a first touch
 * runs at 0.25-1.3 GB/s against several GB/s for memory touched before;
 * without this, whichever tool runs first in a benchmark pays for it.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "hintmig/hintmig.h"

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    uint64_t size;

    if (argc != 2 || !hintmig_size_parse(argv[1], 1 << 20, &size, &err)) {
        fprintf(stderr, "Usage: warm_memory SIZE\n");
        return 2;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(p, 1, size);
    munmap(p, size);
    return 0;
}
