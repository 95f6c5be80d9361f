/* SPDX-License-Identifier: MIT */
/*
 * The "timer" device model: a programmable one-shot or periodic timer that
 * raises an interrupt when its device clock reaches a deadline. It is the
 * smallest device that exercises every interrupt path (INTx, MSI, MSI-X),
 * host timers and migration. Register layout: timer-regs.h and
 * muserd-plugin(7).
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <muserd/plugin.h>
#include <muserd/regs.h>

#include "timer-regs.h"

struct timer_dev {
    struct muserd_host *host;
    const struct muserd_host_services *svc;
    struct muserd_timer *timer;

    /*
     * CLOCK_MONOTONIC (in ns) at which NOW read 0. Arithmetic on it is modular,
     * so a migrated clock ahead of this host's uptime still reads right, and in
     * ns so a migrated NOW keeps its sub-microsecond part.
     */
    uint64_t base_ns;

    uint32_t ctrl;
    uint32_t status;
    uint32_t vector;
    uint32_t fire_count;
    uint64_t deadline;
    uint64_t interval;
    uint32_t now_hi_latch;

    bool quiesced;
    bool irq_error_logged;
    bool state_sent;   /* the final chunk is out: the next round ends the phase */
    bool state_loaded; /* a chunk came in */
};

static uint64_t timer_now_ns(struct timer_dev *d)
{
    return d->svc->now_usec(d->host) * 1000u - d->base_ns;
}

/* Point the host timer at DEADLINE, or disarm it when nothing can fire. */
static void timer_rearm(struct timer_dev *d)
{
    uint64_t now_usec, now_ns, when = 0;

    if (!d->quiesced && (d->ctrl & TIMER_CTRL_ENABLE)) {
        now_usec = d->svc->now_usec(d->host);
        now_ns = now_usec * 1000u - d->base_ns;
        if (d->deadline <= now_ns) {
            when = now_usec ? now_usec : 1; /* 0 would mean "disarm" to timer_set */
        } else {
            uint64_t delta_ns = d->deadline - now_ns;
            /* Round up: waking early would only cost a rearm, late is the contract. */
            uint64_t delta_us = delta_ns / 1000u + (delta_ns % 1000u != 0);
            /* A deadline centuries away never fires: leave the timer disarmed. */
            if (__builtin_add_overflow(now_usec, delta_us, &when))
                when = 0;
        }
    }
    d->svc->timer_set(d->timer, when);
}

static void timer_fire(struct timer_dev *d, uint64_t now_ns)
{
    int r;

    d->status |= TIMER_STATUS_FIRED;
    d->fire_count++;
    r = d->svc->irq_raise(d->host, d->vector);
    /* The guest chose the vector; tell the operator once, not at every period. */
    if (r < 0 && !d->irq_error_logged) {
        d->irq_error_logged = true;
        d->svc->log(d->host, MUSERD_LOG_WARNING, "timer: raising interrupt vector %u failed: %s",
                    d->vector, strerror(-r));
    }

    if ((d->ctrl & TIMER_CTRL_PERIODIC) && d->interval != 0) {
        uint64_t period = d->interval < TIMER_MIN_INTERVAL_NS ? TIMER_MIN_INTERVAL_NS : d->interval;
        if (__builtin_add_overflow(d->deadline, period, &d->deadline))
            d->deadline = UINT64_MAX;
        /* A guest (or host) that fell behind skips missed periods rather than
         * getting a burst of interrupts to catch up. */
        if (d->deadline <= now_ns && __builtin_add_overflow(now_ns, period, &d->deadline))
            d->deadline = UINT64_MAX;
    } else {
        d->ctrl &= ~TIMER_CTRL_ENABLE;
    }
}

static void timer_expired(void *opaque)
{
    struct timer_dev *d = opaque;
    uint64_t now_ns;

    if (d->quiesced || !(d->ctrl & TIMER_CTRL_ENABLE))
        return;
    now_ns = timer_now_ns(d);
    if (now_ns >= d->deadline)
        timer_fire(d, now_ns);
    timer_rearm(d);
}

