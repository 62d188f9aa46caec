/*
 * Output partitions and retention (store.h, om_store_retention).
 *
 * job_events, the biggest table by far, is partitioned by job id range
 * (migration 7).  Job ids grow with time, so a range is a span of time: each
 * partition is made as wide as the number of jobs submitted in the last 24
 * hours (at least MIN_WIDTH ids), about one day of jobs at the current rate.
 * Partitions are created ahead of the job id sequence, so an insert never
 * waits for one; a burst that outruns them lands in the default partition,
 * and the next partition starts above what is there.
 *
 * Retention deletes jobs that ended before the horizon.  A partition whose
 * ids are all allocated and whose jobs all ended before the horizon is
 * dropped whole (a DROP TABLE, whatever its size), then its jobs are deleted.
 * Jobs outside such partitions (in the default partition, or in a partition
 * that still spans more than the retention period at a low job rate) are
 * deleted row by row, a bounded batch per call.
 *
 * Every step is one short transaction under a transaction-scoped advisory
 * lock, so several masters never do the same work twice and a master killed
 * half way leaves nothing the next call does not finish: a dropped
 * partition's jobs are no longer in a partition, so the row-by-row step
 * deletes them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "om/base.h"
#include "store.h"
#include "store_int.h"

#define MIN_WIDTH   1000 /* job ids per partition, at least */
#define MAX_CREATE  4    /* partitions created per call */
#define JOB_BATCH   "500"   /* jobs deleted per transaction, at most */
#define HOST_BATCH  "20000" /* and their host rows, at most (but one job always) */
#define EVENT_BATCH "50000" /* and output rows, at most */
#define MAX_BATCHES 8    /* transactions of row deletion per call */

/* DDL must not queue behind a long transaction (and make every insert queue
 * behind it): give up and try again at the next call instead. */
#define DDL_LOCK_TIMEOUT "SET LOCAL lock_timeout = '2s'"

/* "omretent" */
static const char *const lock_key_sql = "SELECT pg_try_advisory_xact_lock(8029199490741530228)";

/* BEGIN and the advisory lock: 1 held, 0 another master has it, or OM_EDB. */
static int
begin_locked(struct om_store *st)
{
	PGresult *r;
	int held;

	if (om__store_run_cmd(st, "retention", "BEGIN", 0, NULL) != 0)
		return OM_EDB;
	if ((r = om__store_query(st, "retention lock", lock_key_sql, 0, NULL, 0)) == NULL) {
		om__store_rollback(st);
		return OM_EDB;
	}
	held = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	if (!held) {
		om__store_rollback(st);
		return 0;
	}
	return 1;
}

static int
commit(struct om_store *st)
{
	if (om__store_run_cmd(st, "retention commit", "COMMIT", 0, NULL) != 0) {
		om__store_rollback(st);
		return OM_EDB;
	}
	return 0;
}

