/*
 * om-worker: dials the master, proves its key (Noise IK), long-polls for
 * tasks and runs them over SSH on the hosts of its IDC, streaming output and
 * results back.  Results stay in the outbox until the master acknowledges
 * that they are durable.
 *
 * Threads: main (poll loop), heartbeat (also announces the module
 * catalog), sender (drains the outbox), watcher (shutdown), and the SSH
 * engine's loop, which drives every host of every task.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libssh2.h>

#include "om/base.h"
#include "om/chan.h"
#include "om/msg.h"
#include "om/rpc.h"
#include "engine.h"
#include "om/params.h"
#include "plugins.h"

#define POLL_WAIT_MS     2000
#define CALL_TIMEOUT_MS  15000
#define HEARTBEAT_MS     5000
#define OUTBOX_MAX_BYTES (64u << 20) /* beyond this the engine pauses output: backpressure */
#define REPORT_MAX_BYTES (4u << 20)
#define MAX_CAPACITY     1000         /* tasks at once, the --capacity bound */
#define HELD_MAX         OM_MAX_ITEMS /* tasks running or with unacknowledged results */
#define STOP_FLUSH_MS    4000         /* a stop: kill remote commands, deliver what is left */

struct config {
	const char *name, *idc, *master_url, *master_key_hex, *key_path;
	const char *secret_path, *ssh_key, *known_hosts, *ssh_user, *plugin_dir, *modules_dir;
	uint32_t forks, capacity, max_sessions, idle_s, connect_retries;
	enum om_hostkey_policy hostkey_policy;
	bool no_pool;
	enum om_log_level log_level;
};

/* A task the worker holds (see worker.held); stays put while it has items. */
struct held {
	uint64_t id;    /* 0: free slot */
	uint32_t items; /* in the outbox */
	bool running;
};

struct outitem {
	struct held *held; /* its task's slot: counted there while it is queued */
	bool is_result;
	struct om_chunk chunk;   /* owned data */
	struct om_result result; /* owned reason */
	size_t bytes;
	struct outitem *next;
};

struct worker {
	struct config cfg;
	struct om_rpc_client *rpc;
	struct om_plugins *plugins;
	struct om_engine *engine;
	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t cond;
	unsigned running;
	struct outitem *head, *tail;
	size_t outbox_bytes;
	size_t outbox_items;
	int heartbeat_ms; /* the master's, from WELCOME */
	bool paused;      /* the engine's output is paused (outbox full) */
	bool announced;   /* the master has our module catalog */
	/*
	 * The tasks this worker holds, for heartbeats: running, or finished
	 * with results not yet acknowledged.  Full means busy (no new task).
	 */
	struct held held[HELD_MAX];
	unsigned nheld;
};

static volatile sig_atomic_t stopping;

static void
on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* Sleeps ms, waking early when the worker is stopping. */
static void
nap(int ms)
{
	int64_t until = om_now_ms() + ms;

	while (!stopping && om_now_ms() < until)
		usleep(20 * 1000);
}

/* ---- tasks held (w->lock held) ---- */

/* The slot for a new task: its own if it still has results queued, else a free one. */
static struct held *
held_take(struct worker *w, uint64_t id)
{
	struct held *free_slot = NULL;

	for (size_t i = 0; i < HELD_MAX; i++) {
		if (w->held[i].id == id)
			return &w->held[i];
		if (w->held[i].id == 0 && free_slot == NULL)
			free_slot = &w->held[i];
	}
	if (free_slot != NULL) {
		free_slot->id = id;
		free_slot->items = 0;
		w->nheld++;
	}
	return free_slot;
}

static void
held_drop_if_done(struct worker *w, struct held *h)
{
	if (h != NULL && h->items == 0 && !h->running) {
		h->id = 0;
		w->nheld--;
	}
}

/* ---- outbox ---- */

/*
 * Never blocks: callers are the engine's loop thread.  Beyond the bound the
 * engine stops reading command output (the SSH windows fill and the remote
 * commands wait) until the sender has drained half of it.
 */
