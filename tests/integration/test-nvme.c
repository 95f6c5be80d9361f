/* SPDX-License-Identifier: MIT */
/*
 * The nvme plugin end to end: the real muserd, the real plugin, and the
 * in-tree userspace driver (helpers/nvme-driver.c) bringing the controller
 * up as Linux does, with doorbells through the mapped page and through
 * REGION_WRITE. Identify, queues, Read/Write/Compare/Write Zeroes/DSM with
 * PRP1, PRP2 and PRP lists and with SGLs, the error statuses, disable with commands in
 * flight, shutdown, NSSR, DEVICE_RESET, and migration through D-Bus to a
 * second muserd with the data and the queues intact.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/pci_regs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers/dbus-daemon.h"
#include "helpers/side.h"
#include "helpers/nvme-check.h"
#include "helpers/nvme-driver.h"
#include "helpers/testutil.h"

#define NAME "org.muserd1"

#define NS_SIZE   (16u << 20)
#define NR_QUEUES 2

/* A muserd on its own private bus. */
static struct tu_side src, dst;
static struct vfu_client *client;
static struct nvme_drv drv;

static void side_start(struct tu_side *s, const char *const *devices)
{
    tu_side_start(s, (const char *const[]){"nvme", NULL}, devices);
}

static void side_stop(struct tu_side *s)
{
    tu_side_stop(s);
}

static void open_drv(const char *id, bool mmap_doorbells)
{
    client = tu_open(src.daemon, id);
    int r = nvme_drv_attach(&drv, client, mmap_doorbells, NR_QUEUES + 1);
    ck_assert_msg(r == 0, "attaching the driver: %s", strerror(-r));
    r = nvme_drv_enable(&drv);
    if (r < 0)
        test_daemon_dump_log(src.daemon, 4096);
    ck_assert_msg(r == 0, "enabling the controller: %s", strerror(-r));
}

static void setup(void)
{
    side_start(&src,
               (const char *const[]){
                   "nvme", "n0", "{\"size\": 16777216, \"serial\": \"TESTSERIAL1\", \"queues\": 2}",
                   "nvme", "ro", "{\"size\": 1048576, \"read_only\": true}", "nvme", "b4k",
                   "{\"size\": 1048576, \"block_size\": 4096, \"queues\": 2}", NULL});
}

static void teardown(void)
{
    nvme_drv_free(&drv);
    if (client)
        vfu_client_free(client);
    client = NULL;
    side_stop(&src);
    side_stop(&dst);
}

/* ---- commands ------------------------------------------------------------ */

static uint16_t cmd(uint16_t qid, struct nvme_sqe *c, uint32_t *dw0)
{
    return tu_nvme_cmd(&drv, src.daemon, qid, c, dw0);
}

static void cmd_ok(uint16_t qid, struct nvme_sqe *c, uint32_t *dw0)
{
    tu_nvme_cmd_ok(&drv, src.daemon, qid, c, dw0);
}

static void expect_status(uint16_t qid, struct nvme_sqe *c, uint16_t want, const char *what)
{
    tu_nvme_expect_status(&drv, src.daemon, qid, c, want, what);
}

static uint8_t *identify(uint32_t cns, uint32_t nsid)
{
    return tu_nvme_identify(&drv, src.daemon, cns, nsid);
}

static void set_queues(uint16_t n)
{
    tu_nvme_set_queues(&drv, src.daemon, n);
}

static void create_queue(uint16_t qid)
{
    tu_nvme_create_queue(&drv, qid);
}

static struct nvme_sqe rw(uint8_t opcode, uint64_t slba, uint32_t nlb, uint64_t prp1, uint64_t prp2)
{
    return nvme_drv_rw(opcode, slba, nlb, prp1, prp2);
}

static void fill(uint64_t off, size_t len, uint8_t seed)
{
    tu_fill_pat(nvme_drv_ptr(&drv, off), len, seed);
}

/* [off, off+len) holds bytes from `first` on of the pattern. */
static void check_pat(uint64_t off, size_t len, uint8_t seed, size_t first, const char *what)
{
    tu_check_pat(nvme_drv_ptr(&drv, off), len, seed, first, what);
}

static void check_fill(uint64_t off, size_t len, uint8_t seed, const char *what)
{
    check_pat(off, len, seed, 0, what);
}

/* A PRP list at list_off for `pages` pages starting at data_off + 4096
 * (PRP1 covers the first page). */
static uint64_t prp_list(uint64_t list_off, uint64_t data_off, uint32_t pages)
{
    return nvme_drv_prp_list(&drv, list_off, data_off, pages);
}

#define BUF_A 0x200000ull
#define BUF_B 0x300000ull
#define LIST  0x1f0000ull

/* Write and read back through PRP1 only, PRP1+PRP2 and a PRP list. */
static void io_round_trip(void)
{
    /* PRP1 only: 512 bytes at an offset inside the page. */
    fill(BUF_A + 0x200, 512, 1);
    struct nvme_sqe c = rw(NVME_CMD_WRITE, 7, 1, nvme_drv_iova(BUF_A + 0x200), 0);
    cmd_ok(1, &c, NULL);
    memset(nvme_drv_ptr(&drv, BUF_B), 0, 512);
    c = rw(NVME_CMD_READ, 7, 1, nvme_drv_iova(BUF_B), 0);
    cmd_ok(1, &c, NULL);
    check_fill(BUF_B, 512, 1, "PRP1 only");

    /* PRP1 + PRP2: 8 KiB over two pages that are not adjacent. */
    fill(BUF_A, 4096, 2);
    fill(BUF_A + 0x10000, 4096, 3);
    c = rw(NVME_CMD_WRITE, 100, 16, nvme_drv_iova(BUF_A), nvme_drv_iova(BUF_A + 0x10000));
    cmd_ok(1, &c, NULL);
    memset(nvme_drv_ptr(&drv, BUF_B), 0, 8192);
    c = rw(NVME_CMD_READ, 100, 16, nvme_drv_iova(BUF_B), nvme_drv_iova(BUF_B + 4096));
    cmd_ok(1, &c, NULL);
    check_fill(BUF_B, 4096, 2, "PRP1 page");
    check_fill(BUF_B + 4096, 4096, 3, "PRP2 page");

    /* A PRP list: 64 KiB, PRP1 one page, 15 entries. */
    fill(BUF_A, 65536, 4);
    c = rw(NVME_CMD_WRITE, 1000, 128, nvme_drv_iova(BUF_A), prp_list(LIST, BUF_A, 15));
    cmd_ok(1, &c, NULL);
    memset(nvme_drv_ptr(&drv, BUF_B), 0, 65536);
    c = rw(NVME_CMD_READ, 1000, 128, nvme_drv_iova(BUF_B), prp_list(LIST + 0x1000, BUF_B, 15));
    cmd_ok(1, &c, NULL);
    check_fill(BUF_B, 65536, 4, "PRP list");
    /* The pages are where the list says, not just adjacent: a read into
     * reversed pages puts each page's data in its own place. */
    uint64_t *list = nvme_drv_ptr(&drv, LIST + 0x2000);
    for (uint32_t i = 0; i < 15; i++)
        list[i] = nvme_drv_iova(BUF_B + 0x20000 + 4096ull * (15 - i));
    c = rw(NVME_CMD_READ, 1000, 128, nvme_drv_iova(BUF_B + 0x20000), nvme_drv_iova(LIST + 0x2000));
    cmd_ok(1, &c, NULL);
    for (uint32_t i = 0; i < 15; i++)
        ck_assert_msg(memcmp(nvme_drv_ptr(&drv, BUF_B + 0x20000 + 4096ull * (15 - i)),
                             nvme_drv_ptr(&drv, BUF_A + 4096ull * (i + 1)), 4096) == 0,
                      "scattered page %u", i);
}

