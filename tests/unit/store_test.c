/*
 * master/store.c against a real PostgreSQL.
 *
 * OM_TEST_PGCONN is a conninfo to an admin database; the group setup creates
 * om_store_test_<pid> there, every case works in it, the teardown drops it.
 * Without OM_TEST_PGCONN every case is skipped.
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
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "om/base.h"
#include "om/msg.h"
#include "store.h"
#include "store_int.h"

#include "pgfx.h"

static int
group_setup(void **state)
{
	return pgfx_setup(state, "om_store_test");
}

/* A job over hosts h[0..n) ("<prefix>-<i>"), dispatched as one task. */
static uint64_t
make_job(struct fx *f, const char *prefix, size_t n)
{
	struct om_host *hs = calloc(n ? n : 1, sizeof(*hs));
	const char **names = calloc(n ? n : 1, sizeof(*names));
	struct om_kv kv[2] = {{"cmd", "echo \"hi\" \\ {x,y}"}, {"empty", NULL}};
	struct om_job_spec spec = {"tester", "group:web", "shell", kv, 2, 30, 5};
	uint64_t job = 0, task = 0;
	size_t i;

	assert_non_null(hs);
	assert_non_null(names);
	for (i = 0; i < n; i++) {
		char *name = malloc(64);
		assert_non_null(name);
		snprintf(name, 64, "%s-%zu", prefix, i);
		hs[i].name = name;
		hs[i].addr = "10.0.0.1";
		hs[i].idc = "dc1";
		hs[i].port = 22;
		names[i] = name;
	}
	assert_int_equal(om_store_job_create(f->st, &spec, hs, n, &job), 0);
	assert_true(job > 0);
	if (n > 0) {
		assert_int_equal(om_store_task_create(f->st, job, "dc1", "w1", names, n, &task), 0);
		assert_true(task > 0);
	}
	for (i = 0; i < n; i++)
		free(hs[i].name);
	free(hs);
	free(names);
	return job;
}

static struct om_store_chunk
chunk(uint64_t job, const char *host, uint32_t stream, uint64_t seq, const void *d, size_t len)
{
	struct om_store_chunk c = {job, host, stream, seq, d, len};
	return c;
}

static struct om_store_state
hstate(uint64_t job, const char *host, uint32_t s, int32_t code, const char *reason)
{
	struct om_store_state x = {job, host, s, code, reason, 1234};
	return x;
}

/* --- cases ------------------------------------------------------------------------- */

