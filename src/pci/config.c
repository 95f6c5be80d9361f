/* SPDX-License-Identifier: MIT */
/*
 * The type-0 header: identity, command/status, BARs, interrupt pin, and the
 * masked config space access path every register goes through.
 */
#include <errno.h>
#include <stdlib.h>

#include "pci-internal.h"
#include "util/macro.h"

/* One static sentence per BAR slot, so *error can name the slot. */
#define BAR_ERRORS(what)                                                                           \
    {                                                                                              \
        "BAR 0 " what, "BAR 1 " what, "BAR 2 " what, "BAR 3 " what, "BAR 4 " what, "BAR 5 " what   \
    }

static const char *const bar_err_flags[6] = BAR_ERRORS("has unknown flags");
static const char *const bar_err_io_flags[6] =
    BAR_ERRORS("is an I/O BAR and cannot be 64-bit or prefetchable");
static const char *const bar_err_pow2[6] = BAR_ERRORS("size is not a power of two");
static const char *const bar_err_io_small[6] = BAR_ERRORS("is an I/O BAR smaller than 4 bytes");
static const char *const bar_err_io_big[6] = BAR_ERRORS("is an I/O BAR larger than 256 bytes");
static const char *const bar_err_mem_small[6] = BAR_ERRORS("is a memory BAR smaller than 16 bytes");
static const char *const bar_err_mem32_big[6] =
    BAR_ERRORS("is larger than 2 GiB and must be 64-bit");
static const char *const bar_err_upper[6] =
    BAR_ERRORS("must be unused: it holds the upper half of the 64-bit BAR before it");

#define BAR_KNOWN_FLAGS (MUSERD_BAR_MEM64 | MUSERD_BAR_PREFETCH | MUSERD_BAR_IO)

static int validate_bars(const struct pci_device_desc *desc, const char **error)
{
    for (unsigned i = 0; i < 6; i++) {
        const struct pci_bar_desc *bar = &desc->bars[i];

        if (bar->size == 0)
            continue;
        if (i > 0 && desc->bars[i - 1].size != 0 && (desc->bars[i - 1].flags & MUSERD_BAR_MEM64) &&
            !(desc->bars[i - 1].flags & MUSERD_BAR_IO)) {
            *error = bar_err_upper[i];
            return -EINVAL;
        }
        if (bar->flags & ~BAR_KNOWN_FLAGS) {
            *error = bar_err_flags[i];
            return -EINVAL;
        }
        if (bar->size & (bar->size - 1)) {
            *error = bar_err_pow2[i];
            return -EINVAL;
        }
        if (bar->flags & MUSERD_BAR_IO) {
            if (bar->flags & (MUSERD_BAR_MEM64 | MUSERD_BAR_PREFETCH)) {
                *error = bar_err_io_flags[i];
                return -EINVAL;
            }
            if (bar->size < 4) {
                *error = bar_err_io_small[i];
                return -EINVAL;
            }
            /* PCI 3.0 6.2.5.1: an I/O BAR asks for at most 256 bytes. */
            if (bar->size > 256) {
                *error = bar_err_io_big[i];
                return -EINVAL;
            }
            continue;
        }
        if (bar->size < 16) {
            *error = bar_err_mem_small[i];
            return -EINVAL;
        }
        if (bar->flags & MUSERD_BAR_MEM64) {
            if (i == 5) {
                *error = "BAR 5 cannot be 64-bit: there is no slot after it for the upper half";
                return -EINVAL;
            }
        } else if (bar->size > UINT64_C(0x80000000)) {
            /* Bit 31 is the highest address bit a 32-bit BAR can size. */
            *error = bar_err_mem32_big[i];
            return -EINVAL;
        }
    }
    return 0;
}

