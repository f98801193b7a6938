/* SPDX-License-Identifier: GPL-2.0-or-later */
/* HMP parsing and dispatch, including bad input; and size parsing. */
#include <string.h>

#include "hmp/monitor.h"
#include "hintmig/hintmig.h"
#include "test_util.h"

static Monitor *mon;
static GString *out;
static GPtrArray *calls;     /* "name:arg1:arg2" per handler call */

static bool record(void *opaque, int argc, char **argv, GString *o,
                   GError **errp)
{
    (void)opaque;
    g_autofree char *joined = g_strjoinv(":", argv);
    g_ptr_array_add(calls, g_strdup(joined));
    if (argc > 1 && !strcmp(argv[argc - 1], "fail")) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL, "it failed as asked");
        return false;
    }
    g_string_append_printf(o, "ran %s\n", argv[0]);
    return true;
}

static const MonitorCmd cmds[] = {
    { "cont", "c", NULL, "resume emulation", 0, 0, record },
    { "migrate", NULL, "[-d] uri", "migrate to uri", 1, 2, record },
};
static const MonitorCmd infos[] = {
    { "status", NULL, NULL, "show the VM status", 0, 0, record },
};

static void setup(void)
{
    mon = monitor_new();
    out = g_string_new(NULL);
    calls = g_ptr_array_new_with_free_func(g_free);
    for (size_t i = 0; i < G_N_ELEMENTS(cmds); i++) {
        monitor_register(mon, &cmds[i], NULL);
    }
    monitor_register_info(mon, &infos[0], NULL);
}

static void teardown(void)
{
    monitor_free(mon);
    g_string_free(out, TRUE);
    g_ptr_array_free(calls, TRUE);
}

static const char *run(const char *line)
{
    g_string_truncate(out, 0);
    monitor_handle_line(mon, line, out);
    return out->str;
}

START_TEST(dispatch_and_alias)
{
    ck_assert_str_eq(run("cont"), "ran cont\n");
    ck_assert_str_eq(run("  c  "), "ran c\n");
    ck_assert_str_eq(run("migrate -d tcp:127.0.0.1:4444"), "ran migrate\n");
    ck_assert_uint_eq(calls->len, 3);
    ck_assert_str_eq(g_ptr_array_index(calls, 2), "migrate:-d:tcp:127.0.0.1:4444");
    ck_assert_str_eq(run("info status"), "ran status\n");
}
END_TEST

START_TEST(bad_input_is_reported_and_not_run)
{
    ck_assert_str_eq(run("frobnicate"), "unknown command: 'frobnicate'\n");
    ck_assert_str_eq(run("info nothing"), "unknown command: 'info nothing'\n");
    ck_assert_str_eq(run("cont now"), "cont: extraneous characters at the end of line\n");
    ck_assert_str_eq(run("migrate"),
                     "Error: migrate: missing argument (usage: migrate [-d] uri)\n");
    ck_assert_str_eq(run("info status extra"),
                     "Error: info status: extraneous characters at the end of line "
                     "(usage: info status)\n");
    ck_assert_str_eq(run("migrate \"tcp:1"), "Error: unterminated string literal\n");
    ck_assert_str_eq(run("migrate fail"), "Error: it failed as asked\n");
    ck_assert_uint_eq(calls->len, 1);      /* only "migrate fail" reached a handler */
}
END_TEST

START_TEST(empty_and_hostile_lines)
{
    ck_assert_str_eq(run(""), "");
    ck_assert_str_eq(run("   \t "), "");
    g_autoptr(GString) words = g_string_new("migrate");
    for (int i = 0; i < MONITOR_MAX_ARGS + 4; i++) {
        g_string_append(words, " a");
    }
    ck_assert(g_str_has_prefix(run(words->str), "Error: too many arguments"));
    ck_assert(g_str_has_prefix(run("\x01\x02\xff"), "unknown command"));
    g_autofree char *longword = g_strnfill(MONITOR_MAX_LINE, 'z');
    ck_assert(g_str_has_prefix(run(longword), "unknown command"));
    ck_assert_uint_eq(calls->len, 0);
}
END_TEST

START_TEST(tokenizer_quotes)
{
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) v = monitor_tokenize("a \"b c\" \"d\\\"e\"  f", &err);

    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(g_strv_length(v), 4);
    ck_assert_str_eq(v[1], "b c");
    ck_assert_str_eq(v[2], "d\"e");
    ck_assert_str_eq(v[3], "f");
}
END_TEST

START_TEST(help_lists_everything)
{
    run("help");
    ck_assert_ptr_nonnull(strstr(out->str, "cont|c -- resume emulation\n"));
    ck_assert_ptr_nonnull(strstr(out->str, "migrate [-d] uri -- migrate to uri\n"));
    ck_assert_ptr_nonnull(strstr(out->str, "help|? [cmd] -- show the help\n"));
    ck_assert_str_eq(run("help cont"), "cont|c -- resume emulation\n");
    ck_assert_str_eq(run("help nope"), "unknown command: 'nope'\n");
    run("info");
    ck_assert_str_eq(out->str, "info status -- show the VM status\n");
}
END_TEST

START_TEST(sizes)
{
    static const struct { const char *s; uint64_t unit, want; } ok[] = {
        { "512", 1, 512 }, { "512", 1 << 20, 512ull << 20 }, { "64K", 1, 65536 },
        { "1200M", 1, 1200ull << 20 }, { "2G", 1, 2ull << 30 },
        { "2GiB", 1, 2ull << 30 }, { "1t", 1, 1ull << 40 }, { "0", 1, 0 },
    };
    static const char *const bad[] = {
        "", "G", "-1", "1.5G", "12Q", "2GG", "99999999999999999999", "16777216T",
    };
    g_autoptr(GError) err = NULL;
    uint64_t v;

    for (size_t i = 0; i < G_N_ELEMENTS(ok); i++) {
        ck_assert_msg(hintmig_size_parse(ok[i].s, ok[i].unit, &v, &err), "%s", ok[i].s);
        ck_assert_uint_eq(v, ok[i].want);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_clear_error(&err);
        ck_assert_msg(!hintmig_size_parse(bad[i], 1, &v, &err), "'%s' accepted", bad[i]);
        ck_assert_ptr_nonnull(err);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("monitor");
    TCase *tc = tcase_create("hmp");
    TCase *sz = tcase_create("size_parse");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, dispatch_and_alias);
    tcase_add_test(tc, bad_input_is_reported_and_not_run);
    tcase_add_test(tc, empty_and_hostile_lines);
    tcase_add_test(tc, tokenizer_quotes);
    tcase_add_test(tc, help_lists_everything);
    tcase_add_test(sz, sizes);
    suite_add_tcase(s, tc);
    suite_add_tcase(s, sz);
    return test_run(s);
}
