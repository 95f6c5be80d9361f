/* SPDX-License-Identifier: MIT */
/*
 * A small, blocking vfio-user client: what a VMM does, for muserctl probe,
 * the tests and the benchmarks. One struct vfu_client per connection; not
 * thread-safe. Every function returns 0 (or a count) on success and a
 * negative errno on failure; a server error reply gives -(its errno).
 *
 * While waiting for a reply the client answers the server's DMA_READ and
 * DMA_WRITE commands from the memory registered with
 * vfu_client_dma_map_local() (fd-less maps), as QEMU would, using QEMU's
 * message layout (see src/vfu/wire.h).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vfu/wire.h"

struct vfu_client;

/* Connect to a device socket. Does not negotiate. */
int vfu_client_connect(const char *socket_path, struct vfu_client **ret);
/* Wrap an already-connected socket (takes ownership of fd). */
int vfu_client_new_from_fd(int fd, struct vfu_client **ret);
void vfu_client_free(struct vfu_client *c);
int vfu_client_fd(const struct vfu_client *c);

/*
 * VERSION. json: the client's capabilities JSON (NULL: send no JSON, like
 * SPDK). On success *server_json (if non-NULL) gets a malloc()ed copy of the
 * server's JSON, and the client adopts the server's max_data_xfer_size.
 */
int vfu_client_negotiate(struct vfu_client *c, const char *json, char **server_json);
/* The JSON QEMU 10.1 and 10.2 send, for tests that want to look like QEMU
 * (it proposes "migration", so a device that can migrate offers it). */
extern const char vfu_client_qemu_caps_json[];

int vfu_client_device_info(struct vfu_client *c, struct vfu_device_info *info);

/*
 * GET_REGION_INFO with room for capabilities. *info gets the fixed part;
 * areas (may be NULL) gets up to max_areas sparse-mmap areas and *nr_areas
 * their number (0 when there is no sparse capability); *fd (may be NULL)
 * gets the region fd the server sent, or -1.
 */
int vfu_client_region_info(struct vfu_client *c, uint32_t index, struct vfu_region_info *info,
                           struct vfu_sparse_mmap_area *areas, uint32_t max_areas,
                           uint32_t *nr_areas, int *fd);

/* GET_REGION_IO_FDS: up to max entries into subs, their fds into fds
 * (caller closes), returns the number of sub-regions the server has, which
 * may exceed max: only min(that, max) entries are filled. */
int vfu_client_region_io_fds(struct vfu_client *c, uint32_t index,
                             struct vfu_sub_region_ioeventfd *subs, int *fds, uint32_t max);

int vfu_client_irq_info(struct vfu_client *c, uint32_t index, struct vfu_irq_info *info);
/* SET_IRQS. fds (nr_fds of them) go as SCM_RIGHTS; bools (count bytes) for DATA_BOOL. */
int vfu_client_set_irqs(struct vfu_client *c, uint32_t index, uint32_t flags, uint32_t start,
                        uint32_t count, const int *fds, size_t nr_fds, const uint8_t *bools);

int vfu_client_region_read(struct vfu_client *c, uint32_t region, uint64_t offset, void *buf,
                           uint32_t count);
int vfu_client_region_write(struct vfu_client *c, uint32_t region, uint64_t offset, const void *buf,
                            uint32_t count);
/* A posted (No_reply) write: returns once sent. */
int vfu_client_region_write_posted(struct vfu_client *c, uint32_t region, uint64_t offset,
                                   const void *buf, uint32_t count);
/* REGION_WRITE_MULTI; returns the number of writes the server completed. */
int vfu_client_write_multi(struct vfu_client *c, const struct vfu_write_one *wrs, uint32_t n);

/* DMA_MAP with an fd the server mmaps (fd stays ours). */
int vfu_client_dma_map(struct vfu_client *c, uint64_t iova, uint64_t size, uint32_t prot, int fd,
                       uint64_t offset);
