/* SPDX-License-Identifier: MIT */
/*
 * Raising a device's interrupts from any thread. The device's thread owns
 * the PCI model (pci/: which mechanism is on, what is masked, the pending
 * bits) and publishes here, per vector, whether a raise may go straight to
 * the client: an MSI or MSI-X vector that is enabled and unmasked in config
 * space. Such a raise is one call of ops->fire under a short lock, which
 * ends in an eventfd write (vfu/irq.c keeps the client's own masks under its
 * own lock). Everything else (INTx, a masked vector whose pending bit must
 * be set) needs the PCI model: on the device's thread ops->raise is called
 * at once; from another thread the vector is marked in a bitmap and the
 * device's thread is woken (ops->wake) to raise it.
 *
 * Ordering: the device's thread republishes right after it changes config
 * space, before it answers the client. A raise that took the route before
 * that was raised before the change took effect; one after it sees the new
 * route. No raise is lost: a vector that is not direct goes through the
 * PCI model, which holds it pending while masked.
 *
 * Threads: irq_routes_new, _publish, _close and _free on the device's thread;
 * irq_routes_raise from any thread.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "util/macro.h"

struct irq_routes;

struct irq_routes_ops {
    /* Deliver vector of VFIO IRQ index `index` now; called with the routes'
     * lock held, from any thread. */
    int (*fire)(void *opaque, uint32_t index, uint32_t vector);
    /* The slow path, on the device's thread: raise through the PCI model. */
    int (*raise)(void *opaque, uint32_t vector);
    /* What route vector has now (device thread, under the lock): a VFIO IRQ
     * index (MSI or MSI-X) to fire directly, or -1. */
    int (*route)(void *opaque, uint32_t vector);
    /* Any thread: vectors were posted; have the device's thread call
     * irq_routes_run_posted(). */
    void (*wake)(void *opaque);
};

/* Made on the device's thread. Raises fail with -ENOTCONN until the first
 * irq_routes_publish(). */
int irq_routes_new(const struct irq_routes_ops *ops, void *opaque, struct irq_routes **ret);
/* The device's thread: raise the vectors other threads posted. */
void irq_routes_run_posted(struct irq_routes *routes);
void irq_routes_free(struct irq_routes *routes);
DEFINE_FREEP(struct irq_routes, irq_routes_free)

/* Recompute every vector's route (ops->route) for a device with nr_vectors
 * interrupt vectors. 0, or -ENOMEM when the tables cannot grow (the first
 * publish: raises stay refused; later ones keep the old size). */
int irq_routes_publish(struct irq_routes *routes, uint32_t nr_vectors);
/* No more raises reach ops: they return -ENOTCONN (the device is going). */
void irq_routes_close(struct irq_routes *routes);

/* Any thread. -EINVAL for a vector the device does not have, -ENOTCONN
 * before the device is live or once it is closed, else what the route gave. */
int irq_routes_raise(struct irq_routes *routes, uint32_t vector);
