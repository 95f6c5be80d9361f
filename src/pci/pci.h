/* SPDX-License-Identifier: MIT */
/*
 * Type-0 PCI configuration space emulation for one device: the header with
 * the plugin's IDs, BAR sizing (32/64-bit, prefetchable, I/O), command and
 * status semantics, INTx pin and disable, and the capability chain the
 * plugin asks for (power management, MSI, MSI-X, PCI Express endpoint; 4 KiB
 * extended config space for PCIe). Every register has read-only, read-write
 * and write-1-to-clear masks, so a guest driver sees a well-behaved device.
 *
 * The MSI-X table and PBA live in a BAR; the BAR access path asks
 * pci_msix_claims() first and hands those accesses to pci_msix_access().
 *
 * Threads: a pci_dev belongs to its device's I/O thread; nothing here locks.
 *
 * This module knows nothing of vfio-user or plugins beyond the descriptor
 * types in <muserd/pci.h> and <muserd/plugin.h>; it tells its owner about
 * interrupts through the callback below.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/vfio.h>
#include <muserd/plugin.h>

struct pci_dev;

/* A BAR as config space sees it: size 0 for none, MUSERD_BAR_* flags. */
struct pci_bar_desc {
    uint64_t size;
    uint32_t flags;
};

/* What the config space is built from (device.c fills it from the plugin). */
struct pci_device_desc {
    struct muserd_pci_ids ids;
    struct muserd_pci_caps caps;
    struct pci_bar_desc bars[6];
};

/*
 * Deliver interrupt `vector` of VFIO IRQ index `index`
 * (VFIO_PCI_INTX_IRQ_INDEX, _MSI_, _MSIX_). Called by pci_raise() and when
 * the guest unmasks an MSI/MSI-X vector that has its pending bit set.
 */
typedef void (*pci_fire_fn)(void *opaque, uint32_t index, uint32_t vector);

/*
 * Build the config space from a device descriptor. Returns -EINVAL
 * and sets *error to a static sentence for a descriptor that cannot be
 * emulated (BAR size not a power of two, a 64-bit BAR in slot 5, MSI-X table
 * outside its BAR or overlapping the PBA, an MSI vector count that is not a
 * power of two up to 32, ...).
 */
int pci_dev_new(const struct pci_device_desc *desc, pci_fire_fn fire, void *opaque,
                struct pci_dev **ret, const char **error);
void pci_dev_free(struct pci_dev *dev);

/* 256, or 4096 for PCI Express. */
uint32_t pci_config_size(const struct pci_dev *dev);

/*
 * A config space access of len bytes (1, 2, 4, or any length for reads)
 * at offset, inside pci_config_size(). Writes honour the masks; writes to
 * MSI/MSI-X control may fire pending vectors. -EINVAL when out of range.
 */
int pci_config_access(struct pci_dev *dev, uint64_t offset, void *buf, uint32_t len, bool is_write);

/* Back to power-on state (device reset / FLR). */
void pci_dev_reset(struct pci_dev *dev);

/* Which interrupt mechanism the guest enabled. */
enum pci_irq_mode {
    PCI_IRQ_NONE, /* INTx disabled by the command register and nothing else on */
    PCI_IRQ_INTX,
    PCI_IRQ_MSI,
    PCI_IRQ_MSIX,
};
enum pci_irq_mode pci_irq_mode(const struct pci_dev *dev);

/*
 * Raise `vector` the way the guest set the device up (MSI-X, else MSI, else
 * INTx): honours MSI-X function mask and per-vector mask bits (sets the PBA
 * bit instead), MSI per-vector masks, and sets the INTx status bit. Returns
 * -EINVAL for a vector beyond what is enabled, 0 otherwise (also when held
 * pending or disabled).
 */
int pci_raise(struct pci_dev *dev, uint32_t vector);
/*
 * Would pci_raise(vector) deliver at once, changing no config state? Then the
 * VFIO IRQ index it would fire (MSI or MSI-X), else -1 (INTx, masked, not
 * enabled). What irq-routes.c publishes for raises from other threads.
 */
int pci_direct_route(const struct pci_dev *dev, uint32_t vector);
/* The most vectors any mechanism of the device has (at least 1). */
uint32_t pci_nr_vectors(const struct pci_dev *dev);

/* Clear the INTx status bit (level-triggered INTx deasserted). */
void pci_lower_intx(struct pci_dev *dev);

/* Does [offset, offset+len) of BAR `bar` touch the MSI-X table or PBA? An
 * access that only partly overlaps them is claimed too, and then refused by
 * pci_msix_access(), so it never reaches the plugin. */
bool pci_msix_claims(const struct pci_dev *dev, uint32_t bar, uint64_t offset, uint32_t len);
/* Guest access to the MSI-X table or PBA (4- or 8-byte, aligned; PBA read-only). */
int pci_msix_access(struct pci_dev *dev, uint32_t bar, uint64_t offset, void *buf, uint32_t len,
                    bool is_write);

/* The number of interrupts per VFIO IRQ index this config space implies
 * (INTx 1 if the pin is set, MSI vectors, MSI-X vectors, ERR 1 for PCIe, REQ 1). */
void pci_irq_counts(const struct pci_dev *dev, uint32_t counts[VFIO_PCI_NUM_IRQS]);

/*
 * Migration: the config space state (guest-visible bytes, MSI-X table and
 * PBA) in pci_state_size() bytes. pci_state_load() checks the whole buffer
 * (format, size, the device's IDs and capability list) before it changes
 * anything: -EINVAL with a static reason otherwise. The caller republishes
 * interrupt routes afterwards.
 */
size_t pci_state_size(const struct pci_dev *dev);
void pci_state_save(const struct pci_dev *dev, void *buf);
int pci_state_load(struct pci_dev *dev, const void *buf, size_t len, const char **why);

/* Pretty capability names for the probe ("MSI-X"); NULL when unknown. */
const char *pci_cap_name(uint8_t id);
