/*
 * Results, facts, fetched files and job reads of the store (master/store.c,
 * master/store_jobs.c), job history included, against a real PostgreSQL:
 * OM_TEST_PGCONN as in store_test.c (every case skips without it).  The
 * history's host scope is checked against auth_host_visible (master/auth.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "om/base.h"
#include "om/msg.h"
#include "master_int.h"
#include "store.h"

#include "pgfx.h"

static int
group_setup(void **state)
{
	return pgfx_setup(state, "om_store_jobs_test");
}

/* Hosts h-0..h-(n-1) of prefix in the inventory and a job of module over them, dispatched. */
static uint64_t
make_job(struct fx *f, const char *prefix, const char *module, size_t n)
{
	struct om_host hs[8];
	const char *names[8];
	char buf[8][64];
	char *groups[] = {"web"};
	struct om_kv kv[1] = {{"cmd", "true"}};
	struct om_job_spec spec = {"user 'alice'", "all", module, kv, 1, 30, 5};
	uint64_t job = 0, task = 0;
	size_t i;

	assert_true(n <= 8);
	memset(hs, 0, sizeof(hs));
	for (i = 0; i < n; i++) {
		snprintf(buf[i], sizeof(buf[i]), "%s-%zu", prefix, i);
		hs[i].name = buf[i];
		hs[i].addr = "10.0.0.1";
		hs[i].idc = "dc1";
		hs[i].port = 22;
		hs[i].groups = groups;
		hs[i].ngroups = 1;
		names[i] = buf[i];
	}
	assert_int_equal(om_store_hosts_upsert(f->st, hs, n), 0);
	assert_int_equal(om_store_job_create(f->st, &spec, hs, n, &job), 0);
	assert_int_equal(om_store_task_create(f->st, job, "dc1", "w1", names, n, &task), 0);
	return job;
}

static struct om_store_state
final(uint64_t job, const char *host, uint32_t s, bool changed, const char *result)
{
	struct om_store_state x = {job, host, s, s == OM_HS_OK ? 0 : 1, NULL, 10, changed, result};
	return x;
}

/* The state event of host among evs, or NULL. */
static const struct om_event *
state_of(const struct om_event *evs, size_t n, const char *host)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (evs[i].kind == OM_EV_STATE && strcmp(evs[i].host, host) == 0)
			return &evs[i];
	return NULL;
}

/* --- cases ------------------------------------------------------------------------- */

static void
test_schema_v4(void **state)
{
	struct fx *f = fx_of(state);

	assert_true(om_store_schema_version(f->st) >= 4);
	assert_int_equal(
	        q_int(f, "SELECT count(*) FROM schema_migrations WHERE version = 4", 0, NULL), 1);
	assert_int_equal(
	        q_int(f,
	              "SELECT count(*) FROM information_schema.columns WHERE"
	              " (table_name = 'job_hosts' AND column_name IN ('changed', 'result'))"
	              " OR (table_name = 'hosts' AND column_name IN ('facts', 'facts_at'))",
	              0, NULL),
	        4);
}

/*
 * A version that lands after a later one (3 after 4, as happens when two
 * changes are merged in that order) is still applied, and nothing applied is
 * run again.  Simulated by forgetting version 3 and what it created, and 6,
 * which altered it (6 also added jobs.retry_reason).
 */
static void
test_migration_gap(void **state)
{
	struct fx *f = fx_of(state);
	struct om_store *again = NULL;
	PGresult *r;
	char err[256];

	r = PQexec(f->db, "BEGIN; DELETE FROM schema_migrations WHERE version IN (3, 6);"
	                  " DROP TABLE IF EXISTS module_workers, modules CASCADE;"
	                  " ALTER TABLE jobs DROP COLUMN retry_reason; COMMIT");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	assert_int_equal(om_store_open(&again, f->conninfo, err, sizeof(err)), 0);
	assert_int_equal(om_store_schema_version(again), om_store_schema_version(f->st));
	assert_int_equal(
	        q_int(f, "SELECT count(*) FROM schema_migrations WHERE version IN (3, 6)", 0, NULL),
	        2);
	om_store_close(again);
}

static void
test_changed_and_result(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t job = make_job(f, "res", "shell", 4);
	struct om_store_state s[4] = {
	        final(job, "res-0", OM_HS_OK, true, "{\"rc\": 0, \"out\": \"h\\u00e9\"}"),
	        final(job, "res-1", OM_HS_FAILED, false, NULL),
	        /* not an object, not JSON: dropped, the state is still recorded */
	        final(job, "res-2", OM_HS_OK, true, "[1, 2]"),
	        final(job, "res-3", OM_HS_OK, false, "{\"a\": \"\\u0000\"}"),
	};
	struct om_event *ev = NULL;
	const struct om_event *e;
	size_t n = 0;
	bool done = false;
	char jid[24];
	const char *v[1] = {jid};

	snprintf(jid, sizeof(jid), "%" PRIu64, job);
	assert_int_equal(om_store_ingest(f->st, NULL, 0, s, 4), 0);
	assert_int_equal(om_store_events_read(f->st, job, 0, 100, &ev, &n, &done), 0);
	assert_true(done);
	assert_non_null(e = state_of(ev, n, "res-0"));
	assert_true(e->changed);
	assert_non_null(e->result);
	assert_non_null(strstr(e->result, "\"rc\": 0"));
	assert_non_null(e = state_of(ev, n, "res-1"));
	assert_false(e->changed);
	assert_null(e->result);
	assert_non_null(e = state_of(ev, n, "res-2"));
	assert_int_equal(e->state, OM_HS_OK);
	assert_true(e->changed);
	assert_null(e->result);
	assert_non_null(e = state_of(ev, n, "res-3"));
	assert_null(e->result);
	om_events_free(ev, n);
	assert_int_equal(
	        q_int(f, "SELECT count(*) FROM job_hosts WHERE job_id = $1 AND changed", 1, v), 2);
	/* a re-sent result does not change what is stored (final states are sticky) */
	s[1].changed = true;
	s[1].result = "{\"late\": true}";
	assert_int_equal(om_store_ingest(f->st, NULL, 0, &s[1], 1), 0);
	assert_int_equal(q_int(f,
	                       "SELECT count(*) FROM job_hosts WHERE job_id = $1 AND host = 'res-1'"
	                       " AND NOT changed AND result IS NULL",
	                       1, v),
	                 1);
	/* no facts from a module other than facts */
	assert_int_equal(q_int(f,
	                       "SELECT count(*) FROM hosts WHERE facts IS NOT NULL AND"
	                       " name LIKE 'res-%'",
	                       0, NULL),
	                 0);
}

