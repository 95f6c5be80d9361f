/* SPDX-License-Identifier: MIT */
/*
 * muserd as a guest user meets it: a Linux guest under the real QEMU
 * (vfio-user-pci, TCG) drives muserd's example devices with real kernel
 * drivers (tests/guest/), and we assert what that guest relies on:
 * enumeration matching what `muserctl probe` reports, registers, INTx / MSI /
 * MSI-X delivery and masking, and the ram device's DMA engine, both with
 * guest memory shared by fd and reached over the socket. Guest A (2 CPUs)
 * also has three nvme devices that the kernel's own nvme driver runs: an
 * ext2 round trip, discards and a controller reset under load on the first,
 * whose second namespace (4096-byte blocks) is a disk of its own that keeps
 * its data apart from the first's through all of that; the same round trip
 * on a namespace of 4096-byte blocks in a file, which the guest drives with
 * INTx; a read-only namespace read whole.
 *
 * Three guests boot at once on devices of one muserd (guest A with shared
 * memory, guest B without, guest C with shared memory in 2 MiB huge pages
 * when the machine has or lets us add them) while a hostile client hammers
 * another device.
 * Booting is slow under TCG, so everything runs once in the suite's
 * unchecked fixture and the tests assert on what it recorded: the guests'
 * serial logs (tests/guest/init describes their MUSERD-* lines) and what the
 * host read back from the devices after QEMU exited.
 *
 * Needs QEMU >= 10.1 ($QEMU, ../shared/qemu/bin/qemu-system-x86_64 beside
 * the source tree, or qemu-system-x86_64 on PATH) and the guest image
 * (tests/guest/build-guest.sh, into $MUSERD_GUEST_DIR, default build/guest);
 * without them the suite says SKIP and passes.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../plugins/nvme/nvme-spec.h"
#include "../../plugins/ram/ram-regs.h"
#include "../../plugins/timer/timer-regs.h"
#include "helpers/child.h"
#include "helpers/guest.h"
#include "helpers/nvme-driver.h"
#include "helpers/testutil.h"
#include "util/macro.h"

#define BOOT_TIMEOUT_MS 240000
#define RAM_SIZE        1048576u
/* The host's pattern in the RAM before boot (reset keeps the RAM): word i at
 * HOST_PATTERN_OFF is HOST_PATTERN + i. /init leaves GUEST_PATTERN + i at
 * GUEST_PATTERN_OFF and SCRATCH = GUEST_SCRATCH. */
#define HOST_PATTERN_OFF  0xf0000u
#define HOST_PATTERN      0x5eed0000u
#define GUEST_PATTERN_OFF 0xe0000u
#define GUEST_PATTERN     0xc0de0000u
#define GUEST_SCRATCH     0x600dcafeu
/* What /init writes into the uio timer (tests/guest/init: timer_leave_values). */
#define GUEST_DEADLINE 0x1122334455667788ull
#define GUEST_INTERVAL 0x10badc0deull
#define GUEST_VECTOR   1u
/* Guest A's main nvme device, and the block /init leaves on it for the host
 * (tests/guest/init: NVME_MARKER_OFF, NVME_MARKER). */
#define NVME_ID         "nvme0"
#define NVME_QUEUES     4u
#define NVME_MODEL      "muserd-guest-nvme"
#define NVME_MARKER_OFF (24u << 20)
#define NVME_MARKER     "MUSERD-NVME-MARKER written by the guest after its tests\n"
/* The same on its namespace 2 (tests/guest/init: NVME_NS2_MARKER_OFF, NVME_NS2_MARKER). */
#define NVME_NS2_MARKER_OFF (4u << 20)
#define NVME_NS2_MARKER     "MUSERD-NVME-NS2-MARKER written by the guest on namespace 2\n"

/* An nvme device of guest A: its namespace as configured, and the prefix
 * of the guest's step names for it (tests/guest/init: muserd.nvme4k, ...). */
struct guest_nvme {
    const char *tag; /* "", "4K-", "RO-" */
    const char *serial;
    uint32_t size, block_size;
    bool read_only;
    bool file_backed;  /* on a file of `size` bytes in the test's directory, else RAM */
    uint32_t ns2_size; /* a namespace 2 in RAM ("ns2_size"), 0: none */
    uint32_t ns2_block_size;
};
/* Its namespace 2 has other blocks than namespace 1, to tell them apart. */
static const struct guest_nvme nvme_main = {
    "", "GUESTNVME01", 33554432u, 512, false, false, .ns2_size = 8388608u, .ns2_block_size = 4096};
/* Runs on INTx: the guest keeps MSI and MSI-X from it (muserd.nvme_intx). */
static const struct guest_nvme nvme_4k = {"4K-", "GUESTNVME4K", 16777216u, 4096, false, true, 0, 0};
static const struct guest_nvme nvme_ro = {"RO-", "GUESTNVMERO", 4194304u, 512, true, false, 0, 0};

struct guest_dev {
    const char *id;                /* muserd device id */
    const char *addr;              /* PCI slot in the guest, "0xN" */
    const struct guest_nvme *nvme; /* an nvme device's namespace */
    char *probe_json;              /* `muserctl probe --json` before boot */
};

struct guest {
    const char *name;
    enum qemu_guest_memory memory;
    unsigned smp;        /* virtual CPUs, 0: one */
    const char *skipped; /* why this guest did not boot (huge pages missing) */
    const char *cmdline;
    struct guest_dev devs[6];
    size_t nr_devs;
    char serial_path[512];
    char *serial; /* the whole serial log */
    int qemu_status;
    char *qemu_output;
};

static struct guest guests[] = {
    {
        .name = "A (shared memory)",
        .memory = QEMU_GUEST_MEMORY_SHARED,
        /* Two CPUs: the nvme driver makes an I/O queue for each. */
        .smp = 2,
        .cmdline = "muserd.uio=0000:00:04.0 muserd.timer=msix,msi muserd.ram=0000:00:06.0 "
                   "muserd.nvme_ns2=0000:00:07.0 muserd.nvme4k=0000:00:08.0 "
                   "muserd.nvme_intx=0000:00:08.0 muserd.nvmero=0000:00:09.0",
        .devs = {{"timer0", "0x4"},
                 {"timer1", "0x5"},
                 {"ram0", "0x6"},
                 {NVME_ID, "0x7", &nvme_main},
                 {"nvme1", "0x8", &nvme_4k},
                 {"nvme2", "0x9", &nvme_ro}},
        .nr_devs = 6,
    },
    {
        .name = "B (DMA over the socket)",
        .memory = QEMU_GUEST_MEMORY_PRIVATE,
        .cmdline = "muserd.timer=msix,msi muserd.ram=0000:00:06.0",
        .devs = {{"timer2", "0x5"}, {"ram1", "0x6"}},
        .nr_devs = 2,
    },
    {
        /* QEMU maps RAM sections at offsets that are not huge-page aligned. */
        .name = "C (hugetlb memory)",
        .memory = QEMU_GUEST_MEMORY_HUGETLB,
        .cmdline = "muserd.ram=0000:00:06.0",
        .devs = {{"ram2", "0x6"}},
        .nr_devs = 1,
    },
};
#define GUEST_MEM_MIB 256
#define NR_GUESTS     ELEMENTSOF(guests)
#define HOSTILE_ID    "timer3"

/* What the fixture saw, for the tests. */
static char setup_error[1024];
static char qemu_path[512];
static char guest_dir[512];
static struct {
    bool read;
    uint32_t ctrl, vector, fire_count;
    uint64_t deadline, interval;
} timer0_after;
static struct {
    bool read;
    uint32_t scratch, words[16];
} ram_after[NR_GUESTS];
/* What the host read from guest A's namespaces 1 and 2 after QEMU exited. */
static struct {
    char error[256], ns2_error[320]; /* why not, when not: for the nvme tests only */
    uint16_t status;
    uint8_t first[4096], marker[4096], ns2_marker[4096];
} nvme_after;
/* The start of the file-backed namespace's file, read after QEMU exited. */
static struct {
    char error[512];
    uint8_t first[4096];
} nvme_file_after;
static unsigned long hostile_rounds;
static bool hostile_device_ok;
static int daemon_stop_r, daemon_status = -1;
static char *daemon_log_tail;
/* Huge pages we added for guest C, given back at the end. */
static long hugepages_added;

