/*
 * Protocol messages: one table-driven codec for every type.
 *
 * Each message (and each nested map: host, chunk, result, event, worker) is
 * described by a schema, a table of {key, kind, required, offset, limits}.
 * The encoder, the decoder and the release functions all walk the same
 * tables, so a field added to a table is encoded, checked and freed at once.
 *
 * Wire keys ("t" = enum om_msg_type, in every message; R = required,
 * o = optional; a nil value for an optional key counts as absent):
 *
 *   HELLO       name R (name), idc R (name), secret o (text), ver R, cap o
 *   WELCOME     worker R (worker_id), hb o (heartbeat_ms)
 *   HEARTBEAT   run o (running), cap o (capacity), tasks o (array of task ids it holds)
 *   POLL        wait o (wait_ms), busy o (bool)
 *   TASK        job R, task R, module R (name), params o (map name->str),
 *               hosts R (array of host), timeout o, forks o, become o (bool),
 *               buser o (name), check o (bool)
 *   CANCEL      tasks R (array of task ids)
 *   MODULES     modules R (array of module, <= OM_MAX_MODULES)
 *   NOTASK      -
 *   REPORT      chunks o (array of chunk), results o (array of result)
 *   ACK         nchunks R, nresults R
 *   AUTH        token o (secret), user o (secret), password o (secret), ver R;
 *               any combination decodes, the master decides what it accepts
 *   AUTH_OK     -
 *   SUBMIT      sel R (text), module R (name), params o, timeout o, forks o,
 *               batch o, bpct o (bool), maxfail o (0..100), hasmf o (bool),
 *               become o (bool), buser o (name), check o (bool)
 *   JOB_CANCEL  id R;  MODULES_LIST -;  MODULE_SHOW, HOST_SHOW  name R (name)
 *   SUBMITTED   job R, nhosts R
 *   FOLLOW      job R, cursor o, wait o, files o (bool: stream 3 events too)
 *   EVENTS      job R, cursor R, done o (bool), events o (array of event)
 *   HOSTS_LIST  sel R (text, may be empty)
 *   HOSTS,      hosts R (array of host)
 *   HOSTS_ADD
 *   DONE        count o, text o
 *   WORKERS_LIST -
 *   WORKERS     workers R (array of worker)
 *   ERROR       code R (int32), text o, field o (<= OM_MAX_FIELD: the request field
 *               at fault; older decoders skip it)
 *
 *   trust and access (issue 3):
 *   KEYS_LIST, USERS_LIST, TOKENS_LIST, AUDIT_VERIFY   -
 *   KEY_SET     id R, state R (1..3: accepted, rejected, revoked), fp o (<= 255)
 *   ENROLL_CREATE idc R (name), ttl R (ttl_s)
 *   USER_ADD    name R (name), role R (<= 32), password R (secret),
 *               idcs o, groups o, modules o (arrays of names, <= OM_MAX_GROUPS each)
 *   USER_PASSWD name R (name), password R (secret)
 *   USER_DISABLE name R (name), flag R (bool)
 *   TOKEN_CREATE name R (name), user o (name), scopes o (array of <= OM_MAX_SCOPES
 *               strings of <= 32 bytes), ttl o (ttl_s)
 *   TOKEN_REVOKE id R
 *   AUDIT_LIST  since o (since_ms, int64), after o (after_id), limit o,
 *               before o (before_id), desc o (bool: newest first)
 *   SECRET      id R, secret R (secret), exp o (expires_ms, int64)
 *   TABLE       cols R (1..OM_MAX_TABLE_COLUMNS strings of <= 255),
 *               cells R (row-major strings of <= OM_MAX_TEXT or nil, at most
 *               OM_MAX_TABLE_CELLS, a multiple of the number of columns)
 *
 *   job history (issue 5):
 *   JOB_SHOW    id R
 *   JOB_HOSTS   job R, state R (< OM_HS_COUNT_), after o (name),
 *               limit o (0..OM_MAX_JOB_ROWS)
 *   JOBS_LIST   state o (0..2: enum om_job_filter), user o (name), since o (since_s),
 *               limit o (0..OM_MAX_JOB_ROWS)
 *   JOB_OUTPUT  job R, cursor o, host o (name)
 *
 *   (secret) is a string of at most OM_MAX_SECRET bytes.  No string anywhere
 *   may hold a NUL byte.
 *
 *   host        name R (name), addr R (<= 255), user o (<= 255), idc R (name),
 *               port o (0..65535), groups o (array of names)
 *   chunk       task R, host R (index), stream R (1..3), seq R, data R (bin)
 *   result      task R, host R (index), state R (< OM_HS_COUNT_), exit o (int32),
 *               reason o (text), dur o (duration_ms), changed o (bool),
 *               data o (JSON text, <= OM_MAX_RESULT), note o (text)
 *   module      name R (name), version R (<= 64), kind R (<= 32), desc o (text),
 *               schema R (JSON text, <= OM_MAX_SCHEMA), idem o (bool: idempotent;
 *               absent, as from a worker older than ABI 1.1, is false)
 *   event       id R, kind R (1..3), host o (name), stream o (0..3), data o (bin),
 *               state o (< OM_HS_COUNT_), exit o, reason o, dur o, changed o (bool),
 *               result o (JSON text, <= OM_MAX_RESULT)
 *   worker      name R (name), idc R (name), fp o (fingerprint, <= 255),
 *               conn o (bool), seen o (int64 ms), run o (running)
 *
 * The encoder always writes every numeric, bool, bin and array field, and
 * omits optional strings that are NULL: re-encoding a decoded message gives
 * the same bytes (the fuzz target checks that).  Param keys are names
 * (om_name_valid) and unique within a message.
 */
#include <stddef.h>
#include <string.h>

#include "om/mp.h"
#include "om/msg.h"

enum fkind {
	F_U64,
	F_U32, /* range min..max */
	F_I32,
	F_I64,
	F_BOOL,
	F_NAME,   /* char *, om_name_valid */
	F_STR,    /* char *, at most max bytes */
	F_BIN,    /* uint8_t * + uint32_t length at off2, at most max bytes */
	F_NAMES,  /* char ** + uint32_t count at off2, at most max names */
	F_U64S,   /* uint64_t * + uint32_t count at off2, at most max values */
	F_STRS,   /* char ** + uint32_t count at off2, min..max strings of at most emax
	             bytes; NULL elements (nil) only when nils */
	F_PARAMS, /* struct om_kv * + uint32_t count at off2 */
	F_LIST,   /* array of sub maps + uint32_t count at off2, at most max */
};