static void
test_facts(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t job = make_job(f, "fx", "facts", 3), job2;
	struct om_store_state s[3] = {
	        final(job, "fx-0", OM_HS_OK, false, "{\"os\": \"debian\", \"cpus\": 4}"),
	        final(job, "fx-1", OM_HS_FAILED, false, "{\"os\": \"x\"}"),
	        final(job, "fx-2", OM_HS_OK, false, NULL),
	};
	struct om_host h;
	char *facts = NULL;
	int64_t at = 0;

	assert_int_equal(om_store_ingest(f->st, NULL, 0, s, 3), 0);
	assert_int_equal(om_store_host_get(f->st, "fx-0", &h, &facts, &at), 0);
	assert_string_equal(h.name, "fx-0");
	assert_string_equal(h.addr, "10.0.0.1");
	assert_string_equal(h.idc, "dc1");
	assert_int_equal(h.port, 22);
	assert_int_equal(h.ngroups, 1);
	assert_string_equal(h.groups[0], "web");
	assert_null(h.user);
	assert_non_null(facts);
	assert_non_null(strstr(facts, "\"debian\""));
	assert_true(at > 0);
	om_host_release(&h);
	om_free(facts);
	/* a failed host and a result without data leave the facts alone */
	assert_int_equal(om_store_host_get(f->st, "fx-1", &h, &facts, &at), 0);
	assert_null(facts);
	assert_int_equal(at, 0);
	om_host_release(&h);
	assert_int_equal(om_store_host_get(f->st, "fx-2", &h, &facts, &at), 0);
	assert_null(facts);
	om_host_release(&h);
	/* a newer facts job replaces them */
	job2 = make_job(f, "fx", "facts", 1);
	s[0].job_id = job2;
	s[0].result = "{\"os\": \"trixie\"}";
	assert_int_equal(om_store_ingest(f->st, NULL, 0, s, 1), 0);
	assert_int_equal(om_store_host_get(f->st, "fx-0", &h, &facts, &at), 0);
	assert_non_null(facts);
	assert_non_null(strstr(facts, "trixie"));
	assert_null(strstr(facts, "cpus"));
	om_host_release(&h);
	om_free(facts);
	/* hosts upsert keeps facts */
	{
		struct om_host up = {"fx-0", "10.0.0.2", NULL, "dc1", 22, NULL, 0};
		assert_int_equal(om_store_hosts_upsert(f->st, &up, 1), 0);
	}
	assert_int_equal(om_store_host_get(f->st, "fx-0", &h, &facts, &at), 0);
	assert_string_equal(h.addr, "10.0.0.2");
	assert_non_null(facts);
	om_host_release(&h);
	om_free(facts);
	assert_int_equal(om_store_host_get(f->st, "nope", &h, &facts, &at), OM_ENOTFOUND);
	assert_null(facts);
}

static void
test_file_stream(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t job = make_job(f, "fetch", "fetch", 2);
	struct om_store_chunk c[3] = {
	        {job, "fetch-0", OM_STREAM_STDOUT, 0, (const uint8_t *)"out\n", 4},
	        {job, "fetch-0", OM_STREAM_FILE, 0, (const uint8_t *)"\x00\x01\xff", 3},
	        {job, "fetch-0", OM_STREAM_FILE, 1, (const uint8_t *)"tail", 4},
	};
	struct om_store_state s[2] = {
	        final(job, "fetch-0", OM_HS_OK, true, "{\"dest_name\": \"hosts\", \"size\": 7}"),
	        final(job, "fetch-1", OM_HS_FAILED, false, NULL),
	};
	struct om_event *ev = NULL;
	size_t n = 0, i, files = 0, outs = 0;
	bool done = false;

	assert_int_equal(om_store_ingest(f->st, c, 3, s, 2), 0);
	/* a follower without files sees the output and the states, not the bytes */
	assert_int_equal(om_store_events_read(f->st, job, 0, 100, &ev, &n, &done), 0);
	assert_true(done);
	for (i = 0; i < n; i++) {
		if (ev[i].kind == OM_EV_OUTPUT)
			assert_int_equal(ev[i].stream, OM_STREAM_STDOUT);
	}
	assert_int_equal(n, 4); /* stdout, 2 states, done */
	om_events_free(ev, n);
	/* with files, in order, byte-exact */
	assert_int_equal(om_store_events_query(f->st, job, 0, 100, OM_EVENTS_FILES, NULL, &ev, &n, &done, NULL),
	                 0);
	assert_true(done);
	assert_int_equal(n, 6);
	for (i = 0; i < n; i++) {
		if (ev[i].kind != OM_EV_OUTPUT)
			continue;
		if (ev[i].stream == OM_STREAM_FILE) {
			if (files++ == 0) {
				assert_int_equal(ev[i].len, 3);
				assert_memory_equal(ev[i].data, "\x00\x01\xff", 3);
			} else {
				assert_int_equal(ev[i].len, 4);
				assert_memory_equal(ev[i].data, "tail", 4);
			}
		} else {
			outs++;
		}
	}
	assert_int_equal(files, 2);
	assert_int_equal(outs, 1);
	om_events_free(ev, n);
	/* paging past file events: a page of one without files skips them */
	assert_int_equal(om_store_events_read(f->st, job, 1, 1, &ev, &n, &done), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ev[0].kind, OM_EV_STATE);
	om_events_free(ev, n);
}

