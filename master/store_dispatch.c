/*
 * Durable dispatch (contract in store.h): PostgreSQL holds every decision
 * about where a host runs, so any master can deliver a task, advance a
 * job's waves, cancel it, or recover it after another master died.
 *
 * The rules the statements keep:
 *  - A job's row is locked (FOR UPDATE) by whoever changes its hosts'
 *    placement or its wave; jobs are locked in id order when several are.
 *  - A task is created 'queued' for one worker, becomes 'delivered' when a
 *    master hands it to that worker (claimed with SKIP LOCKED, so two
 *    masters never deliver one task), and 'done' or 'lost' at the end.
 *  - Final host states go through finalize(): the state, its event (an id
 *    from the job's block) and the job's completion in one transaction,
 *    the same shape the ingest pipeline writes for worker results.
 *  - NOTIFY om_dispatch (payload: worker name) tells the master holding a
 *    worker's long-poll that there is a task or a cancel for it; NOTIFY
 *    om_events (payload: job id) wakes followers on every master.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "jobs.h"
#include "om/base.h"
#include "om/msg.h"
#include "store.h"
#include "store_int.h"

#define FINAL   "('ok','failed','unreachable','timeout','cancelled','skipped','lost')"
#define FAILED  "('failed','unreachable','timeout','lost')"
#define IDS_MAX (64u << 20)

/* ------------------------------------------------------------------ helpers */

/* Text-format results; the error is recorded in st on failure. */
#define q(st, what, sql, n, vals)   om__store_query(st, what, sql, n, vals, 0)
#define cmd(st, what, sql, n, vals) om__store_run_cmd(st, what, sql, n, vals)

static int
begin(struct om_store *st)
{
	return om__store_begin(st);
}

static int
commit(struct om_store *st, int rv)
{
	if (rv == 0)
		rv = cmd(st, "commit", "COMMIT", 0, NULL);
	if (rv != 0)
		om__store_rollback(st);
	return rv;
}

static uint64_t
u64_at(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoull(PQgetvalue(r, row, col), NULL, 10);
}

/* "{1,2,3}" for a bigint[] parameter. */
static int
ids_literal(struct om_buf *b, const uint64_t *ids, size_t n)
{
	size_t i;

	om_buf_init(b, IDS_MAX);
	om_buf_putc(b, '{');
	for (i = 0; i < n; i++)
		om_buf_printf(b, "%s%" PRIu64, i ? "," : "", ids[i]);
	om_buf_putc(b, '}');
	om_buf_putc(b, '\0');
	return b->err;
}

static int
ids_push(uint64_t **v, size_t *n, uint64_t id)
{
	uint64_t *nv;
	size_t i;

	for (i = 0; i < *n; i++)
		if ((*v)[i] == id)
			return 0;
	if ((nv = om_realloc(*v, (*n + 1) * sizeof(*nv))) == NULL)
		return OM_ENOMEM;
	nv[(*n)++] = id;
	*v = nv;
	return 0;
}

static int
names_push(char ***v, size_t *n, const char *s)
{
	char **nv;
	size_t i;

	for (i = 0; i < *n; i++)
		if (strcmp((*v)[i], s) == 0)
			return 0;
	if ((nv = om_realloc(*v, (*n + 1) * sizeof(*nv))) == NULL)
		return OM_ENOMEM;
	*v = nv;
	if ((nv[*n] = om_strdup(s)) == NULL)
		return OM_ENOMEM;
	(*n)++;
	return 0;
}

void
om_store_names_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		om_free(v[i]);
	om_free(v);
}

/* Locks the rows of these jobs in id order (the order every writer uses). */
static int
lock_jobs(struct om_store *st, const char *ids_lit)
{
	const char *v[1] = {ids_lit};

	return cmd(st, "lock jobs",
	           "SELECT id FROM jobs WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE", 1, v);
}

/*
 * Ends the hosts src selects as (job_id, host, reason), params $1..$n, in
 * state $n+1 unless final already: state, its event, and the job-events
 * NOTIFY.  The jobs must be locked by the caller.  *count (may be NULL)
 * gets the hosts moved.
 */
static int
finalize(struct om_store *st, const char *what, const char *src, int n, const char *const *vals,
         const char *state, uint64_t *count)
{
	char sql[2048];
	const char *v[8];
	PGresult *r;
	int i;

	if (n > 7)
		return OM_EINVAL;
	for (i = 0; i < n; i++)
		v[i] = vals[i];
	v[n] = state;
	snprintf(sql, sizeof(sql),
	         "WITH x AS (%s),"
	         " u AS (UPDATE job_hosts h SET state = $%d::text, reason = x.reason,"
	         " exit_code = -1, duration_ms = (extract(epoch FROM now() - h.started_at)"
	         " * 1000)::bigint, finished_at = now(), changed = false,"
	         " result = NULL, pending_since = NULL FROM x"
	         " WHERE h.job_id = x.job_id AND h.host = x.host AND h.state NOT IN " FINAL
	         " RETURNING h.job_id, h.host, h.reason, h.duration_ms),"
	         " c AS (SELECT job_id, count(*) AS cnt FROM u GROUP BY job_id),"
	         " j AS (UPDATE jobs SET last_event = jobs.last_event + c.cnt FROM c"
	         " WHERE jobs.id = c.job_id RETURNING jobs.id, jobs.last_event, c.cnt),"
	         " n AS (SELECT u.*, row_number() OVER (PARTITION BY u.job_id ORDER BY u.host)"
	         " AS rn FROM u),"
	         " e AS (INSERT INTO job_events (job_id, id, kind, host, state, exit_code, reason,"
	         " duration_ms) SELECT n.job_id, j.last_event - j.cnt + n.rn, 2, n.host,"
	         " $%d::text, -1, n.reason, n.duration_ms FROM n JOIN j ON j.id = n.job_id),"
	         " z AS (SELECT pg_notify('om_events', id::text) FROM j)"
	         " SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM z)",
	         src, n + 1, n + 1);
	if ((r = q(st, what, sql, n + 1, v)) == NULL)
		return OM_EDB;
	if (count != NULL)
		*count = PQntuples(r) == 1 ? u64_at(r, 0, 0) : 0;
	PQclear(r);
	return 0;
}

