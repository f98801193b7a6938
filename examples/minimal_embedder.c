/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The smallest host of libhintmig: one process plays both sides, moving
 * 8 MiB of "guest RAM" over a socket pair, and prints the verdict.  It uses
 * nothing but <hintmig/hintmig.h>; docs/embedding.md walks through it.
 *   cc minimal_embedder.c $(pkg-config --cflags --libs hintmig)
 */
#define _DEFAULT_SOURCE           /* MAP_ANONYMOUS under -std=c11 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <hintmig/hintmig.h>

#define RAM_SIZE (8u << 20)

typedef struct Side {
    void *ram;
    HintmigStatus status;          /* updated on the main context */
} Side;

static void stop(void *o) { (void)o; }          /* a real host pauses vCPUs */
static void resume(void *o) { (void)o; }
static bool yes(void *o, GError **e) { (void)o, (void)e; return true; }

static bool save_state(void *o, GByteArray *out, GError **e)
{
    (void)o, (void)e;
    g_byte_array_append(out, (const guint8 *)"cpu", 3);
    return true;
}

static bool load_state(void *o, const uint8_t *d, size_t len, GError **errp)
{
    (void)o;
    if (len != 3 || memcmp(d, "cpu", 3)) {
        g_set_error(errp, HINTMIG_ERROR, HINTMIG_ERROR_HOST, "unexpected state");
        return false;
    }
    return true;
}

static void status_changed(void *o, HintmigStatus old, HintmigStatus now)
{
    (void)old;
    ((Side *)o)->status = now;
}

static const HintmigHostOps ops = {
    .stop = stop, .resume = resume, .save_state = save_state,
    .load_state = load_state, .can_migrate = yes, .can_receive = yes,
    .status_changed = status_changed,
};

static Hintmig *side_new(Side *s, GMainContext *ctx)
{
    s->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    HintmigRamRegion region = {
        .name = "ram", .gpa = 0, .host = s->ram, .size = RAM_SIZE,
        .page_size = HINTMIG_PAGE_SIZE, .backing = HINTMIG_BACKING_ANON, .fd = -1,
    };
    HintmigHost host = {
        .ops = &ops, .opaque = s, .context = ctx,
        .regions = &region, .nregions = 1,
        .uuid = "0e3b1a5e-0000-4000-8000-00000000e3b1", .nvcpus = 1,
    };
    GError *err = NULL;
    Hintmig *m = hintmig_new(&host, &err);
    if (!m) {
        fprintf(stderr, "hintmig_new: %s\n", err->message);
    }
    return m;
}

static bool over(HintmigStatus s)
{
    return s == HINTMIG_STATUS_COMPLETED || s == HINTMIG_STATUS_FAILED ||
           s == HINTMIG_STATUS_CANCELLED;
}

int main(void)
{
    GMainContext *ctx = g_main_context_new();
    Side src = { 0 }, dst = { 0 };
    Hintmig *a = side_new(&src, ctx), *b = side_new(&dst, ctx);
    int sv[2];
    GError *err = NULL;

    if (!a || !b || socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
        return 1;
    }
    memset(src.ram, 0x5a, RAM_SIZE / 2);    /* half the RAM in use */
    if (!hintmig_incoming_start_fd(b, sv[1], &err) || !hintmig_start_fd(a, sv[0], &err)) {
        fprintf(stderr, "migrate: %s\n", err->message);
        return 1;
    }
    while (!over(src.status) || !over(dst.status)) {
        g_main_context_iteration(ctx, TRUE);
    }
    HintmigStats st;
    hintmig_get_stats(b, &st);
    bool ok = st.status == HINTMIG_STATUS_COMPLETED && st.verified &&
              !st.verify_mismatches && !memcmp(src.ram, dst.ram, RAM_SIZE);
    printf("migrated: %s (%s, verify %s, %" G_GUINT64_FORMAT " bytes received)\n",
           ok ? "OK" : "FAILED", hintmig_status_str(st.status),
           st.verified && !st.verify_mismatches ? "OK" : "not OK",
           st.wire_bytes_received);
    hintmig_stats_clear(&st);
    hintmig_free(a);
    hintmig_free(b);
    g_main_context_unref(ctx);
    return ok ? 0 : 1;
}
