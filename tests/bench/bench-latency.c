/* SPDX-License-Identifier: MIT */
/*
 * How much does muserd add to a trapped register access? A guest MMIO
 * access to a non-mmapped BAR is one REGION_READ/REGION_WRITE round trip.
 * We time 4-byte accesses to a timer device's BAR0 and, in the same run,
 * the floor: a UNIX socketpair ping-pong of the same message sizes against
 * an echo process that does one read and one write per message. The ratio
 * of the medians is what muserd costs over the bare socket (goal <= 1.10),
 * with the device on an I/O thread as every device is.
 * The two alternate in blocks and run pinned to the same CPUs, so that the
 * ratio compares like with like. A third server, an echo that waits in
 * epoll_wait before each read as any event loop does, shows how much of
 * the ratio is the event loop's own syscall and wake-up on this machine
 * (printed, no goal).
 * Also: DMA_MAP + DMA_UNMAP pairs per second with a 2 MiB memfd, the cost a
 * VMM pays at memory hotplug and at each vIOMMU map.
 *
 * Prints numbers; fails only when something is broken, never because the
 * machine is slow. MUSERD_BENCH_ITERATIONS overrides the iteration count.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/client.h"
#include "../integration/helpers/daemon.h"
#include "util/macro.h"

#define GOAL_RATIO 1.10
#define DMA_SIZE   (2u * 1024u * 1024u)
#define DMA_IOVA   0x100000000ull

DEFINE_FREEP(struct vfu_client, vfu_client_free)
DEFINE_FREEP(struct test_daemon, test_daemon_free)
DEFINE_FREEP(DIR, closedir)

static size_t iterations = 200000;
static size_t warmup = 20000;

/* Blocks of muserd and raw round trips alternate, so that both see the same
 * machine: a noisy neighbour or a frequency change hits both alike. */
#define ROUNDS 20

struct stats {
    uint64_t median, p99;
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static struct stats summarize(uint64_t *t, size_t n)
{
    qsort(t, n, sizeof(*t), cmp_u64);
    return (struct stats){.median = t[n / 2], .p99 = t[n * 99 / 100]};
}

/* One round trip of the client; returns -errno on error. */
typedef int (*op_fn)(void *ctx);

static int run_block(op_fn op, void *ctx, uint64_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = test_now_ns();
        int r = op(ctx);
        if (t)
            t[i] = test_now_ns() - t0;
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- muserd ---- */

static int op_read(void *ctx)
{
    uint32_t v;
    return vfu_client_region_read(ctx, VFIO_PCI_BAR0_REGION_INDEX, 0, &v, sizeof(v));
}

static int op_write(void *ctx)
{
    uint32_t v = 0;
    return vfu_client_region_write(ctx, VFIO_PCI_BAR0_REGION_INDEX, 0, &v, sizeof(v));
}

/* ---- the floor: a socketpair and an echo process ---- */

struct raw {
    int fd;
    pid_t pid;
    bool epoll; /* the echo waits in epoll_wait before each read */
    size_t req, rep;
    uint8_t buf[256];
};

/* Exactly one read and one write per message, like the cheapest server;
 * with use_epoll, an epoll_wait before each read, like an event loop. */
static _Noreturn void echo_loop(int fd, size_t req, size_t rep, bool use_epoll)
{
    uint8_t buf[256] = {0};
    int ep = use_epoll ? epoll_create1(EPOLL_CLOEXEC) : -1;
    struct epoll_event ev = {.events = EPOLLIN};
    if (use_epoll && (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0))
        _exit(1);
    for (;;) {
        if (use_epoll && epoll_wait(ep, &ev, 1, -1) < 0)
            continue; /* EINTR */
        ssize_t n = read(fd, buf, req);
        if (n <= 0)
            _exit(0);
        if (write(fd, buf, rep) != (ssize_t)rep)
            _exit(1);
    }
}

static int op_raw(void *ctx)
{
    struct raw *r = ctx;
    if (write(r->fd, r->buf, r->req) != (ssize_t)r->req)
        return -EIO;
    size_t got = 0;
    while (got < r->rep) {
        ssize_t n = read(r->fd, r->buf, r->rep - got);
        if (n <= 0)
            return n < 0 ? -errno : -ECONNRESET;
        got += (size_t)n;
    }
    return 0;
}

static int raw_start(struct raw *raw, size_t req, size_t rep, bool use_epoll)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        /* Keep only our end: an inherited end of another echo's socketpair
         * (or the muserd connection) would keep that peer from seeing EOF. */
        if (dup2(sv[1], 3) < 0 || close_range(4, ~0u, 0) < 0)
            _exit(1);
        echo_loop(3, req, rep, use_epoll);
    }
    close(sv[1]);
    *raw = (struct raw){.fd = sv[0], .pid = pid, .epoll = use_epoll, .req = req, .rep = rep};
    return 0;
}

