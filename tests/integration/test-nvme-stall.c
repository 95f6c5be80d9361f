/* SPDX-License-Identifier: MIT */
/*
 * An nvme device whose backing storage hangs: its file is on a FUSE file
 * system of the test's (helpers/stall-fs.h) that stops answering with
 * Reads, Writes and a Flush in flight. A timer device on the same I/O
 * thread goes on answering, DestroyDevice returns at once instead of
 * waiting for the storage, and muserd lets go of the file once the
 * storage answers again. Until then a new device on the file is refused
 * (Busy), so that no late Write of the old device lands over the new
 * one's. Once per "aio" engine. Needs /dev/fuse and root (it mounts):
 * SKIP otherwise.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../plugins/timer/timer-regs.h"
#include "helpers/nvme-check.h"
#include "helpers/nvme-driver.h"
#include "helpers/nvme-files.h"
#include "helpers/side.h"
#include "helpers/stall-fs.h"
#include "helpers/testutil.h"

#define FILE_BYTES (8u << 20)
/* Guest memory: writes from BUF_A, reads into BUF_B, a page per command. */
#define BUF_A 0x200000ull
#define BUF_B 0x400000ull
/* The commands left in flight on the stalled file: Writes and Reads of a
 * page each, and a Flush. */
#define STALLED_RW 4
/* DestroyDevice must answer within this while the storage hangs... */
#define DESTROY_MS 2000
/* ...and fails the call (rather than hang the test) after this. */
#define DESTROY_TIMEOUT_MS 4000
/* muserd must exit within this at SIGTERM while its storage hangs. */
#define STOP_MS 5000
/* What "the other device answers promptly" means. */
#define ANSWER_MS 1000

static const char *const aio_modes[] = {"threads", "io_uring"};

static struct tu_side side;
static struct stall_fs *fs;
static struct vfu_client *client, *timer;
static struct nvme_drv drv;
static char base_dir[PATH_MAX]; /* main() unmounts and removes what is in it */
static char dir[PATH_MAX];
static char mnt[PATH_MAX];

static void setup(void)
{
    tu_make_dir(dir, base_dir);
    tu_path_in(mnt, dir, "mnt");
    ck_assert_int_eq(mkdir(mnt, 0755), 0);
    tu_side_start(&side, (const char *const[]){"nvme", "timer", NULL}, (const char *const[]){NULL});
}

static void stop_io(void)
{
    nvme_drv_free(&drv);
    if (client)
        vfu_client_free(client);
    client = NULL;
}

/* The storage is let go before muserd is stopped, which must then exit
 * cleanly (under ASan: nothing leaked by the destroyed device). */
static void teardown(void)
{
    if (drv.mem)
        stop_io();
    if (timer)
        vfu_client_free(timer);
    timer = NULL;
    stall_fs_stop(fs);
    fs = NULL;
    tu_side_stop(&side);
    tu_remove_dir(dir);
}

/* An assertion that first lets the storage go, so that muserd is not left
 * stuck on it when the test ends here. */
#define check_released(cond, ...)                                                                  \
    do {                                                                                           \
        bool ok_ = (cond);                                                                         \
        if (!ok_) {                                                                                \
            (void)stall_fs_release(fs);                                                            \
            test_daemon_dump_log(side.daemon, 4096);                                               \
        }                                                                                          \
        ck_assert_msg(ok_, __VA_ARGS__);                                                           \
    } while (0)

static uint64_t ms_since(uint64_t start_ns)
{
    return (test_now_ns() - start_ns) / 1000000;
}

/* A device of type with json on side; it must be created. */
static void create(const char *type, const char *id, const char *json)
{
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    int r = tu_side_create(&side, type, id, json, &e);
    if (r < 0)
        test_daemon_dump_log(side.daemon, 4096);
    ck_assert_msg(r >= 0, "CreateDevice %s %s %s: %s: %s", type, id, json, e.name, e.message);
}

/* The config of an nvme device on the file, on I/O thread 0, with engine
 * aio: malloc()ed. */
static char *nvme_json(const char *file, int aio)
{
    char *json = NULL;
    ck_assert_int_ge(asprintf(&json,
                              "{\"backing\": \"%s\", \"queues\": 1, \"io_thread\": 0, "
                              "\"aio\": \"%s\"}",
                              file, aio_modes[aio]),
                     0);
    return json;
}

