/* SPDX-License-Identifier: MIT */
/*
 * PCI config space emulation as a guest driver sees it: identity, BAR
 * sizing, mask semantics, the capability chain, and interrupt delivery
 * through MSI-X, MSI and INTx.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pci/pci-internal.h"

#define MAX_FIRED 64

static struct {
    unsigned n;
    uint32_t index[MAX_FIRED];
    uint32_t vector[MAX_FIRED];
} fired;

static void record_fire(void *opaque, uint32_t index, uint32_t vector)
{
    ck_assert_ptr_eq(opaque, &fired);
    ck_assert_uint_lt(fired.n, MAX_FIRED);
    fired.index[fired.n] = index;
    fired.vector[fired.n] = vector;
    fired.n++;
}

static void assert_fired_once(uint32_t index, uint32_t vector)
{
    ck_assert_uint_eq(fired.n, 1);
    ck_assert_uint_eq(fired.index[0], index);
    ck_assert_uint_eq(fired.vector[0], vector);
    fired.n = 0;
}

/* A device with every capability: BAR0 32-bit 4 KiB, BAR2+3 64-bit
 * prefetchable 8 GiB, BAR4 MSI-X 64-bit 16 KiB, no BAR5 (upper half). */
static struct pci_device_desc full_desc(void)
{
    struct pci_device_desc d = {
        .ids = {.vendor_id = 0x1b36,
                .device_id = 0x0010,
                .subsystem_vendor_id = 0x1af4,
                .subsystem_id = 0x1100,
                .revision = 0x02,
                .class_code = 0x010802},
        .caps = {.intx = true,
                 .pm = true,
                 .msi_vectors = 4,
                 .msix_vectors = 70,
                 .msix_bar = 4,
                 .msix_table_offset = 0x0,
                 .msix_pba_offset = 0x2000,
                 .pcie = true},
    };
    d.bars[0].size = 4096;
    d.bars[2].size = UINT64_C(8) << 30;
    d.bars[2].flags = MUSERD_BAR_MEM64 | MUSERD_BAR_PREFETCH;
    d.bars[4].size = 16384;
    d.bars[4].flags = MUSERD_BAR_MEM64;
    return d;
}

static struct pci_dev *new_dev(const struct pci_device_desc *d)
{
    struct pci_dev *dev = NULL;
    const char *error = NULL;
    int r = pci_dev_new(d, record_fire, &fired, &dev, &error);

    ck_assert_msg(r == 0, "pci_dev_new: %d %s", r, error ? error : "");
    ck_assert_ptr_nonnull(dev);
    fired.n = 0;
    return dev;
}

static uint32_t rd(struct pci_dev *dev, uint32_t off, uint32_t len)
{
    uint8_t b[4] = {0};
    ck_assert_int_eq(pci_config_access(dev, off, b, len, false), 0);
    return b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24;
}
static void wr(struct pci_dev *dev, uint32_t off, uint32_t len, uint32_t v)
{
    uint8_t b[4] = {v, v >> 8, v >> 16, v >> 24};
    ck_assert_int_eq(pci_config_access(dev, off, b, len, true), 0);
}

static uint32_t bar_rd(struct pci_dev *dev, uint32_t bar, uint64_t off)
{
    uint8_t b[4];
    ck_assert(pci_msix_claims(dev, bar, off, 4));
    ck_assert_int_eq(pci_msix_access(dev, bar, off, b, 4, false), 0);
    return b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24;
}
static void bar_wr(struct pci_dev *dev, uint32_t bar, uint64_t off, uint32_t v)
{
    uint8_t b[4] = {v, v >> 8, v >> 16, v >> 24};
    ck_assert(pci_msix_claims(dev, bar, off, 4));
    ck_assert_int_eq(pci_msix_access(dev, bar, off, b, 4, true), 0);
}

/* Walk the chain from 0x34 the way a guest does; returns the count found. */
static unsigned walk_caps(struct pci_dev *dev, uint8_t ids[], uint8_t offs[], unsigned max)
{
    unsigned n = 0;
    for (uint8_t p = rd(dev, PCI_CAPABILITY_LIST, 1); p; p = rd(dev, p + 1, 1)) {
        ck_assert_uint_ge(p, 0x40);
        ck_assert_uint_eq(p % 4, 0);
        ck_assert_uint_lt(n, max);
        ids[n] = rd(dev, p, 1);
        offs[n] = p;
        n++;
    }
    return n;
}

static uint8_t find_cap(struct pci_dev *dev, uint8_t id)
{
    uint8_t ids[8], offs[8];
    unsigned n = walk_caps(dev, ids, offs, 8);
    for (unsigned i = 0; i < n; i++)
        if (ids[i] == id)
            return offs[i];
    ck_abort_msg("capability %#x not found", id);
    return 0;
}

