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
/*
 * Hosts a selector's positive terms can name (om_selector_filter): those
 * whose name is one of names, whose IDC is one of idcs, or in one of groups.
 * A superset of what the selector matches: callers still match each host.
 */
struct om_host_filter {
	const char **names, **idcs, **groups;
	size_t nnames, nidcs, ngroups;
};
/* As om_store_hosts_load, only the hosts f lets through (f NULL: all of them). */
int om_store_hosts_load_filtered(struct om_store *st, const struct om_host_filter *f,
                                 struct om_host **hosts, size_t *n);

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
	bool become, check;
	/* --retry-lost.  The job retries lost hosts also when the catalog says
	 * its module is idempotent (decided and recorded by om_store_job_create). */
	bool retry_lost;
	const char *become_user; /* NULL: root */
	uint32_t wave_size;      /* hosts per wave; 0: all */
	uint32_t nwaves;         /* 0: 1 */
	bool has_max_fail;
	uint32_t max_fail; /* percent */
	const char *batch; /* the batch option as given ("10", "25%", "0"); NULL: not recorded */
};

/*
 * One transaction: the job row and one job_hosts row per host (state
 * queued, with the host's IDC, address, port and user as resolved now).
 * The job retries lost hosts when spec->retry_lost or when the module is
 * idempotent in the catalog at this moment; jobs.retry_reason says which.
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
	uint32_t attempt; /* the host's run this chunk belongs to; 0 means 1 */
};

struct om_store_state {
	uint64_t job_id;
	const char *host;
	uint32_t state; /* enum om_host_state; final states end the host */
	int32_t exit_code;
	const char *reason; /* may be NULL */
	uint64_t duration_ms;
	bool changed;       /* final states: the module changed the host */
	const char *result; /* final states: NULL or a JSON object (anything else is dropped) */
	uint64_t task_id;   /* a worker's report: its task (see om_store_ingest); 0: master-made */
};

/*
 * One pipelined transaction.  Each chunk is stored once per (job, host,
 * stream, seq): a duplicate is ignored.  Stream 3 chunks (OM_STREAM_FILE) are
 * the artifact store: the bytes of fetched files, kept like output.  A state
 * moves a host that is not final yet; a final state appends a state event
 * and keeps changed and result on the host's row.  An ok result of a job of
 * module "facts" becomes the facts of that inventory host.  A job whose
 * hosts are all final is marked done and gets a job-done event.  Returns 0
 * only when the whole batch is durable: only then may it be acknowledged.
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

/* om_store_events_query flags. */
#define OM_EVENTS_FILES 1u /* include stream 3 (fetched file bytes), left out otherwise */

struct om_job_scope;
/*
 * As om_store_events_read, which is this without flags or scope: output
 * events of stream 3 only with OM_EVENTS_FILES; with a scope (may be NULL),
 * only events of hosts in it, and the job's end.  State events carry changed
 * and result (caller frees with om_events_free).  *next (may be NULL): the
 * cursor for the next call.  It can move with no events returned (ids
 * burnt or out of scope); *n == 0 with *next > cursor and !*done means
 * "call again from *next", not "nothing more yet".
 */
int om_store_events_query(struct om_store *st, uint64_t job_id, uint64_t cursor, size_t limit,
                          unsigned flags, const struct om_job_scope *scope,
                          struct om_event **out, size_t *n, bool *done, uint64_t *next);

/* ---------------------------------------------------------------- dispatch (store_dispatch.c) */

/*
 * PostgreSQL holds all dispatch state; every function here is one
 * transaction and may run on any master.  A worker is live when it is
 * connected to some master and was heard from within live_ms
 * (om_store_set_live_ms, default 15 s) and its key is accepted.
 */
void om_store_set_live_ms(struct om_store *st, int64_t live_ms);
void om_store_names_free(char **v, size_t n);

/* The worker spoke to master (connected, alive now); offline: its session with master ended. */
int om_store_worker_alive(struct om_store *st, const char *name, const char *master);
int om_store_worker_offline(struct om_store *st, const char *name, const char *master);

/*
 * Moves a job on: the queued hosts of its running wave without a task get
 * one task per IDC on the least loaded live worker (or wait, reason
 * "pending: no live worker in IDC 'x'"); a finished wave starts the next
 * one, or skips every later host when it failed more than --max-fail; a
 * job whose hosts are all final is done.  Nothing for a done or cancelled
 * job.  *workers (names, caller frees with om_store_names_free; may be NULL)
 * gets the workers that received a task; they are also NOTIFYed.
 */
