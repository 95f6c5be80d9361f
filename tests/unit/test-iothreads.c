/* SPDX-License-Identifier: MIT */
/*
 * The I/O thread pool and the mailboxes between loops: calls run on their
 * thread in order, answers come back on the main loop, a thread blocked in
 * one call delays no other thread, and freeing the pool answers what was
 * still queued. make check also runs this suite under ThreadSanitizer.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "iothreads.h"
#include "util/mailbox.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Run the main loop until *flag is set (or 10 s pass). */
static void run_until(sd_event *e, atomic_bool *flag)
{
    uint64_t end = now_ms() + 10000;
    while (!atomic_load(flag) && now_ms() < end)
        ck_assert_int_ge(sd_event_run(e, 100 * 1000), 0);
    ck_assert_msg(atomic_load(flag), "the main loop waited 10 s in vain");
}

struct order {
    pthread_t main_thread;
    pthread_t seen_thread[2];
    int next[2]; /* per thread: the sequence number expected next */
    bool in_order[2];
    int answered;
    atomic_bool all_answered;
    int total;
};

struct job {
    struct order *o;
    unsigned thread;
    int seq;
};

static int job_run(void *arg)
{
    struct job *j = arg;
    struct order *o = j->o;
    /* Only this thread touches its own slots. */
    if (j->seq == 0)
        o->seen_thread[j->thread] = pthread_self();
    if (!pthread_equal(o->seen_thread[j->thread], pthread_self()) ||
        pthread_equal(o->main_thread, pthread_self()) || j->seq != o->next[j->thread])
        o->in_order[j->thread] = false;
    o->next[j->thread]++;
    return j->seq * 2;
}

static void job_done(void *arg, int result)
{
    struct job *j = arg;
    struct order *o = j->o;
    /* Answers run on the main thread. */
    ck_assert(pthread_equal(o->main_thread, pthread_self()));
    ck_assert_int_eq(result, j->seq * 2);
    if (++o->answered == o->total)
        atomic_store(&o->all_answered, true);
    free(j);
}

START_TEST(test_calls_run_in_order_on_their_thread)
{
    sd_event *e;
    struct io_threads *pool;
    struct order o = {.main_thread = pthread_self(), .in_order = {true, true}, .total = 2000};

    ck_assert_int_ge(sd_event_new(&e), 0);
    ck_assert_int_eq(io_threads_new(e, 2, &pool), 0);
    ck_assert_uint_eq(io_threads_count(pool), 2);
    ck_assert_ptr_null(io_threads_get(pool, 2));
    for (int i = 0; i < o.total; i++) {
        struct job *j = malloc(sizeof(*j));
        ck_assert_ptr_nonnull(j);
        *j = (struct job){.o = &o, .thread = (unsigned)i % 2, .seq = i / 2};
        ck_assert_int_eq(io_thread_call(io_threads_get(pool, j->thread), job_run, job_done, j), 0);
    }
    run_until(e, &o.all_answered);
    ck_assert(o.in_order[0] && o.in_order[1]);
    ck_assert(!pthread_equal(o.seen_thread[0], o.seen_thread[1]));
    io_threads_free(pool);
    sd_event_unref(e);
}
END_TEST

/* A call's argument: what the call returns, and whether its answer came. */
struct probe_call {
    int value;
    atomic_bool answered;
};

static int sleep_then(void *arg)
{
    usleep(600 * 1000);
    return ((struct probe_call *)arg)->value;
}

static int quick(void *arg)
{
    return 7;
}

static void note_done(void *arg, int result)
{
    struct probe_call *c = arg;
    ck_assert_int_eq(result, c->value);
    atomic_store(&c->answered, true);
}

/* A device that blocks its thread for a while delays no other thread, nor
 * the main loop. */
START_TEST(test_blocked_thread_delays_no_other)
{
    sd_event *e;
    struct io_threads *pool;
    struct probe_call slow = {.value = 3}, fast = {.value = 7}, sync = {.value = 5};

    ck_assert_int_ge(sd_event_new(&e), 0);
    ck_assert_int_eq(io_threads_new(e, 2, &pool), 0);
    ck_assert_int_eq(io_thread_call(io_threads_get(pool, 0), sleep_then, note_done, &slow), 0);
    uint64_t start = now_ms();
    ck_assert_int_eq(io_thread_call(io_threads_get(pool, 1), quick, note_done, &fast), 0);
    run_until(e, &fast.answered);
    uint64_t quick_ms = now_ms() - start;
    ck_assert_msg(!atomic_load(&slow.answered), "the slow call finished first");
    ck_assert_msg(quick_ms < 500, "the quick call took %llu ms behind a blocked thread",
                  (unsigned long long)quick_ms);
    ck_assert_int_eq(io_thread_call_sync(io_threads_get(pool, 1), sleep_then, &sync), 5);
    run_until(e, &slow.answered);
    io_threads_free(pool);
    sd_event_unref(e);
}
END_TEST

struct timer_probe {
    struct io_thread *t;
    pthread_t thread;
    atomic_bool fired;
    sd_event_source *source;
};

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
    struct timer_probe *p = userdata;
    p->thread = pthread_self();
    atomic_store(&p->fired, true);
    return 0;
}

