/* SPDX-License-Identifier: MIT */
/*
 * Several namespaces on one nvme controller ("nsN_size" / "nsN_backing",
 * N = 2..4, beside namespace 1's "size" / "backing") end to end: the real
 * muserd, the real plugin and the in-tree driver (helpers/nvme-driver.h).
 * Identify (NN, the active namespace list, each namespace's size, format,
 * write protection and NGUID, inactive and invalid nsids) for several
 * layouts; NVM commands reaching the namespace their nsid names and no
 * other; RAM, file and 4 KiB namespaces in one controller; Flush of every
 * namespace; the configs refused; migration of every namespace's data, and
 * a destination with another set of namespaces refusing the stream. The
 * file-backed I/O tests run once per "aio" engine.
 */
#include <check.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers/nvme-check.h"
#include "helpers/nvme-driver.h"
#include "helpers/nvme-files.h"
#include "helpers/side.h"
#include "helpers/testutil.h"

#define MAX_NSID 4
#define NSID_ALL 0xffffffffu
#define MIB      (1u << 20)
/* Guest memory: a PRP list page, a DSM range page, two data areas. */
#define LIST   0x1f0000ull
#define RANGES 0x1f1000ull
#define BUF_A  0x200000ull
#define BUF_B  0x400000ull
/* The io_uring instance an engine holds, as /proc/PID/fd shows it. */
#define IO_URING_FD "anon_inode:[io_uring]"

/* The loop tests' index: which engine the file-backed namespaces run on. */
static const char *const aio_modes[] = {"threads", "io_uring"};

static struct tu_side src, dst;
static struct tu_side *side = &src; /* the one the driver talks to */
static struct vfu_client *client;
static struct nvme_drv drv;
/* The block size of each nsid of the device under test: io() sizes its
 * data by it (512 for nsids that do not exist). */
static uint32_t block_bytes[MAX_NSID + 1];
/* Each test's directory lives in base_dir, which main() removes: a test
 * that fails ends its process without teardown. */
static char base_dir[PATH_MAX];
static char dir[PATH_MAX];

/* ---- devices -------------------------------------------------------------- */

static void setup(void)
{
    tu_make_dir(dir, base_dir);
    for (int n = 0; n <= MAX_NSID; n++)
        block_bytes[n] = 512;
    side = &src;
    tu_side_start(&src, (const char *const[]){"nvme", NULL}, (const char *const[]){NULL});
}

static void stop_io(void)
{
    nvme_drv_free(&drv);
    if (client)
        vfu_client_free(client);
    client = NULL;
}

static void teardown(void)
{
    if (drv.mem)
        stop_io();
    tu_side_stop(&src);
    tu_side_stop(&dst);
    tu_remove_dir(dir);
}

/* An nvme device id on src of config json; it must be created. */
static void create(const char *id, const char *json)
{
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    int r = tu_side_create(&src, "nvme", id, json, &e);
    if (r < 0)
        test_daemon_dump_log(src.daemon, 4096);
    ck_assert_msg(r >= 0, "CreateDevice %s: %s: %s", json, e.name, e.message);
}

/* Connect to device id of s, enable the controller, make I/O queue 1 (the
 * devices have "queues": 1). */
static void start_io(struct tu_side *s, const char *id)
{
    side = s;
    client = tu_open(s->daemon, id);
    int r = nvme_drv_attach(&drv, client, true, 2);
    ck_assert_msg(r == 0, "attaching the driver: %s", strerror(-r));
    r = nvme_drv_enable(&drv);
    if (r < 0)
        test_daemon_dump_log(s->daemon, 4096);
    ck_assert_msg(r == 0, "enabling the controller: %s", strerror(-r));
    tu_nvme_set_queues(&drv, s->daemon, 1);
    tu_nvme_create_queue(&drv, 1);
}

/* Device n0 of config json on src, the driver started on it. */
static void device(const char *json)
{
    create("n0", json);
    start_io(&src, "n0");
}

/* A config from a template (its "%s" the paths given; arguments past
 * them are ignored), malloc()ed. No format attribute: the tables' templates
 * are not literals. */
static char *config(const char *fmt, ...)
{
    char *json = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&json, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    return json;
}

/* ---- commands ------------------------------------------------------------- */

static void *mem(uint64_t off)
{
    return nvme_drv_ptr(&drv, off);
}

static void expect(struct nvme_sqe c, uint16_t want, const char *what)
{
    tu_nvme_expect_status(&drv, side->daemon, 1, &c, want, what);
}

static void ok(struct nvme_sqe c, const char *what)
{
    expect(c, NVME_SC_SUCCESS, what);
}

static uint32_t block_of(uint32_t nsid)
{
    return nsid <= MAX_NSID ? block_bytes[nsid] : 512;
}

/* A Read, Write or Compare of nlb blocks at slba of namespace nsid, its
 * data at guest offset buf (page aligned) on, a PRP list at guest offset
 * list when it takes one. */
static struct nvme_sqe io_listed(uint32_t nsid, uint8_t opcode, uint64_t slba, uint32_t nlb,
                                 uint64_t buf, uint64_t list)
{
    uint32_t pages = (uint32_t)(((uint64_t)nlb * block_of(nsid) + 4095) / 4096);
    uint64_t prp2 = 0;
    if (pages == 2)
        prp2 = nvme_drv_iova(buf + 4096);
    else if (pages > 2)
        prp2 = nvme_drv_prp_list(&drv, list, buf, pages - 1);
    struct nvme_sqe c = nvme_drv_rw(opcode, slba, nlb, nvme_drv_iova(buf), prp2);
    c.nsid = nsid;
    return c;
}

/* The same, one at a time: the PRP list at LIST. */
static struct nvme_sqe io(uint32_t nsid, uint8_t opcode, uint64_t slba, uint32_t nlb, uint64_t buf)
{
    return io_listed(nsid, opcode, slba, nlb, buf, LIST);
}

static struct nvme_sqe write_zeroes(uint32_t nsid, uint64_t slba, uint32_t nlb)
{
    struct nvme_sqe c = nvme_drv_rw(NVME_CMD_WRITE_ZEROES, slba, nlb, 0, 0);
    c.nsid = nsid;
    return c;
}

/* Dataset Management, deallocate, of nlb blocks at slba. */
static struct nvme_sqe deallocate(uint32_t nsid, uint64_t slba, uint32_t nlb)
{
    uint32_t *r = mem(RANGES);
    r[0] = 0;
    r[1] = nlb;
    r[2] = (uint32_t)slba;
    r[3] = (uint32_t)(slba >> 32);
    return (struct nvme_sqe){
        .opcode = NVME_CMD_DSM, .nsid = nsid, .prp1 = nvme_drv_iova(RANGES), .cdw11 = 1u << 2};
}

static struct nvme_sqe flush(uint32_t nsid)
{
    return (struct nvme_sqe){.opcode = NVME_CMD_FLUSH, .nsid = nsid};
}

/* len bytes of the pattern `seed` written at slba of namespace nsid. */
static void write_pat(uint32_t nsid, uint64_t slba, uint32_t len, uint8_t seed, const char *what)
{
    tu_fill_pat(mem(BUF_A), len, seed);
    ok(io(nsid, NVME_CMD_WRITE, slba, len / block_of(nsid), BUF_A), what);
}

