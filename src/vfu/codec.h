/* SPDX-License-Identifier: MIT */
/*
 * Validation and decoding of vfio-user messages: pure functions over bytes,
 * no I/O, no allocation, no global state (the fuzz target). Each decoder
 * checks every length, count and index against the message before the caller
 * may use them, and returns 0 or a negative errno that is sent back to the
 * client as the reply's error (-EINVAL malformed, -E2BIG too large,
 * -ENOTSUP unsupported flags).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vfu/wire.h"

/* A received message: header, payload (msg_size - 16 bytes) and its fds. */
struct vfu_msg {
    struct vfu_header hdr;
    const uint8_t *payload;
    size_t payload_len;
    int *fds; /* a handler that keeps fds[i] sets it to -1; the rest are closed */
    size_t nr_fds;
};

/*
 * Check a header as it arrives, before the body is read: msg_size within
 * [16, max_size], a known message type. A command with any bit other than
 * NO_REPLY set in flags is malformed; the (reserved) error field of a command
 * is ignored.
 * Returns 0, or -EINVAL / -EMSGSIZE (the connection is then dropped, since
 * message framing can no longer be trusted).
 */
int vfu_check_header(const struct vfu_header *hdr, uint32_t max_size);

/* VERSION: major/minor and the JSON (NULL when absent or empty): the bytes
 * after the version up to the first NUL or the end of the message. A client
 * may omit the final NUL, so json is not always NUL-terminated: use json_len. */
struct vfu_version_req {
    uint16_t major;
    uint16_t minor;
    const char *json; /* points into the message; json_len bytes, maybe no NUL */
    size_t json_len;
};
int vfu_decode_version(const struct vfu_msg *msg, struct vfu_version_req *out);

/* DMA_MAP: argsz >= 32, flags only READ|WRITE, size > 0, address+size and
 * offset+size do not overflow, at most one fd. */
int vfu_decode_dma_map(const struct vfu_msg *msg, struct vfu_dma_map *out);
/* DMA_UNMAP: argsz >= 24; flags 0 or VFIO_DMA_UNMAP_FLAG_ALL (then address
 * and size must be 0); GET_DIRTY_BITMAP is -ENOTSUP until migration lands. */
int vfu_decode_dma_unmap(const struct vfu_msg *msg, struct vfu_dma_unmap *out);

/* GET_INFO / GET_REGION_INFO / GET_IRQ_INFO / GET_REGION_IO_FDS: the request
 * struct, argsz at least its fixed size. Index is not range-checked here (the
 * caller knows the device). */
int vfu_decode_device_info(const struct vfu_msg *msg, struct vfu_device_info *out);
int vfu_decode_region_info(const struct vfu_msg *msg, struct vfu_region_info *out);
int vfu_decode_irq_info(const struct vfu_msg *msg, struct vfu_irq_info *out);
int vfu_decode_region_io_fds(const struct vfu_msg *msg, struct vfu_region_io_fds_request *out);

/*
 * SET_IRQS: exactly one DATA flag and one ACTION flag; argsz equals the
 * payload length; start + count does not overflow; DATA_BOOL carries count
 * bytes (bools points at them); DATA_EVENTFD carries count fds or none
 * (none de-assigns); DATA_NONE carries nothing. The special case count == 0
 * with DATA_NONE|ACTION_TRIGGER (disable the index) is allowed.
 */
struct vfu_irq_set_req {
    const uint8_t *bools; /* DATA_BOOL only */
    /* Last, as it ends in a flexible array (data[] is unused here: see bools). */
    struct vfu_irq_set set;
};
int vfu_decode_irq_set(const struct vfu_msg *msg, struct vfu_irq_set_req *out);

/* REGION_READ: count in 1..max_xfer. REGION_WRITE: payload is exactly
 * 16 + count bytes; data points at the bytes to write. */
struct vfu_region_rw_req {
    uint64_t offset;
    uint32_t region;
    uint32_t count;
    const uint8_t *data; /* writes only */
};
int vfu_decode_region_read(const struct vfu_msg *msg, uint32_t max_xfer,
                           struct vfu_region_rw_req *out);
int vfu_decode_region_write(const struct vfu_msg *msg, uint32_t max_xfer,
                            struct vfu_region_rw_req *out);

/* REGION_WRITE_MULTI: 1..VFU_WRITE_MULTI_MAX entries, payload exactly
 * 8 + n * 24, each count in 1..8. */
struct vfu_write_multi_req {
    uint64_t count;
    const struct vfu_write_one *wrs; /* unaligned-safe: copy each before use */
};
int vfu_decode_write_multi(const struct vfu_msg *msg, struct vfu_write_multi_req *out);

/* DMA_READ reply (QEMU layout, see wire.h): expects exactly `count` data
 * bytes for the request we sent; data points at them. */
int vfu_decode_dma_read_reply(const struct vfu_msg *msg, uint64_t address, uint32_t count,
                              const uint8_t **data);

/*
 * DEVICE_FEATURE: the 8-byte header (argsz at least that), flags holding
 * only a feature index and GET / SET / PROBE; GET and SET together only
 * with PROBE, and without PROBE one of them. data is what follows the
 * header (the feature's request data; a GET may carry room for its reply,
 * as QEMU sends the whole argsz buffer). The index is the caller's to know.
 */
struct vfu_feature_req {
    uint32_t argsz;
    uint32_t flags; /* GET / SET / PROBE bits only */
    uint16_t index;
    const uint8_t *data;
    size_t data_len;
};
int vfu_decode_device_feature(const struct vfu_msg *msg, struct vfu_feature_req *out);
/* MIG_DEVICE_STATE SET: exactly one struct vfu_feature_mig_state. The state's
 * value is the state machine's to judge. */
int vfu_decode_mig_state_set(const struct vfu_feature_req *req, struct vfu_feature_mig_state *out);
/* DMA_LOGGING_START: page_size a power of two, then exactly num_ranges
 * ranges (bounded by the data before it is used), each non-empty and not
 * wrapping. ranges points into the message (unaligned: copy each). */
struct vfu_logging_start_req {
    uint64_t page_size;
    uint32_t num_ranges;
    const uint8_t *ranges;
};
int vfu_decode_logging_start(const struct vfu_feature_req *req, struct vfu_logging_start_req *out);
/* DMA_LOGGING_REPORT GET: iova, length, page_size (at least 24 bytes; the
 * rest is room for the bitmap); page_size a power of two, iova a multiple of
 * it, length non-zero and the range not wrapping. */
int vfu_decode_logging_report(const struct vfu_feature_req *req,
                              struct vfu_feature_dma_logging_report *out);

/* MIG_DATA_READ: payload exactly 8 bytes, size in 1..max_xfer (-E2BIG above),
 * argsz room for the reply (8 + size). MIG_DATA_WRITE: size in 0..max_xfer,
 * payload exactly 8 + size, argsz at least that (as libvfio-user checks);
 * data points at the bytes. */
struct vfu_mig_data_req {
    uint32_t argsz;
    uint32_t size;
    const uint8_t *data; /* writes only */
};
int vfu_decode_mig_data_read(const struct vfu_msg *msg, uint32_t max_xfer,
                             struct vfu_mig_data_req *out);
int vfu_decode_mig_data_write(const struct vfu_msg *msg, uint32_t max_xfer,
                              struct vfu_mig_data_req *out);

/* Human-readable command name for logs ("DMA_MAP"), "UNKNOWN" otherwise. */
const char *vfu_command_name(uint16_t command);
