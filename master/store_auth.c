/*
 * Trust (issue 3): worker keys, enrollment tokens, users, API tokens and the
 * hash-chained audit log.  Contract in store.h, schema in migration 2 of
 * store.c, shared connection helpers in store_int.h.
 *
 * Secrets never reach the database or an error message: tokens are stored
 * as SHA-256 of their text, passwords as scrypt.  Statements whose
 * parameters carry such a hash record only the SQLSTATE and the constraint
 * on failure (Q_QUIET), because the server's text can quote parameter
 * values (the DETAIL of a unique violation shows the key).
 *
 * Time: whether a token is expired is decided in SQL against the database
 * clock, now() (the transaction's start), never against a master's wall
 * clock, so several masters agree; expired means now() >= expires_at.  The
 * expires_ms handed back is that database time.  Audit rows take their time
 * from the database too (clock_timestamp(), under the chain's lock).
 *
 * Results come back in binary: integers as big-endian, text and bytea as
 * raw bytes, text[] self-describing; no text parsing or unescaping.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "om/base.h"
#include "om/msg.h"
#include "store.h"
#include "store_int.h"

/* Serialises audit appends of every master: one chain ("om_audit"). */
#define AUDIT_LOCK_KEY INT64_C(0x6f6d5f6175646974)
/* Rows per round trip when verifying the chain. */
#define AUDIT_BATCH   1000
#define NAUDIT_FIELDS 6 /* actor, source, action, target, outcome, detail */

#define HASH_LEN           32
#define TOKEN_RAND         32 /* random bytes behind a token: 64 hex digits */
#define TOKEN_TTL_DEFAULT  (INT64_C(30) * 86400)
#define ENROLL_TTL_DEFAULT INT64_C(3600)
/* Past this the timestamp arithmetic would leave PostgreSQL's range. */
#define TTL_MAX (INT64_C(100) * 366 * 86400)

#define PASSWORD_MIN 8
#define SCRYPT_N     32768u
#define SCRYPT_R     8u
#define SCRYPT_P     1u
#define SCRYPT_SALT  16
#define SCRYPT_KEY   32
/* OpenSSL refuses to run scrypt above maxmem (default 32 MiB, which N=2^15,
 * r=8 just exceeds).  Verification uses the same cap, so a stored string
 * cannot make one login allocate more than this. */
#define SCRYPT_MAXMEM (UINT64_C(64) << 20)
/* Bounds on what a stored hash may ask for (OM_EINVAL beyond). */
#define SCRYPT_N_MAX      (UINT64_C(1) << 20)
#define SCRYPT_R_MAX      16u
#define SCRYPT_P_MAX      4u
#define SCRYPT_SALT_MAX   64
#define SCRYPT_KEY_MIN    16
#define SCRYPT_KEY_MAX    64
#define SCRYPT_STORED_MAX 512

/* Caps on a user's scope lists (array literals built in memory). */
#define USER_LIST_MAX  OM_MAX_ITEMS
#define USER_ARRAY_MAX (4u << 20)

/*
 * Verified against when the user does not exist, so an unknown name costs
 * the same scrypt as a wrong password.  Its password is unknown (random).
 */
static const char dummy_hash[] =
        "scrypt$32768$8$1$c0632f6ffabed4cdd485d654d8040b35"
        "$79774d370186200993e40cc5c40e8610f9999003726cc3277e444d3fe68f4e6f";

/* Database names; must match the CHECKs in migration 2. */
static const char *const key_states[] = {
        [OM_KEY_PENDING] = "pending",
        [OM_KEY_ACCEPTED] = "accepted",
        [OM_KEY_REJECTED] = "rejected",
        [OM_KEY_REVOKED] = "revoked",
};
_Static_assert(sizeof(key_states) / sizeof(key_states[0]) == OM_KEY_COUNT_,
               "key_states must cover enum om_key_state");

static const char *const role_names[] = {
        [OM_ROLE_VIEWER] = "viewer",
        [OM_ROLE_OPERATOR] = "operator",
        [OM_ROLE_ADMIN] = "admin",
};
#define NROLES ((int)(sizeof(role_names) / sizeof(role_names[0])))

/* Entry i is bit i of enum om_scope. */
static const char *const scope_names[] = {"read", "run", "admin"};
#define NSCOPES   ((int)(sizeof(scope_names) / sizeof(scope_names[0])))
#define SCOPE_ALL ((1u << NSCOPES) - 1)
_Static_assert(OM_SCOPE_READ == 1 << 0 && OM_SCOPE_RUN == 1 << 1 && OM_SCOPE_ADMIN == 1 << 2,
               "scope_names must follow enum om_scope");

/* Milliseconds since the epoch of a timestamptz column (NULL stays NULL). */
#define MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"

#define KEY_COLS "id, name, idc, fingerprint, state, " MS("first_seen") ", " MS("last_seen")
#define USER_COLS                                                                                  \
	"u.id, u.name, u.role, u.disabled, u.scope_idcs, u.scope_groups, u.allowed_modules,"       \
	" (extract(epoch FROM u.created_at) * 1000)::bigint"
#define NUSER_COLS 8
#define TOKEN_COLS                                                                                 \
	"t.id, t.user_id, u.name, t.name, t.scopes,"                                               \
	" (extract(epoch FROM t.created_at) * 1000)::bigint,"                                      \
	" (extract(epoch FROM t.expires_at) * 1000)::bigint,"                                      \
	" (extract(epoch FROM t.revoked_at) * 1000)::bigint,"                                      \
	" (extract(epoch FROM t.last_used_at) * 1000)::bigint"
#define NTOKEN_COLS 9

/* --- names -------------------------------------------------------------------- */

static int
name_find(const char *const *names, int n, const char *s)
{
	int i;

	if (s == NULL)
		return -1;
	for (i = 0; i < n; i++)
		if (names[i] != NULL && strcmp(names[i], s) == 0)
			return i;
	return -1;
}

const char *
om_role_name(int role)
{
	return role >= OM_ROLE_VIEWER && role < NROLES ? role_names[role] : "unknown";
}

int
om_role_parse(const char *name)
{
	return name_find(role_names, NROLES, name);
}

/* --- small helpers ------------------------------------------------------------ */

/* 1..max bytes of valid UTF-8: what a name or label column accepts. */
static bool
text_ok(const char *s, size_t max)
{
	char buf[OM_MAX_TEXT + 1];
	size_t len;

	if (s == NULL || max > OM_MAX_TEXT)
		return false;
	len = strnlen(s, max + 1);
	if (len == 0 || len > max)
		return false;
	om__store_utf8_clean(s, buf, max);
	return memcmp(buf, s, len + 1) == 0;
}

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void
put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static int
sha256(const void *p, size_t n, uint8_t out[HASH_LEN])
{
	unsigned int len = 0;

	if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1 || len != HASH_LEN)
		return OM_ECRYPTO;
	return 0;
}

static void
secret_free(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	om_free(s);
}

/* A new secret "<prefix><64 hex>" (owned, free with secret_free) and its SHA-256. */
static int
secret_new(const char *prefix, char **out, uint8_t hash[HASH_LEN])
{
	uint8_t raw[TOKEN_RAND];
	char text[8 + 2 * TOKEN_RAND + 1];
	size_t plen = strlen(prefix);
	int rv;

	*out = NULL;
	if (plen > 8)
		return OM_EINVAL;
	if (RAND_priv_bytes(raw, sizeof(raw)) != 1)
		return OM_ECRYPTO;
	memcpy(text, prefix, plen);
	om_hex_encode(raw, sizeof(raw), text + plen);
	if ((rv = sha256(text, strlen(text), hash)) == 0 && (*out = om_strdup(text)) == NULL)
		rv = OM_ENOMEM;
	OPENSSL_cleanse(raw, sizeof(raw));
	OPENSSL_cleanse(text, sizeof(text));
	return rv;
}

/* The stored form of a presented token; OM_EAUTH when it cannot be one. */
static int
secret_hash(const char *secret, uint8_t hash[HASH_LEN])
{
	size_t len = strnlen(secret, OM_MAX_SECRET + 1);

	if (len == 0 || len > OM_MAX_SECRET)
		return OM_EAUTH;
	return sha256(secret, len, hash);
}

static int
ttl_of(int64_t ttl_s, int64_t dflt, char *out, size_t cap)
{
	if (ttl_s <= 0)
		ttl_s = dflt;
	if (ttl_s > TTL_MAX)
		return OM_ERANGE;
	snprintf(out, cap, "%" PRId64, ttl_s);
	return 0;
}

/* --- statements ----------------------------------------------------------------- */

enum { Q_QUIET = 1 }; /* parameters hold a secret's hash or a password hash */

/*
 * Runs one statement with binary results.  Parameters are text, except
 * those with a non-zero length in lens, which go in binary (bytea).  On
 * failure records the error, copies the SQLSTATE to state ("" when there is
 * none; state may be NULL) and returns NULL.
 */
