/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vfu/codec.h"

/* A message over a caller-owned payload buffer, as conn.c would hand it. */
static struct vfu_msg msg_of(uint16_t cmd, const void *payload, size_t len, int *fds, size_t nr_fds)
{
    return (struct vfu_msg){
        .hdr = {.command = cmd, .msg_size = (uint32_t)(sizeof(struct vfu_header) + len)},
        .payload = payload,
        .payload_len = len,
        .fds = fds,
        .nr_fds = nr_fds,
    };
}

/* A DEVICE_FEATURE payload: the header, then data. */
static size_t feature_of(uint8_t *buf, uint32_t argsz, uint32_t flags, const void *data, size_t len)
{
    struct vfu_device_feature f = {.argsz = argsz, .flags = flags};
    memcpy(buf, &f, sizeof(f));
    if (len)
        memcpy(buf + sizeof(f), data, len);
    return sizeof(f) + len;
}

START_TEST(test_device_feature)
{
    const uint32_t GET = VFIO_DEVICE_FEATURE_GET, SET = VFIO_DEVICE_FEATURE_SET,
                   PROBE = VFIO_DEVICE_FEATURE_PROBE;
    struct vfu_feature_req req;
    uint8_t buf[128];

    static const uint8_t room[8];
    size_t n = feature_of(buf, 16, GET | VFU_FEATURE_MIGRATION, room, sizeof(room));
    struct vfu_msg m = msg_of(VFU_CMD_DEVICE_FEATURE, buf, n, NULL, 0);
    ck_assert_int_eq(vfu_decode_device_feature(&m, &req), 0);
    ck_assert_uint_eq(req.index, VFU_FEATURE_MIGRATION);
    ck_assert_uint_eq(req.flags, GET);
    ck_assert_uint_eq(req.argsz, 16);
    ck_assert_uint_eq(req.data_len, 8);
    ck_assert_ptr_eq(req.data, buf + 8);

    /* Too short, argsz below the header, unknown flag bits. */
    m.payload_len = 7;
    ck_assert_int_eq(vfu_decode_device_feature(&m, &req), -EINVAL);
    feature_of(buf, 7, GET | 1, NULL, 0);
    m = msg_of(VFU_CMD_DEVICE_FEATURE, buf, 8, NULL, 0);
    ck_assert_int_eq(vfu_decode_device_feature(&m, &req), -EINVAL);
    feature_of(buf, 8, GET | 1 | (1u << 19), NULL, 0);
    ck_assert_int_eq(vfu_decode_device_feature(&m, &req), -EINVAL);
    /* GET and SET only together with PROBE; one of them without it. */
    feature_of(buf, 8, GET | SET | 2, NULL, 0);
    ck_assert_int_eq(vfu_decode_device_feature(&m, &req), -EINVAL);
    feature_of(buf, 8, 2, NULL, 0);
    ck_assert_int_eq(vfu_decode_device_feature(&m, &req), -EINVAL);
    feature_of(buf, 8, GET | SET | PROBE | 2, NULL, 0);
    ck_assert_int_eq(vfu_decode_device_feature(&m, &req), 0);
    ck_assert_uint_eq(req.flags, GET | SET | PROBE);
    feature_of(buf, 8, PROBE | 2, NULL, 0);
    ck_assert_int_eq(vfu_decode_device_feature(&m, &req), 0);
}
END_TEST

