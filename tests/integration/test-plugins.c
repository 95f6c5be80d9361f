/* SPDX-License-Identifier: MIT */
/*
 * Loading plugins: broken ones (wrong ABI, no entry symbol, a type name
 * already taken, not a shared object) are refused with a message naming the
 * file and the problem, the good ones next to them still load, and a
 * create() that fails tells the operator why. Plugins built against older,
 * shorter structs keep working: the host reads nothing past their size.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <muserd/plugin.h>

#include "../../plugins/timer/timer-regs.h"
#include "helpers/testutil.h"

/* A plugin directory next to the daemon's runtime directory (removed with it),
 * holding symlinks: pairs of link name and target path, NULL-terminated. */
static void make_plugin_dir(struct test_daemon *d, const char *const *links)
{
    char dir[4096], link[4200];
    snprintf(dir, sizeof(dir), "%s/../plugins", test_daemon_runtime_dir(d));
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    for (size_t i = 0; links[i]; i += 2) {
        snprintf(link, sizeof(link), "%s/%s", dir, links[i]);
        char *target = realpath(links[i + 1], NULL);
        ck_assert_msg(target, "%s: %s (build it with make)", links[i + 1], strerror(errno));
        ck_assert_int_eq(symlink(target, link), 0);
        free(target);
    }
    ck_assert_int_eq(test_daemon_add_arg(d, "--plugin-dir"), 0);
    ck_assert_int_eq(test_daemon_add_arg(d, dir), 0);
}

static char *test_plugin(const char *name)
{
    return strdup(tu_test_plugin(name));
}

static char *real_plugin(const char *name)
{
    return strdup(tu_plugin(name));
}

START_TEST(test_bad_plugins_refused_good_ones_load)
{
    struct test_daemon *d;
    ck_assert_int_eq(test_daemon_new(&d), 0);
    char *paths[] = {real_plugin("timer"),    real_plugin("ram"),       test_plugin("bad-abi"),
                     test_plugin("no-entry"), test_plugin("dup-timer"), test_plugin("create-fails"),
                     test_plugin("old-ops")};
    /* "zz-" sorts after timer.so: the impostor is the one refused. */
    const char *links[] = {
        "timer.so",        paths[0],      "ram.so",     paths[1],          "bad-abi.so",
        paths[2],          "no-entry.so", paths[3],     "zz-dup-timer.so", paths[4],
        "create-fails.so", paths[5],      "old-ops.so", paths[6],          NULL};
    make_plugin_dir(d, links);

    /* Not a shared object at all, and a file that is not a plugin by name. */
    char path[4200];
    snprintf(path, sizeof(path), "%s/../plugins/garbage.so", test_daemon_runtime_dir(d));
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("this is not an ELF file\n", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/../plugins/README", test_daemon_runtime_dir(d));
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);

    ck_assert_int_eq(test_daemon_add_device(d, "timer", "t0", NULL), 0);
    ck_assert_int_eq(test_daemon_add_device(d, "ram", "r0", NULL), 0);
    tu_start(d);

    /* Each refusal names the file and the problem, on one line. */
    char abi[32];
    snprintf(abi, sizeof(abi), "ABI 1 to %d", MUSERD_PLUGIN_ABI_VERSION);
    tu_assert_log_line(d, "bad-abi.so", "ABI 999", abi);
    tu_assert_log_line(d, "no-entry.so", MUSERD_PLUGIN_ENTRY_SYMBOL);
    tu_assert_log_line(d, "zz-dup-timer.so", "'timer'", "/timer.so");
    tu_assert_log_line(d, "garbage.so", "Refusing");
    ck_assert(!tu_file_contains(test_daemon_log_path(d), "README"));

    /* The good plugins serve, and the timer is the real one. */
    struct vfu_client *c = tu_open(d, "t0");
    ck_assert_uint_eq(tu_rd32(c, TIMER_REGS_BAR, TIMER_REG_ID), TIMER_ID_MAGIC);
    vfu_client_free(c);
    c = tu_open(d, "r0");
    ck_assert_uint_ne(tu_rd32(c, 0, 0), 0);
    vfu_client_free(c);
    tu_stop(d);
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        free(paths[i]);
}
END_TEST

