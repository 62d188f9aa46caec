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
	/* issue 6, the console's second phase */
	rt = match("GET", "/api/v1/hosts/web-1", &id, name, &st);
	assert_string_equal(http_route_name(rt), "hosts.show");
	assert_string_equal(name, "web-1");
	assert_int_equal(http_route_perm(rt), WEB_READ);
	rt = match("POST", "/api/v1/hosts", &id, name, &st);
	assert_string_equal(http_route_name(rt), "hosts.add");
	assert_int_equal(http_route_perm(rt), WEB_ADMIN);
	/* "import" is a host name too: the POST route, not a 405 */
	rt = match("POST", "/api/v1/hosts/import", &id, name, &st);
	assert_non_null(rt);
	assert_string_equal(http_route_name(rt), "hosts.import");
	assert_int_equal(http_route_perm(rt), WEB_ADMIN);
	rt = match("GET", "/api/v1/hosts/import", &id, name, &st);
	assert_string_equal(http_route_name(rt), "hosts.show");
	assert_null(match("POST", "/api/v1/hosts/web-1", &id, name, &st));
	assert_int_equal(st, 405);
	rt = match("POST", "/api/v1/users", &id, name, &st);
	assert_string_equal(http_route_name(rt), "users.add");
	assert_int_equal(http_route_perm(rt), WEB_ADMIN);
	rt = match("POST", "/api/v1/users/alice/password", &id, name, &st);
	assert_string_equal(http_route_name(rt), "users.password");
	assert_string_equal(name, "alice");
	assert_int_equal(http_route_perm(rt), WEB_USER); /* self or admin: the core decides */
	rt = match("POST", "/api/v1/users/alice/disable", &id, name, &st);
	assert_string_equal(http_route_name(rt), "users.disable");
	assert_int_equal(http_route_perm(rt), WEB_ADMIN);
	rt = match("POST", "/api/v1/users/alice/enable", &id, name, &st);
	assert_string_equal(http_route_name(rt), "users.enable");
	assert_int_equal(http_route_perm(rt), WEB_ADMIN);
	assert_null(match("GET", "/api/v1/users/alice/enable", &id, name, &st));
	assert_int_equal(st, 405);
	assert_null(match("POST", "/api/v1/users/../password", &id, name, &st));
	assert_int_equal(st, 404);
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

static json_t *
parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);

	assert_non_null(j);
	return j;
}

/* POST /hosts: returns the code, the field in field; *h released unless 0. */
static int
host(const char *text, struct om_host *h, char *field)
{
	char err[256];
	json_t *j = parse(text);
	int rv = http_host_from_json(j, h, field, 64, err, sizeof(err));

	json_decref(j);
	if (rv != 0)
		assert_true(err[0] != '\0');
	return rv;
}