/* Jobs (locked) whose hosts are all final become done, with their job-done event. */
static int
finish_jobs(struct om_store *st, const char *ids_lit)
{
	const char *v[1] = {ids_lit};

	return cmd(
	        st, "finish jobs",
	        "WITH d AS (UPDATE jobs SET state = 'done', finished_at = now(),"
	        " last_event = last_event + 1 WHERE id = ANY($1::bigint[]) AND state <> 'done'"
	        " AND NOT EXISTS (SELECT 1 FROM job_hosts h WHERE h.job_id = jobs.id"
	        " AND h.state NOT IN " FINAL ") RETURNING id, last_event),"
	        " e AS (INSERT INTO job_events (job_id, id, kind) SELECT id, last_event, 3 FROM d)"
	        " SELECT pg_notify('om_events', id::text) FROM d",
	        1, v);
}

/* ------------------------------------------------------------------ liveness */

int
om_store_worker_alive(struct om_store *st, const char *name, const char *master)
{
	const char *v[2] = {name, master};
	int rv;

	if ((rv = om__store_ready(st)) != 0)
		return rv;
	return cmd(st, "worker alive",
	           "UPDATE workers SET connected = true, alive_at = now(), last_seen = now(),"
	           " master = $2::text WHERE name = $1::text",
	           2, v);
}

int
om_store_worker_offline(struct om_store *st, const char *name, const char *master)
{
	const char *v[2] = {name, master};
	int rv;

	if ((rv = om__store_ready(st)) != 0)
		return rv;
	return cmd(
	        st, "worker offline",
	        "UPDATE workers SET connected = false WHERE name = $1::text AND master = $2::text",
	        2, v);
}

/* ------------------------------------------------------------------ dispatch */

/*
 * The job's running wave: queued hosts without a task get one task per
 * (IDC, attempt) on the least loaded live worker of the IDC, or wait with a
 * "pending" reason.  The job row is locked by the caller.
 */
static int
dispatch_locked(struct om_store *st, uint64_t job_id, uint32_t lo, uint32_t hi, char ***workers,
                size_t *nworkers)
{
	char jid[24], slo[16], shi[16], live[24], att[16];
	const char *v[6];
	PGresult *r, *w;
	int i, rows, rv = 0;

	snprintf(jid, sizeof(jid), "%" PRIu64, job_id);
	snprintf(slo, sizeof(slo), "%u", lo);
	snprintf(shi, sizeof(shi), "%u", hi);
	snprintf(live, sizeof(live), "%" PRId64, st->live_ms);
	v[0] = jid;
	v[1] = slo;
	v[2] = shi;
	if ((r = q(st, "dispatch groups",
	           "SELECT idc, attempt FROM job_hosts WHERE job_id = $1::bigint"
	           " AND state = 'queued' AND task_id IS NULL AND seq >= $2::int AND seq < $3::int"
	           " GROUP BY idc, attempt ORDER BY idc, attempt",
	           3, v)) == NULL)
		return OM_EDB;
	rows = PQntuples(r);
	for (i = 0; i < rows && rv == 0; i++) {
		const char *idc = PQgetvalue(r, i, 0);
		const char *pv[2] = {idc, live};

		snprintf(att, sizeof(att), "%s", PQgetvalue(r, i, 1));
		/* Live: connected to some master, heard from recently, key accepted. */
		w = q(st, "pick worker",
		      "SELECT w.name FROM workers w WHERE w.idc = $1::text AND w.connected"
		      " AND w.alive_at > now() - $2::bigint * interval '1 millisecond'"
		      " AND EXISTS (SELECT 1 FROM worker_keys k WHERE k.name = w.name"
		      " AND k.state = 'accepted')"
		      " ORDER BY (SELECT count(*) FROM tasks t WHERE t.worker = w.name"
		      " AND t.state IN ('queued','delivered')), w.name LIMIT 1",
		      2, pv);
		if (w == NULL) {
			rv = OM_EDB;
			break;
		}
		if (PQntuples(w) == 1) {
			char wname[OM_MAX_NAME + 1];
			const char *tv[6] = {jid, idc, wname, slo, shi, att};
			PGresult *t;

			snprintf(wname, sizeof(wname), "%s", PQgetvalue(w, 0, 0));
			/*
			 * The task and its hosts in one statement, so one snapshot:
			 * the array and the rows marked are the same set even when
			 * another master moves hosts of this job back to queued
			 * (om_store_tasks_unassign) in between.  Both h and u pick the
			 * rows by the same predicate, never by a join on host names:
			 * with the statistics of an empty job_hosts (a fresh table,
			 * autovacuum not yet run) PostgreSQL plans such a join as a
			 * nested loop over every row of the job, 3.6 s against the
			 * array and 6 s against h for a task of 5,000 hosts.  Rows u
			 * finds are a subset of h (same snapshot); the count check
			 * below catches the rest.
			 */
			t = q(st, "task create",
			      "WITH h AS (SELECT host, seq FROM job_hosts"
			      " WHERE job_id = $1::bigint AND idc = $2::text AND state = 'queued'"
			      " AND task_id IS NULL AND attempt = $6::int"
			      " AND seq >= $4::int AND seq < $5::int),"
			      " t AS (INSERT INTO tasks (job_id, idc, worker, state, hosts, "
			      "attempt)"
			      " SELECT $1::bigint, $2::text, $3::text, 'queued',"
			      " array_agg(host ORDER BY seq), $6::int FROM h HAVING count(*) > 0"
			      " RETURNING id, cardinality(hosts) AS n),"
			      " u AS (UPDATE job_hosts j SET state = 'dispatched', task_id = t.id,"
			      " worker = $3::text, reason = NULL, pending_since = NULL FROM t"
			      " WHERE j.job_id = $1::bigint AND j.idc = $2::text"
			      " AND j.state = 'queued' AND j.task_id IS NULL"
			      " AND j.attempt = $6::int AND j.seq >= $4::int AND j.seq < $5::int"
			      " RETURNING 1)"
			      " SELECT t.id, t.n, (SELECT count(*) FROM u),"
			      " pg_notify('om_dispatch', $3::text) FROM t",
			      6, tv);
			if (t == NULL) {
				rv = OM_EDB;
			} else if (PQntuples(t) == 1 && u64_at(t, 0, 1) != u64_at(t, 0, 2)) {
				/* a row changed under the statement: try again at the next advance
				 */
				om__store_set_err(st, "task create",
				                  "the task's hosts changed meanwhile");
				rv = OM_EDB;
			} else if (PQntuples(t) == 1) {
				if (workers != NULL)
					rv = names_push(workers, nworkers, wname);
			}
			PQclear(t);
		} else {
			/* Waits for a worker; the sweep ends it after the pending timeout. */
			const char *uv[5] = {jid, idc, slo, shi, att};
			rv = cmd(
			        st, "pending",
			        "UPDATE job_hosts SET reason = 'pending: no live worker in IDC '''"
			        " || $2::text || '''', pending_since = coalesce(pending_since, "
			        "now())"
			        " WHERE job_id = $1::bigint AND idc = $2::text AND state = 'queued'"
			        " AND task_id IS NULL AND attempt = $5::int"
			        " AND seq >= $3::int AND seq < $4::int"
			        /* already marked: not rewritten by every sweep */
			        " AND (pending_since IS NULL OR reason IS DISTINCT FROM"
			        " 'pending: no live worker in IDC ''' || $2::text || '''')",
			        5, uv);
		}
		PQclear(w);
	}
	PQclear(r);
	return rv;
}

