/* SPDX-License-Identifier: MIT */
/*
 * The ram device's DMA engine reaching guest memory: shared with an fd (the
 * daemon maps it) and without (the daemon sends DMA_READ/DMA_WRITE in QEMU's
 * layout, which the client library serves), both directions, and the
 * failures a guest driver must see as a DMA error rather than a dead device.
 */
#include <check.h>
#include <errno.h>
#include <linux/pci_regs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../plugins/ram/ram-regs.h"
#include "helpers/testutil.h"

#define RAM_SIZE  (1u << 20)
#define GUEST_MEM (1u << 20)
#define IOVA      0x40000000ull
#define RW        (VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE)

static struct test_daemon *daemon_;
static struct vfu_client *client;

static void setup(void)
{
    daemon_ = tu_daemon("ram", "r0", "{\"size\":1048576}", "ram", "r1", "{\"size\":4096}");
    client = tu_open(daemon_, "r0");
}

static void teardown(void)
{
    vfu_client_free(client);
    tu_stop(daemon_);
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)((i >> 8) * 31 + i * 7 + seed);
}

/* Program a transfer, start it and wait until the engine is idle. Returns
 * DMA_STATUS (with the DONE/ERROR bits cleared afterwards). */
static uint32_t dma_run(struct vfu_client *c, uint64_t addr, uint64_t offset, uint32_t len,
                        bool to_guest)
{
    tu_wr64(c, RAM_REGS_BAR, RAM_REG_DMA_ADDR, addr);
    tu_wr64(c, RAM_REGS_BAR, RAM_REG_DMA_OFFSET, offset);
    tu_wr32(c, RAM_REGS_BAR, RAM_REG_DMA_LEN, len);
    tu_wr32(c, RAM_REGS_BAR, RAM_REG_DMA_CTRL,
            RAM_DMA_CTRL_GO | (to_guest ? RAM_DMA_CTRL_TO_GUEST : 0));

    uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    uint32_t status;
    /* Each read also serves the daemon's DMA commands queued before its reply. */
    while ((status = tu_rd32(c, RAM_REGS_BAR, RAM_REG_DMA_STATUS)) & RAM_DMA_STATUS_BUSY)
        ck_assert_msg(test_now_ns() < deadline, "DMA still busy after %d ms", TU_TIMEOUT_MS);
    ck_assert_msg(status & (RAM_DMA_STATUS_DONE | RAM_DMA_STATUS_ERROR),
                  "DMA idle without DONE or ERROR: %#x", status);
    tu_wr32(c, RAM_REGS_BAR, RAM_REG_DMA_STATUS, RAM_DMA_STATUS_DONE | RAM_DMA_STATUS_ERROR);
    return status;
}

static uint32_t dma_errno(uint32_t status)
{
    ck_assert_msg(status & RAM_DMA_STATUS_ERROR, "DMA succeeded (status %#x)", status);
    return (status & RAM_DMA_STATUS_ERRNO_MASK) >> RAM_DMA_STATUS_ERRNO_SHIFT;
}

static void expect_done(uint32_t status)
{
    ck_assert_msg(status == RAM_DMA_STATUS_DONE, "DMA failed: status %#x (errno %u)", status,
                  (status & RAM_DMA_STATUS_ERRNO_MASK) >> RAM_DMA_STATUS_ERRNO_SHIFT);
}

static void ram_read(struct vfu_client *c, uint64_t offset, void *buf, uint32_t len)
{
    ck_assert_int_eq(vfu_client_region_read(c, RAM_MEM_BAR, offset, buf, len), 0);
}

static void ram_write(struct vfu_client *c, uint64_t offset, const void *buf, uint32_t len)
{
    ck_assert_int_eq(vfu_client_region_write(c, RAM_MEM_BAR, offset, buf, len), 0);
}

START_TEST(test_dma_fd_backed)
{
    uint8_t *guest;
    int fd = tu_memfd(GUEST_MEM, (void **)&guest);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(vfu_client_dma_map(client, IOVA, GUEST_MEM, RW, fd, 0), 0);

    /* Guest -> RAM, several of the engine's 64 KiB chunks. */
    static uint8_t buf[256 * 1024];
    const uint32_t len = 200 * 1024 + 12;
    fill(guest + 0x3000, len, 1);
    expect_done(dma_run(client, IOVA + 0x3000, 0x1000, len, false));
    ram_read(client, 0x1000, buf, len);
    ck_assert_mem_eq(buf, guest + 0x3000, len);

    /* RAM -> guest. */
    fill(buf, len, 2);
    ram_write(client, 0x20000, buf, len);
    expect_done(dma_run(client, IOVA + 0x80000, 0x20000, len, true));
    ck_assert_mem_eq(guest + 0x80000, buf, len);

    /* Memory shared with an fd needs no messages. */
    ck_assert_uint_eq(vfu_client_dma_served(client), 0);
    close(fd);
    munmap(guest, GUEST_MEM);
}
END_TEST

