/* SPDX-License-Identifier: MIT */
/*
 * The engine-independent part of nvme-aio.h: choosing an engine, counting
 * requests in flight, and draining an abandoned engine on a thread of its
 * own.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "nvme-aio-engine.h"

/* Engines are made and unmade one at a time: liburing maps and unmaps its
 * rings with raw syscalls that ThreadSanitizer does not see, so a new ring
 * at the address of one a drainer (below) just unmapped would look to it
 * like a race between two threads. The lock orders the two. */
static pthread_mutex_t engines_lock = PTHREAD_MUTEX_INITIALIZER;

int nvme_aio_new(enum nvme_aio_kind kind, uint32_t depth, struct nvme_aio **out)
{
    struct nvme_aio *aio = calloc(1, sizeof(*aio));
    if (!aio)
        return -ENOMEM;
    aio->event_fd = -1;
    int r = -ENOSYS;
    pthread_mutex_lock(&engines_lock);
    if (kind != NVME_AIO_THREADS) {
        aio->engine = &nvme_aio_uring_engine;
        r = aio->engine->init(aio, depth);
    }
    /* "auto": whatever kept io_uring from us, the pool does the same work. */
    if (r < 0 && kind != NVME_AIO_IO_URING) {
        aio->engine = &nvme_aio_threads_engine;
        r = aio->engine->init(aio, depth);
    }
    pthread_mutex_unlock(&engines_lock);
    if (r < 0) {
        free(aio);
        return r;
    }
    *out = aio;
    return 0;
}

const char *nvme_aio_name(const struct nvme_aio *aio)
{
    return aio->engine->name;
}

int nvme_aio_event_fd(const struct nvme_aio *aio)
{
    return aio->event_fd;
}

uint32_t nvme_aio_inflight(const struct nvme_aio *aio)
{
    return aio->inflight;
}

void nvme_aio_submit(struct nvme_aio *aio, struct nvme_aio_req *req)
{
    aio->inflight++;
    aio->engine->submit(aio, req);
}

void nvme_aio_commit(struct nvme_aio *aio)
{
    aio->engine->commit(aio);
}

struct reap_ctx {
    struct nvme_aio *aio;
    nvme_aio_done_fn done;
    void *opaque;
};

static void counted_done(void *opaque, struct nvme_aio_req *req)
{
    struct reap_ctx *ctx = opaque;
    ctx->aio->inflight--;
    ctx->done(ctx->opaque, req);
}

void nvme_aio_ack(struct nvme_aio *aio)
{
    uint64_t ticks;
    if (read(aio->event_fd, &ticks, sizeof(ticks)) < 0) {
        /* EAGAIN: nothing to empty. */
    }
}

unsigned nvme_aio_reap(struct nvme_aio *aio, nvme_aio_done_fn done, void *opaque)
{
    struct reap_ctx ctx = {aio, done, opaque};
    /* A poll round looks without a syscall. The event fd is emptied before
     * the reap: what finishes after it signals again, so nothing is missed
     * (what finished in between is reaped now and leaves a spurious wake-up). */
    if (!aio->engine->ready(aio))
        return 0;
    nvme_aio_ack(aio);
    unsigned n = aio->engine->reap(aio, false, counted_done, &ctx);
    aio->engine->commit(aio); /* what done submitted */
    return n;
}

void nvme_aio_free(struct nvme_aio *aio, nvme_aio_done_fn done, void *opaque)
{
    if (!aio)
        return;
    struct reap_ctx ctx = {aio, done, opaque};
    aio->engine->commit(aio);
    /* The kernel (or a worker) may still write into a request's buffer:
     * nothing is freed before every request is back. */
    while (aio->inflight > 0)
        aio->engine->reap(aio, true, counted_done, &ctx);
    pthread_mutex_lock(&engines_lock);
    aio->engine->fini(aio);
    pthread_mutex_unlock(&engines_lock);
    free(aio);
}

/* ---- abandoned engines ---------------------------------------------------------- */

/* An engine a thread drains. Until the thread has returned it runs this
 * plugin's code, which must not be unmapped under it: the first drainer
 * pins the plugin in memory (RTLD_NODELETE), so that the daemon's unload
 * neither unmaps it nor waits; a drainer still waiting at exit (storage
 * that never answers) dies with the process. Without the pin, the unload
 * waits for them. Finished ones are joined at the next abandon. */
struct drainer {
    pthread_t thread;
    bool finished; /* under drainers_lock */
    struct nvme_aio *aio;
    nvme_aio_done_fn done;
    void *opaque;
    void (*release)(void *arg);
    void *arg;
    struct drainer *next;
};

static pthread_mutex_t drainers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct drainer *drainers;
static bool pinned; /* under drainers_lock */

/* Keep this plugin mapped until the process ends. Under drainers_lock. */
static void pin_plugin(void)
{
    Dl_info info;
    if (pinned || !dladdr((void *)pin_plugin, &info) || !info.dli_fname)
        return;
    /* A second reference that is never dropped, and NODELETE for good measure. */
    pinned = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE) != NULL;
}

static void drain_now(struct drainer *t)
{
    nvme_aio_free(t->aio, t->done, t->opaque);
    if (t->release)
        t->release(t->arg);
}

static void *drain(void *opaque)
{
    struct drainer *t = opaque;
    drain_now(t);
    pthread_mutex_lock(&drainers_lock);
    t->finished = true;
    pthread_mutex_unlock(&drainers_lock);
    return NULL;
}

/* Join and free the drainers: all of them, or only those finished. */
static void join_drainers(bool all)
{
    pthread_mutex_lock(&drainers_lock);
    for (struct drainer **p = &drainers; *p;) {
        struct drainer *t = *p;
        if (!all && !t->finished) {
            p = &t->next;
            continue;
        }
        *p = t->next;
        pthread_mutex_unlock(&drainers_lock); /* a drainer takes it to finish */
        pthread_join(t->thread, NULL);
        free(t);
        pthread_mutex_lock(&drainers_lock);
        p = &drainers; /* the list may have changed meanwhile */
    }
    pthread_mutex_unlock(&drainers_lock);
}

void nvme_aio_abandon(struct nvme_aio *aio, nvme_aio_done_fn done, void *opaque,
                      void (*release)(void *arg), void *arg)
{
    struct drainer now = {
        .aio = aio, .done = done, .opaque = opaque, .release = release, .arg = arg};
    join_drainers(false);
    struct drainer *t = aio && aio->inflight > 0 ? malloc(sizeof(*t)) : NULL;
    if (!t) {
        drain_now(&now); /* nothing to wait for (or no memory: wait here) */
        return;
    }
    *t = now;
    aio->engine->cancel(aio); /* what has not started never will */
    /* The drainer takes no signal: the daemon's handling stays on its threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_mutex_lock(&drainers_lock);
    pin_plugin();
    int r = pthread_create(&t->thread, NULL, drain, t);
    if (r == 0) {
        t->next = drainers;
        drainers = t;
    }
    pthread_mutex_unlock(&drainers_lock);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        free(t);
        drain_now(&now);
    }
}

/* dlclose, or the process's exit. Pinned, the code stays mapped for the
 * drainers still waiting; else they must be waited for here. */
__attribute__((destructor)) static void wait_for_drainers(void)
{
    pthread_mutex_lock(&drainers_lock);
    bool all = !pinned;
    pthread_mutex_unlock(&drainers_lock);
    join_drainers(all);
}