/* What lives on a thread is made there, from its own loop. */
static int add_timer(void *arg)
{
    struct timer_probe *p = arg;
    sd_event *e = io_thread_event(p->t);
    uint64_t now;
    sd_event_now(e, CLOCK_MONOTONIC, &now);
    return sd_event_add_time(e, &p->source, CLOCK_MONOTONIC, now + 1000, 0, on_timer, p);
}

static int drop_timer(void *arg)
{
    struct timer_probe *p = arg;
    p->source = sd_event_source_unref(p->source);
    return 0;
}

START_TEST(test_sources_on_the_thread_loop)
{
    sd_event *e;
    struct io_threads *pool;
    struct timer_probe p = {0};

    ck_assert_int_ge(sd_event_new(&e), 0);
    ck_assert_int_eq(io_threads_new(e, 1, &pool), 0);
    p.t = io_threads_least_loaded(pool);
    ck_assert_int_eq(io_thread_call_sync(p.t, add_timer, &p), 0);
    uint64_t end = now_ms() + 5000;
    while (!atomic_load(&p.fired) && now_ms() < end)
        usleep(1000);
    ck_assert(atomic_load(&p.fired));
    ck_assert(!pthread_equal(p.thread, pthread_self()));
    ck_assert_int_eq(io_thread_call_sync(p.t, drop_timer, &p), 0);
    io_threads_free(pool);
    sd_event_unref(e);
}
END_TEST

START_TEST(test_least_loaded)
{
    sd_event *e;
    struct io_threads *pool;

    ck_assert_int_ge(sd_event_new(&e), 0);
    ck_assert_int_eq(io_threads_new(e, 3, &pool), 0);
    ck_assert_uint_eq(io_thread_index(io_threads_least_loaded(pool)), 0);
    io_thread_add_load(io_threads_get(pool, 0), 1);
    io_thread_add_load(io_threads_get(pool, 1), 1);
    ck_assert_uint_eq(io_thread_index(io_threads_least_loaded(pool)), 2);
    io_thread_add_load(io_threads_get(pool, 2), 2);
    io_thread_add_load(io_threads_get(pool, 0), -1);
    ck_assert_uint_eq(io_thread_index(io_threads_least_loaded(pool)), 0);
    ck_assert_uint_eq(io_thread_load(io_threads_get(pool, 2)), 2);
    io_threads_free(pool);
    ck_assert_int_eq(io_threads_new(e, 0, &pool), -EINVAL);
    ck_assert_int_eq(io_threads_new(e, IO_THREADS_MAX + 1, &pool), -EINVAL);
    ck_assert_uint_ge(io_threads_default_count(), 1);
    sd_event_unref(e);
}
END_TEST

static atomic_int leftover_answers;

static void count_answer(void *arg, int result)
{
    atomic_fetch_add(&leftover_answers, 1);
}

/* Freeing the pool with calls queued: each runs, and each answer arrives. */
START_TEST(test_free_answers_queued_calls)
{
    sd_event *e;
    struct io_threads *pool;
    struct probe_call slow = {.value = 1};

    ck_assert_int_ge(sd_event_new(&e), 0);
    ck_assert_int_eq(io_threads_new(e, 2, &pool), 0);
    ck_assert_int_eq(io_thread_call(io_threads_get(pool, 0), sleep_then, count_answer, &slow), 0);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(io_thread_call(io_threads_get(pool, i % 2), quick, count_answer, NULL), 0);
    io_threads_free(pool);
    ck_assert_int_eq(atomic_load(&leftover_answers), 101);
    sd_event_unref(e);
}
END_TEST

/* A mailbox on its own: posts from many threads at once all arrive. */
struct poster {
    struct mailbox *mb;
    atomic_int *count;
};

static void count_one(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void *post_many(void *arg)
{
    struct poster *p = arg;
    for (int i = 0; i < 5000; i++)
        while (mailbox_post(p->mb, count_one, p->count) < 0)
            usleep(100);
    return NULL;
}

START_TEST(test_mailbox_many_posters)
{
    sd_event *e;
    struct mailbox *mb;
    atomic_int count = 0;
    pthread_t threads[4];

    ck_assert_int_ge(sd_event_new(&e), 0);
    ck_assert_int_eq(mailbox_new(e, &mb), 0);
    struct poster p = {mb, &count};
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, post_many, &p), 0);
    uint64_t end = now_ms() + 10000;
    while (atomic_load(&count) < 4 * 5000 && now_ms() < end)
        ck_assert_int_ge(sd_event_run(e, 10 * 1000), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    mailbox_free(mb); /* runs what the loop has not yet */
    ck_assert_int_eq(atomic_load(&count), 4 * 5000);
    sd_event_unref(e);
}
END_TEST

static Suite *iothreads_suite(void)
{
    Suite *s = suite_create("iothreads");
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_calls_run_in_order_on_their_thread);
    tcase_add_test(tc, test_blocked_thread_delays_no_other);
    tcase_add_test(tc, test_sources_on_the_thread_loop);
    tcase_add_test(tc, test_least_loaded);
    tcase_add_test(tc, test_free_answers_queued_calls);
    tcase_add_test(tc, test_mailbox_many_posters);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(iothreads_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
