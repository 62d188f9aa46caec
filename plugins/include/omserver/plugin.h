/*
 * omserver module plugins: the ONLY header a plugin needs.
 *
 * A plugin is a shared object in the worker's plugin directory that exports
 * one function, om_plugin_descriptor(), returning a static descriptor.  The
 * worker checks magic, ABI major (must equal), ABI minor (must not exceed
 * its own) and struct_size before it calls anything else, and refuses a
 * second plugin with a name already loaded.
 *
 * ABI 0 is the skeleton's: a module turns its parameters into one remote
 * shell command per host.  ABI 1 (host-API table: exec, upload, download,
 * emit, set result) replaces it; spare slots keep the struct's size stable.
 */
#ifndef OMSERVER_PLUGIN_H
#define OMSERVER_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define OM_PLUGIN_MAGIC     0x4f4d5031u /* "OMP1" */
#define OM_PLUGIN_ABI_MAJOR 0
#define OM_PLUGIN_ABI_MINOR 1

#if defined(__GNUC__)
#define OM_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define OM_PLUGIN_EXPORT
#endif

struct om_plugin_param {
	const char *name;
	const char *type; /* "string", "int", "bool" */
	int required;
	const char *default_value; /* NULL: none */
	const char *description;
};

/* Parameters of one task: parallel arrays, strings owned by the worker. */
struct om_plugin_args {
	const char *const *keys;
	const char *const *vals;
	size_t n;
};

struct om_plugin {
	uint32_t magic;
	uint16_t abi_major;
	uint16_t abi_minor;
	uint32_t struct_size; /* sizeof(struct om_plugin) at build time */
	const char *name;
	const char *version;
	const char *description;
	const struct om_plugin_param *params;
	size_t nparams;
	/*
	 * Writes the remote command (a NUL-terminated sh command) into out, at
	 * most cap bytes.  Returns 0, or a negative code with a message in err.
	 * Must not keep pointers to args after returning.
	 */
	int (*remote_command)(const struct om_plugin_args *args, char *out, size_t cap, char *err,
	                      size_t errlen);
	void *spare[8]; /* must be NULL */
};

#define OM_PLUGIN_DECLARE(desc)                                                                    \
	OM_PLUGIN_EXPORT const struct om_plugin *om_plugin_descriptor(void);                       \
	const struct om_plugin *om_plugin_descriptor(void)                                         \
	{                                                                                          \
		return &(desc);                                                                    \
	}

#endif
