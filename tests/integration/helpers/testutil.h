/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the integration suites: start a daemon and stop it
 * asserting a clean exit (so leaks under ASan fail the test), open a
 * negotiated client, read and write device registers, wait for eventfds.
 *
 * testutil.c does not use Check (the benchmarks link the helpers too); the
 * asserting wrappers are the static inline functions at the end of this file,
 * compiled only into the suites that include <check.h> first.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "client/client.h"
#include "daemon.h"

/* How long a test waits for something that should happen "at once". */
#define TU_TIMEOUT_MS 5000
/* A client socket read that takes longer than this fails instead of hanging. */
#define TU_RECV_TIMEOUT_MS 10000

/*
 * Connect to a device socket and negotiate (json NULL: no JSON, like SPDK).
 * A device serves one client at a time and may not have seen the previous
 * client hang up yet, so a refused connection is retried until timeout_ms.
 */
int tu_connect(const char *socket_path, const char *json, int timeout_ms, struct vfu_client **ret);
/* SO_RCVTIMEO/SO_SNDTIMEO on a client socket: a stalled daemon fails a test
 * with -EAGAIN instead of hanging it. */
int tu_set_socket_timeout(int fd, int timeout_ms);
/* A bare connected socket (no vfio-user client), optionally non-blocking. */
int tu_raw_connect(const char *socket_path, bool nonblock);

/* Wait until fd is readable (or hung up): 1, 0 on timeout, or -errno. */
int tu_wait_readable(int fd, int timeout_ms);
/* Wait for an eventfd to be signalled and read its count: 1 with *count
 * set, 0 on timeout, or -errno. */
int tu_eventfd_wait(int fd, int timeout_ms, uint64_t *count);
/* Read an eventfd without waiting: its count, 0 when not signalled. */
uint64_t tu_eventfd_read(int fd);
/* A new non-blocking eventfd, or -errno. */
int tu_eventfd(void);
/*
 * Wait until the peer closes a raw socket, discarding whatever it sends
 * first: 1 closed, 0 timeout (still open), -errno.
 */
int tu_wait_closed(int fd, int timeout_ms);

/* A memfd of size bytes, mapped shared into *map. Returns the fd or -errno. */
int tu_memfd(size_t size, void **map);

/* Does the file contain needle? */
bool tu_file_contains(const char *path, const char *needle);
/* Does one line of the file contain every string of needles (NULL-terminated)? */
bool tu_file_has_line(const char *path, const char *const *needles);
/* Number of open fds of process pid, or -errno. */
int tu_count_fds(pid_t pid);
/* False when the program at bin dies of SIGILL at once (`bin -h`): built for
 * CPU instructions this machine lacks. Any other outcome counts as running. */
bool tu_cpu_runs(const char *bin);
/* The path of a test plugin: $MUSERD_TEST_PLUGIN_DIR/NAME.so (default
 * build/test-plugins), in a static buffer. */
const char *tu_test_plugin(const char *name);
/* The path of a real plugin: $MUSERD_PLUGIN_DIR/NAME.so (default build/plugins). */
const char *tu_plugin(const char *name);
/* Give d a plugin directory of its own holding just these plugins: built
 * ones by name ("timer"), test plugins as "test:storm" (NULL-terminated). */
int tu_plugin_dir(struct test_daemon *d, const char *const *names);

/* ---- asserting wrappers, for Check suites ---------------------------------- */
#ifdef CHECK_H

#include <sys/wait.h>

/* Start d and wait until every device socket exists. */
static inline void tu_start(struct test_daemon *d)
{
    int r = test_daemon_start(d);
    ck_assert_msg(r == 0, "starting muserd: %s", strerror(-r));
    r = test_daemon_wait_ready(d, 10000);
    if (r < 0)
        test_daemon_dump_log(d, 4096);
    ck_assert_msg(r == 0, "muserd did not get ready: %s", strerror(-r));
}

/* The daemon's log has a line mentioning every one of the strings. */
static inline void tu_assert_log_line_v(const struct test_daemon *d, const char *const *needles)
{
    bool found = tu_file_has_line(test_daemon_log_path(d), needles);
    if (!found)
        test_daemon_dump_log(d, 8192);
    ck_assert_msg(found, "no line of muserd's log mentions all of \"%s\", \"%s\"...", needles[0],
                  needles[1] ? needles[1] : "");
}
#define tu_assert_log_line(d, ...) tu_assert_log_line_v(d, (const char *const[]){__VA_ARGS__, NULL})

/* A daemon with the given devices ("type", "id", "json or NULL", ... NULL), started. */
static inline struct test_daemon *tu_daemon_v(const char *const *devices)
{
    struct test_daemon *d;
    ck_assert_int_eq(test_daemon_new(&d), 0);
    for (size_t i = 0; devices[i]; i += 3)
        ck_assert_int_eq(test_daemon_add_device(d, devices[i], devices[i + 1], devices[i + 2]), 0);
    tu_start(d);
    return d;
}
#define tu_daemon(...) tu_daemon_v((const char *const[]){__VA_ARGS__, NULL})

/* SIGTERM; the daemon must exit 0 (under ASan: no leak, no error) and remove
 * its sockets. Frees d. */