int
om_store_job_advance(struct om_store *st, uint64_t job_id, char ***workers, size_t *nworkers)
{
	char jid[24], lit[40], slo[16], shi[16];
	const char *v[3] = {jid, slo, shi};
	PGresult *r;
	uint32_t wave, wsize, nwaves, maxf, guard;
	bool hasmf;
	int rv;

	if ((rv = begin(st)) != 0)
		return rv;
	snprintf(jid, sizeof(jid), "%" PRIu64, job_id);
	snprintf(lit, sizeof(lit), "{%" PRIu64 "}", job_id);
	r = q(st, "job lock",
	      "SELECT state, wave, wave_size, nwaves, cancelled_by IS NOT NULL, has_max_fail,"
	      " max_fail, nhosts FROM jobs WHERE id = $1::bigint FOR UPDATE",
	      1, v);
	if (r == NULL)
		return commit(st, OM_EDB);
	if (PQntuples(r) != 1) {
		PQclear(r);
		return commit(st, OM_ENOTFOUND);
	}
	if (strcmp(PQgetvalue(r, 0, 0), "done") == 0) {
		PQclear(r);
		return commit(st, 0);
	}
	/* Cancelled: no more dispatch, only the end once its last host is final. */
	if (PQgetvalue(r, 0, 4)[0] == 't') {
		PQclear(r);
		return commit(st, finish_jobs(st, lit));
	}
	wave = (uint32_t)u64_at(r, 0, 1);
	wsize = (uint32_t)u64_at(r, 0, 2);
	nwaves = (uint32_t)u64_at(r, 0, 3);
	hasmf = PQgetvalue(r, 0, 5)[0] == 't';
	maxf = (uint32_t)u64_at(r, 0, 6);
	if (wsize == 0)
		wsize = (uint32_t)u64_at(r, 0, 7);
	PQclear(r);
	for (guard = 0; rv == 0 && guard <= nwaves; guard++) {
		uint64_t total, fin, failed;
		uint32_t lo = wave * wsize, hi = lo + wsize;

		snprintf(slo, sizeof(slo), "%u", lo);
		snprintf(shi, sizeof(shi), "%u", hi);
		r = q(st, "wave count",
		      "SELECT count(*), count(*) FILTER (WHERE state IN " FINAL "),"
		      " count(*) FILTER (WHERE state IN " FAILED ") FROM job_hosts"
		      " WHERE job_id = $1::bigint AND seq >= $2::int AND seq < $3::int",
		      3, v);
		if (r == NULL) {
			rv = OM_EDB;
			break;
		}
		total = u64_at(r, 0, 0);
		fin = u64_at(r, 0, 1);
		failed = u64_at(r, 0, 2);
		PQclear(r);
		if (fin < total) {
			rv = dispatch_locked(st, job_id, lo, hi, workers, nworkers);
			break;
		}
		if (wave + 1 >= nwaves)
			break;
		if (om_wave_stop((uint32_t)failed, (uint32_t)total, hasmf, maxf)) {
			char reason[200];
			const char *sv[3] = {jid, shi, reason};
			uint64_t n = 0;

			snprintf(reason, sizeof(reason),
			         "skipped: wave %u had %" PRIu64 " of %" PRIu64
			         " hosts failed (%" PRIu64 "%%), above --max-fail %u%%",
			         wave + 1, failed, total, failed * 100 / (total ? total : 1), maxf);
			rv = finalize(st, "skip",
			              "SELECT job_id, host, $3::text AS reason FROM job_hosts"
			              " WHERE job_id = $1::bigint AND seq >= $2::int AND state = "
			              "'queued'",
			              3, sv, "skipped", &n);
			if (rv == 0)
				om_warn("job %" PRIu64 ": %s; %" PRIu64 " later hosts skipped",
				        job_id, reason + 9, n);
			break;
		}
		wave++;
		{
			char sw[16];
			const char *wv[2] = {jid, sw};
			snprintf(sw, sizeof(sw), "%u", wave);
			rv = cmd(st, "next wave",
			         "UPDATE jobs SET wave = $2::int WHERE id = $1::bigint", 2, wv);
		}
		if (rv == 0)
			om_info("job %" PRIu64 ": wave %u of %u", job_id, wave + 1, nwaves);
	}
	if (rv == 0)
		rv = finish_jobs(st, lit);
	return commit(st, rv);
}

/* ------------------------------------------------------------------ delivery */

