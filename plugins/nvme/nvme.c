/* SPDX-License-Identifier: MIT */
/*
 * The "nvme" device model: an NVMe 1.4 controller with one namespace, in
 * RAM or on a backing file or block device. BAR0 holds the registers
 * (trapped) and the doorbells (a page the client may map); BAR4 the MSI-X
 * table, one vector per I/O queue plus the admin queue. This file: config,
 * create, the device ops, the plugin entry.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nvme-dev.h"

#define NVME_SIZE_MAX     (1ull << 40)
#define NVME_SIZE_DEFAULT (64ull << 20)

static int nvme_bar_access(void *dev, uint32_t bar, uint64_t offset, void *buf, uint32_t len,
                           bool is_write)
{
    if (bar != 0)
        return -EINVAL;
    return nvme_bar0_access(dev, offset, buf, len, is_write);
}

static int nvme_reset(void *dev)
{
    nvme_ctrl_power_on(dev);
    return 0;
}

static int nvme_quiesce(void *dev, bool quiesced)
{
    struct nvme_dev *d = dev;

    /* A RAM command does not outlive the round that fetched it: quiet at
     * once. Commands on the backing file complete first (their completions
     * are posted; interrupts wait for the resume). */
    d->quiesced = quiesced;
    if (!quiesced) {
        d->quiesce_waiting = false;
        nvme_kick(d);
        return 0;
    }
    if (nvme_file_inflight(d) == 0)
        return 0;
    d->quiesce_waiting = true;
    return -EBUSY;
}

static void nvme_destroy(void *dev)
{
    struct nvme_dev *d = dev;

    if (d->poller)
        d->svc->poller_free(d->poller);
    if (d->tick)
        d->svc->timer_free(d->tick);
    if (d->db_map)
        munmap(d->db_map, NVME_BAR0_SIZE);
    if (d->db_fd >= 0)
        close(d->db_fd);
    nvme_backing_close(d);
    nvme_ns_close(&d->ns);
    free(d->load_head);
    free(d);
}

static const struct muserd_device_ops nvme_ops = {
    .size = sizeof(struct muserd_device_ops),
    .bar_access = nvme_bar_access,
    .reset = nvme_reset,
    .quiesce = nvme_quiesce,
    .destroy = nvme_destroy,
    .state_save = nvme_state_save,
    .state_pending = nvme_state_pending,
    .state_load = nvme_state_load,
    .state_load_end = nvme_state_load_end,
    .state_save_begin = nvme_state_save_begin,
};

/* Printable ASCII only: Identify carries it as is. */
static int config_text(struct nvme_dev *d, const char *key, char *out, size_t width,
                       const char *fallback)
{
    const char *v = fallback;
    int r = d->svc->config_string(d->host, key, &v);
    if (r < 0 && r != -ENOENT)
        return r;
    size_t n = strlen(v);
    if (n == 0 || n > width) {
        d->svc->set_error(d->host, "nvme: \"%s\" must be 1 to %zu characters, got %zu", key, width,
                          n);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x20 || v[i] > 0x7e) {
            d->svc->set_error(d->host, "nvme: \"%s\" must be printable ASCII", key);
            return -EINVAL;
        }
    memcpy(out, v, n + 1);
    return 0;
}

static int config_uint(struct nvme_dev *d, const char *key, uint64_t fallback, uint64_t *v)
{
    int r = d->svc->config_uint(d->host, key, v);
    if (r == -ENOENT) {
        *v = fallback;
        return 0;
    }
    return r;
}

/* What the namespace is made of: "backing" (with "aio") or "size". */
struct ns_config {
    uint64_t size;
    uint32_t block_size;
    bool read_only;
    const char *backing; /* NULL: RAM; the host's string, valid until destroy */
    enum nvme_aio_kind aio;
};