START_TEST(test_dma_over_socket)
{
    static uint8_t guest[GUEST_MEM], buf[256 * 1024];
    ck_assert_int_eq(vfu_client_dma_map_local(client, IOVA, GUEST_MEM, RW, guest), 0);

    const uint32_t len = 200 * 1024 + 12;
    fill(guest + 0x3000, len, 3);
    expect_done(dma_run(client, IOVA + 0x3000, 0x1000, len, false));
    ram_read(client, 0x1000, buf, len);
    ck_assert_mem_eq(buf, guest + 0x3000, len);
    uint64_t served = vfu_client_dma_served(client);
    ck_assert_uint_ge(served, 4); /* at least ceil(len / 64 KiB) DMA_READs */

    fill(buf, len, 4);
    ram_write(client, 0x40000, buf, len);
    expect_done(dma_run(client, IOVA + 0x81001, 0x40000, len, true));
    ck_assert_mem_eq(guest + 0x81001, buf, len);
    ck_assert_uint_ge(vfu_client_dma_served(client), served + 4);

    /* A tiny transfer (the DMA_WRITE padded to QEMU's 16-byte struct). */
    memset(guest, 0, 16);
    ram_write(client, 0, "xy", 2);
    expect_done(dma_run(client, IOVA + 5, 0, 2, true));
    ck_assert_mem_eq(guest + 5, "xy", 2);
    ck_assert_uint_eq(guest[4], 0);
    ck_assert_uint_eq(guest[7], 0);
}
END_TEST

/* A client that takes small transfers gets small DMA messages. */
START_TEST(test_dma_small_max_xfer)
{
    static uint8_t guest[64 * 1024], buf[64 * 1024];
    struct vfu_client *c;
    vfu_client_free(client);
    client = NULL;
    ck_assert_int_eq(tu_connect(test_daemon_socket(daemon_, "r0"),
                                "{\"capabilities\":{\"max_data_xfer_size\":4096}}", TU_TIMEOUT_MS,
                                &c),
                     0);
    ck_assert_int_eq(vfu_client_dma_map_local(c, IOVA, sizeof(guest), RW, guest), 0);
    fill(guest, sizeof(guest), 5);
    expect_done(dma_run(c, IOVA, 0, sizeof(guest), false));
    ram_read(c, 0, buf, sizeof(buf));
    ck_assert_mem_eq(buf, guest, sizeof(guest));
    ck_assert_uint_ge(vfu_client_dma_served(c), sizeof(guest) / 4096);
    client = c;
}
END_TEST

START_TEST(test_dma_errors)
{
    uint8_t *guest;
    int fd = tu_memfd(GUEST_MEM, (void **)&guest);
    ck_assert_int_ge(fd, 0);
    static uint8_t local[64 * 1024];
    ck_assert_int_eq(vfu_client_dma_map(client, IOVA, 64 * 1024, RW, fd, 0), 0);
    ck_assert_int_eq(
        vfu_client_dma_map(client, IOVA + 0x100000, 64 * 1024, VFU_DMA_FLAG_READ, fd, 0x10000), 0);
    ck_assert_int_eq(vfu_client_dma_map_local(client, IOVA + 0x200000, sizeof(local), RW, local),
                     0);

    /* Nothing mapped there, or only part of the range. */
    ck_assert_uint_eq(dma_errno(dma_run(client, 0x1000, 0, 4096, false)), ENOENT);
    ck_assert_uint_eq(dma_errno(dma_run(client, IOVA + 60 * 1024, 0, 8192, true)), ENOENT);
    ck_assert_uint_ne(dma_errno(dma_run(client, IOVA + 0x200000 + 0xf000, 0, 8192, false)), 0);
    /* A read-only map is not written. */
    ck_assert_uint_eq(dma_errno(dma_run(client, IOVA + 0x100000, 0, 4096, true)), EACCES);
    /* Outside the RAM, or wrapping the address space. */
    ck_assert_uint_eq(dma_errno(dma_run(client, IOVA, RAM_SIZE - 4, 8, false)), EINVAL);
    ck_assert_uint_eq(dma_errno(dma_run(client, UINT64_MAX - 4, 0, 16, false)), EINVAL);
    ck_assert_uint_eq(dma_errno(dma_run(client, IOVA, UINT64_MAX - 4, 16, false)), EINVAL);

    /* After all that, the engine works. */
    fill(guest, 4096, 6);
    expect_done(dma_run(client, IOVA, 0, 4096, false));
    uint8_t buf[4096];
    ram_read(client, 0, buf, sizeof(buf));
    ck_assert_mem_eq(buf, guest, sizeof(buf));
    expect_done(dma_run(client, IOVA + 0x100000, 0x100, 4096, false));

    /* Unmapped, the same range fails. */
    ck_assert_int_eq(vfu_client_dma_unmap(client, IOVA, 64 * 1024, 0), 0);
    ck_assert_uint_eq(dma_errno(dma_run(client, IOVA, 0, 4096, false)), ENOENT);
    close(fd);
    munmap(guest, GUEST_MEM);
}
END_TEST

