/* Tests for proto/msg.c: round trips of every message type and hostile inputs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "om/mp.h"
#include "om/msg.h"

/* --- comparisons ------------------------------------------------------------------ */

static void
assert_str_or_null(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		assert_ptr_equal(a, b);
	else
		assert_string_equal(a, b);
}

static void
assert_bytes(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
	assert_int_equal(alen, blen);
	if (alen > 0)
		assert_memory_equal(a, b, alen);
}

static void
assert_kvs(const struct om_kv *a, uint32_t na, const struct om_kv *b, uint32_t nb)
{
	assert_int_equal(na, nb);
	for (uint32_t i = 0; i < na; i++) {
		assert_string_equal(a[i].key, b[i].key);
		assert_string_equal(a[i].val, b[i].val);
	}
}

static void
assert_host(const struct om_host *a, const struct om_host *b)
{
	assert_str_or_null(a->name, b->name);
	assert_str_or_null(a->addr, b->addr);
	assert_str_or_null(a->user, b->user);
	assert_str_or_null(a->idc, b->idc);
	assert_int_equal(a->port, b->port);
	assert_int_equal(a->ngroups, b->ngroups);
	for (uint32_t i = 0; i < a->ngroups; i++)
		assert_string_equal(a->groups[i], b->groups[i]);
}

static void
assert_hosts(const struct om_host *a, uint32_t na, const struct om_host *b, uint32_t nb)
{
	assert_int_equal(na, nb);
	for (uint32_t i = 0; i < na; i++)
		assert_host(&a[i], &b[i]);
}

static void
assert_strs(char *const *a, uint32_t na, char *const *b, uint32_t nb)
{
	assert_int_equal(na, nb);
	for (uint32_t i = 0; i < na; i++)
		assert_str_or_null(a[i], b[i]);
}

static void
assert_msg(const struct om_msg *a, const struct om_msg *b)
{
	assert_int_equal(a->type, b->type);
	switch (a->type) {
	case OM_MSG_HELLO:
		assert_str_or_null(a->u.hello.name, b->u.hello.name);
		assert_str_or_null(a->u.hello.idc, b->u.hello.idc);
		assert_str_or_null(a->u.hello.secret, b->u.hello.secret);
		assert_int_equal(a->u.hello.version, b->u.hello.version);
		assert_int_equal(a->u.hello.capacity, b->u.hello.capacity);
		break;
	case OM_MSG_WELCOME:
		assert_true(a->u.welcome.worker_id == b->u.welcome.worker_id);
		assert_int_equal(a->u.welcome.heartbeat_ms, b->u.welcome.heartbeat_ms);
		break;
	case OM_MSG_HEARTBEAT:
		assert_int_equal(a->u.heartbeat.running, b->u.heartbeat.running);
		assert_int_equal(a->u.heartbeat.capacity, b->u.heartbeat.capacity);
		break;
	case OM_MSG_POLL:
		assert_int_equal(a->u.poll.wait_ms, b->u.poll.wait_ms);
		assert_int_equal(a->u.poll.busy, b->u.poll.busy);
		break;
	case OM_MSG_CANCEL:
		assert_int_equal(a->u.cancel.ntasks, b->u.cancel.ntasks);
		for (uint32_t i = 0; i < a->u.cancel.ntasks; i++)
			assert_true(a->u.cancel.tasks[i] == b->u.cancel.tasks[i]);
		break;
	case OM_MSG_MODULES:
		assert_int_equal(a->u.modules.nmodules, b->u.modules.nmodules);
		for (uint32_t i = 0; i < a->u.modules.nmodules; i++) {
			const struct om_module_info *x = &a->u.modules.modules[i];
			const struct om_module_info *y = &b->u.modules.modules[i];

			assert_str_or_null(x->name, y->name);
			assert_str_or_null(x->version, y->version);
			assert_str_or_null(x->kind, y->kind);
			assert_str_or_null(x->description, y->description);
			assert_str_or_null(x->schema, y->schema);
			assert_int_equal(x->idempotent, y->idempotent);
		}
		break;
	case OM_MSG_MODULE_SHOW:
	case OM_MSG_HOST_SHOW:
		assert_str_or_null(a->u.by_name.name, b->u.by_name.name);
		break;
	case OM_MSG_TASK:
		assert_true(a->u.task.job_id == b->u.task.job_id);
		assert_true(a->u.task.task_id == b->u.task.task_id);
		assert_string_equal(a->u.task.module, b->u.task.module);
		assert_kvs(a->u.task.params, a->u.task.nparams, b->u.task.params,
		           b->u.task.nparams);
		assert_hosts(a->u.task.hosts, a->u.task.nhosts, b->u.task.hosts, b->u.task.nhosts);
		assert_int_equal(a->u.task.timeout_s, b->u.task.timeout_s);
		assert_int_equal(a->u.task.forks, b->u.task.forks);
		assert_int_equal(a->u.task.become, b->u.task.become);
		assert_str_or_null(a->u.task.become_user, b->u.task.become_user);
		assert_int_equal(a->u.task.check, b->u.task.check);
		break;
	case OM_MSG_REPORT:
		assert_int_equal(a->u.report.nchunks, b->u.report.nchunks);
		for (uint32_t i = 0; i < a->u.report.nchunks; i++) {
			const struct om_chunk *x = &a->u.report.chunks[i],
			                      *y = &b->u.report.chunks[i];

			assert_true(x->task_id == y->task_id);
			assert_int_equal(x->host, y->host);
			assert_int_equal(x->stream, y->stream);
			assert_true(x->seq == y->seq);
			assert_bytes(x->data, x->len, y->data, y->len);
		}
		assert_int_equal(a->u.report.nresults, b->u.report.nresults);
		for (uint32_t i = 0; i < a->u.report.nresults; i++) {
			const struct om_result *x = &a->u.report.results[i];
			const struct om_result *y = &b->u.report.results[i];

			assert_true(x->task_id == y->task_id);
			assert_int_equal(x->host, y->host);
			assert_int_equal(x->state, y->state);
			assert_int_equal(x->exit_code, y->exit_code);
			assert_str_or_null(x->reason, y->reason);
			assert_true(x->duration_ms == y->duration_ms);
			assert_int_equal(x->changed, y->changed);
			assert_str_or_null(x->data, y->data);
		}
		break;
	case OM_MSG_ACK:
		assert_int_equal(a->u.ack.nchunks, b->u.ack.nchunks);
		assert_int_equal(a->u.ack.nresults, b->u.ack.nresults);
		break;
	case OM_MSG_AUTH:
		assert_str_or_null(a->u.auth.token, b->u.auth.token);
		assert_str_or_null(a->u.auth.user, b->u.auth.user);
		assert_str_or_null(a->u.auth.password, b->u.auth.password);
		assert_int_equal(a->u.auth.version, b->u.auth.version);
		break;
	case OM_MSG_SUBMIT:
		assert_str_or_null(a->u.submit.selector, b->u.submit.selector);
		assert_str_or_null(a->u.submit.module, b->u.submit.module);
		assert_kvs(a->u.submit.params, a->u.submit.nparams, b->u.submit.params,
		           b->u.submit.nparams);
		assert_int_equal(a->u.submit.timeout_s, b->u.submit.timeout_s);
		assert_int_equal(a->u.submit.forks, b->u.submit.forks);
		assert_int_equal(a->u.submit.batch, b->u.submit.batch);
		assert_int_equal(a->u.submit.batch_pct, b->u.submit.batch_pct);
		assert_int_equal(a->u.submit.max_fail, b->u.submit.max_fail);
		assert_int_equal(a->u.submit.has_max_fail, b->u.submit.has_max_fail);
		assert_int_equal(a->u.submit.become, b->u.submit.become);
		assert_str_or_null(a->u.submit.become_user, b->u.submit.become_user);
		assert_int_equal(a->u.submit.check, b->u.submit.check);
		break;
	case OM_MSG_SUBMITTED:
		assert_true(a->u.submitted.job_id == b->u.submitted.job_id);
		assert_int_equal(a->u.submitted.nhosts, b->u.submitted.nhosts);
		break;
	case OM_MSG_FOLLOW:
		assert_true(a->u.follow.job_id == b->u.follow.job_id);
		assert_true(a->u.follow.cursor == b->u.follow.cursor);
		assert_int_equal(a->u.follow.wait_ms, b->u.follow.wait_ms);
		break;
	case OM_MSG_EVENTS:
		assert_true(a->u.events.job_id == b->u.events.job_id);
		assert_true(a->u.events.cursor == b->u.events.cursor);
		assert_int_equal(a->u.events.done, b->u.events.done);
		assert_int_equal(a->u.events.nevents, b->u.events.nevents);
		for (uint32_t i = 0; i < a->u.events.nevents; i++) {
			const struct om_event *x = &a->u.events.events[i],
			                      *y = &b->u.events.events[i];

			assert_true(x->id == y->id);
			assert_int_equal(x->kind, y->kind);
			assert_str_or_null(x->host, y->host);
			assert_int_equal(x->stream, y->stream);
			assert_bytes(x->data, x->len, y->data, y->len);
			assert_int_equal(x->state, y->state);
			assert_int_equal(x->exit_code, y->exit_code);
			assert_str_or_null(x->reason, y->reason);
			assert_true(x->duration_ms == y->duration_ms);
			assert_int_equal(x->changed, y->changed);
			assert_str_or_null(x->result, y->result);
		}
		break;
	case OM_MSG_HOSTS_LIST:
		assert_str_or_null(a->u.hosts_list.selector, b->u.hosts_list.selector);
		break;
	case OM_MSG_HOSTS:
	case OM_MSG_HOSTS_ADD:
		assert_hosts(a->u.hosts.hosts, a->u.hosts.nhosts, b->u.hosts.hosts,
		             b->u.hosts.nhosts);
		break;
	case OM_MSG_DONE:
		assert_true(a->u.done.count == b->u.done.count);
		assert_str_or_null(a->u.done.text, b->u.done.text);
		break;
	case OM_MSG_WORKERS:
		assert_int_equal(a->u.workers.nworkers, b->u.workers.nworkers);
		for (uint32_t i = 0; i < a->u.workers.nworkers; i++) {
			const struct om_worker_info *x = &a->u.workers.workers[i];
			const struct om_worker_info *y = &b->u.workers.workers[i];

			assert_str_or_null(x->name, y->name);
			assert_str_or_null(x->idc, y->idc);
			assert_str_or_null(x->fingerprint, y->fingerprint);
			assert_int_equal(x->connected, y->connected);
			assert_true(x->last_seen_ms == y->last_seen_ms);
			assert_int_equal(x->running, y->running);
		}
		break;
	case OM_MSG_ERROR:
		assert_int_equal(a->u.error.code, b->u.error.code);
		assert_str_or_null(a->u.error.text, b->u.error.text);
		assert_str_or_null(a->u.error.field, b->u.error.field);
		break;
	case OM_MSG_KEY_SET:
		assert_true(a->u.key_set.id == b->u.key_set.id);
		assert_int_equal(a->u.key_set.state, b->u.key_set.state);
		assert_str_or_null(a->u.key_set.fingerprint, b->u.key_set.fingerprint);
		break;
	case OM_MSG_ENROLL_CREATE:
		assert_str_or_null(a->u.enroll.idc, b->u.enroll.idc);
		assert_true(a->u.enroll.ttl_s == b->u.enroll.ttl_s);
		break;
	case OM_MSG_USER_ADD:
	case OM_MSG_USER_PASSWD:
	case OM_MSG_USER_DISABLE:
		assert_str_or_null(a->u.user.name, b->u.user.name);
		assert_str_or_null(a->u.user.role, b->u.user.role);
		assert_str_or_null(a->u.user.password, b->u.user.password);
		assert_int_equal(a->u.user.flag, b->u.user.flag);
		assert_strs(a->u.user.idcs, a->u.user.nidcs, b->u.user.idcs, b->u.user.nidcs);
		assert_strs(a->u.user.groups, a->u.user.ngroups, b->u.user.groups,
		            b->u.user.ngroups);
		assert_strs(a->u.user.modules, a->u.user.nmodules, b->u.user.modules,
		            b->u.user.nmodules);
		break;
	case OM_MSG_TOKEN_CREATE:
		assert_str_or_null(a->u.token.name, b->u.token.name);
		assert_str_or_null(a->u.token.user, b->u.token.user);
		assert_strs(a->u.token.scopes, a->u.token.nscopes, b->u.token.scopes,
		            b->u.token.nscopes);
		assert_true(a->u.token.ttl_s == b->u.token.ttl_s);
		break;
	case OM_MSG_TOKEN_REVOKE:
	case OM_MSG_JOB_CANCEL:
	case OM_MSG_JOB_SHOW:
		assert_true(a->u.by_id.id == b->u.by_id.id);
		break;
	case OM_MSG_JOB_HOSTS:
		assert_true(a->u.job_hosts.job_id == b->u.job_hosts.job_id);
		assert_int_equal(a->u.job_hosts.state, b->u.job_hosts.state);
		assert_str_or_null(a->u.job_hosts.after, b->u.job_hosts.after);
		assert_int_equal(a->u.job_hosts.limit, b->u.job_hosts.limit);
		break;
	case OM_MSG_JOBS_LIST:
		assert_int_equal(a->u.jobs_list.state, b->u.jobs_list.state);
		assert_str_or_null(a->u.jobs_list.user, b->u.jobs_list.user);
		assert_true(a->u.jobs_list.since_s == b->u.jobs_list.since_s);
		assert_int_equal(a->u.jobs_list.limit, b->u.jobs_list.limit);
		break;
	case OM_MSG_JOB_OUTPUT:
		assert_true(a->u.job_output.job_id == b->u.job_output.job_id);
		assert_true(a->u.job_output.cursor == b->u.job_output.cursor);
		assert_str_or_null(a->u.job_output.host, b->u.job_output.host);
		break;
	case OM_MSG_AUDIT_LIST:
		assert_true(a->u.audit.since_ms == b->u.audit.since_ms);
		assert_true(a->u.audit.after_id == b->u.audit.after_id);
		assert_int_equal(a->u.audit.limit, b->u.audit.limit);
		assert_true(a->u.audit.before_id == b->u.audit.before_id);
		assert_int_equal(a->u.audit.desc, b->u.audit.desc);
		break;
	case OM_MSG_SECRET:
		assert_true(a->u.secret.id == b->u.secret.id);
		assert_str_or_null(a->u.secret.secret, b->u.secret.secret);
		assert_true(a->u.secret.expires_ms == b->u.secret.expires_ms);
		break;
	case OM_MSG_TABLE:
		assert_strs(a->u.table.columns, a->u.table.ncolumns, b->u.table.columns,
		            b->u.table.ncolumns);
		assert_strs(a->u.table.cells, a->u.table.ncells, b->u.table.cells,
		            b->u.table.ncells);
		break;
	default:
		break;
	}
}

