/*
 * Jobs on the master while they run: rolling waves (SUBMIT batch and
 * max_fail), dispatch of each wave per IDC, and cancel.
 *
 * A job is in memory from submit until its last host is final.  Hosts are
 * dispatched one wave at a time; only when every host of the running wave
 * is final is the next one dispatched, or, when the wave failed more than
 * max_fail allows, every later host is skipped.  A cancel withdraws what
 * workers have not received and asks them to stop what they have (CANCEL as
 * a POLL reply); their hosts end through the worker's own reports.
 *
 * Everything here runs on the core thread.  Final states come in from three
 * places (worker reports, lost tasks, and what this file decides); each
 * records the state first, then calls jobs_host_final per host and
 * jobs_advance once, so a decision always sees durable states.
 */
#include <stdio.h>
#include <string.h>

#include "jobs.h"
#include "master_int.h"

#define REASON_MAX 160 /* one line per unreachable host: "no connected worker in IDC ..." */
#define NO_JIDX    UINT32_MAX

/* ------------------------------------------------------------ wave arithmetic */

uint32_t
om_wave_size(uint32_t n, uint32_t batch, bool pct)
{
	uint64_t s;

	if (n == 0)
		return 0;
	if (batch == 0)
		return n;
	s = pct ? (uint64_t)n * batch / 100 : batch;
	if (s < 1)
		s = 1;
	return s > n ? n : (uint32_t)s;
}

uint32_t
om_wave_count(uint32_t n, uint32_t size)
{
	return size == 0 ? 0 : n / size + (n % size != 0);
}

uint32_t
om_wave_len(uint32_t n, uint32_t size, uint32_t k)
{
	uint64_t first = (uint64_t)k * size;

	if (size == 0 || first >= n)
		return 0;
	return n - first < size ? (uint32_t)(n - first) : size;
}

bool
om_wave_stop(uint32_t failed, uint32_t total, bool has_max_fail, uint32_t max_fail)
{
	/* Integers only: "more than max_fail percent" without rounding. */
	return has_max_fail && total > 0 && (uint64_t)failed * 100 > (uint64_t)max_fail * total;
}

bool
om_wave_failed_state(uint32_t state)
{
	return state == OM_HS_FAILED || state == OM_HS_UNREACHABLE || state == OM_HS_TIMEOUT ||
	       state == OM_HS_LOST;
}

/* ------------------------------------------------------------------ jobs */

static struct job *
job_find(struct master *m, uint64_t id)
{
	struct job *j;

	for (j = m->jobs; j != NULL; j = j->next)
		if (j->id == id)
			return j;
	return NULL;
}

static void
job_free(struct job *j)
{
	om_free(j->module);
	om_kvs_free(j->params, j->nparams);
	om_free(j->become_user);
	om_hosts_free(j->hosts, j->nhosts);
	om_free(j->state);
	om_free(j);
}

static void
job_end(struct master *m, struct job *j)
{
	struct job **pp;

	for (pp = &m->jobs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			m->njobs--;
			break;
		}
	om_debug("job %llu: every host is final", (unsigned long long)j->id);
	job_free(j);
}

void
jobs_free_all(struct master *m)
{
	struct job *j;

	while ((j = m->jobs) != NULL) {
		m->jobs = j->next;
		job_free(j);
	}
	m->njobs = 0;
}

static uint32_t
wave_first(const struct job *j)
{
	return j->wave * j->wave_size;
}

static uint32_t
wave_len(const struct job *j)
{
	return om_wave_len(j->nhosts, j->wave_size, j->wave);
}

/* Counts the running wave's final and failed hosts (after it changes). */
static void
wave_recount(struct job *j)
{
	uint32_t i, first = wave_first(j), len = wave_len(j);

	j->wave_final = j->wave_failed = 0;
	for (i = first; i < first + len; i++) {
		if (!om_host_state_final(j->state[i]))
			continue;
		j->wave_final++;
		if (om_wave_failed_state(j->state[i]))
			j->wave_failed++;
	}
}

void
jobs_host_final(struct master *m, uint64_t job_id, uint32_t jidx, uint32_t state)
{
	struct job *j = job_find(m, job_id);
	uint32_t first;

	/* The first final state wins, as in the store. */
	if (j == NULL || jidx >= j->nhosts || om_host_state_final(j->state[jidx]) ||
	    !om_host_state_final((int)state))
		return;
	j->state[jidx] = (uint8_t)state;
	j->nfinal++;
	first = wave_first(j);
	if (jidx >= first && jidx - first < wave_len(j)) {
		j->wave_final++;
		if (om_wave_failed_state(state))
			j->wave_failed++;
	}
}

