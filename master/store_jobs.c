/*
 * The store's reads for job control and host details (contract in store.h):
 * a job's submitter and state (cancel), one inventory host with its facts,
 * and the job history
 * (job show, jobs list, job output) limited to the hosts a caller may see.
 * Parameterized like the rest of the store; results in binary format where
 * the column types are fixed, so no text is parsed back.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "om/base.h"
#include "om/msg.h"
#include "om/noise.h" /* om_wipe */
#include "store.h"
#include "store_int.h"

/* One parameterized query, binary results (om__store_query). */
#define query(st, what, sql, n, vals) om__store_query(st, what, sql, n, vals, 1)

/* Column col of row as an owned string; NULL stays NULL.  false when out of memory. */
static bool
take_str(const PGresult *r, int row, int col, char **out)
{
	*out = NULL;
	if (PQgetisnull(r, row, col))
		return true;
	*out = om_strndup(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
	return *out != NULL;
}

void
om_job_info_release(struct om_job_info *j)
{
	if (j == NULL)
		return;
	om_free(j->created_by);
	om_free(j->module);
	memset(j, 0, sizeof(*j));
}

int
om_store_job_get(struct om_store *st, uint64_t job_id, struct om_job_info *out)
{
	char jid[24];
	const char *v[1] = {jid};
	PGresult *r;
	int rv;

	if (out == NULL)
		return OM_EINVAL;
	memset(out, 0, sizeof(*out));
	if (job_id == 0 || job_id > INT64_MAX)
		return OM_ENOTFOUND;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	snprintf(jid, sizeof(jid), "%" PRIu64, job_id);
	if ((r = query(st, "job get",
	               "SELECT created_by, module, state = 'done', nhosts FROM jobs"
	               " WHERE id = $1::bigint",
	               1, v)) == NULL)
		return OM_EDB;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return OM_ENOTFOUND;
	}
	out->id = job_id;
	out->done = PQgetlength(r, 0, 2) == 1 && PQgetvalue(r, 0, 2)[0] != 0;
	out->nhosts = (uint32_t)om__store_bin_int(r, 0, 3);
	rv = take_str(r, 0, 0, &out->created_by) && take_str(r, 0, 1, &out->module) ? 0 : OM_ENOMEM;
	PQclear(r);
	if (rv != 0)
		om_job_info_release(out);
	return rv;
}

int
om_store_host_get(struct om_store *st, const char *name, struct om_host *h, char **facts,
                  int64_t *facts_at_ms)
{
	const char *v[1] = {name};
	PGresult *r;
	int rv;

	if (h == NULL || facts == NULL || facts_at_ms == NULL)
		return OM_EINVAL;
	memset(h, 0, sizeof(*h));
	*facts = NULL;
	*facts_at_ms = 0;
	if (name == NULL)
		return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((r = query(st, "host get",
	               "SELECT name, addr, port, ssh_user, idc, groups, facts::text,"
	               " (extract(epoch FROM facts_at) * 1000)::bigint FROM hosts"
	               " WHERE name = $1::text",
	               1, v)) == NULL)
		return OM_EDB;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return OM_ENOTFOUND;
	}
	h->port = (uint32_t)om__store_bin_int(r, 0, 2);
	*facts_at_ms = om__store_bin_int(r, 0, 7);
	if (!take_str(r, 0, 0, &h->name) || !take_str(r, 0, 1, &h->addr) ||
	    !take_str(r, 0, 3, &h->user) || !take_str(r, 0, 4, &h->idc) ||
	    !take_str(r, 0, 6, facts)) {
		rv = OM_ENOMEM;
	} else {
		rv = om__store_bin_text_array(PQgetvalue(r, 0, 5), PQgetlength(r, 0, 5), &h->groups,
		                              &h->ngroups);
		if (rv == OM_EPROTO) {
			om__store_set_err(st, "host get", "malformed groups array");
			rv = OM_EDB;
		}
	}
	PQclear(r);
	if (rv != 0) {
		om_host_release(h);
		om_free(*facts);
		*facts = NULL;
		*facts_at_ms = 0;
	}
	return rv;
}

