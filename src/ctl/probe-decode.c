/* SPDX-License-Identifier: MIT */
/*
 * Decode PCI config space the way lspci does: BARs, the capability chain
 * and the few fields of each capability that tell what a guest gets. Every
 * pointer read from config space is bounds-checked: the device may be buggy.
 */
#include "ctl/probe.h"

#include <string.h>

#include "util/macro.h"

#define PCI_STATUS          0x06
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_BAR0            0x10
#define PCI_CAP_PTR         0x34
#define PCI_EXT_CAP_START   0x100

#define CAP_PM   0x01
#define CAP_MSI  0x05
#define CAP_PCIE 0x10
#define CAP_MSIX 0x11

static uint8_t cfg8(const struct probe *p, uint32_t off)
{
    return off < p->config_len ? p->config[off] : 0;
}

uint16_t probe_cfg16(const struct probe *p, uint32_t off)
{
    uint16_t v = 0;
    if (range_within(off, sizeof(v), p->config_len))
        memcpy(&v, p->config + off, sizeof(v));
    return v;
}

uint32_t probe_cfg32(const struct probe *p, uint32_t off)
{
    uint32_t v = 0;
    if (range_within(off, sizeof(v), p->config_len))
        memcpy(&v, p->config + off, sizeof(v));
    return v;
}

size_t probe_bars(const struct probe *p, struct probe_bar bars[6])
{
    size_t n = 0;

    for (unsigned i = 0; i < 6; i++) {
        uint32_t v = probe_cfg32(p, PCI_BAR0 + 4 * i);
        uint64_t size = i < p->nr_regions && p->regions[i].err >= 0 ? p->regions[i].info.size : 0;
        struct probe_bar b = {.index = i, .size = size};

        if (v & 1) {
            b.io = true;
            b.address = v & ~3u;
        } else {
            b.is64 = ((v >> 1) & 3) == 2;
            b.prefetchable = v & 8;
            b.address = v & ~15u;
            if (b.is64 && i < 5)
                b.address |= (uint64_t)probe_cfg32(p, PCI_BAR0 + 4 * (i + 1)) << 32;
        }
        if (size > 0 || v != 0)
            bars[n++] = b;
        if (b.is64)
            i++; /* the next BAR is this one's upper half */
    }
    return n;
}

size_t probe_caps(const struct probe *p, struct probe_cap *caps, size_t max)
{
    size_t n = 0;

    if (p->config_len >= 64 && (probe_cfg16(p, PCI_STATUS) & PCI_STATUS_CAP_LIST)) {
        uint32_t off = cfg8(p, PCI_CAP_PTR) & ~3u;
        /* 48 hops fit in 192 bytes: more means the chain loops. */
        for (int hops = 0; off >= 0x40 && off < 0x100 && hops < 48 && n < max; hops++) {
            caps[n++] = (struct probe_cap){.offset = (uint16_t)off, .id = cfg8(p, off)};
            off = cfg8(p, off + 1) & ~3u;
        }
    }

    if (p->config_len > PCI_EXT_CAP_START) {
        uint32_t off = PCI_EXT_CAP_START;
        for (int hops = 0; off >= PCI_EXT_CAP_START && hops < 960 && n < max; hops++) {
            uint32_t h = probe_cfg32(p, off);
            if (h == 0 || h == 0xffffffff)
                break;
            caps[n++] = (struct probe_cap){
                .offset = (uint16_t)off,
                .id = h & 0xffff,
                .extended = true,
                .version = (h >> 16) & 0xf,
            };
            off = (h >> 20) & ~3u;
        }
    }
    return n;
}

void probe_decode_pm(const struct probe *p, uint16_t off, struct probe_pm *pm)
{
    pm->version = probe_cfg16(p, off + 2) & 7;
    pm->state = probe_cfg16(p, off + 4) & 3;
}

void probe_decode_msi(const struct probe *p, uint16_t off, struct probe_msi *msi)
{
    uint16_t ctrl = probe_cfg16(p, off + 2);

    msi->enabled = ctrl & 1;
    msi->vectors = 1u << ((ctrl >> 1) & 7);
    msi->enabled_vectors = 1u << ((ctrl >> 4) & 7);
    msi->is64 = ctrl & 0x80;
    msi->maskable = ctrl & 0x100;
}