START_TEST(test_feature_data)
{
    const uint32_t SET = VFIO_DEVICE_FEATURE_SET, GET = VFIO_DEVICE_FEATURE_GET;
    struct vfu_feature_req req;
    uint8_t buf[256];

    /* MIG_DEVICE_STATE SET: exactly 8 bytes of data. */
    struct vfu_feature_mig_state st = {.device_state = VFU_MIG_STOP};
    size_t n = feature_of(buf, 16, SET | 2, &st, sizeof(st));
    struct vfu_msg m = msg_of(VFU_CMD_DEVICE_FEATURE, buf, n, NULL, 0);
    ck_assert_int_eq(vfu_decode_device_feature(&m, &req), 0);
    struct vfu_feature_mig_state got;
    ck_assert_int_eq(vfu_decode_mig_state_set(&req, &got), 0);
    ck_assert_uint_eq(got.device_state, VFU_MIG_STOP);
    req.data_len = 7;
    ck_assert_int_eq(vfu_decode_mig_state_set(&req, &got), -EINVAL);
    req.data_len = 9;
    ck_assert_int_eq(vfu_decode_mig_state_set(&req, &got), -EINVAL);

    /* LOGGING_START: ranges bounded by the data, each non-empty, no wrap. */
    struct {
        struct vfu_feature_dma_logging_control ctl;
        struct vfu_dma_logging_range r[2];
    } start = {.ctl = {.page_size = 4096, .num_ranges = 2},
               .r = {{.iova = 0, .length = 4096}, {.iova = 1u << 20, .length = 8192}}};
    n = feature_of(buf, 8 + sizeof(start), SET | 6, &start, sizeof(start));
    m = msg_of(VFU_CMD_DEVICE_FEATURE, buf, n, NULL, 0);
    ck_assert_int_eq(vfu_decode_device_feature(&m, &req), 0);
    struct vfu_logging_start_req sr;
    ck_assert_int_eq(vfu_decode_logging_start(&req, &sr), 0);
    ck_assert_uint_eq(sr.num_ranges, 2);
    ck_assert_uint_eq(sr.page_size, 4096);
    ck_assert_ptr_eq(sr.ranges, buf + 8 + 16);
    start.ctl.num_ranges = 3; /* more than the message holds */
    feature_of(buf, 8 + sizeof(start), SET | 6, &start, sizeof(start));
    ck_assert_int_eq(vfu_decode_logging_start(&req, &sr), -EINVAL);
    start.ctl.num_ranges = UINT32_MAX;
    feature_of(buf, 8 + sizeof(start), SET | 6, &start, sizeof(start));
    ck_assert_int_eq(vfu_decode_logging_start(&req, &sr), -EINVAL);
    start.ctl.num_ranges = 1; /* fewer: trailing bytes */
    feature_of(buf, 8 + sizeof(start), SET | 6, &start, sizeof(start));
    ck_assert_int_eq(vfu_decode_logging_start(&req, &sr), -EINVAL);
    start.ctl.num_ranges = 2;
    start.ctl.page_size = 3000;
    feature_of(buf, 8 + sizeof(start), SET | 6, &start, sizeof(start));
    ck_assert_int_eq(vfu_decode_logging_start(&req, &sr), -EINVAL);
    start.ctl.page_size = 4096;
    start.r[1].length = 0;
    feature_of(buf, 8 + sizeof(start), SET | 6, &start, sizeof(start));
    ck_assert_int_eq(vfu_decode_logging_start(&req, &sr), -EINVAL);
    start.r[1] = (struct vfu_dma_logging_range){.iova = UINT64_MAX, .length = 2};
    feature_of(buf, 8 + sizeof(start), SET | 6, &start, sizeof(start));
    ck_assert_int_eq(vfu_decode_logging_start(&req, &sr), -EINVAL);
    /* No ranges: log everything. */
    start.ctl.num_ranges = 0;
    n = feature_of(buf, 24, SET | 6, &start.ctl, sizeof(start.ctl));
    m = msg_of(VFU_CMD_DEVICE_FEATURE, buf, n, NULL, 0);
    ck_assert_int_eq(vfu_decode_device_feature(&m, &req), 0);
    ck_assert_int_eq(vfu_decode_logging_start(&req, &sr), 0);
    ck_assert_uint_eq(sr.num_ranges, 0);

    /* LOGGING_REPORT GET: room for the bitmap may follow. */
    struct vfu_feature_dma_logging_report rep = {.iova = 8192, .length = 4096, .page_size = 4096};
    n = feature_of(buf, 128, GET | 8, &rep, sizeof(rep));
    m = msg_of(VFU_CMD_DEVICE_FEATURE, buf, n + 8, NULL, 0);
    ck_assert_int_eq(vfu_decode_device_feature(&m, &req), 0);
    struct vfu_feature_dma_logging_report rr;
    ck_assert_int_eq(vfu_decode_logging_report(&req, &rr), 0);
    ck_assert_uint_eq(rr.iova, 8192);
    req.data_len = 23;
    ck_assert_int_eq(vfu_decode_logging_report(&req, &rr), -EINVAL);
    struct vfu_feature_dma_logging_report bad[] = {
        {.iova = 4096, .length = 4096, .page_size = 8192}, /* iova not a multiple */
        {.iova = 0, .length = 0, .page_size = 4096},
        {.iova = 0, .length = 4096, .page_size = 0},
        {.iova = 0, .length = 4096, .page_size = 6144},
        {.iova = UINT64_MAX - 4095, .length = 8192, .page_size = 4096},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = feature_of(buf, 128, GET | 8, &bad[i], sizeof(bad[i]));
        m = msg_of(VFU_CMD_DEVICE_FEATURE, buf, n, NULL, 0);
        ck_assert_int_eq(vfu_decode_device_feature(&m, &req), 0);
        ck_assert_int_eq(vfu_decode_logging_report(&req, &rr), -EINVAL);
    }
}
END_TEST

