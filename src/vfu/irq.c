/* SPDX-License-Identifier: MIT */
#include "vfu/irq.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"
#include "util/socket-util.h"

/* PCI allows at most 2048 MSI-X vectors; no index of any device needs more. */
#define IRQ_MAX_PER_INDEX 2048

struct irq_vec {
    int trigger_fd;
    int mask_fd;   /* DATA_EVENTFD|ACTION_MASK */
    int unmask_fd; /* DATA_EVENTFD|ACTION_UNMASK (VFIO's INTx resample) */
    bool masked;
    bool pending;
};

struct vfu_irqs {
    /* Guards the vectors: the device's thread changes them (SET_IRQS,
     * disconnect) while any thread may trigger one (irq-routes.c). */
    pthread_mutex_t lock;
    uint32_t counts[VFIO_PCI_NUM_IRQS];
    struct irq_vec *vecs[VFIO_PCI_NUM_IRQS];
};

static void vec_clear(struct irq_vec *v)
{
    safe_close(v->trigger_fd);
    safe_close(v->mask_fd);
    safe_close(v->unmask_fd);
    *v = (struct irq_vec){.trigger_fd = -1, .mask_fd = -1, .unmask_fd = -1};
}

int vfu_irqs_new(const uint32_t counts[VFIO_PCI_NUM_IRQS], struct vfu_irqs **ret)
{
    struct vfu_irqs *irqs = calloc(1, sizeof(*irqs));
    if (!irqs)
        return -ENOMEM;
    pthread_mutex_init(&irqs->lock, NULL);

    for (uint32_t i = 0; i < VFIO_PCI_NUM_IRQS; i++) {
        if (counts[i] > IRQ_MAX_PER_INDEX) {
            vfu_irqs_free(irqs);
            return -EINVAL;
        }
        if (counts[i] == 0)
            continue;
        irqs->vecs[i] = calloc(counts[i], sizeof(struct irq_vec));
        if (!irqs->vecs[i]) {
            vfu_irqs_free(irqs);
            return -ENOMEM;
        }
        irqs->counts[i] = counts[i];
        for (uint32_t s = 0; s < counts[i]; s++)
            irqs->vecs[i][s] = (struct irq_vec){.trigger_fd = -1, .mask_fd = -1, .unmask_fd = -1};
    }
    *ret = irqs;
    return 0;
}

void vfu_irqs_reset(struct vfu_irqs *irqs)
{
    pthread_mutex_lock(&irqs->lock);
    for (uint32_t i = 0; i < VFIO_PCI_NUM_IRQS; i++)
        for (uint32_t s = 0; s < irqs->counts[i]; s++)
            vec_clear(&irqs->vecs[i][s]);
    pthread_mutex_unlock(&irqs->lock);
}

void vfu_irqs_free(struct vfu_irqs *irqs)
{
    if (!irqs)
        return;
    vfu_irqs_reset(irqs);
    for (uint32_t i = 0; i < VFIO_PCI_NUM_IRQS; i++)
        free(irqs->vecs[i]);
    pthread_mutex_destroy(&irqs->lock);
    free(irqs);
}

uint32_t vfu_irqs_count(const struct vfu_irqs *irqs, uint32_t index)
{
    return index < VFIO_PCI_NUM_IRQS ? irqs->counts[index] : 0;
}

uint32_t vfu_irqs_info_flags(const struct vfu_irqs *irqs, uint32_t index)
{
    uint32_t flags = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE;

    if (index >= VFIO_PCI_NUM_IRQS)
        return 0;
    if (index == VFIO_PCI_INTX_IRQ_INDEX)
        flags |= VFIO_IRQ_INFO_AUTOMASKED;
    else if (index == VFIO_PCI_MSI_IRQ_INDEX)
        flags |= VFIO_IRQ_INFO_NORESIZE;
    return flags;
}

