/* SPDX-License-Identifier: MIT */
/*
 * muserd managed over D-Bus: a private dbus-daemon, the real muserd with
 * --bus-address, and what an operator does with sd-bus and busctl: list
 * types, create, inspect, watch a VMM connect, destroy, and get named errors.
 */
#include <check.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers/dbus-daemon.h"
#include "helpers/testutil.h"

#define NAME         "org.muserd1"
#define MANAGER_PATH "/org/muserd1"
#define MANAGER      "org.muserd1.Manager"
#define DEVICE       "org.muserd1.Device"

static struct test_bus *tbus;
static struct test_daemon *daemon_;
static sd_bus *bus;

/* ---- setup -------------------------------------------------------------------- */

static void start_bus(const char *extra_config)
{
    int r = test_bus_start(extra_config, &tbus);
    ck_assert_msg(r == 0, "starting dbus-daemon: %s", strerror(-r));
}

/* muserd on our bus with extra arguments (NULL-terminated). */
static void start_muserd(const char *const *args)
{
    ck_assert_int_eq(test_daemon_new(&daemon_), 0);
    ck_assert_int_eq(test_daemon_add_arg(daemon_, "--bus-address"), 0);
    ck_assert_int_eq(test_daemon_add_arg(daemon_, test_bus_address(tbus)), 0);
    for (; args && *args; args++)
        ck_assert_int_eq(test_daemon_add_arg(daemon_, *args), 0);
    tu_start(daemon_);
    ck_assert_int_eq(test_bus_connect(test_bus_address(tbus), &bus), 0);
    /* READY=1 came only after the name was ours: no waiting here. */
    ck_assert_int_eq(test_bus_name_has_owner(bus, NAME), 1);
    ck_assert_int_eq(test_bus_wait_name(test_bus_address(tbus), NAME, TU_TIMEOUT_MS), 0);
}

static void setup(void)
{
    start_bus(NULL);
    start_muserd(NULL);
}

static void teardown(void)
{
    bus = sd_bus_flush_close_unref(bus);
    if (daemon_)
        tu_stop(daemon_); /* exit 0: no leak under ASan */
    daemon_ = NULL;
    test_bus_free(tbus);
    tbus = NULL;
}

/* ---- calls -------------------------------------------------------------------- */

/* Call a method; returns 0 or -errno with *error set (caller frees both). */
static int call(sd_bus_error *error, sd_bus_message **reply, const char *path, const char *iface,
                const char *member, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int r = sd_bus_call_methodv(bus, NAME, path, iface, member, error, reply, types, ap);
    va_end(ap);
    return r;
}

/* CreateDevice, asserting success; returns the object path (malloc()ed). */
static char *create(const char *type, const char *id, const char *json)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    const char *path;

    int r = call(&error, &reply, MANAGER_PATH, MANAGER, "CreateDevice", "sss", type, id, json);
    ck_assert_msg(r >= 0, "CreateDevice %s %s: %s: %s", type, id, error.name, error.message);
    ck_assert_int_ge(sd_bus_message_read(reply, "o", &path), 0);
    char *copy = strdup(path);
    sd_bus_message_unref(reply);
    return copy;
}

/* Expect a named error whose message contains needle. */
static void expect_error(const sd_bus_error *error, int r, const char *name, const char *needle)
{
    ck_assert_msg(r < 0, "call succeeded, expected %s", name);
    ck_assert_msg(sd_bus_error_has_name(error, name), "got %s (%s), expected %s", error->name,
                  error->message, name);
    ck_assert_msg(error->message && strstr(error->message, needle),
                  "error message \"%s\" lacks \"%s\"", error->message, needle);
}

static void expect_create_error(const char *type, const char *id, const char *json,
                                const char *name, const char *needle)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    int r = call(&error, NULL, MANAGER_PATH, MANAGER, "CreateDevice", "sss", type, id, json);
    expect_error(&error, r, name, needle);
    sd_bus_error_free(&error);
}

static char *get_string(const char *path, const char *iface, const char *property)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    char *s = NULL;
    int r = sd_bus_get_property_string(bus, NAME, path, iface, property, &error, &s);
    ck_assert_msg(r >= 0, "Get %s.%s on %s: %s", iface, property, path, error.message);
    return s;
}