/* len bytes at slba of namespace nsid read the pattern `seed`. */
static void read_pat(uint32_t nsid, uint64_t slba, uint32_t len, uint8_t seed, const char *what)
{
    memset(mem(BUF_B), 0, len);
    ok(io(nsid, NVME_CMD_READ, slba, len / block_of(nsid), BUF_B), what);
    tu_check_pat(mem(BUF_B), len, seed, 0, what);
}

/* len bytes at slba of namespace nsid read as zeros. */
static void read_zero(uint32_t nsid, uint64_t slba, uint32_t len, const char *what)
{
    memset(mem(BUF_B), 0xff, len);
    ok(io(nsid, NVME_CMD_READ, slba, len / block_of(nsid), BUF_B), what);
    tu_check_zero(mem(BUF_B), len, what);
}

/* ---- identify ------------------------------------------------------------- */

static const uint8_t *identify(uint32_t cns, uint32_t nsid)
{
    return tu_nvme_identify(&drv, side->daemon, cns, nsid);
}

static void expect_identify(uint32_t cns, uint32_t nsid, uint16_t want, const char *what)
{
    struct nvme_sqe c = {.opcode = NVME_ADM_IDENTIFY,
                         .nsid = nsid,
                         .prp1 = nvme_drv_iova(NVME_DRV_DATA),
                         .cdw10 = cns};
    tu_nvme_expect_status(&drv, side->daemon, 0, &c, want, what);
}

static uint32_t le32_at(const uint8_t *p, size_t off)
{
    uint32_t v;
    memcpy(&v, p + off, 4);
    return le32toh(v);
}

static uint64_t le64_at(const uint8_t *p, size_t off)
{
    uint64_t v;
    memcpy(&v, p + off, 8);
    return le64toh(v);
}

/* Identify Controller's NN. */
static uint32_t nn(void)
{
    return le32_at(identify(NVME_ID_CNS_CTRL, 0), 516);
}

/* A namespace as the config makes it; bytes 0: no such namespace. */
struct ns_want {
    uint64_t bytes;
    uint32_t block;
    bool read_only;
};

/* Layouts of RAM namespaces and what Identify must say of each nsid. */
static const struct layout {
    const char *json;
    struct ns_want ns[MAX_NSID + 1]; /* [0] unused */
} layouts[] = {
    /* One namespace: the controller as before. */
    {"{\"size\": 1048576, \"queues\": 1}", {[1] = {MIB, 512, false}}},
    /* A gap: namespace 3 beside 1, with keys of its own. */
    {"{\"size\": 2097152, \"ns3_size\": 1048576, \"ns3_block_size\": 4096, "
     "\"ns3_read_only\": true, \"queues\": 1}",
     {[1] = {2 * MIB, 512, false}, [3] = {MIB, 4096, true}}},
    /* All four, each of its own size. */
    {"{\"size\": 1048576, \"ns2_size\": 2097152, \"ns3_size\": 3145728, \"ns4_size\": 4194304, "
     "\"queues\": 1}",
     {[1] = {MIB, 512, false},
      [2] = {2 * MIB, 512, false},
      [3] = {3 * MIB, 512, false},
      [4] = {4 * MIB, 512, false}}},
    /* Namespace 4 alone beside 1: NN 4, 2 and 3 inactive. */
    {"{\"size\": 1048576, \"ns4_size\": 8388608, \"ns4_block_size\": 512, \"queues\": 1}",
     {[1] = {MIB, 512, false}, [4] = {8 * MIB, 512, false}}},
    /* Namespace 1's block_size and read_only are not namespace 2's. */
    {"{\"size\": 1048576, \"block_size\": 4096, \"read_only\": true, \"ns2_size\": 1048576, "
     "\"queues\": 1}",
     {[1] = {MIB, 4096, true}, [2] = {MIB, 512, false}}},
};

/* NN, the active namespace list from every nsid up to NN, Identify
 * Namespace of each nsid up to NN and past it, the NGUIDs. */
static void check_identify(const struct layout *l)
{
    char what[128];
    uint32_t last = 0;
    for (uint32_t n = 1; n <= MAX_NSID; n++)
        if (l->ns[n].bytes)
            last = n;
    uint32_t reported = nn();
    ck_assert_msg(reported == last, "%s: NN is %u, expected %u", l->json, reported, last);

    for (uint32_t from = 0; from <= last; from++) {
        const uint8_t *id = identify(NVME_ID_CNS_NS_ACTIVE_LIST, from);
        uint32_t k = 0;
        for (uint32_t n = from + 1; n <= last; n++) {
            if (!l->ns[n].bytes)
                continue;
            ck_assert_msg(le32_at(id, 4 * k) == n,
                          "%s: entry %u of the active list above %u is %u, expected %u", l->json, k,
                          from, le32_at(id, 4 * k), n);
            k++;
        }
        snprintf(what, sizeof(what), "the active list above nsid %u after its %u entries", from, k);
        tu_check_zero(id + 4 * k, NVME_ID_SIZE - 4 * k, what);
    }
    tu_check_zero(identify(NVME_ID_CNS_NS_ACTIVE_LIST, last + 1), NVME_ID_SIZE,
                  "the active list above NN");
    tu_check_zero(identify(NVME_ID_CNS_NS_ACTIVE_LIST, 0x1000), NVME_ID_SIZE,
                  "the active list above nsid 0x1000");

    for (uint32_t n = 1; n <= last; n++) {
        const struct ns_want *w = &l->ns[n];
        const uint8_t *id = identify(NVME_ID_CNS_NS, n);
        if (!w->bytes) {
            snprintf(what, sizeof(what), "%s: Identify Namespace of inactive nsid %u", l->json, n);
            tu_check_zero(id, NVME_ID_SIZE, what);
            continue;
        }
        uint64_t blocks = w->bytes / w->block;
        ck_assert_msg(le64_at(id, 0) == blocks, "%s: nsid %u: NSZE %llu, expected %llu", l->json, n,
                      (unsigned long long)le64_at(id, 0), (unsigned long long)blocks);
        ck_assert_msg(le64_at(id, 8) == blocks, "%s: nsid %u: NCAP %llu, expected %llu", l->json, n,
                      (unsigned long long)le64_at(id, 8), (unsigned long long)blocks);
        ck_assert_msg(id[130] == __builtin_ctz(w->block), "%s: nsid %u: LBADS %u, expected %d",
                      l->json, n, id[130], __builtin_ctz(w->block));
        ck_assert_msg((id[99] & 1) == w->read_only, "%s: nsid %u: NSATTR %#x, expected %u", l->json,
                      n, id[99], w->read_only);
    }
    expect_identify(NVME_ID_CNS_NS, last + 1, NVME_SC_INVALID_NS, "Identify Namespace past NN");
    /* The capabilities common to all namespaces are for a controller with
     * Namespace Management; this one has none, and no common format. */
    expect_identify(NVME_ID_CNS_NS, 0xffffffffu, NVME_SC_INVALID_NS,
                    "Identify Namespace of nsid 0xffffffff");
    /* VWC: a volatile write cache, and Flush of nsid 0xffffffff supported. */
    ck_assert_msg(identify(NVME_ID_CNS_CTRL, 0)[525] == 0x7, "%s: VWC %#x, expected 0x7", l->json,
                  identify(NVME_ID_CNS_CTRL, 0)[525]);
    expect_identify(NVME_ID_CNS_NS, 0xfffffffeu, NVME_SC_INVALID_NS,
                    "Identify Namespace of nsid 0xfffffffe");

    uint8_t nguid[MAX_NSID + 1][16];
    for (uint32_t n = 1; n <= last; n++) {
        if (!l->ns[n].bytes)
            continue;
        const uint8_t *id = identify(NVME_ID_CNS_NS_DESC_LIST, n);
        ck_assert_msg(id[0] == 2 && id[1] == 16,
                      "%s: nsid %u: the first descriptor is NIDT %u NIDL %u, not an NGUID", l->json,
                      n, id[0], id[1]);
        memcpy(nguid[n], id + 4, 16);
        static const uint8_t zero[16];
        ck_assert_msg(memcmp(nguid[n], zero, 16) != 0, "%s: nsid %u: the NGUID is 0", l->json, n);
        for (uint32_t m = 1; m < n; m++)
            ck_assert_msg(!l->ns[m].bytes || memcmp(nguid[m], nguid[n], 16) != 0,
                          "%s: namespaces %u and %u have the same NGUID", l->json, m, n);
    }
}

