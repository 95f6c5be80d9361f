/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The report format the host test (tests/integration/test-guest.c) parses
 * from the guest's console, one line per fact or verdict:
 *
 *   MUSERD-TEST <device> <key=value>...     a measurement, for the log
 *   MUSERD-TEST PASS <check>
 *   MUSERD-TEST FAIL <check>: <reason>
 *   MUSERD-TEST SKIP <check>: <reason>
 *
 * <check> names are stable: the host asserts on them.
 */
#ifndef MUSERD_TEST_H
#define MUSERD_TEST_H

#include <linux/printk.h>

#define MT_INFO(fmt, ...)	 pr_info("MUSERD-TEST " fmt "\n", ##__VA_ARGS__)
#define MT_PASS(check)		 pr_info("MUSERD-TEST PASS %s\n", check)
#define MT_FAIL(check, fmt, ...) pr_info("MUSERD-TEST FAIL %s: " fmt "\n", check, ##__VA_ARGS__)
#define MT_SKIP(check, fmt, ...) pr_info("MUSERD-TEST SKIP %s: " fmt "\n", check, ##__VA_ARGS__)

/* One verdict from a check that left its reason in why[] (empty: passed). */
static inline void mt_verdict(const char *check, const char *why)
{
	if (why[0])
		MT_FAIL(check, "%s", why);
	else
		MT_PASS(check);
}

#endif
