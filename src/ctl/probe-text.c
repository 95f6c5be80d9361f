/* SPDX-License-Identifier: MIT */
/*
 * The human view of a probe, shaped like `lspci -vv` for the PCI part so
 * that it reads familiar, followed by the vfio-user view (regions, IRQs).
 */
#include "ctl/probe.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "util/macro.h"

#define PCI_COMMAND       0x04
#define PCI_INTERRUPT_PIN 0x3d

static const char *plus_minus(bool b)
{
    return b ? "+" : "-";
}

/* 4096 -> "4K", like lspci. */
static void fmt_size(uint64_t size, char *buf, size_t len)
{
    static const char units[] = "KMGTPE";
    unsigned u = 0;

    if (size < 1024 || size % 1024) {
        snprintf(buf, len, "%" PRIu64, size);
        return;
    }
    size /= 1024;
    while (size >= 1024 && size % 1024 == 0 && u + 1 < sizeof(units) - 1) {
        size /= 1024;
        u++;
    }
    snprintf(buf, len, "%" PRIu64 "%c", size, units[u]);
}

static void print_region_flags(uint32_t flags)
{
    printf("%s%s%s", flags & VFIO_REGION_INFO_FLAG_READ ? "r" : "-",
           flags & VFIO_REGION_INFO_FLAG_WRITE ? "w" : "-",
           flags & VFIO_REGION_INFO_FLAG_MMAP ? " mmap" : "");
}

static void print_bars(const struct probe *p)
{
    struct probe_bar bars[6];
    size_t n = probe_bars(p, bars);
    char size[32];

    for (size_t i = 0; i < n; i++) {
        const struct probe_bar *b = &bars[i];
        fmt_size(b->size, size, sizeof(size));
        if (b->io)
            printf("\tRegion %u: I/O ports at %04" PRIx64 " [size=%s]", b->index, b->address, size);
        else
            printf("\tRegion %u: Memory at %0*" PRIx64 " (%s, %sprefetchable) [size=%s]", b->index,
                   b->is64 ? 16 : 8, b->address, b->is64 ? "64-bit" : "32-bit",
                   b->prefetchable ? "" : "non-", size);
        if (b->index < p->nr_regions && p->regions[b->index].err >= 0) {
            const struct probe_region *r = &p->regions[b->index];
            printf(" ");
            print_region_flags(r->info.flags);
            if (r->has_fd)
                printf(" fd");
        }
        printf("\n");
    }
}

static void print_cap(const struct probe *p, const struct probe_cap *cap)
{
    if (cap->extended) {
        const char *name = probe_ext_cap_name(cap->id);
        printf("\tCapabilities: [%03x v%u] ", cap->offset, cap->version);
        if (name)
            printf("%s\n", name);
        else
            printf("Extended Capability ID %#06x\n", cap->id);
        return;
    }

    printf("\tCapabilities: [%02x] ", cap->offset);
    switch (cap->id) {
    case 0x01: {
        struct probe_pm pm;
        probe_decode_pm(p, cap->offset, &pm);
        printf("Power Management version %u\n\t\tStatus: D%u\n", pm.version, pm.state);
        break;
    }
    case 0x05: {
        struct probe_msi msi;
        probe_decode_msi(p, cap->offset, &msi);
        printf("MSI: Enable%s Count=%u/%u Maskable%s 64bit%s\n", plus_minus(msi.enabled),
               msi.enabled_vectors, msi.vectors, plus_minus(msi.maskable), plus_minus(msi.is64));
        break;
    }
    case 0x11: {
        struct probe_msix x;
        probe_decode_msix(p, cap->offset, &x);
        printf("MSI-X: Enable%s Count=%u Masked%s\n", plus_minus(x.enabled), x.table_size,
               plus_minus(x.masked));
        printf("\t\tVector table: BAR=%u offset=%08x\n", x.table_bir, x.table_offset);
        printf("\t\tPBA: BAR=%u offset=%08x\n", x.pba_bir, x.pba_offset);
        break;
    }
    case 0x10: {
        struct probe_pcie e;
        probe_decode_pcie(p, cap->offset, &e);
        printf("Express (v%u) %s\n\t\tDevCap: MaxPayload %u bytes\n", e.version,
               probe_pcie_type_name(e.type), e.max_payload);
        if (e.link_width)
            printf("\t\tLnkCap: Speed %u (gen), Width x%u\n", e.link_speed, e.link_width);
        break;
    }
    default: {
        const char *name = probe_cap_name((uint8_t)cap->id);
        if (name)
            printf("%s\n", name);
        else
            printf("Capability ID %#04x\n", cap->id);
        break;
    }
    }
}