static PGresult *
q(struct om_store *st, const char *what, const char *sql, int n, const char *const *vals,
  const int *lens, unsigned flags, char state[6])
{
	int fmts[12] = {0}, i;
	const char *code;
	PGresult *r;

	if (state)
		state[0] = '\0';
	if (n > (int)(sizeof(fmts) / sizeof(fmts[0]))) {
		om__store_set_err(st, what, "too many parameters");
		return NULL;
	}
	for (i = 0; lens && i < n; i++)
		fmts[i] = lens[i] != 0;
	r = om__store_exec(st, sql, n, vals, lens, fmts, 1);
	if (om__store_res_ok(r))
		return r;
	code = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	if (state && code)
		snprintf(state, 6, "%s", code);
	if ((flags & Q_QUIET) && code != NULL) {
		const char *cons = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
		char msg[160];

		snprintf(msg, sizeof(msg), "database error %s%s%s", code, cons ? " on " : "",
		         cons ? cons : "");
		if (strncmp(code, "08", 2) == 0 || strncmp(code, "57P", 3) == 0)
			om__store_set_fail(st, what, msg); /* the database is away */
		else
			om__store_set_err(st, what, msg);
	} else {
		/* without a SQLSTATE the text is libpq's own: it quotes no parameter */
		om__store_set_err_res(st, what, r);
	}
	PQclear(r);
	return NULL;
}

/* A statement whose rows don't matter; *count (may be NULL) gets the rows affected. */
static int
q_cmd(struct om_store *st, const char *what, const char *sql, int n, const char *const *vals,
      const int *lens, unsigned flags, uint64_t *count)
{
	PGresult *r = q(st, what, sql, n, vals, lens, flags, NULL);

	if (r == NULL)
		return OM_EDB;
	if (count && om__store_parse_u64(PQcmdTuples(r), count) != 0)
		*count = 0;
	PQclear(r);
	return 0;
}

static int
commit(struct om_store *st, const char *what)
{
	return om__store_run_cmd(st, what, "COMMIT", 0, NULL);
}

/* A row that does not decode: the schema is not what this code expects. */
static int
bad_row(struct om_store *st, const char *what, int rv)
{
	if (rv == OM_ENOMEM)
		return rv;
	om__store_set_err(st, what, "unexpected row");
	return OM_EDB;
}

/* --- columns -------------------------------------------------------------------- */

