/* SPDX-License-Identifier: MIT */
/*
 * Moving a stream between a file descriptor an operator handed us (a pipe
 * to ssh, a file) and a device, without blocking the device's thread: the
 * pump writes or reads one buffer at a time when the fd is ready (epoll),
 * or, for regular files, which epoll cannot wait on, one buffer per loop
 * iteration. Either way the thread's other devices run in between.
 *
 * A pipe is switched to O_NONBLOCK (the flag belongs to the pipe's open
 * file, shared with whoever passed it: a muserctl waiting for its reply) and
 * its buffer grown to 1 MiB where the kernel allows, for throughput.
 *
 * Threads: the loop's thread (a device's I/O thread).
 */
#pragma once

#include <stddef.h>

#include <systemd/sd-event.h>

#include "util/macro.h"

struct fd_pump;

/* Writing: fill buf with up to len next bytes of the stream, *n of them;
 * *n == 0 ends the stream. -EAGAIN: nothing yet, fd_pump_kick() when
 * there is. Other -errno end the pump with that error. */
typedef int (*fd_pump_fill_fn)(void *opaque, void *buf, size_t len, size_t *n);
/* Reading: len more bytes of the stream (len 0: the fd reached its end). */
typedef int (*fd_pump_drain_fn)(void *opaque, const void *buf, size_t len);
/* The pump is done: 0 (all written; or read to the end and drained), or
 * the first error (-EPIPE when the reader went away). Called once; the
 * pump may be freed from inside it. */
typedef void (*fd_pump_done_fn)(void *opaque, int status);

/* Both take fd (closed by fd_pump_free), also on failure. */
int fd_pump_writer_new(sd_event *event, int fd, fd_pump_fill_fn fill, fd_pump_done_fn done,
                       void *opaque, struct fd_pump **ret);
int fd_pump_reader_new(sd_event *event, int fd, fd_pump_drain_fn drain, fd_pump_done_fn done,
                       void *opaque, struct fd_pump **ret);
/* A fill that said -EAGAIN has data now. */
void fd_pump_kick(struct fd_pump *p);
/* Stop at once (nothing more is called) and close the fd. */
void fd_pump_free(struct fd_pump *p);
DEFINE_FREEP(struct fd_pump, fd_pump_free)
/* Bytes moved so far. */
size_t fd_pump_bytes(const struct fd_pump *p);
