/* SPDX-License-Identifier: MIT */
/*
 * File-backed nvme namespaces ("backing") end to end: the real muserd, the
 * real plugin and the in-tree driver (helpers/nvme-driver.h) on files this
 * suite makes in a temporary directory, and one on tmpfs. Data put in the
 * file before creation reads back, data written through NVMe is in the
 * file, 4 KiB blocks, a read-only file, Flush, Write Zeroes and deallocate
 * punching holes, 32 commands in flight over two queues, a reset, a Delete
 * SQ, a destroy and a disconnect with commands in flight, the configs
 * refused (a FIFO among them), and migration to a second muserd that shares
 * the file, with commands in flight and with a doorbell not yet seen. The
 * I/O tests run once per "aio" engine.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers/nvme-check.h"
#include "helpers/nvme-driver.h"
#include "helpers/side.h"
#include "helpers/testutil.h"

#define NAME         "org.muserd1"
#define MANAGER_PATH "/org/muserd1"
#define MANAGER      "org.muserd1.Manager"

#define NS_BYTES  (8u << 20)
#define NR_QUEUES 2
/* Guest memory: PRP lists (a page per purpose), then two data areas of 512 KiB. */
#define LISTS 0x1f0000ull
#define BUF_A 0x200000ull
#define BUF_B 0x400000ull
/* The in-flight tests' commands: 16 KiB each. */
#define CHUNK_BLOCKS 32u
#define CHUNK        (CHUNK_BLOCKS * 512u)

/* The loop tests' index: which engine the namespace runs on. */
static const char *const aio_modes[] = {"threads", "io_uring"};

static struct tu_side src, dst;
static struct tu_side *side = &src; /* the one the driver talks to */
static struct vfu_client *client;
static struct nvme_drv drv;
static uint32_t lba_bytes = 512;
/* Each test's directories live in these, which main() removes: a test that
 * fails ends its process without teardown. */
static char base_dir[2][PATH_MAX]; /* in /tmp, on /dev/shm (tmpfs) */
static char dir[PATH_MAX];         /* the backing files, in base_dir[0] */
static char shm_dir[PATH_MAX];     /* in base_dir[1], when a test makes it */

static const struct nvme_sqe flush = {.opcode = NVME_CMD_FLUSH, .nsid = 1};

/* ---- files ---------------------------------------------------------------- */

static void make_dir(char *out, const char *base)
{
    ck_assert_int_lt(snprintf(out, PATH_MAX, "%s/test-XXXXXX", base), PATH_MAX);
    ck_assert_msg(mkdtemp(out), "mkdtemp in %s: %s", base, strerror(errno));
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)remove(path);
    return 0;
}

static void remove_tree(const char *path)
{
    (void)nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_dir(char *path)
{
    if (*path)
        remove_tree(path);
    *path = '\0';
}

static const char *path_in(char *out, const char *d, const char *name)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", d, name);
    ck_assert_int_lt(n, PATH_MAX);
    return out;
}

/* A file of size bytes, all a hole. */
static void make_file(const char *path, off_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_msg(fd >= 0, "creating %s: %s", path, strerror(errno));
    ck_assert_int_eq(ftruncate(fd, size), 0);
    close(fd);
}

/* The pattern `seed` at bytes [off, off+len) of the file. */
static void write_file_pat(const char *path, off_t off, size_t len, uint8_t seed)
{
    _cleanup_free_ uint8_t *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    tu_fill_pat(buf, len, seed);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ck_assert_msg(fd >= 0, "opening %s: %s", path, strerror(errno));
    ck_assert_int_eq(pwrite(fd, buf, len, off), (ssize_t)len);
    close(fd);
}

/* Bytes [off, off+len) of the file, malloc()ed. */
static uint8_t *read_file(const char *path, off_t off, size_t len)
{
    uint8_t *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_msg(fd >= 0, "opening %s: %s", path, strerror(errno));
    ssize_t n = pread(fd, buf, len, off);
    ck_assert_msg(n == (ssize_t)len, "reading %zu bytes at %lld of %s: %zd", len, (long long)off,
                  path, n);
    close(fd);
    return buf;
}

/* The file's bytes [off, off+len) hold the pattern from byte `first` on. */
static void check_file_pat(const char *path, off_t off, size_t len, uint8_t seed, size_t first,
                           const char *what)
{
    _cleanup_free_ uint8_t *buf = read_file(path, off, len);
    tu_check_pat(buf, len, seed, first, what);
}

static void check_file_zero(const char *path, off_t off, size_t len, const char *what)
{
    _cleanup_free_ uint8_t *buf = read_file(path, off, len);
    tu_check_zero(buf, len, what);
}

/* [off, ...) of the file starts with a hole (the blocks were deallocated). */
static void check_hole(const char *path, off_t off, const char *what)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    off_t hole = lseek(fd, off, SEEK_HOLE);
    close(fd);
    ck_assert_msg(hole == off, "%s: no hole at byte %lld of the file (the next is at %lld)", what,
                  (long long)off, (long long)hole);
}

/* The open flags in an fdinfo file, O_RDWR when unreadable. */
static unsigned fd_flags(int fdinfo_dir, const char *fd)
{
    char line[128];
    unsigned flags = O_RDWR;
    int info = openat(fdinfo_dir, fd, O_RDONLY | O_CLOEXEC);
    FILE *f = info >= 0 ? fdopen(info, "re") : NULL;
    while (f && fgets(line, sizeof(line), f) && sscanf(line, "flags: %o", &flags) != 1)
        ;
    if (f)
        fclose(f);
    else if (info >= 0)
        close(info);
    return flags;
}

