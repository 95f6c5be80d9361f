/* SPDX-License-Identifier: MIT */
/*
 * The races ABI 2 makes possible, against the real muserd (--io-threads 2)
 * and the storm test plugin, whose own threads raise interrupts and hold
 * guest memory: a raise while the client masks, an unmap while the device
 * holds the memory, a destroy while everything runs, and D-Bus while both
 * I/O threads are busy. The suite also runs under ThreadSanitizer.
 */
#include <check.h>
#include <errno.h>
#include <linux/pci_regs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../plugins/storm-regs.h"
#include "helpers/dbus-daemon.h"
#include "helpers/testutil.h"

#define NAME         "org.muserd1"
#define MANAGER_PATH "/org/muserd1"
#define MANAGER      "org.muserd1.Manager"
#define MSIX         VFIO_PCI_MSIX_IRQ_INDEX

static struct test_bus *tbus;
static struct test_daemon *daemon_;
static sd_bus *bus;

static void setup(void)
{
    int r = test_bus_start(NULL, &tbus);
    ck_assert_msg(r == 0, "starting dbus-daemon: %s", strerror(-r));
    ck_assert_int_eq(test_daemon_new(&daemon_), 0);
    int k = tu_plugin_dir(daemon_, (const char *const[]){"test:storm", NULL});
    ck_assert_msg(k == 0, "plugin directory: %s (build the plugins with make)", strerror(-k));
    const char *args[] = {"--io-threads", "2", "--bus-address", test_bus_address(tbus)};
    for (size_t i = 0; i < ELEMENTSOF(args); i++)
        ck_assert_int_eq(test_daemon_add_arg(daemon_, args[i]), 0);
    ck_assert_int_eq(test_daemon_add_device(daemon_, "storm", "s0", "{\"io_thread\": 0}"), 0);
    ck_assert_int_eq(test_daemon_add_device(daemon_, "storm", "s1", "{\"io_thread\": 1}"), 0);
    tu_start(daemon_);
    ck_assert_int_eq(test_bus_connect(test_bus_address(tbus), &bus), 0);
}

static void teardown(void)
{
    bus = sd_bus_flush_close_unref(bus);
    if (daemon_)
        tu_stop(daemon_);
    daemon_ = NULL;
    test_bus_free(tbus);
    tbus = NULL;
}

static void set_msix_mask(struct vfu_client *c, bool masked)
{
    uint32_t action = masked ? VFIO_IRQ_SET_ACTION_MASK : VFIO_IRQ_SET_ACTION_UNMASK;
    ck_assert_int_eq(
        vfu_client_set_irqs(c, MSIX, VFIO_IRQ_SET_DATA_NONE | action, 0, 1, NULL, 0, NULL), 0);
}

/* MSI-X on with an eventfd on vector 0; the raiser thread running. */
static int start_storm(struct vfu_client *c)
{
    int efd = tu_eventfd_checked();
    ck_assert_int_eq(vfu_client_set_irqs(c, MSIX,
                                         VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0,
                                         1, &efd, 1, NULL),
                     0);
    uint8_t cap = tu_find_cap(c, PCI_CAP_ID_MSIX);
    tu_wr16(c, TU_CFG, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE);
    tu_wr32(c, STORM_REGS_BAR, STORM_REG_CTRL, STORM_CTRL_RAISE);
    uint64_t n = 0;
    ck_assert_msg(tu_eventfd_wait(efd, TU_TIMEOUT_MS, &n) == 1, "the raiser thread raised nothing");
    return efd;
}

static uint32_t hold(struct vfu_client *c, uint64_t iova, uint64_t len, uint32_t ms)
{
    tu_wr64(c, STORM_REGS_BAR, STORM_REG_HOLD_IOVA, iova);
    tu_wr64(c, STORM_REGS_BAR, STORM_REG_HOLD_LEN, len);
    tu_wr32(c, STORM_REGS_BAR, STORM_REG_HOLD_MS, ms);
    tu_wr32(c, STORM_REGS_BAR, STORM_REG_CTRL, STORM_CTRL_HOLD);
    uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    uint32_t status;
    while ((status = tu_rd32(c, STORM_REGS_BAR, STORM_REG_HOLD_STATUS)) == STORM_HOLD_IDLE &&
           test_now_ns() < deadline)
        usleep(200);
    return status;
}

