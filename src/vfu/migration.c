/* SPDX-License-Identifier: MIT */
/*
 * vfio-user migration v2, the protocol side: DEVICE_FEATURE (MIGRATION,
 * MIG_DEVICE_STATE; the DMA logging features are in feature-logging.c), the
 * state machine the client drives, and MIG_DATA_READ / MIG_DATA_WRITE. The
 * device does the arcs (ops->mig_arc) and produces and takes the stream.
 *
 * The state belongs to the device, not to a client: it survives a
 * disconnect, except that a data session the client left open is ended
 * (PRE_COPY -> RUNNING, STOP_COPY -> STOP, RESUMING -> ERROR: half a stream
 * is no state to run).
 */
#include <errno.h>
#include <string.h>

#include "util/log.h"
#include "vfu/mig-fsm.h"
#include "vfu/server-internal.h"

/* data_fd in a GET reply: vfio-user moves data in messages, never an fd,
 * and -1 is what the kernel leaves there when there is none. */
#define NO_DATA_FD UINT32_MAX

int vfu_reply_feature(struct vfu_server *s, const struct vfu_msg *msg, const struct iovec *iov,
                      size_t n)
{
    struct vfu_device_feature f;
    struct iovec v[4];
    size_t len = sizeof(f);

    if (n + 1 > ELEMENTSOF(v))
        return -EINVAL;
    memcpy(&f, msg->payload, sizeof(f)); /* the decoder saw it is there */
    for (size_t i = 0; i < n; i++) {
        v[i + 1] = iov[i];
        len += iov[i].iov_len;
    }
    f.argsz = (uint32_t)len; /* our payloads stay far below 4 GiB */
    v[0] = (struct iovec){&f, sizeof(f)};
    return vfu_reply(s, msg, v, n + 1, NULL, 0);
}

int vfu_reply_echo(struct vfu_server *s, const struct vfu_msg *msg)
{
    struct iovec iov = {(void *)msg->payload, msg->payload_len};
    return vfu_reply(s, msg, &iov, 1, NULL, 0);
}

/* The device ends the data session the client can no longer finish. */
static void abandon_session(struct vfu_server *s)
{
    if (!vfu_mig_in_session(s->mig_state))
        return;
    if (s->ops->mig_abort)
        s->ops->mig_abort(s->opaque);
    switch (s->mig_state) {
    case VFU_MIG_PRE_COPY:
        s->mig_state = VFU_MIG_RUNNING;
        break;
    case VFU_MIG_STOP_COPY:
        s->mig_state = VFU_MIG_STOP;
        break;
    default: /* RESUMING: the device holds part of a state */
        s->mig_state = VFU_MIG_ERROR;
        break;
    }
}

/* Walk from mig_state to mig_target: 0 there, VFU_MIG_LATER while the
 * device finishes an arc, -EBUSY when the device refused an arc without
 * starting it (the state stays), or -errno (the state is then ERROR). */
static int walk(struct vfu_server *s)
{
    while (s->mig_state != s->mig_target) {
        int to = vfu_mig_next_arc(s->mig_state, s->mig_target, s->layout.migration_flags);
        if (to < 0)
            return to; /* the SET checked the path: not reached */
        int r = s->ops->mig_arc ? s->ops->mig_arc(s->opaque, s->mig_state, (uint32_t)to) : -ENOTSUP;
        if (r == VFU_MIG_LATER) {
            s->mig_arc_to = (uint32_t)to;
            s->mig_pending = true;
            return r;
        }
        if (r == -EBUSY) {
            /* Refused before it began (the operator is migrating the
             * device): nothing changed, the machine stays where it is. */
            return r;
        }
        if (r < 0) {
            /* The device could not do the arc and may be anywhere between:
             * the spec's ERROR, which a reset leaves. */
            log_info_errno(r, "Migration arc %u -> %u failed: %m", s->mig_state, (unsigned)to);
            s->mig_state = VFU_MIG_ERROR;
            return r;
        }
        s->mig_state = (uint32_t)to;
    }
    return 0;
}

/* Answer the SET that waited, once its walk ended. */
static void finish_set(struct vfu_server *s, int status)
{
    if (!s->mig_reply_due)
        return;
    s->mig_reply_due = false;
    struct vfu_msg msg = {.hdr = s->mig_hdr};
    if (status < 0) {
        (void)vfu_reply_error(s, &msg, status);
        return;
    }
    s->mig_req.device_state = s->mig_state;
    struct iovec iov[2] = {{&s->mig_feature, sizeof(s->mig_feature)},
                           {&s->mig_req, sizeof(s->mig_req)}};
    (void)vfu_reply(s, &msg, iov, 2, NULL, 0);
}

