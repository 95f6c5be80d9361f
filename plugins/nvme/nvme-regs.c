/* SPDX-License-Identifier: MIT */
/*
 * BAR0 of the nvme device: the controller registers in the first page
 * (trapped: every access comes through bar_access), the doorbells in the
 * second (a memfd the client may map; a client that does not map it writes
 * them with REGION_WRITE and lands here). Controller enable, disable,
 * shutdown and the resets.
 */
#include <string.h>

#include <muserd/regs.h>

#include "nvme-dev.h"

static const uint64_t nvme_cap = NVME_CAP_MQES(NVME_MAX_ENTRIES - 1) | NVME_CAP_CQR |
                                 NVME_CAP_TO(NVME_CAP_TO_UNITS) | NVME_CAP_NSSRS |
                                 NVME_CAP_CSS_NVM; /* MPSMIN = MPSMAX = 0: 4 KiB pages */

static void features_default(struct nvme_dev *d)
{
    d->feat = (struct nvme_features){
        .temp_thresh = 0x157, /* 343 K, the composite temperature over-threshold */
        .volatile_wc = 1,
        .nsqa = (uint16_t)(d->nr_queues - 1),
        .ncqa = (uint16_t)(d->nr_queues - 1),
    };
}

void nvme_ctrl_fatal(struct nvme_dev *d, const char *why)
{
    if (!d->fatal_logged)
        d->svc->log(d->host, MUSERD_LOG_WARNING, "nvme: controller fatal status: %s", why);
    d->fatal_logged = true;
    d->csts |= NVME_CSTS_CFS;
}

void nvme_ctrl_reset(struct nvme_dev *d)
{
    /* Commands on the backing file in flight: dropped when they come back. */
    for (uint16_t q = 0; q <= NVME_MAX_QUEUES; q++)
        d->sq_gen[q]++;
    memset(d->sq, 0, sizeof(d->sq));
    memset(d->cq, 0, sizeof(d->cq));
    d->nr_aers = 0;
    d->nr_events = 0;
    d->masked_types = 0;
    nvme_shadow_clear(d);
    /* The doorbells of the queues just gone read 0 again, as after power-on. */
    memset((void *)d->db, 0, NVME_DOORBELL_SIZE);
    d->csts &= NVME_CSTS_NSSRO;
    d->fatal_logged = false;
    features_default(d);
    if (d->irq_asserted)
        d->svc->irq_lower(d->host);
    d->irq_asserted = false;
}

void nvme_ctrl_power_on(struct nvme_dev *d)
{
    nvme_ctrl_reset(d);
    d->cc = 0;
    d->csts = 0;
    d->aqa = 0;
    d->asq = 0;
    d->acq = 0;
    d->intms = 0;
}

/* CC.EN 0 -> 1: the admin queues as AQA/ASQ/ACQ say, or fatal status for
 * a setting the controller cannot run with. */
static void ctrl_enable(struct nvme_dev *d)
{
    uint32_t sqs = NVME_AQA_ASQS(d->aqa) + 1, cqs = NVME_AQA_ACQS(d->aqa) + 1;

    if (NVME_CC_CSS(d->cc) != 0 || NVME_CC_MPS(d->cc) != 0 || NVME_CC_AMS(d->cc) != 0) {
        nvme_ctrl_fatal(d, "CC asks for a command set, page size or arbitration not offered");
        return;
    }
    if (sqs < 2 || cqs < 2) {
        nvme_ctrl_fatal(d, "an admin queue of fewer than 2 entries");
        return;
    }
    d->sq[0] = (struct nvme_sq){.valid = true, .addr = d->asq, .size = sqs, .bad_tail = UINT32_MAX};
    d->cq[0] = (struct nvme_cq){.valid = true,
                                .ien = true,
                                .phase = true,
                                .addr = d->acq,
                                .size = cqs,
                                .nr_sqs = 1,
                                .bad_head = UINT32_MAX};
    d->csts = (d->csts & NVME_CSTS_NSSRO) | NVME_CSTS_RDY;
    nvme_kick(d);
}

