/* SPDX-License-Identifier: MIT */
/*
 * The vfio-user server side of one device: a listening socket, at most one
 * client connection at a time, and the protocol state of that client
 * (negotiated caps, DMA map table, IRQ eventfds, server->client requests in
 * flight). It knows nothing of plugins or D-Bus: the device is reached
 * through struct vfu_device_ops, which device.c fills.
 *
 * On client disconnect all DMA is unmapped, IRQ eventfds are closed, the
 * device state is kept and the next client is accepted (the spec's rule). A
 * second client while one is connected is accepted and closed at once.
 *
 * Threads: everything here runs on the thread of the loop given to
 * vfu_server_new() (the device's I/O thread), as do the ops callbacks;
 * vfu_server_irq_trigger() also from any thread (see vfu/irq.h).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "util/macro.h"
#include "vfu/wire.h"

struct vfu_server;

#define VFU_MAX_SPARSE_AREAS 8
#define VFU_MAX_IO_FDS       16

struct vfu_region_desc {
    uint64_t size;  /* 0: the device lacks this region */
    uint32_t flags; /* VFIO_REGION_INFO_FLAG_READ | _WRITE (| _MMAP set by us when fd >= 0) */
    int fd;         /* mappable backing, or -1 (not owned: the device keeps it open) */
    uint64_t fd_offset;
    uint32_t nr_areas; /* sparse mmap areas; 0 with fd >= 0: the whole region */
    struct vfu_sparse_mmap_area areas[VFU_MAX_SPARSE_AREAS];
};

struct vfu_io_fd_desc {
    uint32_t region;
    uint64_t offset;
    uint64_t size;
    int fd;         /* not owned */
    uint32_t flags; /* KVM_IOEVENTFD_FLAG_DATAMATCH when datamatch applies */
    uint64_t datamatch;
};

/* What the device looks like on the wire. Fixed for the device's lifetime. */
struct vfu_device_layout {
    struct vfu_region_desc regions[VFIO_PCI_NUM_REGIONS];
    uint32_t irq_counts[VFIO_PCI_NUM_IRQS];
    uint32_t nr_io_fds;
    struct vfu_io_fd_desc io_fds[VFU_MAX_IO_FDS];
    /* VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY when the device can
     * migrate (DEVICE_FEATURE MIGRATION answers it), 0 when it cannot. */
    uint64_t migration_flags;
};

struct vfu_device_ops {
    /* A region access inside the region's size (checked here). 0 or -errno. */
    int (*region_access)(void *opaque, uint32_t index, uint64_t offset, void *buf, uint32_t count,
                         bool is_write);
    /* DEVICE_RESET: 0 done, -errno, or VFU_RESET_LATER when the device
     * answers with vfu_server_reset_done(). */
    int (*reset)(void *opaque);
    /* [iova, iova+size) is about to be unmapped. */
    void (*dma_unmap)(void *opaque, uint64_t iova, uint64_t size);
    /* A client connected (true) or went away (false). */
    void (*client_changed)(void *opaque, bool connected);

    /*
     * Migration (vfio-user migration v2, only when layout.migration_flags).
     * The server keeps the client's state machine and walks a requested
     * change arc by arc (the spec's shortest path); the device does each
     * direct arc (from -> to, both enum vfio_device_mig_state values):
     *   RUNNING->STOP, PRE_COPY->STOP_COPY  quiesce (may finish later)
     *   STOP->RUNNING                       resume
     *   RUNNING->PRE_COPY, STOP->STOP_COPY  begin saving (one data session)
     *   PRE_COPY->RUNNING, STOP_COPY->STOP  end saving (data unread is dropped)
     *   STOP->RESUMING                      begin loading
     *   RESUMING->STOP                      end loading: -errno when the
     *                                       stream is empty, cut or corrupt
     * 0 done, -EBUSY refused before anything changed (the operator
     * migrates the device: the state stays), -errno (the server goes to
     * ERROR), or VFU_MIG_LATER: the device answers with vfu_server_mig_done().
     */
    int (*mig_arc)(void *opaque, uint32_t from, uint32_t to);
    /* In a saving state: up to len next bytes of the stream; *n < len means
     * no more for now (in PRE_COPY) or at all (in STOP_COPY). 0 or -errno. */
    int (*mig_read)(void *opaque, void *buf, size_t len, size_t *n);
    /* In RESUMING: more of the stream. 0 or -errno (the stream is bad). */
    int (*mig_write)(void *opaque, const void *buf, size_t len);
    /* The client left (or the server goes) in mid session: drop any data
     * session at once, keep the device as it is (running or stopped). The
     * server then counts PRE_COPY as RUNNING, STOP_COPY as STOP and
     * RESUMING as ERROR. Also called when the server is freed while an arc
     * is deferred: that arc will never be answered. */
    void (*mig_abort)(void *opaque);
};