static void assert_string(const char *path, const char *iface, const char *property,
                          const char *want)
{
    char *s = get_string(path, iface, property);
    ck_assert_str_eq(s, want);
    free(s);
}

static uint32_t get_device_count(void)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    uint32_t n = 0;
    ck_assert_int_ge(sd_bus_get_property_trivial(bus, NAME, MANAGER_PATH, MANAGER, "DeviceCount",
                                                 &error, 'u', &n),
                     0);
    return n;
}

static void get_client(const char *path, uint32_t *pid, uint32_t *uid)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    ck_assert_int_ge(sd_bus_get_property(bus, NAME, path, DEVICE, "Client", &error, &reply, "(uu)"),
                     0);
    ck_assert_int_ge(sd_bus_message_read(reply, "(uu)", pid, uid), 0);
    sd_bus_message_unref(reply);
}

/* ---- signals ------------------------------------------------------------------- */

struct seen {
    const char *path;
    int connected, listening; /* State values seen in PropertiesChanged */
    int client_changed;
    int device_new, device_removed, added, removed, count_changed;
};

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
    struct seen *s = userdata;
    const char *iface, *prop, *state;

    if (sd_bus_message_read(m, "s", &iface) < 0 ||
        sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
        return 0;
    while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
        if (sd_bus_message_read(m, "s", &prop) < 0)
            return 0;
        if (strcmp(prop, "State") == 0 && sd_bus_message_read(m, "v", "s", &state) >= 0) {
            if (strcmp(state, "connected") == 0)
                s->connected++;
            else
                s->listening++;
        } else if (strcmp(prop, "DeviceCount") == 0) {
            s->count_changed++;
            sd_bus_message_skip(m, "v");
        } else {
            if (strcmp(prop, "Client") == 0)
                s->client_changed++;
            sd_bus_message_skip(m, "v");
        }
        sd_bus_message_exit_container(m);
    }
    return 0;
}

static int on_manager_signal(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
    struct seen *s = userdata;
    const char *id, *path;

    if (sd_bus_message_read(m, "so", &id, &path) < 0 || strcmp(path, s->path) != 0)
        return 0;
    if (sd_bus_message_is_signal(m, MANAGER, "DeviceNew"))
        s->device_new++;
    else
        s->device_removed++;
    return 0;
}

static int on_object_manager(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
    struct seen *s = userdata;
    const char *path;

    if (sd_bus_message_read(m, "o", &path) < 0 || strcmp(path, s->path) != 0)
        return 0;
    if (sd_bus_message_is_signal(m, "org.freedesktop.DBus.ObjectManager", "InterfacesAdded"))
        s->added++;
    else
        s->removed++;
    return 0;
}

