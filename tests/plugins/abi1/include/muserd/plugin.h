/* SPDX-License-Identifier: MIT */
/*
 * FROZEN: the plugin ABI 1 header exactly as muserd 0.x shipped it. The test
 * plugins in tests/plugins/abi1/ build against it, so the suite proves that
 * a host loads an ABI 1 plugin built by someone who never saw ABI 2. Never edit.
 *
 * muserd plugin ABI, version 1.
 *
 * A plugin is a shared object that muserd loads with dlopen() from its plugin
 * directory. It exports one symbol, MUSERD_PLUGIN_ENTRY_SYMBOL, a function that
 * returns a const struct muserd_plugin describing the device types it provides.
 * This header (and <muserd/pci.h>) is all a plugin includes; it links nothing
 * from muserd, libsystemd or json-c. The host hands the plugin a table of
 * services (struct muserd_host_services) instead of exporting symbols.
 *
 * Compatibility rules:
 *  - Every struct that crosses the boundary starts with its own size, or is
 *    reached through one that does. Structs only grow at their end. The host
 *    never reads a member beyond the size the plugin declared, and treats a
 *    missing or NULL function pointer as "not supported".
 *  - abi_version is MUSERD_PLUGIN_ABI_VERSION at the time the plugin was built;
 *    the host refuses a plugin whose version it does not support, with a
 *    message naming the file and both versions.
 *
 * Threads: in ABI 1 every callback runs on the device's event loop thread, and
 * every service must be called from it. (A later ABI adds services safe from
 * a plugin's own I/O threads; they will be new members at the end of
 * struct muserd_host_services.)
 *
 * See muserd-plugin(7) for a walk-through.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <muserd/pci.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MUSERD_PLUGIN_ABI_VERSION  1
#define MUSERD_PLUGIN_ENTRY_SYMBOL "muserd_plugin_entry"

#if defined(__GNUC__)
#define MUSERD_EXPORT       __attribute__((visibility("default")))
#define MUSERD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MUSERD_EXPORT
#define MUSERD_PRINTF(a, b)
#endif

/* The host's handle for one device instance. Opaque. */
struct muserd_host;
/* A watched fd, a timer and a poller, owned by the plugin that created them. Opaque. */
struct muserd_watch;
struct muserd_timer;
struct muserd_poller;

enum muserd_log_level {
    MUSERD_LOG_ERR = 3,
    MUSERD_LOG_WARNING = 4,
    MUSERD_LOG_INFO = 6,
    MUSERD_LOG_DEBUG = 7,
};

/* Access rights for dma_translate(). */
#define MUSERD_DMA_READ  0x1u
#define MUSERD_DMA_WRITE 0x2u

/* Events for watch_fd(): the same bits as poll(2)/epoll(7) (EPOLLIN, EPOLLOUT). */
typedef void (*muserd_watch_fn)(void *opaque, int fd, uint32_t revents);
typedef void (*muserd_timer_fn)(void *opaque);
/* One round of a poller: > 0 it did work, 0 it found none. */
typedef int (*muserd_poll_fn)(void *opaque);
/* Completion of an asynchronous DMA access: status is 0 or a negative errno. */
typedef void (*muserd_dma_done_fn)(void *opaque, int status);

/* The types a device config value can have (see struct muserd_config_key). */
enum muserd_config_type {
    MUSERD_CONFIG_STRING = 1,
    MUSERD_CONFIG_UINT = 2, /* a JSON number >= 0 that fits uint64_t */
    MUSERD_CONFIG_BOOL = 3,
};

/*
 * Services the host provides to a device instance. Every function takes the
 * struct muserd_host * the plugin got in create(). Functions return 0 (or a
 * count) on success and a negative errno on failure unless said otherwise.
 */
struct muserd_host_services {
    uint32_t size; /* sizeof(struct muserd_host_services) of the host */
    uint32_t abi_version;

    /* Log a line, attributed to this device, at the given muserd_log_level. */
    void (*log)(struct muserd_host *host, int level, const char *fmt, ...) MUSERD_PRINTF(3, 4);

    /*
     * Only in create(): state why the config or the environment is not
     * acceptable. The text reaches the operator (muserd's log now, the D-Bus
     * error later), so write a sentence a person can act on.
     */
    void (*set_error)(struct muserd_host *host, const char *fmt, ...) MUSERD_PRINTF(2, 3);

