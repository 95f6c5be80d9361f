/* SPDX-License-Identifier: MIT */
#include "iothreads.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "util/mailbox.h"

struct io_thread {
    struct io_threads *pool;
    unsigned index;
    pthread_t thread;
    bool started;
    /* Made by the thread itself, before it reports in: */
    sd_event *event;
    struct mailbox *mailbox;
    int start_error;
    unsigned load; /* main thread only */
};

struct io_threads {
    struct mailbox *answers; /* on the main loop */
    unsigned n;
    struct io_thread *threads;
    /* Startup handshake: each thread reports in once. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned reported;
};

unsigned io_threads_default_count(void)
{
    cpu_set_t set;
    int cpus = 1;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        cpus = CPU_COUNT(&set);
    if (cpus > IO_THREADS_MAX + 1)
        cpus = IO_THREADS_MAX + 1;
    return cpus > 1 ? (unsigned)cpus - 1 : 1;
}

static void report_in(struct io_thread *t, int error)
{
    struct io_threads *pool = t->pool;
    pthread_mutex_lock(&pool->lock);
    t->start_error = error;
    pool->reported++;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
}

static void *thread_main(void *arg)
{
    struct io_thread *t = arg;
    sd_event_source *warm = NULL;
    char name[16];
    int r;

    /* Signals are the main loop's (signalfd): none may land here, but the
     * ones a fault raises in this very thread (the DMA guard's SIGBUS):
     * blocked, those kill the process. */
    sigset_t mask;
    sigfillset(&mask);
    const int faults[] = {SIGBUS, SIGSEGV, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
    for (size_t i = 0; i < ELEMENTSOF(faults); i++)
        sigdelset(&mask, faults[i]);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    snprintf(name, sizeof(name), "muserd-io%u", t->index);
    pthread_setname_np(pthread_self(), name);

    r = sd_event_new(&t->event);
    if (r >= 0)
        r = mailbox_new(t->event, &t->mailbox);
    /* The loop makes its monotonic timerfd at the first timer and keeps it:
     * make it now, so that a device's first timer is not counted as an fd
     * the device leaked. */
    if (r >= 0)
        r = sd_event_add_time_relative(t->event, &warm, CLOCK_MONOTONIC, UINT64_MAX / 2, 0, NULL,
                                       NULL);
    warm = sd_event_source_unref(warm);
    report_in(t, r < 0 ? r : 0);
    if (r < 0) {
        t->event = sd_event_unref(t->event);
        return NULL;
    }
    /* Calls run in order, so the stop request comes after every call posted
     * before it. The mailbox and the loop are freed by the joiner: nothing
     * can post into a freed mailbox, even if the loop failed early. */
    r = sd_event_loop(t->event);
    if (r < 0) {
        /* A bug, not a client's doing: the devices of this thread and every
         * call waiting for it are lost. Loudly, and let systemd restart us. */
        log_error_errno(r, "I/O thread %u: event loop failed: %m", t->index);
        abort();
    }
    return NULL;
}

static void stop_loop(void *arg)
{
    struct io_thread *t = arg;
    (void)sd_event_exit(t->event, 0);
}

static void stop_and_join(struct io_threads *pool)
{
    for (unsigned i = 0; i < pool->n; i++) {
        struct io_thread *t = &pool->threads[i];
        if (!t->started)
            continue;
        /* A thread that failed to start has returned already. Posting only
         * fails for want of a few bytes: try again until it goes through. */
        while (!t->start_error && mailbox_post(t->mailbox, stop_loop, t) < 0)
            usleep(1000);
        pthread_join(t->thread, NULL);
        t->started = false;
        /* Calls that slipped in after the stop (none, unless the loop
         * failed) run here, on the main thread. */
        mailbox_free(t->mailbox);
        t->mailbox = NULL;
        t->event = sd_event_unref(t->event);
    }
}

void io_threads_free(struct io_threads *pool)
{
    if (!pool)
        return;
    if (pool->threads)
        stop_and_join(pool);
    mailbox_free(pool->answers); /* the answers of the last calls */
    free(pool->threads);
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

int io_threads_new(sd_event *main_event, unsigned n, struct io_threads **ret)
{
    _cleanup_(io_threads_freep) struct io_threads *pool = NULL;
    int r;

    if (n == 0 || n > IO_THREADS_MAX)
        return -EINVAL;
    pool = calloc(1, sizeof(*pool));
    if (!pool)
        return -ENOMEM;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->cond, NULL);
    r = mailbox_new(main_event, &pool->answers);
    if (r < 0)
        return r;
    pool->threads = calloc(n, sizeof(*pool->threads));
    if (!pool->threads)
        return -ENOMEM;
    pool->n = n;

    unsigned started = 0;
    for (unsigned i = 0; i < n; i++) {
        struct io_thread *t = &pool->threads[i];
        *t = (struct io_thread){.pool = pool, .index = i};
        r = -pthread_create(&t->thread, NULL, thread_main, t);
        if (r < 0)
            break;
        t->started = true;
        started++;
    }
    pthread_mutex_lock(&pool->lock);
    while (pool->reported < started)
        pthread_cond_wait(&pool->cond, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < started && r >= 0; i++)
        r = pool->threads[i].start_error;
    if (r < 0)
        return log_error_errno(r, "Cannot start %u I/O threads: %m", n);
    *ret = TAKE_PTR(pool);
    return 0;
}

unsigned io_threads_count(const struct io_threads *pool)
{
    return pool->n;
}

struct io_thread *io_threads_get(struct io_threads *pool, unsigned index)
{
    return index < pool->n ? &pool->threads[index] : NULL;
}

struct io_thread *io_threads_least_loaded(struct io_threads *pool)
{
    struct io_thread *best = &pool->threads[0];
    for (unsigned i = 1; i < pool->n; i++)
        if (pool->threads[i].load < best->load)
            best = &pool->threads[i];
    return best;
}

unsigned io_thread_index(const struct io_thread *t)
{
    return t->index;
}

unsigned io_thread_load(const struct io_thread *t)
{
    return t->load;
}

void io_thread_add_load(struct io_thread *t, int delta)
{
    t->load = (unsigned)((int)t->load + delta);
}

sd_event *io_thread_event(struct io_thread *t)
{
    return t->event;
}

struct mailbox *io_thread_mailbox(struct io_thread *t)
{
    return t->mailbox;
}

/* ---- calls ----------------------------------------------------------------------- */

struct call {
    struct mailbox_letter answer_letter; /* posting the answer cannot fail */
    struct io_thread *t;
    io_call_fn fn;
    io_done_fn done;
    void *arg;
    int result;
};

static void answer(void *arg)
{
    struct call *c = arg;
    if (c->done)
        c->done(c->arg, c->result);
    free(c);
}

/* The call running on this thread, for io_call_defer(). */
static _Thread_local struct call *current_call;
static _Thread_local bool current_deferred;

static void post_answer(struct call *c)
{
    /* The answers mailbox outlives every thread (freed after the joins). */
    mailbox_post_letter(c->t->pool->answers, &c->answer_letter, answer, c);
}

static void run_call(void *arg)
{
    struct call *c = arg;
    current_call = c;
    current_deferred = false;
    int r = c->fn(c->arg);
    bool deferred = current_deferred;
    current_call = NULL;
    /* A deferred call may be answered, and freed, already: hands off. */
    if (!deferred) {
        c->result = r;
        post_answer(c);
    }
}

struct io_call *io_call_defer(void)
{
    if (!current_call)
        return NULL;
    current_deferred = true;
    return (struct io_call *)current_call;
}

void io_call_answer(struct io_call *handle, int result)
{
    struct call *c = (struct call *)handle;
    c->result = result;
    post_answer(c);
}

int io_thread_call(struct io_thread *t, io_call_fn fn, io_done_fn done, void *arg)
{
    struct call *c = malloc(sizeof(*c));
    if (!c)
        return -ENOMEM;
    *c = (struct call){.t = t, .fn = fn, .done = done, .arg = arg};
    int r = mailbox_post(t->mailbox, run_call, c);
    if (r < 0)
        free(c);
    return r;
}

/* Shared by the waiter and the thread: whoever lets go last frees it, so a
 * waiter that gives up (io_threads_flush) leaves nothing dangling. */
struct sync_call {
    io_call_fn fn;
    void *arg;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool finished;
    int result;
    int refs;
};

static void sync_call_unref(struct sync_call *c)
{
    pthread_mutex_lock(&c->lock);
    bool last = --c->refs == 0;
    pthread_mutex_unlock(&c->lock);
    if (!last)
        return;
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static void run_sync_call(void *arg)
{
    struct sync_call *c = arg;
    int r = c->fn(c->arg);
    pthread_mutex_lock(&c->lock);
    c->result = r;
    c->finished = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    sync_call_unref(c);
}

/* Wait for fn(arg) on t, for timeout_ms at most (-1: for ever). */
static int call_and_wait(struct io_thread *t, io_call_fn fn, void *arg, int timeout_ms)
{
    struct sync_call *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    *c = (struct sync_call){.fn = fn, .arg = arg, .refs = 2};
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    int r = mailbox_post(t->mailbox, run_sync_call, c);
    if (r < 0) {
        c->refs = 1;
        sync_call_unref(c);
        return r;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    if (timeout_ms >= 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
    }
    pthread_mutex_lock(&c->lock);
    r = 0;
    while (!c->finished && r == 0)
        r = timeout_ms < 0 ? pthread_cond_wait(&c->cond, &c->lock)
                           : pthread_cond_timedwait(&c->cond, &c->lock, &deadline);
    r = c->finished ? c->result : -ETIMEDOUT;
    pthread_mutex_unlock(&c->lock);
    sync_call_unref(c);
    return r;
}

int io_thread_call_sync(struct io_thread *t, io_call_fn fn, void *arg)
{
    return call_and_wait(t, fn, arg, -1);
}

static int nothing(void *arg)
{
    return 0;
}

int io_threads_flush(struct io_threads *pool, int timeout_ms)
{
    /* Calls run in order: once this one ran, every earlier one did, and
     * posted its answer. An answer may post more calls: go round again. */
    do {
        for (unsigned i = 0; i < pool->n; i++) {
            int r = call_and_wait(&pool->threads[i], nothing, NULL, timeout_ms);
            if (r == -ETIMEDOUT)
                return log_error_errno(r,
                                       "I/O thread %u does not answer within %d ms: a "
                                       "device's plugin does not return.",
                                       i, timeout_ms);
        }
    } while (mailbox_dispatch(pool->answers) > 0);
    return 0;
}
