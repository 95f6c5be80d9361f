/* SPDX-License-Identifier: MIT */
/*
 * Managing many devices over D-Bus: a private dbus-daemon and muserd, then
 * 10,000 timer devices created with CreateDevice and destroyed with
 * DestroyDevice, pipelined as an orchestrator would (asynchronous calls, at
 * most WINDOW outstanding, one connection). Prints:
 *  - creates/second and destroys/second (goal: >= 2,000/s);
 *  - the daemon's VmRSS per idle device (goal: <= 16 KiB; libvfio-user costs
 *    about 19.5 KiB per device context);
 *  - VmRSS and open fds after destroying them all (and muserd's heap trim a
 *    second later), against the start.
 * Fails only when muserd does not start, refuses a call or does not exit
 * cleanly; never because the machine is slow. MUSERD_BENCH_DEVICES and
 * MUSERD_BENCH_WINDOW override the count and the window.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../integration/helpers/dbus-daemon.h"
#include "../integration/helpers/testutil.h"
#include "util/macro.h"

#define DEVICES      10000
#define WINDOW       64
#define GOAL_PER_SEC 2000.0
#define GOAL_KIB     16.0
#define REF_KIB      19.5

DEFINE_FREEP(struct test_daemon, test_daemon_free)

struct pipeline {
    sd_bus *bus;
    size_t in_flight, done;
    int error; /* the first failure, as -errno */
};

static size_t env_size(const char *name, size_t def)
{
    const char *v = getenv(name);
    char *end;
    unsigned long long n = v && *v ? strtoull(v, &end, 10) : 0;
    return n > 0 && *end == 0 ? (size_t)n : def;
}

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
    struct pipeline *p = userdata;
    const sd_bus_error *e = sd_bus_message_get_error(m);

    p->in_flight--;
    p->done++;
    if (e && !p->error) {
        fprintf(stderr, "bench-dbus: %s: %s\n", e->name, e->message);
        p->error = -sd_bus_message_get_errno(m);
        if (p->error == 0)
            p->error = -EIO;
    }
    return 0;
}

/* Call member(id) for ids t00000.., keeping at most window calls in flight.
 * Returns elapsed nanoseconds through *ns. */
static int pipeline_run(sd_bus *bus, const char *member, size_t n, size_t window, uint64_t *ns)
{
    struct pipeline p = {.bus = bus};
    size_t sent = 0;
    char id[32];
    int r;

    uint64_t start = test_now_ns();
    while (p.done < n && !p.error) {
        while (sent < n && p.in_flight < window) {
            snprintf(id, sizeof(id), "t%05zu", sent);
            if (strcmp(member, "CreateDevice") == 0)
                r = sd_bus_call_method_async(bus, NULL, "org.muserd1", "/org/muserd1",
                                             "org.muserd1.Manager", member, on_reply, &p, "sss",
                                             "timer", id, "");
            else
                r = sd_bus_call_method_async(bus, NULL, "org.muserd1", "/org/muserd1",
                                             "org.muserd1.Manager", member, on_reply, &p, "s", id);
            if (r < 0)
                return r;
            sent++;
            p.in_flight++;
        }
        r = sd_bus_process(bus, NULL);
        if (r < 0)
            return r;
        if (r == 0 && (r = sd_bus_wait(bus, 5 * 1000000ull)) < 0)
            return r;
    }
    *ns = test_now_ns() - start;
    /* Let the last replies' signals drain before anyone measures. */
    while (sd_bus_process(bus, NULL) > 0)
        ;
    return p.error;
}

static uint32_t device_count(sd_bus *bus)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    uint32_t n = UINT32_MAX;
    (void)sd_bus_get_property_trivial(bus, "org.muserd1", "/org/muserd1", "org.muserd1.Manager",
                                      "DeviceCount", &error, 'u', &n);
    sd_bus_error_free(&error);
    return n;
}

/* Time one ListDevices with every device present: what `muserctl list` costs. */
static double list_ms(sd_bus *bus)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    uint64_t start = test_now_ns();
    int r = sd_bus_call_method(bus, "org.muserd1", "/org/muserd1", "org.muserd1.Manager",
                               "ListDevices", &error, &reply, "");
    uint64_t ns = test_now_ns() - start;
    sd_bus_message_unref(reply);
    sd_bus_error_free(&error);
    return r < 0 ? -1.0 : (double)ns / 1e6;
}

static uint64_t rss_kib(const struct test_daemon *d)
{
    uint64_t kib = 0;
    (void)test_daemon_rss_kib(d, &kib);
    return kib;
}

