/* SPDX-License-Identifier: MIT */
#include "vfu/negotiate.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <json-c/json.h>

#include "util/macro.h"

DEFINE_FREEP(json_object, json_object_put)
DEFINE_FREEP(json_tokener, json_tokener_free)

/* The spec caps max_dma_maps at what fits QEMU's u16 bookkeeping. */
#define SPEC_MAX_DMA_MAPS 65535u

/* What the client stated; anything it left out keeps the spec's default. */
struct client_caps {
    uint64_t max_msg_fds;
    uint64_t max_data_xfer_size;
    uint64_t pgsizes;
    uint64_t max_dma_maps; /* UINT64_MAX: not stated */
    bool write_multiple;
    bool migration;
    uint64_t mig_max_bitmap; /* UINT64_MAX: not stated */
};

static uint32_t clamp_u32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* A JSON integer that is not negative. json-c keeps big positive numbers as
 * uint64, so pgsizes masks above 2^63 survive. */
static int get_unsigned(json_object *obj, uint64_t *out)
{
    if (!json_object_is_type(obj, json_type_int))
        return -EINVAL;
    if (json_object_get_int64(obj) < 0)
        return -EINVAL;
    *out = json_object_get_uint64(obj);
    return 0;
}

/* "migration":{"pgsize":..,"max_bitmap_size":..}, both optional. Its
 * pgsize is checked but not used: we log at 4 KiB, and DMA_LOGGING_REPORT
 * names its own page size. */
static int parse_migration(json_object *mig, struct client_caps *c, const char **error)
{
    json_object *v;
    uint64_t pgsize;

    if (!json_object_is_type(mig, json_type_object)) {
        *error = "migration is not an object";
        return -EINVAL;
    }
    if (json_object_object_get_ex(mig, "pgsize", &v) &&
        (get_unsigned(v, &pgsize) < 0 || pgsize == 0)) {
        *error = "migration.pgsize is not a positive integer";
        return -EINVAL;
    }
    if (json_object_object_get_ex(mig, "max_bitmap_size", &v) &&
        (get_unsigned(v, &c->mig_max_bitmap) < 0 || c->mig_max_bitmap == 0)) {
        *error = "migration.max_bitmap_size is not a positive integer";
        return -EINVAL;
    }
    c->migration = true;
    return 0;
}

static int parse_caps(json_object *caps, struct client_caps *c, const char **error)
{
    json_object *v;

    if (!json_object_is_type(caps, json_type_object)) {
        *error = "\"capabilities\" is not an object";
        return -EINVAL;
    }
    if (json_object_object_get_ex(caps, "max_msg_fds", &v) &&
        get_unsigned(v, &c->max_msg_fds) < 0) {
        *error = "max_msg_fds is not a non-negative integer";
        return -EINVAL;
    }
    if (json_object_object_get_ex(caps, "max_data_xfer_size", &v) &&
        (get_unsigned(v, &c->max_data_xfer_size) < 0 || c->max_data_xfer_size == 0)) {
        *error = "max_data_xfer_size is not a positive integer";
        return -EINVAL;
    }
    if (json_object_object_get_ex(caps, "pgsizes", &v) &&
        (get_unsigned(v, &c->pgsizes) < 0 || c->pgsizes == 0)) {
        *error = "pgsizes is not a nonzero integer";
        return -EINVAL;
    }
    /* The client's map limit: we offer no more than it proposed. */
    if (json_object_object_get_ex(caps, "max_dma_maps", &v) &&
        get_unsigned(v, &c->max_dma_maps) < 0) {
        *error = "max_dma_maps is not a non-negative integer";
        return -EINVAL;
    }
    if (json_object_object_get_ex(caps, "migration", &v)) {
        int r = parse_migration(v, c, error);
        if (r < 0)
            return r;
    }
    if (json_object_object_get_ex(caps, "write_multiple", &v)) {
        if (!json_object_is_type(v, json_type_boolean)) {
            *error = "write_multiple is not a boolean";
            return -EINVAL;
        }
        c->write_multiple = json_object_get_boolean(v);
    }
    return 0;
}

static int parse_client_json(const char *json, size_t len, struct client_caps *c,
                             const char **error)
{
    _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
    _cleanup_(json_object_putp) json_object *root = NULL;
    json_object *caps;

    if (len > INT_MAX) {
        *error = "capabilities JSON too long";
        return -EINVAL;
    }
    tok = json_tokener_new();
    if (!tok)
        return -ENOMEM;
    root = json_tokener_parse_ex(tok, json, (int)len);
    if (!root) {
        *error = "capabilities JSON does not parse";
        return -EINVAL;
    }
    for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
        if (!isspace((unsigned char)json[i])) {
            *error = "trailing bytes after the capabilities JSON";
            return -EINVAL;
        }
    if (!json_object_is_type(root, json_type_object)) {
        *error = "capabilities JSON is not an object";
        return -EINVAL;
    }
    /* An object without "capabilities" states nothing: spec defaults apply. */
    if (!json_object_object_get_ex(root, "capabilities", &caps))
        return 0;
    return parse_caps(caps, c, error);
}