/* ------------------------------------------------------------ job history (issue 5) */

/*
 * The scope test of a job host jh (job_hosts) with its inventory row hv
 * (hosts, LEFT JOINed: NULL when the host left the inventory), for the
 * text[] parameters I (IDCs) and G (groups).  Must match auth_host_visible.
 */
#define SCOPE_JOIN(jh, hv, G)                                                                      \
	" LEFT JOIN hosts " hv " ON cardinality(" G "::text[]) > 0 AND " hv ".name = " jh ".host"
#define SCOPE_OK(jh, hv, I, G)                                                                     \
	" (cardinality(" I "::text[]) = 0 OR " jh ".idc = ANY (" I "::text[]))"                   \
	" AND (cardinality(" G "::text[]) = 0 OR coalesce(" hv ".groups, '{}') && " G "::text[])"

/* Hosts of job j (an expression) in scope per state: columns n, then one per enum om_host_state. */
_Static_assert(OM_HS_COUNT_ == 10, "the counts below list every enum om_host_state");
#define STATE_COUNT(s) ", count(*) FILTER (WHERE c.state = '" s "')"
#define JOB_COUNTS(j, I, G)                                                                        \
	" CROSS JOIN LATERAL (SELECT count(*) AS n" STATE_COUNT("queued")                        \
	STATE_COUNT("dispatched") STATE_COUNT("running") STATE_COUNT("ok") STATE_COUNT("failed") \
	STATE_COUNT("unreachable") STATE_COUNT("timeout") STATE_COUNT("cancelled")               \
	STATE_COUNT("skipped") STATE_COUNT("lost") " FROM job_hosts c" SCOPE_JOIN("c", "ch", G)  \
	" WHERE c.job_id = " j " AND" SCOPE_OK("c", "ch", I, G) ") k"
/* The columns summary_fill reads, from jobs j and the counts k. */
#define JOB_COLS                                                                                   \
	"SELECT j.id, j.created_by, j.selector, j.module, j.state = 'done',"                      \
	" (extract(epoch FROM j.created_at) * 1000)::bigint,"                                     \
	" (extract(epoch FROM j.finished_at) * 1000)::bigint, j.retry_lost,"                      \
	" j.retry_reason IS NOT DISTINCT FROM 'idempotent', k.*"
#define SUMMARY_NCOLS (9 + 1 + OM_HS_COUNT_)

/* Caps the array literals of a scope: OM_MAX_GROUPS names of each kind, escaped. */
#define SCOPE_MAX (64u << 10)
/* --since beyond this many seconds (about 100 years) means any time. */
#define SINCE_MAX_S (UINT64_C(100) * 366 * 86400)

static bool
scoped(const struct om_job_scope *s)
{
	return s != NULL && (s->nidcs > 0 || s->ngroups > 0);
}

int
om__store_scope_arrays(const struct om_job_scope *s, struct om_buf *idcs, struct om_buf *groups)
{
	size_t i;

	om_buf_init(idcs, SCOPE_MAX);
	om_buf_init(groups, SCOPE_MAX);
	om_buf_putc(idcs, '{');
	om_buf_putc(groups, '{');
	for (i = 0; s != NULL && i < s->nidcs; i++)
		om__store_array_put(idcs, s->idcs[i], i == 0);
	for (i = 0; s != NULL && i < s->ngroups; i++)
		om__store_array_put(groups, s->groups[i], i == 0);
	if (om__store_array_end(idcs) != 0 || om__store_array_end(groups) != 0) {
		om_buf_release(idcs);
		om_buf_release(groups);
		return OM_ENOMEM;
	}
	return 0;
}

static bool
bin_bool(const PGresult *r, int row, int col)
{
	return !PQgetisnull(r, row, col) && PQgetlength(r, row, col) == 1 &&
	       PQgetvalue(r, row, col)[0] != 0;
}

