/* SPDX-License-Identifier: MIT */
/*
 * Config space state for migration: the guest-visible bytes, the MSI-X
 * table and PBA, and whether the client drives the table. Little-endian,
 * versioned, checked whole before anything changes.
 */
#include <errno.h>
#include <stdlib.h>

#include "pci-internal.h"

#define PCI_STATE_MAGIC   0x50434931u /* "PCI1" */
#define PCI_STATE_VERSION 1u

struct pci_state_header {
    uint32_t magic;
    uint32_t version;
    uint32_t cfg_bytes;
    uint32_t msix_vectors;
    uint32_t flags; /* bit 0: msix_table_written */
    uint32_t reserved;
};

static size_t msix_bytes(const struct pci_dev *dev)
{
    size_t vectors = dev->caps.msix_vectors;
    return vectors * PCI_MSIX_ENTRY_SIZE + (vectors + 63) / 64 * sizeof(uint64_t);
}

size_t pci_state_size(const struct pci_dev *dev)
{
    return sizeof(struct pci_state_header) + sizeof(dev->cfg) + msix_bytes(dev);
}

static void state_put32(uint8_t **p, uint32_t v)
{
    v = htole32(v);
    memcpy(*p, &v, 4);
    *p += 4;
}

static uint32_t state_get32(const uint8_t **p)
{
    uint32_t v;
    memcpy(&v, *p, 4);
    *p += 4;
    return le32toh(v);
}

void pci_state_save(const struct pci_dev *dev, void *buf)
{
    uint8_t *p = buf;
    state_put32(&p, PCI_STATE_MAGIC);
    state_put32(&p, PCI_STATE_VERSION);
    state_put32(&p, sizeof(dev->cfg));
    state_put32(&p, dev->caps.msix_vectors);
    state_put32(&p, dev->msix_table_written ? 1u : 0u);
    state_put32(&p, 0);
    memcpy(p, dev->cfg, sizeof(dev->cfg));
    p += sizeof(dev->cfg);
    for (uint32_t i = 0; i < dev->caps.msix_vectors * 4u; i++)
        state_put32(&p, dev->msix_table[i]);
    for (uint32_t w = 0; w < (dev->caps.msix_vectors + 63u) / 64u; w++) {
        uint64_t v = htole64(dev->msix_pba[w]);
        memcpy(p, &v, 8);
        p += 8;
    }
}

int pci_state_load(struct pci_dev *dev, const void *buf, size_t len, const char **why)
{
    const uint8_t *p = buf;

    if (len != pci_state_size(dev)) {
        *why = "the saved config space has another size than this device's";
        return -EINVAL;
    }
    if (state_get32(&p) != PCI_STATE_MAGIC || state_get32(&p) != PCI_STATE_VERSION) {
        *why = "the saved config space is not in a format this muserd knows";
        return -EINVAL;
    }
    uint32_t cfg_bytes = state_get32(&p), vectors = state_get32(&p), flags = state_get32(&p);
    (void)state_get32(&p);
    if (cfg_bytes != sizeof(dev->cfg) || vectors != dev->caps.msix_vectors || (flags & ~1u)) {
        *why = "the saved config space belongs to a device of another shape";
        return -EINVAL;
    }
    /* Read-only bits describe the device (IDs, BAR sizes, capabilities) and
     * must agree; only the status register and MSI's pending bits change
     * while it runs. */
    for (uint32_t i = 0; i < sizeof(dev->cfg); i++) {
        bool runtime = (i >= PCI_STATUS && i < PCI_STATUS + 2) ||
                       (dev->msi_off && i >= dev->msi_off + (uint32_t)PCI_MSI_PENDING_64 &&
                        i < dev->msi_off + (uint32_t)PCI_MSI_PENDING_64 + 4u);
        uint8_t fixed = (uint8_t) ~(dev->wmask[i] | dev->w1cmask[i]);
        if (!runtime && (p[i] & fixed) != (dev->reset_cfg[i] & fixed)) {
            *why = "the saved config space is another device's (read-only bits differ)";
            return -EINVAL;
        }
    }
    if (dev->msi_off) {
        uint16_t msi =
            (uint16_t)(p[dev->msi_off + PCI_MSI_FLAGS] | p[dev->msi_off + PCI_MSI_FLAGS + 1] << 8);
        if (((msi & PCI_MSI_FLAGS_QSIZE) >> 4) > ((msi & PCI_MSI_FLAGS_QMASK) >> 1)) {
            *why = "the saved config space enables more MSI vectors than the device has";
            return -EINVAL;
        }
    }
    /* PBA bits past the last vector would index past the table. */
    const uint8_t *pba = p + sizeof(dev->cfg) + (size_t)vectors * PCI_MSIX_ENTRY_SIZE;
    if (vectors % 64) {
        uint64_t last;
        memcpy(&last, pba + (vectors / 64) * 8, 8);
        if (le64toh(last) >> (vectors % 64)) {
            *why = "the saved MSI-X PBA has bits past the device's last vector";
            return -EINVAL;
        }
    }
    memcpy(dev->cfg, p, sizeof(dev->cfg));
    p += sizeof(dev->cfg);
    for (uint32_t i = 0; i < vectors * 4u; i++)
        dev->msix_table[i] = state_get32(&p);
    for (uint32_t w = 0; w < (vectors + 63u) / 64u; w++) {
        uint64_t v;
        memcpy(&v, p, 8);
        p += 8;
        dev->msix_pba[w] = le64toh(v);
    }
    dev->msix_table_written = flags & 1u;
    return 0;
}
