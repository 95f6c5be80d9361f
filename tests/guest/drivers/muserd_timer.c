// SPDX-License-Identifier: GPL-2.0
/*
 * muserd_timer: a Linux driver for muserd's example "timer" device (register
 * layout: muserd-plugin(7), TIMER DEVICE), written as the smallest complete
 * pci_driver a device author can start from, and used by the guest tests to
 * check interrupt delivery end to end: device -> muserd -> vfio-user ->
 * QEMU -> guest.
 *
 * At probe it runs its checks and reports them on the kernel log in the
 * format of muserd_test.h, then stays bound (rmmod unbinds):
 *
 *   timer-<mode>-deliver  every vector fires `rounds` one-shot expirations;
 *                         each arrives exactly once, on its own vector, and
 *                         the device's FIRE_COUNT agrees with the guest's count
 *   timer-<mode>-mask     a vector masked in the MSI-X table (or MSI mask bits)
 *                         does not deliver while masked, and the interrupt the
 *                         device raised meanwhile arrives once on unmask
 *                         (PCI: the message is held pending while masked and
 *                         sent when the mask is cleared)
 *
 * The PBA bit read while masked is reported (pba=) but not asserted: QEMU
 * 10.2 under TCG does not tell the server about a mask, it holds the pending
 * interrupt itself, and once a masked vector fired it forwards PBA reads to
 * the device, which never saw the mask and so reads 0. What a driver relies
 * on, delivery after unmask, is asserted.
 *
 * mode=msix (default), msi or intx picks the interrupt kind.
 */
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/irq.h>
#include <linux/module.h>
#include <linux/msi.h>
#include <linux/pci.h>

#include "muserd_test.h"

#define TIMER_VENDOR_ID 0x4d55
#define TIMER_DEVICE_ID 0x0001

/* BAR0 registers, little-endian. */
#define TIMER_REG_ID	     0x00
#define TIMER_REG_VERSION    0x04
#define TIMER_REG_CTRL	     0x08
#define TIMER_REG_STATUS     0x0c
#define TIMER_REG_NOW	     0x10
#define TIMER_REG_DEADLINE   0x18
#define TIMER_REG_INTERVAL   0x20
#define TIMER_REG_VECTOR     0x28
#define TIMER_REG_FIRE_COUNT 0x2c

#define TIMER_ID_MAGIC	   0x524d4954 /* "TIMR" */
#define TIMER_CTRL_ENABLE  BIT(0)
#define TIMER_STATUS_FIRED BIT(0)
#define TIMER_MAX_VECTORS  2
#define TIMER_MSIX_BAR	   1
#define TIMER_MSIX_PBA	   0x800

/* Under TCG on a loaded host one round trip can take tens of ms. */
#define IRQ_TIMEOUT_MS 5000

static char *mode = "msix";
module_param(mode, charp, 0444);
MODULE_PARM_DESC(mode, "interrupt kind: msix (default), msi or intx");

static unsigned int rounds = 32;
module_param(rounds, uint, 0444);
MODULE_PARM_DESC(rounds, "one-shot expirations per vector");

struct mtimer;

struct mtimer_vec {
	struct mtimer *t;
	unsigned int nr;
	int irq;
	atomic_t count;
	struct completion fired;
};

struct mtimer {
	struct pci_dev *pdev;
	void __iomem *regs;
	unsigned int irq_type; /* PCI_IRQ_MSIX, PCI_IRQ_MSI or PCI_IRQ_LEGACY */
	unsigned int nvec;
	struct mtimer_vec vec[TIMER_MAX_VECTORS];
	char check[32];
};

static irqreturn_t mtimer_irq(int irq, void *data)
{
	struct mtimer_vec *v = data;
	void __iomem *regs = v->t->regs;

	/*
	 * INTx may be shared with other devices: claim it only when ours
	 * fired. Acking FIRED deasserts the (level-triggered) line; with
	 * MSI/MSI-X it keeps STATUS tidy for the next round.
	 */
	if (!(ioread32(regs + TIMER_REG_STATUS) & TIMER_STATUS_FIRED) &&
	    v->t->irq_type == PCI_IRQ_LEGACY)
		return IRQ_NONE;
	iowrite32(TIMER_STATUS_FIRED, regs + TIMER_REG_STATUS);
	atomic_inc(&v->count);
	complete(&v->fired);
	return IRQ_HANDLED;
}

/* A one-shot expiry on `vector` delay_ns from now. The timer is disabled
 * while DEADLINE changes so that no intermediate value can fire. */
static void mtimer_arm(struct mtimer *t, unsigned int vector, u64 delay_ns)
{
	iowrite32(0, t->regs + TIMER_REG_CTRL);
	iowrite32(vector, t->regs + TIMER_REG_VECTOR);
	writeq(readq(t->regs + TIMER_REG_NOW) + delay_ns, t->regs + TIMER_REG_DEADLINE);
	iowrite32(TIMER_CTRL_ENABLE, t->regs + TIMER_REG_CTRL);
}