static void
assert_zeroed(const struct om_msg *m)
{
	struct om_msg z;

	memset(&z, 0, sizeof(z));
	assert_memory_equal(m, &z, sizeof(z));
}

/* --- sample messages (string literals: never released) ---------------------------- */

static char *groups_a[] = {"web", "prod", "dc1-rack.4"};
static char *groups_b[] = {"db"};
static struct om_host sample_hosts[] = {
        {"web1.dc1", "10.0.0.1", "deploy", "dc1", 2222, groups_a, 3},
        {"db_2", "db2.example.org", NULL, "dc1", 0, groups_b, 1},
        {"h3", "::1", "root", "dc-2", 65535, NULL, 0},
};
static struct om_kv sample_params[] = {
        {"cmd", "uptime; echo 'quoted' \"x\" $HOME"},
        {"chdir", ""},
        {"env.LANG", "C.UTF-8"},
};
static uint8_t out1[] = {'h', 'i', 0x00, 0xff, '\n'};
static struct om_chunk sample_chunks[] = {
        {42, 0, OM_STREAM_STDOUT, 0, out1, sizeof(out1)},
        {42, 2, OM_STREAM_STDERR, UINT64_MAX, NULL, 0},
};
static struct om_result sample_results[] = {
        {42, 0, OM_HS_OK, 0, NULL, 1234, true, "{\"changed\":true,\"path\":\"/etc/motd\"}"},
        {42, 1, OM_HS_FAILED, -1, "exit status 255: connection reset", UINT64_MAX, false, NULL},
        {42, 2, OM_HS_TIMEOUT, INT32_MIN, "", 0, false, ""},
};
static struct om_event sample_events[] = {
        {1, OM_EV_OUTPUT, "web1.dc1", OM_STREAM_FILE, out1, sizeof(out1), 0, 0, NULL, 0, false,
         NULL},
        {2, OM_EV_STATE, "db_2", 0, NULL, 0, OM_HS_LOST, INT32_MAX, "worker gone", 99, true,
         "{\"rc\":0}"},
        {3, OM_EV_JOB_DONE, NULL, 0, NULL, 0, 0, 0, NULL, 5000, false, NULL},
};
static uint64_t sample_task_ids[] = {1, 1ull << 40, UINT64_MAX};
static struct om_module_info sample_module_infos[] = {
        {"shell", "1.0.0", "c", "run a shell command",
         "[{\"name\":\"cmd\",\"type\":\"string\",\"required\":true,\"default\":null,"
         "\"description\":\"\",\"free_form\":true,\"secret\":false}]"},
        {"ping", "2", "script", NULL, "[]", true},
};
static struct om_worker_info sample_workers[] = {
        {"w1", "dc1", "SHA256:abcdef0123", true, 1700000000123, 7},
        {"w-2", "dc2", NULL, false, -5, 0},
};

static char *sample_idcs[] = {"dc1", "dc-2"};
static char *sample_modules[] = {"shell", "ping", "copy.v2"};
static char *sample_scopes[] = {"read", "run", ""};
static char *sample_cols[] = {"ID", "NAME", "LAST SEEN (UTC)"};
static char *sample_cells[] = {
        "1", "w1.dc1", "2024-01-02 03:04:05", /* row 1 */
        "2", NULL,     "",                    /* row 2: a nil cell and an empty one */
};

static void
sample(enum om_msg_type t, struct om_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = t;
	switch (t) {
	case OM_MSG_HELLO:
		m->u.hello.name = "worker-1.dc1";
		m->u.hello.idc = "dc1";
		m->u.hello.secret = "enroll-token-abc";
		m->u.hello.version = OM_PROTO_VERSION;
		m->u.hello.capacity = 64;
		break;
	case OM_MSG_WELCOME:
		m->u.welcome.worker_id = UINT64_MAX - 1;
		m->u.welcome.heartbeat_ms = 5000;
		break;
	case OM_MSG_HEARTBEAT:
		m->u.heartbeat.running = 3;
		m->u.heartbeat.capacity = UINT32_MAX;
		break;
	case OM_MSG_POLL:
		m->u.poll.wait_ms = 30000;
		m->u.poll.busy = true;
		break;
	case OM_MSG_CANCEL:
		m->u.cancel.tasks = sample_task_ids;
		m->u.cancel.ntasks = 3;
		break;
	case OM_MSG_MODULES:
		m->u.modules.modules = sample_module_infos;
		m->u.modules.nmodules = 2;
		break;
	case OM_MSG_MODULE_SHOW:
		m->u.by_name.name = "copy.v2";
		break;
	case OM_MSG_HOST_SHOW:
		m->u.by_name.name = "web1.dc1";
		break;
	case OM_MSG_JOB_CANCEL:
		m->u.by_id.id = UINT64_MAX;
		break;
	case OM_MSG_JOB_SHOW:
		m->u.by_id.id = 1ull << 50;
		break;
	case OM_MSG_JOB_HOSTS:
		m->u.job_hosts.job_id = 42;
		m->u.job_hosts.state = OM_HS_LOST;
		m->u.job_hosts.after = "web-9.dc1";
		m->u.job_hosts.limit = OM_MAX_JOB_ROWS;
		break;
	case OM_MSG_JOBS_LIST:
		m->u.jobs_list.state = OM_JOBS_DONE;
		m->u.jobs_list.user = "alice";
		m->u.jobs_list.since_s = UINT64_MAX;
		m->u.jobs_list.limit = 1;
		break;
	case OM_MSG_JOB_OUTPUT:
		m->u.job_output.job_id = 42;
		m->u.job_output.cursor = UINT64_MAX;
		m->u.job_output.host = "db_2";
		break;
	case OM_MSG_TASK:
		m->u.task.job_id = 7;
		m->u.task.task_id = 1ull << 40;
		m->u.task.module = "shell";
		m->u.task.params = sample_params;
		m->u.task.nparams = 3;
		m->u.task.hosts = sample_hosts;
		m->u.task.nhosts = 3;
		m->u.task.timeout_s = 600;
		m->u.task.forks = 10;
		m->u.task.become = true;
		m->u.task.become_user = "postgres";
		m->u.task.check = true;
		break;
	case OM_MSG_REPORT:
		m->u.report.chunks = sample_chunks;
		m->u.report.nchunks = 2;
		m->u.report.results = sample_results;
		m->u.report.nresults = 3;
		break;
	case OM_MSG_ACK:
		m->u.ack.nchunks = 2;
		m->u.ack.nresults = 3;
		break;
	case OM_MSG_AUTH:
		m->u.auth.token = "omt_0123456789abcdef";
		m->u.auth.user = "alice";
		m->u.auth.password = "correct horse battery staple";
		m->u.auth.version = OM_PROTO_VERSION;
		break;
	case OM_MSG_SUBMIT:
		m->u.submit.selector = "idc=dc1 and group=web";
		m->u.submit.module = "shell";
		m->u.submit.params = sample_params;
		m->u.submit.nparams = 2;
		m->u.submit.timeout_s = 30;
		m->u.submit.forks = 5;
		m->u.submit.batch = 25;
		m->u.submit.batch_pct = true;
		m->u.submit.max_fail = 100;
		m->u.submit.has_max_fail = true;
		m->u.submit.become = true;
		m->u.submit.become_user = "app_user";
		m->u.submit.check = true;
		break;
	case OM_MSG_SUBMITTED:
		m->u.submitted.job_id = 123456789;
		m->u.submitted.nhosts = 3;
		break;
	case OM_MSG_FOLLOW:
		m->u.follow.job_id = 5;
		m->u.follow.cursor = 17;
		m->u.follow.wait_ms = 1000;
		break;
	case OM_MSG_EVENTS:
		m->u.events.job_id = 5;
		m->u.events.cursor = 3;
		m->u.events.done = true;
		m->u.events.events = sample_events;
		m->u.events.nevents = 3;
		break;
	case OM_MSG_HOSTS_LIST:
		m->u.hosts_list.selector = "group=db";
		break;
	case OM_MSG_HOSTS:
	case OM_MSG_HOSTS_ADD:
		m->u.hosts.hosts = sample_hosts;
		m->u.hosts.nhosts = 3;
		break;
	case OM_MSG_DONE:
		m->u.done.count = 12;
		m->u.done.text = "12 hosts added";
		break;
	case OM_MSG_WORKERS:
		m->u.workers.workers = sample_workers;
		m->u.workers.nworkers = 2;
		break;
	case OM_MSG_ERROR:
		m->u.error.code = OM_EAUTH;
		m->u.error.text = "token expired";
		m->u.error.field = "params.cmd";
		break;
	case OM_MSG_KEY_SET:
		m->u.key_set.id = 1ull << 33;
		m->u.key_set.state = OM_KEY_REVOKED;
		m->u.key_set.fingerprint = "SHA256:0011aabb";
		break;
	case OM_MSG_ENROLL_CREATE:
		m->u.enroll.idc = "dc-2";
		m->u.enroll.ttl_s = 3600;
		break;
	case OM_MSG_USER_ADD:
		m->u.user.name = "alice";
		m->u.user.role = "operator";
		m->u.user.password = "s3cret with spaces";
		m->u.user.idcs = sample_idcs;
		m->u.user.nidcs = 2;
		m->u.user.groups = groups_a;
		m->u.user.ngroups = 3;
		m->u.user.modules = sample_modules;
		m->u.user.nmodules = 3;
		break;
	case OM_MSG_USER_PASSWD:
		m->u.user.name = "alice";
		m->u.user.password = "n3w";
		break;
	case OM_MSG_USER_DISABLE:
		m->u.user.name = "bob_2";
		m->u.user.flag = true;
		break;
	case OM_MSG_TOKEN_CREATE:
		m->u.token.name = "ci-deploy";
		m->u.token.user = "alice";
		m->u.token.scopes = sample_scopes;
		m->u.token.nscopes = 3;
		m->u.token.ttl_s = UINT64_MAX;
		break;
	case OM_MSG_TOKEN_REVOKE:
		m->u.by_id.id = 77;
		break;
	case OM_MSG_AUDIT_LIST:
		m->u.audit.since_ms = -1;
		m->u.audit.after_id = 1000;
		m->u.audit.limit = 50;
		m->u.audit.before_id = 2000;
		m->u.audit.desc = true;
		break;
	case OM_MSG_SECRET:
		m->u.secret.id = 9;
		m->u.secret.secret = "omt_9_deadbeefdeadbeef";
		m->u.secret.expires_ms = INT64_MAX;
		break;
	case OM_MSG_TABLE:
		m->u.table.columns = sample_cols;
		m->u.table.ncolumns = 3;
		m->u.table.cells = sample_cells;
		m->u.table.ncells = 6;
		break;
	default:
		break;
	}
}

