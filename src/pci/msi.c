/* SPDX-License-Identifier: MIT */
/*
 * MSI with 64-bit addresses and per-vector masking: the layout gives the
 * guest mask bits, so a masked vector is held in the pending bits and
 * delivered when unmasked, rather than lost.
 */
#include <errno.h>

#include "pci-internal.h"

static uint32_t vector_bits(uint32_t n)
{
    return n >= 32 ? UINT32_MAX : (UINT32_C(1) << n) - 1;
}

int pci_msi_validate(const struct muserd_pci_caps *caps, const char **error)
{
    uint16_t n = caps->msi_vectors;

    /* Multiple Message Capable encodes log2 of the count, up to 32. */
    if (n != 0 && (n > 32 || (n & (n - 1)))) {
        *error = "MSI vector count is not 1, 2, 4, 8, 16 or 32";
        return -EINVAL;
    }
    return 0;
}

void pci_msi_build(struct pci_dev *dev, uint8_t off)
{
    uint16_t mmc = __builtin_ctz(dev->caps.msi_vectors);

    reg16(dev, off + PCI_MSI_FLAGS, (mmc << 1) | PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_MASKBIT,
          PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE, 0);
    /* The address is dword aligned: its two low bits are hardwired to 0. */
    reg32(dev, off + PCI_MSI_ADDRESS_LO, 0, ~UINT32_C(3), 0);
    reg32(dev, off + PCI_MSI_ADDRESS_HI, 0, UINT32_MAX, 0);
    reg16(dev, off + PCI_MSI_DATA_64, 0, UINT16_MAX, 0);
    /* Only vectors the device implements have a mask bit. */
    reg32(dev, off + PCI_MSI_MASK_64, 0, vector_bits(dev->caps.msi_vectors), 0);
    reg32(dev, off + PCI_MSI_PENDING_64, 0, 0, 0);
}

bool pci_msi_enabled(const struct pci_dev *dev)
{
    return dev->msi_off && (cfg_get16(dev, dev->msi_off + PCI_MSI_FLAGS) & PCI_MSI_FLAGS_ENABLE);
}

static uint32_t enabled_vectors(const struct pci_dev *dev)
{
    uint16_t flags = cfg_get16(dev, dev->msi_off + PCI_MSI_FLAGS);

    return UINT32_C(1) << ((flags & PCI_MSI_FLAGS_QSIZE) >> 4);
}

int pci_msi_raise(struct pci_dev *dev, uint32_t vector)
{
    if (vector >= enabled_vectors(dev))
        return -EINVAL;

    uint32_t bit = UINT32_C(1) << vector;
    if (cfg_get32(dev, dev->msi_off + PCI_MSI_MASK_64) & bit) {
        uint32_t pending = dev->msi_off + PCI_MSI_PENDING_64;
        cfg_set32(dev, pending, cfg_get32(dev, pending) | bit);
        return 0;
    }
    pci_fire(dev, VFIO_PCI_MSI_IRQ_INDEX, vector);
    return 0;
}

bool pci_msi_direct(const struct pci_dev *dev, uint32_t vector)
{
    return vector < enabled_vectors(dev) &&
           !(cfg_get32(dev, dev->msi_off + PCI_MSI_MASK_64) & (UINT32_C(1) << vector));
}

void pci_msi_write(struct pci_dev *dev)
{
    uint32_t flags_reg = dev->msi_off + PCI_MSI_FLAGS;
    uint16_t flags = cfg_get16(dev, flags_reg);
    uint16_t mmc = (flags & PCI_MSI_FLAGS_QMASK) >> 1;
    uint16_t mme = (flags & PCI_MSI_FLAGS_QSIZE) >> 4;

    /* Enabling more vectors than the device has is undefined by the spec;
     * holding it to what the device has keeps vector numbers meaningful. */
    if (mme > mmc)
        cfg_set16(dev, flags_reg, (flags & ~PCI_MSI_FLAGS_QSIZE) | (mmc << 4));

    if (!pci_msi_enabled(dev))
        return;

    uint32_t mask = cfg_get32(dev, dev->msi_off + PCI_MSI_MASK_64);
    uint32_t pending_reg = dev->msi_off + PCI_MSI_PENDING_64;
    uint32_t pending = cfg_get32(dev, pending_reg);
    uint32_t deliver = pending & ~mask & vector_bits(enabled_vectors(dev));

    if (!deliver)
        return;
    cfg_set32(dev, pending_reg, pending & ~deliver);
    for (uint32_t v = 0; v < 32; v++)
        if (deliver & (UINT32_C(1) << v))
            pci_fire(dev, VFIO_PCI_MSI_IRQ_INDEX, v);
}