/* How many fds the daemon holds on path; *writable: how many of them may write. */
static int fds_on(const struct test_daemon *d, const char *path, int *writable)
{
    char proc[64];
    int n = 0;
    snprintf(proc, sizeof(proc), "/proc/%d/fdinfo", (int)test_daemon_pid(d));
    int fdinfo_dir = open(proc, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    snprintf(proc, sizeof(proc), "/proc/%d/fd", (int)test_daemon_pid(d));
    DIR *fds = opendir(proc);
    ck_assert_msg(fds && fdinfo_dir >= 0, "%s: %s", proc, strerror(errno));
    *writable = 0;
    for (struct dirent *e; (e = readdir(fds));) {
        char target[PATH_MAX];
        ssize_t len = readlinkat(dirfd(fds), e->d_name, target, sizeof(target) - 1);
        if (len < 0)
            continue;
        target[len] = '\0';
        if (strcmp(target, path) != 0)
            continue;
        n++;
        if ((fd_flags(fdinfo_dir, e->d_name) & O_ACCMODE) != O_RDONLY)
            (*writable)++;
    }
    closedir(fds);
    close(fdinfo_dir);
    return n;
}

/* ---- devices -------------------------------------------------------------- */

/* {"backing": path, "queues": 2, "aio": the engine (none when aio < 0) EXTRA}. */
static char *backed_config(const char *path, int aio, const char *extra)
{
    char aio_key[48] = "";
    char *json = NULL;
    if (aio >= 0)
        snprintf(aio_key, sizeof(aio_key), ", \"aio\": \"%s\"", aio_modes[aio]);
    ck_assert_int_ge(asprintf(&json, "{\"backing\": \"%s\", \"queues\": %d%s%s}", path, NR_QUEUES,
                              aio_key, extra),
                     0);
    return json;
}

/* CreateDevice on s; r and the error as D-Bus gave them. A daemon stuck on
 * a path (an open of a FIFO for reading waits for a writer) fails it in 5 s. */
static int create_device(struct tu_side *s, const char *id, const char *json, sd_bus_error *e)
{
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
    int r = sd_bus_message_new_method_call(s->bus, &m, NAME, MANAGER_PATH, MANAGER, "CreateDevice");
    if (r >= 0)
        r = sd_bus_message_append(m, "sss", "nvme", id, json);
    if (r >= 0)
        r = sd_bus_call(s->bus, m, TU_TIMEOUT_MS * 1000ull, e, NULL);
    return r;
}

/* An nvme device on src with a namespace on path; it must be created. */
static void create_backed(const char *id, const char *path, int aio, const char *extra)
{
    _cleanup_free_ char *json = backed_config(path, aio, extra);
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    int r = create_device(&src, id, json, &e);
    if (r < 0)
        test_daemon_dump_log(src.daemon, 4096);
    ck_assert_msg(r >= 0, "CreateDevice %s: %s: %s", json, e.name, e.message);
}

/* How many devices ListDevices shows on s (only those named id, when not NULL). */
static int device_count(struct tu_side *s, const char *only)
{
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    const char *id, *type, *state, *path;
    int n = 0;
    int r = sd_bus_call_method(s->bus, NAME, MANAGER_PATH, MANAGER, "ListDevices", &e, &reply, "");
    ck_assert_msg(r >= 0, "ListDevices: %s", e.message);
    ck_assert_int_ge(sd_bus_message_enter_container(reply, 'a', "(ssso)"), 0);
    while (sd_bus_message_read(reply, "(ssso)", &id, &type, &state, &path) > 0)
        n += !only || strcmp(id, only) == 0;
    return n;
}

/* Connect to device id of s, enable the controller, make I/O queues 1 and 2. */
static void start_io(struct tu_side *s, const char *id)
{
    side = s;
    client = tu_open(s->daemon, id);
    int r = nvme_drv_attach(&drv, client, true, NR_QUEUES + 1);
    ck_assert_msg(r == 0, "attaching the driver: %s", strerror(-r));
    r = nvme_drv_enable(&drv);
    if (r < 0)
        test_daemon_dump_log(s->daemon, 4096);
    ck_assert_msg(r == 0, "enabling the controller: %s", strerror(-r));
    tu_nvme_set_queues(&drv, s->daemon, NR_QUEUES);
    tu_nvme_create_queue(&drv, 1);
    tu_nvme_create_queue(&drv, 2);
}

static void stop_io(void)
{
    nvme_drv_free(&drv);
    if (client)
        vfu_client_free(client);
    client = NULL;
}

/* Device n0 on DIR/ns.img, a file of NS_BYTES whose first `pattern` bytes
 * hold the pattern `seed`, with engine aio; the driver started on it. */
static void backed_ns(char *f, int aio, size_t pattern, uint8_t seed)
{
    path_in(f, dir, "ns.img");
    make_file(f, NS_BYTES);
    if (pattern)
        write_file_pat(f, 0, pattern, seed);
    create_backed("n0", f, aio, "");
    start_io(&src, "n0");
}

static void setup(void)
{
    make_dir(dir, base_dir[0]);
    tu_side_start(&src, (const char *const[]){"nvme", NULL}, (const char *const[]){NULL});
}

static void teardown(void)
{
    if (drv.mem)
        stop_io();
    tu_side_stop(&src);
    tu_side_stop(&dst);
    remove_dir(dir);
    remove_dir(shm_dir);
}

/* ---- commands ------------------------------------------------------------- */

static void *mem(uint64_t off)
{
    return nvme_drv_ptr(&drv, off);
}

static void ok(uint16_t qid, struct nvme_sqe c)
{
    tu_nvme_cmd_ok(&drv, side->daemon, qid, &c, NULL);
}

static void expect(uint16_t qid, struct nvme_sqe c, uint16_t want, const char *what)
{
    tu_nvme_expect_status(&drv, side->daemon, qid, &c, want, what);
}

/* A Read/Write/Compare of nlb blocks at slba, its data at guest offset buf
 * (page aligned) on, a PRP list (when it takes one) at guest offset list. */
static struct nvme_sqe io(uint8_t opcode, uint64_t slba, uint32_t nlb, uint64_t buf, uint64_t list)
{
    uint32_t pages = (nlb * lba_bytes + 4095) / 4096;
    uint64_t prp2 = 0;
    if (pages == 2)
        prp2 = nvme_drv_iova(buf + 4096);
    else if (pages > 2)
        prp2 = nvme_drv_prp_list(&drv, list, buf, pages - 1);
    return nvme_drv_rw(opcode, slba, nlb, nvme_drv_iova(buf), prp2);
}

/* Dataset Management, deallocate, of n {slba, nlb} ranges (put at LISTS + 0x3000). */
static struct nvme_sqe deallocate(const uint64_t (*ranges)[2], uint32_t n)
{
    uint32_t *r = mem(LISTS + 0x3000);
    for (uint32_t i = 0; i < n; i++) {
        r[4 * i] = 0;
        r[4 * i + 1] = (uint32_t)ranges[i][1];
        r[4 * i + 2] = (uint32_t)ranges[i][0];
        r[4 * i + 3] = (uint32_t)(ranges[i][0] >> 32);
    }
    return (struct nvme_sqe){.opcode = NVME_CMD_DSM,
                             .nsid = 1,
                             .prp1 = nvme_drv_iova(LISTS + 0x3000),
                             .cdw10 = n - 1,
                             .cdw11 = 1u << 2};
}

/* Queue c on qid without ringing: its cid. */
static uint16_t submit(uint16_t qid, struct nvme_sqe c)
{
    uint16_t cid;
    ck_assert_int_eq(nvme_drv_queue_cmd(&drv, qid, &c, &cid), 0);
    return cid;
}

/* n completions on qid, each successful, each for one of the n cids. */
static void reap_all(uint16_t qid, const uint16_t *cids, int n)
{
    bool seen[64] = {false};
    ck_assert_int_le(n, 64);
    for (int k = 0; k < n; k++) {
        struct nvme_cqe cqe;
        int r = nvme_drv_reap(&drv, qid, &cqe, TU_TIMEOUT_MS);
        if (r < 0)
            test_daemon_dump_log(side->daemon, 4096);
        ck_assert_msg(r == 0, "queue %u: completion %d of %d: %s", qid, k + 1, n, strerror(-r));
        int i = 0;
        while (i < n && cids[i] != cqe.cid)
            i++;
        ck_assert_msg(i < n && !seen[i], "queue %u: a completion for cid %u, not one outstanding",
                      qid, cqe.cid);
        seen[i] = true;
        ck_assert_msg(nvme_drv_status(&cqe) == 0, "queue %u: command %d: status %#x", qid, i,
                      nvme_drv_status(&cqe));
    }
}

/* n commands on qid rung at once and never reaped: 16 KiB Writes from
 * BUF_A (queue 1) or Reads into BUF_B (queue 2) at block 8192 on, each
 * followed by a Flush (an fdatasync: slow enough that what comes next finds
 * commands in flight). */
static void flood(uint16_t qid, int n)
{
    const bool write = qid == 1;
    if (write)
        tu_fill_pat(mem(BUF_A), CHUNK, 99);
    for (int i = 0; i < n; i++)
        submit(qid, i % 2 ? flush
                          : io(write ? NVME_CMD_WRITE : NVME_CMD_READ,
                               8192 + CHUNK_BLOCKS * (uint64_t)i, CHUNK_BLOCKS,
                               write ? BUF_A : BUF_B, LISTS + 0x1000ull * qid + 64ull * i));
    ck_assert_int_eq(nvme_drv_kick(&drv, qid), 0);
}

/* Both queues full. */
static void flood_both(void)
{
    flood(1, NVME_DRV_QDEPTH - 1);
    flood(2, NVME_DRV_QDEPTH - 1);
}

/* No completion lands in CQ 1 or 2 for 250 ms, and no interrupt comes on
 * their vectors from 50 ms on (one raised at the end of the round that
 * posted an earlier completion may come just after): the dropped commands
 * stay dropped. */
static void assert_quiet(const char *after)
{
    static uint8_t before[NR_QUEUES][4096];
    for (uint16_t q = 1; q <= NR_QUEUES; q++)
        memcpy(before[q - 1], mem(0x2000ull * q + 0x1000), 4096);
    usleep(50000);
    for (uint16_t q = 1; q <= NR_QUEUES; q++)
        (void)tu_eventfd_read(drv.irq[q]);
    usleep(200000);
    for (uint16_t q = 1; q <= NR_QUEUES; q++) {
        ck_assert_msg(memcmp(before[q - 1], mem(0x2000ull * q + 0x1000), 4096) == 0,
                      "a completion landed in CQ %u after %s", q, after);
        ck_assert_msg(tu_eventfd_read(drv.irq[q]) == 0, "an interrupt on vector %u after %s", q,
                      after);
    }
}

/* 64 KiB of the pattern `seed` written at slba through queue q, from BUF_A. */
static void write_64k(uint16_t q, uint64_t slba, uint8_t seed)
{
    tu_fill_pat(mem(BUF_A), 65536, seed);
    ok(q, io(NVME_CMD_WRITE, slba, 65536 / lba_bytes, BUF_A, LISTS));
}

/* 64 KiB written at slba on queue q (seed) reads back on the other queue
 * and is in the file. */
static void round_trip(const char *path, uint16_t q, uint64_t slba, uint8_t seed, const char *what)
{
    write_64k(q, slba, seed);
    memset(mem(BUF_B), 0, 65536);
    ok(3 - q, io(NVME_CMD_READ, slba, 65536 / lba_bytes, BUF_B, LISTS + 0x1000));
    tu_check_pat(mem(BUF_B), 65536, seed, 0, what);
    check_file_pat(path, (off_t)(slba * lba_bytes), 65536, seed, 0, what);
}

/* ---- data ----------------------------------------------------------------- */

/* What the file held before the device existed reads back; the size is
 * the file's rounded down to whole blocks. */
START_TEST(test_file_data_reads_back)
{
    char f[PATH_MAX];
    path_in(f, dir, "ns.img");
    make_file(f, NS_BYTES + 1000);
    write_file_pat(f, 0, 65536, 1);
    write_file_pat(f, 1 << 20, 8192, 2);
    write_file_pat(f, NS_BYTES, 1000, 3); /* the last whole block and 488 bytes past it */
    create_backed("n0", f, _i, "");
    start_io(&src, "n0");

    const uint8_t *id = tu_nvme_identify(&drv, src.daemon, NVME_ID_CNS_NS, 1);
    uint64_t nsze;
    memcpy(&nsze, id, 8);
    ck_assert_uint_eq(nsze, NS_BYTES / 512 + 1);
    ck_assert_uint_eq(id[128 + 2], 9); /* LBADS: 512 */
    ck_assert_uint_eq(id[99] & 1, 0);  /* not write protected */

    memset(mem(BUF_B), 0, 65536);
    ok(1, io(NVME_CMD_READ, 0, 128, BUF_B, LISTS));
    tu_check_pat(mem(BUF_B), 65536, 1, 0, "the file's first 64 KiB");
    memset(mem(BUF_B), 0, 8192);
    ok(2, io(NVME_CMD_READ, (1 << 20) / 512, 16, BUF_B, LISTS));
    tu_check_pat(mem(BUF_B), 8192, 2, 0, "8 KiB at 1 MiB");
    memset(mem(BUF_B), 0, 512);
    ok(1, io(NVME_CMD_READ, NS_BYTES / 512, 1, BUF_B, LISTS));
    tu_check_pat(mem(BUF_B), 512, 3, 0, "the last whole block");
    expect(1, io(NVME_CMD_READ, NS_BYTES / 512, 2, BUF_B, LISTS), NVME_SC_LBA_RANGE,
           "a read into the file's partial last block");
    memset(mem(BUF_B), 0xff, 4096);
    ok(2, io(NVME_CMD_READ, 4096, 8, BUF_B, LISTS));
    tu_check_zero(mem(BUF_B), 4096, "blocks the file never had");
}
END_TEST

/* Writes land in the file at SLBA * 512, and nowhere else, whatever the
 * guest buffers' layout; reads and Compare see them; Flush succeeds. */
START_TEST(test_writes_reach_the_file)
{
    char f[PATH_MAX];
    backed_ns(f, _i, 0, 0);

    write_64k(1, 1000, 4);
    check_file_pat(f, 1000 * 512, 65536, 4, 0, "64 KiB written at block 1000, in the file");
    check_file_zero(f, 999 * 512, 512, "the block before the write");
    check_file_zero(f, 1128 * 512, 512, "the block after the write");
    /* PRP1 alone, at an offset inside its page, on the other queue. */
    tu_fill_pat(mem(BUF_A + 0x10200), 512, 5);
    ok(2, nvme_drv_rw(NVME_CMD_WRITE, 7, 1, nvme_drv_iova(BUF_A + 0x10200), 0));
    check_file_pat(f, 7 * 512, 512, 5, 0, "block 7 in the file");

    memset(mem(BUF_B), 0, 65536);
    ok(2, io(NVME_CMD_READ, 1000, 128, BUF_B, LISTS + 0x1000));
    tu_check_pat(mem(BUF_B), 65536, 4, 0, "64 KiB read back");
    ok(1, io(NVME_CMD_COMPARE, 1000, 128, BUF_A, LISTS));
    ((uint8_t *)mem(BUF_A))[40000] ^= 1;
    expect(1, io(NVME_CMD_COMPARE, 1000, 128, BUF_A, LISTS), NVME_SC_COMPARE_FAILED,
           "Compare with a changed byte");

    /* A write over the middle of the first changes those blocks only. */
    tu_fill_pat(mem(BUF_A), 4096, 6);
    ok(1, io(NVME_CMD_WRITE, 1064, 8, BUF_A, LISTS));
    ok(1, flush);
    check_file_pat(f, 1000 * 512, 64 * 512, 4, 0, "the blocks before the overwrite");
    check_file_pat(f, 1064 * 512, 4096, 6, 0, "the overwritten blocks");
    check_file_pat(f, 1072 * 512, 56 * 512, 4, 72 * 512, "the blocks after the overwrite");

    /* 128 KiB (MDTS) from 32 pages in reverse order: each page lands in its place. */
    uint64_t *list = mem(LISTS + 0x2000);
    for (uint32_t k = 0; k < 32; k++) {
        tu_fill_pat(mem(BUF_A + 4096ull * (31 - k)), 4096, (uint8_t)(50 + k));
        if (k > 0)
            list[k - 1] = nvme_drv_iova(BUF_A + 4096ull * (31 - k));
    }
    ok(2, nvme_drv_rw(NVME_CMD_WRITE, 5000, 256, nvme_drv_iova(BUF_A + 4096 * 31),
                      nvme_drv_iova(LISTS + 0x2000)));
    for (uint32_t k = 0; k < 32; k++)
        check_file_pat(f, 5000 * 512 + 4096 * k, 4096, (uint8_t)(50 + k), 0,
                       "a page of a scattered 128 KiB write");

    /* SGL data blocks at odd addresses (the file may want aligned buffers). */
    tu_fill_pat(mem(BUF_A + 3), 8192, 60);
    struct nvme_sqe c = nvme_drv_rw(NVME_CMD_WRITE, 6000, 16, 0, 0);
    nvme_drv_sgl_data(&c, nvme_drv_iova(BUF_A + 3), 8192);
    ok(1, c);
    check_file_pat(f, 6000 * 512, 8192, 60, 0, "an SGL write from an odd address");
    memset(mem(BUF_B), 0, 8200);
    c = nvme_drv_rw(NVME_CMD_READ, 6000, 16, 0, 0);
    nvme_drv_sgl_data(&c, nvme_drv_iova(BUF_B + 5), 8192);
    ok(2, c);
    tu_check_pat(mem(BUF_B + 5), 8192, 60, 0, "an SGL read to an odd address");
}
END_TEST

/* A loop device over a file in the test's directory (losetup prints its
 * path into out): false, and the reason, where none can be made (no root,
 * no loop driver). */
static bool loop_attach(const char *file, char *out, size_t len, char *why, size_t why_len)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "losetup --find --show %s 2>&1", file);
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(why, why_len, "popen: %s", strerror(errno));
        return false;
    }
    char line[PATH_MAX] = "";
    if (!fgets(line, sizeof(line), p))
        line[0] = '\0';
    int status = pclose(p);
    line[strcspn(line, "\n")] = '\0';
    if (status != 0 || strncmp(line, "/dev/loop", 9) != 0) {
        snprintf(why, why_len, "losetup: %s", line);
        return false;
    }
    snprintf(out, len, "%s", line);
    return true;
}

