/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the most common device model shape: a BAR of 32-bit
 * little-endian registers, some of them pairs making a 64-bit value.
 * Header-only: nothing here is part of the plugin ABI, a plugin may copy or
 * ignore it.
 */
#pragma once

#include <endian.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint32_t (*muserd_reg_read_fn)(void *dev, uint64_t offset);
typedef void (*muserd_reg_write_fn)(void *dev, uint64_t offset, uint32_t val);

/*
 * Serve a bar_access() to a register file of regs_size bytes: a 4-byte
 * access is one register, an 8-byte access two, low half first (so a 64-bit
 * counter can latch its high half when the low half is read). Other sizes,
 * offsets not aligned to 4 and accesses past the end read as zero and
 * ignore writes, as a guest expects of reserved space. Always returns 0.
 */
static inline int muserd_regs32_access(void *dev, uint64_t regs_size, uint64_t offset, void *buf,
                                       uint32_t len, bool is_write, muserd_reg_read_fn read_reg,
                                       muserd_reg_write_fn write_reg)
{
    uint8_t *p = (uint8_t *)buf;

    if ((len != 4 && len != 8) || offset % 4 != 0 || regs_size < len || offset > regs_size - len) {
        if (!is_write)
            memset(buf, 0, len);
        return 0;
    }
    for (uint32_t i = 0; i < len; i += 4) {
        uint32_t v;
        if (is_write) {
            memcpy(&v, p + i, 4);
            write_reg(dev, offset + i, le32toh(v));
        } else {
            v = htole32(read_reg(dev, offset + i));
            memcpy(p + i, &v, 4);
        }
    }
    return 0;
}

/* A 64-bit register after a 32-bit write to its low or high half. */
static inline uint64_t muserd_reg64_set_half(uint64_t reg, bool high, uint32_t val)
{
    if (high)
        return (reg & 0xffffffffu) | ((uint64_t)val << 32);
    return (reg & ~(uint64_t)0xffffffffu) | val;
}

#ifdef __cplusplus
}
#endif
