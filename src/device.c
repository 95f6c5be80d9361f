/* SPDX-License-Identifier: MIT */
#include "device.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "device-config.h"
#include "device-migration.h"
#include "device-reset.h"
#include "device-wake.h"
#include "irq-routes.h"
#include "pci/pci.h"
#include "socket-access.h"
#include "util/log.h"
#include "util/socket-util.h"
#include "vfu/dma.h"
#include "vfu/server.h"

static int set_error(char **error, const char *fmt, ...) _printf_(2, 3);
static int set_error(char **error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(error, fmt, ap) < 0)
        *error = NULL;
    va_end(ap);
    return -EINVAL;
}

/* ---- routing from vfio-user to the device model ----------------------------- */

static int config_access(struct device *d, uint64_t offset, uint8_t *buf, uint32_t count,
                         bool is_write)
{
    if (!is_write)
        return pci_config_access(d->pci, offset, buf, count, false);
    /* Config writes are register-sized; split a longer one like a CPU would. */
    while (count > 0) {
        uint32_t len = count >= 4 && offset % 4 == 0 ? 4 : count >= 2 && offset % 2 == 0 ? 2 : 1;
        int r = pci_config_access(d->pci, offset, buf, len, true);
        if (r < 0)
            return r;
        offset += len;
        buf += len;
        count -= len;
    }
    return 0;
}

/* After every change to config space or the MSI-X table: raises from other
 * threads see it before the client hears the change is done. */
static void publish_irq_routes(struct device *d)
{
    if (irq_routes_publish(d->routes, pci_nr_vectors(d->pci)) < 0)
        log_warning("%s: out of memory for interrupt routes; raises take the slow path.", d->id);
}

static int on_region_access(void *opaque, uint32_t index, uint64_t offset, void *buf,
                            uint32_t count, bool is_write)
{
    struct device *d = opaque;
    const struct muserd_device_ops *ops = d->type->type->ops;

    if (index == VFIO_PCI_CONFIG_REGION_INDEX) {
        int r = config_access(d, offset, buf, count, is_write);
        if (is_write)
            publish_irq_routes(d);
        return r;
    }
    if (index > VFIO_PCI_BAR5_REGION_INDEX)
        return -EINVAL;
    if (pci_msix_claims(d->pci, index, offset, count)) {
        int r = pci_msix_access(d->pci, index, offset, buf, count, is_write);
        if (is_write)
            publish_irq_routes(d);
        return r;
    }
    if (PLUGIN_OP(ops, bar_access))
        return ops->bar_access(d->plugin_dev, index, offset, buf, count, is_write);
    if (!is_write)
        memset(buf, 0, count);
    return 0;
}

static void on_dma_unmap(void *opaque, uint64_t iova, uint64_t size)
{
    struct device *d = opaque;
    const struct muserd_device_ops *ops = d->type->type->ops;

    if (PLUGIN_OP(ops, dma_unmap))
        ops->dma_unmap(d->plugin_dev, iova, size);
}

static void publish(struct device *d, bool connected, pid_t pid, uid_t uid)
{
    pthread_mutex_lock(&d->published_lock);
    d->published_connected = connected;
    d->published_pid = pid;
    d->published_uid = uid;
    pthread_mutex_unlock(&d->published_lock);
}

static void on_client_changed(void *opaque, bool connected)
{
    struct device *d = opaque;
    d->client_generation++;
    pid_t pid = 0;
    uid_t uid = 0;

    if (connected && vfu_server_client(d->server, &pid, &uid) >= 0)
        log_info("%s: client connected (pid %d, uid %u).", d->id, (int)pid, (unsigned)uid);
    else
        log_info("%s: client %s.", d->id, connected ? "connected" : "disconnected");
    publish(d, connected, pid, uid);
    if (d->changed)
        d->changed(d->changed_userdata, d);
}

static const struct vfu_device_ops vfu_ops = {
    .region_access = on_region_access,
    .reset = device_reset_for_client,
    .dma_unmap = on_dma_unmap,
    .client_changed = on_client_changed,
    .mig_arc = device_migration_arc,
    .mig_read = device_migration_read,
    .mig_write = device_migration_write,
    .mig_abort = device_migration_abort,
};

static void on_pci_fire(void *opaque, uint32_t index, uint32_t vector)
{
    struct device *d = opaque;
    if (!d->server)
        return; /* raised while the device is still being built */
    int r = vfu_server_irq_trigger(d->server, index, vector);
    if (r < 0)
        log_debug_errno(r, "%s: failed to deliver interrupt %u/%u: %m", d->id, index, vector);
}

static int route_fire(void *opaque, uint32_t index, uint32_t vector)
{
    struct device *d = opaque;
    return vfu_server_irq_trigger(d->server, index, vector);
}

