/* SPDX-License-Identifier: MIT */
/*
 * Devices on I/O threads, against the real muserd (--io-threads 2) on a
 * private dbus-daemon: a device stuck for two seconds in a plugin call
 * delays neither D-Bus nor a device on the other thread; devices go where
 * "io_thread" says, within the rules of their plugin's ABI; bad thread
 * numbers get a sentence.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../plugins/timer/timer-regs.h"
#include "helpers/dbus-daemon.h"
#include "helpers/testutil.h"

#define NAME         "org.muserd1"
#define MANAGER_PATH "/org/muserd1"
#define MANAGER      "org.muserd1.Manager"

static struct test_bus *tbus;
static struct test_daemon *daemon_;
static sd_bus *bus;

/* A plugin directory with the timer and the slow and poller test plugins. */
static void use_plugins(struct test_daemon *d)
{
    int k = tu_plugin_dir(d, (const char *const[]){"timer", "test:slow", "test:poller", NULL});
    ck_assert_msg(k == 0, "plugin directory: %s (build the plugins with make)", strerror(-k));
}

static void setup(void)
{
    int r = test_bus_start(NULL, &tbus);
    ck_assert_msg(r == 0, "starting dbus-daemon: %s", strerror(-r));
    ck_assert_int_eq(test_daemon_new(&daemon_), 0);
    use_plugins(daemon_);
    const char *args[] = {"--io-threads", "2", "--bus-address", test_bus_address(tbus)};
    for (size_t i = 0; i < ELEMENTSOF(args); i++)
        ck_assert_int_eq(test_daemon_add_arg(daemon_, args[i]), 0);
    /* The first device of each plugin picks the least loaded thread. */
    ck_assert_int_eq(test_daemon_add_device(daemon_, "slow", "s0", NULL), 0);
    ck_assert_int_eq(test_daemon_add_device(daemon_, "timer", "t0", NULL), 0);
    tu_start(daemon_);
    ck_assert_int_eq(test_bus_connect(test_bus_address(tbus), &bus), 0);
}

static void teardown(void)
{
    bus = sd_bus_flush_close_unref(bus);
    if (daemon_)
        tu_stop(daemon_);
    daemon_ = NULL;
    test_bus_free(tbus);
    tbus = NULL;
}

struct slow_write {
    struct vfu_client *c;
    atomic_bool done;
    int result;
};

static void *do_slow_write(void *arg)
{
    struct slow_write *w = arg;
    uint32_t v = 1;
    w->result = vfu_client_region_write(w->c, 0, 0, &v, 4);
    atomic_store(&w->done, true);
    return NULL;
}

START_TEST(test_slow_device_delays_nothing_else)
{
    tu_assert_log_line(daemon_, "slow device s0 on", "(I/O thread 0)");
    tu_assert_log_line(daemon_, "timer device t0 on", "(I/O thread 1)");

    struct slow_write w = {.c = tu_open(daemon_, "s0")};
    struct vfu_client *t0 = tu_open(daemon_, "t0");
    pthread_t writer;
    ck_assert_int_eq(pthread_create(&writer, NULL, do_slow_write, &w), 0);
    usleep(200 * 1000); /* the write is in the plugin now */

    /* The timer on the other thread answers, D-Bus answers, and a new
     * device is made, all while s0's thread is stuck. */
    for (int i = 0; i < 20; i++)
        ck_assert_uint_eq(tu_rd32(t0, TIMER_REGS_BAR, TIMER_REG_ID), TIMER_ID_MAGIC);
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    ck_assert_int_ge(
        sd_bus_call_method(bus, NAME, MANAGER_PATH, MANAGER, "ListDevices", &error, &reply, NULL),
        0);
    reply = sd_bus_message_unref(reply);
    int r = sd_bus_call_method(bus, NAME, MANAGER_PATH, MANAGER, "CreateDevice", &error, &reply,
                               "sss", "timer", "t1", "{\"io_thread\": 1}");
    ck_assert_msg(r >= 0, "CreateDevice: %s", error.message);
    reply = sd_bus_message_unref(reply);
    struct vfu_client *t1 = tu_open(daemon_, "t1");
    ck_assert_uint_eq(tu_rd32(t1, TIMER_REGS_BAR, TIMER_REG_ID), TIMER_ID_MAGIC);
    ck_assert_msg(!atomic_load(&w.done),
                  "the slow write finished before the other device and D-Bus were served");

    pthread_join(writer, NULL);
    ck_assert_int_eq(w.result, 0);
    ck_assert_uint_eq(tu_rd32(w.c, 0, 0), 1);
    vfu_client_free(t1);
    vfu_client_free(t0);
    vfu_client_free(w.c);
}
END_TEST

