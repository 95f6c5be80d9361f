/* SPDX-License-Identifier: MIT */
/*
 * A small userspace NVMe driver on the vfio-user client library, for the
 * nvme plugin's tests and benchmarks: "guest memory" is a memfd the client
 * DMA_MAPs, interrupts are MSI-X eventfds, doorbells are written through
 * the mapped doorbell page or with REGION_WRITE. It brings the controller
 * up as Linux does and submits commands one at a time or in batches.
 * Functions return 0 or a negative errno; a command's NVMe status is
 * returned separately (nvme_drv_cmd).
 *
 * Guest memory layout (offsets from NVME_DRV_IOVA): the admin SQ at 0, its
 * CQ at 0x1000, I/O queue pair q's SQ at 0x1000 * (2q) and CQ at
 * 0x1000 * (2q + 1), for q up to NVME_DRV_MAX_QUEUES; data from
 * NVME_DRV_DATA on.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "../../../plugins/nvme/nvme-spec.h"
#include "client/client.h"

#define NVME_DRV_IOVA       0x40000000ull
#define NVME_DRV_MEM_SIZE   (8ull << 20)
#define NVME_DRV_DATA       0x100000ull /* offset of the data area */
#define NVME_DRV_MAX_QUEUES 8
#define NVME_DRV_QDEPTH     64
/* Doorbell Buffer Config pages (offsets), below the data area. */
#define NVME_DRV_SHADOW   0xe0000ull
#define NVME_DRV_EVENTIDX 0xe1000ull

struct nvme_drv_queue {
    uint32_t sq_tail, cq_head;
    bool phase;
    uint32_t size;
};

struct nvme_drv {
    struct vfu_client *c;
    int mem_fd;
    uint8_t *mem;          /* NVME_DRV_MEM_SIZE bytes at NVME_DRV_IOVA */
    volatile uint32_t *db; /* the mapped doorbell page, NULL: REGION_WRITE */
    void *db_map;
    size_t db_map_len;
    int irq[NVME_DRV_MAX_QUEUES + 1]; /* MSI-X eventfds, one per vector */
    uint32_t nr_irqs;
    struct nvme_drv_queue q[NVME_DRV_MAX_QUEUES + 1];
    uint16_t next_cid;
    /* Shadow doorbells (nvme_drv_dbbuf_config): the I/O queues' doorbells go
     * to the shadow page and to MMIO only when EventIdx says so, as Linux
     * does; shadow_admin: the admin queue's too; shadow_only: never MMIO. */
    bool shadow, shadow_admin, shadow_only;
    uint64_t mmio_rings, shadow_rings;
};

/* Take over a negotiated client: map guest memory, map the doorbells when
 * mmap_doorbells (the sparse area's fd), give nr_vectors MSI-X eventfds
 * and enable MSI-X. The client stays the caller's. */
int nvme_drv_attach(struct nvme_drv *drv, struct vfu_client *c, bool mmap_doorbells,
                    uint32_t nr_vectors);
/* The same guest memory (mem_fd, mem) again on a new client, as a VMM does
 * after a migration: DMA_MAP, doorbells, MSI-X fds (MSI-X stays enabled in
 * the device's config space). Queue positions are kept. */
int nvme_drv_reattach(struct nvme_drv *drv, struct vfu_client *c, bool mmap_doorbells);
/* Unmap the doorbells, close the eventfds (not the memory: see free). */
void nvme_drv_detach(struct nvme_drv *drv);
void nvme_drv_free(struct nvme_drv *drv);

int nvme_drv_rd32(struct nvme_drv *drv, uint64_t off, uint32_t *v);
int nvme_drv_wr32(struct nvme_drv *drv, uint64_t off, uint32_t v);
int nvme_drv_rd64(struct nvme_drv *drv, uint64_t off, uint64_t *v);
int nvme_drv_wr64(struct nvme_drv *drv, uint64_t off, uint64_t v);
/* Doorbell `index` (SQ y tail 2y, CQ y head 2y + 1) the way attach chose. */
int nvme_drv_ring(struct nvme_drv *drv, uint32_t index, uint32_t value);

/* Wait up to timeout_ms until (CSTS & mask) == want. */
int nvme_drv_wait_csts(struct nvme_drv *drv, uint32_t mask, uint32_t want, int timeout_ms);
/* CC.EN=0, wait RDY=0, AQA/ASQ/ACQ, CC.EN=1 with IOSQES 6 IOCQES 4, wait RDY=1. */
int nvme_drv_enable(struct nvme_drv *drv);
int nvme_drv_disable(struct nvme_drv *drv);

