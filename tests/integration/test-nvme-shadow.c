/* SPDX-License-Identifier: MIT */
/*
 * Doorbell Buffer Config on the nvme plugin, end to end: the real muserd,
 * the in-tree driver in its shadow-doorbell mode. I/O rung through the
 * shadow page (MMIO only when EventIdx asks, as Linux does, and never),
 * EventIdx following the queues, the admin queue on MMIO (Linux) or on
 * its shadow entries (a host that shadows every queue), bad buffer
 * pointers, a reset forgetting the config, and migration carrying it.
 */
#include <check.h>
#include <errno.h>
#include <linux/pci_regs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers/dbus-daemon.h"
#include "helpers/nvme-driver.h"
#include "helpers/side.h"
#include "helpers/testutil.h"

#define CONFIG   "{\"size\": 16777216, \"queues\": 2}"
#define BUF      0x200000ull
#define SQ_DB(q) (2u * (q))
#define CQ_DB(q) (2u * (q) + 1)

static struct tu_side src, dst;
static struct vfu_client *client;
static struct nvme_drv drv;

static void setup(void)
{
    tu_side_start(&src, (const char *const[]){"nvme", NULL},
                  (const char *const[]){"nvme", "n0", CONFIG, NULL});
}

static void teardown(void)
{
    nvme_drv_free(&drv);
    if (client)
        vfu_client_free(client);
    client = NULL;
    tu_side_stop(&src);
    tu_side_stop(&dst);
}

static uint16_t cmd(uint16_t qid, struct nvme_sqe *c, int timeout_ms)
{
    uint16_t cid, status;
    struct nvme_cqe cqe;
    ck_assert_int_eq(nvme_drv_queue_cmd(&drv, qid, c, &cid), 0);
    ck_assert_int_eq(nvme_drv_kick(&drv, qid), 0);
    int r = nvme_drv_reap(&drv, qid, &cqe, timeout_ms);
    if (r < 0)
        return 0xffff;
    ck_assert_uint_eq(cqe.cid, cid);
    status = nvme_drv_status(&cqe);
    return status;
}

static void start(void)
{
    client = tu_open(src.daemon, "n0");
    ck_assert_int_eq(nvme_drv_attach(&drv, client, true, 3), 0);
    ck_assert_int_eq(nvme_drv_enable(&drv), 0);
    struct nvme_sqe c = {
        .opcode = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_NUM_QUEUES, .cdw11 = 1u << 16 | 1};
    ck_assert_uint_eq(cmd(0, &c, TU_TIMEOUT_MS), 0);
}

static void create_queue(uint16_t qid)
{
    uint16_t status = 0xffff;
    ck_assert_int_eq(nvme_drv_create_io_queue(&drv, qid, &status), 0);
    ck_assert_uint_eq(status, 0);
}

static void configure(void)
{
    uint16_t status = 0xffff;
    ck_assert_int_eq(nvme_drv_dbbuf_config(&drv, &status), 0);
    ck_assert_msg(status == 0, "Doorbell Buffer Config: status %#x", status);
}

/* Write 4 KiB of seed's pattern at lba on queue qid and read it back. */
static void write_read(uint16_t qid, uint32_t lba, uint8_t seed)
{
    uint8_t *p = nvme_drv_ptr(&drv, BUF);
    for (size_t i = 0; i < 4096; i++)
        p[i] = (uint8_t)(seed + i * 7);
    struct nvme_sqe c = {
        .opcode = NVME_CMD_WRITE, .nsid = 1, .prp1 = nvme_drv_iova(BUF), .cdw10 = lba, .cdw12 = 7};
    ck_assert_uint_eq(cmd(qid, &c, TU_TIMEOUT_MS), 0);
    memset(p + 4096, 0, 4096);
    c = (struct nvme_sqe){.opcode = NVME_CMD_READ,
                          .nsid = 1,
                          .prp1 = nvme_drv_iova(BUF + 4096),
                          .cdw10 = lba,
                          .cdw12 = 7};
    ck_assert_uint_eq(cmd(qid, &c, TU_TIMEOUT_MS), 0);
    ck_assert_msg(memcmp(p, p + 4096, 4096) == 0, "data read back differs (lba %u)", lba);
}

