/*
 * Loading module plugins from the plugin directory (dlopen RTLD_NOW |
 * RTLD_LOCAL, directory entries only: no name from a peer ever becomes a
 * path).  A refused plugin is logged with both sides' versions and skipped.
 */
#ifndef OM_WORKER_PLUGINS_H
#define OM_WORKER_PLUGINS_H

#include <stddef.h>

#include <omserver/plugin.h>

struct om_plugins;

/* Loads every *.so in dir.  Refusals are logged; *out may hold zero plugins. */
int om_plugins_load(const char *dir, struct om_plugins **out);
/* The plugin named name, or NULL. Valid until om_plugins_free. */
const struct om_plugin *om_plugins_find(const struct om_plugins *p, const char *name);
size_t om_plugins_count(const struct om_plugins *p);
void om_plugins_free(struct om_plugins *p);

#endif
