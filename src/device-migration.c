/* SPDX-License-Identifier: MIT */
#include "device-migration.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device-reset.h"
#include "device.h"
#include "fd-pump.h"
#include "iothreads.h"
#include "util/macro.h"
#include "migration-stream.h"
#include "util/log.h"
#include "vfu/server.h"

/* Who drives the migration in progress (or left the device stopped). */
enum driver {
    DRIVER_NONE,
    DRIVER_CLIENT,   /* vfio-user migration v2 */
    DRIVER_OPERATOR, /* D-Bus Migrate / Incoming */
};

struct device_migration {
    enum driver driver;
    bool incoming; /* waits for Incoming; the socket is held */
    bool stopped;  /* the plugin is quiesced for migration */
    bool stopping; /* quiesce answered -EBUSY: device_migration_quiesced() goes on */
    struct mig_saver *saver;
    bool final;      /* the saver is past pre-copy */
    uint32_t arc_to; /* the client's arc that waits for the plugin to quiesce */
    struct mig_loader *loader;
    /* The operator's call in progress. */
    int incoming_fd; /* Incoming's stream, until the plugin is quiet */
    struct fd_pump *pump;
    struct io_call *call;
    char **why;
};

const char *device_migration_phase_to_string(enum device_migration_phase phase)
{
    static const char *const names[] = {
        [DEVICE_MIGRATION_NONE] = "none",       [DEVICE_MIGRATION_SAVING] = "saving",
        [DEVICE_MIGRATION_STOPPED] = "stopped", [DEVICE_MIGRATION_INCOMING] = "incoming",
        [DEVICE_MIGRATION_LOADING] = "loading", [DEVICE_MIGRATION_FAILED] = "failed",
    };
    return (unsigned)phase < ELEMENTSOF(names) ? names[phase] : "none";
}

static void publish(struct device *d, enum device_migration_phase phase)
{
    pthread_mutex_lock(&d->published_lock);
    bool changed = d->published_migration != (int)phase;
    d->published_migration = phase;
    pthread_mutex_unlock(&d->published_lock);
    if (changed && d->changed)
        d->changed(d->changed_userdata, d);
}

static int set_why(char **why, int r, const char *fmt, ...) _printf_(3, 4);
static int set_why(char **why, int r, const char *fmt, ...)
{
    if (why && !*why) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(why, fmt, ap) < 0)
            *why = NULL;
        va_end(ap);
    }
    return r;
}

int device_migration_setup(struct device *d, bool incoming)
{
    d->mig = calloc(1, sizeof(*d->mig));
    if (!d->mig)
        return -ENOMEM;
    d->mig->incoming = incoming;
    d->mig->incoming_fd = -1;
    d->published_migration = incoming ? DEVICE_MIGRATION_INCOMING : DEVICE_MIGRATION_NONE;
    return 0;
}

bool device_migration_supported(const struct device *d)
{
    const struct muserd_device_ops *ops = d->type->type->ops;
    if (d->type->plugin->abi_version >= 2)
        return PLUGIN_OP(ops, state_save) && PLUGIN_OP(ops, state_load);
    return PLUGIN_OP(ops, save_state) && PLUGIN_OP(ops, load_state);
}

/* ---- stopping and running --------------------------------------------------------- */

/* Quiesce the plugin: 0 stopped, 1 when device_migration_quiesced() follows. */
static int stop(struct device *d)
{
    struct device_migration *m = d->mig;
    if (m->stopped)
        return 0;
    if (m->stopping)
        return 1;
    int r = device_quiesce(d, true);
    if (r == -EBUSY) {
        m->stopping = true;
        return 1;
    }
    if (r < 0)
        return r;
    m->stopped = true;
    return 0;
}

static int run(struct device *d)
{
    struct device_migration *m = d->mig;
    if (!m->stopped && !m->stopping)
        return 0;
    m->stopped = m->stopping = false;
    return device_quiesce(d, false);
}

static void drop_sessions(struct device_migration *m)
{
    mig_saver_free(m->saver);
    m->saver = NULL;
    m->final = false;
    mig_loader_free(m->loader);
    m->loader = NULL;
}

