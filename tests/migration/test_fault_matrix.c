/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The fault matrix: every phase of a migration crossed with every fault,
 * between real hintmig-vm processes on loopback, each cell with its
 * expected outcome written beside it and asserted.
 *
 * Phases are reached by condition, never by time: the proxy of
 * net_faults.c reads the wire framing and holds the stream just before the
 * phase's first message (the hold keeps a short phase open for as long as
 * the fault takes to set up), then the fault is applied and the stream
 * released.  "Peer" is the destination before the postcopy switch (the
 * source is the side an operator stands at), and from the switch on the
 * process that matters there: killed means the source dies (the issue's
 * case: the guest runs over there without its missing pages), frozen means
 * the destination stops answering, so that the source's waits run out.
 * Both sides use x-peer-timeout PEER_TIMEOUT_MS, so "frozen past every
 * timeout" takes seconds.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "migration/uffd_postcopy.h"
#include "migration/wire.h"
#include "net_faults.h"
#include "vm_harness.h"
#include "test_util.h"

#define PEER_TIMEOUT_MS 2000
/* How long a frozen peer stays frozen at least, or a link stays a trickle. */
#define FAULT_MS (2 * PEER_TIMEOUT_MS + 1000)
#define TRICKLE (256u << 10)              /* bytes/s */

typedef enum {
    PH_HANDSHAKE, PH_BULK, PH_DIRTY, PH_STOP_COPY, PH_VERIFY, PH_COMMIT,
    PH_PC_SWITCH, PH_PC_PUSH, PH_PC_RECOVERY,
} Phase;

typedef enum { F_RESET, F_KILL, F_FREEZE, F_CORRUPT, F_TRUNCATE, F_THROTTLE } Fault;

typedef enum {
    NOT_APPLICABLE,
    COMPLETES,             /* destination runs, verify OK, guest OK there */
    SOURCE_RUNS_ON,        /* failed with a reason, source runs its intact guest,
                            * destination never ran it; a second migration works */
    COMMIT_IN_DOUBT,       /* COMMIT left and never arrived: stopped on both sides
                            * (source postmigrate), never two copies; 'cont' on
                            * the source brings the intact guest back */
    DEST_CANNOT_CONTINUE,  /* source dead after the switch: the destination says
                            * so, and stop and quit work */
    RECOVERS,              /* postcopy pauses; migrate_recover + migrate -r finish it */
} Outcome;

typedef struct Cell {
    Phase phase;
    Fault fault;
    Outcome want;
    const char *why;
    const char *known_bug;  /* the engine does not do @want yet: reported XFAIL */
} Cell;

static const char *const phase_names[] = {
    "handshake", "bulk pass", "dirty rounds", "stop-and-copy", "verification+COMPLETE",
    "COMMIT", "postcopy switch", "postcopy push", "postcopy recovery",
};
static const char *const fault_names[] = {
    "reset", "peer killed", "peer frozen", "byte corrupted", "truncated", "throttled",
};
static const char *const outcome_names[] = {
    "N/A", "COMPLETES", "SOURCE_RUNS_ON", "COMMIT_IN_DOUBT", "DEST_CANNOT_CONTINUE",
    "RECOVERS",
};

