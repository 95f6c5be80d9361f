/* SPDX-License-Identifier: MIT */
#include "host.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "device-config.h"
#include "device-desc.h"
#include "device-reset.h"
#include "device.h"
#include "host-poller.h"
#include "util/log.h"

struct muserd_watch {
    struct muserd_watch *next, **prev_next;
    sd_event_source *source;
    muserd_watch_fn fn;
    void *opaque;
};

struct muserd_timer {
    struct muserd_timer *next, **prev_next;
    sd_event_source *source;
    muserd_timer_fn fn;
    void *opaque;
};

static void host_log(struct muserd_host *h, int level, const char *fmt, ...)
{
    _cleanup_free_ char *text = NULL;
    va_list ap;

    if (level > log_get_max_level())
        return;
    va_start(ap, fmt);
    int r = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (r >= 0)
        log_internal(level, 0, "%s: %s", h->id, text);
}

static void host_set_error(struct muserd_host *h, const char *fmt, ...)
{
    va_list ap;

    free(h->error);
    h->error = NULL;
    va_start(ap, fmt);
    if (vasprintf(&h->error, fmt, ap) < 0)
        h->error = NULL;
    va_end(ap);
}

static int host_config_string(struct muserd_host *h, const char *key, const char **value)
{
    return device_config_string(h->config, key, value);
}

static int host_config_uint(struct muserd_host *h, const char *key, uint64_t *value)
{
    return device_config_uint(h->config, key, value);
}

static int host_config_bool(struct muserd_host *h, const char *key, bool *value)
{
    return device_config_bool(h->config, key, value);
}

static int host_desc_refused(struct muserd_host *h, int r, const char *why)
{
    if (!h->desc_error)
        h->desc_error = why;
    log_error("%s: the plugin's device description is refused: %s.", h->id, why);
    return r;
}

static int host_bar_add(struct muserd_host *h, const struct muserd_bar *bar)
{
    const char *why = "bar_add() may only be called from create()";
    if (!h->building)
        return host_desc_refused(h, -EINVAL, why);
    int r = device_desc_add_bar(h->building, bar, &why);
    return r < 0 ? host_desc_refused(h, r, why) : 0;
}

static int host_ioeventfd_add(struct muserd_host *h, const struct muserd_ioeventfd *e)
{
    const char *why = "ioeventfd_add() may only be called from create()";
    if (!h->building)
        return host_desc_refused(h, -EINVAL, why);
    int r = device_desc_add_ioeventfd(h->building, e, &why);
    return r < 0 ? host_desc_refused(h, r, why) : 0;
}

static int host_dma_translate(struct muserd_host *h, uint64_t iova, uint64_t len, uint32_t prot,
                              void **ptr)
{
    return device_dma_translate(h->device, iova, len, prot, ptr);
}

static int host_dma_read(struct muserd_host *h, uint64_t iova, void *buf, size_t len,
                         muserd_dma_done_fn done, void *opaque)
{
    return device_dma_rw(h->device, iova, buf, len, false, done, opaque);
}

static int host_dma_write(struct muserd_host *h, uint64_t iova, const void *buf, size_t len,
                          muserd_dma_done_fn done, void *opaque)
{
    return device_dma_rw(h->device, iova, (void *)buf, len, true, done, opaque);
}

static int host_dma_get(struct muserd_host *h, struct muserd_dma_ref *ref)
{
    if (!ref || ref->size < offsetof(struct muserd_dma_ref, host_private) + sizeof(void *))
        return -EINVAL;
    ref->host_private = NULL;
    return device_dma_get(h->device, ref);
}

static void host_dma_put(struct muserd_host *h, struct muserd_dma_ref *ref, bool written)
{
    if (ref && ref->size >= offsetof(struct muserd_dma_ref, host_private) + sizeof(void *))
        device_dma_put(h->device, ref, written);
}

static void host_dma_mark_dirty(struct muserd_host *h, uint64_t iova, uint64_t len)
{
    device_dma_mark_dirty(h->device, iova, len);
}

static void host_quiesce_done(struct muserd_host *h, int status)
{
    device_quiesce_done(h->device, status);
}

static int host_irq_raise(struct muserd_host *h, uint32_t vector)
{
    return device_irq_raise(h->device, vector);
}

static int host_irq_lower(struct muserd_host *h)
{
    return device_irq_lower(h->device);
}

static int host_irq_mode(struct muserd_host *h)
{
    return device_irq_mode(h->device);
}

static int on_watch(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    struct muserd_watch *w = userdata;
    w->fn(w->opaque, fd, revents);
    return 0;
}