/* ---- tests --------------------------------------------------------------- */

START_TEST(test_registers_and_bar)
{
    client = tu_open(src.daemon, "n0");
    ck_assert_int_eq(nvme_drv_attach(&drv, client, false, 0), 0);
    uint64_t cap = 0;
    uint32_t vs = 0;
    ck_assert_int_eq(nvme_drv_rd64(&drv, NVME_REG_CAP, &cap), 0);
    ck_assert_int_eq(nvme_drv_rd32(&drv, NVME_REG_VS, &vs), 0);
    ck_assert_uint_eq(cap & 0xffff, 1023);    /* MQES */
    ck_assert(cap & NVME_CAP_CQR);            /* contiguous queues required */
    ck_assert_uint_eq((cap >> 32) & 0xf, 0);  /* DSTRD */
    ck_assert(cap & NVME_CAP_CSS_NVM);        /* NVM command set */
    ck_assert_uint_gt((cap >> 24) & 0xff, 0); /* TO */
    ck_assert_uint_eq((cap >> 48) & 0xff, 0); /* MPSMIN = MPSMAX = 4 KiB */
    ck_assert_uint_eq(vs, NVME_VS_1_4);

    struct vfu_region_info info;
    struct vfu_sparse_mmap_area areas[8];
    uint32_t nr = 0;
    int fd = -1;
    ck_assert_int_eq(vfu_client_region_info(client, 0, &info, areas, 8, &nr, &fd), 0);
    ck_assert_uint_eq(info.size, 0x2000);
    ck_assert_uint_eq(nr, 1);
    ck_assert_uint_eq(areas[0].offset, NVME_DOORBELL_BASE);
    ck_assert_uint_eq(areas[0].size, NVME_DOORBELL_SIZE);
    ck_assert_int_ge(fd, 0);
    close(fd);
    /* MSI-X: one vector per I/O queue and one for the admin queue. */
    struct vfu_irq_info irq;
    ck_assert_int_eq(vfu_client_irq_info(client, VFIO_PCI_MSIX_IRQ_INDEX, &irq), 0);
    ck_assert_uint_eq(irq.count, NR_QUEUES + 1);
    /* The class code says NVMe, so Linux's driver binds. */
    uint32_t class = 0;
    ck_assert_int_eq(vfu_client_region_read(client, TU_CFG, 8, &class, 4), 0);
    ck_assert_uint_eq(class >> 8, 0x010802);

    /* Enable as Linux does; a bad admin queue size gives fatal status. */
    ck_assert_int_eq(nvme_drv_enable(&drv), 0);
    ck_assert_int_eq(nvme_drv_disable(&drv), 0);
    ck_assert_int_eq(nvme_drv_wr32(&drv, NVME_REG_AQA, 0), 0);
    ck_assert_int_eq(nvme_drv_wr32(&drv, NVME_REG_CC, NVME_CC_EN), 0);
    ck_assert_int_eq(
        nvme_drv_wait_csts(&drv, NVME_CSTS_CFS | NVME_CSTS_RDY, NVME_CSTS_CFS, TU_TIMEOUT_MS), 0);
    ck_assert_int_eq(nvme_drv_enable(&drv), 0); /* a reset clears it */
}
END_TEST

START_TEST(test_identify)
{
    open_drv("n0", true);
    const uint8_t *id = identify(NVME_ID_CNS_CTRL, 0);
    ck_assert_uint_eq(id[0] | id[1] << 8, 0x4d55);
    ck_assert(memcmp(id + 4, "TESTSERIAL1         ", 20) == 0);
    ck_assert(memcmp(id + 24, "muserd NVMe controller", 22) == 0);
    ck_assert_uint_eq(id[512], 0x66); /* SQES */
    ck_assert_uint_eq(id[513], 0x44); /* CQES */
    ck_assert_uint_eq(id[516], 1);    /* NN */
    uint32_t sgls;
    memcpy(&sgls, id + 536, 4);
    ck_assert_uint_eq(sgls, 0x00050001); /* SGLs any alignment, bit buckets, longer SGLs */
    ck_assert(strncmp((const char *)id + 768, "nqn.", 4) == 0);

    id = identify(NVME_ID_CNS_NS, 1);
    uint64_t nsze;
    memcpy(&nsze, id, 8);
    ck_assert_uint_eq(nsze, NS_SIZE / 512);
    ck_assert_uint_eq(id[128 + 2], 9); /* LBADS: 512 */
    ck_assert_uint_eq(id[99], 0);      /* not write protected */

    id = identify(NVME_ID_CNS_NS_ACTIVE_LIST, 0);
    uint32_t first, second;
    memcpy(&first, id, 4);
    memcpy(&second, id + 4, 4);
    ck_assert_uint_eq(first, 1);
    ck_assert_uint_eq(second, 0);
    id = identify(NVME_ID_CNS_NS_DESC_LIST, 1);
    ck_assert_uint_eq(id[0], 2); /* NGUID */
    ck_assert_uint_eq(id[1], 16);
    struct nvme_sqe c = {.opcode = NVME_ADM_IDENTIFY,
                         .nsid = 2,
                         .prp1 = nvme_drv_iova(NVME_DRV_DATA),
                         .cdw10 = NVME_ID_CNS_NS};
    expect_status(0, &c, NVME_SC_INVALID_NS, "Identify of namespace 2");
    c.cdw10 = 0x55;
    expect_status(0, &c, NVME_SC_INVALID_FIELD, "Identify CNS 0x55");

    /* Features: what is set reads back; unknown ones are refused. */
    struct nvme_sqe f = {
        .opcode = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_IRQ_COALESCE, .cdw11 = 0x0a05};
    cmd_ok(0, &f, NULL);
    uint32_t dw0 = 0;
    f = (struct nvme_sqe){.opcode = NVME_ADM_GET_FEATURES, .cdw10 = NVME_FEAT_IRQ_COALESCE};
    cmd_ok(0, &f, &dw0);
    ck_assert_uint_eq(dw0, 0x0a05);
    f = (struct nvme_sqe){.opcode = NVME_ADM_GET_FEATURES, .cdw10 = NVME_FEAT_VOLATILE_WC};
    cmd_ok(0, &f, &dw0);
    ck_assert_uint_eq(dw0, 1);
    f = (struct nvme_sqe){.opcode = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_VOLATILE_WC};
    cmd_ok(0, &f, NULL);
    f = (struct nvme_sqe){.opcode = NVME_ADM_GET_FEATURES, .cdw10 = NVME_FEAT_VOLATILE_WC};
    cmd_ok(0, &f, &dw0);
    ck_assert_uint_eq(dw0, 0);
    f = (struct nvme_sqe){
        .opcode = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_ASYNC_EVENT, .cdw11 = 0xff};
    cmd_ok(0, &f, NULL);
    f = (struct nvme_sqe){
        .opcode = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_ARBITRATION, .cdw11 = 0x3};
    cmd_ok(0, &f, NULL);
    f = (struct nvme_sqe){
        .opcode = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_POWER_MGMT, .cdw11 = 1};
    expect_status(0, &f, NVME_SC_INVALID_FIELD, "power state 1 of 1");
    f = (struct nvme_sqe){.opcode = NVME_ADM_GET_FEATURES, .cdw10 = 0x7e};
    expect_status(0, &f, NVME_SC_INVALID_FIELD, "an unknown feature");
    /* Number of queues: more than there are is granted as many as there are. */
    f = (struct nvme_sqe){
        .opcode = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_NUM_QUEUES, .cdw11 = 0x00ff00ff};
    cmd_ok(0, &f, &dw0);
    ck_assert_uint_eq(dw0, (NR_QUEUES - 1) << 16 | (NR_QUEUES - 1));

    /* Log pages: SMART counts the commands; firmware slot 1 is active. */
    struct nvme_sqe l = {.opcode = NVME_ADM_GET_LOG_PAGE,
                         .prp1 = nvme_drv_iova(NVME_DRV_DATA),
                         .cdw10 = (512 / 4 - 1) << 16 | NVME_LOG_FW_SLOT};
    cmd_ok(0, &l, NULL);
    ck_assert_uint_eq(*(uint8_t *)nvme_drv_ptr(&drv, NVME_DRV_DATA), 1);
    l.cdw10 = (512 / 4 - 1) << 16 | NVME_LOG_SMART;
    cmd_ok(0, &l, NULL);
    ck_assert_uint_eq(((uint8_t *)nvme_drv_ptr(&drv, NVME_DRV_DATA))[3], 100);
    l.cdw10 = (64 / 4 - 1) << 16 | NVME_LOG_ERROR;
    cmd_ok(0, &l, NULL);
    l.cdw10 = (512 / 4 - 1) << 16 | 0x7f;
    expect_status(0, &l, NVME_SC_INVALID_LOG_PAGE, "log page 0x7f");

    /* Abort finds nothing to abort. */
    struct nvme_sqe a = {.opcode = NVME_ADM_ABORT, .cdw10 = 1u << 16};
    cmd_ok(0, &a, &dw0);
    ck_assert_uint_eq(dw0 & 1, 1);
    /* Keep Alive: KAS is 0, the command is not offered. */
    a = (struct nvme_sqe){.opcode = NVME_ADM_KEEP_ALIVE};
    expect_status(0, &a, NVME_SC_INVALID_OPCODE, "Keep Alive");
}
END_TEST

