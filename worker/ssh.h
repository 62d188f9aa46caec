/*
 * The worker's SSH engine: runs one command on many hosts at once from one
 * thread, over non-blocking libssh2 sessions driven by epoll.  No thread or
 * process per host.
 *
 * Each host is a state machine: connect -> handshake -> host-key check ->
 * auth -> open channel -> exec -> stream output -> exit status -> close.  A
 * host key that is unknown to known_hosts or does not match fails that host
 * before any credential is sent.  Only ed25519 user keys are used (libssh2
 * 1.10 signs RSA with SHA-1, which OpenSSH refuses).
 *
 * Threading: om_ssh_run blocks its calling thread until every host is done;
 * callbacks run on that thread.  Several om_ssh_run calls may run at once
 * in different threads (libssh2_init must have been called once in main).
 */
#ifndef OM_WORKER_SSH_H
#define OM_WORKER_SSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct om_ssh_target {
	const char *name; /* inventory name, also tried in known_hosts */
	const char *addr; /* IP or DNS name to connect to */
	const char *user;
	uint16_t port;
};

struct om_ssh_opts {
	const char *privkey;        /* ed25519 private key file (OpenSSH format) */
	const char *known_hosts;    /* OpenSSH known_hosts file */
	unsigned concurrency;       /* hosts in flight at once, >= 1 */
	unsigned timeout_s;         /* whole run per host (connect to exit); 0: none */
	unsigned connect_timeout_s; /* connect + handshake + auth; 0: 10 */
};

struct om_ssh_cb {
	/* Output as it arrives; stream 1 stdout, 2 stderr.  data is only valid during the call. */
	void (*output)(void *arg, size_t host, int stream, const uint8_t *data, size_t n);
	/*
	 * Exactly once per host.  state: OM_HS_OK (exit 0), OM_HS_FAILED (other
	 * exit status, signal, host-key or auth failure), OM_HS_UNREACHABLE
	 * (connect or handshake failed), OM_HS_TIMEOUT (deadline),
	 * OM_HS_CANCELLED (cancel flag).  reason is a sentence for a person
	 * (NULL for ok); exit_code is -1 when there is none.
	 */
	void (*done)(void *arg, size_t host, int state, int exit_code, const char *reason,
	             uint64_t duration_ms);
	void *arg;
};

/*
 * Runs command (a shell string for the remote user's shell) on every host.
 * cancel, when not NULL, is polled: non-zero stops every host still running
 * (they end OM_HS_CANCELLED).  Returns 0 when every host got its done
 * callback, a negative OM_E* code only for a setup failure (then no callback
 * was made).
 */
int om_ssh_run(const struct om_ssh_opts *opts, const struct om_ssh_target *hosts, size_t n,
               const char *command, const volatile int *cancel, const struct om_ssh_cb *cb);

#endif
