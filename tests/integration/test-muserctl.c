/* SPDX-License-Identifier: MIT */
/*
 * muserctl as an operator uses it: the real binary ($MUSERCTL_BIN, default
 * build/muserctl) against the real muserd on a private dbus-daemon. Types,
 * create with KEY=VALUE and with JSON, list and show in text and JSON, a VMM
 * connecting, monitor in the background seeing what happens meanwhile,
 * destroy, and the errors with their exit codes and sentences.
 */
#include <check.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers/child.h"
#include "helpers/dbus-daemon.h"
#include "helpers/testutil.h"

#define RUN_TIMEOUT_MS 20000

static struct test_bus *tbus;
static struct test_daemon *daemon_;

/* ---- running muserctl ------------------------------------------------------------ */

static const char *muserctl_bin(void)
{
    const char *p = getenv("MUSERCTL_BIN");
    return p && *p ? p : "build/muserctl";
}

/* Start muserctl [--address BUS] ARGS... with stdout and stderr piped to us. */
static void child_start(struct tu_child *c, const char *address, const char *const *args)
{
    const char *argv[32];
    size_t n = 0;

    argv[n++] = muserctl_bin();
    if (address) {
        argv[n++] = "--address";
        argv[n++] = address;
    }
    for (; *args; args++) {
        ck_assert_uint_lt(n, ELEMENTSOF(argv) - 1);
        argv[n++] = *args;
    }
    argv[n] = NULL;
    int r = tu_child_start(c, argv, NULL);
    ck_assert_msg(r == 0, "starting muserctl: %s", strerror(-r));
}

/* Wait for muserctl to exit; its exit status, or 128+signal. */
static int child_wait(struct tu_child *c)
{
    int status = tu_child_wait(c, RUN_TIMEOUT_MS);
    ck_assert_msg(status >= 0, "muserctl did not finish: stdout \"%s\" stderr \"%s\"",
                  tu_child_stdout(c), tu_child_stderr(c));
    return status;
}

/* Run muserctl to its end. */
struct run {
    int status;
    char *out, *err;
};

static struct run run_at_v(const char *address, const char *const *args)
{
    struct tu_child c;
    child_start(&c, address, args);
    int status = child_wait(&c);
    struct run r = {
        .status = status, .out = strdup(tu_child_stdout(&c)), .err = strdup(tu_child_stderr(&c))};
    tu_child_free(&c);
    return r;
}
#define run_at(address, ...) run_at_v(address, (const char *const[]){__VA_ARGS__, NULL})
#define run(...)             run_at(test_bus_address(tbus), __VA_ARGS__)

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
}

/* Exit status 0, and stderr quiet (under ASan: no leak report either). */
static void expect_ok(const struct run *r)
{
    ck_assert_msg(r->status == 0, "muserctl exited %d: %s", r->status, r->err);
    ck_assert_msg(!*r->err, "muserctl succeeded but said \"%s\"", r->err);
}

/* The exit status and a stderr sentence; nothing on stdout. */
static void expect_failure(const struct run *r, int status, const char *needle)
{
    ck_assert_msg(r->status == status, "muserctl exited %d, not %d (stderr \"%s\")", r->status,
                  status, r->err);
    ck_assert_msg(strncmp(r->err, "muserctl: ", 10) == 0, "stderr \"%s\"", r->err);
    ck_assert_msg(strstr(r->err, needle), "stderr \"%s\" lacks \"%s\"", r->err, needle);
    ck_assert_msg(!*r->out, "muserctl failed but printed \"%s\"", r->out);
}

static json_object *parse_json(const char *s)
{
    json_object *j = json_tokener_parse(s);
    ck_assert_msg(j, "not JSON: \"%s\"", s);
    return j;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v = NULL;
    ck_assert_msg(json_object_object_get_ex(o, key, &v), "no \"%s\" in %s", key,
                  json_object_to_json_string(o));
    return json_object_get_string(v);
}

static json_object *jget(json_object *o, const char *key)
{
    json_object *v = NULL;
    ck_assert_msg(json_object_object_get_ex(o, key, &v), "no \"%s\" in %s", key,
                  json_object_to_json_string(o));
    return v;
}

