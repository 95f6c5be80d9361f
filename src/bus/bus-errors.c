/* SPDX-License-Identifier: MIT */
#include "bus-errors.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

const sd_bus_error_map bus_error_map[] = {
    SD_BUS_ERROR_MAP(BUS_ERROR_NO_SUCH_TYPE, ENOENT),
    SD_BUS_ERROR_MAP(BUS_ERROR_DEVICE_EXISTS, EEXIST),
    SD_BUS_ERROR_MAP(BUS_ERROR_INVALID_CONFIG, EINVAL),
    SD_BUS_ERROR_MAP(BUS_ERROR_NO_SUCH_DEVICE, ENODEV),
    SD_BUS_ERROR_MAP(BUS_ERROR_INVALID_ID, EINVAL),
    SD_BUS_ERROR_MAP(BUS_ERROR_FAILED, EIO),
    SD_BUS_ERROR_MAP(BUS_ERROR_NOT_MIGRATABLE, ENOTSUP),
    SD_BUS_ERROR_MAP(BUS_ERROR_MIGRATION_STATE, EINVAL),
    SD_BUS_ERROR_MAP(BUS_ERROR_BUSY, EBUSY),
    SD_BUS_ERROR_MAP(BUS_ERROR_INCOMPATIBLE_STREAM, EPROTONOSUPPORT),
    SD_BUS_ERROR_MAP(BUS_ERROR_CORRUPT_STREAM, EBADMSG),
    SD_BUS_ERROR_MAP(BUS_ERROR_TRUNCATED_STREAM, ENODATA),
    SD_BUS_ERROR_MAP_END,
};

/* EMFILE says nothing to an operator; the limit and the knob do. */
static int fd_limit_error(sd_bus_error *error, const char *id, int r)
{
    struct rlimit rl;

    if (r == -ENFILE)
        return sd_bus_error_setf(error, BUS_ERROR_FAILED,
                                 "Cannot create device '%s': the system-wide open file limit is "
                                 "reached; raise fs.file-max.",
                                 id);
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        rl.rlim_cur = 0;
    return sd_bus_error_setf(error, BUS_ERROR_FAILED,
                             "Cannot create device '%s': open file limit %llu reached; raise "
                             "LimitNOFILE= in muserd.service (or the hard limit of ulimit -n).",
                             id, (unsigned long long)rl.rlim_cur);
}

int bus_error_create_failed(sd_bus_error *error, const struct manager *m, const char *type,
                            const char *id, int r, const char *sentence)
{
    const char *name = BUS_ERROR_FAILED;

    if (r == -EMFILE || r == -ENFILE)
        return fd_limit_error(error, id, r);
    /* The errno alone is ambiguous (a plugin may say -ENOENT for a missing
     * backing file), so ask the manager which case it was. */
    if (r == -EINVAL)
        name = device_id_valid(id) ? BUS_ERROR_INVALID_CONFIG : BUS_ERROR_INVALID_ID;
    else if (r == -EEXIST && (manager_find_device(m, id) || manager_id_busy(m, id)))
        name = BUS_ERROR_DEVICE_EXISTS;
    else if (r == -ENOENT && !plugins_find(m->plugins, type))
        name = BUS_ERROR_NO_SUCH_TYPE;
    else if (r == -EBUSY)
        name = BUS_ERROR_BUSY; /* held by what a destroyed device left: later */
    if (sentence)
        return sd_bus_error_set(error, name, sentence);
    return sd_bus_error_setf(error, name, "Cannot create device '%s': %s.", id, strerror(-r));
}

int bus_error_no_device(sd_bus_error *error, const char *id)
{
    if (!device_id_valid(id))
        return sd_bus_error_setf(error, BUS_ERROR_INVALID_ID,
                                 "Invalid device id '%s': use 1 to 64 letters, digits, '_', '.' "
                                 "or '-', not starting with '.' or '-'.",
                                 id);
    return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_DEVICE,
                             "No device with id '%s'; ListDevices shows the existing ones.", id);
}

int bus_error_migration_failed(sd_bus_error *error, const char *method, const char *id, int r,
                               const char *why)
{
    const char *name;
    switch (r) {
    case -ENOTSUP:
        name = BUS_ERROR_NOT_MIGRATABLE;
        break;
    case -EINVAL:
    case -EALREADY:
        name = BUS_ERROR_MIGRATION_STATE;
        break;
    case -EBUSY:
        name = BUS_ERROR_BUSY;
        break;
    case -EPROTONOSUPPORT:
        name = BUS_ERROR_INCOMPATIBLE_STREAM;
        break;
    case -EBADMSG:
        name = BUS_ERROR_CORRUPT_STREAM;
        break;
    case -ENODATA:
        name = BUS_ERROR_TRUNCATED_STREAM;
        break;
    default:
        name = BUS_ERROR_FAILED;
    }
    if (why)
        return sd_bus_error_set(error, name, why);
    return sd_bus_error_setf(error, name, "%s of device '%s' failed: %s.", method, id,
                             strerror(-r));
}