/* Vector v was raised: the driver may see a completion just before the
 * round that posted it raises its vector, so wait for it a little. */
static void expect_irq(uint32_t v)
{
    uint64_t n = 0;
    ck_assert_msg(tu_eventfd_wait(drv.irq[v], TU_TIMEOUT_MS, &n) == 1 && n > 0,
                  "no interrupt on vector %u", v);
}

static void io_test(bool mmap_doorbells)
{
    open_drv("n0", mmap_doorbells);
    set_queues(NR_QUEUES);
    create_queue(1);
    create_queue(2);
    /* Admin completions came on vector 0, I/O ones come on vector 1. */
    expect_irq(0);
    tu_eventfd_read(drv.irq[1]);
    io_round_trip();
    expect_irq(1);
    ck_assert_uint_eq(tu_eventfd_read(drv.irq[2]), 0);

    /* Queue 2 sees what queue 1 wrote, and interrupts on its own vector. */
    memset(nvme_drv_ptr(&drv, BUF_B), 0, 512);
    struct nvme_sqe c = rw(NVME_CMD_READ, 7, 1, nvme_drv_iova(BUF_B), 0);
    cmd_ok(2, &c, NULL);
    check_fill(BUF_B, 512, 1, "read on queue 2");
    expect_irq(2);

    /* Compare: equal passes, a changed byte fails. */
    fill(BUF_A, 4096, 2);
    c = rw(NVME_CMD_COMPARE, 100, 8, nvme_drv_iova(BUF_A), 0);
    cmd_ok(1, &c, NULL);
    ((uint8_t *)nvme_drv_ptr(&drv, BUF_A))[1000] ^= 1;
    c = rw(NVME_CMD_COMPARE, 100, 8, nvme_drv_iova(BUF_A), 0);
    expect_status(1, &c, NVME_SC_COMPARE_FAILED, "Compare of a changed block");

    /* Write Zeroes and Dataset Management (deallocate) read back zeros. */
    c = rw(NVME_CMD_WRITE_ZEROES, 101, 2, 0, 0);
    cmd_ok(1, &c, NULL);
    uint32_t *range = nvme_drv_ptr(&drv, BUF_A);
    range[0] = 0;
    range[1] = 64; /* blocks */
    range[2] = 1000;
    range[3] = 0;
    c = (struct nvme_sqe){.opcode = NVME_CMD_DSM,
                          .nsid = 1,
                          .prp1 = nvme_drv_iova(BUF_A),
                          .cdw10 = 0,
                          .cdw11 = 1u << 2};
    cmd_ok(1, &c, NULL);
    memset(nvme_drv_ptr(&drv, BUF_B), 0xff, 65536);
    c = rw(NVME_CMD_READ, 100, 128, nvme_drv_iova(BUF_B), prp_list(LIST, BUF_B, 15));
    cmd_ok(1, &c, NULL);
    const uint8_t *b = nvme_drv_ptr(&drv, BUF_B);
    check_fill(BUF_B, 512, 2, "block 100, before the zeroed ones");
    for (size_t i = 512; i < 3 * 512; i++)
        ck_assert_msg(b[i] == 0, "Write Zeroes left byte %zu", i);
    c = rw(NVME_CMD_READ, 1000, 128, nvme_drv_iova(BUF_B), prp_list(LIST, BUF_B, 15));
    cmd_ok(1, &c, NULL);
    for (size_t i = 0; i < 64 * 512; i++)
        ck_assert_msg(b[i] == 0, "deallocate left byte %zu", i);
    check_pat(BUF_B + 64 * 512, 512, 4, 64 * 512, "the block after the range");
    c = (struct nvme_sqe){.opcode = NVME_CMD_FLUSH, .nsid = 1};
    cmd_ok(1, &c, NULL);
}

START_TEST(test_io_mapped_doorbells)
{
    io_test(true);
}
END_TEST

START_TEST(test_io_region_write_doorbells)
{
    io_test(false);
}
END_TEST

