/* SPDX-License-Identifier: MIT */
/*
 * The nvme device's file-backed namespaces against its RAM namespace, side
 * by side in one run, without SPDK. One muserd (one I/O thread) serves
 * four nvme devices, each a 256 MiB namespace of 4 KiB blocks:
 *   RAM        "size";
 *   tmpfs      "backing": a file in /dev/shm, "aio" auto (io_uring where
 *              the kernel allows it, else the thread pool);
 *   tmpfs thr  the same with "aio": "threads", to compare the two engines;
 *   disk       "backing": a file in $MUSERD_BENCH_DISK_DIR, else /var/tmp,
 *              else the current directory, the first that statfs says is
 *              not a tmpfs; without one the row says SKIP.
 * The backing files are written in full first (and dropped from the page
 * cache), so reads hit real blocks; the device opens them O_DIRECT where
 * the file system takes it, and a tmpfs file buffered, copied at once
 * without the engine (the table's head says how each went). Before
 * timing, each file-backed namespace is checked: blocks the bench wrote
 * into the file read back through NVMe, and blocks written through NVMe
 * read back from the file with pread, so a broken file path cannot print
 * good numbers. The RAM namespace is written in full through NVMe first,
 * so that no read finds an untouched page.
 *
 * The in-tree userspace NVMe driver (helpers/nvme-driver.c, the load in
 * helpers/nvme-load.c), one client per device, does 4 KiB random reads
 * and random writes: QD1 and QD32 on one I/O queue, and QD32 on each of
 * 4 queues. It polls its CQs (created without interrupts, as SPDK's perf
 * does), rings the doorbells through the mapped doorbell page, and puts a
 * new command in each completed one's place at once, its LBA from a
 * fixed-seed PRNG (the same LBAs for every namespace in a round). Latency
 * runs from just before the doorbell to the completion seen; p99 to
 * 0.1 us. Each case runs on the four namespaces one after the other, so a
 * ratio compares numbers taken seconds apart; 2 s each, and the better of
 * 2 rounds (by IOPS) counts. It prints IOPS, average and p99 latency, and
 * each file-backed namespace's IOPS as a ratio to RAM's.
 *
 * Nothing is pinned: driver and device thread each spin on a CPU, and the
 * thread pool's workers and the kernel's io_uring workers run where the
 * scheduler finds room. On a machine of 2 CPUs that others share, every
 * number moves with their load: the load averages before and after are
 * printed with the table.
 *
 * Run it as `make bench` does: TMPDIR (for the daemon's runtime
 * directory; /dev/shm), MUSERD_BIN and MUSERD_PLUGIN_DIR set. It takes
 * about 100 s. It fails only when something does not start, the check
 * finds wrong data, or an I/O completes with an error status; never
 * because a number is low.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "../integration/helpers/nvme-driver.h"
#include "../integration/helpers/nvme-load.h"
#include "../integration/helpers/testutil.h"
#include "util/macro.h"

#define NS_BYTES  (256ull << 20)
#define BLOCK     4096u
#define NR_BLOCKS (NS_BYTES / BLOCK)
#define QUEUES    4u
#define SECONDS   2
#define ROUNDS    2
#define SEED      0x6e766d65ull /* "nvme" */
#define FILE_NAME "ns.img"

DEFINE_FREEP(struct test_daemon, test_daemon_free)

struct bench_case {
    const char *name;
    uint8_t opcode;
    uint32_t qd; /* per queue */
    uint16_t queues;
};

static const struct bench_case cases[] = {
    {"randread", NVME_CMD_READ, 1, 1},   {"randread", NVME_CMD_READ, 32, 1},
    {"randwrite", NVME_CMD_WRITE, 1, 1}, {"randwrite", NVME_CMD_WRITE, 32, 1},
    {"randread", NVME_CMD_READ, 32, 4},  {"randwrite", NVME_CMD_WRITE, 32, 4},
};
#define N_CASES ELEMENTSOF(cases)

