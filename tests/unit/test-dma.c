/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vfu/dma.h"

#define PAGE 4096u

static struct vfu_dma_map map_req(uint64_t address, uint64_t size, uint32_t flags, uint64_t offset)
{
    return (struct vfu_dma_map){
        .argsz = sizeof(struct vfu_dma_map),
        .flags = flags,
        .offset = offset,
        .address = address,
        .size = size,
    };
}

static int memfd_of(size_t size)
{
    int fd = memfd_create("test-dma", MFD_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
    return fd;
}

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static const uint32_t RW = VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE;

START_TEST(test_memfd_translate)
{
    struct vfu_dma *dma;
    int fd = memfd_of(4 * PAGE);
    void *p;

    ck_assert_int_eq(vfu_dma_new(8, &dma), 0);
    /* An offset that is not page-aligned: mmap()ed from the page below. */
    struct vfu_dma_map req = map_req(0x10000, 2 * PAGE, RW, PAGE + 16);
    ck_assert_int_eq(vfu_dma_map(dma, &req, fd), 0);
    ck_assert_uint_eq(vfu_dma_count(dma), 1);

    ck_assert_int_eq(vfu_dma_translate(dma, 0x10000 + 100, 8, VFU_DMA_FLAG_WRITE, &p), 0);
    memcpy(p, "muserd!", 8);

    char back[8];
    ck_assert_int_eq(pread(fd, back, 8, PAGE + 16 + 100), 8);
    ck_assert_int_eq(memcmp(back, "muserd!", 8), 0);

    /* And the other way: a write into the file is seen through the pointer. */
    ck_assert_int_eq(pwrite(fd, "XY", 2, PAGE + 16), 2);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x10000, 2, VFU_DMA_FLAG_READ, &p), 0);
    ck_assert_int_eq(memcmp(p, "XY", 2), 0);

    const struct vfu_dma_region *r = vfu_dma_find(dma, 0x10000, 1);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->fd, fd);
    ck_assert_uint_eq(r->offset, PAGE + 16);

    vfu_dma_free(dma);
    ck_assert(!fd_is_open(fd)); /* the table owned it */
}
END_TEST

START_TEST(test_bounds)
{
    struct vfu_dma *dma;
    int fd = memfd_of(PAGE);
    void *p;

    ck_assert_int_eq(vfu_dma_new(8, &dma), 0);
    struct vfu_dma_map req = map_req(0x4000, PAGE, RW, 0);
    ck_assert_int_eq(vfu_dma_map(dma, &req, fd), 0);

    /* Last byte in, one past out, one before out. */
    ck_assert_int_eq(vfu_dma_translate(dma, 0x4000 + PAGE - 1, 1, VFU_DMA_FLAG_READ, &p), 0);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x4000, PAGE, VFU_DMA_FLAG_READ, &p), 0);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x4000 + PAGE, 1, VFU_DMA_FLAG_READ, &p), -ENOENT);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x4000 + PAGE - 1, 2, VFU_DMA_FLAG_READ, &p), -ENOENT);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x3fff, 1, VFU_DMA_FLAG_READ, &p), -ENOENT);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x3fff, 2, VFU_DMA_FLAG_READ, &p), -ENOENT);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x4000, PAGE + 1, VFU_DMA_FLAG_READ, &p), -ENOENT);
    /* Length 0 and wrapping lengths. */
    ck_assert_int_eq(vfu_dma_translate(dma, 0x4000, 0, VFU_DMA_FLAG_READ, &p), -ENOENT);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x4001, UINT64_MAX, VFU_DMA_FLAG_READ, &p), -ENOENT);
    ck_assert_ptr_null(vfu_dma_find(dma, UINT64_MAX, 2));
    ck_assert_ptr_null(vfu_dma_find(dma, 0, 1));
    vfu_dma_free(dma);
}
END_TEST

