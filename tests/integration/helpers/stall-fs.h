/* SPDX-License-Identifier: MIT */
/*
 * A FUSE file system whose storage can be made to hang, for the suites
 * that show what muserd does when a backing file stops answering. It holds
 * one file (zeroed memory, of a fixed size) and is served by a child
 * process the test forks; the test tells it, over a pipe, to stall (every
 * read, write, fsync and fallocate of the file, and every getattr of it,
 * waits from then on: attributes are not cached, so an fstat asks, as on
 * NFS) and to release. Other metadata (lookup, open, statfs, flush,
 * release, the root's getattr) never waits.
 *
 * The test mounts it itself (mount(2), as root): needs /dev/fuse and
 * CAP_SYS_ADMIN; linked only into the suites that use it (-lfuse3).
 * The child dies with the test's process, and so does the connection:
 * what was stalled then fails with ENOTCONN. No Check here.
 */
#pragma once

#include <stddef.h>

struct stall_fs;

/* Mount a stall-fs on dir (an existing empty directory) holding one file,
 * dir/name, of size bytes of zeros, served by a new child process. 0, or
 * -errno: -ENOENT or -ENODEV (no /dev/fuse, no fuse in the kernel), -EPERM
 * or -EACCES (not allowed to mount) mean the facility is not here. */
int stall_fs_start(const char *dir, const char *name, size_t size, struct stall_fs **ret);

/* From now on every read, write, fsync, fallocate and getattr of the file
 * waits (those already in progress finish). 0 or -errno. */
int stall_fs_stall(struct stall_fs *fs);

/* Let everything that waits, and all that comes after, through. 0 or
 * -errno. */
int stall_fs_release(struct stall_fs *fs);

/* New requests go through again, while those that wait now go on waiting
 * until stall_fs_release: storage that hangs on some requests only. 0 or
 * -errno. */
int stall_fs_hold(struct stall_fs *fs);

/* How many requests wait now, or -errno. */
int stall_fs_waiting(struct stall_fs *fs);

/* Poll until at least n requests wait, for up to timeout_ms: how many do
 * (fewer than n on timeout), or -errno. */
int stall_fs_wait_for(struct stall_fs *fs, int n, int timeout_ms);

/* Release, unmount (lazily: a process may still hold the file open; its
 * requests then fail), end the child and free fs. NULL is fine. */
void stall_fs_stop(struct stall_fs *fs);

/* Lazily unmount every mount at or under path: what a test that died
 * before stall_fs_stop left (main() calls it before removing its
 * directories). */
void stall_fs_unmount_under(const char *path);