/*
 * A delivered task of $1 whose cancel is due, up to $2: sent again after
 * 10 s while the task is still delivered, so a lost reply does not leave a
 * host running that someone cancelled.
 */
#define CANCELS_SQL                                                                                \
	"UPDATE tasks SET cancel_sent_at = now() WHERE id IN (SELECT id FROM tasks"                \
	" WHERE worker = $1::text AND state = 'delivered' AND cancel"                              \
	" AND (cancel_sent_at IS NULL OR cancel_sent_at < now() - interval '10 s')"                \
	" ORDER BY id LIMIT $2::int FOR UPDATE SKIP LOCKED) RETURNING id"

/* Rows (cancelled task id, NULL) first, then at most one (claimed task id,
 * job id): the oldest queued task of $1, delivered by $3, claimed only when
 * no cancel is due. */
#define POLL_SQL                                                                                   \
	"WITH c AS (" CANCELS_SQL "),"                                                             \
	" k AS (UPDATE tasks SET state = 'delivered', delivered_at = now(),"                       \
	" delivered_by = $3::text WHERE id = (SELECT id FROM tasks"                                \
	" WHERE worker = $1::text AND state = 'queued' AND NOT EXISTS (SELECT 1 FROM c)"           \
	" ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"                                             \
	" RETURNING id, job_id)"                                                                   \
	" SELECT id, NULL FROM c UNION ALL SELECT id, job_id FROM k"

static int task_read(struct om_store *st, const char *tid, const char *jid, struct om_msg *out);

int
om_store_worker_poll(struct om_store *st, const char *worker, const char *master, bool claim,
                     size_t max_cancels, uint64_t **ids, size_t *n, struct om_msg *out)
{
	char lim[16], tid[24] = "", jid[24] = "";
	const char *v[3] = {worker, lim, master};
	PGresult *r;
	int rv, i, rows;

	*ids = NULL;
	*n = 0;
	memset(out, 0, sizeof(*out));
	snprintf(lim, sizeof(lim), "%zu", max_cancels);
	/*
	 * Cancels and the claim in one statement (one snapshot, BEGIN in the
	 * same round trip), so a task is never claimed and put back; in a
	 * transaction with the task's reads, so nothing stays claimed when
	 * they fail.  A busy worker: the cancels alone.
	 */
	if ((rv = claim ? begin(st) : om__store_ready(st)) != 0)
		return rv;
	if (claim)
		r = q(st, "worker poll", POLL_SQL, 3, v);
	else
		r = q(st, "cancels", "WITH c AS (" CANCELS_SQL ") SELECT id, NULL FROM c", 2, v);
	if (r == NULL)
		return claim ? commit(st, OM_EDB) : OM_EDB;
	rows = PQntuples(r);
	for (i = 0; i < rows; i++) {
		if (!PQgetisnull(r, i, 1)) {
			snprintf(tid, sizeof(tid), "%s", PQgetvalue(r, i, 0));
			snprintf(jid, sizeof(jid), "%s", PQgetvalue(r, i, 1));
			continue;
		}
		if (*ids == NULL && (*ids = om_calloc((size_t)rows, sizeof(**ids))) == NULL) {
			rv = OM_ENOMEM;
			break;
		}
		(*ids)[(*n)++] = u64_at(r, i, 0);
	}
	PQclear(r);
	if (rv != 0 || tid[0] == '\0') {
		/* cancels (their cancel_sent_at kept), nothing, or out of memory */
		if (claim)
			rv = commit(st, rv);
		if (rv != 0) {
			om_free(*ids);
			*ids = NULL;
			*n = 0;
			return rv;
		}
		return *n > 0 ? 0 : OM_ENOTFOUND;
	}
	return task_read(st, tid, jid, out);
}

/*
 * The TASK message of the task claimed in the open transaction, which it
 * commits (the reads and the COMMIT in one round trip).  On failure nothing
 * stays claimed: rolled back, or unclaimed when only the decoding failed.
 */
