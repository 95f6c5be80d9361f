/* SPDX-License-Identifier: MIT */
/*
 * The nvme device model's state, shared by its files: nvme.c (create,
 * config, ops), nvme-regs.c (BAR0 and controller enable/reset),
 * nvme-queue.c (doorbells, the poller, completions, interrupts),
 * nvme-admin.c, nvme-io.c (commands), nvme-io-decode.c (their checks),
 * nvme-dptr.c (data pointers), nvme-data.c (copies through them),
 * nvme-ns.c (a RAM namespace), nvme-backing.c (a file-backed one),
 * nvme-io-file.c (commands on it, through nvme-aio.h), nvme-shadow.c
 * (shadow doorbells) and nvme-state.c (migration).
 *
 * Threads: every function declared here runs on the device's I/O thread
 * (its poller, its timer, the device ops the host calls there); the plugin
 * starts no thread of its own, but for the thread pool of the asynchronous
 * I/O engine (nvme-aio-threads.c), whose workers see only the requests
 * handed to them. What it shares with other threads is guest memory: the
 * client's writes to the doorbell page and the shadow pages are read with
 * acquire loads (see nvme-queue.c and nvme-shadow.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <muserd/plugin.h>

#include "nvme-aio.h"
#include "nvme-dptr.h"
#include "nvme-spec.h"

#define NVME_PCI_VENDOR_ID 0x4d55 /* 'MU': muserd's demonstration vendor id */
#define NVME_PCI_DEVICE_ID 0x0010
#define NVME_PCI_CLASS     0x010802 /* mass storage, NVM, NVMe */

#define NVME_BAR0_SIZE   0x2000 /* registers page + doorbell page */
#define NVME_MSIX_BAR    4
#define NVME_MSIX_SIZE   0x2000
#define NVME_MSIX_TABLE  0x0000
#define NVME_MSIX_PBA    0x1000
#define NVME_MSI_VECTORS 1

#define NVME_MAX_QUEUES     64 /* I/O queue pairs, the "queues" bound */
#define NVME_DEFAULT_QUEUES 4
#define NVME_MAX_ENTRIES    1024 /* CAP.MQES + 1 */
#define NVME_AERL           3    /* 0's based: 4 requests held */
#define NVME_MAX_EVENTS     8
#define NVME_CAP_TO_UNITS   15 /* 7.5 s */
/* File-backed namespaces: commands in flight at once, all queues together
 * (at most 128 KiB of bounce buffer each). */
#define NVME_AIO_DEPTH 256

#define NVME_SIZE_MIN (1ull << 20)

/* Namespaces a controller may have: nsid 1 to NVME_MAX_NS (config keys
 * "size"/"backing"... for 1, "ns2_size"/"ns2_backing"... for the others). */
#define NVME_MAX_NS 4

/* A round serves at most this many commands of one SQ, so that one busy
 * queue does not starve the others (nor the loop). */
#define NVME_SQ_BUDGET 64
/* The poller spins this long after the last command before it sleeps;
 * meanwhile and asleep, a tick this often looks at the mapped doorbells
 * (a write to mapped memory wakes nothing). */
#define NVME_POLL_IDLE_USEC 2000
#define NVME_IDLE_TICK_USEC 1000
/* Idle longer, the tick slows down, doubling every NVME_IDLE_TICKS_PER_STEP
 * ticks up to NVME_IDLE_TICK_USEC << NVME_IDLE_TICK_MAX_SHIFT (32 ms, after
 * about half a second of nothing): an idle controller wakes ~30 times a
 * second, and the first command after a long pause waits up to 32 ms. */
#define NVME_IDLE_TICKS_PER_STEP 16
/* INTx raised and no CQ head moved since: the next waits this long at most. */
#define NVME_INTX_REFIRE_USEC    10000
#define NVME_IDLE_TICK_MAX_SHIFT 5

struct nvme_sq {
    bool valid;
    uint64_t addr;
    uint32_t size;
    uint32_t head;
    uint16_t cqid;
    uint32_t bad_tail; /* an invalid tail value already reported, or UINT32_MAX */
    uint32_t inflight; /* commands on a backing file not completed yet */
};

struct nvme_cq {
    bool valid;
    bool ien;
    bool phase;
    uint16_t iv;
    uint64_t addr;
    uint32_t size;
    uint32_t tail;
    uint32_t head; /* as the host last rang it */
    uint32_t nr_sqs;
    bool irq_pending; /* entries posted since the last interrupt */
    uint32_t bad_head;
    uint32_t reserved; /* entries held for commands in flight (nvme-io-file.c) */
};

