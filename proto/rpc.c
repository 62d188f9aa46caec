/*
 * RPC over nng with the secure channel.  See om/rpc.h for the contract.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <openssl/rand.h>

#include "om/rpc.h"

/* nng's REQ re-sends unanswered requests after this; we time out first. */
#define REQ_RESEND_MS (3600 * 1000)

static int
nng_to_om(int rv)
{
	switch (rv) {
	case 0:
		return 0;
	case NNG_ETIMEDOUT:
		return OM_ETIMEDOUT;
	case NNG_ECLOSED:
	case NNG_ECONNSHUT:
	case NNG_ECONNRESET:
		return OM_ECLOSED;
	case NNG_ENOMEM:
		return OM_ENOMEM;
	case NNG_EMSGSIZE:
		return OM_EMSGSIZE;
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
		return OM_EINVAL;
	default:
		return OM_ETRANSPORT;
	}
}

/* ================================ client ================================ */

struct om_rpc_client {
	nng_socket sock;
	nng_dialer dialer;
	struct om_rpc_client_opts opts;
	struct om_keypair local; /* copy: opts.local points here */
	struct om_buf hello;     /* encoded HELLO/AUTH */
	pthread_mutex_t lock;    /* guards chan, have_chan, handshake */
	struct om_chan chan;
	bool have_chan;
	uint64_t generation; /* bumps at every new session */
	bool shut;           /* om_rpc_client_shutdown was called */
};

int
om_rpc_client_open(struct om_rpc_client **out, const struct om_rpc_client_opts *opts)
{
	struct om_rpc_client *c;
	int rv;

	if ((c = om_calloc(1, sizeof(*c))) == NULL)
		return OM_ENOMEM;
	c->opts = *opts;
	if (opts->local != NULL) {
		c->local = *opts->local;
		c->opts.local = &c->local;
	}
	if (c->opts.connect_timeout_ms <= 0)
		c->opts.connect_timeout_ms = 5000;
	om_buf_init(&c->hello, OM_CHAN_MAX_HS_PAYLOAD);
	if ((rv = om_msg_encode(opts->hello, &c->hello)) != 0 || c->hello.err) {
		om_buf_release(&c->hello);
		om_free(c);
		return rv ? rv : c->hello.err;
	}
	c->opts.hello = NULL;
	pthread_mutex_init(&c->lock, NULL);
	if ((rv = nng_req0_open(&c->sock)) != 0)
		goto fail;
	/* The default receive limit is unlimited: any peer could make us allocate. */
	nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, OM_MAX_FRAME + 64);
	nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, REQ_RESEND_MS);
	if ((rv = nng_dialer_create(&c->dialer, c->sock, opts->url)) != 0) {
		nng_close(c->sock);
		goto fail;
	}
	nng_dialer_set_ms(c->dialer, NNG_OPT_RECONNMINT, 100);
	nng_dialer_set_ms(c->dialer, NNG_OPT_RECONNMAXT, 2000);
	nng_dialer_set_size(c->dialer, NNG_OPT_RECVMAXSZ, OM_MAX_FRAME + 64);
	/* Non-blocking: a master that is down now may be up at the next retry. */
	if ((rv = nng_dialer_start(c->dialer, NNG_FLAG_NONBLOCK)) != 0) {
		nng_close(c->sock);
		goto fail;
	}
	*out = c;
	return 0;
fail:
	pthread_mutex_destroy(&c->lock);
	om_buf_release(&c->hello);
	om_free(c);
	return nng_to_om(rv);
}

void
om_rpc_client_shutdown(struct om_rpc_client *c)
{
	pthread_mutex_lock(&c->lock);
	if (!c->shut) {
		c->shut = true;
		/* Closing the socket aborts every context's pending aio with NNG_ECLOSED. */
		nng_close(c->sock);
	}
	pthread_mutex_unlock(&c->lock);
}

