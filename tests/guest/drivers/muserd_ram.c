// SPDX-License-Identifier: GPL-2.0
/*
 * muserd_ram: a Linux driver for muserd's example "ram" device (register
 * layout: muserd-plugin(7), RAM DEVICE), used by the guest tests to check
 * the mapped RAM BAR and the device's DMA engine, byte for byte, in both
 * directions. Whether guest memory reaches muserd as shared file descriptors
 * or only over the socket (DMA_READ/DMA_WRITE messages) is the host's
 * choice; the guest sees the same device either way.
 *
 * Checks (format in muserd_test.h):
 *   ram-regs      ID, VERSION and SIZE read right; SCRATCH keeps what we wrote
 *   ram-bar       patterns written through the BAR mapping read back, at
 *                 byte, word and bulk granularity
 *   ram-dma-LEN   guest -> RAM and RAM -> guest copies of LEN bytes from an
 *                 unaligned address and offset are exact, and touch nothing
 *                 outside the range
 *   ram-dma-errors  a range past SIZE fails with EINVAL, unmapped guest
 *                 memory with ENOENT
 *   ram-dma-irq   a transfer's completion raises the MSI-X vector
 *
 * Offsets from RAM_GUEST_AREA on are left to /init and the host.
 */
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/slab.h>

#include "muserd_test.h"

#define RAM_VENDOR_ID 0x4d55
#define RAM_DEVICE_ID 0x0002

#define RAM_REGS_BAR 0
#define RAM_MEM_BAR  2

#define RAM_REG_ID	   0x00
#define RAM_REG_VERSION	   0x04
#define RAM_REG_SIZE	   0x08
#define RAM_REG_SCRATCH	   0x10
#define RAM_REG_DMA_ADDR   0x20
#define RAM_REG_DMA_OFFSET 0x28
#define RAM_REG_DMA_LEN	   0x30
#define RAM_REG_DMA_CTRL   0x34
#define RAM_REG_DMA_STATUS 0x38

#define RAM_ID_MAGIC	      0x314d4152 /* "RAM1" */
#define RAM_DMA_GO	      BIT(0)
#define RAM_DMA_TO_GUEST      BIT(1)
#define RAM_DMA_BUSY	      BIT(0)
#define RAM_DMA_DONE	      BIT(1)
#define RAM_DMA_ERROR	      BIT(2)
#define RAM_DMA_ERRNO(status) (((status) >> 8) & 0xff)

/* The DMA checks use [0, RAM_GUEST_AREA) of the RAM; the rest is /init's. */
#define RAM_GUEST_AREA 0xd0000
#define DMA_BUF_SIZE   (128 * 1024)
#define GUARD	       16
/* Transfers over the socket go in chunks; under TCG give them time. */
#define DMA_TIMEOUT_MS 20000

struct mram {
	struct pci_dev *pdev;
	void __iomem *regs;
	void __iomem *mem;
	u64 size;
	u8 *buf;
	dma_addr_t buf_dma;
	u8 *expect;
	struct completion done;
	atomic_t irqs;
};

static irqreturn_t mram_irq(int irq, void *data)
{
	struct mram *m = data;

	atomic_inc(&m->irqs);
	complete(&m->done);
	return IRQ_HANDLED;
}

static u8 pattern(unsigned int seed, size_t i)
{
	return (u8)(i * 131 + seed * 7 + (i >> 8) + 1);
}

/* Run one transfer and wait for it by polling DMA_STATUS (the interrupt is
 * checked on its own). Returns 0, the device's -errno, or -ETIMEDOUT. */
static int mram_dma(struct mram *m, dma_addr_t addr, u64 offset, u32 len, bool to_guest,
		    u32 *status)
{
	unsigned long end = jiffies + msecs_to_jiffies(DMA_TIMEOUT_MS);

	iowrite32(RAM_DMA_DONE | RAM_DMA_ERROR, m->regs + RAM_REG_DMA_STATUS);
	writeq(addr, m->regs + RAM_REG_DMA_ADDR);
	writeq(offset, m->regs + RAM_REG_DMA_OFFSET);
	iowrite32(len, m->regs + RAM_REG_DMA_LEN);
	iowrite32(RAM_DMA_GO | (to_guest ? RAM_DMA_TO_GUEST : 0), m->regs + RAM_REG_DMA_CTRL);
	for (;;) {
		*status = ioread32(m->regs + RAM_REG_DMA_STATUS);
		if (!(*status & RAM_DMA_BUSY))
			break;
		if (time_after(jiffies, end))
			return -ETIMEDOUT;
		usleep_range(200, 1000);
	}
	if (*status & RAM_DMA_ERROR)
		return -(int)RAM_DMA_ERRNO(*status);
	return (*status & RAM_DMA_DONE) ? 0 : -EPROTO;
}

/* First byte where got differs from want, or -1. */
static long first_diff(const u8 *got, const u8 *want, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (got[i] != want[i])
			return i;
	return -1;
}