/* One doorbell under Doorbell Buffer Config (nvme-shadow.c). */
struct nvme_shadow_db {
    bool live;       /* the host writes its shadow entry: that, not MMIO, is the doorbell */
    bool base_taken; /* base holds the entry as the doorbell first met the config */
    bool published;  /* the EventIdx entry holds `event` */
    uint32_t base;
    uint32_t seen;  /* the value last taken: what EventIdx tells the host */
    uint32_t event; /* what the EventIdx entry was last set to */
};

struct nvme_shadow {
    bool enabled;
    uint64_t db_addr, ei_addr; /* page aligned */
    struct nvme_shadow_db db[2 * (NVME_MAX_QUEUES + 1)];
    /* Only during a poll round (a DMA_UNMAP waits for refs): both pages taken. */
    bool held;
    bool unmapped_logged;
    struct muserd_dma_ref db_ref, ei_ref;
};

struct nvme_ns {
    bool active; /* configured: NN counts up to the last one */
    uint32_t nsid;
    /* The backing file as the kernel knows it (device and inode; a block
     * device: its number, inode 0), taken at open: a destroy must not ask
     * storage that may hang. */
    uint64_t file_dev, file_ino;
    uint64_t size;            /* bytes */
    int fd;                   /* the backing file (nvme-backing.c), or -1: RAM (mem) */
    bool direct;              /* fd is O_DIRECT */
    bool no_punch;            /* fd refused to punch a hole: zeros are written */
    bool in_memory;           /* fd is on tmpfs: read and written at once, never waits on a disk */
    bool no_nowait;           /* fd refuses RWF_NOWAIT: buffered reads always go to the engine */
    uint32_t writes_inflight; /* writes and hole punches on fd not back yet */
    uint32_t block_size;
    uint32_t lba_shift;
    uint64_t nr_blocks;
    bool read_only;
    uint8_t *mem;      /* RAM: anonymous mapping, untouched blocks cost nothing */
    uint64_t *touched; /* RAM: a bit per 4 KiB page ever written: what a save reads */
};

/* Commands on backing files (nvme-io-file.c), linked so that whoever
 * holds the list owns them: the device, or once it is destroyed the thread
 * that waits for them (and a leak checker sees them from there). */
struct file_cmd;
struct nvme_cmd_list {
    struct file_cmd *head;
};

struct nvme_features {
    uint32_t arbitration;
    uint32_t power_mgmt;
    uint32_t temp_thresh;
    uint32_t volatile_wc;
    uint32_t irq_coalesce;
    uint32_t async_event;
    uint16_t nsqa, ncqa; /* 0's based, as granted */
    bool queues_set;
};

struct nvme_stats {
    uint64_t units_read, units_written; /* 512-byte units (the log reports thousands) */
    uint64_t host_reads, host_writes;
};

struct nvme_dev {
    struct muserd_host *host;
    const struct muserd_host_services *svc;

    char serial[21];
    char model[41];
    uint32_t nr_queues;             /* I/O queue pairs */
    struct nvme_ns ns[NVME_MAX_NS]; /* nsid n is ns[n - 1] */
    uint32_t nn;                    /* the highest active nsid */

    int db_fd;             /* memfd: page 0 unused, page 1 the doorbells */
    uint8_t *db_map;       /* both pages */
    volatile uint32_t *db; /* the doorbell page */

    struct muserd_poller *poller;
    struct muserd_timer *tick;
    bool tick_armed;
    unsigned idle_ticks; /* ticks in a row that found no work */
    bool quiesced;
    bool quiesce_waiting; /* answered -EBUSY: quiesce_done when nothing is in flight */

    /* File-backed namespaces (nvme-backing.c, nvme-io-file.c): one engine
     * for all of them, made with the first. */
    struct nvme_aio *aio;
    struct nvme_cmd_list cmds;
    struct muserd_watch *aio_watch;
    uint8_t *zeros;             /* for files that cannot punch holes */
    bool shutdown_waiting;      /* CC.SHN: the flushes go once nothing is in flight */
    uint32_t shutdown_flushing; /* of them, not back yet */
    bool irq_asserted;          /* raised since every CQ was last caught up (INTx) */
    bool intx_fired;            /* INTx raised, no CQ head moved since (nvme_irq_flush) */
    uint64_t intx_fired_usec;
    bool fatal_logged;
    bool memory_wait_logged; /* "commands wait for guest memory" said */
    uint32_t rr_first;       /* the I/O queue (less 1) a poll round serves first */

    /* Registers. */
    uint32_t cc, csts, aqa, intms;
    uint64_t asq, acq;

