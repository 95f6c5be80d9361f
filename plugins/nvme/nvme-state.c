/* SPDX-License-Identifier: MIT */
/*
 * Save and load the nvme device for migration. The stream is all in the
 * final phase (the namespace changes with every write the guest makes; a
 * pre-copy would need dirty tracking of our own): first a head chunk with
 * the registers, features, events and every queue (its doorbells too: the
 * destination's page starts empty), then the namespace as pieces of a
 * little-endian u64 offset and the bytes from there, leaving out pages
 * that are all zeros (the destination starts from zeros); a last piece of
 * the offset alone, the namespace size, says the stream is whole.
 *
 * Version 2 adds the Doorbell Buffer Config: a head flag, a live bit per
 * shadowed doorbell in the queue records, and a record after the queues
 * with the two page addresses. Version 1 streams (from before shadow
 * doorbells) still load, with none configured.
 *
 * A file-backed namespace (head flag HEAD_BACKING) sends no pieces, only
 * the end: its data is in the file, which the destination opens too
 * (shared storage, as a VMM's disk image). The flag must match the
 * destination's namespace: a RAM stream does not load into a file, nor
 * the other way round.
 *
 * Version 3 has several namespaces: a record for each of nsid 1 to
 * STATE_NR_NS after the shadow record (active, file or RAM, size, block
 * size), which must match the destination's, and a piece's offset carries
 * its namespace in the bits above NS_SHIFT (namespace 1's pieces are as in
 * version 2). The end is the offset STREAM_END. Version 1 and 2 streams
 * load into a device with namespace 1 only, and such a device saves
 * version 2, so that it can go back to a muserd from before version 3.
 *
 * No command is in flight while quiesced (a quiesce waits for the backing
 * file), so there is nothing else.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nvme-dev.h"

#define NVME_STATE_MAGIC   0x53454d4eu /* "NMES" */
#define NVME_STATE_VERSION 3u

#define HEAD_QUEUES_SET   (1u << 0)
#define HEAD_IRQ_ASSERTED (1u << 1)
#define HEAD_SHADOW       (1u << 2) /* version 2: Doorbell Buffer Config set */
#define HEAD_BACKING      (1u << 3) /* version 2: the namespace is a file, not in the stream */

struct nvme_state_head {
    uint64_t ns_size, asq, acq;
    uint64_t units_read, units_written, host_reads, host_writes;
    uint32_t magic, version, block_size, nr_queues;
    uint32_t cc, csts, aqa, intms;
    uint32_t arbitration, power_mgmt, temp_thresh, volatile_wc, irq_coalesce, async_event;
    uint32_t flags; /* HEAD_* */
    uint32_t nr_aers, nr_events, masked_types;
    uint32_t events[NVME_MAX_EVENTS];
    uint16_t aer_cids[NVME_AERL + 1];
    uint16_t nsqa, ncqa;
    uint16_t pad[2];
};
_Static_assert(sizeof(struct nvme_state_head) == 176, "state head layout is fixed");

#define QUEUE_SQ_VALID    (1u << 0)
#define QUEUE_CQ_VALID    (1u << 1)
#define QUEUE_CQ_IEN      (1u << 2)
#define QUEUE_CQ_PHASE    (1u << 3)
#define QUEUE_CQ_IRQ_PEND (1u << 4)
/* Version 2: the doorbell follows its shadow entry (nvme-shadow.c). */
#define QUEUE_SQ_SHADOW (1u << 5)
#define QUEUE_CQ_SHADOW (1u << 6)

/* SQ y and CQ y, with their doorbells. */
struct nvme_state_queue {
    uint64_t sq_addr, cq_addr;
    uint32_t sq_size, sq_head, sq_tail_db;
    uint32_t cq_size, cq_tail, cq_head, cq_head_db;
    uint32_t flags; /* QUEUE_* */
    uint16_t sq_cqid, cq_iv;
    uint32_t pad;
};
_Static_assert(sizeof(struct nvme_state_queue) == 56, "state queue layout is fixed");

/* Version 2, after the queues. */
struct nvme_state_shadow {
    uint64_t db_addr, ei_addr;
};
_Static_assert(sizeof(struct nvme_state_shadow) == 16, "state shadow layout is fixed");

