/* SPDX-License-Identifier: MIT */
/* What the files of src/bus/ share; nothing outside src/bus/ includes this. */
#pragma once

#include <systemd/sd-bus.h>

#include "manager.h"

#define BUS_NAME           "org.muserd1"
#define MANAGER_PATH       "/org/muserd1"
#define MANAGER_INTERFACE  "org.muserd1.Manager"
#define DEVICE_PATH_PREFIX "/org/muserd1/device"
#define DEVICE_INTERFACE   "org.muserd1.Device"

struct bus {
    sd_bus *bus;
    struct manager *manager;
};

/* manager-object.c */
int manager_object_register(struct bus *b);
void manager_object_device_added(struct bus *b, struct device *d);
void manager_object_device_removed(struct bus *b, struct device *d);
/* DestroyDevice and Device.Destroy: answer msg once device id is gone.
 * Returns what the method handler returns. */
int bus_destroy_device(struct bus *b, sd_bus_message *msg, const char *id, sd_bus_error *error);

/* device-object.c */
int device_object_register(struct bus *b);
/* /org/muserd1/device/<escaped id>, malloc()ed. */
int device_object_path(const char *id, char **ret);
void device_object_changed(struct bus *b, struct device *d, const struct device_published *now);