static void
outbox_push(struct worker *w, struct outitem *it)
{
	bool pause;

	pthread_mutex_lock(&w->lock);
	it->next = NULL;
	if (w->tail)
		w->tail->next = it;
	else
		w->head = it;
	w->tail = it;
	w->outbox_bytes += it->bytes;
	w->outbox_items++;
	if (it->held != NULL)
		it->held->items++;
	pause = w->outbox_bytes > OUTBOX_MAX_BYTES && !w->paused;
	if (pause)
		w->paused = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	if (pause)
		om_engine_pause(w->engine, true);
}

static void
outitem_free(struct outitem *it)
{
	om_free(it->chunk.data);
	om_free(it->result.reason);
	om_free(it->result.data);
	om_free(it->result.note);
	om_free(it);
}

/* Sends the oldest items as one REPORT; removes them only once acknowledged. */
static int
outbox_flush_once(struct worker *w)
{
	struct om_msg req = {.type = OM_MSG_REPORT}, rep;
	struct om_chunk *chunks = NULL;
	struct om_result *results = NULL;
	struct outitem *it;
	uint32_t nc = 0, nr = 0, count = 0, i;
	size_t bytes = 0;
	bool resume = false;
	int rv;

	pthread_mutex_lock(&w->lock);
	for (it = w->head; it && count < OM_MAX_ITEMS && bytes < REPORT_MAX_BYTES; it = it->next)
		count++, bytes += it->bytes;
	pthread_mutex_unlock(&w->lock);
	if (count == 0)
		return 0;
	chunks = om_calloc(count, sizeof(*chunks));
	results = om_calloc(count, sizeof(*results));
	if (chunks == NULL || results == NULL) {
		om_free(chunks);
		om_free(results);
		return OM_ENOMEM;
	}
	/* Only this thread removes items, so the first count stay put while unlocked. */
	pthread_mutex_lock(&w->lock);
	for (it = w->head, i = 0; i < count; it = it->next, i++) {
		if (it->is_result)
			results[nr++] = it->result;
		else
			chunks[nc++] = it->chunk;
	}
	pthread_mutex_unlock(&w->lock);
	req.u.report.chunks = chunks;
	req.u.report.nchunks = nc;
	req.u.report.results = results;
	req.u.report.nresults = nr;
	rv = om_rpc_call(w->rpc, &req, &rep, CALL_TIMEOUT_MS);
	om_free(chunks);
	om_free(results);
	if (rv != 0)
		return rv;
	if (rep.type != OM_MSG_ACK) {
		om_warn("master refused a report: %s",
		        rep.type == OM_MSG_ERROR && rep.u.error.text ? rep.u.error.text : "?");
		om_msg_release(&rep);
		return OM_EPROTO;
	}
	om_msg_release(&rep);
	pthread_mutex_lock(&w->lock);
	for (i = 0; i < count; i++) {
		it = w->head;
		w->head = it->next;
		w->outbox_bytes -= it->bytes;
		w->outbox_items--;
		if (it->held != NULL && it->held->items > 0) {
			it->held->items--;
			held_drop_if_done(w, it->held);
		}
		outitem_free(it);
	}
	if (w->head == NULL)
		w->tail = NULL;
	if (w->paused && w->outbox_bytes < OUTBOX_MAX_BYTES / 2) {
		w->paused = false;
		resume = true;
	}
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	if (resume)
		om_engine_pause(w->engine, false);
	return 0;
}

static void *
sender_main(void *arg)
{
	struct worker *w = arg;
	int64_t stop_deadline = 0, hard_deadline = 0;
	int backoff = 200;

	for (;;) {
		int rv;
		pthread_mutex_lock(&w->lock);
		while (w->head == NULL && !stopping) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&w->cond, &w->lock, &ts);
		}
		bool empty = w->head == NULL;
		bool tasks_left = w->running > 0;
		pthread_mutex_unlock(&w->lock);
		if (stopping) {
			int64_t now = om_now_ms();

			/* Cancelled results come last: the budget starts after them. */
			if (hard_deadline == 0)
				hard_deadline = now + 2 * STOP_FLUSH_MS;
			if (tasks_left)
				stop_deadline = 0;
			else if (stop_deadline == 0)
				stop_deadline = now + STOP_FLUSH_MS;
			if ((empty && !tasks_left) || now > hard_deadline ||
			    (stop_deadline != 0 && now > stop_deadline))
				break;
			if (empty) {
				usleep(50 * 1000);
				continue;
			}
		}
		if ((rv = outbox_flush_once(w)) == OM_ECLOSED && stopping)
			break;
		if (rv != 0) {
			om_warn("cannot deliver results to the master (%s), retrying in %d ms",
			        om_strerror(rv), backoff);
			nap(backoff);
			backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
		} else {
			backoff = 200;
		}
	}
	if (w->head != NULL)
		om_warn("exiting with %zu undelivered results", w->outbox_items);
	return NULL;
}