static int
col_dup(const PGresult *r, int row, int col, char **out)
{
	*out = NULL;
	if (PQgetisnull(r, row, col))
		return 0;
	*out = om_strndup(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
	return *out ? 0 : OM_ENOMEM;
}

static bool
col_bool(const PGresult *r, int row, int col)
{
	return !PQgetisnull(r, row, col) && PQgetlength(r, row, col) == 1 &&
	       PQgetvalue(r, row, col)[0] != 0;
}

static uint64_t
col_id(const PGresult *r, int row, int col)
{
	int64_t v = om__store_bin_int(r, row, col);

	return v > 0 ? (uint64_t)v : 0;
}

static int
col_list(const PGresult *r, int row, int col, char ***out, size_t *n)
{
	uint32_t k = 0;
	int rv;

	rv = om__store_bin_text_array(PQgetvalue(r, row, col), PQgetlength(r, row, col), out, &k);
	*n = k;
	return rv;
}

/* --- worker keys ---------------------------------------------------------------- */

void
om_key_info_release(struct om_key_info *k)
{
	if (k == NULL)
		return;
	om_free(k->name);
	om_free(k->idc);
	om_free(k->fingerprint);
	memset(k, 0, sizeof(*k));
}

void
om_key_infos_free(struct om_key_info *k, size_t n)
{
	size_t i;

	if (k == NULL)
		return;
	for (i = 0; i < n; i++)
		om_key_info_release(&k[i]);
	om_free(k);
}

/* Columns KEY_COLS of one row. */
static int
key_fill(const PGresult *r, int row, struct om_key_info *k)
{
	int rv, s;

	memset(k, 0, sizeof(*k));
	k->id = col_id(r, row, 0);
	if ((rv = col_dup(r, row, 1, &k->name)) != 0 || (rv = col_dup(r, row, 2, &k->idc)) != 0 ||
	    (rv = col_dup(r, row, 3, &k->fingerprint)) != 0)
		return rv;
	if ((s = name_find(key_states, OM_KEY_COUNT_, PQgetvalue(r, row, 4))) < 0)
		return OM_EPROTO;
	k->state = (uint32_t)s;
	k->first_seen_ms = om__store_bin_int(r, row, 5);
	k->last_seen_ms = om__store_bin_int(r, row, 6);
	return 0;
}

/* The single row of r into *out (when out is not NULL). */
static int
key_take(struct om_store *st, const char *what, const PGresult *r, struct om_key_info *out)
{
	struct om_key_info k;
	int rv;

	if (PQntuples(r) != 1)
		return bad_row(st, what, OM_EPROTO);
	if ((rv = key_fill(r, 0, &k)) != 0) {
		om_key_info_release(&k);
		return bad_row(st, what, rv);
	}
	if (out)
		*out = k;
	else
		om_key_info_release(&k);
	return 0;
}

int
om_store_key_find(struct om_store *st, const char *fingerprint, struct om_key_info *out)
{
	const char *v[1] = {fingerprint};
	PGresult *r;
	int rv;

	if (out == NULL)
		return OM_EINVAL;
	memset(out, 0, sizeof(*out));
	if (fingerprint == NULL)
		return OM_EINVAL;
	if (!text_ok(fingerprint, OM_MAX_NAME))
		return OM_ENOTFOUND; /* could never have been stored */
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	r = q(st, "key find", "SELECT " KEY_COLS " FROM worker_keys WHERE fingerprint = $1::text",
	      1, v, NULL, 0, NULL);
	if (r == NULL)
		return OM_EDB;
	rv = PQntuples(r) == 0 ? OM_ENOTFOUND : key_take(st, "key find", r, out);
	PQclear(r);
	return rv;
}

int
om_store_key_add_pending(struct om_store *st, const char *name, const char *idc,
                         const char *fingerprint, uint64_t *id)
{
	const char *v[3] = {name, idc, fingerprint};
	PGresult *r;
	int rv;

	if (!text_ok(name, OM_MAX_NAME) || !text_ok(idc, OM_MAX_NAME) ||
	    !text_ok(fingerprint, OM_MAX_NAME))
		return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	/* DO NOTHING rather than an error: two masters seeing the same first
	 * contact both get a clean answer. */
	r = q(st, "key add",
	      "INSERT INTO worker_keys (name, idc, fingerprint, state)"
	      " VALUES ($1::text, $2::text, $3::text, 'pending')"
	      " ON CONFLICT (fingerprint) DO NOTHING RETURNING id",
	      3, v, NULL, 0, NULL);
	if (r == NULL)
		return OM_EDB;
	rv = PQntuples(r) == 1 ? 0 : OM_EEXIST;
	if (rv == 0 && id)
		*id = col_id(r, 0, 0);
	PQclear(r);
	return rv;
}

int
om_store_key_touch(struct om_store *st, uint64_t id)
{
	char kid[24];
	const char *v[1] = {kid};
	uint64_t n = 0;
	int rv;

	if (id == 0 || id > INT64_MAX)
		return OM_ENOTFOUND;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	snprintf(kid, sizeof(kid), "%" PRIu64, id);
	if ((rv = q_cmd(st, "key touch",
	                "UPDATE worker_keys SET last_seen = now() WHERE id = $1::bigint", 1, v,
	                NULL, 0, &n)) != 0)
		return rv;
	return n == 1 ? 0 : OM_ENOTFOUND;
}

int
om_store_key_enroll(struct om_store *st, const char *token, const char *name, const char *idc,
                    const char *fingerprint, uint64_t *id)
{
	uint8_t hash[HASH_LEN];
	char tid[24] = "", by[64], code[6];
	const char *why = NULL;
	PGresult *r;
	int rv;

	if (token == NULL || !text_ok(name, OM_MAX_NAME) || !text_ok(idc, OM_MAX_NAME) ||
	    !text_ok(fingerprint, OM_MAX_NAME))
		return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((rv = secret_hash(token, hash)) != 0) {
		om__store_set_err(st, "enroll", "not a token");
		return rv;
	}
	if ((rv = om__store_begin(st)) != 0)
		return rv;
	{
		const char *v[2] = {(const char *)hash, idc};
		const int lens[2] = {HASH_LEN, 0};

		/* FOR UPDATE: of two enrollments with one token, the second
		 * waits for the first and then sees the token used. */
		r = q(st, "enroll",
		      "SELECT id, used_at IS NOT NULL, now() >= expires_at, idc <> $2::text"
		      " FROM enroll_tokens WHERE hash = $1::bytea FOR UPDATE",
		      2, v, lens, Q_QUIET, NULL);
	}
	if (r == NULL) {
		rv = OM_EDB;
		goto out;
	}
	if (PQntuples(r) != 1)
		why = "unknown token";
	else if (col_bool(r, 0, 1))
		why = "token already used";
	else if (col_bool(r, 0, 2))
		why = "token expired";
	else if (col_bool(r, 0, 3))
		why = "token is for another IDC";
	else
		snprintf(tid, sizeof(tid), "%" PRIu64, col_id(r, 0, 0));
	PQclear(r);
	if (why) {
		om__store_set_err(st, "enroll", why);
		rv = OM_EAUTH;
		goto out;
	}
	snprintf(by, sizeof(by), "enroll token %s", tid);
	{
		const char *v[3] = {name, fingerprint, by};

		/* Before the upsert: the unique index allows one accepted key per name. */
		if ((rv = q_cmd(
		             st, "enroll",
		             "UPDATE worker_keys SET state = 'revoked', changed_at = now(),"
		             " changed_by = $3::text WHERE name = $1::text AND state = 'accepted'"
		             " AND fingerprint <> $2::text",
		             3, v, NULL, 0, NULL)) != 0)
			goto out;
	}
	{
		const char *v[4] = {name, idc, fingerprint, by};

		/* A pending (or already accepted) row is promoted; a rejected or
		 * revoked one is left alone and refuses the enrollment. */
		r = q(st, "enroll",
		      "INSERT INTO worker_keys (name, idc, fingerprint, state, changed_at,"
		      " changed_by) VALUES ($1::text, $2::text, $3::text, 'accepted', now(),"
		      " $4::text) ON CONFLICT (fingerprint) DO UPDATE SET name = EXCLUDED.name,"
		      " idc = EXCLUDED.idc, state = 'accepted', last_seen = now(),"
		      " changed_at = now(), changed_by = EXCLUDED.changed_by"
		      " WHERE worker_keys.state IN ('pending', 'accepted') RETURNING id",
		      4, v, NULL, 0, code);
	}
	if (r == NULL) {
		/* another master accepted a key of this name or this fingerprint meanwhile */
		rv = strcmp(code, "23505") == 0 ? OM_EBUSY : OM_EDB;
		goto out;
	}
	if (PQntuples(r) != 1) {
		PQclear(r);
		om__store_set_err(st, "enroll", "key is rejected or revoked");
		rv = OM_EAUTH;
		goto out;
	}
	if (id)
		*id = col_id(r, 0, 0);
	PQclear(r);
	{
		const char *v[2] = {tid, fingerprint};

		if ((rv = q_cmd(st, "enroll",
		                "UPDATE enroll_tokens SET used_at = now(),"
		                " used_by_fingerprint = $2::text WHERE id = $1::bigint",
		                2, v, NULL, 0, NULL)) != 0)
			goto out;
	}
	rv = commit(st, "enroll commit");
out:
	if (rv != 0)
		om__store_rollback(st);
	OPENSSL_cleanse(hash, sizeof(hash));
	return rv;
}

int
om_store_key_set_state(struct om_store *st, uint64_t id, uint32_t state, const char *expect_fp,
                       struct om_key_info *out)
{
	char kid[24], by[48];
	const char *why = NULL;
	char code[6];
	PGresult *r, *cur = NULL;
	int rv, was;

	if (out)
		memset(out, 0, sizeof(*out));
	if (state != OM_KEY_ACCEPTED && state != OM_KEY_REJECTED && state != OM_KEY_REVOKED)
		return OM_EINVAL;
	if (id == 0 || id > INT64_MAX)
		return OM_ENOTFOUND;
	if ((rv = om__store_begin(st)) != 0)
		return rv;
	snprintf(kid, sizeof(kid), "%" PRIu64, id);
	{
		const char *v[1] = {kid};

		cur = q(st, "key state",
		        "SELECT name, fingerprint, state FROM worker_keys WHERE id = $1::bigint"
		        " FOR UPDATE",
		        1, v, NULL, 0, NULL);
	}
	if (cur == NULL) {
		rv = OM_EDB;
		goto out;
	}
	if (PQntuples(cur) != 1) {
		rv = OM_ENOTFOUND;
		goto out;
	}
	was = name_find(key_states, OM_KEY_COUNT_, PQgetvalue(cur, 0, 2));
	if (state == OM_KEY_ACCEPTED && expect_fp != NULL &&
	    strcmp(expect_fp, PQgetvalue(cur, 0, 1)) != 0)
		why = "fingerprint does not match";
	else if (was == OM_KEY_REVOKED && state != OM_KEY_REVOKED)
		why = "a revoked key stays revoked"; /* the way back is a new key */
	if (why) {
		om__store_set_err(st, "key state", why);
		rv = OM_EPERM;
		goto out;
	}
	if (state == OM_KEY_ACCEPTED) {
		const char *v[3] = {PQgetvalue(cur, 0, 0), kid, by};

		snprintf(by, sizeof(by), "superseded by key %s", kid);
		if ((rv = q_cmd(
		             st, "key state",
		             "UPDATE worker_keys SET state = 'revoked', changed_at = now(),"
		             " changed_by = $3::text WHERE name = $1::text AND state = 'accepted'"
		             " AND id <> $2::bigint",
		             3, v, NULL, 0, NULL)) != 0)
			goto out;
	}
	{
		const char *v[2] = {kid, key_states[state]};

		/* Setting the state it has is a no-op that keeps the change record.
		 * changed_by stays empty: the caller's audit row names the actor. */
		r = q(st, "key state",
		      "UPDATE worker_keys SET state = $2::text,"
		      " changed_at = CASE WHEN state <> $2::text THEN now() ELSE changed_at END,"
		      " changed_by = CASE WHEN state <> $2::text THEN NULL ELSE changed_by END"
		      " WHERE id = $1::bigint RETURNING " KEY_COLS,
		      2, v, NULL, 0, code);
	}
	if (r == NULL) {
		rv = strcmp(code, "23505") == 0 ? OM_EBUSY : OM_EDB;
		goto out;
	}
	{
		struct om_key_info k;

		rv = key_take(st, "key state", r, &k);
		PQclear(r);
		if (rv == 0 && (rv = commit(st, "key state commit")) == 0 && out)
			*out = k;
		else if (rv == 0)
			om_key_info_release(&k);
	}
out:
	PQclear(cur);
	if (rv != 0)
		om__store_rollback(st);
	return rv;
}

int
om_store_keys_list(struct om_store *st, struct om_key_info **out, size_t *n)
{
	struct om_key_info *ks = NULL;
	PGresult *r;
	int rv = 0, i, rows;

	*out = NULL;
	*n = 0;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	r = q(st, "keys list",
	      "SELECT " KEY_COLS " FROM worker_keys ORDER BY name COLLATE \"C\", id", 0, NULL, NULL,
	      0, NULL);
	if (r == NULL)
		return OM_EDB;
	rows = PQntuples(r);
	if (rows > 0 && (ks = om_calloc((size_t)rows, sizeof(*ks))) == NULL) {
		PQclear(r);
		return OM_ENOMEM;
	}
	for (i = 0; i < rows && rv == 0; i++)
		rv = key_fill(r, i, &ks[i]);
	PQclear(r);
	if (rv != 0) {
		om_key_infos_free(ks, (size_t)rows);
		return bad_row(st, "keys list", rv);
	}
	*out = ks;
	*n = (size_t)rows;
	return 0;
}

int
om_store_enroll_token_create(struct om_store *st, const char *idc, int64_t ttl_s,
                             const char *created_by, uint64_t *id, char **secret,
                             int64_t *expires_ms)
{
	uint8_t hash[HASH_LEN];
	char ttl[24], *sec = NULL;
	PGresult *r;
	int rv;

	if (secret == NULL)
		return OM_EINVAL;
	*secret = NULL;
	if (!text_ok(idc, OM_MAX_NAME) || (created_by != NULL && !text_ok(created_by, OM_MAX_NAME)))
		return OM_EINVAL;
	if ((rv = ttl_of(ttl_s, ENROLL_TTL_DEFAULT, ttl, sizeof(ttl))) != 0)
		return rv;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((rv = secret_new("ome_", &sec, hash)) != 0)
		return rv;
	{
		const char *v[4] = {idc, (const char *)hash, created_by, ttl};
		const int lens[4] = {0, HASH_LEN, 0, 0};

		r = q(st, "enroll token",
		      "INSERT INTO enroll_tokens (idc, hash, created_by, expires_at)"
		      " VALUES ($1::text, $2::bytea, $3::text,"
		      " now() + $4::bigint * interval '1 second')"
		      " RETURNING id, " MS("expires_at"),
		      4, v, lens, Q_QUIET, NULL);
	}
	if (r == NULL) {
		secret_free(sec);
		return OM_EDB;
	}
	if (PQntuples(r) != 1) {
		PQclear(r);
		secret_free(sec);
		return bad_row(st, "enroll token", OM_EPROTO);
	}
	if (id)
		*id = col_id(r, 0, 0);
	if (expires_ms)
		*expires_ms = om__store_bin_int(r, 0, 1);
	PQclear(r);
	*secret = sec;
	return 0;
}

/* --- passwords ------------------------------------------------------------------ */

struct scrypt_params {
	uint64_t n, r, p;
	uint8_t salt[SCRYPT_SALT_MAX];
	size_t nsalt;
	uint8_t key[SCRYPT_KEY_MAX];
	size_t nkey;
};

/* A decimal field without sign or leading zero, at most max, ending in '$'. */
static int
field_dec(const char **s, uint64_t max, uint64_t *out)
{
	const char *p = *s;
	uint64_t v = 0;

	if (*p < '1' || *p > '9')
		return OM_EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > max)
			return OM_EINVAL;
	}
	if (*p != '$')
		return OM_EINVAL;
	*s = p + 1;
	*out = v;
	return 0;
}

