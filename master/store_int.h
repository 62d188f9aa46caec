/*
 * Private to the store's translation units (store.c, store_auth.c): the
 * connection struct and the helpers they share.  Not part of the contract in
 * store.h; nothing outside master/store*.c includes this.
 *
 * Conventions the helpers keep: om__store_ready starts every public call
 * (clears the error, reconnects once, rolls back a leftover transaction); a
 * failing statement records "what: libpq message" in st->err; 0 or a negative
 * OM_E* code.
 */
#ifndef OM_MASTER_STORE_INT_H
#define OM_MASTER_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "om/base.h"

struct om_store {
	PGconn *conn;
	int version;   /* highest applied migration */
	bool prepared; /* statements above exist in this session */
	bool broken;   /* protocol state unknown (e.g. pipeline not drained): reset */
	int npipe;     /* queries sent in the open pipeline */
	int pipe_err;  /* first failure while sending the open pipeline */
	bool have_msg; /* err already holds the first failure of this call */
	bool listen;   /* LISTEN om_dispatch, om_events (again after a reconnect) */
	bool begin_due; /* om__store_begin: BEGIN goes out with the next statement */
	int64_t live_ms; /* a worker heard from within this long is live */
	int64_t fail_ms; /* om_now_ms() of the last failure */
	/* Statements om__store_exec prepared in this session (NULL: none yet). */
	struct om__stmt *stmts;
	unsigned nstmts;
	char err[512];
};

/* Tests only: migrations above this version are not applied (0: all). */
extern int om__store_migrate_upto;

/* --- errors */
void om__store_set_err(struct om_store *st, const char *what, const char *msg);
/* The result's error message (or the connection's when r is NULL). */
void om__store_set_err_res(struct om_store *st, const char *what, const PGresult *r);
bool om__store_res_ok(const PGresult *r);
/* As om__store_set_err, and the database counts as away (om_store_last_failure_ms). */
void om__store_set_fail(struct om_store *st, const char *what, const char *msg);

/* --- codecs */
int om__store_parse_u64(const char *s, uint64_t *out);
/* A binary-format int2/int4/int8 column; 0 for NULL. */
int64_t om__store_bin_int(const PGresult *r, int row, int col);
/* A binary-format one-dimensional text[] without NULLs into owned strings. */
int om__store_bin_text_array(const char *val, int len, char ***out, uint32_t *n);
/* Text array literal: '{' first, then om__store_array_put per element, then _end. */
void om__store_array_put(struct om_buf *b, const char *s, bool first);
int om__store_array_end(struct om_buf *b);
/* At most max bytes of valid UTF-8 ('?' for bad bytes) into out[max + 1]. */
void om__store_utf8_clean(const char *s, char *out, size_t max);

/* --- scopes (store_jobs.c) */
struct om_job_scope;
/* The scope as two text[] literals, idcs and groups; '{}' when unscoped (or NULL).  Release both. */
int om__store_scope_arrays(const struct om_job_scope *s, struct om_buf *idcs,
                           struct om_buf *groups);

/* --- connection and statements */
int om__store_ready(struct om_store *st);
/*
 * Opens a transaction without a round trip of its own: BEGIN is sent in
 * one pipeline with the next om__store_exec statement (a COMMIT or
 * ROLLBACK with nothing before it costs nothing).  Only for transactions
 * whose every statement goes through om__store_exec.  om__store_ready
 * first (it is called here).
 */
int om__store_begin(struct om_store *st);
void om__store_rollback(struct om_store *st);
/*
 * One statement through the session's statement cache: a DML statement
 * (SELECT, WITH, INSERT, UPDATE, DELETE) is prepared the first time its
 * text is seen and executed as that prepared statement afterwards, so
 * PostgreSQL parses and plans it once per session instead of at every call
 * (planning was most of the database's CPU per job: bench/, issue 7).
 * Anything else, or a full cache, goes through PQexecParams.  Arguments as
 * PQexecParams (parameter types from the casts in the text).  Caller PQclears.
 */
PGresult *om__store_exec(struct om_store *st, const char *sql, int n, const char *const *vals,
                         const int *lens, const int *fmts, int rfmt);
/* Forgets the cache (the session's statements are gone: reconnect, close). */
void om__store_stmts_clear(struct om_store *st);
/* One parameterized statement (text params), results in format rfmt (0 text,
 * 1 binary); NULL with the error recorded on failure.  Caller PQclears. */
PGresult *om__store_query(struct om_store *st, const char *what, const char *sql, int n,
                          const char *const *vals, int rfmt);
/* One statement of om__store_batch: as om__store_exec's arguments. */
struct om__call {
	const char *sql;
	int n;
	const char *const *vals;
	const int *lens; /* NULL: text parameters */
	const int *fmts; /* NULL: text parameters */
	int rfmt;
};
#define OM__BATCH_MAX 8

/*
 * calls[0..n) (n <= OM__BATCH_MAX) through the statement cache in one
 * pipeline: one round trip for all, BEGIN first when om__store_begin is
 * due.  They run in order, as separate statements.  0: res[i] holds each
 * one's result (caller PQclears all); OM_EDB: the first error recorded
 * under what, res untouched, and an open transaction is aborted.
 */
int om__store_batch(struct om_store *st, const char *what, const struct om__call *calls, int n,
                    PGresult **res);
/* LISTEN on the dispatch and event channels (store_dispatch.c). */
int om__store_listen_now(struct om_store *st);
/* One parameterized statement (text params), its rows dropped; OM_EDB on failure. */
int om__store_run_cmd(struct om_store *st, const char *what, const char *sql, int n,
                      const char *const *vals);

#endif
