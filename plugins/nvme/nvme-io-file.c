/* SPDX-License-Identifier: MIT */
/*
 * NVM commands on file-backed namespaces: each command becomes an
 * asynchronous operation on the file (nvme-aio.h) and completes when the
 * operation does, so many are in flight at once and the I/O thread never
 * waits on the disk. Data moves through a bounce buffer of the command's
 * own: a write copies from guest memory before it is submitted, a read
 * copies into guest memory when it is back (O_DIRECT needs aligned
 * buffers, and guest buffers are as the guest made them).
 *
 * A command remembers its SQ's generation. Delete I/O SQ and controller
 * reset start a new one: a command of an older generation that comes back
 * touches neither guest memory nor a queue; it is freed. Each command in
 * flight holds a slot of its CQ (cq->reserved) so that its completion
 * always has room.
 *
 * A transfer that cannot wait on a disk skips the engine: a file in memory
 * (tmpfs) is read and written at once, and so is a buffered read whose
 * pages are cached (RWF_NOWAIT); the command then completes in the round
 * that fetched it, as on a RAM namespace.
 *
 * Write Zeroes and deallocate punch holes; a file that refuses
 * (EOPNOTSUPP) gets zeros written instead, from then on.
 *
 * Threads: the device's I/O thread, as nvme-dev.h says; once the device
 * is destroyed, its commands still in flight belong to the drainer's
 * thread (orphan_done, orphans_release), which touches nothing else.
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "nvme-aio.h"
#include "nvme-dev.h"
#include "nvme-io-decode.h"

#define BUF_ALIGN  4096
#define ZERO_CHUNK (1u << 20) /* bytes of zeros one write puts down */

struct extent {
    uint64_t off, len;
};

struct file_cmd {
    struct nvme_aio_req aio; /* first: the engine hands it back */
    struct nvme_ns *ns;      /* the namespace (a Flush of all: the one flushing now) */
    bool flush_all;          /* Flush of NSID FFFFFFFFh: each file in turn */
    bool shutdown;           /* CC.SHN's fdatasync of ns's file, of no SQ */
    struct nvme_sqe sqe;
    uint16_t sqid;
    uint32_t gen;
    uint8_t *buf;
    uint64_t off, len, done; /* read, write, compare: namespace bytes, and moved */
    /* Write Zeroes and deallocate: extents zeroed one after the other. */
    struct extent one;
    struct extent *ext;
    uint32_t nr_ext, cur;
    uint64_t ext_done;          /* of ext[cur], when writing zeros */
    struct nvme_cmd_list *list; /* its owner's */
    struct file_cmd *prev, *next;
};

static void cmd_link(struct nvme_cmd_list *list, struct file_cmd *c)
{
    c->list = list;
    c->prev = NULL;
    c->next = list->head;
    if (list->head)
        list->head->prev = c;
    list->head = c;
}

static void cmd_free(struct file_cmd *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->list->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->ext != &c->one)
        free(c->ext);
    free(c->buf);
    free(c);
}

static uint16_t errno_status(const struct file_cmd *c, int64_t err)
{
    switch (-err) {
    case ENOSPC:
    case EDQUOT:
        return NVME_SC_CAPACITY_EXCEEDED;
    case EIO: /* Read and Compare read; the others write */
        return c->sqe.opcode == NVME_CMD_READ || c->sqe.opcode == NVME_CMD_COMPARE
                   ? NVME_SC_UNRECOVERED_READ
                   : NVME_SC_WRITE_FAULT;
    default:
        return NVME_SC_INTERNAL;
    }
}

static void submit(struct nvme_dev *d, struct file_cmd *c, enum nvme_aio_op op, void *buf,
                   uint64_t off, uint64_t len)
{
    c->aio = (struct nvme_aio_req){.op = op, .fd = c->ns->fd, .buf = buf, .off = off, .len = len};
    if (op == NVME_AIO_WRITE || op == NVME_AIO_PUNCH)
        c->ns->writes_inflight++; /* what a destroy must let finish (nvme-backing.c) */
    nvme_aio_submit(d->aio, &c->aio);
}

