/* SPDX-License-Identifier: MIT */
#include "socket-access.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device-config.h"
#include "util/macro.h"
#include "util/sentence.h"

/* Digits only, fitting an id: a numeric id, which needs no user database
 * entry (a VMM may run under a uid of its own range, as libvirt's dynamic
 * ownership does). */
static bool parse_id(const char *s, unsigned *ret)
{
    unsigned long v = 0;
    if (!*s)
        return false;
    for (const char *c = s; *c; c++) {
        if (*c < '0' || *c > '9')
            return false;
        v = v * 10 + (unsigned long)(*c - '0');
        /* (uid_t)-1 means "unchanged" to chown(): never a real id. */
        if (v >= UINT_MAX)
            return false;
    }
    *ret = (unsigned)v;
    return true;
}

static int resolve_user(const char *name, uid_t *uid, char **error)
{
    struct passwd pw, *found = NULL;
    char buf[16384];
    unsigned id;

    if (parse_id(name, &id)) {
        *uid = id;
        return 0;
    }
    int r = getpwnam_r(name, &pw, buf, sizeof(buf), &found);
    if (r != 0 && r != ENOENT && r != ESRCH)
        return sentence_set(error, -r, "Cannot look up socket_owner '%s': %s.", name, strerror(r));
    if (!found)
        return sentence_set(error, -EINVAL,
                            "Unknown user '%s' in socket_owner: give an existing user name or a "
                            "numeric uid.",
                            name);
    *uid = found->pw_uid;
    return 0;
}

static int resolve_group(const char *name, gid_t *gid, char **error)
{
    struct group gr, *found = NULL;
    char buf[16384];
    unsigned id;

    if (parse_id(name, &id)) {
        *gid = id;
        return 0;
    }
    int r = getgrnam_r(name, &gr, buf, sizeof(buf), &found);
    if (r != 0 && r != ENOENT && r != ESRCH)
        return sentence_set(error, -r, "Cannot look up socket_group '%s': %s.", name, strerror(r));
    if (!found)
        return sentence_set(error, -EINVAL,
                            "Unknown group '%s' in socket_group: give an existing group name or a "
                            "numeric gid.",
                            name);
    *gid = found->gr_gid;
    return 0;
}

/* "0660" or "660": permission bits only. Set-id and sticky bits mean nothing
 * on a socket, so they are refused rather than silently kept. */
static int parse_mode(const char *s, mode_t *mode, char **error)
{
    size_t len = strlen(s);
    mode_t m = 0;
    bool ok = (len == 3 || (len == 4 && s[0] == '0'));

    for (size_t i = 0; ok && i < len; i++) {
        ok = s[i] >= '0' && s[i] <= '7';
        m = (mode_t)(m * 8 + (mode_t)(s[i] - '0'));
    }
    if (!ok)
        return sentence_set(error, -EINVAL,
                            "socket_mode must be an octal string of permission bits like "
                            "\"0660\", not '%s'.",
                            s);
    *mode = m;
    return 0;
}

bool socket_access_requested(struct json_object *config)
{
    const char *v;
    return device_config_string(config, "socket_owner", &v) >= 0 ||
           device_config_string(config, "socket_group", &v) >= 0 ||
           device_config_string(config, "socket_mode", &v) >= 0;
}

int socket_access_apply(const char *path, struct json_object *config, char **error)
{
    const char *owner = NULL, *group = NULL, *mode_text = NULL;
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    mode_t mode = 0;
    struct stat st;
    int r;

    *error = NULL;
    (void)device_config_string(config, "socket_owner", &owner);
    (void)device_config_string(config, "socket_group", &group);
    (void)device_config_string(config, "socket_mode", &mode_text);
    if (owner && (r = resolve_user(owner, &uid, error)) < 0)
        return r;
    if (group && (r = resolve_group(group, &gid, error)) < 0)
        return r;
    if (mode_text && (r = parse_mode(mode_text, &mode, error)) < 0)
        return r;
    if (!owner && !group && !mode_text)
        return 0;

    if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return sentence_set(error, -ENOTSOCK, "%s is not the socket muserd bound.", path);
    /* The mode first, while the file is still ours: chmod after giving it
     * away would need CAP_FOWNER as well. */
    if (mode_text && chmod(path, mode) < 0) {
        r = -errno;
        return sentence_set(error, r, "Cannot set mode %s on %s: %s.", mode_text, path,
                            strerror(-r));
    }
    if ((owner || group) && lchown(path, uid, gid) < 0) {
        r = -errno;
        return sentence_set(error, r, "Cannot give %s to %s%s%s: %s%s", path, owner ? owner : "",
                            group ? ":" : "", group ? group : "", strerror(-r),
                            r == -EPERM ? " (that needs CAP_CHOWN: start muserd as root, "
                                          "see PRIVILEGES in muserd(8))."
                                        : ".");
    }
    return 0;
}
