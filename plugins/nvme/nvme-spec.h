/* SPDX-License-Identifier: MIT */
/*
 * What the NVMe 1.4 base specification fixes and the nvme device model uses:
 * controller register offsets and fields, queue entry layouts, opcodes and
 * status codes. Also read by tests/integration/test-nvme.c, the in-tree
 * userspace driver, so it holds no device-model state.
 */
#pragma once

#include <assert.h>
#include <stdint.h>

/* ---- controller registers (BAR0) ---------------------------------------- */
#define NVME_REG_CAP   0x00 /* u64 */
#define NVME_REG_VS    0x08
#define NVME_REG_INTMS 0x0c
#define NVME_REG_INTMC 0x10
#define NVME_REG_CC    0x14
#define NVME_REG_CSTS  0x1c
#define NVME_REG_NSSR  0x20
#define NVME_REG_AQA   0x24
#define NVME_REG_ASQ   0x28 /* u64 */
#define NVME_REG_ACQ   0x30 /* u64 */
#define NVME_REGS_SIZE 0x1000
/* Doorbells with CAP.DSTRD 0: SQ y tail at 0x1000 + 8y, CQ y head 4 bytes on. */
#define NVME_DOORBELL_BASE 0x1000
#define NVME_DOORBELL_SIZE 0x1000

#define NVME_CAP_MQES(v) ((uint64_t)(v)&0xffff)
#define NVME_CAP_CQR     (1ull << 16)
#define NVME_CAP_TO(v)   ((uint64_t)(v) << 24) /* 500 ms units */
#define NVME_CAP_NSSRS   (1ull << 36)
#define NVME_CAP_CSS_NVM (1ull << 37)
#define NVME_VS_1_4      0x00010400u
#define NVME_NSSR_MAGIC  0x4e564d65u /* "NVMe" */

#define NVME_CC_EN          (1u << 0)
#define NVME_CC_CSS(cc)     (((cc) >> 4) & 0x7)
#define NVME_CC_MPS(cc)     (((cc) >> 7) & 0xf)
#define NVME_CC_AMS(cc)     (((cc) >> 11) & 0x7)
#define NVME_CC_SHN(cc)     (((cc) >> 14) & 0x3)
#define NVME_CC_IOSQES(cc)  (((cc) >> 16) & 0xf)
#define NVME_CC_IOCQES(cc)  (((cc) >> 20) & 0xf)
#define NVME_CC_SHN_NORMAL  (1u << 14)
#define NVME_CC_WRITABLE    0x00fffff1u
#define NVME_CSTS_RDY       (1u << 0)
#define NVME_CSTS_CFS       (1u << 1)
#define NVME_CSTS_SHST_MASK (3u << 2)
#define NVME_CSTS_SHST_BUSY (1u << 2) /* shutdown processing occurring */
#define NVME_CSTS_SHST_DONE (2u << 2)
#define NVME_CSTS_NSSRO     (1u << 4)
#define NVME_AQA_ASQS(a)    ((a)&0xfff)
#define NVME_AQA_ACQS(a)    (((a) >> 16) & 0xfff)
#define NVME_AQA_WRITABLE   0x0fff0fffu

/* Memory page size: CAP.MPSMIN = MPSMAX = 0, 4 KiB. */
#define NVME_PAGE_SIZE 4096u

/* ---- queue entries ------------------------------------------------------- */
struct nvme_sqe {
    uint8_t opcode;
    uint8_t flags; /* FUSE 1:0, PSDT 7:6 */
    uint16_t cid;
    uint32_t nsid;
    uint32_t cdw2, cdw3;
    uint64_t mptr;
    uint64_t prp1, prp2;
    uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};
static_assert(sizeof(struct nvme_sqe) == 64, "an SQ entry is 64 bytes");

struct nvme_cqe {
    uint32_t result;
    uint32_t rsvd;
    uint16_t sq_head;
    uint16_t sq_id;
    uint16_t cid;
    uint16_t status; /* phase bit 0, status field 15:1 */
};
static_assert(sizeof(struct nvme_cqe) == 16, "a CQ entry is 16 bytes");

/* SQE flags: FUSE (1:0) and PSDT (7:6): PRPs, or an SGL in the DPTR with
 * MPTR a buffer (01b) or an SGL segment (10b). */
