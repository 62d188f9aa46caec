/*
 * om-master's HTTP server: static console files, the REST API under /api/v1
 * and server-sent events, on libmicrohttpd (internal polling thread, a small
 * thread pool, epoll, suspend/resume).  See http.h for the bridge to the
 * core: HTTP threads never touch the store.
 *
 * A request's life (struct hreq): the access handler matches the route,
 * collects a bounded body, then turns the call into a local RPC request in
 * a struct web_call pushed to the core's queue, and suspends the connection.
 * The core's reply arrives through the local request's callback (on the
 * core thread), which keeps the encoded reply and resumes the connection;
 * the access handler runs again, decodes it and answers, or issues the next
 * call (GET /jobs/{id} reads the job, then its hosts per state).  Streams
 * (SSE of job events, raw output) are callback responses whose reader
 * issues the next FOLLOW or JOB_OUTPUT when its buffer is empty and
 * suspends until the reply comes: one reply at a time is all a slow
 * consumer makes the master hold.  A ticker thread resumes streams for the
 * heartbeat comment and retries calls the full queue refused.
 *
 * Locks: the local request's lock (held by the rpc layer during a callback)
 * comes before hreq.lock, which comes before the master's web queue lock.
 * So om_rpc_local_release is never called with hreq.lock held.  srv.lock
 * (the list of live requests) comes before hreq.lock.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/evp.h>

#include "http.h"
#include "master.h"
#include "om/inventory.h"

#define MAX_BODY_DEFAULT (1u << 20)
#define REPLY_MAX        (OM_MAX_FRAME + 4096)
#define OUT_KEEP_MAX     (256u << 10) /* a drained stream buffer larger than this is freed */
#define PING_IDLE_MS     10000 /* an SSE stream silent this long gets a comment (ticker: 1 s) */
#define FOLLOW_WAIT_MS   5000
#define COUNTS_EVERY_MS  1000 /* an SSE stream's JOB_SHOW for its counts, at most */
#define LOGIN_RATE_MS    2000 /* one login attempt per source address every 2 s ... */
#define LOGIN_BURST      10   /* ... after a burst of 10 */
#define LOGIN_BUCKETS    256
/* Every login costs the core a scrypt (~100 ms): all sources together get
 * at most this many, so no number of addresses can stall the core. */
#define LOGIN_GLOBAL_RATE_MS 250 /* 4 per second ... */
#define LOGIN_GLOBAL_BURST   20  /* ... after a burst of 20 */
#define COOKIE           "om_session"
/* Under TLS the __Host- prefix: the browser takes it only from this host,
 * Secure, for Path=/, so a sibling subdomain cannot plant a session. */
#define COOKIE_TLS       "__Host-om_session"
#define COOKIE_NAME(s)   ((s)->tls ? COOKIE_TLS : COOKIE)

static const char csp[] = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' "
                          "data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                          "form-action 'self'";

struct hreq;
typedef enum MHD_Result (*step_fn)(struct hreq *h, struct om_msg *rep);

struct http_route {
	const char *method;
	const char *pattern; /* segments; "{id}" a decimal id, "{name}" a name */
	enum web_perm perm;
	const char *name;
	enum MHD_Result (*start)(struct hreq *h);
};

struct login_bucket {
	int64_t tokens_ms; /* time credit: LOGIN_RATE_MS per attempt */
	int64_t at_ms;
};

struct http_server {
	struct MHD_Daemon *d;
	struct master *m;
	struct http_config cfg;
	char root[PATH_MAX]; /* the web root, resolved */
	bool tls;
	char *cert, *key;
	pthread_mutex_t lock; /* the live list, the ticker, login buckets */
	pthread_cond_t cond;
	struct hreq *live;
	int stopping; /* read with __atomic */
	pthread_t ticker;
	bool ticker_on;
	struct login_bucket buckets[LOGIN_BUCKETS];
	struct login_bucket global; /* every source at once */
};

enum stream_kind { STREAM_NONE = 0, STREAM_SSE, STREAM_RAW };

struct hreq {
	struct http_server *srv;
	struct MHD_Connection *conn; /* NULL once the request completed */
	pthread_mutex_t lock;
	unsigned refs; /* the connection, and a stream response */
	const struct http_route *rt;
	int early; /* 404/405/400 found at header time */
	uint64_t id;
	char name[OM_MAX_NAME + 1];
	struct om_buf body;
	bool too_big, started;
	bool answered; /* a response is queued */
	char source[64], ip[48];
	char session[WEB_SECRET_MAX], csrf[WEB_SECRET_MAX], bearer[OM_MAX_SECRET + 1];
	bool state_changing;
	/* the call in flight: guarded by lock */
	struct om_rpc_req *pending;
	bool suspended, have_reply, dropped;
	struct om_buf reply;
	step_fn next; /* what to do with the reply */
	/* multi-step GET /jobs/{id} */
	json_t *acc;
	uint32_t counts[OM_HS_COUNT_];
	int hstate, only_state;
	char after[OM_MAX_NAME + 1];
	uint32_t limit;
	/* multi-step POST /hosts/import: HOSTS_ADD a batch at a time */
	struct om_host *imp;
	size_t nimp, imp_off;
	uint64_t imp_count;
	/* streams: guarded by lock */
	enum stream_kind stream;
	struct om_buf out;
	size_t out_off;
	bool stream_done, done_sent, retry;
	uint64_t cursor;
	char host[OM_MAX_NAME + 1];
	int64_t last_write_ms;
	/* SSE progress: a FOLLOW reply waits in held while JOB_SHOW gets the counts */
	struct om_msg held;
	bool counts_due;              /* the next call is JOB_SHOW; held has the FOLLOW reply */
	bool counts_pending;          /* the call in flight is that JOB_SHOW */
	int64_t counts_ms;            /* when the last counts were asked for */
	char *counts_last;            /* the data of the last counts event sent (free) */
	struct hreq *lnext, **lprevp; /* srv->live */
};

/* ================================================================ pure parts */

static const struct http_route routes[];
static const size_t nroutes;

static bool
seg_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
}

/* Matches path against pattern; fills *id / name from placeholders. */
static bool
pattern_match(const char *pattern, const char *path, uint64_t *id, char *name, size_t namelen)
{
	const char *p = pattern, *u = path;

	while (*p && *u) {
		const char *pe = strchr(p, '/'), *ue = strchr(u, '/');
		size_t pl = pe ? (size_t)(pe - p) : strlen(p),
		       ul = ue ? (size_t)(ue - u) : strlen(u);

		if (seg_eq(p, pl, "{id}", 4)) {
			uint64_t v = 0;
			size_t i;
			if (ul == 0 || ul > 19)
				return false;
			for (i = 0; i < ul; i++) {
				if (u[i] < '0' || u[i] > '9')
					return false;
				v = v * 10 + (uint64_t)(u[i] - '0');
			}
			if (v == 0)
				return false;
			*id = v;
		} else if (seg_eq(p, pl, "{name}", 6)) {
			if (ul == 0 || ul >= namelen || ul > OM_MAX_NAME)
				return false;
			memcpy(name, u, ul);
			name[ul] = '\0';
			if (!om_name_valid(name))
				return false;
		} else if (!seg_eq(p, pl, u, ul)) {
			return false;
		}
		p += pl;
		u += ul;
		if (*p == '/' && *u == '/') {
			p++;
			u++;
		} else if (*p || *u) {
			return false;
		}
	}
	return *p == '\0' && *u == '\0';
}

const struct http_route *
http_route_match(const char *method, const char *path, uint64_t *id, char *name, size_t namelen,
                 int *status)
{
	size_t i;
	bool path_found = false;

	*status = 404;
	for (i = 0; i < nroutes; i++) {
		uint64_t tid = 0;
		char tname[OM_MAX_NAME + 1];
		if (!pattern_match(routes[i].pattern, path, &tid, tname, sizeof(tname)))
			continue;
		path_found = true;
		if (strcmp(routes[i].method, method) != 0)
			continue;
		*id = tid;
		if (name != NULL && namelen > 0)
			snprintf(name, namelen, "%s",
			         strstr(routes[i].pattern, "{name}") ? tname : "");
		*status = 200;
		return &routes[i];
	}
	*status = path_found ? 405 : 404;
	return NULL;
}

enum web_perm
http_route_perm(const struct http_route *rt)
{
	return rt->perm;
}

const char *
http_route_name(const struct http_route *rt)
{
	return rt->name;
}

bool
http_static_path(const char *url, char *out, size_t outlen)
{
	const char *s = url, *seg;
	size_t n;

	if (url == NULL || url[0] != '/')
		return false;
	if (strcmp(url, "/") == 0)
		s = "/index.html";
	n = strlen(s + 1);
	if (n == 0 || n >= outlen)
		return false;
	for (seg = s + 1; *seg;) {
		const char *e = strchr(seg, '/');
		size_t l = e ? (size_t)(e - seg) : strlen(seg);
		size_t i;
		if (l == 0 || seg[0] == '.')
			return false; /* "//", ".", "..", hidden files */
		for (i = 0; i < l; i++) {
			unsigned char c = (unsigned char)seg[i];
			if (c < 0x20 || c == 0x7f || c == '\\' || c == '%')
				return false;
		}
		seg += l;
		if (*seg == '/') {
			seg++;
			if (*seg == '\0')
				return false; /* a directory */
		}
	}
	memcpy(out, s + 1, n + 1);
	return true;
}

const char *
http_content_type(const char *path)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
	        {".html", "text/html; charset=utf-8"},
	        {".js", "text/javascript; charset=utf-8"},
	        {".mjs", "text/javascript; charset=utf-8"},
	        {".css", "text/css; charset=utf-8"},
	        {".json", "application/json"},
	        {".svg", "image/svg+xml"},
	        {".png", "image/png"},
	        {".ico", "image/x-icon"},
	        {".txt", "text/plain; charset=utf-8"},
	        {".woff2", "font/woff2"},
	};
	const char *dot = strrchr(path, '.');
	size_t i;

	if (dot != NULL && strchr(dot, '/') == NULL)
		for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			if (strcmp(dot, types[i].ext) == 0)
				return types[i].type;
	return "application/octet-stream";
}

bool
http_cookie_get(const char *header, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);
	const char *p = header;

	if (header == NULL)
		return false;
	while (*p) {
		const char *e, *v;
		size_t vl;
		while (*p == ' ' || *p == '\t' || *p == ';')
			p++;
		e = strchr(p, ';');
		if (e == NULL)
			e = p + strlen(p);
		if ((size_t)(e - p) > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
			v = p + nl + 1;
			vl = (size_t)(e - v);
			while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
				vl--;
			if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
				v++;
				vl -= 2;
			}
			if (vl == 0 || vl >= outlen)
				return false;
			memcpy(out, v, vl);
			out[vl] = '\0';
			return true;
		}
		p = e;
	}
	return false;
}

static int field_err(char *field, size_t fl, char *err, size_t el, const char *f, const char *fmt,
                     ...) __attribute__((format(printf, 6, 7)));

static int
field_err(char *field, size_t fl, char *err, size_t el, const char *f, const char *fmt, ...)
{
	va_list ap;

	snprintf(field, fl, "%s", f);
	va_start(ap, fmt);
	vsnprintf(err, el, fmt, ap);
	va_end(ap);
	return OM_EINVAL;
}

/* A JSON integer in lo..hi. */
static int
json_u32(const json_t *v, uint32_t lo, uint32_t hi, uint32_t *out)
{
	json_int_t i;

	if (!json_is_integer(v))
		return -1;
	i = json_integer_value(v);
	if (i < (json_int_t)lo || i > (json_int_t)hi)
		return -1;
	*out = (uint32_t)i;
	return 0;
}

static char *
dup_str(const json_t *v)
{
	return om_strndup(json_string_value(v), json_string_length(v));
}

/* A parameter value as the module schema's text forms take it. */
static char *
param_text(const json_t *v)
{
	char buf[32];

	if (json_is_string(v)) {
		if (memchr(json_string_value(v), '\0', json_string_length(v)) != NULL)
			return NULL;
		return dup_str(v);
	}
	if (json_is_integer(v)) {
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return om_strdup(buf);
	}
	if (json_is_true(v))
		return om_strdup("true");
	if (json_is_false(v))
		return om_strdup("false");
	return NULL;
}

