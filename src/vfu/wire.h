/* SPDX-License-Identifier: MIT */
/*
 * vfio-user on-wire structures (qemu docs/interop/vfio-user.rst). All data is
 * in host byte order. Every size and offset the spec fixes is static_assert'ed
 * so a layout mistake fails the build. Flag values the spec takes from VFIO
 * come from <linux/vfio.h>.
 */
#pragma once

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/vfio.h>

enum vfu_command {
    VFU_CMD_VERSION = 1,
    VFU_CMD_DMA_MAP = 2,
    VFU_CMD_DMA_UNMAP = 3,
    VFU_CMD_DEVICE_GET_INFO = 4,
    VFU_CMD_DEVICE_GET_REGION_INFO = 5,
    VFU_CMD_DEVICE_GET_REGION_IO_FDS = 6,
    VFU_CMD_DEVICE_GET_IRQ_INFO = 7,
    VFU_CMD_DEVICE_SET_IRQS = 8,
    VFU_CMD_REGION_READ = 9,
    VFU_CMD_REGION_WRITE = 10,
    VFU_CMD_DMA_READ = 11,
    VFU_CMD_DMA_WRITE = 12,
    VFU_CMD_DEVICE_RESET = 13,
    VFU_CMD_DIRTY_PAGES = 14, /* withdrawn from the spec; answered ENOTSUP */
    VFU_CMD_REGION_WRITE_MULTI = 15,
    VFU_CMD_DEVICE_FEATURE = 16,
    VFU_CMD_MIG_DATA_READ = 17,
    VFU_CMD_MIG_DATA_WRITE = 18,
    VFU_CMD_MAX,
};

/* Header flags. */
#define VFU_FLAG_TYPE_MASK    0xfu
#define VFU_FLAG_TYPE_COMMAND 0x0u
#define VFU_FLAG_TYPE_REPLY   0x1u
#define VFU_FLAG_NO_REPLY     0x10u
#define VFU_FLAG_ERROR        0x20u

struct vfu_header {
    uint16_t msg_id;
    uint16_t command;
    uint32_t msg_size; /* whole message, header included */
    uint32_t flags;
    uint32_t error; /* errno, in replies with VFU_FLAG_ERROR */
};
static_assert(sizeof(struct vfu_header) == 16, "header is 16 bytes");
static_assert(offsetof(struct vfu_header, msg_size) == 4, "msg_size at 4");
static_assert(offsetof(struct vfu_header, error) == 12, "error at 12");

/* VERSION */
#define VFU_VERSION_MAJOR 0
#define VFU_VERSION_MINOR 1
struct vfu_version {
    uint16_t major;
    uint16_t minor;
    char data[]; /* optional NUL-terminated JSON */
};
static_assert(sizeof(struct vfu_version) == 4, "version is 4 bytes + JSON");

/* Capability defaults the spec fixes for a peer that does not state them. */
#define VFU_DEFAULT_MAX_MSG_FDS   1
#define VFU_DEFAULT_MAX_DATA_XFER 1048576u
#define VFU_DEFAULT_MAX_DMA_MAPS  65535u
#define VFU_DEFAULT_PGSIZES       4096u

/* DMA_MAP */
#define VFU_DMA_FLAG_READ  (1u << 0)
#define VFU_DMA_FLAG_WRITE (1u << 1)
struct vfu_dma_map {
    uint32_t argsz;
    uint32_t flags;
    uint64_t offset;
    uint64_t address;
    uint64_t size;
};
static_assert(sizeof(struct vfu_dma_map) == 32, "dma map is 32 bytes");
static_assert(offsetof(struct vfu_dma_map, address) == 16, "address at 16");

/* DMA_UNMAP. QEMU sends VFIO_DMA_UNMAP_FLAG_ALL with address and size 0. */
struct vfu_dma_unmap {
    uint32_t argsz;
    uint32_t flags;
    uint64_t address;
    uint64_t size;
};
static_assert(sizeof(struct vfu_dma_unmap) == 24, "dma unmap is 24 bytes");

/* DEVICE_GET_INFO: the spec's 16 bytes, not the kernel's longer struct. */
struct vfu_device_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t num_regions;
    uint32_t num_irqs;
};
static_assert(sizeof(struct vfu_device_info) == 16, "device info is 16 bytes");

