/*
 * The pure parts of om-master's HTTP server (master/http.c): route matching
 * and permissions, static path checks, cookies, JSON to SUBMIT and
 * JOBS_LIST, TABLE and event JSON, status codes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "http.h"

static const struct http_route *
match(const char *method, const char *path, uint64_t *id, char *name, int *status)
{
	return http_route_match(method, path, id, name, OM_MAX_NAME + 1, status);
}

static void
test_routes(void **state)
{
	char name[OM_MAX_NAME + 1];
	const struct http_route *rt;
	uint64_t id = 0;
	int st;

	(void)state;
	rt = match("GET", "/api/v1/jobs", &id, name, &st);
	assert_non_null(rt);
	assert_int_equal(st, 200);
	assert_string_equal(http_route_name(rt), "jobs.list");
	assert_int_equal(http_route_perm(rt), WEB_READ);
	rt = match("POST", "/api/v1/jobs", &id, name, &st);
	assert_string_equal(http_route_name(rt), "jobs.submit");
	assert_int_equal(http_route_perm(rt), WEB_RUN);
	rt = match("GET", "/api/v1/jobs/42/events", &id, name, &st);
	assert_non_null(rt);
	assert_int_equal(id, 42);
	assert_string_equal(http_route_name(rt), "jobs.events");
	rt = match("GET", "/api/v1/modules/shell", &id, name, &st);
	assert_non_null(rt);
	assert_string_equal(name, "shell");
	rt = match("POST", "/api/v1/login", &id, name, &st);
	assert_int_equal(http_route_perm(rt), WEB_PUBLIC);
	rt = match("GET", "/api/v1/users", &id, name, &st);
	assert_int_equal(http_route_perm(rt), WEB_ADMIN);
	/* wrong method: 405; unknown: 404 */
	assert_null(match("DELETE", "/api/v1/jobs", &id, name, &st));
	assert_int_equal(st, 405);
	assert_null(match("GET", "/api/v1/jobs/42/cancel", &id, name, &st));
	assert_int_equal(st, 405);
	assert_null(match("GET", "/api/v1/nope", &id, name, &st));
	assert_int_equal(st, 404);
	/* ids are decimal, non-zero, at most 19 digits */
	assert_null(match("GET", "/api/v1/jobs/0", &id, name, &st));
	assert_null(match("GET", "/api/v1/jobs/-1", &id, name, &st));
	assert_null(match("GET", "/api/v1/jobs/1x", &id, name, &st));
	assert_null(match("GET", "/api/v1/jobs/12345678901234567890", &id, name, &st));
	assert_int_equal(st, 404);
	/* trailing slash, empty segments, bad names */
	assert_null(match("GET", "/api/v1/jobs/", &id, name, &st));
	assert_null(match("GET", "/api/v1//jobs", &id, name, &st));
	assert_null(match("GET", "/api/v1/modules/..", &id, name, &st));
	assert_null(match("GET", "/api/v1/modules/-x", &id, name, &st));
}

static void
test_static_path(void **state)
{
	char out[256];

	(void)state;
	assert_true(http_static_path("/", out, sizeof(out)));
	assert_string_equal(out, "index.html");
	assert_true(http_static_path("/js/app.js", out, sizeof(out)));
	assert_string_equal(out, "js/app.js");
	assert_false(http_static_path("/../etc/passwd", out, sizeof(out)));
	assert_false(http_static_path("/a/../../b", out, sizeof(out)));
	assert_false(http_static_path("/a/./b", out, sizeof(out)));
	assert_false(http_static_path("/.git/config", out, sizeof(out)));
	assert_false(http_static_path("/a//b", out, sizeof(out)));
	assert_false(http_static_path("/a/", out, sizeof(out)));
	assert_false(http_static_path("/a\\..\\b", out, sizeof(out)));
	assert_false(http_static_path("/a%00b", out, sizeof(out)));
	assert_false(http_static_path("/a\nb", out, sizeof(out)));
	assert_false(http_static_path("relative", out, sizeof(out)));
	assert_false(http_static_path("", out, sizeof(out)));
	assert_false(http_static_path("/abcdef", out, 4)); /* too long for out */
	assert_string_equal(http_content_type("index.html"), "text/html; charset=utf-8");
	assert_string_equal(http_content_type("a/b.js"), "text/javascript; charset=utf-8");
	assert_string_equal(http_content_type("openapi.json"), "application/json");
	assert_string_equal(http_content_type("x"), "application/octet-stream");
	assert_string_equal(http_content_type("a.d/x"), "application/octet-stream");
}