static uint32_t timer_reg_read(void *dev, uint64_t offset)
{
    struct timer_dev *d = dev;
    uint64_t now;

    switch (offset) {
    case TIMER_REG_ID:
        return TIMER_ID_MAGIC;
    case TIMER_REG_VERSION:
        return TIMER_VERSION;
    case TIMER_REG_CTRL:
        return d->ctrl;
    case TIMER_REG_STATUS:
        return d->status;
    case TIMER_REG_NOW:
        now = timer_now_ns(d);
        d->now_hi_latch = (uint32_t)(now >> 32);
        return (uint32_t)now;
    case TIMER_REG_NOW + 4:
        return d->now_hi_latch;
    case TIMER_REG_DEADLINE:
        return (uint32_t)d->deadline;
    case TIMER_REG_DEADLINE + 4:
        return (uint32_t)(d->deadline >> 32);
    case TIMER_REG_INTERVAL:
        return (uint32_t)d->interval;
    case TIMER_REG_INTERVAL + 4:
        return (uint32_t)(d->interval >> 32);
    case TIMER_REG_VECTOR:
        return d->vector;
    case TIMER_REG_FIRE_COUNT:
        return d->fire_count;
    default:
        return 0;
    }
}

static void timer_reg_write(void *dev, uint64_t offset, uint32_t val)
{
    struct timer_dev *d = dev;
    switch (offset) {
    case TIMER_REG_CTRL:
        d->ctrl = val & TIMER_CTRL_MASK;
        timer_rearm(d);
        break;
    case TIMER_REG_STATUS:
        if (val & d->status & TIMER_STATUS_FIRED) {
            d->status &= ~TIMER_STATUS_FIRED;
            d->svc->irq_lower(d->host);
        }
        break;
    case TIMER_REG_DEADLINE:
    case TIMER_REG_DEADLINE + 4:
        d->deadline = muserd_reg64_set_half(d->deadline, offset != TIMER_REG_DEADLINE, val);
        timer_rearm(d);
        break;
    case TIMER_REG_INTERVAL:
    case TIMER_REG_INTERVAL + 4:
        d->interval = muserd_reg64_set_half(d->interval, offset != TIMER_REG_INTERVAL, val);
        break;
    case TIMER_REG_VECTOR:
        d->vector = val & TIMER_VECTOR_MASK;
        break;
    default:
        break; /* read-only and reserved registers ignore writes, as hardware does */
    }
}

static int timer_bar_access(void *dev, uint32_t bar, uint64_t offset, void *buf, uint32_t len,
                            bool is_write)
{
    if (bar != TIMER_REGS_BAR)
        return -EINVAL;
    /* An 8-byte access is two 32-bit ones, low half first, which is what
     * makes the NOW latch work. */
    return muserd_regs32_access(dev, TIMER_REGS_SIZE, offset, buf, len, is_write, timer_reg_read,
                                timer_reg_write);
}

static void timer_power_on(struct timer_dev *d)
{
    d->base_ns = d->svc->now_usec(d->host) * 1000u;
    d->ctrl = 0;
    d->status = 0;
    d->vector = 0;
    d->fire_count = 0;
    d->deadline = 0;
    d->interval = 0;
    d->now_hi_latch = 0;
}

static int timer_reset(void *dev)
{
    struct timer_dev *d = dev;

    timer_power_on(d);
    d->svc->irq_lower(d->host);
    timer_rearm(d);
    return 0;
}

static int timer_quiesce(void *dev, bool quiesced)
{
    struct timer_dev *d = dev;

    /* An expiry while quiesced is not lost: resuming rearms, and a deadline
     * already passed fires at once. */
    d->quiesced = quiesced;
    timer_rearm(d);
    return 0;
}

/* Migration stream, little-endian. Grow by bumping the version. */
#define TIMER_STATE_MAGIC   0x54534d54u /* "TMST" */
#define TIMER_STATE_VERSION 1u

