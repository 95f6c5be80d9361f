/* SPDX-License-Identifier: MIT */
/*
 * Migration as an operator drives it: two real muserd, each on its own
 * private dbus-daemon, the real timer and ram plugins, and muserctl moving
 * the stream through a real pipe (`muserctl migrate | muserctl incoming`) or
 * a file. A client programs the device before, reconnects to the
 * destination after, and sees the device carry on. Bad streams are refused
 * with named errors and leave the destination waiting for a good one.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/pci_regs.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../plugins/ram/ram-regs.h"
#include "../../plugins/timer/timer-regs.h"
#include "../plugins/storm-regs.h"
#include "helpers/child.h"
#include "helpers/dbus-daemon.h"
#include "helpers/side.h"
#include "helpers/testutil.h"

#define NAME   "org.muserd1"
#define DEVICE "org.muserd1.Device"

/* The source and the destination: a bus and a muserd each. */
static struct tu_side src, dst;
static char tmpdir[] = "/tmp/muserd-mig-XXXXXX";

static void side_start(struct tu_side *s, const char *const *devices)
{
    tu_side_start(s, (const char *const[]){"timer", "ram", "test:storm", "test:old-ops", NULL},
                  devices);
}

static void side_stop(struct tu_side *s)
{
    tu_side_stop(s);
}

static void setup(void)
{
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    side_start(&src, (const char *const[]){"timer", "t0", NULL, "ram", "r0", "{\"size\": 65536}",
                                           "storm", "s0", NULL, "noops", "n0", NULL, NULL});
    side_start(&dst, (const char *const[]){"timer", "t0", "{\"incoming\": true}", "ram", "r0",
                                           "{\"size\": 65536, \"incoming\": true}", "timer", "t1",
                                           NULL, "ram", "r1", "{\"size\": 65536}", NULL});
}

static void teardown(void)
{
    side_stop(&src);
    side_stop(&dst);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    (void)system(cmd);
    strcpy(tmpdir, "/tmp/muserd-mig-XXXXXX");
}

static const char *muserctl_bin(void)
{
    const char *p = getenv("MUSERCTL_BIN");
    return p && *p ? p : "build/muserctl";
}

static char *device_path(const char *id)
{
    char *path = NULL;
    ck_assert_int_ge(sd_bus_path_encode("/org/muserd1/device", id, &path), 0);
    return path;
}

static char *migration_of(struct tu_side *s, const char *id)
{
    _cleanup_free_ char *path = device_path(id);
    _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
    char *v = NULL;
    int r = sd_bus_get_property_string(s->bus, NAME, path, DEVICE, "Migration", &error, &v);
    ck_assert_msg(r >= 0, "reading Migration of %s: %s", id, error.message);
    return v;
}

static void assert_migration(struct tu_side *s, const char *id, const char *want)
{
    _cleanup_free_ char *v = migration_of(s, id);
    ck_assert_msg(strcmp(v, want) == 0, "%s: Migration is \"%s\", expected \"%s\"", id, v, want);
}

/* Call a Device method with fd (or none when fd < 0); the error name (NULL
 * on success) goes to *name, its sentence to *message (both malloc()ed). */
static int call_device(struct tu_side *s, const char *id, const char *member, int fd, char **name,
                       char **message)
{
    _cleanup_free_ char *path = device_path(id);
    _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
    int r = sd_bus_message_new_method_call(s->bus, &m, NAME, path, DEVICE, member);
    if (r >= 0 && fd >= 0)
        r = sd_bus_message_append(m, "h", fd);
    if (r >= 0)
        r = sd_bus_call(s->bus, m, 60 * 1000000ull, &error, NULL);
    if (name)
        *name = error.name ? strdup(error.name) : NULL;
    if (message)
        *message = error.message ? strdup(error.message) : NULL;
    return r;
}

/* Migration values announced with PropertiesChanged, in order, as "a,b,". */
static char announced[256];

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
    const char *iface, *name;
    if (sd_bus_message_read(m, "s", &iface) < 0 || strcmp(iface, DEVICE) != 0)
        return 0;
    if (sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
        return 0;
    while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
        if (sd_bus_message_read(m, "s", &name) < 0)
            return 0;
        const char *v = NULL;
        if (strcmp(name, "Migration") == 0 && sd_bus_message_read(m, "v", "s", &v) >= 0) {
            size_t len = strlen(announced);
            snprintf(announced + len, sizeof(announced) - len, "%s,", v);
        } else if (sd_bus_message_skip(m, "v") < 0) {
            return 0;
        }
        (void)sd_bus_message_exit_container(m);
    }
    return 0;
}

