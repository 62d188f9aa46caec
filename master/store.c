/*
 * The master's PostgreSQL store (contract in store.h).
 *
 * Every value travels as a statement parameter; the only text spliced into
 * SQL are the fixed state lists below.  Output ingest is one pipelined
 * transaction per batch: BEGIN, one id reservation per touched job, one
 * prepared statement per chunk and per state, one completion check per job,
 * COMMIT and a single sync, so a report costs one network round trip.
 *
 * Event ids: the batch first bumps jobs.last_event of each job it touches by
 * the number of events it may add (chunks, final states, one job-done) and
 * then numbers those events from the reserved block.  The bump holds the job
 * row's lock until commit, so events of one job commit in id order and a
 * reader paging by "id > cursor" never skips an event that commits later.
 * A duplicate chunk or an ignored state leaves its id unused: ids may have
 * gaps.  One bump per job and batch, not one per event: PostgreSQL makes the
 * n-th update of the same row inside one transaction walk n-1 older
 * versions: a 4000-chunk report took ~0.9 s that way, ~0.15 s this way.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "om/base.h"
#include "om/msg.h"
#include "store.h"
#include "store_int.h"

/* Serialises migrations of several masters starting at once ("om_migr1"). */
#define MIGRATE_LOCK_KEY INT64_C(0x6f6d5f6d69677231)

/* Caps on what one call builds in memory (array literals of a job). */
#define ARRAY_MAX (256u << 20)
/* om_store_events_query: ids one statement may look at, and statements per call */
#define EVENTS_WINDOW  UINT64_C(1024)
#define EVENTS_WINDOWS 16

/* Runtime copies of the lists in migration 1 (which must never change). */
#define FINAL_STATES "('ok','failed','unreachable','timeout','cancelled','skipped','lost')"

/* Database names of enum om_host_state; must match the CHECK in migration 1. */
static const char *const state_names[] = {
        [OM_HS_QUEUED] = "queued",   [OM_HS_DISPATCHED] = "dispatched",
        [OM_HS_RUNNING] = "running", [OM_HS_OK] = "ok",
        [OM_HS_FAILED] = "failed",   [OM_HS_UNREACHABLE] = "unreachable",
        [OM_HS_TIMEOUT] = "timeout", [OM_HS_CANCELLED] = "cancelled",
        [OM_HS_SKIPPED] = "skipped", [OM_HS_LOST] = "lost",
};
_Static_assert(sizeof(state_names) / sizeof(state_names[0]) == OM_HS_COUNT_,
               "state_names must cover enum om_host_state");

/*
 * Versioned migrations: entry i is version i + 1.  Append only; an applied
 * migration is never edited, a change is a new entry.
 */