struct schema;

struct field {
	const char *key;
	enum fkind kind;
	bool req;
	size_t off;  /* the value, from the start of the struct */
	size_t off2; /* the count or length that goes with it */
	uint64_t min, max;
	uint32_t emax;            /* F_STRS: bytes per string */
	bool nils;                /* F_STRS: nil elements allowed */
	const struct schema *sub; /* F_LIST: element layout */
};

struct schema {
	const struct field *f;
	size_t n;    /* at most 32: the decoder tracks seen keys in a bitmask */
	size_t size; /* element size, for F_LIST */
	/* Constraints across fields, or NULL: false makes the decoder answer
	 * OM_EPROTO and the encoder OM_EINVAL. */
	bool (*check)(const void *base);
};

/* The tables below are laid out by hand: one field per line, one macro per kind. */
/* clang-format off */
#define REQ true
#define OPT false
#define U64(k, rq, o) {.key = (k), .kind = F_U64, .req = (rq), .off = (o)}
#define U32R(k, rq, o, lo, hi) \
	{.key = (k), .kind = F_U32, .req = (rq), .off = (o), .min = (lo), .max = (hi)}
#define U32(k, rq, o) U32R(k, rq, o, 0, UINT32_MAX)
#define I32(k, rq, o) {.key = (k), .kind = F_I32, .req = (rq), .off = (o)}
#define I64(k, rq, o) {.key = (k), .kind = F_I64, .req = (rq), .off = (o)}
#define BOOL(k, rq, o) {.key = (k), .kind = F_BOOL, .req = (rq), .off = (o)}
#define NAME(k, rq, o) {.key = (k), .kind = F_NAME, .req = (rq), .off = (o), .max = OM_MAX_NAME}
#define STR(k, rq, o, mx) {.key = (k), .kind = F_STR, .req = (rq), .off = (o), .max = (mx)}
#define BIN(k, rq, o, o2, mx) \
	{.key = (k), .kind = F_BIN, .req = (rq), .off = (o), .off2 = (o2), .max = (mx)}
#define NAMES(k, rq, o, o2, mx) \
	{.key = (k), .kind = F_NAMES, .req = (rq), .off = (o), .off2 = (o2), .max = (mx)}
#define U64S(k, rq, o, o2, mx)                                                                \
	{.key = (k), .kind = F_U64S, .req = (rq), .off = (o), .off2 = (o2), .max = (mx)}
#define PARAMS(k, rq, o, o2)                                                            \
	{.key = (k), .kind = F_PARAMS, .req = (rq), .off = (o), .off2 = (o2),             \
	 .max = OM_MAX_PARAMS}
#define STRS(k, rq, o, o2, lo, hi, len, nl)                                              \
	{.key = (k), .kind = F_STRS, .req = (rq), .off = (o), .off2 = (o2), .min = (lo),  \
	 .max = (hi), .emax = (len), .nils = (nl)}
#define LIST(k, rq, o, o2, mx, s)                                                       \
	{.key = (k), .kind = F_LIST, .req = (rq), .off = (o), .off2 = (o2), .max = (mx), \
	 .sub = (s)}
#define SCHEMA(tab, sz) {(tab), sizeof(tab) / sizeof((tab)[0]), (sz), NULL}
#define SCHEMA_CHECK(tab, fn) {(tab), sizeof(tab) / sizeof((tab)[0]), 0, (fn)}
#define SHORT_MAX 32 /* roles, token scopes */

/* --- nested maps ----------------------------------------------------------------- */

#define H(m) offsetof(struct om_host, m)
static const struct field host_f[] = {
	NAME("name", REQ, H(name)),
	STR("addr", REQ, H(addr), OM_MAX_NAME),
	STR("user", OPT, H(user), OM_MAX_NAME),
	NAME("idc", REQ, H(idc)),
	U32R("port", OPT, H(port), 0, 65535),
	NAMES("groups", OPT, H(groups), H(ngroups), OM_MAX_GROUPS),
};
static const struct schema host_s = SCHEMA(host_f, sizeof(struct om_host));

#define C(m) offsetof(struct om_chunk, m)
static const struct field chunk_f[] = {
	U64("task", REQ, C(task_id)),
	U32("host", REQ, C(host)),
	U32R("stream", REQ, C(stream), OM_STREAM_STDOUT, OM_STREAM_FILE),
	U64("seq", REQ, C(seq)),
	BIN("data", REQ, C(data), C(len), OM_MAX_CHUNK),
};
static const struct schema chunk_s = SCHEMA(chunk_f, sizeof(struct om_chunk));

#define RS(m) offsetof(struct om_result, m)
static const struct field result_f[] = {
	U64("task", REQ, RS(task_id)),
	U32("host", REQ, RS(host)),
	U32R("state", REQ, RS(state), 0, OM_HS_COUNT_ - 1),
	I32("exit", OPT, RS(exit_code)),
	STR("reason", OPT, RS(reason), OM_MAX_TEXT),
	U64("dur", OPT, RS(duration_ms)),
	BOOL("changed", OPT, RS(changed)),
	STR("data", OPT, RS(data), OM_MAX_RESULT),
	STR("note", OPT, RS(note), OM_MAX_TEXT),
};
static const struct schema result_s = SCHEMA(result_f, sizeof(struct om_result));

#define E(m) offsetof(struct om_event, m)
static const struct field event_f[] = {
	U64("id", REQ, E(id)),
	U32R("kind", REQ, E(kind), OM_EV_OUTPUT, OM_EV_JOB_DONE),
	NAME("host", OPT, E(host)),
	U32R("stream", OPT, E(stream), 0, OM_STREAM_FILE), /* 0: not an output event */
	BIN("data", OPT, E(data), E(len), OM_MAX_CHUNK),
	U32R("state", OPT, E(state), 0, OM_HS_COUNT_ - 1),
	I32("exit", OPT, E(exit_code)),
	STR("reason", OPT, E(reason), OM_MAX_TEXT),
	U64("dur", OPT, E(duration_ms)),
	BOOL("changed", OPT, E(changed)),
	STR("result", OPT, E(result), OM_MAX_RESULT),
};
static const struct schema event_s = SCHEMA(event_f, sizeof(struct om_event));

