/*
 * Protocol messages between om-worker, om-master and omctl.
 *
 * On the wire every message is one msgpack map inside a secure-channel
 * record: {"t": type, field: value, ...}.  The decoder is schema-checked:
 * each known field has one type, required fields must be present, unknown
 * fields are skipped (forward compatibility), every count and length is
 * bounded by the limits below and by the bytes that remain.
 *
 * Ownership: om_msg_decode allocates every string and array of *m; free them
 * all with om_msg_release(m).  Encoders only read the message.
 */
#ifndef OM_MSG_H
#define OM_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "om/base.h"

#define OM_PROTO_VERSION 1

/* Limits enforced by the decoder (and respected by encoders). */
#define OM_MAX_NAME          255       /* host, worker, IDC, group, module names */
#define OM_MAX_TEXT          4096      /* reasons, messages, selectors */
#define OM_MAX_PARAM         (4 << 20) /* one module parameter value (copy content) */
#define OM_MAX_PARAMS        64        /* parameters per task */
#define OM_MAX_HOSTS         100000    /* hosts per task, list or add */
#define OM_MAX_GROUPS        64        /* groups per host */
#define OM_MAX_CHUNK         65536     /* bytes of output per chunk */
#define OM_MAX_ITEMS         4096      /* chunks or results per report, events per reply */
#define OM_MAX_WORKERS       4096      /* workers per list */
#define OM_MAX_FRAME         (8 << 20) /* any frame after authentication */
#define OM_MAX_FRAME_PREAUTH 8192      /* handshake frames */
#define OM_MAX_RESULT        (256 << 10) /* structured result (JSON text) of one host */
#define OM_MAX_SCHEMA        65536     /* parameter schema of one module (JSON text) */
#define OM_MAX_MODULES       256       /* modules per catalog */
#define OM_MAX_FIELD         (OM_MAX_NAME + 32) /* ERROR field: "params." and a name */

enum om_msg_type {
	OM_MSG_NONE = 0,
	/* worker <-> master */
	OM_MSG_HELLO = 1,     /* W->M, inside the handshake: who I am */
	OM_MSG_WELCOME = 2,   /* M->W, inside the handshake: admitted */
	OM_MSG_HEARTBEAT = 3, /* W->M: alive, load */
	OM_MSG_POLL = 4,      /* W->M: give me a task, wait up to wait_ms */
	OM_MSG_TASK = 5,      /* M->W: a task to run */
	OM_MSG_NOTASK = 6,    /* M->W: nothing within wait_ms */
	OM_MSG_REPORT = 7,    /* W->M: output chunks and host results */
	OM_MSG_ACK = 8,       /* M->W: everything in the report is durable */
	OM_MSG_CANCEL = 9,    /* M->W (as a POLL reply): stop these tasks */
	OM_MSG_MODULES = 10,  /* W->M: the worker's module catalog; M->C: catalog or one module */
	/* omctl <-> master */
	OM_MSG_AUTH = 20,         /* C->M, inside the handshake: the API token */
	OM_MSG_AUTH_OK = 21,      /* M->C, inside the handshake */
	OM_MSG_SUBMIT = 22,       /* C->M: run a job */
	OM_MSG_SUBMITTED = 23,    /* M->C: job id and matched hosts */
	OM_MSG_FOLLOW = 24,       /* C->M: events of a job after a cursor */
	OM_MSG_EVENTS = 25,       /* M->C */
	OM_MSG_HOSTS_LIST = 26,   /* C->M: hosts matching a selector */
	OM_MSG_HOSTS = 27,        /* M->C */
	OM_MSG_HOSTS_ADD = 28,    /* C->M: add or update hosts (add, import) */
	OM_MSG_DONE = 29,         /* M->C: generic success with a count */
	OM_MSG_WORKERS_LIST = 30, /* C->M */
	OM_MSG_WORKERS = 31,      /* M->C */
	OM_MSG_ERROR = 40,	  /* M->any: request refused, with a reason */
	/* trust and access (issue 3), omctl <-> master */
	OM_MSG_KEYS_LIST = 50,	   /* worker keys with their states */
	OM_MSG_KEY_SET = 51,	   /* accept, reject or revoke one key */
	OM_MSG_ENROLL_CREATE = 52, /* a one-time enrollment token for an IDC */
	OM_MSG_USERS_LIST = 53,
	OM_MSG_USER_ADD = 54,
	OM_MSG_USER_PASSWD = 55,
	OM_MSG_USER_DISABLE = 56, /* also re-enables: flag */
	OM_MSG_TOKEN_CREATE = 57,
	OM_MSG_TOKENS_LIST = 58,
	OM_MSG_TOKEN_REVOKE = 59,
	OM_MSG_AUDIT_LIST = 60,
	OM_MSG_AUDIT_VERIFY = 61,
	OM_MSG_SECRET = 62, /* M->C: a secret shown once (token, enrollment token) */
	OM_MSG_TABLE = 63,  /* M->C: rows of text cells for listings */
	/* modules and jobs (issue 4), omctl <-> master */
	OM_MSG_JOB_CANCEL = 64,   /* C->M: by_id */
	OM_MSG_MODULES_LIST = 65, /* C->M: reply MODULES (every module) */
	OM_MSG_MODULE_SHOW = 66,  /* C->M: name; reply MODULES with that one module */
	OM_MSG_HOST_SHOW = 67,    /* C->M: name; reply TABLE (field, value) with facts */
	/* job history (issue 5), omctl <-> master: only of the hosts the caller may see */
	OM_MSG_JOB_SHOW = 68,   /* C->M: by_id; reply TABLE, one row: the job, its host counts */
	OM_MSG_JOB_HOSTS = 69,  /* C->M: a page of a job's hosts in one state; reply TABLE */
	OM_MSG_JOBS_LIST = 70,  /* C->M: recent jobs, newest first; reply TABLE (as JOB_SHOW) */
	OM_MSG_JOB_OUTPUT = 71, /* C->M: a page of stored output; reply EVENTS (done: the last) */
	OM_MSG_TYPE_MAX_ = 71
};