START_TEST(test_overlap)
{
    struct vfu_dma *dma;
    ck_assert_int_eq(vfu_dma_new(16, &dma), 0);

    struct vfu_dma_map a = map_req(0x10000, 0x10000, RW, 0);
    ck_assert_int_eq(vfu_dma_map(dma, &a, -1), 0);

    const struct {
        uint64_t iova, size;
        int expect;
    } cases[] = {
        {0x10000, 0x10000, -EEXIST}, /* same */
        {0x8000, 0x8001, -EEXIST},   /* ends on the first byte */
        {0x1ffff, 1, -EEXIST},       /* last byte */
        {0x14000, 0x1000, -EEXIST},  /* inside */
        {0x0, 0x100000, -EEXIST},    /* around */
        {0x8000, 0x8000, 0},         /* touching below */
        {0x20000, 0x1000, 0},        /* touching above */
        {0x0, 0x8000, 0},            /* first */
        {0x20000, 1, -EEXIST},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct vfu_dma_map m = map_req(cases[i].iova, cases[i].size, RW, 0);
        ck_assert_msg(vfu_dma_map(dma, &m, -1) == cases[i].expect, "case %zu", i);
    }
    ck_assert_uint_eq(vfu_dma_count(dma), 4);

    /* Lookups land in the right one of the sorted regions. */
    const struct vfu_dma_region *r = vfu_dma_find(dma, 0x8000, 0x8000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->iova, 0x8000);
    r = vfu_dma_find(dma, 0x7fff, 1);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->iova, 0);
    ck_assert_ptr_null(vfu_dma_find(dma, 0x7fff, 2)); /* spans two regions */
    r = vfu_dma_find(dma, 0x20000, 0x1000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->iova, 0x20000);
    ck_assert_ptr_null(vfu_dma_find(dma, 0x21000, 1));

    /* Invalid requests. */
    struct vfu_dma_map m = map_req(0x100000, 0, RW, 0);
    ck_assert_int_eq(vfu_dma_map(dma, &m, -1), -EINVAL);
    m = map_req(UINT64_MAX - 10, 100, RW, 0);
    ck_assert_int_eq(vfu_dma_map(dma, &m, -1), -EINVAL);
    m = map_req(0x100000, 0x1000, 8, 0);
    ck_assert_int_eq(vfu_dma_map(dma, &m, -1), -EINVAL);
    vfu_dma_free(dma);
}
END_TEST

START_TEST(test_fdless)
{
    struct vfu_dma *dma;
    void *p;
    ck_assert_int_eq(vfu_dma_new(4, &dma), 0);

    /* The offset of a map without fd means nothing, even a huge one. */
    struct vfu_dma_map m = map_req(0x1000, 0x1000, VFU_DMA_FLAG_READ, UINT64_MAX);
    ck_assert_int_eq(vfu_dma_map(dma, &m, -1), 0);
    const struct vfu_dma_region *r = vfu_dma_find(dma, 0x1000, 0x1000);
    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_null(r->vaddr);
    ck_assert_int_eq(r->fd, -1);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x1000, 4, VFU_DMA_FLAG_READ, &p), -EREMOTE);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x1000, 4, VFU_DMA_FLAG_WRITE, &p), -EACCES);
    vfu_dma_free(dma);
}
END_TEST

START_TEST(test_prot)
{
    struct vfu_dma *dma;
    void *p;
    ck_assert_int_eq(vfu_dma_new(4, &dma), 0);

    int fd = memfd_of(2 * PAGE);
    struct vfu_dma_map m = map_req(0x1000, PAGE, VFU_DMA_FLAG_READ, 0);
    ck_assert_int_eq(vfu_dma_map(dma, &m, fd), 0);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x1000, 4, VFU_DMA_FLAG_READ, &p), 0);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x1000, 4, RW, &p), -EACCES);

    /* No access at all: a valid map nothing may touch. */
    int fd2 = dup(fd);
    m = map_req(0x2000, PAGE, 0, PAGE);
    ck_assert_int_eq(vfu_dma_map(dma, &m, fd2), 0);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x2000, 4, VFU_DMA_FLAG_READ, &p), -EACCES);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x2000, 4, 0, &p), -EACCES);

    /* mmap() refusing (offset past what off_t holds) leaves the fd with the caller. */
    int fd3 = dup(fd);
    m = map_req(0x3000, PAGE, RW, (uint64_t)INT64_MAX);
    ck_assert_int_eq(vfu_dma_map(dma, &m, fd3), -EINVAL);
    ck_assert(fd_is_open(fd3));
    /* A write mapping of a read-only fd fails with mmap's error. */
    int ro = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(ro, 0);
    m = map_req(0x3000, PAGE, RW, 0);
    ck_assert_int_eq(vfu_dma_map(dma, &m, ro), -EACCES);
    ck_assert(fd_is_open(ro));
    ck_assert_uint_eq(vfu_dma_count(dma), 2);
    close(ro);
    close(fd3);
    vfu_dma_free(dma);
}
END_TEST