START_TEST(test_errors)
{
    open_drv("n0", true);
    set_queues(NR_QUEUES);

    /* Queue creation: every check of the spec. */
    struct nvme_sqe c = {.opcode = NVME_ADM_CREATE_CQ,
                         .prp1 = nvme_drv_iova(0x3000),
                         .cdw10 = 63u << 16 | (NR_QUEUES + 1),
                         .cdw11 = 1u << 16 | 3};
    expect_status(0, &c, NVME_SC_QID_INVALID, "a CQ id past the queues granted");
    c.cdw10 = 63u << 16 | 0;
    expect_status(0, &c, NVME_SC_QID_INVALID, "CQ id 0");
    c.cdw10 = 1024u << 16 | 1;
    expect_status(0, &c, NVME_SC_QUEUE_SIZE, "a CQ of MQES + 2 entries");
    c.cdw10 = 63u << 16 | 1;
    c.cdw11 = 1u << 16 | 2;
    expect_status(0, &c, NVME_SC_INVALID_FIELD, "a CQ that is not physically contiguous");
    c.cdw11 = 9u << 16 | 3;
    expect_status(0, &c, NVME_SC_INVALID_VECTOR, "a CQ on vector 9 of 3");
    c.cdw11 = 1u << 16 | 3;
    c.prp1 = nvme_drv_iova(0x3010);
    expect_status(0, &c, NVME_SC_PRP_OFFSET_INVALID, "a CQ base not page aligned");
    struct nvme_sqe s = {.opcode = NVME_ADM_CREATE_SQ,
                         .prp1 = nvme_drv_iova(0x2000),
                         .cdw10 = 63u << 16 | 1,
                         .cdw11 = 1u << 16 | 1};
    expect_status(0, &s, NVME_SC_CQ_INVALID, "an SQ on a CQ that does not exist");
    create_queue(1);
    expect_status(0, &s, NVME_SC_QID_INVALID, "an SQ id that exists");
    struct nvme_sqe del = {.opcode = NVME_ADM_DELETE_CQ, .cdw10 = 1};
    expect_status(0, &del, NVME_SC_INVALID_QUEUE_DELETION, "deleting a CQ an SQ uses");
    del = (struct nvme_sqe){.opcode = NVME_ADM_DELETE_SQ, .cdw10 = 2};
    expect_status(0, &del, NVME_SC_QID_INVALID, "deleting an SQ that does not exist");
    struct nvme_sqe nq = {
        .opcode = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_NUM_QUEUES, .cdw11 = 0};
    expect_status(0, &nq, NVME_SC_CMD_SEQ_ERROR, "number of queues after queues exist");
    struct nvme_sqe bad = {.opcode = 0x7b};
    expect_status(0, &bad, NVME_SC_INVALID_OPCODE, "admin opcode 0x7b");

    /* NVM commands. */
    bad = (struct nvme_sqe){.opcode = 0x7f, .nsid = 1};
    expect_status(1, &bad, NVME_SC_INVALID_OPCODE, "I/O opcode 0x7f");
    struct nvme_sqe r = rw(NVME_CMD_READ, 0, 8, 0x7000000000ull, 0);
    expect_status(1, &r, NVME_SC_DATA_XFER_ERROR, "a read into unmapped memory");
    r = rw(NVME_CMD_WRITE, 0, 16, nvme_drv_iova(BUF_A), 0x7000000000ull);
    expect_status(1, &r, NVME_SC_DATA_XFER_ERROR, "a write from an unmapped PRP2");
    r = rw(NVME_CMD_READ, 0, 64, nvme_drv_iova(BUF_A), 0x7000000000ull);
    expect_status(1, &r, NVME_SC_DATA_XFER_ERROR, "a PRP list in unmapped memory");
    uint64_t *list = nvme_drv_ptr(&drv, LIST);
    list[0] = nvme_drv_iova(BUF_A + 0x1000);
    list[1] = nvme_drv_iova(BUF_A + 0x2100);
    r = rw(NVME_CMD_READ, 0, 24, nvme_drv_iova(BUF_A), nvme_drv_iova(LIST));
    expect_status(1, &r, NVME_SC_PRP_OFFSET_INVALID, "a list entry with an offset");
    r = rw(NVME_CMD_READ, NS_SIZE / 512 - 1, 2, nvme_drv_iova(BUF_A), 0);
    expect_status(1, &r, NVME_SC_LBA_RANGE, "a read past the last block");
    r = rw(NVME_CMD_READ, 0xffffffffffffffffull, 1, nvme_drv_iova(BUF_A), 0);
    expect_status(1, &r, NVME_SC_LBA_RANGE, "SLBA 2^64 - 1");
    r = rw(NVME_CMD_WRITE_ZEROES, NS_SIZE / 512, 1, 0, 0);
    expect_status(1, &r, NVME_SC_LBA_RANGE, "Write Zeroes past the end");
    r = rw(NVME_CMD_READ, 0, 512, nvme_drv_iova(BUF_A), nvme_drv_iova(LIST));
    expect_status(1, &r, NVME_SC_INVALID_FIELD, "256 KiB, over MDTS");
    r = rw(NVME_CMD_READ, 0, 1, nvme_drv_iova(BUF_A), 0);
    r.nsid = 2;
    expect_status(1, &r, NVME_SC_INVALID_NS, "namespace 2");
    r.nsid = 1;
    r.flags = 0x80; /* PSDT 10b: MPTR an SGL, not offered */
    expect_status(1, &r, NVME_SC_INVALID_FIELD, "PSDT 10b");
    r.flags = 0x01; /* fused */
    expect_status(1, &r, NVME_SC_INVALID_FIELD, "a fused command");
    struct nvme_sqe id = {.opcode = NVME_ADM_IDENTIFY,
                          .flags = NVME_SQE_FLAGS_SGL,
                          .prp1 = nvme_drv_iova(NVME_DRV_DATA),
                          .cdw10 = NVME_ID_CNS_CTRL};
    expect_status(0, &id, NVME_SC_INVALID_FIELD, "an admin command with an SGL");
    /* The queue goes on after all of that. */
    io_round_trip();

    /* An invalid doorbell value (a tail past the queue's end) is reported
     * with an asynchronous event, and the queue waits for a good one. */
    struct nvme_sqe aer = {.opcode = NVME_ADM_ASYNC_EVENT};
    uint16_t aer_cid;
    ck_assert_int_eq(nvme_drv_queue_cmd(&drv, 0, &aer, &aer_cid), 0);
    ck_assert_int_eq(nvme_drv_kick(&drv, 0), 0);
    usleep(20000);
    ck_assert_int_eq(nvme_drv_ring(&drv, 2, NVME_DRV_QDEPTH + 5), 0);
    struct nvme_cqe cqe;
    int rr = nvme_drv_reap(&drv, 0, &cqe, TU_TIMEOUT_MS);
    ck_assert_msg(rr == 0, "no asynchronous event for a bad doorbell: %s", strerror(-rr));
    ck_assert_uint_eq(cqe.cid, aer_cid);
    ck_assert_uint_eq(nvme_drv_status(&cqe), 0);
    ck_assert_uint_eq(cqe.result, NVME_AER_TYPE_ERROR | NVME_AER_INFO_INVALID_DB_VAL << 8 |
                                      NVME_LOG_ERROR << 16);
    ck_assert_int_eq(nvme_drv_kick(&drv, 1), 0); /* the good tail again */
    struct nvme_sqe l = {.opcode = NVME_ADM_GET_LOG_PAGE,
                         .prp1 = nvme_drv_iova(NVME_DRV_DATA),
                         .cdw10 = (64 / 4 - 1) << 16 | NVME_LOG_ERROR};
    cmd_ok(0, &l, NULL);
    io_round_trip();
    /* At most AERL + 1 requests are held. */
    for (int i = 0; i < 4; i++) {
        aer = (struct nvme_sqe){.opcode = NVME_ADM_ASYNC_EVENT};
        ck_assert_int_eq(nvme_drv_queue_cmd(&drv, 0, &aer, NULL), 0);
    }
    aer = (struct nvme_sqe){.opcode = NVME_ADM_ASYNC_EVENT};
    expect_status(0, &aer, NVME_SC_AER_LIMIT, "a fifth Asynchronous Event Request");
}
END_TEST

