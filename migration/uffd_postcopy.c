/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Postcopy's destination side under userfaultfd: see uffd_postcopy.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "migration/bitmap.h"
#include "migration/kernel_compat.h"
#include "migration/ram_digest.h"
#include "migration/uffd_postcopy.h"

#define FAULTS_PER_READ 64

struct UffdPostcopy {
    HmRam *ram;
    int uffd;
    int stop_fd;                 /* eventfd: stops the fault thread */
    bool registered;
    GThread *fault_thread;
    GThread *fill_thread;
    bool (*urgent)(void *opaque);  /* raises the fault thread's priority */
    void *urgent_opaque;
    uint32_t poison;
    UffdRequestFn request;
    void *opaque;
    const unsigned long *hinted; /* the source's, at the switch */

    unsigned long *missing;      /* atomic: set until the page is placed */
    unsigned long *requested;    /* under lock: asked for, not placed yet */
    GMutex lock;
    GCond all_here;
    bool kicked;
    bool link_up;
    GHashTable *req_time;        /* pfn -> request time (µs), outstanding only */
    GArray *lat_us;              /* guint32 per remote fault served */
    UffdPostcopyStats st;
};

static int uffd_open(GError **errp)
{
    int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 && (errno == EPERM || errno == EACCES)) {
        /* vm.unprivileged_userfaultfd=0: user-mode faults are all vCPUs make. */
        fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    }
    if (fd < 0) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                    "postcopy: userfaultfd() failed: %s", g_strerror(errno));
        return -1;
    }
    struct uffdio_api api = { .api = UFFD_API, .features = 0 };
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                    "postcopy: UFFDIO_API failed: %s", g_strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

bool uffd_postcopy_probe(GError **errp)
{
    int fd = uffd_open(errp);
    if (fd < 0) {
        return false;
    }
    /* Register one anonymous page for missing faults: what postcopy needs. */
    void *p = mmap(NULL, HM_PAGE_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct uffdio_register reg = {
        .range = { (uintptr_t)p, HM_PAGE_SIZE },
        .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    bool ok = p != MAP_FAILED && ioctl(fd, UFFDIO_REGISTER, &reg) == 0 &&
              (reg.ioctls & (1ull << _UFFDIO_COPY)) &&
              (reg.ioctls & (1ull << _UFFDIO_ZEROPAGE));
    if (!ok) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_UNSUPPORTED,
                    "postcopy: this kernel cannot register anonymous memory for "
                    "missing faults (%s)", g_strerror(errno));
    }
    if (p != MAP_FAILED) {
        munmap(p, HM_PAGE_SIZE);
    }
    close(fd);
    return ok;
}

UffdPostcopy *uffd_postcopy_new(HmRam *ram, GError **errp)
{
    for (unsigned i = 0; i < ram->n; i++) {
        /* Huge pages are placed whole: a 4 KiB request protocol cannot. */
        if (ram->r[i].backing == HINTMIG_BACKING_HUGETLB) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_UNSUPPORTED,
                        "postcopy: RAM region '%s' is on hugetlbfs, which "
                        "hintmig's postcopy does not place", ram->r[i].name);
            return NULL;
        }
    }
    int fd = uffd_open(errp);
    if (fd < 0) {
        return NULL;
    }
    UffdPostcopy *pc = g_new0(UffdPostcopy, 1);
    pc->ram = ram;
    pc->uffd = fd;
    pc->stop_fd = eventfd(0, EFD_CLOEXEC);
    pc->missing = hm_bitmap_new(ram->npages);
    pc->requested = hm_bitmap_new(ram->npages);
    pc->req_time = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
    pc->lat_us = g_array_new(FALSE, FALSE, sizeof(guint32));
    g_mutex_init(&pc->lock);
    g_cond_init(&pc->all_here);
    return pc;
}

unsigned long *uffd_postcopy_missing(UffdPostcopy *pc)
{
    return pc->missing;
}

static bool test_missing(UffdPostcopy *pc, uint64_t pfn)
{
    unsigned long w = __atomic_load_n(&pc->missing[pfn / HM_BITS_PER_LONG],
                                      __ATOMIC_ACQUIRE);
    return (w >> (pfn % HM_BITS_PER_LONG)) & 1;
}

/* Clears @pfn's missing bit; true if this call cleared it. */
static bool clear_missing(UffdPostcopy *pc, uint64_t pfn)
{
    unsigned long bit = 1UL << (pfn % HM_BITS_PER_LONG);
    return __atomic_fetch_and(&pc->missing[pfn / HM_BITS_PER_LONG], ~bit,
                              __ATOMIC_ACQ_REL) & bit;
}

