/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vfu/irq.h"

#define INTX VFIO_PCI_INTX_IRQ_INDEX
#define MSI  VFIO_PCI_MSI_IRQ_INDEX
#define MSIX VFIO_PCI_MSIX_IRQ_INDEX

static const uint32_t EVENTFD_TRIGGER = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;

static struct vfu_irqs *irqs_new(void)
{
    uint32_t counts[VFIO_PCI_NUM_IRQS] = {[INTX] = 1, [MSI] = 4, [MSIX] = 8};
    struct vfu_irqs *irqs;
    ck_assert_int_eq(vfu_irqs_new(counts, &irqs), 0);
    return irqs;
}

static int efd(void)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    return fd;
}

/* What the client would read from its eventfd: the count since the last read. */
static uint64_t drain(int fd)
{
    uint64_t v = 0;
    if (read(fd, &v, sizeof(v)) != sizeof(v)) {
        ck_assert_int_eq(errno, EAGAIN);
        return 0;
    }
    return v;
}

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* SET_IRQS as the decoder hands it over. fds are dup()ed, so the test keeps
 * its own ends to read; the message's copies go to irqs or are closed here. */
static int set_irqs(struct vfu_irqs *irqs, uint32_t flags, uint32_t index, uint32_t start,
                    uint32_t count, const int *fds, size_t nr_fds, const uint8_t *bools)
{
    int msg_fds[16];
    ck_assert_uint_le(nr_fds, 16);
    for (size_t i = 0; i < nr_fds; i++)
        msg_fds[i] = dup(fds[i]);
    struct vfu_msg msg = {.fds = msg_fds, .nr_fds = nr_fds};
    struct vfu_irq_set_req req = {
        .set = {.argsz = 20, .flags = flags, .index = index, .start = start, .count = count},
        .bools = bools,
    };
    int r = vfu_irqs_set(irqs, &req, &msg);
    for (size_t i = 0; i < nr_fds; i++)
        if (msg_fds[i] >= 0)
            close(msg_fds[i]);
    return r;
}

START_TEST(test_info)
{
    struct vfu_irqs *irqs = irqs_new();
    ck_assert_uint_eq(vfu_irqs_count(irqs, MSIX), 8);
    ck_assert_uint_eq(vfu_irqs_count(irqs, VFIO_PCI_ERR_IRQ_INDEX), 0);
    ck_assert_uint_eq(vfu_irqs_count(irqs, 99), 0);
    ck_assert(vfu_irqs_info_flags(irqs, INTX) & VFIO_IRQ_INFO_AUTOMASKED);
    ck_assert(vfu_irqs_info_flags(irqs, INTX) & VFIO_IRQ_INFO_EVENTFD);
    ck_assert(vfu_irqs_info_flags(irqs, MSI) & VFIO_IRQ_INFO_NORESIZE);
    ck_assert(!(vfu_irqs_info_flags(irqs, MSIX) & VFIO_IRQ_INFO_NORESIZE));
    ck_assert(vfu_irqs_info_flags(irqs, MSIX) & VFIO_IRQ_INFO_MASKABLE);
    vfu_irqs_free(irqs);

    uint32_t too_many[VFIO_PCI_NUM_IRQS] = {[MSIX] = 4096};
    ck_assert_int_eq(vfu_irqs_new(too_many, &irqs), -EINVAL);
}
END_TEST

