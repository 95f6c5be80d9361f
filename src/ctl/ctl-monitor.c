/* SPDX-License-Identifier: MIT */
/*
 * `muserctl monitor`: print muserd's signals as they arrive, until SIGINT or
 * SIGTERM. Devices come and go (DeviceNew, DeviceRemoved), change state
 * (PropertiesChanged on their object, e.g. a VMM connecting) and muserd
 * itself may stop and start again, which is worth a line too: an operator
 * watching for events would otherwise wait on a daemon that is gone.
 *
 * Text is one line per event; --json one JSON object per line, flushed at
 * once, so that `muserctl monitor --json | while read ...` sees each event
 * when it happens.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "ctl/ctl.h"

#define DBUS_NAME  "org.freedesktop.DBus"
#define DBUS_PATH  "/org/freedesktop/DBus"
#define LOCAL_PATH "/org/freedesktop/DBus/Local"
#define LOCAL_NAME "org.freedesktop.DBus.Local"

struct monitor {
    const struct ctl_options *o;
    sd_event *event;
};

static void emit_json(json_object *j)
{
    puts(
        json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    fflush(stdout);
}

/* A line could not be written (stdout closed): nothing more to do. */
static int check_stdout(struct monitor *mon)
{
    if (fflush(stdout) != 0 || ferror(stdout))
        return sd_event_exit(mon->event, EXIT_FAILURE);
    return 0;
}

static int on_manager_signal(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
    struct monitor *mon = userdata;
    const char *member = sd_bus_message_get_member(m), *id, *path;

    if (sd_bus_message_read(m, "so", &id, &path) < 0)
        return 0; /* not muserd's signature: not for us */
    if (mon->o->json) {
        _cleanup_(json_object_putp) json_object *j = json_object_new_object();
        if (!j)
            return -ENOMEM;
        json_object_object_add(j, "event", json_object_new_string(member));
        json_object_object_add(j, "id", json_object_new_string(id));
        json_object_object_add(j, "path", json_object_new_string(path));
        emit_json(j);
    } else {
        printf("%s %s %s\n", member, id, path);
    }
    return check_stdout(mon);
}

static void print_changed_text(const char *subject, json_object *changed, json_object *invalidated)
{
    printf("PropertiesChanged %s", subject);
    json_object_object_foreach(changed, name, value)
    {
        _cleanup_free_ char *text = ctl_property_text(name, value);
        printf(" %s=%s", name, text ? text : "?");
    }
    for (size_t i = 0; i < json_object_array_length(invalidated); i++)
        printf(" %s", json_object_get_string(json_object_array_get_idx(invalidated, i)));
    printf("\n");
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
    struct monitor *mon = userdata;
    _cleanup_(json_object_putp) json_object *changed = NULL, *invalidated = NULL;
    _cleanup_free_ char *id = NULL;
    const char *path = sd_bus_message_get_path(m), *interface;

    if (sd_bus_message_read(m, "s", &interface) < 0 || ctl_read_properties(m, &changed) < 0 ||
        ctl_read_json(m, &invalidated) < 0 || !json_object_is_type(invalidated, json_type_array))
        return 0;
    if (sd_bus_path_decode(path, MUSERD_DEVICE_PREFIX, &id) < 0)
        id = NULL;

    if (mon->o->json) {
        _cleanup_(json_object_putp) json_object *j = json_object_new_object();
        if (!j)
            return -ENOMEM;
        json_object_object_add(j, "event", json_object_new_string("PropertiesChanged"));
        if (id)
            json_object_object_add(j, "id", json_object_new_string(id));
        json_object_object_add(j, "path", json_object_new_string(path));
        json_object_object_add(j, "interface", json_object_new_string(interface));
        json_object_object_add(j, "changed", TAKE_PTR(changed));
        json_object_object_add(j, "invalidated", TAKE_PTR(invalidated));
        emit_json(j);
    } else {
        print_changed_text(id ? id : path, changed, invalidated);
    }
    return check_stdout(mon);
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
    struct monitor *mon = userdata;
    const char *name, *old_owner, *new_owner;

    if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 ||
        strcmp(name, MUSERD_BUS_NAME) != 0)
        return 0;
    const char *event = *new_owner ? "MuserdStarted" : "MuserdStopped";
    if (mon->o->json) {
        _cleanup_(json_object_putp) json_object *j = json_object_new_object();
        if (!j)
            return -ENOMEM;
        json_object_object_add(j, "event", json_object_new_string(event));
        emit_json(j);
    } else {
        printf("%s\n", *new_owner ? "MuserdStarted muserd is on the bus"
                                  : "MuserdStopped muserd left the bus (org.muserd1 has no owner)");
    }
    return check_stdout(mon);
}

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
    struct monitor *mon = userdata;

    fprintf(stderr, "muserctl: Lost the connection to %s\n", ctl_bus_description(mon->o));
    return sd_event_exit(mon->event, EXIT_FAILURE);
}