static void expect_create_error(const char *type, const char *id, const char *json,
                                const char *needle);

struct async_reply {
    bool done;
    char *error_name; /* NULL: success */
};

static int on_async_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
    struct async_reply *a = userdata;
    const sd_bus_error *e = sd_bus_message_get_error(m);
    a->error_name = e ? strdup(e->name) : NULL;
    a->done = true;
    return 0;
}

/* Process the bus until the reply came or timeout_ms passed. */
static bool wait_reply(struct async_reply *a, int timeout_ms)
{
    uint64_t end = test_now_ns() + (uint64_t)timeout_ms * 1000000;
    while (!a->done && test_now_ns() < end) {
        int r = sd_bus_process(bus, NULL);
        ck_assert_int_ge(r, 0);
        if (r == 0)
            (void)sd_bus_wait(bus, 100 * 1000);
    }
    return a->done;
}

/* Calls for the stuck device's own thread wait (answered when it is free
 * again); everything else on D-Bus goes on meanwhile. */
START_TEST(test_calls_for_a_stuck_thread_wait_alone)
{
    struct slow_write w = {.c = tu_open(daemon_, "s0")};
    pthread_t writer;
    ck_assert_int_eq(pthread_create(&writer, NULL, do_slow_write, &w), 0);
    usleep(200 * 1000);

    /* s1 goes to the slow plugin's thread, s0's: the reply waits. */
    struct async_reply create = {0}, reset = {0};
    ck_assert_int_ge(sd_bus_call_method_async(bus, NULL, NAME, MANAGER_PATH, MANAGER,
                                              "CreateDevice", on_async_reply, &create, "sss",
                                              "slow", "s1", ""),
                     0);
    ck_assert_int_ge(sd_bus_call_method_async(bus, NULL, NAME, "/org/muserd1/device/s0",
                                              "org.muserd1.Device", "Reset", on_async_reply, &reset,
                                              ""),
                     0);
    ck_assert(!wait_reply(&create, 300));
    /* Meanwhile: the id is taken, and the rest of D-Bus answers. */
    expect_create_error("slow", "s1", "", "being created");
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    ck_assert_int_ge(
        sd_bus_call_method(bus, NAME, MANAGER_PATH, MANAGER, "ListDevices", &error, &reply, NULL),
        0);
    reply = sd_bus_message_unref(reply);
    ck_assert_int_ge(sd_bus_call_method(bus, NAME, MANAGER_PATH, MANAGER, "DestroyDevice", &error,
                                        &reply, "s", "t0"),
                     0);
    reply = sd_bus_message_unref(reply);
    ck_assert_msg(!atomic_load(&w.done) && !create.done && !reset.done,
                  "the stuck thread answered before the rest of D-Bus");

    /* Once the write is through, both answers come, in order. */
    ck_assert(wait_reply(&create, 10000));
    ck_assert_msg(!create.error_name, "CreateDevice s1: %s", create.error_name);
    ck_assert(wait_reply(&reset, 10000));
    ck_assert_msg(!reset.error_name, "Reset s0: %s", reset.error_name);
    free(create.error_name);
    free(reset.error_name);
    pthread_join(writer, NULL);
    ck_assert_int_eq(w.result, 0);
    tu_assert_log_line(daemon_, "slow device s1 on", "(I/O thread 0)");
    vfu_client_free(w.c);
}
END_TEST

