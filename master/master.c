/*
 * om-master's core loop: handshakes, the operation table, dispatch of jobs
 * to workers by IDC, result ingest and acknowledgement, long-polls.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "master_int.h"
#include "selector.h"

#define POLL_HOLD_MAX_MS   5000
#define FOLLOW_HOLD_MAX_MS 5000
#define FOLLOW_BATCH       100 /* x OM_MAX_CHUNK stays under OM_MAX_FRAME */
#define CLIENT_IDLE_MS     120000
#define MAX_TIMEOUT_S      (7 * 86400)
#define MAX_FORKS          10000
#define HOUSEKEEPING_MS    200

/* ---------------------------------------------------------------- helpers */

void
reply_error(struct om_rpc_req *r, int code, const char *fmt, ...)
{
	struct om_msg e = {.type = OM_MSG_ERROR};
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	e.u.error.code = code;
	e.u.error.text = text;
	om_rpc_reply(r, &e);
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

static bool
wconn_live(const struct wconn *w)
{
	return w->session != NULL && !w->gone && !w->suspect;
}

static struct task *
task_find(struct master *m, uint64_t id)
{
	struct task *t;

	for (t = m->tasks; t != NULL; t = t->next)
		if (t->id == id)
			return t;
	return NULL;
}

void
task_free(struct task *t)
{
	om_msg_release(&t->msg);
	om_free(t->final);
	om_free(t->jidx);
	om_free(t);
}

void
task_unlink(struct master *m, struct task *t)
{
	struct task **pp;

	for (pp = &m->tasks; *pp != NULL; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	if (t->worker != NULL) {
		for (pp = &t->worker->queue; *pp != NULL; pp = &(*pp)->qnext)
			if (*pp == t) {
				*pp = t->qnext;
				break;
			}
		if (t->worker->running > 0)
			t->worker->running--;
	}
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
	int rv;

	rv = om_store_events_query(m->store, f->job_id, f->cursor, FOLLOW_BATCH,
	                           f->files ? OM_EVENTS_FILES : 0, &events, &n, &done);
	if (rv != 0) {
		reply_error(f->req, rv, "cannot read events of job %llu: %s",
		            (unsigned long long)f->job_id, om_strerror(rv));
		return true;
	}
	if (n == 0 && !done && !force)
		return false;
	ev.u.events.job_id = f->job_id;
	ev.u.events.events = events;
	ev.u.events.nevents = (uint32_t)n;
	ev.u.events.done = done;
	ev.u.events.cursor = n > 0 ? events[n - 1].id : f->cursor;
	om_rpc_reply(f->req, &ev);
	om_events_free(events, n);
	return true;
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
			om_free(f);
		} else {
			pp = &f->next;
		}
	}
}

/* ---------------------------------------------------------------- ingest */

void
ingest_states(struct master *m, const struct om_store_state *st, size_t n)
{
	size_t i;
	int rv;

	if (n == 0)
		return;
	if ((rv = om_store_ingest(m->store, NULL, 0, st, n)) != 0) {
		om_err("cannot record %zu host states: %s (%s)", n, om_strerror(rv),
		       om_store_errmsg(m->store));
		return;
	}
	for (i = 0; i < n; i++)
		if (i == 0 || st[i].job_id != st[i - 1].job_id)
			followers_wake(m, st[i].job_id, false);
}

/* Marks every unfinished host of t lost and forgets the task. */
static void
task_lose(struct master *m, struct task *t, const char *reason)
{
	struct om_store_state *st;
	uint64_t job_id = t->job_id;
	uint32_t i, n = 0;

	if ((st = om_calloc(t->msg.u.task.nhosts + 1, sizeof(*st))) != NULL) {
		for (i = 0; i < t->msg.u.task.nhosts; i++) {
			if (t->final[i])
				continue;
			st[n].job_id = t->job_id;
			st[n].host = t->msg.u.task.hosts[i].name;
			st[n].state = OM_HS_LOST;
			st[n].exit_code = -1;
			st[n].reason = reason;
			n++;
		}
		ingest_states(m, st, n);
		om_free(st);
		for (i = 0; i < t->msg.u.task.nhosts; i++)
			if (!t->final[i])
				jobs_host_final(m, job_id, t->jidx[i], OM_HS_LOST);
	}
	task_unlink(m, t);
	task_free(t);
	jobs_advance(m, job_id);
}

