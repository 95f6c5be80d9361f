/* SPDX-License-Identifier: MIT */
#include "nvme-driver.h"

#include <errno.h>
#include <linux/pci_regs.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testutil.h"

#define DB_INDEX_CQ(q) (2u * (q) + 1)

int nvme_drv_rd32(struct nvme_drv *drv, uint64_t off, uint32_t *v)
{
    return vfu_client_region_read(drv->c, 0, off, v, 4);
}

int nvme_drv_wr32(struct nvme_drv *drv, uint64_t off, uint32_t v)
{
    return vfu_client_region_write(drv->c, 0, off, &v, 4);
}

int nvme_drv_rd64(struct nvme_drv *drv, uint64_t off, uint64_t *v)
{
    return vfu_client_region_read(drv->c, 0, off, v, 8);
}

int nvme_drv_wr64(struct nvme_drv *drv, uint64_t off, uint64_t v)
{
    return vfu_client_region_write(drv->c, 0, off, &v, 8);
}

/* The host must write MMIO when its doorbell moved from old to new past
 * the controller's EventIdx (within (old, new], modulo 2^16). */
static bool need_event(uint16_t event, uint16_t new_value, uint16_t old)
{
    return (uint16_t)(new_value - event - 1) < (uint16_t)(new_value - old);
}

int nvme_drv_ring(struct nvme_drv *drv, uint32_t index, uint32_t value)
{
    if (drv->shadow && (index >= 2 || drv->shadow_admin)) {
        uint32_t *shadow = nvme_drv_ptr(drv, NVME_DRV_SHADOW);
        uint32_t old = shadow[index];
        /* The shadow entry before the EventIdx read (the controller does the
         * reverse): a seq_cst store, then nvme_drv_eventidx()'s seq_cst load,
         * not a fence, which ThreadSanitizer builds refuse. */
        __atomic_store_n(&shadow[index], value, __ATOMIC_SEQ_CST);
        drv->shadow_rings++;
        if (drv->shadow_only ||
            !need_event((uint16_t)nvme_drv_eventidx(drv, index), (uint16_t)value, (uint16_t)old))
            return 0;
    }
    drv->mmio_rings++;
    if (drv->db) {
        __atomic_store_n(&drv->db[index], value, __ATOMIC_RELEASE);
        return 0;
    }
    return nvme_drv_wr32(drv, NVME_DOORBELL_BASE + 4ull * index, value);
}

static int map_doorbells(struct nvme_drv *drv)
{
    struct vfu_region_info info;
    struct vfu_sparse_mmap_area areas[8];
    uint32_t nr = 0;
    int fd = -1;
    int r = vfu_client_region_info(drv->c, 0, &info, areas, 8, &nr, &fd);
    if (r < 0)
        return r;
    /* One area, the doorbell page, as SPDK's initiator expects. */
    if (nr != 1 || fd < 0 || areas[0].offset != NVME_DOORBELL_BASE) {
        if (fd >= 0)
            close(fd);
        return -ENXIO;
    }
    void *map = mmap(NULL, areas[0].size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                     (off_t)(info.offset + areas[0].offset));
    close(fd);
    if (map == MAP_FAILED)
        return -errno;
    drv->db_map = map;
    drv->db_map_len = areas[0].size;
    drv->db = map;
    return 0;
}

static int set_msix(struct nvme_drv *drv)
{
    return vfu_client_set_irqs(drv->c, VFIO_PCI_MSIX_IRQ_INDEX,
                               VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0,
                               drv->nr_irqs, drv->irq, drv->nr_irqs, NULL);
}

static int connect_memory(struct nvme_drv *drv, struct vfu_client *c, bool mmap_doorbells)
{
    drv->c = c;
    int r = vfu_client_dma_map(c, NVME_DRV_IOVA, NVME_DRV_MEM_SIZE,
                               VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE, drv->mem_fd, 0);
    if (r >= 0 && mmap_doorbells)
        r = map_doorbells(drv);
    for (uint32_t i = 0; r >= 0 && i < drv->nr_irqs; i++) {
        drv->irq[i] = tu_eventfd();
        if (drv->irq[i] < 0)
            r = drv->irq[i];
    }
    if (r >= 0 && drv->nr_irqs > 0)
        r = set_msix(drv);
    return r;
}