static struct irq_vec *vec_get(const struct vfu_irqs *irqs, uint32_t index, uint32_t sub)
{
    if (index >= VFIO_PCI_NUM_IRQS || sub >= irqs->counts[index])
        return NULL;
    return &irqs->vecs[index][sub];
}

static int signal_eventfd(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof(one)) == sizeof(one))
        return 0;
    /* A counter at its maximum means the client has an unread interrupt
     * already: nothing is lost. */
    return errno == EAGAIN ? 0 : -errno;
}

/* Deliver now if we can, else remember it. INTx masks itself on delivery
 * (VFIO_IRQ_INFO_AUTOMASKED) until the client unmasks it. */
static int vec_fire(struct irq_vec *v, uint32_t index)
{
    if (v->masked || v->trigger_fd < 0) {
        v->pending = true;
        return 0;
    }
    v->pending = false;
    if (index == VFIO_PCI_INTX_IRQ_INDEX)
        v->masked = true;
    return signal_eventfd(v->trigger_fd);
}

static int vec_unmask(struct irq_vec *v, uint32_t index)
{
    v->masked = false;
    return v->pending ? vec_fire(v, index) : 0;
}

static int vec_action(struct irq_vec *v, uint32_t index, uint32_t action)
{
    switch (action) {
    case VFIO_IRQ_SET_ACTION_MASK:
        v->masked = true;
        return 0;
    case VFIO_IRQ_SET_ACTION_UNMASK:
        return vec_unmask(v, index);
    default:
        return vec_fire(v, index);
    }
}

static int *vec_fd_slot(struct irq_vec *v, uint32_t action)
{
    switch (action) {
    case VFIO_IRQ_SET_ACTION_MASK:
        return &v->mask_fd;
    case VFIO_IRQ_SET_ACTION_UNMASK:
        return &v->unmask_fd;
    default:
        return &v->trigger_fd;
    }
}

/* fd < 0 de-assigns. A trigger eventfd arriving for an interrupt raised
 * while none was wired delivers it. */
static int vec_set_fd(struct irq_vec *v, uint32_t index, uint32_t action, int fd)
{
    int *slot = vec_fd_slot(v, action);
    safe_close(*slot);
    *slot = fd;
    if (action == VFIO_IRQ_SET_ACTION_TRIGGER && fd >= 0 && v->pending && !v->masked)
        return vec_fire(v, index);
    return 0;
}

static int irqs_set_locked(struct vfu_irqs *irqs, const struct vfu_irq_set_req *req,
                           struct vfu_msg *msg)
{
    const struct vfu_irq_set *set = &req->set;
    const uint32_t action = set->flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    const uint32_t data = set->flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
    uint32_t end;
    int r = 0;

    if (set->index >= VFIO_PCI_NUM_IRQS)
        return -EINVAL;
    const uint32_t max = irqs->counts[set->index];
    struct irq_vec *vecs = irqs->vecs[set->index];
    if (set->start >= max || __builtin_add_overflow(set->start, set->count, &end) || end > max)
        return -EINVAL;
    if (action != VFIO_IRQ_SET_ACTION_MASK && action != VFIO_IRQ_SET_ACTION_UNMASK &&
        action != VFIO_IRQ_SET_ACTION_TRIGGER)
        return -EINVAL;

