/* SPDX-License-Identifier: MIT */
/*
 * vfio-user server lifecycle: listening socket, one client at a time, the
 * command dispatcher, and the commands that touch connection state (VERSION,
 * DMA_MAP/UNMAP, IRQs, reset).
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/log.h"
#include "vfu/server-internal.h"

static const struct vfu_server_caps server_caps = {
    .max_msg_fds = VFU_SERVER_MAX_MSG_FDS,
    .max_data_xfer_size = VFU_SERVER_MAX_DATA_XFER,
    .max_dma_maps = VFU_DEFAULT_MAX_DMA_MAPS,
    .pgsizes = VFU_DEFAULT_PGSIZES,
};

int vfu_reply(struct vfu_server *s, const struct vfu_msg *msg, const struct iovec *iov, size_t n,
              const int *fds, size_t nr_fds)
{
    struct iovec v[8];
    size_t len = sizeof(struct vfu_header);

    if (msg->hdr.flags & VFU_FLAG_NO_REPLY)
        return 0;
    if (n + 1 > ELEMENTSOF(v))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        v[i + 1] = iov[i];
        len += iov[i].iov_len;
    }
    struct vfu_header hdr = {
        .msg_id = msg->hdr.msg_id,
        .command = msg->hdr.command,
        .msg_size = (uint32_t)len,
        .flags = VFU_FLAG_TYPE_REPLY,
    };
    v[0] = (struct iovec){&hdr, sizeof(hdr)};
    return vfu_conn_sendv(s->conn, v, n + 1, fds, nr_fds);
}

int vfu_reply_error(struct vfu_server *s, const struct vfu_msg *msg, int error)
{
    if (msg->hdr.flags & VFU_FLAG_NO_REPLY)
        return 0;
    struct vfu_header hdr = {
        .msg_id = msg->hdr.msg_id,
        .command = msg->hdr.command,
        .msg_size = sizeof(hdr),
        .flags = VFU_FLAG_TYPE_REPLY | VFU_FLAG_ERROR,
        .error = (uint32_t)(error < 0 ? -error : error),
    };
    struct iovec v = {&hdr, sizeof(hdr)};
    return vfu_conn_sendv(s->conn, &v, 1, NULL, 0);
}

static int handle_version(struct vfu_server *s, struct vfu_msg *msg)
{
    struct vfu_version_req req;
    _cleanup_free_ char *json = NULL;
    const char *why = NULL;
    int r;

    if (s->negotiated)
        return log_debug_errno(-EINVAL, "Client sent VERSION twice.");
    r = vfu_decode_version(msg, &req);
    if (r < 0)
        return r;
    struct vfu_server_caps offer = server_caps;
    offer.migration = s->layout.migration_flags != 0;
    r = vfu_negotiate(&req, &offer, &s->caps, &json, &why);
    if (r < 0)
        return log_debug_errno(r, "Refusing client's VERSION: %s", why ? why : "invalid");
    vfu_dma_set_max_maps(s->dma, s->caps.max_dma_maps);
    s->negotiated = true;

    struct vfu_version v = {.major = VFU_VERSION_MAJOR, .minor = s->caps.minor};
    struct iovec iov[2] = {{&v, sizeof(v)}, {json, strlen(json) + 1}};
    return vfu_reply(s, msg, iov, 2, NULL, 0);
}

static void notify_unmap(void *opaque, uint64_t iova, uint64_t size)
{
    struct vfu_server *s = opaque;
    if (s->ops->dma_unmap)
        s->ops->dma_unmap(s->opaque, iova, size);
}

static int handle_dma_map(struct vfu_server *s, struct vfu_msg *msg)
{
    struct vfu_dma_map req;
    int r = vfu_decode_dma_map(msg, &req);
    if (r < 0)
        return r;
    int fd = msg->nr_fds == 1 ? msg->fds[0] : -1;
    r = vfu_dma_map(s->dma, &req, fd);
    if (r < 0)
        return r;
    if (fd >= 0)
        msg->fds[0] = -1; /* the table owns it now */
    return vfu_reply(s, msg, NULL, 0, NULL, 0);
}

/* The spec: the reply carries the original DMA entry of the request. */
static int reply_unmap(struct vfu_server *s, const struct vfu_msg *msg,
                       const struct vfu_dma_unmap *req)
{
    struct iovec iov = {(void *)req, sizeof(*req)};
    return vfu_reply(s, msg, &iov, 1, NULL, 0);
}

