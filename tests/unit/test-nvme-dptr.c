/* SPDX-License-Identifier: MIT */
/*
 * The nvme plugin's data pointer parser (plugins/nvme/nvme-dptr.c) and NVM
 * command checks (nvme-io-decode.c) on fake guest memory: PRP1, PRP2, PRP
 * lists with a chain, SGL data blocks, segment chains, last segments, bit
 * buckets, and each status a bad pointer or command gets.
 */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "../../plugins/nvme/nvme-dptr.h"
#include "../../plugins/nvme/nvme-io-decode.h"

/* Guest memory: MEM_SIZE bytes at MEM_BASE; anything else is unmapped. */
#define MEM_BASE 0x100000ull
#define MEM_SIZE (1u << 20)
static uint8_t mem[MEM_SIZE];
static unsigned fetches;

static int fetch(void *opaque, uint64_t iova, void *buf, size_t len)
{
    fetches++;
    if (iova < MEM_BASE || iova - MEM_BASE > MEM_SIZE || len > MEM_SIZE - (iova - MEM_BASE))
        return -ENOENT;
    memcpy(buf, mem + (iova - MEM_BASE), len);
    return 0;
}

static struct nvme_dptr out;

static uint16_t parse(const struct nvme_sqe *cmd, uint64_t len, bool to_host)
{
    fetches = 0;
    return nvme_dptr_parse(cmd, len, to_host, fetch, NULL, &out);
}

static void seg_is(uint32_t i, uint64_t iova, uint32_t len, bool bucket)
{
    ck_assert_uint_lt(i, out.nr);
    ck_assert_uint_eq(out.seg[i].iova, iova);
    ck_assert_uint_eq(out.seg[i].len, len);
    ck_assert_int_eq(out.seg[i].bit_bucket, bucket);
}

static struct nvme_sqe prp(uint64_t prp1, uint64_t prp2)
{
    return (struct nvme_sqe){.opcode = NVME_CMD_READ, .prp1 = prp1, .prp2 = prp2};
}

static void put64(uint64_t iova, uint64_t v)
{
    memcpy(mem + (iova - MEM_BASE), &v, 8);
}

static struct nvme_sgl_desc desc(uint8_t type, uint64_t addr, uint32_t len)
{
    return (struct nvme_sgl_desc){.addr = addr, .len = len, .id = NVME_SGL_ID(type, 0)};
}

static void put_desc(uint64_t iova, struct nvme_sgl_desc d)
{
    memcpy(mem + (iova - MEM_BASE), &d, sizeof(d));
}

static struct nvme_sqe sgl(struct nvme_sgl_desc d)
{
    struct nvme_sqe c = {.opcode = NVME_CMD_READ, .flags = NVME_SQE_FLAGS_SGL};
    memcpy(&c.prp1, &d, sizeof(d));
    return c;
}

START_TEST(test_prp1_only)
{
    struct nvme_sqe c = prp(MEM_BASE + 0x204, 0xdead000);
    ck_assert_uint_eq(parse(&c, 512, true), NVME_SC_SUCCESS);
    ck_assert_uint_eq(out.nr, 1);
    seg_is(0, MEM_BASE + 0x204, 512, false);
    ck_assert_uint_eq(fetches, 0); /* PRP2 is not looked at */
    ck_assert_uint_eq(parse(&c, 0, true), NVME_SC_SUCCESS);
    ck_assert_uint_eq(out.nr, 0);
    c.prp1 = MEM_BASE + 2;
    ck_assert_uint_eq(parse(&c, 512, true), NVME_SC_PRP_OFFSET_INVALID);
}
END_TEST

