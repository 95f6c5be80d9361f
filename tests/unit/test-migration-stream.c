/* SPDX-License-Identifier: MIT */
/*
 * The migration stream (migration-stream.c) with the real timer and ram
 * plugins and an ABI 1 test plugin, in-process: save through reads of many
 * sizes, load in pieces of every size, and refuse with the right error what
 * is another device's, damaged, cut short or too long; a device that
 * refused a stream still takes a good one.
 */
#include <check.h>
#include <endian.h>
#include <errno.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/ram/ram-regs.h"
#include "../../plugins/timer/timer-regs.h"
#include "device-reset.h"
#include "device.h"
#include "helpers/devices.h"
#include "migration-stream.h"
#include "util/crc32c.h"

#define CFG       VFIO_PCI_CONFIG_REGION_INDEX
#define RAM_SIZE  65536
#define RAM_CFG   "{\"size\": 65536}"
#define INTERVAL  123456789u
#define TRAILER   8u
#define RECORD_HD 8u

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static void put32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static uint32_t header_len(const uint8_t *s)
{
    return get32(s + 12);
}

/* After an edit: both checksums right again, as a saver would have them. */
static void reseal(uint8_t *s, size_t len)
{
    uint32_t h = header_len(s);
    put32(s + h - 4, crc32c(0, s, h - 4));
    put32(s + len - TRAILER, crc32c(0, s, len - TRAILER));
}

/* The whole stream, read `piece` bytes at a time: pre-copy until a short
 * read (the plugins here have nothing early), quiesced, then final until a
 * short read. Every read but the last of a phase fills its buffer. */
