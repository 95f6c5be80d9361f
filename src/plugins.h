/* SPDX-License-Identifier: MIT */
/*
 * Device plugins: every *.so in the plugin directory is dlopen()ed, its entry
 * symbol called and its descriptor checked (ABI version, struct sizes, type
 * names). A plugin that fails a check is refused with a message naming the
 * file and the reason, and the others still load. The table of device types
 * lives as long as muserd: plugins are never unloaded.
 */
#pragma once

#include <stddef.h>

#include <muserd/plugin.h>

#include "util/macro.h"

/*
 * The op `member` of a plugin's ops table, if the plugin was built with a
 * table large enough to have it and set it; NULL otherwise. Every call into a
 * plugin's ops goes through this, so a plugin built for an older, shorter
 * table is never read past its end.
 */
#define PLUGIN_OP(ops, member)                                                                     \
    ((ops) && (ops)->size >= offsetof(struct muserd_device_ops, member) + sizeof((ops)->member)    \
         ? (ops)->member                                                                           \
         : NULL)

struct plugin_type {
    const struct muserd_device_type *type;
    const struct muserd_plugin *plugin;
    const char *path; /* the .so it came from */
};

struct plugins;

/* Load every plugin in dir. Fails only when dir cannot be read. */
int plugins_load_dir(const char *dir, struct plugins **ret);
/* Load one file; -errno and a logged reason when refused. */
int plugins_load_file(struct plugins *p, const char *path);
void plugins_free(struct plugins *p);
DEFINE_FREEP(struct plugins, plugins_free)

const struct plugin_type *plugins_find(const struct plugins *p, const char *name);
size_t plugins_count(const struct plugins *p);
const struct plugin_type *plugins_get(const struct plugins *p, size_t i);
