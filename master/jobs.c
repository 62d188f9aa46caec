/*
 * Jobs on the master: the wave arithmetic of rolling jobs (SUBMIT batch and
 * max_fail) and cancel.  Where each host runs, which wave is running and
 * what a cancel withdraws live in PostgreSQL (store_dispatch.c), so any
 * master can move a job on or stop it.
 */
#include <stdio.h>
#include <string.h>

#include "jobs.h"
#include "master_int.h"

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

void
master_op_job_cancel(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	struct om_msg done = {.type = OM_MSG_DONE};
	struct om_job_info info;
	uint64_t id = r->msg.u.by_id.id, now = 0, asked = 0;
	char **workers = NULL;
	size_t nworkers = 0;
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
	if ((rv = om_store_job_cancel(m->store, id, reason, &now, &asked, &workers, &nworkers)) !=
	    0) {
		om_err("job %llu: cancel failed: %s", (unsigned long long)id, om_strerror(rv));
		audit(m, p->who, p->source, "job.cancel", target, "failed", "%s", om_strerror(rv));
		reply_error(r, rv, "cannot cancel job %llu: %s", (unsigned long long)id,
		            om_strerror(rv));
		goto out;
	}
	workers_wake(m, workers, nworkers);
	jobs_advance(m, id);
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
	om_store_names_free(workers, nworkers);
	om_job_info_release(&info);
}
