/*
 * Fuzzes the module parameter schema parser (proto/params.c): the JSON
 * schema a worker announces, untrusted by the master and omctl.
 *
 * Input: the schema text (cut at the first NUL, as a C string would be).
 *
 * Beyond not crashing, an accepted schema must keep what params.h
 * promises: valid names, known types, no name twice, at most one
 * free_form parameter, choices only on a choice, defaults that validate.
 * Its canonical form (om_params_schema_json) must parse again into the same
 * parameters and serialise to the same text; it may only be too long when
 * the input was near OM_MAX_SCHEMA already (the canonical form spells out
 * every member).  om_params_validate then runs on key/value pairs chosen
 * from the input's bytes, and what it accepts must name known parameters
 * once each and leave no required one out.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "om/base.h"
#include "om/err.h"
#include "om/msg.h"
#include "om/params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The most the canonical form adds to one parameter ("required":false, ...). */
#define GROWTH_PER_PARAM 128
#define MAX_KV           8

static const char *const types[] = {"string", "int", "bool", "mode", "path", "choice", "file"};

static const char *const values[] = {"",         "0",     "-1",         "9223372036854775808",
                                     "0755",     "07777", "10000",      "yes",
                                     "Off",      "maybe", "/etc/hosts", "rel",
                                     "/a\nb",    "YWJj",  "YWI=",       "YQ==",
                                     "Y===",     "abc",   "-",          "00644",
                                     "8",        "true",  "/",          "a=b",
                                     "\x01\x7f", "on",    "1",          "x"};

static bool
streq_opt(const char *a, const char *b)
{
	return (a == NULL) == (b == NULL) && (a == NULL || strcmp(a, b) == 0);
}

static size_t
nchoices(const struct om_plugin_param *p)
{
	size_t i = 0;

	while (p->choices && p->choices[i])
		i++;
	return i;
}

/* What the parser promises about an accepted schema. */
static void
check_schema(const struct om_plugin_param *s, size_t n)
{
	size_t free_forms = 0;
	char err[256];

	for (size_t i = 0; i < n; i++) {
		const struct om_plugin_param *p = &s[i];
		bool known = false;

		if (p->name == NULL || !om_name_valid(p->name) || p->type == NULL)
			abort();
		for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
			known |= strcmp(p->type, types[t]) == 0;
		if (!known)
			abort();
		if ((strcmp(p->type, "choice") == 0) != (p->choices != NULL))
			abort();
		if (p->choices && (nchoices(p) == 0 || nchoices(p) > 64))
			abort();
		if (p->flags & ~(OM_PARAM_FREE_FORM | OM_PARAM_SECRET))
			abort();
		free_forms += (p->flags & OM_PARAM_FREE_FORM) != 0;
		for (size_t j = 0; j < i; j++)
			if (strcmp(s[j].name, p->name) == 0)
				abort();
		/* a default is a value the validator takes */
		if (p->default_value != NULL) {
			struct om_kv kv = {.key = (char *)p->name, .val = (char *)p->default_value};

			if (om_params_validate(p, 1, &kv, 1, err, sizeof(err)) != 0)
				abort();
		}
	}
	if (free_forms > 1)
		abort();
}

/* Same parameters; a missing description comes back as "". */
static void
check_same(const struct om_plugin_param *a, const struct om_plugin_param *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *da = a[i].description ? a[i].description : "";

		if (strcmp(a[i].name, b[i].name) != 0 || strcmp(a[i].type, b[i].type) != 0 ||
		    a[i].required != b[i].required || a[i].flags != b[i].flags ||
		    !streq_opt(a[i].default_value, b[i].default_value) ||
		    !streq_opt(da, b[i].description) || nchoices(&a[i]) != nchoices(&b[i]))
			abort();
		for (size_t j = 0; j < nchoices(&a[i]); j++)
			if (strcmp(a[i].choices[j], b[i].choices[j]) != 0)
				abort();
	}
}

