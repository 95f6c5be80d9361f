/* SPDX-License-Identifier: MIT */
/*
 * One vfio-user connection on an sd-event loop: message framing over a
 * non-blocking UNIX stream socket, SCM_RIGHTS in both directions, and a
 * bounded output queue.
 *
 * Nothing here ever blocks the loop. Input is read with one recvmsg() into a
 * buffer that usually holds a whole message (or several), so the fast path is
 * one system call per request. A message whose header is incomplete simply
 * waits for more bytes. Replies are sent at once when the socket takes them;
 * otherwise they are queued, and while the queue is over its bound the
 * connection stops reading from this client (back-pressure on the client
 * that does not read, never on anyone else).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <systemd/sd-event.h>

#include "util/macro.h"
#include "vfu/codec.h"

struct vfu_conn;

struct vfu_conn_ops {
    /* A complete, header-checked message. msg->fds the handler does not take
     * (set to -1) are closed when it returns. The handler must not free the
     * connection; it calls vfu_conn_close() to end it. */
    void (*message)(void *opaque, struct vfu_msg *msg);
    /* The connection ended: peer hung up, an I/O error, or a framing error
     * (error < 0 says which). Called once, from the loop; the owner frees the
     * connection here or later. */
    void (*closed)(void *opaque, int error);
};

/* Take over the connected socket fd (made non-blocking here) on success;
 * on failure the caller still owns it. */
int vfu_conn_new(sd_event *event, int fd, uint32_t max_msg_size, const struct vfu_conn_ops *ops,
                 void *opaque, struct vfu_conn **ret);
void vfu_conn_free(struct vfu_conn *conn);
DEFINE_FREEP(struct vfu_conn, vfu_conn_free)

/*
 * Send one message made of iov (header first). fds ride with its first byte.
 * Sends right away when possible, queues the rest (fds are dup()ed when
 * queued; the caller keeps its own). Returns 0 or -errno; -ENOBUFS when the
 * queue is full beyond what a well-behaved client can cause.
 */
int vfu_conn_sendv(struct vfu_conn *conn, const struct iovec *iov, size_t n, const int *fds,
                   size_t nr_fds);

/* Stop: the closed callback runs from the loop soon after. */
void vfu_conn_close(struct vfu_conn *conn, int error);

/* Has the peer closed its end (or the socket failed)? Checked without waiting,
 * before the loop may have seen the hang-up. */
bool vfu_conn_peer_gone(const struct vfu_conn *conn);

/* The peer's credentials as the socket tells (SO_PEERCRED); pid 0 if unknown. */
int vfu_conn_peer(const struct vfu_conn *conn, pid_t *pid, uid_t *uid);
