/* SPDX-License-Identifier: MIT */
/*
 * The files the nvme suites put namespaces on: a temporary directory, a
 * file of a size (a hole), the pattern of nvme-check.h written into and
 * checked in it, and the fds muserd holds on it. Check suites only:
 * failures are assertions.
 */
#pragma once

#ifdef CHECK_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nvme-check.h"
#include "testutil.h"
#include "util/macro.h"

/* A new directory base/test-XXXXXX, its path into out (PATH_MAX bytes). */
static inline void tu_make_dir(char *out, const char *base)
{
    ck_assert_int_lt(snprintf(out, PATH_MAX, "%s/test-XXXXXX", base), PATH_MAX);
    ck_assert_msg(mkdtemp(out), "mkdtemp in %s: %s", base, strerror(errno));
}

static inline int tu_remove_entry_(const char *path, const struct stat *st, int type,
                                   struct FTW *ftw)
{
    (void)remove(path);
    return 0;
}

/* path and everything under it, as far as it goes (no assertion: main()
 * cleans up with it after the runner). */
static inline void tu_remove_tree(const char *path)
{
    (void)nftw(path, tu_remove_entry_, 16, FTW_DEPTH | FTW_PHYS);
}

/* The tree at path, when there is one; path becomes "". */
static inline void tu_remove_dir(char *path)
{
    if (*path)
        tu_remove_tree(path);
    *path = '\0';
}

/* d/name into out (PATH_MAX bytes): out. */
static inline const char *tu_path_in(char *out, const char *d, const char *name)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", d, name);
    ck_assert_int_lt(n, PATH_MAX);
    return out;
}

/* A file of size bytes, all a hole. */
static inline void tu_make_file(const char *path, off_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_msg(fd >= 0, "creating %s: %s", path, strerror(errno));
    ck_assert_int_eq(ftruncate(fd, size), 0);
    close(fd);
}

/* The pattern `seed` at bytes [off, off+len) of the file. */
static inline void tu_write_file_pat(const char *path, off_t off, size_t len, uint8_t seed)
{
    _cleanup_free_ uint8_t *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    tu_fill_pat(buf, len, seed);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ck_assert_msg(fd >= 0, "opening %s: %s", path, strerror(errno));
    ck_assert_int_eq(pwrite(fd, buf, len, off), (ssize_t)len);
    close(fd);
}

/* Bytes [off, off+len) of the file, malloc()ed. */
static inline uint8_t *tu_read_file(const char *path, off_t off, size_t len)
{
    uint8_t *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_msg(fd >= 0, "opening %s: %s", path, strerror(errno));
    ssize_t n = pread(fd, buf, len, off);
    ck_assert_msg(n == (ssize_t)len, "reading %zu bytes at %lld of %s: %zd", len, (long long)off,
                  path, n);
    close(fd);
    return buf;
}

/* The file's bytes [off, off+len) hold the pattern from byte `first` on. */
static inline void tu_check_file_pat(const char *path, off_t off, size_t len, uint8_t seed,
                                     size_t first, const char *what)
{
    _cleanup_free_ uint8_t *buf = tu_read_file(path, off, len);
    tu_check_pat(buf, len, seed, first, what);
}

static inline void tu_check_file_zero(const char *path, off_t off, size_t len, const char *what)
{
    _cleanup_free_ uint8_t *buf = tu_read_file(path, off, len);
    tu_check_zero(buf, len, what);
}

/* The open flags in an fdinfo file, O_RDWR when unreadable. */
static inline unsigned tu_fd_flags_(int fdinfo_dir, const char *fd)
{
    char line[128];
    unsigned flags = O_RDWR;
    int info = openat(fdinfo_dir, fd, O_RDONLY | O_CLOEXEC);
    FILE *f = info >= 0 ? fdopen(info, "re") : NULL;
    while (f && fgets(line, sizeof(line), f) && sscanf(line, "flags: %o", &flags) != 1)
        ;
    if (f)
        fclose(f);
    else if (info >= 0)
        close(info);
    return flags;
}

/* How many fds the daemon holds on path (a file, or what a readlink of
 * /proc/PID/fd/N says, like "anon_inode:[io_uring]"); *writable: how many
 * of them may write. */
static inline int tu_fds_on(const struct test_daemon *d, const char *path, int *writable)
{
    char proc[64];
    int n = 0;
    snprintf(proc, sizeof(proc), "/proc/%d/fdinfo", (int)test_daemon_pid(d));
    int fdinfo_dir = open(proc, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    snprintf(proc, sizeof(proc), "/proc/%d/fd", (int)test_daemon_pid(d));
    DIR *fds = opendir(proc);
    ck_assert_msg(fds && fdinfo_dir >= 0, "%s: %s", proc, strerror(errno));
    *writable = 0;
    for (struct dirent *e; (e = readdir(fds));) {
        char target[PATH_MAX];
        ssize_t len = readlinkat(dirfd(fds), e->d_name, target, sizeof(target) - 1);
        if (len < 0)
            continue;
        target[len] = '\0';
        if (strcmp(target, path) != 0)
            continue;
        n++;
        if ((tu_fd_flags_(fdinfo_dir, e->d_name) & O_ACCMODE) != O_RDONLY)
            (*writable)++;
    }
    closedir(fds);
    close(fdinfo_dir);
    return n;
}

#endif /* CHECK_H */
