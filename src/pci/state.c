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
    /* The bytes that say which device this is must agree. */
    static const struct {
        uint8_t off, len;
    } identity[] = {{PCI_VENDOR_ID, 4},
                    {PCI_REVISION_ID, 4},
                    {PCI_HEADER_TYPE, 1},
                    {PCI_SUBSYSTEM_VENDOR_ID, 4},
                    {PCI_CAPABILITY_LIST, 1}};
    for (size_t i = 0; i < sizeof(identity) / sizeof(identity[0]); i++)
        if (memcmp(p + identity[i].off, dev->cfg + identity[i].off, identity[i].len) != 0) {
            *why = "the saved config space is another device's (IDs or capabilities differ)";
            return -EINVAL;
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
