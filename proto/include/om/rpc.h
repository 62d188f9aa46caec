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
 * means the request was not processed.  The socket never re-sends a request
 * by itself: one whose connection closes before the reply fails with
 * OM_ECLOSED (the master may have processed it), so no request reaches a
 * master twice.
 *
 * Several masters (sharing one database and one static key) may be given.
 * The client keeps exactly one nng dialer, to one of them: a REQ socket with
 * two would spread requests over both and break the session.  It moves to
 * the next URL (round robin) when a handshake gets no answer within
 * connect_timeout_ms, fails in transport, or is refused with OM_EDB, trying
 * each URL at most once per handshake; and when a request finds no
 * connection to its master within connect_timeout_ms, in which case the
 * request was never sent and the call retries it once on the next master.
 *
 * Server (om-master): a REP socket with a pool of contexts.  nng threads
 * only queue raw frames; the owner's thread takes them with
 * om_rpc_server_take and does every decryption, decode and session change,
 * so sessions need no locks.  Every request taken must be finished exactly
 * once with om_rpc_accept, om_rpc_refuse, om_rpc_reply or om_rpc_drop; a
 * request may be held (long-poll) and finished later.
 *
 * Channel hardening (every limit is an option below; zero means the default):
 *
 *  - Sessions have a bounded life.  The client starts a fresh handshake (new
 *    ephemeral keys, so earlier traffic stays secret if a later session key
 *    leaks) once a session has sealed rekey_messages frames or is
 *    rekey_age_ms old; the old session is abandoned.  The server enforces a
 *    looser hard limit (max_session_messages, max_session_age_ms): a DATA
 *    frame past it is answered with a reset, which makes the client
 *    handshake again and retry, and om_rpc_server_expire ends such sessions.
 *  - Replayed frames, and frames whose counter is older than the replay
 *    window, are ignored without an answer (nng's REQ re-sends a request on
 *    a new connection, so a duplicate is not proof of an attack); truncated
 *    or forged frames are dropped and the peer's connection is closed.
 *  - Handshakes are rate-limited per source address (IPv4 address, IPv6
 *    /64) with a token bucket checked before any Diffie-Hellman; a
 *    handshake over the limit is dropped without an answer.
 *  - Size caps: a handshake frame is refused above OM_MAX_FRAME_PREAUTH
 *    before it is parsed or any crypto runs, and a DATA frame is decrypted
 *    only for a known session, under max_frame (one for an unknown session
 *    gets a 9-byte reset, whatever its size: no crypto, and a legitimate
 *    client after a master restart must learn to re-handshake at once).
 *    nng 1.5.2 has no per-pipe
 *    receive limit, so its transport still buffers any frame up to
 *    max_frame (NNG_OPT_RECVMAXSZ, the post-authentication cap) from any
 *    connected peer: what bounds an unauthenticated peer's hold on that
 *    memory is preauth_timeout_ms.
 *  - A connection (nng pipe, tracked from nng's pipe callbacks once nng's
 *    own SP header exchange is done; nng itself closes a TCP connection
 *    that does not finish that within 10 s) that has not carried an
 *    accepted handshake, nor a DATA frame that opened in a known session,
 *    within preauth_timeout_ms is closed: a refused handshake or a frame
 *    that fails to open does not count.  So is an authenticated one with no
 *    authentic frame for idle_timeout_ms (a queued or held request keeps it
 *    open).  Sessions unused for session_idle_ms are dropped.  All three
 *    happen in om_rpc_server_expire.
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

/* At most this many master URLs per client. */
#define OM_RPC_MAX_URLS 16