static void
test_cookies(void **state)
{
	char v[80];

	(void)state;
	assert_true(http_cookie_get("om_session=oms_abc", "om_session", v, sizeof(v)));
	assert_string_equal(v, "oms_abc");
	assert_true(http_cookie_get("a=1; om_session=xyz; b=2", "om_session", v, sizeof(v)));
	assert_string_equal(v, "xyz");
	assert_true(http_cookie_get("a=1;om_session=\"q\"", "om_session", v, sizeof(v)));
	assert_string_equal(v, "q");
	assert_false(http_cookie_get("xom_session=1", "om_session", v, sizeof(v)));
	assert_false(http_cookie_get("om_sessionx=1", "om_session", v, sizeof(v)));
	assert_false(http_cookie_get("om_session=", "om_session", v, sizeof(v)));
	assert_false(http_cookie_get("a=1", "om_session", v, sizeof(v)));
	assert_false(http_cookie_get(NULL, "om_session", v, sizeof(v)));
	assert_false(http_cookie_get("om_session=0123456789", "om_session", v, 5));
}

/* Submits text; returns the code and leaves the field in field. */
static int
submit(const char *text, struct om_msg *m, char *field)
{
	char err[256];
	json_error_t e;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
	int rv;

	assert_non_null(j);
	rv = http_submit_from_json(j, m, field, 64, err, sizeof(err));
	json_decref(j);
	return rv;
}