void
om_rpc_client_close(struct om_rpc_client *c)
{
	if (c == NULL)
		return;
	if (!c->shut)
		nng_close(c->sock);
	om_chan_wipe(&c->chan);
	om_wipe(&c->local, sizeof(c->local));
	om_buf_release(&c->hello);
	pthread_mutex_destroy(&c->lock);
	om_free(c);
}

/* One request/reply exchange of raw frames on a fresh context. */
static int
client_exchange(struct om_rpc_client *c, const uint8_t *frame, size_t n, nng_msg **reply,
                int timeout_ms)
{
	nng_ctx ctx;
	nng_aio *aio = NULL;
	nng_msg *m = NULL;
	int rv;

	*reply = NULL;
	if ((rv = nng_ctx_open(&ctx, c->sock)) != 0)
		return nng_to_om(rv);
	if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0)
		goto out;
	if ((rv = nng_msg_alloc(&m, 0)) != 0 || (rv = nng_msg_append(m, frame, n)) != 0)
		goto out;
	nng_aio_set_timeout(aio, timeout_ms);
	nng_aio_set_msg(aio, m);
	nng_ctx_send(ctx, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0)
		goto out; /* m is still ours */
	m = NULL;
	nng_aio_set_timeout(aio, timeout_ms);
	nng_ctx_recv(ctx, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) == 0)
		*reply = nng_aio_get_msg(aio);
out:
	if (m != NULL)
		nng_msg_free(m);
	if (aio != NULL)
		nng_aio_free(aio);
	nng_ctx_close(ctx);
	return nng_to_om(rv);
}

/* Caller holds c->lock. */
static int
client_handshake(struct om_rpc_client *c, struct om_msg *welcome)
{
	struct om_noise_hs *hs = NULL;
	struct om_buf frame;
	uint8_t payload[OM_CHAN_MAX_HS_PAYLOAD];
	size_t plen = 0;
	struct om_msg ans;
	nng_msg *reply = NULL;
	int rv;

	memset(&ans, 0, sizeof(ans));
	om_buf_init(&frame, OM_MAX_FRAME_PREAUTH);
	rv = om_chan_initiate(c->opts.pattern, c->opts.local, c->opts.master_pub, c->hello.data,
	                      c->hello.len, &hs, &frame);
	if (rv == 0)
		rv = client_exchange(c, frame.data, frame.len, &reply, c->opts.connect_timeout_ms);
	if (rv == 0) {
		om_chan_wipe(&c->chan);
		rv = om_chan_complete(hs, nng_msg_body(reply), nng_msg_len(reply), &c->chan,
		                      payload, sizeof(payload), &plen);
	}
	if (rv == 0)
		rv = om_msg_decode(payload, plen, &ans);
	if (rv == 0 && ans.type == OM_MSG_ERROR)
		rv = OM_EAUTH; /* the master refused us: no session */
	else if (rv == 0)
		c->have_chan = true, c->generation++;
	if (welcome != NULL && (rv == 0 || rv == OM_EAUTH))
		*welcome = ans;
	else
		om_msg_release(&ans);
	om_wipe(payload, sizeof(payload));
	if (reply != NULL)
		nng_msg_free(reply);
	om_noise_hs_free(hs);
	om_buf_release(&frame);
	return rv;
}

int
om_rpc_connect(struct om_rpc_client *c, struct om_msg *welcome)
{
	int rv = 0;

	if (welcome != NULL)
		memset(welcome, 0, sizeof(*welcome));
	pthread_mutex_lock(&c->lock);
	if (c->shut)
		rv = OM_ECLOSED;
	else if (!c->have_chan)
		rv = client_handshake(c, welcome);
	pthread_mutex_unlock(&c->lock);
	return rv;
}

