/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the message decoders: the input is one message as it
 * would come off the socket (16-byte header, then the payload). The first
 * byte after the header-sized prefix is not consumed: the number of (fake) fds
 * that came with it is taken from the header's msg_id, so fd-count checks get
 * exercised without opening anything.
 *
 *   clang -std=gnu11 -D_GNU_SOURCE -g -fsanitize=fuzzer,address,undefined \
 *       -Iinclude -Isrc tests/fuzz/fuzz-codec.c src/vfu/codec.c -o fuzz-codec
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vfu/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touch every byte a decoder said is valid, so ASan sees an out-of-bounds
 * pointer or length at once. */
static volatile uint8_t sink;
static void touch(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sink ^= p[i];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vfu_header hdr;
    int fds[VFU_SERVER_MAX_MSG_FDS];

    if (size < sizeof(hdr))
        return 0;
    memcpy(&hdr, data, sizeof(hdr));
    if (vfu_check_header(&hdr, VFU_MAX_MSG_SIZE) < 0)
        return 0;

    /* The payload in a buffer of exactly its size, as conn.c reads it, so
     * any overread is caught. Fuzzed input that disagrees with msg_size is
     * framing conn.c would reject; use what we have. */
    size_t len = size - sizeof(hdr);
    uint8_t *payload = malloc(len ? len : 1);
    if (!payload)
        return 0;
    memcpy(payload, data + sizeof(hdr), len);
    for (size_t i = 0; i < VFU_SERVER_MAX_MSG_FDS; i++)
        fds[i] = -1;

    struct vfu_msg msg = {
        .hdr = hdr,
        .payload = payload,
        .payload_len = len,
        .fds = fds,
        .nr_fds = hdr.msg_id % (VFU_SERVER_MAX_MSG_FDS + 1),
    };
    uint32_t max_xfer = VFU_SERVER_MAX_DATA_XFER;

    struct vfu_version_req version;
    if (vfu_decode_version(&msg, &version) == 0 && version.json)
        touch((const uint8_t *)version.json, version.json_len);

    struct vfu_dma_map map;
    (void)vfu_decode_dma_map(&msg, &map);
    struct vfu_dma_unmap unmap;
    (void)vfu_decode_dma_unmap(&msg, &unmap);
    struct vfu_device_info dinfo;
    (void)vfu_decode_device_info(&msg, &dinfo);
    struct vfu_region_info rinfo;
    (void)vfu_decode_region_info(&msg, &rinfo);
    struct vfu_irq_info iinfo;
    (void)vfu_decode_irq_info(&msg, &iinfo);
    struct vfu_region_io_fds_request iofds;
    (void)vfu_decode_region_io_fds(&msg, &iofds);

    struct vfu_irq_set_req irq;
    if (vfu_decode_irq_set(&msg, &irq) == 0 && irq.bools)
        touch(irq.bools, irq.set.count);

    struct vfu_region_rw_req rw;
    (void)vfu_decode_region_read(&msg, max_xfer, &rw);
    if (vfu_decode_region_write(&msg, max_xfer, &rw) == 0)
        touch(rw.data, rw.count);

    struct vfu_write_multi_req wm;
    if (vfu_decode_write_multi(&msg, &wm) == 0)
        for (uint64_t i = 0; i < wm.count; i++) {
            struct vfu_write_one one;
            memcpy(&one, (const uint8_t *)wm.wrs + i * sizeof(one), sizeof(one));
            touch(one.data, one.count);
        }

    struct vfu_feature_req feature;
    if (vfu_decode_device_feature(&msg, &feature) == 0) {
        touch(feature.data, feature.data_len);
        struct vfu_feature_mig_state st;
        (void)vfu_decode_mig_state_set(&feature, &st);
        struct vfu_logging_start_req start;
        if (vfu_decode_logging_start(&feature, &start) == 0)
            touch(start.ranges, start.num_ranges * sizeof(struct vfu_dma_logging_range));
        struct vfu_feature_dma_logging_report report;
        (void)vfu_decode_logging_report(&feature, &report);
    }
    struct vfu_mig_data_req mig;
    (void)vfu_decode_mig_data_read(&msg, max_xfer, &mig);
    if (vfu_decode_mig_data_write(&msg, max_xfer, &mig) == 0)
        touch(mig.data, mig.size);

    /* The reply decoder checks against what we asked: take that from the
     * payload's own first bytes so matches happen. */
    if (len >= 12) {
        uint64_t address;
        uint32_t count;
        const uint8_t *rdata;
        memcpy(&address, payload, sizeof(address));
        memcpy(&count, payload + 8, sizeof(count));
        if (vfu_decode_dma_read_reply(&msg, address, count, &rdata) == 0)
            touch(rdata, count);
    }

    (void)vfu_command_name(hdr.command);
    free(payload);
    return 0;
}