void
om_job_summary_release(struct om_job_summary *j)
{
	if (j == NULL)
		return;
	om_free(j->created_by);
	om_free(j->selector);
	om_free(j->module);
	memset(j, 0, sizeof(*j));
}

void
om_job_summaries_free(struct om_job_summary *j, size_t n)
{
	size_t i;

	if (j == NULL)
		return;
	for (i = 0; i < n; i++)
		om_job_summary_release(&j[i]);
	om_free(j);
}

/* One row of JOB_COLS; on failure j holds what was filled (release it). */
static int
summary_fill(const PGresult *r, int row, struct om_job_summary *j)
{
	int s;

	memset(j, 0, sizeof(*j));
	if (PQnfields(r) != SUMMARY_NCOLS)
		return OM_EPROTO;
	j->id = (uint64_t)om__store_bin_int(r, row, 0);
	j->done = bin_bool(r, row, 4);
	j->created_ms = om__store_bin_int(r, row, 5);
	j->finished_ms = om__store_bin_int(r, row, 6);
	j->retry_lost = bin_bool(r, row, 7);
	j->retry_idempotent = bin_bool(r, row, 8);
	j->nhosts = (uint32_t)om__store_bin_int(r, row, 9);
	for (s = 0; s < OM_HS_COUNT_; s++)
		j->counts[s] = (uint32_t)om__store_bin_int(r, row, 10 + s);
	if (!take_str(r, row, 1, &j->created_by) || !take_str(r, row, 2, &j->selector) ||
	    !take_str(r, row, 3, &j->module))
		return OM_ENOMEM;
	return 0;
}

int
om_store_job_summary(struct om_store *st, uint64_t job_id, const struct om_job_scope *scope,
                     struct om_job_summary *out)
{
	struct om_buf idcs, groups;
	char jid[24];
	const char *v[3] = {jid, NULL, NULL};
	PGresult *r;
	int rv;

	if (out == NULL)
		return OM_EINVAL;
	memset(out, 0, sizeof(*out));
	if (job_id == 0 || job_id > INT64_MAX)
		return OM_ENOTFOUND;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((rv = om__store_scope_arrays(scope, &idcs, &groups)) != 0)
		return rv;
	snprintf(jid, sizeof(jid), "%" PRIu64, job_id);
	v[1] = (const char *)idcs.data;
	v[2] = (const char *)groups.data;
	r = query(st, "job summary",
	          JOB_COLS " FROM jobs j" JOB_COUNTS("j.id", "$2", "$3") " WHERE j.id = $1::bigint",
	          3, v);
	om_buf_release(&idcs);
	om_buf_release(&groups);
	if (r == NULL)
		return OM_EDB;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return OM_ENOTFOUND;
	}
	rv = summary_fill(r, 0, out);
	PQclear(r);
	if (rv == 0 && out->nhosts == 0 && scoped(scope))
		rv = OM_ENOTFOUND; /* nothing of it is the caller's to see */
	if (rv == OM_EPROTO) {
		om__store_set_err(st, "job summary", "unexpected columns");
		rv = OM_EDB;
	}
	if (rv != 0)
		om_job_summary_release(out);
	return rv;
}

void
om_job_detail_release(struct om_job_detail *d)
{
	size_t i;

	if (d == NULL)
		return;
	for (i = 0; i < d->nparams; i++) {
		om_free(d->params[i].key);
		if (d->params[i].val != NULL)
			/* secrets among them */
			om_wipe(d->params[i].val, strlen(d->params[i].val));
		om_free(d->params[i].val);
	}
	om_free(d->params);
	om_free(d->schema);
	om_free(d->batch);
	om_free(d->become_user);
	memset(d, 0, sizeof(*d));
}

