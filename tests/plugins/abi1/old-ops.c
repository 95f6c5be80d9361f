/* SPDX-License-Identifier: MIT */
/*
 * Plugins built against older, shorter structs, which ABI 1 promises to
 * load: "oldops" has an ops table that ends after reset (its size says so),
 * "noops" has no ops table at all. Behind oldops's short table lie traps: a
 * host that reads a member past the declared size calls one and aborts.
 * Neither keeps heap state, as the host calls no destroy() for them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <muserd/plugin.h>

#define OLD_OPS_PATTERN 0xab

/* A plugin's ops struct as an older ABI 1 header had it, then the traps. */
struct old_ops_image {
    uint32_t size;
    int (*bar_access)(void *dev, uint32_t bar, uint64_t offset, void *buf, uint32_t len,
                      bool is_write);
    int (*reset)(void *dev);
    void (*traps[8])(void);
};

static int old_bar_access(void *dev, uint32_t bar, uint64_t offset, void *buf, uint32_t len,
                          bool is_write)
{
    if (!is_write)
        memset(buf, OLD_OPS_PATTERN, len);
    return 0;
}

static int old_reset(void *dev)
{
    return 0;
}

static void trap(void)
{
    abort();
}

static const struct old_ops_image old_ops = {
    .size = offsetof(struct old_ops_image, traps),
    .bar_access = old_bar_access,
    .reset = old_reset,
    .traps = {trap, trap, trap, trap, trap, trap, trap, trap},
};

static char instance; /* dev must be non-NULL; nothing to free */

static int simple_create(struct muserd_host *host, const struct muserd_host_services *svc,
                         struct muserd_device_desc *desc, void **dev)
{
    desc->ids = (struct muserd_pci_ids){.vendor_id = 0x4d55, .device_id = 0x00fe};
    desc->caps = (struct muserd_pci_caps){.intx = true};
    desc->bars[0] = (struct muserd_bar){.size = 4096, .fd = -1};
    *dev = &instance;
    return 0;
}

static const struct muserd_config_key no_keys[] = {{NULL, 0, NULL}};

static const struct muserd_device_type old_type = {
    .size = sizeof(struct muserd_device_type),
    .name = "oldops",
    .description = "an ops table from an older header",
    .config_keys = no_keys,
    .ops = (const struct muserd_device_ops *)&old_ops,
    .create = simple_create,
};

static const struct muserd_device_type no_ops_type = {
    .size = sizeof(struct muserd_device_type),
    .name = "noops",
    .description = "no ops at all",
    .config_keys = no_keys,
    .ops = NULL,
    .create = simple_create,
};

static const struct muserd_device_type *const types[] = {&old_type, &no_ops_type};

static const struct muserd_plugin plugin = {
    .abi_version = MUSERD_PLUGIN_ABI_VERSION,
    .size = sizeof(struct muserd_plugin),
    .name = "old-ops",
    .version = "1.0",
    .nr_types = 2,
    .types = types,
};

MUSERD_EXPORT const struct muserd_plugin *muserd_plugin_entry(void)
{
    return &plugin;
}
