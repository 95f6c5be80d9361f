/* SPDX-License-Identifier: MIT */
/*
 * MSI-X: the capability in config space and the table and PBA the guest
 * reaches through a memory BAR. A vector raised while masked (per entry or
 * function-wide) sets its PBA bit and is delivered when unmasked.
 *
 * Entries come out of reset masked, as PCI requires, but a client that
 * emulates the table itself (QEMU) never writes it here: for such a client
 * the entry mask bits are not consulted, and it masks through SET_IRQS (the
 * vfu layer's masks). Once a client writes any table dword, the entries it
 * programs hold their vectors back as a real device would.
 */
#include <errno.h>
#include <stdlib.h>

#include "pci-internal.h"
#include "util/macro.h"

#define DWORDS_PER_ENTRY (PCI_MSIX_ENTRY_SIZE / 4)

static uint64_t table_size(const struct pci_dev *dev)
{
    return (uint64_t)dev->caps.msix_vectors * PCI_MSIX_ENTRY_SIZE;
}
static uint64_t pba_words(const struct pci_dev *dev)
{
    return (dev->caps.msix_vectors + 63) / 64;
}
static uint64_t pba_size(const struct pci_dev *dev)
{
    return pba_words(dev) * 8;
}

int pci_msix_validate(const struct pci_dev *dev, const char **error)
{
    const struct muserd_pci_caps *caps = &dev->caps;

    if (caps->msix_vectors == 0)
        return 0;
    if (caps->msix_vectors > PCI_MSIX_MAX) {
        *error = "MSI-X vector count is above 2048";
        return -EINVAL;
    }
    if (caps->msix_bar >= 6 || dev->bar_size[caps->msix_bar] == 0) {
        *error = "MSI-X table BAR is not an implemented BAR";
        return -EINVAL;
    }
    if (dev->bar_flags[caps->msix_bar] & MUSERD_BAR_IO) {
        *error = "MSI-X table BAR is an I/O BAR, it must be a memory BAR";
        return -EINVAL;
    }
    /* The low 3 bits of the offset registers hold the BAR index. */
    if (caps->msix_table_offset & 7) {
        *error = "MSI-X table offset is not 8-byte aligned";
        return -EINVAL;
    }
    if (caps->msix_pba_offset & 7) {
        *error = "MSI-X PBA offset is not 8-byte aligned";
        return -EINVAL;
    }
    uint64_t bar_size = dev->bar_size[caps->msix_bar];
    if (!range_within(caps->msix_table_offset, table_size(dev), bar_size)) {
        *error = "MSI-X table does not fit in its BAR";
        return -EINVAL;
    }
    if (!range_within(caps->msix_pba_offset, pba_size(dev), bar_size)) {
        *error = "MSI-X PBA does not fit in its BAR";
        return -EINVAL;
    }
    if (caps->msix_table_offset < caps->msix_pba_offset + pba_size(dev) &&
        caps->msix_pba_offset < caps->msix_table_offset + table_size(dev)) {
        *error = "MSI-X table and PBA overlap";
        return -EINVAL;
    }
    return 0;
}

int pci_msix_alloc(struct pci_dev *dev)
{
    if (dev->caps.msix_vectors == 0)
        return 0;
    dev->msix_table = calloc(dev->caps.msix_vectors, PCI_MSIX_ENTRY_SIZE);
    dev->msix_pba = calloc(pba_words(dev), sizeof(uint64_t));
    if (!dev->msix_table || !dev->msix_pba) {
        pci_msix_free(dev);
        return -ENOMEM;
    }
    return 0;
}

void pci_msix_free(struct pci_dev *dev)
{
    free(dev->msix_table);
    free(dev->msix_pba);
    dev->msix_table = NULL;
    dev->msix_pba = NULL;
}

void pci_msix_build(struct pci_dev *dev, uint8_t off)
{
    const struct muserd_pci_caps *caps = &dev->caps;

    reg16(dev, off + PCI_MSIX_FLAGS, caps->msix_vectors - 1,
          PCI_MSIX_FLAGS_MASKALL | PCI_MSIX_FLAGS_ENABLE, 0);
    reg32(dev, off + PCI_MSIX_TABLE, caps->msix_table_offset | caps->msix_bar, 0, 0);
    reg32(dev, off + PCI_MSIX_PBA, caps->msix_pba_offset | caps->msix_bar, 0, 0);
}

void pci_msix_reset(struct pci_dev *dev)
{
    if (!dev->msix_table)
        return;
    /* Every entry comes out of reset masked (PCI 3.0 6.8.2.9). */
    memset(dev->msix_table, 0, table_size(dev));
    for (uint32_t v = 0; v < dev->caps.msix_vectors; v++)
        dev->msix_table[v * DWORDS_PER_ENTRY + 3] = PCI_MSIX_ENTRY_CTRL_MASKBIT;
    memset(dev->msix_pba, 0, pba_size(dev));
    dev->msix_table_written = false;
}

static uint16_t msix_flags(const struct pci_dev *dev)
{
    return cfg_get16(dev, dev->msix_off + PCI_MSIX_FLAGS);
}

bool pci_msix_enabled(const struct pci_dev *dev)
{
    return dev->msix_off && (msix_flags(dev) & PCI_MSIX_FLAGS_ENABLE);
}

