/* SPDX-License-Identifier: MIT */
/*
 * The typed vfio-user commands a VMM sends, each a request struct out and a
 * checked reply struct back. Region access avoids any allocation: the reply
 * is read in place, so the round trip costs two system calls.
 */
#include "client/client-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/macro.h"

/* Send `req` (len bytes) and copy exactly `len` reply bytes back into it. */
static int call_fixed(struct vfu_client *c, uint16_t command, void *req, size_t len)
{
    struct client_msg m;
    struct iovec iov = {.iov_base = req, .iov_len = len};

    int r = client_transact(c, command, &iov, 1, NULL, 0, &m);
    if (r < 0)
        return r;
    client_msg_close_fds(&m);
    if (m.len < len)
        return -EPROTO;
    memcpy(req, m.payload, len);
    return 0;
}

int vfu_client_device_info(struct vfu_client *c, struct vfu_device_info *info)
{
    if (!c || !info)
        return -EINVAL;
    *info = (struct vfu_device_info){.argsz = sizeof(*info)};
    return call_fixed(c, VFU_CMD_DEVICE_GET_INFO, info, sizeof(*info));
}

int vfu_client_irq_info(struct vfu_client *c, uint32_t index, struct vfu_irq_info *info)
{
    if (!c || !info)
        return -EINVAL;
    *info = (struct vfu_irq_info){.argsz = sizeof(*info), .index = index};
    return call_fixed(c, VFU_CMD_DEVICE_GET_IRQ_INFO, info, sizeof(*info));
}

/* Find the sparse-mmap capability in a region info reply of len bytes. */
static void find_sparse(const uint8_t *p, size_t len, struct vfu_sparse_mmap_area *areas,
                        uint32_t max_areas, uint32_t *nr_areas)
{
    const struct vfu_region_info *ri = (const struct vfu_region_info *)p;
    uint32_t off = ri->cap_offset;

    if (!(ri->flags & VFIO_REGION_INFO_FLAG_CAPS))
        return;
    /* A chain that loops would revisit an offset; each hop needs 8 bytes. */
    for (size_t hops = 0; off && hops < len / sizeof(struct vfu_cap_header); hops++) {
        struct vfu_cap_header h;
        if (off % 4 || off < sizeof(*ri) || !range_within(off, sizeof(h), len))
            return;
        memcpy(&h, p + off, sizeof(h));
        if (h.id == VFIO_REGION_INFO_CAP_SPARSE_MMAP &&
            range_within(off, sizeof(struct vfu_cap_sparse_mmap), len)) {
            uint32_t n;
            memcpy(&n, p + off + offsetof(struct vfu_cap_sparse_mmap, nr_areas), sizeof(n));
            size_t room = (len - off - sizeof(struct vfu_cap_sparse_mmap)) /
                          sizeof(struct vfu_sparse_mmap_area);
            if (n > room)
                n = (uint32_t)room;
            if (n > max_areas)
                n = max_areas;
            if (areas)
                memcpy(areas, p + off + sizeof(struct vfu_cap_sparse_mmap), n * sizeof(*areas));
            *nr_areas = n;
            return;
        }
        off = h.next;
    }
}

int vfu_client_region_info(struct vfu_client *c, uint32_t index, struct vfu_region_info *info,
                           struct vfu_sparse_mmap_area *areas, uint32_t max_areas,
                           uint32_t *nr_areas, int *fd)
{
    /* Room for a sparse capability with a handful of areas; asked again
     * with what the server says it needs if that is not enough. */
    uint32_t argsz = sizeof(*info) + sizeof(struct vfu_cap_sparse_mmap) +
                     8 * sizeof(struct vfu_sparse_mmap_area);
    struct client_msg m;

    if (!c || !info)
        return -EINVAL;
    if (nr_areas)
        *nr_areas = 0;
    if (fd)
        *fd = -1;

    for (int attempt = 0;; attempt++) {
        struct vfu_region_info req = {.argsz = argsz, .index = index};
        struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
        int r = client_transact(c, VFU_CMD_DEVICE_GET_REGION_INFO, &iov, 1, NULL, 0, &m);
        if (r < 0)
            return r;
        if (m.len < sizeof(*info)) {
            client_msg_close_fds(&m);
            return -EPROTO;
        }
        const struct vfu_region_info *ri = (const struct vfu_region_info *)m.payload;
        if (ri->argsz > argsz && m.len < ri->argsz && attempt == 0 && ri->argsz <= 1024u * 1024u) {
            argsz = ri->argsz;
            client_msg_close_fds(&m);
            continue;
        }
        break;
    }

    memcpy(info, m.payload, sizeof(*info));
    uint32_t n = 0;
    find_sparse(m.payload, m.len, areas, areas ? max_areas : 0, &n);
    if (nr_areas)
        *nr_areas = n;
    for (size_t i = 0; i < m.nr_fds; i++) {
        if (i == 0 && fd)
            *fd = m.fds[0];
        else
            safe_close(m.fds[i]);
    }
    return 0;
}