#define W(m) offsetof(struct om_worker_info, m)
static const struct field worker_f[] = {
	NAME("name", REQ, W(name)),
	NAME("idc", REQ, W(idc)),
	STR("fp", OPT, W(fingerprint), OM_MAX_NAME),
	BOOL("conn", OPT, W(connected)),
	I64("seen", OPT, W(last_seen_ms)),
	U32("run", OPT, W(running)),
};
static const struct schema worker_s = SCHEMA(worker_f, sizeof(struct om_worker_info));

#define MI(m) offsetof(struct om_module_info, m)
static const struct field module_f[] = {
	NAME("name", REQ, MI(name)),
	STR("version", REQ, MI(version), SHORT_MAX * 2),
	STR("kind", REQ, MI(kind), SHORT_MAX),
	STR("desc", OPT, MI(description), OM_MAX_TEXT),
	STR("schema", REQ, MI(schema), OM_MAX_SCHEMA),
	BOOL("idem", OPT, MI(idempotent)),
};
static const struct schema module_s = SCHEMA(module_f, sizeof(struct om_module_info));

/* --- messages (offsets from the start of struct om_msg) --------------------------- */

#define M(m) offsetof(struct om_msg, u.m)
static const struct field hello_f[] = {
	NAME("name", REQ, M(hello.name)),
	NAME("idc", REQ, M(hello.idc)),
	STR("secret", OPT, M(hello.secret), OM_MAX_TEXT),
	U32("ver", REQ, M(hello.version)),
	U32("cap", OPT, M(hello.capacity)),
};
static const struct field welcome_f[] = {
	U64("worker", REQ, M(welcome.worker_id)),
	U32("hb", OPT, M(welcome.heartbeat_ms)),
};
static const struct field heartbeat_f[] = {
	U32("run", OPT, M(heartbeat.running)),
	U32("cap", OPT, M(heartbeat.capacity)),
	U64S("tasks", OPT, M(heartbeat.tasks), M(heartbeat.ntasks), OM_MAX_ITEMS),
};
static const struct field poll_f[] = {
	U32("wait", OPT, M(poll.wait_ms)),
	BOOL("busy", OPT, M(poll.busy)),
};
static const struct field task_f[] = {
	U64("job", REQ, M(task.job_id)),
	U64("task", REQ, M(task.task_id)),
	NAME("module", REQ, M(task.module)),
	PARAMS("params", OPT, M(task.params), M(task.nparams)),
	LIST("hosts", REQ, M(task.hosts), M(task.nhosts), OM_MAX_HOSTS, &host_s),
	U32("timeout", OPT, M(task.timeout_s)),
	U32("forks", OPT, M(task.forks)),
	BOOL("become", OPT, M(task.become)),
	NAME("buser", OPT, M(task.become_user)),
	BOOL("check", OPT, M(task.check)),
};
static const struct field report_f[] = {
	LIST("chunks", OPT, M(report.chunks), M(report.nchunks), OM_MAX_ITEMS, &chunk_s),
	LIST("results", OPT, M(report.results), M(report.nresults), OM_MAX_ITEMS, &result_s),
};
static const struct field ack_f[] = {
	U32("nchunks", REQ, M(ack.nchunks)),
	U32("nresults", REQ, M(ack.nresults)),
};
static const struct field auth_f[] = {
	STR("token", OPT, M(auth.token), OM_MAX_SECRET),
	STR("user", OPT, M(auth.user), OM_MAX_SECRET),
	STR("password", OPT, M(auth.password), OM_MAX_SECRET),
	U32("ver", REQ, M(auth.version)),
};
static const struct field submit_f[] = {
	STR("sel", REQ, M(submit.selector), OM_MAX_TEXT),
	NAME("module", REQ, M(submit.module)),
	PARAMS("params", OPT, M(submit.params), M(submit.nparams)),
	U32("timeout", OPT, M(submit.timeout_s)),
	U32("forks", OPT, M(submit.forks)),
	U32("batch", OPT, M(submit.batch)),
	BOOL("bpct", OPT, M(submit.batch_pct)),
	U32R("maxfail", OPT, M(submit.max_fail), 0, 100),
	BOOL("hasmf", OPT, M(submit.has_max_fail)),
	BOOL("become", OPT, M(submit.become)),
	NAME("buser", OPT, M(submit.become_user)),
	BOOL("check", OPT, M(submit.check)),
	BOOL("retrylost", OPT, M(submit.retry_lost)),
};
static const struct field cancel_f[] = {
	U64S("tasks", REQ, M(cancel.tasks), M(cancel.ntasks), OM_MAX_ITEMS),
};
static const struct field modules_f[] = {
	LIST("modules", REQ, M(modules.modules), M(modules.nmodules), OM_MAX_MODULES, &module_s),
};
static const struct field by_name_f[] = {
	NAME("name", REQ, M(by_name.name)),
};
static const struct field submitted_f[] = {
	U64("job", REQ, M(submitted.job_id)),
	U32("nhosts", REQ, M(submitted.nhosts)),
};
static const struct field follow_f[] = {
	U64("job", REQ, M(follow.job_id)),
	U64("cursor", OPT, M(follow.cursor)),
	U32("wait", OPT, M(follow.wait_ms)),
	BOOL("files", OPT, M(follow.files)),
};
static const struct field events_f[] = {
	U64("job", REQ, M(events.job_id)),
	U64("cursor", REQ, M(events.cursor)),
	BOOL("done", OPT, M(events.done)),
	LIST("events", OPT, M(events.events), M(events.nevents), OM_MAX_ITEMS, &event_s),
};
static const struct field hosts_list_f[] = {
	STR("sel", REQ, M(hosts_list.selector), OM_MAX_TEXT),
};
static const struct field hosts_f[] = {
	LIST("hosts", REQ, M(hosts.hosts), M(hosts.nhosts), OM_MAX_HOSTS, &host_s),
};
static const struct field done_f[] = {
	U64("count", OPT, M(done.count)),
	STR("text", OPT, M(done.text), OM_MAX_TEXT),
};
static const struct field workers_f[] = {
	LIST("workers", REQ, M(workers.workers), M(workers.nworkers), OM_MAX_WORKERS, &worker_s),
};
static const struct field error_f[] = {
	I32("code", REQ, M(error.code)),
	STR("text", OPT, M(error.text), OM_MAX_TEXT),
	STR("field", OPT, M(error.field), OM_MAX_FIELD),
};
static const struct field key_set_f[] = {
	U64("id", REQ, M(key_set.id)),
	U32R("state", REQ, M(key_set.state), OM_KEY_ACCEPTED, OM_KEY_REVOKED),
	STR("fp", OPT, M(key_set.fingerprint), OM_MAX_NAME),
};
static const struct field enroll_f[] = {
	NAME("idc", REQ, M(enroll.idc)),
	U64("ttl", REQ, M(enroll.ttl_s)),
};
static const struct field user_add_f[] = {
	NAME("name", REQ, M(user.name)),
	STR("role", REQ, M(user.role), SHORT_MAX),
	STR("password", REQ, M(user.password), OM_MAX_SECRET),
	NAMES("idcs", OPT, M(user.idcs), M(user.nidcs), OM_MAX_GROUPS),
	NAMES("groups", OPT, M(user.groups), M(user.ngroups), OM_MAX_GROUPS),
	NAMES("modules", OPT, M(user.modules), M(user.nmodules), OM_MAX_GROUPS),
};
static const struct field user_passwd_f[] = {
	NAME("name", REQ, M(user.name)),
	STR("password", REQ, M(user.password), OM_MAX_SECRET),
};
static const struct field user_disable_f[] = {
	NAME("name", REQ, M(user.name)),
	BOOL("flag", REQ, M(user.flag)),
};
static const struct field token_f[] = {
	NAME("name", REQ, M(token.name)),
	NAME("user", OPT, M(token.user)),
	STRS("scopes", OPT, M(token.scopes), M(token.nscopes), 0, OM_MAX_SCOPES, SHORT_MAX, false),
	U64("ttl", OPT, M(token.ttl_s)),
};
static const struct field by_id_f[] = {
	U64("id", REQ, M(by_id.id)),
};
static const struct field audit_f[] = {
	I64("since", OPT, M(audit.since_ms)),
	U64("after", OPT, M(audit.after_id)),
	U32("limit", OPT, M(audit.limit)),
	U64("before", OPT, M(audit.before_id)),
	BOOL("desc", OPT, M(audit.desc)),
};
static const struct field secret_f[] = {
	U64("id", REQ, M(secret.id)),
	STR("secret", REQ, M(secret.secret), OM_MAX_SECRET),
	I64("exp", OPT, M(secret.expires_ms)),
};
static const struct field table_f[] = {
	STRS("cols", REQ, M(table.columns), M(table.ncolumns), 1, OM_MAX_TABLE_COLUMNS,
	     OM_MAX_NAME, false),
	STRS("cells", REQ, M(table.cells), M(table.ncells), 0, OM_MAX_TABLE_CELLS, OM_MAX_TEXT,
	     true),
};

