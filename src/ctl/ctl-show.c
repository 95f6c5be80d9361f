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

/*
 * The object path of device id, from GetDevice. The bus policy lets anyone
 * read properties but only group muserd call GetDevice, so when that is
 * denied the path is built the documented way (sd_bus_path_encode) instead:
 * `show` stays open to every user, as `list` is. *encoded says which.
 */
static int device_path(sd_bus *bus, const struct ctl_options *o, const char *id, char **ret,
                       bool *encoded)
{
    _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
    const char *path;

    int r = sd_bus_call_method(bus, MUSERD_BUS_NAME, MUSERD_MANAGER_PATH, MUSERD_MANAGER,
                               "GetDevice", &error, &reply, "s", id);
    *encoded = r < 0 && sd_bus_error_has_name(&error, SD_BUS_ERROR_ACCESS_DENIED);
    if (*encoded)
        return sd_bus_path_encode(MUSERD_DEVICE_PREFIX, id, ret);
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

/* GetAll; for a path we built, "no such object" means no such device. */
static int get_all(sd_bus *bus, const struct ctl_options *o, const char *path,
                   const char *interface, const char *id, bool encoded, sd_bus_message **reply)
{
    _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

    int r = sd_bus_call_method(bus, MUSERD_BUS_NAME, path, "org.freedesktop.DBus.Properties",
                               "GetAll", &error, reply, "s", interface);
    if (r >= 0)
        return r;
    if (encoded &&
        sd_bus_error_has_names(&error, SD_BUS_ERROR_UNKNOWN_OBJECT, SD_BUS_ERROR_UNKNOWN_INTERFACE))
        fprintf(stderr,
                "muserctl: No device with id '%s'; muserctl list shows the existing "
                "ones.\n",
                id);
    else
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
    bool encoded = false;
    int r;

    if (argc > 2) {
        fprintf(stderr, "muserctl: show takes at most one device ID\n");
        return EXIT_USAGE;
    }
    if (ctl_bus_open(o, &bus) < 0)
        return EXIT_FAILURE;
    if (argc == 2) {
        id = argv[1];
        if (device_path(bus, o, id, &device, &encoded) < 0)
            return EXIT_FAILURE;
        path = device;
        interface = MUSERD_DEVICE;
    }
    if (get_all(bus, o, path, interface, id, encoded, &reply) < 0)
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