static void watch_migration(struct tu_side *s, const char *id, sd_bus_slot **slot)
{
    _cleanup_free_ char *path = device_path(id);
    announced[0] = 0;
    ck_assert_int_ge(sd_bus_match_signal(s->bus, slot, NAME, path,
                                         "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                         on_properties_changed, NULL),
                     0);
}

/* Process s's bus until `want` was announced (or 5 s passed). */
static void assert_announced(struct tu_side *s, const char *want)
{
    uint64_t end = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    while (!strstr(announced, want) && test_now_ns() < end) {
        if (sd_bus_process(s->bus, NULL) == 0)
            (void)sd_bus_wait(s->bus, 100000);
    }
    ck_assert_msg(strstr(announced, want),
                  "PropertiesChanged announced Migration \"%s\", "
                  "expected \"%s\"",
                  announced, want);
}

static void migrate_to_file(const char *id, const char *file)
{
    _cleanup_close_ int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    _cleanup_free_ char *name = NULL, *msg = NULL;
    int r = call_device(&src, id, "Migrate", fd, &name, &msg);
    ck_assert_msg(r >= 0, "Migrate %s: %s: %s", id, name, msg);
}

/* Incoming from file: 0, or the error name in *name. */
static int incoming_from_file(const char *id, const char *file, char **name, char **msg)
{
    _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    return call_device(&dst, id, "Incoming", fd, name, msg);
}

static void incoming_ok(const char *id, const char *file)
{
    _cleanup_free_ char *name = NULL, *msg = NULL;
    int r = incoming_from_file(id, file, &name, &msg);
    if (r < 0)
        test_daemon_dump_log(dst.daemon, 4096);
    ck_assert_msg(r >= 0, "Incoming %s: %s: %s", id, name, msg);
}

static void incoming_refused(const char *id, const char *file, const char *want)
{
    _cleanup_free_ char *name = NULL, *msg = NULL;
    int r = incoming_from_file(id, file, &name, &msg);
    ck_assert_msg(r < 0, "Incoming %s took a bad stream (%s)", id, file);
    ck_assert_msg(name && strcmp(name, want) == 0, "Incoming %s: %s (%s), expected %s", id, name,
                  msg, want);
    ck_assert_msg(msg && strlen(msg) > 20, "the refusal says too little: \"%s\"", msg);
    assert_migration(&dst, id, "incoming");
}

static char *tmpfile_path(const char *name)
{
    char *p = NULL;
    ck_assert_int_ge(asprintf(&p, "%s/%s", tmpdir, name), 0);
    return p;
}

static void enable_msix(struct vfu_client *c, int efd)
{
    ck_assert_int_eq(vfu_client_set_irqs(c, VFIO_PCI_MSIX_IRQ_INDEX,
                                         VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0,
                                         1, &efd, 1, NULL),
                     0);
    uint8_t cap = tu_find_cap(c, PCI_CAP_ID_MSIX);
    tu_wr16(c, TU_CFG, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE);
}

/* The eventfd again for a client that reconnected: MSI-X stays enabled in
 * config space (that moved with the device), the eventfd is the session's. */
static void attach_msix(struct vfu_client *c, int efd)
{
    ck_assert_int_eq(vfu_client_set_irqs(c, VFIO_PCI_MSIX_IRQ_INDEX,
                                         VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0,
                                         1, &efd, 1, NULL),
                     0);
}

/* A client programs an interrupt 2 s ahead; the timer moves through
 * `muserctl migrate | muserctl incoming`; the client reconnects to the
 * destination and the interrupt comes from there, on time. */
START_TEST(test_timer_moves_through_a_pipe)
{
    struct vfu_client *c = tu_open(src.daemon, "t0");
    int efd = tu_eventfd_checked();
    enable_msix(c, efd);
    uint64_t now = tu_rd64(c, TIMER_REGS_BAR, TIMER_REG_NOW);
    tu_wr64(c, TIMER_REGS_BAR, TIMER_REG_DEADLINE, now + 2000000000ull);
    tu_wr32(c, TIMER_REGS_BAR, TIMER_REG_VECTOR, 0);
    tu_wr32(c, TIMER_REGS_BAR, TIMER_REG_CTRL, TIMER_CTRL_ENABLE);
    uint64_t programmed = test_now_ns();

    char *cmd = NULL;
    ck_assert_int_ge(asprintf(&cmd, "%s --address %s migrate t0 | %s --address %s incoming t0",
                              muserctl_bin(), test_bus_address(src.tbus), muserctl_bin(),
                              test_bus_address(dst.tbus)),
                     0);
    int status = system(cmd);
    free(cmd);
    if (status != 0) {
        test_daemon_dump_log(src.daemon, 4096);
        test_daemon_dump_log(dst.daemon, 4096);
    }
    ck_assert_msg(status == 0, "muserctl migrate | muserctl incoming failed (%d)", status);
    assert_migration(&src, "t0", "stopped");
    assert_migration(&dst, "t0", "none");

    /* Nothing fires from the stopped source. */
    vfu_client_free(c);
    (void)tu_eventfd_read(efd);
    struct vfu_client *d = tu_open(dst.daemon, "t0");
    attach_msix(d, efd);
    uint64_t n = 0;
    ck_assert_msg(tu_eventfd_wait(efd, 6000, &n) == 1, "no interrupt from the destination");
    uint64_t after_ms = (test_now_ns() - programmed) / 1000000;
    ck_assert_msg(after_ms >= 1500 && after_ms < 5000,
                  "the interrupt came %llu ms after it was programmed for 2000 ms",
                  (unsigned long long)after_ms);
    ck_assert_uint_eq(tu_rd32(d, TIMER_REGS_BAR, TIMER_REG_FIRE_COUNT), 1);
    ck_assert_uint_eq(tu_rd32(d, TIMER_REGS_BAR, TIMER_REG_STATUS) & TIMER_STATUS_FIRED,
                      TIMER_STATUS_FIRED);
    vfu_client_free(d);
    close(efd);
}
END_TEST

/* The ram device's BAR contents and DMA registers arrive byte for byte
 * through a file; the source, resumed, carries on as before. */
START_TEST(test_ram_moves_through_a_file)
{
    struct vfu_client *c = tu_open(src.daemon, "r0");
    uint8_t pattern[65536];
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (uint8_t)(i * 7 + i / 256);
    for (size_t off = 0; off < sizeof(pattern); off += 4096)
        ck_assert_int_eq(vfu_client_region_write(c, RAM_MEM_BAR, off, pattern + off, 4096), 0);
    tu_wr32(c, RAM_REGS_BAR, RAM_REG_SCRATCH, 0xfeedf00d);
    tu_wr64(c, RAM_REGS_BAR, RAM_REG_DMA_ADDR, 0x123000);
    tu_wr64(c, RAM_REGS_BAR, RAM_REG_DMA_OFFSET, 0x800);
    tu_wr32(c, RAM_REGS_BAR, RAM_REG_DMA_LEN, 512);

    _cleanup_free_ char *file = tmpfile_path("r0.state");
    sd_bus_slot *slot = NULL;
    watch_migration(&src, "r0", &slot);
    migrate_to_file("r0", file);
    assert_migration(&src, "r0", "stopped");
    assert_announced(&src, "saving,stopped,");
    struct stat st;
    ck_assert_int_eq(stat(file, &st), 0);
    ck_assert_msg(st.st_size > 65536, "the stream holds %lld bytes, less than the RAM",
                  (long long)st.st_size);
    incoming_ok("r0", file);
    assert_migration(&dst, "r0", "none");

    struct vfu_client *d = tu_open(dst.daemon, "r0");
    uint8_t got[4096];
    for (size_t off = 0; off < sizeof(pattern); off += 4096) {
        ck_assert_int_eq(vfu_client_region_read(d, RAM_MEM_BAR, off, got, sizeof(got)), 0);
        ck_assert_msg(memcmp(got, pattern + off, sizeof(got)) == 0, "RAM differs at %#zx", off);
    }
    ck_assert_uint_eq(tu_rd32(d, RAM_REGS_BAR, RAM_REG_SCRATCH), 0xfeedf00d);
    ck_assert_uint_eq(tu_rd64(d, RAM_REGS_BAR, RAM_REG_DMA_ADDR), 0x123000);
    ck_assert_uint_eq(tu_rd64(d, RAM_REGS_BAR, RAM_REG_DMA_OFFSET), 0x800);
    ck_assert_uint_eq(tu_rd32(d, RAM_REGS_BAR, RAM_REG_DMA_LEN), 512);
    vfu_client_free(d);

    /* The source, abandoned and resumed, runs on with its own state. */
    _cleanup_free_ char *name = NULL, *msg = NULL;
    ck_assert_msg(call_device(&src, "r0", "Resume", -1, &name, &msg) >= 0, "Resume: %s", msg);
    assert_migration(&src, "r0", "none");
    assert_announced(&src, "saving,stopped,none,");
    sd_bus_slot_unref(slot);
    ck_assert_uint_eq(tu_rd32(c, RAM_REGS_BAR, RAM_REG_SCRATCH), 0xfeedf00d);
    tu_wr32(c, RAM_REGS_BAR, RAM_REG_DOORBELL, 1);
    ck_assert_uint_eq(tu_rd32(c, RAM_REGS_BAR, RAM_REG_DOORBELL_COUNT), 1);
    vfu_client_free(c);
}
END_TEST

static void write_file(const char *path, const void *buf, size_t len)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
}

