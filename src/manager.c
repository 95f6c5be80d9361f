/* SPDX-License-Identifier: MIT */
#include "manager.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "activation.h"
#include "device-config.h"
#include "iothreads.h"
#include "util/log.h"
#include "util/mailbox.h"

struct plugin_pin {
    const struct muserd_plugin *plugin;
    struct io_thread *thread;
};

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

/* ---- state changes, from a device's thread to the main loop ----------------------- */

struct change_notice {
    struct manager *m;
    char id[]; /* by id: the device may be gone when this arrives */
};

static void on_change_notice(void *arg)
{
    struct change_notice *n = arg;
    struct manager *m = n->m;
    struct device *d = manager_find_device(m, n->id);
    if (d && m->hooks && m->hooks->device_changed)
        m->hooks->device_changed(m->hooks_userdata, d);
    free(n);
}

/* On the device's thread. */
static void on_device_changed(void *userdata, struct device *d)
{
    struct manager *m = userdata;
    size_t len = strlen(d->id) + 1;
    struct change_notice *n = malloc(sizeof(*n) + len);
    if (n) {
        n->m = m;
        memcpy(n->id, d->id, len);
    }
    if (!n || mailbox_post(m->notices, on_change_notice, n) < 0) {
        free(n);
        log_warning("%s: out of memory: D-Bus misses a change of state.", d->id);
    }
}

/* ---- work on a device's thread --------------------------------------------------- */

static struct io_thread *device_thread(const struct device *d)
{
    return d->manager_data;
}

unsigned manager_device_thread(const struct device *d)
{
    return io_thread_index(device_thread(d));
}

struct create_job {
    struct manager *m;
    struct io_thread *thread;
    const struct plugin_type *type;
    const char *id, *config_json, *path;
    int listen_fd;
    struct device *device;
    char *error;
};

static int create_on_thread(void *arg)
{
    struct create_job *j = arg;
    int r = device_new(io_thread_event(j->thread), j->type, j->id, j->config_json, j->path,
                       j->listen_fd, &j->device, &j->error);
    if (r < 0)
        return r;
    /* Before the loop of this thread runs again: a client may connect then. */
    j->device->manager_data = j->thread;
    device_set_change_callback(j->device, on_device_changed, j->m);
    return 0;
}

static int free_on_thread(void *arg)
{
    device_free(arg);
    return 0;
}

static int reset_on_thread(void *arg)
{
    return device_reset(arg);
}

static struct plugin_pin *find_pin(struct manager *m, const struct muserd_plugin *plugin)
{
    for (size_t i = 0; i < m->nr_pins; i++)
        if (m->pins[i].plugin == plugin)
            return &m->pins[i];
    return NULL;
}

/* Where a new device of type t with this config runs. */
static int choose_thread(struct manager *m, const struct plugin_type *t, const char *config_json,
                         struct io_thread **ret, char **error)
{
    uint64_t want;
    int r = device_config_peek_uint(config_json, "io_thread", &want);
    bool chosen = r == 0;
    if (r == 0 && want >= io_threads_count(m->threads)) {
        if (asprintf(error,
                     "io_thread %" PRIu64 " does not exist: muserd runs %u I/O thread(s), "
                     "0 to %u (--io-threads).",
                     want, io_threads_count(m->threads), io_threads_count(m->threads) - 1) < 0)
            *error = NULL;
        return -EINVAL;
    }
    struct io_thread *thread =
        chosen ? io_threads_get(m->threads, (unsigned)want) : io_threads_least_loaded(m->threads);

    if (t->plugin->abi_version < 2) {
        struct plugin_pin *pin = find_pin(m, t->plugin);
        if (pin && chosen && pin->thread != thread) {
            if (asprintf(error,
                         "The %s plugin is built for plugin ABI %u, whose devices all run on one "
                         "I/O thread: its devices are on thread %u, not %" PRIu64 ".",
                         t->plugin->name, t->plugin->abi_version, io_thread_index(pin->thread),
                         want) < 0)
                *error = NULL;
            return -EINVAL;
        }
        if (pin)
            thread = pin->thread;
        else {
            struct plugin_pin *n = reallocarray(m->pins, m->nr_pins + 1, sizeof(*n));
            if (!n)
                return -ENOMEM;
            m->pins = n;
            m->pins[m->nr_pins++] = (struct plugin_pin){t->plugin, thread};
        }
    }
    *ret = thread;
    return 0;
}

