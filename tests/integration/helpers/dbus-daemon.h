/* SPDX-License-Identifier: MIT */
/*
 * A private dbus-daemon for integration tests and benchmarks: a config
 * written to a temporary directory (listening on unix:path=DIR/bus, a
 * default policy allowing everything, plus any extra config you pass),
 * started with --nofork, stopped and removed by test_bus_free(). Functions
 * return 0 or a negative errno.
 *
 *     struct test_bus *b;
 *     test_bus_start(NULL, &b);
 *     ... muserd --bus-address test_bus_address(b) ...
 *     test_bus_wait_name(test_bus_address(b), "org.muserd1", 10000);
 *     test_bus_free(b);
 */
#pragma once

#include <stdbool.h>

#include <systemd/sd-bus.h>

#include "util/macro.h"

struct test_bus;

/*
 * Start dbus-daemon. extra_config (may be NULL) is inserted into the
 * <busconfig> after the allow-all default policy, e.g. an <include> of a
 * policy file under test (a later rule wins). Returns once the bus listens.
 */
int test_bus_start(const char *extra_config, struct test_bus **ret);
/* SIGTERM (SIGKILL after a second), reap, remove the temporary directory. */
void test_bus_free(struct test_bus *b);
DEFINE_FREEP(struct test_bus, test_bus_free)
/* The address clients and muserd --bus-address use. */
const char *test_bus_address(const struct test_bus *b);
/* The temporary directory (mode 0755, so that other users can connect). */
const char *test_bus_dir(const struct test_bus *b);

/* A new client connection to address (Hello done). */
int test_bus_connect(const char *address, sd_bus **ret);
/* 1 when name has an owner, 0 when not. */
int test_bus_name_has_owner(sd_bus *bus, const char *name);
/* Poll NameHasOwner until name has an owner; -ETIMEDOUT after timeout_ms. */
int test_bus_wait_name(const char *address, const char *name, int timeout_ms);