static size_t read_file(const char *path, uint8_t *buf, size_t cap)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ssize_t n = read(fd, buf, cap);
    ck_assert_int_gt(n, 0);
    ck_assert_int_lt(n, (ssize_t)cap);
    return (size_t)n;
}

/* Another type, a damaged byte, a cut or an empty stream are each refused
 * with their own named error; the device still waits, and then takes the
 * good stream. */
START_TEST(test_bad_streams_are_refused)
{
    _cleanup_free_ char *good = tmpfile_path("t0.state");
    _cleanup_free_ char *bad = tmpfile_path("bad.state");
    struct vfu_client *c = tu_open(src.daemon, "t0");
    tu_wr64(c, TIMER_REGS_BAR, TIMER_REG_INTERVAL, 777777);
    vfu_client_free(c);
    migrate_to_file("t0", good);

    incoming_refused("r0", good, "org.muserd1.Error.IncompatibleStream");

    static uint8_t buf[1 << 16];
    size_t len = read_file(good, buf, sizeof(buf));
    write_file(bad, buf, len / 2);
    incoming_refused("t0", bad, "org.muserd1.Error.TruncatedStream");
    write_file(bad, buf, 0);
    incoming_refused("t0", bad, "org.muserd1.Error.TruncatedStream");
    buf[len - 9] ^= 0x10; /* in the last record, before the trailer */
    write_file(bad, buf, len);
    incoming_refused("t0", bad, "org.muserd1.Error.CorruptStream");
    buf[len - 9] ^= 0x10;
    memcpy(buf, "NOTMUSER", 8);
    write_file(bad, buf, len);
    incoming_refused("t0", bad, "org.muserd1.Error.CorruptStream");

    /* Still waiting: its socket is held, a client's VERSION goes unanswered. */
    int fd = tu_raw_connect(test_daemon_socket(dst.daemon, "t0"), false);
    ck_assert_int_ge(fd, 0);
    struct {
        struct vfu_header h;
        struct vfu_version v;
    } ver = {.h = {.msg_id = 1, .command = VFU_CMD_VERSION, .msg_size = sizeof(ver)}};
    ck_assert_int_eq(write(fd, &ver, sizeof(ver)), (ssize_t)sizeof(ver));
    ck_assert_msg(tu_wait_readable(fd, 300) == 0, "an incoming device answered a client");

    incoming_ok("t0", good);
    /* Now the waiting client is served. */
    ck_assert_msg(tu_wait_readable(fd, TU_TIMEOUT_MS) == 1, "the held client was never served");
    close(fd);
    struct vfu_client *d = tu_open(dst.daemon, "t0");
    ck_assert_uint_eq(tu_rd64(d, TIMER_REGS_BAR, TIMER_REG_INTERVAL), 777777);
    vfu_client_free(d);
}
END_TEST

