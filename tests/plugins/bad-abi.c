/* SPDX-License-Identifier: MIT */
/* A plugin built for a plugin ABI this muserd does not support: refused, with
 * a message naming the file and both versions. */
#include <errno.h>

#include <muserd/plugin.h>

static int bad_abi_create(struct muserd_host *host, const struct muserd_host_services *svc,
                          struct muserd_device_desc *desc, void **dev)
{
    return -ENOTSUP;
}

static const struct muserd_config_key no_keys[] = {{NULL, 0, NULL}};

static const struct muserd_device_type bad_abi_type = {
    .size = sizeof(struct muserd_device_type),
    .name = "badabi",
    .description = "never loads",
    .config_keys = no_keys,
    .create = bad_abi_create,
};

static const struct muserd_device_type *const types[] = {&bad_abi_type};

static const struct muserd_plugin plugin = {
    .abi_version = 999,
    .size = sizeof(struct muserd_plugin),
    .name = "bad-abi",
    .version = "1.0",
    .nr_types = 1,
    .types = types,
};

MUSERD_EXPORT const struct muserd_plugin *muserd_plugin_entry(void)
{
    return &plugin;
}
