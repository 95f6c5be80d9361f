/* SPDX-License-Identifier: MIT */
#include "guest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/macro.h"

DEFINE_FREEP(FILE, fclose)
#define _cleanup_fclose_ _cleanup_(fclosep)

/* ---- finding QEMU and the image ---------------------------------------------- */

/* QEMU >= 10.1 (vfio-user-pci) at path? */
static bool qemu_usable(const char *path)
{
    const char *argv[] = {path, "--version", NULL};
    struct tu_child c;
    int major = 0, minor = 0;
    bool ok = false;

    if (access(path, X_OK) < 0 || tu_child_start(&c, argv, NULL) < 0)
        return false;
    if (tu_child_wait(&c, 10000) == 0) {
        const char *v = strstr(tu_child_stdout(&c), "version ");
        ok = v && sscanf(v, "version %d.%d", &major, &minor) == 2 &&
             (major > 10 || (major == 10 && minor >= 1));
    }
    tu_child_free(&c);
    return ok;
}

static int qemu_on_path(char *buf, size_t size)
{
    const char *path = getenv("PATH");
    _cleanup_free_ char *dirs = strdup(path ? path : "/usr/bin:/bin");

    if (!dirs)
        return -ENOMEM;
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char p[512];
        snprintf(p, sizeof(p), "%s/qemu-system-x86_64", d);
        if (qemu_usable(p)) {
            snprintf(buf, size, "%s", p);
            return 0;
        }
    }
    return -ENOENT;
}

int qemu_find(char *buf, size_t size)
{
    const char *env = getenv("QEMU");
    /* The CI clone has ../shared beside the source tree; tests run from it. */
    const char *shared = "../shared/qemu/bin/qemu-system-x86_64";

    if (env && *env) {
        if (!qemu_usable(env))
            return -ENOENT; /* an explicit $QEMU that does not work is not replaced */
        snprintf(buf, size, "%s", env);
        return 0;
    }
    if (qemu_usable(shared)) {
        snprintf(buf, size, "%s", shared);
        return 0;
    }
    return qemu_on_path(buf, size);
}

int guest_image_find(char *buf, size_t size)
{
    const char *dir = getenv("MUSERD_GUEST_DIR");
    const char *files[] = {"vmlinuz", "initrd.gz"};

    snprintf(buf, size, "%s", dir && *dir ? dir : "build/guest");
    for (size_t i = 0; i < ELEMENTSOF(files); i++) {
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", buf, files[i]);
        if (access(p, R_OK) < 0)
            return -errno;
    }
    return 0;
}

/* ---- the QEMU command line --------------------------------------------------- */

/* argv for execv(), with the strings we formatted for it. */
struct qemu_argv {
    const char **v;
    char **owned;
    size_t n, nr_owned, cap;
    int r; /* the first error */
};

static void arg(struct qemu_argv *a, const char *s)
{
    if (a->n + 1 < a->cap)
        a->v[a->n++] = s;
    else
        a->r = -E2BIG;
}

static void argf(struct qemu_argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void argf(struct qemu_argv *a, const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        a->r = -ENOMEM;
        return;
    }
    a->owned[a->nr_owned++] = s;
    arg(a, s);
}

/* Any number of fixed arguments, up to a NULL. */
__attribute__((sentinel)) static void args(struct qemu_argv *a, ...)
{
    va_list ap;

    va_start(ap, a);
    for (const char *s; (s = va_arg(ap, const char *));)
        arg(a, s);
    va_end(ap);
}

static void build_argv(struct qemu_argv *a, const struct qemu_guest_config *cfg)
{
    args(a, cfg->qemu, "-M", "q35", "-accel", "tcg", "-m", NULL);
    argf(a, "%uM", cfg->mem_mib);
    if (cfg->smp) {
        arg(a, "-smp");
        argf(a, "%u", cfg->smp);
    }
    args(a, "-nodefaults", "-display", "none", "-no-reboot", "-serial", NULL);
    argf(a, "file:%s", cfg->serial_path);
    arg(a, "-kernel");
    argf(a, "%s/vmlinuz", cfg->image_dir);
    arg(a, "-initrd");
    argf(a, "%s/initrd.gz", cfg->image_dir);
    /* iomem=relaxed: the guest's /init pokes BARs of bound devices with devmem. */
    arg(a, "-append");
    argf(a, "console=ttyS0 panic=-1 quiet iomem=relaxed %s", cfg->cmdline ? cfg->cmdline : "");
    if (cfg->memory != QEMU_GUEST_MEMORY_PRIVATE) {
        arg(a, "-object");
        argf(a, "memory-backend-memfd,id=mem,size=%uM,share=on%s", cfg->mem_mib,
             cfg->memory == QEMU_GUEST_MEMORY_HUGETLB ? ",hugetlb=on,hugetlbsize=2M" : "");
        args(a, "-machine", "memory-backend=mem", NULL);
    }
    for (size_t i = 0; i < cfg->nr_devs; i++) {
        /* TCG on a loaded machine is slow: a generous reply timeout. */
        arg(a, "-device");
        argf(a,
             "{\"driver\":\"vfio-user-pci\",\"socket\":{\"type\":\"unix\",\"path\":\"%s\"},"
             "\"addr\":\"%s\",\"x-msg-timeout\":30000}",
             cfg->devs[i].socket, cfg->devs[i].addr);
    }
    a->v[a->n] = NULL;
}