struct notes {
    unsigned calls;
    uint64_t last_iova, last_size;
};

static void note_unmap(void *opaque, uint64_t iova, uint64_t size)
{
    struct notes *n = opaque;
    n->calls++;
    n->last_iova = iova;
    n->last_size = size;
}

START_TEST(test_unmap)
{
    struct vfu_dma *dma;
    struct notes n = {0};
    void *p;
    ck_assert_int_eq(vfu_dma_new(4, &dma), 0);

    int fd = memfd_of(PAGE);
    struct vfu_dma_map m = map_req(0x1000, PAGE, RW, 0);
    ck_assert_int_eq(vfu_dma_map(dma, &m, fd), 0);
    m = map_req(0x3000, 0x2000, RW, 0);
    ck_assert_int_eq(vfu_dma_map(dma, &m, -1), 0);

    /* Only an exact match unmaps. */
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x1000, PAGE - 1, note_unmap, &n), -ENOENT);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x1000, PAGE * 2, note_unmap, &n), -ENOENT);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x1001, PAGE, note_unmap, &n), -ENOENT);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x4000, 0x1000, note_unmap, &n), -ENOENT);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x9000, 0x1000, note_unmap, &n), -ENOENT);
    ck_assert_uint_eq(n.calls, 0);
    ck_assert_uint_eq(vfu_dma_count(dma), 2);

    ck_assert_int_eq(vfu_dma_unmap(dma, 0x1000, PAGE, note_unmap, &n), 0);
    ck_assert_uint_eq(n.calls, 1);
    ck_assert_uint_eq(n.last_iova, 0x1000);
    ck_assert_uint_eq(n.last_size, PAGE);
    ck_assert(!fd_is_open(fd));
    ck_assert_int_eq(vfu_dma_translate(dma, 0x1000, 1, VFU_DMA_FLAG_READ, &p), -ENOENT);
    ck_assert_uint_eq(vfu_dma_count(dma), 1);

    /* The freed space can be mapped again; the other region is untouched. */
    m = map_req(0x1000, 0x2000, RW, 0);
    ck_assert_int_eq(vfu_dma_map(dma, &m, -1), 0);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x3000, 0x2000, NULL, NULL), 0);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x1000, 0x2000, NULL, NULL), 0);
    ck_assert_uint_eq(vfu_dma_count(dma), 0);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x1000, 0x2000, NULL, NULL), -ENOENT);
    vfu_dma_free(dma);
}
END_TEST

START_TEST(test_unmap_all_and_limit)
{
    struct vfu_dma *dma;
    struct notes n = {0};
    int fds[3];
    ck_assert_int_eq(vfu_dma_new(3, &dma), 0);

    for (int i = 0; i < 3; i++) {
        fds[i] = memfd_of(PAGE);
        struct vfu_dma_map m = map_req((uint64_t)(3 - i) * 0x10000, PAGE, RW, 0);
        ck_assert_int_eq(vfu_dma_map(dma, &m, fds[i]), 0);
    }
    int extra = memfd_of(PAGE);
    struct vfu_dma_map m = map_req(0x100000, PAGE, RW, 0);
    ck_assert_int_eq(vfu_dma_map(dma, &m, extra), -ENOSPC);
    ck_assert(fd_is_open(extra));

    vfu_dma_unmap_all(dma, note_unmap, &n);
    ck_assert_uint_eq(n.calls, 3);
    ck_assert_uint_eq(vfu_dma_count(dma), 0);
    for (int i = 0; i < 3; i++)
        ck_assert(!fd_is_open(fds[i]));

    /* Room again after unmapping everything. */
    ck_assert_int_eq(vfu_dma_map(dma, &m, extra), 0);
    vfu_dma_unmap_all(dma, NULL, NULL);
    ck_assert(!fd_is_open(extra));
    vfu_dma_unmap_all(dma, note_unmap, &n); /* empty: no calls */
    ck_assert_uint_eq(n.calls, 3);
    vfu_dma_free(dma);
    vfu_dma_free(NULL);
}
END_TEST

static Suite *dma_suite(void)
{
    Suite *s = suite_create("dma");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, test_memfd_translate);
    tcase_add_test(tc, test_bounds);
    tcase_add_test(tc, test_overlap);
    tcase_add_test(tc, test_fdless);
    tcase_add_test(tc, test_prot);
    tcase_add_test(tc, test_unmap);
    tcase_add_test(tc, test_unmap_all_and_limit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(dma_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
