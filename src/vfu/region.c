/* SPDX-License-Identifier: MIT */
/*
 * Device and region commands: GET_INFO, GET_REGION_INFO (with the sparse
 * mmap capability and the region fd), GET_REGION_IO_FDS, and region I/O.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "util/log.h"
#include "vfu/server-internal.h"

int vfu_handle_device_info(struct vfu_server *s, struct vfu_msg *msg)
{
    struct vfu_device_info req;
    int r = vfu_decode_device_info(msg, &req);
    if (r < 0)
        return r;
    struct vfu_device_info info = {
        .argsz = sizeof(info),
        .flags = VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI,
        .num_regions = VFIO_PCI_NUM_REGIONS,
        .num_irqs = VFIO_PCI_NUM_IRQS,
    };
    struct iovec iov = {&info, sizeof(info)};
    return vfu_reply(s, msg, &iov, 1, NULL, 0);
}

int vfu_handle_region_info(struct vfu_server *s, struct vfu_msg *msg)
{
    struct vfu_region_info req;
    int r = vfu_decode_region_info(msg, &req);
    if (r < 0)
        return r;
    if (req.index >= VFIO_PCI_NUM_REGIONS)
        return -EINVAL;

    const struct vfu_region_desc *d = &s->layout.regions[req.index];
    struct {
        struct vfu_region_info info;
        struct vfu_cap_sparse_mmap cap;
        struct vfu_sparse_mmap_area areas[VFU_MAX_SPARSE_AREAS];
    } reply = {0};
    size_t cap_len = 0;

    reply.info.index = req.index;
    reply.info.size = d->size;
    reply.info.flags = d->size ? d->flags : 0;
    if (d->size && d->fd >= 0) {
        reply.info.flags |= VFIO_REGION_INFO_FLAG_MMAP;
        reply.info.offset = d->fd_offset;
        if (d->nr_areas > 0) {
            reply.info.flags |= VFIO_REGION_INFO_FLAG_CAPS;
            reply.info.cap_offset = sizeof(reply.info);
            reply.cap.header.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP;
            reply.cap.header.version = 1;
            reply.cap.nr_areas = d->nr_areas;
            memcpy(reply.areas, d->areas, d->nr_areas * sizeof(d->areas[0]));
            cap_len = sizeof(reply.cap) + d->nr_areas * sizeof(d->areas[0]);
        }
    }
    size_t full = sizeof(reply.info) + cap_len;
    reply.info.argsz = (uint32_t)full;

    /* A client that left too little room gets the fixed part with argsz
     * telling it how much to ask for. The fd comes with the full reply only,
     * so a retrying client (QEMU) does not collect two; and the short reply
     * claims neither MMAP nor caps it does not carry, so a client that takes
     * it as final does not mmap() an fd it never got. */
    /* Without room for the fd (a client that takes none) nothing is mappable. */
    bool fits = req.argsz >= full && s->caps.client_max_msg_fds >= 1;
    if (!fits)
        reply.info.flags &= ~(VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS);
    if (!fits)
        reply.info.cap_offset = 0;
    struct iovec iov = {&reply, fits ? full : sizeof(reply.info)};
    int fd = d->fd;
    bool send_fd = d->size && fd >= 0 && fits;
    return vfu_reply(s, msg, &iov, 1, send_fd ? &fd : NULL, send_fd ? 1 : 0);
}

int vfu_handle_region_io_fds(struct vfu_server *s, struct vfu_msg *msg)
{
    struct vfu_region_io_fds_request req;
    int r = vfu_decode_region_io_fds(msg, &req);
    if (r < 0)
        return r;
    if (req.index >= VFIO_PCI_NUM_REGIONS)
        return -EINVAL;

    struct vfu_sub_region_ioeventfd subs[VFU_MAX_IO_FDS];
    int fds[VFU_MAX_IO_FDS];
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->layout.nr_io_fds; i++) {
        const struct vfu_io_fd_desc *d = &s->layout.io_fds[i];
        if (d->region != req.index)
            continue;
        subs[n] = (struct vfu_sub_region_ioeventfd){
            .offset = d->offset,
            .size = d->size,
            .fd_index = n,
            .type = VFU_IO_FD_TYPE_IOEVENTFD,
            .flags = d->flags,
            .datamatch = d->datamatch,
        };
        fds[n++] = d->fd;
    }
    if (n > s->caps.client_max_msg_fds)
        return -E2BIG;

    size_t full = sizeof(req) + n * sizeof(subs[0]);
    struct vfu_region_io_fds_request head = {
        .argsz = (uint32_t)full,
        .index = req.index,
        .count = n,
    };
    bool fits = req.argsz >= full;
    struct iovec iov[2] = {{&head, sizeof(head)}, {subs, fits ? n * sizeof(subs[0]) : 0}};
    return vfu_reply(s, msg, iov, 2, fits ? fds : NULL, fits ? n : 0);
}