/* The options row of om_store_job_detail into d. */
static int
detail_options(struct om_store *st, const char *jid, struct om_job_detail *d)
{
	const char *v[1] = {jid};
	PGresult *r;
	int rv;

	if ((r = query(st, "job detail",
	               "SELECT j.timeout_s, j.forks, j.wave_size, j.has_max_fail, j.max_fail,"
	               " j.check_mode, j.become, j.become_user,"
	               " j.retry_lost AND j.retry_reason IS DISTINCT FROM 'idempotent', j.batch,"
	               " (SELECT m.schema::text FROM modules m WHERE m.name = j.module)"
	               " FROM jobs j WHERE j.id = $1::bigint",
	               1, v)) == NULL)
		return OM_EDB;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return OM_ENOTFOUND;
	}
	if (PQnfields(r) != 11) {
		PQclear(r);
		om__store_set_err(st, "job detail", "unexpected columns");
		return OM_EDB;
	}
	d->timeout_s = (uint32_t)om__store_bin_int(r, 0, 0);
	d->forks = (uint32_t)om__store_bin_int(r, 0, 1);
	d->wave_size = (uint32_t)om__store_bin_int(r, 0, 2);
	d->has_max_fail = bin_bool(r, 0, 3);
	d->max_fail = (uint32_t)om__store_bin_int(r, 0, 4);
	d->check = bin_bool(r, 0, 5);
	d->become = bin_bool(r, 0, 6);
	d->retry_option = bin_bool(r, 0, 8);
	rv = take_str(r, 0, 7, &d->become_user) && take_str(r, 0, 9, &d->batch) &&
	                     take_str(r, 0, 10, &d->schema)
	             ? 0
	             : OM_ENOMEM;
	PQclear(r);
	return rv;
}

int
om_store_job_detail(struct om_store *st, uint64_t job_id, struct om_job_detail *out)
{
	char jid[24], cap[16];
	const char *v[2] = {jid, cap};
	PGresult *r;
	int rv, i, rows;

	if (out == NULL)
		return OM_EINVAL;
	memset(out, 0, sizeof(*out));
	if (job_id == 0 || job_id > INT64_MAX)
		return OM_ENOTFOUND;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	snprintf(jid, sizeof(jid), "%" PRIu64, job_id);
	snprintf(cap, sizeof(cap), "%d", OM_JOB_PARAM_SHOWN);
	if ((rv = detail_options(st, jid, out)) != 0)
		goto fail;
	/* A long value (a file's content) stays in the database: NULL. */
	if ((r = query(st, "job params",
	               "SELECT p.k, CASE WHEN octet_length(p.v) <= $2::int THEN p.v END"
	               " FROM jobs j, unnest(j.param_keys, j.param_vals) WITH ORDINALITY"
	               " AS p(k, v, i) WHERE j.id = $1::bigint ORDER BY p.i",
	               2, v)) == NULL) {
		rv = OM_EDB;
		goto fail;
	}
	rows = PQntuples(r);
	if (rows > OM_MAX_PARAMS) {
		PQclear(r);
		om__store_set_err(st, "job params", "more parameters than a job takes");
		rv = OM_EDB;
		goto fail;
	}
	if (rows > 0 && (out->params = om_calloc((size_t)rows, sizeof(*out->params))) == NULL) {
		PQclear(r);
		rv = OM_ENOMEM;
		goto fail;
	}
	for (i = 0; i < rows && rv == 0; i++) {
		out->nparams++;
		if (!take_str(r, i, 0, &out->params[i].key) ||
		    !take_str(r, i, 1, &out->params[i].val))
			rv = OM_ENOMEM;
		else if (out->params[i].key == NULL)
			rv = OM_EPROTO; /* a NULL key: not what job create writes */
	}
	/* the values may hold secrets: wiped with the result */
	for (i = 0; i < rows; i++)
		if (!PQgetisnull(r, i, 1))
			om_wipe(PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1));
	PQclear(r);
	if (rv == OM_EPROTO) {
		om__store_set_err(st, "job params", "a parameter without a name");
		rv = OM_EDB;
	}
	if (rv != 0)
		goto fail;
	return 0;