static void watch(struct seen *s, const char *path)
{
    s->path = path;
    ck_assert_int_ge(sd_bus_match_signal(bus, NULL, NAME, path, "org.freedesktop.DBus.Properties",
                                         "PropertiesChanged", on_properties_changed, s),
                     0);
    ck_assert_int_ge(sd_bus_match_signal(bus, NULL, NAME, MANAGER_PATH,
                                         "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                         on_properties_changed, s),
                     0);
    ck_assert_int_ge(
        sd_bus_match_signal(bus, NULL, NAME, MANAGER_PATH, MANAGER, NULL, on_manager_signal, s), 0);
    ck_assert_int_ge(sd_bus_match_signal(bus, NULL, NAME, MANAGER_PATH,
                                         "org.freedesktop.DBus.ObjectManager", NULL,
                                         on_object_manager, s),
                     0);
}

/* Dispatch until *counter >= want; false on timeout. */
static bool pump_until(const int *counter, int want)
{
    uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    while (*counter < want) {
        int r = sd_bus_process(bus, NULL);
        ck_assert_int_ge(r, 0);
        if (r > 0)
            continue;
        if (test_now_ns() > deadline)
            return false;
        sd_bus_wait(bus, 100000);
    }
    return true;
}

/* ---- tests --------------------------------------------------------------------- */

START_TEST(test_types_create_list)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    const char *type, *file, *description;
    bool timer = false, ram = false;

    ck_assert_int_ge(call(&error, &reply, MANAGER_PATH, MANAGER, "ListDeviceTypes", ""), 0);
    ck_assert_int_ge(sd_bus_message_enter_container(reply, 'a', "(sss)"), 0);
    while (sd_bus_message_read(reply, "(sss)", &type, &file, &description) > 0) {
        ck_assert_msg(strstr(file, ".so") && *description, "type %s: %s, %s", type, file,
                      description);
        timer |= strcmp(type, "timer") == 0 && strstr(file, "timer.so");
        ram |= strcmp(type, "ram") == 0 && strstr(file, "ram.so");
    }
    ck_assert(timer && ram);
    reply = sd_bus_message_unref(reply);

    struct seen seen = {0};
    watch(&seen, "/org/muserd1/device/t0");
    ck_assert_uint_eq(get_device_count(), 0);
    char *t0 = create("timer", "t0", "");
    char *r0 = create("ram", "r-0", "{\"size\": 65536}");
    ck_assert_str_eq(t0, "/org/muserd1/device/t0");
    ck_assert_str_eq(r0, "/org/muserd1/device/r_2d0"); /* sd_bus_path_encode escaping */
    ck_assert(pump_until(&seen.device_new, 1));
    ck_assert(pump_until(&seen.added, 1));
    ck_assert(pump_until(&seen.count_changed, 2));
    ck_assert_uint_eq(get_device_count(), 2);

    /* ListDevices: both, listening, with their paths. */
    const char *id, *state, *path;
    int n = 0;
    ck_assert_int_ge(call(&error, &reply, MANAGER_PATH, MANAGER, "ListDevices", ""), 0);
    ck_assert_int_ge(sd_bus_message_enter_container(reply, 'a', "(ssso)"), 0);
    while (sd_bus_message_read(reply, "(ssso)", &id, &type, &state, &path) > 0) {
        n++;
        ck_assert_str_eq(state, "listening");
        ck_assert_str_eq(path, strcmp(id, "t0") == 0 ? t0 : r0);
        ck_assert_str_eq(type, strcmp(id, "t0") == 0 ? "timer" : "ram");
    }
    ck_assert_int_eq(n, 2);
    reply = sd_bus_message_unref(reply);

    /* GetDevice gives the same path. */
    ck_assert_int_ge(call(&error, &reply, MANAGER_PATH, MANAGER, "GetDevice", "s", "r-0"), 0);
    ck_assert_int_ge(sd_bus_message_read(reply, "o", &path), 0);
    ck_assert_str_eq(path, r0);
    reply = sd_bus_message_unref(reply);

    /* Properties. */
    assert_string(r0, DEVICE, "Id", "r-0");
    assert_string(r0, DEVICE, "Type", "ram");
    assert_string(r0, DEVICE, "State", "listening");
    assert_string(r0, DEVICE, "Config", "{\"size\":65536}");
    assert_string(t0, DEVICE, "Config", "{}");
    char *sock = get_string(r0, DEVICE, "SocketPath");
    ck_assert_str_eq(sock, test_daemon_socket(daemon_, "r-0"));
    struct stat st;
    ck_assert_int_eq(stat(sock, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    free(sock);
    uint32_t pid = 1, uid = 1;
    get_client(t0, &pid, &uid);
    ck_assert_uint_eq(pid, 0);
    ck_assert_uint_eq(uid, 0);
    uint16_t vendor = 0, device = 0;
    ck_assert_int_ge(
        sd_bus_get_property_trivial(bus, NAME, t0, DEVICE, "VendorId", &error, 'q', &vendor), 0);
    ck_assert_int_ge(
        sd_bus_get_property_trivial(bus, NAME, t0, DEVICE, "DeviceId", &error, 'q', &device), 0);
    ck_assert_uint_ne(vendor, 0);
    ck_assert_uint_ne(vendor, 0xffff);
    assert_string(MANAGER_PATH, MANAGER, "Version", "0.1.0");
    assert_string(MANAGER_PATH, MANAGER, "RuntimeDirectory", test_daemon_runtime_dir(daemon_));

    /* The standard ObjectManager knows both devices. */
    ck_assert_int_ge(call(&error, &reply, MANAGER_PATH, "org.freedesktop.DBus.ObjectManager",
                          "GetManagedObjects", ""),
                     0);
    n = 0;
    ck_assert_int_ge(sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}"), 0);
    while (sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}") > 0) {
        ck_assert_int_ge(sd_bus_message_read(reply, "o", &path), 0);
        n += strcmp(path, t0) == 0 || strcmp(path, r0) == 0;
        ck_assert_int_ge(sd_bus_message_skip(reply, "a{sa{sv}}"), 0);
        ck_assert_int_ge(sd_bus_message_exit_container(reply), 0);
    }
    ck_assert_int_eq(n, 2);
    sd_bus_message_unref(reply);

    /* Reset, and Destroy through the device object itself. */
    ck_assert_int_ge(call(&error, NULL, t0, DEVICE, "Reset", ""), 0);
    ck_assert_int_ge(call(&error, NULL, t0, DEVICE, "Destroy", ""), 0);
    ck_assert(pump_until(&seen.device_removed, 1));
    ck_assert(pump_until(&seen.removed, 1));
    ck_assert_uint_eq(get_device_count(), 1);
    free(t0);
    free(r0);
}
END_TEST

START_TEST(test_connect_and_destroy)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    struct seen seen = {0};
    pid_t muserd = test_daemon_pid(daemon_);

    int fds_before = tu_count_fds(muserd);
    ck_assert_int_gt(fds_before, 0);
    char *want = NULL;
    ck_assert_int_ge(sd_bus_path_encode("/org/muserd1/device", "vm1-t", &want), 0);
    watch(&seen, want);
    char *path = create("timer", "vm1-t", "");
    ck_assert_str_eq(path, want);
    char *sock = get_string(path, DEVICE, "SocketPath");

    /* A VMM connects: State and Client change, and say so. */
    struct vfu_client *c;
    int r = tu_connect(sock, vfu_client_qemu_caps_json, TU_TIMEOUT_MS, &c);
    ck_assert_msg(r == 0, "connecting to %s: %s", sock, strerror(-r));
    ck_assert_msg(pump_until(&seen.connected, 1), "no PropertiesChanged State=connected");
    ck_assert_int_ge(seen.client_changed, 1);
    assert_string(path, DEVICE, "State", "connected");
    uint32_t pid = 0, uid = 1;
    get_client(path, &pid, &uid);
    ck_assert_uint_eq(pid, (uint32_t)getpid());
    ck_assert_uint_eq(uid, (uint32_t)getuid());

    /* Destroy while connected: the VMM sees EOF, the socket file goes. */
    ck_assert_int_ge(call(&error, NULL, MANAGER_PATH, MANAGER, "DestroyDevice", "s", "vm1-t"), 0);
    ck_assert_int_eq(tu_wait_closed(vfu_client_fd(c), TU_TIMEOUT_MS), 1);
    ck_assert_int_eq(access(sock, F_OK), -1);
    ck_assert(pump_until(&seen.device_removed, 1));
    ck_assert(pump_until(&seen.removed, 1));
    vfu_client_free(c);

    r = call(&error, NULL, MANAGER_PATH, MANAGER, "GetDevice", "s", "vm1-t");
    expect_error(&error, r, "org.muserd1.Error.NoSuchDevice", "vm1-t");
    sd_bus_error_free(&error);
    ck_assert_uint_eq(get_device_count(), 0);
    /* Nothing of the device is left open. */
    ck_assert_int_eq(tu_count_fds(muserd), fds_before);
    free(sock);
    free(path);
    free(want); /* seen.path, used by the matches until here */
}
END_TEST

