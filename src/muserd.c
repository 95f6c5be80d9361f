/* SPDX-License-Identifier: MIT */
/*
 * muserd: options, the sd-event loop, signals, watchdog and readiness.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "activation.h"
#include "bus/bus.h"
#include "iothreads.h"
#include "manager.h"
#include "privileges.h"
#include "util/log.h"

struct device_arg {
    char *type, *id, *config; /* pointers into one strdup()ed string */
    char *text;
};

struct options {
    const char *plugin_dir;
    const char *runtime_dir;
    const char *user_name; /* NULL: privileges.h decides */
    enum bus_mode bus_mode;
    const char *bus_address; /* BUS_MODE_ADDRESS */
    struct device_arg *devices;
    size_t nr_devices;
    unsigned io_threads;
};

static void options_done(struct options *o)
{
    for (size_t i = 0; i < o->nr_devices; i++)
        free(o->devices[i].text);
    free(o->devices);
}

static void help(void)
{
    printf("Usage: muserd [OPTIONS]\n"
           "Serve vfio-user PCI devices from plugins, many devices in one process.\n\n"
           "  --plugin-dir DIR        load device plugins from DIR (default %s)\n"
           "  --runtime-dir DIR       put device sockets in DIR (default %s)\n"
           "  --device TYPE:ID[:JSON] create device ID of TYPE at start, listening on\n"
           "                          RUNTIME_DIR/ID.sock; repeatable\n"
           "  --user                  serve org.muserd1 on the user bus, not the system bus\n"
           "  --bus-address ADDRESS   serve org.muserd1 on the bus at ADDRESS\n"
           "  --no-bus                no D-Bus: only the --device devices\n"
           "  --user-name NAME        started as root, run as NAME (default muserd)\n"
           "                          keeping only CAP_CHOWN; root keeps uid 0\n"
           "  --io-threads N          serve devices on N threads (default %u here: one\n"
           "                          fewer than the CPUs muserd may use, at least 1)\n"
           "  --log-level LEVEL       err, warning, info (default) or debug\n"
           "  -h --help               show this help\n"
           "  --version               show the version\n\n"
           "See muserd(8).\n",
           MUSERD_PLUGINDIR, MUSERD_RUNTIMEDIR, io_threads_default_count());
}

/* TYPE:ID[:JSON] — the JSON may itself contain ':'. */
static int parse_device_arg(const char *arg, struct device_arg *out)
{
    char *text = strdup(arg);
    if (!text)
        return -ENOMEM;
    char *id = strchr(text, ':');
    if (!id || id == text || id[1] == 0) {
        free(text);
        return -EINVAL;
    }
    *id++ = 0;
    char *config = strchr(id, ':');
    if (config)
        *config++ = 0;
    *out = (struct device_arg){.type = text, .id = id, .config = config, .text = text};
    return 0;
}

static int parse_level(const char *s)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {
        {"err", LOG_ERR}, {"warning", LOG_WARNING}, {"info", LOG_INFO}, {"debug", LOG_DEBUG}};
    for (size_t i = 0; i < ELEMENTSOF(levels); i++)
        if (strcmp(s, levels[i].name) == 0)
            return levels[i].level;
    return -EINVAL;
}

