/* SPDX-License-Identifier: MIT */
/*
 * Migration speed, against floors measured in the same run:
 *  - a ram device with a 64 MiB BAR moved through a pipe by D-Bus Migrate
 *    (into the pipe) and Incoming (out of it) on one muserd, the two devices
 *    on different I/O threads: MiB/s, and the ratio to `cat FILE | cat >
 *    FILE2` of 64 MiB on the same tmpfs (goal >= 0.8);
 *  - the pause a client sees when it migrates a device itself over
 *    vfio-user (PRE_COPY, then STOP_COPY until the destination runs): for
 *    the timer (goal < 10 ms) and the 64 MiB ram device.
 * Fails only when muserd does not start or refuses a call; never because
 * the machine is slow.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../integration/helpers/dbus-daemon.h"
#include "../integration/helpers/testutil.h"
#include "util/macro.h"

#define RAM_MIB       64
#define ROUNDS        3
#define GOAL_RATIO    0.8
#define GOAL_TIMER_MS 10.0

DEFINE_FREEP(struct test_daemon, test_daemon_free)

struct call_state {
    int pending;
    int error;
};

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
    struct call_state *st = userdata;
    const sd_bus_error *e = sd_bus_message_get_error(m);
    st->pending--;
    if (e && !st->error) {
        fprintf(stderr, "bench-migration: %s: %s\n", e->name, e->message);
        st->error = -EIO;
    }
    return 0;
}

static int device_call_async(sd_bus *bus, const char *id, const char *member, int fd,
                             struct call_state *st)
{
    _cleanup_free_ char *path = NULL;
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
    int r = sd_bus_path_encode("/org/muserd1/device", id, &path);
    if (r >= 0)
        r = sd_bus_message_new_method_call(bus, &m, "org.muserd1", path, "org.muserd1.Device",
                                           member);
    if (r >= 0 && fd >= 0)
        r = sd_bus_message_append(m, "h", fd);
    if (r >= 0)
        r = sd_bus_call_async(bus, NULL, m, on_reply, st, 600 * 1000000ull);
    if (r >= 0)
        st->pending++;
    return r;
}

static int wait_calls(sd_bus *bus, struct call_state *st)
{
    while (st->pending > 0) {
        int r = sd_bus_process(bus, NULL);
        if (r < 0)
            return r;
        if (r == 0 && (r = sd_bus_wait(bus, UINT64_MAX)) < 0)
            return r;
    }
    return st->error;
}

/* One move of src into dst (created incoming) through a pipe: ns. */
static int move_once(sd_bus *bus, const char *src, const char *dst, uint64_t *ns)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    struct call_state st = {0};
    uint64_t t0 = test_now_ns();
    int r = device_call_async(bus, dst, "Incoming", p[0], &st);
    if (r >= 0)
        r = device_call_async(bus, src, "Migrate", p[1], &st);
    close(p[0]);
    close(p[1]);
    if (r >= 0)
        r = wait_calls(bus, &st);
    *ns = test_now_ns() - t0;
    return r;
}