static const Cell cells[] = {
    /* Handshake: the proxy holds HELLO. */
    { PH_HANDSHAKE, F_RESET, SOURCE_RUNS_ON, "no hello reply: the source fails at once" },
    { PH_HANDSHAKE, F_KILL, SOURCE_RUNS_ON, "the connection closes before the reply" },
    { PH_HANDSHAKE, F_FREEZE, SOURCE_RUNS_ON, "the hello reply wait runs out" },
    { PH_HANDSHAKE, F_CORRUPT, SOURCE_RUNS_ON, "the destination refuses a bad hello" },
    { PH_HANDSHAKE, F_TRUNCATE, SOURCE_RUNS_ON, "half a hello, then the end of the stream" },
    { PH_HANDSHAKE, F_THROTTLE, NOT_APPLICABLE,
      "the hello is 200 bytes: a trickle only delays it; the bulk pass row covers it" },
    /* Bulk pass: held at the first RAM batch. */
    { PH_BULK, F_RESET, SOURCE_RUNS_ON, "connection lost" },
    { PH_BULK, F_KILL, SOURCE_RUNS_ON, "connection lost" },
    { PH_BULK, F_FREEZE, SOURCE_RUNS_ON, "the sender's unacknowledged data times out" },
    { PH_BULK, F_CORRUPT, SOURCE_RUNS_ON, "the batch fails to decode" },
    { PH_BULK, F_TRUNCATE, SOURCE_RUNS_ON, "the stream ends mid-batch" },
    { PH_BULK, F_THROTTLE, COMPLETES, "slow is not silent: every wait sees progress" },
    /* Dirty rounds: held at the first batch after a ROUND_END (downtime-limit
     * 1 ms until then, so that a second round must come). */
    { PH_DIRTY, F_RESET, SOURCE_RUNS_ON, "connection lost" },
    { PH_DIRTY, F_KILL, SOURCE_RUNS_ON, "connection lost" },
    { PH_DIRTY, F_FREEZE, SOURCE_RUNS_ON, "the sender's unacknowledged data times out" },
    { PH_DIRTY, F_CORRUPT, SOURCE_RUNS_ON, "the batch fails to decode" },
    { PH_DIRTY, F_TRUNCATE, SOURCE_RUNS_ON, "the stream ends mid-batch" },
    { PH_DIRTY, F_THROTTLE, COMPLETES, "slow is not silent" },
    /* Stop-and-copy: held at DEVICE_STATE, the VM stopped at the source. */
    { PH_STOP_COPY, F_RESET, SOURCE_RUNS_ON, "the source resumes its stopped VM" },
    { PH_STOP_COPY, F_KILL, SOURCE_RUNS_ON, "the source resumes its stopped VM" },
    { PH_STOP_COPY, F_FREEZE, SOURCE_RUNS_ON,
      "no verdict on COMPLETE in time: no COMMIT was sent, so the source may resume" },
    { PH_STOP_COPY, F_CORRUPT, SOURCE_RUNS_ON,
      "a flipped byte in the device state must fail verification" },
    { PH_STOP_COPY, F_TRUNCATE, SOURCE_RUNS_ON, "the device state never ends" },
    { PH_STOP_COPY, F_THROTTLE, COMPLETES, "slow is not silent" },
    /* Verification and COMPLETE: held at the source's digests. */
    { PH_VERIFY, F_RESET, SOURCE_RUNS_ON, "connection lost before any verdict" },
    { PH_VERIFY, F_KILL, SOURCE_RUNS_ON, "connection lost before any verdict" },
    { PH_VERIFY, F_FREEZE, SOURCE_RUNS_ON,
      "no verdict on COMPLETE in time: no COMMIT was sent, so the source may resume" },
    { PH_VERIFY, F_CORRUPT, SOURCE_RUNS_ON, "a digest differs: verification fails" },
    { PH_VERIFY, F_TRUNCATE, SOURCE_RUNS_ON, "the digests never end" },
    { PH_VERIFY, F_THROTTLE, COMPLETES, "slow is not silent" },
    /* COMMIT: held at COMMIT, the destination verified and waits for it.  Once
     * COMMIT left the source cannot know whether it arrived (two generals):
     * the design's one outcome an operator resolves, never two copies. */
    { PH_COMMIT, F_RESET, COMMIT_IN_DOUBT, "COMMIT is lost with the connection" },
    { PH_COMMIT, F_KILL, COMMIT_IN_DOUBT, "the destination died holding the guest" },
    { PH_COMMIT, F_FREEZE, COMPLETES, "COMMIT waits in the socket; thawed, it runs" },
    { PH_COMMIT, F_CORRUPT, COMMIT_IN_DOUBT, "the destination refuses a bad COMMIT" },
    { PH_COMMIT, F_TRUNCATE, COMMIT_IN_DOUBT, "half a COMMIT is none" },
    { PH_COMMIT, F_THROTTLE, COMPLETES, "slow is not silent" },
    /* Postcopy switch: held at POSTCOPY_RUN (PENDING and the state went). */
    { PH_PC_SWITCH, F_RESET, SOURCE_RUNS_ON,
      "RUN never arrived: the source cannot tell and pauses; asked to recover, "
      "the destination says it never ran the guest, and the source runs it" },
    { PH_PC_SWITCH, F_KILL, DEST_CANNOT_CONTINUE,
      "the guest runs over there (RUN's ack is held), the source dies" },
    { PH_PC_SWITCH, F_FREEZE, RECOVERS,
      "RUN's ack times out: the source pauses; thawed, the destination runs and pauses" },
    { PH_PC_SWITCH, F_CORRUPT, SOURCE_RUNS_ON,
      "the destination refuses the bad message and says so before running" },
    { PH_PC_SWITCH, F_TRUNCATE, SOURCE_RUNS_ON,
      "RUN never arrived: as with a reset, the recovery learns the guest never "
      "ran there" },
    { PH_PC_SWITCH, F_THROTTLE, COMPLETES, "slow is not silent" },
    /* Postcopy push: held at the first background batch after RUN. */
    { PH_PC_PUSH, F_RESET, RECOVERS, "both pause; the recovery resends what is missing" },
    { PH_PC_PUSH, F_KILL, DEST_CANNOT_CONTINUE, "the only copy of the missing pages died" },
    { PH_PC_PUSH, F_FREEZE, RECOVERS, "the push times out: both pause" },
    { PH_PC_PUSH, F_CORRUPT, RECOVERS,
      "a bad batch is not placed: the link is dropped and its pages come again" },
    { PH_PC_PUSH, F_TRUNCATE, RECOVERS, "both pause" },
    { PH_PC_PUSH, F_THROTTLE, COMPLETES, "slow is not silent" },
    /* Postcopy recovery: cut in the push, then migrate_recover + migrate -r
     * through a second proxy held at the destination's MISSING list. */
    { PH_PC_RECOVERY, F_RESET, RECOVERS, "the attempt fails, a second one works" },
    { PH_PC_RECOVERY, F_KILL, DEST_CANNOT_CONTINUE, "the source died mid-recovery" },
    { PH_PC_RECOVERY, F_FREEZE, RECOVERS, "the attempt times out, a second one works" },
    { PH_PC_RECOVERY, F_CORRUPT, RECOVERS, "the source refuses a bad list; retried" },
    { PH_PC_RECOVERY, F_TRUNCATE, RECOVERS, "half a list is none; retried" },
    { PH_PC_RECOVERY, F_THROTTLE, COMPLETES, "the slow recovery goes through" },
};