static const enum om_msg_type all_types[] = {
        OM_MSG_HELLO,        OM_MSG_WELCOME,     OM_MSG_HEARTBEAT,    OM_MSG_POLL,
        OM_MSG_TASK,         OM_MSG_NOTASK,      OM_MSG_REPORT,       OM_MSG_ACK,
        OM_MSG_AUTH,         OM_MSG_AUTH_OK,     OM_MSG_SUBMIT,       OM_MSG_SUBMITTED,
        OM_MSG_FOLLOW,       OM_MSG_EVENTS,      OM_MSG_HOSTS_LIST,   OM_MSG_HOSTS,
        OM_MSG_HOSTS_ADD,    OM_MSG_DONE,        OM_MSG_WORKERS_LIST, OM_MSG_WORKERS,
        OM_MSG_ERROR,        OM_MSG_KEYS_LIST,   OM_MSG_KEY_SET,      OM_MSG_ENROLL_CREATE,
        OM_MSG_USERS_LIST,   OM_MSG_USER_ADD,    OM_MSG_USER_PASSWD,  OM_MSG_USER_DISABLE,
        OM_MSG_TOKEN_CREATE, OM_MSG_TOKENS_LIST, OM_MSG_TOKEN_REVOKE, OM_MSG_AUDIT_LIST,
        OM_MSG_AUDIT_VERIFY, OM_MSG_SECRET,      OM_MSG_TABLE,        OM_MSG_CANCEL,
        OM_MSG_MODULES,      OM_MSG_JOB_CANCEL,  OM_MSG_MODULES_LIST, OM_MSG_MODULE_SHOW,
        OM_MSG_HOST_SHOW,    OM_MSG_JOB_SHOW,    OM_MSG_JOB_HOSTS,    OM_MSG_JOBS_LIST,
        OM_MSG_JOB_OUTPUT,
};

static void
encode_ok(const struct om_msg *m, struct om_buf *b)
{
	om_buf_init(b, OM_MAX_FRAME);
	assert_int_equal(om_msg_encode(m, b), 0);
	assert_int_equal(b->err, 0);
}

/* Decodes a heap copy of exactly n bytes, so ASan sees any read past the end. */
static int
decode_exact(const uint8_t *p, size_t n, struct om_msg *m)
{
	uint8_t *copy = malloc(n ? n : 1);
	int rc;

	assert_non_null(copy);
	if (n)
		memcpy(copy, p, n);
	memset(m, 0xa5, sizeof(*m)); /* decode must not trust what *m held */
	rc = om_msg_decode(copy, n, m);
	free(copy);
	if (rc != 0)
		assert_zeroed(m);
	return rc;
}

/* Decodes b (then releases it) and expects rc. */
static void
expect_decode(struct om_buf *b, int rc)
{
	struct om_msg m;

	assert_int_equal(b->err, 0);
	assert_int_equal(decode_exact(b->data, b->len, &m), rc);
	om_msg_release(&m);
	om_buf_release(b);
}

/* --- round trips ------------------------------------------------------------------- */

static void
test_roundtrip_all(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(all_types) / sizeof(all_types[0]); i++) {
		struct om_msg in, out, out2;
		struct om_buf b, b2;

		sample(all_types[i], &in);
		encode_ok(&in, &b);
		assert_int_equal(decode_exact(b.data, b.len, &out), 0);
		assert_msg(&in, &out);

		/* re-encoding the decoded message gives the same bytes */
		encode_ok(&out, &b2);
		assert_int_equal(b2.len, b.len);
		assert_memory_equal(b2.data, b.data, b.len);
		assert_int_equal(decode_exact(b2.data, b2.len, &out2), 0);
		assert_msg(&in, &out2);

		om_msg_release(&out);
		assert_zeroed(&out);
		om_msg_release(&out2);
		om_buf_release(&b);
		om_buf_release(&b2);
	}
}

/* Zero values and NULL optional strings survive too. */
static void
test_roundtrip_minimal(void **state)
{
	static struct om_host h = {"h", "a", NULL, "i", 0, NULL, 0};
	struct om_msg in, out;
	struct om_buf b;

	(void)state;
	memset(&in, 0, sizeof(in));
	in.type = OM_MSG_TASK;
	in.u.task.module = "m";
	in.u.task.hosts = &h;
	in.u.task.nhosts = 1;
	encode_ok(&in, &b);
	assert_int_equal(decode_exact(b.data, b.len, &out), 0);
	assert_msg(&in, &out);
	assert_null(out.u.task.params);
	assert_null(out.u.task.hosts[0].user);
	assert_null(out.u.task.hosts[0].groups);
	om_msg_release(&out);
	om_buf_release(&b);

	memset(&in, 0, sizeof(in));
	in.type = OM_MSG_HELLO;
	in.u.hello.name = "w";
	in.u.hello.idc = "d";
	encode_ok(&in, &b);
	assert_int_equal(decode_exact(b.data, b.len, &out), 0);
	assert_msg(&in, &out);
	assert_null(out.u.hello.secret);
	om_msg_release(&out);
	om_buf_release(&b);
}

/* Encodes in, decodes it, compares, and checks the re-encoding gives the same bytes. */
static void
roundtrip(const struct om_msg *in, struct om_msg *out)
{
	struct om_buf b, b2;

	encode_ok(in, &b);
	assert_int_equal(decode_exact(b.data, b.len, out), 0);
	assert_msg(in, out);
	encode_ok(out, &b2);
	assert_int_equal(b2.len, b.len);
	assert_memory_equal(b2.data, b.data, b.len);
	om_buf_release(&b);
	om_buf_release(&b2);
}

/* The trust and access types with every optional field absent. */
static void
test_roundtrip_trust_minimal(void **state)
{
	static char *one_col[] = {""};
	struct om_msg in, out;

	(void)state;
	/* AUTH: only the version, a token alone, a user and password */
	memset(&in, 0, sizeof(in));
	in.type = OM_MSG_AUTH;
	in.u.auth.version = OM_PROTO_VERSION;
	roundtrip(&in, &out);
	assert_null(out.u.auth.token);
	assert_null(out.u.auth.user);
	assert_null(out.u.auth.password);
	om_msg_release(&out);
	in.u.auth.token = "omt_x";
	roundtrip(&in, &out);
	om_msg_release(&out);
	in.u.auth.token = NULL;
	in.u.auth.user = "alice";
	in.u.auth.password = "";
	roundtrip(&in, &out);
	assert_string_equal(out.u.auth.password, "");
	om_msg_release(&out);

	memset(&in, 0, sizeof(in));
	in.type = OM_MSG_KEY_SET;
	in.u.key_set.state = OM_KEY_ACCEPTED;
	roundtrip(&in, &out);
	assert_null(out.u.key_set.fingerprint);
	om_msg_release(&out);

	memset(&in, 0, sizeof(in));
	in.type = OM_MSG_ENROLL_CREATE;
	in.u.enroll.idc = "d";
	roundtrip(&in, &out);
	om_msg_release(&out);

	memset(&in, 0, sizeof(in));
	in.type = OM_MSG_USER_ADD;
	in.u.user.name = "u";
	in.u.user.role = "viewer";
	in.u.user.password = "p";
	roundtrip(&in, &out);
	assert_null(out.u.user.idcs);
	assert_null(out.u.user.groups);
	assert_null(out.u.user.modules);
	om_msg_release(&out);

	memset(&in, 0, sizeof(in));
	in.type = OM_MSG_USER_PASSWD;
	in.u.user.name = "u";
	in.u.user.password = "";
	roundtrip(&in, &out);
	om_msg_release(&out);

	memset(&in, 0, sizeof(in));
	in.type = OM_MSG_USER_DISABLE;
	in.u.user.name = "u";
	roundtrip(&in, &out);
	assert_false(out.u.user.flag);
	assert_null(out.u.user.password);
	om_msg_release(&out);

	memset(&in, 0, sizeof(in));
	in.type = OM_MSG_TOKEN_CREATE;
	in.u.token.name = "t";
	roundtrip(&in, &out);
	assert_null(out.u.token.user);
	assert_null(out.u.token.scopes);
	assert_int_equal(out.u.token.nscopes, 0);
	om_msg_release(&out);

	memset(&in, 0, sizeof(in));
	in.type = OM_MSG_TOKEN_REVOKE;
	roundtrip(&in, &out);
	om_msg_release(&out);

	memset(&in, 0, sizeof(in));
	in.type = OM_MSG_AUDIT_LIST;
	roundtrip(&in, &out);
	om_msg_release(&out);

	memset(&in, 0, sizeof(in));
	in.type = OM_MSG_SECRET;
	in.u.secret.secret = "s";
	roundtrip(&in, &out);
	om_msg_release(&out);

	/* a table with one (empty-named) column and no rows */
	memset(&in, 0, sizeof(in));
	in.type = OM_MSG_TABLE;
	in.u.table.columns = one_col;
	in.u.table.ncolumns = 1;
	roundtrip(&in, &out);
	assert_null(out.u.table.cells);
	om_msg_release(&out);
	assert_zeroed(&out);
}

/* --- hand-built inputs -------------------------------------------------------------- */

static void
put_kv_str(struct om_buf *b, const char *k, const char *v)
{
	om_mpw_cstr(b, k);
	om_mpw_cstr(b, v);
}

static void
put_kv_uint(struct om_buf *b, const char *k, uint64_t v)
{
	om_mpw_cstr(b, k);
	om_mpw_uint(b, v);
}

/* HELLO with name as given; extra counts the pairs the caller appends. */
static void
hello_start(struct om_buf *b, const char *name, uint32_t extra)
{
	om_buf_init(b, OM_MAX_FRAME);
	om_mpw_map(b, 4 + extra);
	put_kv_uint(b, "t", OM_MSG_HELLO);
	put_kv_str(b, "name", name);
	put_kv_str(b, "idc", "dc1");
	put_kv_uint(b, "ver", 1);
}

static void
put_host(struct om_buf *b, const char *name)
{
	om_mpw_map(b, 3);
	put_kv_str(b, "name", name);
	put_kv_str(b, "addr", "10.0.0.1");
	put_kv_str(b, "idc", "dc1");
}

/* TASK header with nhosts declared; the caller writes the hosts. */
static void
task_start(struct om_buf *b, uint32_t extra)
{
	om_buf_init(b, OM_MAX_FRAME);
	om_mpw_map(b, 5 + extra);
	put_kv_uint(b, "t", OM_MSG_TASK);
	put_kv_uint(b, "job", 1);
	put_kv_uint(b, "task", 2);
	put_kv_str(b, "module", "shell");
	om_mpw_cstr(b, "hosts");
}

static void
test_not_a_map(void **state)
{
	struct om_buf b;
	struct om_msg m;

	(void)state;
	om_buf_init(&b, 64);
	om_mpw_array(&b, 2);
	om_mpw_cstr(&b, "t");
	om_mpw_uint(&b, 1);
	expect_decode(&b, OM_ETYPE);

	om_buf_init(&b, 64);
	om_mpw_uint(&b, 1);
	expect_decode(&b, OM_ETYPE);

	assert_int_equal(decode_exact((const uint8_t *)"", 0, &m), OM_EPROTO);
	assert_int_equal(om_msg_decode(NULL, 0, &m), OM_EPROTO);
	assert_zeroed(&m);

	/* a non-string key */
	om_buf_init(&b, 64);
	om_mpw_map(&b, 1);
	om_mpw_uint(&b, 1);
	om_mpw_uint(&b, 1);
	expect_decode(&b, OM_ETYPE);
}

static void
test_type_field(void **state)
{
	struct om_buf b;

	(void)state;
	/* missing "t" */
	om_buf_init(&b, 64);
	om_mpw_map(&b, 1);
	put_kv_uint(&b, "ver", 1);
	expect_decode(&b, OM_EPROTO);

	/* unknown type numbers */
	static const uint64_t bad[] = {0, 9, 99, 41, 49, 64, UINT64_MAX};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		om_buf_init(&b, 64);
		om_mpw_map(&b, 1);
		put_kv_uint(&b, "t", bad[i]);
		expect_decode(&b, OM_EPROTO);
	}

	/* "t" of the wrong type */
	om_buf_init(&b, 64);
	om_mpw_map(&b, 1);
	put_kv_str(&b, "t", "hello");
	expect_decode(&b, OM_ETYPE);
	om_buf_init(&b, 64);
	om_mpw_map(&b, 1);
	om_mpw_cstr(&b, "t");
	om_mpw_int(&b, -5);
	expect_decode(&b, OM_ETYPE);

	/* "t" twice */
	om_buf_init(&b, 64);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_NOTASK);
	put_kv_uint(&b, "t", OM_MSG_NOTASK);
	expect_decode(&b, OM_EPROTO);

	/* "t" last is fine */
	om_buf_init(&b, 64);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "wait", 5);
	put_kv_uint(&b, "t", OM_MSG_POLL);
	{
		struct om_msg m;

		assert_int_equal(decode_exact(b.data, b.len, &m), 0);
		assert_int_equal(m.type, OM_MSG_POLL);
		assert_int_equal(m.u.poll.wait_ms, 5);
		om_msg_release(&m);
	}
	om_buf_release(&b);

	/* bodiless types */
	om_buf_init(&b, 64);
	om_mpw_map(&b, 1);
	put_kv_uint(&b, "t", OM_MSG_AUTH_OK);
	expect_decode(&b, 0);
}