static void loop_detach(const char *dev)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof(cmd), "losetup -d %s", dev);
    if (system(cmd) != 0)
        fprintf(stderr, "test-nvme-backing: could not detach %s\n", dev);
}

/* A block device as the backing: its size is the device's, writes reach
 * the file under the loop device, the file's data reads back. */
START_TEST(test_block_device)
{
    char f[PATH_MAX], dev[PATH_MAX], why[PATH_MAX + 32];
    path_in(f, dir, "loop.img");
    make_file(f, NS_BYTES);
    write_file_pat(f, 4096, 8192, 7);
    if (!loop_attach(f, dev, sizeof(dev), why, sizeof(why))) {
        printf("test-nvme-backing: test_block_device: SKIP: no loop device here (%s)\n", why);
        return;
    }
    create_backed("n0", dev, _i, "");
    start_io(&src, "n0");
    const uint8_t *id = tu_nvme_identify(&drv, src.daemon, NVME_ID_CNS_NS, 1);
    uint64_t nsze;
    memcpy(&nsze, id, 8);
    ck_assert_uint_eq(nsze, NS_BYTES / 512);
    memset(mem(BUF_B), 0, 8192);
    ok(1, io(NVME_CMD_READ, 8, 16, BUF_B, LISTS));
    tu_check_pat(mem(BUF_B), 8192, 7, 0, "8 KiB the file held, through the loop device");
    write_64k(2, 2048, 8);
    ok(1, flush);
    /* The device is the caller's: detach it only once muserd let go. */
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    stop_io();
    ck_assert_int_ge(sd_bus_call_method(src.bus, NAME, MANAGER_PATH, MANAGER, "DestroyDevice", &e,
                                        NULL, "s", "n0"),
                     0);
    loop_detach(dev);
    check_file_pat(f, 2048 * 512, 65536, 8, 0, "64 KiB written through the loop device");
}
END_TEST