int vfu_client_region_io_fds(struct vfu_client *c, uint32_t index,
                             struct vfu_sub_region_ioeventfd *subs, int *fds, uint32_t max)
{
    struct vfu_region_io_fds_request req = {
        .argsz = sizeof(req) + max * sizeof(*subs),
        .index = index,
    };
    struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
    struct client_msg m;

    if (!c || (max && (!subs || !fds)) || max > 1024 * 1024)
        return -EINVAL;
    int r = client_transact(c, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &iov, 1, NULL, 0, &m);
    if (r < 0)
        return r;
    if (m.len < sizeof(req)) {
        client_msg_close_fds(&m);
        return -EPROTO;
    }

    struct vfu_region_io_fds_request rep;
    memcpy(&rep, m.payload, sizeof(rep));
    if (rep.count > INT32_MAX) {
        client_msg_close_fds(&m);
        return -EPROTO;
    }
    size_t present = (m.len - sizeof(rep)) / sizeof(*subs);
    size_t copy = rep.count < present ? rep.count : present;
    if (copy > max)
        copy = max;
    if (copy)
        memcpy(subs, m.payload + sizeof(rep), copy * sizeof(*subs));
    for (size_t i = 0; i < max; i++)
        fds[i] = i < m.nr_fds ? m.fds[i] : -1;
    for (size_t i = max; i < m.nr_fds; i++)
        safe_close(m.fds[i]);
    return (int)rep.count;
}

int vfu_client_set_irqs(struct vfu_client *c, uint32_t index, uint32_t flags, uint32_t start,
                        uint32_t count, const int *fds, size_t nr_fds, const uint8_t *bools)
{
    if (!c || (nr_fds && !fds))
        return -EINVAL;
    bool is_bool = (flags & VFIO_IRQ_SET_DATA_TYPE_MASK) == VFIO_IRQ_SET_DATA_BOOL;
    if (is_bool && !bools)
        return -EINVAL;

    /* A message carries at most max_msg_fds descriptors: one eventfd per
     * vector goes out in batches, as QEMU sends a large MSI-X table. */
    size_t batch = nr_fds > c->max_msg_fds && nr_fds == count ? c->max_msg_fds : nr_fds;
    size_t done = 0;
    do {
        size_t n = nr_fds ? (nr_fds - done < batch ? nr_fds - done : batch) : 0;
        uint32_t cnt = nr_fds && nr_fds == count ? (uint32_t)n : count;
        size_t data = is_bool ? count : 0;
        struct vfu_irq_set req = {
            .argsz = (uint32_t)(sizeof(req) + data),
            .flags = flags,
            .index = index,
            .start = start + (uint32_t)done,
            .count = cnt,
        };
        struct iovec iov[] = {
            {.iov_base = &req, .iov_len = sizeof(req)},
            {.iov_base = (void *)bools, .iov_len = data},
        };
        struct client_msg m;
        int r = client_transact(c, VFU_CMD_DEVICE_SET_IRQS, iov, data ? 2 : 1, fds + done, n, &m);
        if (r < 0)
            return r;
        client_msg_close_fds(&m);
        done += n;
    } while (done < nr_fds);
    return 0;
}

int vfu_client_region_read(struct vfu_client *c, uint32_t region, uint64_t offset, void *buf,
                           uint32_t count)
{
    struct vfu_region_access req = {.offset = offset, .region = region, .count = count};
    struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
    struct client_msg m;

    if (!c || (!buf && count))
        return -EINVAL;
    if (count > c->max_data_xfer)
        return -EMSGSIZE;
    int r = client_transact(c, VFU_CMD_REGION_READ, &iov, 1, NULL, 0, &m);
    if (r < 0)
        return r;
    client_msg_close_fds(&m);
    const struct vfu_region_access *rep = (const struct vfu_region_access *)m.payload;
    if (m.len < sizeof(*rep) || rep->count != count || m.len - sizeof(*rep) < count)
        return -EPROTO;
    memcpy(buf, rep->data, count);
    return 0;
}

