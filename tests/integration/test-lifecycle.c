/* SPDX-License-Identifier: MIT */
/*
 * The daemon's life: a clean exit at SIGTERM/SIGINT that removes the sockets
 * (with clients still attached), device state that survives a client's
 * disconnect while its DMA maps and interrupt eventfds do not, and a refusal
 * to start, with a message naming the problem, on a bad command line or config.
 */
#include <check.h>
#include <errno.h>
#include <linux/pci_regs.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../plugins/ram/ram-regs.h"
#include "../../plugins/timer/timer-regs.h"
#include "helpers/testutil.h"

#define IOVA 0x40000000ull
#define RW   (VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE)

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void stop_with(struct test_daemon *d, int sig)
{
    char t0[4096], r0[4096];
    snprintf(t0, sizeof(t0), "%s", test_daemon_socket(d, "t0"));
    snprintf(r0, sizeof(r0), "%s", test_daemon_socket(d, "r0"));
    ck_assert(exists(t0) && exists(r0));

    /* Clients attached, with DMA maps and interrupt eventfds: all of it is
     * torn down without a leak. */
    struct vfu_client *t = tu_open(d, "t0");
    struct vfu_client *r = tu_open(d, "r0");
    int efd = tu_eventfd_checked();
    ck_assert_int_eq(vfu_client_set_irqs(t, VFIO_PCI_INTX_IRQ_INDEX,
                                         VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0,
                                         1, &efd, 1, NULL),
                     0);
    void *mem;
    int memfd = tu_memfd(65536, &mem);
    ck_assert_int_ge(memfd, 0);
    ck_assert_int_eq(vfu_client_dma_map(r, IOVA, 65536, RW, memfd, 0), 0);
    static uint8_t local[65536];
    ck_assert_int_eq(vfu_client_dma_map_local(r, IOVA + 0x100000, sizeof(local), RW, local), 0);
    /* A periodic timer keeps the loop busy while the signal arrives. */
    tu_wr64(t, TIMER_REGS_BAR, TIMER_REG_INTERVAL, 100000);
    tu_wr32(t, TIMER_REGS_BAR, TIMER_REG_CTRL, TIMER_CTRL_ENABLE | TIMER_CTRL_PERIODIC);

    int status = -1;
    ck_assert_int_eq(kill(test_daemon_pid(d), sig), 0);
    /* Exiting at `sig` removes the sockets; only then may the helper's
     * SIGTERM follow, so that it is `sig` we test. */
    uint64_t deadline = test_now_ns() + 10000 * 1000000ull;
    while ((exists(t0) || exists(r0)) && test_now_ns() < deadline)
        usleep(1000);
    int r_stop = test_daemon_stop(d, 15000, &status);
    if (r_stop < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        test_daemon_dump_log(d, 16384);
    ck_assert_int_eq(r_stop, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "muserd exit status %#x", status);
    ck_assert_msg(!exists(t0) && !exists(r0), "sockets left behind after exit");

    /* The clients see the end of the stream, not a hang. */
    ck_assert_int_eq(tu_wait_closed(vfu_client_fd(t), TU_TIMEOUT_MS), 1);
    vfu_client_free(t);
    vfu_client_free(r);
    close(efd);
    close(memfd);
    munmap(mem, 65536);
    test_daemon_free(d);
}

START_TEST(test_sigterm_clean_exit)
{
    stop_with(tu_daemon("timer", "t0", NULL, "ram", "r0", NULL), SIGTERM);
}
END_TEST

START_TEST(test_sigint_clean_exit)
{
    stop_with(tu_daemon("timer", "t0", NULL, "ram", "r0", NULL), SIGINT);
}
END_TEST

START_TEST(test_no_devices)
{
    struct test_daemon *d = tu_daemon(NULL);
    tu_stop(d);
}
END_TEST

/* Fire the timer once and wait for it through the fire count. */
static void fire_once(struct vfu_client *c, uint32_t expect_count)
{
    uint64_t now = tu_rd64(c, TIMER_REGS_BAR, TIMER_REG_NOW);
    tu_wr64(c, TIMER_REGS_BAR, TIMER_REG_DEADLINE, now + 100000);
    tu_wr32(c, TIMER_REGS_BAR, TIMER_REG_CTRL, TIMER_CTRL_ENABLE);
    uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    uint32_t n;
    while ((n = tu_rd32(c, TIMER_REGS_BAR, TIMER_REG_FIRE_COUNT)) < expect_count &&
           test_now_ns() < deadline)
        usleep(500);
    ck_assert_uint_eq(n, expect_count);
}

START_TEST(test_reconnect_keeps_device_state)
{
    struct test_daemon *d = tu_daemon("timer", "t0", NULL, "ram", "r0", NULL);

    /* First client: program the devices, share memory, wire an interrupt. */
    struct vfu_client *t = tu_open(d, "t0");
    int old_irq = tu_eventfd_checked();
    ck_assert_int_eq(vfu_client_set_irqs(t, VFIO_PCI_INTX_IRQ_INDEX,
                                         VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0,
                                         1, &old_irq, 1, NULL),
                     0);
    tu_wr64(t, TIMER_REGS_BAR, TIMER_REG_INTERVAL, 987654321);
    tu_wr32(t, TIMER_REGS_BAR, TIMER_REG_VECTOR, 1);
    tu_wr32(t, TU_CFG, PCI_BASE_ADDRESS_0, 0xfe000000u);
    fire_once(t, 1);
    uint64_t n = 0;
    ck_assert_int_eq(tu_eventfd_wait(old_irq, TU_TIMEOUT_MS, &n), 1);
    tu_wr32(t, TIMER_REGS_BAR, TIMER_REG_STATUS, TIMER_STATUS_FIRED);
    uint64_t now_before = tu_rd64(t, TIMER_REGS_BAR, TIMER_REG_NOW);
    vfu_client_free(t);

    struct vfu_client *r = tu_open(d, "r0");
    void *mem;
    int memfd = tu_memfd(65536, &mem);
    ck_assert_int_ge(memfd, 0);
    memset(mem, 0x5c, 65536);
    ck_assert_int_eq(vfu_client_dma_map(r, IOVA, 65536, RW, memfd, 0), 0);
    tu_wr32(r, RAM_REGS_BAR, RAM_REG_SCRATCH, 0xc0ffee);
    ck_assert_int_eq(vfu_client_region_write(r, RAM_MEM_BAR, 0x800, "persistent", 10), 0);
    vfu_client_free(r);

    /* Second client: the device state is there. */
    t = tu_open(d, "t0");
    ck_assert_uint_eq(tu_rd64(t, TIMER_REGS_BAR, TIMER_REG_INTERVAL), 987654321);
    ck_assert_uint_eq(tu_rd32(t, TIMER_REGS_BAR, TIMER_REG_VECTOR), 1);
    ck_assert_uint_eq(tu_rd32(t, TIMER_REGS_BAR, TIMER_REG_FIRE_COUNT), 1);
    ck_assert_uint_eq(tu_rd32(t, TU_CFG, PCI_BASE_ADDRESS_0), 0xfe000000u);
    ck_assert_uint_ge(tu_rd64(t, TIMER_REGS_BAR, TIMER_REG_NOW), now_before);
    /* ... but the first client's eventfd is no longer signalled. */
    fire_once(t, 2);
    ck_assert_uint_eq(tu_eventfd_read(old_irq), 0);
    vfu_client_free(t);

    r = tu_open(d, "r0");
    ck_assert_uint_eq(tu_rd32(r, RAM_REGS_BAR, RAM_REG_SCRATCH), 0xc0ffee);
    char back[10];
    ck_assert_int_eq(vfu_client_region_read(r, RAM_MEM_BAR, 0x800, back, sizeof(back)), 0);
    ck_assert_mem_eq(back, "persistent", 10);
    /* ... and the first client's DMA map is gone: the engine fails cleanly. */
    tu_wr64(r, RAM_REGS_BAR, RAM_REG_DMA_ADDR, IOVA);
    tu_wr32(r, RAM_REGS_BAR, RAM_REG_DMA_LEN, 4096);
    tu_wr32(r, RAM_REGS_BAR, RAM_REG_DMA_CTRL, RAM_DMA_CTRL_GO);
    uint32_t status = tu_wait_clear32(r, RAM_REGS_BAR, RAM_REG_DMA_STATUS, RAM_DMA_STATUS_BUSY);
    ck_assert_msg(status & RAM_DMA_STATUS_ERROR, "DMA through a departed client's map: %#x",
                  status);
    /* The same range can be mapped anew. */
    ck_assert_int_eq(vfu_client_dma_map(r, IOVA, 65536, RW, memfd, 0), 0);
    tu_wr32(r, RAM_REGS_BAR, RAM_REG_DMA_STATUS, RAM_DMA_STATUS_ERROR);
    tu_wr32(r, RAM_REGS_BAR, RAM_REG_DMA_CTRL, RAM_DMA_CTRL_GO);
    ck_assert_uint_eq(tu_wait_clear32(r, RAM_REGS_BAR, RAM_REG_DMA_STATUS, RAM_DMA_STATUS_BUSY),
                      RAM_DMA_STATUS_DONE);
    ck_assert_int_eq(vfu_client_region_read(r, RAM_MEM_BAR, 0x800, back, sizeof(back)), 0);
    ck_assert_uint_eq((uint8_t)back[0], 0x5c);
    vfu_client_free(r);

    close(old_irq);
    close(memfd);
    munmap(mem, 65536);
    tu_stop(d);
}
END_TEST

/* Many connect/disconnect cycles leave nothing behind. */
START_TEST(test_reconnect_many)
{
    struct test_daemon *d = tu_daemon("ram", "r0", "{\"size\":65536}");
    void *mem;
    int memfd = tu_memfd(65536, &mem);
    ck_assert_int_ge(memfd, 0);
    int fds_before = -1;
    for (int i = 0; i < 50; i++) {
        struct vfu_client *c = tu_open(d, "r0");
        if (i == 0)
            fds_before = tu_count_fds(test_daemon_pid(d));
        ck_assert_int_eq(vfu_client_dma_map(c, IOVA, 65536, RW, memfd, 0), 0);
        int efd = tu_eventfd_checked();
        ck_assert_int_eq(
            vfu_client_set_irqs(c, VFIO_PCI_MSIX_IRQ_INDEX,
                                VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 1, &efd,
                                1, NULL),
            0);
        ck_assert_uint_eq(tu_rd32(c, RAM_REGS_BAR, RAM_REG_SCRATCH), (uint32_t)i);
        tu_wr32(c, RAM_REGS_BAR, RAM_REG_SCRATCH, (uint32_t)i + 1);
        close(efd);
        vfu_client_free(c);
    }
    struct vfu_client *c = tu_open(d, "r0");
    ck_assert_int_eq(tu_count_fds(test_daemon_pid(d)), fds_before);
    vfu_client_free(c);
    close(memfd);
    munmap(mem, 65536);
    tu_stop(d);
}
END_TEST

/* A VMM that reconnects the moment it hung up (no retry, no pause) is served:
 * its own old connection must not count as "another client", even when the
 * daemon accepts the new connection before it has noticed the old one end. */
START_TEST(test_reconnect_at_once)
{
    struct test_daemon *d = tu_daemon("timer", "t0", NULL);
    for (int i = 0; i < 20; i++) {
        /* Probes that connect and hang up at once pile up in the backlog. */
        for (int k = 0; k < 3; k++) {
            int fd = tu_raw_connect(test_daemon_socket(d, "t0"), false);
            ck_assert_int_ge(fd, 0);
            close(fd);
        }
        struct vfu_client *c;
        ck_assert_int_eq(vfu_client_connect(test_daemon_socket(d, "t0"), &c), 0);
        ck_assert_int_eq(tu_set_socket_timeout(vfu_client_fd(c), TU_RECV_TIMEOUT_MS), 0);
        int r = vfu_client_negotiate(c, vfu_client_qemu_caps_json, NULL);
        ck_assert_msg(r == 0, "round %d: a client right after hung-up ones was refused: %s", i,
                      strerror(-r));
        ck_assert_uint_eq(tu_rd32(c, TIMER_REGS_BAR, TIMER_REG_ID), TIMER_ID_MAGIC);
        vfu_client_free(c);
    }
    tu_stop(d);
}
END_TEST

/* A daemon with these arguments must refuse to start and say `needle`. */
static void expect_refusal(const char *const *args, const char *needle)
{
    struct test_daemon *d;
    ck_assert_int_eq(test_daemon_new(&d), 0);
    for (size_t i = 0; args[i]; i++)
        ck_assert_int_eq(test_daemon_add_arg(d, args[i]), 0);
    int code = tu_expect_start_failure(d);
    if (code == 0)
        test_daemon_dump_log(d, 4096);
    ck_assert_msg(code != 0, "muserd exited 0 for %s", args[1] ? args[1] : args[0]);
    tu_assert_log(d, needle);
    test_daemon_free(d);
}
#define REFUSE(needle, ...) expect_refusal((const char *const[]){__VA_ARGS__, NULL}, needle)

START_TEST(test_bad_device_argument)
{
    REFUSE("nocolon", "--device", "nocolon");
    REFUSE("--device", "--device", "timer:");
    REFUSE("nosuchtype", "--device", "nosuchtype:x0");
    REFUSE("frobnicate", "--frobnicate");
    REFUSE("loud", "--log-level", "loud");
    /* An id must not leave the runtime directory. */
    REFUSE("../escape", "--device", "timer:../escape");
    /* Two devices, one id. */
    REFUSE("'twin' already exists", "--device", "timer:twin", "--device", "ram:twin");
}
END_TEST

START_TEST(test_bad_device_config)
{
    REFUSE("\"size\"", "--device", "ram:r0:{\"size\":3}");
    REFUSE("\"size\"", "--device", "ram:r0:{\"size\":2147483648}");
    REFUSE("size", "--device", "ram:r0:{\"size\":\"big\"}");
    REFUSE("size", "--device", "ram:r0:{\"size\":-4096}");
    REFUSE("'bogus'", "--device", "ram:r0:{\"bogus\":1}");
    REFUSE("'size'", "--device", "timer:t0:{\"size\":1}");
    REFUSE("JSON", "--device", "ram:r0:{\"size\":");
    REFUSE("JSON object", "--device", "ram:r0:[1]");
}
END_TEST

/* One bad device among good ones: the daemon refuses as a whole and leaves
 * no socket of the good ones behind. */
START_TEST(test_bad_device_among_good)
{
    struct test_daemon *d;
    ck_assert_int_eq(test_daemon_new(&d), 0);
    ck_assert_int_eq(test_daemon_add_device(d, "timer", "t0", NULL), 0);
    ck_assert_int_eq(test_daemon_add_device(d, "ram", "r0", "{\"bogus\":true}"), 0);
    ck_assert_int_ne(tu_expect_start_failure(d), 0);
    tu_assert_log(d, "r0");
    tu_assert_log(d, "bogus");
    ck_assert(!exists(test_daemon_socket(d, "t0")));
    test_daemon_free(d);
}
END_TEST

static Suite *lifecycle_suite(void)
{
    Suite *s = suite_create("lifecycle");
    TCase *tc = tcase_create("daemon");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_sigterm_clean_exit);
    tcase_add_test(tc, test_sigint_clean_exit);
    tcase_add_test(tc, test_no_devices);
    tcase_add_test(tc, test_reconnect_keeps_device_state);
    tcase_add_test(tc, test_reconnect_many);
    tcase_add_test(tc, test_reconnect_at_once);
    tcase_add_test(tc, test_bad_device_argument);
    tcase_add_test(tc, test_bad_device_config);
    tcase_add_test(tc, test_bad_device_among_good);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(lifecycle_suite());
}
