/*
 * Tests for om_scriptmod_parse_result (worker/scriptmod.c): a script
 * module's stdout becomes the host's result only when it is one JSON
 * object; changed, failed and msg are read from it, and the recorded text
 * is its compact form.  (Loading manifests is covered by plugins_test.)
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "om/base.h"
#include "om/err.h"
#include "scriptmod.h"

static int
parse(const char *s, struct om_scriptmod_result *r, char *err, size_t errlen)
{
	return om_scriptmod_parse_result((const uint8_t *)s, strlen(s), r, err, errlen);
}

static void
test_result_ok(void **state)
{
	struct om_scriptmod_result r;
	char err[256] = "";

	(void)state;
	assert_int_equal(parse(" {\"changed\": true, \"msg\": \"done\",\n \"facts\": {\"a\": [1, "
	                       "2.5, null]}}\n",
	                       &r, err, sizeof(err)),
	                 0);
	assert_string_equal(r.json,
	                    "{\"changed\":true,\"msg\":\"done\",\"facts\":{\"a\":[1,2.5,null]}}");
	assert_string_equal(r.msg, "done");
	assert_true(r.changed);
	assert_false(r.failed);
	om_scriptmod_result_free(&r);
	assert_null(r.json);
	assert_null(r.msg);

	/* only true counts; a msg that is no string is no msg */
	assert_int_equal(parse("{\"changed\":1,\"failed\":true,\"msg\":7}", &r, err, sizeof(err)),
	                 0);
	assert_false(r.changed);
	assert_true(r.failed);
	assert_null(r.msg);
	om_scriptmod_result_free(&r);

	assert_int_equal(parse("{}", &r, NULL, 0), 0);
	assert_string_equal(r.json, "{}");
	assert_false(r.changed);
	assert_false(r.failed);
	om_scriptmod_result_free(&r);
}

static void
test_result_refused(void **state)
{
	static const char *const bad[] = {
	        "",
	        "   ",
	        "[1,2]",
	        "\"text\"",
	        "{\"changed\":true",
	        "{\"a\":1,\"a\":2}",
	        "noise\n{\"changed\":true}",
	        "{\"changed\":true}\n{\"changed\":false}",
	        "{\"msg\":\"a\\u0000b\"}",
	        "{\"msg\":\"\xff\"}",
	};
	struct om_scriptmod_result r;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(parse(bad[i], &r, err, sizeof(err)), OM_EPROTO);
		assert_null(r.json);
		assert_null(r.msg);
		assert_false(r.changed);
		assert_false(r.failed);
		assert_true(err[0] != '\0');
		om_scriptmod_result_free(&r);
	}
	assert_int_equal(parse("[]", &r, err, sizeof(err)), OM_EPROTO);
	assert_string_equal(err, "not an object");

	/* no output at all, and bytes after a NUL are not ignored */
	assert_int_equal(om_scriptmod_parse_result(NULL, 0, &r, err, sizeof(err)), OM_EPROTO);
	assert_int_equal(
	        om_scriptmod_parse_result((const uint8_t *)"{}\0{}", 5, &r, err, sizeof(err)),
	        OM_EPROTO);
	om_scriptmod_result_free(&r);
	om_scriptmod_result_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_result_ok),
	        cmocka_unit_test(test_result_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