/*
 * Zero-fills [pfn, pfn + n) where nothing is mapped yet.  A page already
 * there (EEXIST) is skipped; its waiters, if any, are woken.
 */
static bool zero_run(UffdPostcopy *pc, uint64_t pfn, uint64_t n, uint64_t *filled,
                     GError **errp)
{
    uint64_t base = (uintptr_t)hm_ram_page(pc->ram, pfn), start = base;
    uint64_t end = start + (n << HM_PAGE_SHIFT);

    while (start < end) {
        struct uffdio_zeropage z = { .range = { start, end - start } };
        if (ioctl(pc->uffd, UFFDIO_ZEROPAGE, &z) == 0) {
            *filled += (end - start) >> HM_PAGE_SHIFT;
            return true;
        }
        int64_t done = z.zeropage > 0 ? z.zeropage : 0;
        *filled += done >> HM_PAGE_SHIFT;
        start += done;
        if (errno == EEXIST) {
            struct uffdio_range w = { start, HM_PAGE_SIZE };
            ioctl(pc->uffd, UFFDIO_WAKE, &w);
            start += HM_PAGE_SIZE;
        } else if (errno != EAGAIN) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                        "postcopy: UFFDIO_ZEROPAGE at page %" G_GUINT64_FORMAT
                        " failed: %s", pfn + ((start - base) >> HM_PAGE_SHIFT),
                        g_strerror(errno));
            return false;
        }
    }
    return true;
}

/* zero_run() over runs that may cross from one RAM region into the next. */
static bool zero_range(UffdPostcopy *pc, uint64_t pfn, uint64_t n, uint64_t *filled,
                       GError **errp)
{
    while (n) {
        uint64_t k = hm_ram_contig(pc->ram, pfn, n);
        if (!zero_run(pc, pfn, k, filled, errp)) {
            return false;
        }
        pfn += k;
        n -= k;
    }
    return true;
}

/*
 * Copies @n pages from @src to [pfn, pfn + n).  Pages already there are
 * skipped and counted in *@dups.
 */
static bool copy_run(UffdPostcopy *pc, uint64_t pfn, const uint8_t *src, uint64_t n,
                     uint64_t *dups, GError **errp)
{
    uint64_t base = (uintptr_t)hm_ram_page(pc->ram, pfn);
    uint64_t off = 0, len = n << HM_PAGE_SHIFT;

    while (off < len) {
        struct uffdio_copy c = { .dst = base + off, .src = (uintptr_t)src + off,
                                 .len = len - off };
        if (ioctl(pc->uffd, UFFDIO_COPY, &c) == 0) {
            return true;
        }
        off += c.copy > 0 ? (uint64_t)c.copy : 0;
        if (errno == EEXIST) {
            struct uffdio_range w = { base + off, HM_PAGE_SIZE };
            ioctl(pc->uffd, UFFDIO_WAKE, &w);
            off += HM_PAGE_SIZE;
            (*dups)++;
        } else if (errno != EAGAIN) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                        "postcopy: UFFDIO_COPY to page %" G_GUINT64_FORMAT
                        " failed: %s", pfn + (off >> HM_PAGE_SHIFT),
                        g_strerror(errno));
            return false;
        }
    }
    return true;
}

/* copy_run() over runs that may cross from one RAM region into the next. */
static bool copy_range(UffdPostcopy *pc, uint64_t pfn, const uint8_t *src, uint64_t n,
                       uint64_t *dups, GError **errp)
{
    while (n) {
        uint64_t k = hm_ram_contig(pc->ram, pfn, n);
        if (!copy_run(pc, pfn, src, k, dups, errp)) {
            return false;
        }
        pfn += k;
        src += k << HM_PAGE_SHIFT;
        n -= k;
    }
    return true;
}

/* Maps the kernel's zero page at every hinted page not present yet. */
static bool fill_hinted(UffdPostcopy *pc, GError **errp)
{
    uint64_t npages = pc->ram->npages, filled = 0;

    for (uint64_t pfn = hm_bitmap_next_set(pc->hinted, npages, 0); pfn < npages;) {
        uint64_t end = hm_bitmap_next_clear(pc->hinted, npages, pfn);
        if (!zero_range(pc, pfn, end - pfn, &filled, errp)) {
            return false;
        }
        pfn = hm_bitmap_next_set(pc->hinted, npages, end);
    }
    g_mutex_lock(&pc->lock);
    pc->st.hint_filled = filled;
    g_mutex_unlock(&pc->lock);
    return true;
}

