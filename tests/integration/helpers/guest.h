/* SPDX-License-Identifier: MIT */
/*
 * Boot a Linux guest under the real QEMU on muserd's devices and read what
 * it reported: find a QEMU with vfio-user-pci (>= 10.1) and the guest image
 * (tests/guest/build-guest.sh), start QEMU with one vfio-user-pci device per
 * socket and its serial console in a file, then look through that serial
 * log. Guest RAM in 2 MiB huge pages needs some free: the hugepages helpers
 * add them when we may (root) and give them back.
 *
 * No Check and no json-c here: every integration suite and benchmark links
 * the helpers. Functions return 0 or a negative errno.
 *
 *     char qemu[512], image[512], *output, *log;
 *     qemu_find(qemu, sizeof(qemu));
 *     guest_image_find(image, sizeof(image));
 *     struct qemu_vfu_device dev = {"/run/t0.sock", "0x4"};
 *     struct qemu_guest_config cfg = {.qemu = qemu, .image_dir = image,
 *         .serial_path = "/tmp/serial.log", .mem_mib = 256, .devs = &dev, .nr_devs = 1};
 *     qemu_guest_start(&cfg, &child);
 *     status = qemu_guest_wait(&child, 240000, &output);
 *     guest_log_read(cfg.serial_path, &log);
 *     guest_log_value(log, "MUSERD-VAL timer-regs 0000:00:04.0 ", "id", &v);
 */
#pragma once

#include <stddef.h>

#include "child.h"

/*
 * Find a QEMU >= 10.1 (the first with vfio-user-pci): $QEMU when set (a
 * $QEMU that does not work is not replaced by another), else
 * ../shared/qemu/bin/qemu-system-x86_64 (beside the source tree in CI),
 * else qemu-system-x86_64 on $PATH. Its path goes into buf. -ENOENT when
 * there is none.
 */
int qemu_find(char *buf, size_t size);

/*
 * The guest image directory, $MUSERD_GUEST_DIR (default build/guest), goes
 * into buf; 0 when it holds a readable vmlinuz and initrd.gz, else -errno
 * (buf still names the directory, for the message).
 */
int guest_image_find(char *buf, size_t size);

/* Where the guest's RAM lives, which decides how a device reaches it. */
enum qemu_guest_memory {
    QEMU_GUEST_MEMORY_PRIVATE, /* QEMU's own: devices DMA over the socket */
    QEMU_GUEST_MEMORY_SHARED,  /* a shared memfd, handed to devices by fd */
    QEMU_GUEST_MEMORY_HUGETLB, /* the same in 2 MiB huge pages */
};

/* One vfio-user-pci device of the guest. */
struct qemu_vfu_device {
    const char *socket; /* the device's vfio-user socket */
    const char *addr;   /* PCI slot in the guest, "0xN" */
};

/* A guest to boot; the strings are the caller's and need only outlive
 * qemu_guest_start(). */
struct qemu_guest_config {
    const char *qemu;        /* QEMU binary, as qemu_find() found it */
    const char *image_dir;   /* vmlinuz and initrd.gz, as guest_image_find() found it */
    const char *serial_path; /* the serial console (ttyS0) is written to this file */
    const char *cmdline;     /* appended to the kernel command line; may be NULL */
    enum qemu_guest_memory memory;
    unsigned mem_mib; /* guest RAM */
    unsigned smp;     /* virtual CPUs; 0: QEMU's default (1) */
    const struct qemu_vfu_device *devs;
    size_t nr_devs;
};

/*
 * Start QEMU (q35, TCG, no display, no reboot: the guest's power-off ends
 * it) on the guest image with cfg's devices, as a child c collecting QEMU's
 * own output, for qemu_guest_wait(). 0 or -errno (c is then not started).
 */
int qemu_guest_start(const struct qemu_guest_config *cfg, struct tu_child *c);
/*
 * Wait up to timeout_ms for the QEMU of c to exit (killed after that) and
 * free c. *output gets what QEMU printed, stdout then stderr, in a string
 * the caller frees (NULL without memory). Returns tu_child_wait()'s status:
 * QEMU's exit status, 128 + signal, or -ETIMEDOUT.
 */
int qemu_guest_wait(struct tu_child *c, int timeout_ms, char **output);

/*
 * The whole of a text file, the guest's serial log or any other log, as a
 * NUL-terminated string in *ret that the caller frees. The serial console
 * writes CR LF: every CR is dropped. 0, or -errno with *ret NULL.
 */
int guest_log_read(const char *path, char **ret);

/*
 * The lines of log containing needle, each indented by four spaces and
 * ended by a newline, up to max_bytes in all: for failure messages. A new
 * string the caller frees ("" when none matches); NULL only without memory.
 * log may be NULL.
 */
char *guest_log_grep(const char *log, const char *needle, size_t max_bytes);

/* The last `bytes` of log (a pointer into it). */
const char *guest_log_tail(const char *log, size_t bytes);

/* How often needle occurs in log (occurrences may overlap). */
size_t guest_log_count(const char *log, const char *needle);

/*
 * The number in ` key=NUMBER` (strtoull base 0) on the first line of log
 * that contains prefix, after the prefix's start. 0 with *ret set, or
 * -ENOENT when no line has prefix or that line has no such key.
 */
int guest_log_value(const char *log, const char *prefix, const char *key, unsigned long long *ret);

/*
 * Make `pages` 2 MiB huge pages free for a hugetlb guest. When fewer are
 * free, root raises vm.nr_hugepages; *added says by how many (also on
 * failure), to give back with guest_hugepages_release(). On failure *why
 * (if not NULL) says why in words, for a SKIP message: -EOPNOTSUPP (huge
 * pages are not 2 MiB here), -EPERM (too few free, not root, or
 * nr_hugepages not writable), -ENOMEM (the kernel found no memory for them).
 */
int guest_hugepages_reserve(long pages, long *added, const char **why);
/* Take back the `added` huge pages guest_hugepages_reserve() added (0: none). */
void guest_hugepages_release(long added);