/* Each namespace's last block takes the writes it should and keeps them
 * apart from the others'; one block on is out of range; an inactive nsid
 * refuses commands. */
static void check_layout_io(const struct layout *l)
{
    char what[128];
    uint32_t last = nn();
    for (uint32_t n = 1; n <= MAX_NSID; n++)
        block_bytes[n] = l->ns[n].bytes ? l->ns[n].block : 512;
    for (uint32_t n = 1; n <= last; n++) {
        const struct ns_want *w = &l->ns[n];
        snprintf(what, sizeof(what), "%s: nsid %u", l->json, n);
        if (!w->bytes) {
            expect(io(n, NVME_CMD_READ, 0, 1, BUF_B), NVME_SC_INVALID_NS, what);
            continue;
        }
        uint64_t end = w->bytes / w->block;
        if (w->read_only)
            expect(io(n, NVME_CMD_WRITE, end - 1, 1, BUF_A), NVME_SC_NS_WRITE_PROTECTED, what);
        else
            write_pat(n, end - 1, w->block, (uint8_t)(10 * n), what);
        expect(io(n, NVME_CMD_READ, end, 1, BUF_B), NVME_SC_LBA_RANGE, what);
        expect(io(n, NVME_CMD_READ, end - 1, 2, BUF_B), NVME_SC_LBA_RANGE, what);
    }
    for (uint32_t n = 1; n <= last; n++) {
        const struct ns_want *w = &l->ns[n];
        snprintf(what, sizeof(what), "%s: the last block of nsid %u", l->json, n);
        if (w->bytes && w->read_only)
            read_zero(n, w->bytes / w->block - 1, w->block, what);
        else if (w->bytes)
            read_pat(n, w->bytes / w->block - 1, w->block, (uint8_t)(10 * n), what);
    }
}

START_TEST(test_identify_layouts)
{
    device(layouts[_i].json);
    check_identify(&layouts[_i]);
    check_layout_io(&layouts[_i]);
}
END_TEST

/* ---- RAM namespaces ------------------------------------------------------- */

/* Data written to one namespace is not in the other at the same LBA, and
 * Compare, Write Zeroes and deallocate act on the namespace named alone. */
START_TEST(test_data_stays_in_its_namespace)
{
    device("{\"size\": 2097152, \"ns2_size\": 1048576, \"queues\": 1}");
    write_pat(2, 100, 65536, 1, "64 KiB to ns 2 at block 100");
    read_zero(1, 100, 65536, "ns 1 at block 100, after ns 2 was written there");
    write_pat(1, 300, 65536, 2, "64 KiB to ns 1 at block 300");
    read_zero(2, 300, 65536, "ns 2 at block 300, after ns 1 was written there");
    read_pat(2, 100, 65536, 1, "ns 2 at block 100");
    write_pat(1, 100, 65536, 3, "64 KiB to ns 1 at block 100");
    read_pat(2, 100, 65536, 1, "ns 2 at block 100 after ns 1 was written there");
    read_pat(1, 100, 65536, 3, "ns 1 at block 100");

    tu_fill_pat(mem(BUF_A), 65536, 3);
    ok(io(1, NVME_CMD_COMPARE, 100, 128, BUF_A), "Compare with ns 1's data on ns 1");
    expect(io(2, NVME_CMD_COMPARE, 100, 128, BUF_A), NVME_SC_COMPARE_FAILED,
           "Compare with ns 1's data on ns 2");

    ok(write_zeroes(2, 100, 128), "Write Zeroes on ns 2");
    read_zero(2, 100, 65536, "ns 2 after Write Zeroes");
    read_pat(1, 100, 65536, 3, "ns 1 after Write Zeroes on ns 2");
    write_pat(2, 300, 65536, 4, "64 KiB to ns 2 at block 300");
    ok(deallocate(1, 300, 128), "deallocate on ns 1");
    read_zero(1, 300, 65536, "ns 1 after the deallocate");
    read_pat(2, 300, 65536, 4, "ns 2 after a deallocate on ns 1");
}
END_TEST

/* An LBA past namespace 2's end is out of range there, whatever namespace
 * 1 holds. */
START_TEST(test_lba_range_is_the_namespace_s)
{
    device("{\"size\": 2097152, \"ns2_size\": 1048576, \"ns3_size\": 1048576, "
           "\"ns3_block_size\": 4096, \"queues\": 1}");
    block_bytes[3] = 4096;
    write_pat(1, 2048, 4096, 5, "ns 1 past ns 2's end");
    read_pat(1, 2048, 4096, 5, "ns 1 past ns 2's end");
    write_pat(2, 2040, 4096, 6, "ns 2's last 8 blocks");
    read_pat(2, 2040, 4096, 6, "ns 2's last 8 blocks");
    expect(io(2, NVME_CMD_READ, 2048, 8, BUF_B), NVME_SC_LBA_RANGE, "a Read of ns 2 at its end");
    expect(io(2, NVME_CMD_WRITE, 2044, 8, BUF_A), NVME_SC_LBA_RANGE, "a Write over ns 2's end");
    expect(write_zeroes(2, 2048, 1), NVME_SC_LBA_RANGE, "Write Zeroes of ns 2 at its end");
    expect(deallocate(2, 2040, 16), NVME_SC_LBA_RANGE, "a deallocate over ns 2's end");
    read_pat(2, 2040, 4096, 6, "ns 2's last 8 blocks after the refused commands");
    read_pat(1, 2048, 4096, 5, "ns 1 past ns 2's end after the refused commands");
    /* ns 3: 256 blocks of 4 KiB, whatever LBAs the others have. */
    write_pat(3, 255, 4096, 7, "ns 3's last block");
    expect(io(3, NVME_CMD_READ, 256, 1, BUF_B), NVME_SC_LBA_RANGE, "a Read of ns 3 at its end");
    expect(io(3, NVME_CMD_WRITE, 255, 2, BUF_A), NVME_SC_LBA_RANGE, "a Write over ns 3's end");
    read_pat(3, 255, 4096, 7, "ns 3's last block");
}
END_TEST