/* ---- the operator's calls ------------------------------------------------------ */

/* An Incoming is over (r): the device runs its new state, or is back to
 * power-on state and waits for a stream again. */
static void incoming_done(struct device *d, int r, bool was_loading)
{
    struct device_migration *m = d->mig;
    if (r >= 0) {
        m->incoming = false;
        m->driver = DRIVER_NONE;
        int k = run(d); /* loaded while quiesced; it starts now */
        if (k < 0)
            log_warning_errno(k, "%s: the plugin failed to resume after its load: %m", d->id);
        vfu_server_hold(d->server, false);
        publish(d, DEVICE_MIGRATION_NONE);
        return;
    }
    if (was_loading) {
        /* Half a stream may be in the plugin and config space: reset it
         * (which also runs the plugin again; the next Incoming stops it). */
        int k = device_reset_now(d);
        if (k < 0)
            log_warning_errno(k, "%s: reset after a failed load failed: %m", d->id);
    } else {
        (void)run(d);
    }
    m->driver = DRIVER_NONE;
    publish(d, DEVICE_MIGRATION_INCOMING);
}

/* The operator's Migrate or Incoming is over (r) and answered. */
static void operator_done(struct device *d, int r)
{
    struct device_migration *m = d->mig;
    struct io_call *call = m->call;
    bool was_loading = m->loader != NULL;

    fd_pump_free(m->pump);
    m->pump = NULL;
    drop_sessions(m);
    m->call = NULL;
    m->why = NULL;
    if (m->incoming)
        incoming_done(d, r, was_loading);
    else if (r < 0) {
        /* A save that failed before the device stopped leaves it running. */
        if (!m->stopped && !m->stopping)
            m->driver = DRIVER_NONE;
        publish(d, m->stopped || m->stopping ? DEVICE_MIGRATION_FAILED : DEVICE_MIGRATION_NONE);
    } else {
        publish(d, DEVICE_MIGRATION_STOPPED);
    }
    if (call)
        io_call_answer(call, r);
}

static int operator_fill(void *opaque, void *buf, size_t len, size_t *n)
{
    struct device *d = opaque;
    struct device_migration *m = d->mig;
    *n = 0;
    if (!m->final) {
        int r = mig_saver_read(m->saver, false, buf, len, n);
        if (r < 0 || *n > 0)
            return r;
        /* Pre-copy has no more: stop the device for the rest. */
        r = stop(d);
        if (r < 0)
            return set_why(m->why, r, "Stopping the device failed: %s", strerror(-r));
        if (r == 1)
            return -EAGAIN; /* device_migration_quiesced() kicks the pump */
        m->final = true;
    }
    return mig_saver_read(m->saver, true, buf, len, n);
}

static void on_written(void *opaque, int status)
{
    struct device *d = opaque;
    if (status < 0)
        set_why(d->mig->why, status, "Writing the migration stream failed: %s",
                status == -EPIPE ? "the reader went away" : strerror(-status));
    else
        log_info("%s: state saved (%zu bytes); the device is stopped.", d->id,
                 fd_pump_bytes(d->mig->pump));
    operator_done(d, status);
}

static int busy(struct device *d, char **why)
{
    struct device_migration *m = d->mig;
    if (m->driver == DRIVER_CLIENT)
        return set_why(why, -EBUSY, "Device '%s' is being migrated by its client.", d->id);
    if (m->call)
        return set_why(why, -EBUSY, "Device '%s' is already being migrated.", d->id);
    return 0;
}

/* Answer the io_call now, or keep it for operator_done(). */
static int answer_or_keep(struct device *d, struct io_call *call, int r)
{
    if (r < 0 || !call) {
        if (call)
            io_call_answer(call, r);
        return r;
    }
    d->mig->call = call;
    return 0;
}

