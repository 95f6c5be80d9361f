/* SPDX-License-Identifier: MIT */
/*
 * Small helpers every muserd source file uses: cleanup attributes, ownership
 * transfer and array sizes. Kept free of any other muserd header.
 */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

#define _unused_       __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _likely_(x)    __builtin_expect(!!(x), 1)
#define _unlikely_(x)  __builtin_expect(!!(x), 0)

/* Hand ownership on: returns the value and leaves the variable empty, so the
 * cleanup attribute of the old owner does nothing. */
#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _taken = (p);                                                                \
        (p) = NULL;                                                                                \
        _taken;                                                                                    \
    })
#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int _taken_fd = (fd);                                                                      \
        (fd) = -1;                                                                                 \
        _taken_fd;                                                                                 \
    })

static inline void freep(void *p)
{
    free(*(void **)p);
}
#define _cleanup_(f)   __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)

static inline int safe_close(int fd)
{
    if (fd >= 0) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return -1;
}
static inline void closep(int *fd)
{
    safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

/* Defines name##p(type **) calling func on a non-NULL pointer. */
#define DEFINE_FREEP(type, func)                                                                   \
    static inline void func##p(type **p)                                                           \
    {                                                                                              \
        if (*p)                                                                                    \
            func(*p);                                                                              \
    }

/* Overflow-checked range test: true when [off, off+len) lies inside [0, size). */
static inline int range_within(unsigned long long off, unsigned long long len,
                               unsigned long long size)
{
    unsigned long long end;
    if (__builtin_add_overflow(off, len, &end))
        return 0;
    return end <= size;
}
