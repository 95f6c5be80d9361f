/* SPDX-License-Identifier: MIT */
/*
 * The D-Bus face of muserd: the name org.muserd1, the Manager object at
 * /org/muserd1 and one org.muserd1.Device object per device. Everything it
 * does is a translation to manager calls; see org.muserd1(5).
 */
#pragma once

#include "manager.h"
#include "util/macro.h"

enum bus_mode {
    BUS_MODE_SYSTEM,  /* the default (zero); unreachable is a warning */
    BUS_MODE_USER,    /* the session bus; unreachable is a warning */
    BUS_MODE_ADDRESS, /* an explicit address; failure is an error */
    BUS_MODE_NONE,
};

struct bus;

/*
 * Connect to the bus, attach to the manager's event loop, register the
 * objects and request org.muserd1 synchronously, so that when this returns
 * 0 with *ret set the name is ours and the caller may say READY=1. For
 * BUS_MODE_SYSTEM and BUS_MODE_USER a failure is logged as a warning and
 * *ret is NULL (muserd keeps serving without D-Bus); for BUS_MODE_ADDRESS it
 * is logged as an error and returned. The bus sets the manager's hooks and
 * must be freed before the manager.
 */
int bus_new(struct manager *m, enum bus_mode mode, const char *address, struct bus **ret);
void bus_free(struct bus *b);
DEFINE_FREEP(struct bus, bus_free)
