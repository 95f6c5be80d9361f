/* SPDX-License-Identifier: MIT */
/*
 * The queues at work: the poller reads the doorbell page (the client's
 * writes land there through its mapping, or through REGION_WRITE), fetches
 * commands from the submission queues, posts their completions, raises
 * interrupts and delivers asynchronous events.
 *
 * Commands on RAM namespaces complete within the round that fetched them.
 * On a backing file they complete later (nvme-io-file.c), each holding a
 * slot of its CQ meanwhile; a round reaps what came back before it looks
 * at the doorbells, and fetches nothing while NVME_AIO_DEPTH are in flight.
 */
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "nvme-dev.h"

static uint32_t db_read(struct nvme_dev *d, uint32_t index)
{
    /* Acquire: the entries the client wrote before ringing are visible. */
    uint32_t mmio = le32toh(__atomic_load_n(&d->db[index], __ATOMIC_ACQUIRE));
    return d->shadow.enabled ? nvme_shadow_doorbell(d, index, mmio) : mmio;
}

static bool cq_full(const struct nvme_cq *cq)
{
    return (cq->tail + 1) % cq->size == cq->head;
}

int nvme_post_unfatal(struct nvme_dev *d, uint16_t sqid, uint16_t cid,
                      const struct nvme_result *res)
{
    struct nvme_sq *sq = &d->sq[sqid];
    struct nvme_cq *cq = &d->cq[sq->cqid];

    if (!cq->valid || cq_full(cq))
        return -ENOSPC;
    struct muserd_dma_ref ref = {
        .size = sizeof(ref),
        .prot = MUSERD_DMA_WRITE,
        .iova = cq->addr + (uint64_t)cq->tail * sizeof(struct nvme_cqe),
        .len = sizeof(struct nvme_cqe),
    };
    int r = d->svc->dma_get(d->host, &ref);
    if (r < 0)
        return r;
    struct nvme_cqe cqe = {
        .result = htole32(res->dw0),
        .sq_head = htole16((uint16_t)sq->head),
        .sq_id = htole16(sqid),
        .cid = cid, /* as the host wrote it */
    };
    uint32_t last = (uint32_t)cid | (uint32_t)(NVME_CQE_STATUS(res->status) | cq->phase) << 16;
    /* The phase bit goes last: the host takes the entry as soon as it flips. */
    memcpy(ref.ptr, &cqe, 12);
    __atomic_store_n((uint32_t *)((uint8_t *)ref.ptr + 12), htole32(last), __ATOMIC_RELEASE);
    d->svc->dma_put(d->host, &ref, true);
    if (++cq->tail == cq->size) {
        cq->tail = 0;
        cq->phase = !cq->phase;
    }
    cq->irq_pending = true;
    return 0;
}

bool nvme_post(struct nvme_dev *d, uint16_t sqid, uint16_t cid, const struct nvme_result *res)
{
    int r = nvme_post_unfatal(d, sqid, cid, res);
    /* -ENOTCONN: the client left after the command was fetched. */
    if (r < 0 && r != -ENOSPC && r != -ENOTCONN)
        nvme_ctrl_fatal(d, "a completion queue entry is not in mapped guest memory");
    return r == 0;
}

bool nvme_on_intx(const struct nvme_dev *d)
{
    return MUSERD_HAS_SERVICE(d->svc, irq_mode) && d->svc->irq_mode(d->host) == MUSERD_IRQ_INTX;
}

/*
 * INTx under QEMU: QEMU asserts the guest's line when our eventfd fires,
 * from its main loop, and ends it only at the guest's next register
 * access. An INTx raised for completions that the handler of the previous
 * one then takes anyway reaches a guest with nothing to do: its handler
 * touches no register, the line stays up, and the guest takes thousands
 * of unhandled interrupts. So once INTx is raised, the next waits until
 * the host has moved a CQ head (its handler ran), or NVME_INTX_REFIRE_USEC
 * has passed (a lost interrupt is raised again).
 */
static bool intx_held(struct nvme_dev *d)
{
    if (!d->intx_fired)
        return false;
    if (d->svc->now_usec(d->host) - d->intx_fired_usec < NVME_INTX_REFIRE_USEC)
        return true;
    d->intx_fired = false;
    return false;
}