struct ns {
    const char *id;    /* the device's */
    const char *label; /* in the table */
    const char *aio;   /* NULL: a RAM namespace */
    char dir[PATH_MAX - 16], path[PATH_MAX];
    char how[96];     /* where the file is and how the device drives it */
    const char *skip; /* why it is not measured, or NULL */
    struct vfu_client *c;
    struct nvme_drv drv;
    bool attached;
    struct nvme_load_result res[N_CASES];
};

enum { NS_RAM, NS_TMPFS, NS_TMPFS_THREADS, NS_DISK, N_NS };
static struct ns nss[N_NS] = {
    [NS_RAM] = {.id = "ram", .label = "RAM"},
    [NS_TMPFS] = {.id = "tmpfs", .label = "tmpfs", .aio = "auto"},
    [NS_TMPFS_THREADS] = {.id = "tmpfs-thr", .label = "tmpfs thr", .aio = "threads"},
    [NS_DISK] = {.id = "disk", .label = "disk", .aio = "auto"},
};

/* ---- backing files ---------------------------------------------------------- */

static bool on_tmpfs(const char *dir, long *type)
{
    struct statfs sf;
    if (statfs(dir, &sf) < 0)
        return false;
    *type = (long)sf.f_type;
    return sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC;
}

static const char *fs_name(long type)
{
    switch (type) {
    case TMPFS_MAGIC:
        return "tmpfs";
    case EXT4_SUPER_MAGIC:
        return "ext4";
    case XFS_SUPER_MAGIC:
        return "xfs";
    case BTRFS_SUPER_MAGIC:
        return "btrfs";
    case OVERLAYFS_SUPER_MAGIC:
        return "overlayfs";
    default:
        return "another file system";
    }
}

/* Block lba as the bench puts it down: tag 0 in the file before the run,
 * tag 1 through NVMe in the check. */
static void stamp_block(uint8_t *buf, uint64_t lba, uint64_t tag)
{
    uint64_t x = tag << 60 ^ lba * 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < BLOCK / 8; i++) {
        uint64_t v = x + i;
        memcpy(buf + 8 * i, &v, 8);
    }
}

/* The whole file written, on the disk, and out of the page cache. */
static int write_file(const char *path)
{
    enum { CHUNK = 1 << 20 };
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    _cleanup_free_ uint8_t *buf = malloc(CHUNK);
    if (fd < 0 || !buf)
        return fd < 0 ? -errno : -ENOMEM;
    for (uint64_t off = 0; off < NS_BYTES; off += CHUNK) {
        for (uint32_t b = 0; b < CHUNK / BLOCK; b++)
            stamp_block(buf + (size_t)b * BLOCK, off / BLOCK + b, 0);
        if (pwrite(fd, buf, CHUNK, (off_t)off) != CHUNK)
            return errno ? -errno : -EIO;
    }
    if (fdatasync(fd) < 0)
        return -errno;
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    return 0;
}

/* A directory of ours in dir with a full backing file; ns->skip when dir
 * is not there or is the wrong kind. */
static int make_backing(struct ns *ns, const char *dir, bool want_tmpfs)
{
    long type = 0;
    if (access(dir, W_OK) < 0 || on_tmpfs(dir, &type) != want_tmpfs) {
        ns->skip = want_tmpfs ? "no tmpfs at /dev/shm" : "no writable directory off tmpfs";
        return 0;
    }
    snprintf(ns->dir, sizeof(ns->dir), "%s/bench-nvme-file-XXXXXX", dir);
    if (!mkdtemp(ns->dir)) {
        int r = -errno;
        ns->dir[0] = 0;
        fprintf(stderr, "bench-nvme-file: mkdtemp in %s: %s\n", dir, strerror(-r));
        return r;
    }
    snprintf(ns->path, sizeof(ns->path), "%s/" FILE_NAME, ns->dir);
    snprintf(ns->how, sizeof(ns->how), "%s (%s)", dir, fs_name(type));
    int r = write_file(ns->path);
    if (r < 0)
        fprintf(stderr, "bench-nvme-file: writing %llu MiB to %s: %s\n", NS_BYTES >> 20, ns->path,
                strerror(-r));
    return r;
}