/*
 * Fills the hinted pages while the guest already runs: outside the
 * downtime.  A fault on one that is not filled yet is not "missing", so the
 * fault thread fills it locally as well; whichever comes second sees EEXIST.
 * With a poison value there is nothing to do: the receiver wrote it into
 * every hinted page when the hints came.
 */
static gpointer fill_thread(gpointer data)
{
    UffdPostcopy *pc = data;
    g_autoptr(GError) err = NULL;
    gint64 t0 = g_get_monotonic_time();

    if (pc->poison) {
        /* The receiver wrote the poison when the hints came: every hinted
         * page is present already, and nothing here can take one away. */
        g_mutex_lock(&pc->lock);
        pc->st.hint_filled = hm_bitmap_count(pc->hinted, pc->ram->npages);
        g_mutex_unlock(&pc->lock);
        return NULL;
    }
    if (!fill_hinted(pc, &err)) {
        /* Not fatal: an unfilled hinted page is filled when touched. */
        g_mutex_lock(&pc->lock);
        g_strlcpy(pc->st.fill_error, err->message, sizeof(pc->st.fill_error));
        g_mutex_unlock(&pc->lock);
    }
    g_mutex_lock(&pc->lock);
    pc->st.hint_fill_ms = (g_get_monotonic_time() - t0) / 1000;
    g_mutex_unlock(&pc->lock);
    return NULL;
}

/* Resolves one fault; appends @pfn to @req if the source must send it. */
static void handle_fault(UffdPostcopy *pc, uint64_t pfn, uint64_t *req, unsigned *nreq)
{
    if (!test_missing(pc, pfn)) {
        /* Known here: a zero page, or one placed since the fault was raised. */
        uint64_t filled = 0;
        zero_range(pc, pfn, 1, &filled, NULL);
        g_mutex_lock(&pc->lock);
        pc->st.faults_local++;
        g_mutex_unlock(&pc->lock);
        return;
    }
    g_mutex_lock(&pc->lock);
    pc->st.faults_remote++;
    if (!hm_bitmap_test_bit(pc->requested, pfn)) {
        hm_bitmap_set_bit(pc->requested, pfn);
        g_hash_table_insert(pc->req_time, g_memdup2(&(gint64) { pfn }, 8),
                            g_memdup2(&(gint64) { g_get_monotonic_time() }, 8));
        pc->st.requested_pages++;
        if (pc->hinted && hm_bitmap_test_bit(pc->hinted, pfn)) {
            pc->st.hinted_requested++;
        }
        req[(*nreq)++] = pfn;
    }
    g_mutex_unlock(&pc->lock);
}

static void send_requests(UffdPostcopy *pc, const uint64_t *req, unsigned n)
{
    g_mutex_lock(&pc->lock);
    bool up = pc->link_up;
    g_mutex_unlock(&pc->lock);
    /* With the link down the pages stay requested: asked again on recovery. */
    if (n && up && pc->request(pc->opaque, req, n)) {
        g_mutex_lock(&pc->lock);
        pc->st.requests++;
        g_mutex_unlock(&pc->lock);
    }
}