/* Builds the TASK for hosts idx[0..n) of j (one IDC) and queues it on w. */
static int
task_dispatch(struct master *m, struct job *j, struct wconn *w, const uint32_t *idx, uint32_t n)
{
	struct om_task *tk;
	struct task *t;
	const char **names;
	uint32_t i;
	int rv;

	if ((names = om_calloc(n, sizeof(*names))) == NULL)
		return OM_ENOMEM;
	for (i = 0; i < n; i++)
		names[i] = j->hosts[idx[i]].name;
	if ((t = om_calloc(1, sizeof(*t))) == NULL) {
		om_free(names);
		return OM_ENOMEM;
	}
	rv = om_store_task_create(m->store, j->id, w->idc, w->name, names, n, &t->id);
	om_free(names);
	if (rv != 0) {
		om_free(t);
		return rv;
	}
	t->job_id = j->id;
	t->worker = w;
	t->msg.type = OM_MSG_TASK;
	tk = &t->msg.u.task;
	tk->job_id = j->id;
	tk->task_id = t->id;
	tk->timeout_s = j->timeout_s;
	tk->forks = j->forks;
	tk->become = j->become;
	tk->check = j->check;
	tk->module = om_strdup(j->module);
	tk->hosts = om_calloc(n, sizeof(struct om_host));
	tk->params = om_calloc(j->nparams + 1, sizeof(struct om_kv));
	t->final = om_calloc(n, sizeof(bool));
	t->jidx = om_calloc(n, sizeof(uint32_t));
	rv = (tk->module && tk->hosts && tk->params && t->final && t->jidx) ? 0 : OM_ENOMEM;
	if (rv == 0 && j->become_user != NULL &&
	    (tk->become_user = om_strdup(j->become_user)) == NULL)
		rv = OM_ENOMEM;
	for (i = 0; rv == 0 && i < n; i++) {
		rv = om_host_copy(&tk->hosts[i], &j->hosts[idx[i]]);
		if (rv == 0)
			tk->nhosts++;
		t->jidx[i] = idx[i];
	}
	for (i = 0; rv == 0 && i < j->nparams; i++) {
		struct om_kv *kv = &tk->params[i];
		kv->key = om_strdup(j->params[i].key);
		kv->val = j->params[i].val ? om_strdup(j->params[i].val) : NULL;
		tk->nparams++;
		if (kv->key == NULL || (kv->val == NULL && j->params[i].val != NULL))
			rv = OM_ENOMEM;
	}
	if (rv != 0) {
		/* The task row exists with its hosts dispatched: the caller marks them. */
		task_free(t);
		return rv;
	}
	t->next = m->tasks;
	m->tasks = t;
	/* FIFO: append at the tail of the worker's queue. */
	{
		struct task **pp = &w->queue;
		while (*pp != NULL)
			pp = &(*pp)->qnext;
		*pp = t;
	}
	w->running++;
	for (i = 0; i < n; i++)
		j->state[idx[i]] = OM_HS_DISPATCHED;
	worker_poll_try(w, false);
	return 0;
}