START_TEST(test_4k_blocks)
{
    char f[PATH_MAX];
    path_in(f, dir, "ns4k.img");
    make_file(f, (4 << 20) + 5000);
    write_file_pat(f, 3 * 4096, 4096, 7);
    create_backed("n0", f, _i, ", \"block_size\": 4096");
    start_io(&src, "n0");
    lba_bytes = 4096;

    const uint8_t *id = tu_nvme_identify(&drv, src.daemon, NVME_ID_CNS_NS, 1);
    uint64_t nsze;
    memcpy(&nsze, id, 8);
    ck_assert_uint_eq(id[128 + 2], 12); /* LBADS: 4096 */
    ck_assert_uint_eq(nsze, 1025);
    memset(mem(BUF_B), 0, 4096);
    ok(1, io(NVME_CMD_READ, 3, 1, BUF_B, LISTS));
    tu_check_pat(mem(BUF_B), 4096, 7, 0, "block 3 of the file");

    tu_fill_pat(mem(BUF_A), 8192, 8);
    ok(2, io(NVME_CMD_WRITE, 1023, 2, BUF_A, LISTS));
    check_file_pat(f, 1023 * 4096, 8192, 8, 0, "blocks 1023 and 1024 in the file");
    check_file_zero(f, 1022 * 4096, 4096, "block 1022");
    memset(mem(BUF_B), 0, 4096);
    ok(1, io(NVME_CMD_READ, 1024, 1, BUF_B, LISTS));
    tu_check_pat(mem(BUF_B), 4096, 8, 4096, "the last block read back");
    tu_fill_pat(mem(BUF_A), 8192, 9);
    expect(1, io(NVME_CMD_WRITE, 1024, 2, BUF_A, LISTS), NVME_SC_LBA_RANGE,
           "two 4 KiB blocks from the last one");
    check_file_pat(f, 1024 * 4096, 4096, 8, 4096, "the last block after a refused write");
    check_file_zero(f, 1025 * 4096, 904, "the bytes past the last block");
}
END_TEST

/* A 0444 file with "read_only": opened read-only, every write refused with
 * Namespace Write Protected, the file unchanged. */