START_TEST(test_mig_data)
{
    struct vfu_mig_data_req req;
    uint8_t buf[64] = {0};
    struct vfu_mig_data d = {.argsz = 8 + 16, .size = 16};

    memcpy(buf, &d, sizeof(d));
    struct vfu_msg m = msg_of(VFU_CMD_MIG_DATA_READ, buf, 8, NULL, 0);
    ck_assert_int_eq(vfu_decode_mig_data_read(&m, 1024, &req), 0);
    ck_assert_uint_eq(req.size, 16);
    ck_assert_int_eq(vfu_decode_mig_data_read(&m, 15, &req), -E2BIG);
    m.payload_len = 9; /* a read carries no data */
    ck_assert_int_eq(vfu_decode_mig_data_read(&m, 1024, &req), -EINVAL);
    m.payload_len = 7;
    ck_assert_int_eq(vfu_decode_mig_data_read(&m, 1024, &req), -EINVAL);
    d.argsz = 8 + 15; /* no room for the reply */
    memcpy(buf, &d, sizeof(d));
    m.payload_len = 8;
    ck_assert_int_eq(vfu_decode_mig_data_read(&m, 1024, &req), -EINVAL);
    d = (struct vfu_mig_data){.argsz = 8, .size = 0};
    memcpy(buf, &d, sizeof(d));
    ck_assert_int_eq(vfu_decode_mig_data_read(&m, 1024, &req), -EINVAL);
    d = (struct vfu_mig_data){.argsz = UINT32_MAX, .size = UINT32_MAX};
    memcpy(buf, &d, sizeof(d));
    ck_assert_int_eq(vfu_decode_mig_data_read(&m, 1024, &req), -E2BIG);

    /* Writes: the data is exactly size bytes. */
    d = (struct vfu_mig_data){.argsz = 8 + 4, .size = 4};
    memcpy(buf, &d, sizeof(d));
    memcpy(buf + 8, "abcd", 4);
    m = msg_of(VFU_CMD_MIG_DATA_WRITE, buf, 12, NULL, 0);
    ck_assert_int_eq(vfu_decode_mig_data_write(&m, 1024, &req), 0);
    ck_assert_uint_eq(req.size, 4);
    ck_assert_ptr_eq(req.data, buf + 8);
    m.payload_len = 11;
    ck_assert_int_eq(vfu_decode_mig_data_write(&m, 1024, &req), -EINVAL);
    m.payload_len = 13;
    ck_assert_int_eq(vfu_decode_mig_data_write(&m, 1024, &req), -EINVAL);
    m.payload_len = 12;
    ck_assert_int_eq(vfu_decode_mig_data_write(&m, 3, &req), -E2BIG);
    d.argsz = 11;
    memcpy(buf, &d, sizeof(d));
    ck_assert_int_eq(vfu_decode_mig_data_write(&m, 1024, &req), -EINVAL);
    /* An empty write is well formed. */
    d = (struct vfu_mig_data){.argsz = 8, .size = 0};
    memcpy(buf, &d, sizeof(d));
    m.payload_len = 8;
    ck_assert_int_eq(vfu_decode_mig_data_write(&m, 1024, &req), 0);
}
END_TEST

START_TEST(test_header)
{
    struct vfu_header h = {.msg_id = 1, .command = VFU_CMD_VERSION, .msg_size = 16};
    ck_assert_int_eq(vfu_check_header(&h, 4096), 0);
    h.msg_size = 15;
    ck_assert_int_eq(vfu_check_header(&h, 4096), -EINVAL);
    h.msg_size = 4097;
    ck_assert_int_eq(vfu_check_header(&h, 4096), -EMSGSIZE);
    h.msg_size = 4096;
    ck_assert_int_eq(vfu_check_header(&h, 4096), 0);

    h.flags = VFU_FLAG_NO_REPLY;
    ck_assert_int_eq(vfu_check_header(&h, 4096), 0);
    h.flags = VFU_FLAG_ERROR; /* a command cannot carry an error */
    ck_assert_int_eq(vfu_check_header(&h, 4096), -EINVAL);
    h.flags = 0;
    h.error = 5; /* reserved in commands: tolerated */
    ck_assert_int_eq(vfu_check_header(&h, 4096), 0);
    h.error = 0;
    h.flags = 2; /* unknown type */
    ck_assert_int_eq(vfu_check_header(&h, 4096), -EINVAL);
    h.flags = 1u << 8;
    ck_assert_int_eq(vfu_check_header(&h, 4096), -EINVAL);

    h.flags = VFU_FLAG_TYPE_REPLY | VFU_FLAG_ERROR;
    h.error = EFAULT;
    ck_assert_int_eq(vfu_check_header(&h, 4096), 0);
    h.flags = VFU_FLAG_TYPE_REPLY | VFU_FLAG_NO_REPLY;
    ck_assert_int_eq(vfu_check_header(&h, 4096), -EINVAL);
}
END_TEST

