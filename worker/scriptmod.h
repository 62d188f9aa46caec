/*
 * Script modules: an executable in any language plus a manifest
 * <name>.json in the modules directory:
 *
 *   {"name": "echo-args", "version": "1.0", "description": "...",
 *    "executable": "echo-args", "idempotent": true,
 *    "params": [{"name": "msg", "type": "string", "required": false, ...}]}
 *
 * params uses the JSON schema form of om_params_schema_json.  idempotent
 * (optional, a JSON boolean, default false) is OM_PLUGIN_IDEMPOTENT's
 * promise: lost hosts of a dead worker then run again elsewhere.  The worker
 * turns each manifest into a struct om_plugin whose host_start uploads the
 * executable once per content (~/.omserver/modules/<sha256>-<name>), runs
 * it with the parameters as one JSON object on stdin and takes its stdout,
 * one JSON object {"changed": bool, "failed": bool, "msg": str, ...}, as
 * the host's result.
 *
 * Manifests are files an operator dropped in a directory, not trusted
 * code: sizes are bounded, names validated, and the executable must be a
 * plain file name in the same directory.
 */
#ifndef OM_WORKER_SCRIPTMOD_H
#define OM_WORKER_SCRIPTMOD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <omserver/plugin.h>

#define OM_SCRIPTMOD_MAX_MANIFEST (64 * 1024)
#define OM_SCRIPTMOD_MAX_EXE      (8 * 1024 * 1024)
#define OM_SCRIPTMOD_MAX_OUTPUT   (1024 * 1024)

struct om_scriptmod;

/*
 * Reads dir/file (a manifest named <name>.json) and the executable beside
 * it, whose bytes are kept and hashed now.  api is used by host_start and
 * must outlive *out.  0, or a negative OM_E* code with a sentence in err.
 * Caller frees *out with om_scriptmod_free.
 */
int om_scriptmod_load(const char *dir, const char *file, const struct om_host_api *api,
                      struct om_scriptmod **out, char *err, size_t errlen);
/*
 * The synthesized descriptor (no init: host_start takes the scriptmod
 * itself as its state).  Caller does not free; valid until om_scriptmod_free.
 */
const struct om_plugin *om_scriptmod_plugin(const struct om_scriptmod *m);
/* The sha256 of the executable, 64 hex digits.  Valid until om_scriptmod_free. */
const char *om_scriptmod_sha256(const struct om_scriptmod *m);
void om_scriptmod_free(struct om_scriptmod *m);

/* A module's result, from what it printed on stdout. */
struct om_scriptmod_result {
	char *json;   /* the object as compact JSON text (om_free) */
	char *msg;    /* its "msg" when a string, else NULL (om_free) */
	bool changed; /* its "changed" is true */
	bool failed;  /* its "failed" is true */
};

/*
 * Parses a module's stdout (untrusted: any bytes, len at most
 * OM_SCRIPTMOD_MAX_OUTPUT in practice; out may be NULL when len is 0) as
 * one JSON object, without duplicate keys.  0 with *res filled, OM_EPROTO
 * with the reason in err when it is no JSON object, or OM_ENOMEM; on error
 * *res is empty.  Free with om_scriptmod_result_free either way.
 */
int om_scriptmod_parse_result(const uint8_t *out, size_t len, struct om_scriptmod_result *res,
                              char *err, size_t errlen);
void om_scriptmod_result_free(struct om_scriptmod_result *res);

#endif
