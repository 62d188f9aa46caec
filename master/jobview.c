/*
 * Job history for omctl: job show (JOB_SHOW, then JOB_HOSTS pages), jobs
 * list (JOBS_LIST) and job output (JOB_OUTPUT).  Reads only, of what the
 * store recorded (store_jobs.c), and only of the hosts the caller may see
 * (auth_job_scope): counts, host rows and output of other hosts are left
 * out, and a job none of whose hosts the caller may see does not exist for
 * it (the same answer as an unknown job).
 *
 * Every reply is bounded: a JOB_HOSTS or JOBS_LIST reply holds at most
 * OM_MAX_JOB_ROWS rows of cells of at most OM_MAX_TEXT bytes, a JOB_OUTPUT
 * reply at most OUTPUT_BATCH chunks; the client pages with a cursor.
 *
 * The job TABLE (JOB_SHOW, one row; JOBS_LIST, newest first) has the columns
 * in job_cols: USER is the submitter's name, times are UTC ISO 8601,
 * FINISHED and DURATION_MS are nil while the job runs, and one column per
 * host state (om_host_state_name in capitals) counts the caller's hosts in
 * that state.  RETRY_LOST says whether and why hosts of a worker that died
 * run again: "no", "yes (--retry-lost)" or "yes (module is idempotent)".
 * The JOB_HOSTS TABLE has the columns in host_cols; EXIT, DURATION_MS,
 * WORKER and REASON are nil when unknown (EXIT also when the host never
 * ran a command: the master records -1 then).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "master_int.h"

#define JOBS_LIST_DEFAULT 50
#define OUTPUT_BATCH      100 /* x OM_MAX_CHUNK stays under OM_MAX_FRAME */

/* a chunk, its host and the event's other fields, in msgpack */
#define OUTPUT_EVENT_MAX (OM_MAX_CHUNK + OM_MAX_NAME + 64)
_Static_assert(OM_MAX_FRAME - 4096 > (size_t)OUTPUT_BATCH * OUTPUT_EVENT_MAX,
               "a JOB_OUTPUT reply must fit in one frame");
/* A row of either TABLE: one text cell (selector, reason), three names, the rest numbers. */
#define ROW_MAX (OM_MAX_TEXT + 3 * OM_MAX_NAME + 32 * 24)
_Static_assert(OM_MAX_FRAME - 4096 > (size_t)OM_MAX_JOB_ROWS * ROW_MAX,
               "a page of OM_MAX_JOB_ROWS rows must fit in one frame");
_Static_assert(OM_HS_COUNT_ == 10, "job_cols has one column per enum om_host_state");

static char *job_cols[] = {
        "ID",          "CREATED",     "USER",      "MODULE",     "SELECTOR", "HOSTS",      "STATE",
        "FINISHED",    "DURATION_MS", "QUEUED",    "DISPATCHED", "RUNNING",  "OK",         "FAILED",
        "UNREACHABLE", "TIMEOUT",     "CANCELLED", "SKIPPED",    "LOST",     "RETRY_LOST",
};
#define NJOB_COLS ((uint32_t)(sizeof(job_cols) / sizeof(job_cols[0])))

static char *host_cols[] = {"HOST", "STATE", "EXIT", "DURATION_MS", "WORKER", "REASON"};
#define NHOST_COLS ((uint32_t)(sizeof(host_cols) / sizeof(host_cols[0])))

/* The cells of a TABLE reply, row-major; err is sticky. */
struct cells {
	char **v;
	uint32_t n, cap;
	int err;
};

/* Appends a copy of s (NULL stays NULL), cut to OM_MAX_TEXT bytes on a UTF-8 boundary. */
static void
cell(struct cells *t, const char *s)
{
	size_t len;

	if (t->err)
		return;
	if (t->n == t->cap) {
		uint32_t cap = t->cap ? t->cap * 2 : 64;
		char **v;

		if (cap > OM_MAX_TABLE_CELLS || (v = om_realloc(t->v, cap * sizeof(*v))) == NULL) {
			t->err = OM_ENOMEM;
			return;
		}
		t->v = v;
		t->cap = cap;
	}
	t->v[t->n] = NULL;
	if (s != NULL) {
		len = strlen(s);
		if (len > OM_MAX_TEXT) {
			len = OM_MAX_TEXT;
			while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
				len--;
		}
		if ((t->v[t->n] = om_strndup(s, len)) == NULL) {
			t->err = OM_ENOMEM;
			return;
		}
	}
	t->n++;
}

