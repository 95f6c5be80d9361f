/* SPDX-License-Identifier: MIT */
/*
 * Guest memory access for the device: directly through the mapping when the
 * client shared an fd, otherwise with DMA_READ / DMA_WRITE commands to the
 * client, answered asynchronously. The message layout is QEMU's (see the
 * comment in wire.h).
 */
#include <errno.h>
#include <string.h>

#include "util/log.h"
#include "vfu/server-internal.h"

struct remote_req {
    struct remote_req *next;
    uint16_t msg_id;
    uint16_t command;
    uint64_t address;
    uint32_t count;
    void *buf; /* reads land here */
    vfu_dma_done_fn done;
    void *opaque;
};

static int send_request(struct vfu_server *s, struct remote_req *req, const void *data)
{
    struct vfu_header hdr = {
        .msg_id = req->msg_id,
        .command = req->command,
        .flags = VFU_FLAG_TYPE_COMMAND,
    };
    if (req->command == VFU_CMD_DMA_READ) {
        /* A 64-bit count reads the same as QEMU's u32 count plus padding. */
        struct vfu_dma_rw_spec body = {.address = req->address, .count = req->count};
        hdr.msg_size = sizeof(hdr) + sizeof(body);
        struct iovec iov[2] = {{&hdr, sizeof(hdr)}, {&body, sizeof(body)}};
        return vfu_conn_sendv(s->conn, iov, 2, NULL, 0);
    }

    /* DMA_WRITE: address, u32 count, data at payload offset 12, then QEMU's 4
     * bytes of tail padding: QEMU takes count only when it fits in the
     * message less its 32-byte padded struct (header included). */
    uint8_t head[VFU_DMA_RW_QEMU_DATA_OFFSET];
    memcpy(head, &req->address, sizeof(req->address));
    memcpy(head + sizeof(req->address), &req->count, sizeof(req->count));
    static const uint8_t pad[VFU_DMA_RW_QEMU_STRUCT_SIZE - VFU_DMA_RW_QEMU_DATA_OFFSET];
    hdr.msg_size = (uint32_t)(sizeof(hdr) + sizeof(head) + req->count + sizeof(pad));
    struct iovec iov[4] = {{&hdr, sizeof(hdr)},
                           {head, sizeof(head)},
                           {(void *)data, req->count},
                           {(void *)pad, sizeof(pad)}};
    return vfu_conn_sendv(s->conn, iov, 4, NULL, 0);
}

int vfu_server_dma_rw(struct vfu_server *s, uint64_t iova, void *buf, size_t len, bool is_write,
                      vfu_dma_done_fn done, void *opaque)
{
    if (!s->conn || !s->negotiated)
        return -ENOTCONN;
    const struct vfu_dma_region *region = vfu_dma_find(s->dma, iova, len);
    if (!region)
        return -ENOENT;
    if (!(region->prot & (is_write ? VFU_DMA_FLAG_WRITE : VFU_DMA_FLAG_READ)))
        return -EACCES;
    if (region->vaddr) {
        uint8_t *p = (uint8_t *)region->vaddr + (iova - region->iova);
        if (is_write) {
            memcpy(p, buf, len);
            vfu_dma_mark_dirty(s->dma, iova, len);
        } else
            memcpy(buf, p, len);
        return 0;
    }

    if (len > s->caps.client_max_data_xfer || len > UINT32_MAX)
        return -E2BIG;
    if (!done)
        return -EINVAL;
    /* A client that stops answering must not make us queue without end. */
    if (s->nr_remote >= VFU_MAX_REMOTE_DMA)
        return -EBUSY;
    struct remote_req *req = calloc(1, sizeof(*req));
    if (!req)
        return -ENOMEM;
    *req = (struct remote_req){
        .msg_id = s->next_msg_id++,
        .command = is_write ? VFU_CMD_DMA_WRITE : VFU_CMD_DMA_READ,
        .address = iova,
        .count = (uint32_t)len,
        .buf = buf,
        .done = done,
        .opaque = opaque,
    };
    int r = send_request(s, req, buf);
    if (r < 0) {
        free(req);
        return r;
    }
    /* Dirty now, so a report from here on shows it, and again when the
     * client says it wrote: a report the client made before it applied the
     * write cleared the first mark. */
    if (is_write)
        vfu_dma_mark_dirty(s->dma, iova, len);
    req->next = s->remote;
    s->remote = req;
    s->nr_remote++;
    return 1;
}

static struct remote_req *unlink_req(struct vfu_server *s, uint16_t msg_id, uint16_t command)
{
    for (struct remote_req **p = &s->remote; *p; p = &(*p)->next) {
        struct remote_req *req = *p;
        if (req->msg_id == msg_id && req->command == command) {
            *p = req->next;
            s->nr_remote--;
            return req;
        }
    }
    return NULL;
}

void vfu_remote_on_reply(struct vfu_server *s, const struct vfu_msg *msg)
{
    struct remote_req *req = unlink_req(s, msg->hdr.msg_id, msg->hdr.command);
    int status = 0;

    if (!req) {
        log_debug("Ignoring a reply to %s #%u we did not send.", vfu_command_name(msg->hdr.command),
                  msg->hdr.msg_id);
        return;
    }
    if (req->command == VFU_CMD_DMA_WRITE)
        vfu_dma_mark_dirty(s->dma, req->address, req->count);
    if (msg->hdr.flags & VFU_FLAG_ERROR)
        /* The client's errno: only a plausible one is passed on. */
        status = msg->hdr.error > 0 && msg->hdr.error < 4096 ? -(int)msg->hdr.error : -EIO;
    else if (req->command == VFU_CMD_DMA_READ) {
        const uint8_t *data;
        status = vfu_decode_dma_read_reply(msg, req->address, req->count, &data);
        if (status == 0)
            memcpy(req->buf, data, req->count);
    }
    vfu_dma_done_fn done = req->done;
    void *opaque = req->opaque;
    free(req);
    done(opaque, status);
}

void vfu_remote_cancel_all(struct vfu_server *s)
{
    /* Callbacks may start new requests; they fail at once (no client). */
    while (s->remote) {
        struct remote_req *req = s->remote;
        s->remote = req->next;
        s->nr_remote--;
        vfu_dma_done_fn done = req->done;
        void *opaque = req->opaque;
        free(req);
        done(opaque, -ENOTCONN);
    }
}