static const char *const migrations[] = {
        /* 1: inventory, workers, jobs, per-host results, tasks and job events. */
        "CREATE TABLE hosts ("
        " name text PRIMARY KEY,"
        " addr text NOT NULL,"
        " port int NOT NULL CHECK (port BETWEEN 1 AND 65535),"
        " ssh_user text,"
        " idc text NOT NULL,"
        " groups text[] NOT NULL DEFAULT '{}',"
        " created_at timestamptz NOT NULL DEFAULT now(),"
        " updated_at timestamptz NOT NULL DEFAULT now());"
        "CREATE TABLE workers ("
        " id bigserial PRIMARY KEY,"
        " name text UNIQUE NOT NULL,"
        " idc text NOT NULL,"
        " fingerprint text NOT NULL,"
        " first_seen timestamptz NOT NULL DEFAULT now(),"
        " last_seen timestamptz NOT NULL DEFAULT now());"
        "CREATE TABLE jobs ("
        " id bigserial PRIMARY KEY,"
        " created_at timestamptz NOT NULL DEFAULT now(),"
        " created_by text NOT NULL,"
        " selector text NOT NULL,"
        " module text NOT NULL,"
        " param_keys text[] NOT NULL,"
        " param_vals text[] NOT NULL,"
        " timeout_s int NOT NULL,"
        " forks int NOT NULL,"
        " state text NOT NULL DEFAULT 'running' CHECK (state IN ('running','done')),"
        " nhosts int NOT NULL,"
        " last_event bigint NOT NULL DEFAULT 0,"
        " finished_at timestamptz);"
        "CREATE TABLE job_hosts ("
        " job_id bigint REFERENCES jobs ON DELETE CASCADE,"
        " host text,"
        " idc text NOT NULL,"
        " addr text NOT NULL,"
        " port int NOT NULL,"
        " ssh_user text,"
        " state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued','dispatched',"
        "'running','ok','failed','unreachable','timeout','cancelled','skipped','lost')),"
        " exit_code int,"
        " reason text,"
        " task_id bigint,"
        " worker text,"
        " started_at timestamptz,"
        " finished_at timestamptz,"
        " duration_ms bigint,"
        " PRIMARY KEY (job_id, host));"
        /* The completion check looks only for unfinished hosts of a job: keep
         * it from scanning every finished host of a 100k-host job per batch. */
        "CREATE INDEX job_hosts_open ON job_hosts (job_id) WHERE state NOT IN"
        " ('ok','failed','unreachable','timeout','cancelled','skipped','lost');"
        "CREATE INDEX job_hosts_task ON job_hosts (task_id);"
        "CREATE TABLE tasks ("
        " id bigserial PRIMARY KEY,"
        " job_id bigint REFERENCES jobs ON DELETE CASCADE,"
        " idc text NOT NULL,"
        " worker text NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now());"
        "CREATE INDEX tasks_job ON tasks (job_id);"
        "CREATE TABLE job_events ("
        " job_id bigint REFERENCES jobs ON DELETE CASCADE,"
        " id bigint,"
        " kind smallint NOT NULL CHECK (kind IN (1, 2, 3)),"
        " host text,"
        " stream smallint,"
        " seq bigint,"
        " data bytea,"
        " state text,"
        " exit_code int,"
        " reason text,"
        " duration_ms bigint,"
        " created_at timestamptz NOT NULL DEFAULT now(),"
        " PRIMARY KEY (job_id, id));"
        /* Exactly-once output: a re-sent chunk hits this and is dropped. */
        "CREATE UNIQUE INDEX job_events_chunk ON job_events (job_id, host, stream, seq)"
        " WHERE kind = 1;",
        /* 2: trust (store_auth.c): worker keys, enrollment tokens, users, API
         * tokens, the hash-chained audit log.  Secrets are stored only as
         * SHA-256 (tokens) or scrypt (passwords).  The state, role and scope
         * lists must match the name tables in store_auth.c. */
        "CREATE TABLE worker_keys ("
        " id bigserial PRIMARY KEY,"
        " name text NOT NULL,"
        " idc text NOT NULL,"
        " fingerprint text UNIQUE NOT NULL,"
        " state text NOT NULL CHECK (state IN ('pending','accepted','rejected','revoked')),"
        " first_seen timestamptz NOT NULL DEFAULT now(),"
        " last_seen timestamptz NOT NULL DEFAULT now(),"
        " changed_at timestamptz,"
        " changed_by text);"
        /* At most one accepted key per worker name, whatever the code does:
         * two masters accepting keys of one name at once cannot both win. */
        "CREATE UNIQUE INDEX worker_keys_one_accepted ON worker_keys (name)"
        " WHERE state = 'accepted';"
        "CREATE TABLE enroll_tokens ("
        " id bigserial PRIMARY KEY,"
        " idc text NOT NULL,"
        " hash bytea UNIQUE NOT NULL CHECK (length(hash) = 32),"
        " created_by text,"
        " created_at timestamptz NOT NULL DEFAULT now(),"
        " expires_at timestamptz NOT NULL,"
        " used_at timestamptz,"
        " used_by_fingerprint text);"
        "CREATE TABLE users ("
        " id bigserial PRIMARY KEY,"
        " name text UNIQUE NOT NULL,"
        " role text NOT NULL CHECK (role IN ('admin','operator','viewer')),"
        " password_hash text NOT NULL,"
        " disabled boolean NOT NULL DEFAULT false,"
        " scope_idcs text[] NOT NULL DEFAULT '{}',"
        " scope_groups text[] NOT NULL DEFAULT '{}',"
        " allowed_modules text[] NOT NULL DEFAULT '{}',"
        " created_at timestamptz NOT NULL DEFAULT now(),"
        " updated_at timestamptz NOT NULL DEFAULT now());"
        "CREATE TABLE api_tokens ("
        " id bigserial PRIMARY KEY,"
        " user_id bigint NOT NULL REFERENCES users,"
        " name text NOT NULL,"
        " hash bytea UNIQUE NOT NULL CHECK (length(hash) = 32),"
        " scopes text[] NOT NULL CHECK (cardinality(scopes) > 0"
        " AND scopes <@ ARRAY['read','run','admin']::text[]),"
        " created_at timestamptz NOT NULL DEFAULT now(),"
        " expires_at timestamptz NOT NULL,"
        " revoked_at timestamptz,"
        " last_used_at timestamptz);"
        "CREATE INDEX api_tokens_user ON api_tokens (user_id);"
        /* No sequence: the writer takes previous id + 1 under an advisory
         * lock, so ids are contiguous and a deleted row leaves a visible gap. */
        "CREATE TABLE audit ("
        " id bigint PRIMARY KEY CHECK (id > 0),"
        " at_us bigint NOT NULL,"
        " at timestamptz GENERATED ALWAYS AS (to_timestamp(at_us / 1000000.0)) STORED,"
        " actor text NOT NULL,"
        " source text NOT NULL,"
        " action text NOT NULL,"
        " target text NOT NULL,"
        " outcome text NOT NULL,"
        " detail text,"
        " prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),"
        " hash bytea NOT NULL CHECK (length(hash) = 32));"
        "CREATE INDEX audit_at ON audit (at_us);"
        /* Append-only for every role the triggers apply to, the owner
         * included.  A superuser can still get around them (replica mode,
         * ALTER TABLE): the hash chain is what detects that. */
        "CREATE FUNCTION om_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RAISE EXCEPTION 'audit is append-only: % refused', TG_OP"
        " USING ERRCODE = 'insufficient_privilege'; END $$;"
        "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit"
        " FOR EACH ROW EXECUTE FUNCTION om_audit_append_only();"
        "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit"
        " FOR EACH STATEMENT EXECUTE FUNCTION om_audit_append_only();"
        "REVOKE UPDATE, DELETE, TRUNCATE ON audit FROM PUBLIC;",
        /* 3: the module catalog the workers announce (MODULES).  One row per
         * module name, the last announcement wins; module_workers says who
         * offers it now, so a module no worker offers any more is refused. */
        [2] = "CREATE TABLE modules ("
              " name text PRIMARY KEY,"
              " version text NOT NULL,"
              " kind text NOT NULL,"
              " description text,"
              " schema jsonb NOT NULL CHECK (jsonb_typeof(schema) = 'array'),"
              " updated_at timestamptz NOT NULL DEFAULT now());"
              "CREATE TABLE module_workers ("
              " module text NOT NULL REFERENCES modules ON DELETE CASCADE,"
              " worker text NOT NULL,"
              " idc text NOT NULL,"
              " version text NOT NULL,"
              " seen_at timestamptz NOT NULL DEFAULT now(),"
              " PRIMARY KEY (module, worker));"
              "CREATE INDEX module_workers_worker ON module_workers (worker);",
        /* 4: per-host results (whether the module changed the host, its
         * structured result) and the facts last gathered for each host. */
        [3] = "ALTER TABLE job_hosts ADD COLUMN changed boolean NOT NULL DEFAULT false,"
              " ADD COLUMN result jsonb;"
              "ALTER TABLE hosts ADD COLUMN facts jsonb, ADD COLUMN facts_at timestamptz;",
        /* 5: durable dispatch (store_dispatch.c).  PostgreSQL holds all of a
         * job's dispatch state, so any master can deliver, advance, cancel or
         * recover it: the job's options and waves, each host's submission
         * order and attempt, each task's delivery state and its hosts in
         * index order (a report names hosts by index), worker liveness, and
         * one row per re-run of a host (the retry record).  Output chunks
         * are keyed by attempt too: a re-run starts its seq at 0 again.
         * Hosts left open by a master of schema 4 cannot be recovered (their
         * tasks have no host order): they end lost. */
        [4] = "ALTER TABLE jobs ADD COLUMN become boolean NOT NULL DEFAULT false,"
              " ADD COLUMN become_user text,"
              " ADD COLUMN check_mode boolean NOT NULL DEFAULT false,"
              " ADD COLUMN retry_lost boolean NOT NULL DEFAULT false,"
              " ADD COLUMN wave_size int NOT NULL DEFAULT 0,"
              " ADD COLUMN nwaves int NOT NULL DEFAULT 1,"
              " ADD COLUMN wave int NOT NULL DEFAULT 0,"
              " ADD COLUMN has_max_fail boolean NOT NULL DEFAULT false,"
              " ADD COLUMN max_fail int NOT NULL DEFAULT 0,"
              " ADD COLUMN cancelled_by text;"
              "ALTER TABLE job_hosts ADD COLUMN seq int NOT NULL DEFAULT 0,"
              " ADD COLUMN attempt int NOT NULL DEFAULT 1,"
              " ADD COLUMN pending_since timestamptz;"
              "ALTER TABLE tasks ADD COLUMN state text NOT NULL DEFAULT 'done'"
              " CHECK (state IN ('queued','delivered','done','lost')),"
              " ADD COLUMN hosts text[] NOT NULL DEFAULT '{}',"
              " ADD COLUMN attempt int NOT NULL DEFAULT 1,"
              " ADD COLUMN delivered_at timestamptz,"
              " ADD COLUMN delivered_by text,"
              " ADD COLUMN cancel boolean NOT NULL DEFAULT false,"
              " ADD COLUMN cancel_sent_at timestamptz;"
              "CREATE INDEX tasks_open ON tasks (worker, id) WHERE state IN ('queued','delivered');"
              "ALTER TABLE workers ADD COLUMN connected boolean NOT NULL DEFAULT false,"
              " ADD COLUMN alive_at timestamptz,"
              " ADD COLUMN master text;"
              "CREATE TABLE job_host_attempts ("
              " job_id bigint REFERENCES jobs ON DELETE CASCADE,"
              " host text NOT NULL,"
              " attempt int NOT NULL,"
              " task_id bigint,"
              " worker text,"
              " reason text NOT NULL,"
              " at timestamptz NOT NULL DEFAULT now(),"
              " PRIMARY KEY (job_id, host, attempt));"
              "ALTER TABLE job_events ADD COLUMN attempt int NOT NULL DEFAULT 1;"
              "DROP INDEX job_events_chunk;"
              "CREATE UNIQUE INDEX job_events_chunk ON job_events (job_id, host, attempt, stream, seq)"
              " WHERE kind = 1;"
              "UPDATE job_hosts SET state = 'lost', finished_at = now(),"
              " reason = 'lost: dispatched by a master older than schema 5'"
              " WHERE state NOT IN " FINAL_STATES ";"
              "UPDATE jobs SET state = 'done', finished_at = now() WHERE state <> 'done';",
        /* 6: modules that promise idempotence (OM_PLUGIN_IDEMPOTENT), and why
         * a job retries lost hosts: 'option' (--retry-lost) or 'idempotent'
         * (its module, as the catalog said when the job was created); NULL
         * when it does not, or for a job of schema 5 (only the option then). */
        [5] = "ALTER TABLE modules ADD COLUMN idempotent boolean NOT NULL DEFAULT false;"
              "ALTER TABLE jobs ADD COLUMN retry_reason text"
              " CHECK (retry_reason IN ('option', 'idempotent'));",
        /* 7: job_events partitioned by job id range (job ids grow with time,
         * and every key of the table starts with job_id, so no insert or
         * query changes).  store_retention.c creates the partitions ahead,
         * each about one day of jobs, and drops whole partitions past the
         * retention horizon.  The default partition only catches a burst that
         * outran the partitions made ahead; nothing is ever refused.  Rows of
         * schema 6 are copied into one partition covering every job id so
         * far. */
        [6] = "ALTER TABLE job_events RENAME TO job_events_v6;"
              "ALTER TABLE job_events_v6 RENAME CONSTRAINT job_events_pkey TO job_events_v6_pkey;"
              "ALTER INDEX job_events_chunk RENAME TO job_events_v6_chunk;"
              "CREATE TABLE job_events (LIKE job_events_v6 INCLUDING DEFAULTS INCLUDING CONSTRAINTS,"
              " PRIMARY KEY (job_id, id), FOREIGN KEY (job_id) REFERENCES jobs ON DELETE CASCADE)"
              " PARTITION BY RANGE (job_id);"
              "CREATE UNIQUE INDEX job_events_chunk ON job_events (job_id, host, attempt, stream, seq)"
              " WHERE kind = 1;"
              "CREATE TABLE job_events_default PARTITION OF job_events DEFAULT;"
              "CREATE TABLE job_event_parts ("
              " name text PRIMARY KEY,"
              " lo bigint NOT NULL,"
              " hi bigint NOT NULL CHECK (lo < hi),"
              " created_at timestamptz NOT NULL DEFAULT now());"
              "DO $$ DECLARE hi bigint := (SELECT last_value FROM jobs_id_seq) + 1001; BEGIN"
              " EXECUTE format('CREATE TABLE job_events_p1 PARTITION OF job_events"
              " FOR VALUES FROM (1) TO (%s)', hi);"
              " INSERT INTO job_event_parts (name, lo, hi) VALUES ('job_events_p1', 1, hi); END $$;"
              "INSERT INTO job_events SELECT * FROM job_events_v6;"
              "DROP TABLE job_events_v6;"
              "CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state = 'done';"
              /* partition width: jobs of the last 24 hours, counted every 30 s */
              "CREATE INDEX jobs_created ON jobs (created_at);",
        /* 8: web console sessions (issue 6): only hashes of the cookie
         * secret and of the CSRF token; absolute expiry and an idle limit
         * per row, so every master enforces what the one that made it set. */
        [7] = "CREATE TABLE web_sessions ("
              " id bigserial PRIMARY KEY,"
              " hash bytea UNIQUE NOT NULL CHECK (length(hash) = 32),"
              " csrf_hash bytea NOT NULL CHECK (length(csrf_hash) = 32),"
              " user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,"
              " source text NOT NULL,"
              " created_at timestamptz NOT NULL DEFAULT now(),"
              " expires_at timestamptz NOT NULL,"
              " last_seen_at timestamptz NOT NULL DEFAULT now(),"
              " idle_s int NOT NULL CHECK (idle_s > 0));"
              "CREATE INDEX web_sessions_user ON web_sessions (user_id);"
              "CREATE INDEX web_sessions_expires ON web_sessions (expires_at);",
        /* 9: a job's batch option as given ("N" hosts per wave or "N%"; "0":
         * all at once), for job show and re-runs: wave_size alone loses the
         * percentage.  NULL for a job of an older schema. */
        [8] = "ALTER TABLE jobs ADD COLUMN batch text;",
        /* 10: the open hosts of a job by (job, host): the master's per-host
         * updates of a big job (pending expiry, loss, cancel) joined on
         * job_id alone scanned every open host once per host, 10,000 hosts
         * taking 7 s.  The old index's uses are a prefix of this one. */
        [9] = "DROP INDEX job_hosts_open;"
              "CREATE INDEX job_hosts_open ON job_hosts (job_id, host) WHERE state NOT IN"
              " ('ok','failed','unreachable','timeout','cancelled','skipped','lost');",
};
#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* Hot statements, prepared once per session (again after a reset). */
static const struct {
	const char *name;
	const char *sql;
} prepared[] = {
        /* Reserves $2 event ids of a job and locks its row until commit.  Sent
         * in job id order so concurrent batches of several masters cannot
         * deadlock, and first, so the completion check later in the batch sees
         * every other writer of the job committed.  A plain UPDATE takes FOR NO
         * KEY UPDATE: foreign-key checks (KEY SHARE) are not blocked. */
        {"om_reserve", "UPDATE jobs SET last_event = last_event + $2::bigint"
                       " WHERE id = $1::bigint"},
        /* One chunk with id last_event - $6 from the reserved block.  A missing
         * job gives an id that the foreign key refuses: the batch fails instead
         * of silently dropping output. */
        {"om_chunk", "INSERT INTO job_events (job_id, id, kind, host, stream, seq, data,"
                     " attempt)"
                     " SELECT $1::bigint, coalesce((SELECT last_event FROM jobs"
                     " WHERE id = $1::bigint), 0) - $6::bigint, 1,"
                     " $2::text, $3::smallint, $4::bigint, $5::bytea, $7::int"
                     " ON CONFLICT (job_id, host, attempt, stream, seq) WHERE kind = 1"
                     " DO NOTHING"},
        /* One host state.  Final states are sticky, with one exception: a
         * host declared lost takes the real result its own task reports
         * late (the worker was cut off, not dead), so no acknowledged result
         * ends lost.  A worker's report ($10, its task) only moves a host
         * that is still on that task: a host re-run elsewhere ignores its
         * old attempt.  Master-made states have $10 = 0.  Only a final
         * state that actually moved the host gets an event (id last_event
         * - $7). */
        {"om_state",
         "WITH u AS (UPDATE job_hosts SET state = $3::text, reason = $5::text,"
         " exit_code = CASE WHEN $3::text IN " FINAL_STATES " THEN $4::int END,"
         " duration_ms = CASE WHEN $3::text IN " FINAL_STATES " THEN $6::bigint END,"
         " started_at = CASE WHEN $3::text = 'running'"
         " THEN coalesce(started_at, now()) ELSE started_at END,"
         " finished_at = CASE WHEN $3::text IN " FINAL_STATES " THEN now() END,"
         " changed = CASE WHEN $3::text IN " FINAL_STATES " THEN $8::bool ELSE false END,"
         " result = CASE WHEN $3::text IN " FINAL_STATES " THEN $9::jsonb END"
         " WHERE job_id = $1::bigint AND host = $2::text"
         " AND ($10::bigint = 0 OR task_id = $10::bigint)"
         " AND (state NOT IN " FINAL_STATES " OR ($10::bigint <> 0 AND state = 'lost'"
         " AND $3::text IN " FINAL_STATES " AND $3::text <> 'lost')) RETURNING 1)"
         " INSERT INTO job_events (job_id, id, kind, host, state, exit_code, reason,"
         " duration_ms)"
         " SELECT $1::bigint, j.last_event - $7::bigint, 2, $2::text, $3::text, $4::int,"
         " $5::text, $6::bigint FROM jobs j"
         " WHERE j.id = $1::bigint AND $3::text IN " FINAL_STATES " AND EXISTS (SELECT 1 FROM u)"},
        /* Job completion, once: all hosts final and not yet done.  Its id is
         * the last of the block. */
        {"om_done", "WITH d AS (UPDATE jobs SET state = 'done', finished_at = now()"
                    " WHERE id = $1::bigint AND state <> 'done' AND NOT EXISTS (SELECT 1"
                    " FROM job_hosts WHERE job_id = $1::bigint AND state NOT IN " FINAL_STATES ")"
                    " RETURNING last_event)"
                    " INSERT INTO job_events (job_id, id, kind) SELECT $1::bigint, d.last_event, 3"
                    " FROM d"},
        /* Facts of a host from a "facts" job's ok result, sent after its state:
         * only a result that made the host final here counts, and facts never
         * go back in time (a late report of an older job). */
        {"om_facts", "UPDATE hosts h SET facts = jh.result, facts_at = jh.finished_at"
                     " FROM job_hosts jh JOIN jobs j ON j.id = jh.job_id"
                     " WHERE jh.job_id = $1::bigint AND jh.host = $2::text AND jh.state = 'ok'"
                     " AND j.module = 'facts' AND jsonb_typeof(jh.result) = 'object'"
                     " AND h.name = jh.host AND (h.facts_at IS NULL"
                     " OR h.facts_at < jh.finished_at)"},
        /* A page of events plus the job's state in one snapshot; one row with
         * NULL event columns when there is nothing after the cursor.  File
         * bytes (stream 3) only when $4 asks for them.  A state event is final
         * and final states are sticky, so the host row holds its result.
         * With a scope ($5 IDCs, $6 groups; '{}' both when none) only events
         * of hosts in it, and the job's end; unscoped, the joins are skipped. */
        {"om_events", "SELECT j.state, e.id, e.kind, e.host, e.stream, e.data,"
                      " e.state, e.exit_code, e.reason, e.duration_ms,"
                      /* Scalar subqueries by full key, never joins: the planner
                       * cannot turn them into a scan of the job's hosts.  With
                       * statistics from before a big job it did, for a join and
                       * for a lateral join alike (10,000 hosts: 440 ms a page). */
                      " CASE WHEN e.kind = 2 THEN (SELECT x.changed FROM job_hosts x"
                      " WHERE x.job_id = e.job_id AND x.host = e.host) END,"
                      " CASE WHEN e.kind = 2 THEN (SELECT x.result::text FROM job_hosts x"
                      " WHERE x.job_id = e.job_id AND x.host = e.host) END, j.last_event"
                      " FROM jobs j LEFT JOIN LATERAL (SELECT v.* FROM job_events v"
                      " WHERE v.job_id = j.id AND v.id > $2::bigint AND v.id <= $7::bigint"
                      " AND ($4::bool OR v.stream IS DISTINCT FROM 3)"
                      " AND (v.host IS NULL OR cardinality($5::text[]) + cardinality($6::text[]) = 0"
                      /* the scope as a filter, not joins (joins under the LIMIT
                       * made the plan sort every event after the cursor); a
                       * scalar subquery, as an EXISTS was hashed over a scan of
                       * every job's hosts */
                      " OR (SELECT (cardinality($5::text[]) = 0 OR sh.idc = ANY ($5::text[]))"
                      " AND (cardinality($6::text[]) = 0 OR coalesce((SELECT sv.groups FROM"
                      " hosts sv WHERE sv.name = sh.host), '{}') && $6::text[])"
                      " FROM job_hosts sh WHERE sh.job_id = v.job_id AND sh.host = v.host))"
                      " ORDER BY v.id LIMIT $3::bigint) e ON true"
                      " WHERE j.id = $1::bigint ORDER BY e.id"},
        {"om_notify", "SELECT pg_notify('om_events', $1::text)"},
        {"om_host_put", "INSERT INTO hosts (name, addr, port, ssh_user, idc, groups)"
                        " VALUES ($1::text, $2::text, $3::int, $4::text, $5::text, $6::text[])"
                        " ON CONFLICT (name) DO UPDATE SET addr = EXCLUDED.addr,"
                        " port = EXCLUDED.port, ssh_user = EXCLUDED.ssh_user, idc = EXCLUDED.idc,"
                        " groups = EXCLUDED.groups, updated_at = now()"},
};
#define NPREPARED ((int)(sizeof(prepared) / sizeof(prepared[0])))

