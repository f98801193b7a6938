/* SPDX-License-Identifier: GPL-2.0-or-later */
/* auto-converge's policy (migration/auto_converge.c), round by round. */
#include "migration/auto_converge.h"
#include "test_util.h"

#define MB (1000ull * 1000)

static AutoConverge fresh(unsigned initial, unsigned increment, unsigned max,
                          unsigned threshold)
{
    HintmigParams p = {
        .cpu_throttle_initial = initial,
        .cpu_throttle_increment = increment,
        .max_cpu_throttle = max,
        .throttle_trigger_threshold = threshold,
    };
    AutoConverge a;
    auto_converge_init(&a, &p);
    return a;
}

/* Two rounds over the threshold start it, two more raise it, to the cap. */
START_TEST(rises_by_pairs_of_rounds_to_the_cap)
{
    AutoConverge a = fresh(20, 30, 75, 50);
    unsigned seen[8];

    for (unsigned i = 0; i < 8; i++) {
        bool changed = auto_converge_round(&a, 80 * MB, 100 * MB);
        ck_assert_int_eq(changed, i == 1 || i == 3 || i == 5);
        seen[i] = a.percent;
    }
    ck_assert_uint_eq(seen[0], 0);
    ck_assert_uint_eq(seen[1], 20);
    ck_assert_uint_eq(seen[2], 20);
    ck_assert_uint_eq(seen[3], 50);
    ck_assert_uint_eq(seen[5], 75);         /* 80 capped */
    ck_assert_uint_eq(seen[7], 75);         /* and it stays there */
}
END_TEST

/* At or under the threshold nothing happens; a good round breaks a pair. */
START_TEST(a_good_round_breaks_the_pair)
{
    AutoConverge a = fresh(20, 10, 99, 50);

    ck_assert(!auto_converge_round(&a, 50 * MB, 100 * MB));   /* exactly 50% */
    ck_assert(!auto_converge_round(&a, 50 * MB, 100 * MB));
    ck_assert_uint_eq(a.percent, 0);
    ck_assert(!auto_converge_round(&a, 51 * MB, 100 * MB));   /* high */
    ck_assert(!auto_converge_round(&a, 10 * MB, 100 * MB));   /* good */
    ck_assert(!auto_converge_round(&a, 51 * MB, 100 * MB));   /* high: 1 again */
    ck_assert_uint_eq(a.percent, 0);
    ck_assert(auto_converge_round(&a, 51 * MB, 100 * MB));    /* high: 2 */
    ck_assert_uint_eq(a.percent, 20);
    /* A throttle once set is not lowered by good rounds (QEMU's too). */
    ck_assert(!auto_converge_round(&a, 0, 100 * MB));
    ck_assert_uint_eq(a.percent, 20);
}
END_TEST

/* A round that sent nothing (a stalled link) while the guest wrote counts
 * as high; huge figures do not overflow; a threshold of 100 means "more
 * dirtied than sent". */
START_TEST(edges)
{
    AutoConverge a = fresh(20, 10, 99, 50);
    ck_assert(!auto_converge_round(&a, 4096, 0));
    ck_assert(auto_converge_round(&a, 4096, 0));
    ck_assert(!auto_converge_round(&a, 0, 0));                 /* idle */

    AutoConverge b = fresh(30, 10, 99, 60);
    uint64_t big = UINT64_MAX / 2;
    ck_assert(!auto_converge_round(&b, big / 100 * 59, big));
    ck_assert(!auto_converge_round(&b, big / 100 * 59, big));
    ck_assert(!auto_converge_round(&b, big / 100 * 61, big));
    ck_assert(auto_converge_round(&b, big / 100 * 61, big));
    ck_assert_uint_eq(b.percent, 30);

    AutoConverge c = fresh(99, 10, 99, 100);
    ck_assert(!auto_converge_round(&c, 100 * MB, 100 * MB));
    ck_assert(!auto_converge_round(&c, 100 * MB, 100 * MB));
    ck_assert(!auto_converge_round(&c, 101 * MB, 100 * MB));
    ck_assert(auto_converge_round(&c, 101 * MB, 100 * MB));
    ck_assert_uint_eq(c.percent, 99);
    ck_assert(!auto_converge_round(&c, 101 * MB, 100 * MB));
    ck_assert(!auto_converge_round(&c, 101 * MB, 100 * MB));   /* at the cap */
    ck_assert_uint_eq(c.percent, 99);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auto_converge");
    TCase *tc = tcase_create("policy");
    tcase_add_test(tc, rises_by_pairs_of_rounds_to_the_cap);
    tcase_add_test(tc, a_good_round_breaks_the_pair);
    tcase_add_test(tc, edges);
    suite_add_tcase(s, tc);
    return test_run(s);
}
