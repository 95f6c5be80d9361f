/* SPDX-License-Identifier: MIT */
/*
 * The "nvme" device model: an NVMe 1.4 controller with one to NVME_MAX_NS
 * namespaces, each in RAM or on a backing file or block device. BAR0 holds the registers
 * (trapped) and the doorbells (a page the client may map); BAR4 the MSI-X
 * table, one vector per I/O queue plus the admin queue. This file: config,
 * create, the device ops, the plugin entry.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
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
    for (uint32_t i = 0; i < NVME_MAX_NS; i++)
        nvme_ns_close(&d->ns[i]);
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

/* What a namespace is made of: "backing" or "size", and its blocks. */
struct ns_config {
    bool present;
    uint64_t size;
    uint32_t block_size;
    bool read_only;
    const char *backing; /* NULL: RAM; the host's string, valid until destroy */
};

struct nvme_config {
    struct ns_config ns[NVME_MAX_NS];
    enum nvme_aio_kind aio;
};

/* The config key `what` ("size", "backing"...) of namespace nsid: the
 * top-level key for namespace 1, "ns<nsid>_<what>" for the others. */
static const char *ns_key(char *buf, size_t len, uint32_t nsid, const char *what)
{
    if (nsid == 1)
        return what;
    snprintf(buf, len, "ns%u_%s", nsid, what);
    return buf;
}

static int read_aio(struct nvme_dev *d, enum nvme_aio_kind *kind)
{
    static const char *const kinds[] = {
        [NVME_AIO_AUTO] = "auto", [NVME_AIO_IO_URING] = "io_uring", [NVME_AIO_THREADS] = "threads"};
    const char *aio = "auto";

    (void)d->svc->config_string(d->host, "aio", &aio);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (!strcmp(aio, kinds[i])) {
            *kind = (enum nvme_aio_kind)i;
            return 0;
        }
    d->svc->set_error(d->host, "nvme: \"aio\" must be auto, io_uring or threads, got \"%s\"", aio);
    return -EINVAL;
}

/* A namespace past the first exists when its size or backing is given;
 * its other keys alone are a mistake worth naming. */
static int check_absent_ns(struct nvme_dev *d, uint32_t nsid)
{
    char bs_key[32], ro_key[32], size_key[32], backing_key[32];
    const char *given = NULL;
    uint64_t u;
    bool b;

    /* nsid > 1: the keys are written into the buffers. */
    ns_key(bs_key, sizeof(bs_key), nsid, "block_size");
    ns_key(ro_key, sizeof(ro_key), nsid, "read_only");
    if (d->svc->config_uint(d->host, bs_key, &u) == 0)
        given = bs_key;
    else if (d->svc->config_bool(d->host, ro_key, &b) == 0)
        given = ro_key;
    if (!given)
        return 0;
    d->svc->set_error(d->host,
                      "nvme: \"%s\" is given but namespace %u has neither \"%s\" nor \"%s\"", given,
                      nsid, ns_key(size_key, sizeof(size_key), nsid, "size"),
                      ns_key(backing_key, sizeof(backing_key), nsid, "backing"));
    return -EINVAL;
}

/* The host checked the types: each key is there or not (-ENOENT). */
static int read_ns(struct nvme_dev *d, uint32_t nsid, struct ns_config *ns)
{
    char buf[4][32];
    const char *size_key = ns_key(buf[0], sizeof(buf[0]), nsid, "size");
    const char *backing_key = ns_key(buf[1], sizeof(buf[1]), nsid, "backing");
    const char *bs_key = ns_key(buf[2], sizeof(buf[2]), nsid, "block_size");
    const char *ro_key = ns_key(buf[3], sizeof(buf[3]), nsid, "read_only");
    uint64_t bs = 512;

    if (d->svc->config_string(d->host, backing_key, &ns->backing) < 0)
        ns->backing = NULL;
    bool sized = d->svc->config_uint(d->host, size_key, &ns->size) == 0;
    ns->present = nsid == 1 || sized || ns->backing;
    if (!ns->present)
        return check_absent_ns(d, nsid);
    if (ns->backing && ns->backing[0] == '\0') {
        d->svc->set_error(d->host, "nvme: \"%s\" must name a file or a block device", backing_key);
        return -EINVAL;
    }
    if (ns->backing && sized) {
        d->svc->set_error(d->host,
                          "nvme: give \"%s\" or \"%s\", not both: a backing file's size is the "
                          "namespace's",
                          backing_key, size_key);
        return -EINVAL;
    }
    if (!sized)
        ns->size = NVME_SIZE_DEFAULT;
    (void)d->svc->config_uint(d->host, bs_key, &bs);
    if (d->svc->config_bool(d->host, ro_key, &ns->read_only) < 0)
        ns->read_only = false;
    if (bs != 512 && bs != 4096) {
        d->svc->set_error(d->host, "nvme: \"%s\" must be 512 or 4096, got %" PRIu64, bs_key, bs);
        return -EINVAL;
    }
    ns->block_size = (uint32_t)bs;
    if (!ns->backing &&
        (ns->size < NVME_SIZE_MIN || ns->size > NVME_SIZE_MAX || ns->size % 4096 != 0)) {
        d->svc->set_error(d->host,
                          "nvme: \"%s\" must be a multiple of 4096 from %llu (1 MiB) to %llu "
                          "(1 TiB) bytes, got %" PRIu64,
                          size_key, NVME_SIZE_MIN, NVME_SIZE_MAX, ns->size);
        return -EINVAL;
    }
    return 0;
}