START_TEST(test_errors)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;

    free(create("timer", "dup", ""));
    expect_create_error("nvme9", "x", "", "org.muserd1.Error.NoSuchType", "available: ");
    expect_create_error("nvme9", "x", "", "org.muserd1.Error.NoSuchType", "timer");
    expect_create_error("timer", "dup", "", "org.muserd1.Error.DeviceExists", "'dup'");
    expect_create_error("timer", "../x", "", "org.muserd1.Error.InvalidId", "'../x'");
    expect_create_error("timer", "", "", "org.muserd1.Error.InvalidId", "letters");
    expect_create_error("ram", "r1", "{\"size\":", "org.muserd1.Error.InvalidConfig",
                        "not valid JSON");
    expect_create_error("ram", "r1", "{\"sise\":4096}", "org.muserd1.Error.InvalidConfig",
                        "Unknown config key 'sise'");
    expect_create_error("ram", "r1", "{\"size\":\"4k\"}", "org.muserd1.Error.InvalidConfig",
                        "'size' must be a non-negative integer");
    /* A value the plugin itself refuses. */
    expect_create_error("ram", "r1", "{\"size\":1000}", "org.muserd1.Error.InvalidConfig",
                        "power of two");

    int r = call(&error, NULL, MANAGER_PATH, MANAGER, "DestroyDevice", "s", "nope");
    expect_error(&error, r, "org.muserd1.Error.NoSuchDevice", "'nope'");
    sd_bus_error_free(&error);
    r = call(&error, NULL, MANAGER_PATH, MANAGER, "DestroyDevice", "s", "../x");
    expect_error(&error, r, "org.muserd1.Error.InvalidId", "'../x'");
    sd_bus_error_free(&error);
    /* A device object that does not exist is not there at all. */
    r = call(&error, NULL, "/org/muserd1/device/nope", DEVICE, "Destroy", "");
    ck_assert_int_lt(r, 0);
    sd_bus_error_free(&error);
    /* None of the failures left a device behind. */
    ck_assert_uint_eq(get_device_count(), 1);
}
END_TEST

