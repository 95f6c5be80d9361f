/* SPDX-License-Identifier: MIT */
/* A device whose BAR0 write blocks its caller for two seconds (config
 * "seconds"), as a plugin doing synchronous disk I/O would: muserd must keep serving D-Bus and the
 * devices on other I/O threads meanwhile. Reads return how many writes finished. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <muserd/plugin.h>

#define SLOW_WRITE_SECONDS 2

struct slow {
    uint64_t seconds; /* config "seconds": how long a write takes */
    uint32_t writes;
};

static int slow_bar_access(void *dev, uint32_t bar, uint64_t offset, void *buf, uint32_t len,
                           bool is_write)
{
    struct slow *s = dev;

    if (len != 4)
        return -EINVAL;
    if (is_write) {
        for (uint64_t i = 0; i < s->seconds * 10; i++)
            usleep(100000);
        s->writes++;
    } else {
        memcpy(buf, &s->writes, 4);
    }
    return 0;
}

static void slow_destroy(void *dev)
{
    free(dev);
}

/* ABI 1's state: one blob, the write count behind a tag. */
#define SLOW_STATE_TAG 0x574f4c53u /* "SLOW" */

static int slow_save_state(void *dev, void **buf, size_t *len)
{
    struct slow *s = dev;
    uint32_t *blob = malloc(8);
    if (!blob)
        return -ENOMEM;
    blob[0] = SLOW_STATE_TAG;
    blob[1] = s->writes;
    *buf = blob;
    *len = 8;
    return 0;
}

static int slow_load_state(void *dev, const void *buf, size_t len)
{
    struct slow *s = dev;
    uint32_t blob[2];
    if (len != sizeof(blob))
        return -EINVAL;
    memcpy(blob, buf, sizeof(blob));
    if (blob[0] != SLOW_STATE_TAG)
        return -EINVAL;
    s->writes = blob[1];
    return 0;
}

static const struct muserd_device_ops slow_ops = {
    .size = sizeof(struct muserd_device_ops),
    .bar_access = slow_bar_access,
    .save_state = slow_save_state,
    .load_state = slow_load_state,
    .destroy = slow_destroy,
};

static int slow_create(struct muserd_host *host, const struct muserd_host_services *svc,
                       struct muserd_device_desc *desc, void **dev)
{
    struct slow *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->seconds = SLOW_WRITE_SECONDS;
    (void)svc->config_uint(host, "seconds", &s->seconds);
    desc->ids.vendor_id = 0x4d55;
    desc->ids.device_id = 0x00f1;
    desc->ids.class_code = 0xff0000;
    desc->bars[0].size = 4096;
    *dev = s;
    return 0;
}

static const struct muserd_config_key keys[] = {
    {"seconds", MUSERD_CONFIG_UINT, "how long a BAR0 write takes (default 2)"},
    {NULL, 0, NULL},
};

static const struct muserd_device_type slow_type = {
    .size = sizeof(struct muserd_device_type),
    .name = "slow",
    .description = "a BAR0 write takes two seconds",
    .config_keys = keys,
    .ops = &slow_ops,
    .create = slow_create,
};

static const struct muserd_device_type *const types[] = {&slow_type};

static const struct muserd_plugin plugin = {
    .abi_version = MUSERD_PLUGIN_ABI_VERSION,
    .size = sizeof(struct muserd_plugin),
    .name = "slow",
    .version = "1.0",
    .nr_types = 1,
    .types = types,
};

MUSERD_EXPORT const struct muserd_plugin *muserd_plugin_entry(void)
{
    return &plugin;
}