/* nvme device id of config json; the driver attached to it with one I/O
 * queue pair. */
static void start_nvme_json(const char *id, const char *json)
{
    create("nvme", id, json);
    client = tu_open(side.daemon, id);
    int r = nvme_drv_attach(&drv, client, true, 2);
    ck_assert_msg(r == 0, "attaching the driver: %s", strerror(-r));
    r = nvme_drv_enable(&drv);
    if (r < 0)
        test_daemon_dump_log(side.daemon, 4096);
    ck_assert_msg(r == 0, "enabling the controller: %s", strerror(-r));
    tu_nvme_set_queues(&drv, side.daemon, 1);
    tu_nvme_create_queue(&drv, 1);
}

/* nvme device id on the file, on I/O thread 0, with engine aio, started. */
static void start_nvme(const char *id, const char *file, int aio)
{
    _cleanup_free_ char *json = nvme_json(file, aio);
    start_nvme_json(id, json);
}

/* The page where a destroyed device's Write meets a new device's (its
 * first 512-byte block, 1 MiB into the file), and the patterns written
 * there: A before the stall, B in flight across the destroy, C by the new
 * device. */
#define PAGE_X 2048
enum { SEED_A = 41, SEED_B = 42, SEED_C = 43 };

/* A Read or Write of `pages` 4 KiB pages at slba (512-byte blocks), its data
 * at guest offset buf on (a PRP list for more than two pages at buf +
 * 0x80000, inside the same data area). */
static struct nvme_sqe rw(uint8_t opcode, uint64_t slba, uint32_t pages, uint64_t buf)
{
    uint64_t prp2 = 0;
    if (pages == 2)
        prp2 = nvme_drv_iova(buf + 4096);
    else if (pages > 2)
        prp2 = nvme_drv_prp_list(&drv, buf + 0x80000, buf, pages - 1);
    return nvme_drv_rw(opcode, slba, pages * 8, nvme_drv_iova(buf), prp2);
}

static void cmd_ok(struct nvme_sqe c)
{
    tu_nvme_cmd_ok(&drv, side.daemon, 1, &c, NULL);
}

/* The page at slba becomes pattern seed, through the device. */
static void write_page(uint64_t slba, uint8_t seed)
{
    tu_fill_pat(nvme_drv_ptr(&drv, BUF_A), 4096, seed);
    cmd_ok(rw(NVME_CMD_WRITE, slba, 1, BUF_A));
}

/* The page at slba, read through the device: a pointer into guest memory. */
static const uint8_t *read_page(uint64_t slba)
{
    memset(nvme_drv_ptr(&drv, BUF_B), 0, 4096);
    cmd_ok(rw(NVME_CMD_READ, slba, 1, BUF_B));
    return nvme_drv_ptr(&drv, BUF_B);
}

/* Does buf hold a page of pattern seed? */
static bool is_pat(const uint8_t *buf, uint8_t seed)
{
    for (size_t i = 0; i < 4096; i++)
        if (buf[i] != tu_pat(seed, i))
            return false;
    return true;
}

/* Which of A, B or C the page holds, for a message. */
static const char *pat_name(const uint8_t *buf)
{
    return is_pat(buf, SEED_A)   ? "A"
           : is_pat(buf, SEED_B) ? "B"
           : is_pat(buf, SEED_C) ? "C"
                                 : "none of A, B, C";
}

/* The timer, on the nvme device's I/O thread, answers a few register reads,
 * each within ANSWER_MS (its socket gives up after that). */
static void timer_answers(const char *when)
{
    for (int i = 0; i < 5; i++) {
        uint32_t id = 0;
        uint64_t start = test_now_ns();
        int r = vfu_client_region_read(timer, TIMER_REGS_BAR, TIMER_REG_ID, &id, sizeof(id));
        uint64_t took = ms_since(start);
        check_released(r == 0 && took < ANSWER_MS,
                       "timer t0, on n0's I/O thread, %s: a register read %s after %llu ms "
                       "(its I/O thread is held up)",
                       when, r < 0 ? strerror(-r) : "answered", (unsigned long long)took);
        ck_assert_uint_eq(id, TIMER_ID_MAGIC);
        usleep(20000);
    }
}

