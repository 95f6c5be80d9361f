/* SPDX-License-Identifier: MIT */
/*
 * The nvme device against SPDK's own vfio-user NVMe target, in the same run:
 * spdk_nvme_perf (core 1, -c 0x2) does 4 KiB random reads and random writes
 * against (a) muserd's nvme device (a 256 MiB RAM namespace of 4 KiB blocks;
 * muserd pinned to core 0 with one I/O thread) and (b) nvmf_tgt with the
 * VFIOUSER transport and a 256 MiB malloc bdev of 4 KiB blocks (-m 0x1, core
 * 0). For QD1 and QD32 per queue, on 1 and on 4 I/O queues (perf's -P; the
 * queues share perf's one core and the target's one core), it prints IOPS,
 * average and p99 latency (perf's -L summary) for both and the ratio
 * muserd/SPDK of IOPS against the goal (>= 1.0). Each measurement runs
 * 3 seconds; the better of 2 rounds counts, the rounds alternating which
 * target goes first. Only one of the two polls at a time: nvmf_tgt runs only
 * for its half of a round, and muserd's device stops polling 2 ms after its
 * last command.
 *
 * SPDK comes from $SPDK_DIR (make passes ../shared/spdk when it is there);
 * without it, or without CPUs 0 and 1, the bench says SKIP and exits 0. It
 * fails only when something does not start, perf errors or a target does
 * not exit cleanly; never because a number is low.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../integration/helpers/testutil.h"
#include "util/macro.h"

#define NS_BYTES   (256u << 20) /* as vfiouser-malloc.json: 65536 blocks of 4 KiB */
#define SECONDS    3
#define ROUNDS     2
#define GOAL_RATIO 1.0
#define SUBNQN     "nqn.2019-07.io.spdk:cnode0"

DEFINE_FREEP(struct test_daemon, test_daemon_free)

enum target { MUSERD, SPDK, N_TARGETS };
static const char *const target_names[N_TARGETS] = {"muserd", "SPDK"};

struct perf_case {
    const char *workload; /* perf's -w */
    unsigned qd;          /* per queue */
    unsigned queues;      /* perf's -P */
    unsigned io_size;     /* perf's -o */
    int seconds;          /* perf's -t */
};

static const struct perf_case cases[] = {
    {"randread", 1, 1, 4096, SECONDS},  {"randread", 32, 1, 4096, SECONDS},
    {"randwrite", 1, 1, 4096, SECONDS}, {"randwrite", 32, 1, 4096, SECONDS},
    {"randread", 1, 4, 4096, SECONDS},  {"randread", 32, 4, 4096, SECONDS},
    {"randwrite", 1, 4, 4096, SECONDS}, {"randwrite", 32, 4, 4096, SECONDS},
};
#define N_CASES ELEMENTSOF(cases)
/* Before the cases: every block written once (a second of 128 KiB writes
 * wraps the namespace many times), so that neither target pays for first
 * touches of its memory, nor serves reads from pages never written. */
static const struct perf_case warmup = {"write", 32, 1, 128 << 10, 1};

/* What perf's Total line and latency summary say. */
struct perf_result {
    double iops, avg_us, p99_us;
};

static const char *spdk_dir;

/* ---- running perf ---------------------------------------------------------- */

/* Run cmd through the shell, both output streams into *out (malloc()ed):
 * the wait status, or -1. */
static int run_capture(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t len = 0, cap = 65536, n;
    char *buf = malloc(cap);
    while (buf && (n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 4096) {
            char *b = realloc(buf, cap *= 2);
            if (!b)
                free(buf);
            buf = b;
        }
    }
    int status = pclose(p);
    if (!buf)
        return -1;
    buf[len] = 0;
    *out = buf;
    return status;
}

/*
 * Parse perf's output:
 *   Total                      :  IOPS  MiB/s  Average  min  max
 * (latencies in us) and, from -L's "Summary latency data" of the one
 * namespace and core, the line " 99.00000% :  N.NNNus". 0, or -EINVAL.
 */
static int parse_perf(const char *out, struct perf_result *res)
{
    const char *total = strstr(out, "\nTotal");
    const char *colon = total ? strchr(total, ':') : NULL;
    double mibs;
    if (!colon || sscanf(colon + 1, "%lf %lf %lf", &res->iops, &mibs, &res->avg_us) != 3)
        return -EINVAL;
    const char *summary = strstr(out, "Summary latency data");
    const char *p99 = summary ? strstr(summary, " 99.00000% :") : NULL;
    if (!p99 || sscanf(p99 + strlen(" 99.00000% :"), "%lf", &res->p99_us) != 1)
        return -EINVAL;
    return res->iops > 0 ? 0 : -EINVAL;
}