/* Drops the session, unless another thread already replaced it. */
static void
client_reset(struct om_rpc_client *c, uint64_t generation)
{
	pthread_mutex_lock(&c->lock);
	if (c->generation == generation && c->have_chan) {
		c->have_chan = false;
		om_chan_wipe(&c->chan);
	}
	pthread_mutex_unlock(&c->lock);
}

static int
client_call_once(struct om_rpc_client *c, const struct om_buf *pt, struct om_msg *rep,
                 int timeout_ms)
{
	struct om_buf frame, plain;
	nng_msg *reply = NULL;
	uint64_t gen, sid = 0;
	uint8_t type = 0;
	int rv;

	om_buf_init(&frame, OM_MAX_FRAME + 64);
	om_buf_init(&plain, OM_MAX_FRAME);
	pthread_mutex_lock(&c->lock);
	if (c->shut)
		rv = OM_ECLOSED;
	else
		rv = c->have_chan ? 0 : client_handshake(c, NULL);
	gen = c->generation;
	if (rv == 0)
		rv = om_chan_seal(&c->chan, pt->data, pt->len, &frame);
	pthread_mutex_unlock(&c->lock);
	if (rv != 0)
		goto out;
	if ((rv = client_exchange(c, frame.data, frame.len, &reply, timeout_ms)) != 0) {
		/* The request may or may not have been seen: a new session is the safe state. */
		client_reset(c, gen);
		goto out;
	}
	if (om_frame_peek(nng_msg_body(reply), nng_msg_len(reply), &type, &sid) == 0 &&
	    type == OM_FRAME_RESET) {
		client_reset(c, gen);
		rv = OM_ESESSION;
		goto out;
	}
	pthread_mutex_lock(&c->lock);
	if (c->generation != gen || !c->have_chan)
		rv = OM_ESESSION;
	else
		rv = om_chan_open(&c->chan, nng_msg_body(reply), nng_msg_len(reply), &plain);
	pthread_mutex_unlock(&c->lock);
	if (rv == 0)
		rv = om_msg_decode(plain.data, plain.len, rep);
	else if (rv != OM_ESESSION)
		client_reset(c, gen);
out:
	if (reply != NULL)
		nng_msg_free(reply);
	om_buf_release(&frame);
	om_buf_release(&plain);
	return rv;
}

int
om_rpc_call(struct om_rpc_client *c, const struct om_msg *req, struct om_msg *rep, int timeout_ms)
{
	struct om_buf pt;
	int rv;

	memset(rep, 0, sizeof(*rep));
	om_buf_init(&pt, OM_MAX_FRAME - 64);
	if ((rv = om_msg_encode(req, &pt)) == 0 && (rv = pt.err) == 0) {
		rv = client_call_once(c, &pt, rep, timeout_ms);
		/* A reset means the master never processed the request: retrying is safe. */
		if (rv == OM_ESESSION)
			rv = client_call_once(c, &pt, rep, timeout_ms);
	}
	om_buf_release(&pt);
	return rv;
}

/* ================================ server ================================ */

enum work_state { W_RECV, W_QUEUED, W_OWNED, W_SEND };

struct om_rpc_work {
	struct om_rpc_server *srv;
	nng_aio *aio;
	nng_ctx ctx;
	enum work_state state;
	nng_msg *msg;             /* the request frame while queued/owned */
	struct om_rpc_work *next; /* queue link */
	struct om_rpc_req req;    /* handed to the owner */
};

struct om_rpc_session {
	struct om_chan chan;
	void *user;
	int64_t last_ms;
	struct om_rpc_session *next;
};

struct om_rpc_server {
	struct om_rpc_server_opts opts;
	struct om_keypair key;
	nng_socket sock;
	struct om_rpc_work *works;
	unsigned nworks;
	pthread_mutex_t qlock; /* guards the queue and closing: nng threads touch them */
	struct om_rpc_work *qhead, *qtail;
	bool closing;
	struct om_rpc_session *sessions; /* owner thread only */
};