/* A raise from the device's own thread that begins after the client's mask
 * request was answered is held, never delivered; unmasking delivers what was
 * held; nothing is lost. */
START_TEST(test_raise_during_mask)
{
    struct vfu_client *c = tu_open(daemon_, "s0");
    int efd = start_storm(c);

    for (int round = 0; round < 50; round++) {
        set_msix_mask(c, true);
        (void)tu_eventfd_read(efd); /* raised before the mask took effect */
        usleep(2000);               /* the raiser goes on meanwhile */
        ck_assert_msg(tu_eventfd_read(efd) == 0,
                      "round %d: an interrupt arrived while the client had it masked", round);
        set_msix_mask(c, false);
        uint64_t n = 0;
        ck_assert_msg(tu_eventfd_wait(efd, TU_TIMEOUT_MS, &n) == 1,
                      "round %d: nothing arrived after unmasking", round);
    }

    /* Held while masked, with the raiser stopped: exactly the pending one.
     * Two more raises counted after the mask's reply prove one was made
     * while masked (on a loaded machine the raiser may not run at all
     * between the two messages otherwise). */
    set_msix_mask(c, true);
    uint64_t before = tu_rd64(c, STORM_REGS_BAR, STORM_REG_RAISES);
    uint64_t end = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    while (tu_rd64(c, STORM_REGS_BAR, STORM_REG_RAISES) < before + 2 && test_now_ns() < end)
        usleep(100);
    tu_wr32(c, STORM_REGS_BAR, STORM_REG_CTRL, 0);
    (void)tu_eventfd_read(efd);
    usleep(2000);
    ck_assert_uint_eq(tu_eventfd_read(efd), 0);
    set_msix_mask(c, false);
    uint64_t n = 0;
    ck_assert_msg(tu_eventfd_wait(efd, TU_TIMEOUT_MS, &n) == 1, "the pending raise was lost");
    usleep(5000);
    ck_assert_uint_eq(tu_eventfd_read(efd), 0);
    ck_assert_uint_gt(tu_rd64(c, STORM_REGS_BAR, STORM_REG_RAISES), 50);
    /* The raiser woke the poller from its thread; stopped, the poller
     * sleeps (1 ms idle) and its rounds stop. */
    ck_assert_uint_gt(tu_rd64(c, STORM_REGS_BAR, STORM_REG_POLLS), 0);
    usleep(50 * 1000);
    uint64_t polls = tu_rd64(c, STORM_REGS_BAR, STORM_REG_POLLS);
    usleep(50 * 1000);
    ck_assert_uint_eq(tu_rd64(c, STORM_REGS_BAR, STORM_REG_POLLS), polls);
    /* One wake from another thread (the holder, ending at once: nothing
     * is mapped) wakes the sleeping poller. */
    ck_assert_uint_eq(hold(c, 0, 4096, 0), 0x100u + ENOTCONN);
    uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    while (tu_rd64(c, STORM_REGS_BAR, STORM_REG_POLLS) == polls && test_now_ns() < deadline)
        usleep(1000);
    ck_assert_msg(tu_rd64(c, STORM_REGS_BAR, STORM_REG_POLLS) > polls,
                  "a poller_wake() from another thread was lost");
    close(efd);
    vfu_client_free(c);
}
END_TEST

/* The guest masks the whole function in config space while the plugin's
 * thread raises: the raise goes through the PCI model, sets the PBA bit,
 * and unmasking the function delivers it. */
