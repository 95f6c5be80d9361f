/* SPDX-License-Identifier: MIT */
#include "host-poller.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "host.h"
#include "util/macro.h"

struct muserd_poller {
    struct muserd_poller *next, **prev_next;
    struct muserd_host *host;
    /* An eventfd kept readable while awake, watched at normal priority: the
     * loop re-queues a ready fd at every epoll_wait, so pollers, messages and
     * timers take turns. (A defer source would not: sd-event keeps one
     * pending for good, and the oldest pending source always wins.) */
    int efd;
    sd_event_source *source;
    muserd_poll_fn fn;
    void *opaque;
    uint64_t idle_usec;
    /* The device's thread only: */
    uint64_t last_work;  /* loop time (usec) of the last round that found work */
    unsigned seen_wakes; /* wakes as of that round */
    /* Any thread (poller_wake): */
    atomic_uint wakes; /* counts poller_wake() calls */
    atomic_bool awake; /* the eventfd is readable */
};

static uint64_t now_usec(const struct muserd_poller *p)
{
    uint64_t now = 0;
    (void)sd_event_now(sd_event_source_get_event(p->source), CLOCK_MONOTONIC, &now);
    return now;
}

/* Any thread: make the eventfd readable unless it is already. */
static void wake_up(struct muserd_poller *p)
{
    uint64_t one = 1;
    if (!atomic_exchange(&p->awake, true))
        (void)write(p->efd, &one, sizeof(one));
}

/* The device's thread: drain the eventfd, then look again for a wake that
 * came meanwhile (it may have seen `awake` still set and written nothing). */
static void fall_asleep(struct muserd_poller *p, unsigned wakes)
{
    uint64_t n;
    (void)read(p->efd, &n, sizeof(n));
    atomic_store(&p->awake, false);
    if (atomic_load(&p->wakes) != wakes)
        wake_up(p);
}

/* After a round that found work, more rounds at once before the loop's
 * next epoll_wait: that system call is most of a round's cost, and at queue
 * depth 1 the next request comes a microsecond or two after the last
 * completion. Bounded in rounds and in time, so that a plugin doing a big
 * piece of work per round (the ram device copies 64 KiB) still gives the
 * thread's other sources their turn every SPIN_BUDGET_NSEC. Returns 1
 * (there was work). */
#define SPIN_IDLE_ROUNDS 64
#define SPIN_ROUNDS_MAX  1024
#define SPIN_BUDGET_NSEC 100000
static uint64_t mono_nsec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int spin(struct muserd_poller *p)
{
    uint64_t end = mono_nsec() + SPIN_BUDGET_NSEC;
    for (unsigned i = 0, idle = 0; i < SPIN_ROUNDS_MAX && idle < SPIN_IDLE_ROUNDS; i++) {
        idle = p->fn(p->opaque) > 0 ? 0 : idle + 1;
        if (i % 8 == 7 && mono_nsec() >= end)
            break;
    }
    return 1;
}

static int on_round(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    struct muserd_poller *p = userdata;
    /* The loop time is taken once per iteration: cheap to ask each round. */
    uint64_t now = now_usec(p);
    unsigned wakes = atomic_load(&p->wakes);

    /* A wake counts as work: the idle time starts again. */
    int work = p->fn(p->opaque);
    if (work > 0)
        work = spin(p);
    if (work > 0 || wakes != p->seen_wakes) {
        p->last_work = now;
        p->seen_wakes = wakes;
    } else if (now - p->last_work >= p->idle_usec) {
        fall_asleep(p, wakes);
    }
    return 0;
}

int host_poller_new(struct muserd_host *h, muserd_poll_fn fn, void *opaque, uint64_t idle_usec,
                    struct muserd_poller **ret)
{
    if (!fn || !ret)
        return -EINVAL;
    struct muserd_poller *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    *p = (struct muserd_poller){.host = h, .fn = fn, .opaque = opaque, .idle_usec = idle_usec};
    p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int r = p->efd < 0 ? -errno : 0;
    if (r >= 0)
        r = sd_event_add_io(h->event, &p->source, p->efd, EPOLLIN, on_round, p);
    if (r < 0) {
        safe_close(p->efd);
        free(p);
        return r;
    }
    wake_up(p);
    p->last_work = now_usec(p);
    p->next = h->pollers;
    if (p->next)
        p->next->prev_next = &p->next;
    p->prev_next = &h->pollers;
    h->pollers = p;
    *ret = p;
    return 0;
}

void host_poller_wake(struct muserd_poller *p)
{
    if (!p)
        return;
    atomic_fetch_add(&p->wakes, 1);
    wake_up(p);
}

void host_poller_free(struct muserd_poller *p)
{
    if (!p)
        return;
    *p->prev_next = p->next;
    if (p->next)
        p->next->prev_next = p->prev_next;
    sd_event_source_disable_unref(p->source);
    safe_close(p->efd);
    free(p);
}

unsigned host_pollers_free_all(struct muserd_host *h)
{
    unsigned n = 0;
    for (; h->pollers; n++)
        host_poller_free(h->pollers);
    return n;
}
