/* SPDX-License-Identifier: MIT */
/*
 * Moving a device's state to another muserd, driven either way:
 *  - by its client, through vfio-user migration v2: the server (vfu/) keeps
 *    the client's state machine and asks for one arc at a time
 *    (device_migration_arc), and for the stream (MIG_DATA_READ/WRITE);
 *  - by an operator, over D-Bus: Migrate writes the stream to an fd and
 *    leaves the device stopped, Resume runs it again, and a device created
 *    with "incoming": true holds its socket until Incoming has loaded it.
 * Both use one stream (migration-stream.h) and one way to stop: the plugin
 * is quiesced (an ABI 2 plugin may finish later; the answer waits), so a
 * stopped device raises no interrupt and touches no guest memory. One of
 * the two drives a device at a time; the other is told it is busy.
 *
 * Threads: the device's thread; the published phase is read from any.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct device;
struct device_migration;

/* What an operator sees (the Migration property). */
enum device_migration_phase {
    DEVICE_MIGRATION_NONE,     /* running, nothing in progress */
    DEVICE_MIGRATION_SAVING,   /* its state is being written out */
    DEVICE_MIGRATION_STOPPED,  /* stopped, after a save (or by its client) */
    DEVICE_MIGRATION_INCOMING, /* waits for a stream, its socket held */
    DEVICE_MIGRATION_LOADING,  /* a stream is coming in */
    DEVICE_MIGRATION_FAILED,   /* the last step failed: see the log */
};
const char *device_migration_phase_to_string(enum device_migration_phase phase);

/* incoming: the device waits for Incoming before any client is served. */
int device_migration_setup(struct device *d, bool incoming);
/* The device goes: anything in flight stops, a waiting operator call is
 * answered -ECANCELED. Before the server and the plugin go. */
void device_migration_teardown(struct device *d);
void device_migration_free(struct device *d);

/* Can this device's state be saved at all? (Its plugin saves state.) */
bool device_migration_supported(const struct device *d);

/* Inside an io_thread_call(): answered now or later (io_call_answer);
 * *why (malloc()ed) tells the operator what went wrong. */
int device_migrate(struct device *d, int fd, char **why);
int device_incoming(struct device *d, int fd, char **why);
int device_resume(struct device *d, char **why);

/* vfu_device_ops for the client's migration. */
int device_migration_arc(void *opaque, uint32_t from, uint32_t to);
int device_migration_read(void *opaque, void *buf, size_t len, size_t *n);
int device_migration_write(void *opaque, const void *buf, size_t len);
void device_migration_abort(void *opaque);

/* Does a migration keep the plugin quiesced (stopped, or stopping)? */
bool device_migration_holds(const struct device *d);

/* The plugin finished quiescing (device-wake); no-op unless we wait. */
void device_migration_quiesced(struct device *d);
/* The device was reset: whatever was in progress is dropped, it runs
 * again (an incoming device keeps waiting for its stream). */
void device_migration_on_reset(struct device *d);