static void
test_wrong_field_type(void **state)
{
	struct om_buf b;

	(void)state;
	/* ver as a string */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 4);
	put_kv_uint(&b, "t", OM_MSG_HELLO);
	put_kv_str(&b, "name", "w1");
	put_kv_str(&b, "idc", "dc1");
	put_kv_str(&b, "ver", "1");
	expect_decode(&b, OM_ETYPE);

	/* name as an int */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 4);
	put_kv_uint(&b, "t", OM_MSG_HELLO);
	put_kv_uint(&b, "name", 1);
	put_kv_str(&b, "idc", "dc1");
	put_kv_uint(&b, "ver", 1);
	expect_decode(&b, OM_ETYPE);

	/* negative job id */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_SUBMITTED);
	om_mpw_cstr(&b, "job");
	om_mpw_int(&b, -1);
	put_kv_uint(&b, "nhosts", 1);
	expect_decode(&b, OM_ETYPE);

	/* hosts as a map */
	task_start(&b, 0);
	om_mpw_map(&b, 0);
	expect_decode(&b, OM_ETYPE);

	/* a host that is not a map (long enough to pass the bytes-per-host check) */
	task_start(&b, 0);
	om_mpw_array(&b, 1);
	om_mpw_cstr(&b, "web1.example.org.and.some.more");
	expect_decode(&b, OM_ETYPE);

	/* chunk data as an int */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_REPORT);
	om_mpw_cstr(&b, "chunks");
	om_mpw_array(&b, 1);
	om_mpw_map(&b, 5);
	put_kv_uint(&b, "task", 1);
	put_kv_uint(&b, "host", 0);
	put_kv_uint(&b, "stream", 1);
	put_kv_uint(&b, "seq", 0);
	put_kv_uint(&b, "data", 5);
	expect_decode(&b, OM_ETYPE);

	/* bool as an int */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 4);
	put_kv_uint(&b, "t", OM_MSG_EVENTS);
	put_kv_uint(&b, "job", 1);
	put_kv_uint(&b, "cursor", 1);
	put_kv_uint(&b, "done", 1);
	expect_decode(&b, OM_ETYPE);

	/* a float where an int belongs */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_POLL);
	om_mpw_cstr(&b, "wait");
	om_buf_append(&b, "\xca\x3f\x80\x00\x00", 5);
	expect_decode(&b, OM_ETYPE);

	/* nil for a required field is a wrong type, for an optional one it is absence */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_SECRET);
	put_kv_uint(&b, "id", 1);
	om_mpw_cstr(&b, "secret");
	om_mpw_nil(&b);
	expect_decode(&b, OM_ETYPE);

	hello_start(&b, "w1", 2);
	om_mpw_cstr(&b, "secret");
	om_mpw_nil(&b);
	om_mpw_cstr(&b, "cap");
	om_mpw_nil(&b);
	expect_decode(&b, 0);
}

static void
test_missing_required(void **state)
{
	struct om_buf b;

	(void)state;
	/* HELLO without idc */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_HELLO);
	put_kv_str(&b, "name", "w1");
	put_kv_uint(&b, "ver", 1);
	expect_decode(&b, OM_EPROTO);

	/* TASK without hosts */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 4);
	put_kv_uint(&b, "t", OM_MSG_TASK);
	put_kv_uint(&b, "job", 1);
	put_kv_uint(&b, "task", 2);
	put_kv_str(&b, "module", "shell");
	expect_decode(&b, OM_EPROTO);

	/* a host without addr */
	task_start(&b, 0);
	om_mpw_array(&b, 1);
	om_mpw_map(&b, 2);
	put_kv_str(&b, "name", "web1");
	put_kv_str(&b, "idc", "dc1");
	expect_decode(&b, OM_EPROTO);

	/* an event without kind */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 4);
	put_kv_uint(&b, "t", OM_MSG_EVENTS);
	put_kv_uint(&b, "job", 1);
	put_kv_uint(&b, "cursor", 1);
	om_mpw_cstr(&b, "events");
	om_mpw_array(&b, 1);
	om_mpw_map(&b, 1);
	put_kv_uint(&b, "id", 1);
	expect_decode(&b, OM_EPROTO);

	/* AUTH: token, user and password are all optional now, ver is not */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_AUTH);
	put_kv_uint(&b, "ver", 1);
	expect_decode(&b, 0);
	om_buf_init(&b, 256);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_AUTH);
	put_kv_str(&b, "token", "omt_x");
	expect_decode(&b, OM_EPROTO);
}

static void
test_unknown_fields_skipped(void **state)
{
	struct om_buf b;
	struct om_msg m;

	(void)state;
	hello_start(&b, "w1", 3);
	om_mpw_cstr(&b, "future");
	om_mpw_map(&b, 2);
	put_kv_str(&b, "a", "b");
	om_mpw_cstr(&b, "c");
	om_mpw_array(&b, 3);
	om_mpw_nil(&b);
	om_mpw_bin(&b, "xyz", 3);
	om_buf_append(&b, "\xd4\x01\x00", 3); /* fixext1 */
	om_mpw_cstr(&b, "also");
	om_mpw_int(&b, -7);
	/* the same unknown key twice is not our business */
	om_mpw_cstr(&b, "also");
	om_mpw_int(&b, -8);
	assert_int_equal(decode_exact(b.data, b.len, &m), 0);
	assert_string_equal(m.u.hello.name, "w1");
	assert_string_equal(m.u.hello.idc, "dc1");
	om_msg_release(&m);
	om_buf_release(&b);

	/* unknown keys inside nested maps, and a key that is a field of another type */
	task_start(&b, 0);
	om_mpw_array(&b, 1);
	om_mpw_map(&b, 5);
	put_kv_str(&b, "name", "web1");
	put_kv_str(&b, "addr", "10.0.0.1");
	put_kv_str(&b, "idc", "dc1");
	put_kv_str(&b, "job", "not a host field");
	put_kv_uint(&b, "rack", 12);
	assert_int_equal(decode_exact(b.data, b.len, &m), 0);
	assert_int_equal(m.u.task.nhosts, 1);
	assert_string_equal(m.u.task.hosts[0].name, "web1");
	om_msg_release(&m);
	om_buf_release(&b);

	/* an unknown value nested too deep is still refused */
	hello_start(&b, "w1", 1);
	om_mpw_cstr(&b, "deep");
	for (int i = 0; i < 100; i++)
		om_mpw_array(&b, 1);
	om_mpw_nil(&b);
	expect_decode(&b, OM_EDEPTH);
}

/* A module as a worker older than ABI 1.1 sends it, without "idem": not idempotent. */
static void
test_module_without_idem(void **state)
{
	struct om_buf b;
	struct om_msg m;

	(void)state;
	om_buf_init(&b, OM_MAX_FRAME);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_MODULES);
	om_mpw_cstr(&b, "modules");
	om_mpw_array(&b, 2);
	om_mpw_map(&b, 4);
	put_kv_str(&b, "name", "old");
	put_kv_str(&b, "version", "1");
	put_kv_str(&b, "kind", "c");
	put_kv_str(&b, "schema", "[]");
	om_mpw_map(&b, 5);
	put_kv_str(&b, "name", "new");
	put_kv_str(&b, "version", "1");
	put_kv_str(&b, "kind", "c");
	put_kv_str(&b, "schema", "[]");
	om_mpw_cstr(&b, "idem");
	om_mpw_bool(&b, true);
	assert_int_equal(decode_exact(b.data, b.len, &m), 0);
	assert_int_equal(m.u.modules.nmodules, 2);
	assert_false(m.u.modules.modules[0].idempotent);
	assert_true(m.u.modules.modules[1].idempotent);
	om_msg_release(&m);
	om_buf_release(&b);

	/* "idem" has one type: anything but a bool is refused */
	om_buf_init(&b, OM_MAX_FRAME);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_MODULES);
	om_mpw_cstr(&b, "modules");
	om_mpw_array(&b, 1);
	om_mpw_map(&b, 5);
	put_kv_str(&b, "name", "new");
	put_kv_str(&b, "version", "1");
	put_kv_str(&b, "kind", "c");
	put_kv_str(&b, "schema", "[]");
	put_kv_str(&b, "idem", "yes");
	expect_decode(&b, OM_ETYPE);
}

static void
test_names(void **state)
{
	char big[300];
	struct om_buf b;

	(void)state;
	memset(big, 'a', sizeof(big));
	big[OM_MAX_NAME] = '\0';
	hello_start(&b, big, 0);
	expect_decode(&b, 0);

	big[OM_MAX_NAME] = 'a';
	big[OM_MAX_NAME + 1] = '\0';
	hello_start(&b, big, 0);
	expect_decode(&b, OM_EMSGSIZE);

	static const char *const bad[] = {"-x", "a/b",  "a b",  ".x", "",
	                                  "..", "a\tb", "x;rm", "é",  "a:b"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hello_start(&b, bad[i], 0);
		expect_decode(&b, OM_EPROTO);
	}

	/* a group name is a name too */
	task_start(&b, 0);
	om_mpw_array(&b, 1);
	om_mpw_map(&b, 4);
	put_kv_str(&b, "name", "web1");
	put_kv_str(&b, "addr", "10.0.0.1");
	put_kv_str(&b, "idc", "dc1");
	om_mpw_cstr(&b, "groups");
	om_mpw_array(&b, 2);
	om_mpw_cstr(&b, "ok");
	om_mpw_cstr(&b, "-bad");
	expect_decode(&b, OM_EPROTO);

	/* so is the module */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_SUBMIT);
	put_kv_str(&b, "sel", "*");
	put_kv_str(&b, "module", "../../bin/sh");
	expect_decode(&b, OM_EPROTO);

	assert_true(om_name_valid("web-1.dc_2"));
	assert_true(om_name_valid("0"));
	assert_false(om_name_valid(NULL));
	assert_false(om_name_valid("-x"));
	assert_false(om_name_valid(".x"));
	assert_false(om_name_valid("a/b"));
	assert_false(om_name_valid("a b"));
	assert_false(om_name_valid(""));
	big[OM_MAX_NAME] = '\0';
	assert_true(om_name_valid(big));
	big[OM_MAX_NAME] = 'a';
	assert_false(om_name_valid(big));
}

static void
test_nul_in_string(void **state)
{
	struct om_buf b;

	(void)state;
	hello_start(&b, "w1", 1);
	om_mpw_cstr(&b, "secret");
	om_mpw_str(&b, "ab\0cd", 5);
	expect_decode(&b, OM_EPROTO);

	/* a name with a NUL */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 4);
	put_kv_uint(&b, "t", OM_MSG_HELLO);
	om_mpw_cstr(&b, "name");
	om_mpw_str(&b, "w1\0", 3);
	put_kv_str(&b, "idc", "dc1");
	put_kv_uint(&b, "ver", 1);
	expect_decode(&b, OM_EPROTO);

	/* a param value */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 4);
	put_kv_uint(&b, "t", OM_MSG_SUBMIT);
	put_kv_str(&b, "sel", "*");
	put_kv_str(&b, "module", "shell");
	om_mpw_cstr(&b, "params");
	om_mpw_map(&b, 1);
	om_mpw_cstr(&b, "cmd");
	om_mpw_str(&b, "ls\0-la", 6);
	expect_decode(&b, OM_EPROTO);
}

static void
report_chunk(struct om_buf *b, uint32_t len, uint32_t stream)
{
	uint8_t *data = calloc(1, len ? len : 1);

	assert_non_null(data);
	om_buf_init(b, OM_MAX_FRAME);
	om_mpw_map(b, 2);
	put_kv_uint(b, "t", OM_MSG_REPORT);
	om_mpw_cstr(b, "chunks");
	om_mpw_array(b, 1);
	om_mpw_map(b, 5);
	put_kv_uint(b, "task", 1);
	put_kv_uint(b, "host", 0);
	put_kv_uint(b, "stream", stream);
	put_kv_uint(b, "seq", 0);
	om_mpw_cstr(b, "data");
	om_mpw_bin(b, data, len);
	free(data);
}