/* A hex field of min..max bytes ending in end ('$' or the string's end). */
static int
field_hex(const char **s, char end, uint8_t *out, size_t min, size_t max, size_t *n)
{
	char buf[2 * SCRYPT_SALT_MAX + 2 * SCRYPT_KEY_MAX + 1];
	const char *e = end ? strchr(*s, end) : *s + strlen(*s);
	size_t len;

	if (e == NULL)
		return OM_EINVAL;
	len = (size_t)(e - *s);
	if (len % 2 != 0 || len < 2 * min || len > 2 * max || len >= sizeof(buf))
		return OM_EINVAL;
	memcpy(buf, *s, len);
	buf[len] = '\0';
	if (om_hex_decode(buf, out, len / 2) != 0)
		return OM_EINVAL;
	*n = len / 2;
	*s = end ? e + 1 : e;
	return 0;
}

/*
 * "scrypt$N$r$p$salt_hex$hash_hex".  The bounds keep a stored string (the
 * database is not the master's memory) from making one verification take
 * seconds or more memory than SCRYPT_MAXMEM.
 */
static int
scrypt_parse(const char *stored, struct scrypt_params *sp)
{
	const char *s = stored;

	if (strnlen(stored, SCRYPT_STORED_MAX + 1) > SCRYPT_STORED_MAX ||
	    strncmp(s, "scrypt$", 7) != 0)
		return OM_EINVAL;
	s += 7;
	if (field_dec(&s, SCRYPT_N_MAX, &sp->n) != 0 || field_dec(&s, SCRYPT_R_MAX, &sp->r) != 0 ||
	    field_dec(&s, SCRYPT_P_MAX, &sp->p) != 0)
		return OM_EINVAL;
	if (sp->n < 2 || (sp->n & (sp->n - 1)) != 0)
		return OM_EINVAL;
	/* what OpenSSL allocates: 128 r p for B, 128 r (N + 2) for V */
	if (128 * sp->r * sp->p + 128 * sp->r * (sp->n + 2) > SCRYPT_MAXMEM)
		return OM_EINVAL;
	if (field_hex(&s, '$', sp->salt, 1, SCRYPT_SALT_MAX, &sp->nsalt) != 0 ||
	    field_hex(&s, '\0', sp->key, SCRYPT_KEY_MIN, SCRYPT_KEY_MAX, &sp->nkey) != 0)
		return OM_EINVAL;
	return 0;
}

static bool
password_ok(const char *password)
{
	size_t len;

	if (password == NULL)
		return false;
	len = strnlen(password, OM_MAX_SECRET + 1);
	return len >= PASSWORD_MIN && len <= OM_MAX_SECRET;
}

int
om_password_hash(const char *password, char **out)
{
	uint8_t salt[SCRYPT_SALT], key[SCRYPT_KEY];
	char salt_hex[2 * SCRYPT_SALT + 1], key_hex[2 * SCRYPT_KEY + 1], buf[160];
	int rv = 0;

	if (out == NULL)
		return OM_EINVAL;
	*out = NULL;
	if (!password_ok(password))
		return OM_EINVAL;
	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return OM_ECRYPTO;
	if (EVP_PBE_scrypt(password, strlen(password), salt, sizeof(salt), SCRYPT_N, SCRYPT_R,
	                   SCRYPT_P, SCRYPT_MAXMEM, key, sizeof(key)) != 1) {
		OPENSSL_cleanse(key, sizeof(key));
		return OM_ECRYPTO;
	}
	om_hex_encode(salt, sizeof(salt), salt_hex);
	om_hex_encode(key, sizeof(key), key_hex);
	snprintf(buf, sizeof(buf), "scrypt$%u$%u$%u$%s$%s", SCRYPT_N, SCRYPT_R, SCRYPT_P, salt_hex,
	         key_hex);
	if ((*out = om_strdup(buf)) == NULL)
		rv = OM_ENOMEM;
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(key_hex, sizeof(key_hex));
	OPENSSL_cleanse(buf, sizeof(buf));
	return rv;
}

/*
 * 0 or OM_EAUTH; OM_EINVAL when stored is not a hash this code accepts,
 * OM_ECRYPTO when scrypt itself fails.
 */
int
om_password_verify(const char *password, const char *stored)
{
	struct scrypt_params sp;
	uint8_t key[SCRYPT_KEY_MAX];
	size_t len;
	int rv;

	if (password == NULL || stored == NULL)
		return OM_EINVAL;
	if ((rv = scrypt_parse(stored, &sp)) != 0)
		return rv;
	len = strnlen(password, OM_MAX_SECRET + 1);
	if (len > OM_MAX_SECRET)
		return OM_EAUTH; /* can never have been set */
	if (EVP_PBE_scrypt(password, len, sp.salt, sp.nsalt, sp.n, sp.r, sp.p, SCRYPT_MAXMEM, key,
	                   sp.nkey) != 1)
		return OM_ECRYPTO;
	rv = CRYPTO_memcmp(key, sp.key, sp.nkey) == 0 ? 0 : OM_EAUTH;
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(&sp, sizeof(sp));
	return rv;
}

/* --- users ---------------------------------------------------------------------- */

void
om_user_release(struct om_user *u)
{
	size_t i;

	if (u == NULL)
		return;
	om_free(u->name);
	for (i = 0; u->idcs && i < u->nidcs; i++)
		om_free(u->idcs[i]);
	om_free(u->idcs);
	for (i = 0; u->groups && i < u->ngroups; i++)
		om_free(u->groups[i]);
	om_free(u->groups);
	for (i = 0; u->modules && i < u->nmodules; i++)
		om_free(u->modules[i]);
	om_free(u->modules);
	memset(u, 0, sizeof(*u));
}

void
om_users_free(struct om_user *u, size_t n)
{
	size_t i;

	if (u == NULL)
		return;
	for (i = 0; i < n; i++)
		om_user_release(&u[i]);
	om_free(u);
}

/* Columns USER_COLS starting at c. */
static int
user_fill(const PGresult *r, int row, int c, struct om_user *u)
{
	int rv;

	memset(u, 0, sizeof(*u));
	u->id = col_id(r, row, c);
	if ((rv = col_dup(r, row, c + 1, &u->name)) != 0)
		return rv;
	if ((u->role = om_role_parse(PQgetvalue(r, row, c + 2))) < 0)
		return OM_EPROTO;
	u->disabled = col_bool(r, row, c + 3);
	if ((rv = col_list(r, row, c + 4, &u->idcs, &u->nidcs)) != 0 ||
	    (rv = col_list(r, row, c + 5, &u->groups, &u->ngroups)) != 0 ||
	    (rv = col_list(r, row, c + 6, &u->modules, &u->nmodules)) != 0)
		return rv;
	u->created_ms = om__store_bin_int(r, row, c + 7);
	return 0;
}

static bool
list_ok(char *const *v, size_t n)
{
	size_t i;

	if (n > USER_LIST_MAX || (n > 0 && v == NULL))
		return false;
	for (i = 0; i < n; i++)
		if (!text_ok(v[i], OM_MAX_NAME))
			return false;
	return true;
}

/* A text[] literal of v into b (initialised, empty). */
static int
list_literal(struct om_buf *b, char *const *v, size_t n)
{
	size_t i;

	om_buf_putc(b, '{');
	for (i = 0; i < n; i++)
		om__store_array_put(b, v[i], i == 0);
	return om__store_array_end(b);
}

int
om_store_user_add(struct om_store *st, const struct om_user *u, const char *password, uint64_t *id)
{
	struct om_buf lists[3];
	char *hash = NULL, code[6];
	PGresult *r;
	int rv, k;

	if (u == NULL || !text_ok(u->name, OM_MAX_NAME) || u->role < OM_ROLE_VIEWER ||
	    u->role >= NROLES || !list_ok(u->idcs, u->nidcs) || !list_ok(u->groups, u->ngroups) ||
	    !list_ok(u->modules, u->nmodules) || !password_ok(password))
		return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((rv = om_password_hash(password, &hash)) != 0)
		return rv;
	for (k = 0; k < 3; k++)
		om_buf_init(&lists[k], USER_ARRAY_MAX);
	if ((rv = list_literal(&lists[0], u->idcs, u->nidcs)) == 0 &&
	    (rv = list_literal(&lists[1], u->groups, u->ngroups)) == 0)
		rv = list_literal(&lists[2], u->modules, u->nmodules);
	if (rv != 0) {
		om__store_set_err(st, "user add", "scope lists too large");
		goto out;
	}
	{
		const char *v[7] = {u->name,
		                    role_names[u->role],
		                    hash,
		                    u->disabled ? "true" : "false",
		                    (const char *)lists[0].data,
		                    (const char *)lists[1].data,
		                    (const char *)lists[2].data};

		/* DO NOTHING: a taken name is an answer, not a database error */
		r = q(st, "user add",
		      "INSERT INTO users (name, role, password_hash, disabled, scope_idcs,"
		      " scope_groups, allowed_modules) VALUES ($1::text, $2::text, $3::text,"
		      " $4::boolean, $5::text[], $6::text[], $7::text[])"
		      " ON CONFLICT (name) DO NOTHING RETURNING id",
		      7, v, NULL, Q_QUIET, code);
	}
	if (r == NULL) {
		rv = OM_EDB;
		goto out;
	}
	if (PQntuples(r) == 1) {
		if (id)
			*id = col_id(r, 0, 0);
	} else {
		rv = OM_EEXIST;
	}
	PQclear(r);
out:
	for (k = 0; k < 3; k++)
		om_buf_release(&lists[k]);
	secret_free(hash);
	return rv;
}