/* Collapse whitespace and drop it between tags: formatting is not the interface. */
static char *normalize(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    bool space = false;
    ck_assert_ptr_nonnull(out);
    for (; *s; s++) {
        if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') {
            space = true;
            continue;
        }
        if (space && o > out && o[-1] != '>' && *s != '<')
            *o++ = ' ';
        space = false;
        *o++ = *s;
    }
    *o = 0;
    return out;
}

/* The normalized <interface name="NAME">...</interface> element of xml. */
static char *interface_element(const char *xml, const char *name)
{
    char open[128];
    snprintf(open, sizeof(open), "<interface name=\"%s\">", name);
    char *n = normalize(xml);
    char *start = strstr(n, open);
    ck_assert_msg(start, "no interface %s in %s", name, n);
    char *end = strstr(start, "</interface>");
    ck_assert_ptr_nonnull(end);
    end[strlen("</interface>")] = 0;
    char *copy = strdup(start);
    free(n);
    return copy;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "re");
    ck_assert_msg(f, "cannot open %s (run from the source tree)", path);
    char *buf = NULL;
    size_t len = 0;
    ck_assert_int_gt(getdelim(&buf, &len, 0, f), 0);
    fclose(f);
    return buf;
}

static void assert_introspection(const char *path, const char *iface, const char *file)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    const char *xml;

    ck_assert_int_ge(
        call(&error, &reply, path, "org.freedesktop.DBus.Introspectable", "Introspect", ""), 0);
    ck_assert_int_ge(sd_bus_message_read(reply, "s", &xml), 0);
    char *served = interface_element(xml, iface);
    char *text = read_file(file);
    char *checked_in = interface_element(text, iface);
    ck_assert_msg(strcmp(served, checked_in) == 0,
                  "%s differs from what muserd serves; muserd serves:\n%s", file, xml);
    free(served);
    free(checked_in);
    free(text);
    sd_bus_message_unref(reply);
}

START_TEST(test_introspection_matches_xml)
{
    free(create("timer", "i0", ""));
    assert_introspection(MANAGER_PATH, MANAGER, "dbus/org.muserd1.Manager.xml");
    assert_introspection("/org/muserd1/device/i0", DEVICE, "dbus/org.muserd1.Device.xml");
}
END_TEST

/* Run busctl as an operator would; returns its exit status, output in out. */
static int busctl(char *out, size_t size, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "busctl --address='%s' %s 2>&1", test_bus_address(tbus), args);
    FILE *p = popen(cmd, "r");
    ck_assert_msg(p, "cannot run busctl");
    size_t n = fread(out, 1, size - 1, p);
    out[n] = 0;
    int status = pclose(p);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 127, "busctl not found: %s", out);
    return WEXITSTATUS(status);
}

