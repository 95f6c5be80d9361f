/* SPDX-License-Identifier: MIT */
#include "vfu/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "util/log.h"
#include "util/macro.h"
#include "util/socket-util.h"

#define CONN_INITIAL_BUF 4096u
/* Messages dispatched per loop iteration before yielding to other sources. */
#define CONN_DISPATCH_BUDGET 128
/* Stop reading requests while this much output waits for a slow client. */
#define CONN_OUT_HIGH (256u * 1024u)
/* Fd sets that may be waiting for their message's body at once. */
#define CONN_MAX_FD_SETS 4

struct pending_fds {
    uint64_t owner; /* stream offset of the message these fds arrived with */
    size_t n;
    int fds[VFU_SERVER_MAX_MSG_FDS];
};

struct out_chunk {
    struct out_chunk *next;
    size_t len, off;
    size_t nr_fds; /* still to send with the first byte */
    int fds[VFU_SERVER_MAX_MSG_FDS];
    uint8_t data[];
};

struct vfu_conn {
    sd_event_source *io;
    sd_event_source *resume; /* continues dispatch after the budget or a stall */
    int fd;
    uint32_t max_msg_size;
    const struct vfu_conn_ops *ops;
    void *opaque;

    uint8_t *buf;
    size_t cap, start, end; /* unparsed input is buf[start, end) */
    uint64_t base;          /* stream offset of buf[0] */
    struct pending_fds sets[CONN_MAX_FD_SETS];
    size_t nr_sets;

    struct out_chunk *out_head, *out_tail;
    size_t out_bytes;

    bool closing;
    int close_error;
};

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fds[i] = safe_close(fds[i]);
}

static int update_events(struct vfu_conn *conn)
{
    uint32_t events = 0;

    if (conn->closing)
        return sd_event_source_set_enabled(conn->io, SD_EVENT_OFF);
    if (conn->out_bytes < CONN_OUT_HIGH)
        events |= EPOLLIN;
    if (conn->out_head)
        events |= EPOLLOUT;
    return sd_event_source_set_io_events(conn->io, events);
}

void vfu_conn_close(struct vfu_conn *conn, int error)
{
    if (conn->closing)
        return;
    conn->closing = true;
    conn->close_error = error;
    (void)update_events(conn);
    /* Report from the loop, never from inside a caller's stack frame. */
    (void)sd_event_source_set_enabled(conn->resume, SD_EVENT_ONESHOT);
}

/* Move unparsed input to the front of the buffer. */
static void compact(struct vfu_conn *conn)
{
    if (conn->start == 0)
        return;
    memmove(conn->buf, conn->buf + conn->start, conn->end - conn->start);
    conn->base += conn->start;
    conn->end -= conn->start;
    conn->start = 0;
}

/* Make room so buf holds `need` bytes from start on (need is bounded by the
 * header check: at most max_msg_size). */
static int ensure_room(struct vfu_conn *conn, size_t need)
{
    if (conn->cap - conn->start < need)
        compact(conn);
    if (conn->cap < need) {
        uint8_t *n = realloc(conn->buf, need);
        if (!n)
            return -ENOMEM;
        conn->buf = n;
        conn->cap = need;
    }
    return 0;
}

static struct pending_fds *take_fd_set(struct vfu_conn *conn, uint64_t owner)
{
    for (size_t i = 0; i < conn->nr_sets; i++)
        if (conn->sets[i].owner == owner)
            return &conn->sets[i];
    return NULL;
}

static void drop_fd_set(struct vfu_conn *conn, struct pending_fds *set)
{
    close_fds(set->fds, set->n);
    size_t i = (size_t)(set - conn->sets);
    memmove(&conn->sets[i], &conn->sets[i + 1], (conn->nr_sets - i - 1) * sizeof(*set));
    conn->nr_sets--;
}

/*
 * The kernel ends a recvmsg() on a stream socket right after the segment
 * that carried fds, and a client sends each message (with its fds) in one
 * sendmsg(), so fds belong to the last message that starts in the data read.
 */
static uint64_t fd_owner(const struct vfu_conn *conn)
{
    size_t pos = conn->start, last = conn->start;

    while (pos < conn->end) {
        last = pos;
        if (conn->end - pos < sizeof(struct vfu_header))
            break;
        uint32_t size;
        memcpy(&size, conn->buf + pos + offsetof(struct vfu_header, msg_size), sizeof(size));
        if (size < sizeof(struct vfu_header))
            break; /* the header check drops this client */
        pos += size;
    }
    return conn->base + last;
}