void nvme_irq_flush(struct nvme_dev *d)
{
    /* Quiesced: no interrupt; the first round after resuming raises it. */
    if (d->quiesced)
        return;
    int intx = -1; /* on INTx: asked once, when there is something to raise */
    for (uint32_t q = 0; q <= d->nr_queues; q++) {
        struct nvme_cq *cq = &d->cq[q];
        if (!cq->valid || !cq->irq_pending || !cq->ien)
            continue;
        /* INTMS masks pin and MSI vectors; an MSI-X host never sets it. */
        if (d->intms & (1u << (cq->iv & 31)))
            continue;
        if (intx < 0)
            intx = nvme_on_intx(d);
        /* INTx is a level: entries the host took already raise nothing. */
        if (intx && cq->head == cq->tail) {
            cq->irq_pending = false;
            continue;
        }
        if (intx && intx_held(d))
            continue; /* irq_pending stays: raised when the hold ends */
        cq->irq_pending = false;
        int r = d->svc->irq_raise(d->host, cq->iv);
        /* With INTx or single-vector MSI every queue shares vector 0. */
        if (r == -EINVAL && cq->iv != 0)
            r = d->svc->irq_raise(d->host, 0);
        if (r == 0)
            d->irq_asserted = true;
        if (r == 0 && intx) {
            d->intx_fired = true;
            d->intx_fired_usec = d->svc->now_usec(d->host);
        }
    }
}

/* INTx is level-triggered: it stays up while a queue has entries the host
 * has not consumed. */
static void irq_maybe_lower(struct nvme_dev *d)
{
    if (!d->irq_asserted)
        return;
    for (uint32_t q = 0; q <= d->nr_queues; q++)
        if (d->cq[q].valid && d->cq[q].ien && d->cq[q].head != d->cq[q].tail)
            return;
    d->irq_asserted = false;
    d->svc->irq_lower(d->host);
}

void nvme_events_deliver(struct nvme_dev *d)
{
    /* Quiesced: recorded, posted by the first round after resuming (a
     * completion written now would also escape the state being saved). */
    if (d->quiesced)
        return;
    while (d->nr_aers > 0 && d->nr_events > 0 && !(d->csts & NVME_CSTS_CFS)) {
        struct nvme_result res = {.dw0 = d->events[0]};
        if (!nvme_post(d, 0, d->aer_cids[0], &res))
            return; /* the admin CQ is full: try again next round */
        memmove(d->aer_cids, d->aer_cids + 1, --d->nr_aers * sizeof(d->aer_cids[0]));
        memmove(d->events, d->events + 1, --d->nr_events * sizeof(d->events[0]));
    }
}

void nvme_event(struct nvme_dev *d, uint32_t type, uint32_t info, uint32_t log)
{
    /* One event of a type until the host reads its log page: a broken
     * doorbell polled a thousand times is reported once. */
    if ((d->masked_types & (1u << type)) || d->nr_events == NVME_MAX_EVENTS)
        return;
    d->masked_types |= 1u << type;
    d->events[d->nr_events++] = type | info << 8 | log << 16;
    nvme_events_deliver(d);
    nvme_irq_flush(d);
}

void nvme_event_unmask(struct nvme_dev *d, uint32_t type)
{
    d->masked_types &= ~(1u << type);
}

static void cq_update_heads(struct nvme_dev *d)
{
    for (uint32_t q = 0; q <= d->nr_queues; q++) {
        struct nvme_cq *cq = &d->cq[q];
        if (!cq->valid)
            continue;
        uint32_t head = db_read(d, 2 * q + 1);
        if (head >= cq->size) {
            if (head != cq->bad_head)
                nvme_event(d, NVME_AER_TYPE_ERROR, NVME_AER_INFO_INVALID_DB_VAL, NVME_LOG_ERROR);
            cq->bad_head = head;
            continue;
        }
        cq->bad_head = UINT32_MAX;
        if (head != cq->head)
            d->intx_fired = false; /* the host's handler ran: INTx may come again */
        cq->head = head;
    }
}

/* How many more commands SQ sq may take this round, `served` taken: its
 * budget and the room its CQ has for their completions (less the slots the
 * commands in flight hold). The backing files' in-flight limit is looked
 * at command by command (file_room). */
