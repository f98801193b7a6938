/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Guest RAM mapping, THP policy, NUMA binding and image loading. */
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vm/guest_ram.h"

#define IMAGE_CHUNK (4u << 20)

const char *guest_ram_thp_str(GuestRamThp thp)
{
    switch (thp) {
    case GUEST_RAM_THP_ON: return "on";
    case GUEST_RAM_THP_OFF: return "off";
    default: return "default";
    }
}

static bool guest_ram_bind(GuestRam *ram, int node, GError **errp)
{
    if (numa_available() < 0) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NOSYS,
                    "--numa-node %d: this host has no NUMA support", node);
        return false;
    }
    int max = numa_max_node();
    if (node < 0 || node > max ||
        !numa_bitmask_isbitset(numa_all_nodes_ptr, node)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "--numa-node %d: no such NUMA node (this host has nodes 0-%d)",
                    node, max);
        return false;
    }
    /* Bind before anything faults the pages in. */
    numa_tonode_memory(ram->host, ram->size, node);
    return true;
}

void guest_ram_write_nonzero(GuestRam *ram, uint64_t offset, const void *src,
                             uint64_t len)
{
    static const uint8_t zero[GUEST_PAGE_SIZE];
    const uint8_t *s = src;

    for (uint64_t p = 0; p < len; p += GUEST_PAGE_SIZE) {
        size_t n = MIN(len - p, (uint64_t)GUEST_PAGE_SIZE);
        uint8_t *dst = ram->host + offset + p;
        /* Reading an untouched page maps the shared zero page: no RSS. */
        if (memcmp(s + p, zero, n) || memcmp(dst, zero, n)) {
            memcpy(dst, s + p, n);
        }
    }
}

/*
 * Copies the image in.  All-zero pages are left untouched: they read as zero
 * already, and not faulting them in keeps RSS to what the guest really uses,
 * as with QEMU's MAP_PRIVATE file backend.
 */
static bool guest_ram_load_image(GuestRam *ram, const char *path,
                                 GError **errp)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    bool ok = false;
    uint8_t *buf = NULL;

    if (fd < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "--mem-path %s: %s", path, g_strerror(errno));
        return false;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "--mem-path %s: not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size > ram->size) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "--mem-path %s: image is %jd bytes, larger than guest RAM "
                    "(%" G_GUINT64_FORMAT " bytes)", path,
                    (intmax_t)st.st_size, ram->size);
        goto out;
    }
    buf = g_malloc(IMAGE_CHUNK);
    uint64_t off = 0;
    while (off < (uint64_t)st.st_size) {
        ssize_t n = pread(fd, buf, IMAGE_CHUNK, off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_IO,
                        "--mem-path %s: read failed at offset %" G_GUINT64_FORMAT
                        ": %s", path, off, n ? g_strerror(errno) : "short file");
            goto out;
        }
        guest_ram_write_nonzero(ram, off, buf, n);
        off += n;
    }
    ram->image_bytes = off;
    ok = true;
out:
    g_free(buf);
    close(fd);
    return ok;
}

GuestRam *guest_ram_new(const GuestRamOptions *opts, GError **errp)
{
    if (opts->size == 0 || opts->size % GUEST_PAGE_SIZE) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "RAM size %" G_GUINT64_FORMAT " must be a non-zero multiple "
                    "of %u bytes", opts->size, GUEST_PAGE_SIZE);
        return NULL;
    }
    if ((opts->size >> GUEST_PAGE_SHIFT) > UINT32_MAX - 1) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "RAM size %" G_GUINT64_FORMAT " is too large (16 TiB at most)",
                    opts->size);
        return NULL;
    }

    GuestRam *ram = g_new0(GuestRam, 1);
    ram->size = opts->size;
    ram->npages = opts->size >> GUEST_PAGE_SHIFT;
    ram->thp = opts->thp;
    ram->numa_node = opts->numa_node;
    ram->host = mmap(NULL, ram->size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ram->host == MAP_FAILED) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot map %" G_GUINT64_FORMAT " bytes of guest RAM: %s",
                    ram->size, g_strerror(errno));
        g_free(ram);
        return NULL;
    }
    if (opts->thp != GUEST_RAM_THP_DEFAULT &&
        madvise(ram->host, ram->size,
                opts->thp == GUEST_RAM_THP_ON ? MADV_HUGEPAGE
                                              : MADV_NOHUGEPAGE) < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "--thp %s: madvise failed: %s",
                    guest_ram_thp_str(opts->thp), g_strerror(errno));
        goto fail;
    }
    if (opts->numa_node >= 0 && !guest_ram_bind(ram, opts->numa_node, errp)) {
        goto fail;
    }
    if (opts->mem_path && !guest_ram_load_image(ram, opts->mem_path, errp)) {
        goto fail;
    }
    return ram;
fail:
    guest_ram_free(ram);
    return NULL;
}

void guest_ram_free(GuestRam *ram)
{
    if (!ram) {
        return;
    }
    munmap(ram->host, ram->size);
    g_free(ram);
}