int om_store_job_advance(struct om_store *st, uint64_t job_id, char ***workers, size_t *nworkers);

/*
 * A worker's poll in one round trip: up to max_cancels delivered tasks of
 * worker to stop (each sent again after 10 s while still delivered; caller
 * frees *ids), and when claim is set and there are none, its oldest queued
 * task, now delivered by master.  0 with *n > 0: cancels only; 0 otherwise:
 * that task as a TASK message in *out (caller releases); OM_ENOTFOUND:
 * nothing.
 */
int om_store_worker_poll(struct om_store *st, const char *worker, const char *master, bool claim,
                         size_t max_cancels, uint64_t **ids, size_t *n, struct om_msg *out);
/* A claimed task whose TASK could not be sent goes back to queued. */
int om_store_task_unclaim(struct om_store *st, uint64_t task_id);

/* What a report about a task needs: never changes once the task exists. */
struct om_task_meta {
	uint64_t id, job_id;
	char *worker;
	char **hosts; /* index i: the task's host i */
	uint32_t nhosts;
	uint32_t attempt;
};
void om_task_meta_release(struct om_task_meta *t);
/* OM_ENOTFOUND: no such task. */
int om_store_task_meta(struct om_store *st, uint64_t task_id, struct om_task_meta *out);
/* Tasks among ids whose hosts are all final become done. */
int om_store_tasks_settle(struct om_store *st, const uint64_t *ids, size_t n);

/*
 * A heartbeat: the hosts of held tasks of worker that were dispatched are
 * running; *missing (caller frees) gets the tasks delivered to worker more
 * than grace_ms ago that it does not hold.
 */
int om_store_worker_holds(struct om_store *st, const char *worker, const uint64_t *held,
                          size_t nheld, int64_t grace_ms, uint64_t **missing, size_t *nmissing);
/*
 * Tasks that will not report: their unfinished hosts become lost with
 * reason, or, for jobs that retry lost hosts (--retry-lost or an idempotent
 * module, see om_store_job_create), queued again for another run (at most 3
 * runs per host, each recorded in job_host_attempts).  *jobs (caller
 * frees) gets the jobs touched, to advance; *lost and *retried the counts.
 */
int om_store_tasks_lose(struct om_store *st, const uint64_t *ids, size_t n, const char *reason,
                        uint64_t **jobs, size_t *njobs, uint64_t *lost, uint64_t *retried);

/* An open task whose worker is not live. */
struct om_orphan {
	uint64_t task_id;
	bool delivered;  /* else still queued: it never ran */
	bool stale;      /* not heard from within live_ms (else only disconnected) */
	int64_t silent_s; /* since the worker was last heard from; -1: never */
	char worker[OM_MAX_NAME + 1];
};
/* At most 1000; caller frees *out. */
int om_store_tasks_orphaned(struct om_store *st, struct om_orphan **out, size_t *n);
/* Queued (never delivered) tasks among ids are withdrawn, their hosts queued again; *jobs to advance. */
int om_store_tasks_unassign(struct om_store *st, const uint64_t *ids, size_t n, uint64_t **jobs,
                            size_t *njobs);
/* Running jobs with hosts waiting for a task, or all hosts final (at most max); caller frees. */
int om_store_jobs_open(struct om_store *st, size_t max, uint64_t **jobs, size_t *njobs);
/* Hosts pending longer than pending_ms become unreachable; *ended counts them. */
int om_store_pending_expire(struct om_store *st, int64_t pending_ms, uint64_t *ended);
/*
 * Cancels job_id (reason recorded): queued hosts and undelivered tasks end
 * cancelled now (*now), delivered tasks are marked for a CANCEL to their
 * worker (*asked hosts; *workers get NOTIFYed, caller frees).
 */
int om_store_job_cancel(struct om_store *st, uint64_t job_id, const char *reason, uint64_t *now,
                        uint64_t *asked, char ***workers, size_t *nworkers);

/*
 * LISTEN om_dispatch (payload: a worker name with a task or cancel) and
 * om_events (payload: a job id with new events); kept across reconnects.
 * om_store_notifications calls fn for each one arrived, without blocking;
 * returns how many or OM_EDB.
 */