fail:
	om_job_detail_release(out);
	return rv;
}

int
om_store_jobs_list(struct om_store *st, const struct om_jobs_filter *filter,
                   const struct om_job_scope *scope, struct om_job_summary **out, size_t *n)
{
	static const char *const states[] = {
	        [OM_JOBS_RUNNING] = "running",
	        [OM_JOBS_DONE] = "done",
	};
	struct om_buf idcs, groups;
	struct om_job_summary *jobs = NULL;
	char since[24], lim[24];
	const char *v[6] = {NULL, NULL, since, NULL, NULL, lim};
	PGresult *r;
	size_t limit;
	int rv = 0, i, rows;

	*out = NULL;
	*n = 0;
	if (filter == NULL || filter->state > OM_JOBS_DONE)
		return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	limit = filter->limit > OM_MAX_JOB_ROWS ? OM_MAX_JOB_ROWS : filter->limit;
	if (limit == 0)
		return 0;
	if ((rv = om__store_scope_arrays(scope, &idcs, &groups)) != 0)
		return rv;
	v[0] = filter->state != OM_JOBS_ANY ? states[filter->state] : NULL;
	v[1] = filter->created_by;
	snprintf(since, sizeof(since), "%" PRIu64,
	         filter->since_s > SINCE_MAX_S ? (uint64_t)0 : filter->since_s);
	v[3] = (const char *)idcs.data;
	v[4] = (const char *)groups.data;
	snprintf(lim, sizeof(lim), "%zu", limit);
	/* Newest first through the primary key; each job's hosts are counted as
	 * it is read, so a page costs its own jobs' hosts, not all jobs'. */
	r = query(st, "jobs list",
	          JOB_COLS " FROM jobs j" JOB_COUNTS("j.id", "$4", "$5")
	                   " WHERE ($1::text IS NULL OR j.state = $1::text)"
	                   " AND ($2::text IS NULL OR j.created_by = $2::text)"
	                   " AND ($3::bigint = 0"
	                   " OR j.created_at >= now() - $3::bigint * interval '1 second')"
	                   " AND (k.n > 0 OR (cardinality($4::text[]) = 0"
	                   " AND cardinality($5::text[]) = 0))"
	                   " ORDER BY j.id DESC LIMIT $6::bigint",
	          6, v);
	om_buf_release(&idcs);
	om_buf_release(&groups);
	if (r == NULL)
		return OM_EDB;
	rows = PQntuples(r);
	if (rows > 0 && (jobs = om_calloc((size_t)rows, sizeof(*jobs))) == NULL) {
		PQclear(r);
		return OM_ENOMEM;
	}
	for (i = 0; i < rows && rv == 0; i++)
		rv = summary_fill(r, i, &jobs[i]);
	PQclear(r);
	if (rv != 0) {
		om_job_summaries_free(jobs, (size_t)rows);
		if (rv == OM_EPROTO) {
			om__store_set_err(st, "jobs list", "unexpected columns");
			rv = OM_EDB;
		}
		return rv;
	}
	*out = jobs;
	*n = (size_t)rows;
	return 0;
}

void
om_job_hosts_free(struct om_job_host *h, size_t n)
{
	size_t i;

	if (h == NULL)
		return;
	for (i = 0; i < n; i++) {
		om_free(h[i].host);
		om_free(h[i].worker);
		om_free(h[i].reason);
	}
	om_free(h);
}

int
om_store_job_hosts_page(struct om_store *st, uint64_t job_id, const struct om_job_scope *scope,
                        uint32_t state, const char *after, size_t limit,
                        struct om_job_host **out, size_t *n)
{
	struct om_buf idcs, groups;
	struct om_job_host *hs = NULL;
	char jid[24], lim[24];
	const char *v[6] = {jid, NULL, after, lim, NULL, NULL};
	PGresult *r;
	int rv = 0, i, rows;

