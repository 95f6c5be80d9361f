/* SPDX-License-Identifier: MIT */
/*
 * Memory the client shares without an fd, and the server's DMA_READ /
 * DMA_WRITE commands that reach it. We answer in QEMU's layout (see
 * src/vfu/wire.h) because QEMU is the client these messages exist for.
 */
#include "client/client-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/macro.h"

/* QEMU's reply/request struct: address, a 32-bit count, data at offset 12. */
struct qemu_dma_rw {
    uint64_t address;
    uint32_t count;
} __attribute__((packed));
static_assert(sizeof(struct qemu_dma_rw) == VFU_DMA_RW_QEMU_DATA_OFFSET, "data at 12");

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    /* Sizes are non-zero and ends do not wrap (checked on add). */
    return a < b + blen && b < a + alen;
}

int client_map_add(struct vfu_client *c, uint64_t iova, uint64_t size, uint32_t prot, void *local)
{
    uint64_t end;

    if (size == 0 || !local || __builtin_add_overflow(iova, size, &end))
        return -EINVAL;
    for (size_t i = 0; i < c->nr_maps; i++)
        if (ranges_overlap(iova, size, c->maps[i].iova, c->maps[i].size))
            return -EEXIST;

    if (c->nr_maps == c->cap_maps) {
        size_t ncap = c->cap_maps ? c->cap_maps * 2 : 8;
        struct client_local_map *n = reallocarray(c->maps, ncap, sizeof(*n));
        if (!n)
            return -ENOMEM;
        c->maps = n;
        c->cap_maps = ncap;
    }
    c->maps[c->nr_maps++] = (struct client_local_map){
        .iova = iova,
        .size = size,
        .prot = prot,
        .local = local,
    };
    return 0;
}

void client_map_remove(struct vfu_client *c, uint64_t iova, uint64_t size, uint32_t flags)
{
    if (flags & VFIO_DMA_UNMAP_FLAG_ALL) {
        c->nr_maps = 0;
        return;
    }
    for (size_t i = 0; i < c->nr_maps; i++) {
        if (c->maps[i].iova == iova && c->maps[i].size == size) {
            c->maps[i] = c->maps[--c->nr_maps];
            return;
        }
    }
}

/* Where [iova, iova+count) lives locally, if one map holds it with `prot`. */
static int translate(const struct vfu_client *c, uint64_t iova, uint64_t count, uint32_t prot,
                     uint8_t **ret)
{
    for (size_t i = 0; i < c->nr_maps; i++) {
        const struct client_local_map *m = &c->maps[i];
        if (iova < m->iova || !range_within(iova - m->iova, count, m->size))
            continue;
        if ((m->prot & prot) != prot)
            return -EPERM;
        *ret = m->local + (iova - m->iova);
        return 0;
    }
    return -EFAULT;
}

static int serve_read(struct vfu_client *c, const struct client_msg *cmd)
{
    uint64_t address, count;
    uint8_t *src;

    if (cmd->len < sizeof(struct vfu_dma_rw_spec))
        return client_reply(c, cmd->hdr, EINVAL, NULL, 0);
    /* Our server sends the spec's u64 count, whose low half is where QEMU
     * reads its u32 count: reading the u64 accepts both. */
    memcpy(&address, cmd->payload, sizeof(address));
    memcpy(&count, cmd->payload + 8, sizeof(count));
    if (count > c->our_max_data_xfer)
        return client_reply(c, cmd->hdr, EINVAL, NULL, 0);
    int r = translate(c, address, count, VFU_DMA_FLAG_READ, &src);
    if (r < 0)
        return client_reply(c, cmd->hdr, (uint32_t)-r, NULL, 0);

    /* header + address + count + data + QEMU's 4 bytes of tail padding:
     * 16 + 16 + count, the size QEMU's reply has. */
    struct qemu_dma_rw rw = {.address = address, .count = (uint32_t)count};
    static const uint8_t pad[VFU_DMA_RW_QEMU_STRUCT_SIZE - VFU_DMA_RW_QEMU_DATA_OFFSET];
    struct iovec iov[] = {
        {.iov_base = &rw, .iov_len = sizeof(rw)},
        {.iov_base = src, .iov_len = (size_t)count},
        {.iov_base = (void *)pad, .iov_len = sizeof(pad)},
    };
    r = client_reply(c, cmd->hdr, 0, iov, ELEMENTSOF(iov));
    if (r >= 0)
        c->dma_served++;
    return r;
}

/* QEMU's checks, so that tests with this client catch what QEMU refuses: the
 * message holds at least its padded 16-byte struct, and count must fit in
 * what follows that struct (so a sender must add QEMU's 4 bytes of tail
 * padding after the data). The reply is the bare header, as QEMU's. */
static int serve_write(struct vfu_client *c, const struct client_msg *cmd)
{
    struct qemu_dma_rw rw;
    uint8_t *dst;

    if (cmd->len < VFU_DMA_RW_QEMU_STRUCT_SIZE)
        return client_reply(c, cmd->hdr, EINVAL, NULL, 0);
    memcpy(&rw, cmd->payload, sizeof(rw));
    if (rw.count > c->our_max_data_xfer || rw.count > cmd->len - VFU_DMA_RW_QEMU_STRUCT_SIZE)
        return client_reply(c, cmd->hdr, E2BIG, NULL, 0);
    int r = translate(c, rw.address, rw.count, VFU_DMA_FLAG_WRITE, &dst);
    if (r < 0)
        return client_reply(c, cmd->hdr, (uint32_t)-r, NULL, 0);
    memcpy(dst, cmd->payload + sizeof(rw), rw.count);

    r = client_reply(c, cmd->hdr, 0, NULL, 0);
    if (r >= 0)
        c->dma_served++;
    return r;
}

int client_serve_dma(struct vfu_client *c, const struct client_msg *cmd)
{
    if (cmd->hdr->command == VFU_CMD_DMA_READ)
        return serve_read(c, cmd);
    return serve_write(c, cmd);
}
