/* SPDX-License-Identifier: MIT */
/*
 * Admin commands: queue creation and deletion with the checks NVMe 1.4
 * section 5 asks for, Get/Set Features, Get Log Page, Abort and
 * Asynchronous Event Request. Identify is in nvme-identify.c, Doorbell
 * Buffer Config in nvme-shadow.c.
 */
#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "nvme-dev.h"

/* Create I/O CQ and SQ: CDW10 QID 15:0, QSIZE 31:16 (0's based); CDW11 PC bit 0. */
#define QID(cmd)   (le32toh((cmd)->cdw10) & 0xffff)
#define QSIZE(cmd) ((le32toh((cmd)->cdw10) >> 16) + 1)
#define CDW11_PC   (1u << 0)
#define CQ_IEN     (1u << 1)

static uint16_t queue_base_check(const struct nvme_sqe *cmd, uint32_t qsize)
{
    uint32_t cdw11 = le32toh(cmd->cdw11);

    if (qsize < 2 || qsize > NVME_MAX_ENTRIES)
        return NVME_SC_QUEUE_SIZE;
    /* CAP.CQR: queues must be physically contiguous. */
    if (!(cdw11 & CDW11_PC))
        return NVME_SC_INVALID_FIELD;
    if (le64toh(cmd->prp1) & (NVME_PAGE_SIZE - 1))
        return NVME_SC_PRP_OFFSET_INVALID;
    return NVME_SC_SUCCESS;
}

static uint16_t create_cq(struct nvme_dev *d, const struct nvme_sqe *cmd)
{
    uint32_t qid = QID(cmd), qsize = QSIZE(cmd), cdw11 = le32toh(cmd->cdw11);
    uint32_t iv = cdw11 >> 16;

    if (qid == 0 || qid > (uint32_t)d->feat.ncqa + 1 || d->cq[qid].valid)
        return NVME_SC_QID_INVALID;
    uint16_t sc = queue_base_check(cmd, qsize);
    if (sc)
        return sc;
    if (NVME_CC_IOCQES(d->cc) != NVME_CQES)
        return NVME_SC_INVALID_FIELD;
    /* One MSI-X vector per queue and one for the admin queue. */
    if ((cdw11 & CQ_IEN) && iv > d->nr_queues)
        return NVME_SC_INVALID_VECTOR;
    d->cq[qid] = (struct nvme_cq){
        .valid = true,
        .ien = cdw11 & CQ_IEN,
        .phase = true,
        .iv = (cdw11 & CQ_IEN) ? (uint16_t)iv : 0, /* unused without interrupts */
        .addr = le64toh(cmd->prp1),
        .size = qsize,
        .bad_head = UINT32_MAX,
    };
    nvme_shadow_queue_new(d, 2 * qid + 1);
    return NVME_SC_SUCCESS;
}

static uint16_t create_sq(struct nvme_dev *d, const struct nvme_sqe *cmd)
{
    uint32_t qid = QID(cmd), qsize = QSIZE(cmd), cqid = le32toh(cmd->cdw11) >> 16;

    if (qid == 0 || qid > (uint32_t)d->feat.nsqa + 1 || d->sq[qid].valid)
        return NVME_SC_QID_INVALID;
    uint16_t sc = queue_base_check(cmd, qsize);
    if (sc)
        return sc;
    if (NVME_CC_IOSQES(d->cc) != NVME_SQES)
        return NVME_SC_INVALID_FIELD;
    if (cqid == 0 || cqid > d->nr_queues || !d->cq[cqid].valid)
        return NVME_SC_CQ_INVALID;
    d->sq[qid] = (struct nvme_sq){
        .valid = true,
        .addr = le64toh(cmd->prp1),
        .size = qsize,
        .cqid = (uint16_t)cqid,
        .bad_tail = UINT32_MAX,
    };
    d->cq[cqid].nr_sqs++;
    /* A tail left from an earlier queue of this id means nothing now. */
    __atomic_store_n(&d->db[2 * qid], 0, __ATOMIC_RELAXED);
    nvme_shadow_queue_new(d, 2 * qid);
    return NVME_SC_SUCCESS;
}

static uint16_t delete_sq(struct nvme_dev *d, const struct nvme_sqe *cmd)
{
    uint32_t qid = QID(cmd);

    if (qid == 0 || qid > d->nr_queues || !d->sq[qid].valid)
        return NVME_SC_QID_INVALID;
    /* Commands on a backing file still in flight are aborted: dropped
     * when they come back (the host may not wait for them). */
    nvme_file_forget_sq(d, (uint16_t)qid);
    d->cq[d->sq[qid].cqid].nr_sqs--;
    d->sq[qid] = (struct nvme_sq){0};
    return NVME_SC_SUCCESS;
}