static void build_bars(struct pci_dev *dev, const struct pci_device_desc *desc)
{
    for (unsigned i = 0; i < 6; i++) {
        const struct pci_bar_desc *bar = &desc->bars[i];
        uint32_t off = PCI_BASE_ADDRESS_0 + 4 * i;
        uint64_t addr_mask = ~(bar->size - 1);

        dev->bar_size[i] = bar->size;
        dev->bar_flags[i] = bar->flags;
        /* Unused slots (and upper halves) stay 0 and read-only. */
        if (bar->size == 0)
            continue;
        if (bar->flags & MUSERD_BAR_IO) {
            reg32(dev, off, PCI_BASE_ADDRESS_SPACE_IO,
                  (uint32_t)addr_mask & PCI_BASE_ADDRESS_IO_MASK, 0);
            continue;
        }
        uint32_t type = PCI_BASE_ADDRESS_SPACE_MEMORY;
        if (bar->flags & MUSERD_BAR_MEM64)
            type |= PCI_BASE_ADDRESS_MEM_TYPE_64;
        if (bar->flags & MUSERD_BAR_PREFETCH)
            type |= PCI_BASE_ADDRESS_MEM_PREFETCH;
        reg32(dev, off, type, (uint32_t)addr_mask & PCI_BASE_ADDRESS_MEM_MASK, 0);
        if (bar->flags & MUSERD_BAR_MEM64) {
            reg32(dev, off + 4, 0, (uint32_t)(addr_mask >> 32), 0);
            dev->bar_size[i + 1] = 0;
            dev->bar_flags[i + 1] = 0;
            i++;
        }
    }
}

static void build_header(struct pci_dev *dev, const struct pci_device_desc *desc)
{
    const struct muserd_pci_ids *ids = &desc->ids;
    bool has_io = false;

    for (unsigned i = 0; i < 6; i++)
        if (desc->bars[i].size && (desc->bars[i].flags & MUSERD_BAR_IO))
            has_io = true;

    cfg_set16(dev, PCI_VENDOR_ID, ids->vendor_id);
    cfg_set16(dev, PCI_DEVICE_ID, ids->device_id);

    /* Enable bits the device honours; the rest (special cycles, MWI, VGA
     * snoop, fast back-to-back) are hardwired to 0, as PCIe requires. */
    uint16_t cmd_rw = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY |
                      PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;
    if (has_io)
        cmd_rw |= PCI_COMMAND_IO;
    reg16(dev, PCI_COMMAND, 0, cmd_rw, 0);

    /* Error bits are sticky until the guest writes 1 to them. */
    reg16(dev, PCI_STATUS, 0, 0,
          PCI_STATUS_PARITY | PCI_STATUS_SIG_TARGET_ABORT | PCI_STATUS_REC_TARGET_ABORT |
              PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_SIG_SYSTEM_ERROR |
              PCI_STATUS_DETECTED_PARITY);

    dev->cfg[PCI_REVISION_ID] = ids->revision;
    dev->cfg[PCI_CLASS_PROG] = ids->class_code & 0xff;
    dev->cfg[PCI_CLASS_DEVICE] = (ids->class_code >> 8) & 0xff;
    dev->cfg[PCI_CLASS_DEVICE + 1] = (ids->class_code >> 16) & 0xff;

    /* Cache line size is scratch for the OS; the latency timer only means
     * something on a conventional bus (PCIe hardwires it to 0). */
    dev->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
    if (!desc->caps.pcie)
        dev->wmask[PCI_LATENCY_TIMER] = 0xff;
    dev->cfg[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL;

    cfg_set16(dev, PCI_SUBSYSTEM_VENDOR_ID, ids->subsystem_vendor_id);
    cfg_set16(dev, PCI_SUBSYSTEM_ID, ids->subsystem_id);

    /* Interrupt line is written by firmware for the OS to read back. */
    dev->wmask[PCI_INTERRUPT_LINE] = 0xff;
    dev->cfg[PCI_INTERRUPT_PIN] = desc->caps.intx ? 1 : 0;
}

int pci_dev_new(const struct pci_device_desc *desc, pci_fire_fn fire, void *opaque,
                struct pci_dev **ret, const char **error)
{
    const char *dummy;
    int r;

    if (!error)
        error = &dummy;
    *error = NULL;
    if (!desc || !ret) {
        *error = "Missing device descriptor";
        return -EINVAL;
    }

    r = validate_bars(desc, error);
    if (r < 0)
        return r;
    r = pci_msi_validate(&desc->caps, error);
    if (r < 0)
        return r;

    _cleanup_free_ struct pci_dev *dev = calloc(1, sizeof(*dev));
    if (!dev)
        return -ENOMEM;
    dev->fire = fire;
    dev->opaque = opaque;
    dev->caps = desc->caps;
    dev->size = desc->caps.pcie ? PCI_CFG_SPACE_EXP_SIZE : PCI_CFG_SPACE_SIZE;

    build_header(dev, desc);
    build_bars(dev, desc);

    r = pci_msix_validate(dev, error);
    if (r < 0)
        return r;
    r = pci_msix_alloc(dev);
    if (r < 0)
        return r;

    pci_caps_build(dev);
    memcpy(dev->reset_cfg, dev->cfg, sizeof(dev->cfg));
    pci_msix_reset(dev);

    *ret = TAKE_PTR(dev);
    return 0;
}

void pci_dev_free(struct pci_dev *dev)
{
    if (!dev)
        return;
    pci_msix_free(dev);
    free(dev);
}

uint32_t pci_config_size(const struct pci_dev *dev)
{
    return dev->size;
}

void pci_dev_reset(struct pci_dev *dev)
{
    memcpy(dev->cfg, dev->reset_cfg, sizeof(dev->cfg));
    pci_msix_reset(dev);
}

static void command_write(struct pci_dev *dev, uint16_t old_cmd)
{
    uint16_t cmd = cfg_get16(dev, PCI_COMMAND);

    /* INTx is level-triggered: an interrupt held while disabled is asserted
     * as soon as the guest enables INTx again. */
    if ((old_cmd & PCI_COMMAND_INTX_DISABLE) && !(cmd & PCI_COMMAND_INTX_DISABLE) &&
        (cfg_get16(dev, PCI_STATUS) & PCI_STATUS_INTERRUPT) && pci_irq_mode(dev) == PCI_IRQ_INTX)
        pci_fire(dev, VFIO_PCI_INTX_IRQ_INDEX, 0);
}

static void masked_write(struct pci_dev *dev, uint32_t offset, const uint8_t *val, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++) {
        uint32_t o = offset + i;
        uint8_t b = (dev->cfg[o] & ~dev->wmask[o]) | (val[i] & dev->wmask[o]);

        dev->cfg[o] = b & ~(val[i] & dev->w1cmask[o]);
    }
}

