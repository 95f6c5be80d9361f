/* SPDX-License-Identifier: MIT */
/*
 * The SIGBUS guard from several threads at once, as devices on different I/O
 * threads map guest memory: each thread maps a file, registers it, lets the
 * file shrink under the mapping, touches it (reads zeros, its flag set, the
 * process lives), and unregisters, while the others do the same. make check
 * also runs this suite under ThreadSanitizer.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vfu/dma-guard.h"

#define THREADS 4
#define ROUNDS  200

struct worker {
    int faults_seen;
    int zeros_read;
    int failures;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    long page = sysconf(_SC_PAGESIZE);

    for (int i = 0; i < ROUNDS; i++) {
        int fd = memfd_create("guard", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, 2 * page) < 0) {
            w->failures++;
            continue;
        }
        volatile uint8_t *p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            w->failures++;
            close(fd);
            continue;
        }
        volatile sig_atomic_t flag = 0;
        if (dma_guard_add((void *)p, 2 * page, &flag) < 0)
            w->failures++;
        p[page] = 0x5a;
        /* The client shrinks the file: the second page is gone. */
        if (ftruncate(fd, page) < 0)
            w->failures++;
        if (p[page + 8] == 0)
            w->zeros_read++;
        if (flag)
            w->faults_seen++;
        dma_guard_remove((void *)p);
        munmap((void *)p, 2 * page);
        close(fd);
    }
    return NULL;
}

START_TEST(test_threads_fault_and_register_at_once)
{
    pthread_t threads[THREADS];
    struct worker workers[THREADS] = {0};

    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, work, &workers[i]), 0);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        ck_assert_int_eq(workers[i].failures, 0);
        ck_assert_int_eq(workers[i].faults_seen, ROUNDS);
        ck_assert_int_eq(workers[i].zeros_read, ROUNDS);
    }
}
END_TEST

static Suite *guard_suite(void)
{
    Suite *s = suite_create("dma-guard");
    TCase *tc = tcase_create("threads");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_threads_fault_and_register_at_once);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(guard_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