/* One user row by name, USER_COLS then (when with_hash) the password hash. */
static int
user_select(struct om_store *st, const char *what, const char *name, bool with_hash, PGresult **out)
{
	const char *v[1] = {name};

	static const char with[] = "SELECT " USER_COLS ", u.password_hash"
	                           " FROM users u WHERE u.name = $1::text";
	static const char without[] = "SELECT " USER_COLS " FROM users u WHERE u.name = $1::text";

	*out = q(st, what, with_hash ? with : without, 1, v, NULL, 0, NULL);
	return *out ? 0 : OM_EDB;
}

int
om_store_user_get(struct om_store *st, const char *name, struct om_user *out)
{
	PGresult *r;
	int rv;

	if (out == NULL)
		return OM_EINVAL;
	memset(out, 0, sizeof(*out));
	if (name == NULL)
		return OM_EINVAL;
	if (!text_ok(name, OM_MAX_NAME))
		return OM_ENOTFOUND;
	if ((rv = om__store_ready(st)) != 0 ||
	    (rv = user_select(st, "user get", name, false, &r)) != 0)
		return rv;
	if (PQntuples(r) != 1)
		rv = OM_ENOTFOUND;
	else if ((rv = user_fill(r, 0, 0, out)) != 0) {
		om_user_release(out);
		rv = bad_row(st, "user get", rv);
	}
	PQclear(r);
	return rv;
}

int
om_store_user_login(struct om_store *st, const char *name, const char *password,
                    struct om_user *out)
{
	PGresult *r = NULL;
	struct om_user u;
	const char *why;
	int rv, vr;

	if (out)
		memset(out, 0, sizeof(*out));
	if (name == NULL || password == NULL)
		return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	/* A name that cannot exist is an unknown user: same answer, same cost. */
	if (text_ok(name, OM_MAX_NAME) && (rv = user_select(st, "login", name, true, &r)) != 0)
		return rv;
	if (r == NULL || PQntuples(r) != 1) {
		(void)om_password_verify(password, dummy_hash);
		PQclear(r);
		om__store_set_err(st, "login", "unknown user");
		return OM_EAUTH;
	}
	vr = om_password_verify(password, PQgetvalue(r, 0, NUSER_COLS));
	if (vr == OM_EINVAL) {
		why = "stored password hash is malformed";
		rv = OM_EAUTH;
	} else if (vr == OM_EAUTH) {
		why = "wrong password";
		rv = OM_EAUTH;
	} else if (vr != 0) {
		why = "password check failed";
		rv = vr;
	} else if (col_bool(r, 0, 3)) {
		why = "user disabled";
		rv = OM_EAUTH;
	} else {
		why = NULL;
	}
	if (why) {
		PQclear(r);
		om__store_set_err(st, "login", why);
		return rv;
	}
	rv = user_fill(r, 0, 0, &u);
	PQclear(r);
	if (rv != 0) {
		om_user_release(&u);
		return bad_row(st, "login", rv);
	}
	if (out)
		*out = u;
	else
		om_user_release(&u);
	return 0;
}

int
om_store_user_set_password(struct om_store *st, const char *name, const char *password)
{
	char *hash = NULL;
	uint64_t n = 0;
	int rv;

	if (name == NULL || !password_ok(password))
		return OM_EINVAL;
	if (!text_ok(name, OM_MAX_NAME))
		return OM_ENOTFOUND;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((rv = om_password_hash(password, &hash)) != 0)
		return rv;
	{
		const char *v[2] = {name, hash};

		rv = q_cmd(st, "user password",
		           "UPDATE users SET password_hash = $2::text, updated_at = now()"
		           " WHERE name = $1::text",
		           2, v, NULL, Q_QUIET, &n);
	}
	secret_free(hash);
	if (rv != 0)
		return rv;
	return n == 1 ? 0 : OM_ENOTFOUND;
}

int
om_store_user_set_disabled(struct om_store *st, const char *name, bool disabled)
{
	const char *v[2] = {name, disabled ? "true" : "false"};
	uint64_t n = 0;
	int rv;

	if (name == NULL)
		return OM_EINVAL;
	if (!text_ok(name, OM_MAX_NAME))
		return OM_ENOTFOUND;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((rv = q_cmd(st, "user disable",
	                "UPDATE users SET disabled = $2::boolean, updated_at = now()"
	                " WHERE name = $1::text",
	                2, v, NULL, 0, &n)) != 0)
		return rv;
	return n == 1 ? 0 : OM_ENOTFOUND;
}

int
om_store_users_list(struct om_store *st, struct om_user **out, size_t *n)
{
	struct om_user *us = NULL;
	PGresult *r;
	int rv = 0, i, rows;

	*out = NULL;
	*n = 0;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	r = q(st, "users list", "SELECT " USER_COLS " FROM users u ORDER BY u.name COLLATE \"C\"",
	      0, NULL, NULL, 0, NULL);
	if (r == NULL)
		return OM_EDB;
	rows = PQntuples(r);
	if (rows > 0 && (us = om_calloc((size_t)rows, sizeof(*us))) == NULL) {
		PQclear(r);
		return OM_ENOMEM;
	}
	for (i = 0; i < rows && rv == 0; i++)
		rv = user_fill(r, i, 0, &us[i]);
	PQclear(r);
	if (rv != 0) {
		om_users_free(us, (size_t)rows);
		return bad_row(st, "users list", rv);
	}
	*out = us;
	*n = (size_t)rows;
	return 0;
}

int
om_store_user_count(struct om_store *st, size_t *n)
{
	PGresult *r;
	int rv;

	*n = 0;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((r = q(st, "user count", "SELECT count(*) FROM users", 0, NULL, NULL, 0, NULL)) == NULL)
		return OM_EDB;
	if (PQntuples(r) == 1)
		*n = (size_t)om__store_bin_int(r, 0, 0);
	else
		rv = bad_row(st, "user count", OM_EPROTO);
	PQclear(r);
	return rv;
}

/* --- API tokens ----------------------------------------------------------------- */

void
om_token_info_release(struct om_token_info *t)
{
	if (t == NULL)
		return;
	om_free(t->user);
	om_free(t->name);
	memset(t, 0, sizeof(*t));
}

void
om_token_infos_free(struct om_token_info *t, size_t n)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < n; i++)
		om_token_info_release(&t[i]);
	om_free(t);
}

static int
scopes_parse(const PGresult *r, int row, int col, unsigned *out)
{
	char **v = NULL;
	size_t n = 0, i;
	int rv, k;

	*out = 0;
	if ((rv = col_list(r, row, col, &v, &n)) != 0)
		return rv;
	for (i = 0; i < n; i++) {
		if ((k = name_find(scope_names, NSCOPES, v[i])) < 0)
			rv = OM_EPROTO;
		else
			*out |= 1u << k;
		om_free(v[i]);
	}
	om_free(v);
	return rv;
}

/* "{read,run,admin}" for the bits set. */
static void
scopes_literal(unsigned scopes, char *out, size_t cap)
{
	size_t o = 0;
	int k;

	o += (size_t)snprintf(out, cap, "{");
	for (k = 0; k < NSCOPES; k++)
		if (scopes & 1u << k)
			o += (size_t)snprintf(out + o, cap - o, "%s%s", o > 1 ? "," : "",
			                      scope_names[k]);
	snprintf(out + o, cap - o, "}");
}

/* Columns TOKEN_COLS starting at c. */
static int
token_fill(const PGresult *r, int row, int c, struct om_token_info *t)
{
	int rv;

	memset(t, 0, sizeof(*t));
	t->id = col_id(r, row, c);
	t->user_id = col_id(r, row, c + 1);
	if ((rv = col_dup(r, row, c + 2, &t->user)) != 0 ||
	    (rv = col_dup(r, row, c + 3, &t->name)) != 0 ||
	    (rv = scopes_parse(r, row, c + 4, &t->scopes)) != 0)
		return rv;
	t->created_ms = om__store_bin_int(r, row, c + 5);
	t->expires_ms = om__store_bin_int(r, row, c + 6);
	t->revoked_ms = om__store_bin_int(r, row, c + 7);
	t->last_used_ms = om__store_bin_int(r, row, c + 8);
	return 0;
}

int
om_store_token_create(struct om_store *st, uint64_t user_id, const char *name, unsigned scopes,
                      int64_t ttl_s, uint64_t *id, char **secret, int64_t *expires_ms)
{
	uint8_t hash[HASH_LEN];
	char uid[24], ttl[24], sc[32], code[6], *sec = NULL;
	PGresult *r;
	int rv;

	if (secret == NULL)
		return OM_EINVAL;
	*secret = NULL;
	if (!text_ok(name, OM_MAX_NAME) || scopes == 0 || (scopes & ~SCOPE_ALL) != 0)
		return OM_EINVAL;
	if (user_id == 0 || user_id > INT64_MAX)
		return OM_ENOTFOUND;
	if ((rv = ttl_of(ttl_s, TOKEN_TTL_DEFAULT, ttl, sizeof(ttl))) != 0)
		return rv;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((rv = secret_new("omt_", &sec, hash)) != 0)
		return rv;
	snprintf(uid, sizeof(uid), "%" PRIu64, user_id);
	scopes_literal(scopes, sc, sizeof(sc));
	{
		const char *v[5] = {uid, name, (const char *)hash, sc, ttl};
		const int lens[5] = {0, 0, HASH_LEN, 0, 0};

		r = q(st, "token create",
		      "INSERT INTO api_tokens (user_id, name, hash, scopes, expires_at)"
		      " VALUES ($1::bigint, $2::text, $3::bytea, $4::text[],"
		      " now() + $5::bigint * interval '1 second') RETURNING id, " MS("expires_at"),
		      5, v, lens, Q_QUIET, code);
	}
	if (r == NULL) {
		secret_free(sec);
		return strcmp(code, "23503") == 0 ? OM_ENOTFOUND : OM_EDB; /* no such user */
	}
	if (PQntuples(r) != 1) {
		PQclear(r);
		secret_free(sec);
		return bad_row(st, "token create", OM_EPROTO);
	}
	if (id)
		*id = col_id(r, 0, 0);
	if (expires_ms)
		*expires_ms = om__store_bin_int(r, 0, 1);
	PQclear(r);
	*secret = sec;
	return 0;
}