static uint32_t sq_allowance(const struct nvme_dev *d, const struct nvme_sq *sq, int served)
{
    const struct nvme_cq *cq = &d->cq[sq->cqid];
    if (!cq->valid)
        return 0;
    uint32_t used = (cq->tail + cq->size - cq->head) % cq->size;
    uint32_t room = cq->size - 1 - used;
    uint32_t n = room > cq->reserved ? room - cq->reserved : 0;
    if (n > (uint32_t)(NVME_SQ_BUDGET - served))
        n = (uint32_t)(NVME_SQ_BUDGET - served);
    return n;
}

/* May this I/O command start now? One for a backing file waits while the
 * files have NVME_AIO_DEPTH operations in flight (a completion wakes us);
 * it waits in its SQ, which stops there: the other queues, and commands
 * for RAM namespaces, go on, so that a file that hangs holds no more than
 * the queues that carry its commands. */
static bool file_room(struct nvme_dev *d, const struct nvme_sqe *cmd)
{
    if (!d->aio || nvme_file_inflight(d) < NVME_AIO_DEPTH)
        return true;
    const struct nvme_ns *ns = nvme_ns_of(d, le32toh(cmd->nsid));
    bool on_file = ns ? ns->fd >= 0 : le32toh(cmd->nsid) == NVME_NSID_ALL;
    return !on_file;
}

/* SQEs are copied out this many at a time, in one dma_get. */
#define SQ_BATCH 16

/* Copy up to `max` entries from the head (not past the ring's end, nor the
 * tail) into out: how many, or -errno when the head's entry is not in
 * mapped memory. */
static int sq_fetch(struct nvme_dev *d, const struct nvme_sq *sq, uint32_t tail,
                    struct nvme_sqe *out, uint32_t max)
{
    uint32_t n = (tail > sq->head ? tail : sq->size) - sq->head;
    uint64_t addr = sq->addr + (uint64_t)sq->head * sizeof(*out);
    if (n > max)
        n = max;
    int r = nvme_dma_copy(d, addr, out, n * sizeof(*out), false);
    if (r == 0)
        return (int)n;
    if (r != -ENOENT || n == 1)
        return r;
    /* The run crosses from one mapping into the next: one entry. */
    r = nvme_dma_copy(d, addr, out, sizeof(*out), false);
    return r < 0 ? r : 1;
}

/* No guest memory is mapped at all: a client has yet to come (a migrated
 * controller resumes before its VMM maps memory) or to map it. Commands
 * wait, without fatal status; the idle tick looks again. */
static void wait_for_memory(struct nvme_dev *d)
{
    if (!d->memory_wait_logged)
        d->svc->log(d->host, MUSERD_LOG_INFO,
                    "nvme: commands wait for the client to map guest memory");
    d->memory_wait_logged = true;
}

/* Up to NVME_SQ_BUDGET commands of SQ qid; the number served. */
static int sq_run(struct nvme_dev *d, uint16_t qid)
{
    struct nvme_sq *sq = &d->sq[qid];
    uint32_t tail = db_read(d, 2u * qid);
    int n = 0;

    if (tail >= sq->size) {
        if (tail != sq->bad_tail)
            nvme_event(d, NVME_AER_TYPE_ERROR, NVME_AER_INFO_INVALID_DB_VAL, NVME_LOG_ERROR);
        sq->bad_tail = tail; /* the queue waits for a valid tail */
        return 0;
    }
    sq->bad_tail = UINT32_MAX;
    bool blocked = false;
    while (sq->valid && sq->head != tail && !blocked) {
        /* Nothing may be fetched whose completion would find no room: the
         * host consumes completions first. */
        uint32_t allowed = sq_allowance(d, sq, n);
        if (allowed == 0)
            break;
        struct nvme_sqe batch[SQ_BATCH];
        int got = sq_fetch(d, sq, tail, batch, allowed < SQ_BATCH ? allowed : SQ_BATCH);
        if (got == -ENOTCONN) {
            wait_for_memory(d);
            break;
        }
        if (got < 0) {
            nvme_ctrl_fatal(d, "a submission queue entry is not in mapped guest memory");
            break;
        }
        d->memory_wait_logged = false;
        for (int i = 0; i < got && sq->valid; i++) {
            const struct nvme_sqe *cmd = &batch[i];
            if (qid != 0 && !file_room(d, cmd)) {
                blocked = true; /* fetched again when there is room */
                break;
            }
            sq->head = (sq->head + 1) % sq->size;
            struct nvme_result res = {0};
            if (qid == 0)
                nvme_admin_cmd(d, cmd, &res);
            else
                nvme_io_cmd(d, qid, cmd, &res);
            if (!res.deferred)
                nvme_post(d, qid, cmd->cid, &res);
            n++;
            if (d->csts & NVME_CSTS_CFS)
                return n;
        }
    }
    return n;
}

