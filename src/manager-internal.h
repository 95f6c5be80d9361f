/* SPDX-License-Identifier: MIT */
/*
 * Between the two halves of the manager: manager.c keeps the registry (ids,
 * the index, hooks), manager-threads.c runs devices on their I/O threads
 * (placing them, building, resetting and freeing them there, forwarding
 * their state changes). Main thread only, like the rest of the manager.
 */
#pragma once

#include "manager.h"

struct io_thread;

/* manager.c */
/* Put d in the registry (the id is free: checked before). -ENOMEM. */
int manager_registry_add(struct manager *m, struct device *d);
/* Take device id out of the registry; NULL when there is none. */
struct device *manager_registry_remove(struct manager *m, const char *id);
/* Give freed memory back soon (after destroys settle). */
void manager_schedule_trim(struct manager *m);

/* manager-threads.c */
int manager_threads_init(struct manager *m);
/* Once the devices are gone: drop the notices still queued, free the rest. */
void manager_threads_done(struct manager *m);

/* What a create needs, checked by manager.c; manager-threads.c copies it. */
struct create_request {
    const struct plugin_type *type;
    const char *id, *config_json, *path;
    int listen_fd; /* taken, on success and on failure */
};
/* Build the device on its thread, answered later on the main loop with
 * done(); -errno at once (with *error) when the request cannot be placed. */
int manager_threads_create_async(struct manager *m, const struct create_request *req,
                                 manager_create_done_fn done, void *userdata, char **error);
/* Free d on its thread: waiting (shutting down), or answered later (d is
 * out of the registry already; its id stays busy until it is gone). */
void manager_threads_free(struct manager *m, struct device *d);
int manager_threads_free_async(struct manager *m, struct device *d, manager_done_fn done,
                               void *userdata);
int manager_threads_reset_async(struct manager *m, struct device *d, manager_done_fn done,
                                void *userdata);
/* Migrate, Incoming or Resume d on its thread, answered later. */
int manager_threads_migration_async(struct manager *m, struct device *d,
                                    enum manager_migration_op op, int fd, manager_why_done_fn done,
                                    void *userdata);