void probe_decode_msix(const struct probe *p, uint16_t off, struct probe_msix *msix)
{
    uint16_t ctrl = probe_cfg16(p, off + 2);
    uint32_t table = probe_cfg32(p, off + 4);
    uint32_t pba = probe_cfg32(p, off + 8);

    msix->table_size = (ctrl & 0x7ff) + 1u;
    msix->masked = ctrl & 0x4000;
    msix->enabled = ctrl & 0x8000;
    msix->table_bir = table & 7;
    msix->table_offset = table & ~7u;
    msix->pba_bir = pba & 7;
    msix->pba_offset = pba & ~7u;
}

void probe_decode_pcie(const struct probe *p, uint16_t off, struct probe_pcie *pcie)
{
    uint16_t flags = probe_cfg16(p, off + 2);
    uint32_t devcap = probe_cfg32(p, off + 4);
    uint32_t linkcap = probe_cfg32(p, off + 0x0c);

    pcie->version = flags & 0xf;
    pcie->type = (flags >> 4) & 0xf;
    pcie->max_payload = 128u << (devcap & 7);
    pcie->link_speed = linkcap & 0xf;
    pcie->link_width = (linkcap >> 4) & 0x3f;
}

const char *probe_cap_name(uint8_t id)
{
    switch (id) {
    case CAP_PM:
        return "Power Management";
    case 0x03:
        return "VPD";
    case CAP_MSI:
        return "MSI";
    case 0x09:
        return "Vendor Specific";
    case 0x0d:
        return "Subsystem ID";
    case CAP_PCIE:
        return "Express";
    case CAP_MSIX:
        return "MSI-X";
    case 0x12:
        return "SATA";
    case 0x13:
        return "PCI Advanced Features";
    default:
        return NULL;
    }
}

const char *probe_ext_cap_name(uint16_t id)
{
    static const char *const names[] = {
        [0x01] = "Advanced Error Reporting",
        [0x02] = "Virtual Channel",
        [0x03] = "Device Serial Number",
        [0x0b] = "Vendor Specific",
        [0x0d] = "Access Control Services",
        [0x0e] = "Alternative Routing-ID",
        [0x10] = "SR-IOV",
        [0x17] = "TPH Requester",
        [0x18] = "Latency Tolerance Reporting",
        [0x1e] = "L1 PM Substates",
    };
    return id < ELEMENTSOF(names) ? names[id] : NULL;
}

const char *probe_class_name(uint8_t base_class)
{
    static const char *const names[] = {
        "Unclassified device",
        "Mass storage controller",
        "Network controller",
        "Display controller",
        "Multimedia controller",
        "Memory controller",
        "Bridge",
        "Communication controller",
        "Generic system peripheral",
        "Input device controller",
        "Docking station",
        "Processor",
        "Serial bus controller",
        "Wireless controller",
        "Intelligent controller",
        "Satellite communications controller",
        "Encryption controller",
        "Signal processing controller",
        "Processing accelerators",
        "Non-Essential Instrumentation",
    };
    if (base_class == 0xff)
        return "Unassigned class";
    return base_class < ELEMENTSOF(names) ? names[base_class] : "Unknown class";
}

const char *probe_pcie_type_name(unsigned type)
{
    static const char *const names[] = {
        [0x0] = "Endpoint",
        [0x1] = "Legacy Endpoint",
        [0x4] = "Root Port",
        [0x5] = "Upstream Port",
        [0x6] = "Downstream Port",
        [0x7] = "PCI-Express to PCI/PCI-X Bridge",
        [0x8] = "PCI/PCI-X to PCI-Express Bridge",
        [0x9] = "Root Complex Integrated Endpoint",
        [0xa] = "Root Complex Event Collector",
    };
    const char *n = type < ELEMENTSOF(names) ? names[type] : NULL;
    return n ? n : "Unknown type";
}

const char *probe_region_name(uint32_t index)
{
    static const char *const names[] = {
        "BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5", "ROM", "config", "VGA",
    };
    return index < ELEMENTSOF(names) ? names[index] : NULL;
}

const char *probe_irq_name(uint32_t index)
{
    static const char *const names[] = {"INTx", "MSI", "MSI-X", "ERR", "REQ"};
    return index < ELEMENTSOF(names) ? names[index] : NULL;
}