static void
test_host_body(void **state)
{
	struct om_host h;
	char field[64];

	(void)state;
	assert_int_equal(
	        host("{\"name\":\"web-9\",\"addr\":\"10.0.0.9\",\"idc\":\"bj\"}", &h, field), 0);
	assert_string_equal(h.name, "web-9");
	assert_string_equal(h.addr, "10.0.0.9");
	assert_string_equal(h.idc, "bj");
	assert_int_equal(h.port, 22);
	assert_null(h.user);
	assert_int_equal(h.ngroups, 0);
	om_host_release(&h);
	assert_int_equal(host("{\"name\":\"db-1\",\"addr\":\"db1.example.com\",\"idc\":\"sh\","
	                      "\"port\":2222,\"user\":\"ops\",\"groups\":[\"db\",\"prod\"]}",
	                      &h, field),
	                 0);
	assert_int_equal(h.port, 2222);
	assert_string_equal(h.user, "ops");
	assert_int_equal(h.ngroups, 2);
	assert_string_equal(h.groups[1], "prod");
	om_host_release(&h);
	assert_int_equal(host("{\"name\":\"v6\",\"addr\":\"fe80::1%eth0\",\"idc\":\"bj\","
	                      "\"user\":null}",
	                      &h, field),
	                 0);
	om_host_release(&h);

	/* every refusal names its field */
	static const struct {
		const char *body, *field;
	} bad[] = {
	        {"{\"addr\":\"a\",\"idc\":\"bj\"}", "name"},
	        {"{\"name\":\"-x\",\"addr\":\"a\",\"idc\":\"bj\"}", "name"},
	        {"{\"name\":\"a b\",\"addr\":\"a\",\"idc\":\"bj\"}", "name"},
	        {"{\"name\":\"w\",\"idc\":\"bj\"}", "addr"},
	        {"{\"name\":\"w\",\"addr\":\"-oProxyCommand=x\",\"idc\":\"bj\"}", "addr"},
	        {"{\"name\":\"w\",\"addr\":\"a b\",\"idc\":\"bj\"}", "addr"},
	        {"{\"name\":\"w\",\"addr\":\"\",\"idc\":\"bj\"}", "addr"},
	        {"{\"name\":\"w\",\"addr\":\"a\"}", "idc"},
	        {"{\"name\":\"w\",\"addr\":\"a\",\"idc\":\"b/j\"}", "idc"},
	        {"{\"name\":\"w\",\"addr\":\"a\",\"idc\":\"bj\",\"port\":0}", "port"},
	        {"{\"name\":\"w\",\"addr\":\"a\",\"idc\":\"bj\",\"port\":65536}", "port"},
	        {"{\"name\":\"w\",\"addr\":\"a\",\"idc\":\"bj\",\"port\":\"22\"}", "port"},
	        {"{\"name\":\"w\",\"addr\":\"a\",\"idc\":\"bj\",\"user\":\"-l\"}", "user"},
	        {"{\"name\":\"w\",\"addr\":\"a\",\"idc\":\"bj\",\"user\":7}", "user"},
	        {"{\"name\":\"w\",\"addr\":\"a\",\"idc\":\"bj\",\"groups\":\"db\"}", "groups"},
	        {"{\"name\":\"w\",\"addr\":\"a\",\"idc\":\"bj\",\"groups\":[\"a b\"]}", "groups"},
	        {"{\"name\":\"w\",\"addr\":\"a\",\"idc\":\"bj\",\"groups\":[1]}", "groups"},
	        {"{\"name\":\"w\",\"addr\":\"a\",\"idc\":\"bj\",\"rack\":1}", "rack"},
	        {"[]", ""},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (host(bad[i].body, &h, field) != OM_EINVAL)
			fail_msg("%s: accepted", bad[i].body);
		if (strcmp(field, bad[i].field) != 0)
			fail_msg("%s: field '%s', want '%s'", bad[i].body, field, bad[i].field);
		assert_null(h.name);
	}
	/* more groups than a host takes */
	{
		char body[4096];
		size_t o = (size_t)snprintf(
		        body, sizeof(body),
		        "{\"name\":\"w\",\"addr\":\"a\",\"idc\":\"bj\",\"groups\":[");
		for (int i = 0; i <= OM_MAX_GROUPS; i++)
			o += (size_t)snprintf(body + o, sizeof(body) - o, "%s\"g%d\"", i ? "," : "",
			                      i);
		snprintf(body + o, sizeof(body) - o, "]}");
		assert_int_equal(host(body, &h, field), OM_EINVAL);
		assert_string_equal(field, "groups");
	}
}

static int
user(const char *text, struct om_msg *m, char *field, char *err)
{
	json_t *j = parse(text);
	int rv = http_user_from_json(j, m, field, 64, err, 256);

	json_decref(j);
	return rv;
}

