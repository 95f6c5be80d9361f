/* SPDX-License-Identifier: MIT */
/*
 * Interrupt delivery as a VMM sees it: the timer device fires, and the
 * eventfd the client registered with SET_IRQS is signalled, through MSI-X,
 * MSI or INTx, with masking and pending bits as the PCI spec has them.
 */
#include <check.h>
#include <errno.h>
#include <linux/pci_regs.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../plugins/timer/timer-regs.h"
#include "helpers/testutil.h"

#define INTX VFIO_PCI_INTX_IRQ_INDEX
#define MSI  VFIO_PCI_MSI_IRQ_INDEX
#define MSIX VFIO_PCI_MSIX_IRQ_INDEX

static const uint32_t TRIGGER_FD = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;

static struct test_daemon *daemon_;
static struct vfu_client *client;

static void setup(void)
{
    daemon_ = tu_daemon("timer", "t0", NULL, "timer", "t1", NULL);
    client = tu_open(daemon_, "t0");
}

static void teardown(void)
{
    vfu_client_free(client);
    tu_stop(daemon_);
}

/* Fire once, `delay_ns` from now, on `vector`. */
static void arm(uint32_t vector, uint64_t delay_ns)
{
    tu_wr32(client, TIMER_REGS_BAR, TIMER_REG_VECTOR, vector);
    uint64_t now = tu_rd64(client, TIMER_REGS_BAR, TIMER_REG_NOW);
    tu_wr64(client, TIMER_REGS_BAR, TIMER_REG_DEADLINE, now + delay_ns);
    tu_wr32(client, TIMER_REGS_BAR, TIMER_REG_CTRL, TIMER_CTRL_ENABLE);
}

/* Wait until the timer has fired `count` times in all (a register read). */
static void wait_fire_count(uint32_t count)
{
    uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    uint32_t n;
    while ((n = tu_rd32(client, TIMER_REGS_BAR, TIMER_REG_FIRE_COUNT)) < count &&
           test_now_ns() < deadline)
        usleep(500);
    ck_assert_uint_eq(n, count);
}

static void expect_irq(int fd)
{
    uint64_t n = 0;
    int r = tu_eventfd_wait(fd, TU_TIMEOUT_MS, &n);
    ck_assert_msg(r == 1, "no interrupt within %d ms", TU_TIMEOUT_MS);
}

static void expect_no_irq(int fd)
{
    ck_assert_uint_eq(tu_eventfd_read(fd), 0);
}

static void clear_fired(void)
{
    tu_wr32(client, TIMER_REGS_BAR, TIMER_REG_STATUS, TIMER_STATUS_FIRED);
    ck_assert_uint_eq(tu_rd32(client, TIMER_REGS_BAR, TIMER_REG_STATUS), 0);
}

static uint8_t msix_enable(bool mask_all)
{
    uint8_t cap = tu_find_cap(client, PCI_CAP_ID_MSIX);
    uint16_t flags = tu_rd16(client, TU_CFG, cap + PCI_MSIX_FLAGS);
    ck_assert_uint_eq((flags & PCI_MSIX_FLAGS_QSIZE) + 1, TIMER_MSIX_VECTORS);
    tu_wr16(client, TU_CFG, cap + PCI_MSIX_FLAGS,
            PCI_MSIX_FLAGS_ENABLE | (mask_all ? PCI_MSIX_FLAGS_MASKALL : 0));
    return cap;
}

static uint64_t msix_entry_ctrl(uint32_t vector)
{
    return TIMER_MSIX_TABLE + vector * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL;
}

static void msix_set_masked(uint32_t vector, bool masked)
{
    tu_wr32(client, TIMER_MSIX_BAR, msix_entry_ctrl(vector),
            masked ? PCI_MSIX_ENTRY_CTRL_MASKBIT : 0);
}

static uint32_t msix_pba(void)
{
    return tu_rd32(client, TIMER_MSIX_BAR, TIMER_MSIX_PBA);
}