static u32 mtimer_fire_count(struct mtimer *t)
{
	return ioread32(t->regs + TIMER_REG_FIRE_COUNT);
}

/* Every vector, `rounds` times, one expiry at a time: nothing may be lost,
 * duplicated or delivered on another vector. */
static void mtimer_check_delivery(struct mtimer *t)
{
	unsigned int fired_total = 0, got_total = 0, i, n;
	char why[160] = "";

	for (i = 0; i < t->nvec && !why[0]; i++) {
		struct mtimer_vec *v = &t->vec[i];
		u32 before = mtimer_fire_count(t);
		int others[TIMER_MAX_VECTORS], j, fired, got;

		for (j = 0; j < t->nvec; j++)
			others[j] = atomic_read(&t->vec[j].count);
		atomic_set(&v->count, 0);
		for (n = 0; n < rounds; n++) {
			reinit_completion(&v->fired);
			mtimer_arm(t, v->nr, 20000);
			if (!wait_for_completion_timeout(&v->fired,
							 msecs_to_jiffies(IRQ_TIMEOUT_MS))) {
				snprintf(why, sizeof(why),
					 "vector %u round %u: no interrupt in %d ms (device "
					 "FIRE_COUNT %u -> %u, STATUS %#x)",
					 i, n, IRQ_TIMEOUT_MS, before, mtimer_fire_count(t),
					 ioread32(t->regs + TIMER_REG_STATUS));
				break;
			}
		}
		msleep(50); /* a duplicate would arrive about now */
		fired = mtimer_fire_count(t) - before;
		got = atomic_read(&v->count);
		fired_total += fired;
		got_total += got;
		MT_INFO("timer %s %s vector=%u fired=%d got=%d lost=%d", pci_name(t->pdev), mode, i,
			fired, got, fired - got);
		if (!why[0] && got != fired)
			snprintf(why, sizeof(why), "vector %u: device fired %d, guest got %d", i,
				 fired, got);
		for (j = 0; j < t->nvec && !why[0]; j++)
			if (j != i && atomic_read(&t->vec[j].count) != others[j])
				snprintf(why, sizeof(why),
					 "vector %u's expiries also raised vector %d", i, j);
	}
	MT_INFO("timer %s %s vectors=%u fired=%u got=%u lost=%d", pci_name(t->pdev), mode, t->nvec,
		fired_total, got_total, (int)(fired_total - got_total));
	snprintf(t->check, sizeof(t->check), "timer-%s-deliver", mode);
	mt_verdict(t->check, why);
}

/* The pending bit of MSI-X vector nr, as the guest sees the PBA. */
static int mtimer_pba_bit(struct mtimer *t, unsigned int nr)
{
	void __iomem *pba = pci_iomap_range(t->pdev, TIMER_MSIX_BAR, TIMER_MSIX_PBA, 8);
	int bit;

	if (!pba)
		return -1;
	bit = (ioread32(pba) >> nr) & 1;
	pci_iounmap(t->pdev, pba);
	return bit;
}

static void mtimer_check_mask(struct mtimer *t)
{
	struct mtimer_vec *v = &t->vec[t->nvec - 1]; /* the last: not vector 0 only */
	struct irq_data *d = irq_get_irq_data(v->irq);
	char why[160] = "";
	int pending = -1, i;
	u32 before;

	snprintf(t->check, sizeof(t->check), "timer-%s-mask", mode);
	if (t->irq_type == PCI_IRQ_MSI) {
		u16 flags = 0;

		pci_read_config_word(t->pdev, t->pdev->msi_cap + PCI_MSI_FLAGS, &flags);
		if (!(flags & PCI_MSI_FLAGS_MASKBIT)) {
			MT_SKIP(t->check, "the MSI capability has no per-vector mask bits");
			return;
		}
	}

	/*
	 * Mask the vector in the device's table, behind the irq core's back:
	 * disable_irq() would be lazy and only mask once an interrupt came.
	 * QEMU emulates the table and tells the server.
	 */
	atomic_set(&v->count, 0);
	reinit_completion(&v->fired);
	pci_msi_mask_irq(d);
	before = mtimer_fire_count(t);
	mtimer_arm(t, v->nr, 20000);
	for (i = 0; i < IRQ_TIMEOUT_MS / 10 && mtimer_fire_count(t) == before; i++)
		msleep(10);
	if (mtimer_fire_count(t) == before)
		snprintf(why, sizeof(why), "the device did not fire while masked (FIRE_COUNT %u)",
			 before);
	msleep(200); /* time for a wrongly delivered interrupt to arrive */
	if (!why[0] && atomic_read(&v->count))
		snprintf(why, sizeof(why), "vector %u delivered %d interrupt(s) while masked",
			 v->nr, atomic_read(&v->count));
	if (t->irq_type == PCI_IRQ_MSIX)
		pending = mtimer_pba_bit(t, v->nr);
	pci_msi_unmask_irq(d);
	if (!why[0] && !wait_for_completion_timeout(&v->fired, msecs_to_jiffies(IRQ_TIMEOUT_MS)))
		snprintf(why, sizeof(why),
			 "the interrupt raised while masked did not arrive within %d ms of unmask "
			 "(PBA bit %d)",
			 IRQ_TIMEOUT_MS, pending);
	msleep(50);
	if (!why[0] && atomic_read(&v->count) != 1)
		snprintf(why, sizeof(why), "unmask delivered %d interrupts, want 1",
			 atomic_read(&v->count));
	MT_INFO("timer %s %s mask vector=%u pba=%d after-unmask=%d", pci_name(t->pdev), mode, v->nr,
		pending, atomic_read(&v->count));
	mt_verdict(t->check, why);
}

