/* SPDX-License-Identifier: MIT */
/*
 * An ABI 2 test device whose own threads call the any-thread services: a
 * raiser thread calls irq_raise(0) as fast as it can, a holder thread keeps
 * guest memory from dma_get() until dma_put(). The race tests drive them
 * while the client masks, unmaps, or the operator destroys the device.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <muserd/plugin.h>

#include "storm-regs.h"

struct storm_dev {
    struct muserd_host *host;
    const struct muserd_host_services *svc;

    pthread_t raiser;
    bool raiser_running; /* device thread only */
    atomic_bool stop;
    atomic_uint_fast64_t raises;
    struct muserd_poller *poller;
    atomic_uint_fast64_t polls;

    pthread_t holder;
    bool holder_started;  /* device thread only */
    pthread_mutex_t lock; /* holding and quiesce_waiting */
    bool holding;
    bool state_sent; /* the device thread's */
    bool quiesce_waiting;
    uint64_t hold_iova, hold_len; /* the registers: device thread */
    uint32_t hold_ms;
    uint64_t job_iova, job_len; /* copied for the holder before it starts */
    uint32_t job_ms;
    atomic_uint hold_status;
    unsigned early_resets; /* device thread only */
};

static void *raiser_main(void *opaque)
{
    struct storm_dev *d = opaque;
    while (!atomic_load(&d->stop)) {
        if (d->svc->irq_raise(d->host, 0) == 0)
            atomic_fetch_add(&d->raises, 1);
        d->svc->poller_wake(d->poller);
    }
    return NULL;
}

