/*
 * om-master's core loop: handshakes, the operation table, dispatch of jobs
 * to workers by IDC, result ingest and acknowledgement, long-polls.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jobs.h"
#include "master_int.h"
#include "selector.h"

#define POLL_HOLD_MAX_MS   5000
#define FOLLOW_HOLD_MAX_MS 5000
#define FOLLOW_BATCH       100 /* x OM_MAX_CHUNK stays under OM_MAX_FRAME */
#define CLIENT_IDLE_MS     120000
#define MAX_TIMEOUT_S      (7 * 86400)
#define MAX_FORKS          10000
#define HOUSEKEEPING_MS    200
#define SWEEP_MS           1000
#define RETENTION_MS       30000 /* partitions ahead, expired output dropped */
#define RETENTION_BACKOFF_MS 300000

/* ---------------------------------------------------------------- helpers */

/* An ERROR reply; field (may be NULL) names the input at fault. */
static void
reply_error_v(struct om_rpc_req *r, int code, const char *field, const char *fmt, va_list ap)
{
	struct om_msg e = {.type = OM_MSG_ERROR};
	char text[1024];

	vsnprintf(text, sizeof(text), fmt, ap);
	e.u.error.code = code;
	e.u.error.text = text;
	/* a name the codec would refuse is left out rather than lose the refusal */
	if (field != NULL && field[0] != '\0' && strlen(field) <= OM_MAX_FIELD)
		e.u.error.field = (char *)field;
	om_rpc_reply(r, &e);
}

void
reply_error(struct om_rpc_req *r, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_error_v(r, code, NULL, fmt, ap);
	va_end(ap);
}

void
reply_error_field(struct om_rpc_req *r, int code, const char *field, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_error_v(r, code, field, fmt, ap);
	va_end(ap);
}

struct wconn *
wconn_find(struct master *m, const char *name)
{
	struct wconn *w;

	for (w = m->workers; w != NULL; w = w->next)
		if (strcmp(w->name, name) == 0)
			return w;
	return NULL;
}

/* ------------------------------------------------------------- followers */

/* Answers f if there is something to say (or force); returns true when answered. */
static bool
follower_try(struct master *m, struct follower *f, bool force)
{
	struct om_msg ev = {.type = OM_MSG_EVENTS};
	struct om_event *events = NULL;
	size_t n = 0;
	bool done = false;
	uint64_t next = f->cursor;
	int rv;

	struct om_job_scope scope = {f->idcs, f->nidcs, f->groups, f->ngroups};
	int tries = 0;

again:
	rv = om_store_events_query(m->store, f->job_id, f->cursor, FOLLOW_BATCH,
	                           f->files ? OM_EVENTS_FILES : 0, &scope, &events, &n, &done,
	                           &next);
	if (rv != 0) {
		reply_error(f->req, rv, "cannot read events of job %llu: %s",
		            (unsigned long long)f->job_id, om_strerror(rv));
		return true;
	}
	/* A cursor that moved without events (ids out of scope, burnt): held
	 * from there when that was all; after a few reads that keep moving (a
	 * long run), answered, so the client asks again from there and the core
	 * thread is not held scanning the rest of the job. */
	if (n == 0 && !done && !force && next != f->cursor && ++tries < 4) {
		f->cursor = next;
		goto again;
	}
	if (n == 0 && !done && !force && next == f->cursor)
		return false;
	ev.u.events.job_id = f->job_id;
	ev.u.events.events = events;
	ev.u.events.nevents = (uint32_t)n;
	ev.u.events.done = done;
	ev.u.events.cursor = next;
	om_rpc_reply(f->req, &ev);
	om_events_free(events, n);
	return true;
}

static void
follower_free(struct follower *f)
{
	size_t i;

	for (i = 0; i < f->nidcs; i++)
		om_free(f->idcs[i]);
	for (i = 0; i < f->ngroups; i++)
		om_free(f->groups[i]);
	om_free(f->idcs);
	om_free(f->groups);
	om_free(f);
}