/* 0 to run, 1 to exit successfully (help), -EINVAL on bad usage (already reported). */
static int parse_argv(int argc, char **argv, struct options *o)
{
    enum {
        ARG_PLUGIN_DIR = 0x100,
        ARG_RUNTIME_DIR,
        ARG_DEVICE,
        ARG_LOG_LEVEL,
        ARG_VERSION,
        ARG_USER,
        ARG_BUS_ADDRESS,
        ARG_NO_BUS,
        ARG_USER_NAME,
        ARG_IO_THREADS,
    };
    static const struct option longopts[] = {
        {"plugin-dir", required_argument, NULL, ARG_PLUGIN_DIR},
        {"runtime-dir", required_argument, NULL, ARG_RUNTIME_DIR},
        {"device", required_argument, NULL, ARG_DEVICE},
        {"log-level", required_argument, NULL, ARG_LOG_LEVEL},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, ARG_VERSION},
        {"user", no_argument, NULL, ARG_USER},
        {"bus-address", required_argument, NULL, ARG_BUS_ADDRESS},
        {"no-bus", no_argument, NULL, ARG_NO_BUS},
        {"user-name", required_argument, NULL, ARG_USER_NAME},
        {"io-threads", required_argument, NULL, ARG_IO_THREADS},
        {},
    };
    int c;

    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) >= 0) {
        switch (c) {
        case ARG_PLUGIN_DIR:
            o->plugin_dir = optarg;
            break;
        case ARG_RUNTIME_DIR:
            o->runtime_dir = optarg;
            break;
        case ARG_DEVICE: {
            struct device_arg *n = reallocarray(o->devices, o->nr_devices + 1, sizeof(*o->devices));
            if (!n)
                return log_oom();
            o->devices = n;
            int r = parse_device_arg(optarg, &o->devices[o->nr_devices]);
            if (r < 0) {
                log_error("Invalid --device '%s': expected TYPE:ID or TYPE:ID:JSON, "
                          "e.g. timer:t0 or 'ram:r0:{\"size\":1048576}'.",
                          optarg);
                return -EINVAL;
            }
            o->nr_devices++;
            break;
        }
        case ARG_LOG_LEVEL: {
            int level = parse_level(optarg);
            if (level < 0) {
                log_error("Invalid --log-level '%s': use err, warning, info or debug.", optarg);
                return -EINVAL;
            }
            log_set_max_level(level);
            break;
        }
        case 'h':
            help();
            return 1;
        case ARG_USER:
            o->bus_mode = BUS_MODE_USER;
            break;
        case ARG_BUS_ADDRESS:
            o->bus_mode = BUS_MODE_ADDRESS;
            o->bus_address = optarg;
            break;
        case ARG_NO_BUS:
            o->bus_mode = BUS_MODE_NONE;
            break;
        case ARG_USER_NAME:
            o->user_name = optarg;
            break;
        case ARG_IO_THREADS: {
            char *end;
            errno = 0;
            unsigned long n = strtoul(optarg, &end, 10);
            if (errno || end == optarg || *end || n == 0 || n > IO_THREADS_MAX) {
                log_error("Invalid --io-threads '%s': give a number from 1 to %d.", optarg,
                          IO_THREADS_MAX);
                return -EINVAL;
            }
            o->io_threads = (unsigned)n;
            break;
        }
        case ARG_VERSION:
            printf("muserd %s (plugin ABI %d)\n", MUSERD_VERSION, MUSERD_PLUGIN_ABI_VERSION);
            return 1;
        default:
            return -EINVAL;
        }
    }
    if (optind < argc) {
        log_error("Unexpected argument '%s'; see muserd --help.", argv[optind]);
        return -EINVAL;
    }
    return 0;
}

/* How long SIGTERM waits for the I/O threads to answer before giving up on
 * a plugin that does not return (systemd's own stop timeout is 90 s). */
#define SHUTDOWN_TIMEOUT_MS 10000

/* Below this many fds, say at start that the limit caps the device count:
 * an idle device holds one fd, a device with a VMM attached a dozen or more
 * (connection, interrupt eventfds, DMA maps). */
#define FD_LIMIT_COMFORTABLE 16384

/* Each device needs a few fds (socket, client, eventfds, DMA maps): take the
 * hard limit rather than fail at the thousandth device. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            log_warning_errno(-errno, "Could not raise the open file limit: %m");
            (void)getrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    if (rl.rlim_cur < FD_LIMIT_COMFORTABLE)
        log_warning("The open file limit is %llu: that caps muserd at fewer than %llu idle "
                    "devices, and far fewer with VMs attached. Raise LimitNOFILE= in "
                    "muserd.service (or the hard limit, ulimit -Hn).",
                    (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_cur);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
    log_info("Received %s, shutting down.", strsignal((int)si->ssi_signo));
    (void)sd_notify(false, "STOPPING=1");
    return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int run_with_threads(struct options *o, sd_event *event, struct io_threads *threads);

static int run(struct options *o)
{
    sd_event *event = NULL;
    struct io_threads *threads = NULL;
    int r;

    /* Not sd_event_default(): that one calls gettid() on every iteration to
     * check its thread, a system call per request on the data path. */
    r = sd_event_new(&event);
    if (r < 0)
        return log_error_errno(r, "Failed to create the event loop: %m");
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    r = sd_event_add_signal(event, NULL, SIGTERM, on_signal, NULL);
    if (r >= 0)
        r = sd_event_add_signal(event, NULL, SIGINT, on_signal, NULL);
    if (r >= 0)
        r = sd_event_set_watchdog(event, true);
    if (r < 0) {
        sd_event_unref(event);
        return log_error_errno(r, "Failed to set up the event loop: %m");
    }
    /* After the signals are blocked: the threads block them too. */
    r = io_threads_new(event, o->io_threads ? o->io_threads : io_threads_default_count(), &threads);
    if (r < 0) {
        sd_event_unref(event);
        return r;
    }
    r = run_with_threads(o, event, threads);
    io_threads_free(threads); /* after the manager: no device is left on them */
    sd_event_unref(event);
    return r;
}

