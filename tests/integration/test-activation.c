/* SPDX-License-Identifier: MIT */
/*
 * Socket activation as systemd does it, with systemd-socket-activate standing
 * in for a socket unit: it binds the socket, waits for the first client and
 * execs muserd with LISTEN_FDS/LISTEN_FDNAMES. The device whose id is the
 * fd's name must serve on that socket; other devices bind their own.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../plugins/timer/timer-regs.h"
#include "helpers/testutil.h"
#include "util/macro.h"

/* The full path of prog in $PATH (static buffer), or NULL. */
static const char *find_in_path(const char *prog)
{
    static char buf[4096];
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    for (const char *p = path; *p;) {
        size_t len = strcspn(p, ":");
        snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, p, prog);
        if (access(buf, X_OK) == 0)
            return buf;
        p += len + (p[len] == ':');
    }
    return NULL;
}

static bool wait_for_file(const char *path, int timeout_ms)
{
    uint64_t deadline = test_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (access(path, F_OK) < 0) {
        if (test_now_ns() > deadline)
            return false;
        usleep(1000);
    }
    return true;
}

/* systemd-socket-activate -l PATH --fdname=NAME, passing on what muserd and
 * the sanitizers read from the environment (it clears the rest). */
static void set_activation_wrapper(struct test_daemon *d, const char *listen_path,
                                   const char *fdname)
{
    static const char *const pass_env[] = {"NOTIFY_SOCKET", "ASAN_OPTIONS", "UBSAN_OPTIONS",
                                           "LSAN_OPTIONS"};
    const char *argv[4 + 2 * ELEMENTSOF(pass_env) + 1];
    char listen_arg[4096], fdname_arg[256];
    size_t n = 0;

    snprintf(listen_arg, sizeof(listen_arg), "--listen=%s", listen_path);
    snprintf(fdname_arg, sizeof(fdname_arg), "--fdname=%s", fdname);
    argv[n++] = "systemd-socket-activate";
    argv[n++] = listen_arg;
    argv[n++] = fdname_arg;
    for (size_t i = 0; i < ELEMENTSOF(pass_env); i++)
        /* NOTIFY_SOCKET is not ours yet: the helper sets it for the child. */
        if (i == 0 || getenv(pass_env[i])) {
            argv[n++] = "-E";
            argv[n++] = pass_env[i];
        }
    argv[n] = NULL;
    ck_assert_int_eq(test_daemon_set_wrapper(d, argv), 0);
}

