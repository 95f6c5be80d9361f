/* SPDX-License-Identifier: MIT */
/*
 * The libvirt hook (systemd/libvirt-qemu-hook) as libvirt runs it: `qemu
 * DOMAIN prepare begin -` with the domain XML on standard input, then
 * `release end -`, against the real muserd on a private dbus-daemon
 * (MUSERD_BUS_ADDRESS). The devices in the domain's metadata appear with
 * their sockets given to the QEMU user, and go away again; a device that
 * cannot be created stops the VM from starting and leaves nothing behind.
 */
#include <check.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers/child.h"
#include "helpers/dbus-daemon.h"
#include "helpers/testutil.h"
#include "../../plugins/timer/timer-regs.h"

#define NAME         "org.muserd1"
#define MANAGER_PATH "/org/muserd1"
#define MANAGER      "org.muserd1.Manager"
#define DEVICE       "org.muserd1.Device"

#define HOOK_TIMEOUT_MS 20000
/* Where the example domain puts the sockets: muserd's default. */
#define MUSERD_DEFAULT_RUNTIME_DIR "/run/muserd"
/* The QEMU user the tests give sockets to: a uid no account needs to own. */
#define QEMU_UID "4242"

static struct test_bus *tbus;
static struct test_daemon *daemon_;
static sd_bus *bus;

static void setup(void)
{
    int r = test_bus_start(NULL, &tbus);
    ck_assert_msg(r == 0, "starting dbus-daemon: %s", strerror(-r));
    ck_assert_int_eq(test_daemon_new(&daemon_), 0);
    ck_assert_int_eq(test_daemon_add_arg(daemon_, "--bus-address"), 0);
    ck_assert_int_eq(test_daemon_add_arg(daemon_, test_bus_address(tbus)), 0);
    tu_start(daemon_);
    ck_assert_int_eq(test_bus_connect(test_bus_address(tbus), &bus), 0);
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

struct hook_run {
    int status;
    char *err;
};

/* Run the hook for domain "vm1" as libvirt does, with xml on its stdin. */
static struct hook_run run_hook(const char *operation, const char *sub_operation, const char *xml)
{
    char hook[PATH_MAX];
    ck_assert_ptr_nonnull(realpath("systemd/libvirt-qemu-hook", hook));
    ck_assert_int_eq(setenv("MUSERD_BUS_ADDRESS", test_bus_address(tbus), 1), 0);
    ck_assert_int_eq(setenv("MUSERD_SOCKET_OWNER", QEMU_UID, 1), 0);

    const char *argv[] = {"/bin/sh", hook, "vm1", operation, sub_operation, "-", NULL};
    struct tu_child c;
    int r = tu_child_start(&c, argv, xml);
    ck_assert_msg(r == 0, "starting the hook: %s", strerror(-r));
    int status = tu_child_wait(&c, HOOK_TIMEOUT_MS);
    ck_assert_msg(status >= 0, "the hook did not finish: %s", tu_child_stderr(&c));
    ck_assert_str_eq(tu_child_stdout(&c), ""); /* libvirt reads nothing from it */
    struct hook_run run = {.status = status, .err = strdup(tu_child_stderr(&c))};
    tu_child_free(&c);
    return run;
}

static uint32_t device_count(void)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    uint32_t n = 0;
    ck_assert_int_ge(sd_bus_get_property_trivial(bus, NAME, MANAGER_PATH, MANAGER, "DeviceCount",
                                                 &error, 'u', &n),
                     0);
    return n;
}

/* The device's Config property, parsed. */
static json_object *device_config(const char *id)
{
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
    sd_bus_error error = SD_BUS_ERROR_NULL;
    const char *path;
    char *config = NULL;

    int r =
        sd_bus_call_method(bus, NAME, MANAGER_PATH, MANAGER, "GetDevice", &error, &reply, "s", id);
    ck_assert_msg(r >= 0, "no device %s: %s", id, error.message);
    ck_assert_int_ge(sd_bus_message_read(reply, "o", &path), 0);
    r = sd_bus_get_property_string(bus, NAME, path, DEVICE, "Config", &error, &config);
    ck_assert_msg(r >= 0, "no device %s: %s", id, error.message);
    json_object *j = json_tokener_parse(config);
    ck_assert_msg(j, "Config of %s is not JSON: %s", id, config);
    free(config);
    return j;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v = NULL;
    ck_assert_msg(json_object_object_get_ex(o, key, &v), "no \"%s\" in %s", key,
                  json_object_to_json_string(o));
    return json_object_get_string(v);
}

/* A domain as `virsh dumpxml` shows it, with muserd devices in its metadata
 * (under a namespace prefix of the domain's own choosing). */
