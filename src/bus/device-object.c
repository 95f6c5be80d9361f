/* SPDX-License-Identifier: MIT */
/*
 * org.muserd1.Device at /org/muserd1/device/<escaped id>. One fallback
 * vtable serves every device: the path is decoded to an id and looked up on
 * each call, so ten thousand devices cost no sd-bus object each.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "bus-errors.h"
#include "bus-internal.h"
#include "device-migration.h"
#include "util/log.h"

int device_object_path(const char *id, char **ret)
{
    return sd_bus_path_encode(DEVICE_PATH_PREFIX, id, ret);
}

static int device_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                              void **found, sd_bus_error *error)
{
    struct bus *b = userdata;
    _cleanup_free_ char *id = NULL;

    int r = sd_bus_path_decode(path, DEVICE_PATH_PREFIX, &id);
    if (r <= 0)
        return r;
    struct device *d = manager_find_device(b->manager, id);
    if (!d)
        return 0;
    *found = d;
    return 1;
}

static int device_object_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***nodes,
                                   sd_bus_error *error)
{
    struct bus *b = userdata;
    const struct manager *m = b->manager;
    char **v = calloc(m->nr_devices + 1, sizeof(char *));

    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < m->nr_devices; i++) {
        int r = device_object_path(m->devices[i]->id, &v[i]);
        if (r < 0) {
            for (size_t j = 0; j < i; j++)
                free(v[j]);
            free(v);
            return r;
        }
    }
    *nodes = v; /* sd-bus frees the strv */
    return 0;
}

static int property_get_type(sd_bus *bus, const char *path, const char *interface,
                             const char *property, sd_bus_message *reply, void *userdata,
                             sd_bus_error *error)
{
    const struct device *d = userdata;
    return sd_bus_message_append(reply, "s", d->type->type->name);
}

static int property_get_state(sd_bus *bus, const char *path, const char *interface,
                              const char *property, sd_bus_message *reply, void *userdata,
                              sd_bus_error *error)
{
    const struct device *d = userdata;
    return sd_bus_message_append(reply, "s", device_state_to_string(device_get_state(d)));
}

/* (pid, uid) of the VMM; pid 0 means no client (no process has pid 0, while
 * uid 0 is a real user). */
static int property_get_client(sd_bus *bus, const char *path, const char *interface,
                               const char *property, sd_bus_message *reply, void *userdata,
                               sd_bus_error *error)
{
    const struct device *d = userdata;
    pid_t pid = 0;
    uid_t uid = 0;

    if (device_get_client(d, &pid, &uid) < 0)
        pid = 0, uid = 0;
    return sd_bus_message_append(reply, "(uu)", (uint32_t)pid, (uint32_t)uid);
}

static int property_get_migration(sd_bus *bus, const char *path, const char *interface,
                                  const char *property, sd_bus_message *reply, void *userdata,
                                  sd_bus_error *error)
{
    const struct device *d = userdata;
    return sd_bus_message_append(reply, "s",
                                 device_migration_phase_to_string(device_get_migration(d)));
}

static int property_get_config(sd_bus *bus, const char *path, const char *interface,
                               const char *property, sd_bus_message *reply, void *userdata,
                               sd_bus_error *error)
{
    const struct device *d = userdata;
    return sd_bus_message_append(reply, "s", d->config_text);
}

/* The vtable was registered with the struct bus as its userdata; handlers
 * get the device the find callback returned, so fetch the bus this way. */
static struct bus *current_bus(sd_bus_message *msg)
{
    return sd_bus_slot_get_userdata(sd_bus_get_current_slot(sd_bus_message_get_bus(msg)));
}

static int method_destroy(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
    struct device *d = userdata;

    /* d and its id go with the destroy. */
    _cleanup_free_ char *id = strdup(d->id);
    if (!id)
        return -ENOMEM;
    return bus_destroy_device(current_bus(msg), msg, id, error);
}

/* A method answered when the device's thread has done it. */
struct device_call {
    sd_bus_message *msg;
    char *id;
    const char *method;
};

static struct device_call *device_call_new(sd_bus_message *msg, const struct device *d,
                                           const char *method)
{
    struct device_call *c = malloc(sizeof(*c));
    if (!c)
        return NULL;
    *c =
        (struct device_call){.msg = sd_bus_message_ref(msg), .id = strdup(d->id), .method = method};
    if (!c->id) {
        sd_bus_message_unref(c->msg);
        free(c);
        return NULL;
    }
    return c;
}

static void device_call_free(struct device_call *c)
{
    sd_bus_message_unref(c->msg);
    free(c->id);
    free(c);
}

/* Reply (error set: with it) and free c. */
static void device_call_answer(struct device_call *c, const sd_bus_error *error)
{
    int r =
        error ? sd_bus_reply_method_error(c->msg, error) : sd_bus_reply_method_return(c->msg, NULL);
    if (r < 0)
        log_debug_errno(r, "Cannot answer %s of %s: %m", c->method, c->id);
    device_call_free(c);
}

