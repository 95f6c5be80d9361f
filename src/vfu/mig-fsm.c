/* SPDX-License-Identifier: MIT */
#include "vfu/mig-fsm.h"

#include <errno.h>

#include "util/macro.h"
#include "vfu/wire.h"

enum {
    S = VFU_MIG_STOP,
    R = VFU_MIG_RUNNING,
    SC = VFU_MIG_STOP_COPY,
    RS = VFU_MIG_RESUMING,
    PC = VFU_MIG_PRE_COPY,
    NO = -EINVAL
};

/*
 * next[from][target]. Two paths of equal length are told apart by the
 * saving-state rule: RUNNING -> STOP_COPY goes by STOP, not PRE_COPY;
 * PRE_COPY -> STOP goes by RUNNING, not STOP_COPY.
 */
static const int next[8][8] = {
    [S] = {[S] = S, [R] = R, [SC] = SC, [RS] = RS, [PC] = R},
    [R] = {[S] = S, [R] = R, [SC] = S, [RS] = S, [PC] = PC},
    [SC] = {[S] = S, [R] = S, [SC] = SC, [RS] = S, [PC] = NO},
    [RS] = {[S] = S, [R] = S, [SC] = S, [RS] = RS, [PC] = S},
    [PC] = {[S] = R, [R] = R, [SC] = SC, [RS] = R, [PC] = PC},
};

static bool usable(uint32_t state, uint64_t flags)
{
    switch (state) {
    case VFU_MIG_STOP:
    case VFU_MIG_RUNNING:
    case VFU_MIG_STOP_COPY:
    case VFU_MIG_RESUMING:
        return true;
    case VFU_MIG_PRE_COPY:
        return (flags & VFU_MIGRATION_PRE_COPY) != 0;
    default: /* ERROR is left by reset alone; P2P is not vfio-user's */
        return false;
    }
}

int vfu_mig_next_arc(uint32_t from, uint32_t target, uint64_t flags)
{
    if (!usable(from, flags) || !usable(target, flags))
        return -EINVAL;
    /* Zero in the table is ERROR, never a next state: a missing entry. */
    int n = next[from][target];
    return n > 0 ? n : -EINVAL;
}

bool vfu_mig_in_session(uint32_t state)
{
    return state == VFU_MIG_PRE_COPY || state == VFU_MIG_STOP_COPY || state == VFU_MIG_RESUMING;
}