/* The next piece of zeroing: a hole, or (the file refused holes) a write
 * of up to ZERO_CHUNK zeros. False when every extent is done. */
static bool zero_next(struct nvme_dev *d, struct file_cmd *c)
{
    while (c->cur < c->nr_ext && c->ext_done == c->ext[c->cur].len) {
        c->cur++;
        c->ext_done = 0;
    }
    if (c->cur == c->nr_ext)
        return false;
    const struct extent *e = &c->ext[c->cur];
    if (!c->ns->no_punch) {
        submit(d, c, NVME_AIO_PUNCH, NULL, e->off, e->len);
        return true;
    }
    uint64_t n = e->len - c->ext_done;
    if (n > ZERO_CHUNK)
        n = ZERO_CHUNK;
    submit(d, c, NVME_AIO_WRITE, d->zeros, e->off + c->ext_done, n);
    return true;
}

/* What a step that came back returns when the command goes on. */
#define GOING (-1)

/* Some of the zeroing came back: GOING, or the command's status. */
static int zero_step(struct nvme_dev *d, struct file_cmd *c, int64_t result)
{
    if (c->aio.op == NVME_AIO_PUNCH && (result == -EOPNOTSUPP || result == -ENOSYS)) {
        if (!d->zeros && posix_memalign((void **)&d->zeros, BUF_ALIGN, ZERO_CHUNK) != 0)
            d->zeros = NULL;
        if (!d->zeros)
            return NVME_SC_INTERNAL;
        memset(d->zeros, 0, ZERO_CHUNK);
        c->ns->no_punch = true;
        d->svc->log(d->host, MUSERD_LOG_INFO,
                    "nvme: the backing file of namespace %u cannot punch holes; zeros are "
                    "written instead",
                    c->ns->nsid);
    } else if (result < 0) {
        return errno_status(c, result);
    } else if (c->aio.op == NVME_AIO_PUNCH) {
        c->ext_done = c->ext[c->cur].len;
    } else if (result == 0) {
        return NVME_SC_WRITE_FAULT; /* nothing written: the file is shorter than it was */
    } else {
        c->ext_done += (uint64_t)result;
    }
    return zero_next(d, c) ? GOING : NVME_SC_SUCCESS;
}

/* A read or write came back: GOING when the rest was submitted, or a status. */
static int transfer_step(struct nvme_dev *d, struct file_cmd *c, int64_t result)
{
    if (result < 0)
        return errno_status(c, result);
    if (result == 0) /* end of file: the file is shorter than it was */
        return c->aio.op == NVME_AIO_WRITE ? NVME_SC_WRITE_FAULT : NVME_SC_UNRECOVERED_READ;
    c->done += (uint64_t)result;
    if (c->done < c->len) {
        submit(d, c, c->aio.op, c->buf + c->done, c->off + c->done, c->len - c->done);
        return GOING;
    }
    return NVME_SC_SUCCESS;
}

/* The data is in the bounce buffer: hand it to the guest (read) or check
 * it against the guest's (compare). */
static int read_finish(struct nvme_dev *d, struct file_cmd *c)
{
    if (c->sqe.opcode == NVME_CMD_READ) {
        uint16_t sc = nvme_data_copy(d, &c->sqe, c->buf, c->len, true);
        if (sc == 0) {
            d->stats.host_reads++;
            d->stats.units_read += c->len / 512;
        }
        return sc;
    }
    void *guest = malloc(c->len);
    if (!guest)
        return NVME_SC_INTERNAL;
    uint16_t sc = nvme_data_copy(d, &c->sqe, guest, c->len, false);
    if (sc == 0 && memcmp(guest, c->buf, c->len) != 0)
        sc = NVME_SC_COMPARE_FAILED;
    free(guest);
    return sc;
}