static void expect_create_error(const char *type, const char *id, const char *json,
                                const char *needle)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    int r = sd_bus_call_method(bus, NAME, MANAGER_PATH, MANAGER, "CreateDevice", &error, &reply,
                               "sss", type, id, json);
    ck_assert_msg(r < 0, "CreateDevice %s %s %s succeeded", type, id, json);
    ck_assert_msg(error.message && strstr(error.message, needle), "error \"%s\" lacks \"%s\"",
                  error.message, needle);
    sd_bus_error_free(&error);
}

START_TEST(test_io_thread_config)
{
    /* The timer plugin (ABI 2) may have devices on any thread. */
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    for (int t = 0; t < 2; t++) {
        char id[8], json[32];
        snprintf(id, sizeof(id), "tt%d", t);
        snprintf(json, sizeof(json), "{\"io_thread\": %d}", t);
        int r = sd_bus_call_method(bus, NAME, MANAGER_PATH, MANAGER, "CreateDevice", &error, &reply,
                                   "sss", "timer", id, json);
        ck_assert_msg(r >= 0, "CreateDevice timer %s: %s", json, error.message);
        reply = sd_bus_message_unref(reply);
        tu_assert_log_line(daemon_, id, "(I/O thread");
    }
    /* The slow plugin (ABI 1) has its devices on thread 0: one asked onto
     * thread 1 is refused. */
    expect_create_error("slow", "s3", "{\"io_thread\": 1}", "plugin ABI 1");
    expect_create_error("timer", "t3", "{\"io_thread\": 2}", "runs 2 I/O thread(s), 0 to 1");
    expect_create_error("timer", "t3", "{\"io_thread\": -1}", "io_thread");
    expect_create_error("timer", "t3", "{\"io_thread\": \"one\"}", "io_thread");

    /* A first device of a plugin that fails to be made does not tie the
     * plugin to the thread it asked for. */
    expect_create_error("poller", "p0", "{\"io_thread\": 1, \"busy\": \"yes\"}", "busy");
    int r = sd_bus_call_method(bus, NAME, MANAGER_PATH, MANAGER, "CreateDevice", &error, &reply,
                               "sss", "poller", "p0", "{\"io_thread\": 0}");
    ck_assert_msg(r >= 0, "CreateDevice poller on thread 0 after a failed one on 1: %s",
                  error.message);
    reply = sd_bus_message_unref(reply);
}
END_TEST

/* --io-threads takes 1 to 64, and says so. */
START_TEST(test_io_threads_option)
{
    const char *bad[] = {"0", "65", "two", "-1", ""};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        struct test_daemon *d;
        ck_assert_int_eq(test_daemon_new(&d), 0);
        const char *args[] = {"--no-bus", "--io-threads", bad[i]};
        for (size_t a = 0; a < ELEMENTSOF(args); a++)
            ck_assert_int_eq(test_daemon_add_arg(d, args[a]), 0);
        ck_assert_int_eq(tu_expect_start_failure(d), 1);
        tu_assert_log(d, "give a number from 1 to 64");
        test_daemon_free(d);
    }
}
END_TEST

/* ---- pollers ----------------------------------------------------------------------- */

#define POLLER_REG_QUEUE  0x0
#define POLLER_REG_DONE   0x4
#define POLLER_REG_ROUNDS 0x8

/* utime + stime of pid, in clock ticks. */
static unsigned long long cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* Fields after the ")" of the command name: state is field 3. */
    const char *p = strrchr(buf, ')');
    ck_assert_ptr_nonnull(p);
    unsigned long long utime = 0, stime = 0;
    ck_assert_int_eq(
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime), 2);
    return utime + stime;
}