/* DEVICE_GET_REGION_INFO: struct vfio_region_info, then capabilities. */
struct vfu_region_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t cap_offset;
    uint64_t size;
    uint64_t offset;
};
static_assert(sizeof(struct vfu_region_info) == 32, "region info is 32 bytes");
static_assert(sizeof(struct vfu_region_info) == sizeof(struct vfio_region_info),
              "same as the kernel's region info");

struct vfu_cap_header {
    uint16_t id;
    uint16_t version;
    uint32_t next;
};
static_assert(sizeof(struct vfu_cap_header) == 8, "cap header is 8 bytes");

struct vfu_sparse_mmap_area {
    uint64_t offset;
    uint64_t size;
};
struct vfu_cap_sparse_mmap {
    struct vfu_cap_header header;
    uint32_t nr_areas;
    uint32_t reserved;
    struct vfu_sparse_mmap_area areas[];
};
static_assert(sizeof(struct vfu_cap_sparse_mmap) == 16, "sparse mmap cap is 16 bytes");

/* DEVICE_GET_REGION_IO_FDS */
#define VFU_IO_FD_TYPE_IOEVENTFD  0
#define VFU_IO_FD_TYPE_IOREGIONFD 1
struct vfu_region_io_fds_request {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t count;
};
static_assert(sizeof(struct vfu_region_io_fds_request) == 16, "io fds request is 16 bytes");
struct vfu_sub_region_ioeventfd {
    uint64_t offset;
    uint64_t size;
    uint32_t fd_index;
    uint32_t type;
    uint32_t flags;
    uint32_t padding;
    uint64_t datamatch;
};
static_assert(sizeof(struct vfu_sub_region_ioeventfd) == 40, "sub-region is 40 bytes");

/* DEVICE_GET_IRQ_INFO */
struct vfu_irq_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t count;
};
static_assert(sizeof(struct vfu_irq_info) == 16, "irq info is 16 bytes");

/* DEVICE_SET_IRQS */
struct vfu_irq_set {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t start;
    uint32_t count;
    uint8_t data[];
};
static_assert(offsetof(struct vfu_irq_set, data) == 20, "irq set data at 20");

/* REGION_READ / REGION_WRITE */
struct vfu_region_access {
    uint64_t offset;
    uint32_t region;
    uint32_t count;
    uint8_t data[];
};
static_assert(sizeof(struct vfu_region_access) == 16, "region access is 16 bytes");

/* REGION_WRITE_MULTI */
#define VFU_WRITE_MULTI_DATA 8
#define VFU_WRITE_MULTI_MAX  200 /* what QEMU coalesces at most; we accept up to this */
struct vfu_write_one {
    uint64_t offset;
    uint32_t region;
    uint32_t count;
    uint8_t data[VFU_WRITE_MULTI_DATA];
};
static_assert(sizeof(struct vfu_write_one) == 24, "one coalesced write is 24 bytes");
struct vfu_write_multi {
    uint64_t wr_cnt;
    struct vfu_write_one wrs[];
};
static_assert(sizeof(struct vfu_write_multi) == 8, "write multi header is 8 bytes");

/*
 * DMA_READ / DMA_WRITE (server -> client).
 *
 * The spec gives a 64-bit count at offset 8 and the data at offset 16 of the
 * payload. QEMU (hw/vfio-user: VFIOUserDMARW) declares a 32-bit count after the
 * address and a flexible data array right behind it, so it reads and writes the
 * data at payload offset 12, and its struct (with tail padding) is 16 bytes.
 *
 * Only QEMU implements these messages among the real clients (SPDK and
 * cloud-hypervisor always share memory with fds), so muserd speaks QEMU's
 * layout, and words it so a spec reader parses as much as possible the same:
 *  - DMA_READ request: address, then count as a 64-bit value. On a little-endian
 *    host its low half is QEMU's u32 count and the high half (zero: counts are
 *    bounded by max_data_xfer_size) is QEMU's padding. Payload 16 bytes either way.
 *  - DMA_READ reply: QEMU answers 16 + 16 + count bytes with the data at payload
 *    offset 12; we take it from there.
 *  - DMA_WRITE request: the data at payload offset 12, then 4 bytes of padding:
 *    QEMU refuses (E2BIG) a count above the message size less its padded
 *    32-byte struct, so the message is 16 + 16 + count bytes.
 *  - DMA_WRITE reply: QEMU sends the bare header; anything without the error
 *    flag is success.
 */
