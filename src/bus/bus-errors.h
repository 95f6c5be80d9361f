/* SPDX-License-Identifier: MIT */
/*
 * The named errors of org.muserd1. Each reply carries a sentence a person can
 * act on; the names let a program tell the cases apart.
 */
#pragma once

#include <systemd/sd-bus.h>

#include "manager.h"

#define BUS_ERROR_NO_SUCH_TYPE   "org.muserd1.Error.NoSuchType"
#define BUS_ERROR_DEVICE_EXISTS  "org.muserd1.Error.DeviceExists"
#define BUS_ERROR_INVALID_CONFIG "org.muserd1.Error.InvalidConfig"
#define BUS_ERROR_NO_SUCH_DEVICE "org.muserd1.Error.NoSuchDevice"
#define BUS_ERROR_INVALID_ID     "org.muserd1.Error.InvalidId"
#define BUS_ERROR_FAILED         "org.muserd1.Error.Failed"
/* Migration (org.muserd1.Device.Migrate / Incoming / Resume). */
#define BUS_ERROR_NOT_MIGRATABLE      "org.muserd1.Error.NotMigratable"
#define BUS_ERROR_MIGRATION_STATE     "org.muserd1.Error.WrongMigrationState"
#define BUS_ERROR_BUSY                "org.muserd1.Error.Busy"
#define BUS_ERROR_INCOMPATIBLE_STREAM "org.muserd1.Error.IncompatibleStream"
#define BUS_ERROR_CORRUPT_STREAM      "org.muserd1.Error.CorruptStream"
#define BUS_ERROR_TRUNCATED_STREAM    "org.muserd1.Error.TruncatedStream"

/* Name <-> errno, for sd_bus_error_add_map(): clients get a sensible errno. */
extern const sd_bus_error_map bus_error_map[];

/*
 * Turn a failed manager_create_device_async() into a named error: r and the
 * manager's sentence (may be NULL). Returns the negative errno to return
 * from the method handler.
 */
int bus_error_create_failed(sd_bus_error *error, const struct manager *m, const char *type,
                            const char *id, int r, const char *sentence);
/* A failed Migrate, Incoming or Resume (r, the device's sentence or NULL). */
int bus_error_migration_failed(sd_bus_error *error, const char *method, const char *id, int r,
                               const char *why);
/* A method naming a device that is not there (or an id that cannot be one). */
int bus_error_no_device(sd_bus_error *error, const char *id);