/* One spdk_nvme_perf run of c against the server whose socket is traddr/cntrl. */
static int run_perf(const char *traddr, const struct perf_case *c, struct perf_result *res)
{
    _cleanup_free_ char *cmd = NULL, *out = NULL;
    if (asprintf(&cmd,
                 "timeout %d %s/bin/spdk_nvme_perf --no-huge -s 512 -c 0x2 "
                 "-r 'trtype:VFIOUSER traddr:%s subnqn:" SUBNQN "' "
                 "-o %u -w %s -q %u -P %u -t %d -L 2>&1",
                 c->seconds + 30, spdk_dir, traddr, c->io_size, c->workload, c->qd * c->queues,
                 c->queues, c->seconds) < 0)
        return -ENOMEM;
    int status = run_capture(cmd, &out);
    if (status < 0)
        return -EIO;
    int r = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? parse_perf(out, res) : -EIO;
    if (r < 0)
        fprintf(stderr, "bench-nvme: %s failed:\n%s\n", cmd, out);
    return r;
}

/* ---- SPDK's nvmf_tgt ------------------------------------------------------- */

struct spdk_tgt {
    pid_t pid;
    char dir[PATH_MAX]; /* the traddr: nvmf_tgt makes its socket cntrl here */
    char cfg[PATH_MAX], log[PATH_MAX];
};

static void dump_file(const char *path)
{
    _cleanup_free_ char *cmd = NULL;
    if (asprintf(&cmd, "tail -c 8192 '%s' >&2", path) >= 0 && system(cmd) != 0)
        fprintf(stderr, "bench-nvme: cannot show %s\n", path);
}

/* vfiouser-malloc.json with @DIR@ replaced by dir, written to t->cfg. */
static int write_config(struct spdk_tgt *t)
{
    _cleanup_free_ char *src = NULL, *json = NULL;
    if (asprintf(&src, "%s/vfiouser-malloc.json", spdk_dir) < 0)
        return -ENOMEM;
    FILE *in = fopen(src, "re");
    if (!in)
        return -errno;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, in);
    fclose(in);
    buf[n] = 0;
    char *at = strstr(buf, "@DIR@");
    if (!at)
        return -EINVAL;
    *at = 0;
    if (asprintf(&json, "%s%s%s", buf, t->dir, at + strlen("@DIR@")) < 0)
        return -ENOMEM;
    FILE *out = fopen(t->cfg, "we");
    if (!out)
        return -errno;
    bool ok = fputs(json, out) >= 0;
    return fclose(out) == 0 && ok ? 0 : -EIO;
}

/* Start nvmf_tgt on core 0 and wait for DIR/cntrl. */
static int spdk_tgt_start(struct spdk_tgt *t)
{
    char bin[PATH_MAX], rpc[PATH_MAX + 16], sock[PATH_MAX + 16];
    snprintf(bin, sizeof(bin), "%s/bin/nvmf_tgt", spdk_dir);
    snprintf(rpc, sizeof(rpc), "%s/rpc.sock", t->dir);
    snprintf(sock, sizeof(sock), "%s/cntrl", t->dir);
    int r = write_config(t);
    if (r < 0)
        return r;
    int log_fd = open(t->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0)
        return -errno;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(log_fd);
        return -errno;
    }
    if (pid == 0) {
        /* Never left behind, even when the bench crashes. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent || dup2(log_fd, STDOUT_FILENO) < 0 ||
            dup2(log_fd, STDERR_FILENO) < 0)
            _exit(127);
        execl(bin, bin, "-m", "0x1", "--disable-cpumask-locks", "--no-huge", "-s", "1024", "-r",
              rpc, "-c", t->cfg, (char *)NULL);
        fprintf(stderr, "exec %s: %m\n", bin);
        _exit(127);
    }
    close(log_fd);
    t->pid = pid;
    uint64_t end = test_now_ns() + 30 * 1000000000ull;
    while (access(sock, F_OK) != 0) {
        bool exited = waitpid(pid, NULL, WNOHANG) == pid;
        if (exited || test_now_ns() > end) {
            if (!exited) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
            }
            t->pid = 0;
            fprintf(stderr, "bench-nvme: nvmf_tgt did not start:\n");
            dump_file(t->log);
            return -ECHILD;
        }
        usleep(10000);
    }
    /* The listener is the config's last step; let it settle. */
    usleep(200000);
    return 0;
}