static uint16_t delete_cq(struct nvme_dev *d, const struct nvme_sqe *cmd)
{
    uint32_t qid = QID(cmd);

    if (qid == 0 || qid > d->nr_queues || !d->cq[qid].valid)
        return NVME_SC_QID_INVALID;
    if (d->cq[qid].nr_sqs > 0)
        return NVME_SC_INVALID_QUEUE_DELETION;
    d->cq[qid] = (struct nvme_cq){0};
    __atomic_store_n(&d->db[2 * qid + 1], 0, __ATOMIC_RELAXED);
    return NVME_SC_SUCCESS;
}

static bool io_queues_exist(const struct nvme_dev *d)
{
    for (uint32_t q = 1; q <= d->nr_queues; q++)
        if (d->sq[q].valid || d->cq[q].valid)
            return true;
    return false;
}

/* Get (set false) or Set Features; FID is CDW10 7:0, the value CDW11. */
static void features(struct nvme_dev *d, const struct nvme_sqe *cmd, bool set,
                     struct nvme_result *res)
{
    uint32_t fid = le32toh(cmd->cdw10) & 0xff, sel = (le32toh(cmd->cdw10) >> 8) & 7;
    uint32_t v = le32toh(cmd->cdw11);
    struct nvme_features *f = &d->feat;
    uint32_t *slot = NULL;

    /* Nothing is saveable (ONCS bit 4 = 0): a Set with SV, or a Get of
     * saved values, is refused; SEL 3 (capabilities) reports "changeable". */
    if (set && (le32toh(cmd->cdw10) & (1u << 31))) {
        res->status = NVME_SCT_SPECIFIC | 0x0d; /* feature identifier not saveable */
        return;
    }
    if (!set && sel == 3) {
        switch (fid) {
        case NVME_FEAT_ARBITRATION:
        case NVME_FEAT_POWER_MGMT:
        case NVME_FEAT_TEMP_THRESH:
        case NVME_FEAT_VOLATILE_WC:
        case NVME_FEAT_NUM_QUEUES:
        case NVME_FEAT_IRQ_COALESCE:
        case NVME_FEAT_IRQ_CONFIG:
        case NVME_FEAT_WRITE_ATOMIC:
        case NVME_FEAT_ASYNC_EVENT:
            res->dw0 = 1u << 2;
            return;
        default:
            res->status = NVME_SC_INVALID_FIELD;
            return;
        }
    }
    switch (fid) {
    case NVME_FEAT_ARBITRATION:
        slot = &f->arbitration;
        v &= 0xffffff07u;
        break;
    case NVME_FEAT_POWER_MGMT:
        if (set && (v & 0x1f) != 0) {
            res->status = NVME_SC_INVALID_FIELD; /* one power state: PS0 */
            return;
        }
        slot = &f->power_mgmt;
        break;
    case NVME_FEAT_TEMP_THRESH:
        /* Only the composite temperature's over-threshold is kept. */
        if ((v >> 16) & 0x3f) {
            res->status = NVME_SC_INVALID_FIELD;
            return;
        }
        slot = &f->temp_thresh;
        v &= 0xffff;
        break;
    case NVME_FEAT_VOLATILE_WC:
        slot = &f->volatile_wc;
        v &= 1;
        break;
    case NVME_FEAT_IRQ_COALESCE:
        slot = &f->irq_coalesce;
        v &= 0xffff;
        break;
    case NVME_FEAT_ASYNC_EVENT:
        slot = &f->async_event;
        v &= 0x3ff;
        break;
    case NVME_FEAT_WRITE_ATOMIC:
        if (!set)
            res->dw0 = 0;
        return;
    case NVME_FEAT_IRQ_CONFIG: {
        uint32_t iv = v & 0xffff;
        if (iv > d->nr_queues) {
            res->status = NVME_SC_INVALID_FIELD;
            return;
        }
        if (!set)
            res->dw0 = iv; /* coalescing disabled (bit 16 clear) on every vector */
        return;
    }
    case NVME_FEAT_NUM_QUEUES:
        if (set) {
            uint32_t nsqr = v & 0xffff, ncqr = v >> 16;
            if (nsqr == 0xffff || ncqr == 0xffff) {
                res->status = NVME_SC_INVALID_FIELD;
                return;
            }
            if (io_queues_exist(d)) {
                res->status = NVME_SC_CMD_SEQ_ERROR;
                return;
            }
            f->nsqa = (uint16_t)(nsqr < d->nr_queues ? nsqr : d->nr_queues - 1);
            f->ncqa = (uint16_t)(ncqr < d->nr_queues ? ncqr : d->nr_queues - 1);
            f->queues_set = true;
        }
        res->dw0 = f->nsqa | (uint32_t)f->ncqa << 16;
        return;
    default:
        res->status = NVME_SC_INVALID_FIELD;
        return;
    }
    if (set)
        *slot = v;
    else
        res->dw0 = *slot;
}

