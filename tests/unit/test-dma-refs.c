/* SPDX-License-Identifier: MIT */
/*
 * The DMA table as other threads use it: references (vfu_dma_get/put) that
 * keep an unmapped region alive and hold its DMA_UNMAP reply back, and
 * dirty-page logging. Also built with ThreadSanitizer.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vfu/dma.h"

#define PAGE 4096u
static const uint32_t RW = VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE;

static void map_memfd(struct vfu_dma *dma, uint64_t iova, uint64_t size)
{
    int fd = memfd_create("test-dma-refs", MFD_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
    struct vfu_dma_map req = {
        .argsz = sizeof(req), .flags = RW, .offset = 0, .address = iova, .size = size};
    ck_assert_int_eq(vfu_dma_map(dma, &req, fd), 0);
}

/* What the released callback told: the device's thread would reap now. */
static atomic_int released;

static void on_released(void *opaque)
{
    atomic_fetch_add(&released, 1);
}

static bool event_ready(struct vfu_dma *dma)
{
    return atomic_exchange(&released, 0) > 0;
}

START_TEST(test_unmap_while_held)
{
    struct vfu_dma *dma;
    struct vfu_dma_region *held;
    void *p;

    ck_assert_int_eq(vfu_dma_new(8, &dma), 0);
    vfu_dma_set_released(dma, on_released, NULL);
    atomic_store(&released, 0);
    map_memfd(dma, 0x10000, 4 * PAGE);
    ck_assert_int_eq(vfu_dma_get(dma, 0x10000 + PAGE, PAGE, VFU_DMA_FLAG_WRITE, &p, &held), 0);

    /* Gone from the table at once, but its memory stays while held. */
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x10000, 4 * PAGE, NULL, NULL), VFU_DMA_HELD);
    uint64_t seq = vfu_dma_unmap_seq(dma);
    ck_assert_ptr_null(vfu_dma_find(dma, 0x10000, 1));
    ck_assert_uint_le(vfu_dma_reap(dma, 0), seq);
    memset(p, 0x5a, PAGE); /* still mapped: ASan or a SIGSEGV would tell */
    ck_assert(!event_ready(dma));

    /* A later unmap of memory nobody holds is done, but waits in line. */
    map_memfd(dma, 0x100000, PAGE);
    ck_assert_int_eq(vfu_dma_unmap(dma, 0x100000, PAGE, NULL, NULL), 0);
    ck_assert_uint_le(vfu_dma_reap(dma, 0), seq);

    /* A floor past the held unmap (a new client's unmaps) does not wait. */
    ck_assert_uint_eq(vfu_dma_reap(dma, seq), UINT64_MAX);
    vfu_dma_put(dma, held, 0x10000 + PAGE, PAGE, true);
    ck_assert(event_ready(dma));
    ck_assert_uint_eq(vfu_dma_reap(dma, 0), UINT64_MAX);
    ck_assert(!event_ready(dma));
    vfu_dma_free(dma);
}
END_TEST

START_TEST(test_get_errors)
{
    struct vfu_dma *dma;
    struct vfu_dma_region *held;
    void *p;

    ck_assert_int_eq(vfu_dma_new(8, &dma), 0);
    /* Nothing mapped at all: a client that has not mapped its memory yet. */
    ck_assert_int_eq(vfu_dma_get(dma, 0, PAGE, VFU_DMA_FLAG_READ, &p, &held), -ENOTCONN);
    map_memfd(dma, 0x10000, PAGE);
    ck_assert_int_eq(vfu_dma_get(dma, 0, PAGE, VFU_DMA_FLAG_READ, &p, &held), -ENOENT);
    ck_assert_int_eq(vfu_dma_get(dma, 0x10000, PAGE + 1, VFU_DMA_FLAG_READ, &p, &held), -ENOENT);
    struct vfu_dma_map fdless = {
        .argsz = sizeof(fdless), .flags = VFU_DMA_FLAG_READ, .address = 0x20000, .size = PAGE};
    ck_assert_int_eq(vfu_dma_map(dma, &fdless, -1), 0);
    ck_assert_int_eq(vfu_dma_get(dma, 0x20000, 8, VFU_DMA_FLAG_READ, &p, &held), -EREMOTE);
    ck_assert_int_eq(vfu_dma_get(dma, 0x20000, 8, VFU_DMA_FLAG_WRITE, &p, &held), -EACCES);
    /* Nothing held: every unmap is done at once. */
    ck_assert_int_eq(vfu_dma_unmap_all(dma, NULL, NULL), 0);
    vfu_dma_free(dma);
}
END_TEST