#define NVME_SQE_FUSE(flags) ((flags)&0x3)
#define NVME_SQE_PSDT(flags) (((flags) >> 6) & 0x3)
#define NVME_PSDT_PRP        0
#define NVME_PSDT_SGL        1
#define NVME_PSDT_SGL_MPTR   2
#define NVME_SQE_FLAGS_SGL   (NVME_PSDT_SGL << 6)

/* An SGL descriptor (section 4.4): the first one is the SQE's DPTR (the
 * prp1 and prp2 fields); the others sit in SGL segments in host memory. */
struct nvme_sgl_desc {
    uint64_t addr;
    uint32_t len;
    uint8_t rsvd[3];
    uint8_t id; /* type 7:4, subtype 3:0 */
};
static_assert(sizeof(struct nvme_sgl_desc) == 16, "an SGL descriptor is 16 bytes");
#define NVME_SGL_ID(type, subtype) ((uint8_t)((type) << 4 | (subtype)))
#define NVME_SGL_TYPE(id)          ((id) >> 4)
#define NVME_SGL_SUBTYPE(id)       ((id)&0xf)
enum {
    NVME_SGL_DATA_BLOCK = 0x0,
    NVME_SGL_BIT_BUCKET = 0x1,
    NVME_SGL_SEGMENT = 0x2,
    NVME_SGL_LAST_SEGMENT = 0x3,
    NVME_SGL_KEYED_DATA_BLOCK = 0x4,
    NVME_SGL_TRANSPORT_DATA_BLOCK = 0x5,
};
#define NVME_SGL_SUBTYPE_ADDRESS 0x0

/* Identify Controller SGLS (bytes 539:536). */
#define NVME_SGLS_SUPPORTED_ANY_ALIGN (1u << 0)  /* 01b: no alignment or granularity rule */
#define NVME_SGLS_BIT_BUCKET          (1u << 16) /* Bit Bucket descriptors */
#define NVME_SGLS_LONGER_THAN_DATA    (1u << 18) /* an SGL may describe more than the data */

#define NVME_SQES 6 /* log2(64) */
#define NVME_CQES 4 /* log2(16) */

/* ---- opcodes ------------------------------------------------------------- */
enum {
    NVME_ADM_DELETE_SQ = 0x00,
    NVME_ADM_CREATE_SQ = 0x01,
    NVME_ADM_GET_LOG_PAGE = 0x02,
    NVME_ADM_DELETE_CQ = 0x04,
    NVME_ADM_CREATE_CQ = 0x05,
    NVME_ADM_IDENTIFY = 0x06,
    NVME_ADM_ABORT = 0x08,
    NVME_ADM_SET_FEATURES = 0x09,
    NVME_ADM_GET_FEATURES = 0x0a,
    NVME_ADM_ASYNC_EVENT = 0x0c,
    NVME_ADM_KEEP_ALIVE = 0x18,
    NVME_ADM_DBBUF_CONFIG = 0x7c, /* Doorbell Buffer Config */
};

enum {
    NVME_CMD_FLUSH = 0x00,
    NVME_CMD_WRITE = 0x01,
    NVME_CMD_READ = 0x02,
    NVME_CMD_COMPARE = 0x05,
    NVME_CMD_WRITE_ZEROES = 0x08,
    NVME_CMD_DSM = 0x09,
};

enum {
    NVME_FEAT_ARBITRATION = 0x01,
    NVME_FEAT_POWER_MGMT = 0x02,
    NVME_FEAT_TEMP_THRESH = 0x04,
    NVME_FEAT_VOLATILE_WC = 0x06,
    NVME_FEAT_NUM_QUEUES = 0x07,
    NVME_FEAT_IRQ_COALESCE = 0x08,
    NVME_FEAT_IRQ_CONFIG = 0x09,
    NVME_FEAT_WRITE_ATOMIC = 0x0a,
    NVME_FEAT_ASYNC_EVENT = 0x0b,
};

enum {
    NVME_LOG_ERROR = 0x01,
    NVME_LOG_SMART = 0x02,
    NVME_LOG_FW_SLOT = 0x03,
};