int nvme_drv_attach(struct nvme_drv *drv, struct vfu_client *c, bool mmap_doorbells,
                    uint32_t nr_vectors)
{
    void *mem;

    if (nr_vectors > NVME_DRV_MAX_QUEUES + 1)
        return -EINVAL;
    *drv = (struct nvme_drv){.mem_fd = -1, .nr_irqs = nr_vectors};
    for (size_t i = 0; i < NVME_DRV_MAX_QUEUES + 1; i++)
        drv->irq[i] = -1;
    drv->mem_fd = tu_memfd(NVME_DRV_MEM_SIZE, &mem);
    if (drv->mem_fd < 0)
        return drv->mem_fd;
    drv->mem = mem;
    int r = connect_memory(drv, c, mmap_doorbells);
    if (r < 0 || nr_vectors == 0)
        return r;
    /* MSI-X on in config space: the capability's Message Control. */
    uint8_t pos = 0;
    uint32_t head = 0;
    r = vfu_client_region_read(c, VFIO_PCI_CONFIG_REGION_INDEX, PCI_CAPABILITY_LIST, &pos, 1);
    for (int hops = 0; r >= 0 && pos && hops < 48; hops++) {
        r = vfu_client_region_read(c, VFIO_PCI_CONFIG_REGION_INDEX, pos, &head, 4);
        if (r < 0 || (head & 0xff) == PCI_CAP_ID_MSIX)
            break;
        pos = (uint8_t)(head >> 8) & 0xfc;
    }
    if (r < 0)
        return r;
    if ((head & 0xff) != PCI_CAP_ID_MSIX)
        return -ENXIO;
    uint16_t flags = PCI_MSIX_FLAGS_ENABLE;
    return vfu_client_region_write(c, VFIO_PCI_CONFIG_REGION_INDEX, pos + PCI_MSIX_FLAGS, &flags,
                                   2);
}

void nvme_drv_detach(struct nvme_drv *drv)
{
    if (drv->db_map)
        munmap(drv->db_map, drv->db_map_len);
    drv->db_map = NULL;
    drv->db = NULL;
    for (size_t i = 0; i < NVME_DRV_MAX_QUEUES + 1; i++) {
        if (drv->irq[i] >= 0)
            close(drv->irq[i]);
        drv->irq[i] = -1;
    }
    drv->c = NULL;
}

int nvme_drv_reattach(struct nvme_drv *drv, struct vfu_client *c, bool mmap_doorbells)
{
    nvme_drv_detach(drv);
    return connect_memory(drv, c, mmap_doorbells);
}

void nvme_drv_free(struct nvme_drv *drv)
{
    nvme_drv_detach(drv);
    if (drv->mem)
        munmap(drv->mem, NVME_DRV_MEM_SIZE);
    if (drv->mem_fd >= 0)
        close(drv->mem_fd);
    drv->mem = NULL;
    drv->mem_fd = -1;
}

int nvme_drv_wait_csts(struct nvme_drv *drv, uint32_t mask, uint32_t want, int timeout_ms)
{
    uint64_t end = test_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        uint32_t csts;
        int r = nvme_drv_rd32(drv, NVME_REG_CSTS, &csts);
        if (r < 0)
            return r;
        if ((csts & mask) == want)
            return 0;
        if (test_now_ns() > end)
            return -ETIMEDOUT;
        usleep(100);
    }
}

int nvme_drv_disable(struct nvme_drv *drv)
{
    int r = nvme_drv_wr32(drv, NVME_REG_CC, 0);
    if (r >= 0)
        r = nvme_drv_wait_csts(drv, NVME_CSTS_RDY, 0, TU_TIMEOUT_MS);
    memset(drv->q, 0, sizeof(drv->q));
    drv->shadow = false; /* a reset forgets the config */
    return r;
}

int nvme_drv_enable(struct nvme_drv *drv)
{
    int r = nvme_drv_disable(drv);
    if (r < 0)
        return r;
    const uint32_t n = NVME_DRV_QDEPTH - 1;
    r = nvme_drv_wr32(drv, NVME_REG_AQA, n << 16 | n);
    if (r >= 0)
        r = nvme_drv_wr64(drv, NVME_REG_ASQ, nvme_drv_iova(0));
    if (r >= 0)
        r = nvme_drv_wr64(drv, NVME_REG_ACQ, nvme_drv_iova(0x1000));
    if (r >= 0)
        r = nvme_drv_wr32(drv, NVME_REG_CC, NVME_CC_EN | NVME_SQES << 16 | NVME_CQES << 20);
    if (r >= 0)
        r = nvme_drv_wait_csts(drv, NVME_CSTS_RDY | NVME_CSTS_CFS, NVME_CSTS_RDY, TU_TIMEOUT_MS);
    memset(nvme_drv_ptr(drv, 0), 0, 0x2000);
    drv->q[0] = (struct nvme_drv_queue){.phase = true, .size = NVME_DRV_QDEPTH};
    return r;
}