static char *dir;
static int vm_seq;

static void setup(void) { dir = test_tmpdir(); }
static void teardown(void) { test_rmdir(dir); g_free(dir); }

/* The first expectation that failed, for cells with a known bug. */
static char *failure;

#define EXPECT(cond, ...)                                                  \
    do {                                                                   \
        if (!failure && !(cond)) {                                         \
            failure = g_strdup_printf(__VA_ARGS__);                        \
        }                                                                  \
    } while (0)

static TestVm *start(const char *role, const char *const *args)
{
    g_autofree char *name = g_strdup_printf("%s%d", role, vm_seq++);
    return test_vm_start(dir, name, args);
}

static void cmd_ok(TestVm *vm, const char *fmt, const char *arg)
{
    g_autofree char *cmd = g_strdup_printf(fmt, arg);
    g_autofree char *out = test_vm_cmd(vm, "%s", cmd);
    ck_assert_msg(!strcmp(out, ""), "'%s' said: %s", cmd, out);
}

static bool is_postcopy(Phase ph)
{
    return ph >= PH_PC_SWITCH;
}

static TestVm *start_dest(bool postcopy, int *port)
{
    *port = test_free_port();
    g_autofree char *inc = g_strdup_printf("tcp:127.0.0.1:%d", *port);
    const char *args[] = { "-m", "128M", "-incoming", inc, NULL };
    TestVm *dst = start("dst", args);
    g_autofree char *t = g_strdup_printf("%d", PEER_TIMEOUT_MS);
    cmd_ok(dst, "migrate_set_parameter x-peer-timeout %s", t);
    if (postcopy) {
        cmd_ok(dst, "migrate_set_capability postcopy-ram %s", "on");
    }
    return dst;
}