/* The engine's completion interrupt, through MSI-X. */
START_TEST(test_dma_completion_irq)
{
    static uint8_t guest[8192];
    int efd = tu_eventfd_checked();
    ck_assert_int_eq(vfu_client_set_irqs(client, VFIO_PCI_MSIX_IRQ_INDEX,
                                         VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0,
                                         1, &efd, 1, NULL),
                     0);
    uint8_t cap = tu_find_cap(client, PCI_CAP_ID_MSIX);
    tu_wr16(client, TU_CFG, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE);
    tu_wr32(client, RAM_MSIX_BAR, RAM_MSIX_TABLE + PCI_MSIX_ENTRY_VECTOR_CTRL, 0);
    ck_assert_int_eq(vfu_client_dma_map_local(client, IOVA, sizeof(guest), RW, guest), 0);

    expect_done(dma_run(client, IOVA, 0, sizeof(guest), false));
    uint64_t n = 0;
    ck_assert_int_eq(tu_eventfd_wait(efd, TU_TIMEOUT_MS, &n), 1);
    ck_assert_uint_eq(dma_errno(dma_run(client, 0x10, 0, 16, false)), ENOENT);
    ck_assert_int_eq(tu_eventfd_wait(efd, TU_TIMEOUT_MS, &n), 1);
    close(efd);
}
END_TEST

/* A client that goes away with a transfer on the wire: the next client finds
 * the engine idle and working, and the daemon exits clean (no leak). */
START_TEST(test_dma_client_gone_mid_transfer)
{
    static uint8_t guest[256 * 1024];
    ck_assert_int_eq(vfu_client_dma_map_local(client, IOVA, sizeof(guest), RW, guest), 0);
    tu_wr64(client, RAM_REGS_BAR, RAM_REG_DMA_ADDR, IOVA);
    tu_wr64(client, RAM_REGS_BAR, RAM_REG_DMA_OFFSET, 0);
    tu_wr32(client, RAM_REGS_BAR, RAM_REG_DMA_LEN, sizeof(guest));
    uint32_t go = RAM_DMA_CTRL_GO;
    /* Posted: we never read the DMA_READ the daemon sends us. */
    ck_assert_int_eq(vfu_client_region_write_posted(client, RAM_REGS_BAR, RAM_REG_DMA_CTRL, &go, 4),
                     0);
    usleep(10000);
    vfu_client_free(client);

    client = tu_open(daemon_, "r0");
    uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    uint32_t status;
    while ((status = tu_rd32(client, RAM_REGS_BAR, RAM_REG_DMA_STATUS)) & RAM_DMA_STATUS_BUSY)
        ck_assert(test_now_ns() < deadline);
    ck_assert_msg(status & RAM_DMA_STATUS_ERROR, "abandoned DMA status %#x", status);
    tu_wr32(client, RAM_REGS_BAR, RAM_REG_DMA_STATUS, RAM_DMA_STATUS_DONE | RAM_DMA_STATUS_ERROR);

    ck_assert_int_eq(vfu_client_dma_map_local(client, IOVA, sizeof(guest), RW, guest), 0);
    fill(guest, sizeof(guest), 7);
    expect_done(dma_run(client, IOVA, 0, sizeof(guest), false));
    static uint8_t buf[sizeof(guest)];
    ram_read(client, 0, buf, sizeof(buf));
    ck_assert_mem_eq(buf, guest, sizeof(buf));
}
END_TEST

/* A 4 KiB RAM: transfers are bounded by the configured size. */
START_TEST(test_dma_small_ram)
{
    struct vfu_client *c = tu_open(daemon_, "r1");
    static uint8_t guest[8192];
    ck_assert_int_eq(vfu_client_dma_map_local(c, IOVA, sizeof(guest), RW, guest), 0);
    ck_assert_uint_eq(tu_rd64(c, RAM_REGS_BAR, RAM_REG_SIZE), 4096);
    expect_done(dma_run(c, IOVA, 0, 4096, false));
    ck_assert_uint_eq(dma_errno(dma_run(c, IOVA, 1, 4096, false)), EINVAL);
    vfu_client_free(c);
}
END_TEST

static Suite *dma_suite(void)
{
    Suite *s = suite_create("dma");
    TCase *tc = tcase_create("ram");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_dma_fd_backed);
    tcase_add_test(tc, test_dma_over_socket);
    tcase_add_test(tc, test_dma_small_max_xfer);
    tcase_add_test(tc, test_dma_errors);
    tcase_add_test(tc, test_dma_completion_irq);
    tcase_add_test(tc, test_dma_client_gone_mid_transfer);
    tcase_add_test(tc, test_dma_small_ram);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(dma_suite());
}