/* The first of $MUSERD_BENCH_DISK_DIR, /var/tmp and the build directory
 * (MUSERD_BIN's) that is not a tmpfs, in a static buffer. */
static const char *disk_dir(void)
{
    static char build[PATH_MAX];
    const char *env = getenv("MUSERD_BENCH_DISK_DIR"), *bin = getenv("MUSERD_BIN");
    snprintf(build, sizeof(build), "%s", bin && *bin ? bin : "build/muserd");
    char *slash = strrchr(build, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(build, sizeof(build), ".");
    const char *const dirs[] = {env && *env ? env : "/var/tmp", "/var/tmp", build};
    for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
        long type;
        if (access(dirs[i], W_OK) == 0 && !on_tmpfs(dirs[i], &type))
            return dirs[i];
    }
    return "/var/tmp";
}

static void remove_backing(struct ns *ns)
{
    if (ns->path[0])
        unlink(ns->path);
    if (ns->dir[0])
        rmdir(ns->dir);
}

/* ", O_DIRECT, io_uring" from the device's log line about the file. */
static void note_mode(struct test_daemon *d, struct ns *ns)
{
    static const char *const modes[] = {"O_DIRECT", "buffered", "in memory"};
    static const char *const engines[] = {"io_uring", "threads"};
    for (size_t m = 0; m < ELEMENTSOF(modes); m++)
        for (size_t e = 0; e < ELEMENTSOF(engines); e++)
            if (tu_file_has_line(
                    test_daemon_log_path(d),
                    (const char *const[]){"namespace on", ns->path, modes[m], engines[e], NULL})) {
                size_t len = strlen(ns->how);
                snprintf(ns->how + len, sizeof(ns->how) - len, ", %s, %s", modes[m], engines[e]);
                return;
            }
}

/* ---- the device --------------------------------------------------------------- */

/* muserd's command line: one I/O thread, a device a namespace. */
static int add_args(struct test_daemon *d)
{
    int r;
    if ((r = test_daemon_add_arg(d, "--no-bus")) < 0 ||
        (r = test_daemon_add_arg(d, "--io-threads")) < 0 || (r = test_daemon_add_arg(d, "1")) < 0 ||
        (r = test_daemon_add_arg(d, "--log-level")) < 0 || (r = test_daemon_add_arg(d, "info")) < 0)
        return r;
    /* Root stays root (with only CAP_CHOWN), the owner of our files, even
     * where a muserd user exists. */
    if (geteuid() == 0 && ((r = test_daemon_add_arg(d, "--user-name")) < 0 ||
                           (r = test_daemon_add_arg(d, "root")) < 0))
        return r;
    for (size_t i = 0; i < N_NS; i++) {
        char cfg[PATH_MAX + 128];
        const struct ns *ns = &nss[i];
        if (ns->skip)
            continue;
        if (ns->aio)
            snprintf(cfg, sizeof(cfg),
                     "{\"backing\": \"%s\", \"aio\": \"%s\", \"block_size\": %u, \"queues\": %u}",
                     ns->path, ns->aio, BLOCK, QUEUES);
        else
            snprintf(cfg, sizeof(cfg), "{\"size\": %llu, \"block_size\": %u, \"queues\": %u}",
                     NS_BYTES, BLOCK, QUEUES);
        if ((r = test_daemon_add_device(d, "nvme", ns->id, cfg)) < 0)
            return r;
    }
    return 0;
}

static int start_muserd(struct test_daemon **ret)
{
    _cleanup_(test_daemon_freep) struct test_daemon *d = NULL;
    int r = test_daemon_new(&d);
    if (r >= 0)
        r = add_args(d);
    if (r >= 0)
        r = test_daemon_start(d);
    if (r >= 0)
        r = test_daemon_wait_ready(d, 30000);
    if (r < 0) {
        fprintf(stderr, "bench-nvme-file: cannot start muserd: %s\n", strerror(-r));
        if (d)
            test_daemon_dump_log(d, 4096);
        return r;
    }
    for (size_t i = 0; i < N_NS; i++)
        if (nss[i].aio && !nss[i].skip)
            note_mode(d, &nss[i]);
    *ret = TAKE_PTR(d);
    return 0;
}

