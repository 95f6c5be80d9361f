/* SPDX-License-Identifier: MIT */
/*
 * org.muserd1.Manager at /org/muserd1, and the standard ObjectManager there:
 * every method is one manager call.
 */
#include <errno.h>
#include <string.h>

#include "bus-errors.h"
#include "bus-internal.h"
#include "util/log.h"

/* A CreateDevice waiting for the device's thread. */
struct create_call {
    sd_bus_message *msg;
    struct manager *manager;
    char *type, *id;
};

static void create_call_free(struct create_call *c)
{
    sd_bus_message_unref(c->msg);
    free(c->type);
    free(c->id);
    free(c);
}

static void on_created(void *userdata, int r, struct device *d, const char *sentence)
{
    struct create_call *c = userdata;
    _cleanup_free_ char *path = NULL;

    if (r >= 0)
        r = device_object_path(d->id, &path);
    if (r >= 0)
        r = sd_bus_reply_method_return(c->msg, "o", path);
    else {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        log_debug_errno(r, "CreateDevice %s %s refused: %s", c->type, c->id,
                        sentence ? sentence : "(no reason)");
        bus_error_create_failed(&error, c->manager, c->type, c->id, r, sentence);
        r = sd_bus_reply_method_error(c->msg, &error);
        sd_bus_error_free(&error);
    }
    if (r < 0)
        log_debug_errno(r, "Cannot answer CreateDevice %s: %m", c->id);
    create_call_free(c);
}

/* Answered when the device's thread has built it: a thread stuck in a
 * plugin holds up this call, not the bus. */
static int method_create_device(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
    struct bus *b = userdata;
    const char *type, *id, *config;
    _cleanup_free_ char *sentence = NULL;

    int r = sd_bus_message_read(msg, "sss", &type, &id, &config);
    if (r < 0)
        return r;
    struct create_call *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    *c = (struct create_call){.msg = sd_bus_message_ref(msg),
                              .manager = b->manager,
                              .type = strdup(type),
                              .id = strdup(id)};
    if (!c->type || !c->id) {
        create_call_free(c);
        return -ENOMEM;
    }
    r = manager_create_device_async(b->manager, type, id, *config ? config : NULL, on_created, c,
                                    &sentence);
    if (r < 0) {
        create_call_free(c);
        log_debug_errno(r, "CreateDevice %s %s refused: %s", type, id,
                        sentence ? sentence : "(no reason)");
        return bus_error_create_failed(error, b->manager, type, id, r, sentence);
    }
    return 1;
}

/* Replies to msg (whose reference it takes) once the device is gone. */
static void on_destroyed(void *userdata, int r)
{
    sd_bus_message *msg = userdata;
    r = sd_bus_reply_method_return(msg, NULL);
    if (r < 0)
        log_debug_errno(r, "Cannot answer a destroy: %m");
    sd_bus_message_unref(msg);
}

int bus_destroy_device(struct bus *b, sd_bus_message *msg, const char *id, sd_bus_error *error)
{
    int r = manager_destroy_device_async(b->manager, id, on_destroyed, sd_bus_message_ref(msg));
    if (r < 0) {
        sd_bus_message_unref(msg);
        if (manager_id_busy(b->manager, id))
            return sd_bus_error_setf(error, BUS_ERROR_FAILED,
                                     "Device '%s' is being created or destroyed; try again when "
                                     "that is done.",
                                     id);
        return bus_error_no_device(error, id);
    }
    return 1;
}

static int method_destroy_device(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
    const char *id;

    int r = sd_bus_message_read(msg, "s", &id);
    if (r < 0)
        return r;
    return bus_destroy_device(userdata, msg, id, error);
}

static int method_get_device(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
    struct bus *b = userdata;
    _cleanup_free_ char *path = NULL;
    const char *id;

    int r = sd_bus_message_read(msg, "s", &id);
    if (r < 0)
        return r;
    if (!manager_find_device(b->manager, id))
        return bus_error_no_device(error, id);
    r = device_object_path(id, &path);
    if (r < 0)
        return r;
    return sd_bus_reply_method_return(msg, "o", path);
}

static int method_list_devices(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
    struct bus *b = userdata;
    const struct manager *m = b->manager;
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;

    int r = sd_bus_message_new_method_return(msg, &reply);
    if (r >= 0)
        r = sd_bus_message_open_container(reply, 'a', "(ssso)");
    for (size_t i = 0; r >= 0 && i < m->nr_devices; i++) {
        const struct device *d = m->devices[i];
        _cleanup_free_ char *path = NULL;
        r = device_object_path(d->id, &path);
        if (r >= 0)
            r = sd_bus_message_append(reply, "(ssso)", d->id, d->type->type->name,
                                      device_state_to_string(device_get_state(d)), path);
    }
    if (r >= 0)
        r = sd_bus_message_close_container(reply);
    if (r < 0)
        return r;
    return sd_bus_send(NULL, reply, NULL);
}