static int host_watch_fd(struct muserd_host *h, int fd, uint32_t events, muserd_watch_fn fn,
                         void *opaque, struct muserd_watch **ret)
{
    if (fd < 0 || !fn || !ret)
        return -EINVAL;
    struct muserd_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    int r = sd_event_add_io(h->event, &w->source, fd, events, on_watch, w);
    if (r < 0) {
        free(w);
        return r;
    }
    w->fn = fn;
    w->opaque = opaque;
    w->next = h->watches;
    if (w->next)
        w->next->prev_next = &w->next;
    w->prev_next = &h->watches;
    h->watches = w;
    *ret = w;
    return 0;
}

static void host_unwatch_fd(struct muserd_watch *w)
{
    if (!w)
        return;
    *w->prev_next = w->next;
    if (w->next)
        w->next->prev_next = w->prev_next;
    sd_event_source_disable_unref(w->source);
    free(w);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
    struct muserd_timer *t = userdata;
    t->fn(t->opaque);
    return 0;
}

static int host_timer_new(struct muserd_host *h, muserd_timer_fn fn, void *opaque,
                          struct muserd_timer **ret)
{
    if (!fn || !ret)
        return -EINVAL;
    struct muserd_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    int r = sd_event_add_time(h->event, &t->source, CLOCK_MONOTONIC, UINT64_MAX,
                              1 /* us: device timers must not be coalesced */, on_timer, t);
    if (r >= 0)
        r = sd_event_source_set_enabled(t->source, SD_EVENT_OFF);
    if (r < 0) {
        sd_event_source_unref(t->source);
        free(t);
        return r;
    }
    t->fn = fn;
    t->opaque = opaque;
    t->next = h->timers;
    if (t->next)
        t->next->prev_next = &t->next;
    t->prev_next = &h->timers;
    h->timers = t;
    *ret = t;
    return 0;
}

static int host_timer_set(struct muserd_timer *t, uint64_t usec)
{
    if (usec == 0)
        return sd_event_source_set_enabled(t->source, SD_EVENT_OFF);
    int r = sd_event_source_set_time(t->source, usec);
    if (r < 0)
        return r;
    return sd_event_source_set_enabled(t->source, SD_EVENT_ONESHOT);
}

static void host_timer_free(struct muserd_timer *t)
{
    if (!t)
        return;
    *t->prev_next = t->next;
    if (t->next)
        t->next->prev_next = t->prev_next;
    sd_event_source_disable_unref(t->source);
    free(t);
}

/* Not sd_event_now(): that is the loop's, and this may run on any thread. */
static uint64_t host_now_usec(struct muserd_host *h)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

const struct muserd_host_services host_services = {
    .size = sizeof(struct muserd_host_services),
    .abi_version = MUSERD_PLUGIN_ABI_VERSION,
    .log = host_log,
    .set_error = host_set_error,
    .config_string = host_config_string,
    .config_uint = host_config_uint,
    .config_bool = host_config_bool,
    .dma_translate = host_dma_translate,
    .dma_read = host_dma_read,
    .dma_write = host_dma_write,
    .irq_raise = host_irq_raise,
    .irq_lower = host_irq_lower,
    .watch_fd = host_watch_fd,
    .unwatch_fd = host_unwatch_fd,
    .timer_new = host_timer_new,
    .timer_set = host_timer_set,
    .timer_free = host_timer_free,
    .now_usec = host_now_usec,
    .poller_new = host_poller_new,
    .poller_wake = host_poller_wake,
    .poller_free = host_poller_free,
    .bar_add = host_bar_add,
    .ioeventfd_add = host_ioeventfd_add,
    .dma_get = host_dma_get,
    .dma_put = host_dma_put,
    .dma_mark_dirty = host_dma_mark_dirty,
    .quiesce_done = host_quiesce_done,
    .irq_mode = host_irq_mode,
};

void host_init(struct muserd_host *h, struct device *d, sd_event *event, const char *id,
               struct json_object *config)
{
    *h = (struct muserd_host){.device = d, .event = event, .id = id, .config = config};
}

void host_done(struct muserd_host *h)
{
    if (h->watches || h->timers || h->pollers)
        log_warning("%s: the plugin left fd watches, timers or pollers behind; freeing them.",
                    h->id);
    host_pollers_free_all(h);
    while (h->watches)
        host_unwatch_fd(h->watches);
    while (h->timers)
        host_timer_free(h->timers);
    free(h->error);
    h->error = NULL;
}
