/* SPDX-License-Identifier: MIT */
/*
 * Sockets systemd hands over (socket activation): each listening socket unit
 * names its fd with FileDescriptorName=<device id>. A device created with
 * that id, from --device or CreateDevice, listens on the inherited socket
 * instead of binding its own.
 */
#pragma once

#include "util/macro.h"

struct activation;

/* Collect the fds of sd_listen_fds_with_names(). Fds that are not listening
 * UNIX stream sockets are closed with a warning. No fds: an empty set. */
int activation_new(struct activation **ret);
void activation_free(struct activation *a);
DEFINE_FREEP(struct activation, activation_free)

/* A dup of the socket named `name` (the set keeps its own, so a device
 * destroyed and created again gets it again), or -ENOENT. */
int activation_get(const struct activation *a, const char *name);
size_t activation_count(const struct activation *a);