/* The line of text that contains needle (static buffer), or NULL. */
static const char *line_with(const char *text, const char *needle)
{
    static char line[1024];
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, "\n");
        if (len < sizeof(line)) {
            memcpy(line, p, len);
            line[len] = 0;
            if (strstr(line, needle))
                return line;
        }
        p += len + (p[len] == '\n');
    }
    return NULL;
}

static char *sock_path(const char *id)
{
    char *s;
    ck_assert_int_ge(asprintf(&s, "%s/%s.sock", test_daemon_runtime_dir(daemon_), id), 0);
    return s;
}

/* ---- fixtures -------------------------------------------------------------------- */

static void start_bus(void)
{
    int r = test_bus_start(NULL, &tbus);
    ck_assert_msg(r == 0, "starting dbus-daemon: %s", strerror(-r));
}

static void setup(void)
{
    start_bus();
    ck_assert_int_eq(test_daemon_new(&daemon_), 0);
    ck_assert_int_eq(test_daemon_add_arg(daemon_, "--bus-address"), 0);
    ck_assert_int_eq(test_daemon_add_arg(daemon_, test_bus_address(tbus)), 0);
    tu_start(daemon_); /* READY=1 comes after the name is ours */
}

static void teardown(void)
{
    if (daemon_)
        tu_stop(daemon_);
    daemon_ = NULL;
    test_bus_free(tbus);
    tbus = NULL;
}

/* ---- tests ----------------------------------------------------------------------- */

START_TEST(test_types)
{
    struct run r = run("types");
    expect_ok(&r);
    ck_assert_ptr_nonnull(line_with(r.out, "TYPE"));
    const char *ram = line_with(r.out, "ram.so");
    ck_assert_msg(ram && strncmp(ram, "ram ", 4) == 0 && strstr(ram, "RAM BAR"), "%s", r.out);
    ck_assert_ptr_nonnull(line_with(r.out, "timer.so"));
    run_free(&r);

    r = run("--json", "types");
    expect_ok(&r);
    json_object *types = parse_json(r.out);
    ck_assert(json_object_is_type(types, json_type_array));
    bool found = false;
    for (size_t i = 0; i < json_object_array_length(types); i++) {
        json_object *t = json_object_array_get_idx(types, i);
        if (strcmp(jstr(t, "Type"), "ram") == 0) {
            found = true;
            ck_assert_ptr_nonnull(strstr(jstr(t, "Plugin"), "ram.so"));
            ck_assert_ptr_nonnull(strstr(jstr(t, "Description"), "RAM"));
        }
    }
    ck_assert(found);
    json_object_put(types);
    run_free(&r);
}
END_TEST

