/* SPDX-License-Identifier: MIT */
/*
 * The stream, little-endian:
 *
 *   header   migration-header.h: H bytes, ending with their own CRC32C
 *   body     device-state.h's records, up to and including END
 *   trailer  u32 CRC32C of every byte before it (header and body),
 *            then the end mark "MEND"
 */
#include "migration-stream.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device-state.h"
#include "device.h"
#include "migration-header.h"
#include "util/crc32c.h"

#define END_MARK     "MEND"
#define TRAILER_SIZE 8u

static void trailer_fill(uint8_t *t, uint32_t crc)
{
    crc = htole32(crc);
    memcpy(t, &crc, 4);
    memcpy(t + 4, END_MARK, 4);
}

/* ---- saving -------------------------------------------------------------------- */

struct mig_saver {
    struct device_state_saver *state;
    uint8_t *header;
    size_t header_len, header_off;
    uint32_t crc; /* of what went out before the trailer */
    bool final_started, body_done;
    uint8_t trailer[TRAILER_SIZE];
    size_t trailer_off;
    int error; /* sticky: a save that failed is over */
};

int mig_saver_new(struct device *d, struct mig_saver **ret)
{
    _cleanup_(mig_saver_freep) struct mig_saver *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    int r = mig_header_build(d, &s->header, &s->header_len);
    if (r < 0)
        return r;
    r = device_state_saver_new(d, &s->state);
    if (r < 0)
        return r;
    s->crc = crc32c(0, s->header, s->header_len);
    *ret = TAKE_PTR(s);
    return 0;
}

void mig_saver_free(struct mig_saver *s)
{
    if (!s)
        return;
    device_state_saver_free(s->state);
    free(s->header);
    free(s);
}

/* Copy what is left of src (at src_len, src_off) into out; how much. */
static size_t drain(uint8_t *out, size_t room, const uint8_t *src, size_t src_len, size_t *src_off)
{
    size_t n = src_len - *src_off;
    if (n > room)
        n = room;
    memcpy(out, src + *src_off, n);
    *src_off += n;
    return n;
}

int mig_saver_read(struct mig_saver *s, bool final, void *buf, size_t len, size_t *n)
{
    uint8_t *out = buf;
    size_t got = 0;

    *n = 0;
    if (s->error < 0)
        return s->error;
    if (!final && s->final_started)
        return -EINVAL;
    s->final_started |= final;

    got += drain(out, len, s->header, s->header_len, &s->header_off);
    if (!s->body_done && got < len) {
        size_t w;
        int r = device_state_save(s->state, final ? MUSERD_STATE_FINAL : MUSERD_STATE_PRECOPY,
                                  out + got, len - got, &w);
        if (r < 0)
            return s->error = r;
        s->crc = crc32c(s->crc, out + got, w);
        got += w;
        /* device_state_save fills what it is given unless the phase is
         * over: in pre-copy that is "for now", in the final phase the end. */
        if (!final || got == len) {
            *n = got;
            return 0;
        }
        s->body_done = true;
        trailer_fill(s->trailer, s->crc);
    }
    if (s->body_done)
        got += drain(out + got, len - got, s->trailer, TRAILER_SIZE, &s->trailer_off);
    *n = got;
    return 0;
}

size_t mig_saver_pending(const struct mig_saver *s, bool final)
{
    size_t n = s->header_len - s->header_off;

    if (!s->body_done) {
        size_t body =
            device_state_pending(s->state, final ? MUSERD_STATE_FINAL : MUSERD_STATE_PRECOPY);
        if (__builtin_add_overflow(n, body, &n))
            return SIZE_MAX;
    }
    if (!final)
        return n;
    size_t trailer = TRAILER_SIZE - s->trailer_off;
    return __builtin_add_overflow(n, trailer, &n) ? SIZE_MAX : n;
}

/* ---- loading ------------------------------------------------------------------- */

enum load_part {
    LOAD_FIXED,   /* magic, version, header length */
    LOAD_HEADER,  /* the rest of the header */
    LOAD_BODY,    /* device-state records, to END */
    LOAD_TRAILER, /* checksum and end mark */
    LOAD_DONE,
};

struct mig_loader {
    struct device *d;
    struct device_state_loader *state;
    enum load_part part;
    uint8_t *header; /* MIG_HEADER_FIXED bytes, then all header_len */
    uint32_t header_len;
    size_t part_got; /* of the header or the trailer */
    uint8_t trailer[TRAILER_SIZE];
    uint32_t crc;   /* of the header and the body so far */
    uint64_t total; /* bytes taken */
    bool ended;
    int error; /* sticky, with its why */
    const char *why;
    char why_buf[MIG_WHY_SIZE]; /* a formatted why lives here until the loader is freed */
};

int mig_loader_new(struct device *d, struct mig_loader **ret)
{
    _cleanup_(mig_loader_freep) struct mig_loader *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->d = d;
    l->header = malloc(MIG_HEADER_FIXED);
    if (!l->header)
        return -ENOMEM;
    int r = device_state_loader_new(d, &l->state);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(l);
    return 0;
}