START_TEST(test_prp2_page)
{
    struct nvme_sqe c = prp(MEM_BASE + 0xe00, MEM_BASE + 0x5000);
    ck_assert_uint_eq(parse(&c, 4096, false), NVME_SC_SUCCESS);
    ck_assert_uint_eq(out.nr, 2);
    seg_is(0, MEM_BASE + 0xe00, 0x200, false);
    seg_is(1, MEM_BASE + 0x5000, 0xe00, false);
    /* Adjacent pages come as one segment. */
    c = prp(MEM_BASE, MEM_BASE + 0x1000);
    ck_assert_uint_eq(parse(&c, 8192, false), NVME_SC_SUCCESS);
    ck_assert_uint_eq(out.nr, 1);
    seg_is(0, MEM_BASE, 8192, false);
    c.prp2 = MEM_BASE + 0x1100;
    ck_assert_uint_eq(parse(&c, 8192, false), NVME_SC_PRP_OFFSET_INVALID);
}
END_TEST

START_TEST(test_prp_list_chained)
{
    /* 128 KiB from offset 0x800 of a page: 32 more pages. The first list
     * sits 3 entries before its page's end: two pages and a chain pointer. */
    uint64_t list1 = MEM_BASE + 0x10000 + 0xfe8, list2 = MEM_BASE + 0x20000;
    for (int i = 0; i < 2; i++)
        put64(list1 + 8 * i, MEM_BASE + 0x40000 + 0x2000ull * i);
    put64(list1 + 16, list2);
    for (int i = 0; i < 30; i++)
        put64(list2 + 8 * i, MEM_BASE + 0x80000 + 0x2000ull * i);
    struct nvme_sqe c = prp(MEM_BASE + 0x800, list1);
    ck_assert_uint_eq(parse(&c, NVME_MAX_XFER, true), NVME_SC_SUCCESS);
    ck_assert_uint_eq(out.nr, 33);
    ck_assert_uint_eq(out.len, NVME_MAX_XFER);
    seg_is(0, MEM_BASE + 0x800, 0x800, false);
    seg_is(1, MEM_BASE + 0x40000, 4096, false);
    seg_is(3, MEM_BASE + 0x80000, 4096, false);
    seg_is(32, MEM_BASE + 0x80000 + 0x2000ull * 29, 0x800, false);
    ck_assert_uint_eq(fetches, 2);

    /* Over MDTS, an entry with an offset, an unaligned list, unmapped lists. */
    ck_assert_uint_eq(parse(&c, NVME_MAX_XFER + 1, true), NVME_SC_INVALID_FIELD);
    put64(list2 + 8, MEM_BASE + 0x80010);
    ck_assert_uint_eq(parse(&c, NVME_MAX_XFER, true), NVME_SC_PRP_OFFSET_INVALID);
    c.prp2 = list1 + 4;
    ck_assert_uint_eq(parse(&c, NVME_MAX_XFER, true), NVME_SC_PRP_OFFSET_INVALID);
    c.prp2 = 0x7000000000ull;
    ck_assert_uint_eq(parse(&c, NVME_MAX_XFER, true), NVME_SC_DATA_XFER_ERROR);
    put64(list1 + 16, 0x7000000000ull);
    c.prp2 = list1;
    ck_assert_uint_eq(parse(&c, NVME_MAX_XFER, true), NVME_SC_DATA_XFER_ERROR);
}
END_TEST

START_TEST(test_sgl_data_block)
{
    /* Any byte address, any length; a longer SGL than the data is fine. */
    struct nvme_sqe c = sgl(desc(NVME_SGL_DATA_BLOCK, MEM_BASE + 3, 10000));
    ck_assert_uint_eq(parse(&c, 8192, false), NVME_SC_SUCCESS);
    ck_assert_uint_eq(out.nr, 1);
    seg_is(0, MEM_BASE + 3, 8192, false);
    ck_assert_uint_eq(fetches, 0);
    /* Shorter: Data SGL Length Invalid. */
    ck_assert_uint_eq(parse(&c, 16384, false), NVME_SC_SGL_LENGTH_INVALID);
    /* A subtype other than address, a keyed data block, a reserved type. */
    struct nvme_sgl_desc d = desc(NVME_SGL_DATA_BLOCK, MEM_BASE, 4096);
    d.id = NVME_SGL_ID(NVME_SGL_DATA_BLOCK, 1);
    c = sgl(d);
    ck_assert_uint_eq(parse(&c, 4096, false), NVME_SC_SGL_TYPE_INVALID);
    c = sgl(desc(NVME_SGL_KEYED_DATA_BLOCK, MEM_BASE, 4096));
    ck_assert_uint_eq(parse(&c, 4096, false), NVME_SC_SGL_TYPE_INVALID);
    c = sgl(desc(0xe, MEM_BASE, 4096));
    ck_assert_uint_eq(parse(&c, 4096, false), NVME_SC_SGL_TYPE_INVALID);
    /* Memory that would wrap past 2^64. */
    c = sgl(desc(NVME_SGL_DATA_BLOCK, UINT64_MAX - 100, 4096));
    ck_assert_uint_eq(parse(&c, 4096, false), NVME_SC_DATA_XFER_ERROR);
    /* PSDT 10b (MPTR an SGL) and 11b are refused. */
    c = sgl(desc(NVME_SGL_DATA_BLOCK, MEM_BASE, 4096));
    c.flags = NVME_PSDT_SGL_MPTR << 6;
    ck_assert_uint_eq(parse(&c, 4096, false), NVME_SC_INVALID_FIELD);
    c.flags = 3 << 6;
    ck_assert_uint_eq(parse(&c, 4096, false), NVME_SC_INVALID_FIELD);
}
END_TEST