/* ---- the registry ------------------------------------------------------------------ */

void manager_set_hooks(struct manager *m, const struct manager_hooks *hooks, void *userdata)
{
    m->hooks = hooks;
    m->hooks_userdata = userdata;
}

int manager_create_device(struct manager *m, const char *type, const char *id,
                          const char *config_json, int listen_fd, struct device **ret, char **error)
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
    r = index_reserve(m);
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
    /* A socket systemd made for this id wins over binding our own. */
    _cleanup_close_ int inherited = -1;
    if (listen_fd < 0) {
        inherited = activation_get(m->activation, id);
        if (inherited >= 0)
            listen_fd = inherited;
    }
    struct io_thread *thread;
    r = choose_thread(m, t, config_json, &thread, error);
    if (r < 0)
        return r;
    struct create_job job = {
        .m = m,
        .thread = thread,
        .type = t,
        .id = id,
        .config_json = config_json,
        .path = path,
        .listen_fd = listen_fd,
    };
    r = io_thread_call_sync(thread, create_on_thread, &job);
    if (r < 0) {
        *error = job.error;
        return r;
    }
    d = job.device;
    if (listen_fd == inherited)
        inherited = -1; /* the device has it now */
    io_thread_add_load(thread, 1);
    m->devices[m->nr_devices] = d;
    index_insert(m, m->nr_devices++);
    log_info("Created %s device %s on %s (I/O thread %u).", type, id, path,
             io_thread_index(thread));
    if (m->hooks && m->hooks->device_added)
        m->hooks->device_added(m->hooks_userdata, d);
    if (ret)
        *ret = d;
    return 0;
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

static void schedule_trim(struct manager *m)
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

/* Waits until the device is gone from its thread, socket file and all: a
 * device made next with the same id binds the same path. */
static void free_device(struct device *d)
{
    struct io_thread *thread = device_thread(d);
    (void)io_thread_call_sync(thread, free_on_thread, d);
    io_thread_add_load(thread, -1);
}

int manager_destroy_device(struct manager *m, const char *id)
{
    size_t *slot = index_find(m, id);
    if (!slot)
        return -ENOENT;
    size_t pos = *slot - 1, last = m->nr_devices - 1;
    struct device *d = m->devices[pos];
    *slot = SLOT_DELETED;
    if (pos != last) {
        /* The last device moves into the hole; its index entry follows. */
        m->devices[pos] = m->devices[last];
        *index_find(m, m->devices[pos]->id) = pos + 1;
    }
    m->nr_devices--;
    log_info("Destroying device %s.", id);
    if (m->hooks && m->hooks->device_removed)
        m->hooks->device_removed(m->hooks_userdata, d);
    free_device(d);
    schedule_trim(m);
    return 0;
}

int manager_reset_device(struct manager *m, const char *id)
{
    struct device *d = manager_find_device(m, id);
    if (!d)
        return -ENOENT;
    return io_thread_call_sync(device_thread(d), reset_on_thread, d);
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
    r = mailbox_new(event, &m->notices);
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
    while (m->nr_devices > 0)
        free_device(m->devices[--m->nr_devices]);
    /* Changes the devices posted before they went find none: dropped. */
    free(m->index);
    m->index = NULL;
    m->index_cap = 0;
    mailbox_free(m->notices);
    free(m->pins);
    free(m->devices);
    sd_event_source_disable_unref(m->trim_event);
    activation_free(m->activation);
    plugins_free(m->plugins);
    sd_event_unref(m->event);
    free(m->plugin_dir);
    free(m->runtime_dir);
    free(m);
}