static int read_backing(struct nvme_dev *d, struct ns_config *ns)
{
    static const char *const kinds[] = {
        [NVME_AIO_AUTO] = "auto", [NVME_AIO_IO_URING] = "io_uring", [NVME_AIO_THREADS] = "threads"};
    const char *aio = "auto";
    uint64_t size;

    /* The host checked the types: a key is there or not (-ENOENT). */
    if (d->svc->config_string(d->host, "backing", &ns->backing) < 0)
        ns->backing = NULL;
    (void)d->svc->config_string(d->host, "aio", &aio);
    if (ns->backing && ns->backing[0] == '\0') {
        d->svc->set_error(d->host, "nvme: \"backing\" must name a file or a block device");
        return -EINVAL;
    }
    if (ns->backing && d->svc->config_uint(d->host, "size", &size) != -ENOENT) {
        d->svc->set_error(d->host, "nvme: give \"backing\" or \"size\", not both: a backing "
                                   "file's size is the namespace's");
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (!strcmp(aio, kinds[i])) {
            ns->aio = (enum nvme_aio_kind)i;
            return 0;
        }
    d->svc->set_error(d->host, "nvme: \"aio\" must be auto, io_uring or threads, got \"%s\"", aio);
    return -EINVAL;
}

static int read_config(struct nvme_dev *d, struct ns_config *ns)
{
    uint64_t bs, queues;
    int r;

    r = read_backing(d, ns);
    if (r < 0)
        return r; /* said */
    r = config_uint(d, "size", NVME_SIZE_DEFAULT, &ns->size);
    if (r >= 0)
        r = config_uint(d, "block_size", 512, &bs);
    if (r >= 0)
        r = config_uint(d, "queues", NVME_DEFAULT_QUEUES, &queues);
    if (r >= 0) {
        r = d->svc->config_bool(d->host, "read_only", &ns->read_only);
        if (r == -ENOENT) {
            ns->read_only = false;
            r = 0;
        }
    }
    if (r < 0) {
        d->svc->set_error(d->host, "nvme: cannot read the config: %s", strerror(-r));
        return r;
    }
    if (bs != 512 && bs != 4096) {
        d->svc->set_error(d->host, "nvme: \"block_size\" must be 512 or 4096, got %" PRIu64, bs);
        return -EINVAL;
    }
    if (!ns->backing &&
        (ns->size < NVME_SIZE_MIN || ns->size > NVME_SIZE_MAX || ns->size % 4096 != 0)) {
        d->svc->set_error(d->host,
                          "nvme: \"size\" must be a multiple of 4096 from %llu (1 MiB) to %llu "
                          "(1 TiB) bytes, got %" PRIu64,
                          NVME_SIZE_MIN, NVME_SIZE_MAX, ns->size);
        return -EINVAL;
    }
    if (queues < 1 || queues > NVME_MAX_QUEUES) {
        d->svc->set_error(d->host, "nvme: \"queues\" must be 1 to %u, got %" PRIu64,
                          NVME_MAX_QUEUES, queues);
        return -EINVAL;
    }
    ns->block_size = (uint32_t)bs;
    d->nr_queues = (uint32_t)queues;
    r = config_text(d, "serial", d->serial, sizeof(d->serial) - 1, "MUSERD0001");
    if (r >= 0)
        r = config_text(d, "model", d->model, sizeof(d->model) - 1, "muserd NVMe controller");
    return r;
}

/* The doorbell memfd, sealed so a client holding it cannot shrink it
 * under our mapping. Page 0 stands for the trapped registers, unused. */
static int make_doorbells(struct nvme_dev *d)
{
    d->db_fd = memfd_create("muserd-nvme-doorbells", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (d->db_fd < 0)
        return -errno;
    if (ftruncate(d->db_fd, NVME_BAR0_SIZE) < 0)
        return -errno;
    if (fcntl(d->db_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        return -errno;
    void *map = mmap(NULL, NVME_BAR0_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, d->db_fd, 0);
    if (map == MAP_FAILED)
        return -errno;
    d->db_map = map;
    d->db = (volatile uint32_t *)(d->db_map + NVME_DOORBELL_BASE);
    return 0;
}

static int setup_ns(struct nvme_dev *d, const struct ns_config *ns)
{
    if (ns->backing)
        return nvme_backing_open(d, ns->backing, ns->block_size, ns->read_only, ns->aio);
    int r = nvme_ns_open(&d->ns, ns->size, ns->block_size, ns->read_only);
    if (r < 0)
        d->svc->set_error(d->host, "nvme: cannot reserve %" PRIu64 " bytes for the namespace: %s",
                          ns->size, strerror(-r));
    return r;
}

static int setup(struct nvme_dev *d, const struct ns_config *ns)
{
    int r = setup_ns(d, ns);
    if (r < 0)
        return r;
    r = make_doorbells(d);
    if (r < 0) {
        d->svc->set_error(d->host, "nvme: cannot make the doorbell page: %s", strerror(-r));
        return r;
    }
    r = d->svc->poller_new(d->host, nvme_poll, d, NVME_POLL_IDLE_USEC, &d->poller);
    if (r >= 0)
        r = d->svc->timer_new(d->host, nvme_tick, d, &d->tick);
    if (r < 0) {
        d->svc->set_error(d->host, "nvme: cannot set up the queue poller: %s", strerror(-r));
        return r;
    }
    return 0;
}

static int describe(struct nvme_dev *d)
{
    const struct muserd_mmap_area doorbells = {NVME_DOORBELL_BASE, NVME_DOORBELL_SIZE};
    const struct muserd_bar bars[] = {
        {.size = sizeof(struct muserd_bar),
         .index = 0,
         .length = NVME_BAR0_SIZE,
         .flags = MUSERD_BAR_MEM64,
         .fd = d->db_fd,
         .nr_areas = 1,
         .areas = &doorbells},
        {.size = sizeof(struct muserd_bar),
         .index = NVME_MSIX_BAR,
         .length = NVME_MSIX_SIZE,
         .fd = -1},
    };
    for (size_t i = 0; i < sizeof(bars) / sizeof(bars[0]); i++) {
        int r = d->svc->bar_add(d->host, &bars[i]);
        if (r < 0) {
            d->svc->set_error(d->host, "nvme: the host refused BAR %u: %s", bars[i].index,
                              strerror(-r));
            return r;
        }
    }
    return 0;
}

static int nvme_create(struct muserd_host *host, const struct muserd_host_services *svc,
                       struct muserd_device_desc *desc, void **dev)
{
    struct ns_config ns = {0};

    if (!MUSERD_HAS_SERVICE(svc, dma_get) || !MUSERD_HAS_SERVICE(svc, bar_add)) {
        svc->set_error(host, "nvme: the host lacks ABI 2 services (dma_get, bar_add)");
        return -ENOTSUP;
    }
    struct nvme_dev *d = calloc(1, sizeof(*d));
    if (!d) {
        svc->set_error(host, "nvme: out of memory");
        return -ENOMEM;
    }
    d->host = host;
    d->svc = svc;
    d->db_fd = -1;
    d->ns.fd = -1;
    int r = read_config(d, &ns);
    if (r >= 0)
        r = setup(d, &ns);
    if (r >= 0)
        r = describe(d);
    if (r < 0) {
        nvme_destroy(d);
        return r;
    }
    nvme_ctrl_power_on(d);

    desc->ids = (struct muserd_pci_ids){
        .vendor_id = NVME_PCI_VENDOR_ID,
        .device_id = NVME_PCI_DEVICE_ID,
        .subsystem_vendor_id = NVME_PCI_VENDOR_ID,
        .subsystem_id = NVME_PCI_DEVICE_ID,
        .revision = 1,
        .class_code = NVME_PCI_CLASS,
    };
    desc->caps = (struct muserd_pci_caps){
        .intx = true,
        .pm = true,
        .msi_vectors = NVME_MSI_VECTORS,
        .msix_vectors = (uint16_t)(d->nr_queues + 1),
        .msix_bar = NVME_MSIX_BAR,
        .msix_table_offset = NVME_MSIX_TABLE,
        .msix_pba_offset = NVME_MSIX_PBA,
        .pcie = true,
    };
    *dev = d;
    return 0;
}

static const struct muserd_config_key nvme_config_keys[] = {
    {"size", MUSERD_CONFIG_UINT,
     "RAM namespace size in bytes: a multiple of 4096, 1 MiB to 1 TiB (default 64 MiB)"},
    {"backing", MUSERD_CONFIG_STRING,
     "a file or block device to hold the namespace instead of RAM (its size is the namespace's)"},
    {"aio", MUSERD_CONFIG_STRING,
     "I/O on the backing file: auto (default: io_uring, else threads), io_uring or threads"},
    {"block_size", MUSERD_CONFIG_UINT, "logical block size: 512 (default) or 4096"},
    {"serial", MUSERD_CONFIG_STRING, "serial number, up to 20 ASCII characters"},
    {"model", MUSERD_CONFIG_STRING, "model number, up to 40 ASCII characters"},
    {"queues", MUSERD_CONFIG_UINT, "I/O queue pairs: 1 to 64 (default 4)"},
    {"read_only", MUSERD_CONFIG_BOOL, "the namespace refuses writes (default false)"},
    {NULL, 0, NULL},
};

static const struct muserd_device_type nvme_type = {
    .size = sizeof(struct muserd_device_type),
    .name = "nvme",
    .description =
        "NVMe 1.4 controller, namespace in RAM or on a file, doorbells in a mappable page",
    .config_keys = nvme_config_keys,
    .ops = &nvme_ops,
    .create = nvme_create,
};

static const struct muserd_device_type *const nvme_types[] = {&nvme_type};

static const struct muserd_plugin nvme_plugin = {
    .abi_version = MUSERD_PLUGIN_ABI_VERSION,
    .size = sizeof(struct muserd_plugin),
    .name = "nvme",
    .version = "0.1",
    .nr_types = 1,
    .types = nvme_types,
};

MUSERD_EXPORT const struct muserd_plugin *muserd_plugin_entry(void)
{
    return &nvme_plugin;
}