/* One --device being made, and how it went. */
struct startup {
    const char *id;
    int r;
    char *error;
};

static void on_started(void *userdata, int r, struct device *d, const char *error)
{
    struct startup *st = userdata;
    st->r = r;
    if (r < 0 && error)
        st->error = strdup(error);
}

/* The --device devices, made on their threads all at once (a thousand of
 * them start in a fraction of the time one after the other takes); the
 * first that fails stops muserd. */
static int create_devices(struct manager *m, const struct options *o)
{
    _cleanup_free_ struct startup *st = calloc(o->nr_devices ? o->nr_devices : 1, sizeof(*st));
    int r = 0;

    if (!st)
        return log_oom();
    for (size_t i = 0; i < o->nr_devices && r >= 0; i++) {
        const struct device_arg *a = &o->devices[i];
        _cleanup_free_ char *error = NULL;
        st[i].id = a->id;
        r = manager_create_device_async(m, a->type, a->id, a->config, on_started, &st[i], &error);
        if (r < 0)
            log_error_errno(r, "Cannot create device %s: %s", a->id, error ? error : strerror(-r));
    }
    (void)manager_flush(m, -1); /* every answer is in */
    for (size_t i = 0; i < o->nr_devices; i++) {
        if (st[i].r < 0 && r >= 0)
            r = log_error_errno(st[i].r, "Cannot create device %s: %s", st[i].id,
                                st[i].error ? st[i].error : strerror(-st[i].r));
        free(st[i].error);
    }
    return r;
}

static int run_with_threads(struct options *o, sd_event *event, struct io_threads *threads)
{
    _cleanup_(manager_freep) struct manager *m = NULL;
    struct bus *bus = NULL;
    int r;

    r = manager_new(event, threads, o->plugin_dir, o->runtime_dir, &m);
    if (r >= 0)
        r = activation_new(&m->activation);
    if (r < 0)
        return r;
    r = create_devices(m, o);
    if (r < 0)
        return r;

    /* The name is requested synchronously: READY=1 below means it is ours. */
    r = bus_new(m, o->bus_mode, o->bus_address, &bus);
    if (r < 0)
        return r;

    /* Every socket is listening now: clients can connect. */
    (void)sd_notifyf(false, "READY=1\nSTATUS=Serving %zu device(s) on %u I/O thread(s).",
                     m->nr_devices, io_threads_count(threads));
    log_info("muserd %s ready: %zu device(s) in %s, %u I/O thread(s).", MUSERD_VERSION,
             m->nr_devices, o->runtime_dir, io_threads_count(threads));
    r = sd_event_loop(event);
    /* D-Bus calls a device's thread is still working on get their replies
     * while the bus is up. A thread stuck in a plugin will not let go of its
     * devices: leave without tearing down, rather than hang until SIGKILL. */
    if (manager_flush(m, SHUTDOWN_TIMEOUT_MS) == -ETIMEDOUT) {
        log_error("Exiting without tearing the devices down: a plugin does not return.");
        _exit(EXIT_FAILURE);
    }
    bus_free(bus); /* before the manager: it holds the manager's hooks */
    return r;
}

int main(int argc, char **argv)
{
    struct options o = {.plugin_dir = MUSERD_PLUGINDIR, .runtime_dir = MUSERD_RUNTIMEDIR};

    if (getenv("JOURNAL_STREAM"))
        log_set_prefix_priority(1);
    int r = parse_argv(argc, argv, &o);
    if (r == 0) {
        raise_fd_limit();
        /* Before run(): no plugin code (their constructors run at dlopen)
         * and no bus connection ever runs as root. */
        r = privileges_drop(o.user_name, o.runtime_dir);
    }
    if (r == 0)
        r = run(&o);
    options_done(&o);
    return r < 0 ? 1 : 0;
}