/* EventIdx of doorbell index reaches want (the controller writes it at the
 * end of the round that took the value). */
static void wait_eventidx(uint32_t index, uint32_t want)
{
    uint64_t end = test_now_ns() + (uint64_t)TU_TIMEOUT_MS * 1000000ull;
    while (nvme_drv_eventidx(&drv, index) != want && test_now_ns() < end)
        usleep(100);
    ck_assert_msg(nvme_drv_eventidx(&drv, index) == want, "EventIdx %u is %u, expected %u", index,
                  nvme_drv_eventidx(&drv, index), want);
}

START_TEST(test_io_through_shadow_doorbells)
{
    start();
    memset(nvme_drv_ptr(&drv, NVME_DRV_DATA), 0, 4096);
    struct nvme_sqe id = {.opcode = NVME_ADM_IDENTIFY,
                          .prp1 = nvme_drv_iova(NVME_DRV_DATA),
                          .cdw10 = NVME_ID_CNS_CTRL};
    ck_assert_uint_eq(cmd(0, &id, TU_TIMEOUT_MS), 0);
    uint16_t oacs;
    memcpy(&oacs, (uint8_t *)nvme_drv_ptr(&drv, NVME_DRV_DATA) + NVME_ID_CTRL_OACS, 2);
    ck_assert_msg(oacs & NVME_ID_OACS_DBBUF, "OACS %#x lacks Doorbell Buffer Config", oacs);

    /* As Linux: a queue made before the config, one after. */
    create_queue(1);
    configure();
    create_queue(2);
    for (uint32_t i = 0; i < 20; i++)
        write_read(1 + i % 2, 8 * i, (uint8_t)i);
    for (uint16_t q = 1; q <= 2; q++) {
        wait_eventidx(SQ_DB(q), drv.q[q].sq_tail);
        wait_eventidx(CQ_DB(q), drv.q[q].cq_head);
    }
    /* The admin queue stayed on MMIO (Linux never writes its shadow
     * entries) and still works. */
    ck_assert_uint_eq(cmd(0, &id, TU_TIMEOUT_MS), 0);

    /* Rung through the shadow page alone, I/O still completes: the
     * controller reads the shadow entries, not the registers. */
    uint64_t mmio = drv.mmio_rings;
    drv.shadow_only = true;
    for (uint32_t i = 0; i < 20; i++)
        write_read(1 + i % 2, 8 * i + 1000, (uint8_t)(i + 50));
    ck_assert_uint_eq(drv.mmio_rings, mmio);
    wait_eventidx(SQ_DB(1), drv.q[1].sq_tail);

    /* A host that shadows the admin queue too is served. */
    drv.shadow_admin = true;
    ck_assert_uint_eq(cmd(0, &id, TU_TIMEOUT_MS), 0);
    ck_assert_uint_eq(cmd(0, &id, TU_TIMEOUT_MS), 0);
    ck_assert_uint_eq(drv.mmio_rings, mmio);
}
END_TEST

