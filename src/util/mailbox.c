/* SPDX-License-Identifier: MIT */
#include "util/mailbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>

struct mailbox {
    int efd;
    sd_event_source *source;
    pthread_mutex_t lock; /* guards head and tail */
    struct mailbox_letter *head, *tail;
};

/* Take the whole queue at once: closures posted while these run wait for
 * the next wakeup, so a closure that posts again cannot starve the loop. */
static struct mailbox_letter *take_all(struct mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    struct mailbox_letter *all = mb->head;
    mb->head = mb->tail = NULL;
    pthread_mutex_unlock(&mb->lock);
    return all;
}

static size_t run_all(struct mailbox_letter *l)
{
    size_t n = 0;
    while (l) {
        struct mailbox_letter *next = l->next;
        bool embedded = l->embedded;
        /* An embedded letter may be freed by fn: read it before. */
        l->fn(l->arg);
        if (!embedded)
            free(l);
        l = next;
        n++;
    }
    return n;
}

static int on_wakeup(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    struct mailbox *mb = userdata;
    uint64_t n;

    /* Read before taking the queue: a post after the take wakes us again. */
    (void)read(fd, &n, sizeof(n));
    (void)run_all(take_all(mb));
    return 0;
}

int mailbox_new(sd_event *event, struct mailbox **ret)
{
    struct mailbox *mb = calloc(1, sizeof(*mb));
    if (!mb)
        return -ENOMEM;
    pthread_mutex_init(&mb->lock, NULL);
    mb->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (mb->efd < 0) {
        int r = -errno;
        pthread_mutex_destroy(&mb->lock);
        free(mb);
        return r;
    }
    int r = sd_event_add_io(event, &mb->source, mb->efd, EPOLLIN, on_wakeup, mb);
    if (r < 0) {
        close(mb->efd);
        pthread_mutex_destroy(&mb->lock);
        free(mb);
        return r;
    }
    *ret = mb;
    return 0;
}

void mailbox_free(struct mailbox *mb)
{
    if (!mb)
        return;
    mb->source = sd_event_source_disable_unref(mb->source);
    (void)run_all(take_all(mb));
    safe_close(mb->efd);
    pthread_mutex_destroy(&mb->lock);
    free(mb);
}

size_t mailbox_dispatch(struct mailbox *mb)
{
    return run_all(take_all(mb));
}

static void enqueue(struct mailbox *mb, struct mailbox_letter *l)
{
    pthread_mutex_lock(&mb->lock);
    if (mb->tail)
        mb->tail->next = l;
    else
        mb->head = l;
    mb->tail = l;
    pthread_mutex_unlock(&mb->lock);

    /* Only EAGAIN can fail here (the counter is full), and then the owner
     * has a wakeup pending anyway. */
    uint64_t one = 1;
    (void)write(mb->efd, &one, sizeof(one));
}

int mailbox_post(struct mailbox *mb, mailbox_fn fn, void *arg)
{
    struct mailbox_letter *l = malloc(sizeof(*l));
    if (!l)
        return -ENOMEM;
    *l = (struct mailbox_letter){.fn = fn, .arg = arg};
    enqueue(mb, l);
    return 0;
}

void mailbox_post_letter(struct mailbox *mb, struct mailbox_letter *l, mailbox_fn fn, void *arg)
{
    *l = (struct mailbox_letter){.fn = fn, .arg = arg, .embedded = true};
    enqueue(mb, l);
}
