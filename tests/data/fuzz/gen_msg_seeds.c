/*
 * Writes the fuzz seeds: one valid message of each type into msg/<type>.bin,
 * the same message in fuzz_msg_typed's input form into msg_typed/<type>.bin
 * (type byte, pair count, the pairs without "t"), and a few raw msgpack
 * vectors into mp/.  Rerun after a wire key changes:
 *
 *   cc -std=c11 -D_GNU_SOURCE -Iproto/include tests/data/fuzz/gen_msg_seeds.c \
 *      proto/msg.c proto/mp.c proto/base.c proto/err.c -lmsgpackc -o /tmp/gen
 *   /tmp/gen tests/data/fuzz
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "om/mp.h"
#include "om/msg.h"

static char *groups[] = {"web", "prod"};
static struct om_host hosts[] = {
        {"web1.dc1", "10.0.0.1", "deploy", "dc1", 2222, groups, 2},
        {"db2", "db2.example.org", NULL, "dc1", 0, NULL, 0},
};
static struct om_kv params[] = {{"cmd", "uptime"}, {"chdir", "/tmp"}};
static uint8_t out[] = {'o', 'k', '\n', 0x00, 0xff};
static struct om_chunk chunks[] = {{9, 0, OM_STREAM_STDOUT, 0, out, sizeof(out)}};
static struct om_result results[] = {
        {9, 1, OM_HS_FAILED, 255, "exit status 255", 1500, true, "{\"changed\":true}"}};
static struct om_event events[] = {
        {1, OM_EV_OUTPUT, "web1.dc1", OM_STREAM_STDERR, out, sizeof(out), 0, 0, NULL, 0},
        {2, OM_EV_STATE, "web1.dc1", 0, NULL, 0, OM_HS_OK, 0, NULL, 1200, true, "{\"rc\":0}"},
        {3, OM_EV_JOB_DONE, NULL, 0, NULL, 0, 0, 0, NULL, 3000},
};
static struct om_worker_info workers[] = {{"w1", "dc1", "SHA256:0011", true, 1700000000000, 2}};
static char *idcs[] = {"dc1"};
static char *modules[] = {"shell", "ping"};
static char *scopes[] = {"read", "run"};
static char *cols[] = {"ID", "NAME", "STATE"};
static char *cells[] = {"1", "w1", "accepted", "2", NULL, "pending"};
static uint64_t task_ids[] = {9, 10};
static struct om_module_info module_infos[] = {
        {"shell", "1.0", "c", "run a command",
         "[{\"name\":\"cmd\",\"type\":\"string\",\"required\":true,\"default\":null,"
         "\"description\":\"\",\"free_form\":true,\"secret\":false}]"},
        {"state", "1", "script", NULL,
         "[{\"name\":\"s\",\"type\":\"choice\",\"choices\":[\"a\",\"b\"]}]"},
};

static int
save(const char *dir, const char *name, const void *p, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.bin", dir, name);
	if ((f = fopen(path, "wb")) == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		return 1;
	}
	return 0;
}

/*
 * fuzz_msg_typed's form of an encoded message: the encoder writes "t" first,
 * {map header, 0xa1 't', type} + pairs becomes type, count of pairs, pairs.
 */
static int
save_typed(const char *dir, const char *name, const uint8_t *p, size_t n)
{
	char tdir[512];
	uint8_t *t;
	uint32_t cnt;
	size_t off;
	int rc;

	if (n >= 1 && (p[0] & 0xf0) == 0x80) {
		cnt = p[0] & 0x0f;
		off = 1;
	} else if (n >= 3 && p[0] == 0xde) {
		cnt = (uint32_t)p[1] << 8 | p[2];
		off = 3;
	} else {
		cnt = 0, off = n;
	}
	if (cnt == 0 || cnt > 256 || n < off + 3 || p[off] != 0xa1 || p[off + 1] != 't' ||
	    p[off + 2] > 0x7f) {
		fprintf(stderr, "%s: not {\"t\": fixint, ...}: no msg_typed seed\n", name);
		return 1;
	}
	if ((t = malloc(n)) == NULL)
		return 1;
	t[0] = p[off + 2];
	t[1] = (uint8_t)(cnt - 1);
	memcpy(t + 2, p + off + 3, n - off - 3);
	snprintf(tdir, sizeof(tdir), "%s/../msg_typed", dir);
	rc = save(tdir, name, t, n - off - 1);
	free(t);
	return rc;
}