/* Deep copy of n names; NULL only when out of memory (n > 0). */
static char **
names_dup(char *const *v, size_t n)
{
	char **out;
	size_t i;

	if (n == 0)
		return NULL;
	if ((out = om_calloc(n, sizeof(*out))) == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		if ((out[i] = om_strdup(v[i])) == NULL) {
			while (i > 0)
				om_free(out[--i]);
			om_free(out);
			return NULL;
		}
	return out;
}

static void
followers_wake(struct master *m, uint64_t job_id, bool all_expired_only)
{
	struct follower **pp = &m->followers, *f;
	int64_t now = om_now_ms();

	while ((f = *pp) != NULL) {
		bool expired = now >= f->deadline;
		bool answered = false;

		if (all_expired_only ? expired : (f->job_id == job_id))
			answered = follower_try(m, f, expired);
		if (answered) {
			*pp = f->next;
			follower_free(f);
		} else {
			pp = &f->next;
		}
	}
}

/* ------------------------------------------------------------ task metadata */

/*
 * Reports name a task and a host index; what they map to never changes once
 * the task exists, so it is cached.  Bounded: a full cache is emptied.
 */
static struct om_task_meta *
meta_get(struct master *m, uint64_t id)
{
	size_t b = (size_t)(id % META_BUCKETS);
	struct meta_entry *e;
	int rv;

	for (e = m->meta[b]; e != NULL; e = e->next)
		if (e->meta.id == id)
			return &e->meta;
	if (m->nmeta >= META_MAX)
		meta_clear(m);
	if ((e = om_calloc(1, sizeof(*e))) == NULL)
		return NULL;
	if ((rv = om_store_task_meta(m->store, id, &e->meta)) != 0) {
		if (rv != OM_ENOTFOUND)
			om_err("cannot read task %llu: %s", (unsigned long long)id,
			       om_store_errmsg(m->store));
		om_free(e);
		return NULL;
	}
	e->next = m->meta[b];
	m->meta[b] = e;
	m->nmeta++;
	return &e->meta;
}

void
meta_clear(struct master *m)
{
	size_t b;
	struct meta_entry *e;

	for (b = 0; b < META_BUCKETS; b++)
		while ((e = m->meta[b]) != NULL) {
			m->meta[b] = e->next;
			om_task_meta_release(&e->meta);
			om_free(e);
		}
	m->nmeta = 0;
}

/* ------------------------------------------------------------ workers */

void
workers_wake(struct master *m, char **names, size_t n)
{
	size_t i;
	struct wconn *w;

	for (i = 0; i < n; i++)
		if ((w = wconn_find(m, names[i])) != NULL && w->poll != NULL)
			worker_poll_try(m, w, false);
}

void
jobs_advance(struct master *m, uint64_t job_id)
{
	char **names = NULL;
	size_t n = 0;
	int rv;

	if ((rv = om_store_job_advance(m->store, job_id, &names, &n)) != 0 && rv != OM_ENOTFOUND)
		om_err("job %llu: cannot dispatch: %s", (unsigned long long)job_id,
		       om_store_errmsg(m->store));
	workers_wake(m, names, n);
	om_store_names_free(names, n);
	followers_wake(m, job_id, false);
}

/* Tasks that will not report: lost (or re-run), then their jobs move on. */
void
tasks_lose(struct master *m, const uint64_t *ids, size_t n, const char *reason)
{
	uint64_t *jobs = NULL, lost = 0, retried = 0;
	size_t nj = 0, i;
	int rv;

	if (n == 0)
		return;
	if ((rv = om_store_tasks_lose(m->store, ids, n, reason, &jobs, &nj, &lost, &retried)) !=
	    0) {
		om_err("cannot mark %zu tasks lost: %s", n, om_store_errmsg(m->store));
		return;
	}
	if (lost + retried > 0)
		om_warn("%s: %llu hosts lost, %llu queued to run again", reason,
		        (unsigned long long)lost, (unsigned long long)retried);
	for (i = 0; i < nj; i++)
		jobs_advance(m, jobs[i]);
	om_free(jobs);
}

void
worker_poll_try(struct master *m, struct wconn *w, bool force)
{
	struct om_rpc_req *r = w->poll;
	struct om_msg t;
	uint64_t *ids = NULL;
	size_t n = 0;
	int rv;

	if (r == NULL)
		return;
	/* Cancels first; a busy worker has no slot for a task: its tasks stay queued. */
	rv = om_store_worker_poll(m->store, w->name, m->id, !w->poll_busy, OM_MAX_ITEMS, &ids, &n,
	                          &t);
	if (rv == 0 && n > 0) {
		struct om_msg c = {.type = OM_MSG_CANCEL};

		w->poll = NULL;
		c.u.cancel.tasks = ids;
		c.u.cancel.ntasks = (uint32_t)n;
		om_info("cancel of %zu tasks -> worker '%s'", n, w->name);
		/* Not sent: the store sends them again after 10 s. */
		om_rpc_reply(r, &c);
		om_free(ids);
		return;
	}
	om_free(ids);
	if (rv == 0) {
		uint64_t tid = t.u.task.task_id;
		w->poll = NULL;
		om_info("task %llu of job %llu -> worker '%s' (%u hosts)", (unsigned long long)tid,
		        (unsigned long long)t.u.task.job_id, w->name, t.u.task.nhosts);
		if (om_rpc_reply(r, &t) != 0) {
			/* Not sent: queued again for the next poll. */
			om_store_task_unclaim(m->store, tid);
		}
		/* Sent is not received: heartbeats confirm it (master_op_heartbeat). */
		om_msg_release(&t);
		return;
	}
	if (rv != OM_ENOTFOUND)
		om_err("cannot poll tasks for worker '%s': %s", w->name, om_store_errmsg(m->store));
	if (force) {
		struct om_msg none = {.type = OM_MSG_NOTASK};
		w->poll = NULL;
		om_rpc_reply(r, &none);
	}
}

void
worker_disconnect(struct master *m, struct wconn *w, const char *reason)
{
	uint64_t *ids = NULL;
	size_t n = 0;
	char why[OM_MAX_TEXT];

	if (w->poll != NULL) {
		struct om_msg none = {.type = OM_MSG_NOTASK};
		om_rpc_reply(w->poll, &none);
		w->poll = NULL;
	}
	if (w->gone)
		return;
	w->gone = true;
	om_warn("worker '%s' (IDC '%s') is gone: %s", w->name, w->idc, reason);
	om_store_worker_offline(m->store, w->name, m->id);
	/* Everything it was given: lost now (it will not be heard again). */
	if (om_store_worker_holds(m->store, w->name, NULL, 0, 0, &ids, &n) == 0) {
		snprintf(why, sizeof(why), "lost: worker '%s' %s", w->name, reason);
		tasks_lose(m, ids, n, why);
	}
	om_free(ids);
}

void
on_session_end(void *arg, void *user)
{
	struct master *m = arg;
	struct peer *p = user;
	struct follower **pp, *f;

	if (p == NULL)
		return;
	if (p->kind == PEER_WORKER && p->w != NULL && p->w->session != NULL &&
	    om_rpc_session_user(p->w->session) == p) {
		if (p->w->poll != NULL) {
			struct om_msg none = {.type = OM_MSG_NOTASK};
			om_rpc_reply(p->w->poll, &none);
			p->w->poll = NULL;
		}
		p->w->session = NULL;
		/* No new tasks for it from any master until it says HELLO again. */
		om_store_worker_offline(m->store, p->w->name, m->id);
	}
	if (p->kind == PEER_CLIENT) {
		pp = &m->followers;
		while ((f = *pp) != NULL) {
			if (f->req->session != NULL && om_rpc_session_user(f->req->session) == p) {
				follower_try(m, f, true);
				*pp = f->next;
				follower_free(f);
			} else {
				pp = &f->next;
			}
		}
	}
	peer_free(p);
}

void
peer_free(struct peer *p)
{
	if (p == NULL)
		return;
	om_user_release(&p->user);
	om_free(p);
}

/* ------------------------------------------------------------ worker ops */

void
master_op_heartbeat(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	struct om_msg ack = {.type = OM_MSG_ACK};
	const struct om_msg *hb = &r->msg;
	int64_t grace = 2 * (int64_t)m->cfg.heartbeat_ms + 1000;
	uint64_t *missing = NULL;
	size_t nmissing = 0, i;
	char why[OM_MAX_TEXT];
	int rv;

	p->w->last_ms = om_now_ms();
	if ((rv = om_store_worker_alive(m->store, p->w->name, m->id)) != 0) {
		/* Not acknowledged: the worker keeps its results and tries again. */
		reply_error(r, OM_EDB, "master database unavailable, retry later");
		return;
	}
	/*
	 * A task delivered a while ago that the worker does not hold never
	 * arrived (the reply was lost with its connection) or belongs to a
	 * process that restarted: its unfinished hosts are lost, not left
	 * running forever.  Fresh deliveries wait.
	 */
	rv = om_store_worker_holds(m->store, p->w->name, hb->u.heartbeat.tasks,
	                           hb->u.heartbeat.ntasks, grace, &missing, &nmissing);
	if (rv != 0) {
		reply_error(r, OM_EDB, "master database unavailable, retry later");
		return;
	}
	for (i = 0; i < nmissing; i++) {
		snprintf(why, sizeof(why),
		         "lost: worker '%s' does not hold task %llu (lost in transit or the worker "
		         "restarted)",
		         p->w->name, (unsigned long long)missing[i]);
		om_warn("%s", why);
		tasks_lose(m, &missing[i], 1, why);
	}
	om_free(missing);
	om_rpc_reply(r, &ack);
}

void
master_op_poll(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	struct wconn *w = p->w;
	uint32_t wait = r->msg.u.poll.wait_ms;

	w->last_ms = om_now_ms();
	if (w->poll != NULL) {
		struct om_msg none = {.type = OM_MSG_NOTASK};
		om_rpc_reply(w->poll, &none);
	}
	w->poll = r;
	w->poll_busy = r->msg.u.poll.busy;
	w->poll_deadline = om_now_ms() + (wait > POLL_HOLD_MAX_MS ? POLL_HOLD_MAX_MS : wait);
	worker_poll_try(m, w, wait == 0);
}

/* Appends id to v[0..*n) unless it is there; v has room for every candidate. */
static void
id_add(uint64_t *v, size_t *n, uint64_t id)
{
	size_t k;

	for (k = 0; k < *n; k++)
		if (v[k] == id)
			return;
	v[(*n)++] = id;
}

/*
 * The task of a report item, or NULL when unknown (declared lost long ago,
 * or not a task at all: acknowledged and dropped, so the worker's outbox
 * drains).  *foreign is set when it went to another worker.
 */
static struct om_task_meta *
report_task(struct master *m, struct peer *p, uint64_t tid, bool *foreign)
{
	struct om_task_meta *t = meta_get(m, tid);

	if (t != NULL && strcmp(t->worker, p->w->name) != 0)
		*foreign = true;
	return t;
}

void
master_op_report(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	const struct om_msg *q = &r->msg;
	uint32_t nitems = q->u.report.nchunks + q->u.report.nresults;
	struct om_store_chunk *chunks = NULL;
	struct om_store_state *states = NULL;
	struct om_msg ack = {.type = OM_MSG_ACK};
	uint32_t i, nc = 0, ns = 0, ignored = 0;
	uint64_t *tids = NULL, *jobs = NULL, *fjobs = NULL, bad = 0;
	size_t ntids = 0, njobs = 0, nfjobs = 0, k;
	struct om_task_meta *t;
	bool foreign = false;
	int rv;

	p->w->last_ms = om_now_ms();
	chunks = om_calloc(q->u.report.nchunks + 1, sizeof(*chunks));
	states = om_calloc(q->u.report.nresults + 1, sizeof(*states));
	tids = om_calloc(nitems + 1, sizeof(*tids));
	jobs = om_calloc(nitems + 1, sizeof(*jobs));
	fjobs = om_calloc(nitems + 1, sizeof(*fjobs));
	if (chunks == NULL || states == NULL || tids == NULL || jobs == NULL || fjobs == NULL) {
		reply_error(r, OM_ENOMEM, "master out of memory");
		goto out;
	}
	for (i = 0; i < q->u.report.nchunks && !foreign; i++) {
		const struct om_chunk *c = &q->u.report.chunks[i];
		if ((t = report_task(m, p, c->task_id, &foreign)) == NULL || foreign ||
		    c->host >= t->nhosts) {
			bad = c->task_id;
			ignored++;
			continue;
		}
		chunks[nc].job_id = t->job_id;
		chunks[nc].host = t->hosts[c->host];
		chunks[nc].stream = c->stream;
		chunks[nc].seq = c->seq;
		chunks[nc].data = c->data;
		chunks[nc].len = c->len;
		chunks[nc].attempt = t->attempt;
		nc++;
		id_add(jobs, &njobs, t->job_id);
	}
	for (i = 0; i < q->u.report.nresults && !foreign; i++) {
		const struct om_result *res = &q->u.report.results[i];
		if ((t = report_task(m, p, res->task_id, &foreign)) == NULL || foreign ||
		    res->host >= t->nhosts || !om_host_state_final((int)res->state)) {
			bad = res->task_id;
			ignored++;
			continue;
		}
		states[ns].job_id = t->job_id;
		states[ns].host = t->hosts[res->host];
		states[ns].state = res->state;
		states[ns].exit_code = res->exit_code;
		states[ns].reason = res->reason;
		states[ns].duration_ms = res->duration_ms;
		states[ns].changed = res->changed;
		states[ns].result = res->data;
		states[ns].task_id = t->id;
		ns++;
		id_add(tids, &ntids, t->id);
		id_add(fjobs, &nfjobs, t->job_id);
	}
	/* A report naming another worker's task is refused whole and audited:
	 * nothing from it is stored. */
	if (foreign) {
		t = meta_get(m, bad);
		audit(m, p->who, p->source, "report", "task", "refused",
		      "task %llu of job %llu belongs to worker '%s', not to '%s' (IDC '%s')",
		      (unsigned long long)bad, (unsigned long long)(t ? t->job_id : 0),
		      t ? t->worker : "?", p->w->name, p->w->idc);
		reply_error(r, OM_EPERM, "task %llu is not assigned to this worker",
		            (unsigned long long)bad);
		goto out;
	}
	if (ignored > 0)
		om_warn("%s: ignored %u report items for unknown tasks or hosts", p->who, ignored);
	if ((rv = om_store_ingest(m->store, chunks, nc, states, ns)) != 0) {
		/* Not acknowledged: the worker keeps the items and sends them again. */
		om_err("cannot store a report from %s: %s", p->who, om_store_errmsg(m->store));
		reply_error(r, OM_EDB, "master database unavailable, retry later");
		goto out;
	}
	/* Audit before the reply, which releases r->msg: a host key the worker
	 * accepted (policy accept-new) is a trust decision. */
	for (i = 0; i < q->u.report.nresults; i++) {
		const struct om_result *res = &q->u.report.results[i];
		if (res->note != NULL && (t = meta_get(m, res->task_id)) != NULL &&
		    res->host < t->nhosts)
			audit(m, p->who, p->source, "hostkey.accept-new", t->hosts[res->host], "ok",
			      "%s", res->note);
	}
	/* Crash tests: durable, not acknowledged; the worker sends it again. */
	om_fault("report.ack");
	ack.u.ack.nchunks = q->u.report.nchunks;
	ack.u.ack.nresults = q->u.report.nresults;
	om_rpc_reply(r, &ack);
	/* After the acknowledgement: nothing below decides what is durable. */
	for (k = 0; k < njobs; k++)
		followers_wake(m, jobs[k], false);
	if (om_store_tasks_settle(m->store, tids, ntids) != 0)
		om_warn("cannot settle tasks: %s", om_store_errmsg(m->store));
	/* Waves: a job whose running wave just finished moves on (and its followers wake). */
	for (k = 0; k < nfjobs; k++)
		jobs_advance(m, fjobs[k]);
out:
	om_free(fjobs);
	om_free(jobs);
	om_free(tids);
	om_free(chunks);
	om_free(states);
}

/* ------------------------------------------------------------ client ops */

void
master_op_submit(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	const struct om_msg *sub = &r->msg;
	struct om_selector *sel = NULL;
	struct om_host *all = NULL, *matched = NULL;
	struct om_job_spec spec;
	struct om_msg ok = {.type = OM_MSG_SUBMITTED};
	size_t nall = 0, nm = 0, i;
	uint64_t job_id = 0;
	char err[256], field[OM_MAX_FIELD + 1], batch[16];
	int rv;

	if (sub->u.submit.timeout_s > MAX_TIMEOUT_S) {
		reply_error_field(r, OM_ERANGE, "options.timeout", "timeout is at most %u s",
		                  MAX_TIMEOUT_S);
		return;
	}
	if (sub->u.submit.forks > MAX_FORKS) {
		reply_error_field(r, OM_ERANGE, "options.forks", "forks is at most %u", MAX_FORKS);
		return;
	}
	if (sub->u.submit.batch_pct && sub->u.submit.batch > 100) {
		reply_error_field(r, OM_ERANGE, "options.batch",
		                  "a batch in percent is at most 100%%");
		return;
	}
	if (om_selector_parse(sub->u.submit.selector, &sel, err, sizeof(err)) != 0) {
		reply_error_field(r, OM_EINVAL, "selector", "bad selector '%s': %s",
		                  sub->u.submit.selector, err);
		return;
	}
	/* Only the hosts the selector can name, when it names them (not all
	 * of a large inventory for a job on three hosts); still matched below. */
	{
		struct om_host_filter hf;
		bool narrow = om_selector_filter(sel, &hf);

		rv = om_store_hosts_load_filtered(m->store, narrow ? &hf : NULL, &all, &nall);
		if (narrow)
			om_selector_filter_release(&hf);
	}
	if (rv != 0) {
		reply_error(r, OM_EDB, "cannot read the inventory: %s", om_strerror(rv));
		goto out;
	}
	if ((matched = om_calloc(nall + 1, sizeof(*matched))) == NULL)
		goto nomem;
	for (i = 0; i < nall; i++)
		if (om_selector_match(sel, &all[i]))
			matched[nm++] = all[i]; /* shallow: all[] keeps ownership */
	if (nm == 0) {
		reply_error_field(r, OM_ENOTFOUND, "selector", "selector '%s' matches no host",
		                  sub->u.submit.selector);
		goto out;
	}
	if (auth_check_target(p, matched, nm, sub->u.submit.module, err, sizeof(err)) != 0) {
		audit(m, p->who, p->source, "job.submit", sub->u.submit.selector, "refused", "%s",
		      err);
		reply_error(r, OM_EPERM, "%s: nothing dispatched", err);
		goto out;
	}
	/* The module must be offered and the params fit its schema: refused here,
	 * a job is never recorded that no worker could run as asked. */
	if ((rv = modules_check_submit(m, sub, field, sizeof(field), err, sizeof(err))) != 0) {
		audit(m, p->who, p->source, "job.submit", sub->u.submit.selector, "refused", "%s",
		      err);
		reply_error_field(r, rv, field, "%s", err);
		goto out;
	}
	memset(&spec, 0, sizeof(spec));
	spec.user = p->who;
	spec.selector = sub->u.submit.selector;
	spec.module = sub->u.submit.module;
	spec.params = sub->u.submit.params;
	spec.nparams = sub->u.submit.nparams;
	spec.timeout_s = sub->u.submit.timeout_s;
	spec.forks = sub->u.submit.forks;
	spec.become = sub->u.submit.become;
	spec.become_user = sub->u.submit.become_user;
	spec.check = sub->u.submit.check;
	spec.retry_lost = sub->u.submit.retry_lost;
	spec.has_max_fail = sub->u.submit.has_max_fail;
	spec.max_fail = sub->u.submit.max_fail;
	spec.wave_size = om_wave_size((uint32_t)nm, sub->u.submit.batch, sub->u.submit.batch_pct);
	spec.nwaves = om_wave_count((uint32_t)nm, spec.wave_size);
	snprintf(batch, sizeof(batch), "%u%s", sub->u.submit.batch,
	         sub->u.submit.batch_pct ? "%" : "");
	spec.batch = batch;
	if (nm > OM_MAX_HOSTS) {
		reply_error_field(r, OM_ERANGE, "selector",
		                  "selector '%s' matches %zu hosts, at most %u per job",
		                  sub->u.submit.selector, nm, OM_MAX_HOSTS);
		goto out;
	}
	if ((rv = om_store_job_create(m->store, &spec, matched, nm, &job_id)) != 0) {
		om_err("cannot create a job: %s", om_store_errmsg(m->store));
		reply_error(r, OM_EDB, "cannot record the job: %s", om_strerror(rv));
		goto out;
	}
	om_info("job %llu by %s: module '%s' on '%s' (%zu hosts)", (unsigned long long)job_id,
	        p->who, sub->u.submit.module, sub->u.submit.selector, nm);
	audit(m, p->who, p->source, "job.submit", sub->u.submit.selector, "ok",
	      "job %llu, module '%s', %zu hosts", (unsigned long long)job_id, sub->u.submit.module,
	      nm);
	if (spec.nwaves > 1)
		om_info("job %llu: %u waves of up to %u hosts", (unsigned long long)job_id,
		        spec.nwaves, spec.wave_size);
	/* Recorded: from here the job is owed to the store, whatever happens to
	 * this master; a failed first dispatch is retried by the sweep. */
	jobs_advance(m, job_id);
	ok.u.submitted.job_id = job_id;
	ok.u.submitted.nhosts = (uint32_t)nm;
	om_rpc_reply(r, &ok);
	goto out;
nomem:
	reply_error(r, OM_ENOMEM, "master out of memory");
out:
	om_free(matched);
	om_hosts_free(all, nall);
	om_selector_free(sel);
}

void
master_op_follow(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	struct follower *f;
	struct om_job_scope scope;
	uint32_t wait = r->msg.u.follow.wait_ms;
	int rv;

	auth_job_scope(p, &scope);
	/* A scoped operator follows only jobs with hosts in scope (as job show). */
	if ((scope.nidcs > 0 || scope.ngroups > 0) &&
	    (rv = om_store_job_visible(m->store, r->msg.u.follow.job_id, &scope, NULL)) != 0) {
		if (rv == OM_ENOTFOUND)
			reply_error(r, OM_ENOTFOUND, "no job %llu",
			            (unsigned long long)r->msg.u.follow.job_id);
		else
			reply_error(r, OM_EDB, "master database unavailable, retry later");
		return;
	}
	if ((f = om_calloc(1, sizeof(*f))) == NULL) {
		reply_error(r, OM_ENOMEM, "master out of memory");
		return;
	}
	f->req = r;
	f->job_id = r->msg.u.follow.job_id;
	f->cursor = r->msg.u.follow.cursor;
	f->files = r->msg.u.follow.files;
	f->deadline = om_now_ms() + (wait > FOLLOW_HOLD_MAX_MS ? FOLLOW_HOLD_MAX_MS : wait);
	f->nidcs = scope.nidcs;
	f->ngroups = scope.ngroups;
	if ((scope.nidcs > 0 && (f->idcs = names_dup(scope.idcs, scope.nidcs)) == NULL) ||
	    (scope.ngroups > 0 && (f->groups = names_dup(scope.groups, scope.ngroups)) == NULL)) {
		f->nidcs = f->idcs ? f->nidcs : 0;
		f->ngroups = 0;
		follower_free(f);
		reply_error(r, OM_ENOMEM, "master out of memory");
		return;
	}
	if (follower_try(m, f, wait == 0)) {
		follower_free(f);
		return;
	}
	f->next = m->followers;
	m->followers = f;
}

void
master_op_hosts_list(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	struct om_selector *sel = NULL;
	struct om_host *all = NULL, *out = NULL;
	struct om_msg rep = {.type = OM_MSG_HOSTS};
	const char *s = r->msg.u.hosts_list.selector;
	size_t nall = 0, n = 0, i;
	char err[256];
	int rv;

	(void)p;
	if (om_selector_parse(s && *s ? s : "all", &sel, err, sizeof(err)) != 0) {
		reply_error(r, OM_EINVAL, "bad selector '%s': %s", s, err);
		return;
	}
	if ((rv = om_store_hosts_load(m->store, &all, &nall)) != 0) {
		reply_error(r, OM_EDB, "cannot read the inventory: %s", om_strerror(rv));
	} else if ((out = om_calloc(nall + 1, sizeof(*out))) == NULL) {
		reply_error(r, OM_ENOMEM, "master out of memory");
	} else {
		for (i = 0; i < nall; i++)
			if (om_selector_match(sel, &all[i]) && auth_host_visible(p, &all[i]))
				out[n++] = all[i];
		rep.u.hosts.hosts = out;
		rep.u.hosts.nhosts = (uint32_t)n;
		om_rpc_reply(r, &rep);
	}
	om_free(out);
	om_hosts_free(all, nall);
	om_selector_free(sel);
}

void
master_op_hosts_add(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	struct om_host *hs = r->msg.u.hosts.hosts;
	struct om_msg done = {.type = OM_MSG_DONE};
	uint32_t i, n = r->msg.u.hosts.nhosts;
	int rv;

	for (i = 0; i < n; i++) {
		if (hs[i].idc == NULL || !om_name_valid(hs[i].idc)) {
			reply_error_field(r, OM_EINVAL, "idc", "host '%s' needs a valid IDC",
			                  hs[i].name);
			return;
		}
		if (hs[i].addr == NULL || hs[i].addr[0] == '\0' || hs[i].addr[0] == '-') {
			reply_error_field(r, OM_EINVAL, "addr", "host '%s' needs a valid address",
			                  hs[i].name);
			return;
		}
		if (hs[i].port == 0)
			hs[i].port = 22;
	}
	if ((rv = om_store_hosts_upsert(m->store, hs, n)) != 0) {
		reply_error(r, OM_EDB, "cannot store hosts: %s", om_store_errmsg(m->store));
		return;
	}
	om_info("%s added or updated %u hosts", p->who, n);
	audit(m, p->who, p->source, "hosts.add", n == 1 ? hs[0].name : "hosts", "ok",
	      "%u hosts added or updated", n);
	done.u.done.count = n;
	om_rpc_reply(r, &done);
}

void
master_op_workers_list(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	struct om_worker_info *ws = NULL;
	struct om_msg rep = {.type = OM_MSG_WORKERS};
	size_t n = 0;
	int rv;

	(void)p;
	if ((rv = om_store_workers_load(m->store, &ws, &n)) != 0) {
		reply_error(r, OM_EDB, "cannot read workers: %s", om_strerror(rv));
		return;
	}
	/* connected and running come from the store: workers of every master. */
	rep.u.workers.workers = ws;
	rep.u.workers.nworkers = (uint32_t)n;
	om_rpc_reply(r, &rep);
	om_workers_free(ws, n);
}

/* ----------------------------------------------------------- the loop */

static void wake(void *arg);

#define WEB_QUEUE_DEFAULT 256
#define WEB_PER_TURN      64 /* web calls per loop turn: nng peers get their turn too */
#define WEB_EXPIRE_MS     60000

int
master_web_push(struct master *m, struct web_call *c)
{
	unsigned max = m->cfg.web_queue ? m->cfg.web_queue : WEB_QUEUE_DEFAULT;
	int rv = 0;

	pthread_mutex_lock(&m->web_lock);
	if (m->web_closed) {
		rv = OM_ECLOSED;
	} else if (m->web_len >= max) {
		rv = OM_EAGAIN;
	} else {
		c->next = NULL;
		if (m->web_tail != NULL)
			m->web_tail->next = c;
		else
			m->web_head = c;
		m->web_tail = c;
		m->web_len++;
	}
	pthread_mutex_unlock(&m->web_lock);
	if (rv == 0)
		wake(m);
	return rv;
}

static struct web_call *
web_take(struct master *m)
{
	struct web_call *c;

	pthread_mutex_lock(&m->web_lock);
	if ((c = m->web_head) != NULL) {
		m->web_head = c->next;
		if (m->web_head == NULL)
			m->web_tail = NULL;
		m->web_len--;
	}
	pthread_mutex_unlock(&m->web_lock);
	return c;
}

static void
wake(void *arg)
{
	struct master *m = arg;

	pthread_mutex_lock(&m->wake_lock);
	m->woken = true;
	pthread_cond_signal(&m->wake_cond);
	pthread_mutex_unlock(&m->wake_lock);
}

static void
on_notify(void *arg, const char *channel, const char *payload)
{
	struct master *m = arg;
	struct wconn *w;

	if (strcmp(channel, "om_dispatch") == 0) {
		if ((w = wconn_find(m, payload)) != NULL && w->poll != NULL)
			worker_poll_try(m, w, false);
	} else if (strcmp(channel, "om_events") == 0) {
		followers_wake(m, strtoull(payload, NULL, 10), false);
	}
}

/*
 * What no single request triggers, on every master (the store keeps it
 * idempotent): tasks whose worker is gone, hosts pending too long, jobs
 * owed a dispatch or a wave (a master died before doing it).
 *
 * Loss is declared only after this master has been running, and its
 * database reachable, for longer than the liveness window: a worker's
 * silence while no master could record its heartbeats (this one was not
 * started, was stopped, or its database was away) says nothing about the
 * worker.
 */
static void
sweep(struct master *m)
{
	int64_t now = om_now_ms(), live = 3 * (int64_t)m->cfg.heartbeat_ms;
	struct om_orphan *o = NULL;
	uint64_t *ids = NULL, *jobs = NULL, ended = 0;
	size_t n = 0, nids = 0, nj = 0, i;
	bool may_lose = now - m->awake_ms > live && now - om_store_last_failure_ms(m->store) > live;

	if (om_store_tasks_orphaned(m->store, &o, &n) == 0 && n > 0) {
		/* Never delivered: they go to another worker. */
		if ((ids = om_calloc(n, sizeof(*ids))) != NULL) {
			for (i = 0; i < n; i++)
				if (!o[i].delivered)
					ids[nids++] = o[i].task_id;
			if (nids > 0 &&
			    om_store_tasks_unassign(m->store, ids, nids, &jobs, &nj) == 0) {
				for (i = 0; i < nj; i++)
					jobs_advance(m, jobs[i]);
			}
			om_free(jobs);
			jobs = NULL;
		}
		om_free(ids);
		ids = NULL;
		for (i = 0; may_lose && i < n; i++) {
			char why[OM_MAX_TEXT];
			if (!o[i].delivered || !o[i].stale)
				continue;
			if (o[i].silent_s < 0)
				snprintf(why, sizeof(why), "lost: worker '%s' was never heard from",
				         o[i].worker);
			else
				snprintf(
				        why, sizeof(why),
				        "lost: worker '%s' missed 3 heartbeats (silent for %lld s)",
				        o[i].worker, (long long)o[i].silent_s);
			tasks_lose(m, &o[i].task_id, 1, why);
		}
	}
	om_free(o);
	if (om_store_pending_expire(m->store, (int64_t)m->cfg.pending_ms, &ended) == 0 && ended > 0)
		om_warn("%llu hosts unreachable: no live worker in their IDC for %u s",
		        (unsigned long long)ended, m->cfg.pending_ms / 1000);
	if (om_store_jobs_open(m->store, 200, &jobs, &nj) == 0)
		for (i = 0; i < nj; i++)
			jobs_advance(m, jobs[i]);
	om_free(jobs);
}

static int
retention(struct master *m)
{
	struct om_retention_stats rs;
	int rv;

	if ((rv = om_store_retention(m->store, (int)m->cfg.retention_days, &rs)) != 0) {
		om_warn("output partitions and retention: %s", om_store_errmsg(m->store));
		return rv;
	}
	if (rs.created > 0)
		om_info("created %u output partitions ahead of the job ids", rs.created);
	if (rs.dropped > 0 || rs.jobs_deleted > 0)
		om_info("retention (%u days): dropped %u output partitions, deleted %llu jobs",
		        m->cfg.retention_days, rs.dropped, (unsigned long long)rs.jobs_deleted);
	return 0;
}

static void
housekeeping(struct master *m)
{
	int64_t now = om_now_ms();
	struct wconn *w;

	for (w = m->workers; w != NULL; w = w->next)
		if (w->poll != NULL && now >= w->poll_deadline)
			worker_poll_try(m, w, true);
	if (now - m->last_sweep >= SWEEP_MS) {
		m->last_sweep = now;
		sweep(m);
	}
	if (now >= m->next_retention) {
		/* the next pass counts from the end of this one; a failed pass
		 * waits longer (a statement that timed out must not run back to back) */
		m->next_retention = om_now_ms() + (retention(m) == 0 ? RETENTION_MS : RETENTION_BACKOFF_MS);
	}
	followers_wake(m, 0, true);
	if (m->http != NULL && now - m->last_web_expire >= WEB_EXPIRE_MS) {
		m->last_web_expire = now;
		auth_web_expire(m);
	}
	om_rpc_server_expire(m->wsrv, on_session_end, m);
	om_rpc_server_expire(m->csrv, on_session_end, m);
}

/*
 * A worker's connection closed (it stopped, crashed, or the network broke):
 * send it nothing new until it speaks again.  Its running tasks keep their
 * chance until the heartbeat timeout.
 */
static void
on_disconnect(void *arg, void *user)
{
	struct peer *p = user;

	(void)arg;
	if (p != NULL && p->kind == PEER_WORKER && p->w != NULL && !p->w->suspect) {
		struct master *m = arg;
		p->w->suspect = true;
		om_info("worker '%s': connection closed, no new tasks until it is back",
		        p->w->name);
		om_store_worker_offline(m->store, p->w->name, m->id);
	}
}

/* Frames the RPC layer refused (malformed, failed handshake, replay, rate limit). */
static void
on_refused_frame(void *arg, const char *peer, const char *what)
{
	audit(arg, "-", peer, "frame", "-", "refused", "%s", what);
}

void
master_run(struct master *m, const volatile int *stop)
{
	while (!*stop) {
		struct om_rpc_req *r;
		struct timespec ts;

		/* Other masters' dispatches and events (and our own echoes). */
		if (om_store_notifications(m->store, on_notify, m) < 0)
			om_warn("database notifications: %s", om_store_errmsg(m->store));

		pthread_mutex_lock(&m->wake_lock);
		if (!m->woken) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000L)
				ts.tv_sec++, ts.tv_nsec -= 1000000000L;
			pthread_cond_timedwait(&m->wake_cond, &m->wake_lock, &ts);
		}
		m->woken = false;
		pthread_mutex_unlock(&m->wake_lock);

		/* A loop that did not turn for a heartbeat (SIGSTOP, swap, a
		 * suspended VM) was not hearing workers either. */
		if (om_now_ms() - m->loop_ms > (int64_t)m->cfg.heartbeat_ms) {
			om_warn("the master did not run for %lld ms: no worker is declared lost "
			        "for the next %u ms",
			        (long long)(om_now_ms() - m->loop_ms), 3 * m->cfg.heartbeat_ms);
			m->awake_ms = om_now_ms();
		}
		m->loop_ms = om_now_ms();

		while ((r = om_rpc_server_take(m->wsrv)) != NULL) {
			if (r->kind == OM_RPC_HANDSHAKE)
				auth_worker_hello(m, r);
			else
				auth_dispatch(m, m->wsrv, r);
		}
		while ((r = om_rpc_server_take(m->csrv)) != NULL) {
			if (r->kind == OM_RPC_HANDSHAKE)
				auth_client_hello(m, r);
			else
				auth_dispatch(m, m->csrv, r);
		}
		{
			struct web_call *c;
			int k;
			for (k = 0; k < WEB_PER_TURN && (c = web_take(m)) != NULL; k++)
				auth_web_call(m, c);
			if (k == WEB_PER_TURN)
				wake(m); /* more are waiting: no sleep next turn */
		}
		if (om_now_ms() - m->last_housekeeping >= HOUSEKEEPING_MS) {
			m->last_housekeeping = om_now_ms();
			housekeeping(m);
		}
	}
}

