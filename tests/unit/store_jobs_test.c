/*
 * Results, facts, fetched files and job reads of the store (master/store.c,
 * master/store_jobs.c) against a real PostgreSQL: OM_TEST_PGCONN as in
 * store_test.c (every case skips without it).
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
 * run again.  Simulated by forgetting version 3 and what it created.
 */
static void
test_migration_gap(void **state)
{
	struct fx *f = fx_of(state);
	struct om_store *again = NULL;
	PGresult *r;
	char err[256];

	r = PQexec(f->db, "BEGIN; DELETE FROM schema_migrations WHERE version = 3;"
	                  " DROP TABLE IF EXISTS module_workers, modules CASCADE; COMMIT");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	assert_int_equal(om_store_open(&again, f->conninfo, err, sizeof(err)), 0);
	assert_int_equal(om_store_schema_version(again), om_store_schema_version(f->st));
	assert_int_equal(
	        q_int(f, "SELECT count(*) FROM schema_migrations WHERE version = 3", 0, NULL), 1);
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
	assert_int_equal(om_store_events_query(f->st, job, 0, 100, OM_EVENTS_FILES, &ev, &n, &done),
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
	char **names = NULL;
	size_t n = 0, i;

	assert_int_equal(om_store_job_get(f->st, job, &info), 0);
	assert_int_equal(info.id, job);
	assert_string_equal(info.created_by, "user 'alice'");
	assert_string_equal(info.module, "shell");
	assert_false(info.done);
	assert_int_equal(info.nhosts, 3);
	om_job_info_release(&info);
	assert_int_equal(om_store_ingest(f->st, NULL, 0, &s, 1), 0);
	assert_int_equal(om_store_job_open_hosts(f->st, job, &names, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "jg-0");
	assert_string_equal(names[1], "jg-2");
	for (i = 0; i < n; i++)
		om_free(names[i]);
	om_free(names);
	/* the rest cancelled: the job is done */
	{
		struct om_store_state c[2] = {final(job, "jg-0", OM_HS_CANCELLED, false, NULL),
		                              final(job, "jg-2", OM_HS_CANCELLED, false, NULL)};
		assert_int_equal(om_store_ingest(f->st, NULL, 0, c, 2), 0);
	}
	assert_int_equal(om_store_job_open_hosts(f->st, job, &names, &n), 0);
	assert_int_equal(n, 0);
	om_free(names);
	assert_int_equal(om_store_job_get(f->st, job, &info), 0);
	assert_true(info.done);
	om_job_info_release(&info);
	assert_int_equal(om_store_job_get(f->st, 999999999, &info), OM_ENOTFOUND);
	assert_int_equal(om_store_job_get(f->st, 0, &info), OM_ENOTFOUND);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_schema_v4),          cmocka_unit_test(test_migration_gap),
	        cmocka_unit_test(test_changed_and_result), cmocka_unit_test(test_facts),
	        cmocka_unit_test(test_file_stream),        cmocka_unit_test(test_job_get_and_open),
	};

	return cmocka_run_group_tests_name("store_jobs", tests, group_setup, group_teardown);
}