static char *run_state(TestVm *vm)
{
    return test_vm_cmd(vm, "info status");
}

/* Migrates @src to a fresh destination, directly: it must go through. */
static void second_migration(TestVm *src)
{
    int port;
    TestVm *dst = start_dest(false, &port);
    g_free(test_vm_cmd(src, "migrate_set_capability postcopy-ram off"));
    g_free(test_vm_cmd(src, "migrate_set_parameter downtime-limit 300"));
    g_autofree char *out = test_vm_cmd(src, "migrate tcp:127.0.0.1:%d", port);
    g_autofree char *info = test_vm_cmd(src, "info migrate");
    EXPECT(!strcmp(out, "") && strstr(info, "Migration status: completed\n") &&
           strstr(info, "verify: OK ("), "the second migration failed: %s%s", out, info);
    const char *const ends[] = { "completed", "failed", NULL };
    g_autofree char *ds = test_vm_wait_status_any(dst, ends, 30000);
    g_autofree char *st = test_vm_wait_run_state(dst, "VM status: running\n", 10000);
    EXPECT(!strcmp(st, "VM status: running\n"), "second destination: %s (%s)", st, ds);
    if (!failure) {
        test_vm_assert_guest_ok(dst);
    }
    test_vm_quit(dst);
}

/* The destination never ran the guest (it cannot go back to inmigrate). */
static void expect_dest_never_ran(TestVm *dst)
{
    if (!dst) {
        return;
    }
    const char *const ends[] = { "failed", "completed", NULL };
    g_autofree char *s = test_vm_wait_status_any(dst, ends, 30000);
    g_autofree char *st = run_state(dst);
    EXPECT(g_str_has_prefix(s, "failed") && !strcmp(st, "VM status: paused (inmigrate)\n"),
           "the destination must not run the guest: '%s', %s", s, st);
}

static void expect_source_runs_on(TestVm *src, TestVm *dst)
{
    const char *const ends[] = { "failed", "completed", "cancelled", "postcopy-paused",
                                 NULL };
    char *s = test_vm_wait_status_any(src, ends, 60000);
    if (g_str_has_prefix(s, "postcopy-paused")) {
        /* The link broke before RUN's ack: the source cannot know whether
         * the guest ran over there.  The operator asks, as for a recovery;
         * a destination that never ran it says so. */
        g_free(test_vm_wait_status(dst, "failed", 30000));
        int rport = test_free_port();
        g_autofree char *r1 = test_vm_cmd(dst, "migrate_recover tcp:127.0.0.1:%d", rport);
        EXPECT(!*r1, "migrate_recover where the guest never ran: %s", r1);
        g_autofree char *r2 = test_vm_cmd(src, "migrate -r tcp:127.0.0.1:%d", rport);
        EXPECT(!*r2, "migrate -r: %s", r2);
        g_free(s);
        s = test_vm_wait_status(src, "failed", 30000);
        EXPECT(strstr(s, "never ran"), "the source must say why it runs on: '%s'", s);
    }
    EXPECT(g_str_has_prefix(s, "failed (") && strlen(s) > strlen("failed ()") + 8,
           "the source must fail with a reason: '%s'", s);
    g_autofree char *st = test_vm_wait_run_state(src, "VM status: running\n", 10000);
    EXPECT(!strcmp(st, "VM status: running\n"), "the source must run on: %s ('%s')", st, s);
    g_free(s);
    if (!failure) {
        test_vm_assert_guest_ok(src);
    }
    expect_dest_never_ran(dst);
    if (!failure) {
        second_migration(src);
    }
}