static void
test_user_body(void **state)
{
	struct om_msg m;
	char field[64], err[256];

	(void)state;
	assert_int_equal(
	        user("{\"name\":\"carol\",\"role\":\"operator\",\"password\":\"pw-12345678\","
	             "\"idcs\":[\"bj\"],\"groups\":[\"web\",\"db\"],\"modules\":[]}",
	             &m, field, err),
	        0);
	assert_int_equal(m.type, OM_MSG_USER_ADD);
	assert_string_equal(m.u.user.name, "carol");
	assert_string_equal(m.u.user.role, "operator");
	assert_string_equal(m.u.user.password, "pw-12345678");
	assert_int_equal(m.u.user.nidcs, 1);
	assert_int_equal(m.u.user.ngroups, 2);
	assert_string_equal(m.u.user.groups[1], "db");
	assert_int_equal(m.u.user.nmodules, 0);
	http_user_release(&m);
	assert_int_equal(m.type, OM_MSG_NONE);

	static const struct {
		const char *body, *field;
	} bad[] = {
	        {"{\"role\":\"admin\",\"password\":\"secret-pw-1\"}", "name"},
	        {"{\"name\":\"a/b\",\"role\":\"admin\",\"password\":\"secret-pw-1\"}", "name"},
	        {"{\"name\":\"d\",\"role\":\"root\",\"password\":\"secret-pw-1\"}", "role"},
	        {"{\"name\":\"d\",\"password\":\"secret-pw-1\"}", "role"},
	        {"{\"name\":\"d\",\"role\":\"viewer\"}", "password"},
	        {"{\"name\":\"d\",\"role\":\"viewer\",\"password\":\"short\"}", "password"},
	        {"{\"name\":\"d\",\"role\":\"viewer\",\"password\":12345678}", "password"},
	        {"{\"name\":\"d\",\"role\":\"viewer\",\"password\":\"secret\\u0000pw-1\"}",
	         "password"},
	        {"{\"name\":\"d\",\"role\":\"viewer\",\"password\":\"secret-pw-1\",\"idcs\":"
	         "\"bj\"}",
	         "idcs"},
	        {"{\"name\":\"d\",\"role\":\"viewer\",\"password\":\"secret-pw-1\","
	         "\"groups\":[\"a b\"]}",
	         "groups"},
	        {"{\"name\":\"d\",\"role\":\"viewer\",\"password\":\"secret-pw-1\",\"modules\":[1]"
	         "}",
	         "modules"},
	        {"{\"name\":\"d\",\"role\":\"viewer\",\"password\":\"secret-pw-1\",\"admin\":true}",
	         "admin"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (user(bad[i].body, &m, field, err) != OM_EINVAL)
			fail_msg("%s: accepted", bad[i].body);
		if (strcmp(field, bad[i].field) != 0)
			fail_msg("%s: field '%s', want '%s'", bad[i].body, field, bad[i].field);
		/* a refusal never quotes a password */
		assert_null(strstr(err, "secret"));
		assert_null(strstr(err, "short"));
		assert_null(m.u.user.name);
	}
}

static void
test_audit_query(void **state)
{
	struct om_msg m;
	char field[32], err[128];

	(void)state;
	assert_int_equal(http_audit_query("50", NULL, "900", "desc", &m, field, sizeof(field), err,
	                                  sizeof(err)),
	                 0);
	assert_int_equal(m.type, OM_MSG_AUDIT_LIST);
	assert_int_equal(m.u.audit.limit, 50);
	assert_true(m.u.audit.desc);
	assert_true(m.u.audit.before_id == 900);
	assert_true(m.u.audit.after_id == 0);
	assert_int_equal(http_audit_query(NULL, "7", NULL, "asc", &m, field, sizeof(field), err,
	                                  sizeof(err)),
	                 0);
	assert_false(m.u.audit.desc);
	assert_true(m.u.audit.after_id == 7);
	assert_int_equal(http_audit_query(NULL, NULL, NULL, NULL, &m, field, sizeof(field), err,
	                                  sizeof(err)),
	                 0);
	assert_false(m.u.audit.desc);
	assert_int_equal(m.u.audit.limit, 0);
	assert_int_equal(http_audit_query(NULL, NULL, NULL, "newest", &m, field, sizeof(field), err,
	                                  sizeof(err)),
	                 OM_EINVAL);
	assert_string_equal(field, "order");
	assert_int_equal(http_audit_query(NULL, NULL, "-1", "desc", &m, field, sizeof(field), err,
	                                  sizeof(err)),
	                 OM_EINVAL);
	assert_string_equal(field, "before");
	assert_int_equal(
	        http_audit_query(NULL, "x", NULL, NULL, &m, field, sizeof(field), err, sizeof(err)),
	        OM_EINVAL);
	assert_string_equal(field, "after");
	assert_int_equal(http_audit_query("1001", NULL, NULL, NULL, &m, field, sizeof(field), err,
	                                  sizeof(err)),
	                 OM_EINVAL);
	assert_string_equal(field, "limit");
	assert_int_equal(http_audit_query(NULL, NULL, "99999999999999999999", NULL, &m, field,
	                                  sizeof(field), err, sizeof(err)),
	                 OM_EINVAL);
	assert_string_equal(field, "before");
}

/* A (FIELD, VALUE) TABLE as HOST_SHOW answers, and the host object of it. */
static void
test_host_show(void **state)
{
	static char *cols[] = {"FIELD", "VALUE"};
	static char *cells[] = {"name",     "web-1",
	                        "address",  "10.0.0.1",
	                        "port",     "2222",
	                        "user",     NULL,
	                        "idc",      "bj",
	                        "groups",   "web,prod",
	                        "facts_at", "2024-05-01T10:00:00Z",
	                        "os",       "{\"id\":\"debian\"}",
	                        "cpus",     "8",
	                        "big",      "[1,2,...",
	                        NULL,       NULL};
	static char *bare[] = {"name", "db-1", "address", "db-1",   "port", "22",       "user",
	                       "root", "idc",  "sh",      "groups", NULL,   "facts_at", NULL};
	struct om_msg t = {.type = OM_MSG_TABLE};
	json_t *o, *f;

	(void)state;
	t.u.table.columns = cols;
	t.u.table.ncolumns = 2;
	t.u.table.cells = cells;
	t.u.table.ncells = sizeof(cells) / sizeof(cells[0]);
	o = http_host_show_json(&t);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "name")), "web-1");
	assert_string_equal(json_string_value(json_object_get(o, "addr")), "10.0.0.1");
	assert_null(json_object_get(o, "address"));
	assert_int_equal(json_integer_value(json_object_get(o, "port")), 2222);
	assert_true(json_is_null(json_object_get(o, "user")));
	assert_int_equal(json_array_size(json_object_get(o, "groups")), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(o, "groups"), 1)),
	                    "prod");
	assert_int_equal(json_integer_value(json_object_get(o, "facts_at_ms")), 1714557600000LL);
	f = json_object_get(o, "facts");
	assert_true(json_is_object(f));
	assert_string_equal(json_string_value(json_object_get(json_object_get(f, "os"), "id")),
	                    "debian");
	assert_int_equal(json_integer_value(json_object_get(f, "cpus")), 8);
	/* a value cut to fit a cell stays text */
	assert_string_equal(json_string_value(json_object_get(f, "big")), "[1,2,...");
	assert_int_equal(json_object_size(f), 3);
	json_decref(o);

	/* no facts gathered yet: null, never an empty object */
	t.u.table.cells = bare;
	t.u.table.ncells = sizeof(bare) / sizeof(bare[0]);
	o = http_host_show_json(&t);
	assert_true(json_is_null(json_object_get(o, "facts")));
	assert_true(json_is_null(json_object_get(o, "facts_at_ms")));
	assert_int_equal(json_array_size(json_object_get(o, "groups")), 0);
	assert_string_equal(json_string_value(json_object_get(o, "user")), "root");
	json_decref(o);
	t.u.table.ncolumns = 1;
	assert_null(http_host_show_json(&t));
}