static void
test_submit(void **state)
{
	struct om_msg m;
	char field[64];

	(void)state;
	assert_int_equal(submit("{\"selector\":\"idc:bj\",\"module\":\"shell\","
	                        "\"params\":{\"cmd\":\"uptime\",\"n\":3,\"f\":true},"
	                        "\"options\":{\"timeout\":60,\"forks\":5,\"batch\":\"25%\","
	                        "\"max_fail\":10,\"check\":true,\"become_user\":\"app\","
	                        "\"retry_lost\":true}}",
	                        &m, field),
	                 0);
	assert_int_equal(m.type, OM_MSG_SUBMIT);
	assert_string_equal(m.u.submit.selector, "idc:bj");
	assert_string_equal(m.u.submit.module, "shell");
	assert_int_equal(m.u.submit.nparams, 3);
	assert_string_equal(m.u.submit.params[1].key, "n");
	assert_string_equal(m.u.submit.params[1].val, "3");
	assert_string_equal(m.u.submit.params[2].val, "true");
	assert_int_equal(m.u.submit.timeout_s, 60);
	assert_int_equal(m.u.submit.forks, 5);
	assert_int_equal(m.u.submit.batch, 25);
	assert_true(m.u.submit.batch_pct);
	assert_true(m.u.submit.has_max_fail);
	assert_int_equal(m.u.submit.max_fail, 10);
	assert_true(m.u.submit.check);
	assert_true(m.u.submit.become);
	assert_string_equal(m.u.submit.become_user, "app");
	assert_true(m.u.submit.retry_lost);
	om_msg_release(&m);

	assert_int_equal(submit("{\"module\":\"shell\"}", &m, field), OM_EINVAL);
	assert_string_equal(field, "selector");
	assert_int_equal(submit("{\"selector\":\"\",\"module\":\"shell\"}", &m, field), OM_EINVAL);
	assert_string_equal(field, "selector");
	assert_int_equal(submit("{\"selector\":\"all\",\"module\":\"../x\"}", &m, field),
	                 OM_EINVAL);
	assert_string_equal(field, "module");
	assert_int_equal(
	        submit("{\"selector\":\"all\",\"module\":\"shell\",\"params\":[]}", &m, field),
	        OM_EINVAL);
	assert_string_equal(field, "params");
	assert_int_equal(submit("{\"selector\":\"all\",\"module\":\"shell\","
	                        "\"params\":{\"cmd\":{\"a\":1}}}",
	                        &m, field),
	                 OM_EINVAL);
	assert_string_equal(field, "params.cmd");
	assert_int_equal(submit("{\"selector\":\"all\",\"module\":\"shell\","
	                        "\"params\":{\"cmd\":\"a\\u0000b\"}}",
	                        &m, field),
	                 OM_EINVAL);
	assert_string_equal(field, "params.cmd");
	assert_int_equal(submit("{\"selector\":\"all\",\"module\":\"shell\","
	                        "\"options\":{\"timeout\":\"x\"}}",
	                        &m, field),
	                 OM_EINVAL);
	assert_string_equal(field, "options.timeout");
	assert_int_equal(submit("{\"selector\":\"all\",\"module\":\"shell\","
	                        "\"options\":{\"timeout\":-1}}",
	                        &m, field),
	                 OM_EINVAL);
	assert_string_equal(field, "options.timeout");
	assert_int_equal(submit("{\"selector\":\"all\",\"module\":\"shell\","
	                        "\"options\":{\"batch\":\"101%\"}}",
	                        &m, field),
	                 OM_EINVAL);
	assert_string_equal(field, "options.batch");
	assert_int_equal(submit("{\"selector\":\"all\",\"module\":\"shell\","
	                        "\"options\":{\"check\":1}}",
	                        &m, field),
	                 OM_EINVAL);
	assert_string_equal(field, "options.check");
	assert_int_equal(submit("{\"selector\":\"all\",\"module\":\"shell\","
	                        "\"options\":{\"nope\":1}}",
	                        &m, field),
	                 OM_EINVAL);
	assert_string_equal(field, "options.nope");
	assert_int_equal(
	        submit("{\"selector\":\"all\",\"module\":\"shell\",\"extra\":1}", &m, field),
	        OM_EINVAL);
	assert_string_equal(field, "extra");
	assert_int_equal(submit("[1]", &m, field), OM_EINVAL);
}

static void
test_jobs_query(void **state)
{
	struct om_msg m;
	char field[32], err[128];

	(void)state;
	assert_int_equal(http_jobs_query("running", "alice", "3600", "10", &m, field, sizeof(field),
	                                 err, sizeof(err)),
	                 0);
	assert_int_equal(m.u.jobs_list.state, OM_JOBS_RUNNING);
	assert_string_equal(m.u.jobs_list.user, "alice");
	assert_int_equal(m.u.jobs_list.since_s, 3600);
	assert_int_equal(m.u.jobs_list.limit, 10);
	om_msg_release(&m);
	assert_int_equal(
	        http_jobs_query(NULL, NULL, NULL, NULL, &m, field, sizeof(field), err, sizeof(err)),
	        0);
	assert_int_equal(m.u.jobs_list.state, OM_JOBS_ANY);
	om_msg_release(&m);
	assert_int_equal(http_jobs_query("weird", NULL, NULL, NULL, &m, field, sizeof(field), err,
	                                 sizeof(err)),
	                 OM_EINVAL);
	assert_string_equal(field, "state");
	assert_int_equal(
	        http_jobs_query(NULL, NULL, NULL, "0", &m, field, sizeof(field), err, sizeof(err)),
	        OM_EINVAL);
	assert_string_equal(field, "limit");
	assert_int_equal(
	        http_jobs_query(NULL, NULL, "1h", NULL, &m, field, sizeof(field), err, sizeof(err)),
	        OM_EINVAL);
	assert_string_equal(field, "since");
	assert_int_equal(http_jobs_query(NULL, "a b", NULL, NULL, &m, field, sizeof(field), err,
	                                 sizeof(err)),
	                 OM_EINVAL);
	assert_string_equal(field, "user");
}