/* Each call where it makes no sense says so by name. */
START_TEST(test_calls_out_of_place)
{
    _cleanup_free_ char *file = tmpfile_path("x.state");
    write_file(file, "x", 1);
    _cleanup_free_ char *name = NULL, *msg = NULL;

    /* Incoming into a device that runs. */
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    ck_assert_int_lt(call_device(&src, "t0", "Incoming", fd, &name, &msg), 0);
    close(fd);
    ck_assert_str_eq(name, "org.muserd1.Error.WrongMigrationState");
    ck_assert_ptr_nonnull(strstr(msg, "incoming"));
    free(name), free(msg);
    /* Resume of a device that was never stopped. */
    ck_assert_int_lt(call_device(&src, "t0", "Resume", -1, &name, &msg), 0);
    ck_assert_str_eq(name, "org.muserd1.Error.WrongMigrationState");
    free(name), free(msg);
    /* Migrate or Resume of a device still waiting for its stream. */
    fd = open(file, O_WRONLY | O_CLOEXEC);
    ck_assert_int_lt(call_device(&dst, "t0", "Migrate", fd, &name, &msg), 0);
    close(fd);
    ck_assert_str_eq(name, "org.muserd1.Error.WrongMigrationState");
    free(name), free(msg);
    ck_assert_int_lt(call_device(&dst, "t0", "Resume", -1, &name, &msg), 0);
    ck_assert_str_eq(name, "org.muserd1.Error.WrongMigrationState");
    free(name), free(msg);
    name = msg = NULL;
    assert_migration(&dst, "t0", "incoming");
    assert_migration(&src, "t0", "none");
}
END_TEST

/* A reader gone before anything was written fails the Migrate by name and
 * leaves the device running: it never stopped. */
START_TEST(test_reader_gone_before)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    close(p[0]);
    _cleanup_free_ char *name = NULL, *msg = NULL;
    int r = call_device(&src, "r0", "Migrate", p[1], &name, &msg);
    close(p[1]);
    ck_assert_int_lt(r, 0);
    ck_assert_str_eq(name, "org.muserd1.Error.Failed");
    ck_assert_msg(strstr(msg, "reader went away"), "unexpected sentence \"%s\"", msg);
    assert_migration(&src, "r0", "none");
    struct vfu_client *c = tu_open(src.daemon, "r0");
    tu_wr32(c, RAM_REGS_BAR, RAM_REG_DOORBELL, 1);
    ck_assert_uint_eq(tu_rd32(c, RAM_REGS_BAR, RAM_REG_DOORBELL_COUNT), 1);
    vfu_client_free(c);
}
END_TEST

/* A plugin that saves no state cannot migrate, and says so everywhere. */
START_TEST(test_stateless_plugin_cannot_migrate)
{
    _cleanup_free_ char *file = tmpfile_path("n0.state");
    int fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    _cleanup_free_ char *name = NULL, *msg = NULL;
    ck_assert_int_lt(call_device(&src, "n0", "Migrate", fd, &name, &msg), 0);
    close(fd);
    ck_assert_str_eq(name, "org.muserd1.Error.NotMigratable");
    ck_assert_ptr_nonnull(strstr(msg, "noops"));
    assert_migration(&src, "n0", "none");

    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    ck_assert_int_lt(sd_bus_call_method(src.bus, NAME, "/org/muserd1", "org.muserd1.Manager",
                                        "CreateDevice", &e, NULL, "sss", "noops", "n1",
                                        "{\"incoming\": true}"),
                     0);
    ck_assert_str_eq(e.name, "org.muserd1.Error.InvalidConfig");
    ck_assert_ptr_nonnull(strstr(e.message, "cannot migrate"));

    /* Its clients are offered no migration. */
    struct vfu_client *c = tu_open(src.daemon, "n0");
    uint64_t flags = 0;
    ck_assert_int_eq(vfu_client_migration_flags(c, &flags), -ENOTSUP);
    uint32_t state = 0;
    ck_assert_int_eq(vfu_client_mig_get_state(c, &state), -ENOTSUP);
    vfu_client_free(c);
}
END_TEST

struct async_reply {
    bool done;
    char *name, *message;
};

static int on_async_reply(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
    struct async_reply *a = userdata;
    const sd_bus_error *err = sd_bus_message_get_error(m);
    a->done = true;
    a->name = err && err->name ? strdup(err->name) : NULL;
    a->message = err && err->message ? strdup(err->message) : NULL;
    return 0;
}

static void wait_async(struct tu_side *s, struct async_reply *a)
{
    uint64_t end = test_now_ns() + 10000 * 1000000ull;
    while (!a->done && test_now_ns() < end)
        if (sd_bus_process(s->bus, NULL) == 0)
            (void)sd_bus_wait(s->bus, 100000);
    ck_assert_msg(a->done, "no reply");
}

/* A Migrate into a pipe nobody reads waits (saving) without holding up the
 * bus or the device's thread; Resume abandons it, and so does Destroy. */
static void start_stuck_migrate(const char *id, int *rfd, struct async_reply *a)
{
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    ck_assert_int_ge(sd_bus_call_method(src.bus, NAME, "/org/muserd1", "org.muserd1.Manager",
                                        "CreateDevice", &e, NULL, "sss", "ram", id,
                                        "{\"size\": 16777216}"),
                     0);
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    _cleanup_free_ char *path = device_path(id);
    ck_assert_int_ge(sd_bus_call_method_async(src.bus, NULL, NAME, path, DEVICE, "Migrate",
                                              on_async_reply, a, "h", p[1]),
                     0);
    close(p[1]);
    *rfd = p[0];
    uint64_t end = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    char *phase = NULL;
    do {
        free(phase);
        usleep(10000);
        phase = migration_of(&src, id);
    } while (strcmp(phase, "saving") != 0 && test_now_ns() < end);
    ck_assert_str_eq(phase, "saving");
    free(phase);
    /* The bus and the other devices are served meanwhile. */
    struct vfu_client *c = tu_open(src.daemon, "r0");
    ck_assert_uint_eq(tu_rd32(c, RAM_REGS_BAR, RAM_REG_ID), RAM_ID_MAGIC);
    vfu_client_free(c);
    ck_assert(!a->done);
}

