/* SPDX-License-Identifier: MIT */
/*
 * The manager's devices on their I/O threads: where a device goes, building,
 * resetting and freeing it on its thread (waiting, or answered later on the
 * main loop), the ids busy meanwhile, and state changes forwarded from the
 * device threads to the main loop. Main thread only, but for the functions
 * marked "on the device's thread".
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "device-config.h"
#include "device-migration.h"
#include "device-reset.h"
#include "iothreads.h"
#include "manager-internal.h"
#include "util/log.h"
#include "util/mailbox.h"

struct plugin_pin {
    const struct muserd_plugin *plugin;
    struct io_thread *thread;
    unsigned devices; /* placed there, made or being made; 0: the pin goes */
};

struct busy_id {
    char *id;
};

/* ---- state changes, from a device's thread to the main loop ----------------------- */

struct change_notice {
    struct manager *m;
    struct device_published now; /* each step is announced, not just the last */
    char id[];                   /* by id: the device may be gone when this arrives */
};

static void on_change_notice(void *arg)
{
    struct change_notice *n = arg;
    struct manager *m = n->m;
    struct device *d = manager_find_device(m, n->id);
    if (d && m->hooks && m->hooks->device_changed)
        m->hooks->device_changed(m->hooks_userdata, d, &n->now);
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
        device_get_published(d, &n->now);
        memcpy(n->id, d->id, len);
    }
    if (!n || mailbox_post(m->notices, on_change_notice, n) < 0) {
        free(n);
        log_warning("%s: out of memory: D-Bus misses a change of state.", d->id);
    }
}

int manager_threads_init(struct manager *m)
{
    return mailbox_new(m->event, &m->notices);
}

int manager_flush(struct manager *m, int timeout_ms)
{
    /* The main loop may have finished: take the answers directly. */
    int r = io_threads_flush(m->threads, timeout_ms);
    if (r >= 0 && m->jobs_in_flight > 0)
        log_error("%u device job(s) still unanswered at exit.", m->jobs_in_flight);
    return r;
}

void manager_threads_done(struct manager *m)
{
    mailbox_free(m->notices); /* the notices find no device any more */
    m->notices = NULL;
    for (size_t i = 0; i < m->nr_busy; i++)
        free(m->busy[i].id);
    free(m->busy);
    free(m->pins);
}

/* ---- busy ids ---------------------------------------------------------------------- */

bool manager_id_busy(const struct manager *m, const char *id)
{
    for (size_t i = 0; i < m->nr_busy; i++)
        if (strcmp(m->busy[i].id, id) == 0)
            return true;
    return false;
}

static int busy_add(struct manager *m, const char *id)
{
    struct busy_id *n = reallocarray(m->busy, m->nr_busy + 1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    m->busy = n;
    m->busy[m->nr_busy].id = strdup(id);
    if (!m->busy[m->nr_busy].id)
        return -ENOMEM;
    m->nr_busy++;
    return 0;
}

static void busy_remove(struct manager *m, const char *id)
{
    for (size_t i = 0; i < m->nr_busy; i++)
        if (strcmp(m->busy[i].id, id) == 0) {
            free(m->busy[i].id);
            m->busy[i] = m->busy[--m->nr_busy];
            return;
        }
}

/* ---- placement --------------------------------------------------------------------- */

static struct io_thread *device_thread(const struct device *d)
{
    return d->manager_data;
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
    unsigned n = io_threads_count(m->threads);
    uint64_t want;
    int r = device_config_peek_uint(config_json, "io_thread", &want);
    bool chosen = r == 0;
    if (chosen && want >= n) {
        if (asprintf(error,
                     "io_thread %" PRIu64 " does not exist: muserd runs %u I/O thread(s), "
                     "0 to %u (--io-threads).",
                     want, n, n - 1) < 0)
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
            struct plugin_pin *p = reallocarray(m->pins, m->nr_pins + 1, sizeof(*p));
            if (!p)
                return -ENOMEM;
            m->pins = p;
            pin = &m->pins[m->nr_pins++];
            *pin = (struct plugin_pin){t->plugin, thread, 0};
        }
        pin->devices++;
    }
    /* Counted from now on, so that creates in flight spread too. */
    io_thread_add_load(thread, 1);
    *ret = thread;
    return 0;
}