static int route_raise(void *opaque, uint32_t vector)
{
    struct device *d = opaque;
    return pci_raise(d->pci, vector);
}

static int route_of(void *opaque, uint32_t vector)
{
    struct device *d = opaque;
    return pci_direct_route(d->pci, vector);
}

static void route_wake(void *opaque)
{
    struct device *d = opaque;
    device_waker_wake(d->waker, DEVICE_WAKE_IRQ);
}

static const struct irq_routes_ops route_ops = {
    .fire = route_fire,
    .raise = route_raise,
    .route = route_of,
    .wake = route_wake,
};

static void dma_released(void *opaque)
{
    struct device *d = opaque;
    device_waker_wake(d->waker, DEVICE_WAKE_DMA);
}

/* On the device's thread: what other threads asked for meanwhile. */
static void on_wake(void *opaque, unsigned causes)
{
    struct device *d = opaque;
    if (causes & DEVICE_WAKE_IRQ)
        irq_routes_run_posted(d->routes);
    if (causes & DEVICE_WAKE_DMA) {
        if (d->server)
            vfu_server_dma_released(d->server);
        else
            (void)vfu_dma_reap(d->dma, 0);
    }
    if (causes & DEVICE_WAKE_QUIESCED) {
        device_migration_quiesced(d);
        device_reset_quiesced(d);
    }
}

int device_region_access(struct device *d, uint32_t index, uint64_t offset, void *buf,
                         uint32_t count, bool is_write)
{
    return on_region_access(d, index, offset, buf, count, is_write);
}

/* ---- services for host.c ----------------------------------------------------------- */

/* A plugin may call services from create() (before the PCI model and the
 * server exist) or from destroy() (after the server is gone): there is no
 * guest to interrupt and no guest memory then. */
static bool device_live(const struct device *d)
{
    return d->pci && d->server;
}

int device_irq_raise(struct device *d, uint32_t vector)
{
    return irq_routes_raise(d->routes, vector);
}

int device_irq_lower(struct device *d)
{
    if (!device_live(d))
        return -ENOTCONN;
    pci_lower_intx(d->pci);
    /* INTx is a level: one raised while the client had it masked and
     * lowered since must not fire at the unmask (a guest whose handler
     * finds nothing to do would see a storm of them). */
    (void)vfu_server_irq_withdraw(d->server, VFIO_PCI_INTX_IRQ_INDEX, 0);
    return 0;
}

int device_irq_mode(struct device *d)
{
    if (!device_live(d))
        return MUSERD_IRQ_NONE;
    switch (pci_irq_mode(d->pci)) {
    case PCI_IRQ_MSIX:
        return MUSERD_IRQ_MSIX;
    case PCI_IRQ_MSI:
        return MUSERD_IRQ_MSI;
    case PCI_IRQ_INTX:
        return MUSERD_IRQ_INTX;
    default:
        return MUSERD_IRQ_NONE;
    }
}

int device_dma_translate(struct device *d, uint64_t iova, uint64_t len, uint32_t prot, void **ptr)
{
    if (!device_live(d))
        return -ENOTCONN;
    return vfu_server_dma_translate(d->server, iova, len, prot, ptr);
}

int device_dma_get(struct device *d, struct muserd_dma_ref *ref)
{
    uint32_t prot = 0;
    if (ref->prot & MUSERD_DMA_READ)
        prot |= VFU_DMA_FLAG_READ;
    if (ref->prot & MUSERD_DMA_WRITE)
        prot |= VFU_DMA_FLAG_WRITE;
    if (prot == 0 || (ref->prot & ~(MUSERD_DMA_READ | MUSERD_DMA_WRITE)))
        return -EINVAL;
    struct vfu_dma_region *region = NULL;
    int r = vfu_dma_get(d->dma, ref->iova, ref->len, prot, &ref->ptr, &region);
    if (r < 0)
        return r;
    ref->host_private = region;
    return 0;
}

void device_dma_put(struct device *d, struct muserd_dma_ref *ref, bool written)
{
    if (!ref->host_private)
        return;
    vfu_dma_put(d->dma, ref->host_private, ref->iova, ref->len, written);
    ref->host_private = NULL;
    ref->ptr = NULL;
}

void device_dma_mark_dirty(struct device *d, uint64_t iova, uint64_t len)
{
    vfu_dma_mark_dirty(d->dma, iova, len);
}

int device_dma_rw(struct device *d, uint64_t iova, void *buf, size_t len, bool is_write,
                  muserd_dma_done_fn done, void *opaque)
{
    if (!device_live(d))
        return -ENOTCONN;
    return vfu_server_dma_rw(d->server, iova, buf, len, is_write, done, opaque);
}