static gpointer fault_thread(gpointer data)
{
    UffdPostcopy *pc = data;
    struct uffd_msg msgs[FAULTS_PER_READ];
    uint64_t req[FAULTS_PER_READ];

    bool rt = pc->urgent && pc->urgent(pc->urgent_opaque);
    g_mutex_lock(&pc->lock);
    pc->st.realtime = rt;
    g_mutex_unlock(&pc->lock);

    for (;;) {
        struct pollfd f[2] = { { pc->uffd, POLLIN, 0 }, { pc->stop_fd, POLLIN, 0 } };
        if (poll(f, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (f[1].revents) {
            break;
        }
        ssize_t r = read(pc->uffd, msgs, sizeof(msgs));
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            break;
        }
        unsigned nreq = 0;
        for (size_t i = 0; i < (size_t)r / sizeof(msgs[0]); i++) {
            if (msgs[i].event != UFFD_EVENT_PAGEFAULT) {
                continue;
            }
            uint64_t pfn;
            if (!hm_ram_hva_to_pfn(pc->ram, (void *)(uintptr_t)
                                   msgs[i].arg.pagefault.address, &pfn)) {
                continue;
            }
            handle_fault(pc, pfn, req, &nreq);
        }
        send_requests(pc, req, nreq);
    }
    return NULL;
}

static void stop_fault_thread(UffdPostcopy *pc);

void uffd_postcopy_set_urgent(UffdPostcopy *pc, bool (*fn)(void *opaque), void *opaque)
{
    pc->urgent = fn;
    pc->urgent_opaque = opaque;
}

/* Unregisters the first @n regions; 0 or the first errno. */
static int unregister(UffdPostcopy *pc, unsigned n)
{
    int err = 0;

    for (unsigned i = 0; i < n; i++) {
        struct uffdio_range r = { (uintptr_t)pc->ram->r[i].host, pc->ram->r[i].size };
        if (ioctl(pc->uffd, UFFDIO_UNREGISTER, &r) < 0 && !err) {
            err = errno;
        }
    }
    return err;
}

bool uffd_postcopy_start(UffdPostcopy *pc, const unsigned long *hinted,
                         uint32_t poison, UffdRequestFn fn, void *opaque,
                         GError **errp)
{
    HmRam *ram = pc->ram;
    uint64_t npages = ram->npages;

    pc->hinted = hinted;
    pc->request = fn;
    pc->opaque = opaque;
    pc->link_up = true;
    /* The copies received before the switch are stale: drop them, so that
     * the guest faults on them and gets the source's. */
    for (uint64_t pfn = hm_bitmap_next_set(pc->missing, npages, 0); pfn < npages;) {
        uint64_t end = hm_bitmap_next_clear(pc->missing, npages, pfn);
        int err = hm_ram_drop(ram, pfn, end - pfn);
        if (err < 0) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                        "postcopy: dropping stale pages: %s", g_strerror(-err));
            return false;
        }
        pfn = hm_bitmap_next_set(pc->missing, npages, end);
    }
    pc->st.remaining = hm_bitmap_count(pc->missing, npages);
    for (unsigned i = 0; i < ram->n; i++) {
        struct uffdio_register reg = {
            .range = { (uintptr_t)ram->r[i].host, ram->r[i].size },
            .mode = UFFDIO_REGISTER_MODE_MISSING,
        };
        if (ioctl(pc->uffd, UFFDIO_REGISTER, &reg) < 0) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                        "postcopy: registering RAM region '%s' with userfaultfd: %s",
                        ram->r[i].name, g_strerror(errno));
            unregister(pc, i);
            return false;
        }
    }
    pc->registered = true;
    pc->poison = poison;
    g_autoptr(GError) err = NULL;
    pc->fault_thread = g_thread_try_new("uffd-fault", fault_thread, pc, &err);
    if (pc->fault_thread && hinted) {
        pc->fill_thread = g_thread_try_new("uffd-fill", fill_thread, pc, &err);
    }
    if (!pc->fault_thread || (hinted && !pc->fill_thread)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_FAILED,
                    "postcopy: cannot start the %s thread: %s",
                    pc->fault_thread ? "fill" : "fault", err->message);
        stop_fault_thread(pc);
        unregister(pc, ram->n);
        pc->registered = false;
        return false;
    }
    return true;
}

/* A page arrived: time the request that asked for it, if one did. */
static void placed(UffdPostcopy *pc, uint64_t pfn, gint64 now)
{
    gint64 key = pfn;
    gint64 *t;

    g_mutex_lock(&pc->lock);
    pc->st.placed_pages++;
    if (--pc->st.remaining == 0) {
        g_cond_broadcast(&pc->all_here);
    }
    if (hm_bitmap_test_bit(pc->requested, pfn)) {
        hm_bitmap_clear_bit(pc->requested, pfn);
        if ((t = g_hash_table_lookup(pc->req_time, &key))) {
            guint32 us = MIN(now - *t, (gint64)G_MAXUINT32);
            g_array_append_val(pc->lat_us, us);
            g_hash_table_remove(pc->req_time, &key);
        }
    }
    g_mutex_unlock(&pc->lock);
}

bool uffd_postcopy_place(UffdPostcopy *pc, const PageStaged *b, uint64_t *digests,
                         GError **errp)
{
    uint64_t dups = 0;

    for (unsigned i = 0; i < b->n;) {
        uint64_t pfn = b->pfns[i];
        if (!test_missing(pc, pfn)) {
            dups++;
            i++;
            continue;
        }
        /* A run of consecutive missing pages of one kind: one ioctl. */
        unsigned j = i + 1;
        while (j < b->n && b->pfns[j] == b->pfns[j - 1] + 1 &&
               b->zero[j] == b->zero[i] && test_missing(pc, b->pfns[j])) {
            j++;
        }
        uint64_t n = j - i;
        const uint8_t *src = b->data + (size_t)i * HM_PAGE_SIZE;
        if (b->zero[i]) {
            uint64_t filled = 0;
            if (!zero_range(pc, pfn, n, &filled, errp)) {
                return false;
            }
            dups += n - filled;
        } else if (!copy_range(pc, pfn, src, n, &dups, errp)) {
            return false;
        }
        /* The page is in place before its bit goes: a fault in between is
         * sent to the source (harmless), never zero-filled over it. */
        gint64 now = g_get_monotonic_time();
        for (unsigned k = i; k < j; k++) {
            digests[b->pfns[k]] = b->zero[k]
                ? ram_digest_zero_page()
                : ram_digest(b->data + (size_t)k * HM_PAGE_SIZE, HM_PAGE_SIZE, 0);
            if (clear_missing(pc, b->pfns[k])) {
                placed(pc, b->pfns[k], now);
            }
        }
        i = j;
    }
    if (dups) {
        g_mutex_lock(&pc->lock);
        pc->st.duplicate_pages += dups;
        g_mutex_unlock(&pc->lock);
    }
    return true;
}