static void
work_recv(struct om_rpc_work *w)
{
	w->state = W_RECV;
	w->msg = NULL;
	nng_ctx_recv(w->ctx, w->aio);
}

static void
work_cb(void *arg)
{
	struct om_rpc_work *w = arg;
	struct om_rpc_server *s = w->srv;
	int rv = nng_aio_result(w->aio);

	if (w->state == W_SEND) {
		if (rv != 0)
			nng_msg_free(nng_aio_get_msg(w->aio));
		pthread_mutex_lock(&s->qlock);
		if (!s->closing)
			work_recv(w);
		pthread_mutex_unlock(&s->qlock);
		return;
	}
	if (rv != 0) {
		pthread_mutex_lock(&s->qlock);
		/* NNG_ECLOSED at shutdown; anything else: keep serving. */
		if (!s->closing && rv != NNG_ECLOSED)
			work_recv(w);
		pthread_mutex_unlock(&s->qlock);
		return;
	}
	pthread_mutex_lock(&s->qlock);
	w->msg = nng_aio_get_msg(w->aio);
	w->state = W_QUEUED;
	w->next = NULL;
	if (s->qtail)
		s->qtail->next = w;
	else
		s->qhead = w;
	s->qtail = w;
	pthread_mutex_unlock(&s->qlock);
	if (s->opts.wake)
		s->opts.wake(s->opts.wake_arg);
}

int
om_rpc_server_open(struct om_rpc_server **out, const struct om_rpc_server_opts *opts)
{
	struct om_rpc_server *s;
	unsigned i;
	int rv;

	if ((s = om_calloc(1, sizeof(*s))) == NULL)
		return OM_ENOMEM;
	s->opts = *opts;
	s->key = *opts->key;
	s->opts.key = &s->key;
	s->nworks = opts->nctx ? opts->nctx : 64;
	pthread_mutex_init(&s->qlock, NULL);
	if ((s->works = om_calloc(s->nworks, sizeof(*s->works))) == NULL) {
		rv = NNG_ENOMEM;
		goto fail;
	}
	if ((rv = nng_rep0_open(&s->sock)) != 0)
		goto fail;
	nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, opts->max_frame);
	for (i = 0; i < s->nworks; i++) {
		struct om_rpc_work *w = &s->works[i];
		w->srv = s;
		w->req.work_ = w;
		if ((rv = nng_aio_alloc(&w->aio, work_cb, w)) != 0 ||
		    (rv = nng_ctx_open(&w->ctx, s->sock)) != 0)
			goto fail_sock;
	}
	if ((rv = nng_listen(s->sock, opts->url, NULL, 0)) != 0)
		goto fail_sock;
	for (i = 0; i < s->nworks; i++)
		work_recv(&s->works[i]);
	*out = s;
	return 0;
fail_sock:
	nng_close(s->sock);
	for (i = 0; i < s->nworks; i++)
		if (s->works[i].aio)
			nng_aio_free(s->works[i].aio);
fail:
	om_free(s->works);
	pthread_mutex_destroy(&s->qlock);
	om_free(s);
	return rv == NNG_EADDRINUSE ? OM_EEXIST : nng_to_om(rv);
}

static void
session_free(struct om_rpc_session *ss)
{
	om_chan_wipe(&ss->chan);
	om_free(ss);
}

static void
req_clear(struct om_rpc_req *r)
{
	om_msg_release(&r->msg);
	if (r->hs_ != NULL) {
		om_noise_hs_free(r->hs_);
		r->hs_ = NULL;
	}
	r->session = NULL;
}