/* SIGINT, as SPDK's apps want, and a clean exit within 30 s. */
static int spdk_tgt_stop(struct spdk_tgt *t)
{
    if (t->pid <= 0)
        return 0;
    int status = 0;
    kill(t->pid, SIGINT);
    uint64_t end = test_now_ns() + 30 * 1000000000ull;
    pid_t r;
    while ((r = waitpid(t->pid, &status, WNOHANG)) == 0 && test_now_ns() < end)
        usleep(10000);
    if (r == 0) {
        kill(t->pid, SIGKILL);
        waitpid(t->pid, &status, 0);
    }
    t->pid = 0;
    if (r == 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench-nvme: nvmf_tgt did not exit cleanly at SIGINT (status %#x):\n",
                status);
        dump_file(t->log);
        return -EIO;
    }
    return 0;
}

/* ---- the bench -------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path) < 0 ? -1 : 0;
}

/* A directory holding `cntrl`, a link to the device's socket: SPDK's traddr. */
static int muserd_traddr(struct test_daemon *d, char *dir, size_t size)
{
    char link[PATH_MAX + 8];
    snprintf(dir, size, "%s/spdk-nv0", test_daemon_runtime_dir(d));
    snprintf(link, sizeof(link), "%s/cntrl", dir);
    if (mkdir(dir, 0700) < 0 || symlink(test_daemon_socket(d, "nv0"), link) < 0)
        return -errno;
    return 0;
}

static int start_muserd(struct test_daemon **ret)
{
    _cleanup_(test_daemon_freep) struct test_daemon *d = NULL;
    char cfg[128];
    snprintf(cfg, sizeof(cfg), "{\"size\": %u, \"block_size\": 4096, \"queues\": 8}", NS_BYTES);
    /* taskset execs muserd in place: all its threads on core 0. */
    const char *const wrapper[] = {"taskset", "-c", "0", NULL};
    int r;
    if ((r = test_daemon_new(&d)) < 0 || (r = test_daemon_set_wrapper(d, wrapper)) < 0 ||
        (r = test_daemon_add_arg(d, "--no-bus")) < 0 ||
        (r = test_daemon_add_arg(d, "--io-threads")) < 0 || (r = test_daemon_add_arg(d, "1")) < 0 ||
        (r = test_daemon_add_arg(d, "--log-level")) < 0 ||
        (r = test_daemon_add_arg(d, "warning")) < 0 ||
        (r = test_daemon_add_device(d, "nvme", "nv0", cfg)) < 0 || (r = test_daemon_start(d)) < 0 ||
        (r = test_daemon_wait_ready(d, 30000)) < 0) {
        fprintf(stderr, "bench-nvme: cannot start muserd: %s\n", strerror(-r));
        if (d)
            test_daemon_dump_log(d, 4096);
        return r;
    }
    *ret = TAKE_PTR(d);
    return 0;
}

/* Every case against one target; the better round's numbers stay in best. */
static int run_cases(const char *traddr, struct perf_result best[N_CASES])
{
    struct perf_result ignored;
    int r = run_perf(traddr, &warmup, &ignored);
    if (r < 0)
        return r;
    for (size_t i = 0; i < N_CASES; i++) {
        struct perf_result res;
        r = run_perf(traddr, &cases[i], &res);
        if (r < 0)
            return r;
        if (res.iops > best[i].iops)
            best[i] = res;
    }
    return 0;
}

static bool have_cpus_0_and_1(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    return sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_ISSET(0, &set) && CPU_ISSET(1, &set);
}

static void print_results(struct perf_result best[N_TARGETS][N_CASES])
{
    printf("bench-nvme: spdk_nvme_perf 4 KiB random I/O, core 1; targets on core 0: muserd's "
           "nvme (%u MiB RAM namespace) and SPDK's nvmf_tgt (VFIOUSER, %u MiB malloc bdev); "
           "%d s each, best of %d; latencies in us\n",
           NS_BYTES >> 20, NS_BYTES >> 20, SECONDS, ROUNDS);
    for (size_t i = 0; i < N_CASES; i++) {
        const struct perf_result *m = &best[MUSERD][i], *s = &best[SPDK][i];
        double ratio = m->iops / s->iops;
        printf("  %-9s QD%-2u x%u queue%s: muserd %8.0f IOPS avg %6.2f p99 %6.2f | SPDK %8.0f "
               "IOPS avg %6.2f p99 %6.2f | ratio %.2f (goal >= %.1f) %s\n",
               cases[i].workload, cases[i].qd, cases[i].queues, cases[i].queues > 1 ? "s" : " ",
               m->iops, m->avg_us, m->p99_us, s->iops, s->avg_us, s->p99_us, ratio, GOAL_RATIO,
               ratio >= GOAL_RATIO ? "met" : "below");
    }
}