#define NS_ACTIVE  (1u << 0)
#define NS_BACKING (1u << 1)

/* Version 3, after the shadow record: one per nsid 1 to STATE_NR_NS (fixed
 * by the format; more namespaces would need a new version). */
#define STATE_NR_NS 4
_Static_assert(NVME_MAX_NS == STATE_NR_NS, "more namespaces need a new state version");
struct nvme_state_ns {
    uint64_t size;
    uint32_t block_size;
    uint32_t flags; /* NS_* */
};
_Static_assert(sizeof(struct nvme_state_ns) == 16, "state namespace layout is fixed");

/* A piece's offset: the namespace index above NS_SHIFT, bytes below
 * (NVME_SIZE_MAX and a backing file's size are far below 2^48). */
#define NS_SHIFT   48
#define NS_BYTES   ((1ull << NS_SHIFT) - 1)
#define STREAM_END ((uint64_t)STATE_NR_NS << NS_SHIFT)

static size_t queues_end(const struct nvme_dev *d)
{
    return sizeof(struct nvme_state_head) + (d->nr_queues + 1) * sizeof(struct nvme_state_queue);
}

static size_t head_len_of(const struct nvme_dev *d, uint32_t version)
{
    return queues_end(d) + (version >= 2 ? sizeof(struct nvme_state_shadow) : 0) +
           (version >= 3 ? STATE_NR_NS * sizeof(struct nvme_state_ns) : 0);
}

/* The namespace record nsid i + 1 of the destination's own config. */
static struct nvme_state_ns ns_record(const struct nvme_ns *ns)
{
    if (!ns->active)
        return (struct nvme_state_ns){0};
    return (struct nvme_state_ns){
        .size = htole64(ns->size),
        .block_size = htole32(ns->block_size),
        .flags = htole32(NS_ACTIVE | (ns->fd >= 0 ? NS_BACKING : 0)),
    };
}

/* Namespace 1 is all a version 1 or 2 stream knows of. */
static bool only_ns1(const struct nvme_dev *d)
{
    return d->nn == 1;
}

/* The version this device saves: 2 while it has namespace 1 only. */
static uint32_t save_version(const struct nvme_dev *d)
{
    return only_ns1(d) ? 2 : NVME_STATE_VERSION;
}

static size_t head_len(const struct nvme_dev *d)
{
    return head_len_of(d, save_version(d));
}

/* The offset of a stream's end piece: namespace 1's size before version 3. */
static uint64_t stream_end(const struct nvme_dev *d, uint32_t version)
{
    return version >= 3 ? STREAM_END : d->ns[0].size;
}

