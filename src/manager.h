/* SPDX-License-Identifier: MIT */
/*
 * The device registry: create, destroy and look up devices by id. The
 * command line, D-Bus and socket activation all go through it; it is the
 * core's single entry point.
 *
 * Threads: the manager and its registry belong to the main loop; every
 * function here is called from it. Each device lives on an I/O thread: the
 * manager builds, resets and frees it there, and forwards its state changes
 * to the main loop, where the hooks run. The calls answer on the main loop
 * once the thread is done, so that a device stuck in its plugin holds up
 * nothing but the calls for its own thread.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <systemd/sd-event.h>

#include "device.h"
#include "plugins.h"
#include "util/macro.h"

/* Who wants to hear about devices (the D-Bus face). Any member may be NULL. */
struct manager_hooks {
    void (*device_added)(void *userdata, struct device *d);
    void (*device_removed)(void *userdata, struct device *d); /* before it is freed */
    /* State, client or migration changed; now is what the device published
     * then (later changes follow in their own calls). */
    void (*device_changed)(void *userdata, struct device *d, const struct device_published *now);
};

struct activation;
struct io_threads;
struct mailbox;

struct manager {
    sd_event *event;
    const struct manager_hooks *hooks;
    void *hooks_userdata;
    struct activation *activation; /* sockets systemd passed us, or NULL */
    struct plugins *plugins;
    char *plugin_dir;
    char *runtime_dir;
    struct device **devices;
    size_t nr_devices, cap_devices;
    /* id -> position in devices (see manager.c): lookups stay O(1) at 10,000s. */
    size_t *index;
    size_t index_cap, index_used;
    sd_event_source *trim_event; /* gives freed device memory back, see manager.c */
    struct io_threads *threads;  /* not owned: muserd.c makes and frees them */
    struct mailbox *notices;     /* device state changes, from the I/O threads */
    /* ABI 1 plugins were written for one loop: all devices of one such
     * plugin share one I/O thread, chosen at its first device. */
    struct plugin_pin *pins;
    size_t nr_pins;
    /* Ids being created or destroyed (asynchronously): taken meanwhile. */
    struct busy_id *busy;
    size_t nr_busy;
    unsigned jobs_in_flight; /* asynchronous calls not yet answered */
};

/* Answers of the _async calls, on the main loop. d is the new device on
 * success; error (may be NULL) the sentence for the operator on failure. */
typedef void (*manager_create_done_fn)(void *userdata, int r, struct device *d, const char *error);
typedef void (*manager_done_fn)(void *userdata, int r);

/* A manager on the main loop `event` whose devices run on `threads`. */
int manager_new(sd_event *event, struct io_threads *threads, const char *plugin_dir,
                const char *runtime_dir, struct manager **ret);
void manager_free(struct manager *m);
DEFINE_FREEP(struct manager, manager_free)

void manager_set_hooks(struct manager *m, const struct manager_hooks *hooks, void *userdata);

/*
 * Create device `id` of `type` with config JSON (may be NULL), listening on
 * the socket systemd passed for the id, else on RUNTIME_DIR/ID.sock. Built on
 * its I/O thread: returns 0 and calls done once the device exists (or could
 * not be made), or returns -errno at once, with *error set to a sentence for
 * the operator, when the request is refused before any thread sees it:
 * -EINVAL bad id or io_thread, -EEXIST id taken or busy, -ENOENT unknown
 * type. done's errors: -EINVAL bad config, others from the plugin or socket.
 */
int manager_create_device_async(struct manager *m, const char *type, const char *id,
                                const char *config_json, manager_create_done_fn done,
                                void *userdata, char **error);

/* Destroy device id: it leaves the registry (and D-Bus) at once; done runs
 * when it is gone, socket file and all. -ENOENT at once when there is none. */
int manager_destroy_device_async(struct manager *m, const char *id, manager_done_fn done,
                                 void *userdata);
/* Reset device id as if its client had sent DEVICE_RESET; done gets the
 * plugin's answer. -ENOENT at once when there is no such device. */
int manager_reset_device_async(struct manager *m, const char *id, manager_done_fn done,
                               void *userdata);
/* Migration by the operator (device-migration.h). done gets the answer and,
 * on failure, a sentence for the operator (may be NULL). fd (Migrate: where
 * the stream goes; Incoming: where it comes from; Resume: -1) is taken,
 * also on failure. -ENOENT at once when there is no such device. */
enum manager_migration_op {
    MANAGER_MIGRATE,
    MANAGER_INCOMING,
    MANAGER_RESUME,
};
typedef void (*manager_why_done_fn)(void *userdata, int r, const char *why);
int manager_migration_async(struct manager *m, const char *id, enum manager_migration_op op, int fd,
                            manager_why_done_fn done, void *userdata);

/* Shutting down: wait up to timeout_ms (-1: for ever) until every
 * asynchronous call in flight is answered (a D-Bus caller gets its reply).
 * -ETIMEDOUT when a device's thread does not answer: a plugin is stuck. */
int manager_flush(struct manager *m, int timeout_ms);
/* Is id being created or destroyed (asynchronously) right now? */
bool manager_id_busy(const struct manager *m, const char *id);
struct device *manager_find_device(const struct manager *m, const char *id);

/* Ids become file names: 1..64 of [A-Za-z0-9_.-], not starting with '.' or '-'. */
bool device_id_valid(const char *id);