/* Commands for nsid 0, an inactive nsid and nsids past NN complete with
 * Invalid Namespace; the broadcast nsid is taken by Flush alone. */
START_TEST(test_missing_namespaces_refuse_commands)
{
    device("{\"size\": 1048576, \"ns3_size\": 1048576, \"queues\": 1}");
    const uint32_t nsids[] = {0, 2, 4, 5, 0xfffffffeu};
    char what[96];
    for (size_t i = 0; i < sizeof(nsids) / sizeof(nsids[0]); i++) {
        uint32_t n = nsids[i];
        tu_fill_pat(mem(BUF_A), 4096, 8);
        snprintf(what, sizeof(what), "a Write for nsid %#x", n);
        expect(io(n, NVME_CMD_WRITE, 0, 8, BUF_A), NVME_SC_INVALID_NS, what);
        snprintf(what, sizeof(what), "a Read for nsid %#x", n);
        expect(io(n, NVME_CMD_READ, 0, 8, BUF_B), NVME_SC_INVALID_NS, what);
        snprintf(what, sizeof(what), "a Compare for nsid %#x", n);
        expect(io(n, NVME_CMD_COMPARE, 0, 8, BUF_A), NVME_SC_INVALID_NS, what);
        snprintf(what, sizeof(what), "Write Zeroes for nsid %#x", n);
        expect(write_zeroes(n, 0, 8), NVME_SC_INVALID_NS, what);
        snprintf(what, sizeof(what), "a deallocate for nsid %#x", n);
        expect(deallocate(n, 0, 8), NVME_SC_INVALID_NS, what);
        snprintf(what, sizeof(what), "a Flush for nsid %#x", n);
        expect(flush(n), NVME_SC_INVALID_NS, what);
    }
    expect(io(NSID_ALL, NVME_CMD_READ, 0, 8, BUF_B), NVME_SC_INVALID_NS,
           "a Read for every namespace");
    expect(io(NSID_ALL, NVME_CMD_WRITE, 0, 8, BUF_A), NVME_SC_INVALID_NS,
           "a Write for every namespace");
    ok(flush(NSID_ALL), "a Flush of every namespace");
    read_zero(1, 0, 4096, "ns 1 after the refused Writes");
    read_zero(3, 0, 4096, "ns 3 after the refused Writes");
    write_pat(3, 0, 4096, 9, "ns 3 after the refused commands");
    read_pat(3, 0, 4096, 9, "ns 3 after the refused commands");
}
END_TEST

/* One namespace read-only refuses every write with Namespace Write
 * Protected while the other takes them; either way round. */
START_TEST(test_read_only_is_the_namespace_s)
{
    const struct {
        const char *id, *json;
        uint32_t ro, rw;
    } cases[] = {
        {"ro2",
         "{\"size\": 1048576, \"ns2_size\": 1048576, \"ns2_read_only\": true, \"queues\": 1}", 2,
         1},
        {"ro1", "{\"size\": 1048576, \"read_only\": true, \"ns2_size\": 1048576, \"queues\": 1}", 1,
         2},
    };
    char what[96];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t ro = cases[i].ro, rw = cases[i].rw;
        create(cases[i].id, cases[i].json);
        start_io(&src, cases[i].id);
        tu_fill_pat(mem(BUF_A), 65536, 10);
        snprintf(what, sizeof(what), "%s: a Write to ns %u", cases[i].id, ro);
        expect(io(ro, NVME_CMD_WRITE, 0, 128, BUF_A), NVME_SC_NS_WRITE_PROTECTED, what);
        snprintf(what, sizeof(what), "%s: Write Zeroes on ns %u", cases[i].id, ro);
        expect(write_zeroes(ro, 0, 8), NVME_SC_NS_WRITE_PROTECTED, what);
        snprintf(what, sizeof(what), "%s: a deallocate on ns %u", cases[i].id, ro);
        expect(deallocate(ro, 0, 8), NVME_SC_NS_WRITE_PROTECTED, what);
        snprintf(what, sizeof(what), "%s: ns %u after the refused writes", cases[i].id, ro);
        read_zero(ro, 0, 65536, what);
        snprintf(what, sizeof(what), "%s: ns %u beside the read-only one", cases[i].id, rw);
        write_pat(rw, 0, 65536, 11, what);
        read_pat(rw, 0, 65536, 11, what);
        ok(write_zeroes(rw, 0, 8), what);
        stop_io();
    }
}
END_TEST

/* ---- files ------------------------------------------------------------------ */

/* How many io_uring instances muserd holds. */
static int io_urings(void)
{
    int writable;
    return tu_fds_on(src.daemon, IO_URING_FD, &writable);
}

/* The "aio" engine runs namespace 2's file although namespace 1 is in RAM:
 * "threads" makes no io_uring, "io_uring" one at least. */
static void check_engine(int aio)
{
    int n = io_urings();
    if (!strcmp(aio_modes[aio], "threads"))
        ck_assert_msg(n == 0, "\"aio\": \"threads\", and muserd holds %d io_uring instances", n);
    else
        ck_assert_msg(n > 0, "\"aio\": \"io_uring\", and muserd holds no io_uring instance");
}

/* RAM, a file and 4 KiB blocks in one controller: each namespace's size
 * and format, the file's data read through ns 2 and written there at the
 * right offset, the others kept out of it. */
START_TEST(test_mixed_kinds)
{
    char f[PATH_MAX];
    tu_path_in(f, dir, "ns2.img");
    tu_make_file(f, 4 * MIB);
    tu_write_file_pat(f, 0, 65536, 20);
    _cleanup_free_ char *json =
        config("{\"size\": 2097152, \"ns2_backing\": \"%s\", \"ns3_size\": 1048576, "
               "\"ns3_block_size\": 4096, \"aio\": \"%s\", \"queues\": 1}",
               f, aio_modes[_i]);
    device(json);
    block_bytes[3] = 4096;
    check_engine(_i);

    ck_assert_uint_eq(nn(), 3);
    const uint8_t *id = identify(NVME_ID_CNS_NS, 1);
    ck_assert_uint_eq(le64_at(id, 0), 2 * MIB / 512);
    ck_assert_uint_eq(id[130], 9);
    id = identify(NVME_ID_CNS_NS, 2);
    ck_assert_uint_eq(le64_at(id, 0), 4 * MIB / 512);
    ck_assert_uint_eq(le64_at(id, 8), 4 * MIB / 512);
    ck_assert_uint_eq(id[130], 9);
    id = identify(NVME_ID_CNS_NS, 3);
    ck_assert_uint_eq(le64_at(id, 0), MIB / 4096);
    ck_assert_uint_eq(id[130], 12);

    read_pat(2, 0, 65536, 20, "the file's first 64 KiB through ns 2");
    read_zero(1, 0, 65536, "ns 1's first 64 KiB");
    read_zero(3, 0, 65536, "ns 3's first 64 KiB");
    write_pat(2, 1000, 65536, 21, "64 KiB to ns 2 at block 1000");
    tu_check_file_pat(f, 1000 * 512, 65536, 21, 0, "ns 2's block 1000 in the file");
    tu_check_file_zero(f, 999 * 512, 512, "the block before the write, in the file");
    tu_check_file_zero(f, 1128 * 512, 512, "the block after the write, in the file");
    write_pat(1, 2000, 65536, 22, "64 KiB to ns 1 at block 2000");
    write_pat(3, 62, 8192, 23, "two 4 KiB blocks to ns 3");
    ok(flush(2), "Flush of ns 2");
    tu_check_file_zero(f, 2000 * 512, 65536, "the file where ns 1 was written");
    tu_check_file_zero(f, 62 * 4096, 8192, "the file where ns 3 was written");
    read_pat(3, 62, 8192, 23, "two 4 KiB blocks of ns 3");
    read_pat(1, 2000, 65536, 22, "ns 1 at block 2000");
    read_pat(2, 1000, 65536, 21, "ns 2 at block 1000");
    read_zero(2, 2000, 65536, "ns 2 where ns 1 was written");
    expect(io(2, NVME_CMD_READ, 4 * MIB / 512, 1, BUF_B), NVME_SC_LBA_RANGE,
           "a Read of ns 2 at its end");
}
END_TEST

