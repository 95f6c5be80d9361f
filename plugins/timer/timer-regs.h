/* SPDX-License-Identifier: MIT */
/*
 * Register layout of the muserd "timer" device model, as a guest driver (and
 * the tests) see it. Documented in muserd-plugin(7), section TIMER DEVICE.
 *
 * BAR0 is a 4 KiB page of trapped registers; all are little-endian and take
 * 4- or 8-byte accesses at 4-byte-aligned offsets (other widths read as zero
 * and ignore writes). 64-bit registers may be accessed as two 32-bit halves.
 * BAR1 holds the MSI-X table and PBA, emulated by muserd.
 */
#pragma once

/* Not a PCI-SIG assigned vendor ID: 'MU', for demonstration devices only. */
#define TIMER_PCI_VENDOR_ID 0x4d55
#define TIMER_PCI_DEVICE_ID 0x0001
#define TIMER_PCI_CLASS     0xff0000 /* unassigned class: no guest driver binds by class */

#define TIMER_REGS_BAR     0
#define TIMER_REGS_SIZE    0x1000
#define TIMER_MSIX_BAR     1
#define TIMER_MSIX_SIZE    0x1000
#define TIMER_MSIX_TABLE   0x000
#define TIMER_MSIX_PBA     0x800
#define TIMER_MSI_VECTORS  1
#define TIMER_MSIX_VECTORS 2

#define TIMER_REG_ID      0x00 /* RO u32: TIMER_ID_MAGIC */
#define TIMER_REG_VERSION 0x04 /* RO u32: register layout version, TIMER_VERSION */
#define TIMER_REG_CTRL    0x08 /* RW u32: TIMER_CTRL_* */
#define TIMER_REG_STATUS  0x0c /* RW1C u32: TIMER_STATUS_* */
/* RO u64: device clock, ns since reset. Reading the low half latches the high
 * half, so a low-then-high pair (or one 8-byte read) never tears. */
#define TIMER_REG_NOW        0x10
#define TIMER_REG_DEADLINE   0x18 /* RW u64: fire when NOW >= DEADLINE */
#define TIMER_REG_INTERVAL   0x20 /* RW u64: period in ns for TIMER_CTRL_PERIODIC */
#define TIMER_REG_VECTOR     0x28 /* RW u32: interrupt vector, 0 or 1 (bit 0 only) */
#define TIMER_REG_FIRE_COUNT 0x2c /* RO u32: expirations since reset, wraps */

#define TIMER_ID_MAGIC 0x524d4954u /* "TIMR" in memory order */
#define TIMER_VERSION  1u

/* Arm the timer. Cleared by the device when a one-shot timer fires. */
#define TIMER_CTRL_ENABLE (1u << 0)
/* On expiry advance DEADLINE by INTERVAL and stay armed (INTERVAL 0: one-shot). */
#define TIMER_CTRL_PERIODIC (1u << 1)
#define TIMER_CTRL_MASK     (TIMER_CTRL_ENABLE | TIMER_CTRL_PERIODIC)

/* Set on expiry; write 1 to clear, which also deasserts INTx. */
#define TIMER_STATUS_FIRED (1u << 0)

#define TIMER_VECTOR_MASK 0x1u

/* Smallest period the device runs at: a shorter INTERVAL reads back as written
 * but expires at this period, so a guest cannot make the host spin. */
#define TIMER_MIN_INTERVAL_NS 10000u
