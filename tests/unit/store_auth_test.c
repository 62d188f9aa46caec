/*
 * master/store_auth.c (trust: keys, enrollment, users, tokens, audit)
 * against a real PostgreSQL.
 *
 * OM_TEST_PGCONN is a conninfo to an admin database; the group setup creates
 * om_store_auth_test_<pid> there, every case works in it, the teardown drops
 * it.  Without OM_TEST_PGCONN every case is skipped.  The tamper cases need
 * the test role to be a superuser (as in the throwaway cluster).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "om/base.h"
#include "om/msg.h"
#include "store.h"

#include "pgfx.h"

static int
group_setup(void **state)
{
	return pgfx_setup(state, "om_store_auth_test");
}

/* A statement on the test database: 0, or -1 with the error kept in sqlstate. */
static int
q_exec(struct fx *f, const char *sql, int n, const char *const *vals, char sqlstate[6])
{
	PGresult *r = PQexecParams(f->db, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType s = PQresultStatus(r);
	const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	int rv = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK ? 0 : -1;

	if (sqlstate)
		snprintf(sqlstate, 6, "%s", code ? code : "");
	PQclear(r);
	return rv;
}

static void
q_ok(struct fx *f, const char *sql, int n, const char *const *vals)
{
	if (q_exec(f, sql, n, vals, NULL) != 0) {
		print_error("%s: %s\n", sql, PQerrorMessage(f->db));
		fail();
	}
}

static bool
is_hex(const char *s, size_t n)
{
	size_t i;

	if (strlen(s) != n)
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static double
ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static bool
is_superuser(struct fx *f)
{
	return q_int(f, "SELECT rolsuper::int FROM pg_roles WHERE rolname = current_user", 0,
	             NULL) == 1;
}

/* --- cases ------------------------------------------------------------------------- */

static void
test_schema(void **state)
{
	struct fx *f = fx_of(state);

	assert_true(om_store_schema_version(f->st) >= 2);
	assert_int_equal(q_int(f,
	                       "SELECT count(*) FROM information_schema.tables WHERE table_name"
	                       " IN ('worker_keys','enroll_tokens','users','api_tokens','audit')",
	                       0, NULL),
	                 5);
	/* the audit id has no sequence behind it */
	assert_int_equal(q_int(f,
	                       "SELECT count(*) FROM pg_sequences WHERE sequencename LIKE 'audit%'",
	                       0, NULL),
	                 0);
}

static void
test_role_names(void **state)
{
	int r;

	(void)state;
	for (r = OM_ROLE_VIEWER; r <= OM_ROLE_ADMIN; r++)
		assert_int_equal(om_role_parse(om_role_name(r)), r);
	assert_string_equal(om_role_name(OM_ROLE_ADMIN), "admin");
	assert_string_equal(om_role_name(OM_ROLE_OPERATOR), "operator");
	assert_string_equal(om_role_name(OM_ROLE_VIEWER), "viewer");
	assert_string_equal(om_role_name(0), "unknown");
	assert_string_equal(om_role_name(4), "unknown");
	assert_int_equal(om_role_parse("root"), -1);
	assert_int_equal(om_role_parse("Admin"), -1);
	assert_int_equal(om_role_parse(""), -1);
	assert_int_equal(om_role_parse(NULL), -1);
}

static void
test_password_hash(void **state)
{
	/* made with Python's hashlib.scrypt: the format is not only our own */
	static const char vec1[] =
	        "scrypt$32768$8$1$4e61436c4e61436c4e61436c4e61436c"
	        "$2fbb25f8bcea29f22b4ddb5a8e9a91765aaaf25b775a4794318066efb9639913";
	static const char vec2[] =
	        "scrypt$1024$4$2$4e61436c4e61436c4e61436c4e61436c"
	        "$c500668115fcd85e4f5a02d87b10137955d1ed8b6f9d35429936c853bc914214";
	static const char *const malformed[] = {
	        "",
	        "scrypt",
	        "bcrypt$32768$8$1$4e61436c4e61436c4e61436c4e61436c$"
	        "2fbb25f8bcea29f22b4ddb5a8e9a9176",
	        "scrypt$32768$8$1$4e61436c4e61436c4e61436c4e61436c",
	        "scrypt$32768$8$4e61436c4e61436c4e61436c4e61436c$2fbb25f8bcea29f22b4ddb5a8e9a9176",
	        "scrypt$32767$8$1$4e61436c4e61436c4e61436c4e61436c$"
	        "2fbb25f8bcea29f22b4ddb5a8e9a9176",
	        "scrypt$2097152$8$1$4e61436c4e61436c4e61436c4e61436c$"
	        "2fbb25f8bcea29f22b4ddb5a8e9a9176",
	        "scrypt$1048576$8$1$4e61436c4e61436c4e61436c4e61436c$"
	        "2fbb25f8bcea29f22b4ddb5a8e9a9176",
	        "scrypt$32768$17$1$4e61436c4e61436c4e61436c4e61436c$"
	        "2fbb25f8bcea29f22b4ddb5a8e9a9176",
	        "scrypt$32768$8$5$4e61436c4e61436c4e61436c4e61436c$"
	        "2fbb25f8bcea29f22b4ddb5a8e9a9176",
	        "scrypt$32768$0$1$4e61436c4e61436c4e61436c4e61436c$"
	        "2fbb25f8bcea29f22b4ddb5a8e9a9176",
	        "scrypt$032768$8$1$4e61436c4e61436c4e61436c4e61436c$"
	        "2fbb25f8bcea29f22b4ddb5a8e9a9176",
	        "scrypt$-32768$8$1$4e61436c4e61436c4e61436c4e61436c$"
	        "2fbb25f8bcea29f22b4ddb5a8e9a9176",
	        "scrypt$32768$8$1$4e61436c4e61436c4e61436c4e61436$2fbb25f8bcea29f22b4ddb5a8e9a9176",
	        "scrypt$32768$8$1$4e61436c4e61436c4e61436c4e61436c$2fbb25f8bcea29f22b4ddb5a8e9a91",
	        "scrypt$32768$8$1$4e61436c4e61436c4e61436c4e61436c$"
	        "2fbb25f8bcea29f22b4ddb5a8e9a917g",
	        "scrypt$32768$8$1$$2fbb25f8bcea29f22b4ddb5a8e9a9176",
	        "scrypt$32768$8$1$4e61436c4e61436c4e61436c4e61436c$"
	        "2fbb25f8bcea29f22b4ddb5a8e9a9176$",
	};
	char *h1 = NULL, *h2 = NULL, tampered[sizeof(vec1)];
	char pw256[OM_MAX_SECRET + 2];
	const char *p;
	size_t i;

	(void)state;
	assert_int_equal(om_password_hash("correct horse", &h1), 0);
	assert_non_null(h1);
	assert_int_equal(strncmp(h1, "scrypt$32768$8$1$", 17), 0);
	p = h1 + 17;
	assert_int_equal(strchr(p, '$') - p, 32);
	{
		char salt[33];
		memcpy(salt, p, 32);
		salt[32] = '\0';
		assert_true(is_hex(salt, 32));
	}
	assert_true(is_hex(p + 33, 64));
	assert_int_equal(om_password_verify("correct horse", h1), 0);
	assert_int_equal(om_password_verify("correct horsE", h1), OM_EAUTH);
	assert_int_equal(om_password_verify("", h1), OM_EAUTH);
	/* a fresh salt each time */
	assert_int_equal(om_password_hash("correct horse", &h2), 0);
	assert_string_not_equal(h1, h2);
	assert_int_equal(om_password_verify("correct horse", h2), 0);

	assert_int_equal(om_password_verify("correct horse battery staple", vec1), 0);
	assert_int_equal(om_password_verify("correct horse battery staplE", vec1), OM_EAUTH);
	assert_int_equal(om_password_verify("correct horse battery staple", vec2), 0);

	/* one digit of the hash, or of the salt, changed */
	memcpy(tampered, vec1, sizeof(vec1));
	tampered[sizeof(vec1) - 2] = tampered[sizeof(vec1) - 2] == '3' ? '4' : '3';
	assert_int_equal(om_password_verify("correct horse battery staple", tampered), OM_EAUTH);
	memcpy(tampered, vec1, sizeof(vec1));
	tampered[17] = '5';
	assert_int_equal(om_password_verify("correct horse battery staple", tampered), OM_EAUTH);
	/* other parameters than the hash was made with */
	memcpy(tampered, vec1, sizeof(vec1));
	memcpy(tampered + 7, "16384", 5);
	assert_int_equal(om_password_verify("correct horse battery staple", tampered), OM_EAUTH);
	for (i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		int rv = om_password_verify("correct horse battery staple", malformed[i]);
		if (rv != OM_EINVAL)
			print_error("malformed[%zu] gave %d\n", i, rv);
		assert_int_equal(rv, OM_EINVAL);
	}

	/* 8..OM_MAX_SECRET bytes */
	om_free(h2);
	h2 = NULL;
	assert_int_equal(om_password_hash("short12", &h2), OM_EINVAL);
	assert_null(h2);
	assert_int_equal(om_password_hash(NULL, &h2), OM_EINVAL);
	memset(pw256, 'p', sizeof(pw256));
	pw256[OM_MAX_SECRET + 1] = '\0';
	assert_int_equal(om_password_hash(pw256, &h2), OM_EINVAL);
	assert_int_equal(om_password_verify(pw256, h1), OM_EAUTH);
	pw256[OM_MAX_SECRET] = '\0';
	assert_int_equal(om_password_hash(pw256, &h2), 0);
	assert_int_equal(om_password_verify(pw256, h2), 0);
	om_free(h1);
	om_free(h2);
}

static void
test_keys(void **state)
{
	struct fx *f = fx_of(state);
	struct om_key_info k, *ks = NULL;
	uint64_t a = 0, b = 0, c = 0, x = 0;
	size_t n = 0, i;

	assert_int_equal(om_store_key_add_pending(f->st, "kw1", "dc1", "fp-a", &a), 0);
	assert_true(a > 0);
	assert_int_equal(om_store_key_add_pending(f->st, "kw1-other", "dc9", "fp-a", &x),
	                 OM_EEXIST);
	assert_int_equal(om_store_key_add_pending(f->st, NULL, "dc1", "fp-z", &x), OM_EINVAL);
	assert_int_equal(om_store_key_add_pending(f->st, "kw\xff", "dc1", "fp-z", &x), OM_EINVAL);
	assert_int_equal(om_store_key_find(f->st, "fp-a", &k), 0);
	assert_int_equal(k.id, a);
	assert_string_equal(k.name, "kw1");
	assert_string_equal(k.idc, "dc1");
	assert_string_equal(k.fingerprint, "fp-a");
	assert_int_equal(k.state, OM_KEY_PENDING);
	assert_true(k.first_seen_ms > 1600000000000LL);
	assert_true(k.last_seen_ms >= k.first_seen_ms);
	om_key_info_release(&k);
	assert_int_equal(om_store_key_find(f->st, "fp-nope", &k), OM_ENOTFOUND);
	assert_null(k.name);
	assert_int_equal(om_store_key_touch(f->st, a), 0);
	assert_int_equal(om_store_key_touch(f->st, 987654321), OM_ENOTFOUND);

	/* accepting needs the fingerprint the admin saw */
	assert_int_equal(om_store_key_set_state(f->st, a, OM_KEY_ACCEPTED, "fp-b", &k), OM_EPERM);
	assert_null(k.name);
	assert_true(strlen(om_store_errmsg(f->st)) > 0);
	assert_int_equal(om_store_key_find(f->st, "fp-a", &k), 0);
	assert_int_equal(k.state, OM_KEY_PENDING);
	om_key_info_release(&k);
	assert_int_equal(om_store_key_set_state(f->st, a, OM_KEY_ACCEPTED, "fp-a", &k), 0);
	assert_int_equal(k.id, a);
	assert_int_equal(k.state, OM_KEY_ACCEPTED);
	om_key_info_release(&k);
	/* again: a no-op */
	assert_int_equal(om_store_key_set_state(f->st, a, OM_KEY_ACCEPTED, NULL, NULL), 0);

	/* a new key for the same name: accepting it revokes the old one */
	assert_int_equal(om_store_key_add_pending(f->st, "kw1", "dc1", "fp-b", &b), 0);
	assert_int_equal(om_store_key_set_state(f->st, b, OM_KEY_ACCEPTED, NULL, NULL), 0);
	assert_int_equal(om_store_key_find(f->st, "fp-a", &k), 0);
	assert_int_equal(k.state, OM_KEY_REVOKED);
	om_key_info_release(&k);
	assert_int_equal(q_int(f,
	                       "SELECT count(*) FROM worker_keys WHERE name = 'kw1'"
	                       " AND state = 'accepted'",
	                       0, NULL),
	                 1);
	/* a revoked key never comes back */
	assert_int_equal(om_store_key_set_state(f->st, a, OM_KEY_ACCEPTED, "fp-a", NULL), OM_EPERM);
	assert_int_equal(om_store_key_set_state(f->st, a, OM_KEY_REJECTED, NULL, NULL), OM_EPERM);
	assert_int_equal(om_store_key_set_state(f->st, a, OM_KEY_REVOKED, NULL, NULL), 0);
	/* reject a pending key, revoke an accepted one */
	assert_int_equal(om_store_key_add_pending(f->st, "kw2", "dc2", "fp-c", &c), 0);
	assert_int_equal(om_store_key_set_state(f->st, c, OM_KEY_REJECTED, NULL, &k), 0);
	assert_int_equal(k.state, OM_KEY_REJECTED);
	om_key_info_release(&k);
	assert_int_equal(om_store_key_set_state(f->st, b, OM_KEY_REVOKED, NULL, &k), 0);
	assert_int_equal(k.state, OM_KEY_REVOKED);
	om_key_info_release(&k);
	assert_int_equal(om_store_key_set_state(f->st, b, OM_KEY_PENDING, NULL, NULL), OM_EINVAL);
	assert_int_equal(om_store_key_set_state(f->st, 987654321, OM_KEY_REVOKED, NULL, NULL),
	                 OM_ENOTFOUND);
	assert_int_equal(om_store_key_set_state(f->st, 0, OM_KEY_REVOKED, NULL, NULL),
	                 OM_ENOTFOUND);

	assert_int_equal(om_store_keys_list(f->st, &ks, &n), 0);
	assert_true(n >= 3);
	for (i = 1; i < n; i++)
		assert_true(strcmp(ks[i - 1].name, ks[i].name) <= 0);
	for (i = 0; i < n; i++)
		if (ks[i].id == c)
			assert_int_equal(ks[i].state, OM_KEY_REJECTED);
	om_key_infos_free(ks, n);
}

static int64_t
count_keys(struct fx *f)
{
	return q_int(f, "SELECT count(*) FROM worker_keys", 0, NULL);
}

static int64_t
count_used(struct fx *f)
{
	return q_int(f, "SELECT count(*) FROM enroll_tokens WHERE used_at IS NOT NULL", 0, NULL);
}

static void
test_enroll(void **state)
{
	struct fx *f = fx_of(state);
	struct om_key_info k;
	char *tok = NULL, *tok2 = NULL, *tok3 = NULL, tid[24];
	const char *v[1] = {tid};
	uint64_t id = 0, id2 = 0, tid_n = 0, pend = 0;
	int64_t exp_ms = 0, keys, used;

	assert_int_equal(
	        om_store_enroll_token_create(f->st, "dc1", 600, "admin", &tid_n, &tok, &exp_ms), 0);
	assert_non_null(tok);
	assert_int_equal(strncmp(tok, "ome_", 4), 0);
	assert_true(is_hex(tok + 4, 64));
	assert_true(exp_ms > om_wall_ms() + 590 * 1000 && exp_ms < om_wall_ms() + 610 * 1000);
	assert_int_equal(om_store_enroll_token_create(f->st, "dc1", 600, NULL, NULL, NULL, NULL),
	                 OM_EINVAL);

	/* the wrong IDC: refused, nothing written, the token still good */
	keys = count_keys(f);
	used = count_used(f);
	assert_int_equal(om_store_key_enroll(f->st, tok, "ew1", "dc2", "fp-e1", &id), OM_EAUTH);
	assert_int_equal(count_keys(f), keys);
	assert_int_equal(count_used(f), used);
	/* garbage tokens */
	assert_int_equal(om_store_key_enroll(f->st, "ome_nope", "ew1", "dc1", "fp-e1", &id),
	                 OM_EAUTH);
	assert_int_equal(om_store_key_enroll(f->st, "", "ew1", "dc1", "fp-e1", &id), OM_EAUTH);
	assert_int_equal(count_keys(f), keys);

	/* once */
	assert_int_equal(om_store_key_enroll(f->st, tok, "ew1", "dc1", "fp-e1", &id), 0);
	assert_true(id > 0);
	assert_int_equal(om_store_key_find(f->st, "fp-e1", &k), 0);
	assert_int_equal(k.id, id);
	assert_int_equal(k.state, OM_KEY_ACCEPTED);
	assert_string_equal(k.idc, "dc1");
	assert_string_equal(k.name, "ew1");
	om_key_info_release(&k);
	snprintf(tid, sizeof(tid), "%" PRIu64, tid_n);
	assert_int_equal(q_int(f,
	                       "SELECT count(*) FROM enroll_tokens WHERE id = $1"
	                       " AND used_at IS NOT NULL AND used_by_fingerprint = 'fp-e1'",
	                       1, v),
	                 1);
	/* not twice, not even for the same key */
	keys = count_keys(f);
	assert_int_equal(om_store_key_enroll(f->st, tok, "ew1", "dc1", "fp-e2", &id2), OM_EAUTH);
	assert_int_equal(om_store_key_enroll(f->st, tok, "ew1", "dc1", "fp-e1", &id2), OM_EAUTH);
	assert_int_equal(count_keys(f), keys);

	/* expired: at the expiry instant it no longer works */
	assert_int_equal(
	        om_store_enroll_token_create(f->st, "dc1", 0, "admin", &tid_n, &tok2, NULL), 0);
	snprintf(tid, sizeof(tid), "%" PRIu64, tid_n);
	q_ok(f, "UPDATE enroll_tokens SET expires_at = now() WHERE id = $1", 1, v);
	used = count_used(f);
	assert_int_equal(om_store_key_enroll(f->st, tok2, "ew2", "dc1", "fp-e3", &id2), OM_EAUTH);
	assert_int_equal(count_keys(f), keys);
	assert_int_equal(count_used(f), used);
	/* ...and a moment before it, it does */
	q_ok(f, "UPDATE enroll_tokens SET expires_at = now() + interval '2 seconds' WHERE id = $1",
	     1, v);
	/* a second key for ew1: the first one is revoked */
	assert_int_equal(om_store_key_enroll(f->st, tok2, "ew1", "dc1", "fp-e2", &id2), 0);
	assert_true(id2 != id);
	assert_int_equal(om_store_key_find(f->st, "fp-e1", &k), 0);
	assert_int_equal(k.state, OM_KEY_REVOKED);
	om_key_info_release(&k);
	om_free(tok2);
	tok2 = NULL;

	/* a revoked key cannot come back through enrollment; the token stays unused */
	assert_int_equal(
	        om_store_enroll_token_create(f->st, "dc1", 60, "admin", &tid_n, &tok3, NULL), 0);
	keys = count_keys(f);
	used = count_used(f);
	assert_int_equal(om_store_key_enroll(f->st, tok3, "ew1", "dc1", "fp-e1", &id2), OM_EAUTH);
	assert_int_equal(count_keys(f), keys);
	assert_int_equal(count_used(f), used);
	/* the accepted fp-e2 was not revoked by the failed attempt */
	assert_int_equal(om_store_key_find(f->st, "fp-e2", &k), 0);
	assert_int_equal(k.state, OM_KEY_ACCEPTED);
	om_key_info_release(&k);
	/* a rejected one neither */
	assert_int_equal(om_store_key_add_pending(f->st, "ew3", "dc1", "fp-rej", &pend), 0);
	assert_int_equal(om_store_key_set_state(f->st, pend, OM_KEY_REJECTED, NULL, NULL), 0);
	assert_int_equal(om_store_key_enroll(f->st, tok3, "ew3", "dc1", "fp-rej", &id2), OM_EAUTH);
	assert_int_equal(count_used(f), used);
	/* a pending row is promoted in place, its IDC set by the token */
	assert_int_equal(om_store_key_add_pending(f->st, "ew4", "dc-claimed", "fp-pend", &pend), 0);
	assert_int_equal(om_store_key_enroll(f->st, tok3, "ew4", "dc1", "fp-pend", &id2), 0);
	assert_int_equal(id2, pend);
	assert_int_equal(om_store_key_find(f->st, "fp-pend", &k), 0);
	assert_int_equal(k.state, OM_KEY_ACCEPTED);
	assert_string_equal(k.idc, "dc1");
	om_key_info_release(&k);
	assert_int_equal(om_store_key_enroll(f->st, NULL, "ew4", "dc1", "fp-pend", &id2),
	                 OM_EINVAL);
	om_free(tok);
	om_free(tok3);
}

static void
test_enroll_ttl(void **state)
{
	struct fx *f = fx_of(state);
	char *tok = NULL;
	uint64_t id = 0;
	int64_t keys;

	/* real time passing, not an UPDATE */
	assert_int_equal(om_store_enroll_token_create(f->st, "dc1", 1, "admin", NULL, &tok, NULL),
	                 0);
	usleep(1100 * 1000);
	keys = count_keys(f);
	assert_int_equal(om_store_key_enroll(f->st, tok, "tw1", "dc1", "fp-ttl", &id), OM_EAUTH);
	assert_int_equal(count_keys(f), keys);
	om_free(tok);
	assert_int_equal(om_store_enroll_token_create(f->st, "dc1", INT64_C(1) << 40, "admin", NULL,
	                                              &tok, NULL),
	                 OM_ERANGE);
	assert_null(tok);
}

static void
test_users(void **state)
{
	struct fx *f = fx_of(state);
	char *idcs[] = {"dc1", "dc2"}, *groups[] = {"web", "q\"x\\y"}, *mods[] = {"shell"};
	struct om_user a = {0}, b = {0}, out, *us = NULL;
	struct timespec t0;
	double ms_wrong, ms_unknown;
	uint64_t ida = 0, idb = 0, x = 0;
	size_t n = 0, before = 0, i;

	assert_int_equal(om_store_user_count(f->st, &before), 0);
	a.name = "alice";
	a.role = OM_ROLE_ADMIN;
	assert_int_equal(om_store_user_add(f->st, &a, "alice-password-1", &ida), 0);
	assert_true(ida > 0);
	assert_int_equal(om_store_user_add(f->st, &a, "another-password", &x), OM_EEXIST);
	b.name = "bob";
	b.role = OM_ROLE_OPERATOR;
	b.idcs = idcs;
	b.nidcs = 2;
	b.groups = groups;
	b.ngroups = 2;
	b.modules = mods;
	b.nmodules = 1;
	assert_int_equal(om_store_user_add(f->st, &b, "bob-password-1", &idb), 0);
	assert_int_equal(om_store_user_count(f->st, &n), 0);
	assert_int_equal(n, before + 2);

	/* refused before anything is hashed or written */
	a.name = "carl";
	assert_int_equal(om_store_user_add(f->st, &a, "short", &x), OM_EINVAL);
	a.role = 0;
	assert_int_equal(om_store_user_add(f->st, &a, "long-enough-pw", &x), OM_EINVAL);
	a.role = OM_ROLE_VIEWER;
	a.name = "bad\xc3";
	assert_int_equal(om_store_user_add(f->st, &a, "long-enough-pw", &x), OM_EINVAL);
	a.name = "";
	assert_int_equal(om_store_user_add(f->st, &a, "long-enough-pw", &x), OM_EINVAL);
	a.name = "alice";
	assert_int_equal(om_store_user_count(f->st, &n), 0);
	assert_int_equal(n, before + 2);

	assert_int_equal(om_store_user_get(f->st, "bob", &out), 0);
	assert_int_equal(out.id, idb);
	assert_string_equal(out.name, "bob");
	assert_int_equal(out.role, OM_ROLE_OPERATOR);
	assert_false(out.disabled);
	assert_int_equal(out.nidcs, 2);
	assert_string_equal(out.idcs[0], "dc1");
	assert_string_equal(out.idcs[1], "dc2");
	assert_int_equal(out.ngroups, 2);
	assert_string_equal(out.groups[1], "q\"x\\y");
	assert_int_equal(out.nmodules, 1);
	assert_string_equal(out.modules[0], "shell");
	assert_true(out.created_ms > 1600000000000LL);
	om_user_release(&out);
	assert_int_equal(om_store_user_get(f->st, "nobody", &out), OM_ENOTFOUND);

	/* login: right, wrong, unknown, disabled */
	assert_int_equal(om_store_user_login(f->st, "alice", "alice-password-1", &out), 0);
	assert_int_equal(out.id, ida);
	assert_int_equal(out.role, OM_ROLE_ADMIN);
	assert_int_equal(out.nidcs, 0);
	om_user_release(&out);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(om_store_user_login(f->st, "alice", "alice-password-2", &out), OM_EAUTH);
	ms_wrong = ms_since(&t0);
	assert_null(out.name);
	assert_null(strstr(om_store_errmsg(f->st), "alice-password"));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(om_store_user_login(f->st, "mallory", "alice-password-1", &out), OM_EAUTH);
	ms_unknown = ms_since(&t0);
	assert_int_equal(om_store_user_login(f->st, "bad\xff", "alice-password-1", &out), OM_EAUTH);
	assert_int_equal(om_store_user_login(f->st, "alice", "", &out), OM_EAUTH);
	/* refusals are not database failures: a stream of bad logins or tokens
	 * must not hold back declaring dead workers lost (regression) */
	{
		int64_t failed_at = om_store_last_failure_ms(f->st);
		struct om_token_info tok;
		memset(&tok, 0, sizeof(tok));
		assert_int_equal(om_store_user_login(f->st, "alice", "nope-nope-1", &out), OM_EAUTH);
		assert_int_equal(om_store_user_login(f->st, "mallory", "nope-nope-1", &out), OM_EAUTH);
		assert_true(om_store_token_check(f->st, "omt_00", &tok, NULL) != 0);
		assert_int_equal(om_store_last_failure_ms(f->st), failed_at);
	}
	printf("  login: wrong password %.0f ms, unknown user %.0f ms\n", ms_wrong, ms_unknown);
	/* an unknown user costs a scrypt too */
	assert_true(ms_unknown > ms_wrong / 2);
	assert_int_equal(om_store_user_set_disabled(f->st, "alice", true), 0);
	assert_int_equal(om_store_user_login(f->st, "alice", "alice-password-1", &out), OM_EAUTH);
	assert_null(out.name);
	assert_int_equal(om_store_user_get(f->st, "alice", &out), 0);
	assert_true(out.disabled);
	om_user_release(&out);
	assert_int_equal(om_store_user_set_disabled(f->st, "alice", false), 0);
	assert_int_equal(om_store_user_login(f->st, "alice", "alice-password-1", NULL), 0);
	assert_int_equal(om_store_user_set_disabled(f->st, "nobody", true), OM_ENOTFOUND);

	/* a new password replaces the old one */
	assert_int_equal(om_store_user_set_password(f->st, "bob", "bob-password-2"), 0);
	assert_int_equal(om_store_user_login(f->st, "bob", "bob-password-1", NULL), OM_EAUTH);
	assert_int_equal(om_store_user_login(f->st, "bob", "bob-password-2", &out), 0);
	assert_int_equal(out.nidcs, 2);
	om_user_release(&out);
	assert_int_equal(om_store_user_set_password(f->st, "bob", "2short"), OM_EINVAL);
	assert_int_equal(om_store_user_set_password(f->st, "nobody", "long-enough-pw"),
	                 OM_ENOTFOUND);

	/* a corrupt stored hash refuses the login, without saying more */
	q_ok(f, "UPDATE users SET password_hash = 'scrypt$garbage' WHERE name = 'bob'", 0, NULL);
	assert_int_equal(om_store_user_login(f->st, "bob", "bob-password-2", NULL), OM_EAUTH);
	assert_int_equal(om_store_user_set_password(f->st, "bob", "bob-password-3"), 0);
	assert_int_equal(om_store_user_login(f->st, "bob", "bob-password-3", NULL), 0);

	assert_int_equal(om_store_users_list(f->st, &us, &n), 0);
	assert_int_equal(n, before + 2);
	for (i = 1; i < n; i++)
		assert_true(strcmp(us[i - 1].name, us[i].name) < 0);
	for (i = 0; i < n; i++)
		if (strcmp(us[i].name, "bob") == 0)
			assert_int_equal(us[i].ngroups, 2);
	om_users_free(us, n);
}

static void
test_tokens(void **state)
{
	struct fx *f = fx_of(state);
	struct om_user u = {0}, who;
	struct om_token_info t, *ts = NULL;
	char *sec = NULL, *sec2 = NULL, *sec3 = NULL, tid[24];
	const char *v[1] = {tid};
	uint64_t carol = 0, dave = 0, id = 0, id2 = 0, id3 = 0;
	int64_t exp_ms = 0, now = om_wall_ms();
	size_t n = 0;

	u.name = "carol";
	u.role = OM_ROLE_OPERATOR;
	assert_int_equal(om_store_user_add(f->st, &u, "carol-password", &carol), 0);
	u.name = "dave";
	u.role = OM_ROLE_VIEWER;
	assert_int_equal(om_store_user_add(f->st, &u, "dave-password", &dave), 0);

	/* default lifetime: 30 days */
	assert_int_equal(om_store_token_create(f->st, carol, "ci", OM_SCOPE_READ | OM_SCOPE_RUN, 0,
	                                       &id, &sec, &exp_ms),
	                 0);
	assert_non_null(sec);
	assert_int_equal(strncmp(sec, "omt_", 4), 0);
	assert_true(is_hex(sec + 4, 64));
	assert_true(exp_ms > now + 30LL * 86400 * 1000 - 60000 &&
	            exp_ms < now + 30LL * 86400 * 1000 + 60000);
	assert_int_equal(om_store_token_check(f->st, sec, &t, &who), 0);
	assert_int_equal(t.id, id);
	assert_int_equal(t.user_id, carol);
	assert_string_equal(t.user, "carol");
	assert_string_equal(t.name, "ci");
	assert_int_equal(t.scopes, OM_SCOPE_READ | OM_SCOPE_RUN);
	assert_int_equal(t.expires_ms, exp_ms);
	assert_int_equal(t.revoked_ms, 0);
	assert_true(t.last_used_ms >= t.created_ms);
	assert_int_equal(who.id, carol);
	assert_string_equal(who.name, "carol");
	assert_int_equal(who.role, OM_ROLE_OPERATOR);
	om_token_info_release(&t);
	om_user_release(&who);
	snprintf(tid, sizeof(tid), "%" PRIu64, id);
	assert_int_equal(q_int(f,
	                       "SELECT count(*) FROM api_tokens WHERE id = $1"
	                       " AND last_used_at IS NOT NULL",
	                       1, v),
	                 1);
	assert_int_equal(om_store_token_check(f->st, sec, NULL, NULL), 0);

	/* not a token */
	assert_int_equal(om_store_token_check(f->st, "omt_0000", &t, &who), OM_EAUTH);
	assert_null(t.name);
	assert_null(who.name);
	assert_int_equal(om_store_token_check(f->st, "", NULL, NULL), OM_EAUTH);
	{
		char longtok[OM_MAX_SECRET + 10];
		memset(longtok, 'a', sizeof(longtok) - 1);
		longtok[sizeof(longtok) - 1] = '\0';
		assert_int_equal(om_store_token_check(f->st, longtok, NULL, NULL), OM_EAUTH);
	}

	/* bad arguments */
	assert_int_equal(om_store_token_create(f->st, carol, "x", 0, 0, &id2, &sec2, NULL),
	                 OM_EINVAL);
	assert_int_equal(om_store_token_create(f->st, carol, "x", 8, 0, &id2, &sec2, NULL),
	                 OM_EINVAL);
	assert_int_equal(
	        om_store_token_create(f->st, carol, "", OM_SCOPE_READ, 0, &id2, &sec2, NULL),
	        OM_EINVAL);
	assert_int_equal(
	        om_store_token_create(f->st, 987654321, "x", OM_SCOPE_READ, 0, &id2, &sec2, NULL),
	        OM_ENOTFOUND);
	assert_null(sec2);

	/* revoke: only by its owner (or by anyone with owner 0) */
	assert_int_equal(om_store_token_revoke(f->st, id, dave), OM_ENOTFOUND);
	assert_int_equal(om_store_token_check(f->st, sec, NULL, NULL), 0);
	assert_int_equal(om_store_token_revoke(f->st, id, carol), 0);
	assert_int_equal(om_store_token_check(f->st, sec, NULL, NULL), OM_EAUTH);
	assert_int_equal(om_store_token_revoke(f->st, id, 0), 0);
	assert_int_equal(om_store_token_revoke(f->st, 987654321, 0), OM_ENOTFOUND);

	/* expired: at the instant, and after */
	assert_int_equal(om_store_token_create(f->st, carol, "short", OM_SCOPE_READ, 3600, &id2,
	                                       &sec2, NULL),
	                 0);
	assert_int_equal(om_store_token_check(f->st, sec2, NULL, NULL), 0);
	snprintf(tid, sizeof(tid), "%" PRIu64, id2);
	q_ok(f, "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1", 1,
	     v);
	assert_int_equal(om_store_token_check(f->st, sec2, NULL, NULL), OM_EAUTH);
	q_ok(f, "UPDATE api_tokens SET expires_at = now() WHERE id = $1", 1, v);
	assert_int_equal(om_store_token_check(f->st, sec2, NULL, NULL), OM_EAUTH);
	q_ok(f, "UPDATE api_tokens SET expires_at = now() + interval '2 seconds' WHERE id = $1", 1,
	     v);
	assert_int_equal(om_store_token_check(f->st, sec2, NULL, NULL), 0);

	/* a disabled user's tokens stop working, and work again when re-enabled */
	assert_int_equal(
	        om_store_token_create(f->st, dave, "dave-ci", OM_SCOPE_READ, 60, &id3, &sec3, NULL),
	        0);
	assert_int_equal(om_store_token_check(f->st, sec3, NULL, NULL), 0);
	assert_int_equal(om_store_user_set_disabled(f->st, "dave", true), 0);
	assert_int_equal(om_store_token_check(f->st, sec3, NULL, NULL), OM_EAUTH);
	assert_int_equal(om_store_user_set_disabled(f->st, "dave", false), 0);
	assert_int_equal(om_store_token_check(f->st, sec3, &t, &who), 0);
	assert_int_equal(t.scopes, OM_SCOPE_READ);
	assert_int_equal(who.role, OM_ROLE_VIEWER);
	om_token_info_release(&t);
	om_user_release(&who);

	assert_int_equal(om_store_tokens_list(f->st, carol, &ts, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ts[0].id, id);
	assert_true(ts[0].revoked_ms > 0);
	assert_true(ts[0].last_used_ms > 0);
	assert_string_equal(ts[0].user, "carol");
	assert_int_equal(ts[1].id, id2);
	assert_int_equal(ts[1].revoked_ms, 0);
	om_token_infos_free(ts, n);
	assert_int_equal(om_store_tokens_list(f->st, 0, &ts, &n), 0);
	assert_true(n >= 3);
	om_token_infos_free(ts, n);
	assert_int_equal(om_store_tokens_list(f->st, 987654321, &ts, &n), 0);
	assert_int_equal(n, 0);
	om_token_infos_free(ts, n);
	om_free(sec);
	om_free(sec2);
	om_free(sec3);
}

/* Lower-case hex of s's bytes (caller frees). */
static char *
hex_of(const char *s)
{
	size_t n = strlen(s);
	char *h = malloc(2 * n + 1);

	assert_non_null(h);
	om_hex_encode((const uint8_t *)s, n, h);
	return h;
}

/* Rows of every text, text[] and bytea column of every table holding needle or its hex. */
static int64_t
db_mentions(struct fx *f, const char *needle)
{
	PGresult *cols;
	char *hex = hex_of(needle);
	const char *v[2] = {needle, hex};
	int64_t hits = 0;
	int i;

	cols = PQexec(f->db, "SELECT table_name, column_name FROM information_schema.columns"
	                     " WHERE table_schema = 'public'"
	                     " AND data_type IN ('text', 'bytea', 'ARRAY', 'character varying')");
	assert_int_equal(PQresultStatus(cols), PGRES_TUPLES_OK);
	assert_true(PQntuples(cols) > 20);
	for (i = 0; i < PQntuples(cols); i++) {
		char *tb = PQescapeIdentifier(f->db, PQgetvalue(cols, i, 0),
		                              strlen(PQgetvalue(cols, i, 0)));
		char *col = PQescapeIdentifier(f->db, PQgetvalue(cols, i, 1),
		                               strlen(PQgetvalue(cols, i, 1)));
		char sql[512];

		assert_non_null(tb);
		assert_non_null(col);
		/* bytea::text is \x<hex>: the hex needle finds raw bytes there */
		snprintf(sql, sizeof(sql),
		         "SELECT count(*) FROM %s WHERE strpos(%s::text, $1) > 0"
		         " OR strpos(%s::text, $2) > 0",
		         tb, col, col);
		hits += q_int(f, sql, 2, v);
		PQfreemem(tb);
		PQfreemem(col);
	}
	PQclear(cols);
	free(hex);
	return hits;
}

static void
test_no_secrets_stored(void **state)
{
	struct fx *f = fx_of(state);
	static const char pw[] = "Canary-Password-4711";
	struct om_user u = {0};
	char *tok = NULL, *etok = NULL, *etok2 = NULL;
	uint64_t uid = 0, id = 0;

	u.name = "erin";
	u.role = OM_ROLE_ADMIN;
	assert_int_equal(om_store_user_add(f->st, &u, pw, &uid), 0);
	assert_int_equal(om_store_user_set_password(f->st, "erin", pw), 0);
	assert_int_equal(om_store_user_login(f->st, "erin", pw, NULL), 0);
	assert_int_equal(
	        om_store_token_create(f->st, uid, "canary", OM_SCOPE_ADMIN, 60, &id, &tok, NULL),
	        0);
	assert_int_equal(om_store_token_check(f->st, tok, NULL, NULL), 0);
	assert_int_equal(om_store_token_revoke(f->st, id, uid), 0);
	assert_int_equal(om_store_enroll_token_create(f->st, "dc1", 60, "erin", NULL, &etok, NULL),
	                 0);
	assert_int_equal(om_store_key_enroll(f->st, etok, "cw1", "dc1", "fp-canary", &id), 0);
	assert_int_equal(om_store_enroll_token_create(f->st, "dc1", 60, "erin", NULL, &etok2, NULL),
	                 0);
	assert_int_equal(
	        om_store_audit(f->st, "erin", "test", "token.create", "canary", "ok", NULL), 0);

	assert_int_equal(db_mentions(f, pw), 0);
	assert_int_equal(db_mentions(f, tok), 0);
	assert_int_equal(db_mentions(f, tok + 4), 0); /* the random part alone */
	assert_int_equal(db_mentions(f, etok), 0);
	assert_int_equal(db_mentions(f, etok + 4), 0);
	assert_int_equal(db_mentions(f, etok2), 0);
	assert_int_equal(db_mentions(f, etok2 + 4), 0);
	/* the scan itself works: the user name is there */
	assert_true(db_mentions(f, "erin") > 0);
	/* nor in an error message */
	assert_int_equal(om_store_token_check(f->st, tok, NULL, NULL), OM_EAUTH);
	assert_null(strstr(om_store_errmsg(f->st), tok + 4));
	assert_int_equal(om_store_key_enroll(f->st, etok, "cw1", "dc1", "fp-canary", &id),
	                 OM_EAUTH);
	assert_null(strstr(om_store_errmsg(f->st), etok + 4));
	om_free(tok);
	om_free(etok);
	om_free(etok2);
}

/* Appends rows from..to-1 with details "d<i>" (every 7th NULL). */
static void
audit_rows(struct om_store *st, int from, int to)
{
	char target[32], detail[32];
	int i;

	for (i = from; i < to; i++) {
		snprintf(target, sizeof(target), "key %d", i);
		snprintf(detail, sizeof(detail), "d%d", i);
		assert_int_equal(om_store_audit(st, "admin", "omctl 127.0.0.1", "key.accept",
		                                target, i % 5 ? "ok" : "denied",
		                                i % 7 ? detail : NULL),
		                 0);
	}
}

static uint64_t
audit_count(struct fx *f)
{
	return (uint64_t)q_int(f, "SELECT count(*) FROM audit", 0, NULL);
}

static void
test_audit_append_verify(void **state)
{
	struct fx *f = fx_of(state);
	struct om_audit_rec *recs = NULL;
	uint64_t nrows = 0, bad = 99, base = audit_count(f), after;
	char why[256], big[10000], sqlstate[6];
	size_t n = 0, got, i;
	int64_t since;

	audit_rows(f->st, 0, 50);
	assert_int_equal(om_store_audit_verify(f->st, &nrows, &bad, why, sizeof(why)), 0);
	assert_int_equal(nrows, base + 50);
	assert_int_equal(bad, 0);
	assert_string_equal(why, "");

	/* hostile text goes in, cleaned and capped, and the chain still verifies */
	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(om_store_audit(f->st, "w\xff\xfe", "src", "act", "tgt", "ok", big), 0);
	assert_int_equal(om_store_audit(f->st, "", "", "", "", "", ""), 0);
	assert_int_equal(om_store_audit(f->st, NULL, "s", "a", "t", "o", NULL), OM_EINVAL);
	assert_int_equal(q_int(f,
	                       "SELECT count(*) FROM audit WHERE actor = 'w\?\?'"
	                       " AND octet_length(detail) = 4096",
	                       0, NULL),
	                 1);
	assert_int_equal(om_store_audit_verify(f->st, &nrows, &bad, why, sizeof(why)), 0);
	assert_int_equal(nrows, base + 52);
	assert_int_equal(q_int(f, "SELECT max(id) - min(id) + 1 - count(*) FROM audit", 0, NULL),
	                 0);

	/* paging: after_id and limit */
	after = 0;
	got = 0;
	do {
		assert_int_equal(om_store_audit_list(f->st, 0, after, 20, &recs, &n), 0);
		assert_true(n <= 20);
		for (i = 0; i < n; i++)
			assert_int_equal(recs[i].id, after + i + 1);
		if (n > 0)
			after = recs[n - 1].id;
		got += n;
		om_audit_recs_free(recs, n);
	} while (n == 20);
	assert_int_equal(got, base + 52);
	/* the fields come back as written */
	assert_int_equal(om_store_audit_list(f->st, 0, base + 7, 2, &recs, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(recs[0].id, base + 8);
	assert_string_equal(recs[0].actor, "admin");
	assert_string_equal(recs[0].source, "omctl 127.0.0.1");
	assert_string_equal(recs[0].action, "key.accept");
	assert_string_equal(recs[0].target, "key 7");
	assert_string_equal(recs[0].outcome, "ok");
	assert_null(recs[0].detail); /* 7 % 7 */
	assert_string_equal(recs[1].detail, "d8");
	assert_true(recs[1].at_us >= recs[0].at_us);
	assert_true(recs[0].at_us > INT64_C(1600000000000000));
	om_audit_recs_free(recs, n);
	/* since: nothing older than the 31st row */
	assert_int_equal(om_store_audit_list(f->st, 0, base + 30, 1, &recs, &n), 0);
	assert_int_equal(n, 1);
	since = recs[0].at_us;
	om_audit_recs_free(recs, n);
	assert_int_equal(om_store_audit_list(f->st, since, 0, 1000, &recs, &n), 0);
	assert_true(n >= 22 && n <= base + 52);
	assert_true(recs[0].id <= base + 31);
	for (i = 0; i < n; i++)
		assert_true(recs[i].at_us >= since);
	om_audit_recs_free(recs, n);
	assert_int_equal(om_store_audit_list(f->st, INT64_MAX, 0, 10, &recs, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(om_store_audit_list(f->st, 0, 0, 0, &recs, &n), 0);
	assert_int_equal(n, 0);

	/* newest first, paging down with before_id (the console's audit page) */
	{
		struct om_audit_query aq = {.desc = true, .limit = 20};
		uint64_t top = 0;
		got = 0;
		do {
			assert_int_equal(om_store_audit_page(f->st, &aq, &recs, &n), 0);
			assert_true(n <= 20);
			for (i = 0; i < n; i++) {
				if (top == 0)
					top = recs[0].id;
				assert_int_equal(recs[i].id, top - got - i);
			}
			if (n > 0)
				aq.before_id = recs[n - 1].id;
			got += n;
			om_audit_recs_free(recs, n);
		} while (n == 20);
		/* every row once, down to the first of this test's database */
		assert_int_equal(top, q_int(f, "SELECT max(id) FROM audit", 0, NULL));
		assert_int_equal(got, q_int(f, "SELECT count(*) FROM audit", 0, NULL));
		/* both bounds: the rows between, either order */
		aq.after_id = base + 10;
		aq.before_id = base + 14;
		assert_int_equal(om_store_audit_page(f->st, &aq, &recs, &n), 0);
		assert_int_equal(n, 3);
		assert_int_equal(recs[0].id, base + 13);
		assert_int_equal(recs[2].id, base + 11);
		om_audit_recs_free(recs, n);
		aq.desc = false;
		assert_int_equal(om_store_audit_page(f->st, &aq, &recs, &n), 0);
		assert_int_equal(n, 3);
		assert_int_equal(recs[0].id, base + 11);
		om_audit_recs_free(recs, n);
		/* nothing below id 1; a bound past every id is none */
		aq.after_id = 0;
		aq.before_id = 1;
		assert_int_equal(om_store_audit_page(f->st, &aq, &recs, &n), 0);
		assert_int_equal(n, 0);
		aq.before_id = UINT64_MAX;
		aq.desc = true;
		aq.limit = 1;
		assert_int_equal(om_store_audit_page(f->st, &aq, &recs, &n), 0);
		assert_int_equal(n, 1);
		assert_int_equal(recs[0].id, top);
		om_audit_recs_free(recs, n);
	}

	/* the table refuses change, for the role the store runs as too */
	assert_int_equal(
	        q_exec(f, "UPDATE audit SET detail = 'x' WHERE id = 17", 0, NULL, sqlstate), -1);
	assert_string_equal(sqlstate, "42501");
	assert_int_equal(q_exec(f, "DELETE FROM audit WHERE id = 17", 0, NULL, sqlstate), -1);
	assert_int_equal(q_exec(f, "TRUNCATE audit", 0, NULL, sqlstate), -1);
	assert_int_equal(audit_count(f), base + 52);
}

/* Several masters appending at once keep one contiguous chain. */
static void
test_audit_concurrent(void **state)
{
	struct fx *f = fx_of(state);
	enum { NPROC = 3, PER = 20 };
	uint64_t base = audit_count(f), nrows = 0, bad = 0;
	pid_t pids[NPROC];
	char why[256];
	int i, status;

	for (i = 0; i < NPROC; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			struct om_store *st = NULL;
			char err[256], detail[32];
			int k, rc = 0;

			if (om_store_open(&st, f->conninfo, err, sizeof(err)) != 0)
				_exit(2);
			for (k = 0; k < PER && rc == 0; k++) {
				snprintf(detail, sizeof(detail), "proc %d row %d", i, k);
				rc = om_store_audit(st, "proc", "test", "append", "chain", "ok",
				                    detail);
			}
			om_store_close(st);
			_exit(rc == 0 ? 0 : 1);
		}
	}
	for (i = 0; i < NPROC; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_int_equal(audit_count(f), base + NPROC * PER);
	assert_int_equal(om_store_audit_verify(f->st, &nrows, &bad, why, sizeof(why)), 0);
	assert_int_equal(nrows, base + NPROC * PER);
}

/* Tampering behind the triggers, as a superuser can. */
static void
test_audit_tamper(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t nrows = 0, bad = 0, total;
	char why[256], keep[64];
	const char *v[1] = {keep};
	PGresult *r;

	if (!is_superuser(f)) {
		printf("  the test role is not a superuser: tampering not tried\n");
		skip();
	}
	if (audit_count(f) < 20)
		audit_rows(f->st, 0, 20);
	total = audit_count(f);
	q_ok(f, "SET session_replication_role = replica", 0, NULL);

	/* a changed field */
	r = PQexec(f->db, "SELECT detail FROM audit WHERE id = 17");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	snprintf(keep, sizeof(keep), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	q_ok(f, "UPDATE audit SET detail = 'x' WHERE id = 17", 0, NULL);
	assert_int_equal(om_store_audit_verify(f->st, &nrows, &bad, why, sizeof(why)), OM_ECRYPTO);
	assert_int_equal(bad, 17);
	assert_int_equal(nrows, 16);
	assert_string_equal(why, "row 17: hash does not match its contents");
	assert_non_null(strstr(om_store_errmsg(f->st), "row 17"));
	q_ok(f, "UPDATE audit SET detail = $1 WHERE id = 17", 1, v);
	assert_int_equal(om_store_audit_verify(f->st, &nrows, &bad, why, sizeof(why)), 0);

	/* a row re-hashed after a change: the next row no longer links to it */
	q_ok(f, "UPDATE audit SET prev_hash = sha256('forged') WHERE id = 12", 0, NULL);
	assert_int_equal(om_store_audit_verify(f->st, &nrows, &bad, why, sizeof(why)), OM_ECRYPTO);
	assert_int_equal(bad, 12);
	assert_string_equal(why, "row 12: prev_hash does not link to row 11");
	q_ok(f, "UPDATE audit SET prev_hash = (SELECT hash FROM audit WHERE id = 11) WHERE id = 12",
	     0, NULL);
	assert_int_equal(om_store_audit_verify(f->st, &nrows, &bad, why, sizeof(why)), 0);
	assert_int_equal(nrows, total);

	/* a deleted row */
	q_ok(f, "DELETE FROM audit WHERE id = 9", 0, NULL);
	q_ok(f, "SET session_replication_role = origin", 0, NULL);
	assert_int_equal(om_store_audit_verify(f->st, &nrows, &bad, why, sizeof(why)), OM_ECRYPTO);
	assert_int_equal(bad, 9);
	assert_int_equal(nrows, 8);
	assert_string_equal(why, "row 9 is missing");
	/* appending still works; the damage stays visible */
	assert_int_equal(om_store_audit(f->st, "a", "s", "act", "t", "ok", NULL), 0);
	assert_int_equal(om_store_audit_verify(f->st, NULL, &bad, NULL, 0), OM_ECRYPTO);
	assert_int_equal(bad, 9);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_schema),
	        cmocka_unit_test(test_role_names),
	        cmocka_unit_test(test_password_hash),
	        cmocka_unit_test(test_keys),
	        cmocka_unit_test(test_enroll),
	        cmocka_unit_test(test_enroll_ttl),
	        cmocka_unit_test(test_users),
	        cmocka_unit_test(test_tokens),
	        cmocka_unit_test(test_no_secrets_stored),
	        cmocka_unit_test(test_audit_append_verify),
	        cmocka_unit_test(test_audit_concurrent),
	        cmocka_unit_test(test_audit_tamper),
	};

	return cmocka_run_group_tests_name("store_auth", tests, group_setup, group_teardown);
}