static void cc_write(struct nvme_dev *d, uint32_t val)
{
    uint32_t old = d->cc;

    d->cc = val & NVME_CC_WRITABLE;
    if ((old & NVME_CC_EN) && !(d->cc & NVME_CC_EN)) {
        nvme_ctrl_reset(d);
        return;
    }
    if (!(old & NVME_CC_EN) && (d->cc & NVME_CC_EN) && !(d->csts & NVME_CSTS_CFS))
        ctrl_enable(d);
    /* A RAM namespace has nothing in flight past a poll round: its shutdown
     * is complete as soon as it is asked for. A backing file's waits for
     * the commands in flight and an fdatasync (nvme-io-file.c). */
    if (NVME_CC_SHN(d->cc) && !NVME_CC_SHN(old)) {
        d->csts &= ~NVME_CSTS_SHST_MASK;
        d->csts |= d->aio ? NVME_CSTS_SHST_BUSY : NVME_CSTS_SHST_DONE;
        nvme_file_shutdown(d);
    }
}

static uint32_t reg_read(void *dev, uint64_t offset)
{
    struct nvme_dev *d = dev;

    switch (offset) {
    case NVME_REG_CAP:
        return (uint32_t)nvme_cap;
    case NVME_REG_CAP + 4:
        return (uint32_t)(nvme_cap >> 32);
    case NVME_REG_VS:
        return NVME_VS_1_4;
    case NVME_REG_INTMS:
    case NVME_REG_INTMC:
        return d->intms;
    case NVME_REG_CC:
        return d->cc;
    case NVME_REG_CSTS:
        return d->csts;
    case NVME_REG_AQA:
        return d->aqa;
    case NVME_REG_ASQ:
        return (uint32_t)d->asq;
    case NVME_REG_ASQ + 4:
        return (uint32_t)(d->asq >> 32);
    case NVME_REG_ACQ:
        return (uint32_t)d->acq;
    case NVME_REG_ACQ + 4:
        return (uint32_t)(d->acq >> 32);
    default:
        return 0; /* NSSR reads 0; CMB and the rest are not implemented */
    }
}

static void reg_write(void *dev, uint64_t offset, uint32_t val)
{
    struct nvme_dev *d = dev;

    switch (offset) {
    case NVME_REG_INTMS:
        d->intms |= val;
        break;
    case NVME_REG_INTMC:
        d->intms &= ~val;
        nvme_irq_flush(d);
        break;
    case NVME_REG_CC:
        cc_write(d, val);
        break;
    case NVME_REG_CSTS:
        if (val & NVME_CSTS_NSSRO)
            d->csts &= ~NVME_CSTS_NSSRO;
        break;
    case NVME_REG_NSSR:
        if (val == NVME_NSSR_MAGIC) {
            nvme_ctrl_reset(d);
            d->cc = 0;
            d->csts |= NVME_CSTS_NSSRO;
        }
        break;
    case NVME_REG_AQA:
        d->aqa = val & NVME_AQA_WRITABLE;
        break;
    /* Bits 11:0 of the admin queue bases are reserved: they are page aligned. */
    case NVME_REG_ASQ:
    case NVME_REG_ASQ + 4:
        d->asq = muserd_reg64_set_half(d->asq, offset != NVME_REG_ASQ, val) & ~0xfffull;
        break;
    case NVME_REG_ACQ:
    case NVME_REG_ACQ + 4:
        d->acq = muserd_reg64_set_half(d->acq, offset != NVME_REG_ACQ, val) & ~0xfffull;
        break;
    default:
        break;
    }
}

int nvme_bar0_access(struct nvme_dev *d, uint64_t offset, void *buf, uint32_t len, bool is_write)
{
    if (offset < NVME_DOORBELL_BASE)
        return muserd_regs32_access(d, NVME_REGS_SIZE, offset, buf, len, is_write, reg_read,
                                    reg_write);
    /* The host keeps accesses inside the BAR, so offset < 0x2000 here. */
    if (len != 4 || offset % 4 != 0) {
        if (!is_write)
            memset(buf, 0, len);
        return 0;
    }
    uint32_t index = (uint32_t)(offset - NVME_DOORBELL_BASE) / 4, v;
    if (is_write) {
        memcpy(&v, buf, 4);
        nvme_doorbell_write(d, index, le32toh(v));
    } else {
        v = htole32(__atomic_load_n(&d->db[index], __ATOMIC_RELAXED));
        memcpy(buf, &v, 4);
    }
    return 0;
}
