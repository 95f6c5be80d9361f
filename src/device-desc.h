/* SPDX-License-Identifier: MIT */
/*
 * What a plugin says its device looks like, in the host's terms: the config
 * space inputs for pci/ and the BARs' backing and ioeventfds for vfu/. ABI 2
 * plugins build it with services->bar_add() and ioeventfd_add() from
 * create(); an ABI 1 plugin's fixed-array descriptor is converted once
 * create() returns. Every fd in here is the host's own dup.
 *
 * Threads: the device's thread (create runs there).
 */
#pragma once

#include <muserd/plugin.h>

#include "abi1.h"
#include "pci/pci.h"
#include "vfu/server.h"

struct device_desc {
    struct pci_device_desc pci;
    /* regions[0..5] (BARs) and io_fds; the config region and the IRQ
     * counts are filled later from the config space. */
    struct vfu_device_layout layout;
};

/* Empty, every fd -1. */
void device_desc_init(struct device_desc *desc);
void device_desc_close_fds(struct device_desc *desc);

/* services->bar_add() and ioeventfd_add(): -EINVAL (why set to a static
 * sentence), -EEXIST for a BAR added twice, -ENOSPC past the host's limits,
 * or dup()'s error. */
int device_desc_add_bar(struct device_desc *desc, const struct muserd_bar *bar, const char **why);
int device_desc_add_ioeventfd(struct device_desc *desc, const struct muserd_ioeventfd *e,
                              const char **why);

/* An ABI 1 plugin's descriptor, after its create() returned. */
int device_desc_from_abi1(struct device_desc *desc, const struct abi1_device_desc *old,
                          const char **why);