/* Nothing came back on CQ 1: the commands are still in flight. */
static void nothing_completed(const char *when)
{
    struct nvme_cqe cqe;
    int n = nvme_drv_poll(&drv, 1, &cqe, 1);
    check_released(n == 0, "%s: a command completed on the stalled file (%d)", when, n);
}

/* DestroyDevice id, with a D-Bus timeout of DESTROY_TIMEOUT_MS: how long it
 * took; r and the error as D-Bus gave them. */
static uint64_t destroy(const char *id, int *r, sd_bus_error *e)
{
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
    ck_assert_int_ge(sd_bus_message_new_method_call(side.bus, &m, "org.muserd1", "/org/muserd1",
                                                    "org.muserd1.Manager", "DestroyDevice"),
                     0);
    ck_assert_int_ge(sd_bus_message_append(m, "s", id), 0);
    uint64_t start = test_now_ns();
    *r = sd_bus_call(side.bus, m, DESTROY_TIMEOUT_MS * 1000ull, e, NULL);
    return ms_since(start);
}

/* How many fds muserd holds on path, after waiting up to timeout_ms for
 * none. */
static int fds_left(const char *path, int timeout_ms)
{
    int writable, n;
    uint64_t start = test_now_ns();
    while ((n = tu_fds_on(side.daemon, path, &writable)) > 0 &&
           ms_since(start) < (uint64_t)timeout_ms)
        usleep(20000);
    return n;
}

/* Mount the stall-fs on mnt, its file's path into file (PATH_MAX bytes).
 * False, after a SKIP line naming test, where FUSE cannot be mounted. */
static bool mount_stall_fs(char *file, const char *test)
{
    int r = stall_fs_start(mnt, "disk.img", FILE_BYTES, &fs);
    if (r == -ENOENT || r == -ENODEV || r == -EPERM || r == -EACCES) {
        printf("test-nvme-stall: %s: SKIP: cannot mount a FUSE file system here: %s (it needs "
               "/dev/fuse and CAP_SYS_ADMIN)\n",
               test, strerror(-r));
        return false;
    }
    ck_assert_msg(r == 0, "mounting the stall-fs on %s: %s", mnt, strerror(-r));
    tu_path_in(file, mnt, "disk.img");
    return true;
}

/* DestroyDevice id while its storage hangs: it answers within DESTROY_MS,
 * without waiting for the commands in flight, and the device is gone. */
static void destroy_promptly(const char *id)
{
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    int r;
    uint64_t took = destroy(id, &r, &e);
    check_released(r >= 0 && took < DESTROY_MS,
                   "DestroyDevice %s while its storage hangs: %s after %llu ms (%s: %s); it must "
                   "answer within %d ms without waiting for the commands in flight",
                   id, r >= 0 ? "answered" : "no answer", (unsigned long long)took, e.name,
                   e.message, DESTROY_MS);
    ck_assert_int_eq(tu_side_device_count(&side, id), 0);
}

/* The storage answers again: what was in flight finishes, and muserd lets
 * go of the file. */
static void release_storage(const char *file)
{
    ck_assert_int_eq(stall_fs_release(fs), 0);
    int open_fds = fds_left(file, TU_TIMEOUT_MS);
    if (open_fds != 0)
        test_daemon_dump_log(side.daemon, 4096);
    ck_assert_msg(open_fds == 0,
                  "muserd still holds %d fds on %s %d ms after its storage answered again",
                  open_fds, file, TU_TIMEOUT_MS);
    ck_assert_int_eq(stall_fs_waiting(fs), 0);
}

