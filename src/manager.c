/* SPDX-License-Identifier: MIT */
#include "manager.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "activation.h"
#include "util/log.h"

bool device_id_valid(const char *id)
{
    size_t len = strlen(id);
    if (len == 0 || len > 64 || id[0] == '.' || id[0] == '-')
        return false;
    for (const char *c = id; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '.' || *c == '-'))
            return false;
    return true;
}

struct device *manager_find_device(const struct manager *m, const char *id)
{
    for (size_t i = 0; i < m->nr_devices; i++)
        if (strcmp(m->devices[i]->id, id) == 0)
            return m->devices[i];
    return NULL;
}

static char *type_list(const struct manager *m)
{
    char *list = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&list, &len);
    if (!f)
        return NULL;
    for (size_t i = 0; i < plugins_count(m->plugins); i++)
        fprintf(f, "%s%s", i ? ", " : "", plugins_get(m->plugins, i)->type->name);
    fclose(f);
    return list;
}

static void on_device_changed(void *userdata, struct device *d)
{
    struct manager *m = userdata;
    if (m->hooks && m->hooks->device_changed)
        m->hooks->device_changed(m->hooks_userdata, d);
}

void manager_set_hooks(struct manager *m, const struct manager_hooks *hooks, void *userdata)
{
    m->hooks = hooks;
    m->hooks_userdata = userdata;
}

int manager_create_device(struct manager *m, const char *type, const char *id,
                          const char *config_json, int listen_fd, struct device **ret,
                          char **error)
{
    _cleanup_free_ char *path = NULL;
    struct device *d;
    int r;

    *error = NULL;
    if (!device_id_valid(id)) {
        if (asprintf(error,
                     "Invalid device id '%s': use 1 to 64 letters, digits, '_', '.' or '-', "
                     "not starting with '.' or '-'.",
                     id) < 0)
            *error = NULL;
        return -EINVAL;
    }
    if (manager_find_device(m, id)) {
        if (asprintf(error, "A device with id '%s' already exists.", id) < 0)
            *error = NULL;
        return -EEXIST;
    }
    const struct plugin_type *t = plugins_find(m->plugins, type);
    if (!t) {
        _cleanup_free_ char *list = type_list(m);
        if (asprintf(error, "No device type '%s' in %s; available: %s.", type, m->plugin_dir,
                     list && *list ? list : "none") < 0)
            *error = NULL;
        return -ENOENT;
    }
    if (asprintf(&path, "%s/%s.sock", m->runtime_dir, id) < 0)
        return -ENOMEM;
    if (m->nr_devices == m->cap_devices) {
        size_t cap = m->cap_devices ? m->cap_devices * 2 : 16;
        struct device **n = reallocarray(m->devices, cap, sizeof(*n));
        if (!n)
            return -ENOMEM;
        m->devices = n;
        m->cap_devices = cap;
    }
    /* A socket systemd made for this id wins over binding our own. */
    _cleanup_close_ int inherited = -1;
    if (listen_fd < 0) {
        inherited = activation_get(m->activation, id);
        if (inherited >= 0)
            listen_fd = inherited;
    }
    r = device_new(m->event, t, id, config_json, path, listen_fd, &d, error);
    if (r < 0)
        return r;
    if (listen_fd == inherited)
        inherited = -1; /* the device has it now */
    device_set_change_callback(d, on_device_changed, m);
    m->devices[m->nr_devices++] = d;
    log_info("Created %s device %s on %s.", type, id, path);
    if (m->hooks && m->hooks->device_added)
        m->hooks->device_added(m->hooks_userdata, d);
    if (ret)
        *ret = d;
    return 0;
}

int manager_destroy_device(struct manager *m, const char *id)
{
    for (size_t i = 0; i < m->nr_devices; i++) {
        struct device *d = m->devices[i];
        if (strcmp(d->id, id) != 0)
            continue;
        m->devices[i] = m->devices[--m->nr_devices];
        log_info("Destroying device %s.", id);
        if (m->hooks && m->hooks->device_removed)
            m->hooks->device_removed(m->hooks_userdata, d);
        device_free(d);
        return 0;
    }
    return -ENOENT;
}

static int mkdir_p(const char *path, mode_t mode)
{
    _cleanup_free_ char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(copy, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(copy, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int manager_new(sd_event *event, const char *plugin_dir, const char *runtime_dir,
                struct manager **ret)
{
    _cleanup_(manager_freep) struct manager *m = calloc(1, sizeof(*m));
    int r;

    if (!m)
        return -ENOMEM;
    m->event = sd_event_ref(event);
    m->plugin_dir = strdup(plugin_dir);
    m->runtime_dir = strdup(runtime_dir);
    if (!m->plugin_dir || !m->runtime_dir)
        return -ENOMEM;
    r = mkdir_p(runtime_dir, 0755);
    if (r < 0)
        return log_error_errno(r, "Cannot create runtime directory %s: %m", runtime_dir);
    r = plugins_load_dir(plugin_dir, &m->plugins);
    if (r < 0)
        return r;
    if (plugins_count(m->plugins) == 0)
        log_warning("No device plugins found in %s.", plugin_dir);
    *ret = TAKE_PTR(m);
    return 0;
}

void manager_free(struct manager *m)
{
    if (!m)
        return;
    while (m->nr_devices > 0)
        device_free(m->devices[--m->nr_devices]);
    free(m->devices);
    activation_free(m->activation);
    plugins_free(m->plugins);
    sd_event_unref(m->event);
    free(m->plugin_dir);
    free(m->runtime_dir);
    free(m);
}
