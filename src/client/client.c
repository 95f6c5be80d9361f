/* SPDX-License-Identifier: MIT */
/*
 * The client's framing layer: connect, send a message with fds, receive
 * messages from a buffer so that a small reply costs one recvmsg(), match
 * replies to commands by id, and serve the server's own commands on the way.
 */
#include "client/client-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/log.h"
#include "util/macro.h"

#define CLIENT_RBUF_INITIAL (64u * 1024u)
#define CLIENT_MAX_IOV      8

int vfu_client_new_from_fd(int fd, struct vfu_client **ret)
{
    _cleanup_close_ int owned = fd;

    if (fd < 0 || !ret)
        return -EINVAL;

    /* Every call here waits for its answer; a non-blocking socket would
     * turn a slow server into EAGAIN instead. */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (fl & O_NONBLOCK && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0))
        return -errno;

    struct vfu_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->rbuf = malloc(CLIENT_RBUF_INITIAL);
    if (!c->rbuf) {
        free(c);
        return -ENOMEM;
    }
    c->rcap = CLIENT_RBUF_INITIAL;
    c->fd = TAKE_FD(owned);
    c->next_id = 1;
    c->max_msg_fds = VFU_DEFAULT_MAX_MSG_FDS;
    c->max_data_xfer = VFU_DEFAULT_MAX_DATA_XFER;
    c->our_max_data_xfer = VFU_DEFAULT_MAX_DATA_XFER;
    *ret = c;
    return 0;
}

int vfu_client_connect(const char *socket_path, struct vfu_client **ret)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (!socket_path || !ret)
        return -EINVAL;
    if (strlen(socket_path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, socket_path);

    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    return vfu_client_new_from_fd(TAKE_FD(fd), ret);
}

void vfu_client_free(struct vfu_client *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nr_pending_fds; i++)
        safe_close(c->pending_fds[i]);
    safe_close(c->fd);
    free(c->rbuf);
    free(c->maps);
    free(c);
}

int vfu_client_fd(const struct vfu_client *c)
{
    return c ? c->fd : -EINVAL;
}

uint64_t vfu_client_dma_served(const struct vfu_client *c)
{
    return c ? c->dma_served : 0;
}

void client_msg_close_fds(struct client_msg *m)
{
    for (size_t i = 0; i < m->nr_fds; i++)
        safe_close(m->fds[i]);
    m->nr_fds = 0;
}