/* --- errors ------------------------------------------------------------------- */

void
om__store_set_err(struct om_store *st, const char *what, const char *msg)
{
	size_t n;

	snprintf(st->err, sizeof(st->err), "%s: %s", what, msg && *msg ? msg : "unknown error");
	/* libpq messages end in a newline; logs add their own. */
	n = strlen(st->err);
	while (n > 0 && (st->err[n - 1] == '\n' || st->err[n - 1] == ' '))
		st->err[--n] = '\0';
	st->have_msg = true;
}

/*
 * Only the database being away counts as a failure for
 * om_store_last_failure_ms (which holds back declaring workers lost): a
 * refused login, a bad token or a statement timeout must not, or anyone
 * sending bad cookies would keep every dead worker's tasks open forever.
 */
void
om__store_set_fail(struct om_store *st, const char *what, const char *msg)
{
	om__store_set_err(st, what, msg);
	st->fail_ms = om_now_ms();
}

void
om__store_set_err_res(struct om_store *st, const char *what, const PGresult *r)
{
	const char *msg = r ? PQresultErrorMessage(r) : NULL;
	const char *code = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

	msg = msg && *msg ? msg : PQerrorMessage(st->conn);
	/* no result, a broken connection, connection exceptions (08), operator
	 * intervention such as a shutdown (57P01-57P05), too many connections */
	if (r == NULL || PQstatus(st->conn) != CONNECTION_OK || code == NULL ||
	    strncmp(code, "08", 2) == 0 || strncmp(code, "57P", 3) == 0 ||
	    strcmp(code, "53300") == 0)
		om__store_set_fail(st, what, msg);
	else
		om__store_set_err(st, what, msg);
}

bool
om__store_res_ok(const PGresult *r)
{
	ExecStatusType s;

	if (r == NULL)
		return false;
	s = PQresultStatus(r);
	return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

static bool
res_sqlstate(const PGresult *r, const char *code)
{
	const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

	return s != NULL && strcmp(s, code) == 0;
}

/* --- small codecs ------------------------------------------------------------- */

int
om__store_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return OM_EPROTO;
	v = strtoull(s, &end, 10);
	if (*end != '\0')
		return OM_EPROTO;
	*out = v;
	return 0;
}

/* A binary-format integer column (int2, int4 or int8, big-endian). */
int64_t
om__store_bin_int(const PGresult *r, int row, int col)
{
	const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
	int len = PQgetlength(r, row, col);
	uint64_t v = 0;
	int i;

	if (PQgetisnull(r, row, col) || (len != 2 && len != 4 && len != 8))
		return 0;
	for (i = 0; i < len; i++)
		v = v << 8 | p[i];
	/* sign-extend the narrower types */
	if (len < 8 && (v >> (len * 8 - 1)) & 1)
		v |= ~UINT64_C(0) << (len * 8);
	return (int64_t)v;
}

static uint32_t
be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A binary-format text[] of one dimension without NULLs into owned strings. */
int
om__store_bin_text_array(const char *val, int len, char ***out, uint32_t *n)
{
	const unsigned char *p = (const unsigned char *)val;
	char **v;
	uint32_t i, count;
	size_t off;

	*out = NULL;
	*n = 0;
	if (len < 12)
		return OM_EPROTO;
	if (be32(p) == 0)
		return 0; /* '{}' has no dimensions */
	if (be32(p) != 1 || len < 20)
		return OM_EPROTO;
	count = be32(p + 12);
	/* each element takes at least its 4-byte length */
	if (count > (uint32_t)(len - 20) / 4)
		return OM_EPROTO;
	if ((v = om_calloc(count, sizeof(*v))) == NULL)
		return OM_ENOMEM;
	off = 20;
	for (i = 0; i < count; i++) {
		uint32_t elen = be32(p + off);
		off += 4;
		if (elen == UINT32_MAX || elen > (size_t)len - off)
			goto bad;
		if ((v[i] = om_strndup((const char *)p + off, elen)) == NULL)
			goto bad;
		off += elen;
		if (i + 1 < count && (size_t)len - off < 4)
			goto bad;
	}
	*out = v;
	*n = count;
	return 0;
bad:
	for (i = 0; i < count; i++)
		om_free(v[i]);
	om_free(v);
	return OM_EPROTO;
}

/* Appends s as one element of a text-format array literal (NULL: SQL NULL). */
void
om__store_array_put(struct om_buf *b, const char *s, bool first)
{
	if (!first)
		om_buf_putc(b, ',');
	if (s == NULL) {
		om_buf_append(b, "NULL", 4);
		return;
	}
	/* Quoted, with " and \ escaped: any text survives, including "NULL". */
	om_buf_putc(b, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			om_buf_putc(b, '\\');
		om_buf_putc(b, (uint8_t)*s);
	}
	om_buf_putc(b, '"');
}

int
om__store_array_end(struct om_buf *b)
{
	om_buf_putc(b, '}');
	om_buf_putc(b, '\0'); /* passed to libpq as a C string */
	return b->err;
}

/*
 * Copies at most max bytes of s, replacing bytes that are not valid UTF-8
 * with '?' and never cutting a character: a reason from a remote host must
 * not make the text column (and so the whole batch) fail forever.
 */
void
om__store_utf8_clean(const char *s, char *out, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0;

	while (*p && o < max) {
		unsigned c = p[0];
		size_t k, need;
		uint32_t cp;

		if (c < 0x80) {
			out[o++] = (char)c;
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
		} else {
			goto bad;
		}
		for (k = 1; k <= need; k++) {
			if ((p[k] & 0xc0) != 0x80)
				goto bad;
			cp = cp << 6 | (p[k] & 0x3f);
		}
		/* overlong, surrogate or past U+10FFFF */
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			goto bad;
		if (o + need + 1 > max)
			break;
		memcpy(out + o, p, need + 1);
		o += need + 1;
		p += need + 1;
		continue;
	bad:
		out[o++] = '?';
		p++;
	}
	out[o] = '\0';
}

/* --- connection --------------------------------------------------------------- */

static void
notice_drop(void *arg, const char *msg)
{
	/* Notices ("relation exists, skipping") are not errors; don't spam stderr. */
	(void)arg;
	(void)msg;
}