START_TEST(test_raise_during_function_mask)
{
    struct vfu_client *c = tu_open(daemon_, "s1");
    int efd = start_storm(c);
    uint8_t cap = tu_find_cap(c, PCI_CAP_ID_MSIX);

    for (int round = 0; round < 20; round++) {
        tu_wr16(c, TU_CFG, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
        (void)tu_eventfd_read(efd);
        uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
        while (!(tu_rd32(c, STORM_MSIX_BAR, STORM_MSIX_PBA) & 1) && test_now_ns() < deadline)
            usleep(200);
        ck_assert_msg(tu_rd32(c, STORM_MSIX_BAR, STORM_MSIX_PBA) & 1,
                      "round %d: a raise while masked left no pending bit", round);
        ck_assert_msg(tu_eventfd_read(efd) == 0, "round %d: delivered while masked", round);
        tu_wr16(c, TU_CFG, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE);
        uint64_t n = 0;
        ck_assert_msg(tu_eventfd_wait(efd, TU_TIMEOUT_MS, &n) == 1,
                      "round %d: nothing arrived after unmasking", round);
    }
    tu_wr32(c, STORM_REGS_BAR, STORM_REG_CTRL, 0);
    close(efd);
    vfu_client_free(c);
}
END_TEST

/* The spec: DMA in flight ends before the DMA_UNMAP reply. The device holds
 * guest memory for 300 ms from its own thread; the unmap is answered only
 * after it let go, and what it wrote reached the client's memory. */
START_TEST(test_unmap_waits_for_dma_in_flight)
{
    struct vfu_client *c = tu_open(daemon_, "s0");
    const size_t size = 1 << 20;
    const uint64_t iova = 0x10000000;
    void *mem;
    int fd = tu_memfd(size, &mem);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(
        vfu_client_dma_map(c, iova, size, VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE, fd, 0), 0);
    close(fd);

    ck_assert_uint_eq(hold(c, iova + 4096, 8192, 300), STORM_HOLD_HOLDING);
    ck_assert_int_eq(vfu_client_dma_unmap(c, iova, size, 0), 0);
    /* DONE, not HOLDING: the reply came after the device let go (timing
     * would prove nothing on a slow machine; the order does). */
    ck_assert_uint_eq(tu_rd32(c, STORM_REGS_BAR, STORM_REG_HOLD_STATUS), STORM_HOLD_DONE);
    const uint8_t *p = mem;
    for (size_t i = 0; i < 8192; i++)
        ck_assert_uint_eq(p[4096 + i], STORM_HOLD_BYTE);
    ck_assert_uint_eq(p[0], 0);

    /* Unmapped now: the next hold finds nothing (nothing at all is mapped). */
    ck_assert_uint_eq(hold(c, iova, 4096, 0), 0x100u + ENOTCONN);
    /* An unmap of memory nobody holds is answered at once. */
    munmap(mem, size);
    fd = tu_memfd(size, &mem);
    ck_assert_int_eq(vfu_client_dma_map(c, iova, size, VFU_DMA_FLAG_READ, fd, 0), 0);
    close(fd);
    ck_assert_int_eq(vfu_client_dma_unmap(c, iova, size, 0), 0);
    munmap(mem, size);
    vfu_client_free(c);
}
END_TEST

/* A client that goes away while the device holds its memory: the daemon
 * keeps the mapping until the device lets go, and serves the next client. */
START_TEST(test_disconnect_during_dma)
{
    struct vfu_client *c = tu_open(daemon_, "s1");
    void *mem;
    int fd = tu_memfd(1 << 16, &mem);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(vfu_client_dma_map(c, 0, 1 << 16, VFU_DMA_FLAG_WRITE, fd, 0), 0);
    close(fd);
    ck_assert_uint_eq(hold(c, 0, 1 << 16, 200), STORM_HOLD_HOLDING);
    vfu_client_free(c);
    munmap(mem, 1 << 16);
    c = tu_open(daemon_, "s1");
    uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    while (tu_rd32(c, STORM_REGS_BAR, STORM_REG_HOLD_STATUS) != STORM_HOLD_DONE &&
           test_now_ns() < deadline)
        usleep(1000);
    ck_assert_uint_eq(tu_rd32(c, STORM_REGS_BAR, STORM_REG_HOLD_STATUS), STORM_HOLD_DONE);
    vfu_client_free(c);
}
END_TEST

struct reader {
    struct vfu_client *c;
    atomic_bool stop;
    unsigned long ok;
};

static void *read_loop(void *arg)
{
    struct reader *r = arg;
    uint64_t v;
    while (!atomic_load(&r->stop) &&
           vfu_client_region_read(r->c, STORM_REGS_BAR, STORM_REG_RAISES, &v, 8) == 0)
        r->ok++;
    return NULL;
}

static int bus_call(const char *method, const char *types, const char *a, const char *b,
                    const char *c, char **error_name)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    int r =
        types ? sd_bus_call_method(bus, NAME, MANAGER_PATH, MANAGER, method, &error, &reply, types,
                                   a, b, c)
              : sd_bus_call_method(bus, NAME, MANAGER_PATH, MANAGER, method, &error, &reply, NULL);
    if (error_name)
        *error_name = r < 0 && error.name ? strdup(error.name) : NULL;
    sd_bus_error_free(&error);
    sd_bus_message_unref(reply);
    return r;
}

