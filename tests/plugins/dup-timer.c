/* SPDX-License-Identifier: MIT */
/* A plugin providing a device type name another plugin already provides
 * ("timer"): the later one in name order is refused. */
#include <errno.h>

#include <muserd/plugin.h>

static int dup_create(struct muserd_host *host, const struct muserd_host_services *svc,
                      struct muserd_device_desc *desc, void **dev)
{
    svc->set_error(host, "dup-timer: this impostor must never create a device");
    return -ENOTSUP;
}

static const struct muserd_config_key no_keys[] = {{NULL, 0, NULL}};

static const struct muserd_device_type dup_type = {
    .size = sizeof(struct muserd_device_type),
    .name = "timer",
    .description = "a second timer type",
    .config_keys = no_keys,
    .create = dup_create,
};

static const struct muserd_device_type *const types[] = {&dup_type};

static const struct muserd_plugin plugin = {
    .abi_version = MUSERD_PLUGIN_ABI_VERSION,
    .size = sizeof(struct muserd_plugin),
    .name = "dup-timer",
    .version = "1.0",
    .nr_types = 1,
    .types = types,
};

MUSERD_EXPORT const struct muserd_plugin *muserd_plugin_entry(void)
{
    return &plugin;
}