/* Takes listen_fd (a bound, listening UNIX stream socket) on success. The
 * DMA table is the device's (it outlives the server: plugin threads may hold
 * guest memory until the plugin is destroyed); the server fills and empties
 * it for each client. */
struct vfu_dma;
int vfu_server_new(sd_event *event, int listen_fd, const struct vfu_device_layout *layout,
                   struct vfu_dma *dma, const struct vfu_device_ops *ops, void *opaque,
                   struct vfu_server **ret);
void vfu_server_free(struct vfu_server *server);
DEFINE_FREEP(struct vfu_server, vfu_server_free)

/* Guest memory another thread held was let go (vfu_dma_set_released):
 * answer the DMA_UNMAPs that waited for it. */
void vfu_server_dma_released(struct vfu_server *server);

#define VFU_RESET_LATER 1
/* The DEVICE_RESET that ops->reset deferred is done: reply now. */
void vfu_server_reset_done(struct vfu_server *server, int status);

#define VFU_MIG_LATER 1
/* The arc that ops->mig_arc deferred is done (status 0 or -errno: ERROR):
 * walk on, or reply to the SET. When its client has gone meanwhile, the
 * state is recorded and a data session the arc opened is aborted. Ignored
 * when no arc is deferred (a reset dropped it). */
void vfu_server_mig_done(struct vfu_server *server, int status);
/* The device was reset (the client's DEVICE_RESET or the operator's): its
 * migration state machine is back at RUNNING, also from ERROR (the only
 * way out). A SET that waited for a deferred arc is answered -ECANCELED
 * and the arc is forgotten; the device must not answer it afterwards. */
void vfu_server_mig_reset(struct vfu_server *server);
/* The state the client's machine is in (enum vfio_device_mig_state). */
uint32_t vfu_server_mig_state(const struct vfu_server *server);

/* Hold (true) or release the listening socket: while held a client that
 * connects waits in the backlog, its VERSION unread (an incoming device
 * not yet loaded). Works from vfu_server_new() on; a client already
 * connected is not affected. */
void vfu_server_hold(struct vfu_server *server, bool held);

/* Credentials of the connected client (-ENOTCONN when none). */
int vfu_server_client(const struct vfu_server *server, pid_t *pid, uid_t *uid);
/* Drop the client now (device destroyed, operator request). */
void vfu_server_disconnect(struct vfu_server *server);

/* Deliver an interrupt to the client (see vfu_irqs_trigger). */
int vfu_server_irq_trigger(struct vfu_server *server, uint32_t index, uint32_t sub);
/* The device deasserted it: no longer pending (see vfu_irqs_withdraw). */
int vfu_server_irq_withdraw(struct vfu_server *server, uint32_t index, uint32_t sub);

/* Guest memory access for the device; semantics of muserd_host_services. */
typedef void (*vfu_dma_done_fn)(void *opaque, int status);
int vfu_server_dma_translate(struct vfu_server *server, uint64_t iova, uint64_t len, uint32_t prot,
                             void **ptr);
int vfu_server_dma_rw(struct vfu_server *server, uint64_t iova, void *buf, size_t len,
                      bool is_write, vfu_dma_done_fn done, void *opaque);