/* SGL writes read back through PRPs and PRP writes through SGLs; bad SGLs
 * fail with their status and the queue goes on. */
START_TEST(test_sgl)
{
    open_drv("n0", true);
    set_queues(NR_QUEUES);
    create_queue(1);

    /* One data block at an odd address, read back with PRPs. */
    fill(BUF_A + 3, 8192, 5);
    struct nvme_sqe c = rw(NVME_CMD_WRITE, 200, 16, 0, 0);
    nvme_drv_sgl_data(&c, nvme_drv_iova(BUF_A + 3), 8192);
    cmd_ok(1, &c, NULL);
    memset(nvme_drv_ptr(&drv, BUF_B), 0, 8192);
    c = rw(NVME_CMD_READ, 200, 16, nvme_drv_iova(BUF_B), nvme_drv_iova(BUF_B + 4096));
    cmd_ok(1, &c, NULL);
    check_fill(BUF_B, 8192, 5, "SGL data block written, PRPs read");

    /* PRP list written, read through a segment of scattered blocks with a
     * bit bucket skipping 512 bytes. */
    fill(BUF_A, 65536, 6);
    c = rw(NVME_CMD_WRITE, 300, 128, nvme_drv_iova(BUF_A), prp_list(LIST, BUF_A, 15));
    cmd_ok(1, &c, NULL);
    memset(nvme_drv_ptr(&drv, BUF_B), 0, 0x30000);
    const struct nvme_sgl_desc descs[] = {
        nvme_drv_sgl_block(nvme_drv_iova(BUF_B + 0x20001), 1000),
        nvme_drv_sgl_block(nvme_drv_iova(BUF_B + 0x10000), 24),
        {.len = 512, .id = NVME_SGL_ID(NVME_SGL_BIT_BUCKET, 0)},
        nvme_drv_sgl_block(nvme_drv_iova(BUF_B), 65536 - 1536),
    };
    c = rw(NVME_CMD_READ, 300, 128, 0, 0);
    nvme_drv_sgl_segment(&drv, &c, LIST + 0x1000, descs, 4);
    cmd_ok(1, &c, NULL);
    check_pat(BUF_B + 0x20001, 1000, 6, 0, "first SGL block");
    check_pat(BUF_B + 0x10000, 24, 6, 1000, "second SGL block");
    check_pat(BUF_B, 65536 - 1536, 6, 1536, "the block after the bit bucket");
    /* Compare through an SGL sees the same data. */
    c = rw(NVME_CMD_COMPARE, 300, 128, 0, 0);
    nvme_drv_sgl_data(&c, nvme_drv_iova(BUF_A), 65536);
    cmd_ok(1, &c, NULL);

    /* Bad SGLs. */
    struct nvme_sgl_desc bad = nvme_drv_sgl_block(nvme_drv_iova(BUF_B), 4096);
    bad.id = NVME_SGL_ID(NVME_SGL_KEYED_DATA_BLOCK, 0);
    c = rw(NVME_CMD_READ, 0, 8, 0, 0);
    nvme_drv_sgl_segment(&drv, &c, LIST, &bad, 1);
    expect_status(1, &c, NVME_SC_SGL_TYPE_INVALID, "a keyed data block on PCIe");
    c = rw(NVME_CMD_READ, 0, 8, 0, 0);
    nvme_drv_sgl_data(&c, 0, 0);
    struct nvme_sgl_desc seg = {
        .addr = 0x7000000000ull, .len = 32, .id = NVME_SGL_ID(NVME_SGL_SEGMENT, 0)};
    memcpy(&c.prp1, &seg, sizeof(seg));
    expect_status(1, &c, NVME_SC_DATA_XFER_ERROR, "a segment in unmapped memory");
    c = rw(NVME_CMD_WRITE, 0, 8, 0, 0);
    nvme_drv_sgl_data(&c, nvme_drv_iova(BUF_A), 4095);
    expect_status(1, &c, NVME_SC_SGL_LENGTH_INVALID, "an SGL a byte short");
    c = rw(NVME_CMD_WRITE, 0, 8, 0, 0);
    nvme_drv_sgl_segment(&drv, &c, LIST + 0x1000, descs, 4);
    expect_status(1, &c, NVME_SC_SGL_TYPE_INVALID, "a bit bucket in a write");
    c = rw(NVME_CMD_READ, 0, 8, 0, 0);
    nvme_drv_sgl_data(&c, 0x7000000000ull, 4096);
    expect_status(1, &c, NVME_SC_DATA_XFER_ERROR, "a data block in unmapped memory");
    /* The controller keeps serving. */
    io_round_trip();
}
END_TEST

START_TEST(test_read_only_and_4k)
{
    open_drv("ro", true);
    set_queues(1);
    create_queue(1);
    const uint8_t *id = identify(NVME_ID_CNS_NS, 1);
    ck_assert_uint_eq(id[99] & 1, 1);
    struct nvme_sqe c = rw(NVME_CMD_WRITE, 0, 1, nvme_drv_iova(BUF_A), 0);
    expect_status(1, &c, NVME_SC_NS_WRITE_PROTECTED, "a write to a read-only namespace");
    c = rw(NVME_CMD_WRITE_ZEROES, 0, 1, 0, 0);
    expect_status(1, &c, NVME_SC_NS_WRITE_PROTECTED, "Write Zeroes on a read-only namespace");
    c = rw(NVME_CMD_READ, 0, 1, nvme_drv_iova(BUF_A), 0);
    cmd_ok(1, &c, NULL);
    nvme_drv_free(&drv);
    vfu_client_free(client);

    open_drv("b4k", false);
    id = identify(NVME_ID_CNS_NS, 1);
    ck_assert_uint_eq(id[128 + 2], 12);
    uint64_t nsze;
    memcpy(&nsze, id, 8);
    ck_assert_uint_eq(nsze, 1048576 / 4096);
    set_queues(1);
    create_queue(1);
    fill(BUF_A, 8192, 9);
    c = rw(NVME_CMD_WRITE, 255, 1, nvme_drv_iova(BUF_A), 0);
    cmd_ok(1, &c, NULL);
    c = rw(NVME_CMD_WRITE, 255, 2, nvme_drv_iova(BUF_A), nvme_drv_iova(BUF_A + 4096));
    expect_status(1, &c, NVME_SC_LBA_RANGE, "two 4 KiB blocks from the last one");
    c = rw(NVME_CMD_READ, 255, 1, nvme_drv_iova(BUF_B), 0);
    cmd_ok(1, &c, NULL);
    check_fill(BUF_B, 4096, 9, "4 KiB block");
}
END_TEST

