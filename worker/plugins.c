#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "om/base.h"
#include "plugins.h"

#define MAX_PLUGINS 128

struct om_plugins {
	void *handles[MAX_PLUGINS];
	const struct om_plugin *desc[MAX_PLUGINS];
	size_t n;
};

/* Checks the descriptor before calling into the plugin for anything else. */
static int
plugin_check(const struct om_plugins *p, const struct om_plugin *d, const char *file)
{
	size_t i;

	if (d == NULL || d->magic != OM_PLUGIN_MAGIC) {
		om_err("plugin '%s': bad magic, not an omserver plugin", file);
		return -1;
	}
	if (d->abi_major != OM_PLUGIN_ABI_MAJOR || d->abi_minor > OM_PLUGIN_ABI_MINOR) {
		om_err("plugin '%s': ABI %u.%u, worker supports %u.0-%u.%u", file, d->abi_major,
		       d->abi_minor, OM_PLUGIN_ABI_MAJOR, OM_PLUGIN_ABI_MAJOR, OM_PLUGIN_ABI_MINOR);
		return -1;
	}
	if (d->struct_size < offsetof(struct om_plugin, spare) || d->name == NULL ||
	    d->version == NULL || d->remote_command == NULL) {
		om_err("plugin '%s': incomplete descriptor", file);
		return -1;
	}
	for (i = 0; i < p->n; i++) {
		if (strcmp(p->desc[i]->name, d->name) == 0) {
			om_err("plugin '%s': module '%s' version %s already loaded (version %s)",
			       file, d->name, d->version, p->desc[i]->version);
			return -1;
		}
	}
	return 0;
}

int
om_plugins_load(const char *dir, struct om_plugins **out)
{
	struct om_plugins *p;
	struct dirent *de;
	char path[4096];
	DIR *dp;

	if ((p = om_calloc(1, sizeof(*p))) == NULL)
		return OM_ENOMEM;
	*out = p;
	if ((dp = opendir(dir)) == NULL) {
		om_warn("plugin directory '%s' cannot be read", dir);
		return 0;
	}
	while ((de = readdir(dp)) != NULL && p->n < MAX_PLUGINS) {
		const struct om_plugin *(*fn)(void);
		const struct om_plugin *d;
		size_t len = strlen(de->d_name);
		void *h;

		if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0 || de->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= sizeof(path))
			continue;
		dlerror();
		if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
			om_err("plugin '%s': %s", de->d_name, dlerror());
			continue;
		}
		*(void **)&fn = dlsym(h, "om_plugin_descriptor");
		if (fn == NULL) {
			om_err("plugin '%s' does not export om_plugin_descriptor()", de->d_name);
			dlclose(h);
			continue;
		}
		d = fn();
		if (plugin_check(p, d, de->d_name) != 0) {
			dlclose(h);
			continue;
		}
		p->handles[p->n] = h;
		p->desc[p->n] = d;
		p->n++;
		om_info("loaded module '%s' version %s", d->name, d->version);
	}
	closedir(dp);
	return 0;
}

const struct om_plugin *
om_plugins_find(const struct om_plugins *p, const char *name)
{
	size_t i;

	for (i = 0; p != NULL && i < p->n; i++)
		if (strcmp(p->desc[i]->name, name) == 0)
			return p->desc[i];
	return NULL;
}

size_t
om_plugins_count(const struct om_plugins *p)
{
	return p ? p->n : 0;
}

void
om_plugins_free(struct om_plugins *p)
{
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; i < p->n; i++)
		dlclose(p->handles[i]);
	om_free(p);
}