/*
 * The token with its user and verdicts, in one round trip.  last_used_at is
 * written at most once a minute per token: a check per API request must not
 * be a write per request.
 */
static const char token_check_sql[] =
        "WITH k AS (SELECT " TOKEN_COLS ", " USER_COLS ","
        " t.revoked_at IS NOT NULL AS revoked, now() >= t.expires_at AS expired,"
        " (extract(epoch FROM now()) * 1000)::bigint AS now_ms, t.id AS token_id"
        " FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = $1::bytea),"
        " used AS (UPDATE api_tokens a SET last_used_at = now() FROM k"
        " WHERE a.id = k.token_id AND NOT k.revoked AND NOT k.expired AND NOT k.disabled"
        " AND (a.last_used_at IS NULL OR a.last_used_at < now() - interval '1 minute'))"
        " SELECT * FROM k";

int
om_store_token_check(struct om_store *st, const char *secret, struct om_token_info *tok,
                     struct om_user *user)
{
	uint8_t hash[HASH_LEN];
	struct om_token_info t;
	struct om_user u;
	const char *why = NULL;
	PGresult *r;
	int rv, c;

	if (tok)
		memset(tok, 0, sizeof(*tok));
	if (user)
		memset(user, 0, sizeof(*user));
	if (secret == NULL)
		return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((rv = secret_hash(secret, hash)) != 0) {
		om__store_set_err(st, "token check", "not a token");
		return rv;
	}
	{
		const char *v[1] = {(const char *)hash};
		const int lens[1] = {HASH_LEN};

		r = q(st, "token check", token_check_sql, 1, v, lens, Q_QUIET, NULL);
	}
	OPENSSL_cleanse(hash, sizeof(hash));
	if (r == NULL)
		return OM_EDB;
	c = NTOKEN_COLS + NUSER_COLS;
	if (PQntuples(r) != 1)
		why = "unknown token";
	else if (col_bool(r, 0, c))
		why = "token revoked";
	else if (col_bool(r, 0, c + 1))
		why = "token expired";
	else if (col_bool(r, 0, NTOKEN_COLS + 3))
		why = "user disabled";
	if (why) {
		PQclear(r);
		om__store_set_err(st, "token check", why);
		return OM_EAUTH;
	}
	if ((rv = token_fill(r, 0, 0, &t)) == 0)
		rv = user_fill(r, 0, NTOKEN_COLS, &u);
	else
		memset(&u, 0, sizeof(u));
	t.last_used_ms = om__store_bin_int(r, 0, c + 2); /* this use */
	PQclear(r);
	if (rv != 0) {
		om_token_info_release(&t);
		om_user_release(&u);
		return bad_row(st, "token check", rv);
	}
	if (tok)
		*tok = t;
	else
		om_token_info_release(&t);
	if (user)
		*user = u;
	else
		om_user_release(&u);
	return 0;
}

int
om_store_token_revoke(struct om_store *st, uint64_t id, uint64_t owner)
{
	char tid[24], uid[24];
	const char *v[2] = {tid, uid};
	uint64_t n = 0;
	int rv;

	if (id == 0 || id > INT64_MAX || owner > INT64_MAX)
		return OM_ENOTFOUND;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	snprintf(tid, sizeof(tid), "%" PRIu64, id);
	snprintf(uid, sizeof(uid), "%" PRIu64, owner);
	/* Revoking twice keeps the first time. */
	if ((rv = q_cmd(st, "token revoke",
	                "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())"
	                " WHERE id = $1::bigint AND ($2::bigint = 0 OR user_id = $2::bigint)",
	                2, v, NULL, 0, &n)) != 0)
		return rv;
	return n == 1 ? 0 : OM_ENOTFOUND;
}

int
om_store_tokens_list(struct om_store *st, uint64_t user_id, struct om_token_info **out, size_t *n)
{
	struct om_token_info *ts = NULL;
	char uid[24];
	const char *v[1] = {uid};
	PGresult *r;
	int rv = 0, i, rows;

	*out = NULL;
	*n = 0;
	if (user_id > INT64_MAX)
		return 0; /* nobody has that id */
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	snprintf(uid, sizeof(uid), "%" PRIu64, user_id);
	r = q(st, "tokens list",
	      "SELECT " TOKEN_COLS " FROM api_tokens t JOIN users u ON u.id = t.user_id"
	      " WHERE $1::bigint = 0 OR t.user_id = $1::bigint ORDER BY t.id",
	      1, v, NULL, 0, NULL);
	if (r == NULL)
		return OM_EDB;
	rows = PQntuples(r);
	if (rows > 0 && (ts = om_calloc((size_t)rows, sizeof(*ts))) == NULL) {
		PQclear(r);
		return OM_ENOMEM;
	}
	for (i = 0; i < rows && rv == 0; i++)
		rv = token_fill(r, i, 0, &ts[i]);
	PQclear(r);
	if (rv != 0) {
		om_token_infos_free(ts, (size_t)rows);
		return bad_row(st, "tokens list", rv);
	}
	*out = ts;
	*n = (size_t)rows;
	return 0;
}

/* --- audit ---------------------------------------------------------------------- */

/*
 * SHA-256(prev_hash | id (8, BE) | at_us (8, BE) | per field: length (4, BE;
 * 0xffffffff for a NULL detail) and bytes).  The lengths make the encoding
 * unambiguous.  This layout is the chain's format: changing it breaks every
 * existing chain.
 */
static int
audit_hash(const uint8_t prev[HASH_LEN], uint64_t id, int64_t at_us,
           const char *const f[NAUDIT_FIELDS], const size_t len[NAUDIT_FIELDS],
           uint8_t out[HASH_LEN])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	uint8_t num[16], l[4];
	unsigned int olen = 0;
	bool ok;
	int i;

	if (c == NULL)
		return OM_ENOMEM;
	put_be64(num, id);
	put_be64(num + 8, (uint64_t)at_us);
	ok = EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(c, prev, HASH_LEN) == 1 && EVP_DigestUpdate(c, num, sizeof(num)) == 1;
	for (i = 0; ok && i < NAUDIT_FIELDS; i++) {
		put_be32(l, f[i] ? (uint32_t)len[i] : UINT32_MAX);
		ok = EVP_DigestUpdate(c, l, sizeof(l)) == 1 &&
		     (f[i] == NULL || len[i] == 0 || EVP_DigestUpdate(c, f[i], len[i]) == 1);
	}
	ok = ok && EVP_DigestFinal_ex(c, out, &olen) == 1 && olen == HASH_LEN;
	EVP_MD_CTX_free(c);
	return ok ? 0 : OM_ECRYPTO;
}