int
http_submit_from_json(const json_t *body, struct om_msg *out, char *field, size_t fl, char *err,
                      size_t el)
{
	const json_t *sel, *mod, *params, *opts, *v;
	const char *key;
	struct om_msg *m = out;
	size_t n;

	memset(out, 0, sizeof(*out));
	out->type = OM_MSG_SUBMIT;
	if (!json_is_object(body))
		return field_err(field, fl, err, el, "", "the body must be a JSON object");
	json_object_foreach((json_t *)body, key, v)
	{
		if (strcmp(key, "selector") && strcmp(key, "module") && strcmp(key, "params") &&
		    strcmp(key, "options"))
			return field_err(field, fl, err, el, key, "unknown field '%s'", key);
	}
	sel = json_object_get(body, "selector");
	if (!json_is_string(sel) || json_string_length(sel) == 0 ||
	    json_string_length(sel) > OM_MAX_TEXT)
		return field_err(
		        field, fl, err, el, "selector",
		        "selector must be a non-empty string (e.g. \"all\" or \"idc:bj\")");
	mod = json_object_get(body, "module");
	if (!json_is_string(mod) || !om_name_valid(json_string_value(mod)))
		return field_err(field, fl, err, el, "module", "module must be a module name");
	if ((m->u.submit.selector = dup_str(sel)) == NULL ||
	    (m->u.submit.module = dup_str(mod)) == NULL)
		goto nomem;
	params = json_object_get(body, "params");
	if (params != NULL && !json_is_object(params)) {
		om_msg_release(out);
		return field_err(field, fl, err, el, "params", "params must be an object");
	}
	n = params ? json_object_size(params) : 0;
	if (n > OM_MAX_PARAMS) {
		om_msg_release(out);
		return field_err(field, fl, err, el, "params", "at most %d parameters",
		                 OM_MAX_PARAMS);
	}
	if (n > 0) {
		if ((m->u.submit.params = om_calloc(n, sizeof(struct om_kv))) == NULL)
			goto nomem;
		json_object_foreach((json_t *)params, key, v)
		{
			struct om_kv *kv = &m->u.submit.params[m->u.submit.nparams];
			char f[OM_MAX_NAME + 16];
			snprintf(f, sizeof(f), "params.%s", key);
			if (strlen(key) == 0 || strlen(key) > OM_MAX_NAME) {
				om_msg_release(out);
				return field_err(field, fl, err, el, "params",
				                 "bad parameter name");
			}
			if ((kv->val = param_text(v)) == NULL) {
				om_msg_release(out);
				return field_err(
				        field, fl, err, el, f,
				        "parameter '%s' must be a string, integer or boolean", key);
			}
			if (strlen(kv->val) > OM_MAX_PARAM) {
				om_free(kv->val);
				kv->val = NULL;
				om_msg_release(out);
				return field_err(field, fl, err, el, f,
				                 "parameter '%s' is too long", key);
			}
			if ((kv->key = om_strdup(key)) == NULL) {
				om_free(kv->val);
				goto nomem;
			}
			m->u.submit.nparams++;
		}
	}
	opts = json_object_get(body, "options");
	if (opts != NULL && !json_is_object(opts)) {
		om_msg_release(out);
		return field_err(field, fl, err, el, "options", "options must be an object");
	}
	if (opts == NULL)
		return 0;
	json_object_foreach((json_t *)opts, key, v)
	{
		char f[64];
		snprintf(f, sizeof(f), "options.%.40s", key);
		if (strcmp(key, "timeout") == 0) {
			if (json_u32(v, 0, 7 * 86400, &m->u.submit.timeout_s) != 0)
				goto bad_range;
		} else if (strcmp(key, "forks") == 0) {
			if (json_u32(v, 0, 10000, &m->u.submit.forks) != 0)
				goto bad_range;
		} else if (strcmp(key, "batch") == 0) {
			/* hosts per wave, or "N%" of the hosts */
			if (json_is_string(v)) {
				const char *s = json_string_value(v);
				size_t l = json_string_length(v);
				char num[16];
				if (l < 2 || l > 4 || s[l - 1] != '%')
					goto bad_value;
				memcpy(num, s, l - 1);
				num[l - 1] = '\0';
				if (om_parse_u32(num, 1, 100, &m->u.submit.batch) != 0)
					goto bad_value;
				m->u.submit.batch_pct = true;
			} else if (json_u32(v, 0, OM_MAX_HOSTS, &m->u.submit.batch) != 0) {
				goto bad_range;
			}
		} else if (strcmp(key, "max_fail") == 0) {
			if (json_u32(v, 0, 100, &m->u.submit.max_fail) != 0)
				goto bad_range;
			m->u.submit.has_max_fail = true;
		} else if (strcmp(key, "check") == 0 || strcmp(key, "become") == 0 ||
		           strcmp(key, "retry_lost") == 0) {
			bool b;
			if (!json_is_boolean(v))
				goto bad_bool;
			b = json_is_true(v);
			if (key[0] == 'c')
				m->u.submit.check = b;
			else if (key[0] == 'b')
				m->u.submit.become = b;
			else
				m->u.submit.retry_lost = b;
		} else if (strcmp(key, "become_user") == 0) {
			if (!json_is_string(v) || !om_name_valid(json_string_value(v)))
				goto bad_value;
			if ((m->u.submit.become_user = dup_str(v)) == NULL)
				goto nomem;
			m->u.submit.become = true;
		} else {
			om_msg_release(out);
			return field_err(field, fl, err, el, f, "unknown option '%s'", key);
		}
		continue;
	bad_range:
		om_msg_release(out);
		return field_err(field, fl, err, el, f, "option '%s' must be an integer in range",
		                 key);
	bad_bool:
		om_msg_release(out);
		return field_err(field, fl, err, el, f, "option '%s' must be true or false", key);
	bad_value:
		om_msg_release(out);
		return field_err(field, fl, err, el, f, "option '%s' has a bad value", key);
	}
	return 0;
nomem:
	om_msg_release(out);
	snprintf(field, fl, "%s", "");
	snprintf(err, el, "%s", "out of memory");
	return OM_ENOMEM;
}

int
http_jobs_query(const char *state, const char *user, const char *since, const char *limit,
                struct om_msg *out, char *field, size_t fl, char *err, size_t el)
{
	memset(out, 0, sizeof(*out));
	out->type = OM_MSG_JOBS_LIST;
	if (state != NULL) {
		if (strcmp(state, "running") == 0)
			out->u.jobs_list.state = OM_JOBS_RUNNING;
		else if (strcmp(state, "done") == 0)
			out->u.jobs_list.state = OM_JOBS_DONE;
		else if (strcmp(state, "any") != 0 && state[0] != '\0')
			return field_err(field, fl, err, el, "state",
			                 "state must be running, done or any");
	}
	if (since != NULL && since[0] != '\0') {
		uint32_t s;
		if (om_parse_u32(since, 1, 100u * 366 * 86400, &s) != 0)
			return field_err(field, fl, err, el, "since",
			                 "since must be a number of seconds");
		out->u.jobs_list.since_s = s;
	}
	if (limit != NULL && limit[0] != '\0' &&
	    om_parse_u32(limit, 1, OM_MAX_JOB_ROWS, &out->u.jobs_list.limit) != 0)
		return field_err(field, fl, err, el, "limit", "limit must be 1..%d",
		                 OM_MAX_JOB_ROWS);
	if (user != NULL && user[0] != '\0') {
		if (!om_name_valid(user))
			return field_err(field, fl, err, el, "user", "user must be a user name");
		if ((out->u.jobs_list.user = om_strdup(user)) == NULL)
			return OM_ENOMEM;
	}
	return 0;
}

/* An array of names (groups, IDCs, modules) into *out, *n: each copied. */
static int
json_names(const json_t *v, uint32_t max, char ***out, uint32_t *n)
{
	size_t i;

	*out = NULL;
	*n = 0;
	if (!json_is_array(v) || json_array_size(v) > max)
		return OM_EINVAL;
	for (i = 0; i < json_array_size(v); i++)
		if (!json_is_string(json_array_get(v, i)) ||
		    !om_name_valid(json_string_value(json_array_get(v, i))))
			return OM_EINVAL;
	if (json_array_size(v) == 0)
		return 0;
	if ((*out = om_calloc(json_array_size(v), sizeof(**out))) == NULL)
		return OM_ENOMEM;
	for (i = 0; i < json_array_size(v); i++) {
		if (((*out)[i] = dup_str(json_array_get(v, i))) == NULL)
			return OM_ENOMEM; /* the caller releases what was copied */
		(*n)++;
	}
	return 0;
}

/* Refuses keys of o not in allowed (NULL-terminated): 0, or OM_EINVAL naming it. */
static int
known_keys(const json_t *o, const char *const *allowed, char *field, size_t fl, char *err,
           size_t el)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)o, key, v)
	{
		const char *const *a;
		for (a = allowed; *a != NULL; a++)
			if (strcmp(*a, key) == 0)
				break;
		if (*a == NULL)
			return field_err(field, fl, err, el, key, "unknown field '%.64s'", key);
	}
	return 0;
}

int
http_host_from_json(const json_t *body, struct om_host *out, char *field, size_t fl, char *err,
                    size_t el)
{
	static const char *const keys[] = {"name", "addr", "idc", "port", "user", "groups", NULL};
	const json_t *v;
	uint32_t port = 22;
	int rv;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(body))
		return field_err(field, fl, err, el, "", "the body must be a JSON object");
	if ((rv = known_keys(body, keys, field, fl, err, el)) != 0)
		return rv;
	v = json_object_get(body, "name");
	if (!json_is_string(v) || !om_name_valid(json_string_value(v)))
		return field_err(field, fl, err, el, "name",
		                 "name must be a host name (letters, digits, '.', '_', '-')");
	v = json_object_get(body, "addr");
	if (!json_is_string(v) || !om_host_addr_valid(json_string_value(v)))
		return field_err(field, fl, err, el, "addr",
		                 "addr must be a DNS name or an IP address");
	v = json_object_get(body, "idc");
	if (!json_is_string(v) || !om_name_valid(json_string_value(v)))
		return field_err(field, fl, err, el, "idc", "idc must be an IDC name");
	v = json_object_get(body, "port");
	if (v != NULL && json_u32(v, 1, 65535, &port) != 0)
		return field_err(field, fl, err, el, "port", "port must be an integer 1..65535");
	v = json_object_get(body, "user");
	if (v != NULL && !json_is_null(v) &&
	    (!json_is_string(v) || !om_host_user_valid(json_string_value(v))))
		return field_err(field, fl, err, el, "user", "user must be a login name");
	out->port = port;
	if ((out->name = dup_str(json_object_get(body, "name"))) == NULL ||
	    (out->addr = dup_str(json_object_get(body, "addr"))) == NULL ||
	    (out->idc = dup_str(json_object_get(body, "idc"))) == NULL ||
	    (json_is_string(v) && (out->user = dup_str(v)) == NULL))
		goto nomem;
	v = json_object_get(body, "groups");
	if (v != NULL && (rv = json_names(v, OM_MAX_GROUPS, &out->groups, &out->ngroups)) != 0) {
		if (rv == OM_ENOMEM)
			goto nomem;
		om_host_release(out);
		return field_err(field, fl, err, el, "groups",
		                 "groups must be a list of at most %d group names", OM_MAX_GROUPS);
	}
	return 0;
nomem:
	om_host_release(out);
	snprintf(field, fl, "%s", "");
	snprintf(err, el, "%s", "out of memory");
	return OM_ENOMEM;
}

int
http_user_from_json(const json_t *body, struct om_msg *out, char *field, size_t fl, char *err,
                    size_t el)
{
	static const char *const keys[] = {"name",   "role",    "password", "idcs",
	                                   "groups", "modules", NULL};
	static const char *const lists[] = {"idcs", "groups", "modules"};
	const json_t *v;
	size_t i, len;
	int rv;

	memset(out, 0, sizeof(*out));
	out->type = OM_MSG_USER_ADD;
	if (!json_is_object(body))
		return field_err(field, fl, err, el, "", "the body must be a JSON object");
	if ((rv = known_keys(body, keys, field, fl, err, el)) != 0)
		return rv;
	v = json_object_get(body, "name");
	if (!json_is_string(v) || !om_name_valid(json_string_value(v)))
		return field_err(field, fl, err, el, "name",
		                 "name must be a user name (letters, digits, '.', '_', '-')");
	v = json_object_get(body, "role");
	if (!json_is_string(v) || (strcmp(json_string_value(v), "admin") != 0 &&
	                           strcmp(json_string_value(v), "operator") != 0 &&
	                           strcmp(json_string_value(v), "viewer") != 0))
		return field_err(field, fl, err, el, "role",
		                 "role must be admin, operator or viewer");
	v = json_object_get(body, "password");
	len = json_is_string(v) ? json_string_length(v) : 0;
	/* the text never names the password, nor quotes it */
	if (!json_is_string(v) || len < 8 || len > OM_MAX_SECRET ||
	    memchr(json_string_value(v), '\0', len) != NULL)
		return field_err(field, fl, err, el, "password",
		                 "password must have 8 to %d characters", OM_MAX_SECRET);
	if ((out->u.user.name = dup_str(json_object_get(body, "name"))) == NULL ||
	    (out->u.user.role = dup_str(json_object_get(body, "role"))) == NULL ||
	    (out->u.user.password = dup_str(v)) == NULL)
		goto nomem;
	for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		char ***dst = i == 0   ? &out->u.user.idcs
		              : i == 1 ? &out->u.user.groups
		                       : &out->u.user.modules;
		uint32_t *n = i == 0   ? &out->u.user.nidcs
		              : i == 1 ? &out->u.user.ngroups
		                       : &out->u.user.nmodules;
		if ((v = json_object_get(body, lists[i])) == NULL)
			continue;
		if ((rv = json_names(v, OM_MAX_GROUPS, dst, n)) == OM_ENOMEM)
			goto nomem;
		if (rv != 0) {
			http_user_release(out);
			return field_err(field, fl, err, el, lists[i],
			                 "%s must be a list of at most %d names", lists[i],
			                 OM_MAX_GROUPS);
		}
	}
	return 0;
nomem:
	http_user_release(out);
	snprintf(field, fl, "%s", "");
	snprintf(err, el, "%s", "out of memory");
	return OM_ENOMEM;
}

