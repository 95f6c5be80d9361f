/* SPDX-License-Identifier: MIT */
/*
 * One device instance: a plugin's device, its PCI config space, and the
 * vfio-user server on its socket. device.c joins them: it turns the plugin's
 * descriptor into a PCI config space and a vfio-user region layout, routes
 * region accesses (config space to pci/, the MSI-X table and PBA to pci/,
 * the rest to the plugin) and interrupts (pci/ decides, vfu/ delivers).
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "device-desc.h"
#include "host.h"
#include "plugins.h"
#include "util/macro.h"

/*
 * Threads: a device lives on one I/O thread (manager.c places it and calls
 * device_new, device_free and device_reset there). Everything below runs on
 * that thread, except what is marked "any thread": the immutable identity
 * (id, type, config_text, desc.pci.ids) and the state the device publishes for
 * D-Bus (device_get_state, device_get_client).
 */
struct device {
    char *id;          /* immutable */
    char *socket_path; /* unlinked on free when we bound it */
    bool owns_socket_file;
    const struct plugin_type *type; /* immutable */
    struct json_object *config;     /* the device thread's: host services read it */
    char *config_text;              /* immutable: the config as JSON, for D-Bus */

    struct muserd_host host;
    void *plugin_dev;
    struct device_desc desc; /* fds here are our dups */
    struct pci_dev *pci;
    struct vfu_server *server;
    struct irq_routes *routes;        /* raises from any thread */
    struct vfu_dma *dma;              /* guest memory, also for the plugin's threads */
    struct device_reset_state *reset; /* device-reset.c's */
    struct device_waker *waker;       /* other threads wake the device's */
    struct device_migration *mig;     /* device-migration.c's */
    unsigned client_generation;       /* counts clients connecting and leaving */

    void (*changed)(void *userdata, struct device *d);
    void *changed_userdata;

    /* Published by the device thread, read by any thread. */
    pthread_mutex_t published_lock;
    bool published_connected;
    pid_t published_pid;
    uid_t published_uid;
    int published_migration; /* enum device_migration_phase */

    void *manager_data; /* the manager's: which I/O thread, and more */
};

/* What an operator sees. */
enum device_state {
    DEVICE_LISTENING, /* waiting for a VMM */
    DEVICE_CONNECTED, /* a VMM is attached */
};

/*
 * Create a device of `type` with id and config (JSON text, may be NULL) on
 * the thread whose loop is `event` and whose mailbox is `mailbox` (other
 * threads wake the device through it),
 * listening on listen_fd when >= 0 (an inherited socket, taken on success
 * only), else on a new socket bound at socket_path. On failure return -errno and set *error to a
 * malloc()ed sentence for the operator (NULL when out of memory).
 */
struct mailbox;
int device_new(sd_event *event, struct mailbox *mailbox, const struct plugin_type *type,
               const char *id, const char *config_json, const char *socket_path, int listen_fd,
               struct device **ret, char **error);
void device_free(struct device *d);
DEFINE_FREEP(struct device, device_free)

/* Any thread: what the device last published. */
bool device_connected(const struct device *d);
enum device_state device_get_state(const struct device *d);
const char *device_state_to_string(enum device_state state);
/* Any thread: pid and uid of the connected VMM as the socket tells;
 * -ENOTCONN when none. */
int device_get_client(const struct device *d, pid_t *pid, uid_t *uid);
/* Any thread: the Migration phase (enum device_migration_phase). */
int device_get_migration(const struct device *d);
/* Any thread: all the device published, as one consistent picture. */
struct device_published {
    bool connected;
    pid_t pid;
    uid_t uid;
    int migration; /* enum device_migration_phase */
};
void device_get_published(const struct device *d, struct device_published *ret);
/* Called on the device's thread whenever state, client or migration changes (the
 * manager forwards to the main loop, and so to D-Bus). */
void device_set_change_callback(struct device *d, void (*changed)(void *userdata, struct device *d),
                                void *userdata);
/* device_reset() (operator request) is in device-reset.h. */

/* What a client's REGION_READ/REGION_WRITE does (config space, MSI-X, the
 * plugin's BARs), for the device's thread: saving and loading state, tests. */
int device_region_access(struct device *d, uint32_t index, uint64_t offset, void *buf,
                         uint32_t count, bool is_write);

/* Used by host.c to serve the plugin. */
int device_irq_raise(struct device *d, uint32_t vector);
int device_irq_lower(struct device *d);
/* enum muserd_irq_mode: what the guest enabled (MUSERD_IRQ_NONE before the
 * PCI model exists). */
int device_irq_mode(struct device *d);
int device_dma_translate(struct device *d, uint64_t iova, uint64_t len, uint32_t prot, void **ptr);
/* Any thread (ABI 2 dma_get/dma_put/dma_mark_dirty). */
int device_dma_get(struct device *d, struct muserd_dma_ref *ref);
void device_dma_put(struct device *d, struct muserd_dma_ref *ref, bool written);
void device_dma_mark_dirty(struct device *d, uint64_t iova, uint64_t len);
int device_dma_rw(struct device *d, uint64_t iova, void *buf, size_t len, bool is_write,
                  muserd_dma_done_fn done, void *opaque);
