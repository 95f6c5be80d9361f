/* SPDX-License-Identifier: MIT */
/*
 * The "ram" device model: a BAR of plain memory the client can mmap, plus a
 * register page with a scratch register, a doorbell wired to an ioeventfd and
 * a small DMA engine that copies between guest memory and the RAM. It
 * exercises mmappable regions, ioeventfds, both kinds of DMA (fd-backed and
 * over the socket) and migration of bulk state. Register layout: ram-regs.h
 * and muserd-plugin(7).
 *
 * Reset clears the registers but keeps the RAM contents, as a warm reset of a
 * board keeps its DRAM: a client may have the RAM mapped across the reset, and
 * zeroing up to 1 GiB behind its back would be both slow and surprising.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <muserd/plugin.h>

#include "ram-regs.h"

/* The first try at a DMA chunk; halved while the host says it is too big. */
#define RAM_DMA_CHUNK     (64u * 1024u)
#define RAM_DMA_MIN_CHUNK 512u

struct ram_dev {
    struct muserd_host *host;
    const struct muserd_host_services *svc;

    uint64_t size;
    int mem_fd;
    uint8_t *mem;
    int doorbell_fd;
    struct muserd_watch *doorbell_watch;

    uint32_t scratch;
    uint32_t doorbell_count;

    /* DMA registers, as the guest last wrote them. */
    uint64_t dma_addr;
    uint64_t dma_offset;
    uint32_t dma_len;
    uint32_t dma_ctrl; /* TO_GUEST only: GO is an action, not state */
    uint32_t dma_status;

    /* The running transfer, latched at GO so later register writes do not bend it. */
    uint64_t xfer_addr;
    uint64_t xfer_offset;
    uint32_t xfer_len;
    uint32_t xfer_done;
    bool xfer_to_guest;
    uint32_t chunk;
    uint32_t in_flight_len; /* 0: no asynchronous chunk outstanding */
    /* Asynchronous completions of transfers abandoned by reset or load, still
     * to arrive; each one is dropped. The host completes them in order. */
    uint32_t stale_completions;
    bool irq_deferred; /* completion interrupt held back while quiesced */
    bool quiesced;
};

static void ram_raise(struct ram_dev *d)
{
    if (d->quiesced) {
        d->irq_deferred = true;
        return;
    }
    d->irq_deferred = false;
    d->svc->irq_raise(d->host, 0);
}

static void ram_dma_complete(struct ram_dev *d, int r)
{
    d->dma_status &= ~(RAM_DMA_STATUS_BUSY | RAM_DMA_STATUS_ERRNO_MASK);
    if (r == 0) {
        d->dma_status |= RAM_DMA_STATUS_DONE;
    } else {
        uint32_t err = -r > 0xff ? 0xff : (uint32_t)-r;
        d->dma_status |= RAM_DMA_STATUS_ERROR | (err << RAM_DMA_STATUS_ERRNO_SHIFT);
    }
    ram_raise(d);
}

static void ram_dma_chunk_done(void *opaque, int status);

/*
 * Move the running transfer on, chunk by chunk, until it ends or a chunk goes
 * over the socket (then ram_dma_chunk_done() calls back here).
 */
static void ram_dma_run(struct ram_dev *d)
{
    while ((d->dma_status & RAM_DMA_STATUS_BUSY) && !d->quiesced && d->in_flight_len == 0) {
        uint32_t left = d->xfer_len - d->xfer_done;
        uint32_t n = left < d->chunk ? left : d->chunk;
        uint64_t iova = d->xfer_addr + d->xfer_done;
        uint8_t *p = d->mem + d->xfer_offset + d->xfer_done;
        int r;

        if (left == 0) {
            ram_dma_complete(d, 0);
            return;
        }
        if (d->xfer_to_guest)
            r = d->svc->dma_write(d->host, iova, p, n, ram_dma_chunk_done, d);
        else
            r = d->svc->dma_read(d->host, iova, p, n, ram_dma_chunk_done, d);
        if (r == 1) {
            d->in_flight_len = n;
            return;
        }
        if (r == -E2BIG && d->chunk > RAM_DMA_MIN_CHUNK) {
            d->chunk /= 2;
            continue;
        }
        if (r < 0) {
            ram_dma_complete(d, r);
            return;
        }
        d->xfer_done += n;
    }
}

