/* SPDX-License-Identifier: MIT */
#include "device-state.h"

#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "irq-routes.h"
#include "pci/pci.h"

enum state_tag {
    STATE_TAG_PCI = 1,
    STATE_TAG_PLUGIN = 2,
    STATE_TAG_END = 3,
};

#define RECORD_HEADER 8u
/* What the host asks a plugin for at most per chunk. */
#define PLUGIN_CHUNK (1u << 20)
/* The largest record a loader takes (an ABI 1 blob is one record). */
#define RECORD_MAX (UINT32_C(1) << 30)
/* Room in the caller's buffer from which a plugin chunk is saved straight
 * into it, not copied through our own; such chunks are at most
 * DIRECT_CHUNK, so that a loader reading 1 MiB at a time mostly finds them
 * whole in its buffer, and takes them from there without a copy either. */
#define DIRECT_MIN   (64u << 10)
#define DIRECT_CHUNK (256u << 10)

/* buf holds at least len bytes (grown, kept for the next record). */
static int reserve(uint8_t **buf, size_t *cap, size_t len)
{
    if (len <= *cap)
        return 0;
    uint8_t *b = realloc(*buf, len);
    if (!b)
        return -ENOMEM;
    *buf = b;
    *cap = len;
    return 0;
}

static bool abi2(const struct device *d)
{
    return d->type->plugin->abi_version >= 2;
}

/* ---- saving ------------------------------------------------------------------ */

struct device_state_saver {
    struct device *d;
    bool pci_sent, plugin_done, end_sent;
    /* The record going out (in buf, NULL when none): header and payload,
     * and how much is out. */
    uint8_t *rec;
    size_t rec_len, rec_off;
    uint8_t *buf; /* kept from record to record */
    size_t cap;
};

int device_state_saver_new(struct device *d, struct device_state_saver **ret)
{
    struct device_state_saver *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->d = d;
    /* A save given up before (a migration cancelled) must not leave the
     * plugin half way through its stream. */
    const struct muserd_device_ops *ops = d->type->type->ops;
    if (abi2(d) && PLUGIN_OP(ops, state_save_begin)) {
        int r = ops->state_save_begin(d->plugin_dev);
        if (r < 0) {
            free(s);
            return r;
        }
    }
    *ret = s;
    return 0;
}

void device_state_saver_free(struct device_state_saver *s)
{
    if (!s)
        return;
    free(s->buf);
    free(s);
}

static void put_header(uint8_t *rec, enum state_tag tag, size_t len)
{
    uint32_t h[2] = {htole32(tag), htole32((uint32_t)len)};
    memcpy(rec, h, sizeof(h));
}

static uint8_t *new_record(struct device_state_saver *s, enum state_tag tag, size_t len)
{
    if (reserve(&s->buf, &s->cap, RECORD_HEADER + len) < 0)
        return NULL;
    put_header(s->buf, tag, len);
    s->rec = s->buf;
    s->rec_len = RECORD_HEADER + len;
    s->rec_off = 0;
    return s->rec + RECORD_HEADER;
}

/* An ABI 2 plugin chunk saved straight into the caller's buffer (room
 * bytes): the record's length through *len, 0 when the phase has no more. */
static int plugin_record_into(struct device_state_saver *s, enum muserd_state_phase phase,
                              uint8_t *out, size_t room, size_t *len)
{
    const struct muserd_device_ops *ops = s->d->type->type->ops;
    size_t max = room - RECORD_HEADER < DIRECT_CHUNK ? room - RECORD_HEADER : DIRECT_CHUNK;
    size_t written = 0;
    *len = 0;
    int r = ops->state_save(s->d->plugin_dev, phase, out + RECORD_HEADER, max, &written);
    if (r < 0 || written == 0 || written > max)
        return r < 0 ? r : written ? -EOVERFLOW : 0;
    put_header(out, STATE_TAG_PLUGIN, written);
    *len = RECORD_HEADER + written;
    return 0;
}

