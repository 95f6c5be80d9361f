/* SPDX-License-Identifier: MIT */
/*
 * Migration v2 through a real vfu_server on a real socket, its loop on a
 * thread of its own, driven by the client library as a VMM would: the
 * state machine (DEVICE_FEATURE MIG_DEVICE_STATE) against a fake device
 * that records its arcs, the MIG_DATA stream, and DMA logging.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client/client.h"
#include "vfu/dma.h"
#include "vfu/mig-fsm.h"
#include "vfu/server.h"

#define PAGE     4096u
#define PRE_LEN  2500u /* bytes the fake device has in pre-copy */
#define STOP_LEN 3100u /* and after that, once stopped */
#define MAX_ARCS 64
#define BAR_DMA  0x100 /* BAR0 offset whose write makes the device DMA */

static const uint64_t WITH_PRE = VFU_MIGRATION_STOP_COPY | VFU_MIGRATION_PRE_COPY;
static const uint32_t RW = VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE;

/* The fake device. Touched by the loop thread while the test waits for a
 * reply, and by the test between replies. */
struct fake {
    uint32_t arcs[MAX_ARCS][2];
    int nr_arcs;
    int defer;                   /* arcs still to defer (VFU_MIG_LATER) */
    uint32_t fail_from, fail_to; /* an arc that fails (-EIO) */
    size_t pos;                  /* read position in the stream */
    uint8_t loaded[16384];       /* what MIG_DATA_WRITE brought */
    size_t nr_loaded;
    size_t expect_load; /* RESUMING -> STOP fails unless this much came */
    int aborts;
    int resets;
};

static struct {
    sd_event *event;
    struct vfu_server *server;
    struct vfu_dma *dma;
    struct fake fake;
    pthread_t thread;
    int call_fd; /* eventfd: run `call` on the loop */
    void (*call)(void *);
    void *call_arg;
    sem_t called;
    char dir[64], path[128];
} rig;

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 7 + 3);
}

static void dma_done(void *opaque, int status)
{
}

static int fake_region(void *opaque, uint32_t index, uint64_t offset, void *buf, uint32_t count,
                       bool is_write)
{
    static uint8_t dma_buf[8] = "dirtyDMA";
    if (is_write && index == VFIO_PCI_BAR0_REGION_INDEX && offset == BAR_DMA && count == 8) {
        /* The guest tells the device to write guest memory at the address. */
        uint64_t iova;
        memcpy(&iova, buf, sizeof(iova));
        int r = vfu_server_dma_rw(rig.server, iova, dma_buf, sizeof(dma_buf), true, dma_done, NULL);
        return r < 0 ? r : 0; /* 1: sent to the client as DMA_WRITE */
    }
    if (!is_write)
        memset(buf, 0, count);
    return 0;
}

static int fake_reset(void *opaque)
{
    rig.fake.resets++;
    vfu_server_mig_reset(rig.server);
    return 0;
}

static int fake_arc(void *opaque, uint32_t from, uint32_t to)
{
    struct fake *f = &rig.fake;
    ck_assert_int_lt(f->nr_arcs, MAX_ARCS);
    f->arcs[f->nr_arcs][0] = from;
    f->arcs[f->nr_arcs][1] = to;
    f->nr_arcs++;
    if (from == VFU_MIG_STOP && to == VFU_MIG_RESUMING)
        f->nr_loaded = 0;
    if ((from == VFU_MIG_RUNNING && to == VFU_MIG_PRE_COPY) ||
        (from == VFU_MIG_STOP && to == VFU_MIG_STOP_COPY))
        f->pos = 0;
    if (f->defer > 0) {
        f->defer--;
        return VFU_MIG_LATER;
    }
    if (from == f->fail_from && to == f->fail_to)
        return -EIO;
    if (from == VFU_MIG_RESUMING && to == VFU_MIG_STOP && f->nr_loaded != f->expect_load)
        return -EBADMSG;
    return 0;
}

static int fake_read(void *opaque, void *buf, size_t len, size_t *n)
{
    struct fake *f = &rig.fake;
    uint32_t state = vfu_server_mig_state(rig.server);
    size_t end = state == VFU_MIG_PRE_COPY ? PRE_LEN : PRE_LEN + STOP_LEN;
    size_t k = 0;
    for (; k < len && f->pos < end; k++)
        ((uint8_t *)buf)[k] = pattern(f->pos++);
    *n = k;
    return 0;
}

static int fake_write(void *opaque, const void *buf, size_t len)
{
    struct fake *f = &rig.fake;
    if (len > sizeof(f->loaded) - f->nr_loaded)
        return -EFBIG;
    memcpy(f->loaded + f->nr_loaded, buf, len);
    f->nr_loaded += len;
    return 0;
}

static void fake_abort(void *opaque)
{
    rig.fake.aborts++;
}

static const struct vfu_device_ops fake_ops = {
    .region_access = fake_region,
    .reset = fake_reset,
    .mig_arc = fake_arc,
    .mig_read = fake_read,
    .mig_write = fake_write,
    .mig_abort = fake_abort,
};

