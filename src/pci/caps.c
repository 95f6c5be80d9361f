/* SPDX-License-Identifier: MIT */
/*
 * The capability chain: laid out from 0x40 in a fixed order (PM, MSI, MSI-X,
 * PCI Express) so a device looks the same every time it is created, plus the
 * power management and PCI Express capabilities, which need no state beyond
 * config space.
 */
#include "pci-internal.h"
#include "util/macro.h"

static void build_pm(struct pci_dev *dev, uint8_t off)
{
    /* Version 3 (PCI PM 1.2), no PME, no D1/D2: D0 and D3hot only. */
    reg16(dev, off + PCI_PM_PMC, 3, 0, 0);
    /* No_Soft_Reset: going D3hot -> D0 keeps the device's state, so the OS
     * need not reprogram it; this emulation indeed keeps everything. */
    reg16(dev, off + PCI_PM_CTRL, PCI_PM_CTRL_NO_SOFT_RESET, PCI_PM_CTRL_STATE_MASK, 0);
}

void pci_pm_write(struct pci_dev *dev, uint16_t old_pmcsr)
{
    uint32_t reg = dev->pm_off + PCI_PM_CTRL;
    uint16_t pmcsr = cfg_get16(dev, reg);
    uint16_t state = pmcsr & PCI_PM_CTRL_STATE_MASK;

    /* D1 and D2 are not supported; the spec says such a write is ignored. */
    if (state == 1 || state == 2)
        cfg_set16(dev, reg,
                  (pmcsr & ~PCI_PM_CTRL_STATE_MASK) | (old_pmcsr & PCI_PM_CTRL_STATE_MASK));
}

static void build_pcie(struct pci_dev *dev, uint8_t off)
{
    /* Capability version 2, a PCI Express endpoint, no slot. */
    reg16(dev, off + PCI_EXP_FLAGS, 2 | (PCI_EXP_TYPE_ENDPOINT << 4), 0, 0);

    /* 128-byte max payload, no phantom functions or extended tags, no L0s/L1
     * latency limit, role-based error reporting; no FLR (reset is the
     * client's DEVICE_RESET). */
    reg32(dev, off + PCI_EXP_DEVCAP, PCI_EXP_DEVCAP_L0S | PCI_EXP_DEVCAP_L1 | PCI_EXP_DEVCAP_RBER,
          0, 0);
    /* Error reporting enables, relaxed ordering, max payload, no snoop and
     * max read request are the OS's to set; power-on: relaxed ordering and
     * no snoop on, 512-byte read requests. */
    uint16_t devctl_rw = PCI_EXP_DEVCTL_CERE | PCI_EXP_DEVCTL_NFERE | PCI_EXP_DEVCTL_FERE |
                         PCI_EXP_DEVCTL_URRE | PCI_EXP_DEVCTL_RELAX_EN | PCI_EXP_DEVCTL_PAYLOAD |
                         PCI_EXP_DEVCTL_NOSNOOP_EN | PCI_EXP_DEVCTL_READRQ;
    reg16(dev, off + PCI_EXP_DEVCTL,
          PCI_EXP_DEVCTL_RELAX_EN | PCI_EXP_DEVCTL_NOSNOOP_EN | PCI_EXP_DEVCTL_READRQ_512B,
          devctl_rw, 0);
    reg16(dev, off + PCI_EXP_DEVSTA, 0, 0,
          PCI_EXP_DEVSTA_CED | PCI_EXP_DEVSTA_NFED | PCI_EXP_DEVSTA_FED | PCI_EXP_DEVSTA_URD);

    /* An x1 link at 2.5 GT/s without ASPM; a virtual link never trains. */
    reg32(dev, off + PCI_EXP_LNKCAP,
          PCI_EXP_LNKCAP_SLS_2_5GB | (1 << 4) /* x1 */ | (1u << 22) /* ASPM optionality */, 0, 0);
    reg16(dev, off + PCI_EXP_LNKCTL, 0,
          PCI_EXP_LNKCTL_ASPMC | PCI_EXP_LNKCTL_RCB | PCI_EXP_LNKCTL_CCC | PCI_EXP_LNKCTL_ES, 0);
    reg16(dev, off + PCI_EXP_LNKSTA,
          PCI_EXP_LNKSTA_CLS_2_5GB | (1 << PCI_EXP_LNKSTA_NLW_SHIFT) | PCI_EXP_LNKSTA_SLC, 0, 0);

    /* Version 2 registers: only the supported link speeds vector and the
     * target speed say anything; the rest is "not supported" (0). */
    reg32(dev, off + PCI_EXP_LNKCAP2, PCI_EXP_LNKCAP2_SLS_2_5GB, 0, 0);
    reg16(dev, off + PCI_EXP_LNKCTL2, PCI_EXP_LNKCTL2_TLS_2_5GT, 0, 0);
}