static void ram_dma_chunk_done(void *opaque, int status)
{
    struct ram_dev *d = opaque;
    uint32_t n = d->in_flight_len;

    if (d->stale_completions > 0) {
        d->stale_completions--;
        return;
    }
    if (n == 0)
        return; /* not ours to account for: nothing was outstanding */
    d->in_flight_len = 0;
    if (status == -E2BIG && d->chunk > RAM_DMA_MIN_CHUNK) {
        d->chunk /= 2;
    } else if (status < 0) {
        ram_dma_complete(d, status);
        return;
    } else {
        d->xfer_done += n;
    }
    ram_dma_run(d);
}

/* Forget the running transfer, e.g. on reset: an outstanding chunk's
 * completion will still come and must not be taken for a new transfer's. */
static void ram_dma_abandon(struct ram_dev *d)
{
    if (d->in_flight_len != 0)
        d->stale_completions++;
    d->in_flight_len = 0;
    d->dma_status &= ~RAM_DMA_STATUS_BUSY;
}

static void ram_dma_go(struct ram_dev *d)
{
    uint64_t end;

    if (d->dma_status & RAM_DMA_STATUS_BUSY)
        return;
    if (d->dma_status & (RAM_DMA_STATUS_DONE | RAM_DMA_STATUS_ERROR))
        d->svc->irq_lower(d->host);
    d->dma_status = RAM_DMA_STATUS_BUSY;
    d->xfer_addr = d->dma_addr;
    d->xfer_offset = d->dma_offset;
    d->xfer_len = d->dma_len;
    d->xfer_done = 0;
    d->xfer_to_guest = d->dma_ctrl & RAM_DMA_CTRL_TO_GUEST;
    d->chunk = RAM_DMA_CHUNK;

    /* Guest-written numbers: both ends must stay inside their spaces. */
    if (__builtin_add_overflow(d->xfer_offset, (uint64_t)d->xfer_len, &end) || end > d->size ||
        __builtin_add_overflow(d->xfer_addr, (uint64_t)d->xfer_len, &end)) {
        ram_dma_complete(d, -EINVAL);
        return;
    }
    ram_dma_run(d);
}

/* Count the rings that came through the eventfd so far. */
static void ram_doorbell_drain(struct ram_dev *d)
{
    uint64_t v;

    if (read(d->doorbell_fd, &v, sizeof(v)) == sizeof(v))
        d->doorbell_count += (uint32_t)v;
}

static void ram_doorbell_ready(void *opaque, int fd, uint32_t revents)
{
    ram_doorbell_drain(opaque);
}

static uint32_t ram_reg_read(struct ram_dev *d, uint64_t offset)
{
    switch (offset) {
    case RAM_REG_ID:
        return RAM_ID_MAGIC;
    case RAM_REG_VERSION:
        return RAM_VERSION;
    case RAM_REG_SIZE:
        return (uint32_t)d->size;
    case RAM_REG_SIZE + 4:
        return (uint32_t)(d->size >> 32);
    case RAM_REG_SCRATCH:
        return d->scratch;
    case RAM_REG_DOORBELL_COUNT:
        /* A ring written to the eventfd just before this read must show, even
         * if the loop has not run the watch yet. */
        ram_doorbell_drain(d);
        return d->doorbell_count;
    case RAM_REG_DMA_ADDR:
        return (uint32_t)d->dma_addr;
    case RAM_REG_DMA_ADDR + 4:
        return (uint32_t)(d->dma_addr >> 32);
    case RAM_REG_DMA_OFFSET:
        return (uint32_t)d->dma_offset;
    case RAM_REG_DMA_OFFSET + 4:
        return (uint32_t)(d->dma_offset >> 32);
    case RAM_REG_DMA_LEN:
        return d->dma_len;
    case RAM_REG_DMA_CTRL:
        return d->dma_ctrl;
    case RAM_REG_DMA_STATUS:
        return d->dma_status;
    default:
        return 0;
    }
}