/* Answer the DMA_UNMAPs whose regions nobody holds any more, in order. */
static void complete_unmaps(struct vfu_server *s)
{
    /* Memory a former client's unmaps left held does not hold this one's. */
    uint64_t oldest_held = vfu_dma_reap(s->dma, s->unmap_floor);
    struct deferred_unmap **p = &s->unmaps;

    while (*p) {
        struct deferred_unmap *u = *p;
        if (u->seq >= oldest_held) {
            p = &u->next;
            continue;
        }
        *p = u->next;
        struct vfu_msg msg = {.hdr = u->hdr};
        if (s->conn)
            (void)reply_unmap(s, &msg, &u->req);
        free(u);
    }
}

void vfu_server_dma_released(struct vfu_server *s)
{
    complete_unmaps(s);
}

static void drop_unmaps(struct vfu_server *s)
{
    while (s->unmaps) {
        struct deferred_unmap *u = s->unmaps;
        s->unmaps = u->next;
        free(u);
    }
}

static int handle_dma_unmap(struct vfu_server *s, struct vfu_msg *msg)
{
    struct vfu_dma_unmap req;
    int r = vfu_decode_dma_unmap(msg, &req);
    if (r < 0)
        return r;
    if (req.flags & VFIO_DMA_UNMAP_FLAG_ALL)
        r = vfu_dma_unmap_all(s->dma, notify_unmap, s);
    else
        r = vfu_dma_unmap(s->dma, req.address, req.size, notify_unmap, s);
    if (r < 0)
        return r;
    if (r != VFU_DMA_HELD && !s->unmaps)
        return reply_unmap(s, msg, &req);

    /* A plugin thread still holds guest memory in the range: the spec has
     * DMA in flight end before the reply. Later unmaps queue behind. */
    struct deferred_unmap *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM; /* the range is unmapped all the same */
    *u = (struct deferred_unmap){.hdr = msg->hdr, .req = req, .seq = vfu_dma_unmap_seq(s->dma)};
    struct deferred_unmap **tail = &s->unmaps;
    while (*tail)
        tail = &(*tail)->next;
    *tail = u;
    complete_unmaps(s); /* the user may have let go meanwhile */
    return 0;
}

static int handle_irq_info(struct vfu_server *s, struct vfu_msg *msg)
{
    struct vfu_irq_info req;
    int r = vfu_decode_irq_info(msg, &req);
    if (r < 0)
        return r;
    if (req.index >= VFIO_PCI_NUM_IRQS)
        return -EINVAL;
    struct vfu_irq_info info = {
        .argsz = sizeof(info),
        .flags = vfu_irqs_info_flags(s->irqs, req.index),
        .index = req.index,
        .count = vfu_irqs_count(s->irqs, req.index),
    };
    struct iovec iov = {&info, sizeof(info)};
    return vfu_reply(s, msg, &iov, 1, NULL, 0);
}

static int on_intx_unmask(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
    struct vfu_server *s = userdata;
    uint64_t n;

    /* Drain, then unmask: a level still asserted fires again at once. */
    ssize_t got = read(fd, &n, sizeof(n));
    if (got < 0 && errno == EAGAIN)
        return 0;
    if (got != sizeof(n)) {
        /* Not an eventfd after all (a pipe at end of file, a hung-up fd):
         * stop watching it rather than spin on it. */
        log_debug("The INTx unmask fd is unusable; no longer watching it.");
        return sd_event_source_set_enabled(source, SD_EVENT_OFF);
    }
    (void)vfu_irqs_unmask(s->irqs, VFIO_PCI_INTX_IRQ_INDEX, 0);
    return 0;
}

/* Follow the INTx unmask eventfd the client set (or removed). */
static int watch_intx_unmask(struct vfu_server *s)
{
    s->intx_unmask_source = sd_event_source_disable_unref(s->intx_unmask_source);
    if (vfu_irqs_count(s->irqs, VFIO_PCI_INTX_IRQ_INDEX) == 0)
        return 0;
    int fd = vfu_irqs_action_fd(s->irqs, VFIO_PCI_INTX_IRQ_INDEX, 0, VFIO_IRQ_SET_ACTION_UNMASK);
    if (fd < 0)
        return 0;
    return sd_event_add_io(s->event, &s->intx_unmask_source, fd, EPOLLIN, on_intx_unmask, s);
}

