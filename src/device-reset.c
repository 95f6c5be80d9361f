/* SPDX-License-Identifier: MIT */
#include "device-reset.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "device-migration.h"
#include "device-wake.h"
#include "device.h"
#include "iothreads.h"
#include "irq-routes.h"
#include "pci/pci.h"
#include "util/log.h"
#include "vfu/server.h"

/* Who waits for the reset in progress. */
enum reset_waiter {
    RESET_NOBODY,
    RESET_CLIENT,   /* a DEVICE_RESET reply */
    RESET_OPERATOR, /* an io_thread_call() answer */
};

struct device_reset_state {
    unsigned client_generation; /* whose DEVICE_RESET it is */
    bool pending;               /* quiesce answered -EBUSY; on_quiesced() goes on */
    enum reset_waiter waiter;
    struct io_call *call;
    _Atomic int status; /* what quiesce_done() said */
};

int device_quiesce(struct device *d, bool on)
{
    const struct muserd_device_ops *ops = d->type->type->ops;
    if (!PLUGIN_OP(ops, quiesce))
        return 0;
    int r = ops->quiesce(d->plugin_dev, on);
    /* -EBUSY means "later" only in ABI 2; ABI 1 never promised to call back. */
    if (r == -EBUSY && d->type->plugin->abi_version < 2)
        return -EIO;
    return r;
}

/* Quiesced: back to power-on state, then running again. */
static int reset_now(struct device *d)
{
    const struct muserd_device_ops *ops = d->type->type->ops;
    int r = 0;

    device_migration_on_reset(d);
    pci_dev_reset(d->pci);
    if (irq_routes_publish(d->routes, pci_nr_vectors(d->pci)) < 0)
        log_warning("%s: out of memory for interrupt routes; raises take the slow path.", d->id);
    if (PLUGIN_OP(ops, reset))
        r = ops->reset(d->plugin_dev);
    int k = device_quiesce(d, false);
    return r < 0 ? r : k < 0 ? k : 0;
}

static void finish(struct device *d, int r)
{
    struct device_reset_state *st = d->reset;
    enum reset_waiter waiter = st->waiter;
    struct io_call *call = st->call;

    st->pending = false;
    st->waiter = RESET_NOBODY;
    st->call = NULL;
    if (r < 0)
        log_warning_errno(r, "%s: reset failed: %m", d->id);
    if (waiter == RESET_CLIENT)
        vfu_server_reset_done(d->server, r);
    else if (waiter == RESET_OPERATOR)
        io_call_answer(call, r);
}

void device_reset_quiesced(struct device *d)
{
    if (!d->reset->pending)
        return; /* a late or repeated quiesce_done() */
    int status = atomic_load(&d->reset->status);
    if (d->reset->waiter == RESET_CLIENT && d->reset->client_generation != d->client_generation) {
        /* The client that asked is gone, and its request with it: a reset
         * now would hit the next client half way through its setup. The
         * plugin runs again, unless a migration holds it stopped. */
        finish(d, device_migration_holds(d) ? 0 : device_quiesce(d, false));
        return;
    }
    finish(d, status < 0 ? status : reset_now(d));
}

int device_reset_setup(struct device *d)
{
    d->reset = calloc(1, sizeof(*d->reset));
    return d->reset ? 0 : -ENOMEM;
}

void device_reset_teardown(struct device *d)
{
    struct device_reset_state *st = d->reset;
    if (st && st->pending)
        finish(d, -ECANCELED);
}

void device_reset_free(struct device *d)
{
    free(d->reset);
    d->reset = NULL;
}

static int begin(struct device *d, enum reset_waiter waiter)
{
    if (d->reset->pending)
        return -EBUSY;
    int r = device_quiesce(d, true);
    if (r == -EBUSY) {
        d->reset->pending = true;
        d->reset->waiter = waiter;
        d->reset->client_generation = d->client_generation;
        return 1; /* device_reset_quiesced() goes on */
    }
    if (r < 0)
        return r;
    return reset_now(d);
}

int device_reset_for_client(void *opaque)
{
    int r = begin(opaque, RESET_CLIENT);
    return r == 1 ? VFU_RESET_LATER : r;
}

int device_reset(struct device *d)
{
    struct io_call *call = io_call_defer();
    int r = begin(d, call ? RESET_OPERATOR : RESET_NOBODY);
    if (r == 1 && call) {
        d->reset->call = call;
        return 0; /* answered by finish() */
    }
    if (call)
        io_call_answer(call, r == 1 ? 0 : r);
    return r == 1 ? 0 : r;
}

int device_reset_now(struct device *d)
{
    return reset_now(d);
}

int device_quiesce_status(const struct device *d)
{
    return atomic_load(&d->reset->status);
}

void device_quiesce_done(struct device *d, int status)
{
    atomic_store(&d->reset->status, status);
    device_waker_wake(d->waker, DEVICE_WAKE_QUIESCED);
}