/* Dispatches the queued hosts of the running wave: one task per IDC. */
static void
wave_dispatch(struct master *m, struct job *j)
{
	uint32_t first = wave_first(j), len = wave_len(j), i, k, ng, nu = 0;
	struct om_store_state *unreach = NULL;
	uint32_t *group = NULL, *uidx = NULL;
	char(*reasons)[REASON_MAX] = NULL;
	bool *done = NULL;
	int rv;

	group = om_calloc(len + 1, sizeof(*group));
	uidx = om_calloc(len + 1, sizeof(*uidx));
	done = om_calloc(len + 1, sizeof(*done));
	unreach = om_calloc(len + 1, sizeof(*unreach));
	reasons = om_calloc(len + 1, sizeof(*reasons));
	if (group == NULL || uidx == NULL || done == NULL || unreach == NULL || reasons == NULL) {
		om_err("job %llu: out of memory dispatching wave %u", (unsigned long long)j->id,
		       j->wave + 1);
		goto out;
	}
	for (i = 0; i < len; i++) {
		const char *idc = j->hosts[first + i].idc;
		struct wconn *w;

		if (done[i] || j->state[first + i] != OM_HS_QUEUED)
			continue;
		for (ng = 0, k = i; k < len; k++)
			if (!done[k] && j->state[first + k] == OM_HS_QUEUED &&
			    strcmp(j->hosts[first + k].idc, idc) == 0) {
				group[ng++] = first + k;
				done[k] = true;
			}
		w = pick_worker(m, idc);
		if (w != NULL && (rv = task_dispatch(m, j, w, group, ng)) == 0)
			continue;
		if (w == NULL)
			om_warn("job %llu: no connected worker in IDC '%s' for %u hosts",
			        (unsigned long long)j->id, idc, ng);
		for (k = 0; k < ng; k++) {
			snprintf(reasons[nu], sizeof(reasons[nu]),
			         w == NULL ? "no connected worker in IDC '%s'"
			                   : "cannot dispatch to IDC '%s'",
			         idc);
			unreach[nu].job_id = j->id;
			unreach[nu].host = j->hosts[group[k]].name;
			unreach[nu].state = OM_HS_UNREACHABLE;
			unreach[nu].exit_code = -1;
			unreach[nu].reason = reasons[nu];
			uidx[nu++] = group[k];
		}
	}
	ingest_states(m, unreach, nu);
	for (k = 0; k < nu; k++)
		jobs_host_final(m, j->id, uidx[k], OM_HS_UNREACHABLE);
out:
	om_free(reasons);
	om_free(unreach);
	om_free(done);
	om_free(uidx);
	om_free(group);
}

/* Every host after the running wave becomes skipped, with why. */
static void
skip_rest(struct master *m, struct job *j)
{
	uint32_t from = wave_first(j) + wave_len(j), len = wave_len(j), i, n = 0;
	struct om_store_state *st;
	char reason[REASON_MAX];

	snprintf(reason, sizeof(reason),
	         "skipped: wave %u had %u of %u hosts failed (%u%%), above --max-fail %u%%",
	         j->wave + 1, j->wave_failed, len, (unsigned)((uint64_t)j->wave_failed * 100 / len),
	         j->max_fail);
	om_warn("job %llu: %s; %u later hosts skipped", (unsigned long long)j->id, reason + 9,
	        j->nhosts - from);
	if ((st = om_calloc(j->nhosts - from + 1, sizeof(*st))) != NULL) {
		for (i = from; i < j->nhosts; i++) {
			if (j->state[i] != OM_HS_QUEUED)
				continue;
			st[n].job_id = j->id;
			st[n].host = j->hosts[i].name;
			st[n].state = OM_HS_SKIPPED;
			st[n].exit_code = -1;
			st[n].reason = reason;
			n++;
		}
		ingest_states(m, st, n);
		om_free(st);
	}
	/* Even unrecorded (out of memory), they are done here: the job must end. */
	for (i = from; i < j->nhosts; i++)
		jobs_host_final(m, j->id, i, OM_HS_SKIPPED);
}

void
jobs_advance(struct master *m, uint64_t job_id)
{
	struct job *j = job_find(m, job_id);

	while (j != NULL) {
		if (j->nfinal >= j->nhosts) {
			job_end(m, j);
			return;
		}
		/* A cancelled job only waits for what workers still stop. */
		if (j->cancelled || j->wave_final < wave_len(j) || j->wave + 1 >= j->nwaves)
			return;
		if (om_wave_stop(j->wave_failed, wave_len(j), j->has_max_fail, j->max_fail)) {
			skip_rest(m, j);
			continue;
		}
		j->wave++;
		wave_recount(j);
		om_info("job %llu: wave %u of %u (%u hosts)", (unsigned long long)j->id,
		        j->wave + 1, j->nwaves, wave_len(j));
		wave_dispatch(m, j);
	}
}