/* Pages written through every path show up once; pages never written never. */
START_TEST(test_dirty_logging)
{
    struct vfu_dma *dma;
    struct vfu_dma_region *held;
    void *p;
    uint64_t bitmap[2];

    ck_assert_int_eq(vfu_dma_new(8, &dma), 0);
    map_memfd(dma, 0x100000, 64 * PAGE);
    ck_assert_int_eq(vfu_dma_logging_report(dma, 0x100000, 64 * PAGE, PAGE, bitmap, sizeof(bitmap)),
                     -ENOENT);
    ck_assert_int_eq(vfu_dma_logging_start(dma, 1000), -EINVAL);
    ck_assert_int_eq(vfu_dma_logging_start(dma, PAGE), 0);
    ck_assert(vfu_dma_logging(dma));

    /* A put with `written` marks its range (two pages: it straddles). */
    ck_assert_int_eq(vfu_dma_get(dma, 0x100000 + 3 * PAGE + 100, PAGE, RW, &p, &held), 0);
    vfu_dma_put(dma, held, 0x100000 + 3 * PAGE + 100, PAGE, true);
    /* A put without marks nothing. */
    ck_assert_int_eq(vfu_dma_get(dma, 0x100000 + 10 * PAGE, PAGE, RW, &p, &held), 0);
    vfu_dma_put(dma, held, 0x100000 + 10 * PAGE, PAGE, false);
    /* mark_dirty, and a translate for writing. */
    vfu_dma_mark_dirty(dma, 0x100000 + 20 * PAGE, 1);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x100000 + 63 * PAGE, 8, VFU_DMA_FLAG_WRITE, &p), 0);
    ck_assert_int_eq(vfu_dma_translate(dma, 0x100000 + 40 * PAGE, 8, VFU_DMA_FLAG_READ, &p), 0);
    /* Outside every mapping: nothing to mark, no harm. */
    vfu_dma_mark_dirty(dma, 0, 0x1000);

    ck_assert_int_eq(vfu_dma_logging_report(dma, 0x100000, 64 * PAGE, PAGE, bitmap, 4), -EINVAL);
    ck_assert_int_eq(vfu_dma_logging_report(dma, 0x100000 + 1, PAGE, PAGE, bitmap, 8), -EINVAL);
    ck_assert_int_eq(vfu_dma_logging_report(dma, 0x100000, PAGE, 3000, bitmap, 8), -EINVAL);
    ck_assert_int_eq(vfu_dma_logging_report(dma, 0x100000, 0, PAGE, bitmap, 8), -EINVAL);
    ck_assert_int_eq(vfu_dma_logging_report(dma, 0x100000, 65 * PAGE, PAGE, bitmap, 8), -EINVAL);
    ck_assert_int_eq(vfu_dma_logging_report(dma, 0x100000, 64 * PAGE, PAGE, bitmap, sizeof(bitmap)),
                     0);
    ck_assert_uint_eq(bitmap[0], (UINT64_C(1) << 3) | (UINT64_C(1) << 4) | (UINT64_C(1) << 20) |
                                     (UINT64_C(1) << 63));
    /* Reported bits are cleared. */
    ck_assert_int_eq(vfu_dma_logging_report(dma, 0x100000, 64 * PAGE, PAGE, bitmap, sizeof(bitmap)),
                     0);
    ck_assert_uint_eq(bitmap[0], 0);
    /* A part of the mapping: bit 0 is the range's first page. */
    vfu_dma_mark_dirty(dma, 0x100000 + 33 * PAGE, 1);
    ck_assert_int_eq(vfu_dma_logging_report(dma, 0x100000 + 32 * PAGE, 4 * PAGE, PAGE, bitmap, 8),
                     0);
    ck_assert_uint_eq(bitmap[0], 2);

    /* A map made while logging is logged too. */
    map_memfd(dma, 0x800000, PAGE);
    vfu_dma_mark_dirty(dma, 0x800000, PAGE);
    ck_assert_int_eq(vfu_dma_logging_report(dma, 0x800000, PAGE, PAGE, bitmap, 8), 0);
    ck_assert_uint_eq(bitmap[0], 1);

    vfu_dma_logging_stop(dma);
    ck_assert(!vfu_dma_logging(dma));
    vfu_dma_free(dma);
}
END_TEST

/* Two mappings with a hole between them, reported as one range, at the
 * logging page size, twice it (bits ORed) and half it (bits repeated). */
