/* SPDX-License-Identifier: MIT */
/*
 * Migration v2 from the client's side: DEVICE_FEATURE (the migration flags,
 * the state machine, DMA logging) and the MIG_DATA_READ / MIG_DATA_WRITE
 * stream, as a VMM that migrates a vfio-user device would send them.
 */
#include "client/client-internal.h"

#include <errno.h>
#include <string.h>

#include "util/macro.h"

int vfu_client_device_feature(struct vfu_client *c, uint32_t flags, uint32_t argsz,
                              const void *data, size_t len, void *out, size_t out_len, size_t *got)
{
    struct client_msg m;

    if (!c || (len && !data) || (out_len && !out) || len > UINT32_MAX - 8)
        return -EINVAL;
    struct vfu_device_feature f = {
        .argsz = argsz ? argsz : (uint32_t)(sizeof(f) + (len > out_len ? len : out_len)),
        .flags = flags,
    };
    struct iovec iov[2] = {{&f, sizeof(f)}, {(void *)data, len}};
    int r = client_transact(c, VFU_CMD_DEVICE_FEATURE, iov, len ? 2 : 1, NULL, 0, &m);
    if (r < 0)
        return r;
    client_msg_close_fds(&m);
    if (m.len < sizeof(f))
        return -EPROTO;
    struct vfu_device_feature rf;
    memcpy(&rf, m.payload, sizeof(rf));
    /* The reply's argsz says how much of it is the feature's. */
    if (rf.argsz < sizeof(rf) || rf.argsz > m.len)
        return -EPROTO;
    size_t n = rf.argsz - sizeof(rf);
    if (out_len)
        memcpy(out, m.payload + sizeof(rf), n < out_len ? n : out_len);
    if (got)
        *got = n;
    return 0;
}

/* A GET whose data is exactly `len` bytes. */
static int get_fixed(struct vfu_client *c, uint16_t index, void *out, size_t len)
{
    size_t got;
    int r =
        vfu_client_device_feature(c, VFIO_DEVICE_FEATURE_GET | index, 0, NULL, 0, out, len, &got);
    if (r < 0)
        return r;
    return got == len ? 0 : -EPROTO;
}

int vfu_client_migration_flags(struct vfu_client *c, uint64_t *flags)
{
    struct vfu_feature_migration m;
    int r = get_fixed(c, VFU_FEATURE_MIGRATION, &m, sizeof(m));
    if (r < 0)
        return r;
    if (flags)
        *flags = m.flags;
    return 0;
}

int vfu_client_mig_get_state(struct vfu_client *c, uint32_t *state)
{
    struct vfu_feature_mig_state st;
    int r = get_fixed(c, VFU_FEATURE_MIG_DEVICE_STATE, &st, sizeof(st));
    if (r < 0)
        return r;
    if (state)
        *state = st.device_state;
    return 0;
}

int vfu_client_mig_set_state(struct vfu_client *c, uint32_t state, uint32_t *new_state)
{
    struct vfu_feature_mig_state st = {.device_state = state, .data_fd = UINT32_MAX};
    size_t got;
    int r = vfu_client_device_feature(c, VFIO_DEVICE_FEATURE_SET | VFU_FEATURE_MIG_DEVICE_STATE, 0,
                                      &st, sizeof(st), &st, sizeof(st), &got);
    if (r < 0)
        return r;
    if (got != sizeof(st))
        return -EPROTO;
    if (new_state)
        *new_state = st.device_state;
    return 0;
}

int vfu_client_mig_read(struct vfu_client *c, void *buf, size_t len, size_t *n)
{
    struct client_msg m;

    if (!c || !buf || len == 0 || !n)
        return -EINVAL;
    if (len > c->max_data_xfer)
        return -EMSGSIZE;
    struct vfu_mig_data req = {.argsz = (uint32_t)(sizeof(req) + len), .size = (uint32_t)len};
    struct iovec iov = {&req, sizeof(req)};
    int r = client_transact(c, VFU_CMD_MIG_DATA_READ, &iov, 1, NULL, 0, &m);
    if (r < 0)
        return r;
    client_msg_close_fds(&m);
    struct vfu_mig_data rep;
    if (m.len < sizeof(rep))
        return -EPROTO;
    memcpy(&rep, m.payload, sizeof(rep));
    if (rep.size > len || m.len - sizeof(rep) < rep.size || rep.argsz != sizeof(rep) + rep.size)
        return -EPROTO;
    memcpy(buf, m.payload + sizeof(rep), rep.size);
    *n = rep.size;
    return 0;
}