/* One I/O thread, the devices given (type, id, json, ...), started. */
static struct test_daemon *one_thread_daemon(const char *const *devices)
{
    struct test_daemon *d;
    ck_assert_int_eq(test_daemon_new(&d), 0);
    use_plugins(d);
    const char *args[] = {"--io-threads", "1", "--no-bus"};
    for (size_t i = 0; i < ELEMENTSOF(args); i++)
        ck_assert_int_eq(test_daemon_add_arg(d, args[i]), 0);
    for (size_t i = 0; devices[i]; i += 3)
        ck_assert_int_eq(test_daemon_add_device(d, devices[i], devices[i + 1], devices[i + 2]), 0);
    tu_start(d);
    return d;
}

static uint32_t wait_done(struct vfu_client *c, uint32_t want)
{
    uint64_t end = test_now_ns() + 10000 * 1000000ull;
    uint32_t done;
    while ((done = tu_rd32(c, 0, POLLER_REG_DONE)) < want && test_now_ns() < end)
        usleep(1000);
    return done;
}

/* A poller does its work, then sleeps: an idle polling device costs no CPU,
 * and a new write wakes it. */
START_TEST(test_idle_poller_costs_nothing)
{
    struct test_daemon *d = one_thread_daemon((const char *const[]){"poller", "p0", NULL, NULL});
    struct vfu_client *c = tu_open(d, "p0");

    tu_wr32(c, 0, POLLER_REG_QUEUE, 20000);
    ck_assert_uint_eq(wait_done(c, 20000), 20000);
    usleep(100 * 1000); /* past its idle time (1 ms) */
    uint32_t rounds = tu_rd32(c, 0, POLLER_REG_ROUNDS);
    unsigned long long ticks = cpu_ticks(test_daemon_pid(d));
    usleep(1000 * 1000);
    unsigned long long used = cpu_ticks(test_daemon_pid(d)) - ticks;
    ck_assert_uint_eq(tu_rd32(c, 0, POLLER_REG_ROUNDS), rounds);
    long hz = sysconf(_SC_CLK_TCK);
    ck_assert_msg(used * 100 <= (unsigned long long)hz * 5,
                  "an idle poller cost muserd %llu of %ld ticks in a second", used, hz);

    tu_wr32(c, 0, POLLER_REG_QUEUE, 10);
    ck_assert_uint_eq(wait_done(c, 20010), 20010);
    vfu_client_free(c);
    tu_stop(d);
}
END_TEST

/* A poller that never sleeps does not starve the other device on its thread. */
START_TEST(test_busy_poller_starves_nobody)
{
    struct test_daemon *d = one_thread_daemon(
        (const char *const[]){"poller", "p1", "{\"busy\": true}", "timer", "t0", NULL, NULL});
    tu_assert_log_line(d, "poller device p1 on", "(I/O thread 0)");
    tu_assert_log_line(d, "timer device t0 on", "(I/O thread 0)");
    struct vfu_client *p = tu_open(d, "p1"), *t = tu_open(d, "t0");

    uint32_t rounds = tu_rd32(p, 0, POLLER_REG_ROUNDS);
    uint64_t start = test_now_ns(), worst = 0;
    for (int i = 0; i < 200; i++) {
        uint64_t t0 = test_now_ns();
        ck_assert_uint_eq(tu_rd32(t, TIMER_REGS_BAR, TIMER_REG_ID), TIMER_ID_MAGIC);
        uint64_t took = test_now_ns() - t0;
        worst = took > worst ? took : worst;
    }
    uint64_t total_ms = (test_now_ns() - start) / 1000000;
    ck_assert_msg(tu_rd32(p, 0, POLLER_REG_ROUNDS) - rounds > 1000,
                  "the busy poller did not run meanwhile");
    ck_assert_msg(total_ms < 5000, "200 reads beside a busy poller took %llu ms (worst %llu ms)",
                  (unsigned long long)total_ms, (unsigned long long)(worst / 1000000));
    vfu_client_free(t);
    vfu_client_free(p);
    tu_stop(d);
}
END_TEST