void
http_user_release(struct om_msg *m)
{
	if (m->u.user.password != NULL)
		om_wipe(m->u.user.password, strlen(m->u.user.password));
	om_msg_release(m);
}

int
http_audit_query(const char *limit, const char *after, const char *before, const char *order,
                 struct om_msg *out, char *field, size_t fl, char *err, size_t el)
{
	const char *const names[] = {"after", "before"};
	const char *vals[] = {after, before};
	uint64_t *ids[] = {&out->u.audit.after_id, &out->u.audit.before_id};
	size_t i;

	memset(out, 0, sizeof(*out));
	out->type = OM_MSG_AUDIT_LIST;
	if (limit != NULL && om_parse_u32(limit, 1, 1000, &out->u.audit.limit) != 0)
		return field_err(field, fl, err, el, "limit", "limit must be 1..1000");
	for (i = 0; i < 2; i++) {
		const char *v = vals[i];
		char *end;
		if (v == NULL)
			continue;
		errno = 0;
		*ids[i] = strtoull(v, &end, 10);
		if (errno != 0 || *end != '\0' || v[0] < '0' || v[0] > '9')
			return field_err(field, fl, err, el, names[i], "%s must be an audit row id",
			                 names[i]);
	}
	if (order != NULL && strcmp(order, "desc") == 0)
		out->u.audit.desc = true;
	else if (order != NULL && strcmp(order, "asc") != 0)
		return field_err(field, fl, err, el, "order", "order must be asc or desc");
	return 0;
}

static void
lower_copy(char *dst, size_t n, const char *src)
{
	size_t i;

	for (i = 0; i + 1 < n && src[i]; i++)
		dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? (char)(src[i] - 'A' + 'a') : src[i];
	dst[i] = '\0';
}

static json_t *
cell_json(const char *cell, bool as_int)
{
	if (cell == NULL)
		return json_null();
	if (as_int) {
		char *end;
		long long v;
		errno = 0;
		v = strtoll(cell, &end, 10);
		if (errno == 0 && *end == '\0' && end != cell)
			return json_integer(v);
	}
	{
		json_t *j = json_string(cell);
		return j ? j : json_null();
	}
}

static bool
in_names(const char *const *names, const char *s)
{
	for (; names && *names; names++)
		if (strcmp(*names, s) == 0)
			return true;
	return false;
}

json_t *
http_table_json(const struct om_msg *t, const char *const *ints)
{
	json_t *arr = json_array();
	uint32_t nc = t->u.table.ncolumns, row, c;

	if (arr == NULL || nc == 0)
		return arr;
	for (row = 0; row < t->u.table.ncells / nc; row++) {
		json_t *o = json_object();
		for (c = 0; c < nc; c++) {
			char key[64];
			lower_copy(key, sizeof(key), t->u.table.columns[c]);
			json_object_set_new(o, key,
			                    cell_json(t->u.table.cells[row * nc + c],
			                              in_names(ints, t->u.table.columns[c])));
		}
		json_array_append_new(arr, o);
	}
	return arr;
}

json_t *
http_job_json(const struct om_msg *t, uint32_t row)
{
	static const char *const ints[] = {"ID", "HOSTS", "DURATION_MS", NULL};
	/* JOB_SHOW's JSON text columns: objects (nil or not an object: null) */
	static const char *const objects[] = {"PARAMS", "OPTIONS", NULL};
	json_t *o = json_object(), *counts = json_object();
	uint32_t nc = t->u.table.ncolumns, c;

	for (c = 0; c < nc; c++) {
		const char *col = t->u.table.columns[c], *cell = t->u.table.cells[row * nc + c];
		char key[64];
		int s;
		lower_copy(key, sizeof(key), col);
		if ((s = om_host_state_parse(key)) >= 0) {
			json_object_set_new(counts, key, cell_json(cell, true));
		} else if (in_names(objects, col)) {
			json_t *v = cell ? json_loads(cell, JSON_REJECT_DUPLICATES, NULL) : NULL;
			if (v != NULL && !json_is_object(v)) {
				json_decref(v);
				v = NULL;
			}
			json_object_set_new(o, key, v ? v : json_null());
		} else {
			json_object_set_new(o, key, cell_json(cell, in_names(ints, col)));
		}
	}
	json_object_set_new(o, "counts", counts);
	return o;
}

json_t *
http_counts_json(const struct om_msg *t)
{
	json_t *job, *o;

	if (t->type != OM_MSG_TABLE || t->u.table.ncolumns == 0 ||
	    t->u.table.ncells < t->u.table.ncolumns)
		return NULL;
	job = http_job_json(t, 0);
	o = json_pack("{s:O?, s:O?, s:O?, s:O?}", "id", json_object_get(job, "id"), "state",
	              json_object_get(job, "state"), "hosts", json_object_get(job, "hosts"),
	              "counts", json_object_get(job, "counts"));
	json_decref(job);
	return o;
}

void
http_lists_as_arrays(json_t *o, const char *const *keys)
{
	for (; *keys != NULL; keys++) {
		json_t *v = json_object_get(o, *keys), *a = json_array();
		if (json_is_string(v)) {
			const char *p = json_string_value(v), *e;
			while (*p) {
				e = strchr(p, ',');
				if (e == NULL)
					e = p + strlen(p);
				if (e > p)
					json_array_append_new(a, json_stringn(p, (size_t)(e - p)));
				p = *e ? e + 1 : e;
			}
		}
		json_object_set_new(o, *keys, a);
	}
}

/* "2024-05-01T10:00:00Z" (as the master writes times) in ms since the epoch; -1 when not. */
static int64_t
iso_ms(const char *s)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	if (s == NULL || (end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm)) == NULL || *end != '\0')
		return -1;
	return (int64_t)timegm(&tm) * 1000;
}

json_t *
http_host_show_json(const struct om_msg *t)
{
	static const char *const lists[] = {"groups", NULL};
	json_t *o = json_object(), *facts = json_object();
	bool in_facts = false, have_facts = false;
	uint32_t i, nrows;

	if (t->type != OM_MSG_TABLE || t->u.table.ncolumns != 2) {
		json_decref(o);
		json_decref(facts);
		return NULL;
	}
	json_object_set_new(o, "facts_at_ms", json_null());
	nrows = t->u.table.ncells / 2;
	for (i = 0; i < nrows; i++) {
		const char *k = t->u.table.cells[2 * i], *v = t->u.table.cells[2 * i + 1];
		json_t *val;
		if (k == NULL)
			continue;
		if (in_facts) {
			/* compact JSON from the master; a value cut to fit a cell stays text */
			val = v ? json_loads(v, JSON_DECODE_ANY, NULL) : NULL;
			json_object_set_new(facts, k, val ? val : v ? json_string(v) : json_null());
			continue;
		}
		if (strcmp(k, "facts_at") == 0) {
			int64_t ms = iso_ms(v);
			/* every row after this one is a fact */
			in_facts = true;
			have_facts = v != NULL;
			if (ms >= 0)
				json_object_set_new(o, "facts_at_ms", json_integer(ms));
		} else if (strcmp(k, "port") == 0) {
			json_object_set_new(o, "port", cell_json(v, true));
		} else if (strcmp(k, "address") == 0) {
			json_object_set_new(o, "addr", cell_json(v, false));
		} else {
			json_object_set_new(o, k, cell_json(v, false));
		}
	}
	http_lists_as_arrays(o, lists);
	if (have_facts || json_object_size(facts) > 0)
		json_object_set_new(o, "facts", facts);
	else {
		json_decref(facts);
		json_object_set_new(o, "facts", json_null());
	}
	return o;
}

void
http_error_field(const struct om_msg *rep, char *field, size_t fl)
{
	const char *text = rep->u.error.text, *p;

	field[0] = '\0';
	if (rep->type != OM_MSG_ERROR)
		return;
	if (rep->u.error.field != NULL) {
		snprintf(field, fl, "%s", rep->u.error.field);
		return;
	}
	/* a master before ERROR's field: from the sentence, where it is plain */
	if (text == NULL || http_status_of(rep->u.error.code) != 400)
		return;
	if ((p = strstr(text, "parameter '")) != NULL) {
		const char *q = strchr(p + 11, '\'');
		if (q != NULL && (size_t)(q - p - 11) + 8 < fl)
			snprintf(field, fl, "params.%.*s", (int)(q - p - 11), p + 11);
	} else if (strstr(text, "selector") != NULL) {
		snprintf(field, fl, "selector");
	} else if (strstr(text, "module") != NULL) {
		snprintf(field, fl, "module");
	} else if (strstr(text, "timeout") != NULL) {
		snprintf(field, fl, "options.timeout");
	} else if (strstr(text, "batch") != NULL) {
		snprintf(field, fl, "options.batch");
	}
}

static const char *
stream_name(uint32_t s)
{
	return s == OM_STREAM_STDOUT ? "stdout" : s == OM_STREAM_STDERR ? "stderr" : "file";
}

static json_t *
bytes_b64(const uint8_t *p, size_t n)
{
	char *b = om_malloc(4 * ((n + 2) / 3) + 1);
	json_t *j;

	if (b == NULL)
		return NULL;
	EVP_EncodeBlock((unsigned char *)b, p, (int)n);
	j = json_string(b);
	om_free(b);
	return j;
}

json_t *
http_event_json(const struct om_event *ev)
{
	json_t *o = json_object(), *t;

	json_object_set_new(o, "id", json_integer((json_int_t)ev->id));
	switch (ev->kind) {
	case OM_EV_OUTPUT:
		json_object_set_new(o, "kind", json_string("output"));
		if (ev->host)
			json_object_set_new(o, "host", json_string(ev->host));
		json_object_set_new(o, "stream", json_string(stream_name(ev->stream)));
		/* Output is bytes: text when it is valid UTF-8, base64 otherwise. */
		if ((t = json_stringn((const char *)ev->data, ev->len)) != NULL)
			json_object_set_new(o, "text", t);
		else
			json_object_set_new(o, "b64", bytes_b64(ev->data, ev->len));
		break;
	case OM_EV_STATE:
		json_object_set_new(o, "kind", json_string("state"));
		if (ev->host)
			json_object_set_new(o, "host", json_string(ev->host));
		json_object_set_new(o, "state", json_string(om_host_state_name((int)ev->state)));
		json_object_set_new(o, "exit_code", json_integer(ev->exit_code));
		json_object_set_new(o, "duration_ms", json_integer((json_int_t)ev->duration_ms));
		json_object_set_new(o, "changed", json_boolean(ev->changed));
		if (ev->reason && (t = json_string(ev->reason)) != NULL)
			json_object_set_new(o, "reason", t);
		if (ev->result &&
		    (t = json_loads(ev->result, JSON_REJECT_DUPLICATES, NULL)) != NULL)
			json_object_set_new(o, "result", t);
		break;
	default:
		json_object_set_new(o, "kind", json_string("done"));
		break;
	}
	return o;
}

int
http_status_of(int code)
{
	switch (code) {
	case OM_EINVAL:
	case OM_ERANGE:
	case OM_EPROTO:
	case OM_ETYPE:
		return 400;
	case OM_EAUTH:
	case OM_ESESSION:
		return 401;
	case OM_EPERM:
		return 403;
	case OM_ENOTFOUND:
		return 404;
	case OM_EEXIST:
		return 409;
	case OM_EMSGSIZE:
		return 413;
	case OM_EDB:
	case OM_ENOMEM:
	case OM_EBUSY:
	case OM_ECLOSED:
	case OM_EAGAIN:
		return 503;
	default:
		return 500;
	}
}

void
web_call_free(struct web_call *c)
{
	if (c == NULL)
		return;
	om_wipe(c, sizeof(*c));
	om_free(c);
}

/* ================================================================ responses */

static void
add_headers(struct hreq *h, struct MHD_Response *r)
{
	MHD_add_response_header(r, "Content-Security-Policy", csp);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	if (h->srv->tls)
		MHD_add_response_header(r, "Strict-Transport-Security", "max-age=31536000");
}

static enum MHD_Result
queue(struct hreq *h, unsigned status, struct MHD_Response *r)
{
	enum MHD_Result rv;

	if (r == NULL)
		return MHD_NO;
	add_headers(h, r);
	h->answered = true;
	rv = MHD_queue_response(h->conn, status, r);
	MHD_destroy_response(r);
	return rv;
}

static struct MHD_Response *
json_response(json_t *j)
{
	char *text = j ? json_dumps(j, JSON_COMPACT | JSON_ESCAPE_SLASH) : NULL;
	struct MHD_Response *r;

	if (text == NULL)
		text = strdup("{\"error\":\"cannot encode the answer\"}");
	if (text == NULL)
		return NULL;
	r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(text);
		return NULL;
	}
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	return r;
}

static enum MHD_Result
send_json(struct hreq *h, unsigned status, json_t *j)
{
	struct MHD_Response *r = json_response(j);

	json_decref(j);
	return queue(h, status, r);
}

