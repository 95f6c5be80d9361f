/* SPDX-License-Identifier: MIT */
/*
 * What the host still needs of plugin ABI 1: its device descriptor, which
 * had fixed arrays that ABI 2 replaced by services->bar_add() and
 * ioeventfd_add(). Everything else of ABI 1 is a prefix of ABI 2 (the
 * services and ops tables only grew at their end), so an ABI 1 plugin gets
 * the same tables. The layout below must never change: the test plugins in
 * tests/plugins/abi1/ are built against the frozen ABI 1 header and prove it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <muserd/pci.h>

#define ABI1_MAX_MMAP_AREAS 8
#define ABI1_MAX_IOEVENTFDS 16

struct abi1_mmap_area {
    uint64_t offset;
    uint64_t size;
};

struct abi1_bar {
    uint64_t size;
    uint32_t flags;
    int fd;
    uint64_t fd_offset;
    uint32_t nr_areas;
    struct abi1_mmap_area areas[ABI1_MAX_MMAP_AREAS];
};

struct abi1_ioeventfd {
    uint32_t bar;
    uint64_t offset;
    uint64_t size;
    int fd;
    bool has_datamatch;
    uint64_t datamatch;
};

struct abi1_device_desc {
    struct muserd_pci_ids ids;
    struct muserd_pci_caps caps;
    struct abi1_bar bars[6];
    uint32_t nr_ioeventfds;
    struct abi1_ioeventfd ioeventfds[ABI1_MAX_IOEVENTFDS];
};

/* The sizes ABI 1 fixed on x86_64 (and every LP64 target). */
_Static_assert(sizeof(struct abi1_bar) == 160, "ABI 1 BAR layout");
_Static_assert(sizeof(struct abi1_ioeventfd) == 40, "ABI 1 ioeventfd layout");
_Static_assert(sizeof(struct abi1_device_desc) == 1648, "ABI 1 descriptor layout");