static const struct field job_hosts_f[] = {
	U64("job", REQ, M(job_hosts.job_id)),
	U32R("state", REQ, M(job_hosts.state), 0, OM_HS_COUNT_ - 1),
	NAME("after", OPT, M(job_hosts.after)),
	U32R("limit", OPT, M(job_hosts.limit), 0, OM_MAX_JOB_ROWS),
};
static const struct field jobs_list_f[] = {
	U32R("state", OPT, M(jobs_list.state), OM_JOBS_ANY, OM_JOBS_DONE),
	NAME("user", OPT, M(jobs_list.user)),
	U64("since", OPT, M(jobs_list.since_s)),
	U32R("limit", OPT, M(jobs_list.limit), 0, OM_MAX_JOB_ROWS),
};
static const struct field job_output_f[] = {
	U64("job", REQ, M(job_output.job_id)),
	U64("cursor", OPT, M(job_output.cursor)),
	NAME("host", OPT, M(job_output.host)),
};

/* Whole rows only. */
static bool
table_check(const void *base)
{
	const struct om_msg *m = base;

	return m->u.table.ncolumns > 0 && m->u.table.ncells % m->u.table.ncolumns == 0;
}

static const struct {
	enum om_msg_type type;
	struct schema s;
} msg_tab[] = {
	{OM_MSG_HELLO, SCHEMA(hello_f, 0)},
	{OM_MSG_WELCOME, SCHEMA(welcome_f, 0)},
	{OM_MSG_HEARTBEAT, SCHEMA(heartbeat_f, 0)},
	{OM_MSG_POLL, SCHEMA(poll_f, 0)},
	{OM_MSG_TASK, SCHEMA(task_f, 0)},
	{OM_MSG_NOTASK, {NULL, 0, 0, NULL}},
	{OM_MSG_REPORT, SCHEMA(report_f, 0)},
	{OM_MSG_ACK, SCHEMA(ack_f, 0)},
	{OM_MSG_AUTH, SCHEMA(auth_f, 0)},
	{OM_MSG_AUTH_OK, {NULL, 0, 0, NULL}},
	{OM_MSG_SUBMIT, SCHEMA(submit_f, 0)},
	{OM_MSG_SUBMITTED, SCHEMA(submitted_f, 0)},
	{OM_MSG_FOLLOW, SCHEMA(follow_f, 0)},
	{OM_MSG_EVENTS, SCHEMA(events_f, 0)},
	{OM_MSG_HOSTS_LIST, SCHEMA(hosts_list_f, 0)},
	{OM_MSG_HOSTS, SCHEMA(hosts_f, 0)},
	{OM_MSG_HOSTS_ADD, SCHEMA(hosts_f, 0)},
	{OM_MSG_DONE, SCHEMA(done_f, 0)},
	{OM_MSG_WORKERS_LIST, {NULL, 0, 0, NULL}},
	{OM_MSG_WORKERS, SCHEMA(workers_f, 0)},
	{OM_MSG_ERROR, SCHEMA(error_f, 0)},
	{OM_MSG_KEYS_LIST, {NULL, 0, 0, NULL}},
	{OM_MSG_KEY_SET, SCHEMA(key_set_f, 0)},
	{OM_MSG_ENROLL_CREATE, SCHEMA(enroll_f, 0)},
	{OM_MSG_USERS_LIST, {NULL, 0, 0, NULL}},
	{OM_MSG_USER_ADD, SCHEMA(user_add_f, 0)},
	{OM_MSG_USER_PASSWD, SCHEMA(user_passwd_f, 0)},
	{OM_MSG_USER_DISABLE, SCHEMA(user_disable_f, 0)},
	{OM_MSG_TOKEN_CREATE, SCHEMA(token_f, 0)},
	{OM_MSG_TOKENS_LIST, {NULL, 0, 0, NULL}},
	{OM_MSG_TOKEN_REVOKE, SCHEMA(by_id_f, 0)},
	{OM_MSG_AUDIT_LIST, SCHEMA(audit_f, 0)},
	{OM_MSG_AUDIT_VERIFY, {NULL, 0, 0, NULL}},
	{OM_MSG_SECRET, SCHEMA(secret_f, 0)},
	{OM_MSG_TABLE, SCHEMA_CHECK(table_f, table_check)},
	{OM_MSG_CANCEL, SCHEMA(cancel_f, 0)},
	{OM_MSG_MODULES, SCHEMA(modules_f, 0)},
	{OM_MSG_JOB_CANCEL, SCHEMA(by_id_f, 0)},
	{OM_MSG_MODULES_LIST, {NULL, 0, 0, NULL}},
	{OM_MSG_MODULE_SHOW, SCHEMA(by_name_f, 0)},
	{OM_MSG_HOST_SHOW, SCHEMA(by_name_f, 0)},
	{OM_MSG_JOB_SHOW, SCHEMA(by_id_f, 0)},
	{OM_MSG_JOB_HOSTS, SCHEMA(job_hosts_f, 0)},
	{OM_MSG_JOBS_LIST, SCHEMA(jobs_list_f, 0)},
	{OM_MSG_JOB_OUTPUT, SCHEMA(job_output_f, 0)},
};