static int region_write(struct vfu_client *c, uint32_t region, uint64_t offset, const void *buf,
                        uint32_t count, bool posted)
{
    struct vfu_region_access req = {.offset = offset, .region = region, .count = count};
    struct iovec iov[] = {
        {.iov_base = &req, .iov_len = sizeof(req)},
        {.iov_base = (void *)buf, .iov_len = count},
    };

    if (!c || (!buf && count))
        return -EINVAL;
    if (count > c->max_data_xfer)
        return -EMSGSIZE;
    if (posted)
        return client_send(c, VFU_CMD_REGION_WRITE, VFU_FLAG_NO_REPLY, iov, 2, NULL, 0, NULL);

    struct client_msg m;
    int r = client_transact(c, VFU_CMD_REGION_WRITE, iov, 2, NULL, 0, &m);
    if (r < 0)
        return r;
    client_msg_close_fds(&m);
    return 0;
}

int vfu_client_region_write(struct vfu_client *c, uint32_t region, uint64_t offset, const void *buf,
                            uint32_t count)
{
    return region_write(c, region, offset, buf, count, false);
}

int vfu_client_region_write_posted(struct vfu_client *c, uint32_t region, uint64_t offset,
                                   const void *buf, uint32_t count)
{
    return region_write(c, region, offset, buf, count, true);
}

int vfu_client_write_multi(struct vfu_client *c, const struct vfu_write_one *wrs, uint32_t n)
{
    uint64_t cnt = n;
    struct iovec iov[] = {
        {.iov_base = &cnt, .iov_len = sizeof(cnt)},
        {.iov_base = (void *)wrs, .iov_len = (size_t)n * sizeof(*wrs)},
    };
    struct client_msg m;

    if (!c || (n && !wrs))
        return -EINVAL;
    int r = client_transact(c, VFU_CMD_REGION_WRITE_MULTI, iov, 2, NULL, 0, &m);
    if (r < 0)
        return r;
    client_msg_close_fds(&m);
    if (m.len < sizeof(uint64_t))
        return -EPROTO;
    memcpy(&cnt, m.payload, sizeof(cnt));
    return cnt > n ? -EPROTO : (int)cnt;
}

static int dma_map(struct vfu_client *c, uint64_t iova, uint64_t size, uint32_t prot, int fd,
                   uint64_t offset)
{
    struct vfu_dma_map req = {
        .argsz = sizeof(req),
        .flags = prot,
        .offset = offset,
        .address = iova,
        .size = size,
    };
    struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
    struct client_msg m;

    int r = client_transact(c, VFU_CMD_DMA_MAP, &iov, 1, fd >= 0 ? &fd : NULL, fd >= 0, &m);
    if (r < 0)
        return r;
    client_msg_close_fds(&m);
    return 0;
}

int vfu_client_dma_map(struct vfu_client *c, uint64_t iova, uint64_t size, uint32_t prot, int fd,
                       uint64_t offset)
{
    if (!c || fd < 0)
        return -EINVAL;
    return dma_map(c, iova, size, prot, fd, offset);
}

int vfu_client_dma_map_local(struct vfu_client *c, uint64_t iova, uint64_t size, uint32_t prot,
                             void *local)
{
    if (!c || !local)
        return -EINVAL;
    /* Registered first: the server may DMA as soon as it has the map. */
    int r = client_map_add(c, iova, size, prot, local);
    if (r < 0)
        return r;
    r = dma_map(c, iova, size, prot, -1, 0);
    if (r < 0)
        client_map_remove(c, iova, size, 0);
    return r;
}

int vfu_client_dma_unmap(struct vfu_client *c, uint64_t iova, uint64_t size, uint32_t flags)
{
    struct vfu_dma_unmap req = {
        .argsz = sizeof(req),
        .flags = flags,
        .address = iova,
        .size = size,
    };
    struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
    struct client_msg m;

    if (!c)
        return -EINVAL;
    int r = client_transact(c, VFU_CMD_DMA_UNMAP, &iov, 1, NULL, 0, &m);
    if (r < 0)
        return r;
    client_msg_close_fds(&m);
    /* Only now: the server may use the memory until it has replied. */
    client_map_remove(c, iova, size, flags);
    return 0;
}

int vfu_client_reset(struct vfu_client *c)
{
    struct client_msg m;

    if (!c)
        return -EINVAL;
    int r = client_transact(c, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0, &m);
    if (r < 0)
        return r;
    client_msg_close_fds(&m);
    return 0;
}
