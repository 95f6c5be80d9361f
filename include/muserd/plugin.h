/* SPDX-License-Identifier: MIT */
/*
 * muserd plugin ABI, version 2.
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
 *    reached through one that does. Structs only grow at their end; there are
 *    no fixed arrays (a BAR's mmap areas come as a pointer and a count). The
 *    host never reads a member beyond the size the plugin declared, and
 *    treats a missing or NULL function pointer as "not supported"; a plugin
 *    checks services->size (MUSERD_HAS_SERVICE) before it calls a service
 *    newer than the oldest host it supports.
 *  - abi_version is MUSERD_PLUGIN_ABI_VERSION at the time the plugin was built.
 *    muserd loads ABI 1 and ABI 2 plugins and refuses any other version with a
 *    message naming the file and both versions.
 *
 * Threads (ABI 2). Each device lives on one of muserd's I/O threads, chosen at
 * create. Every callback of a device (create, the ops, watch, timer and poller
 * callbacks) runs on that thread, one at a time: a plugin needs no lock for
 * state only its callbacks touch. A plugin may run threads of its own; the
 * services marked "any thread" below may be called from them (and from the
 * device's thread), the others only from the device's thread. destroy() must
 * stop the plugin's own threads before it returns. ABI 1 plugins run as they
 * always did: all devices of one ABI 1 plugin share one I/O thread, and every
 * service is called from it.
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

#define MUSERD_PLUGIN_ABI_VERSION  2
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
/* Defined below. */
struct muserd_bar;
struct muserd_ioeventfd;

enum muserd_log_level {
    MUSERD_LOG_ERR = 3,
    MUSERD_LOG_WARNING = 4,
    MUSERD_LOG_INFO = 6,
    MUSERD_LOG_DEBUG = 7,
};

/* How the guest has the device interrupt (irq_mode()). */
enum muserd_irq_mode {
    MUSERD_IRQ_NONE = 0, /* nothing enabled: raises are held */
    MUSERD_IRQ_INTX = 1,
    MUSERD_IRQ_MSI = 2,
    MUSERD_IRQ_MSIX = 3,
};

/* Access rights for dma_translate() and dma_get(). */
#define MUSERD_DMA_READ  0x1u
#define MUSERD_DMA_WRITE 0x2u

/*
 * A piece of guest memory a plugin holds (dma_get() / dma_put()). The plugin
 * owns the struct (on its stack, in its request); it sets size, iova, len and
 * prot, the host fills ptr and host_private.
 */
