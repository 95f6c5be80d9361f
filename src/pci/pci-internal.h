/* SPDX-License-Identifier: MIT */
/*
 * What the files of src/pci/ share: the device struct, the little-endian
 * register helpers and the per-concern builders and hooks. Nothing outside
 * src/pci/ includes this; the contract is pci.h.
 */
#pragma once

#include <endian.h>
#include <string.h>

#include <linux/pci_regs.h>

#include "pci.h"

/* Capability sizes this module lays out (PCI Local Bus 3.0, PCIe 4.0). */
#define PCI_PM_CAP_SIZE   8
#define PCI_MSI_CAP_SIZE  24 /* 64-bit address with per-vector masking */
#define PCI_MSIX_CAP_SIZE 12
#define PCI_EXP_CAP_SIZE  0x3c /* version 2 endpoint, through Slot Control/Status 2 */
#define PCI_CAP_START     0x40
#define PCI_MSIX_MAX      2048

struct pci_dev {
    pci_fire_fn fire;
    void *opaque;

    struct muserd_pci_caps caps;
    uint64_t bar_size[6];
    uint32_t bar_flags[6];

    uint32_t size; /* 256 or 4096 */
    /* Capability offsets in config space; 0 when absent. */
    uint8_t pm_off, msi_off, msix_off, pcie_off;

    /* Only the first 256 bytes are stored: muserd puts no extended
     * capabilities at 0x100, so the rest of a PCIe device's 4 KiB reads as
     * zero and ignores writes. Storing it would cost 12 KiB per device. */
    uint8_t cfg[PCI_CFG_SPACE_SIZE];
    /* Guest-writable bits and write-1-to-clear bits; the rest is read-only. */
    uint8_t wmask[PCI_CFG_SPACE_SIZE];
    uint8_t w1cmask[PCI_CFG_SPACE_SIZE];
    /* cfg as it is at power-on, for pci_dev_reset(). */
    uint8_t reset_cfg[PCI_CFG_SPACE_SIZE];

    /* MSI-X table, 4 dwords per vector in host byte order, and the PBA. */
    uint32_t *msix_table;
    uint64_t *msix_pba;
    /* Has the client written the table since reset? QEMU emulates the table
     * itself and never forwards table writes (it masks a vector through
     * SET_IRQS instead), so per-entry mask bits only hold vectors back once
     * a client shows it drives the table here. */
    bool msix_table_written;
};

static inline uint16_t cfg_get16(const struct pci_dev *dev, uint32_t off)
{
    uint16_t v;
    memcpy(&v, dev->cfg + off, sizeof(v));
    return le16toh(v);
}
static inline uint32_t cfg_get32(const struct pci_dev *dev, uint32_t off)
{
    uint32_t v;
    memcpy(&v, dev->cfg + off, sizeof(v));
    return le32toh(v);
}
static inline void put16(uint8_t *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, sizeof(v));
}
static inline void put32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, sizeof(v));
}
static inline void cfg_set16(struct pci_dev *dev, uint32_t off, uint16_t v)
{
    put16(dev->cfg + off, v);
}
static inline void cfg_set32(struct pci_dev *dev, uint32_t off, uint32_t v)
{
    put32(dev->cfg + off, v);
}
/* Set value, guest-writable and write-1-to-clear bits of a register at once. */
static inline void reg16(struct pci_dev *dev, uint32_t off, uint16_t val, uint16_t rw, uint16_t w1c)
{
    put16(dev->cfg + off, val);
    put16(dev->wmask + off, rw);
    put16(dev->w1cmask + off, w1c);
}
static inline void reg32(struct pci_dev *dev, uint32_t off, uint32_t val, uint32_t rw, uint32_t w1c)
{
    put32(dev->cfg + off, val);
    put32(dev->wmask + off, rw);
    put32(dev->w1cmask + off, w1c);
}

/* Does a write of [off, off+len) touch any byte of [reg, reg+reg_len)? */
static inline bool touches(uint64_t off, uint32_t len, uint32_t reg, uint32_t reg_len)
{
    return off < (uint64_t)reg + reg_len && reg < off + len;
}

static inline void pci_fire(struct pci_dev *dev, uint32_t index, uint32_t vector)
{
    if (dev->fire)
        dev->fire(dev->opaque, index, vector);
}

/* caps.c: lay out the chain at 0x40 (PM, MSI, MSI-X, PCIe) and emulate PM. */
void pci_caps_build(struct pci_dev *dev);
void pci_pm_write(struct pci_dev *dev, uint16_t old_pmcsr);

/* msi.c */
int pci_msi_validate(const struct muserd_pci_caps *caps, const char **error);
void pci_msi_build(struct pci_dev *dev, uint8_t off);
bool pci_msi_enabled(const struct pci_dev *dev);
int pci_msi_raise(struct pci_dev *dev, uint32_t vector);
bool pci_msi_direct(const struct pci_dev *dev, uint32_t vector);
/* After a guest write to the MSI capability: clamp, deliver unmasked pending vectors. */
void pci_msi_write(struct pci_dev *dev);

/* msix.c */
int pci_msix_validate(const struct pci_dev *dev, const char **error);
int pci_msix_alloc(struct pci_dev *dev);
void pci_msix_build(struct pci_dev *dev, uint8_t off);
void pci_msix_reset(struct pci_dev *dev);
void pci_msix_free(struct pci_dev *dev);
bool pci_msix_enabled(const struct pci_dev *dev);
int pci_msix_raise(struct pci_dev *dev, uint32_t vector);
bool pci_msix_direct(const struct pci_dev *dev, uint32_t vector);
/* After a guest write to the MSI-X capability: deliver unmasked pending vectors. */
void pci_msix_write(struct pci_dev *dev);
