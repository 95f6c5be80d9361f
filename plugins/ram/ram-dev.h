/* SPDX-License-Identifier: MIT */
/*
 * The ram device model's state, shared by its files: ram.c (registers,
 * create/destroy), ram-dma.c (the DMA engine) and ram-state.c (migration).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <muserd/plugin.h>

#include "ram-regs.h"

/* The header chunk of the state stream: fixed layout, little-endian. */
#define RAM_STATE_MAGIC   0x54534d52u /* "RMST" */
#define RAM_STATE_VERSION 1u

#define RAM_STATE_TO_GUEST     (1u << 0)
#define RAM_STATE_IRQ_DEFERRED (1u << 1)

struct ram_state {
    uint32_t magic;
    uint32_t version;
    uint32_t scratch;
    uint32_t doorbell_count;
    uint32_t dma_len;
    uint32_t dma_ctrl;
    uint32_t dma_status;
    uint32_t xfer_len;
    uint32_t xfer_done;
    uint32_t flags; /* RAM_STATE_* */
    uint64_t dma_addr;
    uint64_t dma_offset;
    uint64_t xfer_addr;
    uint64_t xfer_offset;
    uint64_t ram_size; /* must match the destination's "size" */
};
_Static_assert(sizeof(struct ram_state) == 80, "ram state layout is fixed");

/* The first try at a DMA chunk; halved while the host says it is too big. */
#define RAM_DMA_CHUNK     (64u * 1024u)
#define RAM_DMA_MIN_CHUNK 512u
/* The DMA poller sleeps this long after a transfer has nothing to do. */
#define RAM_DMA_POLL_IDLE_USEC 100u

struct ram_dev {
    struct muserd_host *host;
    const struct muserd_host_services *svc;

    uint64_t size;
    int mem_fd;
    uint8_t *mem;
    int doorbell_fd;
    struct muserd_watch *doorbell_watch;
    struct muserd_poller *dma_poller; /* NULL: the host has no pollers */

    uint32_t scratch;
    uint32_t doorbell_count;

    /* DMA registers, as the guest last wrote them. */
    uint64_t dma_addr;
    uint64_t dma_offset;
    uint32_t dma_len;
    uint32_t dma_ctrl; /* TO_GUEST only: GO is an action, not state */
    uint32_t dma_status;

    /* The running transfer, latched at GO so later register writes do not bend it. */
    uint64_t xfer_addr;
    uint64_t xfer_offset;
    uint32_t xfer_len;
    uint32_t xfer_done;
    bool xfer_to_guest;
    uint32_t chunk;
    uint32_t in_flight_len; /* 0: no asynchronous chunk outstanding */
    /* Asynchronous completions of transfers abandoned by reset or load, still
     * to arrive; each one is dropped. The host completes them in order. */
    uint32_t stale_completions;
    bool irq_deferred; /* completion interrupt held back while quiesced */
    bool quiesced;

    /* The state stream in progress (ram-state.c). */
    bool save_header_sent;
    uint64_t save_offset;
    bool load_header_seen;
    struct ram_state load_header; /* checked, applied at the end */
    uint64_t load_offset;
};

/* ram-dma.c */
/* Raise the completion interrupt, or hold it back while quiesced. */
void ram_raise(struct ram_dev *d);
/* Start the transfer the guest's registers describe (DMA_CTRL GO). */
void ram_dma_go(struct ram_dev *d);
/* Move the running transfer on as far as it can go now. */
void ram_dma_run(struct ram_dev *d);
/* The DMA poller's round (muserd_poll_fn). */
int ram_dma_poll(void *opaque);
void ram_dma_abandon(struct ram_dev *d);

/* ram.c */
/* Count the rings that came through the eventfd so far. */
void ram_doorbell_drain(struct ram_dev *d);

/* ram-state.c: the device's state stream (ops->state_*). */
int ram_state_save(void *dev, enum muserd_state_phase phase, void *buf, size_t len,
                   size_t *written);
int ram_state_save_begin(void *dev);
int ram_state_pending(void *dev, enum muserd_state_phase phase, uint64_t *bytes);
int ram_state_load(void *dev, const void *buf, size_t len);
int ram_state_load_end(void *dev);