int nvme_drv_queue_cmd(struct nvme_drv *drv, uint16_t qid, struct nvme_sqe *cmd, uint16_t *cid)
{
    struct nvme_drv_queue *q = &drv->q[qid];
    if (qid > NVME_DRV_MAX_QUEUES || q->size == 0)
        return -EINVAL;
    cmd->cid = drv->next_cid++;
    if (cid)
        *cid = cmd->cid;
    memcpy(nvme_drv_ptr(drv, 0x2000ull * qid + 64ull * q->sq_tail), cmd, sizeof(*cmd));
    q->sq_tail = (q->sq_tail + 1) % q->size;
    return 0;
}

/* The ring's release store (or the REGION_WRITE's syscall) orders the
 * entries before it. */
int nvme_drv_kick(struct nvme_drv *drv, uint16_t qid)
{
    return nvme_drv_ring(drv, 2u * qid, drv->q[qid].sq_tail);
}

/* The CQE at CQ qid's head, when the controller has posted it: copied to
 * *cqe and the head moved on (not rung). */
static bool cq_take(struct nvme_drv *drv, uint16_t qid, struct nvme_cqe *cqe)
{
    struct nvme_drv_queue *q = &drv->q[qid];
    volatile struct nvme_cqe *e = nvme_drv_ptr(drv, 0x2000ull * qid + 0x1000 + 16ull * q->cq_head);
    if ((__atomic_load_n(&e->status, __ATOMIC_ACQUIRE) & 1) != q->phase)
        return false;
    memcpy(cqe, (const void *)e, sizeof(*cqe));
    if (++q->cq_head == q->size) {
        q->cq_head = 0;
        q->phase = !q->phase;
    }
    return true;
}

int nvme_drv_reap(struct nvme_drv *drv, uint16_t qid, struct nvme_cqe *cqe, int timeout_ms)
{
    uint64_t end = test_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (!cq_take(drv, qid, cqe)) {
        if (test_now_ns() > end)
            return -ETIMEDOUT;
        usleep(20);
    }
    return nvme_drv_ring(drv, DB_INDEX_CQ(qid), drv->q[qid].cq_head);
}

int nvme_drv_poll(struct nvme_drv *drv, uint16_t qid, struct nvme_cqe *cqes, unsigned max)
{
    unsigned n = 0;
    while (n < max && cq_take(drv, qid, &cqes[n]))
        n++;
    if (n == 0)
        return 0;
    int r = nvme_drv_ring(drv, DB_INDEX_CQ(qid), drv->q[qid].cq_head);
    return r < 0 ? r : (int)n;
}

int nvme_drv_cmd(struct nvme_drv *drv, uint16_t qid, struct nvme_sqe *cmd, uint16_t *status,
                 uint32_t *dw0)
{
    uint16_t cid;
    struct nvme_cqe cqe;
    int r = nvme_drv_queue_cmd(drv, qid, cmd, &cid);
    if (r >= 0)
        r = nvme_drv_kick(drv, qid);
    if (r >= 0)
        r = nvme_drv_reap(drv, qid, &cqe, TU_TIMEOUT_MS);
    if (r < 0)
        return r;
    if (cqe.cid != cid)
        return -EPROTO;
    *status = nvme_drv_status(&cqe);
    if (dw0)
        *dw0 = cqe.result;
    return 0;
}

uint32_t nvme_drv_eventidx(struct nvme_drv *drv, uint32_t index)
{
    uint32_t *ei = nvme_drv_ptr(drv, NVME_DRV_EVENTIDX);
    return __atomic_load_n(&ei[index], __ATOMIC_SEQ_CST);
}

int nvme_drv_dbbuf_config(struct nvme_drv *drv, uint16_t *status)
{
    memset(nvme_drv_ptr(drv, NVME_DRV_SHADOW), 0, 0x2000);
    /* The shadow entries hold what the queues were rung to so far. */
    uint32_t *shadow = nvme_drv_ptr(drv, NVME_DRV_SHADOW);
    for (uint32_t q = 0; q <= NVME_DRV_MAX_QUEUES; q++) {
        shadow[2 * q] = drv->q[q].sq_tail;
        shadow[2 * q + 1] = drv->q[q].cq_head;
    }
    struct nvme_sqe c = {.opcode = NVME_ADM_DBBUF_CONFIG,
                         .prp1 = nvme_drv_iova(NVME_DRV_SHADOW),
                         .prp2 = nvme_drv_iova(NVME_DRV_EVENTIDX)};
    int r = nvme_drv_cmd(drv, 0, &c, status, NULL);
    if (r >= 0 && *status == 0)
        drv->shadow = true;
    return r;
}