int vfu_client_mig_write(struct vfu_client *c, const void *buf, size_t len)
{
    struct client_msg m;

    if (!c || (len && !buf))
        return -EINVAL;
    if (len > c->max_data_xfer)
        return -EMSGSIZE;
    struct vfu_mig_data req = {.argsz = (uint32_t)(sizeof(req) + len), .size = (uint32_t)len};
    struct iovec iov[2] = {{&req, sizeof(req)}, {(void *)buf, len}};
    int r = client_transact(c, VFU_CMD_MIG_DATA_WRITE, iov, 2, NULL, 0, &m);
    if (r < 0)
        return r;
    client_msg_close_fds(&m);
    return 0;
}

int vfu_client_dma_logging_start(struct vfu_client *c, uint64_t pgsize,
                                 const struct vfu_dma_logging_range *ranges, uint32_t n,
                                 uint64_t *chosen)
{
    struct client_msg m;
    struct vfu_feature_dma_logging_control ctl = {.page_size = pgsize, .num_ranges = n};
    size_t rlen = (size_t)n * sizeof(*ranges);

    if (!c || (n && !ranges) || rlen > c->max_data_xfer)
        return -EINVAL;
    struct vfu_device_feature f = {
        .argsz = (uint32_t)(sizeof(f) + sizeof(ctl) + rlen),
        .flags = VFIO_DEVICE_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_START,
    };
    struct iovec iov[3] = {{&f, sizeof(f)}, {&ctl, sizeof(ctl)}, {(void *)ranges, rlen}};
    int r = client_transact(c, VFU_CMD_DEVICE_FEATURE, iov, n ? 3 : 2, NULL, 0, &m);
    if (r < 0)
        return r;
    client_msg_close_fds(&m);
    if (m.len < sizeof(f) + sizeof(ctl))
        return -EPROTO;
    memcpy(&ctl, m.payload + sizeof(f), sizeof(ctl));
    if (chosen)
        *chosen = ctl.page_size;
    return 0;
}

int vfu_client_dma_logging_stop(struct vfu_client *c)
{
    return vfu_client_device_feature(c, VFIO_DEVICE_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_STOP, 0,
                                     NULL, 0, NULL, 0, NULL);
}

int vfu_client_dma_logging_report(struct vfu_client *c, uint64_t iova, uint64_t len,
                                  uint64_t pgsize, uint64_t *bitmap, size_t bitmap_bytes)
{
    struct client_msg m;
    struct vfu_feature_dma_logging_report rep = {.iova = iova, .length = len, .page_size = pgsize};

    if (!c || !bitmap || bitmap_bytes > UINT32_MAX - 64)
        return -EINVAL;
    struct vfu_device_feature f = {
        .argsz = (uint32_t)(sizeof(f) + sizeof(rep) + bitmap_bytes),
        .flags = VFIO_DEVICE_FEATURE_GET | VFU_FEATURE_DMA_LOGGING_REPORT,
    };
    struct iovec iov[2] = {{&f, sizeof(f)}, {&rep, sizeof(rep)}};
    int r = client_transact(c, VFU_CMD_DEVICE_FEATURE, iov, 2, NULL, 0, &m);
    if (r < 0)
        return r;
    client_msg_close_fds(&m);
    struct vfu_device_feature rf;
    if (m.len < sizeof(rf) + sizeof(rep))
        return -EPROTO;
    memcpy(&rf, m.payload, sizeof(rf));
    size_t bytes = m.len - sizeof(rf) - sizeof(rep);
    if (rf.argsz != m.len || bytes > bitmap_bytes)
        return -EPROTO;
    memset(bitmap, 0, bitmap_bytes);
    memcpy(bitmap, m.payload + sizeof(rf) + sizeof(rep), bytes);
    return 0;
}