int
jobs_start(struct master *m, uint64_t job_id, const struct om_job_spec *spec,
           const struct om_msg *sub, const struct om_host *hosts, size_t n)
{
	struct job *j;
	size_t i;
	int rv = 0;

	if (n > OM_MAX_HOSTS)
		return OM_ERANGE;
	if ((j = om_calloc(1, sizeof(*j))) == NULL)
		return OM_ENOMEM;
	j->id = job_id;
	j->timeout_s = spec->timeout_s;
	j->forks = spec->forks;
	j->become = sub->u.submit.become;
	j->check = sub->u.submit.check;
	j->has_max_fail = sub->u.submit.has_max_fail;
	j->max_fail = sub->u.submit.max_fail;
	j->module = om_strdup(spec->module);
	j->params = om_calloc(spec->nparams + 1, sizeof(*j->params));
	j->hosts = om_calloc(n + 1, sizeof(*j->hosts));
	j->state = om_calloc(n + 1, sizeof(*j->state));
	if (j->module == NULL || j->params == NULL || j->hosts == NULL || j->state == NULL)
		rv = OM_ENOMEM;
	if (rv == 0 && sub->u.submit.become_user != NULL &&
	    (j->become_user = om_strdup(sub->u.submit.become_user)) == NULL)
		rv = OM_ENOMEM;
	for (i = 0; rv == 0 && i < spec->nparams; i++) {
		struct om_kv *kv = &j->params[i];
		kv->key = om_strdup(spec->params[i].key);
		kv->val = spec->params[i].val ? om_strdup(spec->params[i].val) : NULL;
		j->nparams++;
		if (kv->key == NULL || (kv->val == NULL && spec->params[i].val != NULL))
			rv = OM_ENOMEM;
	}
	for (i = 0; rv == 0 && i < n; i++)
		if ((rv = om_host_copy(&j->hosts[i], &hosts[i])) == 0)
			j->nhosts++;
	if (rv != 0) {
		job_free(j);
		return rv;
	}
	j->wave_size = om_wave_size(j->nhosts, sub->u.submit.batch, sub->u.submit.batch_pct);
	j->nwaves = om_wave_count(j->nhosts, j->wave_size);
	j->next = m->jobs;
	m->jobs = j;
	m->njobs++;
	if (j->nwaves > 1)
		om_info("job %llu: %u waves of up to %u hosts, wave 1 of %u",
		        (unsigned long long)job_id, j->nwaves, j->wave_size, j->nwaves);
	wave_dispatch(m, j);
	/* A first wave that could not go anywhere (no workers) moves on at once. */
	jobs_advance(m, job_id);
	return 0;
}

/* ---------------------------------------------------------------- cancel */

/* Queues a CANCEL of task id for w (once); false when out of memory. */
static bool
cancel_add(struct wconn *w, uint64_t id)
{
	uint32_t i;

	for (i = 0; i < w->ncancels; i++)
		if (w->cancels[i] == id)
			return true;
	if (w->ncancels == w->cancels_cap) {
		uint32_t cap = w->cancels_cap ? w->cancels_cap * 2 : 16;
		uint64_t *c = om_realloc(w->cancels, cap * sizeof(*c));
		if (c == NULL)
			return false;
		w->cancels = c;
		w->cancels_cap = cap;
	}
	w->cancels[w->ncancels++] = id;
	return true;
}

/*
 * Cancels what is left of job id: *now hosts became cancelled here, *asked
 * hosts are on workers that are asked to stop them.
 */