static void head_fill(const struct nvme_dev *d, uint8_t *out)
{
    struct nvme_state_head h = {
        .ns_size = htole64(d->ns[0].size),
        .asq = htole64(d->asq),
        .acq = htole64(d->acq),
        .units_read = htole64(d->stats.units_read),
        .units_written = htole64(d->stats.units_written),
        .host_reads = htole64(d->stats.host_reads),
        .host_writes = htole64(d->stats.host_writes),
        .magic = htole32(NVME_STATE_MAGIC),
        .version = htole32(save_version(d)),
        .block_size = htole32(d->ns[0].block_size),
        .nr_queues = htole32(d->nr_queues),
        .cc = htole32(d->cc),
        .csts = htole32(d->csts),
        .aqa = htole32(d->aqa),
        .intms = htole32(d->intms),
        .arbitration = htole32(d->feat.arbitration),
        .power_mgmt = htole32(d->feat.power_mgmt),
        .temp_thresh = htole32(d->feat.temp_thresh),
        .volatile_wc = htole32(d->feat.volatile_wc),
        .irq_coalesce = htole32(d->feat.irq_coalesce),
        .async_event = htole32(d->feat.async_event),
        .flags = htole32(
            (d->feat.queues_set ? HEAD_QUEUES_SET : 0) | (d->irq_asserted ? HEAD_IRQ_ASSERTED : 0) |
            (d->shadow.enabled ? HEAD_SHADOW : 0) | (d->ns[0].fd >= 0 ? HEAD_BACKING : 0)),
        .nr_aers = htole32(d->nr_aers),
        .nr_events = htole32(d->nr_events),
        .masked_types = htole32(d->masked_types),
        .nsqa = htole16(d->feat.nsqa),
        .ncqa = htole16(d->feat.ncqa),
    };
    for (uint32_t i = 0; i < NVME_MAX_EVENTS; i++)
        h.events[i] = htole32(d->events[i]);
    for (uint32_t i = 0; i <= NVME_AERL; i++)
        h.aer_cids[i] = d->aer_cids[i]; /* as the host wrote them */
    memcpy(out, &h, sizeof(h));
    out += sizeof(h);
    for (uint32_t q = 0; q <= d->nr_queues; q++) {
        const struct nvme_sq *sq = &d->sq[q];
        const struct nvme_cq *cq = &d->cq[q];
        struct nvme_state_queue s = {
            .sq_addr = htole64(sq->addr),
            .cq_addr = htole64(cq->addr),
            .sq_size = htole32(sq->size),
            .sq_head = htole32(sq->head),
            .sq_tail_db = d->db[2 * q],
            .cq_size = htole32(cq->size),
            .cq_tail = htole32(cq->tail),
            .cq_head = htole32(cq->head),
            .cq_head_db = d->db[2 * q + 1],
            .flags = htole32((sq->valid ? QUEUE_SQ_VALID : 0) | (cq->valid ? QUEUE_CQ_VALID : 0) |
                             (cq->ien ? QUEUE_CQ_IEN : 0) | (cq->phase ? QUEUE_CQ_PHASE : 0) |
                             (cq->irq_pending ? QUEUE_CQ_IRQ_PEND : 0) |
                             (d->shadow.db[2 * q].live ? QUEUE_SQ_SHADOW : 0) |
                             (d->shadow.db[2 * q + 1].live ? QUEUE_CQ_SHADOW : 0)),
            .sq_cqid = htole16(sq->cqid),
            .cq_iv = htole16(cq->iv),
        };
        memcpy(out + q * sizeof(s), &s, sizeof(s));
    }
    struct nvme_state_shadow sh = {
        .db_addr = htole64(d->shadow.db_addr),
        .ei_addr = htole64(d->shadow.ei_addr),
    };
    out += (d->nr_queues + 1) * sizeof(struct nvme_state_queue);
    memcpy(out, &sh, sizeof(sh));
    out += sizeof(sh);
    for (uint32_t i = 0; save_version(d) >= 3 && i < NVME_MAX_NS; i++) {
        struct nvme_state_ns rec = ns_record(&d->ns[i]);
        memcpy(out + i * sizeof(rec), &rec, sizeof(rec));
    }
}

/* A queue of the stream is one create would have accepted. */
static int queue_check(const struct nvme_dev *d, uint32_t q, const struct nvme_state_queue *s,
                       const struct nvme_state_queue *all, uint32_t known_flags)
{
    uint32_t flags = le32toh(s->flags);
    uint32_t max = q == 0 ? 4096 : NVME_MAX_ENTRIES;

    if (flags & ~known_flags)
        return -EINVAL;
    if (flags & QUEUE_SQ_VALID) {
        uint32_t size = le32toh(s->sq_size), cqid = le16toh(s->sq_cqid);
        if (size < 2 || size > max || le32toh(s->sq_head) >= size)
            return -EINVAL;
        if (cqid > d->nr_queues || (q == 0) != (cqid == 0) ||
            !(le32toh(all[cqid].flags) & QUEUE_CQ_VALID))
            return -EINVAL;
    }
    if (flags & QUEUE_CQ_VALID) {
        uint32_t size = le32toh(s->cq_size);
        if (size < 2 || size > max || le32toh(s->cq_tail) >= size || le32toh(s->cq_head) >= size ||
            le16toh(s->cq_iv) > d->nr_queues)
            return -EINVAL;
    }
    return 0;
}

