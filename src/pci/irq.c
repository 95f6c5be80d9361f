/* SPDX-License-Identifier: MIT */
/*
 * Interrupt routing: which mechanism the guest turned on, and raising a
 * vector through it (MSI-X, else MSI, else INTx).
 */
#include <errno.h>

#include "pci-internal.h"

enum pci_irq_mode pci_irq_mode(const struct pci_dev *dev)
{
    if (pci_msix_enabled(dev))
        return PCI_IRQ_MSIX;
    if (pci_msi_enabled(dev))
        return PCI_IRQ_MSI;
    if (dev->caps.intx && !(cfg_get16(dev, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE))
        return PCI_IRQ_INTX;
    return PCI_IRQ_NONE;
}

int pci_raise(struct pci_dev *dev, uint32_t vector)
{
    if (pci_msix_enabled(dev))
        return pci_msix_raise(dev, vector);
    if (pci_msi_enabled(dev))
        return pci_msi_raise(dev, vector);
    if (!dev->caps.intx)
        return 0; /* nothing the guest enabled can carry it */

    /* The status bit shows the device's interrupt request even while the
     * guest has INTx disabled; it is delivered once INTx is enabled. */
    cfg_set16(dev, PCI_STATUS, cfg_get16(dev, PCI_STATUS) | PCI_STATUS_INTERRUPT);
    if (!(cfg_get16(dev, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE))
        pci_fire(dev, VFIO_PCI_INTX_IRQ_INDEX, 0);
    return 0;
}

int pci_direct_route(const struct pci_dev *dev, uint32_t vector)
{
    if (pci_msix_enabled(dev))
        return pci_msix_direct(dev, vector) ? VFIO_PCI_MSIX_IRQ_INDEX : -1;
    if (pci_msi_enabled(dev))
        return pci_msi_direct(dev, vector) ? VFIO_PCI_MSI_IRQ_INDEX : -1;
    return -1;
}

uint32_t pci_nr_vectors(const struct pci_dev *dev)
{
    uint32_t n = dev->caps.msix_vectors > dev->caps.msi_vectors ? dev->caps.msix_vectors
                                                                : dev->caps.msi_vectors;
    return n > 0 ? n : 1;
}

void pci_lower_intx(struct pci_dev *dev)
{
    cfg_set16(dev, PCI_STATUS, cfg_get16(dev, PCI_STATUS) & ~PCI_STATUS_INTERRUPT);
}

void pci_irq_counts(const struct pci_dev *dev, uint32_t counts[VFIO_PCI_NUM_IRQS])
{
    counts[VFIO_PCI_INTX_IRQ_INDEX] = dev->caps.intx ? 1 : 0;
    counts[VFIO_PCI_MSI_IRQ_INDEX] = dev->caps.msi_vectors;
    counts[VFIO_PCI_MSIX_IRQ_INDEX] = dev->caps.msix_vectors;
    counts[VFIO_PCI_ERR_IRQ_INDEX] = dev->caps.pcie ? 1 : 0;
    counts[VFIO_PCI_REQ_IRQ_INDEX] = 1;
}
