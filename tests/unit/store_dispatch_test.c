/*
 * Durable dispatch in the store (master/store_dispatch.c) against a real
 * PostgreSQL (OM_TEST_PGCONN, see pgfx.h; every case skips without it):
 * task placement on the least loaded live worker, delivery, waves and
 * max-fail, loss and --retry-lost with its retry record, loss in a job of
 * an idempotent module (retried as if it had asked), late results,
 * cancel, pending hosts, orphaned tasks.
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
#include "om/msg.h"
#include "store.h"

#include "pgfx.h"

static int
group_setup(void **state)
{
	return pgfx_setup(state, "om_store_dispatch_test");
}

static void
sql(struct fx *f, const char *s)
{
	assert_int_equal(admin_exec(f->db, s), 0);
}

/* A live worker of idc with an accepted key. */
static void
worker(struct fx *f, const char *name, const char *idc)
{
	const char *v[2] = {name, idc};
	PGresult *r;

	r = PQexecParams(f->db,
	                 "WITH k AS (INSERT INTO worker_keys (name, idc, fingerprint, state)"
	                 " VALUES ($1, $2, md5($1), 'accepted') ON CONFLICT DO NOTHING)"
	                 " INSERT INTO workers (name, idc, fingerprint, connected, alive_at)"
	                 " VALUES ($1, $2, md5($1), true, now()) ON CONFLICT (name) DO UPDATE"
	                 " SET connected = true, alive_at = now()",
	                 2, NULL, v, NULL, NULL, 0);
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
}

/*
 * Hosts prefix-0..n-1 (the first nb in idc dc1, the rest in dc2) and a job
 * of module over them.
 */
static uint64_t
job_of(struct fx *f, const char *module, const char *prefix, size_t n, size_t in_dc1, uint32_t wave,
       bool retry, bool mf)
{
	struct om_host hs[16];
	char buf[16][64];
	struct om_kv kv[2] = {{"cmd", "echo hi"}, {"x", NULL}};
	struct om_job_spec spec = {"user 'alice'", "all", module, kv, 2, 30, 5};
	uint64_t id = 0;
	size_t i;

	assert_true(n <= 16);
	memset(hs, 0, sizeof(hs));
	for (i = 0; i < n; i++) {
		snprintf(buf[i], sizeof(buf[i]), "%s-%zu", prefix, i);
		hs[i].name = buf[i];
		hs[i].addr = "10.0.0.1";
		hs[i].idc = i < in_dc1 ? "dc1" : "dc2";
		hs[i].port = 22;
	}
	spec.retry_lost = retry;
	spec.wave_size = wave ? wave : (uint32_t)n;
	spec.nwaves = (uint32_t)((n + spec.wave_size - 1) / spec.wave_size);
	spec.has_max_fail = mf;
	assert_int_equal(om_store_hosts_upsert(f->st, hs, n), 0);
	assert_int_equal(om_store_job_create(f->st, &spec, hs, n, &id), 0);
	return id;
}

/* The same with module shell (not in the catalog: never idempotent). */
static uint64_t
job(struct fx *f, const char *prefix, size_t n, size_t in_dc1, uint32_t wave, bool retry, bool mf)
{
	return job_of(f, "shell", prefix, n, in_dc1, wave, retry, mf);
}

/* A poll that claims (no cancel may be due for worker): as the master's. */
static int
claim(struct fx *f, const char *worker, const char *master, struct om_msg *t)
{
	uint64_t *ids = NULL;
	size_t n = 0;
	int rv = om_store_worker_poll(f->st, worker, master, true, 100, &ids, &n, t);

	assert_int_equal(n, 0);
	om_free(ids);
	return rv;
}