/* The stream's version when its head fits this device, else -EINVAL. */
static int head_check(const struct nvme_dev *d, const uint8_t *in, size_t len)
{
    struct nvme_state_head h;

    if (len < sizeof(h))
        return -EINVAL;
    memcpy(&h, in, sizeof(h));
    uint32_t version = le32toh(h.version);
    if (le32toh(h.magic) != NVME_STATE_MAGIC || version < 1 || version > NVME_STATE_VERSION)
        return -EINVAL;
    if (len != head_len_of(d, version))
        return -EINVAL;
    uint32_t head_flags = version >= 2 ? 0xfu : 3u;
    if (version < 3 && !only_ns1(d))
        return -EINVAL; /* the stream has one namespace, the destination more */
    uint32_t queue_flags = version >= 2 ? 0x7fu : 0x1fu;
    /* The destination must have been created with the same config. */
    if (le64toh(h.ns_size) != d->ns[0].size || le32toh(h.block_size) != d->ns[0].block_size ||
        le32toh(h.nr_queues) != d->nr_queues)
        return -EINVAL;
    if ((le32toh(h.cc) & ~NVME_CC_WRITABLE) || (le32toh(h.csts) & ~0x1fu) ||
        (le32toh(h.aqa) & ~NVME_AQA_WRITABLE) || (le64toh(h.asq) & 0xfff) ||
        (le64toh(h.acq) & 0xfff))
        return -EINVAL;
    if (le32toh(h.nr_aers) > NVME_AERL + 1 || le32toh(h.nr_events) > NVME_MAX_EVENTS ||
        le16toh(h.nsqa) >= d->nr_queues || le16toh(h.ncqa) >= d->nr_queues ||
        (le32toh(h.flags) & ~head_flags))
        return -EINVAL;
    if (!(le32toh(h.flags) & HEAD_BACKING) != (d->ns[0].fd < 0))
        return -EINVAL; /* RAM into a file, or a file into RAM */
    if (version >= 3) {
        const uint8_t *recs = in + queues_end(d) + sizeof(struct nvme_state_shadow);
        for (uint32_t i = 0; i < NVME_MAX_NS; i++) {
            struct nvme_state_ns rec, mine = ns_record(&d->ns[i]);
            memcpy(&rec, recs + i * sizeof(rec), sizeof(rec));
            if (memcmp(&rec, &mine, sizeof(rec)) != 0)
                return -EINVAL; /* another set of namespaces, or of another size or kind */
        }
    }
    if (version >= 2) {
        struct nvme_state_shadow sh;
        memcpy(&sh, in + queues_end(d), sizeof(sh));
        if ((le64toh(sh.db_addr) | le64toh(sh.ei_addr)) & (NVME_PAGE_SIZE - 1))
            return -EINVAL;
    }
    const struct nvme_state_queue *qs = (const void *)(in + sizeof(h));
    struct nvme_state_queue all[NVME_MAX_QUEUES + 1];
    memcpy(all, qs, (d->nr_queues + 1) * sizeof(all[0]));
    for (uint32_t q = 0; q <= d->nr_queues; q++)
        if (queue_check(d, q, &all[q], all, queue_flags) < 0)
            return -EINVAL;
    return (int)version;
}