static int method_list_device_types(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
    struct bus *b = userdata;
    const struct plugins *p = b->manager->plugins;
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;

    int r = sd_bus_message_new_method_return(msg, &reply);
    if (r >= 0)
        r = sd_bus_message_open_container(reply, 'a', "(sss)");
    for (size_t i = 0; r >= 0 && i < plugins_count(p); i++) {
        const struct plugin_type *t = plugins_get(p, i);
        r = sd_bus_message_append(reply, "(sss)", t->type->name, t->path,
                                  t->type->description ? t->type->description : "");
    }
    if (r >= 0)
        r = sd_bus_message_close_container(reply);
    if (r < 0)
        return r;
    return sd_bus_send(NULL, reply, NULL);
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface,
                                const char *property, sd_bus_message *reply, void *userdata,
                                sd_bus_error *error)
{
    return sd_bus_message_append(reply, "s", MUSERD_VERSION);
}

static int property_get_device_count(sd_bus *bus, const char *path, const char *interface,
                                     const char *property, sd_bus_message *reply, void *userdata,
                                     sd_bus_error *error)
{
    const struct bus *b = userdata;
    return sd_bus_message_append(reply, "u", (uint32_t)b->manager->nr_devices);
}

static int property_get_string(sd_bus *bus, const char *path, const char *interface,
                               const char *property, sd_bus_message *reply, void *userdata,
                               sd_bus_error *error)
{
    const struct bus *b = userdata;
    const char *s =
        strcmp(property, "PluginDirectory") == 0 ? b->manager->plugin_dir : b->manager->runtime_dir;
    return sd_bus_message_append(reply, "s", s);
}

/* Order matters for the checked-in dbus/org.muserd1.Manager.xml. */
static const sd_bus_vtable manager_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("PluginDirectory", "s", property_get_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("RuntimeDirectory", "s", property_get_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("DeviceCount", "u", property_get_device_count, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_METHOD_WITH_ARGS("CreateDevice", SD_BUS_ARGS("s", type, "s", id, "s", config_json),
                            SD_BUS_RESULT("o", path), method_create_device,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("DestroyDevice", SD_BUS_ARGS("s", id), SD_BUS_NO_RESULT,
                            method_destroy_device, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("GetDevice", SD_BUS_ARGS("s", id), SD_BUS_RESULT("o", path),
                            method_get_device, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("ListDevices", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(ssso)", devices),
                            method_list_devices, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("ListDeviceTypes", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(sss)", types),
                            method_list_device_types, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_SIGNAL_WITH_ARGS("DeviceNew", SD_BUS_ARGS("s", id, "o", path), 0),
    SD_BUS_SIGNAL_WITH_ARGS("DeviceRemoved", SD_BUS_ARGS("s", id, "o", path), 0),
    SD_BUS_VTABLE_END,
};

int manager_object_register(struct bus *b)
{
    int r =
        sd_bus_add_object_vtable(b->bus, NULL, MANAGER_PATH, MANAGER_INTERFACE, manager_vtable, b);
    if (r < 0)
        return r;
    return sd_bus_add_object_manager(b->bus, NULL, MANAGER_PATH);
}

/* Signals are best effort: a failure to announce never undoes the change. */
static void announce(struct bus *b, struct device *d, bool added)
{
    _cleanup_free_ char *path = NULL;

    int r = device_object_path(d->id, &path);
    if (r >= 0)
        r = added ? sd_bus_emit_interfaces_added(b->bus, path, DEVICE_INTERFACE, NULL)
                  : sd_bus_emit_interfaces_removed(b->bus, path, DEVICE_INTERFACE, NULL);
    if (r >= 0)
        r = sd_bus_emit_signal(b->bus, MANAGER_PATH, MANAGER_INTERFACE,
                               added ? "DeviceNew" : "DeviceRemoved", "so", d->id, path);
    if (r >= 0)
        r = sd_bus_emit_properties_changed(b->bus, MANAGER_PATH, MANAGER_INTERFACE, "DeviceCount",
                                           NULL);
    if (r < 0)
        log_warning_errno(r, "%s: failed to announce the device on D-Bus: %m", d->id);
}

void manager_object_device_added(struct bus *b, struct device *d)
{
    announce(b, d, true);
}

void manager_object_device_removed(struct bus *b, struct device *d)
{
    announce(b, d, false);
}