static int
session_setup(struct om_store *st)
{
	PGresult *r;

	PQsetNoticeProcessor(st->conn, notice_drop, NULL);
	/* Text is UTF-8 end to end (reasons are cleaned to it). */
	if (PQsetClientEncoding(st->conn, "UTF8") != 0) {
		om__store_set_fail(st, "set client encoding", PQerrorMessage(st->conn));
		return OM_EDB;
	}
	/* Every wait has a bound: a stuck statement or lock fails the call, the
	 * caller retries (workers keep unacknowledged results meanwhile). */
	/* jit off: every statement here is short, and a cost estimate over
	 * jit_above_cost (a stale plan) made PostgreSQL spend about 290 ms
	 * compiling a 1 ms query. */
	r = PQexec(st->conn, "SET statement_timeout = '30s'; SET lock_timeout = '15s'; "
			     "SET idle_in_transaction_session_timeout = '60s'; SET jit = off");
	if (!om__store_res_ok(r)) {
		om__store_set_err_res(st, "set timeouts", r);
		PQclear(r);
		return OM_EDB;
	}
	PQclear(r);
	return 0;
}

static int
prepare_all(struct om_store *st)
{
	int i;

	for (i = 0; i < NPREPARED; i++) {
		PGresult *r = PQprepare(st->conn, prepared[i].name, prepared[i].sql, 0, NULL);
		if (!om__store_res_ok(r)) {
			om__store_set_err_res(st, prepared[i].name, r);
			PQclear(r);
			return OM_EDB;
		}
		PQclear(r);
	}
	st->prepared = true;
	return 0;
}

void
om__store_rollback(struct om_store *st)
{
	if (st->begin_due) {
		st->begin_due = false; /* nothing was sent */
		return;
	}
	PQclear(PQexec(st->conn, "ROLLBACK"));
}

int
om__store_begin(struct om_store *st)
{
	int rv = om__store_ready(st);

	if (rv == 0)
		st->begin_due = true;
	return rv;
}

/*
 * Makes the connection usable before a call: one PQreset when it is known
 * bad, statements prepared, no transaction left open by an earlier failure.
 */
int
om__store_ready(struct om_store *st)
{
	PGTransactionStatusType ts;

	st->begin_due = false;

	st->have_msg = false;
	st->err[0] = '\0';
	if (st->broken || PQstatus(st->conn) == CONNECTION_BAD) {
		st->broken = false;
		st->prepared = false;
		om__store_stmts_clear(st); /* a new session has none of them */
		PQreset(st->conn);
		if (PQstatus(st->conn) != CONNECTION_OK) {
			om__store_set_fail(st, "reconnect", PQerrorMessage(st->conn));
			return OM_EDB;
		}
		if (PQpipelineStatus(st->conn) != PQ_PIPELINE_OFF) {
			st->broken = true;
			om__store_set_fail(st, "reconnect", "connection still in pipeline mode");
			return OM_EDB;
		}
		if (session_setup(st) != 0)
			return OM_EDB;
		if (st->listen && om__store_listen_now(st) != 0)
			return OM_EDB;
	}
	ts = PQtransactionStatus(st->conn);
	if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
		om__store_rollback(st);
	else if (ts != PQTRANS_IDLE) {
		st->broken = true;
		om__store_set_fail(st, "connection", "busy or in an unknown state");
		return OM_EDB;
	}
	if (!st->prepared)
		return prepare_all(st);
	return 0;
}

/* --- statement cache ------------------------------------------------------------ */

#define STMT_SLOTS 512 /* open addressing; caching stops at 3/4 full */

struct om__stmt {
	uint64_t hash;
	char *sql; /* NULL: free slot */
};

static uint64_t
stmt_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* Only DML is planned; DDL and transaction control are not worth a slot. */
static bool
stmt_cacheable(const char *sql)
{
	static const char *const kw[] = {"SELECT", "WITH", "INSERT", "UPDATE", "DELETE"};
	size_t i, n;

	while (*sql == ' ' || *sql == '\n' || *sql == '\t')
		sql++;
	for (i = 0; i < sizeof(kw) / sizeof(kw[0]); i++) {
		n = strlen(kw[i]);
		if (strncasecmp(sql, kw[i], n) == 0 && (sql[n] == ' ' || sql[n] == '\n'))
			return true;
	}
	return false;
}

void
om__store_stmts_clear(struct om_store *st)
{
	unsigned i;

	if (st->stmts == NULL)
		return;
	for (i = 0; i < STMT_SLOTS; i++)
		om_free(st->stmts[i].sql);
	om_free(st->stmts);
	st->stmts = NULL;
	st->nstmts = 0;
}

/* A DEALLOCATE that fails (in an aborted transaction) leaves the name taken
 * in the session: reset it, so every statement is prepared afresh. */
static void
stmt_deallocate(struct om_store *st, const char *dq)
{
	PGresult *r = PQexec(st->conn, dq);

	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		st->broken = true;
	PQclear(r);
}

/* Drops slot i's statement from the session and the cache. */
static void
stmt_drop(struct om_store *st, unsigned i)
{
	char dq[32];

	snprintf(dq, sizeof(dq), "DEALLOCATE om_q%u", i);
	stmt_deallocate(st, dq);
	if (st->stmts[i].sql != NULL) {
		om_free(st->stmts[i].sql);
		st->stmts[i].sql = NULL;
		st->nstmts--;
		/* Open addressing: the slots after it are placed again. */
		for (unsigned j = (i + 1) % STMT_SLOTS; st->stmts[j].sql != NULL;
		     j = (j + 1) % STMT_SLOTS) {
			char *moved = st->stmts[j].sql;

			/* Their statements carry their slot's name: they go, and come back on use. */
			snprintf(dq, sizeof(dq), "DEALLOCATE om_q%u", j);
			stmt_deallocate(st, dq);
			st->stmts[j].sql = NULL;
			st->nstmts--;
			om_free(moved);
		}
	}
}

/*
 * The slot of sql's prepared statement, preparing it first when needed;
 * -1 when it goes unprepared (not DML, cache full, the prepare failed:
 * PQexecParams then reports whatever is wrong with it).
 */
static int
stmt_get(struct om_store *st, const char *sql, int n)
{
	char name[16];
	uint64_t h;
	unsigned i;
	PGresult *r;
	bool ok;

	if (!stmt_cacheable(sql))
		return -1;
	if (st->stmts == NULL && (st->stmts = om_calloc(STMT_SLOTS, sizeof(*st->stmts))) == NULL)
		return -1;
	h = stmt_hash(sql);
	for (i = (unsigned)(h % STMT_SLOTS); st->stmts[i].sql != NULL; i = (i + 1) % STMT_SLOTS)
		if (st->stmts[i].hash == h && strcmp(st->stmts[i].sql, sql) == 0)
			return (int)i;
	if (st->nstmts >= STMT_SLOTS / 4 * 3)
		return -1;
	snprintf(name, sizeof(name), "om_q%u", i);
	r = PQprepare(st->conn, name, sql, n, NULL);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok)
		return -1;
	if ((st->stmts[i].sql = om_strdup(sql)) == NULL) {
		stmt_drop(st, i);
		return -1;
	}
	st->stmts[i].hash = h;
	st->nstmts++;
	return (int)i;
}

/*
 * BEGIN (when begin) and calls[0..n) in one pipeline, every result read
 * back: one round trip.  calls[i] runs as the prepared statement of
 * slot[i], or as text when slot[i] < 0.  got[i] is its result as it came
 * (an error, or PIPELINE_ABORTED after one; caller PQclears), *begun
 * BEGIN's (NULL without begin).  -1 when the connection failed: nothing
 * to clear, the session reset before the next call.
 */
static int
pipeline_run(struct om_store *st, bool begin, const struct om__call *calls, const int *slot, int n,
             PGresult **got, PGresult **begun)
{
	PGconn *c = st->conn;
	PGresult *r;
	char name[16];
	int i, ok;

	*begun = NULL;
	for (i = 0; i < n; i++)
		got[i] = NULL;
	if (!PQenterPipelineMode(c))
		return -1;
	ok = !begin || PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
	for (i = 0; ok && i < n; i++) {
		const struct om__call *k = &calls[i];

		if (slot[i] >= 0) {
			snprintf(name, sizeof(name), "om_q%d", slot[i]);
			ok = PQsendQueryPrepared(c, name, k->n, k->vals, k->lens, k->fmts, k->rfmt);
		} else {
			ok = PQsendQueryParams(c, k->sql, k->n, NULL, k->vals, k->lens, k->fmts,
			                       k->rfmt);
		}
	}
	if (!ok || !PQpipelineSync(c)) {
		st->broken = true;
		return -1;
	}
	/* each query: its result, then NULL; then the sync point */
	for (i = begin ? -1 : 0; i < n; i++) {
		r = PQgetResult(c);
		if (i < 0)
			*begun = r;
		else
			got[i] = r;
		while (r != NULL && (r = PQgetResult(c)) != NULL)
			PQclear(r);
	}
	r = PQgetResult(c);
	ok = r != NULL && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
	PQclear(r);
	if (!ok || !PQexitPipelineMode(c)) {
		st->broken = true;
		PQclear(*begun);
		*begun = NULL;
		for (i = 0; i < n; i++) {
			PQclear(got[i]);
			got[i] = NULL;
		}
		return -1;
	}
	return 0;
}

/*
 * BEGIN and one statement in one round trip (see om__store_begin): the
 * statement's result, or BEGIN's when BEGIN failed; NULL when the
 * connection failed.
 */
static PGresult *
exec_begun(struct om_store *st, int i, const char *sql, int n, const char *const *vals,
           const int *lens, const int *fmts, int rfmt)
{
	const struct om__call call = {sql, n, vals, lens, fmts, rfmt};
	PGresult *res, *begun;

	if (pipeline_run(st, true, &call, &i, 1, &res, &begun) != 0)
		return NULL;
	if (begun == NULL || PQresultStatus(begun) != PGRES_COMMAND_OK) {
		PQclear(res);
		return begun;
	}
	PQclear(begun);
	return res;
}

static bool
is_txn_end(const char *sql)
{
	return strcmp(sql, "COMMIT") == 0 || strcmp(sql, "ROLLBACK") == 0;
}

PGresult *
om__store_exec(struct om_store *st, const char *sql, int n, const char *const *vals,
               const int *lens, const int *fmts, int rfmt)
{
	char name[16];
	const char *code;
	PGresult *r;
	int i;

	if (st->begin_due && is_txn_end(sql)) {
		/* an empty transaction: nothing to send */
		st->begin_due = false;
		return PQmakeEmptyPGresult(st->conn, PGRES_COMMAND_OK);
	}
	i = stmt_get(st, sql, n); /* before a pipeline: PQprepare waits for its answer */
	if (st->begin_due) {
		st->begin_due = false;
		r = exec_begun(st, i, sql, n, vals, lens, fmts, rfmt);
	} else if (i < 0) {
		return PQexecParams(st->conn, sql, n, NULL, vals, lens, fmts, rfmt);
	} else {
		snprintf(name, sizeof(name), "om_q%d", i);
		r = PQexecPrepared(st->conn, name, n, vals, lens, fmts, rfmt);
	}
	if (i < 0)
		return r;
	/* "cached plan must not change result type": a table changed under the
	 * statement (another master migrated).  Prepared again at the next call. */
	if (r != NULL && (code = PQresultErrorField(r, PG_DIAG_SQLSTATE)) != NULL &&
	    strcmp(code, "0A000") == 0)
		stmt_drop(st, (unsigned)i);
	return r;
}

