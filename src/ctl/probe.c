/* SPDX-License-Identifier: MIT */
/*
 * Ask a vfio-user device everything a VMM asks before starting a guest:
 * VERSION with QEMU's capabilities, device info, every region and IRQ
 * index, the region IO fds, and the PCI config space.
 */
#include "ctl/probe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "util/macro.h"

DEFINE_FREEP(struct vfu_client, vfu_client_free)

/* A server that never answers (or one busy with another client: it does not
 * accept us) must not hang the probe. */
static int set_timeout(int fd, int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};

    if (timeout_ms <= 0)
        return 0;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
        return -errno;
    return 0;
}

static int fail(const struct probe *p, const char *what, int r)
{
    if (r == -EAGAIN || r == -EWOULDBLOCK) {
        fprintf(stderr, "muserctl: %s: %s: timed out (is another client, e.g. QEMU, connected?)\n",
                p->socket, what);
        return -ETIMEDOUT;
    }
    fprintf(stderr, "muserctl: %s: %s: %s\n", p->socket, what, strerror(-r));
    return r;
}

/* Errors after which the connection is of no more use: stop asking. */
static bool connection_lost(int r)
{
    return r == -EAGAIN || r == -EWOULDBLOCK || r == -ECONNRESET || r == -EPIPE || r == -EPROTO;
}

static void probe_region(struct vfu_client *c, uint32_t index, struct probe_region *reg)
{
    int fd = -1;

    reg->err = vfu_client_region_info(c, index, &reg->info, reg->areas, PROBE_MAX_AREAS,
                                      &reg->nr_areas, &fd);
    reg->has_fd = fd >= 0;
    safe_close(fd);
    if (reg->err < 0 || reg->info.size == 0) {
        reg->io_fds_err = -ENOENT;
        return;
    }

    /* Ask once with room for a few, again with room for all. */
    uint32_t max = 8;
    for (int attempt = 0; attempt < 2; attempt++) {
        _cleanup_free_ struct vfu_sub_region_ioeventfd *subs = calloc(max, sizeof(*subs));
        _cleanup_free_ int *fds = calloc(max, sizeof(int));
        if (!subs || !fds) {
            reg->io_fds_err = -ENOMEM;
            return;
        }
        int n = vfu_client_region_io_fds(c, index, subs, fds, max);
        uint32_t got = 0;
        for (uint32_t i = 0; i < max; i++)
            if (fds[i] >= 0) {
                safe_close(fds[i]);
                got++;
            }
        if (n < 0) {
            reg->io_fds_err = n;
            return;
        }
        reg->io_fds_err = 0;
        reg->nr_io_subregions = (uint32_t)n;
        reg->nr_io_fds = got;
        if ((uint32_t)n <= max || n > 65536)
            return;
        max = (uint32_t)n;
    }
}

static void probe_config(struct vfu_client *c, struct probe *p)
{
    if (VFIO_PCI_CONFIG_REGION_INDEX >= p->nr_regions) {
        p->config_err = -ENOENT;
        return;
    }
    const struct probe_region *reg = &p->regions[VFIO_PCI_CONFIG_REGION_INDEX];
    if (reg->err < 0) {
        p->config_err = reg->err;
        return;
    }
    uint64_t len = reg->info.size < PROBE_CONFIG_MAX ? reg->info.size : PROBE_CONFIG_MAX;
    if (len < 64) {
        p->config_err = -EBADMSG;
        return;
    }
    p->config_err =
        vfu_client_region_read(c, VFIO_PCI_CONFIG_REGION_INDEX, 0, p->config, (uint32_t)len);
    if (p->config_err == -EINVAL && len > 256) {
        /* A server may refuse a large read; the standard header is enough. */
        len = 256;
        p->config_err =
            vfu_client_region_read(c, VFIO_PCI_CONFIG_REGION_INDEX, 0, p->config, (uint32_t)len);
    }
    if (p->config_err >= 0)
        p->config_len = (uint32_t)len;
}

int probe_run(const char *socket_path, int timeout_ms, struct probe *p)
{
    _cleanup_(vfu_client_freep) struct vfu_client *c = NULL;
    int r;

    memset(p, 0, sizeof(*p));
    p->socket = socket_path;

    r = vfu_client_connect(socket_path, &c);
    if (r < 0) {
        fprintf(stderr, "muserctl: cannot connect to %s: %s\n", socket_path, strerror(-r));
        return r;
    }
    r = set_timeout(vfu_client_fd(c), timeout_ms);
    if (r < 0)
        return fail(p, "cannot set socket timeout", r);

    r = vfu_client_negotiate(c, vfu_client_qemu_caps_json, &p->server_json);
    if (r < 0)
        return fail(p, "version negotiation failed", r);
    r = vfu_client_device_info(c, &p->dev);
    if (r < 0)
        return fail(p, "device info failed", r);

    p->nr_regions = p->dev.num_regions < PROBE_MAX_REGIONS ? p->dev.num_regions : PROBE_MAX_REGIONS;
    for (uint32_t i = 0; i < p->nr_regions; i++) {
        probe_region(c, i, &p->regions[i]);
        if (connection_lost(p->regions[i].err))
            return fail(p, "region info failed", p->regions[i].err);
        if (connection_lost(p->regions[i].io_fds_err))
            return fail(p, "region IO fds failed", p->regions[i].io_fds_err);
    }

    p->nr_irqs = p->dev.num_irqs < VFIO_PCI_NUM_IRQS ? p->dev.num_irqs : VFIO_PCI_NUM_IRQS;
    for (uint32_t i = 0; i < p->nr_irqs; i++) {
        p->irqs[i].err = vfu_client_irq_info(c, i, &p->irqs[i].info);
        if (connection_lost(p->irqs[i].err))
            return fail(p, "IRQ info failed", p->irqs[i].err);
    }

    probe_config(c, p);
    if (connection_lost(p->config_err))
        return fail(p, "reading config space failed", p->config_err);
    return 0;
}

void probe_done(struct probe *p)
{
    free(p->server_json);
    p->server_json = NULL;
}
