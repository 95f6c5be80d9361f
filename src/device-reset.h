/* SPDX-License-Identifier: MIT */
/*
 * Resetting a device, with the plugin quiesced around it. An ABI 2 plugin's
 * quiesce may answer -EBUSY (work in flight must end first) and call
 * services->quiesce_done() later, from any thread: the reset then waits, and
 * so does its answer (the client's DEVICE_RESET reply, the operator's D-Bus
 * Reset). An ABI 1 plugin is reset at once, as before.
 *
 * Threads: everything on the device's thread except device_quiesce_done(),
 * which any thread may call (it wakes the device's thread, device-wake.h).
 */
#pragma once

#include <stdbool.h>

struct device;

int device_reset_setup(struct device *d);
/* The device goes: a reset still waiting is answered -ECANCELED (before the
 * server goes). The state itself is freed after the plugin's destroy(), as
 * its threads may still call quiesce_done() until then. */
void device_reset_teardown(struct device *d);
void device_reset_free(struct device *d);

/* vfu_device_ops.reset: 0, -errno, or VFU_RESET_LATER. */
int device_reset_for_client(void *opaque);
/* The operator's Reset, inside an io_thread_call(): answers it now or later. */
int device_reset(struct device *d);

/* Ask the plugin to stop (on) or go on: 0 when quiet, -EBUSY when it will
 * call quiesce_done() later (ABI 2), or its error. */
int device_quiesce(struct device *d, bool on);

/* Reset at once, the plugin being quiet already (a device that never ran). */
int device_reset_now(struct device *d);
/* What the last quiesce_done() said. */
int device_quiesce_status(const struct device *d);

/* services->quiesce_done(), any thread: wakes the device's thread, which
 * calls device_reset_quiesced(). */
void device_quiesce_done(struct device *d, int status);
void device_reset_quiesced(struct device *d);