/* One plugin chunk of `phase` as a record; *none when the phase has no more. */
static int plugin_record(struct device_state_saver *s, enum muserd_state_phase phase, bool *none)
{
    const struct muserd_device_ops *ops = s->d->type->type->ops;
    *none = true;
    if (abi2(s->d)) {
        if (!PLUGIN_OP(ops, state_save))
            return 0;
        uint8_t *payload = new_record(s, STATE_TAG_PLUGIN, PLUGIN_CHUNK);
        if (!payload)
            return -ENOMEM;
        size_t written = 0;
        int r = ops->state_save(s->d->plugin_dev, phase, payload, PLUGIN_CHUNK, &written);
        if (r < 0 || written == 0 || written > PLUGIN_CHUNK) {
            s->rec = NULL;
            return r < 0 ? r : written ? -EOVERFLOW : 0;
        }
        uint32_t len = htole32((uint32_t)written);
        memcpy(s->rec + 4, &len, 4);
        s->rec_len = RECORD_HEADER + written;
        *none = false;
        return 0;
    }
    /* ABI 1: one blob, in the final phase. */
    if (phase != MUSERD_STATE_FINAL || !PLUGIN_OP(ops, save_state))
        return 0;
    _cleanup_free_ void *blob = NULL;
    size_t len = 0;
    int r = ops->save_state(s->d->plugin_dev, &blob, &len);
    if (r < 0)
        return r;
    if (len > RECORD_MAX)
        return -EFBIG;
    uint8_t *payload = new_record(s, STATE_TAG_PLUGIN, len);
    if (!payload)
        return -ENOMEM;
    memcpy(payload, blob, len);
    *none = false;
    return 0;
}

/* Does the next record of `phase` come from an ABI 2 plugin's chunks? */
static bool plugin_next(const struct device_state_saver *s, enum muserd_state_phase phase)
{
    if (!abi2(s->d) || !PLUGIN_OP(s->d->type->type->ops, state_save))
        return false;
    return phase == MUSERD_STATE_PRECOPY ? !s->pci_sent : s->pci_sent && !s->plugin_done;
}

/* The next record of `phase`: straight into out when it is a plugin chunk
 * and room is large (*direct its length), else into s->rec; none left when
 * both stay empty. */
static int next_record(struct device_state_saver *s, enum muserd_state_phase phase, uint8_t *out,
                       size_t room, size_t *direct)
{
    bool none;
    *direct = 0;
    if (room >= RECORD_HEADER + DIRECT_MIN && plugin_next(s, phase)) {
        int r = plugin_record_into(s, phase, out, room, direct);
        if (r >= 0 && *direct == 0 && phase == MUSERD_STATE_FINAL)
            s->plugin_done = true;
        if (r < 0 || *direct || phase == MUSERD_STATE_PRECOPY)
            return r;
    }
    if (phase == MUSERD_STATE_PRECOPY)
        return s->pci_sent ? -EINVAL : plugin_record(s, phase, &none);
    if (!s->pci_sent) {
        uint8_t *payload = new_record(s, STATE_TAG_PCI, pci_state_size(s->d->pci));
        if (!payload)
            return -ENOMEM;
        pci_state_save(s->d->pci, payload);
        s->pci_sent = true;
        return 0;
    }
    if (!s->plugin_done) {
        int r = plugin_record(s, phase, &none);
        if (r < 0)
            return r;
        /* ABI 1 has one blob; ABI 2 ends its phase with an empty chunk. */
        if (none || !abi2(s->d))
            s->plugin_done = true;
        if (!none)
            return 0;
    }
    if (!s->end_sent) {
        if (!new_record(s, STATE_TAG_END, 0))
            return -ENOMEM;
        s->end_sent = true;
    }
    return 0;
}