static void on_reset(void *userdata, int r)
{
    struct device_call *c = userdata;
    _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

    if (r < 0)
        sd_bus_error_setf(&error, BUS_ERROR_FAILED, "Resetting device '%s' failed: %s.", c->id,
                          strerror(-r));
    else
        log_info("%s: reset by operator request.", c->id);
    device_call_answer(c, r < 0 ? &error : NULL);
}

static int method_reset(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
    struct bus *b = current_bus(msg);
    struct device *d = userdata;

    struct device_call *c = device_call_new(msg, d, "Reset");
    if (!c)
        return -ENOMEM;
    int r = manager_reset_device_async(b->manager, d->id, on_reset, c);
    if (r < 0) {
        device_call_free(c); /* the method's return value answers */
        return r == -ENOENT ? bus_error_no_device(error, d->id) : r;
    }
    return 1;
}

static void on_migration_answer(void *userdata, int r, const char *why)
{
    struct device_call *c = userdata;
    _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

    if (r < 0) {
        bus_error_migration_failed(&error, c->method, c->id, r, why);
        log_info("%s: %s failed: %s", c->id, c->method, error.message);
    }
    device_call_answer(c, r < 0 ? &error : NULL);
}

/* Migrate(h), Incoming(h), Resume(): answered when the device's thread is
 * done, which for a stream is when all of it went through the fd. */
static int migration_method(sd_bus_message *msg, struct device *d, enum manager_migration_op op,
                            const char *method, sd_bus_error *error)
{
    struct bus *b = current_bus(msg);
    int fd = -1;

    if (op != MANAGER_RESUME) {
        int r = sd_bus_message_read(msg, "h", &fd);
        if (r < 0)
            return r;
        /* The message keeps its own; the device's thread gets a copy. */
        fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
            return -errno;
    }
    struct device_call *c = device_call_new(msg, d, method);
    if (!c) {
        safe_close(fd);
        return -ENOMEM;
    }
    int r = manager_migration_async(b->manager, d->id, op, fd, on_migration_answer, c);
    if (r < 0) {
        device_call_free(c);
        return r == -ENOENT ? bus_error_no_device(error, d->id) : r;
    }
    return 1;
}

static int method_migrate(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
    return migration_method(msg, userdata, MANAGER_MIGRATE, "Migrate", error);
}

static int method_incoming(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
    return migration_method(msg, userdata, MANAGER_INCOMING, "Incoming", error);
}

static int method_resume(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
    return migration_method(msg, userdata, MANAGER_RESUME, "Resume", error);
}

/* Order matters for the checked-in dbus/org.muserd1.Device.xml. */
static const sd_bus_vtable device_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Id", "s", NULL, offsetof(struct device, id), SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Type", "s", property_get_type, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("SocketPath", "s", NULL, offsetof(struct device, socket_path),
                    SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Client", "(uu)", property_get_client, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Config", "s", property_get_config, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Migration", "s", property_get_migration, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("VendorId", "q", NULL, offsetof(struct device, desc.pci.ids.vendor_id),
                    SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("DeviceId", "q", NULL, offsetof(struct device, desc.pci.ids.device_id),
                    SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_METHOD("Destroy", "", "", method_destroy, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("Reset", "", "", method_reset, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("Migrate", "h", SD_BUS_PARAM(fd), "", , method_migrate,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("Incoming", "h", SD_BUS_PARAM(fd), "", , method_incoming,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("Resume", "", "", method_resume, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

int device_object_register(struct bus *b)
{
    int r = sd_bus_add_fallback_vtable(b->bus, NULL, DEVICE_PATH_PREFIX, DEVICE_INTERFACE,
                                       device_vtable, device_object_find, b);
    if (r < 0)
        return r;
    return sd_bus_add_node_enumerator(b->bus, NULL, DEVICE_PATH_PREFIX, device_object_enumerate, b);
}

/* PropertiesChanged with the values of that moment, not the current ones:
 * a watcher sees every step (saving, then stopped), not only the last. */
void device_object_changed(struct bus *b, struct device *d, const struct device_published *now)
{
    _cleanup_free_ char *path = NULL;
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
    const char *state =
        device_state_to_string(now->connected ? DEVICE_CONNECTED : DEVICE_LISTENING);
    uint32_t pid = now->connected ? (uint32_t)now->pid : 0;
    uint32_t uid = now->connected ? (uint32_t)now->uid : 0;

    int r = device_object_path(d->id, &path);
    if (r >= 0)
        r = sd_bus_message_new_signal(b->bus, &m, path, "org.freedesktop.DBus.Properties",
                                      "PropertiesChanged");
    if (r >= 0)
        r = sd_bus_message_append(m, "sa{sv}as", DEVICE_INTERFACE, 3, "State", "s", state, "Client",
                                  "(uu)", pid, uid, "Migration", "s",
                                  device_migration_phase_to_string(now->migration), 0);
    if (r >= 0)
        r = sd_bus_send(b->bus, m, NULL);
    if (r < 0)
        log_warning_errno(r, "%s: failed to announce the state change on D-Bus: %m", d->id);
}
