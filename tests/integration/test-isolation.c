/* SPDX-License-Identifier: MIT */
/*
 * Hostile and broken clients hurt only themselves: while they misbehave on
 * their devices, a well-behaved client on another device of the same daemon
 * keeps getting prompt replies, the daemon keeps running, frees what the
 * hostile clients left behind and exits 0 (no leak under ASan) at SIGTERM.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../plugins/ram/ram-regs.h"
#include "../../plugins/timer/timer-regs.h"
#include "helpers/testutil.h"

#define IOVA 0x40000000ull
#define RW   (VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE)
/* What a VMM can live with; libvfio-user stalls every device ~5.5 s here. */
#define MAX_RTT_NS (1000ull * 1000 * 1000)

static struct test_daemon *daemon_;

static void setup(void)
{
    daemon_ =
        tu_daemon("timer", "good", NULL, "timer", "h0", NULL, "timer", "h1", NULL, "timer", "h2",
                  NULL, "timer", "h3", NULL, "timer", "h4", NULL, "ram", "hr0", "{\"size\":65536}",
                  "ram", "hr1", "{\"size\":65536}", "ram", "hr2", "{\"size\":65536}");
}

static void teardown(void)
{
    tu_stop(daemon_);
}

/* ---- the well-behaved client, measuring round trips in a thread ---------- */

struct monitor {
    struct vfu_client *client;
    pthread_t thread;
    atomic_bool stop;
    uint64_t max_rtt_ns, rounds;
    int error; /* first failure, or 0 */
};

static void *monitor_run(void *arg)
{
    struct monitor *m = arg;
    while (!atomic_load(&m->stop)) {
        uint32_t id = 0;
        uint64_t t0 = test_now_ns();
        int r = vfu_client_region_read(m->client, TIMER_REGS_BAR, TIMER_REG_ID, &id, 4);
        uint64_t rtt = test_now_ns() - t0;
        if (r == 0 && id != TIMER_ID_MAGIC)
            r = -EBADMSG;
        if (r < 0) {
            m->error = r;
            break;
        }
        if (rtt > m->max_rtt_ns)
            m->max_rtt_ns = rtt;
        m->rounds++;
        usleep(200);
    }
    return NULL;
}

static void monitor_start(struct monitor *m)
{
    *m = (struct monitor){.client = tu_open(daemon_, "good")};
    ck_assert_int_eq(pthread_create(&m->thread, NULL, monitor_run, m), 0);
}

static void monitor_stop(struct monitor *m)
{
    atomic_store(&m->stop, true);
    ck_assert_int_eq(pthread_join(m->thread, NULL), 0);
    ck_assert_msg(m->error == 0, "the good client failed: %s", strerror(-m->error));
    ck_assert_uint_ge(m->rounds, 100);
    ck_assert_msg(m->max_rtt_ns < MAX_RTT_NS, "the good client waited %llu ms for a reply",
                  (unsigned long long)(m->max_rtt_ns / 1000000));
    vfu_client_free(m->client);
}

/* ---- hostile clients ------------------------------------------------------ */

static void send_bytes(int fd, const void *buf, size_t len)
{
    ck_assert_int_eq(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static struct vfu_header header(uint16_t cmd, uint32_t msg_size)
{
    return (struct vfu_header){.msg_id = 1, .command = cmd, .msg_size = msg_size};
}

static void expect_dropped(int fd, const char *what)
{
    ck_assert_msg(tu_wait_closed(fd, TU_TIMEOUT_MS) == 1, "%s: daemon kept the connection", what);
}

/* A negotiated client whose every reply must be an error. */
static void expect_error_reply(struct vfu_client *c, uint16_t cmd, const void *payload, size_t len)
{
    uint16_t id;
    struct vfu_header *reply;
    ck_assert_int_eq(vfu_client_send_cmd(c, cmd, 0, payload, len, NULL, 0, &id), 0);
    ck_assert_int_eq(vfu_client_recv_reply(c, &reply, NULL, 0, NULL), 0);
    ck_assert_uint_eq(reply->msg_id, id);
    ck_assert_msg(reply->flags & VFU_FLAG_ERROR, "command %u with bad arguments succeeded", cmd);
    ck_assert_uint_ne(reply->error, 0);
    free(reply);
}

static void bad_indexes(struct vfu_client *c)
{
    struct vfu_region_access rd = {.offset = 0, .region = VFIO_PCI_NUM_REGIONS, .count = 4};
    expect_error_reply(c, VFU_CMD_REGION_READ, &rd, sizeof(rd));
    rd = (struct vfu_region_access){.offset = UINT64_MAX - 1, .region = 0, .count = 4};
    expect_error_reply(c, VFU_CMD_REGION_READ, &rd, sizeof(rd));
    rd = (struct vfu_region_access){.offset = 0, .region = 0, .count = UINT32_MAX};
    expect_error_reply(c, VFU_CMD_REGION_READ, &rd, sizeof(rd));
    struct vfu_region_info ri = {.argsz = sizeof(ri), .index = 1000};
    expect_error_reply(c, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri));
    struct vfu_irq_info ii = {.argsz = sizeof(ii), .index = 77};
    expect_error_reply(c, VFU_CMD_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii));
    struct vfu_irq_set is = {.argsz = sizeof(is),
                             .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
                             .index = VFIO_PCI_MSIX_IRQ_INDEX,
                             .start = 1000,
                             .count = 1};
    expect_error_reply(c, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is));
    struct vfu_region_io_fds_request io = {.argsz = sizeof(io), .index = 99};
    expect_error_reply(c, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &io, sizeof(io));
    /* Payloads too short for their command. */
    expect_error_reply(c, VFU_CMD_REGION_READ, &rd, 3);
    expect_error_reply(c, VFU_CMD_DMA_MAP, &rd, 5);
}