int pci_config_access(struct pci_dev *dev, uint64_t offset, void *buf, uint32_t len, bool is_write)
{
    if (len == 0 || !range_within(offset, len, dev->size))
        return -EINVAL;
    /* The stored part, then zeros for the extended space beyond it. */
    uint32_t stored = offset < sizeof(dev->cfg) ? (uint32_t)(sizeof(dev->cfg) - offset) : 0;
    if (stored > len)
        stored = len;
    if (!is_write) {
        memcpy(buf, dev->cfg + offset, stored);
        memset((uint8_t *)buf + stored, 0, len - stored);
        return 0;
    }
    if (len != 1 && len != 2 && len != 4)
        return -EINVAL;
    if (stored == 0)
        return 0; /* extended config space: nothing writable */
    len = stored;

    uint16_t old_cmd = cfg_get16(dev, PCI_COMMAND);
    uint16_t old_pmcsr = dev->pm_off ? cfg_get16(dev, dev->pm_off + PCI_PM_CTRL) : 0;

    masked_write(dev, offset, buf, len);

    if (touches(offset, len, PCI_COMMAND, 2))
        command_write(dev, old_cmd);
    if (dev->pm_off && touches(offset, len, dev->pm_off + PCI_PM_CTRL, 2))
        pci_pm_write(dev, old_pmcsr);
    if (dev->msi_off && touches(offset, len, dev->msi_off, PCI_MSI_CAP_SIZE))
        pci_msi_write(dev);
    if (dev->msix_off && touches(offset, len, dev->msix_off, PCI_MSIX_CAP_SIZE))
        pci_msix_write(dev);
    return 0;
}