	*out = NULL;
	*n = 0;
	if (state >= OM_HS_COUNT_)
		return OM_EINVAL;
	if (job_id == 0 || job_id > INT64_MAX)
		return 0;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if (limit > OM_MAX_JOB_ROWS)
		limit = OM_MAX_JOB_ROWS;
	if (limit == 0)
		return 0;
	if ((rv = om__store_scope_arrays(scope, &idcs, &groups)) != 0)
		return rv;
	snprintf(jid, sizeof(jid), "%" PRIu64, job_id);
	v[1] = om_host_state_name((int)state);
	snprintf(lim, sizeof(lim), "%zu", limit);
	v[4] = (const char *)idcs.data;
	v[5] = (const char *)groups.data;
	/* Names in byte order (COLLATE "C"), whatever the database's collation. */
	r = query(st, "job hosts",
	          "SELECT jh.host, jh.exit_code, jh.duration_ms, jh.worker, jh.reason"
	          " FROM job_hosts jh" SCOPE_JOIN("jh", "hv", "$6")
	          " WHERE jh.job_id = $1::bigint AND jh.state = $2::text"
	          " AND ($3::text IS NULL OR jh.host COLLATE \"C\" > $3::text COLLATE \"C\") AND"
	          SCOPE_OK("jh", "hv", "$5", "$6")
	          " ORDER BY jh.host COLLATE \"C\" LIMIT $4::bigint",
	          6, v);
	om_buf_release(&idcs);
	om_buf_release(&groups);
	if (r == NULL)
		return OM_EDB;
	rows = PQntuples(r);
	if (rows > 0 && (hs = om_calloc((size_t)rows, sizeof(*hs))) == NULL) {
		PQclear(r);
		return OM_ENOMEM;
	}
	for (i = 0; i < rows && rv == 0; i++) {
		struct om_job_host *h = &hs[i];
		h->state = state;
		h->has_exit = !PQgetisnull(r, i, 1);
		h->exit_code = (int32_t)om__store_bin_int(r, i, 1);
		h->has_duration = !PQgetisnull(r, i, 2);
		h->duration_ms = (uint64_t)om__store_bin_int(r, i, 2);
		if (!take_str(r, i, 0, &h->host) || h->host == NULL ||
		    !take_str(r, i, 3, &h->worker) || !take_str(r, i, 4, &h->reason))
			rv = OM_ENOMEM;
	}
	PQclear(r);
	if (rv != 0) {
		om_job_hosts_free(hs, (size_t)rows);
		return rv;
	}
	*out = hs;
	*n = (size_t)rows;
	return 0;
}

int
om_store_job_visible(struct om_store *st, uint64_t job_id, const struct om_job_scope *scope,
                     const char *host)
{
	struct om_buf idcs, groups;
	char jid[24];
	const char *v[4] = {jid, host, NULL, NULL};
	PGresult *r;
	bool seen;
	int rv;

	if (job_id == 0 || job_id > INT64_MAX)
		return OM_ENOTFOUND;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((rv = om__store_scope_arrays(scope, &idcs, &groups)) != 0)
		return rv;
	snprintf(jid, sizeof(jid), "%" PRIu64, job_id);
	v[2] = (const char *)idcs.data;
	v[3] = (const char *)groups.data;
	/* Stops at the first host in scope: cheap for a job of any size. */
	r = query(st, "job visible",
	          "SELECT EXISTS (SELECT 1 FROM job_hosts jh" SCOPE_JOIN("jh", "hv", "$4")
	          " WHERE jh.job_id = j.id AND ($2::text IS NULL OR jh.host = $2::text) AND"
	          SCOPE_OK("jh", "hv", "$3", "$4") ") FROM jobs j WHERE j.id = $1::bigint",
	          4, v);
	om_buf_release(&idcs);
	om_buf_release(&groups);
	if (r == NULL)
		return OM_EDB;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return OM_ENOTFOUND;
	}
	seen = bin_bool(r, 0, 0);
	PQclear(r);
	/* Unscoped, a job of no hosts still exists. */
	if (!seen && (host != NULL || scoped(scope)))
		return OM_ENOTFOUND;
	return 0;
}

