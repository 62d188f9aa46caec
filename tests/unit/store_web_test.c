/*
 * Web console sessions in the store (master/store_auth.c, migration 8):
 * only hashes stored, the CSRF token derived from the secret, idle and
 * absolute expiry, disabled users, logout, dropping a user's sessions.
 * Needs OM_TEST_PGCONN (see pgfx.h); skipped without it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "store.h"

#include "pgfx.h"

static int
group_setup(void **state)
{
	return pgfx_setup(state, "om_store_web_test");
}

static void
exec_ok(struct fx *f, const char *sql)
{
	PGresult *r = PQexec(f->db, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
		print_error("%s: %s\n", sql, PQerrorMessage(f->db));
		PQclear(r);
		fail();
	}
	PQclear(r);
}

static uint64_t
add_user(struct fx *f, const char *name, int role)
{
	struct om_user u = {0};
	uint64_t id = 0;

	u.name = (char *)name;
	u.role = role;
	assert_int_equal(om_store_user_add(f->st, &u, "password-123", &id), 0);
	return id;
}

static void
test_session(void **state)
{
	struct fx *f = fx_of(state);
	struct om_user u;
	char *secret = NULL, *csrf = NULL, *csrf2 = NULL;
	uint64_t uid, sid = 0;
	int64_t exp = 0;

	uid = add_user(f, "wuser", OM_ROLE_OPERATOR);
	assert_int_equal(om_store_web_session_create(f->st, uid, "10.1.2.3:555", 3600, 43200,
	                                             &secret, &csrf, &exp),
	                 0);
	assert_int_equal(strlen(secret), 68);
	assert_memory_equal(secret, "oms_", 4);
	assert_memory_equal(csrf, "omc_", 4);
	assert_true(exp > 0);
	/* neither secret is stored: only their hashes */
	{
		const char *v[2] = {secret + 4, csrf + 4};
		assert_int_equal(
		        q_int(f,
		              "SELECT count(*) FROM web_sessions WHERE encode(hash, 'hex') = $1"
		              " OR encode(csrf_hash, 'hex') = $2 OR source <> '10.1.2.3:555'",
		              2, v),
		        0);
	}
	/* a read: no CSRF needed; the token comes back derived */
	assert_int_equal(om_store_web_session_check(f->st, secret, NULL, &u, &sid, &csrf2), 0);
	assert_string_equal(u.name, "wuser");
	assert_int_equal(u.role, OM_ROLE_OPERATOR);
	assert_true(sid > 0);
	assert_string_equal(csrf2, csrf);
	om_user_release(&u);
	om_free(csrf2);
	/* a write: the CSRF token must match */
	assert_int_equal(om_store_web_session_check(f->st, secret, csrf, &u, NULL, NULL), 0);
	om_user_release(&u);
	assert_int_equal(om_store_web_session_check(f->st, secret, "", &u, NULL, NULL), OM_EPERM);
	assert_int_equal(om_store_web_session_check(f->st, secret, "omc_00", &u, NULL, NULL),
	                 OM_EPERM);
	assert_int_equal(om_store_web_session_check(f->st, "oms_nope", NULL, &u, NULL, NULL),
	                 OM_EAUTH);
	/* a disabled user's session is refused, and works again when enabled */
	assert_int_equal(om_store_user_set_disabled(f->st, "wuser", true), 0);
	assert_int_equal(om_store_web_session_check(f->st, secret, NULL, &u, NULL, NULL), OM_EAUTH);
	assert_int_equal(om_store_user_set_disabled(f->st, "wuser", false), 0);
	assert_int_equal(om_store_web_session_check(f->st, secret, NULL, &u, NULL, NULL), 0);
	om_user_release(&u);
	/* idle: last seen long ago */
	exec_ok(f, "UPDATE web_sessions SET last_seen_at = now() - interval '2 hours'");
	assert_int_equal(om_store_web_session_check(f->st, secret, NULL, &u, NULL, NULL), OM_EAUTH);
	exec_ok(f, "UPDATE web_sessions SET last_seen_at = now()");
	assert_int_equal(om_store_web_session_check(f->st, secret, NULL, &u, NULL, NULL), 0);
	om_user_release(&u);
	/* absolute */
	exec_ok(f, "UPDATE web_sessions SET expires_at = now() - interval '1 second'");
	assert_int_equal(om_store_web_session_check(f->st, secret, NULL, &u, NULL, NULL), OM_EAUTH);
	{
		uint64_t n = 0;
		assert_int_equal(om_store_web_sessions_expire(f->st, &n), 0);
		assert_int_equal(n, 1);
	}
	om_free(secret);
	om_free(csrf);
}

static void
test_logout_and_drop(void **state)
{
	struct fx *f = fx_of(state);
	struct om_user u;
	char *s1, *c1, *s2, *c2;
	uint64_t uid;

	uid = add_user(f, "wuser2", OM_ROLE_VIEWER);
	assert_int_equal(om_store_web_session_create(f->st, uid, "x", 60, 60, &s1, &c1, NULL), 0);
	assert_int_equal(om_store_web_session_create(f->st, uid, "y", 60, 60, &s2, &c2, NULL), 0);
	assert_string_not_equal(s1, s2);
	assert_string_not_equal(c1, c2);
	assert_int_equal(om_store_web_session_delete(f->st, s1), 0);
	assert_int_equal(om_store_web_session_delete(f->st, s1), OM_ENOTFOUND);
	assert_int_equal(om_store_web_session_check(f->st, s1, NULL, &u, NULL, NULL), OM_EAUTH);
	assert_int_equal(om_store_web_session_check(f->st, s2, NULL, &u, NULL, NULL), 0);
	om_user_release(&u);
	assert_int_equal(om_store_web_sessions_drop_user(f->st, "wuser2"), 0);
	assert_int_equal(om_store_web_session_check(f->st, s2, NULL, &u, NULL, NULL), OM_EAUTH);
	om_free(s1);
	om_free(c1);
	om_free(s2);
	om_free(c2);
	/* no idle limit: refused */
	assert_int_equal(om_store_web_session_create(f->st, uid, "z", 0, 60, &s1, &c1, NULL),
	                 OM_EINVAL);
	assert_null(s1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_session),
	        cmocka_unit_test(test_logout_and_drop),
	};

	return cmocka_run_group_tests_name("store_web", tests, group_setup, group_teardown);
}
