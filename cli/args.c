/*
 * omctl's module arguments (contract in args.h).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "args.h"
#include "om/base.h"

void
om_args_release(struct om_args *a)
{
	om_kvs_free(a->kv, a->n);
	a->kv = NULL;
	a->n = 0;
}

void
om_args_words_free(char **words, size_t n)
{
	if (words == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		om_free(words[i]);
	om_free(words);
}

static bool
blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int
om_args_split(const char *text, char ***words, size_t *n, char *err, size_t errlen)
{
	size_t len = strlen(text), nw = 0, i = 0, o;
	char **w = NULL, *cur = NULL;
	int rv = 0;

	*words = NULL;
	*n = 0;
	/* a word is built in cur (at most len bytes), then copied at its size;
	 * there are at most len / 2 + 1 words */
	if ((w = om_calloc(len / 2 + 2, sizeof(*w))) == NULL ||
	    (cur = om_malloc(len + 1)) == NULL) {
		rv = OM_ENOMEM;
		goto fail;
	}
	while (i < len) {
		while (i < len && blank(text[i]))
			i++;
		if (i == len)
			break;
		o = 0;
		while (i < len && !blank(text[i])) {
			char c = text[i++];

			if (c == '\'') {
				while (i < len && text[i] != '\'')
					cur[o++] = text[i++];
				if (i == len) {
					om_seterr(err, errlen, "unmatched single quote");
					rv = OM_EINVAL;
					goto fail;
				}
				i++;
			} else if (c == '"') {
				while (i < len && text[i] != '"') {
					/* in double quotes, sh gives backslash a meaning only here
					 */
					if (text[i] == '\\' && i + 1 < len &&
					    strchr("\"\\$`", text[i + 1]))
						i++;
					cur[o++] = text[i++];
				}
				if (i == len) {
					om_seterr(err, errlen, "unmatched double quote");
					rv = OM_EINVAL;
					goto fail;
				}
				i++;
			} else if (c == '\\') {
				if (i == len) {
					om_seterr(err, errlen, "backslash at the end");
					rv = OM_EINVAL;
					goto fail;
				}
				cur[o++] = text[i++];
			} else {
				cur[o++] = c;
			}
		}
		if ((w[nw] = om_strndup(cur, o)) == NULL) {
			rv = OM_ENOMEM;
			goto fail;
		}
		nw++;
	}
	om_free(cur);
	*words = w;
	*n = nw;
	return 0;
fail:
	om_free(cur);
	om_args_words_free(w, nw);
	return rv;
}

static const struct om_plugin_param *
find(const struct om_plugin_param *schema, size_t ns, const char *key, size_t klen)
{
	for (size_t i = 0; i < ns; i++)
		if (strlen(schema[i].name) == klen && memcmp(schema[i].name, key, klen) == 0)
			return &schema[i];
	return NULL;
}

/* "a, b, c" (cut to fit) for error messages. */
static void
names(const struct om_plugin_param *schema, size_t ns, char *out, size_t cap)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < ns && o + 1 < cap; i++)
		o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? ", " : "", schema[i].name);
	if (ns == 0)
		snprintf(out, cap, "none");
}

int
om_args_set(struct om_args *a, const struct om_plugin_param *schema, size_t ns, const char *key,
            const char *val, char *err, size_t errlen)
{
	struct om_kv *kv;
	char list[256];

	if (find(schema, ns, key, strlen(key)) == NULL) {
		names(schema, ns, list, sizeof(list));
		om_seterr(err, errlen, "unknown parameter '%.64s' (parameters: %s)", key, list);
		return OM_EINVAL;
	}
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->kv[i].key, key) == 0) {
			om_seterr(err, errlen, "parameter '%s' given twice", key);
			return OM_EINVAL;
		}
	if (a->n >= OM_MAX_PARAMS) {
		om_seterr(err, errlen, "more than %d parameters", OM_MAX_PARAMS);
		return OM_EINVAL;
	}
	if ((kv = om_realloc(a->kv, (a->n + 1) * sizeof(*kv))) == NULL)
		return OM_ENOMEM;
	a->kv = kv;
	kv[a->n].key = om_strdup(key);
	kv[a->n].val = om_strdup(val);
	if (kv[a->n].key == NULL || kv[a->n].val == NULL) {
		om_free(kv[a->n].key);
		om_free(kv[a->n].val);
		return OM_ENOMEM;
	}
	a->n++;
	return 0;
}