/* Identify Namespace 1: 256 MiB of 4 KiB blocks, as configured. */
static int check_identify(struct nvme_drv *drv)
{
    struct nvme_sqe c = {.opcode = NVME_ADM_IDENTIFY,
                         .nsid = 1,
                         .prp1 = nvme_drv_iova(NVME_DRV_DATA),
                         .cdw10 = NVME_ID_CNS_NS};
    uint16_t status = 0;
    int r = nvme_drv_cmd(drv, 0, &c, &status, NULL);
    if (r < 0 || status)
        return r < 0 ? r : -EIO;
    const uint8_t *id = nvme_drv_ptr(drv, NVME_DRV_DATA);
    uint64_t nsze;
    memcpy(&nsze, id, 8);
    uint8_t lbads = id[128 + 4 * (id[26] & 0xf) + 2];
    return nsze == NR_BLOCKS && lbads == 12 ? 0 : -EINVAL;
}

/* The controller up, the namespace as configured, QUEUES polled I/O queues. */
static int bring_up(struct nvme_drv *drv)
{
    uint16_t status = 0, granted = 0;
    int r = nvme_drv_enable(drv);
    if (r >= 0)
        r = check_identify(drv);
    if (r >= 0)
        r = nvme_drv_set_num_queues(drv, QUEUES, &status, &granted);
    if (r >= 0 && (status || granted < QUEUES))
        r = -EIO;
    for (uint16_t q = 1; r >= 0 && q <= QUEUES; q++) {
        r = nvme_drv_create_polled_io_queue(drv, q, &status);
        if (r >= 0 && status)
            r = -EIO;
    }
    return r;
}

/* One block through NVMe between the data area and lba: its status, or -errno. */
static int block_io(struct nvme_drv *drv, uint8_t opcode, uint64_t lba)
{
    struct nvme_sqe c = {.opcode = opcode,
                         .nsid = 1,
                         .prp1 = nvme_drv_iova(NVME_DRV_DATA),
                         .cdw10 = (uint32_t)lba,
                         .cdw11 = (uint32_t)(lba >> 32)};
    uint16_t status = 0;
    int r = nvme_drv_cmd(drv, 1, &c, &status, NULL);
    return r < 0 ? r : status;
}

/* Say what went wrong with block lba: -EIO. */
static int check_failed(const struct ns *ns, uint64_t lba, const char *what, int r)
{
    fprintf(stderr, "bench-nvme-file: %s: block %llu %s: ", ns->id, (unsigned long long)lba, what);
    if (r < 0)
        fprintf(stderr, "%s\n", strerror(-r));
    else if (r > 0)
        fprintf(stderr, "status %#x\n", (unsigned)r);
    else
        fprintf(stderr, "the data differs\n");
    return -EIO;
}

/*
 * Blocks the bench wrote into the file read back through NVMe; blocks
 * written through NVMe read back from the file. 0, or -EIO after saying
 * what differs.
 */
static int check_file(struct nvme_drv *drv, const struct ns *ns)
{
    static const uint64_t reads[] = {0, 1, NR_BLOCKS / 2 + 3, NR_BLOCKS - 1};
    static const uint64_t writes[] = {2, NR_BLOCKS / 3, NR_BLOCKS - 2};
    uint8_t want[BLOCK], got[BLOCK];
    uint8_t *data = nvme_drv_ptr(drv, NVME_DRV_DATA);

    for (size_t i = 0; i < ELEMENTSOF(reads); i++) {
        memset(data, 0, BLOCK);
        int r = block_io(drv, NVME_CMD_READ, reads[i]);
        stamp_block(want, reads[i], 0);
        if (r != 0 || memcmp(data, want, BLOCK) != 0)
            return check_failed(ns, reads[i], "read through NVMe against the file", r);
    }
    _cleanup_close_ int fd = open(ns->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "bench-nvme-file: opening %s: %m\n", ns->path);
        return -EIO;
    }
    for (size_t i = 0; i < ELEMENTSOF(writes); i++) {
        stamp_block(data, writes[i], 1);
        int r = block_io(drv, NVME_CMD_WRITE, writes[i]);
        if (r != 0)
            return check_failed(ns, writes[i], "written through NVMe", r);
        stamp_block(want, writes[i], 1);
        ssize_t n = pread(fd, got, BLOCK, (off_t)(writes[i] * BLOCK));
        if (n < 0)
            return check_failed(ns, writes[i], "read back with pread", -errno);
        if (n != BLOCK || memcmp(got, want, BLOCK) != 0)
            return check_failed(ns, writes[i], "written through NVMe, read back with pread", 0);
    }
    return 0;
}