static int64_t
col_i64(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/*
 * Partitions ahead of the job ids: while fewer than one partition width of
 * ids is left above the last job id, one more.  Names and bounds are numbers
 * this function made: nothing from outside goes into the DDL text.
 */
static int
create_ahead(struct om_store *st, struct om_retention_stats *out)
{
	PGresult *r;
	int64_t top, last, width, dmax, lo, hi;
	char sql[256], name[64], slo[24], shi[24];
	const char *v[3] = {name, slo, shi};
	int i, rv;

	if ((rv = begin_locked(st)) <= 0)
		return rv;
	if (om__store_run_cmd(st, "retention", DDL_LOCK_TIMEOUT, 0, NULL) != 0)
		goto fail;
	r = om__store_query(st, "partitions",
	                    "SELECT (SELECT coalesce(max(hi), 1) FROM job_event_parts),"
	                    " (SELECT last_value FROM jobs_id_seq),"
	                    " (SELECT count(*) FROM jobs WHERE created_at > now() - interval '1 day'),"
	                    " (SELECT coalesce(max(job_id), 0) FROM job_events_default)",
	                    0, NULL, 0);
	if (r == NULL)
		goto fail;
	top = col_i64(r, 0, 0);
	last = col_i64(r, 0, 1);
	width = col_i64(r, 0, 2);
	dmax = col_i64(r, 0, 3);
	PQclear(r);
	if (width < MIN_WIDTH)
		width = MIN_WIDTH;
	for (i = 0; i < MAX_CREATE && top <= last + width; i++) {
		/* Rows already in the default partition stay there: a new range
		 * must not cover them (PostgreSQL refuses it). */
		lo = top > dmax + 1 ? top : dmax + 1;
		hi = lo + width;
		snprintf(name, sizeof(name), "job_events_p%" PRId64, lo);
		snprintf(slo, sizeof(slo), "%" PRId64, lo);
		snprintf(shi, sizeof(shi), "%" PRId64, hi);
		snprintf(sql, sizeof(sql),
		         "CREATE TABLE %s PARTITION OF job_events FOR VALUES FROM (%s) TO (%s)", name,
		         slo, shi);
		if (om__store_run_cmd(st, "create partition", sql, 0, NULL) != 0 ||
		    om__store_run_cmd(st, "create partition",
		                      "INSERT INTO job_event_parts (name, lo, hi)"
		                      " VALUES ($1, $2::bigint, $3::bigint)",
		                      3, v) != 0)
			goto fail;
		out->created++;
		top = hi;
	}
	return commit(st);
fail:
	om__store_rollback(st);
	return OM_EDB;
}

/* One partition whose jobs all ended before the horizon, dropped: 1, 0 (none), OM_EDB. */
static int
drop_one(struct om_store *st, const char *days, struct om_retention_stats *out)
{
	const char *v[1] = {days};
	char sql[128], name[64];
	PGresult *r;
	int rv;

	if ((rv = begin_locked(st)) <= 0)
		return rv;
	if (om__store_run_cmd(st, "retention", DDL_LOCK_TIMEOUT, 0, NULL) != 0)
		goto fail;
	/* Every id below hi allocated (no new job can land there), and no job
	 * of the range still running or ended after the horizon. */
	r = om__store_query(st, "expired partition",
	                    "SELECT p.name FROM job_event_parts p"
	                    " WHERE p.hi <= (SELECT last_value FROM jobs_id_seq) + 1"
	                    " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id >= p.lo"
	                    " AND j.id < p.hi AND (j.state <> 'done'"
	                    " OR j.finished_at >= now() - make_interval(days => $1::int)))"
	                    " ORDER BY p.lo LIMIT 1",
	                    1, v, 0);
	if (r == NULL)
		goto fail;
	if (PQntuples(r) == 0) {
		PQclear(r);
		om__store_rollback(st);
		return 0;
	}
	/* The name is one this module made (job_events_p<digits>) */
	snprintf(name, sizeof(name), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	if (strncmp(name, "job_events_p", 12) != 0 || name[12] == '\0' ||
	    strspn(name + 12, "0123456789") != strlen(name + 12)) {
		om__store_set_err(st, "expired partition", "unexpected partition name");
		goto fail;
	}
	snprintf(sql, sizeof(sql), "DROP TABLE %s", name);
	{
		const char *nv[1] = {name};
		if (om__store_run_cmd(st, "drop partition", sql, 0, NULL) != 0 ||
		    om__store_run_cmd(st, "drop partition",
		                      "DELETE FROM job_event_parts WHERE name = $1", 1, nv) != 0)
			goto fail;
	}
	if ((rv = commit(st)) != 0)
		return rv;
	out->dropped++;
	return 1;
fail:
	om__store_rollback(st);
	return OM_EDB;
}

/*
 * Expired jobs outside droppable partitions, a bounded batch (their host rows
 * count too: one job may have 100,000): their output first, at most
 * EVENT_BATCH rows, and the jobs themselves only once their remaining output
 * fits in this transaction, so a job with millions of lines of output takes
 * several calls instead of one statement that never finishes.  > 0 when
 * something was deleted, 0 when nothing is left, or OM_EDB.
 */
static int
delete_batch(struct om_store *st, const char *days, struct om_retention_stats *out)
{
	const char *v[1] = {days};
	PGresult *r;
	int rv;
	long nev, njobs;

	if ((rv = begin_locked(st)) <= 0)
		return rv;
	/* A job in a partition that will be dropped whole waits for the drop:
	 * deleting its output row by row is what partitions are there to avoid. */
	r = om__store_query(st, "expired jobs",
	                    "WITH b AS (SELECT id FROM (SELECT j.id, j.nhosts,"
	                    " sum(j.nhosts) OVER (ORDER BY j.id) AS upto FROM jobs j"
	                    " WHERE j.state = 'done'"
	                    " AND j.finished_at < now() - make_interval(days => $1::int)"
	                    " AND NOT EXISTS (SELECT 1 FROM job_event_parts p"
	                    " WHERE j.id >= p.lo AND j.id < p.hi"
	                    " AND p.hi <= (SELECT last_value FROM jobs_id_seq) + 1)"
	                    " ORDER BY j.id LIMIT " JOB_BATCH ") x"
	                    " WHERE x.upto - x.nhosts < " HOST_BATCH "),"
	                    " e AS (DELETE FROM job_events WHERE (job_id, id) IN (SELECT job_id, id"
	                    " FROM job_events WHERE job_id IN (SELECT id FROM b)"
	                    " LIMIT " EVENT_BATCH ") RETURNING 1),"
	                    " ne AS (SELECT count(*) AS n FROM e),"
	                    " d AS (DELETE FROM jobs WHERE id IN (SELECT id FROM b)"
	                    " AND (SELECT n FROM ne) < " EVENT_BATCH " RETURNING 1)"
	                    " SELECT (SELECT n FROM ne), (SELECT count(*) FROM d)",
	                    1, v, 0);
	if (r == NULL) {
		om__store_rollback(st);
		return OM_EDB;
	}
	nev = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	njobs = strtol(PQgetvalue(r, 0, 1), NULL, 10);
	PQclear(r);
	if ((rv = commit(st)) != 0)
		return rv;
	out->jobs_deleted += (uint64_t)njobs;
	return njobs > 0 || nev > 0;
}

int
om_store_retention(struct om_store *st, int retention_days, struct om_retention_stats *out)
{
	char days[16];
	int rv, i;

	memset(out, 0, sizeof(*out));
	if (retention_days < 0)
		return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((rv = create_ahead(st, out)) < 0)
		goto out;
	if (retention_days == 0)
		return 0;
	snprintf(days, sizeof(days), "%d", retention_days);
	if ((rv = drop_one(st, days, out)) < 0)
		goto out;
	for (i = 0; i < MAX_BATCHES; i++)
		if ((rv = delete_batch(st, days, out)) <= 0)
			break;
	if (rv >= 0)
		return 0;
out:
	return rv;
}