static int handle_set_irqs(struct vfu_server *s, struct vfu_msg *msg)
{
    struct vfu_irq_set_req req;
    int r = vfu_decode_irq_set(msg, &req);
    if (r < 0)
        return r;
    bool intx = req.set.index == VFIO_PCI_INTX_IRQ_INDEX;
    /* Stop watching the unmask fd before vfu_irqs_set() may close it: the
     * client holds the same file, so epoll would keep an entry for it that
     * no close removes, pointing at a freed source. */
    if (intx)
        s->intx_unmask_source = sd_event_source_disable_unref(s->intx_unmask_source);
    r = vfu_irqs_set(s->irqs, &req, msg);
    if (intx) {
        int k = watch_intx_unmask(s);
        r = r < 0 ? r : k;
    }
    if (r < 0)
        return r;
    return vfu_reply(s, msg, NULL, 0, NULL, 0);
}

static int handle_reset(struct vfu_server *s, struct vfu_msg *msg)
{
    if (msg->payload_len != 0)
        return -EINVAL;
    if (s->reset_pending)
        return -EBUSY; /* a reset is still waiting for the device to quiesce */
    if (s->ops->reset) {
        int r = s->ops->reset(s->opaque);
        if (r < 0)
            return r;
        if (r == VFU_RESET_LATER) {
            s->reset_pending = true;
            s->reset_hdr = msg->hdr;
            return 0;
        }
    }
    return vfu_reply(s, msg, NULL, 0, NULL, 0);
}

void vfu_server_reset_done(struct vfu_server *s, int status)
{
    if (!s->reset_pending)
        return;
    s->reset_pending = false;
    if (!s->conn)
        return;
    struct vfu_msg msg = {.hdr = s->reset_hdr};
    if (status < 0)
        (void)vfu_reply_error(s, &msg, status);
    else
        (void)vfu_reply(s, &msg, NULL, 0, NULL, 0);
}

static int dispatch_command(struct vfu_server *s, struct vfu_msg *msg)
{
    uint16_t cmd = msg->hdr.command;

    if (!s->negotiated && cmd != VFU_CMD_VERSION)
        return log_debug_errno(-EINVAL, "Client sent %s before VERSION.", vfu_command_name(cmd));
    switch (cmd) {
    case VFU_CMD_VERSION:
        return handle_version(s, msg);
    case VFU_CMD_DMA_MAP:
        return handle_dma_map(s, msg);
    case VFU_CMD_DMA_UNMAP:
        return handle_dma_unmap(s, msg);
    case VFU_CMD_DEVICE_GET_INFO:
        return vfu_handle_device_info(s, msg);
    case VFU_CMD_DEVICE_GET_REGION_INFO:
        return vfu_handle_region_info(s, msg);
    case VFU_CMD_DEVICE_GET_REGION_IO_FDS:
        return vfu_handle_region_io_fds(s, msg);
    case VFU_CMD_DEVICE_GET_IRQ_INFO:
        return handle_irq_info(s, msg);
    case VFU_CMD_DEVICE_SET_IRQS:
        return handle_set_irqs(s, msg);
    case VFU_CMD_REGION_READ:
        return vfu_handle_region_read(s, msg);
    case VFU_CMD_REGION_WRITE:
        return vfu_handle_region_write(s, msg);
    case VFU_CMD_REGION_WRITE_MULTI:
        return vfu_handle_write_multi(s, msg);
    case VFU_CMD_DEVICE_RESET:
        return handle_reset(s, msg);
    case VFU_CMD_DEVICE_FEATURE:
        return vfu_handle_device_feature(s, msg);
    case VFU_CMD_MIG_DATA_READ:
        return vfu_handle_mig_data_read(s, msg);
    case VFU_CMD_MIG_DATA_WRITE:
        return vfu_handle_mig_data_write(s, msg);
    case VFU_CMD_DMA_READ:
    case VFU_CMD_DMA_WRITE:
        return -EINVAL; /* server -> client only */
    default:
        /* DIRTY_PAGES (migration v1, withdrawn) and anything unknown. */
        return -ENOTSUP;
    }
}

static void on_message(void *opaque, struct vfu_msg *msg)
{
    struct vfu_server *s = opaque;

    if ((msg->hdr.flags & VFU_FLAG_TYPE_MASK) == VFU_FLAG_TYPE_REPLY) {
        vfu_remote_on_reply(s, msg);
        return;
    }
    int r = dispatch_command(s, msg);
    if (r < 0)
        (void)vfu_reply_error(s, msg, r);
    /* Checked per message: a fault from a timer callback is noticed here too. */
    if (s->conn && vfu_dma_take_fault(s->dma)) {
        log_warning("Client shrank a file it shared for DMA; the device read zeros. "
                    "Dropping the client.");
        vfu_conn_close(s->conn, -EFAULT);
    }
}