static void raw_stop(struct raw *raw)
{
    if (raw->pid <= 0)
        return;
    close(raw->fd);
    waitpid(raw->pid, NULL, 0);
    raw->pid = 0;
}

/* Every thread of process pid onto set (sched_setaffinity moves one thread:
 * muserd's device I/O threads are running already). 0 or -errno. */
static int pin_threads(pid_t pid, const cpu_set_t *set)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    _cleanup_(closedirp) DIR *dir = opendir(path);
    if (!dir)
        return -errno;
    int n = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        if (e->d_name[0] == '.')
            continue;
        if (sched_setaffinity((pid_t)atoi(e->d_name), sizeof(*set), set) < 0)
            return -errno;
        n++;
    }
    return n > 0 ? 0 : -ESRCH;
}

/*
 * Where the processes run decides the numbers more than anything: a round
 * trip between two CPUs costs a wakeup IPI, one on a single CPU a context
 * switch. Pin the client to one CPU and both servers (every thread of
 * muserd, the echo processes) to another, so both sides of the comparison
 * pay the same.
 */
static const char *pin(pid_t daemon, const pid_t *echoes, size_t nr_echoes)
{
    cpu_set_t set;

    if (sched_getaffinity(0, sizeof(set), &set) < 0 || CPU_COUNT(&set) < 2)
        return "not pinned (one CPU)";
    int first = -1, second = -1;
    for (int i = 0; i < CPU_SETSIZE && second < 0; i++)
        if (CPU_ISSET(i, &set)) {
            if (first < 0)
                first = i;
            else
                second = i;
        }
    CPU_ZERO(&set);
    CPU_SET(first, &set);
    if (sched_setaffinity(0, sizeof(set), &set) < 0)
        return "not pinned";
    CPU_ZERO(&set);
    CPU_SET(second, &set);
    if (pin_threads(daemon, &set) < 0)
        return "not pinned";
    for (size_t i = 0; i < nr_echoes; i++)
        if (sched_setaffinity(echoes[i], sizeof(set), &set) < 0)
            return "not pinned";
    return "client on one CPU, muserd and echo on another";
}

/* The echo servers: the floor for reads and for writes, and the epoll echo
 * (read sizes). */
enum { ECHO_READ, ECHO_WRITE, ECHO_EPOLL, NR_ECHOES };

struct results {
    struct stats m_read, m_write, raw_read, raw_write, epoll_read;
};

static int measure_all(struct vfu_client *c, struct raw *echo, struct results *res)
{
    size_t block = iterations / ROUNDS ? iterations / ROUNDS : 1;
    size_t n = block * ROUNDS;
    _cleanup_free_ uint64_t *t = calloc(5 * n, sizeof(uint64_t));
    int r;

    if (!t)
        return -ENOMEM;
    if ((r = run_block(op_read, c, NULL, warmup)) < 0 ||
        (r = run_block(op_raw, &echo[ECHO_READ], NULL, warmup)) < 0 ||
        (r = run_block(op_write, c, NULL, warmup)) < 0 ||
        (r = run_block(op_raw, &echo[ECHO_WRITE], NULL, warmup)) < 0 ||
        (r = run_block(op_raw, &echo[ECHO_EPOLL], NULL, warmup)) < 0)
        return r;
    for (size_t i = 0; i < ROUNDS; i++) {
        size_t o = i * block;
        if ((r = run_block(op_read, c, t + o, block)) < 0 ||
            (r = run_block(op_raw, &echo[ECHO_READ], t + n + o, block)) < 0 ||
            (r = run_block(op_write, c, t + 2 * n + o, block)) < 0 ||
            (r = run_block(op_raw, &echo[ECHO_WRITE], t + 3 * n + o, block)) < 0 ||
            (r = run_block(op_raw, &echo[ECHO_EPOLL], t + 4 * n + o, block)) < 0)
            return r;
    }
    res->m_read = summarize(t, n);
    res->raw_read = summarize(t + n, n);
    res->m_write = summarize(t + 2 * n, n);
    res->raw_write = summarize(t + 3 * n, n);
    res->epoll_read = summarize(t + 4 * n, n);
    return 0;
}

static void report(const char *what, const struct stats *m, const struct stats *raw)
{
    double ratio = (double)m->median / (double)raw->median;
    printf("  %-16s muserd %6" PRIu64 " ns (p99 %6" PRIu64 ")   raw %6" PRIu64 " ns (p99 %6" PRIu64
           ")   ratio %.3f (goal <= %.2f: %s)\n",
           what, m->median, m->p99, raw->median, raw->p99, ratio, GOAL_RATIO,
           ratio <= GOAL_RATIO ? "met" : "MISSED");
}