START_TEST(test_identity)
{
    struct pci_device_desc d = full_desc();
    struct pci_dev *dev = new_dev(&d);

    ck_assert_uint_eq(rd(dev, PCI_VENDOR_ID, 2), 0x1b36);
    ck_assert_uint_eq(rd(dev, PCI_DEVICE_ID, 2), 0x0010);
    ck_assert_uint_eq(rd(dev, PCI_REVISION_ID, 1), 0x02);
    ck_assert_uint_eq(rd(dev, PCI_CLASS_REVISION, 4), 0x01080202);
    ck_assert_uint_eq(rd(dev, PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
    ck_assert_uint_eq(rd(dev, PCI_SUBSYSTEM_ID, 2), 0x1100);
    ck_assert_uint_eq(rd(dev, PCI_HEADER_TYPE, 1), 0);
    ck_assert_uint_eq(rd(dev, PCI_INTERRUPT_PIN, 1), 1);
    ck_assert_uint_eq(rd(dev, PCI_ROM_ADDRESS, 4), 0);

    /* IDs and class are read-only. */
    wr(dev, PCI_VENDOR_ID, 4, 0xdeadbeef);
    wr(dev, PCI_CLASS_REVISION, 4, 0xffffffff);
    wr(dev, PCI_INTERRUPT_PIN, 1, 0);
    ck_assert_uint_eq(rd(dev, PCI_VENDOR_ID, 4), 0x00101b36);
    ck_assert_uint_eq(rd(dev, PCI_CLASS_REVISION, 4), 0x01080202);
    ck_assert_uint_eq(rd(dev, PCI_INTERRUPT_PIN, 1), 1);
    /* Expansion ROM is not implemented: sizing it reads 0. */
    wr(dev, PCI_ROM_ADDRESS, 4, 0xffffffff);
    ck_assert_uint_eq(rd(dev, PCI_ROM_ADDRESS, 4), 0);

    /* Scratch registers the OS writes and reads back. */
    wr(dev, PCI_INTERRUPT_LINE, 1, 0x0b);
    wr(dev, PCI_CACHE_LINE_SIZE, 1, 0x10);
    ck_assert_uint_eq(rd(dev, PCI_INTERRUPT_LINE, 1), 0x0b);
    ck_assert_uint_eq(rd(dev, PCI_CACHE_LINE_SIZE, 1), 0x10);
    /* PCIe hardwires the latency timer to 0. */
    wr(dev, PCI_LATENCY_TIMER, 1, 0x40);
    ck_assert_uint_eq(rd(dev, PCI_LATENCY_TIMER, 1), 0);
    pci_dev_free(dev);

    /* A conventional PCI device without INTx: no pin, latency timer RW. */
    d.caps = (struct muserd_pci_caps){0};
    dev = new_dev(&d);
    ck_assert_uint_eq(rd(dev, PCI_INTERRUPT_PIN, 1), 0);
    wr(dev, PCI_LATENCY_TIMER, 1, 0x40);
    ck_assert_uint_eq(rd(dev, PCI_LATENCY_TIMER, 1), 0x40);
    ck_assert_uint_eq(pci_config_size(dev), 256);
    pci_dev_free(dev);
}
END_TEST

START_TEST(test_bar_sizing)
{
    struct pci_device_desc d = full_desc();
    d.bars[1].size = 32;
    d.bars[1].flags = MUSERD_BAR_IO;
    struct pci_dev *dev = new_dev(&d);

    /* 32-bit memory, not prefetchable: type bits read 0. */
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_0, 4), 0);
    wr(dev, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_0, 4), 0xfffff000);
    wr(dev, PCI_BASE_ADDRESS_0, 4, 0xfebf1234);
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_0, 4), 0xfebf1000);

    /* I/O: bit 0 set, 32 bytes. */
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_1, 4), PCI_BASE_ADDRESS_SPACE_IO);
    wr(dev, PCI_BASE_ADDRESS_1, 4, 0xffffffff);
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_1, 4), 0xffffffe1);
    wr(dev, PCI_BASE_ADDRESS_1, 2, 0xc040);
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_1, 2), 0xc041);

    /* 64-bit prefetchable, 8 GiB: no address bits in the low dword. */
    uint32_t flags64 = PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH;
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_2, 4), flags64);
    wr(dev, PCI_BASE_ADDRESS_2, 4, 0xffffffff);
    wr(dev, PCI_BASE_ADDRESS_3, 4, 0xffffffff);
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_2, 4), flags64);
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_3, 4), 0xfffffffe);
    wr(dev, PCI_BASE_ADDRESS_3, 4, 0x00000004);
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_3, 4), 0x00000004);

    /* 64-bit, 16 KiB. */
    wr(dev, PCI_BASE_ADDRESS_4, 4, 0xffffffff);
    wr(dev, PCI_BASE_ADDRESS_5, 4, 0xffffffff);
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_4, 4), 0xffffc000 | PCI_BASE_ADDRESS_MEM_TYPE_64);
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_5, 4), 0xffffffff);
    pci_dev_free(dev);

    /* An unused slot reads 0 and ignores writes. */
    d = full_desc();
    dev = new_dev(&d);
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_1, 4), 0);
    wr(dev, PCI_BASE_ADDRESS_1, 4, 0xffffffff);
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_1, 4), 0);
    pci_dev_free(dev);
}
END_TEST

START_TEST(test_command_status)
{
    struct pci_device_desc d = full_desc();
    struct pci_dev *dev = new_dev(&d);

    /* Only the enables the device honours stick; no I/O BAR, no I/O enable. */
    wr(dev, PCI_COMMAND, 2, 0xffff);
    ck_assert_uint_eq(rd(dev, PCI_COMMAND, 2), PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
                                                   PCI_COMMAND_PARITY | PCI_COMMAND_SERR |
                                                   PCI_COMMAND_INTX_DISABLE);
    wr(dev, PCI_COMMAND, 2, 0);
    ck_assert_uint_eq(rd(dev, PCI_COMMAND, 2), 0);

    /* Status: capability list set, read-only. */
    ck_assert_uint_eq(rd(dev, PCI_STATUS, 2), PCI_STATUS_CAP_LIST);
    wr(dev, PCI_STATUS, 2, 0xffff);
    ck_assert_uint_eq(rd(dev, PCI_STATUS, 2), PCI_STATUS_CAP_LIST);

    /* Error bits clear on writing 1, stay on writing 0. */
    dev->cfg[PCI_STATUS + 1] |= (PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_DETECTED_PARITY) >> 8;
    wr(dev, PCI_STATUS, 2, 0);
    ck_assert_uint_eq(rd(dev, PCI_STATUS, 2), PCI_STATUS_CAP_LIST | PCI_STATUS_REC_MASTER_ABORT |
                                                  PCI_STATUS_DETECTED_PARITY);
    wr(dev, PCI_STATUS, 2, PCI_STATUS_REC_MASTER_ABORT);
    ck_assert_uint_eq(rd(dev, PCI_STATUS, 2), PCI_STATUS_CAP_LIST | PCI_STATUS_DETECTED_PARITY);
    /* A byte write to the command register leaves status alone. */
    wr(dev, PCI_COMMAND, 1, 0xff);
    ck_assert_uint_eq(rd(dev, PCI_STATUS, 2), PCI_STATUS_CAP_LIST | PCI_STATUS_DETECTED_PARITY);
    pci_dev_free(dev);

    /* With an I/O BAR the I/O enable sticks; without caps no list bit. */
    d.caps = (struct muserd_pci_caps){0};
    d.bars[1].size = 4;
    d.bars[1].flags = MUSERD_BAR_IO;
    dev = new_dev(&d);
    wr(dev, PCI_COMMAND, 2, PCI_COMMAND_IO);
    ck_assert_uint_eq(rd(dev, PCI_COMMAND, 2), PCI_COMMAND_IO);
    ck_assert_uint_eq(rd(dev, PCI_STATUS, 2), 0);
    ck_assert_uint_eq(rd(dev, PCI_CAPABILITY_LIST, 1), 0);
    pci_dev_free(dev);
}
END_TEST