static void
roundtrip(const struct om_plugin_param *s, size_t n, size_t inlen)
{
	struct om_plugin_param *again;
	size_t n2;
	char *json, *json2, err[256];
	int rc;

	rc = om_params_schema_json(s, n, &json);
	if (rc == OM_EMSGSIZE && json == NULL && inlen + n * GROWTH_PER_PARAM > OM_MAX_SCHEMA)
		return;
	if (rc != 0 || json == NULL)
		abort();
	if (om_params_schema_parse(json, &again, &n2, err, sizeof(err)) != 0 || n2 != n)
		abort();
	check_same(s, again, n);
	/* canonical: serialising the parsed canonical form changes nothing */
	if (om_params_schema_json(again, n2, &json2) != 0 || strcmp(json, json2) != 0)
		abort();
	om_free(json2);
	om_params_schema_free(again, n2);
	om_free(json);
}

/* Byte cursor over the input, cycling; 0 when it is empty. */
struct cursor {
	const uint8_t *d;
	size_t n, i;
};

static uint8_t
next(struct cursor *c)
{
	if (c->n == 0)
		return 0;
	return c->d[c->i++ % c->n];
}

static void
validate_some(const struct om_plugin_param *s, size_t n, const uint8_t *data, size_t size)
{
	struct cursor c = {.d = data, .n = size, .i = size / 2};
	struct om_kv kv[MAX_KV];
	char *owned[MAX_KV] = {NULL}, err[256];
	size_t nkv = next(&c) % (MAX_KV + 1);
	int rc;

	for (size_t i = 0; i < nkv; i++) {
		const struct om_plugin_param *p = n > 0 ? &s[next(&c) % n] : NULL;
		uint8_t how = next(&c);

		kv[i].key = (char *)(p != NULL && how % 8 != 0 ? p->name : "zz-not-declared");
		switch ((how / 8) % 4) {
		case 0:
			kv[i].val = (char *)values[next(&c) % (sizeof(values) / sizeof(values[0]))];
			break;
		case 1:
			kv[i].val = (char *)(p && p->choices ? p->choices[next(&c) % nchoices(p)]
			                                     : "x");
			break;
		case 2:
			kv[i].val = (char *)(p && p->default_value ? p->default_value : "");
			break;
		default: {
			/* a slice of the input */
			size_t off = size ? next(&c) % size : 0, len = next(&c) % 64;

			if (len > size - off)
				len = size - off;
			if ((owned[i] = om_strndup((const char *)data + off, len)) == NULL)
				abort();
			kv[i].val = owned[i];
		}
		}
	}

	memset(err, 0x55, sizeof(err));
	rc = om_params_validate(s, n, kv, nkv, err, sizeof(err));
	if (rc != 0) {
		if (rc != OM_EINVAL || memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
			abort();
	} else {
		/* accepted: known keys, each once, every required one given or defaulted */
		for (size_t i = 0; i < nkv; i++) {
			bool found = false;

			for (size_t j = 0; j < n; j++)
				found |= strcmp(s[j].name, kv[i].key) == 0;
			if (!found)
				abort();
			for (size_t j = 0; j < i; j++)
				if (strcmp(kv[j].key, kv[i].key) == 0)
					abort();
		}
		for (size_t j = 0; j < n; j++) {
			bool given = false;

			if (!s[j].required || s[j].default_value != NULL)
				continue;
			for (size_t i = 0; i < nkv; i++)
				given |= strcmp(s[j].name, kv[i].key) == 0;
			if (!given)
				abort();
		}
	}
	for (size_t i = 0; i < nkv; i++)
		om_free(owned[i]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct om_plugin_param *s = (struct om_plugin_param *)&size; /* must be reset */
	size_t n = 12345;
	char *json, err[256];
	int rc;

	/* Twice the limit: long inputs must hit the length check, not go unread. */
	if (size > 2 * (size_t)OM_MAX_SCHEMA + 2)
		return 0;
	if ((json = om_strndup((const char *)data, size)) == NULL)
		abort();

	memset(err, 0x55, sizeof(err));
	rc = om_params_schema_parse(json, &s, &n, err, sizeof(err));
	if (rc != 0) {
		/* Failure: no schema, a known code and a terminated message. */
		if (s != NULL || n != 0 || (rc != OM_EPROTO && rc != OM_ENOMEM))
			abort();
		if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
			abort();
		om_free(json);
		return 0;
	}
	if ((s == NULL) != (n == 0) || n > OM_MAX_PARAMS)
		abort();
	check_schema(s, n);
	roundtrip(s, n, strlen(json));
	validate_some(s, n, data, size);
	om_params_schema_free(s, n);
	om_free(json);
	return 0;
}