void vfu_server_mig_done(struct vfu_server *s, int status)
{
    if (!s->mig_pending)
        return; /* dropped by a reset meanwhile */
    s->mig_pending = false;
    s->mig_state = status < 0 ? VFU_MIG_ERROR : s->mig_arc_to;
    if (!s->mig_reply_due) {
        /* Its client left: record where the device is, and end a session
         * the arc opened that nobody will read or finish. */
        abandon_session(s);
        return;
    }
    int r = status < 0 ? status : walk(s);
    if (r != VFU_MIG_LATER)
        finish_set(s, r);
}

/*
 * A reset (the client's DEVICE_RESET, or the operator's) overtook whatever
 * the machine was doing: it is RUNNING again. A SET still waiting is
 * answered -ECANCELED when its client is here, so the client is never left
 * waiting for a reply; the device forgets the arc it deferred (a late
 * vfu_server_mig_done() is ignored). No mig_abort: the reset ended any data
 * session with everything else.
 */
void vfu_server_mig_reset(struct vfu_server *s)
{
    s->mig_pending = false;
    s->mig_state = VFU_MIG_RUNNING;
    if (s->mig_reply_due && s->conn)
        finish_set(s, -ECANCELED);
    s->mig_reply_due = false;
}

uint32_t vfu_server_mig_state(const struct vfu_server *s)
{
    return s->mig_state;
}

void vfu_mig_client_gone(struct vfu_server *s)
{
    s->mig_reply_due = false;
    /* An arc in progress ends first: vfu_server_mig_done() abandons then. */
    if (!s->mig_pending)
        abandon_session(s);
}

void vfu_mig_server_gone(struct vfu_server *s)
{
    /* Nobody will hear vfu_server_mig_done() now: stop the device's part. */
    if (s->mig_pending && s->ops->mig_abort)
        s->ops->mig_abort(s->opaque);
    s->mig_pending = false;
}

static int set_state(struct vfu_server *s, const struct vfu_msg *msg,
                     const struct vfu_feature_req *req)
{
    struct vfu_feature_mig_state st;
    int r = vfu_decode_mig_state_set(req, &st);
    if (r < 0)
        return r;
    if (s->mig_pending)
        return -EBUSY; /* a walk waits for the device; one at a time */
    /* From ERROR, to ERROR or P2P, to PRE_COPY unoffered, STOP_COPY ->
     * PRE_COPY: all refused, and the state stays. */
    if (vfu_mig_next_arc(s->mig_state, st.device_state, s->layout.migration_flags) < 0)
        return -EINVAL;

    s->mig_target = st.device_state;
    s->mig_hdr = msg->hdr;
    s->mig_feature =
        (struct vfu_device_feature){.argsz = req->argsz, .flags = req->flags | req->index};
    s->mig_req = st;
    s->mig_reply_due = true;
    r = walk(s);
    if (r != VFU_MIG_LATER)
        finish_set(s, r);
    return 0;
}

static int get_state(struct vfu_server *s, const struct vfu_msg *msg)
{
    /* While an arc is pending this is the state it leaves. */
    struct vfu_feature_mig_state st = {.device_state = s->mig_state, .data_fd = NO_DATA_FD};
    struct iovec iov = {&st, sizeof(st)};
    return vfu_reply_feature(s, msg, &iov, 1);
}

static int get_migration(struct vfu_server *s, const struct vfu_msg *msg)
{
    struct vfu_feature_migration m = {.flags = s->layout.migration_flags};
    struct iovec iov = {&m, sizeof(m)};
    return vfu_reply_feature(s, msg, &iov, 1);
}

/* The ops each feature has, and the data its GET answers with. */
static uint32_t feature_ops(uint16_t index, size_t *get_size)
{
    const uint32_t get = VFIO_DEVICE_FEATURE_GET, set = VFIO_DEVICE_FEATURE_SET;

    *get_size = 0;
    switch (index) {
    case VFU_FEATURE_MIGRATION:
        *get_size = sizeof(struct vfu_feature_migration);
        return get;
    case VFU_FEATURE_MIG_DEVICE_STATE:
        *get_size = sizeof(struct vfu_feature_mig_state);
        return get | set;
    case VFU_FEATURE_DMA_LOGGING_START:
    case VFU_FEATURE_DMA_LOGGING_STOP:
        return set;
    case VFU_FEATURE_DMA_LOGGING_REPORT:
        *get_size = sizeof(struct vfu_feature_dma_logging_report);
        return get;
    default:
        return 0;
    }
}