static char *
host_col(struct fx *f, uint64_t job, const char *host, const char *col)
{
	char q[256], jid[24];
	const char *v[2] = {jid, host};
	PGresult *r;
	char *out;

	snprintf(jid, sizeof(jid), "%" PRIu64, job);
	/* col is a constant of this file */
	snprintf(q, sizeof(q), "SELECT %s FROM job_hosts WHERE job_id = $1 AND host = $2", col);
	r = PQexecParams(f->db, q, 2, NULL, v, NULL, NULL, 0);
	assert_int_equal(PQntuples(r), 1);
	out = strdup(PQgetisnull(r, 0, 0) ? "(null)" : PQgetvalue(r, 0, 0));
	PQclear(r);
	return out;
}

static void
assert_host(struct fx *f, uint64_t job, const char *host, const char *state)
{
	char *s = host_col(f, job, host, "state");

	if (strcmp(s, state) != 0)
		print_error("job %" PRIu64 " host %s: state %s, want %s\n", job, host, s, state);
	assert_string_equal(s, state);
	free(s);
}

static void
test_place_and_claim(void **state)
{
	struct fx *f = fx_of(state);
	struct om_msg t;
	struct om_task_meta meta;
	char **ws = NULL, *reason;
	size_t nw = 0;
	uint64_t id;

	sql(f, "DELETE FROM workers; DELETE FROM worker_keys");
	worker(f, "pa-1", "dc1");
	id = job(f, "pa", 4, 3, 0, false, false);
	assert_int_equal(om_store_job_advance(f->st, id, &ws, &nw), 0);
	assert_int_equal(nw, 1);
	assert_string_equal(ws[0], "pa-1");
	om_store_names_free(ws, nw);
	assert_host(f, id, "pa-0", "dispatched");
	assert_host(f, id, "pa-3", "queued");
	reason = host_col(f, id, "pa-3", "reason");
	assert_string_equal(reason, "pending: no live worker in IDC 'dc2'");
	free(reason);

	/* Another worker cannot take it; its own worker gets hosts in submission order. */
	assert_int_equal(claim(f, "other", "m1", &t), OM_ENOTFOUND);
	assert_int_equal(claim(f, "pa-1", "m1", &t), 0);
	assert_int_equal(t.type, OM_MSG_TASK);
	assert_int_equal(t.u.task.job_id, id);
	assert_string_equal(t.u.task.module, "shell");
	assert_int_equal(t.u.task.nhosts, 3);
	assert_string_equal(t.u.task.hosts[0].name, "pa-0");
	assert_string_equal(t.u.task.hosts[2].name, "pa-2");
	assert_int_equal(t.u.task.nparams, 2);
	assert_null(t.u.task.params[1].val);
	assert_int_equal(om_store_task_meta(f->st, t.u.task.task_id, &meta), 0);
	assert_int_equal(meta.nhosts, 3);
	assert_string_equal(meta.hosts[1], "pa-1");
	assert_string_equal(meta.worker, "pa-1");
	assert_int_equal(meta.attempt, 1);
	om_task_meta_release(&meta);
	/* Delivered once: a second claim finds nothing; an unclaim puts it back. */
	{
		struct om_msg none;
		assert_int_equal(claim(f, "pa-1", "m2", &none), OM_ENOTFOUND);
	}
	assert_int_equal(om_store_task_unclaim(f->st, t.u.task.task_id), 0);
	{
		struct om_msg again;
		assert_int_equal(claim(f, "pa-1", "m2", &again), 0);
		assert_int_equal(again.u.task.task_id, t.u.task.task_id);
		om_msg_release(&again);
	}
	om_msg_release(&t);
	/* A worker of dc2 appears: the pending host gets a task from the next advance. */
	worker(f, "pa-2w", "dc2");
	assert_int_equal(om_store_job_advance(f->st, id, NULL, NULL), 0);
	assert_host(f, id, "pa-3", "dispatched");
}