int device_migrate(struct device *d, int fd, char **why)
{
    struct device_migration *m = d->mig;
    struct io_call *call = io_call_defer();
    int r = busy(d, why);

    if (r >= 0 && !device_migration_supported(d))
        r = set_why(why, -ENOTSUP, "Device '%s' cannot migrate: its %s plugin saves no state.",
                    d->id, d->type->type->name);
    if (r >= 0 && m->incoming)
        r = set_why(why, -EINVAL,
                    "Device '%s' is waiting for an incoming stream; it has no "
                    "state to migrate yet.",
                    d->id);
    if (r >= 0) {
        r = mig_saver_new(d, &m->saver);
        if (r < 0)
            set_why(why, r, "Cannot start saving device '%s': %s.", d->id, strerror(-r));
    }
    if (r >= 0) {
        m->why = why;
        m->driver = DRIVER_OPERATOR;
        r = fd_pump_writer_new(d->host.event, fd, operator_fill, on_written, d, &m->pump);
        fd = -1;
        if (r < 0) {
            drop_sessions(m);
            m->why = NULL;
            set_why(why, r, "Cannot write the stream to the file descriptor given: %s.",
                    strerror(-r));
        }
    }
    safe_close(fd);
    if (r >= 0)
        publish(d, DEVICE_MIGRATION_SAVING);
    return answer_or_keep(d, call, r);
}

static int operator_drain(void *opaque, const void *buf, size_t len)
{
    struct device *d = opaque;
    struct device_migration *m = d->mig;
    const char *reason = NULL;
    int r =
        len ? mig_loader_write(m->loader, buf, len, &reason) : mig_loader_end(m->loader, &reason);
    if (r < 0)
        return set_why(m->why, r, "Device '%s' refused the stream: %s.", d->id,
                       reason ? reason : strerror(-r));
    return 0;
}

static void on_read(void *opaque, int status)
{
    struct device *d = opaque;
    if (status < 0)
        set_why(d->mig->why, status, "Reading the migration stream failed: %s", strerror(-status));
    else
        log_info("%s: state loaded (%zu bytes); serving its client.", d->id,
                 fd_pump_bytes(d->mig->pump));
    operator_done(d, status);
}

/* The plugin is quiet: read the stream from fd into it. */
static int start_loading(struct device *d, int fd)
{
    struct device_migration *m = d->mig;
    int r = mig_loader_new(d, &m->loader);
    if (r < 0) {
        safe_close(fd);
        return set_why(m->why, r, "Cannot start loading device '%s': %s.", d->id, strerror(-r));
    }
    r = fd_pump_reader_new(d->host.event, fd, operator_drain, on_read, d, &m->pump);
    if (r < 0)
        return set_why(m->why, r, "Cannot read a stream from the file descriptor given: %s.",
                       strerror(-r));
    return 0;
}

int device_incoming(struct device *d, int fd, char **why)
{
    struct device_migration *m = d->mig;
    struct io_call *call = io_call_defer();
    int r = busy(d, why);

    if (r >= 0 && !m->incoming)
        r = set_why(why, -EINVAL,
                    "Device '%s' was not created to take a stream: create it with "
                    "\"incoming\": true in its config.",
                    d->id);
    /* The plugin takes its state quiesced, as from a client's RESUMING: a
     * transfer or a deadline in the stream must not start before the load
     * is whole. */
    if (r >= 0) {
        r = stop(d);
        if (r < 0)
            set_why(why, r, "Stopping device '%s' to load it failed: %s.", d->id, strerror(-r));
    }
    if (r >= 0) {
        m->why = why;
        m->driver = DRIVER_OPERATOR;
        publish(d, DEVICE_MIGRATION_LOADING);
        if (r == 1) {
            m->incoming_fd = TAKE_FD(fd); /* device_migration_quiesced() goes on */
            r = 0;
        } else {
            r = start_loading(d, TAKE_FD(fd));
        }
        if (r < 0) {
            /* Answered here: operator_done() leaves the call to us. */
            m->call = NULL;
            operator_done(d, r);
        }
    }
    safe_close(fd);
    return answer_or_keep(d, call, r);
}