    /*
     * Read the device's config (the JSON object the operator gave). The host
     * has already checked it against the type's config_keys: no unknown key,
     * every present value of the declared type. Return 0 and set *value when
     * the key is present, -ENOENT when it is absent. A string stays valid
     * until the device is destroyed.
     */
    int (*config_string)(struct muserd_host *host, const char *key, const char **value);
    int (*config_uint)(struct muserd_host *host, const char *key, uint64_t *value);
    int (*config_bool)(struct muserd_host *host, const char *key, bool *value);

    /*
     * Guest memory. dma_translate() gives a pointer to [iova, iova+len) when the
     * whole range lies in one mapping the client shared with an fd and that
     * mapping allows `prot` (MUSERD_DMA_READ/WRITE). It returns -ENOENT when
     * the range is not mapped, -EACCES when the mapping forbids the access,
     * -EREMOTE when the range is mapped without an fd (use dma_read/dma_write).
     * The pointer is valid until the plugin returns to the loop: a DMA_UNMAP
     * may follow.
     */
    int (*dma_translate)(struct muserd_host *host, uint64_t iova, uint64_t len, uint32_t prot,
                         void **ptr);
    /*
     * Copy between guest memory and buf. Returns 0 when done at once (memory
     * shared with an fd), 1 when the copy goes over the socket and `done` will
     * be called later from the loop (buf must stay valid until then), or a
     * negative errno (-ENOENT unmapped, -EACCES, -E2BIG over max transfer,
     * -EBUSY 64 copies already in flight over the socket: retry from a `done`
     * callback or a timer, -ENOTCONN no client). `done` is never called when
     * the return is not 1.
     */
    int (*dma_read)(struct muserd_host *host, uint64_t iova, void *buf, size_t len,
                    muserd_dma_done_fn done, void *opaque);
    int (*dma_write)(struct muserd_host *host, uint64_t iova, const void *buf, size_t len,
                     muserd_dma_done_fn done, void *opaque);

    /*
     * Raise interrupt `vector`. The host delivers it the way the guest set the
     * device up: MSI-X vector when MSI-X is enabled (held pending while masked),
     * else MSI vector, else INTx (vector ignored) unless the guest disabled
     * INTx in the command register. Returns -EINVAL for a vector the device
     * does not have.
     */
    int (*irq_raise)(struct muserd_host *host, uint32_t vector);
    /* Deassert INTx (level-triggered). No-op for MSI/MSI-X. */
    int (*irq_lower)(struct muserd_host *host);

    /* Call fn(opaque, fd, revents) from the loop when fd has `events`. */
    int (*watch_fd)(struct muserd_host *host, int fd, uint32_t events, muserd_watch_fn fn,
                    void *opaque, struct muserd_watch **ret);
    void (*unwatch_fd)(struct muserd_watch *watch);

    /* A one-shot timer on CLOCK_MONOTONIC, created disarmed. */
    int (*timer_new)(struct muserd_host *host, muserd_timer_fn fn, void *opaque,
                     struct muserd_timer **ret);
    /* Arm for an absolute CLOCK_MONOTONIC time in microseconds; 0 disarms. */
    int (*timer_set)(struct muserd_timer *timer, uint64_t usec);
    void (*timer_free)(struct muserd_timer *timer);
    /* CLOCK_MONOTONIC now, in microseconds. */
    uint64_t (*now_usec)(struct muserd_host *host);

    /*
     * Pollers: present when services->size covers poller_free (hosts
     * before them have a smaller table); check before calling. fn(opaque)
     * runs from the device's loop
     * again and again while it finds work (returns > 0); between two rounds
     * the loop serves its other sources, so the other devices on its
     * thread go on. Once fn has found nothing for idle_usec, the poller
     * sleeps and costs no CPU until poller_wake(): call it where work
     * arrives (a watch_fd callback on an ioeventfd, bar_access, a timer).
     * A new poller is awake. Loop thread only, like every service of ABI 1.
     */
    int (*poller_new)(struct muserd_host *host, muserd_poll_fn fn, void *opaque, uint64_t idle_usec,
                      struct muserd_poller **ret);
    void (*poller_wake)(struct muserd_poller *poller);
    void (*poller_free)(struct muserd_poller *poller);
};

/* One memory-mappable piece of a BAR, relative to the BAR's start. */
struct muserd_mmap_area {
    uint64_t offset;
    uint64_t size;
};

#define MUSERD_BAR_MEM64    0x1u /* 64-bit memory BAR (takes this slot and the next) */
#define MUSERD_BAR_PREFETCH 0x2u /* prefetchable memory */
#define MUSERD_BAR_IO       0x4u /* I/O space instead of memory */

#define MUSERD_MAX_MMAP_AREAS 8

