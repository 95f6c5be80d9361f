/* SPDX-License-Identifier: MIT */
/*
 * A device's state stream (device-state.c) with the real timer and ram
 * plugins, in-process: program a device as a client would, save it (records
 * split over small buffers), load it into a fresh device (in pieces of other
 * sizes), and find the same config space, registers and memory; truncated,
 * corrupt and foreign streams are refused.
 */
#include <check.h>
#include <errno.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../plugins/ram/ram-regs.h"
#include "../../plugins/timer/timer-regs.h"
#include "helpers/devices.h"
#include "device-reset.h"
#include "device-state.h"
#include "device.h"

#define CFG VFIO_PCI_CONFIG_REGION_INDEX

/* The whole stream, saved through buffers of `piece` bytes. */
static uint8_t *save(struct device *d, size_t piece, size_t *len)
{
    struct device_state_saver *s;
    size_t cap = 8 << 20, n, got = 0;
    uint8_t *buf = malloc(cap);
    ck_assert_int_eq(device_state_saver_new(d, &s), 0);
    do {
        ck_assert_int_eq(device_state_save(s, MUSERD_STATE_PRECOPY, buf + got, piece, &n), 0);
        got += n;
    } while (n > 0);
    ck_assert_int_eq(device_quiesce(d, true), 0);
    do {
        ck_assert_uint_le(got + piece, cap);
        ck_assert_int_eq(device_state_save(s, MUSERD_STATE_FINAL, buf + got, piece, &n), 0);
        got += n;
    } while (n > 0);
    ck_assert_int_eq(device_quiesce(d, false), 0);
    device_state_saver_free(s);
    *len = got;
    return buf;
}

/* Feed the stream in pieces; the verdict of load_end (or the first error). */
static int load(struct device *d, const uint8_t *buf, size_t len, size_t piece, const char **why)
{
    struct device_state_loader *l;
    ck_assert_int_eq(device_state_loader_new(d, &l), 0);
    int r = 0;
    for (size_t off = 0; off < len && r == 0; off += piece)
        r = device_state_load(l, buf + off, len - off < piece ? len - off : piece, NULL, why);
    if (r == 0)
        r = device_state_load_end(l, why);
    device_state_loader_free(l);
    return r;
}

START_TEST(test_ram_round_trip)
{
    const char *config = "{\"size\": 65536}";
    struct device *a = test_device_new("ram", config);
    test_wr(a, CFG, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
    test_wr(a, RAM_REGS_BAR, RAM_REG_SCRATCH, 0xfeedf00d, 4);
    test_wr(a, RAM_REGS_BAR, RAM_REG_DMA_ADDR, 0x12345000, 8);
    for (uint32_t off = 0; off < 65536; off += 4)
        test_wr(a, RAM_MEM_BAR, off, off * 2654435761u, 4);

    /* A save given up half way leaves nothing behind for the next one. */
    struct device_state_saver *gone;
    uint8_t scratch[4096];
    size_t n;
    ck_assert_int_eq(device_state_saver_new(a, &gone), 0);
    ck_assert_int_eq(device_state_save(gone, MUSERD_STATE_FINAL, scratch, sizeof(scratch), &n), 0);
    ck_assert_int_eq(device_state_save(gone, MUSERD_STATE_FINAL, scratch, sizeof(scratch), &n), 0);
    device_state_saver_free(gone);

    size_t len;
    uint8_t *stream = save(a, 4096, &len);
    ck_assert_uint_gt(len, 65536);

    struct device *b = test_device_new("ram", config);
    const char *why = NULL;
    ck_assert_msg(load(b, stream, len, 1000, &why) == 0, "load: %s", why);
    test_same_config(a, b);
    ck_assert_uint_eq(test_rd(b, RAM_REGS_BAR, RAM_REG_SCRATCH, 4), 0xfeedf00d);
    ck_assert_uint_eq(test_rd(b, RAM_REGS_BAR, RAM_REG_DMA_ADDR, 4), 0x12345000);
    for (uint32_t off = 0; off < 65536; off += 4)
        ck_assert_uint_eq(test_rd(b, RAM_MEM_BAR, off, 4), off * 2654435761u);

    /* Cut short anywhere (here: before END, and inside a record): refused. */
    struct device *c = test_device_new("ram", config);
    ck_assert_int_eq(load(c, stream, len - 8, 777, &why), -EINVAL);
    ck_assert_str_eq(why, "the stream is truncated");
    ck_assert_int_eq(load(c, stream, len / 2, 777, &why), -EINVAL);
    /* A byte of the config space record's format changed: refused. */
    stream[8] ^= 0xff;
    ck_assert_int_eq(load(c, stream, len, 4096, &why), -EINVAL);
    stream[8] ^= 0xff;
    /* A size that is not this device's: the plugin refuses its header. */
    struct device *small = test_device_new("ram", "{\"size\": 4096}");
    ck_assert_int_eq(load(small, stream, len, 4096, &why), -EINVAL);
    /* Bytes after the end. */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, stream, len);
    longer[len] = 0;
    ck_assert_int_eq(load(c, longer, len + 1, 4096, &why), -EINVAL);
    ck_assert_str_eq(why, "the stream goes on after its end");
    /* Unless the caller asks where the end is: the load stops there, and
     * later bytes are not taken. */
    struct device_state_loader *l;
    size_t used, taken = 0;
    ck_assert_int_eq(device_state_loader_new(c, &l), 0);
    while (taken < len) {
        size_t piece = len - taken < 5000 ? len - taken : 5000;
        ck_assert_int_eq(device_state_load(l, longer + taken, piece, &used, &why), 0);
        ck_assert_uint_eq(used, piece);
        ck_assert(device_state_load_ended(l) == (taken + used == len));
        taken += used;
    }
    ck_assert_int_eq(device_state_load(l, longer + len, 1, &used, &why), 0);
    ck_assert_uint_eq(used, 0);
    ck_assert_int_eq(device_state_load_end(l, &why), 0);
    device_state_loader_free(l);
    ck_assert_int_eq(device_state_loader_new(c, &l), 0);
    ck_assert_int_eq(device_state_load(l, longer, len + 1, &used, &why), 0);
    ck_assert_uint_eq(used, len);
    ck_assert(device_state_load_ended(l));
    ck_assert_int_eq(device_state_load_end(l, &why), 0);
    device_state_loader_free(l);

    free(longer);
    free(stream);
    device_free(small);
    device_free(c);
    device_free(b);
    device_free(a);
}
END_TEST

