/*
 * The master's PostgreSQL store: the only durable state.
 *
 * One struct om_store wraps one libpq connection and is used by one thread
 * (the master's core loop).  Every statement is parameterized.  Writes that
 * belong together are one transaction; output ingest is pipelined (one
 * network round trip per batch, never one per line).
 *
 * Job events (output chunks, final host states, job completion) carry a
 * per-job sequence number allocated under the job row's lock, so a follower
 * that reads "events with id > cursor" in id order never misses one that
 * commits later, even with several masters writing.
 */
#ifndef OM_MASTER_STORE_H
#define OM_MASTER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "om/msg.h"

struct om_store;

/* Connects (conninfo as libpq takes it) and applies pending migrations. */
int om_store_open(struct om_store **out, const char *conninfo, char *err, size_t errlen);
void om_store_close(struct om_store *st);
/* Schema version after migrations (the highest applied). */
int om_store_schema_version(struct om_store *st);

/* Inserts or updates hosts by name (groups replaced).  All or nothing. */
int om_store_hosts_upsert(struct om_store *st, const struct om_host *hosts, size_t n);
/* All hosts ordered by name; caller frees with om_hosts_free(*hosts, *n). */
int om_store_hosts_load(struct om_store *st, struct om_host **hosts, size_t *n);

/* Records a worker presenting a key: upsert by name, last_seen = now. */
int om_store_worker_seen(struct om_store *st, const char *name, const char *idc,
                         const char *fingerprint, uint64_t *worker_id);
/* All known workers ordered by IDC, name; connected/running left false/0.
 * Caller frees with om_workers_free (om/msg.h). */
int om_store_workers_load(struct om_store *st, struct om_worker_info **out, size_t *n);

struct om_job_spec {
	const char *user; /* who submitted (token name for now) */
	const char *selector;
	const char *module;
	const struct om_kv *params;
	size_t nparams;
	uint32_t timeout_s;
	uint32_t forks;
};

/*
 * One transaction: the job row and one job_hosts row per host (state
 * queued, with the host's IDC, address, port and user as resolved now).
 */
int om_store_job_create(struct om_store *st, const struct om_job_spec *spec,
                        const struct om_host *hosts, size_t n, uint64_t *job_id);

/* One transaction: a task row; its hosts (by name) become dispatched. */
int om_store_task_create(struct om_store *st, uint64_t job_id, const char *idc, const char *worker,
                         const char *const *hosts, size_t n, uint64_t *task_id);

struct om_store_chunk {
	uint64_t job_id;
	const char *host;
	uint32_t stream;
	uint64_t seq;
	const uint8_t *data;
	size_t len;
};

struct om_store_state {
	uint64_t job_id;
	const char *host;
	uint32_t state; /* enum om_host_state; final states end the host */
	int32_t exit_code;
	const char *reason; /* may be NULL */
	uint64_t duration_ms;
};

/*
 * One pipelined transaction.  Each chunk is stored once per (job, host,
 * stream, seq): a duplicate is ignored.  A state moves a host that is not
 * final yet; a final state appends a state event.  A job whose hosts are all
 * final is marked done and gets a job-done event.  Returns 0 only when the
 * whole batch is durable: only then may it be acknowledged.
 */
int om_store_ingest(struct om_store *st, const struct om_store_chunk *chunks, size_t nchunks,
                    const struct om_store_state *states, size_t nstates);

/*
 * Events of a job with id > cursor in id order, at most limit.  *done is
 * true when the job is finished and no event after the returned ones
 * exists.  Caller frees with om_events_free (om/msg.h).  OM_ENOTFOUND: no such job.
 */
int om_store_events_read(struct om_store *st, uint64_t job_id, uint64_t cursor, size_t limit,
                         struct om_event **out, size_t *n, bool *done);

/* Last error text from libpq (for logs); valid until the next call. */
const char *om_store_errmsg(struct om_store *st);

#endif