/* clang-format on */

static const struct schema *
schema_of(uint64_t type)
{
	for (size_t i = 0; i < sizeof(msg_tab) / sizeof(msg_tab[0]); i++)
		if ((uint64_t)msg_tab[i].type == type)
			return &msg_tab[i].s;
	return NULL;
}

/* Typed access to a field of a struct described by a schema. */
#define AT(base, off, T)  ((T *)(void *)((char *)(base) + (off)))
#define CAT(base, off, T) ((T const *)(const void *)((const char *)(base) + (off)))

/* --- names and states ---------------------------------------------------------- */

static bool
name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

bool
om_name_valid(const char *s)
{
	size_t n;

	/* A leading '-' reads as an option to ssh and friends, '.' as a hidden or relative path. */
	if (s == NULL || s[0] == '\0' || s[0] == '-' || s[0] == '.')
		return false;
	for (n = 0; s[n] != '\0'; n++)
		if (n >= OM_MAX_NAME || !name_char(s[n]))
			return false;
	return true;
}

static const char *const state_names[OM_HS_COUNT_] = {
        [OM_HS_QUEUED] = "queued",   [OM_HS_DISPATCHED] = "dispatched",
        [OM_HS_RUNNING] = "running", [OM_HS_OK] = "ok",
        [OM_HS_FAILED] = "failed",   [OM_HS_UNREACHABLE] = "unreachable",
        [OM_HS_TIMEOUT] = "timeout", [OM_HS_CANCELLED] = "cancelled",
        [OM_HS_SKIPPED] = "skipped", [OM_HS_LOST] = "lost",
};

/* Names of a small enum: the name of v, "unknown" out of range. */
static const char *
enum_name(const char *const *names, int count, int v)
{
	return v >= 0 && v < count ? names[v] : "unknown";
}