START_TEST(test_timer_round_trip_and_foreign_stream)
{
    struct device *a = test_device_new("timer", NULL);
    uint8_t cap = (uint8_t)test_rd(a, CFG, PCI_CAPABILITY_LIST, 1);
    test_wr(a, TIMER_REGS_BAR, TIMER_REG_VECTOR, 1, 4);
    test_wr(a, TIMER_REGS_BAR, TIMER_REG_INTERVAL, 123456789, 8);
    test_wr(a, CFG, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, 2);

    /* What is still to come: nothing early, then the whole stream. */
    struct device_state_saver *s;
    ck_assert_int_eq(device_state_saver_new(a, &s), 0);
    ck_assert_uint_eq(device_state_pending(s, MUSERD_STATE_PRECOPY), 0);
    size_t pending = device_state_pending(s, MUSERD_STATE_FINAL);
    uint8_t scratch[4096];
    size_t n, out = 0;
    do {
        ck_assert_int_eq(device_state_save(s, MUSERD_STATE_FINAL, scratch, 10, &n), 0);
        out += n;
    } while (n > 0);
    ck_assert_uint_eq(pending, out);
    device_state_saver_free(s);

    size_t len;
    uint8_t *stream = save(a, 100, &len);
    struct device *b = test_device_new("timer", NULL);
    const char *why = NULL;
    ck_assert_msg(load(b, stream, len, 3, &why) == 0, "load: %s", why);
    test_same_config(a, b);
    ck_assert_uint_eq(test_rd(b, CFG, PCI_CAPABILITY_LIST, 1), cap);
    ck_assert_uint_eq(test_rd(b, TIMER_REGS_BAR, TIMER_REG_VECTOR, 4), 1);
    ck_assert_uint_eq(test_rd(b, TIMER_REGS_BAR, TIMER_REG_INTERVAL, 4), 123456789);

    /* Crafted config space: a read-only ID byte changed, or more MSI
     * vectors enabled than the device has. The PCI record is first (no
     * pre-copy chunks): 8 bytes record header, 24 bytes its own header. */
    const size_t cfg = 8 + 24;
    stream[cfg + PCI_VENDOR_ID] ^= 1;
    ck_assert_int_eq(load(b, stream, len, 4096, &why), -EINVAL);
    stream[cfg + PCI_VENDOR_ID] ^= 1;
    uint8_t msi = 0;
    for (uint8_t c = stream[cfg + PCI_CAPABILITY_LIST]; c; c = stream[cfg + c + 1])
        if (stream[cfg + c] == PCI_CAP_ID_MSI)
            msi = c;
    ck_assert_uint_ne(msi, 0);
    stream[cfg + msi + PCI_MSI_FLAGS] |= PCI_MSI_FLAGS_QSIZE;
    ck_assert_int_eq(load(b, stream, len, 4096, &why), -EINVAL);
    ck_assert_str_eq(why, "the saved config space enables more MSI vectors than the device has");
    stream[cfg + msi + PCI_MSI_FLAGS] &= (uint8_t)~PCI_MSI_FLAGS_QSIZE;

    /* A timer's stream is no ram's: the config space says so first. */
    struct device *r = test_device_new("ram", NULL);
    ck_assert_int_eq(load(r, stream, len, 4096, &why), -EINVAL);
    ck_assert_ptr_nonnull(why);
    /* Saved twice from the same device: the same stream shape both times. */
    size_t len2;
    uint8_t *again = save(a, 4096, &len2);
    ck_assert_uint_eq(len2, len);
    free(again);
    free(stream);
    device_free(r);
    device_free(b);
    device_free(a);
}
END_TEST

/* An ABI 1 plugin's blob rides as one record and comes back whole. */
START_TEST(test_abi1_blob)
{
    test_devices_load_test_plugin("slow.so");
    struct device *a = test_device_new("slow", "{\"seconds\": 0}");
    test_wr(a, 0, 0, 1, 4);
    test_wr(a, 0, 0, 1, 4);
    ck_assert_uint_eq(test_rd(a, 0, 0, 4), 2);
    size_t len;
    uint8_t *stream = save(a, 5, &len);
    struct device *b = test_device_new("slow", "{\"seconds\": 0}");
    const char *why = NULL;
    ck_assert_msg(load(b, stream, len, 7, &why) == 0, "load: %s", why);
    ck_assert_uint_eq(test_rd(b, 0, 0, 4), 2);
    free(stream);
    device_free(b);
    device_free(a);
}
END_TEST

static Suite *state_suite(void)
{
    Suite *s = suite_create("device-state");
    TCase *tc = tcase_create("stream");
    tcase_add_checked_fixture(tc, test_devices_setup, test_devices_teardown);
    tcase_add_test(tc, test_ram_round_trip);
    tcase_add_test(tc, test_timer_round_trip_and_foreign_stream);
    tcase_add_test(tc, test_abi1_blob);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(state_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
