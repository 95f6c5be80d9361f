/* SPDX-License-Identifier: MIT */
#include "vfu/dma-guard.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct guard_range {
    uintptr_t start, end;
    volatile sig_atomic_t *fault_flag;
};

/* Sorted by start; ranges never overlap (they are distinct mmap()s). */
static struct guard_range *ranges;
static size_t nr_ranges, cap_ranges;
static bool handler_installed; /* under the lock */
static long page_size;
static atomic_flag table_lock = ATOMIC_FLAG_INIT;

static void lock_table(void)
{
    while (atomic_flag_test_and_set_explicit(&table_lock, memory_order_acquire))
        sched_yield();
}

static void unlock_table(void)
{
    atomic_flag_clear_explicit(&table_lock, memory_order_release);
}

static size_t lower_bound(uintptr_t addr)
{
    size_t lo = 0, hi = nr_ranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ranges[mid].start <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo; /* first range starting after addr */
}

static void on_sigbus(int sig, siginfo_t *si, void *context)
{
    uintptr_t addr = (uintptr_t)si->si_addr;
    bool handled = false;

    lock_table();
    size_t i = lower_bound(addr);
    if (i > 0 && addr < ranges[i - 1].end) {
        void *page = (void *)(addr & ~(uintptr_t)(page_size - 1));
        if (mmap(page, (size_t)page_size, PROT_READ | PROT_WRITE,
                 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED) {
            *ranges[i - 1].fault_flag = 1;
            handled = true; /* the faulting access runs again, on the zero page */
        }
    }
    unlock_table();
    /* Not ours: the default action, as if we had never been here. */
    if (!handled)
        signal(SIGBUS, SIG_DFL);
}

static int install_handler(void)
{
    struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER};

    page_size = sysconf(_SC_PAGESIZE);
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, NULL) < 0)
        return -errno;
    handler_installed = true;
    return 0;
}

static int add_locked(void *base, size_t len, volatile sig_atomic_t *fault_flag)
{
    if (!handler_installed) {
        int r = install_handler();
        if (r < 0)
            return r;
    }
    if (nr_ranges == cap_ranges) {
        size_t cap = cap_ranges ? cap_ranges * 2 : 64;
        struct guard_range *n = realloc(ranges, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        ranges = n;
        cap_ranges = cap;
    }
    uintptr_t start = (uintptr_t)base;
    size_t i = lower_bound(start);
    memmove(&ranges[i + 1], &ranges[i], (nr_ranges - i) * sizeof(*ranges));
    ranges[i] = (struct guard_range){start, start + len, fault_flag};
    nr_ranges++;
    return 0;
}

int dma_guard_add(void *base, size_t len, volatile sig_atomic_t *fault_flag)
{
    lock_table();
    int r = add_locked(base, len, fault_flag);
    unlock_table();
    return r;
}

void dma_guard_remove(void *base)
{
    uintptr_t start = (uintptr_t)base;

    lock_table();
    size_t i = lower_bound(start);
    if (i > 0 && ranges[i - 1].start == start) {
        memmove(&ranges[i - 1], &ranges[i], (nr_ranges - i) * sizeof(*ranges));
        if (--nr_ranges == 0) {
            free(ranges);
            ranges = NULL;
            cap_ranges = 0;
        }
    }
    unlock_table();
}