static void head_apply(struct nvme_dev *d, const uint8_t *in)
{
    struct nvme_state_head h;
    struct nvme_state_queue all[NVME_MAX_QUEUES + 1];

    memcpy(&h, in, sizeof(h));
    memcpy(all, in + sizeof(h), (d->nr_queues + 1) * sizeof(all[0]));
    nvme_ctrl_reset(d);
    d->cc = le32toh(h.cc);
    d->csts = le32toh(h.csts);
    d->aqa = le32toh(h.aqa);
    d->intms = le32toh(h.intms);
    d->asq = le64toh(h.asq);
    d->acq = le64toh(h.acq);
    d->feat = (struct nvme_features){
        .arbitration = le32toh(h.arbitration),
        .power_mgmt = le32toh(h.power_mgmt),
        .temp_thresh = le32toh(h.temp_thresh),
        .volatile_wc = le32toh(h.volatile_wc),
        .irq_coalesce = le32toh(h.irq_coalesce),
        .async_event = le32toh(h.async_event),
        .nsqa = le16toh(h.nsqa),
        .ncqa = le16toh(h.ncqa),
        .queues_set = le32toh(h.flags) & HEAD_QUEUES_SET,
    };
    d->irq_asserted = le32toh(h.flags) & HEAD_IRQ_ASSERTED;
    d->stats = (struct nvme_stats){le64toh(h.units_read), le64toh(h.units_written),
                                   le64toh(h.host_reads), le64toh(h.host_writes)};
    d->nr_aers = le32toh(h.nr_aers);
    d->nr_events = le32toh(h.nr_events);
    d->masked_types = le32toh(h.masked_types);
    for (uint32_t i = 0; i < NVME_MAX_EVENTS; i++)
        d->events[i] = le32toh(h.events[i]);
    for (uint32_t i = 0; i <= NVME_AERL; i++)
        d->aer_cids[i] = h.aer_cids[i];
    for (uint32_t q = 0; q <= d->nr_queues; q++) {
        const struct nvme_state_queue *s = &all[q];
        uint32_t flags = le32toh(s->flags);
        if (flags & QUEUE_SQ_VALID)
            d->sq[q] = (struct nvme_sq){
                .valid = true,
                .addr = le64toh(s->sq_addr),
                .size = le32toh(s->sq_size),
                .head = le32toh(s->sq_head),
                .cqid = le16toh(s->sq_cqid),
                .bad_tail = UINT32_MAX,
            };
        if (flags & QUEUE_CQ_VALID)
            d->cq[q] = (struct nvme_cq){
                .valid = true,
                .ien = flags & QUEUE_CQ_IEN,
                .phase = flags & QUEUE_CQ_PHASE,
                .irq_pending = flags & QUEUE_CQ_IRQ_PEND,
                .iv = le16toh(s->cq_iv),
                .addr = le64toh(s->cq_addr),
                .size = le32toh(s->cq_size),
                .tail = le32toh(s->cq_tail),
                .head = le32toh(s->cq_head),
                .bad_head = UINT32_MAX,
            };
        d->db[2 * q] = s->sq_tail_db;
        d->db[2 * q + 1] = s->cq_head_db;
        /* A doorbell not live takes its base again in the first round: the
         * host rang every value since the source's last look (EventIdx is
         * its previous value), so the register holds the newest. */
        d->shadow.db[2 * q].live = flags & QUEUE_SQ_SHADOW;
        d->shadow.db[2 * q + 1].live = flags & QUEUE_CQ_SHADOW;
    }
    if (le32toh(h.flags) & HEAD_SHADOW) {
        struct nvme_state_shadow sh;
        memcpy(&sh, in + queues_end(d), sizeof(sh));
        d->shadow.enabled = true;
        d->shadow.db_addr = le64toh(sh.db_addr);
        d->shadow.ei_addr = le64toh(sh.ei_addr);
    }
    /* Counted again rather than trusted. */
    for (uint32_t q = 0; q <= d->nr_queues; q++)
        if (d->sq[q].valid)
            d->cq[d->sq[q].cqid].nr_sqs++;
    if (!d->quiesced)
        nvme_kick(d);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* The next page to send at or after save_offset (an offset of the stream,
 * see NS_SHIFT): one the guest wrote, not all zeros, of a RAM namespace;
 * STREAM_END when there is none. */
static uint64_t next_piece(struct nvme_dev *d, uint64_t at)
{
    while (at < STREAM_END) {
        struct nvme_ns *ns = &d->ns[at >> NS_SHIFT];
        uint64_t off = at & NS_BYTES;
        if (ns->active && ns->fd < 0 && off < ns->size)
            off = nvme_ns_next_touched(ns, off);
        if (!ns->active || ns->fd >= 0 || off >= ns->size) {
            at = ((at >> NS_SHIFT) + 1) << NS_SHIFT; /* the next namespace */
            continue;
        }
        at = (at & ~NS_BYTES) | off;
        if (!all_zero(ns->mem + off, NVME_PAGE_SIZE))
            return at;
        at += NVME_PAGE_SIZE;
    }
    return STREAM_END;
}

int nvme_state_save(void *dev, enum muserd_state_phase phase, void *buf, size_t len,
                    size_t *written)
{
    struct nvme_dev *d = dev;
    uint8_t *out = buf;

    *written = 0;
    if (phase != MUSERD_STATE_FINAL)
        return 0;
    if (!d->save_head_sent) {
        if (len < head_len(d))
            return -ENOBUFS;
        head_fill(d, out);
        *written = head_len(d);
        d->save_head_sent = true;
        d->save_offset = 0;
        return 0;
    }
    if (d->save_offset > STREAM_END) {
        d->save_head_sent = false; /* the end; ready for another save */
        return 0;
    }
    d->save_offset = next_piece(d, d->save_offset);
    if (len < sizeof(uint64_t))
        return -ENOBUFS;
    if (d->save_offset == STREAM_END) {
        uint64_t end = htole64(stream_end(d, save_version(d)));
        memcpy(out, &end, sizeof(end));
        *written = sizeof(end);
        d->save_offset++;
        return 0;
    }
    if (len < sizeof(uint64_t) + NVME_PAGE_SIZE)
        return -ENOBUFS;
    const struct nvme_ns *ns = &d->ns[d->save_offset >> NS_SHIFT];
    uint64_t at = d->save_offset & NS_BYTES;
    uint64_t n =
        nvme_ns_touched_run(ns, at, (len - sizeof(uint64_t)) & ~(uint64_t)(NVME_PAGE_SIZE - 1));
    uint64_t off = htole64(d->save_offset);
    memcpy(out, &off, sizeof(off));
    memcpy(out + sizeof(off), ns->mem + at, n);
    d->save_offset += n;
    *written = sizeof(off) + n;
    return 0;
}

int nvme_state_save_begin(void *dev)
{
    struct nvme_dev *d = dev;
    d->save_head_sent = false;
    d->save_offset = 0;
    return 0;
}

int nvme_state_pending(void *dev, enum muserd_state_phase phase, uint64_t *bytes)
{
    struct nvme_dev *d = dev;
    uint64_t data = 0;
    for (uint32_t i = 0; i < NVME_MAX_NS; i++)
        if (d->ns[i].active && d->ns[i].fd < 0)
            data += d->ns[i].size;
    *bytes = phase == MUSERD_STATE_FINAL ? head_len(d) + data + sizeof(uint64_t) : 0;
    return 0;
}

/* A piece of namespace data at stream offset `at`, n bytes: 0 or -EINVAL. */
static int load_piece(struct nvme_dev *d, uint64_t at, const uint8_t *data, uint64_t n)
{
    if (at < d->load_offset || at >= STREAM_END)
        return -EINVAL; /* out of order, or past every namespace */
    struct nvme_ns *ns = &d->ns[at >> NS_SHIFT];
    uint64_t off = at & NS_BYTES;
    if (!ns->active || ns->fd >= 0 || off > ns->size || n > ns->size - off)
        return -EINVAL;
    nvme_ns_touch(ns, off, n);
    memcpy(ns->mem + off, data, n);
    d->load_offset = at + n;
    return 0;
}

int nvme_state_load(void *dev, const void *buf, size_t len)
{
    struct nvme_dev *d = dev;
    const uint8_t *in = buf;

    if (!d->load_head_seen) {
        int version = head_check(d, in, len);
        if (version < 0)
            return version;
        free(d->load_head);
        d->load_head = malloc(len);
        if (!d->load_head)
            return -ENOMEM;
        memcpy(d->load_head, in, len);
        d->load_head_seen = true;
        d->load_ended = false;
        d->load_offset = 0;
        d->load_end = stream_end(d, (uint32_t)version);
        /* Pages the source left out are zeros (a backing file is as it is). */
        for (uint32_t i = 0; i < NVME_MAX_NS; i++)
            if (d->ns[i].active && d->ns[i].fd < 0)
                nvme_ns_zero(&d->ns[i], 0, d->ns[i].size);
        return 0;
    }
    uint64_t off;
    if (len < sizeof(off) || d->load_ended)
        return -EINVAL;
    memcpy(&off, in, sizeof(off));
    off = le64toh(off);
    if (len > sizeof(off))
        return load_piece(d, off, in + sizeof(off), len - sizeof(off));
    if (off != d->load_end)
        return -EINVAL;
    d->load_ended = true;
    return 0;
}

int nvme_state_load_end(void *dev)
{
    struct nvme_dev *d = dev;
    bool complete = d->load_head_seen && d->load_ended;
    if (complete)
        head_apply(d, d->load_head);
    free(d->load_head);
    d->load_head = NULL;
    d->load_head_seen = false;
    d->load_ended = false;
    d->load_offset = 0;
    return complete ? 0 : -EINVAL;
}