static void
test_least_loaded(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t a, b;
	char *wa, *wb;

	sql(f, "DELETE FROM workers; DELETE FROM worker_keys; UPDATE tasks SET state = 'done'");
	worker(f, "ll-1", "dc1");
	worker(f, "ll-2", "dc1");
	a = job(f, "lla", 1, 1, 0, false, false);
	assert_int_equal(om_store_job_advance(f->st, a, NULL, NULL), 0);
	b = job(f, "llb", 1, 1, 0, false, false);
	assert_int_equal(om_store_job_advance(f->st, b, NULL, NULL), 0);
	wa = host_col(f, a, "lla-0", "worker");
	wb = host_col(f, b, "llb-0", "worker");
	assert_string_not_equal(wa, wb);
	free(wa);
	free(wb);
	/* A worker not heard from for longer than the live window gets nothing. */
	sql(f, "UPDATE workers SET alive_at = now() - interval '1 hour' WHERE name = 'll-1'");
	sql(f, "UPDATE tasks SET state = 'done'");
	a = job(f, "llc", 1, 1, 0, false, false);
	assert_int_equal(om_store_job_advance(f->st, a, NULL, NULL), 0);
	wa = host_col(f, a, "llc-0", "worker");
	assert_string_equal(wa, "ll-2");
	free(wa);
}

static struct om_store_state
res(uint64_t job, const char *host, uint32_t s, uint64_t task)
{
	struct om_store_state x = {job, host, s, s == OM_HS_OK ? 0 : 1, NULL, 5, false, NULL, task};
	return x;
}

static void
test_waves_max_fail(void **state)
{
	struct fx *f = fx_of(state);
	struct om_msg t;
	struct om_store_state st[2];
	uint64_t id, tid;
	char *reason;

	sql(f, "DELETE FROM workers; DELETE FROM worker_keys; UPDATE tasks SET state = 'done'");
	worker(f, "wv-1", "dc1");
	id = job(f, "wv", 5, 5, 2, false, true); /* waves of 2, --max-fail 0 */
	assert_int_equal(om_store_job_advance(f->st, id, NULL, NULL), 0);
	assert_host(f, id, "wv-1", "dispatched");
	assert_host(f, id, "wv-2", "queued");
	/* Later waves wait for theirs: the sweep leaves this job alone for now. */
	{
		uint64_t *open = NULL;
		size_t nopen = 0, k;
		assert_int_equal(om_store_jobs_open(f->st, 100, &open, &nopen), 0);
		for (k = 0; k < nopen; k++)
			assert_true(open[k] != id);
		om_free(open);
	}
	assert_int_equal(claim(f, "wv-1", "m1", &t), 0);
	tid = t.u.task.task_id;
	om_msg_release(&t);
	st[0] = res(id, "wv-0", OM_HS_OK, tid);
	st[1] = res(id, "wv-1", OM_HS_FAILED, tid);
	assert_int_equal(om_store_ingest(f->st, NULL, 0, st, 2), 0);
	/* Its running wave ended: now the sweep owes it a decision. */
	{
		uint64_t *open = NULL;
		size_t nopen = 0, k;
		bool found = false;
		assert_int_equal(om_store_jobs_open(f->st, 100, &open, &nopen), 0);
		for (k = 0; k < nopen; k++)
			found = found || open[k] == id;
		om_free(open);
		assert_true(found);
	}
	assert_int_equal(om_store_job_advance(f->st, id, NULL, NULL), 0);
	assert_host(f, id, "wv-2", "skipped");
	assert_host(f, id, "wv-4", "skipped");
	reason = host_col(f, id, "wv-4", "reason");
	assert_string_equal(reason,
	                    "skipped: wave 1 had 1 of 2 hosts failed (50%), above --max-fail 0%");
	free(reason);
	{
		char jid[24];
		const char *v[1] = {jid};
		snprintf(jid, sizeof(jid), "%" PRIu64, id);
		assert_int_equal(q_int(f,
		                       "SELECT count(*) FROM jobs WHERE id = $1 AND state = 'done'",
		                       1, v),
		                 1);
		/* one state event per host and one job-done event, ids 1..6 without a hole */
		assert_int_equal(q_int(f,
		                       "SELECT count(DISTINCT id) FROM job_events WHERE job_id = $1"
		                       " AND kind IN (2, 3)",
		                       1, v),
		                 6);
	}
}

