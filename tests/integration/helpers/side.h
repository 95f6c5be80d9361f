/* SPDX-License-Identifier: MIT */
/*
 * A muserd on a private dbus-daemon of its own, for suites that run two at
 * once (a migration's source and destination). Check suites only: failures
 * are assertions.
 */
#pragma once

#ifdef CHECK_H

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dbus-daemon.h"
#include "testutil.h"

struct tu_side {
    struct test_bus *tbus;
    struct test_daemon *daemon;
    sd_bus *bus;
};

/* Start the bus and muserd with a plugin directory of `plugins` (as
 * tu_plugin_dir takes them) and `devices` ("type", "id", "json or NULL", ...
 * NULL); connect to the bus once muserd owns its name. TU_LOG_STDERR=1
 * sends muserd's log to stderr. */
static inline void tu_side_start(struct tu_side *s, const char *const *plugins,
                                 const char *const *devices)
{
    int r = test_bus_start(NULL, &s->tbus);
    ck_assert_msg(r == 0, "starting dbus-daemon: %s", strerror(-r));
    ck_assert_int_eq(test_daemon_new(&s->daemon), 0);
    ck_assert_int_eq(tu_plugin_dir(s->daemon, plugins), 0);
    if (getenv("TU_LOG_STDERR"))
        test_daemon_set_log_to_stderr(s->daemon, true);
    ck_assert_int_eq(test_daemon_add_arg(s->daemon, "--bus-address"), 0);
    ck_assert_int_eq(test_daemon_add_arg(s->daemon, test_bus_address(s->tbus)), 0);
    for (size_t i = 0; devices[i]; i += 3)
        ck_assert_int_eq(
            test_daemon_add_device(s->daemon, devices[i], devices[i + 1], devices[i + 2]), 0);
    tu_start(s->daemon);
    ck_assert_int_eq(test_bus_connect(test_bus_address(s->tbus), &s->bus), 0);
    r = test_bus_wait_name(test_bus_address(s->tbus), "org.muserd1", TU_TIMEOUT_MS);
    ck_assert_msg(r >= 0, "muserd did not take its bus name");
}

/* Stop muserd (it must exit cleanly) and the bus; a side never started is
 * fine. */
static inline void tu_side_stop(struct tu_side *s)
{
    s->bus = sd_bus_flush_close_unref(s->bus);
    if (s->daemon)
        tu_stop(s->daemon);
    s->daemon = NULL;
    test_bus_free(s->tbus);
    s->tbus = NULL;
}

/* Call org.muserd1.Device.member on device id, with fd as its argument (none
 * when fd < 0): sd_bus_call()'s result, the error in *error. */
static inline int tu_side_call_device(struct tu_side *s, const char *id, const char *member, int fd,
                                      sd_bus_error *error)
{
    _cleanup_free_ char *path = NULL;
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
    ck_assert_int_ge(sd_bus_path_encode("/org/muserd1/device", id, &path), 0);
    int r = sd_bus_message_new_method_call(s->bus, &m, "org.muserd1", path, "org.muserd1.Device",
                                           member);
    if (r >= 0 && fd >= 0)
        r = sd_bus_message_append(m, "h", fd);
    if (r >= 0)
        r = sd_bus_call(s->bus, m, 60 * 1000000ull, error, NULL);
    return r;
}

/* Move device id from `from` to `to` (created incoming): Migrate into a
 * temporary file, Incoming from it; both must succeed. The stream's size. */
static inline off_t tu_side_migrate(struct tu_side *from, struct tu_side *to, const char *id)
{
    char file[] = "/tmp/muserd-stream-XXXXXX";
    int fd = mkstemp(file);
    ck_assert_int_ge(fd, 0);
    unlink(file);
    _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
    int r = tu_side_call_device(from, id, "Migrate", fd, &error);
    if (r < 0)
        test_daemon_dump_log(from->daemon, 4096);
    ck_assert_msg(r >= 0, "Migrate: %s: %s", error.name, error.message);
    off_t size = lseek(fd, 0, SEEK_END);
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    r = tu_side_call_device(to, id, "Incoming", fd, &error);
    if (r < 0)
        test_daemon_dump_log(to->daemon, 4096);
    ck_assert_msg(r >= 0, "Incoming: %s: %s", error.name, error.message);
    close(fd);
    return size;
}

#endif
