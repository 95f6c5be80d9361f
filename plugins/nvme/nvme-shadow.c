/* SPDX-License-Identifier: MIT */
/*
 * Doorbell Buffer Config (NVMe 1.4 section 5.8): the host gives a page of
 * shadow doorbells and a page of EventIdx entries, laid out as the
 * doorbell registers with CAP.DSTRD 0 (SQ y tail at 8y, CQ y head at
 * 8y + 4). The host writes a doorbell's new value into its shadow entry
 * and writes the MMIO register only when the value passes the EventIdx
 * the controller published (Linux: nvme_dbbuf_need_event()); the
 * controller reads the shadow entries and publishes, as EventIdx, the
 * value it has taken, so that a host that moves on from there rings.
 *
 * Which queues use the shadow entries: Linux's nvme-pci gives shadow
 * entries to the I/O queues only and keeps ringing the admin queue's MMIO
 * doorbells, never touching their shadow entries (SPDK's driver does the
 * same), while the spec lets a host use them for every queue. A controller
 * that read the admin queue's shadow entries would hang Linux; one that
 * never did would lose a spec-following host's admin commands. So each
 * doorbell follows the MMIO register until its shadow entry changes from
 * what it held when the doorbell met the config, and from then on the
 * shadow entry alone: a host that writes a shadow entry writes it before
 * any MMIO write of the same value, so it is never behind the register.
 * Until then EventIdx holds the MMIO value taken, which is the host's
 * previous value, so a spec-following host finds that it must ring.
 *
 * A shadow page that is not mapped guest memory when a round needs it is
 * not fatal status (as an unmapped queue entry is, when a doorbell said it
 * was there): the round sees no doorbell at all, the controller waits and
 * looks again at the next tick. Those pages are read every round, not
 * only after the host rang, and they are unmapped whenever no client is
 * connected: between a client and its reconnection, and on a migration's
 * destination until the VMM maps guest memory. Fatal status there would
 * break both; a host that really unmapped them sees its controller stop
 * serving, and its reset clears the config.
 *
 * The pages are taken for one poll round at a time (a DMA_UNMAP waits for
 * the refs), and rounds do not run while quiesced, so a quiesced
 * controller reads and writes neither.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "nvme-dev.h"

/* Both pages hold an SQ tail and a CQ head per queue pair. */
static uint64_t shadow_len(const struct nvme_dev *d)
{
    return 8ull * (d->nr_queues + 1);
}

static struct muserd_dma_ref page_ref(const struct nvme_dev *d, uint64_t iova, uint32_t prot)
{
    return (struct muserd_dma_ref){
        .size = sizeof(struct muserd_dma_ref),
        .prot = prot,
        .iova = iova,
        .len = shadow_len(d),
    };
}

/* Acquire: the queue entries the host wrote before the doorbell are visible. */
static uint32_t entry_read(const struct muserd_dma_ref *ref, uint32_t index)
{
    return le32toh(__atomic_load_n((uint32_t *)ref->ptr + index, __ATOMIC_ACQUIRE));
}

/* Sequentially consistent, with recheck_read(): see nvme_shadow_round_end(). */
static void entry_write(const struct muserd_dma_ref *ref, uint32_t index, uint32_t v)
{
    __atomic_store_n((uint32_t *)ref->ptr + index, htole32(v), __ATOMIC_SEQ_CST);
}

static uint32_t recheck_read(const struct muserd_dma_ref *ref, uint32_t index)
{
    return le32toh(__atomic_load_n((uint32_t *)ref->ptr + index, __ATOMIC_SEQ_CST));
}

static bool doorbell_exists(const struct nvme_dev *d, uint32_t index)
{
    return index % 2 ? d->cq[index / 2].valid : d->sq[index / 2].valid;
}

static void refs_put(struct nvme_dev *d, bool written)
{
    if (!d->shadow.held)
        return;
    d->svc->dma_put(d->host, &d->shadow.db_ref, false);
    d->svc->dma_put(d->host, &d->shadow.ei_ref, written);
    d->shadow.held = false;
}

void nvme_shadow_clear(struct nvme_dev *d)
{
    refs_put(d, false);
    memset(&d->shadow, 0, sizeof(d->shadow));
}

void nvme_shadow_queue_new(struct nvme_dev *d, uint32_t index)
{
    /* The base is taken when a round first reads the doorbell. */
    d->shadow.db[index] = (struct nvme_shadow_db){0};
}