START_TEST(test_resume_abandons_a_stuck_migrate)
{
    struct async_reply a = {0};
    int rfd;
    start_stuck_migrate("big", &rfd, &a);
    _cleanup_free_ char *name = NULL, *msg = NULL;
    ck_assert_int_ge(call_device(&src, "big", "Resume", -1, &name, &msg), 0);
    wait_async(&src, &a);
    ck_assert_str_eq(a.name, "org.muserd1.Error.Failed");
    ck_assert_msg(strstr(a.message, "abandoned"), "unexpected sentence \"%s\"", a.message);
    assert_migration(&src, "big", "none");
    free(a.name), free(a.message);
    close(rfd);
}
END_TEST

START_TEST(test_destroy_during_migrate)
{
    struct async_reply a = {0};
    int rfd;
    start_stuck_migrate("big", &rfd, &a);
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    ck_assert_int_ge(sd_bus_call_method(src.bus, NAME, "/org/muserd1", "org.muserd1.Manager",
                                        "DestroyDevice", &e, NULL, "s", "big"),
                     0);
    wait_async(&src, &a);
    ck_assert_str_eq(a.name, "org.muserd1.Error.Failed");
    ck_assert_msg(strstr(a.message, "destroyed"), "unexpected sentence \"%s\"", a.message);
    free(a.name), free(a.message);
    /* What was written ends where the device went: a stream cut short,
     * whose end the reader sees (no muserd holds the pipe any more). */
    size_t total = 0;
    static uint8_t buf[1 << 16];
    ssize_t n;
    uint8_t last[4] = {0};
    while ((n = read(rfd, buf, sizeof(buf))) > 0) {
        total += (size_t)n;
        if (n >= 4)
            memcpy(last, buf + n - 4, 4);
    }
    ck_assert_int_eq(n, 0);
    ck_assert_msg(total < 16u << 20, "the whole memory came out (%zu bytes)", total);
    ck_assert(memcmp(last, "MEND", 4) != 0);
    close(rfd);
    assert_migration(&src, "r0", "none");
}
END_TEST

/* ---- the client drives: vfio-user migration v2 ----------------------------------- */

static uint32_t mig_state(struct vfu_client *c)
{
    uint32_t state = 99;
    int r = vfu_client_mig_get_state(c, &state);
    ck_assert_msg(r == 0, "MIG_DEVICE_STATE GET: %s", strerror(-r));
    return state;
}

static void set_state(struct vfu_client *c, uint32_t state)
{
    int r = vfu_client_mig_set_state(c, state, NULL);
    ck_assert_msg(r == 0, "MIG_DEVICE_STATE SET %u: %s", state, strerror(-r));
    ck_assert_uint_eq(mig_state(c), state);
}

/* Read the phase's data (until a short read) onto the end of *buf. */
static void read_phase(struct vfu_client *c, uint8_t **buf, size_t *len)
{
    for (;;) {
        *buf = realloc(*buf, *len + 65536);
        ck_assert_ptr_nonnull(*buf);
        size_t n = 0;
        int r = vfu_client_mig_read(c, *buf + *len, 65536, &n);
        ck_assert_msg(r == 0, "MIG_DATA_READ: %s", strerror(-r));
        *len += n;
        if (n < 65536)
            return;
    }
}

static void write_stream(struct vfu_client *c, const uint8_t *buf, size_t len, size_t piece)
{
    for (size_t off = 0; off < len; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        int r = vfu_client_mig_write(c, buf + off, n);
        ck_assert_msg(r == 0, "MIG_DATA_WRITE at %zu: %s", off, strerror(-r));
    }
}

/* The whole stream of a device, as a source VMM reads it: pre-copy while
 * running, the rest stopped. The source is left in STOP_COPY. */
static size_t save_over_protocol(struct vfu_client *c, uint8_t **buf)
{
    size_t len = 0;
    *buf = NULL;
    set_state(c, VFU_MIG_PRE_COPY);
    read_phase(c, buf, &len);
    set_state(c, VFU_MIG_STOP_COPY);
    read_phase(c, buf, &len);
    return len;
}

/* The timer migrates as QEMU would migrate a VFIO device: the interrupt
 * programmed on the source arrives from the destination, on time. */
START_TEST(test_client_migrates_the_timer)
{
    struct vfu_client *c = tu_open(src.daemon, "t0");
    ck_assert_uint_eq(mig_state(c), VFU_MIG_RUNNING);
    uint64_t flags = 0;
    ck_assert_int_eq(vfu_client_migration_flags(c, &flags), 0);
    ck_assert_uint_eq(flags, VFU_MIGRATION_STOP_COPY | VFU_MIGRATION_PRE_COPY);
    int efd = tu_eventfd_checked();
    enable_msix(c, efd);
    uint64_t now = tu_rd64(c, TIMER_REGS_BAR, TIMER_REG_NOW);
    tu_wr64(c, TIMER_REGS_BAR, TIMER_REG_DEADLINE, now + 2000000000ull);
    tu_wr32(c, TIMER_REGS_BAR, TIMER_REG_CTRL, TIMER_CTRL_ENABLE);
    uint64_t programmed = test_now_ns();

    uint8_t *stream = NULL;
    size_t len = save_over_protocol(c, &stream);
    assert_migration(&src, "t0", "saving");
    set_state(c, VFU_MIG_STOP);
    assert_migration(&src, "t0", "stopped");

    struct vfu_client *d = tu_open(dst.daemon, "t1");
    set_state(d, VFU_MIG_RESUMING); /* RUNNING -> STOP -> RESUMING */
    assert_migration(&dst, "t1", "loading");
    write_stream(d, stream, len, 7);
    set_state(d, VFU_MIG_RUNNING); /* RESUMING -> STOP -> RUNNING */
    assert_migration(&dst, "t1", "none");
    free(stream);

    /* The source stays connected, stopped, its eventfd set: it must stay
     * silent while the destination fires. */
    (void)tu_eventfd_read(efd);
    int dfd = tu_eventfd_checked();
    attach_msix(d, dfd);
    uint64_t n = 0;
    ck_assert_msg(tu_eventfd_wait(dfd, 6000, &n) == 1, "no interrupt from the destination");
    uint64_t after_ms = (test_now_ns() - programmed) / 1000000;
    ck_assert_msg(after_ms >= 1500 && after_ms < 5000,
                  "the interrupt came %llu ms after it was programmed for 2000 ms",
                  (unsigned long long)after_ms);
    usleep(100000);
    ck_assert_msg(tu_eventfd_read(efd) == 0, "the stopped source raised an interrupt");
    ck_assert_uint_eq(tu_rd32(c, TIMER_REGS_BAR, TIMER_REG_FIRE_COUNT), 0);
    vfu_client_free(c);
    vfu_client_free(d);
    close(efd);
    close(dfd);
}
END_TEST

