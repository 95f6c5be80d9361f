/* SPDX-License-Identifier: MIT */
/*
 * Devices in the test's own process, made from the real plugins (built with
 * make: MUSERD_PLUGIN_DIR, else build/plugins) on one event loop, and driven
 * as a client would through device_region_access. Failures are Check
 * assertions. For Check fixtures: setup and teardown around each test.
 */
#pragma once

#include <stdint.h>

struct device;

void test_devices_setup(void);
void test_devices_teardown(void);

/* A device of type with config (JSON, may be NULL); device_free() it. */
struct device *test_device_new(const char *type, const char *config);
/* Load a test plugin (file in MUSERD_TEST_PLUGIN_DIR, else build/test-plugins). */
void test_devices_load_test_plugin(const char *file);

uint32_t test_rd(struct device *d, uint32_t region, uint64_t off, uint32_t len);
void test_wr(struct device *d, uint32_t region, uint64_t off, uint64_t v, uint32_t len);
/* The config spaces of a and b are the same. */
void test_same_config(struct device *a, struct device *b);