/* Two namespaces on two files: each file holds its own namespace's data,
 * Write Zeroes and deallocate zero their own file alone, a Flush of every
 * namespace succeeds, and a destroy lets go of both files. */
START_TEST(test_two_files)
{
    char f1[PATH_MAX], f2[PATH_MAX];
    tu_make_file(tu_path_in(f1, dir, "ns1.img"), 2 * MIB);
    tu_make_file(tu_path_in(f2, dir, "ns2.img"), 2 * MIB);
    tu_write_file_pat(f1, 0, 65536, 30);
    tu_write_file_pat(f2, 0, 65536, 31);
    _cleanup_free_ char *json =
        config("{\"backing\": \"%s\", \"ns2_backing\": \"%s\", \"aio\": \"%s\", \"queues\": 1}", f1,
               f2, aio_modes[_i]);
    device(json);
    check_engine(_i);
    ck_assert_uint_eq(nn(), 2);
    read_pat(1, 0, 65536, 30, "ns 1's file through ns 1");
    read_pat(2, 0, 65536, 31, "ns 2's file through ns 2");
    write_pat(1, 1000, 65536, 32, "64 KiB to ns 1 at block 1000");
    write_pat(2, 1000, 65536, 33, "64 KiB to ns 2 at block 1000");
    ok(flush(NSID_ALL), "a Flush of every namespace");
    ok(flush(1), "a Flush of ns 1");
    ok(flush(2), "a Flush of ns 2");
    tu_check_file_pat(f1, 1000 * 512, 65536, 32, 0, "ns 1's write in its file");
    tu_check_file_pat(f2, 1000 * 512, 65536, 33, 0, "ns 2's write in its file");

    ok(write_zeroes(2, 1000, 16), "Write Zeroes of ns 2's blocks 1000-1015");
    ok(deallocate(1, 0, 16), "a deallocate of ns 1's blocks 0-15");
    tu_check_file_zero(f2, 1000 * 512, 8192, "ns 2's file after Write Zeroes");
    tu_check_file_pat(f2, 1016 * 512, 65536 - 8192, 33, 8192, "ns 2's file after the zeroes");
    tu_check_file_pat(f1, 1000 * 512, 65536, 32, 0, "ns 1's file after Write Zeroes on ns 2");
    tu_check_file_zero(f1, 0, 8192, "ns 1's file after the deallocate");
    tu_check_file_pat(f1, 8192, 65536 - 8192, 30, 8192, "ns 1's file after the deallocate");
    tu_check_file_pat(f2, 0, 65536, 31, 0, "ns 2's file after a deallocate on ns 1");
    read_zero(2, 1000, 8192, "ns 2 after Write Zeroes");
    read_pat(1, 1000, 65536, 32, "ns 1 after Write Zeroes on ns 2");

    stop_io();
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    int r = sd_bus_call_method(src.bus, "org.muserd1", "/org/muserd1", "org.muserd1.Manager",
                               "DestroyDevice", &e, NULL, "s", "n0");
    ck_assert_msg(r >= 0, "DestroyDevice: %s: %s", e.name, e.message);
    int writable, held = 0;
    for (int tries = 0; tries < 100; tries++) {
        held = tu_fds_on(src.daemon, f1, &writable) + tu_fds_on(src.daemon, f2, &writable);
        if (held == 0)
            break;
        usleep(50000);
    }
    ck_assert_msg(held == 0, "muserd still holds %d fds on the destroyed device's files", held);
}
END_TEST

#define NR_INFLIGHT 32
#define CHUNK       16384u

/* 32 commands (opcode, 16 KiB each) in flight at once on queue 1,
 * alternating between namespace 1 and 2: the pair i (commands 2i and
 * 2i + 1) at the same LBA of each, data at buf + i chunks. */
static void in_flight(uint8_t opcode, uint64_t buf)
{
    uint16_t cids[NR_INFLIGHT];
    for (int i = 0; i < NR_INFLIGHT; i++)
        cids[i] = tu_nvme_submit(&drv, 1,
                                 io_listed(1 + i % 2, opcode, 48 * (uint64_t)(i / 2), CHUNK / 512,
                                           buf + (uint64_t)i * CHUNK, LIST + 64ull * i));
    ck_assert_int_eq(nvme_drv_kick(&drv, 1), 0);
    tu_nvme_reap_all(&drv, side->daemon, 1, cids, NR_INFLIGHT);
}

/* Commands in flight together on two files (one engine for both) each
 * reach their own file. */
START_TEST(test_commands_in_flight_on_two_files)
{
    char f[2][PATH_MAX], what[64];
    tu_make_file(tu_path_in(f[0], dir, "ns1.img"), 2 * MIB);
    tu_make_file(tu_path_in(f[1], dir, "ns2.img"), 2 * MIB);
    _cleanup_free_ char *json =
        config("{\"backing\": \"%s\", \"ns2_backing\": \"%s\", \"aio\": \"%s\", \"queues\": 1}",
               f[0], f[1], aio_modes[_i]);
    device(json);
    for (int i = 0; i < NR_INFLIGHT; i++)
        tu_fill_pat(mem(BUF_A + (uint64_t)i * CHUNK), CHUNK, (uint8_t)(50 + i));
    in_flight(NVME_CMD_WRITE, BUF_A);
    for (int i = 0; i < NR_INFLIGHT; i++) {
        snprintf(what, sizeof(what), "write %d (ns %d) in its file", i, 1 + i % 2);
        tu_check_file_pat(f[i % 2], 48 * 512 * (off_t)(i / 2), CHUNK, (uint8_t)(50 + i), 0, what);
    }
    memset(mem(BUF_B), 0, NR_INFLIGHT * CHUNK);
    in_flight(NVME_CMD_READ, BUF_B);
    for (int i = 0; i < NR_INFLIGHT; i++) {
        snprintf(what, sizeof(what), "read %d (ns %d)", i, 1 + i % 2);
        tu_check_pat(mem(BUF_B + (uint64_t)i * CHUNK), CHUNK, (uint8_t)(50 + i), 0, what);
    }
}
END_TEST

