/* SPDX-License-Identifier: MIT */
#include "device.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "device-config.h"
#include "pci/pci.h"
#include "socket-access.h"
#include "util/log.h"
#include "util/socket-util.h"
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

static int on_region_access(void *opaque, uint32_t index, uint64_t offset, void *buf,
                            uint32_t count, bool is_write)
{
    struct device *d = opaque;
    const struct muserd_device_ops *ops = d->type->type->ops;

    if (index == VFIO_PCI_CONFIG_REGION_INDEX)
        return config_access(d, offset, buf, count, is_write);
    if (index > VFIO_PCI_BAR5_REGION_INDEX)
        return -EINVAL;
    if (pci_msix_claims(d->pci, index, offset, count))
        return pci_msix_access(d->pci, index, offset, buf, count, is_write);
    if (PLUGIN_OP(ops, bar_access))
        return ops->bar_access(d->plugin_dev, index, offset, buf, count, is_write);
    if (!is_write)
        memset(buf, 0, count);
    return 0;
}

static int on_reset(void *opaque)
{
    struct device *d = opaque;
    const struct muserd_device_ops *ops = d->type->type->ops;

    pci_dev_reset(d->pci);
    if (PLUGIN_OP(ops, reset))
        return ops->reset(d->plugin_dev);
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
    .reset = on_reset,
    .dma_unmap = on_dma_unmap,
    .client_changed = on_client_changed,
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
    if (!device_live(d))
        return -ENOTCONN;
    return pci_raise(d->pci, vector);
}

int device_irq_lower(struct device *d)
{
    if (!device_live(d))
        return -ENOTCONN;
    pci_lower_intx(d->pci);
    return 0;
}