START_TEST(test_create_list_show)
{
    _cleanup_free_ char *r0 = sock_path("r0"), *t0 = sock_path("t0"), *j0 = sock_path("j0");
    char want[PATH_MAX + 2];

    /* KEY=VALUE: digits are a number (muserd refuses a string for size). */
    struct run r = run("create", "ram", "r0", "size=65536");
    expect_ok(&r);
    snprintf(want, sizeof(want), "%s\n", r0);
    ck_assert_str_eq(r.out, want); /* just the socket, for $(...) */
    ck_assert_int_eq(access(r0, F_OK), 0);
    run_free(&r);

    r = run("create", "timer", "t0");
    expect_ok(&r);
    run_free(&r);

    /* --json followed by an object is the config; the output stays text. */
    r = run("create", "ram", "j0", "--json", "{\"size\":8192}");
    expect_ok(&r);
    snprintf(want, sizeof(want), "%s\n", j0);
    ck_assert_str_eq(r.out, want);
    run_free(&r);

    /* A leading zero keeps a value a string, as socket_mode needs; "..."
     * forces a string; a number is a gid to socket_group. */
    /* Ids nobody has when muserd may chown (root), else our own. */
    bool root = geteuid() == 0;
    unsigned uid = root ? 4242 : (unsigned)getuid(), gid_n = root ? 4343 : (unsigned)getgid();
    char gid[32], gid_arg[64], uid_s[32], uid_arg[64];
    snprintf(gid, sizeof(gid), "%u", gid_n);
    snprintf(gid_arg, sizeof(gid_arg), "socket_group=%s", gid);
    snprintf(uid_s, sizeof(uid_s), "%u", uid);
    snprintf(uid_arg, sizeof(uid_arg), "socket_owner=\"%s\"", uid_s);
    r = run("--json", "create", "ram", "m0", "socket_mode=0660", gid_arg, uid_arg);
    expect_ok(&r);
    json_object *created = parse_json(r.out);
    ck_assert_str_eq(jstr(created, "Id"), "m0");
    ck_assert_str_eq(jstr(created, "Path"), "/org/muserd1/device/m0");
    struct stat st;
    ck_assert_int_eq(stat(jstr(created, "SocketPath"), &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0660);
    ck_assert_uint_eq(st.st_uid, uid);
    ck_assert_uint_eq(st.st_gid, gid_n);
    json_object_put(created);
    run_free(&r);

    r = run("list");
    expect_ok(&r);
    ck_assert_msg(strncmp(r.out, "ID ", 3) == 0 && line_with(r.out, "SOCKET"), "%s", r.out);
    const char *line = line_with(r.out, "r0 ");
    ck_assert_msg(line && strstr(line, "ram") && strstr(line, "listening") && strstr(line, r0),
                  "list: %s", r.out);
    ck_assert_ptr_nonnull(line_with(r.out, t0));
    run_free(&r);

    r = run("list", "--json");
    expect_ok(&r);
    json_object *list = parse_json(r.out);
    ck_assert_uint_eq(json_object_array_length(list), 4);
    json_object *dev = json_object_array_get_idx(list, 1); /* sorted: j0 m0 r0 t0 */
    ck_assert_str_eq(jstr(dev, "Id"), "m0");
    ck_assert_str_eq(jstr(jget(dev, "Config"), "socket_mode"), "0660");
    ck_assert_str_eq(jstr(jget(dev, "Config"), "socket_group"), gid);
    ck_assert_str_eq(jstr(jget(dev, "Config"), "socket_owner"), uid_s);
    dev = json_object_array_get_idx(list, 2);
    ck_assert_str_eq(jstr(dev, "Id"), "r0");
    ck_assert_str_eq(jstr(dev, "Type"), "ram");
    ck_assert_str_eq(jstr(dev, "State"), "listening");
    ck_assert_str_eq(jstr(dev, "SocketPath"), r0);
    ck_assert_int_eq(json_object_get_int64(jget(jget(dev, "Config"), "size")), 65536);
    ck_assert_int_eq(json_object_get_int64(jget(jget(dev, "Client"), "pid")), 0);
    json_object_put(list);
    run_free(&r);

    r = run("show", "r0");
    expect_ok(&r);
    ck_assert_msg(line_with(r.out, "Id=r0") && line_with(r.out, "Type=ram") &&
                      line_with(r.out, "State=listening") && line_with(r.out, "Client=none") &&
                      line_with(r.out, "Config={\"size\":65536}") &&
                      line_with(r.out, "VendorId=0x") && line_with(r.out, "DeviceId=0x"),
                  "show: %s", r.out);
    snprintf(want, sizeof(want), "SocketPath=%s", r0);
    ck_assert_ptr_nonnull(line_with(r.out, want));
    run_free(&r);

    r = run("show", "j0", "--json");
    expect_ok(&r);
    dev = parse_json(r.out);
    ck_assert_int_eq(json_object_get_int64(jget(jget(dev, "Config"), "size")), 8192);
    ck_assert_str_eq(jstr(dev, "Type"), "ram");
    json_object_put(dev);
    run_free(&r);

    /* Without an id: muserd's own properties. */
    r = run("show");
    expect_ok(&r);
    ck_assert_ptr_nonnull(line_with(r.out, "DeviceCount=4"));
    ck_assert_ptr_nonnull(line_with(r.out, "Version="));
    run_free(&r);
}
END_TEST

/* Poll `show ID` until it has the line want. */
static bool wait_show(const char *id, const char *want)
{
    for (int i = 0; i < 100; i++) {
        struct run r = run("show", id);
        bool found = r.status == 0 && line_with(r.out, want);
        run_free(&r);
        if (found)
            return true;
        usleep(50 * 1000);
    }
    return false;
}

START_TEST(test_connected_client)
{
    _cleanup_free_ char *sock = sock_path("c0");
    char want[64];

    struct run r = run("create", "ram", "c0");
    expect_ok(&r);
    run_free(&r);

    struct vfu_client *c;
    int e = tu_connect(sock, vfu_client_qemu_caps_json, TU_TIMEOUT_MS, &c);
    ck_assert_msg(e == 0, "connecting to %s: %s", sock, strerror(-e));

    r = run("list");
    expect_ok(&r);
    const char *line = line_with(r.out, "c0 ");
    snprintf(want, sizeof(want), "%d", (int)getpid());
    ck_assert_msg(line && strstr(line, "connected") && strstr(line, want), "list: %s", r.out);
    run_free(&r);

    r = run("--json", "list");
    expect_ok(&r);
    json_object *list = parse_json(r.out);
    json_object *dev = json_object_array_get_idx(list, 0);
    ck_assert_str_eq(jstr(dev, "State"), "connected");
    ck_assert_int_eq(json_object_get_int64(jget(jget(dev, "Client"), "pid")), getpid());
    ck_assert_int_eq(json_object_get_int64(jget(jget(dev, "Client"), "uid")), getuid());
    json_object_put(list);
    run_free(&r);

    r = run("show", "c0");
    expect_ok(&r);
    snprintf(want, sizeof(want), "Client=pid %d uid %u", (int)getpid(), (unsigned)getuid());
    ck_assert_msg(line_with(r.out, "State=connected") && line_with(r.out, want), "show: %s", r.out);
    run_free(&r);

    /* The VMM goes: the device waits for the next one. */
    vfu_client_free(c);
    ck_assert(wait_show("c0", "State=listening"));
    ck_assert(wait_show("c0", "Client=none"));
}
END_TEST

/* Start `muserctl monitor` and wait until it says it listens. */
static void monitor_start(struct tu_child *m, bool json)
{
    const char *const args_text[] = {"monitor", NULL};
    const char *const args_json[] = {"monitor", "--json", NULL};
    child_start(m, test_bus_address(tbus), json ? args_json : args_text);
    ck_assert_msg(tu_child_read(m, RUN_TIMEOUT_MS, "Monitoring", true),
                  "monitor did not start: stderr \"%s\"", tu_child_stderr(m));
}

/* Ctrl-C ends monitor with status 0. */
static void monitor_stop(struct tu_child *m)
{
    ck_assert_int_eq(kill(m->pid, SIGINT), 0);
    ck_assert_int_eq(child_wait(m), 0);
}

START_TEST(test_monitor_text)
{
    _cleanup_free_ char *sock = sock_path("mon0");
    struct tu_child m;
    char want[128];

    monitor_start(&m, false);
    struct run r = run("create", "timer", "mon0");
    expect_ok(&r);
    run_free(&r);
    ck_assert_msg(
        tu_child_read(&m, TU_TIMEOUT_MS, "DeviceNew mon0 /org/muserd1/device/mon0\n", false),
        "monitor: %s", tu_child_stdout(&m));

    struct vfu_client *c;
    ck_assert_int_eq(tu_connect(sock, vfu_client_qemu_caps_json, TU_TIMEOUT_MS, &c), 0);
    snprintf(want, sizeof(want), "PropertiesChanged mon0 State=connected Client=pid %d",
             (int)getpid());
    ck_assert_msg(tu_child_read(&m, TU_TIMEOUT_MS, want, false), "monitor: %s",
                  tu_child_stdout(&m));
    vfu_client_free(c);
    ck_assert_msg(tu_child_read(&m, TU_TIMEOUT_MS, "PropertiesChanged mon0 State=listening", false),
                  "monitor: %s", tu_child_stdout(&m));

    r = run("destroy", "mon0");
    expect_ok(&r);
    run_free(&r);
    ck_assert_msg(
        tu_child_read(&m, TU_TIMEOUT_MS, "DeviceRemoved mon0 /org/muserd1/device/mon0\n", false),
        "monitor: %s", tu_child_stdout(&m));
    ck_assert_ptr_nonnull(line_with(tu_child_stdout(&m), "DeviceCount=0"));
    monitor_stop(&m);
    tu_child_free(&m);
}
END_TEST

/* Every line of out parsed; the first whose "event" is event (and "id" id). */
static json_object *find_event(json_object *events, const char *event, const char *id)
{
    for (size_t i = 0; i < json_object_array_length(events); i++) {
        json_object *e = json_object_array_get_idx(events, i);
        json_object *v;
        if (strcmp(jstr(e, "event"), event) != 0)
            continue;
        if (id &&
            (!json_object_object_get_ex(e, "id", &v) || strcmp(json_object_get_string(v), id) != 0))
            continue;
        return e;
    }
    return NULL;
}

static json_object *parse_lines(const char *out)
{
    json_object *events = json_object_new_array();
    for (const char *p = out; *p;) {
        size_t len = strcspn(p, "\n");
        ck_assert_msg(p[len] == '\n', "an unfinished line: \"%s\"", p);
        char *line = strndup(p, len);
        json_object_array_add(events, parse_json(line));
        free(line);
        p += len + 1;
    }
    return events;
}

START_TEST(test_monitor_json)
{
    _cleanup_free_ char *sock = sock_path("mon1");
    struct tu_child m;

    monitor_start(&m, true);
    struct run r = run("create", "ram", "mon1", "size=4096");
    expect_ok(&r);
    run_free(&r);
    struct vfu_client *c;
    ck_assert_int_eq(tu_connect(sock, vfu_client_qemu_caps_json, TU_TIMEOUT_MS, &c), 0);
    ck_assert(tu_child_read(&m, TU_TIMEOUT_MS, "\"connected\"", false));
    vfu_client_free(c);
    r = run("destroy", "mon1");
    expect_ok(&r);
    run_free(&r);
    ck_assert(tu_child_read(&m, TU_TIMEOUT_MS, "\"DeviceRemoved\"", false));

    /* muserd stopping is an event too; monitor keeps waiting for it. */
    tu_stop(daemon_);
    daemon_ = NULL;
    ck_assert_msg(tu_child_read(&m, TU_TIMEOUT_MS, "{\"event\":\"MuserdStopped\"}\n", false),
                  "monitor: %s", tu_child_stdout(&m));
    monitor_stop(&m);

    json_object *events = parse_lines(tu_child_stdout(&m));
    json_object *e = find_event(events, "DeviceNew", "mon1");
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(jstr(e, "path"), "/org/muserd1/device/mon1");
    e = find_event(events, "PropertiesChanged", "mon1");
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(jstr(e, "interface"), "org.muserd1.Device");
    ck_assert_str_eq(jstr(jget(e, "changed"), "State"), "connected");
    ck_assert_int_eq(json_object_get_int64(jget(jget(jget(e, "changed"), "Client"), "pid")),
                     getpid());
    ck_assert_ptr_nonnull(find_event(events, "DeviceRemoved", "mon1"));
    json_object_put(events);
    tu_child_free(&m);
}
END_TEST

START_TEST(test_destroy)
{
    _cleanup_free_ char *sock = sock_path("d0");

    struct run r = run("create", "timer", "d0");
    expect_ok(&r);
    run_free(&r);
    r = run("destroy", "d0");
    expect_ok(&r);
    ck_assert_str_eq(r.out, "");
    run_free(&r);
    ck_assert_int_eq(access(sock, F_OK), -1);

    r = run("--json", "list");
    expect_ok(&r);
    ck_assert_str_eq(r.out, "[]\n");
    run_free(&r);
    r = run("list");
    expect_ok(&r);
    ck_assert_str_eq(r.out, "No devices.\n");
    run_free(&r);

    r = run("destroy", "d0");
    expect_failure(&r, 1, "'d0'");
    run_free(&r);
    r = run("show", "d0");
    expect_failure(&r, 1, "No device with id 'd0'");
    run_free(&r);
}
END_TEST

START_TEST(test_errors)
{
    struct run r = run("create", "timer", "dup");
    expect_ok(&r);
    run_free(&r);

    /* muserd's sentences, as they are. */
    r = run("create", "nvme9", "x");
    expect_failure(&r, 1, "No device type 'nvme9'");
    ck_assert_ptr_nonnull(strstr(r.err, "available: nvme, ram, timer"));
    run_free(&r);
    r = run("create", "timer", "dup");
    expect_failure(&r, 1, "'dup' already exists");
    run_free(&r);
    r = run("create", "ram", "x", "bogus=1");
    expect_failure(&r, 1, "muserctl: Unknown config key 'bogus'; this device type accepts: size");
    run_free(&r);
    r = run("create", "ram", "x", "size=4k");
    expect_failure(&r, 1, "'size' must be a non-negative integer");
    run_free(&r);
    r = run("create", "ram", "x", "--json", "{\"size\":");
    expect_failure(&r, 1, "not valid JSON");
    run_free(&r);
    r = run("create", "timer", "../x");
    expect_failure(&r, 1, "'../x'");
    run_free(&r);

    /* Usage errors: 2, and muserd is not asked. */
    static const char *const usage[][6] = {
        {NULL},
        {"frobnicate", NULL},
        {"create", "ram", NULL},
        {"create", "ram", "x", "novalue", NULL},
        {"create", "ram", "x", "size=1", "size=2", NULL},
        {"create", "ram", "x", "size=1", "--json", "{}"},
        {"list", "extra", NULL},
        {"show", "a", "b", NULL},
        {"destroy", NULL},
        {"--json", "{}", "list", NULL},
        {"--bogus-option", "list", NULL},
    };
    for (size_t i = 0; i < ELEMENTSOF(usage); i++) {
        const char *args[8] = {0};
        for (size_t k = 0; k < 6 && usage[i][k]; k++)
            args[k] = usage[i][k];
        struct tu_child c;
        child_start(&c, test_bus_address(tbus), args);
        int status = child_wait(&c);
        ck_assert_msg(status == 2, "%s %s: exit %d, stderr \"%s\"", args[0] ? args[0] : "",
                      args[1] ? args[1] : "", status, tu_child_stderr(&c));
        ck_assert_str_eq(tu_child_stdout(&c), "");
        ck_assert_ptr_nonnull(strstr(tu_child_stderr(&c), "muserctl: "));
        tu_child_free(&c);
    }

    /* None of the failures left a device behind. */
    r = run("show");
    expect_ok(&r);
    ck_assert_ptr_nonnull(line_with(r.out, "DeviceCount=1"));
    run_free(&r);
}
END_TEST

START_TEST(test_no_daemon)
{
    char want[PATH_MAX + 64];

    /* The bus is there, muserd is not. */
    struct run r = run("list");
    snprintf(want, sizeof(want),
             "muserd is not running on the bus at %s (org.muserd1 has no owner); start it with "
             "muserd --bus-address %s",
             test_bus_address(tbus), test_bus_address(tbus));
    expect_failure(&r, 1, want);
    run_free(&r);
    r = run("create", "timer", "x");
    expect_failure(&r, 1, "org.muserd1 has no owner");
    run_free(&r);

    /* No bus at all. */
    char address[PATH_MAX + 16];
    snprintf(address, sizeof(address), "unix:path=%s/no-such-bus", test_bus_dir(tbus));
    r = run_at(address, "types");
    snprintf(want, sizeof(want), "Cannot connect to the bus at %s", address);
    expect_failure(&r, 1, want);
    run_free(&r);

    /* monitor waits for muserd instead of failing. */
    struct tu_child m;
    monitor_start(&m, false);
    ck_assert_ptr_nonnull(strstr(tu_child_stderr(&m), "muserd is not running"));
    monitor_stop(&m);
    tu_child_free(&m);
}
END_TEST

static Suite *muserctl_suite(void)
{
    Suite *s = suite_create("muserctl");
    TCase *tc = tcase_create("daemon");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_types);
    tcase_add_test(tc, test_create_list_show);
    tcase_add_test(tc, test_connected_client);
    tcase_add_test(tc, test_monitor_text);
    tcase_add_test(tc, test_monitor_json);
    tcase_add_test(tc, test_destroy);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("no-daemon");
    tcase_add_checked_fixture(tc, start_bus, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_no_daemon);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(muserctl_suite());
}
