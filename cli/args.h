/*
 * omctl's module arguments: `-a TEXT`, `-e key=value` (`--param`) and
 * "file" parameters, turned into the params of a SUBMIT using the module's
 * schema (fetched with MODULE_SHOW).
 *
 * -a TEXT is split into words as sh would split it (blanks separate,
 * '...' and "..." quote, backslash escapes; nothing is expanded).  When
 * every word is key=value and every key is a parameter of the schema, the
 * words are those parameters; otherwise the whole text, as typed, is the
 * value of the schema's free_form parameter (shell's cmd), and a schema
 * without one refuses it.  Text that does not split (an unmatched quote) is
 * free-form text too.
 *
 * Every key is checked against the schema here, so mistakes are caught
 * before anything is sent; the master validates the values again.
 */
#ifndef OM_CLI_ARGS_H
#define OM_CLI_ARGS_H

#include <stddef.h>

#include <omserver/plugin.h>

#include "om/msg.h"

/* Parameters collected for one SUBMIT: kv[0..n) own their keys and values. */
struct om_args {
	struct om_kv *kv;
	size_t n;
};

/* Frees what a holds and empties it (a itself is the caller's). */
void om_args_release(struct om_args *a);

/*
 * Splits text into sh-like words.  Caller frees with om_args_words_free.
 * OM_EINVAL (reason in err) for an unmatched quote or a trailing backslash.
 */
int om_args_split(const char *text, char ***words, size_t *n, char *err, size_t errlen);
void om_args_words_free(char **words, size_t n);

/*
 * Adds key=val (copied).  OM_EINVAL with a sentence in err when key is not
 * a parameter of the schema or was given already.
 */
int om_args_set(struct om_args *a, const struct om_plugin_param *schema, size_t ns, const char *key,
                const char *val, char *err, size_t errlen);
/* One `-e key=value`: as om_args_set; OM_EINVAL when there is no '=' or no key. */
int om_args_param(struct om_args *a, const struct om_plugin_param *schema, size_t ns,
                  const char *kv, char *err, size_t errlen);
/* -a TEXT, as described above. */
int om_args_text(struct om_args *a, const struct om_plugin_param *schema, size_t ns,
                 const char *text, char *err, size_t errlen);

/* Largest local file a "file" parameter takes: its base64 fits in OM_MAX_PARAM. */
#define OM_ARGS_FILE_MAX ((size_t)OM_MAX_PARAM / 4 * 3)

/*
 * Replaces the value of every "file" parameter (a local path) with the
 * base64 of that file's bytes.  OM_EINVAL, OM_ENOTFOUND or OM_EMSGSIZE
 * (file above OM_ARGS_FILE_MAX) with a sentence in err.
 */
int om_args_load_files(struct om_args *a, const struct om_plugin_param *schema, size_t ns,
                       char *err, size_t errlen);

#endif