static void
test_job_get_and_open(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t job = make_job(f, "jg", "shell", 3);
	struct om_job_info info;
	struct om_store_state s = final(job, "jg-1", OM_HS_OK, false, NULL);

	assert_int_equal(om_store_job_get(f->st, job, &info), 0);
	assert_int_equal(info.id, job);
	assert_string_equal(info.created_by, "user 'alice'");
	assert_string_equal(info.module, "shell");
	assert_false(info.done);
	assert_int_equal(info.nhosts, 3);
	om_job_info_release(&info);
	assert_int_equal(om_store_ingest(f->st, NULL, 0, &s, 1), 0);
	{
		char jid[24];
		const char *v[1] = {jid};
		snprintf(jid, sizeof(jid), "%" PRIu64, job);
		/* open: jg-0 and jg-2 */
		assert_int_equal(q_int(f,
		                       "SELECT count(*) FROM job_hosts WHERE job_id = $1 AND state"
		                       " IN ('queued','dispatched','running')",
		                       1, v),
		                 2);
		assert_int_equal(q_int(f,
		                       "SELECT count(*) FROM job_hosts WHERE job_id = $1 AND state"
		                       " IN ('queued','dispatched','running') AND host IN ('jg-0','jg-2')",
		                       1, v),
		                 2);
	}
	/* the rest cancelled: the job is done */
	{
		struct om_store_state c[2] = {final(job, "jg-0", OM_HS_CANCELLED, false, NULL),
		                              final(job, "jg-2", OM_HS_CANCELLED, false, NULL)};
		assert_int_equal(om_store_ingest(f->st, NULL, 0, c, 2), 0);
	}
	{
		char jid[24];
		const char *v[1] = {jid};
		snprintf(jid, sizeof(jid), "%" PRIu64, job);
		assert_int_equal(q_int(f,
		                       "SELECT count(*) FROM job_hosts WHERE job_id = $1 AND state"
		                       " IN ('queued','dispatched','running')",
		                       1, v),
		                 0);
	}
	assert_int_equal(om_store_job_get(f->st, job, &info), 0);
	assert_true(info.done);
	om_job_info_release(&info);
	assert_int_equal(om_store_job_get(f->st, 999999999, &info), OM_ENOTFOUND);
	assert_int_equal(om_store_job_get(f->st, 0, &info), OM_ENOTFOUND);
}

/* --- job history (issue 5) ---------------------------------------------------------- */

struct jh {
	const char *name, *idc, *group; /* group NULL: none */
};

/* Inventory hosts and a job of them submitted by by, every host dispatched to worker w1. */
static uint64_t
make_job_of(struct fx *f, const char *by, const struct jh *spec, size_t n)
{
	struct om_host hs[8];
	const char *names[8];
	char *groups[8][1];
	struct om_kv kv[1] = {{"cmd", "true"}};
	struct om_job_spec js = {by, "group:web", "shell", kv, 1, 30, 5};
	uint64_t job = 0, task = 0;
	size_t i;

	assert_true(n <= 8);
	memset(hs, 0, sizeof(hs));
	for (i = 0; i < n; i++) {
		hs[i].name = (char *)spec[i].name;
		hs[i].addr = "10.0.0.1";
		hs[i].idc = (char *)spec[i].idc;
		hs[i].port = 22;
		groups[i][0] = (char *)spec[i].group;
		hs[i].groups = spec[i].group ? groups[i] : NULL;
		hs[i].ngroups = spec[i].group ? 1 : 0;
		names[i] = spec[i].name;
	}
	assert_int_equal(om_store_hosts_upsert(f->st, hs, n), 0);
	assert_int_equal(om_store_job_create(f->st, &js, hs, n, &job), 0);
	assert_int_equal(om_store_task_create(f->st, job, "dc1", "w1", names, n, &task), 0);
	return job;
}

static struct om_store_state
state_of_host(uint64_t job, const char *host, uint32_t s, int32_t rc, const char *reason)
{
	struct om_store_state x = {
	        .job_id = job, .host = host, .state = s, .exit_code = rc, .reason = reason,
	        .duration_ms = 1500,
	};
	return x;
}

static struct om_store_chunk
chunk(uint64_t job, const char *host, uint32_t stream, uint64_t seq, const char *data, size_t len)
{
	struct om_store_chunk c = {
	        .job_id = job, .host = host, .stream = stream, .seq = seq,
	        .data = (const uint8_t *)data, .len = len,
	};
	return c;
}

static const struct jh jv_hosts[] = {
        {"jv-a", "dc1", "web"}, /* ok */
        {"jv-b", "dc1", "db"},  /* failed */
        {"jv-c", "dc2", "web"}, /* still dispatched */
        {"jv-d", "dc2", NULL},  /* unreachable */
};

