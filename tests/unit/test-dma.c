/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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
    int given = dup(fd);
    ck_assert_int_eq(vfu_dma_map(dma, &req, given), 0);
    ck_assert_uint_eq(vfu_dma_count(dma), 1);
    /* The mapping holds the memory: the fd is not kept (one fd per map
     * would cap a process at its fd limit). */
    ck_assert(!fd_is_open(given));

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
    ck_assert_uint_eq(r->offset, PAGE + 16);

    vfu_dma_free(dma);
    close(fd);
}
END_TEST

/* Huge pages for the hugetlb case: as root we lend ourselves two if the
 * machine has none free (and give them back), else the test says it skipped. */
static long hugepages_added;

static void want_hugepages(void)
{
    FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r+");
    long total = 0;
    if (!f)
        return;
    if (fscanf(f, "%ld", &total) == 1 && total < 2 && geteuid() == 0) {
        rewind(f);
        if (fprintf(f, "%ld\n", total + 2) > 0)
            hugepages_added = 2;
    }
    fclose(f);
}

static void give_back_hugepages(void)
{
    FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r+");
    long total;
    if (!f)
        return;
    if (hugepages_added && fscanf(f, "%ld", &total) == 1) {
        rewind(f);
        fprintf(f, "%ld\n", total - hugepages_added);
    }
    fclose(f);
}

/* QEMU maps guest RAM sections at file offsets that are not aligned to the
 * backing's huge pages (a section at 1 MiB of a 2 MiB-page memfd); mmap()
 * of such an offset fails on hugetlbfs unless we map from the huge page
 * below. */
START_TEST(test_hugetlb_offset)
{
    const uint64_t huge = 2u << 20;
    int fd = memfd_create("test-dma-huge", MFD_CLOEXEC | MFD_HUGETLB);
    if (fd < 0 || ftruncate(fd, (off_t)(2 * huge)) < 0) {
        fprintf(stderr, "test_hugetlb_offset: SKIP: no 2 MiB hugetlb memfd here (%m)\n");
        if (fd >= 0)
            close(fd);
        return;
    }
    uint8_t *whole = mmap(NULL, 2 * huge, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (whole == MAP_FAILED) {
        fprintf(stderr, "test_hugetlb_offset: SKIP: no free huge pages (%m)\n");
        close(fd);
        return;
    }
    memcpy(whole + 0x100000 + 8, "hugetlb", 8);
    memcpy(whole + huge + 0x80000, "second", 7);

    struct vfu_dma *dma;
    void *p;
    ck_assert_int_eq(vfu_dma_new(8, &dma), 0);
    struct vfu_dma_map m = map_req(0x100000, 0x100000, RW, 0x100000);
    ck_assert_int_eq(vfu_dma_map(dma, &m, dup(fd)), 0);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x100008, 8, VFU_DMA_FLAG_READ, &p), 0);
    ck_assert_str_eq(p, "hugetlb");
    /* A range that crosses a huge page boundary of the file. */
    m = map_req(0x800000, huge, RW, huge / 2 + 0x80000);
    ck_assert_int_eq(vfu_dma_map(dma, &m, dup(fd)), 0);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x800000 + huge / 2, 7, RW, &p), 0);
    ck_assert_str_eq(p, "second");
    memcpy(p, "SECOND", 7);
    ck_assert_int_eq(memcmp(whole + huge + 0x80000, "SECOND", 7), 0);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x100000, 0x100000, NULL, NULL), 0);
    vfu_dma_free(dma);
    munmap(whole, 2 * huge);
    close(fd);
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
    ck_assert_int_eq(vfu_dma_map(dma, &m, dup(fd)), 0);
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
    close(fd);
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

    /* A range that cuts through a mapping is refused whole. */
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x1000, PAGE - 1, note_unmap, &n), -EINVAL);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x1001, PAGE, note_unmap, &n), -EINVAL);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x4000, 0x1000, note_unmap, &n), -EINVAL);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x0, 0x4000, note_unmap, &n), -EINVAL);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x1000, 0, note_unmap, &n), -EINVAL);
    ck_assert_int_eq(vfu_dma_unmap(dma, UINT64_MAX, 2, note_unmap, &n), -EINVAL);
    /* A range holding no mapping changes nothing, as with Linux VFIO. */
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x9000, 0x1000, note_unmap, &n), 0);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x2000, 0x1000, note_unmap, &n), 0);
    ck_assert_uint_eq(n.calls, 0);
    ck_assert_uint_eq(vfu_dma_count(dma), 2);

    /* A larger range takes the mapping inside it and nothing else. */
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x0, 0x3000, note_unmap, &n), 0);
    ck_assert_uint_eq(n.calls, 1);
    ck_assert_uint_eq(n.last_iova, 0x1000);
    ck_assert_uint_eq(n.last_size, PAGE);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x1000, 1, VFU_DMA_FLAG_READ, &p), -ENOENT);
    ck_assert_uint_eq(vfu_dma_count(dma), 1);

    /* The freed space can be mapped again; an exact match unmaps. */
    m = map_req(0x1000, 0x2000, RW, 0);
    ck_assert_int_eq(vfu_dma_map(dma, &m, -1), 0);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x3000, 0x2000, NULL, NULL), 0);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x1000, 0x2000, NULL, NULL), 0);
    ck_assert_uint_eq(vfu_dma_count(dma), 0);
    vfu_dma_free(dma);
}
END_TEST