#define DOMAIN(devices)                                                                            \
    "<domain type='kvm'>\n"                                                                        \
    "  <name>vm1</name>\n"                                                                         \
    "  <metadata>\n"                                                                               \
    "    <other:thing xmlns:other='https://example.org/other'>x</other:thing>\n"                   \
    "    <m:devices xmlns:m='https://muserd.org/xmlns/1'>\n" devices "    </m:devices>\n"          \
    "  </metadata>\n"                                                                              \
    "  <memory unit='KiB'>1048576</memory>\n"                                                      \
    "</domain>\n"

START_TEST(test_prepare_and_release)
{
    const char *xml = DOMAIN("      <m:device type='timer' id='vm1-t0'/>\n"
                             "      <m:device type='ram' id='vm1-r0' config='{\"size\": 8192}'/>\n"
                             "      <m:device type='ram' id='vm1-r1'\n"
                             "                config='{\"socket_owner\":\"4343\",\"socket_mode\":"
                             "\"0660\"}'/>\n");

    struct hook_run run = run_hook("prepare", "begin", xml);
    ck_assert_msg(run.status == 0, "prepare exited %d: %s", run.status, run.err);
    ck_assert_msg(strstr(run.err, "created ram device vm1-r0"), "stderr: %s", run.err);
    free(run.err);
    ck_assert_uint_eq(device_count(), 3);

    /* The hook gave each socket to the QEMU user, unless the XML said whom. */
    json_object *t0 = device_config("vm1-t0"), *r0 = device_config("vm1-r0"),
                *r1 = device_config("vm1-r1");
    ck_assert_str_eq(jstr(t0, "socket_owner"), QEMU_UID);
    ck_assert_str_eq(jstr(t0, "socket_mode"), "0600");
    ck_assert_str_eq(jstr(r0, "socket_owner"), QEMU_UID);
    ck_assert_int_eq(json_object_get_int64(json_object_object_get(r0, "size")), 8192);
    ck_assert_str_eq(jstr(r1, "socket_owner"), "4343");
    ck_assert_str_eq(jstr(r1, "socket_mode"), "0660");
    json_object_put(t0);
    json_object_put(r0);
    json_object_put(r1);

    struct stat st;
    const char *sock = test_daemon_socket(daemon_, "vm1-t0");
    ck_assert_int_eq(stat(sock, &st), 0);
    ck_assert_uint_eq(st.st_uid, 4242);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
    ck_assert_int_eq(stat(test_daemon_socket(daemon_, "vm1-r1"), &st), 0);
    ck_assert_uint_eq(st.st_uid, 4343);
    ck_assert_uint_eq(st.st_mode & 07777, 0660);

    /* QEMU connects to it (root may, whoever owns the socket). */
    struct vfu_client *c = tu_open(daemon_, "vm1-t0");
    ck_assert_uint_eq(tu_rd16(c, TU_CFG, 0x00), TIMER_PCI_VENDOR_ID);

    /* Operations other than prepare and release leave the devices alone. */
    run = run_hook("started", "begin", xml);
    ck_assert_int_eq(run.status, 0);
    free(run.err);
    ck_assert_uint_eq(device_count(), 3);

    /* release: the devices go, even the connected one, sockets and all. */
    run = run_hook("release", "end", xml);
    ck_assert_msg(run.status == 0, "release exited %d: %s", run.status, run.err);
    free(run.err);
    ck_assert_uint_eq(device_count(), 0);
    ck_assert_int_lt(access(sock, F_OK), 0);
    ck_assert_int_eq(tu_wait_closed(vfu_client_fd(c), TU_TIMEOUT_MS), 1);
    vfu_client_free(c);

    /* A second release (libvirt may call it after a failed start) is fine. */
    run = run_hook("release", "end", xml);
    ck_assert_int_eq(run.status, 0);
    free(run.err);
}
END_TEST

START_TEST(test_domain_without_devices)
{
    struct hook_run run = run_hook("prepare", "begin",
                                   "<domain type='kvm'><name>vm1</name>"
                                   "<metadata><x:y xmlns:x='https://example.org/x'/></metadata>"
                                   "</domain>\n");
    ck_assert_msg(run.status == 0, "prepare exited %d: %s", run.status, run.err);
    ck_assert_str_eq(run.err, "");
    free(run.err);
    ck_assert_uint_eq(device_count(), 0);
}
END_TEST

/* A VM whose second device cannot be made does not start (exit 1, with
 * muserd's reason for libvirt's log), and the first one is undone. */
