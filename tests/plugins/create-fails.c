/* SPDX-License-Identifier: MIT */
/* A device type whose create() refuses with set_error(): the operator must
 * read that sentence in muserd's log. */
#include <errno.h>

#include <muserd/plugin.h>

#define CREATE_FAILS_MESSAGE "failing: the frobnicator is not connected"

static int failing_create(struct muserd_host *host, const struct muserd_host_services *svc,
                          struct muserd_device_desc *desc, void **dev)
{
    svc->set_error(host, CREATE_FAILS_MESSAGE);
    return -ENODEV;
}

static const struct muserd_config_key no_keys[] = {{NULL, 0, NULL}};

static const struct muserd_device_type failing_type = {
    .size = sizeof(struct muserd_device_type),
    .name = "failing",
    .description = "create() always fails",
    .config_keys = no_keys,
    .create = failing_create,
};

static const struct muserd_device_type *const types[] = {&failing_type};

static const struct muserd_plugin plugin = {
    .abi_version = MUSERD_PLUGIN_ABI_VERSION,
    .size = sizeof(struct muserd_plugin),
    .name = "create-fails",
    .version = "1.0",
    .nr_types = 1,
    .types = types,
};

MUSERD_EXPORT const struct muserd_plugin *muserd_plugin_entry(void)
{
    return &plugin;
}
