/* SPDX-License-Identifier: MIT */
/*
 * The migration stream's header (migration-stream.h has the whole stream),
 * little-endian:
 *
 *   offset  size  field
 *   0       8     magic "MUSERDMS"
 *   8       4     stream version (MIG_STREAM_VERSION)
 *   12      4     header length H: every header byte, these 16 and the CRC
 *   16      4     the plugin's ABI version
 *   20      2     PCI vendor id
 *   22      2     PCI device id
 *   24      4+n   device type name  (u32 n <= 256, then n bytes, no NUL)
 *           4+n   plugin name       (n <= 256)
 *           4+n   plugin version    (n <= 256; empty when it has none)
 *           4+n   config, JSON      (n <= 64 KiB)
 *           ...   fields a later muserd of the same stream version may add:
 *                 a loader skips what it does not know
 *   H-4     4     CRC32C of bytes 0 .. H-5
 *
 * The header's own checksum lets the loader tell a damaged header from a
 * stream of another device before it hands the device anything (the
 * trailer's comes only after the body went in).
 *
 * Threads: any; the device is only read (its immutable identity).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct device;

#define MIG_MAGIC        "MUSERDMS"
#define MIG_MAGIC_SIZE   8u
#define MIG_HEADER_FIXED 16u /* magic, version, header length */
#define MIG_NAME_MAX     256u
#define MIG_CONFIG_MAX   (64u << 10)
/* The fixed part, ABI, ids, four empty strings, the CRC. */
#define MIG_HEADER_MIN (MIG_HEADER_FIXED + 8u + 4u * 4u + 4u)
/* Room for the longest fields and as much again for later ones. */
#define MIG_HEADER_MAX (2u * (MIG_HEADER_MIN + 3u * MIG_NAME_MAX + MIG_CONFIG_MAX))

/* Big enough for every sentence below, names included. */
#define MIG_WHY_SIZE 512u

/* The header for d, malloc()ed. -E2BIG when a name or the config is longer
 * than a stream holds. */
int mig_header_build(const struct device *d, uint8_t **ret, size_t *len);

/* The fixed part (MIG_HEADER_FIXED bytes, the magic already checked): the
 * header length, or -EPROTONOSUPPORT / -EBADMSG with *why set, static or
 * formatted into why_buf (MIG_WHY_SIZE bytes). */
int mig_header_check_fixed(const uint8_t *fixed, uint32_t *header_len, char *why_buf,
                           const char **why);

/* The whole header (len bytes, as mig_header_check_fixed sized it): may d
 * take the stream that follows? 0, or -EBADMSG / -EPROTONOSUPPORT with *why
 * set as above. Differences d can live with are logged. */
int mig_header_check(const struct device *d, const uint8_t *h, size_t len, char *why_buf,
                     const char **why);