/* The migration finished: guest running, verified, intact on @dst. */
static void expect_completes(TestVm *src, TestVm *dst)
{
    const char *const ends[] = { "completed", "failed", "cancelled", "postcopy-paused",
                                 NULL };
    g_autofree char *s = test_vm_wait_status_any(src, ends, 120000);
    g_autofree char *dsi = strcmp(s, "completed") ? test_vm_cmd(dst, "info migrate")
                                                  : NULL;
    EXPECT(!strcmp(s, "completed"), "the source ended '%s'; the destination:\n%s", s, dsi);
    if (failure) {
        return;
    }
    g_autofree char *ds = test_vm_wait_status_any(dst, ends, 60000);
    EXPECT(!strcmp(ds, "completed"), "the destination ended '%s'", ds);
    g_autofree char *si = test_vm_cmd(src, "info migrate");
    g_autofree char *di = test_vm_cmd(dst, "info migrate");
    EXPECT(strstr(si, "verify: OK (") && strstr(di, "verify: OK ("),
           "not verified:\n%s\n%s", si, di);
    g_autofree char *st = test_vm_wait_run_state(src, "VM status: paused (postmigrate)\n",
                                                 10000);
    EXPECT(!strcmp(st, "VM status: paused (postmigrate)\n"), "source: %s", st);
    g_autofree char *dst_st = test_vm_wait_run_state(dst, "VM status: running\n", 10000);
    EXPECT(!strcmp(dst_st, "VM status: running\n"), "destination: %s", dst_st);
    if (!failure) {
        test_vm_assert_guest_ok(dst);
    }
}

static void expect_commit_in_doubt(TestVm *src, TestVm *dst)
{
    const char *const ends[] = { "completed", "failed", "cancelled", NULL };
    g_autofree char *s = test_vm_wait_status_any(src, ends, 60000);
    g_autofree char *st = test_vm_wait_run_state(src, "VM status: paused (postmigrate)\n",
                                                 10000);
    EXPECT(!strcmp(st, "VM status: paused (postmigrate)\n"),
           "the source let go of the guest: %s ('%s')", st, s);
    expect_dest_never_ran(dst);
    if (failure) {
        return;
    }
    /* The operator's resolution: the destination never ran, so run it here. */
    g_autofree char *c = test_vm_cmd(src, "cont");
    EXPECT(!strcmp(c, ""), "cont: %s", c);
    g_autofree char *st2 = run_state(src);
    EXPECT(!strcmp(st2, "VM status: running\n"), "after cont: %s", st2);
    if (!failure) {
        test_vm_assert_guest_ok(src);
        second_migration(src);
    }
}

/* The source is dead after the switch: the destination must say so. */
static void expect_dest_cannot_continue(TestVm *dst)
{
    const char *const ends[] = { "postcopy-paused", "failed", "completed", NULL };
    g_autofree char *s = test_vm_wait_status_any(dst, ends, 30000);
    EXPECT(g_str_has_prefix(s, "postcopy-paused") && strstr(s, "cannot continue"),
           "the destination must say the guest cannot continue: '%s'", s);
    gint64 t0 = g_get_monotonic_time();
    g_autofree char *stop = test_vm_cmd(dst, "stop");
    g_autofree char *st = run_state(dst);
    EXPECT(g_get_monotonic_time() - t0 < 5 * G_USEC_PER_SEC, "stop took %" G_GINT64_FORMAT
           " ms", (g_get_monotonic_time() - t0) / 1000);
    EXPECT(!strcmp(stop, "") && g_str_has_prefix(st, "VM status: paused"),
           "stop must stop the guest: '%s', %s", stop, st);
}