void uffd_postcopy_link(UffdPostcopy *pc, bool up)
{
    g_autoptr(GArray) again = g_array_new(FALSE, FALSE, sizeof(uint64_t));

    g_mutex_lock(&pc->lock);
    pc->link_up = up;
    pc->kicked = false;
    if (up) {
        uint64_t npages = pc->ram->npages;
        for (uint64_t pfn = hm_bitmap_next_set(pc->requested, npages, 0); pfn < npages;
             pfn = hm_bitmap_next_set(pc->requested, npages, pfn + 1)) {
            g_array_append_val(again, pfn);
        }
    }
    g_mutex_unlock(&pc->lock);
    for (guint off = 0; off < again->len; off += FAULTS_PER_READ) {
        send_requests(pc, &g_array_index(again, uint64_t, off),
                      MIN(again->len - off, (guint)FAULTS_PER_READ));
    }
}

bool uffd_postcopy_wait_all(UffdPostcopy *pc, int timeout_ms)
{
    gint64 until = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    g_mutex_lock(&pc->lock);
    while (pc->st.remaining && !pc->kicked &&
           g_cond_wait_until(&pc->all_here, &pc->lock, until)) {
    }
    bool all = pc->st.remaining == 0;
    g_mutex_unlock(&pc->lock);
    return all;
}

void uffd_postcopy_kick(UffdPostcopy *pc)
{
    g_mutex_lock(&pc->lock);
    pc->kicked = true;
    g_cond_broadcast(&pc->all_here);
    g_mutex_unlock(&pc->lock);
}

static void stop_fault_thread(UffdPostcopy *pc)
{
    if (pc->fill_thread) {
        g_thread_join(pc->fill_thread);
        pc->fill_thread = NULL;
    }
    if (pc->fault_thread) {
        uint64_t one = 1;
        if (write(pc->stop_fd, &one, sizeof(one)) != sizeof(one)) {
            /* an eventfd write of 1 cannot fail short of overflow */
        }
        g_thread_join(pc->fault_thread);
        pc->fault_thread = NULL;
    }
}

bool uffd_postcopy_finish(UffdPostcopy *pc, GError **errp)
{
    stop_fault_thread(pc);
    if (pc->registered) {
        int err = unregister(pc, pc->ram->n);
        pc->registered = false;
        if (err) {
            g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_IO,
                        "postcopy: unregistering guest RAM: %s", g_strerror(err));
            return false;
        }
    }
    return true;
}

static int cmp_u32(const void *a, const void *b)
{
    guint32 x = *(const guint32 *)a, y = *(const guint32 *)b;
    return x < y ? -1 : x > y;
}

UffdPostcopyStats uffd_postcopy_stats(UffdPostcopy *pc)
{
    g_mutex_lock(&pc->lock);
    UffdPostcopyStats st = pc->st;
    g_autofree guint32 *lat = g_memdup2(pc->lat_us->data,
                                        pc->lat_us->len * sizeof(guint32));
    guint n = pc->lat_us->len;
    g_mutex_unlock(&pc->lock);
    st.lat_samples = n;
    if (n) {
        qsort(lat, n, sizeof(guint32), cmp_u32);
        st.lat_p50_us = lat[(n - 1) / 2];
        st.lat_p99_us = lat[(uint64_t)(n - 1) * 99 / 100];
        st.lat_max_us = lat[n - 1];
    }
    return st;
}

void uffd_postcopy_free(UffdPostcopy *pc)
{
    if (!pc) {
        return;
    }
    uffd_postcopy_finish(pc, NULL);    /* unregistering wakes any vCPU still waiting */
    close(pc->uffd);
    close(pc->stop_fd);
    g_hash_table_destroy(pc->req_time);
    g_array_free(pc->lat_us, TRUE);
    g_free(pc->missing);
    g_free(pc->requested);
    g_mutex_clear(&pc->lock);
    g_cond_clear(&pc->all_here);
    g_free(pc);
}