/* ---- tasks ---- */

struct task_run {
	struct worker *w;
	struct om_task task; /* owned: every pointer below points into it */
	struct om_ssh_target *targets;
	uint64_t *seq;     /* next chunk seq per host */
	struct held *held; /* its slot in worker.held (guarded by worker.lock) */
};

/* Loop thread: output of one host, cut into protocol-sized chunks. */
static void
task_output(void *arg, size_t host, int stream, const uint8_t *data, size_t n)
{
	struct task_run *t = arg;

	while (n > 0) {
		size_t take = n > OM_MAX_CHUNK ? OM_MAX_CHUNK : n;
		struct outitem *it = om_calloc(1, sizeof(*it));
		if (it == NULL || (it->chunk.data = om_malloc(take)) == NULL) {
			om_free(it);
			om_err("out of memory: output of task %llu lost",
			       (unsigned long long)t->task.task_id);
			return;
		}
		it->held = t->held;
		memcpy(it->chunk.data, data, take);
		it->chunk.len = (uint32_t)take;
		it->chunk.task_id = t->task.task_id;
		it->chunk.host = (uint32_t)host;
		it->chunk.stream = (uint32_t)stream;
		it->chunk.seq = t->seq[host]++;
		it->bytes = take + 64;
		outbox_push(t->w, it);
		data += take;
		n -= take;
	}
}

static char *
text_dup(const char *s, size_t max)
{
	return s != NULL ? om_strndup(s, strnlen(s, max - 1)) : NULL;
}

static void
task_result(struct task_run *t, size_t host, const struct om_engine_outcome *o)
{
	struct outitem *it = om_calloc(1, sizeof(*it));

	if (it == NULL) {
		om_err("out of memory: result of task %llu lost",
		       (unsigned long long)t->task.task_id);
		return;
	}
	it->held = t->held;
	it->is_result = true;
	it->result.task_id = t->task.task_id;
	it->result.host = (uint32_t)host;
	it->result.state = (uint32_t)o->state;
	it->result.exit_code = o->exit_code;
	it->result.duration_ms = o->duration_ms;
	it->result.changed = o->changed;
	it->result.reason = text_dup(o->reason, OM_MAX_TEXT);
	it->result.data = o->result != NULL && strlen(o->result) <= OM_MAX_RESULT
	                          ? om_strdup(o->result)
	                          : NULL;
	it->result.note = text_dup(o->note, OM_MAX_TEXT);
	it->bytes = 128 + (o->reason ? strlen(o->reason) : 0) + (o->result ? strlen(o->result) : 0);
	outbox_push(t->w, it);
}

static void
task_done(void *arg, size_t host, const struct om_engine_outcome *o)
{
	task_result(arg, host, o);
}