int device_resume(struct device *d, char **why)
{
    struct device_migration *m = d->mig;
    if (m->driver == DRIVER_CLIENT)
        return set_why(why, -EBUSY,
                       "Device '%s' was stopped by its client; the client resumes it (or "
                       "Reset does).",
                       d->id);
    if (m->incoming)
        return set_why(why, -EINVAL,
                       "Device '%s' is waiting for an incoming stream; give it one with "
                       "Incoming, or destroy it.",
                       d->id);
    if (m->driver != DRIVER_OPERATOR)
        return set_why(why, -EALREADY, "Device '%s' is running; it was not migrated.", d->id);
    if (m->call) {
        /* A save still going: given up. */
        set_why(m->why, -ECANCELED, "The migration of '%s' was abandoned (Resume).", d->id);
        struct io_call *call = TAKE_PTR(m->call);
        fd_pump_free(m->pump);
        m->pump = NULL;
        drop_sessions(m);
        m->why = NULL;
        io_call_answer(call, -ECANCELED);
    }
    m->driver = DRIVER_NONE;
    int r = run(d);
    publish(d, DEVICE_MIGRATION_NONE);
    if (r < 0)
        return set_why(why, r, "Device '%s' failed to resume: %s.", d->id, strerror(-r));
    log_info("%s: resumed by operator request.", d->id);
    return 0;
}

/* ---- the client's state machine ------------------------------------------------------ */

static enum device_migration_phase phase_of(uint32_t state)
{
    switch (state) {
    case VFU_MIG_STOP:
        return DEVICE_MIGRATION_STOPPED;
    case VFU_MIG_STOP_COPY:
    case VFU_MIG_PRE_COPY:
        return DEVICE_MIGRATION_SAVING;
    case VFU_MIG_RESUMING:
        return DEVICE_MIGRATION_LOADING;
    case VFU_MIG_ERROR:
        return DEVICE_MIGRATION_FAILED;
    default:
        return DEVICE_MIGRATION_NONE;
    }
}

static int arc(struct device *d, uint32_t from, uint32_t to)
{
    struct device_migration *m = d->mig;
    const char *reason = NULL;
    int r;

    switch (from * 16 + to) {
    case VFU_MIG_RUNNING * 16 + VFU_MIG_STOP:
        return stop(d);
    case VFU_MIG_PRE_COPY * 16 + VFU_MIG_STOP_COPY:
        r = stop(d);
        if (r == 0)
            m->final = true;
        return r;
    case VFU_MIG_STOP * 16 + VFU_MIG_RUNNING:
        return run(d);
    case VFU_MIG_RUNNING * 16 + VFU_MIG_PRE_COPY:
    case VFU_MIG_STOP * 16 + VFU_MIG_STOP_COPY:
        drop_sessions(m);
        r = mig_saver_new(d, &m->saver);
        m->final = to == VFU_MIG_STOP_COPY;
        return r;
    case VFU_MIG_PRE_COPY * 16 + VFU_MIG_RUNNING:
    case VFU_MIG_STOP_COPY * 16 + VFU_MIG_STOP:
        drop_sessions(m);
        return 0;
    case VFU_MIG_STOP * 16 + VFU_MIG_RESUMING:
        drop_sessions(m);
        return mig_loader_new(d, &m->loader);
    case VFU_MIG_RESUMING * 16 + VFU_MIG_STOP:
        if (!m->loader)
            return -EINVAL;
        r = mig_loader_end(m->loader, &reason);
        if (r < 0)
            log_warning("%s: the client's migration stream was refused: %s.", d->id,
                        reason ? reason : strerror(-r));
        drop_sessions(m);
        return r < 0 ? -EINVAL : 0;
    default:
        return -EINVAL;
    }
}

int device_migration_arc(void *opaque, uint32_t from, uint32_t to)
{
    struct device *d = opaque;
    struct device_migration *m = d->mig;

    if (m->driver == DRIVER_OPERATOR || m->incoming)
        return -EBUSY; /* an operator's migration holds the device */
    int r = arc(d, from, to);
    if (r < 0) {
        publish(d, DEVICE_MIGRATION_FAILED);
        return r;
    }
    m->driver = to == VFU_MIG_RUNNING ? DRIVER_NONE : DRIVER_CLIENT;
    if (r == 1) {
        m->arc_to = to; /* published once the plugin is quiet */
        return VFU_MIG_LATER;
    }
    publish(d, phase_of(to));
    return 0;
}