/* Worker key states (DESIGN.md: key acceptance workflow). */
enum om_key_state {
	OM_KEY_PENDING = 0,
	OM_KEY_ACCEPTED = 1,
	OM_KEY_REJECTED = 2,
	OM_KEY_REVOKED = 3,
	OM_KEY_COUNT_
};
const char *om_key_state_name(int state); /* "pending", ...; "unknown" */
int om_key_state_parse(const char *name);  /* -1 when unknown */

/* JOBS_LIST state filter. */
enum om_job_filter { OM_JOBS_ANY = 0, OM_JOBS_RUNNING = 1, OM_JOBS_DONE = 2 };
#define OM_MAX_JOB_ROWS 1000 /* rows of one JOB_HOSTS or JOBS_LIST reply */

#define OM_MAX_TABLE_COLUMNS 32
#define OM_MAX_TABLE_CELLS (OM_MAX_TABLE_COLUMNS * OM_MAX_ITEMS)
#define OM_MAX_SECRET 256 /* passwords, tokens */
#define OM_MAX_SCOPES 16

/* Per-host states of a job (DESIGN.md section 4). */
enum om_host_state {
	OM_HS_QUEUED = 0,
	OM_HS_DISPATCHED = 1,
	OM_HS_RUNNING = 2,
	OM_HS_OK = 3,
	OM_HS_FAILED = 4,
	OM_HS_UNREACHABLE = 5,
	OM_HS_TIMEOUT = 6,
	OM_HS_CANCELLED = 7,
	OM_HS_SKIPPED = 8,
	OM_HS_LOST = 9,
	OM_HS_COUNT_
};
const char *om_host_state_name(int state); /* "ok", ...; "unknown" out of range */
int om_host_state_parse(const char *name); /* -1 when unknown */
bool om_host_state_final(int state);

/* OM_STREAM_FILE carries the bytes of a file fetched from the host (fetch module). */
enum om_stream { OM_STREAM_STDOUT = 1, OM_STREAM_STDERR = 2, OM_STREAM_FILE = 3 };

struct om_host {
	char *name;
	char *addr;
	char *user; /* NULL: the worker's default */
	char *idc;
	uint32_t port; /* 0: 22 */
	char **groups;
	uint32_t ngroups;
};

struct om_kv {
	char *key;
	char *val;
};

struct om_task {
	uint64_t job_id;
	uint64_t task_id;
	char *module;
	struct om_kv *params;
	uint32_t nparams;
	struct om_host *hosts;
	uint32_t nhosts;
	uint32_t timeout_s; /* per host, 0: none */
	uint32_t forks;     /* hosts at once, 0: worker default */
	bool become;        /* run as become_user through sudo -n */
	char *become_user;  /* NULL: root */
	bool check;         /* check mode: report what would change, change nothing */
};