int
om__store_batch(struct om_store *st, const char *what, const struct om__call *calls, int n,
                PGresult **res)
{
	PGresult *got[OM__BATCH_MAX], *begun, *r;
	int slot[OM__BATCH_MAX], i, rv = 0;
	bool begin, stale[OM__BATCH_MAX] = {false};
	const char *code;

	if (n < 1 || n > OM__BATCH_MAX) {
		om__store_set_err(st, what, "bad statement batch");
		return OM_EDB;
	}
	for (i = 0; i < n; i++)
		slot[i] = stmt_get(st, calls[i].sql, calls[i].n); /* before the pipeline */
	begin = st->begin_due;
	st->begin_due = false;
	if (pipeline_run(st, begin, calls, slot, n, got, &begun) != 0) {
		om__store_set_fail(st, what, PQerrorMessage(st->conn));
		return OM_EDB;
	}
	for (i = begin ? -1 : 0; i < n; i++) {
		ExecStatusType s;

		r = i < 0 ? begun : got[i];
		s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
		if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK)
			continue;
		/* the first real error, not the "aborted" that follow it */
		if (rv == 0 && s != PGRES_PIPELINE_ABORTED)
			om__store_set_err_res(st, what, r);
		/* "cached plan must not change result type": prepared again next time */
		if (i >= 0 && slot[i] >= 0 && (code = PQresultErrorField(r, PG_DIAG_SQLSTATE)) &&
		    strcmp(code, "0A000") == 0)
			stale[i] = true;
		rv = OM_EDB;
	}
	PQclear(begun);
	for (i = 0; i < n; i++) {
		if (rv != 0)
			PQclear(got[i]);
		else
			res[i] = got[i];
		if (stale[i]) {
			/* looked up again: a drop can move other statements' slots */
			int j = stmt_get(st, calls[i].sql, calls[i].n);
			if (j >= 0)
				stmt_drop(st, (unsigned)j);
		}
	}
	return rv;
}

PGresult *
om__store_query(struct om_store *st, const char *what, const char *sql, int n,
                const char *const *vals, int rfmt)
{
	PGresult *r = om__store_exec(st, sql, n, vals, NULL, NULL, rfmt);

	if (!om__store_res_ok(r)) {
		om__store_set_err_res(st, what, r);
		PQclear(r);
		return NULL;
	}
	return r;
}

int
om__store_run_cmd(struct om_store *st, const char *what, const char *sql, int n,
                  const char *const *vals)
{
	PGresult *r = om__store_query(st, what, sql, n, vals, 0);

	PQclear(r);
	return r ? 0 : OM_EDB;
}

/* --- pipeline ----------------------------------------------------------------- */

static int
pipe_sql(struct om_store *st, const char *sql)
{
	if (st->pipe_err)
		return st->pipe_err;
	if (!PQsendQueryParams(st->conn, sql, 0, NULL, NULL, NULL, NULL, 0)) {
		om__store_set_fail(st, "pipeline send", PQerrorMessage(st->conn));
		return st->pipe_err = OM_EDB;
	}
	st->npipe++;
	return 0;
}

static int
pipe_send(struct om_store *st, const char *stmt, int n, const char *const *vals, const int *lens,
          const int *fmts)
{
	if (st->pipe_err)
		return st->pipe_err;
	if (!PQsendQueryPrepared(st->conn, stmt, n, vals, lens, fmts, 0)) {
		om__store_set_fail(st, stmt, PQerrorMessage(st->conn));
		return st->pipe_err = OM_EDB;
	}
	st->npipe++;
	return 0;
}

/*
 * Enters pipeline mode and opens the transaction.  Once this returns 0 the
 * caller must finish with pipe_end, also when a later send fails (the send
 * error is kept in pipe_err and reported there).
 */
static int
pipe_begin(struct om_store *st)
{
	st->npipe = 0;
	st->pipe_err = 0;
	if (!PQenterPipelineMode(st->conn)) {
		om__store_set_fail(st, "pipeline", PQerrorMessage(st->conn));
		return OM_EDB;
	}
	pipe_sql(st, "BEGIN");
	return 0;
}

/*
 * Commits (unless a send failed), syncs, and reads every result.  0 only if
 * every statement and the COMMIT succeeded; otherwise nothing of the batch
 * is kept.
 */
static int
pipe_end(struct om_store *st)
{
	int rv, i;
	PGresult *r;

	/* Crash tests: a batch sent without its COMMIT (the server rolls it back)... */
	if (*om_fault_armed() && PQflush(st->conn) == 0)
		om_fault("ingest.precommit");
	if (st->pipe_err == 0)
		pipe_sql(st, "COMMIT");
	rv = st->pipe_err;
	if (!PQpipelineSync(st->conn)) {
		om__store_set_fail(st, "pipeline sync", PQerrorMessage(st->conn));
		st->broken = true;
		return OM_EDB;
	}
	/* ...and one whose COMMIT is on the wire, its outcome never read. */
	om_fault("ingest.commit");
	for (i = 0; i < st->npipe; i++) {
		while ((r = PQgetResult(st->conn)) != NULL) {
			ExecStatusType s = PQresultStatus(r);
			if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
				/* keep the first real error, not the "aborted" that follow */
				if (!st->have_msg && s != PGRES_PIPELINE_ABORTED)
					om__store_set_err_res(st, "ingest", r);
				rv = OM_EDB;
			}
			PQclear(r);
		}
	}
	r = PQgetResult(st->conn);
	if (r == NULL || PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
		if (!st->have_msg)
			om__store_set_fail(st, "pipeline", PQerrorMessage(st->conn));
		st->broken = true;
		rv = OM_EDB;
	}
	PQclear(r);
	if (!PQexitPipelineMode(st->conn)) {
		if (!st->have_msg)
			om__store_set_fail(st, "pipeline exit", PQerrorMessage(st->conn));
		st->broken = true;
		return OM_EDB;
	}
	/* An error inside BEGIN..COMMIT leaves the session in the aborted block. */
	if (PQtransactionStatus(st->conn) != PQTRANS_IDLE)
		om__store_rollback(st);
	if (rv != 0 && !st->have_msg)
		om__store_set_fail(st, "pipeline", PQerrorMessage(st->conn));
	return rv;
}

/* --- open, migrate, close ------------------------------------------------------ */

int om__store_migrate_upto;

static int
migrate(struct om_store *st)
{
	char key[32], ver[16];
	const char *kp[1] = {key}, *vp[1] = {ver};
	PGresult *r;
	bool applied[NMIGRATIONS] = {false};
	int rv = 0, have, v;

	snprintf(key, sizeof(key), "%" PRId64, MIGRATE_LOCK_KEY);
	if (om__store_run_cmd(st, "migration lock", "SELECT pg_advisory_lock($1::bigint)", 1, kp) !=
	    0)
		return OM_EDB;
	if ((rv = om__store_run_cmd(
	             st, "schema_migrations",
	             "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY,"
	             " applied_at timestamptz NOT NULL DEFAULT now())",
	             0, NULL)) != 0)
		goto out;
	/*
	 * Every listed version not applied yet, in order, not just those above
	 * the highest: a number reserved by a change that lands later (a NULL
	 * entry here) is filled in by the build that has it.
	 */
	if ((r = om__store_query(st, "schema version", "SELECT version FROM schema_migrations ORDER BY version",
	             0, NULL, 0)) == NULL) {
		rv = OM_EDB;
		goto out;
	}
	have = 0;
	for (v = 0; v < PQntuples(r); v++) {
		int x = (int)strtol(PQgetvalue(r, v, 0), NULL, 10);
		if (x > have)
			have = x;
		if (x >= 1 && x <= NMIGRATIONS)
			applied[x - 1] = true;
	}
	PQclear(r);
	for (v = 1; v <= NMIGRATIONS; v++) {
		if (applied[v - 1] || migrations[v - 1] == NULL)
			continue;
		if (om__store_migrate_upto > 0 && v > om__store_migrate_upto)
			break;
		/* one transaction per version: a failure keeps the earlier ones */
		snprintf(ver, sizeof(ver), "%d", v);
		if ((rv = om__store_run_cmd(st, "migration", "BEGIN", 0, NULL)) != 0)
			goto out;
		r = PQexec(st->conn, migrations[v - 1]);
		if (!om__store_res_ok(r)) {
			om__store_set_err_res(st, "migration", r);
			PQclear(r);
			om__store_rollback(st);
			rv = OM_EDB;
			goto out;
		}
		PQclear(r);
		if ((rv = om__store_run_cmd(st, "migration",
		                            "INSERT INTO schema_migrations (version)"
		                            " VALUES ($1::int)",
		                            1, vp)) != 0 ||
		    (rv = om__store_run_cmd(st, "migration commit", "COMMIT", 0, NULL)) != 0) {
			om__store_rollback(st);
			goto out;
		}
	}
	/* A newer master may have migrated further: its additions are its own. */
	for (v = NMIGRATIONS; v > 0 && migrations[v - 1] == NULL && !applied[v - 1]; v--)
		;
	st->version = have > v ? have : v;
out:
	PQclear(PQexecParams(st->conn, "SELECT pg_advisory_unlock($1::bigint)", 1, NULL, kp, NULL,
	                     NULL, 0));
	return rv;
}

int
om_store_open(struct om_store **out, const char *conninfo, char *err, size_t errlen)
{
	struct om_store *st;
	int rv;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (conninfo == NULL)
		return OM_EINVAL;
	if ((st = om_calloc(1, sizeof(*st))) == NULL)
		return OM_ENOMEM;
	st->live_ms = 15000;
	{
		/* Bounded waits unless the conninfo says otherwise (it is expanded
		 * after these, so its own settings win). */
		static const char *const keys[] = {"connect_timeout", "keepalives_idle",
			"keepalives_interval", "keepalives_count", "dbname", NULL};
		const char *vals[] = {"10", "30", "10", "3", conninfo, NULL};
		st->conn = PQconnectdbParams(keys, vals, 1);
	}
	if (st->conn == NULL) {
		om_free(st);
		return OM_ENOMEM;
	}
	if (PQstatus(st->conn) != CONNECTION_OK) {
		om__store_set_fail(st, "connect", PQerrorMessage(st->conn));
		rv = OM_EDB;
		goto fail;
	}
	if ((rv = session_setup(st)) != 0 || (rv = migrate(st)) != 0 || (rv = prepare_all(st)) != 0)
		goto fail;
	*out = st;
	return 0;
fail:
	if (err && errlen)
		snprintf(err, errlen, "%s", st->err);
	om_store_close(st);
	return rv;
}

void
om_store_close(struct om_store *st)
{
	if (st == NULL)
		return;
	PQfinish(st->conn);
	om__store_stmts_clear(st);
	om_free(st);
}

int
om_store_schema_version(struct om_store *st)
{
	return st->version;
}