/* SET_IRQS carrying more fds than the daemon takes in one message. */
static void too_many_fds(struct vfu_client *c)
{
    enum { N = 100 };
    int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = tu_eventfd_checked();
    struct vfu_irq_set is = {.argsz = sizeof(is),
                             .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                             .index = VFIO_PCI_MSIX_IRQ_INDEX,
                             .start = 0,
                             .count = N};
    uint16_t id;
    ck_assert_int_eq(
        vfu_client_send_cmd(c, VFU_CMD_DEVICE_SET_IRQS, 0, &is, sizeof(is), fds, N, &id), 0);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    /* An error reply or a dropped connection, the daemon's choice. */
    struct vfu_header *reply = NULL;
    int r = vfu_client_recv_reply(c, &reply, NULL, 0, NULL);
    if (r == 0) {
        ck_assert(reply->flags & VFU_FLAG_ERROR);
        free(reply);
    } else {
        ck_assert_msg(r == -ECONNRESET || r == -EPIPE, "recv: %s", strerror(-r));
    }
}

/* 20000 REGION_READs of 4 KiB, never reading a reply. Returns the socket. */
static int flood(void)
{
    enum { N = 20000 };
    struct vfu_client *c = tu_open(daemon_, "hr1");
    int fd = dup(vfu_client_fd(c));
    vfu_client_free(c);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);

    struct {
        struct vfu_header h;
        struct vfu_region_access a;
    } msg = {header(VFU_CMD_REGION_READ, sizeof(msg)), {.region = RAM_MEM_BAR, .count = 4096}};
    size_t sent = 0, partial = 0;
    uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    while (sent < N && test_now_ns() < deadline) {
        msg.h.msg_id = (uint16_t)sent;
        ssize_t n = send(fd, (uint8_t *)&msg + partial, sizeof(msg) - partial, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            /* Still not writable after a while: the daemon stopped reading
             * from us, which is what it should do. */
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, 300) == 0)
                break;
            continue;
        }
        ck_assert_int_gt(n, 0);
        partial += (size_t)n;
        if (partial == sizeof(msg)) {
            partial = 0;
            sent++;
        }
    }
    ck_assert_msg(sent < N, "the daemon took all %d requests without our reading a reply", N);
    return fd;
}

