/* SPDX-License-Identifier: MIT */
#include "irq-routes.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define ROUTE_SLOW 0 /* in direct[]: not a VFIO index + 1 */

struct irq_routes {
    const struct irq_routes_ops *ops;
    void *opaque;
    pthread_t owner;

    pthread_mutex_t lock; /* guards what follows */
    bool live;
    bool closed; /* for good: publishing does not reopen */
    uint32_t nr_vectors;
    uint8_t *direct; /* per vector: VFIO index + 1, or ROUTE_SLOW */

    /* Vectors raised on another thread that need the PCI model. */
    uint32_t nr_words;
    _Atomic uint64_t *posted;
};

void irq_routes_run_posted(struct irq_routes *r)
{
    pthread_mutex_lock(&r->lock);
    bool live = r->live;
    pthread_mutex_unlock(&r->lock);
    if (!live)
        return; /* the device is going: nobody to raise to */
    for (uint32_t w = 0; w < r->nr_words; w++)
        for (uint64_t bits = atomic_exchange(&r->posted[w], 0); bits; bits &= bits - 1)
            (void)r->ops->raise(r->opaque, w * 64 + (uint32_t)__builtin_ctzll(bits));
}

int irq_routes_new(const struct irq_routes_ops *ops, void *opaque, struct irq_routes **ret)
{
    _cleanup_(irq_routes_freep) struct irq_routes *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->ops = ops;
    r->opaque = opaque;
    r->owner = pthread_self();
    pthread_mutex_init(&r->lock, NULL);
    *ret = TAKE_PTR(r);
    return 0;
}

void irq_routes_free(struct irq_routes *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r->direct);
    free((void *)r->posted);
    free(r);
}

/* The table grows once, to the device's vector count, on its thread; the
 * posted bitmap is sized then too and never shrinks while others raise. */
static int ensure_size(struct irq_routes *r, uint32_t nr_vectors)
{
    if (nr_vectors <= r->nr_vectors)
        return 0;
    uint8_t *direct = calloc(nr_vectors, 1);
    uint32_t words = (nr_vectors + 63) / 64;
    _Atomic uint64_t *posted = calloc(words, sizeof(*posted));
    if (!direct || !posted) {
        free(direct);
        free((void *)posted);
        return -ENOMEM;
    }
    free(r->direct);
    r->direct = direct;
    /* Only the owner swaps it, under the lock, before any raise could post
     * a vector this large; older bits are carried over. */
    for (uint32_t w = 0; w < r->nr_words; w++)
        atomic_store(&posted[w], atomic_load(&r->posted[w]));
    free((void *)r->posted);
    r->posted = posted;
    r->nr_words = words;
    r->nr_vectors = nr_vectors;
    return 0;
}

int irq_routes_publish(struct irq_routes *r, uint32_t nr_vectors)
{
    pthread_mutex_lock(&r->lock);
    int k = ensure_size(r, nr_vectors);
    for (uint32_t v = 0; v < r->nr_vectors; v++) {
        int index = k < 0 ? -1 : r->ops->route(r->opaque, v);
        r->direct[v] = index < 0 ? ROUTE_SLOW : (uint8_t)(index + 1);
    }
    r->live = !r->closed && r->nr_vectors > 0;
    pthread_mutex_unlock(&r->lock);
    return k;
}

void irq_routes_close(struct irq_routes *r)
{
    pthread_mutex_lock(&r->lock);
    r->live = false;
    r->closed = true;
    pthread_mutex_unlock(&r->lock);
}

int irq_routes_raise(struct irq_routes *r, uint32_t vector)
{
    pthread_mutex_lock(&r->lock);
    if (!r->live) {
        pthread_mutex_unlock(&r->lock);
        return -ENOTCONN;
    }
    if (vector >= r->nr_vectors) {
        pthread_mutex_unlock(&r->lock);
        return -EINVAL;
    }
    uint8_t route = r->direct[vector];
    if (route != ROUTE_SLOW) {
        int k = r->ops->fire(r->opaque, route - 1u, vector);
        pthread_mutex_unlock(&r->lock);
        return k;
    }
    if (pthread_equal(pthread_self(), r->owner)) {
        pthread_mutex_unlock(&r->lock);
        return r->ops->raise(r->opaque, vector);
    }
    /* Posted under the lock: the bitmap cannot be swapped meanwhile. */
    atomic_fetch_or(&r->posted[vector / 64], UINT64_C(1) << (vector % 64));
    r->ops->wake(r->opaque);
    pthread_mutex_unlock(&r->lock);
    return 0;
}