static int on_call(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    uint64_t v;
    ck_assert_int_eq(read(fd, &v, sizeof(v)), sizeof(v));
    if (rig.call)
        rig.call(rig.call_arg);
    else
        sd_event_exit(rig.event, 0);
    sem_post(&rig.called);
    return 0;
}

/* Run fn(arg) on the server's loop thread and wait until it has. */
static void on_loop(void (*fn)(void *), void *arg)
{
    uint64_t one = 1;
    rig.call = fn;
    rig.call_arg = arg;
    ck_assert_int_eq(write(rig.call_fd, &one, sizeof(one)), sizeof(one));
    while (sem_wait(&rig.called) < 0)
        ;
}

static void *loop_main(void *arg)
{
    sd_event_loop(rig.event);
    return NULL;
}

static void rig_start(uint64_t flags, bool held)
{
    memset(&rig.fake, 0, sizeof(rig.fake));
    rig.fake.fail_from = rig.fake.fail_to = UINT32_MAX;
    strcpy(rig.dir, "/tmp/test-migration-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(rig.dir));
    snprintf(rig.path, sizeof(rig.path), "%s/dev.sock", rig.dir);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, rig.path);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(fd, 4), 0);

    struct vfu_device_layout layout = {.migration_flags = flags};
    layout.regions[VFIO_PCI_BAR0_REGION_INDEX] = (struct vfu_region_desc){
        .size = PAGE, .flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE, .fd = -1};
    layout.regions[VFIO_PCI_CONFIG_REGION_INDEX] = (struct vfu_region_desc){
        .size = 256, .flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE, .fd = -1};
    ck_assert_int_eq(sd_event_new(&rig.event), 0);
    ck_assert_int_eq(vfu_dma_new(64, &rig.dma), 0);
    ck_assert_int_eq(vfu_server_new(rig.event, fd, &layout, rig.dma, &fake_ops, NULL, &rig.server),
                     0);
    if (held)
        vfu_server_hold(rig.server, true);
    rig.call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ck_assert_int_ge(rig.call_fd, 0);
    ck_assert_int_eq(sd_event_add_io(rig.event, NULL, rig.call_fd, EPOLLIN, on_call, NULL), 0);
    sem_init(&rig.called, 0, 0);
    ck_assert_int_eq(pthread_create(&rig.thread, NULL, loop_main, NULL), 0);
}

static void rig_stop(void)
{
    on_loop(NULL, NULL); /* sd_event_exit */
    pthread_join(rig.thread, NULL);
    vfu_server_free(rig.server);
    vfu_dma_free(rig.dma);
    sd_event_unref(rig.event);
    close(rig.call_fd);
    unlink(rig.path);
    rmdir(rig.dir);
}

static struct vfu_client *connect_client(void)
{
    struct vfu_client *c;
    ck_assert_int_eq(vfu_client_connect(rig.path, &c), 0);
    ck_assert_int_eq(vfu_client_negotiate(c, vfu_client_qemu_caps_json, NULL), 0);
    return c;
}

static uint32_t state_of(struct vfu_client *c)
{
    uint32_t st = UINT32_MAX;
    ck_assert_int_eq(vfu_client_mig_get_state(c, &st), 0);
    return st;
}

/* Bring the machine to `to` from RUNNING (after a reset). ERROR: a failing arc. */
static void goto_state(struct vfu_client *c, uint32_t to)
{
    uint32_t got;
    ck_assert_int_eq(vfu_client_reset(c), 0);
    ck_assert_uint_eq(state_of(c), VFU_MIG_RUNNING);
    if (to == VFU_MIG_ERROR) {
        rig.fake.fail_from = VFU_MIG_RUNNING;
        rig.fake.fail_to = VFU_MIG_STOP;
        ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_STOP, &got), -EIO);
        rig.fake.fail_from = rig.fake.fail_to = UINT32_MAX;
    } else if (to != VFU_MIG_RUNNING) {
        ck_assert_int_eq(vfu_client_mig_set_state(c, to, &got), 0);
        ck_assert_uint_eq(got, to);
    }
    ck_assert_uint_eq(state_of(c), to);
}