static void
test_job_summary(void **state)
{
	struct fx *f = fx_of(state);
	uint64_t job = make_job_of(f, "user 'jv-sum'", jv_hosts, 4);
	struct om_store_state s[3] = {
	        state_of_host(job, "jv-a", OM_HS_OK, 0, NULL),
	        state_of_host(job, "jv-b", OM_HS_FAILED, 2, "exit code 2"),
	        state_of_host(job, "jv-d", OM_HS_UNREACHABLE, -1, "no route to host"),
	};
	char *dc2[] = {"dc2"}, *dc1[] = {"dc1"}, *web[] = {"web"}, *nowhere[] = {"dc9"};
	struct om_job_scope only_dc2 = {dc2, 1, NULL, 0}, only_web = {NULL, 0, web, 1};
	struct om_job_scope dc1_web = {dc1, 1, web, 1}, none = {nowhere, 1, NULL, 0};
	struct om_job_summary j;

	assert_int_equal(om_store_ingest(f->st, NULL, 0, s, 3), 0);
	assert_int_equal(om_store_job_summary(f->st, job, NULL, &j), 0);
	assert_true(j.id == job);
	assert_string_equal(j.created_by, "user 'jv-sum'");
	assert_string_equal(j.selector, "group:web");
	assert_string_equal(j.module, "shell");
	assert_false(j.done);
	assert_true(j.created_ms > 1600000000000);
	assert_int_equal(j.finished_ms, 0);
	assert_int_equal(j.nhosts, 4);
	assert_int_equal(j.counts[OM_HS_OK], 1);
	assert_int_equal(j.counts[OM_HS_FAILED], 1);
	assert_int_equal(j.counts[OM_HS_DISPATCHED], 1);
	assert_int_equal(j.counts[OM_HS_UNREACHABLE], 1);
	assert_int_equal(j.counts[OM_HS_QUEUED] + j.counts[OM_HS_RUNNING] + j.counts[OM_HS_LOST],
	                 0);
	om_job_summary_release(&j);
	/* an empty scope is no scope */
	{
		struct om_job_scope empty = {NULL, 0, NULL, 0};
		assert_int_equal(om_store_job_summary(f->st, job, &empty, &j), 0);
		assert_int_equal(j.nhosts, 4);
		om_job_summary_release(&j);
	}
	/* scoped: counts of the hosts in scope only */
	assert_int_equal(om_store_job_summary(f->st, job, &only_dc2, &j), 0);
	assert_int_equal(j.nhosts, 2);
	assert_int_equal(j.counts[OM_HS_DISPATCHED], 1);
	assert_int_equal(j.counts[OM_HS_UNREACHABLE], 1);
	assert_int_equal(j.counts[OM_HS_OK], 0);
	om_job_summary_release(&j);
	assert_int_equal(om_store_job_summary(f->st, job, &only_web, &j), 0);
	assert_int_equal(j.nhosts, 2);
	assert_int_equal(j.counts[OM_HS_OK], 1);
	assert_int_equal(j.counts[OM_HS_DISPATCHED], 1);
	om_job_summary_release(&j);
	assert_int_equal(om_store_job_summary(f->st, job, &dc1_web, &j), 0);
	assert_int_equal(j.nhosts, 1);
	assert_int_equal(j.counts[OM_HS_OK], 1);
	om_job_summary_release(&j);
	/* nothing in scope: the job does not exist for that caller */
	assert_int_equal(om_store_job_summary(f->st, job, &none, &j), OM_ENOTFOUND);
	assert_null(j.module);
	assert_int_equal(om_store_job_visible(f->st, job, &none, NULL), OM_ENOTFOUND);
	assert_int_equal(om_store_job_visible(f->st, job, &only_dc2, NULL), 0);
	assert_int_equal(om_store_job_summary(f->st, 999999999, NULL, &j), OM_ENOTFOUND);
	assert_int_equal(om_store_job_summary(f->st, 0, NULL, &j), OM_ENOTFOUND);
	assert_int_equal(om_store_job_visible(f->st, 999999999, NULL, NULL), OM_ENOTFOUND);
	/* the last host ends it: done, with a finish time */
	s[0] = state_of_host(job, "jv-c", OM_HS_TIMEOUT, -1, "timed out after 30 s");
	assert_int_equal(om_store_ingest(f->st, NULL, 0, s, 1), 0);
	assert_int_equal(om_store_job_summary(f->st, job, NULL, &j), 0);
	assert_true(j.done);
	assert_true(j.finished_ms >= j.created_ms);
	assert_int_equal(j.counts[OM_HS_TIMEOUT], 1);
	assert_int_equal(j.counts[OM_HS_DISPATCHED], 0);
	om_job_summary_release(&j);
}

