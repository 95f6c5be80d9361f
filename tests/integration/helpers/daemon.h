/* SPDX-License-Identifier: MIT */
/*
 * Run the real muserd for integration tests and benchmarks: a private
 * temporary directory (runtime dir with the device sockets, and the daemon's
 * log), fork/exec with the devices asked for, wait until every socket accepts
 * a connection, stop with SIGTERM and collect the exit status. The daemon
 * gets a NOTIFY_SOCKET of ours, so readiness is what systemd would see.
 *
 * The binary and plugin directory come from $MUSERD_BIN and
 * $MUSERD_PLUGIN_DIR (defaults: build/muserd, build/plugins), as `make check`
 * and `make bench` set them. Functions return 0 or a negative errno.
 *
 *     struct test_daemon *d;
 *     test_daemon_new(&d);
 *     test_daemon_add_device(d, "timer", "t0", NULL);
 *     test_daemon_start(d);
 *     test_daemon_wait_ready(d, 10000);
 *     ... vfu_client_connect(test_daemon_socket(d, "t0"), &c) ...
 *     test_daemon_stop(d, &status);
 *     test_daemon_free(d);
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct test_daemon;

/* A new, not yet started daemon with its own temporary directory. */
int test_daemon_new(struct test_daemon **ret);
/* Kills a still running daemon (SIGKILL), removes the temporary directory. */
void test_daemon_free(struct test_daemon *d);

/* `--device TYPE:ID[:JSON]`; its socket counts for test_daemon_wait_ready(). */
int test_daemon_add_device(struct test_daemon *d, const char *type, const char *id,
                           const char *json);
/* Any other argument, passed as is (after --plugin-dir and --runtime-dir). */
int test_daemon_add_arg(struct test_daemon *d, const char *arg);
/* Log to our own stderr instead of the log file (for debugging a test). */
void test_daemon_set_log_to_stderr(struct test_daemon *d, bool on);
/*
 * Run muserd under a wrapper command: argv (NULL-terminated; argv[0] is
 * looked up in PATH) goes before muserd's own command line, as with
 * `systemd-socket-activate -l PATH --fdname=ID`. The wrapper must exec
 * muserd in place, so that test_daemon_pid() is muserd's pid. NULL: none.
 */
int test_daemon_set_wrapper(struct test_daemon *d, const char *const *argv);
/* Let other users reach the daemon's temporary directory (search only) and
 * its readiness socket: for a daemon that drops to another user
 * (--user-name). The runtime directory is muserd's to hand over. */
int test_daemon_share(struct test_daemon *d);

/* fork + exec. Records the time of the exec for test_daemon_start_time(). */
int test_daemon_start(struct test_daemon *d);
/*
 * Wait until the daemon says READY=1 (sd_notify, through a NOTIFY_SOCKET of
 * ours) and the socket file of every added device exists. -ETIMEDOUT after
 * timeout_ms; -ECHILD when the daemon died meanwhile (its status then is in
 * test_daemon_stop()).
 */
int test_daemon_wait_ready(struct test_daemon *d, int timeout_ms);
/*
 * The same, but each socket must accept a connection (closed at once). Note
 * a device serves one client at a time: connecting right after this may be
 * refused while the daemon has not yet seen the probe hang up.
 */
int test_daemon_wait_accepting(struct test_daemon *d, int timeout_ms);
/*
 * SIGTERM, then wait up to timeout_ms (SIGKILL after that, -ETIMEDOUT).
 * *status gets the waitpid() status. Safe to call on a daemon that exited.
 */
int test_daemon_stop(struct test_daemon *d, int timeout_ms, int *status);
/* test_daemon_stop() of a daemon that must exit 0 (benchmarks): when it
 * does not, "WHO: muserd did not exit cleanly" and the end of its log go to
 * stderr. 0, -EIO, or test_daemon_stop()'s error. */
int test_daemon_stop_clean(struct test_daemon *d, int timeout_ms, const char *who);

pid_t test_daemon_pid(const struct test_daemon *d);
const char *test_daemon_runtime_dir(const struct test_daemon *d);
const char *test_daemon_log_path(const struct test_daemon *d);
/* RUNDIR/ID.sock, in a buffer owned by d (valid until the next call). */
const char *test_daemon_socket(struct test_daemon *d, const char *id);
/* CLOCK_MONOTONIC nanoseconds just before the exec. */
uint64_t test_daemon_start_time(const struct test_daemon *d);
/* CLOCK_MONOTONIC nanoseconds when we received READY=1 (0: not yet). */
uint64_t test_daemon_ready_time(const struct test_daemon *d);
/* VmRSS of the running daemon in KiB. */
int test_daemon_rss_kib(const struct test_daemon *d, uint64_t *ret);
/* Print the last `bytes` of the daemon's log to stderr (after a failure). */
void test_daemon_dump_log(const struct test_daemon *d, size_t bytes);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t test_now_ns(void);

/* Let this process, and the muserd it starts, open `want` files: raise the
 * hard limit if we may (root), else the soft limit up to the hard one. */
void test_raise_nofile(size_t want);