int nvme_drv_set_num_queues(struct nvme_drv *drv, uint16_t n, uint16_t *status, uint16_t *granted)
{
    if (n == 0)
        return -EINVAL;
    uint32_t dw0 = 0, zero_based = n - 1u;
    struct nvme_sqe c = {.opcode = NVME_ADM_SET_FEATURES,
                         .cdw10 = NVME_FEAT_NUM_QUEUES,
                         .cdw11 = zero_based << 16 | zero_based};
    int r = nvme_drv_cmd(drv, 0, &c, status, &dw0);
    if (r >= 0 && *status == 0) {
        uint16_t sqs = (uint16_t)(dw0 & 0xffff), cqs = (uint16_t)(dw0 >> 16);
        *granted = (uint16_t)((sqs < cqs ? sqs : cqs) + 1);
    }
    return r;
}

static int create_io_queue(struct nvme_drv *drv, uint16_t qid, bool irq, uint16_t *status)
{
    if (qid == 0 || qid > NVME_DRV_MAX_QUEUES)
        return -EINVAL;
    const uint32_t n = NVME_DRV_QDEPTH - 1;
    memset(nvme_drv_ptr(drv, 0x2000ull * qid), 0, 0x2000);
    struct nvme_sqe cq = {
        .opcode = NVME_ADM_CREATE_CQ,
        .prp1 = nvme_drv_iova(0x2000ull * qid + 0x1000),
        .cdw10 = n << 16 | qid,
        .cdw11 = (uint32_t)qid << 16 | (irq ? 0x2 : 0) | 0x1, /* vector qid, IEN if irq, PC */
    };
    int r = nvme_drv_cmd(drv, 0, &cq, status, NULL);
    if (r < 0 || *status)
        return r;
    struct nvme_sqe sq = {
        .opcode = NVME_ADM_CREATE_SQ,
        .prp1 = nvme_drv_iova(0x2000ull * qid),
        .cdw10 = n << 16 | qid,
        .cdw11 = (uint32_t)qid << 16 | 0x1, /* CQ qid, PC */
    };
    r = nvme_drv_cmd(drv, 0, &sq, status, NULL);
    if (r >= 0 && *status == 0)
        drv->q[qid] = (struct nvme_drv_queue){.phase = true, .size = NVME_DRV_QDEPTH};
    return r;
}

int nvme_drv_create_io_queue(struct nvme_drv *drv, uint16_t qid, uint16_t *status)
{
    return create_io_queue(drv, qid, true, status);
}

int nvme_drv_create_polled_io_queue(struct nvme_drv *drv, uint16_t qid, uint16_t *status)
{
    return create_io_queue(drv, qid, false, status);
}

void nvme_drv_sgl_data(struct nvme_sqe *cmd, uint64_t iova, uint32_t len)
{
    struct nvme_sgl_desc d = nvme_drv_sgl_block(iova, len);

    cmd->flags = NVME_SQE_FLAGS_SGL;
    memcpy(&cmd->prp1, &d, sizeof(d));
}

void nvme_drv_sgl_segment(struct nvme_drv *drv, struct nvme_sqe *cmd, uint64_t seg_off,
                          const struct nvme_sgl_desc *descs, uint32_t n)
{
    struct nvme_sgl_desc d = {.addr = nvme_drv_iova(seg_off),
                              .len = n * (uint32_t)sizeof(*descs),
                              .id = NVME_SGL_ID(NVME_SGL_LAST_SEGMENT, 0)};

    memcpy(nvme_drv_ptr(drv, seg_off), descs, n * sizeof(*descs));
    cmd->flags = NVME_SQE_FLAGS_SGL;
    memcpy(&cmd->prp1, &d, sizeof(d));
}

uint64_t nvme_drv_prp_list(struct nvme_drv *drv, uint64_t list_off, uint64_t data_off,
                           uint32_t pages)
{
    uint64_t *list = nvme_drv_ptr(drv, list_off);
    for (uint32_t i = 0; i < pages; i++)
        list[i] = nvme_drv_iova(data_off + 4096ull * (i + 1));
    return nvme_drv_iova(list_off);
}