/* Every namespace gets the same LBAs in a round; each round new ones. */
static struct nvme_load case_load(const struct bench_case *c, int round)
{
    return (struct nvme_load){.opcode = c->opcode,
                              .block_size = BLOCK,
                              .nr_blocks = NR_BLOCKS,
                              .io_size = BLOCK,
                              .queues = c->queues,
                              .qd = c->qd,
                              .seed = SEED + (uint64_t)round,
                              .duration_ns = SECONDS * 1000000000ull};
}

static int run_load(struct nvme_drv *drv, const struct ns *ns, const char *what,
                    const struct nvme_load *load, struct nvme_load_result *res)
{
    int r = nvme_load_run(drv, load, res);
    if (r == -EIO)
        fprintf(stderr,
                "bench-nvme-file: %s: %s: a command at LBA %llu completed with status %#x\n",
                ns->id, what, (unsigned long long)res->lba, res->status);
    else if (r < 0)
        fprintf(stderr, "bench-nvme-file: %s: %s: %s\n", ns->id, what, strerror(-r));
    return r;
}

/* ns's controller up with the driver on a client of its own, the backing
 * file checked or (RAM) every block written once. */
static int open_ns(struct test_daemon *d, struct ns *ns)
{
    int r = tu_connect(test_daemon_socket(d, ns->id), vfu_client_qemu_caps_json, 10000, &ns->c);
    if (r < 0) {
        fprintf(stderr, "bench-nvme-file: connecting to %s: %s\n", ns->id, strerror(-r));
        return r;
    }
    r = nvme_drv_attach(&ns->drv, ns->c, true, 0);
    ns->attached = true;
    if (r >= 0)
        r = bring_up(&ns->drv);
    if (r < 0) {
        fprintf(stderr, "bench-nvme-file: %s: bringing the controller up: %s\n", ns->id,
                strerror(-r));
        return r;
    }
    if (ns->aio)
        return check_file(&ns->drv, ns);
    struct nvme_load fill = case_load(&cases[0], 0);
    struct nvme_load_result ignored;
    fill.opcode = NVME_CMD_WRITE;
    fill.qd = 32;
    fill.sequential = true;
    fill.duration_ns = 0;
    fill.max_ios = NR_BLOCKS;
    return run_load(&ns->drv, ns, "writing every block", &fill, &ignored);
}

static void close_ns(struct ns *ns)
{
    if (ns->attached)
        nvme_drv_free(&ns->drv);
    ns->attached = false;
    if (ns->c)
        vfu_client_free(ns->c);
    ns->c = NULL;
}

/* Case by case, the namespaces one after the other, so that a ratio
 * compares numbers taken seconds apart; the round with more IOPS counts. */
static int run_cases(void)
{
    for (int round = 0; round < ROUNDS; round++)
        for (size_t k = 0; k < N_CASES; k++)
            for (size_t i = 0; i < N_NS; i++) {
                struct ns *ns = &nss[i];
                if (ns->skip)
                    continue;
                struct nvme_load load = case_load(&cases[k], round);
                struct nvme_load_result res;
                int r = run_load(&ns->drv, ns, cases[k].name, &load, &res);
                if (r < 0)
                    return r;
                if (res.iops > ns->res[k].iops)
                    ns->res[k] = res;
            }
    return 0;
}

/* ---- the bench ------------------------------------------------------------------ */

