/* SPDX-License-Identifier: MIT */
/*
 * The migration state machine's paths against the spec (vfio-user.rst,
 * "Direct State Transitions" and "Complex State Transitions"): every pair
 * of the 8 states, with and without PRE_COPY.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "vfu/mig-fsm.h"
#include "vfu/wire.h"

enum {
    E = VFU_MIG_ERROR,
    S = VFU_MIG_STOP,
    R = VFU_MIG_RUNNING,
    SC = VFU_MIG_STOP_COPY,
    RS = VFU_MIG_RESUMING,
    RP = VFU_MIG_RUNNING_P2P,
    PC = VFU_MIG_PRE_COPY,
    PP = VFU_MIG_PRE_COPY_P2P,
    NO = -EINVAL
};

static const uint64_t WITH_PRE = VFU_MIGRATION_STOP_COPY | VFU_MIGRATION_PRE_COPY;
static const uint64_t STOP_ONLY = VFU_MIGRATION_STOP_COPY;

/* want[from][to]: the next state, written out by hand from the spec. */
static const int with_pre[8][8] = {
    /*          E   S   R   SC  RS  RP  PC  PP */
    [E] = {NO, NO, NO, NO, NO, NO, NO, NO}, [S] = {NO, S, R, SC, RS, NO, R, NO},
    [R] = {NO, S, R, S, S, NO, PC, NO},     [SC] = {NO, S, S, SC, S, NO, NO, NO},
    [RS] = {NO, S, S, S, RS, NO, S, NO},    [RP] = {NO, NO, NO, NO, NO, NO, NO, NO},
    [PC] = {NO, R, R, SC, R, NO, PC, NO},   [PP] = {NO, NO, NO, NO, NO, NO, NO, NO},
};
/* Without PRE_COPY its arcs are gone: no state leads to it or from it. */
static const int stop_only[8][8] = {
    [E] = {NO, NO, NO, NO, NO, NO, NO, NO},  [S] = {NO, S, R, SC, RS, NO, NO, NO},
    [R] = {NO, S, R, S, S, NO, NO, NO},      [SC] = {NO, S, S, SC, S, NO, NO, NO},
    [RS] = {NO, S, S, S, RS, NO, NO, NO},    [RP] = {NO, NO, NO, NO, NO, NO, NO, NO},
    [PC] = {NO, NO, NO, NO, NO, NO, NO, NO}, [PP] = {NO, NO, NO, NO, NO, NO, NO, NO},
};

static bool direct_arc(int from, int to, bool pre)
{
    static const int arcs[][2] = {{R, S},  {SC, S}, {RS, S},  {PC, R}, {S, R},
                                  {R, PC}, {S, SC}, {PC, SC}, {S, RS}};
    if (!pre && (from == PC || to == PC))
        return false;
    for (size_t i = 0; i < sizeof(arcs) / sizeof(arcs[0]); i++)
        if (arcs[i][0] == from && arcs[i][1] == to)
            return true;
    return false;
}

START_TEST(test_every_pair)
{
    for (int pre = 0; pre < 2; pre++) {
        const int(*want)[8] = pre ? with_pre : stop_only;
        uint64_t flags = pre ? WITH_PRE : STOP_ONLY;
        for (uint32_t from = 0; from < 8; from++)
            for (uint32_t to = 0; to < 8; to++) {
                int got = vfu_mig_next_arc(from, to, flags);
                ck_assert_msg(got == want[from][to], "pre %d: %u -> %u gave %d, want %d", pre, from,
                              to, got, want[from][to]);
                /* Every step taken is one of the spec's direct arcs. */
                if (got >= 0 && from != to)
                    ck_assert_msg(direct_arc((int)from, got, pre), "%u -> %d is no arc", from, got);
            }
    }
}
END_TEST

/* The whole path, as the server walks it: states after each arc. */
static int walk(uint32_t from, uint32_t to, uint64_t flags, int *path, int max)
{
    int n = 0;
    while (from != to) {
        int next = vfu_mig_next_arc(from, to, flags);
        if (next < 0)
            return next;
        ck_assert_int_lt(n, max);
        path[n++] = next;
        from = (uint32_t)next;
    }
    return n;
}