static void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char *fmt, ...)
{
    va_list ap;

    if (setup_error[0])
        return; /* the first error explains the rest */
    va_start(ap, fmt);
    vsnprintf(setup_error, sizeof(setup_error), fmt, ap);
    va_end(ap);
}

/* ---- the fixture's steps ----------------------------------------------------- */

static char *muserctl_probe(const char *socket)
{
    const char *ctl = getenv("MUSERCTL_BIN");
    const char *argv[] = {ctl && *ctl ? ctl : "build/muserctl", "probe", "--json", socket, NULL};
    struct tu_child c;
    char *out = NULL;
    int r = tu_child_start(&c, argv, NULL);

    if (r < 0) {
        set_error("cannot run %s: %s", argv[0], strerror(-r));
        return NULL;
    }
    r = tu_child_wait(&c, 20000);
    if (r != 0)
        set_error("muserctl probe --json %s exited %d: %s", socket, r, tu_child_stderr(&c));
    else
        out = strdup(tu_child_stdout(&c));
    tu_child_free(&c);
    return out;
}

/* How often muserd's log says `id` lost its client. */
static int disconnects(struct test_daemon *d, const char *id)
{
    _cleanup_free_ char *log = NULL;
    char needle[64];

    snprintf(needle, sizeof(needle), "%s: client disconnected", id);
    if (guest_log_read(test_daemon_log_path(d), &log) < 0)
        return 0;
    return (int)guest_log_count(log, needle);
}

/* A device serves one client at a time: QEMU must not come while muserd has
 * not yet seen our last client go. */
static void wait_disconnects(struct test_daemon *d, const char *id, int n)
{
    uint64_t end = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;

    while (disconnects(d, id) < n && test_now_ns() < end)
        usleep(10000);
    if (disconnects(d, id) < n)
        set_error("muserd did not see the client of %s go within %d ms", id, TU_TIMEOUT_MS);
}

static void seed_ram(struct test_daemon *d, const char *id)
{
    uint32_t words[1024];
    struct vfu_client *c;
    int r;

    for (uint32_t i = 0; i < 1024; i++)
        words[i] = HOST_PATTERN + i;
    r = tu_connect(test_daemon_socket(d, id), vfu_client_qemu_caps_json, TU_TIMEOUT_MS, &c);
    if (r < 0) {
        set_error("connecting to %s to seed its RAM: %s", id, strerror(-r));
        return;
    }
    r = vfu_client_region_write(c, RAM_MEM_BAR, HOST_PATTERN_OFF, words, sizeof(words));
    if (r < 0)
        set_error("writing the host pattern into %s: %s", id, strerror(-r));
    vfu_client_free(c);
}

static int qemu_start(struct guest *g, struct test_daemon *d, struct tu_child *c)
{
    /* test_daemon_socket() reuses its buffer: a copy for each device. */
    char sockets[ELEMENTSOF(g->devs)][256];
    struct qemu_vfu_device devs[ELEMENTSOF(g->devs)];
    struct qemu_guest_config cfg = {
        .qemu = qemu_path,
        .image_dir = guest_dir,
        .serial_path = g->serial_path,
        .cmdline = g->cmdline,
        .memory = g->memory,
        .mem_mib = GUEST_MEM_MIB,
        .smp = g->smp,
        .devs = devs,
        .nr_devs = g->nr_devs,
    };

    snprintf(g->serial_path, sizeof(g->serial_path), "%s/serial-%c.log", test_daemon_runtime_dir(d),
             g->name[0]);
    for (size_t i = 0; i < g->nr_devs; i++) {
        snprintf(sockets[i], sizeof(sockets[i]), "%s", test_daemon_socket(d, g->devs[i].id));
        devs[i] = (struct qemu_vfu_device){sockets[i], g->devs[i].addr};
    }
    return qemu_guest_start(&cfg, c);
}

/*
 * The hostile client: until killed, connect to the device and send it
 * garbage, truncated or oversized messages, or nothing, and hang up, as fast
 * as a little pause lets it (the guests need the CPU too). Runs in a child
 * process and counts its rounds in *rounds, memory shared with the parent.
 */
static void hostile_loop(const char *socket, volatile unsigned long *rounds)
{
    uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    uint64_t end = test_now_ns() + BOOT_TIMEOUT_MS * 1000000ull; /* bounded even unkilled */

    signal(SIGPIPE, SIG_IGN);
    while (test_now_ns() < end) {
        uint8_t buf[256];
        int fd = tu_raw_connect(socket, true);

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        for (size_t i = 0; i < sizeof(buf); i++)
            buf[i] = (uint8_t)(x >> (i % 8 * 8)) ^ (uint8_t)i;
        if (fd >= 0) {
            uint32_t *h = (uint32_t *)buf;
            switch (*rounds % 5) {
            case 0: /* hang up at once */
                break;
            case 1: /* noise */
                (void)!send(fd, buf, 1 + x % sizeof(buf), MSG_NOSIGNAL);
                break;
            case 2:                    /* a header announcing 4 GiB of payload, then little */
                h[0] = 1 | (1u << 16); /* msg_id 1, VERSION */
                h[1] = 0xffffffffu;
                h[2] = h[3] = 0;
                (void)!send(fd, buf, 64, MSG_NOSIGNAL);
                break;
            case 3: /* a header shorter than its own size */
                h[0] = 2 | (uint32_t)(x % 40) << 16;
                h[1] = 8;
                (void)!send(fd, buf, 16, MSG_NOSIGNAL);
                break;
            case 4: /* a plausible VERSION with a garbage JSON */
                h[0] = 3 | (1u << 16);
                h[1] = 16 + 4 + 64;
                h[2] = h[3] = 0;
                buf[16] = 0, buf[17] = 0, buf[18] = 0, buf[19] = 0;
                buf[20 + 63] = 0;
                (void)!send(fd, buf, 16 + 4 + 64, MSG_NOSIGNAL);
                break;
            }
            close(fd);
        }
        ++*rounds;
        usleep(2000);
    }
    _exit(0);
}

static void read_back_timer0(struct test_daemon *d)
{
    struct {
        uint64_t off;
        void *val;
        size_t len;
    } regs[] = {
        {TIMER_REG_CTRL, &timer0_after.ctrl, 4},
        {TIMER_REG_VECTOR, &timer0_after.vector, 4},
        {TIMER_REG_FIRE_COUNT, &timer0_after.fire_count, 4},
        {TIMER_REG_DEADLINE, &timer0_after.deadline, 8},
        {TIMER_REG_INTERVAL, &timer0_after.interval, 8},
    };
    struct vfu_client *c;
    int r = tu_connect(test_daemon_socket(d, "timer0"), vfu_client_qemu_caps_json, 10000, &c);

    if (r < 0) {
        set_error("connecting to timer0 after QEMU exited: %s", strerror(-r));
        return;
    }
    for (size_t i = 0; i < ELEMENTSOF(regs) && !r; i++)
        r = vfu_client_region_read(c, TIMER_REGS_BAR, regs[i].off, regs[i].val, regs[i].len);
    if (r < 0)
        set_error("reading timer0's registers after QEMU exited: %s", strerror(-r));
    else
        timer0_after.read = true;
    vfu_client_free(c);
}