/* A device placed by choose_thread() is gone (or was never made). */
static void unplace(struct manager *m, const struct plugin_type *t, struct io_thread *thread)
{
    io_thread_add_load(thread, -1);
    struct plugin_pin *pin = t->plugin->abi_version < 2 ? find_pin(m, t->plugin) : NULL;
    if (pin && --pin->devices == 0)
        *pin = m->pins[--m->nr_pins];
}

/* ---- jobs ---------------------------------------------------------------------------- */

struct job {
    struct manager *m;
    struct io_thread *thread;
    struct device *device; /* made by create; the one to free or reset otherwise */
    /* create only: copies, the caller's strings may go */
    const struct plugin_type *type;
    char *id, *config_json, *path;
    int listen_fd;
    char *error;
    /* migration only: the call, its fd (listen_fd above), the sentence */
    enum manager_migration_op op;
    char *why;
    manager_why_done_fn why_done;
    /* answers */
    manager_create_done_fn create_done;
    manager_done_fn done;
    void *userdata;
};

static void job_free(struct job *j)
{
    if (j->listen_fd >= 0)
        close(j->listen_fd);
    free(j->id);
    free(j->config_json);
    free(j->path);
    free(j->error);
    free(j->why);
    free(j);
}

/* On the device's thread. */
static int create_on_thread(void *arg)
{
    struct job *j = arg;
    int r = device_new(io_thread_event(j->thread), io_thread_mailbox(j->thread), j->type, j->id,
                       j->config_json, j->path, j->listen_fd, &j->device, &j->error);
    if (r < 0)
        return r;
    j->listen_fd = -1; /* the device has it */
    /* Before this thread's loop runs again: a client may connect then. */
    j->device->manager_data = j->thread;
    device_set_change_callback(j->device, on_device_changed, j->m);
    return 0;
}

/* On the device's thread. */
static int free_on_thread(void *arg)
{
    struct job *j = arg;
    device_free(j->device);
    j->device = NULL;
    return 0;
}

/* On the device's thread. */
static int reset_on_thread(void *arg)
{
    struct job *j = arg;
    return device_reset(j->device);
}

static int new_create_job(struct manager *m, const struct create_request *req, struct job **ret,
                          char **error)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j) {
        safe_close(req->listen_fd);
        return -ENOMEM;
    }
    j->m = m;
    j->type = req->type;
    j->listen_fd = req->listen_fd;
    j->id = strdup(req->id);
    j->path = strdup(req->path);
    j->config_json = req->config_json ? strdup(req->config_json) : NULL;
    int r = !j->id || !j->path || (req->config_json && !j->config_json) ? -ENOMEM : 0;
    if (r >= 0)
        r = choose_thread(m, req->type, req->config_json, &j->thread, error);
    if (r < 0) {
        j->thread = NULL;
        job_free(j);
        return r;
    }
    *ret = j;
    return 0;
}

/* The device exists: into the registry, or, without memory for that, gone. */
static int adopt_device(struct manager *m, struct job *j)
{
    struct device *d = j->device;
    int r = manager_registry_add(m, d);
    if (r < 0) {
        /* Out of memory: block the main loop rather than lose the device. */
        (void)io_thread_call_sync(j->thread, free_on_thread, j);
        return r;
    }
    log_info("Created %s device %s on %s (I/O thread %u).", j->type->type->name, d->id,
             d->socket_path, io_thread_index(j->thread));
    if (m->hooks && m->hooks->device_added)
        m->hooks->device_added(m->hooks_userdata, d);
    return 0;
}

static void create_answered(void *arg, int r)
{
    struct job *j = arg;
    struct manager *m = j->m;

    m->jobs_in_flight--;
    busy_remove(m, j->id);
    if (r >= 0)
        r = adopt_device(m, j);
    if (r < 0)
        unplace(m, j->type, j->thread);
    j->create_done(j->userdata, r, r >= 0 ? j->device : NULL, j->error);
    job_free(j);
}

int manager_threads_create_async(struct manager *m, const struct create_request *req,
                                 manager_create_done_fn done, void *userdata, char **error)
{
    struct job *j;
    int r = new_create_job(m, req, &j, error);
    if (r < 0)
        return r;
    j->create_done = done;
    j->userdata = userdata;
    r = busy_add(m, j->id);
    if (r >= 0)
        r = io_thread_call(j->thread, create_on_thread, create_answered, j);
    if (r < 0) {
        busy_remove(m, j->id);
        unplace(m, j->type, j->thread);
        job_free(j);
        return r;
    }
    m->jobs_in_flight++;
    return 0;
}