/* A type from a refused plugin does not exist. */
START_TEST(test_type_of_refused_plugin_unknown)
{
    struct test_daemon *d;
    ck_assert_int_eq(test_daemon_new(&d), 0);
    char *bad = test_plugin("bad-abi");
    const char *links[] = {"bad-abi.so", bad, NULL};
    make_plugin_dir(d, links);
    ck_assert_int_eq(test_daemon_add_device(d, "badabi", "b0", NULL), 0);
    ck_assert_int_ne(tu_expect_start_failure(d), 0);
    tu_assert_log(d, "badabi");
    test_daemon_free(d);
    free(bad);
}
END_TEST

START_TEST(test_create_failure_reported)
{
    struct test_daemon *d;
    ck_assert_int_eq(test_daemon_new(&d), 0);
    char *paths[] = {real_plugin("timer"), test_plugin("create-fails")};
    const char *links[] = {"timer.so", paths[0], "create-fails.so", paths[1], NULL};
    make_plugin_dir(d, links);
    ck_assert_int_eq(test_daemon_add_device(d, "timer", "t0", NULL), 0);
    ck_assert_int_eq(test_daemon_add_device(d, "failing", "f0", NULL), 0);
    ck_assert_int_ne(tu_expect_start_failure(d), 0);
    tu_assert_log(d, "f0");
    tu_assert_log(d, "the frobnicator is not connected");
    test_daemon_free(d);
    free(paths[0]);
    free(paths[1]);
}
END_TEST

/*
 * plugin.h: "The host never reads a member beyond the size the plugin
 * declared, and treats a missing or NULL function pointer as not supported."
 * oldops's table ends after reset; everything behind it aborts when called.
 */
START_TEST(test_old_and_missing_ops)
{
    struct test_daemon *d;
    ck_assert_int_eq(test_daemon_new(&d), 0);
    char *old = test_plugin("old-ops");
    const char *links[] = {"old-ops.so", old, NULL};
    make_plugin_dir(d, links);
    ck_assert_int_eq(test_daemon_add_device(d, "oldops", "o0", NULL), 0);
    ck_assert_int_eq(test_daemon_add_device(d, "noops", "n0", NULL), 0);
    tu_start(d);

    const char *ids[] = {"o0", "n0"};
    for (int i = 0; i < 2; i++) {
        struct vfu_client *c = tu_open(d, ids[i]);
        ck_assert_uint_eq(tu_rd16(c, TU_CFG, 2), 0x00fe);
        /* oldops answers through its bar_access, noops reads as zeros. */
        ck_assert_uint_eq(tu_rd32(c, 0, 0x10), i == 0 ? 0xababababu : 0);
        tu_wr32(c, 0, 0x10, 1);
        ck_assert_int_eq(vfu_client_reset(c), 0);
        /* A DMA map the client drops on disconnect (the host would tell a
         * newer plugin through dma_unmap). */
        void *mem;
        int fd = tu_memfd(4096, &mem);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(
            vfu_client_dma_map(c, 0x10000, 4096, VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE, fd, 0), 0);
        int r = vfu_client_dma_unmap(c, 0x10000, 4096, 0);
        ck_assert_msg(r == 0, "DMA_UNMAP on %s: %s; muserd %s", ids[i], strerror(-r),
                      kill(test_daemon_pid(d), 0) == 0 && !tu_wait_closed(vfu_client_fd(c), 0)
                          ? "alive"
                          : "died: did it call an op past the plugin's ops size?");
        ck_assert_int_eq(
            vfu_client_dma_map(c, 0x10000, 4096, VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE, fd, 0), 0);
        vfu_client_free(c);
        close(fd);
        munmap(mem, 4096);
    }
    /* Both devices still there after the disconnects. */
    struct vfu_client *c = tu_open(d, "o0");
    ck_assert_uint_eq(tu_rd32(c, 0, 0), 0xababababu);
    vfu_client_free(c);
    tu_stop(d); /* destroy() lies behind oldops's size: it must not be called */
    free(old);
}
END_TEST

static Suite *plugins_suite(void)
{
    Suite *s = suite_create("plugins");
    TCase *tc = tcase_create("loading");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bad_plugins_refused_good_ones_load);
    tcase_add_test(tc, test_type_of_refused_plugin_unknown);
    tcase_add_test(tc, test_create_failure_reported);
    tcase_add_test(tc, test_old_and_missing_ops);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(plugins_suite());
}