static void teardown_client(struct vfu_server *s)
{
    /* What plugin threads still hold stays mapped until they put it. */
    (void)vfu_dma_unmap_all(s->dma, notify_unmap, s);
    s->unmap_floor = vfu_dma_unmap_seq(s->dma);
    drop_unmaps(s);
    /* Logging was this client's; the next one starts its own. */
    vfu_dma_logging_stop(s->dma);
    s->reset_pending = false; /* the device still finishes it; nobody to tell */
    vfu_mig_client_gone(s);
    /* After the table is gone, so a callback that retries fails at once. */
    vfu_remote_cancel_all(s);
    s->intx_unmask_source = sd_event_source_disable_unref(s->intx_unmask_source);
    vfu_irqs_reset(s->irqs);
    vfu_conn_free(s->conn);
    s->conn = NULL;
    s->negotiated = false;
    if (s->ops->client_changed)
        s->ops->client_changed(s->opaque, false);
}

static void on_closed(void *opaque, int error)
{
    struct vfu_server *s = opaque;

    if (error < 0 && error != -ECONNRESET)
        log_info_errno(error, "Dropping vfio-user client: %m");
    teardown_client(s);
}

static const struct vfu_conn_ops conn_ops = {
    .message = on_message,
    .closed = on_closed,
};

static int on_accept(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
    struct vfu_server *s = userdata;
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (cfd < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            log_warning_errno(-errno, "Failed to accept a vfio-user client: %m");
        return 0;
    }
    if (s->conn && vfu_conn_peer_gone(s->conn)) {
        /* A VMM that reconnects at once must not find its own old
         * connection in the way because the loop has not seen it end yet. */
        teardown_client(s);
    }
    if (s->conn) {
        /* The protocol has one client per device socket. */
        log_info("Refusing a second vfio-user client while one is connected.");
        safe_close(cfd);
        return 0;
    }
    int r = vfu_conn_new(s->event, cfd, VFU_MAX_MSG_SIZE, &conn_ops, s, &s->conn);
    if (r < 0) {
        safe_close(cfd);
        log_error_errno(r, "Failed to set up a vfio-user client: %m");
        return 0;
    }
    if (s->ops->client_changed)
        s->ops->client_changed(s->opaque, true);
    return 0;
}

int vfu_server_client(const struct vfu_server *s, pid_t *pid, uid_t *uid)
{
    if (!s->conn)
        return -ENOTCONN;
    return vfu_conn_peer(s->conn, pid, uid);
}

void vfu_server_disconnect(struct vfu_server *s)
{
    if (s->conn)
        teardown_client(s);
}

void vfu_server_hold(struct vfu_server *s, bool held)
{
    /* Unread, a connection waits in the listen backlog: the client's
     * connect() succeeds and its VERSION waits for the release. */
    (void)sd_event_source_set_enabled(s->listen_source, held ? SD_EVENT_OFF : SD_EVENT_ON);
}

int vfu_server_irq_trigger(struct vfu_server *s, uint32_t index, uint32_t sub)
{
    return vfu_irqs_trigger(s->irqs, index, sub);
}

int vfu_server_irq_withdraw(struct vfu_server *s, uint32_t index, uint32_t sub)
{
    return vfu_irqs_withdraw(s->irqs, index, sub);
}

int vfu_server_dma_translate(struct vfu_server *s, uint64_t iova, uint64_t len, uint32_t prot,
                             void **ptr)
{
    return vfu_dma_translate(s->dma, iova, len, prot, ptr);
}

int vfu_server_new(sd_event *event, int listen_fd, const struct vfu_device_layout *layout,
                   struct vfu_dma *dma, const struct vfu_device_ops *ops, void *opaque,
                   struct vfu_server **ret)
{
    _cleanup_(vfu_server_freep) struct vfu_server *s = NULL;
    int r;

    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->event = event;
    s->listen_fd = -1;
    s->layout = *layout;
    s->ops = ops;
    s->opaque = opaque;
    s->dma = dma;
    s->mig_state = VFU_MIG_RUNNING;
    r = vfu_irqs_new(layout->irq_counts, &s->irqs);
    if (r < 0)
        return r;
    r = sd_event_add_io(event, &s->listen_source, listen_fd, EPOLLIN, on_accept, s);
    if (r < 0)
        return r;
    s->listen_fd = listen_fd;
    *ret = TAKE_PTR(s);
    return 0;
}

void vfu_server_free(struct vfu_server *s)
{
    if (!s)
        return;
    vfu_server_disconnect(s);
    vfu_mig_server_gone(s);
    sd_event_source_disable_unref(s->listen_source);
    safe_close(s->listen_fd);
    vfu_irqs_free(s->irqs);
    free(s);
}