/* Reading takes the lock too; it is no change to the device. */
static pthread_mutex_t *published_lock(const struct device *d)
{
    return (pthread_mutex_t *)&d->published_lock;
}

bool device_connected(const struct device *d)
{
    pthread_mutex_lock(published_lock(d));
    bool connected = d->published_connected;
    pthread_mutex_unlock(published_lock(d));
    return connected;
}

enum device_state device_get_state(const struct device *d)
{
    return device_connected(d) ? DEVICE_CONNECTED : DEVICE_LISTENING;
}

const char *device_state_to_string(enum device_state state)
{
    return state == DEVICE_CONNECTED ? "connected" : "listening";
}

void device_get_published(const struct device *d, struct device_published *ret)
{
    pthread_mutex_lock(published_lock(d));
    *ret = (struct device_published){
        .connected = d->published_connected,
        .pid = d->published_pid,
        .uid = d->published_uid,
        .migration = d->published_migration,
    };
    pthread_mutex_unlock(published_lock(d));
}

int device_get_migration(const struct device *d)
{
    pthread_mutex_lock(published_lock(d));
    int phase = d->published_migration;
    pthread_mutex_unlock(published_lock(d));
    return phase;
}

int device_get_client(const struct device *d, pid_t *pid, uid_t *uid)
{
    pthread_mutex_lock(published_lock(d));
    bool connected = d->published_connected;
    *pid = d->published_pid;
    *uid = d->published_uid;
    pthread_mutex_unlock(published_lock(d));
    return connected ? 0 : -ENOTCONN;
}

void device_set_change_callback(struct device *d, void (*changed)(void *userdata, struct device *d),
                                void *userdata)
{
    d->changed = changed;
    d->changed_userdata = userdata;
}

/* ---- building the device ---------------------------------------------------------- */

static void build_layout(const struct device *d, struct vfu_device_layout *l)
{
    *l = d->desc.layout; /* the BARs and ioeventfds; fds stay the device's */
    l->regions[VFIO_PCI_CONFIG_REGION_INDEX] = (struct vfu_region_desc){
        .size = pci_config_size(d->pci),
        .flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
        .fd = -1,
    };
    pci_irq_counts(d->pci, l->irq_counts);
    if (device_migration_supported(d))
        l->migration_flags = VFU_MIGRATION_STOP_COPY | VFU_MIGRATION_PRE_COPY;
}

/* ABI 1 plugins fill a descriptor with fixed arrays; ABI 2 plugins fill a
 * sized one and add BARs and ioeventfds through the services. */
static int call_create(struct device *d, const char **why)
{
    const struct muserd_device_type *t = d->type->type;

    if (d->type->plugin->abi_version < 2) {
        struct abi1_device_desc old = {0};
        for (size_t i = 0; i < ELEMENTSOF(old.bars); i++)
            old.bars[i].fd = -1;
        for (size_t i = 0; i < ELEMENTSOF(old.ioeventfds); i++)
            old.ioeventfds[i].fd = -1;
        int r =
            t->create(&d->host, &host_services, (struct muserd_device_desc *)&old, &d->plugin_dev);
        if (r < 0) {
            d->plugin_dev = NULL;
            return r;
        }
        return device_desc_from_abi1(&d->desc, &old, why) < 0 ? -EINVAL : 0;
    }
    struct muserd_device_desc desc = {.size = sizeof(desc)};
    d->host.building = &d->desc;
    int r = t->create(&d->host, &host_services, &desc, &d->plugin_dev);
    d->host.building = NULL;
    if (r < 0) {
        d->plugin_dev = NULL;
        return r;
    }
    d->desc.pci.ids = desc.ids;
    d->desc.pci.caps = desc.caps;
    return 0;
}

static int create_plugin_device(struct device *d, char **error)
{
    const struct muserd_device_type *t = d->type->type;
    const char *why = NULL;

    int r = call_create(d, &why);
    if (r < 0 && !d->plugin_dev) {
        if (d->host.error)
            *error = TAKE_PTR(d->host.error);
        else
            set_error(error, "The %s plugin could not create the device: %s.", t->name,
                      strerror(-r));
        return r;
    }
    if (r < 0 || d->host.desc_error)
        return set_error(error, "The %s plugin describes a device muserd cannot emulate: %s.",
                         t->name,
                         why                  ? why
                         : d->host.desc_error ? d->host.desc_error
                                              : strerror(-r));
    return 0;
}

int device_new(sd_event *event, struct mailbox *mailbox, const struct plugin_type *type,
               const char *id, const char *config_json, const char *socket_path, int listen_fd,
               struct device **ret, char **error)
{
    _cleanup_(device_freep) struct device *d = NULL;
    _cleanup_close_ int own_fd = -1; /* a socket we bind here */
    int fd = listen_fd;
    const char *why = NULL;
    int r;