struct vfu_dma_rw_spec {
    uint64_t address;
    uint64_t count;
    uint8_t data[];
};
static_assert(sizeof(struct vfu_dma_rw_spec) == 16, "spec dma rw is 16 bytes");
#define VFU_DMA_RW_QEMU_DATA_OFFSET 12
#define VFU_DMA_RW_QEMU_STRUCT_SIZE 16
/* Server->client DMA requests in flight per client; more get -EBUSY. */
#define VFU_MAX_REMOTE_DMA 64

/* DEVICE_FEATURE: flags hold the feature index (VFIO_DEVICE_FEATURE_MASK)
 * and VFIO_DEVICE_FEATURE_GET / _SET / _PROBE. */
struct vfu_device_feature {
    uint32_t argsz;
    uint32_t flags;
    uint8_t data[];
};
static_assert(sizeof(struct vfu_device_feature) == 8, "device feature is 8 bytes");

/* Feature indexes vfio-user uses (VFIO's numbers). */
#define VFU_FEATURE_MIGRATION          1
#define VFU_FEATURE_MIG_DEVICE_STATE   2
#define VFU_FEATURE_DMA_LOGGING_START  6
#define VFU_FEATURE_DMA_LOGGING_STOP   7
#define VFU_FEATURE_DMA_LOGGING_REPORT 8

/* VFU_FEATURE_MIGRATION's flags. Debian 12's <linux/vfio.h> predates PRE_COPY. */
#define VFU_MIGRATION_STOP_COPY (1u << 0)
#define VFU_MIGRATION_P2P       (1u << 1)
#define VFU_MIGRATION_PRE_COPY  (1u << 2)
struct vfu_feature_migration {
    uint64_t flags;
};
static_assert(sizeof(struct vfu_feature_migration) == 8, "migration feature is 8 bytes");

/* The migration state machine (enum vfio_device_mig_state). */
enum vfu_mig_state {
    VFU_MIG_ERROR = 0,
    VFU_MIG_STOP = 1,
    VFU_MIG_RUNNING = 2,
    VFU_MIG_STOP_COPY = 3,
    VFU_MIG_RESUMING = 4,
    VFU_MIG_RUNNING_P2P = 5, /* not used in vfio-user */
    VFU_MIG_PRE_COPY = 6,
    VFU_MIG_PRE_COPY_P2P = 7, /* not used in vfio-user */
};
struct vfu_feature_mig_state {
    uint32_t device_state;
    uint32_t data_fd; /* unused in vfio-user */
};
static_assert(sizeof(struct vfu_feature_mig_state) == 8, "mig state is 8 bytes");

struct vfu_dma_logging_range {
    uint64_t iova;
    uint64_t length;
};
static_assert(sizeof(struct vfu_dma_logging_range) == 16, "logging range is 16 bytes");
struct vfu_feature_dma_logging_control {
    uint64_t page_size;
    uint32_t num_ranges;
    uint32_t reserved;
    struct vfu_dma_logging_range ranges[];
};
static_assert(sizeof(struct vfu_feature_dma_logging_control) == 16, "logging control is 16 bytes");
struct vfu_feature_dma_logging_report {
    uint64_t iova;
    uint64_t length;
    uint64_t page_size;
    uint64_t bitmap[];
};
static_assert(sizeof(struct vfu_feature_dma_logging_report) == 24, "logging report is 24 bytes");

/* MIG_DATA_READ request; its reply and MIG_DATA_WRITE add the data. */
struct vfu_mig_data {
    uint32_t argsz;
    uint32_t size;
    uint8_t data[];
};
static_assert(sizeof(struct vfu_mig_data) == 8, "mig data is 8 bytes");

/* The "migration" capability muserd offers in VERSION (what QEMU accepts:
 * pgsize a multiple of 4096, max_bitmap_size at most 256 MiB). */
#define VFU_MIGRATION_PGSIZE     4096u
#define VFU_MIGRATION_MAX_BITMAP (256u * 1024u * 1024u)

/* The largest message muserd accepts from a client: a REGION_WRITE of the
 * largest max_data_xfer_size we offer, plus headers. Bigger ones drop the client. */
#define VFU_SERVER_MAX_DATA_XFER (1024u * 1024u)
#define VFU_MAX_MSG_SIZE         (VFU_SERVER_MAX_DATA_XFER + 4096u)
/* File descriptors accepted in one message: SET_IRQS for a full MSI-X table
 * sends one per vector in batches of max_msg_fds. */
#define VFU_SERVER_MAX_MSG_FDS 16
