/*
 * Private to om-master: the objects its core thread owns and the functions
 * master.c (sessions, dispatch, workers) and auth.c (identity, permissions,
 * audit, administration) share.  Everything here runs on the core thread.
 */
#ifndef OM_MASTER_INT_H
#define OM_MASTER_INT_H

#include <stdarg.h>

#include "master.h"

enum peer_kind { PEER_WORKER = 1, PEER_CLIENT = 2 };

/* What an operation needs (the RPC permission table in auth.c). */
enum perm {
	PERM_WORKER = 1, /* an accepted worker key */
	PERM_READ,	 /* scope read: inventory, workers, job events */
	PERM_RUN,	 /* scope run: submit jobs (target and module scope apply) */
	PERM_ADMIN,	 /* scope admin: inventory changes, keys, users, audit */
	PERM_SELF,	 /* any authenticated user, on their own account */
};

/* Attached to every session: who is at the other end. */
struct peer {
	enum peer_kind kind;
	struct wconn *w;      /* PEER_WORKER */
	uint64_t key_id;      /* PEER_WORKER: worker_keys row */
	struct om_user user;  /* PEER_CLIENT: the authenticated user */
	unsigned scopes;      /* PEER_CLIENT: effective OM_SCOPE_* bits */
	uint64_t token_id;    /* PEER_CLIENT: 0 for a password login */
	char who[OM_MAX_NAME + 80]; /* for logs and audit: "worker 'x'", "user 'y'" */
	char source[64];      /* peer address */
};

struct wconn {
	char name[OM_MAX_NAME + 1];
	char idc[OM_MAX_NAME + 1]; /* the IDC its key was accepted for */
	char fingerprint[65];
	uint64_t worker_id;
	uint64_t key_id;
	bool revoked;			/* its key was rejected or revoked */
	struct om_rpc_session *session; /* NULL while disconnected */
	int64_t last_ms;
	bool gone;		 /* cut off (key revoked); its tasks were marked lost */
	bool suspect;		 /* its connection closed: no new tasks until it speaks again */
	struct om_rpc_req *poll; /* a held POLL */
	int64_t poll_deadline;
	bool poll_busy; /* the held POLL said busy: it may carry CANCEL, never a TASK */
	struct wconn *next;
};

struct follower {
	struct om_rpc_req *req;
	uint64_t job_id, cursor;
	int64_t deadline;
	bool files; /* stream 3 events too */
	/* An operator's scope, copied (the session may end first): events of
	 * other hosts are left out.  Empty: every host. */
	char **idcs, **groups;
	size_t nidcs, ngroups;
	struct follower *next;
};

typedef void (*op_fn)(struct master *, struct om_rpc_req *, struct peer *);