START_TEST(test_read_only_file)
{
    char f[PATH_MAX];
    path_in(f, dir, "ro.img");
    make_file(f, 2 << 20);
    write_file_pat(f, 0, 2 << 20, 10);
    ck_assert_int_eq(chmod(f, 0444), 0);
    create_backed("n0", f, _i, ", \"read_only\": true");
    int writable;
    ck_assert_int_ge(fds_on(src.daemon, f, &writable), 1);
    ck_assert_msg(writable == 0, "muserd holds the read-only file open for writing");
    start_io(&src, "n0");

    const uint8_t *id = tu_nvme_identify(&drv, src.daemon, NVME_ID_CNS_NS, 1);
    ck_assert_uint_eq(id[99] & 1, 1);
    tu_fill_pat(mem(BUF_A), 65536, 11);
    expect(1, io(NVME_CMD_WRITE, 0, 128, BUF_A, LISTS), NVME_SC_NS_WRITE_PROTECTED, "a Write");
    expect(2, nvme_drv_rw(NVME_CMD_WRITE_ZEROES, 128, 64, 0, 0), NVME_SC_NS_WRITE_PROTECTED,
           "Write Zeroes");
    const uint64_t range[][2] = {{256, 64}};
    expect(1, deallocate(range, 1), NVME_SC_NS_WRITE_PROTECTED, "a deallocate");
    memset(mem(BUF_B), 0, 65536);
    ok(2, io(NVME_CMD_READ, 0, 128, BUF_B, LISTS));
    tu_check_pat(mem(BUF_B), 65536, 10, 0, "a read of the read-only file");
    check_file_pat(f, 0, 2 << 20, 10, 0, "the read-only file after the refused writes");
}
END_TEST

/* Blocks [slba, slba + nlb) through NVMe and in the file: those in
 * [z0, z1) zeros, the others the pattern `seed` the file was filled with. */
static void check_zeroed(const char *path, uint64_t slba, uint32_t nlb, uint64_t z0, uint64_t z1,
                         uint8_t seed)
{
    memset(mem(BUF_B), 0xff, nlb * 512);
    ok(1, io(NVME_CMD_READ, slba, nlb, BUF_B, LISTS));
    _cleanup_free_ uint8_t *file = read_file(path, (off_t)(slba * 512), nlb * 512);
    for (uint64_t lba = slba; lba < slba + nlb; lba++) {
        const uint8_t *via_nvme = (uint8_t *)mem(BUF_B) + (lba - slba) * 512;
        const uint8_t *in_file = file + (lba - slba) * 512;
        char what[2][80];
        snprintf(what[0], sizeof(what[0]), "block %llu read through NVMe", (unsigned long long)lba);
        snprintf(what[1], sizeof(what[1]), "block %llu in the file", (unsigned long long)lba);
        if (lba >= z0 && lba < z1) {
            tu_check_zero(via_nvme, 512, what[0]);
            tu_check_zero(in_file, 512, what[1]);
        } else {
            tu_check_pat(via_nvme, 512, seed, lba * 512, what[0]);
            tu_check_pat(in_file, 512, seed, lba * 512, what[1]);
        }
    }
}

/* Write Zeroes and deallocate: the blocks read as zeros through NVMe and
 * in the file, whole file blocks among them are holes, the neighbours keep
 * their data. */
static void zeroes_and_deallocate(const char *f, uint8_t seed)
{
    ok(1, nvme_drv_rw(NVME_CMD_WRITE_ZEROES, 101, 2, 0, 0));
    ok(2, nvme_drv_rw(NVME_CMD_WRITE_ZEROES, 512, 16, 0, 0));
    const uint64_t ranges[][2] = {{1024, 64}, {3001, 3}, {2048, 8}};
    ok(1, deallocate(ranges, 3));
    /* A range past the end fails the command before any range is deallocated. */
    const uint64_t past_end[][2] = {{4000, 8}, {NS_BYTES / 512 - 4, 8}};
    expect(2, deallocate(past_end, 2), NVME_SC_LBA_RANGE, "a deallocate with a range past the end");
    check_zeroed(f, 4000, 8, 0, 0, seed);
    check_zeroed(f, 100, 8, 101, 103, seed);
    check_zeroed(f, 504, 32, 512, 528, seed);
    check_zeroed(f, 1016, 80, 1024, 1088, seed);
    check_zeroed(f, 3000, 5, 3001, 3004, seed);
    check_zeroed(f, 2040, 24, 2048, 2056, seed);
    check_hole(f, 512 * 512, "Write Zeroes of blocks 512-527");
    check_hole(f, 1024 * 512, "deallocate of blocks 1024-1087");
    check_hole(f, 2048 * 512, "deallocate of blocks 2048-2055");
    ok(2, flush);
}

START_TEST(test_write_zeroes_and_deallocate)
{
    char f[PATH_MAX];
    backed_ns(f, _i, 2 << 20, 12);
    zeroes_and_deallocate(f, 12);
}
END_TEST

/* A file on tmpfs. Before Linux 6.6 tmpfs refused O_DIRECT, and the plugin
 * must fall back to the page cache; later kernels take it. */
START_TEST(test_tmpfs_file)
{
    char f[PATH_MAX];
    make_dir(shm_dir, base_dir[1]);
    path_in(f, shm_dir, "ns.img");
    make_file(f, NS_BYTES);
    write_file_pat(f, 0, 2 << 20, 13);
    create_backed("n0", f, _i, "");
    start_io(&src, "n0");
    memset(mem(BUF_B), 0, 65536);
    ok(1, io(NVME_CMD_READ, 128, 128, BUF_B, LISTS));
    tu_check_pat(mem(BUF_B), 65536, 13, 128 * 512, "64 KiB of the tmpfs file");
    round_trip(f, 1, 8192, 14, "64 KiB written to the tmpfs file");
    zeroes_and_deallocate(f, 13);
}
END_TEST

/* ---- commands in flight -------------------------------------------------- */

#define NR_INFLIGHT 32

static uint64_t chunk_lba(int i)
{
    return 4096 + (CHUNK_BLOCKS + 16) * (uint64_t)i; /* 8 KiB gaps between */
}

/* 32 commands (opcode, 16 KiB each, command i on chunk i from/to buf + i
 * chunks) alternating over queues 1 and 2, all rung before any is reaped;
 * every one must succeed. */
static void in_flight(uint8_t opcode, uint64_t buf, uint64_t lists)
{
    uint16_t cids[NR_QUEUES][NR_INFLIGHT / NR_QUEUES];
    for (int i = 0; i < NR_INFLIGHT; i++)
        cids[i % 2][i / 2] = submit(1 + i % 2, io(opcode, chunk_lba(i), CHUNK_BLOCKS,
                                                  buf + (uint64_t)i * CHUNK, lists + 64ull * i));
    ck_assert_int_eq(nvme_drv_kick(&drv, 1), 0);
    ck_assert_int_eq(nvme_drv_kick(&drv, 2), 0);
    reap_all(1, cids[0], NR_INFLIGHT / 2);
    reap_all(2, cids[1], NR_INFLIGHT / 2);
}

/* 32 Writes in flight over two queues, then 32 Reads: every block is
 * where it belongs, in the file and in the buffers. */
