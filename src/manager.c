/* SPDX-License-Identifier: MIT */
#include "manager.h"

#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "activation.h"
#include "manager-internal.h"
#include "util/log.h"
#include "util/sentence.h"

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

/*
 * The id index: open addressing with linear probing over m->devices. A slot
 * holds a position in the array plus one; 0 is empty, SLOT_DELETED a removed
 * entry that probes walk past. D-Bus looks a device up on every property
 * read and signal, so a linear scan showed up as a quarter of muserd's time
 * when creating 10,000 devices.
 */
#define SLOT_EMPTY   0
#define SLOT_DELETED SIZE_MAX

static size_t id_hash(const char *id)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)id; *c; c++)
        h = (h ^ *c) * 0x100000001b3ull;
    return (size_t)h;
}

static size_t *index_find(const struct manager *m, const char *id)
{
    if (m->index_cap == 0)
        return NULL;
    for (size_t i = id_hash(id) & (m->index_cap - 1);; i = (i + 1) & (m->index_cap - 1)) {
        size_t *slot = &m->index[i];
        if (*slot == SLOT_EMPTY)
            return NULL;
        if (*slot != SLOT_DELETED && strcmp(m->devices[*slot - 1]->id, id) == 0)
            return slot;
    }
}

static void index_insert(struct manager *m, size_t pos)
{
    for (size_t i = id_hash(m->devices[pos]->id) & (m->index_cap - 1);;
         i = (i + 1) & (m->index_cap - 1)) {
        if (m->index[i] == SLOT_EMPTY || m->index[i] == SLOT_DELETED) {
            m->index_used += m->index[i] == SLOT_EMPTY;
            m->index[i] = pos + 1;
            return;
        }
    }
}

/* Make room for one more device: at most 3/4 of the slots used (deleted
 * ones count: they lengthen probes), else rebuild without them. */
static int index_reserve(struct manager *m)
{
    if ((m->index_used + 1) * 4 <= m->index_cap * 3)
        return 0;
    size_t cap = 64;
    while (cap < (m->nr_devices + 1) * 2)
        cap *= 2;
    size_t *n = calloc(cap, sizeof(*n));
    if (!n)
        return -ENOMEM;
    free(m->index);
    m->index = n;
    m->index_cap = cap;
    m->index_used = 0;
    for (size_t pos = 0; pos < m->nr_devices; pos++)
        index_insert(m, pos);
    return 0;
}

