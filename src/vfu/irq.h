/* SPDX-License-Identifier: MIT */
/*
 * Interrupt state of one device as the client configured it with SET_IRQS:
 * per IRQ index (INTx, MSI, MSI-X, ERR, REQ: VFIO_PCI_*_IRQ_INDEX) and
 * sub-index, the trigger eventfd, the mask bit set by the client's
 * MASK/UNMASK actions, a pending bit, and optional mask/unmask notification
 * eventfds. The device model (pci/) decides which index and vector to raise;
 * this layer only delivers.
 *
 * Threads: vfu_irqs_trigger() may be called from any thread (raises from a
 * plugin's threads, see irq-routes.h); everything else runs on the device's
 * thread. A mutex per device serialises them, so a trigger that follows a
 * MASK sees the mask.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <linux/vfio.h>

#include "vfu/codec.h"

struct vfu_irqs;

/* counts[i]: number of sub-indexes of IRQ index i (0: the device lacks it). */
int vfu_irqs_new(const uint32_t counts[VFIO_PCI_NUM_IRQS], struct vfu_irqs **ret);
void vfu_irqs_free(struct vfu_irqs *irqs);

uint32_t vfu_irqs_count(const struct vfu_irqs *irqs, uint32_t index);
/* VFIO_IRQ_INFO_* flags for GET_IRQ_INFO: EVENTFD and MASKABLE for all,
 * AUTOMASKED for INTx, NORESIZE for MSI. */
uint32_t vfu_irqs_info_flags(const struct vfu_irqs *irqs, uint32_t index);

/*
 * Apply a decoded SET_IRQS. Eventfds it keeps are taken from msg->fds (set to
 * -1 there). Returns -EINVAL for an index or range the device lacks, or a
 * DATA/ACTION combination VFIO does not define.
 */
int vfu_irqs_set(struct vfu_irqs *irqs, const struct vfu_irq_set_req *req, struct vfu_msg *msg);

/*
 * Deliver interrupt index/sub: write 1 to its eventfd, or, while the client
 * masked it (or INTx is automasked after a trigger) or no eventfd is set,
 * remember it as pending and deliver on UNMASK / when an eventfd arrives.
 * Returns -EINVAL for an index or sub it does not have.
 */
int vfu_irqs_trigger(struct vfu_irqs *irqs, uint32_t index, uint32_t sub);

/*
 * Forget a pending index/sub: the device deasserted a level-triggered
 * interrupt (INTx) before the client unmasked it, so the unmask must not
 * deliver it. Any thread. -EINVAL for an index or sub it does not have.
 */
int vfu_irqs_withdraw(struct vfu_irqs *irqs, uint32_t index, uint32_t sub);

/*
 * Unmask index/sub as the client's ACTION_UNMASK would, delivering a pending
 * interrupt. The loop calls it when the client's DATA_EVENTFD|ACTION_UNMASK
 * eventfd fires (VFIO's INTx resample: the guest's EOI unmasks INTx).
 * Returns -EINVAL for an index or sub it does not have.
 */
int vfu_irqs_unmask(struct vfu_irqs *irqs, uint32_t index, uint32_t sub);

/*
 * The eventfd the client gave for index/sub with DATA_EVENTFD and `action`
 * (VFIO_IRQ_SET_ACTION_MASK, _UNMASK or _TRIGGER), or -1 when none; still
 * owned by irqs. -EINVAL for an unknown index, sub or action.
 */
int vfu_irqs_action_fd(const struct vfu_irqs *irqs, uint32_t index, uint32_t sub, uint32_t action);

/* Is sub of index wired to an eventfd? */
bool vfu_irqs_has_eventfd(const struct vfu_irqs *irqs, uint32_t index, uint32_t sub);

/* Client gone: close every eventfd, clear masks and pending bits. */
void vfu_irqs_reset(struct vfu_irqs *irqs);