START_TEST(test_disable_shutdown_resets)
{
    open_drv("n0", true);
    set_queues(NR_QUEUES);
    create_queue(1);
    fill(BUF_A, 4096, 5);
    struct nvme_sqe c = rw(NVME_CMD_WRITE, 50, 8, nvme_drv_iova(BUF_A), 0);
    cmd_ok(1, &c, NULL);

    /* Disable with a queue full of commands rung: the controller goes
     * not-ready and comes back without the I/O queues. */
    for (int i = 0; i < NVME_DRV_QDEPTH - 1; i++) {
        c = rw(NVME_CMD_READ, 50, 8, nvme_drv_iova(BUF_B), 0);
        ck_assert_int_eq(nvme_drv_queue_cmd(&drv, 1, &c, NULL), 0);
    }
    ck_assert_int_eq(nvme_drv_kick(&drv, 1), 0);
    ck_assert_int_eq(nvme_drv_wr32(&drv, NVME_REG_CC, 0), 0);
    ck_assert_int_eq(nvme_drv_wait_csts(&drv, NVME_CSTS_RDY, 0, TU_TIMEOUT_MS), 0);
    ck_assert_int_eq(nvme_drv_enable(&drv), 0);
    identify(NVME_ID_CNS_CTRL, 0);
    struct nvme_sqe del = {.opcode = NVME_ADM_DELETE_SQ, .cdw10 = 1};
    expect_status(0, &del, NVME_SC_QID_INVALID, "SQ 1 after a disable");
    set_queues(NR_QUEUES);
    create_queue(1);
    c = rw(NVME_CMD_READ, 50, 8, nvme_drv_iova(BUF_B), 0);
    cmd_ok(1, &c, NULL);
    check_fill(BUF_B, 4096, 5, "data across a disable");

    /* Delete the queues as Linux does before a shutdown, then shut down. */
    del = (struct nvme_sqe){.opcode = NVME_ADM_DELETE_SQ, .cdw10 = 1};
    cmd_ok(0, &del, NULL);
    del = (struct nvme_sqe){.opcode = NVME_ADM_DELETE_CQ, .cdw10 = 1};
    cmd_ok(0, &del, NULL);
    uint32_t cc = 0;
    ck_assert_int_eq(nvme_drv_rd32(&drv, NVME_REG_CC, &cc), 0);
    ck_assert_int_eq(nvme_drv_wr32(&drv, NVME_REG_CC, cc | NVME_CC_SHN_NORMAL), 0);
    ck_assert_int_eq(
        nvme_drv_wait_csts(&drv, NVME_CSTS_SHST_MASK, NVME_CSTS_SHST_DONE, TU_TIMEOUT_MS), 0);

    /* NVM subsystem reset: not ready, NSSRO set (and cleared by writing it). */
    ck_assert_int_eq(nvme_drv_enable(&drv), 0);
    ck_assert_int_eq(nvme_drv_wr32(&drv, NVME_REG_NSSR, NVME_NSSR_MAGIC), 0);
    uint32_t csts = 0;
    ck_assert_int_eq(nvme_drv_rd32(&drv, NVME_REG_CSTS, &csts), 0);
    ck_assert_uint_eq(csts, NVME_CSTS_NSSRO);
    ck_assert_int_eq(nvme_drv_wr32(&drv, NVME_REG_CSTS, NVME_CSTS_NSSRO), 0);
    ck_assert_int_eq(nvme_drv_rd32(&drv, NVME_REG_CSTS, &csts), 0);
    ck_assert_uint_eq(csts, 0);

    /* DEVICE_RESET: registers back to power-on, the namespace kept. */
    ck_assert_int_eq(nvme_drv_enable(&drv), 0);
    set_queues(1);
    create_queue(1);
    ck_assert_int_eq(vfu_client_reset(client), 0);
    uint32_t aqa = 1;
    ck_assert_int_eq(nvme_drv_rd32(&drv, NVME_REG_CC, &cc), 0);
    ck_assert_int_eq(nvme_drv_rd32(&drv, NVME_REG_CSTS, &csts), 0);
    ck_assert_int_eq(nvme_drv_rd32(&drv, NVME_REG_AQA, &aqa), 0);
    ck_assert_uint_eq(cc, 0);
    ck_assert_uint_eq(csts, 0);
    ck_assert_uint_eq(aqa, 0);
    /* The client's MSI-X setup went with the reset: give it again. */
    uint8_t cap = tu_find_cap(client, PCI_CAP_ID_MSIX);
    tu_wr16(client, TU_CFG, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE);
    ck_assert_int_eq(nvme_drv_enable(&drv), 0);
    set_queues(1);
    create_queue(1);
    c = rw(NVME_CMD_READ, 50, 8, nvme_drv_iova(BUF_B), 0);
    cmd_ok(1, &c, NULL);
    check_fill(BUF_B, 4096, 5, "data across a device reset");
}
END_TEST

/* ---- migration ----------------------------------------------------------- */

/* The controller moves with its queues mid-stream: the driver keeps its
 * queue positions, reconnects to the destination with the same guest
 * memory, and reads back what it wrote on the source. */