struct om_rpc_client_opts {
	/*
	 * The masters: each entry of urls[0..nurls-1] (or url when nurls is 0)
	 * is one URL (tcp://host:port) or a comma-separated list of them;
	 * blanks around commas are ignored.  The client copies them and starts
	 * with the first.
	 */
	const char *url;
	const char *const *urls;
	size_t nurls;
	enum om_noise_pattern pattern;       /* IK (worker) or NK (omctl) */
	const struct om_keypair *local;      /* IK: our static key; NK: NULL */
	uint8_t master_pub[OM_NOISE_KEYLEN]; /* the pinned master key */
	const struct om_msg *hello;          /* HELLO or AUTH, copied by open */
	const uint8_t *hello_raw;            /* tests only: a pre-encoded payload when hello is NULL */
	size_t hello_raw_len;
	int connect_timeout_ms;              /* handshake round trip */
	uint64_t rekey_messages;             /* new session after this many frames; 0: 1 << 20 */
	int64_t rekey_age_ms;                /* or after this long; 0: 3600000 (1 h) */
	/*
	 * May be NULL.  Called after every handshake that opened a session on
	 * a master, except a rekey on the same master, with that master's URL:
	 * on the thread that made the call, with the client's lock held, so it
	 * must not call into the client (om_rpc_client_url included).
	 */
	void (*on_connect)(void *arg, const char *url);
	void *on_connect_arg;
};

/* OM_EINVAL for an empty or malformed URL or more than OM_RPC_MAX_URLS. */
int om_rpc_client_open(struct om_rpc_client **out, const struct om_rpc_client_opts *opts);
/*
 * The URL of the master the client dials now, for logs.  Caller does not
 * free; valid until om_rpc_client_close.
 */
const char *om_rpc_client_url(struct om_rpc_client *c);
/*
 * Leaves the current master for the next URL (round robin): drops the
 * session and the connection (calls in flight on it fail with OM_ECLOSED).
 * For a caller that learnt from an answer that this master cannot serve
 * (an ERROR with OM_EDB) or that lost it.  Does nothing with a single URL.
 */
void om_rpc_client_failover(struct om_rpc_client *c);
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
 * not answer in time.  With several URLs, each master is tried at most once
 * (see above): the result is the last one's.
 */
int om_rpc_connect(struct om_rpc_client *c, struct om_msg *welcome);

/*
 * Sends req and waits up to timeout_ms for the reply in *rep (caller
 * releases).  A reply of type ERROR is returned as 0 with rep->type ==
 * OM_MSG_ERROR: the caller decides.  Transport failures drop the session.
 * OM_ECLOSED or OM_ETIMEDOUT after the request went out: the master may
 * have processed it, and it is not sent again.
 */
/* Tests only: like om_rpc_call with an already encoded plaintext request. */
int om_rpc_call_raw(struct om_rpc_client *c, const uint8_t *pt, size_t n, struct om_msg *rep,
                    int timeout_ms);
int om_rpc_call(struct om_rpc_client *c, const struct om_msg *req, struct om_msg *rep,
                int timeout_ms);

/* ---- server ---- */

struct om_rpc_server;
struct om_rpc_session;

enum om_rpc_kind {
	OM_RPC_HANDSHAKE, /* msg is the HELLO/AUTH payload; finish with accept or refuse */
	OM_RPC_REQUEST,	  /* msg is a request in an established session; type OM_MSG_NONE
			     when the authentic plaintext was not a message we can decode */
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
	struct om_rpc_local *local_;            /* private: a local request (below) */
};

