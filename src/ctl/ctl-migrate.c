/* SPDX-License-Identifier: MIT */
/*
 * muserctl migrate ID > FILE, muserctl incoming ID < FILE, muserctl resume ID:
 * the stream goes through muserctl's own stdout or stdin, passed to muserd
 * as a file descriptor, so `muserctl migrate ID | ssh dest muserctl
 * incoming ID` moves a device between hosts without muserctl copying a byte.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl/ctl.h"

/* A big device through a slow pipe takes as long as it takes. */
#define STREAM_CALL_TIMEOUT_USEC (UINT64_C(24) * 3600 * 1000000)

static int device_path(sd_bus *bus, const struct ctl_options *o, const char *id, char **ret)
{
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
    const char *path;

    if (ctl_call(bus, o, MUSERD_MANAGER_PATH, MUSERD_MANAGER, "GetDevice", &reply, "s", id) < 0)
        return -EIO;
    int r = sd_bus_message_read(reply, "o", &path);
    if (r < 0) {
        fprintf(stderr, "muserctl: Cannot read muserd's answer: %s\n", strerror(-r));
        return r;
    }
    *ret = strdup(path);
    return *ret ? 0 : -ENOMEM;
}

/* Call member on device id, with fd attached when >= 0. */
static int device_call(const struct ctl_options *o, const char *id, const char *member, int fd)
{
    _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
    _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
    _cleanup_free_ char *path = NULL;

    if (ctl_bus_open(o, &bus) < 0 || device_path(bus, o, id, &path) < 0)
        return EXIT_FAILURE;
    int r = sd_bus_message_new_method_call(bus, &m, MUSERD_BUS_NAME, path, MUSERD_DEVICE, member);
    if (r >= 0 && fd >= 0)
        r = sd_bus_message_append(m, "h", fd);
    if (r >= 0)
        r = sd_bus_call(bus, m, STREAM_CALL_TIMEOUT_USEC, &error, NULL);
    if (r < 0) {
        ctl_print_error(o, &error, r);
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}

static int one_id(int argc, char **argv)
{
    if (argc == 2)
        return 0;
    fprintf(stderr, "muserctl: %s takes exactly one device ID\n", argv[0]);
    return -EINVAL;
}

int ctl_migrate(int argc, char **argv, const struct ctl_options *o)
{
    if (one_id(argc, argv) < 0)
        return EXIT_USAGE;
    if (isatty(STDOUT_FILENO)) {
        fprintf(stderr, "muserctl: migrate writes the device's state to stdout: redirect it to "
                        "a file or a pipe (muserctl migrate ID > FILE)\n");
        return EXIT_USAGE;
    }
    return device_call(o, argv[1], "Migrate", STDOUT_FILENO);
}

int ctl_incoming(int argc, char **argv, const struct ctl_options *o)
{
    if (one_id(argc, argv) < 0)
        return EXIT_USAGE;
    if (isatty(STDIN_FILENO)) {
        fprintf(stderr, "muserctl: incoming reads a migration stream from stdin: redirect it "
                        "from a file or a pipe (muserctl incoming ID < FILE)\n");
        return EXIT_USAGE;
    }
    return device_call(o, argv[1], "Incoming", STDIN_FILENO);
}

int ctl_resume(int argc, char **argv, const struct ctl_options *o)
{
    if (one_id(argc, argv) < 0)
        return EXIT_USAGE;
    return device_call(o, argv[1], "Resume", -1);
}