/* The store's scope filter agrees with auth_host_visible, host by host. */
static void
test_job_scope_matches_auth(void **state)
{
	struct fx *f = fx_of(state);
	static const struct jh hosts[] = {
	        {"js-1", "dc1", "web"}, {"js-2", "dc1", "db"}, {"js-3", "dc2", "web"},
	        {"js-4", "dc2", NULL},  {"js-5", "dc3", "db"},
	};
	uint64_t job = make_job_of(f, "user 'jv-scope'", hosts, 5);
	char *i1[] = {"dc1"}, *i12[] = {"dc1", "dc2"}, *gw[] = {"web"}, *gwd[] = {"db", "web"};
	struct {
		int role;
		char **idcs;
		size_t nidcs;
		char **groups;
		size_t ngroups;
	} users[] = {
	        {OM_ROLE_OPERATOR, NULL, 0, NULL, 0}, {OM_ROLE_OPERATOR, i1, 1, NULL, 0},
	        {OM_ROLE_OPERATOR, NULL, 0, gw, 1},   {OM_ROLE_OPERATOR, i12, 2, gw, 1},
	        {OM_ROLE_OPERATOR, i1, 1, gwd, 2},    {OM_ROLE_VIEWER, i1, 1, gw, 1},
	        {OM_ROLE_ADMIN, i1, 1, gw, 1},
	};
	size_t u, h;

	for (u = 0; u < sizeof(users) / sizeof(users[0]); u++) {
		struct peer p;
		struct om_job_scope scope;
		size_t seen = 0;

		memset(&p, 0, sizeof(p));
		p.kind = PEER_CLIENT;
		p.user.role = users[u].role;
		p.user.idcs = users[u].idcs;
		p.user.nidcs = users[u].nidcs;
		p.user.groups = users[u].groups;
		p.user.ngroups = users[u].ngroups;
		auth_job_scope(&p, &scope);
		for (h = 0; h < sizeof(hosts) / sizeof(hosts[0]); h++) {
			char *g[1] = {(char *)hosts[h].group};
			struct om_host oh = {(char *)hosts[h].name, "10.0.0.1", NULL,
			                     (char *)hosts[h].idc, 22, g, hosts[h].group ? 1 : 0};
			bool want = auth_host_visible(&p, &oh);
			int rv = om_store_job_visible(f->st, job, &scope, hosts[h].name);

			if (want != (rv == 0))
				fail_msg("user %zu, host %s: auth says %d, the store %d", u,
				         hosts[h].name, want, rv);
			seen += want;
		}
		{
			struct om_job_summary j;
			int rv = om_store_job_summary(f->st, job, &scope, &j);
			assert_int_equal(rv, seen ? 0 : OM_ENOTFOUND);
			if (rv == 0)
				assert_int_equal(j.nhosts, seen);
			om_job_summary_release(&j);
		}
	}
	/* a host that left the inventory keeps its recorded IDC, and has no groups */
	{
		PGresult *r = PQexec(f->db, "DELETE FROM hosts WHERE name = 'js-3'");
		struct om_job_scope by_idc = {i12, 2, NULL, 0}, by_group = {NULL, 0, gw, 1};

		assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
		PQclear(r);
		assert_int_equal(om_store_job_visible(f->st, job, &by_idc, "js-3"), 0);
		assert_int_equal(om_store_job_visible(f->st, job, &by_group, "js-3"), OM_ENOTFOUND);
		assert_int_equal(om_store_job_visible(f->st, job, &by_group, "js-1"), 0);
	}
	/* not a host of the job at all */
	assert_int_equal(om_store_job_visible(f->st, job, NULL, "jv-a"), OM_ENOTFOUND);
	assert_int_equal(om_store_job_visible(f->st, job, NULL, "js-1"), 0);
}

static void
test_jobs_list(void **state)
{
	struct fx *f = fx_of(state);
	static const struct jh h1[] = {{"jl-1", "dc1", "web"}};
	static const struct jh h2[] = {{"jl-2", "dc2", "web"}, {"jl-3", "dc1", "db"}};
	uint64_t j1 = make_job_of(f, "user 'jv-list'", h1, 1);
	uint64_t j2 = make_job_of(f, "user 'jv-list'", h2, 2);
	uint64_t j3 = make_job_of(f, "user 'jv-other'", h1, 1);
	struct om_store_state s = state_of_host(j1, "jl-1", OM_HS_OK, 0, NULL);
	struct om_jobs_filter flt = {OM_JOBS_ANY, "user 'jv-list'", 0, 50};
	char *dc2[] = {"dc2"};
	struct om_job_scope only_dc2 = {dc2, 1, NULL, 0};
	struct om_job_summary *js = NULL;
	char jid[24];
	const char *v[1] = {jid};
	size_t n = 0;

	assert_int_equal(om_store_ingest(f->st, NULL, 0, &s, 1), 0); /* j1 done */
	/* newest first, one user's */
	assert_int_equal(om_store_jobs_list(f->st, &flt, NULL, &js, &n), 0);
	assert_int_equal(n, 2);
	assert_true(js[0].id == j2);
	assert_true(js[1].id == j1);
	assert_int_equal(js[0].nhosts, 2);
	assert_int_equal(js[0].counts[OM_HS_DISPATCHED], 2);
	assert_true(js[1].done);
	assert_int_equal(js[1].counts[OM_HS_OK], 1);
	om_job_summaries_free(js, n);
	/* by state */
	flt.state = OM_JOBS_RUNNING;
	assert_int_equal(om_store_jobs_list(f->st, &flt, NULL, &js, &n), 0);
	assert_int_equal(n, 1);
	assert_true(js[0].id == j2);
	om_job_summaries_free(js, n);
	flt.state = OM_JOBS_DONE;
	assert_int_equal(om_store_jobs_list(f->st, &flt, NULL, &js, &n), 0);
	assert_int_equal(n, 1);
	assert_true(js[0].id == j1);
	om_job_summaries_free(js, n);
	/* a limit */
	flt.state = OM_JOBS_ANY;
	flt.limit = 1;
	assert_int_equal(om_store_jobs_list(f->st, &flt, NULL, &js, &n), 0);
	assert_int_equal(n, 1);
	assert_true(js[0].id == j2);
	om_job_summaries_free(js, n);
	/* any user: the newest job of all comes first */
	flt.created_by = NULL;
	assert_int_equal(om_store_jobs_list(f->st, &flt, NULL, &js, &n), 0);
	assert_int_equal(n, 1);
	assert_true(js[0].id == j3);
	om_job_summaries_free(js, n);
	/* since: a job of three hours ago is left out of the last hour */
	snprintf(jid, sizeof(jid), "%" PRIu64, j1);
	assert_int_equal(q_int(f,
	                       "WITH u AS (UPDATE jobs SET created_at = now() - interval '3 hours'"
	                       " WHERE id = $1 RETURNING 1) SELECT count(*) FROM u",
	                       1, v),
	                 1);
	flt.created_by = "user 'jv-list'";
	flt.limit = 50;
	flt.since_s = 3600;
	assert_int_equal(om_store_jobs_list(f->st, &flt, NULL, &js, &n), 0);
	assert_int_equal(n, 1);
	assert_true(js[0].id == j2);
	om_job_summaries_free(js, n);
	flt.since_s = 4 * 3600;
	assert_int_equal(om_store_jobs_list(f->st, &flt, NULL, &js, &n), 0);
	assert_int_equal(n, 2);
	om_job_summaries_free(js, n);
	flt.since_s = UINT64_MAX; /* any time */
	assert_int_equal(om_store_jobs_list(f->st, &flt, NULL, &js, &n), 0);
	assert_int_equal(n, 2);
	om_job_summaries_free(js, n);
	/* scoped: j1 (dc1 only) is left out, j2 counts its dc2 host only */
	flt.since_s = 0;
	assert_int_equal(om_store_jobs_list(f->st, &flt, &only_dc2, &js, &n), 0);
	assert_int_equal(n, 1);
	assert_true(js[0].id == j2);
	assert_int_equal(js[0].nhosts, 1);
	om_job_summaries_free(js, n);
	/* nobody's */
	flt.created_by = "user 'nobody'";
	assert_int_equal(om_store_jobs_list(f->st, &flt, NULL, &js, &n), 0);
	assert_int_equal(n, 0);
	assert_null(js);
	flt.state = OM_JOBS_DONE + 1;
	assert_int_equal(om_store_jobs_list(f->st, &flt, NULL, &js, &n), OM_EINVAL);
}