/*
 * A BAR the device has. size is 0 for none, else a power of two (QEMU refuses
 * others), at least 16 bytes for memory and 4 for I/O. When fd >= 0 the client
 * may mmap the areas listed (all of the BAR when nr_areas is 0) from fd, at
 * fd_offset + area offset; the host dups fd, the plugin keeps its own.
 * Accesses outside the mmap areas (and all accesses when fd < 0) reach
 * ops->bar_access.
 */
struct muserd_bar {
    uint64_t size;
    uint32_t flags;
    int fd;
    uint64_t fd_offset;
    uint32_t nr_areas;
    struct muserd_mmap_area areas[MUSERD_MAX_MMAP_AREAS];
};

/*
 * An ioeventfd the client may register with KVM (DEVICE_GET_REGION_IO_FDS):
 * a guest write of `size` bytes (0: any size) at bar/offset (matching
 * `datamatch` when has_datamatch) signals fd instead of a REGION_WRITE. The
 * plugin watches fd itself (watch_fd); the host dups it when replying.
 */
struct muserd_ioeventfd {
    uint32_t bar;
    uint64_t offset;
    uint64_t size;
    int fd;
    bool has_datamatch;
    uint64_t datamatch;
};

#define MUSERD_MAX_IOEVENTFDS 16

/* What the device looks like. create() fills it in; the host zeroes it first
 * and sets every fd member to -1. */
struct muserd_device_desc {
    struct muserd_pci_ids ids;
    struct muserd_pci_caps caps;
    struct muserd_bar bars[6];
    uint32_t nr_ioeventfds;
    struct muserd_ioeventfd ioeventfds[MUSERD_MAX_IOEVENTFDS];
};

/*
 * A device instance's operations. `dev` is what create() returned. Any member
 * may be NULL: the host then does the default named below.
 */
struct muserd_device_ops {
    uint32_t size; /* sizeof(struct muserd_device_ops) of the plugin */

    /*
     * A guest access to BAR `bar` at `offset` of `len` bytes (1..8 for
     * trapped registers, more for bulk access), always inside the BAR. For a
     * read fill buf. Return 0 or a negative errno (the client gets it).
     * Accesses to the MSI-X table and PBA are handled by the host and never
     * arrive here. NULL: reads return zeros, writes are ignored.
     */
    int (*bar_access)(void *dev, uint32_t bar, uint64_t offset, void *buf, uint32_t len,
                      bool is_write);

    /* Device reset (client DEVICE_RESET, or FLR): back to power-on state. */
    int (*reset)(void *dev);
    /* Stop touching guest memory and raising interrupts until resumed. */
    int (*quiesce)(void *dev, bool quiesced);

    /*
     * Migration (used by a later muserd release; implement now when you can):
     * save_state fills a malloc()ed buffer the host frees; load_state
     * restores it. Return 0 or a negative errno.
     */
    int (*save_state)(void *dev, void **buf, size_t *len);
    int (*load_state)(void *dev, const void *buf, size_t len);

    /* The client is about to unmap [iova, iova+len): drop pointers into it. */
    void (*dma_unmap)(void *dev, uint64_t iova, uint64_t len);

    /* Free everything create() made. Called once, last. */
    void (*destroy)(void *dev);
};

/* A config key a device type accepts. */
struct muserd_config_key {
    const char *name;
    enum muserd_config_type type;
    const char *description; /* one line, shown by muserctl types */
};

struct muserd_device_type {
    uint32_t size;           /* sizeof(struct muserd_device_type) of the plugin */
    const char *name;        /* "timer": what operators type; [a-z0-9_-]+ */
    const char *description; /* one line */
    const struct muserd_config_key *config_keys; /* ends with a { NULL } entry */
    const struct muserd_device_ops *ops;

    /*
     * Make a device instance. Read the config with services->config_*, fill
     * *desc, set *dev, return 0. On failure call services->set_error() and
     * return a negative errno (-EINVAL for a bad config); nothing is left
     * behind. `host` and `services` stay valid until destroy().
     */
    int (*create)(struct muserd_host *host, const struct muserd_host_services *services,
                  struct muserd_device_desc *desc, void **dev);
};

struct muserd_plugin {
    uint32_t abi_version; /* MUSERD_PLUGIN_ABI_VERSION */
    uint32_t size;        /* sizeof(struct muserd_plugin) of the plugin */
    const char *name;
    const char *version;
    uint32_t nr_types;
    const struct muserd_device_type *const *types;
};

/* The one exported symbol: returns a descriptor with static storage. */
typedef const struct muserd_plugin *(*muserd_plugin_entry_fn)(void);
MUSERD_EXPORT const struct muserd_plugin *muserd_plugin_entry(void);

#ifdef __cplusplus
}
#endif
