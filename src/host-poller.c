/* SPDX-License-Identifier: MIT */
#include "host-poller.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
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
    uint64_t last_work; /* CLOCK_MONOTONIC usec of the last round that found work */
    bool awake;
};

static uint64_t now_usec(const struct muserd_poller *p)
{
    uint64_t now = 0;
    (void)sd_event_now(sd_event_source_get_event(p->source), CLOCK_MONOTONIC, &now);
    return now;
}

static void set_awake(struct muserd_poller *p, bool awake)
{
    uint64_t v = 1;
    p->awake = awake;
    /* The counter is 1 while awake, 0 asleep. */
    if (awake)
        (void)write(p->efd, &v, sizeof(v));
    else
        (void)read(p->efd, &v, sizeof(v));
}

static int on_round(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    struct muserd_poller *p = userdata;
    /* The loop time is taken once per iteration: cheap to ask each round. */
    uint64_t now = now_usec(p);

    if (p->fn(p->opaque) > 0)
        p->last_work = now;
    else if (now - p->last_work >= p->idle_usec)
        set_awake(p, false);
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
    set_awake(p, true);
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
    p->last_work = now_usec(p);
    if (!p->awake)
        set_awake(p, true);
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