START_TEST(test_dirty_report_scaled)
{
    struct vfu_dma *dma;
    uint64_t bitmap[4];

    ck_assert_int_eq(vfu_dma_new(8, &dma), 0);
    /* [1M, 1M+16 pages) and [1M+32 pages, 1M+48 pages): a 16-page hole. */
    map_memfd(dma, 0x100000, 16 * PAGE);
    map_memfd(dma, 0x100000 + 32 * PAGE, 16 * PAGE);
    ck_assert_int_eq(vfu_dma_logging_start(dma, 2 * PAGE), 0);

    vfu_dma_mark_dirty(dma, 0x100000 + 2 * PAGE, 1);  /* logging page 1 */
    vfu_dma_mark_dirty(dma, 0x100000 + 15 * PAGE, 1); /* logging page 7 */
    vfu_dma_mark_dirty(dma, 0x100000 + 20 * PAGE, 1); /* the hole: nothing */
    vfu_dma_mark_dirty(dma, 0x100000 + 33 * PAGE, 1); /* logging page 16 */

    /* At the logging page size (8 KiB): one bit per logging page. */
    ck_assert_int_eq(
        vfu_dma_logging_report(dma, 0x100000, 48 * PAGE, 2 * PAGE, bitmap, sizeof(bitmap)), 0);
    /* 24 pages: one word, its bits past the range zero. */
    ck_assert_uint_eq(bitmap[0], (1u << 1) | (1u << 7) | (1u << 16));
    /* Cleared by the report. */
    ck_assert_int_eq(
        vfu_dma_logging_report(dma, 0x100000, 48 * PAGE, 2 * PAGE, bitmap, sizeof(bitmap)), 0);
    ck_assert_uint_eq(bitmap[0], 0);

    /* Twice the logging page (16 KiB): logging pages 1 and 7, 16 -> 0, 3, 8. */
    vfu_dma_mark_dirty(dma, 0x100000 + 2 * PAGE, 1);
    vfu_dma_mark_dirty(dma, 0x100000 + 15 * PAGE, 1);
    vfu_dma_mark_dirty(dma, 0x100000 + 33 * PAGE, 1);
    ck_assert_int_eq(
        vfu_dma_logging_report(dma, 0x100000, 48 * PAGE, 4 * PAGE, bitmap, sizeof(bitmap)), 0);
    ck_assert_uint_eq(bitmap[0], (1u << 0) | (1u << 3) | (1u << 8));

    /* Half the logging page (4 KiB): each dirty logging page sets two bits. */
    vfu_dma_mark_dirty(dma, 0x100000 + 2 * PAGE, 1);
    vfu_dma_mark_dirty(dma, 0x100000 + 33 * PAGE, 1);
    ck_assert_int_eq(vfu_dma_logging_report(dma, 0x100000, 48 * PAGE, PAGE, bitmap, sizeof(bitmap)),
                     0);
    ck_assert_uint_eq(bitmap[0], (UINT64_C(3) << 2) | (UINT64_C(3) << 32));

    /* A range that covers half a logging page reports it and keeps it:
     * the other half is still to be reported. */
    vfu_dma_mark_dirty(dma, 0x100000 + 4 * PAGE, 1); /* logging page 2 */
    ck_assert_int_eq(vfu_dma_logging_report(dma, 0x100000 + 5 * PAGE, PAGE, PAGE, bitmap, 8), 0);
    ck_assert_uint_eq(bitmap[0], 1);
    ck_assert_int_eq(vfu_dma_logging_report(dma, 0x100000 + 4 * PAGE, 2 * PAGE, PAGE, bitmap, 8),
                     0);
    ck_assert_uint_eq(bitmap[0], 3);
    ck_assert_int_eq(vfu_dma_logging_report(dma, 0x100000 + 4 * PAGE, 2 * PAGE, PAGE, bitmap, 8),
                     0);
    ck_assert_uint_eq(bitmap[0], 0);

    /* A range that starts in the hole and ends inside the second mapping. */
    vfu_dma_mark_dirty(dma, 0x100000 + 34 * PAGE, 1);
    ck_assert_int_eq(vfu_dma_logging_report(dma, 0x100000 + 20 * PAGE, 16 * PAGE, PAGE, bitmap, 8),
                     0);
    ck_assert_uint_eq(bitmap[0], UINT64_C(3) << 14);

    vfu_dma_logging_stop(dma);
    vfu_dma_free(dma);
}
END_TEST

struct worker {
    struct vfu_dma *dma;
    atomic_bool *stop;
    unsigned long got;
};

