/* SPDX-License-Identifier: MIT */
/*
 * How much does muserd add to a trapped register access? A guest MMIO
 * access to a non-mmapped BAR is one REGION_READ/REGION_WRITE round trip.
 * We time 4-byte accesses to a timer device's BAR0 and, in the same run,
 * the floor: a UNIX socketpair ping-pong of the same message sizes against
 * an echo process that does one read and one write per message. The ratio
 * of the medians is what muserd costs over the bare socket (goal <= 1.15).
 * Also: DMA_MAP + DMA_UNMAP pairs per second with a 2 MiB memfd, the cost a
 * VMM pays at memory hotplug and at each vIOMMU map.
 *
 * Prints numbers; fails only when something is broken, never because the
 * machine is slow. MUSERD_BENCH_ITERATIONS overrides the iteration count.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/client.h"
#include "../integration/helpers/daemon.h"
#include "util/macro.h"

#define GOAL_RATIO 1.15
#define DMA_SIZE   (2u * 1024u * 1024u)
#define DMA_IOVA   0x100000000ull

DEFINE_FREEP(struct vfu_client, vfu_client_free)
DEFINE_FREEP(struct test_daemon, test_daemon_free)

static size_t iterations = 200000;
static size_t warmup = 20000;

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

/* One round trip of the client, timed per iteration; returns -errno on error. */
typedef int (*op_fn)(void *ctx);

static int measure(op_fn op, void *ctx, uint64_t *t, struct stats *ret)
{
    for (size_t i = 0; i < warmup; i++) {
        int r = op(ctx);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < iterations; i++) {
        uint64_t t0 = test_now_ns();
        int r = op(ctx);
        t[i] = test_now_ns() - t0;
        if (r < 0)
            return r;
    }
    *ret = summarize(t, iterations);
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
    size_t req, rep;
    uint8_t buf[256];
};

/* Exactly one read and one write per message, like the cheapest server. */
static _Noreturn void echo_loop(int fd, size_t req, size_t rep)
{
    uint8_t buf[256] = {0};
    for (;;) {
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

static int measure_raw(size_t req, size_t rep, uint64_t *t, struct stats *ret)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        close(sv[0]);
        echo_loop(sv[1], req, rep);
    }
    close(sv[1]);
    struct raw raw = {.fd = sv[0], .req = req, .rep = rep};
    int r = measure(op_raw, &raw, t, ret);
    close(sv[0]);
    waitpid(pid, NULL, 0);
    return r;
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
    _cleanup_free_ uint64_t *t = calloc(iterations, sizeof(uint64_t));
    struct stats m_read, m_write, raw_read, raw_write;
    int r;

    if (!t)
        return -ENOMEM;
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

    printf("bench-latency: 4-byte BAR0 accesses to a timer device, median of %zu round trips "
           "after %zu warm-up\n",
           iterations, warmup);
    /* Request and reply sizes: header + struct vfu_region_access (+ data). */
    size_t hdr = sizeof(struct vfu_header) + sizeof(struct vfu_region_access);
    if ((r = measure(op_read, c, t, &m_read)) < 0 ||
        (r = measure_raw(hdr, hdr + 4, t, &raw_read)) < 0 ||
        (r = measure(op_write, c, t, &m_write)) < 0 ||
        (r = measure_raw(hdr + 4, hdr, t, &raw_write)) < 0) {
        fprintf(stderr, "bench-latency: round trip failed: %s\n", strerror(-r));
        test_daemon_dump_log(d, 4096);
        return r;
    }
    report("REGION_READ 4B", &m_read, &raw_read);
    report("REGION_WRITE 4B", &m_write, &raw_write);

    if ((r = bench_dma(c)) < 0) {
        fprintf(stderr, "bench-latency: DMA map/unmap failed: %s\n", strerror(-r));
        test_daemon_dump_log(d, 4096);
        return r;
    }

    vfu_client_free(TAKE_PTR(c));
    int status;
    r = test_daemon_stop(d, 10000, &status);
    if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench-latency: muserd did not exit cleanly on SIGTERM (status %#x)\n",
                status);
        test_daemon_dump_log(d, 4096);
        return -EIO;
    }
    return 0;
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