static bool entry_masked(const struct pci_dev *dev, uint32_t vector)
{
    if (!dev->msix_table_written)
        return false;
    return dev->msix_table[vector * DWORDS_PER_ENTRY + 3] & PCI_MSIX_ENTRY_CTRL_MASKBIT;
}

static bool pending(const struct pci_dev *dev, uint32_t vector)
{
    return dev->msix_pba[vector / 64] & (UINT64_C(1) << (vector % 64));
}

/* Deliver `vector` if it is pending and nothing masks it any more. */
static void deliver_if_unmasked(struct pci_dev *dev, uint32_t vector)
{
    if (!pending(dev, vector) || entry_masked(dev, vector) || !pci_msix_enabled(dev) ||
        (msix_flags(dev) & PCI_MSIX_FLAGS_MASKALL))
        return;
    dev->msix_pba[vector / 64] &= ~(UINT64_C(1) << (vector % 64));
    pci_fire(dev, VFIO_PCI_MSIX_IRQ_INDEX, vector);
}

int pci_msix_raise(struct pci_dev *dev, uint32_t vector)
{
    if (vector >= dev->caps.msix_vectors)
        return -EINVAL;
    if ((msix_flags(dev) & PCI_MSIX_FLAGS_MASKALL) || entry_masked(dev, vector)) {
        dev->msix_pba[vector / 64] |= UINT64_C(1) << (vector % 64);
        return 0;
    }
    pci_fire(dev, VFIO_PCI_MSIX_IRQ_INDEX, vector);
    return 0;
}

bool pci_msix_direct(const struct pci_dev *dev, uint32_t vector)
{
    return vector < dev->caps.msix_vectors && !(msix_flags(dev) & PCI_MSIX_FLAGS_MASKALL) &&
           !entry_masked(dev, vector);
}

void pci_msix_write(struct pci_dev *dev)
{
    if (!pci_msix_enabled(dev) || (msix_flags(dev) & PCI_MSIX_FLAGS_MASKALL))
        return;
    for (uint32_t w = 0; w < pba_words(dev); w++)
        for (uint64_t bits = dev->msix_pba[w]; bits; bits &= bits - 1)
            deliver_if_unmasked(dev, w * 64 + __builtin_ctzll(bits));
}

static bool overlaps(uint64_t off, uint64_t len, uint64_t start, uint64_t size)
{
    return off < start + size && start < off + len;
}

bool pci_msix_claims(const struct pci_dev *dev, uint32_t bar, uint64_t offset, uint32_t len)
{
    const struct muserd_pci_caps *caps = &dev->caps;

    if (caps->msix_vectors == 0 || bar != caps->msix_bar || len == 0 || offset > UINT64_MAX - len)
        return false;
    return overlaps(offset, len, caps->msix_table_offset, table_size(dev)) ||
           overlaps(offset, len, caps->msix_pba_offset, pba_size(dev));
}

static void table_write(struct pci_dev *dev, uint64_t dword, uint32_t val)
{
    uint32_t vector = dword / DWORDS_PER_ENTRY;

    dev->msix_table_written = true;
    switch (dword % DWORDS_PER_ENTRY) {
    case 0:
        /* Message addresses are dword aligned; the low bits read as 0. */
        dev->msix_table[dword] = val & ~UINT32_C(3);
        break;
    case 3:
        /* Only the mask bit is defined; the rest is reserved (reads 0). */
        dev->msix_table[dword] = val & PCI_MSIX_ENTRY_CTRL_MASKBIT;
        deliver_if_unmasked(dev, vector);
        break;
    default:
        dev->msix_table[dword] = val;
        break;
    }
}

int pci_msix_access(struct pci_dev *dev, uint32_t bar, uint64_t offset, void *buf, uint32_t len,
                    bool is_write)
{
    const struct muserd_pci_caps *caps = &dev->caps;
    uint8_t *p = buf;

    if (caps->msix_vectors == 0 || bar != caps->msix_bar)
        return -EINVAL;
    if ((len != 4 && len != 8) || offset % len != 0)
        return -EINVAL;

    if (offset >= caps->msix_table_offset &&
        range_within(offset - caps->msix_table_offset, len, table_size(dev))) {
        uint64_t dword = (offset - caps->msix_table_offset) / 4;

        for (uint32_t i = 0; i < len / 4; i++) {
            uint32_t v;
            if (is_write) {
                memcpy(&v, p + 4 * i, 4);
                table_write(dev, dword + i, le32toh(v));
            } else {
                v = htole32(dev->msix_table[dword + i]);
                memcpy(p + 4 * i, &v, 4);
            }
        }
        return 0;
    }

    if (offset >= caps->msix_pba_offset &&
        range_within(offset - caps->msix_pba_offset, len, pba_size(dev))) {
        uint64_t rel = offset - caps->msix_pba_offset;
        /* The PBA is read-only: the device alone sets and clears its bits. */
        if (is_write)
            return 0;
        uint64_t word = htole64(dev->msix_pba[rel / 8]);
        memcpy(p, (uint8_t *)&word + rel % 8, len);
        return 0;
    }
    return -EINVAL;
}
