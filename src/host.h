/* SPDX-License-Identifier: MIT */
/*
 * The host side of the plugin ABI: struct muserd_host (one per device
 * instance) and the services table handed to plugins. Watches, timers and
 * pollers (host-poller.c) a plugin forgets to free are freed after its
 * destroy(), with a warning.
 *
 * Threads: the services run on the device's I/O thread, except those the
 * ABI marks "any thread" (log, irq_raise, dma_get/put/mark_dirty,
 * quiesce_done, poller_wake, now_usec), which a plugin's own threads may
 * call: they reach only device.c's thread-safe parts (irq-routes.h, the DMA
 * table, device-wake.h) and never sd-event.
 */
#pragma once

#include <json-c/json.h>
#include <muserd/plugin.h>
#include <systemd/sd-event.h>

struct device;
struct device_desc;

struct muserd_host {
    struct device *device;
    sd_event *event;
    const char *id;
    struct json_object *config;
    char *error;                  /* set_error() text from create() */
    struct device_desc *building; /* during an ABI 2 create(): what bar_add() fills */
    const char *desc_error;       /* the first bar_add()/ioeventfd_add() refusal */
    struct muserd_watch *watches;
    struct muserd_timer *timers;
    struct muserd_poller *pollers;
};

extern const struct muserd_host_services host_services;

void host_init(struct muserd_host *h, struct device *d, sd_event *event, const char *id,
               struct json_object *config);
/* Free what the plugin left behind and the error text. */
void host_done(struct muserd_host *h);