int64_t
om_store_last_failure_ms(struct om_store *st)
{
	return st->fail_ms;
}

const char *
om_store_errmsg(struct om_store *st)
{
	return st->err;
}

/* --- hosts and workers --------------------------------------------------------- */

static int
host_check(const struct om_host *h)
{
	uint32_t i;

	if (h->name == NULL || h->addr == NULL || h->idc == NULL || h->port > 65535 ||
	    (h->ngroups > 0 && h->groups == NULL))
		return OM_EINVAL;
	for (i = 0; i < h->ngroups; i++)
		if (h->groups[i] == NULL)
			return OM_EINVAL;
	return 0;
}

int
om_store_hosts_upsert(struct om_store *st, const struct om_host *hosts, size_t n)
{
	struct om_buf groups;
	char port[16];
	size_t i;
	uint32_t g;
	int rv;

	for (i = 0; i < n; i++)
		if (host_check(&hosts[i]) != 0)
			return OM_EINVAL;
	if (n == 0)
		return 0;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	om_buf_init(&groups, ARRAY_MAX);
	if ((rv = pipe_begin(st)) != 0) {
		om_buf_release(&groups);
		return rv;
	}
	for (i = 0; i < n && st->pipe_err == 0; i++) {
		const struct om_host *h = &hosts[i];
		const char *v[6];

		om_buf_reset(&groups);
		om_buf_putc(&groups, '{');
		for (g = 0; g < h->ngroups; g++)
			om__store_array_put(&groups, h->groups[g], g == 0);
		if (om__store_array_end(&groups) != 0) {
			om__store_set_err(st, "hosts", "groups too large");
			st->pipe_err = groups.err;
			break;
		}
		/* struct om_host: port 0 means 22 */
		snprintf(port, sizeof(port), "%u", h->port ? h->port : 22u);
		v[0] = h->name;
		v[1] = h->addr;
		v[2] = port;
		v[3] = h->user;
		v[4] = h->idc;
		v[5] = (const char *)groups.data;
		pipe_send(st, "om_host_put", 6, v, NULL, NULL);
	}
	rv = pipe_end(st);
	om_buf_release(&groups);
	return rv;
}

int
om_store_hosts_load(struct om_store *st, struct om_host **hosts, size_t *n)
{
	return om_store_hosts_load_filtered(st, NULL, hosts, n);
}

/* A text[] literal of v[0..n) into b (released by the caller). */
static int
text_array(struct om_buf *b, const char *const *v, size_t n)
{
	om_buf_init(b, ARRAY_MAX);
	om_buf_putc(b, '{');
	for (size_t i = 0; i < n; i++)
		om__store_array_put(b, v[i], i == 0);
	return om__store_array_end(b);
}

int
om_store_hosts_load_filtered(struct om_store *st, const struct om_host_filter *f,
                             struct om_host **hosts, size_t *n)
{
	struct om_host *hs;
	struct om_buf an, ai, ag;
	PGresult *r;
	int rv, i, rows;

	*hosts = NULL;
	*n = 0;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	/* binary results: groups arrive as a self-describing array, no parsing of
	 * quoted literals */
	if (f == NULL) {
		r = om__store_query(st, "hosts load",
		                    "SELECT name, addr, port, ssh_user, idc, groups FROM hosts"
		                    " ORDER BY name COLLATE \"C\"",
		                    0, NULL, 1);
	} else {
		const char *v[3];

		/* each is built, so each can be released, whatever fails */
		rv = text_array(&an, f->names, f->nnames);
		rv = text_array(&ai, f->idcs, f->nidcs) ? OM_ENOMEM : rv;
		rv = text_array(&ag, f->groups, f->ngroups) ? OM_ENOMEM : rv;
		v[0] = (const char *)an.data;
		v[1] = (const char *)ai.data;
		v[2] = (const char *)ag.data;
		r = rv != 0 ? NULL
		            : om__store_query(st, "hosts load",
		                              "SELECT name, addr, port, ssh_user, idc, groups"
		                              " FROM hosts WHERE name = ANY($1::text[])"
		                              " OR idc = ANY($2::text[]) OR groups && $3::text[]"
		                              " ORDER BY name COLLATE \"C\"",
		                              3, v, 1);
		om_buf_release(&an);
		om_buf_release(&ai);
		om_buf_release(&ag);
		if (rv != 0)
			return OM_ENOMEM;
	}
	if (r == NULL)
		return OM_EDB;
	rows = PQntuples(r);
	if ((hs = om_calloc((size_t)rows, sizeof(*hs))) == NULL) {
		PQclear(r);
		return OM_ENOMEM;
	}
	for (i = 0; i < rows; i++) {
		struct om_host *h = &hs[i];

		h->name = om_strndup(PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0));
		h->addr = om_strndup(PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1));
		h->port = (uint32_t)om__store_bin_int(r, i, 2);
		if (!PQgetisnull(r, i, 3))
			h->user = om_strndup(PQgetvalue(r, i, 3), (size_t)PQgetlength(r, i, 3));
		h->idc = om_strndup(PQgetvalue(r, i, 4), (size_t)PQgetlength(r, i, 4));
		if (h->name == NULL || h->addr == NULL || h->idc == NULL ||
		    (h->user == NULL && !PQgetisnull(r, i, 3))) {
			rv = OM_ENOMEM;
			break;
		}
		rv = om__store_bin_text_array(PQgetvalue(r, i, 5), PQgetlength(r, i, 5), &h->groups,
		                              &h->ngroups);
		if (rv != 0) {
			if (rv == OM_EPROTO)
				om__store_set_err(st, "hosts load", "malformed groups array");
			break;
		}
	}
	PQclear(r);
	if (rv != 0) {
		om_hosts_free(hs, (size_t)rows);
		return rv == OM_EPROTO ? OM_EDB : rv;
	}
	*hosts = hs;
	*n = (size_t)rows;
	return 0;
}

int
om_store_worker_seen(struct om_store *st, const char *name, const char *idc,
                     const char *fingerprint, uint64_t *worker_id)
{
	const char *v[3] = {name, idc, fingerprint};
	PGresult *r;
	int rv;

	if (name == NULL || idc == NULL || fingerprint == NULL)
		return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((r = om__store_query(st, "worker seen",
	             "INSERT INTO workers (name, idc, fingerprint)"
	             " VALUES ($1::text, $2::text, $3::text) ON CONFLICT (name) DO UPDATE"
	             " SET idc = EXCLUDED.idc, fingerprint = EXCLUDED.fingerprint,"
	             " last_seen = now() RETURNING id",
	             3, v, 0)) == NULL)
		return OM_EDB;
	rv = PQntuples(r) == 1 ? om__store_parse_u64(PQgetvalue(r, 0, 0), worker_id) : OM_EPROTO;
	PQclear(r);
	if (rv != 0) {
		om__store_set_err(st, "worker seen", "unexpected result");
		return OM_EDB;
	}
	return 0;
}

int
om_store_workers_load(struct om_store *st, struct om_worker_info **out, size_t *n)
{
	struct om_worker_info *ws;
	PGresult *r;
	char live[24];
	const char *lv[1] = {live};
	int rv = 0, i, rows;

	*out = NULL;
	*n = 0;
	snprintf(live, sizeof(live), "%" PRId64, st->live_ms);
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((r = om__store_query(st, "workers load",
	             "SELECT name, idc, fingerprint,"
	             " (extract(epoch FROM last_seen) * 1000)::bigint,"
	             " connected AND alive_at > now() - $1::bigint * interval '1 millisecond',"
	             " (SELECT count(*) FROM tasks t WHERE t.worker = w.name"
	             " AND t.state IN ('queued','delivered')) FROM workers w"
	             " ORDER BY idc COLLATE \"C\", name COLLATE \"C\"",
	             1, lv, 0)) == NULL)
		return OM_EDB;
	rows = PQntuples(r);
	if ((ws = om_calloc((size_t)rows, sizeof(*ws))) == NULL) {
		PQclear(r);
		return OM_ENOMEM;
	}
	for (i = 0; i < rows; i++) {
		ws[i].name = om_strdup(PQgetvalue(r, i, 0));
		ws[i].idc = om_strdup(PQgetvalue(r, i, 1));
		ws[i].fingerprint = om_strdup(PQgetvalue(r, i, 2));
		ws[i].last_seen_ms = strtoll(PQgetvalue(r, i, 3), NULL, 10);
		ws[i].connected = PQgetvalue(r, i, 4)[0] == 't';
		ws[i].running = (uint32_t)strtoul(PQgetvalue(r, i, 5), NULL, 10);
		if (ws[i].name == NULL || ws[i].idc == NULL || ws[i].fingerprint == NULL) {
			rv = OM_ENOMEM;
			break;
		}
	}
	PQclear(r);
	if (rv != 0) {
		om_workers_free(ws, (size_t)rows);
		return rv;
	}
	*out = ws;
	*n = (size_t)rows;
	return 0;
}

/* --- jobs and tasks ------------------------------------------------------------ */