START_TEST(test_trigger_eventfd)
{
    struct vfu_irqs *irqs = irqs_new();
    int fds[2] = {efd(), efd()};

    ck_assert(!vfu_irqs_has_eventfd(irqs, MSIX, 3));
    ck_assert_int_eq(set_irqs(irqs, EVENTFD_TRIGGER, MSIX, 3, 2, fds, 2, NULL), 0);
    ck_assert(vfu_irqs_has_eventfd(irqs, MSIX, 3));
    ck_assert(vfu_irqs_has_eventfd(irqs, MSIX, 4));
    ck_assert(!vfu_irqs_has_eventfd(irqs, MSIX, 5));

    ck_assert_int_eq(vfu_irqs_trigger(irqs, MSIX, 4), 0);
    ck_assert_int_eq(vfu_irqs_trigger(irqs, MSIX, 4), 0);
    ck_assert_uint_eq(drain(fds[1]), 2);
    ck_assert_uint_eq(drain(fds[0]), 0);
    ck_assert_int_eq(vfu_irqs_trigger(irqs, MSIX, 3), 0);
    ck_assert_uint_eq(drain(fds[0]), 1);

    ck_assert_int_eq(vfu_irqs_trigger(irqs, MSIX, 8), -EINVAL);
    ck_assert_int_eq(vfu_irqs_trigger(irqs, VFIO_PCI_ERR_IRQ_INDEX, 0), -EINVAL);
    ck_assert_int_eq(vfu_irqs_trigger(irqs, VFIO_PCI_NUM_IRQS, 0), -EINVAL);

    /* DATA_NONE|TRIGGER from the client fires it too. */
    ck_assert_int_eq(set_irqs(irqs, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, MSIX, 3,
                              2, NULL, 0, NULL),
                     0);
    ck_assert_uint_eq(drain(fds[0]), 1);
    ck_assert_uint_eq(drain(fds[1]), 1);
    /* DATA_BOOL fires only where the byte is set. */
    const uint8_t bools[2] = {0, 1};
    ck_assert_int_eq(set_irqs(irqs, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, MSIX, 3,
                              2, NULL, 0, bools),
                     0);
    ck_assert_uint_eq(drain(fds[0]), 0);
    ck_assert_uint_eq(drain(fds[1]), 1);

    /* Replacing an eventfd: the new one gets the interrupts. */
    int other = efd();
    ck_assert_int_eq(set_irqs(irqs, EVENTFD_TRIGGER, MSIX, 4, 1, &other, 1, NULL), 0);
    ck_assert_int_eq(vfu_irqs_trigger(irqs, MSIX, 4), 0);
    ck_assert_uint_eq(drain(fds[1]), 0);
    ck_assert_uint_eq(drain(other), 1);

    /* No fds: de-assign that range. */
    ck_assert_int_eq(set_irqs(irqs, EVENTFD_TRIGGER, MSIX, 3, 2, NULL, 0, NULL), 0);
    ck_assert(!vfu_irqs_has_eventfd(irqs, MSIX, 3));
    ck_assert(!vfu_irqs_has_eventfd(irqs, MSIX, 4));

    vfu_irqs_free(irqs);
    close(fds[0]);
    close(fds[1]);
    close(other);
}
END_TEST

START_TEST(test_mask_pending)
{
    struct vfu_irqs *irqs = irqs_new();
    int fd = efd();
    const uint32_t none = VFIO_IRQ_SET_DATA_NONE;

    ck_assert_int_eq(set_irqs(irqs, EVENTFD_TRIGGER, MSI, 1, 1, &fd, 1, NULL), 0);
    ck_assert_int_eq(set_irqs(irqs, none | VFIO_IRQ_SET_ACTION_MASK, MSI, 1, 1, NULL, 0, NULL), 0);
    ck_assert_int_eq(vfu_irqs_trigger(irqs, MSI, 1), 0);
    ck_assert_int_eq(vfu_irqs_trigger(irqs, MSI, 1), 0);
    ck_assert_uint_eq(drain(fd), 0); /* masked: held back */

    ck_assert_int_eq(set_irqs(irqs, none | VFIO_IRQ_SET_ACTION_UNMASK, MSI, 1, 1, NULL, 0, NULL),
                     0);
    ck_assert_uint_eq(drain(fd), 1); /* one pending bit, delivered once */
    ck_assert_int_eq(set_irqs(irqs, none | VFIO_IRQ_SET_ACTION_UNMASK, MSI, 1, 1, NULL, 0, NULL),
                     0);
    ck_assert_uint_eq(drain(fd), 0); /* nothing left pending */

    /* BOOL mask only where set; unmask through the loop's entry point. */
    const uint8_t bools[2] = {1, 0};
    ck_assert_int_eq(set_irqs(irqs, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_MASK, MSI, 1, 2,
                              NULL, 0, bools),
                     0);
    ck_assert_int_eq(vfu_irqs_trigger(irqs, MSI, 1), 0);
    ck_assert_uint_eq(drain(fd), 0);
    ck_assert_int_eq(vfu_irqs_unmask(irqs, MSI, 1), 0);
    ck_assert_uint_eq(drain(fd), 1);
    ck_assert_int_eq(vfu_irqs_unmask(irqs, MSI, 9), -EINVAL);

    /* Raised before any eventfd: delivered when one arrives. */
    ck_assert_int_eq(vfu_irqs_trigger(irqs, MSI, 2), 0);
    int late = efd();
    ck_assert_int_eq(set_irqs(irqs, EVENTFD_TRIGGER, MSI, 2, 1, &late, 1, NULL), 0);
    ck_assert_uint_eq(drain(late), 1);

    vfu_irqs_free(irqs);
    close(fd);
    close(late);
}
END_TEST