/* cat FILE | cat > FILE2 with FILE holding bytes, on the bench's tmpfs. */
static int cat_once(const char *dir, size_t bytes, uint64_t *ns)
{
    char in[512], out[512], cmd[1200];
    snprintf(in, sizeof(in), "%s/cat-in", dir);
    snprintf(out, sizeof(out), "%s/cat-out", dir);
    _cleanup_close_ int fd = open(in, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    static char chunk[1 << 20];
    memset(chunk, 0x5a, sizeof(chunk));
    for (size_t done = 0; done < bytes; done += sizeof(chunk))
        if (write(fd, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk))
            return -EIO;
    snprintf(cmd, sizeof(cmd), "cat '%s' | cat > '%s'", in, out);
    uint64_t t0 = test_now_ns();
    int status = system(cmd);
    *ns = test_now_ns() - t0;
    unlink(in);
    unlink(out);
    return status == 0 ? 0 : -EIO;
}

/* The bytes of the phase the source is in, appended to *buf. */
static int read_phase(struct vfu_client *c, uint8_t **buf, size_t *len, size_t *cap)
{
    for (;;) {
        if (*cap - *len < (1u << 20)) {
            *cap = *cap ? *cap * 2 : 1u << 24;
            uint8_t *b = realloc(*buf, *cap);
            if (!b)
                return -ENOMEM;
            *buf = b;
        }
        size_t n = 0;
        int r = vfu_client_mig_read(c, *buf + *len, 1u << 20, &n);
        if (r < 0)
            return r;
        *len += n;
        if (n < (1u << 20))
            return 0;
    }
}

/* A client migrates src to dst over vfio-user as a VMM would: pre-copy
 * while running, then the pause: STOP_COPY, read the rest, write it all to
 * the destination, RUNNING there. Returns the pause in ns. */
static int client_pause(const char *src_sock, const char *dst_sock, uint64_t *ns)
{
    struct vfu_client *s = NULL, *d = NULL;
    _cleanup_free_ uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    int r = tu_connect(src_sock, vfu_client_qemu_caps_json, 10000, &s);
    if (r >= 0)
        r = tu_connect(dst_sock, vfu_client_qemu_caps_json, 10000, &d);
    if (r >= 0)
        r = vfu_client_mig_set_state(d, VFU_MIG_RESUMING, NULL);
    if (r >= 0)
        r = vfu_client_mig_set_state(s, VFU_MIG_PRE_COPY, NULL);
    if (r >= 0)
        r = read_phase(s, &buf, &len, &cap);
    size_t written = 0;
    if (r >= 0 && len) {
        r = vfu_client_mig_write(d, buf, len); /* pre-copy data goes ahead */
        written = len;
    }
    uint64_t t0 = test_now_ns();
    if (r >= 0)
        r = vfu_client_mig_set_state(s, VFU_MIG_STOP_COPY, NULL);
    if (r >= 0)
        r = read_phase(s, &buf, &len, &cap);
    for (size_t off = written; r >= 0 && off < len; off += 1u << 20) {
        size_t n = len - off < (1u << 20) ? len - off : 1u << 20;
        r = vfu_client_mig_write(d, buf + off, n);
    }
    if (r >= 0)
        r = vfu_client_mig_set_state(d, VFU_MIG_RUNNING, NULL);
    *ns = test_now_ns() - t0;
    if (r >= 0)
        r = vfu_client_mig_set_state(s, VFU_MIG_RUNNING,
                                     NULL); /* the source goes on, for the next round */
    if (r < 0)
        fprintf(stderr, "bench-migration: client migration failed: %s\n", strerror(-r));
    vfu_client_free(s);
    vfu_client_free(d);
    return r;
}

static double mib_per_s(size_t bytes, uint64_t ns)
{
    return (double)bytes / (1024.0 * 1024.0) / ((double)ns / 1e9);
}

int main(void)
{
    _cleanup_(test_bus_freep) struct test_bus *tb = NULL;
    _cleanup_(test_daemon_freep) struct test_daemon *d = NULL;
    _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
    const size_t bytes = (size_t)RAM_MIB << 20;
    char src_cfg[128], dst_cfg[128];
    int r;

    snprintf(src_cfg, sizeof(src_cfg), "{\"size\": %zu, \"io_thread\": 0}", bytes);
    snprintf(dst_cfg, sizeof(dst_cfg), "{\"size\": %zu, \"io_thread\": 1, \"incoming\": true}",
             bytes);
    r = test_bus_start(NULL, &tb);
    if (r < 0) {
        fprintf(stderr, "bench-migration: cannot start dbus-daemon: %s\n", strerror(-r));
        return 1;
    }
    if ((r = test_daemon_new(&d)) < 0 || (r = test_daemon_add_arg(d, "--bus-address")) < 0 ||
        (r = test_daemon_add_arg(d, test_bus_address(tb))) < 0 ||
        (r = test_daemon_add_arg(d, "--io-threads")) < 0 || (r = test_daemon_add_arg(d, "2")) < 0 ||
        (r = test_daemon_add_device(d, "ram", "src", src_cfg)) < 0 ||
        (r = test_daemon_add_device(d, "ram", "rdst", "{\"size\": 67108864, \"io_thread\": 1}")) <
            0 ||
        (r = test_daemon_add_device(d, "timer", "tsrc", "{\"io_thread\": 0}")) < 0 ||
        (r = test_daemon_add_device(d, "timer", "tdst", "{\"io_thread\": 1}")) < 0 ||
        (r = test_daemon_start(d)) < 0 || (r = test_daemon_wait_ready(d, 30000)) < 0 ||
        (r = test_bus_connect(test_bus_address(tb), &bus)) < 0 ||
        (r = test_bus_wait_name(test_bus_address(tb), "org.muserd1", 10000)) < 0) {
        fprintf(stderr, "bench-migration: cannot start muserd: %s\n", strerror(-r));
        if (d)
            test_daemon_dump_log(d, 4096);
        return 1;
    }

    uint64_t best_mig = UINT64_MAX, best_cat = UINT64_MAX;
    for (int round = 0; round < ROUNDS; round++) {
        char id[32];
        snprintf(id, sizeof(id), "dst%d", round);
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        r = sd_bus_call_method(bus, "org.muserd1", "/org/muserd1", "org.muserd1.Manager",
                               "CreateDevice", &e, NULL, "sss", "ram", id, dst_cfg);
        if (r < 0) {
            fprintf(stderr, "bench-migration: CreateDevice: %s\n", e.message);
            return 1;
        }
        uint64_t ns = 0;
        r = move_once(bus, "src", id, &ns);
        if (r < 0) {
            test_daemon_dump_log(d, 4096);
            return 1;
        }
        best_mig = ns < best_mig ? ns : best_mig;
        /* Gone again, as cat's output file is: the next round's memory is
         * memory the kernel had before, for both (fresh pages cost extra
         * on first touch in a VM). */
        r = sd_bus_call_method(bus, "org.muserd1", "/org/muserd1", "org.muserd1.Manager",
                               "DestroyDevice", &e, NULL, "s", id);
        if (r < 0) {
            fprintf(stderr, "bench-migration: DestroyDevice: %s\n", e.message);
            return 1;
        }
        /* The source is stopped: run it again for the next round. */
        struct call_state st = {0};
        if (device_call_async(bus, "src", "Resume", -1, &st) < 0 || wait_calls(bus, &st) < 0)
            return 1;
        const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        if (cat_once(dir, bytes, &ns) < 0) {
            fprintf(stderr, "bench-migration: cat through a pipe failed\n");
            return 1;
        }
        best_cat = ns < best_cat ? ns : best_cat;
    }
    double mig = mib_per_s(bytes, best_mig), cat = mib_per_s(bytes, best_cat);
    printf("migration: ram %d MiB through a pipe (Migrate | Incoming): %.0f MiB/s; "
           "cat | cat: %.0f MiB/s; ratio %.2f (goal >= %.1f) %s\n",
           RAM_MIB, mig, cat, mig / cat, GOAL_RATIO, mig / cat >= GOAL_RATIO ? "ok" : "BELOW GOAL");
    fflush(stdout);

    const char *names[] = {"timer", "ram"};
    const char *pairs[][2] = {{"tsrc", "tdst"}, {"src", "rdst"}};
    for (size_t i = 0; i < 2; i++) {
        uint64_t best = UINT64_MAX;
        for (int round = 0; round < ROUNDS; round++) {
            uint64_t ns = 0;
            /* test_daemon_socket() answers in one static buffer. */
            _cleanup_free_ char *from = strdup(test_daemon_socket(d, pairs[i][0]));
            if (!from || client_pause(from, test_daemon_socket(d, pairs[i][1]), &ns) < 0) {
                test_daemon_dump_log(d, 4096);
                return 1;
            }
            best = ns < best ? ns : best;
        }
        double ms = (double)best / 1e6;
        if (i == 0)
            printf("migration: stop-copy pause a client sees, timer: %.2f ms (goal < %.0f ms) %s\n",
                   ms, GOAL_TIMER_MS, ms < GOAL_TIMER_MS ? "ok" : "ABOVE GOAL");
        else
            printf("migration: stop-copy pause a client sees, %s %d MiB: %.1f ms (%.0f MiB/s; no "
                   "goal: all of it is stop-copy data)\n",
                   names[i], RAM_MIB, ms, mib_per_s(bytes, best));
    }

    return test_daemon_stop_clean(d, 30000, "bench-migration") < 0 ? 1 : 0;
}