/* Log pages built whole, then the part asked for copied out. */
static void get_log_page(struct nvme_dev *d, const struct nvme_sqe *cmd, struct nvme_result *res)
{
    uint32_t cdw10 = le32toh(cmd->cdw10), lid = cdw10 & 0xff;
    bool rae = cdw10 & (1u << 15);
    uint64_t numd = ((uint64_t)(le32toh(cmd->cdw11) & 0xffff) << 16 | cdw10 >> 16) + 1;
    uint64_t off = (uint64_t)le32toh(cmd->cdw13) << 32 | le32toh(cmd->cdw12);
    uint8_t page[512] = {0};
    size_t size;

    switch (lid) {
    case NVME_LOG_ERROR:
        size = 64; /* one entry (ELPE = 0), never filled: no errors are logged */
        if (!rae)
            nvme_event_unmask(d, NVME_AER_TYPE_ERROR);
        break;
    case NVME_LOG_SMART: {
        size = 512;
        uint16_t kelvin = htole16(0x0141); /* 48 C */
        memcpy(page + 1, &kelvin, 2);
        page[3] = 100; /* available spare, % */
        page[4] = 10;  /* its threshold */
        /* Data units are thousands of 512-byte units, rounded up. */
        uint64_t counters[4] = {
            htole64((d->stats.units_read + 999) / 1000),
            htole64((d->stats.units_written + 999) / 1000),
            htole64(d->stats.host_reads),
            htole64(d->stats.host_writes),
        };
        for (int i = 0; i < 4; i++)
            memcpy(page + 32 + 16 * i, &counters[i], 8);
        if (!rae)
            nvme_event_unmask(d, NVME_AER_TYPE_SMART);
        break;
    }
    case NVME_LOG_FW_SLOT:
        size = 512;
        page[0] = 1; /* slot 1 active */
        memcpy(page + 8, "1.0     ", 8);
        break;
    default:
        res->status = NVME_SC_INVALID_LOG_PAGE;
        return;
    }
    if (off & 3 || off >= size) {
        res->status = NVME_SC_INVALID_FIELD;
        return;
    }
    /* Asked for past the end of the log: the rest reads as zeros. */
    uint64_t len = numd * 4;
    if (len > NVME_MAX_XFER) {
        res->status = NVME_SC_INVALID_FIELD;
        return;
    }
    /* The whole length asked for goes through the PRPs (they describe that
     * much), the part past the log zeros. */
    uint8_t *out = calloc(1, len ? len : 1);
    if (!out) {
        res->status = NVME_SC_INTERNAL;
        return;
    }
    memcpy(out, page + off, size - off < len ? size - off : len);
    res->status = nvme_data_copy(d, cmd, out, len, true);
    free(out);
}

static void async_event_request(struct nvme_dev *d, const struct nvme_sqe *cmd,
                                struct nvme_result *res)
{
    if (d->nr_aers > NVME_AERL) {
        res->status = NVME_SC_AER_LIMIT;
        return;
    }
    d->aer_cids[d->nr_aers++] = cmd->cid;
    res->deferred = true;
    nvme_events_deliver(d);
}

void nvme_admin_cmd(struct nvme_dev *d, const struct nvme_sqe *cmd, struct nvme_result *res)
{
    if (cmd->flags != 0 && cmd->opcode != NVME_ADM_IDENTIFY) {
        /* No fused commands, no SGLs (PSDT must be 0). */
        res->status = NVME_SC_INVALID_FIELD;
        return;
    }
    switch (cmd->opcode) {
    case NVME_ADM_CREATE_CQ:
        res->status = create_cq(d, cmd);
        break;
    case NVME_ADM_CREATE_SQ:
        res->status = create_sq(d, cmd);
        break;
    case NVME_ADM_DELETE_SQ:
        res->status = delete_sq(d, cmd);
        break;
    case NVME_ADM_DELETE_CQ:
        res->status = delete_cq(d, cmd);
        break;
    case NVME_ADM_IDENTIFY:
        if (cmd->flags != 0)
            res->status = NVME_SC_INVALID_FIELD;
        else
            res->status = nvme_identify(d, cmd, res);
        break;
    case NVME_ADM_GET_FEATURES:
        features(d, cmd, false, res);
        break;
    case NVME_ADM_SET_FEATURES:
        features(d, cmd, true, res);
        break;
    case NVME_ADM_GET_LOG_PAGE:
        get_log_page(d, cmd, res);
        break;
    case NVME_ADM_ABORT:
        /* Commands never wait in the device, so there is nothing to abort:
         * dword 0 bit 0 says "not aborted". */
        res->dw0 = 1;
        break;
    case NVME_ADM_ASYNC_EVENT:
        async_event_request(d, cmd, res);
        break;
    case NVME_ADM_DBBUF_CONFIG:
        nvme_shadow_config(d, cmd, res);
        break;
    default:
        /* Keep Alive too: KAS is 0. */
        res->status = NVME_SC_INVALID_OPCODE;
        break;
    }
}
