/* SPDX-License-Identifier: MIT */
/*
 * What I/O threads buy: two clients, each hammering its own device with
 * 4-byte REGION_READs for a fixed time, against muserd with 1 and with 2 I/O
 * threads (a timer and a ram device: different plugins, so with 2 threads
 * each gets its own; ABI 1 plugins keep one thread per plugin). Prints the
 * aggregate rate of each run and their ratio, and the load of the machine's
 * CPUs, which bounds it: on 2 cores the two clients and muserd's threads
 * share two CPUs. Then devices per thread: one client's rate on a thread
 * that serves 1,000 idle devices besides, against the same thread alone.
 *
 * Prints numbers; fails only when something is broken, never because the
 * machine is slow. MUSERD_BENCH_SECONDS overrides the measuring time (2 s).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../plugins/ram/ram-regs.h"
#include "../../plugins/timer/timer-regs.h"
#include "client/client.h"
#include "../integration/helpers/daemon.h"
#include "util/macro.h"

DEFINE_FREEP(struct test_daemon, test_daemon_free)

static double seconds = 2.0;

/* In a child: read reg of BAR0 until `end`; write the count to fd. */
static void client_loop(const char *socket, uint32_t reg, uint64_t start, uint64_t end, int fd)
{
    struct vfu_client *c;
    uint64_t count = 0;
    uint32_t v;

    if (vfu_client_connect(socket, &c) < 0 ||
        vfu_client_negotiate(c, vfu_client_qemu_caps_json, NULL) < 0)
        _exit(1);
    while (test_now_ns() < start) /* warm up until both clients run */
        if (vfu_client_region_read(c, 0, reg, &v, 4) < 0)
            _exit(1);
    while (test_now_ns() < end) {
        if (vfu_client_region_read(c, 0, reg, &v, 4) < 0)
            _exit(1);
        count++;
    }
    if (write(fd, &count, sizeof(count)) != sizeof(count))
        _exit(1);
    vfu_client_free(c);
    _exit(0);
}

/* Reads per second of `clients` clients together (1: on t0 alone), against
 * muserd --io-threads n with `idle` more timer devices nobody uses. */
static int measure(unsigned n, unsigned clients, unsigned idle, double *rate)
{
    _cleanup_(test_daemon_freep) struct test_daemon *d = NULL;
    char threads[16];
    int r;

    snprintf(threads, sizeof(threads), "%u", n);
    if ((r = test_daemon_new(&d)) < 0 || (r = test_daemon_add_arg(d, "--io-threads")) < 0 ||
        (r = test_daemon_add_arg(d, threads)) < 0 ||
        (r = test_daemon_add_device(d, "timer", "t0", NULL)) < 0 ||
        (r = test_daemon_add_device(d, "ram", "r0", "{\"size\":1048576}")) < 0)
        return r;
    for (unsigned i = 0; i < idle; i++) {
        char id[16];
        snprintf(id, sizeof(id), "idle%u", i);
        if ((r = test_daemon_add_device(d, "timer", id, NULL)) < 0)
            return r;
    }
    if ((r = test_daemon_start(d)) < 0 || (r = test_daemon_wait_accepting(d, 30000)) < 0) {
        fprintf(stderr, "bench-threads: muserd did not start: %s\n", strerror(-r));
        test_daemon_dump_log(d, 4096);
        return r;
    }
    usleep(100 * 1000); /* the readiness probes' hang-ups are seen */

    int fds[2];
    if (pipe(fds) < 0)
        return -errno;
    const char *ids[2] = {"t0", "r0"};
    const uint32_t regs[2] = {TIMER_REG_ID, RAM_REG_ID};
    uint64_t start = test_now_ns() + 300 * 1000000ull;
    uint64_t end = start + (uint64_t)(seconds * 1e9);
    pid_t kids[2];
    for (unsigned i = 0; i < clients; i++) {
        char socket[4096];
        snprintf(socket, sizeof(socket), "%s", test_daemon_socket(d, ids[i]));
        kids[i] = fork();
        if (kids[i] == 0) {
            close(fds[0]);
            client_loop(socket, regs[i], start, end, fds[1]);
        }
    }
    close(fds[1]);
    uint64_t total = 0, count;
    int got = 0;
    while (read(fds[0], &count, sizeof(count)) == sizeof(count)) {
        total += count;
        got++;
    }
    close(fds[0]);
    for (unsigned i = 0; i < clients; i++)
        waitpid(kids[i], NULL, 0);
    if (got != (int)clients) {
        fprintf(stderr, "bench-threads: a client failed\n");
        test_daemon_dump_log(d, 4096);
        return -EIO;
    }
    *rate = (double)total / seconds;
    int status;
    return test_daemon_stop(d, 10000, &status);
}

int main(void)
{
    const char *env = getenv("MUSERD_BENCH_SECONDS");
    if (env && atof(env) > 0)
        seconds = atof(env);
    signal(SIGPIPE, SIG_IGN);

    double one, two, alone, crowded;
    const unsigned neighbours = 1000;
    int r = measure(1, 2, 0, &one);
    if (r >= 0)
        r = measure(2, 2, 0, &two);
    if (r >= 0)
        r = measure(1, 1, 0, &alone);
    if (r >= 0)
        r = measure(1, 1, neighbours, &crowded);
    if (r < 0) {
        fprintf(stderr, "bench-threads: %s\n", strerror(-r));
        return 1;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    printf("bench-threads: two clients, 4-byte REGION_READs on a device each, %.0f s each run\n",
           seconds);
    printf("  1 I/O thread:  %8.0f reads/s\n", one);
    printf("  2 I/O threads: %8.0f reads/s  (x%.2f; the 2 clients and muserd's threads share "
           "%ld CPU(s))\n",
           two, two / one, cpus);
    printf("bench-threads: devices per thread, one client on one of them, 1 I/O thread\n");
    printf("  1 device:     %8.0f reads/s\n", alone);
    printf("  %u devices: %8.0f reads/s  (x%.2f with %u idle neighbours on the thread)\n",
           neighbours + 2, crowded, crowded / alone, neighbours + 1);
    return 0;
}