START_TEST(test_intx)
{
    struct pci_device_desc d = full_desc();
    struct pci_dev *dev = new_dev(&d);

    ck_assert_int_eq(pci_irq_mode(dev), PCI_IRQ_INTX);
    ck_assert_int_eq(pci_raise(dev, 0), 0);
    assert_fired_once(VFIO_PCI_INTX_IRQ_INDEX, 0);
    ck_assert(rd(dev, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    /* The guest cannot clear the interrupt status; the device lowers it. */
    wr(dev, PCI_STATUS, 2, 0xffff);
    ck_assert(rd(dev, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    pci_lower_intx(dev);
    ck_assert(!(rd(dev, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));

    /* Disabled: held in the status bit, delivered when enabled again. */
    wr(dev, PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
    ck_assert_int_eq(pci_irq_mode(dev), PCI_IRQ_NONE);
    ck_assert_int_eq(pci_raise(dev, 0), 0);
    ck_assert_uint_eq(fired.n, 0);
    ck_assert(rd(dev, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    wr(dev, PCI_COMMAND, 2, 0);
    assert_fired_once(VFIO_PCI_INTX_IRQ_INDEX, 0);

    /* Lowered while disabled: nothing to deliver on enable. */
    pci_lower_intx(dev);
    wr(dev, PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
    pci_raise(dev, 0);
    pci_lower_intx(dev);
    wr(dev, PCI_COMMAND, 2, 0);
    ck_assert_uint_eq(fired.n, 0);
    pci_dev_free(dev);

    /* No pin: nothing is delivered, and that is not an error. */
    d.caps.intx = false;
    dev = new_dev(&d);
    ck_assert_int_eq(pci_raise(dev, 0), 0);
    ck_assert_uint_eq(fired.n, 0);
    ck_assert(!(rd(dev, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));
    ck_assert_int_eq(pci_irq_mode(dev), PCI_IRQ_NONE);
    pci_dev_free(dev);
}
END_TEST

START_TEST(test_cap_chain)
{
    struct pci_device_desc d = full_desc();
    struct pci_dev *dev = new_dev(&d);
    uint8_t ids[8], offs[8];

    ck_assert_uint_eq(walk_caps(dev, ids, offs, 8), 4);
    ck_assert_uint_eq(ids[0], PCI_CAP_ID_PM);
    ck_assert_uint_eq(offs[0], 0x40);
    ck_assert_uint_eq(ids[1], PCI_CAP_ID_MSI);
    ck_assert_uint_eq(ids[2], PCI_CAP_ID_MSIX);
    ck_assert_uint_eq(ids[3], PCI_CAP_ID_EXP);
    /* Capabilities do not overlap. */
    ck_assert_uint_ge(offs[1], offs[0] + PCI_PM_CAP_SIZE);
    ck_assert_uint_ge(offs[2], offs[1] + PCI_MSI_CAP_SIZE);
    ck_assert_uint_ge(offs[3], offs[2] + PCI_MSIX_CAP_SIZE);
    ck_assert_uint_le(offs[3] + PCI_EXP_CAP_SIZE, 0x100);
    /* The chain pointers are read-only. */
    wr(dev, PCI_CAPABILITY_LIST, 1, 0x80);
    wr(dev, offs[0], 2, 0x8011);
    ck_assert_uint_eq(rd(dev, PCI_CAPABILITY_LIST, 1), 0x40);
    ck_assert_uint_eq(rd(dev, offs[0], 1), PCI_CAP_ID_PM);
    ck_assert_uint_eq(rd(dev, offs[0] + 1, 1), offs[1]);
    pci_dev_free(dev);

    /* A subset keeps the order and starts at 0x40. */
    d.caps.pm = false;
    d.caps.msi_vectors = 0;
    dev = new_dev(&d);
    ck_assert_uint_eq(walk_caps(dev, ids, offs, 8), 2);
    ck_assert_uint_eq(ids[0], PCI_CAP_ID_MSIX);
    ck_assert_uint_eq(offs[0], 0x40);
    ck_assert_uint_eq(ids[1], PCI_CAP_ID_EXP);
    pci_dev_free(dev);

    ck_assert_str_eq(pci_cap_name(PCI_CAP_ID_MSIX), "MSI-X");
    ck_assert_str_eq(pci_cap_name(PCI_CAP_ID_EXP), "PCI Express");
    ck_assert_ptr_null(pci_cap_name(0));
    ck_assert_ptr_null(pci_cap_name(0xff));
}
END_TEST

START_TEST(test_pm)
{
    struct pci_device_desc d = full_desc();
    struct pci_dev *dev = new_dev(&d);
    uint8_t pm = find_cap(dev, PCI_CAP_ID_PM);
    uint32_t pmcsr = pm + PCI_PM_CTRL;

    ck_assert_uint_eq(rd(dev, pm + PCI_PM_PMC, 2) & 7, 3);
    ck_assert_uint_eq(rd(dev, pmcsr, 2), PCI_PM_CTRL_NO_SOFT_RESET);
    wr(dev, pmcsr, 2, 3);
    ck_assert_uint_eq(rd(dev, pmcsr, 2), PCI_PM_CTRL_NO_SOFT_RESET | 3);
    /* D1/D2 are unsupported: the write is ignored. */
    wr(dev, pmcsr, 2, 1);
    ck_assert_uint_eq(rd(dev, pmcsr, 2) & PCI_PM_CTRL_STATE_MASK, 3);
    wr(dev, pmcsr, 2, 0xfff8);
    ck_assert_uint_eq(rd(dev, pmcsr, 2), PCI_PM_CTRL_NO_SOFT_RESET);
    wr(dev, pmcsr, 2, 3);
    pci_dev_reset(dev);
    ck_assert_uint_eq(rd(dev, pmcsr, 2) & PCI_PM_CTRL_STATE_MASK, 0);
    pci_dev_free(dev);
}
END_TEST

START_TEST(test_msix)
{
    struct pci_device_desc d = full_desc();
    struct pci_dev *dev = new_dev(&d);
    uint8_t cap = find_cap(dev, PCI_CAP_ID_MSIX);
    uint32_t ctl = cap + PCI_MSIX_FLAGS;

    ck_assert_uint_eq(rd(dev, ctl, 2), 69);
    ck_assert_uint_eq(rd(dev, cap + PCI_MSIX_TABLE, 4), 0x0 | 4);
    ck_assert_uint_eq(rd(dev, cap + PCI_MSIX_PBA, 4), 0x2000 | 4);
    wr(dev, cap + PCI_MSIX_TABLE, 4, 0x1000);
    ck_assert_uint_eq(rd(dev, cap + PCI_MSIX_TABLE, 4), 4);

    /* Entries come out of reset masked; address and data are RW. */
    uint64_t e5 = 5 * 16;
    ck_assert_uint_eq(bar_rd(dev, 4, e5 + 12), 1);
    bar_wr(dev, 4, e5 + 0, 0xfee00003); /* dword aligned: low bits read 0 */
    bar_wr(dev, 4, e5 + 4, 0x1);
    bar_wr(dev, 4, e5 + 8, 0x4041);
    ck_assert_uint_eq(bar_rd(dev, 4, e5 + 0), 0xfee00000);
    ck_assert_uint_eq(bar_rd(dev, 4, e5 + 4), 0x1);
    ck_assert_uint_eq(bar_rd(dev, 4, e5 + 8), 0x4041);

    /* Not enabled yet: INTx is the mode. */
    ck_assert_int_eq(pci_irq_mode(dev), PCI_IRQ_INTX);
    wr(dev, ctl, 2, PCI_MSIX_FLAGS_ENABLE);
    ck_assert_uint_eq(rd(dev, ctl, 2), PCI_MSIX_FLAGS_ENABLE | 69);
    ck_assert_int_eq(pci_irq_mode(dev), PCI_IRQ_MSIX);

    /* Masked entry: PBA bit set, nothing fired; unmask delivers it. */
    ck_assert_int_eq(pci_raise(dev, 5), 0);
    ck_assert_uint_eq(fired.n, 0);
    ck_assert_uint_eq(bar_rd(dev, 4, 0x2000), 1u << 5);
    bar_wr(dev, 4, 0x2000, 0); /* the PBA is read-only */
    ck_assert_uint_eq(bar_rd(dev, 4, 0x2000), 1u << 5);
    bar_wr(dev, 4, e5 + 12, 0xfffffffe); /* reserved bits stay 0 */
    assert_fired_once(VFIO_PCI_MSIX_IRQ_INDEX, 5);
    ck_assert_uint_eq(bar_rd(dev, 4, e5 + 12), 0);
    ck_assert_uint_eq(bar_rd(dev, 4, 0x2000), 0);

    /* Unmasked: fired at once. */
    ck_assert_int_eq(pci_raise(dev, 5), 0);
    assert_fired_once(VFIO_PCI_MSIX_IRQ_INDEX, 5);

    /* Function mask holds every vector; clearing it delivers. Vector 66
     * lives in the second PBA qword. */
    bar_wr(dev, 4, 66 * 16 + 12, 0);
    wr(dev, ctl + 1, 1, (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8);
    ck_assert_int_eq(pci_raise(dev, 5), 0);
    ck_assert_int_eq(pci_raise(dev, 66), 0);
    ck_assert_int_eq(pci_raise(dev, 7), 0); /* masked by its entry too */
    ck_assert_uint_eq(fired.n, 0);
    uint8_t pba[8];
    ck_assert_int_eq(pci_msix_access(dev, 4, 0x2008, pba, 8, false), 0);
    ck_assert_uint_eq(pba[0], 1u << 2);
    wr(dev, ctl, 2, PCI_MSIX_FLAGS_ENABLE);
    ck_assert_uint_eq(fired.n, 2);
    ck_assert_uint_eq(fired.vector[0], 5);
    ck_assert_uint_eq(fired.vector[1], 66);
    fired.n = 0;
    ck_assert_uint_eq(bar_rd(dev, 4, 0x2000), 1u << 7);
    ck_assert_uint_eq(bar_rd(dev, 4, 0x2008), 0);
    /* Unmasking an entry under the function mask delivers nothing yet. */
    wr(dev, ctl, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    bar_wr(dev, 4, 7 * 16 + 12, 0);
    ck_assert_uint_eq(fired.n, 0);
    wr(dev, ctl, 2, PCI_MSIX_FLAGS_ENABLE);
    assert_fired_once(VFIO_PCI_MSIX_IRQ_INDEX, 7);
    ck_assert_uint_eq(bar_rd(dev, 4, 0x2000), 0);

    ck_assert_int_eq(pci_raise(dev, 70), -EINVAL);

    /* 8-byte access; bad sizes, alignment and other BARs are refused. */
    uint8_t b8[8] = {0x00, 0x10, 0xe0, 0xfe, 0, 0, 0, 0};
    ck_assert_int_eq(pci_msix_access(dev, 4, 16, b8, 8, true), 0);
    ck_assert_uint_eq(bar_rd(dev, 4, 16), 0xfee01000);
    uint8_t b[8];
    ck_assert_int_eq(pci_msix_access(dev, 4, 2, b, 4, false), -EINVAL);
    ck_assert_int_eq(pci_msix_access(dev, 4, 4, b, 8, false), -EINVAL);
    ck_assert_int_eq(pci_msix_access(dev, 4, 0, b, 2, false), -EINVAL);
    ck_assert_int_eq(pci_msix_access(dev, 0, 0, b, 4, false), -EINVAL);
    ck_assert_int_eq(pci_msix_access(dev, 4, 70 * 16, b, 4, false), -EINVAL);
    ck_assert(!pci_msix_claims(dev, 0, 0, 4));
    ck_assert(!pci_msix_claims(dev, 4, 70 * 16, 4));
    ck_assert(!pci_msix_claims(dev, 4, 0x2010, 4));
    ck_assert(pci_msix_claims(dev, 4, 0x200c, 4));
    pci_dev_free(dev);
}
END_TEST

/* QEMU emulates the MSI-X table and never writes ours: a vector must fire
 * on enable alone, its reset-masked entry notwithstanding. The function mask,
 * which QEMU does forward through config space, still holds vectors back. */
START_TEST(test_msix_table_never_written)
{
    struct pci_device_desc d = full_desc();
    struct pci_dev *dev = new_dev(&d);
    uint32_t ctl = find_cap(dev, PCI_CAP_ID_MSIX) + PCI_MSIX_FLAGS;

    fired.n = 0;
    wr(dev, ctl, 2, PCI_MSIX_FLAGS_ENABLE);
    ck_assert_uint_eq(bar_rd(dev, 4, 3 * 16 + 12), 1); /* still reads masked */
    ck_assert_int_eq(pci_raise(dev, 3), 0);
    assert_fired_once(VFIO_PCI_MSIX_IRQ_INDEX, 3);
    ck_assert_int_eq(pci_raise(dev, 69), 0);
    assert_fired_once(VFIO_PCI_MSIX_IRQ_INDEX, 69);

    wr(dev, ctl, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    ck_assert_int_eq(pci_raise(dev, 3), 0);
    ck_assert_uint_eq(fired.n, 0);
    wr(dev, ctl, 2, PCI_MSIX_FLAGS_ENABLE);
    assert_fired_once(VFIO_PCI_MSIX_IRQ_INDEX, 3);

    /* Once a client writes the table, its mask bits count again, and a
     * reset forgets that it did. */
    bar_wr(dev, 4, 3 * 16 + 8, 0x41);
    ck_assert_int_eq(pci_raise(dev, 3), 0);
    ck_assert_uint_eq(fired.n, 0);
    pci_dev_reset(dev);
    wr(dev, ctl, 2, PCI_MSIX_FLAGS_ENABLE);
    ck_assert_int_eq(pci_raise(dev, 3), 0);
    assert_fired_once(VFIO_PCI_MSIX_IRQ_INDEX, 3);
    pci_dev_free(dev);
}
END_TEST

START_TEST(test_msi)
{
    struct pci_device_desc d = full_desc();
    struct pci_dev *dev = new_dev(&d);
    uint8_t cap = find_cap(dev, PCI_CAP_ID_MSI);
    uint32_t ctl = cap + PCI_MSI_FLAGS, mask = cap + PCI_MSI_MASK_64,
             pend = cap + PCI_MSI_PENDING_64;

    /* 4 vectors capable, 64-bit, per-vector masking. */
    ck_assert_uint_eq(rd(dev, ctl, 2), (2 << 1) | PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_MASKBIT);
    wr(dev, cap + PCI_MSI_ADDRESS_LO, 4, 0xfee00003);
    wr(dev, cap + PCI_MSI_ADDRESS_HI, 4, 0x12345678);
    wr(dev, cap + PCI_MSI_DATA_64, 2, 0x4020);
    ck_assert_uint_eq(rd(dev, cap + PCI_MSI_ADDRESS_LO, 4), 0xfee00000);
    ck_assert_uint_eq(rd(dev, cap + PCI_MSI_ADDRESS_HI, 4), 0x12345678);
    ck_assert_uint_eq(rd(dev, cap + PCI_MSI_DATA_64, 2), 0x4020);
    /* Mask bits exist only for the 4 implemented vectors. */
    wr(dev, mask, 4, 0xffffffff);
    ck_assert_uint_eq(rd(dev, mask, 4), 0xf);
    wr(dev, mask, 4, 0);

    /* Asking for 32 vectors gets the 4 there are. */
    wr(dev, ctl, 2, PCI_MSI_FLAGS_ENABLE | (5 << 4));
    ck_assert_uint_eq((rd(dev, ctl, 2) & PCI_MSI_FLAGS_QSIZE) >> 4, 2);
    ck_assert_int_eq(pci_irq_mode(dev), PCI_IRQ_MSI);
    ck_assert_int_eq(pci_raise(dev, 3), 0);
    assert_fired_once(VFIO_PCI_MSI_IRQ_INDEX, 3);
    ck_assert_int_eq(pci_raise(dev, 4), -EINVAL);

    /* Only one vector enabled: vector 1 is out of range. */
    wr(dev, ctl, 2, PCI_MSI_FLAGS_ENABLE);
    ck_assert_int_eq(pci_raise(dev, 1), -EINVAL);
    ck_assert_int_eq(pci_raise(dev, 0), 0);
    assert_fired_once(VFIO_PCI_MSI_IRQ_INDEX, 0);

    /* Masked: held in the read-only pending bit until unmasked. */
    wr(dev, mask, 4, 1);
    ck_assert_int_eq(pci_raise(dev, 0), 0);
    ck_assert_uint_eq(fired.n, 0);
    ck_assert_uint_eq(rd(dev, pend, 4), 1);
    wr(dev, pend, 4, 0);
    ck_assert_uint_eq(rd(dev, pend, 4), 1);
    wr(dev, mask, 4, 0);
    assert_fired_once(VFIO_PCI_MSI_IRQ_INDEX, 0);
    ck_assert_uint_eq(rd(dev, pend, 4), 0);

    /* MSI-X takes precedence once enabled. */
    uint8_t mx = find_cap(dev, PCI_CAP_ID_MSIX);
    wr(dev, mx + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
    ck_assert_int_eq(pci_irq_mode(dev), PCI_IRQ_MSIX);
    pci_dev_free(dev);
}
END_TEST

START_TEST(test_pcie)
{
    struct pci_device_desc d = full_desc();
    struct pci_dev *dev = new_dev(&d);
    uint8_t cap = find_cap(dev, PCI_CAP_ID_EXP);
    uint8_t all[PCI_CFG_SPACE_EXP_SIZE];

    ck_assert_uint_eq(pci_config_size(dev), 4096);
    ck_assert_uint_eq(rd(dev, cap + PCI_EXP_FLAGS, 2), 2 | (PCI_EXP_TYPE_ENDPOINT << 4));
    ck_assert(!(rd(dev, cap + PCI_EXP_DEVCAP, 4) & PCI_EXP_DEVCAP_FLR));
    ck_assert_uint_eq((rd(dev, cap + PCI_EXP_LNKCAP, 4) & PCI_EXP_LNKCAP_MLW) >> 4, 1);
    ck_assert_uint_eq(rd(dev, 0x100, 4), 0);

    /* Bulk read of all of it, as a probe does. */
    ck_assert_int_eq(pci_config_access(dev, 0, all, sizeof(all), false), 0);
    ck_assert_uint_eq(all[0], 0x36);
    ck_assert_uint_eq(all[PCI_CAPABILITY_LIST], 0x40);

    /* Device control: max payload and read request are the OS's. */
    wr(dev, cap + PCI_EXP_DEVCTL, 2, 0xffff);
    ck_assert_uint_eq(rd(dev, cap + PCI_EXP_DEVCTL, 2), 0x78ff);
    wr(dev, cap + PCI_EXP_DEVCTL, 2, PCI_EXP_DEVCTL_READRQ_4096B);
    ck_assert_uint_eq(rd(dev, cap + PCI_EXP_DEVCTL, 2), PCI_EXP_DEVCTL_READRQ_4096B);

    /* Device status error bits are RW1C. */
    dev->cfg[cap + PCI_EXP_DEVSTA] |= PCI_EXP_DEVSTA_CED | PCI_EXP_DEVSTA_URD;
    wr(dev, cap + PCI_EXP_DEVSTA, 2, PCI_EXP_DEVSTA_URD);
    ck_assert_uint_eq(rd(dev, cap + PCI_EXP_DEVSTA, 2), PCI_EXP_DEVSTA_CED);

    /* Extended space is read-only zero. */
    wr(dev, 0x100, 4, 0xffffffff);
    ck_assert_uint_eq(rd(dev, 0x100, 4), 0);
    wr(dev, 0xffc, 4, 0xffffffff);
    ck_assert_uint_eq(rd(dev, 0xffc, 4), 0);
    pci_dev_free(dev);
}
END_TEST

START_TEST(test_access_bounds)
{
    struct pci_device_desc d = full_desc();
    uint8_t b[8] = {0};
    d.caps.pcie = false;
    struct pci_dev *dev = new_dev(&d);

    ck_assert_int_eq(pci_config_access(dev, 256, b, 1, false), -EINVAL);
    ck_assert_int_eq(pci_config_access(dev, 254, b, 4, false), -EINVAL);
    ck_assert_int_eq(pci_config_access(dev, 255, b, 2, true), -EINVAL);
    ck_assert_int_eq(pci_config_access(dev, UINT64_MAX, b, 2, false), -EINVAL);
    ck_assert_int_eq(pci_config_access(dev, 0, b, 0, false), -EINVAL);
    ck_assert_int_eq(pci_config_access(dev, 0, b, 3, true), -EINVAL);
    ck_assert_int_eq(pci_config_access(dev, 0, b, 8, true), -EINVAL);
    ck_assert_int_eq(pci_config_access(dev, 252, b, 4, false), 0);
    ck_assert_int_eq(pci_config_access(dev, 0, b, 8, false), 0);

    /* Unaligned: a dword write across the two BAR0 address bytes. */
    wr(dev, PCI_BASE_ADDRESS_0 + 1, 4, 0xffffffff);
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_0, 4), 0xfffff000);
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_0 + 1, 2), 0xfff0);
    pci_dev_free(dev);
}
END_TEST

START_TEST(test_reset)
{
    struct pci_device_desc d = full_desc();
    struct pci_dev *dev = new_dev(&d);
    uint8_t before[PCI_CFG_SPACE_EXP_SIZE], after[PCI_CFG_SPACE_EXP_SIZE];
    uint8_t msi = find_cap(dev, PCI_CAP_ID_MSI), msix = find_cap(dev, PCI_CAP_ID_MSIX);

    ck_assert_int_eq(pci_config_access(dev, 0, before, sizeof(before), false), 0);
    wr(dev, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    wr(dev, PCI_BASE_ADDRESS_0, 4, 0xfebf0000);
    wr(dev, msi + PCI_MSI_FLAGS, 2, PCI_MSI_FLAGS_ENABLE);
    wr(dev, msi + PCI_MSI_MASK_64, 4, 1);
    pci_raise(dev, 0);
    wr(dev, msix + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
    bar_wr(dev, 4, 0, 0xfee00000);
    pci_raise(dev, 1);
    bar_wr(dev, 4, 12, 0);
    ck_assert_uint_eq(bar_rd(dev, 4, 0x2000), 2);

    pci_dev_reset(dev);
    ck_assert_int_eq(pci_config_access(dev, 0, after, sizeof(after), false), 0);
    ck_assert_mem_eq(before, after, sizeof(before));
    ck_assert_uint_eq(bar_rd(dev, 4, 0), 0);
    ck_assert_uint_eq(bar_rd(dev, 4, 12), 1);
    ck_assert_uint_eq(bar_rd(dev, 4, 0x2000), 0);
    ck_assert_int_eq(pci_irq_mode(dev), PCI_IRQ_INTX);
    pci_dev_free(dev);
}
END_TEST

START_TEST(test_irq_counts)
{
    struct pci_device_desc d = full_desc();
    struct pci_dev *dev = new_dev(&d);
    uint32_t counts[VFIO_PCI_NUM_IRQS];

    pci_irq_counts(dev, counts);
    ck_assert_uint_eq(counts[VFIO_PCI_INTX_IRQ_INDEX], 1);
    ck_assert_uint_eq(counts[VFIO_PCI_MSI_IRQ_INDEX], 4);
    ck_assert_uint_eq(counts[VFIO_PCI_MSIX_IRQ_INDEX], 70);
    ck_assert_uint_eq(counts[VFIO_PCI_ERR_IRQ_INDEX], 1);
    ck_assert_uint_eq(counts[VFIO_PCI_REQ_IRQ_INDEX], 1);
    pci_dev_free(dev);

    d.caps = (struct muserd_pci_caps){0};
    dev = new_dev(&d);
    pci_irq_counts(dev, counts);
    ck_assert_uint_eq(counts[VFIO_PCI_INTX_IRQ_INDEX], 0);
    ck_assert_uint_eq(counts[VFIO_PCI_MSI_IRQ_INDEX], 0);
    ck_assert_uint_eq(counts[VFIO_PCI_MSIX_IRQ_INDEX], 0);
    ck_assert_uint_eq(counts[VFIO_PCI_ERR_IRQ_INDEX], 0);
    ck_assert_uint_eq(counts[VFIO_PCI_REQ_IRQ_INDEX], 1);
    pci_dev_free(dev);
}
END_TEST

/* Each case breaks one thing in full_desc(). */
static void bad_pow2(struct pci_device_desc *d)
{
    d->bars[0].size = 4096 + 16;
}
static void bad_mem_small(struct pci_device_desc *d)
{
    d->bars[0].size = 8;
}
static void bad_io_small(struct pci_device_desc *d)
{
    d->bars[1].size = 2;
    d->bars[1].flags = MUSERD_BAR_IO;
}
static void bad_io_big(struct pci_device_desc *d)
{
    d->bars[1].size = 512;
    d->bars[1].flags = MUSERD_BAR_IO;
}
static void bad_io_64(struct pci_device_desc *d)
{
    d->bars[1].size = 16;
    d->bars[1].flags = MUSERD_BAR_IO | MUSERD_BAR_PREFETCH;
}
static void bad_slot5(struct pci_device_desc *d)
{
    d->caps.msix_bar = 0;
    d->bars[4] = (struct pci_bar_desc){0};
    d->bars[5].size = 4096;
    d->bars[5].flags = MUSERD_BAR_MEM64;
}
static void bad_upper(struct pci_device_desc *d)
{
    d->bars[3].size = 4096;
}
static void bad_flags(struct pci_device_desc *d)
{
    d->bars[0].flags = 0x80;
}
static void bad_mem32_big(struct pci_device_desc *d)
{
    d->bars[2].flags = 0;
    d->bars[2].size = UINT64_C(4) << 30;
}
static void bad_msi(struct pci_device_desc *d)
{
    d->caps.msi_vectors = 3;
}
static void bad_msi_big(struct pci_device_desc *d)
{
    d->caps.msi_vectors = 64;
}
static void bad_msix_many(struct pci_device_desc *d)
{
    d->caps.msix_vectors = 2049;
}
static void bad_msix_bar(struct pci_device_desc *d)
{
    d->caps.msix_bar = 1;
}
static void bad_msix_bar6(struct pci_device_desc *d)
{
    d->caps.msix_bar = 6;
}
static void bad_msix_io(struct pci_device_desc *d)
{
    d->caps.msix_bar = 1;
    d->bars[1].size = 256;
    d->bars[1].flags = MUSERD_BAR_IO;
}
static void bad_table_fit(struct pci_device_desc *d)
{
    d->caps.msix_table_offset = 0x3c00;
}
static void bad_pba_fit(struct pci_device_desc *d)
{
    d->caps.msix_pba_offset = 0x3ff8;
}
static void bad_overlap(struct pci_device_desc *d)
{
    d->caps.msix_pba_offset = 0x400;
}
static void bad_table_align(struct pci_device_desc *d)
{
    d->caps.msix_table_offset = 4;
}
static void bad_pba_align(struct pci_device_desc *d)
{
    d->caps.msix_pba_offset = 0x2004;
}

static const struct bad_desc {
    void (*breakit)(struct pci_device_desc *d);
    const char *error;
} bad_descs[] = {
    {bad_pow2, "BAR 0 size is not a power of two"},
    {bad_mem_small, "BAR 0 is a memory BAR smaller than 16 bytes"},
    {bad_io_small, "BAR 1 is an I/O BAR smaller than 4 bytes"},
    {bad_io_big, "BAR 1 is an I/O BAR larger than 256 bytes"},
    {bad_io_64, "BAR 1 is an I/O BAR and cannot be 64-bit or prefetchable"},
    {bad_slot5, "BAR 5 cannot be 64-bit: there is no slot after it for the upper half"},
    {bad_upper, "BAR 3 must be unused: it holds the upper half of the 64-bit BAR before it"},
    {bad_flags, "BAR 0 has unknown flags"},
    {bad_mem32_big, "BAR 2 is larger than 2 GiB and must be 64-bit"},
    {bad_msi, "MSI vector count is not 1, 2, 4, 8, 16 or 32"},
    {bad_msi_big, "MSI vector count is not 1, 2, 4, 8, 16 or 32"},
    {bad_msix_many, "MSI-X vector count is above 2048"},
    {bad_msix_bar, "MSI-X table BAR is not an implemented BAR"},
    {bad_msix_bar6, "MSI-X table BAR is not an implemented BAR"},
    {bad_msix_io, "MSI-X table BAR is an I/O BAR, it must be a memory BAR"},
    {bad_table_fit, "MSI-X table does not fit in its BAR"},
    {bad_pba_fit, "MSI-X PBA does not fit in its BAR"},
    {bad_overlap, "MSI-X table and PBA overlap"},
    {bad_table_align, "MSI-X table offset is not 8-byte aligned"},
    {bad_pba_align, "MSI-X PBA offset is not 8-byte aligned"},
};

START_TEST(test_bad_desc)
{
    const struct bad_desc *c = &bad_descs[_i];
    struct pci_device_desc d = full_desc();
    struct pci_dev *dev = NULL;
    const char *error = NULL;

    c->breakit(&d);
    ck_assert_int_eq(pci_dev_new(&d, record_fire, &fired, &dev, &error), -EINVAL);
    ck_assert_ptr_null(dev);
    ck_assert_ptr_nonnull(error);
    ck_assert_str_eq(error, c->error);
}
END_TEST

START_TEST(test_good_edges)
{
    struct pci_device_desc d = {0};
    struct pci_dev *dev;

    /* Smallest BARs, 32 MSI vectors, 2048 MSI-X vectors with the PBA first. */
    d.bars[0].size = 16;
    d.bars[1].size = 4;
    d.bars[1].flags = MUSERD_BAR_IO;
    d.bars[2].size = 65536;
    d.caps.msi_vectors = 32;
    d.caps.msix_vectors = 2048;
    d.caps.msix_bar = 2;
    d.caps.msix_pba_offset = 0;
    d.caps.msix_table_offset = 0x8000;
    dev = new_dev(&d);
    uint8_t msi = find_cap(dev, PCI_CAP_ID_MSI);
    wr(dev, msi + PCI_MSI_MASK_64, 4, 0xffffffff);
    ck_assert_uint_eq(rd(dev, msi + PCI_MSI_MASK_64, 4), 0xffffffff);
    wr(dev, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_0, 4), 0xfffffff0);
    wr(dev, PCI_BASE_ADDRESS_1, 4, 0xffffffff);
    ck_assert_uint_eq(rd(dev, PCI_BASE_ADDRESS_1, 4), 0xfffffffd);
    uint8_t mx = find_cap(dev, PCI_CAP_ID_MSIX);
    ck_assert_uint_eq(rd(dev, mx + PCI_MSIX_FLAGS, 2), 2047);
    wr(dev, mx + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
    bar_wr(dev, 2, 0x8000 + 2047 * 16, 0xfee00000); /* the client drives the table */
    ck_assert_int_eq(pci_raise(dev, 2047), 0);
    ck_assert_uint_eq(bar_rd(dev, 2, 31 * 8 + 4), 1u << 31);
    bar_wr(dev, 2, 0x8000 + 2047 * 16 + 12, 0);
    assert_fired_once(VFIO_PCI_MSIX_IRQ_INDEX, 2047);
    pci_dev_free(dev);

    /* A NULL error pointer is allowed. */
    d.bars[0].size = 17;
    dev = NULL;
    ck_assert_int_eq(pci_dev_new(&d, NULL, NULL, &dev, NULL), -EINVAL);
    ck_assert_ptr_null(dev);
}
END_TEST

static Suite *pci_suite(void)
{
    Suite *s = suite_create("pci");
    TCase *tc = tcase_create("config");

    tcase_add_test(tc, test_identity);
    tcase_add_test(tc, test_bar_sizing);
    tcase_add_test(tc, test_command_status);
    tcase_add_test(tc, test_intx);
    tcase_add_test(tc, test_cap_chain);
    tcase_add_test(tc, test_pm);
    tcase_add_test(tc, test_msix);
    tcase_add_test(tc, test_msix_table_never_written);
    tcase_add_test(tc, test_msi);
    tcase_add_test(tc, test_pcie);
    tcase_add_test(tc, test_access_bounds);
    tcase_add_test(tc, test_reset);
    tcase_add_test(tc, test_irq_counts);
    tcase_add_loop_test(tc, test_bad_desc, 0, (int)(sizeof(bad_descs) / sizeof(bad_descs[0])));
    tcase_add_test(tc, test_good_edges);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pci_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