static void
test_limits(void **state)
{
	struct om_buf b;
	struct om_msg m;

	(void)state;
	report_chunk(&b, OM_MAX_CHUNK, 1);
	expect_decode(&b, 0);
	report_chunk(&b, OM_MAX_CHUNK + 1, 1);
	expect_decode(&b, OM_EMSGSIZE);

	/* too many groups, with bytes enough for them */
	task_start(&b, 0);
	om_mpw_array(&b, 1);
	om_mpw_map(&b, 4);
	put_kv_str(&b, "name", "web1");
	put_kv_str(&b, "addr", "10.0.0.1");
	put_kv_str(&b, "idc", "dc1");
	om_mpw_cstr(&b, "groups");
	om_mpw_array(&b, OM_MAX_GROUPS + 1);
	for (int i = 0; i <= OM_MAX_GROUPS; i++)
		om_mpw_cstr(&b, "g");
	expect_decode(&b, OM_EMSGSIZE);

	/* too many params */
	om_buf_init(&b, OM_MAX_FRAME);
	om_mpw_map(&b, 4);
	put_kv_uint(&b, "t", OM_MSG_SUBMIT);
	put_kv_str(&b, "sel", "*");
	put_kv_str(&b, "module", "shell");
	om_mpw_cstr(&b, "params");
	om_mpw_map(&b, OM_MAX_PARAMS + 1);
	for (int i = 0; i <= OM_MAX_PARAMS; i++) {
		char k[16];

		snprintf(k, sizeof(k), "k%d", i);
		put_kv_str(&b, k, "v");
	}
	expect_decode(&b, OM_EMSGSIZE);

	/* a selector over OM_MAX_TEXT */
	{
		char *sel = malloc(OM_MAX_TEXT + 2);

		assert_non_null(sel);
		memset(sel, 'x', OM_MAX_TEXT + 1);
		sel[OM_MAX_TEXT + 1] = '\0';
		om_buf_init(&b, OM_MAX_FRAME);
		om_mpw_map(&b, 2);
		put_kv_uint(&b, "t", OM_MSG_HOSTS_LIST);
		put_kv_str(&b, "sel", sel);
		expect_decode(&b, OM_EMSGSIZE);
		sel[OM_MAX_TEXT] = '\0';
		om_buf_init(&b, OM_MAX_FRAME);
		om_mpw_map(&b, 2);
		put_kv_uint(&b, "t", OM_MSG_HOSTS_LIST);
		put_kv_str(&b, "sel", sel);
		expect_decode(&b, 0);
		free(sel);
	}

	/* too many items declared, with bytes enough: 4097 results */
	om_buf_init(&b, OM_MAX_FRAME);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_REPORT);
	om_mpw_cstr(&b, "results");
	om_mpw_array(&b, OM_MAX_ITEMS + 1);
	for (int i = 0; i <= OM_MAX_ITEMS; i++) {
		om_mpw_map(&b, 3);
		put_kv_uint(&b, "task", 1);
		put_kv_uint(&b, "host", (uint64_t)i);
		put_kv_uint(&b, "state", OM_HS_OK);
	}
	expect_decode(&b, OM_EMSGSIZE);

	/* declared host counts the bytes cannot hold: array32 of 1e6 and array16 of 100 */
	task_start(&b, 0);
	om_buf_append(&b, "\xdd\x00\x0f\x42\x40", 5);
	put_host(&b, "web1");
	expect_decode(&b, OM_EPROTO);

	/*
	 * 100 hosts declared, then 5 hosts and 95 nils: the msgpack is well formed
	 * (so the mp reader's count check passes) but 100 host maps need at least
	 * 100 * 18 bytes, refused before the host array is allocated.
	 */
	om_buf_init(&b, OM_MAX_FRAME);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_HOSTS);
	om_mpw_cstr(&b, "hosts");
	om_mpw_array(&b, 100);
	for (int i = 0; i < 5; i++)
		put_host(&b, "web1");
	for (int i = 0; i < 95; i++)
		om_mpw_nil(&b);
	om_alloc_fail_at(1); /* any allocation before the refusal would turn it into ENOMEM */
	assert_int_equal(om_msg_decode(b.data, b.len, &m), OM_EPROTO);
	om_alloc_fail_at(0);
	om_buf_release(&b);

	/* the 5-byte bomb as the whole message */
	assert_int_equal(decode_exact((const uint8_t *)"\xdf\xff\xff\xff\xff", 5, &m), OM_EPROTO);
	assert_int_equal(decode_exact((const uint8_t *)"\xdd\xff\xff\xff\xff", 5, &m), OM_EPROTO);
}

static void
test_ranges(void **state)
{
	struct om_buf b;

	(void)state;
	/* port */
	static const struct {
		uint64_t port;
		int rc;
	} ports[] = {{0, 0}, {65535, 0}, {65536, OM_EPROTO}, {UINT64_MAX, OM_EPROTO}};
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		task_start(&b, 0);
		om_mpw_array(&b, 1);
		om_mpw_map(&b, 4);
		put_kv_str(&b, "name", "web1");
		put_kv_str(&b, "addr", "10.0.0.1");
		put_kv_str(&b, "idc", "dc1");
		put_kv_uint(&b, "port", ports[i].port);
		expect_decode(&b, ports[i].rc);
	}

	/* stream */
	report_chunk(&b, 1, 0);
	expect_decode(&b, OM_EPROTO);
	report_chunk(&b, 1, 2);
	expect_decode(&b, 0);
	report_chunk(&b, 1, 3); /* OM_STREAM_FILE */
	expect_decode(&b, 0);
	report_chunk(&b, 1, 4);
	expect_decode(&b, OM_EPROTO);

	/* result state and exit code */
	static const struct {
		uint64_t state;
		int64_t exit;
		int rc;
	} res[] = {
	        {OM_HS_LOST, INT32_MIN, 0},
	        {OM_HS_COUNT_, 0, OM_EPROTO},
	        {OM_HS_OK, (int64_t)INT32_MAX + 1, OM_EPROTO},
	        {OM_HS_OK, (int64_t)INT32_MIN - 1, OM_EPROTO},
	};
	for (size_t i = 0; i < sizeof(res) / sizeof(res[0]); i++) {
		om_buf_init(&b, 256);
		om_mpw_map(&b, 2);
		put_kv_uint(&b, "t", OM_MSG_REPORT);
		om_mpw_cstr(&b, "results");
		om_mpw_array(&b, 1);
		om_mpw_map(&b, 4);
		put_kv_uint(&b, "task", 1);
		put_kv_uint(&b, "host", 0);
		put_kv_uint(&b, "state", res[i].state);
		om_mpw_cstr(&b, "exit");
		om_mpw_int(&b, res[i].exit);
		expect_decode(&b, res[i].rc);
	}

	/* event kind */
	static const struct {
		uint64_t kind;
		int rc;
	} kinds[] = {{0, OM_EPROTO}, {1, 0}, {3, 0}, {4, OM_EPROTO}};
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		om_buf_init(&b, 256);
		om_mpw_map(&b, 4);
		put_kv_uint(&b, "t", OM_MSG_EVENTS);
		put_kv_uint(&b, "job", 1);
		put_kv_uint(&b, "cursor", 1);
		om_mpw_cstr(&b, "events");
		om_mpw_array(&b, 1);
		om_mpw_map(&b, 2);
		put_kv_uint(&b, "id", 1);
		put_kv_uint(&b, "kind", kinds[i].kind);
		expect_decode(&b, kinds[i].rc);
	}

	/* a uint32 field past 2^32-1; an int64 past INT64_MAX */
	hello_start(&b, "w1", 1);
	put_kv_uint(&b, "cap", (uint64_t)UINT32_MAX + 1);
	expect_decode(&b, OM_EPROTO);
	om_buf_init(&b, 256);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_WORKERS);
	om_mpw_cstr(&b, "workers");
	om_mpw_array(&b, 1);
	om_mpw_map(&b, 3);
	put_kv_str(&b, "name", "w1");
	put_kv_str(&b, "idc", "dc1");
	put_kv_uint(&b, "seen", UINT64_MAX);
	expect_decode(&b, OM_ERANGE);
}

/* TABLE with ncols columns and ncells cells ("c", "x"); cells_first swaps the keys. */
static void
table_msg(struct om_buf *b, uint32_t ncols, uint32_t ncells, bool cells_first)
{
	om_buf_init(b, OM_MAX_FRAME);
	om_mpw_map(b, 3);
	put_kv_uint(b, "t", OM_MSG_TABLE);
	for (int k = 0; k < 2; k++) {
		if ((k == 0) == cells_first) {
			om_mpw_cstr(b, "cells");
			om_mpw_array(b, ncells);
			for (uint32_t i = 0; i < ncells; i++)
				om_mpw_cstr(b, i % 2 ? NULL : "x");
		} else {
			om_mpw_cstr(b, "cols");
			om_mpw_array(b, ncols);
			for (uint32_t i = 0; i < ncols; i++)
				om_mpw_cstr(b, "c");
		}
	}
}

static void
put_str_n(struct om_buf *b, const char *k, char c, size_t n)
{
	char *v = malloc(n + 1);

	assert_non_null(v);
	memset(v, c, n);
	v[n] = '\0';
	put_kv_str(b, k, v);
	free(v);
}

/* USER_ADD name=alice role=admin password=pw with extra pairs the caller appends. */
static void
user_add_start(struct om_buf *b, uint32_t extra)
{
	om_buf_init(b, OM_MAX_FRAME);
	om_mpw_map(b, 4 + extra);
	put_kv_uint(b, "t", OM_MSG_USER_ADD);
	put_kv_str(b, "name", "alice");
	put_kv_str(b, "role", "admin");
	put_kv_str(b, "password", "pw");
}

static void
token_scopes(struct om_buf *b, uint32_t n, size_t len)
{
	om_buf_init(b, OM_MAX_FRAME);
	om_mpw_map(b, 3);
	put_kv_uint(b, "t", OM_MSG_TOKEN_CREATE);
	put_kv_str(b, "name", "ci");
	om_mpw_cstr(b, "scopes");
	om_mpw_array(b, n);
	for (uint32_t i = 0; i < n; i++) {
		char v[64];

		assert_true(len < sizeof(v));
		memset(v, 'r', len);
		v[len] = '\0';
		om_mpw_cstr(b, v);
	}
}

