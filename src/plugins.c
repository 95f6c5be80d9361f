/* SPDX-License-Identifier: MIT */
#include "plugins.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/log.h"

struct plugins {
    struct plugin_type *types;
    size_t nr_types;
    void **handles;
    char **paths;
    size_t nr_handles;
};

/* The oldest ABI this host still loads (see abi1.h). */
#define PLUGIN_ABI_OLDEST 1

/* The smallest struct sizes ABI 1 has ever had: a plugin may be newer (larger),
 * never smaller. */
#define MIN_PLUGIN_SIZE (offsetof(struct muserd_plugin, types) + sizeof(void *))
#define MIN_TYPE_SIZE   (offsetof(struct muserd_device_type, create) + sizeof(void *))

static bool type_name_valid(const char *name)
{
    if (!name || !*name || strlen(name) > 64)
        return false;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
            return false;
    return true;
}

static int check_descriptor(const struct plugins *p, const char *path,
                            const struct muserd_plugin *d)
{
    if (!d) {
        log_error("Refusing plugin %s: its entry point returned no descriptor.", path);
        return -EINVAL;
    }
    if (d->abi_version < PLUGIN_ABI_OLDEST || d->abi_version > MUSERD_PLUGIN_ABI_VERSION) {
        log_error("Refusing plugin %s: built for plugin ABI %u, this muserd supports ABI %u "
                  "to %u. Rebuild it against this muserd's headers.",
                  path, d->abi_version, PLUGIN_ABI_OLDEST, MUSERD_PLUGIN_ABI_VERSION);
        return -EPROTONOSUPPORT;
    }
    if (d->size < MIN_PLUGIN_SIZE || !d->name || (d->nr_types > 0 && !d->types)) {
        log_error("Refusing plugin %s: its descriptor is malformed (size %u).", path, d->size);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < d->nr_types; i++) {
        const struct muserd_device_type *t = d->types[i];
        if (!t || t->size < MIN_TYPE_SIZE || !t->create || !type_name_valid(t->name)) {
            log_error("Refusing plugin %s: device type #%u is malformed (needs a size, a name "
                      "of [a-z0-9_-] and a create function).",
                      path, i);
            return -EINVAL;
        }
        if (t->ops && t->ops->size < sizeof(uint32_t)) {
            log_error("Refusing plugin %s: type '%s' has an ops table without a size.", path,
                      t->name);
            return -EINVAL;
        }
        const struct plugin_type *other = plugins_find(p, t->name);
        if (other) {
            log_error("Refusing plugin %s: device type '%s' is already provided by %s.", path,
                      t->name, other->path);
            return -EEXIST;
        }
    }
    return 0;
}

int plugins_load_file(struct plugins *p, const char *path)
{
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        log_error("Refusing plugin %s: %s", path, dlerror());
        return -ELIBBAD;
    }
    muserd_plugin_entry_fn entry;
    *(void **)&entry = dlsym(handle, MUSERD_PLUGIN_ENTRY_SYMBOL);
    if (!entry) {
        log_error("Refusing plugin %s: it does not export %s().", path, MUSERD_PLUGIN_ENTRY_SYMBOL);
        dlclose(handle);
        return -ENOENT;
    }
    const struct muserd_plugin *d = entry();
    int r = check_descriptor(p, path, d);
    if (r < 0) {
        dlclose(handle);
        return r;
    }

    _cleanup_free_ char *copy = strdup(path);
    void **handles = reallocarray(p->handles, p->nr_handles + 1, sizeof(*handles));
    if (handles)
        p->handles = handles;
    char **paths = reallocarray(p->paths, p->nr_handles + 1, sizeof(*paths));
    if (paths)
        p->paths = paths;
    struct plugin_type *types = reallocarray(p->types, p->nr_types + d->nr_types, sizeof(*types));
    if (types)
        p->types = types;
    if (!copy || !handles || !paths || !types) {
        dlclose(handle);
        return log_oom();
    }
    p->handles[p->nr_handles] = handle;
    p->paths[p->nr_handles++] = copy;
    for (uint32_t i = 0; i < d->nr_types; i++)
        p->types[p->nr_types++] = (struct plugin_type){d->types[i], d, copy};
    copy = NULL;
    log_debug("Loaded plugin %s (%s %s) with %u device type(s).", path, d->name,
              d->version ? d->version : "", d->nr_types);
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int plugins_load_dir(const char *dir, struct plugins **ret)
{
    _cleanup_(plugins_freep) struct plugins *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;

    struct dirent **entries = NULL;
    int n = scandir(dir, &entries, NULL, NULL);
    if (n < 0)
        return log_error_errno(-errno, "Cannot read plugin directory %s: %m", dir);

    /* Load in name order so "already provided by" is deterministic. */
    char **names = calloc((size_t)n + 1, sizeof(*names));
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(entries[i]->d_name);
        if (names && len > 3 && strcmp(entries[i]->d_name + len - 3, ".so") == 0)
            names[k++] = entries[i]->d_name;
    }
    if (names) {
        qsort(names, k, sizeof(*names), compare_names);
        for (size_t i = 0; i < k; i++) {
            _cleanup_free_ char *path = NULL;
            if (asprintf(&path, "%s/%s", dir, names[i]) < 0)
                break;
            (void)plugins_load_file(p, path);
        }
    }
    for (int i = 0; i < n; i++)
        free(entries[i]);
    free(entries);
    if (!names)
        return -ENOMEM;
    free(names);
    *ret = TAKE_PTR(p);
    return 0;
}

void plugins_free(struct plugins *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nr_handles; i++) {
        dlclose(p->handles[i]);
        free(p->paths[i]);
    }
    free(p->handles);
    free(p->paths);
    free(p->types);
    free(p);
}

const struct plugin_type *plugins_find(const struct plugins *p, const char *name)
{
    for (size_t i = 0; i < p->nr_types; i++)
        if (strcmp(p->types[i].type->name, name) == 0)
            return &p->types[i];
    return NULL;
}

size_t plugins_count(const struct plugins *p)
{
    return p->nr_types;
}

const struct plugin_type *plugins_get(const struct plugins *p, size_t i)
{
    return i < p->nr_types ? &p->types[i] : NULL;
}
