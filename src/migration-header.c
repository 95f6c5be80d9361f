/* SPDX-License-Identifier: MIT */
#include "migration-header.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "migration-stream.h"
#include "util/crc32c.h"
#include "util/log.h"

/* ---- building ------------------------------------------------------------------ */

struct header_writer {
    uint8_t *p;
};

static void put(struct header_writer *w, const void *v, size_t n)
{
    memcpy(w->p, v, n);
    w->p += n;
}

static void put_u32(struct header_writer *w, uint32_t v)
{
    v = htole32(v);
    put(w, &v, sizeof(v));
}

static void put_u16(struct header_writer *w, uint16_t v)
{
    v = htole16(v);
    put(w, &v, sizeof(v));
}

static void put_string(struct header_writer *w, const char *s, size_t n)
{
    put_u32(w, (uint32_t)n);
    put(w, s, n);
}

int mig_header_build(const struct device *d, uint8_t **ret, size_t *len)
{
    const struct muserd_plugin *plugin = d->type->plugin;
    const char *type = d->type->type->name, *version = plugin->version ? plugin->version : "";
    size_t type_len = strlen(type), name_len = strlen(plugin->name), version_len = strlen(version),
           config_len = strlen(d->config_text);

    /* What the loader would refuse is not written. */
    if (type_len > MIG_NAME_MAX || name_len > MIG_NAME_MAX || version_len > MIG_NAME_MAX ||
        config_len > MIG_CONFIG_MAX)
        return -E2BIG;
    size_t n = MIG_HEADER_MIN + type_len + name_len + version_len + config_len;
    uint8_t *h = malloc(n);
    if (!h)
        return -ENOMEM;
    struct header_writer w = {h};
    put(&w, MIG_MAGIC, MIG_MAGIC_SIZE);
    put_u32(&w, MIG_STREAM_VERSION);
    put_u32(&w, (uint32_t)n);
    put_u32(&w, plugin->abi_version);
    put_u16(&w, d->desc.pci.ids.vendor_id);
    put_u16(&w, d->desc.pci.ids.device_id);
    put_string(&w, type, type_len);
    put_string(&w, plugin->name, name_len);
    put_string(&w, version, version_len);
    put_string(&w, d->config_text, config_len);
    put_u32(&w, crc32c(0, h, n - 4));
    *ret = h;
    *len = n;
    return 0;
}

/* ---- checking ------------------------------------------------------------------ */

static int refuse(char *why_buf, const char **why, int r, const char *fmt, ...) _printf_(4, 5);
static int refuse(char *why_buf, const char **why, int r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why_buf, MIG_WHY_SIZE, fmt, ap);
    va_end(ap);
    *why = why_buf;
    return r;
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

static uint16_t get_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return le16toh(v);
}

int mig_header_check_fixed(const uint8_t *fixed, uint32_t *header_len, char *why_buf,
                           const char **why)
{
    uint32_t version = get_u32(fixed + 8), len = get_u32(fixed + 12);

    /* A stream of another version may be laid out otherwise from here on:
     * nothing after the version is read before it is known to be ours. */
    if (version != MIG_STREAM_VERSION)
        return refuse(why_buf, why, -EPROTONOSUPPORT,
                      "the stream is version %u, this muserd reads version %u", version,
                      MIG_STREAM_VERSION);
    if (len < MIG_HEADER_MIN || len > MIG_HEADER_MAX) {
        *why = "the stream's header has an impossible length";
        return -EBADMSG;
    }
    *header_len = len;
    return 0;
}

/* The header's fields as it holds them, not NUL-terminated. */
struct header_string {
    const uint8_t *s;
    uint32_t len;
};

struct header_reader {
    const uint8_t *p, *end;
};

static bool get_string(struct header_reader *r, uint32_t max, struct header_string *s)
{
    if ((size_t)(r->end - r->p) < 4)
        return false;
    s->len = get_u32(r->p);
    r->p += 4;
    /* Bounded on its own and by what the header has left. */
    if (s->len > max || s->len > (size_t)(r->end - r->p) || memchr(r->p, 0, s->len))
        return false;
    s->s = r->p;
    r->p += s->len;
    return true;
}

