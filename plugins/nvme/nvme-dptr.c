/* SPDX-License-Identifier: MIT */
/*
 * Data pointers to segments. Everything here comes from the guest: the SQE
 * and what fetch returns (PRP lists, SGL segments). Every walk is bounded:
 * a PRP walk by the transfer length (a list entry is a page of it), an SGL
 * walk by NVME_DPTR_MAX_DESCS descriptors, so a cycle of segments ends.
 */
#include <endian.h>
#include <string.h>

#include "nvme-dptr.h"

#define PAGE_MASK ((uint64_t)NVME_PAGE_SIZE - 1)
/* SGL descriptors fetched at once from a segment. */
#define SGL_BATCH 16

/* Append len bytes at iova, merged with the last segment when it ends
 * where this one starts (bit buckets merge whatever their address). */
static uint16_t seg_add(struct nvme_dptr *out, uint64_t iova, uint64_t len, bool bit_bucket)
{
    uint64_t end;

    if (len == 0)
        return NVME_SC_SUCCESS;
    if (bit_bucket)
        iova = 0;
    else if (__builtin_add_overflow(iova, len, &end))
        return NVME_SC_DATA_XFER_ERROR; /* no memory wraps around */
    struct nvme_dptr_seg *last = out->nr ? &out->seg[out->nr - 1] : NULL;
    if (last && last->bit_bucket == bit_bucket && (bit_bucket || last->iova + last->len == iova)) {
        last->len += (uint32_t)len;
    } else {
        if (out->nr == NVME_DPTR_MAX_SEGS)
            return NVME_SC_SGL_COUNT_INVALID;
        out->seg[out->nr++] = (struct nvme_dptr_seg){iova, (uint32_t)len, bit_bucket};
    }
    out->len += len;
    return NVME_SC_SUCCESS;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* PRP1 (dword aligned, to its page's end), then PRP2 as the second page or
 * as a PRP list (section 4.3); a list page's last entry chains to the next
 * list when more entries follow than the page holds. */
static uint16_t prp_parse(const struct nvme_sqe *cmd, uint64_t len, nvme_dptr_fetch_fn *fetch,
                          void *opaque, struct nvme_dptr *out)
{
    uint64_t prp1 = le64toh(cmd->prp1), prp2 = le64toh(cmd->prp2);
    uint16_t sc;

    if (prp1 & 3)
        return NVME_SC_PRP_OFFSET_INVALID;
    uint64_t first = min_u64(NVME_PAGE_SIZE - (prp1 & PAGE_MASK), len);
    if ((sc = seg_add(out, prp1, first, false)))
        return sc;
    len -= first;
    if (len == 0)
        return NVME_SC_SUCCESS;
    if (len <= NVME_PAGE_SIZE) {
        if (prp2 & PAGE_MASK)
            return NVME_SC_PRP_OFFSET_INVALID;
        return seg_add(out, prp2, len, false);
    }
    /* Each round takes at least one page of len: len <= NVME_MAX_XFER bounds it. */
    for (uint64_t list = prp2; len > 0;) {
        uint64_t entries[NVME_PAGE_SIZE / 8];
        if (list & 7)
            return NVME_SC_PRP_OFFSET_INVALID;
        uint64_t room = (NVME_PAGE_SIZE - (list & PAGE_MASK)) / 8;
        uint64_t need = (len + NVME_PAGE_SIZE - 1) / NVME_PAGE_SIZE;
        bool chain = need > room;
        uint64_t n = chain ? room - 1 : need;
        if (n == 0)
            return NVME_SC_INVALID_FIELD; /* a list page with room for the chain pointer alone */
        if (fetch(opaque, list, entries, (n + chain) * 8) < 0)
            return NVME_SC_DATA_XFER_ERROR;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t page = le64toh(entries[i]);
            uint64_t chunk = min_u64(len, NVME_PAGE_SIZE);
            if (page & PAGE_MASK)
                return NVME_SC_PRP_OFFSET_INVALID;
            if ((sc = seg_add(out, page, chunk, false)))
                return sc;
            len -= chunk;
        }
        if (chain)
            list = le64toh(entries[n]);
    }
    return NVME_SC_SUCCESS;
}

/* Where the SGL walk reads its next descriptor: the rest of the current
 * segment in guest memory, and what of it was fetched already. */
struct sgl_cursor {
    uint64_t addr; /* the next descriptor not fetched yet */
    uint64_t left; /* descriptors of the segment not fetched yet */
    struct nvme_sgl_desc batch[SGL_BATCH];
    uint32_t nr, next; /* fetched, and the next of them to use */
    bool last;         /* the segment is the last one: no segment descriptors in it */
};

static bool cursor_more(const struct sgl_cursor *c)
{
    return c->left > 0 || c->next < c->nr;
}

/* A Segment or Last Segment descriptor: the segment it points to becomes
 * the current one. It must be its own segment's last descriptor. */
static uint16_t cursor_enter(struct sgl_cursor *c, uint64_t addr, uint32_t len, bool last)
{
    uint64_t end;

    if (c->last || cursor_more(c))
        return NVME_SC_SGL_SEGMENT_INVALID;
    if (len == 0 || len % sizeof(struct nvme_sgl_desc))
        return NVME_SC_SGL_SEGMENT_INVALID;
    if (__builtin_add_overflow(addr, len, &end))
        return NVME_SC_DATA_XFER_ERROR;
    *c =
        (struct sgl_cursor){.addr = addr, .left = len / sizeof(struct nvme_sgl_desc), .last = last};
    return NVME_SC_SUCCESS;
}

static uint16_t cursor_next(struct sgl_cursor *c, nvme_dptr_fetch_fn *fetch, void *opaque,
                            struct nvme_sgl_desc *desc)
{
    if (c->next == c->nr) {
        uint32_t n = (uint32_t)min_u64(c->left, SGL_BATCH);
        if (fetch(opaque, c->addr, c->batch, n * sizeof(c->batch[0])) < 0)
            return NVME_SC_DATA_XFER_ERROR;
        c->addr += n * sizeof(c->batch[0]);
        c->left -= n;
        c->nr = n;
        c->next = 0;
    }
    *desc = c->batch[c->next++];
    return NVME_SC_SUCCESS;
}

/* The SGL whose first descriptor is the DPTR (section 4.4): data and bit
 * bucket descriptors consume the transfer in order, a Segment descriptor
 * (the last of its segment) moves on to the next segment, a Last Segment
 * descriptor to the segment that ends the list. */
static uint16_t sgl_parse(const struct nvme_sqe *cmd, uint64_t len, bool to_host,
                          nvme_dptr_fetch_fn *fetch, void *opaque, struct nvme_dptr *out)
{
    struct sgl_cursor c = {0};
    struct nvme_sgl_desc desc;
    uint16_t sc;

    static_assert(offsetof(struct nvme_sqe, prp2) == offsetof(struct nvme_sqe, prp1) + 8,
                  "the DPTR is 16 contiguous bytes");
    memcpy(&desc, &cmd->prp1, sizeof(desc));
    for (unsigned used = 1;; used++) {
        uint8_t type = NVME_SGL_TYPE(desc.id);
        uint64_t addr = le64toh(desc.addr);
        uint32_t dlen = le32toh(desc.len);

        /* PCIe has addresses only: offsets and keys are for fabrics. */
        if (NVME_SGL_SUBTYPE(desc.id) != NVME_SGL_SUBTYPE_ADDRESS)
            return NVME_SC_SGL_TYPE_INVALID;
        switch (type) {
        case NVME_SGL_BIT_BUCKET:
            if (!to_host)
                return NVME_SC_SGL_TYPE_INVALID; /* nothing to discard on a write */
            /* fall through */
        case NVME_SGL_DATA_BLOCK: {
            uint64_t take = min_u64(dlen, len - out->len);
            if ((sc = seg_add(out, addr, take, type == NVME_SGL_BIT_BUCKET)))
                return sc;
            if (out->len == len)
                return NVME_SC_SUCCESS; /* what the SGL describes past this is not read */
            if (!cursor_more(&c))
                return NVME_SC_SGL_LENGTH_INVALID; /* the SGL ends short of the data */
            break;
        }
        case NVME_SGL_SEGMENT:
        case NVME_SGL_LAST_SEGMENT:
            if ((sc = cursor_enter(&c, addr, dlen, type == NVME_SGL_LAST_SEGMENT)))
                return sc;
            break;
        default:
            return NVME_SC_SGL_TYPE_INVALID;
        }
        if (used == NVME_DPTR_MAX_DESCS)
            return NVME_SC_SGL_COUNT_INVALID;
        if ((sc = cursor_next(&c, fetch, opaque, &desc)))
            return sc;
    }
}

uint16_t nvme_dptr_parse(const struct nvme_sqe *cmd, uint64_t len, bool to_host,
                         nvme_dptr_fetch_fn *fetch, void *opaque, struct nvme_dptr *out)
{
    unsigned psdt = NVME_SQE_PSDT(cmd->flags);

    out->nr = 0;
    out->len = 0;
    if (psdt != NVME_PSDT_PRP && psdt != NVME_PSDT_SGL)
        return NVME_SC_INVALID_FIELD;
    if (len == 0)
        return NVME_SC_SUCCESS;
    if (len > NVME_MAX_XFER)
        return NVME_SC_INVALID_FIELD;
    if (psdt == NVME_PSDT_PRP)
        return prp_parse(cmd, len, fetch, opaque, out);
    return sgl_parse(cmd, len, to_host, fetch, opaque, out);
}
