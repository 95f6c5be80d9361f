/* SPDX-License-Identifier: MIT */
#include "devices.h"

#include <check.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "plugins.h"
#include "util/mailbox.h"

static struct plugins *plugins;
static sd_event *event;
static struct mailbox *mailbox;
static char dir[64];
static unsigned sockets;

void test_devices_setup(void)
{
    const char *plugin_dir = getenv("MUSERD_PLUGIN_DIR");
    ck_assert_int_eq(plugins_load_dir(plugin_dir ? plugin_dir : "build/plugins", &plugins), 0);
    ck_assert_int_ge(sd_event_new(&event), 0);
    ck_assert_int_eq(mailbox_new(event, &mailbox), 0);
    snprintf(dir, sizeof(dir), "/tmp/muserd-devices-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

void test_devices_teardown(void)
{
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
    mailbox_free(mailbox);
    event = sd_event_unref(event);
    plugins_free(plugins);
}

void test_devices_load_test_plugin(const char *file)
{
    const char *test_dir = getenv("MUSERD_TEST_PLUGIN_DIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", test_dir ? test_dir : "build/test-plugins", file);
    ck_assert_int_eq(plugins_load_file(plugins, path), 0);
}

struct device *test_device_new(const char *type, const char *config)
{
    const struct plugin_type *t = plugins_find(plugins, type);
    ck_assert_msg(t, "no %s plugin (build it with make)", type);
    char path[128], id[16];
    snprintf(id, sizeof(id), "d%u", sockets++);
    snprintf(path, sizeof(path), "%s/%s.sock", dir, id);
    struct device *d = NULL;
    char *error = NULL;
    int r = device_new(event, mailbox, t, id, config, path, -1, &d, &error);
    ck_assert_msg(r == 0, "device_new: %s", error ? error : strerror(-r));
    return d;
}

uint32_t test_rd(struct device *d, uint32_t region, uint64_t off, uint32_t len)
{
    uint64_t v = 0;
    ck_assert_int_eq(device_region_access(d, region, off, &v, len, false), 0);
    return (uint32_t)v;
}

void test_wr(struct device *d, uint32_t region, uint64_t off, uint64_t v, uint32_t len)
{
    ck_assert_int_eq(device_region_access(d, region, off, &v, len, true), 0);
}

void test_same_config(struct device *a, struct device *b)
{
    for (uint32_t off = 0; off < 256; off += 4)
        ck_assert_msg(test_rd(a, VFIO_PCI_CONFIG_REGION_INDEX, off, 4) ==
                          test_rd(b, VFIO_PCI_CONFIG_REGION_INDEX, off, 4),
                      "config space differs at %#x", off);
}