START_TEST(test_busctl)
{
    char out[4096];

    ck_assert_int_eq(busctl(out, sizeof(out),
                            "call " NAME " " MANAGER_PATH " " MANAGER " CreateDevice sss "
                            "timer cli0 '{}'"),
                     0);
    ck_assert_str_eq(out, "o \"/org/muserd1/device/cli0\"\n");
    ck_assert_int_eq(busctl(out, sizeof(out),
                            "get-property " NAME " /org/muserd1/device/cli0 " DEVICE " State Type"),
                     0);
    ck_assert_str_eq(out, "s \"listening\"\ns \"timer\"\n");
    ck_assert_int_eq(
        busctl(out, sizeof(out), "call " NAME " " MANAGER_PATH " " MANAGER " ListDevices"), 0);
    ck_assert_str_eq(out,
                     "a(ssso) 1 \"cli0\" \"timer\" \"listening\" \"/org/muserd1/device/cli0\"\n");
    ck_assert_int_ne(busctl(out, sizeof(out),
                            "call " NAME " " MANAGER_PATH " " MANAGER
                            " CreateDevice sss nvme9 x ''"),
                     0);
    ck_assert_msg(strstr(out, "No device type 'nvme9'"), "busctl said: %s", out);
    ck_assert_int_eq(
        busctl(out, sizeof(out), "call " NAME " " MANAGER_PATH " " MANAGER " DestroyDevice s cli0"),
        0);
    ck_assert_uint_eq(get_device_count(), 0);
}
END_TEST

/* Bus policy: with dbus/org.muserd1.conf in force, a user outside group
 * muserd may read properties, introspect and list, but not create, reset or
 * destroy devices. */
static int as_nobody(const char *address)
{
    sd_bus *b = NULL;
    sd_bus_error error = SD_BUS_ERROR_NULL;
    uint32_t n = 99;

    if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
        return 10;
    if (test_bus_connect(address, &b) < 0)
        return 11;
    if (sd_bus_get_property_trivial(b, NAME, MANAGER_PATH, MANAGER, "DeviceCount", &error, 'u',
                                    &n) < 0 ||
        n != 1)
        return 12;
    if (sd_bus_call_method(b, NAME, MANAGER_PATH, "org.freedesktop.DBus.Introspectable",
                           "Introspect", &error, NULL, "") < 0)
        return 13;
    /* The read-only Manager methods are for everyone, as `muserctl list` is. */
    sd_bus_message *reply = NULL;
    if (sd_bus_call_method(b, NAME, MANAGER_PATH, MANAGER, "ListDevices", &error, &reply, "") < 0 ||
        sd_bus_message_enter_container(reply, 'a', "(ssso)") <= 0 ||
        sd_bus_message_skip(reply, "(ssso)") < 0 || sd_bus_message_at_end(reply, false) <= 0)
        return 16;
    reply = sd_bus_message_unref(reply);
    if (sd_bus_call_method(b, NAME, MANAGER_PATH, MANAGER, "GetDevice", &error, NULL, "s", "p0") <
        0)
        return 17;
    int r = sd_bus_call_method(b, NAME, MANAGER_PATH, MANAGER, "CreateDevice", &error, NULL, "sss",
                               "timer", "evil", "");
    if (r >= 0 || !sd_bus_error_has_name(&error, SD_BUS_ERROR_ACCESS_DENIED))
        return 14;
    sd_bus_error_free(&error);
    r = sd_bus_call_method(b, NAME, "/org/muserd1/device/p0", DEVICE, "Destroy", &error, NULL, "");
    if (r >= 0 || !sd_bus_error_has_name(&error, SD_BUS_ERROR_ACCESS_DENIED))
        return 15;
    sd_bus_error_free(&error);
    sd_bus_flush_close_unref(b);
    return 0;
}

START_TEST(test_bus_policy)
{
    char conf[PATH_MAX], extra[PATH_MAX + 64];

    if (geteuid() != 0)
        return; /* needs root to run a client as another user */
    ck_assert_ptr_nonnull(realpath("dbus/org.muserd1.conf", conf));
    snprintf(extra, sizeof(extra), "<include>%s</include>", conf);
    start_bus(extra);
    start_muserd(NULL);
    free(create("timer", "p0", "")); /* root may */

    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(as_nobody(test_bus_address(tbus)));
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "policy check as nobody failed at step %d", WEXITSTATUS(status));
    ck_assert_uint_eq(get_device_count(), 1);
}
END_TEST

/* With the open file limit too low for the devices asked, CreateDevice says
 * which limit and which knob, and muserd keeps working. */
