/* SPDX-License-Identifier: MIT */
/*
 * What the muserctl commands share: the parsed global options, the bus
 * connection with its error reporting (ctl-bus.c), D-Bus values turned into
 * JSON or text (ctl-value.c) and column output (ctl-table.c).
 *
 * Every command is `int ctl_X(int argc, char **argv, const struct ctl_options *o)`
 * with argv[0] the command's name, and returns the process exit status.
 * Errors are printed once, where they are found, as "muserctl: SENTENCE".
 */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "util/macro.h"

#define EXIT_USAGE 2

#define MUSERD_BUS_NAME      "org.muserd1"
#define MUSERD_MANAGER_PATH  "/org/muserd1"
#define MUSERD_DEVICE_PREFIX "/org/muserd1/device"
#define MUSERD_MANAGER       "org.muserd1.Manager"
#define MUSERD_DEVICE        "org.muserd1.Device"

DEFINE_FREEP(json_object, json_object_put)

enum ctl_bus_kind {
    CTL_BUS_SYSTEM,
    CTL_BUS_USER,
    CTL_BUS_ADDRESS,
};

struct ctl_options {
    enum ctl_bus_kind bus_kind;
    const char *address; /* CTL_BUS_ADDRESS */
    bool json;           /* print JSON */
    int timeout_ms;      /* probe */
    const char *config;  /* create: the JSON object after --json */
};

/* ---- ctl-bus.c ------------------------------------------------------------------ */

/* Connect to the bus the options name. Prints why it failed. */
int ctl_bus_open(const struct ctl_options *o, sd_bus **ret);
/*
 * Call a method of muserd (destination org.muserd1). On failure prints the
 * error's sentence, or what to do when muserd is not on the bus at all, and
 * returns a negative errno. reply may be NULL.
 */
int ctl_call(sd_bus *bus, const struct ctl_options *o, const char *path, const char *interface,
             const char *member, sd_bus_message **reply, const char *types, ...);
/* Print a failed call's error as ctl_call() does. */
void ctl_print_error(const struct ctl_options *o, const sd_bus_error *error, int r);
/* "the system bus", "the user bus" or "the bus at ADDRESS". */
const char *ctl_bus_description(const struct ctl_options *o);

/* ---- ctl-value.c ---------------------------------------------------------------- */

/* Read the next complete value of m (any type, variants unwrapped) as JSON. */
int ctl_read_json(sd_bus_message *m, json_object **ret);
/*
 * A property value as muserctl presents it, given its D-Bus value as JSON
 * (takes ownership of v): Client becomes {"pid","uid"}, Config the parsed
 * object. For text, ctl_property_text() on the result.
 */
json_object *ctl_property_json(const char *name, json_object *v);
/* The text form of a value ctl_property_json() returned; malloc()ed. */
char *ctl_property_text(const char *name, json_object *v);
/* Read an a{sv} of properties into a JSON object (presented as above). */
int ctl_read_properties(sd_bus_message *m, json_object **ret);
/* Print a JSON value on one line (--json output), or pretty when stdout is a tty. */
void ctl_print_json(json_object *v);

/* ---- ctl-table.c ---------------------------------------------------------------- */

struct ctl_table;
/* A table with ncols columns named by the header strings (copied). */
int ctl_table_new(size_t ncols, const char *const *header, struct ctl_table **ret);
void ctl_table_free(struct ctl_table *t);
DEFINE_FREEP(struct ctl_table, ctl_table_free)
/* Append a row of ncols strings (copied; NULL prints "-"). */
int ctl_table_add(struct ctl_table *t, const char *const *cells);
/* Print aligned columns; the last column is not padded. */
void ctl_table_print(const struct ctl_table *t);
size_t ctl_table_rows(const struct ctl_table *t);

/* ---- the commands --------------------------------------------------------------- */

int ctl_list(int argc, char **argv, const struct ctl_options *o);
int ctl_types(int argc, char **argv, const struct ctl_options *o);
int ctl_show(int argc, char **argv, const struct ctl_options *o);
int ctl_create(int argc, char **argv, const struct ctl_options *o);
int ctl_destroy(int argc, char **argv, const struct ctl_options *o);
int ctl_reset(int argc, char **argv, const struct ctl_options *o);
int ctl_monitor(int argc, char **argv, const struct ctl_options *o);
int ctl_migrate(int argc, char **argv, const struct ctl_options *o);
int ctl_incoming(int argc, char **argv, const struct ctl_options *o);
int ctl_resume(int argc, char **argv, const struct ctl_options *o);

/* ---- ctl-create.c ------------------------------------------------------------- */

/*
 * Build the config JSON from KEY=VALUE arguments: a VALUE written as a JSON
 * number (decimal digits, no leading zero, fitting 64 bits) becomes a
 * number, true/false a boolean, "TEXT" in double quotes the string TEXT, and
 * anything else the string VALUE. Returns 0, or -EINVAL after printing what
 * is wrong.
 */
int ctl_config_from_args(int argc, char **argv, json_object **ret);