/* sendmsg() the whole of iov, fds with the first byte; iov is consumed. */
static int send_all(int fd, struct iovec *iov, size_t iovcnt, const int *fds, size_t nr_fds)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * CLIENT_MAX_RECV_FDS)];
    } control;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = iovcnt};

    if (nr_fds > CLIENT_MAX_RECV_FDS)
        return -EINVAL;
    if (nr_fds > 0) {
        memset(&control, 0, sizeof(control));
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nr_fds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * nr_fds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * nr_fds);
    }

    while (mh.msg_iovlen > 0) {
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        /* fds went with the first chunk; the rest is plain data. */
        mh.msg_control = NULL;
        mh.msg_controllen = 0;
        while (mh.msg_iovlen > 0 && (size_t)n >= mh.msg_iov->iov_len) {
            n -= (ssize_t)mh.msg_iov->iov_len;
            mh.msg_iov++;
            mh.msg_iovlen--;
        }
        if (mh.msg_iovlen > 0) {
            mh.msg_iov->iov_base = (uint8_t *)mh.msg_iov->iov_base + n;
            mh.msg_iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

static int send_msg(struct vfu_client *c, uint16_t id, uint16_t command, uint32_t flags,
                    uint32_t error, const struct iovec *iov, size_t iovcnt, const int *fds,
                    size_t nr_fds)
{
    struct iovec v[CLIENT_MAX_IOV + 1];
    size_t total = sizeof(struct vfu_header);

    if (iovcnt > CLIENT_MAX_IOV)
        return -EINVAL;
    for (size_t i = 0; i < iovcnt; i++) {
        v[i + 1] = iov[i];
        total += iov[i].iov_len;
    }
    if (total > UINT32_MAX)
        return -EMSGSIZE;

    struct vfu_header hdr = {
        .msg_id = id,
        .command = command,
        .msg_size = (uint32_t)total,
        .flags = flags,
        .error = error,
    };
    v[0] = (struct iovec){.iov_base = &hdr, .iov_len = sizeof(hdr)};
    return send_all(c->fd, v, iovcnt + 1, fds, nr_fds);
}

int client_send(struct vfu_client *c, uint16_t command, uint32_t flags, const struct iovec *iov,
                size_t iovcnt, const int *fds, size_t nr_fds, uint16_t *msg_id)
{
    uint16_t id = c->next_id++;
    int r = send_msg(c, id, command, flags, 0, iov, iovcnt, fds, nr_fds);
    if (r < 0)
        return r;
    if (msg_id)
        *msg_id = id;
    return 0;
}

int client_reply(struct vfu_client *c, const struct vfu_header *cmd, uint32_t error,
                 const struct iovec *iov, size_t iovcnt)
{
    if (cmd->flags & VFU_FLAG_NO_REPLY)
        return 0;
    return send_msg(c, cmd->msg_id, cmd->command,
                    VFU_FLAG_TYPE_REPLY | (error ? VFU_FLAG_ERROR : 0), error, error ? NULL : iov,
                    error ? 0 : iovcnt, NULL, 0);
}

/* The biggest message we take: a full-sized data transfer plus generous room
 * for headers and region capabilities. A bigger msg_size is a broken peer. */
static size_t max_msg_size(const struct vfu_client *c)
{
    uint32_t xfer =
        c->max_data_xfer > c->our_max_data_xfer ? c->max_data_xfer : c->our_max_data_xfer;
    return (size_t)xfer + 1024u * 1024u;
}

static void drop_pending_fds(struct vfu_client *c)
{
    for (size_t i = 0; i < c->nr_pending_fds; i++)
        safe_close(c->pending_fds[i]);
    c->nr_pending_fds = 0;
}

/* Read until at least `need` bytes are buffered from rstart on. */
static int fill(struct vfu_client *c, size_t need)
{
    while (c->rend - c->rstart < need) {
        if (c->rcap - c->rstart < need) {
            memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
            c->rend -= c->rstart;
            c->rstart = 0;
        }
        if (c->rcap < need) {
            uint8_t *n = realloc(c->rbuf, need);
            if (!n)
                return -ENOMEM;
            c->rbuf = n;
            c->rcap = need;
        }

        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * CLIENT_MAX_RECV_FDS)];
        } control;
        struct iovec iov = {.iov_base = c->rbuf + c->rend, .iov_len = c->rcap - c->rend};
        struct msghdr mh = {
            .msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = control.buf,
            .msg_controllen = sizeof(control.buf),
        };
        ssize_t n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }

        uint64_t from = c->rpos + (c->rend - c->rstart);
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            size_t nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            const uint8_t *data = CMSG_DATA(cm);
            /* A synchronous client has one reply with fds in flight at
             * most; fds for two messages at once is a confused server. */
            bool confused = c->nr_pending_fds > 0;
            for (size_t i = 0; i < nfds; i++) {
                int fd;
                memcpy(&fd, data + i * sizeof(int), sizeof(int));
                if (confused || c->nr_pending_fds >= CLIENT_MAX_RECV_FDS)
                    safe_close(fd);
                else
                    c->pending_fds[c->nr_pending_fds++] = fd;
            }
            if (confused)
                return -EPROTO;
            c->fd_from = from;
            c->fd_to = from + (uint64_t)n;
        }
        if (mh.msg_flags & MSG_CTRUNC)
            log_debug("vfu-client: file descriptors truncated by the kernel");
        if (n == 0)
            return -ECONNRESET;
        c->rend += (size_t)n;
    }
    return 0;
}

/* The next whole message, in place. Its fds (if any) move to m. */
static int next_msg(struct vfu_client *c, struct client_msg *m)
{
    int r;

    c->rstart += c->rdrop;
    c->rpos += c->rdrop;
    c->rdrop = 0;
    /* Keep every message 8-byte aligned so the wire structs can be read in
     * place: move a leftover that does not start on a boundary. */
    if (c->rstart == c->rend) {
        c->rstart = c->rend = 0;
    } else if (c->rstart % 8) {
        memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
        c->rend -= c->rstart;
        c->rstart = 0;
    }

    r = fill(c, sizeof(struct vfu_header));
    if (r < 0)
        return r;
    const struct vfu_header *h = (const struct vfu_header *)(c->rbuf + c->rstart);
    size_t size = h->msg_size;
    if (size < sizeof(struct vfu_header) || size > max_msg_size(c))
        return -EPROTO;
    r = fill(c, size);
    if (r < 0)
        return r;

    m->hdr = (const struct vfu_header *)(c->rbuf + c->rstart);
    m->payload = c->rbuf + c->rstart + sizeof(struct vfu_header);
    m->len = size - sizeof(struct vfu_header);
    m->nr_fds = 0;
    if (c->nr_pending_fds > 0 && c->rpos >= c->fd_from && c->rpos < c->fd_to &&
        c->rpos + size >= c->fd_to) {
        memcpy(m->fds, c->pending_fds, c->nr_pending_fds * sizeof(int));
        m->nr_fds = c->nr_pending_fds;
        c->nr_pending_fds = 0;
    } else if (c->nr_pending_fds > 0 && c->rpos >= c->fd_to) {
        drop_pending_fds(c); /* cannot happen with a sane kernel; never leak */
    }
    c->rdrop = size;
    return 0;
}