int om_store_listen(struct om_store *st);
int om_store_notifications(struct om_store *st,
                           void (*fn)(void *arg, const char *channel, const char *payload),
                           void *arg);

/* A job as recorded (store_jobs.c); release with om_job_info_release. */
struct om_job_info {
	uint64_t id;
	char *created_by; /* the submitter's "user 'x'" */
	char *module;
	bool done;
	uint32_t nhosts;
};
void om_job_info_release(struct om_job_info *j);
/* OM_ENOTFOUND: no such job. */
int om_store_job_get(struct om_store *st, uint64_t job_id, struct om_job_info *out);

/*
 * An inventory host with its facts: *facts (caller frees, NULL when none) is
 * the JSON object of the last ok "facts" job, *facts_at_ms its wall-clock
 * time (0 when none).  Caller releases h with om_host_release.
 * OM_ENOTFOUND: no such host.
 */
int om_store_host_get(struct om_store *st, const char *name, struct om_host *h, char **facts,
                      int64_t *facts_at_ms);

/* ------------------------------------------- job history (issue 5, store_jobs.c) */

/*
 * The hosts of jobs a caller may see: the SQL form of auth_host_visible
 * (auth.c), which it must match.  With idcs, only hosts whose IDC as recorded
 * for the job is one of them; with groups, only hosts whose groups in the
 * inventory now meet them (a host gone from the inventory has none).  Both
 * empty (or a NULL scope): every host.  The caller keeps the names.
 */
struct om_job_scope {
	char *const *idcs;
	size_t nidcs;
	char *const *groups;
	size_t ngroups;
};

/* A job with its hosts counted per state; release with om_job_summary_release. */
struct om_job_summary {
	uint64_t id;
	char *created_by; /* as recorded: "user 'x'" */
	char *selector;
	char *module;
	bool done;
	int64_t created_ms, finished_ms; /* wall clock; finished_ms 0 while running */
	uint32_t nhosts;                 /* hosts in scope */
	uint32_t counts[OM_HS_COUNT_];   /* hosts in scope per enum om_host_state */
	bool retry_lost;                 /* lost hosts run again on another worker */
	bool retry_idempotent;           /* why: the module is idempotent, not --retry-lost */
};
void om_job_summary_release(struct om_job_summary *j);
void om_job_summaries_free(struct om_job_summary *j, size_t n);

/*
 * Job job_id.  OM_ENOTFOUND: no such job, or a scope that leaves none of its
 * hosts (without a scope, a job of no hosts is found).
 */
int om_store_job_summary(struct om_store *st, uint64_t job_id, const struct om_job_scope *scope,
                         struct om_job_summary *out);

/* Values longer than this are not read back by om_store_job_detail (file contents). */
#define OM_JOB_PARAM_SHOWN 1024

/* What a job was submitted with; release with om_job_detail_release. */
struct om_job_detail {
	struct om_kv *params; /* in submission order; val NULL when longer than
	                       * OM_JOB_PARAM_SHOWN bytes (not read) */
	size_t nparams;
	char *schema; /* the module's schema as last announced (JSON), NULL: none */
	uint32_t timeout_s, forks;
	uint32_t wave_size; /* hosts per wave as computed at submission */
	char *batch;        /* the batch option as given ("10", "25%", "0"); NULL: not recorded */
	bool has_max_fail;
	uint32_t max_fail;
	bool check, become;
	char *become_user; /* NULL: root */
	bool retry_option; /* --retry-lost was given (not only an idempotent module) */
};
void om_job_detail_release(struct om_job_detail *d);

/*
 * The parameters and options of job job_id, secrets included: the caller
 * decides what to show (jobview.c redacts).  OM_ENOTFOUND: no such job.
 * Visibility is the caller's to check first (om_store_job_summary).
 */
int om_store_job_detail(struct om_store *st, uint64_t job_id, struct om_job_detail *out);

struct om_jobs_filter {
	uint32_t state;         /* enum om_job_filter (om/msg.h) */
	const char *created_by; /* NULL or as recorded: "user 'x'" */
	uint64_t since_s;       /* created in the last since_s seconds; 0: any time */
	size_t limit;           /* at most this many, at most OM_MAX_JOB_ROWS */
};

/*
 * Jobs newest first (by id), those with no host in scope left out.  Caller
 * frees with om_job_summaries_free(*out, *n).
 */
int om_store_jobs_list(struct om_store *st, const struct om_jobs_filter *filter,
                       const struct om_job_scope *scope, struct om_job_summary **out, size_t *n);