static void
task_forget(struct worker *w, struct held *h)
{
	pthread_mutex_lock(&w->lock);
	w->running--;
	if (h != NULL) {
		h->running = false;
		held_drop_if_done(w, h);
	}
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void
task_run_free(struct task_run *t)
{
	om_msg_release(&(struct om_msg){.type = OM_MSG_TASK, .u.task = t->task});
	om_free(t->targets);
	om_free(t->seq);
	om_free(t);
}

/* Loop thread: the engine holds nothing of the task any more. */
static void
task_finished(void *arg)
{
	struct task_run *t = arg;

	om_info("task %llu finished", (unsigned long long)t->task.task_id);
	task_forget(t->w, t->held);
	task_run_free(t);
}

/* Every host fails with one reason, without the engine (the task cannot start). */
static void
task_fail_all(struct task_run *t, const char *reason)
{
	struct om_engine_outcome o = {.state = OM_HS_FAILED, .exit_code = -1, .reason = reason};
	uint32_t i;

	for (i = 0; i < t->task.nhosts; i++)
		task_result(t, i, &o);
}

static void
task_start(struct worker *w, struct om_msg *m)
{
	struct task_run *t = om_calloc(1, sizeof(*t));
	const struct om_module *mod;
	struct om_engine_task et;
	struct om_engine_cb cb = {task_output, task_done, task_finished, NULL};
	char err[512];
	uint32_t i;
	int rv;

	if (t == NULL || (t->seq = om_calloc(m->u.task.nhosts + 1, sizeof(*t->seq))) == NULL ||
	    (t->targets = om_calloc(m->u.task.nhosts + 1, sizeof(*t->targets))) == NULL) {
		if (t != NULL)
			om_free(t->seq);
		om_free(t);
		om_msg_release(m);
		om_err("out of memory: task dropped");
		return;
	}
	t->w = w;
	t->task = m->u.task; /* takes ownership */
	memset(m, 0, sizeof(*m));
	pthread_mutex_lock(&w->lock);
	w->running++;
	/* A slot is free: the poll said busy otherwise (see main). */
	if ((t->held = held_take(w, t->task.task_id)) != NULL)
		t->held->running = true;
	pthread_mutex_unlock(&w->lock);
	om_info("task %llu of job %llu: module '%s' on %u hosts%s%s",
	        (unsigned long long)t->task.task_id, (unsigned long long)t->task.job_id,
	        t->task.module, t->task.nhosts, t->task.become ? ", become" : "",
	        t->task.check ? ", check mode" : "");

	if ((mod = om_plugins_find(w->plugins, t->task.module)) == NULL) {
		snprintf(err, sizeof(err), "module '%s' is not installed on worker '%s'",
		         t->task.module, w->cfg.name);
		goto fail;
	}
	/* Parameters are data: checked again here, whatever the master let through. */
	if (om_params_validate(mod->desc->params, mod->desc->nparams, t->task.params,
	                       t->task.nparams, err, sizeof(err)) != 0)
		goto fail;
	for (i = 0; i < t->task.nhosts; i++) {
		const struct om_host *h = &t->task.hosts[i];
		t->targets[i].name = h->name;
		t->targets[i].addr = h->addr ? h->addr : h->name;
		t->targets[i].user = h->user ? h->user : w->cfg.ssh_user;
		t->targets[i].port = (uint16_t)(h->port ? h->port : 22);
	}
	memset(&et, 0, sizeof(et));
	et.id = t->task.task_id;
	et.hosts = t->targets;
	et.n = t->task.nhosts;
	et.module = mod;
	et.params = t->task.params;
	et.nparams = t->task.nparams;
	et.forks = t->task.forks ? t->task.forks : w->cfg.forks;
	et.timeout_s = t->task.timeout_s;
	et.become = t->task.become;
	et.become_user = t->task.become_user;
	et.check = t->task.check;
	cb.arg = t;
	if ((rv = om_engine_submit(w->engine, &et, &cb)) == 0)
		return;
	snprintf(err, sizeof(err), "worker '%s' cannot run the task: %s", w->cfg.name,
	         om_strerror(rv));
fail:
	om_warn("task %llu: %s", (unsigned long long)t->task.task_id, err);
	task_fail_all(t, err);
	task_forget(w, t->held);
	task_run_free(t);
}

/* The module catalog, once per process: the master keeps it in PostgreSQL. */
static int
announce_modules(struct worker *w)
{
	struct om_msg req = {.type = OM_MSG_MODULES}, rep;
	int rv;

	if ((rv = om_plugins_catalog(w->plugins, &req.u.modules.modules,
	                             &req.u.modules.nmodules)) != 0)
		return rv;
	rv = om_rpc_call(w->rpc, &req, &rep, CALL_TIMEOUT_MS);
	om_modules_free(req.u.modules.modules, req.u.modules.nmodules);
	if (rv != 0)
		return rv;
	if (rep.type == OM_MSG_ERROR) {
		om_warn("master refused the module catalog: %s",
		        rep.u.error.text ? rep.u.error.text : "?");
		rv = OM_EPROTO;
	}
	om_msg_release(&rep);
	return rv;
}

/* ---- heartbeat ---- */

static void *
heartbeat_main(void *arg)
{
	struct worker *w = arg;

	static uint64_t ids[HELD_MAX];
	uint32_t nids;

	while (!stopping) {
		struct om_msg req = {.type = OM_MSG_HEARTBEAT}, rep;
		int64_t next = om_now_ms() + w->heartbeat_ms;
		int rv;

		if (!w->announced) {
			if ((rv = announce_modules(w)) == 0)
				w->announced = true;
			else
				om_warn("cannot send the module catalog: %s", om_strerror(rv));
		}

		/*
		 * The tasks this worker holds: running, or with results not yet
		 * acknowledged.  The master counts a delivered task missing here as
		 * lost (it never arrived, or this is a new process).
		 */
		pthread_mutex_lock(&w->lock);
		req.u.heartbeat.running = w->running;
		nids = 0;
		for (size_t i = 0; i < HELD_MAX; i++)
			if (w->held[i].id != 0)
				ids[nids++] = w->held[i].id;
		pthread_mutex_unlock(&w->lock);
		req.u.heartbeat.capacity = w->cfg.capacity;
		req.u.heartbeat.tasks = ids;
		req.u.heartbeat.ntasks = nids > OM_MAX_ITEMS ? OM_MAX_ITEMS : nids;
		if (om_rpc_call(w->rpc, &req, &rep, CALL_TIMEOUT_MS) == 0)
			om_msg_release(&rep);
		while (!stopping && om_now_ms() < next)
			usleep(100 * 1000);
	}
	return NULL;
}

/*
 * Shutdown: tasks see the stop flag (their cancel pointer) and report
 * cancelled hosts; give the sender up to 5 s to deliver what is left, then
 * abort every call still waiting on the master, which may be gone already.
 */
static void *
watcher_main(void *arg)
{
	struct worker *w = arg;
	int64_t deadline;
	bool idle;

	while (!stopping)
		usleep(50 * 1000);
	/* Running hosts are killed on their hosts and reported cancelled. */
	om_engine_shutdown(w->engine);
	/* Then their results get STOP_FLUSH_MS to reach the master. */
	deadline = om_now_ms() + STOP_FLUSH_MS;
	do {
		usleep(50 * 1000);
		pthread_mutex_lock(&w->lock);
		idle = w->running == 0 && w->head == NULL;
		pthread_cond_broadcast(&w->cond);
		pthread_mutex_unlock(&w->lock);
	} while (!idle && om_now_ms() < deadline);
	om_rpc_client_shutdown(w->rpc);
	return NULL;
}

/* ---- main ---- */

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: om-worker --idc NAME --master URL --master-key HEX --key FILE\n"
	        "                 --ssh-key FILE --known-hosts FILE [--enroll-token-file FILE]\n"
	        "                 [--name NAME] [--ssh-user USER] [--plugins DIR] [--modules DIR]\n"
	        "                 [--forks N] [--capacity TASKS] [--max-sessions N]\n"
	        "                 [--session-idle SECONDS] [--no-session-pool]\n"
	        "                 [--host-key-policy strict|accept-new] [--connect-retries N]\n"
	        "                 [--log-level error|warn|info|debug]\n");
}