/* One recvmsg(). Returns 1 when bytes arrived, 0 when none, -errno to close. */
static int read_some(struct vfu_conn *conn)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * VFU_SERVER_MAX_MSG_FDS)];
    } control;
    if (conn->end == conn->cap) {
        /* Full of complete messages still to dispatch: read later. */
        if (conn->start == 0)
            return 0;
        compact(conn);
    }

    struct iovec iov = {conn->buf + conn->end, conn->cap - conn->end};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof(control)};
    ssize_t n;
    do
        n = recvmsg(conn->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN ? 0 : -errno;
    if (n == 0)
        return -ECONNRESET;

    int fds[VFU_SERVER_MAX_MSG_FDS];
    size_t nr_fds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k && nr_fds < ELEMENTSOF(fds); i++)
            memcpy(&fds[nr_fds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    conn->end += (size_t)n;

    if (mh.msg_flags & MSG_CTRUNC) {
        close_fds(fds, nr_fds);
        return log_debug_errno(-EPROTO, "Client sent more than %d fds in one message.",
                               VFU_SERVER_MAX_MSG_FDS);
    }
    if (nr_fds > 0) {
        uint64_t owner = fd_owner(conn);
        if (conn->nr_sets == CONN_MAX_FD_SETS || take_fd_set(conn, owner)) {
            close_fds(fds, nr_fds);
            return -EPROTO;
        }
        struct pending_fds *set = &conn->sets[conn->nr_sets++];
        set->owner = owner;
        set->n = nr_fds;
        memcpy(set->fds, fds, nr_fds * sizeof(int));
    }
    return 1;
}

/* Dispatch complete messages. Returns 1 when work remains for a later turn. */
static int dispatch(struct vfu_conn *conn)
{
    for (int budget = CONN_DISPATCH_BUDGET; !conn->closing; budget--) {
        size_t avail = conn->end - conn->start;
        struct vfu_header hdr;

        if (avail < sizeof(hdr))
            break;
        memcpy(&hdr, conn->buf + conn->start, sizeof(hdr));
        int r = vfu_check_header(&hdr, conn->max_msg_size);
        if (r < 0) {
            vfu_conn_close(conn, r);
            return 0;
        }
        if (hdr.msg_size > avail) {
            r = ensure_room(conn, hdr.msg_size);
            if (r < 0)
                vfu_conn_close(conn, r);
            break;
        }
        if (budget == 0 || conn->out_bytes >= CONN_OUT_HIGH)
            return conn->out_bytes < CONN_OUT_HIGH; /* resume now, or once output drains */

        struct pending_fds *set = take_fd_set(conn, conn->base + conn->start);
        struct vfu_msg msg = {
            .hdr = hdr,
            .payload = conn->buf + conn->start + sizeof(hdr),
            .payload_len = hdr.msg_size - sizeof(hdr),
            .fds = set ? set->fds : NULL,
            .nr_fds = set ? set->n : 0,
        };
        conn->start += hdr.msg_size;
        conn->ops->message(conn->opaque, &msg);
        if (set)
            drop_fd_set(conn, set); /* closes what the handler did not take */
    }

    if (conn->start == conn->end) {
        conn->base += conn->start;
        conn->start = conn->end = 0;
        /* A big message grew the buffer; do not keep a megabyte per idle client. */
        if (conn->cap > 16 * CONN_INITIAL_BUF) {
            uint8_t *n = realloc(conn->buf, CONN_INITIAL_BUF);
            if (n) {
                conn->buf = n;
                conn->cap = CONN_INITIAL_BUF;
            }
        }
    }
    return 0;
}

static int flush_output(struct vfu_conn *conn)
{
    while (conn->out_head) {
        struct out_chunk *c = conn->out_head;
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * VFU_SERVER_MAX_MSG_FDS)];
        } control;
        struct iovec iov = {c->data + c->off, c->len - c->off};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

        if (c->nr_fds > 0) {
            mh.msg_control = &control;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * c->nr_fds);
            struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int) * c->nr_fds);
            memcpy(CMSG_DATA(cm), c->fds, sizeof(int) * c->nr_fds);
        }
        ssize_t n = sendmsg(conn->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            return -errno;
        }
        close_fds(c->fds, c->nr_fds);
        c->nr_fds = 0;
        c->off += (size_t)n;
        conn->out_bytes -= (size_t)n;
        if (c->off == c->len) {
            conn->out_head = c->next;
            if (!conn->out_head)
                conn->out_tail = NULL;
            free(c);
        }
    }
    return 0;
}

static void process(struct vfu_conn *conn, bool readable)
{
    int r = 0;

    if (readable && conn->out_bytes < CONN_OUT_HIGH)
        r = read_some(conn);
    if (r < 0) {
        vfu_conn_close(conn, r);
        return;
    }
    if (dispatch(conn) > 0)
        (void)sd_event_source_set_enabled(conn->resume, SD_EVENT_ONESHOT);
    if (!conn->closing)
        (void)update_events(conn);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    struct vfu_conn *conn = userdata;

    if (revents & EPOLLOUT) {
        int r = flush_output(conn);
        if (r < 0) {
            vfu_conn_close(conn, r);
            return 0;
        }
    }
    /* EPOLLHUP/ERR: the read reports the end (or the error) of the stream. */
    process(conn, revents & (EPOLLIN | EPOLLHUP | EPOLLERR));
    return 0;
}