void nvme_shadow_config(struct nvme_dev *d, const struct nvme_sqe *cmd, struct nvme_result *res)
{
    uint64_t db_addr = le64toh(cmd->prp1), ei_addr = le64toh(cmd->prp2);

    if ((db_addr | ei_addr) & (NVME_PAGE_SIZE - 1)) {
        res->status = NVME_SC_INVALID_FIELD; /* the spec: both must be page aligned */
        return;
    }
    /* QEMU ends an INTx (deasserts the line, unmasks it) only when the guest
     * next touches a register; a guest on shadow doorbells touches none in
     * its handler, and the line stays up: a storm of unhandled interrupts.
     * Under INTx the host keeps to MMIO doorbells (Linux goes on without
     * the config when it fails). */
    if (nvme_on_intx(d)) {
        d->svc->log(d->host, MUSERD_LOG_INFO,
                    "nvme: Doorbell Buffer Config refused: the controller interrupts through "
                    "INTx, which QEMU ends only at a register access");
        res->status = NVME_SC_CMD_SEQ_ERROR;
        return;
    }
    /* The initial EventIdx entries are written now, so pages the controller
     * cannot reach fail the command as data pointers do. */
    struct muserd_dma_ref db = page_ref(d, db_addr, MUSERD_DMA_READ);
    struct muserd_dma_ref ei = page_ref(d, ei_addr, MUSERD_DMA_WRITE);
    if (d->svc->dma_get(d->host, &db) < 0) {
        res->status = NVME_SC_DATA_XFER_ERROR;
        return;
    }
    if (d->svc->dma_get(d->host, &ei) < 0) {
        d->svc->dma_put(d->host, &db, false);
        res->status = NVME_SC_DATA_XFER_ERROR;
        return;
    }
    /* A config replacing another mid-round: the rest of the round reads
     * the registers, which every doorbell follows until it goes live. */
    nvme_shadow_clear(d);
    d->shadow.enabled = true;
    d->shadow.db_addr = db_addr;
    d->shadow.ei_addr = ei_addr;
    for (uint32_t i = 0; i < 2 * (d->nr_queues + 1); i++) {
        if (!doorbell_exists(d, i))
            continue;
        struct nvme_shadow_db *s = &d->shadow.db[i];
        s->base = entry_read(&db, i);
        s->base_taken = true;
        s->seen = le32toh(__atomic_load_n(&d->db[i], __ATOMIC_ACQUIRE));
        s->event = s->seen;
        s->published = true;
        entry_write(&ei, i, s->event);
    }
    d->svc->dma_put(d->host, &db, false);
    d->svc->dma_put(d->host, &ei, true);
    d->svc->log(d->host, MUSERD_LOG_INFO, "nvme: shadow doorbells at %#llx, EventIdx at %#llx",
                (unsigned long long)db_addr, (unsigned long long)ei_addr);
}

int nvme_shadow_round_begin(struct nvme_dev *d)
{
    if (!d->shadow.enabled)
        return 0;
    d->shadow.db_ref = page_ref(d, d->shadow.db_addr, MUSERD_DMA_READ);
    d->shadow.ei_ref = page_ref(d, d->shadow.ei_addr, MUSERD_DMA_WRITE);
    int r = d->svc->dma_get(d->host, &d->shadow.db_ref);
    if (r >= 0) {
        r = d->svc->dma_get(d->host, &d->shadow.ei_ref);
        if (r < 0)
            d->svc->dma_put(d->host, &d->shadow.db_ref, false);
    }
    if (r < 0) {
        if (!d->shadow.unmapped_logged)
            d->svc->log(d->host, MUSERD_LOG_INFO,
                        "nvme: shadow doorbell pages not in mapped guest memory: waiting");
        d->shadow.unmapped_logged = true;
        return r;
    }
    d->shadow.unmapped_logged = false;
    d->shadow.held = true;
    return 0;
}

/* The doorbell's value from the shadow entry, or mmio while it is not live;
 * `entry` is the shadow entry read. Does not change what the doorbell saw. */
static uint32_t doorbell_peek(const struct nvme_shadow_db *s, uint32_t entry, uint32_t mmio,
                              bool *live)
{
    *live = s->live || (s->base_taken && entry != s->base);
    return *live ? entry : mmio;
}

uint32_t nvme_shadow_doorbell(struct nvme_dev *d, uint32_t index, uint32_t mmio)
{
    struct nvme_shadow_db *s = &d->shadow.db[index];

    if (!d->shadow.held)
        return mmio;
    /* The register was read first: an entry read after it is as new. */
    uint32_t entry = entry_read(&d->shadow.db_ref, index);
    if (!s->base_taken) {
        s->base = entry;
        s->base_taken = true;
    }
    s->seen = doorbell_peek(s, entry, mmio, &s->live);
    return s->seen;
}

bool nvme_shadow_round_end(struct nvme_dev *d)
{
    bool written = false, moved = false;

    if (!d->shadow.held)
        return false;
    for (uint32_t i = 0; i < 2 * (d->nr_queues + 1); i++) {
        struct nvme_shadow_db *s = &d->shadow.db[i];
        if (!doorbell_exists(d, i) || !s->base_taken || (s->published && s->event == s->seen))
            continue;
        entry_write(&d->shadow.ei_ref, i, s->seen);
        s->event = s->seen;
        s->published = true;
        written = true;
    }
    /* The host writes its shadow entry, then reads EventIdx; we write
     * EventIdx, then read the shadow entry again: with a full barrier on
     * both sides, a value written meanwhile is either seen here or makes
     * the host ring, so the poller may sleep after this round. Our barrier
     * is the sequentially consistent store (entry_write) before the
     * sequentially consistent load (recheck_read), not a fence, which
     * ThreadSanitizer cannot model. */
    for (uint32_t q = 0; q <= d->nr_queues && !moved; q++) {
        const struct nvme_shadow_db *s = &d->shadow.db[2 * q];
        bool live;
        if (!d->sq[q].valid || !s->base_taken)
            continue;
        uint32_t entry = recheck_read(&d->shadow.db_ref, 2 * q);
        uint32_t now = doorbell_peek(s, entry, s->seen, &live);
        moved = live && now != s->seen;
    }
    /* Marked dirty: migration carries what the host reads next. */
    refs_put(d, written);
    return moved;
}