static int handle_command(struct vfu_client *c, struct client_msg *m)
{
    int r;

    switch (m->hdr->command) {
    case VFU_CMD_DMA_READ:
    case VFU_CMD_DMA_WRITE:
        r = client_serve_dma(c, m);
        break;
    default:
        log_debug("vfu-client: server sent command %u, refusing", m->hdr->command);
        r = client_reply(c, m->hdr, ENOTSUP, NULL, 0);
        break;
    }
    client_msg_close_fds(m);
    return r;
}

int client_wait_reply(struct vfu_client *c, int want_id, struct client_msg *reply)
{
    for (;;) {
        int r = next_msg(c, reply);
        if (r < 0)
            return r;

        uint32_t type = reply->hdr->flags & VFU_FLAG_TYPE_MASK;
        if (type == VFU_FLAG_TYPE_COMMAND) {
            r = handle_command(c, reply);
            if (r < 0)
                return r;
            continue;
        }
        if (type != VFU_FLAG_TYPE_REPLY ||
            (want_id >= 0 && reply->hdr->msg_id != (uint16_t)want_id)) {
            /* e.g. a late reply to a command we gave up on */
            log_debug("vfu-client: skipping message id %u type %u", reply->hdr->msg_id, type);
            client_msg_close_fds(reply);
            continue;
        }
        return 0;
    }
}

int client_transact(struct vfu_client *c, uint16_t command, const struct iovec *iov, size_t iovcnt,
                    const int *fds, size_t nr_fds, struct client_msg *reply)
{
    uint16_t id;
    int r = client_send(c, command, 0, iov, iovcnt, fds, nr_fds, &id);
    if (r < 0)
        return r;
    r = client_wait_reply(c, id, reply);
    if (r < 0)
        return r;
    if (reply->hdr->flags & VFU_FLAG_ERROR) {
        client_msg_close_fds(reply);
        int e = (int)reply->hdr->error;
        return e > 0 && e < 4096 ? -e : -EIO;
    }
    if (reply->hdr->command != command) {
        client_msg_close_fds(reply);
        return -EPROTO;
    }
    return 0;
}

/* ---- the raw API for protocol tests ---- */

int vfu_client_send_raw(struct vfu_client *c, const void *buf, size_t len, const int *fds,
                        size_t nr_fds)
{
    if (!c || (!buf && len))
        return -EINVAL;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    return send_all(c->fd, &iov, 1, fds, nr_fds);
}

static void hand_out_fds(struct client_msg *m, int *rfds, size_t max_rfds, size_t *nr_rfds)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nr_fds; i++) {
        if (rfds && n < max_rfds)
            rfds[n++] = m->fds[i];
        else
            safe_close(m->fds[i]);
    }
    m->nr_fds = 0;
    if (nr_rfds)
        *nr_rfds = n;
}

int vfu_client_recv_reply(struct vfu_client *c, struct vfu_header **reply, int *rfds,
                          size_t max_rfds, size_t *nr_rfds)
{
    struct client_msg m;

    if (!c || !reply)
        return -EINVAL;
    int r = client_wait_reply(c, -1, &m);
    if (r < 0)
        return r;
    struct vfu_header *copy = malloc(m.hdr->msg_size);
    if (!copy) {
        client_msg_close_fds(&m);
        return -ENOMEM;
    }
    memcpy(copy, m.hdr, m.hdr->msg_size);
    hand_out_fds(&m, rfds, max_rfds, nr_rfds);
    *reply = copy;
    return 0;
}

int vfu_client_send_cmd(struct vfu_client *c, uint16_t command, uint32_t flags, const void *payload,
                        size_t len, const int *fds, size_t nr_fds, uint16_t *msg_id)
{
    if (!c || (!payload && len))
        return -EINVAL;
    struct iovec iov = {.iov_base = (void *)payload, .iov_len = len};
    return client_send(c, command, flags, &iov, 1, fds, nr_fds, msg_id);
}

int vfu_client_call(struct vfu_client *c, uint16_t command, const void *payload, size_t len,
                    const int *fds, size_t nr_fds, void **rbuf, size_t *rlen, int *rfds,
                    size_t max_rfds, size_t *nr_rfds)
{
    struct client_msg m;

    if (!c || (!payload && len))
        return -EINVAL;
    if (nr_rfds)
        *nr_rfds = 0;
    struct iovec iov = {.iov_base = (void *)payload, .iov_len = len};
    int r = client_transact(c, command, &iov, 1, fds, nr_fds, &m);
    if (r < 0)
        return r;

    void *copy = NULL;
    if (rbuf && m.len > 0) {
        copy = malloc(m.len);
        if (!copy) {
            client_msg_close_fds(&m);
            return -ENOMEM;
        }
        memcpy(copy, m.payload, m.len);
    }
    hand_out_fds(&m, rfds, max_rfds, nr_rfds);
    if (rbuf)
        *rbuf = copy;
    if (rlen)
        *rlen = m.len;
    return 0;
}