START_TEST(test_features)
{
    const uint32_t GET = VFIO_DEVICE_FEATURE_GET, SET = VFIO_DEVICE_FEATURE_SET,
                   PROBE = VFIO_DEVICE_FEATURE_PROBE;
    rig_start(WITH_PRE, false);
    struct vfu_client *c = connect_client();
    uint64_t flags = 0;
    uint8_t out[64];
    size_t got;

    ck_assert_int_eq(vfu_client_migration_flags(c, &flags), 0);
    ck_assert_uint_eq(flags, WITH_PRE);
    ck_assert_uint_eq(state_of(c), VFU_MIG_RUNNING);
    /* GET's data_fd: none. */
    ck_assert_int_eq(
        vfu_client_device_feature(c, GET | VFU_FEATURE_MIG_DEVICE_STATE, 0, NULL, 0, out, 8, &got),
        0);
    ck_assert_uint_eq(got, 8);
    struct vfu_feature_mig_state st;
    memcpy(&st, out, sizeof(st));
    ck_assert_uint_eq(st.data_fd, UINT32_MAX);

    /* MIGRATION is GET only; argsz must hold the reply. */
    uint64_t zero = 0;
    ck_assert_int_eq(
        vfu_client_device_feature(c, SET | VFU_FEATURE_MIGRATION, 0, &zero, 8, NULL, 0, NULL),
        -EINVAL);
    ck_assert_int_eq(
        vfu_client_device_feature(c, GET | VFU_FEATURE_MIGRATION, 15, NULL, 0, NULL, 0, NULL),
        -EINVAL);
    /* GET and SET together only with PROBE; neither without it. */
    ck_assert_int_eq(vfu_client_device_feature(c, GET | SET | VFU_FEATURE_MIG_DEVICE_STATE, 0, NULL,
                                               0, out, 8, NULL),
                     -EINVAL);
    ck_assert_int_eq(
        vfu_client_device_feature(c, VFU_FEATURE_MIG_DEVICE_STATE, 0, NULL, 0, out, 8, NULL),
        -EINVAL);
    /* PROBE: success when every op named is there, the request echoed. */
    uint8_t req[16] = {0};
    struct vfu_device_feature hdr = {.argsz = 16,
                                     .flags = PROBE | GET | SET | VFU_FEATURE_MIG_DEVICE_STATE};
    memcpy(req, &hdr, sizeof(hdr));
    memcpy(req + 8, "probedat", 8);
    void *reply = NULL;
    size_t rlen = 0;
    ck_assert_int_eq(vfu_client_call(c, VFU_CMD_DEVICE_FEATURE, req, sizeof(req), NULL, 0, &reply,
                                     &rlen, NULL, 0, NULL),
                     0);
    ck_assert_uint_eq(rlen, sizeof(req));
    ck_assert_int_eq(memcmp(reply, req, sizeof(req)), 0);
    free(reply);
    ck_assert_int_eq(vfu_client_device_feature(c, PROBE | SET | VFU_FEATURE_MIGRATION, 0, NULL, 0,
                                               NULL, 0, NULL),
                     -EINVAL);
    ck_assert_int_eq(vfu_client_device_feature(c, PROBE | GET | VFU_FEATURE_DMA_LOGGING_START, 0,
                                               NULL, 0, NULL, 0, NULL),
                     -EINVAL);
    ck_assert_int_eq(vfu_client_device_feature(c, PROBE | SET | VFU_FEATURE_DMA_LOGGING_START, 0,
                                               NULL, 0, NULL, 0, NULL),
                     0);
    ck_assert_int_eq(vfu_client_device_feature(c, PROBE | VFU_FEATURE_DMA_LOGGING_REPORT, 0, NULL,
                                               0, NULL, 0, NULL),
                     0);
    /* A PROBE changes nothing. */
    st = (struct vfu_feature_mig_state){.device_state = VFU_MIG_STOP};
    ck_assert_int_eq(vfu_client_device_feature(c, PROBE | SET | VFU_FEATURE_MIG_DEVICE_STATE, 0,
                                               &st, 8, NULL, 0, NULL),
                     0);
    ck_assert_uint_eq(state_of(c), VFU_MIG_RUNNING);
    ck_assert_int_eq(rig.fake.nr_arcs, 0);
    /* Unknown features (LOW_POWER_ENTRY, the PCI VF token, beyond). */
    ck_assert_int_eq(vfu_client_device_feature(c, GET | 3, 0, NULL, 0, out, 8, NULL), -ENOTSUP);
    ck_assert_int_eq(vfu_client_device_feature(c, GET | 0, 0, NULL, 0, out, 8, NULL), -ENOTSUP);
    ck_assert_int_eq(vfu_client_device_feature(c, PROBE | 0xffff, 0, NULL, 0, NULL, 0, NULL),
                     -ENOTSUP);
    /* A SET's data is the state, exactly. */
    ck_assert_int_eq(
        vfu_client_device_feature(c, SET | VFU_FEATURE_MIG_DEVICE_STATE, 0, &st, 4, NULL, 0, NULL),
        -EINVAL);
    vfu_client_free(c);
    rig_stop();
}
END_TEST

START_TEST(test_no_migration)
{
    rig_start(0, false);
    struct vfu_client *c;
    char *json = NULL;
    ck_assert_int_eq(vfu_client_connect(rig.path, &c), 0);
    ck_assert_int_eq(vfu_client_negotiate(c, vfu_client_qemu_caps_json, &json), 0);
    ck_assert_ptr_null(strstr(json, "migration"));
    free(json);
    uint64_t flags;
    uint8_t buf[64] = {0};
    ck_assert_int_eq(vfu_client_migration_flags(c, &flags), -ENOTSUP);
    ck_assert_int_eq(
        vfu_client_device_feature(c, VFIO_DEVICE_FEATURE_PROBE | VFU_FEATURE_DMA_LOGGING_START, 0,
                                  NULL, 0, NULL, 0, NULL),
        -ENOTSUP);
    size_t n;
    ck_assert_int_eq(vfu_client_mig_read(c, buf, 16, &n), -ENOTSUP);
    ck_assert_int_eq(vfu_client_mig_write(c, buf, 16), -ENOTSUP);
    vfu_client_free(c);
    rig_stop();
}
END_TEST