struct om_rpc_server_opts {
	const char *url;
	const struct om_keypair *key; /* the master's static key */
	unsigned patterns;            /* bit mask of 1 << OM_NOISE_* accepted */
	unsigned nctx;                /* concurrent requests (held long-polls count) */
	size_t max_frame;        /* NNG_OPT_RECVMAXSZ, the post-auth cap; 0: OM_MAX_FRAME + 64 */
	int64_t session_idle_ms; /* sessions unused this long are dropped; 0: 120000 */
	void (*wake)(void *arg); /* called from nng threads when a frame is queued */
	void *wake_arg;
	const char *name; /* "worker" or "client", for logs */
	/*
	 * Called on the owner thread (inside om_rpc_server_take) for every frame
	 * refused before it became a request: bad frames, failed handshakes,
	 * replays, rate-limited handshakes.  peer is the address, what the reason.
	 */
	void (*on_refused)(void *arg, const char *peer, const char *what);
	void *refused_arg; /* also the argument of on_disconnect */
	/*
	 * Called from om_rpc_server_expire (owner thread) when the connection a
	 * session last used has closed.  The session itself stays: a peer whose
	 * dialer reconnects goes on with it.
	 */
	void (*on_disconnect)(void *arg, void *user);
	/* Hard session limits; past them DATA frames are reset and the session ends. */
	int64_t max_session_age_ms;    /* 0: 7200000 (twice the client's rekey age) */
	uint64_t max_session_messages; /* frames received; 0: 1 << 21 (twice the client's) */
	/* Handshakes per source address: a token bucket. */
	unsigned hs_rate;  /* tokens per second; 0: 20 */
	unsigned hs_burst; /* bucket size; 0: 40 */
	/* Connections (nng pipes). */
	int64_t preauth_timeout_ms; /* closed unless authenticated by then; 0: 10000 */
	int64_t idle_timeout_ms; /* closed after no authentic frame this long; 0: session_idle_ms */
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

/*
 * Local requests: a REQUEST that did not come over nng (om-master's HTTP
 * bridge builds them from REST calls).  session is NULL and peer is the
 * creator's; the owner finishes one exactly like any request, with
 * om_rpc_reply or om_rpc_drop, at once or much later (held), and then the
 * creator's callback gets the reply instead of a sealed frame.
 *
 * Ownership.  om_rpc_local_new returns a request with two references: the
 * creator's and the finisher's.  The finisher's goes with the request to
 * whoever will finish it (om-master's core, through its web queue) and is
 * dropped by om_rpc_reply/om_rpc_drop, which also release r->msg.  The
 * creator drops its own with om_rpc_local_release, when it has what it
 * wanted or gives up (its client went away); the last one out frees.
 *
 * Callbacks.  on_reply(arg, reply) or on_drop(arg, why) runs at most once,
 * on the finishing thread, under the request's lock; reply is valid only
 * during the call.  They must not block for long and must not call
 * om_rpc_local_release.  After om_rpc_local_release returns, no callback is
 * running or will ever run: arg may be freed at once.  A request finished
 * after that is simply discarded (om_rpc_local_cancelled tells the owner,
 * which may finish such a request early).
 *
 * A creator that never hands the request over finishes it itself:
 * om_rpc_local_release(r), then om_rpc_drop(r, why).
 */
struct om_rpc_req *om_rpc_local_new(const struct om_msg *msg,
                                    void (*on_reply)(void *arg, const struct om_msg *reply),
                                    void (*on_drop)(void *arg, const char *why), void *arg,
                                    const char *peer);
/* The creator gives up its reference (see above). */
void om_rpc_local_release(struct om_rpc_req *r);
bool om_rpc_local_cancelled(struct om_rpc_req *r);
bool om_rpc_is_local(const struct om_rpc_req *r);

void *om_rpc_session_user(const struct om_rpc_session *ss);
uint64_t om_rpc_session_id(const struct om_rpc_session *ss);
/* Ends a session now (e.g. a worker replaced by a newer connection). */
void om_rpc_session_end(struct om_rpc_server *s, struct om_rpc_session *ss);

/*
 * Drops sessions idle longer than session_idle_ms or past their hard age or
 * message limit; for each, on_end(user) is called first so the owner can
 * forget it.  Closes connections past preauth_timeout_ms or idle_timeout_ms.
 * Call periodically (its period adds to those timeouts).
 */
void om_rpc_server_expire(struct om_rpc_server *s, void (*on_end)(void *arg, void *user),
                          void *arg);

#endif