static bool string_is(const struct header_string *s, const char *c)
{
    return s->len == strlen(c) && memcmp(s->s, c, s->len) == 0;
}

/* Only names of this shape go into a sentence (device type names are). */
static bool type_name_shaped(const struct header_string *s)
{
    if (s->len == 0)
        return false;
    for (uint32_t i = 0; i < s->len; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789_-", s->s[i]))
            return false;
    return true;
}

/* A client's text goes into the log only when it cannot forge lines there. */
static const char *loggable(const struct header_string *s, char *buf, size_t size)
{
    for (uint32_t i = 0; i < s->len; i++)
        if (s->s[i] < 0x20 || s->s[i] == 0x7f)
            return "(unprintable)";
    snprintf(buf, size, "%.*s", (int)s->len, (const char *)s->s);
    return buf;
}

/* What differs and does not stop the load: the operator may want to know. */
static void log_differences(const struct device *d, const struct header_string *name,
                            const struct header_string *version, const struct header_string *config)
{
    const struct muserd_plugin *plugin = d->type->plugin;
    const char *our_version = plugin->version ? plugin->version : "";
    char a[MIG_NAME_MAX + 1], b[MIG_NAME_MAX + 1];

    if (!string_is(name, plugin->name) || !string_is(version, our_version))
        log_info("Device %s: its migration stream comes from plugin %s %s, it runs %s %s.", d->id,
                 loggable(name, a, sizeof(a)), loggable(version, b, sizeof(b)), plugin->name,
                 our_version);
    if (!string_is(config, d->config_text)) {
        _cleanup_free_ char *c = malloc(config->len + 1);
        log_debug("Device %s: its migration stream was saved with config %s, it has %s.", d->id,
                  c ? loggable(config, c, config->len + 1) : "(out of memory)", d->config_text);
    }
}

int mig_header_check(const struct device *d, const uint8_t *h, size_t len, char *why_buf,
                     const char **why)
{
    const struct muserd_plugin *plugin = d->type->plugin;
    struct header_reader r = {h + MIG_HEADER_FIXED, h + len - 4};
    struct header_string type, name, version, config;

    if (crc32c(0, h, len - 4) != get_u32(h + len - 4)) {
        *why = "the stream's header checksum does not match: it was damaged on the way";
        return -EBADMSG;
    }
    uint32_t abi = get_u32(r.p);
    uint16_t vendor = get_u16(r.p + 4), device = get_u16(r.p + 6);
    r.p += 8;
    if (!get_string(&r, MIG_NAME_MAX, &type) || !get_string(&r, MIG_NAME_MAX, &name) ||
        !get_string(&r, MIG_NAME_MAX, &version) || !get_string(&r, MIG_CONFIG_MAX, &config) ||
        !type_name_shaped(&type)) {
        *why = "the stream's header is malformed";
        return -EBADMSG;
    }
    if (!string_is(&type, d->type->type->name))
        return refuse(why_buf, why, -EPROTONOSUPPORT,
                      "the stream holds a %.*s device, this is a %s device", (int)type.len,
                      (const char *)type.s, d->type->type->name);
    if (abi != plugin->abi_version)
        return refuse(why_buf, why, -EPROTONOSUPPORT,
                      "the stream comes from a plugin of ABI %u, this device's plugin is ABI %u",
                      abi, plugin->abi_version);
    if (vendor != d->desc.pci.ids.vendor_id || device != d->desc.pci.ids.device_id)
        return refuse(why_buf, why, -EPROTONOSUPPORT,
                      "the stream holds PCI device %04x:%04x, this is %04x:%04x", vendor, device,
                      d->desc.pci.ids.vendor_id, d->desc.pci.ids.device_id);
    log_differences(d, &name, &version, &config);
    return 0;
}