START_TEST(test_version_offers_migration)
{
    rig_start(WITH_PRE, false);
    struct vfu_client *c;
    char *json = NULL;
    ck_assert_int_eq(vfu_client_connect(rig.path, &c), 0);
    ck_assert_int_eq(vfu_client_negotiate(c, vfu_client_qemu_caps_json, &json), 0);
    ck_assert_ptr_nonnull(strstr(json, "\"migration\":{\"pgsize\":4096,"
                                       "\"max_bitmap_size\":268435456}"));
    free(json);
    vfu_client_free(c);
    /* SPDK's VERSION has no JSON: still a client, offered no migration. */
    ck_assert_int_eq(vfu_client_connect(rig.path, &c), 0);
    ck_assert_int_eq(vfu_client_negotiate(c, NULL, &json), 0);
    ck_assert_ptr_null(strstr(json, "migration"));
    free(json);
    vfu_client_free(c);
    rig_stop();
}
END_TEST

/* Every (from, to) pair: the reply, the state after, and the arcs the device did. */
static void check_all_pairs(uint64_t flags)
{
    static const uint32_t reachable[] = {VFU_MIG_ERROR,     VFU_MIG_STOP,     VFU_MIG_RUNNING,
                                         VFU_MIG_STOP_COPY, VFU_MIG_RESUMING, VFU_MIG_PRE_COPY};
    struct vfu_client *c = connect_client();

    for (size_t i = 0; i < ELEMENTSOF(reachable); i++) {
        uint32_t from = reachable[i];
        if (from == VFU_MIG_PRE_COPY && !(flags & VFU_MIGRATION_PRE_COPY))
            continue;
        for (uint32_t to = 0; to < 9; to++) {
            goto_state(c, from);
            rig.fake.nr_arcs = 0;
            uint32_t got = UINT32_MAX;
            int r = vfu_client_mig_set_state(c, to, &got);
            /* The expected path, from the spec's table (test-mig-fsm). */
            uint32_t path[4], at = from;
            int n = 0;
            bool ok = vfu_mig_next_arc(from, to, flags) >= 0;
            while (ok && at != to) {
                path[n++] = (uint32_t)vfu_mig_next_arc(at, to, flags);
                at = path[n - 1];
            }
            if (!ok) {
                ck_assert_msg(r == -EINVAL, "%u -> %u: %d", from, to, r);
                ck_assert_uint_eq(state_of(c), from);
                ck_assert_int_eq(rig.fake.nr_arcs, 0);
                continue;
            }
            ck_assert_msg(r == 0, "%u -> %u: %d", from, to, r);
            ck_assert_uint_eq(got, to);
            ck_assert_uint_eq(state_of(c), to);
            ck_assert_int_eq(rig.fake.nr_arcs, n);
            uint32_t prev = from;
            for (int k = 0; k < n; k++) {
                ck_assert_uint_eq(rig.fake.arcs[k][0], prev);
                ck_assert_uint_eq(rig.fake.arcs[k][1], path[k]);
                prev = path[k];
            }
        }
    }
    vfu_client_free(c);
}

START_TEST(test_transitions)
{
    rig_start(WITH_PRE, false);
    check_all_pairs(WITH_PRE);
    rig_stop();
}
END_TEST

START_TEST(test_transitions_without_pre_copy)
{
    rig_start(VFU_MIGRATION_STOP_COPY, false);
    check_all_pairs(VFU_MIGRATION_STOP_COPY);
    struct vfu_client *c = connect_client();
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_PRE_COPY, NULL), -EINVAL);
    vfu_client_free(c);
    rig_stop();
}
END_TEST

START_TEST(test_error_needs_reset)
{
    rig_start(WITH_PRE, false);
    struct vfu_client *c = connect_client();
    /* An arc that fails in the middle of a walk: ERROR, the error replied. */
    rig.fake.fail_from = VFU_MIG_STOP;
    rig.fake.fail_to = VFU_MIG_STOP_COPY;
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_STOP_COPY, NULL), -EIO);
    ck_assert_uint_eq(state_of(c), VFU_MIG_ERROR);
    rig.fake.fail_from = rig.fake.fail_to = UINT32_MAX;
    for (uint32_t to = 0; to < 8; to++)
        ck_assert_int_eq(vfu_client_mig_set_state(c, to, NULL), -EINVAL);
    ck_assert_uint_eq(state_of(c), VFU_MIG_ERROR);
    ck_assert_int_eq(vfu_client_reset(c), 0);
    ck_assert_int_eq(rig.fake.resets, 1);
    ck_assert_uint_eq(state_of(c), VFU_MIG_RUNNING);
    /* A stream the device refuses at RESUMING -> STOP: ERROR too. */
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_RESUMING, NULL), 0);
    rig.fake.expect_load = 10;
    ck_assert_int_eq(vfu_client_mig_write(c, "abc", 3), 0);
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_STOP, NULL), -EBADMSG);
    ck_assert_uint_eq(state_of(c), VFU_MIG_ERROR);
    vfu_client_free(c);
    rig_stop();
}
END_TEST

