/* SPDX-License-Identifier: MIT */
/*
 * Register layout of the muserd "ram" device model, as a guest driver (and the
 * tests) see it. Documented in muserd-plugin(7), section RAM DEVICE.
 *
 * BAR0 is a 4 KiB page of trapped registers; all are little-endian and take
 * 4- or 8-byte accesses at 4-byte-aligned offsets (other widths read as zero
 * and ignore writes). 64-bit registers may be accessed as two 32-bit halves.
 * BAR2 (64-bit, prefetchable) is the RAM itself, backed by a memfd the client
 * may mmap. BAR4 holds the MSI-X table and PBA, emulated by muserd.
 */
#pragma once

/* Not a PCI-SIG assigned vendor ID: 'MU', for demonstration devices only. */
#define RAM_PCI_VENDOR_ID 0x4d55
#define RAM_PCI_DEVICE_ID 0x0002
#define RAM_PCI_CLASS     0xff0000 /* unassigned class: no guest driver binds by class */

#define RAM_REGS_BAR     0
#define RAM_REGS_SIZE    0x1000
#define RAM_MEM_BAR      2
#define RAM_MSIX_BAR     4
#define RAM_MSIX_SIZE    0x1000
#define RAM_MSIX_TABLE   0x000
#define RAM_MSIX_PBA     0x800
#define RAM_MSI_VECTORS  1
#define RAM_MSIX_VECTORS 1

/* The "size" config key: a power of two in [RAM_SIZE_MIN, RAM_SIZE_MAX]. */
#define RAM_SIZE_MIN     4096ull
#define RAM_SIZE_MAX     (1ull << 30)
#define RAM_SIZE_DEFAULT (1ull << 20)

#define RAM_REG_ID             0x00 /* RO u32: RAM_ID_MAGIC */
#define RAM_REG_VERSION        0x04 /* RO u32: register layout version, RAM_VERSION */
#define RAM_REG_SIZE           0x08 /* RO u64: size of the RAM BAR in bytes */
#define RAM_REG_SCRATCH        0x10 /* RW u32: no effect, for the guest's own use */
#define RAM_REG_DOORBELL_COUNT 0x14 /* RO u32: doorbell rings since reset, wraps */
#define RAM_REG_DOORBELL       0x18 /* WO u32: any write rings; reads 0; has an ioeventfd */
#define RAM_REG_DMA_ADDR       0x20 /* RW u64: guest (IO virtual) address */
#define RAM_REG_DMA_OFFSET     0x28 /* RW u64: offset in the RAM BAR */
#define RAM_REG_DMA_LEN        0x30 /* RW u32: bytes to copy */
#define RAM_REG_DMA_CTRL       0x34 /* RW u32: RAM_DMA_CTRL_*; GO reads as 0 */
#define RAM_REG_DMA_STATUS     0x38 /* RO/RW1C u32: RAM_DMA_STATUS_* */

#define RAM_ID_MAGIC 0x314d4152u /* "RAM1" in memory order */
#define RAM_VERSION  1u

/* Start a transfer with the current ADDR/OFFSET/LEN. Ignored while BUSY. */
#define RAM_DMA_CTRL_GO (1u << 0)
/* Direction: 0 copies guest memory into the RAM, 1 copies the RAM to the guest. */
#define RAM_DMA_CTRL_TO_GUEST (1u << 1)
#define RAM_DMA_CTRL_MASK     (RAM_DMA_CTRL_GO | RAM_DMA_CTRL_TO_GUEST)

#define RAM_DMA_STATUS_BUSY        (1u << 0) /* RO: a transfer is running */
#define RAM_DMA_STATUS_DONE        (1u << 1) /* RW1C: the last transfer completed */
#define RAM_DMA_STATUS_ERROR       (1u << 2) /* RW1C: the last transfer failed */
#define RAM_DMA_STATUS_ERRNO_SHIFT 8         /* RO: errno of the failure, bits 8..15 */
#define RAM_DMA_STATUS_ERRNO_MASK  (0xffu << RAM_DMA_STATUS_ERRNO_SHIFT)