START_TEST(test_hostile_clients)
{
    struct monitor mon;
    monitor_start(&mon);
    usleep(50000);
    pid_t pid = test_daemon_pid(daemon_);
    int fds_before = tu_count_fds(pid);
    uint64_t rss_before = 0;
    ck_assert_int_eq(test_daemon_rss_kib(daemon_, &rss_before), 0);

    /* h0: a truncated header, then gone. */
    int fd = tu_raw_connect(test_daemon_socket(daemon_, "h0"), false);
    ck_assert_int_ge(fd, 0);
    struct vfu_header h = header(VFU_CMD_VERSION, 64);
    send_bytes(fd, &h, 7);
    close(fd);

    /* h1: a message bigger than any the daemon takes. */
    int huge = tu_raw_connect(test_daemon_socket(daemon_, "h1"), false);
    ck_assert_int_ge(huge, 0);
    h = header(VFU_CMD_VERSION, VFU_MAX_MSG_SIZE + 1);
    send_bytes(huge, &h, sizeof(h));
    expect_dropped(huge, "msg_size over the limit");
    close(huge);

    /* h2: nonsense indexes and sizes (error replies), then too many fds. */
    struct vfu_client *c = tu_open(daemon_, "h2");
    bad_indexes(c);
    too_many_fds(c);
    vfu_client_free(c);

    /* hr0: overlapping DMA maps, fd-less DMA out of range, and a transfer
     * over the socket we never serve. */
    static uint8_t local[65536];
    struct vfu_client *dmac = tu_open(daemon_, "hr0");
    ck_assert_int_eq(vfu_client_dma_map_local(dmac, IOVA, sizeof(local), RW, local), 0);
    void *mem;
    int memfd = tu_memfd(65536, &mem);
    ck_assert_int_ge(memfd, 0);
    ck_assert_int_eq(vfu_client_dma_map(dmac, IOVA + 0x8000, 65536, RW, memfd, 0), -EEXIST);
    tu_wr64(dmac, RAM_REGS_BAR, RAM_REG_DMA_ADDR, IOVA + sizeof(local));
    tu_wr32(dmac, RAM_REGS_BAR, RAM_REG_DMA_LEN, 4096);
    tu_wr32(dmac, RAM_REGS_BAR, RAM_REG_DMA_CTRL, RAM_DMA_CTRL_GO);
    uint32_t status = tu_wait_clear32(dmac, RAM_REGS_BAR, RAM_REG_DMA_STATUS, RAM_DMA_STATUS_BUSY);
    ck_assert_msg(status & RAM_DMA_STATUS_ERROR, "out-of-range DMA: status %#x", status);
    tu_wr64(dmac, RAM_REGS_BAR, RAM_REG_DMA_ADDR, IOVA);
    tu_wr32(dmac, RAM_REGS_BAR, RAM_REG_DMA_LEN, 65536);
    uint32_t go = RAM_DMA_CTRL_GO;
    ck_assert_int_eq(vfu_client_region_write_posted(dmac, RAM_REGS_BAR, RAM_REG_DMA_CTRL, &go, 4),
                     0);

    /* h3: connects and says nothing. h4: half a header, then silence. */
    int silent = tu_raw_connect(test_daemon_socket(daemon_, "h3"), false);
    ck_assert_int_ge(silent, 0);
    int half = tu_raw_connect(test_daemon_socket(daemon_, "h4"), false);
    ck_assert_int_ge(half, 0);
    h = header(VFU_CMD_VERSION, 64);
    send_bytes(half, &h, 8);

    /* A second client on the good device is turned away. */
    int second = tu_raw_connect(test_daemon_socket(daemon_, "good"), false);
    ck_assert_int_ge(second, 0);
    expect_dropped(second, "second client");
    close(second);

    /* hr1: requests without end, replies never read. */
    int flooder = flood();

    /* Everything stalled at once, for longer than any sane reply takes. */
    usleep(1500 * 1000);
    ck_assert_int_eq(kill(pid, 0), 0);
    uint64_t rss_after = 0;
    ck_assert_int_eq(test_daemon_rss_kib(daemon_, &rss_after), 0);
    ck_assert_msg(rss_after < rss_before + 64 * 1024,
                  "daemon grew from %llu to %llu KiB under the flood",
                  (unsigned long long)rss_before, (unsigned long long)rss_after);
    monitor_stop(&mon);

    /* The hostile clients go; their devices serve the next client. */
    close(flooder);
    close(half);
    close(silent);
    vfu_client_free(dmac);
    close(memfd);
    munmap(mem, 65536);
    const char *ids[] = {"h0", "h1", "h2", "h3", "h4", "hr0", "hr1"};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        c = tu_open(daemon_, ids[i]);
        ck_assert_uint_ne(tu_rd32(c, 0, 0), 0); /* TIMER_REG_ID or RAM_REG_ID */
        vfu_client_free(c);
    }

    /* Nothing they sent or left open stays behind in the daemon. */
    uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    int fds_after;
    while ((fds_after = tu_count_fds(pid)) > fds_before - 1 && test_now_ns() < deadline)
        usleep(2000);
    ck_assert_msg(fds_after <= fds_before - 1, "daemon had %d fds with the good client, %d after",
                  fds_before, fds_after);
}
END_TEST