static bool running(const struct nvme_dev *d)
{
    return (d->csts & NVME_CSTS_RDY) && !(d->csts & NVME_CSTS_CFS) && !d->quiesced;
}

int nvme_poll(void *opaque)
{
    struct nvme_dev *d = opaque;
    int work = 0;

    if (!running(d))
        return 0; /* asleep for good until enable, reset or unquiesce kicks */
    work += (int)nvme_file_reap(d);
    /* Shadow pages unmapped (no client yet): no doorbell is seen this round. */
    bool doorbells = nvme_shadow_round_begin(d) == 0;
    if (doorbells)
        cq_update_heads(d);
    if (doorbells && d->sq[0].valid)
        work += sq_run(d, 0);
    /* The I/O queues take turns going first: when the backing file's
     * in-flight limit is what holds them back, the slots freed go to each
     * in turn, not always to queue 1. */
    for (uint32_t i = 0; doorbells && i < d->nr_queues && running(d); i++) {
        uint16_t q = (uint16_t)(1 + (d->rr_first + i) % d->nr_queues);
        if (d->sq[q].valid)
            work += sq_run(d, q);
    }
    d->rr_first = (d->rr_first + 1) % d->nr_queues;
    nvme_file_commit(d);
    /* A shadow tail written as EventIdx changed is work for the next round. */
    if (nvme_shadow_round_end(d))
        work++;
    nvme_events_deliver(d);
    nvme_irq_flush(d);
    irq_maybe_lower(d);

    /* Whenever a round finds nothing a tick is pending: the poller may
     * fall asleep after any such round (the host keeps its own idle clock). */
    if (work > 0)
        d->idle_ticks = 0;
    if (work == 0 && !d->tick_armed) {
        unsigned shift = d->idle_ticks / NVME_IDLE_TICKS_PER_STEP;
        if (shift > NVME_IDLE_TICK_MAX_SHIFT)
            shift = NVME_IDLE_TICK_MAX_SHIFT;
        d->svc->timer_set(d->tick, d->svc->now_usec(d->host) + (NVME_IDLE_TICK_USEC << shift));
        d->tick_armed = true;
    }
    return work;
}

/* Asleep, look at the doorbells now and then; wake the poller only for
 * work, as a wake keeps it spinning for NVME_POLL_IDLE_USEC. */
void nvme_tick(void *opaque)
{
    struct nvme_dev *d = opaque;
    d->tick_armed = false;
    if (d->idle_ticks < UINT_MAX)
        d->idle_ticks++; /* nvme_poll() starts over when it finds work */
    if (nvme_poll(d) > 0)
        d->svc->poller_wake(d->poller);
}

void nvme_kick(struct nvme_dev *d)
{
    d->svc->poller_wake(d->poller);
}

void nvme_doorbell_write(struct nvme_dev *d, uint32_t index, uint32_t value)
{
    uint32_t qid = index / 2;
    bool is_cq = index % 2;

    if (!(d->csts & NVME_CSTS_RDY))
        return; /* no queue exists to ring */
    if (qid > d->nr_queues || !(is_cq ? d->cq[qid].valid : d->sq[qid].valid)) {
        nvme_event(d, NVME_AER_TYPE_ERROR, NVME_AER_INFO_INVALID_DB_REG, NVME_LOG_ERROR);
        return;
    }
    __atomic_store_n(&d->db[index], htole32(value), __ATOMIC_RELEASE);
    /* A CQ head written through the socket is, under QEMU, the access
     * that ends the guest's INTx handler: QEMU unmasks INTx right after
     * it. A round now lowers the line if the host has caught up, before
     * that unmask would fire it again for nothing (a storm of unhandled
     * interrupts: the handler finds nothing, touches no register, and so
     * never ends the level). */
    if (is_cq && d->irq_asserted && nvme_on_intx(d))
        (void)nvme_poll(d);
    nvme_kick(d);
}
