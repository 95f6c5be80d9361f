/* SPDX-License-Identifier: MIT */
/*
 * State shared by the files that make up the vfio-user server (server.c:
 * lifecycle and dispatch; region.c: region and device info, region I/O;
 * dma-remote.c: server->client DMA). Not for use outside src/vfu/.
 */
#pragma once

#include "vfu/conn.h"
#include "vfu/dma.h"
#include "vfu/irq.h"
#include "vfu/negotiate.h"
#include "vfu/server.h"

struct remote_req;

/* A DMA_UNMAP answered once no other thread holds what it removed. */
struct deferred_unmap {
    struct deferred_unmap *next;
    struct vfu_header hdr; /* the request's */
    struct vfu_dma_unmap req;
    uint64_t seq; /* vfu_dma_unmap_seq() after it */
};

struct vfu_server {
    sd_event *event;
    sd_event_source *listen_source;
    int listen_fd;
    struct vfu_device_layout layout;
    const struct vfu_device_ops *ops;
    void *opaque;

    /* The connected client, if any, and what it negotiated. */
    struct vfu_conn *conn;
    bool negotiated;
    struct vfu_session_caps caps;
    struct vfu_dma *dma;           /* the device's; emptied on disconnect */
    struct deferred_unmap *unmaps; /* DMA_UNMAP replies waiting for users */
    uint64_t unmap_floor;          /* the unmap seq this client began at */
    bool reset_pending;            /* DEVICE_RESET waits for vfu_server_reset_done() */
    struct vfu_header reset_hdr;
    struct vfu_irqs *irqs;
    /* The INTx unmask eventfd (KVM's resample fd): a guest EOI unmasks INTx. */
    sd_event_source *intx_unmask_source;
    struct remote_req *remote; /* server->client requests awaiting replies */
    uint32_t nr_remote;        /* how many; at most VFU_MAX_REMOTE_DMA */
    uint16_t next_msg_id;
};

/* Reply to msg with payload (iov, may be empty) and fds. Nothing is sent for
 * a command that asked for no reply. */
int vfu_reply(struct vfu_server *s, const struct vfu_msg *msg, const struct iovec *iov, size_t n,
              const int *fds, size_t nr_fds);
int vfu_reply_error(struct vfu_server *s, const struct vfu_msg *msg, int error);

/* Command handlers: 0 after replying, or -errno for the dispatcher to reply with. */
int vfu_handle_device_info(struct vfu_server *s, struct vfu_msg *msg);
int vfu_handle_region_info(struct vfu_server *s, struct vfu_msg *msg);
int vfu_handle_region_io_fds(struct vfu_server *s, struct vfu_msg *msg);
int vfu_handle_region_read(struct vfu_server *s, struct vfu_msg *msg);
int vfu_handle_region_write(struct vfu_server *s, struct vfu_msg *msg);
int vfu_handle_write_multi(struct vfu_server *s, struct vfu_msg *msg);

/* A reply from the client to one of our DMA_READ/DMA_WRITE commands. */
void vfu_remote_on_reply(struct vfu_server *s, const struct vfu_msg *msg);
/* Fail every request in flight (client gone). */
void vfu_remote_cancel_all(struct vfu_server *s);