/* Both sides paused; a recovery straight to the destination completes it. */
static void expect_recovers(TestVm *src, TestVm *dst)
{
    const char *const paused[] = { "postcopy-paused", "failed", "completed", NULL };
    g_autofree char *s = test_vm_wait_status_any(src, paused, 60000);
    g_autofree char *ds = test_vm_wait_status_any(dst, paused, 60000);
    /* Or the destination has it all, and only COMPLETE's ack was lost
     * (the whole push fitted in the socket buffers of a frozen peer): it
     * completed, and the recovery tells the source so. */
    EXPECT(g_str_has_prefix(s, "postcopy-paused") &&
           (g_str_has_prefix(ds, "postcopy-paused") || !strcmp(ds, "completed")),
           "both sides must pause: source '%s', destination '%s'", s, ds);
    if (failure) {
        return;
    }
    int rport = test_free_port();
    g_autofree char *rec = g_strdup_printf("tcp:127.0.0.1:%d", rport);
    cmd_ok(dst, "migrate_recover %s", rec);
    cmd_ok(src, "migrate -r %s", rec);
    /* The source takes the request up on its own thread: wait until it
     * has left the pause it was in (a failed attempt gives a new reason). */
    for (int t = 0;; t += 20) {
        g_autofree char *info = test_vm_cmd(src, "info migrate");
        g_autofree char *now = test_field(info, "Migration status");
        if (now && strcmp(now, s)) {
            break;
        }
        ck_assert_msg(t < 60000, "migrate -r was never taken up:\n%s", info);
        g_usleep(20000);
    }
    expect_completes(src, dst);
}

typedef struct Run {
    const Cell *c;
    TestVm *src, *dst;
    Proxy *proxy, *rproxy;
    bool frozen;
} Run;

/* The proxy holds the stream at the phase's first message. */
static void arm_phase(Proxy *p, Phase ph)
{
    static const struct { int type, after; } at[] = {
        [PH_HANDSHAKE] = { WIRE_HELLO, -1 },
        [PH_BULK] = { WIRE_RAM_BATCH, -1 },
        [PH_DIRTY] = { WIRE_RAM_BATCH, WIRE_ROUND_END },
        [PH_STOP_COPY] = { WIRE_DEVICE_STATE, -1 },
        [PH_VERIFY] = { WIRE_VERIFY, -1 },
        [PH_COMMIT] = { WIRE_COMMIT, -1 },
        [PH_PC_SWITCH] = { WIRE_POSTCOPY_RUN, -1 },
        [PH_PC_PUSH] = { WIRE_RAM_BATCH, WIRE_POSTCOPY_RUN },
        [PH_PC_RECOVERY] = { WIRE_RAM_BATCH, WIRE_POSTCOPY_RUN },
    };
    proxy_arm(p, at[ph].type, at[ph].after, false);
}

/* Migration under way through the proxy, held at the cell's phase. */
static void reach_phase(Run *r)
{
    Phase ph = r->c->phase;
    bool pc = is_postcopy(ph);
    const char *args[] = { "-m", "128M", "--workload", "churn,wss=16M,rate=8M", NULL };
    r->src = start("src", args);
    g_autofree char *t = g_strdup_printf("%d", PEER_TIMEOUT_MS);
    cmd_ok(r->src, "migrate_set_parameter x-peer-timeout %s", t);
    int port, pport = test_free_port();
    r->dst = start_dest(pc, &port);
    r->proxy = proxy_start(pport, port, PROXY_PASS, 0);
    arm_phase(r->proxy, ph);
    if (pc) {
        cmd_ok(r->src, "migrate_set_capability postcopy-ram %s", "on");
    }
    if (ph == PH_DIRTY) {
        cmd_ok(r->src, "migrate_set_parameter downtime-limit %s", "1");
    }
    g_autofree char *uri = g_strdup_printf("tcp:127.0.0.1:%d", pport);
    cmd_ok(r->src, "migrate -d %s", uri);
    if (pc) {
        /* Switch at the first check of the bulk pass: most pages are owed. */
        g_free(test_vm_wait_status(r->src, "active", 30000));
        cmd_ok(r->src, "migrate_start_postcopy%s", "");
    }
    ck_assert_msg(proxy_wait_held(r->proxy, 60000), "%s was never reached",
                  phase_names[ph]);
    if (ph == PH_DIRTY) {
        /* In a dirty round now; from here the migration may converge. */
        cmd_ok(r->src, "migrate_set_parameter downtime-limit %s", "300");
    }
    if (ph != PH_PC_RECOVERY) {
        return;
    }
    /* Cut in the push, then recover through a second proxy held at MISSING. */
    proxy_fault_now(r->proxy, PROXY_RESET);
    g_free(test_vm_wait_status(r->src, "postcopy-paused", 30000));
    g_free(test_vm_wait_status(r->dst, "postcopy-paused", 30000));
    int rport = test_free_port(), rpport = test_free_port();
    r->rproxy = proxy_start(rpport, rport, PROXY_PASS, 0);
    proxy_arm(r->rproxy, WIRE_MISSING, -1, true);
    g_autofree char *rec = g_strdup_printf("tcp:127.0.0.1:%d", rport);
    cmd_ok(r->dst, "migrate_recover %s", rec);
    g_autofree char *viap = g_strdup_printf("tcp:127.0.0.1:%d", rpport);
    cmd_ok(r->src, "migrate -r %s", viap);
    ck_assert_msg(proxy_wait_held(r->rproxy, 30000), "the recovery never sent MISSING");
}