/* Region index in range, the access inside the region, and allowed. */
static int check_access(const struct vfu_server *s, uint32_t index, uint64_t offset, uint32_t count,
                        bool is_write)
{
    if (index >= VFIO_PCI_NUM_REGIONS)
        return -EINVAL;
    const struct vfu_region_desc *d = &s->layout.regions[index];
    if (!range_within(offset, count, d->size))
        return -EINVAL;
    if (!(d->flags & (is_write ? VFIO_REGION_INFO_FLAG_WRITE : VFIO_REGION_INFO_FLAG_READ)))
        return -EACCES;
    return 0;
}

int vfu_handle_region_read(struct vfu_server *s, struct vfu_msg *msg)
{
    struct vfu_region_rw_req req;
    int r = vfu_decode_region_read(msg, s->caps.max_data_xfer, &req);
    if (r < 0)
        return r;
    r = check_access(s, req.region, req.offset, req.count, false);
    if (r < 0)
        return r;

    /* Register reads are small: keep them off the heap and aligned. */
    uint64_t small[8];
    _cleanup_free_ void *big = NULL;
    void *data = small;
    if (req.count > sizeof(small)) {
        data = big = malloc(req.count);
        if (!big)
            return -ENOMEM;
    }
    memset(data, 0, req.count);
    r = s->ops->region_access(s->opaque, req.region, req.offset, data, req.count, false);
    if (r < 0)
        return r;
    struct vfu_region_access head = {
        .offset = req.offset, .region = req.region, .count = req.count};
    struct iovec iov[2] = {{&head, sizeof(head)}, {data, req.count}};
    return vfu_reply(s, msg, iov, 2, NULL, 0);
}

int vfu_handle_region_write(struct vfu_server *s, struct vfu_msg *msg)
{
    struct vfu_region_rw_req req;
    int r = vfu_decode_region_write(msg, s->caps.max_data_xfer, &req);
    if (r < 0)
        return r;
    r = check_access(s, req.region, req.offset, req.count, true);
    if (r < 0)
        return r;

    /* The message buffer is not aligned; device models may read registers
     * as integers. Copy small writes into an aligned buffer. */
    uint64_t small[8];
    void *data = (void *)req.data;
    if (req.count <= sizeof(small)) {
        memcpy(small, req.data, req.count);
        data = small;
    }
    r = s->ops->region_access(s->opaque, req.region, req.offset, data, req.count, true);
    if (r < 0)
        return r;
    struct vfu_region_access head = {
        .offset = req.offset, .region = req.region, .count = req.count};
    struct iovec iov = {&head, sizeof(head)};
    return vfu_reply(s, msg, &iov, 1, NULL, 0);
}

/* QEMU posts its batches (NO_REPLY): a write that fails must not drop the
 * ones after it, as the separate posted writes the batch stands for would
 * not have been. Every write is tried; the reply, if one is wanted, is the
 * first error. */
int vfu_handle_write_multi(struct vfu_server *s, struct vfu_msg *msg)
{
    struct vfu_write_multi_req req;
    int r = vfu_decode_write_multi(msg, &req);
    if (r < 0)
        return r;

    int first_error = 0;
    for (uint64_t i = 0; i < req.count; i++) {
        struct vfu_write_one w;
        memcpy(&w, &req.wrs[i], sizeof(w));
        r = check_access(s, w.region, w.offset, w.count, true);
        if (r >= 0) {
            uint64_t data;
            memcpy(&data, w.data, sizeof(data));
            r = s->ops->region_access(s->opaque, w.region, w.offset, &data, w.count, true);
        }
        if (r < 0) {
            log_debug("REGION_WRITE_MULTI write %" PRIu64 " (region %u offset %#" PRIx64
                      " count %u) failed: %s",
                      i, w.region, w.offset, w.count, strerror(-r));
            if (!first_error)
                first_error = r;
        }
    }
    if (first_error)
        return first_error;
    uint64_t done = req.count;
    struct iovec iov = {&done, sizeof(done)};
    return vfu_reply(s, msg, &iov, 1, NULL, 0);
}
