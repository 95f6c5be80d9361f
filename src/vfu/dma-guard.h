/* SPDX-License-Identifier: MIT */
/*
 * Survive a client that shrinks the file behind a DMA mapping: touching the
 * vanished pages raises SIGBUS, which would kill every device in the
 * process. A SIGBUS handler looks the address up among the registered DMA
 * mappings; inside one, it puts an anonymous zero page over the faulting
 * page (the access completes, reading zeros) and sets that mapping's fault
 * flag, so the server drops the client at its next message. A SIGBUS
 * anywhere else keeps its default action.
 *
 * Threads: any thread may add and remove ranges, and fault, at once. The
 * table is guarded by a spinlock (an atomic flag, which a signal handler may
 * take, unlike a mutex): add/remove hold it for a memmove, the handler for a
 * lookup. A thread never faults while it holds it (it touches no guest
 * memory there), so the handler never waits for its own thread.
 */
#pragma once

#include <signal.h>
#include <stddef.h>

int dma_guard_add(void *base, size_t len, volatile sig_atomic_t *fault_flag);
void dma_guard_remove(void *base);