struct timer_state {
    uint32_t magic;
    uint32_t version;
    uint32_t ctrl;
    uint32_t status;
    uint32_t vector;
    uint32_t fire_count;
    uint64_t now_ns; /* the device clock travels, not this host's CLOCK_MONOTONIC */
    uint64_t deadline;
    uint64_t interval;
};
_Static_assert(sizeof(struct timer_state) == 48, "timer state layout is fixed");

static int timer_save_state(void *dev, void **buf, size_t *len)
{
    struct timer_dev *d = dev;
    struct timer_state *s = malloc(sizeof(*s));

    if (!s)
        return -ENOMEM;
    *s = (struct timer_state){
        .magic = htole32(TIMER_STATE_MAGIC),
        .version = htole32(TIMER_STATE_VERSION),
        .ctrl = htole32(d->ctrl),
        .status = htole32(d->status),
        .vector = htole32(d->vector),
        .fire_count = htole32(d->fire_count),
        .now_ns = htole64(timer_now_ns(d)),
        .deadline = htole64(d->deadline),
        .interval = htole64(d->interval),
    };
    *buf = s;
    *len = sizeof(*s);
    return 0;
}

static int timer_load_state(void *dev, const void *buf, size_t len)
{
    struct timer_dev *d = dev;
    struct timer_state s;
    uint32_t ctrl, status, vector;

    if (!buf || len != sizeof(s))
        return -EINVAL;
    memcpy(&s, buf, sizeof(s));
    if (le32toh(s.magic) != TIMER_STATE_MAGIC || le32toh(s.version) != TIMER_STATE_VERSION)
        return -EINVAL;
    ctrl = le32toh(s.ctrl);
    status = le32toh(s.status);
    vector = le32toh(s.vector);
    if ((ctrl & ~TIMER_CTRL_MASK) || (status & ~TIMER_STATUS_FIRED) ||
        (vector & ~TIMER_VECTOR_MASK))
        return -EINVAL;

    /* Validate everything before touching the device: a bad stream changes nothing. */
    d->ctrl = ctrl;
    d->status = status;
    d->vector = vector;
    d->fire_count = le32toh(s.fire_count);
    d->deadline = le64toh(s.deadline);
    d->interval = le64toh(s.interval);
    d->base_ns = d->svc->now_usec(d->host) * 1000u - le64toh(s.now_ns);
    d->now_hi_latch = 0;
    timer_rearm(d);
    return 0;
}

/* The stream: the registers as one final chunk; nothing to send early. */
static int timer_state_save(void *dev, enum muserd_state_phase phase, void *buf, size_t len,
                            size_t *written)
{
    struct timer_dev *d = dev;
    *written = 0;
    if (phase != MUSERD_STATE_FINAL)
        return 0;
    if (d->state_sent) {
        d->state_sent = false; /* ready for another save */
        return 0;
    }
    void *blob;
    size_t n;
    int r = timer_save_state(d, &blob, &n);
    if (r < 0)
        return r;
    if (n > len) {
        free(blob);
        return -ENOBUFS;
    }
    memcpy(buf, blob, n);
    free(blob);
    *written = n;
    d->state_sent = true;
    return 0;
}

static int timer_state_save_begin(void *dev)
{
    struct timer_dev *d = dev;
    d->state_sent = false;
    return 0;
}

static int timer_state_pending(void *dev, enum muserd_state_phase phase, uint64_t *bytes)
{
    *bytes = phase == MUSERD_STATE_FINAL ? sizeof(struct timer_state) : 0;
    return 0;
}

static int timer_state_load(void *dev, const void *buf, size_t len)
{
    struct timer_dev *d = dev;
    if (d->state_loaded)
        return -EINVAL; /* one chunk only */
    int r = timer_load_state(d, buf, len);
    if (r == 0)
        d->state_loaded = true;
    return r;
}