static void release_arc(void *arg)
{
    vfu_server_mig_done(rig.server, *(int *)arg);
}

static void release_hold(void *arg)
{
    vfu_server_hold(rig.server, false);
}

static void reset_machine(void *arg)
{
    vfu_server_mig_reset(rig.server);
}

/* A raw SET; its reply is read with recv_reply. */
static uint16_t send_set(struct vfu_client *c, uint32_t state)
{
    struct {
        struct vfu_device_feature f;
        struct vfu_feature_mig_state st;
    } req = {{.argsz = 16, .flags = VFIO_DEVICE_FEATURE_SET | VFU_FEATURE_MIG_DEVICE_STATE},
             {.device_state = state}};
    uint16_t id;
    ck_assert_int_eq(
        vfu_client_send_cmd(c, VFU_CMD_DEVICE_FEATURE, 0, &req, sizeof(req), NULL, 0, &id), 0);
    return id;
}

/* The next reply: its id, error (0: none) and device_state (SET replies). */
static void recv_reply(struct vfu_client *c, uint16_t id, uint32_t error, uint32_t state)
{
    struct vfu_header *h = NULL;
    ck_assert_int_eq(vfu_client_recv_reply(c, &h, NULL, 0, NULL), 0);
    ck_assert_uint_eq(h->msg_id, id);
    ck_assert_uint_eq(h->error, error);
    if (!error && state != UINT32_MAX) {
        ck_assert_uint_eq(h->msg_size, sizeof(*h) + 16);
        struct vfu_feature_mig_state st;
        memcpy(&st, (uint8_t *)(h + 1) + 8, sizeof(st));
        ck_assert_uint_eq(st.device_state, state);
    }
    free(h);
}

/* No reply within a while. */
static bool quiet(struct vfu_client *c, int ms)
{
    struct pollfd p = {.fd = vfu_client_fd(c), .events = POLLIN};
    return poll(&p, 1, ms) == 0;
}

START_TEST(test_deferred_arc)
{
    rig_start(WITH_PRE, false);
    struct vfu_client *c = connect_client();
    int ok = 0, fail = -EIO;

    /* RUNNING -> STOP_COPY: the first arc (RUNNING -> STOP) finishes later. */
    rig.fake.defer = 1;
    uint16_t set = send_set(c, VFU_MIG_STOP_COPY);
    ck_assert(quiet(c, 100)); /* no reply before the arc is done */
    /* The connection keeps serving: a second SET is busy, GET says where
     * the machine still is. */
    uint16_t busy = send_set(c, VFU_MIG_STOP);
    recv_reply(c, busy, EBUSY, UINT32_MAX);
    ck_assert_int_eq(rig.fake.nr_arcs, 1);
    on_loop(release_arc, &ok);
    recv_reply(c, set, 0, VFU_MIG_STOP_COPY);
    ck_assert_int_eq(rig.fake.nr_arcs, 2);
    ck_assert_uint_eq(rig.fake.arcs[1][0], VFU_MIG_STOP);
    ck_assert_uint_eq(rig.fake.arcs[1][1], VFU_MIG_STOP_COPY);
    ck_assert_uint_eq(state_of(c), VFU_MIG_STOP_COPY);

    /* A deferred arc that fails: ERROR, and the error is the reply. */
    rig.fake.defer = 1;
    set = send_set(c, VFU_MIG_STOP);
    ck_assert(quiet(c, 50));
    on_loop(release_arc, &fail);
    recv_reply(c, set, EIO, UINT32_MAX);
    ck_assert_uint_eq(state_of(c), VFU_MIG_ERROR);
    ck_assert_int_eq(vfu_client_reset(c), 0);

    /* A reset overtakes a deferred arc: the SET is cancelled, a late done
     * ignored. */
    rig.fake.defer = 1;
    set = send_set(c, VFU_MIG_STOP);
    ck_assert(quiet(c, 50));
    on_loop(reset_machine, NULL);
    recv_reply(c, set, ECANCELED, UINT32_MAX);
    on_loop(release_arc, &ok);
    ck_assert_uint_eq(state_of(c), VFU_MIG_RUNNING);

    /* The client leaves while STOP -> STOP_COPY is deferred: the state is
     * recorded when the device is done, and the session nobody will read
     * is aborted. */
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_STOP, NULL), 0);
    rig.fake.defer = 1;
    (void)send_set(c, VFU_MIG_STOP_COPY);
    ck_assert(quiet(c, 50));
    vfu_client_free(c);
    c = connect_client(); /* the server has seen the first one go */
    ck_assert_int_eq(rig.fake.aborts, 0);
    on_loop(release_arc, &ok);
    ck_assert_int_eq(rig.fake.aborts, 1);
    ck_assert_uint_eq(state_of(c), VFU_MIG_STOP);
    vfu_client_free(c);
    rig_stop();
}
END_TEST