static int
save_msg(const char *dir, const char *name, const struct om_msg *m)
{
	struct om_buf b;
	int rc;

	om_buf_init(&b, OM_MAX_FRAME);
	if (om_msg_encode(m, &b) != 0) {
		fprintf(stderr, "%s: encode failed\n", name);
		return 1;
	}
	rc = save(dir, name, b.data, b.len);
	rc |= save_typed(dir, name, b.data, b.len);
	om_buf_release(&b);
	return rc;
}

int
main(int argc, char **argv)
{
	char msgdir[256], mpdir[256];
	struct om_msg m;
	int bad = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s tests/data/fuzz\n", argv[0]);
		return 2;
	}
	snprintf(msgdir, sizeof(msgdir), "%s/msg", argv[1]);
	snprintf(mpdir, sizeof(mpdir), "%s/mp", argv[1]);

#define MSG(name, t, ...)                                                                          \
	do {                                                                                       \
		memset(&m, 0, sizeof(m));                                                          \
		m.type = (t);                                                                      \
		__VA_ARGS__;                                                                       \
		bad |= save_msg(msgdir, name, &m);                                                 \
	} while (0)
	MSG("hello", OM_MSG_HELLO, m.u.hello.name = "w1", m.u.hello.idc = "dc1",
	    m.u.hello.secret = "enroll-123", m.u.hello.version = 1, m.u.hello.capacity = 16);
	MSG("welcome", OM_MSG_WELCOME, m.u.welcome.worker_id = 4, m.u.welcome.heartbeat_ms = 5000);
	MSG("heartbeat", OM_MSG_HEARTBEAT, m.u.heartbeat.running = 1, m.u.heartbeat.capacity = 16);
	MSG("poll", OM_MSG_POLL, m.u.poll.wait_ms = 30000, m.u.poll.busy = true);
	MSG("task", OM_MSG_TASK, m.u.task.job_id = 7, m.u.task.task_id = 9,
	    m.u.task.module = "shell", m.u.task.params = params, m.u.task.nparams = 2,
	    m.u.task.hosts = hosts, m.u.task.nhosts = 2, m.u.task.timeout_s = 60,
	    m.u.task.forks = 5, m.u.task.become = true, m.u.task.become_user = "app",
	    m.u.task.check = true);
	MSG("notask", OM_MSG_NOTASK, (void)0);
	MSG("report", OM_MSG_REPORT, m.u.report.chunks = chunks, m.u.report.nchunks = 1,
	    m.u.report.results = results, m.u.report.nresults = 1);
	MSG("ack", OM_MSG_ACK, m.u.ack.nchunks = 1, m.u.ack.nresults = 1);
	MSG("auth", OM_MSG_AUTH, m.u.auth.token = "omt_abc", m.u.auth.version = 1);
	MSG("auth_ok", OM_MSG_AUTH_OK, (void)0);
	MSG("submit", OM_MSG_SUBMIT, m.u.submit.selector = "idc=dc1", m.u.submit.module = "shell",
	    m.u.submit.params = params, m.u.submit.nparams = 1, m.u.submit.timeout_s = 60,
	    m.u.submit.forks = 5, m.u.submit.batch = 10, m.u.submit.batch_pct = true,
	    m.u.submit.max_fail = 20, m.u.submit.has_max_fail = true, m.u.submit.become = true,
	    m.u.submit.become_user = "app", m.u.submit.check = true);
	MSG("submitted", OM_MSG_SUBMITTED, m.u.submitted.job_id = 7, m.u.submitted.nhosts = 2);
	MSG("follow", OM_MSG_FOLLOW, m.u.follow.job_id = 7, m.u.follow.cursor = 1,
	    m.u.follow.wait_ms = 1000);
	MSG("events", OM_MSG_EVENTS, m.u.events.job_id = 7, m.u.events.cursor = 3,
	    m.u.events.done = true, m.u.events.events = events, m.u.events.nevents = 3);
	MSG("hosts_list", OM_MSG_HOSTS_LIST, m.u.hosts_list.selector = "group=web");
	MSG("hosts", OM_MSG_HOSTS, m.u.hosts.hosts = hosts, m.u.hosts.nhosts = 2);
	MSG("hosts_add", OM_MSG_HOSTS_ADD, m.u.hosts.hosts = hosts, m.u.hosts.nhosts = 1);
	MSG("done", OM_MSG_DONE, m.u.done.count = 2, m.u.done.text = "2 hosts added");
	MSG("workers_list", OM_MSG_WORKERS_LIST, (void)0);
	MSG("workers", OM_MSG_WORKERS, m.u.workers.workers = workers, m.u.workers.nworkers = 1);
	MSG("error", OM_MSG_ERROR, m.u.error.code = OM_EAUTH, m.u.error.text = "bad token");
	/* trust and access (issue 3) */
	MSG("auth_password", OM_MSG_AUTH, m.u.auth.user = "alice", m.u.auth.password = "pw",
	    m.u.auth.version = 1);
	MSG("keys_list", OM_MSG_KEYS_LIST, (void)0);
	MSG("key_set", OM_MSG_KEY_SET, m.u.key_set.id = 3, m.u.key_set.state = OM_KEY_ACCEPTED,
	    m.u.key_set.fingerprint = "SHA256:0011");
	MSG("enroll_create", OM_MSG_ENROLL_CREATE, m.u.enroll.idc = "dc1", m.u.enroll.ttl_s = 3600);
	MSG("users_list", OM_MSG_USERS_LIST, (void)0);
	MSG("user_add", OM_MSG_USER_ADD, m.u.user.name = "alice", m.u.user.role = "operator",
	    m.u.user.password = "pw", m.u.user.idcs = idcs, m.u.user.nidcs = 1,
	    m.u.user.groups = groups, m.u.user.ngroups = 2, m.u.user.modules = modules,
	    m.u.user.nmodules = 2);
	MSG("user_passwd", OM_MSG_USER_PASSWD, m.u.user.name = "alice", m.u.user.password = "pw2");
	MSG("user_disable", OM_MSG_USER_DISABLE, m.u.user.name = "alice", m.u.user.flag = true);
	MSG("token_create", OM_MSG_TOKEN_CREATE, m.u.token.name = "ci", m.u.token.user = "alice",
	    m.u.token.scopes = scopes, m.u.token.nscopes = 2, m.u.token.ttl_s = 86400);
	MSG("tokens_list", OM_MSG_TOKENS_LIST, (void)0);
	MSG("token_revoke", OM_MSG_TOKEN_REVOKE, m.u.by_id.id = 5);
	MSG("audit_list", OM_MSG_AUDIT_LIST, m.u.audit.since_ms = 1700000000000,
	    m.u.audit.after_id = 10, m.u.audit.limit = 100);
	MSG("audit_verify", OM_MSG_AUDIT_VERIFY, (void)0);
	MSG("secret", OM_MSG_SECRET, m.u.secret.id = 5, m.u.secret.secret = "omt_5_abcdef",
	    m.u.secret.expires_ms = 1700086400000);
	MSG("table", OM_MSG_TABLE, m.u.table.columns = cols, m.u.table.ncolumns = 3,
	    m.u.table.cells = cells, m.u.table.ncells = 6);
	/* modules and jobs (issue 4) */
	MSG("cancel", OM_MSG_CANCEL, m.u.cancel.tasks = task_ids, m.u.cancel.ntasks = 2);
	MSG("modules", OM_MSG_MODULES, m.u.modules.modules = module_infos,
	    m.u.modules.nmodules = 2);
	MSG("job_cancel", OM_MSG_JOB_CANCEL, m.u.by_id.id = 7);
	MSG("modules_list", OM_MSG_MODULES_LIST, (void)0);
	MSG("module_show", OM_MSG_MODULE_SHOW, m.u.by_name.name = "shell");
	MSG("host_show", OM_MSG_HOST_SHOW, m.u.by_name.name = "web1.dc1");
	/* job history (issue 5) */
	MSG("job_show", OM_MSG_JOB_SHOW, m.u.by_id.id = 7);
	MSG("job_hosts", OM_MSG_JOB_HOSTS, m.u.job_hosts.job_id = 7,
	    m.u.job_hosts.state = OM_HS_FAILED, m.u.job_hosts.after = "web1.dc1",
	    m.u.job_hosts.limit = 1000);
	MSG("jobs_list", OM_MSG_JOBS_LIST, m.u.jobs_list.state = OM_JOBS_RUNNING,
	    m.u.jobs_list.user = "alice", m.u.jobs_list.since_s = 3600, m.u.jobs_list.limit = 50);
	MSG("job_output", OM_MSG_JOB_OUTPUT, m.u.job_output.job_id = 7,
	    m.u.job_output.cursor = 3, m.u.job_output.host = "web1.dc1");