START_TEST(test_stalled_storage_isolated)
{
    char file[PATH_MAX];
    if (!mount_stall_fs(file, "test_stalled_storage_isolated"))
        return;

    /* n0 on the file and t0 beside it, on the same I/O thread. */
    start_nvme("n0", file, _i);
    create("timer", "t0", "{\"io_thread\": 0}");
    tu_assert_log_line(side.daemon, "nvme device n0 on", "(I/O thread 0)");
    tu_assert_log_line(side.daemon, "timer device t0 on", "(I/O thread 0)");
    timer = tu_open(side.daemon, "t0");
    ck_assert_int_eq(tu_set_socket_timeout(vfu_client_fd(timer), ANSWER_MS), 0);

    /* The path works while the storage answers: 64 KiB there and back. */
    tu_fill_pat(nvme_drv_ptr(&drv, BUF_A), 65536, 31);
    cmd_ok(rw(NVME_CMD_WRITE, 0, 16, BUF_A));
    memset(nvme_drv_ptr(&drv, BUF_B), 0, 65536);
    cmd_ok(rw(NVME_CMD_READ, 0, 16, BUF_B));
    tu_check_pat(nvme_drv_ptr(&drv, BUF_B), 65536, 31, 0, "64 KiB read back from the stall-fs");
    timer_answers("before the stall");

    /* The storage hangs with Writes, Reads and a Flush in flight. */
    ck_assert_int_eq(stall_fs_stall(fs), 0);
    tu_fill_pat(nvme_drv_ptr(&drv, BUF_A), STALLED_RW * 4096, 32);
    for (uint32_t i = 0; i < STALLED_RW; i++)
        tu_nvme_submit(&drv, 1, rw(NVME_CMD_READ, 8 * i, 1, BUF_B + 4096 * i));
    for (uint32_t i = 0; i < STALLED_RW; i++)
        tu_nvme_submit(&drv, 1, rw(NVME_CMD_WRITE, 1024 + 8 * i, 1, BUF_A + 4096 * i));
    tu_nvme_submit(&drv, 1, (struct nvme_sqe){.opcode = NVME_CMD_FLUSH, .nsid = 1});
    ck_assert_int_eq(nvme_drv_kick(&drv, 1), 0);
    /* The Reads go first and side by side (a FUSE write holds the file's
     * inode lock: the Writes go one at a time): the engine's 4 threads, or
     * io_uring's workers, all wait in the file system. */
    int waiting = stall_fs_wait_for(fs, STALLED_RW, TU_TIMEOUT_MS);
    check_released(waiting >= STALLED_RW, "only %d requests reached the stalled file system",
                   waiting);
    nothing_completed("after the stall");
    timer_answers("while n0's storage hangs");

    /* The destroy does not wait for the storage. */
    destroy_promptly("n0");
    waiting = stall_fs_waiting(fs);
    check_released(waiting >= 1,
                   "the stalled requests finished during the destroy (%d wait): the test did "
                   "not hold the storage",
                   waiting);
    timer_answers("after n0's destroy, its storage still hanging");
    stop_io();

    release_storage(file);
    timer_answers("after the storage came back");

    /* A new device on the file reads what was written before the stall. */
    start_nvme("n0", file, _i);
    memset(nvme_drv_ptr(&drv, BUF_B), 0, 65536);
    cmd_ok(rw(NVME_CMD_READ, 0, 16, BUF_B));
    tu_check_pat(nvme_drv_ptr(&drv, BUF_B), 65536, 31, 0, "64 KiB written before the stall");
}
END_TEST

/* A destroyed device's Write still held by the storage would land on the
 * file after whatever a new device on that file wrote meanwhile: until it
 * is back, CreateDevice on the file says Busy, and once it is, a new
 * device sees it landed and nothing of the old device lands later. */