START_TEST(test_msix)
{
    int fds[2] = {tu_eventfd_checked(), tu_eventfd_checked()};
    ck_assert_int_eq(vfu_client_set_irqs(client, MSIX, TRIGGER_FD, 0, 2, fds, 2, NULL), 0);
    msix_enable(false);
    /* Entries come out of reset masked; a driver unmasks the ones it uses. */
    ck_assert_uint_eq(tu_rd32(client, TIMER_MSIX_BAR, msix_entry_ctrl(0)),
                      PCI_MSIX_ENTRY_CTRL_MASKBIT);
    msix_set_masked(0, false);
    msix_set_masked(1, false);

    arm(1, 1000000);
    expect_irq(fds[1]);
    expect_no_irq(fds[0]);
    ck_assert_uint_eq(tu_rd32(client, TIMER_REGS_BAR, TIMER_REG_FIRE_COUNT), 1);
    ck_assert_uint_eq(tu_rd32(client, TIMER_REGS_BAR, TIMER_REG_STATUS), TIMER_STATUS_FIRED);
    /* One-shot: disarmed after firing. */
    ck_assert_uint_eq(tu_rd32(client, TIMER_REGS_BAR, TIMER_REG_CTRL) & TIMER_CTRL_ENABLE, 0);
    clear_fired();

    arm(0, 1000000);
    expect_irq(fds[0]);
    expect_no_irq(fds[1]);
    ck_assert_uint_eq(msix_pba(), 0);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(test_msix_masked_vector_pends)
{
    int fds[2] = {tu_eventfd_checked(), tu_eventfd_checked()};
    ck_assert_int_eq(vfu_client_set_irqs(client, MSIX, TRIGGER_FD, 0, 2, fds, 2, NULL), 0);
    msix_enable(false);
    msix_set_masked(1, false);

    /* Vector 0 stays masked: the interrupt waits in the PBA. */
    arm(0, 100000);
    wait_fire_count(1);
    expect_no_irq(fds[0]);
    ck_assert_uint_eq(msix_pba(), 1u << 0);
    msix_set_masked(0, false);
    expect_irq(fds[0]);
    ck_assert_uint_eq(msix_pba(), 0);
    expect_no_irq(fds[1]);

    /* The function mask holds every vector back the same way. */
    uint8_t cap = tu_find_cap(client, PCI_CAP_ID_MSIX);
    tu_wr16(client, TU_CFG, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    clear_fired();
    arm(1, 100000);
    wait_fire_count(2);
    expect_no_irq(fds[1]);
    ck_assert_uint_eq(msix_pba(), 1u << 1);
    tu_wr16(client, TU_CFG, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE);
    expect_irq(fds[1]);
    ck_assert_uint_eq(msix_pba(), 0);
    expect_no_irq(fds[0]);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

/* A vector the client masks through SET_IRQS (VFIO's mask) is held, not lost. */
START_TEST(test_msix_set_irqs_mask)
{
    int fds[2] = {tu_eventfd_checked(), tu_eventfd_checked()};
    ck_assert_int_eq(vfu_client_set_irqs(client, MSIX, TRIGGER_FD, 0, 2, fds, 2, NULL), 0);
    msix_enable(false);
    msix_set_masked(0, false);
    ck_assert_int_eq(vfu_client_set_irqs(client, MSIX,
                                         VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, 0, 1,
                                         NULL, 0, NULL),
                     0);
    arm(0, 100000);
    wait_fire_count(1);
    expect_no_irq(fds[0]);
    ck_assert_int_eq(vfu_client_set_irqs(client, MSIX,
                                         VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 1,
                                         NULL, 0, NULL),
                     0);
    expect_irq(fds[0]);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(test_msi)
{
    int fd = tu_eventfd_checked();
    ck_assert_int_eq(vfu_client_set_irqs(client, MSI, TRIGGER_FD, 0, 1, &fd, 1, NULL), 0);
    uint8_t cap = tu_find_cap(client, PCI_CAP_ID_MSI);
    uint16_t flags = tu_rd16(client, TU_CFG, cap + PCI_MSI_FLAGS);
    ck_assert(flags & PCI_MSI_FLAGS_64BIT);
    ck_assert(flags & PCI_MSI_FLAGS_MASKBIT);
    tu_wr32(client, TU_CFG, cap + PCI_MSI_ADDRESS_LO, 0xfee00000u);
    tu_wr16(client, TU_CFG, cap + PCI_MSI_DATA_64, 0x4041);
    tu_wr16(client, TU_CFG, cap + PCI_MSI_FLAGS, flags | PCI_MSI_FLAGS_ENABLE);

    arm(0, 1000000);
    expect_irq(fd);
    clear_fired();

    /* Masked: the pending bit shows it, unmasking delivers it. */
    tu_wr32(client, TU_CFG, cap + PCI_MSI_MASK_64, 1);
    arm(0, 100000);
    wait_fire_count(2);
    expect_no_irq(fd);
    ck_assert_uint_eq(tu_rd32(client, TU_CFG, cap + PCI_MSI_PENDING_64), 1);
    tu_wr32(client, TU_CFG, cap + PCI_MSI_MASK_64, 0);
    expect_irq(fd);
    ck_assert_uint_eq(tu_rd32(client, TU_CFG, cap + PCI_MSI_PENDING_64), 0);

    /* MSI-X wins over MSI when both are on, as the host delivers it. */
    int xfds[2] = {tu_eventfd_checked(), tu_eventfd_checked()};
    ck_assert_int_eq(vfu_client_set_irqs(client, MSIX, TRIGGER_FD, 0, 2, xfds, 2, NULL), 0);
    msix_enable(false);
    msix_set_masked(0, false);
    clear_fired();
    arm(0, 100000);
    expect_irq(xfds[0]);
    expect_no_irq(fd);
    close(fd);
    close(xfds[0]);
    close(xfds[1]);
}
END_TEST

START_TEST(test_intx)
{
    int fd = tu_eventfd_checked();
    ck_assert_int_eq(vfu_client_set_irqs(client, INTX, TRIGGER_FD, 0, 1, &fd, 1, NULL), 0);
    ck_assert_uint_eq(tu_rd32(client, TU_CFG, PCI_INTERRUPT_LINE) >> 8 & 0xff, 1); /* INTA# */

    arm(0, 1000000);
    expect_irq(fd);
    ck_assert(tu_rd16(client, TU_CFG, PCI_STATUS) & PCI_STATUS_INTERRUPT);
    /* Clearing the device's status deasserts the line. */
    clear_fired();
    ck_assert(!(tu_rd16(client, TU_CFG, PCI_STATUS) & PCI_STATUS_INTERRUPT));

    /* INTx is automasked: the next one waits for the client's unmask. */
    arm(0, 100000);
    wait_fire_count(2);
    expect_no_irq(fd);
    ck_assert_int_eq(vfu_client_set_irqs(client, INTX,
                                         VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 1,
                                         NULL, 0, NULL),
                     0);
    expect_irq(fd);
    clear_fired();
    ck_assert_int_eq(vfu_client_set_irqs(client, INTX,
                                         VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 1,
                                         NULL, 0, NULL),
                     0);

    /* The guest disabled INTx: the status bit shows the request, no interrupt. */
    tu_wr16(client, TU_CFG, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE);
    arm(0, 100000);
    wait_fire_count(3);
    ck_assert(tu_rd16(client, TU_CFG, PCI_STATUS) & PCI_STATUS_INTERRUPT);
    expect_no_irq(fd);
    close(fd);
}
END_TEST

/* An unmask eventfd the client replaces: the old one, which the client still
 * holds and may write, is forgotten (no stale watch: ASan would see a freed
 * event source used), and the new one unmasks. */
START_TEST(test_intx_unmask_fd_replaced)
{
    const uint32_t unmask_fd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK;
    int fd = tu_eventfd_checked(), old = tu_eventfd_checked(), now = tu_eventfd_checked();
    ck_assert_int_eq(vfu_client_set_irqs(client, INTX, TRIGGER_FD, 0, 1, &fd, 1, NULL), 0);
    ck_assert_int_eq(vfu_client_set_irqs(client, INTX, unmask_fd, 0, 1, &old, 1, NULL), 0);
    ck_assert_int_eq(vfu_client_set_irqs(client, INTX, unmask_fd, 0, 1, &now, 1, NULL), 0);

    arm(0, 100000);
    expect_irq(fd);
    clear_fired();
    arm(0, 100000); /* automasked: waits for an unmask */
    wait_fire_count(2);
    uint64_t one = 1;
    ck_assert_int_eq(write(old, &one, sizeof(one)), sizeof(one));
    expect_no_irq(fd);
    ck_assert_int_eq(write(now, &one, sizeof(one)), sizeof(one));
    expect_irq(fd);
    close(fd);
    close(old);
    close(now);
}
END_TEST

START_TEST(test_periodic)
{
    int fds[2] = {tu_eventfd_checked(), tu_eventfd_checked()};
    ck_assert_int_eq(vfu_client_set_irqs(client, MSIX, TRIGGER_FD, 0, 2, fds, 2, NULL), 0);
    msix_enable(false);
    msix_set_masked(0, false);

    tu_wr64(client, TIMER_REGS_BAR, TIMER_REG_INTERVAL, 1000000);
    uint64_t now = tu_rd64(client, TIMER_REGS_BAR, TIMER_REG_NOW);
    tu_wr64(client, TIMER_REGS_BAR, TIMER_REG_DEADLINE, now + 1000000);
    tu_wr32(client, TIMER_REGS_BAR, TIMER_REG_CTRL, TIMER_CTRL_ENABLE | TIMER_CTRL_PERIODIC);

    uint64_t total = 0;
    uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    while (total < 5 && test_now_ns() < deadline) {
        uint64_t n = 0;
        if (tu_eventfd_wait(fds[0], 100, &n) == 1)
            total += n;
    }
    ck_assert_uint_ge(total, 5);
    ck_assert(tu_rd32(client, TIMER_REGS_BAR, TIMER_REG_CTRL) & TIMER_CTRL_ENABLE);

    /* Disarmed, it stops. */
    tu_wr32(client, TIMER_REGS_BAR, TIMER_REG_CTRL, 0);
    uint32_t count = tu_rd32(client, TIMER_REGS_BAR, TIMER_REG_FIRE_COUNT);
    ck_assert_uint_ge(count, 5);
    usleep(20000);
    ck_assert_uint_eq(tu_rd32(client, TIMER_REGS_BAR, TIMER_REG_FIRE_COUNT), count);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

/* Each device's interrupts reach its own client only. */
START_TEST(test_devices_independent)
{
    struct vfu_client *other = tu_open(daemon_, "t1");
    int mine = tu_eventfd_checked(), theirs = tu_eventfd_checked();
    ck_assert_int_eq(vfu_client_set_irqs(client, INTX, TRIGGER_FD, 0, 1, &mine, 1, NULL), 0);
    ck_assert_int_eq(vfu_client_set_irqs(other, INTX, TRIGGER_FD, 0, 1, &theirs, 1, NULL), 0);
    arm(0, 100000);
    expect_irq(mine);
    ck_assert_uint_eq(tu_rd32(other, TIMER_REGS_BAR, TIMER_REG_FIRE_COUNT), 0);
    expect_no_irq(theirs);
    close(mine);
    close(theirs);
    vfu_client_free(other);
}
END_TEST

static Suite *interrupts_suite(void)
{
    Suite *s = suite_create("interrupts");
    TCase *tc = tcase_create("timer");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_msix);
    tcase_add_test(tc, test_msix_masked_vector_pends);
    tcase_add_test(tc, test_msix_set_irqs_mask);
    tcase_add_test(tc, test_msi);
    tcase_add_test(tc, test_intx);
    tcase_add_test(tc, test_intx_unmask_fd_replaced);
    tcase_add_test(tc, test_periodic);
    tcase_add_test(tc, test_devices_independent);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(interrupts_suite());
}
