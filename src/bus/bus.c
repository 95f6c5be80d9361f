/* SPDX-License-Identifier: MIT */
/* The connection, the name and the manager hooks that turn into signals. */
#include "bus.h"

#include <errno.h>

#include "bus-errors.h"
#include "bus-internal.h"
#include "util/log.h"

static void on_device_added(void *userdata, struct device *d)
{
    manager_object_device_added(userdata, d);
}

static void on_device_removed(void *userdata, struct device *d)
{
    manager_object_device_removed(userdata, d);
}

static void on_device_changed(void *userdata, struct device *d, const struct device_published *now)
{
    device_object_changed(userdata, d, now);
}

static const struct manager_hooks bus_hooks = {
    .device_added = on_device_added,
    .device_removed = on_device_removed,
    .device_changed = on_device_changed,
};

/* Losing the bus (dbus-daemon restarted) leaves the devices serving; say so. */
static int on_disconnected(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
    log_warning("Lost the D-Bus connection; devices keep serving, but org.muserd1 is gone "
                "until muserd restarts.");
    return 0;
}

static int bus_open(enum bus_mode mode, const char *address, sd_bus **ret)
{
    _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
    int r;

    switch (mode) {
    case BUS_MODE_SYSTEM:
        return sd_bus_open_system_with_description(ret, "muserd");
    case BUS_MODE_USER:
        return sd_bus_open_user_with_description(ret, "muserd");
    case BUS_MODE_ADDRESS:
        r = sd_bus_new(&bus);
        if (r < 0)
            return r;
        r = sd_bus_set_address(bus, address);
        if (r >= 0)
            r = sd_bus_set_bus_client(bus, true);
        if (r >= 0)
            r = sd_bus_set_description(bus, "muserd");
        if (r >= 0)
            r = sd_bus_start(bus);
        if (r < 0)
            return r;
        *ret = TAKE_PTR(bus);
        return 0;
    case BUS_MODE_NONE:
        break;
    }
    return -EINVAL;
}

static const char *mode_name(enum bus_mode mode, const char *address)
{
    return mode == BUS_MODE_SYSTEM ? "the system bus"
           : mode == BUS_MODE_USER ? "the user bus"
                                   : address;
}

static int bus_setup(struct bus *b, enum bus_mode mode, const char *address)
{
    const char *where = mode_name(mode, address);
    int r;

    r = bus_open(mode, address, &b->bus);
    if (r < 0)
        return log_full_errno(mode == BUS_MODE_ADDRESS ? LOG_ERR : LOG_WARNING, r,
                              "Cannot connect to %s: %m", where);
    r = sd_bus_add_match(b->bus, NULL,
                         "type='signal',sender='org.freedesktop.DBus.Local',"
                         "interface='org.freedesktop.DBus.Local',member='Disconnected'",
                         on_disconnected, b);
    if (r >= 0)
        r = sd_bus_error_add_map(bus_error_map);
    if (r >= 0)
        r = manager_object_register(b);
    if (r >= 0)
        r = device_object_register(b);
    if (r >= 0)
        r = sd_bus_attach_event(b->bus, b->manager->event, SD_EVENT_PRIORITY_NORMAL);
    if (r < 0)
        return log_error_errno(r, "Failed to set up the D-Bus objects: %m");
    /* Synchronously, so that READY=1 after us means the name is there. */
    r = sd_bus_request_name(b->bus, BUS_NAME, 0);
    if (r < 0)
        return log_full_errno(
            mode == BUS_MODE_ADDRESS ? LOG_ERR : LOG_WARNING, r, "Cannot own %s on %s: %m%s",
            BUS_NAME, where,
            r == -EEXIST   ? " (another muserd runs?)"
            : r == -EACCES ? " (is dbus/org.muserd1.conf installed in /usr/share/dbus-1/system.d?)"
                           : "");
    return 0;
}

int bus_new(struct manager *m, enum bus_mode mode, const char *address, struct bus **ret)
{
    _cleanup_(bus_freep) struct bus *b = NULL;

    *ret = NULL;
    if (mode == BUS_MODE_NONE)
        return 0;
    b = calloc(1, sizeof(*b));
    if (!b)
        return log_oom();
    b->manager = m;
    int r = bus_setup(b, mode, address);
    if (r < 0) {
        if (mode == BUS_MODE_ADDRESS)
            return r;
        log_warning("Serving without D-Bus: devices from --device only.");
        return 0;
    }
    manager_set_hooks(m, &bus_hooks, b);
    log_info("Serving %s on %s.", BUS_NAME, mode_name(mode, address));
    *ret = TAKE_PTR(b);
    return 0;
}

void bus_free(struct bus *b)
{
    if (!b)
        return;
    if (b->manager->hooks == &bus_hooks)
        manager_set_hooks(b->manager, NULL, NULL);
    if (b->bus) {
        sd_bus_detach_event(b->bus);
        sd_bus_flush_close_unref(b->bus);
    }
    free(b);
}