/* Read the stream until a short read; returns the bytes read. */
static size_t read_all(struct vfu_client *c, uint8_t *buf, size_t room, size_t chunk)
{
    size_t total = 0, n;
    do {
        ck_assert_uint_le(total + chunk, room);
        ck_assert_int_eq(vfu_client_mig_read(c, buf + total, chunk, &n), 0);
        total += n;
    } while (n == chunk);
    return total;
}

START_TEST(test_data_read)
{
    rig_start(WITH_PRE, false);
    struct vfu_client *c = connect_client();
    static uint8_t buf[16384];
    size_t n;

    /* Only in a saving state. */
    ck_assert_int_eq(vfu_client_mig_read(c, buf, 16, &n), -EINVAL);
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_STOP, NULL), 0);
    ck_assert_int_eq(vfu_client_mig_read(c, buf, 16, &n), -EINVAL);
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_RESUMING, NULL), 0);
    ck_assert_int_eq(vfu_client_mig_read(c, buf, 16, &n), -EINVAL);
    rig.fake.expect_load = 0;
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_RUNNING, NULL), 0);

    /* Pre-copy, then stop-copy: one stream, each phase ending short. */
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_PRE_COPY, NULL), 0);
    size_t pre = read_all(c, buf, sizeof(buf), 1000);
    ck_assert_uint_eq(pre, PRE_LEN);
    /* Sizes above max_data_xfer, and an argsz without room for the reply. */
    struct vfu_mig_data big = {.argsz = 8 + (1u << 20) + 1, .size = (1u << 20) + 1};
    ck_assert_int_eq(vfu_client_call(c, VFU_CMD_MIG_DATA_READ, &big, sizeof(big), NULL, 0, NULL,
                                     NULL, NULL, 0, NULL),
                     -E2BIG);
    struct vfu_mig_data tight = {.argsz = 8 + 99, .size = 100};
    ck_assert_int_eq(vfu_client_call(c, VFU_CMD_MIG_DATA_READ, &tight, sizeof(tight), NULL, 0, NULL,
                                     NULL, NULL, 0, NULL),
                     -EINVAL);
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_STOP_COPY, NULL), 0);
    size_t rest = read_all(c, buf + pre, sizeof(buf) - pre, 1024);
    ck_assert_uint_eq(rest, STOP_LEN);
    for (size_t i = 0; i < pre + rest; i++)
        ck_assert_msg(buf[i] == pattern(i), "byte %zu", i);
    /* After the end, reads give nothing. */
    ck_assert_int_eq(vfu_client_mig_read(c, buf, 16, &n), 0);
    ck_assert_uint_eq(n, 0);

    /* STOP_COPY without pre-copy: the whole stream. */
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_STOP, NULL), 0);
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_STOP_COPY, NULL), 0);
    ck_assert_uint_eq(read_all(c, buf, sizeof(buf), 4096), PRE_LEN + STOP_LEN);
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_RUNNING, NULL), 0);
    vfu_client_free(c);
    rig_stop();
}
END_TEST

START_TEST(test_cancel_and_stopped)
{
    rig_start(WITH_PRE, false);
    struct vfu_client *c = connect_client();
    uint8_t buf[64];
    size_t n;

    /* Cancel in STOP_COPY: back to STOP before all was read. */
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_STOP_COPY, NULL), 0);
    ck_assert_int_eq(vfu_client_mig_read(c, buf, sizeof(buf), &n), 0);
    ck_assert_uint_eq(n, sizeof(buf));
    rig.fake.nr_arcs = 0;
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_STOP, NULL), 0);
    ck_assert_int_eq(rig.fake.nr_arcs, 1);
    ck_assert_uint_eq(rig.fake.arcs[0][0], VFU_MIG_STOP_COPY);
    ck_assert_int_eq(vfu_client_mig_read(c, buf, sizeof(buf), &n), -EINVAL);

    /* Stopped, the device still answers DMA_MAP/UNMAP and GET_INFO. */
    int fd = memfd_create("test-migration", MFD_CLOEXEC);
    ck_assert_int_eq(ftruncate(fd, 4 * PAGE), 0);
    ck_assert_int_eq(vfu_client_dma_map(c, 0x100000, 4 * PAGE, RW, fd, 0), 0);
    struct vfu_device_info info;
    ck_assert_int_eq(vfu_client_device_info(c, &info), 0);
    ck_assert_uint_eq(info.num_regions, VFIO_PCI_NUM_REGIONS);
    ck_assert_int_eq(vfu_client_dma_unmap(c, 0x100000, 4 * PAGE, 0), 0);
    ck_assert_uint_eq(state_of(c), VFU_MIG_STOP);
    close(fd);

    /* Loading: writes only in RESUMING, each exactly its size. */
    ck_assert_int_eq(vfu_client_mig_write(c, "x", 1), -EINVAL);
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_RESUMING, NULL), 0);
    static uint8_t stream[5000];
    for (size_t i = 0; i < sizeof(stream); i++)
        stream[i] = pattern(i);
    ck_assert_int_eq(vfu_client_mig_write(c, stream, 3000), 0);
    ck_assert_int_eq(vfu_client_mig_write(c, stream + 3000, 0), 0);
    ck_assert_int_eq(vfu_client_mig_write(c, stream + 3000, 2000), 0);
    struct vfu_mig_data lie = {.argsz = 8 + 10, .size = 10};
    ck_assert_int_eq(vfu_client_call(c, VFU_CMD_MIG_DATA_WRITE, &lie, sizeof(lie), NULL, 0, NULL,
                                     NULL, NULL, 0, NULL),
                     -EINVAL);
    ck_assert_uint_eq(rig.fake.nr_loaded, sizeof(stream));
    ck_assert_int_eq(memcmp(rig.fake.loaded, stream, sizeof(stream)), 0);
    rig.fake.expect_load = sizeof(stream);
    ck_assert_int_eq(vfu_client_mig_set_state(c, VFU_MIG_RUNNING, NULL), 0);
    vfu_client_free(c);
    rig_stop();
}
END_TEST