void mig_loader_free(struct mig_loader *l)
{
    if (!l)
        return;
    /* Before a successful end this tells the plugin to forget what it got. */
    device_state_loader_free(l->state);
    free(l->header);
    free(l);
}

static int fail(struct mig_loader *l, int r, const char *why)
{
    l->error = r;
    l->why = why;
    return r;
}

/* device-state says -EINVAL for a stream that is not one: a corrupt record
 * (or one the plugin refuses), here. */
static int body_error(int r)
{
    return r == -EINVAL ? -EBADMSG : r;
}

/* Take up to len bytes of the part in hand into dst (part_got of want so
 * far); whether the part is complete. */
static bool fill(struct mig_loader *l, uint8_t *dst, size_t want, const uint8_t **in, size_t *len)
{
    size_t n = want - l->part_got;
    if (n > *len)
        n = *len;
    memcpy(dst + l->part_got, *in, n);
    l->part_got += n;
    l->total += n;
    *in += n;
    *len -= n;
    return l->part_got == want;
}

static int take_fixed(struct mig_loader *l, const uint8_t **in, size_t *len)
{
    size_t before = l->part_got;
    bool whole = fill(l, l->header, MIG_HEADER_FIXED, in, len);
    /* The magic as soon as its bytes come: a stream that is no stream is
     * told so even when it is shorter than a header. */
    size_t magic = l->part_got < MIG_MAGIC_SIZE ? l->part_got : MIG_MAGIC_SIZE;
    if (before < magic && memcmp(l->header, MIG_MAGIC, magic) != 0)
        return fail(l, -EBADMSG, "not a muserd migration stream");
    if (!whole)
        return 0;
    const char *why;
    int r = mig_header_check_fixed(l->header, &l->header_len, l->why_buf, &why);
    if (r < 0)
        return fail(l, r, why);
    uint8_t *h = realloc(l->header, l->header_len);
    if (!h)
        return fail(l, -ENOMEM, "out of memory");
    l->header = h;
    l->part = LOAD_HEADER;
    return 0;
}

static int take_header(struct mig_loader *l, const uint8_t **in, size_t *len)
{
    if (!fill(l, l->header, l->header_len, in, len))
        return 0;
    const char *why;
    int r = mig_header_check(l->d, l->header, l->header_len, l->why_buf, &why);
    if (r < 0)
        return fail(l, r, why);
    l->crc = crc32c(0, l->header, l->header_len);
    l->part = LOAD_BODY;
    return 0;
}

static int take_body(struct mig_loader *l, const uint8_t **in, size_t *len)
{
    const char *why = "the device could not take its state";
    size_t used;
    int r = device_state_load(l->state, *in, *len, &used, &why);
    if (r < 0)
        return fail(l, body_error(r), why);
    l->crc = crc32c(l->crc, *in, used);
    l->total += used;
    *in += used;
    *len -= used;
    if (device_state_load_ended(l->state)) {
        l->part = LOAD_TRAILER;
        l->part_got = 0;
    }
    return 0;
}

static int take_trailer(struct mig_loader *l, const uint8_t **in, size_t *len)
{
    if (!fill(l, l->trailer, TRAILER_SIZE, in, len))
        return 0;
    uint8_t expected[TRAILER_SIZE];
    trailer_fill(expected, l->crc);
    if (memcmp(l->trailer, expected, 4) != 0)
        return fail(l, -EBADMSG, "the stream's checksum does not match: it was damaged on the way");
    if (memcmp(l->trailer + 4, expected + 4, 4) != 0)
        return fail(l, -EBADMSG, "the stream's end mark is damaged");
    l->part = LOAD_DONE;
    return 0;
}

/* The part in hand takes what it can of in. */
static int take(struct mig_loader *l, const uint8_t **in, size_t *len)
{
    switch (l->part) {
    case LOAD_FIXED:
        return take_fixed(l, in, len);
    case LOAD_HEADER:
        return take_header(l, in, len);
    case LOAD_BODY:
        return take_body(l, in, len);
    case LOAD_TRAILER:
        return take_trailer(l, in, len);
    default:
        return fail(l, -EBADMSG, "the stream goes on after its end");
    }
}

int mig_loader_write(struct mig_loader *l, const void *buf, size_t len, const char **why)
{
    const uint8_t *in = buf;

    int r = l->error;
    while (r == 0 && len > 0)
        r = take(l, &in, &len);
    if (r < 0)
        *why = l->why;
    return r;
}

int mig_loader_end(struct mig_loader *l, const char **why)
{
    if (l->error == 0 && !l->ended) {
        l->ended = true;
        if (l->total == 0)
            fail(l, -ENODATA, "the stream is empty");
        else if (l->part != LOAD_DONE) {
            snprintf(l->why_buf, sizeof(l->why_buf),
                     "the stream ended early: %" PRIu64 " bytes, truncated?", l->total);
            fail(l, -ENODATA, l->why_buf);
        } else {
            const char *state_why;
            int r = device_state_load_end(l->state, &state_why);
            if (r < 0)
                fail(l, body_error(r), state_why);
        }
    }
    if (l->error < 0) {
        *why = l->why;
        return l->error;
    }
    return 0;
}