int
om_store_audit(struct om_store *st, const char *actor, const char *source, const char *action,
               const char *target, const char *outcome, const char *detail)
{
	const char *in[NAUDIT_FIELDS] = {actor, source, action, target, outcome, detail};
	const char *f[NAUDIT_FIELDS];
	size_t len[NAUDIT_FIELDS];
	uint8_t prev[HASH_LEN] = {0}, hash[HASH_LEN];
	char(*buf)[OM_MAX_TEXT + 1];
	char key[24], sid[24], sat[24];
	uint64_t id = 1;
	int64_t at_us;
	PGresult *r;
	int rv, i;

	for (i = 0; i < NAUDIT_FIELDS - 1; i++)
		if (in[i] == NULL)
			return OM_EINVAL;
	if ((buf = om_malloc(NAUDIT_FIELDS * sizeof(*buf))) == NULL)
		return OM_ENOMEM;
	/* Whatever a peer sent (bad UTF-8, megabytes), the row goes in: an
	 * audit write that can be made to fail is an audit gap. */
	for (i = 0; i < NAUDIT_FIELDS; i++) {
		f[i] = NULL;
		len[i] = 0;
		if (in[i] == NULL)
			continue;
		om__store_utf8_clean(in[i], buf[i], OM_MAX_TEXT);
		f[i] = buf[i];
		len[i] = strlen(buf[i]);
	}
	if ((rv = om__store_begin(st)) != 0)
		goto done;
	snprintf(key, sizeof(key), "%" PRId64, AUDIT_LOCK_KEY);
	{
		const char *v[1] = {key};
		/* The lock a statement of its own: a statement's snapshot is taken
		 * before it waits, so a read in the same statement could miss the
		 * row the previous holder just committed.  Separate statements in
		 * one round trip (with the BEGIN). */
		const struct om__call calls[2] = {
		        {"SELECT pg_advisory_xact_lock($1::bigint)", 1, v, NULL, NULL, 1},
		        {"SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, a.id, a.hash"
		         " FROM (SELECT 1) one LEFT JOIN LATERAL"
		         " (SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1) a ON true",
		         0, NULL, NULL, NULL, 1},
		};
		PGresult *res[2];

		if ((rv = om__store_batch(st, "audit", calls, 2, res)) != 0)
			goto out;
		PQclear(res[0]);
		r = res[1];
	}
	if (PQntuples(r) != 1 ||
	    (!PQgetisnull(r, 0, 1) && (col_id(r, 0, 1) == 0 || col_id(r, 0, 1) >= INT64_MAX ||
	                               PQgetlength(r, 0, 2) != HASH_LEN))) {
		PQclear(r);
		rv = bad_row(st, "audit", OM_EPROTO);
		goto out;
	}
	at_us = om__store_bin_int(r, 0, 0);
	if (!PQgetisnull(r, 0, 1)) {
		id = col_id(r, 0, 1) + 1;
		memcpy(prev, PQgetvalue(r, 0, 2), HASH_LEN);
	}
	PQclear(r);
	if ((rv = audit_hash(prev, id, at_us, f, len, hash)) != 0)
		goto out;
	snprintf(sid, sizeof(sid), "%" PRIu64, id);
	snprintf(sat, sizeof(sat), "%" PRId64, at_us);
	{
		const char *v[10] = {sid,
		                     sat,
		                     f[0],
		                     f[1],
		                     f[2],
		                     f[3],
		                     f[4],
		                     f[5],
		                     (const char *)prev,
		                     (const char *)hash};
		const int lens[10] = {0, 0, 0, 0, 0, 0, 0, 0, HASH_LEN, HASH_LEN};
		const int fmts[10] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1};
		/* the row and its COMMIT in one round trip */
		const struct om__call calls[2] = {
		        {"INSERT INTO audit (id, at_us, actor, source, action, target, outcome,"
		         " detail, prev_hash, hash) VALUES ($1::bigint, $2::bigint, $3::text,"
		         " $4::text, $5::text, $6::text, $7::text, $8::text, $9::bytea,"
		         " $10::bytea)",
		         10, v, lens, fmts, 1},
		        {"COMMIT", 0, NULL, NULL, NULL, 0},
		};
		PGresult *res[2];

		if ((rv = om__store_batch(st, "audit", calls, 2, res)) != 0)
			goto out;
		PQclear(res[0]);
		PQclear(res[1]);
	}
out:
	if (rv != 0)
		om__store_rollback(st);
done:
	om_free(buf);
	return rv;
}

void
om_audit_recs_free(struct om_audit_rec *r, size_t n)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < n; i++) {
		om_free(r[i].actor);
		om_free(r[i].source);
		om_free(r[i].action);
		om_free(r[i].target);
		om_free(r[i].outcome);
		om_free(r[i].detail);
	}
	om_free(r);
}

/* Columns id, at_us, actor .. detail of one row. */
static int
audit_fill(const PGresult *r, int row, struct om_audit_rec *a)
{
	int rv;

	memset(a, 0, sizeof(*a));
	a->id = col_id(r, row, 0);
	a->at_us = om__store_bin_int(r, row, 1);
	if ((rv = col_dup(r, row, 2, &a->actor)) != 0 ||
	    (rv = col_dup(r, row, 3, &a->source)) != 0 ||
	    (rv = col_dup(r, row, 4, &a->action)) != 0 ||
	    (rv = col_dup(r, row, 5, &a->target)) != 0 ||
	    (rv = col_dup(r, row, 6, &a->outcome)) != 0 ||
	    (rv = col_dup(r, row, 7, &a->detail)) != 0)
		return rv;
	return 0;
}

/* The rows of om_store_audit_page, before their order. */
#define AUDIT_PAGE                                                                                 \
	"SELECT id, at_us, actor, source, action, target, outcome, detail FROM audit"              \
	" WHERE id > $1::bigint AND id < $4::bigint AND at_us >= $2::bigint"

int
om_store_audit_list(struct om_store *st, int64_t since_us, uint64_t after_id, size_t limit,
                    struct om_audit_rec **out, size_t *n)
{
	struct om_audit_query aq = {.since_us = since_us, .after_id = after_id, .limit = limit};

	return om_store_audit_page(st, &aq, out, n);
}

int
om_store_audit_page(struct om_store *st, const struct om_audit_query *aq, struct om_audit_rec **out,
                    size_t *n)
{
	struct om_audit_rec *recs = NULL;
	char aid[24], since[24], lim[24], bid[24];
	const char *v[4] = {aid, since, lim, bid};
	size_t limit = aq->limit;
	PGresult *r;
	int rv = 0, i, rows;

	*out = NULL;
	*n = 0;
	if (aq->after_id >= INT64_MAX || limit == 0 || aq->before_id == 1)
		return 0;
	if (limit > OM_MAX_ITEMS)
		limit = OM_MAX_ITEMS; /* "at most limit": one reply's worth */
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	snprintf(aid, sizeof(aid), "%" PRIu64, aq->after_id);
	snprintf(since, sizeof(since), "%" PRId64, aq->since_us);
	snprintf(lim, sizeof(lim), "%zu", limit);
	/* ids are bigint: a bound past them is no bound */
	snprintf(bid, sizeof(bid), "%" PRIu64,
	         aq->before_id == 0 || aq->before_id > INT64_MAX ? (uint64_t)INT64_MAX
	                                                         : aq->before_id);
	/* Keyset pages through the primary key either way. */
	r = q(st, "audit list",
	      aq->desc ? AUDIT_PAGE " ORDER BY id DESC LIMIT $3::bigint"
	               : AUDIT_PAGE " ORDER BY id LIMIT $3::bigint",
	      4, v, NULL, 0, NULL);
	if (r == NULL)
		return OM_EDB;
	rows = PQntuples(r);
	if (rows > 0 && (recs = om_calloc((size_t)rows, sizeof(*recs))) == NULL) {
		PQclear(r);
		return OM_ENOMEM;
	}
	for (i = 0; i < rows && rv == 0; i++)
		rv = audit_fill(r, i, &recs[i]);
	PQclear(r);
	if (rv != 0) {
		om_audit_recs_free(recs, (size_t)rows);
		return bad_row(st, "audit list", rv);
	}
	*out = recs;
	*n = (size_t)rows;
	return 0;
}

/* One row of a verify batch against the chain so far; a reason when it fails. */
static int
audit_check_row(const PGresult *r, int row, uint64_t want, const uint8_t prev[HASH_LEN], char *why,
                size_t whylen, uint64_t *bad)
{
	const char *f[NAUDIT_FIELDS];
	size_t len[NAUDIT_FIELDS];
	uint8_t hash[HASH_LEN];
	uint64_t id = col_id(r, row, 0);
	int i, rv;

	if (id != want) {
		/* keyset order: id > want means want was deleted */
		snprintf(why, whylen, "row %" PRIu64 " is missing", want);
		*bad = want;
		return OM_ECRYPTO;
	}
	*bad = id;
	if (PQgetlength(r, row, 8) != HASH_LEN ||
	    CRYPTO_memcmp(PQgetvalue(r, row, 8), prev, HASH_LEN) != 0) {
		if (id == 1)
			snprintf(why, whylen, "row 1: prev_hash is not the zero hash");
		else
			snprintf(why, whylen,
			         "row %" PRIu64 ": prev_hash does not link to row %" PRIu64, id,
			         id - 1);
		return OM_ECRYPTO;
	}
	for (i = 0; i < NAUDIT_FIELDS; i++) {
		f[i] = PQgetisnull(r, row, 2 + i) ? NULL : PQgetvalue(r, row, 2 + i);
		len[i] = (size_t)PQgetlength(r, row, 2 + i);
	}
	/* The NOT NULL columns: a NULL here would hash like a missing detail. */
	for (i = 0; i < NAUDIT_FIELDS - 1; i++)
		if (f[i] == NULL) {
			snprintf(why, whylen, "row %" PRIu64 ": hash does not match its contents",
			         id);
			return OM_ECRYPTO;
		}
	if ((rv = audit_hash(prev, id, om__store_bin_int(r, row, 1), f, len, hash)) != 0)
		return rv;
	if (PQgetlength(r, row, 9) != HASH_LEN ||
	    CRYPTO_memcmp(PQgetvalue(r, row, 9), hash, HASH_LEN) != 0) {
		snprintf(why, whylen, "row %" PRIu64 ": hash does not match its contents", id);
		return OM_ECRYPTO;
	}
	return 0;
}

