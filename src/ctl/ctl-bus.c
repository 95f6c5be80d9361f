/* SPDX-License-Identifier: MIT */
/*
 * muserctl's bus connection and how its failures read. An operator should
 * learn from one line what is wrong and what to do: the bus is not there,
 * muserd is not on it, the bus policy refuses us, or muserd refused the
 * request (its error messages are sentences for people, printed as they are).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ctl/ctl.h"

const char *ctl_bus_description(const struct ctl_options *o)
{
    static char buf[512];

    switch (o->bus_kind) {
    case CTL_BUS_SYSTEM:
        return "the system bus";
    case CTL_BUS_USER:
        return "the user bus";
    case CTL_BUS_ADDRESS:
        break;
    }
    snprintf(buf, sizeof(buf), "the bus at %s", o->address);
    return buf;
}

static int open_address(const char *address, sd_bus **ret)
{
    _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;

    int r = sd_bus_new(&bus);
    if (r < 0)
        return r;
    r = sd_bus_set_address(bus, address);
    if (r < 0)
        return r;
    r = sd_bus_set_bus_client(bus, true);
    if (r < 0)
        return r;
    r = sd_bus_set_description(bus, "muserctl");
    if (r < 0)
        return r;
    r = sd_bus_start(bus);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(bus);
    return 0;
}

int ctl_bus_open(const struct ctl_options *o, sd_bus **ret)
{
    int r;

    switch (o->bus_kind) {
    case CTL_BUS_SYSTEM:
        r = sd_bus_open_system_with_description(ret, "muserctl");
        break;
    case CTL_BUS_USER:
        r = sd_bus_open_user_with_description(ret, "muserctl");
        break;
    default:
        r = open_address(o->address, ret);
        break;
    }
    if (r == -ENOMEDIUM && o->bus_kind == CTL_BUS_USER)
        /* sd-bus's way of saying it has no address to try. */
        fprintf(stderr, "muserctl: Cannot connect to the user bus: neither "
                        "DBUS_SESSION_BUS_ADDRESS nor XDG_RUNTIME_DIR is set\n");
    else if (r < 0)
        fprintf(stderr, "muserctl: Cannot connect to %s: %s%s\n", ctl_bus_description(o),
                strerror(-r),
                o->bus_kind == CTL_BUS_SYSTEM ? " (is dbus running?)"
                : o->bus_kind == CTL_BUS_USER ? " (is there a user session bus?)"
                                              : "");
    return r;
}

static void print_not_running(const struct ctl_options *o)
{
    const char *how = o->bus_kind == CTL_BUS_SYSTEM ? "systemctl start muserd"
                      : o->bus_kind == CTL_BUS_USER ? "muserd --user"
                                                    : NULL;

    if (how)
        fprintf(stderr,
                "muserctl: muserd is not running on %s (%s has no owner); start it with %s\n",
                ctl_bus_description(o), MUSERD_BUS_NAME, how);
    else
        fprintf(stderr,
                "muserctl: muserd is not running on %s (%s has no owner); start it with "
                "muserd --bus-address %s\n",
                ctl_bus_description(o), MUSERD_BUS_NAME, o->address);
}

void ctl_print_error(const struct ctl_options *o, const sd_bus_error *error, int r)
{
    if (sd_bus_error_has_names(error, SD_BUS_ERROR_SERVICE_UNKNOWN,
                               SD_BUS_ERROR_NAME_HAS_NO_OWNER)) {
        print_not_running(o);
        return;
    }
    /* The policy's own message ("Rejected send message, 2 matched rules; ...")
     * names D-Bus internals; say who may do this instead. */
    if (sd_bus_error_has_name(error, SD_BUS_ERROR_ACCESS_DENIED)) {
        fprintf(stderr,
                "muserctl: Permission denied by the policy of %s: this needs root or "
                "membership in group muserd\n",
                ctl_bus_description(o));
        return;
    }
    /* sd-bus reports local failures as System.Error.ERRNO with strerror() as
     * the message: on its own that line would not say what failed. */
    bool local = sd_bus_error_is_set(error) && strncmp(error->name, "System.Error.", 13) == 0;
    if (sd_bus_error_is_set(error) && !local && error->message && *error->message)
        fprintf(stderr, "muserctl: %s\n", error->message);
    else
        fprintf(stderr, "muserctl: Talking to muserd on %s failed: %s\n", ctl_bus_description(o),
                strerror(-r));
}

int ctl_call(sd_bus *bus, const struct ctl_options *o, const char *path, const char *interface,
             const char *member, sd_bus_message **reply, const char *types, ...)
{
    _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
    va_list ap;

    va_start(ap, types);
    int r = sd_bus_call_methodv(bus, MUSERD_BUS_NAME, path, interface, member, &error, reply, types,
                                ap);
    va_end(ap);
    if (r < 0)
        ctl_print_error(o, &error, r);
    return r;
}