/* DMA_MAP without an fd: the server reaches [iova, iova+size) through DMA_READ/
 * DMA_WRITE messages, which this client serves from `local` (size bytes). */
int vfu_client_dma_map_local(struct vfu_client *c, uint64_t iova, uint64_t size, uint32_t prot,
                             void *local);
int vfu_client_dma_unmap(struct vfu_client *c, uint64_t iova, uint64_t size, uint32_t flags);

int vfu_client_reset(struct vfu_client *c);

/*
 * Raw access for protocol tests: send any bytes with fds; receive the next
 * reply (serving DMA commands meanwhile). *reply is malloc()ed (header
 * included); reply fds go to rfds (up to max_rfds, *nr_rfds set; caller
 * closes). Returns 0, or -EPIPE / -ECONNRESET when the server hung up.
 */
int vfu_client_send_raw(struct vfu_client *c, const void *buf, size_t len, const int *fds,
                        size_t nr_fds);
int vfu_client_recv_reply(struct vfu_client *c, struct vfu_header **reply, int *rfds,
                          size_t max_rfds, size_t *nr_rfds);
/* Build and send a command: header filled in (msg_id assigned, returned in *msg_id). */
int vfu_client_send_cmd(struct vfu_client *c, uint16_t command, uint32_t flags, const void *payload,
                        size_t len, const int *fds, size_t nr_fds, uint16_t *msg_id);
/*
 * Send a command and wait for its reply. Returns 0 with the reply payload in
 * *rbuf (malloc()ed, may be NULL when empty) and its length in *rlen, or
 * -errno from an error reply.
 */
int vfu_client_call(struct vfu_client *c, uint16_t command, const void *payload, size_t len,
                    const int *fds, size_t nr_fds, void **rbuf, size_t *rlen, int *rfds,
                    size_t max_rfds, size_t *nr_rfds);

/*
 * Migration v2 (DEVICE_FEATURE, MIG_DATA_*). vfu_client_device_feature is
 * the raw command: flags = feature index | GET / SET / PROBE, data (len
 * bytes) after the header, argsz 0 for 8 + max(len, out_len); the reply's
 * data (what follows its header, as its argsz says) goes to out (up to
 * out_len), its length to *got (may be NULL).
 */
int vfu_client_device_feature(struct vfu_client *c, uint32_t flags, uint32_t argsz,
                              const void *data, size_t len, void *out, size_t out_len, size_t *got);
/* VFU_MIGRATION_* of the device (-ENOTSUP: it cannot migrate). */
int vfu_client_migration_flags(struct vfu_client *c, uint64_t *flags);
int vfu_client_mig_get_state(struct vfu_client *c, uint32_t *state);
/* SET the state; *new_state (may be NULL) is what the reply says. */
int vfu_client_mig_set_state(struct vfu_client *c, uint32_t state, uint32_t *new_state);
/* MIG_DATA_READ of up to len bytes; *n < len: the phase has no more. */
int vfu_client_mig_read(struct vfu_client *c, void *buf, size_t len, size_t *n);
int vfu_client_mig_write(struct vfu_client *c, const void *buf, size_t len);
/* DMA_LOGGING_START over n ranges (0: everything); *chosen (may be NULL)
 * gets the page size the server picked. */
int vfu_client_dma_logging_start(struct vfu_client *c, uint64_t pgsize,
                                 const struct vfu_dma_logging_range *ranges, uint32_t n,
                                 uint64_t *chosen);
int vfu_client_dma_logging_stop(struct vfu_client *c);
/* DMA_LOGGING_REPORT of [iova, iova+len) at pgsize into bitmap (zeroed
 * first; bit i: page i); bitmap_bytes is the room the request offers. */
int vfu_client_dma_logging_report(struct vfu_client *c, uint64_t iova, uint64_t len,
                                  uint64_t pgsize, uint64_t *bitmap, size_t bitmap_bytes);

/* Server DMA commands served so far (for tests). */
uint64_t vfu_client_dma_served(const struct vfu_client *c);