static void
test_lose_retry_late(void **state)
{
	struct fx *f = fx_of(state);
	struct om_msg t;
	struct om_store_state st[1];
	struct om_store_chunk ch[2];
	uint64_t id, plain, tid, tid2, *jobs = NULL, lost = 0, retried = 0;
	size_t nj = 0;
	char jid[24];
	const char *v[1] = {jid};

	sql(f, "DELETE FROM workers; DELETE FROM worker_keys; UPDATE tasks SET state = 'done'");
	worker(f, "lr-1", "dc1");
	id = job(f, "lr", 1, 1, 0, true, false);
	assert_int_equal(om_store_job_advance(f->st, id, NULL, NULL), 0);
	assert_int_equal(claim(f, "lr-1", "m1", &t), 0);
	tid = t.u.task.task_id;
	om_msg_release(&t);
	/* The first run's output arrived before its worker vanished. */
	memset(ch, 0, sizeof(ch));
	ch[0].job_id = id;
	ch[0].host = "lr-0";
	ch[0].stream = 1;
	ch[0].data = (const uint8_t *)"one";
	ch[0].len = 3;
	ch[0].attempt = 1;
	assert_int_equal(om_store_ingest(f->st, ch, 1, NULL, 0), 0);
	assert_int_equal(om_store_tasks_lose(f->st, &tid, 1,
	                                     "lost: worker 'lr-1' missed 3 heartbeats", &jobs, &nj,
	                                     &lost, &retried),
	                 0);
	assert_int_equal(retried, 1);
	assert_int_equal(lost, 0);
	assert_int_equal(nj, 1);
	om_free(jobs);
	assert_host(f, id, "lr-0", "queued");
	snprintf(jid, sizeof(jid), "%" PRIu64, id);
	assert_int_equal(q_int(f, "SELECT count(*) FROM job_host_attempts WHERE job_id = $1", 1, v),
	                 1);
	/* Run 2 on the same worker (the only one): its seq 0 is stored beside run 1's. */
	assert_int_equal(om_store_job_advance(f->st, id, NULL, NULL), 0);
	assert_int_equal(claim(f, "lr-1", "m1", &t), 0);
	tid2 = t.u.task.task_id;
	om_msg_release(&t);
	ch[1] = ch[0];
	ch[1].data = (const uint8_t *)"two";
	ch[1].attempt = 2;
	assert_int_equal(om_store_ingest(f->st, &ch[1], 1, NULL, 0), 0);
	assert_int_equal(
	        q_int(f, "SELECT count(*) FROM job_events WHERE job_id = $1 AND kind = 1", 1, v),
	        2);
	/* A late result of run 1 does not touch the host now on run 2. */
	st[0] = res(id, "lr-0", OM_HS_FAILED, tid);
	assert_int_equal(om_store_ingest(f->st, NULL, 0, st, 1), 0);
	assert_host(f, id, "lr-0", "dispatched");
	st[0] = res(id, "lr-0", OM_HS_OK, tid2);
	assert_int_equal(om_store_ingest(f->st, NULL, 0, st, 1), 0);
	assert_host(f, id, "lr-0", "ok");

	/* Without --retry-lost: lost, and the task's own late result replaces lost. */
	plain = job(f, "lp", 1, 1, 0, false, false);
	assert_int_equal(om_store_job_advance(f->st, plain, NULL, NULL), 0);
	assert_int_equal(claim(f, "lr-1", "m1", &t), 0);
	tid = t.u.task.task_id;
	om_msg_release(&t);
	assert_int_equal(
	        om_store_tasks_lose(f->st, &tid, 1, "lost: test", &jobs, &nj, &lost, &retried), 0);
	om_free(jobs);
	assert_int_equal(lost, 1);
	assert_host(f, plain, "lp-0", "lost");
	snprintf(jid, sizeof(jid), "%" PRIu64, plain);
	assert_int_equal(
	        q_int(f, "SELECT count(*) FROM jobs WHERE id = $1 AND state = 'done'", 1, v), 1);
	st[0] = res(plain, "lp-0", OM_HS_OK, tid);
	assert_int_equal(om_store_ingest(f->st, NULL, 0, st, 1), 0);
	assert_host(f, plain, "lp-0", "ok");
	/* A master-made state (task 0) never replaces a final one. */
	st[0] = res(plain, "lp-0", OM_HS_LOST, 0);
	assert_int_equal(om_store_ingest(f->st, NULL, 0, st, 1), 0);
	assert_host(f, plain, "lp-0", "ok");
}