START_TEST(test_migration_keeps_data_and_queues)
{
    side_start(&dst, (const char *const[]){
                         "nvme", "n0",
                         "{\"size\": 16777216, \"serial\": \"TESTSERIAL1\", \"queues\": 2, "
                         "\"incoming\": true}",
                         NULL});
    open_drv("n0", true);
    set_queues(NR_QUEUES);
    create_queue(1);
    create_queue(2);
    fill(BUF_A, 65536, 6);
    struct nvme_sqe c =
        rw(NVME_CMD_WRITE, 2000, 128, nvme_drv_iova(BUF_A), prp_list(LIST, BUF_A, 15));
    cmd_ok(1, &c, NULL);
    fill(BUF_A, 4096, 7);
    c = rw(NVME_CMD_WRITE, NS_SIZE / 512 - 8, 8, nvme_drv_iova(BUF_A), 0);
    cmd_ok(2, &c, NULL);
    /* A held AER moves too, and an SQ entry rung but not yet fetched is
     * impossible to arrange from here; a doorbell written is not. */
    struct nvme_sqe aer = {.opcode = NVME_ADM_ASYNC_EVENT};
    uint16_t aer_cid;
    ck_assert_int_eq(nvme_drv_queue_cmd(&drv, 0, &aer, &aer_cid), 0);
    ck_assert_int_eq(nvme_drv_kick(&drv, 0), 0);
    usleep(20000);

    off_t size = tu_side_migrate(&src, &dst, "n0");
    ck_assert_int_ge(size, 65536 + 4096);
    /* Zero pages are left out: far less than the 16 MiB namespace. */
    ck_assert_int_lt(size, 1 << 20);
    tu_nvme_reattach(&drv, &client, dst.daemon, "n0");
    memset(nvme_drv_ptr(&drv, BUF_B), 0, 65536);
    c = rw(NVME_CMD_READ, 2000, 128, nvme_drv_iova(BUF_B), prp_list(LIST, BUF_B, 15));
    cmd_ok(1, &c, NULL);
    check_fill(BUF_B, 65536, 6, "64 KiB after migration");
    c = rw(NVME_CMD_READ, NS_SIZE / 512 - 8, 8, nvme_drv_iova(BUF_B), 0);
    cmd_ok(2, &c, NULL);
    check_fill(BUF_B, 4096, 7, "the last block after migration");
    /* Blocks never written still read as zeros. */
    c = rw(NVME_CMD_READ, 4000, 8, nvme_drv_iova(BUF_B), 0);
    memset(nvme_drv_ptr(&drv, BUF_B), 0xff, 4096);
    cmd_ok(1, &c, NULL);
    for (size_t i = 0; i < 4096; i++)
        ck_assert_uint_eq(((uint8_t *)nvme_drv_ptr(&drv, BUF_B))[i], 0);
    /* The AER held on the source is held on the destination: a bad
     * doorbell completes it. */
    ck_assert_int_eq(nvme_drv_ring(&drv, 2, NVME_DRV_QDEPTH + 1), 0);
    struct nvme_cqe cqe;
    ck_assert_int_eq(nvme_drv_reap(&drv, 0, &cqe, TU_TIMEOUT_MS), 0);
    ck_assert_uint_eq(cqe.cid, aer_cid);
    ck_assert_uint_eq(cqe.result & 0xff, NVME_AER_TYPE_ERROR);
}
END_TEST

/* A config the plugin refuses fails CreateDevice with a sentence. */
/* Migrate n0 to a second muserd (created incoming): the D-Bus verdict. */
static int migrate_to_dst(char **error_name)
{
    int fd = tu_side_save(&src, "n0");
    sd_bus_error error = SD_BUS_ERROR_NULL;
    int r = tu_side_call_device(&dst, "n0", "Incoming", fd, &error);
    *error_name = error.name ? strdup(error.name) : NULL;
    sd_bus_error_free(&error);
    close(fd);
    return r;
}

static void start_dst(void)
{
    side_start(&dst, (const char *const[]){
                         "nvme", "n0",
                         "{\"size\": 16777216, \"serial\": \"TESTSERIAL1\", \"queues\": 2, "
                         "\"incoming\": true}",
                         NULL});
}

/* A stopped controller (Migrate) writes no completion into guest memory and
 * raises no interrupt, whatever the client writes meanwhile: a doorbell of
 * a queue that does not exist (an async event for the AER held), INTMC. */
START_TEST(test_stopped_controller_is_silent)
{
    open_drv("n0", false);
    struct nvme_sqe aer = {.opcode = NVME_ADM_ASYNC_EVENT};
    uint16_t aer_cid;
    ck_assert_int_eq(nvme_drv_queue_cmd(&drv, 0, &aer, &aer_cid), 0);
    ck_assert_int_eq(nvme_drv_kick(&drv, 0), 0);
    ck_assert_int_eq(nvme_drv_wr32(&drv, NVME_REG_INTMS, 1), 0);
    usleep(50000);
    (void)tu_eventfd_read(drv.irq[0]);
    char file[] = "/tmp/muserd-nvme-XXXXXX";
    int fd = mkstemp(file);
    unlink(file);
    sd_bus_error error = SD_BUS_ERROR_NULL;
    ck_assert_msg(tu_side_call_device(&src, "n0", "Migrate", fd, &error) >= 0, "Migrate: %s",
                  error.message);
    close(fd);
    ck_assert_int_eq(nvme_drv_wr32(&drv, NVME_DOORBELL_BASE + 8 * 5, 1), 0);
    ck_assert_int_eq(nvme_drv_wr32(&drv, NVME_REG_INTMC, 1), 0);
    struct nvme_cqe cqe;
    ck_assert_msg(nvme_drv_reap(&drv, 0, &cqe, 300) == -ETIMEDOUT,
                  "the stopped controller posted a completion into guest memory");
    ck_assert_msg(tu_eventfd_read(drv.irq[0]) == 0, "the stopped controller raised an interrupt");
    /* Resumed, it delivers what it held: the event completes the AER. */
    ck_assert_int_ge(tu_side_call_device(&src, "n0", "Resume", -1, &error), 0);
    ck_assert_int_eq(nvme_drv_reap(&drv, 0, &cqe, TU_TIMEOUT_MS), 0);
    ck_assert_uint_eq(cqe.cid, aer_cid);
}
END_TEST

/* A CQ made without interrupts may name any vector; it migrates. */
START_TEST(test_cq_without_interrupts_migrates)
{
    start_dst();
    open_drv("n0", true);
    set_queues(NR_QUEUES);
    memset(nvme_drv_ptr(&drv, 0x2000), 0, 0x2000);
    struct nvme_sqe c = {.opcode = NVME_ADM_CREATE_CQ,
                         .prp1 = nvme_drv_iova(0x3000),
                         .cdw10 = 63u << 16 | 1,
                         .cdw11 = 500u << 16 | 1}; /* PC, IEN clear, IV 500 */
    cmd_ok(0, &c, NULL);
    _cleanup_free_ char *name = NULL;
    ck_assert_msg(migrate_to_dst(&name) >= 0, "Incoming refused the stream: %s", name);
}
END_TEST

/* Two pages adjacent in IOVA but in two DMA mappings are one transfer. */
START_TEST(test_prps_across_adjacent_mappings)
{
    open_drv("n0", true);
    set_queues(NR_QUEUES);
    create_queue(1);
    void *mem2;
    int fd2 = tu_memfd(1 << 20, &mem2);
    ck_assert_int_ge(fd2, 0);
    uint64_t iova2 = NVME_DRV_IOVA + NVME_DRV_MEM_SIZE; /* right after the first mapping */
    ck_assert_int_eq(
        vfu_client_dma_map(client, iova2, 1 << 20, VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE, fd2, 0),
        0);
    struct nvme_sqe c = rw(NVME_CMD_READ, 0, 16, iova2 - 4096, iova2);
    ck_assert_uint_eq(cmd(1, &c, NULL), 0);
    close(fd2);
}
END_TEST

/* A 16 KiB Get Log Page: the PRP list stays the host's, the bytes past the
 * log read as zeros. */
START_TEST(test_long_log_page)
{
    open_drv("n0", true);
    memset(nvme_drv_ptr(&drv, BUF_A), 0xee, 16384);
    uint64_t *list = nvme_drv_ptr(&drv, LIST);
    for (int i = 0; i < 3; i++)
        list[i] = nvme_drv_iova(BUF_A + 4096ull * (i + 1));
    struct nvme_sqe l = {.opcode = NVME_ADM_GET_LOG_PAGE,
                         .prp1 = nvme_drv_iova(BUF_A),
                         .prp2 = nvme_drv_iova(LIST),
                         .cdw10 = (16384 / 4 - 1) << 16 | NVME_LOG_SMART};
    cmd_ok(0, &l, NULL);
    ck_assert_uint_eq(list[0], nvme_drv_iova(BUF_A + 4096));
    const uint8_t *p = nvme_drv_ptr(&drv, BUF_A);
    for (size_t i = 512; i < 16384; i++)
        ck_assert_msg(p[i] == 0, "byte %zu past the log is %#x, not 0", i, p[i]);
}
END_TEST