/* Two busy pollers on one thread both run, and a client flooding another
 * device with messages starves neither. */
START_TEST(test_pollers_take_turns)
{
    struct test_daemon *d =
        one_thread_daemon((const char *const[]){"poller", "p1", "{\"busy\": true}", "poller", "p2",
                                                "{\"busy\": true}", "timer", "t0", NULL, NULL});
    struct vfu_client *p1 = tu_open(d, "p1"), *p2 = tu_open(d, "p2"), *t = tu_open(d, "t0");

    uint32_t r1 = tu_rd32(p1, 0, POLLER_REG_ROUNDS), r2 = tu_rd32(p2, 0, POLLER_REG_ROUNDS);
    /* The flood: back-to-back reads of t0 for half a second. */
    uint64_t end = test_now_ns() + 500 * 1000000ull;
    while (test_now_ns() < end)
        ck_assert_uint_eq(tu_rd32(t, TIMER_REGS_BAR, TIMER_REG_ID), TIMER_ID_MAGIC);
    uint32_t d1 = tu_rd32(p1, 0, POLLER_REG_ROUNDS) - r1,
             d2 = tu_rd32(p2, 0, POLLER_REG_ROUNDS) - r2;
    ck_assert_msg(d1 > 1000 && d2 > 1000, "poller rounds beside a flood: p1 %u, p2 %u", d1, d2);
    vfu_client_free(t);
    vfu_client_free(p2);
    vfu_client_free(p1);
    tu_stop(d);
}
END_TEST

/* SIGTERM while a plugin does not return: muserd says so and exits (1)
 * within its shutdown bound rather than hang until systemd kills it. */
START_TEST(test_sigterm_with_a_stuck_plugin)
{
    struct test_daemon *d = one_thread_daemon(
        (const char *const[]){"slow", "s9", "{\"seconds\": 60}", "timer", "t0", NULL, NULL});
    struct slow_write w = {.c = tu_open(d, "s9")};
    pthread_t writer;
    ck_assert_int_eq(pthread_create(&writer, NULL, do_slow_write, &w), 0);
    usleep(300 * 1000);

    uint64_t start = test_now_ns();
    int status = -1;
    ck_assert_int_eq(kill(test_daemon_pid(d), SIGTERM), 0);
    ck_assert_int_eq(test_daemon_stop(d, 30000, &status), 0);
    uint64_t took_ms = (test_now_ns() - start) / 1000000;
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "muserd exit status %#x", status);
    ck_assert_msg(took_ms < 20000, "muserd took %llu ms to give up", (unsigned long long)took_ms);
    tu_assert_log(d, "a plugin does not return");
    pthread_join(writer, NULL); /* the connection died with muserd */
    ck_assert_int_lt(w.result, 0);
    vfu_client_free(w.c);
    test_daemon_free(d);
}
END_TEST

static Suite *threads_suite(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("io-threads");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_slow_device_delays_nothing_else);
    tcase_add_test(tc, test_calls_for_a_stuck_thread_wait_alone);
    tcase_add_test(tc, test_io_thread_config);
    suite_add_tcase(s, tc);
    TCase *poll = tcase_create("poller");
    tcase_set_timeout(poll, 60);
    tcase_add_test(poll, test_idle_poller_costs_nothing);
    tcase_add_test(poll, test_busy_poller_starves_nobody);
    tcase_add_test(poll, test_pollers_take_turns);
    tcase_add_test(poll, test_sigterm_with_a_stuck_plugin);
    suite_add_tcase(s, poll);
    TCase *opt = tcase_create("option");
    tcase_add_test(opt, test_io_threads_option);
    suite_add_tcase(s, opt);
    return s;
}

int main(void)
{
    return tu_run_suite(threads_suite());
}