/* One host of a job as it stands; release with om_job_hosts_free. */
struct om_job_host {
	char *host;
	uint32_t state;      /* enum om_host_state */
	bool has_exit;       /* exit_code is known */
	int32_t exit_code;
	bool has_duration;   /* duration_ms is known */
	uint64_t duration_ms;
	char *worker;        /* NULL before dispatch */
	char *reason;        /* NULL or text for a person */
};
void om_job_hosts_free(struct om_job_host *h, size_t n);

/*
 * 0 when job job_id exists and, with host, host is one of its hosts in
 * scope, or without host, the scope leaves at least one of its hosts (no
 * scope: any job).  OM_ENOTFOUND otherwise.  Cheap whatever the job's size.
 */
int om_store_job_visible(struct om_store *st, uint64_t job_id, const struct om_job_scope *scope,
                         const char *host);

/*
 * One page of job job_id's hosts in scope that are in state: names after
 * after (byte order; NULL: from the first), at most limit (at most
 * OM_MAX_JOB_ROWS).  Caller frees with om_job_hosts_free(*out, *n).  An
 * unknown job has no hosts (om_store_job_visible tells).
 */
int om_store_job_hosts_page(struct om_store *st, uint64_t job_id, const struct om_job_scope *scope,
                            uint32_t state, const char *after, size_t limit,
                            struct om_job_host **out, size_t *n);

/*
 * Stored output of job job_id: output events (kind 1) of streams 1 and 2
 * (fetched file bytes left out), with id > cursor in id order, at most limit
 * (at most OM_MAX_ITEMS), of host (NULL: every host) and only of hosts in
 * scope.  *more: further such events exist now.  Caller frees with
 * om_events_free(*out, *n).  An unknown job or host has no output
 * (om_store_job_visible tells).
 */
int om_store_job_output(struct om_store *st, uint64_t job_id, const struct om_job_scope *scope,
                        const char *host, uint64_t cursor, size_t limit, struct om_event **out,
                        size_t *n, bool *more);

/* ---------------------------------------------------------------- trust (issue 3) */

/* A worker key: one row per (name, public key). */
struct om_key_info {
	uint64_t id;
	char *name;
	char *idc; /* claimed while pending; bound once accepted */
	char *fingerprint;
	uint32_t state; /* enum om_key_state (om/msg.h) */
	int64_t first_seen_ms, last_seen_ms; /* wall clock */
};
void om_key_info_release(struct om_key_info *k);
void om_key_infos_free(struct om_key_info *k, size_t n);

/* The key row with this fingerprint; OM_ENOTFOUND when there is none. */
int om_store_key_find(struct om_store *st, const char *fingerprint, struct om_key_info *out);
/* A new pending key row (first contact); OM_EEXIST when the fingerprint is known. */
int om_store_key_add_pending(struct om_store *st, const char *name, const char *idc,
	const char *fingerprint, uint64_t *id);
/* last_seen = now. */
int om_store_key_touch(struct om_store *st, uint64_t id);
/*
 * One transaction: consumes a one-time enrollment token (it must exist,
 * be unused, now < expiry, and be for idc) and stores the key as accepted
 * for that IDC (a pending row with this fingerprint is promoted; other
 * accepted keys of the same name are revoked).  OM_EAUTH when the token is
 * not valid for this use: nothing is written then.
 */
int om_store_key_enroll(struct om_store *st, const char *token, const char *name, const char *idc,
	const char *fingerprint, uint64_t *id);
/*
 * Moves key id to state (accepted, rejected or revoked).  For accept, a
 * non-NULL expect_fp must equal the stored fingerprint (OM_EPERM otherwise,
 * nothing written); accepting revokes other accepted keys of the same name.
 * OM_ENOTFOUND: no such key.  *out (may be NULL) gets the row after.
 */
int om_store_key_set_state(struct om_store *st, uint64_t id, uint32_t state,
	const char *expect_fp, struct om_key_info *out);
int om_store_keys_list(struct om_store *st, struct om_key_info **out, size_t *n);

/* A one-time enrollment token for idc, valid ttl_s; *secret (caller frees) is shown once. */
int om_store_enroll_token_create(struct om_store *st, const char *idc, int64_t ttl_s,
	const char *created_by, uint64_t *id, char **secret, int64_t *expires_ms);