static void
test_job_show_columns(void **state)
{
	static char *cols[] = {"ID",      "STATE", "HOSTS",  "QUEUED",
	                       "RUNNING", "OK",    "PARAMS", "OPTIONS"};
	static char *cells[] = {"12",
	                        "running",
	                        "4",
	                        "1",
	                        "2",
	                        "1",
	                        "{\"cmd\":\"uptime\",\"token\":\"********\",\"src\":null}",
	                        "{\"timeout\":60,\"forks\":0,\"batch\":\"25%\",\"max_fail\":null,"
	                        "\"check\":false,\"become\":false,\"become_user\":null,"
	                        "\"retry_lost\":true}"};
	struct om_msg t = {.type = OM_MSG_TABLE};
	json_t *j, *p, *c;

	(void)state;
	t.u.table.columns = cols;
	t.u.table.ncolumns = 8;
	t.u.table.cells = cells;
	t.u.table.ncells = 8;
	j = http_job_json(&t, 0);
	p = json_object_get(j, "params");
	assert_string_equal(json_string_value(json_object_get(p, "cmd")), "uptime");
	assert_string_equal(json_string_value(json_object_get(p, "token")), "********");
	assert_true(json_is_null(json_object_get(p, "src")));
	assert_string_equal(
	        json_string_value(json_object_get(json_object_get(j, "options"), "batch")), "25%");
	assert_true(json_is_true(json_object_get(json_object_get(j, "options"), "retry_lost")));
	json_decref(j);
	/* the counts event: id, state, hosts, counts */
	c = http_counts_json(&t);
	assert_int_equal(json_object_size(c), 4);
	assert_int_equal(json_integer_value(json_object_get(c, "id")), 12);
	assert_string_equal(json_string_value(json_object_get(c, "state")), "running");
	assert_int_equal(json_integer_value(json_object_get(c, "hosts")), 4);
	assert_int_equal(
	        json_integer_value(json_object_get(json_object_get(c, "counts"), "running")), 2);
	json_decref(c);
	/* a cell that is no object: null */
	cells[6] = "[1]";
	cells[7] = NULL;
	j = http_job_json(&t, 0);
	assert_true(json_is_null(json_object_get(j, "params")));
	assert_true(json_is_null(json_object_get(j, "options")));
	json_decref(j);
	t.type = OM_MSG_ERROR;
	assert_null(http_counts_json(&t));
}