START_TEST(test_32_commands_in_flight)
{
    char f[PATH_MAX], what[64];
    backed_ns(f, _i, 0, 0);
    for (int i = 0; i < NR_INFLIGHT; i++)
        tu_fill_pat(mem(BUF_A + (uint64_t)i * CHUNK), CHUNK, (uint8_t)(40 + i));
    in_flight(NVME_CMD_WRITE, BUF_A, LISTS);
    for (int i = 0; i < NR_INFLIGHT; i++) {
        snprintf(what, sizeof(what), "write %d in the file", i);
        check_file_pat(f, (off_t)chunk_lba(i) * 512, CHUNK, (uint8_t)(40 + i), 0, what);
        check_file_zero(f, (off_t)(chunk_lba(i) + CHUNK_BLOCKS) * 512, 16 * 512, "a gap");
    }
    memset(mem(BUF_B), 0, NR_INFLIGHT * CHUNK);
    in_flight(NVME_CMD_READ, BUF_B, LISTS + 0x1000);
    for (int i = 0; i < NR_INFLIGHT; i++) {
        snprintf(what, sizeof(what), "read %d", i);
        tu_check_pat(mem(BUF_B + (uint64_t)i * CHUNK), CHUNK, (uint8_t)(40 + i), 0, what);
    }
}
END_TEST

/* CC.EN = 0 with both queues full of Writes and Flushes: not ready, no
 * completion or interrupt afterwards, and enabled again it works. */
START_TEST(test_disable_with_commands_in_flight)
{
    char f[PATH_MAX];
    backed_ns(f, _i, 0, 0);
    flood_both();
    struct nvme_cqe cqe; /* the controller has taken them */
    ck_assert_int_eq(nvme_drv_reap(&drv, 1, &cqe, TU_TIMEOUT_MS), 0);

    ck_assert_int_eq(nvme_drv_wr32(&drv, NVME_REG_CC, 0), 0);
    int r = nvme_drv_wait_csts(&drv, NVME_CSTS_RDY, 0, TU_TIMEOUT_MS);
    ck_assert_msg(r == 0, "CSTS.RDY stayed 1 after CC.EN = 0: %s", strerror(-r));
    assert_quiet("CC.EN = 0");

    ck_assert_int_eq(nvme_drv_enable(&drv), 0);
    tu_nvme_set_queues(&drv, src.daemon, NR_QUEUES);
    tu_nvme_create_queue(&drv, 1);
    tu_nvme_create_queue(&drv, 2);
    round_trip(f, 1, 100, 16, "64 KiB after the reset");
    round_trip(f, 2, 300, 17, "64 KiB on queue 2 after the reset");
}
END_TEST

/* Delete SQ 1 while its commands are in flight: the deletion completes,
 * nothing more comes on CQ 1, queue 2 goes on, and SQ 1 made again works. */
START_TEST(test_delete_sq_with_commands_in_flight)
{
    char f[PATH_MAX];
    backed_ns(f, _i, 0, 0);
    flood(1, NVME_DRV_QDEPTH - 1);
    struct nvme_cqe cqe;
    ck_assert_int_eq(nvme_drv_reap(&drv, 1, &cqe, TU_TIMEOUT_MS), 0);

    ok(0, (struct nvme_sqe){.opcode = NVME_ADM_DELETE_SQ, .cdw10 = 1});
    assert_quiet("Delete SQ 1");
    ok(0, (struct nvme_sqe){.opcode = NVME_ADM_DELETE_CQ, .cdw10 = 1});
    write_64k(2, 100, 19);
    check_file_pat(f, 100 * 512, 65536, 19, 0, "64 KiB written on queue 2 after the deletion");

    tu_nvme_create_queue(&drv, 1);
    round_trip(f, 1, 300, 20, "64 KiB on queue 1 made again");
}
END_TEST

/* DestroyDevice with both queues full: it goes, lets go of the file, and
 * a new device on the same file reads what was written before. muserd's
 * clean exit at teardown (under ASan) says nothing leaked. */
START_TEST(test_destroy_with_commands_in_flight)
{
    char f[PATH_MAX];
    backed_ns(f, _i, 0, 0);
    write_64k(1, 0, 21);
    flood_both();

    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    int r = sd_bus_call_method(src.bus, NAME, MANAGER_PATH, MANAGER, "DestroyDevice", &e, NULL, "s",
                               "n0");
    if (r < 0)
        test_daemon_dump_log(src.daemon, 4096);
    ck_assert_msg(r >= 0, "DestroyDevice: %s: %s", e.name, e.message);
    ck_assert_int_eq(device_count(&src, NULL), 0);
    stop_io();
    int writable, open_fds = 0;
    for (int tries = 0; tries < 100 && (open_fds = fds_on(src.daemon, f, &writable)) > 0; tries++)
        usleep(50000);
    ck_assert_msg(open_fds == 0, "muserd still holds %d fds on the destroyed device's file",
                  open_fds);

    create_backed("n0", f, _i, "");
    start_io(&src, "n0");
    memset(mem(BUF_B), 0, 65536);
    ok(2, io(NVME_CMD_READ, 0, 128, BUF_B, LISTS));
    tu_check_pat(mem(BUF_B), 65536, 21, 0, "64 KiB written before the destroy");
}
END_TEST

/* The client goes away (its DMA mappings with it) while Reads and Writes
 * are in flight: the next client brings the controller up again and its
 * I/O works. */
START_TEST(test_disconnect_with_commands_in_flight)
{
    char f[PATH_MAX];
    backed_ns(f, _i, 0, 0);
    flood_both();
    stop_io();
    start_io(&src, "n0");
    round_trip(f, 1, 100, 24, "64 KiB from the next client");
}
END_TEST

/* ---- configs ---------------------------------------------------------------- */

/* CreateDevice must refuse json with InvalidConfig, in a sentence naming
 * `named` (or `or_named`), and leave nothing behind: what it did instead,
 * malloc()ed, or NULL. */
static char *refusal_problem(const char *json, const char *named, const char *or_named)
{
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    char *problem = NULL;
    int r = create_device(&src, "bad", json, &e);
    if (r >= 0) {
        (void)asprintf(&problem, "%s was taken", json);
        (void)sd_bus_call_method(src.bus, NAME, MANAGER_PATH, MANAGER, "DestroyDevice", NULL, NULL,
                                 "s", "bad");
    } else if (!sd_bus_error_has_name(&e, "org.muserd1.Error.InvalidConfig")) {
        (void)asprintf(&problem, "%s: %s (%s), not org.muserd1.Error.InvalidConfig", json, e.name,
                       e.message);
    } else if (!strstr(e.message, named) && !(or_named && strstr(e.message, or_named))) {
        (void)asprintf(&problem, "%s: \"%s\" does not name %s", json, e.message, named);
    } else if (device_count(&src, "bad") != 0) {
        (void)asprintf(&problem, "%s: a device is left after the refusal", json);
    } else if (access(test_daemon_socket(src.daemon, "bad"), F_OK) == 0) {
        (void)asprintf(&problem, "%s: a socket is left after the refusal", json);
    }
    return problem;
}