START_TEST(test_sgl_segment_chain)
{
    /* DPTR -> segment A (2 data blocks, a Segment descriptor) -> segment B
     * (a data block, a Last Segment descriptor) -> last segment (2 blocks). */
    uint64_t a = MEM_BASE + 0x1000, b = MEM_BASE + 0x2008, last = MEM_BASE + 0x3000;
    put_desc(a, desc(NVME_SGL_DATA_BLOCK, MEM_BASE + 0x10000, 1000));
    put_desc(a + 16, desc(NVME_SGL_DATA_BLOCK, MEM_BASE + 0x10000 + 1000, 24)); /* adjacent */
    put_desc(a + 32, desc(NVME_SGL_SEGMENT, b, 32));
    put_desc(b, desc(NVME_SGL_DATA_BLOCK, MEM_BASE + 0x20001, 3000));
    put_desc(b + 16, desc(NVME_SGL_LAST_SEGMENT, last, 32));
    put_desc(last, desc(NVME_SGL_DATA_BLOCK, MEM_BASE + 0x30000, 0)); /* a no-op */
    put_desc(last + 16, desc(NVME_SGL_DATA_BLOCK, MEM_BASE + 0x40000, 5000));
    struct nvme_sqe c = sgl(desc(NVME_SGL_SEGMENT, a, 48));
    ck_assert_uint_eq(parse(&c, 1024 + 3000 + 4000, false), NVME_SC_SUCCESS);
    ck_assert_uint_eq(out.nr, 3);
    seg_is(0, MEM_BASE + 0x10000, 1024, false);
    seg_is(1, MEM_BASE + 0x20001, 3000, false);
    seg_is(2, MEM_BASE + 0x40000, 4000, false);
    ck_assert_uint_eq(out.len, 8024);
    /* All of it and more is too much. */
    ck_assert_uint_eq(parse(&c, 1024 + 3000 + 5000 + 1, false), NVME_SC_SGL_LENGTH_INVALID);
    /* The DPTR as a Last Segment descriptor straight away. */
    c = sgl(desc(NVME_SGL_LAST_SEGMENT, last, 32));
    ck_assert_uint_eq(parse(&c, 5000, false), NVME_SC_SUCCESS);
    seg_is(0, MEM_BASE + 0x40000, 5000, false);

    /* Segment errors: a segment descriptor in the last segment, one not last
     * in its segment, a length not a multiple of 16, an empty segment, an
     * unmapped segment. */
    put_desc(last + 16, desc(NVME_SGL_SEGMENT, a, 48));
    ck_assert_uint_eq(parse(&c, 5000, false), NVME_SC_SGL_SEGMENT_INVALID);
    put_desc(last + 16, desc(NVME_SGL_DATA_BLOCK, MEM_BASE + 0x40000, 5000));
    c = sgl(desc(NVME_SGL_SEGMENT, a, 64)); /* the Segment descriptor is not last */
    ck_assert_uint_eq(parse(&c, 8024, false), NVME_SC_SGL_SEGMENT_INVALID);
    c = sgl(desc(NVME_SGL_SEGMENT, a, 40));
    ck_assert_uint_eq(parse(&c, 8024, false), NVME_SC_SGL_SEGMENT_INVALID);
    c = sgl(desc(NVME_SGL_SEGMENT, a, 0));
    ck_assert_uint_eq(parse(&c, 8024, false), NVME_SC_SGL_SEGMENT_INVALID);
    c = sgl(desc(NVME_SGL_SEGMENT, 0x7000000000ull, 48));
    ck_assert_uint_eq(parse(&c, 8024, false), NVME_SC_DATA_XFER_ERROR);
}
END_TEST