static uint64_t set_half(uint64_t reg, bool high, uint32_t val)
{
    if (high)
        return (reg & 0xffffffffu) | ((uint64_t)val << 32);
    return (reg & ~(uint64_t)0xffffffffu) | val;
}

static void ram_reg_write(struct ram_dev *d, uint64_t offset, uint32_t val)
{
    const uint32_t w1c = RAM_DMA_STATUS_DONE | RAM_DMA_STATUS_ERROR;

    switch (offset) {
    case RAM_REG_SCRATCH:
        d->scratch = val;
        break;
    case RAM_REG_DOORBELL:
        /* The client did not (or could not) register the ioeventfd. */
        d->doorbell_count++;
        break;
    case RAM_REG_DMA_ADDR:
    case RAM_REG_DMA_ADDR + 4:
        d->dma_addr = set_half(d->dma_addr, offset != RAM_REG_DMA_ADDR, val);
        break;
    case RAM_REG_DMA_OFFSET:
    case RAM_REG_DMA_OFFSET + 4:
        d->dma_offset = set_half(d->dma_offset, offset != RAM_REG_DMA_OFFSET, val);
        break;
    case RAM_REG_DMA_LEN:
        d->dma_len = val;
        break;
    case RAM_REG_DMA_CTRL:
        d->dma_ctrl = val & RAM_DMA_CTRL_TO_GUEST;
        if (val & RAM_DMA_CTRL_GO)
            ram_dma_go(d);
        break;
    case RAM_REG_DMA_STATUS:
        if (val & d->dma_status & w1c) {
            d->dma_status &= ~(val & w1c);
            if (!(d->dma_status & RAM_DMA_STATUS_ERROR))
                d->dma_status &= ~RAM_DMA_STATUS_ERRNO_MASK;
            if (!(d->dma_status & w1c))
                d->svc->irq_lower(d->host);
        }
        break;
    default:
        break; /* read-only and reserved registers ignore writes, as hardware does */
    }
}

static int ram_regs_access(struct ram_dev *d, uint64_t offset, uint8_t *p, uint32_t len,
                           bool is_write)
{
    if ((len != 4 && len != 8) || offset % 4 != 0 || offset > RAM_REGS_SIZE - len) {
        if (!is_write)
            memset(p, 0, len);
        return 0;
    }
    for (uint32_t i = 0; i < len; i += 4) {
        uint32_t v;
        if (is_write) {
            memcpy(&v, p + i, 4);
            ram_reg_write(d, offset + i, le32toh(v));
        } else {
            v = htole32(ram_reg_read(d, offset + i));
            memcpy(p + i, &v, 4);
        }
    }
    return 0;
}

static int ram_bar_access(void *dev, uint32_t bar, uint64_t offset, void *buf, uint32_t len,
                          bool is_write)
{
    struct ram_dev *d = dev;

    switch (bar) {
    case RAM_REGS_BAR:
        return ram_regs_access(d, offset, buf, len, is_write);
    case RAM_MEM_BAR:
        /* The same bytes a client sees through its mmap of the memfd. */
        if (offset > d->size || len > d->size - offset)
            return -EINVAL;
        if (is_write)
            memcpy(d->mem + offset, buf, len);
        else
            memcpy(buf, d->mem + offset, len);
        return 0;
    default:
        return -EINVAL;
    }
}

static void ram_clear_regs(struct ram_dev *d)
{
    ram_dma_abandon(d);
    /* Rings from before the reset are not counted after it. */
    ram_doorbell_drain(d);
    d->scratch = 0;
    d->doorbell_count = 0;
    d->dma_addr = 0;
    d->dma_offset = 0;
    d->dma_len = 0;
    d->dma_ctrl = 0;
    d->dma_status = 0;
    d->xfer_addr = 0;
    d->xfer_offset = 0;
    d->xfer_len = 0;
    d->xfer_done = 0;
    d->xfer_to_guest = false;
    d->chunk = RAM_DMA_CHUNK;
    d->irq_deferred = false;
}

static int ram_reset(void *dev)
{
    struct ram_dev *d = dev;

    ram_clear_regs(d);
    d->svc->irq_lower(d->host);
    return 0;
}