static uint8_t *save(struct device *d, size_t piece, size_t *len)
{
    struct mig_saver *s;
    size_t cap = 1 << 20, n, got = 0;
    uint8_t *buf = malloc(cap);
    ck_assert_int_eq(mig_saver_new(d, &s), 0);
    do {
        ck_assert_int_eq(mig_saver_read(s, false, buf + got, piece, &n), 0);
        got += n;
    } while (n == piece);
    ck_assert_int_eq(device_quiesce(d, true), 0);
    do {
        ck_assert_uint_le(got + piece, cap);
        ck_assert_int_eq(mig_saver_read(s, true, buf + got, piece, &n), 0);
        got += n;
    } while (n == piece);
    ck_assert_int_eq(mig_saver_read(s, true, buf + got, piece, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(mig_saver_pending(s, true), 0);
    ck_assert_int_eq(device_quiesce(d, false), 0);
    mig_saver_free(s);
    *len = got;
    return buf;
}

/* Feed the stream in pieces of `piece` bytes (0: random sizes); the verdict
 * of end, or the first error. A why may live in the loader: it is copied. */
static char why_copy[512];
static int load(struct device *d, const uint8_t *buf, size_t len, size_t piece, const char **why)
{
    struct mig_loader *l;
    ck_assert_int_eq(mig_loader_new(d, &l), 0);
    int r = 0;
    for (size_t off = 0, n; off < len && r == 0; off += n) {
        n = piece ? piece : 1 + (size_t)random() % 9000;
        n = n < len - off ? n : len - off;
        r = mig_loader_write(l, buf + off, n, why);
    }
    if (r == 0)
        r = mig_loader_end(l, why);
    if (r < 0) {
        snprintf(why_copy, sizeof(why_copy), "%s", *why);
        *why = why_copy;
    }
    mig_loader_free(l);
    return r;
}

static struct device *timer_programmed(void)
{
    struct device *a = test_device_new("timer", NULL);
    test_wr(a, TIMER_REGS_BAR, TIMER_REG_VECTOR, 1, 4);
    test_wr(a, TIMER_REGS_BAR, TIMER_REG_INTERVAL, INTERVAL, 8);
    test_wr(a, CFG, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, 2);
    return a;
}

static void timer_same(struct device *a, struct device *b)
{
    test_same_config(a, b);
    ck_assert_uint_eq(test_rd(b, TIMER_REGS_BAR, TIMER_REG_VECTOR, 4), 1);
    ck_assert_uint_eq(test_rd(b, TIMER_REGS_BAR, TIMER_REG_INTERVAL, 4), INTERVAL);
}

/* A good stream still goes into d, and gives a's state. */
static void takes_good_stream(struct device *a, struct device *d, const uint8_t *s, size_t len)
{
    const char *why = NULL;
    ck_assert_msg(load(d, s, len, 4096, &why) == 0, "load: %s", why);
    timer_same(a, d);
}

START_TEST(test_timer_every_split)
{
    struct device *a = timer_programmed();
    size_t len, len7;
    uint8_t *s = save(a, 1, &len);
    uint8_t *s7 = save(a, 7, &len7);
    ck_assert_uint_eq(len7, len);
    ck_assert_mem_eq(s, "MUSERDMS", 8);
    ck_assert_uint_eq(get32(s + 8), MIG_STREAM_VERSION);

    struct device *b = test_device_new("timer", NULL);
    const char *why = NULL;
    ck_assert_msg(load(b, s, len, 1, &why) == 0, "byte by byte: %s", why);
    timer_same(a, b);
    /* Cut in two at every point. */
    for (size_t cut = 0; cut <= len; cut++) {
        struct mig_loader *l;
        ck_assert_int_eq(mig_loader_new(b, &l), 0);
        ck_assert_int_eq(mig_loader_write(l, s, cut, &why), 0);
        ck_assert_int_eq(mig_loader_write(l, s + cut, len - cut, &why), 0);
        ck_assert_msg(mig_loader_end(l, &why) == 0, "cut at %zu: %s", cut, why);
        mig_loader_free(l);
    }
    timer_same(a, b);
    free(s7);
    free(s);
    device_free(b);
    device_free(a);
}
END_TEST

START_TEST(test_ram_random_splits)
{
    struct device *a = test_device_new("ram", RAM_CFG);
    test_wr(a, CFG, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
    test_wr(a, RAM_REGS_BAR, RAM_REG_SCRATCH, 0xfeedf00d, 4);
    for (uint32_t off = 0; off < RAM_SIZE; off += 4)
        test_wr(a, RAM_MEM_BAR, off, off * 2654435761u, 4);
    size_t len;
    uint8_t *s = save(a, 65536, &len);
    ck_assert_uint_gt(len, RAM_SIZE);

    srandom(7);
    for (int round = 0; round < 20; round++) {
        struct device *b = test_device_new("ram", RAM_CFG);
        const char *why = NULL;
        ck_assert_msg(load(b, s, len, round == 0 ? 1 : 0, &why) == 0, "round %d: %s", round, why);
        test_same_config(a, b);
        ck_assert_uint_eq(test_rd(b, RAM_REGS_BAR, RAM_REG_SCRATCH, 4), 0xfeedf00d);
        for (uint32_t off = 0; off < RAM_SIZE; off += 4)
            ck_assert_uint_eq(test_rd(b, RAM_MEM_BAR, off, 4), off * 2654435761u);
        device_free(b);
    }
    free(s);
    device_free(a);
}
END_TEST

/* Pre-copy and final reads make one stream: the header comes with the
 * first read, a pre-copy read is short only when the phase has nothing
 * more, and pending says what is to come. */
START_TEST(test_precopy_then_final)
{
    struct device *a = timer_programmed();
    size_t len;
    uint8_t *whole = save(a, 4096, &len);
    uint32_t h = header_len(whole);

    struct mig_saver *s;
    uint8_t buf[8192];
    size_t n, got = 0;
    ck_assert_int_eq(mig_saver_new(a, &s), 0);
    ck_assert_uint_eq(mig_saver_pending(s, false), h);
    ck_assert_uint_eq(mig_saver_pending(s, true), len);
    /* Small reads are filled, even in pre-copy. */
    ck_assert_int_eq(mig_saver_read(s, false, buf, 5, &n), 0);
    ck_assert_uint_eq(n, 5);
    got += n;
    ck_assert_int_eq(mig_saver_read(s, false, buf + got, sizeof(buf), &n), 0);
    ck_assert_uint_eq(got + n, h);
    got += n;
    ck_assert_uint_eq(mig_saver_pending(s, false), 0);
    ck_assert_int_eq(mig_saver_read(s, false, buf + got, sizeof(buf), &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(mig_saver_pending(s, true), len - h);
    ck_assert_int_eq(device_quiesce(a, true), 0);
    ck_assert_int_eq(mig_saver_read(s, true, buf + got, 10, &n), 0);
    ck_assert_uint_eq(n, 10);
    got += n;
    /* The final phase has begun: no pre-copy any more. */
    ck_assert_int_eq(mig_saver_read(s, false, buf + got, 10, &n), -EINVAL);
    ck_assert_int_eq(mig_saver_read(s, true, buf + got, sizeof(buf) - got, &n), 0);
    got += n;
    ck_assert_uint_eq(got, len);
    ck_assert_int_eq(mig_saver_read(s, true, buf + got, sizeof(buf) - got, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(device_quiesce(a, false), 0);
    mig_saver_free(s);

    /* The same stream as saved in one go, apart from the timer's clock. */
    ck_assert_mem_eq(buf, whole, h);
    struct device *b = test_device_new("timer", NULL);
    const char *why = NULL;
    ck_assert_msg(load(b, buf, got, 13, &why) == 0, "load: %s", why);
    timer_same(a, b);
    free(whole);
    device_free(b);
    device_free(a);
}
END_TEST

/* Edit the stream, keep the checksums right, and load it into d. */
static int load_edited(struct device *d, const uint8_t *s, size_t len, size_t off, const void *v,
                       size_t n, const char **why)
{
    uint8_t *e = malloc(len);
    memcpy(e, s, len);
    memcpy(e + off, v, n);
    reseal(e, len);
    int r = load(d, e, len, 4096, why);
    free(e);
    return r;
}

START_TEST(test_foreign_streams)
{
    struct device *a = timer_programmed();
    size_t len;
    uint8_t *s = save(a, 4096, &len);
    struct device *b = test_device_new("timer", NULL);
    const char *why = NULL;

    ck_assert_int_eq(load(b, (const uint8_t *)"#!/bin/sh\n", 10, 10, &why), -EBADMSG);
    ck_assert_str_eq(why, "not a muserd migration stream");
    /* Told at the first byte that differs. */
    struct mig_loader *l;
    ck_assert_int_eq(mig_loader_new(b, &l), 0);
    ck_assert_int_eq(mig_loader_write(l, "MUSE", 4, &why), 0);
    ck_assert_int_eq(mig_loader_write(l, "X", 1, &why), -EBADMSG);
    ck_assert_int_eq(mig_loader_write(l, "R", 1, &why), -EBADMSG);
    ck_assert_str_eq(why, "not a muserd migration stream");
    ck_assert_int_eq(mig_loader_end(l, &why), -EBADMSG);
    mig_loader_free(l);

    uint8_t v[4];
    put32(v, MIG_STREAM_VERSION + 1);
    ck_assert_int_eq(load_edited(b, s, len, 8, v, 4, &why), -EPROTONOSUPPORT);
    ck_assert_str_eq(why, "the stream is version 2, this muserd reads version 1");
    put32(v, 0);
    ck_assert_int_eq(load_edited(b, s, len, 8, v, 4, &why), -EPROTONOSUPPORT);

    /* Another plugin ABI; nothing of the body reached the device. */
    test_wr(b, TIMER_REGS_BAR, TIMER_REG_INTERVAL, 5, 8);
    put32(v, get32(s + 16) - 1);
    ck_assert_int_eq(load_edited(b, s, len, 16, v, 4, &why), -EPROTONOSUPPORT);
    ck_assert_str_eq(why, "the stream comes from a plugin of ABI 1, this device's plugin is ABI 2");
    ck_assert_uint_eq(test_rd(b, TIMER_REGS_BAR, TIMER_REG_INTERVAL, 4), 5);

    /* Other PCI ids: vendor, device. */
    uint8_t id[2] = {s[20] ^ 1, s[21]};
    ck_assert_int_eq(load_edited(b, s, len, 20, id, 2, &why), -EPROTONOSUPPORT);
    ck_assert_ptr_nonnull(strstr(why, "PCI device"));
    id[0] = s[22];
    id[1] = s[23] ^ 0x80;
    ck_assert_int_eq(load_edited(b, s, len, 22, id, 2, &why), -EPROTONOSUPPORT);

    /* Another type: a timer's stream is no ram's. */
    struct device *r = test_device_new("ram", RAM_CFG);
    ck_assert_int_eq(load(r, s, len, 4096, &why), -EPROTONOSUPPORT);
    ck_assert_str_eq(why, "the stream holds a timer device, this is a ram device");

    /* Another plugin version is fine: the header says "1.0" at its end. */
    uint32_t h = header_len(s);
    ck_assert_uint_eq(get32(s + 24), 5); /* "timer" */
    size_t version = 24 + 4 + 5 + 4 + get32(s + 24 + 4 + 5) + 4;
    ck_assert_uint_eq(get32(s + version - 4), 3);
    ck_assert_int_eq(load_edited(b, s, len, version, "9.9", 3, &why), 0);
    timer_same(a, b);

    /* Header fields a later muserd adds are skipped. */
    uint8_t *longer = malloc(len + 5);
    memcpy(longer, s, h - 4);
    memcpy(longer + h - 4, "extra", 5);
    memcpy(longer + h + 1, s + h - 4, len - (h - 4));
    put32(longer + 12, h + 5);
    reseal(longer, len + 5);
    test_wr(b, TIMER_REGS_BAR, TIMER_REG_INTERVAL, 5, 8);
    ck_assert_msg(load(b, longer, len + 5, 3, &why) == 0, "load: %s", why);
    timer_same(a, b);
    /* Unless the header says it is shorter than what it must hold. */
    put32(longer + 12, 30);
    ck_assert_int_eq(load(b, longer, len + 5, 3, &why), -EBADMSG);

    takes_good_stream(a, b, s, len);
    free(longer);
    free(s);
    device_free(r);
    device_free(b);
    device_free(a);
}
END_TEST

/* Is s[i] in the length field of a body record? */
static bool in_record_length(const uint8_t *s, size_t len, size_t i)
{
    for (size_t off = header_len(s); off + RECORD_HD <= len - TRAILER;
         off += RECORD_HD + get32(s + off + 4))
        if (i >= off + 4 && i < off + RECORD_HD)
            return true;
    return false;
}

/* A flipped bit is found: where it fell decides how. */
static void flip_refused(struct device *d, uint8_t *s, size_t len, size_t i, unsigned bit)
{
    const char *why = NULL;
    uint32_t h = header_len(s);
    s[i] ^= 1u << bit;
    int r = load(d, s, len, 4096, &why);
    s[i] ^= 1u << bit;
    if (i >= 8 && i < 12)
        ck_assert_int_eq(r, -EPROTONOSUPPORT);
    else if ((i >= 12 && i < 16) || (i >= h && in_record_length(s, len, i)))
        ck_assert_msg(r == -EBADMSG || r == -ENODATA, "byte %zu bit %u: %d", i, bit, r);
    else
        ck_assert_msg(r == -EBADMSG, "byte %zu bit %u: %d (%s)", i, bit, r, why);
    if (i >= 16 && i < h)
        ck_assert_str_eq(why, "the stream's header checksum does not match: it was damaged on "
                              "the way");
    if (i >= len - TRAILER && i < len - 4)
        ck_assert_str_eq(why, "the stream's checksum does not match: it was damaged on the way");
}

START_TEST(test_flipped_bits)
{
    struct device *a = timer_programmed();
    size_t len;
    uint8_t *s = save(a, 4096, &len);
    struct device *b = test_device_new("timer", NULL);
    for (size_t i = 0; i < len; i++)
        for (unsigned bit = 0; bit < 8; bit++)
            flip_refused(b, s, len, i, bit);
    takes_good_stream(a, b, s, len);

    struct device *ra = test_device_new("ram", RAM_CFG);
    test_wr(ra, RAM_MEM_BAR, 100, 0x12345678, 4);
    size_t rlen;
    uint8_t *rs = save(ra, 65536, &rlen);
    struct device *rb = test_device_new("ram", RAM_CFG);
    srandom(11);
    for (int round = 0; round < 300; round++)
        flip_refused(rb, rs, rlen, (size_t)random() % rlen, (unsigned)random() % 8);
    /* The data itself, found only by the trailer's checksum. */
    const char *why = NULL;
    rs[rlen - 100] ^= 4;
    ck_assert_int_eq(load(rb, rs, rlen, 4096, &why), -EBADMSG);
    ck_assert_str_eq(why, "the stream's checksum does not match: it was damaged on the way");
    rs[rlen - 100] ^= 4;
    ck_assert_msg(load(rb, rs, rlen, 4096, &why) == 0, "load: %s", why);
    ck_assert_uint_eq(test_rd(rb, RAM_MEM_BAR, 100, 4), 0x12345678);

    free(rs);
    free(s);
    device_free(rb);
    device_free(ra);
    device_free(b);
    device_free(a);
}
END_TEST

START_TEST(test_truncated_and_appended)
{
    struct device *a = timer_programmed();
    size_t len;
    uint8_t *s = save(a, 4096, &len);
    struct device *b = test_device_new("timer", NULL);
    const char *why = NULL;
    char expected[64];

    ck_assert_int_eq(load(b, s, 0, 1, &why), -ENODATA);
    ck_assert_str_eq(why, "the stream is empty");
    for (size_t cut = 1; cut < len; cut++) {
        ck_assert_int_eq(load(b, s, cut, 4096, &why), -ENODATA);
        snprintf(expected, sizeof(expected), "the stream ended early: %zu bytes, truncated?", cut);
        ck_assert_str_eq(why, expected);
    }
    takes_good_stream(a, b, s, len);

    /* One byte more, or the stream twice. */
    uint8_t *twice = malloc(2 * len);
    memcpy(twice, s, len);
    memcpy(twice + len, s, len);
    ck_assert_int_eq(load(b, twice, len + 1, 4096, &why), -EBADMSG);
    ck_assert_str_eq(why, "the stream goes on after its end");
    ck_assert_int_eq(load(b, twice, 2 * len, 1, &why), -EBADMSG);
    /* The error stays, for writes and the end. */
    struct mig_loader *l;
    ck_assert_int_eq(mig_loader_new(b, &l), 0);
    ck_assert_int_eq(mig_loader_write(l, twice, len + 1, &why), -EBADMSG);
    why = NULL;
    ck_assert_int_eq(mig_loader_write(l, s, 1, &why), -EBADMSG);
    ck_assert_str_eq(why, "the stream goes on after its end");
    ck_assert_int_eq(mig_loader_end(l, &why), -EBADMSG);
    mig_loader_free(l);
    /* A stream that ended well takes nothing more, and ends once. */
    ck_assert_int_eq(mig_loader_new(b, &l), 0);
    ck_assert_int_eq(mig_loader_write(l, s, len, &why), 0);
    ck_assert_int_eq(mig_loader_end(l, &why), 0);
    ck_assert_int_eq(mig_loader_end(l, &why), 0);
    ck_assert_int_eq(mig_loader_write(l, s, 1, &why), -EBADMSG);
    mig_loader_free(l);

    takes_good_stream(a, b, s, len);
    free(twice);
    free(s);
    device_free(b);
    device_free(a);
}
END_TEST

/* A loader given up before the end makes the plugin forget what it got:
 * else the next stream's chunk would be a second one to the timer. */
START_TEST(test_given_up)
{
    struct device *a = timer_programmed();
    size_t len;
    uint8_t *s = save(a, 4096, &len);
    struct device *b = test_device_new("timer", NULL);
    const char *why = NULL;
    struct mig_loader *l;
    ck_assert_int_eq(mig_loader_new(b, &l), 0);
    ck_assert_int_eq(mig_loader_write(l, s, len - TRAILER, &why), 0);
    mig_loader_free(l);
    takes_good_stream(a, b, s, len);
    /* And after the trailer was refused. */
    s[len - 1] ^= 1;
    ck_assert_int_eq(load(b, s, len, 4096, &why), -EBADMSG);
    ck_assert_str_eq(why, "the stream's end mark is damaged");
    s[len - 1] ^= 1;
    takes_good_stream(a, b, s, len);
    free(s);
    device_free(b);
    device_free(a);
}
END_TEST

/* An ABI 1 plugin's blob rides in the same stream. */
START_TEST(test_abi1)
{
    test_devices_load_test_plugin("slow.so");
    struct device *a = test_device_new("slow", "{\"seconds\": 0}");
    test_wr(a, 0, 0, 1, 4);
    test_wr(a, 0, 0, 1, 4);
    size_t len;
    uint8_t *s = save(a, 5, &len);
    ck_assert_uint_eq(get32(s + 16), 1);
    struct device *b = test_device_new("slow", "{\"seconds\": 0}");
    const char *why = NULL;
    ck_assert_msg(load(b, s, len, 7, &why) == 0, "load: %s", why);
    ck_assert_uint_eq(test_rd(b, 0, 0, 4), 2);
    free(s);
    device_free(b);
    device_free(a);
}
END_TEST

static Suite *stream_suite(void)
{
    Suite *s = suite_create("migration-stream");
    TCase *tc = tcase_create("stream");
    tcase_add_checked_fixture(tc, test_devices_setup, test_devices_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_timer_every_split);
    tcase_add_test(tc, test_ram_random_splits);
    tcase_add_test(tc, test_precopy_then_final);
    tcase_add_test(tc, test_foreign_streams);
    tcase_add_test(tc, test_flipped_bits);
    tcase_add_test(tc, test_truncated_and_appended);
    tcase_add_test(tc, test_given_up);
    tcase_add_test(tc, test_abi1);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(stream_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