/* The value named name, -1 when none is. */
static int
enum_parse(const char *const *names, int count, const char *name)
{
	for (int i = 0; name != NULL && i < count; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

const char *
om_host_state_name(int state)
{
	return enum_name(state_names, OM_HS_COUNT_, state);
}

int
om_host_state_parse(const char *name)
{
	return enum_parse(state_names, OM_HS_COUNT_, name);
}

bool
om_host_state_final(int state)
{
	return state >= OM_HS_OK && state < OM_HS_COUNT_;
}

static const char *const key_state_names[OM_KEY_COUNT_] = {
        [OM_KEY_PENDING] = "pending",
        [OM_KEY_ACCEPTED] = "accepted",
        [OM_KEY_REJECTED] = "rejected",
        [OM_KEY_REVOKED] = "revoked",
};

const char *
om_key_state_name(int state)
{
	return enum_name(key_state_names, OM_KEY_COUNT_, state);
}

int
om_key_state_parse(const char *name)
{
	return enum_parse(key_state_names, OM_KEY_COUNT_, name);
}

/* --- release ------------------------------------------------------------------- */

static void release_fields(const struct schema *s, void *base);

static void
release_list(const struct schema *sub, void *arr, size_t n)
{
	if (arr == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		release_fields(sub, (char *)arr + i * sub->size);
	om_free(arr);
}

/* Frees what the fields own and zeroes the pointers and counts; safe on zeroed structs. */
static void
release_fields(const struct schema *s, void *base)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct field *f = &s->f[i];

		switch (f->kind) {
		case F_NAME:
		case F_STR:
			om_free(*AT(base, f->off, char *));
			*AT(base, f->off, char *) = NULL;
			break;
		case F_BIN:
			om_free(*AT(base, f->off, uint8_t *));
			*AT(base, f->off, uint8_t *) = NULL;
			*AT(base, f->off2, uint32_t) = 0;
			break;
		case F_U64S:
			om_free(*AT(base, f->off, uint64_t *));
			*AT(base, f->off, uint64_t *) = NULL;
			*AT(base, f->off2, uint32_t) = 0;
			break;
		case F_NAMES:
		case F_STRS: {
			char **v = *AT(base, f->off, char **);
			uint32_t n = *AT(base, f->off2, uint32_t);

			for (uint32_t k = 0; v != NULL && k < n; k++)
				om_free(v[k]);
			om_free(v);
			*AT(base, f->off, char **) = NULL;
			*AT(base, f->off2, uint32_t) = 0;
			break;
		}
		case F_PARAMS:
			om_kvs_free(*AT(base, f->off, struct om_kv *),
			            *AT(base, f->off2, uint32_t));
			*AT(base, f->off, struct om_kv *) = NULL;
			*AT(base, f->off2, uint32_t) = 0;
			break;
		case F_LIST:
			release_list(f->sub, *AT(base, f->off, void *),
			             *AT(base, f->off2, uint32_t));
			*AT(base, f->off, void *) = NULL;
			*AT(base, f->off2, uint32_t) = 0;
			break;
		default:
			break;
		}
	}
}

void
om_msg_release(struct om_msg *m)
{
	const struct schema *s;

	if (m == NULL)
		return;
	if ((s = schema_of((uint64_t)m->type)) != NULL)
		release_fields(s, m);
	memset(m, 0, sizeof(*m));
}

void
om_host_release(struct om_host *h)
{
	if (h == NULL)
		return;
	release_fields(&host_s, h);
	memset(h, 0, sizeof(*h));
}

void
om_hosts_free(struct om_host *hosts, size_t n)
{
	release_list(&host_s, hosts, n);
}

void
om_events_free(struct om_event *ev, size_t n)
{
	release_list(&event_s, ev, n);
}

void
om_workers_free(struct om_worker_info *w, size_t n)
{
	release_list(&worker_s, w, n);
}

void
om_modules_free(struct om_module_info *m, size_t n)
{
	release_list(&module_s, m, n);
}

void
om_kvs_free(struct om_kv *kv, size_t n)
{
	if (kv == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		om_free(kv[i].key);
		om_free(kv[i].val);
	}
	om_free(kv);
}

static int
dup_opt(char **dst, const char *src)
{
	*dst = NULL;
	if (src == NULL)
		return 0;
	if ((*dst = om_strdup(src)) == NULL)
		return OM_ENOMEM;
	return 0;
}

int
om_host_copy(struct om_host *dst, const struct om_host *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->port = src->port;
	if (dup_opt(&dst->name, src->name) || dup_opt(&dst->addr, src->addr) ||
	    dup_opt(&dst->user, src->user) || dup_opt(&dst->idc, src->idc))
		goto fail;
	if (src->ngroups > 0) {
		if ((dst->groups = om_calloc(src->ngroups, sizeof(*dst->groups))) == NULL)
			goto fail;
		dst->ngroups = src->ngroups;
		for (uint32_t i = 0; i < src->ngroups; i++)
			if (dup_opt(&dst->groups[i], src->groups[i]))
				goto fail;
	}
	return 0;
fail:
	om_host_release(dst);
	return OM_ENOMEM;
}

/* --- encoder ------------------------------------------------------------------- */

static int encode_fields(struct om_buf *b, const struct schema *s, const void *base, int type);

/* Optional strings that are NULL are left out of the map; everything else is written. */
static bool
field_present(const struct field *f, const void *base)
{
	if (f->req || (f->kind != F_NAME && f->kind != F_STR))
		return true;
	return *CAT(base, f->off, char *) != NULL;
}

static int
encode_params(struct om_buf *b, const struct om_kv *kv, uint32_t n)
{
	if (n > OM_MAX_PARAMS)
		return OM_EMSGSIZE;
	if (n > 0 && kv == NULL)
		return OM_EINVAL;
	om_mpw_map(b, n);
	for (uint32_t i = 0; i < n; i++) {
		if (!om_name_valid(kv[i].key) || kv[i].val == NULL)
			return OM_EINVAL;
		for (uint32_t j = 0; j < i; j++)
			if (strcmp(kv[i].key, kv[j].key) == 0)
				return OM_EINVAL;
		if (strlen(kv[i].val) > OM_MAX_PARAM)
			return OM_EMSGSIZE;
		om_mpw_cstr(b, kv[i].key);
		om_mpw_cstr(b, kv[i].val);
	}
	return 0;
}

/* Refuses what the decoder would refuse, so a peer never gets a message it must drop. */
static int
encode_value(struct om_buf *b, const struct field *f, const void *base)
{
	switch (f->kind) {
	case F_U64:
		om_mpw_uint(b, *CAT(base, f->off, uint64_t));
		return 0;
	case F_U32: {
		uint32_t v = *CAT(base, f->off, uint32_t);

		if (v < f->min || v > f->max)
			return OM_EINVAL;
		om_mpw_uint(b, v);
		return 0;
	}
	case F_I32:
		om_mpw_int(b, *CAT(base, f->off, int32_t));
		return 0;
	case F_I64:
		om_mpw_int(b, *CAT(base, f->off, int64_t));
		return 0;
	case F_BOOL:
		om_mpw_bool(b, *CAT(base, f->off, bool));
		return 0;
	case F_NAME: {
		const char *s = *CAT(base, f->off, char *);

		if (!om_name_valid(s))
			return OM_EINVAL;
		om_mpw_cstr(b, s);
		return 0;
	}
	case F_STR: {
		const char *s = *CAT(base, f->off, char *);

		if (s == NULL)
			return OM_EINVAL;
		if (strlen(s) > f->max)
			return OM_EMSGSIZE;
		om_mpw_cstr(b, s);
		return 0;
	}
	case F_BIN: {
		const uint8_t *p = *CAT(base, f->off, uint8_t *);
		uint32_t n = *CAT(base, f->off2, uint32_t);

		if (n > f->max)
			return OM_EMSGSIZE;
		if (n > 0 && p == NULL)
			return OM_EINVAL;
		om_mpw_bin(b, p, n);
		return 0;
	}
	case F_U64S: {
		const uint64_t *v = *CAT(base, f->off, uint64_t *);
		uint32_t n = *CAT(base, f->off2, uint32_t);

		if (n > f->max)
			return OM_EMSGSIZE;
		if (n > 0 && v == NULL)
			return OM_EINVAL;
		om_mpw_array(b, n);
		for (uint32_t i = 0; i < n; i++)
			om_mpw_uint(b, v[i]);
		return 0;
	}
	case F_NAMES: {
		char *const *v = *CAT(base, f->off, char **);
		uint32_t n = *CAT(base, f->off2, uint32_t);

		if (n > f->max)
			return OM_EMSGSIZE;
		if (n > 0 && v == NULL)
			return OM_EINVAL;
		om_mpw_array(b, n);
		for (uint32_t i = 0; i < n; i++) {
			if (!om_name_valid(v[i]))
				return OM_EINVAL;
			om_mpw_cstr(b, v[i]);
		}
		return 0;
	}
	case F_STRS: {
		char *const *v = *CAT(base, f->off, char **);
		uint32_t n = *CAT(base, f->off2, uint32_t);

		if (n > f->max)
			return OM_EMSGSIZE;
		if (n < f->min || (n > 0 && v == NULL))
			return OM_EINVAL;
		om_mpw_array(b, n);
		for (uint32_t i = 0; i < n; i++) {
			if (v[i] == NULL) {
				if (!f->nils)
					return OM_EINVAL;
				om_mpw_nil(b);
				continue;
			}
			if (strlen(v[i]) > f->emax)
				return OM_EMSGSIZE;
			om_mpw_cstr(b, v[i]);
		}
		return 0;
	}
	case F_PARAMS:
		return encode_params(b, *CAT(base, f->off, struct om_kv *),
		                     *CAT(base, f->off2, uint32_t));
	case F_LIST: {
		const char *arr = *CAT(base, f->off, void *);
		uint32_t n = *CAT(base, f->off2, uint32_t);
		int rc;

		if (n > f->max)
			return OM_EMSGSIZE;
		if (n > 0 && arr == NULL)
			return OM_EINVAL;
		om_mpw_array(b, n);
		for (uint32_t i = 0; i < n; i++) {
			const char *elem = arr + (size_t)i * f->sub->size;

			if ((rc = encode_fields(b, f->sub, elem, -1)) != 0)
				return rc;
		}
		return 0;
	}
	}
	return OM_EINVAL;
}

/* One map; type >= 0 adds the "t" key first (top level). */
static int
encode_fields(struct om_buf *b, const struct schema *s, const void *base, int type)
{
	uint32_t n = type >= 0 ? 1 : 0;
	int rc;

	if (s->check != NULL && !s->check(base))
		return OM_EINVAL;
	for (size_t i = 0; i < s->n; i++)
		if (field_present(&s->f[i], base))
			n++;
	om_mpw_map(b, n);
	if (type >= 0) {
		om_mpw_cstr(b, "t");
		om_mpw_uint(b, (uint64_t)type);
	}
	for (size_t i = 0; i < s->n; i++) {
		if (!field_present(&s->f[i], base))
			continue;
		om_mpw_cstr(b, s->f[i].key);
		if ((rc = encode_value(b, &s->f[i], base)) != 0)
			return rc;
	}
	return b->err;
}

int
om_msg_encode(const struct om_msg *m, struct om_buf *b)
{
	const struct schema *s;
	size_t start = b->len;
	int rc;

	if (b->err)
		return b->err;
	if ((s = schema_of((uint64_t)m->type)) == NULL)
		return OM_EINVAL;
	rc = encode_fields(b, s, m, (int)m->type);
	if (rc == 0)
		rc = b->err;
	/* A refused message leaves b as it was; a full buffer keeps its sticky err. */
	if (rc != 0 && b->err == 0)
		b->len = start;
	return rc;
}

/* --- decoder ------------------------------------------------------------------- */

static int decode_fields(struct om_mpr *r, uint32_t cnt, const struct schema *s, void *base,
                         bool top);

static size_t
remaining(const struct om_mpr *r)
{
	return (size_t)(r->end - r->p);
}

/*
 * The fewest bytes one element map of s can take: the map header and, per
 * required field, the key and a one-byte value.  Used to refuse a declared
 * count the input cannot hold before the element array is allocated.
 */
static size_t
min_size(const struct schema *s)
{
	size_t n = 1;

	for (size_t i = 0; i < s->n; i++)
		if (s->f[i].req)
			n += 1 + strlen(s->f[i].key) + 1;
	return n;
}

static int
decode_names(struct om_mpr *r, const struct field *f, void *base)
{
	uint32_t n;
	char **v;
	int rc;

	if ((rc = om_mpr_array(r, &n)) != 0)
		return rc;
	if (n > f->max)
		return OM_EMSGSIZE;
	if (n == 0)
		return 0;
	if (n > remaining(r) / 2) /* a name takes at least 2 bytes */
		return OM_EPROTO;
	if ((v = om_calloc(n, sizeof(*v))) == NULL)
		return OM_ENOMEM;
	*AT(base, f->off, char **) = v;
	*AT(base, f->off2, uint32_t) = n;
	for (uint32_t i = 0; i < n; i++) {
		if ((rc = om_mpr_strdup(r, OM_MAX_NAME, false, &v[i])) != 0)
			return rc;
		if (!om_name_valid(v[i]))
			return OM_EPROTO;
	}
	return 0;
}

static int
decode_u64s(struct om_mpr *r, const struct field *f, void *base)
{
	uint32_t n;
	uint64_t *v;
	int rc;

	if ((rc = om_mpr_array(r, &n)) != 0)
		return rc;
	if (n > f->max)
		return OM_EMSGSIZE;
	if (n == 0)
		return 0;
	if ((v = om_calloc(n, sizeof(*v))) == NULL) /* n <= remaining bytes: bounded */
		return OM_ENOMEM;
	*AT(base, f->off, uint64_t *) = v;
	*AT(base, f->off2, uint32_t) = n;
	for (uint32_t i = 0; i < n; i++)
		if ((rc = om_mpr_uint(r, &v[i])) != 0)
			return rc;
	return 0;
}

static int
decode_strs(struct om_mpr *r, const struct field *f, void *base)
{
	uint32_t n;
	char **v;
	int rc;

	if ((rc = om_mpr_array(r, &n)) != 0)
		return rc;
	if (n > f->max)
		return OM_EMSGSIZE;
	if (n < f->min)
		return OM_EPROTO;
	if (n == 0)
		return 0;
	if (n > remaining(r)) /* a string or a nil takes at least 1 byte */
		return OM_EPROTO;
	if ((v = om_calloc(n, sizeof(*v))) == NULL)
		return OM_ENOMEM;
	*AT(base, f->off, char **) = v;
	*AT(base, f->off2, uint32_t) = n;
	for (uint32_t i = 0; i < n; i++)
		if ((rc = om_mpr_strdup(r, f->emax, f->nils, &v[i])) != 0)
			return rc;
	return 0;
}

static int
decode_params(struct om_mpr *r, const struct field *f, void *base)
{
	struct om_kv *kv;
	uint32_t n;
	int rc;

	if ((rc = om_mpr_map(r, &n)) != 0)
		return rc;
	if (n > f->max)
		return OM_EMSGSIZE;
	if (n == 0)
		return 0;
	if (n > remaining(r) / 3) /* key of at least 2 bytes, value of at least 1 */
		return OM_EPROTO;
	if ((kv = om_calloc(n, sizeof(*kv))) == NULL)
		return OM_ENOMEM;
	*AT(base, f->off, struct om_kv *) = kv;
	*AT(base, f->off2, uint32_t) = n;
	for (uint32_t i = 0; i < n; i++) {
		if ((rc = om_mpr_strdup(r, OM_MAX_NAME, false, &kv[i].key)) != 0)
			return rc;
		if (!om_name_valid(kv[i].key))
			return OM_EPROTO;
		for (uint32_t j = 0; j < i; j++)
			if (strcmp(kv[i].key, kv[j].key) == 0)
				return OM_EPROTO;
		if ((rc = om_mpr_strdup(r, OM_MAX_PARAM, false, &kv[i].val)) != 0)
			return rc;
	}
	return 0;
}

static int
decode_list(struct om_mpr *r, const struct field *f, void *base)
{
	const struct schema *sub = f->sub;
	uint32_t n, cnt;
	char *arr;
	int rc;

	if ((rc = om_mpr_array(r, &n)) != 0)
		return rc;
	if (n > f->max)
		return OM_EMSGSIZE;
	if (n == 0)
		return 0;
	if (n > remaining(r) / min_size(sub))
		return OM_EPROTO;
	if ((arr = om_calloc(n, sub->size)) == NULL)
		return OM_ENOMEM;
	/* Set before filling: a failure part-way is freed by release_fields. */
	*AT(base, f->off, void *) = arr;
	*AT(base, f->off2, uint32_t) = n;
	for (uint32_t i = 0; i < n; i++) {
		if ((rc = om_mpr_map(r, &cnt)) != 0)
			return rc;
		if ((rc = decode_fields(r, cnt, sub, arr + (size_t)i * sub->size, false)) != 0)
			return rc;
	}
	return 0;
}

static int
decode_value(struct om_mpr *r, const struct field *f, void *base)
{
	uint64_t u;
	int64_t i;
	int rc;

	/* nil stands for an absent optional field (the zero value) */
	if (!f->req && om_mpr_peek(r) == OM_MP_NIL)
		return om_mpr_nil(r);
	switch (f->kind) {
	case F_U64:
		return om_mpr_uint(r, AT(base, f->off, uint64_t));
	case F_U32:
		if ((rc = om_mpr_uint(r, &u)) != 0)
			return rc;
		if (u < f->min || u > f->max)
			return OM_EPROTO;
		*AT(base, f->off, uint32_t) = (uint32_t)u;
		return 0;
	case F_I32:
		if ((rc = om_mpr_int(r, &i)) != 0)
			return rc;
		if (i < INT32_MIN || i > INT32_MAX)
			return OM_EPROTO;
		*AT(base, f->off, int32_t) = (int32_t)i;
		return 0;
	case F_I64:
		return om_mpr_int(r, AT(base, f->off, int64_t));
	case F_BOOL:
		return om_mpr_bool(r, AT(base, f->off, bool));
	case F_NAME:
		if ((rc = om_mpr_strdup(r, OM_MAX_NAME, false, AT(base, f->off, char *))) != 0)
			return rc;
		return om_name_valid(*AT(base, f->off, char *)) ? 0 : OM_EPROTO;
	case F_STR:
		return om_mpr_strdup(r, f->max, false, AT(base, f->off, char *));
	case F_BIN: {
		const uint8_t *p;
		uint32_t n;
		uint8_t *d = NULL;

		if ((rc = om_mpr_bin(r, &p, &n)) != 0)
			return rc;
		if (n > f->max)
			return OM_EMSGSIZE;
		if (n > 0) {
			if ((d = om_malloc(n)) == NULL)
				return OM_ENOMEM;
			memcpy(d, p, n);
		}
		*AT(base, f->off, uint8_t *) = d;
		*AT(base, f->off2, uint32_t) = n;
		return 0;
	}
	case F_NAMES:
		return decode_names(r, f, base);
	case F_U64S:
		return decode_u64s(r, f, base);
	case F_STRS:
		return decode_strs(r, f, base);
	case F_PARAMS:
		return decode_params(r, f, base);
	case F_LIST:
		return decode_list(r, f, base);
	}
	return OM_EINVAL;
}

/*
 * The cnt key/value pairs of a map whose header has been read.  Unknown keys
 * are skipped; a known key seen twice is refused (its first value would leak
 * or silently lose).  At the top level "t" was checked by find_type.
 */
static int
decode_fields(struct om_mpr *r, uint32_t cnt, const struct schema *s, void *base, bool top)
{
	uint32_t seen = 0;
	const char *k;
	uint32_t kn;
	size_t j;
	int rc;

	for (uint32_t i = 0; i < cnt; i++) {
		if ((rc = om_mpr_str(r, &k, &kn)) != 0)
			return rc;
		if (top && om_mp_key_is(k, kn, "t")) {
			if ((rc = om_mpr_skip(r)) != 0)
				return rc;
			continue;
		}
		for (j = 0; j < s->n; j++)
			if (om_mp_key_is(k, kn, s->f[j].key))
				break;
		if (j == s->n) {
			if ((rc = om_mpr_skip(r)) != 0)
				return rc;
			continue;
		}
		if (seen & (UINT32_C(1) << j))
			return OM_EPROTO;
		seen |= UINT32_C(1) << j;
		if ((rc = decode_value(r, &s->f[j], base)) != 0)
			return rc;
	}
	for (j = 0; j < s->n; j++)
		if (s->f[j].req && !(seen & (UINT32_C(1) << j)))
			return OM_EPROTO;
	if (s->check != NULL && !s->check(base))
		return OM_EPROTO;
	return 0;
}

/* "t" may sit anywhere in the top map: a first pass over a copy of the reader finds it. */
static int
find_type(struct om_mpr r, uint32_t cnt, uint64_t *type)
{
	bool found = false;
	const char *k;
	uint32_t kn;
	int rc;

	for (uint32_t i = 0; i < cnt; i++) {
		if ((rc = om_mpr_str(&r, &k, &kn)) != 0)
			return rc;
		if (!om_mp_key_is(k, kn, "t")) {
			if ((rc = om_mpr_skip(&r)) != 0)
				return rc;
			continue;
		}
		if (found)
			return OM_EPROTO;
		if ((rc = om_mpr_uint(&r, type)) != 0)
			return rc;
		found = true;
	}
	return found ? 0 : OM_EPROTO;
}

int
om_msg_decode(const uint8_t *data, size_t n, struct om_msg *m)
{
	const struct schema *s;
	struct om_mpr r;
	uint64_t type;
	uint32_t cnt;
	int rc;

	memset(m, 0, sizeof(*m));
	om_mpr_init(&r, data, n);
	if ((rc = om_mpr_map(&r, &cnt)) != 0)
		goto out;
	if ((rc = find_type(r, cnt, &type)) != 0)
		goto out;
	if (type == OM_MSG_NONE || (s = schema_of(type)) == NULL) {
		rc = OM_EPROTO;
		goto out;
	}
	m->type = (enum om_msg_type)type;
	if ((rc = decode_fields(&r, cnt, s, m, true)) != 0)
		goto out;
	if (r.p != r.end)
		rc = OM_EPROTO;
out:
	if (rc != 0)
		om_msg_release(m);
	return rc;
}