static void
test_tables(void **state)
{
	static char *cols[] = {"ID", "USER", "HOSTS", "OK", "FAILED", "FINISHED"};
	static char *cells[] = {"7", "bob", "3", "2", "1", NULL};
	static const char *const ints[] = {"ID", NULL};
	struct om_msg t = {.type = OM_MSG_TABLE};
	json_t *j, *a;

	(void)state;
	t.u.table.columns = cols;
	t.u.table.ncolumns = 6;
	t.u.table.cells = cells;
	t.u.table.ncells = 6;
	j = http_job_json(&t, 0);
	assert_int_equal(json_integer_value(json_object_get(j, "id")), 7);
	assert_int_equal(json_integer_value(json_object_get(j, "hosts")), 3);
	assert_string_equal(json_string_value(json_object_get(j, "user")), "bob");
	assert_true(json_is_null(json_object_get(j, "finished")));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "counts"), "ok")),
	                 2);
	assert_int_equal(
	        json_integer_value(json_object_get(json_object_get(j, "counts"), "failed")), 1);
	json_decref(j);
	a = http_table_json(&t, ints);
	assert_int_equal(json_array_size(a), 1);
	assert_true(json_is_integer(json_object_get(json_array_get(a, 0), "id")));
	assert_true(json_is_string(json_object_get(json_array_get(a, 0), "hosts")));
	json_decref(a);
}

static void
test_events(void **state)
{
	uint8_t bin[] = {'a', 0xff, 'b'};
	struct om_event ev = {.id = 5, .kind = OM_EV_OUTPUT, .host = "web-1", .stream = 2};
	json_t *j;

	(void)state;
	ev.data = (uint8_t *)"hi <script>\n";
	ev.len = 12;
	j = http_event_json(&ev);
	assert_string_equal(json_string_value(json_object_get(j, "kind")), "output");
	assert_string_equal(json_string_value(json_object_get(j, "stream")), "stderr");
	assert_string_equal(json_string_value(json_object_get(j, "text")), "hi <script>\n");
	assert_null(json_object_get(j, "b64"));
	json_decref(j);
	ev.data = bin;
	ev.len = 3;
	j = http_event_json(&ev);
	assert_null(json_object_get(j, "text"));
	assert_string_equal(json_string_value(json_object_get(j, "b64")), "Yf9i");
	json_decref(j);
	memset(&ev, 0, sizeof(ev));
	ev.id = 9;
	ev.kind = OM_EV_STATE;
	ev.host = "web-2";
	ev.state = OM_HS_FAILED;
	ev.exit_code = 3;
	ev.result = "{\"rc\":3}";
	j = http_event_json(&ev);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "failed");
	assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 3);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "result"), "rc")),
	                 3);
	json_decref(j);
	ev.kind = OM_EV_JOB_DONE;
	j = http_event_json(&ev);
	assert_string_equal(json_string_value(json_object_get(j, "kind")), "done");
	json_decref(j);
}

static void
test_status(void **state)
{
	(void)state;
	assert_int_equal(http_status_of(OM_EINVAL), 400);
	assert_int_equal(http_status_of(OM_EAUTH), 401);
	assert_int_equal(http_status_of(OM_EPERM), 403);
	assert_int_equal(http_status_of(OM_ENOTFOUND), 404);
	assert_int_equal(http_status_of(OM_EMSGSIZE), 413);
	assert_int_equal(http_status_of(OM_EDB), 503);
	assert_int_equal(http_status_of(OM_EIO), 500);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_routes),     cmocka_unit_test(test_static_path),
	        cmocka_unit_test(test_cookies),    cmocka_unit_test(test_submit),
	        cmocka_unit_test(test_jobs_query), cmocka_unit_test(test_tables),
	        cmocka_unit_test(test_events),     cmocka_unit_test(test_status),
	};

	return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
