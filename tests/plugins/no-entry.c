/* SPDX-License-Identifier: MIT */
/* A shared object in the plugin directory that does not export
 * muserd_plugin_entry (a typo in the symbol name): refused. */
#include <muserd/plugin.h>

MUSERD_EXPORT int muserd_plugin_entri(void);

MUSERD_EXPORT int muserd_plugin_entri(void)
{
    return 0;
}