struct om_chunk {
	uint64_t task_id;
	uint32_t host;   /* index into the task's hosts */
	uint32_t stream; /* enum om_stream */
	uint64_t seq;    /* per (task, host), from 0 */
	uint8_t *data;
	uint32_t len;
};

struct om_result {
	uint64_t task_id;
	uint32_t host;  /* index into the task's hosts */
	uint32_t state; /* enum om_host_state, final */
	int32_t exit_code;
	char *reason; /* NULL or text for a person */
	uint64_t duration_ms;
	bool changed; /* the module changed something on the host */
	char *data;   /* NULL or the module's structured result, a JSON object as text */
	char *note;   /* NULL or an event for the audit log (a host key accepted) */
};

enum om_event_kind { OM_EV_OUTPUT = 1, OM_EV_STATE = 2, OM_EV_JOB_DONE = 3 };

struct om_event {
	uint64_t id;   /* per-job sequence: the cursor */
	uint32_t kind; /* enum om_event_kind */
	char *host;
	uint32_t stream;
	uint8_t *data;
	uint32_t len;
	uint32_t state;
	int32_t exit_code;
	char *reason;
	uint64_t duration_ms;
	bool changed;
	char *result; /* structured result (JSON text) with a STATE event */
};

/* One module of a catalog: schema is a JSON array of parameter objects
 * {"name", "type", "required", "default", "description", "choices",
 * "free_form", "secret"} (om/params.h parses and writes it). */
struct om_module_info {
	char *name;
	char *version;
	char *kind; /* "c" or "script" */
	char *description;
	char *schema;
	bool idempotent; /* OM_PLUGIN_IDEMPOTENT: lost hosts run again elsewhere */
};

struct om_worker_info {
	char *name;
	char *idc;
	char *fingerprint;
	bool connected;
	int64_t last_seen_ms; /* wall clock */
	uint32_t running;     /* tasks */
};