    *error = NULL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    pthread_mutex_init(&d->published_lock, NULL);
    device_desc_init(&d->desc);
    d->type = type;
    d->id = strdup(id);
    d->socket_path = strdup(socket_path);
    if (!d->id || !d->socket_path)
        return -ENOMEM;
    r = device_config_parse(config_json, type->type->config_keys, &d->config, error);
    if (r < 0)
        return r;
    /* Printing a json-c object writes into it: D-Bus gets its own text. */
    const char *text =
        d->config ? json_object_to_json_string_ext(d->config, JSON_C_TO_STRING_PLAIN) : "{}";
    d->config_text = strdup(text ? text : "{}");
    if (!d->config_text)
        return -ENOMEM;
    host_init(&d->host, d, event, d->id, d->config);
    r = device_waker_new(mailbox, on_wake, d, &d->waker);
    if (r < 0)
        return r;
    r = irq_routes_new(&route_ops, d, &d->routes);
    if (r < 0)
        return r;
    r = device_reset_setup(d);
    if (r < 0)
        return r;
    bool incoming = false;
    (void)device_config_bool(d->config, "incoming", &incoming);
    r = device_migration_setup(d, incoming);
    if (r < 0)
        return r;
    if (incoming && !device_migration_supported(d))
        return set_error(error,
                         "Device type '%s' cannot migrate (its plugin saves no state), so it "
                         "cannot be created \"incoming\".",
                         type->type->name);
    /* Before create(): the plugin's threads may ask for guest memory (and
     * find none) from the start. The client's caps set its limit later. */
    r = vfu_dma_new(VFU_DEFAULT_MAX_DMA_MAPS, &d->dma);
    if (r < 0)
        return r;
    vfu_dma_set_released(d->dma, dma_released, d);

    r = create_plugin_device(d, error);
    if (r < 0)
        return r;
    r = pci_dev_new(&d->desc.pci, on_pci_fire, d, &d->pci, &why);
    if (r < 0)
        return set_error(error, "The %s plugin describes a device muserd cannot emulate: %s",
                         type->type->name, why ? why : strerror(-r));

    if (fd >= 0) {
        /* An inherited socket: report where it really is. */
        _cleanup_free_ char *bound = NULL;
        if (socket_get_path(fd, &bound) >= 0) {
            free(d->socket_path);
            d->socket_path = TAKE_PTR(bound);
        }
        if (socket_access_requested(d->config))
            log_warning("%s: ignoring socket_owner/socket_group/socket_mode: the socket "
                        "comes from systemd, set SocketUser=/SocketGroup=/SocketMode= there.",
                        id);
    } else {
        r = socket_listen_unix(socket_path, &own_fd);
        if (r < 0) {
            set_error(error, "Cannot listen on %s: %s.", socket_path, strerror(-r));
            return r;
        }
        d->owns_socket_file = true;
        fd = own_fd;
        r = socket_access_apply(socket_path, d->config, error);
        if (r < 0)
            return r;
    }
    struct vfu_device_layout layout;
    build_layout(d, &layout);
    r = vfu_server_new(event, fd, &layout, d->dma, &vfu_ops, d, &d->server);
    if (r < 0)
        return r;
    own_fd = -1; /* the server has it */
    if (incoming)
        vfu_server_hold(d->server, true); /* no client until Incoming loaded it */
    publish_irq_routes(d);                /* raises work from here on */
    *ret = TAKE_PTR(d);
    return 0;
}

void device_free(struct device *d)
{
    if (!d)
        return;
    /* The client goes first: its DMA unmaps reach the plugin while it exists.
     * Nobody listens for changes of a device being freed. */
    d->changed = NULL;
    if (d->routes)
        irq_routes_close(d->routes); /* raises from the plugin's threads stop here */
    device_reset_teardown(d);
    device_migration_teardown(d);
    vfu_server_free(d->server);
    d->server = NULL; /* destroy() below may still call services */
    if (d->plugin_dev && PLUGIN_OP(d->type->type->ops, destroy))
        d->type->type->ops->destroy(d->plugin_dev);
    host_done(&d->host);
    irq_routes_free(d->routes);
    vfu_dma_free(d->dma);        /* the plugin's threads are gone: nobody holds it */
    device_waker_free(d->waker); /* nobody is left to wake it */
    device_reset_free(d);
    device_migration_free(d);
    pci_dev_free(d->pci);
    device_desc_close_fds(&d->desc);
    if (d->owns_socket_file)
        (void)unlink(d->socket_path);
    json_object_put(d->config);
    free(d->config_text);
    free(d->socket_path);
    free(d->id);
    pthread_mutex_destroy(&d->published_lock);
    free(d);
}
