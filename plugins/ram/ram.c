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
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <muserd/regs.h>

#include "ram-dev.h"

void ram_doorbell_drain(struct ram_dev *d)
{
    uint64_t v;

    if (read(d->doorbell_fd, &v, sizeof(v)) == sizeof(v))
        d->doorbell_count += (uint32_t)v;
}

static void ram_doorbell_ready(void *opaque, int fd, uint32_t revents)
{
    ram_doorbell_drain(opaque);
}

static uint32_t ram_reg_read(void *dev, uint64_t offset)
{
    struct ram_dev *d = dev;
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

static void ram_reg_write(void *dev, uint64_t offset, uint32_t val)
{
    struct ram_dev *d = dev;
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
        d->dma_addr = muserd_reg64_set_half(d->dma_addr, offset != RAM_REG_DMA_ADDR, val);
        break;
    case RAM_REG_DMA_OFFSET:
    case RAM_REG_DMA_OFFSET + 4:
        d->dma_offset = muserd_reg64_set_half(d->dma_offset, offset != RAM_REG_DMA_OFFSET, val);
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

static int ram_bar_access(void *dev, uint32_t bar, uint64_t offset, void *buf, uint32_t len,
                          bool is_write)
{
    struct ram_dev *d = dev;

    switch (bar) {
    case RAM_REGS_BAR:
        return muserd_regs32_access(d, RAM_REGS_SIZE, offset, buf, len, is_write, ram_reg_read,
                                    ram_reg_write);
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

static void ram_destroy(void *dev)
{
    struct ram_dev *d = dev;

    if (d->doorbell_watch)
        d->svc->unwatch_fd(d->doorbell_watch);
    if (d->dma_poller)
        d->svc->poller_free(d->dma_poller);
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
    .destroy = ram_destroy,
    .state_save = ram_state_save,
    .state_pending = ram_state_pending,
    .state_load = ram_state_load,
    .state_load_end = ram_state_load_end,
    .state_save_begin = ram_state_save_begin,
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

/* The RAM and the doorbell of a new device; on failure the caller frees
 * what was made with ram_destroy(). */
static int ram_setup(struct ram_dev *d)
{
    int r = ram_make_memory(d);
    if (r < 0) {
        d->svc->set_error(d->host, "ram: cannot allocate %" PRIu64 " bytes of shared memory: %s",
                          d->size, strerror(-r));
        return r;
    }
    d->doorbell_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (d->doorbell_fd < 0) {
        r = -errno;
        d->svc->set_error(d->host, "ram: cannot create the doorbell eventfd: %s", strerror(-r));
        return r;
    }
    r = d->svc->watch_fd(d->host, d->doorbell_fd, EPOLLIN, ram_doorbell_ready, d,
                         &d->doorbell_watch);
    if (r < 0) {
        d->svc->set_error(d->host, "ram: cannot watch the doorbell eventfd: %s", strerror(-r));
        return r;
    }
    /* A host before pollers has a shorter services table: copy inline there. */
    if (MUSERD_HAS_SERVICE(d->svc, poller_new)) {
        r = d->svc->poller_new(d->host, ram_dma_poll, d, RAM_DMA_POLL_IDLE_USEC, &d->dma_poller);
        if (r < 0) {
            d->svc->set_error(d->host, "ram: cannot set up the DMA poller: %s", strerror(-r));
            return r;
        }
    }
    return 0;
}

/* The BARs and the doorbell, as the host is told in create(). */
static int ram_describe(struct ram_dev *d)
{
    const struct muserd_mmap_area whole = {.offset = 0, .size = d->size};
    const struct muserd_bar bars[] = {
        {.size = sizeof(struct muserd_bar),
         .index = RAM_REGS_BAR,
         .length = RAM_REGS_SIZE,
         .fd = -1},
        /* 64-bit: a 1 GiB BAR does not fit below 4 GiB on many guests. */
        {.size = sizeof(struct muserd_bar),
         .index = RAM_MEM_BAR,
         .length = d->size,
         .flags = MUSERD_BAR_MEM64 | MUSERD_BAR_PREFETCH,
         .fd = d->mem_fd,
         .nr_areas = 1,
         .areas = &whole},
        {.size = sizeof(struct muserd_bar),
         .index = RAM_MSIX_BAR,
         .length = RAM_MSIX_SIZE,
         .fd = -1},
    };
    const struct muserd_ioeventfd doorbell = {
        .size = sizeof(doorbell),
        .bar = RAM_REGS_BAR,
        .offset = RAM_REG_DOORBELL,
        .length = 4,
        .fd = d->doorbell_fd,
    };
    int r;

    for (size_t i = 0; i < sizeof(bars) / sizeof(bars[0]); i++) {
        r = d->svc->bar_add(d->host, &bars[i]);
        if (r < 0) {
            d->svc->set_error(d->host, "ram: the host refused BAR %u: %s", bars[i].index,
                              strerror(-r));
            return r;
        }
    }
    r = d->svc->ioeventfd_add(d->host, &doorbell);
    if (r < 0)
        d->svc->set_error(d->host, "ram: the host refused the doorbell ioeventfd: %s",
                          strerror(-r));
    return r;
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

    r = ram_setup(d);
    if (r < 0) {
        ram_destroy(d);
        return r;
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
    r = ram_describe(d);
    if (r < 0) {
        ram_destroy(d);
        return r;
    }
    *dev = d;
    return 0;
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
