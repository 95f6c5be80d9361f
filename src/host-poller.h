/* SPDX-License-Identifier: MIT */
/*
 * Pollers for plugins (struct muserd_host_services): a function the
 * device's loop calls round after round while it finds work, taking turns
 * with the loop's other sources (and other pollers); asleep, costing
 * nothing, once it found nothing for its idle time, until woken.
 *
 * Threads: host_poller_wake() from any thread (a plugin's own threads);
 * the rest on the device's loop thread.
 */
#pragma once

#include <muserd/plugin.h>

struct muserd_host;

int host_poller_new(struct muserd_host *h, muserd_poll_fn fn, void *opaque, uint64_t idle_usec,
                    struct muserd_poller **ret);
void host_poller_wake(struct muserd_poller *p);
void host_poller_free(struct muserd_poller *p);
/* Free every poller of h (the plugin forgot them). Returns how many. */
unsigned host_pollers_free_all(struct muserd_host *h);