/* One client per device: a second one is closed at once, the first goes on. */
START_TEST(test_second_client_refused)
{
    struct vfu_client *first = tu_open(daemon_, "h0");
    tu_wr64(first, TIMER_REGS_BAR, TIMER_REG_INTERVAL, 4242);
    for (int i = 0; i < 3; i++) {
        struct vfu_client *second;
        ck_assert_int_eq(vfu_client_connect(test_daemon_socket(daemon_, "h0"), &second), 0);
        ck_assert_int_eq(tu_set_socket_timeout(vfu_client_fd(second), TU_RECV_TIMEOUT_MS), 0);
        int r = vfu_client_negotiate(second, vfu_client_qemu_caps_json, NULL);
        ck_assert_msg(r == -ECONNRESET || r == -EPIPE, "second client: %s", strerror(-r));
        vfu_client_free(second);
        ck_assert_uint_eq(tu_rd64(first, TIMER_REGS_BAR, TIMER_REG_INTERVAL), 4242);
    }
    vfu_client_free(first);
    /* And once the first has gone, the next one gets in. */
    first = tu_open(daemon_, "h0");
    ck_assert_uint_eq(tu_rd64(first, TIMER_REGS_BAR, TIMER_REG_INTERVAL), 4242);
    vfu_client_free(first);
}
END_TEST

/*
 * DMA_MAP with an fd whose file is smaller than the map: the daemon must not
 * touch memory past the end of the file (SIGBUS would kill every device).
 */
START_TEST(test_dma_map_past_end_of_file)
{
    struct vfu_client *c = tu_open(daemon_, "hr2");
    void *mem;
    int memfd = tu_memfd(4096, &mem);
    ck_assert_int_ge(memfd, 0);
    int r = vfu_client_dma_map(c, IOVA, 65536, RW, memfd, 0);
    if (r == 0) {
        tu_wr64(c, RAM_REGS_BAR, RAM_REG_DMA_ADDR, IOVA + 32768);
        tu_wr32(c, RAM_REGS_BAR, RAM_REG_DMA_LEN, 4096);
        uint32_t go = RAM_DMA_CTRL_GO;
        vfu_client_region_write(c, RAM_REGS_BAR, RAM_REG_DMA_CTRL, &go, 4);
    } else {
        ck_assert_int_eq(r, -EINVAL);
    }
    /* A map at an offset past the end of the file. */
    r = vfu_client_dma_map(c, IOVA + 0x100000, 4096, RW, memfd, 1 << 20);
    if (r == 0) {
        tu_wr64(c, RAM_REGS_BAR, RAM_REG_DMA_ADDR, IOVA + 0x100000);
        tu_wr32(c, RAM_REGS_BAR, RAM_REG_DMA_LEN, 4096);
        uint32_t go = RAM_DMA_CTRL_GO | RAM_DMA_CTRL_TO_GUEST;
        vfu_client_region_write(c, RAM_REGS_BAR, RAM_REG_DMA_CTRL, &go, 4);
    }
    vfu_client_free(c);
    close(memfd);
    munmap(mem, 4096);

    ck_assert_msg(kill(test_daemon_pid(daemon_), 0) == 0 &&
                      tu_connect(test_daemon_socket(daemon_, "good"), NULL, TU_TIMEOUT_MS, &c) == 0,
                  "the daemon died of a DMA map past the end of the client's file");
    vfu_client_free(c);
}
END_TEST

/*
 * The same hazard later: the client shrinks its file after a map the daemon
 * accepted. A size check at DMA_MAP cannot catch this; the daemon needs a
 * SIGBUS-safe copy (or to insist on F_SEAL_SHRINK-sealed memfds).
 */
START_TEST(test_dma_file_shrunk_after_map)
{
    struct vfu_client *c = tu_open(daemon_, "hr2");
    void *mem;
    int memfd = tu_memfd(65536, &mem);
    ck_assert_int_ge(memfd, 0);
    ck_assert_int_eq(vfu_client_dma_map(c, IOVA, 65536, RW, memfd, 0), 0);
    munmap(mem, 65536);
    ck_assert_int_eq(ftruncate(memfd, 0), 0);
    tu_wr64(c, RAM_REGS_BAR, RAM_REG_DMA_ADDR, IOVA);
    tu_wr32(c, RAM_REGS_BAR, RAM_REG_DMA_LEN, 4096);
    uint32_t go = RAM_DMA_CTRL_GO;
    vfu_client_region_write(c, RAM_REGS_BAR, RAM_REG_DMA_CTRL, &go, 4);
    vfu_client_free(c);
    close(memfd);

    ck_assert_msg(kill(test_daemon_pid(daemon_), 0) == 0 &&
                      tu_connect(test_daemon_socket(daemon_, "good"), NULL, TU_TIMEOUT_MS, &c) == 0,
                  "the daemon died of DMA into a file the client shrank after DMA_MAP");
    vfu_client_free(c);
}
END_TEST

static Suite *isolation_suite(void)
{
    Suite *s = suite_create("isolation");
    TCase *tc = tcase_create("hostile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_hostile_clients);
    tcase_add_test(tc, test_second_client_refused);
    tcase_add_test(tc, test_dma_map_past_end_of_file);
    tcase_add_test(tc, test_dma_file_shrunk_after_map);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(isolation_suite());
}
