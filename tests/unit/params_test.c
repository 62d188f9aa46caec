/* Tests for proto/params.c: value validation and the schema's JSON form. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "om/base.h"
#include "om/params.h"

static const char *const states[] = {"present", "absent", NULL};

static const struct om_plugin_param schema[] = {
        {"cmd", "string", 1, NULL, "command line", NULL, OM_PARAM_FREE_FORM},
        {"count", "int", 0, "1", "how many", NULL, 0},
        {"force", "bool", 0, NULL, "", NULL, 0},
        {"mode", "mode", 0, "0644", "file mode", NULL, 0},
        {"dest", "path", 0, NULL, "remote path", NULL, 0},
        {"state", "choice", 1, "present", "what to do", states, 0},
        {"src", "file", 0, NULL, "local file", NULL, 0},
        {"token", "string", 0, NULL, "an API token", NULL, OM_PARAM_SECRET},
};
#define NSCHEMA (sizeof(schema) / sizeof(schema[0]))

/* Validates one key=value pair plus cmd (required, no default); returns rc, err in err. */
static int
one(const char *key, const char *val, char *err, size_t errlen)
{
	struct om_kv kv[2] = {{"cmd", "true"}, {(char *)key, (char *)val}};
	bool cmd = strcmp(key, "cmd") == 0;

	if (err)
		err[0] = '\0';
	return om_params_validate(schema, NSCHEMA, kv + cmd, 2 - cmd, err, errlen);
}

static void
expect_ok(const char *key, const char *val)
{
	char err[256];

	if (one(key, val, err, sizeof(err)) != 0)
		fail_msg("%s=%s refused: %s", key, val, err);
}

/* Refused with OM_EINVAL, and err names the parameter and holds want. */
static void
expect_bad(const char *key, const char *val, const char *want)
{
	char err[256], name[64];

	if (one(key, val, err, sizeof(err)) != OM_EINVAL)
		fail_msg("%s=%s accepted", key, val);
	snprintf(name, sizeof(name), "'%s'", key);
	if (strstr(err, name) == NULL || strstr(err, want) == NULL)
		fail_msg("%s=%s: error '%s' lacks %s or '%s'", key, val, err, name, want);
}

static void
test_types(void **state)
{
	(void)state;
	expect_ok("count", "0");
	expect_ok("count", "-42");
	expect_ok("count", "9223372036854775807");
	expect_bad("count", "9223372036854775808", "out of range");
	expect_bad("count", "", "not an integer");
	expect_bad("count", "-", "not an integer");
	expect_bad("count", "+1", "not an integer");
	expect_bad("count", "1.5", "not an integer");
	expect_bad("count", " 1", "not an integer");

	expect_ok("force", "true");
	expect_ok("force", "off");
	expect_ok("force", "YES");
	expect_ok("force", "0");
	expect_bad("force", "maybe", "not a bool");
	expect_bad("force", "", "not a bool");

	expect_ok("mode", "0644");
	expect_ok("mode", "755");
	expect_ok("mode", "07777");
	expect_ok("mode", "0");
	expect_bad("mode", "9z", "not an octal mode");
	expect_bad("mode", "010000", "not an octal mode");
	expect_bad("mode", "0000000644", "not an octal mode");
	expect_bad("mode", "", "not an octal mode");
	expect_bad("mode", "-1", "not an octal mode");

	expect_ok("dest", "/etc/motd");
	expect_ok("dest", "/");
	expect_bad("dest", "etc/motd", "not an absolute path");
	expect_bad("dest", "", "not an absolute path");
	expect_bad("dest", "/tmp/a\nb", "newline");

	expect_ok("state", "absent");
	expect_bad("state", "Absent", "not one of the choices");
	expect_bad("state", "", "not one of the choices");

	expect_ok("src", "");
	expect_ok("src", "aGVsbG8=");
	expect_ok("src", "aGk+/w==");
	expect_bad("src", "aGVsbG8", "not base64");
	expect_bad("src", "aG=sbG8=", "not base64");
	expect_bad("src", "aGVs\nbG8=", "not base64");
	expect_bad("src", "a===", "not base64");

	expect_ok("cmd", "anything at all; $(x)");
}