int
om_store_job_create(struct om_store *st, const struct om_job_spec *spec,
                    const struct om_host *hosts, size_t n, uint64_t *job_id)
{
	struct om_buf a[7]; /* keys, vals, names, idcs, addrs, ports, users */
	char timeout[16], forks[16], nh[16], wsize[16], nwaves[16], maxf[16];
	const char *v[22];
	PGresult *r;
	size_t i;
	int rv = 0, k;

	if (spec == NULL || spec->user == NULL || spec->selector == NULL || spec->module == NULL ||
	    (spec->nparams > 0 && spec->params == NULL) || spec->timeout_s > INT32_MAX ||
	    spec->forks > INT32_MAX || n > INT32_MAX)
		return OM_EINVAL;
	for (i = 0; i < spec->nparams; i++)
		if (spec->params[i].key == NULL)
			return OM_EINVAL;
	for (i = 0; i < n; i++)
		if (hosts[i].name == NULL || hosts[i].addr == NULL || hosts[i].idc == NULL ||
		    hosts[i].port > 65535)
			return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;

	/* The host list goes in as parallel arrays: one statement for any n. */
	for (k = 0; k < 7; k++) {
		om_buf_init(&a[k], ARRAY_MAX);
		om_buf_putc(&a[k], '{');
	}
	for (i = 0; i < spec->nparams; i++) {
		om__store_array_put(&a[0], spec->params[i].key, i == 0);
		om__store_array_put(&a[1], spec->params[i].val, i == 0);
	}
	for (i = 0; i < n; i++) {
		om__store_array_put(&a[2], hosts[i].name, i == 0);
		om__store_array_put(&a[3], hosts[i].idc, i == 0);
		om__store_array_put(&a[4], hosts[i].addr, i == 0);
		om_buf_printf(&a[5], "%s%u", i ? "," : "", hosts[i].port ? hosts[i].port : 22u);
		om__store_array_put(&a[6], hosts[i].user, i == 0);
	}
	for (k = 0; k < 7; k++)
		if (om__store_array_end(&a[k]) != 0)
			rv = a[k].err;
	if (rv != 0) {
		om__store_set_err(st, "job create", "parameters too large");
		goto out;
	}
	snprintf(timeout, sizeof(timeout), "%u", spec->timeout_s);
	snprintf(forks, sizeof(forks), "%u", spec->forks);
	snprintf(nh, sizeof(nh), "%zu", n);
	v[0] = spec->user;
	v[1] = spec->selector;
	v[2] = spec->module;
	v[3] = (const char *)a[0].data;
	v[4] = (const char *)a[1].data;
	v[5] = timeout;
	v[6] = forks;
	v[7] = nh;
	for (k = 2; k < 7; k++)
		v[6 + k] = (const char *)a[k].data;
	snprintf(wsize, sizeof(wsize), "%u", spec->wave_size ? spec->wave_size : (uint32_t)n);
	snprintf(nwaves, sizeof(nwaves), "%u", spec->nwaves ? spec->nwaves : 1u);
	snprintf(maxf, sizeof(maxf), "%u", spec->max_fail);
	v[13] = spec->become ? "true" : "false";
	v[14] = spec->become_user;
	v[15] = spec->check ? "true" : "false";
	v[16] = spec->retry_lost ? "true" : "false";
	v[17] = wsize;
	v[18] = nwaves;
	v[19] = spec->has_max_fail ? "true" : "false";
	v[20] = maxf;
	v[21] = spec->batch;
	/* One statement is one transaction.  A job without hosts is done at
	 * once, with its job-done event, so a follower does not wait forever.
	 * Lost hosts are retried when the job asks or its module is idempotent
	 * in the catalog now: read in the same statement, so the job records
	 * the promise it was created under, whatever workers announce later. */
	r = om__store_query(st, "job create",
	        "WITH j AS (INSERT INTO jobs (created_by, selector, module, param_keys, param_vals,"
	        " timeout_s, forks, nhosts, state, last_event, finished_at, become, become_user,"
	        " check_mode, retry_lost, wave_size, nwaves, has_max_fail, max_fail, retry_reason,"
	        " batch)"
	        " VALUES ($1::text, $2::text, $3::text, $4::text[], $5::text[], $6::int, $7::int,"
	        " $8::int, CASE WHEN $8::int = 0 THEN 'done' ELSE 'running' END,"
	        " CASE WHEN $8::int = 0 THEN 1 ELSE 0 END,"
	        " CASE WHEN $8::int = 0 THEN now() END, $14::bool, $15::text, $16::bool,"
	        " $17::bool OR coalesce((SELECT idempotent FROM modules"
	        " WHERE name = $3::text), false),"
	        " $18::int, $19::int, $20::bool, $21::int,"
	        " CASE WHEN $17::bool THEN 'option' WHEN (SELECT idempotent FROM modules"
	        " WHERE name = $3::text) THEN 'idempotent' END, $22::text) RETURNING id, state),"
	        " h AS (INSERT INTO job_hosts (job_id, host, idc, addr, port, ssh_user, seq)"
	        " SELECT j.id, u.host, u.idc, u.addr, u.port, u.ssh_user, u.i - 1 FROM j,"
	        " unnest($9::text[], $10::text[], $11::text[], $12::int[], $13::text[])"
	        " WITH ORDINALITY AS u(host, idc, addr, port, ssh_user, i)),"
	        " e AS (INSERT INTO job_events (job_id, id, kind)"
	        " SELECT j.id, 1, 3 FROM j WHERE j.state = 'done')"
	        " SELECT id FROM j",
	        22, v, 0);
	if (r == NULL) {
		rv = OM_EDB;
		goto out;
	}
	if (PQntuples(r) != 1 || om__store_parse_u64(PQgetvalue(r, 0, 0), job_id) != 0) {
		om__store_set_err(st, "job create", "unexpected result");
		rv = OM_EDB;
	}
	PQclear(r);
out:
	for (k = 0; k < 7; k++)
		om_buf_release(&a[k]);
	return rv;
}

int
om_store_task_create(struct om_store *st, uint64_t job_id, const char *idc, const char *worker,
                     const char *const *hosts, size_t n, uint64_t *task_id)
{
	struct om_buf names;
	char jid[24];
	const char *v[4];
	PGresult *r;
	size_t i;
	uint64_t moved = 0, want = 0;
	int rv;

	if (idc == NULL || worker == NULL || (n > 0 && hosts == NULL))
		return OM_EINVAL;
	if (job_id == 0 || job_id > INT64_MAX)
		return OM_ENOTFOUND;
	for (i = 0; i < n; i++)
		if (hosts[i] == NULL)
			return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	om_buf_init(&names, ARRAY_MAX);
	om_buf_putc(&names, '{');
	for (i = 0; i < n; i++)
		om__store_array_put(&names, hosts[i], i == 0);
	if (om__store_array_end(&names) != 0) {
		om__store_set_err(st, "task create", "host list too large");
		om_buf_release(&names);
		return OM_EMSGSIZE;
	}
	snprintf(jid, sizeof(jid), "%" PRIu64, job_id);
	v[0] = jid;
	v[1] = idc;
	v[2] = worker;
	v[3] = (const char *)names.data;
	if ((rv = om__store_run_cmd(st, "task create", "BEGIN", 0, NULL)) != 0)
		goto out;
	/* Only queued hosts move: one already dispatched (by another master, or
	 * an earlier task) must not run twice. */
	r = PQexecParams(st->conn,
	                 /* hosts in seq order, as every task's (om_store_task_take) */
	                 "WITH t AS (INSERT INTO tasks (job_id, idc, worker, state, hosts)"
	                 " VALUES ($1::bigint, $2::text, $3::text, 'delivered',"
	                 " (SELECT coalesce(array_agg(host ORDER BY seq), '{}') FROM job_hosts"
	                 " WHERE job_id = $1::bigint AND host = ANY($4::text[])))"
	                 " RETURNING id),"
	                 " u AS (UPDATE job_hosts h SET state = 'dispatched', task_id = t.id,"
	                 " worker = $3::text FROM t WHERE h.job_id = $1::bigint"
	                 " AND h.host = ANY($4::text[]) AND h.state = 'queued' RETURNING 1)"
	                 " SELECT t.id, (SELECT count(*) FROM u),"
	                 " (SELECT count(DISTINCT x) FROM unnest($4::text[]) x) FROM t",
	                 4, NULL, v, NULL, NULL, 0);
	if (!om__store_res_ok(r)) {
		om__store_set_err_res(st, "task create", r);
		/* foreign key: the job does not exist */
		rv = res_sqlstate(r, "23503") ? OM_ENOTFOUND : OM_EDB;
		PQclear(r);
		goto out;
	}
	if (PQntuples(r) != 1 || om__store_parse_u64(PQgetvalue(r, 0, 0), task_id) != 0 ||
	    om__store_parse_u64(PQgetvalue(r, 0, 1), &moved) != 0 ||
	    om__store_parse_u64(PQgetvalue(r, 0, 2), &want) != 0) {
		om__store_set_err(st, "task create", "unexpected result");
		rv = OM_EDB;
	} else if (moved != want) {
		om__store_set_err(st, "task create", "some hosts are not queued in this job");
		rv = OM_EBUSY;
	}
	PQclear(r);
	if (rv == 0)
		rv = om__store_run_cmd(st, "task create commit", "COMMIT", 0, NULL);
out:
	if (rv != 0)
		om__store_rollback(st);
	om_buf_release(&names);
	return rv;
}

/* --- ingest -------------------------------------------------------------------- */

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Must agree with FINAL_STATES. */
static bool
state_final(uint32_t s)
{
	return s >= OM_HS_OK && s < OM_HS_COUNT_;
}

static int
ingest_check(const struct om_store_chunk *chunks, size_t nchunks,
             const struct om_store_state *states, size_t nstates)
{
	size_t i;

	for (i = 0; i < nchunks; i++) {
		const struct om_store_chunk *c = &chunks[i];
		if (c->job_id == 0 || c->job_id > INT64_MAX || c->host == NULL ||
		    c->stream > INT16_MAX || c->seq > INT64_MAX || (c->len && c->data == NULL))
			return OM_EINVAL;
		if (c->len > OM_MAX_FRAME)
			return OM_EMSGSIZE;
	}
	for (i = 0; i < nstates; i++) {
		const struct om_store_state *s = &states[i];
		if (s->job_id == 0 || s->job_id > INT64_MAX || s->host == NULL ||
		    s->state >= OM_HS_COUNT_ || s->duration_ms > INT64_MAX)
			return OM_EINVAL;
	}
	return 0;
}

/*
 * A structured result goes into a jsonb column: anything PostgreSQL would
 * refuse (not JSON, not an object, \u0000, bad UTF-8) is dropped here, as a
 * bad reason is cleaned, so one host cannot make its batch fail forever.
 */
static bool
result_ok(const char *text)
{
	json_t *j;
	bool ok;

	if (text == NULL || strlen(text) > OM_MAX_RESULT)
		return false;
	j = json_loads(text, 0, NULL);
	ok = j != NULL && json_is_object(j);
	json_decref(j);
	return ok;
}

/* Per-job bookkeeping of a batch: the id block and how much of it is used. */
struct ingest_job {
	uint64_t id;
	uint64_t size; /* ids reserved: chunks + final states + 1 if any final */
	uint64_t used; /* ids handed out so far */
	bool finals;   /* the job can complete in this batch */
};

static int
cmp_job(const void *a, const void *b)
{
	return cmp_u64(&((const struct ingest_job *)a)->id, &((const struct ingest_job *)b)->id);
}

static struct ingest_job *
job_find(struct ingest_job *jobs, size_t n, uint64_t id)
{
	struct ingest_job key = {.id = id};

	return bsearch(&key, jobs, n, sizeof(*jobs), cmp_job);
}

/* "How far back from last_event" the next id of this job's block is. */
static void
job_next(struct ingest_job *j, char *out, size_t cap)
{
	j->used++;
	snprintf(out, cap, "%" PRIu64, j->size - j->used);
}

/* The distinct jobs of a batch in id order, with their block sizes. */
static int
ingest_jobs(const struct om_store_chunk *chunks, size_t nchunks,
            const struct om_store_state *states, size_t nstates, struct ingest_job **out, size_t *n)
{
	struct ingest_job *jobs, *j;
	size_t i, o = 0, total = nchunks + nstates;

	if ((jobs = om_calloc(total, sizeof(*jobs))) == NULL)
		return OM_ENOMEM;
	for (i = 0; i < total; i++)
		jobs[i].id = i < nchunks ? chunks[i].job_id : states[i - nchunks].job_id;
	qsort(jobs, total, sizeof(*jobs), cmp_job);
	for (i = 0; i < total; i++)
		if (o == 0 || jobs[o - 1].id != jobs[i].id)
			jobs[o++].id = jobs[i].id;
	for (i = 0; i < nchunks; i++)
		job_find(jobs, o, chunks[i].job_id)->size++;
	for (i = 0; i < nstates; i++) {
		if (!state_final(states[i].state))
			continue;
		j = job_find(jobs, o, states[i].job_id);
		j->size++;
		j->finals = true;
	}
	for (i = 0; i < o; i++)
		if (jobs[i].finals)
			jobs[i].size++; /* the job-done event, always the last id */
	*out = jobs;
	*n = o;
	return 0;
}