/* Another thread's DMA: get, write, put, over and over. */
static void *dma_worker(void *arg)
{
    struct worker *w = arg;
    while (!atomic_load(w->stop)) {
        struct vfu_dma_region *held;
        void *p;
        if (vfu_dma_get(w->dma, 0x10000, 64, RW, &p, &held) < 0)
            continue;
        memset(p, 1, 64);
        vfu_dma_put(w->dma, held, 0x10000, 64, true);
        w->got++;
    }
    return NULL;
}

/* The device's thread maps and unmaps while two threads do DMA: no region
 * goes away under a user (ASan, TSan), every unmap completes once let go. */
/* Report sizes never wrap: a client's 2^64-1 bytes at page size 1 is far
 * too big (2^61 bytes), not 0 bytes; a report of a huge range that is all
 * clean costs nothing per page; a dirty page at the top of a large range
 * lands in the last bit of a bitmap sized exactly. */
START_TEST(test_dirty_report_limits)
{
    uint64_t bytes = 0;
    ck_assert_int_eq(vfu_dma_report_bitmap_size(0, UINT64_MAX, 1, &bytes), 0);
    ck_assert_uint_eq(bytes, UINT64_C(1) << 61);
    ck_assert_int_eq(vfu_dma_report_bitmap_size(0, UINT64_MAX, 4096, &bytes), 0);
    ck_assert_uint_eq(bytes, UINT64_C(1) << 49);
    ck_assert_int_eq(vfu_dma_report_bitmap_size(0, 64 * PAGE, PAGE, &bytes), 0);
    ck_assert_uint_eq(bytes, 8);
    ck_assert_int_eq(vfu_dma_report_bitmap_size(0, 64 * PAGE + 1, PAGE, &bytes), 0);
    ck_assert_uint_eq(bytes, 16);

    struct vfu_dma *dma;
    ck_assert_int_eq(vfu_dma_new(8, &dma), 0);
    map_memfd(dma, 0x100000, 128 * PAGE);
    ck_assert_int_eq(vfu_dma_logging_start(dma, PAGE), 0);
    vfu_dma_mark_dirty(dma, 0x100000 + 127 * PAGE, 1);
    uint64_t bitmap[2] = {0};
    ck_assert_int_eq(
        vfu_dma_logging_report(dma, 0x100000, 128 * PAGE, PAGE, bitmap, sizeof(bitmap)), 0);
    ck_assert_uint_eq(bitmap[0], 0);
    ck_assert_uint_eq(bitmap[1], UINT64_C(1) << 63);
    /* One report page for all of it: one bit. */
    vfu_dma_mark_dirty(dma, 0x100000 + 5 * PAGE, 1);
    ck_assert_int_eq(vfu_dma_logging_report(dma, 0, UINT64_C(1) << 40, UINT64_C(1) << 40, bitmap,
                                            sizeof(bitmap)),
                     0);
    ck_assert_uint_eq(bitmap[0], 1);
    vfu_dma_logging_stop(dma);
    vfu_dma_free(dma);
}
END_TEST

START_TEST(test_map_unmap_under_threads)
{
    struct vfu_dma *dma;
    atomic_bool stop = false;
    struct worker w[2];
    pthread_t t[2];

    ck_assert_int_eq(vfu_dma_new(8, &dma), 0);
    ck_assert_int_eq(vfu_dma_logging_start(dma, PAGE), 0);
    for (int i = 0; i < 2; i++) {
        w[i] = (struct worker){.dma = dma, .stop = &stop};
        ck_assert_int_eq(pthread_create(&t[i], NULL, dma_worker, &w[i]), 0);
    }
    for (int round = 0; round < 2000; round++) {
        map_memfd(dma, 0x10000, PAGE);
        if (round % 100 == 0)
            usleep(1000); /* let the workers in */
        int r = vfu_dma_unmap(dma, 0x10000, PAGE, NULL, NULL);
        ck_assert_int_ge(r, 0);
        (void)vfu_dma_reap(dma, 0);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    ck_assert_uint_eq(vfu_dma_reap(dma, 0), UINT64_MAX);
    ck_assert_uint_gt(w[0].got + w[1].got, 0);
    vfu_dma_free(dma);
}
END_TEST

static Suite *dma_refs_suite(void)
{
    Suite *s = suite_create("dma-refs");
    TCase *tc = tcase_create("refs");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_unmap_while_held);
    tcase_add_test(tc, test_get_errors);
    tcase_add_test(tc, test_dirty_logging);
    tcase_add_test(tc, test_dirty_report_scaled);
    tcase_add_test(tc, test_dirty_report_limits);
    tcase_add_test(tc, test_map_unmap_under_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(dma_refs_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