START_TEST(test_version)
{
    struct vfu_version_req v;
    uint8_t buf[64] = {0, 0, 3, 0};
    const char *json = "{\"capabilities\":{}}";

    /* SPDK: exactly 4 bytes, no JSON. */
    struct vfu_msg m = msg_of(VFU_CMD_VERSION, buf, 4, NULL, 0);
    ck_assert_int_eq(vfu_decode_version(&m, &v), 0);
    ck_assert_uint_eq(v.major, 0);
    ck_assert_uint_eq(v.minor, 3);
    ck_assert_ptr_null(v.json);

    /* QEMU: NUL-terminated JSON. */
    memcpy(buf + 4, json, strlen(json) + 1);
    m = msg_of(VFU_CMD_VERSION, buf, 4 + strlen(json) + 1, NULL, 0);
    ck_assert_int_eq(vfu_decode_version(&m, &v), 0);
    ck_assert_uint_eq(v.json_len, strlen(json));
    ck_assert_int_eq(memcmp(v.json, json, v.json_len), 0);

    /* No NUL at the end: text runs to the end of the message. */
    m = msg_of(VFU_CMD_VERSION, buf, 4 + strlen(json), NULL, 0);
    ck_assert_int_eq(vfu_decode_version(&m, &v), 0);
    ck_assert_uint_eq(v.json_len, strlen(json));

    /* Stops at the first NUL. */
    buf[4 + 3] = '\0';
    m = msg_of(VFU_CMD_VERSION, buf, 4 + strlen(json) + 1, NULL, 0);
    ck_assert_int_eq(vfu_decode_version(&m, &v), 0);
    ck_assert_uint_eq(v.json_len, 3);

    /* A lone NUL is no JSON. */
    buf[4] = '\0';
    m = msg_of(VFU_CMD_VERSION, buf, 5, NULL, 0);
    ck_assert_int_eq(vfu_decode_version(&m, &v), 0);
    ck_assert_ptr_null(v.json);

    m = msg_of(VFU_CMD_VERSION, buf, 3, NULL, 0);
    ck_assert_int_eq(vfu_decode_version(&m, &v), -EINVAL);
    m = msg_of(VFU_CMD_VERSION, NULL, 0, NULL, 0);
    ck_assert_int_eq(vfu_decode_version(&m, &v), -EINVAL);
}
END_TEST

START_TEST(test_dma_map)
{
    struct vfu_dma_map in = {.argsz = 32,
                             .flags = VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE,
                             .offset = 0x1000,
                             .address = 0x100000,
                             .size = 0x2000};
    struct vfu_dma_map out;
    int fds[2] = {7, 8};

    struct vfu_msg m = msg_of(VFU_CMD_DMA_MAP, &in, sizeof(in), fds, 1);
    ck_assert_int_eq(vfu_decode_dma_map(&m, &out), 0);
    ck_assert_uint_eq(out.address, 0x100000);
    ck_assert_uint_eq(out.size, 0x2000);
    ck_assert_uint_eq(out.offset, 0x1000);
    ck_assert_uint_eq(out.flags, 3);

    m = msg_of(VFU_CMD_DMA_MAP, &in, sizeof(in), NULL, 0);
    ck_assert_int_eq(vfu_decode_dma_map(&m, &out), 0);

    m = msg_of(VFU_CMD_DMA_MAP, &in, sizeof(in), fds, 2);
    ck_assert_int_eq(vfu_decode_dma_map(&m, &out), -EINVAL);
    m = msg_of(VFU_CMD_DMA_MAP, &in, sizeof(in) - 1, fds, 1);
    ck_assert_int_eq(vfu_decode_dma_map(&m, &out), -EINVAL);

    struct vfu_dma_map bad = in;
    bad.argsz = 31;
    m = msg_of(VFU_CMD_DMA_MAP, &bad, sizeof(bad), fds, 1);
    ck_assert_int_eq(vfu_decode_dma_map(&m, &out), -EINVAL);
    bad = in;
    bad.flags = 4;
    ck_assert_int_eq(vfu_decode_dma_map(&m, &out), -EINVAL);
    bad = in;
    bad.size = 0;
    ck_assert_int_eq(vfu_decode_dma_map(&m, &out), -EINVAL);
    bad = in;
    bad.address = UINT64_MAX - 0xfff;
    ck_assert_int_eq(vfu_decode_dma_map(&m, &out), -EINVAL);
    bad.address = UINT64_MAX - 0x2000; /* last byte is UINT64_MAX - 1: fine */
    ck_assert_int_eq(vfu_decode_dma_map(&m, &out), 0);
    bad = in;
    bad.offset = UINT64_MAX - 0x1000;
    ck_assert_int_eq(vfu_decode_dma_map(&m, &out), -EINVAL);
    /* Without an fd the offset is not used, so not checked. */
    m = msg_of(VFU_CMD_DMA_MAP, &bad, sizeof(bad), NULL, 0);
    ck_assert_int_eq(vfu_decode_dma_map(&m, &out), 0);
}
END_TEST

