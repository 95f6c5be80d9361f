/* SPDX-License-Identifier: MIT */
/* A device that works from a poller (muserd_host_services.poller_new): a
 * write of N to BAR0+0 queues N work items and wakes the poller, which does
 * one item a round. BAR0+4 reads the items done, BAR0+8 the rounds run. With
 * {"busy": true} the poller claims work every round and never sleeps: the
 * other devices on its thread must still be served. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <muserd/plugin.h>

#define POLLER_REG_QUEUE  0x0
#define POLLER_REG_DONE   0x4
#define POLLER_REG_ROUNDS 0x8

struct pdev {
    const struct muserd_host_services *svc;
    struct muserd_poller *poller;
    bool busy;
    uint32_t queued, done, rounds;
};

static int poll_round(void *opaque)
{
    struct pdev *p = opaque;
    p->rounds++;
    if (p->queued > 0) {
        p->queued--;
        p->done++;
        return 1;
    }
    return p->busy ? 1 : 0;
}

static int poller_bar_access(void *dev, uint32_t bar, uint64_t offset, void *buf, uint32_t len,
                             bool is_write)
{
    struct pdev *p = dev;
    uint32_t v = 0;

    if (len != 4 || offset > POLLER_REG_ROUNDS)
        return -EINVAL;
    if (is_write) {
        if (offset != POLLER_REG_QUEUE)
            return -EINVAL;
        memcpy(&v, buf, 4);
        p->queued += v;
        p->svc->poller_wake(p->poller);
        return 0;
    }
    v = offset == POLLER_REG_QUEUE ? p->queued : offset == POLLER_REG_DONE ? p->done : p->rounds;
    memcpy(buf, &v, 4);
    return 0;
}

static void poller_destroy(void *dev)
{
    struct pdev *p = dev;
    p->svc->poller_free(p->poller);
    free(p);
}

static const struct muserd_device_ops poller_ops = {
    .size = sizeof(struct muserd_device_ops),
    .bar_access = poller_bar_access,
    .destroy = poller_destroy,
};

static int poller_create(struct muserd_host *host, const struct muserd_host_services *svc,
                         struct muserd_device_desc *desc, void **dev)
{
    if (svc->size < offsetof(struct muserd_host_services, poller_free) + sizeof(svc->poller_free) ||
        !svc->poller_new) {
        svc->set_error(host, "poller: this muserd has no pollers");
        return -ENOTSUP;
    }
    struct pdev *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->svc = svc;
    (void)svc->config_bool(host, "busy", &p->busy);
    int r = svc->poller_new(host, poll_round, p, 1000, &p->poller);
    if (r < 0) {
        free(p);
        return r;
    }
    desc->ids.vendor_id = 0x4d55;
    desc->ids.device_id = 0x00f2;
    desc->ids.class_code = 0xff0000;
    desc->bars[0].size = 4096;
    *dev = p;
    return 0;
}

static const struct muserd_config_key keys[] = {
    {"busy", MUSERD_CONFIG_BOOL, "claim work every round: never sleep"},
    {NULL, 0, NULL},
};

static const struct muserd_device_type poller_type = {
    .size = sizeof(struct muserd_device_type),
    .name = "poller",
    .description = "work done from a poller",
    .config_keys = keys,
    .ops = &poller_ops,
    .create = poller_create,
};

static const struct muserd_device_type *const types[] = {&poller_type};

static const struct muserd_plugin plugin = {
    .abi_version = MUSERD_PLUGIN_ABI_VERSION,
    .size = sizeof(struct muserd_plugin),
    .name = "poller",
    .version = "1.0",
    .nr_types = 1,
    .types = types,
};

MUSERD_EXPORT const struct muserd_plugin *muserd_plugin_entry(void)
{
    return &plugin;
}