int
master_open(struct master *m, const struct master_config *cfg)
{
	struct om_rpc_server_opts so;
	char err[512], fp[65];
	bool created = false;
	int rv;

	memset(m, 0, sizeof(*m));
	m->cfg = *cfg;
	pthread_mutex_init(&m->wake_lock, NULL);
	pthread_cond_init(&m->wake_cond, NULL);
	pthread_mutex_init(&m->web_lock, NULL);
	if ((rv = om_key_load_or_create(cfg->key_path, &m->key, &created)) != 0) {
		om_err("cannot load key '%s': %s", cfg->key_path, om_strerror(rv));
		return rv;
	}
	om_key_fingerprint(m->key.pub, fp);
	om_info("master key fingerprint %s%s", fp, created ? " (new key)" : "");
	if ((rv = om_store_open(&m->store, cfg->db, err, sizeof(err))) != 0) {
		om_err("cannot open the database: %s", err);
		return rv;
	}
	om_info("database schema version %d", om_store_schema_version(m->store));
	om_store_set_live_ms(m->store, 3 * (int64_t)cfg->heartbeat_ms);
	if ((rv = om_store_listen(m->store)) != 0) {
		om_err("cannot listen for database notifications: %s", om_store_errmsg(m->store));
		return rv;
	}
	{
		char host[64] = "?";
		gethostname(host, sizeof(host) - 1);
		snprintf(m->id, sizeof(m->id), "%s:%ld:%llx", host, (long)getpid(),
		         (unsigned long long)(om_now_ms() & 0xffffff));
	}
	m->awake_ms = m->loop_ms = om_now_ms();
	if (m->cfg.pending_ms == 0)
		m->cfg.pending_ms = 30000;
	memset(&so, 0, sizeof(so));
	so.key = &m->key;
	so.max_frame = OM_MAX_FRAME + 64;
	so.wake = wake;
	so.wake_arg = m;
	so.url = cfg->worker_listen;
	so.patterns = 1u << OM_NOISE_IK;
	so.nctx = cfg->worker_ctx;
	so.session_idle_ms = 4 * (int64_t)cfg->heartbeat_ms;
	so.name = "worker";
	so.on_refused = on_refused_frame;
	so.on_disconnect = on_disconnect;
	so.refused_arg = m;
	if ((rv = om_rpc_server_open(&m->wsrv, &so)) != 0) {
		om_err("cannot listen on '%s': %s", cfg->worker_listen, om_strerror(rv));
		return rv;
	}
	so.url = cfg->client_listen;
	so.patterns = 1u << OM_NOISE_NK;
	so.nctx = cfg->client_ctx;
	so.session_idle_ms = CLIENT_IDLE_MS;
	so.name = "client";
	if ((rv = om_rpc_server_open(&m->csrv, &so)) != 0) {
		om_err("cannot listen on '%s': %s", cfg->client_listen, om_strerror(rv));
		return rv;
	}
	om_info("listening for workers on %s and clients on %s", cfg->worker_listen,
	        cfg->client_listen);
	if (cfg->http.listen != NULL && (rv = http_start(&m->http, &cfg->http, m)) != 0) {
		om_err("cannot serve HTTP on '%s': %s", cfg->http.listen, om_strerror(rv));
		return rv;
	}
	return 0;
}