START_TEST(test_disconnect_ends_session)
{
    rig_start(WITH_PRE, false);
    static const uint32_t cases[][2] = {
        {VFU_MIG_PRE_COPY, VFU_MIG_RUNNING}, {VFU_MIG_STOP_COPY, VFU_MIG_STOP},
        {VFU_MIG_RESUMING, VFU_MIG_ERROR},   {VFU_MIG_STOP, VFU_MIG_STOP},
        {VFU_MIG_RUNNING, VFU_MIG_RUNNING},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        struct vfu_client *c = connect_client();
        goto_state(c, cases[i][0]);
        int aborts = rig.fake.aborts;
        vfu_client_free(c);
        c = connect_client();
        ck_assert_uint_eq(state_of(c), cases[i][1]);
        ck_assert_int_eq(rig.fake.aborts, aborts + (vfu_mig_in_session(cases[i][0]) ? 1 : 0));
        vfu_client_free(c);
    }
    rig_stop();
}
END_TEST

static void report(struct vfu_client *c, uint64_t iova, uint64_t len, uint64_t pgsize,
                   uint64_t *bitmap)
{
    ck_assert_int_eq(vfu_client_dma_logging_report(c, iova, len, pgsize, bitmap, 64), 0);
}

static void device_writes(uint64_t iova)
{
    struct vfu_dma_region *held;
    void *p;
    ck_assert_int_eq(vfu_dma_get(rig.dma, iova, 8, RW, &p, &held), 0);
    memcpy(p, "written!", 8);
    vfu_dma_put(rig.dma, held, iova, 8, true);
}