START_TEST(test_new_device_on_a_held_file_is_busy)
{
    char file[PATH_MAX];
    if (!mount_stall_fs(file, "test_new_device_on_a_held_file_is_busy"))
        return;
    _cleanup_free_ char *json = nvme_json(file, _i);
    start_nvme("n0", file, _i);
    write_page(PAGE_X, SEED_A);

    /* A Write of B reaches the file system and is held there; what comes
     * after it goes through (a new device's open reads the file). */
    ck_assert_int_eq(stall_fs_stall(fs), 0);
    tu_fill_pat(nvme_drv_ptr(&drv, BUF_A), 4096, SEED_B);
    tu_nvme_submit(&drv, 1, rw(NVME_CMD_WRITE, PAGE_X, 1, BUF_A));
    ck_assert_int_eq(nvme_drv_kick(&drv, 1), 0);
    int waiting = stall_fs_wait_for(fs, 1, TU_TIMEOUT_MS);
    check_released(waiting == 1, "%d requests wait in the stalled file system, not n0's Write",
                   waiting);
    ck_assert_int_eq(stall_fs_hold(fs), 0);
    nothing_completed("with n0's Write held");

    destroy_promptly("n0");
    stop_io();
    tu_assert_log_line(side.daemon, "nvme: destroyed with 1 operations in flight on its backing");

    /* The file is refused, in a sentence that names it, and nothing is
     * left of the refused device. */
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    int r = tu_side_create(&side, "nvme", "n1", json, &e);
    check_released(r < 0 && sd_bus_error_has_name(&e, "org.muserd1.Error.Busy"),
                   "CreateDevice n1 on %s with n0's Write held there: %s (%s: %s), not "
                   "org.muserd1.Error.Busy",
                   file, r >= 0 ? "created" : "refused", e.name, e.message);
    check_released(strstr(e.message, file) && strstr(e.message, "in flight"),
                   "the refusal \"%s\" does not name %s and the commands in flight", e.message,
                   file);
    check_released(tu_side_device_count(&side, "n1") == 0, "a device n1 is left after the refusal");
    check_released(access(test_daemon_socket(side.daemon, "n1"), F_OK) < 0,
                   "n1's socket is left after the refusal");
    waiting = stall_fs_waiting(fs);
    check_released(waiting == 1, "%d requests wait, not n0's held Write alone", waiting);

    /* Once the Write is back, the file is n1's: the Write landed before
     * anything of n1's, and nothing of n0's lands after. */
    release_storage(file);
    start_nvme("n1", file, _i);
    const uint8_t *page = read_page(PAGE_X);
    ck_assert_msg(is_pat(page, SEED_B),
                  "n1 reads %s at the page n0's held Write of B went to (A before it): that "
                  "Write had reached the file system, it must have landed before n1 came",
                  pat_name(page));
    write_page(PAGE_X, SEED_C);
    page = read_page(PAGE_X);
    ck_assert_msg(is_pat(page, SEED_C), "n1 wrote C and reads %s back", pat_name(page));
    tu_check_file_pat(file, PAGE_X * 512, 4096, SEED_C, 0, "the file after n1 wrote C");
    usleep(300000);
    page = read_page(PAGE_X);
    ck_assert_msg(is_pat(page, SEED_C), "n1 reads %s, 300 ms after it wrote C", pat_name(page));
    tu_check_file_pat(file, PAGE_X * 512, 4096, SEED_C, 0, "the file, 300 ms after n1 wrote C");
}
END_TEST

/* A Write that waits in the engine's queue, not yet started, when its
 * device is destroyed never runs: it would land on the file whenever the
 * storage answered again, over whatever had been written there since.
 *
 * The thread pool only (4 workers, then a queue of the engine's own). With
 * io_uring nothing here ever waits where the destroy's cancel reaches it:
 * FUSE takes an O_DIRECT Read or Write from io_uring at submit, as
 * asynchronous direct I/O, with no io-wq worker (two Writes of one device
 * wait in the stall-fs side by side, and muserd has no iou-wrk thread), so
 * each is started, in the file system, and lands once it answers. Where a
 * request does go to io-wq, what a worker has started cannot be stopped,
 * and a request blocked in a worker (on the inode's lock) looks to the
 * file system like one still queued: the test could not tell which it
 * left. test_new_device_on_a_held_file_is_busy covers io_uring's cancel
 * meeting a started Write: the Write lands, before the file is free. */
