/* SPDX-License-Identifier: MIT */
#include "device-desc.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>

#include "util/macro.h"

/* The members of a sized struct the plugin's size covers. */
#define HAS_MEMBER(p, type, member) ((p)->size >= offsetof(type, member) + sizeof((p)->member))

void device_desc_init(struct device_desc *desc)
{
    *desc = (struct device_desc){0};
    for (size_t i = 0; i < ELEMENTSOF(desc->layout.regions); i++)
        desc->layout.regions[i].fd = -1;
    for (size_t i = 0; i < ELEMENTSOF(desc->layout.io_fds); i++)
        desc->layout.io_fds[i].fd = -1;
}

void device_desc_close_fds(struct device_desc *desc)
{
    for (size_t i = 0; i < ELEMENTSOF(desc->layout.regions); i++)
        desc->layout.regions[i].fd = safe_close(desc->layout.regions[i].fd);
    for (size_t i = 0; i < ELEMENTSOF(desc->layout.io_fds); i++)
        desc->layout.io_fds[i].fd = safe_close(desc->layout.io_fds[i].fd);
}

static int dup_fd(int fd)
{
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    return copy < 0 ? -errno : copy;
}

/* What both ABIs describe a BAR with. The areas are copied, the fd dup()ed. */
struct bar_spec {
    uint32_t index;
    uint64_t length;
    uint32_t flags;
    int fd;
    uint64_t fd_offset;
    uint32_t nr_areas;
    const struct muserd_mmap_area *areas;
};

static int add_bar(struct device_desc *desc, const struct bar_spec *b, const char **why)
{
    if (b->index >= 6) {
        *why = "a BAR index must be 0 to 5";
        return -EINVAL;
    }
    if (b->length == 0) {
        *why = "a BAR must have a length";
        return -EINVAL;
    }
    if (desc->pci.bars[b->index].size != 0) {
        *why = "the same BAR was added twice";
        return -EEXIST;
    }
    if (b->nr_areas > VFU_MAX_SPARSE_AREAS) {
        *why = "a BAR lists more than 8 mmap areas";
        return -ENOSPC;
    }
    if (b->nr_areas > 0 && (b->fd < 0 || !b->areas)) {
        *why = "a BAR lists mmap areas but no fd to map";
        return -EINVAL;
    }
    for (uint32_t a = 0; a < b->nr_areas; a++)
        if (b->areas[a].size == 0 ||
            !range_within(b->areas[a].offset, b->areas[a].size, b->length)) {
            *why = "a BAR's mmap area lies outside the BAR";
            return -EINVAL;
        }

    struct vfu_region_desc *r = &desc->layout.regions[b->index];
    int fd = -1;
    if (b->fd >= 0) {
        fd = dup_fd(b->fd);
        if (fd < 0) {
            *why = "the BAR's fd cannot be duplicated";
            return fd;
        }
    }
    desc->pci.bars[b->index] = (struct pci_bar_desc){.size = b->length, .flags = b->flags};
    *r = (struct vfu_region_desc){
        .size = b->length,
        .flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
        .fd = fd,
        .fd_offset = b->fd_offset,
        .nr_areas = b->nr_areas,
    };
    for (uint32_t a = 0; a < b->nr_areas; a++)
        r->areas[a] = (struct vfu_sparse_mmap_area){b->areas[a].offset, b->areas[a].size};
    return 0;
}

int device_desc_add_bar(struct device_desc *desc, const struct muserd_bar *bar, const char **why)
{
    if (!bar || !HAS_MEMBER(bar, struct muserd_bar, areas)) {
        *why = "struct muserd_bar is too small for this ABI";
        return -EINVAL;
    }
    struct bar_spec spec = {bar->index,     bar->length,   bar->flags, bar->fd,
                            bar->fd_offset, bar->nr_areas, bar->areas};
    return add_bar(desc, &spec, why);
}

struct ioeventfd_spec {
    uint32_t bar;
    uint64_t offset;
    uint64_t length;
    int fd;
    bool datamatch;
    uint64_t value;
};

static int add_ioeventfd(struct device_desc *desc, const struct ioeventfd_spec *e, const char **why)
{
    struct vfu_device_layout *l = &desc->layout;

    if (e->bar >= 6 || e->fd < 0 ||
        !range_within(e->offset, e->length ? e->length : 1, desc->pci.bars[e->bar].size)) {
        *why = "an ioeventfd is not inside a BAR the device added before it";
        return -EINVAL;
    }
    if (l->nr_io_fds >= VFU_MAX_IO_FDS) {
        *why = "the device declares more than 16 ioeventfds";
        return -ENOSPC;
    }
    int fd = dup_fd(e->fd);
    if (fd < 0) {
        *why = "the ioeventfd cannot be duplicated";
        return fd;
    }
    l->io_fds[l->nr_io_fds++] = (struct vfu_io_fd_desc){
        .region = e->bar,
        .offset = e->offset,
        .size = e->length,
        .fd = fd,
        .flags = e->datamatch ? 1u /* KVM_IOEVENTFD_FLAG_DATAMATCH */ : 0,
        .datamatch = e->value,
    };
    return 0;
}

int device_desc_add_ioeventfd(struct device_desc *desc, const struct muserd_ioeventfd *e,
                              const char **why)
{
    if (!e || !HAS_MEMBER(e, struct muserd_ioeventfd, datamatch)) {
        *why = "struct muserd_ioeventfd is too small for this ABI";
        return -EINVAL;
    }
    if (e->flags & ~MUSERD_IOEVENTFD_DATAMATCH) {
        *why = "an ioeventfd has unknown flags";
        return -EINVAL;
    }
    struct ioeventfd_spec spec = {
        e->bar, e->offset, e->length, e->fd, e->flags & MUSERD_IOEVENTFD_DATAMATCH, e->datamatch};
    return add_ioeventfd(desc, &spec, why);
}

int device_desc_from_abi1(struct device_desc *desc, const struct abi1_device_desc *old,
                          const char **why)
{
    desc->pci.ids = old->ids;
    desc->pci.caps = old->caps;
    for (uint32_t i = 0; i < 6; i++) {
        const struct abi1_bar *b = &old->bars[i];
        if (b->size == 0)
            continue;
        if (b->nr_areas > ABI1_MAX_MMAP_AREAS) {
            *why = "a BAR lists more than 8 mmap areas";
            return -EINVAL;
        }
        struct muserd_mmap_area areas[ABI1_MAX_MMAP_AREAS];
        for (uint32_t a = 0; a < b->nr_areas; a++)
            areas[a] = (struct muserd_mmap_area){b->areas[a].offset, b->areas[a].size};
        struct bar_spec spec = {i, b->size, b->flags, b->fd, b->fd_offset, b->nr_areas, areas};
        int r = add_bar(desc, &spec, why);
        if (r < 0)
            return r;
    }
    if (old->nr_ioeventfds > ABI1_MAX_IOEVENTFDS) {
        *why = "the device declares more than 16 ioeventfds";
        return -EINVAL;
    }
    for (uint32_t i = 0; i < old->nr_ioeventfds; i++) {
        const struct abi1_ioeventfd *e = &old->ioeventfds[i];
        struct ioeventfd_spec spec = {e->bar, e->offset,        e->size,
                                      e->fd,  e->has_datamatch, e->datamatch};
        int r = add_ioeventfd(desc, &spec, why);
        if (r < 0)
            return r;
    }
    return 0;
}