static void *holder_main(void *opaque)
{
    struct storm_dev *d = opaque;
    struct muserd_dma_ref ref = {
        .size = sizeof(ref),
        .prot = MUSERD_DMA_WRITE,
        .iova = d->job_iova,
        .len = d->job_len,
    };
    int r = d->svc->dma_get(d->host, &ref);
    if (r < 0) {
        pthread_mutex_lock(&d->lock);
        d->holding = false;
        bool waiting = d->quiesce_waiting;
        d->quiesce_waiting = false;
        pthread_mutex_unlock(&d->lock);
        atomic_store(&d->hold_status, 0x100u + (unsigned)-r);
        if (waiting)
            d->svc->quiesce_done(d->host, 0);
        d->svc->poller_wake(d->poller); /* one wake from this thread */
        return NULL;
    }
    atomic_store(&d->hold_status, STORM_HOLD_HOLDING);
    memset(ref.ptr, STORM_HOLD_BYTE, ref.len);
    struct timespec ts = {d->job_ms / 1000, (long)(d->job_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    /* DONE before the put: the put may let the host answer the client's
     * DMA_UNMAP at once, and the client reads DONE after that answer. */
    atomic_store(&d->hold_status, STORM_HOLD_DONE);
    d->svc->dma_put(d->host, &ref, true);
    /* A quiesce that waited for this hold is complete now. */
    pthread_mutex_lock(&d->lock);
    d->holding = false;
    bool waiting = d->quiesce_waiting;
    d->quiesce_waiting = false;
    pthread_mutex_unlock(&d->lock);
    if (waiting)
        d->svc->quiesce_done(d->host, 0);
    d->svc->poller_wake(d->poller); /* one wake from this thread */
    return NULL;
}

/* Finds no work: it runs only while woken, then sleeps. */
static int storm_poll(void *opaque)
{
    struct storm_dev *d = opaque;
    atomic_fetch_add(&d->polls, 1);
    return 0;
}

static void stop_raiser(struct storm_dev *d)
{
    if (!d->raiser_running)
        return;
    atomic_store(&d->stop, true);
    pthread_join(d->raiser, NULL);
    d->raiser_running = false;
}

static void join_holder(struct storm_dev *d)
{
    if (d->holder_started)
        pthread_join(d->holder, NULL);
    d->holder_started = false;
}

static int storm_ctrl(struct storm_dev *d, uint32_t v)
{
    if ((v & STORM_CTRL_RAISE) && !d->raiser_running) {
        atomic_store(&d->stop, false);
        if (pthread_create(&d->raiser, NULL, raiser_main, d) != 0)
            return -EAGAIN;
        d->raiser_running = true;
    } else if (!(v & STORM_CTRL_RAISE)) {
        stop_raiser(d);
    }
    if (v & STORM_CTRL_HOLD) {
        join_holder(d);
        atomic_store(&d->hold_status, STORM_HOLD_IDLE);
        pthread_mutex_lock(&d->lock);
        d->holding = true;
        pthread_mutex_unlock(&d->lock);
        d->job_iova = d->hold_iova;
        d->job_len = d->hold_len;
        d->job_ms = d->hold_ms;
        if (pthread_create(&d->holder, NULL, holder_main, d) != 0) {
            d->holding = false;
            return -EAGAIN;
        }
        d->holder_started = true;
    }
    return 0;
}

static int storm_bar_access(void *dev, uint32_t bar, uint64_t offset, void *buf, uint32_t len,
                            bool is_write)
{
    struct storm_dev *d = dev;
    uint64_t v = 0;

    if (bar != STORM_REGS_BAR || len > 8)
        return -EINVAL;
    if (is_write) {
        memcpy(&v, buf, len);
        switch (offset) {
        case STORM_REG_CTRL:
            return storm_ctrl(d, (uint32_t)v);
        case STORM_REG_HOLD_IOVA:
            d->hold_iova = v;
            return 0;
        case STORM_REG_HOLD_LEN:
            d->hold_len = v;
            return 0;
        case STORM_REG_HOLD_MS:
            d->hold_ms = (uint32_t)v;
            return 0;
        default:
            return 0;
        }
    }
    switch (offset) {
    case STORM_REG_RAISES:
        v = atomic_load(&d->raises);
        break;
    case STORM_REG_HOLD_IOVA:
        v = d->hold_iova;
        break;
    case STORM_REG_POLLS:
        v = atomic_load(&d->polls);
        break;
    case STORM_REG_EARLY_RESETS:
        v = d->early_resets;
        break;
    case STORM_REG_HOLD_STATUS:
        v = atomic_load(&d->hold_status);
        break;
    default:
        break;
    }
    memcpy(buf, &v, len);
    return 0;
}

/* Quiet means no raises and no guest memory held: a hold in progress makes
 * the host wait (-EBUSY) until the holder calls quiesce_done(). */
static int storm_quiesce(void *dev, bool quiesced)
{
    struct storm_dev *d = dev;
    if (!quiesced)
        return 0;
    stop_raiser(d);
    pthread_mutex_lock(&d->lock);
    int r = d->holding ? -EBUSY : 0;
    d->quiesce_waiting = d->holding;
    pthread_mutex_unlock(&d->lock);
    return r;
}

/* Power-on state: nothing running, every register 0. */
static int storm_reset(void *dev)
{
    struct storm_dev *d = dev;
    stop_raiser(d);
    pthread_mutex_lock(&d->lock);
    bool holding = d->holding;
    pthread_mutex_unlock(&d->lock);
    if (holding) {
        /* Not quiet yet: a real device would lose its DMA here. Count it
         * and leave the holder be (it is joined later). */
        d->early_resets++;
        return 0;
    }
    join_holder(d);
    atomic_store(&d->raises, 0);
    atomic_store(&d->hold_status, STORM_HOLD_IDLE);
    d->hold_iova = d->hold_len = 0;
    d->hold_ms = 0;
    return 0;
}

static void storm_destroy(void *dev)
{
    struct storm_dev *d = dev;
    stop_raiser(d);
    join_holder(d);
    d->svc->poller_free(d->poller);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

/* State: the raise count, one chunk in the final phase, so the suite can
 * migrate a device whose quiesce finishes later. */
static int storm_state_save(void *dev, enum muserd_state_phase phase, void *buf, size_t len,
                            size_t *written)
{
    struct storm_dev *d = dev;
    *written = 0;
    if (phase != MUSERD_STATE_FINAL || d->state_sent) {
        d->state_sent = false;
        return 0;
    }
    uint64_t raises = atomic_load(&d->raises);
    if (len < sizeof(raises))
        return -ENOBUFS;
    memcpy(buf, &raises, sizeof(raises));
    *written = sizeof(raises);
    d->state_sent = true;
    return 0;
}

static int storm_state_save_begin(void *dev)
{
    struct storm_dev *d = dev;
    d->state_sent = false;
    return 0;
}

static int storm_state_load(void *dev, const void *buf, size_t len)
{
    struct storm_dev *d = dev;
    uint64_t raises;
    if (len != sizeof(raises))
        return -EINVAL;
    memcpy(&raises, buf, sizeof(raises));
    atomic_store(&d->raises, raises);
    return 0;
}

static int storm_state_load_end(void *dev)
{
    return 0;
}

static const struct muserd_device_ops storm_ops = {
    .size = sizeof(struct muserd_device_ops),
    .bar_access = storm_bar_access,
    .reset = storm_reset,
    .quiesce = storm_quiesce,
    .destroy = storm_destroy,
    .state_save = storm_state_save,
    .state_load = storm_state_load,
    .state_load_end = storm_state_load_end,
    .state_save_begin = storm_state_save_begin,
};

static int storm_create(struct muserd_host *host, const struct muserd_host_services *svc,
                        struct muserd_device_desc *desc, void **dev)
{
    if (!MUSERD_HAS_SERVICE(svc, quiesce_done)) {
        svc->set_error(host, "storm: this muserd lacks dma_get/dma_put.");
        return -ENOTSUP;
    }
    struct storm_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->host = host;
    d->svc = svc;
    pthread_mutex_init(&d->lock, NULL);
    desc->ids =
        (struct muserd_pci_ids){.vendor_id = 0x1b36, .device_id = 0x7f02, .class_code = 0xff0000};
    desc->caps = (struct muserd_pci_caps){
        .intx = true,
        .msi_vectors = STORM_VECTORS,
        .msix_vectors = STORM_VECTORS,
        .msix_bar = STORM_MSIX_BAR,
        .msix_table_offset = STORM_MSIX_TABLE,
        .msix_pba_offset = STORM_MSIX_PBA,
    };
    const struct muserd_bar regs = {
        .size = sizeof(regs), .index = STORM_REGS_BAR, .length = STORM_REGS_SIZE, .fd = -1};
    const struct muserd_bar msix = {
        .size = sizeof(msix), .index = STORM_MSIX_BAR, .length = STORM_MSIX_SIZE, .fd = -1};
    int r = svc->bar_add(host, &regs);
    if (r >= 0)
        r = svc->bar_add(host, &msix);
    if (r >= 0)
        r = svc->poller_new(host, storm_poll, d, 1000, &d->poller);
    if (r < 0) {
        free(d);
        return r;
    }
    *dev = d;
    return 0;
}

static const struct muserd_config_key no_keys[] = {{NULL, 0, NULL}};

static const struct muserd_device_type storm_type = {
    .size = sizeof(struct muserd_device_type),
    .name = "storm",
    .description = "test device: raises and holds guest memory from its own threads",
    .config_keys = no_keys,
    .ops = &storm_ops,
    .create = storm_create,
};

static const struct muserd_device_type *const types[] = {&storm_type};

static const struct muserd_plugin plugin = {
    .abi_version = MUSERD_PLUGIN_ABI_VERSION,
    .size = sizeof(struct muserd_plugin),
    .name = "storm",
    .version = "1.0",
    .nr_types = 1,
    .types = types,
};

MUSERD_EXPORT const struct muserd_plugin *muserd_plugin_entry(void)
{
    return &plugin;
}