/* master.c */
void reply_error(struct om_rpc_req *r, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same naming the request field at fault (ERROR's field: "selector", "params.cmd"). */
void reply_error_field(struct om_rpc_req *r, int code, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
struct wconn *wconn_find(struct master *m, const char *name);
/*
 * Answers w's held POLL if there is something to say: cancels the store
 * holds for it first, then its oldest queued task unless the poll is busy;
 * NOTASK only when force.
 */
void worker_poll_try(struct master *m, struct wconn *w, bool force);
/* Offers the held polls of these workers (when attached here) what the store has for them. */
void workers_wake(struct master *m, char **names, size_t n);
/* om_store_job_advance, then wakes the workers that got a task and the job's followers. */
void jobs_advance(struct master *m, uint64_t job_id);
/* om_store_tasks_lose, then advances the jobs touched. */
void tasks_lose(struct master *m, const uint64_t *ids, size_t n, const char *reason);
void meta_clear(struct master *m);
void worker_disconnect(struct master *m, struct wconn *w, const char *reason);
void peer_free(struct peer *p);
void on_session_end(void *arg, void *user);
void master_op_heartbeat(struct master *m, struct om_rpc_req *r, struct peer *p);
void master_op_poll(struct master *m, struct om_rpc_req *r, struct peer *p);
void master_op_report(struct master *m, struct om_rpc_req *r, struct peer *p);
void master_op_submit(struct master *m, struct om_rpc_req *r, struct peer *p);
void master_op_follow(struct master *m, struct om_rpc_req *r, struct peer *p);
void master_op_hosts_list(struct master *m, struct om_rpc_req *r, struct peer *p);
void master_op_hosts_add(struct master *m, struct om_rpc_req *r, struct peer *p);
void master_op_workers_list(struct master *m, struct om_rpc_req *r, struct peer *p);

/* jobs.c */
void master_op_job_cancel(struct master *m, struct om_rpc_req *r, struct peer *p);
void master_op_host_show(struct master *m, struct om_rpc_req *r, struct peer *p);

/* jobview.c: job history for omctl (job show, jobs list, job output) */
/* JOB_SHOW, JOB_HOSTS, JOBS_LIST: reply TABLE.  JOB_OUTPUT: reply EVENTS. */
void master_op_job_show(struct master *m, struct om_rpc_req *r, struct peer *p);
void master_op_job_hosts(struct master *m, struct om_rpc_req *r, struct peer *p);
void master_op_jobs_list(struct master *m, struct om_rpc_req *r, struct peer *p);
void master_op_job_output(struct master *m, struct om_rpc_req *r, struct peer *p);

/* modules.c: the module catalog the workers announce, and submit validation */
/* W->M MODULES: keeps every module whose schema parses (the rest refused and logged). */
void master_op_modules(struct master *m, struct om_rpc_req *r, struct peer *p);
/* C->M MODULES_LIST and MODULE_SHOW: reply MODULES. */
void master_op_modules_list(struct master *m, struct om_rpc_req *r, struct peer *p);
void master_op_module_show(struct master *m, struct om_rpc_req *r, struct peer *p);
/*
 * Checks a SUBMIT's module and params against the catalog: 0; OM_EINVAL with
 * a sentence in err (an unknown module, the parameter at fault) and the
 * request field in field ("module", "params.NAME"; "" when no one field's);
 * another OM_E* code (store failure) with err describing it.
 */
int modules_check_submit(struct master *m, const struct om_msg *sub, char *field, size_t fieldlen,
	char *err, size_t errlen);

/* auth.c */
/*
 * Appends an audit row.  Refusals from one source are rate-limited (at most
 * one row per source and action every 10 s, the next row counts what was
 * suppressed) so a hostile peer cannot flood the table.
 */
void audit(struct master *m, const char *actor, const char *source, const char *action,
	const char *target, const char *outcome, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
void auth_worker_hello(struct master *m, struct om_rpc_req *r);
void auth_client_hello(struct master *m, struct om_rpc_req *r);
/* Looks the operation up in the permission table, checks it, runs it or refuses. */
void auth_dispatch(struct master *m, struct om_rpc_server *srv, struct om_rpc_req *r);
/*
 * The same for a peer the caller supplies (srv NULL: a local request, whose
 * refusal never ends a session).
 */
void auth_dispatch_peer(struct master *m, struct om_rpc_server *srv, struct om_rpc_req *r,
	struct peer *p);
/*
 * A call from the HTTP server (http.h): authenticates its cookie session or
 * bearer token, checks the CSRF token and the route's permission, then runs
 * it (login, logout, me, or an operation through auth_dispatch_peer).
 * Finishes c->req and frees c.
 */
void auth_web_call(struct master *m, struct web_call *c);
/* Drops expired web sessions (housekeeping). */
void auth_web_expire(struct master *m);
/* Target scope of a user for a job: 0, or OM_EPERM with a reason in why. */
int auth_check_target(const struct peer *p, const struct om_host *hosts, size_t n,
	const char *module, char *why, size_t whylen);
bool auth_host_visible(const struct peer *p, const struct om_host *h);
/* The hosts p may see as a store scope (auth_host_visible's rule); *s points into p. */
void auth_job_scope(const struct peer *p, struct om_job_scope *s);
/* om-master --init-admin: first admin user and token, printed once. */
int auth_init_admin(struct om_store *st, const char *name, const char *password_file);

#endif