int
om_store_audit_verify(struct om_store *st, uint64_t *nrows, uint64_t *bad_id, char *why,
                      size_t whylen)
{
	uint8_t prev[HASH_LEN] = {0};
	char last[24], lim[24], reason[160];
	const char *v[2] = {last, lim};
	uint64_t done = 0, bad = 0;
	PGresult *r;
	int rv, i, rows;

	if (nrows)
		*nrows = 0;
	if (bad_id)
		*bad_id = 0;
	if (why && whylen)
		why[0] = '\0';
	reason[0] = '\0';
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	snprintf(lim, sizeof(lim), "%d", AUDIT_BATCH);
	/* Keyset pages in id order, checked in C: the database is what is being
	 * checked, so it computes nothing here.  Rows appended meanwhile are
	 * simply checked too (they only ever go after the end). */
	do {
		snprintf(last, sizeof(last), "%" PRIu64, done);
		r = q(st, "audit verify",
		      "SELECT id, at_us, actor, source, action, target, outcome, detail,"
		      " prev_hash, hash FROM audit WHERE id > $1::bigint ORDER BY id"
		      " LIMIT $2::bigint",
		      2, v, NULL, 0, NULL);
		if (r == NULL)
			return OM_EDB;
		rows = PQntuples(r);
		for (i = 0; i < rows && rv == 0; i++) {
			rv = audit_check_row(r, i, done + 1, prev, reason, sizeof(reason), &bad);
			if (rv == 0) {
				memcpy(prev, PQgetvalue(r, i, 9), HASH_LEN);
				done++;
			}
		}
		PQclear(r);
	} while (rv == 0 && rows == AUDIT_BATCH);
	if (nrows)
		*nrows = done;
	if (rv == OM_ECRYPTO) {
		if (bad_id)
			*bad_id = bad;
		if (why && whylen)
			snprintf(why, whylen, "%s", reason);
		om__store_set_err(st, "audit verify", reason);
	}
	return rv;
}

/* --- web console sessions (issue 6) -------------------------------------------- */

/*
 * The CSRF token of a session: derived from its secret, so it needs no
 * storage of its own and cannot be computed from the stored hashes.
 */
static int
web_csrf_of(const char *secret, char out[8 + 2 * HASH_LEN + 1])
{
	uint8_t h[HASH_LEN];
	EVP_MD_CTX *c;
	int rv = OM_ECRYPTO;

	if ((c = EVP_MD_CTX_new()) == NULL)
		return OM_ENOMEM;
	if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(c, "om-csrf:", 8) == 1 &&
	    EVP_DigestUpdate(c, secret, strlen(secret)) == 1 &&
	    EVP_DigestFinal_ex(c, h, NULL) == 1) {
		memcpy(out, "omc_", 4);
		om_hex_encode(h, HASH_LEN, out + 4);
		rv = 0;
	}
	EVP_MD_CTX_free(c);
	OPENSSL_cleanse(h, sizeof(h));
	return rv;
}

int
om_store_web_session_create(struct om_store *st, uint64_t user_id, const char *source,
                            int64_t idle_s, int64_t abs_s, char **secret, char **csrf,
                            int64_t *expires_ms)
{
	uint8_t hash[HASH_LEN], chash[HASH_LEN];
	char token[8 + 2 * HASH_LEN + 1], uid[24], idle[24], abs[24], src[64];
	char *sec = NULL;
	PGresult *r;
	int rv;

	*secret = NULL;
	*csrf = NULL;
	if (idle_s <= 0 || abs_s <= 0 || idle_s > INT32_MAX || abs_s > INT32_MAX)
		return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((rv = secret_new("oms_", &sec, hash)) != 0 || (rv = web_csrf_of(sec, token)) != 0 ||
	    (rv = sha256(token, strlen(token), chash)) != 0)
		goto out;
	snprintf(uid, sizeof(uid), "%" PRIu64, user_id);
	snprintf(idle, sizeof(idle), "%" PRId64, idle_s);
	snprintf(abs, sizeof(abs), "%" PRId64, abs_s);
	om__store_utf8_clean(source ? source : "-", src, sizeof(src) - 1);
	{
		const char *v[6] = {(const char *)hash, (const char *)chash, uid, src, abs, idle};
		const int lens[6] = {HASH_LEN, HASH_LEN, 0, 0, 0, 0};

		r = q(st, "web session create",
		      "INSERT INTO web_sessions (hash, csrf_hash, user_id, source, expires_at, idle_s)"
		      " VALUES ($1::bytea, $2::bytea, $3::bigint, $4::text,"
		      " now() + make_interval(secs => $5::int), $6::int)"
		      " RETURNING " MS("expires_at"),
		      6, v, lens, Q_QUIET, NULL);
	}
	if (r == NULL) {
		rv = OM_EDB;
		goto out;
	}
	if (expires_ms)
		*expires_ms = om__store_bin_int(r, 0, 0);
	PQclear(r);
	if ((*csrf = om_strdup(token)) == NULL) {
		rv = OM_ENOMEM;
		goto out;
	}
	*secret = sec;
	sec = NULL;
out:
	secret_free(sec);
	OPENSSL_cleanse(hash, sizeof(hash));
	OPENSSL_cleanse(token, sizeof(token));
	return rv;
}

/* Columns: session id, CSRF hash, USER_COLS, expired. */
static const char web_check_sql[] =
        "WITH k AS (SELECT s.id AS sid, s.csrf_hash, " USER_COLS ","
        " (now() >= s.expires_at OR now() >= s.last_seen_at + make_interval(secs => s.idle_s))"
        " AS expired FROM web_sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.hash = $1::bytea),"
        " seen AS (UPDATE web_sessions w SET last_seen_at = now() FROM k"
        " WHERE w.id = k.sid AND NOT k.expired AND NOT k.disabled"
        " AND w.last_seen_at < now() - interval '5 seconds')"
        " SELECT * FROM k";

int
om_store_web_session_check(struct om_store *st, const char *secret, const char *csrf,
                           struct om_user *user, uint64_t *session_id, char **csrf_out)
{
	uint8_t hash[HASH_LEN], chash[HASH_LEN];
	char token[8 + 2 * HASH_LEN + 1];
	const char *why = NULL;
	struct om_user u;
	PGresult *r;
	int rv;

	if (user)
		memset(user, 0, sizeof(*user));
	if (csrf_out)
		*csrf_out = NULL;
	if (secret == NULL)
		return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((rv = secret_hash(secret, hash)) != 0) {
		om__store_set_err(st, "web session", "not a session");
		return rv;
	}
	{
		const char *v[1] = {(const char *)hash};
		const int lens[1] = {HASH_LEN};

		r = q(st, "web session", web_check_sql, 1, v, lens, Q_QUIET, NULL);
	}
	OPENSSL_cleanse(hash, sizeof(hash));
	if (r == NULL)
		return OM_EDB;
	if (PQntuples(r) != 1)
		why = "unknown session";
	else if (col_bool(r, 0, 2 + NUSER_COLS))
		why = "session expired";
	else if (col_bool(r, 0, 2 + 3))
		why = "user disabled";
	if (why) {
		PQclear(r);
		om__store_set_err(st, "web session", why);
		return OM_EAUTH;
	}
	if (csrf != NULL) {
		/* Compared as hashes, in constant time. */
		if (PQgetlength(r, 0, 1) != HASH_LEN ||
		    sha256(csrf, strnlen(csrf, OM_MAX_SECRET), chash) != 0 ||
		    CRYPTO_memcmp(chash, PQgetvalue(r, 0, 1), HASH_LEN) != 0) {
			PQclear(r);
			om__store_set_err(st, "web session", "CSRF token does not match");
			return OM_EPERM;
		}
	}
	if (session_id)
		*session_id = col_id(r, 0, 0);
	if ((rv = user_fill(r, 0, 2, &u)) != 0) {
		PQclear(r);
		om_user_release(&u);
		return bad_row(st, "web session", rv);
	}
	PQclear(r);
	if (csrf_out != NULL) {
		if ((rv = web_csrf_of(secret, token)) != 0 || (*csrf_out = om_strdup(token)) == NULL) {
			om_user_release(&u);
			OPENSSL_cleanse(token, sizeof(token));
			return rv ? rv : OM_ENOMEM;
		}
		OPENSSL_cleanse(token, sizeof(token));
	}
	if (user)
		*user = u;
	else
		om_user_release(&u);
	return 0;
}

int
om_store_web_session_delete(struct om_store *st, const char *secret)
{
	uint8_t hash[HASH_LEN];
	uint64_t n = 0;
	int rv;

	if (secret == NULL)
		return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if (secret_hash(secret, hash) != 0)
		return OM_ENOTFOUND;
	{
		const char *v[1] = {(const char *)hash};
		const int lens[1] = {HASH_LEN};

		rv = q_cmd(st, "web session delete", "DELETE FROM web_sessions WHERE hash = $1::bytea",
		           1, v, lens, Q_QUIET, &n);
	}
	OPENSSL_cleanse(hash, sizeof(hash));
	if (rv != 0)
		return rv;
	return n > 0 ? 0 : OM_ENOTFOUND;
}

int
om_store_web_sessions_drop_user(struct om_store *st, const char *name)
{
	const char *v[1] = {name};
	int rv;

	if ((rv = om__store_ready(st)) != 0)
		return rv;
	return q_cmd(st, "web sessions drop",
	             "DELETE FROM web_sessions WHERE user_id IN (SELECT id FROM users"
	             " WHERE name = $1::text)",
	             1, v, NULL, 0, NULL);
}

int
om_store_web_sessions_expire(struct om_store *st, uint64_t *n)
{
	int rv;

	if ((rv = om__store_ready(st)) != 0)
		return rv;
	return q_cmd(st, "web sessions expire",
	             "DELETE FROM web_sessions WHERE expires_at <= now()"
	             " OR last_seen_at + make_interval(secs => idle_s) <= now()",
	             0, NULL, NULL, 0, n);
}