static void read_back_ram(struct test_daemon *d, size_t gi, const char *id)
{
    struct vfu_client *c;
    int r = tu_connect(test_daemon_socket(d, id), vfu_client_qemu_caps_json, 10000, &c);

    if (r < 0) {
        set_error("connecting to %s after QEMU exited: %s", id, strerror(-r));
        return;
    }
    r = vfu_client_region_read(c, RAM_REGS_BAR, RAM_REG_SCRATCH, &ram_after[gi].scratch, 4);
    if (!r)
        r = vfu_client_region_read(c, RAM_MEM_BAR, GUEST_PATTERN_OFF, ram_after[gi].words,
                                   sizeof(ram_after[gi].words));
    if (r < 0)
        set_error("reading %s after QEMU exited: %s", id, strerror(-r));
    else
        ram_after[gi].read = true;
    vfu_client_free(c);
}

/* Read len bytes (whole blocks of block_size, at most 4096 bytes: one
 * page) at byte offset off of namespace nsid into buf. */
static int nvme_read(struct nvme_drv *drv, uint32_t nsid, uint32_t block_size, uint64_t off,
                     void *buf, uint32_t len, uint16_t *status)
{
    struct nvme_sqe cmd = {.opcode = NVME_CMD_READ,
                           .nsid = nsid,
                           .prp1 = nvme_drv_iova(NVME_DRV_DATA),
                           .cdw10 = (uint32_t)(off / block_size),
                           .cdw11 = (uint32_t)(off / block_size >> 32),
                           .cdw12 = len / block_size - 1};
    int r = nvme_drv_cmd(drv, 1, &cmd, status, NULL);

    if (r == 0 && *status == 0)
        memcpy(buf, nvme_drv_ptr(drv, NVME_DRV_DATA), len);
    return r;
}

/* The namespaces outlive QEMU: the host's own driver reads what the guest
 * left there (the ext2 superblock, the marker blocks of namespaces 1 and 2). */
static void read_back_nvme(struct test_daemon *d)
{
    struct nvme_drv drv = {.mem_fd = -1};
    struct vfu_client *c;
    uint16_t status = 0;
    int r = tu_connect(test_daemon_socket(d, NVME_ID), vfu_client_qemu_caps_json, 10000, &c);

    if (r < 0) {
        snprintf(nvme_after.error, sizeof(nvme_after.error), "connecting: %s", strerror(-r));
        snprintf(nvme_after.ns2_error, sizeof(nvme_after.ns2_error), "connecting: %s",
                 strerror(-r));
        return;
    }
    r = nvme_drv_attach(&drv, c, true, 2);
    if (!r)
        r = nvme_drv_enable(&drv);
    if (!r)
        r = nvme_drv_create_io_queue(&drv, 1, &status);
    if (!r && !status)
        r = nvme_read(&drv, 1, nvme_main.block_size, 0, nvme_after.first, sizeof(nvme_after.first),
                      &status);
    if (!r && !status)
        r = nvme_read(&drv, 1, nvme_main.block_size, NVME_MARKER_OFF, nvme_after.marker,
                      sizeof(nvme_after.marker), &status);
    if (r < 0 || status)
        snprintf(nvme_after.error, sizeof(nvme_after.error), "%s, NVMe status %#x", strerror(-r),
                 status);
    nvme_after.status = status;
    /* Namespace 2 on its own: its failure is its test's alone. */
    if (r < 0 || status)
        snprintf(nvme_after.ns2_error, sizeof(nvme_after.ns2_error), "not read: %s",
                 nvme_after.error);
    else if ((r = nvme_read(&drv, 2, nvme_main.ns2_block_size, NVME_NS2_MARKER_OFF,
                            nvme_after.ns2_marker, sizeof(nvme_after.ns2_marker), &status)) < 0 ||
             status)
        snprintf(nvme_after.ns2_error, sizeof(nvme_after.ns2_error),
                 "reading nsid 2: %s, NVMe status %#x", strerror(-r), status);
    nvme_drv_free(&drv);
    vfu_client_free(c);
}

/* The device the hostile client hammered still serves a well-behaved one. */
static void check_hostile_device(struct test_daemon *d)
{
    struct vfu_client *c;
    uint32_t id = 0;
    int r = tu_connect(test_daemon_socket(d, HOSTILE_ID), vfu_client_qemu_caps_json, 10000, &c);

    if (r < 0)
        return;
    hostile_device_ok = vfu_client_region_read(c, TIMER_REGS_BAR, TIMER_REG_ID, &id, 4) == 0 &&
                        id == TIMER_ID_MAGIC;
    vfu_client_free(c);
}

static bool is_ram(const char *id)
{
    return !strncmp(id, "ram", 3);
}

/* The ram device of g (each guest has one). */
static const char *ram_of(const struct guest *g)
{
    for (size_t i = 0; i < g->nr_devs; i++)
        if (is_ram(g->devs[i].id))
            return g->devs[i].id;
    return NULL;
}

/* The backing file of nvme device id, in the test's directory. */
static void backing_path(struct test_daemon *d, const char *id, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s.img", test_daemon_runtime_dir(d), id);
}

static void add_nvme(struct test_daemon *d, const char *id, const struct guest_nvme *n)
{
    char config[768], ns[512], path[384];

    snprintf(ns, sizeof(ns), "\"size\":%u", n->size);
    if (n->file_backed) {
        backing_path(d, id, path, sizeof(path));
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, n->size) < 0)
            set_error("cannot make the backing file %s: %m", path);
        if (fd >= 0)
            close(fd);
        snprintf(ns, sizeof(ns), "\"backing\":\"%s\"", path);
    }
    if (n->ns2_size) {
        size_t len = strlen(ns);
        snprintf(ns + len, sizeof(ns) - len, ",\"ns2_size\":%u,\"ns2_block_size\":%u", n->ns2_size,
                 n->ns2_block_size);
    }
    snprintf(config, sizeof(config),
             "{%s,\"block_size\":%u,\"read_only\":%s,\"queues\":%u,\"serial\":\"%s\","
             "\"model\":\"%s\"}",
             ns, n->block_size, n->read_only ? "true" : "false", NVME_QUEUES, n->serial,
             NVME_MODEL);
    test_daemon_add_device(d, "nvme", id, config);
}

/* What the guest left in a file-backed namespace: the file itself. */
static void read_back_file(struct test_daemon *d)
{
    char path[384];
    const struct guest *a = &guests[0];

    for (size_t i = 0; i < a->nr_devs; i++) {
        if (!a->devs[i].nvme || !a->devs[i].nvme->file_backed)
            continue;
        backing_path(d, a->devs[i].id, path, sizeof(path));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n =
            fd < 0 ? -1 : pread(fd, nvme_file_after.first, sizeof(nvme_file_after.first), 0);
        if (n != (ssize_t)sizeof(nvme_file_after.first))
            snprintf(nvme_file_after.error, sizeof(nvme_file_after.error),
                     "reading %s gave %zd bytes: %m", path, n);
        if (fd >= 0)
            close(fd);
    }
}

/* The guests' devices and the hostile client's, up and serving. */
static int start_daemon(struct test_daemon *d)
{
    for (size_t gi = 0; gi < NR_GUESTS; gi++)
        for (size_t i = 0; i < guests[gi].nr_devs; i++) {
            const char *id = guests[gi].devs[i].id;
            if (guests[gi].devs[i].nvme)
                add_nvme(d, id, guests[gi].devs[i].nvme);
            else
                test_daemon_add_device(d, is_ram(id) ? "ram" : "timer", id,
                                       is_ram(id) ? "{\"size\":1048576}" : NULL);
        }
    test_daemon_add_device(d, "timer", HOSTILE_ID, NULL);
    if (test_daemon_start(d) < 0 || test_daemon_wait_ready(d, 10000) < 0) {
        test_daemon_dump_log(d, 4096);
        set_error("muserd did not start");
        return -1;
    }
    return 0;
}

