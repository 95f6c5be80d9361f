/* SPDX-License-Identifier: MIT */
/*
 * Waking a device's thread from any thread, with no fd per device: causes
 * are bits set atomically, and while any is set one letter waits in the
 * thread's mailbox; its run hands the bits gathered meanwhile to fn, on the
 * device's thread. Used for interrupts raised off-thread that need the PCI
 * model, guest memory let go that an unmap waits for, and a quiesce done.
 *
 * Threads: device_waker_wake() from any thread; the rest on the device's
 * thread. device_waker_free() only once no other thread can wake it (the
 * plugin's threads are stopped); a letter still queued frees itself.
 */
#pragma once

#include "util/mailbox.h"

enum device_wake_cause {
    DEVICE_WAKE_IRQ = 1u << 0,
    DEVICE_WAKE_DMA = 1u << 1,
    DEVICE_WAKE_QUIESCED = 1u << 2,
};

struct device_waker;

int device_waker_new(struct mailbox *mailbox, void (*fn)(void *opaque, unsigned causes),
                     void *opaque, struct device_waker **ret);
void device_waker_free(struct device_waker *w);
void device_waker_wake(struct device_waker *w, unsigned causes);