START_TEST(test_dma_logging)
{
    rig_start(WITH_PRE, false);
    struct vfu_client *c = connect_client();
    const uint64_t A = 0x100000, B = A + 32 * PAGE; /* a 16-page hole between */
    uint64_t bitmap[8], chosen = 0;
    int fd = memfd_create("test-migration", MFD_CLOEXEC);
    ck_assert_int_eq(ftruncate(fd, 48 * PAGE), 0);
    ck_assert_int_eq(vfu_client_dma_map(c, A, 16 * PAGE, RW, fd, 0), 0);

    ck_assert_int_eq(vfu_client_dma_logging_report(c, A, 16 * PAGE, PAGE, bitmap, 64), -EINVAL);
    /* A page size below 4 KiB gets 4 KiB; logging is one session at a time. */
    ck_assert_int_eq(vfu_client_dma_logging_start(c, 512, NULL, 0, &chosen), 0);
    ck_assert_uint_eq(chosen, PAGE);
    ck_assert_int_eq(vfu_client_dma_logging_start(c, PAGE, NULL, 0, NULL), -EBUSY);
    ck_assert_int_eq(vfu_client_dma_logging_start(c, 3000, NULL, 0, NULL), -EINVAL);
    /* A map made while logging is logged too. */
    ck_assert_int_eq(vfu_client_dma_map(c, B, 16 * PAGE, RW, fd, 32 * PAGE), 0);

    device_writes(A + 1 * PAGE);
    device_writes(A + 6 * PAGE + 100);
    vfu_dma_mark_dirty(rig.dma, B + 3 * PAGE, 2 * PAGE); /* pages 35, 36 of the range */
    vfu_dma_mark_dirty(rig.dma, A + 20 * PAGE, PAGE);    /* the hole: nothing */

    /* At the logging page size, one range over both maps and the hole. */
    report(c, A, 48 * PAGE, PAGE, bitmap);
    ck_assert_uint_eq(bitmap[0], (1u << 1) | (1u << 6) | (UINT64_C(3) << 35));
    /* Reported bits are cleared; pages never written never appear. */
    report(c, A, 48 * PAGE, PAGE, bitmap);
    ck_assert_uint_eq(bitmap[0], 0);

    /* Twice the page: bits ORed in pairs. Half: each bit twice. */
    device_writes(A + 1 * PAGE);
    device_writes(A + 6 * PAGE);
    device_writes(B + 3 * PAGE);
    report(c, A, 48 * PAGE, 2 * PAGE, bitmap);
    ck_assert_uint_eq(bitmap[0], (1u << 0) | (1u << 3) | (1u << 17));
    device_writes(A + 1 * PAGE);
    device_writes(B);
    report(c, A, 48 * PAGE, PAGE / 2, bitmap);
    ck_assert_uint_eq(bitmap[0], UINT64_C(3) << 2);
    ck_assert_uint_eq(bitmap[1], UINT64_C(3) << 0); /* page 64 of 2 KiB: B */

    /* Limits: an argsz without room for the bitmap; a bitmap larger than
     * the client takes in a message (its max_data_xfer_size, 1 MiB). */
    ck_assert_int_eq(vfu_client_dma_logging_report(c, A, 48 * PAGE, PAGE, bitmap, 0), -EINVAL);
    static uint64_t huge[1];
    ck_assert_int_eq(
        vfu_client_dma_logging_report(c, 0, (UINT64_C(1) << 20) * 8 * PAGE * 2, PAGE, huge, 8),
        -E2BIG);

    /* A write the device makes through the client (a map without fd):
     * DMA_WRITE, marked too. */
    static uint8_t local[4 * PAGE];
    const uint64_t L = 0x800000;
    ck_assert_int_eq(vfu_client_dma_map_local(c, L, sizeof(local), RW, local), 0);
    uint64_t target = L + 2 * PAGE + 8;
    ck_assert_int_eq(vfu_client_region_write(c, VFIO_PCI_BAR0_REGION_INDEX, BAR_DMA, &target, 8),
                     0);
    ck_assert_int_eq(memcmp(local + 2 * PAGE + 8, "dirtyDMA", 8), 0);
    report(c, L, sizeof(local), PAGE, bitmap);
    ck_assert_uint_eq(bitmap[0], 1u << 2);

    ck_assert_int_eq(vfu_client_dma_logging_stop(c), 0);
    ck_assert_int_eq(vfu_client_dma_logging_report(c, A, 16 * PAGE, PAGE, bitmap, 64), -EINVAL);
    /* Logging ranges are checked even though everything is logged. */
    struct vfu_dma_logging_range bad = {.iova = A, .length = 0};
    ck_assert_int_eq(vfu_client_dma_logging_start(c, PAGE, &bad, 1, NULL), -EINVAL);
    struct vfu_dma_logging_range ranges[2] = {{A, 16 * PAGE}, {B, 16 * PAGE}};
    ck_assert_int_eq(vfu_client_dma_logging_start(c, 2 * PAGE, ranges, 2, &chosen), 0);
    ck_assert_uint_eq(chosen, 2 * PAGE);
    vfu_client_free(c);
    close(fd);
    /* The client that started logging took it with it. */
    c = connect_client();
    ck_assert_int_eq(vfu_client_dma_logging_start(c, PAGE, NULL, 0, NULL), 0);
    vfu_client_free(c);
    rig_stop();
}
END_TEST

START_TEST(test_hold)
{
    rig_start(WITH_PRE, true);
    struct vfu_client *c;
    /* Held from the start: the connection waits, its VERSION unanswered. */
    ck_assert_int_eq(vfu_client_connect(rig.path, &c), 0);
    struct vfu_version v = {.major = 0, .minor = 0};
    uint16_t id;
    ck_assert_int_eq(vfu_client_send_cmd(c, VFU_CMD_VERSION, 0, &v, sizeof(v), NULL, 0, &id), 0);
    ck_assert(quiet(c, 200));
    on_loop(release_hold, NULL);
    struct vfu_header *h = NULL;
    ck_assert_int_eq(vfu_client_recv_reply(c, &h, NULL, 0, NULL), 0);
    ck_assert_uint_eq(h->msg_id, id);
    ck_assert_uint_eq(h->flags & VFU_FLAG_ERROR, 0);
    free(h);
    vfu_client_free(c);
    rig_stop();
}
END_TEST

static Suite *migration_suite(void)
{
    Suite *s = suite_create("migration");
    TCase *tc = tcase_create("server");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_features);
    tcase_add_test(tc, test_no_migration);
    tcase_add_test(tc, test_version_offers_migration);
    tcase_add_test(tc, test_transitions);
    tcase_add_test(tc, test_transitions_without_pre_copy);
    tcase_add_test(tc, test_error_needs_reset);
    tcase_add_test(tc, test_deferred_arc);
    tcase_add_test(tc, test_data_read);
    tcase_add_test(tc, test_cancel_and_stopped);
    tcase_add_test(tc, test_disconnect_ends_session);
    tcase_add_test(tc, test_dma_logging);
    tcase_add_test(tc, test_hold);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(migration_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