static int
parse_args(int argc, char **argv, struct config *c)
{
	static const struct option opts[] = {
	        {"name", required_argument, NULL, 'n'},
	        {"idc", required_argument, NULL, 'i'},
	        {"master", required_argument, NULL, 'm'},
	        {"master-key", required_argument, NULL, 'K'},
	        {"key", required_argument, NULL, 'k'},
	        {"enroll-token-file", required_argument, NULL, 's'},
	        {"ssh-key", required_argument, NULL, 'S'},
	        {"known-hosts", required_argument, NULL, 'H'},
	        {"ssh-user", required_argument, NULL, 'u'},
	        {"plugins", required_argument, NULL, 'p'},
	        {"forks", required_argument, NULL, 'f'},
	        {"capacity", required_argument, NULL, 'c'},
	        {"modules", required_argument, NULL, 'M'},
	        {"max-sessions", required_argument, NULL, 'x'},
	        {"session-idle", required_argument, NULL, 'I'},
	        {"no-session-pool", no_argument, NULL, 'N'},
	        {"host-key-policy", required_argument, NULL, 'P'},
	        {"connect-retries", required_argument, NULL, 'r'},
	        {"log-level", required_argument, NULL, 'l'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	static char host[256];
	int ch;

	memset(c, 0, sizeof(*c));
	c->forks = 100;
	c->capacity = 16;
	c->ssh_user = "root";
	c->plugin_dir = "build/plugins";
	c->max_sessions = 1000;
	c->idle_s = 60;
	c->connect_retries = 2;
	c->log_level = OM_LOG_INFO;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			c->name = optarg;
			break;
		case 'i':
			c->idc = optarg;
			break;
		case 'm':
			c->master_url = optarg;
			break;
		case 'K':
			c->master_key_hex = optarg;
			break;
		case 'k':
			c->key_path = optarg;
			break;
		case 's':
			c->secret_path = optarg;
			break;
		case 'S':
			c->ssh_key = optarg;
			break;
		case 'H':
			c->known_hosts = optarg;
			break;
		case 'u':
			c->ssh_user = optarg;
			break;
		case 'p':
			c->plugin_dir = optarg;
			break;
		case 'f':
			if (om_parse_u32(optarg, 1, 10000, &c->forks) != 0)
				return fprintf(stderr, "om-worker: --forks wants 1..10000\n"), -1;
			break;
		case 'c':
			if (om_parse_u32(optarg, 1, MAX_CAPACITY, &c->capacity) != 0)
				return fprintf(stderr, "om-worker: --capacity wants 1..1000\n"), -1;
			break;
		case 'M':
			c->modules_dir = optarg;
			break;
		case 'x':
			if (om_parse_u32(optarg, 1, 100000, &c->max_sessions) != 0)
				return fprintf(stderr,
				               "om-worker: --max-sessions wants 1..100000\n"),
				       -1;
			break;
		case 'I':
			if (om_parse_u32(optarg, 1, 86400, &c->idle_s) != 0)
				return fprintf(stderr,
				               "om-worker: --session-idle wants 1..86400\n"),
				       -1;
			break;
		case 'N':
			c->no_pool = true;
			break;
		case 'P':
			if (strcmp(optarg, "strict") == 0)
				c->hostkey_policy = OM_HK_STRICT;
			else if (strcmp(optarg, "accept-new") == 0)
				c->hostkey_policy = OM_HK_ACCEPT_NEW;
			else
				return fprintf(stderr, "om-worker: --host-key-policy is strict or "
				                       "accept-new\n"),
				       -1;
			break;
		case 'r':
			if (om_parse_u32(optarg, 0, 10, &c->connect_retries) != 0)
				return fprintf(stderr,
				               "om-worker: --connect-retries wants 0..10\n"),
				       -1;
			break;
		case 'l':
			if (om_log_level_parse(optarg, &c->log_level) != 0)
				return fprintf(stderr, "om-worker: unknown log level '%s'\n",
				               optarg),
				       -1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (c->name == NULL && gethostname(host, sizeof(host) - 1) == 0)
		c->name = host;
	if (!c->idc || !c->master_url || !c->master_key_hex || !c->key_path || !c->ssh_key ||
	    !c->known_hosts) {
		usage(stderr);
		return -1;
	}
	if (!om_name_valid(c->name) || !om_name_valid(c->idc)) {
		fprintf(stderr, "om-worker: invalid worker or IDC name\n");
		return -1;
	}
	return 0;
}

static int
read_secret(const char *path, char **out)
{
	uint8_t *data;
	size_t len;
	int rv;

	if ((rv = om_read_file(path, 4096, &data, &len)) != 0)
		return rv;
	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
		data[--len] = '\0';
	if (len == 0 || memchr(data, '\0', len) != NULL) {
		om_free(data);
		return OM_EINVAL;
	}
	*out = (char *)data;
	return 0;
}

int
main(int argc, char **argv)
{
	struct worker w;
	struct om_keypair key;
	struct om_rpc_client_opts ro;
	struct om_msg hello = {.type = OM_MSG_HELLO}, welcome;
	char *secret = NULL;
	pthread_t sender, heart, watcher;
	struct sigaction sa;
	bool created = false, sender_started = false;
	unsigned running;
	char fp[65];
	int rv, backoff = 200;

	memset(&w, 0, sizeof(w));
	if (parse_args(argc, argv, &w.cfg) != 0)
		return 2;
	om_log_setup("om-worker", w.cfg.log_level);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	memset(&ro, 0, sizeof(ro));
	if (om_hex_decode(w.cfg.master_key_hex, ro.master_pub, OM_NOISE_KEYLEN) != 0) {
		om_err("--master-key must be 64 hex digits");
		return 2;
	}
	if ((rv = om_key_load_or_create(w.cfg.key_path, &key, &created)) != 0) {
		om_err("cannot load key '%s': %s", w.cfg.key_path, om_strerror(rv));
		return 1;
	}
	if (created)
		om_info("generated a new worker key in '%s'", w.cfg.key_path);
	/* Only the first connection of a new key needs the one-time token. */
	if (w.cfg.secret_path != NULL && (rv = read_secret(w.cfg.secret_path, &secret)) != 0) {
		om_err("cannot read enrollment token '%s': %s", w.cfg.secret_path, om_strerror(rv));
		return 1;
	}
	om_key_fingerprint(key.pub, fp);
	om_info("worker '%s' in IDC '%s', key fingerprint %s", w.cfg.name, w.cfg.idc, fp);
	if (libssh2_init(0) != 0) {
		om_err("libssh2_init failed");
		return 1;
	}
	om_plugins_load(w.cfg.plugin_dir, w.cfg.modules_dir, om_engine_host_api(), &w.plugins);
	if (om_plugins_count(w.plugins) == 0)
		om_warn("no modules loaded from '%s'", w.cfg.plugin_dir);
	{
		struct om_engine_opts eo;

		memset(&eo, 0, sizeof(eo));
		eo.privkey = w.cfg.ssh_key;
		eo.known_hosts = w.cfg.known_hosts;
		eo.hostkey_policy = w.cfg.hostkey_policy;
		eo.max_sessions = w.cfg.max_sessions;
		eo.idle_s = w.cfg.idle_s;
		eo.connect_retries = w.cfg.connect_retries;
		eo.no_pool = w.cfg.no_pool;
		if ((rv = om_engine_open(&eo, &w.engine)) != 0) {
			om_err("cannot start the SSH engine (key '%s', known_hosts '%s'): %s",
			       w.cfg.ssh_key, w.cfg.known_hosts, om_strerror(rv));
			return 1;
		}
	}

	hello.u.hello.name = (char *)w.cfg.name;
	hello.u.hello.idc = (char *)w.cfg.idc;
	hello.u.hello.secret = secret;
	hello.u.hello.version = OM_PROTO_VERSION;
	hello.u.hello.capacity = w.cfg.capacity;
	ro.url = w.cfg.master_url;
	ro.pattern = OM_NOISE_IK;
	ro.local = &key;
	ro.hello = &hello;
	ro.connect_timeout_ms = 5000;
	rv = om_rpc_client_open(&w.rpc, &ro);
	om_wipe(&key, sizeof(key));
	if (secret != NULL) {
		om_wipe(secret, strlen(secret));
		om_free(secret);
	}
	if (rv != 0) {
		om_err("cannot dial '%s': %s", w.cfg.master_url, om_strerror(rv));
		return 1;
	}
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	w.heartbeat_ms = HEARTBEAT_MS;
	if (pthread_create(&watcher, NULL, watcher_main, &w) != 0) {
		om_err("cannot start a thread");
		return 1;
	}

	while (!stopping) {
		rv = om_rpc_connect(w.rpc, &welcome);
		if (rv == 0) {
			om_info("connected to master %s as worker id %llu", w.cfg.master_url,
			        (unsigned long long)welcome.u.welcome.worker_id);
			/* Beat as often as the master expects, within sane bounds. */
			w.heartbeat_ms = (int)welcome.u.welcome.heartbeat_ms;
			if (w.heartbeat_ms < 100 || w.heartbeat_ms > HEARTBEAT_MS)
				w.heartbeat_ms = HEARTBEAT_MS;
			om_msg_release(&welcome);
			break;
		}
		if (rv == OM_EAUTH && welcome.u.error.text != NULL &&
		    strstr(welcome.u.error.text, "pending") != NULL) {
			/* Waiting for an administrator: say so once in a while, not every try. */
			static int64_t last_hint;
			if (om_now_ms() - last_hint > 60000) {
				om_warn("key pending acceptance: an administrator can run 'omctl "
				        "keys "
				        "accept ID --fingerprint %s' (see 'omctl keys list')",
				        fp);
				last_hint = om_now_ms();
			}
			om_msg_release(&welcome);
		} else if (rv == OM_EAUTH) {
			om_err("master refused this worker: %s",
			       welcome.u.error.text ? welcome.u.error.text : "no reason given");
			om_msg_release(&welcome);
		} else {
			om_warn("master %s not reachable: %s", w.cfg.master_url, om_strerror(rv));
		}
		nap(backoff);
		backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
	}
	/* Before the first poll: a job right after we connect must find our modules. */
	if (!stopping && (rv = announce_modules(&w)) == 0)
		w.announced = true;
	else if (!stopping)
		om_warn("cannot send the module catalog (%s); retrying with the heartbeats",
		        om_strerror(rv));
	if (!stopping) {
		if (pthread_create(&sender, NULL, sender_main, &w) != 0 ||
		    pthread_create(&heart, NULL, heartbeat_main, &w) != 0) {
			om_err("cannot start worker threads");
			_exit(1);
		}
		sender_started = true;
	}

	while (!stopping) {
		struct om_msg req = {.type = OM_MSG_POLL}, rep;

		/* Busy workers poll too: a cancel must reach a worker at capacity. */
		pthread_mutex_lock(&w.lock);
		/* Also busy while the held table is nearly full: every task stays listed. */
		req.u.poll.busy = w.running >= w.cfg.capacity || w.nheld >= HELD_MAX - 1;
		pthread_mutex_unlock(&w.lock);
		req.u.poll.wait_ms = POLL_WAIT_MS;
		rv = om_rpc_call(w.rpc, &req, &rep, POLL_WAIT_MS + CALL_TIMEOUT_MS);
		if (rv == OM_EAUTH) {
			/* Refused at a new handshake (key revoked, rejected...): learn why. */
			struct om_msg ans;
			if (om_rpc_connect(w.rpc, &ans) == OM_EAUTH)
				om_err("master refused this worker: %s",
				       ans.u.error.text ? ans.u.error.text : "no reason given");
			om_msg_release(&ans);
		} else if (rv != 0) {
			om_warn("poll failed: %s", om_strerror(rv));
		}
		if (rv != 0) {
			nap(backoff);
			backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
			continue;
		}
		backoff = 200;
		if (rep.type == OM_MSG_TASK) {
			task_start(&w, &rep);
		} else if (rep.type == OM_MSG_CANCEL) {
			for (uint32_t i = 0; i < rep.u.cancel.ntasks; i++) {
				om_info("cancelling task %llu",
				        (unsigned long long)rep.u.cancel.tasks[i]);
				om_engine_cancel(w.engine, rep.u.cancel.tasks[i]);
			}
		} else if (rep.type == OM_MSG_ERROR) {
			om_warn("master: %s", rep.u.error.text ? rep.u.error.text : "error");
			nap(1000);
		}
		om_msg_release(&rep);
	}
	om_info("stopping");
	pthread_join(watcher, NULL);
	if (sender_started)
		pthread_join(sender, NULL);
	if (sender_started)
		pthread_join(heart, NULL);
	pthread_mutex_lock(&w.lock);
	running = w.running;
	pthread_mutex_unlock(&w.lock);
	if (running > 0) {
		/* Only when the engine never started; its callbacks would use w. */
		om_warn("exiting with %u tasks still running", running);
		_exit(0);
	}
	om_rpc_client_close(w.rpc);
	om_engine_close(w.engine);
	om_plugins_free(w.plugins);
	while (w.head) {
		struct outitem *it = w.head;
		w.head = it->next;
		outitem_free(it);
	}
	libssh2_exit();
	return 0;
}
