/*
 * om-worker: dials the master, proves its key (Noise IK), long-polls for
 * tasks and runs them over SSH on the hosts of its IDC, streaming output and
 * results back.  Results stay in the outbox until the master acknowledges
 * that they are durable; past a memory bound, and whenever the master is
 * away for long, they wait on disk in the spool (spool.h), which also
 * carries them over a restart.
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
#include "spool.h"

#define POLL_WAIT_MS     2000
#define CALL_TIMEOUT_MS  15000
#define HEARTBEAT_MS     5000
#define OUTBOX_MAX_BYTES (16u << 20) /* in memory; beyond it results spill to the spool */
#define REPORT_MAX_BYTES (4u << 20)
#define MAX_CAPACITY     1000         /* tasks at once, the --capacity bound */
#define HELD_MAX         OM_MAX_ITEMS /* tasks running or with unacknowledged results */
#define STOP_FLUSH_MS    4000         /* a stop: kill remote commands, deliver what is left */

#define SPOOL_MAX_BYTES ((uint64_t)1 << 30) /* --spool-max default: beyond it output pauses */
#define SPOOL_SYNC_MS   1000 /* spooled results are fsynced within this, in batches */
#define SPOOL_RETRY_MS  5000 /* after a spool write error: memory only for this long */

/* Long options without a short form. */
enum { OPT_SPOOL = 0x5301, OPT_SPOOL_MAX, OPT_SIM };