/* With dirty logging on, the page the ram device writes during pre-copy is
 * in the report, and no other; the BAR arrives byte for byte. */
START_TEST(test_client_migrates_ram_with_dirty_logging)
{
    struct vfu_client *c = tu_open(src.daemon, "r0");
    void *mem = NULL;
    int mfd = tu_memfd(1 << 20, &mem);
    ck_assert_int_eq(
        vfu_client_dma_map(c, 0x100000, 1 << 20, VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE, mfd, 0),
        0);
    uint8_t pattern[4096];
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (uint8_t)(i ^ 0xa5);
    ck_assert_int_eq(vfu_client_region_write(c, RAM_MEM_BAR, 0x2000, pattern, 4096), 0);

    uint64_t pgsize = 0;
    ck_assert_int_eq(vfu_client_dma_logging_start(c, 4096, NULL, 0, &pgsize), 0);
    ck_assert_uint_eq(pgsize, 4096);
    set_state(c, VFU_MIG_PRE_COPY);
    /* The device writes one page of guest memory while pre-copy runs. */
    tu_wr64(c, RAM_REGS_BAR, RAM_REG_DMA_ADDR, 0x100000 + 5 * 4096);
    tu_wr64(c, RAM_REGS_BAR, RAM_REG_DMA_OFFSET, 0x2000);
    tu_wr32(c, RAM_REGS_BAR, RAM_REG_DMA_LEN, 4096);
    tu_wr32(c, RAM_REGS_BAR, RAM_REG_DMA_CTRL, RAM_DMA_CTRL_GO | RAM_DMA_CTRL_TO_GUEST);
    uint32_t st = tu_wait_clear32(c, RAM_REGS_BAR, RAM_REG_DMA_STATUS, RAM_DMA_STATUS_BUSY);
    ck_assert_msg(st & RAM_DMA_STATUS_DONE, "the DMA did not finish: status %#x", st);
    ck_assert(memcmp((uint8_t *)mem + 5 * 4096, pattern, 4096) == 0);
    uint64_t bitmap[4] = {0};
    ck_assert_int_eq(
        vfu_client_dma_logging_report(c, 0x100000, 1 << 20, 4096, bitmap, sizeof(bitmap)), 0);
    ck_assert_msg(bitmap[0] == (1ull << 5) && !bitmap[1] && !bitmap[2] && !bitmap[3],
                  "dirty bitmap %#llx %#llx %#llx %#llx, expected page 5 only",
                  (unsigned long long)bitmap[0], (unsigned long long)bitmap[1],
                  (unsigned long long)bitmap[2], (unsigned long long)bitmap[3]);

    uint8_t *stream = NULL;
    size_t len = 0;
    read_phase(c, &stream, &len);
    set_state(c, VFU_MIG_STOP_COPY);
    read_phase(c, &stream, &len);
    ck_assert_int_eq(vfu_client_dma_logging_stop(c), 0);

    struct vfu_client *d = tu_open(dst.daemon, "r1");
    set_state(d, VFU_MIG_RESUMING);
    write_stream(d, stream, len, 65536);
    set_state(d, VFU_MIG_RUNNING);
    uint8_t got[4096];
    ck_assert_int_eq(vfu_client_region_read(d, RAM_MEM_BAR, 0x2000, got, sizeof(got)), 0);
    ck_assert(memcmp(got, pattern, sizeof(got)) == 0);
    ck_assert_uint_eq(tu_rd64(d, RAM_REGS_BAR, RAM_REG_DMA_ADDR), 0x100000 + 5 * 4096);
    ck_assert_uint_eq(tu_rd32(d, RAM_REGS_BAR, RAM_REG_DMA_STATUS) & RAM_DMA_STATUS_DONE,
                      RAM_DMA_STATUS_DONE);
    free(stream);
    vfu_client_free(d);
    vfu_client_free(c);
    close(mfd);
}
END_TEST

/* A damaged stream fails RESUMING -> STOP and leaves ERROR, which only
 * DEVICE_RESET leaves, to a device that works. */
