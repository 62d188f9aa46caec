/*
 * Identity and access for om-master: worker keys (pending, accepted,
 * rejected, revoked; one-time enrollment tokens; IDC binding), client
 * authentication (API tokens or user and password), the RPC permission
 * table, target scope, the audit trail and the administrative operations.
 *
 * Every refusal is one line to the caller (no internals), a log line and an
 * audit row; nothing is written before every check has passed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "master_int.h"

#define AUDIT_REFUSAL_EVERY_MS 10000
#define AUDIT_REFUSAL_BURST 20
#define DEFAULT_TOKEN_TTL_S (30 * 86400)
#define MAX_TOKEN_TTL_S (366 * 86400)
#define MAX_ENROLL_TTL_S (7 * 86400)
#define AUDIT_LIST_MAX 1000

/* ------------------------------------------------------------------ audit */

/* Hash of the source address without its port, and the action. */
static uint64_t
fnv1a(const char *a, const char *b)
{
	uint64_t h = 1469598103934665603ull;
	const char *colon = strrchr(a, ':');
	const char *end = colon && colon > a && colon[-1] != ':' ? colon : a + strlen(a);

	for (; a < end; a++)
		h = (h ^ (uint8_t)*a) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull;
	for (; *b; b++)
		h = (h ^ (uint8_t)*b) * 1099511628211ull;
	return h ? h : 1;
}

void
audit(struct master *m, const char *actor, const char *source, const char *action,
      const char *target, const char *outcome, const char *fmt, ...)
{
	char detail[1024];
	va_list ap;
	int rv;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (strcmp(outcome, "ok") != 0) {
		/*
		 * Refusals are rate-limited twice: one row per source, action and
		 * actor every AUDIT_REFUSAL_EVERY_MS (distinct workers behind one
		 * address are each recorded), and at most AUDIT_REFUSAL_BURST rows
		 * per source and action in that window, so names a peer invents
		 * cannot flood the table.  The next row counts what was suppressed.
		 */
		uint64_t ka = fnv1a(source ? source : "", action) ^ fnv1a(actor ? actor : "", "");
		uint64_t ks = fnv1a(source ? source : "", action) ^ 0x9e3779b97f4a7c15ull;
		struct audit_limit *la = &m->audit_limits[ka % 256];
		struct audit_limit *ls = &m->audit_limits[(ks >> 8) % 256];
		int64_t now = om_now_ms();
		unsigned more;

		if (la->key == ka && now - la->last_ms < AUDIT_REFUSAL_EVERY_MS) {
			la->suppressed++;
			return;
		}
		if (ls->key != ks || now - ls->last_ms >= AUDIT_REFUSAL_EVERY_MS) {
			if (ls->key != ks)
				ls->suppressed = 0;
			ls->key = ks;
			ls->last_ms = now;
			ls->burst = 0;
		}
		if (ls->burst >= AUDIT_REFUSAL_BURST) {
			ls->suppressed++;
			return;
		}
		ls->burst++;
		more = (la->key == ka ? la->suppressed : 0) + ls->suppressed;
		if (more > 0) {
			size_t len = strlen(detail);
			snprintf(detail + len, sizeof(detail) - len,
			         " (and %u more refusals suppressed)", more);
		}
		la->key = ka;
		la->last_ms = now;
		la->suppressed = 0;
		ls->suppressed = 0;
	}
	rv = om_store_audit(m->store, actor ? actor : "-", source ? source : "-", action,
	                    target ? target : "-", outcome, detail);
	if (rv != 0)
		om_err("cannot write an audit row (%s %s %s): %s", actor ? actor : "-", action,
		       outcome, om_store_errmsg(m->store));
}

/* ----------------------------------------------------------- worker keys */