struct muserd_dma_ref {
    uint32_t size; /* sizeof(struct muserd_dma_ref) of the plugin */
    uint32_t prot; /* MUSERD_DMA_READ | MUSERD_DMA_WRITE */
    uint64_t iova;
    uint64_t len;
    void *ptr;          /* out: [iova, iova+len) in the plugin's address space */
    void *host_private; /* the host's; do not touch */
};

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

    /* Any thread: log a line, attributed to this device, at the given muserd_log_level. */
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
     * until the device is destroyed. Device thread.
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
     * may follow. Device thread; a plugin with threads of its own uses
     * dma_get()/dma_put() instead.
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
     * the return is not 1. Device thread.
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

    /* Call fn(opaque, fd, revents) from the loop when fd has `events`. Device thread. */
    int (*watch_fd)(struct muserd_host *host, int fd, uint32_t events, muserd_watch_fn fn,
                    void *opaque, struct muserd_watch **ret);
    void (*unwatch_fd)(struct muserd_watch *watch);

    /* A one-shot timer on CLOCK_MONOTONIC, created disarmed. Device thread. */
    int (*timer_new)(struct muserd_host *host, muserd_timer_fn fn, void *opaque,
                     struct muserd_timer **ret);
    /* Arm for an absolute CLOCK_MONOTONIC time in microseconds; 0 disarms. */
    int (*timer_set)(struct muserd_timer *timer, uint64_t usec);
    void (*timer_free)(struct muserd_timer *timer);
    /* Any thread: CLOCK_MONOTONIC now, in microseconds. */
    uint64_t (*now_usec)(struct muserd_host *host);

    /*
     * Pollers: fn(opaque) runs from the device's loop again and again while
     * it finds work (returns > 0); between two rounds the loop serves its
     * other sources, so the other devices on its thread go on. Once fn has
     * found nothing for idle_usec, the poller sleeps and costs no CPU until
     * poller_wake(): call it where work arrives (a watch_fd callback on an
     * ioeventfd, bar_access, a timer, another thread). A new poller is awake.
     * poller_new and poller_free: device thread; poller_wake: any thread.
     */
    int (*poller_new)(struct muserd_host *host, muserd_poll_fn fn, void *opaque, uint64_t idle_usec,
                      struct muserd_poller **ret);
    void (*poller_wake)(struct muserd_poller *poller);
    void (*poller_free)(struct muserd_poller *poller);

    /* ---- ABI 2 ---------------------------------------------------------------- */

    /*
     * Only in create(): give the device a BAR, or an ioeventfd the client may
     * register with KVM. The host copies the struct (and the areas it points
     * to) and dups its fd; the plugin keeps its own. -EINVAL for a BAR or
     * ioeventfd that does not fit (the reason is logged), -ENOSPC past the
     * host's limits (8 mmap areas per BAR, 16 ioeventfds per device).
     */
    int (*bar_add)(struct muserd_host *host, const struct muserd_bar *bar);
    int (*ioeventfd_add)(struct muserd_host *host, const struct muserd_ioeventfd *ioeventfd);

    /*
     * Guest memory, any thread. dma_get() takes [ref->iova, ref->iova +
     * ref->len) with ref->prot and sets ref->ptr; the memory stays mapped
     * until dma_put(), even if the client unmaps it meanwhile: the host
     * answers that DMA_UNMAP only after the last put (the protocol asks that
     * DMA in flight end first), so do not hold a ref for long. Errors:
     * -ENOTCONN while no guest memory is mapped at all (no client yet, as
     * right after an incoming migration, or one that has not mapped any:
     * wait for it rather than blame the guest), -ENOENT (the range is not
     * mapped), -EACCES, -EREMOTE (mapped without an fd: use
     * dma_read/dma_write).
     * dma_put() with `written` marks the whole range dirty for migration;
     * dma_mark_dirty() marks a part of guest memory the plugin wrote through
     * a pointer it holds. Every ref got must be put, also on error paths.
     */
    int (*dma_get)(struct muserd_host *host, struct muserd_dma_ref *ref);
    void (*dma_put)(struct muserd_host *host, struct muserd_dma_ref *ref, bool written);
    void (*dma_mark_dirty)(struct muserd_host *host, uint64_t iova, uint64_t len);

    /*
     * Any thread: the quiesce that ops->quiesce() answered with -EBUSY is
     * complete (status 0) or failed (a negative errno). Call it once.
     */
    void (*quiesce_done)(struct muserd_host *host, int status);

    /*
     * Device thread: the interrupt mechanism the guest has on now
     * (enum muserd_irq_mode): MSI-X, else MSI, else INTx unless disabled in
     * the command register. Newer than ABI 2's first hosts: check
     * MUSERD_HAS_SERVICE(services, irq_mode).
     */
    int (*irq_mode)(struct muserd_host *host);
};

/* One memory-mappable piece of a BAR, relative to the BAR's start. */
struct muserd_mmap_area {
    uint64_t offset;
    uint64_t size;
};

#define MUSERD_BAR_MEM64    0x1u /* 64-bit memory BAR (takes this slot and the next) */
#define MUSERD_BAR_PREFETCH 0x2u /* prefetchable memory */
#define MUSERD_BAR_IO       0x4u /* I/O space instead of memory */

/*
 * A BAR the device has (services->bar_add()). length is a power of two (QEMU
 * refuses others), at least 16 bytes for memory and 4 for I/O. When fd >= 0
 * the client may mmap the nr_areas areas listed (all of the BAR when
 * nr_areas is 0) from fd, at fd_offset + area offset. Accesses outside the
 * mmap areas (and all accesses when fd < 0) reach ops->bar_access.
 */
struct muserd_bar {
    uint32_t size;  /* sizeof(struct muserd_bar) of the plugin */
    uint32_t index; /* 0..5 */
    uint64_t length;
    uint32_t flags; /* MUSERD_BAR_* */
    int fd;
    uint64_t fd_offset;
    uint32_t nr_areas;
    const struct muserd_mmap_area *areas;
};

#define MUSERD_IOEVENTFD_DATAMATCH 0x1u /* signal only for writes of `datamatch` */

/*
 * An ioeventfd the client may register with KVM (DEVICE_GET_REGION_IO_FDS,
 * services->ioeventfd_add()): a guest write of `length` bytes (0: any size)
 * at bar/offset signals fd instead of a REGION_WRITE. The plugin watches fd
 * itself (watch_fd).
 */