int
om_store_job_output(struct om_store *st, uint64_t job_id, const struct om_job_scope *scope,
                    const char *host, uint64_t cursor, size_t limit, struct om_event **out,
                    size_t *n, bool *more)
{
	struct om_buf idcs, groups;
	struct om_event *ev = NULL;
	char jid[24], cur[24], lim[24];
	const char *v[6] = {jid, cur, host, lim, NULL, NULL};
	PGresult *r;
	size_t rows, take, i;
	int rv = 0;

	*out = NULL;
	*n = 0;
	*more = false;
	if (job_id == 0 || job_id > INT64_MAX)
		return 0;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if (limit > OM_MAX_ITEMS)
		limit = OM_MAX_ITEMS;
	if (limit == 0)
		return 0;
	if ((rv = om__store_scope_arrays(scope, &idcs, &groups)) != 0)
		return rv;
	snprintf(jid, sizeof(jid), "%" PRIu64, job_id);
	snprintf(cur, sizeof(cur), "%" PRIu64, cursor > INT64_MAX ? (uint64_t)INT64_MAX : cursor);
	snprintf(lim, sizeof(lim), "%zu", limit + 1); /* one more: is there a next page? */
	v[4] = (const char *)idcs.data;
	v[5] = (const char *)groups.data;
	/* The primary key (job_id, id) walks the job's events from the cursor;
	 * each output event's host row (job_hosts' primary key) carries the scope. */
	r = query(st, "job output",
	          "SELECT e.id, e.host, e.stream, e.data FROM job_events e"
	          " JOIN job_hosts jh ON jh.job_id = e.job_id AND jh.host = e.host"
	          SCOPE_JOIN("jh", "hv", "$6")
	          " WHERE e.job_id = $1::bigint AND e.id > $2::bigint AND e.kind = 1"
	          " AND e.stream IN (1, 2) AND ($3::text IS NULL OR e.host = $3::text) AND"
	          SCOPE_OK("jh", "hv", "$5", "$6") " ORDER BY e.id LIMIT $4::bigint",
	          6, v);
	om_buf_release(&idcs);
	om_buf_release(&groups);
	if (r == NULL)
		return OM_EDB;
	rows = (size_t)PQntuples(r);
	take = rows > limit ? limit : rows;
	if (take > 0 && (ev = om_calloc(take, sizeof(*ev))) == NULL) {
		PQclear(r);
		return OM_ENOMEM;
	}
	for (i = 0; i < take && rv == 0; i++) {
		int len = PQgetlength(r, (int)i, 3);

		ev[i].id = (uint64_t)om__store_bin_int(r, (int)i, 0);
		ev[i].kind = OM_EV_OUTPUT;
		ev[i].stream = (uint32_t)om__store_bin_int(r, (int)i, 2);
		if (!take_str(r, (int)i, 1, &ev[i].host) || ev[i].host == NULL) {
			rv = OM_ENOMEM;
			break;
		}
		if (PQgetisnull(r, (int)i, 3) || len == 0)
			continue;
		if ((size_t)len > OM_MAX_CHUNK) {
			rv = OM_EPROTO; /* ingest never stores more: not ours */
			break;
		}
		if ((ev[i].data = om_malloc((size_t)len)) == NULL) {
			rv = OM_ENOMEM;
			break;
		}
		memcpy(ev[i].data, PQgetvalue(r, (int)i, 3), (size_t)len);
		ev[i].len = (uint32_t)len;
	}
	PQclear(r);
	if (rv != 0) {
		om_events_free(ev, take);
		if (rv == OM_EPROTO) {
			om__store_set_err(st, "job output", "stored chunk larger than a chunk");
			rv = OM_EDB;
		}
		return rv;
	}
	*out = ev;
	*n = take;
	*more = rows > limit;
	return 0;
}