static enum MHD_Result send_error(struct hreq *h, unsigned status, const char *field,
                                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum MHD_Result
send_error(struct hreq *h, unsigned status, const char *field, const char *fmt, ...)
{
	char text[1024];
	struct MHD_Response *r;
	json_t *j, *t;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	j = json_object();
	if ((t = json_string(text)) == NULL)
		t = json_string("request refused"); /* text was not UTF-8 */
	json_object_set_new(j, "error", t);
	if (field != NULL && field[0] != '\0')
		json_object_set_new(j, "field", json_string(field));
	r = json_response(j);
	json_decref(j);
	if (r != NULL && (status == 503 || status == 429))
		MHD_add_response_header(r, "Retry-After", status == 429 ? "2" : "1");
	if (r != NULL && status == 401)
		MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"om-master\"");
	return queue(h, status, r);
}

static enum MHD_Result
send_reply_error(struct hreq *h, const struct om_msg *rep)
{
	char field[OM_MAX_FIELD + 1];

	if (rep->type != OM_MSG_ERROR)
		return send_error(h, 502, NULL, "unexpected answer from the master core");
	http_error_field(rep, field, sizeof(field));
	return send_error(h, (unsigned)http_status_of(rep->u.error.code), field, "%s",
	                  rep->u.error.text ? rep->u.error.text : "refused");
}

/* ================================================================ calls into the core */

static void
on_reply(void *arg, const struct om_msg *rep)
{
	struct hreq *h = arg;

	pthread_mutex_lock(&h->lock);
	om_buf_reset(&h->reply);
	if (om_msg_encode(rep, &h->reply) != 0 || h->reply.err != 0)
		h->dropped = true;
	h->have_reply = true;
	if (h->suspended && h->conn != NULL) {
		h->suspended = false;
		MHD_resume_connection(h->conn);
	}
	pthread_mutex_unlock(&h->lock);
}

static void
on_drop(void *arg, const char *why)
{
	struct hreq *h = arg;

	(void)why;
	pthread_mutex_lock(&h->lock);
	h->dropped = true;
	h->have_reply = true;
	if (h->suspended && h->conn != NULL) {
		h->suspended = false;
		MHD_resume_connection(h->conn);
	}
	pthread_mutex_unlock(&h->lock);
}

static bool
stopping(const struct http_server *s)
{
	return __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE) != 0;
}

/*
 * Sends a call to the core; with h->lock held.  0: in flight (h->pending);
 * OM_EAGAIN: the queue is full; another code: it could not be made.
 */
static int
call_locked(struct hreq *h, enum web_kind kind, const struct om_msg *msg, const char *user,
            const char *password)
{
	struct web_call *c;
	struct om_rpc_req *r;
	int rv;

	if (stopping(h->srv))
		return OM_ECLOSED;
	if ((c = om_calloc(1, sizeof(*c))) == NULL)
		return OM_ENOMEM;
	if ((r = om_rpc_local_new(msg, on_reply, on_drop, h, h->source)) == NULL) {
		om_free(c);
		return OM_ENOMEM;
	}
	c->kind = kind;
	c->perm = h->rt ? h->rt->perm : WEB_USER;
	c->state_changing = h->state_changing;
	c->req = r;
	snprintf(c->source, sizeof(c->source), "%s", h->source);
	snprintf(c->session, sizeof(c->session), "%s", h->session);
	snprintf(c->csrf, sizeof(c->csrf), "%s", h->csrf);
	snprintf(c->bearer, sizeof(c->bearer), "%s", h->bearer);
	if (user)
		snprintf(c->user, sizeof(c->user), "%s", user);
	if (password)
		snprintf(c->password, sizeof(c->password), "%s", password);
	h->have_reply = false;
	h->dropped = false;
	h->pending = r;
	if ((rv = master_web_push(h->srv->m, c)) != 0) {
		h->pending = NULL;
		/* never handed over: finish it ourselves (no callback: released first) */
		om_rpc_local_release(r);
		om_rpc_drop(r, "not queued");
		web_call_free(c);
		return rv;
	}
	return 0;
}

/*
 * From the access handler: sends a call whose reply goes to next, and
 * suspends the connection until it comes.
 */
static enum MHD_Result
call(struct hreq *h, enum web_kind kind, const struct om_msg *msg, step_fn next)
{
	int rv;

	pthread_mutex_lock(&h->lock);
	h->next = next;
	rv = call_locked(h, kind, msg, NULL, NULL);
	if (rv == 0) {
		h->suspended = true;
		MHD_suspend_connection(h->conn);
	}
	pthread_mutex_unlock(&h->lock);
	if (rv == OM_EAGAIN)
		return send_error(h, 503, NULL, "the master is busy, retry shortly");
	if (rv != 0)
		return send_error(h, 503, NULL, "the master cannot take the request now");
	return MHD_YES;
}

/*
 * Takes a finished call's reply into *rep (caller releases): true when one
 * was there.  A dropped call reads as an ERROR.  Without h->lock held.
 */
static bool
take_reply(struct hreq *h, struct om_msg *rep)
{
	struct om_rpc_req *r;
	struct om_buf b;
	bool dropped;

	memset(rep, 0, sizeof(*rep));
	pthread_mutex_lock(&h->lock);
	if (!h->have_reply) {
		pthread_mutex_unlock(&h->lock);
		return false;
	}
	b = h->reply;
	om_buf_init(&h->reply, REPLY_MAX);
	dropped = h->dropped;
	h->have_reply = false;
	r = h->pending;
	h->pending = NULL;
	pthread_mutex_unlock(&h->lock);
	om_rpc_local_release(r);
	if (dropped || om_msg_decode(b.data, b.len, rep) != 0) {
		memset(rep, 0, sizeof(*rep));
		rep->type = OM_MSG_ERROR;
		rep->u.error.code = OM_ECLOSED;
		rep->u.error.text = om_strdup("the master could not answer, retry");
	}
	om_buf_release(&b);
	return true;
}

/* ================================================================ lifetime */

static void
hreq_unref(struct hreq *h)
{
	struct http_server *s = h->srv;
	struct om_rpc_req *r;
	bool last;

	pthread_mutex_lock(&s->lock);
	pthread_mutex_lock(&h->lock);
	last = --h->refs == 0;
	if (last) {
		*h->lprevp = h->lnext;
		if (h->lnext)
			h->lnext->lprevp = h->lprevp;
	}
	r = h->pending;
	if (last)
		h->pending = NULL;
	pthread_mutex_unlock(&h->lock);
	pthread_mutex_unlock(&s->lock);
	if (!last)
		return;
	om_rpc_local_release(r); /* after this no callback can reach h */
	om_buf_release(&h->body);
	om_buf_release(&h->reply);
	om_buf_release(&h->out);
	json_decref(h->acc);
	om_hosts_free(h->imp, h->nimp);
	om_msg_release(&h->held);
	free(h->counts_last);
	om_wipe(h->session, sizeof(h->session));
	om_wipe(h->csrf, sizeof(h->csrf));
	om_wipe(h->bearer, sizeof(h->bearer));
	pthread_mutex_destroy(&h->lock);
	om_free(h);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
	struct hreq *h = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (h == NULL)
		return;
	pthread_mutex_lock(&h->lock);
	h->conn = NULL;
	h->suspended = false;
	pthread_mutex_unlock(&h->lock);
	*con_cls = NULL;
	hreq_unref(h);
}

static void
peer_text(struct MHD_Connection *c, char *out, size_t n, char *ip, size_t ipn)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	char a[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ci != NULL && ci->client_addr != NULL) {
		const struct sockaddr *sa = ci->client_addr;
		if (sa->sa_family == AF_INET) {
			const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
			inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
			port = ntohs(in->sin_port);
		} else if (sa->sa_family == AF_INET6) {
			const struct sockaddr_in6 *in6 =
			        (const struct sockaddr_in6 *)(const void *)sa;
			inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
			port = ntohs(in6->sin6_port);
		}
	}
	snprintf(ip, ipn, "%s", a);
	snprintf(out, n, strchr(a, ':') ? "[%s]:%u" : "%s:%u", a, port);
}

static const char *
header(struct hreq *h, const char *name)
{
	return MHD_lookup_connection_value(h->conn, MHD_HEADER_KIND, name);
}

static const char *
arg(struct hreq *h, const char *name)
{
	return MHD_lookup_connection_value(h->conn, MHD_GET_ARGUMENT_KIND, name);
}

static struct hreq *
hreq_new(struct http_server *s, struct MHD_Connection *conn, const char *url, const char *method)
{
	struct hreq *h = om_calloc(1, sizeof(*h));
	const char *v;

	if (h == NULL)
		return NULL;
	pthread_mutex_init(&h->lock, NULL);
	h->srv = s;
	h->conn = conn;
	h->refs = 1;
	h->only_state = -1;
	om_buf_init(&h->body, s->cfg.max_body);
	om_buf_init(&h->reply, REPLY_MAX);
	om_buf_init(&h->out, REPLY_MAX + 65536);
	peer_text(conn, h->source, sizeof(h->source), h->ip, sizeof(h->ip));
	h->state_changing = strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
	if (strncmp(url, "/api/", 5) == 0) {
		h->rt = http_route_match(method, url, &h->id, h->name, sizeof(h->name), &h->early);
		if (h->rt != NULL)
			h->early = 0;
	}
	if ((v = header(h, "Cookie")) != NULL)
		http_cookie_get(v, COOKIE_NAME(h->srv), h->session, sizeof(h->session));
	if ((v = header(h, "X-CSRF-Token")) != NULL && strlen(v) < sizeof(h->csrf))
		snprintf(h->csrf, sizeof(h->csrf), "%s", v);
	if ((v = header(h, "Authorization")) != NULL) {
		if (strncasecmp(v, "Bearer ", 7) == 0 && strlen(v + 7) < sizeof(h->bearer))
			snprintf(h->bearer, sizeof(h->bearer), "%s", v + 7);
		else
			h->early = 401; /* only bearer tokens are understood */
	}
	pthread_mutex_lock(&s->lock);
	h->lnext = s->live;
	if (h->lnext)
		h->lnext->lprevp = &h->lnext;
	h->lprevp = &s->live;
	s->live = h;
	pthread_mutex_unlock(&s->lock);
	return h;
}

/* ================================================================ static files */