static void
test_error_text(void **state)
{
	char err[256];

	(void)state;
	/* the example of params.h, word for word */
	assert_int_equal(one("mode", "9z", err, sizeof(err)), OM_EINVAL);
	assert_string_equal(err, "parameter 'mode': '9z' is not an octal mode");
	/* a secret value is never quoted back */
	assert_int_equal(om_params_validate(&(struct om_plugin_param){"pin", "int", 0, NULL, "",
	                                                              NULL, OM_PARAM_SECRET},
	                                    1, &(struct om_kv){"pin", "hunter2"}, 1, err,
	                                    sizeof(err)),
	                 OM_EINVAL);
	assert_null(strstr(err, "hunter2"));
	assert_non_null(strstr(err, "'pin'"));
	/* control bytes and long values are cut down before they reach a terminal */
	assert_int_equal(one("count", "\x1b[2J0123456789012345678901234567890123456789xyz", err,
	                     sizeof(err)),
	                 OM_EINVAL);
	assert_null(strchr(err, '\x1b'));
	assert_null(strstr(err, "xyz"));
	/* a tiny buffer is fine */
	assert_int_equal(one("count", "x", err, 8), OM_EINVAL);
	assert_int_equal(strlen(err), 7);
	assert_int_equal(one("count", "x", NULL, 0), OM_EINVAL);
}

static void
test_unknown_and_required(void **state)
{
	struct om_kv kv[3];
	char err[256];

	(void)state;
	kv[0] = (struct om_kv){"cmd", "ls"};
	kv[1] = (struct om_kv){"colour", "red"};
	assert_int_equal(om_params_validate(schema, NSCHEMA, kv, 2, err, sizeof(err)), OM_EINVAL);
	assert_string_equal(err, "unknown parameter 'colour'");

	/* cmd is required without default; state is required with one */
	assert_int_equal(om_params_validate(schema, NSCHEMA, NULL, 0, err, sizeof(err)), OM_EINVAL);
	assert_string_equal(err, "missing required parameter 'cmd'");
	kv[0] = (struct om_kv){"count", "3"};
	assert_int_equal(om_params_validate(schema, NSCHEMA, kv, 1, err, sizeof(err)), OM_EINVAL);
	assert_non_null(strstr(err, "'cmd'"));
	kv[0] = (struct om_kv){"cmd", "ls"};
	assert_int_equal(om_params_validate(schema, NSCHEMA, kv, 1, err, sizeof(err)), 0);

	/* the same key twice (a caller that did not go through the decoder) */
	kv[1] = (struct om_kv){"cmd", "ls"};
	assert_int_equal(om_params_validate(schema, NSCHEMA, kv, 2, err, sizeof(err)), OM_EINVAL);
	assert_non_null(strstr(err, "twice"));

	/* an empty schema takes nothing */
	assert_int_equal(om_params_validate(NULL, 0, NULL, 0, err, sizeof(err)), 0);
	assert_int_equal(om_params_validate(NULL, 0, kv, 1, err, sizeof(err)), OM_EINVAL);
	assert_string_equal(err, "unknown parameter 'cmd'");
}

static void
test_bool_spellings(void **state)
{
	bool ok;

	(void)state;
	assert_true(om_param_bool("on", &ok));
	assert_true(ok);
	assert_false(om_param_bool("no", &ok));
	assert_true(ok);
	assert_false(om_param_bool("2", &ok));
	assert_false(ok);
	assert_false(om_param_bool(NULL, &ok));
	assert_false(ok);
	assert_true(om_param_bool("1", NULL));
}

static void
assert_param_equal(const struct om_plugin_param *a, const struct om_plugin_param *b)
{
	assert_string_equal(a->name, b->name);
	assert_string_equal(a->type, b->type);
	assert_int_equal(!!a->required, !!b->required);
	if (a->default_value == NULL || b->default_value == NULL)
		assert_ptr_equal(a->default_value, b->default_value);
	else
		assert_string_equal(a->default_value, b->default_value);
	assert_string_equal(a->description ? a->description : "",
	                    b->description ? b->description : "");
	assert_int_equal(a->flags, b->flags);
	if (strcmp(a->type, "choice") == 0) {
		size_t i;

		for (i = 0; a->choices[i]; i++)
			assert_string_equal(a->choices[i], b->choices[i]);
		assert_null(b->choices[i]);
	} else {
		assert_null(b->choices);
	}
}