struct device *manager_find_device(const struct manager *m, const char *id)
{
    const size_t *slot = index_find(m, id);
    return slot ? m->devices[*slot - 1] : NULL;
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

/* ---- the registry ------------------------------------------------------------------ */

void manager_set_hooks(struct manager *m, const struct manager_hooks *hooks, void *userdata)
{
    m->hooks = hooks;
    m->hooks_userdata = userdata;
}

int manager_registry_add(struct manager *m, struct device *d)
{
    int r = index_reserve(m);
    if (r < 0)
        return r;
    if (m->nr_devices == m->cap_devices) {
        size_t cap = m->cap_devices ? m->cap_devices * 2 : 16;
        struct device **n = reallocarray(m->devices, cap, sizeof(*n));
        if (!n)
            return -ENOMEM;
        m->devices = n;
        m->cap_devices = cap;
    }
    m->devices[m->nr_devices] = d;
    index_insert(m, m->nr_devices++);
    return 0;
}

struct device *manager_registry_remove(struct manager *m, const char *id)
{
    size_t *slot = index_find(m, id);
    if (!slot)
        return NULL;
    size_t pos = *slot - 1, last = m->nr_devices - 1;
    struct device *d = m->devices[pos];
    *slot = SLOT_DELETED;
    if (pos != last) {
        /* The last device moves into the hole; its index entry follows. */
        m->devices[pos] = m->devices[last];
        *index_find(m, m->devices[pos]->id) = pos + 1;
    }
    m->nr_devices--;
    return d;
}

/* What every create checks on the main loop, before a thread sees it. On
 * success req holds the type, the socket path (*path, to free) and the
 * listening socket systemd made for the id, if any. */
static int check_create(struct manager *m, const char *type, const char *id,
                        const char *config_json, struct create_request *req, char **path,
                        char **error)
{
    *error = NULL;
    if (!device_id_valid(id))
        return sentence_set(error, -EINVAL,
                            "Invalid device id '%s': use 1 to 64 letters, digits, '_', '.' or '-', "
                            "not starting with '.' or '-'.",
                            id);
    if (manager_find_device(m, id))
        return sentence_set(error, -EEXIST, "A device with id '%s' already exists.", id);
    if (manager_id_busy(m, id))
        return sentence_set(error, -EEXIST,
                            "A device with id '%s' already exists: it is being created or "
                            "destroyed; try again when that is done.",
                            id);
    const struct plugin_type *t = plugins_find(m->plugins, type);
    if (!t) {
        _cleanup_free_ char *list = type_list(m);
        return sentence_set(error, -ENOENT, "No device type '%s' in %s; available: %s.", type,
                            m->plugin_dir, list && *list ? list : "none");
    }
    if (asprintf(path, "%s/%s.sock", m->runtime_dir, id) < 0)
        return -ENOMEM;
    /* A socket systemd made for this id wins over binding our own. */
    *req = (struct create_request){.type = t,
                                   .id = id,
                                   .config_json = config_json,
                                   .path = *path,
                                   .listen_fd = activation_get(m->activation, id)};
    return 0;
}

int manager_create_device_async(struct manager *m, const char *type, const char *id,
                                const char *config_json, manager_create_done_fn done,
                                void *userdata, char **error)
{
    _cleanup_free_ char *path = NULL;
    struct create_request req;
    int r = check_create(m, type, id, config_json, &req, &path, error);
    if (r < 0)
        return r;
    return manager_threads_create_async(m, &req, done, userdata, error);
}

/* glibc hands freed memory back to the kernel only from the top of the heap,
 * and a destroyed device's memory mostly sits below live allocations: without
 * a trim, RSS stays at its high-water mark after devices go. malloc_trim()
 * walks the whole heap, so run it once destroys have settled, not per device. */
static int on_trim(sd_event_source *s, uint64_t usec, void *userdata)
{
    malloc_trim(0);
    return 0;
}

void manager_schedule_trim(struct manager *m)
{
    const uint64_t delay_usec = 1000000;
    uint64_t now;

    if (sd_event_now(m->event, CLOCK_MONOTONIC, &now) < 0)
        return;
    if (m->trim_event) {
        (void)sd_event_source_set_time(m->trim_event, now + delay_usec);
        (void)sd_event_source_set_enabled(m->trim_event, SD_EVENT_ONESHOT);
        return;
    }
    if (sd_event_add_time(m->event, &m->trim_event, CLOCK_MONOTONIC, now + delay_usec,
                          delay_usec / 10, on_trim, m) < 0)
        m->trim_event = NULL; /* only memory stays high; nothing to report */
}

/* Out of the registry and off D-Bus at once; gone from its thread later. */
static struct device *take_out(struct manager *m, const char *id)
{
    struct device *d = manager_registry_remove(m, id);
    if (!d)
        return NULL;
    log_info("Destroying device %s.", id);
    if (m->hooks && m->hooks->device_removed)
        m->hooks->device_removed(m->hooks_userdata, d);
    return d;
}

int manager_destroy_device_async(struct manager *m, const char *id, manager_done_fn done,
                                 void *userdata)
{
    struct device *d = take_out(m, id);
    if (!d)
        return -ENOENT;
    return manager_threads_free_async(m, d, done, userdata);
}

int manager_reset_device_async(struct manager *m, const char *id, manager_done_fn done,
                               void *userdata)
{
    struct device *d = manager_find_device(m, id);
    if (!d)
        return -ENOENT;
    return manager_threads_reset_async(m, d, done, userdata);
}

int manager_migration_async(struct manager *m, const char *id, enum manager_migration_op op, int fd,
                            manager_why_done_fn done, void *userdata)
{
    struct device *d = manager_find_device(m, id);
    if (!d) {
        safe_close(fd);
        return -ENOENT;
    }
    return manager_threads_migration_async(m, d, op, fd, done, userdata);
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

int manager_new(sd_event *event, struct io_threads *threads, const char *plugin_dir,
                const char *runtime_dir, struct manager **ret)
{
    _cleanup_(manager_freep) struct manager *m = calloc(1, sizeof(*m));
    int r;

    if (!m)
        return -ENOMEM;
    m->event = sd_event_ref(event);
    m->threads = threads;
    r = manager_threads_init(m);
    if (r < 0)
        return r;
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
    /* Answers of calls in flight first: they may add or free devices. */
    (void)manager_flush(m, -1);
    while (m->nr_devices > 0)
        manager_threads_free(m, m->devices[--m->nr_devices]);
    /* A device freed with a reset still waiting answered it -ECANCELED:
     * run those answers while the manager exists. */
    (void)manager_flush(m, -1);
    /* Notices still queued look their device up: an empty index says none. */
    free(m->index);
    m->index = NULL;
    m->index_cap = 0;
    manager_threads_done(m);
    free(m->devices);
    sd_event_source_disable_unref(m->trim_event);
    activation_free(m->activation);
    plugins_free(m->plugins);
    sd_event_unref(m->event);
    free(m->plugin_dir);
    free(m->runtime_dir);
    free(m);
}