/* Waits, frozen, until the source has reacted, and at least FAULT_MS. */
static void stay_frozen(Run *r)
{
    gint64 until = g_get_monotonic_time() + FAULT_MS * 1000;
    const char *const reacted[] = { "failed", "completed", "postcopy-paused", NULL };
    g_free(test_vm_wait_status_any(r->src, reacted, 60000));
    gint64 now = g_get_monotonic_time();
    if (now < until) {
        g_usleep(until - now);       /* the fault's length, not a condition */
    }
}

static void apply_fault(Run *r)
{
    Proxy *p = r->rproxy ? r->rproxy : r->proxy;
    bool after_switch = is_postcopy(r->c->phase);

    switch (r->c->fault) {
    case F_RESET:
        proxy_fault_now(p, PROXY_RESET);
        break;
    case F_TRUNCATE:
        proxy_fault_now(p, PROXY_TRUNCATE);
        break;
    case F_CORRUPT:
        proxy_fault_now(p, PROXY_CORRUPT);
        break;
    case F_KILL:
        if (r->c->phase == PH_PC_SWITCH) {
            /* Between RUN and its ack: the guest runs over there, and the
             * source dies before it hears so. */
            proxy_release(p);
            proxy_arm(p, WIRE_ACK, -1, true);
            ck_assert_msg(proxy_wait_held(p, 30000), "RUN was never acked");
        }
        if (after_switch) {
            test_vm_kill(r->src);
            r->src = NULL;
        } else {
            test_vm_kill(r->dst);
            r->dst = NULL;
        }
        proxy_release(p);
        break;
    case F_FREEZE:
        test_vm_signal(r->dst, SIGSTOP);
        r->frozen = true;
        proxy_release(p);
        stay_frozen(r);
        test_vm_signal(r->dst, SIGCONT);
        r->frozen = false;
        break;
    case F_THROTTLE:
        proxy_throttle(p, TRICKLE);
        proxy_release(p);
        g_usleep(FAULT_MS * 1000);      /* the fault's length */
        proxy_throttle(p, 0);
        break;
    }
}

static void run_cell(const Cell *c)
{
    Run r = { .c = c };
    reach_phase(&r);
    apply_fault(&r);
    switch (c->want) {
    case COMPLETES:
        expect_completes(r.src, r.dst);
        break;
    case SOURCE_RUNS_ON:
        expect_source_runs_on(r.src, r.dst);
        break;
    case COMMIT_IN_DOUBT:
        expect_commit_in_doubt(r.src, r.dst);
        break;
    case DEST_CANNOT_CONTINUE:
        expect_dest_cannot_continue(r.dst);
        break;
    case RECOVERS:
        expect_recovers(r.src, r.dst);
        break;
    case NOT_APPLICABLE:
        break;
    }
    proxy_stop(r.proxy);
    if (r.rproxy) {
        proxy_stop(r.rproxy);
    }
    if (r.dst) {
        test_vm_quit(r.dst);        /* exit 0 within 20 s, whatever happened */
    }
    if (r.src) {
        test_vm_quit(r.src);
    }
}

