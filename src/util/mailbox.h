/* SPDX-License-Identifier: MIT */
/*
 * A mailbox: how control crosses from one thread's sd-event loop to
 * another's. Any thread posts a closure (fn, arg); the loop that owns the
 * mailbox runs it, in posting order, woken by an eventfd. The data path never
 * goes through here: it is for commands (create, destroy, reset) and their
 * answers.
 *
 * Threads: mailbox_new() and mailbox_free() on the owning loop's thread;
 * mailbox_post() from any thread, also from the owner itself, until
 * mailbox_free() begins (the owner of the mailbox makes sure nobody posts
 * after that, e.g. by joining the posting threads first).
 */
#pragma once

#include <stdbool.h>

#include <systemd/sd-event.h>

#include "util/macro.h"

struct mailbox;

typedef void (*mailbox_fn)(void *arg);

/* A closure with its queue link, for posts that must not fail: embed one in
 * the object posted and use mailbox_post_letter(). */
struct mailbox_letter {
    struct mailbox_letter *next;
    mailbox_fn fn;
    void *arg;
    bool embedded; /* not ours to free */
};

/* A mailbox whose closures run on `event` (its loop's thread). */
int mailbox_new(sd_event *event, struct mailbox **ret);
/*
 * Stop watching and free. Closures still queued are run first (each may
 * rely on running exactly once: an answer its poster waits for), so call it
 * where they may still run: on the owning thread, before its loop's objects
 * go away.
 */
void mailbox_free(struct mailbox *mb);
DEFINE_FREEP(struct mailbox, mailbox_free)

/* Run what is queued now, from the owning thread, without its loop (which
 * may have finished: shutting down). Returns how many closures ran. */
size_t mailbox_dispatch(struct mailbox *mb);

/*
 * Queue fn(arg) for the owning loop. Returns 0, or -ENOMEM (nothing queued,
 * fn never runs). Never blocks on the owner's work.
 */
int mailbox_post(struct mailbox *mb, mailbox_fn fn, void *arg);
/* Queue fn(arg) in the caller's letter, which must live until fn runs.
 * Cannot fail. */
void mailbox_post_letter(struct mailbox *mb, struct mailbox_letter *l, mailbox_fn fn, void *arg);