enum om_role { OM_ROLE_VIEWER = 1, OM_ROLE_OPERATOR = 2, OM_ROLE_ADMIN = 3 };
const char *om_role_name(int role);
int om_role_parse(const char *name); /* -1 when unknown */

enum om_scope { OM_SCOPE_READ = 1 << 0, OM_SCOPE_RUN = 1 << 1, OM_SCOPE_ADMIN = 1 << 2 };

struct om_user {
	uint64_t id;
	char *name;
	int role;
	bool disabled;
	char **idcs; /* operator scope; none: every IDC */
	size_t nidcs;
	char **groups; /* operator scope; none: every group */
	size_t ngroups;
	char **modules; /* allowed modules; none: all */
	size_t nmodules;
	int64_t created_ms;
};
void om_user_release(struct om_user *u);
void om_users_free(struct om_user *u, size_t n);

/*
 * Password hashes: scrypt (N=2^15, r=8, p=1, 16-byte salt, 32-byte key),
 * stored as "scrypt$N$r$p$salt_hex$hash_hex" so parameters can change.
 */
int om_password_hash(const char *password, char **out);   /* caller frees */
int om_password_verify(const char *password, const char *stored); /* 0 or OM_EAUTH */

/* OM_EEXIST when the name is taken. u->id is ignored. */
int om_store_user_add(struct om_store *st, const struct om_user *u, const char *password,
	uint64_t *id);
int om_store_user_get(struct om_store *st, const char *name, struct om_user *out);
/*
 * OM_EAUTH for an unknown user, a wrong password or a disabled user (the
 * same answer, and a hash is computed either way so timing tells nothing).
 */
int om_store_user_login(struct om_store *st, const char *name, const char *password,
	struct om_user *out);
int om_store_user_set_password(struct om_store *st, const char *name, const char *password);
int om_store_user_set_disabled(struct om_store *st, const char *name, bool disabled);
int om_store_users_list(struct om_store *st, struct om_user **out, size_t *n);
int om_store_user_count(struct om_store *st, size_t *n);

struct om_token_info {
	uint64_t id;
	uint64_t user_id;
	char *user;
	char *name;
	unsigned scopes; /* enum om_scope bits */
	int64_t created_ms, expires_ms, revoked_ms, last_used_ms; /* 0: never */
};
void om_token_info_release(struct om_token_info *t);
void om_token_infos_free(struct om_token_info *t, size_t n);

/*
 * A new API token "omt_" + 64 hex digits; only its SHA-256 is stored.
 * *secret (caller frees) is shown once.
 */
int om_store_token_create(struct om_store *st, uint64_t user_id, const char *name,
	unsigned scopes, int64_t ttl_s, uint64_t *id, char **secret, int64_t *expires_ms);
/*
 * OM_EAUTH when the token is unknown, revoked, expired (now >= expiry) or
 * its user is disabled; else fills *tok and *user and records last use.
 */
int om_store_token_check(struct om_store *st, const char *secret, struct om_token_info *tok,
	struct om_user *user);
/* Revokes token id; when owner is not 0 the token must belong to that user (else OM_ENOTFOUND). */
int om_store_token_revoke(struct om_store *st, uint64_t id, uint64_t owner);
/* Tokens of one user (user_id != 0) or of all users. */
int om_store_tokens_list(struct om_store *st, uint64_t user_id, struct om_token_info **out,
	size_t *n);

struct om_audit_rec {
	uint64_t id; /* contiguous from 1 */
	int64_t at_us; /* wall clock, microseconds */
	char *actor, *source, *action, *target, *outcome, *detail; /* detail may be NULL */
};
void om_audit_recs_free(struct om_audit_rec *r, size_t n);

/*
 * Appends one audit row, chained: hash = SHA-256(previous hash | this row's
 * fields), serialised under an advisory lock so several masters keep one
 * chain.  The table refuses UPDATE, DELETE and TRUNCATE (trigger).
 */
int om_store_audit(struct om_store *st, const char *actor, const char *source,
	const char *action, const char *target, const char *outcome, const char *detail);
/* Rows with id > after_id and at >= since_us, in id order, at most limit. */
int om_store_audit_list(struct om_store *st, int64_t since_us, uint64_t after_id, size_t limit,
	struct om_audit_rec **out, size_t *n);