static int ram_quiesce(void *dev, bool quiesced)
{
    struct ram_dev *d = dev;

    d->quiesced = quiesced;
    if (!quiesced) {
        if (d->irq_deferred)
            ram_raise(d);
        ram_dma_run(d);
    }
    return 0;
}

/* Migration stream, little-endian: this header, then the RAM contents. */
#define RAM_STATE_MAGIC   0x54534d52u /* "RMST" */
#define RAM_STATE_VERSION 1u

#define RAM_STATE_TO_GUEST     (1u << 0)
#define RAM_STATE_IRQ_DEFERRED (1u << 1)

struct ram_state {
    uint32_t magic;
    uint32_t version;
    uint32_t scratch;
    uint32_t doorbell_count;
    uint32_t dma_len;
    uint32_t dma_ctrl;
    uint32_t dma_status;
    uint32_t xfer_len;
    uint32_t xfer_done;
    uint32_t flags; /* RAM_STATE_* */
    uint64_t dma_addr;
    uint64_t dma_offset;
    uint64_t xfer_addr;
    uint64_t xfer_offset;
    uint64_t ram_size; /* must match the destination's "size" */
};
_Static_assert(sizeof(struct ram_state) == 80, "ram state layout is fixed");

static int ram_save_state(void *dev, void **buf, size_t *len)
{
    struct ram_dev *d = dev;
    struct ram_state s;
    uint8_t *out;

    out = malloc(sizeof(s) + d->size);
    if (!out)
        return -ENOMEM;
    ram_doorbell_drain(d);
    /* A chunk still on the wire is not counted in xfer_done: the destination
     * copies it again, which gives the same bytes. */
    s = (struct ram_state){
        .magic = htole32(RAM_STATE_MAGIC),
        .version = htole32(RAM_STATE_VERSION),
        .scratch = htole32(d->scratch),
        .doorbell_count = htole32(d->doorbell_count),
        .dma_len = htole32(d->dma_len),
        .dma_ctrl = htole32(d->dma_ctrl),
        .dma_status = htole32(d->dma_status),
        .xfer_len = htole32(d->xfer_len),
        .xfer_done = htole32(d->xfer_done),
        .flags = htole32((d->xfer_to_guest ? RAM_STATE_TO_GUEST : 0) |
                         (d->irq_deferred ? RAM_STATE_IRQ_DEFERRED : 0)),
        .dma_addr = htole64(d->dma_addr),
        .dma_offset = htole64(d->dma_offset),
        .xfer_addr = htole64(d->xfer_addr),
        .xfer_offset = htole64(d->xfer_offset),
        .ram_size = htole64(d->size),
    };
    memcpy(out, &s, sizeof(s));
    memcpy(out + sizeof(s), d->mem, d->size);
    *buf = out;
    *len = sizeof(s) + d->size;
    return 0;
}

