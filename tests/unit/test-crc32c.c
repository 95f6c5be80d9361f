/* SPDX-License-Identifier: MIT */
/*
 * CRC32C: the published check values, incremental use, and the SSE4.2 and
 * table-driven implementations agreeing on buffers of every alignment and
 * odd lengths.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/crc32c.h"

START_TEST(test_known_values)
{
    ck_assert_uint_eq(crc32c(0, "123456789", 9), 0xE3069283);
    ck_assert_uint_eq(crc32c_sw(0, "123456789", 9), 0xE3069283);
    ck_assert_uint_eq(crc32c(0, "", 0), 0);
    /* RFC 3720 (iSCSI), B.4: 32 bytes of zeros, of 0xff, ascending. */
    uint8_t b[32];
    memset(b, 0, sizeof(b));
    ck_assert_uint_eq(crc32c(0, b, sizeof(b)), 0x8A9136AA);
    ck_assert_uint_eq(crc32c_sw(0, b, sizeof(b)), 0x8A9136AA);
    memset(b, 0xff, sizeof(b));
    ck_assert_uint_eq(crc32c(0, b, sizeof(b)), 0x62A8AB43);
    for (unsigned i = 0; i < sizeof(b); i++)
        b[i] = (uint8_t)i;
    ck_assert_uint_eq(crc32c(0, b, sizeof(b)), 0x46DD794E);
    ck_assert_uint_eq(crc32c_sw(0, b, sizeof(b)), 0x46DD794E);
}
END_TEST

START_TEST(test_incremental)
{
    const char *s = "The quick brown fox jumps over the lazy dog";
    size_t len = strlen(s);
    uint32_t whole = crc32c(0, s, len);
    for (size_t cut = 0; cut <= len; cut++) {
        ck_assert_uint_eq(crc32c(crc32c(0, s, cut), s + cut, len - cut), whole);
        ck_assert_uint_eq(crc32c_sw(crc32c_sw(0, s, cut), s + cut, len - cut), whole);
    }
}
END_TEST

START_TEST(test_hardware_matches_software)
{
    if (!crc32c_hw_available()) {
        fprintf(stderr, "no SSE4.2 here: only the table-driven CRC32C is tested\n");
        return;
    }
    enum { SIZE = 4096 + 64 };
    uint8_t *buf = malloc(SIZE);
    ck_assert_ptr_nonnull(buf);
    srandom(42);
    for (size_t i = 0; i < SIZE; i++)
        buf[i] = (uint8_t)random();
    for (int round = 0; round < 2000; round++) {
        size_t off = (size_t)random() % 16, len = (size_t)random() % (SIZE - 16);
        uint32_t seed = round % 2 ? (uint32_t)random() : 0;
        ck_assert_uint_eq(crc32c_hw(seed, buf + off, len), crc32c_sw(seed, buf + off, len));
    }
    free(buf);
}
END_TEST

static Suite *crc32c_suite(void)
{
    Suite *s = suite_create("crc32c");
    TCase *tc = tcase_create("crc32c");
    tcase_add_test(tc, test_known_values);
    tcase_add_test(tc, test_incremental);
    tcase_add_test(tc, test_hardware_matches_software);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(crc32c_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