/* Both targets, round after round, with nvmf_tgt's files in top. */
static int bench_in(const char *top)
{
    _cleanup_(test_daemon_freep) struct test_daemon *d = NULL;
    struct perf_result best[N_TARGETS][N_CASES] = {0};
    char muserd_dir[PATH_MAX];
    struct spdk_tgt tgt = {0};
    int r;

    snprintf(tgt.dir, sizeof(tgt.dir), "%s/spdk", top);
    snprintf(tgt.cfg, sizeof(tgt.cfg), "%s/nvmf.json", top);
    snprintf(tgt.log, sizeof(tgt.log), "%s/nvmf_tgt.log", top);
    if (mkdir(tgt.dir, 0700) < 0)
        return -errno;
    if ((r = start_muserd(&d)) < 0)
        return r;
    if ((r = muserd_traddr(d, muserd_dir, sizeof(muserd_dir))) < 0) {
        fprintf(stderr, "bench-nvme: traddr directory: %s\n", strerror(-r));
        return r;
    }

    for (int round = 0; round < ROUNDS; round++)
        for (int k = 0; k < N_TARGETS; k++) {
            enum target t = (enum target)((k + round) % N_TARGETS);
            if (t == MUSERD) {
                r = run_cases(muserd_dir, best[MUSERD]);
                if (r < 0)
                    test_daemon_dump_log(d, 4096);
            } else if ((r = spdk_tgt_start(&tgt)) >= 0) {
                r = run_cases(tgt.dir, best[SPDK]);
                int r2 = spdk_tgt_stop(&tgt);
                r = r < 0 ? r : r2;
            }
            if (r < 0) {
                (void)spdk_tgt_stop(&tgt);
                fprintf(stderr, "bench-nvme: round %d against %s failed\n", round + 1,
                        target_names[t]);
                return r;
            }
        }
    print_results(best);

    int status = 0;
    r = test_daemon_stop(d, 30000, &status);
    if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench-nvme: muserd did not exit cleanly (status %#x)\n", status);
        test_daemon_dump_log(d, 8192);
        return r < 0 ? r : -EIO;
    }
    return 0;
}

static int bench(void)
{
    const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char top[1024];
    snprintf(top, sizeof(top), "%s/bench-nvme-XXXXXX", tmp);
    if (!mkdtemp(top)) {
        fprintf(stderr, "bench-nvme: mkdtemp in %s: %m\n", tmp);
        return -EIO;
    }
    int r = bench_in(top);
    nftw(top, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return r;
}

int main(void)
{
    spdk_dir = getenv("SPDK_DIR");
    char perf[PATH_MAX], tgt[PATH_MAX];
    snprintf(perf, sizeof(perf), "%s/bin/spdk_nvme_perf", spdk_dir ? spdk_dir : "");
    snprintf(tgt, sizeof(tgt), "%s/bin/nvmf_tgt", spdk_dir ? spdk_dir : "");
    if (!spdk_dir || !*spdk_dir || access(perf, X_OK) != 0 || access(tgt, X_OK) != 0) {
        printf("bench-nvme: SKIP: no SPDK (set SPDK_DIR to a directory with bin/spdk_nvme_perf "
               "and bin/nvmf_tgt; make passes ../shared/spdk when it exists)\n");
        return EXIT_SUCCESS;
    }
    if (!tu_cpu_runs(perf) || !tu_cpu_runs(tgt)) {
        printf("bench-nvme: SKIP: SPDK's programs die of SIGILL here: this SPDK build needs CPU "
               "instructions (AVX-512?) this machine lacks\n");
        return EXIT_SUCCESS;
    }
    if (!have_cpus_0_and_1()) {
        printf("bench-nvme: SKIP: needs CPUs 0 and 1 (target on 0, perf on 1)\n");
        return EXIT_SUCCESS;
    }
    return bench() < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