START_TEST(test_dma_unmap)
{
    struct vfu_dma_unmap in = {.argsz = 24, .address = 0x1000, .size = 0x1000};
    struct vfu_dma_unmap out;
    struct vfu_msg m = msg_of(VFU_CMD_DMA_UNMAP, &in, sizeof(in), NULL, 0);

    ck_assert_int_eq(vfu_decode_dma_unmap(&m, &out), 0);
    ck_assert_uint_eq(out.address, 0x1000);
    ck_assert_uint_eq(out.size, 0x1000);

    /* QEMU's unmap-all. */
    in = (struct vfu_dma_unmap){.argsz = 24, .flags = VFIO_DMA_UNMAP_FLAG_ALL};
    ck_assert_int_eq(vfu_decode_dma_unmap(&m, &out), 0);
    ck_assert_uint_eq(out.flags, VFIO_DMA_UNMAP_FLAG_ALL);
    in.size = 1;
    ck_assert_int_eq(vfu_decode_dma_unmap(&m, &out), -EINVAL);
    in.size = 0;
    in.address = 0x1000;
    ck_assert_int_eq(vfu_decode_dma_unmap(&m, &out), -EINVAL);

    in = (struct vfu_dma_unmap){.argsz = 24, .address = 0x1000, .size = 0x1000};
    in.flags = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
    ck_assert_int_eq(vfu_decode_dma_unmap(&m, &out), -ENOTSUP);
    in.flags = VFIO_DMA_UNMAP_FLAG_VADDR;
    ck_assert_int_eq(vfu_decode_dma_unmap(&m, &out), -ENOTSUP);
    in.flags = 1u << 7;
    ck_assert_int_eq(vfu_decode_dma_unmap(&m, &out), -EINVAL);
    in.flags = 0;
    in.size = 0;
    ck_assert_int_eq(vfu_decode_dma_unmap(&m, &out), -EINVAL);
    in.size = 2;
    in.address = UINT64_MAX;
    ck_assert_int_eq(vfu_decode_dma_unmap(&m, &out), -EINVAL);
    in = (struct vfu_dma_unmap){.argsz = 23, .address = 0x1000, .size = 0x1000};
    ck_assert_int_eq(vfu_decode_dma_unmap(&m, &out), -EINVAL);
    in.argsz = 24;
    m.payload_len = 23;
    ck_assert_int_eq(vfu_decode_dma_unmap(&m, &out), -EINVAL);
}
END_TEST

START_TEST(test_infos)
{
    struct vfu_device_info di = {.argsz = 16}, dio;
    struct vfu_region_info ri = {.argsz = 4096, .index = 7}, rio;
    struct vfu_irq_info ii = {.argsz = 16, .index = 2}, iio;
    struct vfu_region_io_fds_request io = {.argsz = 16, .index = 1}, ioo;

    struct vfu_msg m = msg_of(VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0);
    ck_assert_int_eq(vfu_decode_device_info(&m, &dio), 0);
    di.argsz = 15;
    ck_assert_int_eq(vfu_decode_device_info(&m, &dio), -EINVAL);
    di.argsz = 16;
    m.payload_len = 15;
    ck_assert_int_eq(vfu_decode_device_info(&m, &dio), -EINVAL);

    /* argsz is the reply room: larger than the request is normal. */
    m = msg_of(VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0);
    ck_assert_int_eq(vfu_decode_region_info(&m, &rio), 0);
    ck_assert_uint_eq(rio.index, 7);
    ck_assert_uint_eq(rio.argsz, 4096);
    ri.argsz = 31;
    ck_assert_int_eq(vfu_decode_region_info(&m, &rio), -EINVAL);
    ri.argsz = 32;
    m.payload_len = 16;
    ck_assert_int_eq(vfu_decode_region_info(&m, &rio), -EINVAL);

    m = msg_of(VFU_CMD_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii), NULL, 0);
    ck_assert_int_eq(vfu_decode_irq_info(&m, &iio), 0);
    ck_assert_uint_eq(iio.index, 2);
    ii.argsz = 8;
    ck_assert_int_eq(vfu_decode_irq_info(&m, &iio), -EINVAL);

    m = msg_of(VFU_CMD_DEVICE_GET_REGION_IO_FDS, &io, sizeof(io), NULL, 0);
    ck_assert_int_eq(vfu_decode_region_io_fds(&m, &ioo), 0);
    ck_assert_uint_eq(ioo.index, 1);
    io.flags = 1;
    ck_assert_int_eq(vfu_decode_region_io_fds(&m, &ioo), -EINVAL);
    io.flags = 0;
    io.argsz = 12;
    ck_assert_int_eq(vfu_decode_region_io_fds(&m, &ioo), -EINVAL);
}
END_TEST