static int
task_read(struct om_store *st, const char *tid, const char *jid, struct om_msg *out)
{
	const char *tv[1] = {tid}, *jv[1] = {jid};
	struct om_task *tk = &out->u.task;
	PGresult *r, *res[4];
	int rv = 0, i, rows;

	out->type = OM_MSG_TASK;
	tk->task_id = strtoull(tid, NULL, 10);
	tk->job_id = strtoull(jid, NULL, 10);
	/*
	 * tasks.hosts is in seq order (both task creators make it so), and a
	 * delivered task's rows keep its id (hosts leave a task only when it is
	 * lost or unassigned, never redelivered), so "task hosts" is the array
	 * without joining it: the join was planned as a loop over every host of
	 * the job per array element when statistics were stale (4.7 s for a
	 * task of 5,000 hosts).  The count guards the equivalence; should it
	 * ever not hold, the array decides (slow but exact).
	 */
	{
		const struct om__call calls[4] = {
		        {"SELECT module, timeout_s, forks, become, become_user, check_mode FROM "
		         "jobs"
		         " WHERE id = $1::bigint",
		         1, jv, NULL, NULL, 0},
		        {"SELECT p.k, p.v FROM jobs, unnest(param_keys, param_vals) AS p(k, v)"
		         " WHERE id = $1::bigint",
		         1, jv, NULL, NULL, 0},
		        /* the array's length once: in the select list it was
		         * detoasted per joined row, 240 ms for 5,000 hosts */
		        {"WITH t AS MATERIALIZED (SELECT id, cardinality(hosts) AS n FROM tasks"
		         " WHERE id = $1::bigint)"
		         " SELECT h.host, h.addr, h.port, h.ssh_user, h.idc, t.n"
		         " FROM t LEFT JOIN job_hosts h ON h.task_id = t.id ORDER BY h.seq",
		         1, tv, NULL, NULL, 0},
		        {"COMMIT", 0, NULL, NULL, NULL, 0},
		};
		if (om__store_batch(st, "task read", calls, 4, res) != 0) {
			om__store_rollback(st);
			memset(out, 0, sizeof(*out));
			return OM_EDB;
		}
	}
	PQclear(res[3]);
	r = res[2];
	rows = PQntuples(r) == 1 && PQgetisnull(r, 0, 0) ? 0 : PQntuples(r);
	if (PQntuples(r) > 0 && u64_at(r, 0, 5) != (uint64_t)rows) {
		const char *hv[1] = {tid};
		PGresult *a = q(st, "task hosts",
		                "SELECT h.host, h.addr, h.port, h.ssh_user, h.idc FROM tasks t,"
		                " unnest(t.hosts) WITH ORDINALITY AS u(host, i)"
		                " JOIN job_hosts h ON h.host = u.host"
		                " WHERE t.id = $1::bigint AND h.job_id = t.job_id ORDER BY u.i",
		                1, hv);
		om_warn("task %s: its hosts are not all its own any more; sent as created", tid);
		PQclear(r);
		res[2] = r = a;
		rows = a != NULL ? PQntuples(a) : 0;
		if (a == NULL)
			rv = OM_EDB;
	}
	r = res[0];
	if (rv == 0 && PQntuples(r) != 1) {
		om__store_set_err(st, "task job", "the task's job is gone");
		rv = OM_EDB;
	} else if (rv == 0) {
		tk->module = om_strdup(PQgetvalue(r, 0, 0));
		tk->timeout_s = (uint32_t)u64_at(r, 0, 1);
		tk->forks = (uint32_t)u64_at(r, 0, 2);
		tk->become = PQgetvalue(r, 0, 3)[0] == 't';
		if (!PQgetisnull(r, 0, 4))
			tk->become_user = om_strdup(PQgetvalue(r, 0, 4));
		tk->check = PQgetvalue(r, 0, 5)[0] == 't';
		rv = tk->module == NULL || (tk->become_user == NULL && !PQgetisnull(r, 0, 4))
		             ? OM_ENOMEM
		             : 0;
	}
	r = res[1];
	if (rv == 0) {
		int np = PQntuples(r);

		if ((tk->params = om_calloc((size_t)np + 1, sizeof(*tk->params))) == NULL)
			rv = OM_ENOMEM;
		for (i = 0; rv == 0 && i < np; i++) {
			struct om_kv *kv = &tk->params[i];
			kv->key = om_strdup(PQgetvalue(r, i, 0));
			if (!PQgetisnull(r, i, 1))
				kv->val = om_strdup(PQgetvalue(r, i, 1));
			tk->nparams++;
			if (kv->key == NULL || (kv->val == NULL && !PQgetisnull(r, i, 1)))
				rv = OM_ENOMEM;
		}
	}
	r = res[2];
	if (rv == 0) {
		if ((tk->hosts = om_calloc((size_t)rows + 1, sizeof(*tk->hosts))) == NULL)
			rv = OM_ENOMEM;
		for (i = 0; rv == 0 && i < rows; i++) {
			struct om_host *h = &tk->hosts[i];
			h->name = om_strdup(PQgetvalue(r, i, 0));
			h->addr = om_strdup(PQgetvalue(r, i, 1));
			h->port = (uint32_t)u64_at(r, i, 2);
			if (!PQgetisnull(r, i, 3))
				h->user = om_strdup(PQgetvalue(r, i, 3));
			h->idc = om_strdup(PQgetvalue(r, i, 4));
			tk->nhosts++;
			if (h->name == NULL || h->addr == NULL || h->idc == NULL ||
			    (h->user == NULL && !PQgetisnull(r, i, 3)))
				rv = OM_ENOMEM;
		}
	}
	for (i = 0; i < 3; i++)
		PQclear(res[i]);
	if (rv != 0) {
		char err[sizeof(st->err)];

		om_msg_release(out);
		memset(out, 0, sizeof(*out));
		/* committed: queued again, and the first error is the one reported */
		snprintf(err, sizeof(err), "%s", st->err);
		if (om_store_task_unclaim(st, strtoull(tid, NULL, 10)) != 0)
			om_warn("task %s: claimed and not sent, left to the heartbeats", tid);
		snprintf(st->err, sizeof(st->err), "%s", err);
	}
	return rv;
}

int
om_store_task_unclaim(struct om_store *st, uint64_t task_id)
{
	char tid[24];
	const char *v[1] = {tid};
	int rv;

	if ((rv = om__store_ready(st)) != 0)
		return rv;
	snprintf(tid, sizeof(tid), "%" PRIu64, task_id);
	return cmd(st, "task unclaim",
	           "UPDATE tasks SET state = 'queued', delivered_at = NULL, delivered_by = NULL"
	           " WHERE id = $1::bigint AND state = 'delivered'",
	           1, v);
}

/* ------------------------------------------------------------------ reports */

void
om_task_meta_release(struct om_task_meta *t)
{
	if (t == NULL)
		return;
	om_store_names_free(t->hosts, t->nhosts);
	om_free(t->worker);
	memset(t, 0, sizeof(*t));
}

int
om_store_task_meta(struct om_store *st, uint64_t task_id, struct om_task_meta *out)
{
	char tid[24];
	const char *v[1] = {tid};
	PGresult *r;
	int rv, i, rows;

	memset(out, 0, sizeof(*out));
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	snprintf(tid, sizeof(tid), "%" PRIu64, task_id);
	if ((r = q(st, "task meta",
	           "SELECT job_id, worker, attempt, u.host FROM tasks t"
	           " LEFT JOIN LATERAL unnest(t.hosts) WITH ORDINALITY AS u(host, i) ON true"
	           " WHERE t.id = $1::bigint ORDER BY u.i",
	           1, v)) == NULL)
		return OM_EDB;
	rows = PQntuples(r);
	if (rows == 0) {
		PQclear(r);
		return OM_ENOTFOUND;
	}
	out->id = task_id;
	out->job_id = u64_at(r, 0, 0);
	out->attempt = (uint32_t)u64_at(r, 0, 2);
	out->worker = om_strdup(PQgetvalue(r, 0, 1));
	if (!PQgetisnull(r, 0, 3) &&
	    (out->hosts = om_calloc((size_t)rows, sizeof(*out->hosts))) == NULL)
		rv = OM_ENOMEM;
	for (i = 0; rv == 0 && out->hosts != NULL && i < rows; i++) {
		if ((out->hosts[i] = om_strdup(PQgetvalue(r, i, 3))) == NULL)
			rv = OM_ENOMEM;
		else
			out->nhosts++;
	}
	if (out->worker == NULL)
		rv = OM_ENOMEM;
	PQclear(r);
	if (rv != 0)
		om_task_meta_release(out);
	return rv;
}