static int bench_dma(struct vfu_client *c)
{
    _cleanup_close_ int fd = memfd_create("bench-dma", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, DMA_SIZE) < 0)
        return -errno;

    size_t pairs = iterations / 10 ? iterations / 10 : 1;
    uint32_t prot = VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE;
    uint64_t t0 = 0;
    for (size_t i = 0; i < pairs + pairs / 10; i++) {
        if (i == pairs / 10)
            t0 = test_now_ns(); /* the first tenth warms up */
        int r = vfu_client_dma_map(c, DMA_IOVA, DMA_SIZE, prot, fd, 0);
        if (r < 0)
            return r;
        r = vfu_client_dma_unmap(c, DMA_IOVA, DMA_SIZE, 0);
        if (r < 0)
            return r;
    }
    double sec = (double)(test_now_ns() - t0) / 1e9;
    printf("  DMA_MAP+DMA_UNMAP (2 MiB memfd): %.0f pairs/s (%.1f us per pair, %zu pairs)\n",
           (double)pairs / sec, sec * 1e6 / (double)pairs, pairs);
    return 0;
}

static int run(void)
{
    _cleanup_(test_daemon_freep) struct test_daemon *d = NULL;
    _cleanup_(vfu_client_freep) struct vfu_client *c = NULL;
    struct raw echo[NR_ECHOES] = {0};
    pid_t pids[NR_ECHOES];
    struct results res;
    int r;

    if ((r = test_daemon_new(&d)) < 0 || (r = test_daemon_add_device(d, "timer", "t0", NULL)) < 0)
        return r;
    if ((r = test_daemon_start(d)) < 0) {
        fprintf(stderr, "bench-latency: cannot start muserd: %s\n", strerror(-r));
        return r;
    }
    if ((r = test_daemon_wait_ready(d, 30000)) < 0) {
        fprintf(stderr, "bench-latency: muserd not ready: %s\n", strerror(-r));
        test_daemon_dump_log(d, 4096);
        return r;
    }
    if ((r = vfu_client_connect(test_daemon_socket(d, "t0"), &c)) < 0 ||
        (r = vfu_client_negotiate(c, vfu_client_qemu_caps_json, NULL)) < 0) {
        fprintf(stderr, "bench-latency: cannot talk to the timer device: %s\n", strerror(-r));
        test_daemon_dump_log(d, 4096);
        return r;
    }

    /* Request and reply sizes: header + struct vfu_region_access (+ data). */
    size_t hdr = sizeof(struct vfu_header) + sizeof(struct vfu_region_access);
    if ((r = raw_start(&echo[ECHO_READ], hdr, hdr + 4, false)) < 0 ||
        (r = raw_start(&echo[ECHO_WRITE], hdr + 4, hdr, false)) < 0 ||
        (r = raw_start(&echo[ECHO_EPOLL], hdr, hdr + 4, true)) < 0) {
        for (int i = 0; i < NR_ECHOES; i++)
            raw_stop(&echo[i]);
        fprintf(stderr, "bench-latency: cannot start the echo process: %s\n", strerror(-r));
        return r;
    }
    for (int i = 0; i < NR_ECHOES; i++)
        pids[i] = echo[i].pid;
    const char *placement = pin(test_daemon_pid(d), pids, NR_ECHOES);
    printf("bench-latency: 4-byte BAR0 accesses to a timer device, %zu round trips each after "
           "%zu warm-up, %s\n",
           iterations, warmup, placement);
    r = measure_all(c, echo, &res);
    for (int i = 0; i < NR_ECHOES; i++)
        raw_stop(&echo[i]);
    if (r < 0) {
        fprintf(stderr, "bench-latency: round trip failed: %s\n", strerror(-r));
        test_daemon_dump_log(d, 4096);
        return r;
    }
    report("REGION_READ 4B", &res.m_read, &res.raw_read);
    report("REGION_WRITE 4B", &res.m_write, &res.raw_write);
    printf("  the floor with an event loop: an echo waiting in epoll_wait %6" PRIu64
           " ns, %.3f x raw; REGION_READ %.3f x it (what muserd adds over any event loop; no "
           "goal)\n",
           res.epoll_read.median, (double)res.epoll_read.median / (double)res.raw_read.median,
           (double)res.m_read.median / (double)res.epoll_read.median);

    if ((r = bench_dma(c)) < 0) {
        fprintf(stderr, "bench-latency: DMA map/unmap failed: %s\n", strerror(-r));
        test_daemon_dump_log(d, 4096);
        return r;
    }

    vfu_client_free(TAKE_PTR(c));
    return test_daemon_stop_clean(d, 10000, "bench-latency");
}

int main(void)
{
    const char *env = getenv("MUSERD_BENCH_ITERATIONS");
    if (env && atol(env) > 0) {
        iterations = (size_t)atol(env);
        warmup = iterations / 10;
    }
    signal(SIGPIPE, SIG_IGN);
    return run() < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