int
om_store_ingest(struct om_store *st, const struct om_store_chunk *chunks, size_t nchunks,
                const struct om_store_state *states, size_t nstates)
{
	static const int chunk_fmts[7] = {0, 0, 0, 0, 1, 0, 0}; /* data is binary bytea */
	static const char empty[1] = "";
	struct ingest_job *jobs;
	char jid[24], num[24], num2[24], back[24], reason[OM_MAX_TEXT + 1];
	size_t i, njobs;
	int rv;

	if ((rv = ingest_check(chunks, nchunks, states, nstates)) != 0)
		return rv;
	if (nchunks + nstates == 0)
		return 0;
	if ((rv = ingest_jobs(chunks, nchunks, states, nstates, &jobs, &njobs)) != 0)
		return rv;
	if ((rv = om__store_ready(st)) != 0 || (rv = pipe_begin(st)) != 0) {
		om_free(jobs);
		return rv;
	}
	/* libpq copies parameters at send time: the buffers are reused. */
	for (i = 0; i < njobs && st->pipe_err == 0; i++) {
		const char *v[2] = {jid, num};

		snprintf(jid, sizeof(jid), "%" PRIu64, jobs[i].id);
		snprintf(num, sizeof(num), "%" PRIu64, jobs[i].size);
		pipe_send(st, "om_reserve", 2, v, NULL, NULL);
	}
	for (i = 0; i < nchunks && st->pipe_err == 0; i++) {
		const struct om_store_chunk *c = &chunks[i];
		char stream[8];
		char attempt[16];
		const char *v[7] = {jid,  c->host, stream, num, c->len ? (const char *)c->data : empty,
		                    back, attempt};
		int lens[7] = {0, 0, 0, 0, (int)c->len, 0, 0};

		snprintf(jid, sizeof(jid), "%" PRIu64, c->job_id);
		snprintf(stream, sizeof(stream), "%u", c->stream);
		snprintf(num, sizeof(num), "%" PRIu64, c->seq);
		snprintf(attempt, sizeof(attempt), "%u", c->attempt ? c->attempt : 1u);
		job_next(job_find(jobs, njobs, c->job_id), back, sizeof(back));
		pipe_send(st, "om_chunk", 7, v, lens, chunk_fmts);
	}
	for (i = 0; i < nstates && st->pipe_err == 0; i++) {
		const struct om_store_state *s = &states[i];
		const char *result = result_ok(s->result) ? s->result : NULL;
		char tid[24];
		const char *v[10] = {jid,
		                     s->host,
		                     state_names[s->state],
		                     num,
		                     s->reason ? reason : NULL,
		                     num2,
		                     back,
		                     s->changed ? "true" : "false",
		                     result,
		                     tid};

		snprintf(jid, sizeof(jid), "%" PRIu64, s->job_id);
		snprintf(num, sizeof(num), "%" PRId32, s->exit_code);
		snprintf(num2, sizeof(num2), "%" PRIu64, s->duration_ms);
		snprintf(tid, sizeof(tid), "%" PRIu64, s->task_id);
		if (s->reason)
			om__store_utf8_clean(s->reason, reason, OM_MAX_TEXT);
		if (state_final(s->state))
			job_next(job_find(jobs, njobs, s->job_id), back, sizeof(back));
		else
			snprintf(back, sizeof(back), "0"); /* no event, the id is unused */
		pipe_send(st, "om_state", 10, v, NULL, NULL);
		if (s->state == OM_HS_OK && result != NULL)
			pipe_send(st, "om_facts", 2, v, NULL, NULL);
	}
	for (i = 0; i < njobs && st->pipe_err == 0; i++) {
		const char *v[1] = {jid};

		/* Followers on every master (om_store_listen). */
		snprintf(jid, sizeof(jid), "%" PRIu64, jobs[i].id);
		pipe_send(st, "om_notify", 1, v, NULL, NULL);
		if (!jobs[i].finals)
			continue;
		snprintf(jid, sizeof(jid), "%" PRIu64, jobs[i].id);
		pipe_send(st, "om_done", 1, v, NULL, NULL);
	}
	rv = pipe_end(st);
	om_free(jobs);
	return rv;
}

/* --- events -------------------------------------------------------------------- */

static int
state_parse(const char *s)
{
	int i;

	for (i = 0; i < OM_HS_COUNT_; i++)
		if (strcmp(s, state_names[i]) == 0)
			return i;
	return -1;
}

/* One event row (columns 1..11 of om_events) into e. */
static int
event_fill(const PGresult *r, int row, struct om_event *e)
{
	e->id = (uint64_t)om__store_bin_int(r, row, 1);
	e->kind = (uint32_t)om__store_bin_int(r, row, 2);
	if (!PQgetisnull(r, row, 3) &&
	    (e->host = om_strndup(PQgetvalue(r, row, 3), (size_t)PQgetlength(r, row, 3))) == NULL)
		return OM_ENOMEM;
	e->stream = (uint32_t)om__store_bin_int(r, row, 4);
	if (!PQgetisnull(r, row, 5) && PQgetlength(r, row, 5) > 0) {
		size_t len = (size_t)PQgetlength(r, row, 5);
		if (len > UINT32_MAX)
			return OM_EPROTO;
		if ((e->data = om_malloc(len)) == NULL)
			return OM_ENOMEM;
		memcpy(e->data, PQgetvalue(r, row, 5), len);
		e->len = (uint32_t)len;
	}
	if (!PQgetisnull(r, row, 6)) {
		int s = state_parse(PQgetvalue(r, row, 6));
		if (s < 0)
			return OM_EPROTO;
		e->state = (uint32_t)s;
	}
	e->exit_code = (int32_t)om__store_bin_int(r, row, 7);
	if (!PQgetisnull(r, row, 8) &&
	    (e->reason = om_strndup(PQgetvalue(r, row, 8), (size_t)PQgetlength(r, row, 8))) == NULL)
		return OM_ENOMEM;
	e->duration_ms = (uint64_t)om__store_bin_int(r, row, 9);
	/* binary bool: one byte */
	e->changed = !PQgetisnull(r, row, 10) && PQgetlength(r, row, 10) == 1 &&
	             PQgetvalue(r, row, 10)[0] != 0;
	if (!PQgetisnull(r, row, 11) &&
	    (e->result = om_strndup(PQgetvalue(r, row, 11), (size_t)PQgetlength(r, row, 11))) ==
	            NULL)
		return OM_ENOMEM;
	return 0;
}

int
om_store_events_read(struct om_store *st, uint64_t job_id, uint64_t cursor, size_t limit,
                     struct om_event **out, size_t *n, bool *done)
{
	return om_store_events_query(st, job_id, cursor, limit, 0, NULL, out, n, done, NULL);
}

int
om_store_events_query(struct om_store *st, uint64_t job_id, uint64_t cursor, size_t limit,
                      unsigned flags, const struct om_job_scope *scope, struct om_event **out,
                      size_t *n, bool *done, uint64_t *next)
{
	char jid[24], cur[24], lim[24], top[24];
	const char *v[7] = {jid, cur, lim, (flags & OM_EVENTS_FILES) ? "true" : "false", NULL,
	                    NULL, top};
	struct om_buf idcs, groups;
	struct om_event *ev = NULL;
	PGresult *r;
	size_t rows, i, take = 0;
	uint64_t scan;
	bool more;
	int rv = 0, iter;

	*out = NULL;
	*n = 0;
	*done = false;
	if (job_id == 0 || job_id > INT64_MAX)
		return OM_ENOTFOUND;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if (limit == 0)
		return OM_EINVAL;
	if (limit > OM_MAX_ITEMS)
		limit = OM_MAX_ITEMS; /* "at most limit": one reply's worth */
	snprintf(jid, sizeof(jid), "%" PRIu64, job_id);
	scan = cursor > INT64_MAX ? (uint64_t)INT64_MAX : cursor;
	if (next != NULL)
		*next = scan;
	/* One extra row tells whether anything follows this page: ids have gaps
	 * (a duplicate chunk burns one), so last_event alone can't. */
	snprintf(lim, sizeof(lim), "%zu", limit + 1);
	if ((rv = om__store_scope_arrays(scope, &idcs, &groups)) != 0)
		return rv;
	v[4] = (const char *)idcs.data;
	v[5] = (const char *)groups.data;
	/* binary results: bytea comes back byte-exact without unescaping */
	/*
	 * Window by window: ids are dense within a job but for burnt ones, so
	 * a window of EVENTS_WINDOW ids bounds the rows one statement can touch
	 * whatever plan PostgreSQL picks.  Without it, stale statistics (a
	 * job far bigger than the average) made it sort every event after the
	 * cursor for each page: 60 ms a page for a 10,000-host job.  Windows
	 * with nothing visible (gaps, scope) are skipped, at most
	 * EVENTS_WINDOWS of them; past that the caller gets no events and a
	 * cursor that moved.
	 */
	for (iter = 0; iter < EVENTS_WINDOWS; iter++) {
		uint64_t last, hi = scan > INT64_MAX - EVENTS_WINDOW ? (uint64_t)INT64_MAX
		                                                     : scan + EVENTS_WINDOW;

		snprintf(cur, sizeof(cur), "%" PRIu64, scan);
		snprintf(top, sizeof(top), "%" PRIu64, hi);
		r = PQexecPrepared(st->conn, "om_events", 7, v, NULL, NULL, 1);
		if (!om__store_res_ok(r)) {
			om__store_set_err_res(st, "events read", r);
			PQclear(r);
			rv = OM_EDB;
			break;
		}
		if (PQntuples(r) == 0) {
			PQclear(r);
			rv = OM_ENOTFOUND;
			break;
		}
		last = (uint64_t)om__store_bin_int(r, 0, 12);
		rows = PQgetisnull(r, 0, 1) ? 0 : (size_t)PQntuples(r);
		if (rows == 0 && hi < last) {
			/* nothing visible in this window, more after it */
			scan = hi;
			PQclear(r);
			continue;
		}
		more = rows > limit || hi < last;
		take = rows > limit ? limit : rows;
		if (take > 0 && (ev = om_calloc(take, sizeof(*ev))) == NULL) {
			PQclear(r);
			rv = OM_ENOMEM;
			break;
		}
		for (i = 0; i < take && rv == 0; i++)
			rv = event_fill(r, (int)i, &ev[i]);
		if (rv == 0) {
			*done = strcmp(PQgetvalue(r, 0, 0), "done") == 0 && !more;
			/* a window read whole is behind us, events or not: never past
			 * last_event, whose ids are all committed in this snapshot */
			if (rows > limit)
				scan = ev[take - 1].id;
			else
				scan = hi < last ? hi : (last > scan ? last : scan);
		}
		PQclear(r);
		break;
	}
	om_buf_release(&idcs);
	om_buf_release(&groups);
	if (rv == 0) {
		*out = ev;
		*n = take;
		if (next != NULL)
			*next = scan;
	} else {
		om_events_free(ev, take);
		if (rv == OM_EPROTO) {
			om__store_set_err(st, "events read", "unexpected event row");
			rv = OM_EDB;
		}
	}
	return rv;
}