int
om_store_tasks_settle(struct om_store *st, const uint64_t *ids, size_t n)
{
	struct om_buf b;
	const char *v[1];
	int rv;

	if (n == 0)
		return 0;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((rv = ids_literal(&b, ids, n)) == 0) {
		v[0] = (const char *)b.data;
		rv = cmd(st, "tasks settle",
		         "UPDATE tasks SET state = 'done' WHERE id = ANY($1::bigint[])"
		         " AND state IN ('queued','delivered','lost') AND NOT EXISTS (SELECT 1 "
		         "FROM job_hosts h"
		         " WHERE h.task_id = tasks.id AND h.state NOT IN " FINAL ")",
		         1, v);
	}
	om_buf_release(&b);
	return rv;
}

/* ------------------------------------------------------------------ heartbeats, loss */

int
om_store_worker_holds(struct om_store *st, const char *worker, const uint64_t *held, size_t nheld,
                      int64_t grace_ms, uint64_t **missing, size_t *nmissing)
{
	struct om_buf b;
	char grace[24];
	const char *v[3];
	PGresult *r = NULL;
	int rv, i, rows;

	*missing = NULL;
	*nmissing = 0;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((rv = ids_literal(&b, held, nheld)) != 0)
		goto out;
	snprintf(grace, sizeof(grace), "%" PRId64, grace_ms);
	v[0] = (const char *)b.data;
	v[1] = worker;
	v[2] = grace;
	/* Held means received: its hosts are running there. */
	if (nheld > 0 &&
	    (rv = cmd(st, "hosts running",
	              "UPDATE job_hosts SET state = 'running', started_at = coalesce(started_at, "
	              "now())"
	              " WHERE task_id IN (SELECT id FROM tasks WHERE id = ANY($1::bigint[])"
	              " AND worker = $2::text) AND state = 'dispatched'",
	              2, v)) != 0)
		goto out;
	if ((r = q(st, "tasks not held",
	           "SELECT id FROM tasks WHERE worker = $2::text AND state = 'delivered'"
	           " AND delivered_at < now() - $3::bigint * interval '1 millisecond'"
	           " AND NOT (id = ANY($1::bigint[])) ORDER BY id",
	           3, v)) == NULL) {
		rv = OM_EDB;
		goto out;
	}
	rows = PQntuples(r);
	if (rows > 0 && (*missing = om_calloc((size_t)rows, sizeof(**missing))) == NULL) {
		rv = OM_ENOMEM;
		goto out;
	}
	for (i = 0; i < rows; i++)
		(*missing)[i] = u64_at(r, i, 0);
	*nmissing = (size_t)rows;
out:
	PQclear(r);
	om_buf_release(&b);
	return rv;
}

int
om_store_tasks_lose(struct om_store *st, const uint64_t *ids, size_t n, const char *reason,
                    uint64_t **jobs, size_t *njobs, uint64_t *lost, uint64_t *retried)
{
	struct om_buf b, jb;
	const char *v[2];
	PGresult *r;
	int rv, i, rows;

	*jobs = NULL;
	*njobs = 0;
	*lost = *retried = 0;
	om_buf_init(&jb, IDS_MAX);
	if (n == 0)
		return 0;
	if ((rv = ids_literal(&b, ids, n)) != 0) {
		om_buf_release(&b);
		return rv;
	}
	v[0] = (const char *)b.data;
	v[1] = reason;
	if ((rv = begin(st)) != 0)
		goto out;
	if ((r = q(st, "lost jobs",
	           "SELECT DISTINCT job_id FROM tasks WHERE id = ANY($1::bigint[])"
	           " AND state IN ('queued','delivered') ORDER BY job_id",
	           1, v)) == NULL) {
		rv = commit(st, OM_EDB);
		goto out;
	}
	rows = PQntuples(r);
	for (i = 0; i < rows && rv == 0; i++)
		rv = ids_push(jobs, njobs, u64_at(r, i, 0));
	PQclear(r);
	if (rv == 0 && *njobs == 0) {
		rv = commit(st, 0);
		goto out;
	}
	if (rv == 0)
		rv = ids_literal(&jb, *jobs, *njobs);
	if (rv == 0)
		rv = lock_jobs(st, (const char *)jb.data);
	/* A task whose hosts all ended is done, not lost. */
	if (rv == 0)
		rv = cmd(st, "tasks lost",
		         "UPDATE tasks t SET state = CASE WHEN EXISTS (SELECT 1 FROM job_hosts h"
		         " WHERE h.task_id = t.id AND h.state NOT IN " FINAL ") THEN 'lost'"
		         " ELSE 'done' END WHERE id = ANY($1::bigint[])"
		         " AND state IN ('queued','delivered')",
		         1, v);
	/* --retry-lost or an idempotent module (jobs.retry_lost either way):
	 * the host runs again elsewhere, and the run that was lost is recorded
	 * (I3: no second run without a retry record). */
	if (rv == 0 &&
	    (r = q(st, "retry lost",
	           "WITH r AS (UPDATE job_hosts h SET state = 'queued', task_id = NULL,"
	           " worker = NULL, attempt = h.attempt + 1, started_at = NULL,"
	           " reason = 'retry ' || (h.attempt + 1) || ': ' || $2::text,"
	           " pending_since = NULL FROM tasks t, jobs j"
	           " WHERE t.id = ANY($1::bigint[]) AND h.task_id = t.id AND j.id = h.job_id"
	           " AND j.retry_lost AND j.cancelled_by IS NULL AND h.attempt < 3 AND h.state NOT "
	           "IN " FINAL " RETURNING h.job_id, h.host, h.attempt,"
	           " t.id AS task_id, t.worker),"
	           " a AS (INSERT INTO job_host_attempts (job_id, host, attempt, task_id, worker,"
	           " reason) SELECT job_id, host, attempt - 1, task_id, worker, $2::text FROM r)"
	           " SELECT count(*) FROM r",
	           2, v)) == NULL)
		rv = OM_EDB;
	if (rv == 0) {
		*retried = u64_at(r, 0, 0);
		PQclear(r);
		rv = finalize(st, "lose",
		              "SELECT h.job_id, h.host, $2::text AS reason FROM job_hosts h"
		              " WHERE h.task_id = ANY($1::bigint[])",
		              2, v, "lost", lost);
	}
	if (rv == 0)
		rv = finish_jobs(st, (const char *)jb.data);
	rv = commit(st, rv);
out:
	if (rv != 0) {
		om_free(*jobs);
		*jobs = NULL;
		*njobs = 0;
	}
	om_buf_release(&jb);
	om_buf_release(&b);
	return rv;
}