static void
test_trust_malformed(void **state)
{
	struct om_buf b;
	struct om_msg m;

	(void)state;
	/* key states: only accepted, rejected, revoked can be set */
	static const struct {
		uint64_t state;
		int rc;
	} ks[] = {{OM_KEY_PENDING, OM_EPROTO}, {OM_KEY_ACCEPTED, 0}, {OM_KEY_REJECTED, 0},
	          {OM_KEY_REVOKED, 0},         {4, OM_EPROTO},       {UINT64_MAX, OM_EPROTO}};
	for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
		om_buf_init(&b, 256);
		om_mpw_map(&b, 3);
		put_kv_uint(&b, "t", OM_MSG_KEY_SET);
		put_kv_uint(&b, "id", 1);
		put_kv_uint(&b, "state", ks[i].state);
		expect_decode(&b, ks[i].rc);
	}
	/* a fingerprint over 255 bytes */
	om_buf_init(&b, 1024);
	om_mpw_map(&b, 4);
	put_kv_uint(&b, "t", OM_MSG_KEY_SET);
	put_kv_uint(&b, "id", 1);
	put_kv_uint(&b, "state", OM_KEY_ACCEPTED);
	put_str_n(&b, "fp", 'f', OM_MAX_NAME + 1);
	expect_decode(&b, OM_EMSGSIZE);

	/* table shape: whole rows, 1..32 columns, whichever key comes first */
	static const struct {
		uint32_t ncols, ncells;
		int rc;
	} tabs[] = {
	        {2, 4, 0},
	        {2, 3, OM_EPROTO},
	        {3, 1, OM_EPROTO},
	        {1, 0, 0},
	        {0, 0, OM_EPROTO},
	        {OM_MAX_TABLE_COLUMNS, 2 * OM_MAX_TABLE_COLUMNS, 0},
	        {OM_MAX_TABLE_COLUMNS, OM_MAX_TABLE_COLUMNS + 1, OM_EPROTO},
	        {OM_MAX_TABLE_COLUMNS + 1, OM_MAX_TABLE_COLUMNS + 1, OM_EMSGSIZE},
	        {1, OM_MAX_TABLE_CELLS, 0},
	        {1, OM_MAX_TABLE_CELLS + 1, OM_EMSGSIZE},
	};
	for (size_t i = 0; i < sizeof(tabs) / sizeof(tabs[0]); i++) {
		for (int first = 0; first < 2; first++) {
			table_msg(&b, tabs[i].ncols, tabs[i].ncells, first);
			expect_decode(&b, tabs[i].rc);
		}
	}
	/* a table without cols, without cells */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_TABLE);
	om_mpw_cstr(&b, "cells");
	om_mpw_array(&b, 0);
	expect_decode(&b, OM_EPROTO);
	om_buf_init(&b, 256);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_TABLE);
	om_mpw_cstr(&b, "cols");
	om_mpw_array(&b, 1);
	om_mpw_cstr(&b, "c");
	expect_decode(&b, OM_EPROTO);
	/* a nil column name; a column name over 255 bytes; a cell over OM_MAX_TEXT */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_TABLE);
	om_mpw_cstr(&b, "cols");
	om_mpw_array(&b, 1);
	om_mpw_nil(&b);
	om_mpw_cstr(&b, "cells");
	om_mpw_array(&b, 0);
	expect_decode(&b, OM_ETYPE);
	for (int k = 0; k < 2; k++) {
		size_t lim = k == 0 ? OM_MAX_NAME : OM_MAX_TEXT;

		for (size_t len = lim; len <= lim + 1; len++) {
			char *v = malloc(len + 1);

			assert_non_null(v);
			memset(v, 'v', len);
			v[len] = '\0';
			om_buf_init(&b, OM_MAX_FRAME);
			om_mpw_map(&b, 3);
			put_kv_uint(&b, "t", OM_MSG_TABLE);
			om_mpw_cstr(&b, "cols");
			om_mpw_array(&b, 1);
			om_mpw_cstr(&b, k == 0 ? v : "c");
			om_mpw_cstr(&b, "cells");
			om_mpw_array(&b, 1);
			om_mpw_cstr(&b, k == 1 ? v : "x");
			expect_decode(&b, len == lim ? 0 : OM_EMSGSIZE);
			free(v);
		}
	}
	/* a cell with a NUL */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_TABLE);
	om_mpw_cstr(&b, "cols");
	om_mpw_array(&b, 1);
	om_mpw_cstr(&b, "c");
	om_mpw_cstr(&b, "cells");
	om_mpw_array(&b, 2);
	om_mpw_nil(&b);
	om_mpw_str(&b, "a\0b", 3);
	expect_decode(&b, OM_EPROTO);
	/* 50000 cells declared in a few bytes: refused before the cell array is allocated */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_TABLE);
	om_mpw_cstr(&b, "cells");
	om_mpw_array(&b, 50000);
	for (int i = 0; i < 10; i++)
		om_mpw_nil(&b);
	om_alloc_fail_at(1);
	assert_int_equal(om_msg_decode(b.data, b.len, &m), OM_EPROTO);
	om_alloc_fail_at(0);
	assert_zeroed(&m);
	om_buf_release(&b);

	/* scopes: at most OM_MAX_SCOPES of at most 32 bytes */
	token_scopes(&b, OM_MAX_SCOPES, 32);
	expect_decode(&b, 0);
	token_scopes(&b, OM_MAX_SCOPES + 1, 4);
	expect_decode(&b, OM_EMSGSIZE);
	token_scopes(&b, 1, 33);
	expect_decode(&b, OM_EMSGSIZE);
	token_scopes(&b, 0, 0);
	expect_decode(&b, 0);
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_TOKEN_CREATE);
	put_kv_str(&b, "name", "ci");
	om_mpw_cstr(&b, "scopes");
	om_mpw_array(&b, 2);
	om_mpw_cstr(&b, "read");
	om_mpw_nil(&b);
	expect_decode(&b, OM_ETYPE);
	/* a token for an invalid user name; a token name that is not a name */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_TOKEN_CREATE);
	put_kv_str(&b, "name", "ci");
	put_kv_str(&b, "user", "bob smith");
	expect_decode(&b, OM_EPROTO);
	om_buf_init(&b, 256);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_TOKEN_CREATE);
	put_kv_str(&b, "name", "-ci");
	expect_decode(&b, OM_EPROTO);

	/* NUL in a password, a user, a token or a secret */
	static const char *const secret_keys[] = {"token", "user", "password"};
	for (size_t i = 0; i < 3; i++) {
		om_buf_init(&b, 256);
		om_mpw_map(&b, 3);
		put_kv_uint(&b, "t", OM_MSG_AUTH);
		put_kv_uint(&b, "ver", 1);
		om_mpw_cstr(&b, secret_keys[i]);
		om_mpw_str(&b, "pw\0x", 4);
		expect_decode(&b, OM_EPROTO);
	}
	om_buf_init(&b, 256);
	om_mpw_map(&b, 4);
	put_kv_uint(&b, "t", OM_MSG_USER_ADD);
	put_kv_str(&b, "name", "alice");
	put_kv_str(&b, "role", "admin");
	om_mpw_cstr(&b, "password");
	om_mpw_str(&b, "\0", 1);
	expect_decode(&b, OM_EPROTO);
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_USER_PASSWD);
	put_kv_str(&b, "name", "alice");
	om_mpw_cstr(&b, "password");
	om_mpw_str(&b, "new\0", 4);
	expect_decode(&b, OM_EPROTO);
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_SECRET);
	put_kv_uint(&b, "id", 1);
	om_mpw_cstr(&b, "secret");
	om_mpw_str(&b, "omt\0", 4);
	expect_decode(&b, OM_EPROTO);

	/* secrets: at most OM_MAX_SECRET bytes, wherever they appear */
	for (size_t len = OM_MAX_SECRET; len <= OM_MAX_SECRET + 1; len++) {
		int rc = len == OM_MAX_SECRET ? 0 : OM_EMSGSIZE;

		for (size_t i = 0; i < 3; i++) {
			om_buf_init(&b, 1024);
			om_mpw_map(&b, 3);
			put_kv_uint(&b, "t", OM_MSG_AUTH);
			put_kv_uint(&b, "ver", 1);
			put_str_n(&b, secret_keys[i], 's', len);
			expect_decode(&b, rc);
		}
		om_buf_init(&b, 1024);
		om_mpw_map(&b, 4);
		put_kv_uint(&b, "t", OM_MSG_USER_ADD);
		put_kv_str(&b, "name", "alice");
		put_kv_str(&b, "role", "admin");
		put_str_n(&b, "password", 's', len);
		expect_decode(&b, rc);
		om_buf_init(&b, 1024);
		om_mpw_map(&b, 3);
		put_kv_uint(&b, "t", OM_MSG_SECRET);
		put_kv_uint(&b, "id", 1);
		put_str_n(&b, "secret", 's', len);
		expect_decode(&b, rc);
	}
	/* a role over 32 bytes */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 4);
	put_kv_uint(&b, "t", OM_MSG_USER_ADD);
	put_kv_str(&b, "name", "alice");
	put_str_n(&b, "role", 'r', 33);
	put_kv_str(&b, "password", "pw");
	expect_decode(&b, OM_EMSGSIZE);

	/* invalid names in idcs, groups, modules; too many of them */
	static const char *const scope_keys[] = {"idcs", "groups", "modules"};
	for (size_t i = 0; i < 3; i++) {
		user_add_start(&b, 1);
		om_mpw_cstr(&b, scope_keys[i]);
		om_mpw_array(&b, 2);
		om_mpw_cstr(&b, "dc1");
		om_mpw_cstr(&b, i == 0 ? "-dc2" : i == 1 ? "a/b" : "");
		expect_decode(&b, OM_EPROTO);

		user_add_start(&b, 1);
		om_mpw_cstr(&b, scope_keys[i]);
		om_mpw_array(&b, OM_MAX_GROUPS + 1);
		for (int k = 0; k <= OM_MAX_GROUPS; k++)
			om_mpw_cstr(&b, "g");
		expect_decode(&b, OM_EMSGSIZE);

		user_add_start(&b, 1);
		om_mpw_cstr(&b, scope_keys[i]);
		om_mpw_array(&b, OM_MAX_GROUPS);
		for (int k = 0; k < OM_MAX_GROUPS; k++)
			om_mpw_cstr(&b, "g");
		expect_decode(&b, 0);
	}
	/* user and IDC names are names */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_USER_PASSWD);
	put_kv_str(&b, "name", "a b");
	put_kv_str(&b, "password", "pw");
	expect_decode(&b, OM_EPROTO);
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_ENROLL_CREATE);
	put_kv_str(&b, "idc", "../dc1");
	put_kv_uint(&b, "ttl", 60);
	expect_decode(&b, OM_EPROTO);

	/* required fields of each new type */
	static const struct {
		enum om_msg_type t;
		const char *have; /* the one field present; the other required one is missing */
	} miss[] = {
	        {OM_MSG_KEY_SET, "id"},       {OM_MSG_ENROLL_CREATE, "idc"},
	        {OM_MSG_USER_PASSWD, "name"}, {OM_MSG_USER_DISABLE, "name"},
	        {OM_MSG_SECRET, "id"},        {OM_MSG_TOKEN_REVOKE, NULL},
	        {OM_MSG_TOKEN_CREATE, NULL},  {OM_MSG_USER_ADD, "name"},
	};
	for (size_t i = 0; i < sizeof(miss) / sizeof(miss[0]); i++) {
		om_buf_init(&b, 256);
		om_mpw_map(&b, miss[i].have ? 2 : 1);
		put_kv_uint(&b, "t", miss[i].t);
		if (miss[i].have != NULL && strcmp(miss[i].have, "id") == 0)
			put_kv_uint(&b, "id", 1);
		else if (miss[i].have != NULL)
			put_kv_str(&b, miss[i].have, "dc1");
		expect_decode(&b, OM_EPROTO);
	}

	/* wrong field types */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_USER_DISABLE);
	put_kv_str(&b, "name", "bob");
	put_kv_uint(&b, "flag", 1);
	expect_decode(&b, OM_ETYPE);
	om_buf_init(&b, 256);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_AUDIT_LIST);
	put_kv_str(&b, "since", "yesterday");
	expect_decode(&b, OM_ETYPE);
	om_buf_init(&b, 256);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_TOKEN_REVOKE);
	om_mpw_cstr(&b, "id");
	om_mpw_int(&b, -1);
	expect_decode(&b, OM_ETYPE);
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_TABLE);
	put_kv_str(&b, "cols", "c");
	om_mpw_cstr(&b, "cells");
	om_mpw_array(&b, 0);
	expect_decode(&b, OM_ETYPE);
	/* a negative since and limit past 2^32-1 */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_AUDIT_LIST);
	om_mpw_cstr(&b, "since");
	om_mpw_int(&b, -5);
	expect_decode(&b, 0);
	om_buf_init(&b, 256);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_AUDIT_LIST);
	put_kv_uint(&b, "limit", (uint64_t)UINT32_MAX + 1);
	expect_decode(&b, OM_EPROTO);

	/* bodiless types carry nothing but skip unknown keys */
	static const enum om_msg_type empty[] = {OM_MSG_KEYS_LIST, OM_MSG_USERS_LIST,
	                                         OM_MSG_TOKENS_LIST, OM_MSG_AUDIT_VERIFY};
	for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
		om_buf_init(&b, 256);
		om_mpw_map(&b, 2);
		put_kv_uint(&b, "t", empty[i]);
		put_kv_str(&b, "future", "x");
		expect_decode(&b, 0);
	}
}

static void
test_trust_encode_refusals(void **state)
{
	static char *bad_idcs[] = {"dc1", "-dc2"};
	static char *nil_scope[] = {"read", NULL};
	static char *nil_col[] = {"A", NULL};
	static char *cols[OM_MAX_TABLE_COLUMNS + 1];
	static char *scopes[OM_MAX_SCOPES + 1];
	char long_secret[OM_MAX_SECRET + 2], long_scope[34], *big_cell;
	struct om_msg m;
	struct om_buf b;

	(void)state;
	memset(long_secret, 's', sizeof(long_secret) - 1);
	long_secret[sizeof(long_secret) - 1] = '\0';
	memset(long_scope, 'r', sizeof(long_scope) - 1);
	long_scope[sizeof(long_scope) - 1] = '\0';
	big_cell = malloc(OM_MAX_TEXT + 2);
	assert_non_null(big_cell);
	memset(big_cell, 'c', OM_MAX_TEXT + 1);
	big_cell[OM_MAX_TEXT + 1] = '\0';
	for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
		cols[i] = "c";
	for (size_t i = 0; i < sizeof(scopes) / sizeof(scopes[0]); i++)
		scopes[i] = "read";

	om_buf_init(&b, OM_MAX_FRAME);
	om_mpw_nil(&b);

	sample(OM_MSG_KEY_SET, &m);
	m.u.key_set.state = OM_KEY_PENDING;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	m.u.key_set.state = OM_KEY_COUNT_;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);

	sample(OM_MSG_TABLE, &m);
	m.u.table.ncells = 5;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	m.u.table.ncells = 0;
	m.u.table.ncolumns = 0;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	m.u.table.columns = cols;
	m.u.table.ncolumns = OM_MAX_TABLE_COLUMNS + 1;
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	m.u.table.columns = nil_col;
	m.u.table.ncolumns = 2;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	m.u.table.columns = cols;
	m.u.table.ncolumns = 1;
	m.u.table.cells = &big_cell;
	m.u.table.ncells = 1;
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	m.u.table.cells = NULL;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);

	sample(OM_MSG_TOKEN_CREATE, &m);
	m.u.token.scopes = scopes;
	m.u.token.nscopes = OM_MAX_SCOPES + 1;
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	m.u.token.scopes = nil_scope;
	m.u.token.nscopes = 2;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	scopes[0] = long_scope;
	m.u.token.scopes = scopes;
	m.u.token.nscopes = 1;
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	sample(OM_MSG_TOKEN_CREATE, &m);
	m.u.token.user = "bob smith";
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);

	sample(OM_MSG_USER_ADD, &m);
	m.u.user.idcs = bad_idcs;
	m.u.user.nidcs = 2;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	sample(OM_MSG_USER_ADD, &m);
	m.u.user.password = long_secret;
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	m.u.user.password = NULL;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	sample(OM_MSG_USER_ADD, &m);
	m.u.user.role = long_scope;
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	sample(OM_MSG_USER_ADD, &m);
	m.u.user.nmodules = OM_MAX_GROUPS + 1;
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	sample(OM_MSG_USER_PASSWD, &m);
	m.u.user.password = NULL;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);

	sample(OM_MSG_AUTH, &m);
	m.u.auth.token = long_secret;
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	sample(OM_MSG_AUTH, &m);
	m.u.auth.password = long_secret;
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	sample(OM_MSG_SECRET, &m);
	m.u.secret.secret = long_secret;
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	sample(OM_MSG_ENROLL_CREATE, &m);
	m.u.enroll.idc = NULL;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);

	/* nothing of the refused messages was left in b */
	assert_int_equal(b.err, 0);
	assert_int_equal(b.len, 1);
	om_buf_release(&b);
	free(big_cell);
}

