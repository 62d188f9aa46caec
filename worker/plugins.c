/*
 * The module registry (plugins.h).  A C plugin is checked field by field
 * before anything in it runs beyond its descriptor function, in the order
 * STYLE.md E gives: directory name, dlopen, descriptor, magic, ABI, size,
 * the rest of the descriptor, uniqueness, init.  Each refusal is one log
 * line naming the file and, for version problems, both sides.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "om/base.h"
#include "om/params.h"
#include "plugins.h"
#include "scriptmod.h"

#define MAX_PLUGINS     128
#define MAX_MODULE_NAME 64
#define MAX_VERSION     32
#define MAX_DESCRIPTION 1024

/* The OM_PLUGIN_* flag bits this worker honours; any other bit refuses a plugin. */
#define KNOWN_FLAGS OM_PLUGIN_IDEMPOTENT

/*
 * ABI 1.1 took flags out of 1.0's spare[0]: the descriptor must keep the
 * size and the offsets 1.0 plugins were built with.
 */
_Static_assert(sizeof(unsigned long) == sizeof(void *) &&
                       offsetof(struct om_plugin, spare) ==
                               offsetof(struct om_plugin, flags) + sizeof(void *) &&
                       sizeof(struct om_plugin) ==
                               offsetof(struct om_plugin, flags) + 8 * sizeof(void *),
               "struct om_plugin must keep the ABI 1.0 layout");

struct entry {
	struct om_module mod; /* first: om_plugins_find hands out &mod */
	void *handle;         /* C plugins */
	struct om_scriptmod *script;
	char *schema; /* JSON text, om_params_schema_json */
	/* OM_PLUGIN_* as checked at load (0 when the descriptor is too short to hold them) */
	unsigned long flags;
};

struct om_plugins {
	struct entry e[MAX_PLUGINS];
	size_t n;
};

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The entries of dir ending in suffix, sorted so that which of two
 * same-named modules wins does not depend on readdir order.  At most max
 * names; *names and each name are om_malloc'd.
 */
static int
list_dir(const char *dir, const char *suffix, size_t max, char ***names, size_t *n)
{
	size_t slen = strlen(suffix), cap = 0;
	struct dirent *de;
	char **v = NULL;
	DIR *dp;

	*names = NULL;
	*n = 0;
	if ((dp = opendir(dir)) == NULL)
		return OM_ENOTFOUND;
	while ((de = readdir(dp)) != NULL) {
		size_t len = strlen(de->d_name);

		/* a name only, never a path: dot files and anything odd are skipped */
		if (de->d_name[0] == '.' || len <= slen || len > 255 ||
		    strcmp(de->d_name + len - slen, suffix) != 0 || strchr(de->d_name, '/'))
			continue;
		if (*n == max) {
			om_warn("'%s': more than %zu %s files, the rest are ignored", dir, max,
			        suffix);
			break;
		}
		if (*n == cap) {
			char **nv = om_realloc(v, sizeof(*v) * (cap = cap ? cap * 2 : 16));

			if (nv == NULL)
				goto nomem;
			v = nv;
		}
		if ((v[*n] = om_strdup(de->d_name)) == NULL)
			goto nomem;
		(*n)++;
	}
	closedir(dp);
	if (*n > 1)
		qsort(v, *n, sizeof(*v), cmp_names);
	*names = v;
	return 0;
nomem:
	closedir(dp);
	while (*n > 0)
		om_free(v[--*n]);
	om_free(v);
	return OM_ENOMEM;
}

static void
free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		om_free(v[i]);
	om_free(v);
}

static bool
text_ok(const char *s, size_t max, bool empty_ok)
{
	size_t i;

	if (s == NULL || (!empty_ok && *s == '\0'))
		return false;
	for (i = 0; s[i] != '\0'; i++)
		if (i >= max || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static const struct entry *
find_entry(const struct om_plugins *p, const char *name)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->e[i].mod.desc->name, name) == 0)
			return &p->e[i];
	return NULL;
}

/*
 * Everything about a descriptor that can be checked without calling into
 * the plugin.  0, or -1 after logging the reason.  *schema gets the JSON
 * form of the parameters (caller frees), *flagsp its flags.
 */