static enum MHD_Result
serve_file(struct hreq *h, const char *url)
{
	char rel[PATH_MAX], full[PATH_MAX * 2], real[PATH_MAX];
	struct MHD_Response *r;
	struct stat st;
	size_t rl = strlen(h->srv->root);
	int fd;

	if (!http_static_path(url, rel, sizeof(rel)))
		return send_error(h, 404, NULL, "no such file");
	snprintf(full, sizeof(full), "%s/%s", h->srv->root, rel);
	/* Symlinks may point anywhere: only files that resolve inside the root. */
	if (realpath(full, real) == NULL || strncmp(real, h->srv->root, rl) != 0 || real[rl] != '/')
		return send_error(h, 404, NULL, "no such file");
	if ((fd = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return send_error(h, 404, NULL, "no such file");
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return send_error(h, 404, NULL, "no such file");
	}
	if ((r = MHD_create_response_from_fd((uint64_t)st.st_size, fd)) == NULL) {
		close(fd);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", http_content_type(rel));
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	return queue(h, 200, r);
}

/* ================================================================ routes */

static json_t *
parse_body(struct hreq *h, char *err, size_t el)
{
	const char *ct = header(h, "Content-Type");
	json_error_t e;
	json_t *j;

	if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0) {
		snprintf(err, el, "Content-Type must be application/json");
		return NULL;
	}
	j = json_loadb((const char *)h->body.data, h->body.len, JSON_REJECT_DUPLICATES, &e);
	if (j == NULL)
		snprintf(err, el, "the body is not valid JSON: %s (line %d)", e.text, e.line);
	return j;
}

/* --- login, logout, me */

static bool
login_allowed(struct http_server *s, const char *ip)
{
	uint64_t hsh = 1469598103934665603ull;
	struct login_bucket *b;
	int64_t now = om_now_ms();
	unsigned char a6[16];
	const unsigned char *k;
	size_t kn, i;
	bool ok;

	/* An IPv6 source is its /64: one host usually has the whole prefix. */
	if (strchr(ip, ':') != NULL && inet_pton(AF_INET6, ip, a6) == 1) {
		k = a6;
		kn = 8;
	} else {
		k = (const unsigned char *)ip;
		kn = strlen(ip);
	}
	for (i = 0; i < kn; i++)
		hsh = (hsh ^ k[i]) * 1099511628211ull;
	pthread_mutex_lock(&s->lock);
	/* Sources whose keys collide share a bucket: resetting it for each
	 * newcomer would let two addresses take turns at a full burst. */
	b = &s->buckets[hsh % LOGIN_BUCKETS];
	if (b->at_ms == 0) {
		b->tokens_ms = (int64_t)LOGIN_BURST * LOGIN_RATE_MS;
		b->at_ms = now;
	}
	b->tokens_ms += now - b->at_ms;
	if (b->tokens_ms > (int64_t)LOGIN_BURST * LOGIN_RATE_MS)
		b->tokens_ms = (int64_t)LOGIN_BURST * LOGIN_RATE_MS;
	b->at_ms = now;
	if (s->global.at_ms == 0) {
		s->global.tokens_ms = (int64_t)LOGIN_GLOBAL_BURST * LOGIN_GLOBAL_RATE_MS;
		s->global.at_ms = now;
	}
	s->global.tokens_ms += now - s->global.at_ms;
	if (s->global.tokens_ms > (int64_t)LOGIN_GLOBAL_BURST * LOGIN_GLOBAL_RATE_MS)
		s->global.tokens_ms = (int64_t)LOGIN_GLOBAL_BURST * LOGIN_GLOBAL_RATE_MS;
	s->global.at_ms = now;
	ok = b->tokens_ms >= LOGIN_RATE_MS && s->global.tokens_ms >= LOGIN_GLOBAL_RATE_MS;
	if (ok) {
		b->tokens_ms -= LOGIN_RATE_MS;
		s->global.tokens_ms -= LOGIN_GLOBAL_RATE_MS;
	}
	pthread_mutex_unlock(&s->lock);
	return ok;
}

static json_t *
me_json(const struct om_msg *t)
{
	static const char *const lists[] = {"scopes", "idcs", "groups", "modules", NULL};
	json_t *arr = http_table_json(t, NULL), *o;

	if (arr == NULL || json_array_size(arr) != 1) {
		json_decref(arr);
		return NULL;
	}
	o = json_incref(json_array_get(arr, 0));
	json_decref(arr);
	json_object_del(o, "session");
	/* comma lists as arrays */
	http_lists_as_arrays(o, lists);
	json_object_set(o, "csrf_token", json_object_get(o, "csrf"));
	json_object_del(o, "csrf");
	return o;
}

static void
cookie_header(struct hreq *h, struct MHD_Response *r, const char *value, bool clear)
{
	char c[WEB_SECRET_MAX + 128];

	snprintf(c, sizeof(c), "%s=%s; Path=/; HttpOnly; SameSite=Strict%s%s", COOKIE_NAME(h->srv),
	         clear ? "" : value, h->srv->tls ? "; Secure" : "", clear ? "; Max-Age=0" : "");
	MHD_add_response_header(r, "Set-Cookie", c);
}

static enum MHD_Result
login_done(struct hreq *h, struct om_msg *rep)
{
	struct MHD_Response *r;
	const char *session = NULL;
	json_t *o;
	uint32_t c;

	if (rep->type != OM_MSG_TABLE)
		return send_reply_error(h, rep);
	for (c = 0; c < rep->u.table.ncolumns && rep->u.table.ncells >= rep->u.table.ncolumns; c++)
		if (strcmp(rep->u.table.columns[c], "SESSION") == 0)
			session = rep->u.table.cells[c];
	if (session == NULL || (o = me_json(rep)) == NULL)
		return send_error(h, 502, NULL, "unexpected answer from the master core");
	r = json_response(o);
	json_decref(o);
	if (r == NULL)
		return MHD_NO;
	cookie_header(h, r, session, false);
	return queue(h, 200, r);
}

static enum MHD_Result
route_login(struct hreq *h)
{
	char err[256];
	const char *user = NULL, *password = NULL;
	json_error_t e;
	json_t *j;
	int rv;

	j = parse_body(h, err, sizeof(err));
	om_wipe(h->body.data, h->body.len); /* the password: parsed or not, gone from here */
	if (j == NULL)
		return send_error(h, 400, "", "%s", err);
	if (json_unpack_ex(j, &e, JSON_STRICT, "{s:s, s:s}", "user", &user, "password",
	                   &password) != 0) {
		const char *f = strstr(e.text, "password") ? "password" : "user";
		json_decref(j);
		return send_error(h, 400, f, "%s", e.text);
	}
	if (!om_name_valid(user) || strlen(password) == 0 || strlen(password) > OM_MAX_SECRET) {
		bool bad_user = !om_name_valid(user);
		json_decref(j);
		return send_error(h, 400, bad_user ? "user" : "password", "%s",
		                  bad_user ? "user must be a user name"
		                           : "password is empty or too long");
	}
	if (!login_allowed(h->srv, h->ip)) {
		json_decref(j);
		return send_error(h, 429, NULL, "too many login attempts from this address, wait");
	}
	pthread_mutex_lock(&h->lock);
	h->next = login_done;
	rv = call_locked(h, WEB_LOGIN, NULL, user, password);
	if (rv == 0) {
		h->suspended = true;
		MHD_suspend_connection(h->conn);
	}
	pthread_mutex_unlock(&h->lock);
	json_decref(j);
	if (rv != 0)
		return send_error(h, 503, NULL, "the master is busy, retry shortly");
	return MHD_YES;
}

static enum MHD_Result
logout_done(struct hreq *h, struct om_msg *rep)
{
	struct MHD_Response *r;
	json_t *o;

	if (rep->type != OM_MSG_DONE)
		return send_reply_error(h, rep);
	o = json_pack("{s:b}", "ok", 1);
	r = json_response(o);
	json_decref(o);
	if (r == NULL)
		return MHD_NO;
	cookie_header(h, r, NULL, true);
	return queue(h, 200, r);
}

static enum MHD_Result
route_logout(struct hreq *h)
{
	return call(h, WEB_LOGOUT, NULL, logout_done);
}

static enum MHD_Result
me_done(struct hreq *h, struct om_msg *rep)
{
	json_t *o;

	if (rep->type != OM_MSG_TABLE)
		return send_reply_error(h, rep);
	if ((o = me_json(rep)) == NULL)
		return send_error(h, 502, NULL, "unexpected answer from the master core");
	return send_json(h, 200, o);
}

static enum MHD_Result
route_me(struct hreq *h)
{
	return call(h, WEB_ME, NULL, me_done);
}

static enum MHD_Result
route_openapi(struct hreq *h)
{
	return serve_file(h, "/openapi.json");
}

/* --- jobs */

static enum MHD_Result
jobs_done(struct hreq *h, struct om_msg *rep)
{
	json_t *arr;
	uint32_t row;

	if (rep->type != OM_MSG_TABLE)
		return send_reply_error(h, rep);
	arr = json_array();
	for (row = 0; rep->u.table.ncolumns && row < rep->u.table.ncells / rep->u.table.ncolumns;
	     row++)
		json_array_append_new(arr, http_job_json(rep, row));
	return send_json(h, 200, json_pack("{s:o}", "jobs", arr));
}

static enum MHD_Result
route_jobs(struct hreq *h)
{
	struct om_msg q;
	char field[32], err[256];
	enum MHD_Result ret;

	if (http_jobs_query(arg(h, "state"), arg(h, "user"), arg(h, "since"), arg(h, "limit"), &q,
	                    field, sizeof(field), err, sizeof(err)) != 0)
		return send_error(h, 400, field, "%s", err);
	ret = call(h, WEB_API, &q, jobs_done);
	om_msg_release(&q);
	return ret;
}

static enum MHD_Result
submit_done(struct hreq *h, struct om_msg *rep)
{
	if (rep->type != OM_MSG_SUBMITTED) {
		/* the selector matching nothing is the caller's field, not a missing route */
		if (rep->type == OM_MSG_ERROR && rep->u.error.code == OM_ENOTFOUND)
			return send_error(h, 400, "selector", "%s", rep->u.error.text);
		return send_reply_error(h, rep);
	}
	return send_json(h, 201,
	                 json_pack("{s:I, s:i}", "id", (json_int_t)rep->u.submitted.job_id, "hosts",
	                           (int)rep->u.submitted.nhosts));
}

static enum MHD_Result
route_submit(struct hreq *h)
{
	char err[512], field[OM_MAX_NAME + 16];
	struct om_msg q;
	enum MHD_Result ret;
	json_t *j;

	if ((j = parse_body(h, err, sizeof(err))) == NULL)
		return send_error(h, 400, "", "%s", err);
	if (http_submit_from_json(j, &q, field, sizeof(field), err, sizeof(err)) != 0) {
		json_decref(j);
		return send_error(h, 400, field, "%s", err);
	}
	json_decref(j);
	ret = call(h, WEB_API, &q, submit_done);
	om_msg_release(&q);
	return ret;
}

static enum MHD_Result job_hosts_next(struct hreq *h);

static enum MHD_Result
job_hosts_done(struct hreq *h, struct om_msg *rep)
{
	static const char *const ints[] = {"EXIT", "DURATION_MS", NULL};
	json_t *arr, *hosts;
	size_t i;

	if (rep->type != OM_MSG_TABLE)
		return send_reply_error(h, rep);
	arr = http_table_json(rep, ints);
	hosts = json_object_get(h->acc, "hosts");
	for (i = 0; i < json_array_size(arr); i++)
		json_array_append(hosts, json_array_get(arr, i));
	json_decref(arr);
	h->hstate++;
	return job_hosts_next(h);
}

/* The next state with hosts to list (one JOB_HOSTS per state), or the answer. */
static enum MHD_Result
job_hosts_next(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_JOB_HOSTS};

	while (h->hstate < OM_HS_COUNT_ &&
	       (h->counts[h->hstate] == 0 || (h->only_state >= 0 && h->hstate != h->only_state)))
		h->hstate++;
	if (h->hstate >= OM_HS_COUNT_) {
		json_t *o = h->acc;
		h->acc = NULL;
		return send_json(h, 200, o);
	}
	q.u.job_hosts.job_id = h->id;
	q.u.job_hosts.state = (uint32_t)h->hstate;
	q.u.job_hosts.after = h->after[0] ? h->after : NULL;
	q.u.job_hosts.limit = h->limit;
	return call(h, WEB_API, &q, job_hosts_done);
}

static enum MHD_Result
job_show_done(struct hreq *h, struct om_msg *rep)
{
	json_t *job, *counts;
	int s;

	if (rep->type != OM_MSG_TABLE || rep->u.table.ncolumns == 0 ||
	    rep->u.table.ncells < rep->u.table.ncolumns)
		return send_reply_error(h, rep);
	job = http_job_json(rep, 0);
	/* a master before JOB_SHOW had them: null */
	if (json_object_get(job, "params") == NULL)
		json_object_set_new(job, "params", json_null());
	if (json_object_get(job, "options") == NULL)
		json_object_set_new(job, "options", json_null());
	counts = json_object_get(job, "counts");
	for (s = 0; s < OM_HS_COUNT_; s++) {
		json_t *v = json_object_get(counts, om_host_state_name(s));
		h->counts[s] = json_is_integer(v) ? (uint32_t)json_integer_value(v) : 0;
	}
	h->acc = json_pack("{s:o, s:[]}", "job", job, "hosts");
	h->hstate = 0;
	return job_hosts_next(h);
}

static enum MHD_Result
route_job(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_JOB_SHOW};
	const char *v;

	h->limit = OM_MAX_JOB_ROWS;
	if ((v = arg(h, "state")) != NULL && (h->only_state = om_host_state_parse(v)) < 0)
		return send_error(h, 400, "state", "state must be a host state (ok, failed, ...)");
	if ((v = arg(h, "after")) != NULL) {
		if (!om_name_valid(v))
			return send_error(h, 400, "after", "after must be a host name");
		snprintf(h->after, sizeof(h->after), "%s", v);
		if (h->only_state < 0)
			return send_error(h, 400, "after",
			                  "after needs state (pages are per state)");
	}
	if ((v = arg(h, "limit")) != NULL && om_parse_u32(v, 1, OM_MAX_JOB_ROWS, &h->limit) != 0)
		return send_error(h, 400, "limit", "limit must be 1..%d", OM_MAX_JOB_ROWS);
	q.u.by_id.id = h->id;
	return call(h, WEB_API, &q, job_show_done);
}

static enum MHD_Result
cancel_done(struct hreq *h, struct om_msg *rep)
{
	if (rep->type != OM_MSG_DONE)
		return send_reply_error(h, rep);
	return send_json(h, 200,
	                 json_pack("{s:b, s:s}", "ok", 1, "text",
	                           rep->u.done.text ? rep->u.done.text : "cancelled"));
}

static enum MHD_Result
route_cancel(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_JOB_CANCEL};

	q.u.by_id.id = h->id;
	return call(h, WEB_API, &q, cancel_done);
}

/* --- streams: SSE of job events, raw output */

/* Appends a reply's events to the stream buffer; with h->lock held. */
static void
stream_append_locked(struct hreq *h, const struct om_msg *rep)
{
	uint32_t i;

	if (rep->type != OM_MSG_EVENTS) {
		if (h->stream == STREAM_SSE) {
			om_buf_printf(&h->out, "event: error\ndata: {\"error\":\"%s\"}\n\n",
			              rep->type == OM_MSG_ERROR ? "the master refused the stream"
			                                        : "unexpected answer");
		}
		h->stream_done = true;
		return;
	}
	for (i = 0; i < rep->u.events.nevents; i++) {
		const struct om_event *ev = &rep->u.events.events[i];
		size_t before = h->out.len;
		if (h->stream == STREAM_RAW) {
			if (ev->kind == OM_EV_OUTPUT)
				om_buf_append(&h->out, ev->data, ev->len);
		} else {
			json_t *j = http_event_json(ev);
			char *t = json_dumps(j, JSON_COMPACT | JSON_ESCAPE_SLASH);
			if (t != NULL) {
				om_buf_printf(&h->out, "id: %" PRIu64 "\nevent: %s\ndata: %s\n\n",
				              ev->id,
				              ev->kind == OM_EV_OUTPUT  ? "output"
				              : ev->kind == OM_EV_STATE ? "state"
				                                        : "done",
				              t);
				free(t);
			}
			json_decref(j);
		}
		if (h->out.err != 0) {
			/* Full (a batch of escaped or base64 output can outgrow it):
			 * drop this event's partial bytes and resume the stream after
			 * the last event that went out whole: nothing is skipped. */
			h->out.len = before;
			h->out.err = 0;
			if (i > 0)
				h->cursor = rep->u.events.events[i - 1].id;
			return;
		}
		if (h->stream == STREAM_SSE && ev->kind == OM_EV_JOB_DONE)
			h->done_sent = true;
	}
	if (rep->u.events.cursor > h->cursor)
		h->cursor = rep->u.events.cursor;
	if (rep->u.events.done) {
		if (h->stream == STREAM_SSE && !h->done_sent)
			om_buf_printf(&h->out,
			              "id: %" PRIu64 "\nevent: done\ndata: {\"id\":%" PRIu64
			              ",\"kind\":\"done\"}\n\n",
			              h->cursor, h->cursor);
		h->stream_done = true;
	}
}

