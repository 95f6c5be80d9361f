/* SPDX-License-Identifier: MIT */
#include "vfu/codec.h"

#include <errno.h>
#include <string.h>

#include "util/macro.h"

/*
 * Payloads arrive at whatever alignment the receive buffer gives them, so
 * every fixed struct is copied out with memcpy() rather than cast in place.
 */
static int copy_fixed(const struct vfu_msg *msg, void *out, size_t size)
{
    if (msg->payload_len < size || !msg->payload)
        return -EINVAL;
    memcpy(out, msg->payload, size);
    return 0;
}

int vfu_check_header(const struct vfu_header *hdr, uint32_t max_size)
{
    if (hdr->msg_size < sizeof(struct vfu_header))
        return -EINVAL;
    if (hdr->msg_size > max_size)
        return -EMSGSIZE;

    switch (hdr->flags & VFU_FLAG_TYPE_MASK) {
    case VFU_FLAG_TYPE_COMMAND:
        /* The error field is reserved in commands: ignored, not enforced, so a
         * client that leaves garbage there still works. */
        if ((hdr->flags & ~VFU_FLAG_NO_REPLY) != 0)
            return -EINVAL;
        return 0;
    case VFU_FLAG_TYPE_REPLY:
        /* NO_REPLY makes no sense on a reply; ERROR is how replies fail. */
        if ((hdr->flags & ~(VFU_FLAG_TYPE_MASK | VFU_FLAG_ERROR)) != 0)
            return -EINVAL;
        return 0;
    default:
        return -EINVAL;
    }
}

int vfu_decode_version(const struct vfu_msg *msg, struct vfu_version_req *out)
{
    struct vfu_version v;
    int r = copy_fixed(msg, &v, sizeof(v));
    if (r < 0)
        return r;

    *out = (struct vfu_version_req){.major = v.major, .minor = v.minor};

    /* SPDK sends no JSON; others may omit the NUL at the very end. The text
     * is what lies between the version and the first NUL or the message end. */
    size_t rest = msg->payload_len - sizeof(v);
    const char *text = (const char *)msg->payload + sizeof(v);
    size_t len = strnlen(text, rest);
    if (len > 0) {
        out->json = text;
        out->json_len = len;
    }
    return 0;
}

int vfu_decode_dma_map(const struct vfu_msg *msg, struct vfu_dma_map *out)
{
    uint64_t end;
    int r = copy_fixed(msg, out, sizeof(*out));
    if (r < 0)
        return r;
    if (out->argsz < sizeof(*out))
        return -EINVAL;
    if (out->flags & ~(VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE))
        return -EINVAL;
    if (out->size == 0 || __builtin_add_overflow(out->address, out->size, &end))
        return -EINVAL;
    if (msg->nr_fds > 1)
        return -EINVAL;
    /* Without an fd the offset means nothing and is not checked. */
    if (msg->nr_fds == 1 && __builtin_add_overflow(out->offset, out->size, &end))
        return -EINVAL;
    return 0;
}

int vfu_decode_dma_unmap(const struct vfu_msg *msg, struct vfu_dma_unmap *out)
{
    const uint32_t known =
        VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR;
    uint64_t end;
    int r = copy_fixed(msg, out, sizeof(*out));
    if (r < 0)
        return r;
    if (out->argsz < sizeof(*out))
        return -EINVAL;
    if (out->flags & ~known)
        return -EINVAL;
    if (out->flags & (VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_VADDR))
        return -ENOTSUP;
    if (out->flags & VFIO_DMA_UNMAP_FLAG_ALL)
        return out->address == 0 && out->size == 0 ? 0 : -EINVAL;
    if (out->size == 0 || __builtin_add_overflow(out->address, out->size, &end))
        return -EINVAL;
    return 0;
}

/* The info requests share one shape: a fixed struct whose argsz says how
 * much reply the client can take, which must be at least the struct. */
static int decode_info(const struct vfu_msg *msg, void *out, size_t size)
{
    uint32_t argsz;
    int r = copy_fixed(msg, out, size);
    if (r < 0)
        return r;
    memcpy(&argsz, out, sizeof(argsz));
    return argsz < size ? -EINVAL : 0;
}