int vfu_handle_device_feature(struct vfu_server *s, struct vfu_msg *msg)
{
    struct vfu_feature_req req;
    size_t get_size;

    /* A device that cannot migrate has no features at all. */
    if (s->layout.migration_flags == 0)
        return -ENOTSUP;
    int r = vfu_decode_device_feature(msg, &req);
    if (r < 0)
        return r;
    uint32_t ops = feature_ops(req.index, &get_size);
    /* An unknown feature is -ENOTSUP, not -EINVAL: "not here" rather than
     * "asked wrongly", as for commands we lack (the kernel says ENOTTY). */
    if (ops == 0)
        return -ENOTSUP;
    uint32_t asked = req.flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET);
    if (asked & ~ops)
        return -EINVAL; /* the kernel's answer to an op a feature lacks */

    /* SET and PROBE answer with the request itself; GET with its data. */
    bool echo = (req.flags & VFIO_DEVICE_FEATURE_PROBE) || (asked & VFIO_DEVICE_FEATURE_SET);
    if (echo && req.argsz < msg->payload_len)
        return -EINVAL;
    if (!echo && req.argsz < sizeof(struct vfu_device_feature) + get_size)
        return -EINVAL;
    if (req.flags & VFIO_DEVICE_FEATURE_PROBE)
        return vfu_reply_echo(s, msg);

    switch (req.index) {
    case VFU_FEATURE_MIGRATION:
        return get_migration(s, msg);
    case VFU_FEATURE_MIG_DEVICE_STATE:
        return asked == VFIO_DEVICE_FEATURE_SET ? set_state(s, msg, &req) : get_state(s, msg);
    case VFU_FEATURE_DMA_LOGGING_START:
        return vfu_feature_logging_start(s, msg, &req);
    case VFU_FEATURE_DMA_LOGGING_STOP:
        return vfu_feature_logging_stop(s, msg, &req);
    default:
        return vfu_feature_logging_report(s, msg, &req);
    }
}

int vfu_handle_mig_data_read(struct vfu_server *s, struct vfu_msg *msg)
{
    struct vfu_mig_data_req req;
    size_t n = 0;

    if (s->layout.migration_flags == 0)
        return -ENOTSUP;
    int r = vfu_decode_mig_data_read(msg, s->caps.max_data_xfer, &req);
    if (r < 0)
        return r;
    if (s->mig_pending)
        return -EBUSY;
    if (s->mig_state != VFU_MIG_PRE_COPY && s->mig_state != VFU_MIG_STOP_COPY)
        return -EINVAL;
    if (!s->ops->mig_read)
        return -ENOTSUP;
    /* size <= max_data_xfer: checked by the decoder. */
    _cleanup_free_ uint8_t *buf = malloc(sizeof(struct vfu_mig_data) + req.size);
    if (!buf)
        return -ENOMEM;
    r = s->ops->mig_read(s->opaque, buf + sizeof(struct vfu_mig_data), req.size, &n);
    if (r < 0)
        return r;
    if (n > req.size)
        return log_error_errno(-EIO, "Device read %zu bytes of migration data, %u asked.", n,
                               req.size);
    struct vfu_mig_data head = {.argsz = (uint32_t)(sizeof(head) + n), .size = (uint32_t)n};
    memcpy(buf, &head, sizeof(head));
    struct iovec iov = {buf, sizeof(head) + n};
    return vfu_reply(s, msg, &iov, 1, NULL, 0);
}

int vfu_handle_mig_data_write(struct vfu_server *s, struct vfu_msg *msg)
{
    struct vfu_mig_data_req req;

    if (s->layout.migration_flags == 0)
        return -ENOTSUP;
    int r = vfu_decode_mig_data_write(msg, s->caps.max_data_xfer, &req);
    if (r < 0)
        return r;
    if (s->mig_pending)
        return -EBUSY;
    if (s->mig_state != VFU_MIG_RESUMING)
        return -EINVAL;
    if (!s->ops->mig_write)
        return -ENOTSUP;
    /* A bad stream stays RESUMING: RESUMING -> STOP fails then, as the spec
     * has a load fail. */
    if (req.size > 0) {
        r = s->ops->mig_write(s->opaque, req.data, req.size);
        if (r < 0)
            return r;
    }
    return vfu_reply(s, msg, NULL, 0, NULL, 0);
}
