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
    /* Migration v2: the device's state machine, which outlives clients. A
     * SET walks arc by arc to mig_target and is answered when it gets there
     * (or fails); while the device finishes an arc later, mig_pending. */
    uint32_t mig_state;
    uint32_t mig_target;
    uint32_t mig_arc_to; /* the arc the device finishes, while mig_pending */
    bool mig_pending;
    bool mig_reply_due; /* the client that sent the SET is still here */
    struct vfu_header mig_hdr;
    struct vfu_device_feature mig_feature; /* the SET's, echoed in the reply */
    struct vfu_feature_mig_state mig_req;
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

/* migration.c: DEVICE_FEATURE and the migration data stream. */
int vfu_handle_device_feature(struct vfu_server *s, struct vfu_msg *msg);
int vfu_handle_mig_data_read(struct vfu_server *s, struct vfu_msg *msg);
int vfu_handle_mig_data_write(struct vfu_server *s, struct vfu_msg *msg);
/* The client went away: its SET gets no reply, its data session ends. */
void vfu_mig_client_gone(struct vfu_server *s);
/* The server goes: end whatever the device still does for migration. */
void vfu_mig_server_gone(struct vfu_server *s);
/* Reply to a DEVICE_FEATURE: its header with argsz covering the payload
 * (header + iov), flags as the request had them. */
int vfu_reply_feature(struct vfu_server *s, const struct vfu_msg *msg, const struct iovec *iov,
                      size_t n);
/* Reply with the request's own payload (SET and PROBE). */
int vfu_reply_echo(struct vfu_server *s, const struct vfu_msg *msg);

/* feature-logging.c: DMA_LOGGING_START / _STOP (SET) and _REPORT (GET). */
int vfu_feature_logging_start(struct vfu_server *s, const struct vfu_msg *msg,
                              const struct vfu_feature_req *req);
int vfu_feature_logging_stop(struct vfu_server *s, const struct vfu_msg *msg,
                             const struct vfu_feature_req *req);
int vfu_feature_logging_report(struct vfu_server *s, const struct vfu_msg *msg,
                               const struct vfu_feature_req *req);

/* A reply from the client to one of our DMA_READ/DMA_WRITE commands. */
void vfu_remote_on_reply(struct vfu_server *s, const struct vfu_msg *msg);
/* Fail every request in flight (client gone). */
void vfu_remote_cancel_all(struct vfu_server *s);