/*
 * An "event: counts" of a JOB_SHOW reply (no id: it is no cursor), when they
 * differ from the last ones sent (a quiet job's stream keeps its heartbeat
 * comments); with h->lock held.
 */
static void
counts_append_locked(struct hreq *h, const struct om_msg *rep)
{
	json_t *j = http_counts_json(rep);
	char *t = j ? json_dumps(j, JSON_COMPACT | JSON_ESCAPE_SLASH) : NULL;

	json_decref(j);
	if (t == NULL)
		return;
	if (h->counts_last != NULL && strcmp(h->counts_last, t) == 0) {
		free(t);
		return;
	}
	om_buf_printf(&h->out, "event: counts\ndata: %s\n\n", t);
	free(h->counts_last);
	h->counts_last = t;
}

/*
 * A reply of a stream's call; with h->lock held.  An SSE stream asks for the
 * job's counts with a FOLLOW reply at most every COUNTS_EVERY_MS (and with
 * the last one): the reply waits in h->held until they came, so the counts
 * go out before its events.  Takes what it keeps of *rep (zeroing it).
 */
static void
stream_take_locked(struct hreq *h, struct om_msg *rep)
{
	if (h->counts_pending) {
		h->counts_pending = false;
		h->counts_due = false;
		if (rep->type == OM_MSG_TABLE)
			counts_append_locked(h, rep);
		/* a refusal here (the job just went) is the FOLLOW's to report */
		if (h->held.type != OM_MSG_NONE) {
			stream_append_locked(h, &h->held);
			om_msg_release(&h->held);
		}
		return;
	}
	if (h->stream == STREAM_SSE && rep->type == OM_MSG_EVENTS && !h->stream_done &&
	    (rep->u.events.done || om_now_ms() - h->counts_ms >= COUNTS_EVERY_MS)) {
		h->held = *rep;
		memset(rep, 0, sizeof(*rep));
		h->counts_due = true;
		return;
	}
	stream_append_locked(h, rep);
}

/* The next FOLLOW, JOB_SHOW (counts) or JOB_OUTPUT of a stream; with h->lock held. */
static int
stream_call_locked(struct hreq *h)
{
	struct om_msg q;
	int rv;

	memset(&q, 0, sizeof(q));
	if (h->stream == STREAM_SSE && h->counts_due) {
		q.type = OM_MSG_JOB_SHOW;
		q.u.by_id.id = h->id;
		if ((rv = call_locked(h, WEB_API, &q, NULL, NULL)) == 0) {
			h->counts_pending = true;
			h->counts_ms = om_now_ms();
		}
		return rv;
	}
	if (h->stream == STREAM_SSE) {
		q.type = OM_MSG_FOLLOW;
		q.u.follow.job_id = h->id;
		q.u.follow.cursor = h->cursor;
		q.u.follow.wait_ms = FOLLOW_WAIT_MS;
	} else {
		q.type = OM_MSG_JOB_OUTPUT;
		q.u.job_output.job_id = h->id;
		q.u.job_output.cursor = h->cursor;
		q.u.job_output.host = h->host;
	}
	return call_locked(h, WEB_API, &q, NULL, NULL);
}

static ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct hreq *h = cls;
	struct om_msg rep;
	ssize_t n;

	(void)pos;
	for (;;) {
		if (take_reply(h, &rep)) {
			pthread_mutex_lock(&h->lock);
			stream_take_locked(h, &rep);
			pthread_mutex_unlock(&h->lock);
			om_msg_release(&rep);
		}
		pthread_mutex_lock(&h->lock);
		if (h->out.len > h->out_off) {
			n = (ssize_t)(h->out.len - h->out_off < max ? h->out.len - h->out_off
			                                            : max);
			memcpy(buf, h->out.data + h->out_off, (size_t)n);
			h->out_off += (size_t)n;
			if (h->out_off == h->out.len) {
				/* A long-lived stream keeps no multi-megabyte buffer
				 * between batches: thousands of open streams would. */
				if (h->out.cap > OUT_KEEP_MAX) {
					size_t ceiling = h->out.max;
					om_buf_release(&h->out);
					om_buf_init(&h->out, ceiling);
				} else {
					om_buf_reset(&h->out);
				}
				h->out_off = 0;
			}
			h->last_write_ms = om_now_ms();
			pthread_mutex_unlock(&h->lock);
			return n;
		}
		if (h->out.err != 0) {
			/* a reply larger than the buffer: end rather than lose bytes silently */
			pthread_mutex_unlock(&h->lock);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		if (h->stream_done || stopping(h->srv)) {
			pthread_mutex_unlock(&h->lock);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		if (h->have_reply) {
			pthread_mutex_unlock(&h->lock);
			continue;
		}
		if (h->pending == NULL) {
			int rv = stream_call_locked(h);
			h->retry = rv == OM_EAGAIN; /* the ticker tries again */
			if (rv != 0 && rv != OM_EAGAIN) {
				pthread_mutex_unlock(&h->lock);
				return MHD_CONTENT_READER_END_WITH_ERROR;
			}
		}
		h->suspended = true;
		MHD_suspend_connection(h->conn);
		pthread_mutex_unlock(&h->lock);
		return 0;
	}
}

static void
stream_free(void *cls)
{
	hreq_unref(cls);
}

/* Turns h into a stream response, its buffer already holding what the first reply gave. */
static enum MHD_Result
stream_start(struct hreq *h, enum stream_kind kind)
{
	struct MHD_Response *r;

	pthread_mutex_lock(&h->lock);
	h->stream = kind;
	h->refs++;
	h->last_write_ms = om_now_ms();
	pthread_mutex_unlock(&h->lock);
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, h, stream_free);
	if (r == NULL) {
		hreq_unref(h);
		return MHD_NO;
	}
	if (kind == STREAM_SSE) {
		MHD_add_response_header(r, "Content-Type", "text/event-stream");
		MHD_add_response_header(r, "X-Accel-Buffering", "no");
	} else {
		MHD_add_response_header(r, "Content-Type", "application/octet-stream");
		MHD_add_response_header(r, "Content-Disposition", "attachment");
	}
	MHD_add_response_header(r, "Cache-Control", "no-store");
	return queue(h, 200, r);
}

static enum MHD_Result
events_check_done(struct hreq *h, struct om_msg *rep)
{
	if (rep->type != OM_MSG_TABLE)
		return send_reply_error(h, rep);
	/* the job is visible to the caller: the stream starts at the cursor, with its counts */
	pthread_mutex_lock(&h->lock);
	om_buf_printf(&h->out, "retry: 2000\n\n");
	counts_append_locked(h, rep);
	h->counts_ms = om_now_ms();
	pthread_mutex_unlock(&h->lock);
	return stream_start(h, STREAM_SSE);
}

static enum MHD_Result
route_events(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_JOB_SHOW};
	const char *v = header(h, "Last-Event-ID");

	if (v == NULL || *v == '\0')
		v = arg(h, "cursor");
	if (v != NULL && *v != '\0') {
		char *end;
		errno = 0;
		h->cursor = strtoull(v, &end, 10);
		if (errno != 0 || *end != '\0' || v[0] == '-')
			return send_error(h, 400, "cursor", "cursor must be an event id");
	}
	q.u.by_id.id = h->id;
	return call(h, WEB_API, &q, events_check_done);
}

static enum MHD_Result
output_first_done(struct hreq *h, struct om_msg *rep)
{
	if (rep->type != OM_MSG_EVENTS)
		return send_reply_error(h, rep);
	pthread_mutex_lock(&h->lock);
	h->stream = STREAM_RAW;
	stream_append_locked(h, rep);
	pthread_mutex_unlock(&h->lock);
	return stream_start(h, STREAM_RAW);
}

static enum MHD_Result
route_output(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_JOB_OUTPUT};
	const char *v = arg(h, "host");

	if (v == NULL || !om_name_valid(v))
		return send_error(h, 400, "host", "host must name one host of the job");
	snprintf(h->host, sizeof(h->host), "%s", v);
	q.u.job_output.job_id = h->id;
	q.u.job_output.host = h->host;
	return call(h, WEB_API, &q, output_first_done);
}

/* --- inventory, workers, modules */

static json_t *
host_json(const struct om_host *x)
{
	json_t *g = json_array(), *o;
	uint32_t i;

	for (i = 0; i < x->ngroups; i++)
		json_array_append_new(g, json_string(x->groups[i]));
	o = json_pack("{s:s?, s:s?, s:i, s:s?, s:s?, s:o}", "name", x->name, "addr", x->addr,
	              "port", (int)(x->port ? x->port : 22), "user", x->user, "idc", x->idc,
	              "groups", g);
	return o;
}

static enum MHD_Result
hosts_done(struct hreq *h, struct om_msg *rep)
{
	json_t *arr;
	uint32_t i;

	if (rep->type != OM_MSG_HOSTS)
		return send_reply_error(h, rep);
	arr = json_array();
	for (i = 0; i < rep->u.hosts.nhosts; i++)
		json_array_append_new(arr, host_json(&rep->u.hosts.hosts[i]));
	return send_json(h, 200, json_pack("{s:o}", "hosts", arr));
}

static enum MHD_Result
route_hosts(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_HOSTS_LIST};
	const char *v = arg(h, "selector");

	if (v != NULL && strlen(v) > OM_MAX_TEXT)
		return send_error(h, 400, "selector", "selector is too long");
	q.u.hosts_list.selector = (char *)(v && *v ? v : "all");
	return call(h, WEB_API, &q, hosts_done);
}

static enum MHD_Result
host_show_done(struct hreq *h, struct om_msg *rep)
{
	json_t *o;

	if (rep->type != OM_MSG_TABLE)
		return send_reply_error(h, rep);
	if ((o = http_host_show_json(rep)) == NULL)
		return send_error(h, 502, NULL, "unexpected answer from the master core");
	return send_json(h, 200, json_pack("{s:o}", "host", o));
}

static enum MHD_Result
route_host(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_HOST_SHOW};

	q.u.by_name.name = h->name;
	return call(h, WEB_API, &q, host_show_done);
}

static enum MHD_Result
host_add_done(struct hreq *h, struct om_msg *rep)
{
	if (rep->type != OM_MSG_DONE)
		return send_reply_error(h, rep);
	return send_json(h, 201, json_pack("{s:I}", "count", (json_int_t)rep->u.done.count));
}

static enum MHD_Result
route_host_add(struct hreq *h)
{
	char err[256], field[32];
	struct om_msg q = {.type = OM_MSG_HOSTS_ADD};
	struct om_host host;
	enum MHD_Result ret;
	json_t *j;

	if ((j = parse_body(h, err, sizeof(err))) == NULL)
		return send_error(h, 400, "", "%s", err);
	if (http_host_from_json(j, &host, field, sizeof(field), err, sizeof(err)) != 0) {
		json_decref(j);
		return send_error(h, 400, field, "%s", err);
	}
	json_decref(j);
	q.u.hosts.hosts = &host;
	q.u.hosts.nhosts = 1;
	ret = call(h, WEB_API, &q, host_add_done);
	om_host_release(&host);
	return ret;
}

/* Hosts per HOSTS_ADD of an import, as omctl sends them (cli/omctl.c IMPORT_BATCH). */
#define IMPORT_BATCH 1000

static enum MHD_Result import_next(struct hreq *h);

static enum MHD_Result
import_done(struct hreq *h, struct om_msg *rep)
{
	if (rep->type != OM_MSG_DONE) {
		char field[OM_MAX_FIELD + 1];
		if (rep->type != OM_MSG_ERROR)
			return send_error(h, 502, NULL, "unexpected answer from the master core");
		/* every host was checked here first: whatever the core refuses is the text's */
		http_error_field(rep, field, sizeof(field));
		return send_error(h, (unsigned)http_status_of(rep->u.error.code),
		                  field[0] ? "text" : NULL, "%s (%" PRIu64 " of %zu hosts stored)",
		                  rep->u.error.text ? rep->u.error.text : "refused", h->imp_count,
		                  h->nimp);
	}
	h->imp_count += rep->u.done.count;
	return import_next(h);
}

static enum MHD_Result
import_next(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_HOSTS_ADD};
	size_t take = h->nimp - h->imp_off;

	if (take == 0)
		return send_json(h, 200, json_pack("{s:I}", "count", (json_int_t)h->imp_count));
	if (take > IMPORT_BATCH)
		take = IMPORT_BATCH;
	q.u.hosts.hosts = h->imp + h->imp_off;
	q.u.hosts.nhosts = (uint32_t)take;
	h->imp_off += take;
	return call(h, WEB_API, &q, import_done);
}

