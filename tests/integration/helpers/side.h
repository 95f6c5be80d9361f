/* SPDX-License-Identifier: MIT */
/*
 * A muserd on a private dbus-daemon of its own, for suites that run two at
 * once (a migration's source and destination): devices created and
 * counted on it, configs it must refuse, streams moved between two.
 * Check suites only: failures are assertions.
 */
#pragma once

#ifdef CHECK_H

#include <stdio.h>
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

/* Migrate device id of s into a temporary file (already unlinked); it
 * must succeed. The file, at its start: the caller closes it. */
static inline int tu_side_save(struct tu_side *s, const char *id)
{
    char file[] = "/tmp/muserd-stream-XXXXXX";
    int fd = mkstemp(file);
    ck_assert_int_ge(fd, 0);
    unlink(file);
    _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
    int r = tu_side_call_device(s, id, "Migrate", fd, &error);
    if (r < 0)
        test_daemon_dump_log(s->daemon, 4096);
    ck_assert_msg(r >= 0, "Migrate: %s: %s", error.name, error.message);
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

/* Move device id from `from` to `to` (created incoming): Migrate into a
 * temporary file, Incoming from it; both must succeed. The stream's size. */
static inline off_t tu_side_migrate(struct tu_side *from, struct tu_side *to, const char *id)
{
    int fd = tu_side_save(from, id);
    off_t size = lseek(fd, 0, SEEK_END);
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
    int r = tu_side_call_device(to, id, "Incoming", fd, &error);
    if (r < 0)
        test_daemon_dump_log(to->daemon, 4096);
    ck_assert_msg(r >= 0, "Incoming: %s: %s", error.name, error.message);
    close(fd);
    return size;
}

/* CreateDevice of type on s; r and the error as D-Bus gave them. A daemon
 * stuck on something (an open of a FIFO for reading waits for a writer)
 * fails it in TU_TIMEOUT_MS. */
static inline int tu_side_create(struct tu_side *s, const char *type, const char *id,
                                 const char *json, sd_bus_error *e)
{
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
    int r = sd_bus_message_new_method_call(s->bus, &m, "org.muserd1", "/org/muserd1",
                                           "org.muserd1.Manager", "CreateDevice");
    if (r >= 0)
        r = sd_bus_message_append(m, "sss", type, id, json);
    if (r >= 0)
        r = sd_bus_call(s->bus, m, TU_TIMEOUT_MS * 1000ull, e, NULL);
    return r;
}

/* How many devices ListDevices shows on s (only those named id, when not NULL). */
static inline int tu_side_device_count(struct tu_side *s, const char *only)
{
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    const char *id, *type, *state, *path;
    int n = 0;
    int r = sd_bus_call_method(s->bus, "org.muserd1", "/org/muserd1", "org.muserd1.Manager",
                               "ListDevices", &e, &reply, "");
    ck_assert_msg(r >= 0, "ListDevices: %s", e.message);
    ck_assert_int_ge(sd_bus_message_enter_container(reply, 'a', "(ssso)"), 0);
    while (sd_bus_message_read(reply, "(ssso)", &id, &type, &state, &path) > 0)
        n += !only || strcmp(id, only) == 0;
    return n;
}

/* CreateDevice of type on s must refuse json with InvalidConfig, in a
 * sentence naming `named` (or `or_named`), and leave nothing behind: what
 * it did instead, malloc()ed, or NULL. A suite with many cases reports
 * each problem rather than stop at the first. The sentence goes to
 * *message (malloc()ed; NULL when there was none) unless message is NULL. */
static inline char *tu_side_refusal_problem(struct tu_side *s, const char *type, const char *json,
                                            const char *named, const char *or_named, char **message)
{
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    char *problem = NULL;
    int r = tu_side_create(s, type, "bad", json, &e);
    if (r >= 0) {
        (void)asprintf(&problem, "%s was taken", json);
        (void)sd_bus_call_method(s->bus, "org.muserd1", "/org/muserd1", "org.muserd1.Manager",
                                 "DestroyDevice", NULL, NULL, "s", "bad");
    } else if (!sd_bus_error_has_name(&e, "org.muserd1.Error.InvalidConfig")) {
        (void)asprintf(&problem, "%s: %s (%s), not org.muserd1.Error.InvalidConfig", json, e.name,
                       e.message);
    } else if (!strstr(e.message, named) && !(or_named && strstr(e.message, or_named))) {
        (void)asprintf(&problem, "%s: \"%s\" does not name %s", json, e.message, named);
    } else if (tu_side_device_count(s, "bad") != 0) {
        (void)asprintf(&problem, "%s: a device is left after the refusal", json);
    } else if (access(test_daemon_socket(s->daemon, "bad"), F_OK) == 0) {
        (void)asprintf(&problem, "%s: a socket is left after the refusal", json);
    }
    if (message)
        *message = r < 0 && e.message ? strdup(e.message) : NULL;
    return problem;
}

#endif
