/*
 * Output partitions and retention (master/store_retention.c, migration 7)
 * against a real PostgreSQL (OM_TEST_PGCONN, see pgfx.h; every case skips
 * without it): partitions made ahead of the job ids, a burst caught by the
 * default partition, whole partitions dropped only when every job in them
 * expired, row-by-row deletion of the rest, and schema 6 output copied into
 * the partitioned table.
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

#include <libpq-fe.h>

#include "om/base.h"
#include "store.h"
#include "store_int.h"

#include "pgfx.h"

static int
group_setup(void **state)
{
	return pgfx_setup(state, "om_store_retention_test");
}

static void
sql(PGconn *c, const char *s)
{
	assert_int_equal(admin_exec(c, s), 0);
}

/* A job over host h1 with n output lines, done (ended days ago) or running. */
static uint64_t
job(struct om_store *st, int days_ago, bool done, int lines)
{
	static const struct om_host h = {.name = "h1", .addr = "10.0.0.1", .idc = "dc1", .port = 22};
	struct om_job_spec spec = {"user 'alice'", "all", "shell", NULL, 0, 30, 5};
	struct om_store_chunk c[8];
	struct om_store_state s = {0};
	uint64_t id = 0;
	int i;

	assert_true(lines <= 8);
	spec.wave_size = 1;
	spec.nwaves = 1;
	assert_int_equal(om_store_hosts_upsert(st, &h, 1), 0);
	assert_int_equal(om_store_job_create(st, &spec, &h, 1, &id), 0);
	for (i = 0; i < lines; i++) {
		c[i] = (struct om_store_chunk){id, "h1", 1, (uint64_t)i, (const uint8_t *)"line\n", 5, 1};
	}
	s.job_id = id;
	s.host = "h1";
	s.state = OM_HS_OK;
	assert_int_equal(om_store_ingest(st, c, (size_t)lines, done ? &s : NULL, done ? 1 : 0), 0);
	if (done && days_ago > 0) {
		char q[160];
		snprintf(q, sizeof(q),
		         "UPDATE jobs SET finished_at = now() - interval '%d days' WHERE id = %" PRIu64,
		         days_ago, id);
		assert_int_equal(om__store_run_cmd(st, "test", q, 0, NULL), 0);
	}
	return id;
}