static int read_config(struct nvme_dev *d, struct nvme_config *cfg)
{
    uint64_t queues = NVME_DEFAULT_QUEUES;
    int r = read_aio(d, &cfg->aio);

    for (uint32_t nsid = 1; r >= 0 && nsid <= NVME_MAX_NS; nsid++)
        r = read_ns(d, nsid, &cfg->ns[nsid - 1]);
    if (r < 0)
        return r; /* said */
    (void)d->svc->config_uint(d->host, "queues", &queues);
    if (queues < 1 || queues > NVME_MAX_QUEUES) {
        d->svc->set_error(d->host, "nvme: \"queues\" must be 1 to %u, got %" PRIu64,
                          NVME_MAX_QUEUES, queues);
        return -EINVAL;
    }
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

static int setup_ns(struct nvme_dev *d, uint32_t nsid, const struct ns_config *cfg,
                    enum nvme_aio_kind aio)
{
    struct nvme_ns *ns = &d->ns[nsid - 1];
    int r;

    ns->nsid = nsid; /* what messages name it by */
    if (cfg->backing) {
        r = nvme_backing_open(d, ns, cfg->backing, cfg->block_size, cfg->read_only, aio);
    } else {
        r = nvme_ns_open(ns, cfg->size, cfg->block_size, cfg->read_only);
        if (r < 0)
            d->svc->set_error(d->host,
                              "nvme: cannot reserve %" PRIu64 " bytes for namespace %u: %s",
                              cfg->size, nsid, strerror(-r));
    }
    if (r < 0)
        return r;
    ns->active = true;
    ns->nsid = nsid;
    d->nn = nsid;
    return 0;
}

static int setup(struct nvme_dev *d, const struct nvme_config *cfg)
{
    int r = 0;

    for (uint32_t nsid = 1; r >= 0 && nsid <= NVME_MAX_NS; nsid++)
        if (cfg->ns[nsid - 1].present)
            r = setup_ns(d, nsid, &cfg->ns[nsid - 1], cfg->aio);
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
    struct nvme_config cfg = {0};

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
    for (uint32_t i = 0; i < NVME_MAX_NS; i++)
        d->ns[i].fd = -1;
    int r = read_config(d, &cfg);
    if (r >= 0)
        r = setup(d, &cfg);
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

/* Namespace n (2 to NVME_MAX_NS): present when its size or backing is. */
/* clang-format off */
#define NS_KEYS(n)                                                                                 \
    {"ns" #n "_size", MUSERD_CONFIG_UINT, "namespace " #n " in RAM, in bytes (as \"size\")"},      \
    {"ns" #n "_backing", MUSERD_CONFIG_STRING,                                                     \
     "namespace " #n " on a file or block device (as \"backing\")"},                               \
    {"ns" #n "_block_size", MUSERD_CONFIG_UINT,                                                    \
     "namespace " #n "'s logical block size: 512 (default) or 4096"},                              \
    {"ns" #n "_read_only", MUSERD_CONFIG_BOOL, "namespace " #n " refuses writes (default false)"}
/* clang-format on */

static const struct muserd_config_key nvme_config_keys[] = {
    {"size", MUSERD_CONFIG_UINT,
     "namespace 1 in RAM, in bytes: a multiple of 4096, 1 MiB to 1 TiB (default 64 MiB)"},
    {"backing", MUSERD_CONFIG_STRING,
     "a file or block device to hold namespace 1 instead of RAM (its size is the namespace's)"},
    {"aio", MUSERD_CONFIG_STRING,
     "I/O on backing files: auto (default: io_uring, else threads), io_uring or threads"},
    {"block_size", MUSERD_CONFIG_UINT, "namespace 1's logical block size: 512 (default) or 4096"},
    {"serial", MUSERD_CONFIG_STRING, "serial number, up to 20 ASCII characters"},
    {"model", MUSERD_CONFIG_STRING, "model number, up to 40 ASCII characters"},
    {"queues", MUSERD_CONFIG_UINT, "I/O queue pairs: 1 to 64 (default 4)"},
    {"read_only", MUSERD_CONFIG_BOOL, "namespace 1 refuses writes (default false)"},
    NS_KEYS(2),
    NS_KEYS(3),
    NS_KEYS(4),
    {NULL, 0, NULL},
};

static const struct muserd_device_type nvme_type = {
    .size = sizeof(struct muserd_device_type),
    .name = "nvme",
    .description =
        "NVMe 1.4 controller, 1 to 4 namespaces in RAM or on files, doorbells in a mappable page",
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