void
master_close(struct master *m)
{
	struct wconn *w;
	struct follower *f;
	struct web_call *c;

	/* HTTP first: its threads push calls and hold local requests. */
	http_stop(m->http);
	m->http = NULL;
	pthread_mutex_lock(&m->web_lock);
	m->web_closed = true;
	pthread_mutex_unlock(&m->web_lock);
	while ((c = web_take(m)) != NULL) {
		om_rpc_drop(c->req, "master stopping");
		web_call_free(c);
	}
	/* Held local requests (web event streams): nng's go with their servers. */
	{
		struct follower **pp = &m->followers;
		while ((f = *pp) != NULL) {
			if (om_rpc_is_local(f->req)) {
				*pp = f->next;
				om_rpc_drop(f->req, "master stopping");
				follower_free(f);
			} else {
				pp = &f->next;
			}
		}
	}
	/* The database first: it is the only durable state. */
	om_store_close(m->store);
	m->store = NULL;
	/* Closing the servers drops every held request and session. */
	om_rpc_server_close(m->wsrv);
	om_rpc_server_close(m->csrv);
	while ((f = m->followers) != NULL) {
		m->followers = f->next;
		follower_free(f);
	}
	meta_clear(m);
	while ((w = m->workers) != NULL) {
		m->workers = w->next;
		om_free(w);
	}
	om_wipe(&m->key, sizeof(m->key));
	pthread_mutex_destroy(&m->wake_lock);
	pthread_mutex_destroy(&m->web_lock);
	pthread_cond_destroy(&m->wake_cond);
}
