/*
 * om-master's core: one thread owns everything here (the store, the RPC
 * servers' sessions, the worker registry, tasks in flight, held long-polls).
 * nng threads only queue frames and wake the core (see om/rpc.h).
 */
#ifndef OM_MASTER_MASTER_H
#define OM_MASTER_MASTER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "om/rpc.h"
#include "store.h"

struct master_config {
	const char *db;
	const char *worker_listen;
	const char *client_listen;
	const char *key_path;
	enum om_log_level log_level;
	uint32_t heartbeat_ms; /* a worker silent 3x this long is gone */
	uint32_t pending_ms;   /* hosts wait this long for a live worker of their IDC; 0: 30 s */
	uint32_t retention_days; /* jobs that ended longer ago are deleted; 0: kept */
	unsigned worker_ctx;   /* concurrent worker requests */
	unsigned client_ctx;   /* concurrent client requests */
	struct http_config http; /* the web console and REST API; http.listen NULL: off */
	unsigned web_queue;      /* web calls waiting for the core; 0: 256 */
};

struct wconn;    /* a connected worker */
struct follower; /* a held FOLLOW request */

#define META_BUCKETS 1024
#define META_MAX     4096 /* cached task descriptions */

/* A task as reports need it (store.h), cached: it never changes. */
struct meta_entry {
	struct om_task_meta meta;
	struct meta_entry *next;
};

struct master {
	struct master_config cfg;
	struct om_keypair key;
	struct audit_limit {
		uint64_t key;	/* hash of source and action; 0: free */
		int64_t last_ms;
		unsigned suppressed;
		unsigned burst; /* rows written in the current window */
	} audit_limits[256];
	struct om_store *store;
	struct om_rpc_server *wsrv, *csrv;
	pthread_mutex_t wake_lock;
	pthread_cond_t wake_cond;
	bool woken;
	char id[128];       /* this process, as recorded on the workers it serves */
	int64_t awake_ms; /* running (and hearing workers) since */
	int64_t loop_ms;  /* the core loop's last turn */
	struct wconn *workers;
	struct meta_entry *meta[META_BUCKETS];
	size_t nmeta;
	struct follower *followers;
	/* Web calls from the HTTP threads (master_web_push): guarded by web_lock. */
	struct http_server *http;
	pthread_mutex_t web_lock;
	struct web_call *web_head, *web_tail;
	unsigned web_len;
	bool web_closed; /* the core stopped taking calls */
	int64_t last_web_expire;
	int64_t last_housekeeping, last_sweep, next_retention;
};

/* Loads keys and secrets, opens the store and both endpoints. */
int master_open(struct master *m, const struct master_config *cfg);
/* Runs until *stop becomes non-zero. */
void master_run(struct master *m, const volatile int *stop);
void master_close(struct master *m);
/*
 * From an HTTP thread: queues a web call for the core and wakes it.  The
 * queue takes c on success; OM_EAGAIN when it is full (the caller answers
 * 503) and OM_ECLOSED when the master stops: c stays the caller's.
 */
int master_web_push(struct master *m, struct web_call *c);

#endif