START_TEST(test_queued_write_never_lands)
{
    char file[PATH_MAX];
    if (!mount_stall_fs(file, "test_queued_write_never_lands"))
        return;
    start_nvme("n0", file, _i);
    write_page(PAGE_X, SEED_A);

    /* Reads take the pool's 4 workers, each waiting in the stalled file
     * system... */
    ck_assert_int_eq(stall_fs_stall(fs), 0);
    for (uint32_t i = 0; i < STALLED_RW; i++)
        tu_nvme_submit(&drv, 1, rw(NVME_CMD_READ, 8 * i, 1, BUF_B + 4096 * i));
    ck_assert_int_eq(nvme_drv_kick(&drv, 1), 0);
    int waiting = stall_fs_wait_for(fs, STALLED_RW, TU_TIMEOUT_MS);
    check_released(waiting == STALLED_RW, "%d of n0's %d Reads wait in the stalled file system",
                   waiting, STALLED_RW);
    /* ...and a Write of B waits in the pool's queue behind them. An admin
     * command answered means a poll round has seen the I/O queue's doorbell,
     * rung before the admin one, too (a round runs the admin queue, then
     * the I/O queues); the destroy's log line counts the Write in flight. */
    tu_fill_pat(nvme_drv_ptr(&drv, BUF_A), 4096, SEED_B);
    tu_nvme_submit(&drv, 1, rw(NVME_CMD_WRITE, PAGE_X, 1, BUF_A));
    ck_assert_int_eq(nvme_drv_kick(&drv, 1), 0);
    (void)tu_nvme_identify(&drv, side.daemon, NVME_ID_CNS_CTRL, 0);
    usleep(100000);
    waiting = stall_fs_waiting(fs);
    check_released(waiting == STALLED_RW,
                   "%d requests wait in the stalled file system: n0's Write did not stay queued "
                   "behind its %d Reads",
                   waiting, STALLED_RW);
    nothing_completed("with n0's Reads stalled and its Write queued");

    destroy_promptly("n0");
    stop_io();
    /* The Write was in flight, in the queue, when n0 went. */
    tu_assert_log_line(side.daemon, "nvme: destroyed with 5 operations in flight on its backing");

    release_storage(file);
    _cleanup_free_ uint8_t *page = tu_read_file(file, PAGE_X * 512, 4096);
    ck_assert_msg(is_pat(page, SEED_A),
                  "the file holds %s at the page n0's queued Write of B went to (A before it): "
                  "a request not started when its device was destroyed ran after all",
                  pat_name(page));
}
END_TEST

/* CreateDevice of nvme id with json: refused with Busy (busy) or created. */
static void expect_create(const char *id, const char *json, bool busy, const char *why)
{
    _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
    int r = tu_side_create(&side, "nvme", id, json, &e);
    if (busy)
        check_released(r < 0 && sd_bus_error_has_name(&e, "org.muserd1.Error.Busy"),
                       "CreateDevice %s %s (%s): %s (%s: %s), not org.muserd1.Error.Busy", id, json,
                       why, r >= 0 ? "created" : "refused", e.name, e.message);
    else
        check_released(r >= 0, "CreateDevice %s %s (%s): %s: %s", id, json, why, e.name, e.message);
}

/* Only a file with writes of a destroyed device in flight is held: not one
 * with a Read alone in flight (a read cannot land on a new device's data),
 * nor the device's other, healthy file. */
START_TEST(test_only_files_written_are_held)
{
    char file[PATH_MAX], healthy[PATH_MAX];
    if (!mount_stall_fs(file, "test_only_files_written_are_held"))
        return;
    tu_make_file(tu_path_in(healthy, dir, "healthy.img"), FILE_BYTES);
    _cleanup_free_ char *both = NULL, *on_stalled = nvme_json(file, _i),
                        *on_healthy = nvme_json(healthy, _i);
    ck_assert_int_ge(asprintf(&both,
                              "{\"backing\": \"%s\", \"ns2_backing\": \"%s\", \"queues\": 1, "
                              "\"io_thread\": 0, \"aio\": \"%s\"}",
                              file, healthy, aio_modes[_i]),
                     0);

    /* A Read held on the stalled file. */
    start_nvme_json("n0", both);
    write_page(PAGE_X, SEED_A);
    ck_assert_int_eq(stall_fs_stall(fs), 0);
    tu_nvme_submit(&drv, 1, rw(NVME_CMD_READ, PAGE_X, 1, BUF_B));
    ck_assert_int_eq(nvme_drv_kick(&drv, 1), 0);
    int waiting = stall_fs_wait_for(fs, 1, TU_TIMEOUT_MS);
    check_released(waiting == 1, "%d requests wait in the stalled file system, not n0's Read",
                   waiting);
    ck_assert_int_eq(stall_fs_hold(fs), 0);
    destroy_promptly("n0");
    stop_io();
    expect_create("n1", on_stalled, false, "n0 left only a Read in flight on it");
    destroy_promptly("n1");

    /* Then a Write held there: that file is refused, the healthy one is not. */
    start_nvme_json("n2", both);
    ck_assert_int_eq(stall_fs_stall(fs), 0);
    tu_fill_pat(nvme_drv_ptr(&drv, BUF_A), 4096, SEED_B);
    tu_nvme_submit(&drv, 1, rw(NVME_CMD_WRITE, PAGE_X, 1, BUF_A));
    ck_assert_int_eq(nvme_drv_kick(&drv, 1), 0);
    waiting = stall_fs_wait_for(fs, 2, TU_TIMEOUT_MS);
    check_released(waiting == 2, "%d requests wait, not n0's Read and n2's Write", waiting);
    ck_assert_int_eq(stall_fs_hold(fs), 0);
    destroy_promptly("n2");
    stop_io();
    expect_create("n3", on_healthy, false, "n2 had nothing in flight on it");
    expect_create("n4", on_stalled, true, "n2's Write is held on it");
    release_storage(file);
    expect_create("n4", on_stalled, false, "n2's Write came back");
}
END_TEST