static void
test_schema_roundtrip(void **state)
{
	struct om_plugin_param *p;
	char *json, *json2, err[256];
	size_t n;

	(void)state;
	assert_int_equal(om_params_schema_json(schema, NSCHEMA, &json), 0);
	assert_non_null(strstr(json, "\"name\":\"cmd\""));
	assert_non_null(strstr(json, "\"choices\":[\"present\",\"absent\"]"));
	assert_non_null(strstr(json, "\"default\":null"));
	assert_int_equal(om_params_schema_parse(json, &p, &n, err, sizeof(err)), 0);
	assert_int_equal(n, NSCHEMA);
	for (size_t i = 0; i < n; i++)
		assert_param_equal(&schema[i], &p[i]);
	/* the parsed schema validates like the original */
	assert_int_equal(om_params_validate(p, n, &(struct om_kv){"cmd", "x"}, 1, err, sizeof(err)),
	                 0);
	/* and gives the same text again */
	assert_int_equal(om_params_schema_json(p, n, &json2), 0);
	assert_string_equal(json, json2);
	om_free(json);
	om_free(json2);
	om_params_schema_free(p, n);

	/* an empty schema */
	assert_int_equal(om_params_schema_json(NULL, 0, &json), 0);
	assert_string_equal(json, "[]");
	assert_int_equal(om_params_schema_parse(json, &p, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	assert_null(p);
	om_free(json);

	/* optional keys absent, unknown keys ignored */
	assert_int_equal(
	        om_params_schema_parse("[{\"name\":\"a\",\"type\":\"int\",\"future\":{\"x\":[1]}}]",
	                               &p, &n, err, sizeof(err)),
	        0);
	assert_int_equal(n, 1);
	assert_false(p[0].required);
	assert_null(p[0].default_value);
	assert_null(p[0].description);
	assert_int_equal(p[0].flags, 0);
	om_params_schema_free(p, n);
}

/* The schema is refused with OM_EPROTO, err holds want, and nothing is handed out. */
static void
expect_schema_bad(const char *json, const char *want)
{
	struct om_plugin_param *p = (void *)&p;
	size_t n = 99;
	char err[256] = "";

	if (om_params_schema_parse(json, &p, &n, err, sizeof(err)) != OM_EPROTO)
		fail_msg("schema accepted: %s", json);
	assert_null(p);
	assert_int_equal(n, 0);
	if (strstr(err, want) == NULL)
		fail_msg("schema %s: error '%s' lacks '%s'", json, err, want);
}

static void
test_schema_hostile(void **state)
{
	struct om_plugin_param *p;
	char *big, err[256];
	size_t n, o;

	(void)state;
	expect_schema_bad("", "not JSON");
	expect_schema_bad("[", "not JSON");
	expect_schema_bad("{}", "not an array");
	expect_schema_bad("\"x\"", "not an array");
	expect_schema_bad("[1]", "not an object");
	expect_schema_bad("[{\"type\":\"int\"}]", "invalid name");
	expect_schema_bad("[{\"name\":7,\"type\":\"int\"}]", "invalid name");
	expect_schema_bad("[{\"name\":\"-x\",\"type\":\"int\"}]", "invalid name");
	expect_schema_bad("[{\"name\":\"a b\",\"type\":\"int\"}]", "invalid name");
	expect_schema_bad("[{\"name\":\"\",\"type\":\"int\"}]", "invalid name");
	expect_schema_bad("[{\"name\":\"a\\u0000b\",\"type\":\"int\"}]", "not JSON");
	expect_schema_bad("[{\"name\":\"a\"}]", "unknown type");
	expect_schema_bad("[{\"name\":\"a\",\"type\":\"float\"}]", "unknown type");
	expect_schema_bad("[{\"name\":\"a\",\"type\":[\"int\"]}]", "unknown type");
	expect_schema_bad("[{\"name\":\"a\",\"type\":\"choice\"}]", "without choices");
	expect_schema_bad("[{\"name\":\"a\",\"type\":\"choice\",\"choices\":[]}]", "choices");
	expect_schema_bad("[{\"name\":\"a\",\"type\":\"choice\",\"choices\":\"x\"}]", "choices");
	expect_schema_bad("[{\"name\":\"a\",\"type\":\"choice\",\"choices\":[1]}]", "choice 1");
	expect_schema_bad("[{\"name\":\"a\",\"type\":\"int\",\"choices\":[\"1\"]}]", "choices");
	expect_schema_bad("[{\"name\":\"a\",\"type\":\"int\",\"required\":\"yes\"}]", "bools");
	expect_schema_bad("[{\"name\":\"a\",\"type\":\"int\",\"default\":5}]", "default");
	expect_schema_bad("[{\"name\":\"a\",\"type\":\"int\",\"default\":\"five\"}]",
	                  "not an integer");
	expect_schema_bad("[{\"name\":\"a\",\"type\":\"choice\",\"choices\":[\"x\"],"
	                  "\"default\":\"y\"}]",
	                  "not one of the choices");
	expect_schema_bad("[{\"name\":\"a\",\"type\":\"int\",\"description\":{}}]", "description");
	expect_schema_bad("[{\"name\":\"a\",\"type\":\"int\"},{\"name\":\"a\",\"type\":\"bool\"}]",
	                  "declared twice");
	expect_schema_bad("[{\"name\":\"a\",\"type\":\"int\",\"name\":\"b\"}]", "not JSON");
	expect_schema_bad("[{\"name\":\"a\",\"type\":\"string\",\"free_form\":true},"
	                  "{\"name\":\"b\",\"type\":\"string\",\"free_form\":true}]",
	                  "free_form");

	/* too many parameters; exactly OM_MAX_PARAMS is fine */
	big = malloc(OM_MAX_SCHEMA + 2);
	assert_non_null(big);
	for (int cnt = OM_MAX_PARAMS; cnt <= OM_MAX_PARAMS + 1; cnt++) {
		o = (size_t)snprintf(big, 2, "[");
		for (int i = 0; i < cnt; i++)
			o += (size_t)snprintf(big + o, 64, "%s{\"name\":\"p%d\",\"type\":\"int\"}",
			                      i ? "," : "", i);
		snprintf(big + o, 2, "]");
		if (cnt == OM_MAX_PARAMS) {
			assert_int_equal(om_params_schema_parse(big, &p, &n, err, sizeof(err)), 0);
			assert_int_equal(n, OM_MAX_PARAMS);
			om_params_schema_free(p, n);
		} else {
			expect_schema_bad(big, "more than");
		}
	}
	/* longer than OM_MAX_SCHEMA, whatever it holds */
	memset(big, ' ', OM_MAX_SCHEMA + 1);
	big[0] = '[';
	big[OM_MAX_SCHEMA] = ']';
	big[OM_MAX_SCHEMA + 1] = '\0';
	expect_schema_bad(big, "longer");
	/* deep nesting inside an ignored key */
	o = (size_t)snprintf(big, OM_MAX_SCHEMA, "[{\"name\":\"a\",\"type\":\"int\",\"x\":");
	while (o < OM_MAX_SCHEMA / 2)
		big[o++] = '[';
	big[o] = '\0';
	expect_schema_bad(big, "not JSON");
	free(big);
}

/* A failing allocation anywhere in parse or json leaks nothing and reports ENOMEM. */
static void
test_schema_alloc_failure(void **state)
{
	struct om_plugin_param *p;
	char *json, err[256];
	size_t n;
	int rc;

	(void)state;
	assert_int_equal(om_params_schema_json(schema, NSCHEMA, &json), 0);
	for (unsigned long nth = 1; nth < 200; nth++) {
		om_alloc_fail_at(nth);
		rc = om_params_schema_parse(json, &p, &n, err, sizeof(err));
		om_alloc_fail_at(0);
		if (rc == 0) {
			om_params_schema_free(p, n);
			break;
		}
		assert_int_equal(rc, OM_ENOMEM);
		assert_null(p);
	}
	om_free(json);
}

/* om_params_validate_at: the parameter at fault, by name. */
static void
test_validate_at(void **state)
{
	struct om_kv kv[3];
	const char *at = "x";
	char err[256];

	(void)state;
	kv[0] = (struct om_kv){"cmd", "ls"};
	kv[1] = (struct om_kv){"mode", "9z"};
	assert_int_equal(om_params_validate_at(schema, NSCHEMA, kv, 2, &at, err, sizeof(err)),
	                 OM_EINVAL);
	assert_string_equal(at, "mode");
	kv[1] = (struct om_kv){"colour", "red"};
	assert_int_equal(om_params_validate_at(schema, NSCHEMA, kv, 2, &at, err, sizeof(err)),
	                 OM_EINVAL);
	assert_string_equal(at, "colour");
	/* a missing required one is named from the schema */
	kv[0] = (struct om_kv){"count", "3"};
	assert_int_equal(om_params_validate_at(schema, NSCHEMA, kv, 1, &at, err, sizeof(err)),
	                 OM_EINVAL);
	assert_string_equal(at, "cmd");
	/* no one parameter's fault, and success: NULL */
	assert_int_equal(om_params_validate_at(schema, NSCHEMA, NULL, 1, &at, err, sizeof(err)),
	                 OM_EINVAL);
	assert_null(at);
	kv[0] = (struct om_kv){"cmd", "ls"};
	at = "x";
	assert_int_equal(om_params_validate_at(schema, NSCHEMA, kv, 1, &at, err, sizeof(err)), 0);
	assert_null(at);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_types),
	        cmocka_unit_test(test_error_text),
	        cmocka_unit_test(test_unknown_and_required),
	        cmocka_unit_test(test_validate_at),
	        cmocka_unit_test(test_bool_spellings),
	        cmocka_unit_test(test_schema_roundtrip),
	        cmocka_unit_test(test_schema_hostile),
	        cmocka_unit_test(test_schema_alloc_failure),
	};
	return cmocka_run_group_tests_name("params", tests, NULL, NULL);
}