/* A file namespace of 4 KiB blocks beside a RAM one of 512: its size is
 * the file's in whole 4 KiB blocks, and its blocks land at LBA * 4096. */
START_TEST(test_file_namespace_of_4k_blocks)
{
    char f[PATH_MAX];
    tu_make_file(tu_path_in(f, dir, "ns2-4k.img"), 4 * MIB + 5000);
    tu_write_file_pat(f, 3 * 4096, 4096, 36);
    _cleanup_free_ char *json = config("{\"size\": 1048576, \"ns2_backing\": \"%s\", "
                                       "\"ns2_block_size\": 4096, \"queues\": 1}",
                                       f);
    device(json);
    block_bytes[2] = 4096;
    const uint8_t *id = identify(NVME_ID_CNS_NS, 2);
    ck_assert_uint_eq(le64_at(id, 0), 1025);
    ck_assert_uint_eq(id[130], 12);
    ck_assert_uint_eq(identify(NVME_ID_CNS_NS, 1)[130], 9);
    read_pat(2, 3, 4096, 36, "block 3 of the file through ns 2");
    write_pat(2, 1023, 8192, 37, "ns 2's blocks 1023 and 1024");
    tu_check_file_pat(f, 1023 * 4096, 8192, 37, 0, "ns 2's blocks 1023 and 1024 in the file");
    tu_check_file_zero(f, 1022 * 4096, 4096, "block 1022 of the file");
    expect(io(2, NVME_CMD_WRITE, 1024, 2, BUF_A), NVME_SC_LBA_RANGE,
           "two 4 KiB blocks from ns 2's last one");
    tu_check_file_zero(f, 1025 * 4096, 904, "the bytes past ns 2's last block");
    write_pat(1, 1023, 4096, 38, "ns 1's blocks 1023-1030");
    read_pat(2, 1023, 8192, 37, "ns 2's blocks 1023 and 1024 after a write to ns 1");
}
END_TEST

/* A read-only file as namespace 2 beside a writable one: opened read-only,
 * writes refused and the file unchanged; namespace 1's file takes them. */
START_TEST(test_read_only_file_beside_a_writable_one)
{
    char f1[PATH_MAX], f2[PATH_MAX];
    tu_make_file(tu_path_in(f1, dir, "ns1.img"), 2 * MIB);
    tu_make_file(tu_path_in(f2, dir, "ro.img"), 2 * MIB);
    tu_write_file_pat(f2, 0, 2 * MIB, 34);
    ck_assert_int_eq(chmod(f2, 0444), 0);
    _cleanup_free_ char *json = config(
        "{\"backing\": \"%s\", \"ns2_backing\": \"%s\", \"ns2_read_only\": true, \"queues\": 1}",
        f1, f2);
    device(json);
    int writable;
    ck_assert_int_ge(tu_fds_on(src.daemon, f2, &writable), 1);
    ck_assert_msg(writable == 0, "muserd holds ns 2's read-only file open for writing");
    ck_assert_int_ge(tu_fds_on(src.daemon, f1, &writable), 1);
    ck_assert_msg(writable >= 1, "muserd holds ns 1's file open read-only");
    ck_assert_uint_eq(identify(NVME_ID_CNS_NS, 2)[99] & 1, 1);
    ck_assert_uint_eq(identify(NVME_ID_CNS_NS, 1)[99] & 1, 0);

    tu_fill_pat(mem(BUF_A), 65536, 35);
    expect(io(2, NVME_CMD_WRITE, 0, 128, BUF_A), NVME_SC_NS_WRITE_PROTECTED, "a Write to ns 2");
    expect(write_zeroes(2, 128, 64), NVME_SC_NS_WRITE_PROTECTED, "Write Zeroes on ns 2");
    expect(deallocate(2, 256, 64), NVME_SC_NS_WRITE_PROTECTED, "a deallocate on ns 2");
    read_pat(2, 0, 65536, 34, "ns 2's file through ns 2");
    write_pat(1, 0, 65536, 35, "64 KiB to ns 1");
    ok(flush(NSID_ALL), "a Flush of every namespace");
    tu_check_file_pat(f1, 0, 65536, 35, 0, "ns 1's write in its file");
    tu_check_file_pat(f2, 0, 2 * MIB, 34, 0, "ns 2's file after the refused writes");
}
END_TEST

/* ---- configs ---------------------------------------------------------------- */

/* Does s name the number n, not as a part of a longer number? */
static bool names_number(const char *s, char n)
{
    for (const char *p = s; (p = strchr(p, n)); p++)
        if ((p == s || p[-1] < '0' || p[-1] > '9') && (p[1] < '0' || p[1] > '9'))
            return true;
    return false;
}

/* The sentence of a refusal with every occurrence of dir taken out (its
 * name may hold digits). */
static void strip_dir(char *msg)
{
    size_t len = strlen(dir);
    for (char *p; (p = strstr(msg, dir));)
        memmove(p, p + len, strlen(p + len) + 1);
}

/* CreateDevice must refuse json with InvalidConfig naming `named` (or
 * `or_named`) and, when `a` and `b` are not 0, the namespace numbers a
 * and b, and leave no device behind; a problem is reported, and counted. */
static void expect_refused(const char *json, const char *named, const char *or_named, char a,
                           char b, int *nr_problems)
{
    _cleanup_free_ char *message = NULL;
    _cleanup_free_ char *problem =
        tu_side_refusal_problem(&src, "nvme", json, named, or_named, &message);
    if (!problem && a && message) {
        strip_dir(message);
        if (!names_number(message, a) || !names_number(message, b))
            (void)asprintf(&problem, "%s: \"%s\" does not name namespaces %c and %c", json, message,
                           a, b);
    }
    if (problem) {
        fprintf(stderr, "test_bad_config: %s\n", problem);
        (*nr_problems)++;
    }
}