static int
check_desc(const struct om_plugins *p, const struct om_plugin *d, const char *file, char **schema,
           unsigned long *flagsp)
{
	/* What a 1.0 plugin without its spare slots has; flags are read only when present. */
	const size_t min = offsetof(struct om_plugin, flags);
	const size_t spare_off = offsetof(struct om_plugin, spare);
	unsigned long flags = 0;
	struct om_plugin_param *parsed;
	const struct entry *dup;
	size_t nparsed;
	char err[256];

	*schema = NULL;
	*flagsp = 0;
	if (d->magic != OM_PLUGIN_MAGIC) {
		om_err("plugin '%s': bad magic 0x%08x, not an omserver plugin", file,
		       (unsigned)d->magic);
		return -1;
	}
	if (d->abi_major != OM_PLUGIN_ABI_MAJOR || d->abi_minor > OM_PLUGIN_ABI_MINOR) {
		om_err("plugin '%s': ABI %u.%u, worker supports %u.0-%u.%u", file,
		       (unsigned)d->abi_major, (unsigned)d->abi_minor, OM_PLUGIN_ABI_MAJOR,
		       OM_PLUGIN_ABI_MAJOR, OM_PLUGIN_ABI_MINOR);
		return -1;
	}
	/* Below the minimum, fields past struct_size are not the plugin's: read none. */
	if (d->struct_size < min) {
		om_err("plugin '%s': descriptor is %u bytes, worker needs at least %zu", file,
		       (unsigned)d->struct_size, min);
		return -1;
	}
	if (d->name == NULL || strlen(d->name) > MAX_MODULE_NAME || !om_name_valid(d->name)) {
		om_err("plugin '%s': invalid module name", file);
		return -1;
	}
	if (!text_ok(d->version, MAX_VERSION, false)) {
		om_err("plugin '%s': module '%s' has no valid version", file, d->name);
		return -1;
	}
	if (d->description != NULL && !text_ok(d->description, MAX_DESCRIPTION, true)) {
		om_err("plugin '%s': module '%s': description too long or not text", file, d->name);
		return -1;
	}
	if (d->host_start == NULL) {
		om_err("plugin '%s': module '%s' has no host_start", file, d->name);
		return -1;
	}
	if (d->struct_size >= min + sizeof(d->flags))
		flags = d->flags;
	if (flags & ~KNOWN_FLAGS) {
		om_err("plugin '%s': module '%s': unknown flag bits 0x%lx (built for a newer "
		       "ABI?), worker knows 0x%lx",
		       file, d->name, flags & ~KNOWN_FLAGS, (unsigned long)KNOWN_FLAGS);
		return -1;
	}
	/* In 1.0 the slot was spare[0], which had to be NULL: no 1.0 plugin promises anything. */
	if (flags != 0 && d->abi_minor < 1) {
		om_err("plugin '%s': module '%s': flags 0x%lx need ABI %u.1, descriptor says %u.%u",
		       file, d->name, flags, OM_PLUGIN_ABI_MAJOR, (unsigned)d->abi_major,
		       (unsigned)d->abi_minor);
		return -1;
	}
	for (size_t i = 0; i < sizeof(d->spare) / sizeof(d->spare[0]); i++) {
		if (spare_off + (i + 1) * sizeof(void *) > d->struct_size)
			break;
		if (d->spare[i] != NULL) {
			om_err("plugin '%s': module '%s': spare slot %zu is not NULL (built for a "
			       "newer ABI?)",
			       file, d->name, i);
			return -1;
		}
	}
	/*
	 * The schema goes out as JSON and comes back through the master's
	 * strict parser: refusing here what the master would refuse later.
	 */
	if (om_params_schema_json(d->params, d->nparams, schema) != 0) {
		om_err("plugin '%s': module '%s': invalid parameter schema", file, d->name);
		return -1;
	}
	if (om_params_schema_parse(*schema, &parsed, &nparsed, err, sizeof(err)) != 0) {
		om_err("plugin '%s': module '%s': invalid parameter schema: %s", file, d->name,
		       err);
		om_free(*schema);
		*schema = NULL;
		return -1;
	}
	om_params_schema_free(parsed, nparsed);
	if ((dup = find_entry(p, d->name)) != NULL) {
		om_err("plugin '%s': module '%s' version %s already loaded (version %s)", file,
		       d->name, d->version, dup->mod.desc->version);
		om_free(*schema);
		*schema = NULL;
		return -1;
	}
	*flagsp = flags;
	return 0;
}

static void
load_one(struct om_plugins *p, const char *dir, const char *file, const struct om_host_api *api)
{
	const struct om_plugin *(*fn)(void);
	const struct om_plugin *d;
	struct entry *e = &p->e[p->n];
	char path[4096], *schema;
	void *h, *state = NULL;
	unsigned long flags;
	int rc;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path)) {
		om_err("plugin '%s': path too long", file);
		return;
	}
	dlerror();
	if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		om_err("plugin '%s': %s", file, dlerror());
		return;
	}
	/* A function, not a data symbol: its address cannot be mistaken for a struct. */
	*(void **)&fn = dlsym(h, "om_plugin_descriptor");
	if (fn == NULL) {
		om_err("plugin '%s': no om_plugin_descriptor() symbol", file);
		dlclose(h);
		return;
	}
	if ((d = fn()) == NULL) {
		om_err("plugin '%s': om_plugin_descriptor() returned NULL", file);
		dlclose(h);
		return;
	}
	if (check_desc(p, d, file, &schema, &flags) != 0) {
		dlclose(h);
		return;
	}
	if (d->init != NULL && (rc = d->init(api, &state)) != 0) {
		om_err("plugin '%s': module '%s' refused to start (init returned %d)", file,
		       d->name, rc);
		om_free(schema);
		dlclose(h);
		return;
	}
	e->mod.desc = d;
	e->mod.state = state;
	e->mod.kind = "c";
	e->handle = h;
	e->schema = schema;
	e->flags = flags;
	p->n++;
	om_info("loaded module '%s' version %s from '%s'", d->name, d->version, file);
}