START_TEST(cell)
{
    const Cell *c = &cells[_i];
    g_autofree char *name = g_strdup_printf("%s x %s", phase_names[c->phase],
                                            fault_names[c->fault]);
    if (c->want == NOT_APPLICABLE) {
        printf("N/A: %s: %s\n", name, c->why);
        fflush(stdout);
        return;
    }
    gint64 t0 = g_get_monotonic_time();
    g_clear_pointer(&failure, g_free);
    run_cell(c);
    double s = (g_get_monotonic_time() - t0) / 1e6;
    if (c->known_bug) {
        ck_assert_msg(failure, "%s: expected %s and got it: the known bug is fixed, "
                      "update the table", name, outcome_names[c->want]);
        printf("XFAIL: %s: expected %s (%s); known bug: %s; got: %s (%.1f s)\n", name,
               outcome_names[c->want], c->why, c->known_bug, failure, s);
    } else {
        ck_assert_msg(!failure, "%s: expected %s (%s): %s", name,
                      outcome_names[c->want], c->why, failure);
        printf("OK: %s: %s (%.1f s)\n", name, outcome_names[c->want], s);
    }
    fflush(stdout);
}
END_TEST

/* x-peer-timeout: shown, set on both sides, bad values refused. */
START_TEST(peer_timeout_parameter)
{
    const char *args[] = { "-m", "64M", NULL };
    TestVm *vm = start("src", args);
    g_autofree char *p0 = test_vm_cmd(vm, "info migrate_parameters");
    ck_assert_msg(strstr(p0, "x-peer-timeout: 0 ms (built-in waits)\n"), "%s", p0);
    g_autofree char *e1 = test_vm_cmd(vm, "migrate_set_parameter x-peer-timeout soon");
    ck_assert_msg(g_str_has_prefix(e1, "Error: x-peer-timeout: 'soon' is not a number"),
                  "%s", e1);
    g_autofree char *e2 = test_vm_cmd(vm, "migrate_set_parameter x-peer-timeout -1");
    ck_assert_msg(g_str_has_prefix(e2, "Error: x-peer-timeout"), "%s", e2);
    g_autofree char *e3 = test_vm_cmd(vm, "migrate_set_parameter x-peer-timeout 3600001");
    ck_assert_msg(g_str_has_prefix(e3, "Error: x-peer-timeout"), "%s", e3);
    cmd_ok(vm, "migrate_set_parameter x-peer-timeout %s", "1500");
    g_autofree char *p1 = test_vm_cmd(vm, "info migrate_parameters");
    ck_assert_msg(strstr(p1, "x-peer-timeout: 1500 ms\n"), "%s", p1);
    test_vm_quit(vm);
    int port;
    TestVm *dst = start_dest(false, &port);     /* set while waiting: allowed */
    g_autofree char *p2 = test_vm_cmd(dst, "info migrate_parameters");
    ck_assert_msg(strstr(p2, "x-peer-timeout: 2000 ms\n"), "%s", p2);
    test_vm_quit(dst);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fault_matrix");
    TCase *tc = tcase_create("matrix");
    g_autoptr(GError) err = NULL;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    /* HINTMIG_FAULT_ROWS=FIRST-LAST runs those rows alone (0-based). */
    const char *rows = g_getenv("HINTMIG_FAULT_ROWS");
    int first = 0, end = G_N_ELEMENTS(cells);
    if (rows && sscanf(rows, "%d-%d", &first, &end) == 2) {
        end = MIN(end + 1, (int)G_N_ELEMENTS(cells));
    } else {
        tcase_add_test(tc, peer_timeout_parameter);
    }
    if (!uffd_postcopy_probe(&err)) {
        /* The precopy rows run; the postcopy ones need userfaultfd. */
        int n = first;
        while (n < end && !is_postcopy(cells[n].phase)) {
            n++;
        }
        if (n < end) {
            test_skip("fault_matrix postcopy rows", err->message);
        }
        end = n;
    }
    tcase_add_loop_test(tc, cell, first, end);
    suite_add_tcase(s, tc);
    return test_run(s);
}