int
om_args_param(struct om_args *a, const struct om_plugin_param *schema, size_t ns, const char *kv,
              char *err, size_t errlen)
{
	const char *eq = strchr(kv, '=');
	char key[OM_MAX_NAME + 1];

	if (eq == NULL || eq == kv || (size_t)(eq - kv) > OM_MAX_NAME) {
		om_seterr(err, errlen, "-e wants key=value, not '%.64s'", kv);
		return OM_EINVAL;
	}
	memcpy(key, kv, (size_t)(eq - kv));
	key[eq - kv] = '\0';
	return om_args_set(a, schema, ns, key, eq + 1, err, errlen);
}

int
om_args_text(struct om_args *a, const struct om_plugin_param *schema, size_t ns, const char *text,
             char *err, size_t errlen)
{
	const struct om_plugin_param *ff = NULL;
	char **w = NULL, list[256];
	size_t nw = 0, i;
	bool pairs;
	int rv;

	rv = om_args_split(text, &w, &nw, NULL, 0);
	if (rv == OM_ENOMEM)
		return rv;
	pairs = rv == 0;
	for (i = 0; pairs && i < nw; i++) {
		const char *eq = strchr(w[i], '=');

		pairs = eq != NULL && eq != w[i] && find(schema, ns, w[i], (size_t)(eq - w[i]));
	}
	if (pairs) {
		for (i = 0, rv = 0; i < nw && rv == 0; i++) {
			char *eq = strchr(w[i], '=');

			*eq = '\0';
			rv = om_args_set(a, schema, ns, w[i], eq + 1, err, errlen);
		}
		om_args_words_free(w, nw);
		return rv;
	}
	om_args_words_free(w, nw);
	for (i = 0; i < ns; i++)
		if (schema[i].flags & OM_PARAM_FREE_FORM)
			ff = &schema[i];
	if (ff == NULL) {
		names(schema, ns, list, sizeof(list));
		om_seterr(err, errlen,
		          "-a wants key=value pairs: this module has no free-form parameter "
		          "(parameters: %s)",
		          list);
		return OM_EINVAL;
	}
	return om_args_set(a, schema, ns, ff->name, text, err, errlen);
}

int
om_args_load_files(struct om_args *a, const struct om_plugin_param *schema, size_t ns, char *err,
                   size_t errlen)
{
	for (size_t i = 0; i < a->n; i++) {
		const struct om_plugin_param *p =
		        find(schema, ns, a->kv[i].key, strlen(a->kv[i].key));
		uint8_t *data;
		char *b64;
		size_t len;
		int rv;

		if (p == NULL || strcmp(p->type, "file") != 0)
			continue;
		rv = om_read_file(a->kv[i].val, OM_ARGS_FILE_MAX, &data, &len);
		if (rv == OM_EMSGSIZE) {
			om_seterr(
			        err, errlen,
			        "parameter '%s': file '%s' is larger than %zu bytes (the most one "
			        "parameter carries)",
			        p->name, a->kv[i].val, OM_ARGS_FILE_MAX);
			return rv;
		}
		if (rv != 0) {
			om_seterr(err, errlen, "parameter '%s': cannot read '%s': %s", p->name,
			          a->kv[i].val,
			          rv == OM_EINVAL ? "not a regular file" : om_strerror(rv));
			return rv;
		}
		if ((b64 = om_malloc((len + 2) / 3 * 4 + 1)) == NULL) {
			om_free(data);
			return OM_ENOMEM;
		}
		/* len <= OM_ARGS_FILE_MAX, far below INT_MAX */
		EVP_EncodeBlock((unsigned char *)b64, data, (int)len);
		om_free(data);
		om_free(a->kv[i].val);
		a->kv[i].val = b64;
	}
	return 0;
}