struct muserd_ioeventfd {
    uint32_t size; /* sizeof(struct muserd_ioeventfd) of the plugin */
    uint32_t bar;
    uint64_t offset;
    uint64_t length;
    int fd;
    uint32_t flags; /* MUSERD_IOEVENTFD_* */
    uint64_t datamatch;
};

/* What the device looks like in config space. The host zeroes it and sets
 * size before create(); a plugin writes no member past that size. BARs and
 * ioeventfds are added with services->bar_add() and ioeventfd_add(). */
struct muserd_device_desc {
    uint32_t size; /* sizeof(struct muserd_device_desc) of the host */
    struct muserd_pci_ids ids;
    struct muserd_pci_caps caps;
};

/* Phases of a device's saved state (ops->state_save). */
enum muserd_state_phase {
    MUSERD_STATE_PRECOPY = 1, /* the device runs; save what can go early */
    MUSERD_STATE_FINAL = 2,   /* the device is quiesced; save the rest */
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
    /*
     * quiesced true: stop touching guest memory and raising interrupts until
     * called with false. Return 0 once quiet; or (ABI 2) -EBUSY when work in
     * flight must end first, then call services->quiesce_done() from any
     * thread when it has; the host waits for it before it goes on (answers
     * the client, resets, saves state). quiesced false never waits.
     */
    int (*quiesce)(void *dev, bool quiesced);

    /* ABI 1's whole-state blob, kept for ABI 1 plugins: save_state fills a
     * malloc()ed buffer the host frees; load_state restores it. ABI 2
     * plugins implement the state stream below instead. */
    int (*save_state)(void *dev, void **buf, size_t *len);
    int (*load_state)(void *dev, const void *buf, size_t len);

    /* The client is about to unmap [iova, iova+len): drop pointers into it. */
    void (*dma_unmap)(void *dev, uint64_t iova, uint64_t len);

    /* Free everything create() made, after stopping the plugin's own
     * threads. Called once, last. */
    void (*destroy)(void *dev);

    /* ---- ABI 2 ---------------------------------------------------------------- */

    /*
     * The device's own state as a stream of chunks (the host saves PCI config
     * space and MSI/MSI-X, their masks included, itself; the client's session
     * is not saved: it sets it up again).
     * state_save writes the next chunk of `phase` into buf (at most len
     * bytes) and sets *written; *written 0 ends the phase (PRECOPY: nothing
     * more to send now; FINAL: the state is complete). PRECOPY rounds run
     * while the device runs, possibly never; FINAL rounds run quiesced, and
     * must carry everything a PRECOPY chunk sent that changed since.
     * state_pending estimates the bytes the next rounds of `phase` would
     * write (for the migration's progress and the client's estimates).
     * state_load gets the chunks in order, exactly as they were saved, on a
     * stopped device (created "incoming", or put in RESUMING by its client);
     * state_load_end says the stream ended: return -EINVAL when it was
     * incomplete. The host also calls it when it gives a stream up half way:
     * forget what it brought. A device migrates only with state_save and
     * state_load (a device with no state of its own has a state_save that
     * ends each phase at once); without them Migrate is refused by name and
     * clients are offered no migration.
     */
    int (*state_save)(void *dev, enum muserd_state_phase phase, void *buf, size_t len,
                      size_t *written);
    int (*state_pending)(void *dev, enum muserd_state_phase phase, uint64_t *bytes);
    int (*state_load)(void *dev, const void *buf, size_t len);
    int (*state_load_end)(void *dev);
    /* A save begins (the first state_save round follows): start the stream
     * from its beginning, whatever an earlier save left half done. */
    int (*state_save_begin)(void *dev);
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
     * *desc, add BARs and ioeventfds, set *dev, return 0. On failure call services->set_error() and
     * return a negative errno (-EINVAL for a bad config, -EBUSY for something
     * held for a while yet: the operator may try again); nothing is left
     * behind. `host` and `services` stay valid until destroy().
     */
    int (*create)(struct muserd_host *host, const struct muserd_host_services *services,
                  struct muserd_device_desc *desc, void **dev);
};

/* Does the host's services table have `member`? Check before calling a
 * service newer than the oldest host the plugin supports. */
#define MUSERD_HAS_SERVICE(svc, member)                                                            \
    ((svc)->size >= offsetof(struct muserd_host_services, member) + sizeof((svc)->member) &&       \
     (svc)->member != NULL)

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