/*
 * A job that did not ask for --retry-lost but whose module is idempotent in
 * the catalog: its lost host is queued again, recorded, and placed on the
 * other live worker of its IDC; job show can say why.  A module that is not
 * idempotent loses the host.
 */
static void
test_lose_idempotent(void **state)
{
	struct fx *f = fx_of(state);
	struct om_module_info mods[] = {
	        {"idemmod", "1", "c", NULL, "[]", true},
	        {"plainmod", "1", "c", NULL, "[]", false},
	};
	struct om_job_summary sum;
	struct om_msg t;
	uint64_t id, both, plain, tid, *jobs = NULL, lost = 0, retried = 0;
	size_t nj = 0;
	char jid[24], *s;
	const char *v[1] = {jid};

	sql(f, "DELETE FROM workers; DELETE FROM worker_keys; UPDATE tasks SET state = 'done'");
	worker(f, "im-1", "dc1");
	assert_int_equal(om_store_modules_put(f->st, "im-1", "dc1", mods, 2), 0);
	id = job_of(f, "idemmod", "im", 1, 1, 0, false, false);
	snprintf(jid, sizeof(jid), "%" PRIu64, id);
	assert_int_equal(q_int(f,
	                       "SELECT count(*) FROM jobs WHERE id = $1 AND retry_lost"
	                       " AND retry_reason = 'idempotent'",
	                       1, v),
	                 1);
	assert_int_equal(om_store_job_summary(f->st, id, NULL, &sum), 0);
	assert_true(sum.retry_lost);
	assert_true(sum.retry_idempotent);
	om_job_summary_release(&sum);
	assert_int_equal(om_store_job_advance(f->st, id, NULL, NULL), 0);
	assert_int_equal(claim(f, "im-1", "m1", &t), 0);
	tid = t.u.task.task_id;
	om_msg_release(&t);
	/* im-1 dies mid-task; im-2 of the same IDC is live */
	worker(f, "im-2", "dc1");
	sql(f, "UPDATE workers SET connected = false, alive_at = now() - interval '1 hour'"
	       " WHERE name = 'im-1'");
	assert_int_equal(om_store_tasks_lose(f->st, &tid, 1,
	                                     "lost: worker 'im-1' missed 3 heartbeats", &jobs, &nj,
	                                     &lost, &retried),
	                 0);
	om_free(jobs);
	assert_int_equal(retried, 1);
	assert_int_equal(lost, 0);
	assert_host(f, id, "im-0", "queued");
	s = host_col(f, id, "im-0", "reason");
	assert_string_equal(s, "retry 2: lost: worker 'im-1' missed 3 heartbeats");
	free(s);
	assert_int_equal(q_int(f,
	                       "SELECT count(*) FROM job_host_attempts WHERE job_id = $1"
	                       " AND host = 'im-0' AND attempt = 1 AND worker = 'im-1'",
	                       1, v),
	                 1);
	assert_int_equal(om_store_job_advance(f->st, id, NULL, NULL), 0);
	s = host_col(f, id, "im-0", "worker");
	assert_string_equal(s, "im-2");
	free(s);
	s = host_col(f, id, "im-0", "attempt");
	assert_string_equal(s, "2");
	free(s);

	/* Asked for and idempotent: the option is the reason shown. */
	both = job_of(f, "idemmod", "ib", 1, 1, 0, true, false);
	assert_int_equal(om_store_job_summary(f->st, both, NULL, &sum), 0);
	assert_true(sum.retry_lost);
	assert_false(sum.retry_idempotent);
	om_job_summary_release(&sum);

	/* Neither: the host ends lost. */
	plain = job_of(f, "plainmod", "ip", 1, 1, 0, false, false);
	assert_int_equal(om_store_job_summary(f->st, plain, NULL, &sum), 0);
	assert_false(sum.retry_lost);
	om_job_summary_release(&sum);
	sql(f, "UPDATE tasks SET state = 'done'");
	assert_int_equal(om_store_job_advance(f->st, plain, NULL, NULL), 0);
	assert_int_equal(claim(f, "im-2", "m1", &t), 0);
	tid = t.u.task.task_id;
	assert_true(t.u.task.job_id == plain);
	om_msg_release(&t);
	assert_int_equal(
	        om_store_tasks_lose(f->st, &tid, 1, "lost: test", &jobs, &nj, &lost, &retried), 0);
	om_free(jobs);
	assert_int_equal(retried, 0);
	assert_int_equal(lost, 1);
	assert_host(f, plain, "ip-0", "lost");
}