static int add_matches(sd_bus *bus, struct monitor *mon)
{
    int r = sd_bus_match_signal(bus, NULL, MUSERD_BUS_NAME, MUSERD_MANAGER_PATH, MUSERD_MANAGER,
                                NULL, on_manager_signal, mon);
    if (r >= 0)
        r = sd_bus_add_match(bus, NULL,
                             "type='signal',sender='" MUSERD_BUS_NAME "',"
                             "interface='org.freedesktop.DBus.Properties',"
                             "member='PropertiesChanged',path_namespace='" MUSERD_MANAGER_PATH "'",
                             on_properties_changed, mon);
    if (r >= 0)
        r = sd_bus_add_match(bus, NULL,
                             "type='signal',sender='" DBUS_NAME "',path='" DBUS_PATH "',"
                             "interface='" DBUS_NAME "',member='NameOwnerChanged',"
                             "arg0='" MUSERD_BUS_NAME "'",
                             on_name_owner_changed, mon);
    if (r >= 0)
        r = sd_bus_match_signal(bus, NULL, LOCAL_NAME, LOCAL_PATH, LOCAL_NAME, "Disconnected",
                                on_disconnected, mon);
    return r;
}

/* 1 when muserd holds its name, 0 when not. */
static int muserd_running(sd_bus *bus)
{
    _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
    int has_owner = 0;

    int r = sd_bus_call_method(bus, DBUS_NAME, DBUS_PATH, DBUS_NAME, "NameHasOwner", &error, &reply,
                               "s", MUSERD_BUS_NAME);
    if (r >= 0)
        r = sd_bus_message_read(reply, "b", &has_owner);
    return r < 0 ? r : has_owner;
}

int ctl_monitor(int argc, char **argv, const struct ctl_options *o)
{
    _cleanup_(sd_event_unrefp) sd_event *event = NULL;
    _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
    struct monitor mon = {.o = o};
    sigset_t mask;
    int r;

    if (argc != 1) {
        fprintf(stderr, "muserctl: monitor takes no arguments\n");
        return EXIT_USAGE;
    }
    /* sd-event takes signals through a signalfd, which needs them blocked. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);

    if (ctl_bus_open(o, &bus) < 0)
        return EXIT_FAILURE;
    r = sd_event_default(&event);
    if (r >= 0)
        r = sd_event_add_signal(event, NULL, SIGINT, NULL, NULL);
    if (r >= 0)
        r = sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
    if (r >= 0)
        r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
    if (r < 0) {
        fprintf(stderr, "muserctl: Cannot set up the event loop: %s\n", strerror(-r));
        return EXIT_FAILURE;
    }
    mon.event = event;
    r = add_matches(bus, &mon);
    if (r < 0) {
        fprintf(stderr, "muserctl: Cannot subscribe to muserd's signals on %s: %s\n",
                ctl_bus_description(o), strerror(-r));
        return EXIT_FAILURE;
    }

    /* Said only now that the matches are in place: from here on no event is
     * missed, which is what a script starting us in the background waits for. */
    r = muserd_running(bus);
    if (r == 0)
        fprintf(stderr, "muserctl: muserd is not running on %s (%s has no owner); waiting for it\n",
                ctl_bus_description(o), MUSERD_BUS_NAME);
    fprintf(stderr, "Monitoring muserd on %s; press Ctrl-C to stop.\n", ctl_bus_description(o));

    r = sd_event_loop(event);
    if (r < 0) {
        fprintf(stderr, "muserctl: The event loop failed: %s\n", strerror(-r));
        return EXIT_FAILURE;
    }
    return r;
}