/* Guest memory: iova of offset, pointer of iova. */
static inline uint64_t nvme_drv_iova(uint64_t offset)
{
    return NVME_DRV_IOVA + offset;
}
static inline void *nvme_drv_ptr(struct nvme_drv *drv, uint64_t offset)
{
    return drv->mem + offset;
}

/* Put cmd on SQ qid (a cid is assigned, returned in *cid) without ringing. */
int nvme_drv_queue_cmd(struct nvme_drv *drv, uint16_t qid, struct nvme_sqe *cmd, uint16_t *cid);
/* Ring SQ qid's tail doorbell. */
int nvme_drv_kick(struct nvme_drv *drv, uint16_t qid);
/* The next completion on CQ qid within timeout_ms (-ETIMEDOUT); CQ head rung. */
int nvme_drv_reap(struct nvme_drv *drv, uint16_t qid, struct nvme_cqe *cqe, int timeout_ms);
/* The completions CQ qid holds now, up to max of them into cqes, without
 * waiting; the CQ head rung once for all. Their number, or -errno. */
int nvme_drv_poll(struct nvme_drv *drv, uint16_t qid, struct nvme_cqe *cqes, unsigned max);
/* Submit, ring, reap: 0 with *status (SCT << 8 | SC) and *dw0 (may be NULL). */
int nvme_drv_cmd(struct nvme_drv *drv, uint16_t qid, struct nvme_sqe *cmd, uint16_t *status,
                 uint32_t *dw0);
/* Doorbell Buffer Config with the pages at NVME_DRV_SHADOW/EVENTIDX (zeroed
 * first); shadow mode on when it succeeds. */
int nvme_drv_dbbuf_config(struct nvme_drv *drv, uint16_t *status);
/* Doorbell `index`'s EventIdx entry as the controller last wrote it. */
uint32_t nvme_drv_eventidx(struct nvme_drv *drv, uint32_t index);
/* Set Features Number of Queues asking for n I/O queue pairs: 0 with
 * *status, and on success *granted, the pairs the controller gives. */
int nvme_drv_set_num_queues(struct nvme_drv *drv, uint16_t n, uint16_t *status, uint16_t *granted);
/* Create I/O CQ qid (vector qid) and SQ qid on it. */
int nvme_drv_create_io_queue(struct nvme_drv *drv, uint16_t qid, uint16_t *status);
/* The same with interrupts off on the CQ (IEN 0): the caller polls it, as
 * SPDK's perf does. */
int nvme_drv_create_polled_io_queue(struct nvme_drv *drv, uint16_t qid, uint16_t *status);
/* SGLs (PSDT 01b): cmd's DPTR becomes one data block of len bytes at iova. */
void nvme_drv_sgl_data(struct nvme_sqe *cmd, uint64_t iova, uint32_t len);
/* cmd's DPTR becomes a Last Segment descriptor for the n descriptors copied
 * to guest memory at offset seg_off (descs as the device will read them). */
void nvme_drv_sgl_segment(struct nvme_drv *drv, struct nvme_sqe *cmd, uint64_t seg_off,
                          const struct nvme_sgl_desc *descs, uint32_t n);
/* An SGL data block descriptor for [iova, iova+len). */
static inline struct nvme_sgl_desc nvme_drv_sgl_block(uint64_t iova, uint32_t len)
{
    return (struct nvme_sgl_desc){
        .addr = iova, .len = len, .id = NVME_SGL_ID(NVME_SGL_DATA_BLOCK, 0)};
}

/* A Read, Write, Compare or Write Zeroes of nlb blocks at slba on namespace
 * 1, its data at prp1 and prp2 (the next page, or a PRP list). */
static inline struct nvme_sqe nvme_drv_rw(uint8_t opcode, uint64_t slba, uint32_t nlb,
                                          uint64_t prp1, uint64_t prp2)
{
    return (struct nvme_sqe){.opcode = opcode,
                             .nsid = 1,
                             .prp1 = prp1,
                             .prp2 = prp2,
                             .cdw10 = (uint32_t)slba,
                             .cdw11 = (uint32_t)(slba >> 32),
                             .cdw12 = nlb - 1};
}
/* A PRP list at guest memory offset list_off for `pages` pages from
 * data_off + 4096 on (PRP1 covers the page at data_off): its iova, for PRP2. */
uint64_t nvme_drv_prp_list(struct nvme_drv *drv, uint64_t list_off, uint64_t data_off,
                           uint32_t pages);

/* The status of a CQE: SCT << 8 | SC. */
static inline uint16_t nvme_drv_status(const struct nvme_cqe *cqe)
{
    return (uint16_t)((cqe->status >> 1) & 0x7ff);
}