int device_migration_read(void *opaque, void *buf, size_t len, size_t *n)
{
    struct device *d = opaque;
    struct device_migration *m = d->mig;
    if (!m->saver || m->driver != DRIVER_CLIENT)
        return -EINVAL;
    return mig_saver_read(m->saver, m->final, buf, len, n);
}

int device_migration_write(void *opaque, const void *buf, size_t len)
{
    struct device *d = opaque;
    struct device_migration *m = d->mig;
    const char *reason = NULL;
    if (!m->loader || m->driver != DRIVER_CLIENT)
        return -EINVAL;
    int r = mig_loader_write(m->loader, buf, len, &reason);
    if (r < 0)
        log_warning("%s: the client's migration stream is bad: %s.", d->id,
                    reason ? reason : strerror(-r));
    return r < 0 ? -EINVAL : 0;
}

void device_migration_abort(void *opaque)
{
    struct device *d = opaque;
    struct device_migration *m = d->mig;
    if (!m || m->driver != DRIVER_CLIENT)
        return;
    bool was_loading = m->loader != NULL;
    drop_sessions(m);
    if (!m->stopped && !m->stopping)
        m->driver = DRIVER_NONE;
    publish(d, was_loading                ? DEVICE_MIGRATION_FAILED
               : m->driver == DRIVER_NONE ? DEVICE_MIGRATION_NONE
                                          : DEVICE_MIGRATION_STOPPED);
}

bool device_migration_holds(const struct device *d)
{
    return d->mig && (d->mig->stopped || d->mig->stopping);
}

void device_migration_quiesced(struct device *d)
{
    struct device_migration *m = d->mig;
    if (!m->stopping)
        return;
    m->stopping = false;
    int status = device_quiesce_status(d);
    if (status >= 0) {
        m->stopped = true;
        m->final = m->saver != NULL;
    }
    if (m->driver == DRIVER_CLIENT) {
        publish(d, status < 0 ? DEVICE_MIGRATION_FAILED : phase_of(m->arc_to));
        vfu_server_mig_done(d->server, status);
    } else if (m->incoming_fd >= 0) {
        int fd = TAKE_FD(m->incoming_fd);
        int r = status < 0 ? status : start_loading(d, fd);
        if (status < 0) {
            safe_close(fd);
            set_why(m->why, r, "Stopping the device to load it failed: %s", strerror(-r));
        }
        if (r < 0)
            operator_done(d, r);
    } else if (m->pump) {
        if (status < 0) {
            set_why(m->why, status, "Stopping the device failed: %s", strerror(-status));
            operator_done(d, status);
        } else {
            fd_pump_kick(m->pump);
        }
    }
}

void device_migration_on_reset(struct device *d)
{
    struct device_migration *m = d->mig;
    if (!m)
        return;
    if (m->call) {
        set_why(m->why, -ECANCELED, "Device '%s' was reset during its migration.", d->id);
        struct io_call *call = TAKE_PTR(m->call);
        fd_pump_free(m->pump);
        m->pump = NULL;
        m->why = NULL;
        io_call_answer(call, -ECANCELED);
    }
    drop_sessions(m);
    /* The reset ran the plugin again (quiesce off). */
    m->stopped = m->stopping = false;
    m->driver = DRIVER_NONE;
    if (d->server)
        vfu_server_mig_reset(d->server);
    publish(d, m->incoming ? DEVICE_MIGRATION_INCOMING : DEVICE_MIGRATION_NONE);
}

void device_migration_teardown(struct device *d)
{
    struct device_migration *m = d->mig;
    if (!m)
        return;
    if (m->call) {
        set_why(m->why, -ECANCELED, "Device '%s' was destroyed during its migration.", d->id);
        struct io_call *call = TAKE_PTR(m->call);
        m->why = NULL;
        io_call_answer(call, -ECANCELED);
    }
    fd_pump_free(m->pump);
    m->pump = NULL;
    m->incoming_fd = safe_close(m->incoming_fd);
    drop_sessions(m);
    m->driver = DRIVER_NONE; /* the server's abort, next, finds nothing */
}

void device_migration_free(struct device *d)
{
    free(d->mig);
    d->mig = NULL;
}