/* Probe and seed before QEMU connects: one client at a time. */
static void probe_and_seed(struct test_daemon *d)
{
    for (size_t gi = 0; gi < NR_GUESTS; gi++)
        for (size_t i = 0; i < guests[gi].nr_devs; i++) {
            struct guest_dev *gd = &guests[gi].devs[i];
            gd->probe_json = muserctl_probe(test_daemon_socket(d, gd->id));
            if (is_ram(gd->id))
                seed_ram(d, gd->id);
            wait_disconnects(d, gd->id, is_ram(gd->id) ? 2 : 1);
        }
}

/* Whether QEMU of g started; guest C skips when it has no huge pages. */
static bool start_guest(struct guest *g, struct test_daemon *d, struct tu_child *qemu)
{
    if (g->memory == QEMU_GUEST_MEMORY_HUGETLB &&
        guest_hugepages_reserve(GUEST_MEM_MIB / 2, &hugepages_added, &g->skipped) < 0) {
        printf("test-guest: SKIP guest %s: %s\n", g->name, g->skipped);
        fflush(stdout);
        return false;
    }
    int r = qemu_start(g, d, qemu);
    if (r < 0)
        set_error("cannot start %s: %s", qemu_path, strerror(-r));
    return r == 0;
}

/* Wait for QEMU of g to exit, keep what it and the guest said. */
static void collect_guest(struct guest *g, struct tu_child *qemu)
{
    g->qemu_status = qemu_guest_wait(qemu, BOOT_TIMEOUT_MS, &g->qemu_output);
    (void)guest_log_read(g->serial_path, &g->serial);
    /* MUSERD_GUEST_VERBOSE=1: what each guest reported, for a human. */
    if (getenv("MUSERD_GUEST_VERBOSE")) {
        char *lines = guest_log_grep(g->serial, "MUSERD-", 1 << 20);
        fprintf(stderr, "test-guest: guest %s (QEMU status %d):\n%s", g->name, g->qemu_status,
                lines);
        free(lines);
    }
}

static void boot_guests(struct test_daemon *d)
{
    struct tu_child qemu[NR_GUESTS];
    bool started[NR_GUESTS];

    for (size_t gi = 0; gi < NR_GUESTS; gi++)
        started[gi] = start_guest(&guests[gi], d, &qemu[gi]);
    /* All run meanwhile: each later wait takes what is left. */
    for (size_t gi = 0; gi < NR_GUESTS; gi++)
        if (started[gi])
            collect_guest(&guests[gi], &qemu[gi]);
}

static void stop_hostile(pid_t hostile, volatile unsigned long *rounds)
{
    kill(hostile, SIGKILL);
    waitpid(hostile, NULL, 0);
    hostile_rounds = *rounds;
    if (getenv("MUSERD_GUEST_VERBOSE"))
        fprintf(stderr, "test-guest: the hostile client ran %lu rounds on %s\n", hostile_rounds,
                HOSTILE_ID);
}

/* What the guests left in the devices, once every QEMU is gone. */
static void read_back(struct test_daemon *d)
{
    read_back_timer0(d);
    for (size_t gi = 0; gi < NR_GUESTS; gi++)
        if (!guests[gi].skipped)
            read_back_ram(d, gi, ram_of(&guests[gi]));
    read_back_nvme(d);
    read_back_file(d);
    check_hostile_device(d);
}