START_TEST(test_sgl_cycle_is_bounded)
{
    /* A segment whose Segment descriptor points at itself, with an empty
     * data block before it: the walk stops at the descriptor cap. */
    uint64_t s = MEM_BASE + 0x5000;
    put_desc(s, desc(NVME_SGL_DATA_BLOCK, MEM_BASE, 0));
    put_desc(s + 16, desc(NVME_SGL_SEGMENT, s, 32));
    struct nvme_sqe c = sgl(desc(NVME_SGL_SEGMENT, s, 32));
    ck_assert_uint_eq(parse(&c, 4096, false), NVME_SC_SGL_COUNT_INVALID);
    ck_assert_uint_le(fetches, NVME_DPTR_MAX_DESCS);
    /* Also a segment of 2^28 descriptors. */
    put_desc(s + 16, desc(NVME_SGL_DATA_BLOCK, MEM_BASE, 0));
    c = sgl(desc(NVME_SGL_LAST_SEGMENT, s, 0xfffffff0u));
    ck_assert_uint_eq(parse(&c, 4096, false), NVME_SC_SGL_COUNT_INVALID);
    ck_assert_uint_le(fetches, NVME_DPTR_MAX_DESCS);
    memset(mem, 0, MEM_SIZE);
    for (uint32_t i = 0; i < 512; i++)
        put_desc(MEM_BASE + 16 * i, desc(NVME_SGL_DATA_BLOCK, MEM_BASE + 0x80000 + 2 * i, 1));
    c = sgl(desc(NVME_SGL_LAST_SEGMENT, MEM_BASE, 512 * 16));
    ck_assert_uint_eq(parse(&c, 512, false), NVME_SC_SGL_COUNT_INVALID);
    ck_assert_uint_eq(parse(&c, 255, false), NVME_SC_SUCCESS);
    ck_assert_uint_eq(out.nr, 255);
}
END_TEST

START_TEST(test_sgl_bit_bucket)
{
    uint64_t s = MEM_BASE + 0x6000;
    put_desc(s, desc(NVME_SGL_DATA_BLOCK, MEM_BASE + 0x10000, 512));
    put_desc(s + 16, desc(NVME_SGL_BIT_BUCKET, 0, 1024));
    put_desc(s + 32, desc(NVME_SGL_BIT_BUCKET, 0x1234, 512));
    put_desc(s + 48, desc(NVME_SGL_DATA_BLOCK, MEM_BASE + 0x10200, 2048));
    struct nvme_sqe c = sgl(desc(NVME_SGL_LAST_SEGMENT, s, 64));
    ck_assert_uint_eq(parse(&c, 4096, true), NVME_SC_SUCCESS);
    ck_assert_uint_eq(out.nr, 3); /* the buckets merge; data around them does not */
    seg_is(0, MEM_BASE + 0x10000, 512, false);
    seg_is(1, 0, 1536, true);
    seg_is(2, MEM_BASE + 0x10200, 2048, false);
    /* Nothing to discard on a write. */
    ck_assert_uint_eq(parse(&c, 4096, false), NVME_SC_SGL_TYPE_INVALID);
}
END_TEST

/* ---- nvme_io_decode ------------------------------------------------------- */

static const struct nvme_ns_geom geom = {.nr_blocks = 1000, .lba_shift = 9};