void
om_rpc_server_close(struct om_rpc_server *s)
{
	struct om_rpc_session *ss, *next;
	unsigned i;

	if (s == NULL)
		return;
	pthread_mutex_lock(&s->qlock);
	s->closing = true;
	pthread_mutex_unlock(&s->qlock);
	nng_close(s->sock);
	for (i = 0; i < s->nworks; i++) {
		struct om_rpc_work *w = &s->works[i];
		nng_aio_stop(w->aio);
		if ((w->state == W_QUEUED || w->state == W_OWNED) && w->msg != NULL)
			nng_msg_free(w->msg);
		req_clear(&w->req);
		nng_aio_free(w->aio);
	}
	for (ss = s->sessions; ss != NULL; ss = next) {
		next = ss->next;
		session_free(ss);
	}
	om_wipe(&s->key, sizeof(s->key));
	om_free(s->works);
	pthread_mutex_destroy(&s->qlock);
	om_free(s);
}

static void
peer_name(nng_msg *m, char *out, size_t n)
{
	nng_sockaddr sa;
	char ip[INET6_ADDRSTRLEN] = "?";

	snprintf(out, n, "unknown peer");
	if (nng_pipe_get_addr(nng_msg_get_pipe(m), NNG_OPT_REMADDR, &sa) != 0)
		return;
	if (sa.s_family == NNG_AF_INET) {
		inet_ntop(AF_INET, &sa.s_in.sa_addr, ip, sizeof(ip));
		snprintf(out, n, "%s:%u", ip, ntohs(sa.s_in.sa_port));
	} else if (sa.s_family == NNG_AF_INET6) {
		inet_ntop(AF_INET6, sa.s_in6.sa_addr, ip, sizeof(ip));
		snprintf(out, n, "[%s]:%u", ip, ntohs(sa.s_in6.sa_port));
	}
}

/* Sends raw bytes as the reply of w; on failure w goes back to receiving. */
static int
work_send(struct om_rpc_work *w, const uint8_t *data, size_t n)
{
	nng_msg *m = w->msg;
	int rv;

	w->msg = NULL;
	nng_msg_clear(m);
	if ((rv = nng_msg_append(m, data, n)) != 0) {
		nng_msg_free(m);
		work_recv(w);
		return nng_to_om(rv);
	}
	w->state = W_SEND;
	nng_aio_set_msg(w->aio, m);
	nng_ctx_send(w->ctx, w->aio);
	return 0;
}

/* Closes the peer's pipe and goes back to receiving. */
static void
work_drop(struct om_rpc_work *w, const char *why)
{
	om_warn("%s endpoint: dropping %s: %s", w->srv->opts.name, w->req.peer, why);
	nng_pipe p = NNG_PIPE_INITIALIZER;
	if (w->msg != NULL) {
		p = nng_msg_get_pipe(w->msg);
		nng_msg_free(w->msg);
		w->msg = NULL;
	}
	req_clear(&w->req);
	work_recv(w);
	if (nng_pipe_id(p) > 0)
		nng_pipe_close(p);
}

static struct om_rpc_session *
session_find(struct om_rpc_server *s, uint64_t sid)
{
	struct om_rpc_session *ss;

	for (ss = s->sessions; ss != NULL; ss = ss->next)
		if (ss->chan.sid == sid)
			return ss;
	return NULL;
}