/* The first file-backed namespace after `after` (with NULL: the first of all), or NULL. */
static struct nvme_ns *next_file_ns(struct nvme_dev *d, const struct nvme_ns *after)
{
    for (uint32_t i = after ? (uint32_t)(after - d->ns) + 1 : 0; i < NVME_MAX_NS; i++)
        if (d->ns[i].active && d->ns[i].fd >= 0)
            return &d->ns[i];
    return NULL;
}

/* A Flush came back: a Flush of every namespace goes on to the next file. */
static int flush_step(struct nvme_dev *d, struct file_cmd *c, int64_t result)
{
    if (result < 0)
        return errno_status(c, result);
    if (!c->flush_all || !(c->ns = next_file_ns(d, c->ns)))
        return NVME_SC_SUCCESS;
    submit(d, c, NVME_AIO_FLUSH, NULL, 0, 0);
    return GOING;
}

static int step(struct nvme_dev *d, struct file_cmd *c, int64_t result)
{
    int r;

    switch (c->sqe.opcode) {
    case NVME_CMD_FLUSH:
        return flush_step(d, c, result);
    case NVME_CMD_WRITE_ZEROES:
    case NVME_CMD_DSM:
        return zero_step(d, c, result);
    case NVME_CMD_WRITE:
        r = transfer_step(d, c, result);
        if (r == NVME_SC_SUCCESS) {
            d->stats.host_writes++;
            d->stats.units_written += c->len / 512;
        }
        return r;
    default: /* Read, Compare */
        r = transfer_step(d, c, result);
        return r == NVME_SC_SUCCESS ? read_finish(d, c) : r;
    }
}

static void complete(struct nvme_dev *d, struct file_cmd *c, uint16_t status)
{
    struct nvme_sq *sq = &d->sq[c->sqid];
    struct nvme_result res = {.status = status};

    sq->inflight--;
    d->cq[sq->cqid].reserved--;
    /* The client left with commands in flight (its memory went with it):
     * the completion has nowhere to go, but the controller is not broken;
     * a VMM that comes back resets it or finds the command lost, as after
     * a crash. */
    int r = nvme_post_unfatal(d, c->sqid, c->sqe.cid, &res);
    if (r < 0 && r != -ENOSPC)
        d->svc->log(d->host, MUSERD_LOG_WARNING,
                    "nvme: a command on the backing file completed after its completion queue "
                    "left mapped memory; dropped");
    cmd_free(c);
}

/* The shutdown's flushes, one per file, go when the commands before them are back. */
static void shutdown_step(struct nvme_dev *d)
{
    if (!d->shutdown_waiting || d->shutdown_flushing > 0 || nvme_aio_inflight(d->aio) > 0)
        return;
    d->shutdown_waiting = false;
    for (struct nvme_ns *ns = next_file_ns(d, NULL); ns; ns = next_file_ns(d, ns)) {
        struct file_cmd *c = calloc(1, sizeof(*c));
        if (!c) {
            /* The shutdown is not done without it: all go again once the
             * others are back (none: CSTS.SHST stays "processing"). */
            d->svc->log(d->host, MUSERD_LOG_WARNING,
                        "nvme: out of memory for the shutdown's fdatasync of namespace %u",
                        ns->nsid);
            d->shutdown_waiting = true;
            continue;
        }
        c->ns = ns;
        c->shutdown = true;
        c->ext = &c->one;
        cmd_link(&d->cmds, c);
        submit(d, c, NVME_AIO_FLUSH, NULL, 0, 0);
        d->shutdown_flushing++;
    }
}