START_TEST(test_client_bad_stream_then_reset)
{
    struct vfu_client *c = tu_open(src.daemon, "t0");
    uint8_t *stream = NULL;
    size_t len = save_over_protocol(c, &stream);
    set_state(c, VFU_MIG_STOP);
    /* While stopped: info, region info and DMA maps go on. */
    struct vfu_device_info info;
    ck_assert_int_eq(vfu_client_device_info(c, &info), 0);
    struct vfu_region_info ri;
    ck_assert_int_eq(vfu_client_region_info(c, TIMER_REGS_BAR, &ri, NULL, 0, NULL, NULL), 0);
    void *mem = NULL;
    int mfd = tu_memfd(65536, &mem);
    ck_assert_int_eq(vfu_client_dma_map(c, 0x10000, 65536, VFU_DMA_FLAG_READ, mfd, 0), 0);
    ck_assert_int_eq(vfu_client_dma_unmap(c, 0x10000, 65536, 0), 0);
    close(mfd);
    set_state(c, VFU_MIG_RUNNING); /* STOP -> RUNNING: the source goes on */
    vfu_client_free(c);

    struct vfu_client *d = tu_open(dst.daemon, "t1");
    stream[len / 2] ^= 0x01;
    set_state(d, VFU_MIG_RESUMING);
    (void)vfu_client_mig_write(d, stream, len); /* may be refused at once */
    ck_assert_int_ne(vfu_client_mig_set_state(d, VFU_MIG_STOP, NULL), 0);
    ck_assert_uint_eq(mig_state(d), VFU_MIG_ERROR);
    assert_migration(&dst, "t1", "failed");
    ck_assert_int_ne(vfu_client_mig_set_state(d, VFU_MIG_RUNNING, NULL), 0);
    ck_assert_int_eq(vfu_client_reset(d), 0);
    ck_assert_uint_eq(mig_state(d), VFU_MIG_RUNNING);
    assert_migration(&dst, "t1", "none");
    ck_assert_uint_eq(tu_rd32(d, TIMER_REGS_BAR, TIMER_REG_ID), TIMER_ID_MAGIC);
    /* And an empty stream fails the same way. */
    set_state(d, VFU_MIG_RESUMING);
    ck_assert_int_ne(vfu_client_mig_set_state(d, VFU_MIG_STOP, NULL), 0);
    ck_assert_uint_eq(mig_state(d), VFU_MIG_ERROR);
    ck_assert_int_eq(vfu_client_reset(d), 0);
    free(stream);
    vfu_client_free(d);
}
END_TEST

/* STOP -> RUNNING on a device never migrated; a save cancelled in
 * STOP_COPY before its data was read (and one in PRE_COPY) leaves a device
 * that runs and saves again from the start. */
START_TEST(test_client_cancels)
{
    struct vfu_client *c = tu_open(src.daemon, "r0");
    tu_wr32(c, RAM_REGS_BAR, RAM_REG_SCRATCH, 0x5eed);
    set_state(c, VFU_MIG_STOP);
    set_state(c, VFU_MIG_RUNNING);
    ck_assert_uint_eq(tu_rd32(c, RAM_REGS_BAR, RAM_REG_SCRATCH), 0x5eed);

    uint8_t piece[100];
    size_t n = 0;
    set_state(c, VFU_MIG_STOP_COPY); /* RUNNING -> STOP -> STOP_COPY */
    ck_assert_int_eq(vfu_client_mig_read(c, piece, sizeof(piece), &n), 0);
    ck_assert_uint_eq(n, sizeof(piece));
    set_state(c, VFU_MIG_STOP); /* cancelled with most of it unread */
    set_state(c, VFU_MIG_PRE_COPY);
    ck_assert_int_eq(vfu_client_mig_read(c, piece, sizeof(piece), &n), 0);
    set_state(c, VFU_MIG_RUNNING); /* PRE_COPY -> RUNNING: cancelled too */
    ck_assert_int_eq(vfu_client_mig_read(c, piece, sizeof(piece), &n), -EINVAL);
    tu_wr32(c, RAM_REGS_BAR, RAM_REG_DOORBELL, 1);
    ck_assert_uint_eq(tu_rd32(c, RAM_REGS_BAR, RAM_REG_DOORBELL_COUNT), 1);

    /* A whole save now starts from the header and loads elsewhere. */
    uint8_t *stream = NULL;
    size_t len = save_over_protocol(c, &stream);
    ck_assert(len > 8 && memcmp(stream, "MUSERDMS", 8) == 0);
    set_state(c, VFU_MIG_RUNNING); /* STOP_COPY -> STOP -> RUNNING */
    struct vfu_client *d = tu_open(dst.daemon, "r1");
    set_state(d, VFU_MIG_RESUMING);
    write_stream(d, stream, len, 4096);
    set_state(d, VFU_MIG_RUNNING);
    ck_assert_uint_eq(tu_rd32(d, RAM_REGS_BAR, RAM_REG_SCRATCH), 0x5eed);
    free(stream);
    vfu_client_free(d);
    vfu_client_free(c);
}
END_TEST

/* storm holds guest memory for 300 ms from its own thread and quiesces only
 * once it let go: hold, wait until it holds, then ask to stop. */
static void storm_hold(struct vfu_client *c, int *mfd)
{
    void *mem = NULL;
    *mfd = tu_memfd(65536, &mem);
    ck_assert_int_eq(
        vfu_client_dma_map(c, 0x10000, 65536, VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE, *mfd, 0), 0);
    tu_wr64(c, STORM_REGS_BAR, STORM_REG_HOLD_IOVA, 0x10000);
    tu_wr64(c, STORM_REGS_BAR, STORM_REG_HOLD_LEN, 4096);
    tu_wr32(c, STORM_REGS_BAR, STORM_REG_HOLD_MS, 300);
    tu_wr32(c, STORM_REGS_BAR, STORM_REG_CTRL, STORM_CTRL_HOLD);
    uint64_t end = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    while (tu_rd32(c, STORM_REGS_BAR, STORM_REG_HOLD_STATUS) == STORM_HOLD_IDLE &&
           test_now_ns() < end)
        usleep(200);
    ck_assert_uint_eq(tu_rd32(c, STORM_REGS_BAR, STORM_REG_HOLD_STATUS), STORM_HOLD_HOLDING);
}