static int timer_state_load_end(void *dev)
{
    struct timer_dev *d = dev;
    bool loaded = d->state_loaded;
    d->state_loaded = false;
    return loaded ? 0 : -EINVAL;
}

static void timer_destroy(void *dev)
{
    struct timer_dev *d = dev;

    if (d->timer)
        d->svc->timer_free(d->timer);
    free(d);
}

static const struct muserd_device_ops timer_ops = {
    .size = sizeof(struct muserd_device_ops),
    .bar_access = timer_bar_access,
    .reset = timer_reset,
    .quiesce = timer_quiesce,
    .destroy = timer_destroy,
    .state_save = timer_state_save,
    .state_pending = timer_state_pending,
    .state_load = timer_state_load,
    .state_load_end = timer_state_load_end,
    .state_save_begin = timer_state_save_begin,
};

static int timer_create(struct muserd_host *host, const struct muserd_host_services *svc,
                        struct muserd_device_desc *desc, void **dev)
{
    struct timer_dev *d;
    int r;

    d = calloc(1, sizeof(*d));
    if (!d) {
        svc->set_error(host, "timer: out of memory");
        return -ENOMEM;
    }
    d->host = host;
    d->svc = svc;
    r = svc->timer_new(host, timer_expired, d, &d->timer);
    if (r < 0) {
        svc->set_error(host, "timer: cannot create a host timer: %s", strerror(-r));
        free(d);
        return r;
    }
    timer_power_on(d);

    desc->ids = (struct muserd_pci_ids){
        .vendor_id = TIMER_PCI_VENDOR_ID,
        .device_id = TIMER_PCI_DEVICE_ID,
        .subsystem_vendor_id = TIMER_PCI_VENDOR_ID,
        .subsystem_id = TIMER_PCI_DEVICE_ID,
        .revision = 1,
        .class_code = TIMER_PCI_CLASS,
    };
    desc->caps = (struct muserd_pci_caps){
        .intx = true,
        .pm = true,
        .msi_vectors = TIMER_MSI_VECTORS,
        .msix_vectors = TIMER_MSIX_VECTORS,
        .msix_bar = TIMER_MSIX_BAR,
        .msix_table_offset = TIMER_MSIX_TABLE,
        .msix_pba_offset = TIMER_MSIX_PBA,
        .pcie = true,
    };
    const struct muserd_bar bars[] = {
        {.size = sizeof(struct muserd_bar),
         .index = TIMER_REGS_BAR,
         .length = TIMER_REGS_SIZE,
         .fd = -1},
        {.size = sizeof(struct muserd_bar),
         .index = TIMER_MSIX_BAR,
         .length = TIMER_MSIX_SIZE,
         .fd = -1},
    };
    for (size_t i = 0; i < sizeof(bars) / sizeof(bars[0]); i++) {
        r = svc->bar_add(host, &bars[i]);
        if (r < 0) {
            svc->set_error(host, "timer: the host refused BAR %u: %s", bars[i].index, strerror(-r));
            svc->timer_free(d->timer);
            free(d);
            return r;
        }
    }
    *dev = d;
    return 0;
}

/* The timer takes no configuration. */
static const struct muserd_config_key timer_config_keys[] = {
    {NULL, 0, NULL},
};

static const struct muserd_device_type timer_type = {
    .size = sizeof(struct muserd_device_type),
    .name = "timer",
    .description = "programmable one-shot/periodic timer raising INTx, MSI or MSI-X",
    .config_keys = timer_config_keys,
    .ops = &timer_ops,
    .create = timer_create,
};

static const struct muserd_device_type *const timer_types[] = {&timer_type};

static const struct muserd_plugin timer_plugin = {
    .abi_version = MUSERD_PLUGIN_ABI_VERSION,
    .size = sizeof(struct muserd_plugin),
    .name = "timer",
    .version = "1.0",
    .nr_types = 1,
    .types = timer_types,
};

MUSERD_EXPORT const struct muserd_plugin *muserd_plugin_entry(void)
{
    return &timer_plugin;
}