int device_dma_translate(struct device *d, uint64_t iova, uint64_t len, uint32_t prot, void **ptr)
{
    if (!device_live(d))
        return -ENOTCONN;
    return vfu_server_dma_translate(d->server, iova, len, prot, ptr);
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

int device_reset(struct device *d)
{
    return on_reset(d);
}

/* ---- building the device ---------------------------------------------------------- */

/* Keep our own copies of the plugin's fds: it may close its own. On failure
 * the fds not yet copied are forgotten (-1), never closed: they are the
 * plugin's. */
static int dup_desc_fds(struct muserd_device_desc *desc)
{
    int *fds[ELEMENTSOF(desc->bars) + ELEMENTSOF(desc->ioeventfds)];
    size_t n = 0;
    int r = 0;

    for (size_t i = 0; i < ELEMENTSOF(desc->bars); i++)
        fds[n++] = &desc->bars[i].fd;
    for (size_t i = 0; i < ELEMENTSOF(desc->ioeventfds); i++)
        fds[n++] = &desc->ioeventfds[i].fd;
    for (size_t i = 0; i < n; i++) {
        if (*fds[i] < 0)
            continue;
        *fds[i] = r < 0 ? -1 : fcntl(*fds[i], F_DUPFD_CLOEXEC, 3);
        if (*fds[i] < 0 && r == 0)
            r = -errno;
    }
    return r;
}

static void reset_desc_fds(struct muserd_device_desc *desc)
{
    for (size_t i = 0; i < ELEMENTSOF(desc->bars); i++)
        desc->bars[i].fd = -1;
    for (size_t i = 0; i < ELEMENTSOF(desc->ioeventfds); i++)
        desc->ioeventfds[i].fd = -1;
}

static void close_desc_fds(struct muserd_device_desc *desc)
{
    for (size_t i = 0; i < ELEMENTSOF(desc->bars); i++)
        desc->bars[i].fd = safe_close(desc->bars[i].fd);
    for (size_t i = 0; i < ELEMENTSOF(desc->ioeventfds); i++)
        desc->ioeventfds[i].fd = safe_close(desc->ioeventfds[i].fd);
}

/* Check what pci/ does not: mmap areas inside their BAR, ioeventfds inside theirs. */
static int check_desc(const struct muserd_device_desc *desc, char **error)
{
    for (size_t i = 0; i < ELEMENTSOF(desc->bars); i++) {
        const struct muserd_bar *b = &desc->bars[i];
        if (b->nr_areas > MUSERD_MAX_MMAP_AREAS)
            return set_error(error, "BAR %zu lists %u mmap areas, at most %d are allowed.", i,
                             b->nr_areas, MUSERD_MAX_MMAP_AREAS);
        for (uint32_t a = 0; a < b->nr_areas; a++)
            if (!range_within(b->areas[a].offset, b->areas[a].size, b->size) ||
                b->areas[a].size == 0)
                return set_error(error, "BAR %zu mmap area %u lies outside the BAR.", i, a);
        if (b->nr_areas > 0 && b->fd < 0)
            return set_error(error, "BAR %zu lists mmap areas but no fd to map.", i);
    }
    if (desc->nr_ioeventfds > MUSERD_MAX_IOEVENTFDS)
        return set_error(error, "The device declares %u ioeventfds, at most %d are allowed.",
                         desc->nr_ioeventfds, MUSERD_MAX_IOEVENTFDS);
    for (uint32_t i = 0; i < desc->nr_ioeventfds; i++) {
        const struct muserd_ioeventfd *e = &desc->ioeventfds[i];
        if (e->bar >= ELEMENTSOF(desc->bars) || e->fd < 0 ||
            !range_within(e->offset, e->size ? e->size : 1, desc->bars[e->bar].size))
            return set_error(error, "ioeventfd %u is not inside a BAR of the device.", i);
    }
    return 0;
}

static void build_layout(const struct device *d, struct vfu_device_layout *l)
{
    const struct muserd_device_desc *desc = &d->desc;

    *l = (struct vfu_device_layout){0};
    for (size_t i = 0; i < VFIO_PCI_NUM_REGIONS; i++)
        l->regions[i].fd = -1;
    for (size_t i = 0; i < ELEMENTSOF(desc->bars); i++) {
        const struct muserd_bar *b = &desc->bars[i];
        struct vfu_region_desc *r = &l->regions[i];
        if (b->size == 0)
            continue;
        r->size = b->size;
        r->flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        r->fd = b->fd;
        r->fd_offset = b->fd_offset;
        r->nr_areas = b->nr_areas;
        for (uint32_t a = 0; a < b->nr_areas; a++)
            r->areas[a] = (struct vfu_sparse_mmap_area){b->areas[a].offset, b->areas[a].size};
        if (b->flags & MUSERD_BAR_MEM64)
            i++; /* the next slot is this BAR's upper half */
    }
    l->regions[VFIO_PCI_CONFIG_REGION_INDEX] = (struct vfu_region_desc){
        .size = pci_config_size(d->pci),
        .flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
        .fd = -1,
    };
    pci_irq_counts(d->pci, l->irq_counts);
    for (uint32_t i = 0; i < desc->nr_ioeventfds; i++) {
        const struct muserd_ioeventfd *e = &desc->ioeventfds[i];
        l->io_fds[l->nr_io_fds++] = (struct vfu_io_fd_desc){
            .region = e->bar,
            .offset = e->offset,
            .size = e->size,
            .fd = e->fd,
            .flags = e->has_datamatch ? 1u /* KVM_IOEVENTFD_FLAG_DATAMATCH */ : 0,
            .datamatch = e->datamatch,
        };
    }
}

static int create_plugin_device(struct device *d, char **error)
{
    const struct muserd_device_type *t = d->type->type;

    reset_desc_fds(&d->desc);
    int r = t->create(&d->host, &host_services, &d->desc, &d->plugin_dev);
    if (r < 0) {
        d->plugin_dev = NULL;
        reset_desc_fds(&d->desc);
        if (d->host.error)
            *error = TAKE_PTR(d->host.error);
        else
            set_error(error, "The %s plugin could not create the device: %s.", t->name,
                      strerror(-r));
        return r;
    }
    r = dup_desc_fds(&d->desc);
    if (r < 0)
        return r;
    return check_desc(&d->desc, error);
}

int device_new(sd_event *event, const struct plugin_type *type, const char *id,
               const char *config_json, const char *socket_path, int listen_fd, struct device **ret,
               char **error)
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
    reset_desc_fds(&d->desc);
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

    r = create_plugin_device(d, error);
    if (r < 0)
        return r;
    r = pci_dev_new(&d->desc, on_pci_fire, d, &d->pci, &why);
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
    r = vfu_server_new(event, fd, &layout, &vfu_ops, d, &d->server);
    if (r < 0)
        return r;
    own_fd = -1; /* the server has it */
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
    vfu_server_free(d->server);
    d->server = NULL; /* destroy() below may still call services */
    if (d->plugin_dev && PLUGIN_OP(d->type->type->ops, destroy))
        d->type->type->ops->destroy(d->plugin_dev);
    host_done(&d->host);
    pci_dev_free(d->pci);
    close_desc_fds(&d->desc);
    if (d->owns_socket_file)
        (void)unlink(d->socket_path);
    json_object_put(d->config);
    free(d->config_text);
    free(d->socket_path);
    free(d->id);
    pthread_mutex_destroy(&d->published_lock);
    free(d);
}