static void
test_cancel(void **state)
{
	struct fx *f = fx_of(state);
	struct om_msg t;
	uint64_t id, now = 0, asked = 0, *ids = NULL;
	size_t n = 0, nw = 0;
	char **ws = NULL;

	sql(f, "DELETE FROM workers; DELETE FROM worker_keys; UPDATE tasks SET state = 'done'");
	worker(f, "ca-1", "dc1");
	worker(f, "ca-2", "dc2");
	id = job(f, "ca", 3, 2, 0, false, false);
	assert_int_equal(om_store_job_advance(f->st, id, NULL, NULL), 0);
	/* dc1's task is delivered, dc2's is still queued */
	assert_int_equal(claim(f, "ca-1", "m1", &t), 0);
	om_msg_release(&t);
	assert_int_equal(
	        om_store_job_cancel(f->st, id, "cancelled by user 'alice'", &now, &asked, &ws, &nw),
	        0);
	assert_int_equal(now, 1);
	assert_int_equal(asked, 2);
	assert_int_equal(nw, 1);
	assert_string_equal(ws[0], "ca-1");
	om_store_names_free(ws, nw);
	assert_host(f, id, "ca-2", "cancelled");
	assert_int_equal(claim(f, "ca-2", "m1", &t), OM_ENOTFOUND);
	/* a busy worker (no claim) still gets its cancels */
	assert_int_equal(om_store_worker_poll(f->st, "ca-1", "m1", false, 100, &ids, &n, &t), 0);
	assert_int_equal(n, 1);
	om_free(ids);
	/* not again within 10 s */
	assert_int_equal(om_store_worker_poll(f->st, "ca-1", "m1", false, 100, &ids, &n, &t),
	                 OM_ENOTFOUND);
	assert_int_equal(n, 0);
	assert_null(ids);
}

/*
 * A worker's poll: cancels go first and no task is claimed beside them (it
 * stays queued for the next poll); a busy worker (no claim) gets cancels
 * only; a task whose host rows no longer all point at it is still sent
 * with the hosts it was made of, in order.
 */
