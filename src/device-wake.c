/* SPDX-License-Identifier: MIT */
#include "device-wake.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

struct device_waker {
    struct mailbox_letter letter;
    struct mailbox *mailbox;
    void (*fn)(void *opaque, unsigned causes);
    void *opaque;
    atomic_uint causes;
    atomic_bool queued;
    bool dead; /* device thread only: freed, the letter frees us */
};

static void run(void *arg)
{
    struct device_waker *w = arg;
    /* Cleared before the causes are taken: a wake after this posts again. */
    atomic_store(&w->queued, false);
    if (w->dead) {
        free(w);
        return;
    }
    unsigned causes = atomic_exchange(&w->causes, 0);
    if (causes)
        w->fn(w->opaque, causes);
}

int device_waker_new(struct mailbox *mailbox, void (*fn)(void *opaque, unsigned causes),
                     void *opaque, struct device_waker **ret)
{
    struct device_waker *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->mailbox = mailbox;
    w->fn = fn;
    w->opaque = opaque;
    *ret = w;
    return 0;
}

void device_waker_free(struct device_waker *w)
{
    if (!w)
        return;
    if (atomic_load(&w->queued))
        w->dead = true;
    else
        free(w);
}

void device_waker_wake(struct device_waker *w, unsigned causes)
{
    atomic_fetch_or(&w->causes, causes);
    if (!atomic_exchange(&w->queued, true)) {
        mailbox_post_letter(w->mailbox, &w->letter, run, w);
    }
}