START_TEST(test_paths)
{
    int p[8];
    /* Shortest paths with no saving state inside. */
    ck_assert_int_eq(walk(R, SC, WITH_PRE, p, 8), 2); /* not by PRE_COPY */
    ck_assert_int_eq(p[0], S);
    ck_assert_int_eq(p[1], SC);
    ck_assert_int_eq(walk(PC, S, WITH_PRE, p, 8), 2); /* not by STOP_COPY */
    ck_assert_int_eq(p[0], R);
    ck_assert_int_eq(p[1], S);
    ck_assert_int_eq(walk(SC, R, WITH_PRE, p, 8), 2);
    ck_assert_int_eq(p[0], S);
    ck_assert_int_eq(p[1], R);
    ck_assert_int_eq(walk(RS, PC, WITH_PRE, p, 8), 3);
    ck_assert_int_eq(p[0], S);
    ck_assert_int_eq(p[1], R);
    ck_assert_int_eq(p[2], PC);
    ck_assert_int_eq(walk(PC, RS, WITH_PRE, p, 8), 3);
    ck_assert_int_eq(p[0], R);
    ck_assert_int_eq(p[1], S);
    ck_assert_int_eq(p[2], RS);
    ck_assert_int_eq(walk(S, PC, WITH_PRE, p, 8), 2);
    ck_assert_int_eq(p[0], R);
    ck_assert_int_eq(walk(R, RS, STOP_ONLY, p, 8), 2);
    ck_assert_int_eq(walk(RS, SC, STOP_ONLY, p, 8), 2);
    ck_assert_int_eq(walk(S, S, STOP_ONLY, p, 8), 0);

    /* Every allowed pair arrives, and no saving state is passed through. */
    for (uint32_t from = 1; from < 8; from++)
        for (uint32_t to = 1; to < 8; to++) {
            int n = walk(from, to, WITH_PRE, p, 8);
            if (n <= 0)
                continue;
            ck_assert_int_le(n, 3);
            for (int i = 0; i + 1 < n; i++)
                ck_assert_msg(p[i] != PC && p[i] != SC, "%u -> %u passes %d", from, to, p[i]);
        }
}
END_TEST

START_TEST(test_refusals)
{
    ck_assert_int_eq(vfu_mig_next_arc(SC, PC, WITH_PRE), -EINVAL);
    for (uint32_t to = 0; to < 8; to++)
        ck_assert_int_eq(vfu_mig_next_arc(E, to, WITH_PRE), -EINVAL);
    for (uint32_t from = 0; from < 8; from++) {
        ck_assert_int_eq(vfu_mig_next_arc(from, E, WITH_PRE), -EINVAL);
        ck_assert_int_eq(vfu_mig_next_arc(from, RP, WITH_PRE), -EINVAL);
        ck_assert_int_eq(vfu_mig_next_arc(from, PP, WITH_PRE), -EINVAL);
        ck_assert_int_eq(vfu_mig_next_arc(from, 8, WITH_PRE), -EINVAL);
        ck_assert_int_eq(vfu_mig_next_arc(from, UINT32_MAX, WITH_PRE), -EINVAL);
        ck_assert_int_eq(vfu_mig_next_arc(from, PC, STOP_ONLY), -EINVAL);
    }
    ck_assert_int_eq(vfu_mig_next_arc(UINT32_MAX, S, WITH_PRE), -EINVAL);
    ck_assert_int_eq(vfu_mig_next_arc(100, S, WITH_PRE), -EINVAL);
}
END_TEST

START_TEST(test_sessions)
{
    for (uint32_t st = 0; st < 10; st++)
        ck_assert_int_eq(vfu_mig_in_session(st), st == PC || st == SC || st == RS);
}
END_TEST

static Suite *fsm_suite(void)
{
    Suite *s = suite_create("mig-fsm");
    TCase *tc = tcase_create("arcs");
    tcase_add_test(tc, test_every_pair);
    tcase_add_test(tc, test_paths);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_sessions);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fsm_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
