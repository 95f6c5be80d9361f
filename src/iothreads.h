/* SPDX-License-Identifier: MIT */
/*
 * The I/O threads: a fixed pool, each thread running its own sd-event loop
 * from io_threads_new() until io_threads_free(). A device lives on one of
 * them (the manager places it): its socket, client connection, interrupt
 * fds, timers and watches are sources of that thread's loop, and nothing
 * else touches them. The main loop reaches a thread only by posting a call
 * (io_thread_call), whose answer comes back to the main loop.
 *
 * Threads: everything here is called from the main thread, except
 * io_thread_event(), for code already running on that I/O thread.
 */
#pragma once

#include <stdbool.h>

#include <systemd/sd-event.h>

#include "util/macro.h"

struct io_threads;
struct io_thread;

/* The most threads --io-threads takes. */
#define IO_THREADS_MAX 64

/* How many I/O threads by default: one fewer than the CPUs this process may
 * run on (systemd's CPUAffinity= narrows that), at least 1. */
unsigned io_threads_default_count(void);

/*
 * Start n threads (1..IO_THREADS_MAX). Answers of io_thread_call() run on
 * main_event. Returns 0 or -errno (no thread left running).
 */
int io_threads_new(sd_event *main_event, unsigned n, struct io_threads **ret);
/*
 * Stop every thread and join it. Calls still queued run on their thread
 * first, and their answers on the main thread (here). Whatever lives on a
 * thread must be gone before: its loop is freed with it.
 */
void io_threads_free(struct io_threads *pool);
DEFINE_FREEP(struct io_threads, io_threads_free)

unsigned io_threads_count(const struct io_threads *pool);
/* Thread `index` (< io_threads_count), or NULL. */
struct io_thread *io_threads_get(struct io_threads *pool, unsigned index);
/* The thread with the fewest devices (the lowest index among equals). */
struct io_thread *io_threads_least_loaded(struct io_threads *pool);

unsigned io_thread_index(const struct io_thread *t);
/* The number of devices placed on t; the manager counts them. */
unsigned io_thread_load(const struct io_thread *t);
void io_thread_add_load(struct io_thread *t, int delta);

/* Only for code running on t: its loop, and the mailbox it runs closures
 * from (any thread may post to it). */
sd_event *io_thread_event(struct io_thread *t);
struct mailbox *io_thread_mailbox(struct io_thread *t);

typedef int (*io_call_fn)(void *arg);
typedef void (*io_done_fn)(void *arg, int result);

/*
 * Run fn(arg) on t, then done(arg, fn's result) on the main loop (done may
 * be NULL). arg must stay valid until done ran. Returns 0, or -ENOMEM
 * (nothing runs).
 */
int io_thread_call(struct io_thread *t, io_call_fn fn, io_done_fn done, void *arg);
/*
 * From inside an io_call_fn run by io_thread_call(): answer later, with
 * io_call_answer() from the same thread (fn's return value is ignored).
 * NULL when not inside such a call (then answer by returning).
 */
struct io_call;
struct io_call *io_call_defer(void);
void io_call_answer(struct io_call *call, int result);

/* Run fn(arg) on t and wait for its result: only where the main loop may
 * block (starting up, shutting down). */
int io_thread_call_sync(struct io_thread *t, io_call_fn fn, void *arg);
/* Wait until every call posted so far ran on its thread, then run their
 * answers now, on the main thread, even when the main loop has finished
 * (shutting down). -ETIMEDOUT (logged) when a thread does not answer within
 * timeout_ms (-1: wait for ever): a plugin is stuck there. */
int io_threads_flush(struct io_threads *pool, int timeout_ms);