static void
test_migrations(void **state)
{
	struct fx *f = fx_of(state);
	struct om_store *again = NULL;
	char err[256];

	assert_true(om_store_schema_version(f->st) >= 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM schema_migrations", 0, NULL),
	                 om_store_schema_version(f->st));
	/* a second master opening the same database applies nothing */
	assert_int_equal(om_store_open(&again, f->conninfo, err, sizeof(err)), 0);
	assert_int_equal(om_store_schema_version(again), om_store_schema_version(f->st));
	assert_int_equal(q_int(f, "SELECT count(*) FROM schema_migrations", 0, NULL),
	                 om_store_schema_version(f->st));
	om_store_close(again);
	/* the lock is not left behind */
	assert_int_equal(
	        q_int(f, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'", 0, NULL), 0);
}

static void
test_open_bad(void **state)
{
	struct om_store *st = (struct om_store *)1;
	char err[256];

	(void)fx_of(state);
	assert_int_equal(om_store_open(&st, "host=/nonexistent-dir port=1 connect_timeout=2", err,
	                               sizeof(err)),
	                 OM_EDB);
	assert_null(st);
	assert_true(err[0] != '\0');
}

static void
test_hosts(void **state)
{
	struct fx *f = fx_of(state);
	char *g1[] = {"web", "a b", "q\"x\\y", "NULL", "{}"};
	char *g2[] = {"db"};
	struct om_host in[2] = {
	        {"web1", "10.0.0.1", "root", "dc1", 2222, g1, 5},
	        {"db1", "db1.example", NULL, "dc2", 0, NULL, 0},
	};
	struct om_host *out = NULL;
	size_t n = 0, i;

	assert_int_equal(om_store_hosts_upsert(f->st, in, 2), 0);
	assert_int_equal(om_store_hosts_load(f->st, &out, &n), 0);
	assert_int_equal(n, 2);
	/* ordered by name */
	assert_string_equal(out[0].name, "db1");
	assert_string_equal(out[0].addr, "db1.example");
	assert_null(out[0].user);
	assert_string_equal(out[0].idc, "dc2");
	assert_int_equal(out[0].port, 22); /* 0 means 22 */
	assert_int_equal(out[0].ngroups, 0);
	assert_string_equal(out[1].name, "web1");
	assert_string_equal(out[1].user, "root");
	assert_int_equal(out[1].port, 2222);
	assert_int_equal(out[1].ngroups, 5);
	for (i = 0; i < 5; i++)
		assert_string_equal(out[1].groups[i], g1[i]);
	om_hosts_free(out, n);

	/* upsert replaces everything, groups included */
	in[1].user = "admin";
	in[1].groups = g2;
	in[1].ngroups = 1;
	in[1].addr = "10.9.9.9";
	in[0].groups = NULL;
	in[0].ngroups = 0;
	assert_int_equal(om_store_hosts_upsert(f->st, in, 2), 0);
	assert_int_equal(om_store_hosts_load(f->st, &out, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(out[0].addr, "10.9.9.9");
	assert_string_equal(out[0].user, "admin");
	assert_int_equal(out[0].ngroups, 1);
	assert_string_equal(out[0].groups[0], "db");
	assert_int_equal(out[1].ngroups, 0);
	om_hosts_free(out, n);

	/* invalid input refuses the whole batch: the first host is unchanged */
	in[0].addr = "10.1.1.1";
	in[1].port = 70000;
	assert_int_equal(om_store_hosts_upsert(f->st, in, 2), OM_EINVAL);
	in[1].port = 22;
	in[1].idc = NULL;
	assert_int_equal(om_store_hosts_upsert(f->st, in, 2), OM_EINVAL);
	assert_int_equal(om_store_hosts_load(f->st, &out, &n), 0);
	assert_string_equal(out[1].addr, "10.0.0.1");
	om_hosts_free(out, n);

	/* filtered: by name, IDC or group, any of them; still ordered by name */
	{
		const char *names[] = {"web1", "nohost"}, *idcs[] = {"dc2"}, *groups[] = {"db"};
		struct om_host_filter hf = {.names = names, .nnames = 1};

		assert_int_equal(om_store_hosts_load_filtered(f->st, &hf, &out, &n), 0);
		assert_int_equal(n, 1);
		assert_string_equal(out[0].name, "web1");
		om_hosts_free(out, n);
		hf.names = names + 1;
		assert_int_equal(om_store_hosts_load_filtered(f->st, &hf, &out, &n), 0);
		assert_int_equal(n, 0);
		om_hosts_free(out, n);
		hf.idcs = idcs;
		hf.nidcs = 1;
		assert_int_equal(om_store_hosts_load_filtered(f->st, &hf, &out, &n), 0);
		assert_int_equal(n, 1);
		assert_string_equal(out[0].name, "db1");
		om_hosts_free(out, n);
		hf.names = names;
		hf.nidcs = 0;
		hf.groups = groups;
		hf.ngroups = 1;
		assert_int_equal(om_store_hosts_load_filtered(f->st, &hf, &out, &n), 0);
		assert_int_equal(n, 2);
		assert_string_equal(out[0].name, "db1");
		assert_string_equal(out[1].name, "web1");
		om_hosts_free(out, n);
	}
}

static void
test_workers(void **state)
{
	struct fx *f = fx_of(state);
	struct om_worker_info *w = NULL;
	uint64_t id1 = 0, id2 = 0, id3 = 0;
	size_t n = 0;

	assert_int_equal(om_store_worker_seen(f->st, "w-b", "dc2", "fp1", &id1), 0);
	assert_int_equal(om_store_worker_seen(f->st, "w-a", "dc2", "fp9", &id3), 0);
	assert_int_equal(om_store_worker_seen(f->st, "w-b", "dc1", "fp2", &id2), 0);
	assert_true(id1 > 0);
	assert_int_equal(id1, id2);
	assert_true(id3 != id1);
	assert_int_equal(om_store_workers_load(f->st, &w, &n), 0);
	assert_int_equal(n, 2);
	/* ordered by IDC, then name */
	assert_string_equal(w[0].name, "w-b");
	assert_string_equal(w[0].idc, "dc1");
	assert_string_equal(w[0].fingerprint, "fp2");
	assert_false(w[0].connected);
	assert_int_equal(w[0].running, 0);
	assert_true(w[0].last_seen_ms > 1600000000000LL);
	assert_string_equal(w[1].name, "w-a");
	om_workers_free(w, n);
}

static void
test_job_rows(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t job = make_job(f, "jr", 3), task = 0;
	const char *hn[1] = {"jr-0"}, *nohost[1] = {"zz"};
	char jid[24];
	const char *v[1] = {jid};
	PGresult *r;

	snprintf(jid, sizeof(jid), "%" PRIu64, job);
	assert_int_equal(q_int(f, "SELECT nhosts FROM jobs WHERE id = $1", 1, v), 3);
	assert_int_equal(
	        q_int(f,
	              "SELECT count(*) FROM job_hosts WHERE job_id = $1"
	              " AND state = 'dispatched' AND task_id IS NOT NULL AND worker = 'w1'",
	              1, v),
	        3);
	r = PQexecParams(f->db,
	                 "SELECT param_keys[1], param_vals[1], param_vals[2] IS NULL"
	                 " FROM jobs WHERE id = $1",
	                 1, NULL, v, NULL, NULL, 0);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_string_equal(PQgetvalue(r, 0, 0), "cmd");
	assert_string_equal(PQgetvalue(r, 0, 1), "echo \"hi\" \\ {x,y}");
	assert_string_equal(PQgetvalue(r, 0, 2), "t");
	PQclear(r);
	/* hosts already dispatched don't go to a second task; nothing changes */
	assert_int_equal(om_store_task_create(f->st, job, "dc1", "w2", hn, 1, &task), OM_EBUSY);
	assert_int_equal(om_store_task_create(f->st, job, "dc1", "w2", nohost, 1, &task), OM_EBUSY);
	assert_int_equal(q_int(f, "SELECT count(*) FROM tasks WHERE job_id = $1", 1, v), 1);
	assert_int_equal(om_store_task_create(f->st, 999999, "dc1", "w2", hn, 1, &task),
	                 OM_ENOTFOUND);
	/* the store is usable after those failures */
	assert_int_equal(q_int(f, "SELECT count(*) FROM tasks WHERE worker = 'w2'", 0, NULL), 0);
	make_job(f, "jr2", 1);
}

static void
test_bytes_exact(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t job = make_job(f, "bx", 2);
	static const uint8_t nul[] = {'a', 0, 'b', 0, 0};
	static const uint8_t bad[] = {0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1};
	static const uint8_t ff[] = {0xff, 0xfe, 0xff};
	uint8_t big[OM_MAX_CHUNK];
	struct om_store_chunk c[5];
	struct om_event *ev = NULL;
	size_t n = 0, i;
	bool done = true;

	for (i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	c[0] = chunk(job, "bx-0", OM_STREAM_STDOUT, 0, nul, sizeof(nul));
	c[1] = chunk(job, "bx-0", OM_STREAM_STDERR, 0, bad, sizeof(bad));
	c[2] = chunk(job, "bx-1", OM_STREAM_STDOUT, 0, ff, sizeof(ff));
	c[3] = chunk(job, "bx-1", OM_STREAM_STDOUT, 1, NULL, 0);
	c[4] = chunk(job, "bx-1", OM_STREAM_STDOUT, 2, big, sizeof(big));
	assert_int_equal(om_store_ingest(f->st, c, 5, NULL, 0), 0);
	assert_int_equal(om_store_events_read(f->st, job, 0, 100, &ev, &n, &done), 0);
	assert_int_equal(n, 5);
	assert_false(done);
	for (i = 0; i < 5; i++) {
		assert_int_equal(ev[i].kind, OM_EV_OUTPUT);
		assert_string_equal(ev[i].host, c[i].host);
		assert_int_equal(ev[i].stream, c[i].stream);
		assert_int_equal(ev[i].len, c[i].len);
		if (c[i].len)
			assert_memory_equal(ev[i].data, c[i].data, c[i].len);
		assert_null(ev[i].reason);
		if (i > 0)
			assert_true(ev[i].id > ev[i - 1].id);
	}
	om_events_free(ev, n);
}

static void
test_duplicates(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t job = make_job(f, "dup", 1);
	struct om_store_chunk c[3];
	struct om_event *ev = NULL;
	size_t n = 0;
	bool done;

	c[0] = chunk(job, "dup-0", 1, 0, "one", 3);
	c[1] = chunk(job, "dup-0", 1, 0, "one", 3); /* same batch */
	c[2] = chunk(job, "dup-0", 2, 0, "err", 3); /* other stream: not a duplicate */
	assert_int_equal(om_store_ingest(f->st, c, 3, NULL, 0), 0);
	/* a re-sent batch after a lost ack */
	assert_int_equal(om_store_ingest(f->st, c, 3, NULL, 0), 0);
	c[0] = chunk(job, "dup-0", 1, 1, "two", 3);
	assert_int_equal(om_store_ingest(f->st, c, 1, NULL, 0), 0);
	assert_int_equal(om_store_events_read(f->st, job, 0, 100, &ev, &n, &done), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(ev[0].data, "one", 3);
	assert_int_equal(ev[1].stream, 2);
	assert_memory_equal(ev[2].data, "two", 3);
	om_events_free(ev, n);
}

static void
test_paging(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t job = make_job(f, "pg", 1), cursor = 0, last = 0;
	struct om_store_chunk c[5];
	struct om_event *ev = NULL;
	char data[5][8];
	size_t n = 0, got = 0, i, pages = 0;
	bool done = true;

	for (i = 0; i < 5; i++) {
		snprintf(data[i], sizeof(data[i]), "line%zu", i);
		c[i] = chunk(job, "pg-0", 1, i, data[i], strlen(data[i]));
	}
	assert_int_equal(om_store_ingest(f->st, c, 5, NULL, 0), 0);
	do {
		assert_int_equal(om_store_events_read(f->st, job, cursor, 2, &ev, &n, &done), 0);
		assert_true(n <= 2);
		for (i = 0; i < n; i++) {
			assert_true(ev[i].id > last);
			last = ev[i].id;
			assert_memory_equal(ev[i].data, data[got], strlen(data[got]));
			got++;
		}
		if (n)
			cursor = ev[n - 1].id;
		om_events_free(ev, n);
		assert_false(done); /* the host is still running */
		pages++;
	} while (n > 0);
	assert_int_equal(got, 5);
	assert_int_equal(pages, 4); /* 2 + 2 + 1 + empty */
}

/*
 * A long run of burnt ids: each call looks at a bounded window of ids, so
 * it may return nothing with a cursor that moved; following the cursor
 * still yields every event once, in order, and the end.
 */
static void
test_gap_windows(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t job = make_job(f, "gw", 1), cursor = 0, next = 0, last = 0;
	struct om_store_chunk c[1];
	struct om_store_state s[1];
	struct om_event *ev = NULL;
	char jid[24];
	const char *v[1] = {jid};
	size_t n = 0, i, lines = 0, calls = 0, empty_moves = 0;
	bool done = false, end = false;
	PGresult *r;

	c[0] = chunk(job, "gw-0", 1, 0, "first", 5);
	assert_int_equal(om_store_ingest(f->st, c, 1, NULL, 0), 0);
	snprintf(jid, sizeof(jid), "%" PRIu64, job);
	r = PQexecParams(f->db, "UPDATE jobs SET last_event = last_event + 40000 WHERE id = $1", 1,
	                 NULL, v, NULL, NULL, 0);
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	c[0] = chunk(job, "gw-0", 1, 1, "second", 6);
	s[0] = hstate(job, "gw-0", OM_HS_OK, 0, NULL);
	assert_int_equal(om_store_ingest(f->st, c, 1, s, 1), 0);
	do {
		assert_true(calls++ < 100);
		assert_int_equal(om_store_events_query(f->st, job, cursor, 10, 0, NULL, &ev, &n,
		                                       &done, &next),
		                 0);
		for (i = 0; i < n; i++) {
			assert_true(ev[i].id > last && ev[i].id <= next);
			last = ev[i].id;
			if (ev[i].kind == OM_EV_OUTPUT) {
				const char *want = lines == 0 ? "first" : "second";
				assert_int_equal(ev[i].len, strlen(want));
				assert_memory_equal(ev[i].data, want, strlen(want));
				lines++;
			}
			if (ev[i].kind == OM_EV_JOB_DONE)
				end = true;
		}
		om_events_free(ev, n);
		if (!done) /* never stuck: either events or a cursor that moved */
			assert_true(next > cursor);
		if (n == 0 && !done)
			empty_moves++;
		cursor = next;
	} while (!done);
	assert_int_equal(lines, 2);
	assert_true(end);
	assert_true(empty_moves >= 1); /* 40,000 ids are more than one call looks at */
	/* the plain read keeps its contract on a job without gaps */
	assert_int_equal(om_store_events_read(f->st, job, last, 10, &ev, &n, &done), 0);
	assert_int_equal(n, 0);
	assert_true(done);
}

static long
count_rows(struct fx *f, const char *sql)
{
	PGresult *r = PQexec(f->db, sql);
	long n;

	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	n = atol(PQgetvalue(r, 0, 0));
	PQclear(r);
	return n;
}

/*
 * om__store_begin sends BEGIN with the next statement: the transaction
 * still holds (rollback undoes, commit keeps), an empty one costs nothing,
 * and a failed statement leaves a session that works.
 */
static void
test_deferred_begin(void **state)
{
	struct fx *f = fx_of(state);
	const char *one[1] = {"1"}, *bad[1] = {"x"};

	PQclear(PQexec(f->db, "CREATE TABLE dbegin (x int NOT NULL)"));
	/* rolled back: never visible */
	assert_int_equal(om__store_begin(f->st), 0);
	assert_int_equal(PQtransactionStatus(f->st->conn), PQTRANS_IDLE); /* nothing sent yet */
	assert_int_equal(
	        om__store_run_cmd(f->st, "t", "INSERT INTO dbegin VALUES ($1::int)", 1, one), 0);
	assert_int_equal(PQtransactionStatus(f->st->conn), PQTRANS_INTRANS);
	assert_int_equal(
	        om__store_run_cmd(f->st, "t", "INSERT INTO dbegin VALUES ($1::int)", 1, one), 0);
	om__store_rollback(f->st);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM dbegin"), 0);
	/* committed: both rows, and not before the commit */
	assert_int_equal(om__store_begin(f->st), 0);
	assert_int_equal(
	        om__store_run_cmd(f->st, "t", "INSERT INTO dbegin VALUES ($1::int)", 1, one), 0);
	assert_int_equal(
	        om__store_run_cmd(f->st, "t", "INSERT INTO dbegin VALUES ($1::int)", 1, one), 0);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM dbegin"), 0);
	assert_int_equal(om__store_run_cmd(f->st, "t", "COMMIT", 0, NULL), 0);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM dbegin"), 2);
	/* empty: COMMIT and ROLLBACK with nothing before them */
	assert_int_equal(om__store_begin(f->st), 0);
	assert_int_equal(om__store_run_cmd(f->st, "t", "COMMIT", 0, NULL), 0);
	assert_int_equal(om__store_begin(f->st), 0);
	om__store_rollback(f->st);
	assert_int_equal(PQtransactionStatus(f->st->conn), PQTRANS_IDLE);
	/* the first statement fails: an error, then a usable session */
	assert_int_equal(om__store_begin(f->st), 0);
	assert_int_equal(
	        om__store_run_cmd(f->st, "t", "INSERT INTO dbegin VALUES ($1::int)", 1, bad),
	        OM_EDB);
	assert_non_null(strstr(om_store_errmsg(f->st), "integer"));
	om__store_rollback(f->st);
	/* a statement not cached (not DML) takes the same path */
	assert_int_equal(om__store_begin(f->st), 0);
	assert_int_equal(om__store_run_cmd(f->st, "t", "LOCK TABLE dbegin", 0, NULL), 0);
	assert_int_equal(PQtransactionStatus(f->st->conn), PQTRANS_INTRANS);
	om__store_rollback(f->st);
	assert_int_equal(om__store_begin(f->st), 0);
	assert_int_equal(
	        om__store_run_cmd(f->st, "t", "INSERT INTO dbegin VALUES ($1::int)", 1, one), 0);
	assert_int_equal(om__store_run_cmd(f->st, "t", "COMMIT", 0, NULL), 0);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM dbegin"), 3);
	PQclear(PQexec(f->db, "DROP TABLE dbegin"));
}

/*
 * A table changed under a prepared statement ("cached plan must not change
 * result type", as when another master migrates): the call fails once, the
 * statement is prepared again, the next call sees the new columns.  Through
 * a batch and through a single statement with a deferred BEGIN.
 */
static void
test_stale_statement(void **state)
{
	struct fx *f = fx_of(state);
	const struct om__call sel[1] = {{"SELECT * FROM sstale", 0, NULL, NULL, NULL, 0}};
	PGresult *res[1] = {NULL}, *r;
	int pid;

	PQclear(PQexec(f->db, "CREATE TABLE sstale (x int); INSERT INTO sstale VALUES (1)"));
	assert_int_equal(om__store_ready(f->st), 0);
	assert_int_equal(om__store_batch(f->st, "t", sel, 1, res), 0);
	assert_int_equal(PQnfields(res[0]), 1);
	PQclear(res[0]);
	pid = PQbackendPID(f->st->conn);
	PQclear(PQexec(f->db, "ALTER TABLE sstale ADD COLUMN y int"));
	res[0] = NULL;
	assert_int_equal(om__store_batch(f->st, "t", sel, 1, res), OM_EDB);
	assert_null(res[0]);
	assert_non_null(strstr(om_store_errmsg(f->st), "result type"));
	assert_int_equal(om__store_batch(f->st, "t", sel, 1, res), 0);
	assert_int_equal(PQnfields(res[0]), 2);
	PQclear(res[0]);
	assert_int_equal(PQbackendPID(f->st->conn), pid); /* dropped, not reconnected */
	/* one statement, BEGIN riding with it */
	assert_int_equal(om__store_ready(f->st), 0);
	r = om__store_exec(f->st, sel[0].sql, 0, NULL, NULL, NULL, 0);
	assert_int_equal(PQnfields(r), 2);
	PQclear(r);
	PQclear(PQexec(f->db, "ALTER TABLE sstale ADD COLUMN z int"));
	assert_int_equal(om__store_begin(f->st), 0);
	r = om__store_exec(f->st, sel[0].sql, 0, NULL, NULL, NULL, 0);
	assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
	assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "0A000");
	PQclear(r);
	om__store_rollback(f->st);
	assert_int_equal(om__store_ready(f->st), 0);
	r = om__store_exec(f->st, sel[0].sql, 0, NULL, NULL, NULL, 0);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_int_equal(PQnfields(r), 3);
	PQclear(r);
	PQclear(PQexec(f->db, "DROP TABLE sstale"));
}

/* om__store_batch: results in order, one error aborts the lot, the session goes on. */
static void
test_statement_batch(void **state)
{
	struct fx *f = fx_of(state);
	const char *one[1] = {"1"}, *two[1] = {"2"}, *bad[1] = {"x"};
	const struct om__call ok[3] = {
	        {"INSERT INTO sbatch VALUES ($1::int)", 1, one, NULL, NULL, 0},
	        {"INSERT INTO sbatch VALUES ($1::int)", 1, two, NULL, NULL, 0},
	        {"SELECT sum(x) FROM sbatch", 0, NULL, NULL, NULL, 0},
	};
	const struct om__call fail[3] = {
	        {"INSERT INTO sbatch VALUES ($1::int)", 1, one, NULL, NULL, 0},
	        {"INSERT INTO sbatch VALUES ($1::int)", 1, bad, NULL, NULL, 0},
	        {"COMMIT", 0, NULL, NULL, NULL, 0},
	};
	PGresult *res[3] = {NULL, NULL, NULL};

	PQclear(PQexec(f->db, "CREATE TABLE sbatch (x int NOT NULL)"));
	assert_int_equal(om__store_begin(f->st), 0);
	assert_int_equal(om__store_batch(f->st, "t", ok, 3, res), 0);
	assert_int_equal(PQtransactionStatus(f->st->conn), PQTRANS_INTRANS);
	assert_string_equal(PQgetvalue(res[2], 0, 0), "3"); /* saw both rows, in order */
	for (int i = 0; i < 3; i++)
		PQclear(res[i]);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM sbatch"), 0); /* not committed */
	assert_int_equal(om__store_run_cmd(f->st, "t", "COMMIT", 0, NULL), 0);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM sbatch"), 2);
	/* the second fails: the first error is reported, nothing is kept */
	assert_int_equal(om__store_begin(f->st), 0);
	res[0] = res[1] = res[2] = NULL;
	assert_int_equal(om__store_batch(f->st, "t", fail, 3, res), OM_EDB);
	assert_null(res[0]);
	assert_non_null(strstr(om_store_errmsg(f->st), "integer"));
	om__store_rollback(f->st);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM sbatch"), 2);
	/* and the session works */
	assert_int_equal(om__store_batch(f->st, "t", ok + 2, 1, res), 0);
	assert_string_equal(PQgetvalue(res[0], 0, 0), "3");
	PQclear(res[0]);
	assert_int_equal(om__store_batch(f->st, "t", ok, 0, res), OM_EDB); /* no statements */
	PQclear(PQexec(f->db, "DROP TABLE sbatch"));
}

static void
test_states_and_done(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t job = make_job(f, "st", 2), cursor;
	struct om_store_state s[3];
	struct om_store_chunk c[1];
	struct om_event *ev = NULL;
	char jid[24];
	const char *v[1] = {jid};
	size_t n = 0;
	bool done = true;
	PGresult *r;

	snprintf(jid, sizeof(jid), "%" PRIu64, job);
	/* running: the row moves, no event */
	s[0] = hstate(job, "st-0", OM_HS_RUNNING, 0, NULL);
	s[1] = hstate(job, "st-1", OM_HS_RUNNING, 0, NULL);
	assert_int_equal(om_store_ingest(f->st, NULL, 0, s, 2), 0);
	assert_int_equal(q_int(f,
	                       "SELECT count(*) FROM job_hosts WHERE job_id = $1"
	                       " AND state = 'running' AND started_at IS NOT NULL",
	                       1, v),
	                 2);
	assert_int_equal(om_store_events_read(f->st, job, 0, 10, &ev, &n, &done), 0);
	assert_int_equal(n, 0);
	assert_false(done);

	/* a final state, then a second final state for the same host: ignored */
	c[0] = chunk(job, "st-0", 1, 0, "out", 3);
	s[0] = hstate(job, "st-0", OM_HS_OK, 0, NULL);
	assert_int_equal(om_store_ingest(f->st, c, 1, s, 1), 0);
	s[0] = hstate(job, "st-0", OM_HS_FAILED, 3, "late");
	assert_int_equal(om_store_ingest(f->st, NULL, 0, s, 1), 0);
	r = PQexecParams(
	        f->db,
	        "SELECT state, exit_code, reason IS NULL, duration_ms,"
	        " finished_at IS NOT NULL FROM job_hosts WHERE job_id = $1 AND host = 'st-0'",
	        1, NULL, v, NULL, NULL, 0);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_string_equal(PQgetvalue(r, 0, 0), "ok");
	assert_string_equal(PQgetvalue(r, 0, 1), "0");
	assert_string_equal(PQgetvalue(r, 0, 2), "t");
	assert_string_equal(PQgetvalue(r, 0, 3), "1234");
	assert_string_equal(PQgetvalue(r, 0, 4), "t");
	PQclear(r);
	assert_int_equal(om_store_events_read(f->st, job, 0, 10, &ev, &n, &done), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ev[0].kind, OM_EV_OUTPUT);
	assert_int_equal(ev[1].kind, OM_EV_STATE);
	assert_string_equal(ev[1].host, "st-0");
	assert_int_equal(ev[1].state, OM_HS_OK);
	assert_int_equal(ev[1].exit_code, 0);
	assert_int_equal(ev[1].duration_ms, 1234);
	assert_null(ev[1].reason);
	assert_false(done);
	cursor = ev[1].id;
	om_events_free(ev, n);

	/* the last host ends (with a reason that is not UTF-8): job done, once */
	s[0] = hstate(job, "st-1", OM_HS_FAILED, -1, "exit \xff\xfe status");
	s[1] = hstate(job, "st-1", OM_HS_TIMEOUT, 0, "dup"); /* same batch: ignored */
	assert_int_equal(om_store_ingest(f->st, NULL, 0, s, 2), 0);
	assert_int_equal(om_store_ingest(f->st, NULL, 0, s, 1), 0);
	assert_int_equal(om_store_events_read(f->st, job, cursor, 10, &ev, &n, &done), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ev[0].kind, OM_EV_STATE);
	assert_int_equal(ev[0].state, OM_HS_FAILED);
	assert_int_equal(ev[0].exit_code, -1);
	assert_string_equal(ev[0].reason, "exit ?? status");
	assert_int_equal(ev[1].kind, OM_EV_JOB_DONE);
	assert_null(ev[1].host);
	assert_true(done);
	cursor = ev[1].id;
	om_events_free(ev, n);
	assert_int_equal(
	        q_int(f, "SELECT count(*) FROM job_events WHERE job_id = $1 AND kind = 3", 1, v),
	        1);
	assert_int_equal(q_int(f,
	                       "SELECT count(*) FROM jobs WHERE id = $1 AND state = 'done'"
	                       " AND finished_at IS NOT NULL",
	                       1, v),
	                 1);
	/* nothing after the cursor and the job is done */
	assert_int_equal(om_store_events_read(f->st, job, cursor, 10, &ev, &n, &done), 0);
	assert_int_equal(n, 0);
	assert_true(done);
	/* a page that stops before the end is not done */
	assert_int_equal(om_store_events_read(f->st, job, 0, 1, &ev, &n, &done), 0);
	assert_int_equal(n, 1);
	assert_false(done);
	om_events_free(ev, n);
	/* a late duplicate chunk burns an id but adds no event: still done */
	c[0] = chunk(job, "st-0", 1, 0, "out", 3);
	assert_int_equal(om_store_ingest(f->st, c, 1, NULL, 0), 0);
	assert_int_equal(om_store_events_read(f->st, job, cursor, 10, &ev, &n, &done), 0);
	assert_int_equal(n, 0);
	assert_true(done);
}

static void
test_empty_job(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t job = make_job(f, "none", 0);
	struct om_event *ev = NULL;
	size_t n = 0;
	bool done = false;

	assert_int_equal(om_store_events_read(f->st, job, 0, 10, &ev, &n, &done), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ev[0].kind, OM_EV_JOB_DONE);
	assert_true(done);
	om_events_free(ev, n);
}

static void
test_missing_job(void **state)
{
	struct fx *f = fx_of(state);
	struct om_event *ev = (struct om_event *)1;
	size_t n = 7;
	bool done = true;

	assert_int_equal(om_store_events_read(f->st, 987654321, 0, 10, &ev, &n, &done),
	                 OM_ENOTFOUND);
	assert_null(ev);
	assert_int_equal(n, 0);
	assert_int_equal(om_store_events_read(f->st, 0, 0, 10, &ev, &n, &done), OM_ENOTFOUND);
}

static void
test_batch_rollback(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t job = make_job(f, "rb", 1);
	struct om_store_chunk c[2];
	struct om_store_state s[1];
	struct om_event *ev = NULL;
	char jid[24];
	const char *v[1] = {jid};
	size_t n = 0;
	bool done;

	snprintf(jid, sizeof(jid), "%" PRIu64, job);
	c[0] = chunk(job, "rb-0", 1, 0, "kept?", 5);
	c[1] = chunk(987654321, "rb-0", 1, 0, "orphan", 6); /* no such job */
	s[0] = hstate(job, "rb-0", OM_HS_OK, 0, NULL);
	assert_int_equal(om_store_ingest(f->st, c, 2, s, 1), OM_EDB);
	assert_true(strlen(om_store_errmsg(f->st)) > 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM job_events WHERE job_id = $1", 1, v), 0);
	assert_int_equal(q_int(f, "SELECT last_event FROM jobs WHERE id = $1", 1, v), 0);
	assert_int_equal(q_int(f,
	                       "SELECT count(*) FROM job_hosts WHERE job_id = $1"
	                       " AND state = 'dispatched'",
	                       1, v),
	                 1);
	/* bad input is refused before any SQL */
	c[1] = chunk(job, NULL, 1, 1, "x", 1);
	assert_int_equal(om_store_ingest(f->st, c, 2, NULL, 0), OM_EINVAL);
	s[0].state = OM_HS_COUNT_;
	assert_int_equal(om_store_ingest(f->st, NULL, 0, s, 1), OM_EINVAL);
	/* the session recovered: the same good rows go in now */
	s[0].state = OM_HS_OK;
	assert_int_equal(om_store_ingest(f->st, c, 1, s, 1), 0);
	assert_int_equal(om_store_events_read(f->st, job, 0, 10, &ev, &n, &done), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(ev[0].data, "kept?", 5);
	assert_true(done);
	om_events_free(ev, n);
}

static void
test_reconnect(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t job = make_job(f, "rc", 1);
	const char *v[1] = {f->dbname};
	struct om_event *ev = NULL;
	size_t n = 0;
	bool done;
	int rv;
	PGresult *r;

	/* kill every session of the test database (the store's and ours) */
	r = PQexecParams(f->admin,
	                 "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
	                 " WHERE datname = $1",
	                 1, NULL, v, NULL, NULL, 0);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	usleep(200 * 1000);
	/* the first call may find out the hard way; the next one reconnects */
	rv = om_store_events_read(f->st, job, 0, 10, &ev, &n, &done);
	if (rv == 0)
		om_events_free(ev, n);
	else
		assert_int_equal(rv, OM_EDB);
	assert_int_equal(om_store_events_read(f->st, job, 0, 10, &ev, &n, &done), 0);
	om_events_free(ev, n);
	/* prepared statements came back with the new session */
	{
		struct om_store_chunk c = chunk(job, "rc-0", 1, 0, "x", 1);
		assert_int_equal(om_store_ingest(f->st, &c, 1, NULL, 0), 0);
	}
	PQreset(f->db);
	assert_int_equal(PQstatus(f->db), CONNECTION_OK);
}

static double
ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static void
test_ingest_timing(void **state)
{
	struct fx *f = fx_of(state);
	enum { NCHUNK = 2000, NHOST = 20 };
	uint64_t job = make_job(f, "tm", NHOST);
	struct om_store_chunk *c = calloc(NCHUNK, sizeof(*c));
	struct om_store_state s[NHOST];
	char names[NHOST][16], jid[24];
	const char *v[1] = {jid};
	uint8_t line[120];
	struct timespec t0;
	double ms, ms_dup, ms_states;
	size_t i;

	assert_non_null(c);
	memset(line, 'x', sizeof(line));
	line[sizeof(line) - 1] = '\n';
	for (i = 0; i < NHOST; i++)
		snprintf(names[i], sizeof(names[i]), "tm-%zu", i);
	for (i = 0; i < NCHUNK; i++)
		c[i] = chunk(job, names[i % NHOST], 1, i / NHOST, line, sizeof(line));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(om_store_ingest(f->st, c, NCHUNK, NULL, 0), 0);
	ms = ms_since(&t0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(om_store_ingest(f->st, c, NCHUNK, NULL, 0), 0); /* all duplicates */
	ms_dup = ms_since(&t0);
	for (i = 0; i < NHOST; i++)
		s[i] = hstate(job, names[i], OM_HS_OK, 0, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(om_store_ingest(f->st, NULL, 0, s, NHOST), 0);
	ms_states = ms_since(&t0);
	snprintf(jid, sizeof(jid), "%" PRIu64, job);
	assert_int_equal(
	        q_int(f, "SELECT count(*) FROM job_events WHERE job_id = $1 AND kind = 1", 1, v),
	        NCHUNK);
	assert_int_equal(
	        q_int(f, "SELECT count(*) FROM job_events WHERE job_id = $1 AND kind = 3", 1, v),
	        1);
	printf("  ingest of %d chunks x %zu bytes in one call: %.1f ms (re-sent as duplicates: "
	       "%.1f ms); %d final states: %.1f ms\n",
	       NCHUNK, sizeof(line), ms, ms_dup, NHOST, ms_states);
	free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_migrations),      cmocka_unit_test(test_open_bad),
	        cmocka_unit_test(test_hosts),           cmocka_unit_test(test_workers),
	        cmocka_unit_test(test_job_rows),        cmocka_unit_test(test_bytes_exact),
	        cmocka_unit_test(test_duplicates),      cmocka_unit_test(test_paging),
	        cmocka_unit_test(test_states_and_done), cmocka_unit_test(test_empty_job),
	        cmocka_unit_test(test_gap_windows),     cmocka_unit_test(test_deferred_begin),
	        cmocka_unit_test(test_statement_batch), cmocka_unit_test(test_stale_statement),
	        cmocka_unit_test(test_missing_job),     cmocka_unit_test(test_batch_rollback),
	        cmocka_unit_test(test_reconnect),       cmocka_unit_test(test_ingest_timing),
	};

	return cmocka_run_group_tests_name("store", tests, group_setup, group_teardown);
}