int device_state_save(struct device_state_saver *s, enum muserd_state_phase phase, void *buf,
                      size_t len, size_t *written)
{
    uint8_t *out = buf;
    *written = 0;
    while (*written < len) {
        if (!s->rec) {
            size_t direct = 0;
            int r = next_record(s, phase, out + *written, len - *written, &direct);
            if (r < 0)
                return r;
            *written += direct;
            if (direct)
                continue;
            if (!s->rec)
                break; /* the phase is over */
        }
        size_t n = s->rec_len - s->rec_off;
        if (n > len - *written)
            n = len - *written;
        memcpy(out + *written, s->rec + s->rec_off, n);
        *written += n;
        s->rec_off += n;
        if (s->rec_off == s->rec_len)
            s->rec = NULL;
    }
    return 0;
}

size_t device_state_pending(const struct device_state_saver *s, enum muserd_state_phase phase)
{
    const struct muserd_device_ops *ops = s->d->type->type->ops;
    size_t n = s->rec ? s->rec_len - s->rec_off : 0;
    uint64_t estimate = 0;

    if (phase == MUSERD_STATE_FINAL && !s->pci_sent)
        n += RECORD_HEADER + pci_state_size(s->d->pci);
    if (phase == MUSERD_STATE_FINAL && !s->end_sent)
        n += RECORD_HEADER;
    /* The plugin's own estimate (one that fails counts 0), with the
     * headers of the records its chunks will ride in. */
    if (!abi2(s->d) || !PLUGIN_OP(ops, state_pending) ||
        ops->state_pending(s->d->plugin_dev, phase, &estimate) < 0 || estimate == 0)
        return n;
    uint64_t records = estimate / PLUGIN_CHUNK + 1;
    if (__builtin_mul_overflow(records, RECORD_HEADER, &records) ||
        __builtin_add_overflow(estimate, records, &estimate) ||
        __builtin_add_overflow(n, estimate, &n))
        return SIZE_MAX;
    return n;
}

/* ---- loading ------------------------------------------------------------------ */

struct device_state_loader {
    struct device *d;
    uint8_t header[RECORD_HEADER];
    size_t header_got;
    uint32_t tag, len;
    uint8_t *payload; /* a record that came in pieces; kept for the next */
    size_t payload_cap, payload_got;
    bool pci_loaded, ended;
    bool plugin_fed, plugin_told_end; /* the plugin forgets a stream cut short */
    int error;                        /* sticky: a stream that failed once stays failed */
};

int device_state_loader_new(struct device *d, struct device_state_loader **ret)
{
    struct device_state_loader *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->d = d;
    *ret = l;
    return 0;
}

void device_state_loader_free(struct device_state_loader *l)
{
    if (!l)
        return;
    /* A stream given up half way: let the plugin drop what it kept of it
     * (it says -EINVAL, which nobody needs to hear). */
    const struct muserd_device_ops *ops = l->d->type->type->ops;
    if (l->plugin_fed && !l->plugin_told_end && abi2(l->d) && PLUGIN_OP(ops, state_load_end))
        (void)ops->state_load_end(l->d->plugin_dev);
    free(l->payload);
    free(l);
}

static int refuse(struct device_state_loader *l, const char **why, const char *reason)
{
    *why = reason;
    l->error = -EINVAL;
    return -EINVAL;
}

/* A whole record is in (at data, l->len bytes): hand it on. */
static int apply_record(struct device_state_loader *l, const uint8_t *data, const char **why)
{
    const struct muserd_device_ops *ops = l->d->type->type->ops;
    int r;

    switch (l->tag) {
    case STATE_TAG_PCI:
        if (l->pci_loaded)
            return refuse(l, why, "the stream holds the config space twice");
        r = pci_state_load(l->d->pci, data, l->len, why);
        if (r < 0) {
            l->error = r;
            return r;
        }
        l->pci_loaded = true;
        r = irq_routes_publish(l->d->routes, pci_nr_vectors(l->d->pci));
        if (r < 0) {
            *why = "out of memory for the interrupt routes";
            l->error = r;
        }
        return r;
    case STATE_TAG_PLUGIN:
        l->plugin_fed = true;
        if (abi2(l->d) && PLUGIN_OP(ops, state_load))
            r = ops->state_load(l->d->plugin_dev, data, l->len);
        else if (!abi2(l->d) && PLUGIN_OP(ops, load_state))
            r = ops->load_state(l->d->plugin_dev, data, l->len);
        else
            return refuse(l, why, "the stream holds state this plugin does not load");
        if (r < 0) {
            *why = "the plugin refused its saved state";
            l->error = r;
        }
        return r;
    default: /* END */
        if (!l->pci_loaded)
            return refuse(l, why, "the stream ended without the config space");
        l->ended = true;
        return 0;
    }
}