static void
test_trailing_bytes(void **state)
{
	struct om_msg in;
	struct om_buf b;

	(void)state;
	sample(OM_MSG_HELLO, &in);
	encode_ok(&in, &b);
	om_mpw_nil(&b);
	expect_decode(&b, OM_EPROTO);

	/* two whole messages in one buffer */
	sample(OM_MSG_ACK, &in);
	encode_ok(&in, &b);
	assert_int_equal(om_msg_encode(&in, &b), 0);
	expect_decode(&b, OM_EPROTO);
}

static void
test_duplicate_keys(void **state)
{
	struct om_buf b;

	(void)state;
	hello_start(&b, "w1", 1);
	put_kv_str(&b, "name", "w2");
	expect_decode(&b, OM_EPROTO);

	/* duplicate list: the first list must not leak */
	task_start(&b, 1);
	om_mpw_array(&b, 1);
	put_host(&b, "web1");
	om_mpw_cstr(&b, "hosts");
	om_mpw_array(&b, 1);
	put_host(&b, "web2");
	expect_decode(&b, OM_EPROTO);

	/* inside a host */
	task_start(&b, 0);
	om_mpw_array(&b, 1);
	om_mpw_map(&b, 4);
	put_kv_str(&b, "name", "web1");
	put_kv_str(&b, "addr", "10.0.0.1");
	put_kv_str(&b, "idc", "dc1");
	put_kv_str(&b, "idc", "dc2");
	expect_decode(&b, OM_EPROTO);

	/* duplicate param key */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 4);
	put_kv_uint(&b, "t", OM_MSG_SUBMIT);
	put_kv_str(&b, "sel", "*");
	put_kv_str(&b, "module", "shell");
	om_mpw_cstr(&b, "params");
	om_mpw_map(&b, 2);
	put_kv_str(&b, "cmd", "a");
	put_kv_str(&b, "cmd", "b");
	expect_decode(&b, OM_EPROTO);
}

static void
test_truncated_task(void **state)
{
	struct om_msg in, m;
	struct om_buf b;

	(void)state;
	sample(OM_MSG_TASK, &in);
	encode_ok(&in, &b);
	for (size_t n = 0; n < b.len; n++)
		assert_int_equal(decode_exact(b.data, n, &m), OM_EPROTO);
	assert_int_equal(decode_exact(b.data, b.len, &m), 0);
	om_msg_release(&m);
	om_buf_release(&b);

	/* every prefix of a TABLE, with str8, str16 and nil cells in it */
	{
		static char *tcols[] = {"NAME", "A COLUMN NAME LONGER THAN 31 BYTES"};
		char *tcells[4], cell300[301];

		memset(cell300, 'z', 300);
		cell300[300] = '\0';
		tcells[0] = "w1";
		tcells[1] = cell300;
		tcells[2] = NULL;
		tcells[3] = "";
		memset(&in, 0, sizeof(in));
		in.type = OM_MSG_TABLE;
		in.u.table.columns = tcols;
		in.u.table.ncolumns = 2;
		in.u.table.cells = tcells;
		in.u.table.ncells = 4;
		encode_ok(&in, &b);
		for (size_t n = 0; n < b.len; n++)
			assert_int_equal(decode_exact(b.data, n, &m), OM_EPROTO);
		assert_int_equal(decode_exact(b.data, b.len, &m), 0);
		assert_msg(&in, &m);
		om_msg_release(&m);
		om_buf_release(&b);
	}

	/* every prefix of every other type too */
	for (size_t i = 0; i < sizeof(all_types) / sizeof(all_types[0]); i++) {
		sample(all_types[i], &in);
		encode_ok(&in, &b);
		for (size_t n = 0; n < b.len; n++)
			assert_int_not_equal(decode_exact(b.data, n, &m), 0);
		om_buf_release(&b);
	}
}

/* Every allocation of a decode fails in turn: each gives OM_ENOMEM, nothing leaks. */
static void
test_alloc_failures(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(all_types) / sizeof(all_types[0]); i++) {
		struct om_msg in, m;
		struct om_buf b;
		unsigned long k;
		int rc = -1;

		sample(all_types[i], &in);
		encode_ok(&in, &b);
		for (k = 1; k < 10000; k++) {
			om_alloc_fail_at(k);
			rc = om_msg_decode(b.data, b.len, &m);
			om_alloc_fail_at(0);
			if (rc == 0)
				break;
			assert_int_equal(rc, OM_ENOMEM);
			assert_zeroed(&m);
		}
		assert_int_equal(rc, 0);
		assert_msg(&in, &m);
		if (all_types[i] == OM_MSG_TASK)
			assert_true(k > 20); /* the loop did walk the allocations */
		if (all_types[i] == OM_MSG_TABLE)
			assert_true(k > 9); /* 2 arrays, 3 columns, 5 non-nil cells */
		if (all_types[i] == OM_MSG_USER_ADD)
			assert_true(k > 14);
		om_msg_release(&m);
		om_buf_release(&b);
	}
}

static void
test_encode_refusals(void **state)
{
	struct om_msg m;
	struct om_buf b;

	(void)state;
	om_buf_init(&b, OM_MAX_FRAME);
	om_mpw_nil(&b);

	memset(&m, 0, sizeof(m));
	m.type = (enum om_msg_type)99;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	m.type = OM_MSG_NONE;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);

	/* a required string missing, an invalid name, a bad range: b left as it was */
	sample(OM_MSG_HELLO, &m);
	m.u.hello.idc = NULL;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	sample(OM_MSG_HELLO, &m);
	m.u.hello.name = "a b";
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	{
		struct om_host h = sample_hosts[0];
		struct om_chunk c = sample_chunks[0];

		h.port = 70000;
		sample(OM_MSG_HOSTS_ADD, &m);
		m.u.hosts.hosts = &h;
		m.u.hosts.nhosts = 1;
		assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);

		c.len = OM_MAX_CHUNK + 1;
		sample(OM_MSG_REPORT, &m);
		m.u.report.chunks = &c;
		m.u.report.nchunks = 1;
		assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	}
	{
		struct om_kv dup[] = {{"a", "1"}, {"a", "2"}};

		sample(OM_MSG_SUBMIT, &m);
		m.u.submit.params = dup;
		m.u.submit.nparams = 2;
		assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	}
	assert_int_equal(b.err, 0);
	assert_int_equal(b.len, 1);
	om_buf_release(&b);

	/* a full buffer: sticky err */
	om_buf_init(&b, 16);
	sample(OM_MSG_TASK, &m);
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	assert_int_equal(b.err, OM_EMSGSIZE);
	sample(OM_MSG_NOTASK, &m);
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	om_buf_release(&b);
}

static void
test_states(void **state)
{
	(void)state;
	static const char *const names[] = {"queued",  "dispatched",  "running", "ok",
	                                    "failed",  "unreachable", "timeout", "cancelled",
	                                    "skipped", "lost"};
	for (int i = 0; i < OM_HS_COUNT_; i++) {
		assert_string_equal(om_host_state_name(i), names[i]);
		assert_int_equal(om_host_state_parse(names[i]), i);
		assert_int_equal(om_host_state_final(i), i >= OM_HS_OK);
	}
	assert_string_equal(om_host_state_name(-1), "unknown");
	assert_string_equal(om_host_state_name(OM_HS_COUNT_), "unknown");
	assert_int_equal(om_host_state_parse("OK"), -1);
	assert_int_equal(om_host_state_parse(""), -1);
	assert_int_equal(om_host_state_parse(NULL), -1);
	assert_false(om_host_state_final(-1));
	assert_false(om_host_state_final(OM_HS_COUNT_));
}

static void
test_key_states(void **state)
{
	(void)state;
	static const char *const names[] = {"pending", "accepted", "rejected", "revoked"};

	assert_int_equal(OM_KEY_COUNT_, 4);
	for (int i = 0; i < OM_KEY_COUNT_; i++) {
		assert_string_equal(om_key_state_name(i), names[i]);
		assert_int_equal(om_key_state_parse(names[i]), i);
	}
	assert_string_equal(om_key_state_name(-1), "unknown");
	assert_string_equal(om_key_state_name(OM_KEY_COUNT_), "unknown");
	assert_int_equal(om_key_state_parse("Accepted"), -1);
	assert_int_equal(om_key_state_parse("unknown"), -1);
	assert_int_equal(om_key_state_parse(""), -1);
	assert_int_equal(om_key_state_parse(NULL), -1);
}

static void
test_host_copy_and_frees(void **state)
{
	struct om_host h;
	unsigned long k;
	int rc = -1;

	(void)state;
	for (k = 1; k < 100; k++) {
		om_alloc_fail_at(k);
		rc = om_host_copy(&h, &sample_hosts[0]);
		om_alloc_fail_at(0);
		if (rc == 0)
			break;
		assert_int_equal(rc, OM_ENOMEM);
		assert_null(h.name);
		assert_null(h.groups);
	}
	assert_int_equal(rc, 0);
	assert_host(&h, &sample_hosts[0]);
	om_host_release(&h);
	assert_null(h.name);
	om_host_release(&h); /* twice is harmless */

	/* hosts, events, workers and kvs arrays from decoded messages */
	{
		struct om_msg in, m;
		struct om_buf b;
		struct om_host *hs;
		uint32_t n;

		sample(OM_MSG_HOSTS, &in);
		encode_ok(&in, &b);
		assert_int_equal(om_msg_decode(b.data, b.len, &m), 0);
		om_buf_release(&b);
		hs = m.u.hosts.hosts;
		n = m.u.hosts.nhosts;
		m.u.hosts.hosts = NULL;
		m.u.hosts.nhosts = 0;
		om_msg_release(&m);
		om_hosts_free(hs, n);

		sample(OM_MSG_EVENTS, &in);
		encode_ok(&in, &b);
		assert_int_equal(om_msg_decode(b.data, b.len, &m), 0);
		om_buf_release(&b);
		om_events_free(m.u.events.events, m.u.events.nevents);
		m.u.events.events = NULL;
		m.u.events.nevents = 0;
		om_msg_release(&m);

		sample(OM_MSG_WORKERS, &in);
		encode_ok(&in, &b);
		assert_int_equal(om_msg_decode(b.data, b.len, &m), 0);
		om_buf_release(&b);
		om_workers_free(m.u.workers.workers, m.u.workers.nworkers);
		m.u.workers.workers = NULL;
		m.u.workers.nworkers = 0;
		om_msg_release(&m);

		sample(OM_MSG_SUBMIT, &in);
		encode_ok(&in, &b);
		assert_int_equal(om_msg_decode(b.data, b.len, &m), 0);
		om_buf_release(&b);
		om_kvs_free(m.u.submit.params, m.u.submit.nparams);
		m.u.submit.params = NULL;
		m.u.submit.nparams = 0;
		om_msg_release(&m);
	}
	om_hosts_free(NULL, 0);
	om_events_free(NULL, 3);
	om_workers_free(NULL, 0);
	om_kvs_free(NULL, 0);
	{
		struct om_msg z;

		memset(&z, 0, sizeof(z));
		om_msg_release(&z);
		om_msg_release(NULL);
		z.type = OM_MSG_TASK; /* zeroed body of a real type */
		om_msg_release(&z);
		assert_zeroed(&z);
	}
}