/* ------------------------------------------------------------ workers */

void
worker_poll_try(struct wconn *w, bool force)
{
	struct om_rpc_req *r = w->poll;
	struct task *t;

	if (r == NULL)
		return;
	if (w->ncancels > 0) {
		struct om_msg c = {.type = OM_MSG_CANCEL};
		uint32_t n = w->ncancels > OM_MAX_ITEMS ? OM_MAX_ITEMS : w->ncancels;

		w->poll = NULL;
		c.u.cancel.tasks = w->cancels;
		c.u.cancel.ntasks = n;
		om_info("cancel of %u tasks -> worker '%s'", n, w->name);
		/* Not sent: they go with the next poll. */
		if (om_rpc_reply(r, &c) == 0) {
			memmove(w->cancels, w->cancels + n,
			        (w->ncancels - n) * sizeof(*w->cancels));
			w->ncancels -= n;
		}
		return;
	}
	/* A busy worker has no slot for a task: it keeps its queue. */
	if ((t = w->queue) != NULL && !w->poll_busy) {
		w->poll = NULL;
		w->queue = t->qnext;
		t->qnext = NULL;
		om_info("task %llu of job %llu -> worker '%s' (%u hosts)",
		        (unsigned long long)t->id, (unsigned long long)t->job_id, w->name,
		        t->msg.u.task.nhosts);
		if (om_rpc_reply(r, &t->msg) != 0) {
			/* Not sent: back at the head of the queue for the next poll. */
			t->qnext = w->queue;
			w->queue = t;
			return;
		}
		/* Sent is not received: heartbeats confirm it (master_op_heartbeat). */
		t->delivered_ms = om_now_ms();
	} else if (force) {
		struct om_msg none = {.type = OM_MSG_NOTASK};
		w->poll = NULL;
		om_rpc_reply(r, &none);
	}
}