static struct nvme_sqe io(uint8_t opcode, uint64_t slba, uint32_t nlb)
{
    return (struct nvme_sqe){.opcode = opcode,
                             .nsid = 1,
                             .cdw10 = (uint32_t)slba,
                             .cdw11 = (uint32_t)(slba >> 32),
                             .cdw12 = nlb - 1};
}

START_TEST(test_io_decode)
{
    struct nvme_io_req req;
    struct nvme_sqe c = io(NVME_CMD_READ, 10, 8);
    ck_assert_uint_eq(nvme_io_decode(&c, &geom, &req), NVME_SC_SUCCESS);
    ck_assert_uint_eq(req.off, 5120);
    ck_assert_uint_eq(req.len, 4096);
    ck_assert_uint_eq(req.xfer, 4096);
    c.flags = NVME_SQE_FLAGS_SGL;
    ck_assert_uint_eq(nvme_io_decode(&c, &geom, &req), NVME_SC_SUCCESS);
    c.flags = NVME_PSDT_SGL_MPTR << 6;
    ck_assert_uint_eq(nvme_io_decode(&c, &geom, &req), NVME_SC_INVALID_FIELD);
    c.flags = 1; /* fused, first */
    ck_assert_uint_eq(nvme_io_decode(&c, &geom, &req), NVME_SC_INVALID_FIELD);
    c.flags = 0;
    /* No active namespace by the command's NSID: the caller has no geometry. */
    c.nsid = 2;
    ck_assert_uint_eq(nvme_io_decode(&c, NULL, &req), NVME_SC_INVALID_NS);
    c.nsid = NVME_NSID_ALL; /* only a Flush may name every namespace */
    ck_assert_uint_eq(nvme_io_decode(&c, NULL, &req), NVME_SC_INVALID_NS);
    c = io(NVME_CMD_FLUSH, 0, 1);
    c.nsid = NVME_NSID_ALL;
    ck_assert_uint_eq(nvme_io_decode(&c, NULL, &req), NVME_SC_SUCCESS);
    ck_assert_uint_eq(req.xfer, 0);
    c.opcode = 0x7f;
    ck_assert_uint_eq(nvme_io_decode(&c, &geom, &req), NVME_SC_INVALID_OPCODE);

    c = io(NVME_CMD_WRITE, 999, 2);
    ck_assert_uint_eq(nvme_io_decode(&c, &geom, &req), NVME_SC_LBA_RANGE);
    c = io(NVME_CMD_WRITE, UINT64_MAX, 1);
    ck_assert_uint_eq(nvme_io_decode(&c, &geom, &req), NVME_SC_LBA_RANGE);
    c = io(NVME_CMD_COMPARE, 0, 257); /* 128.5 KiB: over MDTS */
    ck_assert_uint_eq(nvme_io_decode(&c, &geom, &req), NVME_SC_INVALID_FIELD);
    c = io(NVME_CMD_WRITE_ZEROES, 0, 1000); /* no data: no MDTS */
    ck_assert_uint_eq(nvme_io_decode(&c, &geom, &req), NVME_SC_SUCCESS);
    ck_assert_uint_eq(req.len, 1000 * 512);
    ck_assert_uint_eq(req.xfer, 0);
    c = (struct nvme_sqe){.opcode = NVME_CMD_DSM, .nsid = 1, .cdw10 = 255};
    ck_assert_uint_eq(nvme_io_decode(&c, &geom, &req), NVME_SC_SUCCESS);
    ck_assert_uint_eq(req.nr_ranges, 256);
    ck_assert_uint_eq(req.xfer, 4096);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nvme-dptr");
    TCase *tc = tcase_create("nvme-dptr");
    tcase_add_test(tc, test_prp1_only);
    tcase_add_test(tc, test_prp2_page);
    tcase_add_test(tc, test_prp_list_chained);
    tcase_add_test(tc, test_sgl_data_block);
    tcase_add_test(tc, test_sgl_segment_chain);
    tcase_add_test(tc, test_sgl_cycle_is_bounded);
    tcase_add_test(tc, test_sgl_bit_bucket);
    tcase_add_test(tc, test_io_decode);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
