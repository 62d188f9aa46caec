/*
 * The worker's SSH engine: one thread runs one epoll loop that drives every
 * SSH session of every task, non-blocking (libssh2_session_set_blocking(0)).
 * No thread or process per host.
 *
 * Sessions are pooled per (host name, address, port, user; the key is the
 * worker's one): after a host's module
 * finishes, its authenticated session stays open (keepalive, idle expiry) and
 * the next task to that host reuses it without a new login.  Each host of a
 * task is a state machine: wait for a slot -> connect (with retry and
 * backoff for transient failures) -> handshake -> host-key check -> auth ->
 * module (its exec, upload and download operations) -> finish.  Every step
 * has a deadline.
 *
 * Host keys: strict (unknown or mismatched key fails the host before any
 * credential is sent) or accept-new (an unknown key is appended to
 * known_hosts and reported; a mismatch still fails).  The host-key
 * algorithm is pinned to the types known_hosts holds for the host.
 *
 * Cancel and timeouts stop the remote command: every command announces the
 * process group sshd made for it, and the engine kills that group over a
 * second channel (TERM, then KILL after a grace period).
 *
 * Threading: om_engine_open starts the loop thread; submit, cancel, pause
 * and stats may be called from any thread.  Callbacks (cb) and plugin entry
 * points run on the loop thread and must not block.
 */
#ifndef OM_WORKER_ENGINE_H
#define OM_WORKER_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "om/msg.h"
#include "plugins.h"
#include "sim.h"

enum om_hostkey_policy { OM_HK_STRICT = 0, OM_HK_ACCEPT_NEW = 1 };

struct om_engine_opts {
	const char *privkey;     /* ed25519 private key file (OpenSSH format) */
	const char *known_hosts; /* OpenSSH known_hosts file */
	enum om_hostkey_policy hostkey_policy;
	unsigned max_sessions;      /* SSH sessions open at once, busy or pooled; 0: 1000 */
	unsigned idle_s;            /* a pooled session unused this long is closed; 0: 60 */
	unsigned keepalive_s;       /* keepalive on pooled sessions; 0: 15 */
	unsigned connect_timeout_s; /* per step: connect, handshake, auth; 0: 10 */
	unsigned connect_retries;   /* more tries after a transient connect failure (0: none) */
	unsigned retry_backoff_ms;  /* before the first retry, doubled each time; 0: 250 */
	unsigned kill_grace_ms;     /* cancel: TERM, then KILL after this; 0: 2000 */
	bool no_pool;               /* close every session after its host (benchmarks) */
	/*
	 * Streamed output (stdout and stderr together, cb->output) per host per
	 * task; 0: OM_ENGINE_MAX_OUTPUT.  At the cap the host gets one marker
	 * line on the stream that crossed it, the rest of its output is read
	 * and dropped (the command runs on) and its reason says so.  Captured
	 * output and fetched files (OM_STREAM_FILE) do not count.
	 */
	uint64_t max_output;
	/*
	 * Benchmarks and tests only: hosts simulated in-process (sim.h), no SSH
	 * at all; privkey and known_hosts may then be NULL.
	 */
	struct om_sim sim;
};

#define OM_ENGINE_MAX_OUTPUT ((uint64_t)64 << 20)

struct om_ssh_target {
	const char *name; /* inventory name, also tried in known_hosts */
	const char *addr; /* IP or DNS name to connect to */
	const char *user;
	uint16_t port; /* 0: 22 */
};

/* How one host ended. */
struct om_engine_outcome {
	int state;          /* OM_HS_OK, _FAILED, _UNREACHABLE, _TIMEOUT or _CANCELLED */
	int exit_code;      /* -1 when there is none */
	const char *reason; /* NULL for ok (unless output was truncated); a sentence for a person */
	bool changed;
	const char *result; /* NULL or the module's JSON result */
	const char *note;   /* NULL or an event to audit (a host key accepted) */
	uint64_t duration_ms;
};

struct om_engine_cb {
	/* Output as it arrives: OM_STREAM_STDOUT, _STDERR or _FILE; data valid during the call. */
	void (*output)(void *arg, size_t host, int stream, const uint8_t *data, size_t n);
	/* Exactly once per host.  Everything in o is valid during the call only. */
	void (*done)(void *arg, size_t host, const struct om_engine_outcome *o);
	/* After the last done: the engine holds nothing of the task any more. */
	void (*finished)(void *arg);
	void *arg;
};

struct om_engine_task {
	uint64_t id; /* for om_engine_cancel */
	const struct om_ssh_target *hosts;
	size_t n;
	const struct om_module *module;
	const struct om_kv *params;
	size_t nparams;
	unsigned forks;     /* hosts at once for this task; 0: 100 */
	unsigned timeout_s; /* per host, from its start; 0: none */
	bool become;
	const char *become_user; /* NULL: root */
	bool check;
};

struct om_engine_stats {
	uint64_t logins;       /* successful authentications since open */
	uint64_t reused;       /* hosts served by a pooled session */
	unsigned sessions;     /* open now (busy, pooled or connecting) */
	unsigned idle;         /* pooled now */
	unsigned tasks;        /* running now */
	unsigned hosts_active; /* hosts past their wait for a slot */
};

struct om_engine;

/* The host-API table for om_plugins_load; valid for the life of the process. */
const struct om_host_api *om_engine_host_api(void);

/*
 * Starts the loop thread.  opts' strings must outlive the engine.  Returns
 * (unless opts->sim.on) OM_ENOTFOUND / OM_EPERM for a missing or unreadable key or known_hosts
 * file, OM_EINVAL for a known_hosts file libssh2 cannot parse.  Caller
 * closes *out with om_engine_close.
 */
int om_engine_open(const struct om_engine_opts *opts, struct om_engine **out);

/*
 * Queues a task.  Everything t points to (hosts, module, params, strings)
 * must stay valid until cb->finished.  On success every host gets exactly
 * one cb->done and then cb->finished runs once; on failure (OM_EINVAL,
 * OM_ENOMEM, OM_ECLOSED when closing) no callback is ever made.
 */
int om_engine_submit(struct om_engine *e, const struct om_engine_task *t,
                     const struct om_engine_cb *cb);

/* Stops every host of task id: queued ones end cancelled, running ones are killed. */
void om_engine_cancel(struct om_engine *e, uint64_t id);

/* Output backpressure: while paused, no session reads command output. */
void om_engine_pause(struct om_engine *e, bool paused);

void om_engine_stats(struct om_engine *e, struct om_engine_stats *out);

/*
 * Cancels every task (their callbacks run, remote commands are killed),
 * closes every session and joins the loop thread.  e stays valid: later
 * submits fail with OM_ECLOSED.  Safe to call more than once, from any
 * thread but the loop's.
 */
void om_engine_shutdown(struct om_engine *e);

/* om_engine_shutdown, then frees e. */
void om_engine_close(struct om_engine *e);

#endif