int device_state_load(struct device_state_loader *l, const void *buf, size_t len, size_t *used,
                      const char **why)
{
    const uint8_t *in = buf;

    if (used)
        *used = 0;
    if (l->error < 0) {
        *why = "the stream failed already";
        return l->error;
    }
    while (len > 0) {
        if (l->ended && used)
            break; /* what follows is the caller's (the migration trailer) */
        if (l->ended)
            return refuse(l, why, "the stream goes on after its end");
        if (l->header_got < RECORD_HEADER) {
            size_t n = RECORD_HEADER - l->header_got;
            n = n < len ? n : len;
            memcpy(l->header + l->header_got, in, n);
            l->header_got += n;
            in += n;
            len -= n;
            if (l->header_got < RECORD_HEADER)
                break;
            uint32_t h[2];
            memcpy(h, l->header, sizeof(h));
            l->tag = le32toh(h[0]);
            l->len = le32toh(h[1]);
            /* Checked before it sizes anything. */
            if (l->tag < STATE_TAG_PCI || l->tag > STATE_TAG_END)
                return refuse(l, why, "the stream holds a record of an unknown kind");
            if (l->len > RECORD_MAX || (l->tag == STATE_TAG_END && l->len != 0) ||
                (l->tag == STATE_TAG_PLUGIN && abi2(l->d) && l->len > PLUGIN_CHUNK) ||
                (l->tag == STATE_TAG_PCI && l->len != pci_state_size(l->d->pci)))
                return refuse(l, why, "the stream holds a record of an impossible size");
            l->payload_got = 0;
            if (len >= l->len) {
                /* Whole in the caller's buffer: no copy. */
                int r = apply_record(l, in, why);
                in += l->len;
                len -= l->len;
                l->header_got = 0;
                if (r < 0)
                    return r;
                continue;
            }
        }
        size_t n = l->len - l->payload_got;
        n = n < len ? n : len;
        if (n == 0)
            break; /* the header took all there was */
        /* Grown as the bytes come, never by the length a stream claims: a
         * header saying 1 GiB costs nothing until 1 GiB has come. */
        size_t want = l->payload_got + n;
        if (want > l->payload_cap && want < l->len && want < l->payload_cap * 2)
            want = l->payload_cap * 2 < l->len ? l->payload_cap * 2 : l->len;
        if (reserve(&l->payload, &l->payload_cap, want) < 0) {
            *why = "out of memory for a record of the stream";
            return l->error = -ENOMEM;
        }
        memcpy(l->payload + l->payload_got, in, n);
        l->payload_got += n;
        in += n;
        len -= n;
        if (l->payload_got < l->len)
            break;
        int r = apply_record(l, l->payload, why);
        l->header_got = 0;
        if (r < 0)
            return r;
    }
    if (used)
        *used = (size_t)(in - (const uint8_t *)buf);
    return 0;
}

bool device_state_load_ended(const struct device_state_loader *l)
{
    return l->ended;
}

int device_state_load_end(struct device_state_loader *l, const char **why)
{
    const struct muserd_device_ops *ops = l->d->type->type->ops;

    if (l->error < 0) {
        *why = "the stream failed already";
        return l->error;
    }
    if (!l->ended)
        return refuse(l, why, "the stream is truncated");
    if (abi2(l->d) && PLUGIN_OP(ops, state_load_end)) {
        l->plugin_told_end = true;
        int r = ops->state_load_end(l->d->plugin_dev);
        if (r < 0) {
            *why = "the plugin found its saved state incomplete";
            return l->error = r;
        }
    }
    return 0;
}