/* DestroyDevice while the device's thread answers a client flat out, its
 * raiser thread raises and its holder thread holds guest memory: the reply
 * comes, the client is dropped, the other device goes on. */
START_TEST(test_destroy_during_io)
{
    struct reader rd = {.c = tu_open(daemon_, "s0")};
    int efd = start_storm(rd.c);
    void *mem;
    int fd = tu_memfd(1 << 16, &mem);
    ck_assert_int_eq(vfu_client_dma_map(rd.c, 0, 1 << 16, VFU_DMA_FLAG_WRITE, fd, 0), 0);
    close(fd);
    ck_assert_uint_eq(hold(rd.c, 0, 4096, 300), STORM_HOLD_HOLDING);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, read_loop, &rd), 0);
    usleep(50 * 1000);

    ck_assert_int_ge(bus_call("DestroyDevice", "s", "s0", NULL, NULL, NULL), 0);
    pthread_join(t, NULL); /* its reads fail once the device is gone */
    ck_assert_uint_gt(rd.ok, 0);
    ck_assert_int_eq(tu_wait_closed(vfu_client_fd(rd.c), TU_TIMEOUT_MS), 1);

    struct vfu_client *other = tu_open(daemon_, "s1");
    ck_assert_uint_eq(tu_rd32(other, STORM_REGS_BAR, STORM_REG_HOLD_STATUS), STORM_HOLD_IDLE);
    /* The id is free again. */
    ck_assert_int_ge(bus_call("CreateDevice", "sss", "storm", "s0", "", NULL), 0);
    vfu_client_free(other);
    vfu_client_free(rd.c);
    close(efd);
    munmap(mem, 1 << 16);
}
END_TEST

/* Both I/O threads busy (raisers flat out, clients reading without pause):
 * D-Bus still answers every call, creates and destroys included. */
START_TEST(test_dbus_during_load)
{
    struct reader rd[2] = {{.c = tu_open(daemon_, "s0")}, {.c = tu_open(daemon_, "s1")}};
    int efd[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        efd[i] = start_storm(rd[i].c);
        ck_assert_int_eq(pthread_create(&t[i], NULL, read_loop, &rd[i]), 0);
    }
    for (int i = 0; i < 100; i++) {
        char *err = NULL;
        ck_assert_int_ge(bus_call("ListDevices", NULL, NULL, NULL, NULL, &err), 0);
        if (i % 10 == 0) {
            char id[16];
            snprintf(id, sizeof(id), "x%d", i);
            int r = bus_call("CreateDevice", "sss", "storm", id, "", &err);
            ck_assert_msg(r >= 0, "CreateDevice under load: %s", err);
            ck_assert_int_ge(bus_call("DestroyDevice", "s", id, NULL, NULL, &err), 0);
        }
        free(err);
    }
    for (int i = 0; i < 2; i++) {
        atomic_store(&rd[i].stop, true);
        pthread_join(t[i], NULL);
        ck_assert_uint_gt(rd[i].ok, 0);
        tu_wr32(rd[i].c, STORM_REGS_BAR, STORM_REG_CTRL, 0);
        close(efd[i]);
        vfu_client_free(rd[i].c);
    }
}
END_TEST

/* A reset waits until the plugin is quiet: storm answers quiesce with
 * -EBUSY while it holds guest memory and calls quiesce_done() when it let
 * go. Both the client's DEVICE_RESET and the by_operator's Reset wait. */
