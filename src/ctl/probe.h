/* SPDX-License-Identifier: MIT */
/*
 * `muserctl probe SOCKET`: connect to a vfio-user device as a VMM would and
 * show what a guest would see. probe.c asks the device, probe-decode.c
 * decodes PCI config space, probe-text.c and probe-json.c print.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/client.h"

#define PROBE_MAX_REGIONS 32
#define PROBE_MAX_AREAS   16
#define PROBE_MAX_CAPS    64
#define PROBE_CONFIG_MAX  4096

struct probe_region {
    int err; /* GET_REGION_INFO failed with this (negative) errno */
    struct vfu_region_info info;
    struct vfu_sparse_mmap_area areas[PROBE_MAX_AREAS];
    uint32_t nr_areas;
    bool has_fd;
    /* GET_REGION_IO_FDS: sub-regions and fds, or io_fds_err < 0 */
    int io_fds_err;
    uint32_t nr_io_subregions, nr_io_fds;
};

struct probe_irq {
    int err;
    struct vfu_irq_info info;
};

struct probe {
    const char *socket;
    char *server_json;
    struct vfu_device_info dev;
    uint32_t nr_regions; /* min(dev.num_regions, PROBE_MAX_REGIONS) */
    struct probe_region regions[PROBE_MAX_REGIONS];
    uint32_t nr_irqs;
    struct probe_irq irqs[VFIO_PCI_NUM_IRQS];
    int config_err; /* reading config space failed with this */
    uint32_t config_len;
    uint8_t config[PROBE_CONFIG_MAX];
};

/* Connect, negotiate like QEMU and ask everything. On failure prints one
 * line to stderr and returns -errno. timeout_ms bounds each wait. */
int probe_run(const char *socket_path, int timeout_ms, struct probe *p);
void probe_done(struct probe *p);

/* ---- probe-decode.c: what config space says ---- */

struct probe_bar {
    unsigned index;
    bool io, is64, prefetchable;
    uint64_t address;
    uint64_t size; /* from the region info (0: unused BAR) */
};

struct probe_cap {
    uint16_t offset;
    uint16_t id;
    bool extended;   /* PCI Express extended capability (offset >= 0x100) */
    uint8_t version; /* extended only */
};

struct probe_pm {
    unsigned version, state; /* D-state 0..3 */
};
struct probe_msi {
    bool enabled, is64, maskable;
    unsigned vectors, enabled_vectors;
};
struct probe_msix {
    bool enabled, masked;
    unsigned table_size, table_bir, pba_bir;
    uint32_t table_offset, pba_offset;
};
struct probe_pcie {
    unsigned version, type, max_payload, link_speed, link_width;
};

uint16_t probe_cfg16(const struct probe *p, uint32_t off);
uint32_t probe_cfg32(const struct probe *p, uint32_t off);

/* BARs 0..5 that exist (the upper half of a 64-bit BAR is not one). */
size_t probe_bars(const struct probe *p, struct probe_bar bars[6]);
/* The capability chain from 0x34, then the extended chain from 0x100. */
size_t probe_caps(const struct probe *p, struct probe_cap *caps, size_t max);

void probe_decode_pm(const struct probe *p, uint16_t off, struct probe_pm *pm);
void probe_decode_msi(const struct probe *p, uint16_t off, struct probe_msi *msi);
void probe_decode_msix(const struct probe *p, uint16_t off, struct probe_msix *msix);
void probe_decode_pcie(const struct probe *p, uint16_t off, struct probe_pcie *pcie);

const char *probe_cap_name(uint8_t id);
const char *probe_ext_cap_name(uint16_t id);
const char *probe_class_name(uint8_t base_class);
const char *probe_pcie_type_name(unsigned type);
const char *probe_region_name(uint32_t index); /* "BAR0".."config", NULL beyond */
const char *probe_irq_name(uint32_t index);

/* ---- printers ---- */
int probe_print_text(const struct probe *p);
int probe_print_json(const struct probe *p);