/* A SET_IRQS payload: the fixed part, then n data bytes. */
static size_t irq_set_payload(uint8_t *buf, uint32_t flags, uint32_t index, uint32_t start,
                              uint32_t count, size_t data_len)
{
    struct vfu_irq_set s = {.argsz = (uint32_t)(sizeof(s) + data_len),
                            .flags = flags,
                            .index = index,
                            .start = start,
                            .count = count};
    memcpy(buf, &s, sizeof(s));
    memset(buf + sizeof(s), 1, data_len);
    return sizeof(s) + data_len;
}

START_TEST(test_irq_set)
{
    uint8_t buf[64];
    int fds[3] = {10, 11, 12};
    struct vfu_irq_set_req req;
    const uint32_t eventfd_trigger = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    size_t len = irq_set_payload(buf, eventfd_trigger, VFIO_PCI_MSIX_IRQ_INDEX, 1, 3, 0);
    struct vfu_msg m = msg_of(VFU_CMD_DEVICE_SET_IRQS, buf, len, fds, 3);

    ck_assert_int_eq(vfu_decode_irq_set(&m, &req), 0);
    ck_assert_uint_eq(req.set.index, VFIO_PCI_MSIX_IRQ_INDEX);
    ck_assert_uint_eq(req.set.start, 1);
    ck_assert_uint_eq(req.set.count, 3);
    ck_assert_ptr_null(req.bools);

    m.nr_fds = 0; /* de-assign */
    ck_assert_int_eq(vfu_decode_irq_set(&m, &req), 0);
    m.nr_fds = 2; /* count mismatch */
    ck_assert_int_eq(vfu_decode_irq_set(&m, &req), -EINVAL);

    /* Disable all: the only use of count 0. */
    len = irq_set_payload(buf, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 0, 0);
    m = msg_of(VFU_CMD_DEVICE_SET_IRQS, buf, len, NULL, 0);
    ck_assert_int_eq(vfu_decode_irq_set(&m, &req), 0);
    len = irq_set_payload(buf, eventfd_trigger, 0, 0, 0, 0);
    ck_assert_int_eq(vfu_decode_irq_set(&m, &req), -EINVAL);
    len = irq_set_payload(buf, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, 0, 0, 0, 0);
    ck_assert_int_eq(vfu_decode_irq_set(&m, &req), -EINVAL);

    /* DATA_NONE carries no fds and no data. */
    len = irq_set_payload(buf, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1, 0);
    m = msg_of(VFU_CMD_DEVICE_SET_IRQS, buf, len, fds, 1);
    ck_assert_int_eq(vfu_decode_irq_set(&m, &req), -EINVAL);
    m.nr_fds = 0;
    ck_assert_int_eq(vfu_decode_irq_set(&m, &req), 0);

    /* DATA_BOOL: count bytes follow. */
    len = irq_set_payload(buf, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_MASK, 2, 0, 4, 4);
    m = msg_of(VFU_CMD_DEVICE_SET_IRQS, buf, len, NULL, 0);
    ck_assert_int_eq(vfu_decode_irq_set(&m, &req), 0);
    ck_assert_ptr_eq(req.bools, buf + 20);
    /* Fewer bytes than count. */
    len = irq_set_payload(buf, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_MASK, 2, 0, 5, 4);
    m = msg_of(VFU_CMD_DEVICE_SET_IRQS, buf, len, NULL, 0);
    ck_assert_int_eq(vfu_decode_irq_set(&m, &req), -EINVAL);
    ck_assert_ptr_null(req.bools);

    /* Flags: two DATA bits, two ACTION bits, none, unknown bits. */
    const uint32_t bad_flags[] = {
        VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_TRIGGER,
        VFIO_IRQ_SET_DATA_NONE,
        VFIO_IRQ_SET_ACTION_TRIGGER,
        VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER | (1u << 6),
    };
    for (size_t i = 0; i < sizeof(bad_flags) / sizeof(bad_flags[0]); i++) {
        len = irq_set_payload(buf, bad_flags[i], 0, 0, 1, 0);
        m = msg_of(VFU_CMD_DEVICE_SET_IRQS, buf, len, NULL, 0);
        ck_assert_int_eq(vfu_decode_irq_set(&m, &req), -EINVAL);
    }

    /* start + count overflows. */
    len = irq_set_payload(buf, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, UINT32_MAX,
                          2, 0);
    m = msg_of(VFU_CMD_DEVICE_SET_IRQS, buf, len, NULL, 0);
    ck_assert_int_eq(vfu_decode_irq_set(&m, &req), -EINVAL);

    /* argsz disagreeing with the payload, or too small; short payload. */
    len = irq_set_payload(buf, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 1, 0);
    m = msg_of(VFU_CMD_DEVICE_SET_IRQS, buf, len, NULL, 0);
    buf[0] = 24;
    ck_assert_int_eq(vfu_decode_irq_set(&m, &req), -EINVAL);
    buf[0] = 16;
    ck_assert_int_eq(vfu_decode_irq_set(&m, &req), -EINVAL);
    buf[0] = 20;
    ck_assert_int_eq(vfu_decode_irq_set(&m, &req), 0);
    m.payload_len = 19;
    ck_assert_int_eq(vfu_decode_irq_set(&m, &req), -EINVAL);
}
END_TEST