/* Returns true when w became a request for the owner. */
static bool
work_process(struct om_rpc_server *s, struct om_rpc_work *w)
{
	struct om_rpc_req *r = &w->req;
	const uint8_t *data = nng_msg_body(w->msg);
	size_t n = nng_msg_len(w->msg);
	uint8_t type = 0, payload[OM_CHAN_MAX_HS_PAYLOAD];
	uint64_t sid = 0;
	size_t plen = 0;
	struct om_buf pt;
	int rv;

	memset(r, 0, sizeof(*r));
	r->work_ = w;
	peer_name(w->msg, r->peer, sizeof(r->peer));
	if ((rv = om_frame_peek(data, n, &type, &sid)) != 0) {
		work_drop(w, om_strerror(rv));
		return false;
	}
	if (type == OM_FRAME_HS1) {
		enum om_noise_pattern pat;
		if (n > OM_MAX_FRAME_PREAUTH) {
			work_drop(w, "handshake frame too large");
			return false;
		}
		rv = om_chan_accept(&s->key, s->opts.patterns, data, n, &pat, &r->hs_, payload,
		                    sizeof(payload), &plen);
		if (rv == 0)
			rv = om_msg_decode(payload, plen, &r->msg);
		om_wipe(payload, sizeof(payload));
		if (rv != 0) {
			char why[96];
			snprintf(why, sizeof(why), "handshake failed: %s", om_strerror(rv));
			work_drop(w, why);
			return false;
		}
		r->kind = OM_RPC_HANDSHAKE;
		r->pattern = pat;
		if (pat == OM_NOISE_IK) {
			const uint8_t *rs = om_noise_hs_remote_static(r->hs_);
			if (rs != NULL)
				memcpy(r->remote_static, rs, OM_NOISE_KEYLEN);
		}
		return true;
	}
	if (type != OM_FRAME_DATA) {
		work_drop(w, "unexpected frame type");
		return false;
	}
	if ((r->session = session_find(s, sid)) == NULL) {
		/* Unknown session: tell the peer to handshake again.  Unauthenticated,
		 * so all it can make a peer do is exactly that. */
		uint8_t reset[9] = {OM_FRAME_RESET};
		memcpy(reset + 1, data + 1, 8);
		om_debug("%s endpoint: unknown session from %s", s->opts.name, r->peer);
		work_send(w, reset, sizeof(reset));
		return false;
	}
	om_buf_init(&pt, OM_MAX_FRAME);
	rv = om_chan_open(&r->session->chan, data, n, &pt);
	if (rv == OM_EREPLAY) {
		/* nng's REQ re-sends on reconnect; a duplicate is dropped, not answered twice. */
		om_warn("%s endpoint: replayed record from %s ignored", s->opts.name, r->peer);
		om_buf_release(&pt);
		nng_msg_free(w->msg);
		w->msg = NULL;
		r->session = NULL;
		work_recv(w);
		return false;
	}
	if (rv == 0)
		rv = om_msg_decode(pt.data, pt.len, &r->msg);
	om_buf_release(&pt);
	if (rv != 0) {
		char why[96];
		snprintf(why, sizeof(why), "bad record: %s", om_strerror(rv));
		work_drop(w, why);
		return false;
	}
	r->session->last_ms = om_now_ms();
	r->kind = OM_RPC_REQUEST;
	return true;
}

struct om_rpc_req *
om_rpc_server_take(struct om_rpc_server *s)
{
	struct om_rpc_work *w;

	for (;;) {
		pthread_mutex_lock(&s->qlock);
		if ((w = s->qhead) != NULL) {
			s->qhead = w->next;
			if (s->qhead == NULL)
				s->qtail = NULL;
			w->state = W_OWNED;
		}
		pthread_mutex_unlock(&s->qlock);
		if (w == NULL)
			return NULL;
		if (work_process(s, w))
			return &w->req;
	}
}

int
om_rpc_accept(struct om_rpc_req *r, const struct om_msg *reply, void *user,
              struct om_rpc_session **session)
{
	struct om_rpc_work *w = r->work_;
	struct om_rpc_server *s = w->srv;
	struct om_rpc_session *ss;
	struct om_buf payload, frame;
	uint64_t sid;
	int rv;