#define NVME_NSID_ALL 0xffffffffu /* every namespace (Flush, Identify) */

enum {
    NVME_ID_CNS_NS = 0x00,
    NVME_ID_CNS_CTRL = 0x01,
    NVME_ID_CNS_NS_ACTIVE_LIST = 0x02,
    NVME_ID_CNS_NS_DESC_LIST = 0x03,
};

/* Dataset Management: a range of the command's data. */
struct nvme_dsm_range {
    uint32_t attributes;
    uint32_t nlb; /* not 0's based */
    uint64_t slba;
};
_Static_assert(sizeof(struct nvme_dsm_range) == 16, "a DSM range is 16 bytes");
#define NVME_DSM_AD (1u << 2) /* CDW11: deallocate */

/* Asynchronous event types and the error-type information the device posts. */
#define NVME_AER_TYPE_ERROR          0u
#define NVME_AER_TYPE_SMART          1u
#define NVME_AER_INFO_INVALID_DB_REG 0x00u /* write to an invalid doorbell register */
#define NVME_AER_INFO_INVALID_DB_VAL 0x01u /* invalid doorbell write value */

/* ---- status: (status code type << 8) | status code ------------------------ */
#define NVME_SCT_GENERIC  0x000
#define NVME_SCT_SPECIFIC 0x100
#define NVME_SCT_MEDIA    0x200
enum {
    NVME_SC_SUCCESS = 0x00,
    NVME_SC_INVALID_OPCODE = 0x01,
    NVME_SC_INVALID_FIELD = 0x02,
    NVME_SC_DATA_XFER_ERROR = 0x04,
    NVME_SC_INTERNAL = 0x06,
    NVME_SC_INVALID_NS = 0x0b,
    NVME_SC_CMD_SEQ_ERROR = 0x0c,
    NVME_SC_SGL_SEGMENT_INVALID = 0x0d, /* Invalid SGL Segment Descriptor */
    NVME_SC_SGL_COUNT_INVALID = 0x0e,   /* Invalid Number of SGL Descriptors */
    NVME_SC_SGL_LENGTH_INVALID = 0x0f,  /* Data SGL Length Invalid */
    NVME_SC_SGL_TYPE_INVALID = 0x11,    /* SGL Descriptor Type Invalid */
    NVME_SC_PRP_OFFSET_INVALID = 0x13,
    NVME_SC_NS_WRITE_PROTECTED = 0x20,
    NVME_SC_LBA_RANGE = 0x80,
    NVME_SC_CAPACITY_EXCEEDED = 0x81,

    NVME_SC_CQ_INVALID = NVME_SCT_SPECIFIC | 0x00,
    NVME_SC_QID_INVALID = NVME_SCT_SPECIFIC | 0x01,
    NVME_SC_QUEUE_SIZE = NVME_SCT_SPECIFIC | 0x02,
    NVME_SC_AER_LIMIT = NVME_SCT_SPECIFIC | 0x05,
    NVME_SC_INVALID_VECTOR = NVME_SCT_SPECIFIC | 0x08,
    NVME_SC_INVALID_LOG_PAGE = NVME_SCT_SPECIFIC | 0x09,
    NVME_SC_INVALID_QUEUE_DELETION = NVME_SCT_SPECIFIC | 0x0c,
    NVME_SC_FEATURE_NOT_CHANGEABLE = NVME_SCT_SPECIFIC | 0x0e,

    NVME_SC_WRITE_FAULT = NVME_SCT_MEDIA | 0x80,
    NVME_SC_UNRECOVERED_READ = NVME_SCT_MEDIA | 0x81,
    NVME_SC_COMPARE_FAILED = NVME_SCT_MEDIA | 0x85,
};
/* The CQE status word of a status: DNR (bit 15) set for every error, as
 * none of ours gets better by retrying. */
#define NVME_CQE_STATUS(sc) ((uint16_t)((sc) ? (((sc) << 1) | 0x8000u) : 0))

/* ---- identify data offsets ---------------------------------------------- */
#define NVME_ID_SIZE       4096u
#define NVME_ID_CTRL_OACS  256       /* u16 */
#define NVME_ID_OACS_DBBUF (1u << 8) /* Doorbell Buffer Config */