/* A shutdown's flush came back. */
static void shutdown_done(struct nvme_dev *d, const struct file_cmd *c)
{
    d->shutdown_flushing--;
    if (c->aio.result < 0)
        d->svc->log(d->host, MUSERD_LOG_WARNING,
                    "nvme: the shutdown's fdatasync of namespace %u's backing file failed: %s",
                    c->ns->nsid, strerror((int)-c->aio.result));
    /* The last one, and still the same shutdown (no reset or new CC.SHN since:
     * a new one waits for its own flushes)? */
    if (d->shutdown_flushing == 0 && !d->shutdown_waiting &&
        (d->csts & NVME_CSTS_SHST_MASK) == NVME_CSTS_SHST_BUSY && NVME_CC_SHN(d->cc))
        d->csts = (d->csts & ~NVME_CSTS_SHST_MASK) | NVME_CSTS_SHST_DONE;
}

void nvme_file_shutdown(struct nvme_dev *d)
{
    if (!d->aio)
        return;
    d->shutdown_waiting = true;
    shutdown_step(d);
    nvme_aio_commit(d->aio);
}

static struct file_cmd *cmd_of(struct nvme_aio_req *req)
{
    return (struct file_cmd *)((char *)req - offsetof(struct file_cmd, aio));
}

static void file_done(void *opaque, struct nvme_aio_req *req)
{
    struct nvme_dev *d = opaque;
    struct file_cmd *c = cmd_of(req);

    if (req->op == NVME_AIO_WRITE || req->op == NVME_AIO_PUNCH)
        c->ns->writes_inflight--;
    if (c->shutdown) {
        shutdown_done(d, c);
        cmd_free(c);
        return;
    }
    /* Gone with a reset or a Delete I/O SQ. */
    if (c->gen != d->sq_gen[c->sqid]) {
        cmd_free(c);
        return;
    }
    int r = step(d, c, req->result);
    if (r != GOING)
        complete(d, c, (uint16_t)r);
}

/* ---- submission ------------------------------------------------------------ */

static struct file_cmd *cmd_new(struct nvme_dev *d, struct nvme_ns *ns, uint16_t sqid,
                                const struct nvme_sqe *sqe, uint64_t buf_len)
{
    struct file_cmd *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (buf_len && posix_memalign((void **)&c->buf, BUF_ALIGN, buf_len) != 0) {
        free(c);
        return NULL;
    }
    cmd_link(&d->cmds, c);
    c->ns = ns;
    c->sqe = *sqe;
    c->sqid = sqid;
    c->gen = d->sq_gen[sqid];
    c->ext = &c->one;
    return c;
}

/* The command is in flight: its completion comes from file_done. */
static void launch(struct nvme_dev *d, struct file_cmd *c, struct nvme_result *res)
{
    struct nvme_sq *sq = &d->sq[c->sqid];
    sq->inflight++;
    d->cq[sq->cqid].reserved++;
    res->deferred = true;
}

/* A transfer that cannot wait on a disk is done at once, not through the
 * engine (whose round trip is a kernel worker's wake-up, 20-30 us here): a
 * file in memory (tmpfs) is copied like a RAM namespace, and a buffered
 * read whose pages are cached is taken with RWF_NOWAIT. The bytes moved,
 * -errno, or -EAGAIN: submit it. */
static int64_t transfer_now(struct file_cmd *c, bool write)
{
    struct iovec iov = {.iov_base = c->buf, .iov_len = c->len};
    struct nvme_ns *ns = c->ns;
    ssize_t n;

    if (ns->in_memory) {
        n = write ? pwritev(ns->fd, &iov, 1, (off_t)c->off)
                  : preadv(ns->fd, &iov, 1, (off_t)c->off);
        return n < 0 && errno != EAGAIN ? -errno : n < 0 ? -EAGAIN : n;
    }
    if (write || ns->direct || ns->no_nowait)
        return -EAGAIN;
    n = preadv2(ns->fd, &iov, 1, (off_t)c->off, RWF_NOWAIT);
    if (n == (ssize_t)c->len)
        return n;
    if (n < 0 && errno == EOPNOTSUPP)
        ns->no_nowait = true; /* the file system cannot say: always submit */
    return -EAGAIN;           /* not cached (or only in part): the engine reads it all */
}