static void print_pci(const struct probe *p)
{
    if (p->config_err < 0) {
        printf("PCI: config space unreadable: %s\n", strerror(-p->config_err));
        return;
    }
    uint32_t class = probe_cfg32(p, 0x08) >> 8;
    printf("PCI: [%04x:%04x] %s [%06x] (rev %02x)\n", probe_cfg16(p, 0x00), probe_cfg16(p, 0x02),
           probe_class_name((uint8_t)(class >> 16)), class, p->config[0x08]);
    printf("\tSubsystem: [%04x:%04x]\n", probe_cfg16(p, 0x2c), probe_cfg16(p, 0x2e));
    uint16_t cmd = probe_cfg16(p, PCI_COMMAND);
    printf("\tControl: I/O%s Mem%s BusMaster%s DisINTx%s\n", plus_minus(cmd & 1),
           plus_minus(cmd & 2), plus_minus(cmd & 4), plus_minus(cmd & 0x400));
    uint8_t pin = p->config[PCI_INTERRUPT_PIN];
    if (pin >= 1 && pin <= 4)
        printf("\tInterrupt: pin %c\n", 'A' + pin - 1);
    printf("\tConfig space: %u bytes\n", p->config_len);
    print_bars(p);

    struct probe_cap caps[PROBE_MAX_CAPS];
    size_t n = probe_caps(p, caps, ELEMENTSOF(caps));
    for (size_t i = 0; i < n; i++)
        print_cap(p, &caps[i]);
}

static void print_regions(const struct probe *p)
{
    char size[32];

    printf("Regions:\n");
    for (uint32_t i = 0; i < p->nr_regions; i++) {
        const struct probe_region *r = &p->regions[i];
        const char *name = probe_region_name(i);
        printf("\t%-2u %-7s ", i, name ? name : "");
        if (r->err < 0) {
            printf("error: %s\n", strerror(-r->err));
            continue;
        }
        if (r->info.size == 0) {
            printf("unused\n");
            continue;
        }
        fmt_size(r->info.size, size, sizeof(size));
        printf("size=%-6s ", size);
        print_region_flags(r->info.flags);
        printf(" offset=%#" PRIx64 " fd%s", r->info.offset, plus_minus(r->has_fd));
        if (r->io_fds_err == 0)
            printf(" io-fds=%u (%u fds)", r->nr_io_subregions, r->nr_io_fds);
        printf("\n");
        for (uint32_t a = 0; a < r->nr_areas; a++)
            printf("\t\tsparse mmap: [%#" PRIx64 "-%#" PRIx64 ")\n", r->areas[a].offset,
                   r->areas[a].offset + r->areas[a].size);
    }
}

static void print_irqs(const struct probe *p)
{
    printf("IRQs:\n");
    for (uint32_t i = 0; i < p->nr_irqs; i++) {
        const struct probe_irq *q = &p->irqs[i];
        const char *name = probe_irq_name(i);
        printf("\t%-5s ", name ? name : "?");
        if (q->err < 0) {
            printf("error: %s\n", strerror(-q->err));
            continue;
        }
        uint32_t f = q->info.flags;
        printf("count=%u%s%s%s%s\n", q->info.count, f & VFIO_IRQ_INFO_EVENTFD ? " eventfd" : "",
               f & VFIO_IRQ_INFO_MASKABLE ? " maskable" : "",
               f & VFIO_IRQ_INFO_AUTOMASKED ? " automasked" : "",
               f & VFIO_IRQ_INFO_NORESIZE ? " noresize" : "");
    }
}

int probe_print_text(const struct probe *p)
{
    uint32_t f = p->dev.flags;

    printf("Socket: %s\n", p->socket);
    printf("Server capabilities: %s\n",
           p->server_json && *p->server_json ? p->server_json : "(none)");
    printf("Device: flags%s%s%s, %u regions, %u IRQ types\n",
           f & VFIO_DEVICE_FLAGS_PCI ? " PCI" : "", f & VFIO_DEVICE_FLAGS_RESET ? " RESET" : "",
           f & VFIO_DEVICE_FLAGS_CAPS ? " CAPS" : "", p->dev.num_regions, p->dev.num_irqs);
    print_pci(p);
    print_regions(p);
    print_irqs(p);
    return fflush(stdout) == 0 ? 0 : -EIO;
}
