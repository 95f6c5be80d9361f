/* SPDX-License-Identifier: MIT */
/*
 * What does one more device cost? muserd hosts many devices in one process,
 * so a device must be cheap to create and to keep. We start muserd with
 * 1,000 timer devices and with none, and print per device:
 *  - creation time: (time from exec until every socket accepts a connection
 *    with N devices - the same with 0 devices) / N;
 *  - memory: (VmRSS with N devices - VmRSS with 0) / N.
 * Reference: libvfio-user costs about 19.5 KiB and 30 us per device.
 *
 * Each configuration runs a few times and the median counts, to keep one
 * unlucky scheduling from deciding. Prints numbers; fails only when muserd
 * does not start or serve. MUSERD_BENCH_DEVICES overrides the count.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../integration/helpers/daemon.h"
#include "util/macro.h"

#define RUNS    3
#define REF_KIB 19.5
#define REF_US  30.0

DEFINE_FREEP(struct test_daemon, test_daemon_free)

struct sample {
    uint64_t start_ns; /* exec to all sockets accepting */
    uint64_t ready_ns; /* exec to READY=1 */
    uint64_t rss_kib;
};

static int run_once(size_t devices, struct sample *s)
{
    _cleanup_(test_daemon_freep) struct test_daemon *d = NULL;
    char id[32];
    int r;

    if ((r = test_daemon_new(&d)) < 0)
        return r;
    for (size_t i = 0; i < devices; i++) {
        snprintf(id, sizeof(id), "t%04zu", i);
        if ((r = test_daemon_add_device(d, "timer", id, NULL)) < 0)
            return r;
    }
    if ((r = test_daemon_start(d)) < 0) {
        fprintf(stderr, "bench-scale: cannot start muserd: %s\n", strerror(-r));
        return r;
    }
    r = test_daemon_wait_accepting(d, 120000);
    uint64_t now = test_now_ns();
    if (r < 0) {
        fprintf(stderr, "bench-scale: muserd with %zu devices not ready: %s\n", devices,
                strerror(-r));
        test_daemon_dump_log(d, 4096);
        return r;
    }
    s->start_ns = now - test_daemon_start_time(d);
    s->ready_ns = test_daemon_ready_time(d) - test_daemon_start_time(d);

    /* Let the daemon see our probe connections hang up before weighing it. */
    nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
    if ((r = test_daemon_rss_kib(d, &s->rss_kib)) < 0)
        return r;

    return test_daemon_stop_clean(d, 30000, "bench-scale");
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The median start time and median RSS of RUNS runs. */
static int measure(size_t devices, struct sample *ret)
{
    uint64_t t[RUNS], rss[RUNS], ready[RUNS];

    for (int i = 0; i < RUNS; i++) {
        struct sample s;
        int r = run_once(devices, &s);
        if (r < 0)
            return r;
        t[i] = s.start_ns;
        rss[i] = s.rss_kib;
        ready[i] = s.ready_ns;
    }
    qsort(t, RUNS, sizeof(t[0]), cmp_u64);
    qsort(rss, RUNS, sizeof(rss[0]), cmp_u64);
    qsort(ready, RUNS, sizeof(ready[0]), cmp_u64);
    *ret = (struct sample){
        .start_ns = t[RUNS / 2],
        .ready_ns = ready[RUNS / 2],
        .rss_kib = rss[RUNS / 2],
    };
    return 0;
}

int main(void)
{
    size_t devices = 1000;
    struct sample base, full;

    const char *env = getenv("MUSERD_BENCH_DEVICES");
    if (env && atol(env) > 0)
        devices = (size_t)atol(env);
    /* One listening socket per device, plus the daemon's own. */
    test_raise_nofile(devices * 4 + 256);

    if (measure(0, &base) < 0 || measure(devices, &full) < 0)
        return EXIT_FAILURE;

    double us = ((double)full.start_ns - (double)base.start_ns) / 1e3 / (double)devices;
    double kib = ((double)full.rss_kib - (double)base.rss_kib) / (double)devices;
    printf("bench-scale: muserd with %zu timer devices vs none (median of %d runs)\n", devices,
           RUNS);
    printf("  start to all sockets accepting: %.1f ms with %zu, %.1f ms with 0\n",
           (double)full.start_ns / 1e6, devices, (double)base.start_ns / 1e6);
    printf("  start to READY=1: %.1f ms with %zu, %.1f ms with 0\n", (double)full.ready_ns / 1e6,
           devices, (double)base.ready_ns / 1e6);
    printf("  VmRSS: %" PRIu64 " KiB with %zu, %" PRIu64 " KiB with 0\n", full.rss_kib, devices,
           base.rss_kib);
    printf("  per device: creation %.1f us (libvfio-user ~%.0f us), memory %.1f KiB "
           "(libvfio-user ~%.1f KiB)\n",
           us, REF_US, kib, REF_KIB);
    return EXIT_SUCCESS;
}