/* The 1, 5 and 15 minute load averages: other work on the machine shows
 * in every number here. */
static char load_before[32] = "?", load_after[32] = "?";

static void read_loadavg(char *buf, size_t size)
{
    FILE *f = fopen("/proc/loadavg", "re");
    double l1, l5, l15;
    if (f && fscanf(f, "%lf %lf %lf", &l1, &l5, &l15) == 3)
        snprintf(buf, size, "%.2f %.2f %.2f", l1, l5, l15);
    if (f)
        fclose(f);
}

/* The least-served I/O queue's completions over the most-served one's:
 * 1.00 when the device takes turns evenly. */
static double fairness(const struct nvme_load_result *res, unsigned queues)
{
    uint64_t lo = UINT64_MAX, hi = 0;
    for (unsigned q = 1; q <= queues; q++) {
        lo = res->queue_ios[q] < lo ? res->queue_ios[q] : lo;
        hi = res->queue_ios[q] > hi ? res->queue_ios[q] : hi;
    }
    return hi ? (double)lo / (double)hi : 0;
}

static void print_results(void)
{
    printf("bench-nvme-file: muserd's nvme device, 4 KiB random I/O from the in-tree NVMe driver "
           "(polled CQs, mapped doorbells), %llu MiB namespaces of 4 KiB blocks, one I/O thread, "
           "%d s each, best of %d; latencies in us; \"queues\": the least-served queue's "
           "completions over the most-served one's\n",
           NS_BYTES >> 20, SECONDS, ROUNDS);
    printf("  load average before: %s, after: %s (%ld CPUs)\n", load_before, load_after,
           sysconf(_SC_NPROCESSORS_ONLN));
    for (size_t i = 0; i < N_NS; i++)
        printf("  %-9s %s\n", nss[i].label,
               nss[i].skip  ? nss[i].skip
               : nss[i].aio ? nss[i].how
                            : "\"size\": memory of muserd");
    for (size_t k = 0; k < N_CASES; k++)
        for (size_t i = 0; i < N_NS; i++) {
            const struct ns *ns = &nss[i];
            const struct nvme_load_result *res = &ns->res[k], *ram = &nss[NS_RAM].res[k];
            printf("  %-9s QD%-2u x%u queue%s %-9s ", cases[k].name, cases[k].qd, cases[k].queues,
                   cases[k].queues > 1 ? "s" : " ", ns->label);
            if (ns->skip) {
                printf("SKIP\n");
                continue;
            }
            printf("%8.0f IOPS avg %7.2f p99 %7.2f", res->iops, res->avg_us, res->p99_us);
            if (i != NS_RAM)
                printf(" | %.2fx RAM", res->iops / ram->iops);
            if (cases[k].queues > 1)
                printf(" | queues %.2f", fairness(res, cases[k].queues));
            printf("\n");
        }
}

static int bench(void)
{
    _cleanup_(test_daemon_freep) struct test_daemon *d = NULL;
    int r = start_muserd(&d);
    for (size_t i = 0; r >= 0 && i < N_NS; i++)
        if (!nss[i].skip)
            r = open_ns(d, &nss[i]);
    if (r >= 0) {
        read_loadavg(load_before, sizeof(load_before));
        r = run_cases();
        read_loadavg(load_after, sizeof(load_after));
    }
    for (size_t i = 0; i < N_NS; i++)
        close_ns(&nss[i]);
    if (r < 0) {
        if (d)
            test_daemon_dump_log(d, 4096);
        return r;
    }
    print_results();
    return test_daemon_stop_clean(d, 30000, "bench-nvme-file");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    int r = make_backing(&nss[NS_TMPFS], "/dev/shm", true);
    if (r >= 0)
        r = make_backing(&nss[NS_TMPFS_THREADS], "/dev/shm", true);
    if (r >= 0)
        r = make_backing(&nss[NS_DISK], disk_dir(), false);
    if (r >= 0)
        r = bench();
    for (size_t i = 0; i < N_NS; i++)
        remove_backing(&nss[i]);
    return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