static int
job_cancel(struct master *m, uint64_t id, const char *reason, uint64_t *now, uint64_t *asked)
{
	struct job *j = job_find(m, id);
	struct task *t, *next, *withdrawn = NULL;
	struct om_store_state *st = NULL;
	uint32_t *jidx = NULL, i;
	char **names = NULL;
	size_t nnames = 0, cap = 0, n = 0, k;
	int rv = 0;

	*now = *asked = 0;
	for (t = m->tasks; t != NULL; t = t->next)
		if (t->job_id == id && t->delivered_ms == 0)
			cap += t->msg.u.task.nhosts;
	if (j != NULL) {
		cap += j->nhosts;
	} else {
		/* Not in memory (submitted before this master started): the
		 * store knows which hosts are still open. */
		if ((rv = om_store_job_open_hosts(m->store, id, &names, &nnames)) != 0)
			return rv;
		cap += nnames;
	}
	st = om_calloc(cap + 1, sizeof(*st));
	jidx = om_calloc(cap + 1, sizeof(*jidx));
	if (st == NULL || jidx == NULL) {
		rv = OM_ENOMEM;
		goto out;
	}
	for (t = m->tasks; t != NULL; t = next) {
		next = t->next;
		if (t->job_id != id)
			continue;
		if (t->delivered_ms != 0) {
			/* Received by the worker: it reports these hosts cancelled. */
			if (t->worker == NULL || !cancel_add(t->worker, t->id)) {
				om_warn("job %llu: cannot queue a cancel of task %llu",
				        (unsigned long long)id, (unsigned long long)t->id);
				continue;
			}
			*asked += t->msg.u.task.nhosts - t->nfinal;
			worker_poll_try(t->worker, false);
			continue;
		}
		/* Still queued here: withdrawn, its hosts end now. */
		for (i = 0; i < t->msg.u.task.nhosts; i++) {
			if (t->final[i])
				continue;
			st[n].host = t->msg.u.task.hosts[i].name;
			jidx[n++] = t->jidx[i];
		}
		task_unlink(m, t);
		t->next = withdrawn;
		withdrawn = t;
	}
	if (j != NULL) {
		j->cancelled = true;
		for (i = 0; i < j->nhosts; i++) {
			if (j->state[i] != OM_HS_QUEUED)
				continue;
			st[n].host = j->hosts[i].name;
			jidx[n++] = i;
		}
	}
	for (k = 0; k < nnames; k++) {
		st[n].host = names[k];
		jidx[n++] = NO_JIDX;
	}
	for (k = 0; k < n; k++) {
		st[k].job_id = id;
		st[k].state = OM_HS_CANCELLED;
		st[k].exit_code = -1;
		st[k].reason = reason;
	}
	ingest_states(m, st, n);
	for (k = 0; k < n; k++)
		if (jidx[k] != NO_JIDX)
			jobs_host_final(m, id, jidx[k], OM_HS_CANCELLED);
	*now = n;
out:
	/* After the ingest: st points into these. */
	while ((t = withdrawn) != NULL) {
		withdrawn = t->next;
		task_free(t);
	}
	for (k = 0; k < nnames; k++)
		om_free(names[k]);
	om_free(names);
	om_free(jidx);
	om_free(st);
	jobs_advance(m, id);
	return rv;
}

void
master_op_job_cancel(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	struct om_msg done = {.type = OM_MSG_DONE};
	struct om_job_info info;
	uint64_t id = r->msg.u.by_id.id, now = 0, asked = 0;
	char target[32], reason[sizeof(p->who) + 16], text[128];
	int rv;

	snprintf(target, sizeof(target), "job %llu", (unsigned long long)id);
	rv = om_store_job_get(m->store, id, &info);
	if (rv == OM_ENOTFOUND) {
		reply_error(r, OM_ENOTFOUND, "no job %llu", (unsigned long long)id);
		return;
	}
	if (rv != 0) {
		om_err("cannot read job %llu: %s", (unsigned long long)id,
		       om_store_errmsg(m->store));
		reply_error(r, OM_EDB, "master database unavailable, retry later");
		return;
	}
	/* The submitter is recorded as its "user 'x'", the same text as p->who. */
	if (!(p->scopes & OM_SCOPE_ADMIN) && strcmp(info.created_by, p->who) != 0) {
		audit(m, p->who, p->source, "job.cancel", target, "refused",
		      "submitted by %s; only the submitter or an administrator may cancel it",
		      info.created_by);
		reply_error(r, OM_EPERM,
		            "job %llu was submitted by %s: only the submitter or an administrator "
		            "may cancel it",
		            (unsigned long long)id, info.created_by);
		goto out;
	}
	if (info.done) {
		reply_error(r, OM_EINVAL, "job %llu already finished", (unsigned long long)id);
		goto out;
	}
	snprintf(reason, sizeof(reason), "cancelled by %s", p->who);
	if ((rv = job_cancel(m, id, reason, &now, &asked)) != 0) {
		om_err("job %llu: cancel failed: %s", (unsigned long long)id, om_strerror(rv));
		audit(m, p->who, p->source, "job.cancel", target, "failed", "%s", om_strerror(rv));
		reply_error(r, rv, "cannot cancel job %llu: %s", (unsigned long long)id,
		            om_strerror(rv));
		goto out;
	}
	om_info("job %llu cancelled by %s: %llu hosts cancelled, %llu stopping on workers",
	        (unsigned long long)id, p->who, (unsigned long long)now, (unsigned long long)asked);
	audit(m, p->who, p->source, "job.cancel", target, "ok",
	      "%llu hosts cancelled, %llu stopping on workers", (unsigned long long)now,
	      (unsigned long long)asked);
	snprintf(text, sizeof(text), "job %llu: %llu hosts cancelled, %llu stopping on workers",
	         (unsigned long long)id, (unsigned long long)now, (unsigned long long)asked);
	done.u.done.count = now + asked;
	done.u.done.text = text;
	om_rpc_reply(r, &done);
out:
	om_job_info_release(&info);
}