START_TEST(test_failed_prepare_undoes)
{
    static const struct {
        const char *devices, *reason;
    } cases[] = {
        {"      <m:device type='timer' id='vm1-t0'/>\n"
         "      <m:device type='nvme-none' id='vm1-d0'/>\n",
         "nvme-none"},
        {"      <m:device type='timer' id='vm1-t0'/>\n"
         "      <m:device type='ram' id='vm1-r0' config='{\"size\": 1000}'/>\n",
         "power of two"},
        {"      <m:device type='timer' id='vm1-t0'/>\n"
         "      <m:device id='vm1-r0'/>\n",
         "needs both type and id"},
    };
    char xml[2048];

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        snprintf(xml, sizeof(xml), DOMAIN("%s"), cases[i].devices);
        struct hook_run run = run_hook("prepare", "begin", xml);
        ck_assert_msg(run.status == 1, "case %zu: prepare exited %d: %s", i, run.status, run.err);
        ck_assert_msg(strstr(run.err, cases[i].reason), "case %zu: stderr \"%s\" lacks \"%s\"", i,
                      run.err, cases[i].reason);
        ck_assert_msg(strstr(run.err, "destroyed device vm1-t0"), "case %zu: stderr: %s", i,
                      run.err);
        free(run.err);
        ck_assert_uint_eq(device_count(), 0);
    }
}
END_TEST

/* The whole file, NUL-terminated (malloc()ed). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "re");
    ck_assert_msg(f, "cannot open %s", path);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(out);
    for (int c; (c = fgetc(f)) != EOF;)
        fputc(c, out);
    fclose(f);
    fclose(out);
    return buf;
}

/* The domain example muserd ships (systemd/libvirt-domain-example.xml) is what
 * it says: well-formed XML whose metadata devices the hook creates, whose
 * qemu:commandline points QEMU at exactly those devices' sockets in the
 * default runtime directory, with the shared memfd memory and <acpi/> that
 * the man page asks for. */
START_TEST(test_shipped_example_domain)
{
    const char *path = "systemd/libvirt-domain-example.xml";
    const char *lint[] = {"/bin/sh", "-c", "exec xmllint --noout --nonet \"$0\"", path, NULL};
    struct tu_child c;
    ck_assert_int_eq(tu_child_start(&c, lint, NULL), 0);
    int status = tu_child_wait(&c, HOOK_TIMEOUT_MS);
    ck_assert_msg(status == 0, "xmllint %s: %s", path, tu_child_stderr(&c));
    tu_child_free(&c);

    char *xml = slurp(path);
    ck_assert_msg(strstr(xml, "<source type='memfd'/>") && strstr(xml, "<access mode='shared'/>"),
                  "the example lacks shared memfd memory");
    ck_assert_msg(strstr(xml, "<acpi/>"), "the example lacks <features><acpi/>");

    struct hook_run run = run_hook("prepare", "begin", xml);
    ck_assert_msg(run.status == 0, "prepare of the example exited %d: %s", run.status, run.err);
    free(run.err);
    const char *ids[] = {"vm1-timer0", "vm1-ram0"};
    ck_assert_uint_eq(device_count(), ELEMENTSOF(ids));
    for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
        json_object *config = device_config(ids[i]);
        json_object_put(config);
        char arg[256];
        snprintf(arg, sizeof(arg),
                 "{\"driver\":\"vfio-user-pci\",\"socket\":{\"type\":\"unix\",\"path\":\"%s/%s."
                 "sock\"}}'/>",
                 MUSERD_DEFAULT_RUNTIME_DIR, ids[i]);
        ck_assert_msg(strstr(xml, arg), "the example gives QEMU no %s", arg);
    }
    size_t nr_vfio_user = 0;
    for (const char *p = xml; (p = strstr(p, "\"driver\":\"vfio-user-pci\"")); p++)
        nr_vfio_user++;
    ck_assert_uint_eq(nr_vfio_user, ELEMENTSOF(ids));
    run = run_hook("release", "end", xml);
    ck_assert_msg(run.status == 0, "release of the example exited %d: %s", run.status, run.err);
    free(run.err);
    ck_assert_uint_eq(device_count(), 0);
    free(xml);
}
END_TEST

/* No muserd on the bus: the VM does not start, and the log says what to do. */
START_TEST(test_muserd_not_running)
{
    tu_stop(daemon_);
    daemon_ = NULL;
    struct hook_run run =
        run_hook("prepare", "begin", DOMAIN("      <m:device type='timer' id='vm1-t0'/>\n"));
    ck_assert_msg(run.status == 1, "prepare exited %d: %s", run.status, run.err);
    ck_assert_msg(strstr(run.err, "muserd is not running") &&
                      strstr(run.err, "systemctl start muserd"),
                  "stderr: %s", run.err);
    free(run.err);
}
END_TEST

static Suite *hook_suite(void)
{
    Suite *s = suite_create("libvirt-hook");
    TCase *tc = tcase_create("hook");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_prepare_and_release);
    tcase_add_test(tc, test_domain_without_devices);
    tcase_add_test(tc, test_failed_prepare_undoes);
    tcase_add_test(tc, test_shipped_example_domain);
    tcase_add_test(tc, test_muserd_not_running);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(hook_suite());
}