static void
test_lists(void **state)
{
	static const char *const keys[] = {"scopes", "idcs", "groups", NULL};
	json_t *o = json_pack("{s:s, s:n, s:s}", "scopes", "read,run,admin", "idcs", "groups", "");

	(void)state;
	http_lists_as_arrays(o, keys);
	assert_int_equal(json_array_size(json_object_get(o, "scopes")), 3);
	assert_string_equal(json_string_value(json_array_get(json_object_get(o, "scopes"), 2)),
	                    "admin");
	assert_true(json_is_array(json_object_get(o, "idcs")));
	assert_int_equal(json_array_size(json_object_get(o, "idcs")), 0);
	assert_int_equal(json_array_size(json_object_get(o, "groups")), 0);
	json_decref(o);
}

static void
test_error_field(void **state)
{
	struct om_msg e = {.type = OM_MSG_ERROR};
	char field[OM_MAX_FIELD + 1];

	(void)state;
	/* the core's field first */
	e.u.error.code = OM_EINVAL;
	e.u.error.text = "selector is fine but parameter 'x' is not";
	e.u.error.field = "params.mode";
	http_error_field(&e, field, sizeof(field));
	assert_string_equal(field, "params.mode");
	/* any status: a taken name is 409 */
	e.u.error.code = OM_EEXIST;
	e.u.error.field = "name";
	http_error_field(&e, field, sizeof(field));
	assert_string_equal(field, "name");
	/* an older master: the sentence, for a 400 only */
	e.u.error.field = NULL;
	e.u.error.code = OM_EINVAL;
	e.u.error.text = "parameter 'cmd': missing";
	http_error_field(&e, field, sizeof(field));
	assert_string_equal(field, "params.cmd");
	e.u.error.text = "bad selector 'x': unexpected end";
	http_error_field(&e, field, sizeof(field));
	assert_string_equal(field, "selector");
	e.u.error.code = OM_EPERM;
	http_error_field(&e, field, sizeof(field));
	assert_string_equal(field, "");
	e.u.error.code = OM_EINVAL;
	e.u.error.text = NULL;
	http_error_field(&e, field, sizeof(field));
	assert_string_equal(field, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_routes),           cmocka_unit_test(test_static_path),
	        cmocka_unit_test(test_cookies),          cmocka_unit_test(test_submit),
	        cmocka_unit_test(test_jobs_query),       cmocka_unit_test(test_tables),
	        cmocka_unit_test(test_events),           cmocka_unit_test(test_status),
	        cmocka_unit_test(test_host_body),        cmocka_unit_test(test_user_body),
	        cmocka_unit_test(test_audit_query),      cmocka_unit_test(test_host_show),
	        cmocka_unit_test(test_job_show_columns), cmocka_unit_test(test_lists),
	        cmocka_unit_test(test_error_field),
	};

	return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