START_TEST(test_region_rw)
{
    uint8_t buf[16 + 8];
    struct vfu_region_access a = {.offset = 0x40, .region = 2, .count = 4};
    struct vfu_region_rw_req req;

    memcpy(buf, &a, sizeof(a));
    struct vfu_msg m = msg_of(VFU_CMD_REGION_READ, buf, 16, NULL, 0);
    ck_assert_int_eq(vfu_decode_region_read(&m, 4096, &req), 0);
    ck_assert_uint_eq(req.offset, 0x40);
    ck_assert_uint_eq(req.region, 2);
    ck_assert_uint_eq(req.count, 4);
    ck_assert_int_eq(vfu_decode_region_read(&m, 3, &req), -E2BIG);
    m.payload_len = 15;
    ck_assert_int_eq(vfu_decode_region_read(&m, 4096, &req), -EINVAL);
    m.payload_len = 17;
    ck_assert_int_eq(vfu_decode_region_read(&m, 4096, &req), -EINVAL);

    /* Write: exactly count data bytes. */
    memcpy(buf + 16, "\x11\x22\x33\x44", 4);
    m = msg_of(VFU_CMD_REGION_WRITE, buf, 20, NULL, 0);
    ck_assert_int_eq(vfu_decode_region_write(&m, 4096, &req), 0);
    ck_assert_ptr_eq(req.data, buf + 16);
    ck_assert_uint_eq(req.data[3], 0x44);
    m.payload_len = 19;
    ck_assert_int_eq(vfu_decode_region_write(&m, 4096, &req), -EINVAL);
    m.payload_len = 21;
    ck_assert_int_eq(vfu_decode_region_write(&m, 4096, &req), -EINVAL);
    m.payload_len = 20;
    ck_assert_int_eq(vfu_decode_region_write(&m, 2, &req), -E2BIG);

    a.count = 0;
    memcpy(buf, &a, sizeof(a));
    m = msg_of(VFU_CMD_REGION_READ, buf, 16, NULL, 0);
    ck_assert_int_eq(vfu_decode_region_read(&m, 4096, &req), -EINVAL);
    m.payload_len = 16;
    ck_assert_int_eq(vfu_decode_region_write(&m, 4096, &req), -EINVAL);

    /* A count near UINT32_MAX must not wrap the length check. */
    a.count = UINT32_MAX;
    memcpy(buf, &a, sizeof(a));
    m = msg_of(VFU_CMD_REGION_WRITE, buf, 16, NULL, 0);
    ck_assert_int_eq(vfu_decode_region_write(&m, UINT32_MAX, &req), -EINVAL);
}
END_TEST