/* A page of the audit log (om_store_audit_page). */
struct om_audit_query {
	int64_t since_us;   /* rows at or after this time */
	uint64_t after_id;  /* rows with a greater id */
	uint64_t before_id; /* rows with a smaller id; 0: no bound */
	bool desc;          /* newest first */
	size_t limit;       /* at most this many (and at most one reply's worth) */
};
/* om_store_audit_list with an upper bound and either order. */
int om_store_audit_page(struct om_store *st, const struct om_audit_query *q,
	struct om_audit_rec **out, size_t *n);
/*
 * Re-reads the whole chain.  0 when every row's hash matches and ids are
 * contiguous (*nrows rows); OM_ECRYPTO when not, with *bad_id the first
 * bad row and a reason in why.
 */
int om_store_audit_verify(struct om_store *st, uint64_t *nrows, uint64_t *bad_id, char *why,
	size_t whylen);

/* ------------------------------------------------- web console sessions (issue 6) */

/*
 * A web session of user_id: a new secret "oms_" + 64 hex digits for the
 * cookie and its CSRF token "omc_" + 64 hex digits (both caller frees,
 * shown once).  Only their SHA-256 hashes are stored, with the source, an
 * absolute expiry abs_s from now and an idle limit idle_s.
 */
int om_store_web_session_create(struct om_store *st, uint64_t user_id, const char *source,
	int64_t idle_s, int64_t abs_s, char **secret, char **csrf, int64_t *expires_ms);
/*
 * The session of a cookie secret: OM_EAUTH when unknown, past its absolute
 * or idle expiry, or its user is disabled; OM_EPERM when csrf is not NULL
 * and is not the session's CSRF token.  Fills *user (caller releases),
 * *session_id and (when not NULL) *csrf_out (caller frees); marks it used.
 */
int om_store_web_session_check(struct om_store *st, const char *secret, const char *csrf,
	struct om_user *user, uint64_t *session_id, char **csrf_out);
/* Logout: OM_ENOTFOUND when there was no such session. */
int om_store_web_session_delete(struct om_store *st, const char *secret);
/* Every session of a user (password changed, user disabled). */
int om_store_web_sessions_drop_user(struct om_store *st, const char *name);
/* Deletes the expired sessions; *n (may be NULL) counts them. */
int om_store_web_sessions_expire(struct om_store *st, uint64_t *n);

/* Last error text from libpq (for logs); valid until the next call. */
const char *om_store_errmsg(struct om_store *st);
/* om_now_ms() of the last failed statement or connection attempt; 0: none yet. */
int64_t om_store_last_failure_ms(struct om_store *st);

/* --- output partitions and retention (store_retention.c) */
struct om_retention_stats {
	unsigned created;      /* job_events partitions created ahead */
	unsigned dropped;      /* partitions dropped whole */
	uint64_t jobs_deleted; /* jobs (with hosts, tasks, output) deleted */
};
/*
 * Keeps job_events partitions ahead of the job ids (each about one day of
 * jobs) and, when retention_days > 0, deletes jobs that ended more than that
 * many days ago: whole partitions first, then a bounded batch row by row.
 * Bounded work per call; call it periodically.  Another master doing it at
 * the same moment makes this call do nothing.  0 or OM_EDB (a DDL lock wait
 * over 2 s included: the next call tries again).
 */
int om_store_retention(struct om_store *st, int retention_days, struct om_retention_stats *out);

/* ------------------------------------------------- module catalog (issue 4) */

/*
 * One transaction (store_modules.c): upserts every module (its schema is
 * JSON text the caller has validated; version, kind and description are
 * cut to valid UTF-8), and records that worker, of idc, offers exactly
 * these modules now: what it offered before and not any more is dropped.
 * n may be 0 (the worker offers nothing).  The caller keeps mods.
 */
int om_store_modules_put(struct om_store *st, const char *worker, const char *idc,
                         const struct om_module_info *mods, size_t n);
/* Modules at least one worker offers, by name.  Caller frees with om_modules_free(*out, *n). */
int om_store_modules_list(struct om_store *st, struct om_module_info **out, size_t *n);
/*
 * One module some worker offers, and in *idcs (may be NULL; caller frees each
 * and the array) the IDCs where it is offered.  Caller frees *out with
 * om_modules_free(*out, 1).  OM_ENOTFOUND when no worker offers it.
 */
int om_store_module_get(struct om_store *st, const char *name, struct om_module_info **out,
                        char ***idcs, size_t *nidcs);

#endif