/* Every case runs and every wrong answer is reported, not just the first. */
static void expect_refused(const char *json, const char *named, const char *or_named,
                           int *nr_problems)
{
    _cleanup_free_ char *problem = refusal_problem(json, named, or_named);
    if (problem) {
        fprintf(stderr, "test_bad_config: %s\n", problem);
        (*nr_problems)++;
    }
}

static const char io_uring_knob[] = "/proc/sys/kernel/io_uring_disabled";

/* Where io_uring cannot be had (here: kernel.io_uring_disabled, as a
 * seccomp filter would), "auto" runs on the thread pool, and "io_uring"
 * asked for by name is refused by name. */
START_TEST(test_auto_falls_back_to_threads)
{
    const char *knob = io_uring_knob;
    char f[PATH_MAX], old[16] = "";
    FILE *k = fopen(knob, "r+");
    if (!k || !fgets(old, sizeof(old), k)) {
        printf("test-nvme-backing: test_auto_falls_back_to_threads: SKIP: cannot change %s\n",
               knob);
        if (k)
            fclose(k);
        return;
    }
    path_in(f, dir, "ns.img");
    make_file(f, NS_BYTES);
    _cleanup_free_ char *auto_json = backed_config(f, -1, "");
    _cleanup_free_ char *uring_json = backed_config(f, 1, "");
    _cleanup_(sd_bus_error_free) sd_bus_error e1 = SD_BUS_ERROR_NULL, e2 = SD_BUS_ERROR_NULL;
    /* io_uring off only while the two devices are created. */
    rewind(k);
    bool off = fputs("2\n", k) >= 0 && fflush(k) == 0;
    int r_auto = create_device(&src, "n0", auto_json, &e1);
    int r_uring = create_device(&src, "n1", uring_json, &e2);
    rewind(k);
    bool restored = fputs(old, k) >= 0 && fflush(k) == 0;
    fclose(k);
    ck_assert_msg(off && restored, "could not switch %s", knob);
    ck_assert_msg(r_auto >= 0, "\"auto\" without io_uring: %s: %s", e1.name, e1.message);
    tu_assert_log_line(src.daemon, "n0: nvme: namespace 1 on", f, "threads");
    ck_assert_msg(r_uring < 0, "\"io_uring\" was created without io_uring");
    ck_assert_str_eq(e2.name, "org.muserd1.Error.InvalidConfig");
    ck_assert_msg(strstr(e2.message, "io_uring"), "the error does not say io_uring: %s",
                  e2.message);
    start_io(&src, "n0");
    write_64k(1, 100, 9);
    ok(1, flush);
    check_file_pat(f, 100 * 512, 65536, 9, 0, "64 KiB written through the thread pool");
}
END_TEST

START_TEST(test_bad_config)
{
    char missing[PATH_MAX], small[PATH_MAX], unreadable[PATH_MAX], good[3][PATH_MAX];
    int nr_problems = 0;
    path_in(missing, dir, "missing.img");
    path_in(small, dir, "small.img");
    make_file(small, (1 << 20) - 512);
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof(name), "good%d.img", i);
        make_file(path_in(good[i], dir, name), 1 << 20);
    }
    if (geteuid() == 0) {
        path_in(unreadable, good[0], "x"); /* root reads any file: a file as a directory */
    } else {
        path_in(unreadable, dir, "unreadable.img");
        make_file(unreadable, 1 << 20);
        ck_assert_int_eq(chmod(unreadable, 0), 0);
    }

    const char *const paths[] = {missing, dir, unreadable};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        _cleanup_free_ char *json = backed_config(paths[i], -1, "");
        expect_refused(json, paths[i], NULL, &nr_problems);
    }
    const struct {
        const char *path, *extra, *named, *or_named;
    } bad[] = {
        {small, "", small, "backing"},             /* under 1 MiB */
        {"/dev/null", "", "/dev/null", "backing"}, /* neither a file nor a block device */
        {good[0], ", \"size\": 1048576", "size", NULL},
        {good[0], ", \"aio\": \"posix\"", "aio", NULL},
        {good[0], ", \"aio\": 1", "aio", NULL},
        {good[0], ", \"block_size\": 1024", "block_size", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        _cleanup_free_ char *json = backed_config(bad[i].path, -1, bad[i].extra);
        expect_refused(json, bad[i].named, bad[i].or_named, &nr_problems);
    }
    ck_assert_msg(nr_problems == 0, "%d bad configs were not refused as they should be (above)",
                  nr_problems);
    int writable;
    ck_assert_msg(fds_on(src.daemon, small, &writable) == 0,
                  "muserd holds the file of a refused config open");

    /* Files of exactly 1 MiB are taken, with each engine. */
    create_backed("ok", good[0], -1, ", \"aio\": \"auto\"");
    create_backed("ok-threads", good[1], 0, "");
    create_backed("ok-uring", good[2], 1, "");
    ck_assert_int_eq(device_count(&src, NULL), 3);
}
END_TEST

/* A FIFO is neither a file nor a block device: refused at once, read-only
 * too (where an open for reading would wait for a writer), and the I/O
 * thread the device was to run on keeps serving the one it has. */
START_TEST(test_fifo_is_refused)
{
    char f[PATH_MAX], fifo[PATH_MAX];
    ck_assert_int_eq(mkfifo(path_in(fifo, dir, "fifo"), 0600), 0);
    path_in(f, dir, "ns.img");
    make_file(f, NS_BYTES);
    create_backed("n0", f, -1, ", \"io_thread\": 0");
    start_io(&src, "n0");
    const char *const extra[] = {", \"io_thread\": 0", ", \"io_thread\": 0, \"read_only\": true"};
    for (int i = 0; i < 2; i++) {
        _cleanup_free_ char *json = backed_config(fifo, -1, extra[i]);
        _cleanup_free_ char *problem = refusal_problem(json, fifo, "backing");
        /* A daemon stuck opening the FIFO for reading goes on once a writer comes. */
        int w = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (w >= 0)
            close(w);
        ck_assert_msg(!problem, "%s", problem);
        round_trip(f, 1, 100 + 128 * (uint64_t)i, (uint8_t)(70 + i),
                   "I/O on a device of the same I/O thread");
    }
}
END_TEST

/* ---- migration ------------------------------------------------------------ */

/* The controller moves to a second muserd whose device opens the same
 * file: the stream does not carry the data, Writes in flight at Migrate
 * complete, and the destination reads everything the source wrote. */
/* backed_ns() (engine "auto", the first 64 KiB of the file the pattern
 * `seed`) on src, and on dst an incoming device on the same file. */
static void migration_pair(char *f, uint8_t seed)
{
    backed_ns(f, -1, 65536, seed);
    _cleanup_free_ char *dst_json = backed_config(f, -1, ", \"incoming\": true");
    tu_side_start(&dst, (const char *const[]){"nvme", NULL},
                  (const char *const[]){"nvme", "n0", dst_json, NULL});
}