/* The guests boot while the hostile client runs; read back after both. */
static void run_guests(struct test_daemon *d)
{
    volatile unsigned long *rounds;
    pid_t hostile;

    probe_and_seed(d);
    if (setup_error[0])
        return;
    rounds = mmap(NULL, sizeof(*rounds), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (rounds == MAP_FAILED) {
        set_error("mmap: %m");
        return;
    }
    hostile = fork();
    if (hostile == 0)
        hostile_loop(test_daemon_socket(d, HOSTILE_ID), rounds);
    boot_guests(d);
    if (hostile > 0)
        stop_hostile(hostile, rounds);
    munmap((void *)rounds, sizeof(*rounds));
    if (!setup_error[0])
        read_back(d);
}

static void boot_all(void)
{
    struct test_daemon *d;

    if (test_daemon_new(&d) < 0) {
        set_error("cannot set up muserd");
        return;
    }
    if (start_daemon(d) == 0)
        run_guests(d);
    guest_hugepages_release(hugepages_added);
    daemon_stop_r = test_daemon_stop(d, 15000, &daemon_status);
    (void)guest_log_read(test_daemon_log_path(d), &daemon_log_tail);
    test_daemon_free(d);
}

static void teardown_all(void)
{
}

/* ---- reading the guests' reports --------------------------------------------- */

static void assert_fixture(void)
{
    ck_assert_msg(!setup_error[0], "setting up the guests failed: %s", setup_error);
}

static const char *serial(const struct guest *g)
{
    return g->serial ? g->serial : "";
}

/* The guest booted and /init ran to its end. */
static void assert_guest_done(const struct guest *g)
{
    assert_fixture();
    ck_assert_msg(strstr(serial(g), "MUSERD-TEST DONE"),
                  "guest %s did not finish its tests (QEMU status %d); QEMU said:\n%s\n"
                  "serial log ends:\n%s",
                  g->name, g->qemu_status,
                  g->qemu_output ? guest_log_tail(g->qemu_output, 2000) : "",
                  guest_log_tail(serial(g), 3000));
}

/* The guest printed `MUSERD-TEST PASS check`. */
static void assert_guest_pass(const struct guest *g, const char *check)
{
    char pass[128], name[128];

    assert_guest_done(g);
    snprintf(pass, sizeof(pass), "MUSERD-TEST PASS %s\n", check);
    if (strstr(serial(g), pass))
        return;
    snprintf(name, sizeof(name), " %s", check);
    char *lines = guest_log_grep(serial(g), name, 4000);
    char *klog = guest_log_grep(serial(g), "MUSERD-KLOG", 2000);
    ck_abort_msg("guest %s: check %s did not pass; the guest printed:\n%s%s", g->name, check,
                 lines[0] ? lines : "    (nothing about it)\n", klog);
}

static unsigned long long guest_value_checked(const struct guest *g, const char *prefix,
                                              const char *key)
{
    unsigned long long v = 0;
    char *lines = guest_log_grep(serial(g), "MUSERD-VAL", 2000);
    ck_assert_msg(guest_log_value(serial(g), prefix, key, &v) == 0,
                  "guest %s printed no %s= on \"%s\":\n%s", g->name, key, prefix, lines);
    free(lines);
    return v;
}

/* ---- enumeration -------------------------------------------------------------- */

static json_object *jget(json_object *o, const char *key)
{
    json_object *v = NULL;
    ck_assert_msg(json_object_object_get_ex(o, key, &v), "muserctl probe: no \"%s\" in %s", key,
                  json_object_to_json_string(o));
    return v;
}

static int64_t jint(json_object *o, const char *key)
{
    return json_object_get_int64(jget(o, key));
}

/* `key=VALUE` of the guest's line that starts with prefix and names bdf. */
static void check_ids(const struct guest *g, const char *bdf, json_object *pci)
{
    char prefix[64];
    struct {
        const char *guest_key, *probe_key;
    } ids[] = {{"vendor", "vendor_id"},
               {"device", "device_id"},
               {"subvendor", "subsystem_vendor_id"},
               {"subdevice", "subsystem_id"},
               {"revision", "revision"}};

    snprintf(prefix, sizeof(prefix), "MUSERD-PCI %s ", bdf);
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        ck_assert_msg(guest_value_checked(g, prefix, ids[i].guest_key) ==
                          (unsigned long long)jint(pci, ids[i].probe_key),
                      "guest %s, %s: %s is %#llx, muserctl probe says %#llx", g->name, bdf,
                      ids[i].guest_key, guest_value_checked(g, prefix, ids[i].guest_key),
                      (unsigned long long)jint(pci, ids[i].probe_key));
    /* sysfs "class" is the 24-bit class code. */
    ck_assert_msg(
        guest_value_checked(g, prefix, "class") == (unsigned long long)jint(pci, "class_code"),
        "guest %s, %s: class %#llx, muserctl probe says %#llx", g->name, bdf,
        guest_value_checked(g, prefix, "class"), (unsigned long long)jint(pci, "class_code"));
}

#define IORESOURCE_PREFETCH 0x2000ull
#define IORESOURCE_MEM_64   0x100000ull

static void check_bars(const struct guest *g, const char *bdf, json_object *pci)
{
    json_object *bars = jget(pci, "bars");
    char prefix[64], *lines;
    size_t guest_bars = 0;

    snprintf(prefix, sizeof(prefix), "MUSERD-PCI-BAR %s ", bdf);
    lines = guest_log_grep(serial(g), prefix, 2000);
    guest_bars = guest_log_count(serial(g), prefix);
    ck_assert_msg(guest_bars == json_object_array_length(bars),
                  "guest %s, %s: the guest sees %zu BARs, muserctl probe %zu:\n%s%s", g->name, bdf,
                  guest_bars, json_object_array_length(bars), lines,
                  json_object_to_json_string(bars));
    for (size_t i = 0; i < json_object_array_length(bars); i++) {
        json_object *b = json_object_array_get_idx(bars, i);
        char bar_prefix[80];
        unsigned long long size = 0, flags = 0;

        snprintf(bar_prefix, sizeof(bar_prefix), "%s%lld ", prefix, (long long)jint(b, "index"));
        ck_assert_msg(guest_log_value(serial(g), bar_prefix, "size", &size) == 0 &&
                          guest_log_value(serial(g), bar_prefix, "flags", &flags) == 0,
                      "guest %s, %s: no BAR %lld in the guest:\n%s", g->name, bdf,
                      (long long)jint(b, "index"), lines);
        ck_assert_msg(size == (unsigned long long)jint(b, "size"),
                      "guest %s, %s: BAR %lld is %llu bytes in the guest, %lld in muserctl probe",
                      g->name, bdf, (long long)jint(b, "index"), size, (long long)jint(b, "size"));
        ck_assert_msg(
            !!(flags & IORESOURCE_MEM_64) == json_object_get_boolean(jget(b, "64bit")) &&
                !!(flags & IORESOURCE_PREFETCH) == json_object_get_boolean(jget(b, "prefetchable")),
            "guest %s, %s: BAR %lld flags %#llx disagree with muserctl probe's %s", g->name, bdf,
            (long long)jint(b, "index"), flags, json_object_to_json_string(b));
    }
    free(lines);
}

static void check_caps(const struct guest *g, const char *bdf, json_object *pci)
{
    json_object *caps = jget(pci, "capabilities");
    char prefix[64], want[1024] = "", got[1024] = "";
    size_t wl = 0, gl = 0;

    for (size_t i = 0; i < json_object_array_length(caps); i++) {
        json_object *c = json_object_array_get_idx(caps, i);
        wl += snprintf(want + wl, sizeof(want) - wl, "offset=%lld id=%lld;",
                       (long long)jint(c, "offset"), (long long)jint(c, "id"));
        if (wl >= sizeof(want))
            break;
    }
    snprintf(prefix, sizeof(prefix), "MUSERD-PCI-CAP %s ", bdf);
    for (const char *p = serial(g); (p = strstr(p, prefix)) && gl < sizeof(got); p++) {
        const char *eol = strchr(p, '\n');
        int n = eol ? (int)(eol - p) - (int)strlen(prefix) : (int)strlen(p + strlen(prefix));
        gl += snprintf(got + gl, sizeof(got) - gl, "%.*s;", n, p + strlen(prefix));
    }
    ck_assert_msg(!strcmp(want, got),
                  "guest %s, %s: capability chain differs\n  guest:          %s\n"
                  "  muserctl probe: %s",
                  g->name, bdf, got, want);
}

START_TEST(test_enumeration)
{
    for (size_t gi = 0; gi < NR_GUESTS; gi++) {
        const struct guest *g = &guests[gi];
        if (g->skipped)
            continue;
        assert_guest_done(g);
        for (size_t i = 0; i < g->nr_devs; i++) {
            const struct guest_dev *gd = &g->devs[i];
            char bdf[32];
            json_object *probe = json_tokener_parse(gd->probe_json ? gd->probe_json : "");

            ck_assert_msg(probe, "muserctl probe --json of %s is not JSON", gd->id);
            snprintf(bdf, sizeof(bdf), "0000:00:%02lx.0", strtoul(gd->addr, NULL, 0));
            json_object *pci = jget(probe, "pci");
            check_ids(g, bdf, pci);
            check_bars(g, bdf, pci);
            check_caps(g, bdf, pci);
            json_object_put(probe);
        }
    }
}
END_TEST

/* ---- registers ---------------------------------------------------------------- */

START_TEST(test_registers_guest_reads)
{
    const struct guest *a = &guests[0];
    const char *vals = "MUSERD-VAL timer-regs 0000:00:04.0 ";

    assert_guest_done(a);
    ck_assert_uint_eq(guest_value_checked(a, vals, "id"), TIMER_ID_MAGIC);
    ck_assert_uint_eq(guest_value_checked(a, vals, "version"), TIMER_VERSION);
    ck_assert_uint_eq(guest_value_checked(a, vals, "deadline_lo"), (uint32_t)GUEST_DEADLINE);
    ck_assert_uint_eq(guest_value_checked(a, vals, "deadline_hi"), GUEST_DEADLINE >> 32);
    ck_assert_uint_eq(guest_value_checked(a, vals, "vector"), GUEST_VECTOR);
    for (size_t gi = 0; gi < NR_GUESTS; gi++) {
        const struct guest *g = &guests[gi];
        const char *host = "MUSERD-VAL ram-host-pattern 0000:00:06.0 ";
        if (g->skipped)
            continue;
        assert_guest_done(g);
        assert_guest_pass(g, "ram-regs");
        /* Written by the host before boot, read by the guest through the BAR. */
        ck_assert_msg(
            guest_value_checked(g, host, "w0") == HOST_PATTERN &&
                guest_value_checked(g, host, "w1") == HOST_PATTERN + 1 &&
                guest_value_checked(g, host, "w1023") == HOST_PATTERN + 1023,
            "guest %s read %#llx %#llx %#llx from the host's RAM pattern, want %#x %#x %#x",
            g->name, guest_value_checked(g, host, "w0"), guest_value_checked(g, host, "w1"),
            guest_value_checked(g, host, "w1023"), HOST_PATTERN, HOST_PATTERN + 1,
            HOST_PATTERN + 1023);
    }
}
END_TEST

START_TEST(test_registers_host_reads_back)
{
    const struct guest *a = &guests[0];

    assert_guest_done(a);
    ck_assert_msg(timer0_after.read, "timer0 was not read back");
    ck_assert_msg(timer0_after.deadline == GUEST_DEADLINE,
                  "timer0 DEADLINE is %#llx after the guest wrote %#llx",
                  (unsigned long long)timer0_after.deadline, GUEST_DEADLINE);
    ck_assert_msg(timer0_after.interval == GUEST_INTERVAL,
                  "timer0 INTERVAL is %#llx after the guest wrote %#llx",
                  (unsigned long long)timer0_after.interval, GUEST_INTERVAL);
    ck_assert_uint_eq(timer0_after.vector, GUEST_VECTOR);
    ck_assert_uint_eq(timer0_after.ctrl, 0);
    ck_assert_uint_eq(timer0_after.fire_count,
                      guest_value_checked(a, "MUSERD-VAL timer-regs 0000:00:04.0 ", "fire_count"));
    for (size_t gi = 0; gi < NR_GUESTS; gi++) {
        if (guests[gi].skipped)
            continue;
        assert_guest_done(&guests[gi]);
        ck_assert_msg(ram_after[gi].read, "guest %s's ram device was not read back",
                      guests[gi].name);
        ck_assert_msg(ram_after[gi].scratch == GUEST_SCRATCH,
                      "guest %s's ram SCRATCH is %#x after the guest wrote %#x", guests[gi].name,
                      ram_after[gi].scratch, GUEST_SCRATCH);
        for (uint32_t i = 0; i < 16; i++)
            ck_assert_msg(ram_after[gi].words[i] == GUEST_PATTERN + i,
                          "guest %s's RAM word %u at %#x is %#x, the guest wrote %#x",
                          guests[gi].name, i, GUEST_PATTERN_OFF + 4 * i, ram_after[gi].words[i],
                          GUEST_PATTERN + i);
    }
}
END_TEST

/* ---- interrupts --------------------------------------------------------------- */

/* Guests C has only a ram device: no timer checks there. */
static bool has_timer(const struct guest *g)
{
    return !g->skipped && !strncmp(g->devs[0].id, "timer", 5);
}

START_TEST(test_intx)
{
    assert_guest_pass(&guests[0], "uio-intx");
    assert_guest_pass(&guests[0], "intx-level");
}
END_TEST

START_TEST(test_msi)
{
    for (size_t gi = 0; gi < NR_GUESTS; gi++) {
        if (!has_timer(&guests[gi]))
            continue;
        assert_guest_pass(&guests[gi], "timer-msi-deliver");
        assert_guest_pass(&guests[gi], "timer-msi-mask");
    }
}
END_TEST

START_TEST(test_msix)
{
    for (size_t gi = 0; gi < NR_GUESTS; gi++) {
        if (guests[gi].skipped)
            continue;
        if (has_timer(&guests[gi])) {
            assert_guest_pass(&guests[gi], "timer-msix-deliver");
            assert_guest_pass(&guests[gi], "timer-msix-mask");
        }
        assert_guest_pass(&guests[gi], "ram-dma-irq");
    }
}
END_TEST

/* ---- DMA ---------------------------------------------------------------------- */

static void assert_dma(const struct guest *g)
{
    const char *checks[] = {"ram-bar",      "ram-dma-1",     "ram-dma-4096",
                            "ram-dma-4099", "ram-dma-69633", "ram-dma-errors"};
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
        assert_guest_pass(g, checks[i]);
}

START_TEST(test_dma_shared_memory)
{
    assert_dma(&guests[0]);
}
END_TEST

START_TEST(test_dma_over_socket)
{
    assert_dma(&guests[1]);
}
END_TEST

START_TEST(test_dma_hugetlb_memory)
{
    const struct guest *g = &guests[2];
    if (g->skipped) {
        printf("test-guest: test_dma_hugetlb_memory SKIPPED: %s\n", g->skipped);
        return;
    }
    assert_dma(g);
    assert_guest_pass(g, "ram-regs");
}
END_TEST

/* ---- the kernel's nvme driver on the nvme device -------------------------------- */

/* Guest A printed `MUSERD-NVME-<tag>step ok ...` for nvme device n; the
 * line's values from prefix. */
static const char *assert_nvme_step(const struct guest_nvme *n, const char *step, char *prefix,
                                    size_t size)
{
    const struct guest *a = &guests[0];
    char fail[64];

    assert_guest_done(a);
    snprintf(prefix, size, "MUSERD-NVME-%s%s ok ", n->tag, step);
    snprintf(fail, sizeof(fail), "MUSERD-NVME-%s%s ", n->tag, step);
    const char *line = strstr(serial(a), prefix);
    if (!line) {
        char *lines = guest_log_grep(serial(a), fail, 2000);
        char *klog = guest_log_grep(serial(a), "MUSERD-NVME-KLOG", 6000);
        ck_abort_msg("guest %s: nvme step %s%s did not pass; the guest printed:\n%s"
                     "the kernel said about nvme:\n%s",
                     a->name, n->tag, step, lines[0] ? lines : "    (nothing about it)\n", klog);
    }
    return line;
}

static unsigned long long nvme_value(const struct guest_nvme *n, const char *step, const char *key)
{
    char prefix[64];
    unsigned long long v = 0;
    const char *line = assert_nvme_step(n, step, prefix, sizeof(prefix));

    ck_assert_msg(guest_log_value(serial(&guests[0]), prefix, key, &v) == 0,
                  "guest A's MUSERD-NVME-%s%s line has no %s=: %.200s", n->tag, step, key, line);
    return v;
}

/* The word after ` key=` on the line of step, into buf. */
static const char *nvme_word(const struct guest_nvme *n, const char *step, const char *key,
                             char *buf, size_t size)
{
    char prefix[64], k[64];
    const char *line = assert_nvme_step(n, step, prefix, sizeof(prefix));
    size_t len = strcspn(line, "\n");

    snprintf(k, sizeof(k), " %s=", key);
    const char *v = memmem(line, len, k, strlen(k));
    ck_assert_msg(v, "guest A's MUSERD-NVME-%s%s line has no%s: %.*s", n->tag, step, k, (int)len,
                  line);
    v += strlen(k);
    snprintf(buf, size, "%.*s", (int)strcspn(v, " \n"), v);
    return buf;
}

static void assert_nvme_word(const struct guest_nvme *n, const char *step, const char *key,
                             const char *want)
{
    char got[128];

    ck_assert_msg(!strcmp(nvme_word(n, step, key, got, sizeof(got)), want),
                  "guest A's nvme driver on %s: %s%s says %s=%s, want %s", n->serial, n->tag, step,
                  key, got, want);
}

/* The guest's driver found n at bdf, live, with the namespace configured. */
static void assert_nvme_probed(const struct guest_nvme *n, const char *bdf)
{
    assert_nvme_word(n, "PROBE", "bdf", bdf);
    assert_nvme_word(n, "PROBE", "model", NVME_MODEL);
    assert_nvme_word(n, "PROBE", "serial", n->serial);
    assert_nvme_word(n, "PROBE", "state", "live");
    ck_assert_uint_eq(nvme_value(n, "PROBE", "size"), n->size);
}

START_TEST(test_nvme_driver_binds)
{
    assert_nvme_probed(&nvme_main, "0000:00:07.0");
    ck_assert_uint_eq(nvme_value(&nvme_main, "PROBE", "lbs"), 512);
    /* The driver asks for a queue per CPU; the device offers NVME_QUEUES. */
    unsigned long long q = nvme_value(&nvme_main, "PROBE", "ioqueues"),
                       cpus = nvme_value(&nvme_main, "PROBE", "cpus");
    ck_assert_uint_eq(cpus, guests[0].smp);
    ck_assert_msg(q >= 1 && q == (cpus < NVME_QUEUES ? cpus : NVME_QUEUES),
                  "guest A's nvme driver uses %llu I/O queues with %llu CPUs on a device of %u", q,
                  cpus, NVME_QUEUES);
    ck_assert_msg(nvme_value(&nvme_main, "PROBE", "discard_max") > 0,
                  "guest A's nvme driver sees no discard support (ONCS DSM)");
    /* Its I/O queue interrupts on MSI-X (the INTx device's say IO-APIC). */
    char chip[64];
    ck_assert_msg(strstr(nvme_word(&nvme_main, "PROBE", "irqchip", chip, sizeof(chip)), "MSI"),
                  "guest A's nvme driver takes %s's I/O interrupts on \"%s\", not MSI-X",
                  nvme_main.serial, chip);
}
END_TEST

/* mke2fs, files written, unmounted, caches dropped, mounted, checksums. */
static void assert_nvme_round_trip(const struct guest_nvme *n)
{
    ck_assert_uint_ge(nvme_value(n, "MKFS", "kib"), n->size / 1024 * 9 / 10);
    unsigned long long files = nvme_value(n, "WRITE", "files");
    ck_assert_uint_ge(files, 7);
    /* 4 MiB of random data and the rest reached the device ... */
    ck_assert_uint_ge(nvme_value(n, "WRITE", "write_sectors"), 4u << 20 >> 9);
    /* ... and came back from it after unmount and dropped caches. */
    ck_assert_uint_eq(nvme_value(n, "REMOUNT", "verified"), files);
    ck_assert_uint_ge(nvme_value(n, "REMOUNT", "read_sectors"), 4u << 20 >> 9);
}

START_TEST(test_nvme_filesystem_round_trip)
{
    assert_nvme_round_trip(&nvme_main);
}
END_TEST

/* A namespace of 4096-byte blocks: the guest's block layer takes that size
 * from Identify Namespace (LBAF0 LBADS 12) and a filesystem works on it. */
START_TEST(test_nvme_4k_blocks)
{
    assert_nvme_probed(&nvme_4k, "0000:00:08.0");
    ck_assert_uint_eq(nvme_value(&nvme_4k, "PROBE", "lbs"), nvme_4k.block_size);
    assert_nvme_round_trip(&nvme_4k);
}
END_TEST

/* The 4K namespace is a file: after QEMU exited, the file holds the
 * guest's ext2 superblock (at 1024: its magic at 56, and 2 at 24 for
 * 1024 << 2 = 4096-byte blocks). */
START_TEST(test_nvme_4k_file_backed)
{
    const uint8_t *sb = nvme_file_after.first + 1024;
    char prefix[64];

    assert_nvme_step(&nvme_4k, "REMOUNT", prefix, sizeof(prefix));
    ck_assert_msg(!nvme_file_after.error[0], "%s", nvme_file_after.error);
    ck_assert_msg(
        sb[56] == 0x53 && sb[57] == 0xef,
        "no ext2 superblock in the backing file after the guest's mke2fs (magic %02x%02x)", sb[57],
        sb[56]);
    ck_assert_uint_eq(sb[24] | sb[25] << 8 | sb[26] << 16 | (uint32_t)sb[27] << 24, 2);
}
END_TEST

/* A read-only namespace (NSATTR write protected): the guest's kernel makes
 * the disk read-only and refuses a write; all of it reads, as zeros. */
START_TEST(test_nvme_read_only)
{
    assert_nvme_probed(&nvme_ro, "0000:00:09.0");
    ck_assert_uint_eq(nvme_value(&nvme_ro, "READ-ONLY", "ro"), 1);
    assert_nvme_word(&nvme_ro, "READ-ONLY", "write", "refused");
    ck_assert_uint_eq(nvme_value(&nvme_ro, "READ-ONLY", "read_bytes"), nvme_ro.size);
    ck_assert_uint_ge(nvme_value(&nvme_ro, "READ-ONLY", "read_sectors"), nvme_ro.size / 512);
    ck_assert_uint_eq(nvme_value(&nvme_ro, "READ-ONLY", "nonzero"), 0);
}
END_TEST

/* The guest kept MSI and MSI-X from the 4K device (msi_bus 0) before its
 * driver bound: the driver runs it on the INTx pin, through the IO-APIC,
 * and its filesystem round trip completed through that line. No bound on
 * interrupts per request yet: muserd re-raises INTx at every unmask after
 * a raise that came while masked, even when the device has lowered the
 * line since, and under TCG QEMU sees the guest's EOI only at its next BAR
 * access, so the guest takes thousands of interrupts nobody handles. */
START_TEST(test_nvme_intx)
{
    assert_nvme_word(&nvme_4k, "PROBE", "irqchip", "IO-APIC");
    assert_nvme_word(&nvme_4k, "INTX", "chip", "IO-APIC");
    ck_assert_uint_eq(nvme_value(&nvme_4k, "INTX", "msi_irqs"), 0);
    unsigned long long irqs = nvme_value(&nvme_4k, "INTX", "irqs");
    unsigned long long ios = nvme_value(&nvme_4k, "INTX", "ios");
    printf("test-guest: the INTx nvme device: %llu interrupts for %llu requests\n", irqs, ios);
    ck_assert_msg(ios >= 16 && irqs >= 16,
                  "the INTx device completed %llu requests with %llu interrupts on its line", ios,
                  irqs);
    /* A level lowered before the unmask must not fire again: a line that
     * did would take thousands of unhandled interrupts (QEMU's IOAPIC
     * storm limit cuts bursts at 10,000). */
    ck_assert_msg(irqs <= 8 * ios + 64,
                  "an interrupt storm: %llu interrupts on the INTx line for %llu requests", irqs,
                  ios);
    assert_nvme_round_trip(&nvme_4k);
}
END_TEST

/* The guest's own dd through its nvme driver: done, and its rate reported
 * (TCG bounds it; no goal). */
START_TEST(test_nvme_guest_dd)
{
    unsigned long long w = nvme_value(&nvme_main, "THROUGHPUT", "write_kib_s");
    unsigned long long r = nvme_value(&nvme_main, "THROUGHPUT", "read_kib_s");
    printf("test-guest: the guest's dd on its nvme disk (O_DIRECT, 1 MiB blocks, TCG): "
           "write %.1f MiB/s, read %.1f MiB/s\n",
           w / 1024.0, r / 1024.0);
    ck_assert_msg(w > 0 && r > 0, "the guest's dd moved nothing");
}
END_TEST

START_TEST(test_nvme_discard)
{
    ck_assert_msg(nvme_value(&nvme_main, "DISCARD", "trimmed") > 0, "fstrim trimmed nothing");
    ck_assert_msg(nvme_value(&nvme_main, "DISCARD", "discards") > 0,
                  "fstrim sent the device no discard (Dataset Management)");
    ck_assert_uint_eq(nvme_value(&nvme_main, "RAW-DISCARD", "length"), 1048576);
    ck_assert_msg(nvme_value(&nvme_main, "RAW-DISCARD", "discards") > 0,
                  "blkdiscard sent no discard");
}
END_TEST

START_TEST(test_nvme_reset_under_io)
{
    /* The dd was mid-file when the controller reset, and finished after. */
    ck_assert_uint_eq(nvme_value(&nvme_main, "RESET", "dd_running"), 1);
    ck_assert_uint_ge(nvme_value(&nvme_main, "RESET", "at"), 4u << 20);
    assert_nvme_word(&nvme_main, "RESET", "state", "live");
    ck_assert_uint_eq(nvme_value(&nvme_main, "RESET", "ioqueues"),
                      nvme_value(&nvme_main, "PROBE", "ioqueues"));
    /* Every file, the one written across the reset too, back from the device. */
    ck_assert_uint_eq(nvme_value(&nvme_main, "VERIFY", "verified"),
                      nvme_value(&nvme_main, "WRITE", "files"));
}
END_TEST

/* The device offers Doorbell Buffer Config (OACS bit 8) and Linux's nvme
 * driver takes it: the plugin logs each configuration, once at probe and
 * once more after the controller reset under I/O. */
START_TEST(test_nvme_shadow_doorbells)
{
    ck_assert_msg(daemon_log_tail, "muserd's log could not be read");
    char needle[64];
    snprintf(needle, sizeof(needle), "%s: nvme: shadow doorbells at", NVME_ID);
    size_t n = guest_log_count(daemon_log_tail, needle);
    ck_assert_msg(n >= 2,
                  "guest A's nvme driver configured shadow doorbells %zu times, not at probe "
                  "and after the reset; muserd's log ends:\n%s",
                  n, guest_log_tail(daemon_log_tail, 3000));
}
END_TEST

START_TEST(test_nvme_host_reads_back)
{
    unsigned long long off = nvme_value(&nvme_main, "MARKER", "offset");

    ck_assert_uint_eq(off, NVME_MARKER_OFF);
    ck_assert_msg(!nvme_after.error[0], "%s's namespace was not read back after QEMU exited: %s",
                  NVME_ID, nvme_after.error);
    /* The ext2 superblock at 1024, its magic at 56. */
    ck_assert_msg(nvme_after.first[1024 + 56] == 0x53 && nvme_after.first[1024 + 57] == 0xef,
                  "no ext2 superblock on the namespace after the guest's mke2fs (magic %02x%02x)",
                  nvme_after.first[1024 + 57], nvme_after.first[1024 + 56]);
    ck_assert_msg(!memcmp(nvme_after.marker, NVME_MARKER, strlen(NVME_MARKER)),
                  "the namespace at %u holds \"%.60s\", not the guest's marker", NVME_MARKER_OFF,
                  (const char *)nvme_after.marker);
}
END_TEST

/* The main device's namespace 2: the guest's driver lists namespaces 1 and
 * 2 of the controller, and namespace 2 is a disk of its own, of its size
 * and blocks (not namespace 1's), writable (ns2_read_only defaults to false). */
START_TEST(test_nvme_second_namespace)
{
    char disk[64];
    size_t len = strlen(nvme_word(&nvme_main, "NS2-PROBE", "disk", disk, sizeof(disk)));

    ck_assert_msg(len > 2 && !strcmp(disk + len - 2, "n2"),
                  "guest A's namespace 2 of %s is the disk %s, not nvmeXn2", nvme_main.serial,
                  disk);
    assert_nvme_word(&nvme_main, "NS2-PROBE", "nsids", "1,2");
    ck_assert_uint_eq(nvme_value(&nvme_main, "NS2-PROBE", "sectors"), nvme_main.ns2_size / 512);
    ck_assert_uint_eq(nvme_value(&nvme_main, "NS2-PROBE", "lbs"), nvme_main.ns2_block_size);
    ck_assert_uint_eq(nvme_value(&nvme_main, "NS2-PROBE", "ro"), 0);
    ck_assert_uint_eq(nvme_value(&nvme_main, "PROBE", "size"), nvme_main.size);
    ck_assert_uint_eq(nvme_value(&nvme_main, "PROBE", "lbs"), nvme_main.block_size);
}
END_TEST

/* Namespace 2's first MiB and last block, written with O_DIRECT, read back
 * and left namespace 1's first MiB as it was; namespace 1's whole round
 * trip, its discards and the controller reset under I/O then left them as
 * they were. */
START_TEST(test_nvme_namespaces_apart)
{
    ck_assert_uint_eq(nvme_value(&nvme_main, "NS2-WRITE", "bytes"), 1048576 + 4096);
    ck_assert_uint_eq(nvme_value(&nvme_main, "NS2-WRITE", "last_block"),
                      nvme_main.ns2_size / 4096 - 1);
    char prefix[64];
    assert_nvme_step(&nvme_main, "RESET", prefix, sizeof(prefix));
    assert_nvme_step(&nvme_main, "RAW-DISCARD", prefix, sizeof(prefix));
    ck_assert_uint_eq(nvme_value(&nvme_main, "NS2-VERIFY", "verified_bytes"), 1048576 + 4096);
}
END_TEST

/* The host's own driver reads, from nsid 2, the marker the guest left on
 * its namespace 2 (namespace 1 has other data at that offset). */
START_TEST(test_nvme_host_reads_back_ns2)
{
    ck_assert_uint_eq(nvme_value(&nvme_main, "NS2-MARKER", "offset"), NVME_NS2_MARKER_OFF);
    ck_assert_msg(!nvme_after.ns2_error[0],
                  "%s's namespace 2 was not read back after QEMU exited: %s", NVME_ID,
                  nvme_after.ns2_error);
    ck_assert_msg(!memcmp(nvme_after.ns2_marker, NVME_NS2_MARKER, strlen(NVME_NS2_MARKER)),
                  "namespace 2 at %u holds \"%.60s\", not the guest's marker", NVME_NS2_MARKER_OFF,
                  (const char *)nvme_after.ns2_marker);
}
END_TEST

/* ---- two guests and a hostile client ------------------------------------------- */

START_TEST(test_concurrent_guests_and_hostile_client)
{
    for (size_t gi = 0; gi < NR_GUESTS; gi++) {
        const struct guest *g = &guests[gi];
        if (g->skipped)
            continue;
        assert_guest_done(g);
        ck_assert_msg(g->qemu_status == 0, "QEMU of guest %s exited %d:\n%s", g->name,
                      g->qemu_status, g->qemu_output ? guest_log_tail(g->qemu_output, 2000) : "");
        char *fails = guest_log_grep(serial(g), "MUSERD-TEST FAIL", 6000);
        ck_assert_msg(!fails[0], "guest %s failed checks:\n%s", g->name, fails);
        free(fails);
    }
    ck_assert_msg(hostile_rounds >= 100, "the hostile client ran only %lu rounds", hostile_rounds);
    ck_assert_msg(hostile_device_ok, "%s no longer serves a client after %lu hostile rounds",
                  HOSTILE_ID, hostile_rounds);
}
END_TEST

START_TEST(test_daemon_clean_exit)
{
    assert_fixture();
    ck_assert_msg(daemon_stop_r == 0 && WIFEXITED(daemon_status) && WEXITSTATUS(daemon_status) == 0,
                  "muserd did not exit cleanly at SIGTERM (stop %d, status %#x); its log ends:\n%s",
                  daemon_stop_r, daemon_status,
                  daemon_log_tail ? guest_log_tail(daemon_log_tail, 4000) : "");
}
END_TEST

static Suite *guest_suite(void)
{
    Suite *s = suite_create("guest");
    TCase *tc = tcase_create("qemu");

    tcase_add_unchecked_fixture(tc, boot_all, teardown_all);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_enumeration);
    tcase_add_test(tc, test_registers_guest_reads);
    tcase_add_test(tc, test_registers_host_reads_back);
    tcase_add_test(tc, test_intx);
    tcase_add_test(tc, test_msi);
    tcase_add_test(tc, test_msix);
    tcase_add_test(tc, test_dma_shared_memory);
    tcase_add_test(tc, test_dma_over_socket);
    tcase_add_test(tc, test_dma_hugetlb_memory);
    tcase_add_test(tc, test_nvme_driver_binds);
    tcase_add_test(tc, test_nvme_filesystem_round_trip);
    tcase_add_test(tc, test_nvme_4k_blocks);
    tcase_add_test(tc, test_nvme_4k_file_backed);
    tcase_add_test(tc, test_nvme_read_only);
    tcase_add_test(tc, test_nvme_intx);
    tcase_add_test(tc, test_nvme_discard);
    tcase_add_test(tc, test_nvme_guest_dd);
    tcase_add_test(tc, test_nvme_reset_under_io);
    tcase_add_test(tc, test_nvme_host_reads_back);
    tcase_add_test(tc, test_nvme_shadow_doorbells);
    tcase_add_test(tc, test_nvme_second_namespace);
    tcase_add_test(tc, test_nvme_namespaces_apart);
    tcase_add_test(tc, test_nvme_host_reads_back_ns2);
    tcase_add_test(tc, test_concurrent_guests_and_hostile_client);
    tcase_add_test(tc, test_daemon_clean_exit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (qemu_find(qemu_path, sizeof(qemu_path)) < 0) {
        const char *env = getenv("QEMU");
        if (env && *env)
            printf("test-guest: SKIP: QEMU=%s is not a runnable QEMU >= 10.1\n", env);
        else
            printf("test-guest: SKIP: no QEMU >= 10.1 found (set QEMU=...)\n");
        return EXIT_SUCCESS;
    }
    if (guest_image_find(guest_dir, sizeof(guest_dir)) < 0) {
        printf("test-guest: SKIP: no guest image in %s (build it with tests/guest/build-guest.sh "
               "%s, or set MUSERD_GUEST_DIR=...)\n",
               guest_dir, guest_dir);
        return EXIT_SUCCESS;
    }
    printf("test-guest: QEMU %s, guest image %s\n", qemu_path, guest_dir);
    fflush(stdout);
    return tu_run_suite(guest_suite());
}
