/* SPDX-License-Identifier: MIT */
/*
 * VERSION from the client's side: send our capabilities, read the server's,
 * and adopt the limits it states (data transfer size, fds per message).
 */
#include "client/client-internal.h"

#include <errno.h>
#include <json-c/json.h>
#include <string.h>

#include "util/log.h"
#include "util/macro.h"

const char vfu_client_qemu_caps_json[] =
    "{\"capabilities\":{\"max_msg_fds\":16,\"max_data_xfer_size\":1048576,\"pgsizes\":4096,"
    "\"max_dma_maps\":65535,\"migration\":{\"pgsize\":4096,\"max_bitmap_size\":268435456},"
    "\"write_multiple\":true}}";

DEFINE_FREEP(json_object, json_object_put)

/* capabilities.<key> as a positive 32-bit number; 0 when absent. */
static int caps_u32(json_object *root, const char *key, uint32_t *ret)
{
    json_object *caps, *v;

    *ret = 0;
    if (!json_object_object_get_ex(root, "capabilities", &caps))
        return 0;
    if (!json_object_is_type(caps, json_type_object))
        return -EPROTO;
    if (!json_object_object_get_ex(caps, key, &v))
        return 0;
    if (!json_object_is_type(v, json_type_int))
        return -EPROTO;
    int64_t n = json_object_get_int64(v);
    if (n <= 0 || n > UINT32_MAX)
        return -EPROTO;
    *ret = (uint32_t)n;
    return 0;
}

static int parse_caps(const char *text, uint32_t *max_fds, uint32_t *max_xfer)
{
    _cleanup_(json_object_putp) json_object *root = json_tokener_parse(text);
    if (!root || !json_object_is_type(root, json_type_object))
        return -EPROTO;
    int r = caps_u32(root, "max_msg_fds", max_fds);
    if (r < 0)
        return r;
    return caps_u32(root, "max_data_xfer_size", max_xfer);
}

int vfu_client_negotiate(struct vfu_client *c, const char *json, char **server_json)
{
    struct vfu_version ver = {.major = VFU_VERSION_MAJOR, .minor = VFU_VERSION_MINOR};
    struct client_msg m;
    int r;

    if (!c)
        return -EINVAL;
    if (json) {
        /* What we advertise bounds what the server may ask of us. */
        uint32_t fds, xfer;
        r = parse_caps(json, &fds, &xfer);
        if (r < 0)
            return -EINVAL;
        if (xfer)
            c->our_max_data_xfer = xfer;
    }

    struct iovec iov[] = {
        {.iov_base = &ver, .iov_len = sizeof(ver)},
        {.iov_base = (void *)json, .iov_len = json ? strlen(json) + 1 : 0},
    };
    r = client_transact(c, VFU_CMD_VERSION, iov, json ? 2 : 1, NULL, 0, &m);
    if (r < 0)
        return r;
    client_msg_close_fds(&m);
    if (m.len < sizeof(struct vfu_version))
        return -EPROTO;

    const struct vfu_version *reply = (const struct vfu_version *)m.payload;
    if (reply->major != VFU_VERSION_MAJOR)
        return -ENOTSUP;

    /* The JSON should end in a NUL; do not trust that it does. */
    size_t jlen = strnlen(reply->data, m.len - sizeof(*reply));
    _cleanup_free_ char *text = strndup(reply->data, jlen);
    if (!text)
        return -ENOMEM;
    if (jlen > 0) {
        uint32_t fds, xfer;
        r = parse_caps(text, &fds, &xfer);
        if (r < 0)
            return r;
        /* The server's limits size our batches and our receive buffer:
         * clamp them, so a hostile server cannot make us send what the
         * socket refuses or buffer gigabytes. */
        if (fds)
            c->max_msg_fds = fds < CLIENT_MAX_RECV_FDS ? fds : CLIENT_MAX_RECV_FDS;
        if (xfer)
            c->max_data_xfer = xfer < CLIENT_MAX_DATA_XFER ? xfer : CLIENT_MAX_DATA_XFER;
    }
    if (server_json)
        *server_json = TAKE_PTR(text);
    return 0;
}