START_TEST(test_bad_buffer_pointers)
{
    start();
    create_queue(1);
    const struct {
        uint64_t prp1, prp2;
        uint16_t status;
        const char *what;
    } cases[] = {
        {nvme_drv_iova(NVME_DRV_SHADOW + 8), nvme_drv_iova(NVME_DRV_EVENTIDX),
         NVME_SC_INVALID_FIELD, "unaligned shadow page"},
        {nvme_drv_iova(NVME_DRV_SHADOW), nvme_drv_iova(NVME_DRV_EVENTIDX) + 4,
         NVME_SC_INVALID_FIELD, "unaligned EventIdx page"},
        {nvme_drv_iova(NVME_DRV_MEM_SIZE), nvme_drv_iova(NVME_DRV_EVENTIDX),
         NVME_SC_DATA_XFER_ERROR, "unmapped shadow page"},
        {nvme_drv_iova(NVME_DRV_SHADOW), 0x1000, NVME_SC_DATA_XFER_ERROR, "unmapped EventIdx page"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct nvme_sqe c = {
            .opcode = NVME_ADM_DBBUF_CONFIG, .prp1 = cases[i].prp1, .prp2 = cases[i].prp2};
        uint16_t status = cmd(0, &c, TU_TIMEOUT_MS);
        ck_assert_msg(status == cases[i].status, "%s: status %#x, expected %#x", cases[i].what,
                      status, cases[i].status);
    }
    /* None took effect: MMIO doorbells work, EventIdx untouched. */
    memset(nvme_drv_ptr(&drv, NVME_DRV_EVENTIDX), 0xab, 4096);
    write_read(1, 0, 1);
    ck_assert_uint_eq(nvme_drv_eventidx(&drv, SQ_DB(1)), 0xabababab);
}
END_TEST

/* The shadow pages unmapped under a configured controller (as between a
 * client and its reconnection): no fatal status, no doorbell seen, and
 * served again once they are back. */
START_TEST(test_unmapped_shadow_pages_wait)
{
    start();
    create_queue(1);
    void *mem2;
    int fd2 = tu_memfd(0x2000, &mem2);
    ck_assert_int_ge(fd2, 0);
    const uint64_t iova2 = 0x80000000ull;
    const uint32_t flags = VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE;
    ck_assert_int_eq(vfu_client_dma_map(client, iova2, 0x2000, flags, fd2, 0), 0);
    struct nvme_sqe c = {.opcode = NVME_ADM_DBBUF_CONFIG, .prp1 = iova2, .prp2 = iova2 + 0x1000};
    ck_assert_uint_eq(cmd(0, &c, TU_TIMEOUT_MS), 0);
    ck_assert_int_eq(vfu_client_dma_unmap(client, iova2, 0x2000, 0), 0);
    /* Queue 1's shadow entry never moved: it follows MMIO, once seen. */
    struct nvme_sqe rd = {.opcode = NVME_CMD_READ, .nsid = 1, .prp1 = nvme_drv_iova(BUF)};
    ck_assert_msg(cmd(1, &rd, 300) == 0xffff, "a doorbell was seen without the shadow pages");
    uint32_t csts = 0;
    ck_assert_int_eq(nvme_drv_rd32(&drv, NVME_REG_CSTS, &csts), 0);
    ck_assert_uint_eq(csts, NVME_CSTS_RDY);
    ck_assert_int_eq(vfu_client_dma_map(client, iova2, 0x2000, flags, fd2, 0), 0);
    struct nvme_cqe cqe;
    ck_assert_int_eq(nvme_drv_reap(&drv, 1, &cqe, TU_TIMEOUT_MS), 0);
    ck_assert_uint_eq(nvme_drv_status(&cqe), 0);
    /* EventIdx is written at the end of the round that posted the CQE:
     * the completion may reach us first. */
    const uint32_t *ei2 = (const uint32_t *)mem2 + 0x1000 / 4 + SQ_DB(1);
    uint64_t end = test_now_ns() + (uint64_t)TU_TIMEOUT_MS * 1000000;
    while (__atomic_load_n(ei2, __ATOMIC_ACQUIRE) != drv.q[1].sq_tail && test_now_ns() < end)
        usleep(1000);
    ck_assert_uint_eq(__atomic_load_n(ei2, __ATOMIC_ACQUIRE), drv.q[1].sq_tail);
    close(fd2);
    munmap(mem2, 0x2000);
}
END_TEST

/* A controller on INTx refuses the config (Command Sequence Error): QEMU
 * ends an INTx only at a register access, which shadow doorbells would
 * take from the guest's handler. MSI-X back on, it takes it. */
START_TEST(test_intx_refuses_the_config)
{
    start();
    uint8_t msix = tu_find_cap(client, PCI_CAP_ID_MSIX);
    uint16_t flags = tu_rd16(client, TU_CFG, msix + PCI_MSIX_FLAGS);
    tu_wr16(client, TU_CFG, msix + PCI_MSIX_FLAGS, flags & ~PCI_MSIX_FLAGS_ENABLE);
    uint16_t status = 0xffff;
    ck_assert_int_eq(nvme_drv_dbbuf_config(&drv, &status), 0);
    ck_assert_uint_eq(status, NVME_SC_CMD_SEQ_ERROR);
    ck_assert(!drv.shadow);
    tu_assert_log(src.daemon, "Doorbell Buffer Config refused");
    tu_wr16(client, TU_CFG, msix + PCI_MSIX_FLAGS, flags);
    configure();
    create_queue(1);
    write_read(1, 8, 3);
}
END_TEST

START_TEST(test_reset_forgets_the_config)
{
    start();
    create_queue(1);
    configure();
    write_read(1, 0, 1);
    /* CC.EN 1 -> 0 -> 1 and the queue again, shadow pages left in place. */
    ck_assert_int_eq(nvme_drv_enable(&drv), 0);
    struct nvme_sqe c = {
        .opcode = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_NUM_QUEUES, .cdw11 = 1u << 16 | 1};
    ck_assert_uint_eq(cmd(0, &c, TU_TIMEOUT_MS), 0);
    create_queue(1);
    memset(nvme_drv_ptr(&drv, NVME_DRV_EVENTIDX), 0, 4096);
    /* A ring through the shadow page alone is not seen ... */
    drv.shadow = drv.shadow_only = true;
    struct nvme_sqe rd = {.opcode = NVME_CMD_READ, .nsid = 1, .prp1 = nvme_drv_iova(BUF)};
    ck_assert_msg(cmd(1, &rd, 300) == 0xffff, "a shadow-only ring was seen after a reset");
    /* ... the MMIO doorbell is, and EventIdx stays untouched. */
    drv.shadow = drv.shadow_only = false;
    struct nvme_cqe cqe;
    ck_assert_int_eq(nvme_drv_kick(&drv, 1), 0);
    ck_assert_int_eq(nvme_drv_reap(&drv, 1, &cqe, TU_TIMEOUT_MS), 0);
    ck_assert_uint_eq(nvme_drv_status(&cqe), 0);
    write_read(1, 8, 2);
    for (uint32_t i = 0; i < 6; i++)
        ck_assert_uint_eq(nvme_drv_eventidx(&drv, i), 0);
}
END_TEST

static int call_device(struct tu_side *s, const char *member, int fd, sd_bus_error *error)
{
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
    int r = sd_bus_message_new_method_call(s->bus, &m, "org.muserd1", "/org/muserd1/device/n0",
                                           "org.muserd1.Device", member);
    if (r >= 0)
        r = sd_bus_message_append(m, "h", fd);
    if (r >= 0)
        r = sd_bus_call(s->bus, m, 60 * 1000000ull, error, NULL);
    return r;
}

START_TEST(test_migration_carries_the_config)
{
    tu_side_start(&dst, (const char *const[]){"nvme", NULL},
                  (const char *const[]){"nvme", "n0",
                                        "{\"size\": 16777216, \"queues\": 2, \"incoming\": true}",
                                        NULL});
    start();
    create_queue(1);
    configure();
    write_read(1, 0, 1);
    char file[] = "/tmp/muserd-nvme-shadow-XXXXXX";
    int fd = mkstemp(file);
    ck_assert_int_ge(fd, 0);
    unlink(file);
    sd_bus_error error = SD_BUS_ERROR_NULL;
    ck_assert_msg(call_device(&src, "Migrate", fd, &error) >= 0, "Migrate: %s", error.message);
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    int r = call_device(&dst, "Incoming", fd, &error);
    if (r < 0)
        test_daemon_dump_log(dst.daemon, 4096);
    ck_assert_msg(r >= 0, "Incoming: %s", error.message);
    close(fd);
    vfu_client_free(client);
    client = tu_open(dst.daemon, "n0");
    ck_assert_int_eq(nvme_drv_reattach(&drv, client, true), 0);
    /* The destination reads the shadow entries: shadow-only rings work. */
    memset(nvme_drv_ptr(&drv, NVME_DRV_EVENTIDX), 0, 4096);
    drv.shadow_only = true;
    write_read(1, 16, 3);
    wait_eventidx(SQ_DB(1), drv.q[1].sq_tail);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nvme-shadow");
    TCase *tc = tcase_create("dbbuf");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_io_through_shadow_doorbells);
    tcase_add_test(tc, test_bad_buffer_pointers);
    tcase_add_test(tc, test_unmapped_shadow_pages_wait);
    tcase_add_test(tc, test_intx_refuses_the_config);
    tcase_add_test(tc, test_reset_forgets_the_config);
    tcase_add_test(tc, test_migration_carries_the_config);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
