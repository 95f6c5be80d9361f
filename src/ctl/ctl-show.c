/* SPDX-License-Identifier: MIT */
/*
 * `muserctl show [ID]`: every property of a device (or, without ID, of the
 * manager) as NAME=VALUE lines, the way `systemctl show` prints a unit, or
 * as one JSON object. The device's path comes from GetDevice where the bus
 * policy allows, so muserd decides how ids map to object paths.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ctl/ctl.h"

static int print_properties(json_object *props)
{
    json_object_object_foreach(props, name, value)
    {
        _cleanup_free_ char *text = ctl_property_text(name, value);
        if (!text)
            return -ENOMEM;
        printf("%s=%s\n", name, text);
    }
    return 0;
}

/* The object path of device id, from GetDevice (open to every user). */
static int device_path(sd_bus *bus, const struct ctl_options *o, const char *id, char **ret)
{
    _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
    const char *path;

    int r = sd_bus_call_method(bus, MUSERD_BUS_NAME, MUSERD_MANAGER_PATH, MUSERD_MANAGER,
                               "GetDevice", &error, &reply, "s", id);
    if (r < 0) {
        ctl_print_error(o, &error, r);
        return r;
    }
    r = sd_bus_message_read(reply, "o", &path);
    if (r < 0) {
        fprintf(stderr, "muserctl: Cannot read muserd's answer: %s\n", strerror(-r));
        return r;
    }
    *ret = strdup(path);
    return *ret ? 0 : -ENOMEM;
}

static int get_all(sd_bus *bus, const struct ctl_options *o, const char *path,
                   const char *interface, sd_bus_message **reply)
{
    _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

    int r = sd_bus_call_method(bus, MUSERD_BUS_NAME, path, "org.freedesktop.DBus.Properties",
                               "GetAll", &error, reply, "s", interface);
    if (r < 0)
        ctl_print_error(o, &error, r);
    return r;
}

int ctl_show(int argc, char **argv, const struct ctl_options *o)
{
    _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
    _cleanup_(json_object_putp) json_object *props = NULL;
    _cleanup_free_ char *device = NULL;
    const char *path = MUSERD_MANAGER_PATH, *interface = MUSERD_MANAGER, *id = NULL;
    int r;

    if (argc > 2) {
        fprintf(stderr, "muserctl: show takes at most one device ID\n");
        return EXIT_USAGE;
    }
    if (ctl_bus_open(o, &bus) < 0)
        return EXIT_FAILURE;
    if (argc == 2) {
        id = argv[1];
        if (device_path(bus, o, id, &device) < 0)
            return EXIT_FAILURE;
        path = device;
        interface = MUSERD_DEVICE;
    }
    if (get_all(bus, o, path, interface, &reply) < 0)
        return EXIT_FAILURE;
    r = ctl_read_properties(reply, &props);
    if (r < 0) {
        fprintf(stderr, "muserctl: Cannot read the properties of %s: %s\n", path, strerror(-r));
        return EXIT_FAILURE;
    }
    if (id)
        json_object_object_add(props, "Path", json_object_new_string(path));

    if (o->json)
        ctl_print_json(props);
    else if (print_properties(props) < 0)
        return EXIT_FAILURE;
    return EXIT_SUCCESS;
}