/*
 * One size both ways. The RAM range gets GUARD bytes of 0xee either side and
 * the guest buffer GUARD bytes of 0xcc: a copy one byte too long or too short
 * shows.
 */
static void mram_check_dma_len(struct mram *m, u32 len, unsigned int addr_skew, u64 offset)
{
	size_t span = len + 2 * GUARD;
	u8 *host = m->buf + addr_skew; /* GUARD bytes before the transfer */
	dma_addr_t dma = m->buf_dma + addr_skew + GUARD;
	char check[32], why[200] = "";
	u32 status = 0;
	long at;
	size_t i;
	int r;

	snprintf(check, sizeof(check), "ram-dma-%u", len);

	/* guest -> RAM */
	for (i = 0; i < span; i++)
		host[i] = i < GUARD || i >= GUARD + len ? 0xcc : pattern(len, i - GUARD);
	memset_io(m->mem + offset - GUARD, 0xee, span);
	r = mram_dma(m, dma, offset, len, false, &status);
	if (r) {
		snprintf(why, sizeof(why), "to RAM at %#llx: %d (DMA_STATUS %#x)", offset, r,
			 status);
		goto out;
	}
	memcpy_fromio(m->expect, m->mem + offset - GUARD, span);
	for (i = 0; i < span; i++)
		if (m->expect[i] !=
		    (i < GUARD || i >= GUARD + len ? 0xee : pattern(len, i - GUARD)))
			break;
	if (i < span) {
		snprintf(why, sizeof(why), "to RAM: byte %ld of the range reads %#x",
			 (long)i - GUARD, m->expect[i]);
		goto out;
	}

	/* RAM -> guest, a different pattern */
	for (i = 0; i < span; i++)
		m->expect[i] = i < GUARD || i >= GUARD + len ? 0xcc : pattern(len + 1, i - GUARD);
	memcpy_toio(m->mem + offset, m->expect + GUARD, len);
	memset(host, 0xcc, span);
	r = mram_dma(m, dma, offset, len, true, &status);
	if (r) {
		snprintf(why, sizeof(why), "to guest from %#llx: %d (DMA_STATUS %#x)", offset, r,
			 status);
		goto out;
	}
	at = first_diff(host, m->expect, span);
	if (at >= 0)
		snprintf(why, sizeof(why), "to guest: byte %ld of the range is %#x, want %#x",
			 at - GUARD, host[at], m->expect[at]);
out:
	mt_verdict(check, why);
}

static void mram_check_regs(struct mram *m)
{
	char why[160] = "";
	u32 id = ioread32(m->regs + RAM_REG_ID), ver = ioread32(m->regs + RAM_REG_VERSION);
	u64 size = readq(m->regs + RAM_REG_SIZE);

	iowrite32(0x5ca1ab1e, m->regs + RAM_REG_SCRATCH);
	if (id != RAM_ID_MAGIC || ver != 1)
		snprintf(why, sizeof(why), "ID %#x VERSION %u, want %#x 1", id, ver, RAM_ID_MAGIC);
	else if (size != pci_resource_len(m->pdev, RAM_MEM_BAR))
		snprintf(why, sizeof(why), "SIZE %llu but BAR2 is %llu bytes", size,
			 (u64)pci_resource_len(m->pdev, RAM_MEM_BAR));
	else if (ioread32(m->regs + RAM_REG_SCRATCH) != 0x5ca1ab1e)
		snprintf(why, sizeof(why), "SCRATCH reads %#x after writing 0x5ca1ab1e",
			 ioread32(m->regs + RAM_REG_SCRATCH));
	m->size = size;
	MT_INFO("ram %s size=%llu", pci_name(m->pdev), size);
	mt_verdict("ram-regs", why);
}

static void mram_check_bar(struct mram *m)
{
	const size_t len = 64 * 1024;
	char why[160] = "";
	size_t i;
	long at;

	/* Byte and 32-bit accesses at odd places, then a bulk copy. */
	for (i = 0; i < 64; i++)
		iowrite8(pattern(3, i), m->mem + 1 + i);
	for (i = 0; i < 64 && !why[0]; i++)
		if (ioread8(m->mem + 1 + i) != pattern(3, i))
			snprintf(why, sizeof(why), "byte write at %zu reads %#x", 1 + i,
				 ioread8(m->mem + 1 + i));
	iowrite32(0xdeadbeef, m->mem + 0x1004);
	if (!why[0] && ioread32(m->mem + 0x1004) != 0xdeadbeef)
		snprintf(why, sizeof(why), "32-bit write at 0x1004 reads %#x",
			 ioread32(m->mem + 0x1004));
	for (i = 0; i < len; i++)
		m->buf[i] = pattern(9, i);
	memcpy_toio(m->mem + 0x10000, m->buf, len);
	memcpy_fromio(m->expect, m->mem + 0x10000, len);
	at = first_diff(m->expect, m->buf, len);
	if (!why[0] && at >= 0)
		snprintf(why, sizeof(why), "bulk write at 0x10000: byte %ld reads %#x", at,
			 m->expect[at]);
	mt_verdict("ram-bar", why);
}

