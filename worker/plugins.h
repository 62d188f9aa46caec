/*
 * The worker's module registry: C plugins loaded from the plugin directory
 * (dlopen RTLD_NOW | RTLD_LOCAL, directory entries only: no name from a peer
 * ever becomes a path) and script modules from the modules directory (an
 * executable plus a manifest).  Both kinds end up as a struct om_plugin
 * descriptor the engine drives through the host API.
 *
 * A refused plugin or manifest is logged with the reason (for ABI problems
 * both sides' versions) and skipped.
 */
#ifndef OM_WORKER_PLUGINS_H
#define OM_WORKER_PLUGINS_H

#include <stddef.h>

#include <omserver/plugin.h>

#include "om/msg.h"

struct om_plugins;

/* One loaded module: its descriptor and the state its init() returned. */
struct om_module {
	const struct om_plugin *desc;
	void *state;
	const char *kind; /* "c" or "script" */
};

/*
 * Loads every *.so in plugin_dir, then every manifest in script_dir (NULL:
 * none), calling each plugin's init(api).  api must outlive the registry.
 * Refusals are logged; *out may hold zero modules.  Caller frees *out with
 * om_plugins_free.
 */
int om_plugins_load(const char *plugin_dir, const char *script_dir, const struct om_host_api *api,
                    struct om_plugins **out);
/* The module named name, or NULL.  Valid until om_plugins_free. */
const struct om_module *om_plugins_find(const struct om_plugins *p, const char *name);
size_t om_plugins_count(const struct om_plugins *p);
/*
 * The catalog for the master (MODULES message): one entry per module with
 * its schema as JSON text.  Caller frees with om_modules_free(*out, *n).
 */
int om_plugins_catalog(const struct om_plugins *p, struct om_module_info **out, uint32_t *n);
/* Calls every fini() and unloads. */
void om_plugins_free(struct om_plugins *p);

#endif