static void
test_worker_poll(void **state)
{
	struct fx *f = fx_of(state);
	struct om_msg t;
	uint64_t a, b, now = 0, asked = 0, *ids = NULL;
	size_t n = 0;
	char *task_b;

	sql(f, "DELETE FROM workers; DELETE FROM worker_keys; UPDATE tasks SET state = 'done'");
	worker(f, "wp-1", "dc1");
	a = job(f, "wpa", 1, 1, 0, false, false);
	assert_int_equal(om_store_job_advance(f->st, a, NULL, NULL), 0);
	assert_int_equal(om_store_worker_poll(f->st, "wp-1", "m1", true, 100, &ids, &n, &t), 0);
	assert_int_equal(n, 0);
	assert_int_equal(t.type, OM_MSG_TASK);
	assert_int_equal(t.u.task.job_id, a);
	om_msg_release(&t);
	om_free(ids);
	assert_int_equal(om_store_job_cancel(f->st, a, "cancelled", &now, &asked, NULL, NULL), 0);
	b = job(f, "wpb", 1, 1, 0, false, false);
	assert_int_equal(om_store_job_advance(f->st, b, NULL, NULL), 0);
	/* busy: the cancel only */
	assert_int_equal(om_store_worker_poll(f->st, "wp-1", "m1", false, 100, &ids, &n, &t), 0);
	assert_int_equal(n, 1);
	om_free(ids);
	sql(f, "UPDATE tasks SET cancel_sent_at = NULL");
	/* the cancel and a task at once: the cancel, and the task stays queued */
	assert_int_equal(om_store_worker_poll(f->st, "wp-1", "m1", true, 100, &ids, &n, &t), 0);
	assert_int_equal(n, 1);
	assert_int_equal(t.type, 0);
	om_free(ids);
	task_b = host_col(f, b, "wpb-0", "task_id");
	assert_host(f, b, "wpb-0", "dispatched");
	{
		char q[160];
		PGresult *r;

		snprintf(q, sizeof(q), "SELECT state FROM tasks WHERE id = %s", task_b);
		r = PQexec(f->db, q);
		assert_string_equal(PQgetvalue(r, 0, 0), "queued");
		PQclear(r);
	}
	/* the next poll (the cancel not due again for 10 s): the task */
	assert_int_equal(om_store_worker_poll(f->st, "wp-1", "m1", true, 100, &ids, &n, &t), 0);
	assert_int_equal(n, 0);
	assert_int_equal(t.type, OM_MSG_TASK);
	assert_int_equal(t.u.task.task_id, strtoull(task_b, NULL, 10));
	assert_int_equal(t.u.task.nhosts, 1);
	assert_string_equal(t.u.task.hosts[0].name, "wpb-0");
	om_msg_release(&t);
	om_free(ids);
	free(task_b);
	/* nothing left */
	assert_int_equal(om_store_worker_poll(f->st, "wp-1", "m1", true, 100, &ids, &n, &t),
	                 OM_ENOTFOUND);
	assert_int_equal(n, 0);
	om_free(ids);
	/* a host row moved off the task (never by the code: the fallback) */
	b = job(f, "wpc", 3, 3, 0, false, false);
	assert_int_equal(om_store_job_advance(f->st, b, NULL, NULL), 0);
	{
		char q[200];
		snprintf(q, sizeof(q),
		         "UPDATE job_hosts SET task_id = NULL WHERE job_id = %" PRIu64
		         " AND host = 'wpc-1'",
		         b);
		sql(f, q);
	}
	assert_int_equal(om_store_worker_poll(f->st, "wp-1", "m1", true, 100, &ids, &n, &t), 0);
	assert_int_equal(t.type, OM_MSG_TASK);
	assert_int_equal(t.u.task.nhosts, 3);
	assert_string_equal(t.u.task.hosts[0].name, "wpc-0");
	assert_string_equal(t.u.task.hosts[1].name, "wpc-1");
	assert_string_equal(t.u.task.hosts[2].name, "wpc-2");
	om_msg_release(&t);
	om_free(ids);
}