	if ((ss = om_calloc(1, sizeof(*ss))) == NULL) {
		work_drop(w, "out of memory");
		return OM_ENOMEM;
	}
	do {
		if (RAND_bytes((unsigned char *)&sid, sizeof(sid)) != 1) {
			om_free(ss);
			work_drop(w, "no randomness");
			return OM_ESYS;
		}
	} while (sid == 0 || session_find(s, sid) != NULL);
	om_buf_init(&payload, OM_CHAN_MAX_HS_PAYLOAD);
	om_buf_init(&frame, OM_MAX_FRAME_PREAUTH);
	rv = om_msg_encode(reply, &payload);
	if (rv == 0 && (rv = payload.err) == 0)
		rv = om_chan_respond(r->hs_, sid, payload.data, payload.len, &ss->chan, &frame);
	if (rv == 0 && (rv = frame.err) == 0) {
		ss->user = user;
		ss->last_ms = om_now_ms();
		ss->next = s->sessions;
		s->sessions = ss;
		if (session != NULL)
			*session = ss;
		req_clear(r);
		work_send(w, frame.data, frame.len);
	} else {
		session_free(ss);
		work_drop(w, "cannot answer handshake");
	}
	om_buf_release(&payload);
	om_buf_release(&frame);
	return rv;
}

void
om_rpc_refuse(struct om_rpc_req *r, int code, const char *text)
{
	struct om_rpc_work *w = r->work_;
	struct om_msg err = {.type = OM_MSG_ERROR};
	struct om_chan tmp;
	struct om_buf payload, frame;

	err.u.error.code = code;
	err.u.error.text = (char *)text;
	om_buf_init(&payload, OM_CHAN_MAX_HS_PAYLOAD);
	om_buf_init(&frame, OM_MAX_FRAME_PREAUTH);
	memset(&tmp, 0, sizeof(tmp));
	/* The refusal travels encrypted inside message 2; the keys are thrown away. */
	if (om_msg_encode(&err, &payload) == 0 && payload.err == 0 &&
	    om_chan_respond(r->hs_, 0, payload.data, payload.len, &tmp, &frame) == 0 &&
	    frame.err == 0) {
		req_clear(r);
		work_send(w, frame.data, frame.len);
	} else {
		work_drop(w, "cannot answer handshake");
	}
	om_chan_wipe(&tmp);
	om_buf_release(&payload);
	om_buf_release(&frame);
}

int
om_rpc_reply(struct om_rpc_req *r, const struct om_msg *reply)
{
	struct om_rpc_work *w = r->work_;
	struct om_buf pt, frame;
	int rv;

	om_buf_init(&pt, OM_MAX_FRAME - 64);
	om_buf_init(&frame, OM_MAX_FRAME + 64);
	rv = om_msg_encode(reply, &pt);
	if (rv == 0 && (rv = pt.err) == 0 && r->session != NULL)
		rv = om_chan_seal(&r->session->chan, pt.data, pt.len, &frame);
	else if (rv == 0)
		rv = OM_ESESSION;
	if (rv == 0 && (rv = frame.err) == 0) {
		req_clear(r);
		rv = work_send(w, frame.data, frame.len);
	} else {
		work_drop(w, "cannot encode reply");
	}
	om_buf_release(&pt);
	om_buf_release(&frame);
	return rv;
}

void
om_rpc_drop(struct om_rpc_req *r, const char *why)
{
	work_drop(r->work_, why);
}

void *
om_rpc_session_user(const struct om_rpc_session *ss)
{
	return ss->user;
}

uint64_t
om_rpc_session_id(const struct om_rpc_session *ss)
{
	return ss->chan.sid;
}

void
om_rpc_session_end(struct om_rpc_server *s, struct om_rpc_session *ss)
{
	struct om_rpc_session **pp;

	for (pp = &s->sessions; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == ss) {
			*pp = ss->next;
			session_free(ss);
			return;
		}
	}
}

void
om_rpc_server_expire(struct om_rpc_server *s, void (*on_end)(void *arg, void *user), void *arg)
{
	struct om_rpc_session **pp = &s->sessions, *ss;
	int64_t now = om_now_ms();

	while ((ss = *pp) != NULL) {
		if (now - ss->last_ms > s->opts.session_idle_ms) {
			if (on_end != NULL)
				on_end(arg, ss->user);
			*pp = ss->next;
			session_free(ss);
		} else {
			pp = &ss->next;
		}
	}
}
