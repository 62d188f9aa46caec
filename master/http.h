/*
 * om-master's HTTP server (libmicrohttpd): the console's static files, the
 * REST API under /api/v1 and server-sent events of job progress.
 *
 * HTTP threads own no state of the core and never touch the store.  Each
 * API call becomes a struct web_call carrying a local RPC request
 * (om_rpc_local_new, om/rpc.h) plus the caller's credentials; it goes into
 * the master's bounded web queue (master_web_push) and the core runs it
 * through the same permission table and operations as omctl's requests
 * (auth_web_call).  The reply comes back through the local request's
 * callback; the HTTP side turns it into JSON.
 *
 * The pure parts (route matching, cookie and query parsing, path checks,
 * JSON <-> message conversion) are exported for the unit tests.
 */
#ifndef OM_MASTER_HTTP_H
#define OM_MASTER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "om/msg.h"
#include "om/rpc.h"

struct master;

/* What the core does with a web call. */
enum web_kind {
	WEB_API = 0, /* req->msg is an operation of the permission table */
	WEB_LOGIN,   /* user and password: a new web session */
	WEB_LOGOUT,  /* ends the caller's web session */
	WEB_ME,      /* who the caller is */
};

/* The permission a route declares (checked by the core before the operation's own). */
enum web_perm {
	WEB_PUBLIC = 0, /* no authentication (login, the OpenAPI file, static files) */
	WEB_USER,       /* any authenticated user */
	WEB_READ,       /* scope read */
	WEB_RUN,        /* scope run */
	WEB_ADMIN,      /* scope admin */
};

#define WEB_SECRET_MAX 128 /* a session cookie or CSRF token as presented */

/*
 * One call from an HTTP thread to the core.  Owned by the web queue, then by
 * the core, which finishes req (reply or drop) and frees the call with
 * web_call_free.  Secrets are wiped when it is freed.
 */
struct web_call {
	enum web_kind kind;
	enum web_perm perm;
	bool state_changing;            /* a cookie session needs the CSRF token */
	struct om_rpc_req *req;         /* local request: finished by the core */
	char source[64];                /* client address, for audit */
	char session[WEB_SECRET_MAX];   /* om_session cookie; "" when none */
	char csrf[WEB_SECRET_MAX];      /* X-CSRF-Token; "" when none */
	char bearer[OM_MAX_SECRET + 1]; /* Authorization: Bearer; "" when none */
	char user[OM_MAX_NAME + 1];     /* WEB_LOGIN */
	char password[OM_MAX_SECRET + 1];
	struct web_call *next; /* queue link */
};

void web_call_free(struct web_call *c);

/* Server options (om-master flags). */
struct http_config {
	const char *listen;             /* "ADDR:PORT"; NULL: no HTTP server */
	const char *web_root;           /* static files */
	const char *tls_cert, *tls_key; /* both: HTTPS */
	size_t max_body;                /* request bodies; 0: 1 MiB */
	unsigned threads;               /* 0: 4 */
	unsigned max_conns;             /* 0: 1000 */
	unsigned per_ip;                /* 0: 64 */
	unsigned idle_s;                /* 0: 60 */
};

struct http_server;

/* Starts the server; it pushes calls with master_web_push(m, ...). */
int http_start(struct http_server **out, const struct http_config *cfg, struct master *m);
/* Resumes every suspended connection, stops the daemon and frees. */
void http_stop(struct http_server *s);

/* ---- pure parts (tests/unit/http_test.c) ---- */

struct http_route;

/* Route lookup: the route, or NULL with *status 404 (no such path) or 405 (wrong method). */
const struct http_route *http_route_match(const char *method, const char *path, uint64_t *id,
                                          char *name, size_t namelen, int *status);
enum web_perm http_route_perm(const struct http_route *rt);
const char *http_route_name(const struct http_route *rt);

/*
 * A static file's path below the web root: "/" is "index.html"; refuses
 * (false) empty segments, ".." and "." segments, backslashes, control bytes,
 * '%' and names starting with '.'.  out gets the relative path.
 */
bool http_static_path(const char *url, char *out, size_t outlen);
/* Content type by extension; "application/octet-stream" when unknown. */
const char *http_content_type(const char *path);

/* The value of cookie name in a Cookie header; false when absent or too long. */
bool http_cookie_get(const char *header, const char *name, char *out, size_t outlen);

/*
 * SUBMIT from a POST /api/v1/jobs body.  0, or OM_EINVAL with the field at
 * fault in field ("selector", "params.cmd", "options.timeout") and a
 * sentence in err.  Caller releases *out.
 */
int http_submit_from_json(const json_t *body, struct om_msg *out, char *field, size_t fieldlen,
                          char *err, size_t errlen);
/* JOBS_LIST from query values (each may be NULL). */
int http_jobs_query(const char *state, const char *user, const char *since, const char *limit,
                    struct om_msg *out, char *field, size_t fieldlen, char *err, size_t errlen);
/*
 * A job TABLE row as an object: numbers as numbers, host state counts under
 * "counts", JOB_SHOW's PARAMS and OPTIONS (JSON text) as objects (null when
 * nil or not an object).
 */
json_t *http_job_json(const struct om_msg *table, uint32_t row);
/* Any TABLE as an array of objects with lower-case keys; columns in ints become integers. */
json_t *http_table_json(const struct om_msg *table, const char *const *ints);
/* One event (FOLLOW, JOB_OUTPUT) as an object; bytes as "text" when valid UTF-8, else "b64". */
json_t *http_event_json(const struct om_event *ev);
/* HTTP status of an ERROR reply's OM_E* code. */
int http_status_of(int code);

/*
 * The request field an ERROR is about: its field when the core named one,
 * else (a 400 of an older master) guessed from its sentence; "" when none.
 */
void http_error_field(const struct om_msg *err, char *field, size_t fieldlen);
/*
 * One host from a POST /api/v1/hosts body {name, addr, idc, port?, user?,
 * groups?}.  0, or OM_EINVAL with the field at fault and a sentence (or
 * OM_ENOMEM).  Caller releases *out (om_host_release).
 */
int http_host_from_json(const json_t *body, struct om_host *out, char *field, size_t fieldlen,
                        char *err, size_t errlen);
/*
 * USER_ADD from a POST /api/v1/users body {name, role, password, idcs?,
 * groups?, modules?}; the password is never quoted in err.  Caller releases
 * *out with http_user_release (which wipes the password).
 */
int http_user_from_json(const json_t *body, struct om_msg *out, char *field, size_t fieldlen,
                        char *err, size_t errlen);
void http_user_release(struct om_msg *m);
/* AUDIT_LIST from query values (each may be NULL): limit, after, before, order (asc, desc). */
int http_audit_query(const char *limit, const char *after, const char *before, const char *order,
                     struct om_msg *out, char *field, size_t fieldlen, char *err, size_t errlen);
/* A HOST_SHOW TABLE as the host object of GET /api/v1/hosts/{name}; NULL when malformed. */
json_t *http_host_show_json(const struct om_msg *table);
/* The data of an SSE "counts" event from a JOB_SHOW TABLE: {id, state, hosts, counts}. */
json_t *http_counts_json(const struct om_msg *table);
/* Replaces each key's comma-list text in object o by an array; nil or absent: []. */
void http_lists_as_arrays(json_t *o, const char *const *keys);

#endif
