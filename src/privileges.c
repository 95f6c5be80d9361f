/* SPDX-License-Identifier: MIT */
#include "privileges.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <cap-ng.h>

#include "util/log.h"

/*
 * What muserd keeps once running: CAP_CHOWN, so that a device socket can be
 * given to the VM's user and group (socket_owner, socket_group). Setting the
 * mode needs no capability because socket-access.c chmods while muserd still
 * owns the file, hence no CAP_FOWNER.
 */
static const unsigned kept_caps[] = {CAP_CHOWN};

static void want_kept_caps(void)
{
    capng_clear(CAPNG_SELECT_BOTH);
    for (size_t i = 0; i < ELEMENTSOF(kept_caps); i++)
        capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, kept_caps[i]);
}

/* Without no_new_privs, a plugin that exec()s a setuid binary or one with
 * file capabilities would get back what we dropped. */
static int forbid_new_privileges(void)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return log_error_errno(-errno, "Failed to set no_new_privs: %m");
    return 0;
}

static const char *how_to_create(void)
{
    return "Create it with 'systemd-sysusers muserd.conf' (muserd ships sysusers.d/muserd.conf) "
           "or 'useradd --system --no-create-home --shell /usr/sbin/nologin muserd', "
           "or pass --user-name root to keep root with only CAP_CHOWN";
}

/* mkdir -p: root creates it here, as the user it becomes might not be
 * allowed to. */
static int mkdir_parents_and(const char *path)
{
    _cleanup_free_ char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    for (char *p = copy + 1;; p++) {
        if (*p != '/' && *p != 0)
            continue;
        char c = *p;
        *p = 0;
        if (mkdir(copy, 0755) < 0 && errno != EEXIST)
            return -errno;
        if (c == 0)
            return 0;
        *p = c;
    }
}

/* Hand the runtime directory to the user muserd becomes, so it can bind and
 * remove device sockets there. A directory every user may write (/tmp, say)
 * is refused: giving it away would hand over everybody's files. */
static int own_runtime_dir(const char *dir, uid_t uid, gid_t gid, const char *user)
{
    struct stat st;

    int r = mkdir_parents_and(dir);
    if (r < 0)
        return log_error_errno(r, "Cannot create runtime directory %s: %m", dir);
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return log_error_errno(-errno, "Cannot open runtime directory %s: %m", dir);
    if (fstat(fd, &st) < 0)
        return log_error_errno(-errno, "Cannot stat runtime directory %s: %m", dir);
    if (st.st_uid == uid && st.st_gid == gid)
        return 0;
    if (st.st_mode & (S_IWOTH | S_ISVTX)) {
        log_error("Refusing to give runtime directory %s to user %s: everybody may write "
                  "there. Use a directory of muserd's own, such as /run/muserd.",
                  dir, user);
        return -EPERM;
    }
    if (fchown(fd, uid, gid) < 0)
        return log_error_errno(-errno, "Cannot give runtime directory %s to user %s: %m", dir,
                               user);
    return 0;
}

/* Started by someone other than root: we cannot become anybody else, and need
 * no capability (socket_owner then only works for our own user). */
static int drop_unprivileged(const char *user_name)
{
    if (user_name) {
        struct passwd *pw = getpwnam(user_name);
        if (!pw || pw->pw_uid != geteuid()) {
            log_error("Cannot switch to user %s: muserd was not started as root. Start it "
                      "as root, or as that user without --user-name.",
                      user_name);
            return -EPERM;
        }
    }
    if (capng_get_caps_process() < 0)
        return log_error_errno(-EIO, "Failed to read our capabilities.");
    if (capng_have_capabilities(CAPNG_SELECT_CAPS) != CAPNG_NONE) {
        capng_clear(CAPNG_SELECT_CAPS);
        if (capng_apply(CAPNG_SELECT_CAPS) < 0)
            return log_error_errno(-EPERM, "Failed to drop our capabilities.");
    }
    return forbid_new_privileges();
}

/* Stay uid 0 (asked for, or no muserd user) but with the minimal set. The
 * runtime directory becomes root's again: without CAP_DAC_OVERRIDE, root
 * could not bind in a directory an earlier run gave to another user. */
static int drop_staying_root(const char *runtime_dir)
{
    int r = own_runtime_dir(runtime_dir, 0, 0, "root");
    if (r < 0)
        return r;
    want_kept_caps();
    if (capng_apply(CAPNG_SELECT_BOTH) < 0)
        return log_error_errno(-EPERM, "Failed to drop capabilities: %m");
    log_info("Running as root with only CAP_CHOWN.");
    return forbid_new_privileges();
}

int privileges_drop(const char *user_name, const char *runtime_dir)
{
    if (geteuid() != 0)
        return drop_unprivileged(user_name);

    const char *name = user_name ? user_name : PRIVILEGES_DEFAULT_USER;
    errno = 0;
    struct passwd *pw = getpwnam(name);
    if (!pw) {
        int r = errno > 0 ? -errno : -ESRCH;
        if (r != -ESRCH && r != -ENOENT)
            return log_error_errno(r, "Cannot look up user %s: %m", name);
        if (user_name) {
            log_error("User '%s' (--user-name) does not exist. %s.", name,
                      strcmp(name, PRIVILEGES_DEFAULT_USER) == 0
                          ? how_to_create()
                          : "Create it, or name an existing user");
            return -ESRCH;
        }
        /* Keeps `muserd` working from a shell and in tests on hosts where the
         * package was not installed; the unit names the user, so a system
         * without it fails there instead. */
        log_warning("User '%s' does not exist, so muserd keeps running as root. %s.", name,
                    how_to_create());
        return drop_staying_root(runtime_dir);
    }
    if (pw->pw_uid == 0)
        return drop_staying_root(runtime_dir);

    /* Copy before getpwnam's static buffer can be reused. */
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    _cleanup_free_ char *pw_name = strdup(pw->pw_name);
    if (!pw_name)
        return log_oom();
    int r = own_runtime_dir(runtime_dir, uid, gid, pw_name);
    if (r < 0)
        return r;

    want_kept_caps();
    /* INIT_SUPP_GRP: the user's own groups (an operator may add muserd to a
     * group that owns backing files), nothing of root's. */
    r = capng_change_id((int)uid, (int)gid, CAPNG_INIT_SUPP_GRP | CAPNG_CLEAR_BOUNDING);
    if (r < 0) {
        int e = errno > 0 ? -errno : -EPERM;
        return log_error_errno(e, "Failed to become user %s (libcap-ng step %d): %m", pw_name, r);
    }
    log_info("Running as user %s (uid %u, gid %u) with only CAP_CHOWN.", pw_name, (unsigned)uid,
             (unsigned)gid);
    return forbid_new_privileges();
}
