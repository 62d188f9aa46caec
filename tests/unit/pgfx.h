/*
 * The PostgreSQL fixture of the store tests (header-only: each test is one
 * translation unit).  OM_TEST_PGCONN is a conninfo to an admin database; the
 * group setup creates PREFIX_<pid> there, every case works in it, the
 * teardown drops it.  Without OM_TEST_PGCONN every case is skipped.
 */
#ifndef OM_TESTS_PGFX_H
#define OM_TESTS_PGFX_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "store.h"

struct fx {
	PGconn *admin; /* the admin database: create, drop, terminate */
	PGconn *db;    /* the test database: checks behind the store's back */
	struct om_store *st;
	char dbname[64];
	char conninfo[2048]; /* the admin conninfo with dbname replaced */
};

static inline struct fx *
fx_of(void **state)
{
	if (*state == NULL) {
		printf("OM_TEST_PGCONN not set\n");
		skip();
	}
	return *state;
}

/* Appends key='value' with ' and \ escaped, as libpq conninfo wants. */
static inline void
conn_put(char *out, size_t cap, const char *key, const char *val)
{
	size_t o = strlen(out);

	o += (size_t)snprintf(out + o, cap - o, "%s%s='", o ? " " : "", key);
	for (; *val && o + 3 < cap; val++) {
		if (*val == '\'' || *val == '\\')
			out[o++] = '\\';
		out[o++] = *val;
	}
	if (o + 2 < cap) {
		out[o++] = '\'';
		out[o] = '\0';
	}
}

/* Rebuilds conninfo (key=value or URI form) with another dbname. */
static inline int
conn_with_db(const char *conninfo, const char *dbname, char *out, size_t cap)
{
	PQconninfoOption *opts, *o;
	char *err = NULL;

	if ((opts = PQconninfoParse(conninfo, &err)) == NULL) {
		fprintf(stderr, "bad OM_TEST_PGCONN: %s", err ? err : "?");
		PQfreemem(err);
		return -1;
	}
	out[0] = '\0';
	for (o = opts; o->keyword; o++)
		if (o->val && *o->val && strcmp(o->keyword, "dbname") != 0)
			conn_put(out, cap, o->keyword, o->val);
	conn_put(out, cap, "dbname", dbname);
	PQconninfoFree(opts);
	return 0;
}

static inline int
admin_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;

	if (!ok)
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	return ok ? 0 : -1;
}

/* The group setup: a fresh database PREFIX_<pid> and a store on it. */
static inline int
pgfx_setup(void **state, const char *prefix)
{
	const char *ci = getenv("OM_TEST_PGCONN");
	char sql[256], err[512];
	struct fx *f;

	*state = NULL;
	if (ci == NULL || *ci == '\0')
		return 0; /* every case skips */
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return -1;
	f->admin = PQconnectdb(ci);
	if (PQstatus(f->admin) != CONNECTION_OK) {
		fprintf(stderr, "admin connect: %s", PQerrorMessage(f->admin));
		goto fail;
	}
	/* a fixed identifier built from a number: no quoting question */
	snprintf(f->dbname, sizeof(f->dbname), "%s_%ld", prefix, (long)getpid());
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", f->dbname);
	PQclear(PQexec(f->admin, "SET client_min_messages = warning"));
	if (admin_exec(f->admin, sql) != 0)
		goto fail;
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->dbname);
	if (admin_exec(f->admin, sql) != 0)
		goto fail;
	if (conn_with_db(ci, f->dbname, f->conninfo, sizeof(f->conninfo)) != 0)
		goto fail;
	if (om_store_open(&f->st, f->conninfo, err, sizeof(err)) != 0) {
		fprintf(stderr, "om_store_open: %s\n", err);
		goto fail;
	}
	f->db = PQconnectdb(f->conninfo);
	if (PQstatus(f->db) != CONNECTION_OK) {
		fprintf(stderr, "test db connect: %s", PQerrorMessage(f->db));
		goto fail;
	}
	*state = f;
	return 0;
fail:
	om_store_close(f->st);
	PQfinish(f->db);
	PQfinish(f->admin);
	free(f);
	return -1;
}

static inline int
group_teardown(void **state)
{
	struct fx *f = *state;
	char sql[128];

	if (f == NULL)
		return 0;
	om_store_close(f->st);
	PQfinish(f->db);
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->dbname);
	admin_exec(f->admin, sql);
	PQfinish(f->admin);
	free(f);
	return 0;
}

/* One integer from a query on the test database (text params); -1 for NULL. */
static inline int64_t
q_int(struct fx *f, const char *sql, int n, const char *const *vals)
{
	PGresult *r = PQexecParams(f->db, sql, n, NULL, vals, NULL, NULL, 0);
	int64_t v;

	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		print_error("%s: %s\n", sql, PQerrorMessage(f->db));
		PQclear(r);
		fail();
	}
	v = PQgetisnull(r, 0, 0) ? -1 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

#endif