START_TEST(test_intx_automask)
{
    struct vfu_irqs *irqs = irqs_new();
    int fd = efd();
    const uint32_t unmask = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK;

    ck_assert_int_eq(set_irqs(irqs, EVENTFD_TRIGGER, INTX, 0, 1, &fd, 1, NULL), 0);
    ck_assert_int_eq(vfu_irqs_trigger(irqs, INTX, 0), 0);
    ck_assert_uint_eq(drain(fd), 1);
    /* Masked itself: a second assertion waits for the client's UNMASK. */
    ck_assert_int_eq(vfu_irqs_trigger(irqs, INTX, 0), 0);
    ck_assert_uint_eq(drain(fd), 0);
    ck_assert_int_eq(set_irqs(irqs, unmask, INTX, 0, 1, NULL, 0, NULL), 0);
    ck_assert_uint_eq(drain(fd), 1);
    /* ...and delivering on unmask masked it again. */
    ck_assert_int_eq(vfu_irqs_trigger(irqs, INTX, 0), 0);
    ck_assert_uint_eq(drain(fd), 0);
    ck_assert_int_eq(set_irqs(irqs, unmask, INTX, 0, 1, NULL, 0, NULL), 0);
    ck_assert_uint_eq(drain(fd), 1);
    ck_assert_int_eq(set_irqs(irqs, unmask, INTX, 0, 1, NULL, 0, NULL), 0);
    ck_assert_int_eq(vfu_irqs_trigger(irqs, INTX, 0), 0);
    ck_assert_uint_eq(drain(fd), 1);

    /* The resample eventfd the loop would watch. */
    int resample = efd();
    ck_assert_int_eq(vfu_irqs_action_fd(irqs, INTX, 0, VFIO_IRQ_SET_ACTION_UNMASK), -1);
    ck_assert_int_eq(set_irqs(irqs, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK, INTX, 0,
                              1, &resample, 1, NULL),
                     0);
    int held = vfu_irqs_action_fd(irqs, INTX, 0, VFIO_IRQ_SET_ACTION_UNMASK);
    ck_assert_int_ge(held, 0);
    ck_assert_int_ne(held, resample); /* the message's copy, now owned by irqs */
    int trigger = vfu_irqs_action_fd(irqs, INTX, 0, VFIO_IRQ_SET_ACTION_TRIGGER);
    ck_assert_int_ge(trigger, 0);
    ck_assert_int_ne(trigger, held);
    ck_assert_int_eq(vfu_irqs_action_fd(irqs, INTX, 0, VFIO_IRQ_SET_ACTION_MASK), -1);
    ck_assert_int_eq(vfu_irqs_action_fd(irqs, INTX, 0, 0), -EINVAL);
    ck_assert_int_eq(vfu_irqs_action_fd(irqs, INTX, 1, VFIO_IRQ_SET_ACTION_UNMASK), -EINVAL);

    vfu_irqs_reset(irqs);
    ck_assert(!fd_is_open(held));
    ck_assert(!vfu_irqs_has_eventfd(irqs, INTX, 0));
    vfu_irqs_free(irqs);
    close(fd);
    close(resample);
}
END_TEST

/* INTx is a level: raised while automasked and lowered before the unmask,
 * it does not fire at the unmask (the guest's handler would find nothing:
 * a storm of unhandled interrupts under QEMU). */
START_TEST(test_intx_lowered_before_unmask)
{
    struct vfu_irqs *irqs = irqs_new();
    int fd = efd();
    const uint32_t unmask = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK;

    ck_assert_int_eq(set_irqs(irqs, EVENTFD_TRIGGER, INTX, 0, 1, &fd, 1, NULL), 0);
    ck_assert_int_eq(vfu_irqs_trigger(irqs, INTX, 0), 0);
    ck_assert_uint_eq(drain(fd), 1);
    ck_assert_int_eq(vfu_irqs_trigger(irqs, INTX, 0), 0); /* pending behind the mask */
    ck_assert_int_eq(vfu_irqs_withdraw(irqs, INTX, 0), 0);
    ck_assert_int_eq(set_irqs(irqs, unmask, INTX, 0, 1, NULL, 0, NULL), 0);
    ck_assert_uint_eq(drain(fd), 0);
    /* Unmasked and raised again: it fires. */
    ck_assert_int_eq(vfu_irqs_trigger(irqs, INTX, 0), 0);
    ck_assert_uint_eq(drain(fd), 1);
    ck_assert_int_eq(vfu_irqs_withdraw(irqs, INTX, 1), -EINVAL);
    vfu_irqs_free(irqs);
    close(fd);
}
END_TEST

