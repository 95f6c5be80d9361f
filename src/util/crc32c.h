/* SPDX-License-Identifier: MIT */
/*
 * CRC32C (Castagnoli: the reflected polynomial 0x82F63B78, as iSCSI, ext4
 * and SSE4.2's crc32 instruction use it), for checksums over streams.
 *
 * The convention is zlib's crc32(): start with 0 and pass each result on as
 * the next call's crc; the pre- and post-inversion happen inside. So
 * crc32c(crc32c(0, a, n), b, m) is the CRC of a followed by b, and
 * crc32c(0, "123456789", 9) == 0xE3069283.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The fastest implementation this CPU has. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* Each implementation on its own, for tests: the table-driven one runs
 * everywhere; the SSE4.2 one only where crc32c_hw_available() says so. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
bool crc32c_hw_available(void);
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);