int vfu_decode_device_info(const struct vfu_msg *msg, struct vfu_device_info *out)
{
    return decode_info(msg, out, sizeof(*out));
}

int vfu_decode_region_info(const struct vfu_msg *msg, struct vfu_region_info *out)
{
    return decode_info(msg, out, sizeof(*out));
}

int vfu_decode_irq_info(const struct vfu_msg *msg, struct vfu_irq_info *out)
{
    return decode_info(msg, out, sizeof(*out));
}

int vfu_decode_region_io_fds(const struct vfu_msg *msg, struct vfu_region_io_fds_request *out)
{
    int r = decode_info(msg, out, sizeof(*out));
    if (r < 0)
        return r;
    return out->flags == 0 ? 0 : -EINVAL;
}

static bool single_bit(uint32_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

int vfu_decode_irq_set(const struct vfu_msg *msg, struct vfu_irq_set_req *out)
{
    const uint32_t data_mask =
        VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
    const uint32_t action_mask =
        VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;
    struct vfu_irq_set *set = &out->set;
    uint32_t end;
    size_t want;

    *out = (struct vfu_irq_set_req){0};
    int r = copy_fixed(msg, set, sizeof(*set));
    if (r < 0)
        return r;
    if (set->argsz < sizeof(*set) || set->argsz != msg->payload_len)
        return -EINVAL;
    if (set->flags & ~(data_mask | action_mask))
        return -EINVAL;
    if (!single_bit(set->flags & data_mask) || !single_bit(set->flags & action_mask))
        return -EINVAL;
    if (__builtin_add_overflow(set->start, set->count, &end))
        return -EINVAL;

    /* VFIO gives count 0 one meaning only: DATA_NONE|TRIGGER disables the index. */
    if (set->count == 0 && set->flags != (VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER))
        return -EINVAL;

    switch (set->flags & data_mask) {
    case VFIO_IRQ_SET_DATA_NONE:
        want = sizeof(*set);
        if (msg->nr_fds != 0)
            return -EINVAL;
        break;
    case VFIO_IRQ_SET_DATA_BOOL:
        want = sizeof(*set) + (size_t)set->count;
        if (msg->nr_fds != 0)
            return -EINVAL;
        out->bools = msg->payload + sizeof(*set);
        break;
    default: /* DATA_EVENTFD: the fds travel out of band, or none to de-assign */
        want = sizeof(*set);
        if (msg->nr_fds != 0 && msg->nr_fds != set->count)
            return -EINVAL;
        break;
    }
    if (msg->payload_len != want) {
        out->bools = NULL;
        return -EINVAL;
    }
    return 0;
}

static int decode_region_access(const struct vfu_msg *msg, uint32_t max_xfer,
                                struct vfu_region_rw_req *out)
{
    struct vfu_region_access a;
    int r = copy_fixed(msg, &a, sizeof(a));
    if (r < 0)
        return r;
    if (a.count == 0)
        return -EINVAL;
    if (a.count > max_xfer)
        return -E2BIG;
    *out = (struct vfu_region_rw_req){.offset = a.offset, .region = a.region, .count = a.count};
    return 0;
}

int vfu_decode_region_read(const struct vfu_msg *msg, uint32_t max_xfer,
                           struct vfu_region_rw_req *out)
{
    int r = decode_region_access(msg, max_xfer, out);
    if (r < 0)
        return r;
    return msg->payload_len == sizeof(struct vfu_region_access) ? 0 : -EINVAL;
}

int vfu_decode_region_write(const struct vfu_msg *msg, uint32_t max_xfer,
                            struct vfu_region_rw_req *out)
{
    int r = decode_region_access(msg, max_xfer, out);
    if (r < 0)
        return r;
    /* count <= max_xfer (a u32) so the sum cannot overflow a size_t. */
    if (msg->payload_len != sizeof(struct vfu_region_access) + (size_t)out->count)
        return -EINVAL;
    out->data = msg->payload + sizeof(struct vfu_region_access);
    return 0;
}

int vfu_decode_write_multi(const struct vfu_msg *msg, struct vfu_write_multi_req *out)
{
    struct vfu_write_multi wm;
    int r = copy_fixed(msg, &wm, sizeof(wm));
    if (r < 0)
        return r;
    if (wm.wr_cnt == 0)
        return -EINVAL;
    if (wm.wr_cnt > VFU_WRITE_MULTI_MAX)
        return -E2BIG;
    /* wr_cnt is bounded by VFU_WRITE_MULTI_MAX now, so the product is small. */
    if (msg->payload_len != sizeof(wm) + wm.wr_cnt * sizeof(struct vfu_write_one))
        return -EINVAL;

    const uint8_t *p = msg->payload + sizeof(wm);
    for (uint64_t i = 0; i < wm.wr_cnt; i++) {
        struct vfu_write_one one;
        memcpy(&one, p + i * sizeof(one), sizeof(one));
        if (one.count == 0 || one.count > VFU_WRITE_MULTI_DATA)
            return -EINVAL;
    }
    *out = (struct vfu_write_multi_req){
        .count = wm.wr_cnt,
        .wrs = (const struct vfu_write_one *)(const void *)p,
    };
    return 0;
}

int vfu_decode_dma_read_reply(const struct vfu_msg *msg, uint64_t address, uint32_t count,
                              const uint8_t **data)
{
    uint64_t got_address;
    uint32_t got_count;
    size_t need;

    /* QEMU echoes our address and (its u32) count, then the data at offset 12. */
    if (__builtin_add_overflow((size_t)VFU_DMA_RW_QEMU_DATA_OFFSET, (size_t)count, &need))
        return -EINVAL;
    if (msg->payload_len < need || !msg->payload)
        return -EINVAL;
    memcpy(&got_address, msg->payload, sizeof(got_address));
    memcpy(&got_count, msg->payload + sizeof(got_address), sizeof(got_count));
    if (got_address != address || got_count != count)
        return -EINVAL;
    *data = msg->payload + VFU_DMA_RW_QEMU_DATA_OFFSET;
    return 0;
}

int vfu_decode_device_feature(const struct vfu_msg *msg, struct vfu_feature_req *out)
{
    const uint32_t ops = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET;
    struct vfu_device_feature f;
    int r = copy_fixed(msg, &f, sizeof(f));
    if (r < 0)
        return r;
    if (f.argsz < sizeof(f))
        return -EINVAL;
    if (f.flags & ~(VFIO_DEVICE_FEATURE_MASK | ops | VFIO_DEVICE_FEATURE_PROBE))
        return -EINVAL;
    if (f.flags & VFIO_DEVICE_FEATURE_PROBE) {
        /* Probing asks whether the named ops work; it may name both. */
    } else if ((f.flags & ops) == ops || (f.flags & ops) == 0) {
        return -EINVAL;
    }
    *out = (struct vfu_feature_req){
        .argsz = f.argsz,
        .flags = f.flags & ~VFIO_DEVICE_FEATURE_MASK,
        .index = (uint16_t)(f.flags & VFIO_DEVICE_FEATURE_MASK),
        .data = msg->payload + sizeof(f),
        .data_len = msg->payload_len - sizeof(f),
    };
    return 0;
}

int vfu_decode_mig_state_set(const struct vfu_feature_req *req, struct vfu_feature_mig_state *out)
{
    if (req->data_len != sizeof(*out))
        return -EINVAL;
    memcpy(out, req->data, sizeof(*out));
    return 0;
}

static bool power_of_two(uint64_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

int vfu_decode_logging_start(const struct vfu_feature_req *req, struct vfu_logging_start_req *out)
{
    struct vfu_feature_dma_logging_control ctl;
    uint64_t end;

    if (req->data_len < sizeof(ctl))
        return -EINVAL;
    memcpy(&ctl, req->data, sizeof(ctl));
    if (!power_of_two(ctl.page_size))
        return -EINVAL;
    /* Bounded by the data before it is multiplied. */
    size_t room = (req->data_len - sizeof(ctl)) / sizeof(struct vfu_dma_logging_range);
    if (ctl.num_ranges > room ||
        req->data_len != sizeof(ctl) + ctl.num_ranges * sizeof(struct vfu_dma_logging_range))
        return -EINVAL;
    const uint8_t *p = req->data + sizeof(ctl);
    for (uint32_t i = 0; i < ctl.num_ranges; i++) {
        struct vfu_dma_logging_range range;
        memcpy(&range, p + i * sizeof(range), sizeof(range));
        if (range.length == 0 || __builtin_add_overflow(range.iova, range.length - 1, &end))
            return -EINVAL;
    }
    *out = (struct vfu_logging_start_req){
        .page_size = ctl.page_size,
        .num_ranges = ctl.num_ranges,
        .ranges = p,
    };
    return 0;
}

int vfu_decode_logging_report(const struct vfu_feature_req *req,
                              struct vfu_feature_dma_logging_report *out)
{
    uint64_t last;

    if (req->data_len < sizeof(*out))
        return -EINVAL;
    memcpy(out, req->data, sizeof(*out));
    if (!power_of_two(out->page_size) || out->length == 0 || out->iova % out->page_size)
        return -EINVAL;
    if (__builtin_add_overflow(out->iova, out->length - 1, &last))
        return -EINVAL;
    return 0;
}

static int decode_mig_data(const struct vfu_msg *msg, uint32_t max_xfer,
                           struct vfu_mig_data_req *out)
{
    struct vfu_mig_data d;
    int r = copy_fixed(msg, &d, sizeof(d));
    if (r < 0)
        return r;
    if (d.size > max_xfer)
        return -E2BIG;
    /* size <= max_xfer (a u32): the sum fits a u64. */
    if (d.argsz < (uint64_t)sizeof(d) + d.size)
        return -EINVAL;
    *out = (struct vfu_mig_data_req){.argsz = d.argsz, .size = d.size};
    return 0;
}

int vfu_decode_mig_data_read(const struct vfu_msg *msg, uint32_t max_xfer,
                             struct vfu_mig_data_req *out)
{
    int r = decode_mig_data(msg, max_xfer, out);
    if (r < 0)
        return r;
    if (out->size == 0 || msg->payload_len != sizeof(struct vfu_mig_data))
        return -EINVAL;
    return 0;
}

int vfu_decode_mig_data_write(const struct vfu_msg *msg, uint32_t max_xfer,
                              struct vfu_mig_data_req *out)
{
    int r = decode_mig_data(msg, max_xfer, out);
    if (r < 0)
        return r;
    if (msg->payload_len != sizeof(struct vfu_mig_data) + (size_t)out->size)
        return -EINVAL;
    out->data = msg->payload + sizeof(struct vfu_mig_data);
    return 0;
}

static const char *const command_names[VFU_CMD_MAX] = {
    [VFU_CMD_VERSION] = "VERSION",
    [VFU_CMD_DMA_MAP] = "DMA_MAP",
    [VFU_CMD_DMA_UNMAP] = "DMA_UNMAP",
    [VFU_CMD_DEVICE_GET_INFO] = "DEVICE_GET_INFO",
    [VFU_CMD_DEVICE_GET_REGION_INFO] = "DEVICE_GET_REGION_INFO",
    [VFU_CMD_DEVICE_GET_REGION_IO_FDS] = "DEVICE_GET_REGION_IO_FDS",
    [VFU_CMD_DEVICE_GET_IRQ_INFO] = "DEVICE_GET_IRQ_INFO",
    [VFU_CMD_DEVICE_SET_IRQS] = "DEVICE_SET_IRQS",
    [VFU_CMD_REGION_READ] = "REGION_READ",
    [VFU_CMD_REGION_WRITE] = "REGION_WRITE",
    [VFU_CMD_DMA_READ] = "DMA_READ",
    [VFU_CMD_DMA_WRITE] = "DMA_WRITE",
    [VFU_CMD_DEVICE_RESET] = "DEVICE_RESET",
    [VFU_CMD_DIRTY_PAGES] = "DIRTY_PAGES",
    [VFU_CMD_REGION_WRITE_MULTI] = "REGION_WRITE_MULTI",
    [VFU_CMD_DEVICE_FEATURE] = "DEVICE_FEATURE",
    [VFU_CMD_MIG_DATA_READ] = "MIG_DATA_READ",
    [VFU_CMD_MIG_DATA_WRITE] = "MIG_DATA_WRITE",
};

const char *vfu_command_name(uint16_t command)
{
    if (command < ELEMENTSOF(command_names) && command_names[command])
        return command_names[command];
    return "UNKNOWN";
}