static void
load_script(struct om_plugins *p, const char *dir, const char *file, const struct om_host_api *api)
{
	struct entry *e = &p->e[p->n];
	const struct om_plugin *d;
	const struct entry *dup;
	struct om_scriptmod *m;
	char err[512], *schema;
	int rc;

	if ((rc = om_scriptmod_load(dir, file, api, &m, err, sizeof(err))) != 0) {
		om_err("script module %s", err);
		return;
	}
	d = om_scriptmod_plugin(m);
	if ((dup = find_entry(p, d->name)) != NULL) {
		om_err("script module '%s': module '%s' version %s already loaded (version %s)",
		       file, d->name, d->version, dup->mod.desc->version);
		om_scriptmod_free(m);
		return;
	}
	if (om_params_schema_json(d->params, d->nparams, &schema) != 0) {
		om_err("script module '%s': parameter schema too large", file);
		om_scriptmod_free(m);
		return;
	}
	e->mod.desc = d;
	e->mod.state = m;
	e->mod.kind = "script";
	e->script = m;
	e->schema = schema;
	e->flags = d->flags; /* synthesized by scriptmod.c: always a whole descriptor */
	p->n++;
	om_info("loaded script module '%s' version %s (sha256 %.12s)", d->name, d->version,
	        om_scriptmod_sha256(m));
}

int
om_plugins_load(const char *plugin_dir, const char *script_dir, const struct om_host_api *api,
                struct om_plugins **out)
{
	struct om_plugins *p;
	char **names;
	size_t n;
	int rc;

	*out = NULL;
	if ((p = om_calloc(1, sizeof(*p))) == NULL)
		return OM_ENOMEM;
	if (plugin_dir != NULL) {
		if ((rc = list_dir(plugin_dir, ".so", MAX_PLUGINS, &names, &n)) == OM_ENOMEM) {
			om_free(p);
			return rc;
		}
		if (rc != 0)
			om_warn("plugin directory '%s' cannot be read", plugin_dir);
		for (size_t i = 0; i < n && p->n < MAX_PLUGINS; i++)
			load_one(p, plugin_dir, names[i], api);
		free_names(names, n);
	}
	if (script_dir != NULL) {
		if ((rc = list_dir(script_dir, ".json", MAX_PLUGINS, &names, &n)) == OM_ENOMEM) {
			om_plugins_free(p);
			return rc;
		}
		if (rc != 0)
			om_warn("module directory '%s' cannot be read", script_dir);
		for (size_t i = 0; i < n; i++) {
			if (p->n == MAX_PLUGINS) {
				om_warn("more than %d modules, '%s' and later ones are ignored",
				        MAX_PLUGINS, names[i]);
				break;
			}
			load_script(p, script_dir, names[i], api);
		}
		free_names(names, n);
	}
	*out = p;
	return 0;
}

const struct om_module *
om_plugins_find(const struct om_plugins *p, const char *name)
{
	const struct entry *e = p != NULL && name != NULL ? find_entry(p, name) : NULL;

	return e ? &e->mod : NULL;
}

size_t
om_plugins_count(const struct om_plugins *p)
{
	return p ? p->n : 0;
}

int
om_plugins_catalog(const struct om_plugins *p, struct om_module_info **out, uint32_t *n)
{
	struct om_module_info *v;
	size_t i;

	*out = NULL;
	*n = 0;
	if (p == NULL || p->n == 0)
		return 0;
	if ((v = om_calloc(p->n, sizeof(*v))) == NULL)
		return OM_ENOMEM;
	for (i = 0; i < p->n; i++) {
		const struct entry *e = &p->e[i];
		const char *desc = e->mod.desc->description;

		v[i].name = om_strdup(e->mod.desc->name);
		v[i].version = om_strdup(e->mod.desc->version);
		v[i].kind = om_strdup(e->mod.kind);
		v[i].description = om_strdup(desc ? desc : "");
		v[i].schema = om_strdup(e->schema);
		v[i].idempotent = (e->flags & OM_PLUGIN_IDEMPOTENT) != 0;
		if (!v[i].name || !v[i].version || !v[i].kind || !v[i].description ||
		    !v[i].schema) {
			om_modules_free(v, i + 1);
			return OM_ENOMEM;
		}
	}
	*out = v;
	*n = (uint32_t)p->n;
	return 0;
}

void
om_plugins_free(struct om_plugins *p)
{
	if (p == NULL)
		return;
	/* Reverse order: a later module never outlives one loaded before it. */
	for (size_t i = p->n; i-- > 0;) {
		struct entry *e = &p->e[i];

		if (e->script != NULL) {
			om_scriptmod_free(e->script);
		} else {
			if (e->mod.desc->fini != NULL)
				e->mod.desc->fini(e->mod.state);
			dlclose(e->handle);
		}
		om_free(e->schema);
	}
	om_free(p);
}
