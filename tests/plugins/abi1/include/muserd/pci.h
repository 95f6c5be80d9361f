/* SPDX-License-Identifier: MIT */
/*
 * FROZEN: the plugin ABI 1 header exactly as muserd 0.x shipped it. The test
 * plugins in tests/plugins/abi1/ build against it, so the suite proves that
 * a host loads an ABI 1 plugin built by someone who never saw ABI 2. Never edit.
 *
 * PCI identity and capabilities a plugin asks muserd to emulate in the
 * device's configuration space. Part of plugin ABI 1 (see <muserd/plugin.h>).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct muserd_pci_ids {
    uint16_t vendor_id;
    uint16_t device_id;
    uint16_t subsystem_vendor_id;
    uint16_t subsystem_id;
    uint8_t revision;
    uint32_t class_code; /* 24 bits: base class, sub class, programming interface */
};

/*
 * Which capabilities the config space carries. The host lays out the chain
 * (PM, MSI, MSI-X, PCI Express, in that order) and emulates them.
 */
struct muserd_pci_caps {
    bool intx;                  /* interrupt pin INTA# */
    bool pm;                    /* power management (D0/D3hot) */
    uint16_t msi_vectors;       /* 0: no MSI; else 1, 2, 4, 8, 16 or 32 */
    uint16_t msix_vectors;      /* 0: no MSI-X; else 1..2048 */
    uint8_t msix_bar;           /* BAR holding the MSI-X table and PBA */
    uint32_t msix_table_offset; /* 8-byte aligned, inside msix_bar */
    uint32_t msix_pba_offset;   /* 8-byte aligned, inside msix_bar */
    bool pcie;                  /* PCI Express endpoint capability, 4 KiB config space */
};

#ifdef __cplusplus
}
#endif
