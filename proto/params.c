/*
 * Module parameter schemas: validation of values and the JSON form.
 *
 * A JSON schema comes from a worker, so it is parsed as hostile input: the
 * text is bounded (OM_MAX_SCHEMA), the array (OM_MAX_PARAMS), the choices
 * (MAX_CHOICES) and every string; unknown keys of a parameter object are
 * ignored (a newer worker may add some), everything else must have its type.
 * Defaults are validated against their parameter's type when parsing, so a
 * default can never smuggle in a value the validator would refuse.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "om/base.h"
#include "om/params.h"

#define MAX_CHOICES  64
#define MAX_TYPE     16
#define MAX_PATH_LEN 4096
#define SHOWN_VALUE  40 /* bytes of a refused value quoted back in an error */

static const char *const types[] = {"string", "int", "bool", "mode", "path", "choice", "file"};

static bool
type_known(const char *t)
{
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(t, types[i]) == 0)
			return true;
	return false;
}

/*
 * A value as it may be quoted back: errors end up in logs and terminals, so
 * it is shortened and control bytes are replaced; a secret is never shown.
 */
static void
shown(const struct om_plugin_param *p, const char *v, char *out, size_t cap)
{
	size_t i, o = 0;

	if (p->flags & OM_PARAM_SECRET) {
		snprintf(out, cap, "(secret)");
		return;
	}
	out[o++] = '\'';
	for (i = 0; v[i] && i < SHOWN_VALUE && o + 5 < cap; i++) {
		unsigned char c = (unsigned char)v[i];
		out[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	if (v[i] && o + 5 < cap) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o++] = '\'';
	out[o] = '\0';
}

bool
om_param_bool(const char *v, bool *ok)
{
	static const char *const yes[] = {"true", "yes", "1", "on"};
	static const char *const no[] = {"false", "no", "0", "off"};
	size_t i;

	if (ok)
		*ok = true;
	if (v != NULL) {
		for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
			if (strcasecmp(v, yes[i]) == 0)
				return true;
		for (i = 0; i < sizeof(no) / sizeof(no[0]); i++)
			if (strcasecmp(v, no[i]) == 0)
				return false;
	}
	if (ok)
		*ok = false;
	return false;
}

static bool
is_int(const char *v, bool *range)
{
	const char *d = v[0] == '-' ? v + 1 : v;
	char *end;

	*range = true;
	if (*d == '\0')
		return false;
	for (const char *c = d; *c; c++)
		if (*c < '0' || *c > '9')
			return false;
	errno = 0;
	(void)strtoll(v, &end, 10);
	*range = errno != ERANGE;
	return *end == '\0';
}

static bool
is_mode(const char *v)
{
	unsigned long m = 0;
	size_t i;

	/* a few leading zeros are common ("00644"); more digits are no mode */
	for (i = 0; v[i]; i++) {
		if (v[i] < '0' || v[i] > '7' || i >= 6)
			return false;
		m = m * 8 + (unsigned long)(v[i] - '0');
	}
	return i > 0 && m <= 07777;
}

static bool
is_base64(const char *v)
{
	size_t n = strlen(v), pad = 0;

	if (n % 4 != 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = v[i];

		if (c == '=') {
			/* padding only at the very end, at most two */
			if (i + 2 < n || ++pad > 2)
				return false;
			continue;
		}
		if (pad > 0)
			return false;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/'))
			return false;
	}
	return true;
}

/* 0, or OM_EINVAL with a sentence naming p in err. */
static int
check_value(const struct om_plugin_param *p, const char *v, char *err, size_t errlen)
{
	char s[SHOWN_VALUE + 8];
	const char *why = NULL;
	bool ok, range;

	if (p->type == NULL) {
		om_seterr(err, errlen, "parameter '%s': no type", p->name ? p->name : "?");
		return OM_EINVAL;
	}
	if (strcmp(p->type, "string") == 0)
		return 0;
	if (strcmp(p->type, "int") == 0) {
		if (!is_int(v, &range))
			why = "is not an integer";
		else if (!range)
			why = "is out of range";
	} else if (strcmp(p->type, "bool") == 0) {
		(void)om_param_bool(v, &ok);
		if (!ok)
			why = "is not a bool (true, false, yes, no, on, off, 1, 0)";
	} else if (strcmp(p->type, "mode") == 0) {
		if (!is_mode(v))
			why = "is not an octal mode";
	} else if (strcmp(p->type, "path") == 0) {
		if (v[0] != '/')
			why = "is not an absolute path";
		else if (strpbrk(v, "\n\r") != NULL)
			why = "holds a newline";
		else if (strlen(v) > MAX_PATH_LEN)
			why = "is too long for a path";
	} else if (strcmp(p->type, "choice") == 0) {
		why = "is not one of the choices";
		for (size_t i = 0; p->choices && p->choices[i]; i++)
			if (strcmp(v, p->choices[i]) == 0)
				why = NULL;
	} else if (strcmp(p->type, "file") == 0) {
		if (!is_base64(v))
			why = "is not base64 file content";
	} else {
		om_seterr(err, errlen, "parameter '%s': unknown type '%s'", p->name, p->type);
		return OM_EINVAL;
	}
	if (why == NULL)
		return 0;
	shown(p, v, s, sizeof(s));
	om_seterr(err, errlen, "parameter '%s': %s %s", p->name, s, why);
	return OM_EINVAL;
}

static const struct om_plugin_param *
find(const struct om_plugin_param *schema, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (schema[i].name && strcmp(schema[i].name, name) == 0)
			return &schema[i];
	return NULL;
}

int
om_params_validate(const struct om_plugin_param *schema, size_t n, const struct om_kv *kv,
                   size_t nkv, char *err, size_t errlen)
{
	return om_params_validate_at(schema, n, kv, nkv, NULL, err, errlen);
}

int
om_params_validate_at(const struct om_plugin_param *schema, size_t n, const struct om_kv *kv,
                      size_t nkv, const char **param, char *err, size_t errlen)
{
	const struct om_plugin_param *p;
	size_t i, j;
	int rc;

	if (param != NULL)
		*param = NULL;
	if (nkv > 0 && kv == NULL)
		return OM_EINVAL;
	for (i = 0; i < nkv; i++) {
		if (kv[i].key == NULL || kv[i].val == NULL) {
			om_seterr(err, errlen, "parameter %zu has no name or no value", i + 1);
			return OM_EINVAL;
		}
		if (param != NULL)
			*param = kv[i].key;
		if ((p = find(schema, n, kv[i].key)) == NULL) {
			om_seterr(err, errlen, "unknown parameter '%.64s'", kv[i].key);
			return OM_EINVAL;
		}
		for (j = 0; j < i; j++)
			if (strcmp(kv[j].key, kv[i].key) == 0) {
				om_seterr(err, errlen, "parameter '%s' given twice", p->name);
				return OM_EINVAL;
			}
		if ((rc = check_value(p, kv[i].val, err, errlen)) != 0)
			return rc;
	}
	for (i = 0; i < n; i++) {
		if (schema[i].name == NULL || !schema[i].required ||
		    schema[i].default_value != NULL)
			continue;
		for (j = 0; j < nkv; j++)
			if (strcmp(kv[j].key, schema[i].name) == 0)
				break;
		if (j == nkv) {
			if (param != NULL)
				*param = schema[i].name;
			om_seterr(err, errlen, "missing required parameter '%s'", schema[i].name);
			return OM_EINVAL;
		}
	}
	if (param != NULL)
		*param = NULL;
	return 0;
}

/* --- JSON form ---------------------------------------------------------------------- */

static json_t *
param_json(const struct om_plugin_param *p)
{
	json_t *o = json_object(), *ch;
	int bad = 0;

	if (o == NULL)
		return NULL;
	bad |= json_object_set_new(o, "name", json_string(p->name));
	bad |= json_object_set_new(o, "type", json_string(p->type));
	bad |= json_object_set_new(o, "required", json_boolean(p->required));
	bad |= json_object_set_new(o, "default",
	                           p->default_value ? json_string(p->default_value) : json_null());
	bad |= json_object_set_new(o, "description",
	                           json_string(p->description ? p->description : ""));
	if (strcmp(p->type, "choice") == 0) {
		if ((ch = json_array()) == NULL) {
			bad = 1;
		} else {
			for (size_t i = 0; p->choices && p->choices[i]; i++)
				bad |= json_array_append_new(ch, json_string(p->choices[i]));
			bad |= json_object_set_new(o, "choices", ch);
		}
	}
	bad |= json_object_set_new(o, "free_form", json_boolean(p->flags & OM_PARAM_FREE_FORM));
	bad |= json_object_set_new(o, "secret", json_boolean(p->flags & OM_PARAM_SECRET));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int
om_params_schema_json(const struct om_plugin_param *schema, size_t n, char **out)
{
	json_t *a;
	char *s;
	size_t len;

	*out = NULL;
	if (n > OM_MAX_PARAMS)
		return OM_EMSGSIZE;
	if (n > 0 && schema == NULL)
		return OM_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (schema[i].name == NULL || schema[i].type == NULL)
			return OM_EINVAL;
	if ((a = json_array()) == NULL)
		return OM_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *o = param_json(&schema[i]);

		if (o == NULL || json_array_append_new(a, o) != 0) {
			json_decref(a);
			return OM_ENOMEM;
		}
	}
	s = json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(a);
	if (s == NULL)
		return OM_ENOMEM; /* NULL strings were refused above: only memory remains */
	len = strlen(s);
	/* jansson allocates with its own allocator; the caller frees with om_free */
	if (len > OM_MAX_SCHEMA) {
		free(s);
		return OM_EMSGSIZE;
	}
	*out = om_strndup(s, len);
	free(s);
	return *out ? 0 : OM_ENOMEM;
}

void
om_params_schema_free(struct om_plugin_param *schema, size_t n)
{
	if (schema == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		struct om_plugin_param *p = &schema[i];

		om_free((void *)p->name);
		om_free((void *)p->type);
		om_free((void *)p->default_value);
		om_free((void *)p->description);
		if (p->choices) {
			for (size_t j = 0; p->choices[j]; j++)
				om_free((void *)p->choices[j]);
			om_free((void *)p->choices);
		}
	}
	om_free(schema);
}

/* A string member: 0 (*out NULL when absent or null and allowed), or OM_EPROTO. */
static int
get_str(json_t *o, const char *key, bool nullable, size_t max, char **out)
{
	json_t *v = json_object_get(o, key);

	*out = NULL;
	if (v == NULL || (nullable && json_is_null(v)))
		return 0;
	if (!json_is_string(v) || json_string_length(v) > max)
		return OM_EPROTO;
	if ((*out = om_strndup(json_string_value(v), json_string_length(v))) == NULL)
		return OM_ENOMEM;
	return 0;
}

/* A bool member; absent is false. */
static int
get_bool(json_t *o, const char *key, bool *out)
{
	json_t *v = json_object_get(o, key);

	*out = false;
	if (v == NULL)
		return 0;
	if (!json_is_boolean(v))
		return OM_EPROTO;
	*out = json_is_true(v);
	return 0;
}

static int
parse_choices(json_t *a, struct om_plugin_param *p, char *err, size_t errlen)
{
	size_t i, n;
	char **c;

	if (!json_is_array(a) || (n = json_array_size(a)) == 0 || n > MAX_CHOICES) {
		om_seterr(err, errlen, "parameter '%s': choices must be an array of 1..%d strings",
		          p->name, MAX_CHOICES);
		return OM_EPROTO;
	}
	if ((c = om_calloc(n + 1, sizeof(*c))) == NULL)
		return OM_ENOMEM;
	p->choices = (const char *const *)c;
	for (i = 0; i < n; i++) {
		json_t *v = json_array_get(a, i);

		if (!json_is_string(v) || json_string_length(v) > OM_MAX_TEXT) {
			om_seterr(err, errlen, "parameter '%s': choice %zu is not a string",
			          p->name, i + 1);
			return OM_EPROTO;
		}
		if ((c[i] = om_strndup(json_string_value(v), json_string_length(v))) == NULL)
			return OM_ENOMEM;
	}
	return 0;
}

/* One parameter object into p (zeroed); p's strings are owned by the caller's schema. */
static int
parse_param(json_t *o, size_t idx, struct om_plugin_param *p, char *err, size_t errlen)
{
	char *name, *type, *def, *desc;
	bool required, free_form, secret;
	json_t *ch;
	int rc;

	if (!json_is_object(o)) {
		om_seterr(err, errlen, "parameter %zu is not an object", idx);
		return OM_EPROTO;
	}
	if ((rc = get_str(o, "name", false, OM_MAX_NAME, &name)) != 0)
		goto bad_name;
	p->name = name;
	if (name == NULL || !om_name_valid(name))
		goto bad_name;
	if ((rc = get_str(o, "type", false, MAX_TYPE, &type)) != 0 && rc != OM_EPROTO)
		return rc;
	p->type = type;
	if (type == NULL || !type_known(type)) {
		om_seterr(err, errlen, "parameter '%s': missing or unknown type", name);
		return OM_EPROTO;
	}
	if ((rc = get_str(o, "default", true, OM_MAX_PARAM, &def)) != 0) {
		if (rc == OM_EPROTO)
			om_seterr(err, errlen, "parameter '%s': default is not a string", name);
		return rc;
	}
	p->default_value = def;
	if ((rc = get_str(o, "description", true, OM_MAX_TEXT, &desc)) != 0) {
		if (rc == OM_EPROTO)
			om_seterr(err, errlen, "parameter '%s': description is not a string", name);
		return rc;
	}
	p->description = desc;
	if (get_bool(o, "required", &required) != 0 || get_bool(o, "free_form", &free_form) != 0 ||
	    get_bool(o, "secret", &secret) != 0) {
		om_seterr(err, errlen, "parameter '%s': required, free_form and secret are bools",
		          name);
		return OM_EPROTO;
	}
	p->required = required;
	p->flags = (free_form ? OM_PARAM_FREE_FORM : 0) | (secret ? OM_PARAM_SECRET : 0);
	ch = json_object_get(o, "choices");
	if (strcmp(type, "choice") == 0) {
		if (ch == NULL) {
			om_seterr(err, errlen, "parameter '%s': a choice without choices", name);
			return OM_EPROTO;
		}
		if ((rc = parse_choices(ch, p, err, errlen)) != 0)
			return rc;
	} else if (ch != NULL && !json_is_null(ch)) {
		om_seterr(err, errlen, "parameter '%s': choices on a %s parameter", name, type);
		return OM_EPROTO;
	}
	if (def != NULL && check_value(p, def, err, errlen) != 0) {
		/* check_value wrote "parameter 'x': 'v' is not ..." */
		return OM_EPROTO;
	}
	return 0;
bad_name:
	if (rc == OM_ENOMEM)
		return rc;
	om_seterr(err, errlen, "parameter %zu: missing or invalid name", idx);
	return OM_EPROTO;
}

int
om_params_schema_parse(const char *json, struct om_plugin_param **out, size_t *n, char *err,
                       size_t errlen)
{
	struct om_plugin_param *s = NULL;
	json_error_t je;
	json_t *a;
	size_t cnt = 0, i, j, free_forms = 0;
	int rc = 0;

	*out = NULL;
	*n = 0;
	if (json == NULL) {
		om_seterr(err, errlen, "no schema");
		return OM_EPROTO;
	}
	if (strnlen(json, OM_MAX_SCHEMA + 1) > OM_MAX_SCHEMA) {
		om_seterr(err, errlen, "schema longer than %d bytes", OM_MAX_SCHEMA);
		return OM_EPROTO;
	}
	if ((a = json_loads(json, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je)) == NULL) {
		om_seterr(err, errlen, "schema is not JSON: %s at %d:%d", je.text, je.line,
		          je.column);
		return OM_EPROTO;
	}
	if (!json_is_array(a)) {
		om_seterr(err, errlen, "schema is not an array");
		rc = OM_EPROTO;
		goto out;
	}
	if ((cnt = json_array_size(a)) > OM_MAX_PARAMS) {
		om_seterr(err, errlen, "schema has %zu parameters, more than %d", cnt,
		          OM_MAX_PARAMS);
		rc = OM_EPROTO;
		goto out;
	}
	if (cnt == 0)
		goto out;
	if ((s = om_calloc(cnt, sizeof(*s))) == NULL) {
		rc = OM_ENOMEM;
		goto out;
	}
	for (i = 0; i < cnt; i++) {
		if ((rc = parse_param(json_array_get(a, i), i + 1, &s[i], err, errlen)) != 0) {
			if (rc == OM_ENOMEM)
				om_seterr(err, errlen, "out of memory");
			goto out;
		}
		for (j = 0; j < i; j++)
			if (strcmp(s[j].name, s[i].name) == 0) {
				om_seterr(err, errlen, "parameter '%s' declared twice", s[i].name);
				rc = OM_EPROTO;
				goto out;
			}
		if ((s[i].flags & OM_PARAM_FREE_FORM) && ++free_forms > 1) {
			/* omctl -a could not know which one takes the text */
			om_seterr(err, errlen, "parameter '%s': more than one free_form parameter",
			          s[i].name);
			rc = OM_EPROTO;
			goto out;
		}
	}
out:
	json_decref(a);
	if (rc != 0) {
		om_params_schema_free(s, cnt);
		return rc;
	}
	*out = s;
	*n = s ? cnt : 0;
	return 0;
}