static int ram_load_state(void *dev, const void *buf, size_t len)
{
    const uint32_t status_bits = RAM_DMA_STATUS_BUSY | RAM_DMA_STATUS_DONE | RAM_DMA_STATUS_ERROR |
                                 RAM_DMA_STATUS_ERRNO_MASK;
    struct ram_dev *d = dev;
    struct ram_state s;
    uint32_t status, flags, xfer_len, xfer_done;
    uint64_t xfer_offset, xfer_addr, end;

    if (!buf || len < sizeof(s))
        return -EINVAL;
    memcpy(&s, buf, sizeof(s));
    if (le32toh(s.magic) != RAM_STATE_MAGIC || le32toh(s.version) != RAM_STATE_VERSION)
        return -EINVAL;
    if (le64toh(s.ram_size) != d->size || len - sizeof(s) != d->size)
        return -EINVAL;
    status = le32toh(s.dma_status);
    flags = le32toh(s.flags);
    xfer_len = le32toh(s.xfer_len);
    xfer_done = le32toh(s.xfer_done);
    xfer_offset = le64toh(s.xfer_offset);
    xfer_addr = le64toh(s.xfer_addr);
    if ((status & ~status_bits) || (flags & ~(RAM_STATE_TO_GUEST | RAM_STATE_IRQ_DEFERRED)) ||
        (le32toh(s.dma_ctrl) & ~RAM_DMA_CTRL_TO_GUEST))
        return -EINVAL;
    /* A running transfer resumes here, so it gets the checks GO gives it. */
    if ((status & RAM_DMA_STATUS_BUSY) &&
        (xfer_done > xfer_len || __builtin_add_overflow(xfer_offset, (uint64_t)xfer_len, &end) ||
         end > d->size || __builtin_add_overflow(xfer_addr, (uint64_t)xfer_len, &end)))
        return -EINVAL;

    /* Valid: from here on nothing fails, so a bad stream changes nothing. */
    ram_dma_abandon(d);
    ram_doorbell_drain(d);
    d->scratch = le32toh(s.scratch);
    d->doorbell_count = le32toh(s.doorbell_count);
    d->dma_addr = le64toh(s.dma_addr);
    d->dma_offset = le64toh(s.dma_offset);
    d->dma_len = le32toh(s.dma_len);
    d->dma_ctrl = le32toh(s.dma_ctrl);
    d->dma_status = status;
    d->xfer_addr = xfer_addr;
    d->xfer_offset = xfer_offset;
    d->xfer_len = xfer_len;
    d->xfer_done = xfer_done;
    d->xfer_to_guest = flags & RAM_STATE_TO_GUEST;
    d->chunk = RAM_DMA_CHUNK;
    d->irq_deferred = flags & RAM_STATE_IRQ_DEFERRED;
    memcpy(d->mem, (const uint8_t *)buf + sizeof(s), d->size);
    if (!d->quiesced) {
        if (d->irq_deferred)
            ram_raise(d);
        ram_dma_run(d);
    }
    return 0;
}

static void ram_destroy(void *dev)
{
    struct ram_dev *d = dev;

    if (d->doorbell_watch)
        d->svc->unwatch_fd(d->doorbell_watch);
    if (d->doorbell_fd >= 0)
        close(d->doorbell_fd);
    if (d->mem && d->mem != MAP_FAILED)
        munmap(d->mem, d->size);
    if (d->mem_fd >= 0)
        close(d->mem_fd);
    free(d);
}

static const struct muserd_device_ops ram_ops = {
    .size = sizeof(struct muserd_device_ops),
    .bar_access = ram_bar_access,
    .reset = ram_reset,
    .quiesce = ram_quiesce,
    .save_state = ram_save_state,
    .load_state = ram_load_state,
    .destroy = ram_destroy,
};

static int ram_read_config(struct muserd_host *host, const struct muserd_host_services *svc,
                           uint64_t *size)
{
    int r;

    r = svc->config_uint(host, "size", size);
    if (r == -ENOENT) {
        *size = RAM_SIZE_DEFAULT;
        return 0;
    }
    if (r < 0) {
        svc->set_error(host, "ram: cannot read \"size\": %s", strerror(-r));
        return r;
    }
    if (*size < RAM_SIZE_MIN || *size > RAM_SIZE_MAX || (*size & (*size - 1)) != 0) {
        svc->set_error(host,
                       "ram: \"size\" must be a power of two from %llu (4 KiB) to %llu (1 GiB) "
                       "bytes, got %" PRIu64,
                       RAM_SIZE_MIN, RAM_SIZE_MAX, *size);
        return -EINVAL;
    }
    return 0;
}

/* The memfd behind BAR2, sealed so that a client holding a dup of it cannot
 * shrink it and make our own accesses to the mapping fault (SIGBUS). */