    struct nvme_sq sq[NVME_MAX_QUEUES + 1];
    /* Bumped when SQ y goes (delete, reset): what comes back of a command
     * of an older generation is dropped. Survives resets. */
    uint32_t sq_gen[NVME_MAX_QUEUES + 1];
    struct nvme_cq cq[NVME_MAX_QUEUES + 1];
    struct nvme_features feat;
    struct nvme_stats stats;
    struct nvme_shadow shadow;

    /* Asynchronous events: requests held, events waiting for one. */
    uint16_t aer_cids[NVME_AERL + 1];
    uint32_t nr_aers;
    uint32_t events[NVME_MAX_EVENTS]; /* completion dword 0 of each */
    uint32_t nr_events;
    uint32_t masked_types; /* bit per event type: reported, log not read yet */

    /* The state stream in progress (nvme-state.c). */
    bool save_head_sent;
    uint64_t save_offset;
    bool load_head_seen;
    void *load_head; /* checked, applied at the end */
    size_t load_head_len;
    uint64_t load_offset; /* where the next piece may start */
    uint64_t load_end;    /* the offset of the stream's end piece */
    bool load_ended;      /* and it came */
};

/* What a command handler gives back: status (NVME_SC_*), dword 0, and
 * whether the completion is held (an AER) and must not be posted now. */
struct nvme_result {
    uint16_t status;
    uint32_t dw0;
    bool deferred;
};

/* nvme-regs.c */
int nvme_bar0_access(struct nvme_dev *d, uint64_t offset, void *buf, uint32_t len, bool is_write);
/* Back to CC.EN 0: queues, held AERs and events dropped. */
void nvme_ctrl_reset(struct nvme_dev *d);
/* Power-on state: also the registers, features and doorbells. */
void nvme_ctrl_power_on(struct nvme_dev *d);
/* Set CSTS.CFS: the host must reset the controller. */
void nvme_ctrl_fatal(struct nvme_dev *d, const char *why);

/* nvme-queue.c */
int nvme_poll(void *opaque);
void nvme_tick(void *opaque);
void nvme_kick(struct nvme_dev *d);
/* A REGION_WRITE to doorbell `index` (SQ y tail: 2y, CQ y head: 2y + 1). */
void nvme_doorbell_write(struct nvme_dev *d, uint32_t index, uint32_t value);
/* Post a completion for a command of SQ sqid to its CQ; false if it is full. */
bool nvme_post(struct nvme_dev *d, uint16_t sqid, uint16_t cid, const struct nvme_result *res);
/* The same, but a CQ in unmapped memory is -errno, not fatal status:
 * -ENOSPC full (or gone), else what dma_get said. */
int nvme_post_unfatal(struct nvme_dev *d, uint16_t sqid, uint16_t cid,
                      const struct nvme_result *res);
void nvme_irq_flush(struct nvme_dev *d);
/* The guest has the device interrupt through INTx (irq_mode service). */
bool nvme_on_intx(const struct nvme_dev *d);
/* An asynchronous event (dw0 as an AER completion carries it). */
void nvme_event(struct nvme_dev *d, uint32_t type, uint32_t info, uint32_t log);
void nvme_event_unmask(struct nvme_dev *d, uint32_t type);
void nvme_events_deliver(struct nvme_dev *d);

/* nvme-admin.c */
void nvme_admin_cmd(struct nvme_dev *d, const struct nvme_sqe *cmd, struct nvme_result *res);

/* The active namespace nsid, or NULL. */
static inline struct nvme_ns *nvme_ns_of(struct nvme_dev *d, uint32_t nsid)
{
    if (nsid < 1 || nsid > NVME_MAX_NS || !d->ns[nsid - 1].active)
        return NULL;
    return &d->ns[nsid - 1];
}

/* nvme-io.c: an NVM command of SQ sqid. */
void nvme_io_cmd(struct nvme_dev *d, uint16_t sqid, const struct nvme_sqe *cmd,
                 struct nvme_result *res);

/* nvme-backing.c: open ns's backing file (ns->nsid set), and the engine
 * with the first (errors said with set_error); close them all once every
 * command in flight is back. */
int nvme_backing_open(struct nvme_dev *d, struct nvme_ns *ns, const char *path, uint32_t block_size,
                      bool read_only, enum nvme_aio_kind kind);
void nvme_backing_close(struct nvme_dev *d);

/* nvme-io-file.c: a checked NVM command of SQ sqid on ns's backing file;
 * res is deferred while it is in flight. */
struct nvme_io_req;
void nvme_file_cmd(struct nvme_dev *d, struct nvme_ns *ns, uint16_t sqid,
                   const struct nvme_sqe *cmd, const struct nvme_io_req *req,
                   struct nvme_result *res);