/* Read, Write, Compare: GOING when submitted, else the command's status. */
static int start_rw(struct nvme_dev *d, struct file_cmd *c, const struct nvme_io_req *req)
{
    bool write = c->sqe.opcode == NVME_CMD_WRITE;

    c->off = req->off;
    c->len = req->len;
    if (write) {
        uint16_t sc = nvme_data_copy(d, &c->sqe, c->buf, c->len, false);
        if (sc)
            return sc;
    }
    int64_t n = transfer_now(c, write);
    if (n == -EAGAIN) {
        submit(d, c, write ? NVME_AIO_WRITE : NVME_AIO_READ, c->buf, c->off, c->len);
        return GOING;
    }
    c->aio.op = write ? NVME_AIO_WRITE : NVME_AIO_READ;
    return step(d, c, n); /* a short one submits the rest */
}

/* Dataset Management: with deallocate, every range checked, then zeroed. */
static uint16_t start_dsm(struct nvme_dev *d, struct file_cmd *c, const struct nvme_io_req *req,
                          bool *nothing)
{
    struct nvme_dsm_range ranges[256];
    uint32_t nr = req->nr_ranges;

    uint16_t sc = nvme_data_copy(d, &c->sqe, ranges, nr * sizeof(ranges[0]), false);
    if (sc)
        return sc;
    *nothing = !(le32toh(c->sqe.cdw11) & NVME_DSM_AD); /* only hints */
    if (*nothing)
        return NVME_SC_SUCCESS;
    if (c->ns->read_only)
        return NVME_SC_NS_WRITE_PROTECTED;
    c->ext = calloc(nr, sizeof(*c->ext));
    if (!c->ext)
        return NVME_SC_INTERNAL;
    for (uint32_t i = 0; i < nr; i++) {
        uint64_t slba = le64toh(ranges[i].slba), nlb = le32toh(ranges[i].nlb);
        if (slba > c->ns->nr_blocks || nlb > c->ns->nr_blocks - slba)
            return NVME_SC_LBA_RANGE;
        if (nlb > 0)
            c->ext[c->nr_ext++] =
                (struct extent){slba << c->ns->lba_shift, nlb << c->ns->lba_shift};
    }
    *nothing = c->nr_ext == 0;
    if (!*nothing)
        zero_next(d, c);
    return NVME_SC_SUCCESS;
}

void nvme_file_cmd(struct nvme_dev *d, struct nvme_ns *ns, uint16_t sqid,
                   const struct nvme_sqe *cmd, const struct nvme_io_req *req,
                   struct nvme_result *res)
{
    bool write = cmd->opcode == NVME_CMD_WRITE || cmd->opcode == NVME_CMD_WRITE_ZEROES;
    bool nothing = false;
    uint16_t sc = NVME_SC_SUCCESS;

    if (write && ns->read_only) {
        res->status = NVME_SC_NS_WRITE_PROTECTED;
        return;
    }
    bool bounce = cmd->opcode == NVME_CMD_READ || cmd->opcode == NVME_CMD_WRITE ||
                  cmd->opcode == NVME_CMD_COMPARE;
    struct file_cmd *c = cmd_new(d, ns, sqid, cmd, bounce ? req->len : 0);
    if (!c) {
        res->status = NVME_SC_INTERNAL;
        return;
    }
    switch (cmd->opcode) {
    case NVME_CMD_FLUSH:
        submit(d, c, NVME_AIO_FLUSH, NULL, 0, 0);
        sc = NVME_SC_SUCCESS;
        break;
    case NVME_CMD_WRITE_ZEROES:
        c->one = (struct extent){req->off, req->len};
        c->nr_ext = 1;
        nothing = req->len == 0;
        if (!nothing)
            zero_next(d, c);
        sc = NVME_SC_SUCCESS;
        break;
    case NVME_CMD_DSM:
        sc = start_dsm(d, c, req, &nothing);
        break;
    default: { /* Read, Write, Compare */
        int r = start_rw(d, c, req);
        if (r == GOING)
            break;
        sc = (uint16_t)r;
        nothing = true; /* done at once */
        break;
    }
    }
    if (sc || nothing) {
        res->status = sc;
        cmd_free(c);
        return;
    }
    launch(d, c, res);
}