/* RUNNING -> STOP waits for a quiesce that finishes later: the reply comes
 * once the device let go of guest memory, and only then is it "stopped". */
START_TEST(test_client_stop_waits_for_quiesce)
{
    struct vfu_client *c = tu_open(src.daemon, "s0");
    int mfd;
    storm_hold(c, &mfd);
    set_state(c, VFU_MIG_STOP);
    ck_assert_msg(tu_rd32(c, STORM_REGS_BAR, STORM_REG_HOLD_STATUS) == STORM_HOLD_DONE,
                  "STOP was answered while the device still held guest memory");
    assert_migration(&src, "s0", "stopped");
    ck_assert_int_eq(vfu_client_reset(c), 0);
    ck_assert_uint_eq(mig_state(c), VFU_MIG_RUNNING);
    assert_migration(&src, "s0", "none");
    ck_assert_uint_eq(tu_rd32(c, STORM_REGS_BAR, STORM_REG_EARLY_RESETS), 0);
    vfu_client_free(c);
    close(mfd);
}
END_TEST

/* The operator's Migrate waits for it too, and its stream is whole. */
START_TEST(test_migrate_waits_for_quiesce)
{
    struct vfu_client *c = tu_open(src.daemon, "s0");
    int mfd;
    storm_hold(c, &mfd);
    _cleanup_free_ char *file = tmpfile_path("s0.state");
    migrate_to_file("s0", file);
    ck_assert_uint_eq(tu_rd32(c, STORM_REGS_BAR, STORM_REG_HOLD_STATUS), STORM_HOLD_DONE);
    assert_migration(&src, "s0", "stopped");
    uint8_t buf[4096];
    size_t len = read_file(file, buf, sizeof(buf));
    ck_assert(len > 12 && memcmp(buf + len - 4, "MEND", 4) == 0);
    _cleanup_free_ char *name = NULL, *msg = NULL;
    ck_assert_int_ge(call_device(&src, "s0", "Resume", -1, &name, &msg), 0);
    assert_migration(&src, "s0", "none");
    vfu_client_free(c);
    close(mfd);
}
END_TEST

/* The operator and the client do not migrate one device at once. */
START_TEST(test_client_and_operator_exclude_each_other)
{
    struct vfu_client *c = tu_open(src.daemon, "t0");
    set_state(c, VFU_MIG_PRE_COPY);
    _cleanup_free_ char *file = tmpfile_path("x.state");
    int fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    _cleanup_free_ char *name = NULL, *msg = NULL;
    ck_assert_int_lt(call_device(&src, "t0", "Migrate", fd, &name, &msg), 0);
    close(fd);
    ck_assert_str_eq(name, "org.muserd1.Error.Busy");
    set_state(c, VFU_MIG_RUNNING); /* PRE_COPY -> RUNNING: the session ends */

    migrate_to_file("t0", file); /* the operator stops it */
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_STOP, NULL), -EBUSY);
    ck_assert_uint_eq(mig_state(c), VFU_MIG_RUNNING);
    free(name), free(msg);
    name = msg = NULL;
    ck_assert_int_ge(call_device(&src, "t0", "Resume", -1, &name, &msg), 0);
    set_state(c, VFU_MIG_STOP);
    set_state(c, VFU_MIG_RUNNING);
    vfu_client_free(c);
}
END_TEST

/* A reader that goes away once the device stopped (its memory is flowing)
 * fails the Migrate; the device stays stopped, Migration "failed", until
 * Resume runs it again. */
START_TEST(test_reader_goes_away_mid_stream)
{
    struct async_reply a = {0};
    int rfd;
    start_stuck_migrate("big", &rfd, &a);
    /* The header is all ram sends before it stops; what follows is its
     * memory, written by a stopped device. */
    static uint8_t buf[65536];
    ck_assert_int_eq(read(rfd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
    ck_assert(memcmp(buf, "MUSERDMS", 8) == 0);
    close(rfd);
    wait_async(&src, &a);
    ck_assert_str_eq(a.name, "org.muserd1.Error.Failed");
    ck_assert_msg(strstr(a.message, "reader went away"), "unexpected sentence \"%s\"", a.message);
    assert_migration(&src, "big", "failed");
    free(a.name), free(a.message);
    _cleanup_free_ char *name = NULL, *msg = NULL;
    ck_assert_int_ge(call_device(&src, "big", "Resume", -1, &name, &msg), 0);
    assert_migration(&src, "big", "none");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("migration");
    TCase *tc = tcase_create("operator");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_timer_moves_through_a_pipe);
    tcase_add_test(tc, test_ram_moves_through_a_file);
    tcase_add_test(tc, test_bad_streams_are_refused);
    tcase_add_test(tc, test_calls_out_of_place);
    tcase_add_test(tc, test_reader_gone_before);
    tcase_add_test(tc, test_reader_goes_away_mid_stream);
    tcase_add_test(tc, test_resume_abandons_a_stuck_migrate);
    tcase_add_test(tc, test_stateless_plugin_cannot_migrate);
    tcase_add_test(tc, test_destroy_during_migrate);
    suite_add_tcase(s, tc);
    TCase *tp = tcase_create("client");
    tcase_add_checked_fixture(tp, setup, teardown);
    tcase_set_timeout(tp, 60);
    tcase_add_test(tp, test_client_migrates_the_timer);
    tcase_add_test(tp, test_client_migrates_ram_with_dirty_logging);
    tcase_add_test(tp, test_client_bad_stream_then_reset);
    tcase_add_test(tp, test_client_and_operator_exclude_each_other);
    tcase_add_test(tp, test_client_cancels);
    tcase_add_test(tp, test_client_stop_waits_for_quiesce);
    tcase_add_test(tp, test_migrate_waits_for_quiesce);
    suite_add_tcase(s, tp);
    return tu_run_suite(s);
}