void
worker_disconnect(struct master *m, struct wconn *w, const char *reason)
{
	struct task *t, *next;

	(void)m;
	if (w->poll != NULL) {
		struct om_msg none = {.type = OM_MSG_NOTASK};
		om_rpc_reply(w->poll, &none);
		w->poll = NULL;
	}
	if (w->gone)
		return;
	w->gone = true;
	w->ncancels = 0; /* its tasks are lost below: nothing left to stop */
	om_warn("worker '%s' (IDC '%s') is gone: %s", w->name, w->idc, reason);
	for (t = m->tasks; t != NULL; t = next) {
		next = t->next;
		if (t->worker == w) {
			char why[OM_MAX_TEXT];
			snprintf(why, sizeof(why), "lost: worker '%s' %s", w->name, reason);
			task_lose(m, t, why);
		}
	}
	w->running = 0;
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
	}
	if (p->kind == PEER_CLIENT) {
		pp = &m->followers;
		while ((f = *pp) != NULL) {
			if (om_rpc_session_user(f->req->session) == p) {
				follower_try(m, f, true);
				*pp = f->next;
				om_free(f);
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
	int64_t now = om_now_ms(), grace = 2 * (int64_t)m->cfg.heartbeat_ms + 1000;
	struct task *t, *next;
	char why[OM_MAX_TEXT];
	uint32_t i;

	p->w->last_ms = now;
	/*
	 * A task delivered a while ago that the worker does not hold never
	 * arrived (the reply was lost with its connection) or belongs to a
	 * process that restarted: its unfinished hosts are lost, not left
	 * running forever.  Queued tasks and fresh deliveries wait.
	 */
	for (t = m->tasks; t != NULL; t = next) {
		bool held = false;
		next = t->next;
		if (t->worker != p->w || t->delivered_ms == 0 || now - t->delivered_ms < grace)
			continue;
		for (i = 0; i < hb->u.heartbeat.ntasks && !held; i++)
			held = hb->u.heartbeat.tasks[i] == t->id;
		if (held)
			continue;
		snprintf(why, sizeof(why),
		         "lost: worker '%s' does not hold task %llu (lost in transit or the worker "
		         "restarted)",
		         p->w->name, (unsigned long long)t->id);
		om_warn("job %llu: %s", (unsigned long long)t->job_id, why);
		task_lose(m, t, why);
	}
	om_rpc_reply(r, &ack);
}

void
master_op_poll(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	struct wconn *w = p->w;
	uint32_t wait = r->msg.u.poll.wait_ms;

	(void)m;
	w->last_ms = om_now_ms();
	if (w->poll != NULL) {
		struct om_msg none = {.type = OM_MSG_NOTASK};
		om_rpc_reply(w->poll, &none);
	}
	w->poll = r;
	w->poll_busy = r->msg.u.poll.busy;
	w->poll_deadline = om_now_ms() + (wait > POLL_HOLD_MAX_MS ? POLL_HOLD_MAX_MS : wait);
	worker_poll_try(w, wait == 0);
}

void
master_op_report(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	const struct om_msg *q = &r->msg;
	struct om_store_chunk *chunks = NULL;
	struct om_store_state *states = NULL;
	struct om_msg ack = {.type = OM_MSG_ACK};
	uint32_t i, nc = 0, ns = 0, ignored = 0;
	struct task *t;
	int rv;

	p->w->last_ms = om_now_ms();
	/*
	 * A report naming a task that went to another worker is refused whole
	 * and audited: nothing from it is stored.  Unknown tasks (declared lost,
	 * or from before a master restart) are acknowledged and dropped, so the
	 * worker's outbox drains.
	 */
	for (i = 0; i < q->u.report.nchunks + q->u.report.nresults; i++) {
		uint64_t tid = i < q->u.report.nchunks
		                       ? q->u.report.chunks[i].task_id
		                       : q->u.report.results[i - q->u.report.nchunks].task_id;
		t = task_find(m, tid);
		if (t != NULL && t->worker != p->w) {
			audit(m, p->who, p->source, "report", "task", "refused",
			      "task %llu of job %llu belongs to worker '%s' (IDC '%s'), not to "
			      "'%s' (IDC '%s')",
			      (unsigned long long)tid, (unsigned long long)t->job_id,
			      t->worker ? t->worker->name : "?", t->worker ? t->worker->idc : "?",
			      p->w->name, p->w->idc);
			reply_error(r, OM_EPERM, "task %llu is not assigned to this worker",
			            (unsigned long long)tid);
			return;
		}
	}
	chunks = om_calloc(q->u.report.nchunks + 1, sizeof(*chunks));
	states = om_calloc(q->u.report.nresults + 1, sizeof(*states));
	if (chunks == NULL || states == NULL) {
		reply_error(r, OM_ENOMEM, "master out of memory");
		goto out;
	}
	for (i = 0; i < q->u.report.nchunks; i++) {
		const struct om_chunk *c = &q->u.report.chunks[i];
		t = task_find(m, c->task_id);
		/* Only the worker a task went to may report for it. */
		if (t == NULL || t->worker != p->w || c->host >= t->msg.u.task.nhosts) {
			ignored++;
			continue;
		}
		chunks[nc].job_id = t->job_id;
		chunks[nc].host = t->msg.u.task.hosts[c->host].name;
		chunks[nc].stream = c->stream;
		chunks[nc].seq = c->seq;
		chunks[nc].data = c->data;
		chunks[nc].len = c->len;
		nc++;
	}
	for (i = 0; i < q->u.report.nresults; i++) {
		const struct om_result *res = &q->u.report.results[i];
		t = task_find(m, res->task_id);
		if (t == NULL || t->worker != p->w || res->host >= t->msg.u.task.nhosts ||
		    !om_host_state_final((int)res->state)) {
			ignored++;
			continue;
		}
		states[ns].job_id = t->job_id;
		states[ns].host = t->msg.u.task.hosts[res->host].name;
		states[ns].state = res->state;
		states[ns].exit_code = res->exit_code;
		states[ns].reason = res->reason;
		states[ns].duration_ms = res->duration_ms;
		states[ns].changed = res->changed;
		states[ns].result = res->data;
		ns++;
	}
	if (ignored > 0)
		om_warn("%s: ignored %u report items for tasks not assigned to it", p->who,
		        ignored);
	if ((rv = om_store_ingest(m->store, chunks, nc, states, ns)) != 0) {
		/* Not acknowledged: the worker keeps the items and sends them again. */
		om_err("cannot store a report from %s: %s", p->who, om_store_errmsg(m->store));
		reply_error(r, OM_EDB, "master database unavailable, retry later");
		goto out;
	}
	ack.u.ack.nchunks = q->u.report.nchunks;
	ack.u.ack.nresults = q->u.report.nresults;
	/* Mark finished hosts before replying: the reply releases r->msg. */
	for (i = 0; i < q->u.report.nresults; i++) {
		const struct om_result *res = &q->u.report.results[i];
		t = task_find(m, res->task_id);
		if (t == NULL || t->worker != p->w || res->host >= t->msg.u.task.nhosts ||
		    !om_host_state_final((int)res->state))
			continue;
		if (!t->final[res->host]) {
			t->final[res->host] = true;
			t->nfinal++;
			jobs_host_final(m, t->job_id, t->jidx[res->host], res->state);
			/* A host key the worker accepted (policy accept-new) is a trust decision. */
			if (res->note != NULL)
				audit(m, p->who, p->source, "hostkey.accept-new",
				      t->msg.u.task.hosts[res->host].name, "ok", "%s", res->note);
		}
	}
	{
		uint64_t touched[64];
		size_t nt = 0, k;
		for (i = 0; i < nc + ns; i++) {
			uint64_t j = i < nc ? chunks[i].job_id : states[i - nc].job_id;
			for (k = 0; k < nt && touched[k] != j; k++)
				;
			if (k == nt && nt < 64)
				touched[nt++] = j;
		}
		om_rpc_reply(r, &ack);
		for (k = 0; k < nt; k++)
			followers_wake(m, touched[k], false);
	}
	/* Forget tasks whose every host is final. */
	{
		struct task *next;
		for (t = m->tasks; t != NULL; t = next) {
			next = t->next;
			if (t->worker == p->w && t->nfinal == t->msg.u.task.nhosts) {
				task_unlink(m, t);
				task_free(t);
			}
		}
	}
	/* Waves: a job whose running wave just finished moves on. */
	for (i = 0; i < ns; i++)
		if (i == 0 || states[i].job_id != states[i - 1].job_id)
			jobs_advance(m, states[i].job_id);
out:
	om_free(chunks);
	om_free(states);
}

/* ------------------------------------------------------------ client ops */

struct wconn *
pick_worker(struct master *m, const char *idc)
{
	struct wconn *w, *best = NULL;

	for (w = m->workers; w != NULL; w = w->next) {
		if (!wconn_live(w) || strcmp(w->idc, idc) != 0)
			continue;
		if (best == NULL || w->running < best->running)
			best = w;
	}
	return best;
}

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
	char err[256];
	int rv;

	if (sub->u.submit.timeout_s > MAX_TIMEOUT_S || sub->u.submit.forks > MAX_FORKS) {
		reply_error(r, OM_ERANGE, "timeout is at most %u s and forks at most %u",
		            MAX_TIMEOUT_S, MAX_FORKS);
		return;
	}
	if (sub->u.submit.batch_pct && sub->u.submit.batch > 100) {
		reply_error(r, OM_ERANGE, "a batch in percent is at most 100%%");
		return;
	}
	/* In-memory job state is bounded: past this, new jobs wait. */
	if (m->njobs >= JOBS_MAX) {
		reply_error(r, OM_EBUSY, "%zu jobs are running, try again later", m->njobs);
		return;
	}
	if (om_selector_parse(sub->u.submit.selector, &sel, err, sizeof(err)) != 0) {
		reply_error(r, OM_EINVAL, "bad selector '%s': %s", sub->u.submit.selector, err);
		return;
	}
	if ((rv = om_store_hosts_load(m->store, &all, &nall)) != 0) {
		reply_error(r, OM_EDB, "cannot read the inventory: %s", om_strerror(rv));
		goto out;
	}
	if ((matched = om_calloc(nall + 1, sizeof(*matched))) == NULL)
		goto nomem;
	for (i = 0; i < nall; i++)
		if (om_selector_match(sel, &all[i]))
			matched[nm++] = all[i]; /* shallow: all[] keeps ownership */
	if (nm == 0) {
		reply_error(r, OM_ENOTFOUND, "selector '%s' matches no host",
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
	if ((rv = modules_check_submit(m, sub, err, sizeof(err))) != 0) {
		audit(m, p->who, p->source, "job.submit", sub->u.submit.selector, "refused", "%s",
		      err);
		reply_error(r, rv, "%s", err);
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
	if ((rv = om_store_job_create(m->store, &spec, matched, nm, &job_id)) != 0) {
		om_err("cannot create a job: %s", om_store_errmsg(m->store));
		reply_error(r, OM_EDB, "cannot record the job: %s", om_strerror(rv));
		goto out;
	}
	om_info("job %llu by %s: module '%s' on '%s' (%zu hosts)", (unsigned long long)job_id,
	        p->who, sub->u.submit.module, sub->u.submit.selector, nm);
	audit(m, p->who, p->source, "job.submit", sub->u.submit.selector, "ok",
	      "job %llu, module '%s', %zu hosts", (unsigned long long)job_id,
	      sub->u.submit.module, nm);
	/* Before the reply, which releases sub. */
	if ((rv = jobs_start(m, job_id, &spec, sub, matched, nm)) != 0) {
		om_err("job %llu: cannot dispatch: %s", (unsigned long long)job_id,
		       om_strerror(rv));
		reply_error(r, rv, "job %llu recorded but not dispatched: %s",
		            (unsigned long long)job_id, om_strerror(rv));
		goto out;
	}
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
	uint32_t wait = r->msg.u.follow.wait_ms;

	(void)p;
	if ((f = om_calloc(1, sizeof(*f))) == NULL) {
		reply_error(r, OM_ENOMEM, "master out of memory");
		return;
	}
	f->req = r;
	f->job_id = r->msg.u.follow.job_id;
	f->cursor = r->msg.u.follow.cursor;
	f->files = r->msg.u.follow.files;
	f->deadline = om_now_ms() + (wait > FOLLOW_HOLD_MAX_MS ? FOLLOW_HOLD_MAX_MS : wait);
	if (follower_try(m, f, wait == 0)) {
		om_free(f);
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
			reply_error(r, OM_EINVAL, "host '%s' needs a valid IDC", hs[i].name);
			return;
		}
		if (hs[i].addr == NULL || hs[i].addr[0] == '\0' || hs[i].addr[0] == '-') {
			reply_error(r, OM_EINVAL, "host '%s' needs a valid address", hs[i].name);
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
	size_t n = 0, i;
	int rv;

	(void)p;
	if ((rv = om_store_workers_load(m->store, &ws, &n)) != 0) {
		reply_error(r, OM_EDB, "cannot read workers: %s", om_strerror(rv));
		return;
	}
	for (i = 0; i < n; i++) {
		struct wconn *w = wconn_find(m, ws[i].name);
		if (w != NULL && wconn_live(w)) {
			ws[i].connected = true;
			ws[i].running = w->running;
		}
	}
	rep.u.workers.workers = ws;
	rep.u.workers.nworkers = (uint32_t)n;
	om_rpc_reply(r, &rep);
	om_workers_free(ws, n);
}

/* ----------------------------------------------------------- the loop */

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
housekeeping(struct master *m)
{
	int64_t now = om_now_ms();
	int64_t dead_after = 3 * (int64_t)m->cfg.heartbeat_ms;
	struct wconn *w;

	for (w = m->workers; w != NULL; w = w->next) {
		if (w->poll != NULL && now >= w->poll_deadline)
			worker_poll_try(w, true);
		if (!w->gone && w->last_ms > 0 && now - w->last_ms > dead_after) {
			char why[128];
			snprintf(why, sizeof(why), "missed 3 heartbeats (silent for %lld s)",
			         (long long)((now - w->last_ms) / 1000));
			worker_disconnect(m, w, why);
		}
	}
	followers_wake(m, 0, true);
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
		p->w->suspect = true;
		om_info("worker '%s': connection closed, no new tasks until it is back", p->w->name);
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
	return 0;
}

void
master_close(struct master *m)
{
	struct wconn *w;
	struct task *t;
	struct follower *f;

	/* The database first: it is the only durable state. */
	om_store_close(m->store);
	m->store = NULL;
	/* Closing the servers drops every held request and session. */
	om_rpc_server_close(m->wsrv);
	om_rpc_server_close(m->csrv);
	while ((f = m->followers) != NULL) {
		m->followers = f->next;
		om_free(f);
	}
	while ((t = m->tasks) != NULL) {
		m->tasks = t->next;
		task_free(t);
	}
	jobs_free_all(m);
	while ((w = m->workers) != NULL) {
		m->workers = w->next;
		om_free(w->cancels);
		om_free(w);
	}
	om_wipe(&m->key, sizeof(m->key));
	pthread_mutex_destroy(&m->wake_lock);
	pthread_cond_destroy(&m->wake_cond);
}
