/* SPDX-License-Identifier: MIT */
/*
 * VERSION negotiation with json-c. Accepts what real clients send: QEMU's
 * {"capabilities":{"max_msg_fds":..,"max_data_xfer_size":..,"pgsizes":..,
 * "max_dma_maps":..,"migration":{..},"write_multiple":true}}, SPDK's VERSION
 * with no JSON at all, and unknown keys (ignored, as the spec lets capability
 * sets grow). Rejects JSON that does not parse, is not an object, or gives a
 * known capability the wrong type or an impossible value.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vfu/codec.h"

/* What the server offers. */
struct vfu_server_caps {
    uint32_t max_msg_fds;
    uint32_t max_data_xfer_size;
    uint32_t max_dma_maps;
    uint64_t pgsizes;
    bool migration; /* the device can migrate: "migration" may be offered */
};

/* What was agreed for this connection. */
struct vfu_session_caps {
    uint16_t minor;
    uint32_t client_max_msg_fds;   /* fds we may send in one message */
    uint32_t client_max_data_xfer; /* bytes we may ask in one DMA_READ/WRITE */
    uint32_t max_data_xfer;        /* bytes the client may send us: ours */
    uint32_t max_dma_maps;
    uint64_t pgsizes;
    bool write_multiple;
    bool client_sent_json;
    bool migration;          /* both offered "migration" */
    uint32_t mig_max_bitmap; /* its max_bitmap_size; 0 when not agreed */
};

/*
 * Decide the session from the client's VERSION. On success fill *session and
 * *reply_json (malloc()ed, NUL-terminated, the server's capabilities: only
 * those the client may see per the subset rule) and return 0. -ENOTSUP for a
 * major version other than 0, -EINVAL for bad JSON; *error then holds a
 * static string saying why (for the log).
 */
int vfu_negotiate(const struct vfu_version_req *req, const struct vfu_server_caps *server,
                  struct vfu_session_caps *session, char **reply_json, const char **error);