static void mram_check_dma_errors(struct mram *m)
{
	char why[160] = "";
	u32 status = 0;
	int r;

	r = mram_dma(m, m->buf_dma, m->size - 8, 16, false, &status);
	if (r != -EINVAL)
		snprintf(why, sizeof(why), "past SIZE: %d (DMA_STATUS %#x), want -EINVAL", r,
			 status);
	/* Far above the guest's RAM: not mapped for DMA. */
	if (!why[0]) {
		r = mram_dma(m, 1ULL << 46, 0, 16, false, &status);
		if (r != -ENOENT)
			snprintf(why, sizeof(why),
				 "unmapped guest address: %d (DMA_STATUS %#x), want -ENOENT", r,
				 status);
	}
	if (!why[0]) {
		r = mram_dma(m, m->buf_dma, 0, 0, false, &status);
		if (r)
			snprintf(why, sizeof(why), "zero length: %d (DMA_STATUS %#x), want DONE", r,
				 status);
	}
	mt_verdict("ram-dma-errors", why);
}

static void mram_check_irq(struct mram *m)
{
	char why[160] = "";
	int r = pci_alloc_irq_vectors(m->pdev, 1, 1, PCI_IRQ_MSIX);
	u32 status = 0;

	if (r < 0) {
		MT_FAIL("ram-dma-irq", "no MSI-X vector: %d", r);
		return;
	}
	r = devm_request_irq(&m->pdev->dev, pci_irq_vector(m->pdev, 0), mram_irq, 0, "muserd_ram",
			     m);
	if (r < 0) {
		MT_FAIL("ram-dma-irq", "request_irq: %d", r);
		return;
	}
	reinit_completion(&m->done);
	r = mram_dma(m, m->buf_dma, 0, 4096, false, &status);
	if (r)
		snprintf(why, sizeof(why), "transfer failed: %d", r);
	else if (!wait_for_completion_timeout(&m->done, msecs_to_jiffies(5000)))
		snprintf(why, sizeof(why), "no MSI-X interrupt within 5 s of DONE (DMA_STATUS %#x)",
			 ioread32(m->regs + RAM_REG_DMA_STATUS));
	iowrite32(RAM_DMA_DONE | RAM_DMA_ERROR, m->regs + RAM_REG_DMA_STATUS);
	msleep(20);
	MT_INFO("ram %s dma-irqs=%d", pci_name(m->pdev), atomic_read(&m->irqs));
	if (!why[0] && atomic_read(&m->irqs) != 1)
		snprintf(why, sizeof(why), "%d interrupts for one transfer", atomic_read(&m->irqs));
	mt_verdict("ram-dma-irq", why);
}

static int mram_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct mram *m;
	int r;

	m = devm_kzalloc(&pdev->dev, sizeof(*m), GFP_KERNEL);
	if (!m)
		return -ENOMEM;
	m->pdev = pdev;
	init_completion(&m->done);
	r = pcim_enable_device(pdev);
	if (r)
		return r;
	r = pcim_iomap_regions(pdev, BIT(RAM_REGS_BAR) | BIT(RAM_MEM_BAR), "muserd_ram");
	if (r)
		return r;
	m->regs = pcim_iomap_table(pdev)[RAM_REGS_BAR];
	m->mem = pcim_iomap_table(pdev)[RAM_MEM_BAR];
	/* The DMA engine reads and writes guest memory: bus mastering. */
	pci_set_master(pdev);
	r = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (r)
		return r;
	m->buf = dmam_alloc_coherent(&pdev->dev, DMA_BUF_SIZE, &m->buf_dma, GFP_KERNEL);
	m->expect = devm_kmalloc(&pdev->dev, DMA_BUF_SIZE, GFP_KERNEL);
	if (!m->buf || !m->expect)
		return -ENOMEM;

	mram_check_regs(m);
	if (m->size < RAM_GUEST_AREA + 0x10000) {
		MT_FAIL("ram-probe", "RAM of %llu bytes is too small for the checks", m->size);
		return 0;
	}
	mram_check_bar(m);
	/* 1 byte; a page; odd sizes at odd addresses and offsets; more than a
	 * 64 KiB chunk. */
	mram_check_dma_len(m, 1, 0, 0x100);
	mram_check_dma_len(m, 4096, 0, 0x1000);
	mram_check_dma_len(m, 4099, 3, 0x3005);
	mram_check_dma_len(m, 65536 + 4097, 5, 0x20003);
	mram_check_dma_errors(m);
	mram_check_irq(m);
	return 0;
}

static const struct pci_device_id mram_ids[] = { { PCI_DEVICE(RAM_VENDOR_ID, RAM_DEVICE_ID) }, {} };
MODULE_DEVICE_TABLE(pci, mram_ids);

static struct pci_driver mram_driver = {
	.name = "muserd_ram",
	.id_table = mram_ids,
	.probe = mram_probe,
};
module_pci_driver(mram_driver);

MODULE_DESCRIPTION("Driver and DMA checks for muserd's example ram device");
MODULE_LICENSE("GPL");