static int ram_make_memory(struct ram_dev *d)
{
    d->mem_fd = memfd_create("muserd-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (d->mem_fd < 0)
        return -errno;
    if (ftruncate(d->mem_fd, (off_t)d->size) < 0)
        return -errno;
    if (fcntl(d->mem_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        return -errno;
    d->mem = mmap(NULL, d->size, PROT_READ | PROT_WRITE, MAP_SHARED, d->mem_fd, 0);
    if (d->mem == MAP_FAILED) {
        d->mem = NULL;
        return -errno;
    }
    return 0;
}

static int ram_create(struct muserd_host *host, const struct muserd_host_services *svc,
                      struct muserd_device_desc *desc, void **dev)
{
    struct ram_dev *d;
    uint64_t size;
    int r;

    r = ram_read_config(host, svc, &size);
    if (r < 0)
        return r;

    d = calloc(1, sizeof(*d));
    if (!d) {
        svc->set_error(host, "ram: out of memory");
        return -ENOMEM;
    }
    d->host = host;
    d->svc = svc;
    d->size = size;
    d->mem_fd = -1;
    d->doorbell_fd = -1;
    d->chunk = RAM_DMA_CHUNK;

    r = ram_make_memory(d);
    if (r < 0) {
        svc->set_error(host, "ram: cannot allocate %" PRIu64 " bytes of shared memory: %s", size,
                       strerror(-r));
        goto fail;
    }
    d->doorbell_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (d->doorbell_fd < 0) {
        r = -errno;
        svc->set_error(host, "ram: cannot create the doorbell eventfd: %s", strerror(-r));
        goto fail;
    }
    r = svc->watch_fd(host, d->doorbell_fd, EPOLLIN, ram_doorbell_ready, d, &d->doorbell_watch);
    if (r < 0) {
        svc->set_error(host, "ram: cannot watch the doorbell eventfd: %s", strerror(-r));
        goto fail;
    }

    desc->ids = (struct muserd_pci_ids){
        .vendor_id = RAM_PCI_VENDOR_ID,
        .device_id = RAM_PCI_DEVICE_ID,
        .subsystem_vendor_id = RAM_PCI_VENDOR_ID,
        .subsystem_id = RAM_PCI_DEVICE_ID,
        .revision = 1,
        .class_code = RAM_PCI_CLASS,
    };
    desc->caps = (struct muserd_pci_caps){
        .intx = true,
        .pm = true,
        .msi_vectors = RAM_MSI_VECTORS,
        .msix_vectors = RAM_MSIX_VECTORS,
        .msix_bar = RAM_MSIX_BAR,
        .msix_table_offset = RAM_MSIX_TABLE,
        .msix_pba_offset = RAM_MSIX_PBA,
        .pcie = true,
    };
    desc->bars[RAM_REGS_BAR] = (struct muserd_bar){.size = RAM_REGS_SIZE, .fd = -1};
    /* 64-bit: a 1 GiB BAR does not fit below 4 GiB on many guests. */
    desc->bars[RAM_MEM_BAR] = (struct muserd_bar){
        .size = size,
        .flags = MUSERD_BAR_MEM64 | MUSERD_BAR_PREFETCH,
        .fd = d->mem_fd,
        .fd_offset = 0,
        .nr_areas = 1,
        .areas = {{.offset = 0, .size = size}},
    };
    desc->bars[RAM_MSIX_BAR] = (struct muserd_bar){.size = RAM_MSIX_SIZE, .fd = -1};
    desc->nr_ioeventfds = 1;
    desc->ioeventfds[0] = (struct muserd_ioeventfd){
        .bar = RAM_REGS_BAR,
        .offset = RAM_REG_DOORBELL,
        .size = 4,
        .fd = d->doorbell_fd,
    };
    *dev = d;
    return 0;

fail:
    ram_destroy(d);
    return r;
}

static const struct muserd_config_key ram_config_keys[] = {
    {"size", MUSERD_CONFIG_UINT,
     "RAM BAR size in bytes: a power of two from 4096 to 1073741824 (default 1048576)"},
    {NULL, 0, NULL},
};

static const struct muserd_device_type ram_type = {
    .size = sizeof(struct muserd_device_type),
    .name = "ram",
    .description = "mappable RAM BAR with a doorbell (ioeventfd) and a DMA engine",
    .config_keys = ram_config_keys,
    .ops = &ram_ops,
    .create = ram_create,
};

static const struct muserd_device_type *const ram_types[] = {&ram_type};

static const struct muserd_plugin ram_plugin = {
    .abi_version = MUSERD_PLUGIN_ABI_VERSION,
    .size = sizeof(struct muserd_plugin),
    .name = "ram",
    .version = "1.0",
    .nr_types = 1,
    .types = ram_types,
};

MUSERD_EXPORT const struct muserd_plugin *muserd_plugin_entry(void)
{
    return &ram_plugin;
}