START_TEST(test_fd_limit)
{
    struct rlimit saved, low = {.rlim_cur = 64, .rlim_max = 64};
    sd_bus_error error = SD_BUS_ERROR_NULL;
    char id[32];
    int r = 0, created = 0;

    start_bus(NULL);
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0); /* muserd inherits it */
    start_muserd(NULL);
    (void)setrlimit(RLIMIT_NOFILE, &saved); /* root gets it back; others stay low */

    for (; created < 200; created++) {
        snprintf(id, sizeof(id), "f%d", created);
        r = call(&error, NULL, MANAGER_PATH, MANAGER, "CreateDevice", "sss", "timer", id, "");
        if (r < 0)
            break;
    }
    ck_assert_int_gt(created, 0);
    expect_error(&error, r, "org.muserd1.Error.Failed", "open file limit 64 reached");
    ck_assert_msg(strstr(error.message, "LimitNOFILE="), "%s", error.message);
    sd_bus_error_free(&error);

    /* Freeing one device makes room for one more. */
    ck_assert_int_ge(call(&error, NULL, MANAGER_PATH, MANAGER, "DestroyDevice", "s", "f0"), 0);
    ck_assert_int_ge(call(&error, NULL, MANAGER_PATH, MANAGER, "DestroyDevice", "s", "f1"), 0);
    free(create("timer", "again", ""));
    ck_assert_uint_eq(get_device_count(), (uint32_t)created - 1);
}
END_TEST

/* dbus-daemon going away (restarted) costs the D-Bus face, not the devices. */
START_TEST(test_bus_lost)
{
    const char *const args[] = {"--device", "timer:t0", NULL};

    start_bus(NULL);
    start_muserd(args);
    bus = sd_bus_flush_close_unref(bus);
    test_bus_free(tbus);
    tbus = NULL;
    uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    while (!tu_file_contains(test_daemon_log_path(daemon_), "Lost the D-Bus connection") &&
           test_now_ns() < deadline)
        usleep(10000);
    tu_assert_log(daemon_, "Lost the D-Bus connection");
    struct vfu_client *c = tu_open(daemon_, "t0");
    vfu_client_free(c);
}
END_TEST

/* ---- without a bus -------------------------------------------------------------- */

START_TEST(test_default_bus_missing_is_a_warning)
{
    struct test_daemon *d;

    setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/muserd-test/bus", 1);
    setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/muserd-test/bus", 1);
    const char *const modes[] = {NULL, "--user"};
    for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
        ck_assert_int_eq(test_daemon_new(&d), 0);
        ck_assert_int_eq(test_daemon_add_device(d, "timer", "t0", NULL), 0);
        if (modes[i])
            ck_assert_int_eq(test_daemon_add_arg(d, modes[i]), 0);
        tu_start(d);
        tu_assert_log(d, "Serving without D-Bus");
        struct vfu_client *c = tu_open(d, "t0"); /* the --device device serves */
        vfu_client_free(c);
        tu_stop(d);
    }
}
END_TEST

START_TEST(test_explicit_bus_missing_is_an_error)
{
    struct test_daemon *d;

    ck_assert_int_eq(test_daemon_new(&d), 0);
    ck_assert_int_eq(test_daemon_add_arg(d, "--bus-address"), 0);
    ck_assert_int_eq(test_daemon_add_arg(d, "unix:path=/nonexistent/muserd-test/bus"), 0);
    ck_assert_int_eq(tu_expect_start_failure(d), 1);
    tu_assert_log(d, "Cannot connect to unix:path=/nonexistent/muserd-test/bus");
    test_daemon_free(d);

    /* --no-bus: no attempt at all. */
    ck_assert_int_eq(test_daemon_new(&d), 0);
    ck_assert_int_eq(test_daemon_add_arg(d, "--no-bus"), 0);
    tu_start(d);
    ck_assert(!tu_file_contains(test_daemon_log_path(d), "D-Bus"));
    tu_stop(d);
}
END_TEST

static Suite *dbus_suite(void)
{
    Suite *s = suite_create("dbus");
    TCase *tc = tcase_create("api");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_types_create_list);
    tcase_add_test(tc, test_connect_and_destroy);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_introspection_matches_xml);
    tcase_add_test(tc, test_busctl);
    suite_add_tcase(s, tc);

    tc = tcase_create("setup");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bus_policy);
    tcase_add_test(tc, test_fd_limit);
    tcase_add_test(tc, test_bus_lost);
    tcase_add_test(tc, test_default_bus_missing_is_a_warning);
    tcase_add_test(tc, test_explicit_bus_missing_is_an_error);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(dbus_suite());
}