#undef MSG

	/* raw vectors for the reader: every format once, and the classic bombs */
	static const uint8_t every[] = {
	        0x05, 0x81, 0xa1, 'a',  0x01, 0x92, 0x01, 0x02, 0xa3, 'a',  'b',  'c',  0xc0, 0xc2,
	        0xc3, 0xc4, 0x01, 0xff, 0xc5, 0x00, 0x01, 0x02, 0xc6, 0x00, 0x00, 0x00, 0x01, 0x07,
	        0xc7, 0x01, 0x05, 0xaa, 0xc8, 0x00, 0x01, 0x05, 0xaa, 0xc9, 0x00, 0x00, 0x00, 0x00,
	        0x05, 0xca, 0x3f, 0x80, 0x00, 0x00, 0xcb, 0x3f, 0xf0, 0,    0,    0,    0,    0,
	        0,    0xcc, 0xff, 0xcd, 0xff, 0xff, 0xce, 0xff, 0xff, 0xff, 0xff, 0xcf, 0xff, 0xff,
	        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xd0, 0x80, 0xd1, 0x80, 0x00, 0xd2, 0x80, 0x00,
	        0x00, 0x00, 0xd3, 0x80, 0,    0,    0,    0,    0,    0,    0,    0xd4, 0x01, 0x00,
	        0xd5, 0x01, 0x00, 0x00, 0xd6, 0x01, 0,    0,    0,    0,    0xd7, 0x01, 0,    0,
	        0,    0,    0,    0,    0,    0,    0xd8, 0x01, 0,    0,    0,    0,    0,    0,
	        0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0xd9, 0x01, 'x',  0xda,
	        0x00, 0x01, 'x',  0xdb, 0x00, 0x00, 0x00, 0x01, 'x',  0xdc, 0x00, 0x01, 0xc0, 0xdd,
	        0x00, 0x00, 0x00, 0x01, 0xc0, 0xde, 0x00, 0x01, 0xc0, 0xc0, 0xdf, 0x00, 0x00, 0x00,
	        0x01, 0xc0, 0xc0, 0xe0, 0xff,
	};
	static const uint8_t nested[] = {0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91,
	                                 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x90};
	bad |= save(mpdir, "every-format", every, sizeof(every));
	bad |= save(mpdir, "nested-16", nested, sizeof(nested));
	bad |= save(mpdir, "array32-bomb", "\xdd\xff\xff\xff\xff", 5);
	bad |= save(mpdir, "map32-bomb", "\xdf\xff\xff\xff\xff", 5);
	bad |= save(mpdir, "str32-short",
	            "\xdb\x00\x00\x10\x00"
	            "abc",
	            8);
	bad |= save(mpdir, "c1", "\xc1", 1);
	return bad;
}