/* A big namespace the guest barely wrote: its stream holds what was
 * written (1 GiB here, one block of it), and the save walks a bitmap of
 * written pages rather than reading the rest (which on a kernel that backs
 * read faults with pages costs the whole namespace in memory). */
START_TEST(test_sparse_namespace_stream_holds_what_was_written)
{
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    ck_assert_int_ge(sd_bus_call_method(src.bus, NAME, "/org/muserd1", "org.muserd1.Manager",
                                        "CreateDevice", &e, NULL, "sss", "nvme", "big",
                                        "{\"size\": 1073741824}"),
                     0);
    client = tu_open(src.daemon, "big");
    ck_assert_int_eq(nvme_drv_attach(&drv, client, true, NR_QUEUES + 1), 0);
    ck_assert_int_eq(nvme_drv_enable(&drv), 0);
    set_queues(NR_QUEUES);
    create_queue(1);
    fill(BUF_A, 4096, 9);
    struct nvme_sqe c = rw(NVME_CMD_WRITE, 1u << 20, 8, nvme_drv_iova(BUF_A), 0);
    cmd_ok(1, &c, NULL);
    char file[] = "/tmp/muserd-nvme-XXXXXX";
    int fd = mkstemp(file);
    unlink(file);
    sd_bus_error error = SD_BUS_ERROR_NULL;
    ck_assert_msg(tu_side_call_device(&src, "big", "Migrate", fd, &error) >= 0, "Migrate: %s",
                  error.message);
    off_t len = lseek(fd, 0, SEEK_END);
    close(fd);
    ck_assert_msg(len > 4096 && len < 65536, "the stream of 1 written page is %lld bytes",
                  (long long)len);
}
END_TEST

/* Without MSI-X a controller interrupts through INTx (every queue on pin
 * A), or through single-vector MSI: a completion raises it, and INTMS
 * holds it back until INTMC. */
static void fallback_irq(unsigned index)
{
    open_drv("n0", true);
    uint8_t msix = tu_find_cap(client, PCI_CAP_ID_MSIX);
    tu_wr16(client, TU_CFG, msix + PCI_MSIX_FLAGS, 0);
    int efd = tu_eventfd();
    ck_assert_int_ge(efd, 0);
    ck_assert_int_eq(vfu_client_set_irqs(client, index,
                                         VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0,
                                         1, &efd, 1, NULL),
                     0);
    if (index == VFIO_PCI_MSI_IRQ_INDEX) {
        uint8_t msi = tu_find_cap(client, PCI_CAP_ID_MSI);
        tu_wr16(client, TU_CFG, msi + PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE);
    }
    (void)identify(NVME_ID_CNS_CTRL, 0);
    uint64_t n = 0;
    ck_assert_msg(tu_eventfd_wait(efd, TU_TIMEOUT_MS, &n) == 1, "no interrupt for a completion");
    if (index == VFIO_PCI_INTX_IRQ_INDEX) /* VFIO masks INTx as it fires: the handler unmasks */
        ck_assert_int_eq(vfu_client_set_irqs(client, index,
                                             VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0,
                                             1, NULL, 0, NULL),
                         0);

    /* Masked by INTMS: the completion comes, the interrupt waits for INTMC
     * (the entry not taken yet: a taken one clears the interrupt status). */
    ck_assert_int_eq(nvme_drv_wr32(&drv, NVME_REG_INTMS, 1), 0);
    struct nvme_sqe c = {.opcode = NVME_ADM_IDENTIFY,
                         .prp1 = nvme_drv_iova(NVME_DRV_DATA),
                         .cdw10 = NVME_ID_CNS_CTRL};
    uint16_t cid;
    ck_assert_int_eq(nvme_drv_queue_cmd(&drv, 0, &c, &cid), 0);
    ck_assert_int_eq(nvme_drv_kick(&drv, 0), 0);
    usleep(50000);
    ck_assert_msg(tu_eventfd_read(efd) == 0, "an interrupt INTMS masked came through");
    ck_assert_int_eq(nvme_drv_wr32(&drv, NVME_REG_INTMC, 1), 0);
    ck_assert_msg(tu_eventfd_wait(efd, TU_TIMEOUT_MS, &n) == 1, "INTMC did not deliver it");
    struct nvme_cqe cqe;
    ck_assert_int_eq(nvme_drv_reap(&drv, 0, &cqe, TU_TIMEOUT_MS), 0);
    ck_assert_uint_eq(cqe.cid, cid);
    close(efd);
}

START_TEST(test_intx_fallback)
{
    fallback_irq(VFIO_PCI_INTX_IRQ_INDEX);
}
END_TEST

START_TEST(test_msi_fallback)
{
    fallback_irq(VFIO_PCI_MSI_IRQ_INDEX);
}
END_TEST

START_TEST(test_bad_config)
{
    static const char *const bad[][2] = {
        {"{\"block_size\": 1024}", "block_size"},
        {"{\"size\": 1000}", "size"},
        {"{\"queues\": 0}", "queues"},
        {"{\"queues\": 65}", "queues"},
        {"{\"serial\": \"012345678901234567890\"}", "serial"},
        {"{\"model\": \"\"}", "model"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(src.bus, NAME, "/org/muserd1", "org.muserd1.Manager",
                                   "CreateDevice", &error, NULL, "sss", "nvme", "bad", bad[i][0]);
        ck_assert_msg(r < 0, "CreateDevice took %s", bad[i][0]);
        ck_assert_str_eq(error.name, "org.muserd1.Error.InvalidConfig");
        ck_assert_msg(strstr(error.message, bad[i][1]), "%s: the error \"%s\" does not name %s",
                      bad[i][0], error.message, bad[i][1]);
        sd_bus_error_free(&error);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nvme");
    TCase *tc = tcase_create("driver");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_registers_and_bar);
    tcase_add_test(tc, test_identify);
    tcase_add_test(tc, test_io_mapped_doorbells);
    tcase_add_test(tc, test_io_region_write_doorbells);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_sgl);
    tcase_add_test(tc, test_read_only_and_4k);
    tcase_add_test(tc, test_disable_shutdown_resets);
    tcase_add_test(tc, test_migration_keeps_data_and_queues);
    tcase_add_test(tc, test_bad_config);
    tcase_add_test(tc, test_intx_fallback);
    tcase_add_test(tc, test_msi_fallback);
    tcase_add_test(tc, test_stopped_controller_is_silent);
    tcase_add_test(tc, test_cq_without_interrupts_migrates);
    tcase_add_test(tc, test_prps_across_adjacent_mappings);
    tcase_add_test(tc, test_long_log_page);
    tcase_add_test(tc, test_sparse_namespace_stream_holds_what_was_written);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
