/* SPDX-License-Identifier: MIT */
/*
 * `muserctl list` and `muserctl types`. list asks the ObjectManager for every
 * device with all its properties in one call, so a thousand devices cost
 * one round trip, not one per device, and the JSON form carries the same
 * objects `show --json` prints.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ctl/ctl.h"

static int compare_id(const void *a, const void *b)
{
    json_object *x = *(json_object *const *)a, *y = *(json_object *const *)b;
    const char *ix = json_object_get_string(json_object_object_get(x, "Id"));
    const char *iy = json_object_get_string(json_object_object_get(y, "Id"));
    return strcmp(ix ? ix : "", iy ? iy : "");
}

/* The a{sa{sv}} of one object: its org.muserd1.Device properties, or NULL. */
static int read_interfaces(sd_bus_message *m, json_object **ret)
{
    const char *iface;
    int r;

    *ret = NULL;
    r = sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, "{sa{sv}}");
    if (r < 0)
        return r;
    while ((r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, "sa{sv}")) > 0) {
        r = sd_bus_message_read(m, "s", &iface);
        if (r < 0)
            return r;
        if (strcmp(iface, MUSERD_DEVICE) == 0 && !*ret)
            r = ctl_read_properties(m, ret);
        else
            r = sd_bus_message_skip(m, "a{sv}");
        if (r >= 0)
            r = sd_bus_message_exit_container(m);
        if (r < 0)
            return r;
    }
    if (r < 0)
        return r;
    return sd_bus_message_exit_container(m);
}

/* The a{oa{sa{sv}}} of GetManagedObjects: each device into the array. */
static int read_managed_objects(sd_bus_message *m, json_object *devices)
{
    const char *path;
    int r;

    r = sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, "{oa{sa{sv}}}");
    if (r < 0)
        return r;
    while ((r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, "oa{sa{sv}}")) > 0) {
        json_object *dev = NULL;
        r = sd_bus_message_read(m, "o", &path);
        if (r >= 0)
            r = read_interfaces(m, &dev);
        if (r < 0) {
            json_object_put(dev);
            return r;
        }
        if (dev) {
            json_object_object_add(dev, "Path", json_object_new_string(path));
            json_object_array_add(devices, dev);
        }
        r = sd_bus_message_exit_container(m);
        if (r < 0)
            return r;
    }
    return r;
}

/* Every device as a JSON object of its properties plus "Path", sorted by id. */
static int get_devices(sd_bus *bus, const struct ctl_options *o, json_object **ret)
{
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
    _cleanup_(json_object_putp) json_object *devices = json_object_new_array();

    if (!devices)
        return -ENOMEM;
    int r = ctl_call(bus, o, MUSERD_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager",
                     "GetManagedObjects", &reply, "");
    if (r < 0)
        return r;
    r = read_managed_objects(reply, devices);
    if (r < 0) {
        fprintf(stderr, "muserctl: Cannot read muserd's list of devices: %s\n", strerror(-r));
        return r;
    }
    json_object_array_sort(devices, compare_id);
    *ret = TAKE_PTR(devices);
    return 0;
}

static const char *str(json_object *dev, const char *key)
{
    return json_object_get_string(json_object_object_get(dev, key));
}

/* "1234 (qemu-system-x86)": the command name when /proc shows it to us. */
static char *client_text(json_object *dev)
{
    int64_t pid =
        json_object_get_int64(json_object_object_get(json_object_object_get(dev, "Client"), "pid"));
    char path[64], comm[64] = "", *s = NULL;

    if (pid <= 0)
        return NULL;
    snprintf(path, sizeof(path), "/proc/%" PRId64 "/comm", pid);
    FILE *f = fopen(path, "re");
    if (f) {
        if (fgets(comm, sizeof(comm), f))
            comm[strcspn(comm, "\n")] = 0;
        fclose(f);
    }
    int r = *comm ? asprintf(&s, "%" PRId64 " (%s)", pid, comm) : asprintf(&s, "%" PRId64, pid);
    return r < 0 ? NULL : s;
}

int ctl_list(int argc, char **argv, const struct ctl_options *o)
{
    _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
    _cleanup_(json_object_putp) json_object *devices = NULL;
    _cleanup_(ctl_table_freep) struct ctl_table *t = NULL;

    if (argc != 1) {
        fprintf(stderr, "muserctl: list takes no arguments\n");
        return EXIT_USAGE;
    }
    if (ctl_bus_open(o, &bus) < 0 || get_devices(bus, o, &devices) < 0)
        return EXIT_FAILURE;
    if (o->json) {
        ctl_print_json(devices);
        return EXIT_SUCCESS;
    }

    size_t n = json_object_array_length(devices);
    if (n == 0) {
        printf("No devices.\n");
        return EXIT_SUCCESS;
    }
    if (ctl_table_new(5, (const char *const[]){"ID", "TYPE", "STATE", "SOCKET", "CLIENT"}, &t) < 0)
        return EXIT_FAILURE;
    for (size_t i = 0; i < n; i++) {
        json_object *dev = json_object_array_get_idx(devices, i);
        _cleanup_free_ char *client = client_text(dev);
        const char *row[] = {str(dev, "Id"), str(dev, "Type"), str(dev, "State"),
                             str(dev, "SocketPath"), client};
        if (ctl_table_add(t, row) < 0)
            return EXIT_FAILURE;
    }
    ctl_table_print(t);
    return EXIT_SUCCESS;
}

int ctl_types(int argc, char **argv, const struct ctl_options *o)
{
    _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
    _cleanup_(json_object_putp) json_object *types = json_object_new_array();
    _cleanup_(ctl_table_freep) struct ctl_table *t = NULL;
    const char *type, *plugin, *description;
    int r;

    if (argc != 1) {
        fprintf(stderr, "muserctl: types takes no arguments\n");
        return EXIT_USAGE;
    }
    if (!types || ctl_table_new(3, (const char *const[]){"TYPE", "PLUGIN", "DESCRIPTION"}, &t) < 0)
        return EXIT_FAILURE;
    if (ctl_bus_open(o, &bus) < 0 ||
        ctl_call(bus, o, MUSERD_MANAGER_PATH, MUSERD_MANAGER, "ListDeviceTypes", &reply, "") < 0)
        return EXIT_FAILURE;

    r = sd_bus_message_enter_container(reply, SD_BUS_TYPE_ARRAY, "(sss)");
    while (r >= 0 && (r = sd_bus_message_read(reply, "(sss)", &type, &plugin, &description)) > 0) {
        json_object *entry = json_object_new_object();
        if (!entry)
            return EXIT_FAILURE;
        json_object_object_add(entry, "Type", json_object_new_string(type));
        json_object_object_add(entry, "Plugin", json_object_new_string(plugin));
        json_object_object_add(entry, "Description", json_object_new_string(description));
        json_object_array_add(types, entry);
        r = ctl_table_add(t, (const char *const[]){type, plugin, description});
    }
    if (r < 0) {
        fprintf(stderr, "muserctl: Cannot read muserd's device types: %s\n", strerror(-r));
        return EXIT_FAILURE;
    }
    if (o->json)
        ctl_print_json(types);
    else if (ctl_table_rows(t) == 0)
        printf("No device types: muserd found no plugins.\n");
    else
        ctl_table_print(t);
    return EXIT_SUCCESS;
}