int
om_store_tasks_orphaned(struct om_store *st, struct om_orphan **out, size_t *n)
{
	char live[24];
	const char *v[1] = {live};
	PGresult *r;
	int rv, i, rows;

	*out = NULL;
	*n = 0;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	snprintf(live, sizeof(live), "%" PRId64, st->live_ms);
	if ((r = q(st, "orphans",
	           "SELECT t.id, t.state = 'delivered', t.worker,"
	           " coalesce((extract(epoch FROM now() - w.alive_at))::bigint, -1),"
	           " coalesce(w.alive_at < now() - $1::bigint * interval '1 millisecond', true)"
	           " FROM tasks t LEFT JOIN workers w ON w.name = t.worker"
	           " WHERE t.state IN ('queued','delivered') AND (w.name IS NULL OR NOT w.connected"
	           " OR w.alive_at IS NULL OR w.alive_at < now() - $1::bigint * interval '1 "
	           "millisecond')"
	           " ORDER BY t.id LIMIT 1000",
	           1, v)) == NULL)
		return OM_EDB;
	rows = PQntuples(r);
	if (rows > 0 && (*out = om_calloc((size_t)rows, sizeof(**out))) == NULL) {
		PQclear(r);
		return OM_ENOMEM;
	}
	for (i = 0; i < rows; i++) {
		struct om_orphan *o = &(*out)[i];
		o->task_id = u64_at(r, i, 0);
		o->delivered = PQgetvalue(r, i, 1)[0] == 't';
		snprintf(o->worker, sizeof(o->worker), "%s", PQgetvalue(r, i, 2));
		o->silent_s = strtoll(PQgetvalue(r, i, 3), NULL, 10);
		o->stale = PQgetvalue(r, i, 4)[0] == 't';
	}
	*n = (size_t)rows;
	PQclear(r);
	return 0;
}

int
om_store_tasks_unassign(struct om_store *st, const uint64_t *ids, size_t n, uint64_t **jobs,
                        size_t *njobs)
{
	struct om_buf b;
	const char *v[1];
	PGresult *r;
	int rv, i, rows;

	*jobs = NULL;
	*njobs = 0;
	if (n == 0)
		return 0;
	if ((rv = ids_literal(&b, ids, n)) != 0) {
		om_buf_release(&b);
		return rv;
	}
	v[0] = (const char *)b.data;
	if ((rv = begin(st)) != 0) {
		om_buf_release(&b);
		return rv;
	}
	/* Only tasks no master delivered: they never ran, so they may go elsewhere. */
	r = q(st, "unassign",
	      "WITH t AS (UPDATE tasks SET state = 'done' WHERE id IN (SELECT id FROM tasks"
	      " WHERE id = ANY($1::bigint[]) AND state = 'queued' FOR UPDATE SKIP LOCKED)"
	      " RETURNING id, job_id),"
	      " h AS (UPDATE job_hosts SET state = 'queued', task_id = NULL, worker = NULL"
	      " FROM t WHERE job_hosts.task_id = t.id AND job_hosts.state = 'dispatched' RETURNING "
	      "1)"
	      " SELECT DISTINCT job_id, (SELECT count(*) FROM h) FROM t",
	      1, v);
	if (r == NULL) {
		rv = OM_EDB;
	} else {
		rows = PQntuples(r);
		for (i = 0; i < rows && rv == 0; i++)
			rv = ids_push(jobs, njobs, u64_at(r, i, 0));
		PQclear(r);
	}
	rv = commit(st, rv);
	om_buf_release(&b);
	if (rv != 0) {
		om_free(*jobs);
		*jobs = NULL;
		*njobs = 0;
	}
	return rv;
}

int
om_store_jobs_open(struct om_store *st, size_t max, uint64_t **jobs, size_t *njobs)
{
	char lim[16];
	const char *v[1] = {lim};
	PGresult *r;
	int rv, i, rows;

	*jobs = NULL;
	*njobs = 0;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	snprintf(lim, sizeof(lim), "%zu", max);
	/* Jobs something is owed to: hosts of the running wave waiting for a
	 * task (pending, a re-run, a dispatch a dead master left undone), or a
	 * running wave all final (the next wave, or the end).  Hosts of later
	 * waves wait for their wave: a rolling job is not touched every second. */
	if ((r = q(st, "open jobs",
	           "SELECT id FROM jobs j WHERE state = 'running' AND (EXISTS (SELECT 1 FROM"
	           " job_hosts h WHERE h.job_id = j.id AND h.state = 'queued' AND h.task_id IS NULL"
	           " AND j.cancelled_by IS NULL AND h.seq >= j.wave * j.wave_size"
	           " AND h.seq < (j.wave + 1) * j.wave_size)"
	           " OR NOT EXISTS (SELECT 1 FROM job_hosts h WHERE h.job_id = j.id"
	           " AND h.state NOT IN " FINAL " AND h.seq < (j.wave + 1) * j.wave_size))"
	           " ORDER BY id LIMIT $1::int",
	           1, v)) == NULL)
		return OM_EDB;
	rows = PQntuples(r);
	for (i = 0; i < rows && rv == 0; i++)
		rv = ids_push(jobs, njobs, u64_at(r, i, 0));
	PQclear(r);
	return rv;
}