    switch (data) {
    case VFIO_IRQ_SET_DATA_NONE:
        if (set->count == 0) {
            if (action != VFIO_IRQ_SET_ACTION_TRIGGER)
                return -EINVAL;
            for (uint32_t s = 0; s < max; s++)
                vec_clear(&vecs[s]);
            return 0;
        }
        for (uint32_t s = set->start; s < end; s++) {
            int k = vec_action(&vecs[s], set->index, action);
            r = r < 0 ? r : k;
        }
        return r;

    case VFIO_IRQ_SET_DATA_BOOL:
        if (!req->bools || set->count == 0)
            return -EINVAL;
        for (uint32_t i = 0; i < set->count; i++) {
            if (!req->bools[i])
                continue;
            int k = vec_action(&vecs[set->start + i], set->index, action);
            r = r < 0 ? r : k;
        }
        return r;

    case VFIO_IRQ_SET_DATA_EVENTFD:
        if (set->count == 0)
            return -EINVAL;
        if (msg->nr_fds == 0) {
            for (uint32_t s = set->start; s < end; s++)
                vec_set_fd(&vecs[s], set->index, action, -1);
            return 0;
        }
        if (msg->nr_fds != set->count)
            return -EINVAL;
        /* We write (trigger) and read (unmask) these on the loop: a full
         * or empty blocking fd must not stall every device. */
        for (uint32_t i = 0; i < set->count; i++)
            if (msg->fds[i] < 0 || fd_set_nonblock(msg->fds[i]) < 0)
                return -EINVAL;
        for (uint32_t i = 0; i < set->count; i++) {
            int k = vec_set_fd(&vecs[set->start + i], set->index, action, TAKE_FD(msg->fds[i]));
            r = r < 0 ? r : k;
        }
        return r;

    default:
        return -EINVAL;
    }
}

int vfu_irqs_set(struct vfu_irqs *irqs, const struct vfu_irq_set_req *req, struct vfu_msg *msg)
{
    pthread_mutex_lock(&irqs->lock);
    int r = irqs_set_locked(irqs, req, msg);
    pthread_mutex_unlock(&irqs->lock);
    return r;
}

int vfu_irqs_trigger(struct vfu_irqs *irqs, uint32_t index, uint32_t sub)
{
    struct irq_vec *v = vec_get(irqs, index, sub);
    if (!v)
        return -EINVAL;
    pthread_mutex_lock(&irqs->lock);
    int r = vec_fire(v, index);
    pthread_mutex_unlock(&irqs->lock);
    return r;
}

int vfu_irqs_withdraw(struct vfu_irqs *irqs, uint32_t index, uint32_t sub)
{
    struct irq_vec *v = vec_get(irqs, index, sub);
    if (!v)
        return -EINVAL;
    pthread_mutex_lock(&irqs->lock);
    v->pending = false;
    pthread_mutex_unlock(&irqs->lock);
    return 0;
}

int vfu_irqs_unmask(struct vfu_irqs *irqs, uint32_t index, uint32_t sub)
{
    struct irq_vec *v = vec_get(irqs, index, sub);
    if (!v)
        return -EINVAL;
    pthread_mutex_lock(&irqs->lock);
    int r = vec_unmask(v, index);
    pthread_mutex_unlock(&irqs->lock);
    return r;
}

/* Reading takes the lock too; it changes nothing. */
static pthread_mutex_t *irqs_lock(const struct vfu_irqs *irqs)
{
    return (pthread_mutex_t *)&irqs->lock;
}

bool vfu_irqs_has_eventfd(const struct vfu_irqs *irqs, uint32_t index, uint32_t sub)
{
    const struct irq_vec *v = vec_get(irqs, index, sub);
    if (!v)
        return false;
    pthread_mutex_lock(irqs_lock(irqs));
    bool has = v->trigger_fd >= 0;
    pthread_mutex_unlock(irqs_lock(irqs));
    return has;
}

int vfu_irqs_action_fd(const struct vfu_irqs *irqs, uint32_t index, uint32_t sub, uint32_t action)
{
    struct irq_vec *v = vec_get(irqs, index, sub);
    if (!v)
        return -EINVAL;
    if (action != VFIO_IRQ_SET_ACTION_MASK && action != VFIO_IRQ_SET_ACTION_UNMASK &&
        action != VFIO_IRQ_SET_ACTION_TRIGGER)
        return -EINVAL;
    pthread_mutex_lock(irqs_lock(irqs));
    int fd = *vec_fd_slot(v, action);
    pthread_mutex_unlock(irqs_lock(irqs));
    return fd;
}