START_TEST(test_write_multi)
{
    size_t max = 8 + (VFU_WRITE_MULTI_MAX + 1) * sizeof(struct vfu_write_one);
    uint8_t *buf = calloc(1, max);
    struct vfu_write_multi_req req;
    uint64_t n = 3;

    memcpy(buf, &n, 8);
    for (uint64_t i = 0; i < n; i++) {
        struct vfu_write_one one = {.offset = i * 4, .region = 0, .count = 4};
        memcpy(buf + 8 + i * sizeof(one), &one, sizeof(one));
    }
    struct vfu_msg m = msg_of(VFU_CMD_REGION_WRITE_MULTI, buf, 8 + 3 * 24, NULL, 0);
    ck_assert_int_eq(vfu_decode_write_multi(&m, &req), 0);
    ck_assert_uint_eq(req.count, 3);
    struct vfu_write_one got;
    memcpy(&got, &req.wrs[2], sizeof(got));
    ck_assert_uint_eq(got.offset, 8);

    m.payload_len = 8 + 2 * 24; /* count mismatch */
    ck_assert_int_eq(vfu_decode_write_multi(&m, &req), -EINVAL);
    m.payload_len = 8 + 4 * 24;
    ck_assert_int_eq(vfu_decode_write_multi(&m, &req), -EINVAL);
    m.payload_len = 7;
    ck_assert_int_eq(vfu_decode_write_multi(&m, &req), -EINVAL);

    /* An entry with count 9 (more than its 8 data bytes), then 0. */
    m.payload_len = 8 + 3 * 24;
    struct vfu_write_one bad = {.count = 9};
    memcpy(buf + 8 + 24, &bad, sizeof(bad));
    ck_assert_int_eq(vfu_decode_write_multi(&m, &req), -EINVAL);
    bad.count = 0;
    memcpy(buf + 8 + 24, &bad, sizeof(bad));
    ck_assert_int_eq(vfu_decode_write_multi(&m, &req), -EINVAL);

    n = 0;
    memcpy(buf, &n, 8);
    m.payload_len = 8;
    ck_assert_int_eq(vfu_decode_write_multi(&m, &req), -EINVAL);

    n = VFU_WRITE_MULTI_MAX + 1;
    memcpy(buf, &n, 8);
    m.payload_len = max;
    ck_assert_int_eq(vfu_decode_write_multi(&m, &req), -E2BIG);
    n = UINT64_MAX / 24 + 2; /* would wrap n * 24 */
    memcpy(buf, &n, 8);
    m.payload_len = 8 + 24;
    ck_assert_int_eq(vfu_decode_write_multi(&m, &req), -E2BIG);
    free(buf);
}
END_TEST

START_TEST(test_dma_read_reply)
{
    /* QEMU's reply: address, u32 count, data at 12, 4 bytes of tail padding. */
    uint8_t buf[16 + 8] = {0};
    uint64_t addr = 0xabc000;
    uint32_t count = 8;
    const uint8_t *data;

    memcpy(buf, &addr, 8);
    memcpy(buf + 8, &count, 4);
    memcpy(buf + 12, "ABCDEFGH", 8);
    struct vfu_msg m = msg_of(VFU_CMD_DMA_READ, buf, sizeof(buf), NULL, 0);
    ck_assert_int_eq(vfu_decode_dma_read_reply(&m, addr, 8, &data), 0);
    ck_assert_ptr_eq(data, buf + 12);
    ck_assert_int_eq(memcmp(data, "ABCDEFGH", 8), 0);

    ck_assert_int_eq(vfu_decode_dma_read_reply(&m, addr + 1, 8, &data), -EINVAL);
    ck_assert_int_eq(vfu_decode_dma_read_reply(&m, addr, 7, &data), -EINVAL);
    m.payload_len = 19;
    ck_assert_int_eq(vfu_decode_dma_read_reply(&m, addr, 8, &data), -EINVAL);
    m.payload_len = 20; /* exactly the data, no padding: still whole */
    ck_assert_int_eq(vfu_decode_dma_read_reply(&m, addr, 8, &data), 0);
}
END_TEST

START_TEST(test_command_name)
{
    ck_assert_str_eq(vfu_command_name(VFU_CMD_DMA_MAP), "DMA_MAP");
    ck_assert_str_eq(vfu_command_name(VFU_CMD_REGION_WRITE_MULTI), "REGION_WRITE_MULTI");
    ck_assert_str_eq(vfu_command_name(0), "UNKNOWN");
    ck_assert_str_eq(vfu_command_name(VFU_CMD_MAX), "UNKNOWN");
    ck_assert_str_eq(vfu_command_name(UINT16_MAX), "UNKNOWN");
}
END_TEST

static Suite *codec_suite(void)
{
    Suite *s = suite_create("codec");
    TCase *tc = tcase_create("decode");
    tcase_add_test(tc, test_header);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_dma_map);
    tcase_add_test(tc, test_dma_unmap);
    tcase_add_test(tc, test_infos);
    tcase_add_test(tc, test_irq_set);
    tcase_add_test(tc, test_region_rw);
    tcase_add_test(tc, test_write_multi);
    tcase_add_test(tc, test_dma_read_reply);
    tcase_add_test(tc, test_command_name);
    tcase_add_test(tc, test_device_feature);
    tcase_add_test(tc, test_feature_data);
    tcase_add_test(tc, test_mig_data);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(codec_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