static int64_t
qv(struct fx *f, const char *fmt, ...)
{
	char q[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(q, sizeof(q), fmt, ap);
	va_end(ap);
	return q_int(f, q, 0, NULL);
}

static void
test_partitions_ahead(void **state)
{
	struct fx *f = fx_of(state);
	struct om_retention_stats rs;

	assert_int_equal(qv(f, "SELECT count(*) FROM pg_partitioned_table"
	                       " WHERE partrelid = 'job_events'::regclass"),
	                 1);
	/* migration 7: one partition from 1, wide enough for now */
	assert_int_equal(qv(f, "SELECT count(*) FROM job_event_parts"), 1);
	assert_int_equal(om_store_retention(f->st, 0, &rs), 0);
	assert_int_equal(rs.created, 0);
	/* ids close to the top: partitions ahead, each 1000 wide, until one
	 * full width is left above the last id */
	sql(f->db, "SELECT setval('jobs_id_seq', 1500)");
	assert_int_equal(om_store_retention(f->st, 0, &rs), 0);
	assert_int_equal(rs.created, 2);
	assert_int_equal(qv(f, "SELECT max(hi) FROM job_event_parts"), 3002);
	assert_int_equal(qv(f, "SELECT count(*) FROM pg_inherits"
	                       " WHERE inhparent = 'job_events'::regclass"),
	                 4); /* default + 3 */
	assert_int_equal(om_store_retention(f->st, 0, &rs), 0);
	assert_int_equal(rs.created, 0);
	/* output of a job lands in its partition */
	{
		uint64_t id = job(f->st, 0, true, 2);
		assert_int_equal(id, 1501);
		/* 2 lines, the host's state, the job's end */
		assert_int_equal(qv(f, "SELECT count(*) FROM job_events_p1002 WHERE job_id = 1501"),
		                 4);
	}
}

static void
test_burst_default(void **state)
{
	struct fx *f = fx_of(state);
	struct om_retention_stats rs;
	uint64_t id;

	/* a burst past every partition: nothing refused, it lands in the
	 * default partition, and the next partition starts above it */
	sql(f->db, "SELECT setval('jobs_id_seq', 20000)");
	id = job(f->st, 0, false, 3);
	assert_int_equal(id, 20001);
	assert_int_equal(qv(f, "SELECT count(*) FROM job_events_default"), 3);
	assert_int_equal(om_store_retention(f->st, 0, &rs), 0);
	assert_true(rs.created >= 1);
	assert_int_equal(qv(f, "SELECT min(lo) FROM job_event_parts WHERE lo > 3002"), 20002);
	assert_int_equal(qv(f, "SELECT count(*) FROM job_events_default"), 3);
	/* and later output of that job still lands (in the default partition) */
	{
		struct om_store_chunk c = {id, "h1", 1, 3, (const uint8_t *)"x\n", 2, 1};
		assert_int_equal(om_store_ingest(f->st, &c, 1, NULL, 0), 0);
	}
	assert_int_equal(qv(f, "SELECT count(*) FROM job_events WHERE job_id = %" PRIu64, id), 4);
	sql(f->db, "UPDATE job_hosts SET state = 'ok' WHERE job_id = 20001");
	sql(f->db, "UPDATE jobs SET state = 'done', finished_at = now() WHERE id = 20001");
}

/* Runs with its own database: ids from 1, so partition p1 is [1, 1002). */
static void
test_retention(void **state)
{
	struct fx *f = fx_of(state);
	struct om_retention_stats rs;
	uint64_t old1, old2, recent, running, late;

	/* the cases above moved the id sequence: start over */
	sql(f->db, "SET client_min_messages = warning");
	sql(f->db, "TRUNCATE jobs CASCADE");
	sql(f->db, "SELECT setval('jobs_id_seq', 10, false)");
	old1 = job(f->st, 100, true, 2);
	old2 = job(f->st, 95, true, 2);
	recent = job(f->st, 1, true, 2);
	running = job(f->st, 0, false, 2);
	assert_int_equal(old1, 10);
	assert_int_equal(old2, 11);
	assert_int_equal(running, 13);
	/* p1 still takes new ids: no drop; the expired jobs go row by row */
	assert_int_equal(om_store_retention(f->st, 90, &rs), 0);
	assert_int_equal(rs.dropped, 0);
	assert_int_equal(rs.jobs_deleted, 2);
	assert_int_equal(qv(f, "SELECT count(*) FROM jobs WHERE id IN (10, 11)"), 0);
	assert_int_equal(qv(f, "SELECT count(*) FROM job_events WHERE job_id IN (10, 11)"), 0);
	assert_int_equal(qv(f, "SELECT count(*) FROM job_hosts WHERE job_id IN (10, 11)"), 0);
	assert_int_equal(qv(f, "SELECT count(*) FROM job_events WHERE job_id = %" PRIu64, recent),
	                 4);
	/* every id of p1 allocated: p1 is dropped whole once all its jobs
	 * expired, and not before: a running job keeps it, and an expired job in
	 * it waits for the drop instead of being deleted row by row */
	sql(f->db, "SELECT setval('jobs_id_seq', 1500)");
	late = job(f->st, 0, true, 2);
	sql(f->db, "UPDATE jobs SET finished_at = now() - interval '91 days' WHERE id = 12");
	assert_int_equal(om_store_retention(f->st, 90, &rs), 0);
	assert_int_equal(rs.dropped, 0);
	assert_int_equal(rs.jobs_deleted, 0);
	assert_int_equal(qv(f, "SELECT count(*) FROM jobs WHERE id = 12"), 1);
	sql(f->db, "UPDATE job_hosts SET state = 'ok' WHERE job_id = 13");
	sql(f->db, "UPDATE jobs SET state = 'done', finished_at = now() - interval '91 days'"
	           " WHERE id = 13");
	assert_int_equal(om_store_retention(f->st, 90, &rs), 0);
	assert_int_equal(rs.dropped, 1);
	assert_int_equal(rs.jobs_deleted, 2);
	assert_int_equal(qv(f, "SELECT count(*) FROM pg_class WHERE relname = 'job_events_p1'"), 0);
	assert_int_equal(qv(f, "SELECT count(*) FROM job_event_parts WHERE name = 'job_events_p1'"),
	                 0);
	assert_int_equal(qv(f, "SELECT count(*) FROM jobs WHERE id < 1000"), 0);
	/* the job after them is untouched, output included */
	assert_int_equal(qv(f, "SELECT count(*) FROM job_events WHERE job_id = %" PRIu64, late), 4);
	/* retention 0 keeps everything */
	sql(f->db, "UPDATE jobs SET finished_at = now() - interval '1000 days'");
	assert_int_equal(om_store_retention(f->st, 0, &rs), 0);
	assert_int_equal(rs.jobs_deleted + rs.dropped, 0);
	assert_int_equal(om_store_retention(f->st, -1, &rs), OM_EINVAL);
}

/* An expired job with more output than one transaction deletes: it goes in
 * bounded steps, and the job row last. */
static void
test_big_output(void **state)
{
	struct fx *f = fx_of(state);
	struct om_retention_stats rs;
	uint64_t id;

	sql(f->db, "SET client_min_messages = warning");
	sql(f->db, "TRUNCATE jobs CASCADE");
	/* far above every partition: the default partition, deleted row by row */
	sql(f->db, "SELECT setval('jobs_id_seq', 90000)");
	id = job(f->st, 0, true, 1);
	assert_int_equal(id, 90001);
	sql(f->db, "INSERT INTO job_events (job_id, id, kind, host, stream, seq, data)"
	           " SELECT 90001, 1000 + g, 1, 'h1', 2, g, 'x' FROM generate_series(1, 120000) g");
	sql(f->db, "UPDATE jobs SET finished_at = now() - interval '100 days' WHERE id = 90001");
	assert_int_equal(om_store_retention(f->st, 90, &rs), 0);
	assert_int_equal(rs.jobs_deleted, 1);
	assert_int_equal(qv(f, "SELECT count(*) FROM jobs WHERE id = 90001"), 0);
	assert_int_equal(qv(f, "SELECT count(*) FROM job_events WHERE job_id = 90001"), 0);
}

/* A schema 6 database with output: migration 7 copies it into the partitions. */
static void
test_migration_copies(void **state)
{
	struct fx *f = fx_of(state);
	char dbname[80], ci[2048], err[512], q[160];
	struct om_store *st = NULL;
	PGconn *c;
	uint64_t id;

	snprintf(dbname, sizeof(dbname), "%s_m", f->dbname);
	snprintf(q, sizeof(q), "DROP DATABASE IF EXISTS %s", dbname);
	sql(f->admin, q);
	snprintf(q, sizeof(q), "CREATE DATABASE %s", dbname);
	sql(f->admin, q);
	assert_int_equal(conn_with_db(f->conninfo, dbname, ci, sizeof(ci)), 0);
	om__store_migrate_upto = 6;
	assert_int_equal(om_store_open(&st, ci, err, sizeof(err)), 0);
	om__store_migrate_upto = 0;
	c = PQconnectdb(ci);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	{
		PGresult *r = PQexec(c, "SELECT count(*) FROM pg_partitioned_table");
		assert_string_equal(PQgetvalue(r, 0, 0), "0"); /* schema 6: not yet */
		PQclear(r);
	}
	/* rows as schema 6 has them (this build's job_create needs later columns) */
	assert_int_equal(admin_exec(c, "INSERT INTO jobs (created_by, selector, module, param_keys,"
	                               " param_vals, timeout_s, forks, nhosts, state)"
	                               " VALUES ('t', 'all', 'shell', '{}', '{}', 30, 5, 1, 'done')"),
	                 0);
	assert_int_equal(admin_exec(c, "INSERT INTO job_events (job_id, id, kind, host, stream, seq,"
	                               " data) SELECT 1, g, 1, 'h1', 1, g - 1, convert_to('line' || chr(10), 'UTF8')"
	                               " FROM generate_series(1, 5) g"),
	                 0);
	assert_int_equal(admin_exec(c, "INSERT INTO job_events (job_id, id, kind) VALUES (1, 6, 3)"),
	                 0);
	id = 1;
	om_store_close(st);
	/* the same database opened by this build */
	assert_int_equal(om_store_open(&st, ci, err, sizeof(err)), 0);
	{
		PGresult *r = PQexec(c, "SELECT count(*) FROM job_events_p1 WHERE job_id = 1");
		assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
		assert_string_equal(PQgetvalue(r, 0, 0), "6"); /* 5 lines, the end */
		PQclear(r);
	}
	/* exactly once still holds on the copied rows */
	{
		struct om_store_chunk ch = {id, "h1", 1, 0, (const uint8_t *)"line\n", 5, 1};
		PGresult *r;
		assert_int_equal(om_store_ingest(st, &ch, 1, NULL, 0), 0);
		r = PQexec(c, "SELECT count(*) FROM job_events WHERE job_id = 1 AND kind = 1");
		assert_string_equal(PQgetvalue(r, 0, 0), "5");
		PQclear(r);
	}
	om_store_close(st);
	PQfinish(c);
	snprintf(q, sizeof(q), "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
	sql(f->admin, q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_partitions_ahead),
	        cmocka_unit_test(test_burst_default),
	        cmocka_unit_test(test_retention),
	        cmocka_unit_test(test_big_output),
	        cmocka_unit_test(test_migration_copies),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
