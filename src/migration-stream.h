/* SPDX-License-Identifier: MIT */
/*
 * A device's migration stream: what Migrate writes, Incoming reads, and
 * MIG_DATA_READ / MIG_DATA_WRITE carry. One format for every path:
 *
 *   header   magic "MUSERDMS", stream version, plugin ABI, PCI ids, and as
 *            length-prefixed strings the device type, the plugin's name and
 *            version, the device's config (JSON); its own CRC32C
 *            (migration-header.h has the layout)
 *   body     the device-state records (device-state.h): pre-copy chunks,
 *            host state, final chunks, END
 *   trailer  a CRC32C of everything before it, the end mark "MEND"
 *
 * The saver produces it in two phases, as migration v2 reads it: pre-copy
 * (the header and the plugin's pre-copy chunks, while the device runs) and
 * final (the rest, once the device is quiet). A read returns fewer bytes
 * than asked only when the phase has no more (for now, in pre-copy).
 *
 * The loader checks the header before it hands the device anything, takes
 * the stream in pieces of any size, and at the end says whether it was whole.
 * Its errors say what is wrong, for the operator:
 *   -EPROTONOSUPPORT  another device type, a newer stream version, another
 *                     plugin ABI: not a stream this device can take
 *   -EBADMSG          not a muserd stream, a corrupt record, a checksum
 *                     that does not match, bytes after the trailer
 *   -ENODATA          the stream ended early (truncated, or empty)
 * A stream given up (an error, or freed before its end) tells the plugin
 * to forget what it brought; the caller resets the device to undo the rest.
 *
 * Threads: the device's thread.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "util/macro.h"

struct device;
struct mig_saver;
struct mig_loader;

#define MIG_STREAM_VERSION 1

/* -E2BIG: the plugin's name or version is longer than 256 bytes, or the
 * config than 64 KiB (the loader would refuse the stream). */
int mig_saver_new(struct device *d, struct mig_saver **ret);
void mig_saver_free(struct mig_saver *s);
DEFINE_FREEP(struct mig_saver, mig_saver_free)
/* The next bytes into buf (at most len). final false: the pre-copy phase;
 * *n < len means nothing more for now. final true (the device is quiet):
 * the rest of the stream; *n < len means the stream is complete. Once a
 * final read was made, pre-copy reads are -EINVAL. */
int mig_saver_read(struct mig_saver *s, bool final, void *buf, size_t len, size_t *n);
/* Bytes the saver knows are still to come in this phase (a lower bound: the
 * plugin's estimate plus what is buffered). */
size_t mig_saver_pending(const struct mig_saver *s, bool final);

int mig_loader_new(struct device *d, struct mig_loader **ret);
void mig_loader_free(struct mig_loader *l);
DEFINE_FREEP(struct mig_loader, mig_loader_free)
/* More of the stream. On error *why is a sentence for the operator (no
 * trailing period; static, or kept in the loader until mig_loader_free) and
 * the loader takes nothing more: later calls give the same error. */
int mig_loader_write(struct mig_loader *l, const void *buf, size_t len, const char **why);
/* The stream ended here: 0 when it was whole and the device took it (a
 * second call gives the first answer). *why as for mig_loader_write. */
int mig_loader_end(struct mig_loader *l, const char **why);