void pci_caps_build(struct pci_dev *dev)
{
    const struct muserd_pci_caps *caps = &dev->caps;
    uint8_t off = PCI_CAP_START;
    uint8_t *link = &dev->cfg[PCI_CAPABILITY_LIST];

    /* Each capability is appended by pointing the previous "next" byte at it. */
#define APPEND(id, size, field, build)                                                             \
    do {                                                                                           \
        *link = off;                                                                               \
        dev->cfg[off] = (id);                                                                      \
        dev->field = off;                                                                          \
        build(dev, off);                                                                           \
        link = &dev->cfg[off + 1];                                                                 \
        off += (size);                                                                             \
    } while (0)

    if (caps->pm)
        APPEND(PCI_CAP_ID_PM, PCI_PM_CAP_SIZE, pm_off, build_pm);
    if (caps->msi_vectors)
        APPEND(PCI_CAP_ID_MSI, PCI_MSI_CAP_SIZE, msi_off, pci_msi_build);
    if (caps->msix_vectors)
        APPEND(PCI_CAP_ID_MSIX, PCI_MSIX_CAP_SIZE, msix_off, pci_msix_build);
    if (caps->pcie)
        APPEND(PCI_CAP_ID_EXP, PCI_EXP_CAP_SIZE, pcie_off, build_pcie);
#undef APPEND

    *link = 0;
    if (dev->cfg[PCI_CAPABILITY_LIST])
        cfg_set16(dev, PCI_STATUS, cfg_get16(dev, PCI_STATUS) | PCI_STATUS_CAP_LIST);
    /* The extended capability list at 0x100 stays all zero: "no extended
     * capabilities" (PCIe 4.0 7.6.3). */
}

const char *pci_cap_name(uint8_t id)
{
    static const char *const names[] = {
        [PCI_CAP_ID_PM] = "Power Management",
        [PCI_CAP_ID_AGP] = "AGP",
        [PCI_CAP_ID_VPD] = "Vital Product Data",
        [PCI_CAP_ID_SLOTID] = "Slot Identification",
        [PCI_CAP_ID_MSI] = "MSI",
        [PCI_CAP_ID_CHSWP] = "CompactPCI Hot Swap",
        [PCI_CAP_ID_PCIX] = "PCI-X",
        [PCI_CAP_ID_HT] = "HyperTransport",
        [PCI_CAP_ID_VNDR] = "Vendor Specific",
        [PCI_CAP_ID_DBG] = "Debug Port",
        [PCI_CAP_ID_CCRC] = "CompactPCI Central Resource Control",
        [PCI_CAP_ID_SHPC] = "PCI Hot-Plug",
        [PCI_CAP_ID_SSVID] = "Bridge Subsystem Vendor ID",
        [PCI_CAP_ID_AGP3] = "AGP 8x",
        [PCI_CAP_ID_SECDEV] = "Secure Device",
        [PCI_CAP_ID_EXP] = "PCI Express",
        [PCI_CAP_ID_MSIX] = "MSI-X",
        [PCI_CAP_ID_SATA] = "SATA",
        [PCI_CAP_ID_AF] = "Advanced Features",
        [PCI_CAP_ID_EA] = "Enhanced Allocation",
    };

    return id < ELEMENTSOF(names) ? names[id] : NULL;
}
