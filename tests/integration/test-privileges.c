/* SPDX-License-Identifier: MIT */
/*
 * Least privilege: started as root, muserd becomes the user it is told
 * (here "nobody", present on every system, rather than a user we would have
 * to add to the host's databases) with only CAP_CHOWN, and gives device
 * sockets the owner, group and mode their config asks for. Needs root;
 * skipped otherwise.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../plugins/timer/timer-regs.h"
#include "helpers/testutil.h"
#include "util/macro.h"

#define CAP_CHOWN_MASK 0x1ull /* 1 << CAP_CHOWN */

static bool skip_unless_root(const char *test)
{
    if (geteuid() == 0)
        return false;
    printf("SKIP %s: needs root (muserd only switches users when started as root)\n", test);
    return true;
}

static struct passwd nobody;

static bool skip_without_nobody(const char *test)
{
    struct passwd *pw = getpwnam("nobody");
    if (pw && pw->pw_uid != 0) {
        nobody = *pw;
        return false;
    }
    printf("SKIP %s: no user \"nobody\" to switch to\n", test);
    return true;
}

static char shared_dir[4096];

static void remove_shared_dir(void)
{
    char path[4096 + 32];
    const char *names[] = {"timer.so", "muserd"};
    for (size_t i = 0; i < ELEMENTSOF(names); i++) {
        snprintf(path, sizeof(path), "%s/%s", shared_dir, names[i]);
        unlink(path);
    }
    rmdir(shared_dir);
}

static void copy_file(const char *from, const char *to)
{
    char buf[65536];
    ssize_t n;
    int in = open(from, O_RDONLY | O_CLOEXEC);
    ck_assert_msg(in >= 0, "open %s: %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    ck_assert_msg(out >= 0, "create %s: %s", to, strerror(errno));
    while ((n = read(in, buf, sizeof(buf))) > 0)
        ck_assert_int_eq(write(out, buf, (size_t)n), n);
    ck_assert_int_eq(n, 0);
    close(in);
    close(out);
}

/*
 * The build tree may sit where nobody cannot enter (a checkout in /root):
 * give the daemon that becomes nobody a muserd binary and the timer plugin
 * in a directory everyone may read. MUSERD_BIN is read at start; each test
 * runs in its own process, so this stays within the test.
 */
static const char *share_build(void)
{
    const char *tmp = getenv("TMPDIR");
    char path[4096 + 32];

    snprintf(shared_dir, sizeof(shared_dir), "%s/muserd-priv.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(shared_dir));
    atexit(remove_shared_dir);
    ck_assert_int_eq(chmod(shared_dir, 0755), 0);
    snprintf(path, sizeof(path), "%s/timer.so", shared_dir);
    copy_file(tu_plugin("timer"), path);
    const char *bin = getenv("MUSERD_BIN");
    snprintf(path, sizeof(path), "%s/muserd", shared_dir);
    copy_file(bin && *bin ? bin : "build/muserd", path);
    ck_assert_int_eq(setenv("MUSERD_BIN", path, 1), 0);
    return shared_dir;
}

/* A "Name:\t..." line of /proc/PID/status, parsed as up to 4 numbers in base. */
static int proc_status(pid_t pid, const char *name, int base, unsigned long long v[4])
{
    char path[64], line[512];
    size_t len = strlen(name);
    int n = -ENOENT;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, name, len) != 0 || line[len] != ':')
            continue;
        char *p = line + len + 1, *end;
        for (n = 0; n < 4; n++, p = end) {
            v[n] = strtoull(p, &end, base);
            if (end == p)
                break;
        }
        break;
    }
    fclose(f);
    return n;
}

static unsigned long long proc_field(pid_t pid, const char *name, int base)
{
    unsigned long long v[4] = {0};
    ck_assert_msg(proc_status(pid, name, base, v) >= 1, "no %s in /proc/%d/status", name, (int)pid);
    return v[0];
}

static void assert_ids(pid_t pid, const char *name, unsigned long long want)
{
    unsigned long long v[4];
    ck_assert_int_eq(proc_status(pid, name, 10, v), 4);
    for (int i = 0; i < 4; i++)
        ck_assert_msg(v[i] == want, "%s %d of muserd is %llu, not %llu", name, i, v[i], want);
}

static struct test_daemon *new_daemon(const char *user_name)
{
    struct test_daemon *d;
    ck_assert_int_eq(test_daemon_new(&d), 0);
    ck_assert_int_eq(test_daemon_share(d), 0);
    ck_assert_int_eq(test_daemon_add_arg(d, "--no-bus"), 0);
    if (user_name) {
        ck_assert_int_eq(test_daemon_add_arg(d, "--user-name"), 0);
        ck_assert_int_eq(test_daemon_add_arg(d, user_name), 0);
    }
    if (user_name && strcmp(user_name, "root") != 0) {
        /* After the helper's own --plugin-dir: the last one wins. */
        ck_assert_int_eq(test_daemon_add_arg(d, "--plugin-dir"), 0);
        ck_assert_int_eq(test_daemon_add_arg(d, share_build()), 0);
    }
    return d;
}