static int bench(size_t n, size_t window)
{
    _cleanup_(test_bus_freep) struct test_bus *tb = NULL;
    _cleanup_(test_daemon_freep) struct test_daemon *d = NULL;
    _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
    uint64_t create_ns = 0, destroy_ns = 0;
    int r;

    r = test_bus_start(NULL, &tb);
    if (r < 0) {
        fprintf(stderr, "bench-dbus: cannot start dbus-daemon: %s\n", strerror(-r));
        return r;
    }
    if ((r = test_daemon_new(&d)) < 0 || (r = test_daemon_add_arg(d, "--bus-address")) < 0 ||
        (r = test_daemon_add_arg(d, test_bus_address(tb))) < 0 ||
        (r = test_daemon_add_arg(d, "--log-level")) < 0 ||
        (r = test_daemon_add_arg(d, "warning")) < 0 || (r = test_daemon_start(d)) < 0 ||
        (r = test_daemon_wait_ready(d, 30000)) < 0) {
        fprintf(stderr, "bench-dbus: cannot start muserd: %s\n", strerror(-r));
        if (d)
            test_daemon_dump_log(d, 4096);
        return r;
    }
    r = test_bus_connect(test_bus_address(tb), &bus);
    if (r < 0) {
        fprintf(stderr, "bench-dbus: cannot connect to the bus: %s\n", strerror(-r));
        return r;
    }
    pid_t pid = test_daemon_pid(d);
    uint64_t rss_start = rss_kib(d);
    int fds_start = tu_count_fds(pid);

    r = pipeline_run(bus, "CreateDevice", n, window, &create_ns);
    if (r < 0 || device_count(bus) != n) {
        fprintf(stderr, "bench-dbus: creating %zu devices failed: %s (DeviceCount %u)\n", n,
                strerror(-r), device_count(bus));
        test_daemon_dump_log(d, 4096);
        return r < 0 ? r : -EIO;
    }
    uint64_t rss_full = rss_kib(d);
    int fds_full = tu_count_fds(pid);
    double list = list_ms(bus);

    r = pipeline_run(bus, "DestroyDevice", n, window, &destroy_ns);
    if (r < 0 || device_count(bus) != 0) {
        fprintf(stderr, "bench-dbus: destroying the devices failed: %s\n", strerror(-r));
        test_daemon_dump_log(d, 4096);
        return r < 0 ? r : -EIO;
    }
    /* muserd trims its heap a second after the last destroy. */
    struct timespec settle = {.tv_sec = 1, .tv_nsec = 500000000};
    nanosleep(&settle, NULL);
    uint64_t rss_end = rss_kib(d);
    int fds_end = tu_count_fds(pid);

    if ((r = test_daemon_stop_clean(d, 30000, "bench-dbus")) < 0)
        return r;

    double creates = (double)n / ((double)create_ns / 1e9);
    double destroys = (double)n / ((double)destroy_ns / 1e9);
    double per_device = ((double)rss_full - (double)rss_start) / (double)n;
    printf("bench-dbus: %zu timer devices over D-Bus, pipelined %zu calls deep\n", n, window);
    printf("  CreateDevice:  %8.0f/s  (%.2f s; goal >= %.0f/s)%s\n", creates,
           (double)create_ns / 1e9, GOAL_PER_SEC, creates >= GOAL_PER_SEC ? "" : "  BELOW GOAL");
    printf("  DestroyDevice: %8.0f/s  (%.2f s; goal >= %.0f/s)%s\n", destroys,
           (double)destroy_ns / 1e9, GOAL_PER_SEC, destroys >= GOAL_PER_SEC ? "" : "  BELOW GOAL");
    printf("  ListDevices with %zu devices: %.1f ms\n", n, list);
    printf("  VmRSS: %" PRIu64 " KiB at start, %" PRIu64 " KiB with %zu devices, %" PRIu64
           " KiB after destroying them (%+" PRId64 " KiB)\n",
           rss_start, rss_full, n, rss_end, (int64_t)rss_end - (int64_t)rss_start);
    printf("  per idle device: %.1f KiB (goal <= %.0f KiB; libvfio-user ~%.1f KiB)%s\n", per_device,
           GOAL_KIB, REF_KIB, per_device <= GOAL_KIB ? "" : "  ABOVE GOAL");
    printf("  open fds: %d at start, %d with %zu devices, %d after destroying them%s\n", fds_start,
           fds_full, n, fds_end, fds_end == fds_start ? "" : "  (LEAK?)");
    return 0;
}

int main(void)
{
    size_t n = env_size("MUSERD_BENCH_DEVICES", DEVICES);
    size_t window = env_size("MUSERD_BENCH_WINDOW", WINDOW);

    /* One listening socket per device, plus the daemon's own. */
    test_raise_nofile(n * 2 + 1024);
    return bench(n, window) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
