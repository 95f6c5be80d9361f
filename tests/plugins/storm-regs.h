/* SPDX-License-Identifier: MIT */
/* Registers of the "storm" test device (tests/plugins/storm.c), BAR 0. */
#pragma once

#define STORM_REGS_BAR   0
#define STORM_REGS_SIZE  4096
#define STORM_MSIX_BAR   1
#define STORM_MSIX_SIZE  4096
#define STORM_MSIX_TABLE 0x000
#define STORM_MSIX_PBA   0x800
#define STORM_VECTORS    2

/* Write: bit 0 runs the raiser thread (0 stops it and waits for it), bit 1
 * starts the holder thread with the HOLD_* registers. The raiser also wakes
 * the poller. */
#define STORM_REG_CTRL   0x00
#define STORM_CTRL_RAISE 0x1u
#define STORM_CTRL_HOLD  0x2u
/* u64: raises of vector 0 from the raiser thread that returned 0 */
#define STORM_REG_RAISES 0x08
/* The holder: dma_get() [IOVA, IOVA+LEN) for writing, fill it with
 * STORM_HOLD_BYTE, sleep MS milliseconds, dma_put(written). */
#define STORM_REG_HOLD_IOVA   0x10 /* RW */
#define STORM_REG_HOLD_LEN    0x18
#define STORM_REG_HOLD_MS     0x20
#define STORM_REG_HOLD_STATUS 0x24 /* STORM_HOLD_*, or 0x100 + errno */
#define STORM_HOLD_IDLE       0
#define STORM_HOLD_HOLDING    1
#define STORM_HOLD_DONE       2
#define STORM_HOLD_BYTE       0xa5
/* u64: rounds of the device's poller, which the raiser thread wakes at each
 * raise (poller_wake from another thread), and the holder once when it
 * ends; it sleeps when idle. */
#define STORM_REG_POLLS 0x28
/* u32: resets that arrived while the holder still held guest memory, which
 * a host that waits for quiesce_done() never lets happen. Reset keeps it. */
#define STORM_REG_EARLY_RESETS 0x30