START_TEST(test_reset_waits_for_quiesce)
{
    struct vfu_client *c = tu_open(daemon_, "s0");
    void *mem;
    int fd = tu_memfd(1 << 16, &mem);
    ck_assert_int_eq(vfu_client_dma_map(c, 0, 1 << 16, VFU_DMA_FLAG_WRITE, fd, 0), 0);
    close(fd);

    for (int by_operator = 0; by_operator < 2; by_operator++) {
        ck_assert_uint_eq(hold(c, 0, 4096, 300), STORM_HOLD_HOLDING);
        if (by_operator) {
            sd_bus_error error = SD_BUS_ERROR_NULL;
            int r = sd_bus_call_method(bus, NAME, "/org/muserd1/device/s0", "org.muserd1.Device",
                                       "Reset", &error, NULL, NULL);
            ck_assert_msg(r >= 0, "Reset: %s", error.message);
        } else {
            ck_assert_int_eq(vfu_client_reset(c), 0);
        }
        /* storm counts a reset that reached it while it still held memory. */
        ck_assert_msg(tu_rd32(c, STORM_REGS_BAR, STORM_REG_EARLY_RESETS) == 0,
                      "%s reached the plugin before it was quiet",
                      by_operator ? "Reset" : "DEVICE_RESET");
        ck_assert_uint_eq(tu_rd32(c, STORM_REGS_BAR, STORM_REG_HOLD_STATUS), STORM_HOLD_IDLE);
    }
    /* Nothing held: at once. */
    ck_assert_int_eq(vfu_client_reset(c), 0);
    munmap(mem, 1 << 16);
    vfu_client_free(c);
}
END_TEST

/* A DEVICE_RESET still waiting when its client hangs up dies with it: the
 * next client's setup is not reset under it when the plugin gets quiet. */
START_TEST(test_reset_dies_with_its_client)
{
    struct vfu_client *c = tu_open(daemon_, "s1");
    void *mem;
    int fd = tu_memfd(1 << 16, &mem);
    ck_assert_int_eq(vfu_client_dma_map(c, 0, 1 << 16, VFU_DMA_FLAG_WRITE, fd, 0), 0);
    close(fd);
    ck_assert_uint_eq(hold(c, 0, 4096, 300), STORM_HOLD_HOLDING);
    uint16_t id;
    ck_assert_int_eq(vfu_client_send_cmd(c, VFU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0, &id), 0);
    usleep(20 * 1000); /* the reset is waiting for the hold now */
    vfu_client_free(c);
    munmap(mem, 1 << 16);

    c = tu_open(daemon_, "s1");
    tu_wr64(c, STORM_REGS_BAR, STORM_REG_HOLD_IOVA, 0x1234000);
    uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    while (tu_rd32(c, STORM_REGS_BAR, STORM_REG_HOLD_STATUS) != STORM_HOLD_DONE &&
           test_now_ns() < deadline)
        usleep(1000);
    usleep(50 * 1000); /* the quiesce is done and handled by now */
    ck_assert_uint_eq(tu_rd32(c, STORM_REGS_BAR, STORM_REG_HOLD_STATUS), STORM_HOLD_DONE);
    ck_assert_uint_eq(tu_rd64(c, STORM_REGS_BAR, STORM_REG_HOLD_IOVA), 0x1234000);
    /* And the device takes a reset of its own again. */
    ck_assert_int_eq(vfu_client_reset(c), 0);
    ck_assert_uint_eq(tu_rd64(c, STORM_REGS_BAR, STORM_REG_HOLD_IOVA), 0);
    vfu_client_free(c);
}
END_TEST

static Suite *races_suite(void)
{
    Suite *s = suite_create("races");
    TCase *tc = tcase_create("races");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_raise_during_mask);
    tcase_add_test(tc, test_raise_during_function_mask);
    tcase_add_test(tc, test_unmap_waits_for_dma_in_flight);
    tcase_add_test(tc, test_disconnect_during_dma);
    tcase_add_test(tc, test_destroy_during_io);
    tcase_add_test(tc, test_dbus_during_load);
    tcase_add_test(tc, test_reset_waits_for_quiesce);
    tcase_add_test(tc, test_reset_dies_with_its_client);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(races_suite());
}