static inline void tu_stop(struct test_daemon *d)
{
    int status = -1;
    int r = test_daemon_stop(d, 15000, &status);
    bool ok = r == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok)
        test_daemon_dump_log(d, 16384);
    ck_assert_msg(r == 0, "muserd did not exit at SIGTERM: %s", strerror(-r));
    ck_assert_msg(WIFEXITED(status), "muserd died of signal %d", WTERMSIG(status));
    ck_assert_msg(WEXITSTATUS(status) == 0, "muserd exited %d (see its log above)",
                  WEXITSTATUS(status));
    test_daemon_free(d);
}

/* main() of every integration suite: run it, exit non-zero on a failure. */
static inline int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Wait for a daemon that is expected to fail at start; returns its exit code. */
static inline int tu_expect_start_failure(struct test_daemon *d)
{
    int status = 0;
    ck_assert_int_eq(test_daemon_start(d), 0);
    int r = test_daemon_wait_ready(d, 10000);
    ck_assert_msg(r == -ECHILD, "muserd started (%s) although it should have refused",
                  strerror(-r));
    ck_assert_int_eq(test_daemon_stop(d, 5000, &status), 0);
    ck_assert_msg(WIFEXITED(status), "muserd died of signal %d", WTERMSIG(status));
    return WEXITSTATUS(status);
}

static inline void tu_assert_log(const struct test_daemon *d, const char *needle)
{
    bool found = tu_file_contains(test_daemon_log_path(d), needle);
    if (!found)
        test_daemon_dump_log(d, 8192);
    ck_assert_msg(found, "muserd's log does not mention \"%s\"", needle);
}

/* A client that negotiated with QEMU's capabilities JSON. */
static inline struct vfu_client *tu_open(struct test_daemon *d, const char *id)
{
    struct vfu_client *c;
    int r = tu_connect(test_daemon_socket(d, id), vfu_client_qemu_caps_json, TU_TIMEOUT_MS, &c);
    ck_assert_msg(r == 0, "connecting to %s: %s", id, strerror(-r));
    return c;
}

/* A region read that must succeed; the typed helpers below wrap it. */
static inline void tu_read(struct vfu_client *c, uint32_t region, uint64_t off, void *buf,
                           size_t len)
{
    int r = vfu_client_region_read(c, region, off, buf, len);
    ck_assert_msg(r == 0, "read region %u offset %#llx: %s", region, (unsigned long long)off,
                  strerror(-r));
}

static inline uint16_t tu_rd16(struct vfu_client *c, uint32_t region, uint64_t off)
{
    uint16_t v = 0;
    tu_read(c, region, off, &v, sizeof(v));
    return v;
}

static inline uint32_t tu_rd32(struct vfu_client *c, uint32_t region, uint64_t off)
{
    uint32_t v = 0;
    tu_read(c, region, off, &v, sizeof(v));
    return v;
}

static inline uint64_t tu_rd64(struct vfu_client *c, uint32_t region, uint64_t off)
{
    uint64_t v = 0;
    tu_read(c, region, off, &v, sizeof(v));
    return v;
}

static inline void tu_wr32(struct vfu_client *c, uint32_t region, uint64_t off, uint32_t v)
{
    int r = vfu_client_region_write(c, region, off, &v, sizeof(v));
    ck_assert_msg(r == 0, "write region %u offset %#llx: %s", region, (unsigned long long)off,
                  strerror(-r));
}

/* Read the 32-bit register until the bits in mask are clear (a BUSY bit),
 * for up to TU_TIMEOUT_MS; returns the last value read. */
static inline uint32_t tu_wait_clear32(struct vfu_client *c, uint32_t region, uint64_t off,
                                       uint32_t mask)
{
    uint64_t end = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    uint32_t v;
    while (((v = tu_rd32(c, region, off)) & mask) && test_now_ns() < end)
        usleep(100);
    return v;
}

static inline void tu_wr64(struct vfu_client *c, uint32_t region, uint64_t off, uint64_t v)
{
    int r = vfu_client_region_write(c, region, off, &v, sizeof(v));
    ck_assert_msg(r == 0, "write region %u offset %#llx: %s", region, (unsigned long long)off,
                  strerror(-r));
}

static inline void tu_wr16(struct vfu_client *c, uint32_t region, uint64_t off, uint16_t v)
{
    int r = vfu_client_region_write(c, region, off, &v, sizeof(v));
    ck_assert_msg(r == 0, "write region %u offset %#llx: %s", region, (unsigned long long)off,
                  strerror(-r));
}

#define TU_CFG VFIO_PCI_CONFIG_REGION_INDEX

/* Offset of capability cap_id in config space (asserts it exists). */
static inline uint8_t tu_find_cap(struct vfu_client *c, uint8_t cap_id)
{
    uint8_t pos = (uint8_t)tu_rd32(c, TU_CFG, 0x34) & 0xfc;
    for (int hops = 0; pos && hops < 48; hops++) {
        uint32_t head = tu_rd32(c, TU_CFG, pos);
        if ((head & 0xff) == cap_id)
            return pos;
        pos = (uint8_t)(head >> 8) & 0xfc;
    }
    ck_abort_msg("capability %#x not in config space", cap_id);
    return 0;
}

static inline int tu_eventfd_checked(void)
{
    int fd = tu_eventfd();
    ck_assert_int_ge(fd, 0);
    return fd;
}

#endif /* CHECK_H */