/* QEMU unmaps a whole section that it mapped in pieces (virtio-mem blocks):
 * every piece goes, gaps between them are fine, and the space maps again
 * (before, the stale pieces made the next DMA_MAP fail with EEXIST). */
START_TEST(test_unmap_spanning)
{
    struct vfu_dma *dma;
    struct notes n = {0};
    ck_assert_int_eq(vfu_dma_new(8, &dma), 0);

    for (uint64_t i = 0; i < 4; i++) {
        struct vfu_dma_map m = map_req(0x100000 + i * 0x20000, 0x10000, RW, 0);
        ck_assert_int_eq(vfu_dma_map(dma, &m, memfd_of(0x10000)), 0);
    }
    struct vfu_dma_map outside = map_req(0x200000, PAGE, RW, 0);
    ck_assert_int_eq(vfu_dma_map(dma, &outside, -1), 0);

    ck_assert_int_eq(vfu_dma_unmap(dma, 0x100000, 0x100000, note_unmap, &n), 0);
    ck_assert_uint_eq(n.calls, 4);
    ck_assert_uint_eq(n.last_iova, 0x160000);
    ck_assert_uint_eq(vfu_dma_count(dma), 1);
    ck_assert_ptr_nonnull(vfu_dma_find(dma, 0x200000, 1));

    struct vfu_dma_map whole = map_req(0x100000, 0x100000, RW, 0);
    ck_assert_int_eq(vfu_dma_map(dma, &whole, -1), 0);
    ck_assert_uint_eq(vfu_dma_count(dma), 2);
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
        ck_assert(!fd_is_open(fds[i]));
    }
    int extra = memfd_of(PAGE);
    struct vfu_dma_map m = map_req(0x100000, PAGE, RW, 0);
    ck_assert_int_eq(vfu_dma_map(dma, &m, extra), -ENOSPC);
    ck_assert(fd_is_open(extra));

    vfu_dma_unmap_all(dma, note_unmap, &n);
    ck_assert_uint_eq(n.calls, 3);
    ck_assert_uint_eq(vfu_dma_count(dma), 0);

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
    tcase_add_test(tc, test_unmap_spanning);
    tcase_add_test(tc, test_unmap_all_and_limit);
    tcase_add_unchecked_fixture(tc, want_hugepages, give_back_hugepages);
    tcase_add_test(tc, test_hugetlb_offset);
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
