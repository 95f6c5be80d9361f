/* SPDX-License-Identifier: MIT */
/*
 * The migration v2 state machine's paths (vfio-user.rst "Complex State
 * Transitions", as <linux/vfio.h> walks them without the P2P states): a pure
 * function, so every pair of states is tested on its own.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/*
 * The state after the next direct arc from `from` on the shortest path to
 * `target` that has no saving state (PRE_COPY, STOP_COPY) inside it;
 * `target` itself when from == target. -EINVAL for a target a client may
 * not ask for (ERROR, the P2P states, unknown values, PRE_COPY when flags
 * lack VFU_MIGRATION_PRE_COPY), from ERROR (only a reset leaves it), and
 * for STOP_COPY -> PRE_COPY, which the spec forbids.
 */
int vfu_mig_next_arc(uint32_t from, uint32_t target, uint64_t flags);

/* PRE_COPY, STOP_COPY and RESUMING: a data session is open. */
bool vfu_mig_in_session(uint32_t state);
