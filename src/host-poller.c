/* SPDX-License-Identifier: MIT */
#include "host-poller.h"

#include <errno.h>
#include <stdlib.h>

#include "host.h"

struct muserd_poller {
    struct muserd_poller *next, **prev_next;
    struct muserd_host *host;
    sd_event_source *source; /* a defer source: on while awake */
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

static int on_round(sd_event_source *s, void *userdata)
{
    struct muserd_poller *p = userdata;
    /* The loop time is taken once per iteration: cheap to ask each round. */
    uint64_t now = now_usec(p);

    if (p->fn(p->opaque) > 0)
        p->last_work = now;
    else if (now - p->last_work >= p->idle_usec) {
        p->awake = false;
        (void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
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
    int r = sd_event_add_defer(h->event, &p->source, on_round, p);
    /* Below every other source: the loop runs one source per iteration, the
     * most urgent first, so a pending message, timer or mailbox call goes
     * before the next round and a busy poller starves nobody. */
    if (r >= 0)
        r = sd_event_source_set_priority(p->source, SD_EVENT_PRIORITY_IDLE);
    if (r >= 0)
        r = sd_event_source_set_enabled(p->source, SD_EVENT_ON);
    if (r < 0) {
        sd_event_source_unref(p->source);
        free(p);
        return r;
    }
    *p = (struct muserd_poller){.host = h,
                                .source = p->source,
                                .fn = fn,
                                .opaque = opaque,
                                .idle_usec = idle_usec,
                                .awake = true};
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
    if (!p->awake) {
        p->awake = true;
        (void)sd_event_source_set_enabled(p->source, SD_EVENT_ON);
    }
}

void host_poller_free(struct muserd_poller *p)
{
    if (!p)
        return;
    *p->prev_next = p->next;
    if (p->next)
        p->next->prev_next = p->prev_next;
    sd_event_source_disable_unref(p->source);
    free(p);
}

unsigned host_pollers_free_all(struct muserd_host *h)
{
    unsigned n = 0;
    for (; h->pollers; n++)
        host_poller_free(h->pollers);
    return n;
}