static void
worker_refuse(struct master *m, struct om_rpc_req *r, const char *fp, const char *what,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
worker_refuse(struct master *m, struct om_rpc_req *r, const char *fp, const char *what,
              const char *fmt, ...)
{
	char reason[512], actor[OM_MAX_NAME + 32];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	snprintf(actor, sizeof(actor), "worker '%s'", r->msg.u.hello.name);
	om_warn("refused %s from %s (key %.16s): %s", actor, r->peer, fp, reason);
	audit(m, actor, r->peer, "worker.hello", what, "refused", "key %s: %s", fp, reason);
	om_rpc_refuse(r, OM_EAUTH, reason);
}

void
auth_worker_hello(struct master *m, struct om_rpc_req *r)
{
	const struct om_msg *h = &r->msg;
	struct om_msg welcome = {.type = OM_MSG_WELCOME};
	struct om_key_info key;
	struct wconn *w;
	struct peer *p;
	char fp[65];
	uint64_t id = 0, worker_id = 0;
	int rv;

	memset(&key, 0, sizeof(key));
	if (r->pattern != OM_NOISE_IK || h->type != OM_MSG_HELLO) {
		audit(m, "-", r->peer, "worker.hello", "-", "refused",
		      "worker endpoint expects an IK handshake carrying HELLO (got type %d)",
		      (int)h->type);
		om_rpc_refuse(r, OM_EPROTO, "this endpoint accepts only worker HELLO");
		return;
	}
	om_key_fingerprint(r->remote_static, fp);
	if (h->u.hello.version != OM_PROTO_VERSION) {
		worker_refuse(m, r, fp, h->u.hello.name, "unsupported protocol version %u",
		              h->u.hello.version);
		return;
	}
	rv = om_store_key_find(m->store, fp, &key);
	if (rv == OM_ENOTFOUND && h->u.hello.secret != NULL) {
		/* First contact with an enrollment token: accepted for the token's IDC. */
		rv = om_store_key_enroll(m->store, h->u.hello.secret, h->u.hello.name,
		                         h->u.hello.idc, fp, &id);
		if (rv == OM_EAUTH) {
			worker_refuse(m, r, fp, h->u.hello.name,
			              "enrollment token is not valid for IDC '%s' (unknown, used, "
			              "expired or for another IDC)",
			              h->u.hello.idc);
			return;
		}
		if (rv == 0) {
			char actor[OM_MAX_NAME + 32];
			snprintf(actor, sizeof(actor), "worker '%s'", h->u.hello.name);
			audit(m, actor, r->peer, "key.enroll", h->u.hello.name, "ok",
			      "key %s accepted for IDC '%s' by enrollment token", fp,
			      h->u.hello.idc);
			rv = om_store_key_find(m->store, fp, &key);
		}
	} else if (rv == OM_ENOTFOUND) {
		rv = om_store_key_add_pending(m->store, h->u.hello.name, h->u.hello.idc, fp, &id);
		if (rv == 0) {
			audit(m, "-", r->peer, "key.pending", h->u.hello.name, "ok",
			      "new key %s for worker '%s' claiming IDC '%s' awaits acceptance",
			      fp, h->u.hello.name, h->u.hello.idc);
			rv = om_store_key_find(m->store, fp, &key);
		}
	}
	if (rv != 0) {
		om_err("cannot look up worker key %s: %s", fp, om_store_errmsg(m->store));
		om_rpc_refuse(r, OM_EDB, "master database unavailable, retry later");
		goto out;
	}
	om_store_key_touch(m->store, key.id);
	switch (key.state) {
	case OM_KEY_ACCEPTED:
		break;
	case OM_KEY_PENDING:
		/* Quietly: a pending worker retries every few seconds. */
		om_debug("worker '%s' key %.16s is pending", h->u.hello.name, fp);
		om_rpc_refuse(r, OM_EAUTH, "key pending acceptance");
		goto out;
	default:
		worker_refuse(m, r, fp, h->u.hello.name, "key %s", om_key_state_name((int)key.state));
		goto out;
	}
	/* A key identifies one worker of one IDC: claiming anything else is refused. */
	if (strcmp(key.name, h->u.hello.name) != 0) {
		worker_refuse(m, r, fp, h->u.hello.name,
		              "key was accepted for worker '%s', not '%s'", key.name,
		              h->u.hello.name);
		goto out;
	}
	if (strcmp(key.idc, h->u.hello.idc) != 0) {
		worker_refuse(m, r, fp, h->u.hello.name,
		              "key was accepted for IDC '%s', the worker claims IDC '%s'", key.idc,
		              h->u.hello.idc);
		goto out;
	}
	if ((rv = om_store_worker_seen(m->store, key.name, key.idc, fp, &worker_id)) != 0) {
		om_err("cannot record worker '%s': %s", key.name, om_store_errmsg(m->store));
		om_rpc_refuse(r, OM_EDB, "master database unavailable, retry later");
		goto out;
	}
	if ((w = wconn_find(m, key.name)) == NULL) {
		if ((w = om_calloc(1, sizeof(*w))) == NULL) {
			om_rpc_refuse(r, OM_ENOMEM, "master out of memory");
			goto out;
		}
		snprintf(w->name, sizeof(w->name), "%s", key.name);
		w->next = m->workers;
		m->workers = w;
	}
	if (w->session != NULL) {
		/* A reconnect: the old session's held poll ends, the session goes. */
		struct om_rpc_session *old = w->session;
		on_session_end(m, om_rpc_session_user(old));
		om_rpc_session_end(m->wsrv, old);
	}
	if ((p = om_calloc(1, sizeof(*p))) == NULL) {
		om_rpc_refuse(r, OM_ENOMEM, "master out of memory");
		goto out;
	}
	p->kind = PEER_WORKER;
	p->w = w;
	p->key_id = key.id;
	snprintf(p->who, sizeof(p->who), "worker '%s'", w->name);
	snprintf(p->source, sizeof(p->source), "%s", r->peer);
	snprintf(w->idc, sizeof(w->idc), "%s", key.idc);
	snprintf(w->fingerprint, sizeof(w->fingerprint), "%s", fp);
	w->worker_id = worker_id;
	w->key_id = key.id;
	w->revoked = false;
	w->gone = false;
	w->suspect = false;
	w->last_ms = om_now_ms();
	welcome.u.welcome.worker_id = worker_id;
	welcome.u.welcome.heartbeat_ms = m->cfg.heartbeat_ms;
	om_info("worker '%s' (IDC '%s') connected from %s, key %.16s...", w->name, w->idc,
	        r->peer, fp);
	if (om_rpc_accept(r, &welcome, p, &w->session) != 0) {
		peer_free(p);
		w->session = NULL;
	}
out:
	om_key_info_release(&key);
}

/* ------------------------------------------------------------ clients */

static unsigned
role_scopes(int role)
{
	switch (role) {
	case OM_ROLE_ADMIN:
		return OM_SCOPE_READ | OM_SCOPE_RUN | OM_SCOPE_ADMIN;
	case OM_ROLE_OPERATOR:
		return OM_SCOPE_READ | OM_SCOPE_RUN;
	case OM_ROLE_VIEWER:
		return OM_SCOPE_READ;
	default:
		return 0;
	}
}

void
auth_client_hello(struct master *m, struct om_rpc_req *r)
{
	const struct om_msg *a = &r->msg;
	struct om_msg ok = {.type = OM_MSG_AUTH_OK};
	struct om_token_info tok;
	struct peer *p;
	int rv;

	memset(&tok, 0, sizeof(tok));
	if (r->pattern != OM_NOISE_NK || a->type != OM_MSG_AUTH) {
		audit(m, "-", r->peer, "login", "-", "refused",
		      "client endpoint expects an NK handshake carrying AUTH (got type %d)",
		      (int)a->type);
		om_rpc_refuse(r, OM_EPROTO, "this endpoint accepts only AUTH");
		return;
	}
	if ((p = om_calloc(1, sizeof(*p))) == NULL) {
		om_rpc_refuse(r, OM_ENOMEM, "master out of memory");
		return;
	}
	p->kind = PEER_CLIENT;
	snprintf(p->source, sizeof(p->source), "%s", r->peer);
	if (a->u.auth.token != NULL) {
		rv = om_store_token_check(m->store, a->u.auth.token, &tok, &p->user);
		if (rv == 0) {
			p->token_id = tok.id;
			p->scopes = tok.scopes & role_scopes(p->user.role);
			snprintf(p->who, sizeof(p->who), "user '%s'", p->user.name);
		}
	} else if (a->u.auth.user != NULL && a->u.auth.password != NULL) {
		rv = om_store_user_login(m->store, a->u.auth.user, a->u.auth.password, &p->user);
		if (rv == 0) {
			p->scopes = role_scopes(p->user.role);
			snprintf(p->who, sizeof(p->who), "user '%s'", p->user.name);
		}
	} else {
		rv = OM_EAUTH;
	}
	if (rv != 0) {
		const char *claimed = a->u.auth.user ? a->u.auth.user : "-";
		if (rv != OM_EAUTH)
			om_err("cannot check credentials: %s", om_store_errmsg(m->store));
		om_warn("refused client %s: %s", r->peer,
		        rv == OM_EAUTH ? "invalid credentials" : "database unavailable");
		audit(m, claimed, r->peer, "login", a->u.auth.token ? "token" : "password",
		      "refused", "%s",
		      rv == OM_EAUTH ? "invalid, expired or revoked credentials"
		                     : "database unavailable");
		om_rpc_refuse(r, rv == OM_EAUTH ? OM_EAUTH : OM_EDB,
		              rv == OM_EAUTH ? "invalid credentials (token or user/password)"
		                             : "master database unavailable, retry later");
		peer_free(p);
		om_token_info_release(&tok);
		return;
	}
	if (a->u.auth.token != NULL)
		audit(m, p->who, r->peer, "login", "token", "ok", "token %llu '%s'",
		      (unsigned long long)tok.id, tok.name ? tok.name : "");
	else
		audit(m, p->who, r->peer, "login", "password", "ok", "password");
	om_token_info_release(&tok);
	om_debug("%s authenticated from %s", p->who, r->peer);
	if (om_rpc_accept(r, &ok, p, NULL) != 0)
		peer_free(p);
}

/* --------------------------------------------------------- target scope */

static bool
in_list(char *const *list, size_t n, const char *s)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

bool
auth_host_visible(const struct peer *p, const struct om_host *h)
{
	uint32_t g;
	bool group_ok;

	if (p->kind != PEER_CLIENT || p->user.role != OM_ROLE_OPERATOR)
		return true; /* admins and viewers see the whole inventory */
	if (p->user.nidcs > 0 && (h->idc == NULL || !in_list(p->user.idcs, p->user.nidcs, h->idc)))
		return false;
	if (p->user.ngroups == 0)
		return true;
	group_ok = false;
	for (g = 0; g < h->ngroups && !group_ok; g++)
		group_ok = in_list(p->user.groups, p->user.ngroups, h->groups[g]);
	return group_ok;
}

void
auth_job_scope(const struct peer *p, struct om_job_scope *s)
{
	memset(s, 0, sizeof(*s));
	/* the same rule as auth_host_visible, in the form the store's queries take */
	if (p->kind != PEER_CLIENT || p->user.role != OM_ROLE_OPERATOR)
		return;
	s->idcs = p->user.idcs;
	s->nidcs = p->user.nidcs;
	s->groups = p->user.groups;
	s->ngroups = p->user.ngroups;
}

int
auth_check_target(const struct peer *p, const struct om_host *hosts, size_t n, const char *module,
                  char *why, size_t whylen)
{
	size_t i, outside = 0;
	const char *first = NULL, *first_idc = NULL;

	if (p->user.nmodules > 0 && !in_list(p->user.modules, p->user.nmodules, module)) {
		snprintf(why, whylen, "module '%s' is not allowed for %s", module, p->who);
		return OM_EPERM;
	}
	for (i = 0; i < n; i++) {
		if (!auth_host_visible(p, &hosts[i])) {
			if (outside++ == 0) {
				first = hosts[i].name;
				first_idc = hosts[i].idc;
			}
		}
	}
	if (outside > 0) {
		snprintf(why, whylen,
		         "the selector matches %zu host%s outside the scope of %s (first: '%s' in "
		         "IDC '%s')",
		         outside, outside == 1 ? "" : "s", p->who, first, first_idc ? first_idc : "-");
		return OM_EPERM;
	}
	return 0;
}

/* --------------------------------------------------------- TABLE replies */

struct table {
	char *cols[OM_MAX_TABLE_COLUMNS];
	uint32_t ncols;
	char **cells;
	uint32_t ncells, cap;
	int err;
};

static void
table_init(struct table *t, const char *const *cols)
{
	memset(t, 0, sizeof(*t));
	while (cols[t->ncols] != NULL && t->ncols < OM_MAX_TABLE_COLUMNS) {
		t->cols[t->ncols] = (char *)cols[t->ncols];
		t->ncols++;
	}
}

/* Appends one cell (copied; NULL stays NULL). */
static void
table_cell(struct table *t, const char *s)
{
	if (t->err)
		return;
	if (t->ncells == t->cap) {
		uint32_t ncap = t->cap ? t->cap * 2 : 64;
		char **nc;
		if (ncap > OM_MAX_TABLE_CELLS || (nc = om_realloc(t->cells, ncap * sizeof(*nc))) == NULL) {
			t->err = OM_ENOMEM;
			return;
		}
		t->cells = nc;
		t->cap = ncap;
	}
	t->cells[t->ncells] = s ? om_strdup(s) : NULL;
	if (s != NULL && t->cells[t->ncells] == NULL)
		t->err = OM_ENOMEM;
	t->ncells++;
}

static void
table_cellf(struct table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
table_cellf(struct table *t, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	table_cell(t, buf);
}

static void
table_time(struct table *t, int64_t ms)
{
	char buf[32];
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0) {
		table_cell(t, NULL);
		return;
	}
	gmtime_r(&s, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	table_cell(t, buf);
}

static void
table_list(struct table *t, char *const *v, size_t n)
{
	char buf[1024];
	size_t i, len = 0;

	buf[0] = '\0';
	for (i = 0; i < n && len < sizeof(buf) - 1; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? "," : "", v[i]);
	table_cell(t, n ? buf : NULL);
}

static void
table_reply(struct om_rpc_req *r, struct table *t)
{
	struct om_msg rep = {.type = OM_MSG_TABLE};
	uint32_t i;

	if (t->err) {
		reply_error(r, OM_ENOMEM, "master out of memory");
	} else {
		rep.u.table.columns = t->cols;
		rep.u.table.ncolumns = t->ncols;
		rep.u.table.cells = t->cells;
		rep.u.table.ncells = t->ncells;
		om_rpc_reply(r, &rep);
	}
	for (i = 0; i < t->ncells; i++)
		om_free(t->cells[i]);
	om_free(t->cells);
}

static void
reply_done(struct om_rpc_req *r, uint64_t count, const char *text)
{
	struct om_msg done = {.type = OM_MSG_DONE};

	done.u.done.count = count;
	done.u.done.text = (char *)text;
	om_rpc_reply(r, &done);
}

/* ---------------------------------------------------------- key admin */

static void
op_keys_list(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	static const char *cols[] = {"ID",	   "NAME",	 "IDC",	      "STATE",
	                             "FINGERPRINT", "FIRST_SEEN", "LAST_SEEN", NULL};
	struct om_key_info *keys = NULL;
	struct table t;
	size_t n = 0, i;
	int rv;

	(void)p;
	if ((rv = om_store_keys_list(m->store, &keys, &n)) != 0) {
		reply_error(r, OM_EDB, "cannot read worker keys");
		return;
	}
	table_init(&t, cols);
	for (i = 0; i < n; i++) {
		table_cellf(&t, "%llu", (unsigned long long)keys[i].id);
		table_cell(&t, keys[i].name);
		table_cell(&t, keys[i].idc);
		table_cell(&t, om_key_state_name((int)keys[i].state));
		table_cell(&t, keys[i].fingerprint);
		table_time(&t, keys[i].first_seen_ms);
		table_time(&t, keys[i].last_seen_ms);
	}
	table_reply(r, &t);
	om_key_infos_free(keys, n);
}

static void
op_key_set(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	static const char *actions[] = {"key.pending", "key.accept", "key.reject", "key.revoke"};
	uint64_t id = r->msg.u.key_set.id;
	uint32_t state = r->msg.u.key_set.state;
	struct om_key_info key;
	char target[32];
	struct wconn *w;
	int rv;

	memset(&key, 0, sizeof(key));
	snprintf(target, sizeof(target), "key %llu", (unsigned long long)id);
	rv = om_store_key_set_state(m->store, id, state, r->msg.u.key_set.fingerprint, &key);
	if (rv != 0) {
		const char *why = rv == OM_ENOTFOUND ? "no such key"
		                  : rv == OM_EPERM   ? "fingerprint does not match the key"
		                  : rv == OM_EINVAL  ? "that change is not allowed"
		                                     : "database error";
		audit(m, p->who, p->source, actions[state & 3], target, "refused", "%s", why);
		reply_error(r, rv == OM_EDB ? OM_EDB : rv, "%s %llu: %s",
		            rv == OM_ENOTFOUND ? "key" : "cannot change key", (unsigned long long)id,
		            why);
		om_key_info_release(&key);
		return;
	}
	audit(m, p->who, p->source, actions[state & 3], target, "ok",
	      "worker '%s', IDC '%s', key %s is now %s", key.name, key.idc, key.fingerprint,
	      om_key_state_name((int)state));
	/* Cut off a connected worker whose key was rejected or revoked: now, not later. */
	if (state != OM_KEY_ACCEPTED) {
		for (w = m->workers; w != NULL; w = w->next) {
			if (w->key_id != id)
				continue;
			w->revoked = true;
			worker_disconnect(m, w, "key revoked");
		}
	}
	reply_done(r, 1, om_key_state_name((int)state));
	om_key_info_release(&key);
}

static int
parse_ttl_ok(uint64_t ttl, uint64_t max)
{
	return ttl > 0 && ttl <= max;
}

static void
op_enroll_create(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	struct om_msg rep = {.type = OM_MSG_SECRET};
	char *secret = NULL;
	int64_t exp = 0;
	uint64_t id = 0;
	int rv;

	if (!parse_ttl_ok(r->msg.u.enroll.ttl_s, MAX_ENROLL_TTL_S)) {
		reply_error(r, OM_EINVAL, "ttl must be 1 s .. 7 days");
		return;
	}
	rv = om_store_enroll_token_create(m->store, r->msg.u.enroll.idc,
	                                  (int64_t)r->msg.u.enroll.ttl_s, p->user.name, &id,
	                                  &secret, &exp);
	if (rv != 0) {
		reply_error(r, OM_EDB, "cannot create an enrollment token");
		return;
	}
	audit(m, p->who, p->source, "key.enroll-token", r->msg.u.enroll.idc, "ok",
	      "enrollment token %llu for IDC '%s', valid %llu s", (unsigned long long)id,
	      r->msg.u.enroll.idc, (unsigned long long)r->msg.u.enroll.ttl_s);
	rep.u.secret.id = id;
	rep.u.secret.secret = secret;
	rep.u.secret.expires_ms = exp;
	om_rpc_reply(r, &rep);
	om_wipe(secret, strlen(secret));
	om_free(secret);
}

/* --------------------------------------------------------- user admin */

static void
op_users_list(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	static const char *cols[] = {"NAME", "ROLE", "STATE", "IDCS", "GROUPS", "MODULES",
	                             "CREATED", NULL};
	struct om_user *users = NULL;
	struct table t;
	size_t n = 0, i;

	(void)p;
	if (om_store_users_list(m->store, &users, &n) != 0) {
		reply_error(r, OM_EDB, "cannot read users");
		return;
	}
	table_init(&t, cols);
	for (i = 0; i < n; i++) {
		table_cell(&t, users[i].name);
		table_cell(&t, om_role_name(users[i].role));
		table_cell(&t, users[i].disabled ? "disabled" : "active");
		table_list(&t, users[i].idcs, users[i].nidcs);
		table_list(&t, users[i].groups, users[i].ngroups);
		table_list(&t, users[i].modules, users[i].nmodules);
		table_time(&t, users[i].created_ms);
	}
	table_reply(r, &t);
	om_users_free(users, n);
}

static void
op_user_add(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	const struct om_msg *q = &r->msg;
	struct om_user u;
	uint64_t id = 0;
	int rv;

	memset(&u, 0, sizeof(u));
	u.name = q->u.user.name;
	if ((u.role = om_role_parse(q->u.user.role)) < 0) {
		reply_error_field(r, OM_EINVAL, "role",
		                  "unknown role '%s' (admin, operator or viewer)", q->u.user.role);
		return;
	}
	if (q->u.user.password == NULL) {
		reply_error_field(r, OM_EINVAL, "password", "a password is required");
		return;
	}
	u.idcs = q->u.user.idcs;
	u.nidcs = q->u.user.nidcs;
	u.groups = q->u.user.groups;
	u.ngroups = q->u.user.ngroups;
	u.modules = q->u.user.modules;
	u.nmodules = q->u.user.nmodules;
	rv = om_store_user_add(m->store, &u, q->u.user.password, &id);
	if (rv != 0) {
		const char *why = rv == OM_EEXIST  ? "the name is taken"
		                  : rv == OM_EINVAL ? "the password must have 8 to 256 characters"
		                                    : "database error";
		audit(m, p->who, p->source, "user.add", u.name, "refused", "%s", why);
		reply_error_field(r, rv,
		                  rv == OM_EEXIST   ? "name"
		                  : rv == OM_EINVAL ? "password"
		                                    : NULL,
		                  "cannot add user '%s': %s", u.name, why);
		return;
	}
	audit(m, p->who, p->source, "user.add", u.name, "ok", "role %s, %u IDCs, %u groups, %u modules",
	      om_role_name(u.role), q->u.user.nidcs, q->u.user.ngroups, q->u.user.nmodules);
	reply_done(r, id, "user added");
}

static bool
may_manage(const struct peer *p, const char *name)
{
	return (p->scopes & OM_SCOPE_ADMIN) || strcmp(p->user.name, name) == 0;
}

static void
op_user_passwd(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	const char *name = r->msg.u.user.name;
	int rv;

	if (!may_manage(p, name)) {
		audit(m, p->who, p->source, "user.passwd", name, "refused", "not an administrator");
		reply_error(r, OM_EPERM, "only administrators may change another user's password");
		return;
	}
	/* A stolen narrow token must not take over the account. */
	if (p->token_id != 0 && !(p->scopes & OM_SCOPE_ADMIN)) {
		audit(m, p->who, p->source, "user.passwd", name, "refused",
		      "a token without the admin scope cannot change a password");
		reply_error(r, OM_EPERM, "log in with your password (or an admin token) to change it");
		return;
	}
	if (r->msg.u.user.password == NULL) {
		reply_error_field(r, OM_EINVAL, "password", "a password is required");
		return;
	}
	rv = om_store_user_set_password(m->store, name, r->msg.u.user.password);
	if (rv != 0) {
		const char *why = rv == OM_ENOTFOUND ? "no such user"
		                  : rv == OM_EINVAL  ? "the password must have 8 to 256 characters"
		                                     : "database error";
		audit(m, p->who, p->source, "user.passwd", name, "refused", "%s", why);
		reply_error_field(r, rv, rv == OM_EINVAL ? "password" : NULL,
		                  "cannot change the password of '%s': %s", name, why);
		return;
	}
	audit(m, p->who, p->source, "user.passwd", name, "ok", "password changed");
	/* The old password's web sessions end with it. */
	om_store_web_sessions_drop_user(m->store, name);
	reply_done(r, 1, "password changed");
}

static void
op_user_disable(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	const char *name = r->msg.u.user.name;
	bool flag = r->msg.u.user.flag;
	int rv;

	if (flag && strcmp(name, p->user.name) == 0) {
		reply_error(r, OM_EINVAL, "you cannot disable your own account");
		return;
	}
	rv = om_store_user_set_disabled(m->store, name, flag);
	if (rv != 0) {
		audit(m, p->who, p->source, flag ? "user.disable" : "user.enable", name, "refused",
		      "%s", rv == OM_ENOTFOUND ? "no such user" : "database error");
		reply_error(r, rv, "cannot change user '%s': %s", name,
		            rv == OM_ENOTFOUND ? "no such user" : "database error");
		return;
	}
	audit(m, p->who, p->source, flag ? "user.disable" : "user.enable", name, "ok", "%s",
	      flag ? "disabled: its tokens stop working" : "enabled");
	if (flag)
		om_store_web_sessions_drop_user(m->store, name);
	reply_done(r, 1, flag ? "disabled" : "enabled");
}

/* -------------------------------------------------------------- tokens */

static int
parse_scopes(char *const *v, uint32_t n, unsigned *out)
{
	uint32_t i;

	*out = 0;
	for (i = 0; i < n; i++) {
		if (strcmp(v[i], "read") == 0)
			*out |= OM_SCOPE_READ;
		else if (strcmp(v[i], "run") == 0)
			*out |= OM_SCOPE_RUN;
		else if (strcmp(v[i], "admin") == 0)
			*out |= OM_SCOPE_ADMIN;
		else
			return -1;
	}
	return 0;
}

static const char *
scopes_text(unsigned s, char *buf, size_t n)
{
	snprintf(buf, n, "%s%s%s%s%s", s & OM_SCOPE_READ ? "read" : "",
	         (s & OM_SCOPE_READ) && (s & (OM_SCOPE_RUN | OM_SCOPE_ADMIN)) ? "," : "",
	         s & OM_SCOPE_RUN ? "run" : "",
	         (s & OM_SCOPE_RUN) && (s & OM_SCOPE_ADMIN) ? "," : "",
	         s & OM_SCOPE_ADMIN ? "admin" : "");
	return buf;
}

static void
op_token_create(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	const struct om_msg *q = &r->msg;
	struct om_msg rep = {.type = OM_MSG_SECRET};
	struct om_user owner;
	unsigned scopes;
	uint64_t ttl = q->u.token.ttl_s ? q->u.token.ttl_s : DEFAULT_TOKEN_TTL_S, id = 0;
	char *secret = NULL, sc[32];
	int64_t exp = 0;
	int rv;

	memset(&owner, 0, sizeof(owner));
	if (parse_scopes(q->u.token.scopes, q->u.token.nscopes, &scopes) != 0 || scopes == 0) {
		reply_error(r, OM_EINVAL, "scopes are read, run and admin (at least one)");
		return;
	}
	if (ttl > MAX_TOKEN_TTL_S) {
		reply_error(r, OM_EINVAL, "ttl must be at most 366 days");
		return;
	}
	/* Like passwords: a stolen narrow token must not mint tokens that outlive it. */
	if (p->token_id != 0 && !(p->scopes & OM_SCOPE_ADMIN)) {
		audit(m, p->who, p->source, "token.create", p->user.name, "refused",
		      "a token without the admin scope cannot create tokens");
		reply_error(r, OM_EPERM, "log in with your password (or an admin token) to create "
		                         "tokens");
		return;
	}
	if (q->u.token.user != NULL && !may_manage(p, q->u.token.user)) {
		audit(m, p->who, p->source, "token.create", q->u.token.user, "refused",
		      "not an administrator");
		reply_error(r, OM_EPERM, "only administrators may create tokens for another user");
		return;
	}
	if ((rv = om_store_user_get(m->store, q->u.token.user ? q->u.token.user : p->user.name,
	                            &owner)) != 0) {
		reply_error(r, rv, "no such user");
		return;
	}
	/*
	 * A token never carries more than its owner's role allows, nor more than
	 * the session creating it holds: a read-only token cannot mint an admin
	 * token for its user.
	 */
	if ((scopes & role_scopes(owner.role) & p->scopes) != scopes) {
		audit(m, p->who, p->source, "token.create", owner.name, "refused",
		      "scopes %s exceed role %s", scopes_text(scopes, sc, sizeof(sc)),
		      om_role_name(owner.role));
		reply_error(r, OM_EPERM, "scopes %s exceed what role '%s' or this session allows",
		            scopes_text(scopes, sc, sizeof(sc)), om_role_name(owner.role));
		om_user_release(&owner);
		return;
	}
	rv = om_store_token_create(m->store, owner.id, q->u.token.name, scopes, (int64_t)ttl, &id,
	                           &secret, &exp);
	if (rv != 0) {
		reply_error(r, OM_EDB, "cannot create the token");
		om_user_release(&owner);
		return;
	}
	audit(m, p->who, p->source, "token.create", owner.name, "ok",
	      "token %llu '%s', scopes %s, valid %llu s", (unsigned long long)id, q->u.token.name,
	      scopes_text(scopes, sc, sizeof(sc)), (unsigned long long)ttl);
	rep.u.secret.id = id;
	rep.u.secret.secret = secret;
	rep.u.secret.expires_ms = exp;
	om_rpc_reply(r, &rep);
	om_wipe(secret, strlen(secret));
	om_free(secret);
	om_user_release(&owner);
}

static void
op_tokens_list(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	static const char *cols[] = {"ID", "USER", "NAME", "SCOPES", "CREATED", "EXPIRES",
	                             "REVOKED", "LAST_USED", NULL};
	struct om_token_info *toks = NULL;
	struct table t;
	size_t n = 0, i;
	char sc[32];

	if (om_store_tokens_list(m->store, (p->scopes & OM_SCOPE_ADMIN) ? 0 : p->user.id, &toks,
	                         &n) != 0) {
		reply_error(r, OM_EDB, "cannot read tokens");
		return;
	}
	table_init(&t, cols);
	for (i = 0; i < n; i++) {
		table_cellf(&t, "%llu", (unsigned long long)toks[i].id);
		table_cell(&t, toks[i].user);
		table_cell(&t, toks[i].name);
		table_cell(&t, scopes_text(toks[i].scopes, sc, sizeof(sc)));
		table_time(&t, toks[i].created_ms);
		table_time(&t, toks[i].expires_ms);
		table_time(&t, toks[i].revoked_ms);
		table_time(&t, toks[i].last_used_ms);
	}
	table_reply(r, &t);
	om_token_infos_free(toks, n);
}

static void
op_token_revoke(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	uint64_t id = r->msg.u.by_id.id;
	char target[32];
	int rv;

	snprintf(target, sizeof(target), "token %llu", (unsigned long long)id);
	rv = om_store_token_revoke(m->store, id, (p->scopes & OM_SCOPE_ADMIN) ? 0 : p->user.id);
	if (rv != 0) {
		audit(m, p->who, p->source, "token.revoke", target, "refused", "%s",
		      rv == OM_ENOTFOUND ? "no such token of this user" : "database error");
		reply_error(r, rv, "cannot revoke token %llu: %s", (unsigned long long)id,
		            rv == OM_ENOTFOUND ? "no such token" : "database error");
		return;
	}
	audit(m, p->who, p->source, "token.revoke", target, "ok", "revoked");
	reply_done(r, 1, "revoked");
}

/* --------------------------------------------------------------- audit */

static void
op_audit_list(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	static const char *cols[] = {"ID", "TIME", "ACTOR", "SOURCE", "ACTION", "TARGET",
	                             "OUTCOME", "DETAIL", NULL};
	struct om_audit_rec *recs = NULL;
	struct om_audit_query aq;
	struct table t;
	size_t n = 0, i, limit = r->msg.u.audit.limit;
	int64_t since_ms;
	char when[40];

	(void)p;
	if (limit == 0 || limit > AUDIT_LIST_MAX)
		limit = AUDIT_LIST_MAX;
	/* since_ms comes from the client: clamp before scaling (no signed overflow). */
	since_ms = r->msg.u.audit.since_ms;
	if (since_ms < 0)
		since_ms = 0;
	if (since_ms > INT64_MAX / 1000)
		since_ms = INT64_MAX / 1000;
	memset(&aq, 0, sizeof(aq));
	aq.since_us = since_ms * 1000;
	aq.after_id = r->msg.u.audit.after_id;
	aq.before_id = r->msg.u.audit.before_id;
	aq.desc = r->msg.u.audit.desc;
	aq.limit = limit;
	if (om_store_audit_page(m->store, &aq, &recs, &n) != 0) {
		reply_error(r, OM_EDB, "cannot read the audit log");
		return;
	}
	table_init(&t, cols);
	for (i = 0; i < n; i++) {
		time_t s = (time_t)(recs[i].at_us / 1000000);
		struct tm tm;
		gmtime_r(&s, &tm);
		strftime(when, 24, "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%03dZ",
		         (int)((recs[i].at_us / 1000) % 1000));
		table_cellf(&t, "%llu", (unsigned long long)recs[i].id);
		table_cell(&t, when);
		table_cell(&t, recs[i].actor);
		table_cell(&t, recs[i].source);
		table_cell(&t, recs[i].action);
		table_cell(&t, recs[i].target);
		table_cell(&t, recs[i].outcome);
		table_cell(&t, recs[i].detail);
	}
	table_reply(r, &t);
	om_audit_recs_free(recs, n);
}

static void
op_audit_verify(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	uint64_t nrows = 0, bad = 0;
	char why[256], text[300];
	int rv;

	rv = om_store_audit_verify(m->store, &nrows, &bad, why, sizeof(why));
	if (rv == OM_ECRYPTO) {
		om_err("audit log verification failed: %s", why);
		reply_error(r, OM_ECRYPTO, "audit log altered: %s", why);
		audit(m, p->who, p->source, "audit.verify", "audit", "failed", "%s", why);
		return;
	}
	if (rv != 0) {
		reply_error(r, OM_EDB, "cannot read the audit log");
		return;
	}
	snprintf(text, sizeof(text), "%llu rows, chain intact", (unsigned long long)nrows);
	reply_done(r, nrows, text);
}

/* ------------------------------------------------------ the permission table */

/*
 * Every operation the master answers, who may call it and what it needs.
 * Anything not here is refused: an unknown type, or an operation meant for
 * the other kind of peer, ends that peer's session; a known operation
 * without the needed scope gets a refusal and the session goes on.
 */
static const struct op {
	enum om_msg_type type;
	const char *name;
	enum peer_kind peer;
	enum perm perm;
	op_fn fn;
} ops[] = {
	{OM_MSG_HEARTBEAT, "heartbeat", PEER_WORKER, PERM_WORKER, master_op_heartbeat},
	{OM_MSG_POLL, "poll", PEER_WORKER, PERM_WORKER, master_op_poll},
	{OM_MSG_REPORT, "report", PEER_WORKER, PERM_WORKER, master_op_report},
	{OM_MSG_MODULES, "modules.announce", PEER_WORKER, PERM_WORKER, master_op_modules},
	{OM_MSG_SUBMIT, "job.submit", PEER_CLIENT, PERM_RUN, master_op_submit},
	{OM_MSG_FOLLOW, "job.follow", PEER_CLIENT, PERM_READ, master_op_follow},
	{OM_MSG_HOSTS_LIST, "hosts.list", PEER_CLIENT, PERM_READ, master_op_hosts_list},
	{OM_MSG_HOSTS_ADD, "hosts.add", PEER_CLIENT, PERM_ADMIN, master_op_hosts_add},
	{OM_MSG_WORKERS_LIST, "workers.list", PEER_CLIENT, PERM_READ, master_op_workers_list},
	/* The submitter or an administrator (checked in the operation). */
	{OM_MSG_JOB_CANCEL, "job.cancel", PEER_CLIENT, PERM_RUN, master_op_job_cancel},
	{OM_MSG_HOST_SHOW, "hosts.show", PEER_CLIENT, PERM_READ, master_op_host_show},
	{OM_MSG_MODULES_LIST, "modules.list", PEER_CLIENT, PERM_READ, master_op_modules_list},
	{OM_MSG_MODULE_SHOW, "modules.show", PEER_CLIENT, PERM_READ, master_op_module_show},
	/* Job history: an operator sees only the hosts of its scope (jobview.c). */
	{OM_MSG_JOB_SHOW, "job.show", PEER_CLIENT, PERM_READ, master_op_job_show},
	{OM_MSG_JOB_HOSTS, "job.hosts", PEER_CLIENT, PERM_READ, master_op_job_hosts},
	{OM_MSG_JOBS_LIST, "jobs.list", PEER_CLIENT, PERM_READ, master_op_jobs_list},
	{OM_MSG_JOB_OUTPUT, "job.output", PEER_CLIENT, PERM_READ, master_op_job_output},
	{OM_MSG_KEYS_LIST, "keys.list", PEER_CLIENT, PERM_ADMIN, op_keys_list},
	{OM_MSG_KEY_SET, "keys.set", PEER_CLIENT, PERM_ADMIN, op_key_set},
	{OM_MSG_ENROLL_CREATE, "keys.enroll-token", PEER_CLIENT, PERM_ADMIN, op_enroll_create},
	{OM_MSG_USERS_LIST, "users.list", PEER_CLIENT, PERM_ADMIN, op_users_list},
	{OM_MSG_USER_ADD, "users.add", PEER_CLIENT, PERM_ADMIN, op_user_add},
	{OM_MSG_USER_PASSWD, "users.passwd", PEER_CLIENT, PERM_SELF, op_user_passwd},
	{OM_MSG_USER_DISABLE, "users.disable", PEER_CLIENT, PERM_ADMIN, op_user_disable},
	{OM_MSG_TOKEN_CREATE, "tokens.create", PEER_CLIENT, PERM_SELF, op_token_create},
	{OM_MSG_TOKENS_LIST, "tokens.list", PEER_CLIENT, PERM_SELF, op_tokens_list},
	{OM_MSG_TOKEN_REVOKE, "tokens.revoke", PEER_CLIENT, PERM_SELF, op_token_revoke},
	{OM_MSG_AUDIT_LIST, "audit.list", PEER_CLIENT, PERM_ADMIN, op_audit_list},
	{OM_MSG_AUDIT_VERIFY, "audit.verify", PEER_CLIENT, PERM_ADMIN, op_audit_verify},
};

static bool
perm_ok(const struct peer *p, enum perm perm)
{
	switch (perm) {
	case PERM_WORKER:
		return p->kind == PEER_WORKER && p->w != NULL && !p->w->revoked;
	case PERM_READ:
		return p->kind == PEER_CLIENT && (p->scopes & OM_SCOPE_READ);
	case PERM_RUN:
		return p->kind == PEER_CLIENT && (p->scopes & OM_SCOPE_RUN);
	case PERM_ADMIN:
		return p->kind == PEER_CLIENT && (p->scopes & OM_SCOPE_ADMIN);
	case PERM_SELF:
		return p->kind == PEER_CLIENT && p->scopes != 0;
	}
	return false;
}

static const char *
perm_name(enum perm perm)
{
	switch (perm) {
	case PERM_WORKER:
		return "an accepted worker key";
	case PERM_READ:
		return "scope 'read'";
	case PERM_RUN:
		return "scope 'run'";
	case PERM_ADMIN:
		return "scope 'admin'";
	case PERM_SELF:
		return "a user";
	}
	return "?";
}

static void
end_peer(struct master *m, struct om_rpc_server *srv, struct om_rpc_req *r, const char *why)
{
	struct om_rpc_session *ss = r->session;
	struct peer *p = om_rpc_session_user(ss);

	om_rpc_drop(r, why);
	on_session_end(m, p);
	om_rpc_session_end(srv, ss);
}

void
auth_dispatch(struct master *m, struct om_rpc_server *srv, struct om_rpc_req *r)
{
	auth_dispatch_peer(m, srv, r, om_rpc_session_user(r->session));
}

void
auth_dispatch_peer(struct master *m, struct om_rpc_server *srv, struct om_rpc_req *r,
                   struct peer *p)
{
	const struct op *op = NULL;
	size_t i;

	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (ops[i].type == r->msg.type)
			op = &ops[i];
	if (p->kind == PEER_WORKER && (p->w == NULL || p->w->revoked)) {
		/* Revoked while connected: cut off at this frame. */
		audit(m, p->who, p->source, op ? op->name : "unknown", "-", "refused",
		      "worker key %llu was revoked or rejected", (unsigned long long)p->key_id);
		end_peer(m, srv, r, "worker key revoked");
		return;
	}
	if (p->kind == PEER_WORKER && p->w->gone) {
		/* Declared dead (its tasks are lost): it must say HELLO again to be used. */
		end_peer(m, srv, r, "worker was declared gone; reconnect");
		return;
	}
	if (op == NULL || op->peer != p->kind) {
		if (r->msg.type == OM_MSG_NONE)
			audit(m, p->who, p->source, "unknown", "-", "refused",
			      "malformed or unknown request in an authenticated session");
		else
			audit(m, p->who, p->source, op ? op->name : "unknown", "-", "refused",
			      "operation %d is not available to a %s", (int)r->msg.type,
			      p->kind == PEER_WORKER ? "worker" : "client");
		if (srv == NULL) {
			/* A local request (the web bridge) has no session to end. */
			reply_error(r, OM_EPERM, "operation not permitted");
			return;
		}
		{
			/* The refusal goes out, then the session ends: the peer must
			 * authenticate again.  (Replying releases r, keep the session.) */
			struct om_rpc_session *ss = r->session;
			reply_error(r, OM_EPERM, "operation not permitted");
			on_session_end(m, p);
			om_rpc_session_end(srv, ss);
		}
		return;
	}
	if (!perm_ok(p, op->perm)) {
		audit(m, p->who, p->source, op->name, "-", "refused", "needs %s",
		      perm_name(op->perm));
		om_warn("%s from %s: '%s' refused, needs %s", p->who, p->source, op->name,
		        perm_name(op->perm));
		reply_error(r, OM_EPERM, "permission denied: '%s' needs %s", op->name,
		            perm_name(op->perm));
		return;
	}
	if (p->kind == PEER_WORKER)
		p->w->suspect = false; /* it spoke: reachable again */
	op->fn(m, r, p);
}

/* -------------------------------------------------------------- first run */

int
auth_init_admin(struct om_store *st, const char *name, const char *password_file)
{
	struct om_user u;
	char password[80], *token = NULL;
	uint8_t raw[24];
	int64_t exp = 0;
	uint64_t id = 0, tid = 0;
	size_t n = 0;
	int rv;

	if (!om_name_valid(name)) {
		fprintf(stderr, "om-master: invalid user name '%s'\n", name);
		return OM_EINVAL;
	}
	if ((rv = om_store_user_count(st, &n)) != 0)
		return rv;
	if (n > 0) {
		fprintf(stderr, "om-master: users exist already; add more with 'omctl users add'\n");
		return OM_EEXIST;
	}
	if (password_file != NULL) {
		uint8_t *data;
		size_t len;
		if ((rv = om_read_file(password_file, sizeof(password) - 1, &data, &len)) != 0) {
			fprintf(stderr, "om-master: cannot read '%s': %s\n", password_file,
			        om_strerror(rv));
			return rv;
		}
		while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
			len--;
		memcpy(password, data, len);
		password[len] = '\0';
		om_wipe(data, len);
		om_free(data);
	} else {
		if (RAND_bytes(raw, sizeof(raw)) != 1)
			return OM_ESYS;
		om_hex_encode(raw, sizeof(raw), password);
		om_wipe(raw, sizeof(raw));
	}
	memset(&u, 0, sizeof(u));
	u.name = (char *)name;
	u.role = OM_ROLE_ADMIN;
	rv = om_store_user_add(st, &u, password, &id);
	if (rv == 0)
		rv = om_store_token_create(st, id, "init-admin",
		                           OM_SCOPE_READ | OM_SCOPE_RUN | OM_SCOPE_ADMIN,
		                           DEFAULT_TOKEN_TTL_S, &tid, &token, &exp);
	if (rv != 0) {
		fprintf(stderr, "om-master: cannot create the first admin: %s (%s)\n",
		        om_strerror(rv), om_store_errmsg(st));
		om_wipe(password, sizeof(password));
		return rv;
	}
	om_store_audit(st, "om-master --init-admin", "local", "user.add", name, "ok",
	               "first administrator and token created");
	printf("admin user: %s\n", name);
	if (password_file == NULL)
		printf("password: %s\n", password);
	printf("token: %s\n", token);
	om_wipe(password, sizeof(password));
	om_wipe(token, strlen(token));
	om_free(token);
	return 0;
}

/* ------------------------------------------------------------ web console */

#define WEB_IDLE_S     (60 * 60)      /* a web session unused this long ends */
#define WEB_ABSOLUTE_S (12 * 60 * 60) /* and every one after this long */

static const char *const web_me_cols[] = {"SESSION", "CSRF",   "USER",    "ROLE", "SCOPES",
                                          "EXPIRES", "IDCS",   "GROUPS",  "MODULES",
                                          "AUTH",    NULL};

static void
web_me_reply(struct om_rpc_req *r, const struct peer *p, const char *session, const char *csrf,
             int64_t expires_ms)
{
	struct table t;
	char sc[32];

	table_init(&t, web_me_cols);
	table_cell(&t, session);
	table_cell(&t, csrf);
	table_cell(&t, p->user.name);
	table_cell(&t, om_role_name(p->user.role));
	table_cell(&t, scopes_text(p->scopes, sc, sizeof(sc)));
	table_time(&t, expires_ms);
	table_list(&t, p->user.idcs, p->user.nidcs);
	table_list(&t, p->user.groups, p->user.ngroups);
	table_list(&t, p->user.modules, p->user.nmodules);
	table_cell(&t, p->token_id ? "token" : "session");
	table_reply(r, &t);
}

/*
 * The peer behind a web call: an API token (as omctl's token login, no CSRF
 * needed: browsers never send it on their own) or a cookie session (with
 * the CSRF token on state-changing calls).  0, OM_EAUTH, OM_EPERM (CSRF) or
 * OM_EDB; refusals are audited here.
 */
static int
web_peer(struct master *m, struct web_call *c, struct peer *p, char **csrf)
{
	struct om_token_info tok;
	const char *how = c->bearer[0] ? "token" : "session";
	int rv;

	memset(p, 0, sizeof(*p));
	memset(&tok, 0, sizeof(tok));
	p->kind = PEER_CLIENT;
	snprintf(p->source, sizeof(p->source), "%s", c->source);
	if (c->bearer[0]) {
		rv = om_store_token_check(m->store, c->bearer, &tok, &p->user);
		if (rv == 0) {
			p->token_id = tok.id;
			p->scopes = tok.scopes & role_scopes(p->user.role);
		}
		om_token_info_release(&tok);
	} else if (c->session[0]) {
		rv = om_store_web_session_check(m->store, c->session,
		                                c->state_changing ? c->csrf : NULL, &p->user, NULL,
		                                csrf);
		if (rv == 0)
			p->scopes = role_scopes(p->user.role);
	} else {
		return OM_EAUTH; /* nothing presented: not worth an audit row */
	}
	if (rv == 0) {
		snprintf(p->who, sizeof(p->who), "user '%s'", p->user.name);
		return 0;
	}
	if (rv == OM_EPERM) {
		om_warn("web call from %s: CSRF token missing or wrong", c->source);
		audit(m, p->user.name ? p->user.name : "-", c->source, "web.csrf", "-", "refused",
		      "state-changing call without the session's CSRF token");
	} else if (rv == OM_EAUTH) {
		audit(m, "-", c->source, "web.auth", how, "refused", "%s",
		      "invalid, expired or revoked credentials");
	} else {
		om_err("cannot check web credentials: %s", om_store_errmsg(m->store));
		rv = OM_EDB;
	}
	om_user_release(&p->user);
	return rv;
}

static void
web_login(struct master *m, struct web_call *c)
{
	struct peer p;
	char *secret = NULL, *csrf = NULL;
	int64_t exp = 0;
	int rv;

	memset(&p, 0, sizeof(p));
	p.kind = PEER_CLIENT;
	snprintf(p.source, sizeof(p.source), "%s", c->source);
	rv = om_store_user_login(m->store, c->user, c->password, &p.user);
	if (rv != 0) {
		if (rv != OM_EAUTH)
			om_err("cannot check credentials: %s", om_store_errmsg(m->store));
		om_warn("refused web login from %s: %s", c->source,
		        rv == OM_EAUTH ? "invalid credentials" : "database unavailable");
		audit(m, c->user[0] ? c->user : "-", c->source, "login", "web", "refused", "%s",
		      rv == OM_EAUTH ? "invalid credentials or disabled user"
		                     : "database unavailable");
		reply_error(c->req, rv == OM_EAUTH ? OM_EAUTH : OM_EDB, "%s",
		            rv == OM_EAUTH ? "invalid user name or password"
		                           : "master database unavailable, retry later");
		om_user_release(&p.user);
		return;
	}
	p.scopes = role_scopes(p.user.role);
	snprintf(p.who, sizeof(p.who), "user '%s'", p.user.name);
	rv = om_store_web_session_create(m->store, p.user.id, c->source, WEB_IDLE_S, WEB_ABSOLUTE_S,
	                                 &secret, &csrf, &exp);
	if (rv != 0) {
		om_err("cannot create a web session: %s", om_store_errmsg(m->store));
		reply_error(c->req, OM_EDB, "master database unavailable, retry later");
	} else {
		audit(m, p.who, c->source, "login", "web", "ok", "web session, expires in %d s",
		      WEB_ABSOLUTE_S);
		web_me_reply(c->req, &p, secret, csrf, exp);
	}
	if (secret != NULL)
		om_wipe(secret, strlen(secret));
	if (csrf != NULL)
		om_wipe(csrf, strlen(csrf));
	om_free(secret);
	om_free(csrf);
	om_user_release(&p.user);
}

static enum perm
web_perm_of(enum web_perm w)
{
	switch (w) {
	case WEB_READ:
		return PERM_READ;
	case WEB_RUN:
		return PERM_RUN;
	case WEB_ADMIN:
		return PERM_ADMIN;
	default:
		return PERM_SELF;
	}
}

void
auth_web_call(struct master *m, struct web_call *c)
{
	struct om_rpc_req *r = c->req;
	struct peer p;
	char *csrf = NULL;
	int rv;

	if (om_rpc_local_cancelled(r)) {
		om_rpc_drop(r, "the HTTP client went away");
		goto out;
	}
	if (c->kind == WEB_LOGIN) {
		web_login(m, c);
		goto out;
	}
	rv = web_peer(m, c, &p, c->kind == WEB_ME ? &csrf : NULL);
	if (rv != 0) {
		reply_error(r, rv, "%s",
		            rv == OM_EAUTH   ? "authentication required: log in or send an API token"
		            : rv == OM_EPERM ? "missing or wrong X-CSRF-Token header"
		                             : "master database unavailable, retry later");
		goto out;
	}
	switch (c->kind) {
	case WEB_ME:
		web_me_reply(r, &p, NULL, csrf, 0);
		break;
	case WEB_LOGOUT:
		if (c->bearer[0]) {
			reply_done(r, 0, "an API token has no web session to end");
			break;
		}
		rv = om_store_web_session_delete(m->store, c->session);
		if (rv != 0 && rv != OM_ENOTFOUND) {
			reply_error(r, OM_EDB, "master database unavailable, retry later");
			break;
		}
		audit(m, p.who, c->source, "logout", "web", "ok", "web session ended");
		reply_done(r, 1, "logged out");
		break;
	default:
		if (!perm_ok(&p, web_perm_of(c->perm))) {
			audit(m, p.who, p.source, "web.route", "-", "refused", "needs %s",
			      perm_name(web_perm_of(c->perm)));
			reply_error(r, OM_EPERM, "permission denied: needs %s",
			            perm_name(web_perm_of(c->perm)));
			break;
		}
		auth_dispatch_peer(m, NULL, r, &p);
		break;
	}
	om_user_release(&p.user);
out:
	if (csrf != NULL) {
		om_wipe(csrf, strlen(csrf));
		om_free(csrf);
	}
	web_call_free(c);
}

void
auth_web_expire(struct master *m)
{
	uint64_t n = 0;

	if (om_store_web_sessions_expire(m->store, &n) == 0 && n > 0)
		om_debug("%llu web sessions expired", (unsigned long long)n);
}
