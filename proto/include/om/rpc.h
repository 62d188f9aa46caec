/*
 * RPC over nng REQ/REP, every frame inside the secure channel (om/chan.h).
 *
 * Client (om-worker, omctl): one REQ socket that dials the master; calls are
 * synchronous with a timeout and may run from several threads at once (one
 * nng context each).  The first call performs the Noise handshake carrying
 * the HELLO or AUTH message; the master's answer (WELCOME, AUTH_OK or ERROR)
 * comes back inside the handshake.  When the master no longer knows the
 * session (it restarted, or the session expired) it answers with a reset
 * frame and the call re-handshakes and retries once: safe, because a reset
 * means the request was not processed.
 *
 * Server (om-master): a REP socket with a pool of contexts.  nng threads
 * only queue raw frames; the owner's thread takes them with
 * om_rpc_server_take and does every decryption, decode and session change,
 * so sessions need no locks.  Every request taken must be finished exactly
 * once with om_rpc_accept, om_rpc_refuse, om_rpc_reply or om_rpc_drop; a
 * request may be held (long-poll) and finished later.
 */
#ifndef OM_RPC_H
#define OM_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "om/chan.h"
#include "om/msg.h"

/* ---- client ---- */

struct om_rpc_client;

struct om_rpc_client_opts {
	const char *url;                     /* tcp://host:port */
	enum om_noise_pattern pattern;       /* IK (worker) or NK (omctl) */
	const struct om_keypair *local;      /* IK: our static key; NK: NULL */
	uint8_t master_pub[OM_NOISE_KEYLEN]; /* the pinned master key */
	const struct om_msg *hello;          /* HELLO or AUTH, copied by open */
	int connect_timeout_ms;              /* handshake round trip */
};

int om_rpc_client_open(struct om_rpc_client **out, const struct om_rpc_client_opts *opts);
/*
 * Aborts every call in progress (they return OM_ECLOSED) and refuses new
 * ones.  Safe from any thread while others are inside om_rpc_call; the
 * client must still be freed with om_rpc_client_close after they returned.
 */
void om_rpc_client_shutdown(struct om_rpc_client *c);
void om_rpc_client_close(struct om_rpc_client *c);

/*
 * Handshakes now if there is no session.  *welcome (may be NULL) receives
 * the master's handshake answer; caller releases it.  OM_EAUTH when the
 * master refused (its ERROR text is in *welcome), OM_ETIMEDOUT when it did
 * not answer in time.
 */
int om_rpc_connect(struct om_rpc_client *c, struct om_msg *welcome);

/*
 * Sends req and waits up to timeout_ms for the reply in *rep (caller
 * releases).  A reply of type ERROR is returned as 0 with rep->type ==
 * OM_MSG_ERROR: the caller decides.  Transport failures drop the session.
 */
int om_rpc_call(struct om_rpc_client *c, const struct om_msg *req, struct om_msg *rep,
                int timeout_ms);

/* ---- server ---- */

struct om_rpc_server;
struct om_rpc_session;

enum om_rpc_kind {
	OM_RPC_HANDSHAKE, /* msg is the HELLO/AUTH payload; finish with accept or refuse */
	OM_RPC_REQUEST,   /* msg is a request in an established session */
};

struct om_rpc_req {
	enum om_rpc_kind kind;
	struct om_msg msg;                      /* decoded; released when the request is finished */
	struct om_rpc_session *session;         /* REQUEST only */
	enum om_noise_pattern pattern;          /* HANDSHAKE only */
	uint8_t remote_static[OM_NOISE_KEYLEN]; /* HANDSHAKE with IK: the peer's key */
	char peer[64];                          /* "127.0.0.1:54321" for logs */
	struct om_rpc_work *work_;              /* private */
	struct om_noise_hs *hs_;                /* private */
};

struct om_rpc_server_opts {
	const char *url;
	const struct om_keypair *key; /* the master's static key */
	unsigned patterns;            /* bit mask of 1 << OM_NOISE_* accepted */
	unsigned nctx;                /* concurrent requests (held long-polls count) */
	size_t max_frame;             /* NNG_OPT_RECVMAXSZ */
	int64_t session_idle_ms;      /* sessions unused this long are dropped */
	void (*wake)(void *arg);      /* called from nng threads when a frame is queued */
	void *wake_arg;
	const char *name; /* "worker" or "client", for logs */
};

int om_rpc_server_open(struct om_rpc_server **out, const struct om_rpc_server_opts *opts);
/* Stops receiving, drops every queued and held request, frees sessions. */
void om_rpc_server_close(struct om_rpc_server *s);

/*
 * Next request that decrypted and decoded, or NULL when none is queued.
 * Frames that fail (bad type, bad tag, replay, malformed msgpack, unknown
 * session) are answered or dropped here, with a log line, and never returned.
 * Caller owns the result until it finishes it.
 */
struct om_rpc_req *om_rpc_server_take(struct om_rpc_server *s);

/*
 * Handshake: admit the peer, answering with reply (WELCOME/AUTH_OK); user is
 * attached to the new session, returned in *session (may be NULL).
 */
int om_rpc_accept(struct om_rpc_req *r, const struct om_msg *reply, void *user,
                  struct om_rpc_session **session);
/* Handshake: refuse, answering with an ERROR inside the handshake; no session. */
void om_rpc_refuse(struct om_rpc_req *r, int code, const char *text);
/* Request: seal and send the reply.  The session must still exist. */
int om_rpc_reply(struct om_rpc_req *r, const struct om_msg *reply);
/* Request: answer nothing and close the peer's connection. */
void om_rpc_drop(struct om_rpc_req *r, const char *why);

void *om_rpc_session_user(const struct om_rpc_session *ss);
uint64_t om_rpc_session_id(const struct om_rpc_session *ss);
/* Ends a session now (e.g. a worker replaced by a newer connection). */
void om_rpc_session_end(struct om_rpc_server *s, struct om_rpc_session *ss);

/*
 * Drops sessions idle longer than session_idle_ms; for each, on_end(user) is
 * called first so the owner can forget it.  Call periodically.
 */
void om_rpc_server_expire(struct om_rpc_server *s, void (*on_end)(void *arg, void *user),
                          void *arg);

#endif