void nvme_file_flush_all(struct nvme_dev *d, uint16_t sqid, const struct nvme_sqe *cmd,
                         struct nvme_result *res)
{
    struct nvme_ns *ns = next_file_ns(d, NULL);
    res->status = NVME_SC_SUCCESS;
    if (!ns)
        return; /* RAM only: nothing volatile to write back */
    struct file_cmd *c = cmd_new(d, ns, sqid, cmd, 0);
    if (!c) {
        res->status = NVME_SC_INTERNAL;
        return;
    }
    c->flush_all = true;
    submit(d, c, NVME_AIO_FLUSH, NULL, 0, 0);
    launch(d, c, res);
}

unsigned nvme_file_reap(struct nvme_dev *d)
{
    if (!d->aio)
        return 0;
    unsigned n = nvme_aio_reap(d->aio, file_done, d);
    if (n > 0 && d->shutdown_waiting) {
        shutdown_step(d);
        nvme_aio_commit(d->aio);
    }
    return n;
}

/* A destroyed device's commands, and what to release after them. */
struct orphans {
    struct nvme_cmd_list cmds;
    void (*release)(void *arg);
    void *arg;
};

/* The device is gone: what comes back is only freed. The drainer's thread
 * (or the I/O thread, draining at once). */
static void orphan_done(void *opaque, struct nvme_aio_req *req)
{
    (void)opaque;
    cmd_free(cmd_of(req));
}

static void orphans_release(void *arg)
{
    struct orphans *o = arg;
    while (o->cmds.head) /* none by now: each was in flight, and came back */
        cmd_free(o->cmds.head);
    if (o->release)
        o->release(o->arg);
    free(o);
}

void nvme_file_drain(struct nvme_dev *d)
{
    nvme_aio_free(d->aio, orphan_done, NULL);
    d->aio = NULL;
}

void nvme_file_abandon(struct nvme_dev *d, void (*release)(void *arg), void *arg)
{
    struct orphans *o = malloc(sizeof(*o));
    if (!o) {
        nvme_file_drain(d); /* no memory to hand them over: wait here */
        if (release)
            release(arg);
        return;
    }
    *o = (struct orphans){.cmds = d->cmds, .release = release, .arg = arg};
    for (struct file_cmd *c = o->cmds.head; c; c = c->next)
        c->list = &o->cmds;
    d->cmds.head = NULL;
    nvme_aio_abandon(d->aio, orphan_done, o, orphans_release, o);
    d->aio = NULL;
}

uint32_t nvme_file_inflight(const struct nvme_dev *d)
{
    return d->aio ? nvme_aio_inflight(d->aio) : 0;
}

void nvme_file_commit(struct nvme_dev *d)
{
    if (d->aio)
        nvme_aio_commit(d->aio);
}

void nvme_file_forget_sq(struct nvme_dev *d, uint16_t qid)
{
    struct nvme_sq *sq = &d->sq[qid];
    if (sq->valid && d->cq[sq->cqid].reserved >= sq->inflight)
        d->cq[sq->cqid].reserved -= sq->inflight;
    sq->inflight = 0;
    d->sq_gen[qid]++;
}

void nvme_file_quiesce_check(struct nvme_dev *d)
{
    if (d->quiesce_waiting && nvme_file_inflight(d) == 0) {
        d->quiesce_waiting = false;
        d->svc->quiesce_done(d->host, 0);
    }
}