static int mtimer_setup_irqs(struct mtimer *t)
{
	struct pci_dev *pdev = t->pdev;
	int nvec, i, r;

	if (!strcmp(mode, "msix")) {
		t->irq_type = PCI_IRQ_MSIX;
		nvec = pci_msix_vec_count(pdev);
	} else if (!strcmp(mode, "msi")) {
		t->irq_type = PCI_IRQ_MSI;
		nvec = 1; /* the timer's MSI has one vector */
	} else if (!strcmp(mode, "intx")) {
		t->irq_type = PCI_IRQ_LEGACY;
		nvec = 1;
	} else {
		return -EINVAL;
	}
	if (nvec < 1 || nvec > TIMER_MAX_VECTORS)
		return nvec < 0 ? nvec : -ERANGE;
	/* Exactly the kind asked for: a fallback would test something else. */
	r = pci_alloc_irq_vectors(pdev, nvec, nvec, t->irq_type);
	if (r < 0)
		return r;
	t->nvec = nvec;
	for (i = 0; i < nvec; i++) {
		struct mtimer_vec *v = &t->vec[i];

		v->t = t;
		v->nr = i;
		v->irq = pci_irq_vector(pdev, i);
		init_completion(&v->fired);
		r = devm_request_irq(&pdev->dev, v->irq, mtimer_irq,
				     t->irq_type == PCI_IRQ_LEGACY ? IRQF_SHARED : 0,
				     "muserd_timer", v);
		if (r < 0)
			return r;
	}
	return 0;
}

static int mtimer_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct mtimer *t;
	u32 magic;
	int r;

	t = devm_kzalloc(&pdev->dev, sizeof(*t), GFP_KERNEL);
	if (!t)
		return -ENOMEM;
	t->pdev = pdev;
	pci_set_drvdata(pdev, t);

	r = pcim_enable_device(pdev);
	if (r)
		return r;
	r = pcim_iomap_regions(pdev, BIT(0), "muserd_timer");
	if (r)
		return r;
	t->regs = pcim_iomap_table(pdev)[0];
	/* MSI and MSI-X are memory writes by the device: they need bus mastering. */
	pci_set_master(pdev);

	magic = ioread32(t->regs + TIMER_REG_ID);
	if (magic != TIMER_ID_MAGIC) {
		MT_FAIL("timer-probe", "%s: ID reads %#x, want %#x", pci_name(pdev), magic,
			TIMER_ID_MAGIC);
		return -ENODEV;
	}
	/* Start from a quiet device: a previous user may have left it armed. */
	iowrite32(0, t->regs + TIMER_REG_CTRL);
	iowrite32(TIMER_STATUS_FIRED, t->regs + TIMER_REG_STATUS);

	r = mtimer_setup_irqs(t);
	if (r < 0) {
		MT_FAIL("timer-probe", "%s: cannot set up %s interrupts: %d", pci_name(pdev), mode,
			r);
		return r;
	}
	MT_INFO("timer %s mode=%s vectors=%u version=%u", pci_name(pdev), mode, t->nvec,
		ioread32(t->regs + TIMER_REG_VERSION));

	mtimer_check_delivery(t);
	if (t->irq_type != PCI_IRQ_LEGACY)
		mtimer_check_mask(t);
	MT_INFO("timer %s fire_count=%u", pci_name(pdev), mtimer_fire_count(t));
	return 0;
}

static void mtimer_remove(struct pci_dev *pdev)
{
	struct mtimer *t = pci_get_drvdata(pdev);

	/* Quiet the device before devres frees the vectors it could raise. */
	iowrite32(0, t->regs + TIMER_REG_CTRL);
}

static const struct pci_device_id mtimer_ids[] = { { PCI_DEVICE(TIMER_VENDOR_ID, TIMER_DEVICE_ID) },
						   {} };
MODULE_DEVICE_TABLE(pci, mtimer_ids);

static struct pci_driver mtimer_driver = {
	.name = "muserd_timer",
	.id_table = mtimer_ids,
	.probe = mtimer_probe,
	.remove = mtimer_remove,
};
module_pci_driver(mtimer_driver);

MODULE_DESCRIPTION("Driver and interrupt checks for muserd's example timer device");
MODULE_LICENSE("GPL");