static void
test_job_hosts_page(void **state)
{
	struct fx *f = fx_of(state);
	/* "jp-B" < "jp-a" < "jp-b" in byte order, whatever the database's collation */
	static const struct jh hosts[] = {
	        {"jp-b", "dc1", "web"}, {"jp-a", "dc2", "web"}, {"jp-B", "dc1", "web"},
	        {"jp-c", "dc1", "db"},  {"jp-d", "dc1", "web"},
	};
	uint64_t job = make_job_of(f, "user 'jv-page'", hosts, 5);
	struct om_store_state s[4] = {
	        state_of_host(job, "jp-b", OM_HS_FAILED, 3, "exit code 3"),
	        state_of_host(job, "jp-a", OM_HS_FAILED, 1, NULL),
	        state_of_host(job, "jp-B", OM_HS_FAILED, 1, "exit code 1"),
	        state_of_host(job, "jp-c", OM_HS_OK, 0, NULL),
	};
	char *dc1[] = {"dc1"};
	struct om_job_scope only_dc1 = {dc1, 1, NULL, 0};
	struct om_job_host *hs = NULL;
	size_t n = 0;

	assert_int_equal(om_store_ingest(f->st, NULL, 0, s, 4), 0);
	assert_int_equal(om_store_job_hosts_page(f->st, job, NULL, OM_HS_FAILED, NULL, 1000, &hs, &n),
	                 0);
	assert_int_equal(n, 3);
	assert_string_equal(hs[0].host, "jp-B");
	assert_string_equal(hs[1].host, "jp-a");
	assert_string_equal(hs[2].host, "jp-b");
	assert_int_equal(hs[2].state, OM_HS_FAILED);
	assert_true(hs[2].has_exit);
	assert_int_equal(hs[2].exit_code, 3);
	assert_true(hs[2].has_duration);
	assert_true(hs[2].duration_ms == 1500);
	assert_string_equal(hs[2].worker, "w1");
	assert_string_equal(hs[2].reason, "exit code 3");
	assert_null(hs[1].reason);
	om_job_hosts_free(hs, n);
	/* pages of two after a cursor */
	assert_int_equal(om_store_job_hosts_page(f->st, job, NULL, OM_HS_FAILED, NULL, 2, &hs, &n),
	                 0);
	assert_int_equal(n, 2);
	assert_string_equal(hs[1].host, "jp-a");
	om_job_hosts_free(hs, n);
	assert_int_equal(
	        om_store_job_hosts_page(f->st, job, NULL, OM_HS_FAILED, "jp-a", 2, &hs, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(hs[0].host, "jp-b");
	om_job_hosts_free(hs, n);
	assert_int_equal(
	        om_store_job_hosts_page(f->st, job, NULL, OM_HS_FAILED, "jp-b", 2, &hs, &n), 0);
	assert_int_equal(n, 0);
	/* a host not final yet: no exit code, no duration */
	assert_int_equal(
	        om_store_job_hosts_page(f->st, job, NULL, OM_HS_DISPATCHED, NULL, 10, &hs, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(hs[0].host, "jp-d");
	assert_false(hs[0].has_exit);
	assert_false(hs[0].has_duration);
	om_job_hosts_free(hs, n);
	/* scoped: jp-a (dc2) is left out */
	assert_int_equal(
	        om_store_job_hosts_page(f->st, job, &only_dc1, OM_HS_FAILED, NULL, 10, &hs, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(hs[0].host, "jp-B");
	assert_string_equal(hs[1].host, "jp-b");
	om_job_hosts_free(hs, n);
	/* an unknown job has no hosts; a bad state is refused */
	assert_int_equal(
	        om_store_job_hosts_page(f->st, 999999999, NULL, OM_HS_OK, NULL, 10, &hs, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(
	        om_store_job_hosts_page(f->st, job, NULL, OM_HS_COUNT_, NULL, 10, &hs, &n),
	        OM_EINVAL);
}

static void
test_job_output(void **state)
{
	struct fx *f = fx_of(state);
	static const struct jh hosts[] = {{"jo-1", "dc1", "web"}, {"jo-2", "dc2", "web"}};
	uint64_t job = make_job_of(f, "user 'jv-out'", hosts, 2);
	/* bytes as a host printed them: NUL, invalid UTF-8, a lone CR, no final newline */
	static const char raw[] = "a\0b\xff\xfe\rc\n\x80partial";
	struct om_store_chunk c[6] = {
	        chunk(job, "jo-1", OM_STREAM_STDOUT, 0, raw, sizeof(raw) - 1),
	        chunk(job, "jo-2", OM_STREAM_STDOUT, 0, "two\n", 4),
	        chunk(job, "jo-1", OM_STREAM_STDERR, 0, "warn\n", 5),
	        chunk(job, "jo-1", OM_STREAM_FILE, 0, "FILE", 4),
	        chunk(job, "jo-1", OM_STREAM_STDOUT, 1, "", 0),
	        chunk(job, "jo-1", OM_STREAM_STDOUT, 2, "end\n", 4),
	};
	struct om_store_state s = state_of_host(job, "jo-1", OM_HS_OK, 0, NULL);
	char *dc2[] = {"dc2"};
	struct om_job_scope only_dc2 = {dc2, 1, NULL, 0};
	struct om_event *ev = NULL;
	size_t n = 0, i;
	bool more = true;
	uint64_t cursor;

	assert_int_equal(om_store_ingest(f->st, c, 6, &s, 1), 0);
	/* every host, in event order, without the file bytes or the state event */
	assert_int_equal(om_store_job_output(f->st, job, NULL, NULL, 0, 100, &ev, &n, &more), 0);
	assert_false(more);
	assert_int_equal(n, 5);
	for (i = 0; i < n; i++) {
		assert_int_equal(ev[i].kind, OM_EV_OUTPUT);
		assert_true(ev[i].stream == OM_STREAM_STDOUT || ev[i].stream == OM_STREAM_STDERR);
		if (i > 0)
			assert_true(ev[i].id > ev[i - 1].id);
	}
	assert_string_equal(ev[0].host, "jo-1");
	assert_int_equal(ev[0].len, sizeof(raw) - 1);
	assert_memory_equal(ev[0].data, raw, sizeof(raw) - 1);
	assert_string_equal(ev[1].host, "jo-2");
	assert_int_equal(ev[2].stream, OM_STREAM_STDERR);
	assert_int_equal(ev[3].len, 0);
	assert_null(ev[3].data);
	assert_memory_equal(ev[4].data, "end\n", 4);
	om_events_free(ev, n);
	/* one host */
	assert_int_equal(om_store_job_output(f->st, job, NULL, "jo-2", 0, 100, &ev, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_memory_equal(ev[0].data, "two\n", 4);
	om_events_free(ev, n);
	/* pages of two: more until the last */
	cursor = 0;
	for (i = 0; i < 3; i++) {
		assert_int_equal(
		        om_store_job_output(f->st, job, NULL, "jo-1", cursor, 2, &ev, &n, &more), 0);
		assert_int_equal(n, i < 2 ? 2 : 0);
		assert_int_equal(more, i == 0);
		if (n > 0)
			cursor = ev[n - 1].id;
		om_events_free(ev, n);
		if (!more)
			break;
	}
	assert_int_equal(i, 1);
	/* scoped: only jo-2's output */
	assert_int_equal(om_store_job_output(f->st, job, &only_dc2, NULL, 0, 100, &ev, &n, &more),
	                 0);
	assert_int_equal(n, 1);
	assert_string_equal(ev[0].host, "jo-2");
	om_events_free(ev, n);
	assert_int_equal(
	        om_store_job_output(f->st, job, &only_dc2, "jo-1", 0, 100, &ev, &n, &more), 0);
	assert_int_equal(n, 0);
	assert_int_equal(om_store_job_visible(f->st, job, &only_dc2, "jo-1"), OM_ENOTFOUND);
	assert_int_equal(om_store_job_visible(f->st, job, NULL, "jo-3"), OM_ENOTFOUND);
	/* an unknown job has no output */
	assert_int_equal(
	        om_store_job_output(f->st, 999999999, NULL, NULL, 0, 100, &ev, &n, &more), 0);
	assert_int_equal(n, 0);
	assert_false(more);
}

/* --- what a job was submitted with (issue 6) ----------------------------------------- */

/* A job of module jd-mod (user, token: secret; blob) with every option set. */
static uint64_t
make_detail_job(struct fx *f, const char *const *vals, const char *batch)
{
	struct om_module_info mod = {
	        .name = "jd-mod",
	        .version = "1.0",
	        .kind = "script",
	        .schema = "[{\"name\":\"user\",\"type\":\"string\"},"
	                  "{\"name\":\"token\",\"type\":\"string\",\"secret\":true},"
	                  "{\"name\":\"blob\",\"type\":\"string\"}]",
	};
	struct om_kv kv[4] = {{"user", (char *)vals[0]},
	                      {"token", (char *)vals[1]},
	                      {"blob", (char *)vals[2]},
	                      {"extra", "x"}};
	struct om_job_spec js = {"user 'jd'", "jd-0", "jd-mod", kv, 4, 60, 5};
	struct om_host h = {.name = "jd-0", .addr = "10.0.0.1", .idc = "dc1", .port = 22};
	uint64_t job = 0;

	js.become = true;
	js.become_user = "app";
	js.check = true;
	js.retry_lost = true;
	js.wave_size = 1;
	js.nwaves = 1;
	js.has_max_fail = true;
	js.max_fail = 10;
	js.batch = batch;
	assert_int_equal(om_store_modules_put(f->st, "jd-w", "dc1", &mod, 1), 0);
	assert_int_equal(om_store_hosts_upsert(f->st, &h, 1), 0);
	assert_int_equal(om_store_job_create(f->st, &js, &h, 1, &job), 0);
	return job;
}

static void
test_job_detail(void **state)
{
	struct fx *f = fx_of(state);
	char big[OM_JOB_PARAM_SHOWN + 2];
	const char *vals[3] = {"bob", "hunter2", big};
	struct om_job_detail d;
	uint64_t job;

	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	job = make_detail_job(f, vals, "25%");
	assert_int_equal(om_store_job_detail(f->st, job, &d), 0);
	assert_int_equal(d.nparams, 4);
	assert_string_equal(d.params[0].key, "user");
	assert_string_equal(d.params[0].val, "bob");
	/* the store gives secrets back: redaction is the reader's (jobview.c) */
	assert_string_equal(d.params[1].val, "hunter2");
	assert_string_equal(d.params[2].key, "blob");
	assert_null(d.params[2].val); /* longer than OM_JOB_PARAM_SHOWN: not read */
	assert_string_equal(d.params[3].key, "extra");
	assert_non_null(d.schema);
	assert_non_null(strstr(d.schema, "token"));
	assert_int_equal(d.timeout_s, 60);
	assert_int_equal(d.forks, 5);
	assert_int_equal(d.wave_size, 1);
	assert_string_equal(d.batch, "25%");
	assert_true(d.has_max_fail);
	assert_int_equal(d.max_fail, 10);
	assert_true(d.check);
	assert_true(d.become);
	assert_string_equal(d.become_user, "app");
	assert_true(d.retry_option);
	om_job_detail_release(&d);
	assert_null(d.params);
	/* exactly OM_JOB_PARAM_SHOWN bytes are still shown */
	big[OM_JOB_PARAM_SHOWN] = '\0';
	job = make_detail_job(f, vals, NULL);
	assert_int_equal(om_store_job_detail(f->st, job, &d), 0);
	assert_int_equal(strlen(d.params[2].val), OM_JOB_PARAM_SHOWN);
	assert_null(d.batch); /* not recorded */
	om_job_detail_release(&d);
	assert_int_equal(om_store_job_detail(f->st, 999999999, &d), OM_ENOTFOUND);
	assert_int_equal(om_store_job_detail(f->st, 0, &d), OM_ENOTFOUND);
}

struct show_sink {
	int type;
	char *params, *options;
};

static void
show_reply(void *arg, const struct om_msg *rep)
{
	struct show_sink *s = arg;
	uint32_t c;

	s->type = rep->type;
	if (rep->type != OM_MSG_TABLE)
		return;
	for (c = 0; c < rep->u.table.ncolumns; c++) {
		const char *v = rep->u.table.cells[c];
		if (strcmp(rep->u.table.columns[c], "PARAMS") == 0 && v != NULL)
			s->params = strdup(v);
		if (strcmp(rep->u.table.columns[c], "OPTIONS") == 0 && v != NULL)
			s->options = strdup(v);
	}
}

/* JOB_SHOW as any client gets it (master_op_job_show). */
static void
job_show(struct fx *f, uint64_t job, struct show_sink *s)
{
	struct om_msg q = {.type = OM_MSG_JOB_SHOW};
	struct master *m = calloc(1, sizeof(*m));
	struct peer p;
	struct om_rpc_req *r;

	assert_non_null(m);
	memset(s, 0, sizeof(*s));
	memset(&p, 0, sizeof(p));
	p.kind = PEER_CLIENT;
	p.scopes = OM_SCOPE_READ;
	snprintf(p.who, sizeof(p.who), "user 'jd'");
	m->store = f->st;
	q.u.by_id.id = job;
	assert_non_null(r = om_rpc_local_new(&q, show_reply, NULL, s, NULL));
	master_op_job_show(m, r, &p);
	om_rpc_local_release(r);
	free(m);
}

static void
test_job_show_redacts(void **state)
{
	struct fx *f = fx_of(state);
	char big[OM_JOB_PARAM_SHOWN + 2];
	const char *vals[3] = {"bob", "hunter2", big};
	struct show_sink s;
	uint64_t job;

	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	job = make_detail_job(f, vals, "25%");
	job_show(f, job, &s);
	assert_int_equal(s.type, OM_MSG_TABLE);
	/* the secret and the name the schema does not know are kept in; the long one is null */
	assert_non_null(s.params);
	assert_string_equal(s.params, "{\"user\":\"bob\",\"token\":\"********\",\"blob\":null,"
	                              "\"extra\":\"********\"}");
	assert_string_equal(s.options,
	                    "{\"timeout\":60,\"forks\":5,\"batch\":\"25%\",\"max_fail\":10,"
	                    "\"check\":true,\"become\":true,\"become_user\":\"app\","
	                    "\"retry_lost\":true}");
	free(s.params);
	free(s.options);
	/* a job of an older schema: batch is the hosts per wave */
	{
		char jid[24];
		const char *v[1] = {jid};
		snprintf(jid, sizeof(jid), "%" PRIu64, job);
		assert_int_equal(
		        q_int(f,
		              "WITH u AS (UPDATE jobs SET batch = NULL, has_max_fail = false"
		              " WHERE id = $1 RETURNING 1) SELECT count(*) FROM u",
		              1, v),
		        1);
	}
	job_show(f, job, &s);
	assert_non_null(strstr(s.options, "\"batch\":1,"));
	assert_non_null(strstr(s.options, "\"max_fail\":null"));
	free(s.params);
	free(s.options);
	/* without its module's schema, every value is kept in */
	{
		PGresult *r = PQexec(f->db, "DELETE FROM modules WHERE name = 'jd-mod'");
		assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
		PQclear(r);
	}
	job_show(f, job, &s);
	assert_null(strstr(s.params, "bob"));
	assert_null(strstr(s.params, "hunter2"));
	assert_non_null(strstr(s.params, "\"user\":\"********\""));
	free(s.params);
	free(s.options);
	job_show(f, 999999999, &s);
	assert_int_equal(s.type, OM_MSG_ERROR);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_schema_v4),          cmocka_unit_test(test_migration_gap),
	        cmocka_unit_test(test_changed_and_result), cmocka_unit_test(test_facts),
	        cmocka_unit_test(test_file_stream),        cmocka_unit_test(test_job_get_and_open),
	        cmocka_unit_test(test_job_summary),        cmocka_unit_test(test_job_scope_matches_auth),
	        cmocka_unit_test(test_jobs_list),          cmocka_unit_test(test_job_hosts_page),
	        cmocka_unit_test(test_job_output),         cmocka_unit_test(test_job_detail),
	        cmocka_unit_test(test_job_show_redacts),
	};

	return cmocka_run_group_tests_name("store_jobs", tests, group_setup, group_teardown);
}
