/* SPDX-License-Identifier: MIT */
/*
 * DEVICE_FEATURE DMA_LOGGING_START / _STOP / _REPORT: the client's view of
 * the DMA table's dirty-page logging (dma-dirty.c). Logging covers every
 * mapping whatever ranges START names (the spec lets a device log more than
 * asked: the ranges are a hint), so the ranges are checked, echoed, and not
 * kept.
 */
#include <errno.h>
#include <string.h>

#include "vfu/server-internal.h"

/* What the client's VERSION allowed, else what we offer. */
static uint64_t max_bitmap(const struct vfu_server *s)
{
    uint64_t max = s->caps.mig_max_bitmap ? s->caps.mig_max_bitmap : VFU_MIGRATION_MAX_BITMAP;
    /* The reply must also fit a message the client takes: its data
     * transfer size is the most it promised to receive at once. */
    return max < s->caps.client_max_data_xfer ? max : s->caps.client_max_data_xfer;
}

int vfu_feature_logging_start(struct vfu_server *s, const struct vfu_msg *msg,
                              const struct vfu_feature_req *req)
{
    struct vfu_logging_start_req start;
    int r = vfu_decode_logging_start(req, &start);
    if (r < 0)
        return r;
    /* As VFIO: one logging session at a time. */
    if (vfu_dma_logging(s->dma))
        return -EBUSY;
    /* We cannot track finer than a page: a smaller hint gets 4 KiB, and the
     * reply says so, as the spec has the device pick. */
    uint64_t pgsize =
        start.page_size < VFU_MIGRATION_PGSIZE ? VFU_MIGRATION_PGSIZE : start.page_size;
    r = vfu_dma_logging_start(s->dma, pgsize);
    if (r < 0)
        return r;

    struct vfu_feature_dma_logging_control ctl;
    memcpy(&ctl, req->data, sizeof(ctl));
    ctl.page_size = pgsize;
    struct iovec iov[2] = {
        {&ctl, sizeof(ctl)},
        {(void *)start.ranges, req->data_len - sizeof(ctl)},
    };
    return vfu_reply_feature(s, msg, iov, 2);
}

int vfu_feature_logging_stop(struct vfu_server *s, const struct vfu_msg *msg,
                             const struct vfu_feature_req *req)
{
    if (req->data_len != 0)
        return -EINVAL;
    /* Stopping what is not on succeeds, as with VFIO. */
    vfu_dma_logging_stop(s->dma);
    return vfu_reply_echo(s, msg);
}

int vfu_feature_logging_report(struct vfu_server *s, const struct vfu_msg *msg,
                               const struct vfu_feature_req *req)
{
    struct vfu_feature_dma_logging_report rep;
    uint64_t bytes;
    int r = vfu_decode_logging_report(req, &rep);
    if (r < 0)
        return r;
    /* Only valid once START was: a request out of order. */
    if (!vfu_dma_logging(s->dma))
        return -EINVAL;
    r = vfu_dma_report_bitmap_size(rep.iova, rep.length, rep.page_size, &bytes);
    if (r < 0)
        return r;
    if (bytes > max_bitmap(s))
        return -E2BIG;
    if (req->argsz < sizeof(struct vfu_device_feature) + sizeof(rep) + bytes)
        return -EINVAL; /* no room for the bitmap in the client's reply */

    _cleanup_free_ uint64_t *bitmap = malloc((size_t)bytes);
    if (!bitmap)
        return -ENOMEM;
    r = vfu_dma_logging_report(s->dma, rep.iova, rep.length, rep.page_size, bitmap, bytes);
    if (r < 0)
        return r == -ENOENT ? -EINVAL : r;
    struct iovec iov[2] = {{&rep, sizeof(rep)}, {bitmap, (size_t)bytes}};
    return vfu_reply_feature(s, msg, iov, 2);
}