struct config {
	const char *name, *idc, *master_key_hex, *key_path;
	const char *masters[OM_RPC_MAX_URLS]; /* each --master: a URL or a comma-separated list */
	size_t nmasters;
	const char *secret_path, *ssh_key, *known_hosts, *ssh_user, *plugin_dir, *modules_dir;
	uint32_t forks, capacity, max_sessions, idle_s, connect_retries;
	uint64_t max_output; /* streamed output per host per task (--max-output) */
	enum om_hostkey_policy hostkey_policy;
	bool no_pool;
	enum om_log_level log_level;
	const char *spool_dir; /* --spool; NULL: KEYFILE.spool */
	uint64_t spool_max;    /* --spool-max */
	struct om_sim sim;     /* --sim: simulated hosts, benchmarks and tests only */
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
	/*
	 * The outbox (see "outbox" below).  qlock guards these fields and is
	 * taken before lock, never after it; spool I/O happens under qlock only.
	 */
	pthread_mutex_t qlock;
	struct om_spool *spool;
	struct om_buf enc;           /* a record being encoded */
	struct outitem *head, *tail; /* in memory, behind every spooled record */
	size_t outbox_bytes;         /* of head..tail */
	struct outitem *inflight;    /* items in memory of the REPORT being sent */
	uint32_t inflight_spooled;   /* its first ones, also the spool's first records */
	int64_t spool_retry_ms;      /* after a spool write error: memory only until then */
	bool spool_full;             /* the spool refused an item for want of room */
	bool spilling;               /* logged: new items go to the spool */
	bool paused;                 /* the engine's output is paused */
	pthread_mutex_t lock;        /* guards everything below */
	pthread_cond_t cond;
	unsigned running;
	size_t outbox_items; /* in memory or in flight (written under qlock too) */
	uint64_t spooled;    /* records in the spool (written under qlock too) */
	int heartbeat_ms;    /* the master's, from WELCOME */
	bool announced;      /* the master has our module catalog */
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
 * The outbox, oldest first: the spool's records, then the items in memory
 * (head..tail).  While the spool is empty, items stay in memory up to
 * OUTBOX_MAX_BYTES; past that everything in memory moves to the spool (a
 * spill), and every later item follows it there until the sender has
 * drained the spool: the order stays FIFO, and what waits for a master
 * that is away is on disk.  Items stay in memory behind the spool only
 * when it cannot take them (full, or a write failed); the engine's output
 * is paused until they can move.
 *
 * The one exception to that order is the REPORT in flight: the sender takes
 * its items out of memory while it waits for the master.  A spill writes
 * them first (they are the oldest), so the spool's first inflight_spooled
 * records are copies of them, consumed with their acknowledgement.
 */

/* Recently used held slots by task id: a batch of records comes in runs per task. */
struct held_cache {
	struct held *slot[64];
};

/* lock held: the slot of task id, or NULL. */
static struct held *
held_find(struct worker *w, uint64_t id, struct held_cache *c)
{
	struct held **p = &c->slot[id % 64];

	if (id == 0)
		return NULL;
	if (*p != NULL && (*p)->id == id)
		return *p;
	for (size_t i = 0; i < HELD_MAX; i++)
		if (w->held[i].id == id)
			return *p = &w->held[i];
	return NULL;
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

static bool
spool_usable(const struct worker *w)
{
	return w->spool != NULL && om_now_ms() >= w->spool_retry_ms;
}

/* qlock held: publishes the spool's record count to the other threads. */
static void
spool_publish(struct worker *w)
{
	struct om_spool_stats st = {0};

	if (w->spool != NULL)
		om_spool_stats(w->spool, &st);
	pthread_mutex_lock(&w->lock);
	w->spooled = st.records;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* qlock held: a spool write failed; items stay in memory (the engine pauses) for a while. */
static void
spool_failed(struct worker *w, int rv)
{
	const char *why = om_spool_errstr(w->spool);

	if (rv == OM_EBUSY) {
		if (!w->spool_full)
			om_warn("spool '%s' is full (--spool-max %llu bytes): output paused until "
			        "the master takes results",
			        om_spool_dir(w->spool), (unsigned long long)w->cfg.spool_max);
		w->spool_full = true;
		return;
	}
	om_err("cannot write to the spool '%s': %s%s%s; results stay in memory and output is "
	       "paused, next try in %d s",
	       om_spool_dir(w->spool), om_strerror(rv), why[0] ? ": " : "", why,
	       SPOOL_RETRY_MS / 1000);
	w->spool_retry_ms = om_now_ms() + SPOOL_RETRY_MS;
}

/* qlock held: appends it as one record, a REPORT with that one item; the item stays ours. */
static int
spool_put(struct worker *w, const struct outitem *it)
{
	struct om_msg m = {.type = OM_MSG_REPORT};
	int rv;

	if (it->is_result) {
		m.u.report.results = (struct om_result *)&it->result;
		m.u.report.nresults = 1;
	} else {
		m.u.report.chunks = (struct om_chunk *)&it->chunk;
		m.u.report.nchunks = 1;
	}
	om_buf_reset(&w->enc);
	if ((rv = om_msg_encode(&m, &w->enc)) == 0)
		rv = om_spool_append(w->spool, w->enc.data, w->enc.len);
	return rv;
}

/*
 * qlock held: appends items in memory to the spool, oldest first: those of
 * the REPORT in flight not spooled yet, then head..tail.  Stops at the first
 * failure; what is left stays in memory, behind everything spooled.
 */
static void
spool_move(struct worker *w)
{
	struct outitem *it;
	size_t moved = 0;
	uint32_t i;
	int rv = 0;

	for (it = w->inflight, i = 0; it != NULL && rv == 0; it = it->next, i++)
		if (i >= w->inflight_spooled && (rv = spool_put(w, it)) == 0)
			w->inflight_spooled++;
	while (rv == 0 && (it = w->head) != NULL && (rv = spool_put(w, it)) == 0) {
		w->head = it->next;
		if (w->head == NULL)
			w->tail = NULL;
		w->outbox_bytes -= it->bytes;
		moved++;
		outitem_free(it); /* the record counts for its task now */
	}
	if (moved > 0) {
		pthread_mutex_lock(&w->lock);
		w->outbox_items -= moved;
		pthread_mutex_unlock(&w->lock);
	}
	spool_publish(w);
	if (rv != 0) {
		spool_failed(w, rv);
	} else if (w->spool_full) {
		om_info("spool '%s' has room again", om_spool_dir(w->spool));
		w->spool_full = false;
	}
}

/*
 * qlock held: moves memory to the spool when it is behind the spool, or,
 * when may_spill, over its bound; then pauses the engine's output exactly
 * while memory holds items it should not (over the bound, or behind a spool
 * that cannot take them).  may_spill is false once the master takes
 * results again: a backlog in memory is then sent, not written to disk.
 */
static void
outbox_balance(struct worker *w, bool may_spill)
{
	size_t limit = w->paused ? OUTBOX_MAX_BYTES / 2 : OUTBOX_MAX_BYTES;
	bool pause;

	if (spool_usable(w) && w->head != NULL &&
	    (w->spooled > 0 || (may_spill && w->outbox_bytes > limit))) {
		if (!w->spilling)
			om_info("outbox over %u MiB: spilling results to the spool '%s' until the "
			        "master takes them",
			        OUTBOX_MAX_BYTES >> 20, om_spool_dir(w->spool));
		w->spilling = true;
		spool_move(w);
	}
	pause = (w->head != NULL && w->spooled > 0) || w->outbox_bytes > limit;
	if (pause != w->paused) {
		w->paused = pause;
		om_engine_pause(w->engine, pause);
	}
	if (w->spilling && w->spooled == 0 && w->outbox_bytes <= OUTBOX_MAX_BYTES / 2) {
		om_info("spool '%s' drained: results are kept in memory again",
		        om_spool_dir(w->spool));
		w->spilling = false;
		w->spool_full = false;
	}
}

/*
 * Never blocks for long: callers are the engine's loop thread.  Beyond the
 * memory bound items go to the spool (a write, fsynced later in batches by
 * the watcher); only when the spool cannot take them does the engine stop
 * reading command output (the SSH windows fill and the remote commands
 * wait) until it can.
 */
static void
outbox_push(struct worker *w, struct outitem *it)
{
	pthread_mutex_lock(&w->qlock);
	it->next = NULL;
	if (w->tail)
		w->tail->next = it;
	else
		w->head = it;
	w->tail = it;
	w->outbox_bytes += it->bytes;
	pthread_mutex_lock(&w->lock);
	w->outbox_items++;
	if (it->held != NULL)
		it->held->items++;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	outbox_balance(w, true);
	pthread_mutex_unlock(&w->qlock);
}

/* A REPORT of the oldest records of the spool, decoded. */
struct spool_batch {
	struct om_msg *msgs; /* OM_MAX_ITEMS; type NONE for a record that is no report item */
	uint32_t n, nchunks, nresults;
};

/* om_spool_fn: one record into the batch. */
static int
batch_add(void *arg, const uint8_t *data, size_t len)
{
	struct spool_batch *b = arg;
	struct om_msg *m = &b->msgs[b->n];
	int rv = om_msg_decode(data, len, m);

	if (rv == OM_ENOMEM)
		return rv;
	b->n++;
	if (rv == 0 && m->type == OM_MSG_REPORT &&
	    m->u.report.nchunks + m->u.report.nresults == 1) {
		b->nchunks += m->u.report.nchunks;
		b->nresults += m->u.report.nresults;
		return 0;
	}
	/* Checksummed, so written by a worker that encoded something else: skip it. */
	om_warn("spool: skipping a record that is not one report item (%s)",
	        rv != 0 ? om_strerror(rv) : "wrong message");
	if (rv == 0)
		om_msg_release(m);
	memset(m, 0, sizeof(*m));
	return 0;
}

static uint64_t
msg_task_id(const struct om_msg *m)
{
	if (m->type != OM_MSG_REPORT)
		return 0;
	if (m->u.report.nchunks > 0)
		return m->u.report.chunks[0].task_id;
	return m->u.report.nresults > 0 ? m->u.report.results[0].task_id : 0;
}

/* Sends the oldest records of the spool as one REPORT; consumes them once acknowledged. */
static int
spool_flush_once(struct worker *w)
{
	struct om_msg req = {.type = OM_MSG_REPORT}, rep;
	struct spool_batch b = {0};
	struct held_cache hc;
	int n, rv = 0;

	if ((b.msgs = om_calloc(OM_MAX_ITEMS, sizeof(*b.msgs))) == NULL)
		return OM_ENOMEM;
	pthread_mutex_lock(&w->qlock);
	n = om_spool_peek(w->spool, OM_MAX_ITEMS, REPORT_MAX_BYTES, batch_add, &b);
	if (n < 0)
		om_err("cannot read the spool '%s': %s%s%s", om_spool_dir(w->spool), om_strerror(n),
		       om_spool_errstr(w->spool)[0] ? ": " : "", om_spool_errstr(w->spool));
	spool_publish(w); /* a peek may find records gone bad */
	pthread_mutex_unlock(&w->qlock);
	if (n <= 0) {
		rv = n;
		goto out;
	}
	if (b.nchunks + b.nresults > 0) {
		struct om_chunk *chunks = om_calloc(b.nchunks + 1, sizeof(*chunks));
		struct om_result *results = om_calloc(b.nresults + 1, sizeof(*results));

		if (chunks == NULL || results == NULL) {
			om_free(chunks);
			om_free(results);
			rv = OM_ENOMEM;
			goto out;
		}
		for (uint32_t i = 0; i < b.n; i++) {
			if (b.msgs[i].type != OM_MSG_REPORT)
				continue;
			if (b.msgs[i].u.report.nchunks)
				chunks[req.u.report.nchunks++] = b.msgs[i].u.report.chunks[0];
			else
				results[req.u.report.nresults++] = b.msgs[i].u.report.results[0];
		}
		req.u.report.chunks = chunks;
		req.u.report.results = results;
		rv = om_rpc_call(w->rpc, &req, &rep, CALL_TIMEOUT_MS);
		om_free(chunks);
		om_free(results);
		if (rv != 0)
			goto out;
		if (rep.type != OM_MSG_ACK) {
			om_warn("master refused a report: %s",
			        rep.type == OM_MSG_ERROR && rep.u.error.text ? rep.u.error.text
			                                                     : "?");
			om_msg_release(&rep);
			rv = OM_EPROTO;
			goto out;
		}
		om_msg_release(&rep);
	}
	memset(&hc, 0, sizeof(hc));
	pthread_mutex_lock(&w->qlock);
	if ((rv = om_spool_consume(w->spool, (size_t)n)) != 0)
		om_warn("cannot record delivered results in the spool '%s' (they may be sent "
		        "again after a restart): %s%s%s",
		        om_spool_dir(w->spool), om_strerror(rv),
		        om_spool_errstr(w->spool)[0] ? ": " : "", om_spool_errstr(w->spool));
	rv = 0; /* consumed in memory all the same */
	pthread_mutex_lock(&w->lock);
	for (uint32_t i = 0; i < b.n; i++) {
		struct held *h = held_find(w, msg_task_id(&b.msgs[i]), &hc);
		if (h != NULL && h->items > 0) {
			h->items--;
			held_drop_if_done(w, h);
		}
	}
	pthread_mutex_unlock(&w->lock);
	spool_publish(w);
	outbox_balance(w, false);
	pthread_mutex_unlock(&w->qlock);
out:
	for (uint32_t i = 0; i < b.n; i++)
		if (b.msgs[i].type != OM_MSG_NONE)
			om_msg_release(&b.msgs[i]);
	om_free(b.msgs);
	return rv;
}

/*
 * Sends the oldest items as one REPORT: from the spool while it holds
 * records (they are older), else from memory.  Items leave only once
 * acknowledged.  away: the last try failed (memory over its bound may
 * spill).
 */
static int
outbox_flush_once(struct worker *w, bool away)
{
	struct om_msg req = {.type = OM_MSG_REPORT}, rep;
	struct om_chunk *chunks = NULL;
	struct om_result *results = NULL;
	struct outitem *it, *last = NULL, *back = NULL, *back_last = NULL;
	uint32_t nc = 0, nr = 0, count = 0, i, spooled;
	size_t bytes = 0, back_bytes = 0, freed = 0;
	int rv;

	pthread_mutex_lock(&w->qlock);
	outbox_balance(w, away); /* after a write error, the spool may take memory again */
	if (w->spooled > 0) {
		pthread_mutex_unlock(&w->qlock);
		return spool_flush_once(w);
	}
	for (it = w->head; it && count < OM_MAX_ITEMS && bytes < REPORT_MAX_BYTES; it = it->next)
		count++, bytes += it->bytes, last = it;
	if (count == 0) {
		pthread_mutex_unlock(&w->qlock);
		return 0;
	}
	chunks = om_calloc(count, sizeof(*chunks));
	results = om_calloc(count, sizeof(*results));
	if (chunks == NULL || results == NULL) {
		pthread_mutex_unlock(&w->qlock);
		om_free(chunks);
		om_free(results);
		return OM_ENOMEM;
	}
	/* Out of memory's list while in flight: a spill meanwhile spools them first. */
	w->inflight = w->head;
	w->head = last->next;
	if (w->head == NULL)
		w->tail = NULL;
	last->next = NULL;
	w->outbox_bytes -= bytes;
	w->inflight_spooled = 0;
	pthread_mutex_unlock(&w->qlock);

	/* Only this thread changes the inflight list; a spill only reads it. */
	for (it = w->inflight; it != NULL; it = it->next) {
		if (it->is_result)
			results[nr++] = it->result;
		else
			chunks[nc++] = it->chunk;
	}
	req.u.report.chunks = chunks;
	req.u.report.nchunks = nc;
	req.u.report.results = results;
	req.u.report.nresults = nr;
	rv = om_rpc_call(w->rpc, &req, &rep, CALL_TIMEOUT_MS);
	om_free(chunks);
	om_free(results);
	if (rv == 0) {
		if (rep.type != OM_MSG_ACK) {
			om_warn("master refused a report: %s",
			        rep.type == OM_MSG_ERROR && rep.u.error.text ? rep.u.error.text
			                                                     : "?");
			rv = OM_EPROTO;
		}
		om_msg_release(&rep);
	}

	pthread_mutex_lock(&w->qlock);
	spooled = w->inflight_spooled;
	if (rv == 0 && spooled > 0) {
		/* Their copies are the spool's first records: acknowledged with them. */
		int crv = om_spool_consume(w->spool, spooled);
		if (crv != 0)
			om_warn("cannot record delivered results in the spool '%s' (they may be "
			        "sent again after a restart): %s",
			        om_spool_dir(w->spool), om_strerror(crv));
	}
	pthread_mutex_lock(&w->lock);
	for (it = w->inflight, i = 0; it != NULL; i++) {
		struct outitem *next = it->next;

		if (rv == 0) {
			if (it->held != NULL && it->held->items > 0) {
				it->held->items--;
				held_drop_if_done(w, it->held);
			}
			outitem_free(it);
			freed++;
		} else if (i < spooled) {
			outitem_free(it); /* in the spool now, which counts it for its task */
			freed++;
		} else {
			/* Not acknowledged: back in front of memory (still behind the spool). */
			if (back_last != NULL)
				back_last->next = it;
			else
				back = it;
			back_last = it;
			back_bytes += it->bytes;
		}
		it = next;
	}
	w->outbox_items -= freed;
	pthread_mutex_unlock(&w->lock);
	if (back != NULL) {
		back_last->next = w->head;
		if (w->head == NULL)
			w->tail = back_last;
		w->head = back;
		w->outbox_bytes += back_bytes;
	}
	w->inflight = NULL;
	w->inflight_spooled = 0;
	spool_publish(w);
	outbox_balance(w, false);
	pthread_mutex_unlock(&w->qlock);
	return rv;
}

static void *
sender_main(void *arg)
{
	struct worker *w = arg;
	int64_t stop_deadline = 0, hard_deadline = 0;
	int backoff = 200;
	bool away = false; /* the last try failed */

	for (;;) {
		int rv;
		pthread_mutex_lock(&w->lock);
		while (w->outbox_items == 0 && w->spooled == 0 && !stopping) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&w->cond, &w->lock, &ts);
		}
		bool empty = w->outbox_items == 0 && w->spooled == 0;
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
		if ((rv = outbox_flush_once(w, away)) == OM_ECLOSED && stopping)
			break;
		away = rv != 0;
		if (rv != 0) {
			om_warn("cannot deliver results to the master (%s), retrying in %d ms",
			        om_strerror(rv), backoff);
			nap(backoff);
			backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
		} else {
			backoff = 200;
		}
	}
	/* What is left goes to the spool at the end of main (spool_stop). */
	return NULL;
}

/* ---- spool: start, periodic sync, stop ---- */

/* Replay context: the tasks of the records an earlier process left. */
struct replay {
	struct worker *w;
	struct held_cache hc;
	uint64_t unheld; /* records whose task found no held slot */
};

/* om_spool_fn: holds the task of one record, so heartbeats list it until it is delivered. */
static int
replay_note(void *arg, const uint8_t *data, size_t len)
{
	struct replay *r = arg;
	struct om_msg m;
	struct held *h;
	uint64_t id;

	if (om_msg_decode(data, len, &m) != 0)
		return 0; /* skipped when sent */
	id = msg_task_id(&m);
	om_msg_release(&m);
	if (id == 0)
		return 0;
	if ((h = held_find(r->w, id, &r->hc)) == NULL && (h = held_take(r->w, id)) != NULL)
		r->hc.slot[id % 64] = h;
	if (h == NULL)
		r->unheld++;
	else
		h->items++;
	return 0;
}

/*
 * Opens the spool (--spool, else KEYFILE.spool next to the key file: one
 * per worker key, also when several workers keep their keys in one
 * directory) before any task runs.  Records an earlier process left are delivered first, once
 * connected; their tasks are held, so heartbeats keep listing them and the
 * master does not count them lost while their results are on their way.
 * Single-threaded: no other thread uses w yet.
 */
static int
spool_start(struct worker *w)
{
	static char dflt[4096];
	const char *dir = w->cfg.spool_dir;
	struct om_spool_stats st;
	struct replay r;
	int rv;

	pthread_mutex_init(&w->qlock, NULL);
	om_buf_init(&w->enc, OM_MAX_FRAME);
	if (dir == NULL) {
		if ((size_t)snprintf(dflt, sizeof(dflt), "%s.spool", w->cfg.key_path) >=
		    sizeof(dflt)) {
			om_err("key path '%s' is too long for a spool next to it: use --spool",
			       w->cfg.key_path);
			return -1;
		}
		dir = dflt;
	}
	if ((rv = om_spool_open(dir, w->cfg.spool_max, 0, &w->spool)) != 0) {
		om_err("cannot open the spool '%s': %s (see --spool)", dir, om_strerror(rv));
		return -1;
	}
	om_spool_stats(w->spool, &st);
	if (st.corrupt > 0 || st.truncated > 0)
		om_warn("spool '%s': %llu corrupt records skipped, %llu bytes of torn tail cut",
		        dir, (unsigned long long)st.corrupt, (unsigned long long)st.truncated);
	if (st.records == 0) {
		om_info("spool '%s': no results waiting (up to %llu bytes)", dir,
		        (unsigned long long)w->cfg.spool_max);
		return 0;
	}
	memset(&r, 0, sizeof(r));
	r.w = w;
	if ((rv = om_spool_peek(w->spool, SIZE_MAX, SIZE_MAX, replay_note, &r)) < 0)
		om_err("cannot read the spool '%s': %s", dir, om_strerror(rv));
	om_spool_stats(w->spool, &st);
	w->spooled = st.records;
	w->spilling = st.records > 0;
	om_info("spool '%s': %llu results (%llu bytes) from an earlier run, delivered first "
	        "once connected; %u tasks held meanwhile",
	        dir, (unsigned long long)st.records, (unsigned long long)st.bytes, w->nheld);
	if (r.unheld > 0)
		om_warn("spool '%s': %llu results belong to more tasks than the worker can list; "
		        "the master may count those tasks lost",
		        dir, (unsigned long long)r.unheld);
	return 0;
}

/* Watcher: what was spooled reaches the disk within SPOOL_SYNC_MS, one fsync per batch. */
static void
spool_tick(struct worker *w)
{
	static int64_t last;
	struct om_spool_stats st;
	int64_t now = om_now_ms();
	int rv;

	if (now - last < SPOOL_SYNC_MS)
		return;
	last = now;
	pthread_mutex_lock(&w->qlock);
	if (w->spool != NULL) {
		om_spool_stats(w->spool, &st);
		if (st.unsynced > 0 && (rv = om_spool_sync(w->spool)) != 0) {
			om_err("cannot sync the spool '%s': %s: %s; new results stay in memory",
			       om_spool_dir(w->spool), om_strerror(rv), om_spool_errstr(w->spool));
			w->spool_retry_ms = now + SPOOL_RETRY_MS;
		}
	}
	pthread_mutex_unlock(&w->qlock);
}

/*
 * After the sender and the engine: what memory still holds goes to the
 * spool behind its records (the order stays), then the spool is synced and
 * closed; the next start delivers it.
 */
static void
spool_stop(struct worker *w)
{
	struct om_spool_stats st;
	char dir[4096];
	size_t left = 0;
	int rv;

	if (w->spool == NULL)
		return;
	pthread_mutex_lock(&w->qlock);
	snprintf(dir, sizeof(dir), "%s", om_spool_dir(w->spool));
	w->spool_retry_ms = 0; /* a last try, whatever failed before */
	if (w->head != NULL)
		spool_move(w);
	for (struct outitem *it = w->head; it != NULL; it = it->next)
		left++;
	om_spool_stats(w->spool, &st);
	rv = om_spool_close(w->spool);
	w->spool = NULL;
	om_buf_release(&w->enc);
	pthread_mutex_unlock(&w->qlock);
	if (rv != 0)
		om_err("cannot sync the spool '%s': %s: the results in it may be lost in a "
		       "crash",
		       dir, om_strerror(rv));
	if (st.records > 0)
		om_info("%llu results (%llu bytes) wait in the spool '%s' for the next start",
		        (unsigned long long)st.records, (unsigned long long)st.bytes, dir);
	if (left > 0)
		om_err("exiting with %zu undelivered results the spool '%s' could not take", left,
		       dir);
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

	while (!stopping) {
		usleep(50 * 1000);
		spool_tick(w);
	}
	/* Running hosts are killed on their hosts and reported cancelled. */
	om_engine_shutdown(w->engine);
	/* Then their results get STOP_FLUSH_MS to reach the master. */
	deadline = om_now_ms() + STOP_FLUSH_MS;
	do {
		usleep(50 * 1000);
		pthread_mutex_lock(&w->lock);
		idle = w->running == 0 && w->outbox_items == 0 && w->spooled == 0;
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
	        "usage: om-worker --idc NAME --master URL[,URL]... --master-key HEX --key FILE\n"
	        "                 --ssh-key FILE --known-hosts FILE [--enroll-token-file FILE]\n"
	        "                 [--name NAME] [--ssh-user USER] [--plugins DIR] [--modules DIR]\n"
	        "                 [--forks N] [--capacity TASKS] [--max-sessions N]\n"
	        "                 [--session-idle SECONDS] [--no-session-pool]\n"
	        "                 [--host-key-policy strict|accept-new] [--connect-retries N]\n"
	        "                 [--max-output BYTES[K|M|G]] (per host and task; default 64M)\n"
	        "                 [--spool DIR] (default KEYFILE.spool)\n"
	        "                 [--spool-max BYTES[K|M|G]] (default 1G)\n"
	        "                 [--log-level error|warn|info|debug]\n"
	        "                 [--sim LATENCY_MS[:OUTPUT_BYTES[K|M]]]\n"
	        "Several masters (one database): --master A,B or --master A --master B;\n"
	        "the worker moves to the next one when its master stops answering.\n"
	        "--sim is for benchmarks and tests only: no SSH at all; every host connects\n"
	        "at once and every command exits 0 after LATENCY_MS with OUTPUT_BYTES of\n"
	        "made-up output (--ssh-key and --known-hosts are then not needed).\n");
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
	        {"max-output", required_argument, NULL, 'O'},
	        {"spool", required_argument, NULL, OPT_SPOOL},
	        {"spool-max", required_argument, NULL, OPT_SPOOL_MAX},
	        {"sim", required_argument, NULL, OPT_SIM},
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
	c->max_output = OM_ENGINE_MAX_OUTPUT;
	c->spool_max = SPOOL_MAX_BYTES;
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
			if (c->nmasters == OM_RPC_MAX_URLS)
				return fprintf(stderr, "om-worker: more than %d --master\n",
				               OM_RPC_MAX_URLS),
				       -1;
			c->masters[c->nmasters++] = optarg;
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
		case 'O':
			if (om_parse_size(optarg, 1024, (uint64_t)1 << 40, &c->max_output) != 0)
				return fprintf(stderr,
				               "om-worker: --max-output wants 1K..1024G bytes "
				               "(a number with an optional K, M or G)\n"),
				       -1;
			break;
		case OPT_SPOOL:
			c->spool_dir = optarg;
			break;
		case OPT_SPOOL_MAX:
			if (om_parse_size(optarg, 1 << 20, (uint64_t)1 << 40, &c->spool_max) != 0)
				return fprintf(stderr,
				               "om-worker: --spool-max wants 1M..1024G bytes "
				               "(a number with an optional K, M or G)\n"),
				       -1;
			break;
		case OPT_SIM:
			if (om_sim_parse(optarg, &c->sim) != 0)
				return fprintf(stderr, "om-worker: --sim wants LATENCY_MS[:OUTPUT_BYTES] "
				                       "(0..600000 ms, 0..64M bytes)\n"),
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
	if (!c->idc || c->nmasters == 0 || !c->master_key_hex || !c->key_path ||
	    (!c->sim.on && (!c->ssh_key || !c->known_hosts))) {
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

/* New sessions on a master, counted by on_master_session (under the RPC client's lock). */
static unsigned master_sessions;

/*
 * The RPC client's on_connect, after every new session on a master: main
 * logs the first one with the worker id, this every later one (a master
 * restart, or a move to another master).
 */
static void
on_master_session(void *arg, const char *url)
{
	unsigned *n = arg;

	if ((*n)++ > 0)
		om_info("reconnected to master %s", url);
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
	if (spool_start(&w) != 0)
		return 1;
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
		eo.max_output = w.cfg.max_output;
		eo.sim = w.cfg.sim;
		if (eo.sim.on)
			om_warn("--sim: hosts are simulated (%u ms, %zu bytes of output): no SSH",
			        eo.sim.latency_ms, eo.sim.output_bytes);
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
	ro.urls = w.cfg.masters;
	ro.nurls = w.cfg.nmasters;
	ro.on_connect = on_master_session;
	ro.on_connect_arg = &master_sessions;
	ro.pattern = OM_NOISE_IK;
	ro.local = &key;
	ro.hello = &hello;
	/* Also how long a dead master holds us before we try the next one
	 * (nng does not report a refused dial): well inside the master's
	 * liveness window of 3 heartbeats. */
	ro.connect_timeout_ms = 2000;
	rv = om_rpc_client_open(&w.rpc, &ro);
	om_wipe(&key, sizeof(key));
	if (secret != NULL) {
		om_wipe(secret, strlen(secret));
		om_free(secret);
	}
	if (rv != 0) {
		om_err("cannot dial '%s'%s: %s", w.cfg.masters[0],
		       w.cfg.nmasters > 1 ? " (and the other --master)" : "", om_strerror(rv));
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
			om_info("connected to master %s as worker id %llu",
			        om_rpc_client_url(w.rpc),
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
			/* With several, every one was tried: the next try starts at this one. */
			om_warn("master not reachable: %s (next try: %s)", om_strerror(rv),
			        om_rpc_client_url(w.rpc));
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
	spool_stop(&w); /* after the engine: no result can come later */
	om_plugins_free(w.plugins);
	while (w.head) {
		struct outitem *it = w.head;
		w.head = it->next;
		outitem_free(it);
	}
	libssh2_exit();
	return 0;
}
