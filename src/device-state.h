/* SPDX-License-Identifier: MIT */
/*
 * A device's state as one stream: the host's part (config space, MSI-X
 * table and PBA) and the plugin's chunks, as records of
 *     u32 tag, u32 length (little-endian), length bytes
 * in the order saved: PLUGIN records of the pre-copy phase, then, once the
 * device is quiesced, the PCI record, the PLUGIN records of the final phase
 * and END. A loader takes the stream in pieces of any size and hands the
 * plugin each chunk whole, in order; a stream without END is truncated.
 * ABI 1 plugins give one blob (save_state), sent as one final record.
 *
 * This is the layer migration builds on (the versioned header, checksum,
 * D-Bus and protocol faces come with it); it does not quiesce: the caller
 * has the device quiet before the final phase.
 *
 * Threads: the device's thread.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <muserd/plugin.h>

#include "util/macro.h"

struct device;
struct device_state_saver;
struct device_state_loader;

int device_state_saver_new(struct device *d, struct device_state_saver **ret);
void device_state_saver_free(struct device_state_saver *s);
DEFINE_FREEP(struct device_state_saver, device_state_saver_free)
/* The next bytes of `phase` into buf (at most len): *written 0 ends the
 * phase. PRECOPY may run any number of times before FINAL. */
int device_state_save(struct device_state_saver *s, enum muserd_state_phase phase, void *buf,
                      size_t len, size_t *written);
/* Bytes still to come in `phase`, an estimate: the record going out, the
 * host's records not yet sent and the plugin's guess (state_pending, in
 * records; none without one). */
size_t device_state_pending(const struct device_state_saver *s, enum muserd_state_phase phase);

/* Load into a device no client drives yet. */
int device_state_loader_new(struct device *d, struct device_state_loader **ret);
void device_state_loader_free(struct device_state_loader *l);
DEFINE_FREEP(struct device_state_loader, device_state_loader_free)
/* More of the stream. -EINVAL (*why set) for a stream that is not one.
 * used NULL: bytes after END are refused. used set: the load stops after
 * END and *used says how many bytes of buf it took (all of them until END),
 * so that a stream can carry more after it (migration-stream.c's trailer). */
int device_state_load(struct device_state_loader *l, const void *buf, size_t len, size_t *used,
                      const char **why);
/* Has END come in? */
bool device_state_load_ended(const struct device_state_loader *l);
/* The stream ended: -EINVAL when it was cut short, or the plugin's verdict. */
int device_state_load_end(struct device_state_loader *l, const char **why);