/* The queues (8) and commands per queue (the driver's most) of
 * test_ram_namespace_goes_on: HUNG_QUEUES of them fill the backing files'
 * in-flight limit (256) and more with Writes to the hung namespace. */
#define MANY_QUEUES 8
#define HUNG_QUEUES 5
#define PER_QUEUE   (NVME_DRV_QDEPTH - 1)

/* A controller with a RAM namespace and one on storage that hangs, its
 * backing files' in-flight limit full of Writes there: a Read and a Write
 * of the RAM namespace, on a queue of their own, still complete at once. */
START_TEST(test_ram_namespace_goes_on)
{
    char file[PATH_MAX];
    if (!mount_stall_fs(file, "test_ram_namespace_goes_on"))
        return;
    _cleanup_free_ char *json = NULL;
    ck_assert_int_ge(asprintf(&json,
                              "{\"size\": 8388608, \"ns2_backing\": \"%s\", \"queues\": %d, "
                              "\"io_thread\": 0, \"aio\": \"%s\"}",
                              file, MANY_QUEUES, aio_modes[_i]),
                     0);
    create("nvme", "n0", json);
    client = tu_open(side.daemon, "n0");
    ck_assert_int_eq(nvme_drv_attach(&drv, client, true, MANY_QUEUES + 1), 0);
    ck_assert_int_eq(nvme_drv_enable(&drv), 0);
    tu_nvme_set_queues(&drv, side.daemon, MANY_QUEUES);
    for (uint16_t q = 1; q <= MANY_QUEUES; q++)
        tu_nvme_create_queue(&drv, q);

    ck_assert_int_eq(stall_fs_stall(fs), 0);
    tu_fill_pat(nvme_drv_ptr(&drv, BUF_A), 4096, SEED_B);
    uint16_t cids[HUNG_QUEUES + 1][PER_QUEUE];
    for (uint16_t q = 1; q <= HUNG_QUEUES; q++) {
        for (int k = 0; k < PER_QUEUE; k++) {
            struct nvme_sqe c = rw(NVME_CMD_WRITE, (uint64_t)(q * PER_QUEUE + k) * 8, 1, BUF_A);
            c.nsid = 2;
            cids[q][k] = tu_nvme_submit(&drv, q, c);
        }
        ck_assert_int_eq(nvme_drv_kick(&drv, q), 0);
    }
    int waiting = stall_fs_wait_for(fs, 1, TU_TIMEOUT_MS);
    check_released(waiting >= 1, "no Write waits in the stalled file system");
    usleep(200000); /* muserd fetches up to its limit meanwhile */

    uint16_t q = MANY_QUEUES, status = 0xffff;
    for (int k = 0; k < 2; k++) {
        struct nvme_sqe c =
            k == 0 ? rw(NVME_CMD_WRITE, 64, 1, BUF_A) : rw(NVME_CMD_READ, 64, 1, BUF_B);
        uint16_t cid = tu_nvme_submit(&drv, q, c);
        ck_assert_int_eq(nvme_drv_kick(&drv, q), 0);
        struct nvme_cqe cqe;
        uint64_t start = test_now_ns();
        int r = nvme_drv_reap(&drv, q, &cqe, ANSWER_MS);
        check_released(r == 0 && cqe.cid == cid && (status = nvme_drv_status(&cqe)) == 0,
                       "a %s of the RAM namespace beside %d Writes held on the hung one: %s "
                       "after %llu ms, status %#x",
                       k == 0 ? "Write" : "Read", HUNG_QUEUES * PER_QUEUE,
                       r < 0 ? strerror(-r) : "completed", (unsigned long long)ms_since(start),
                       status);
    }
    ck_assert_msg(is_pat(nvme_drv_ptr(&drv, BUF_B), SEED_B), "the RAM namespace reads back %s",
                  pat_name(nvme_drv_ptr(&drv, BUF_B)));

    ck_assert_int_eq(stall_fs_release(fs), 0);
    for (q = 1; q <= HUNG_QUEUES; q++)
        tu_nvme_reap_all(&drv, side.daemon, q, cids[q], PER_QUEUE);
}
END_TEST