static void cellf(struct cells *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
cellf(struct cells *t, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	cell(t, buf);
}

/* A wall-clock time in ms as UTC ISO 8601; nil for 0. */
static void
cell_time(struct cells *t, int64_t ms)
{
	char buf[32];
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0) {
		cell(t, NULL);
		return;
	}
	gmtime_r(&s, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	cell(t, buf);
}

/* The submitter's name from "user 'x'", as jobs record it; anything else as it is (cut). */
static void
cell_submitter(struct cells *t, const char *by)
{
	size_t n = by != NULL ? strlen(by) : 0;

	if (by == NULL)
		cell(t, NULL);
	else if (n > 7 && strncmp(by, "user '", 6) == 0 && by[n - 1] == '\'')
		cellf(t, "%.*s", (int)(n - 7 > OM_MAX_NAME ? OM_MAX_NAME : n - 7), by + 6);
	else
		cellf(t, "%.*s", OM_MAX_NAME, by);
}

/* Replies TABLE (or the error that kept it from being built) and frees the cells. */
static void
cells_reply(struct om_rpc_req *r, struct cells *t, char **cols, uint32_t ncols)
{
	struct om_msg rep = {.type = OM_MSG_TABLE};
	uint32_t i;

	if (t->err != 0) {
		reply_error(r, OM_ENOMEM, "master out of memory");
	} else {
		rep.u.table.columns = cols;
		rep.u.table.ncolumns = ncols;
		rep.u.table.cells = t->v;
		rep.u.table.ncells = t->n;
		om_rpc_reply(r, &rep);
	}
	for (i = 0; i < t->n; i++)
		om_free(t->v[i]);
	om_free(t->v);
	memset(t, 0, sizeof(*t));
}

static void
job_row(struct cells *t, const struct om_job_summary *j)
{
	int s;

	cellf(t, "%" PRIu64, j->id);
	cell_time(t, j->created_ms);
	cell_submitter(t, j->created_by);
	cell(t, j->module);
	cell(t, j->selector);
	cellf(t, "%" PRIu32, j->nhosts);
	cell(t, j->done ? "done" : "running");
	if (j->done && j->finished_ms > 0) {
		cell_time(t, j->finished_ms);
		cellf(t, "%" PRId64,
		      j->finished_ms > j->created_ms ? j->finished_ms - j->created_ms : 0);
	} else {
		cell(t, NULL);
		cell(t, NULL);
	}
	for (s = 0; s < OM_HS_COUNT_; s++)
		cellf(t, "%" PRIu32, j->counts[s]);
	if (!j->retry_lost)
		cell(t, "no");
	else
		cell(t, j->retry_idempotent ? "yes (module is idempotent)" : "yes (--retry-lost)");
}

/* A store failure: logged with libpq's words, the caller gets a short line. */
static void
store_failed(struct master *m, struct om_rpc_req *r, int rv, const char *what, uint64_t id)
{
	om_err("cannot read %s of job %" PRIu64 ": %s (%s)", what, id, om_strerror(rv),
	       om_store_errmsg(m->store));
	if (rv == OM_ENOMEM)
		reply_error(r, OM_ENOMEM, "master out of memory");
	else
		reply_error(r, OM_EDB, "master database unavailable, retry later");
}

/* 0 when job id (and host of it, when given) exists for a caller of scope; else refuses r. */
static int
job_visible(struct master *m, struct om_rpc_req *r, const struct om_job_scope *scope, uint64_t id,
            const char *host)
{
	int rv = om_store_job_visible(m->store, id, scope, host);

	if (rv == OM_ENOTFOUND && host != NULL)
		reply_error(r, OM_ENOTFOUND, "job %" PRIu64 " has no host '%s'", id, host);
	else if (rv == OM_ENOTFOUND)
		reply_error(r, OM_ENOTFOUND, "no job %" PRIu64, id);
	else if (rv != 0)
		store_failed(m, r, rv, "the hosts", id);
	return rv;
}

void
master_op_job_show(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	uint64_t id = r->msg.u.by_id.id;
	struct om_job_scope scope;
	struct om_job_summary j;
	struct cells t = {0};
	int rv;

	auth_job_scope(p, &scope);
	rv = om_store_job_summary(m->store, id, &scope, &j);
	if (rv == OM_ENOTFOUND) {
		reply_error(r, OM_ENOTFOUND, "no job %" PRIu64, id);
		return;
	}
	if (rv != 0) {
		store_failed(m, r, rv, "the summary", id);
		return;
	}
	job_row(&t, &j);
	cells_reply(r, &t, job_cols, NJOB_COLS);
	om_job_summary_release(&j);
}

void
master_op_job_hosts(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	const struct om_msg *q = &r->msg;
	uint64_t id = q->u.job_hosts.job_id;
	uint32_t limit = q->u.job_hosts.limit ? q->u.job_hosts.limit : OM_MAX_JOB_ROWS;
	struct om_job_scope scope;
	struct om_job_host *hs = NULL;
	struct cells t = {0};
	size_t n = 0, i;
	int rv;

	auth_job_scope(p, &scope);
	if (job_visible(m, r, &scope, id, NULL) != 0)
		return;
	rv = om_store_job_hosts_page(m->store, id, &scope, q->u.job_hosts.state,
	                             q->u.job_hosts.after, limit, &hs, &n);
	if (rv != 0) {
		store_failed(m, r, rv, "the hosts", id);
		return;
	}
	for (i = 0; i < n; i++) {
		cell(&t, hs[i].host);
		cell(&t, om_host_state_name((int)hs[i].state));
		/* as omctl run shows it: a negative code is none (the host never ran) */
		if (hs[i].has_exit && hs[i].exit_code >= 0)
			cellf(&t, "%" PRId32, hs[i].exit_code);
		else
			cell(&t, NULL);
		if (hs[i].has_duration)
			cellf(&t, "%" PRIu64, hs[i].duration_ms);
		else
			cell(&t, NULL);
		cell(&t, hs[i].worker);
		cell(&t, hs[i].reason);
	}
	cells_reply(r, &t, host_cols, NHOST_COLS);
	om_job_hosts_free(hs, n);
}

void
master_op_jobs_list(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	const struct om_msg *q = &r->msg;
	struct om_jobs_filter filter = {0};
	struct om_job_scope scope;
	struct om_job_summary *jobs = NULL;
	struct cells t = {0};
	char by[OM_MAX_NAME + 16];
	size_t n = 0, i;
	int rv;

	auth_job_scope(p, &scope);
	filter.state = q->u.jobs_list.state;
	filter.since_s = q->u.jobs_list.since_s;
	filter.limit = q->u.jobs_list.limit ? q->u.jobs_list.limit : JOBS_LIST_DEFAULT;
	if (q->u.jobs_list.user != NULL) {
		/* as master_op_submit records the submitter (p->who) */
		snprintf(by, sizeof(by), "user '%s'", q->u.jobs_list.user);
		filter.created_by = by;
	}
	if ((rv = om_store_jobs_list(m->store, &filter, &scope, &jobs, &n)) != 0) {
		om_err("cannot list jobs: %s (%s)", om_strerror(rv), om_store_errmsg(m->store));
		reply_error(r, rv == OM_ENOMEM ? OM_ENOMEM : OM_EDB,
		            "master database unavailable, retry later");
		return;
	}
	for (i = 0; i < n; i++)
		job_row(&t, &jobs[i]);
	cells_reply(r, &t, job_cols, NJOB_COLS);
	om_job_summaries_free(jobs, n);
}

void
master_op_job_output(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	const struct om_msg *q = &r->msg;
	uint64_t id = q->u.job_output.job_id, cursor = q->u.job_output.cursor;
	const char *host = q->u.job_output.host;
	struct om_msg rep = {.type = OM_MSG_EVENTS};
	struct om_job_scope scope;
	struct om_event *ev = NULL;
	size_t n = 0;
	bool more = false;
	int rv;

	auth_job_scope(p, &scope);
	/* the job first, then its host: each "not found" says which */
	if (job_visible(m, r, &scope, id, NULL) != 0)
		return;
	if (host != NULL && job_visible(m, r, &scope, id, host) != 0)
		return;
	rv = om_store_job_output(m->store, id, &scope, host, cursor, OUTPUT_BATCH, &ev, &n, &more);
	if (rv != 0) {
		store_failed(m, r, rv, "the output", id);
		return;
	}
	rep.u.events.job_id = id;
	rep.u.events.events = ev;
	rep.u.events.nevents = (uint32_t)n;
	rep.u.events.cursor = n > 0 ? ev[n - 1].id : cursor;
	rep.u.events.done = !more; /* all output stored so far has been sent */
	om_rpc_reply(r, &rep);
	om_events_free(ev, n);
}