START_TEST(test_bad_config)
{
    char f1[PATH_MAX], f2[PATH_MAX], f3[PATH_MAX], small[PATH_MAX], missing[PATH_MAX];
    char link_path[PATH_MAX], dot_path[PATH_MAX];
    int nr_problems = 0;
    tu_make_file(tu_path_in(f1, dir, "a.img"), MIB);
    tu_make_file(tu_path_in(f2, dir, "b.img"), MIB);
    tu_make_file(tu_path_in(f3, dir, "c.img"), MIB);
    tu_make_file(tu_path_in(small, dir, "small.img"), MIB - 4096);
    tu_path_in(missing, dir, "missing.img");
    ck_assert_int_eq(link(f1, tu_path_in(link_path, dir, "a-link.img")), 0);
    ck_assert_int_lt(snprintf(dot_path, sizeof(dot_path), "%s/./a.img", dir), PATH_MAX);

    const struct {
        const char *keys, *path, *path2, *named, *or_named;
        char a, b; /* the namespaces the sentence must name, or 0 */
    } bad[] = {
        {"\"ns2_size\": 1048576, \"ns2_backing\": \"%s\"", f2, NULL, "ns2_size", "ns2_backing", 0,
         0},
        {"\"ns2_block_size\": 4096", NULL, NULL, "ns2_block_size", NULL, 0, 0},
        {"\"ns3_read_only\": true", NULL, NULL, "ns3_read_only", NULL, 0, 0},
        {"\"ns2_size\": 1048576, \"ns3_block_size\": 512", NULL, NULL, "ns3_block_size", NULL, 0,
         0},
        {"\"ns2_size\": 1048576, \"ns2_block_size\": 1024", NULL, NULL, "ns2_block_size", NULL, 0,
         0},
        {"\"ns2_backing\": \"%s\", \"ns2_block_size\": 2048", f2, NULL, "ns2_block_size", NULL, 0,
         0},
        {"\"ns2_size\": 1048576, \"ns2_read_only\": \"yes\"", NULL, NULL, "ns2_read_only", NULL, 0,
         0},
        {"\"ns2_size\": 1000", NULL, NULL, "ns2_size", NULL, 0, 0},
        {"\"ns2_size\": 0", NULL, NULL, "ns2_size", NULL, 0, 0},
        {"\"ns2_size\": 524288", NULL, NULL, "ns2_size", NULL, 0, 0},
        {"\"ns3_size\": 1049088", NULL, NULL, "ns3_size", NULL, 0, 0},
        {"\"ns4_size\": 2199023255552", NULL, NULL, "ns4_size", NULL, 0, 0},
        {"\"ns5_size\": 1048576", NULL, NULL, "ns5_size", NULL, 0, 0},
        {"\"ns2_backing\": \"\"", NULL, NULL, "ns2_backing", NULL, 0, 0},
        {"\"ns2_backing\": \"%s\"", missing, NULL, missing, "ns2_backing", 0, 0},
        {"\"ns3_backing\": \"%s\"", small, NULL, small, "ns3_backing", 0, 0},
        {"\"ns2_backing\": \"%s\", \"aio\": \"posix\"", f2, NULL, "aio", NULL, 0, 0},
        /* Two namespaces on one file: by its path, by a hard link, by
         * another spelling of the path. */
        {"\"ns2_backing\": \"%s\", \"ns3_backing\": \"%s\"", f1, f1, "", NULL, '2', '3'},
        {"\"ns2_backing\": \"%s\", \"ns4_backing\": \"%s\"", f1, link_path, "", NULL, '2', '4'},
        {"\"ns3_backing\": \"%s\", \"ns2_backing\": \"%s\"", dot_path, f1, "", NULL, '2', '3'},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        _cleanup_free_ char *fmt = config("{\"size\": 1048576, %s, \"queues\": 1}", bad[i].keys);
        _cleanup_free_ char *json = config(fmt, bad[i].path, bad[i].path2);
        expect_refused(json, bad[i].named, bad[i].or_named, bad[i].a, bad[i].b, &nr_problems);
    }
    /* Namespace 1 and another on one file. */
    _cleanup_free_ char *same =
        config("{\"backing\": \"%s\", \"ns2_backing\": \"%s\", \"queues\": 1}", f1, f1);
    expect_refused(same, "", NULL, '1', '2', &nr_problems);

    /* Refused at namespace 3 or 2, with namespace 1 (and 2) open already:
     * nothing of the device is left, its files not held. */
    const char *const half[] = {
        "{\"backing\": \"%s\", \"ns2_backing\": \"%s\", \"ns3_backing\": \"%s\", \"queues\": 1}",
        "{\"backing\": \"%s\", \"ns2_backing\": \"%s\", \"ns3_size\": 1000, \"queues\": 1}",
    };
    for (size_t i = 0; i < 2; i++) {
        _cleanup_free_ char *json = config(half[i], f1, f2, missing);
        expect_refused(json, i == 0 ? missing : "ns3_size", i == 0 ? "ns3_backing" : NULL, 0, 0,
                       &nr_problems);
    }
    ck_assert_msg(nr_problems == 0, "%d bad configs were not refused as they should be (above)",
                  nr_problems);
    int writable;
    ck_assert_msg(tu_fds_on(src.daemon, f1, &writable) == 0 &&
                      tu_fds_on(src.daemon, f2, &writable) == 0,
                  "muserd holds a file of a refused config open");

    /* The same keys right are taken. */
    _cleanup_free_ char *good =
        config("{\"backing\": \"%s\", \"ns2_backing\": \"%s\", \"ns3_size\": 1048576, "
               "\"ns3_block_size\": 4096, \"ns3_read_only\": true, \"ns4_backing\": \"%s\", "
               "\"ns4_read_only\": false, \"queues\": 1}",
               f1, f2, f3);
    create("good", good);
    create("gap", "{\"size\": 1048576, \"ns4_size\": 1048576, \"ns4_block_size\": 4096}");
    ck_assert_int_eq(tu_side_device_count(&src, NULL), 2);
}
END_TEST

/* ---- migration ------------------------------------------------------------ */

#define MIG_SRC_JSON                                                                               \
    "{\"size\": 2097152, \"ns2_size\": 1048576, \"ns3_backing\": \"%s\", \"queues\": 1%s}"

/* Device n0 on src of two RAM namespaces and one on the file f (the
 * pattern 40 in its first 64 KiB), the driver on it; on dst the devices
 * `incoming` ("id", "json template", ... NULL: the template's first "%s"
 * stands for f, a second for the "incoming" key). */
static void migration_pair(char *f, const char *const *incoming)
{
    tu_path_in(f, dir, "ns3.img");
    tu_make_file(f, 2 * MIB);
    tu_write_file_pat(f, 0, 65536, 40);
    _cleanup_free_ char *json = config(MIG_SRC_JSON, f, "");
    device(json);
    const char *devices[3 * 8 + 1] = {NULL};
    char *jsons[8] = {NULL};
    size_t n = 0;
    for (; incoming[2 * n]; n++) {
        ck_assert_uint_lt(n, 8);
        jsons[n] = config(incoming[2 * n + 1], f, ", \"incoming\": true");
        devices[3 * n] = "nvme";
        devices[3 * n + 1] = incoming[2 * n];
        devices[3 * n + 2] = jsons[n];
    }
    tu_side_start(&dst, (const char *const[]){"nvme", NULL}, devices);
    for (size_t i = 0; i < n; i++)
        free(jsons[i]);
}

/* What the migration tests write on the source: each namespace at block
 * 100 a pattern of its own, ns 2's last blocks, ns 1 past ns 2's end. */
static void write_each_namespace(void)
{
    write_pat(1, 100, 65536, 41, "ns 1 at block 100");
    write_pat(2, 100, 65536, 42, "ns 2 at block 100");
    write_pat(3, 100, 65536, 43, "ns 3 at block 100");
    write_pat(2, 2040, 4096, 44, "ns 2's last blocks");
    write_pat(1, 3000, 65536, 45, "ns 1 past ns 2's end");
}

static void read_each_namespace(const char *f)
{
    read_pat(1, 100, 65536, 41, "ns 1 at block 100 after the migration");
    read_pat(2, 100, 65536, 42, "ns 2 at block 100 after the migration");
    read_pat(3, 100, 65536, 43, "ns 3 at block 100 after the migration");
    read_pat(2, 2040, 4096, 44, "ns 2's last blocks after the migration");
    read_pat(1, 3000, 65536, 45, "ns 1 past ns 2's end after the migration");
    read_pat(3, 0, 100 * 512, 40, "ns 3's file before block 100, after the migration");
    read_zero(1, 1000, 65536, "ns 1 where nothing was written");
    read_zero(2, 1000, 65536, "ns 2 where nothing was written");
    tu_check_file_pat(f, 100 * 512, 65536, 43, 0, "ns 3's write in the file");
}