/* muserd's stop (SIGTERM) with a device whose storage hangs, a Write and a
 * Read in flight: it exits 0 within STOP_MS, without waiting for the
 * storage (the plugin stays mapped for what is still in flight; under
 * ASan, the commands in flight are still reachable, so no leak is said).
 *
 * io_uring only: the pool's workers sit in a FUSE read or write that the
 * file system has taken, which the kernel lets no signal interrupt, so the
 * process cannot end before the file system answers (as with a hard NFS
 * mount); io_uring's direct I/O to FUSE does not hold a thread there. */
START_TEST(test_stop_while_storage_hangs)
{
    char file[PATH_MAX];
    if (!mount_stall_fs(file, "test_stop_while_storage_hangs"))
        return;
    start_nvme("n0", file, _i);
    write_page(PAGE_X, SEED_A);
    ck_assert_int_eq(stall_fs_stall(fs), 0);
    tu_fill_pat(nvme_drv_ptr(&drv, BUF_A), 4096, SEED_B);
    tu_nvme_submit(&drv, 1, rw(NVME_CMD_READ, PAGE_X + 8, 1, BUF_B));
    tu_nvme_submit(&drv, 1, rw(NVME_CMD_WRITE, PAGE_X, 1, BUF_A));
    ck_assert_int_eq(nvme_drv_kick(&drv, 1), 0);
    int waiting = stall_fs_wait_for(fs, 1, TU_TIMEOUT_MS);
    check_released(waiting >= 1, "nothing waits in the stalled file system");
    stop_io();

    int status = -1;
    uint64_t start = test_now_ns();
    int r = test_daemon_stop(side.daemon, 2 * STOP_MS, &status);
    uint64_t took = ms_since(start);
    check_released(r == 0 && took < STOP_MS,
                   "muserd's stop with its storage hanging: %s after %llu ms; it must exit "
                   "within %d ms without waiting for the storage",
                   r == 0 ? "exited" : strerror(-r), (unsigned long long)took, STOP_MS);
    check_released(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                   "muserd's stop with its storage hanging: status %#x, not exit 0", status);
    ck_assert_int_eq(stall_fs_release(fs), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nvme-stall");
    TCase *tc = tcase_create("stall");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_stalled_storage_isolated, 0,
                        (int)(sizeof(aio_modes) / sizeof(aio_modes[0])));
    tcase_add_loop_test(tc, test_new_device_on_a_held_file_is_busy, 0,
                        (int)(sizeof(aio_modes) / sizeof(aio_modes[0])));
    /* "threads" only: see test_queued_write_never_lands. */
    tcase_add_loop_test(tc, test_queued_write_never_lands, 0, 1);
    tcase_add_loop_test(tc, test_only_files_written_are_held, 0,
                        (int)(sizeof(aio_modes) / sizeof(aio_modes[0])));
    tcase_add_loop_test(tc, test_ram_namespace_goes_on, 0,
                        (int)(sizeof(aio_modes) / sizeof(aio_modes[0])));
    /* "io_uring" only: see test_stop_while_storage_hangs. */
    tcase_add_loop_test(tc, test_stop_while_storage_hangs, 1, 2);
    suite_add_tcase(s, tc);

    strcpy(base_dir, "/tmp/muserd-stall-XXXXXX");
    if (!mkdtemp(base_dir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    int r = tu_run_suite(s);
    /* A test that failed ended without its teardown: its mount may be left. */
    stall_fs_unmount_under(base_dir);
    tu_remove_tree(base_dir);
    return r;
}