START_TEST(test_migration_shares_the_file)
{
    char f[PATH_MAX];
    migration_pair(f, 23);
    for (int k = 0; k < 4; k++)
        write_64k(1, 8192 + 128 * (uint64_t)k, (uint8_t)(24 + k));
    uint16_t cids[8];
    for (int i = 0; i < 8; i++) {
        tu_fill_pat(mem(BUF_B + (uint64_t)i * CHUNK), CHUNK, (uint8_t)(30 + i));
        cids[i] = submit(2, io(NVME_CMD_WRITE, chunk_lba(i), CHUNK_BLOCKS,
                               BUF_B + (uint64_t)i * CHUNK, LISTS + 64ull * i));
    }
    ck_assert_int_eq(nvme_drv_kick(&drv, 2), 0);
    /* The controller has taken them (it fetches up to 16 at once): the
     * other 7 are in flight or done when Migrate comes. */
    struct nvme_cqe cqe;
    ck_assert_int_eq(nvme_drv_reap(&drv, 2, &cqe, TU_TIMEOUT_MS), 0);
    ck_assert_uint_eq(nvme_drv_status(&cqe), 0);
    int first = 0;
    while (first < 8 && cids[first] != cqe.cid)
        first++;
    ck_assert_int_lt(first, 8);
    cids[first] = cids[7];

    off_t size = tu_side_migrate(&src, &dst, "n0");
    ck_assert_msg(size > 0 && size < 65536,
                  "the stream is %lld bytes: the file's data (448 KiB written) is in it",
                  (long long)size);
    side = &dst;
    tu_nvme_reattach(&drv, &client, dst.daemon, "n0");
    reap_all(2, cids, 7);
    for (int k = 0; k < 4; k++) {
        memset(mem(BUF_A), 0, 65536);
        ok(1, io(NVME_CMD_READ, 8192 + 128 * (uint64_t)k, 128, BUF_A, LISTS));
        tu_check_pat(mem(BUF_A), 65536, (uint8_t)(24 + k), 0, "written on the source");
    }
    for (int i = 0; i < 8; i++) {
        memset(mem(BUF_A), 0, CHUNK);
        ok(2, io(NVME_CMD_READ, chunk_lba(i), CHUNK_BLOCKS, BUF_A, LISTS));
        tu_check_pat(mem(BUF_A), CHUNK, (uint8_t)(30 + i), 0, "in flight at Migrate");
    }
    memset(mem(BUF_A), 0, 65536);
    ok(1, io(NVME_CMD_READ, 0, 128, BUF_A, LISTS));
    tu_check_pat(mem(BUF_A), 65536, 23, 0, "in the file before either device");
    round_trip(f, 1, 12000, 38, "64 KiB written on the destination");
}
END_TEST

/* A doorbell the source had not seen when it stopped (rung just before its
 * next poll; here, deterministically, rung while its client has it
 * stopped) is in the state the destination loads through D-Bus, and the
 * destination runs with no client yet: it must not fetch from guest memory
 * nobody has mapped. When the client comes, the controller is ready and
 * the command rung runs there. */
START_TEST(test_migration_doorbell_rung_while_stopped)
{
    char f[PATH_MAX], stream_path[PATH_MAX];
    migration_pair(f, 41);

    int r = vfu_client_mig_set_state(client, VFU_MIG_STOP, NULL);
    ck_assert_msg(r == 0, "MIG_DEVICE_STATE STOP: %s", strerror(-r));
    memset(mem(BUF_B), 0, 65536);
    uint16_t cid = submit(2, io(NVME_CMD_READ, 0, 128, BUF_B, LISTS));
    ck_assert_int_eq(nvme_drv_kick(&drv, 2), 0);
    r = vfu_client_mig_set_state(client, VFU_MIG_STOP_COPY, NULL);
    ck_assert_msg(r == 0, "MIG_DEVICE_STATE STOP_COPY: %s", strerror(-r));
    int fd = open(path_in(stream_path, dir, "stream"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    for (size_t n = 65536; n == 65536;) {
        static uint8_t buf[65536];
        r = vfu_client_mig_read(client, buf, sizeof(buf), &n);
        ck_assert_msg(r == 0, "MIG_DATA_READ: %s", strerror(-r));
        ck_assert_int_eq(write(fd, buf, n), (ssize_t)n);
    }
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    r = tu_side_call_device(&dst, "n0", "Incoming", fd, &e);
    ck_assert_msg(r >= 0, "Incoming: %s: %s", e.name, e.message);
    close(fd);
    usleep(50000); /* the destination runs, with no client yet */

    side = &dst;
    tu_nvme_reattach(&drv, &client, dst.daemon, "n0");
    reap_all(2, &cid, 1);
    tu_check_pat(mem(BUF_B), 65536, 41, 0, "the Read rung while the source was stopped");
    round_trip(f, 1, 100, 42, "64 KiB on the destination");
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
    Suite *s = suite_create("nvme-backing");
    TCase *io = test_case(s, "io"); /* each test once per engine */
    const int engines = (int)(sizeof(aio_modes) / sizeof(aio_modes[0]));
    tcase_add_loop_test(io, test_file_data_reads_back, 0, engines);
    tcase_add_loop_test(io, test_writes_reach_the_file, 0, engines);
    tcase_add_loop_test(io, test_4k_blocks, 0, engines);
    tcase_add_loop_test(io, test_block_device, 0, engines);
    tcase_add_loop_test(io, test_read_only_file, 0, engines);
    tcase_add_loop_test(io, test_write_zeroes_and_deallocate, 0, engines);
    tcase_add_loop_test(io, test_tmpfs_file, 0, engines);
    tcase_add_loop_test(io, test_32_commands_in_flight, 0, engines);
    tcase_add_loop_test(io, test_disable_with_commands_in_flight, 0, engines);
    tcase_add_loop_test(io, test_delete_sq_with_commands_in_flight, 0, engines);
    tcase_add_loop_test(io, test_destroy_with_commands_in_flight, 0, engines);
    tcase_add_loop_test(io, test_disconnect_with_commands_in_flight, 0, engines);
    TCase *device = test_case(s, "device");
    tcase_add_test(device, test_bad_config);
    tcase_add_test(device, test_auto_falls_back_to_threads);
    tcase_add_test(device, test_fifo_is_refused);
    tcase_add_test(device, test_migration_shares_the_file);
    tcase_add_test(device, test_migration_doorbell_rung_while_stopped);

    strcpy(base_dir[0], "/tmp/muserd-backing-XXXXXX");
    strcpy(base_dir[1], "/dev/shm/muserd-backing-XXXXXX");
    if (!mkdtemp(base_dir[0]) || !mkdtemp(base_dir[1])) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    /* The fallback test switches io_uring off for the whole machine for a
     * moment: whatever happens to that test's process, it is back on after. */
    char knob_was[16] = "";
    FILE *k = fopen(io_uring_knob, "r");
    if (k && !fgets(knob_was, sizeof(knob_was), k))
        knob_was[0] = '\0';
    if (k)
        fclose(k);
    int r = tu_run_suite(s);
    k = knob_was[0] ? fopen(io_uring_knob, "w") : NULL;
    if (k) {
        fputs(knob_was, k);
        fclose(k);
    }
    remove_tree(base_dir[0]);
    remove_tree(base_dir[1]);
    return r;
}