/* A Flush of every namespace (NSID FFFFFFFFh): each backing file in turn;
 * success at once when there is none. */
void nvme_file_flush_all(struct nvme_dev *d, uint16_t sqid, const struct nvme_sqe *cmd,
                         struct nvme_result *res);
/* Complete what came back; how many operations did. */
unsigned nvme_file_reap(struct nvme_dev *d);
/* Operations on the file in flight. */
uint32_t nvme_file_inflight(const struct nvme_dev *d);
/* Start what the round queued. */
void nvme_file_commit(struct nvme_dev *d);
/* SQ qid goes: its commands in flight will be dropped when they come back. */
void nvme_file_forget_sq(struct nvme_dev *d, uint16_t qid);
/* CC.SHN with backing files: once nothing is in flight, fdatasync each,
 * then CSTS.SHST says complete. Nothing for RAM. */
void nvme_file_shutdown(struct nvme_dev *d);
/* A quiesce waits for the file: done when nothing is in flight. */
void nvme_file_quiesce_check(struct nvme_dev *d);
/* The device goes: the engine and the commands in flight are handed to a
 * thread of their own that waits for them (the kernel may still write into
 * their buffers, a hung disk for long), frees them, then calls
 * release(arg), which frees what they used (the files, d->zeros). Returns
 * at once; d->aio is NULL after. */
void nvme_file_abandon(struct nvme_dev *d, void (*release)(void *arg), void *arg);
/* The same, waiting here. */
void nvme_file_drain(struct nvme_dev *d);

/* nvme-data.c: copy between the command's data buffer (len bytes through
 * its PRPs or SGL) and buf. to_guest: buf into guest memory, marked dirty
 * (bit buckets skip their part of buf). Returns an NVME_SC_* status. */
uint16_t nvme_data_copy(struct nvme_dev *d, const struct nvme_sqe *cmd, void *buf, uint64_t len,
                        bool to_guest);
/* Guest memory [iova, iova+len) in one piece, to or from buf: 0 or -errno. */
int nvme_dma_copy(struct nvme_dev *d, uint64_t iova, void *buf, uint64_t len, bool to_guest);

/* nvme-shadow.c: Doorbell Buffer Config and the shadow doorbells. */
void nvme_shadow_config(struct nvme_dev *d, const struct nvme_sqe *cmd, struct nvme_result *res);
/* Forget the config (controller reset). */
void nvme_shadow_clear(struct nvme_dev *d);
/* A queue was created: its doorbell `index` starts over. */
void nvme_shadow_queue_new(struct nvme_dev *d, uint32_t index);
/* A poll round takes the shadow pages; -errno when unmapped (the round sees no doorbell). */
int nvme_shadow_round_begin(struct nvme_dev *d);
/* Doorbell `index` as the round sees it, given the MMIO register's value. */
uint32_t nvme_shadow_doorbell(struct nvme_dev *d, uint32_t index, uint32_t mmio);
/* Publish EventIdx, put the pages back; true if an SQ tail moved meanwhile. */
bool nvme_shadow_round_end(struct nvme_dev *d);

/* nvme-ns.c */
int nvme_ns_open(struct nvme_ns *ns, uint64_t size, uint32_t block_size, bool read_only);
void nvme_ns_close(struct nvme_ns *ns);
/* [off, off+len) reads as zeros afterwards. */
void nvme_ns_zero(struct nvme_ns *ns, uint64_t off, uint64_t len);
/* [off, off+len) is about to be written. */
void nvme_ns_touch(struct nvme_ns *ns, uint64_t off, uint64_t len);
/* The first page at or after page-aligned off ever written (size: none),
 * and how many bytes (at most max) of written pages follow it without a gap. */
uint64_t nvme_ns_next_touched(const struct nvme_ns *ns, uint64_t off);
uint64_t nvme_ns_touched_run(const struct nvme_ns *ns, uint64_t off, uint64_t max);

/* nvme-state.c */
int nvme_state_save(void *dev, enum muserd_state_phase phase, void *buf, size_t len,
                    size_t *written);
int nvme_state_save_begin(void *dev);
int nvme_state_pending(void *dev, enum muserd_state_phase phase, uint64_t *bytes);
int nvme_state_load(void *dev, const void *buf, size_t len);
int nvme_state_load_end(void *dev);

/* nvme-identify.c: Identify (CNS 0-3) into the command's buffer; a status. */
uint16_t nvme_identify(struct nvme_dev *d, const struct nvme_sqe *cmd, struct nvme_result *res);
