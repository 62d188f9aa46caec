/*
 * Module parameters are data: one validator for the master (before
 * dispatch) and the worker (before the module runs), and the JSON form of a
 * module's schema that travels in the MODULES message.
 *
 * A schema is an array of struct om_plugin_param (omserver/plugin.h).
 * Validation checks every given key is in the schema, every required one is
 * present (or has a default), and every value fits its type:
 *   string  any text          int    decimal, optional leading '-'
 *   bool    true/false/yes/no/1/0/on/off
 *   mode    octal 0..07777    path   absolute, no NUL, no newline
 *   choice  one of choices    file   base64 text
 * Errors name the parameter: "parameter 'mode': '9z' is not an octal mode".
 */
#ifndef OM_PARAMS_H
#define OM_PARAMS_H

#include <stdbool.h>
#include <stddef.h>

#include <omserver/plugin.h>

#include "om/msg.h"

/* 0, or OM_EINVAL with a sentence in err naming the parameter. */
int om_params_validate(const struct om_plugin_param *schema, size_t n, const struct om_kv *kv,
                       size_t nkv, char *err, size_t errlen);
/*
 * The same; on OM_EINVAL *param (when param is not NULL) is the name of the
 * parameter at fault, or NULL when the fault is no one parameter's.  The
 * name points into kv or schema: valid while they are.
 */
int om_params_validate_at(const struct om_plugin_param *schema, size_t n, const struct om_kv *kv,
                          size_t nkv, const char **param, char *err, size_t errlen);

/* true for the spellings bool accepts as true; *ok false when it is no bool at all. */
bool om_param_bool(const char *v, bool *ok);

/* The schema as a JSON array (see struct om_module_info).  Caller frees *out (om_free). */
int om_params_schema_json(const struct om_plugin_param *schema, size_t n, char **out);

/*
 * Parses a JSON schema (from a worker: untrusted) into *out.  Every string
 * and the array are owned by *out: free with om_params_schema_free.
 * OM_EPROTO with a reason in err when it is not a valid schema.
 */
int om_params_schema_parse(const char *json, struct om_plugin_param **out, size_t *n, char *err,
                           size_t errlen);
void om_params_schema_free(struct om_plugin_param *schema, size_t n);

#endif