static void
test_pending_and_orphans(void **state)
{
	struct fx *f = fx_of(state);
	struct om_orphan *o = NULL;
	uint64_t id, ended = 0, *jobs = NULL, tid;
	size_t n = 0, nj = 0, i;
	char *s;

	sql(f, "DELETE FROM workers; DELETE FROM worker_keys; UPDATE tasks SET state = 'done'");
	worker(f, "po-1", "dc1");
	id = job(f, "po", 2, 1, 0, false, false);
	assert_int_equal(om_store_job_advance(f->st, id, NULL, NULL), 0);
	/* po-1 (dc2) waits; once it waited longer than the timeout it is unreachable */
	assert_int_equal(om_store_pending_expire(f->st, 60000, &ended), 0);
	assert_int_equal(ended, 0);
	sql(f, "UPDATE job_hosts SET pending_since = now() - interval '2 minutes'"
	       " WHERE host = 'po-1'");
	assert_int_equal(om_store_pending_expire(f->st, 60000, &ended), 0);
	assert_int_equal(ended, 1);
	assert_host(f, id, "po-1", "unreachable");
	s = host_col(f, id, "po-1", "reason");
	assert_string_equal(s, "no live worker in IDC 'dc2' for 60 s");
	free(s);
	/* po-1's worker disconnects before delivering: the task is withdrawn and
	 * placed again on a live worker. */
	worker(f, "po-2", "dc1");
	sql(f, "UPDATE workers SET connected = false WHERE name = 'po-1'");
	assert_int_equal(om_store_tasks_orphaned(f->st, &o, &n), 0);
	assert_true(n >= 1);
	tid = 0;
	for (i = 0; i < n; i++)
		if (strcmp(o[i].worker, "po-1") == 0) {
			assert_false(o[i].delivered);
			assert_false(o[i].stale);
			tid = o[i].task_id;
		}
	om_free(o);
	assert_true(tid != 0);
	assert_int_equal(om_store_tasks_unassign(f->st, &tid, 1, &jobs, &nj), 0);
	assert_int_equal(nj, 1);
	om_free(jobs);
	assert_host(f, id, "po-0", "queued");
	assert_int_equal(om_store_jobs_open(f->st, 10, &jobs, &nj), 0);
	assert_true(nj >= 1);
	om_free(jobs);
	assert_int_equal(om_store_job_advance(f->st, id, NULL, NULL), 0);
	s = host_col(f, id, "po-0", "worker");
	assert_string_equal(s, "po-2");
	free(s);
}

static void
test_heartbeat_holds(void **state)
{
	struct fx *f = fx_of(state);
	struct om_msg t;
	uint64_t id, tid, *miss = NULL;
	size_t n = 0;

	sql(f, "DELETE FROM workers; DELETE FROM worker_keys; UPDATE tasks SET state = 'done'");
	worker(f, "hb-1", "dc1");
	id = job(f, "hb", 1, 1, 0, false, false);
	assert_int_equal(om_store_job_advance(f->st, id, NULL, NULL), 0);
	assert_int_equal(claim(f, "hb-1", "m1", &t), 0);
	tid = t.u.task.task_id;
	om_msg_release(&t);
	/* held: running; a fresh delivery is never missing */
	assert_int_equal(om_store_worker_holds(f->st, "hb-1", &tid, 1, 60000, &miss, &n), 0);
	assert_int_equal(n, 0);
	om_free(miss);
	assert_host(f, id, "hb-0", "running");
	assert_int_equal(om_store_worker_holds(f->st, "hb-1", NULL, 0, 60000, &miss, &n), 0);
	assert_int_equal(n, 0);
	om_free(miss);
	/* not held after the grace: missing */
	assert_int_equal(om_store_worker_holds(f->st, "hb-1", NULL, 0, 0, &miss, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(miss[0], tid);
	om_free(miss);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_place_and_claim),
	        cmocka_unit_test(test_least_loaded),
	        cmocka_unit_test(test_waves_max_fail),
	        cmocka_unit_test(test_lose_retry_late),
	        cmocka_unit_test(test_cancel),
	        cmocka_unit_test(test_worker_poll),
	        cmocka_unit_test(test_pending_and_orphans),
	        cmocka_unit_test(test_heartbeat_holds),
	        cmocka_unit_test(test_lose_idempotent),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