int
om_store_pending_expire(struct om_store *st, int64_t pending_ms, uint64_t *ended)
{
	char pend[24];
	const char *v[1] = {pend};
	PGresult *r;
	struct om_buf jb;
	uint64_t *jobs = NULL;
	size_t njobs = 0;
	int rv, i, rows;

	*ended = 0;
	if ((rv = begin(st)) != 0)
		return rv;
	om_buf_init(&jb, IDS_MAX);
	snprintf(pend, sizeof(pend), "%" PRId64, pending_ms);
	if ((r = q(st, "pending jobs",
	           "SELECT DISTINCT job_id FROM job_hosts WHERE state = 'queued' AND task_id IS "
	           "NULL"
	           " AND pending_since < now() - $1::bigint * interval '1 millisecond'"
	           " ORDER BY job_id LIMIT 100",
	           1, v)) == NULL)
		rv = OM_EDB;
	if (rv == 0) {
		rows = PQntuples(r);
		for (i = 0; i < rows && rv == 0; i++)
			rv = ids_push(&jobs, &njobs, u64_at(r, i, 0));
		PQclear(r);
	}
	if (rv == 0 && njobs > 0) {
		const char *fv[2] = {NULL, pend};
		if ((rv = ids_literal(&jb, jobs, njobs)) == 0)
			fv[0] = (const char *)jb.data;
		if (rv == 0)
			rv = lock_jobs(st, fv[0]);
		if (rv == 0)
			rv = finalize(st, "pending expire",
			              "SELECT job_id, host, 'no live worker in IDC ''' || idc"
			              " || ''' for ' || ($2::bigint / 1000) || ' s' AS reason"
			              " FROM job_hosts WHERE job_id = ANY($1::bigint[])"
			              " AND state = 'queued' AND task_id IS NULL"
			              " AND pending_since < now() - $2::bigint * interval '1 "
			              "millisecond'",
			              2, fv, "unreachable", ended);
		if (rv == 0)
			rv = finish_jobs(st, fv[0]);
	}
	om_free(jobs);
	om_buf_release(&jb);
	return commit(st, rv);
}

int
om_store_job_cancel(struct om_store *st, uint64_t job_id, const char *reason, uint64_t *now,
                    uint64_t *asked, char ***workers, size_t *nworkers)
{
	char jid[24], lit[40];
	const char *v[2] = {jid, reason};
	PGresult *r;
	int rv, i, rows;

	*now = *asked = 0;
	snprintf(jid, sizeof(jid), "%" PRIu64, job_id);
	snprintf(lit, sizeof(lit), "{%" PRIu64 "}", job_id);
	if ((rv = begin(st)) != 0)
		return rv;
	rv = lock_jobs(st, lit);
	if (rv == 0)
		rv = cmd(st, "cancel job",
		         "UPDATE jobs SET cancelled_by = $2::text WHERE id = $1::bigint"
		         " AND cancelled_by IS NULL",
		         2, v);
	/* Not delivered yet: withdrawn, never runs. */
	if (rv == 0)
		rv = cmd(st, "withdraw",
		         "UPDATE tasks SET state = 'done' WHERE job_id = $1::bigint AND state = "
		         "'queued'",
		         1, v);
	if (rv == 0)
		rv = finalize(st, "cancel",
		              "SELECT h.job_id, h.host, $2::text AS reason FROM job_hosts h"
		              " LEFT JOIN tasks t ON t.id = h.task_id WHERE h.job_id = $1::bigint"
		              " AND (h.state = 'queued' OR (h.state = 'dispatched' AND t.state = "
		              "'done'))",
		              2, v, "cancelled", now);
	/* Delivered: the worker stops them and reports the hosts cancelled. */
	if (rv == 0 &&
	    (r = q(st, "cancel tasks",
	           "WITH t AS (UPDATE tasks SET cancel = true WHERE job_id = $1::bigint"
	           " AND state = 'delivered' RETURNING id, worker)"
	           " SELECT t.worker, (SELECT count(*) FROM job_hosts h WHERE h.task_id = t.id"
	           " AND h.state NOT IN " FINAL "), pg_notify('om_dispatch', t.worker) FROM t",
	           1, v)) == NULL)
		rv = OM_EDB;
	if (rv == 0) {
		rows = PQntuples(r);
		for (i = 0; i < rows && rv == 0; i++) {
			*asked += u64_at(r, i, 1);
			if (workers != NULL)
				rv = names_push(workers, nworkers, PQgetvalue(r, i, 0));
		}
		PQclear(r);
	}
	if (rv == 0)
		rv = finish_jobs(st, lit);
	return commit(st, rv);
}

/* ------------------------------------------------------------------ notifications */

int
om_store_listen(struct om_store *st)
{
	int rv;

	st->listen = true;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	return om__store_listen_now(st);
}

int
om__store_listen_now(struct om_store *st)
{
	PGresult *r = PQexec(st->conn, "LISTEN om_dispatch; LISTEN om_events");
	int rv = om__store_res_ok(r) ? 0 : OM_EDB;

	if (rv != 0)
		om__store_set_err_res(st, "listen", r);
	PQclear(r);
	return rv;
}

int
om_store_notifications(struct om_store *st,
                       void (*fn)(void *arg, const char *channel, const char *payload), void *arg)
{
	PGnotify *nf;
	int n = 0;

	if (!st->listen || PQstatus(st->conn) != CONNECTION_OK)
		return 0;
	if (!PQconsumeInput(st->conn)) {
		st->broken = true;
		return OM_EDB;
	}
	/* Bounded per call: the loop has other work. */
	while (n < 4096 && (nf = PQnotifies(st->conn)) != NULL) {
		fn(arg, nf->relname, nf->extra);
		PQfreemem(nf);
		n++;
	}
	return n;
}

void
om_store_set_live_ms(struct om_store *st, int64_t live_ms)
{
	st->live_ms = live_ms;
}