static enum MHD_Result
route_hosts_import(struct hreq *h)
{
	const char *text = NULL, *idc = NULL;
	char err[512];
	size_t len = 0;
	json_error_t e;
	json_t *j;
	int rv;

	if ((j = parse_body(h, err, sizeof(err))) == NULL)
		return send_error(h, 400, "", "%s", err);
	if (json_unpack_ex(j, &e, JSON_STRICT, "{s:s%, s?s}", "text", &text, &len, "default_idc",
	                   &idc) != 0) {
		const char *f = strstr(e.text, "default_idc") ? "default_idc" : "text";
		json_decref(j);
		return send_error(h, 400, f, "%s", e.text);
	}
	if (idc != NULL && !om_name_valid(idc)) {
		json_decref(j);
		return send_error(h, 400, "default_idc", "default_idc must be an IDC name");
	}
	/* the whole inventory is checked before anything is stored */
	rv = om_inventory_parse_ini(text, len, idc, &h->imp, &h->nimp, err, sizeof(err));
	json_decref(j);
	if (rv == OM_ENOMEM)
		return send_error(h, 503, NULL, "the master is out of memory");
	if (rv != 0)
		return send_error(h, 400, "text", "%s", err);
	return import_next(h);
}

static enum MHD_Result
workers_done(struct hreq *h, struct om_msg *rep)
{
	json_t *arr;
	uint32_t i;

	if (rep->type != OM_MSG_WORKERS)
		return send_reply_error(h, rep);
	arr = json_array();
	for (i = 0; i < rep->u.workers.nworkers; i++) {
		const struct om_worker_info *w = &rep->u.workers.workers[i];
		json_array_append_new(arr, json_pack("{s:s?, s:s?, s:s?, s:b, s:I, s:i}", "name",
		                                     w->name, "idc", w->idc, "fingerprint",
		                                     w->fingerprint, "connected", w->connected,
		                                     "last_seen_ms", (json_int_t)w->last_seen_ms,
		                                     "running", (int)w->running));
	}
	return send_json(h, 200, json_pack("{s:o}", "workers", arr));
}

static enum MHD_Result
route_workers(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_WORKERS_LIST};

	return call(h, WEB_API, &q, workers_done);
}

static json_t *
module_json(const struct om_module_info *mi)
{
	json_t *schema = mi->schema ? json_loads(mi->schema, JSON_REJECT_DUPLICATES, NULL) : NULL;

	return json_pack("{s:s?, s:s?, s:s?, s:s?, s:o}", "name", mi->name, "version", mi->version,
	                 "kind", mi->kind, "description", mi->description, "schema",
	                 schema ? schema : json_array());
}

static enum MHD_Result
modules_done(struct hreq *h, struct om_msg *rep)
{
	json_t *arr;
	uint32_t i;

	if (rep->type != OM_MSG_MODULES)
		return send_reply_error(h, rep);
	if (h->name[0] != '\0') {
		if (rep->u.modules.nmodules != 1)
			return send_error(h, 404, NULL, "no such module");
		return send_json(h, 200, module_json(&rep->u.modules.modules[0]));
	}
	arr = json_array();
	for (i = 0; i < rep->u.modules.nmodules; i++)
		json_array_append_new(arr, module_json(&rep->u.modules.modules[i]));
	return send_json(h, 200, json_pack("{s:o}", "modules", arr));
}

static enum MHD_Result
route_modules(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_MODULES_LIST};

	return call(h, WEB_API, &q, modules_done);
}

static enum MHD_Result
route_module(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_MODULE_SHOW};

	q.u.by_name.name = h->name;
	return call(h, WEB_API, &q, modules_done);
}

/* --- administration: keys, users, tokens, audit */

static enum MHD_Result
table_done(struct hreq *h, struct om_msg *rep)
{
	static const char *const ints[] = {"ID", NULL};
	/* comma lists of the tables, as arrays (never null) */
	static const char *const lists[] = {"scopes", "idcs", "groups", "modules", NULL};
	const char *key = h->rt->name;
	json_t *rows;
	size_t i;

	if (rep->type != OM_MSG_TABLE)
		return send_reply_error(h, rep);
	rows = http_table_json(rep, ints);
	for (i = 0; i < json_array_size(rows); i++) {
		json_t *o = json_array_get(rows, i);
		const char *const *l;
		for (l = lists; *l != NULL; l++)
			if (json_object_get(o, *l) != NULL) {
				const char *one[] = {*l, NULL};
				http_lists_as_arrays(o, one);
			}
	}
	/* "keys.list" -> {"keys": [...]} */
	{
		char k[32];
		size_t n = strcspn(key, ".");
		snprintf(k, sizeof(k), "%.*s", (int)n, key);
		return send_json(h, 200, json_pack("{s:o}", k, rows));
	}
}

static enum MHD_Result
done_done(struct hreq *h, struct om_msg *rep)
{
	if (rep->type != OM_MSG_DONE)
		return send_reply_error(h, rep);
	return send_json(h, 200,
	                 json_pack("{s:b, s:I, s:s?}", "ok", 1, "count",
	                           (json_int_t)rep->u.done.count, "text", rep->u.done.text));
}

static enum MHD_Result
secret_done(struct hreq *h, struct om_msg *rep)
{
	if (rep->type != OM_MSG_SECRET)
		return send_reply_error(h, rep);
	return send_json(h, 201,
	                 json_pack("{s:I, s:s?, s:I}", "id", (json_int_t)rep->u.secret.id, "secret",
	                           rep->u.secret.secret, "expires_ms",
	                           (json_int_t)rep->u.secret.expires_ms));
}

static enum MHD_Result
route_keys(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_KEYS_LIST};

	return call(h, WEB_API, &q, table_done);
}

static enum MHD_Result
route_key_set(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_KEY_SET};
	const char *action = strrchr(h->rt->pattern, '/') + 1;
	const char *fp = NULL;
	enum MHD_Result ret;
	char err[256];
	json_error_t e;
	json_t *j = NULL;

	if (h->body.len > 0) {
		if ((j = parse_body(h, err, sizeof(err))) == NULL)
			return send_error(h, 400, "", "%s", err);
		if (json_unpack_ex(j, &e, JSON_STRICT, "{s?s}", "fingerprint", &fp) != 0) {
			json_decref(j);
			return send_error(h, 400, "fingerprint", "%s", e.text);
		}
	}
	q.u.key_set.id = h->id;
	q.u.key_set.state = strcmp(action, "accept") == 0   ? OM_KEY_ACCEPTED
	                    : strcmp(action, "reject") == 0 ? OM_KEY_REJECTED
	                                                    : OM_KEY_REVOKED;
	q.u.key_set.fingerprint = (char *)fp;
	ret = call(h, WEB_API, &q, done_done);
	json_decref(j);
	return ret;
}

static enum MHD_Result
route_users(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_USERS_LIST};

	return call(h, WEB_API, &q, table_done);
}

static enum MHD_Result
user_add_done(struct hreq *h, struct om_msg *rep)
{
	if (rep->type != OM_MSG_DONE)
		return send_reply_error(h, rep);
	/* DONE's count is the new user's id */
	return send_json(h, 201,
	                 json_pack("{s:b, s:I, s:s}", "ok", 1, "id", (json_int_t)rep->u.done.count,
	                           "name", h->name));
}

static enum MHD_Result
route_user_add(struct hreq *h)
{
	char err[256], field[32];
	struct om_msg q;
	enum MHD_Result ret;
	json_t *j;

	j = parse_body(h, err, sizeof(err));
	om_wipe(h->body.data, h->body.len); /* the password: parsed or not, gone from here */
	if (j == NULL)
		return send_error(h, 400, "", "%s", err);
	if (http_user_from_json(j, &q, field, sizeof(field), err, sizeof(err)) != 0) {
		json_decref(j);
		return send_error(h, 400, field, "%s", err);
	}
	json_decref(j);
	snprintf(h->name, sizeof(h->name), "%s", q.u.user.name);
	ret = call(h, WEB_API, &q, user_add_done);
	http_user_release(&q);
	return ret;
}

static enum MHD_Result
route_user_password(struct hreq *h)
{
	static const char *const keys[] = {"password", NULL};
	struct om_msg q = {.type = OM_MSG_USER_PASSWD};
	char err[256], field[32], *pw = NULL;
	enum MHD_Result ret;
	json_t *j, *v;
	size_t len;

	j = parse_body(h, err, sizeof(err));
	om_wipe(h->body.data, h->body.len); /* the password: parsed or not, gone from here */
	if (j == NULL)
		return send_error(h, 400, "", "%s", err);
	if (!json_is_object(j) ||
	    known_keys(j, keys, field, sizeof(field), err, sizeof(err)) != 0) {
		bool obj = json_is_object(j);
		json_decref(j);
		return obj ? send_error(h, 400, field, "%s", err)
		           : send_error(h, 400, "", "the body must be a JSON object");
	}
	v = json_object_get(j, "password");
	len = json_is_string(v) ? json_string_length(v) : 0;
	if (!json_is_string(v) || len < 8 || len > OM_MAX_SECRET ||
	    memchr(json_string_value(v), '\0', len) != NULL) {
		json_decref(j);
		return send_error(h, 400, "password", "password must have 8 to %d characters",
		                  OM_MAX_SECRET);
	}
	if ((pw = dup_str(v)) == NULL) {
		json_decref(j);
		return send_error(h, 503, NULL, "the master is out of memory");
	}
	json_decref(j);
	q.u.user.name = h->name;
	q.u.user.password = pw;
	ret = call(h, WEB_API, &q, done_done);
	om_wipe(pw, len);
	om_free(pw);
	return ret;
}

static enum MHD_Result
route_user_disable(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_USER_DISABLE};

	/* USER_DISABLE's flag: true disables, false enables */
	q.u.user.name = h->name;
	q.u.user.flag = strcmp(strrchr(h->rt->pattern, '/') + 1, "disable") == 0;
	return call(h, WEB_API, &q, done_done);
}

static enum MHD_Result
route_tokens(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_TOKENS_LIST};

	return call(h, WEB_API, &q, table_done);
}

static enum MHD_Result
route_token_create(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_TOKEN_CREATE};
	const char *name = NULL, *user = NULL;
	json_int_t ttl = 0;
	json_t *scopes = NULL, *j;
	char *sv[OM_MAX_SCOPES], err[256];
	enum MHD_Result ret;
	json_error_t e;
	size_t i;

	if ((j = parse_body(h, err, sizeof(err))) == NULL)
		return send_error(h, 400, "", "%s", err);
	if (json_unpack_ex(j, &e, JSON_STRICT, "{s:s, s:o, s?s, s?I}", "name", &name, "scopes",
	                   &scopes, "user", &user, "ttl_s", &ttl) != 0) {
		const char *f = strstr(e.text, "scopes")  ? "scopes"
		                : strstr(e.text, "ttl_s") ? "ttl_s"
		                : strstr(e.text, "user")  ? "user"
		                                          : "name";
		json_decref(j);
		return send_error(h, 400, f, "%s", e.text);
	}
	if (!om_name_valid(name)) {
		json_decref(j);
		return send_error(h, 400, "name", "name must be a token name");
	}
	if (!json_is_array(scopes) || json_array_size(scopes) == 0 ||
	    json_array_size(scopes) > OM_MAX_SCOPES || ttl < 0) {
		json_decref(j);
		return send_error(h, 400, ttl < 0 ? "ttl_s" : "scopes",
		                  "scopes is a list of read, run, admin; ttl_s is seconds");
	}
	for (i = 0; i < json_array_size(scopes); i++) {
		if (!json_is_string(json_array_get(scopes, i))) {
			json_decref(j);
			return send_error(h, 400, "scopes", "scopes must be strings");
		}
		sv[i] = (char *)json_string_value(json_array_get(scopes, i));
	}
	q.u.token.name = (char *)name;
	q.u.token.user = (char *)user;
	q.u.token.scopes = sv;
	q.u.token.nscopes = (uint32_t)json_array_size(scopes);
	q.u.token.ttl_s = (uint64_t)ttl;
	ret = call(h, WEB_API, &q, secret_done);
	json_decref(j);
	return ret;
}

static enum MHD_Result
route_token_revoke(struct hreq *h)
{
	struct om_msg q = {.type = OM_MSG_TOKEN_REVOKE};

	q.u.by_id.id = h->id;
	return call(h, WEB_API, &q, done_done);
}

static enum MHD_Result
route_audit(struct hreq *h)
{
	struct om_msg q;
	char field[16], err[128];

	if (http_audit_query(arg(h, "limit"), arg(h, "after"), arg(h, "before"), arg(h, "order"),
	                     &q, field, sizeof(field), err, sizeof(err)) != 0)
		return send_error(h, 400, field, "%s", err);
	return call(h, WEB_API, &q, table_done);
}

/*
 * Every route and the permission it needs: the core checks it (and the
 * operation's own) for every call; anything else is 404, or 405 for a
 * known path with another method.
 */