START_TEST(test_device_serves_on_inherited_socket)
{
    if (!find_in_path("systemd-socket-activate")) {
        printf("SKIP %s: systemd-socket-activate is not installed (package systemd)\n", __func__);
        return;
    }
    struct test_daemon *d;
    char listen_path[4096], own_t0[4096], own_t1[4096];
    struct stat before, after;
    int status = -1;

    ck_assert_int_eq(test_daemon_new(&d), 0);
    const char *rundir = test_daemon_runtime_dir(d);
    snprintf(listen_path, sizeof(listen_path), "%s/activated.sock", rundir);
    snprintf(own_t0, sizeof(own_t0), "%s/t0.sock", rundir);
    snprintf(own_t1, sizeof(own_t1), "%s/t1.sock", rundir);
    set_activation_wrapper(d, listen_path, "t0");
    /* Not test_daemon_add_device(): RUNDIR/t0.sock must never appear. The
     * socket_mode is the socket unit's business for an inherited socket. */
    const char *args[] = {"--no-bus", "--device", "timer:t0:{\"socket_mode\":\"0666\"}", "--device",
                          "timer:t1"};
    for (size_t i = 0; i < ELEMENTSOF(args); i++)
        ck_assert_int_eq(test_daemon_add_arg(d, args[i]), 0);
    ck_assert_int_eq(test_daemon_start(d), 0);

    /* The socket exists before muserd runs; our connection starts it. */
    if (!wait_for_file(listen_path, TU_TIMEOUT_MS))
        test_daemon_dump_log(d, 4096);
    ck_assert_msg(access(listen_path, F_OK) == 0, "systemd-socket-activate did not bind %s",
                  listen_path);
    ck_assert_int_eq(stat(listen_path, &before), 0);
    struct vfu_client *c;
    int r = tu_connect(listen_path, vfu_client_qemu_caps_json, 10000, &c);
    if (r < 0)
        test_daemon_dump_log(d, 4096);
    ck_assert_msg(r == 0, "vfio-user on the inherited socket: %s", strerror(-r));
    r = test_daemon_wait_ready(d, 10000);
    if (r < 0)
        test_daemon_dump_log(d, 4096);
    ck_assert_msg(r == 0, "muserd did not get ready: %s", strerror(-r));

    ck_assert_uint_eq(tu_rd16(c, TU_CFG, 0x00), TIMER_PCI_VENDOR_ID);
    ck_assert_msg(access(own_t0, F_OK) < 0 && errno == ENOENT,
                  "t0 bound %s although systemd passed it a socket", own_t0);
    ck_assert_msg(access(own_t1, F_OK) == 0, "t1 (no inherited socket) did not bind %s", own_t1);
    ck_assert_int_eq(stat(listen_path, &after), 0);
    ck_assert_uint_eq(after.st_mode, before.st_mode);
    tu_assert_log(d, "ignoring socket_owner/socket_group/socket_mode");
    vfu_client_free(c);

    ck_assert_int_eq(test_daemon_stop(d, 15000, &status), 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        test_daemon_dump_log(d, 8192);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The inherited socket file is its unit's: muserd leaves it; its own goes. */
    ck_assert_msg(access(listen_path, F_OK) == 0, "muserd removed the inherited socket file");
    ck_assert_msg(access(own_t1, F_OK) < 0, "muserd left %s behind", own_t1);
    test_daemon_free(d);
}
END_TEST

/* A fd named after no device is kept unused, and nothing else changes. */
START_TEST(test_unclaimed_socket_is_harmless)
{
    if (!find_in_path("systemd-socket-activate")) {
        printf("SKIP %s: systemd-socket-activate is not installed (package systemd)\n", __func__);
        return;
    }
    struct test_daemon *d;
    char listen_path[4096];

    ck_assert_int_eq(test_daemon_new(&d), 0);
    snprintf(listen_path, sizeof(listen_path), "%s/spare.sock", test_daemon_runtime_dir(d));
    set_activation_wrapper(d, listen_path, "spare");
    ck_assert_int_eq(test_daemon_add_arg(d, "--no-bus"), 0);
    ck_assert_int_eq(test_daemon_add_device(d, "timer", "t0", NULL), 0);
    ck_assert_int_eq(test_daemon_start(d), 0);
    ck_assert(wait_for_file(listen_path, TU_TIMEOUT_MS));
    /* The file appears at bind(), a moment before listen(): retry. */
    int fd;
    uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    while ((fd = tu_raw_connect(listen_path, false)) == -ECONNREFUSED && test_now_ns() < deadline)
        usleep(1000);
    ck_assert_msg(fd >= 0, "connecting to %s: %s", listen_path, strerror(-fd)); /* starts muserd */
    int r = test_daemon_wait_ready(d, 10000);
    if (r < 0)
        test_daemon_dump_log(d, 4096);
    ck_assert_int_eq(r, 0);
    tu_assert_log(d, "Inherited 1 socket(s)");
    struct vfu_client *c = tu_open(d, "t0");
    ck_assert_uint_eq(tu_rd16(c, TU_CFG, 0x00), TIMER_PCI_VENDOR_ID);
    vfu_client_free(c);
    close(fd);
    tu_stop(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("activation");
    TCase *tc = tcase_create("activation");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_device_serves_on_inherited_socket);
    tcase_add_test(tc, test_unclaimed_socket_is_harmless);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
