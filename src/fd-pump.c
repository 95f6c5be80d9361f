/* SPDX-License-Identifier: MIT */
#include "fd-pump.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define PUMP_BUFFER (1u << 20)
/* Buffers moved per wakeup before other sources get their turn. */
#define PUMP_BURST 8

struct fd_pump {
    sd_event *event;
    sd_event_source *source; /* io on the fd, or a defer for regular files */
    int fd;
    bool writing;
    bool starved; /* fill said -EAGAIN: waiting for fd_pump_kick() */
    bool finished;
    fd_pump_fill_fn fill;
    fd_pump_drain_fn drain;
    fd_pump_done_fn done;
    void *opaque;
    uint8_t *buf;
    size_t len, off; /* writing: bytes in buf, and how many are out */
    size_t bytes;
};

static void finish(struct fd_pump *p, int status)
{
    if (p->finished)
        return;
    p->finished = true;
    (void)sd_event_source_set_enabled(p->source, SD_EVENT_OFF);
    p->done(p->opaque, status); /* may free p */
}

/* 1: go on, 0: wait for the fd or a kick, <0: error. */
static int write_step(struct fd_pump *p)
{
    if (p->off == p->len) {
        size_t n = 0;
        int r = p->fill(p->opaque, p->buf, PUMP_BUFFER, &n);
        if (r == -EAGAIN) {
            p->starved = true;
            (void)sd_event_source_set_enabled(p->source, SD_EVENT_OFF);
            return 0;
        }
        if (r < 0)
            return r;
        if (n == 0 || n > PUMP_BUFFER)
            return n ? -EOVERFLOW : 2; /* 2: the stream is all out */
        p->len = n;
        p->off = 0;
    }
    ssize_t w = write(p->fd, p->buf + p->off, p->len - p->off);
    if (w < 0)
        return errno == EAGAIN ? 0 : errno == EINTR ? 1 : -errno;
    p->off += (size_t)w;
    p->bytes += (size_t)w;
    return 1;
}

static int read_step(struct fd_pump *p)
{
    ssize_t n = read(p->fd, p->buf, PUMP_BUFFER);
    if (n < 0)
        return errno == EAGAIN ? 0 : errno == EINTR ? 1 : -errno;
    p->bytes += (size_t)n;
    int r = p->drain(p->opaque, p->buf, (size_t)n);
    if (r < 0)
        return r;
    return n == 0 ? 2 : 1;
}

static void run(struct fd_pump *p)
{
    for (unsigned i = 0; i < PUMP_BURST && !p->finished; i++) {
        int r = p->writing ? write_step(p) : read_step(p);
        if (r < 0 || r == 2) {
            finish(p, r < 0 ? r : 0);
            return;
        }
        if (r == 0)
            return;
    }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    struct fd_pump *p = userdata;
    if ((revents & EPOLLERR) && p->writing) {
        finish(p, -EPIPE);
        return 0;
    }
    run(p);
    return 0;
}

static int on_defer(sd_event_source *s, void *userdata)
{
    run(userdata);
    return 0;
}

/* Pipes and sockets are waited on; regular files (and block devices) are
 * always ready and epoll refuses them, so they move one burst per loop
 * iteration. */
static int add_source(struct fd_pump *p)
{
    struct stat st;
    if (fstat(p->fd, &st) < 0)
        return -errno;
    if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))
        return sd_event_add_defer(p->event, &p->source, on_defer, p);
    if (S_ISFIFO(st.st_mode))
        (void)fcntl(p->fd, F_SETPIPE_SZ, (int)PUMP_BUFFER); /* a bigger pipe, where allowed */
    int flags = fcntl(p->fd, F_GETFL);
    if (flags < 0 || fcntl(p->fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -errno;
    return sd_event_add_io(p->event, &p->source, p->fd, p->writing ? EPOLLOUT : EPOLLIN, on_io, p);
}

static int pump_new(sd_event *event, int fd, bool writing, fd_pump_done_fn done, void *opaque,
                    struct fd_pump **ret)
{
    _cleanup_(fd_pump_freep) struct fd_pump *p = calloc(1, sizeof(*p));
    if (!p) {
        safe_close(fd);
        return -ENOMEM;
    }
    p->fd = fd;
    p->event = sd_event_ref(event);
    p->writing = writing;
    p->done = done;
    p->opaque = opaque;
    p->buf = malloc(PUMP_BUFFER);
    if (!p->buf)
        return -ENOMEM;
    int r = add_source(p);
    if (r < 0)
        return r;
    (void)sd_event_source_set_enabled(p->source, SD_EVENT_ON);
    *ret = TAKE_PTR(p);
    return 0;
}

int fd_pump_writer_new(sd_event *event, int fd, fd_pump_fill_fn fill, fd_pump_done_fn done,
                       void *opaque, struct fd_pump **ret)
{
    struct fd_pump *p = NULL;
    int r = pump_new(event, fd, true, done, opaque, &p);
    if (r < 0)
        return r;
    p->fill = fill;
    *ret = p;
    return 0;
}

int fd_pump_reader_new(sd_event *event, int fd, fd_pump_drain_fn drain, fd_pump_done_fn done,
                       void *opaque, struct fd_pump **ret)
{
    struct fd_pump *p = NULL;
    int r = pump_new(event, fd, false, done, opaque, &p);
    if (r < 0)
        return r;
    p->drain = drain;
    *ret = p;
    return 0;
}

void fd_pump_kick(struct fd_pump *p)
{
    if (!p->starved || p->finished)
        return;
    p->starved = false;
    (void)sd_event_source_set_enabled(p->source, SD_EVENT_ON);
}

size_t fd_pump_bytes(const struct fd_pump *p)
{
    return p->bytes;
}

void fd_pump_free(struct fd_pump *p)
{
    if (!p)
        return;
    sd_event_source_disable_unref(p->source);
    safe_close(p->fd);
    sd_event_unref(p->event);
    free(p->buf);
    free(p);
}