static void assert_socket(struct test_daemon *d, const char *id, uid_t uid, gid_t gid, mode_t mode)
{
    struct stat st;
    const char *path = test_daemon_socket(d, id);
    ck_assert_msg(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_msg(st.st_uid == uid && st.st_gid == gid, "%s is %u:%u, not %u:%u", path,
                  (unsigned)st.st_uid, (unsigned)st.st_gid, (unsigned)uid, (unsigned)gid);
    ck_assert_msg((st.st_mode & 07777) == mode, "%s has mode %04o, not %04o", path,
                  (unsigned)(st.st_mode & 07777), (unsigned)mode);
}

START_TEST(test_runs_as_user_with_chown_only)
{
    if (skip_unless_root(__func__) || skip_without_nobody(__func__))
        return;
    struct test_daemon *d = new_daemon("nobody");
    /* A name (root) and numeric ids nobody has: all need CAP_CHOWN. */
    ck_assert_int_eq(test_daemon_add_device(d, "timer", "t0",
                                            "{\"socket_owner\":\"root\",\"socket_group\":"
                                            "\"4343\",\"socket_mode\":\"0660\"}"),
                     0);
    ck_assert_int_eq(test_daemon_add_device(d, "timer", "t1", "{\"socket_owner\":\"4242\"}"), 0);
    ck_assert_int_eq(test_daemon_add_device(d, "timer", "t2", "{\"socket_mode\":\"606\"}"), 0);
    /* JSON numbers are ids too (what `muserctl create ... socket_owner=4545` sends). */
    ck_assert_int_eq(
        test_daemon_add_device(d, "timer", "t3", "{\"socket_owner\":4545,\"socket_group\":0}"), 0);
    tu_start(d);
    pid_t pid = test_daemon_pid(d);

    assert_ids(pid, "Uid", nobody.pw_uid);
    assert_ids(pid, "Gid", nobody.pw_gid);
    ck_assert_uint_eq(proc_field(pid, "CapEff", 16), CAP_CHOWN_MASK);
    ck_assert_uint_eq(proc_field(pid, "CapPrm", 16), CAP_CHOWN_MASK);
    ck_assert_uint_eq(proc_field(pid, "CapInh", 16), 0);
    ck_assert_uint_eq(proc_field(pid, "CapBnd", 16), 0);
    ck_assert_uint_eq(proc_field(pid, "CapAmb", 16), 0);
    ck_assert_uint_eq(proc_field(pid, "NoNewPrivs", 10), 1);

    struct stat st;
    ck_assert_int_eq(stat(test_daemon_runtime_dir(d), &st), 0);
    ck_assert_uint_eq(st.st_uid, nobody.pw_uid);
    assert_socket(d, "t0", 0, 4343, 0660);
    /* Only the owner changes; the group stays the daemon's. */
    ck_assert_int_eq(stat(test_daemon_socket(d, "t1"), &st), 0);
    ck_assert_uint_eq(st.st_uid, 4242);
    ck_assert_uint_eq(st.st_gid, nobody.pw_gid);
    assert_socket(d, "t2", nobody.pw_uid, nobody.pw_gid, 0606);
    ck_assert_int_eq(stat(test_daemon_socket(d, "t3"), &st), 0);
    ck_assert_uint_eq(st.st_uid, 4545);
    ck_assert_uint_eq(st.st_gid, 0);
    tu_assert_log(d, "Running as user nobody");

    /* Plugins loaded after the drop still serve (we connect as root). */
    struct vfu_client *c = tu_open(d, "t0");
    ck_assert_uint_eq(tu_rd16(c, TU_CFG, 0x00), TIMER_PCI_VENDOR_ID);
    vfu_client_free(c);
    tu_stop(d);
}
END_TEST

START_TEST(test_root_keeps_uid_but_not_capabilities)
{
    if (skip_unless_root(__func__))
        return;
    struct test_daemon *d = new_daemon("root");
    ck_assert_int_eq(test_daemon_add_device(d, "timer", "t0", NULL), 0);
    tu_start(d);
    pid_t pid = test_daemon_pid(d);
    assert_ids(pid, "Uid", 0);
    ck_assert_uint_eq(proc_field(pid, "CapEff", 16), CAP_CHOWN_MASK);
    ck_assert_uint_eq(proc_field(pid, "CapBnd", 16), 0);
    ck_assert_uint_eq(proc_field(pid, "NoNewPrivs", 10), 1);
    tu_stop(d);
}
END_TEST

START_TEST(test_bad_socket_config_is_refused)
{
    if (skip_unless_root(__func__))
        return;
    static const struct {
        const char *json, *message;
    } cases[] = {
        {"{\"socket_owner\":\"no-such-user-muserd\"}",
         "Unknown user 'no-such-user-muserd' in socket_owner"},
        {"{\"socket_group\":\"no-such-group-muserd\"}",
         "Unknown group 'no-such-group-muserd' in socket_group"},
        {"{\"socket_owner\":-1}",
         "Config key 'socket_owner' must be a name or a numeric id below 4294967295"},
        {"{\"socket_group\":4294967295}",
         "Config key 'socket_group' must be a name or a numeric id below 4294967295"},
        {"{\"socket_mode\":\"0x1ff\"}", "socket_mode must be an octal string"},
        {"{\"socket_mode\":\"4755\"}", "socket_mode must be an octal string"},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        struct test_daemon *d = new_daemon("root");
        ck_assert_int_eq(test_daemon_add_device(d, "timer", "t0", cases[i].json), 0);
        ck_assert_int_ne(tu_expect_start_failure(d), 0);
        tu_assert_log(d, cases[i].message);
        /* The socket bound before the check does not linger. */
        ck_assert_msg(access(test_daemon_socket(d, "t0"), F_OK) < 0, "%s left behind",
                      test_daemon_socket(d, "t0"));
        test_daemon_free(d);
    }
}
END_TEST

START_TEST(test_unknown_user_name_is_refused)
{
    if (skip_unless_root(__func__))
        return;
    struct test_daemon *d = new_daemon("no-such-user-muserd");
    ck_assert_int_ne(tu_expect_start_failure(d), 0);
    tu_assert_log(d, "User 'no-such-user-muserd' (--user-name) does not exist");
    test_daemon_free(d);
}
END_TEST

/* Handing a directory everybody writes to (like /tmp) to one user would give
 * that user everybody's files. */
START_TEST(test_shared_runtime_dir_is_refused)
{
    if (skip_unless_root(__func__) || skip_without_nobody(__func__))
        return;
    char dir[4096];
    struct test_daemon *d = new_daemon("nobody");
    snprintf(dir, sizeof(dir), "%s/shared", test_daemon_runtime_dir(d));
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_int_eq(chmod(dir, 01777), 0);
    ck_assert_int_eq(test_daemon_add_arg(d, "--runtime-dir"), 0);
    ck_assert_int_eq(test_daemon_add_arg(d, dir), 0);
    ck_assert_int_ne(tu_expect_start_failure(d), 0);
    tu_assert_log(d, "Refusing to give runtime directory");
    struct stat st;
    ck_assert_int_eq(stat(dir, &st), 0);
    ck_assert_uint_eq(st.st_uid, 0);
    test_daemon_free(d);
}
END_TEST

/* Started by an unprivileged user that still holds a capability (ambient,
 * as a unit's AmbientCapabilities= would give): muserd drops it. */
START_TEST(test_unprivileged_start_drops_all)
{
    if (skip_unless_root(__func__) || skip_without_nobody(__func__))
        return;
    if (access("/usr/bin/setpriv", X_OK) < 0) {
        printf("SKIP %s: setpriv (util-linux) is not installed\n", __func__);
        return;
    }
    char uid[32], gid[32];
    snprintf(uid, sizeof(uid), "--reuid=%u", (unsigned)nobody.pw_uid);
    snprintf(gid, sizeof(gid), "--regid=%u", (unsigned)nobody.pw_gid);
    const char *wrapper[] = {
        "/usr/bin/setpriv",      uid, gid, "--clear-groups", "--inh-caps=+chown",
        "--ambient-caps=+chown", NULL};
    /* Our own user: the helper's default --user-name root would be refused. */
    struct test_daemon *d = new_daemon("nobody");
    ck_assert_int_eq(test_daemon_set_wrapper(d, wrapper), 0);
    /* The runtime directory is not handed over when not started as root. */
    ck_assert_int_eq(chown(test_daemon_runtime_dir(d), nobody.pw_uid, nobody.pw_gid), 0);
    ck_assert_int_eq(test_daemon_add_device(d, "timer", "t0", "{\"socket_mode\":\"0600\"}"), 0);
    tu_start(d);
    pid_t pid = test_daemon_pid(d);
    assert_ids(pid, "Uid", nobody.pw_uid);
    ck_assert_uint_eq(proc_field(pid, "CapEff", 16), 0);
    ck_assert_uint_eq(proc_field(pid, "CapPrm", 16), 0);
    ck_assert_uint_eq(proc_field(pid, "CapAmb", 16), 0);
    ck_assert_uint_eq(proc_field(pid, "NoNewPrivs", 10), 1);
    assert_socket(d, "t0", nobody.pw_uid, nobody.pw_gid, 0600);
    tu_stop(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("privileges");
    TCase *tc = tcase_create("privileges");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_runs_as_user_with_chown_only);
    tcase_add_test(tc, test_root_keeps_uid_but_not_capabilities);
    tcase_add_test(tc, test_bad_socket_config_is_refused);
    tcase_add_test(tc, test_unknown_user_name_is_refused);
    tcase_add_test(tc, test_shared_runtime_dir_is_refused);
    tcase_add_test(tc, test_unprivileged_start_drops_all);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