int qemu_guest_start(const struct qemu_guest_config *cfg, struct tu_child *c)
{
    /* Room for build_argv()'s 25 arguments at most, 2 per device and the NULL. */
    size_t cap = 26 + 2 * cfg->nr_devs;
    struct qemu_argv a = {.v = calloc(cap, sizeof(*a.v)), .owned = calloc(cap, sizeof(char *))};
    int r = -ENOMEM;

    if (a.v && a.owned) {
        a.cap = cap;
        build_argv(&a, cfg);
        r = a.r < 0 ? a.r : tu_child_start(c, a.v, NULL);
    }
    for (size_t i = 0; i < a.nr_owned; i++)
        free(a.owned[i]);
    free(a.owned);
    free(a.v);
    return r;
}

int qemu_guest_wait(struct tu_child *c, int timeout_ms, char **output)
{
    int status = tu_child_wait(c, timeout_ms);

    if (asprintf(output, "%s%s", tu_child_stdout(c), tu_child_stderr(c)) < 0)
        *output = NULL;
    tu_child_free(c);
    return status;
}

/* ---- reading the serial log -------------------------------------------------- */

int guest_log_read(const char *path, char **ret)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    char *buf = NULL, chunk[4096];
    size_t len = 0, n;

    *ret = NULL;
    if (!f)
        return -errno;
    FILE *m = open_memstream(&buf, &len);
    if (!m)
        return -errno;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, m);
    if (fclose(m) < 0 || !buf) {
        free(buf);
        return -ENOMEM;
    }
    char *w = buf;
    for (const char *p = buf; *p; p++)
        if (*p != '\r')
            *w++ = *p;
    *w = '\0';
    *ret = buf;
    return 0;
}

char *guest_log_grep(const char *log, const char *needle, size_t max_bytes)
{
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);

    if (!m)
        return NULL;
    for (const char *line = log; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        if (memmem(line, n, needle, strlen(needle)) && (size_t)ftell(m) + n < max_bytes)
            fprintf(m, "    %.*s\n", (int)n, line);
        line = nl ? nl + 1 : NULL;
    }
    if (fclose(m) < 0) {
        free(out);
        return NULL;
    }
    return out;
}

const char *guest_log_tail(const char *log, size_t bytes)
{
    size_t n = strlen(log);
    return n > bytes ? log + n - bytes : log;
}

size_t guest_log_count(const char *log, const char *needle)
{
    size_t n = 0;

    for (const char *p = log; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

int guest_log_value(const char *log, const char *prefix, const char *key, unsigned long long *ret)
{
    const char *line = strstr(log, prefix);
    char k[64];

    if (!line)
        return -ENOENT;
    const char *eol = strchr(line, '\n');
    snprintf(k, sizeof(k), " %s=", key);
    const char *v = strstr(line, k);
    if (!v || (eol && v > eol))
        return -ENOENT;
    *ret = strtoull(v + strlen(k), NULL, 0);
    return 0;
}

/* ---- huge pages ---------------------------------------------------------------- */

/* A /proc/meminfo number (kB or pages), -1 when missing. */
static long read_meminfo(const char *key)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/meminfo", "re");
    char line[256];
    long v = -1;
    size_t len = strlen(key);

    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, key, len) && line[len] == ':')
            v = strtol(line + len + 1, NULL, 10);
    return v;
}

static int write_nr_hugepages(long n)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/sys/vm/nr_hugepages", "we");

    if (!f || fprintf(f, "%ld\n", n) < 0)
        return -errno;
    return fflush(f) == 0 ? 0 : -errno;
}

static int fail(const char **why, const char *reason, int r)
{
    if (why)
        *why = reason;
    return r;
}

int guest_hugepages_reserve(long pages, long *added, const char **why)
{
    long free_pages = read_meminfo("HugePages_Free");
    long total = read_meminfo("HugePages_Total");

    *added = 0;
    if (read_meminfo("Hugepagesize") != 2048)
        return fail(why, "the machine's huge page size is not 2 MiB", -EOPNOTSUPP);
    if (free_pages >= pages)
        return 0;
    if (geteuid() != 0 || total < 0 || write_nr_hugepages(total + pages - free_pages) < 0)
        return fail(why, "no free 2 MiB huge pages, and we may not add any (not root)", -EPERM);
    *added = pages - free_pages;
    if (read_meminfo("HugePages_Free") < pages)
        return fail(why, "the kernel could not find memory for the huge pages", -ENOMEM);
    return 0;
}

void guest_hugepages_release(long added)
{
    if (added > 0)
        (void)write_nr_hugepages(read_meminfo("HugePages_Total") - added);
}
