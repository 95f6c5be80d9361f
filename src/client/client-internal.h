/* SPDX-License-Identifier: MIT */
/*
 * What the client's source files share: the connection state, the framing
 * layer (client.c), the served DMA maps (client-dma.c) and the typed commands
 * (client-ops.c, client-negotiate.c). Not installed, not for users.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "client/client.h"

/* The kernel passes at most SCM_MAX_FD (253) descriptors in one message. */
#define CLIENT_MAX_RECV_FDS 253
/* The most a server's max_data_xfer_size may raise our transfers to. */
#define CLIENT_MAX_DATA_XFER (64u * 1024u * 1024u)

/* A map the client serves DMA_READ / DMA_WRITE from (DMA_MAP without an fd). */
struct client_local_map {
    uint64_t iova;
    uint64_t size;
    uint32_t prot;
    uint8_t *local;
};

struct vfu_client {
    int fd;
    uint16_t next_id;

    /* Limits: the spec's defaults until VERSION tells us the server's. */
    uint32_t max_msg_fds;
    uint32_t max_data_xfer;
    /* What we promised the server it may ask in one DMA_READ/WRITE. */
    uint32_t our_max_data_xfer;

    /*
     * Receive buffer: bytes [rstart, rend) of rbuf are read but not yet
     * consumed; rpos is the stream offset of rbuf[rstart]. A message handed
     * out in place stays valid until the next receive, which drops it first.
     */
    uint8_t *rbuf;
    size_t rcap, rstart, rend, rdrop;
    uint64_t rpos;

    /*
     * fds that came with one recvmsg(), and the stream range [fd_from, fd_to)
     * that read covered. The kernel ends a read right after the data that
     * carried fds, and a sender attaches them to the first byte of a message,
     * so they belong to the last message that starts inside that range.
     */
    int pending_fds[CLIENT_MAX_RECV_FDS];
    size_t nr_pending_fds;
    uint64_t fd_from, fd_to;

    struct client_local_map *maps;
    size_t nr_maps, cap_maps;
    uint64_t dma_served;
};

/* One received message, in place in the receive buffer. */
struct client_msg {
    const struct vfu_header *hdr;
    const uint8_t *payload;
    size_t len; /* payload bytes */
    int fds[CLIENT_MAX_RECV_FDS];
    size_t nr_fds; /* owned by whoever holds the message */
};

void client_msg_close_fds(struct client_msg *m);

/* Send header + iov (fds as SCM_RIGHTS); *msg_id gets the id used. */
int client_send(struct vfu_client *c, uint16_t command, uint32_t flags, const struct iovec *iov,
                size_t iovcnt, const int *fds, size_t nr_fds, uint16_t *msg_id);

/* Answer the server's command cmd (no-op when it asked for no reply); an
 * error sends just the header with the error flag. */
int client_reply(struct vfu_client *c, const struct vfu_header *cmd, uint32_t error,
                 const struct iovec *iov, size_t iovcnt);

/*
 * Wait for the next reply (any id when want_id < 0), serving the server's
 * commands meanwhile. The reply stays in place until the next receive.
 * An error reply is returned as a message too: the caller looks at flags.
 */
int client_wait_reply(struct vfu_client *c, int want_id, struct client_msg *reply);

/*
 * Send a command and wait for its reply in place. An error reply closes its
 * fds and returns -(its errno); a reply of another type than a reply to us
 * is -EPROTO.
 */
int client_transact(struct vfu_client *c, uint16_t command, const struct iovec *iov, size_t iovcnt,
                    const int *fds, size_t nr_fds, struct client_msg *reply);

/* client-dma.c: answer a DMA_READ/DMA_WRITE from the server. */
int client_serve_dma(struct vfu_client *c, const struct client_msg *cmd);
int client_map_add(struct vfu_client *c, uint64_t iova, uint64_t size, uint32_t prot, void *local);
void client_map_remove(struct vfu_client *c, uint64_t iova, uint64_t size, uint32_t flags);