void manager_threads_free(struct manager *m, struct device *d)
{
    struct job j = {.m = m, .thread = device_thread(d), .device = d, .listen_fd = -1};
    const struct plugin_type *type = d->type;
    (void)io_thread_call_sync(j.thread, free_on_thread, &j);
    unplace(m, type, j.thread);
}

static void free_answered(void *arg, int r)
{
    struct job *j = arg;
    struct manager *m = j->m;

    m->jobs_in_flight--;
    unplace(m, j->type, j->thread);
    busy_remove(m, j->id);
    manager_schedule_trim(m);
    if (j->done)
        j->done(j->userdata, r);
    job_free(j);
}

/* A job on existing device d, answered with done. */
static struct job *new_device_job(struct manager *m, struct device *d, manager_done_fn done,
                                  void *userdata)
{
    struct job *j = calloc(1, sizeof(*j));
    if (j)
        *j = (struct job){.m = m,
                          .thread = device_thread(d),
                          .device = d,
                          .listen_fd = -1,
                          .done = done,
                          .userdata = userdata};
    return j;
}

int manager_threads_free_async(struct manager *m, struct device *d, manager_done_fn done,
                               void *userdata)
{
    struct job *j = new_device_job(m, d, done, userdata);
    if (!j)
        return -ENOMEM;
    j->type = d->type; /* d is gone when the answer comes */
    j->id = strdup(d->id);
    int r = j->id ? busy_add(m, j->id) : -ENOMEM;
    if (r >= 0)
        r = io_thread_call(j->thread, free_on_thread, free_answered, j);
    if (r < 0) {
        /* No memory to do it later: do it now. */
        busy_remove(m, d->id);
        manager_threads_free(m, d);
        job_free(j);
        if (done)
            done(userdata, 0);
        return 0;
    }
    m->jobs_in_flight++;
    return 0;
}

static void reset_answered(void *arg, int r)
{
    struct job *j = arg;
    j->m->jobs_in_flight--;
    if (j->done)
        j->done(j->userdata, r);
    job_free(j);
}

int manager_threads_reset_async(struct manager *m, struct device *d, manager_done_fn done,
                                void *userdata)
{
    struct job *j = new_device_job(m, d, done, userdata);
    if (!j)
        return -ENOMEM;
    /* A destroy posted after this runs after it on the same thread: d stays. */
    int r = io_thread_call(j->thread, reset_on_thread, reset_answered, j);
    if (r < 0) {
        job_free(j);
        return r;
    }
    m->jobs_in_flight++;
    return 0;
}

/* On the device's thread. */
static int migration_on_thread(void *arg)
{
    struct job *j = arg;
    int fd = TAKE_FD(j->listen_fd);
    switch (j->op) {
    case MANAGER_MIGRATE:
        return device_migrate(j->device, fd, &j->why);
    case MANAGER_INCOMING:
        return device_incoming(j->device, fd, &j->why);
    case MANAGER_RESUME:
        safe_close(fd);
        return device_resume(j->device, &j->why);
    }
    safe_close(fd);
    return -EINVAL;
}

static void migration_answered(void *arg, int r)
{
    struct job *j = arg;
    j->m->jobs_in_flight--;
    if (j->why_done)
        j->why_done(j->userdata, r, j->why);
    job_free(j);
}

int manager_threads_migration_async(struct manager *m, struct device *d,
                                    enum manager_migration_op op, int fd, manager_why_done_fn done,
                                    void *userdata)
{
    struct job *j = new_device_job(m, d, NULL, NULL);
    if (!j) {
        safe_close(fd);
        return -ENOMEM;
    }
    j->op = op;
    j->listen_fd = fd;
    j->why_done = done;
    j->userdata = userdata;
    /* A destroy posted after this runs after it on the same thread: d stays. */
    int r = io_thread_call(j->thread, migration_on_thread, migration_answered, j);
    if (r < 0) {
        job_free(j);
        return r;
    }
    m->jobs_in_flight++;
    return 0;
}