/* Issue 4 types: minimal forms round-trip, and the encoder refuses what the decoder would. */
static void
test_issue4_messages(void **state)
{
	static struct om_module_info mods[OM_MAX_MODULES + 1];
	static struct om_module_info bad_mod = {"-shell", "1", "c", NULL, "[]"};
	char *big;
	struct om_msg m, out;
	struct om_buf b;

	(void)state;
	/* an empty catalog, a module without description, nothing else set */
	memset(&m, 0, sizeof(m));
	m.type = OM_MSG_MODULES;
	roundtrip(&m, &out);
	assert_int_equal(out.u.modules.nmodules, 0);
	om_msg_release(&out);
	sample(OM_MSG_MODULES, &m);
	roundtrip(&m, &out);
	assert_null(out.u.modules.modules[1].description);
	assert_false(out.u.modules.modules[0].idempotent);
	assert_true(out.u.modules.modules[1].idempotent);
	om_msg_release(&out);
	/* SUBMIT and TASK with the new fields at their zero values */
	sample(OM_MSG_SUBMIT, &m);
	m.u.submit.become_user = NULL;
	m.u.submit.max_fail = 0;
	m.u.submit.has_max_fail = false;
	roundtrip(&m, &out);
	assert_null(out.u.submit.become_user);
	om_msg_release(&out);

	om_buf_init(&b, OM_MAX_FRAME);
	/* max_fail is a percentage */
	sample(OM_MSG_SUBMIT, &m);
	m.u.submit.max_fail = 101;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	/* become_user is a name */
	sample(OM_MSG_TASK, &m);
	m.u.task.become_user = "root; reboot";
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	/* MODULE_SHOW and HOST_SHOW need a valid name */
	sample(OM_MSG_MODULE_SHOW, &m);
	m.u.by_name.name = NULL;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	m.u.by_name.name = "../x";
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	/* a module's name, and the catalog's bounds */
	memset(&m, 0, sizeof(m));
	m.type = OM_MSG_MODULES;
	m.u.modules.modules = &bad_mod;
	m.u.modules.nmodules = 1;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++)
		mods[i] = sample_module_infos[1];
	m.u.modules.modules = mods;
	m.u.modules.nmodules = OM_MAX_MODULES + 1;
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	m.u.modules.nmodules = OM_MAX_MODULES;
	om_buf_reset(&b);
	assert_int_equal(om_msg_encode(&m, &b), 0);
	om_buf_reset(&b);
	big = malloc(OM_MAX_SCHEMA + 2);
	assert_non_null(big);
	memset(big, ' ', OM_MAX_SCHEMA + 1);
	big[OM_MAX_SCHEMA + 1] = '\0';
	mods[0].schema = big;
	m.u.modules.nmodules = 1;
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	free(big);
	/* a result's data is bounded by OM_MAX_RESULT */
	big = malloc(OM_MAX_RESULT + 2);
	assert_non_null(big);
	memset(big, 'x', OM_MAX_RESULT + 1);
	big[OM_MAX_RESULT + 1] = '\0';
	sample(OM_MSG_REPORT, &m);
	m.u.report.results = &(struct om_result){1, 0, OM_HS_OK, 0, NULL, 0, true, big};
	m.u.report.nresults = 1;
	om_buf_reset(&b);
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	big[OM_MAX_RESULT] = '\0';
	om_buf_reset(&b);
	assert_int_equal(om_msg_encode(&m, &b), 0);
	free(big);
	om_buf_release(&b);

	/* CANCEL needs its task list; MODULE_SHOW its name */
	om_buf_init(&b, 64);
	om_mpw_map(&b, 1);
	put_kv_uint(&b, "t", OM_MSG_CANCEL);
	expect_decode(&b, OM_EPROTO);
	om_buf_init(&b, 64);
	om_mpw_map(&b, 1);
	put_kv_uint(&b, "t", OM_MSG_MODULE_SHOW);
	expect_decode(&b, OM_EPROTO);
	/* a module entry without its schema */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_MODULES);
	om_mpw_cstr(&b, "modules");
	om_mpw_array(&b, 1);
	om_mpw_map(&b, 3);
	put_kv_str(&b, "name", "shell");
	put_kv_str(&b, "version", "1");
	put_kv_str(&b, "kind", "c");
	expect_decode(&b, OM_EPROTO);
}

/* Job history (issue 5): optional fields absent, the bounds of states and limits. */
static void
test_issue5_messages(void **state)
{
	struct om_msg m, out;
	struct om_buf b;

	(void)state;
	/* everything optional left out: no cursor name, no host, any job */
	memset(&m, 0, sizeof(m));
	m.type = OM_MSG_JOB_HOSTS;
	m.u.job_hosts.job_id = 7;
	roundtrip(&m, &out);
	assert_null(out.u.job_hosts.after);
	assert_int_equal(out.u.job_hosts.state, OM_HS_QUEUED);
	om_msg_release(&out);
	memset(&m, 0, sizeof(m));
	m.type = OM_MSG_JOBS_LIST;
	roundtrip(&m, &out);
	assert_null(out.u.jobs_list.user);
	assert_int_equal(out.u.jobs_list.state, OM_JOBS_ANY);
	om_msg_release(&out);
	memset(&m, 0, sizeof(m));
	m.type = OM_MSG_JOB_OUTPUT;
	m.u.job_output.job_id = 7;
	roundtrip(&m, &out);
	assert_null(out.u.job_output.host);
	om_msg_release(&out);

	/* the encoder refuses what the decoder would */
	om_buf_init(&b, OM_MAX_FRAME);
	sample(OM_MSG_JOB_HOSTS, &m);
	m.u.job_hosts.state = OM_HS_COUNT_;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	sample(OM_MSG_JOB_HOSTS, &m);
	m.u.job_hosts.limit = OM_MAX_JOB_ROWS + 1;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	sample(OM_MSG_JOB_HOSTS, &m);
	m.u.job_hosts.after = "-x";
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	sample(OM_MSG_JOBS_LIST, &m);
	m.u.jobs_list.state = OM_JOBS_DONE + 1;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	sample(OM_MSG_JOBS_LIST, &m);
	m.u.jobs_list.limit = OM_MAX_JOB_ROWS + 1;
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	sample(OM_MSG_JOBS_LIST, &m);
	m.u.jobs_list.user = "a b";
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	sample(OM_MSG_JOB_OUTPUT, &m);
	m.u.job_output.host = "web1/../x";
	assert_int_equal(om_msg_encode(&m, &b), OM_EINVAL);
	assert_int_equal(b.len, 0);
	om_buf_release(&b);

	/* and refuses them on the wire */
	om_buf_init(&b, 64);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_JOB_HOSTS);
	put_kv_uint(&b, "job", 1);
	put_kv_uint(&b, "state", OM_HS_COUNT_);
	expect_decode(&b, OM_EPROTO);
	om_buf_init(&b, 64);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_JOB_HOSTS);
	put_kv_uint(&b, "job", 1); /* state is required */
	expect_decode(&b, OM_EPROTO);
	om_buf_init(&b, 64);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_JOBS_LIST);
	put_kv_uint(&b, "limit", OM_MAX_JOB_ROWS + 1);
	expect_decode(&b, OM_EPROTO);
	om_buf_init(&b, 64);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_JOBS_LIST);
	put_kv_uint(&b, "state", 3);
	expect_decode(&b, OM_EPROTO);
	om_buf_init(&b, 64);
	om_mpw_map(&b, 1);
	put_kv_uint(&b, "t", OM_MSG_JOB_SHOW); /* id is required */
	expect_decode(&b, OM_EPROTO);
	om_buf_init(&b, 64);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_JOB_OUTPUT);
	put_kv_str(&b, "host", "web1"); /* job is required */
	expect_decode(&b, OM_EPROTO);
	om_buf_init(&b, 64);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_JOB_OUTPUT);
	put_kv_uint(&b, "job", 1);
	put_kv_str(&b, "host", ".hidden");
	expect_decode(&b, OM_EPROTO);
	/* a nil optional is absent */
	om_buf_init(&b, 64);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_JOB_OUTPUT);
	put_kv_uint(&b, "job", 1);
	om_mpw_cstr(&b, "host");
	om_mpw_nil(&b);
	expect_decode(&b, 0);
}

/* Issue 6: ERROR's optional field, AUDIT_LIST newest first. */
static void
test_issue6_messages(void **state)
{
	char longf[OM_MAX_FIELD + 2];
	struct om_msg m, out;
	struct om_buf b;

	(void)state;
	/* an ERROR as a master before the field sends it: no field */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_ERROR);
	om_mpw_cstr(&b, "code");
	om_mpw_int(&b, OM_EINVAL);
	put_kv_str(&b, "text", "parameter 'cmd': missing");
	assert_int_equal(decode_exact(b.data, b.len, &m), 0);
	assert_int_equal(m.u.error.code, OM_EINVAL);
	assert_null(m.u.error.field);
	om_msg_release(&m);
	om_buf_release(&b);
	/* with one, and a nil one (absent) */
	memset(&m, 0, sizeof(m));
	m.type = OM_MSG_ERROR;
	m.u.error.code = OM_EINVAL;
	m.u.error.field = "options.timeout";
	roundtrip(&m, &out);
	assert_string_equal(out.u.error.field, "options.timeout");
	assert_null(out.u.error.text);
	om_msg_release(&out);
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_ERROR);
	put_kv_uint(&b, "code", 1);
	om_mpw_cstr(&b, "field");
	om_mpw_nil(&b);
	expect_decode(&b, 0);
	/* too long: the encoder and the decoder refuse it */
	memset(longf, 'f', sizeof(longf) - 1);
	longf[sizeof(longf) - 1] = '\0';
	m.u.error.field = longf;
	om_buf_init(&b, OM_MAX_FRAME);
	assert_int_equal(om_msg_encode(&m, &b), OM_EMSGSIZE);
	assert_int_equal(b.len, 0);
	om_buf_release(&b);
	om_buf_init(&b, 1024);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_ERROR);
	put_kv_uint(&b, "code", 1);
	put_kv_str(&b, "field", longf);
	expect_decode(&b, OM_EMSGSIZE);
	/* a field of the wrong type */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 3);
	put_kv_uint(&b, "t", OM_MSG_ERROR);
	put_kv_uint(&b, "code", 1);
	put_kv_uint(&b, "field", 7);
	expect_decode(&b, OM_ETYPE);

	/* AUDIT_LIST from an omctl before desc: oldest first, no upper bound */
	om_buf_init(&b, 256);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_AUDIT_LIST);
	put_kv_uint(&b, "limit", 10);
	assert_int_equal(decode_exact(b.data, b.len, &m), 0);
	assert_false(m.u.audit.desc);
	assert_true(m.u.audit.before_id == 0);
	om_msg_release(&m);
	om_buf_release(&b);
	memset(&m, 0, sizeof(m));
	m.type = OM_MSG_AUDIT_LIST;
	m.u.audit.desc = true;
	m.u.audit.before_id = UINT64_MAX;
	roundtrip(&m, &out);
	assert_true(out.u.audit.desc);
	assert_true(out.u.audit.before_id == UINT64_MAX);
	om_msg_release(&out);
	om_buf_init(&b, 256);
	om_mpw_map(&b, 2);
	put_kv_uint(&b, "t", OM_MSG_AUDIT_LIST);
	put_kv_str(&b, "desc", "yes");
	expect_decode(&b, OM_ETYPE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_roundtrip_all),
	        cmocka_unit_test(test_roundtrip_minimal),
	        cmocka_unit_test(test_roundtrip_trust_minimal),
	        cmocka_unit_test(test_not_a_map),
	        cmocka_unit_test(test_type_field),
	        cmocka_unit_test(test_wrong_field_type),
	        cmocka_unit_test(test_missing_required),
	        cmocka_unit_test(test_unknown_fields_skipped),
	        cmocka_unit_test(test_module_without_idem),
	        cmocka_unit_test(test_names),
	        cmocka_unit_test(test_nul_in_string),
	        cmocka_unit_test(test_limits),
	        cmocka_unit_test(test_ranges),
	        cmocka_unit_test(test_trust_malformed),
	        cmocka_unit_test(test_trust_encode_refusals),
	        cmocka_unit_test(test_trailing_bytes),
	        cmocka_unit_test(test_duplicate_keys),
	        cmocka_unit_test(test_truncated_task),
	        cmocka_unit_test(test_alloc_failures),
	        cmocka_unit_test(test_encode_refusals),
	        cmocka_unit_test(test_states),
	        cmocka_unit_test(test_key_states),
	        cmocka_unit_test(test_host_copy_and_frees),
	        cmocka_unit_test(test_issue4_messages),
	        cmocka_unit_test(test_issue5_messages),
	        cmocka_unit_test(test_issue6_messages),
	};

	return cmocka_run_group_tests_name("msg", tests, NULL, NULL);
}