struct om_msg {
	enum om_msg_type type;
	union {
		struct { /* HELLO */
			char *name, *idc, *secret;
			uint32_t version, capacity;
		} hello;
		struct { /* WELCOME */
			uint64_t worker_id;
			uint32_t heartbeat_ms;
		} welcome;
		struct { /* HEARTBEAT */
			uint32_t running, capacity;
			uint64_t *tasks; /* tasks it holds: running, or results not yet acked */
			uint32_t ntasks;
		} heartbeat;
		struct { /* POLL */
			uint32_t wait_ms;
			bool busy; /* no free task slot: answer only with CANCEL (or NOTASK) */
		} poll;
		struct { /* CANCEL */
			uint64_t *tasks;
			uint32_t ntasks;
		} cancel;
		struct { /* MODULES */
			struct om_module_info *modules;
			uint32_t nmodules;
		} modules;
		struct { /* MODULE_SHOW, HOST_SHOW */
			char *name;
		} by_name;
		struct om_task task; /* TASK */
		struct {             /* REPORT */
			struct om_chunk *chunks;
			uint32_t nchunks;
			struct om_result *results;
			uint32_t nresults;
		} report;
		struct { /* ACK */
			uint32_t nchunks, nresults;
		} ack;
		struct { /* AUTH: a token, or a user name and password */
			char *token;	/* optional */
			char *user;	/* optional */
			char *password; /* optional, with user */
			uint32_t version;
		} auth;
		struct { /* SUBMIT */
			char *selector, *module;
			struct om_kv *params;
			uint32_t nparams;
			uint32_t timeout_s, forks;
			uint32_t batch;     /* hosts per wave, 0: all at once */
			bool batch_pct;     /* batch is a percentage of the hosts */
			uint32_t max_fail;  /* percent of failed hosts that stops later waves */
			bool has_max_fail;  /* max_fail applies */
			bool retry_lost;    /* hosts of a worker that died are run again elsewhere */
			bool become;
			char *become_user;
			bool check;
		} submit;
		struct { /* SUBMITTED */
			uint64_t job_id;
			uint32_t nhosts;
		} submitted;
		struct { /* FOLLOW */
			uint64_t job_id, cursor;
			uint32_t wait_ms;
			bool files; /* include stream 3 events (fetched file bytes) */
		} follow;
		struct { /* EVENTS */
			uint64_t job_id, cursor;
			bool done;
			struct om_event *events;
			uint32_t nevents;
		} events;
		struct { /* HOSTS_LIST */
			char *selector;
		} hosts_list;
		struct { /* HOSTS, HOSTS_ADD */
			struct om_host *hosts;
			uint32_t nhosts;
		} hosts;
		struct { /* DONE */
			uint64_t count;
			char *text;
		} done;
		struct { /* WORKERS */
			struct om_worker_info *workers;
			uint32_t nworkers;
		} workers;
		struct { /* ERROR */
			int32_t code; /* OM_E* */
			char *text;
			/* optional: the request field at fault, named as the REST API
			 * names it ("selector", "params.cmd", "options.timeout",
			 * "password"); NULL when none or unknown */
			char *field;
		} error;
		struct { /* KEY_SET */
			uint64_t id;
			uint32_t state;	   /* OM_KEY_ACCEPTED, _REJECTED or _REVOKED */
			char *fingerprint; /* optional: accept only if it matches */
		} key_set;
		struct { /* ENROLL_CREATE */
			char *idc;
			uint64_t ttl_s;
		} enroll;
		struct { /* USER_ADD, USER_PASSWD (name, password), USER_DISABLE (name, flag) */
			char *name;
			char *role;	/* USER_ADD: "admin", "operator", "viewer" */
			char *password; /* USER_ADD, USER_PASSWD */
			bool flag;	/* USER_DISABLE: true disables, false enables */
			char **idcs;	/* operator scope; empty: every IDC */
			uint32_t nidcs;
			char **groups; /* operator scope; empty: every group */
			uint32_t ngroups;
			char **modules; /* allowed modules; empty: all */
			uint32_t nmodules;
		} user;
		struct { /* TOKEN_CREATE */
			char *name;
			char *user;	/* optional: admins may create for another user */
			char **scopes;	/* "read", "run", "admin" */
			uint32_t nscopes;
			uint64_t ttl_s; /* 0: the master's default */
		} token;
		struct { /* TOKEN_REVOKE, JOB_CANCEL, JOB_SHOW */
			uint64_t id;
		} by_id;
		struct { /* AUDIT_LIST */
			int64_t since_ms; /* wall clock; 0: from the start */
			uint64_t after_id;
			uint32_t limit;
			uint64_t before_id; /* rows with a smaller id; 0: no bound */
			bool desc;          /* newest first (a master before it ignores it) */
		} audit;
		struct { /* SECRET */
			uint64_t id;
			char *secret;
			int64_t expires_ms;
		} secret;
		struct { /* JOB_HOSTS */
			uint64_t job_id;
			uint32_t state; /* enum om_host_state: the page holds hosts in this state */
			char *after;    /* optional: hosts named after this one (byte order) */
			uint32_t limit; /* 1..OM_MAX_JOB_ROWS; 0: OM_MAX_JOB_ROWS */
		} job_hosts;
		struct { /* JOBS_LIST */
			uint32_t state; /* enum om_job_filter */
			char *user;     /* optional: jobs this user submitted */
			uint64_t since_s; /* jobs created in the last since_s seconds; 0: any */
			uint32_t limit;   /* 1..OM_MAX_JOB_ROWS; 0: 50 */
		} jobs_list;
		struct { /* JOB_OUTPUT */
			uint64_t job_id;
			uint64_t cursor; /* events with a greater id */
			char *host;      /* optional: this host's output only */
		} job_output;
		struct { /* TABLE: ncells is a multiple of ncolumns, row-major */
			char **columns;
			uint32_t ncolumns;
			char **cells; /* NULL cells allowed */
			uint32_t ncells;
		} table;
	} u;
};

/* Appends the encoding of m to b; OM_EINVAL for an unknown type. */
int om_msg_encode(const struct om_msg *m, struct om_buf *b);
/*
 * Decodes exactly one message filling all of data..data+n (trailing bytes are
 * an error).  On failure *m is released and zeroed.  Caller releases *m.
 */
int om_msg_decode(const uint8_t *data, size_t n, struct om_msg *m);
void om_msg_release(struct om_msg *m);

void om_host_release(struct om_host *h);
void om_hosts_free(struct om_host *hosts, size_t n);
void om_events_free(struct om_event *ev, size_t n);
void om_workers_free(struct om_worker_info *w, size_t n);
void om_modules_free(struct om_module_info *m, size_t n);
void om_kvs_free(struct om_kv *kv, size_t n);
/* Deep copy; dst is overwritten.  Caller releases dst. */
int om_host_copy(struct om_host *dst, const struct om_host *src);

/* Validates a name (host, IDC, group, worker): 1..255 of [A-Za-z0-9._-], not starting with '-' or
 * '.'. */
bool om_name_valid(const char *s);

#endif
