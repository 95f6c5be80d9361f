/* SPDX-License-Identifier: MIT */
/*
 * SPDK's NVMe initiator, a second real client, against the nvme plugin:
 * spdk_nvme_identify shows the controller and its namespace, and
 * spdk_nvme_perf runs a second of verified I/O. SPDK comes from $SPDK_DIR
 * (make passes ../shared/spdk when it is there); without it the suite
 * says SKIP and passes.
 */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers/testutil.h"
#include "util/macro.h"

static const char *spdk_dir;

/* Run cmd, its output (both streams) into *out (malloc()ed); the exit status. */
static int run_capture(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
    }
    buf[len] = 0;
    *out = buf;
    return pclose(p);
}

/* A directory holding `cntrl`, a link to the device's socket: SPDK's traddr. */
static char *traddr_for(struct test_daemon *d, const char *id)
{
    char *dir = NULL;
    ck_assert_int_ge(asprintf(&dir, "%s/spdk-%s", test_daemon_runtime_dir(d), id), 0);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    char link[PATH_MAX];
    snprintf(link, sizeof(link), "%s/cntrl", dir);
    ck_assert_int_eq(symlink(test_daemon_socket(d, id), link), 0);
    return dir;
}

START_TEST(test_identify_and_perf)
{
    struct test_daemon *d =
        tu_daemon("nvme", "n0", "{\"size\": 16777216, \"serial\": \"SPDKSERIAL7\", \"queues\": 2}");
    _cleanup_free_ char *traddr = traddr_for(d, "n0");
    _cleanup_free_ char *cmd = NULL, *out = NULL;
    ck_assert_int_ge(asprintf(&cmd,
                              "timeout 60 %s/bin/spdk_nvme_identify --no-huge -s 512 -r "
                              "'trtype:VFIOUSER traddr:%s subnqn:nqn.2019-07.io.spdk:cnode0' 2>&1",
                              spdk_dir, traddr),
                     0);
    int status = run_capture(cmd, &out);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !strstr(out, "SPDKSERIAL7"))
        fprintf(stderr, "%s\n", out);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "spdk_nvme_identify failed");
    ck_assert_msg(strstr(out, "Serial Number:                         SPDKSERIAL7"),
                  "identify does not show the serial");
    ck_assert_msg(strstr(out, "Model Number:                          muserd NVMe controller"),
                  "identify does not show the model");
    ck_assert_msg(strstr(out, "NVMe Specification Version (VS):       1.4"), "no VS 1.4");
    ck_assert_msg(strstr(out, "Namespace ID:1"), "identify shows no namespace 1");
    /* 16 MiB in 512-byte blocks. */
    ck_assert_msg(strstr(out, "Size (in LBAs):                        32768"),
                  "identify does not show the namespace's size");

    /* A second of 4 KiB random reads and writes: perf fails on any
     * completion with an error status. */
    free(cmd);
    free(out);
    ck_assert_int_ge(asprintf(&cmd,
                              "timeout 60 %s/bin/spdk_nvme_perf --no-huge -s 512 -r "
                              "'trtype:VFIOUSER traddr:%s subnqn:nqn.2019-07.io.spdk:cnode0' "
                              "-q 16 -o 4096 -w randrw -M 50 -t 1 2>&1",
                              spdk_dir, traddr),
                     0);
    status = run_capture(cmd, &out);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !strstr(out, "Total"))
        fprintf(stderr, "%s\n", out);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "spdk_nvme_perf failed");
    const char *total = strstr(out, "Total");
    ck_assert_ptr_nonnull(total);
    double iops = 0;
    ck_assert_int_eq(sscanf(strchr(total, ':') + 1, "%lf", &iops), 1);
    printf("test-spdk-nvme: spdk_nvme_perf randrw QD16 4 KiB: %.0f IOPS\n", iops);
    /* Some I/O happened; how much is the bench's business, not a test's
     * (a loaded machine is slow, not wrong). */
    ck_assert_msg(iops > 0, "perf did no I/O");
    tu_stop(d);
}
END_TEST

int main(void)
{
    spdk_dir = getenv("SPDK_DIR");
    char probe[PATH_MAX];
    snprintf(probe, sizeof(probe), "%s/bin/spdk_nvme_identify", spdk_dir ? spdk_dir : "");
    if (!spdk_dir || !*spdk_dir || access(probe, X_OK) != 0) {
        printf("test-spdk-nvme: SKIP: no SPDK (set SPDK_DIR to a directory with "
               "bin/spdk_nvme_identify; make passes ../shared/spdk when it exists)\n");
        return EXIT_SUCCESS;
    }
    if (!tu_cpu_runs(probe)) {
        printf("test-spdk-nvme: SKIP: %s dies of SIGILL here: this SPDK build needs CPU "
               "instructions (AVX-512?) this machine lacks\n",
               probe);
        return EXIT_SUCCESS;
    }
    Suite *s = suite_create("spdk-nvme");
    TCase *tc = tcase_create("spdk");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_identify_and_perf);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