START_TEST(test_disable_all)
{
    struct vfu_irqs *irqs = irqs_new();
    int fds[8];
    for (int i = 0; i < 8; i++)
        fds[i] = efd();

    ck_assert_int_eq(set_irqs(irqs, EVENTFD_TRIGGER, MSIX, 0, 8, fds, 8, NULL), 0);
    int held = vfu_irqs_action_fd(irqs, MSIX, 7, VFIO_IRQ_SET_ACTION_TRIGGER);
    ck_assert_int_ge(held, 0);
    ck_assert_int_eq(set_irqs(irqs, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, MSIX, 0, 1,
                              NULL, 0, NULL),
                     0);

    ck_assert_int_eq(set_irqs(irqs, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, MSIX, 0,
                              0, NULL, 0, NULL),
                     0);
    for (uint32_t s = 0; s < 8; s++)
        ck_assert(!vfu_irqs_has_eventfd(irqs, MSIX, s));
    ck_assert(!fd_is_open(held));

    /* Masks went with it: a fresh eventfd on vector 0 fires at once. */
    ck_assert_int_eq(set_irqs(irqs, EVENTFD_TRIGGER, MSIX, 0, 1, fds, 1, NULL), 0);
    ck_assert_int_eq(vfu_irqs_trigger(irqs, MSIX, 0), 0);
    ck_assert_uint_eq(drain(fds[0]), 1);

    vfu_irqs_free(irqs);
    for (int i = 0; i < 8; i++)
        close(fds[i]);
}
END_TEST

START_TEST(test_bad_requests)
{
    struct vfu_irqs *irqs = irqs_new();
    int fds[2] = {efd(), efd()};
    const uint32_t none_trigger = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;

    /* Index out of range or absent, ranges past the count. */
    ck_assert_int_eq(set_irqs(irqs, none_trigger, VFIO_PCI_NUM_IRQS, 0, 0, NULL, 0, NULL), -EINVAL);
    ck_assert_int_eq(set_irqs(irqs, none_trigger, VFIO_PCI_ERR_IRQ_INDEX, 0, 0, NULL, 0, NULL),
                     -EINVAL);
    ck_assert_int_eq(set_irqs(irqs, none_trigger, MSI, 4, 1, NULL, 0, NULL), -EINVAL);
    ck_assert_int_eq(set_irqs(irqs, none_trigger, MSI, 3, 2, NULL, 0, NULL), -EINVAL);
    ck_assert_int_eq(set_irqs(irqs, none_trigger, MSI, 1, UINT32_MAX, NULL, 0, NULL), -EINVAL);
    ck_assert_int_eq(set_irqs(irqs, EVENTFD_TRIGGER, MSIX, 7, 2, fds, 2, NULL), -EINVAL);
    /* fds that do not match count; count 0 outside disable. */
    ck_assert_int_eq(set_irqs(irqs, EVENTFD_TRIGGER, MSIX, 0, 3, fds, 2, NULL), -EINVAL);
    ck_assert_int_eq(set_irqs(irqs, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, MSIX, 0, 0,
                              NULL, 0, NULL),
                     -EINVAL);
    /* Undefined DATA or ACTION. */
    ck_assert_int_eq(set_irqs(irqs, VFIO_IRQ_SET_ACTION_TRIGGER, MSIX, 0, 1, NULL, 0, NULL),
                     -EINVAL);
    ck_assert_int_eq(set_irqs(irqs, VFIO_IRQ_SET_DATA_NONE, MSIX, 0, 1, NULL, 0, NULL), -EINVAL);
    /* Nothing was taken by the failures. */
    for (uint32_t s = 0; s < 8; s++)
        ck_assert(!vfu_irqs_has_eventfd(irqs, MSIX, s));

    vfu_irqs_free(irqs);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

static Suite *irq_suite(void)
{
    Suite *s = suite_create("irq");
    TCase *tc = tcase_create("irqs");
    tcase_add_test(tc, test_info);
    tcase_add_test(tc, test_trigger_eventfd);
    tcase_add_test(tc, test_mask_pending);
    tcase_add_test(tc, test_intx_lowered_before_unmask);
    tcase_add_test(tc, test_intx_automask);
    tcase_add_test(tc, test_disable_all);
    tcase_add_test(tc, test_bad_requests);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(irq_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