static const struct http_route routes[] = {
        {"POST", "/api/v1/login", WEB_PUBLIC, "login", route_login},
        {"POST", "/api/v1/logout", WEB_USER, "logout", route_logout},
        {"GET", "/api/v1/me", WEB_USER, "me", route_me},
        {"GET", "/api/v1/openapi.json", WEB_PUBLIC, "openapi", route_openapi},
        {"GET", "/api/v1/jobs", WEB_READ, "jobs.list", route_jobs},
        {"POST", "/api/v1/jobs", WEB_RUN, "jobs.submit", route_submit},
        {"GET", "/api/v1/jobs/{id}", WEB_READ, "jobs.show", route_job},
        {"GET", "/api/v1/jobs/{id}/output", WEB_READ, "jobs.output", route_output},
        {"GET", "/api/v1/jobs/{id}/events", WEB_READ, "jobs.events", route_events},
        {"POST", "/api/v1/jobs/{id}/cancel", WEB_RUN, "jobs.cancel", route_cancel},
        {"GET", "/api/v1/hosts", WEB_READ, "hosts.list", route_hosts},
        {"POST", "/api/v1/hosts", WEB_ADMIN, "hosts.add", route_host_add},
        {"POST", "/api/v1/hosts/import", WEB_ADMIN, "hosts.import", route_hosts_import},
        {"GET", "/api/v1/hosts/{name}", WEB_READ, "hosts.show", route_host},
        {"GET", "/api/v1/workers", WEB_READ, "workers.list", route_workers},
        {"GET", "/api/v1/modules", WEB_READ, "modules.list", route_modules},
        {"GET", "/api/v1/modules/{name}", WEB_READ, "modules.show", route_module},
        {"GET", "/api/v1/keys", WEB_ADMIN, "keys.list", route_keys},
        {"POST", "/api/v1/keys/{id}/accept", WEB_ADMIN, "keys.accept", route_key_set},
        {"POST", "/api/v1/keys/{id}/reject", WEB_ADMIN, "keys.reject", route_key_set},
        {"POST", "/api/v1/keys/{id}/revoke", WEB_ADMIN, "keys.revoke", route_key_set},
        {"GET", "/api/v1/users", WEB_ADMIN, "users.list", route_users},
        {"POST", "/api/v1/users", WEB_ADMIN, "users.add", route_user_add},
        /* self or an administrator: the operation checks (PERM_SELF) */
        {"POST", "/api/v1/users/{name}/password", WEB_USER, "users.password", route_user_password},
        {"POST", "/api/v1/users/{name}/disable", WEB_ADMIN, "users.disable", route_user_disable},
        {"POST", "/api/v1/users/{name}/enable", WEB_ADMIN, "users.enable", route_user_disable},
        {"GET", "/api/v1/tokens", WEB_USER, "tokens.list", route_tokens},
        {"POST", "/api/v1/tokens", WEB_USER, "tokens.create", route_token_create},
        {"POST", "/api/v1/tokens/{id}/revoke", WEB_USER, "tokens.revoke", route_token_revoke},
        {"GET", "/api/v1/audit", WEB_ADMIN, "audit.list", route_audit},
};
static const size_t nroutes = sizeof(routes) / sizeof(routes[0]);

/* ================================================================ the access handler */

/* Origin, when a browser sends one, must be this server. */
static bool
origin_ok(struct hreq *h)
{
	const char *origin = header(h, "Origin"), *host = header(h, "Host");
	char want[320];

	if (origin == NULL)
		return true;
	if (host == NULL)
		return false;
	snprintf(want, sizeof(want), "%s://%s", h->srv->tls ? "https" : "http", host);
	return strcmp(origin, want) == 0;
}

static enum MHD_Result
start(struct hreq *h, const char *url)
{
	if (h->too_big)
		return send_error(h, 413, NULL, "the request body is larger than %zu bytes",
		                  h->srv->cfg.max_body);
	if (strncmp(url, "/api/", 5) != 0) {
		if (h->state_changing)
			return send_error(h, 405, NULL, "static files are read with GET");
		return serve_file(h, url);
	}
	if (h->early == 401)
		return send_error(h, 401, NULL,
		                  "only 'Authorization: Bearer <token>' is understood");
	if (h->rt == NULL)
		return h->early == 405
		               ? send_error(h, 405, NULL, "method not allowed on this route")
		               : send_error(h, 404, NULL, "no such route");
	if (h->state_changing && !origin_ok(h))
		return send_error(h, 403, NULL, "cross-origin request refused");
	if (h->rt->perm != WEB_PUBLIC && h->session[0] == '\0' && h->bearer[0] == '\0')
		return send_error(h, 401, NULL,
		                  "authentication required: log in or send an API token");
	if (h->state_changing && h->bearer[0] == '\0' && h->rt->perm != WEB_PUBLIC &&
	    h->csrf[0] == '\0')
		return send_error(h, 403, NULL, "missing X-CSRF-Token header");
	return h->rt->start(h);
}

static enum MHD_Result
on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	struct http_server *s = cls;
	struct hreq *h = *con_cls;
	struct om_msg rep;

	(void)version;
	if (h == NULL) {
		const char *cl;
		if ((h = hreq_new(s, conn, url, method)) == NULL)
			return MHD_NO;
		*con_cls = h;
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
		if (cl != NULL) {
			char *end;
			unsigned long long v;
			errno = 0;
			v = strtoull(cl, &end, 10);
			if (errno != 0 || *end != '\0' || v > s->cfg.max_body) {
				h->too_big = true;
				h->started = true;
				/* answered before the body is read; MHD closes afterwards */
				return send_error(h, 413, NULL,
				                  "the request body is larger than %zu bytes",
				                  s->cfg.max_body);
			}
		}
		return MHD_YES;
	}
	if (h->answered) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (*upload_size != 0) {
		if (!h->too_big && om_buf_append(&h->body, upload_data, *upload_size) != 0)
			h->too_big = true; /* keep reading, answer 413 at the end */
		*upload_size = 0;
		return MHD_YES;
	}
	if (!h->started) {
		h->started = true;
		return start(h, url);
	}
	if (take_reply(h, &rep)) {
		enum MHD_Result ret;
		step_fn next = h->next;
		h->next = NULL;
		ret = stopping(s) ? send_error(h, 503, NULL, "the master is stopping")
		      : next      ? next(h, &rep)
		                  : send_error(h, 500, NULL, "no handler for the answer");
		om_msg_release(&rep);
		return ret;
	}
	if (stopping(s))
		return send_error(h, 503, NULL, "the master is stopping");
	/* resumed without a reply (e.g. at shutdown): wait again */
	pthread_mutex_lock(&h->lock);
	if (!h->have_reply && h->pending != NULL) {
		h->suspended = true;
		MHD_suspend_connection(h->conn);
		pthread_mutex_unlock(&h->lock);
		return MHD_YES;
	}
	pthread_mutex_unlock(&h->lock);
	return send_error(h, 500, NULL, "lost track of the request");
}

/* Unescapes %XX in place, except %00, which stays "%00" (refused as a file name, never a NUL). */
static size_t
unescape(void *cls, struct MHD_Connection *c, char *s)
{
	char *r = s, *w = s;

	(void)cls;
	(void)c;
	while (*r) {
		if (r[0] == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
			char hx[3] = {r[1], r[2], 0};
			unsigned v = (unsigned)strtoul(hx, NULL, 16);
			if (v != 0) {
				*w++ = (char)v;
				r += 3;
				continue;
			}
		}
		*w++ = *r++;
	}
	*w = '\0';
	return (size_t)(w - s);
}

/* ================================================================ ticker, start, stop */

static void *
ticker(void *arg)
{
	struct http_server *s = arg;
	struct timespec ts;

	pthread_mutex_lock(&s->lock);
	while (!stopping(s)) {
		struct hreq *h;
		int64_t now = om_now_ms();

		for (h = s->live; h != NULL; h = h->lnext) {
			pthread_mutex_lock(&h->lock);
			if (h->stream != STREAM_NONE && h->suspended && h->conn != NULL) {
				bool wake = h->retry;
				if (h->stream == STREAM_SSE &&
				    now - h->last_write_ms >= PING_IDLE_MS) {
					/* a suspended stream notices a closed client only when it
					 * writes */
					om_buf_printf(&h->out, ": ping\n\n");
					wake = true;
				}
				if (wake) {
					h->retry = false;
					h->suspended = false;
					MHD_resume_connection(h->conn);
				}
			}
			pthread_mutex_unlock(&h->lock);
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static int
parse_listen(const char *listen, char *host, size_t hl, uint16_t *port)
{
	const char *colon = strrchr(listen, ':');
	uint32_t p;

	if (colon == NULL || (size_t)(colon - listen) >= hl)
		return OM_EINVAL;
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if (om_parse_u32(colon + 1, 1, 65535, &p) != 0)
		return OM_EINVAL;
	*port = (uint16_t)p;
	return 0;
}

int
http_start(struct http_server **out, const struct http_config *cfg, struct master *m)
{
	struct http_server *s;
	struct sockaddr_storage ss;
	char host[256];
	uint16_t port;
	unsigned flags;
	size_t len;

	*out = NULL;
	if ((s = om_calloc(1, sizeof(*s))) == NULL)
		return OM_ENOMEM;
	s->m = m;
	s->cfg = *cfg;
	if (s->cfg.max_body == 0)
		s->cfg.max_body = MAX_BODY_DEFAULT;
	if (s->cfg.threads == 0)
		s->cfg.threads = 4;
	if (s->cfg.max_conns == 0)
		s->cfg.max_conns = 1000;
	if (s->cfg.per_ip == 0)
		s->cfg.per_ip = 64;
	if (s->cfg.idle_s == 0)
		s->cfg.idle_s = 60;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	if (cfg->web_root == NULL || realpath(cfg->web_root, s->root) == NULL) {
		om_err("web root '%s': %s", cfg->web_root ? cfg->web_root : "(none)",
		       strerror(errno));
		http_stop(s);
		return OM_EINVAL;
	}
	if (parse_listen(cfg->listen, host, sizeof(host), &port) != 0) {
		om_err("--http-listen wants ADDR:PORT, not '%s'", cfg->listen);
		http_stop(s);
		return OM_EINVAL;
	}
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
	} else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
	} else {
		om_err("--http-listen: '%s' is not an IP address", host);
		http_stop(s);
		return OM_EINVAL;
	}
	if ((cfg->tls_cert != NULL) != (cfg->tls_key != NULL)) {
		om_err("--tls-cert and --tls-key go together");
		http_stop(s);
		return OM_EINVAL;
	}
	if (cfg->tls_cert != NULL) {
		uint8_t *c = NULL, *k = NULL;
		if (om_read_file(cfg->tls_cert, 1 << 20, &c, &len) != 0 ||
		    om_read_file(cfg->tls_key, 1 << 20, &k, &len) != 0) {
			om_err("cannot read the TLS certificate or key");
			om_free(c);
			om_free(k);
			http_stop(s);
			return OM_EINVAL;
		}
		s->cert = (char *)c;
		s->key = (char *)k;
		s->tls = true;
	}
	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
	        MHD_USE_ERROR_LOG | (s->tls ? MHD_USE_TLS : 0) |
	        (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
	if (s->tls)
		s->d = MHD_start_daemon(
		        flags, port, NULL, NULL, on_access, s, MHD_OPTION_SOCK_ADDR, &ss,
		        MHD_OPTION_THREAD_POOL_SIZE, s->cfg.threads, MHD_OPTION_CONNECTION_LIMIT,
		        s->cfg.max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->cfg.per_ip,
		        MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.idle_s,
		        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536,
		        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_UNESCAPE_CALLBACK,
		        unescape, s, MHD_OPTION_HTTPS_MEM_CERT, s->cert, MHD_OPTION_HTTPS_MEM_KEY,
		        s->key, MHD_OPTION_HTTPS_PRIORITIES,
		        "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", MHD_OPTION_END);
	else
		s->d = MHD_start_daemon(flags, port, NULL, NULL, on_access, s, MHD_OPTION_SOCK_ADDR,
		                        &ss, MHD_OPTION_THREAD_POOL_SIZE, s->cfg.threads,
		                        MHD_OPTION_CONNECTION_LIMIT, s->cfg.max_conns,
		                        MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->cfg.per_ip,
		                        MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.idle_s,
		                        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536,
		                        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
		                        MHD_OPTION_UNESCAPE_CALLBACK, unescape, s, MHD_OPTION_END);
	if (s->d == NULL) {
		om_err("cannot start the HTTP server on '%s'", cfg->listen);
		http_stop(s);
		return OM_ESYS;
	}
	if (pthread_create(&s->ticker, NULL, ticker, s) == 0)
		s->ticker_on = true;
	om_info("serving the console and REST API on %s://%s (web root %s)",
	        s->tls ? "https" : "http", cfg->listen, s->root);
	*out = s;
	return 0;
}

void
http_stop(struct http_server *s)
{
	struct hreq *h;

	if (s == NULL)
		return;
	pthread_mutex_lock(&s->lock);
	__atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&s->cond);
	/* MHD refuses to stop with suspended connections: wake them all */
	for (h = s->live; h != NULL; h = h->lnext) {
		pthread_mutex_lock(&h->lock);
		if (h->suspended && h->conn != NULL) {
			h->suspended = false;
			MHD_resume_connection(h->conn);
		}
		pthread_mutex_unlock(&h->lock);
	}
	pthread_mutex_unlock(&s->lock);
	if (s->ticker_on)
		pthread_join(s->ticker, NULL);
	if (s->d != NULL)
		MHD_stop_daemon(s->d);
	if (s->key != NULL)
		om_wipe(s->key, strlen(s->key));
	om_free(s->cert);
	om_free(s->key);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	om_free(s);
}
