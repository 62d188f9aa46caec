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
 * JOB_SHOW's row adds two columns of JSON text (show_cols): PARAMS, the
 * parameters as submitted, an object of strings in submission order, and
 * OPTIONS, {timeout, forks, batch, max_fail, check, become, become_user,
 * retry_lost} as submitted (batch as given, an integer or "N%"; for a job
 * of an older schema the hosts per wave; max_fail null when not given;
 * retry_lost: --retry-lost was given).  Jobs store every parameter,
 * secrets included (any master dispatches from the store), so PARAMS is
 * where they are kept in: the value of a parameter the module's schema
 * (as last announced) flags secret is "********", and so is one the schema
 * does not know or any value when there is no schema (a secret is never
 * shown on a guess).  A value too long to show (a file's content) is null;
 * so are the longest ones when all of them would not fit in one cell.
 * The JOB_HOSTS TABLE has the columns in host_cols; EXIT, DURATION_MS,
 * WORKER and REASON are nil when unknown (EXIT also when the host never
 * ran a command: the master records -1 then).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "master_int.h"
#include "om/params.h"

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

/* JOB_SHOW: job_cols, then what the job was submitted with (JSON text). */
static char *show_cols[] = {
        "ID",    "CREATED",    "USER",        "MODULE",  "SELECTOR",   "HOSTS",
        "STATE", "FINISHED",   "DURATION_MS", "QUEUED",  "DISPATCHED", "RUNNING",
        "OK",    "FAILED",     "UNREACHABLE", "TIMEOUT", "CANCELLED",  "SKIPPED",
        "LOST",  "RETRY_LOST", "PARAMS",      "OPTIONS",
};
#define NSHOW_COLS ((uint32_t)(sizeof(show_cols) / sizeof(show_cols[0])))
_Static_assert(NSHOW_COLS == NJOB_COLS + 2, "show_cols is job_cols and two more");

#define REDACTED "********"

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

/* Whether the value of parameter key may be shown: the schema knows it and it is no secret. */
static bool
param_showable(const struct om_plugin_param *schema, size_t n, const char *key)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (schema[i].name != NULL && strcmp(schema[i].name, key) == 0)
			return !(schema[i].flags & OM_PARAM_SECRET);
	return false;
}

/* The longest shown value of o set to null; false when none is left. */
static bool
null_longest(json_t *o)
{
	const char *key, *best = NULL;
	size_t len = 0;
	json_t *v;

	json_object_foreach(o, key, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), REDACTED) != 0 &&
		    json_string_length(v) >= len) {
			best = key;
			len = json_string_length(v);
		}
	}
	if (best == NULL)
		return false;
	json_object_set_new(o, best, json_null());
	return true;
}

/*
 * The PARAMS cell (see the top of the file): a JSON object of at most
 * OM_MAX_TEXT bytes; NULL when even its names would not fit, or on failure.
 * Caller frees (free).
 */
static char *
params_cell(const struct om_job_detail *d)
{
	struct om_plugin_param *schema = NULL;
	size_t nschema = 0, i;
	char why[256], *text = NULL;
	json_t *o = json_object();

	if (o == NULL)
		return NULL;
	/* no schema, or one that does not parse: every value is kept in */
	if (d->schema != NULL &&
	    om_params_schema_parse(d->schema, &schema, &nschema, why, sizeof(why)) != 0) {
		schema = NULL;
		nschema = 0;
	}
	for (i = 0; i < d->nparams; i++) {
		const struct om_kv *kv = &d->params[i];
		json_t *v;

		if (!param_showable(schema, nschema, kv->key))
			v = json_string(REDACTED);
		else if (kv->val == NULL || (v = json_string(kv->val)) == NULL)
			v = json_null(); /* too long, or not UTF-8 */
		json_object_set_new(o, kv->key, v);
	}
	om_params_schema_free(schema, nschema);
	for (;;) {
		text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (text == NULL || strlen(text) <= OM_MAX_TEXT || !null_longest(o))
			break;
		free(text);
		text = NULL;
	}
	if (text != NULL && strlen(text) > OM_MAX_TEXT) {
		free(text);
		text = NULL;
	}
	json_decref(o);
	return text;
}

/* The OPTIONS cell (see the top of the file).  Caller frees (free). */
static char *
options_cell(const struct om_job_detail *d)
{
	json_t *o, *batch;
	size_t len = d->batch ? strlen(d->batch) : 0;
	uint32_t b;
	char *text;

	if (len > 1 && d->batch[len - 1] == '%')
		batch = json_string(d->batch);
	else if (d->batch != NULL && om_parse_u32(d->batch, 0, UINT32_MAX, &b) == 0)
		batch = json_integer(b);
	else
		batch = json_integer(d->wave_size); /* not recorded (an older schema) */
	o = json_pack("{s:I, s:I, s:o, s:o, s:b, s:b, s:s?, s:b}", "timeout",
	              (json_int_t)d->timeout_s, "forks", (json_int_t)d->forks, "batch", batch,
	              "max_fail", d->has_max_fail ? json_integer(d->max_fail) : json_null(),
	              "check", d->check, "become", d->become, "become_user", d->become_user,
	              "retry_lost", d->retry_option);
	if (o == NULL)
		return NULL;
	text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return text;
}

void
master_op_job_show(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	uint64_t id = r->msg.u.by_id.id;
	struct om_job_scope scope;
	struct om_job_summary j;
	struct om_job_detail d;
	struct cells t = {0};
	char *params, *options;
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
	/* the job is the caller's to see: what it was submitted with too */
	if ((rv = om_store_job_detail(m->store, id, &d)) != 0) {
		om_job_summary_release(&j);
		store_failed(m, r, rv, "the parameters", id);
		return;
	}
	params = params_cell(&d);
	options = options_cell(&d);
	om_job_detail_release(&d);
	job_row(&t, &j);
	cell(&t, params);
	cell(&t, options);
	if (params == NULL || options == NULL)
		om_warn("job %" PRIu64 ": its parameters or options do not fit a reply", id);
	cells_reply(r, &t, show_cols, NSHOW_COLS);
	free(params);
	free(options);
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