START_TEST(test_migration_keeps_each_namespace)
{
    char f[PATH_MAX];
    migration_pair(f, (const char *const[]){"n0", MIG_SRC_JSON, NULL});
    write_each_namespace();
    tu_side_migrate(&src, &dst, "n0");
    side = &dst;
    tu_nvme_reattach(&drv, &client, dst.daemon, "n0");
    ck_assert_uint_eq(nn(), 3);
    read_each_namespace(f);
    write_pat(2, 500, 65536, 46, "ns 2 on the destination");
    read_pat(2, 500, 65536, 46, "ns 2 on the destination");
    read_zero(1, 500, 65536, "ns 1 where ns 2 was written on the destination");
}
END_TEST

/* The version of the nvme state in a saved stream: the u32 after the head's
 * magic "NMES" (nvme-state.c), -1 when there is none. */
static int stream_version(int fd)
{
    static const uint8_t magic[4] = {'N', 'M', 'E', 'S'};
    off_t size = lseek(fd, 0, SEEK_END);
    ck_assert_int_gt(size, 0);
    _cleanup_free_ uint8_t *buf = malloc((size_t)size);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(pread(fd, buf, (size_t)size, 0), size);
    for (off_t i = 0; i + 8 <= size; i++)
        if (!memcmp(buf + i, magic, 4))
            return (int)le32_at(buf, (size_t)i + 4);
    return -1;
}

/* A device with namespace 1 only saves the state version of a muserd from
 * before several namespaces (2), so that it can move back to one; a device
 * with more saves version 3. */
START_TEST(test_stream_version_follows_the_namespaces)
{
    static const struct {
        const char *id, *json;
        int version;
    } cases[] = {
        {"one", "{\"size\": 2097152, \"queues\": 1}", 2},
        {"two", "{\"size\": 2097152, \"ns2_size\": 1048576, \"queues\": 1}", 3},
        {"gap", "{\"size\": 2097152, \"ns4_size\": 1048576, \"queues\": 1}", 3},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        create(cases[i].id, cases[i].json);
        int fd = tu_side_save(&src, cases[i].id);
        int version = stream_version(fd);
        close(fd);
        ck_assert_msg(version == cases[i].version,
                      "%s: the stream's nvme state is version %d, "
                      "expected %d",
                      cases[i].json, version, cases[i].version);
    }
}
END_TEST

/* A destination's config template: keys ("%s" for the file) and "incoming". */
#define INCOMING(keys) "{" keys ", \"queues\": 1, \"incoming\": true}"

/* Destinations with another set of namespaces than the source's (or with
 * one of another size, format or kind) refuse its stream; one with the
 * source's config takes it. */
START_TEST(test_migration_refuses_another_namespace_set)
{
    static const char *const refusing[] = {
        "no-ns2",
        INCOMING("\"size\": 2097152, \"ns3_backing\": \"%s\""),
        "ns2-2m",
        INCOMING("\"size\": 2097152, \"ns2_size\": 2097152, \"ns3_backing\": \"%s\""),
        "ns2-4k",
        INCOMING("\"size\": 2097152, \"ns2_size\": 1048576, \"ns2_block_size\": 4096, "
                 "\"ns3_backing\": \"%s\""),
        "ns2-as-4",
        INCOMING("\"size\": 2097152, \"ns4_size\": 1048576, \"ns3_backing\": \"%s\""),
        "ns4-too",
        INCOMING("\"size\": 2097152, \"ns2_size\": 1048576, \"ns3_backing\": \"%s\", "
                 "\"ns4_size\": 1048576"),
        "ns3-ram",
        INCOMING("\"size\": 2097152, \"ns2_size\": 1048576, \"ns3_size\": 2097152"),
        "no-ns3",
        INCOMING("\"size\": 2097152, \"ns2_size\": 1048576"),
    };
    const size_t nr = sizeof(refusing) / sizeof(refusing[0]) / 2;
    const char *incoming[2 * 8 + 1] = {"n0", MIG_SRC_JSON};
    for (size_t i = 0; i < 2 * nr; i++)
        incoming[2 + i] = refusing[i];
    char f[PATH_MAX];
    migration_pair(f, incoming);
    write_each_namespace();

    int fd = tu_side_save(&src, "n0");
    int nr_taken = 0;
    for (size_t i = 0; i < nr; i++) {
        const char *id = refusing[2 * i];
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
        int r = tu_side_call_device(&dst, id, "Incoming", fd, &e);
        if (r >= 0) {
            fprintf(stderr, "test_migration_refuses_another_namespace_set: %s took the stream\n",
                    id);
            nr_taken++;
        } else {
            ck_assert_msg(e.message && strlen(e.message) > 20,
                          "%s: the refusal says too little: %s: \"%s\"", id, e.name, e.message);
        }
    }
    ck_assert_msg(nr_taken == 0, "%d destinations of other namespaces took the stream (above)",
                  nr_taken);

    /* The stream itself was good: the destination like the source takes it. */
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    int r = tu_side_call_device(&dst, "n0", "Incoming", fd, &e);
    if (r < 0)
        test_daemon_dump_log(dst.daemon, 4096);
    ck_assert_msg(r >= 0, "Incoming into the source's config: %s: %s", e.name, e.message);
    close(fd);
    side = &dst;
    tu_nvme_reattach(&drv, &client, dst.daemon, "n0");
    read_each_namespace(f);
}
END_TEST

/* A test case of s with the suite's fixture. */
static TCase *test_case(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return tc;
}

int main(void)
{
    Suite *s = suite_create("nvme-namespaces");
    TCase *ram = test_case(s, "ram");
    tcase_add_loop_test(ram, test_identify_layouts, 0, sizeof(layouts) / sizeof(layouts[0]));
    tcase_add_test(ram, test_data_stays_in_its_namespace);
    tcase_add_test(ram, test_lba_range_is_the_namespace_s);
    tcase_add_test(ram, test_missing_namespaces_refuse_commands);
    tcase_add_test(ram, test_read_only_is_the_namespace_s);
    TCase *files = test_case(s, "files"); /* each test once per engine */
    const int engines = (int)(sizeof(aio_modes) / sizeof(aio_modes[0]));
    tcase_add_loop_test(files, test_mixed_kinds, 0, engines);
    tcase_add_loop_test(files, test_two_files, 0, engines);
    tcase_add_loop_test(files, test_commands_in_flight_on_two_files, 0, engines);
    tcase_add_test(files, test_file_namespace_of_4k_blocks);
    tcase_add_test(files, test_read_only_file_beside_a_writable_one);
    TCase *device = test_case(s, "device");
    tcase_add_test(device, test_bad_config);
    tcase_add_test(device, test_migration_keeps_each_namespace);
    tcase_add_test(device, test_stream_version_follows_the_namespaces);
    tcase_add_test(device, test_migration_refuses_another_namespace_set);

    strcpy(base_dir, "/tmp/muserd-namespaces-XXXXXX");
    if (!mkdtemp(base_dir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    int r = tu_run_suite(s);
    tu_remove_tree(base_dir);
    return r;
}