/* Adds val under key, taking it (also on failure, and when val is NULL from a
 * failed json_object_new_*()). */
static int add_member(json_object *obj, const char *key, json_object *val)
{
    if (!val)
        return -ENOMEM;
    if (json_object_object_add(obj, key, val) < 0) {
        json_object_put(val);
        return -ENOMEM;
    }
    return 0;
}

/* A subset of what the client proposed: the negotiated pgsizes and map limit,
 * write_multiple and migration only when the client offered them, never
 * twin_socket (not implemented). max_msg_fds and max_data_xfer_size are what
 * we accept. QEMU takes a reply no longer than its own VERSION message, which
 * a subset keeps. */
static int build_reply(const struct vfu_server_caps *server, const struct vfu_session_caps *session,
                       char **ret)
{
    _cleanup_(json_object_putp) json_object *root = json_object_new_object();
    json_object *caps = json_object_new_object();

    if (!root) {
        json_object_put(caps);
        return -ENOMEM;
    }
    if (add_member(root, "capabilities", caps) < 0 ||
        add_member(caps, "max_msg_fds", json_object_new_int64(server->max_msg_fds)) < 0 ||
        add_member(caps, "max_data_xfer_size", json_object_new_int64(server->max_data_xfer_size)) <
            0 ||
        add_member(caps, "pgsizes", json_object_new_uint64(session->pgsizes)) < 0 ||
        add_member(caps, "max_dma_maps", json_object_new_int64(session->max_dma_maps)) < 0)
        return -ENOMEM;
    if (session->migration) {
        /* QEMU refuses the device unless pgsize is a multiple of 4096 and
         * max_bitmap_size at most 256 MiB. */
        json_object *mig = json_object_new_object();
        if (add_member(caps, "migration", mig) < 0 ||
            add_member(mig, "pgsize", json_object_new_int64(VFU_MIGRATION_PGSIZE)) < 0 ||
            add_member(mig, "max_bitmap_size", json_object_new_int64(session->mig_max_bitmap)) < 0)
            return -ENOMEM;
    }
    if (session->write_multiple &&
        add_member(caps, "write_multiple", json_object_new_boolean(1)) < 0)
        return -ENOMEM;

    const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
    char *copy = text ? strdup(text) : NULL;
    if (!copy)
        return -ENOMEM;
    *ret = copy;
    return 0;
}

int vfu_negotiate(const struct vfu_version_req *req, const struct vfu_server_caps *server,
                  struct vfu_session_caps *session, char **reply_json, const char **error)
{
    struct client_caps c = {
        .max_msg_fds = VFU_DEFAULT_MAX_MSG_FDS,
        .max_data_xfer_size = VFU_DEFAULT_MAX_DATA_XFER,
        .pgsizes = VFU_DEFAULT_PGSIZES,
        .max_dma_maps = UINT64_MAX,
        .mig_max_bitmap = UINT64_MAX,
    };
    int r;

    *error = NULL;
    if (req->major != VFU_VERSION_MAJOR) {
        *error = "unsupported major version";
        return -ENOTSUP;
    }
    if (req->json) {
        r = parse_client_json(req->json, req->json_len, &c, error);
        if (r < 0) {
            if (!*error)
                *error = "out of memory parsing capabilities";
            return r;
        }
    }

    uint64_t max_maps =
        server->max_dma_maps < SPEC_MAX_DMA_MAPS ? server->max_dma_maps : SPEC_MAX_DMA_MAPS;
    if (c.max_dma_maps < max_maps)
        max_maps = c.max_dma_maps;

    struct vfu_session_caps s = {
        .minor = req->minor < VFU_VERSION_MINOR ? req->minor : VFU_VERSION_MINOR,
        .client_max_msg_fds = clamp_u32(c.max_msg_fds),
        .client_max_data_xfer = clamp_u32(c.max_data_xfer_size),
        .max_data_xfer = server->max_data_xfer_size,
        .max_dma_maps = (uint32_t)max_maps,
        .pgsizes = c.pgsizes & server->pgsizes,
        .write_multiple = c.write_multiple,
        .client_sent_json = req->json != NULL,
        .migration = server->migration && c.migration,
    };
    if (s.migration)
        s.mig_max_bitmap = c.mig_max_bitmap < VFU_MIGRATION_MAX_BITMAP ? (uint32_t)c.mig_max_bitmap
                                                                       : VFU_MIGRATION_MAX_BITMAP;
    if (s.pgsizes == 0) {
        *error = "pgsizes shares no page size with the server";
        return -EINVAL;
    }

    r = build_reply(server, &s, reply_json);
    if (r < 0) {
        *error = "out of memory building capabilities";
        return r;
    }
    *session = s;
    return 0;
}