static int on_resume(sd_event_source *s, void *userdata)
{
    struct vfu_conn *conn = userdata;

    if (conn->closing) {
        conn->ops->closed(conn->opaque, conn->close_error);
        return 0;
    }
    process(conn, false);
    return 0;
}

int vfu_conn_sendv(struct vfu_conn *conn, const struct iovec *iov, size_t n, const int *fds,
                   size_t nr_fds)
{
    size_t total = 0, sent = 0;

    if (conn->closing)
        return -ENOTCONN;
    if (nr_fds > VFU_SERVER_MAX_MSG_FDS)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        total += iov[i].iov_len;

    if (!conn->out_head) {
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * VFU_SERVER_MAX_MSG_FDS)];
        } control;
        struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = n};
        if (nr_fds > 0) {
            mh.msg_control = &control;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * nr_fds);
            struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int) * nr_fds);
            memcpy(CMSG_DATA(cm), fds, sizeof(int) * nr_fds);
        }
        ssize_t k = sendmsg(conn->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k < 0 && errno != EAGAIN && errno != EINTR) {
            int r = -errno;
            vfu_conn_close(conn, r);
            return r;
        }
        if (k > 0) {
            sent = (size_t)k;
            nr_fds = 0; /* they went with the first byte */
        }
        if (sent == total)
            return 0;
    }

    /* Queue what the socket did not take. */
    struct out_chunk *c = malloc(sizeof(*c) + (total - sent));
    if (!c)
        return -ENOMEM;
    *c = (struct out_chunk){.len = total - sent};
    size_t skip = sent, at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = iov[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        memcpy(c->data + at, (const uint8_t *)iov[i].iov_base + skip, len - skip);
        at += len - skip;
        skip = 0;
    }
    for (size_t i = 0; i < nr_fds; i++) {
        c->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        if (c->fds[i] < 0) {
            int r = -errno;
            close_fds(c->fds, i);
            free(c);
            return r;
        }
    }
    c->nr_fds = nr_fds;
    if (conn->out_tail)
        conn->out_tail->next = c;
    else
        conn->out_head = c;
    conn->out_tail = c;
    conn->out_bytes += c->len;
    return update_events(conn);
}

bool vfu_conn_peer_gone(const struct vfu_conn *conn)
{
    struct pollfd p = {.fd = conn->fd, .events = POLLIN | POLLRDHUP};

    if (conn->closing)
        return true;
    if (poll(&p, 1, 0) <= 0)
        return false;
    return p.revents & (POLLRDHUP | POLLHUP | POLLERR);
}

int vfu_conn_peer(const struct vfu_conn *conn, pid_t *pid, uid_t *uid)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    if (getsockopt(conn->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -errno;
    *pid = cred.pid;
    *uid = cred.uid;
    return 0;
}

int vfu_conn_new(sd_event *event, int fd, uint32_t max_msg_size, const struct vfu_conn_ops *ops,
                 void *opaque, struct vfu_conn **ret)
{
    _cleanup_(vfu_conn_freep) struct vfu_conn *conn = NULL;
    int r;

    conn = calloc(1, sizeof(*conn));
    if (!conn)
        return -ENOMEM;
    conn->fd = -1; /* the caller keeps fd until we succeed */
    conn->max_msg_size = max_msg_size;
    conn->ops = ops;
    conn->opaque = opaque;
    conn->buf = malloc(CONN_INITIAL_BUF);
    if (!conn->buf)
        return -ENOMEM;
    conn->cap = CONN_INITIAL_BUF;

    r = fd_set_nonblock(fd);
    if (r < 0)
        return r;
    r = sd_event_add_io(event, &conn->io, fd, EPOLLIN, on_io, conn);
    if (r < 0)
        return r;
    r = sd_event_add_defer(event, &conn->resume, on_resume, conn);
    if (r < 0)
        return r;
    r = sd_event_source_set_enabled(conn->resume, SD_EVENT_OFF);
    if (r < 0)
        return r;
    conn->fd = fd;
    *ret = TAKE_PTR(conn);
    return 0;
}

void vfu_conn_free(struct vfu_conn *conn)
{
    if (!conn)
        return;
    sd_event_source_disable_unref(conn->io);
    sd_event_source_disable_unref(conn->resume);
    while (conn->nr_sets > 0)
        drop_fd_set(conn, &conn->sets[0]);
    while (conn->out_head) {
        struct out_chunk *c = conn->out_head;
        conn->out_head = c->next;
        close_fds(c->fds, c->nr_fds);
        free(c);
    }
    safe_close(conn->fd);
    free(conn->buf);
    free(conn);
}
